/*
 * server: the runtime objects of the data plane. struct px_srv holds one
 * event loop and its replica of the data plane (every service, its server
 * runtimes, pools, counters and windows); the main loop's sits in struct
 * px_daemon (proxy/daemon.h) beside the control plane. With `workers: N`
 * there are N replicas, one per thread (proxy/worker.h); nothing here is a
 * global. A service publishes its routing as an immutable snapshot pointer
 * that is swapped whole between events (never edited while a request is
 * choosing), by the replica's own thread.
 *
 * The data plane in layers, each file calling only those below it:
 * proxy/listen.c (listeners, the accept dispatch, the fan-outs to both
 * modes) above the connection modes, proxy/http.c (HTTP connections, with
 * proxy/http_msg.c and proxy/http_conn.c below it) and proxy/tcp.c (TCP
 * tunnels), above proxy/relay.h (the relay with back-pressure both tunnels
 * share) and proxy/pool.c (idle upstream connections), above this file.
 * The modes report outcomes here so the per-side counters and windows stay
 * in one place; this file calls none of them (a drained loop is told
 * through srv->drained, set by proxy/worker.c).
 *
 * Lifetimes across a configuration reload (SIGHUP, proxy/reload.c). A reload
 * swaps the config between events; connections opened before it keep
 * running, so nothing they hold may be freed under them:
 *
 *  1. Config generations are refcounted (struct px_confref). The srv holds
 *     one reference on the current generation, every service one on the
 *     generation its <conf> points into, every HTTP connection and TCP
 *     tunnel one on the generation it captured (its own <conf> pointer).
 *     A generation is freed when its last reference goes. A connection
 *     never reads svc->conf for the request in flight: it reads its own
 *     captured service conf, and an HTTP connection takes the service's
 *     current one only between requests (no side, no server bound).
 *  2. Server runtimes (struct px_server_rt) are individually allocated and
 *     refcounted: svc->servers[side][i] holds one reference while the
 *     server is in the config ("attached"), a connection holds one for the
 *     server its current request or tunnel is bound to. A reload that
 *     removes a server detaches it: its idle pool is closed, its checker
 *     freed, and it leaves the arrays; requests in flight to it finish and
 *     their per-server counts go to the detached object, which is freed
 *     with the last reference. A detached server never takes a pooled
 *     connection back, and it is never chosen again. Its address is copied
 *     into the runtime, so connecting and logging never index a config.
 *  3. Services are individually allocated (srv->svcs is an array of
 *     pointers, in config order, re-ordered by a reload; svc->idx follows).
 *     A removed service is "retired": listeners closed, idle keep-alive
 *     clients closed, its other connections finish; it is freed when its
 *     last connection ends (px_srv_conn_closed), or at exit.
 *  4. Indices are positions in the current config: svc->idx, rt->index and
 *     the router's server indices change on a reload. Whatever keeps one
 *     across events (the control plane, the policy tick) is remapped by the
 *     reload; connections keep pointers, never indices.
 *  5. Listeners belong to the service that owns the address in the current
 *     config; an address kept by a reload keeps its socket (its callback
 *     argument moves to the new owner), so no connect is refused.
 *  6. A checker borrows its health settings from a config generation that
 *     only the srv and the service hold: a reload repoints a kept checker
 *     to the new copy (hl_check_set_conf) before the old one can go, and
 *     restarts it when the settings changed. Its callback argument is its
 *     server runtime, which outlives it.
 * All of it holds per replica: each replica's objects are touched by its
 * own thread only, and the reload is committed on each replica by its own
 * thread (the main loop in the SIGHUP callback, then every worker in one
 * job that also republishes its snapshots), so no request ever sees half of
 * it. Shared between threads: the config generations (read-only, atomic
 * reference count) and nothing else.
 */
#ifndef CUTOVER_PROXY_SERVER_H
#define CUTOVER_PROXY_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "lib/list.h"
#include "lib/log.h"
#include "lib/slab.h"
#include "health/window.h"
#include "proxy/conf.h"
#include "proxy/tls.h"
#include "proxy/tls_up.h"
#include "router/router.h"

struct event;
struct event_base;
struct evconnlistener;
struct px_access_log;
struct px_cookie_set;
struct px_exch;
struct px_shadow_svc;
struct h1_field;
struct bufferevent;
struct evbuffer;

/* One loaded configuration, shared by reference count (rule 1 above). */
struct px_confref {
    struct px_conf *conf;        /* owned: freed with the last reference */
    unsigned refs;               /* atomic: every worker's services and
                                  * connections share a generation */
    uint64_t generation;         /* 1 at startup, +1 per successful reload */
    struct px_cookie_set *cookies;   /* owned: the sticky-cookie MAC tables of
                                  * <conf>'s services (proxy/cookie.h); NULL when
                                  * none is sticky by cookie. Set by whoever
                                  * made the generation, before publishing it */
};

/* Wraps <conf> (taken over) as generation <generation> with one reference. */
struct px_confref *px_confref_new(struct px_conf *conf, uint64_t generation);

/* Takes one more reference on <r>; returns <r>. */
struct px_confref *px_confref_get(struct px_confref *r);

/* Drops one reference; the last one frees the config. NULL is a no-op. */
void px_confref_put(struct px_confref *r);

/* Why a request or connection failed: one table feeds the log, the counters
 * and the status mapping. Must remain in this order (px_err_names). */
enum px_err {
    PX_E_NONE = 0,
    PX_E_CONNECT,            /* upstream refused / unreachable */
    PX_E_CONNECT_TIMEOUT,    /* upstream connect timed out */
    PX_E_UP_RESET,           /* upstream closed or reset before a complete response */
    PX_E_UP_TIMEOUT,         /* upstream sent no response head in time / idle mid-body */
    PX_E_UP_BAD,             /* upstream sent an invalid response */
    PX_E_NO_SERVER,          /* no side had a usable server */
    PX_E_TLS_VERIFY,         /* upstream TLS: the server's certificate was refused */
    PX_E_TLS_HANDSHAKE,      /* upstream TLS: the handshake failed otherwise */
    PX_E_LOCAL,              /* the proxy ran out of a local resource (descriptors,
                              * memory, ports: lib/syserr.h) for the upstream
                              * connection: 503, and never counted against the
                              * server or in a window (never a rollback) */
    PX_E__COUNT
};

extern const char *const px_err_names[PX_E__COUNT];

/* The error kind of an upstream TLS connect failure (proxy/tls_up.h). */
static inline enum px_err
px_tls_err(enum px_tls_up_fail f)
{
    return f == PX_TLS_UP_VERIFY ? PX_E_TLS_VERIFY
           : f == PX_TLS_UP_HANDSHAKE ? PX_E_TLS_HANDSHAKE : PX_E_CONNECT;
}
/* Why an accept() failed (cutover_accept_errors_total{reason}); a client
 * connection refused because its descriptor was in the reserve
 * (proxy/io.h) is an emfile: the clients' share of descriptors ran out.
 * Must remain in this order (px_accept_err_names). */
enum px_accept_err {
    PX_AE_EMFILE = 0,
    PX_AE_ENFILE,
    PX_AE_ENOMEM,            /* ENOMEM and ENOBUFS */
    PX_AE_OTHER,
    PX_AE__COUNT
};

extern const char *const px_accept_err_names[PX_AE__COUNT];

/* Upper bounds of the cumulative latency histogram of every side, in
 * microseconds, increasing (cutover_request_duration_seconds: 1 ms .. 10 s,
 * then +Inf). Unlike the passive windows, it never forgets. */
#define PX_LAT_NBOUNDS 13
extern const uint64_t px_lat_bounds_us[PX_LAT_NBOUNDS];

/* Counters of one side of one service. Plain integers, incremented in place. */
struct px_side_stats {
    uint64_t requests;           /* HTTP requests / TCP connections sent to this side */
    uint64_t by_class[5];        /* 2xx, 3xx, 4xx, 5xx (response status), error */
    uint64_t errors[PX_E__COUNT];/* by reason */
    uint64_t fallbacks;          /* requests that came here because the other side was down */
    uint64_t lat_buckets[PX_LAT_NBOUNDS + 1];   /* recorded outcomes by latency, NOT
                                  * cumulative: [i] for bounds[i-1] < us <= bounds[i],
                                  * the last above every bound; their sum is the sum
                                  * of by_class */
    uint64_t lat_sum_us;         /* sum of the recorded latencies */
};

struct hl_check;

struct px_server_rt {
    unsigned refs;               /* rule 2 above: the service's array and each
                                  * connection bound to it */
    bool attached;               /* in svc->servers[side]: false once a reload
                                  * removed it */
    struct px_addr addr;         /* copied from the config */
    bool up;                     /* current health verdict: true at start, then
                                  * set by the active checks (px_service_set_up) */
    uint8_t admin;               /* enum px_srv_admin, the operator's (proxy/srvadmin.c):
                                  * only a ready server that is up is in rotation */
    uint64_t requests;           /* requests / connections sent to it */
    uint64_t failures;           /* connect failures and upstream errors */
    uint64_t reused;             /* requests sent on a pooled connection */
    uint64_t w_idle;             /* main loop: the other workers' idle pooled
                                  * connections to it at the last px_workers_fold() */
    struct list idle;            /* owned: idle keep-alive connections (proxy/pool.c),
                                  * most recent first */
    unsigned nidle;              /* entries in <idle>, <= pool.max_idle */
    struct list spare;           /* owned: list nodes of connections taken out of the
                                  * pool, for the next ones put back (no allocation
                                  * per request); freed with the pool */
    struct event *idle_timer;    /* owned: proxy/pool.c's idle timeout, due at the
                                  * oldest idle connection's deadline; NULL until
                                  * the first connection is pooled */
    struct hl_check *check;      /* owned: active checker; NULL without "health" */
    struct px_tls_up_cache tls_cache;   /* owned: the session to resume (side "tls") */
    struct px_service *svc;      /* borrowed: owner */
    enum rt_side side;           /* this server's side */
    unsigned index;              /* its index in svc->servers[side] (changes on reload) */
};

/* One idle keep-alive connection on its server's list, most recent first
 * (proxy/pool.c takes and gives them; a node without <bev> waits on the
 * spare list for the next one given back, so none is allocated per
 * request). */
struct px_pooled {
    struct list link;                /* on the server's idle or spare list */
    struct px_server_rt *srv_rt;     /* borrowed: owner of the list */
    struct bufferevent *bev;         /* owned */
    uint64_t since_ms;               /* px_now_ms() when it was put back */
};

/* The node of list link <l>. */
static inline struct px_pooled *
px_pooled_of(struct list *l)
{
    return list_entry(l, struct px_pooled, link);
}

/* Unlinks idle connection <p>, closes it and frees the node. */
void px_pooled_free(struct px_pooled *p);

/* Closes every idle connection to <s> (it was marked down, detached or
 * freed) and frees the spare list nodes. */
void px_server_rt_close_idle(struct px_server_rt *s);

/* A new attached server runtime for <addr> of <side> of <svc>: up, one
 * reference (the service's array). */
struct px_server_rt *px_server_rt_new(struct px_service *svc, enum rt_side side,
                                      unsigned index, const struct px_addr *addr);

/* Takes one more reference; returns <s>. */
struct px_server_rt *px_server_rt_get(struct px_server_rt *s);

/* Drops one reference; the last frees it (pool and checker must be gone).
 * NULL is a no-op. */
void px_server_rt_put(struct px_server_rt *s);

/* One outcome as pushed to a window, kept until the next policy tick. */
#define PX_RECENT_MAX 1024
struct px_recent {
    uint64_t us;                 /* px_now_us() when recorded */
    uint32_t latency_us;         /* as pushed to the window */
    uint8_t side;                /* enum rt_side */
    uint8_t outcome;             /* enum hl_outcome */
};

/* What the replicas of one service share (every loop's struct px_service
 * of it holds a reference): its client connections over every loop, for
 * limits.max_connections (proxy/listen.c). Atomic; touched at an accept
 * and a close, never per request. */
struct px_svc_shared {
    unsigned refs;
    unsigned conns;
};

struct px_service {
    struct px_srv *srv;                  /* borrowed: owner */
    const struct px_service_conf *conf;  /* borrowed from <cref> */
    struct px_confref *cref;             /* one reference: the generation of <conf> */
    unsigned idx;                        /* index in srv->svcs and the control plane */
    bool retired;                        /* removed by a reload: freed with its last
                                          * connection (see rule 3 above) */
    struct list retired_link;            /* on srv->retired while retired */
    const struct rt_snapshot *snap;      /* owned: the published routing state */
    struct rt_cursor cursor;             /* round-robin position per side */
    struct px_server_rt **servers[RT_SIDE__COUNT];  /* owned arrays of
                                          * conf->side[side].nservers references */
    struct px_side_stats stats[RT_SIDE__COUNT];
    uint64_t override_refused;           /* override headers ignored: from outside
                                          * allow_from, without the secret */
    uint64_t cookie_invalid;             /* sticky cookies that failed verification
                                          * (counted as absent, issued anew) */
    struct hl_window window[RT_SIDE__COUNT];        /* passive outcome windows */
    struct px_recent *recent;            /* owned: outcomes recorded since the policy
                                          * tick last looked, oldest first (proxy/tick.c
                                          * replays them to time a breach exactly);
                                          * grown by doubling to what a tick's worth of
                                          * traffic needs, at most PX_RECENT_MAX, and
                                          * kept (px_service_recent_add) */
    unsigned nrecent;                    /* entries in <recent>; the tick empties it */
    unsigned recent_cap;                 /* entries <recent> has room for */
    bool recent_lost;                    /* more than PX_RECENT_MAX since the tick */
    uint64_t published_us;               /* px_now_us() when <snap> was installed */
    struct log_ratelimit warn_rl;        /* per-request warnings (px_req_warn) */
    struct event *warn_timer;            /* owned: writes the count warn_rl held back
                                          * when its second ends; NULL until needed */
    const char *warn_module;             /* static: module of the last line held back */
    struct evconnlistener **listeners;   /* owned, conf->nlisten entries */
    uint64_t accept_errors[PX_AE__COUNT];/* failed accepts on its listeners (the main
                                          * loop's: with the workers' at the last fold) */
    uint64_t conns_active;               /* client connections / tunnels open */
    struct px_svc_shared *shared;        /* one reference: the same object on every
                                          * replica of the service (px_service_share) */
    bool cap_paused;                     /* its listeners on this loop stopped accepting:
                                          * limits.max_connections reached */
    uint64_t w_conns;                    /* main loop: the other workers' open ones
                                          * at the last px_workers_fold() */
    int applied_state;                   /* enum adm_state last applied (proxy/ops.c) */
    uint64_t window_reset_gen;           /* the generation whose apply last emptied new's
                                          * window (proxy/ops.c), 0 before any: the
                                          * fleet's leader leaves out new's counts of
                                          * instances that had not applied it yet
                                          * (health/fleet.h) */
    struct list tunnels;                 /* TCP mode: the open tunnels (proxy/tcp.c) */
    struct list conns;                   /* HTTP mode: the open connections (proxy/http.c) */
    struct px_tls_ctx *tls;              /* one reference: the listener side's TLS
                                          * material (proxy/tls.h), shared by every
                                          * worker; NULL: plain. Replaced whole by a
                                          * reload; a handshake holds its own reference */
    struct list handshakes;              /* TLS handshakes in flight (proxy/tls_accept.c):
                                          * counted in conns_active */
    uint64_t tls_hs[PX_TLS_R__COUNT];    /* handshakes ended, by result */
    uint64_t tls_resumed;                /* of the ok ones, those that resumed a session */
    struct px_shield_rt shield;          /* the canary shield's budget and counts
                                          * (proxy/shield.h) */
    struct px_shadow_svc *shadow;        /* owned: shadow traffic's state on this loop
                                          * (proxy/shadow.h); NULL until the first copy */
    void (*shadow_free)(struct px_shadow_svc *ss);   /* frees <shadow> and its
                                          * copies in flight (set with it) */
    uint64_t tls_ktls;                   /* of the ok ones, those whose records the kernel
                                          * writes (kernel TLS) */
};

#define PX_SPARES 64

struct px_workers;

/* One event loop with its own copy of the data plane ("replica"): the main
 * loop (worker 0, which also runs the control plane: admin, checkers, the
 * tick, reloads; see proxy/daemon.h) or one of the worker threads of
 * proxy/worker.c. Replicas share nothing mutable but the config generations
 * (atomic refcounts); the main loop reaches a worker's replica only through
 * px_workers_run(). */
struct px_srv {
    struct event_base *base;             /* owned */
    unsigned worker_id;                  /* 0: the main loop */
    unsigned nworkers;                   /* replicas in all, >= 1 */
    struct px_workers *workers;          /* main loop: owned, the others; NULL
                                          * with one worker */
    struct px_srv *main_srv;             /* a worker's: the main loop's replica */
    void (*drained)(struct px_srv *srv); /* stopping and the last connection
                                          * closed (px_srv_conn_closed): set by
                                          * proxy/worker.c; NULL: the loop exits */
    void (*suspect)(struct px_srv *srv); /* an outcome on new that can make a
                                          * breach was recorded (hl_policy_suspect,
                                          * px_service_record): the policy is to
                                          * evaluate now. Called from the data
                                          * plane, so it only signals (the main
                                          * loop: proxy/tick.c; a worker:
                                          * proxy/worker.c); NULL: the tick finds it */
    void *suspect_arg;                   /* borrowed: <suspect>'s */
    uint64_t accepted;                   /* connections this loop accepted */
    struct event *accept_timer;          /* owned (proxy/listen.c): ends a pause of
                                          * accepting after an accept error */
    struct event *accept_log_timer;      /* owned (proxy/listen.c): writes the count
                                          * of accept error lines held back */
    unsigned accept_pause_ms;            /* the last pause; 0 after an accept that
                                          * worked (the next error pauses 100 ms) */
    bool accept_error_paused;            /* accepting paused after an accept error */
    /* limits.max_connections (proxy/listen.c): the main loop's <conns_all> and
     * <conns_cap> are the process's (atomic: every loop counts its accepts
     * and closes there); <cap_paused>: some listener of this loop stopped
     * accepting at a cap, <cap_timer> looks for room again meanwhile */
    unsigned conns_all, conns_cap;
    bool cap_paused;
    bool cap_full;                       /* the process's cap holds (this loop's view) */
    uint64_t cap_log_ms;                 /* px_now_ms() of the last pause logged */
    struct event *cap_timer;             /* owned; NULL until a cap was reached */
    unsigned spliced, spliced_max;       /* TCP tunnels relaying by splice on this
                                          * loop, and the cap (proxy/tcp.c) */
    bool spliced_known;                  /* <spliced_max> computed */
    struct px_conf *conf;                /* borrowed from <cref>: the current config */
    struct px_confref *cref;             /* one reference: the current generation */
    struct px_service **svcs;            /* owned, conf->nservices entries */
    unsigned nsvcs;
    struct list retired;                 /* owned: services a reload removed that
                                          * still have connections (px_srv_retire) */
    uint64_t conf_generation;            /* generation of <conf>: 1 at startup */
    uint64_t next_conn_id;
    uint64_t rng;                        /* splitmix64 state for random draws */
    bool stopping;                       /* SIGTERM received: accept nothing new */
    bool freeing;                        /* teardown runs: retired services are
                                          * freed by it, not by their last connection */
    uint64_t conns_active;               /* over all services */
    struct px_access_log *access_log;    /* owned: "access_log"; NULL = off (the
                                          * data plane tests this pointer, nothing more) */
    struct h1_field *hfields;            /* owned: the loop's header field table
                                          * (proxy/http_conn.c, px_hc_fields()): one head
                                          * is parsed and rebuilt at a time per loop */
    unsigned hfields_n;                  /* entries of <hfields> */
    /* owned: spare client bufferevents (no socket), evbuffers (empty),
     * access log path buffers and request states that parked or closed
     * connections gave back, for the next connection or request of this
     * loop (proxy/http_conn.c); at most PX_SPARES of each */
    struct bufferevent *spare_bev[PX_SPARES];
    struct evbuffer *spare_evb[PX_SPARES];
    char *spare_path[PX_SPARES];
    struct px_exch *spare_ex[PX_SPARES];
    unsigned nspare_bev, nspare_evb, nspare_path, nspare_ex;
    unsigned parking;                    /* HTTP connections waiting to park
                                          * (proxy/http_conn.h, PX_PARK_WAITING) */
    struct slab conn_slab;               /* the HTTP connections of this loop (struct
                                          * px_conn, proxy/http_conn.c); set up by the
                                          * first one (size 0 before) */
};

/* The next connection id of this loop: ids are unique over all workers
 * (worker k hands out k+1, k+1+n, ...). */
uint64_t px_srv_conn_id(struct px_srv *srv);

/* A new event loop for a replica (no locks, batched epoll changes, timers
 * measured by CLOCK_MONOTONIC read when each is armed). */
struct event_base *px_event_base_new(void);

/* A uniform 64-bit random draw (splitmix64 over srv->rng). */
uint64_t px_srv_rand(struct px_srv *srv);

/* Monotonic now in milliseconds / microseconds from the loop's cached time. */
uint64_t px_now_ms(struct px_srv *srv);
uint64_t px_now_us(struct px_srv *srv);

/* Per-request trouble (an upstream failure, a 5xx the proxy answered) is a
 * warning, but never a flood: at most PX_REQ_WARN_BURST lines a second per
 * service pass; the count of those held back is written when their second
 * ends (a timer of the service), or before the next line that passes,
 * whichever comes first. Every request is in the counters and the access
 * log. */
#define PX_REQ_WARN_BURST 5
bool px_service_warn_pass(struct px_service *svc, const char *module);
#define px_req_warn(svc, module, conn_id, ...)                                 \
    do {                                                                       \
        if (LL_WARN >= log_min_level && px_service_warn_pass((svc), (module))) \
            log_write(LL_WARN, (module), (conn_id), __VA_ARGS__);             \
    } while (0)

/* Records the outcome of one request (or TCP connection) on <side>:
 * <status> is the response status, or 0 with <err> set for a transport
 * failure; <latency_us> is measured to the response head (or to the failure).
 * A request aborted because the client went away is not recorded; a
 * PX_E_LOCAL failure is counted (side, class, latency) but touches neither
 * the window nor the server's failures. */
/* <server> is the runtime the request went to (its failures are counted
 * there; NULL: none). */
void px_service_record(struct px_service *svc, enum rt_side side,
                       struct px_server_rt *server, int status, enum px_err err,
                       uint64_t latency_us);

/* Appends <r> to svc->recent, growing it (by doubling, from 16) up to
 * PX_RECENT_MAX entries; beyond that sets svc->recent_lost and returns
 * false. A service without traffic holds no ring, a busy one allocates at
 * most a few times in its life. */
bool px_service_recent_add(struct px_service *svc, const struct px_recent *r);

/* Chooses another usable server than <server> on <side> for a retry after a
 * connect failure (any usable one when <server> was detached by a reload).
 * Returns it (borrowed: take a reference to keep it), or NULL when there is
 * none. */
struct px_server_rt *px_service_other_server(struct px_service *svc, enum rt_side side,
                                             const struct px_server_rt *server);

/* Fills zeroed <svc> as service <idx> of config generation <cref> (takes a
 * reference): servers all up, windows empty, no listeners, no snapshot. */
void px_service_init(struct px_service *svc, struct px_srv *srv, struct px_confref *cref,
                     unsigned idx);

/* Frees <svc> and what it owns (listeners, pools, snapshot, its server
 * references and its config reference); its connections must be gone and
 * its checkers freed. */
void px_service_free(struct px_service *svc);

/* Installs <weight_bp>/<generation> as the service's new routing snapshot. */
void px_service_publish(struct px_service *svc, uint32_t weight_bp, uint64_t generation);

/* Sets the health verdict of <server> of <side> to <up> and republishes the
 * routing snapshot with <weight_bp>/<generation> (the control plane's
 * current ones: health never changes the weight). A server going down has
 * its idle pooled connections closed; requests in flight to it finish.
 * Returns true when the verdict changed. */
bool px_service_set_up(struct px_service *svc, enum rt_side side, unsigned server,
                       bool up, uint32_t weight_bp, uint64_t generation);

/* The operator's state of a server (`cutoverctl server drain|disable|enable`). */
enum px_srv_admin { PX_SRV_READY = 0, PX_SRV_DRAIN, PX_SRV_DISABLED, PX_SRV__COUNT };

extern const char *const px_srv_admin_names[PX_SRV__COUNT];   /* "ready", "drain", "disabled" */

/* Sets the operator's state of <server> of <side> to <admin> and
 * republishes with <weight_bp>/<generation>; out of rotation (not ready),
 * its idle pooled connections are closed, requests in flight and tunnels
 * finish. Returns true when it changed. */
bool px_service_set_admin(struct px_service *svc, enum rt_side side, unsigned server,
                          enum px_srv_admin admin, uint32_t weight_bp, uint64_t generation);

/* Makes worker replica <w>'s service share main replica <m>'s counters of
 * the same service (no-op when it does already). */
void px_service_share(struct px_service *w, struct px_service *m);

/* The main loop's replica, which holds the process's connection counts. */
static inline struct px_srv *
px_srv_main(struct px_srv *srv)
{
    return srv->main_srv != NULL ? srv->main_srv : srv;
}

/* Puts <svc>, which a reload removed, on srv->retired until its last
 * connection ends (px_srv_conn_closed frees it then). */
void px_srv_retire(struct px_srv *srv, struct px_service *svc);

/* Takes the first service off srv->retired and returns it, or NULL when
 * there is none (exit: every retired service is freed). */
struct px_service *px_srv_retired_pop(struct px_srv *srv);

/* Called by connections when they end; once stopping and no connection is
 * left, srv->drained() runs (the loop exits when there is none), and a
 * retired service is freed with its last one (touch nothing of <svc> after
 * the call). */
void px_srv_conn_closed(struct px_srv *srv, struct px_service *svc);

/* Formats the numeric address of <sa> into <buf> (no port). */
void px_sockaddr_ip(const struct sockaddr *sa, char *buf, size_t len);

#endif
