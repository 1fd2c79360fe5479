/*
 * main: cutoverd's composition root. Loads the config, builds every module
 * (services and their routing snapshots, the control plane with its state
 * store and audit log, the admin socket, the listeners) and wires the
 * control plane's ops to the data plane. Nothing else creates modules.
 *
 * Startup order matters: the state file is restored before any listener
 * opens, so the first request already sees the persisted weight and latch.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <jansson.h>

#include "admin/audit.h"
#include "admin/control.h"
#include "admin/ctl_proto.h"
#include "admin/log.h"
#include "admin/socket.h"
#include "admin/xmalloc.h"
#include "health/check.h"
#include "health/window.h"
#include "proxy/conf.h"
#include "proxy/server.h"
#include "proxy/tick.h"
#include "router/router.h"

static void
usage(FILE *f)
{
    fprintf(f,
            "usage: cutoverd -c FILE [-t] [-d] [-R SEED]\n"
            "  -c FILE   configuration file (JSON)\n"
            "  -t        check the configuration and exit (0 valid, 1 invalid)\n"
            "  -d        debug logging\n"
            "  -R SEED   seed of the random draws (tests; default: from the kernel)\n"
            "  -h        this help\n");
}

/* ---- active health checks ------------------------------------------- */

/* A checker's verdict changed: republish the routing snapshot (the weight
 * stays what the control plane says), log the change once, and audit it. */
static void
on_health_change(void *arg, bool is_up, unsigned count, const char *why)
{
    struct px_server_rt *s = arg;
    struct px_service *svc = s->svc;
    struct px_srv *srv = svc->srv;
    const struct adm_svc_state *st = adm_control_state(srv->ctl, svc->idx);
    enum rt_side other = s->side == RT_LEGACY ? RT_NEW : RT_LEGACY;
    const char *side = rt_side_names[s->side];
    bool side_was = rt_side_usable(svc->snap, s->side);
    struct adm_audit_entry ae;
    char reason[512], aerr[512];
    json_t *fig;

    if (!px_service_set_up(svc, s->side, s->index, is_up, st->weight_bp, st->generation))
        return;
    if (is_up)
        snprintf(reason, sizeof(reason), "%s/%s UP after %u passed check%s", side,
                 svc->conf->side[s->side].servers[s->index].text, count, count == 1 ? "" : "s");
    else
        snprintf(reason, sizeof(reason), "%s/%s DOWN after %u failed check%s: %s", side,
                 svc->conf->side[s->side].servers[s->index].text, count,
                 count == 1 ? "" : "s", why);
    log_at(is_up ? LL_INFO : LL_WARN, "health", 0, "%s %s", svc->conf->name, reason);
    if (side_was && !rt_side_usable(svc->snap, s->side))
        log_at(LL_WARN, "health", 0, "service %s: %s has no healthy server: %s",
               svc->conf->name, side,
               rt_side_usable(svc->snap, other) ? "its share of traffic goes to the other side"
               : svc->conf->mode == PX_MODE_TCP ? "neither side has one, connections are closed"
                                                : "neither side has one, requests are answered 503");
    else if (!side_was && rt_side_usable(svc->snap, s->side))
        log_at(LL_INFO, "health", 0, "service %s: %s has a healthy server again: "
               "it takes its share of traffic", svc->conf->name, side);

    if (srv->audit_file == NULL)
        return;
    fig = json_pack("{s:s, s:s, s:s, s:i, s:s, s:b}", "side", side,
                    "server", svc->conf->side[s->side].servers[s->index].text,
                    "verdict", is_up ? "up" : "down", "checks", (int)count,
                    "last_check", why, "side_healthy", rt_side_usable(svc->snap, s->side));
    ae = (struct adm_audit_entry){
        .service = svc->conf->name, .actor = "auto", .action = "health",
        .from_bp = st->weight_bp, .to_bp = st->weight_bp, .reason = reason,
        .generation = st->generation, .figures = fig,
        .from_text = is_up ? "down" : "up", .to_text = is_up ? "up" : "down",
    };
    /* the change happened: a failing audit log must not hide that */
    if (adm_audit_append(srv->audit_file, &ae, aerr, sizeof(aerr)) != 0)
        log_at(LL_ERR, "health", 0, "%s: audit log: %s", svc->conf->name, aerr);
    json_decref(fig);
}

/* Creates and starts the active checker of every server of every service
 * that has a "health" section. Their jitter is seeded from the daemon's
 * seed (-R) without drawing from it, so routing draws stay as they were.
 * 0, or -1 (logged). */
static int
health_start(struct px_srv *srv, const char *audit_file)
{
    uint64_t n = 0;
    unsigned i, side, k;

    srv->audit_file = audit_file;
    for (i = 0; i < srv->nsvcs; i++) {
        struct px_service *svc = &srv->svcs[i];
        const struct hl_check_conf *hc = &svc->conf->health;

        if (hc->type == HL_CHECK_NONE)
            continue;
        for (side = 0; side < RT_SIDE__COUNT; side++) {
            for (k = 0; k < svc->conf->side[side].nservers; k++) {
                struct px_server_rt *s = &svc->servers[side][k];
                const struct px_addr *a = &svc->conf->side[side].servers[k];
                char label[160];

                snprintf(label, sizeof(label), "%s %s/%s", svc->conf->name,
                         rt_side_names[side], a->text);
                s->svc = svc;
                s->side = (enum rt_side)side;
                s->index = k;
                s->check = hl_check_new(srv->base, hc, (const struct sockaddr *)&a->ss,
                                        a->len, a->text, label,
                                        srv->rng ^ (++n * 0xd1b54a32d192ed03ULL),
                                        on_health_change, s);
                if (s->check == NULL || hl_check_start(s->check) < 0) {
                    log_at(LL_ERR, "health", 0, "%s: cannot start the health checks", label);
                    return -1;
                }
            }
        }
        log_at(LL_INFO, "health", 0, "service %s: %s checks every %u ms (timeout %u ms, "
               "rise %u, fall %u)", svc->conf->name,
               hc->type == HL_CHECK_HTTP ? "http" : "tcp", hc->interval_ms,
               hc->timeout_ms, hc->rise, hc->fall);
    }
    return 0;
}

/* Stops and frees every checker (before the event loop is freed). */
static void
health_stop(struct px_srv *srv)
{
    unsigned i, side, k;

    for (i = 0; srv->svcs != NULL && i < srv->nsvcs; i++)
        for (side = 0; side < RT_SIDE__COUNT; side++)
            for (k = 0; srv->svcs[i].servers[side] != NULL &&
                        k < srv->svcs[i].conf->side[side].nservers; k++) {
                hl_check_free(srv->svcs[i].servers[side][k].check);
                srv->svcs[i].servers[side][k].check = NULL;
            }
}

/* Adds the active-check figures of server <s> to its status object <o>:
 * "last_check" ("" before the first) and "checks": {"ok", "fail"}. */
static void
health_server_status(const struct px_server_rt *s, json_t *o)
{
    struct hl_check_stats cs;

    if (s->check == NULL)
        return;
    hl_check_get_stats(s->check, &cs);
    json_object_set_new(o, "last_check", json_string(cs.last));
    json_object_set_new(o, "checks", json_pack("{s:I, s:I}", "ok", (json_int_t)cs.passed,
                                               "fail", (json_int_t)cs.failed));
}

/* ---- control-plane ops ----------------------------------------------- */

static void
op_apply(void *arg, unsigned idx, const struct adm_svc_state *st)
{
    struct px_srv *srv = arg;
    struct px_service *svc = &srv->svcs[idx];
    uint32_t from = svc->snap->weight_bp;

    bool was_latched = svc->applied_state == ADM_ST_ROLLED_BACK ||
                       svc->applied_state == ADM_ST_FROZEN;
    bool latched = st->state == ADM_ST_ROLLED_BACK || st->state == ADM_ST_FROZEN;
    bool in_plan = svc->applied_state == ADM_ST_PROGRESSING ||
                   svc->applied_state == ADM_ST_PAUSED || st->state == ADM_ST_PROGRESSING;

    px_service_publish(svc, st->weight_bp, st->generation);
    /* New's window starts afresh when an operator clears the latch (so the
     * errors that caused a rollback do not re-trigger it) and when an
     * operator moves the weight outside a plan. A plan's steps, pause and
     * resume keep the evidence: a new side that degrades across steps is
     * still caught. */
    if ((was_latched && !latched) || (!latched && !in_plan && st->weight_bp != from))
        hl_window_reset(&svc->window[RT_NEW]);
    svc->applied_state = (int)st->state;
    log_at(LL_INFO, "control", 0, "service %s: weight %u.%02u%% -> %u.%02u%% state %s generation %llu",
           svc->conf->name, from / 100, from % 100, st->weight_bp / 100,
           st->weight_bp % 100, adm_state_names[st->state],
           (unsigned long long)st->generation);
}

static bool
op_side_healthy(void *arg, unsigned idx, enum rt_side side)
{
    struct px_srv *srv = arg;

    return rt_side_usable(srv->svcs[idx].snap, side);
}

static json_t *
side_status(struct px_service *svc, enum rt_side side, uint64_t now_ms)
{
    const struct px_side_conf *sc = &svc->conf->side[side];
    const struct px_side_stats *st = &svc->stats[side];
    json_t *o = json_object(), *servers = json_array(), *win = json_object(),
           *cnt = json_object(), *errs = json_object();
    struct hl_stats hs;
    unsigned i;

    for (i = 0; i < sc->nservers; i++) {
        const struct px_server_rt *s = &svc->servers[side][i];
        json_t *so = json_pack("{s:s, s:b, s:I, s:I, s:I, s:i}",
                               "addr", sc->servers[i].text,
                               "up", s->up,
                               "requests", (json_int_t)s->requests,
                               "failures", (json_int_t)s->failures,
                               "reused", (json_int_t)s->reused,
                               "idle", (int)s->nidle);

        health_server_status(s, so);
        json_array_append_new(servers, so);
    }
    hl_window_stats(&svc->window[side], now_ms, &hs);
    json_object_set_new(win, "requests", json_integer((json_int_t)hs.requests));
    json_object_set_new(win, "errors", json_integer((json_int_t)hs.errors));
    json_object_set_new(win, "error_rate", json_real(hs.error_rate));
    json_object_set_new(win, "p50_ms", json_real(hs.p50_ms));
    json_object_set_new(win, "p99_ms", json_real(hs.p99_ms));
    json_object_set_new(cnt, "requests", json_integer((json_int_t)st->requests));
    json_object_set_new(cnt, "fallbacks", json_integer((json_int_t)st->fallbacks));
    json_object_set_new(cnt, "2xx", json_integer((json_int_t)st->by_class[0]));
    json_object_set_new(cnt, "3xx", json_integer((json_int_t)st->by_class[1]));
    json_object_set_new(cnt, "4xx", json_integer((json_int_t)st->by_class[2]));
    json_object_set_new(cnt, "5xx", json_integer((json_int_t)st->by_class[3]));
    json_object_set_new(cnt, "error", json_integer((json_int_t)st->by_class[4]));
    for (i = 1; i < PX_E__COUNT; i++)
        json_object_set_new(errs, px_err_names[i], json_integer((json_int_t)st->errors[i]));
    json_object_set_new(cnt, "errors", errs);
    json_object_set_new(o, "healthy", json_boolean(rt_side_usable(svc->snap, side)));
    json_object_set_new(o, "servers", servers);
    json_object_set_new(o, "window", win);
    json_object_set_new(o, "counters", cnt);
    return o;
}

static void
op_status(void *arg, unsigned idx, json_t *obj)
{
    struct px_srv *srv = arg;
    struct px_service *svc = &srv->svcs[idx];
    uint64_t now = px_now_ms(srv);

    json_object_set_new(obj, "mode", json_string(svc->conf->mode == PX_MODE_TCP ? "tcp" : "http"));
    json_object_set_new(obj, "connections", json_integer((json_int_t)svc->conns_active));
    json_object_set_new(obj, "legacy", side_status(svc, RT_LEGACY, now));
    json_object_set_new(obj, "new", side_status(svc, RT_NEW, now));
}

static void
op_switched(void *arg, unsigned idx, enum rt_side left, int drain_s)
{
    struct px_srv *srv = arg;
    struct px_service *svc = &srv->svcs[idx];

    /* HTTP: requests in flight finish; idle pooled connections to the side
     * left are closed now */
    px_pool_close_side(svc, left);
    if (svc->conf->mode == PX_MODE_TCP && drain_s >= 0)
        px_tcp_drain_side(svc, left, drain_s);
}

static const struct adm_ops px_ops = {
    .apply = op_apply,
    .side_healthy = op_side_healthy,
    .status = op_status,
    .switched = op_switched,
};

/* ---- signals ------------------------------------------------------- */

static void
on_grace_over(evutil_socket_t fd, short what, void *arg)
{
    struct px_srv *srv = arg;

    (void)fd;
    (void)what;
    log_at(LL_WARN, "main", 0, "shutdown grace over with %llu connection(s) open",
           (unsigned long long)srv->conns_active);
    event_base_loopexit(srv->base, NULL);
}

static void
on_signal_stop(evutil_socket_t sig, short what, void *arg)
{
    struct px_srv *srv = arg;
    struct timeval tv;

    (void)what;
    if (srv->stopping) {
        if (sig == SIGINT)
            event_base_loopexit(srv->base, NULL);   /* second Ctrl-C: now */
        return;
    }
    srv->stopping = true;
    log_at(LL_INFO, "main", 0, "signal %d: no new connections, draining %llu within %u ms",
           (int)sig, (unsigned long long)srv->conns_active, srv->conf->shutdown_grace_ms);
    px_srv_stop_listening(srv);
    if (srv->conns_active == 0) {
        event_base_loopexit(srv->base, NULL);
        return;
    }
    tv.tv_sec = srv->conf->shutdown_grace_ms / 1000;
    tv.tv_usec = (srv->conf->shutdown_grace_ms % 1000) * 1000;
    srv->grace_timer = evtimer_new(srv->base, on_grace_over, srv);
    if (srv->grace_timer == NULL || evtimer_add(srv->grace_timer, &tv) < 0)
        event_base_loopexit(srv->base, NULL);
}

static void
on_signal_hup(evutil_socket_t sig, short what, void *arg)
{
    struct px_srv *srv = arg;

    (void)sig;
    (void)what;
    log_at(LL_WARN, "main", 0, "SIGHUP: configuration reload is not supported yet; "
           "running configuration of %s unchanged", srv->conf->file);
}

static void
on_libevent_log(int severity, const char *msg)
{
    /* must not call libevent from here */
    log_at(severity >= EVENT_LOG_ERR ? LL_ERR : severity >= EVENT_LOG_WARN ? LL_WARN
                                                                           : LL_DEBUG,
           "libevent", 0, "%s", msg);
}

/* ---- build and run ------------------------------------------------- */

/* Creates every directory of <path>'s parent that is missing (mode 0700). */
static int
mkdir_parents(const char *path)
{
    char buf[4096];
    char *p;

    if (strlen(path) >= sizeof(buf))
        return -1;
    strcpy(buf, path);
    for (p = buf + 1; *p != '\0'; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0700) < 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return 0;
}

/* Default state directory: /var/lib/cutover for root, else
 * $XDG_STATE_HOME/cutover or ~/.local/state/cutover. */
static char *
default_state_path(const char *file)
{
    const char *xdg = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
    char buf[4096];

    if (geteuid() == 0)
        snprintf(buf, sizeof(buf), "/var/lib/cutover/%s", file);
    else if (xdg != NULL && xdg[0] == '/')
        snprintf(buf, sizeof(buf), "%s/cutover/%s", xdg, file);
    else
        snprintf(buf, sizeof(buf), "%s/.local/state/cutover/%s",
                 home != NULL ? home : "/tmp", file);
    return xstrdup(buf);
}

static int
services_init(struct px_srv *srv)
{
    unsigned i, side;

    srv->nsvcs = srv->conf->nservices;
    srv->svcs = xcalloc(srv->nsvcs, sizeof(*srv->svcs));
    for (i = 0; i < srv->nsvcs; i++) {
        struct px_service *svc = &srv->svcs[i];

        svc->srv = srv;
        svc->conf = &srv->conf->services[i];
        svc->idx = i;
        for (side = 0; side < RT_SIDE__COUNT; side++) {
            unsigned k, n = svc->conf->side[side].nservers;

            svc->servers[side] = xcalloc(n, sizeof(*svc->servers[side]));
            for (k = 0; k < n; k++)
                svc->servers[side][k].up = true;   /* up until checks say otherwise */
            hl_window_init(&svc->window[side], svc->conf->rollback.window_s);
        }
    }
    return 0;
}

static void
srv_free(struct px_srv *srv)
{
    unsigned i, side;

    health_stop(srv);
    adm_server_free(srv->admin);
    adm_control_free(srv->ctl);
    for (i = 0; srv->svcs != NULL && i < srv->nsvcs; i++) {
        struct px_service *svc = &srv->svcs[i];

        px_http_close_all(svc);
        px_tcp_close_all(svc);
        if (svc->servers[RT_LEGACY] != NULL)
            px_pool_close_side(svc, RT_LEGACY);
        if (svc->servers[RT_NEW] != NULL)
            px_pool_close_side(svc, RT_NEW);
        if (svc->listeners != NULL) {
            unsigned k;

            for (k = 0; k < svc->conf->nlisten; k++)
                if (svc->listeners[k] != NULL)
                    evconnlistener_free(svc->listeners[k]);
            free(svc->listeners);
        }
        for (side = 0; side < RT_SIDE__COUNT; side++)
            free(svc->servers[side]);
        free((void *)svc->snap);
    }
    free(srv->svcs);
    if (srv->grace_timer != NULL)
        event_free(srv->grace_timer);
    px_conf_free(srv->conf);
}

int
main(int argc, char **argv)
{
    const char *conf_file = NULL;
    bool test_only = false;
    char err[1024];
    char sock_default[512];
    struct px_srv srv;
    struct event *ev_term = NULL, *ev_int = NULL, *ev_hup = NULL;
    struct px_tick *tick = NULL;
    const char **names = NULL;
    uint32_t *initial = NULL;
    char *state_file = NULL, *audit_file = NULL;
    const char *sock, *seed_text = NULL;
    unsigned i;
    int opt, rc = 1;

    memset(&srv, 0, sizeof(srv));
    while ((opt = getopt(argc, argv, "c:tdhR:")) != -1) {
        switch (opt) {
        case 'R':
            seed_text = optarg;
            break;
        case 'c': conf_file = optarg; break;
        case 't': test_only = true; break;
        case 'd': log_min_level = LL_DEBUG; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (conf_file == NULL || optind != argc) {
        usage(stderr);
        return 2;
    }

    srv.conf = px_conf_load(conf_file, err, sizeof(err));
    if (srv.conf == NULL) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    if (test_only) {
        printf("%s: configuration is valid (%u service(s))\n", conf_file, srv.conf->nservices);
        px_conf_free(srv.conf);
        return 0;
    }

    signal(SIGPIPE, SIG_IGN);
    event_set_log_callback(on_libevent_log);
    if (seed_text != NULL) {
        char *end;

        errno = 0;
        srv.rng = strtoull(seed_text, &end, 10);
        if (errno != 0 || *end != '\0' || end == seed_text) {
            fprintf(stderr, "cutoverd: -R %s: not a decimal seed\n", seed_text);
            px_conf_free(srv.conf);
            return 2;
        }
    } else if (getrandom(&srv.rng, sizeof(srv.rng), 0) != (ssize_t)sizeof(srv.rng)) {
        srv.rng = (uint64_t)getpid() * 0x9e3779b97f4a7c15ULL;
    }
    srv.base = event_base_new();
    if (srv.base == NULL) {
        log_at(LL_ERR, "main", 0, "cannot create the event loop");
        goto out;
    }
    if (srv.conf->workers > 1)
        log_at(LL_WARN, "main", 0, "workers %u: this version runs one event loop; "
               "the setting is not applied yet", srv.conf->workers);
    if (srv.conf->admin_listen != NULL)
        log_at(LL_WARN, "main", 0, "admin.listen %s: the HTTP admin endpoint is not "
               "available yet; use the admin socket", srv.conf->admin_listen);
    services_init(&srv);

    state_file = srv.conf->state_file != NULL ? xstrdup(srv.conf->state_file)
                                              : default_state_path("state.json");
    audit_file = srv.conf->audit_file != NULL ? xstrdup(srv.conf->audit_file)
                                              : default_state_path("audit.jsonl");
    if (mkdir_parents(state_file) < 0 || mkdir_parents(audit_file) < 0) {
        log_at(LL_ERR, "main", 0, "cannot create the directory of %s or %s: %s",
               state_file, audit_file, strerror(errno));
        goto out;
    }
    names = xcalloc(srv.nsvcs, sizeof(*names));
    initial = xcalloc(srv.nsvcs, sizeof(*initial));
    for (i = 0; i < srv.nsvcs; i++) {
        names[i] = srv.conf->services[i].name;
        initial[i] = srv.conf->services[i].route.weight_bp;
    }
    srv.ctl = adm_control_new(names, initial, srv.nsvcs, state_file, audit_file,
                              &px_ops, &srv, err, sizeof(err));
    if (srv.ctl == NULL) {
        log_at(LL_ERR, "main", 0, "%s", err);
        goto out;
    }
    for (i = 0; i < srv.nsvcs; i++)
        adm_control_set_plan(srv.ctl, i, &srv.conf->services[i].plan,
                             srv.conf->services[i].rollback.min_requests);
    for (i = 0; i < srv.nsvcs; i++) {
        const struct adm_svc_state *st = adm_control_state(srv.ctl, i);

        px_service_publish(&srv.svcs[i], st->weight_bp, st->generation);
        srv.svcs[i].applied_state = (int)st->state;
        log_at(LL_INFO, "main", 0, "service %s: weight %u.%02u%% state %s generation %llu",
               srv.svcs[i].conf->name, st->weight_bp / 100, st->weight_bp % 100,
               adm_state_names[st->state], (unsigned long long)st->generation);
    }

    if (srv.conf->admin_socket != NULL) {
        sock = srv.conf->admin_socket;
    } else {
        ctl_default_socket(sock_default, sizeof(sock_default));
        sock = sock_default;
    }
    srv.admin = adm_server_new(srv.base, srv.ctl, sock, srv.conf->admin_socket_mode,
                               err, sizeof(err));
    if (srv.admin == NULL) {
        log_at(LL_ERR, "main", 0, "admin socket: %s", err);
        goto out;
    }
    if (health_start(&srv, audit_file) < 0)
        goto out;
    if (px_srv_listen(&srv) < 0)
        goto out;
    if ((tick = px_tick_new(&srv)) == NULL)
        goto out;

    ev_term = evsignal_new(srv.base, SIGTERM, on_signal_stop, &srv);
    ev_int = evsignal_new(srv.base, SIGINT, on_signal_stop, &srv);
    ev_hup = evsignal_new(srv.base, SIGHUP, on_signal_hup, &srv);
    if (ev_term == NULL || ev_int == NULL || ev_hup == NULL ||
        evsignal_add(ev_term, NULL) < 0 || evsignal_add(ev_int, NULL) < 0 ||
        evsignal_add(ev_hup, NULL) < 0) {
        log_at(LL_ERR, "main", 0, "cannot install signal handlers");
        goto out;
    }
    log_at(LL_INFO, "main", 0, "ready: %u service(s), admin socket %s, state %s",
           srv.nsvcs, sock, state_file);
    if (event_base_dispatch(srv.base) < 0) {
        log_at(LL_ERR, "main", 0, "event loop failed");
        goto out;
    }
    log_at(LL_INFO, "main", 0, "stopped");
    rc = 0;

out:
    if (ev_term != NULL)
        event_free(ev_term);
    if (ev_int != NULL)
        event_free(ev_int);
    if (ev_hup != NULL)
        event_free(ev_hup);
    px_tick_free(tick);
    srv_free(&srv);
    free(names);
    free(initial);
    free(state_file);
    free(audit_file);
    if (srv.base != NULL)
        event_base_free(srv.base);
    return rc;
}
