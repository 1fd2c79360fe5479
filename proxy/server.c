/*
 * server: the runtime objects of the data plane (see server.h): config
 * generations, server runtimes, services with their published routing
 * snapshot and per-side outcome bookkeeping, and the count of open
 * connections that tells a draining loop it is done. The base the
 * connection modes stand on: it calls none of them, only the pool (a
 * server's idle connections go with the server).
 *
 * Snapshot swaps happen on the loop thread between events, so a request in
 * the middle of rt_choose() never sees a half-written state; the old
 * snapshot is freed at once because nothing holds it across events.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "lib/log.h"
#include "lib/timeval.h"
#include "lib/xmalloc.h"
#include "health/check.h"
#include "health/policy.h"
#include "proxy/cookie.h"
#include "proxy/io.h"
#include "proxy/server.h"

const uint64_t px_lat_bounds_us[PX_LAT_NBOUNDS] = {
    1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
    1000000, 2500000, 5000000, 10000000,
};

const char *const px_err_names[PX_E__COUNT] = {
    "none", "connect", "connect_timeout", "upstream_reset", "upstream_timeout",
    "upstream_bad_response", "no_server", "tls_verify", "tls_handshake", "local_resource",
};

const char *const px_accept_err_names[PX_AE__COUNT] = {
    "emfile", "enfile", "enomem", "other",
};

uint64_t
px_srv_conn_id(struct px_srv *srv)
{
    return (++srv->next_conn_id - 1) * (srv->nworkers > 0 ? srv->nworkers : 1) +
           srv->worker_id + 1;
}

struct event_base *
px_event_base_new(void)
{
    /* epoll changes are batched and applied at the next epoll_wait: an
     * interest switched on and off in one loop pass costs no system call.
     * Its caveat (a dup()ed descriptor closed while its twin stays
     * registered) does not apply: no descriptor is ever dup()ed. No locks:
     * a loop is only ever driven by its own thread (proxy/worker.h).
     * Timers: a timeout runs from the moment it is armed, by
     * CLOCK_MONOTONIC read then (docs/DESIGN.md, "Timeouts"). libevent's
     * default clock on Linux is CLOCK_MONOTONIC_COARSE, up to a scheduler
     * tick behind, and it reads it once per loop pass: either would end a
     * deadline early (a 400 ms server_response_ms after 397 ms). */
    struct event_config *ecfg = event_config_new();
    struct event_base *base = NULL;

    if (ecfg != NULL) {
        event_config_set_flag(ecfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
        event_config_set_flag(ecfg, EVENT_BASE_FLAG_NOLOCK);
        event_config_set_flag(ecfg, EVENT_BASE_FLAG_PRECISE_TIMER);
        event_config_set_flag(ecfg, EVENT_BASE_FLAG_NO_CACHE_TIME);
        base = event_base_new_with_config(ecfg);
        event_config_free(ecfg);
    }
    return base != NULL ? base : event_base_new();
}

uint64_t
px_srv_rand(struct px_srv *srv)
{
    uint64_t z = (srv->rng += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t
px_now_us(struct px_srv *srv)
{
    struct timespec ts;

    (void)srv;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t
px_now_ms(struct px_srv *srv)
{
    return px_now_us(srv) / 1000u;
}

/* The count of the per-request warnings held back, written once their
 * second is over (however long the next warning takes to come). */
static void
on_warn_flush(evutil_socket_t fd, short what, void *arg)
{
    struct px_service *svc = arg;
    uint64_t now = px_now_ms(svc->srv), due = log_ratelimit_due_ms(&svc->warn_rl);
    uint64_t held = log_ratelimit_flush(&svc->warn_rl, now);
    struct timeval tv;

    (void)fd;
    (void)what;
    if (held == 0 && due > now) {
        /* early by libevent's coarse clock: again when it is due */
        tv = tv_ms((unsigned)(due - now));
        evtimer_add(svc->warn_timer, &tv);
        return;
    }
    if (held > 0)
        log_write(LL_WARN, svc->warn_module, 0, "service %s: %llu more per-request "
                  "warning(s) held back in the last second (see the counters and the "
                  "access log)", svc->conf->name, (unsigned long long)held);
}

bool
px_service_warn_pass(struct px_service *svc, const char *module)
{
    uint64_t held, now = px_now_ms(svc->srv), due;
    bool pass = log_ratelimit_pass(&svc->warn_rl, now, PX_REQ_WARN_BURST, &held);
    struct timeval tv;

    if (held > 0)
        log_write(LL_WARN, module, 0, "service %s: %llu more per-request warning(s) held "
                  "back in the previous second (see the counters and the access log)",
                  svc->conf->name, (unsigned long long)held);
    if (pass)
        return true;
    /* the first line held back in this second: its count is due when the
     * second ends */
    svc->warn_module = module;
    if (svc->warn_timer == NULL &&
        (svc->warn_timer = evtimer_new(svc->srv->base, on_warn_flush, svc)) == NULL)
        return false;                  /* then the next line that passes says it */
    if (!evtimer_pending(svc->warn_timer, NULL) &&
        (due = log_ratelimit_due_ms(&svc->warn_rl)) != 0) {
        tv = tv_ms(due > now ? (unsigned)(due - now) : 0);
        evtimer_add(svc->warn_timer, &tv);
    }
    return false;
}

struct px_confref *
px_confref_new(struct px_conf *conf, uint64_t generation)
{
    struct px_confref *r = xcalloc(1, sizeof(*r));

    r->conf = conf;
    r->refs = 1;
    r->generation = generation;
    return r;
}

struct px_confref *
px_confref_get(struct px_confref *r)
{
    __atomic_add_fetch(&r->refs, 1, __ATOMIC_RELAXED);
    return r;
}

void
px_confref_put(struct px_confref *r)
{
    if (r == NULL || __atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) > 0)
        return;
    px_cookie_set_free(r->cookies);
    px_conf_free(r->conf);
    free(r);
}

struct px_server_rt *
px_server_rt_new(struct px_service *svc, enum rt_side side, unsigned index,
                 const struct px_addr *addr)
{
    struct px_server_rt *s = xcalloc(1, sizeof(*s));

    s->refs = 1;
    s->attached = true;
    s->addr = *addr;
    s->up = true;                      /* up until checks say otherwise */
    s->svc = svc;
    s->side = side;
    s->index = index;
    list_init(&s->idle);
    list_init(&s->spare);
    return s;
}

struct px_server_rt *
px_server_rt_get(struct px_server_rt *s)
{
    s->refs++;
    return s;
}

void
px_server_rt_put(struct px_server_rt *s)
{
    if (s == NULL || --s->refs > 0)
        return;
    /* the array's reference goes last for an attached server, and a
     * detached one lost its pool and checker when it was detached */
    px_server_rt_close_idle(s);
    hl_check_free(s->check);
    px_tls_up_cache_clear(&s->tls_cache);
    free(s);
}

void
px_service_init(struct px_service *svc, struct px_srv *srv, struct px_confref *cref,
                unsigned idx)
{
    unsigned side, k;

    svc->srv = srv;
    svc->conf = &cref->conf->services[idx];
    svc->cref = px_confref_get(cref);
    svc->shared = xcalloc(1, sizeof(*svc->shared));
    svc->shared->refs = 1;
    svc->idx = idx;
    list_init(&svc->retired_link);
    list_init(&svc->tunnels);
    list_init(&svc->conns);
    list_init(&svc->handshakes);
    for (side = 0; side < RT_SIDE__COUNT; side++) {
        unsigned n = svc->conf->side[side].nservers;

        svc->servers[side] = xcalloc(n > 0 ? n : 1, sizeof(*svc->servers[side]));
        for (k = 0; k < n; k++)
            svc->servers[side][k] = px_server_rt_new(svc, (enum rt_side)side, k,
                                                     &svc->conf->side[side].servers[k]);
        hl_window_init(&svc->window[side], svc->conf->rollback.window_s);
    }
}

void
px_service_free(struct px_service *svc)
{
    unsigned side, k;

    if (svc == NULL)
        return;
    list_unlink(&svc->retired_link);
    if (svc->listeners != NULL) {
        for (k = 0; k < svc->conf->nlisten; k++)
            if (svc->listeners[k] != NULL)
                evconnlistener_free(svc->listeners[k]);
        free(svc->listeners);
    }
    for (side = 0; side < RT_SIDE__COUNT; side++) {
        if (svc->servers[side] == NULL)
            continue;
        for (k = 0; k < svc->conf->side[side].nservers; k++) {
            struct px_server_rt *s = svc->servers[side][k];

            px_server_rt_close_idle(s);
            hl_check_free(s->check);
            s->check = NULL;
            s->attached = false;
            px_server_rt_put(s);
        }
        free(svc->servers[side]);
    }
    for (side = 0; side < RT_SIDE__COUNT; side++)
        hl_window_free(&svc->window[side]);
    free(svc->recent);
    free(svc->shield.ring_legacy);
    if (__atomic_sub_fetch(&svc->shared->refs, 1, __ATOMIC_ACQ_REL) == 0)
        free(svc->shared);
    if (svc->warn_timer != NULL)
        event_free(svc->warn_timer);
    if (svc->shadow != NULL)
        svc->shadow_free(svc->shadow);
    free((void *)svc->snap);
    px_tls_ctx_put(svc->tls);
    px_confref_put(svc->cref);
    free(svc);
}

void
px_service_record(struct px_service *svc, enum rt_side side, struct px_server_rt *server,
                  int status, enum px_err err, uint64_t latency_us)
{
    struct px_side_stats *st = &svc->stats[side];
    uint64_t now_us = px_now_us(svc->srv);
    uint32_t lat = latency_us > UINT32_MAX ? UINT32_MAX : (uint32_t)latency_us;
    enum hl_outcome o;
    unsigned i;

    if (status > 0) {
        o = hl_outcome_from_status(status);
    } else {
        o = HL_OUT_ERROR;
        st->errors[err]++;
        if (server != NULL && err != PX_E_LOCAL)
            server->failures++;        /* a detached one counts for nobody */
    }
    st->by_class[o]++;
    /* the cumulative histogram: at most PX_LAT_NBOUNDS compares, no allocation */
    for (i = 0; i < PX_LAT_NBOUNDS && latency_us > px_lat_bounds_us[i]; i++)
        ;
    st->lat_buckets[i]++;
    st->lat_sum_us += latency_us;
    /* the proxy's own shortage says nothing of the side: no window, so no
     * rollback can follow from it */
    if (err == PX_E_LOCAL && status == 0)
        return;
    hl_window_push(&svc->window[side], now_us / 1000u, o, lat);
    px_service_recent_add(svc, &(struct px_recent){
        .us = now_us, .latency_us = lat, .side = (uint8_t)side, .outcome = (uint8_t)o,
    });
    /* a breach is acted on when it can have happened, not at the next tick:
     * two compares for a request that went well */
    if (side == RT_NEW && hl_policy_suspect(&svc->conf->rollback, o, lat)
        && svc->srv->suspect != NULL)
        svc->srv->suspect(svc->srv);
}

bool
px_service_recent_add(struct px_service *svc, const struct px_recent *r)
{
    if (svc->nrecent == svc->recent_cap) {
        unsigned cap = svc->recent_cap == 0 ? 16 : svc->recent_cap * 2;

        if (svc->recent_cap >= PX_RECENT_MAX) {
            svc->recent_lost = true;
            return false;
        }
        if (cap > PX_RECENT_MAX)
            cap = PX_RECENT_MAX;
        svc->recent = xrealloc(svc->recent, cap * sizeof(svc->recent[0]));
        svc->recent_cap = cap;
    }
    svc->recent[svc->nrecent++] = *r;
    return true;
}

struct px_server_rt *
px_service_other_server(struct px_service *svc, enum rt_side side,
                        const struct px_server_rt *server)
{
    unsigned n = svc->snap->nservers[side], i, k;
    bool current = server != NULL && server->attached && server->svc == svc &&
                   server->side == side && server->index < n;
    unsigned from = current ? server->index : 0;

    /* the snapshot and the arrays are of the same config (a reload
     * republishes both together) */
    for (i = current ? 1 : 0; i < n; i++) {
        k = (from + i) % n;
        if (svc->snap->usable[side] & (1ULL << k))
            return svc->servers[side][k];
    }
    return NULL;
}

void
px_service_publish(struct px_service *svc, uint32_t weight_bp, uint64_t generation)
{
    struct rt_snapshot *s = xmalloc(sizeof(*s));
    const struct rt_snapshot *old = svc->snap;
    unsigned side, i;

    rt_snapshot_init(s, &svc->conf->route, weight_bp,
                     svc->conf->side[RT_LEGACY].nservers,
                     svc->conf->side[RT_NEW].nservers);
    s->generation = generation;
    for (side = 0; side < RT_SIDE__COUNT; side++) {
        s->usable[side] = 0;
        for (i = 0; i < svc->conf->side[side].nservers; i++)
            if (svc->servers[side][i]->up && svc->servers[side][i]->admin == PX_SRV_READY)
                s->usable[side] |= 1ULL << i;
    }
    svc->snap = s;                     /* the swap: one pointer store */
    svc->published_us = px_now_us(svc->srv);
    free((void *)old);
}

bool
px_service_set_up(struct px_service *svc, enum rt_side side, unsigned server,
                  bool up, uint32_t weight_bp, uint64_t generation)
{
    struct px_server_rt *s = svc->servers[side][server];

    if (s->up == up)
        return false;
    s->up = up;
    if (!up)
        px_server_rt_close_idle(s);
    px_service_publish(svc, weight_bp, generation);
    return true;
}

const char *const px_srv_admin_names[PX_SRV__COUNT] = { "ready", "drain", "disabled" };

bool
px_service_set_admin(struct px_service *svc, enum rt_side side, unsigned server,
                     enum px_srv_admin admin, uint32_t weight_bp, uint64_t generation)
{
    struct px_server_rt *s = svc->servers[side][server];

    if (s->admin == admin)
        return false;
    s->admin = (uint8_t)admin;
    if (admin != PX_SRV_READY)
        px_server_rt_close_idle(s);
    px_service_publish(svc, weight_bp, generation);
    return true;
}

/* <v> (0..255) in decimal at <p>; returns the end. */
static char *
put_octet(char *p, unsigned v)
{
    if (v >= 100)
        *p++ = (char)('0' + v / 100);
    if (v >= 10)
        *p++ = (char)('0' + v / 10 % 10);
    *p++ = (char)('0' + v % 10);
    return p;
}

void
px_sockaddr_ip(const struct sockaddr *sa, char *buf, size_t len)
{
    const void *a = NULL;

    if (sa->sa_family == AF_INET && len >= sizeof("255.255.255.255")) {
        /* what inet_ntop() writes, without the sprintf() it makes per
         * address (once per accepted connection) */
        const unsigned char *b =
            (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
        char *p = buf;
        int i;

        for (i = 0; i < 4; i++) {
            if (i > 0)
                *p++ = '.';
            p = put_octet(p, b[i]);
        }
        *p = '\0';
        return;
    }
    if (sa->sa_family == AF_INET)
        a = &((const struct sockaddr_in *)sa)->sin_addr;
    else if (sa->sa_family == AF_INET6)
        a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    if (a == NULL || inet_ntop(sa->sa_family, a, buf, (socklen_t)len) == NULL)
        snprintf(buf, len, "unknown");
}

/* srv->retired, made a list on first use: a struct px_srv starts zeroed
 * (main(), proxy/worker.c), with no constructor here to set it up. */
static struct list *
retired_list(struct px_srv *srv)
{
    if (srv->retired.next == NULL)
        list_init(&srv->retired);
    return &srv->retired;
}

void
px_srv_retire(struct px_srv *srv, struct px_service *svc)
{
    list_push(retired_list(srv), &svc->retired_link);   /* most recent first */
}

struct px_service *
px_srv_retired_pop(struct px_srv *srv)
{
    struct list *l = retired_list(srv);
    struct px_service *svc;

    if (list_empty(l))
        return NULL;
    svc = list_entry(l->next, struct px_service, retired_link);
    list_unlink(&svc->retired_link);
    return svc;
}

void
px_service_share(struct px_service *w, struct px_service *m)
{
    if (w->shared == m->shared)
        return;
    if (__atomic_sub_fetch(&w->shared->refs, 1, __ATOMIC_ACQ_REL) == 0)
        free(w->shared);
    __atomic_add_fetch(&m->shared->refs, 1, __ATOMIC_ACQ_REL);
    w->shared = m->shared;
}

void
px_srv_conn_closed(struct px_srv *srv, struct px_service *svc)
{
    svc->conns_active--;
    srv->conns_active--;
    __atomic_sub_fetch(&svc->shared->conns, 1, __ATOMIC_RELAXED);
    __atomic_sub_fetch(&px_srv_main(srv)->conns_all, 1, __ATOMIC_RELAXED);
    if (srv->cap_paused && srv->cap_timer != NULL)
        event_active(srv->cap_timer, EV_TIMEOUT, 1);   /* room, maybe: look now */
    /* not while srv_free() closes everything: it frees retired services
     * itself, after their connections */
    if (svc->retired && svc->conns_active == 0 && !srv->freeing) {
        log_at(LL_INFO, "reload", 0, "service %s: last connection closed; removed",
               svc->conf->name);
        px_service_free(svc);          /* takes it off srv->retired */
    }
    if (srv->stopping && srv->conns_active == 0) {
        if (srv->drained != NULL)
            srv->drained(srv);
        else
            event_base_loopexit(srv->base, NULL);
    }
}

/* ---- the idle list of a server runtime (taken and given by proxy/pool.c) */

void
px_pooled_free(struct px_pooled *p)
{
    list_unlink(&p->link);
    p->srv_rt->nidle--;
    px_io_free(p->bev);                /* its deferred callbacks, if any, find none */
    free(p);
}

void
px_server_rt_close_idle(struct px_server_rt *s)
{
    while (!list_empty(&s->idle))
        px_pooled_free(px_pooled_of(s->idle.next));
    if (s->idle_timer != NULL)
        event_free(s->idle_timer);
    s->idle_timer = NULL;
    while (!list_empty(&s->spare)) {
        struct px_pooled *p = px_pooled_of(s->spare.next);

        list_unlink(&p->link);
        free(p);
    }
}

