/*
 * reload: see reload.h. A reload in two halves: prepare (load and check the
 * file, bind the new listen addresses, re-key the control plane), where any
 * failure undoes what was done and leaves everything as it was; then commit,
 * which cannot fail. Both are cut so that no event of any loop grows with
 * the services a reload keeps: the prepare matches and binds in slices of
 * about RELOAD_PREPARE_US; the workers' counts are folded; the swap (the
 * service arrays in their new order, new services, retired ones, listeners,
 * TLS material, the generation) is one event of the main loop and one job
 * on each worker; then the kept services whose listen addresses stayed take
 * their new config in slices of about RELOAD_SLICE_US, each slice on the
 * main replica and then, in a job, on the workers' (a service switches
 * between two events of every loop, so a request sees its service's old
 * config or its new one, never a mix); then the old generation is freed and
 * the reload logged and audited, each in a step of its own. What changed in
 * a kept service is px_service_conf_diff()'s answer (proxy/conf.h), never a
 * field list here.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <jansson.h>

#include "admin/audit.h"
#include "admin/control.h"
#include "health/check.h"
#include "health/window.h"
#include "lib/hmap.h"
#include "lib/log.h"
#include "lib/xmalloc.h"
#include "proxy/conf.h"
#include "proxy/cookie.h"
#include "proxy/daemon.h"
#include "proxy/ops.h"
#include "proxy/http.h"
#include "proxy/listen.h"
#include "proxy/pool.h"
#include "proxy/gates.h"
#include "proxy/reload.h"
#include "proxy/server.h"
#include "proxy/tick.h"
#include "proxy/tls.h"
#include "proxy/tls_up.h"
#include "proxy/verdict.h"
#include "proxy/webhook.h"
#include "proxy/worker.h"

#define RELOAD_TEXT_MAX 2048         /* bytes of the "+a -b ~c" summary */
#define RELOAD_PREPARE_US 800        /* a slice of the prepare (the main loop alone) */
#define RELOAD_SLICE_US 400          /* the main replica's part of a switch slice;
                                      * the workers' part, the same services, costs
                                      * about as much: a slice is about 1 ms */

/* A reload is committed on every replica; the main loop's tells the story. */
#define rlog(srv, ...)                                                         \
    do {                                                                       \
        if ((srv)->worker_id == 0)                                             \
            log_at(__VA_ARGS__);                                               \
    } while (0)

/* The listeners of a replica by address, so that matching the n addresses
 * of a new config costs n lookups, not n^2 compares. Keys are borrowed from
 * the services' configs: an index lives while they do. */
struct lis_idx {
    struct hmap m;                   /* sockaddr bytes -> index in <at> */
    struct evconnlistener ***at;     /* owned array: where each listener sits */
};

struct reload {
    struct px_conf *conf;            /* owned until the commit: the new config */
    unsigned n;                      /* its services */
    int *old_of_new;                 /* owned: per new service, the index of the
                                      * old one of that name, or -1 */
    struct evconnlistener ***bound;  /* owned: per new service, per listen address,
                                      * a listener bound for it, or NULL where an
                                      * old socket is kept */
    struct px_tls_ctx **tls;         /* owned (the main loop's; a worker's borrows
                                      * it): per new service its TLS material, or
                                      * NULL; every certificate is read again */
    char services[RELOAD_TEXT_MAX];  /* "+pay -old ~web" */
    char listeners[RELOAD_TEXT_MAX]; /* "+127.0.0.1:8081 -127.0.0.1:8082" */
    struct px_cookie_set *cookies;   /* owned until the commit: the new config's
                                      * sticky-cookie tables (key file re-read) */
    bool *defer;                     /* owned: per new service, true for a kept one
                                      * whose listen addresses are the same: the swap
                                      * only moves it to its place, its config follows
                                      * in a switch slice (reload_service_keep) */
    struct px_service **gone;        /* owned array, from the swap: the services the
                                      * config dropped, out of the replica's array,
                                      * retired in the switch slices after the others */
    unsigned ngone;
    /* while the prepare runs in slices (prepare_slice) */
    bool indexed;                    /* <names> and <lx> are built */
    struct hmap names;               /* the running services' names -> index */
    struct lis_idx lx;               /* the running listeners */
    unsigned next;                   /* the next new service to prepare */
};

static uint64_t
mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* This thread's CPU time, in microseconds: a step's cost whatever the load. */
static uint64_t
cpu_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* The debug line of a piece of a reload that ran in one event (or job) of
 * its loop: how long it held the loop, and the thread's CPU for it. */
static void
step_log(unsigned worker, const char *what, uint64_t t0, uint64_t c0)
{
    log_at(LL_DEBUG, "reload", 0, "loop %u: %s: %llu us (CPU %llu us)", worker, what,
           (unsigned long long)(mono_us() - t0), (unsigned long long)(cpu_us() - c0));
}

/* True when <a> and <b> listen on the same addresses in the same order: the
 * service's listener array stays what it is across the swap, so its config
 * may follow later. */
static bool
listen_same(const struct px_service_conf *a, const struct px_service_conf *b)
{
    unsigned k;

    if (a->nlisten != b->nlisten)
        return false;
    for (k = 0; k < a->nlisten; k++)
        if (!px_addr_same(&a->listen[k], &b->listen[k]))
            return false;
    return true;
}

/* Appends " <sign><word>" to summary <buf>. */
static void
summary_add(char *buf, char sign, const char *word)
{
    size_t n = strlen(buf);

    if (n + 1 < RELOAD_TEXT_MAX)
        snprintf(buf + n, RELOAD_TEXT_MAX - n, "%s%c%s", n > 0 ? " " : "", sign, word);
}

static void
lis_idx_build(struct lis_idx *x, struct px_srv *srv)
{
    unsigned i, k, n = 0;

    for (i = 0; i < srv->nsvcs; i++)
        n += srv->svcs[i]->listeners != NULL ? srv->svcs[i]->conf->nlisten : 0;
    hmap_init(&x->m, n);
    x->at = xcalloc(n > 0 ? n : 1, sizeof(*x->at));
    for (i = 0, n = 0; i < srv->nsvcs; i++) {
        struct px_service *svc = srv->svcs[i];

        for (k = 0; svc->listeners != NULL && k < svc->conf->nlisten; k++) {
            if (svc->listeners[k] == NULL)
                continue;
            x->at[n] = &svc->listeners[k];
            hmap_put(&x->m, &svc->conf->listen[k].ss, svc->conf->listen[k].len, n++);
        }
    }
}

static void
lis_idx_free(struct lis_idx *x)
{
    hmap_free(&x->m);
    free(x->at);
}

/* The current listener of address <a>, with where it sits, or NULL (one
 * the caller took out, leaving NULL there, is not found again). */
static struct evconnlistener **
listener_find(const struct lis_idx *x, const struct px_addr *a)
{
    unsigned pos = 0, v;

    if (a->len > sizeof(a->ss))
        return NULL;
    while (hmap_next(&x->m, &a->ss, a->len, &pos, &v))
        if (*x->at[v] != NULL)
            return x->at[v];
    return NULL;
}

static void lis_idx_free(struct lis_idx *x);

static void
reload_free(struct reload *r)
{
    unsigned i, k;

    if (r->indexed) {
        hmap_free(&r->names);
        lis_idx_free(&r->lx);
    }
    for (i = 0; r->bound != NULL && i < r->n; i++) {
        for (k = 0; r->bound[i] != NULL && k < r->conf->services[i].nlisten; k++)
            if (r->bound[i][k] != NULL)
                evconnlistener_free(r->bound[i][k]);
        free(r->bound[i]);
    }
    free(r->bound);
    px_tls_free_all(r->tls, r->n);
    free(r->old_of_new);
    free(r->defer);
    free(r->gone);
    px_conf_free(r->conf);
    px_cookie_set_free(r->cookies);
    memset(r, 0, sizeof(*r));
}

/* Settings read once at startup: a reload keeps them and says so.
 * admin.socket_group and admin.read_token_required (PX_CONF_ADMIN_GROUP,
 * PX_CONF_ADMIN_READ) are read once too and kept without a word; the
 * shutdown grace and the services take effect. */
static void
reload_warn_static(const struct px_conf *o, const struct px_conf *c)
{
    unsigned d = px_conf_diff(o, c);

    if (d & PX_CONF_ADMIN_SOCKET)
        log_at(LL_WARN, "reload", 0, "admin.socket and socket_mode take effect at the next "
               "restart; the admin socket stays as it is");
    if (d & PX_CONF_ADMIN_HTTP)
        log_at(LL_WARN, "reload", 0, "admin.listen and admin.token_file take effect at the "
               "next restart");
    if (d & PX_CONF_STATE_FILES)
        log_at(LL_WARN, "reload", 0, "state.file, audit.file and store take effect at the "
               "next restart; the running files and store stay in use");
    if (d & PX_CONF_WORKERS)
        log_at(LL_WARN, "reload", 0, "workers takes effect at the next restart");
    if (d & PX_CONF_POLICY_TICK)
        log_at(LL_WARN, "reload", 0, "policy_tick_ms takes effect at the next restart");
    if (d & PX_CONF_NOTIFY)
        log_at(LL_WARN, "reload", 0, "notify takes effect at the next restart; the running "
               "webhooks stay as they are");
    if (d & PX_CONF_ACCESS_LOG)
        log_at(LL_WARN, "reload", 0, "access_log takes effect at the next restart; the "
               "running access log (if any) stays as it is");
}

/* Prepare, in three parts; any failure leaves everything as it was (-1,
 * with the reason in <err>; the caller frees <r>). The first takes the
 * loaded config <conf> (owned): the cookie keys, the indexes of the running
 * services and listeners. */
static int
prepare_begin(struct px_srv *srv, struct reload *r, struct px_conf *conf, char *err,
              size_t errlen)
{
    unsigned j;

    memset(r, 0, sizeof(*r));
    r->conf = conf;
    /* the key file is read again: a rotated key takes effect with the
     * reload, and a broken file fails it */
    if (px_cookie_set_build(r->conf, px_daemon_of(srv)->cookie_key_file, true,
                            srv->cref->cookies, &r->cookies, err, errlen) != 0)
        return -1;
    r->n = r->conf->nservices;
    r->old_of_new = xcalloc(r->n > 0 ? r->n : 1, sizeof(*r->old_of_new));
    r->bound = xcalloc(r->n > 0 ? r->n : 1, sizeof(*r->bound));
    r->defer = xcalloc(r->n > 0 ? r->n : 1, sizeof(*r->defer));
    hmap_init(&r->names, srv->nsvcs);
    for (j = 0; j < srv->nsvcs; j++)
        hmap_put_str(&r->names, srv->svcs[j]->conf->name, j);
    lis_idx_build(&r->lx, srv);
    r->indexed = true;
    return 0;
}

/* The second, in slices (nothing runs meanwhile that changes the running
 * services): new service r->next on, for about <budget_us> (one at least),
 * is matched to the running one of its name and its new addresses are
 * bound. 1 when every service is done, 0 when some are left, -1. */
static int
prepare_slice(struct px_srv *srv, struct reload *r, uint64_t budget_us, char *err,
              size_t errlen)
{
    uint64_t t0 = mono_us();
    unsigned i, k, j;

    for (i = r->next; i < r->n && (i == r->next || mono_us() - t0 < budget_us); i++) {
        const struct px_service_conf *sc = &r->conf->services[i];

        r->old_of_new[i] = hmap_get_str(&r->names, sc->name, &j) ? (int)j : -1;
        r->bound[i] = xcalloc(sc->nlisten > 0 ? sc->nlisten : 1, sizeof(*r->bound[i]));
        for (k = 0; k < sc->nlisten; k++) {
            if (listener_find(&r->lx, &sc->listen[k]) != NULL)
                continue;              /* kept: its socket moves over at commit */
            r->bound[i][k] = px_listener_new(srv, &sc->listen[k]);
            if (r->bound[i][k] == NULL) {
                snprintf(err, errlen, "%s: services[%u].listen[%u]: cannot listen on %s: %s",
                         r->conf->file, i, k, sc->listen[k].text, strerror(errno));
                return -1;
            }
            summary_add(r->listeners, '+', sc->listen[k].text);
        }
        if (r->old_of_new[i] >= 0) {
            /* an unchanged upstream TLS keeps its context: pooled
             * connections and sessions stay valid */
            struct px_service_conf *nsc = &r->conf->services[i];
            const struct px_service_conf *osc = srv->svcs[r->old_of_new[i]]->conf;

            px_tls_up_keep(&nsc->side[RT_LEGACY].tls, osc->side[RT_LEGACY].tls);
            px_tls_up_keep(&nsc->side[RT_NEW].tls, osc->side[RT_NEW].tls);
            r->defer[i] = listen_same(osc, nsc);
        }
        if (r->old_of_new[i] < 0)
            summary_add(r->services, '+', sc->name);
        else if (!px_service_conf_equal(srv->svcs[r->old_of_new[i]]->conf, sc))
            summary_add(r->services, '~', sc->name);
    }
    r->next = i;
    return i < r->n ? 0 : 1;
}

/* The third: the indexes go, and every certificate and key is read again
 * (a kept service keeps its ticket keys); a bad file refuses the reload. */
static int
prepare_end(struct px_srv *srv, struct reload *r, char *err, size_t errlen)
{
    struct px_tls_ctx **prev = xcalloc(r->n > 0 ? r->n : 1, sizeof(*prev));
    unsigned i;
    int rc;

    hmap_free(&r->names);
    lis_idx_free(&r->lx);
    r->indexed = false;
    for (i = 0; i < r->n; i++)
        if (r->old_of_new[i] >= 0)
            prev[i] = srv->svcs[r->old_of_new[i]]->tls;
    rc = px_tls_load_all(r->conf, prev, false, &r->tls, err, errlen);
    free(prev);
    return rc != 0 ? -1 : 0;
}

/* Commit, part one: kept service <svc> takes its new conf <sc> (index
 * <idx> of generation <cref>). Servers are matched by address per side.
 * <d>: the daemon on the main replica (whose checkers start), NULL on a
 * worker's. */
static void
reload_service_keep(struct px_srv *srv, struct px_service *svc, struct px_confref *cref,
                    unsigned idx, struct px_daemon *d)
{
    const struct px_service_conf *old = svc->conf, *sc = &cref->conf->services[idx];
    unsigned diff = px_service_conf_diff(old, sc);
    bool health_changed = (diff & PX_SVC_HEALTH) != 0;
    unsigned side, k, m;

    for (side = 0; side < RT_SIDE__COUNT; side++) {
        unsigned nold = old->side[side].nservers, nnew = sc->side[side].nservers;
        struct px_server_rt **was = svc->servers[side];
        struct px_server_rt **now = xcalloc(nnew > 0 ? nnew : 1, sizeof(*now));

        for (k = 0; k < nnew; k++) {
            const struct px_addr *a = &sc->side[side].servers[k];

            for (m = 0; m < nold; m++) {
                if (was[m] != NULL && px_addr_same(&was[m]->addr, a)) {
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
            px_server_rt_close_idle(s);
            hl_check_free(s->check);
            s->check = NULL;
            s->attached = false;
            px_server_rt_put(s);
        }
        free(was);
        svc->servers[side] = now;
        if (old->side[side].tls != sc->side[side].tls) {
            /* another TLS context: idle connections of the old one go, and
             * a session of it is never offered to the new one */
            for (k = 0; k < nnew; k++)
                px_server_rt_close_idle(now[k]);
            rlog(srv, LL_INFO, "reload", 0, "service %s: %s upstream TLS changed: idle "
                 "connections closed, new ones use the new settings", sc->name,
                 rt_side_names[side]);
        }
        if (diff & PX_SVC_WINDOW) {
            /* a window of another length cannot keep its ring */
            hl_window_init(&svc->window[side], sc->rollback.window_s);
        }
    }
    if (diff & PX_SVC_WINDOW)
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
            if (s->check != NULL) {
                hl_check_set_conf(s->check, &sc->health);
                if (px_verdict_set_tls(svc, s) < 0)
                    log_at(LL_ERR, "reload", 0, "service %s: %s server %s: cannot hand its "
                           "checker the new TLS settings", sc->name, rt_side_names[side],
                           s->addr.text);
            }
        }
    }
    if (d != NULL && sc->health.type != HL_CHECK_NONE)
        px_verdict_start_service(d, svc);  /* added servers, or all after a change */
}

/* Commit, part two: service <svc>, removed from the config, stops accepting
 * (its listeners were closed or moved by the caller) and is freed with its
 * last connection. Touch nothing of <svc> after the call. */
static void
reload_service_retire(struct px_srv *srv, struct px_service *svc)
{
    svc->retired = true;
    px_verdict_stop_service(svc);
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

/* Closes the listeners <svc> has left (those the new config moved to
 * another service were taken out before), each in <r>'s summary when <r> is
 * not NULL, and a log line each. */
static void
listeners_close(struct px_srv *srv, struct reload *r, struct px_service *svc)
{
    unsigned k;

    for (k = 0; svc->listeners != NULL && k < svc->conf->nlisten; k++) {
        if (svc->listeners[k] == NULL)
            continue;
        if (r != NULL)
            summary_add(r->listeners, '-', svc->conf->listen[k].text);
        rlog(srv, LL_INFO, "listen", 0, "service %s: no longer listening on %s",
             svc->conf->name, svc->conf->listen[k].text);
        evconnlistener_free(svc->listeners[k]);
    }
    free(svc->listeners);
    svc->listeners = NULL;
}

/* Switch slice, service <svc> the config dropped: the listeners it has left
 * close (<r>: the main loop's reload, whose summary says so; NULL on a
 * worker), then it retires. */
static void
reload_service_gone(struct px_srv *srv, struct reload *r, struct px_service *svc)
{
    listeners_close(srv, r, svc);
    reload_service_retire(srv, svc);
}

/* The swap on replica <srv>: cannot fail. Takes over the reference <cref>
 * (the new generation, r->conf wrapped). Services take their places in the
 * new order; a kept one of r->defer keeps its config (and its listeners,
 * the same addresses) until its switch slice, the others take theirs now.
 * <d>: the daemon on the main replica, NULL on a worker's (checkers run on
 * the main loop only). */
static void
reload_swap(struct px_srv *srv, struct reload *r, struct px_confref *cref,
            struct px_daemon *d)
{
    struct px_service **olds = srv->svcs, **news = xcalloc(r->n, sizeof(*news));
    struct evconnlistener ***lst = xcalloc(r->n, sizeof(*lst));
    unsigned nold = srv->nsvcs, i, k;
    bool *kept = xcalloc(nold > 0 ? nold : 1, sizeof(*kept));
    bool *own = xcalloc(nold > 0 ? nold : 1, sizeof(*own));
    struct lis_idx lx;

    /* listeners: bound ones, then kept sockets taken out of the old arrays
     * (so that what is left there is what the new config dropped); a
     * deferred service keeps its own array, the same addresses in the same
     * order (no other service can claim one of them) */
    for (i = 0; i < r->n; i++) {
        if (r->old_of_new[i] >= 0)
            kept[r->old_of_new[i]] = true;
        if (r->defer[i])
            own[r->old_of_new[i]] = true;
    }
    lis_idx_build(&lx, srv);
    for (i = 0; i < r->n; i++) {
        const struct px_service_conf *sc = &cref->conf->services[i];

        if (r->defer[i])
            continue;
        lst[i] = xcalloc(sc->nlisten, sizeof(*lst[i]));
        for (k = 0; k < sc->nlisten; k++) {
            struct evconnlistener **at;

            if (r->bound[i][k] != NULL) {
                lst[i][k] = r->bound[i][k];
                r->bound[i][k] = NULL;
                if (r->old_of_new[i] >= 0)     /* a new one's: with its slice's log line */
                    rlog(srv, LL_INFO, "listen", 0, "service %s (%s) listening on %s",
                         sc->name, sc->mode == PX_MODE_TCP ? "tcp" : "http",
                         sc->listen[k].text);
            } else if ((at = listener_find(&lx, &sc->listen[k])) != NULL) {
                lst[i][k] = *at;
                *at = NULL;
            }
        }
    }
    lis_idx_free(&lx);
    for (i = 0; i < nold; i++) {
        struct px_service *svc = olds[i];

        if (own[i] || !kept[i])
            continue;                  /* a dropped service's close in its slice */
        listeners_close(srv, r, svc);
    }

    /* services: kept ones take their new conf, new ones start */
    for (i = 0; i < r->n; i++) {
        struct px_service *svc;

        if (r->old_of_new[i] >= 0) {
            svc = olds[r->old_of_new[i]];
            svc->idx = i;              /* the control plane's index from now on */
            if (!r->defer[i])
                reload_service_keep(srv, svc, cref, i, d);
        } else {
            /* logged and its checkers started in its switch slice (it
             * routes meanwhile as a service at startup does: its servers
             * up until a check says otherwise) */
            svc = xcalloc(1, sizeof(*svc));
            px_service_init(svc, srv, cref, i);
        }
        /* new handshakes use the new material; those in flight and the
         * connections made keep what they began with */
        px_tls_ctx_put(svc->tls);
        svc->tls = px_tls_ctx_get(r->tls[i]);
        if (svc->tls != NULL)
            rlog(srv, LL_INFO, "reload", 0, "service %s: %u TLS certificate(s) loaded",
                 svc->conf->name, px_tls_ncerts(svc->tls));
        if (lst[i] != NULL) {
            svc->listeners = lst[i];
            for (k = 0; k < svc->conf->nlisten; k++)
                if (svc->listeners[k] != NULL)   /* a worker that could not bind */
                    px_listener_attach(svc->listeners[k], svc);
        }
        for (k = 0; lst[i] == NULL && svc->listeners != NULL && k < svc->conf->nlisten; k++) {
            /* deferred: the main loop has every address already; a worker
             * binds those it has no socket for in the switch slice */
            if (r->bound[i][k] == NULL)
                continue;
            svc->listeners[k] = r->bound[i][k];
            r->bound[i][k] = NULL;
            px_listener_attach(svc->listeners[k], svc);
        }
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
    /* a dropped service serves on with its old config until its slice
     * closes its listeners; its checkers stop now (its index is another's) */
    r->gone = xcalloc(nold > 0 ? nold : 1, sizeof(*r->gone));
    r->ngone = 0;
    for (i = 0; i < nold; i++) {
        if (kept[i])
            continue;
        summary_add(r->services, '-', olds[i]->conf->name);
        px_verdict_stop_service(olds[i]);
        r->gone[r->ngone++] = olds[i];
    }
    free(kept);
    free(own);
    free(olds);
    free(lst);
}

/* The reload on a worker's replica, as jobs: the swap, then one job per
 * switch slice, which also binds the addresses of its services that the
 * worker does not listen on yet (SO_REUSEPORT beside the main loop's, which
 * bound them in the prepare and accepts alone until then). */
struct job_reload {
    struct px_confref *cref;         /* the new generation */
    struct px_tls_ctx **tls;         /* per new service, as the main loop's prepare
                                      * built it */
    const int *old_of_new;           /* as the main loop's prepare found */
    const bool *defer;               /* the same */
    unsigned n;
    unsigned ngone;                  /* services dropped (the same on every replica) */
    struct px_service ***wgone;      /* owned: per worker (worker_id - 1), its dropped
                                      * services, which its swap job fills */
    unsigned from, to;               /* job_switch: the new services of this slice,
                                      * then n + the dropped ones */
    struct px_srv *main;             /* its replica, swapped and published */
};

/* Worker <w>'s service <i> takes the routing snapshot's weight and
 * generation of the main replica's, which is published first. */
static void
publish_from_main(struct px_srv *w, struct px_srv *m, unsigned i)
{
    px_service_publish(w->svcs[i], m->svcs[i]->snap->weight_bp, m->svcs[i]->snap->generation);
    w->svcs[i]->applied_state = m->svcs[i]->applied_state;
}

static void
job_swap(struct px_srv *w, void *arg)
{
    struct job_reload *j = arg;
    struct reload r;
    uint64_t t0 = mono_us(), c0 = cpu_us();
    unsigned i;

    memset(&r, 0, sizeof(r));
    r.n = j->n;
    r.old_of_new = (int *)j->old_of_new;
    r.defer = (bool *)j->defer;
    r.tls = j->tls;                    /* borrowed: each replica takes references */
    r.bound = xcalloc(r.n > 0 ? r.n : 1, sizeof(*r.bound));   /* none: bound later */
    for (i = 0; i < r.n; i++)
        r.bound[i] = xcalloc(j->cref->conf->services[i].nlisten > 0
                             ? j->cref->conf->services[i].nlisten : 1, sizeof(*r.bound[i]));
    reload_swap(w, &r, px_confref_get(j->cref), NULL);
    j->wgone[w->worker_id - 1] = r.gone;   /* its own slot: workers run at once */
    for (i = 0; i < w->nsvcs && i < j->main->nsvcs; i++) {
        px_service_share(w->svcs[i], j->main->svcs[i]);   /* a new one's counts */
        if (!j->defer[i])
            publish_from_main(w, j->main, i);  /* a snapshot borrows from its config */
    }
    px_listen_caps(w);                 /* new listeners, new caps */
    step_log(w->worker_id, "swap", t0, c0);
}

/* Switch slice on worker <w>: the deferred services of [from, to) take their
 * new config, as they just did on the main replica, and every one of them
 * listens on the addresses the worker has no socket for yet. */
static void
job_switch(struct px_srv *w, void *arg)
{
    const struct job_reload *j = arg;
    uint64_t t0 = mono_us(), c0 = cpu_us();
    unsigned i, k;

    for (i = j->from; i < j->to && i < j->n && i < w->nsvcs; i++) {
        struct px_service *svc = w->svcs[i];

        if (j->defer[i]) {
            reload_service_keep(w, svc, j->cref, i, NULL);
            publish_from_main(w, j->main, i);
        }
        for (k = 0; svc->listeners != NULL && k < svc->conf->nlisten; k++) {
            if (svc->listeners[k] != NULL)
                continue;
            svc->listeners[k] = px_listener_new(w, &svc->conf->listen[k]);
            if (svc->listeners[k] == NULL)
                log_at(LL_ERR, "reload", 0, "worker %u: cannot listen on %s: %s; the other "
                       "workers do", w->worker_id, svc->conf->listen[k].text,
                       strerror(errno));
            else
                px_listener_attach(svc->listeners[k], svc);
        }
    }
    for (i = j->from > j->n ? j->from : j->n; i < j->to; i++)
        reload_service_gone(w, NULL, j->wgone[w->worker_id - 1][i - j->n]);
    if (j->to >= j->n + j->ngone)
        px_listen_caps(w);             /* every service's own cap, from its config */
    step_log(w->worker_id, "switch slice", t0, c0);
}

/* Writes the audit entry of a reload attempt and its log line. */
static void
reload_audit(struct px_daemon *d, uint64_t from_gen, const char *reason, bool ok)
{
    struct px_srv *srv = &d->srv;
    struct adm_audit_entry ae;
    char from[32], to[32], aerr[512];
    json_t *fig, *gens;
    unsigned i;

    if (d->audit_file == NULL)
        return;
    gens = json_object();
    for (i = 0; i < srv->nsvcs; i++)
        json_object_set_new(gens, srv->svcs[i]->conf->name, json_integer((json_int_t)
                            adm_control_state(d->ctl, i)->generation));
    fig = json_pack("{s:s, s:b, s:I, s:I, s:I, s:o}", "file", srv->conf->file, "ok", ok,
                    "config_generation", (json_int_t)srv->conf_generation,
                    "reloads", (json_int_t)d->reloads,
                    "reload_failures", (json_int_t)d->reload_failures,
                    "generations", gens);
    snprintf(from, sizeof(from), "%llu", (unsigned long long)from_gen);
    snprintf(to, sizeof(to), "%llu", (unsigned long long)srv->conf_generation);
    ae = (struct adm_audit_entry){
        .service = "*", .actor = "signal:HUP", .action = "reload",
        .reason = reason, .generation = srv->conf_generation, .figures = fig,
        .from_text = from, .to_text = to,
    };
    if (adm_audit_append(d->audit_file, &ae, aerr, sizeof(aerr)) != 0)
        log_at(LL_ERR, "reload", 0, "audit log: %s", aerr);
    json_decref(fig);
}

void
px_daemon_set_cap(struct px_daemon *d)
{
    struct px_srv *srv = &d->srv;
    long want = srv->conf->max_connections;
    unsigned cap = want >= 0 ? (unsigned)want : d->conns_cap_default;

    if (cap != __atomic_load_n(&srv->conns_cap, __ATOMIC_RELAXED)
        || srv->conf_generation == 1)
        log_at(LL_INFO, "listen", 0, "limits.max_connections: %u%s", cap,
               cap == 0 ? " (no cap: the clients' share of descriptors is the limit)"
               : want < 0 ? " (from RLIMIT_NOFILE: a third of the clients' share of "
                            "descriptors left; \"limits\": {\"max_connections\"} sets it)" : "");
    __atomic_store_n(&srv->conns_cap, cap, __ATOMIC_RELAXED);
    px_listen_caps(srv);
}

/* ---- a reload, step by step ---------------------------------------------- */

/* A reload from SIGHUP to its audit entry: the file read and checked on a
 * thread of its own (px_conf_load(): at 1000 services that is 10 ms of
 * parsing that no request waits for), then the steps on the main loop, each
 * a short event: prepare, swap, switch slices, the old generation freed,
 * the end. <state> settles who frees it while the file is read: the thread
 * once the main loop abandoned it (a stop while the file is read: a file
 * that cannot be read never holds a stop), else the main loop. */
enum { LOAD_RUNNING, LOAD_DONE, LOAD_ABANDONED };
enum { STEP_PREPARE, STEP_TLS, STEP_FOLD, STEP_SWAP, STEP_SWITCH, STEP_FREE, STEP_END };

struct px_reload_load {
    pthread_t thread;
    bool joined;                     /* the thread is over: the steps run */
    char *file;                      /* owned: the running config's file */
    struct px_conf *conf;            /* the thread's result; NULL: failed, see <err> */
    char err[1024];
    int efd;                         /* owned: eventfd, "loaded" */
    struct event *ev;                /* owned by the main loop: <efd> readable */
    bool again;                      /* a SIGHUP came meanwhile: reload again */
    int state;                       /* atomic: LOAD_* */
    struct event *step;              /* owned: the next step, at the loop's next turn */
    int next_step;                   /* STEP_* */
    struct reload r;                 /* prepared, then being committed */
    struct job_reload jr;            /* the new generation, as every replica takes it */
    struct px_confref *old;          /* owned from the swap: the generation replaced,
                                      * freed in a step of its own */
    uint64_t from_gen;
};

static void
load_free(struct px_reload_load *l)
{
    px_conf_free(l->conf);
    if (l->efd >= 0)
        close(l->efd);
    free(l->file);
    free(l);
}

static void *
load_main(void *arg)
{
    struct px_reload_load *l = arg;
    uint64_t one = 1;

    l->conf = px_conf_load(l->file, l->err, sizeof(l->err));
    if (__atomic_exchange_n(&l->state, LOAD_DONE, __ATOMIC_ACQ_REL) == LOAD_ABANDONED) {
        load_free(l);                  /* nobody waits for it any more */
        return NULL;
    }
    while (write(l->efd, &one, sizeof(one)) < 0 && errno == EINTR)
        ;
    return NULL;
}

/* A refused reload: logged, counted and audited; nothing changed. */
static void
reload_failed(struct px_daemon *d, const char *err)
{
    struct px_srv *srv = &d->srv;
    char reason[RELOAD_TEXT_MAX * 2 + 64];

    d->reload_failures++;
    log_at(LL_ERR, "reload", 0, "reload of %s failed, running configuration (generation "
           "%llu) unchanged: %s", srv->conf->file, (unsigned long long)srv->conf_generation,
           err);
    snprintf(reason, sizeof(reason), "failed: %s", err);
    reload_audit(d, srv->conf_generation, reason, false);
}

static void load_start(struct px_daemon *d);

/* The reload of d->reload is over (applied, refused or dropped): frees it,
 * then reads the file again when a SIGHUP asked for it meanwhile, else
 * tells d->reloaded. <tell>: false for a reload dropped by the stop. */
static void
reload_done(struct px_daemon *d, bool tell)
{
    struct px_reload_load *l = d->reload;
    bool again = l->again;
    unsigned i;

    d->reload = NULL;
    for (i = 0; l->jr.wgone != NULL && i + 1 < d->srv.nworkers; i++)
        free(l->jr.wgone[i]);
    free(l->jr.wgone);
    reload_free(&l->r);
    px_confref_put(l->old);
    if (l->step != NULL)
        event_free(l->step);
    if (l->ev != NULL)
        event_free(l->ev);
    load_free(l);
    if (!tell)
        return;
    if (again && !d->srv.stopping) {
        /* a SIGHUP while it was applied: the file may have changed since */
        log_at(LL_INFO, "reload", 0, "SIGHUP during the reload: reloading %s again",
               d->srv.conf->file);
        load_start(d);
        return;
    }
    if (d->reloaded != NULL)
        d->reloaded(d);
}

/* Main replica's service <i> takes the control plane's weight and state
 * (adm_control_set_plan() may have stopped a plan the config no longer has). */
static void
publish_main(struct px_daemon *d, unsigned i)
{
    const struct adm_svc_state *st = adm_control_state(d->ctl, i);

    px_service_publish(d->srv.svcs[i], st->weight_bp, st->generation);
    d->srv.svcs[i]->applied_state = (int)st->state;
}

/* The swap: the control plane re-keyed (which may still refuse the
 * reload: 0, or -1 with <err> and nothing changed), then every replica.
 * Kept services take their new config later (step_switch) when deferred. */
static int
step_swap(struct px_daemon *d, char *err, size_t errlen)
{
    struct px_reload_load *l = d->reload;
    struct px_srv *srv = &d->srv;
    struct reload *r = &l->r;
    const char **names;
    uint32_t *initial;
    unsigned i;
    int rc;

    names = xcalloc(r->n > 0 ? r->n : 1, sizeof(*names));
    initial = xcalloc(r->n > 0 ? r->n : 1, sizeof(*initial));
    for (i = 0; i < r->n; i++) {
        names[i] = r->conf->services[i].name;
        initial[i] = r->conf->services[i].route.weight_bp;
    }
    rc = adm_control_reconfigure(d->ctl, names, initial, r->n, err, errlen);
    free(names);
    free(initial);
    if (rc != 0)
        return -1;
    l->jr = (struct job_reload){
        .cref = px_confref_new(r->conf, srv->conf_generation + 1),
        .old_of_new = r->old_of_new, .defer = r->defer, .n = r->n, .main = srv,
        .tls = r->tls,
    };
    l->jr.cref->cookies = r->cookies;
    r->conf = NULL;                    /* owned by the generation now */
    r->cookies = NULL;
    /* the old generation is freed in a step of its own, not by whichever
     * replica drops it last in the middle of a slice */
    l->old = px_confref_get(srv->cref);
    reload_swap(srv, r, l->jr.cref, d);
    for (i = 0; i < srv->nsvcs; i++)
        adm_control_set_plan(d->ctl, i, &srv->conf->services[i].plan,
                             srv->conf->services[i].rollback.min_requests);
    adm_control_set_require_reason(d->ctl, srv->conf->admin_require_reason);
    for (i = 0; i < srv->nsvcs; i++)
        if (!r->defer[i])
            publish_main(d, i);        /* a deferred one keeps its config's snapshot */
    px_daemon_set_cap(d);
    /* the workers swap and publish in one job: a snapshot borrows from its
     * config, so no event may run between the two */
    l->jr.wgone = xcalloc(srv->nworkers > 1 ? srv->nworkers - 1 : 1, sizeof(*l->jr.wgone));
    px_workers_run(srv, job_swap, &l->jr);
    l->jr.ngone = r->ngone;
    if (d->tick != NULL)
        px_tick_reconfigure(d->tick, r->old_of_new, srv->nsvcs);
    if (d->gates != NULL)
        px_gates_reconfigure(d->gates, r->old_of_new, srv->nsvcs);
    return 0;
}

/* One switch slice: for about RELOAD_SLICE_US (one service at least) on
 * the main replica, deferred services take their new config and new ones
 * are logged and their checkers started; then the same services on every
 * worker's replica, which also binds their addresses it has no socket for
 * yet. True when every service has switched. */
static bool
step_switch(struct px_daemon *d)
{
    struct px_reload_load *l = d->reload;
    struct px_srv *srv = &d->srv;
    struct reload *r = &l->r;
    uint64_t t0 = mono_us();
    unsigned i = l->jr.to;

    l->jr.from = i;
    while (i < r->n + r->ngone && (i == l->jr.from || mono_us() - t0 < RELOAD_SLICE_US)) {
        if (i >= r->n)
            reload_service_gone(srv, r, r->gone[i - r->n]);
        else if (r->defer[i]) {
            reload_service_keep(srv, srv->svcs[i], l->jr.cref, i, d);
            publish_main(d, i);
        } else if (r->old_of_new[i] < 0) {
            const struct px_service_conf *sc = srv->svcs[i]->conf;
            unsigned k;

            log_at(LL_INFO, "reload", 0, "service %s added", sc->name);
            for (k = 0; k < sc->nlisten; k++)
                log_at(LL_INFO, "listen", 0, "service %s (%s) listening on %s", sc->name,
                       sc->mode == PX_MODE_TCP ? "tcp" : "http", sc->listen[k].text);
            px_verdict_start_service(d, srv->svcs[i]);
        }
        i++;
    }
    l->jr.to = i;
    px_workers_run(srv, job_switch, &l->jr);
    if (i < r->n + r->ngone)
        return false;
    px_listen_caps(srv);               /* every service's own cap, from its config */
    return true;
}

/* The end: counted, logged, audited. */
static void
step_end(struct px_daemon *d)
{
    struct px_reload_load *l = d->reload;
    struct px_srv *srv = &d->srv;
    struct reload *r = &l->r;
    char reason[RELOAD_TEXT_MAX * 2 + 64], msg[RELOAD_TEXT_MAX * 2 + 256], g[24];

    d->reloads++;
    snprintf(reason, sizeof(reason), "services %s, listeners %s",
             r->services[0] != '\0' ? r->services : "unchanged",
             r->listeners[0] != '\0' ? r->listeners : "unchanged");
    snprintf(g, sizeof(g), "%llu", (unsigned long long)srv->conf_generation);
    snprintf(msg, sizeof(msg), "configuration generation %llu loaded from %s: %s; "
             "%u service(s), weights and states kept",
             (unsigned long long)srv->conf_generation, srv->conf->file, reason,
             srv->nsvcs);
    log_kv(LL_INFO, "reload", "reload", "ok", "true", "config_generation", g,
           "file", srv->conf->file, "msg", msg);
    reload_audit(d, l->from_gen, reason, true);
}

/* Runs step l->next_step; false when the reload is over (d->reload freed). */
static bool
step_run(struct px_daemon *d, bool tell)
{
    static const char *const names[] = { "prepare slice", "prepare end (TLS)", "fold",
                                         "swap", "switch slice", "old generation freed",
                                         "end" };
    struct px_reload_load *l = d->reload;
    uint64_t t0 = mono_us(), c0 = cpu_us();
    int step = l->next_step, rc;
    char err[1024];

    switch (step) {
    case STEP_PREPARE:
    case STEP_TLS:
        rc = step == STEP_PREPARE ? prepare_slice(&d->srv, &l->r, RELOAD_PREPARE_US, err,
                                                  sizeof(err))
                                  : prepare_end(&d->srv, &l->r, err, sizeof(err));
        if (rc < 0) {
            reload_failed(d, err);
            reload_done(d, tell);
            return false;
        }
        if (step == STEP_TLS)
            l->next_step = STEP_FOLD;
        else if (rc == 1)
            l->next_step = STEP_TLS;
        break;
    case STEP_FOLD:
        /* the workers' counts of servers and services that may go, a loop
         * turn before the swap: the swap's event does not wait for the
         * workers twice */
        px_workers_fold(&d->srv);
        l->next_step = STEP_SWAP;
        break;
    case STEP_SWAP:
        if (step_swap(d, err, sizeof(err)) < 0) {
            reload_failed(d, err);
            reload_done(d, tell);
            return false;
        }
        l->next_step = STEP_SWITCH;
        break;
    case STEP_SWITCH:
        if (step_switch(d))
            l->next_step = STEP_FREE;
        break;
    case STEP_FREE:
        px_confref_put(l->old);        /* frees the old generation's config */
        l->old = NULL;
        l->next_step = STEP_END;
        break;
    default:
        step_end(d);
        step_log(0, names[step], t0, c0);
        reload_done(d, tell);
        return false;
    }
    step_log(0, names[step], t0, c0);
    return true;
}

/* Runs what is left of the reload at once (the stop, or no event). */
static void
steps_finish(struct px_daemon *d, bool tell)
{
    while (step_run(d, tell))
        ;
}

static void
on_step(evutil_socket_t fd, short what, void *arg)
{
    struct px_daemon *d = arg;
    struct timeval now = { 0, 0 };

    (void)fd;
    (void)what;
    if (d->reload->next_step <= STEP_SWAP && d->srv.stopping) {
        log_at(LL_WARN, "reload", 0, "shutting down: the configuration loaded is not applied");
        reload_done(d, false);
        return;
    }
    if (!step_run(d, true))
        return;
    if (event_add(d->reload->step, &now) < 0)
        steps_finish(d, true);         /* no event: the rest at once */
}

/* The file was read and checked (config <conf>, owned; NULL: refused with
 * <lerr>): the prepare, then the steps from the loop's next turn. */
static void
reload_begin(struct px_daemon *d, struct px_conf *conf, const char *lerr)
{
    struct px_reload_load *l = d->reload;
    struct px_srv *srv = &d->srv;
    struct timeval now = { 0, 0 };
    uint64_t t0 = mono_us(), c0 = cpu_us();
    char err[1024];

    l->from_gen = srv->conf_generation;
    if (conf == NULL) {
        reload_failed(d, lerr);
        reload_done(d, true);
        return;
    }
    if (prepare_begin(srv, &l->r, conf, err, sizeof(err)) < 0) {
        reload_failed(d, err);
        reload_done(d, true);
        return;
    }
    reload_warn_static(srv->conf, l->r.conf);
    step_log(0, "prepare begun", t0, c0);
    l->next_step = STEP_PREPARE;
    l->step = event_new(srv->base, -1, 0, on_step, d);
    if (l->step == NULL || event_add(l->step, &now) < 0)
        steps_finish(d, true);         /* no event: the rest at once */
}

static void
on_loaded(evutil_socket_t fd, short what, void *arg)
{
    struct px_daemon *d = arg;
    struct px_reload_load *l = d->reload;
    struct px_conf *conf;

    (void)fd;
    (void)what;
    pthread_join(l->thread, NULL);
    l->joined = true;
    event_free(l->ev);
    l->ev = NULL;
    conf = l->conf;
    l->conf = NULL;
    if (d->srv.stopping) {
        log_at(LL_WARN, "reload", 0, "shutting down: the configuration loaded is not applied");
        px_conf_free(conf);
        reload_done(d, false);
        return;
    }
    reload_begin(d, conf, l->err);
}

/* Starts reading the running config's file on a thread of its own; when
 * no thread can be had, reads it here. */
static void
load_start(struct px_daemon *d)
{
    struct px_reload_load *l = xcalloc(1, sizeof(*l));
    sigset_t all, old;
    int e = -1;

    l->file = xstrdup(d->srv.conf->file);
    l->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    d->reload = l;
    if (l->efd >= 0 &&
        (l->ev = event_new(d->srv.base, l->efd, EV_READ, on_loaded, d)) != NULL &&
        event_add(l->ev, NULL) == 0) {
        /* signals are the main loop's: the thread blocks them all */
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        e = pthread_create(&l->thread, NULL, load_main, l);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    if (e == 0)
        return;
    log_at(LL_WARN, "reload", 0, "cannot start the thread that reads the configuration (%s): "
           "reading it on the main loop", e > 0 ? strerror(e) : strerror(errno));
    if (l->ev != NULL)
        event_free(l->ev);
    l->ev = NULL;
    l->joined = true;
    l->conf = px_conf_load(l->file, l->err, sizeof(l->err));
    {
        struct px_conf *conf = l->conf;

        l->conf = NULL;
        reload_begin(d, conf, l->err);
    }
}

void
px_reload(struct px_daemon *d)
{
    struct px_srv *srv = &d->srv;

    /* every SIGHUP reopens the log files, whether the reload succeeds or
     * not (log rotation sends SIGHUP too) */
    px_ops_reopen_logs(srv);
    if (srv->stopping) {
        log_at(LL_WARN, "reload", 0, "SIGHUP while shutting down: configuration not reloaded");
        return;
    }
    if (d->reload != NULL) {
        d->reload->again = true;
        log_at(LL_INFO, "reload", 0, "SIGHUP while %s is being %s: it is read again "
               "once this reload is applied", srv->conf->file,
               d->reload->joined ? "applied" : "read");
        return;
    }
    log_at(LL_INFO, "reload", 0, "SIGHUP: reloading %s", srv->conf->file);
    load_start(d);
}

void
px_reload_stop(struct px_daemon *d)
{
    struct px_reload_load *l = d->reload;

    if (l == NULL)
        return;
    if (l->joined) {
        /* prepared and not swapped: dropped, nothing changed; swapped: the
         * replicas finish taking the new config, at once */
        if (l->next_step <= STEP_SWAP) {
            log_at(LL_WARN, "reload", 0, "stopping: the configuration loaded is not applied");
            reload_done(d, false);
        } else {
            steps_finish(d, false);
        }
        return;
    }
    d->reload = NULL;
    if (__atomic_exchange_n(&l->state, LOAD_ABANDONED, __ATOMIC_ACQ_REL) == LOAD_DONE) {
        pthread_join(l->thread, NULL);
        event_free(l->ev);
        load_free(l);
        return;
    }
    /* still reading (a file that blocks): the thread frees it when done */
    log_at(LL_WARN, "reload", 0, "stopping while %s is still being read: not waiting for it",
           l->file);
    event_free(l->ev);
    pthread_detach(l->thread);
}
