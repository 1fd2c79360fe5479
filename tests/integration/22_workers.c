/*
 * workers: 2 through the real cutoverd: the main loop (worker 0, also the
 * control plane) and one worker thread, each with its own SO_REUSEPORT
 * listener. Which of them accepts a connection depends on the client's
 * source port, so every assertion here holds for any distribution: where
 * both must hold connections, 40 are opened (all on one socket: 2^-39) and
 * cutover_worker_accepted_total shows that both accepted some. Checked:
 * both serve and the folded counters are exact; a weight change, rollback,
 * promote and blue-green switch reach every worker before cutoverctl
 * returns; a health verdict (down and up again) reaches every worker; the
 * automatic rollback sees the outcomes of both workers together; a reload
 * adds and removes a listen address on every worker; SIGTERM drains both
 * and exits 0 within the grace time; a second daemon cannot join the port.
 * Every test ends with SIGTERM and exit 0 (so the sanitizers' findings in
 * either thread fail it). Bounded loops, fixed seeds, 127.0.0.1 only.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/integration/fixture.h"

#define NCONN      40              /* connections per round: both workers get some */
#define GRACE_MS   2000            /* shutdown_grace_ms of the configs below */
#define WAIT_MS    10000           /* generous bound of every wait */
#define QUIET_MS   500             /* five policy ticks */
#define NEW_PORT(f)    ((f)->port[1][0])
#define LEGACY_PORT(f) ((f)->port[0][0])

#define HEALTH_FAST ",\n    \"health\": {\"type\": \"http\", \"path\": \"/healthz\", " \
                    "\"interval_ms\": 150, \"timeout_ms\": 100, \"rise\": 2, \"fall\": 2}"

struct t {
    struct fx f;                 /* f.admin_port: admin.listen, GET /metrics */
    int fds[NCONN + 1];          /* client connections, closed by the teardown */
    unsigned nfds;
};

static int
teardown(void **state)
{
    struct t *t = *state;
    unsigned i;

    for (i = 0; t != NULL && i < t->nfds; i++)
        if (t->fds[i] >= 0)
            close(t->fds[i]);
    return fx_teardown(state);
}

/* The fixture's config with workers 2: service "web" listening on <listen>
 * (JSON list contents; "" for the fixture's port) with the fixture's
 * backends and the service keys <extra> (leading comma, may be NULL). */
static void
conf_write(struct t *t, const char *listen, const char *extra)
{
    struct fx *f = &t->f;

    f->workers = 2;
    f->grace_ms = GRACE_MS;
    snprintf(f->listen, sizeof(f->listen), "%s", listen != NULL ? listen : "");
    snprintf(f->extra, sizeof(f->extra), "%s", extra != NULL ? extra : "");
    assert_int_equal(fx_write_conf(f), 0);
}

/* Backends, the config with workers 2 and <extra>, cutoverd started (it
 * listens on the fixture's port and on admin.listen). */
static struct t *
start(void **state, const char *extra)
{
    struct t *t = fx_new(state, sizeof(*t), false, 1, NULL);
    unsigned i;

    for (i = 0; i < NCONN + 1; i++)
        t->fds[i] = -1;
    t->f.admin_port = h_free_port();
    conf_write(t, "", extra);
    assert_int_equal(fx_start_proxy(&t->f, 7), 0);     /* and admin.listen */
    return t;
}

/* ---- metrics -------------------------------------------------------- */

/* cutover_worker_accepted_total of workers 0 and 1 into acc[]; checks that
 * there are exactly two workers. */
static void
accepted(struct t *t, double acc[2])
{
    char *text = fx_scrape(&t->f);

    assert_true(fx_metric(text, "cutover_workers") == 2);
    acc[0] = fx_metric(text, "cutover_worker_accepted_total{worker=\"0\"}");
    acc[1] = fx_metric(text, "cutover_worker_accepted_total{worker=\"1\"}");
    assert_null(strstr(text, "cutover_worker_accepted_total{worker=\"2\"}"));
    free(text);
}

/* Both workers accepted some of the connections made since <before> and
 * <n> in all. */
static void
both_accepted(struct t *t, const double before[2], double n)
{
    double now[2];

    accepted(t, now);
    fprintf(stderr, "22_workers: worker 0 accepted %.0f, worker 1 %.0f (of %.0f)\n",
            now[0] - before[0], now[1] - before[1], n);
    assert_true(now[0] - before[0] > 0);
    assert_true(now[1] - before[1] > 0);
    assert_true(now[0] - before[0] + now[1] - before[1] == n);
}

/* ---- clients -------------------------------------------------------- */

/* One GET <path> on keep-alive connection <fd> (number <i> in messages):
 * the answer must be <status> from backend <want> (X-Backend), and the
 * connection must stay open. */
static void
expect_on(int fd, int i, const char *path, int status, const char *want)
{
    char req[256], be[64];
    struct h_resp r;

    memset(&r, 0, sizeof(r));
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: test\r\n\r\n", path);
    if (h_send_all(fd, req, strlen(req)) != 0 || h_read_response(fd, &r) != 0)
        fail_msg("connection %d: GET %s got no answer", i, path);
    if (h_resp_header(&r, "X-Backend", be, sizeof(be)) == NULL)
        fail_msg("connection %d: answer %d without X-Backend", i, r.status);
    if (r.status != status || strcmp(be, want) != 0)
        fail_msg("connection %d: GET %s answered %d by %s, not %d by %s", i, path,
                 r.status, be, status, want);
    if (r.closed)
        fail_msg("connection %d: closed after its answer", i);
    h_resp_free(&r);
}

/* Opens NCONN keep-alive connections to <port> into t->fds, each answered
 * once <status> by <want>. */
static void
open_conns(struct t *t, int port, int status, const char *want)
{
    unsigned i;

    for (i = 0; i < NCONN; i++) {
        t->fds[i] = h_connect(port);
        if (t->fds[i] < 0)
            fail_msg("connection %u to %d refused", i, port);
        t->nfds = i + 1;
        expect_on(t->fds[i], (int)i, "/", status, want);
    }
}

/* The next request on each of the NCONN connections: <status> by <want>. */
static void
round_all(struct t *t, int status, const char *want)
{
    unsigned i;

    for (i = 0; i < NCONN; i++)
        expect_on(t->fds[i], (int)i, "/", status, want);
}

/* NCONN GET / on new connections to <port> (Connection: close), each
 * answered 200; per backend into c[] (legacy, new). */
static void
short_gets(int port, int c[2])
{
    struct h_resp r;
    char be[64];
    int i;

    c[0] = c[1] = 0;
    memset(&r, 0, sizeof(r));
    for (i = 0; i < NCONN; i++) {
        if (h_get(port, "/", NULL, &r) != 0)
            fail_msg("GET %d on port %d: no answer", i, port);
        if (r.status != 200 || h_resp_header(&r, "X-Backend", be, sizeof(be)) == NULL)
            fail_msg("GET %d on port %d: status %d", i, port, r.status);
        if (strcmp(be, "legacy") == 0)
            c[0]++;
        else if (strcmp(be, "new") == 0)
            c[1]++;
        else
            fail_msg("GET %d: unknown backend %s", i, be);
        h_resp_free(&r);
    }
}

/* True when a TCP connect to 127.0.0.1:<port> is refused (quietly: no
 * harness message). */
static bool
refused(int port)
{
    struct sockaddr_in sin = { .sin_family = AF_INET };
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), rc, e;

    assert_true(fd >= 0);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin.sin_port = htons((uint16_t)port);
    rc = connect(fd, (struct sockaddr *)&sin, sizeof(sin));
    e = errno;
    close(fd);
    return rc < 0 && e == ECONNREFUSED;
}

/* ---- audit log ------------------------------------------------------ */

/* The automatic rollback entries of the audit log (for fx_audit()). */
static bool
is_auto_rollback(const json_t *e)
{
    const char *actor = json_string_value(json_object_get(e, "actor"));
    const char *action = json_string_value(json_object_get(e, "action"));

    return actor != NULL && action != NULL && strcmp(actor, "auto") == 0
           && strcmp(action, "rollback") == 0;
}

/* ---- tests ---------------------------------------------------------- */

/* 40 connections, one request each, at weight 50: both workers accepted
 * some, 41 in all (the fixture's readiness probe connected once: it was
 * queued before any of the 40 on its socket, so it is accepted too); the
 * folded counters in status and metrics are exact per side. */
static void
test_both_workers_serve(void **state)
{
    struct t *t = start(state, ",\n    \"weight\": 50");
    struct fx *f = &t->f;
    double acc[2], zero[2] = { 0, 0 };
    long long end;
    char *text;
    int c[2];

    short_gets(f->proxy_port, c);
    assert_int_equal(c[0] + c[1], NCONN);
    assert_true(c[0] > 0 && c[1] > 0);             /* seed 7 at 50 %: both sides */
    both_accepted(t, zero, NCONN + 1);

    assert_true(fx_status_long(f, "legacy.counters.requests") == c[0]);
    assert_true(fx_status_long(f, "new.counters.requests") == c[1]);
    assert_true(fx_status_long(f, "legacy.counters.2xx") == c[0]);
    assert_true(fx_status_long(f, "new.counters.2xx") == c[1]);
    assert_true(fx_status_long(f, "legacy.counters.fallbacks") == 0);
    assert_int_equal(h_backend_requests(LEGACY_PORT(f)), c[0]);
    assert_int_equal(h_backend_requests(NEW_PORT(f)), c[1]);

    text = fx_scrape(&t->f);
    assert_true(fx_metric(text, "cutover_requests_total{service=\"web\",side=\"legacy\","
                             "class=\"2xx\"}") == c[0]);
    assert_true(fx_metric(text, "cutover_requests_total{service=\"web\",side=\"new\","
                             "class=\"2xx\"}") == c[1]);
    assert_true(fx_metric(text, "cutover_request_duration_seconds_count{service=\"web\","
                             "side=\"legacy\"}") == c[0]);
    assert_true(fx_metric(text, "cutover_request_duration_seconds_count{service=\"web\","
                             "side=\"new\"}") == c[1]);
    assert_true(fx_metric(text, "cutover_server_requests_total{service=\"web\",side=\"new\","
                             "server=\"127.0.0.1:%d\"}", NEW_PORT(f)) == c[1]);
    free(text);

    /* the clients closed: both workers' open connections go back to 0 */
    end = h_now_ms() + WAIT_MS;
    for (;;) {
        double open;

        text = fx_scrape(&t->f);
        open = fx_metric(text, "cutover_connections{service=\"web\"}");
        free(text);
        if (open == 0)
            break;
        if (h_now_ms() > end)
            fail_msg("cutover_connections still %.0f", open);
        h_sleep_ms(50);
    }
    accepted(t, acc);
    assert_true(acc[0] + acc[1] == NCONN + 1);    /* a scrape accepts nothing there */
    fx_stop_clean(f);
}

/* Weight changes reach every worker before cutoverctl returns: the very
 * next request on each of 40 keep-alive connections (on both workers)
 * follows them, with no wait in between. */
static void
test_weight_reaches_every_worker(void **state)
{
    struct t *t = start(state, NULL);
    struct fx *f = &t->f;
    double zero[2] = { 0, 0 };

    open_conns(t, f->proxy_port, 200, "legacy");   /* weight 0 */
    both_accepted(t, zero, NCONN + 1);             /* + the readiness probe */

    fx_ctl_ok(f, "weight", "100");
    round_all(t, 200, "new");
    fx_ctl_ok(f, "rollback", NULL);
    round_all(t, 200, "legacy");
    fx_expect_state(f, "rolled_back", 0);
    fx_ctl_ok(f, "promote", NULL);
    round_all(t, 200, "new");
    fx_expect_state(f, "promoted", 100);
    fx_ctl_ok(f, "switch", "legacy");
    round_all(t, 200, "legacy");
    fx_ctl_ok(f, "switch", "new");
    round_all(t, 200, "new");
    fx_ctl_ok(f, "weight", "0");
    round_all(t, 200, "legacy");
    fx_expect_state(f, "steady", 0);

    /* 7 rounds of 40, every one counted once */
    assert_true(fx_status_long(f, "legacy.counters.requests")
                + fx_status_long(f, "new.counters.requests") == 7 * NCONN);
    assert_true(fx_status_long(f, "new.counters.requests") == 3 * NCONN);
    fx_stop_clean(f);
}

/* A health verdict reaches every worker: the new backend stopped, once it
 * is marked down the next request on each of 40 connections (weight 100)
 * falls back to legacy, none fails; restarted and up, they go to new. */
static void
test_health_verdict_reaches_every_worker(void **state)
{
    struct t *t = start(state, ",\n    \"weight\": 100" HEALTH_FAST);
    struct fx *f = &t->f;
    double zero[2] = { 0, 0 };
    char needle[128];

    assert_int_equal(fx_wait_up(f, "new", true, WAIT_MS), 0);
    open_conns(t, f->proxy_port, 200, "new");
    both_accepted(t, zero, NCONN + 1);

    assert_int_equal(h_stop(f->backend[1][0], SIGTERM, 3000), 0);
    f->backend[1][0] = 0;
    snprintf(needle, sizeof(needle), "web new/127.0.0.1:%d DOWN after", NEW_PORT(f));
    assert_int_equal(h_wait_log(f->log, needle, WAIT_MS), 0);
    assert_int_equal(fx_wait_up(f, "new", false, WAIT_MS), 0);
    round_all(t, 200, "legacy");
    assert_true(fx_status_long(f, "legacy.counters.fallbacks") == NCONN);
    assert_true(fx_status_long(f, "legacy.counters.requests") == NCONN);
    assert_true(fx_status_long(f, "new.counters.requests") == NCONN);   /* the first round only */
    assert_true(fx_weight(f) == 100);

    f->backend[1][0] = h_backend_start("new", NEW_PORT(f), f->dir, false);
    assert_true(f->backend[1][0] > 0);
    assert_int_equal(fx_wait_up(f, "new", true, WAIT_MS), 0);
    round_all(t, 200, "new");
    assert_true(fx_status_long(f, "new.counters.requests") == 2 * NCONN);
    assert_true(fx_status_long(f, "legacy.counters.fallbacks") == NCONN);
    fx_stop_clean(f);
}

/* The rollback policy sees both workers' outcomes together: min_requests
 * 40, one request per connection on 40 connections spread over both
 * workers, every answer a 500 from new. 39 do nothing; the 40th rolls
 * back (audited by "auto" with 40 requests, 40 errors); then every
 * connection's request goes to legacy and new gets nothing. */
static void
test_rollback_from_aggregate(void **state)
{
    struct t *t = start(state, ",\n    \"weight\": 100, \"rollback\": {\"window_s\": 10, "
                               "\"min_requests\": 40, \"max_error_rate\": 0.2}");
    struct fx *f = &t->f;
    double zero[2] = { 0, 0 };
    const json_t *fig;
    json_t *entries;
    long before;
    unsigned i;

    assert_int_equal(h_backend_set(NEW_PORT(f), "error_rate=1&seed=3"), 0);
    for (i = 0; i < NCONN; i++) {
        t->fds[i] = h_connect(f->proxy_port);
        assert_true(t->fds[i] >= 0);
        t->nfds = i + 1;
    }
    /* new's 500s count in its window on every worker; the clients get
     * legacy's answers (the shield, proxy/shield.h) */
    for (i = 0; i + 1 < NCONN; i++)
        expect_on(t->fds[i], (int)i, "/", 200, "legacy");
    both_accepted(t, zero, NCONN + 1);
    h_sleep_ms(QUIET_MS);
    fx_expect_state(f, "steady", 100);
    entries = fx_audit(f, is_auto_rollback);
    assert_int_equal(json_array_size(entries), 0);
    json_decref(entries);

    expect_on(t->fds[NCONN - 1], NCONN - 1, "/", 200, "legacy");
    assert_int_equal(h_wait_log(f->log, "AUTOMATIC ROLLBACK (error_rate)", WAIT_MS), 0);
    fx_expect_state(f, "rolled_back", 0);
    entries = fx_audit(f, is_auto_rollback);
    assert_int_equal(json_array_size(entries), 1);
    fig = json_object_get(json_array_get(entries, 0), "figures");
    assert_non_null(fig);
    assert_string_equal(json_string_value(json_object_get(fig, "kind")), "error_rate");
    assert_true(fx_num(fig, "requests") == NCONN);
    assert_true(fx_num(fig, "errors") == NCONN);
    assert_true(fx_num(fig, "error_rate") == 1);
    json_decref(entries);

    before = h_backend_requests(NEW_PORT(f));
    round_all(t, 200, "legacy");
    assert_int_equal(h_backend_requests(NEW_PORT(f)), before);
    h_sleep_ms(QUIET_MS);
    entries = fx_audit(f, is_auto_rollback);
    assert_int_equal(json_array_size(entries), 1);   /* acted on once */
    json_decref(entries);
    fx_stop_clean(f);
}

/* A reload adds a listen address on every worker (40 connections to it,
 * both workers accept some), and another one removes the first address
 * from every worker (each connect is refused). */
static void
test_reload_listeners(void **state)
{
    struct t *t = start(state, NULL);
    struct fx *f = &t->f;
    double zero[2] = { 0, 0 }, before[2];
    int port2 = h_free_port(), c[2], i;
    char listen[128];

    short_gets(f->proxy_port, c);
    assert_int_equal(c[0], NCONN);
    both_accepted(t, zero, NCONN + 1);

    snprintf(listen, sizeof(listen), "\"127.0.0.1:%d\", \"127.0.0.1:%d\"", f->proxy_port,
             port2);
    conf_write(t, listen, NULL);
    fx_reload_ok(f, WAIT_MS, 2);
    accepted(t, before);
    short_gets(port2, c);
    assert_int_equal(c[0], NCONN);
    both_accepted(t, before, NCONN);
    accepted(t, before);
    short_gets(f->proxy_port, c);                  /* the first one still serves */
    assert_int_equal(c[0], NCONN);
    both_accepted(t, before, NCONN);

    snprintf(listen, sizeof(listen), "\"127.0.0.1:%d\"", port2);
    conf_write(t, listen, NULL);
    fx_reload_ok(f, WAIT_MS, 3);
    for (i = 0; i < NCONN; i++)
        if (!refused(f->proxy_port))
            fail_msg("connect %d to the removed address %d was not refused", i,
                     f->proxy_port);
    accepted(t, before);
    short_gets(port2, c);
    assert_int_equal(c[0], NCONN);
    both_accepted(t, before, NCONN);
    fx_stop_clean(f);
}

/* SIGTERM with 40 idle keep-alive connections on both workers and a slow
 * request in flight: no new connection is accepted, the idle ones are
 * closed, the slow one is answered 200, and cutoverd exits 0 before the
 * grace time is over. */
static void
test_graceful_stop(void **state)
{
    static const char slow_req[] = "GET /slow HTTP/1.1\r\nHost: test\r\n\r\n";
    struct t *t = start(state, NULL);
    struct fx *f = &t->f;
    double zero[2] = { 0, 0 };
    struct h_resp r;
    json_t *st;
    long long t0, end;
    long heads0, heads;
    int slow, rc;
    unsigned i;

    memset(&r, 0, sizeof(r));
    open_conns(t, f->proxy_port, 200, "legacy");
    both_accepted(t, zero, NCONN + 1);

    st = h_backend_stats(LEGACY_PORT(f));
    assert_non_null(st);
    heads0 = (long)json_integer_value(json_object_get(st, "heads"));
    json_decref(st);
    assert_int_equal(h_backend_set(LEGACY_PORT(f), "delay_ms=800"), 0);
    slow = h_connect(f->proxy_port);
    assert_true(slow >= 0);
    t->fds[NCONN] = slow;
    t->nfds = NCONN + 1;
    assert_int_equal(h_send_all(slow, slow_req, sizeof(slow_req) - 1), 0);
    end = h_now_ms() + WAIT_MS;
    do {                                           /* the backend has it: in flight */
        assert_true(h_now_ms() < end);
        h_sleep_ms(10);
        st = h_backend_stats(LEGACY_PORT(f));
        assert_non_null(st);
        heads = (long)json_integer_value(json_object_get(st, "heads"));
        json_decref(st);
    } while (heads < heads0 + 1);

    t0 = h_now_ms();
    assert_int_equal(kill(f->proxy, SIGTERM), 0);
    for (i = 0; i < NCONN; i++)
        if (!h_peer_closed(t->fds[i], GRACE_MS))
            fail_msg("idle connection %u was not closed", i);
    for (i = 0; i < NCONN; i++)
        if (!refused(f->proxy_port))
            fail_msg("connect %u after SIGTERM was not refused", i);

    assert_int_equal(h_set_timeout_ms(slow, 5000), 0);
    assert_int_equal(h_read_response(slow, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "legacy\n");
    h_resp_free(&r);

    rc = h_wait_exit(f->proxy, (int)(t0 + GRACE_MS - h_now_ms()));
    if (rc != 0) {
        h_dump_file(f->log, 4000);
        fail_msg("cutoverd: exit %d (-1: still running %lld ms after SIGTERM)", rc,
                 h_now_ms() - t0);
    }
    fprintf(stderr, "22_workers: exited 0 %lld ms after SIGTERM\n", h_now_ms() - t0);
    f->proxy = 0;
}

/* A second cutoverd (workers 2 as well) on the same port refuses to start:
 * SO_REUSEPORT must not let it join the first one's sockets. The first keeps
 * serving on both workers. */
static void
test_second_daemon_refused(void **state)
{
    struct t *t = start(state, NULL);
    struct fx *f = &t->f;
    double zero[2] = { 0, 0 }, before[2];
    struct fx second;
    char *argv[] = { (char *)h_bin("cutoverd"), "-c", second.conf, "-R", "8", NULL };
    char *log;
    pid_t pid2;
    int rc, c[2];

    short_gets(f->proxy_port, c);
    both_accepted(t, zero, NCONN + 1);

    /* the same port and backends, files and an admin socket of its own, no
     * admin.listen */
    second = *f;
    snprintf(second.conf, sizeof(second.conf), "%s/second.json", f->dir);
    snprintf(second.sock, sizeof(second.sock), "%s/admin2.sock", f->dir);
    snprintf(second.log, sizeof(second.log), "%s/second.log", f->dir);
    snprintf(second.state, sizeof(second.state), "%s/state2.json", f->dir);
    snprintf(second.audit, sizeof(second.audit), "%s/audit2.jsonl", f->dir);
    second.admin_port = 0;
    second.listen[0] = '\0';                       /* the fixture's port */
    snprintf(second.extra, sizeof(second.extra), ",\n    \"weight\": 100");
    assert_int_equal(fx_write_conf(&second), 0);
    pid2 = h_spawn(argv, second.log);
    assert_true(pid2 > 0);
    rc = h_wait_exit(pid2, WAIT_MS);
    log = h_read_file(second.log);
    assert_non_null(log);
    if (rc <= 0 || strstr(log, "cannot listen on") == NULL) {
        h_dump_file(second.log, 4000);
        free(log);
        fail_msg("the second cutoverd: exit %d (-1: still running)", rc);
    }
    free(log);

    /* the first serves on as before (weight 0: legacy), on both workers */
    accepted(t, before);
    short_gets(f->proxy_port, c);
    assert_int_equal(c[0], NCONN);
    both_accepted(t, before, NCONN);
    assert_true(h_alive(f->proxy, NULL));
    fx_stop_clean(f);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_both_workers_serve, teardown),
        cmocka_unit_test_teardown(test_weight_reaches_every_worker, teardown),
        cmocka_unit_test_teardown(test_health_verdict_reaches_every_worker, teardown),
        cmocka_unit_test_teardown(test_rollback_from_aggregate, teardown),
        cmocka_unit_test_teardown(test_reload_listeners, teardown),
        cmocka_unit_test_teardown(test_graceful_stop, teardown),
        cmocka_unit_test_teardown(test_second_daemon_refused, teardown),
    };

    return cmocka_run_group_tests_name("integration: workers", tests, NULL, NULL);
}
