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
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <jansson.h>

#include "admin/audit.h"
#include "admin/control.h"
#include "admin/ctl_proto.h"
#include "admin/http.h"
#include "lib/fs.h"
#include "lib/log.h"
#include "lib/notify.h"
#include "admin/socket.h"
#include "admin/tokens.h"
#include "lib/xmalloc.h"
#include "health/check.h"
#include "health/window.h"
#include "proxy/accesslog.h"
#include "proxy/conf.h"
#include "proxy/http.h"
#include "proxy/listen.h"
#include "proxy/metrics.h"
#include "proxy/pool.h"
#include "proxy/server.h"
#include "proxy/tcp.h"
#include "proxy/tick.h"
#include "proxy/worker.h"
#include "router/router.h"

#define PX_MALLOC_KEEP (4 * 1024 * 1024)   /* free heap kept per malloc arena (main()) */

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

/* ---- jobs: what the main loop applies reaches every worker ------------- */

/* Each runs on a worker's thread with its replica (proxy/worker.h); the
 * main loop applies the same to its own replica and waits for all. Service
 * indices are those of the current config: replicas hold the same services
 * in the same order. */

struct job_svc {
    unsigned idx;                    /* service */
    uint32_t weight_bp;              /* routing snapshot to publish */
    uint64_t generation;
    int state;                       /* enum adm_state: applied_state */
    bool reset_new;                  /* empty new's window */
    enum rt_side side;               /* set_up, switched: the side */
    unsigned server;                 /* set_up: index in the side */
    bool up;                         /* set_up: the verdict */
    int drain_s;                     /* switched: TCP drain, or -1 */
};

static void
job_apply(struct px_srv *w, void *arg)
{
    const struct job_svc *j = arg;
    struct px_service *svc = w->svcs[j->idx];

    px_service_publish(svc, j->weight_bp, j->generation);
    if (j->reset_new)
        hl_window_reset(&svc->window[RT_NEW]);
    svc->applied_state = j->state;
}

static void
job_set_up(struct px_srv *w, void *arg)
{
    const struct job_svc *j = arg;
    struct px_service *svc = w->svcs[j->idx];

    if (j->server < svc->conf->side[j->side].nservers)
        px_service_set_up(svc, j->side, j->server, j->up, j->weight_bp, j->generation);
}

static void
job_switched(struct px_srv *w, void *arg)
{
    const struct job_svc *j = arg;
    struct px_service *svc = w->svcs[j->idx];

    px_pool_close_side(svc, j->side);
    if (svc->conf->mode == PX_MODE_TCP && j->drain_s >= 0)
        px_tcp_drain_side(svc, j->side, j->drain_s);
}

static void
job_publish_all(struct px_srv *w, void *arg)
{
    struct px_srv *m = arg;
    unsigned i;

    for (i = 0; i < w->nsvcs && i < m->nsvcs; i++) {
        px_service_publish(w->svcs[i], m->svcs[i]->snap->weight_bp,
                           m->svcs[i]->snap->generation);
        w->svcs[i]->applied_state = m->svcs[i]->applied_state;
    }
}

static void
job_reopen_logs(struct px_srv *w, void *arg)
{
    (void)arg;
    if (w->access_log != NULL)
        px_access_log_reopen(w->access_log);
}

static void
job_stop(struct px_srv *w, void *arg)
{
    (void)arg;
    w->stopping = true;
    px_srv_stop_listening(w);
    if (w->conns_active == 0)
        px_worker_drained(w);
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
    {
        struct job_svc j = { .idx = svc->idx, .side = s->side, .server = s->index,
                             .up = is_up, .weight_bp = st->weight_bp,
                             .generation = st->generation };

        px_workers_run(srv, job_set_up, &j);
    }
    if (is_up)
        snprintf(reason, sizeof(reason), "%s/%s UP after %u passed check%s", side,
                 s->addr.text, count, count == 1 ? "" : "s");
    else
        snprintf(reason, sizeof(reason), "%s/%s DOWN after %u failed check%s: %s", side,
                 s->addr.text, count,
                 count == 1 ? "" : "s", why);
    {
        char msg[600], checks[16];

        snprintf(msg, sizeof(msg), "%s %s", svc->conf->name, reason);
        snprintf(checks, sizeof(checks), "%u", count);
        log_kv(is_up ? LL_INFO : LL_WARN, "health", "health", "service", svc->conf->name,
               "side", side, "server", s->addr.text, "verdict", is_up ? "up" : "down",
               "checks", checks, "msg", msg);
    }
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
                    "server", s->addr.text,
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

/* Creates and starts the active checker of server <s> of <svc> (which has a
 * "health" section), starting from the server's current verdict. Its
 * jitter is seeded from the daemon's seed (-R) without drawing from it, so
 * routing draws stay as they were. 0, or -1 (logged). */
static int
checker_start(struct px_srv *srv, struct px_service *svc, struct px_server_rt *s)
{
    char label[160];

    snprintf(label, sizeof(label), "%s %s/%s", svc->conf->name, rt_side_names[s->side],
             s->addr.text);
    s->check = hl_check_new(srv->base, &svc->conf->health,
                            (const struct sockaddr *)&s->addr.ss, s->addr.len,
                            s->addr.text, label,
                            srv->rng ^ (++srv->checks_started * 0xd1b54a32d192ed03ULL),
                            on_health_change, s);
    if (s->check != NULL)
        hl_check_set_verdict(s->check, s->up);
    if (s->check == NULL || hl_check_start(s->check) < 0) {
        log_at(LL_ERR, "health", 0, "%s: cannot start the health checks", label);
        hl_check_free(s->check);
        s->check = NULL;
        return -1;
    }
    return 0;
}

/* Starts the checkers of every server of <svc> that has none yet. 0, or -1
 * (logged). */
static int
health_start_service(struct px_srv *srv, struct px_service *svc)
{
    const struct hl_check_conf *hc = &svc->conf->health;
    unsigned side, k, started = 0;
    int rc = 0;

    if (hc->type == HL_CHECK_NONE || srv->worker_id != 0)
        return 0;                      /* checkers run on the main loop only */
    for (side = 0; side < RT_SIDE__COUNT; side++) {
        for (k = 0; k < svc->conf->side[side].nservers; k++) {
            if (svc->servers[side][k]->check != NULL)
                continue;
            if (checker_start(srv, svc, svc->servers[side][k]) < 0)
                rc = -1;
            else
                started++;
        }
    }
    if (started > 0)
        log_at(LL_INFO, "health", 0, "service %s: %s checks every %u ms (timeout %u ms, "
               "rise %u, fall %u)", svc->conf->name,
               hc->type == HL_CHECK_HTTP ? "http" : "tcp", hc->interval_ms,
               hc->timeout_ms, hc->rise, hc->fall);
    return rc;
}

/* Creates and starts the active checker of every server of every service
 * that has a "health" section. 0, or -1 (logged). */
static int
health_start(struct px_srv *srv, const char *audit_file)
{
    unsigned i;

    srv->audit_file = audit_file;
    for (i = 0; i < srv->nsvcs; i++)
        if (health_start_service(srv, srv->svcs[i]) < 0)
            return -1;
    return 0;
}

/* Stops and frees the checkers of <svc>. */
static void
health_stop_service(struct px_service *svc)
{
    unsigned side, k;

    for (side = 0; side < RT_SIDE__COUNT; side++)
        for (k = 0; svc->servers[side] != NULL && k < svc->conf->side[side].nservers; k++) {
            hl_check_free(svc->servers[side][k]->check);
            svc->servers[side][k]->check = NULL;
        }
}

/* Stops and frees every checker (before the event loop is freed). */
static void
health_stop(struct px_srv *srv)
{
    unsigned i;

    for (i = 0; srv->svcs != NULL && i < srv->nsvcs; i++)
        health_stop_service(srv->svcs[i]);
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
    struct px_service *svc = srv->svcs[idx];
    uint32_t from = svc->snap->weight_bp;

    bool was_latched = svc->applied_state == ADM_ST_ROLLED_BACK ||
                       svc->applied_state == ADM_ST_FROZEN;
    bool latched = st->state == ADM_ST_ROLLED_BACK || st->state == ADM_ST_FROZEN;
    bool in_plan = svc->applied_state == ADM_ST_PROGRESSING ||
                   svc->applied_state == ADM_ST_PAUSED || st->state == ADM_ST_PROGRESSING;

    /* New's window starts afresh when an operator clears the latch (so the
     * errors that caused a rollback do not re-trigger it) and when an
     * operator moves the weight outside a plan. A plan's steps, pause and
     * resume keep the evidence: a new side that degrades across steps is
     * still caught. */
    struct job_svc j = {
        .idx = idx, .weight_bp = st->weight_bp, .generation = st->generation,
        .state = (int)st->state,
        .reset_new = (was_latched && !latched) || (!latched && !in_plan && st->weight_bp != from),
    };

    /* every worker routes by the new snapshot before the command returns */
    job_apply(srv, &j);
    px_workers_run(srv, job_apply, &j);
    {
        char f[16], t[16], g[24];

        snprintf(f, sizeof(f), "%u.%02u", from / 100, from % 100);
        snprintf(t, sizeof(t), "%u.%02u", st->weight_bp / 100, st->weight_bp % 100);
        snprintf(g, sizeof(g), "%llu", (unsigned long long)st->generation);
        log_kv(LL_INFO, "control", "applied", "service", svc->conf->name, "from", f, "to", t,
               "state", adm_state_names[st->state], "generation", g);
    }
}

static bool
op_side_healthy(void *arg, unsigned idx, enum rt_side side)
{
    struct px_srv *srv = arg;

    return rt_side_usable(srv->svcs[idx]->snap, side);
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
        const struct px_server_rt *s = svc->servers[side][i];
        json_t *so = json_pack("{s:s, s:b, s:I, s:I, s:I, s:I}",
                               "addr", sc->servers[i].text,
                               "up", s->up,
                               "requests", (json_int_t)s->requests,
                               "failures", (json_int_t)s->failures,
                               "reused", (json_int_t)s->reused,
                               "idle", (json_int_t)(s->nidle + s->w_idle));

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
    struct px_service *svc = srv->svcs[idx];
    uint64_t now = px_now_ms(srv);

    px_workers_fold(srv);              /* the workers' counters and windows too */
    json_object_set_new(obj, "mode", json_string(svc->conf->mode == PX_MODE_TCP ? "tcp" : "http"));
    json_object_set_new(obj, "connections",
                        json_integer((json_int_t)(svc->conns_active + svc->w_conns)));
    json_object_set_new(obj, "legacy", side_status(svc, RT_LEGACY, now));
    json_object_set_new(obj, "new", side_status(svc, RT_NEW, now));
}

static void
op_switched(void *arg, unsigned idx, enum rt_side left, int drain_s)
{
    struct px_srv *srv = arg;
    struct job_svc j = { .idx = idx, .side = left, .drain_s = drain_s };

    /* HTTP: requests in flight finish; idle pooled connections to the side
     * left are closed now */
    job_switched(srv, &j);
    px_workers_run(srv, job_switched, &j);
}

static const struct adm_ops px_ops = {
    .apply = op_apply,
    .side_healthy = op_side_healthy,
    .status = op_status,
    .switched = op_switched,
};

/* ---- configuration reload (SIGHUP) ------------------------------------ */

/* A reload in two halves: prepare (load and check the file, bind the new
 * listen addresses, re-key the control plane), where any failure undoes
 * what was done and leaves everything as it was; then commit, which cannot
 * fail, between two events (we run in the signal's callback), so no request
 * ever sees half of it. What survives and how is in server.h ("Lifetimes
 * across a configuration reload") and docs/DESIGN.md. */

#define RELOAD_TEXT_MAX 2048

/* A reload is committed on every replica; the main loop's tells the story. */
#define rlog(srv, ...)                                                         \
    do {                                                                       \
        if ((srv)->worker_id == 0)                                             \
            log_at(__VA_ARGS__);                                               \
    } while (0)         /* bytes of the "+a -b ~c" summary */

struct reload {
    struct px_conf *conf;            /* owned until the commit: the new config */
    unsigned n;                      /* its services */
    int *old_of_new;                 /* owned: per new service, the index of the
                                      * old one of that name, or -1 */
    struct evconnlistener ***bound;  /* owned: per new service, per listen address,
                                      * a listener bound for it, or NULL where an
                                      * old socket is kept */
    char services[RELOAD_TEXT_MAX];  /* "+pay -old ~web" */
    char listeners[RELOAD_TEXT_MAX]; /* "+127.0.0.1:8081 -127.0.0.1:8082" */
};

/* True when <a> and <b> are the same numeric address and port. */
static bool
addr_same(const struct px_addr *a, const struct px_addr *b)
{
    return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}

static bool
str_same(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static bool
check_conf_same(const struct hl_check_conf *a, const struct hl_check_conf *b)
{
    return a->type == b->type && strcmp(a->method, b->method) == 0 &&
           strcmp(a->path, b->path) == 0 && a->expect_min == b->expect_min &&
           a->expect_max == b->expect_max &&
           strcmp(a->body_contains, b->body_contains) == 0 &&
           a->interval_ms == b->interval_ms && a->timeout_ms == b->timeout_ms &&
           a->rise == b->rise && a->fall == b->fall;
}

static bool
addrs_same(const struct px_addr *a, unsigned na, const struct px_addr *b, unsigned nb)
{
    unsigned i;

    if (na != nb)
        return false;
    for (i = 0; i < na; i++)
        if (!addr_same(&a[i], &b[i]) || strcmp(a[i].text, b[i].text) != 0)
            return false;
    return true;
}

/* True when service configs <a> and <b> (of one name) differ in anything
 * the data plane or the policy reads: the "~" of the reload summary. */
static bool
service_conf_differs(const struct px_service_conf *a, const struct px_service_conf *b)
{
    const struct rt_conf *ra = &a->route, *rb = &b->route;
    const struct hl_rollback_conf *ka = &a->rollback, *kb = &b->rollback;
    const struct px_timeouts *ta = &a->timeouts, *tb = &b->timeouts;
    const struct px_limits *la = &a->limits, *lb = &b->limits;
    unsigned side;

    if (a->mode != b->mode || !addrs_same(a->listen, a->nlisten, b->listen, b->nlisten))
        return true;
    for (side = 0; side < RT_SIDE__COUNT; side++)
        if (!addrs_same(a->side[side].servers, a->side[side].nservers,
                        b->side[side].servers, b->side[side].nservers))
            return true;
    if (ra->weight_bp != rb->weight_bp || ra->sticky_by != rb->sticky_by ||
        strcmp(ra->sticky_name, rb->sticky_name) != 0 || ra->seed != rb->seed ||
        ra->has_override != rb->has_override ||
        strcmp(ra->override_header, rb->override_header) != 0)
        return true;
    if (!check_conf_same(&a->health, &b->health))
        return true;
    if (ka->enabled != kb->enabled || ka->max_error_rate != kb->max_error_rate ||
        ka->min_requests != kb->min_requests || ka->window_s != kb->window_s ||
        ka->max_p99_ms != kb->max_p99_ms ||
        ka->max_error_ratio_to_legacy != kb->max_error_ratio_to_legacy ||
        ka->action != kb->action)
        return true;
    if (a->plan.nsteps != b->plan.nsteps || a->plan.bake_s != b->plan.bake_s ||
        memcmp(a->plan.steps_bp, b->plan.steps_bp,
               a->plan.nsteps * sizeof(a->plan.steps_bp[0])) != 0)
        return true;
    if (a->on_new_down != b->on_new_down)
        return true;
    if (ta->client_head_ms != tb->client_head_ms || ta->client_idle_ms != tb->client_idle_ms ||
        ta->connect_ms != tb->connect_ms || ta->server_response_ms != tb->server_response_ms ||
        ta->server_idle_ms != tb->server_idle_ms)
        return true;
    if (la->head_bytes != lb->head_bytes || la->headers != lb->headers ||
        la->uri_bytes != lb->uri_bytes || la->body_bytes != lb->body_bytes ||
        la->buffer_body_bytes != lb->buffer_body_bytes ||
        la->chunk_ext_bytes != lb->chunk_ext_bytes)
        return true;
    return a->pool.max_idle != b->pool.max_idle ||
           a->pool.idle_timeout_ms != b->pool.idle_timeout_ms;
}

/* Appends " <sign><word>" to summary <buf>. */
static void
summary_add(char *buf, char sign, const char *word)
{
    size_t n = strlen(buf);

    if (n + 1 < RELOAD_TEXT_MAX)
        snprintf(buf + n, RELOAD_TEXT_MAX - n, "%s%c%s", n > 0 ? " " : "", sign, word);
}

/* The current listener of address <a>, with where it sits, or NULL. */
static struct evconnlistener **
listener_find(struct px_srv *srv, const struct px_addr *a)
{
    unsigned i, k;

    for (i = 0; i < srv->nsvcs; i++) {
        struct px_service *svc = srv->svcs[i];

        for (k = 0; svc->listeners != NULL && k < svc->conf->nlisten; k++)
            if (svc->listeners[k] != NULL && addr_same(&svc->conf->listen[k], a))
                return &svc->listeners[k];
    }
    return NULL;
}

static void
reload_free(struct reload *r)
{
    unsigned i, k;

    for (i = 0; r->bound != NULL && i < r->n; i++) {
        for (k = 0; r->bound[i] != NULL && k < r->conf->services[i].nlisten; k++)
            if (r->bound[i][k] != NULL)
                evconnlistener_free(r->bound[i][k]);
        free(r->bound[i]);
    }
    free(r->bound);
    free(r->old_of_new);
    px_conf_free(r->conf);
    memset(r, 0, sizeof(*r));
}

/* Settings read once at startup: a reload keeps them and says so. */
static void
reload_warn_static(const struct px_conf *o, const struct px_conf *c)
{
    if (!str_same(o->admin_socket, c->admin_socket) || o->admin_socket_mode != c->admin_socket_mode)
        log_at(LL_WARN, "reload", 0, "admin.socket and socket_mode take effect at the next "
               "restart; the admin socket stays as it is");
    if (!str_same(o->admin_listen, c->admin_listen) ||
        !str_same(o->admin_token_file, c->admin_token_file))
        log_at(LL_WARN, "reload", 0, "admin.listen and admin.token_file take effect at the "
               "next restart");
    if (!str_same(o->state_file, c->state_file) || !str_same(o->audit_file, c->audit_file))
        log_at(LL_WARN, "reload", 0, "state.file and audit.file take effect at the next "
               "restart; the running files stay in use");
    if (o->workers != c->workers)
        log_at(LL_WARN, "reload", 0, "workers takes effect at the next restart");
    if (!str_same(o->access_log_file, c->access_log_file))
        log_at(LL_WARN, "reload", 0, "access_log takes effect at the next restart; the "
               "running access log (if any) stays as it is");
}

/* Prepare: loads the file and binds the new addresses. 0, or -1 with the
 * reason in <err> and nothing changed. */
static int
reload_prepare(struct px_srv *srv, struct reload *r, char *err, size_t errlen)
{
    unsigned i, k, j;

    memset(r, 0, sizeof(*r));
    r->conf = px_conf_load(srv->conf->file, err, errlen);
    if (r->conf == NULL)
        return -1;
    r->n = r->conf->nservices;
    r->old_of_new = xcalloc(r->n, sizeof(*r->old_of_new));
    r->bound = xcalloc(r->n, sizeof(*r->bound));
    for (i = 0; i < r->n; i++) {
        const struct px_service_conf *sc = &r->conf->services[i];

        r->old_of_new[i] = -1;
        for (j = 0; j < srv->nsvcs; j++)
            if (strcmp(srv->svcs[j]->conf->name, sc->name) == 0)
                r->old_of_new[i] = (int)j;
        r->bound[i] = xcalloc(sc->nlisten, sizeof(*r->bound[i]));
        for (k = 0; k < sc->nlisten; k++) {
            if (listener_find(srv, &sc->listen[k]) != NULL)
                continue;              /* kept: its socket moves over at commit */
            r->bound[i][k] = px_listener_new(srv, &sc->listen[k]);
            if (r->bound[i][k] == NULL) {
                snprintf(err, errlen, "%s: services[%u].listen[%u]: cannot listen on %s: %s",
                         r->conf->file, i, k, sc->listen[k].text, strerror(errno));
                reload_free(r);
                return -1;
            }
            summary_add(r->listeners, '+', sc->listen[k].text);
        }
        if (r->old_of_new[i] < 0)
            summary_add(r->services, '+', sc->name);
        else if (service_conf_differs(srv->svcs[r->old_of_new[i]]->conf, sc))
            summary_add(r->services, '~', sc->name);
    }
    return 0;
}

/* Commit, part one: kept service <svc> takes its new conf <sc> (index
 * <idx> of generation <cref>). Servers are matched by address per side. */
static void
reload_service_keep(struct px_srv *srv, struct px_service *svc, struct px_confref *cref,
                    unsigned idx)
{
    const struct px_service_conf *old = svc->conf, *sc = &cref->conf->services[idx];
    bool health_changed = !check_conf_same(&old->health, &sc->health);
    unsigned side, k, m;

    for (side = 0; side < RT_SIDE__COUNT; side++) {
        unsigned nold = old->side[side].nservers, nnew = sc->side[side].nservers;
        struct px_server_rt **was = svc->servers[side];
        struct px_server_rt **now = xcalloc(nnew > 0 ? nnew : 1, sizeof(*now));

        for (k = 0; k < nnew; k++) {
            const struct px_addr *a = &sc->side[side].servers[k];

            for (m = 0; m < nold; m++) {
                if (was[m] != NULL && addr_same(&was[m]->addr, a)) {
                    now[k] = was[m];   /* verdict, counters, pool and checker */
                    was[m] = NULL;
                    break;
                }
            }
            if (now[k] == NULL) {
                now[k] = px_server_rt_new(svc, (enum rt_side)side, k, a);
                rlog(srv, LL_INFO, "reload", 0, "service %s: %s server %s added (up)",
                       sc->name, rt_side_names[side], a->text);
            }
            now[k]->index = k;
            now[k]->addr = *a;
        }
        for (m = 0; m < nold; m++) {
            struct px_server_rt *s = was[m];

            if (s == NULL)
                continue;
            /* requests in flight to it finish (they hold a reference); a
             * worker speaks only of those it has */
            if (srv->worker_id == 0)
                log_at(LL_INFO, "reload", 0, "service %s: %s server %s removed; %u "
                       "reference(s) in flight finish", sc->name, rt_side_names[side],
                       s->addr.text, s->refs - 1);
            else if (s->refs > 1)
                log_at(LL_INFO, "reload", 0, "service %s: %s server %s removed; %u "
                       "reference(s) in flight finish (worker %u)", sc->name,
                       rt_side_names[side], s->addr.text, s->refs - 1, srv->worker_id);
            px_pool_close_server(s);
            hl_check_free(s->check);
            s->check = NULL;
            s->attached = false;
            px_server_rt_put(s);
        }
        free(was);
        svc->servers[side] = now;
        if (old->rollback.window_s != sc->rollback.window_s) {
            /* a window of another length cannot keep its ring */
            hl_window_init(&svc->window[side], sc->rollback.window_s);
        }
    }
    if (old->rollback.window_s != sc->rollback.window_s)
        rlog(srv, LL_INFO, "reload", 0, "service %s: rollback.window_s %u -> %u: both windows "
               "start afresh", sc->name, old->rollback.window_s, sc->rollback.window_s);
    memset(&svc->cursor, 0, sizeof(svc->cursor));
    svc->conf = sc;
    px_confref_put(svc->cref);
    svc->cref = px_confref_get(cref);
    svc->idx = idx;

    /* checkers borrow the health settings: repoint the kept ones, restart
     * them when the settings changed */
    for (side = 0; side < RT_SIDE__COUNT; side++) {
        for (k = 0; k < sc->side[side].nservers; k++) {
            struct px_server_rt *s = svc->servers[side][k];

            if (s->check != NULL && (health_changed || sc->health.type == HL_CHECK_NONE)) {
                hl_check_free(s->check);
                s->check = NULL;
            }
            if (sc->health.type == HL_CHECK_NONE && !s->up) {
                /* nothing would ever mark it up again */
                s->up = true;
                rlog(srv, LL_INFO, "reload", 0, "service %s: %s server %s: no health checks "
                       "any more: up", sc->name, rt_side_names[side], s->addr.text);
            }
            if (s->check != NULL)
                hl_check_set_conf(s->check, &sc->health);
        }
    }
    if (sc->health.type != HL_CHECK_NONE)
        health_start_service(srv, svc);   /* added servers, or all after a change */
}

/* Commit, part two: service <svc>, removed from the config, stops accepting
 * (its listeners were closed or moved by the caller) and is freed with its
 * last connection. Touch nothing of <svc> after the call. */
static void
reload_service_retire(struct px_srv *srv, struct px_service *svc)
{
    svc->retired = true;
    health_stop_service(svc);
    px_pool_close_side(svc, RT_LEGACY);
    px_pool_close_side(svc, RT_NEW);
    if (svc->conns_active == 0) {
        rlog(srv, LL_INFO, "reload", 0, "service %s removed", svc->conf->name);
        px_service_free(svc);
        return;
    }
    rlog(srv, LL_INFO, "reload", 0, "service %s removed: its %llu open connection(s) finish "
           "first", svc->conf->name, (unsigned long long)svc->conns_active);
    px_srv_retire(srv, svc);
    px_http_close_idle(svc);           /* may free it: the last statement */
}

/* Commit on replica <srv>: cannot fail. Takes over the reference <cref>
 * (the new generation, r->conf wrapped). */
static void
reload_commit(struct px_srv *srv, struct reload *r, struct px_confref *cref)
{
    struct px_service **olds = srv->svcs, **news = xcalloc(r->n, sizeof(*news));
    struct evconnlistener ***lst = xcalloc(r->n, sizeof(*lst));
    unsigned nold = srv->nsvcs, i, k;
    bool *kept = xcalloc(nold > 0 ? nold : 1, sizeof(*kept));

    /* listeners: bound ones, then kept sockets taken out of the old arrays
     * (so that what is left there is what the new config dropped) */
    for (i = 0; i < r->n; i++) {
        const struct px_service_conf *sc = &cref->conf->services[i];

        lst[i] = xcalloc(sc->nlisten, sizeof(*lst[i]));
        for (k = 0; k < sc->nlisten; k++) {
            struct evconnlistener **at;

            if (r->bound[i][k] != NULL) {
                lst[i][k] = r->bound[i][k];
                r->bound[i][k] = NULL;
                rlog(srv, LL_INFO, "listen", 0, "service %s (%s) listening on %s", sc->name,
                       sc->mode == PX_MODE_TCP ? "tcp" : "http", sc->listen[k].text);
            } else if ((at = listener_find(srv, &sc->listen[k])) != NULL) {
                lst[i][k] = *at;
                *at = NULL;
            }
        }
    }
    for (i = 0; i < nold; i++) {
        struct px_service *svc = olds[i];

        for (k = 0; svc->listeners != NULL && k < svc->conf->nlisten; k++) {
            if (svc->listeners[k] == NULL)
                continue;
            summary_add(r->listeners, '-', svc->conf->listen[k].text);
            rlog(srv, LL_INFO, "listen", 0, "service %s: no longer listening on %s",
                   svc->conf->name, svc->conf->listen[k].text);
            evconnlistener_free(svc->listeners[k]);
        }
        free(svc->listeners);
        svc->listeners = NULL;
    }

    /* services: kept ones take their new conf, new ones start */
    for (i = 0; i < r->n; i++) {
        struct px_service *svc;

        if (r->old_of_new[i] >= 0) {
            svc = olds[r->old_of_new[i]];
            kept[r->old_of_new[i]] = true;
            reload_service_keep(srv, svc, cref, i);
        } else {
            svc = xcalloc(1, sizeof(*svc));
            px_service_init(svc, srv, cref, i);
            rlog(srv, LL_INFO, "reload", 0, "service %s added", svc->conf->name);
            health_start_service(srv, svc);
        }
        svc->listeners = lst[i];
        for (k = 0; k < svc->conf->nlisten; k++)
            if (svc->listeners[k] != NULL)   /* a worker that could not bind */
                px_listener_attach(svc->listeners[k], svc);
        news[i] = svc;
    }
    for (i = 0; i < r->n; i++)
        free(r->bound[i]);             /* emptied above */
    free(r->bound);
    r->bound = NULL;
    srv->svcs = news;
    srv->nsvcs = r->n;
    px_confref_put(srv->cref);
    srv->cref = cref;
    srv->conf = cref->conf;
    srv->conf_generation = cref->generation;
    for (i = 0; i < nold; i++) {
        if (kept[i])
            continue;
        summary_add(r->services, '-', olds[i]->conf->name);
        reload_service_retire(srv, olds[i]);
    }
    free(kept);
    free(olds);
    free(lst);
}

/* The reload on a worker's replica: bind the addresses it does not listen
 * on yet (SO_REUSEPORT beside the main loop's, which bound them first), then
 * the same commit. */
struct job_reload {
    struct px_confref *cref;         /* the new generation */
    const int *old_of_new;           /* as the main loop's prepare found */
    unsigned n;
    struct px_srv *main;             /* its replica, committed and published */
};

static void
job_reload(struct px_srv *w, void *arg)
{
    const struct job_reload *j = arg;
    struct reload r;
    unsigned i, k;

    memset(&r, 0, sizeof(r));
    r.n = j->n;
    r.old_of_new = (int *)j->old_of_new;
    r.bound = xcalloc(r.n > 0 ? r.n : 1, sizeof(*r.bound));
    for (i = 0; i < r.n; i++) {
        const struct px_service_conf *sc = &j->cref->conf->services[i];

        r.bound[i] = xcalloc(sc->nlisten > 0 ? sc->nlisten : 1, sizeof(*r.bound[i]));
        for (k = 0; k < sc->nlisten; k++) {
            if (listener_find(w, &sc->listen[k]) != NULL)
                continue;
            r.bound[i][k] = px_listener_new(w, &sc->listen[k]);
            if (r.bound[i][k] == NULL)
                log_at(LL_ERR, "reload", 0, "worker %u: cannot listen on %s: %s; the other "
                       "workers do", w->worker_id, sc->listen[k].text, strerror(errno));
        }
    }
    reload_commit(w, &r, px_confref_get(j->cref));
    job_publish_all(w, j->main);
}

/* Every SIGHUP reopens the log files, whether the reload succeeds or not
 * (log rotation sends SIGHUP too). */
static void
reload_reopen_logs(struct px_srv *srv)
{
    if (srv->access_log != NULL)
        px_access_log_reopen(srv->access_log);   /* a failure is logged, the old file kept */
    px_workers_run(srv, job_reopen_logs, NULL);
}

/* Writes the audit entry of a reload attempt and its log line. */
static void
reload_audit(struct px_srv *srv, uint64_t from_gen, const char *reason, bool ok)
{
    struct adm_audit_entry ae;
    char from[32], to[32], aerr[512];
    json_t *fig, *gens;
    unsigned i;

    if (srv->audit_file == NULL)
        return;
    gens = json_object();
    for (i = 0; i < srv->nsvcs; i++)
        json_object_set_new(gens, srv->svcs[i]->conf->name, json_integer((json_int_t)
                            adm_control_state(srv->ctl, i)->generation));
    fig = json_pack("{s:s, s:b, s:I, s:I, s:I, s:o}", "file", srv->conf->file, "ok", ok,
                    "config_generation", (json_int_t)srv->conf_generation,
                    "reloads", (json_int_t)srv->reloads,
                    "reload_failures", (json_int_t)srv->reload_failures,
                    "generations", gens);
    snprintf(from, sizeof(from), "%llu", (unsigned long long)from_gen);
    snprintf(to, sizeof(to), "%llu", (unsigned long long)srv->conf_generation);
    ae = (struct adm_audit_entry){
        .service = "*", .actor = "signal:HUP", .action = "reload",
        .reason = reason, .generation = srv->conf_generation, .figures = fig,
        .from_text = from, .to_text = to,
    };
    if (adm_audit_append(srv->audit_file, &ae, aerr, sizeof(aerr)) != 0)
        log_at(LL_ERR, "reload", 0, "audit log: %s", aerr);
    json_decref(fig);
}

/* SIGHUP: reloads the config file (see "configuration reload" above). */
static void
reload(struct px_srv *srv)
{
    struct reload r;
    struct job_reload jr;
    char err[1024], reason[RELOAD_TEXT_MAX * 2 + 64], names_err[512];
    const char **names;
    uint32_t *initial;
    uint64_t from_gen = srv->conf_generation;
    unsigned i;
    int rc;

    reload_reopen_logs(srv);
    if (srv->stopping) {
        log_at(LL_WARN, "reload", 0, "SIGHUP while shutting down: configuration not reloaded");
        return;
    }
    log_at(LL_INFO, "reload", 0, "SIGHUP: reloading %s", srv->conf->file);
    px_workers_fold(srv);              /* the workers' counts of servers that may go */
    if (reload_prepare(srv, &r, err, sizeof(err)) < 0)
        goto failed;
    names = xcalloc(r.n, sizeof(*names));
    initial = xcalloc(r.n, sizeof(*initial));
    for (i = 0; i < r.n; i++) {
        names[i] = r.conf->services[i].name;
        initial[i] = r.conf->services[i].route.weight_bp;
    }
    rc = adm_control_reconfigure(srv->ctl, names, initial, r.n, names_err,
                                 sizeof(names_err));
    free(names);
    free(initial);
    if (rc != 0) {
        snprintf(err, sizeof(err), "%s", names_err);
        reload_free(&r);
        goto failed;
    }
    reload_warn_static(srv->conf, r.conf);

    jr = (struct job_reload){
        .cref = px_confref_new(r.conf, srv->conf_generation + 1),
        .old_of_new = r.old_of_new, .n = r.n, .main = srv,
    };
    r.conf = NULL;                     /* owned by the generation now */
    reload_commit(srv, &r, jr.cref);
    for (i = 0; i < srv->nsvcs; i++)
        adm_control_set_plan(srv->ctl, i, &srv->conf->services[i].plan,
                             srv->conf->services[i].rollback.min_requests);
    for (i = 0; i < srv->nsvcs; i++) {
        const struct adm_svc_state *st = adm_control_state(srv->ctl, i);

        /* kept services: the same weight and generation, the routing keys
         * and servers of the new config; adm_control_set_plan() may have
         * stopped a plan the config no longer has */
        px_service_publish(srv->svcs[i], st->weight_bp, st->generation);
        srv->svcs[i]->applied_state = (int)st->state;
    }
    /* the workers commit and publish in one job: a snapshot borrows from
     * its config, so no event may run between the two */
    px_workers_run(srv, job_reload, &jr);
    if (srv->tick != NULL)
        px_tick_reconfigure(srv->tick, r.old_of_new, srv->nsvcs);
    srv->reloads++;
    snprintf(reason, sizeof(reason), "services %s, listeners %s",
             r.services[0] != '\0' ? r.services : "unchanged",
             r.listeners[0] != '\0' ? r.listeners : "unchanged");
    reload_free(&r);
    {
        char msg[RELOAD_TEXT_MAX * 2 + 256], g[24];

        snprintf(g, sizeof(g), "%llu", (unsigned long long)srv->conf_generation);
        snprintf(msg, sizeof(msg), "configuration generation %llu loaded from %s: %s; "
                 "%u service(s), weights and states kept",
                 (unsigned long long)srv->conf_generation, srv->conf->file, reason,
                 srv->nsvcs);
        log_kv(LL_INFO, "reload", "reload", "ok", "true", "config_generation", g,
               "file", srv->conf->file, "msg", msg);
    }
    reload_audit(srv, from_gen, reason, true);
    return;

failed:
    srv->reload_failures++;
    log_at(LL_ERR, "reload", 0, "reload of %s failed, running configuration (generation "
           "%llu) unchanged: %s", srv->conf->file, (unsigned long long)srv->conf_generation,
           err);
    snprintf(reason, sizeof(reason), "failed: %s", err);
    reload_audit(srv, from_gen, reason, false);
}

/* ---- signals ------------------------------------------------------- */

static void
on_grace_over(evutil_socket_t fd, short what, void *arg)
{
    struct px_srv *srv = arg;

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
    if (notify_sendf("STOPPING=1\nSTATUS=draining %llu connection(s)",
                     (unsigned long long)srv->conns_active) < 0)
        log_at(LL_WARN, "main", 0, "sd_notify STOPPING: %s", strerror(errno));
    px_srv_stop_listening(srv);
    px_workers_run(srv, job_stop, NULL);
    if (srv->conns_active == 0 && px_workers_drained(srv)) {
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
    reload(srv);
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

static int
services_init(struct px_srv *srv)
{
    unsigned i;

    srv->nsvcs = srv->conf->nservices;
    srv->svcs = xcalloc(srv->nsvcs, sizeof(*srv->svcs));
    for (i = 0; i < srv->nsvcs; i++) {
        srv->svcs[i] = xcalloc(1, sizeof(*srv->svcs[i]));
        px_service_init(srv->svcs[i], srv, srv->cref, i);
    }
    return 0;
}

/* Frees service <svc> and its connections (exit). */
static void
service_free_all(struct px_service *svc)
{
    health_stop_service(svc);
    px_http_close_all(svc);
    px_tcp_close_all(svc);
    px_service_free(svc);
}

static void
srv_free(struct px_srv *srv)
{
    struct px_service *svc;
    unsigned i;

    srv->freeing = true;               /* retired services are freed here */
    health_stop(srv);
    adm_server_free(srv->admin);
    adm_control_free(srv->ctl);
    for (i = 0; srv->svcs != NULL && i < srv->nsvcs; i++)
        service_free_all(srv->svcs[i]);
    while ((svc = px_srv_retired_pop(srv)) != NULL)
        service_free_all(svc);
    free(srv->svcs);
    if (srv->grace_timer != NULL)
        event_free(srv->grace_timer);
    /* after the connections: those closed above wrote their lines */
    px_access_log_free(srv->access_log);
    srv->access_log = NULL;
    px_http_loop_free(srv);
    px_confref_put(srv->cref);
}

/* ---- HTTP admin endpoint (admin.listen) --------------------------------- */

/* Starts the HTTP admin endpoint on admin.listen with <*tokens> (taken);
 * GET /metrics renders proxy/metrics.c. Returns the server or NULL
 * (logged). */
static struct adm_http *
admin_http_start(struct px_srv *srv, struct adm_tokens **tokens)
{
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
        .metrics = px_metrics_render_cb, .metrics_arg = srv,
    };
    h = adm_http_new(srv->base, srv->ctl, tokens, &hc, err, sizeof(err));
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
    struct px_srv srv;
    struct event *ev_term = NULL, *ev_int = NULL, *ev_hup = NULL;
    struct px_tick *tick = NULL;
    struct adm_tokens *tokens = NULL;  /* until the HTTP admin endpoint takes them */
    struct adm_http *admin_http = NULL;
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
    /* A bad token file stops the start, and `-t` reports it too. A missing
     * one only warns under -t: configs are checked before their secrets
     * are deployed (the daemon itself still refuses to start without it). */
    if (test_only && srv.conf->admin_token_file != NULL
        && access(srv.conf->admin_token_file, F_OK) != 0 && errno == ENOENT) {
        fprintf(stderr, "%s: warning: admin.token_file %s does not exist (yet): cutoverd "
                "will not start without it\n", conf_file, srv.conf->admin_token_file);
    } else if (srv.conf->admin_token_file != NULL
               && (tokens = adm_tokens_load(srv.conf->admin_token_file, err,
                                            sizeof(err))) == NULL) {
        fprintf(stderr, "%s\n", err);
        px_conf_free(srv.conf);
        return 1;
    }
    if (test_only) {
        printf("%s: configuration is valid (%u service(s))\n", conf_file, srv.conf->nservices);
        adm_tokens_free(tokens);
        px_conf_free(srv.conf);
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
        srv.rng = strtoull(seed_text, &end, 10);
        if (errno != 0 || *end != '\0' || end == seed_text) {
            fprintf(stderr, "cutoverd: -R %s: not a decimal seed\n", seed_text);
            adm_tokens_free(tokens);
            px_conf_free(srv.conf);
            return 2;
        }
    } else if (getrandom(&srv.rng, sizeof(srv.rng), 0) != (ssize_t)sizeof(srv.rng)) {
        srv.rng = (uint64_t)getpid() * 0x9e3779b97f4a7c15ULL;
    }
    /* from here the config is shared by reference (server.h, rule 1) */
    srv.conf_generation = 1;
    srv.cref = px_confref_new(srv.conf, srv.conf_generation);
    srv.base = px_event_base_new();
    if (srv.base == NULL) {
        log_at(LL_ERR, "main", 0, "cannot create the event loop");
        goto out;
    }
    srv.nworkers = px_workers_resolve(srv.conf->workers);
    services_init(&srv);
    {
        struct timespec now;

        clock_gettime(CLOCK_REALTIME, &now);
        srv.start_time_s = (double)now.tv_sec + (double)now.tv_nsec / 1e9;
    }
    if (srv.conf->access_log_file != NULL) {
        srv.access_log = px_access_log_new(srv.base, srv.conf->access_log_file, err,
                                           sizeof(err));
        if (srv.access_log == NULL) {
            log_at(LL_ERR, "main", 0, "%s", err);
            goto out;
        }
        log_at(LL_INFO, "main", 0, "access log %s", srv.conf->access_log_file);
    }

    state_file = srv.conf->state_file != NULL ? xstrdup(srv.conf->state_file)
                                              : default_state_path("state.json");
    audit_file = srv.conf->audit_file != NULL ? xstrdup(srv.conf->audit_file)
                                              : default_state_path("audit.jsonl");
    if (fs_mkdir_parent(state_file, err, sizeof(err)) != 0
        || fs_mkdir_parent(audit_file, err, sizeof(err)) != 0) {
        log_at(LL_ERR, "main", 0, "%s", err);
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

        px_service_publish(srv.svcs[i], st->weight_bp, st->generation);
        srv.svcs[i]->applied_state = (int)st->state;
        log_at(LL_INFO, "main", 0, "service %s: weight %u.%02u%% state %s generation %llu",
               srv.svcs[i]->conf->name, st->weight_bp / 100, st->weight_bp % 100,
               adm_state_names[st->state], (unsigned long long)st->generation);
    }

    if (srv.conf->admin_socket != NULL) {
        sock = srv.conf->admin_socket;
    } else {
        ctl_default_socket(sock_default, sizeof(sock_default));
        sock = sock_default;
    }
    srv.admin = adm_server_new_group(srv.base, srv.ctl, sock, srv.conf->admin_socket_mode,
                                     srv.conf->admin_socket_gid, err, sizeof(err));
    if (srv.admin == NULL) {
        log_at(LL_ERR, "main", 0, "admin socket: %s", err);
        goto out;
    }
    if (srv.conf->admin_listen != NULL
        && (admin_http = admin_http_start(&srv, &tokens)) == NULL)
        goto out;
    /* before any listener opens: a signal that comes as soon as the port
     * answers must find its handler (it runs once the loop does) */
    ev_term = evsignal_new(srv.base, SIGTERM, on_signal_stop, &srv);
    ev_int = evsignal_new(srv.base, SIGINT, on_signal_stop, &srv);
    ev_hup = evsignal_new(srv.base, SIGHUP, on_signal_hup, &srv);
    if (ev_term == NULL || ev_int == NULL || ev_hup == NULL ||
        evsignal_add(ev_term, NULL) < 0 || evsignal_add(ev_int, NULL) < 0 ||
        evsignal_add(ev_hup, NULL) < 0) {
        log_at(LL_ERR, "main", 0, "cannot install signal handlers");
        goto out;
    }
    if (health_start(&srv, audit_file) < 0)
        goto out;
    if (px_srv_listen(&srv) < 0)
        goto out;
    if (px_workers_start(&srv) < 0)
        goto out;
    if ((tick = px_tick_new(&srv)) == NULL)
        goto out;
    srv.tick = tick;

    log_at(LL_INFO, "main", 0, "ready: %u service(s), %u worker(s), admin socket %s, state %s",
           srv.nsvcs, srv.nworkers, sock, state_file);
    /* systemd (Type=notify): the listeners accept from here on */
    if (notify_sendf("READY=1\nSTATUS=serving %u service(s)\nMAINPID=%ld", srv.nsvcs,
                     (long)getpid()) < 0)
        log_at(LL_WARN, "main", 0, "sd_notify READY: %s", strerror(errno));
    if (event_base_dispatch(srv.base) < 0) {
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
    px_tick_free(tick);
    px_workers_free(&srv);             /* they close what they still hold */
    adm_http_free(admin_http);         /* before the control plane it calls */
    adm_tokens_free(tokens);
    srv_free(&srv);
    free(names);
    free(initial);
    free(state_file);
    free(audit_file);
    if (srv.base != NULL)
        event_base_free(srv.base);
    return rc;
}
