/*
 * pg: the asynchronous PostgreSQL client the daemon runs on its main event
 * loop (the fleet's shared state, the migration gates' SQL checks). One
 * client is one session to one server: it connects, keeps the LISTENs it was
 * given, runs queries one at a time in FIFO order, and reconnects with
 * backoff whenever the session is lost. libevent and libpq only; a leaf.
 *
 * The rule: nothing here ever blocks the loop. The main loop also serves
 * traffic (it is worker 0), so a slow or silent database must cost the data
 * plane nothing. Concretely:
 *   - connect with PQconnectStartParams + PQconnectPoll driven by events on
 *     PQsocket() (re-armed after every poll step: the socket can change
 *     during a connect), never PQconnectdb;
 *   - a host name is resolved with libevent's evdns (libpq would call
 *     getaddrinfo() inside PQconnectPoll and wait for DNS); libpq gets the
 *     address as hostaddr and the name as host (TLS, .pgpass);
 *   - PQsetnonblocking(1); queries with PQsendQueryParams, PQflush until it
 *     returns 0 while EV_WRITE is watched; results with PQconsumeInput and
 *     PQgetResult only when PQisBusy() is false; never PQexec;
 *   - no blocking cancel: PostgreSQL 15's libpq has only PQcancel, which
 *     connects and waits. A statement that outlives its timeout is given up
 *     by closing the session (see Timeouts);
 *   - gssencmode=disable: with a Kerberos cache present libpq would try GSS
 *     encryption first, and gss_init_sec_context can wait for a KDC;
 *   - the files read on the loop are small and local: the password file
 *     (or libpq's .pgpass, service file and TLS files) at each attempt, and
 *     /etc/resolv.conf and /etc/hosts once, when a name is first resolved.
 *
 * States (enum pg_state):
 *
 *   DOWN ──retry timer──> CONNECTING ──setup done──> UP
 *    ^                     (resolve, connect,          |
 *    |                      SET + LISTEN)              |
 *    +──── attempt failed / connect timeout ───────────+── session lost,
 *                                                          statement timeout
 *
 * pg_new() creates a client in DOWN without doing any I/O; pg_start()
 * schedules the first attempt (on the loop, not inside the call). A session
 * is UP only after its setup has completed, one statement at a time: `SET
 * statement_timeout`, `SET client_connection_check_interval` (skipped when
 * the server refuses it) and one LISTEN for every registered channel. So when
 * the up callback runs, every channel registered before is being listened
 * to, and state the caller reads from then on cannot miss a notification
 * sent after the read.
 *
 * Reconnect: after a failed attempt or a lost session the next attempt waits
 * pg_backoff_ms(attempt, ...): "full jitter", a uniform draw from [0, min(cap,
 * base * 2^attempt)] (100 ms doubling to 5 s by default) taken from a
 * splitmix64 generator seeded by the caller, so a test or a daemon started
 * with the same seed reconnects on the same schedule. The attempt counter
 * goes back to 0 only when a session has stayed up for at least the cap, so
 * a server that accepts and drops at once is not hammered.
 *
 * Timeouts:
 *   - connect_timeout_ms covers one whole attempt (resolve, TCP, TLS, auth,
 *     setup); it is the client's own timer (libpq's connect_timeout applies
 *     only to its blocking calls);
 *   - statement_timeout_ms is every query's deadline, counted from pg_query()
 *     (waiting in the queue included). A query still queued at its deadline
 *     is failed with PG_TIMEOUT and nothing else happens. A query already
 *     sent is failed with PG_TIMEOUT and the session is closed and reopened:
 *     libpq 15 can only cancel by blocking (PQcancel), and the protocol gives
 *     no way to take the answer of an abandoned statement apart from the
 *     answers of the next ones. The other queued queries fail with PG_LOST.
 *     So that the server stops the work too, each session sets the server's
 *     statement_timeout to this timeout plus 500 ms (the client's deadline
 *     comes first, whatever the queueing) and client_connection_check_interval
 *     to 1 s (PostgreSQL >= 14: a backend notices its client has gone while a
 *     statement still runs);
 *   - TCP keepalives (keepalives=1, keepalives_idle/interval/count) and
 *     tcp_user_timeout notice a server that vanished without a FIN or RST in
 *     seconds, whether the session is idle or waits for an answer. They do
 *     nothing on a unix socket (where a dead server is seen at once).
 *
 * Queries while not UP fail fast with PG_NOT_CONNECTED: nothing is kept for
 * later, the caller decides whether to retry after the next up callback (a
 * fleet writer must re-read state then anyway). While UP, at most max_queue
 * queries wait or run (the one in flight included); more fail with PG_BUSY.
 *
 * Notifications sent while the session was down are lost: PostgreSQL keeps
 * them only for live listeners. The up callback after a reconnect
 * (st->reconnect) is the caller's signal to re-read what it follows.
 *
 * Lifetimes and ownership: the client owns its copies of the configuration
 * strings, of every query's text and parameters, of channel names, and every
 * libpq and libevent object it creates; the event base is borrowed and must
 * outlive the client. A struct pg_reply, a pg_state_info and a notification's
 * strings are valid only during the callback they are passed to. Every
 * query's callback is called exactly once (see pg_query); <arg> of a query,
 * a listener or the state callback must stay valid until then / until
 * pg_free().
 *
 * Callbacks and reentrancy: every callback runs from the event loop, never
 * from inside pg_start(), pg_query() or pg_listen(); the only exception is
 * pg_free(), which calls the callbacks of the queries it abandons before it
 * returns. From any callback the caller may call pg_query(), pg_listen(),
 * pg_state(), pg_backend_pid() and pg_free() on the same client; pg_free()
 * from a callback is safe (the client is released once the outermost
 * callback returns; nothing else of it runs). pg_query() on a client whose
 * pg_free() has begun (from a PG_CLOSED callback) returns -1 and never calls
 * back. Not thread-safe: one client belongs to one loop.
 */
#ifndef CUTOVER_LIB_PG_H
#define CUTOVER_LIB_PG_H

#include <stdbool.h>
#include <stdint.h>

struct event_base;
struct pg_client;
struct pg_reply;

enum pg_state {
    PG_STATE_DOWN = 0,           /* no session; waiting for the next attempt */
    PG_STATE_CONNECTING,         /* an attempt runs (resolve, connect, setup) */
    PG_STATE_UP,                 /* the session is set up: queries run */
};

/* How a query ended. Only PG_OK and PG_ERROR come from the server. */
enum pg_outcome {
    PG_OK = 0,                   /* ran: rows, columns, command tag */
    PG_ERROR,                    /* the server answered with an error: message, SQLSTATE */
    PG_TIMEOUT,                  /* the statement timeout passed first */
    PG_LOST,                     /* the session ended before the answer: the
                                    statement may or may not have run */
    PG_NOT_CONNECTED,            /* submitted while the client was not UP; nothing sent */
    PG_BUSY,                     /* max_queue queries were waiting already; nothing sent */
    PG_CLOSED,                   /* pg_free() ran before the answer */
};

/* What the state callback is told. */
struct pg_state_info {
    enum pg_state state;         /* PG_STATE_UP or PG_STATE_DOWN */
    bool reconnect;              /* up: a session was up before this one (state
                                    must be re-read, notifications were lost) */
    bool lost;                   /* down: an UP session was lost (else an attempt
                                    failed) */
    const char *reason;          /* down: why, one line ("connection to server ...
                                    failed: FATAL:  password authentication failed
                                    for user \"app\"", "connect timeout after 5000
                                    ms", "statement timeout after 300 ms"); never a
                                    password. NULL when up */
    unsigned attempt;            /* down: consecutive failed attempts, this one
                                    included (0 for a lost session) */
    unsigned retry_ms;           /* down: delay before the next attempt */
};

/* Called on every transition to UP (the first included) and on every lost
 * session or failed attempt. */
typedef void pg_state_fn(struct pg_client *c, const struct pg_state_info *st, void *arg);

/* A query's end; <r> is valid only during the call. */
typedef void pg_query_fn(struct pg_client *c, const struct pg_reply *r, void *arg);

/* A notification on a channel this listener registered: <payload> is ""
 * when none was given, <pid> the sending backend's process id (equal to
 * pg_backend_pid() for the client's own NOTIFY). */
typedef void pg_notify_fn(struct pg_client *c, const char *channel, const char *payload,
                          int pid, void *arg);

/* Settings. Strings are copied by pg_new(); NULL or 0 takes the default. */
struct pg_conf {
    const char *name;            /* in log lines ("store"); default "pg" */
    const char *host;            /* a name, an IP address, or a unix socket
                                    directory (starts with '/'); default $PGHOST,
                                    else libpq's socket directory. One host. */
    const char *port;            /* default $PGPORT or 5432 */
    const char *dbname;          /* default libpq's (the user name) */
    const char *user;            /* default libpq's (the OS user) */
    const char *password_file;   /* file whose first line is the password, read
                                    at every attempt; NULL: libpq's own ways
                                    (PGPASSFILE, ~/.pgpass) */
    const char *application_name; /* default "cutoverd" */
    const char *sslmode;         /* libpq's sslmode; default libpq's ("prefer") */
    unsigned connect_timeout_ms;  /* one whole attempt; default 5000 */
    unsigned statement_timeout_ms; /* every query, from pg_query(); default 5000 */
    unsigned keepalive_idle_s;    /* default 3 */
    unsigned keepalive_interval_s; /* default 1 */
    unsigned keepalive_count;     /* default 3 */
    unsigned tcp_user_timeout_ms; /* unacknowledged data; default 6000 */
    unsigned backoff_base_ms;     /* default 100 */
    unsigned backoff_cap_ms;      /* default 5000 */
    unsigned max_queue;           /* queries queued or in flight; default 64 */
    uint64_t seed;                /* seeds the backoff jitter */
};

/* A client in PG_STATE_DOWN that does nothing before pg_start(). <state>
 * (may be NULL) is called as described at pg_state_fn. Returns NULL when a
 * libevent object cannot be created (logged). */
struct pg_client *pg_new(struct event_base *base, const struct pg_conf *conf,
                         pg_state_fn *state, void *arg);

/* Schedules the first connect attempt on the loop. Calling it again is a
 * no-op. 0, or -1 when the timer cannot be added. */
int pg_start(struct pg_client *c);

/* Registers <cb>(<arg>) for notifications on <channel> (used verbatim as a
 * quoted identifier: "Fleet" and fleet are two channels, and `NOTIFY Fleet`
 * without quotes reaches fleet). The LISTEN is part of every session's setup;
 * registered while a session is up, it is also queued on that session at
 * once (notifications flow from when it completes). Several listeners may
 * share a channel; each gets every notification. 0, or -1 when <channel> is
 * empty or longer than 63 bytes (PostgreSQL would truncate it), <cb> is
 * NULL, or pg_free() has begun. */
int pg_listen(struct pg_client *c, const char *channel, pg_notify_fn *cb, void *arg);

/* Queues <sql> (one statement, $1..$n placeholders) with <nparams> text
 * parameters (<params>[i] NULL is SQL NULL); text and parameters are copied.
 * When nothing is in flight it is sent before pg_query() returns (without
 * waiting: what the socket does not take goes out on EV_WRITE), so its round
 * trip overlaps the caller's next work on the loop.
 * <cb>(<arg>) is called exactly once, from the loop, later: with the answer,
 * or PG_TIMEOUT, PG_LOST, PG_NOT_CONNECTED, PG_BUSY, or PG_CLOSED from
 * pg_free(). Returns 0; -1 only when pg_free() has begun on <c> (then <cb>
 * is never called). */
int pg_query(struct pg_client *c, const char *sql, int nparams, const char *const *params,
             pg_query_fn *cb, void *arg);

/* Closes the session and frees the client. Queries not answered yet get
 * PG_CLOSED before it returns (the one in flight, then the queued ones in
 * order, then those whose failure was still to be delivered);
 * neither the state callback nor any listener is called. Safe from any of
 * <c>'s callbacks; calling it again from a PG_CLOSED callback is a no-op.
 * NULL is a no-op. */
void pg_free(struct pg_client *c);

enum pg_state pg_state(const struct pg_client *c);

/* The server process of the current session; 0 when not UP. */
int pg_backend_pid(const struct pg_client *c);

/* ---- a query's reply (valid only during its callback) ---------------- */

enum pg_outcome pg_reply_outcome(const struct pg_reply *r);

/* Rows and columns of a PG_OK reply that returns rows; 0 otherwise. */
int pg_reply_rows(const struct pg_reply *r);
int pg_reply_cols(const struct pg_reply *r);

/* The text value at <row>, <col>; NULL when it is SQL NULL, out of range,
 * or the reply is not PG_OK. */
const char *pg_reply_value(const struct pg_reply *r, int row, int col);
bool pg_reply_isnull(const struct pg_reply *r, int row, int col);

/* Rows affected by an INSERT, UPDATE, DELETE, MERGE, SELECT or COPY of a
 * PG_OK reply; -1 when the command reports none or the reply is not PG_OK. */
long pg_reply_affected(const struct pg_reply *r);

/* What went wrong, one line, for every outcome but PG_OK ("" then): the
 * server's primary message for PG_ERROR ("relation \"x\" does not exist"),
 * else the client's ("statement timeout after 300 ms", "not connected: ...").
 * Never NULL. */
const char *pg_reply_error(const struct pg_reply *r);

/* The five-character SQLSTATE of a PG_ERROR reply ("42P01"); "" otherwise. */
const char *pg_reply_sqlstate(const struct pg_reply *r);

const char *pg_outcome_name(enum pg_outcome o);   /* "ok", "error", "timeout", ... */
const char *pg_state_name(enum pg_state s);       /* "down", "connecting", "up" */

/* ---- the reconnect schedule (pure) ------------------------------------ */

/* The delay before reconnect attempt number <attempt> (0 for the first
 * after a lost session): a draw from [0, min(<cap_ms>, <base_ms> * 2^attempt)]
 * taken from the splitmix64 generator whose state is *<rng> (advanced).
 * The same seed gives the same schedule. */
unsigned pg_backoff_ms(unsigned attempt, unsigned base_ms, unsigned cap_ms, uint64_t *rng);

#endif
