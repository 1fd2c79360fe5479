/*
 * srvadmin: see srvadmin.h. The main loop applies a change to its replica,
 * then to every worker as a job (px_workers_run), so the command returns
 * once no worker routes a new request to a server taken out; then saves,
 * with the writer main.c sets (the control plane's writer thread: the
 * loop serves requests meanwhile, the command's reply waits for it).
 * A disabled server's checker is stopped (no probes, no verdict changes
 * while it is worked on) and started again, from its last verdict, when it
 * is enabled.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "health/check.h"
#include "lib/log.h"
#include "lib/xmalloc.h"
#include "proxy/conf.h"
#include "proxy/daemon.h"
#include "proxy/server.h"
#include "proxy/srvadmin.h"
#include "proxy/verdict.h"
#include "proxy/worker.h"

static char *state_file;         /* owned: set by px_srvadmin_load() */
static px_srvadmin_write_fn *writer;     /* px_srvadmin_set_writer(); NULL: written here */
static void *writer_arg;

struct job_admin {
    unsigned idx, server;
    enum rt_side side;
    enum px_srv_admin admin;
    uint32_t weight_bp;
    uint64_t generation;
};

static void
job_set_admin(struct px_srv *w, void *arg)
{
    const struct job_admin *j = arg;
    struct px_service *svc = w->svcs[j->idx];

    if (j->server < svc->conf->side[j->side].nservers)
        px_service_set_admin(svc, j->side, j->server, j->admin, j->weight_bp, j->generation);
}

/* Every server that is not ready, as the state file's text (caller frees),
 * or NULL with <err> set. */
static char *
format(struct px_srv *srv, char *err, size_t errlen)
{
    json_t *root = json_object();
    char *text;
    unsigned i, side, k;

    for (i = 0; i < srv->nsvcs; i++) {
        struct px_service *svc = srv->svcs[i];
        json_t *so = json_object();

        for (side = 0; side < RT_SIDE__COUNT; side++) {
            json_t *sd = json_object();

            for (k = 0; k < svc->conf->side[side].nservers; k++)
                if (svc->servers[side][k]->admin != PX_SRV_READY)
                    json_object_set_new(sd, svc->conf->side[side].servers[k].text,
                                        json_string(px_srv_admin_names
                                                        [svc->servers[side][k]->admin]));
            if (json_object_size(sd) > 0)
                json_object_set_new(so, rt_side_names[side], sd);
            else
                json_decref(sd);
        }
        if (json_object_size(so) > 0)
            json_object_set_new(root, svc->conf->name, so);
        else
            json_decref(so);
    }
    text = json_dumps(root, JSON_SORT_KEYS | JSON_INDENT(1));
    json_decref(root);
    if (text == NULL) {
        snprintf(err, errlen, "cannot serialise the server states");
        return NULL;
    }
    return text;
}

/* Replaces the state file with <text>/<len> here, on the caller's thread
 * (no writer set). 0, or -1 with <err>. */
static int
write_now(const char *text, size_t len, char *err, size_t errlen)
{
    char tmp[4200];
    int fd, rc = -1;

    snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", state_file, (long)getpid());
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "%.300s: %s", tmp, strerror(errno));
    } else if (write(fd, text, len) != (ssize_t)len || fsync(fd) != 0) {
        snprintf(err, errlen, "%.300s: %s", tmp, errno != 0 ? strerror(errno) : "short write");
        close(fd);
        unlink(tmp);
    } else if (close(fd) != 0 || rename(tmp, state_file) != 0) {
        snprintf(err, errlen, "%.300s: %s", state_file, strerror(errno));
        unlink(tmp);
    } else {
        rc = 0;
    }
    return rc;
}

/* Writes every server that is not ready to the state file, with the writer
 * set (else here); a failure is logged, naming what a restart will not
 * keep (<change>). */
static void
save(struct px_srv *srv, const char *change)
{
    char err[512], note[600], *text = format(srv, err, sizeof(err)), *line;
    size_t len;

    snprintf(note, sizeof(note), "a restart will not keep %s", change);
    if (text == NULL) {
        log_at(LL_ERR, "control", 0, "server states: %s: %s", err, note);
        return;
    }
    len = strlen(text);
    line = xmalloc(len + 2);           /* the file ends with a newline */
    memcpy(line, text, len);
    memcpy(line + len, "\n", 2);
    free(text);
    if (writer != NULL) {
        writer(writer_arg, state_file, line, len + 1, "server states", note);
        return;
    }
    if (write_now(line, len + 1, err, sizeof(err)) != 0)
        log_at(LL_ERR, "control", 0, "server states: %s: %s", err, note);
    free(line);
}

void
px_srvadmin_set_writer(px_srvadmin_write_fn *fn, void *arg)
{
    writer = fn;
    writer_arg = arg;
}

/* Sets server <k> of <side> of <svc> (main replica) to <admin> everywhere:
 * its checker stops when disabled, starts again when it leaves disabled. */
static void
apply(struct px_daemon *d, struct px_service *svc, enum rt_side side, unsigned k,
      enum px_srv_admin admin)
{
    struct px_server_rt *s = svc->servers[side][k];
    struct job_admin j = { .idx = svc->idx, .server = k, .side = side, .admin = admin,
                           .weight_bp = svc->snap->weight_bp,
                           .generation = svc->snap->generation };
    bool was_disabled = s->admin == PX_SRV_DISABLED;

    job_set_admin(&d->srv, &j);
    px_workers_run(&d->srv, job_set_admin, &j);
    if (admin == PX_SRV_DISABLED && s->check != NULL) {
        hl_check_free(s->check);
        s->check = NULL;
    } else if (was_disabled && admin != PX_SRV_DISABLED) {
        px_verdict_start_service(d, svc);
    }
}

int
px_srvadmin_op(void *arg, unsigned idx, enum rt_side side, const char *addr, const char *to,
               char *from, size_t fromlen, char *msg, size_t len)
{
    struct px_srv *srv = arg;
    struct px_daemon *d = px_daemon_of(srv);
    struct px_service *svc = srv->svcs[idx];
    const struct px_side_conf *sc = &svc->conf->side[side];
    enum px_srv_admin admin;
    struct px_addr want;
    bool parsed = px_addr_parse(addr, &want) == 0;
    unsigned k;

    for (admin = PX_SRV_READY; admin < PX_SRV__COUNT; admin++)
        if (strcmp(to, px_srv_admin_names[admin]) == 0)
            break;
    if (admin == PX_SRV__COUNT) {
        snprintf(msg, len, "unknown server state \"%s\"", to);
        return -1;
    }
    for (k = 0; k < sc->nservers; k++)
        if (strcmp(sc->servers[k].text, addr) == 0
            || (parsed && px_addr_same(&sc->servers[k], &want)))
            break;
    if (k == sc->nservers) {
        size_t n;

        n = (size_t)snprintf(msg, len, "service %s has no %s server \"%s\" (its %s servers:",
                             svc->conf->name, rt_side_names[side], addr, rt_side_names[side]);
        for (k = 0; k < sc->nservers && n < len; k++)
            n += (size_t)snprintf(msg + n, len - n, " %s", sc->servers[k].text);
        if (n < len)
            snprintf(msg + n, len - n, ")");
        return -1;
    }
    snprintf(from, fromlen, "%s", px_srv_admin_names[svc->servers[side][k]->admin]);
    if (svc->servers[side][k]->admin == admin) {
        snprintf(msg, len, "%s server %s is %s already", rt_side_names[side],
                 sc->servers[k].text, px_srv_admin_names[admin]);
        return 0;
    }
    apply(d, svc, side, k, admin);
    if (state_file != NULL) {
        char change[512];

        snprintf(change, sizeof(change), "%s/%s %s", rt_side_names[side], sc->servers[k].text,
                 px_srv_admin_names[admin]);
        save(srv, change);
    }
    snprintf(msg, len, "%s server %s: %s -> %s%s", rt_side_names[side], sc->servers[k].text,
             from, px_srv_admin_names[admin],
             admin == PX_SRV_READY ? (svc->servers[side][k]->up ? " (up: in rotation)"
                                                                : " (down: in rotation once up)")
             : rt_side_usable(svc->snap, side) ? ""
             : "; the side has no usable server left: its share goes to the other side");
    return 0;
}

int
px_srvadmin_load(struct px_daemon *d, const char *file, char *err, size_t errlen)
{
    struct px_srv *srv = &d->srv;
    json_error_t je;
    json_t *root, *so, *sd, *v;
    const char *name, *sname, *addr;
    unsigned applied = 0;

    free(state_file);
    state_file = xstrdup(file);
    root = json_load_file(file, JSON_REJECT_DUPLICATES, &je);
    if (root == NULL) {
        if (access(file, F_OK) != 0 && errno == ENOENT)
            return 0;
        snprintf(err, errlen, "%s:%d:%d: %s", file, je.line, je.column, je.text);
        return -1;
    }
    if (!json_is_object(root))
        goto bad;
    json_object_foreach(root, name, so) {
        struct px_service *svc = NULL;
        unsigned i;

        if (!json_is_object(so))
            goto bad;
        for (i = 0; i < srv->nsvcs; i++)
            if (strcmp(srv->svcs[i]->conf->name, name) == 0)
                svc = srv->svcs[i];
        json_object_foreach(so, sname, sd) {
            enum rt_side side;

            if (strcmp(sname, "legacy") != 0 && strcmp(sname, "new") != 0)
                goto bad;
            side = strcmp(sname, "new") == 0 ? RT_NEW : RT_LEGACY;
            if (!json_is_object(sd))
                goto bad;
            json_object_foreach(sd, addr, v) {
                enum px_srv_admin a;
                unsigned k = 0;

                for (a = PX_SRV_DRAIN; a < PX_SRV__COUNT; a++)
                    if (json_is_string(v) && strcmp(json_string_value(v),
                                                    px_srv_admin_names[a]) == 0)
                        break;
                if (a == PX_SRV__COUNT)
                    goto bad;
                for (k = 0; svc != NULL && k < svc->conf->side[side].nservers; k++)
                    if (strcmp(svc->conf->side[side].servers[k].text, addr) == 0)
                        break;
                if (svc == NULL || k == svc->conf->side[side].nservers) {
                    log_at(LL_WARN, "main", 0, "%s: %s %s server %s is not in the config: "
                           "its state %s is forgotten", file, name, sname, addr,
                           px_srv_admin_names[a]);
                    continue;
                }
                svc->servers[side][k]->admin = (uint8_t)a;
                px_service_publish(svc, svc->snap->weight_bp, svc->snap->generation);
                log_at(LL_WARN, "main", 0, "service %s: %s server %s is %s (kept from %s; "
                       "cutoverctl server enable puts it back)", name, sname, addr,
                       px_srv_admin_names[a], file);
                applied++;
            }
        }
    }
    json_decref(root);
    return 0;
bad:
    json_decref(root);
    snprintf(err, errlen, "%s: not a server state file ({\"SERVICE\": {\"legacy\"|\"new\": "
             "{\"ADDR\": \"drain\"|\"disabled\"}}}); fix or remove it", file);
    return -1;
}

void
px_srvadmin_free(void)
{
    free(state_file);
    state_file = NULL;
}
