/*
 * lib/pg_session: the PostgreSQL client and its session (see lib/pg.h for
 * the rules it keeps, lib/pg_int.h for the client's states and how it shares
 * the client with lib/pg_query.c): pg_new(), pg_start() and pg_free(); an
 * attempt (the host name resolved with evdns, PQconnectStartParams and
 * PQconnectPoll on the socket's events, the password file, the keepalives);
 * the setup statements (SET and LISTEN) and going up; the end of a session
 * or an attempt, the backoff before the next one, and the state callback.
 *
 * Every event handler of the client is here, between enter() and leave(),
 * and it alone ends a session: the functions of pg_query.c it calls report
 * a broken session as a struct pg_end instead of ending it themselves.
 */
#include "lib/pg_int.h"

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
#include "lib/pg.h"
#include "lib/timeval.h"
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

static void on_retry(evutil_socket_t fd, short what, void *arg);
static void on_deadline(evutil_socket_t fd, short what, void *arg);
static void on_defer(evutil_socket_t fd, short what, void *arg);
static void on_poll(evutil_socket_t fd, short what, void *arg);
static void on_read(evutil_socket_t fd, short what, void *arg);
static void on_write(evutil_socket_t fd, short what, void *arg);
static void on_item_timer(evutil_socket_t fd, short what, void *arg);
static void on_resolved(int result, struct evutil_addrinfo *ai, void *arg);
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

static char *
dup_or_null(const char *s)
{
    return s != NULL && s[0] != '\0' ? xstrdup(s) : NULL;
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

enum pg_state
pg_state(const struct pg_client *c)
{
    return pg_phase_state(c->phase);
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
    event_free(c->ev_retry);
    event_free(c->ev_deadline);
    event_free(c->ev_defer);
    if (c->dns != NULL)
        dns_release(c->dns);
    pgq_free_listeners(c);
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
    c->has_end = false;                /* this is the end it announced */
    session_close(c);

    snprintf(failure, sizeof(failure), "connection lost: %s", reason);
    pgq_session_ended(c, inflight, inflight == PG_LOST ? failure : reason, failure);

    if (lost && mono_ms() - c->up_since_ms >= c->backoff_cap_ms)
        c->backoff_attempt = 0;
    delay = pg_backoff_ms(c->backoff_attempt, c->backoff_base_ms, c->backoff_cap_ms, &c->rng);
    if (c->backoff_attempt < 64)
        c->backoff_attempt++;
    if (!lost)
        c->failed++;
    c->phase = P_WAIT;
    tv = tv_ms(delay);
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
    pgq_deliver(c);
}

/* Ends the session for the reason a function of pg_query.c found. */
static void
session_end_by(struct pg_client *c, const struct pg_end *e)
{
    session_end(c, e->inflight, "%s", e->reason);
}

static void
go_up(struct pg_client *c)
{
    struct pg_state_info st;
    struct pg_end e;
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
    if (!c->freeing && !pgq_pump(c, &e))
        session_end_by(c, &e);
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
                pgq_one_line(buf, sizeof(buf), PQerrorMessage(c->pq));
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
    struct pg_end e;

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
        pgq_one_line(msg, sizeof(msg), PQerrorMessage(c->pq));
        session_end(c, PG_LOST, "%s", msg);
        return;
    }
    free(sql);
    if (!pgq_flush(c, &e))
        session_end_by(c, &e);
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
        pgq_one_line(msg, sizeof(msg), PQerrorMessage(c->pq));
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
                pgq_one_line(c->setup_error, sizeof(c->setup_error),
                             PQresultErrorMessage(res));
            break;
        }
        PQclear(res);
    }
}

/* ---- the socket, the deferred answers, the deadlines ----------------------- */

/* The socket in P_SETUP and P_UP: the setup statements' results, the
 * queries' results, notifications. */
static void
on_read(evutil_socket_t fd, short what, void *arg)
{
    struct pg_client *c = arg;
    struct pg_end e;
    char msg[512];

    (void)fd;
    (void)what;
    enter(c);
    if (!PQconsumeInput(c->pq)) {
        /* parses what came before the end: a FATAL the server sent when
         * idle goes to on_notice() and makes the reason */
        (void)PQisBusy(c->pq);
        pgq_one_line(msg, sizeof(msg), PQerrorMessage(c->pq));
        session_end(c, PG_LOST, "%s", msg);
        goto out;
    }
    if (c->writing && !pgq_flush(c, &e)) {
        session_end_by(c, &e);
        goto out;
    }
    if (c->phase == P_SETUP)
        setup_results(c);
    else if (!pgq_results(c, &e))
        session_end_by(c, &e);
    if (!c->freeing && c->pq != NULL && PQstatus(c->pq) == CONNECTION_BAD) {
        pgq_one_line(msg, sizeof(msg), PQerrorMessage(c->pq));
        session_end(c, PG_LOST, "%s", msg);
        goto out;
    }
    pgq_notifications(c);
out:
    leave(c);
}

static void
on_write(evutil_socket_t fd, short what, void *arg)
{
    struct pg_client *c = arg;
    struct pg_end e;

    (void)fd;
    (void)what;
    enter(c);
    if (!pgq_flush(c, &e))
        session_end_by(c, &e);
    leave(c);
}

/* Answers due (c->done) and the next query to send, from the loop. */
static void
on_defer(evutil_socket_t fd, short what, void *arg)
{
    struct pg_client *c = arg;
    struct pg_end e;

    (void)fd;
    (void)what;
    enter(c);
    pgq_deliver(c);
    if (c->has_end && !c->freeing) {
        c->has_end = false;            /* a send of pg_query() failed */
        session_end_by(c, &c->end);
    } else if (!pgq_pump(c, &e)) {
        session_end_by(c, &e);
    }
    leave(c);
}

/* A query's deadline: c->deadline_cb, the timer pg_query() set. */
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
        pgq_item_done(c, it, PG_TIMEOUT, msg);
        pgq_deliver(c);
    }
    leave(c);
}

static void
on_notice(void *arg, const char *message)
{
    struct pg_client *c = arg;
    char line[256];

    pgq_one_line(line, sizeof(line), message);
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
        pgq_one_line(msg, sizeof(msg), PQerrorMessage(c->pq));
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
        pgq_one_line(err, sizeof(err), PQerrorMessage(c->pq));
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
    struct timeval tv = tv_ms(c->connect_timeout_ms);

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
    c->deadline_cb = on_item_timer;
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

void
pg_free(struct pg_client *c)
{
    if (c == NULL || c->freeing)
        return;
    c->freeing = true;
    enter(c);
    if (c->pq != NULL && c->phase == P_UP)
        log_kv(LL_INFO, "pg", "pg_closed", "client", c->name, NULL);
    session_close(c);
    evtimer_del(c->ev_retry);
    event_del(c->ev_defer);
    pgq_close_all(c);
    leave(c);
}
