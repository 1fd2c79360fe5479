/*
 * lib/pg_int: internal to the PostgreSQL client (lib/pg.h), shared by its
 * two halves; nothing else includes it. The client's structures, and what
 * lib/pg_query.c provides to lib/pg_session.c:
 *
 *   lib/pg_session.c  the client and its session: pg_new, pg_start,
 *                     pg_free, connect (evdns, PQconnectPoll, password
 *                     file, keepalives), the setup statements, going up,
 *                     ending a session, backoff and reconnect, the state
 *                     callback, and every event handler of the client;
 *   lib/pg_query.c    the queries: pg_query and pg_listen, the queue, send
 *                     and flush, reading the results, the reply view,
 *                     delivering answers, notifications to listeners.
 *
 * Calls go one way, from pg_session.c to pg_query.c. A pg_query.c function
 * that finds the session broken (a send or a flush failed, a COPY began)
 * does not end it: it returns false with the outcome and the reason in a
 * struct pg_end, and the session code that called it ends the session. The
 * one way back is the hook c->deadline_cb (see there): pg_query.c hands
 * pg_session.c's handler to libevent without naming it.
 *
 * One client is a small state machine over one libpq connection:
 *
 *   P_IDLE     created, pg_start() not called yet
 *   P_WAIT     no session; ev_retry fires the next attempt
 *   P_RESOLVE  an evdns lookup of the host name runs
 *   P_CONNECT  PQconnectPoll steps, ev_poll on whichever socket libpq has now
 *   P_SETUP    connected; the SET and LISTEN statements run
 *   P_UP       the session serves queries
 *
 * ev_deadline is the connect timeout from the start of an attempt until
 * P_UP. In P_SETUP and P_UP the socket has ev_read (always) and ev_write
 * (only while PQflush has data left). Each query carries its own deadline
 * timer from pg_query() on.
 *
 * Callbacks into the caller are made only from event handlers and from
 * pg_free(). Every handler runs between enter() and leave() (pg_session.c);
 * pg_free() called from inside a callback closes everything at once but
 * leaves the memory to the outermost leave(), and each handler checks
 * c->freeing after every callback it makes and then touches nothing but
 * leave(). Answers due to the caller are moved to c->done first and
 * delivered one at a time by pgq_deliver(), so pg_free() always finds every
 * unanswered query on one of c->queue, c->inflight and c->done.
 */
#ifndef CUTOVER_LIB_PG_INT_H
#define CUTOVER_LIB_PG_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/util.h>
#include <libpq-fe.h>

#include "lib/list.h"
#include "lib/pg.h"

struct event;
struct pg_dns;
struct pg_lookup;

enum phase { P_IDLE, P_WAIT, P_RESOLVE, P_CONNECT, P_SETUP, P_UP };

/* One query (or an internal LISTEN: cb NULL) from pg_query() until its
 * callback has run. On exactly one of c->queue, c->inflight, c->done. */
struct pg_item {
    struct list node;
    struct pg_client *c;
    char *sql;
    char **params;
    int nparams;
    bool simple;                 /* internal: simple protocol (LISTEN) */
    bool counted;                /* counts in c->nqueued */
    pg_query_fn *cb;             /* NULL: internal, nobody is called */
    void *arg;
    struct event *timer;         /* owned: the deadline, while queued or in flight */
    enum pg_outcome outcome;     /* once on c->done */
    char *error;                 /* owned: client-side failure text, on c->done */
};

struct pg_listener {
    char *channel;
    pg_notify_fn *cb;
    void *arg;
};

/* The handler of a query's deadline timer; it is pg_session.c's, because a
 * query in flight at its deadline ends the session. */
typedef void pg_deadline_fn(evutil_socket_t fd, short what, void *arg);

/* Why the session must end, as a pg_query.c function found it: the caller
 * (in pg_session.c) ends it with <inflight> for the query in flight. */
struct pg_end {
    enum pg_outcome inflight;
    char reason[512];
};

struct pg_client {
    struct event_base *base;     /* borrowed */
    char *name, *host, *port, *dbname, *user, *password_file, *appname, *sslmode;
    unsigned connect_timeout_ms, statement_timeout_ms;
    unsigned ka_idle_s, ka_interval_s, ka_count, tcp_user_ms;
    unsigned backoff_base_ms, backoff_cap_ms, max_queue;
    uint64_t rng;
    pg_state_fn *state_cb;
    void *state_arg;

    enum phase phase;
    bool freeing;                /* pg_free() has begun */
    unsigned depth;              /* handlers and pg_free() on the stack */
    bool was_up;                 /* a session has been up before */
    unsigned backoff_attempt;    /* index into the backoff schedule */
    unsigned failed;             /* consecutive failed attempts */
    uint64_t up_since_ms;

    PGconn *pq;                  /* owned, from an attempt's start to the session's end */
    struct pg_dns *dns;          /* owned (see pg_session.c); NULL until needed */
    struct pg_lookup *lookup;    /* the lookup of this attempt, or NULL */
    struct event *ev_retry;      /* owned: next attempt */
    struct event *ev_deadline;   /* owned: connect timeout */
    struct event *ev_defer;      /* owned: delivers c->done from the loop */
    struct event *ev_poll;       /* owned: the socket during PQconnectPoll */
    struct event *ev_read;       /* owned: the socket in P_SETUP and P_UP */
    struct event *ev_write;      /* owned: added while PQflush has data left */
    bool writing;                /* ev_write is added */

    /* The hook: the handler pg_query.c gives every query's deadline timer,
     * set by pg_new(). A query still queued at its deadline just fails; one
     * in flight ends the session (no non-blocking cancel, see pg.h). The
     * timer is created by pg_query(), but its handler needs the session, and
     * when it fires no session code is on the stack to take a struct pg_end
     * back: so pg_query.c holds the handler only as this pointer. */
    pg_deadline_fn *deadline_cb;

    struct list queue;           /* waiting, FIFO */
    struct pg_item *inflight;    /* sent, answer pending */
    bool has_end;                /* pg_query() found the session broken when it
                                  * sent at once: <end> says why, and on_defer()
                                  * ends the session (callers are never called
                                  * back from inside pg_query()) */
    struct pg_end end;           /* see <has_end> */
    PGresult *held;              /* the in-flight query's result so far */
    struct list done;            /* answer known, callback due */
    unsigned nqueued;            /* caller's queries queued or in flight */
    int setup_step;              /* P_SETUP: the statement running (S_*) */
    char setup_error[256];       /* its first error */
    char fatal[256];             /* last FATAL notice of this session */
    char last_reason[512];       /* why the last session or attempt ended */

    struct pg_listener *ls;      /* owned */
    size_t nls;
};


/* The public state of phase <p>. */
static inline enum pg_state
pg_phase_state(enum phase p)
{
    switch (p) {
    case P_IDLE:
    case P_WAIT:
        return PG_STATE_DOWN;
    case P_RESOLVE:
    case P_CONNECT:
    case P_SETUP:
        return PG_STATE_CONNECTING;
    case P_UP:
        return PG_STATE_UP;
    }
    return PG_STATE_DOWN;
}

/* ---- lib/pg_query.c, for lib/pg_session.c ------------------------------ */

/* Copies libpq's message <msg> into <buf> as one line: line breaks and tabs
 * become single spaces, trailing blanks go. */
void pgq_one_line(char *buf, size_t len, const char *msg);

/* Moves <it> (off every list) to c->done with <outcome> and <error>. */
void pgq_item_done(struct pg_client *c, struct pg_item *it, enum pg_outcome outcome,
                   const char *error);

/* Delivers c->done in order until it is empty or a callback called pg_free(). */
void pgq_deliver(struct pg_client *c);

/* The session has ended: the query in flight goes to c->done with <outcome>
 * and <inflight_error>, every queued one with PG_LOST and <queued_error>.
 * Calls nobody. */
void pgq_session_ended(struct pg_client *c, enum pg_outcome outcome,
                       const char *inflight_error, const char *queued_error);

/* pg_free(): every unanswered query gets PG_CLOSED, the one in flight
 * first, then the queued ones in order, then those on c->done. */
void pgq_close_all(struct pg_client *c);

/* Frees the listeners (the client is being destroyed). */
void pgq_free_listeners(struct pg_client *c);

/* Sends what libpq holds; watches EV_WRITE while some is left. False when
 * the session must end (<e>). */
bool pgq_flush(struct pg_client *c, struct pg_end *e);

/* Sends the next queued query when the session is up and idle. Only from
 * handlers: its end may call back, and pg_query() must not. False when the
 * session must end (<e>). */
bool pgq_pump(struct pg_client *c, struct pg_end *e);

/* Reads the in-flight query's results as far as they are in and answers it
 * when the last has come; then sends the next one. False when the session
 * must end (<e>); true also when a callback called pg_free(). */
bool pgq_results(struct pg_client *c, struct pg_end *e);

/* Calls the listeners of the notifications that have come in. */
void pgq_notifications(struct pg_client *c);

#endif
