/*
 * main: cutoverd's composition root. Parses the arguments, loads the config,
 * builds every module (services and their routing snapshots, the control
 * plane with its state store and audit log, the admin socket and HTTP
 * endpoint, the checkers, the listeners, the workers, the policy tick),
 * wires the control plane's ops to the data plane (proxy/ops.c), handles
 * the signals, runs the main loop and tears everything down. Nothing else
 * creates modules. What the signals set off lives elsewhere: the reload in
 * proxy/reload.c, the shutdown's fan-out in proxy/ops.c.
 *
 * Startup order matters: the state file is restored before any listener
 * opens, so the first request already sees the persisted weight and latch.
 */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "admin/audit.h"
#include "admin/control.h"
#include "admin/ctl_proto.h"
#include "admin/http.h"
#include "admin/socket.h"
#include "admin/store_pg.h"
#include "admin/store_pg_schema.h"
#include "admin/tokens.h"
#include "lib/conf.h"
#include "lib/fs.h"
#include "lib/log.h"
#include "lib/notify.h"
#include "lib/xmalloc.h"
#include "lib/timeval.h"
#include "lib/version.h"
#include "proxy/accesslog.h"
#include "proxy/conf.h"
#include "proxy/cookie.h"
#include "proxy/daemon.h"
#include "proxy/gates.h"
#include "proxy/fleet_tick.h"
#include "proxy/gates_check.h"
#include "proxy/io.h"
#include "proxy/listen.h"
#include "proxy/metrics.h"
#include "proxy/ops.h"
#include "proxy/reload.h"
#include "proxy/server.h"
#include "proxy/srvadmin.h"
#include "proxy/tick.h"
#include "proxy/tls.h"
#include "proxy/verdict.h"
#include "proxy/webhook.h"
#include "proxy/worker.h"

#define PX_MALLOC_KEEP (4 * 1024 * 1024)   /* free heap kept per malloc arena (main()) */

/* px_srvadmin_set_writer()'s writer: the control plane's writer thread. */
static void
srvadmin_write(void *arg, const char *file, char *text, size_t len, const char *what,
               const char *note)
{
    adm_control_write_file(arg, file, text, len, what, note);
}

static void
usage(FILE *f)
{
    fprintf(f,
            "usage: cutoverd -c FILE [-t [--check-store] [--check-gates]] [-d] [-R SEED]\n"
            "       cutoverd --help | --version\n"
            "  -c, --config FILE  configuration file (JSON)\n"
            "  -t, --test         check the configuration, report every error found,\n"
            "                     and exit (0 valid, 1 invalid)\n"
            "  --check-store      with -t: connect to store.postgres, report its schema\n"
            "  --check-gates      with -t: connect to every gate's databases, report\n"
            "                     what each finds (changes nothing)\n"
            "  -d, --debug        debug logging\n"
            "  -R, --seed SEED    seed of the random draws (tests; default: the kernel's)\n"
            "  -h, --help         this help\n"
            "  -V, --version      the version\n");
}

/* `-t --check-store`: connects to store.postgres, reads the schema version
 * and reports; changes nothing. 0, or -1 (printed). */
static int
check_store_report(const struct px_conf *conf, const char *conf_file)
{
    struct event_base *base;
    struct adm_pgstore *s;
    char err[1024];
    int found, now, rc = -1;
    bool fatal = false;

    if (conf->store_pg == NULL) {
        fprintf(stderr, "%s: --check-store: no store.postgres in the configuration\n",
                conf_file);
        return -1;
    }
    base = event_base_new();
    s = base != NULL ? adm_pgstore_new(base, conf->store_pg, (uint64_t)getpid(), NULL,
                                       NULL) : NULL;
    if (s == NULL) {
        fprintf(stderr, "%s: --check-store: cannot create the client\n", conf_file);
    } else {
        adm_pgstore_check_only(s);
        if (adm_pgstore_wait_ready(s, err, sizeof(err), &fatal) != 0) {
            fprintf(stderr, "%s: %s\n", conf_file, err);
        } else {
            adm_pgstore_versions(s, &found, &now);
            if (found > adm_pg_schema_latest()) {
                fprintf(stderr, "%s: %s: the database's schema is version %d, newer than "
                        "this cutoverd's (%d): cutoverd would refuse to start\n", conf_file,
                        adm_pgstore_name(s), found, adm_pg_schema_latest());
            } else {
                printf("%s: %s: connected, fleet %s, instance %s, schema version %d%s\n",
                       conf_file, adm_pgstore_name(s), conf->store_pg->fleet,
                       conf->store_pg->instance, found,
                       found == adm_pg_schema_latest() ? " (current)"
                       : found == 0 ? " (none yet: cutoverd creates it at start)"
                       : " (cutoverd migrates it at start)");
                rc = 0;
            }
        }
    }
    adm_pgstore_free(s);
    if (base != NULL)
        event_base_free(base);
    return rc;
}

/* ---- signals ------------------------------------------------------- */

static void
on_grace_over(evutil_socket_t fd, short what, void *arg)
{
    struct px_daemon *d = arg;
    struct px_srv *srv = &d->srv;

    (void)fd;
    (void)what;
    px_workers_fold(srv);
    {
        uint64_t open = srv->conns_active;
        unsigned i;

        for (i = 0; i < srv->nsvcs; i++)
            open += srv->svcs[i]->w_conns;
        log_at(LL_WARN, "main", 0, "shutdown grace over with %llu connection(s) open",
               (unsigned long long)open);
    }
    event_base_loopexit(srv->base, NULL);
}

static void
on_signal_stop(evutil_socket_t sig, short what, void *arg)
{
    struct px_daemon *d = arg;
    struct px_srv *srv = &d->srv;
    struct timeval tv;

    (void)what;
    if (srv->stopping) {
        if (sig == SIGINT)
            event_base_loopexit(srv->base, NULL);   /* second Ctrl-C: now */
        return;
    }
    srv->stopping = true;
    adm_http_set_stopping(d->admin_http);   /* GET /healthz: 503 from now on */
    log_at(LL_INFO, "main", 0, "signal %d: no new connections, draining %llu within %u ms",
           (int)sig, (unsigned long long)srv->conns_active, srv->conf->shutdown_grace_ms);
    if (notify_sendf("STOPPING=1\nSTATUS=draining %llu connection(s)",
                     (unsigned long long)srv->conns_active) < 0)
        log_at(LL_WARN, "main", 0, "sd_notify STOPPING: %s", strerror(errno));
    px_ops_stop(srv);
    if (srv->conns_active == 0 && px_workers_drained(srv)) {
        event_base_loopexit(srv->base, NULL);
        return;
    }
    tv = tv_ms(srv->conf->shutdown_grace_ms);
    d->grace_timer = evtimer_new(srv->base, on_grace_over, d);
    if (d->grace_timer == NULL || evtimer_add(d->grace_timer, &tv) < 0)
        event_base_loopexit(srv->base, NULL);
}

static void
on_signal_hup(evutil_socket_t sig, short what, void *arg)
{
    struct px_daemon *d = arg;
    struct px_srv *srv = &d->srv;
    struct timespec ts;

    (void)sig;
    (void)what;
    /* systemd: "reloading" until READY=1 again, whether the reload took */
    clock_gettime(CLOCK_MONOTONIC, &ts);
    if (!srv->stopping &&
        notify_sendf("RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading %s",
                     (unsigned long long)ts.tv_sec * 1000000ULL +
                        (unsigned long long)ts.tv_nsec / 1000ULL, srv->conf->file) < 0)
        log_at(LL_WARN, "main", 0, "sd_notify RELOADING: %s", strerror(errno));
    px_reload(d);                      /* on_reloaded() when it ended */
}

/* A reload ended (applied or refused): the service manager hears READY. */
static void
on_reloaded(struct px_daemon *d)
{
    struct px_srv *srv = &d->srv;

    if (!srv->stopping &&
        notify_sendf("READY=1\nSTATUS=serving %u service(s), configuration generation %llu",
                     srv->nsvcs, (unsigned long long)srv->conf_generation) < 0)
        log_at(LL_WARN, "main", 0, "sd_notify READY: %s", strerror(errno));
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

/* The sticky-cookie key file: sticky.key beside the state file. */
static char *
cookie_key_path(const char *state_file)
{
    char *dir = fs_dir_of(state_file), *p;
    size_t n = strlen(dir) + sizeof(PX_COOKIE_KEY_FILE) + 1;

    p = xmalloc(n);
    snprintf(p, n, "%s/%s", dir, PX_COOKIE_KEY_FILE);
    free(dir);
    return p;
}

/* Builds the main replica's services; each takes its TLS material from
 * <tls> (px_tls_load_all(), emptied). */
static int
services_init(struct px_srv *srv, struct px_tls_ctx **tls)
{
    unsigned i;

    srv->nsvcs = srv->conf->nservices;
    srv->svcs = xcalloc(srv->nsvcs, sizeof(*srv->svcs));
    for (i = 0; i < srv->nsvcs; i++) {
        srv->svcs[i] = xcalloc(1, sizeof(*srv->svcs[i]));
        px_service_init(srv->svcs[i], srv, srv->cref, i);
        srv->svcs[i]->tls = tls[i];
        tls[i] = NULL;
    }
    return 0;
}

/* Frees service <svc> and its connections (exit). */
static void
service_free_all(struct px_service *svc)
{
    px_verdict_stop_service(svc);
    px_service_close_conns(svc);
    px_service_free(svc);
}

static void
daemon_free(struct px_daemon *d)
{
    struct px_srv *srv = &d->srv;
    struct px_service *svc;
    unsigned i;

    srv->freeing = true;               /* retired services are freed here */
    px_verdict_stop(srv);
    adm_server_free(d->admin);
    adm_control_free(d->ctl);
    for (i = 0; srv->svcs != NULL && i < srv->nsvcs; i++)
        service_free_all(srv->svcs[i]);
    while ((svc = px_srv_retired_pop(srv)) != NULL)
        service_free_all(svc);
    free(srv->svcs);
    if (d->grace_timer != NULL)
        event_free(d->grace_timer);
    /* after the connections: those closed above wrote their lines */
    px_access_log_free(srv->access_log);
    srv->access_log = NULL;
    px_srv_loop_free(srv);
    px_confref_put(srv->cref);
}

/* ---- HTTP admin endpoint (admin.listen) --------------------------------- */

/* Starts the HTTP admin endpoint on admin.listen with <*tokens> (taken);
 * GET /metrics renders proxy/metrics.c. Returns the server or NULL
 * (logged). */
static struct adm_http *
admin_http_start(struct px_daemon *d, struct adm_tokens **tokens)
{
    struct px_srv *srv = &d->srv;
    struct adm_http_conf hc;
    struct adm_http *h;
    struct px_addr a;
    char err[512];

    if (px_addr_parse(srv->conf->admin_listen, &a) != 0) {
        log_at(LL_ERR, "main", 0, "admin.listen %s: not an address", srv->conf->admin_listen);
        adm_tokens_free(*tokens);
        *tokens = NULL;
        return NULL;
    }
    hc = (struct adm_http_conf){
        .addr = (const struct sockaddr *)&a.ss, .addrlen = a.len,
        .addr_text = srv->conf->admin_listen,
        .read_token_required = srv->conf->admin_read_token_required,
        .metrics = px_metrics_render_cb, .metrics_part = px_metrics_render_part,
        .metrics_arg = d,
    };
    h = adm_http_new(srv->base, d->ctl, tokens, &hc, err, sizeof(err));
    if (h == NULL)
        log_at(LL_ERR, "main", 0, "admin.listen: %s", err);
    return h;
}

int
main(int argc, char **argv)
{
    const char *conf_file = NULL;
    bool test_only = false;
    char err[1024];
    char sock_default[512];
    struct px_daemon d;
    struct px_srv *srv = &d.srv;
    struct event *ev_term = NULL, *ev_int = NULL, *ev_hup = NULL;
    struct adm_tokens *tokens = NULL;  /* until the HTTP admin endpoint takes them */
    struct adm_http *admin_http = NULL;
    const char **names = NULL;
    uint32_t *initial = NULL;
    char *state_file = NULL, *audit_file = NULL, *key_file = NULL;
    const char *sock, *seed_text = NULL;
    struct px_tls_ctx **tls = NULL;    /* until the services take it */
    struct adm_ops ops;
    unsigned i, ntls = 0;
    int opt, rc = 1;
    bool check_store = false, check_gates = false;
    static const struct option longopts[] = {
        { "config", required_argument, NULL, 'c' },
        { "test", no_argument, NULL, 't' },
        { "check-store", no_argument, NULL, 'S' },
        { "check-gates", no_argument, NULL, 'G' },
        { "debug", no_argument, NULL, 'd' },
        { "seed", required_argument, NULL, 'R' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 },
    };

    memset(&d, 0, sizeof(d));
    while ((opt = getopt_long(argc, argv, "c:tdhVR:", longopts, NULL)) != -1) {
        switch (opt) {
        case 'S': check_store = true; break;
        case 'G': check_gates = true; break;
        case 'V':
            printf("cutoverd %s\n", CUTOVER_VERSION);
            return 0;
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
    if (conf_file == NULL || optind != argc || ((check_store || check_gates) && !test_only)) {
        usage(stderr);
        return 2;
    }

    {
        /* every error the loader can find, one line each (bounded) */
        char *errs = xmalloc(CONF_ERRORS_MAX * 512);

        srv->conf = px_conf_load_n(conf_file, CONF_ERRORS_MAX, errs, CONF_ERRORS_MAX * 512);
        if (srv->conf == NULL) {
            fprintf(stderr, "%s\n", errs);
            free(errs);
            return 1;
        }
        free(errs);
    }
    /* A bad token file stops the start, and `-t` reports it too. A missing
     * one only warns under -t: configs are checked before their secrets
     * are deployed (the daemon itself still refuses to start without it). */
    if (test_only && srv->conf->admin_token_file != NULL
        && access(srv->conf->admin_token_file, F_OK) != 0 && errno == ENOENT) {
        fprintf(stderr, "%s: warning: admin.token_file %s does not exist (yet): cutoverd "
                "will not start without it\n", conf_file, srv->conf->admin_token_file);
    } else if (srv->conf->admin_token_file != NULL
               && (tokens = adm_tokens_load(srv->conf->admin_token_file, err,
                                            sizeof(err))) == NULL) {
        fprintf(stderr, "%s\n", err);
        px_conf_free(srv->conf);
        return 1;
    }
    if (px_notify_conf_tokens(srv->conf->notify, test_only, conf_file, err,
                              sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        adm_tokens_free(tokens);
        px_conf_free(srv->conf);
        return 1;
    }
    /* every certificate and key, read and matched now; under -t a file not
     * deployed yet only warns, as the token file does */
    if (px_tls_load_all(srv->conf, NULL, test_only, &tls, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        adm_tokens_free(tokens);
        px_conf_free(srv->conf);
        return 1;
    }
    ntls = srv->conf->nservices;
    if (test_only) {
        /* an existing sticky-cookie key file must be valid; a missing one is
         * created at the first start */
        struct px_cookie_set *cs = NULL;
        int krc;

        state_file = srv->conf->state_file != NULL ? xstrdup(srv->conf->state_file)
                                                   : default_state_path("state.json");
        key_file = cookie_key_path(state_file);
        krc = px_cookie_set_build(srv->conf, key_file, false, NULL, &cs, err, sizeof(err));
        if (krc != 0 && errno == ENOENT)
            krc = 0;
        px_cookie_set_free(cs);
        free(key_file);
        free(state_file);
        if (krc != 0) {
            fprintf(stderr, "%s\n", err);
            adm_tokens_free(tokens);
            px_conf_free(srv->conf);
            return 1;
        }
        /* both run when both are asked for: every problem in one go. Their
         * reports say what the database clients would log (unless -d) */
        if (log_min_level != LL_DEBUG)
            log_min_level = LL_ERR;
        if (check_store && check_store_report(srv->conf, conf_file) != 0)
            krc = -1;
        if (check_gates && px_gates_check_report(srv->conf, conf_file, (uint64_t)getpid(),
                                                 stdout, stderr) != 0)
            krc = -1;
        if (krc != 0) {
            px_tls_free_all(tls, ntls);
            adm_tokens_free(tokens);
            px_conf_free(srv->conf);
            return 1;
        }
        printf("%s: configuration is valid (%u service(s))\n", conf_file, srv->conf->nservices);
        px_tls_free_all(tls, ntls);
        adm_tokens_free(tokens);
        px_conf_free(srv->conf);
        return 0;
    }

    signal(SIGPIPE, SIG_IGN);
    /* glibc hands the top of its heap back to the kernel once 128 KiB there
     * are free, and asks for it again at the next allocation that does not
     * fit: the data plane's read buffers (allocated per read, up to
     * PX_IO_READ_MAX, freed once relayed) made that happen several times
     * per MiB relayed, and every page of such a read then faulted in anew.
     * Up to PX_MALLOC_KEEP of free memory stays with each arena instead. */
    mallopt(M_TRIM_THRESHOLD, PX_MALLOC_KEEP);
    event_set_log_callback(on_libevent_log);
    if (seed_text != NULL) {
        char *end;

        errno = 0;
        srv->rng = strtoull(seed_text, &end, 10);
        if (errno != 0 || *end != '\0' || end == seed_text) {
            fprintf(stderr, "cutoverd: -R %s: not a decimal seed\n", seed_text);
            px_tls_free_all(tls, ntls);
            adm_tokens_free(tokens);
            px_conf_free(srv->conf);
            return 2;
        }
    } else if (getrandom(&srv->rng, sizeof(srv->rng), 0) != (ssize_t)sizeof(srv->rng)) {
        srv->rng = (uint64_t)getpid() * 0x9e3779b97f4a7c15ULL;
    }
    /* the sender keeps its own copy of the startup config's webhooks (a
     * reload replaces the config, and only warns when they changed) */
    d.notify = px_notify_conf_dup(srv->conf->notify);
    /* from here the config is shared by reference (server.h, rule 1) */
    srv->conf_generation = 1;
    srv->cref = px_confref_new(srv->conf, srv->conf_generation);
    srv->base = px_event_base_new();
    if (srv->base == NULL) {
        log_at(LL_ERR, "main", 0, "cannot create the event loop");
        goto out;
    }
    srv->nworkers = px_workers_resolve(srv->conf->workers);
    px_io_fd_reserve_init();           /* before any worker or socket of the data plane */
    if (px_io_fd_marks()->limit > 0)
        log_at(LL_INFO, "main", 0, "descriptors: RLIMIT_NOFILE %u: client connections "
               "below %u, upstream sockets below %u, the rest kept for health checks, "
               "state, audit and admin", px_io_fd_marks()->limit,
               px_io_fd_marks()->clients_max, px_io_fd_marks()->data_max);
    services_init(srv, tls);
    {
        struct timespec now;

        clock_gettime(CLOCK_REALTIME, &now);
        d.start_time_s = (double)now.tv_sec + (double)now.tv_nsec / 1e9;
    }
    if (srv->conf->access_log_file != NULL) {
        srv->access_log = px_access_log_new(srv->base, srv->conf->access_log_file, err,
                                            sizeof(err));
        if (srv->access_log == NULL) {
            log_at(LL_ERR, "main", 0, "%s", err);
            goto out;
        }
        log_at(LL_INFO, "main", 0, "access log %s", srv->conf->access_log_file);
    }

    state_file = srv->conf->state_file != NULL ? xstrdup(srv->conf->state_file)
                                               : default_state_path("state.json");
    audit_file = srv->conf->audit_file != NULL ? xstrdup(srv->conf->audit_file)
                                               : default_state_path("audit.jsonl");
    if (fs_mkdir_parent(state_file, err, sizeof(err)) != 0
        || fs_mkdir_parent(audit_file, err, sizeof(err)) != 0) {
        log_at(LL_ERR, "main", 0, "%s", err);
        goto out;
    }
    key_file = cookie_key_path(state_file);
    d.cookie_key_file = key_file;
    if (px_cookie_set_build(srv->conf, key_file, true, NULL, &srv->cref->cookies, err,
                            sizeof(err)) != 0) {
        log_at(LL_ERR, "main", 0, "%s", err);
        goto out;
    }
    names = xcalloc(srv->nsvcs, sizeof(*names));
    initial = xcalloc(srv->nsvcs, sizeof(*initial));
    for (i = 0; i < srv->nsvcs; i++) {
        names[i] = srv->conf->services[i].name;
        initial[i] = srv->conf->services[i].route.weight_bp;
    }
    /* before the control plane: its startup checks may audit */
    if ((d.webhooks = px_webhooks_new(srv->base, d.notify, err, sizeof(err))) == NULL) {
        log_at(LL_ERR, "main", 0, "%s", err);
        goto out;
    }
    adm_audit_set_observer(px_webhooks_observe, d.webhooks);
    ops = px_ops;
    ops.server_admin = px_srvadmin_op;     /* beside ops.c: it starts checkers */
    d.ctl = adm_control_new(names, initial, srv->nsvcs, state_file, audit_file,
                            &ops, srv, err, sizeof(err));
    if (d.ctl == NULL) {
        log_at(LL_ERR, "main", 0, "%s", err);
        goto out;
    }
    adm_control_set_loop(d.ctl, srv->base);
    for (i = 0; i < srv->nsvcs; i++)
        adm_control_set_plan(d.ctl, i, &srv->conf->services[i].plan,
                             srv->conf->services[i].rollback.min_requests);
    /* the fleet's state, before anything serves (docs/fleet.md) */
    if (srv->conf->store_pg != NULL
        && adm_control_fleet_open(d.ctl, srv->base, srv->conf->store_pg, srv->rng, err,
                                  sizeof(err)) != 0) {
        log_at(LL_ERR, "main", 0, "%s", err);
        goto out;
    }
    adm_control_set_require_reason(d.ctl, srv->conf->admin_require_reason);
    for (i = 0; i < srv->nsvcs; i++) {
        const struct adm_svc_state *st = adm_control_state(d.ctl, i);

        px_service_publish(srv->svcs[i], st->weight_bp, st->generation);
        srv->svcs[i]->applied_state = (int)st->state;
        log_at(LL_INFO, "main", 0, "service %s: weight %u.%02u%% state %s generation %llu",
               srv->svcs[i]->conf->name, st->weight_bp / 100, st->weight_bp % 100,
               adm_state_names[st->state], (unsigned long long)st->generation);
    }

    {
        /* the operator's drained and disabled servers, before any checker,
         * worker or listener starts */
        char *dir = fs_dir_of(state_file), *f = fs_resolve(dir, PX_SRVADMIN_FILE);
        int src = px_srvadmin_load(&d, f, err, sizeof(err));

        free(dir);
        free(f);
        if (src != 0) {
            log_at(LL_ERR, "main", 0, "%s", err);
            goto out;
        }
        px_srvadmin_set_writer(srvadmin_write, d.ctl);
    }
    if (srv->conf->admin_socket != NULL) {
        sock = srv->conf->admin_socket;
    } else {
        ctl_default_socket(sock_default, sizeof(sock_default));
        sock = sock_default;
    }
    d.admin = adm_server_new_group(srv->base, d.ctl, sock, srv->conf->admin_socket_mode,
                                   srv->conf->admin_socket_gid, err, sizeof(err));
    if (d.admin == NULL) {
        log_at(LL_ERR, "main", 0, "admin socket: %s", err);
        goto out;
    }
    if (srv->conf->admin_listen != NULL
        && (admin_http = admin_http_start(&d, &tokens)) == NULL)
        goto out;
    d.admin_http = admin_http;         /* for the metrics */
    /* before any listener opens: a signal that comes as soon as the port
     * answers must find its handler (it runs once the loop does) */
    ev_term = evsignal_new(srv->base, SIGTERM, on_signal_stop, &d);
    ev_int = evsignal_new(srv->base, SIGINT, on_signal_stop, &d);
    d.reloaded = on_reloaded;
    ev_hup = evsignal_new(srv->base, SIGHUP, on_signal_hup, &d);
    if (ev_term == NULL || ev_int == NULL || ev_hup == NULL ||
        evsignal_add(ev_term, NULL) < 0 || evsignal_add(ev_int, NULL) < 0 ||
        evsignal_add(ev_hup, NULL) < 0) {
        log_at(LL_ERR, "main", 0, "cannot install signal handlers");
        goto out;
    }
    d.audit_file = audit_file;
    if (px_verdict_start(&d) < 0)
        goto out;
    if (px_srv_listen(srv) < 0)
        goto out;
    /* what is left of the descriptors once every loop listens sizes the
     * cap: the other loops open a listener per service, an event base and
     * their wakeups */
    d.conns_cap_default = px_listen_cap_default(srv->nworkers > 1
                                                ? (srv->nworkers - 1) * (srv->nsvcs + 4) : 0);
    if (px_workers_start(srv) < 0)
        goto out;
    px_daemon_set_cap(&d);
    if ((d.tick = px_tick_new(srv, d.ctl)) == NULL)
        goto out;
    d.gates = px_gates_new(&d);        /* first checks at the next loop turn */
    /* the fleet's windows and its leader (docs/fleet.md) */
    if (px_fleet_start(&d) != 0)
        goto out;

    log_at(LL_INFO, "main", 0, "ready: %u service(s), %u worker(s), admin socket %s, state %s",
           srv->nsvcs, srv->nworkers, sock, state_file);
    /* systemd (Type=notify): the listeners accept from here on */
    if (notify_sendf("READY=1\nSTATUS=serving %u service(s)\nMAINPID=%ld", srv->nsvcs,
                     (long)getpid()) < 0)
        log_at(LL_WARN, "main", 0, "sd_notify READY: %s", strerror(errno));
    if (event_base_dispatch(srv->base) < 0) {
        log_at(LL_ERR, "main", 0, "event loop failed");
        goto out;
    }
    log_at(LL_INFO, "main", 0, "stopped");
    rc = 0;

out:
    /* Teardown frees the signal events: a second SIGTERM (a service manager
     * repeating itself) or a SIGHUP (logrotate) arriving now must not turn a
     * clean stop into death by signal. */
    signal(SIGTERM, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    if (ev_term != NULL)
        event_free(ev_term);
    if (ev_int != NULL)
        event_free(ev_int);
    if (ev_hup != NULL)
        event_free(ev_hup);
    px_reload_stop(&d);                /* a config file still being read */
    px_tick_free(d.tick);
    px_gates_free(d.gates);            /* before the control plane it calls */
    d.gates = NULL;
    if (d.ctl != NULL)
        adm_control_flush(d.ctl);      /* a last save; says what a restart will miss */
    px_workers_free(srv);              /* they close what they still hold */
    d.admin_http = NULL;
    adm_http_free(admin_http);         /* before the control plane it calls */
    adm_tokens_free(tokens);
    daemon_free(&d);
    adm_audit_set_observer(NULL, NULL);
    px_webhooks_free(d.webhooks);
    px_notify_conf_free(d.notify);
    px_srvadmin_free();
    px_tls_free_all(tls, ntls);        /* emptied once the services took it */
    free(names);
    free(initial);
    free(state_file);
    free(audit_file);
    free(key_file);
    if (srv->base != NULL)
        event_base_free(srv->base);
    return rc;
}
