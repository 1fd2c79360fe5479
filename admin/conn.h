/*
 * conn: the connection lifecycle shared by the admin unix socket
 * (admin/socket.c, one JSON line per request) and the admin HTTP endpoint
 * (admin/http.c): accept under a connection limit, read with bounded input,
 * hand complete requests to the protocol a few per callback, pause reading
 * while replies pile up, time out a request, an idle keep-alive or a close
 * that does not drain, and free the connection at the tail of its own
 * callback. The protocol supplies a small table of callbacks and limits
 * (struct adm_conn_ops); everything else is here.
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

enum adm_conn_state {
    ADM_CONN_OPEN,           /* reading (or waiting for) requests */
    ADM_CONN_HELD,           /* reading stopped until the timer: see adm_conn_hold() */
    ADM_CONN_CLOSING,        /* no more requests: freed once the output is sent */
};

struct adm_conn_ops {
    const char *name;        /* "admin", "admin HTTP": "%u <name> connections open" */
    const char *listener;    /* "the admin socket": "accept on <listener>" */
    size_t size;             /* bytes of the protocol's connection, which begins
                              * with its struct adm_conn */
    unsigned max_conns;      /* connections at once; more are closed at accept */
    size_t in_max;           /* input bytes buffered at most (read high watermark) */
    size_t out_high;         /* queued output bytes that pause reading */
    unsigned reqs_per_cb;    /* requests per callback; the rest on the next loop turn */
    unsigned req_ms;         /* accept or a request's first byte to its end; 0: none */
    unsigned idle_ms;        /* keep-alive wait for the next request; 0: none */
    unsigned flush_ms;       /* a closing connection's output to drain; 0: none */

    /* The accepted connection <c> from <sa>: fills the protocol's fields
     * (c->peer at least). Returns 0, or -1 to close it. */
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
};

/* A listener and its connections. Embedded in the protocol's server. */
struct adm_listener {
    struct event_base *base;           /* borrowed */
    const struct adm_conn_ops *ops;    /* borrowed (static) */
    void *owner;                       /* borrowed: the protocol's server */
    struct evconnlistener *lev;        /* owned (closes the listening fd) */
    struct list conns;                 /* owned: struct adm_conn.node */
    unsigned nconns;
    unsigned long refused;             /* connections closed over max_conns */
};

/* The generic part of a connection, the first member of the protocol's. */
struct adm_conn {
    struct adm_listener *lis;          /* borrowed: where it was accepted */
    struct bufferevent *bev;           /* owned (closes the fd) */
    struct event *timer;               /* owned: request, idle, hold and flush limits */
    struct event *resume;              /* owned: re-runs request processing */
    enum adm_conn_state state;
    bool is_idle;                      /* between requests: the idle limit runs */
    bool is_eof;                       /* the peer shut its writing side */
    bool is_paused;                    /* reading stopped: output over out_high */
    char peer[48];                     /* who is on the other side, for messages */
    struct list node;                  /* lis->conns */
};

/* Prepares <l> (nothing listens yet); <owner> is the protocol's server. */
void adm_listener_init(struct adm_listener *l, struct event_base *base,
                       const struct adm_conn_ops *ops, void *owner);

/* Listens on the bound socket <fd>, which <l> owns from then on, but only
 * when this succeeds. Returns 0, or -1 with errno set. */
int adm_listener_listen_fd(struct adm_listener *l, evutil_socket_t fd);

/* Binds <sa> (SO_REUSEADDR) and listens. Returns 0, or -1 (the socket error
 * is EVUTIL_SOCKET_ERROR()). */
int adm_listener_listen_addr(struct adm_listener *l, const struct sockaddr *sa,
                             socklen_t salen);

/* Closes every connection (no reply to requests in progress) and the
 * listener. <l> may be closed without ever listening. */
void adm_listener_close(struct adm_listener *l);

/* Stops reading requests: <c> is freed once its output is sent, or
 * flush_ms later. */
void adm_conn_close(struct adm_conn *c);

/* Stops reading requests for <ms>; then ops->expire() runs. */
void adm_conn_hold(struct adm_conn *c, unsigned ms);

#endif
