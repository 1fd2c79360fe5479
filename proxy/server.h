/*
 * server: the runtime objects of the data plane. struct px_srv holds the
 * event loop, the config, every service and the control plane; nothing of it
 * is a global, so worker threads can each get their own loop later. A
 * service publishes its routing as an immutable snapshot pointer that is
 * swapped whole between events (never edited while a request is choosing).
 *
 * HTTP connections live in proxy/http.c, TCP tunnels in proxy/tcp.c; both
 * report outcomes here so the per-side counters and windows stay in one
 * place.
 */
#ifndef CUTOVER_PROXY_SERVER_H
#define CUTOVER_PROXY_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "health/window.h"
#include "proxy/conf.h"
#include "router/router.h"

struct event_base;
struct event;
struct evconnlistener;
struct adm_control;
struct adm_server;
struct px_tcp;
struct px_conn;

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
    PX_E__COUNT
};

extern const char *const px_err_names[PX_E__COUNT];

/* Counters of one side of one service. Plain integers, incremented in place. */
struct px_side_stats {
    uint64_t requests;           /* HTTP requests / TCP connections sent to this side */
    uint64_t by_class[5];        /* 2xx, 3xx, 4xx, 5xx (response status), error */
    uint64_t errors[PX_E__COUNT];/* by reason */
    uint64_t fallbacks;          /* requests that came here because the other side was down */
};

struct px_pooled;
struct hl_check;

struct px_server_rt {
    bool up;                     /* current health verdict: true at start, then
                                  * set by the active checks (px_service_set_up) */
    uint64_t requests;           /* requests / connections sent to it */
    uint64_t failures;           /* connect failures and upstream errors */
    uint64_t reused;             /* requests sent on a pooled connection */
    struct px_pooled *idle;      /* owned: idle keep-alive connections, most recent first */
    unsigned nidle;              /* entries in <idle>, <= pool.max_idle */
    struct hl_check *check;      /* owned: active checker; NULL without "health" */
    struct px_service *svc;      /* borrowed: owner; set with <check> */
    enum rt_side side;           /* this server's side; set with <check> */
    unsigned index;              /* its index in svc->servers[side]; set with <check> */
};

/* One outcome as pushed to a window, kept until the next policy tick. */
#define PX_RECENT_MAX 1024
struct px_recent {
    uint64_t us;                 /* px_now_us() when recorded */
    uint32_t latency_us;         /* as pushed to the window */
    uint8_t side;                /* enum rt_side */
    uint8_t outcome;             /* enum hl_outcome */
};

struct px_service {
    struct px_srv *srv;                  /* borrowed: owner */
    const struct px_service_conf *conf;  /* borrowed from srv->conf */
    unsigned idx;                        /* index in srv->svcs and the control plane */
    const struct rt_snapshot *snap;      /* owned: the published routing state */
    struct rt_cursor cursor;             /* round-robin position per side */
    struct px_server_rt *servers[RT_SIDE__COUNT];   /* owned arrays, nservers each */
    struct px_side_stats stats[RT_SIDE__COUNT];
    struct hl_window window[RT_SIDE__COUNT];        /* passive outcome windows */
    struct px_recent recent[PX_RECENT_MAX];  /* outcomes recorded since the policy
                                          * tick last looked, oldest first (proxy/tick.c
                                          * replays them to time a breach exactly) */
    unsigned nrecent;                    /* entries in <recent>; the tick empties it */
    bool recent_lost;                    /* more than PX_RECENT_MAX since the tick */
    uint64_t published_us;               /* px_now_us() when <snap> was installed */
    struct evconnlistener **listeners;   /* owned, conf->nlisten entries */
    uint64_t conns_active;               /* client connections / tunnels open */
    int applied_state;                   /* enum adm_state last applied (main.c) */
    struct px_tcp *tunnels;              /* TCP mode: list of open tunnels (borrowed) */
    struct px_conn *conns;               /* HTTP mode: list of open connections (borrowed) */
};

struct px_srv {
    struct event_base *base;             /* owned */
    struct px_conf *conf;                /* owned */
    struct px_service *svcs;             /* owned, conf->nservices entries */
    unsigned nsvcs;
    struct adm_control *ctl;             /* owned */
    struct adm_server *admin;            /* owned */
    uint64_t next_conn_id;
    uint64_t rng;                        /* splitmix64 state for random draws */
    bool stopping;                       /* SIGTERM received: accept nothing new */
    uint64_t conns_active;               /* over all services */
    struct event *grace_timer;           /* owned: shutdown deadline */
    const char *audit_file;              /* borrowed from main(): audit log of the
                                          * automatic health changes */
};

/* A uniform 64-bit random draw (splitmix64 over srv->rng). */
uint64_t px_srv_rand(struct px_srv *srv);

/* Monotonic now in milliseconds / microseconds from the loop's cached time. */
uint64_t px_now_ms(struct px_srv *srv);
uint64_t px_now_us(struct px_srv *srv);

/* Records the outcome of one request (or TCP connection) on <side>:
 * <status> is the response status, or 0 with <err> set for a transport
 * failure; <latency_us> is measured to the response head (or to the failure).
 * A request aborted because the client went away is not recorded. */
void px_service_record(struct px_service *svc, enum rt_side side, unsigned server,
                       int status, enum px_err err, uint64_t latency_us);

/* Chooses another usable server than <server> on <side> for a retry after a
 * connect failure. Returns 0 with *<out> set, or -1 when there is none. */
int px_service_other_server(struct px_service *svc, enum rt_side side,
                            unsigned server, unsigned *out);

/* Installs <weight_bp>/<generation> as the service's new routing snapshot. */
void px_service_publish(struct px_service *svc, uint32_t weight_bp, uint64_t generation);

/* Sets the health verdict of <server> of <side> to <up> and republishes the
 * routing snapshot with <weight_bp>/<generation> (the control plane's
 * current ones: health never changes the weight). A server going down has
 * its idle pooled connections closed; requests in flight to it finish.
 * Returns true when the verdict changed. */
bool px_service_set_up(struct px_service *svc, enum rt_side side, unsigned server,
                       bool up, uint32_t weight_bp, uint64_t generation);

/* Creates the listeners of every service. 0, or -1 with a logged error. */
int px_srv_listen(struct px_srv *srv);

/* Stops accepting on every listener (shutdown, first step). */
void px_srv_stop_listening(struct px_srv *srv);

/* Called by connections when they end; the loop exits once stopping and no
 * connection is left. */
void px_srv_conn_closed(struct px_srv *srv, struct px_service *svc);

/* proxy/http.c: takes an accepted client socket <fd> of an HTTP service. */
void px_http_accept(struct px_service *svc, int fd, const struct sockaddr *sa, int salen);

/* proxy/http.c: closes idle keep-alive client connections (shutdown). */
void px_http_close_idle(struct px_service *svc);

/* proxy/http.c: frees every connection at once (exit after the grace time). */
void px_http_close_all(struct px_service *svc);

/* proxy/tcp.c: frees every tunnel at once (exit after the grace time). */
void px_tcp_close_all(struct px_service *svc);

/* proxy/pool.c: an idle keep-alive connection to <server> of <side>, with
 * no callbacks and no timeouts set (the caller owns it), or NULL. */
struct bufferevent *px_pool_get(struct px_service *svc, enum rt_side side,
                                unsigned server);

/* proxy/pool.c: gives back <bev> after a clean exchange (the whole response
 * read, nothing pending either way). The pool owns it from here; it is freed
 * at once when the pool is full, the server is down or the daemon stops. */
void px_pool_put(struct px_service *svc, enum rt_side side, unsigned server,
                 struct bufferevent *bev);

/* proxy/pool.c: closes every idle connection to <side> (blue-green switch,
 * shutdown). */
void px_pool_close_side(struct px_service *svc, enum rt_side side);

/* proxy/pool.c: closes every idle connection to <server> of <side> (it was
 * marked down). */
void px_pool_close_server(struct px_service *svc, enum rt_side side, unsigned server);

/* proxy/tcp.c: takes an accepted client socket <fd> of a TCP service. */
void px_tcp_accept(struct px_service *svc, int fd, const struct sockaddr *sa, int salen);

/* proxy/tcp.c: blue-green: close the tunnels of <side> after <drain_s>
 * seconds (0: now). */
void px_tcp_drain_side(struct px_service *svc, enum rt_side side, int drain_s);

/* Formats the numeric address of <sa> into <buf> (no port). */
void px_sockaddr_ip(const struct sockaddr *sa, char *buf, size_t len);

#endif
