/*
 * pg: the asynchronous PostgreSQL client (see pg.h for the rules it keeps).
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
 * pg_free(). Every handler runs between enter() and leave(); pg_free() called
 * from inside a callback closes everything at once but leaves the memory to
 * the outermost leave(), and each handler checks c->freeing after every
 * callback it makes and then touches nothing but leave(). Answers due to the
 * caller are moved to c->done first and delivered one at a time by
 * deliver_done(), so pg_free() always finds every unanswered query on one of
 * c->queue, c->inflight and c->done.
 */
#include "lib/pg.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <libpq-fe.h>

#include "lib/list.h"
#include "lib/log.h"
#include "lib/xmalloc.h"

#define DEF_TIMEOUT_MS       5000u
#define DEF_KA_IDLE_S        3u
#define DEF_KA_INTERVAL_S    1u
#define DEF_KA_COUNT         3u
#define DEF_TCP_USER_MS      6000u
#define DEF_BACKOFF_BASE_MS  100u
#define DEF_BACKOFF_CAP_MS   5000u
#define DEF_MAX_QUEUE        64u
#define SERVER_GRACE_MS      500u   /* server statement_timeout = client's + this */
#define CHECK_INTERVAL_MS    1000u  /* client_connection_check_interval */
#define MAX_ADDRS            8      /* addresses of one host name tried per attempt */
#define CHANNEL_MAX          63     /* NAMEDATALEN - 1 */

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

/* The resolver. A lookup that was cancelled still calls back later (libevent
 * defers it) and needs the evdns base until then, so the base is freed only
 * when no lookup is outstanding, possibly after the client has gone. */
struct pg_dns {
    struct evdns_base *evdns;
    unsigned outstanding;        /* lookups whose callback is still due */
    bool orphan;                 /* the client is gone: free with the last callback */
};

/* One lookup: the client it serves, NULL once cancelled. */
struct pg_lookup {
    struct pg_client *c;
    struct pg_dns *dns;
    struct evdns_getaddrinfo_request *req;
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
    struct pg_dns *dns;          /* owned (see struct pg_dns); NULL until needed */
    struct pg_lookup *lookup;    /* the lookup of this attempt, or NULL */
    struct event *ev_retry;      /* owned: next attempt */
    struct event *ev_deadline;   /* owned: connect timeout */
    struct event *ev_defer;      /* owned: delivers c->done from the loop */
    struct event *ev_poll;       /* owned: the socket during PQconnectPoll */
    struct event *ev_read;       /* owned: the socket in P_SETUP and P_UP */
    struct event *ev_write;      /* owned: added while PQflush has data left */
    bool writing;                /* ev_write is added */

    struct list queue;           /* waiting, FIFO */
    struct pg_item *inflight;    /* sent, answer pending */
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

struct pg_reply {
    enum pg_outcome outcome;
    const PGresult *res;         /* the server's answer, PG_OK and PG_ERROR */
    const char *error;
    char sqlstate[6];
};

static void on_retry(evutil_socket_t fd, short what, void *arg);
static void on_deadline(evutil_socket_t fd, short what, void *arg);
static void on_defer(evutil_socket_t fd, short what, void *arg);
static void on_poll(evutil_socket_t fd, short what, void *arg);
static void on_read(evutil_socket_t fd, short what, void *arg);
static void on_write(evutil_socket_t fd, short what, void *arg);
static void on_item_timer(evutil_socket_t fd, short what, void *arg);
static void on_resolved(int result, struct evutil_addrinfo *ai, void *arg);
static void pump(struct pg_client *c);
static void session_end(struct pg_client *c, enum pg_outcome inflight, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- small helpers ------------------------------------------------------ */

static uint64_t
mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static struct timeval
ms_tv(unsigned ms)
{
    struct timeval tv = { (time_t)(ms / 1000u), (suseconds_t)((ms % 1000u) * 1000u) };

    return tv;
}

static char *
dup_or_null(const char *s)
{
    return s != NULL && s[0] != '\0' ? xstrdup(s) : NULL;
}

/* Copies libpq's message <msg> into <buf> as one line: line breaks and tabs
 * become single spaces, trailing blanks go. */
static void
one_line(char *buf, size_t len, const char *msg)
{
    size_t n = 0;
    bool space = false;

    for (; msg != NULL && *msg != '\0' && n + 1 < len; msg++) {
        if (*msg == '\n' || *msg == '\r' || *msg == '\t') {
            space = n > 0;
            continue;
        }
        if (space && n + 2 < len)
            buf[n++] = ' ';
        space = false;
        buf[n++] = *msg;
    }
    buf[n] = '\0';
}

static uint64_t
splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

unsigned
pg_backoff_ms(unsigned attempt, unsigned base_ms, unsigned cap_ms, uint64_t *rng)
{
    uint64_t ceil = base_ms;
    unsigned i;

    for (i = 0; i < attempt && ceil < cap_ms; i++)
        ceil *= 2;
    if (ceil > cap_ms)
        ceil = cap_ms;
    return (unsigned)(splitmix64(rng) % (ceil + 1));
}

const char *
pg_outcome_name(enum pg_outcome o)
{
    switch (o) {
    case PG_OK: return "ok";
    case PG_ERROR: return "error";
    case PG_TIMEOUT: return "timeout";
    case PG_LOST: return "lost";
    case PG_NOT_CONNECTED: return "not connected";
    case PG_BUSY: return "busy";
    case PG_CLOSED: return "closed";
    }
    return "?";
}

const char *
pg_state_name(enum pg_state s)
{
    switch (s) {
    case PG_STATE_DOWN: return "down";
    case PG_STATE_CONNECTING: return "connecting";
    case PG_STATE_UP: return "up";
    }
    return "?";
}

enum pg_state
pg_state(const struct pg_client *c)
{
    switch (c->phase) {
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

int
pg_backend_pid(const struct pg_client *c)
{
    return c->phase == P_UP && c->pq != NULL ? PQbackendPID(c->pq) : 0;
}

/* ---- entering and leaving handlers --------------------------------------- */

static void
enter(struct pg_client *c)
{
    c->depth++;
}

static void dns_release(struct pg_dns *d);

static void
destroy(struct pg_client *c)
{
    size_t i;

    event_free(c->ev_retry);
    event_free(c->ev_deadline);
    event_free(c->ev_defer);
    if (c->dns != NULL)
        dns_release(c->dns);
    for (i = 0; i < c->nls; i++)
        free(c->ls[i].channel);
    free(c->ls);
    free(c->name);
    free(c->host);
    free(c->port);
    free(c->dbname);
    free(c->user);
    free(c->password_file);
    free(c->appname);
    free(c->sslmode);
    free(c);
}

/* Leaves a handler; the last one out frees a client pg_free() was called on. */
static void
leave(struct pg_client *c)
{
    if (--c->depth == 0 && c->freeing)
        destroy(c);
}

/* ---- queries: items and their delivery ------------------------------------ */

static void
item_free(struct pg_item *it)
{
    int i;

    if (it->timer != NULL)
        event_free(it->timer);
    for (i = 0; i < it->nparams; i++)
        free(it->params[i]);
    free(it->params);
    free(it->sql);
    free(it->error);
    free(it);
}

/* Moves <it> (off every list) to c->done with <outcome> and <error>. */
static void
item_done(struct pg_client *c, struct pg_item *it, enum pg_outcome outcome, const char *error)
{
    if (it->timer != NULL) {
        event_free(it->timer);
        it->timer = NULL;
    }
    if (it->counted) {
        it->counted = false;
        c->nqueued--;
    }
    it->outcome = outcome;
    free(it->error);
    it->error = xstrdup(error != NULL ? error : "");
    list_append(&c->done, &it->node);
}

/* Calls the callback of <it> (taken off every list) with <r>, then frees it. */
static void
item_call(struct pg_client *c, struct pg_item *it, const struct pg_reply *r)
{
    if (it->cb != NULL)
        it->cb(c, r, it->arg);
    else if (r->outcome == PG_ERROR || r->outcome == PG_TIMEOUT)
        log_kv(LL_WARN, "pg", "pg_listen_failed", "client", c->name,
               "sql", it->sql, "reason", r->error);
    item_free(it);
}

/* Delivers c->done in order until it is empty or a callback called pg_free(). */
static void
deliver_done(struct pg_client *c)
{
    while (!c->freeing && !list_empty(&c->done)) {
        struct pg_item *it = list_entry(c->done.next, struct pg_item, node);
        struct pg_reply r = { it->outcome, NULL, it->error, "" };

        list_unlink(&it->node);
        item_call(c, it, &r);
    }
}

static void
on_defer(evutil_socket_t fd, short what, void *arg)
{
    struct pg_client *c = arg;

    (void)fd;
    (void)what;
    enter(c);
    deliver_done(c);
    pump(c);
    leave(c);
}

/* Builds the reply to the in-flight query from the server's result <res>
 * (NULL when the server sent none) and calls back. */
static void
answer(struct pg_client *c, struct pg_item *it, PGresult *res)
{
    struct pg_reply r = { PG_ERROR, res, "", "" };
    char msg[512];
    const char *s;

    if (it->timer != NULL) {
        event_free(it->timer);
        it->timer = NULL;
    }
    if (it->counted) {
        it->counted = false;
        c->nqueued--;
    }
    switch (res != NULL ? PQresultStatus(res) : PGRES_FATAL_ERROR) {
    case PGRES_COMMAND_OK:
    case PGRES_TUPLES_OK:
    case PGRES_EMPTY_QUERY:
        r.outcome = PG_OK;
        break;
    default:
        s = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
        if (s == NULL)
            s = res != NULL ? PQresultErrorMessage(res) : "no result from the server";
        one_line(msg, sizeof(msg), s);
        r.error = msg;
        s = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
        if (s != NULL)
            snprintf(r.sqlstate, sizeof(r.sqlstate), "%s", s);
        break;
    }
    item_call(c, it, &r);
    if (res != NULL)
        PQclear(res);
}

/* ---- the session --------------------------------------------------------- */

/* Closes what an attempt or a session holds. Calls nobody. */
static void
session_close(struct pg_client *c)
{
    if (c->ev_poll != NULL) {
        event_free(c->ev_poll);
        c->ev_poll = NULL;
    }
    if (c->ev_read != NULL) {
        event_free(c->ev_read);
        c->ev_read = NULL;
    }
    if (c->ev_write != NULL) {
        event_free(c->ev_write);
        c->ev_write = NULL;
    }
    c->writing = false;
    evtimer_del(c->ev_deadline);
    if (c->lookup != NULL) {
        /* its callback still comes, with EVUTIL_EAI_CANCEL */
        c->lookup->c = NULL;
        if (c->lookup->req != NULL)
            evdns_getaddrinfo_cancel(c->lookup->req);
        c->lookup = NULL;
    }
    if (c->pq != NULL) {                /* events first: the socket closes here */
        PQfinish(c->pq);
        c->pq = NULL;
    }
    if (c->held != NULL) {
        PQclear(c->held);
        c->held = NULL;
    }
    c->setup_error[0] = '\0';
}

/* Sends what libpq holds; watches EV_WRITE while some is left. False when the
 * session ended (then nothing of it is left). */
static bool
flush(struct pg_client *c)
{
    int r = PQflush(c->pq);

    if (r < 0) {
        char msg[512];

        one_line(msg, sizeof(msg), PQerrorMessage(c->pq));
        session_end(c, PG_LOST, "%s", msg);
        return false;
    }
    if (r > 0 && !c->writing) {
        event_add(c->ev_write, NULL);
        c->writing = true;
    } else if (r == 0 && c->writing) {
        event_del(c->ev_write);
        c->writing = false;
    }
    return true;
}

/* Sends the next queued query when the session is up and idle. Only from
 * handlers: a failed send ends the session, which calls back, and pg_query()
 * must not. */
static void
pump(struct pg_client *c)
{
    struct pg_item *it;
    int ok;

    if (c->phase != P_UP || c->inflight != NULL || list_empty(&c->queue) || c->freeing)
        return;
    it = list_entry(c->queue.next, struct pg_item, node);
    list_unlink(&it->node);
    c->inflight = it;
    if (it->simple)
        ok = PQsendQuery(c->pq, it->sql);
    else
        ok = PQsendQueryParams(c->pq, it->sql, it->nparams, NULL,
                               (const char *const *)it->params, NULL, NULL, 0);
    if (!ok) {
        char msg[512];

        one_line(msg, sizeof(msg), PQerrorMessage(c->pq));
        session_end(c, PG_LOST, "%s", msg);
        return;
    }
    flush(c);
}

/* The end of a session or an attempt: closes it, answers every query that
 * waited on it, schedules the next attempt and tells the caller. */
static void
session_end(struct pg_client *c, enum pg_outcome inflight, const char *fmt, ...)
{
    bool lost = c->phase == P_UP;
    struct pg_state_info st;
    char reason[512], failure[600];
    struct timeval tv;
    unsigned delay;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    if (c->fatal[0] != '\0' && strstr(reason, c->fatal) == NULL) {
        /* the server said why before it closed ("terminating connection due
         * to administrator command"): that is the better reason */
        char tmp[sizeof(c->fatal) + sizeof(reason) + 4];
        size_t n = (size_t)snprintf(tmp, sizeof(tmp), "%s (%s)", c->fatal, reason);

        if (n >= sizeof(reason))
            n = sizeof(reason) - 1;
        memcpy(reason, tmp, n);
        reason[n] = '\0';
    }
    c->fatal[0] = '\0';
    session_close(c);

    snprintf(failure, sizeof(failure), "connection lost: %s", reason);
    if (c->inflight != NULL) {
        struct pg_item *it = c->inflight;

        c->inflight = NULL;
        item_done(c, it, inflight, inflight == PG_LOST ? failure : reason);
    }
    while (!list_empty(&c->queue)) {
        struct pg_item *it = list_entry(c->queue.next, struct pg_item, node);

        list_unlink(&it->node);
        item_done(c, it, PG_LOST, failure);
    }

    if (lost && mono_ms() - c->up_since_ms >= c->backoff_cap_ms)
        c->backoff_attempt = 0;
    delay = pg_backoff_ms(c->backoff_attempt, c->backoff_base_ms, c->backoff_cap_ms, &c->rng);
    if (c->backoff_attempt < 64)
        c->backoff_attempt++;
    if (!lost)
        c->failed++;
    c->phase = P_WAIT;
    tv = ms_tv(delay);
    evtimer_add(c->ev_retry, &tv);

    if (lost) {
        log_kv(LL_WARN, "pg", "pg_down", "client", c->name, "reason", reason, NULL);
    } else {
        char n[16];

        snprintf(n, sizeof(n), "%u", c->failed);
        /* once per reason, not once per attempt */
        log_kv(strcmp(reason, c->last_reason) != 0 ? LL_WARN : LL_DEBUG, "pg",
               "pg_connect_failed", "client", c->name, "attempt", n, "reason", reason, NULL);
    }
    snprintf(c->last_reason, sizeof(c->last_reason), "%s", reason);

    memset(&st, 0, sizeof(st));
    st.state = PG_STATE_DOWN;
    st.lost = lost;
    st.reason = reason;
    st.attempt = lost ? 0 : c->failed;
    st.retry_ms = delay;
    if (c->state_cb != NULL)
        c->state_cb(c, &st, c->state_arg);
    deliver_done(c);
}

static void
go_up(struct pg_client *c)
{
    struct pg_state_info st;
    char pid[16];

    evtimer_del(c->ev_deadline);
    c->phase = P_UP;
    c->failed = 0;
    c->up_since_ms = mono_ms();
    c->last_reason[0] = '\0';
    snprintf(pid, sizeof(pid), "%d", PQbackendPID(c->pq));
    log_kv(LL_INFO, "pg", "pg_up", "client", c->name, "backend_pid", pid,
           "reconnect", c->was_up ? "yes" : "no", NULL);
    memset(&st, 0, sizeof(st));
    st.state = PG_STATE_UP;
    st.reconnect = c->was_up;
    c->was_up = true;
    if (c->state_cb != NULL)
        c->state_cb(c, &st, c->state_arg);
    if (!c->freeing)
        pump(c);
}

/* Appends `LISTEN "<channel>"; ` for <channel> to <sql>. */
static bool
add_listen(struct pg_client *c, char **sql, size_t *len, const char *channel)
{
    char *q = PQescapeIdentifier(c->pq, channel, strlen(channel));
    size_t n;

    if (q == NULL)
        return false;
    n = strlen(q);
    *sql = xrealloc(*sql, *len + n + 10);
    *len += (size_t)sprintf(*sql + *len, "LISTEN %s; ", q);
    PQfreemem(q);
    return true;
}

/*
 * The setup statements, one round trip each (a failed statement of a
 * multi-statement query would roll back the others):
 *   S_TIMEOUT  SET statement_timeout                    required
 *   S_CHECK    SET client_connection_check_interval     optional: PostgreSQL >= 14,
 *              and a server on a platform without it refuses any value but 0
 *   S_LISTEN   LISTEN for every channel, in one query   required, when any
 * Puts the statement of step c->setup_step into *<sql> (caller frees), NULL
 * when the step has none; -1 with <err> when it cannot be built.
 */
enum { S_TIMEOUT, S_CHECK, S_LISTEN, S_DONE };

static int
setup_sql(struct pg_client *c, char **sql, char *err, size_t errlen)
{
    char buf[96];
    size_t len = 0, i;

    *sql = NULL;
    switch (c->setup_step) {
    case S_TIMEOUT:
        snprintf(buf, sizeof(buf), "SET statement_timeout = %u",
                 c->statement_timeout_ms + SERVER_GRACE_MS);
        *sql = xstrdup(buf);
        return 0;
    case S_CHECK:
        if (PQserverVersion(c->pq) >= 140000) {
            snprintf(buf, sizeof(buf), "SET client_connection_check_interval = %u",
                     CHECK_INTERVAL_MS);
            *sql = xstrdup(buf);
        }
        return 0;
    case S_LISTEN:
        for (i = 0; i < c->nls; i++) {
            if (!add_listen(c, sql, &len, c->ls[i].channel)) {
                free(*sql);
                *sql = NULL;
                one_line(buf, sizeof(buf), PQerrorMessage(c->pq));
                snprintf(err, errlen, "LISTEN %s: %s", c->ls[i].channel, buf);
                return -1;
            }
        }
        return 0;
    default:
        return 0;
    }
}

/* Sends the next setup statement, or brings the session up after the last. */
static void
setup_next(struct pg_client *c)
{
    char err[256], msg[512];
    char *sql = NULL;

    while (sql == NULL && c->setup_step < S_DONE) {
        if (setup_sql(c, &sql, err, sizeof(err)) < 0) {
            session_end(c, PG_LOST, "session setup failed: %s", err);
            return;
        }
        if (sql == NULL)
            c->setup_step++;
    }
    if (sql == NULL) {
        go_up(c);
        return;
    }
    if (!PQsendQuery(c->pq, sql)) {
        free(sql);
        one_line(msg, sizeof(msg), PQerrorMessage(c->pq));
        session_end(c, PG_LOST, "%s", msg);
        return;
    }
    free(sql);
    flush(c);
}

/* Connected: watch the socket, then the setup statements. */
static void
setup_start(struct pg_client *c)
{
    char msg[512];
    int fd = PQsocket(c->pq);

    event_free(c->ev_poll);
    c->ev_poll = NULL;
    if (PQsetnonblocking(c->pq, 1) != 0) {
        one_line(msg, sizeof(msg), PQerrorMessage(c->pq));
        session_end(c, PG_LOST, "cannot make the connection non-blocking: %s", msg);
        return;
    }
    c->ev_read = event_new(c->base, fd, EV_READ | EV_PERSIST, on_read, c);
    c->ev_write = event_new(c->base, fd, EV_WRITE | EV_PERSIST, on_write, c);
    if (c->ev_read == NULL || c->ev_write == NULL || event_add(c->ev_read, NULL) < 0) {
        session_end(c, PG_LOST, "cannot watch the connection's socket");
        return;
    }
    c->phase = P_SETUP;
    c->setup_step = S_TIMEOUT;
    c->setup_error[0] = '\0';
    setup_next(c);
}

/* Reads the current setup statement's results as far as they are in; at
 * its end, goes on with the next. */
static void
setup_results(struct pg_client *c)
{
    PGresult *res;

    while (c->phase == P_SETUP && !PQisBusy(c->pq)) {
        res = PQgetResult(c->pq);
        if (res == NULL) {
            if (c->setup_error[0] != '\0' && c->setup_step != S_CHECK) {
                session_end(c, PG_LOST, "session setup failed: %s", c->setup_error);
                return;
            }
            if (c->setup_error[0] != '\0')
                log_kv(LL_DEBUG, "pg", "pg_setup_skipped", "client", c->name,
                       "reason", c->setup_error, NULL);
            c->setup_error[0] = '\0';
            c->setup_step++;
            setup_next(c);
            continue;
        }
        switch (PQresultStatus(res)) {
        case PGRES_COMMAND_OK:
        case PGRES_TUPLES_OK:
        case PGRES_EMPTY_QUERY:
            break;
        default:
            if (c->setup_error[0] == '\0')
                one_line(c->setup_error, sizeof(c->setup_error), PQresultErrorMessage(res));
            break;
        }
        PQclear(res);
    }
}

/* Reads the in-flight query's results as far as they are in and answers it
 * when the last has come; then sends the next one. */
static void
query_results(struct pg_client *c)
{
    PGresult *res;

    while (c->inflight != NULL && !PQisBusy(c->pq)) {
        res = PQgetResult(c->pq);
        if (res == NULL) {
            struct pg_item *it = c->inflight;
            PGresult *held = c->held;

            c->inflight = NULL;
            c->held = NULL;
            answer(c, it, held);
            if (c->freeing)
                return;
            pump(c);
            continue;
        }
        switch (PQresultStatus(res)) {
        case PGRES_COPY_IN:
        case PGRES_COPY_OUT:
        case PGRES_COPY_BOTH:
            /* the protocol would wait for COPY data: start over */
            PQclear(res);
            session_end(c, PG_ERROR, "COPY is not supported by this client");
            return;
        default:
            break;
        }
        if (c->held == NULL) {
            c->held = res;
        } else if (PQresultStatus(res) == PGRES_FATAL_ERROR &&
                   PQresultStatus(c->held) != PGRES_FATAL_ERROR) {
            PQclear(c->held);            /* an error after rows: the error wins */
            c->held = res;
        } else {
            PQclear(res);
        }
    }
}

static void
notifications(struct pg_client *c)
{
    PGnotify *n;
    size_t i;

    while (!c->freeing && c->pq != NULL && (n = PQnotifies(c->pq)) != NULL) {
        /* by index: a callback may add listeners (c->ls moves) */
        for (i = 0; i < c->nls && !c->freeing; i++)
            if (strcmp(c->ls[i].channel, n->relname) == 0)
                c->ls[i].cb(c, n->relname, n->extra != NULL ? n->extra : "", n->be_pid,
                            c->ls[i].arg);
        PQfreemem(n);
    }
}

static void
on_read(evutil_socket_t fd, short what, void *arg)
{
    struct pg_client *c = arg;
    char msg[512];

    (void)fd;
    (void)what;
    enter(c);
    if (!PQconsumeInput(c->pq)) {
        /* parses what came before the end: a FATAL the server sent when
         * idle goes to on_notice() and makes the reason */
        (void)PQisBusy(c->pq);
        one_line(msg, sizeof(msg), PQerrorMessage(c->pq));
        session_end(c, PG_LOST, "%s", msg);
        goto out;
    }
    if (c->writing && !flush(c))
        goto out;
    if (c->phase == P_SETUP)
        setup_results(c);
    else
        query_results(c);
    if (!c->freeing && c->pq != NULL && PQstatus(c->pq) == CONNECTION_BAD) {
        one_line(msg, sizeof(msg), PQerrorMessage(c->pq));
        session_end(c, PG_LOST, "%s", msg);
        goto out;
    }
    notifications(c);
out:
    leave(c);
}

static void
on_write(evutil_socket_t fd, short what, void *arg)
{
    struct pg_client *c = arg;

    (void)fd;
    (void)what;
    enter(c);
    flush(c);
    leave(c);
}

static void
on_item_timer(evutil_socket_t fd, short what, void *arg)
{
    struct pg_item *it = arg;
    struct pg_client *c = it->c;
    char msg[64];

    (void)fd;
    (void)what;
    enter(c);
    snprintf(msg, sizeof(msg), "statement timeout after %u ms", c->statement_timeout_ms);
    if (it == c->inflight) {
        /* no non-blocking cancel: give the session up (see pg.h) */
        session_end(c, PG_TIMEOUT, "%s", msg);
    } else {
        list_unlink(&it->node);
        item_done(c, it, PG_TIMEOUT, msg);
        deliver_done(c);
    }
    leave(c);
}

static void
on_notice(void *arg, const char *message)
{
    struct pg_client *c = arg;
    char line[256];

    one_line(line, sizeof(line), message);
    if (strncmp(line, "FATAL:", 6) == 0 || strncmp(line, "PANIC:", 6) == 0)
        snprintf(c->fatal, sizeof(c->fatal), "%s", line);
    log_kv(LL_DEBUG, "pg", "pg_notice", "client", c->name, "msg", line, NULL);
}

/* ---- connecting ---------------------------------------------------------- */

/* Watches the socket libpq has now for what PQconnectPoll asked. */
static void
poll_arm(struct pg_client *c, PostgresPollingStatusType st)
{
    int fd = PQsocket(c->pq);

    if (c->ev_poll != NULL) {
        event_free(c->ev_poll);
        c->ev_poll = NULL;
    }
    if (fd < 0) {
        session_end(c, PG_LOST, "libpq has no socket");
        return;
    }
    c->ev_poll = event_new(c->base, fd, st == PGRES_POLLING_READING ? EV_READ : EV_WRITE,
                           on_poll, c);
    if (c->ev_poll == NULL || event_add(c->ev_poll, NULL) < 0)
        session_end(c, PG_LOST, "cannot watch the connection's socket");
}

static void
on_poll(evutil_socket_t fd, short what, void *arg)
{
    struct pg_client *c = arg;
    PostgresPollingStatusType st;
    char msg[512];

    (void)fd;
    (void)what;
    enter(c);
    st = PQconnectPoll(c->pq);
    switch (st) {
    case PGRES_POLLING_READING:
    case PGRES_POLLING_WRITING:
        poll_arm(c, st);
        break;
    case PGRES_POLLING_OK:
        setup_start(c);
        break;
    default:
        one_line(msg, sizeof(msg), PQerrorMessage(c->pq));
        session_end(c, PG_LOST, "%s", msg);
        break;
    }
    leave(c);
}

/* The first line of the password file into <buf>. 0, or -1 with <err>. */
static int
read_password(const char *path, char *buf, size_t len, char *err, size_t errlen)
{
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

    if (fd < 0) {
        snprintf(err, errlen, "password_file %s: %s", path, strerror(errno));
        return -1;
    }
    do
        n = read(fd, buf, len - 1);
    while (n < 0 && errno == EINTR);
    close(fd);
    if (n < 0) {
        snprintf(err, errlen, "password_file %s: %s", path, strerror(errno));
        return -1;
    }
    buf[n] = '\0';
    buf[strcspn(buf, "\r\n")] = '\0';
    if (buf[0] == '\0') {
        snprintf(err, errlen, "password_file %s: no password on its first line", path);
        return -1;
    }
    return 0;
}

/* Starts libpq's connect; <hostaddr> is the resolved address list or NULL. */
static void
connect_start(struct pg_client *c, const char *hostlist, const char *hostaddr)
{
    const char *kw[32], *val[32];
    char idle[16], intvl[16], cnt[16], tut[16], err[600], password[1024];
    int n = 0;

#define KV(k, v) do { if ((v) != NULL) { kw[n] = (k); val[n] = (v); n++; } } while (0)
    KV("host", hostlist);
    KV("hostaddr", hostaddr);
    KV("port", c->port);
    KV("dbname", c->dbname);
    KV("user", c->user);
    KV("application_name", c->appname);
    KV("sslmode", c->sslmode);
    KV("gssencmode", "disable");
    KV("client_encoding", "UTF8");
    snprintf(idle, sizeof(idle), "%u", c->ka_idle_s);
    snprintf(intvl, sizeof(intvl), "%u", c->ka_interval_s);
    snprintf(cnt, sizeof(cnt), "%u", c->ka_count);
    snprintf(tut, sizeof(tut), "%u", c->tcp_user_ms);
    KV("keepalives", "1");
    KV("keepalives_idle", idle);
    KV("keepalives_interval", intvl);
    KV("keepalives_count", cnt);
    KV("tcp_user_timeout", tut);
    if (c->password_file != NULL) {
        if (read_password(c->password_file, password, sizeof(password), err,
                          sizeof(err)) < 0) {
            session_end(c, PG_LOST, "%s", err);
            return;
        }
        KV("password", password);
    }
#undef KV
    kw[n] = NULL;
    val[n] = NULL;
    c->pq = PQconnectStartParams(kw, val, 0);
    explicit_bzero(password, sizeof(password));
    if (c->pq == NULL) {
        session_end(c, PG_LOST, "out of memory starting a connection");
        return;
    }
    PQsetNoticeProcessor(c->pq, on_notice, c);
    if (PQstatus(c->pq) == CONNECTION_BAD) {
        one_line(err, sizeof(err), PQerrorMessage(c->pq));
        session_end(c, PG_LOST, "%s", err);
        return;
    }
    c->phase = P_CONNECT;
    poll_arm(c, PGRES_POLLING_WRITING);
}

static void
dns_release(struct pg_dns *d)
{
    if (d->outstanding > 0) {
        d->orphan = true;
        return;
    }
    evdns_base_free(d->evdns, 0);
    free(d);
}

static void
on_resolved(int result, struct evutil_addrinfo *ai, void *arg)
{
    struct pg_lookup *lk = arg;
    struct pg_client *c = lk->c;
    struct pg_dns *d = lk->dns;
    char addrs[MAX_ADDRS * (INET6_ADDRSTRLEN + 1)], hosts[1024];
    struct evutil_addrinfo *p;
    size_t alen = 0, hlen = 0;
    int n = 0;

    d->outstanding--;
    free(lk);
    if (c == NULL) {                    /* cancelled: the attempt is over */
        if (ai != NULL)
            evutil_freeaddrinfo(ai);
        if (d->orphan && d->outstanding == 0) {
            evdns_base_free(d->evdns, 0);
            free(d);
        }
        return;
    }
    c->lookup = NULL;
    enter(c);
    if (result != 0) {
        session_end(c, PG_LOST, "cannot resolve %s: %s", c->host, evutil_gai_strerror(result));
        goto out;
    }
    addrs[0] = hosts[0] = '\0';
    for (p = ai; p != NULL && n < MAX_ADDRS; p = p->ai_next) {
        char a[INET6_ADDRSTRLEN];
        const void *sa;

        if (p->ai_family == AF_INET)
            sa = &((const struct sockaddr_in *)(const void *)p->ai_addr)->sin_addr;
        else if (p->ai_family == AF_INET6)
            sa = &((const struct sockaddr_in6 *)(const void *)p->ai_addr)->sin6_addr;
        else
            continue;
        if (evutil_inet_ntop(p->ai_family, sa, a, sizeof(a)) == NULL)
            continue;
        if (hlen + strlen(c->host) + 2 > sizeof(hosts))
            break;
        alen += (size_t)snprintf(addrs + alen, sizeof(addrs) - alen, "%s%s", n ? "," : "", a);
        hlen += (size_t)snprintf(hosts + hlen, sizeof(hosts) - hlen, "%s%s", n ? "," : "",
                                 c->host);
        n++;
    }
    if (ai != NULL)
        evutil_freeaddrinfo(ai);
    if (n == 0)
        session_end(c, PG_LOST, "cannot resolve %s: no IPv4 or IPv6 address", c->host);
    else
        connect_start(c, hosts, addrs);
out:
    leave(c);
}

/* True when <host> needs no lookup: a socket directory or an IP address. */
static bool
host_is_literal(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];

    return host == NULL || host[0] == '/' || host[0] == '@' ||
           inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

static void
start_attempt(struct pg_client *c)
{
    struct evutil_addrinfo hints;
    struct evdns_getaddrinfo_request *req;
    struct pg_lookup *lk;
    struct timeval tv = ms_tv(c->connect_timeout_ms);

    c->fatal[0] = '\0';
    c->phase = P_RESOLVE;
    evtimer_add(c->ev_deadline, &tv);
    if (host_is_literal(c->host)) {
        connect_start(c, c->host, NULL);
        return;
    }
    if (c->dns == NULL) {
        struct evdns_base *evdns = evdns_base_new(
            c->base, EVDNS_BASE_INITIALIZE_NAMESERVERS | EVDNS_BASE_DISABLE_WHEN_INACTIVE);

        if (evdns == NULL) {
            session_end(c, PG_LOST, "cannot set up name resolution");
            return;
        }
        c->dns = xcalloc(1, sizeof(*c->dns));
        c->dns->evdns = evdns;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    hints.ai_flags = EVUTIL_AI_ADDRCONFIG;
    lk = xcalloc(1, sizeof(*lk));
    lk->c = c;
    lk->dns = c->dns;
    c->dns->outstanding++;
    c->lookup = lk;
    /* may call on_resolved() before it returns (numbers, /etc/hosts) */
    req = evdns_getaddrinfo(c->dns->evdns, c->host, NULL, &hints, on_resolved, lk);
    if (req != NULL)
        lk->req = req;
}

static void
on_retry(evutil_socket_t fd, short what, void *arg)
{
    struct pg_client *c = arg;

    (void)fd;
    (void)what;
    enter(c);
    start_attempt(c);
    leave(c);
}

static void
on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct pg_client *c = arg;

    (void)fd;
    (void)what;
    enter(c);
    session_end(c, PG_LOST, "connect timeout after %u ms", c->connect_timeout_ms);
    leave(c);
}

/* ---- the public calls ------------------------------------------------------ */

struct pg_client *
pg_new(struct event_base *base, const struct pg_conf *conf, pg_state_fn *state, void *arg)
{
    struct pg_client *c = xcalloc(1, sizeof(*c));
    const char *host = conf->host != NULL ? conf->host : getenv("PGHOST");

    c->base = base;
    c->name = xstrdup(conf->name != NULL && conf->name[0] != '\0' ? conf->name : "pg");
    c->host = dup_or_null(host);
    c->port = dup_or_null(conf->port);
    c->dbname = dup_or_null(conf->dbname);
    c->user = dup_or_null(conf->user);
    c->password_file = dup_or_null(conf->password_file);
    c->appname = xstrdup(conf->application_name != NULL ? conf->application_name : "cutoverd");
    c->sslmode = dup_or_null(conf->sslmode);
#define DEF(x, d) ((x) != 0 ? (x) : (d))
    c->connect_timeout_ms = DEF(conf->connect_timeout_ms, DEF_TIMEOUT_MS);
    c->statement_timeout_ms = DEF(conf->statement_timeout_ms, DEF_TIMEOUT_MS);
    c->ka_idle_s = DEF(conf->keepalive_idle_s, DEF_KA_IDLE_S);
    c->ka_interval_s = DEF(conf->keepalive_interval_s, DEF_KA_INTERVAL_S);
    c->ka_count = DEF(conf->keepalive_count, DEF_KA_COUNT);
    c->tcp_user_ms = DEF(conf->tcp_user_timeout_ms, DEF_TCP_USER_MS);
    c->backoff_base_ms = DEF(conf->backoff_base_ms, DEF_BACKOFF_BASE_MS);
    c->backoff_cap_ms = DEF(conf->backoff_cap_ms, DEF_BACKOFF_CAP_MS);
    c->max_queue = DEF(conf->max_queue, DEF_MAX_QUEUE);
#undef DEF
    if (c->backoff_cap_ms < c->backoff_base_ms)
        c->backoff_cap_ms = c->backoff_base_ms;
    c->rng = conf->seed;
    c->state_cb = state;
    c->state_arg = arg;
    c->phase = P_IDLE;
    list_init(&c->queue);
    list_init(&c->done);
    c->ev_retry = evtimer_new(base, on_retry, c);
    c->ev_deadline = evtimer_new(base, on_deadline, c);
    c->ev_defer = event_new(base, -1, 0, on_defer, c);
    if (c->ev_retry == NULL || c->ev_deadline == NULL || c->ev_defer == NULL) {
        log_kv(LL_ERR, "pg", "pg_new_failed", "client", c->name,
               "reason", "cannot create libevent timers", NULL);
        if (c->ev_retry != NULL)
            event_free(c->ev_retry);
        if (c->ev_deadline != NULL)
            event_free(c->ev_deadline);
        if (c->ev_defer != NULL)
            event_free(c->ev_defer);
        c->ev_retry = c->ev_deadline = c->ev_defer = NULL;
        free(c->name);
        free(c->host);
        free(c->port);
        free(c->dbname);
        free(c->user);
        free(c->password_file);
        free(c->appname);
        free(c->sslmode);
        free(c);
        return NULL;
    }
    return c;
}

int
pg_start(struct pg_client *c)
{
    struct timeval tv = { 0, 0 };

    if (c->phase != P_IDLE)
        return 0;
    c->phase = P_WAIT;
    return evtimer_add(c->ev_retry, &tv) < 0 ? -1 : 0;
}

/* Queues an internal LISTEN on the live session. */
static void
queue_listen(struct pg_client *c, const char *channel)
{
    struct pg_item *it;
    struct timeval tv = ms_tv(c->statement_timeout_ms);
    char *q = PQescapeIdentifier(c->pq, channel, strlen(channel));

    if (q == NULL)
        return;                         /* the next session's setup says why */
    it = xcalloc(1, sizeof(*it));
    list_init(&it->node);
    it->c = c;
    it->simple = true;
    it->sql = xmalloc(strlen(q) + 8);
    sprintf(it->sql, "LISTEN %s", q);
    PQfreemem(q);
    it->timer = evtimer_new(c->base, on_item_timer, it);
    if (it->timer != NULL)
        evtimer_add(it->timer, &tv);
    list_append(&c->queue, &it->node);
    event_active(c->ev_defer, EV_TIMEOUT, 1);
}

int
pg_listen(struct pg_client *c, const char *channel, pg_notify_fn *cb, void *arg)
{
    size_t len = channel != NULL ? strlen(channel) : 0;

    if (c->freeing || cb == NULL || len == 0 || len > CHANNEL_MAX)
        return -1;
    c->ls = xrealloc(c->ls, (c->nls + 1) * sizeof(*c->ls));
    c->ls[c->nls].channel = xstrdup(channel);
    c->ls[c->nls].cb = cb;
    c->ls[c->nls].arg = arg;
    c->nls++;
    if (c->phase == P_SETUP || c->phase == P_UP)
        queue_listen(c, channel);
    return 0;
}

int
pg_query(struct pg_client *c, const char *sql, int nparams, const char *const *params,
         pg_query_fn *cb, void *arg)
{
    struct pg_item *it;
    struct timeval tv;
    int i;

    if (c->freeing)
        return -1;
    it = xcalloc(1, sizeof(*it));
    list_init(&it->node);
    it->c = c;
    it->cb = cb;
    it->arg = arg;
    if (sql == NULL || nparams < 0 || nparams > 65535 || (nparams > 0 && params == NULL)) {
        item_done(c, it, PG_ERROR, "invalid query or parameters");
        event_active(c->ev_defer, EV_TIMEOUT, 1);
        return 0;
    }
    if (c->phase != P_UP) {
        char msg[600];

        snprintf(msg, sizeof(msg), "not connected (%s%s%s)", pg_state_name(pg_state(c)),
                 c->last_reason[0] != '\0' ? ": " : "", c->last_reason);
        item_done(c, it, PG_NOT_CONNECTED, msg);
        event_active(c->ev_defer, EV_TIMEOUT, 1);
        return 0;
    }
    if (c->nqueued >= c->max_queue) {
        char msg[64];

        snprintf(msg, sizeof(msg), "%u queries are waiting already", c->nqueued);
        item_done(c, it, PG_BUSY, msg);
        event_active(c->ev_defer, EV_TIMEOUT, 1);
        return 0;
    }
    it->sql = xstrdup(sql);
    it->nparams = nparams;
    if (nparams > 0) {
        it->params = xcalloc((size_t)nparams, sizeof(*it->params));
        for (i = 0; i < nparams; i++)
            it->params[i] = params[i] != NULL ? xstrdup(params[i]) : NULL;
    }
    tv = ms_tv(c->statement_timeout_ms);
    it->timer = evtimer_new(c->base, on_item_timer, it);
    if (it->timer == NULL || evtimer_add(it->timer, &tv) < 0) {
        item_done(c, it, PG_ERROR, "cannot add the statement timer");
        event_active(c->ev_defer, EV_TIMEOUT, 1);
        return 0;
    }
    it->counted = true;
    c->nqueued++;
    list_append(&c->queue, &it->node);
    event_active(c->ev_defer, EV_TIMEOUT, 1);   /* sent from the loop: see pump() */
    return 0;
}

/* PG_CLOSED to <it>, taken off its list. */
static void
abandon(struct pg_client *c, struct pg_item *it)
{
    struct pg_reply r = { PG_CLOSED, NULL, "client closed", "" };

    item_call(c, it, &r);
}

void
pg_free(struct pg_client *c)
{
    struct pg_item *it;

    if (c == NULL || c->freeing)
        return;
    c->freeing = true;
    enter(c);
    if (c->pq != NULL && c->phase == P_UP)
        log_kv(LL_INFO, "pg", "pg_closed", "client", c->name, NULL);
    session_close(c);
    evtimer_del(c->ev_retry);
    event_del(c->ev_defer);
    if (c->inflight != NULL) {
        it = c->inflight;
        c->inflight = NULL;
        abandon(c, it);
    }
    while (!list_empty(&c->queue)) {
        it = list_entry(c->queue.next, struct pg_item, node);
        list_unlink(&it->node);
        abandon(c, it);
    }
    while (!list_empty(&c->done)) {
        it = list_entry(c->done.next, struct pg_item, node);
        list_unlink(&it->node);
        abandon(c, it);
    }
    leave(c);
}

/* ---- replies --------------------------------------------------------------- */

enum pg_outcome
pg_reply_outcome(const struct pg_reply *r)
{
    return r->outcome;
}

int
pg_reply_rows(const struct pg_reply *r)
{
    return r->outcome == PG_OK && r->res != NULL ? PQntuples(r->res) : 0;
}

int
pg_reply_cols(const struct pg_reply *r)
{
    return r->outcome == PG_OK && r->res != NULL ? PQnfields(r->res) : 0;
}

static bool
in_range(const struct pg_reply *r, int row, int col)
{
    return r->outcome == PG_OK && r->res != NULL && row >= 0 && col >= 0 &&
           row < PQntuples(r->res) && col < PQnfields(r->res);
}

const char *
pg_reply_value(const struct pg_reply *r, int row, int col)
{
    if (!in_range(r, row, col) || PQgetisnull(r->res, row, col))
        return NULL;
    return PQgetvalue(r->res, row, col);
}

bool
pg_reply_isnull(const struct pg_reply *r, int row, int col)
{
    return !in_range(r, row, col) || PQgetisnull(r->res, row, col);
}

long
pg_reply_affected(const struct pg_reply *r)
{
    const char *s;

    if (r->outcome != PG_OK || r->res == NULL)
        return -1;
    s = PQcmdTuples((PGresult *)r->res);
    return s != NULL && s[0] != '\0' ? strtol(s, NULL, 10) : -1;
}

const char *
pg_reply_error(const struct pg_reply *r)
{
    return r->outcome == PG_OK ? "" : r->error;
}

const char *
pg_reply_sqlstate(const struct pg_reply *r)
{
    return r->outcome == PG_ERROR ? r->sqlstate : "";
}
