/*
 * conn: the connection lifecycle shared by the admin unix socket
 * (admin/socket.c, one JSON line per request) and the admin HTTP endpoint
 * (admin/http.c): accept into one of two pools, read with bounded input,
 * hand complete requests to the protocol a few per callback, pause reading
 * while replies pile up, time out a request, an idle keep-alive, output
 * the peer does not read and a close that does not drain, and free the
 * connection at the tail of its own callback. The protocol supplies a
 * small table of callbacks and limits (struct adm_conn_ops); everything
 * else is here.
 *
 * Nobody who can open a connection can lock the operator out. A new
 * connection is never refused: when its pool is full, it takes the place
 * of a connection that had its chance (struct adm_pool_limits says which),
 * and every connection has ops->grace_ms to send its first request before
 * a newcomer may take its place. The untrusted pool holds what the
 * protocol does not know yet (an HTTP connection before a valid token);
 * what it trusts (the socket: root or the daemon's own user; HTTP: a
 * valid token) has a pool of its own that untrusted connections can never
 * take from.
 */
#ifndef CUTOVER_ADMIN_CONN_H
#define CUTOVER_ADMIN_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include <event2/util.h>

#include "lib/list.h"

struct event;
struct event_base;
struct bufferevent;
struct evconnlistener;
struct adm_conn;

/* The two pools of a listener, each with its own limits. A connection
 * starts untrusted unless ops->accept() trusts it; the protocol may trust
 * it later (adm_conn_trust()), never the other way. */
enum adm_pool {
    ADM_POOL_UNTRUSTED = 0,
    ADM_POOL_TRUSTED,
    ADM_POOL__COUNT
};

/* A pool's limits. Over max_conns, a new connection evicts the oldest one
 * that has been open for ops->grace_ms without a request handled (only
 * those: the pool may hold more while the others are in their grace or
 * useful). Over hard_conns, never exceeded, it evicts in this order: such
 * a silent one; one of the newcomer's own peer (adm_conn.peer_key); one
 * of the peer that holds the most connections, when it holds several (of
 * a peer: the oldest still in its grace, else the least recently used);
 * the least recently used of those that had a request handled; the oldest
 * still in its grace. Before any eviction, a connection that never had a
 * request handled gets a last read: a complete request there is handled,
 * and it stays. */
struct adm_pool_limits {
    unsigned max_conns;      /* >= 1 */
    unsigned hard_conns;     /* >= max_conns */
    unsigned req_ms;         /* accept or a request's first byte to its end; 0: none */
    unsigned idle_ms;        /* keep-alive wait for the next request; 0: none */
};

enum adm_conn_state {
    ADM_CONN_OPEN,           /* reading (or waiting for) requests */
    ADM_CONN_HELD,           /* reading stopped until the timer: see adm_conn_hold() */
    ADM_CONN_WAITING,        /* a reply waits for the store: see adm_conn_wait() */
    ADM_CONN_CLOSING,        /* no more requests: freed once the output is sent */
    ADM_CONN_STREAM,         /* one endless reply: see adm_conn_stream() */
};

struct adm_conn_ops {
    const char *name;        /* "admin", "admin HTTP": "%u <name> connections open" */
    const char *listener;    /* "the admin socket": "accept on <listener>" */
    size_t size;             /* bytes of the protocol's connection, which begins
                              * with its struct adm_conn */
    size_t in_max;           /* input bytes buffered at most (read high watermark) */
    size_t out_high;         /* queued output bytes that pause reading */
    unsigned reqs_per_cb;    /* requests per callback; the rest on the next loop turn */
    struct adm_pool_limits pool[ADM_POOL__COUNT];
    unsigned grace_ms;       /* a new connection's time to send its first request
                              * before a newcomer may evict it (see above) */
    unsigned flush_ms;       /* output that makes no progress for this long (the
                              * peer does not read), and a closing connection's
                              * output to drain; 0: none */

    /* The accepted connection <c> from <sa>: fills the protocol's fields
     * (c->peer at least, c->peer_key) and may set c->pool to
     * ADM_POOL_TRUSTED. Returns 0, or -1 to close it. */
    int (*accept)(struct adm_conn *c, evutil_socket_t fd, const struct sockaddr *sa,
                  int salen);
    /* The input is not empty: handles the request at its front when it is
     * complete (answering it, draining it, maybe adm_conn_close() or
     * adm_conn_hold()). Returns true when it handled one, false when it
     * waits for more bytes or stopped the connection. */
    bool (*step)(struct adm_conn *c);
    /* The timer ran out on a request under way (req_ms) or on a held
     * connection: the protocol answers and closes. NULL: closed silently. */
    void (*expire)(struct adm_conn *c);
    /* <c> is about to be freed, whatever the reason (its protocol forgets
     * it: an event stream's subscription). NULL: nothing to do. */
    void (*release)(struct adm_conn *c);
    /* <c> is freed while ADM_CONN_WAITING (the peer went away, an
     * eviction): the protocol forgets the reply it waits for. NULL: none. */
    void (*gone)(struct adm_conn *c);
};

/* A listener and its connections. Embedded in the protocol's server. */
struct adm_listener {
    struct event_base *base;           /* borrowed */
    const struct adm_conn_ops *ops;    /* borrowed (static) */
    void *owner;                       /* borrowed: the protocol's server */
    struct evconnlistener *lev;        /* owned (closes the listening fd) */
    struct event *resume_ev;           /* owned: enables lev again, the next loop
                                        * turn or after an accept error's pause */
    unsigned turn_accepts;             /* accepts since lev was last enabled */
    unsigned long accept_errors;       /* accepts that failed */
    long accept_err_logged;            /* monotonic second of the last such line */
    struct list conns;                 /* owned: struct adm_conn.node, least
                                        * recently useful first */
    unsigned nconns;
    unsigned npool[ADM_POOL__COUNT];   /* connections of each pool */
    unsigned long evicted;             /* closed to make room for a new one */
    unsigned long timed_out;           /* closed by a time limit */
};

/* What a listener did, for the metrics. */
struct adm_conn_stats {
    unsigned open;                     /* connections open now */
    unsigned long evicted;             /* closed to make room for a new one */
    unsigned long timed_out;           /* closed by a time limit (request, idle,
                                        * unread output, flush) */
};

/* The generic part of a connection, the first member of the protocol's. */
struct adm_conn {
    struct adm_listener *lis;          /* borrowed: where it was accepted */
    struct bufferevent *bev;           /* owned (closes the fd) */
    struct event *timer;               /* owned: request, idle, hold and flush limits */
    struct event *resume;              /* owned: re-runs request processing */
    enum adm_conn_state state;
    enum adm_pool pool;
    bool is_served;                    /* at least one request was handled */
    bool is_idle;                      /* between requests: the idle limit runs */
    bool is_eof;                       /* the peer shut its writing side */
    bool is_paused;                    /* reading stopped: output over out_high */
    char peer[48];                     /* who is on the other side, for messages */
    unsigned long long peer_key;       /* the same for connections of one peer (the
                                        * socket: its pid; HTTP: its address) */
    unsigned long long accepted_ms;    /* monotonic clock at the accept */
    struct list node;                  /* lis->conns: moved to the tail when
                                        * accepted and after each request */
};

/* Prepares <l> (nothing listens yet); <owner> is the protocol's server. */
void adm_listener_init(struct adm_listener *l, struct event_base *base,
                       const struct adm_conn_ops *ops, void *owner);

/* Listens on the bound socket <fd>, which <l> owns from then on, but only
 * when this succeeds. Returns 0, or -1 with errno set. At most
 * ADM_CONN_ACCEPTS_PER_CB connections are accepted per loop turn, so the
 * requests of those accepted are read in between; a shortage of
 * descriptors or memory pauses accepting for a moment (one log line per
 * 10 s) instead of spinning. */
int adm_listener_listen_fd(struct adm_listener *l, evutil_socket_t fd);

/* Binds <sa> (SO_REUSEADDR) and listens, as adm_listener_listen_fd().
 * Returns 0, or -1 (the socket error is EVUTIL_SOCKET_ERROR()). */
int adm_listener_listen_addr(struct adm_listener *l, const struct sockaddr *sa,
                             socklen_t salen);

/* Closes every connection (no reply to requests in progress) and the
 * listener. <l> may be closed without ever listening. */
void adm_listener_close(struct adm_listener *l);

/* Fills <out> from <l>. */
void adm_listener_stats(const struct adm_listener *l, struct adm_conn_stats *out);

/* Stops reading requests: <c> is freed once its output is sent, or
 * flush_ms later. */
void adm_conn_close(struct adm_conn *c);

/* Stops reading requests for <ms>; then ops->expire() runs. */
void adm_conn_hold(struct adm_conn *c, unsigned ms);

/* Turns <c> (from one of its own callbacks, after the reply's head) into
 * a stream: the reply goes on for as long as the connection lives, written
 * by the protocol whenever it likes. No more requests are read (bytes the
 * peer sends are discarded), no request or idle limit runs; the peer's EOF
 * or an error frees it, and output that makes no progress for flush_ms
 * still drops it. */
void adm_conn_stream(struct adm_conn *c);

/* Frees <c> at once, its unsent output dropped: a stream whose peer falls
 * behind. Only from outside <c>'s own callbacks (a timer of the
 * protocol's); ops->release() runs first. */
void adm_conn_abort(struct adm_conn *c);
/* The request just handled (from ops->step) is answered later: reading
 * stops until adm_conn_done(), or for <ms>, when ops->expire() runs. */
void adm_conn_wait(struct adm_conn *c, unsigned ms);

/* The reply <c> waited for was written: requests are read again. */
void adm_conn_done(struct adm_conn *c);

/* Moves <c> (from one of its own callbacks) to the trusted pool, where its
 * next requests get that pool's limits; when the pool is full, another
 * trusted connection makes room (never <c>). No-op when it is trusted. */
void adm_conn_trust(struct adm_conn *c);

#endif
