/*
 * tests/unit/test_lib_pg.c: the asynchronous PostgreSQL client (lib/pg.h)
 * against a real PostgreSQL: a private cluster started by tests/harness/pg.c
 * on a unix socket in a temporary directory (it fails, and says why, when
 * PostgreSQL is not installed). Each test runs its own libevent loop, and
 * every wait is bounded.
 *
 * Covered: the backoff schedule (pure, no server); a query before the client
 * is up fails fast and later; connect, session settings, parameters and
 * values; FIFO and the queue bound; SQL errors with SQLSTATE; the statement
 * timeout (the session is reset and comes back, the server stops the
 * statement); a 10 ms timer keeps its pace while a 1 s statement runs;
 * LISTEN/NOTIFY; wrong password, missing password file and unknown
 * database; a host name (resolved by evdns) and a server that never answers
 * (connect timeout); pg_free() with queries pending and from callbacks; the
 * server shut down, then killed with SIGKILL, and restarted: down, backoff,
 * reconnect, LISTEN again, notifications again.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include <event2/event.h>
#include <libpq-fe.h>

#include "lib/log.h"
#include "lib/pg.h"
#include "tests/harness/pg.h"

static struct pgh *srv;                 /* the group's server */

/* ---- helpers ------------------------------------------------------------- */

static long long
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
on_wake(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

/* Runs <base> until *<counter> >= <target> or <ms> have passed. */
static bool
wait_for(struct event_base *base, const int *counter, int target, int ms)
{
    long long end = now_ms() + ms;
    struct event *wake = evtimer_new(base, on_wake, NULL);
    bool ok = true;

    assert_non_null(wake);
    while (*counter < target) {
        long long left = end - now_ms();
        struct timeval tv;

        if (left <= 0) {
            ok = false;
            break;
        }
        tv.tv_sec = (time_t)(left / 1000);
        tv.tv_usec = (suseconds_t)(left % 1000) * 1000;
        evtimer_add(wake, &tv);
        event_base_loop(base, EVLOOP_ONCE);
    }
    event_free(wake);
    return ok;
}

/* Runs <base> for <ms> whatever happens. */
static void
run_for(struct event_base *base, int ms)
{
    int never = 0;

    wait_for(base, &never, 1, ms);
}

/* What the state callback saw. */
struct watch {
    int ups, downs, losts, reconnects;
    char reason[600];                   /* the last down's */
    unsigned attempt, retry_ms[64];
    int nretry;
    bool free_on_up;                    /* pg_free() from the up callback */
};

static void
on_state(struct pg_client *c, const struct pg_state_info *st, void *arg)
{
    struct watch *w = arg;

    if (st->state == PG_STATE_UP) {
        assert_null(st->reason);
        assert_int_equal(pg_state(c), PG_STATE_UP);
        assert_true(pg_backend_pid(c) > 0);
        w->ups++;
        if (st->reconnect)
            w->reconnects++;
        if (w->free_on_up)
            pg_free(c);
        return;
    }
    assert_int_equal(st->state, PG_STATE_DOWN);
    assert_int_equal(pg_state(c), PG_STATE_DOWN);
    assert_non_null(st->reason);
    snprintf(w->reason, sizeof(w->reason), "%s", st->reason);
    w->downs++;
    if (st->lost)
        w->losts++;
    w->attempt = st->attempt;
    if (w->nretry < 64)
        w->retry_ms[w->nretry++] = st->retry_ms;
}

/* One query's reply, copied. */
struct qres {
    int done;
    int order;                          /* completion order, from 1 */
    enum pg_outcome outcome;
    int rows, cols;
    char val[4][4][64];
    bool isnull[4][4];
    long affected;
    char error[600], sqlstate[8];
    long long at_ms;
    struct pg_client *free_client;      /* pg_free() this from the callback */
    int requery_rc;                     /* pg_query() from the callback: its return */
    bool requery;
};

static int completions;

static void
on_query(struct pg_client *c, const struct pg_reply *r, void *arg)
{
    struct qres *q = arg;
    int i, j;

    assert_int_equal(q->done, 0);       /* exactly once */
    q->done = 1;
    q->order = ++completions;
    q->at_ms = now_ms();
    q->outcome = pg_reply_outcome(r);
    q->rows = pg_reply_rows(r);
    q->cols = pg_reply_cols(r);
    for (i = 0; i < 4; i++)
        for (j = 0; j < 4; j++) {
            const char *v = pg_reply_value(r, i, j);

            q->isnull[i][j] = pg_reply_isnull(r, i, j);
            snprintf(q->val[i][j], sizeof(q->val[i][j]), "%s", v != NULL ? v : "");
        }
    q->affected = pg_reply_affected(r);
    assert_non_null(pg_reply_error(r));
    snprintf(q->error, sizeof(q->error), "%s", pg_reply_error(r));
    snprintf(q->sqlstate, sizeof(q->sqlstate), "%s", pg_reply_sqlstate(r));
    if (q->requery) {
        q->requery = false;             /* once */
        q->requery_rc = pg_query(c, "SELECT 1", 0, NULL, on_query, q);
    }
    if (q->free_client != NULL)
        pg_free(q->free_client);
}

/* The usual settings for the group's server. */
static void
conf_for(struct pg_conf *cf)
{
    memset(cf, 0, sizeof(*cf));
    cf->name = "test";
    cf->host = pgh_host(srv);
    cf->port = pgh_port(srv);
    cf->dbname = "postgres";
    cf->user = "postgres";
    cf->application_name = "cutover-test";
    cf->connect_timeout_ms = 5000;
    cf->statement_timeout_ms = 5000;
    cf->backoff_base_ms = 50;
    cf->backoff_cap_ms = 1000;
    cf->seed = 7;
}

/* A client on <base> with <cf>, started and up. */
static struct pg_client *
up_client(struct event_base *base, const struct pg_conf *cf, struct watch *w)
{
    struct pg_client *c = pg_new(base, cf, on_state, w);

    assert_non_null(c);
    assert_int_equal(pg_start(c), 0);
    if (!wait_for(base, &w->ups, 1, 10000))
        fail_msg("not up within 10 s: %s", w->reason);
    return c;
}

/* Runs <sql> on <c> and waits (bounded) for the reply in <q>. */
static void
query_wait(struct event_base *base, struct pg_client *c, struct qres *q, const char *sql,
           int nparams, const char *const *params, int ms)
{
    memset(q, 0, sizeof(*q));
    assert_int_equal(pg_query(c, sql, nparams, params, on_query, q), 0);
    if (!wait_for(base, &q->done, 1, ms))
        fail_msg("no reply to \"%s\" within %d ms", sql, ms);
}

/* Frees <c> and lets the loop settle (deferred libevent callbacks). */
static void
client_done(struct event_base *base, struct pg_client *c)
{
    pg_free(c);
    run_for(base, 20);
}

/* ---- the schedule (no server) --------------------------------------------- */

static void
test_backoff_schedule(void **state)
{
    unsigned a[16], b[16], n, i, max_at_cap = 0;
    uint64_t r1 = 42, r2 = 42, r3 = 43;
    bool differs = false;
    double sum = 0;

    (void)state;
    for (n = 0; n < 16; n++) {
        unsigned ceil = 100u << (n < 6 ? n : 6);

        if (ceil > 5000)
            ceil = 5000;
        a[n] = pg_backoff_ms(n, 100, 5000, &r1);
        b[n] = pg_backoff_ms(n, 100, 5000, &r2);
        assert_int_equal(a[n], b[n]);               /* same seed, same schedule */
        assert_true(a[n] <= ceil);                  /* full jitter under the ceiling */
        if (pg_backoff_ms(n, 100, 5000, &r3) != a[n])
            differs = true;
    }
    assert_true(differs);                           /* another seed, another schedule */
    /* at the cap: uniform over [0, cap] */
    for (i = 0; i < 2000; i++) {
        unsigned d = pg_backoff_ms(30, 100, 5000, &r1);

        assert_true(d <= 5000);
        sum += d;
        if (d > max_at_cap)
            max_at_cap = d;
    }
    assert_true(max_at_cap >= 4900);
    assert_true(sum / 2000 > 2200 && sum / 2000 < 2800);
    /* huge attempt numbers do not overflow */
    assert_true(pg_backoff_ms(1000000, 100, 5000, &r1) <= 5000);
    assert_true(pg_backoff_ms(3, 0, 0, &r1) == 0);
}

static void
test_not_connected_fails_later(void **state)
{
    struct event_base *base = event_base_new();
    struct pg_conf cf;
    struct pg_client *c;
    struct qres q;

    (void)state;
    memset(&cf, 0, sizeof(cf));
    cf.host = "/nonexistent-dir";
    c = pg_new(base, &cf, NULL, NULL);
    assert_non_null(c);
    assert_int_equal(pg_state(c), PG_STATE_DOWN);
    assert_int_equal(pg_backend_pid(c), 0);
    memset(&q, 0, sizeof(q));
    assert_int_equal(pg_query(c, "SELECT 1", 0, NULL, on_query, &q), 0);
    assert_int_equal(q.done, 0);                    /* never from inside pg_query() */
    assert_true(wait_for(base, &q.done, 1, 1000));
    assert_int_equal(q.outcome, PG_NOT_CONNECTED);
    assert_non_null(strstr(q.error, "not connected"));
    assert_string_equal(pg_outcome_name(q.outcome), "not connected");
    client_done(base, c);
    event_base_free(base);
}

/* ---- with the server ------------------------------------------------------- */

static void
test_connect_query(void **state)
{
    struct event_base *base = event_base_new();
    struct pg_conf cf;
    struct watch w = { 0 };
    struct pg_client *c;
    struct qres q;
    const char *params[] = { "41", "h\xc3\xa9llo 'quoted'", NULL };

    (void)state;
    conf_for(&cf);
    c = up_client(base, &cf, &w);
    assert_int_equal(w.reconnects, 0);
    assert_int_equal(w.downs, 0);

    query_wait(base, c, &q, "SELECT $1::int + 1, $2::text, $3::text, 'x'", 3, params, 5000);
    assert_int_equal(q.outcome, PG_OK);
    assert_int_equal(q.rows, 1);
    assert_int_equal(q.cols, 4);
    assert_string_equal(q.val[0][0], "42");
    assert_string_equal(q.val[0][1], "h\xc3\xa9llo 'quoted'");
    assert_true(q.isnull[0][2]);
    assert_false(q.isnull[0][1]);
    assert_true(q.isnull[0][3] == false && strcmp(q.val[0][3], "x") == 0);
    assert_true(q.isnull[1][0]);                    /* out of range */
    assert_string_equal(q.error, "");
    assert_string_equal(q.sqlstate, "");
    assert_int_equal(q.affected, 1);

    query_wait(base, c, &q, "SELECT g FROM generate_series(1, 3) g", 0, NULL, 5000);
    assert_int_equal(q.rows, 3);
    assert_string_equal(q.val[2][0], "3");

    /* the session's settings */
    query_wait(base, c,
               &q, "SELECT current_setting('application_name'), "
               "current_setting('statement_timeout'), "
               "current_setting('client_connection_check_interval')", 0, NULL, 5000);
    assert_int_equal(q.outcome, PG_OK);
    assert_string_equal(q.val[0][0], "cutover-test");
    assert_string_equal(q.val[0][1], "5500ms");    /* the client's timeout + 500 ms */
    assert_string_equal(q.val[0][2], "1s");

    /* commands: affected rows */
    query_wait(base, c, &q, "CREATE TEMP TABLE t (k int primary key, v text)", 0, NULL, 5000);
    assert_int_equal(q.outcome, PG_OK);
    assert_int_equal(q.affected, -1);
    query_wait(base, c, &q, "INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 5) g",
               0, NULL, 5000);
    assert_int_equal(q.affected, 5);
    {
        const char *p[] = { "3" };

        query_wait(base, c, &q, "UPDATE t SET v = 'new' WHERE k >= $1", 1, p, 5000);
        assert_int_equal(q.affected, 3);
    }
    /* 8 MiB of parameter: more than the socket takes at once, so the
     * query goes out in pieces, on EV_WRITE */
    {
        size_t big = 8u << 20;
        char *text = malloc(big + 1);
        const char *p[1];

        assert_non_null(text);
        memset(text, 'a', big);
        text[big] = '\0';
        p[0] = text;
        query_wait(base, c, &q, "SELECT length($1), md5($1) = md5(repeat('a', 8388608))",
                   1, p, 10000);
        free(text);
        assert_int_equal(q.outcome, PG_OK);
        assert_string_equal(q.val[0][0], "8388608");
        assert_string_equal(q.val[0][1], "t");
    }
    /* an empty statement is not an error */
    query_wait(base, c, &q, "", 0, NULL, 5000);
    assert_int_equal(q.outcome, PG_OK);
    client_done(base, c);
    event_base_free(base);
}

static void
test_fifo_and_queue_bound(void **state)
{
    struct event_base *base = event_base_new();
    struct pg_conf cf;
    struct watch w = { 0 };
    struct pg_client *c;
    struct qres q[5];
    int i;

    (void)state;
    conf_for(&cf);
    cf.max_queue = 4;
    c = up_client(base, &cf, &w);
    memset(q, 0, sizeof(q));
    completions = 0;
    for (i = 0; i < 5; i++) {
        char sql[64];

        snprintf(sql, sizeof(sql), "SELECT %d, pg_sleep(0.02)", i);
        assert_int_equal(pg_query(c, sql, 0, NULL, on_query, &q[i]), 0);
    }
    assert_true(wait_for(base, &q[3].done, 1, 5000));
    assert_true(wait_for(base, &q[4].done, 1, 1000));
    assert_int_equal(q[4].outcome, PG_BUSY);       /* the fifth: over max_queue */
    assert_int_equal(q[4].order, 1);               /* and told at once */
    for (i = 0; i < 4; i++) {
        char want[16];

        snprintf(want, sizeof(want), "%d", i);
        assert_int_equal(q[i].outcome, PG_OK);
        assert_string_equal(q[i].val[0][0], want);
        assert_int_equal(q[i].order, i + 2);        /* in order of submission */
    }
    /* the queue has room again; a query from a callback runs next */
    memset(q, 0, sizeof(q));
    q[0].requery = true;
    assert_int_equal(pg_query(c, "SELECT 'first'", 0, NULL, on_query, &q[0]), 0);
    assert_true(wait_for(base, &q[0].done, 1, 5000));
    assert_int_equal(q[0].requery_rc, 0);
    q[0].done = 0;                                 /* the requery reuses it */
    assert_true(wait_for(base, &q[0].done, 1, 5000));
    assert_int_equal(q[0].outcome, PG_OK);
    assert_string_equal(q[0].val[0][0], "1");
    client_done(base, c);
    event_base_free(base);
}

static void
test_sql_error(void **state)
{
    struct event_base *base = event_base_new();
    struct pg_conf cf;
    struct watch w = { 0 };
    struct pg_client *c;
    struct qres q;
    const char *bad[] = { "not a number" };

    (void)state;
    conf_for(&cf);
    c = up_client(base, &cf, &w);
    query_wait(base, c, &q, "SELECT * FROM no_such_table", 0, NULL, 5000);
    assert_int_equal(q.outcome, PG_ERROR);
    assert_string_equal(q.sqlstate, "42P01");
    assert_string_equal(q.error, "relation \"no_such_table\" does not exist");
    assert_int_equal(q.rows, 0);
    assert_int_equal(q.affected, -1);

    query_wait(base, c, &q, "SELECT 1 / 0", 0, NULL, 5000);
    assert_string_equal(q.sqlstate, "22012");
    query_wait(base, c, &q, "SELECT $1::int", 1, bad, 5000);
    assert_string_equal(q.sqlstate, "22P02");
    assert_non_null(strstr(q.error, "not a number"));
    /* one statement per query */
    query_wait(base, c, &q, "SELECT 1; SELECT 2", 0, NULL, 5000);
    assert_int_equal(q.outcome, PG_ERROR);
    /* an error after rows were sent wins over the rows */
    query_wait(base, c, &q, "SELECT 1 / (3 - g) FROM generate_series(1, 5) g", 0, NULL, 5000);
    assert_int_equal(q.outcome, PG_ERROR);
    assert_string_equal(q.sqlstate, "22012");
    /* COPY would block the protocol: refused, the session starts over */
    query_wait(base, c, &q, "COPY (SELECT 1) TO STDOUT", 0, NULL, 5000);
    assert_int_equal(q.outcome, PG_ERROR);
    assert_non_null(strstr(q.error, "COPY"));
    assert_true(wait_for(base, &w.ups, 2, 5000));

    /* of all these, only COPY cost the session */
    assert_int_equal(w.downs, 1);
    query_wait(base, c, &q, "SELECT 'still here'", 0, NULL, 5000);
    assert_int_equal(q.outcome, PG_OK);
    assert_string_equal(q.val[0][0], "still here");
    client_done(base, c);
    event_base_free(base);
}

static void
test_statement_timeout(void **state)
{
    struct event_base *base = event_base_new();
    struct pg_conf cf;
    struct watch w = { 0 };
    struct pg_client *c;
    struct qres q, queued;
    long long t0;
    int pid, left = -1;

    (void)state;
    conf_for(&cf);
    cf.statement_timeout_ms = 300;
    c = up_client(base, &cf, &w);
    pid = pg_backend_pid(c);

    memset(&q, 0, sizeof(q));
    memset(&queued, 0, sizeof(queued));
    t0 = now_ms();
    assert_int_equal(pg_query(c, "SELECT pg_sleep(5)", 0, NULL, on_query, &q), 0);
    assert_int_equal(pg_query(c, "SELECT 'behind'", 0, NULL, on_query, &queued), 0);
    assert_true(wait_for(base, &q.done, 1, 3000));
    assert_int_equal(q.outcome, PG_TIMEOUT);
    assert_string_equal(q.error, "statement timeout after 300 ms");
    assert_true(q.at_ms - t0 >= 290);
    assert_true(q.at_ms - t0 < 1500);
    /* the session was given up; the one behind lost it too */
    assert_true(wait_for(base, &queued.done, 1, 1000));
    assert_int_equal(queued.outcome, PG_LOST);
    assert_int_equal(w.losts, 1);
    assert_string_equal(w.reason, "statement timeout after 300 ms");

    /* it comes back, and the next query works */
    assert_true(wait_for(base, &w.ups, 2, 5000));
    assert_int_equal(w.reconnects, 1);
    assert_true(pg_backend_pid(c) != pid);
    query_wait(base, c, &q, "SELECT 'after'", 0, NULL, 5000);
    assert_int_equal(q.outcome, PG_OK);
    assert_string_equal(q.val[0][0], "after");

    /* the server stopped the abandoned statement too */
    for (t0 = now_ms(); now_ms() - t0 < 5000; run_for(base, 100)) {
        char p[16];
        const char *params[] = { p };

        snprintf(p, sizeof(p), "%d", pid);
        query_wait(base, c, &q, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", 1,
                   params, 5000);
        assert_int_equal(q.outcome, PG_OK);
        left = atoi(q.val[0][0]);
        if (left == 0)
            break;
    }
    assert_int_equal(left, 0);
    client_done(base, c);
    event_base_free(base);
}

/* A 10 ms timer that records how late it ran. */
struct ticker {
    struct event *ev;
    long long last, max_gap;
    int ticks;
};

static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct ticker *t = arg;
    long long now = now_ms();

    (void)fd;
    (void)what;
    if (t->last != 0 && now - t->last > t->max_gap)
        t->max_gap = now - t->last;
    t->last = now;
    t->ticks++;
}

static void
test_never_blocks(void **state)
{
    struct event_base *base = event_base_new();
    struct timeval ten = { 0, 10000 };
    struct ticker t = { 0 };
    struct pg_conf cf;
    struct watch w = { 0 };
    struct pg_client *c;
    struct qres q;
    long long t0;

    (void)state;
    t.ev = event_new(base, -1, EV_PERSIST, on_tick, &t);
    evtimer_add(t.ev, &ten);
    conf_for(&cf);
    /* connecting is watched too */
    c = up_client(base, &cf, &w);
    memset(&q, 0, sizeof(q));
    t0 = now_ms();
    t.ticks = 0;
    t.max_gap = 0;
    t.last = 0;
    assert_int_equal(pg_query(c, "SELECT pg_sleep(1)", 0, NULL, on_query, &q), 0);
    assert_true(wait_for(base, &q.done, 1, 5000));
    assert_int_equal(q.outcome, PG_OK);
    assert_true(q.at_ms - t0 >= 990);
    print_message("      %d ticks of 10 ms during a 1 s statement, longest gap %lld ms\n",
                  t.ticks, t.max_gap);
    /* blocked, the loop would have ticked once, a second late */
    assert_true(t.ticks >= 50);
    assert_true(t.max_gap < 250);
    event_free(t.ev);
    client_done(base, c);
    event_base_free(base);
}

/* What a listener saw. */
struct notes {
    int n;
    char channel[64], payload[256];
    int pid;
};

static void
on_note(struct pg_client *c, const char *channel, const char *payload, int pid, void *arg)
{
    struct notes *n = arg;

    (void)c;
    n->n++;
    snprintf(n->channel, sizeof(n->channel), "%s", channel);
    snprintf(n->payload, sizeof(n->payload), "%s", payload);
    n->pid = pid;
}

/* NOTIFY from a connection of its own; returns the sender's backend pid. */
static int
notify_from_outside(const char *sql)
{
    PGconn *s = PQconnectdb(pgh_conninfo(srv));
    PGresult *res;
    int pid;

    assert_int_equal(PQstatus(s), CONNECTION_OK);
    pid = PQbackendPID(s);
    res = PQexec(s, sql);
    assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    PQfinish(s);
    return pid;
}

static void
test_listen_notify(void **state)
{
    struct event_base *base = event_base_new();
    struct pg_conf cf;
    struct watch w = { 0 };
    struct pg_client *c;
    struct notes a = { 0 }, a2 = { 0 }, b = { 0 }, late = { 0 };
    struct qres q;
    const char *params[] = { "cutover_a", "from myself" };
    int pid;

    (void)state;
    conf_for(&cf);
    c = pg_new(base, &cf, on_state, &w);
    assert_non_null(c);
    assert_int_equal(pg_listen(c, "cutover_a", on_note, &a), 0);
    assert_int_equal(pg_listen(c, "cutover_a", on_note, &a2), 0);
    assert_int_equal(pg_listen(c, "Cutover B", on_note, &b), 0);
    assert_int_equal(pg_listen(c, "", on_note, &b), -1);
    assert_int_equal(pg_listen(c, "x234567890123456789012345678901234567890123456789012345678901234",
                               on_note, &b), -1);          /* 64 bytes */
    assert_int_equal(pg_start(c), 0);
    assert_true(wait_for(base, &w.ups, 1, 10000));

    /* listening from the up callback on */
    pid = notify_from_outside("NOTIFY cutover_a, 'hello'");
    assert_true(wait_for(base, &a.n, 1, 5000));
    assert_string_equal(a.channel, "cutover_a");
    assert_string_equal(a.payload, "hello");
    assert_int_equal(a.pid, pid);
    assert_true(wait_for(base, &a2.n, 1, 1000));    /* both listeners */
    assert_int_equal(b.n, 0);

    /* a quoted channel name, and an empty payload */
    notify_from_outside("NOTIFY \"Cutover B\"");
    assert_true(wait_for(base, &b.n, 1, 5000));
    assert_string_equal(b.channel, "Cutover B");
    assert_string_equal(b.payload, "");

    /* our own NOTIFY, through a parameterised query */
    query_wait(base, c, &q, "SELECT pg_notify($1, $2)", 2, params, 5000);
    assert_int_equal(q.outcome, PG_OK);
    assert_true(wait_for(base, &a.n, 2, 5000));
    assert_string_equal(a.payload, "from myself");
    assert_int_equal(a.pid, pg_backend_pid(c));

    /* a channel added while up is listened to once its LISTEN ran */
    assert_int_equal(pg_listen(c, "cutover_late", on_note, &late), 0);
    query_wait(base, c, &q, "SELECT 1", 0, NULL, 5000);    /* behind the LISTEN */
    notify_from_outside("NOTIFY cutover_late, 'late'");
    assert_true(wait_for(base, &late.n, 1, 5000));
    assert_string_equal(late.payload, "late");
    assert_int_equal(w.downs, 0);
    client_done(base, c);
    event_base_free(base);
}

/* A file with <text> in a new directory; the path in <path>. */
static void
write_temp(char *path, size_t len, char *dir, const char *text)
{
    FILE *f;

    assert_non_null(mkdtemp(dir));
    snprintf(path, len, "%s/password", dir);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void
test_auth_and_database(void **state)
{
    struct event_base *base = event_base_new();
    char dir[] = "/tmp/test_lib_pg.XXXXXX", path[128];
    struct pg_conf cf;
    struct watch w = { 0 };
    struct pg_client *c;
    struct qres q;
    FILE *f;

    (void)state;
    assert_int_equal(pgh_exec(srv, "DROP ROLE IF EXISTS app"), 0);
    assert_int_equal(pgh_exec(srv, "CREATE ROLE app LOGIN PASSWORD 'secret'"), 0);
    write_temp(path, sizeof(path), dir, "wrong\n");

    conf_for(&cf);
    cf.user = "app";
    cf.password_file = path;
    cf.backoff_cap_ms = 200;
    c = pg_new(base, &cf, on_state, &w);
    assert_int_equal(pg_start(c), 0);
    assert_true(wait_for(base, &w.downs, 2, 10000));
    assert_non_null(strstr(w.reason, "password authentication failed for user \"app\""));
    assert_null(strstr(w.reason, "wrong"));                 /* never the password */
    assert_int_equal(w.ups, 0);
    assert_int_equal(w.losts, 0);
    assert_true(w.attempt >= 2);

    /* the file is read at every attempt: fixed, the next one gets in */
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("secret\n", f);
    fclose(f);
    assert_true(wait_for(base, &w.ups, 1, 5000));
    query_wait(base, c, &q, "SELECT current_user", 0, NULL, 5000);
    assert_string_equal(q.val[0][0], "app");
    client_done(base, c);

    /* no password file */
    memset(&w, 0, sizeof(w));
    unlink(path);
    c = pg_new(base, &cf, on_state, &w);
    assert_int_equal(pg_start(c), 0);
    assert_true(wait_for(base, &w.downs, 1, 5000));
    assert_non_null(strstr(w.reason, "password_file"));
    assert_non_null(strstr(w.reason, "No such file"));
    client_done(base, c);
    rmdir(dir);

    /* unknown database */
    memset(&w, 0, sizeof(w));
    conf_for(&cf);
    cf.dbname = "no_such_db";
    c = pg_new(base, &cf, on_state, &w);
    assert_int_equal(pg_start(c), 0);
    assert_true(wait_for(base, &w.downs, 1, 5000));
    assert_non_null(strstr(w.reason, "database \"no_such_db\" does not exist"));
    /* while down, queries fail fast and say why */
    query_wait(base, c, &q, "SELECT 1", 0, NULL, 1000);
    assert_int_equal(q.outcome, PG_NOT_CONNECTED);
    assert_non_null(strstr(q.error, "no_such_db"));
    client_done(base, c);
    event_base_free(base);
}

/* A loopback TCP listener that never accepts: the handshake completes in
 * the kernel, and nobody ever answers. Its port in *<port>. */
static int
silent_listener(int *port)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(fd, 8), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    *port = ntohs(sin.sin_port);
    return fd;
}

static void
test_host_name_and_connect_timeout(void **state)
{
    struct event_base *base = event_base_new();
    struct pg_conf cf;
    struct watch w = { 0 };
    struct pg_client *c;
    char port[16];
    int fd, p, i;
    long long t0;

    (void)state;
    /* a name goes through the resolver; nobody listens on the port */
    fd = silent_listener(&p);
    close(fd);
    snprintf(port, sizeof(port), "%d", p);
    conf_for(&cf);
    cf.host = "localhost";
    cf.port = port;
    c = pg_new(base, &cf, on_state, &w);
    assert_int_equal(pg_start(c), 0);
    assert_true(wait_for(base, &w.downs, 1, 5000));
    assert_non_null(strstr(w.reason, "refused"));
    assert_non_null(strstr(w.reason, "\"127.0.0.1\""));     /* the resolved address */
    client_done(base, c);

    /* a name that does not resolve: the resolver says so, or (no DNS server
     * answers) the connect timeout ends the attempt, or (a wildcard search
     * domain) the connect fails */
    memset(&w, 0, sizeof(w));
    conf_for(&cf);
    cf.host = "no-such-host.invalid";
    cf.connect_timeout_ms = 1000;
    c = pg_new(base, &cf, on_state, &w);
    assert_int_equal(pg_start(c), 0);
    assert_true(wait_for(base, &w.downs, 1, 5000));
    print_message("      %s\n", w.reason);
    assert_true(strstr(w.reason, "cannot resolve no-such-host.invalid") != NULL ||
                strcmp(w.reason, "connect timeout after 1000 ms") == 0 ||
                strstr(w.reason, "failed") != NULL);
    assert_int_equal(w.ups, 0);
    client_done(base, c);
    /* freed while its lookup runs (the resolver is freed after the lookup's
     * cancelled callback, which comes later) */
    c = pg_new(base, &cf, on_state, &w);
    assert_int_equal(pg_start(c), 0);
    for (i = 0; i < 100 && pg_state(c) != PG_STATE_CONNECTING; i++)
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    assert_int_equal(pg_state(c), PG_STATE_CONNECTING);
    pg_free(c);
    run_for(base, 50);

    /* a server that accepts and never answers: the connect timeout */
    memset(&w, 0, sizeof(w));
    fd = silent_listener(&p);
    snprintf(port, sizeof(port), "%d", p);
    conf_for(&cf);
    cf.host = "127.0.0.1";
    cf.port = port;
    cf.connect_timeout_ms = 300;
    c = pg_new(base, &cf, on_state, &w);
    t0 = now_ms();
    assert_int_equal(pg_start(c), 0);
    assert_true(wait_for(base, &w.downs, 1, 3000));
    assert_string_equal(w.reason, "connect timeout after 300 ms");
    assert_true(now_ms() - t0 >= 290 && now_ms() - t0 < 1500);
    assert_int_equal(w.attempt, 1);
    assert_int_equal(w.losts, 0);
    client_done(base, c);
    close(fd);
    event_base_free(base);
}

static void
test_free_with_pending(void **state)
{
    struct event_base *base = event_base_new();
    struct pg_conf cf;
    struct watch w = { 0 };
    struct pg_client *c;
    struct qres q[3];
    int i;

    (void)state;
    conf_for(&cf);
    c = up_client(base, &cf, &w);
    memset(q, 0, sizeof(q));
    completions = 0;
    q[0].requery = true;                            /* pg_query() while freeing: -1 */
    assert_int_equal(pg_query(c, "SELECT pg_sleep(5)", 0, NULL, on_query, &q[0]), 0);
    run_for(base, 50);                              /* now in flight */
    assert_int_equal(pg_query(c, "SELECT 2", 0, NULL, on_query, &q[1]), 0);
    assert_int_equal(pg_query(c, "SELECT 3", 0, NULL, on_query, &q[2]), 0);
    pg_free(c);
    for (i = 0; i < 3; i++) {
        assert_int_equal(q[i].done, 1);             /* before pg_free() returned */
        assert_int_equal(q[i].outcome, PG_CLOSED);
        assert_int_equal(q[i].order, i + 1);
    }
    assert_int_equal(q[0].requery_rc, -1);
    run_for(base, 20);

    /* pg_free() from a query's callback: the one behind is closed */
    memset(&w, 0, sizeof(w));
    memset(q, 0, sizeof(q));
    c = up_client(base, &cf, &w);
    q[0].free_client = c;
    assert_int_equal(pg_query(c, "SELECT 1", 0, NULL, on_query, &q[0]), 0);
    assert_int_equal(pg_query(c, "SELECT 2", 0, NULL, on_query, &q[1]), 0);
    assert_true(wait_for(base, &q[1].done, 1, 5000));
    assert_int_equal(q[0].outcome, PG_OK);
    assert_int_equal(q[1].outcome, PG_CLOSED);
    run_for(base, 50);                              /* nothing runs on a freed client */

    /* pg_free() from the up callback */
    memset(&w, 0, sizeof(w));
    w.free_on_up = true;
    c = pg_new(base, &cf, on_state, &w);
    assert_int_equal(pg_start(c), 0);
    assert_true(wait_for(base, &w.ups, 1, 5000));
    run_for(base, 50);

    /* pg_free() while connecting */
    memset(&w, 0, sizeof(w));
    c = pg_new(base, &cf, on_state, &w);
    assert_int_equal(pg_start(c), 0);
    run_for(base, 1);
    pg_free(c);
    run_for(base, 50);
    assert_int_equal(w.ups + w.downs, 0);
    pg_free(NULL);
    event_base_free(base);
}

static void
test_server_shutdown_and_crash(void **state)
{
    struct event_base *base = event_base_new();
    struct pg_conf cf;
    struct watch w = { 0 };
    struct pg_client *c;
    struct notes a = { 0 };
    struct qres q, during;
    long long t0;
    int i, pid;

    (void)state;
    conf_for(&cf);
    cf.backoff_base_ms = 50;
    cf.backoff_cap_ms = 400;
    c = pg_new(base, &cf, on_state, &w);
    assert_int_equal(pg_listen(c, "cutover_fleet", on_note, &a), 0);
    assert_int_equal(pg_start(c), 0);
    assert_true(wait_for(base, &w.ups, 1, 10000));

    /* a clean shutdown: the server says why it closed the session */
    assert_int_equal(pgh_stop(srv), 0);
    assert_true(wait_for(base, &w.losts, 1, 5000));
    assert_non_null(strstr(w.reason, "terminating connection due to administrator command"));
    assert_int_equal(pgh_restart(srv), 0);
    assert_true(wait_for(base, &w.ups, 2, 10000));
    assert_int_equal(w.reconnects, 1);

    /* a crash, with a statement in flight */
    memset(&during, 0, sizeof(during));
    assert_int_equal(pg_query(c, "SELECT pg_sleep(3)", 0, NULL, on_query, &during), 0);
    run_for(base, 100);
    t0 = now_ms();
    assert_int_equal(pgh_kill(srv), 0);
    assert_true(wait_for(base, &w.losts, 2, 5000));
    assert_true(now_ms() - t0 < 2000);
    assert_true(wait_for(base, &during.done, 1, 1000));
    assert_int_equal(during.outcome, PG_LOST);
    assert_non_null(strstr(during.error, "connection lost"));
    print_message("      lost: %s\n", w.reason);

    /* down: queries fail fast, attempts back off */
    query_wait(base, c, &q, "SELECT 1", 0, NULL, 1000);
    assert_int_equal(q.outcome, PG_NOT_CONNECTED);
    i = w.downs;
    assert_true(wait_for(base, &w.downs, i + 3, 5000));
    assert_true(w.attempt >= 3);
    for (i = 0; i < w.nretry; i++)
        assert_true(w.retry_ms[i] <= 400);
    assert_int_equal(pg_state(c) == PG_STATE_UP, 0);

    /* back: reconnect, LISTEN again, notifications flow again */
    assert_int_equal(pgh_restart(srv), 0);
    assert_true(wait_for(base, &w.ups, 3, 10000));
    assert_int_equal(w.reconnects, 2);
    pid = notify_from_outside("NOTIFY cutover_fleet, 'after the crash'");
    assert_true(wait_for(base, &a.n, 1, 5000));
    assert_string_equal(a.payload, "after the crash");
    assert_int_equal(a.pid, pid);
    query_wait(base, c, &q, "SELECT 'serving'", 0, NULL, 5000);
    assert_int_equal(q.outcome, PG_OK);
    client_done(base, c);
    event_base_free(base);
}

static int
group_setup(void **state)
{
    (void)state;
    srv = pgh_start();
    if (srv == NULL) {
        fprintf(stderr, "test_lib_pg: these tests need a real PostgreSQL server "
                "(the postgresql package; make deps installs it)\n");
        return -1;
    }
    return 0;
}

static int
group_teardown(void **state)
{
    (void)state;
    pgh_free(srv);
    srv = NULL;
    return 0;
}

int
main(void)
{
    const struct CMUnitTest pure[] = {
        cmocka_unit_test(test_backoff_schedule),
        cmocka_unit_test(test_not_connected_fails_later),
    };
    const struct CMUnitTest server[] = {
        cmocka_unit_test(test_connect_query),
        cmocka_unit_test(test_fifo_and_queue_bound),
        cmocka_unit_test(test_sql_error),
        cmocka_unit_test(test_statement_timeout),
        cmocka_unit_test(test_never_blocks),
        cmocka_unit_test(test_listen_notify),
        cmocka_unit_test(test_auth_and_database),
        cmocka_unit_test(test_host_name_and_connect_timeout),
        cmocka_unit_test(test_free_with_pending),
        cmocka_unit_test(test_server_shutdown_and_crash),
    };
    int fails;

    log_min_level = LL_ERR;
    fails = cmocka_run_group_tests_name("lib_pg_pure", pure, NULL, NULL);
    fails += cmocka_run_group_tests_name("lib_pg_server", server, group_setup, group_teardown);
    return fails;
}
