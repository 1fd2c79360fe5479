/*
 * http_conn: what the pieces of HTTP mode share, and no other file sees.
 * An HTTP client connection (struct px_conn) is served by three files, each
 * calling only those after it:
 *
 *   proxy/http.c       the connection's state machine: its callbacks, the
 *                      request and response paths, the tunnel, parking
 *   proxy/http_msg.c   the messages as the proxy rewrites them: the
 *                      router's input, the rebuilt request and response
 *                      heads, the bodies re-framed
 *   proxy/http_conn.c  what a connection holds: buffers and request states
 *                      taken from and given back to the loop's spares, the
 *                      loop's header field table, its access log line, its
 *                      outcome, its conf generation, the response deadline
 *                      and the late watch of its client, and its end (one
 *                      connection's, a service's idle or all connections)
 *
 * The small helpers every piece uses on each request are inline here;
 * http_msg.c's functions are declared in proxy/http_msg.h.
 */
#ifndef CUTOVER_PROXY_HTTP_CONN_H
#define CUTOVER_PROXY_HTTP_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/time.h>

#include <event2/bufferevent.h>
#include <event2/event_struct.h>   /* struct px_conn holds its head timer */
#include <event2/util.h>

#include "lib/http1.h"
#include "lib/list.h"
#include "lib/timeval.h"
#include "proxy/relay.h"
#include "proxy/server.h"

struct evbuffer;
struct px_shadow_cap;
struct sockaddr;

enum px_conn_state {
    PX_CS_READ_HEAD = 0,  /* waiting for or reading a request head */
    PX_CS_READ_BODY,      /* buffering a small request body before connecting */
    PX_CS_CONNECTING,     /* side and server chosen, upstream connect in flight */
    PX_CS_EXCHANGE,       /* request body up, response head and body down */
    PX_CS_TUNNEL,         /* after a 101: raw bytes both ways */
    PX_CS_DRAINING,       /* flushing the last bytes to the client, then close */
    PX_CS_CLOSED,         /* [terminal] resources released, struct awaits free */
    PX_CS__COUNT
};

/* Per state: its name (the debug log of transitions) and what a connection
 * in it is doing (log lines); defined in http_conn.c. */
extern const char *const px_cs_names[PX_CS__COUNT];
extern const char *const px_cs_actions[PX_CS__COUNT];

#define PX_CF_CLOSE        0x01u  /* free when the last callback leaves */
#define PX_CF_NO_KEEPALIVE 0x02u  /* close the client connection after this response */
#define PX_CF_CLIENT_EOF   0x04u  /* the client half-closed its side */
#define PX_CF_HEAD_TIMER   0x08u  /* the head timer runs for the current request */
#define PX_CF_RES_STARTED  0x10u  /* response bytes of this request went to the client */
#define PX_CF_RETRIED      0x20u  /* this request already used its connect retry */
#define PX_CF_REQ_STREAMED 0x40u  /* request body bytes were sent without a copy kept for a retry */
#define PX_CF_UP_REUSED    0x80u  /* the upstream connection came from the pool */
#define PX_CF_STALE_RETRY  0x100u /* this request was resent after a stale pooled connection */
#define PX_CF_RES_BYTES    0x200u /* the upstream sent at least one byte for this request */
#define PX_CF_PARK_SOON    0x400u /* head_timer runs park() (PX_PARK_DELAY_MS) */
#define PX_CF_PARKED       0x800u /* parked: no bufferevent, head_timer watches the socket */
#define PX_CF_TLS          0x1000u /* a TLS client (c->down reads through TLS, c->tls
                                   * while parked): ends with close_notify unless
                                   * PX_CF_CUT */
#define PX_CF_CUT          0x2000u /* the client's side ended in error, or its response was
                                   * cut: no close_notify (a TLS client must see the cut) */
#define PX_CF_SHIELDED     0x4000u /* this request was replayed on legacy (proxy/shield.h) */
#define PX_CF_SHIELD_SOON  0x8000u /* head_timer was activated to connect the replay */
#define PX_CF_INTERIM      0x10000u /* an interim (1xx) head of this request went out */
#define PX_CF_DRAIN        0x20000u /* tunnel: head_timer closes it (a drain) */
#define PX_CF_POLLED       0x40000u /* the client's socket may be in the loop's epoll set
                                   * (its reading stayed on past a loop pass): reading
                                   * stays on through an exchange, since switching it
                                   * off and on again costs two epoll_ctl */
#define PX_CF_WATCH_SOON   0x80000u /* head_timer turns reading the client on
                                   * (PX_WATCH_DELAY_MS into an exchange whose client
                                   * was never polled) */
#define PX_CF_PARK_NOW     0x100000u /* with PX_CF_PARK_SOON: parks at the end of the
                                   * loop pass (PX_PARK_WAITING others wait) */
#define PX_CF_SHIELD_FLAGS (PX_CF_SHIELDED | PX_CF_SHIELD_SOON | PX_CF_INTERIM)

/* An idle keep-alive connection parks once it stayed this long without a
 * request: a busy one (its next request sooner) never pays a park and an
 * unpark per request. */
#define PX_PARK_DELAY_MS 50u

/* At most this many connections of a loop wait PX_PARK_DELAY_MS to park
 * (srv->parking); more park at the end of the loop pass. What a waiting
 * connection holds (its bufferevent and request state, about 1.3 KB) is
 * what a burst of new connections, each making one request, would
 * otherwise hold all at once for PX_PARK_DELAY_MS: a thousand of them
 * grow the malloc heap by a megabyte, which the few buffers that stay in
 * it (the loop's spares, libevent's per-descriptor entries) keep resident
 * after they parked. Busy keep-alive connections beyond this many pay a
 * park and an unpark per request. */
#define PX_PARK_WAITING 64u

/* A client whose whole request came in the reads of its accept (its socket
 * never polled) is not watched during a short exchange: registering its
 * socket to see it leave would cost an epoll_ctl to add it and one to
 * remove it, per connection. An exchange that lasts longer than this
 * watches it, so that a client that leaves still aborts a slow upstream
 * request (a short one's answer just finds the socket closed). */
#define PX_WATCH_DELAY_MS 100u

enum px_out {
    PX_OUT_PLAIN = 0,     /* move bytes as they are (Content-Length or close-delimited) */
    PX_OUT_CHUNKED,       /* wrap every moved segment in a chunk */
};

/* Body state of one direction of the current exchange. */
struct px_body {
    enum h1_framing framing;
    enum px_out out;
    uint64_t left;               /* H1_BODY_LENGTH: bytes still to move */
    uint64_t total;              /* bytes moved so far (payload) */
    struct h1_chunked ck;        /* H1_BODY_CHUNKED: decoder state */
    bool done;                   /* the whole body was moved */
    struct px_shadow_cap *tap;   /* borrowed: shadow traffic's capture of the
                                  * bytes moved (proxy/shadow_cap.h), or NULL */
};

/* The request in flight and its response: apart from struct px_conn, so
 * that an idle (parked) connection does not hold it. A connection takes
 * one when it is accepted or unparked (from its loop's spares, zeroed) and
 * gives it back when it parks or closes, with the buffers it took (they go
 * to the loop's spares of their own). */
struct px_exch {
    int req_minor;                   /* HTTP/1.<minor> of the client */
    bool req_is_head;                /* method HEAD: the response has no body */
    bool req_idempotent;             /* RFC 9110 9.2.2: may be resent */
    bool req_upgrade;                /* Connection: upgrade + Upgrade: asked for */
    bool fallback;
    bool issue_cookie;
    bool shield_ok;                  /* px_shield_eligible() of the request head */
    bool has_bucket;                 /* <bucket> is the request's sticky bucket */
    bool res_head_done;
    enum rt_side side;
    uint32_t bucket;
    struct px_body req;
    struct evbuffer *up_head;        /* owned: rebuilt head, sent once connected; taken
                                      * by a request, given back by park() */
    struct evbuffer *req_buf;        /* owned: buffered small body; taken by the first
                                      * body to buffer, given back by park() */
    struct px_server_rt *srt;        /* one reference: the server of the current
                                      * request, or NULL (RT_NONE side) */
    uint64_t t_req_us;               /* head complete: latency reference */

    /* the current response */
    int res_status;
    bool res_recorded;               /* outcome reported to the service */
    bool res_keep_alive;             /* the upstream connection may be reused */
    bool log_pending;                /* access log: a request began and is not logged yet */
    struct px_body res;
    uint64_t last_io_ms;             /* tunnel: last byte either way */

    /* the access log's view of the current request (kept only with an
     * access log: px_hc_log_begin() sets log_pending, px_hc_log_request()
     * clears it) */
    int log_status;                  /* status sent to the client; 0 none yet */
    enum rt_reason log_why;          /* the router's reason; RT_R_NONE: not routed */
    const char *log_error;           /* static: what failed; NULL nothing known */
    uint64_t log_t0_us;              /* px_now_us() when the request began */
    char log_method[32];             /* "" when no head was parsed */
    char *log_path;                  /* owned: PX_ACCESS_LOG_PATH_MAX bytes, or NULL;
                                      * given back by park() */
    size_t log_path_len;             /* length of the target (may exceed what is kept) */
    struct px_shadow_cap *shadow;    /* one reference: the capture of the current
                                      * response for its shadow copy (proxy/shadow.h),
                                      * or NULL */
    char client_ip[46];              /* the client's address as text (c->client_addr),
                                      * written when the connection takes this state:
                                      * X-Forwarded-For, routing, logs */
};

/* What an idle (parked) connection holds is this struct, its head timer
 * within (and, over TLS, its SSL): its request state (struct px_exch) went
 * back to the loop. It comes from its loop's slab (srv->conn_slab: no
 * allocator header, and no holes left in the malloc heap between the
 * buffers of busy connections). Its field order leaves no holes. */
struct px_conn {
    struct list link;                /* on svc->conns */
    struct px_service *svc;          /* borrowed; a retired service lives until
                                      * its last connection is gone */
    struct px_srv *srv;              /* borrowed */
    struct px_confref *cref;         /* one reference: the generation of <conf> */
    const struct px_service_conf *conf;  /* the service's conf when this
                                      * connection took it: at accept, then between
                                      * requests (px_hc_refresh_conf) */
    uint64_t id;
    enum px_conn_state state;        /* written only by set_state() */
    unsigned flags;                  /* PX_CF_* */
    int busy;                        /* callbacks on the stack */
    unsigned nreq;                   /* requests served on this connection */
    struct bufferevent *down;        /* owned: the client; NULL while parked (it went
                                      * back to the loop's spares) */
    struct bufferevent *up;          /* owned: the upstream of the current request, or NULL */
    struct px_tls_io *tls;           /* owned while parked: the TLS side of the client
                                      * connection (else c->down holds it), or NULL */
    struct px_exch *ex;              /* owned: the current request; NULL while parked */
    struct event head_timer;         /* deadline of the phase; client_head_ms from
                                      * the first byte of a head (READ_HEAD), or
                                      * server_response_ms from the end of the request to
                                      * the end of the response head (EXCHANGE); runs
                                      * park() (PX_CF_PARK_SOON) and px_hc_watch_client()
                                      * (PX_CF_WATCH_SOON); while parked, the read event
                                      * on the client socket */
    unsigned char client_addr[16];   /* the client's address: 4 bytes (AF_INET) or 16
                                      * (AF_INET6), in network order */
    unsigned short client_family;    /* AF_INET, AF_INET6, else AF_UNSPEC */
    unsigned short client_port;
};

/* The conf the connection took (not necessarily the service's current one). */
static inline const struct px_service_conf *
sconf(const struct px_conn *c)
{
    return c->conf;
}

/* The address of the current request's server. */
static inline const struct px_addr *
srt_addr(const struct px_conn *c)
{
    return &c->ex->srt->addr;
}

/* Frees <c> when the last callback of it leaves (http.c: leave()). */
static inline void
mark_close(struct px_conn *c)
{
    c->flags |= PX_CF_CLOSE;
}

/* Binds the current request to <s> (NULL: none). */
static inline void
bind_server(struct px_conn *c, struct px_server_rt *s)
{
    if (s != NULL)
        px_server_rt_get(s);
    px_server_rt_put(c->ex->srt);
    c->ex->srt = s;
}

/* Closes the upstream connection of the current request, if any. */
static inline void
upstream_free(struct px_conn *c)
{
    if (c->up != NULL) {
        px_io_free(c->up);
        c->up = NULL;
    }
}

/* <c> no longer waits to park (PX_CF_PARK_SOON cleared, its loop's count
 * of waiting connections kept); nothing when it did not wait. */
static inline void
px_hc_park_soon_off(struct px_conn *c)
{
    if (c->flags & PX_CF_PARK_SOON) {
        c->flags &= ~(PX_CF_PARK_SOON | PX_CF_PARK_NOW);
        c->srv->parking--;
    }
}

/* ---- http_conn.c ------------------------------------------------------ */

/* The header field table to parse one head with <n> fields at most. It is
 * the loop's (struct px_srv), not a connection's: a head is parsed, used and
 * rebuilt (request: routed, upstream head built, then drained; response:
 * written to the client) within one callback, and the loop runs one callback
 * at a time, so one table serves every connection of the loop. Nothing may
 * keep a pointer into it past that callback; a worker thread gets its own
 * struct px_srv and so its own table. */
struct h1_field *px_hc_fields(struct px_srv *srv, unsigned n);

/* *<b>, taken when a request first needs it (a spare of the loop, else a
 * new one); a connection keeps it until it parks or closes. */
struct evbuffer *px_hc_evbuffer(struct px_conn *c, struct evbuffer **b);

/* Gives *<b> back to the loop's spares, emptied (or frees it); NULL after. */
void px_hc_spare_evbuffer(struct px_srv *srv, struct evbuffer **b);

/* A client bufferevent on <fd>, reading and writing through io.h (over TLS
 * when *<tls> is not NULL: it goes to the bufferevent, *<tls> NULL after):
 * a spare of the loop, else a new one. NULL when none can be allocated. */
struct bufferevent *px_hc_client_bev(struct px_srv *srv, evutil_socket_t fd,
                                     struct px_tls_io **tls);

/* The current request begins for the access log: a parsed head <r>, or,
 * with <r> NULL, bytes the proxy refuses before they made a request. The
 * head is drained before the request ends, so what the line needs of it is
 * kept in <c>. Called only with an access log. */
void px_hc_log_begin(struct px_conn *c, const struct h1_req *r);

/* Writes the current request's access log line, once. <ended> is the error
 * to report when the request itself knows of none (the connection ended
 * under it). Call while the request's side and server are still bound. */
void px_hc_log_request(struct px_conn *c, const char *ended);

/* Records the outcome of the current request once. */
void px_hc_record(struct px_conn *c, int status, enum px_err err);

/* Between requests (no side, no server bound): takes the service's current
 * conf when a reload changed it, so a keep-alive client gets the new
 * timeouts, limits and routing keys from its next request on. Returns false
 * when the connection cannot go on (the service is now a TCP service). */
bool px_hc_refresh_conf(struct px_conn *c);

/* The whole request is upstream: its response head must be complete within
 * server_response_ms (c->head_timer), however the server trickles it (a
 * read timeout only measures silence, which one byte at a time resets). A
 * client that is not watched (PX_CF_POLLED clear) is watched from
 * PX_WATCH_DELAY_MS on: the timer first runs px_hc_watch_client()
 * (PX_CF_WATCH_SOON), which arms what is left of the deadline. */
void px_hc_arm_response_deadline(struct px_conn *c);

/* The exchange of a client that was not watched outlived PX_WATCH_DELAY_MS:
 * reading it is switched on (its leaving aborts the upstream request), and
 * while no response head came, the rest of the deadline is armed. */
void px_hc_watch_client(struct px_conn *c);

/* Frees <c> and what it holds at once, and tells the service (which a
 * retired service may not survive). Touch nothing of <c> after it. */
void px_hc_close(struct px_conn *c);

/* px_http_close_idle() and px_http_close_all() (proxy/http.h). */
void px_hc_close_idle(struct px_service *svc);
void px_hc_close_all(struct px_service *svc);

/* Parks <c>, whose head timer already watches its socket (proxy/http.c,
 * park()): its bufferevent (socket detached, left open; a TLS side stays
 * with <c>) and its request state (px_hc_exch_put()) go to the loop's
 * spares. */
void px_hc_park(struct px_conn *c);

/* A zeroed connection from <srv>'s slab; NULL when none can be mapped.
 * px_hc_close() gives it back. */
struct px_conn *px_hc_conn_alloc(struct px_srv *srv);

/* Keeps the address and port of the client <sa> (AF_INET or AF_INET6;
 * another family is "unknown") in <c>. */
void px_hc_set_client(struct px_conn *c, const struct sockaddr *sa);

/* A request state for <c>, being accepted or unparked: a spare of its
 * loop, else a new one; zeroed but for the client's address as text, no
 * side. */
struct px_exch *px_hc_exch_take(struct px_conn *c);

/* Gives *<exp> (no server bound, no shadow capture) back to <srv>'s loop
 * with its buffers (up_head, req_buf, access log path: to the spares of
 * their own), or frees it; *<exp> is NULL after, and may be NULL before. */
void px_hc_exch_put(struct px_srv *srv, struct px_exch **exp);

/* Frees the loop's spare buffers, request states, header field table and
 * connection slab (px_http_loop_free(), after its last connection). */
void px_hc_loop_free(struct px_srv *srv);

#endif
