/*
 * Canary shield: a request new fails before any response byte is replayed
 * on legacy and the client gets legacy's answer, while new's window still
 * counts the failure. The README demo's forced failure (error_rate=0.5 on
 * new at weight 50) shows 0 errors to GET clients and is still rolled back,
 * the audit entry counting what was shielded; a hung new side gives legacy's
 * answer no earlier than server_response_ms after the client's send, on an
 * idle and on a busy loop; a POST without Idempotency-Key is never
 * replayed (one with it is, when POST is listed); the retry budget caps the
 * replays; a shielded request keeps the user's bucket and is logged
 * why=shield. Fixed seeds (cutoverd -R, backend seed=), bounded loops.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/harness/load.h"
#include "tests/integration/fixture.h"

#define LEGACY_PORT(f) ((f)->port[0][0])
#define NEW_PORT(f)    ((f)->port[1][0])

static struct fx *
start(void **state, const char *extra)
{
    assert_int_equal(fx_open(state, false, 1, extra, 7), 0);
    return *state;
}

static bool
is_auto_rollback(const json_t *e)
{
    return strcmp(json_string_value(json_object_get(e, "actor")), "auto") == 0 &&
           strcmp(json_string_value(json_object_get(e, "action")), "rollback") == 0;
}

/* Waits up to <ms> for the service's state to be <want>. */
static void
wait_state(struct fx *f, const char *want, int ms)
{
    char st[64];
    long long end = h_now_ms() + ms;

    while (strcmp(fx_state(f, st, sizeof(st)), want) != 0) {
        if (h_now_ms() > end)
            fail_msg("state %s, not %s, after %d ms", st, want, ms);
        h_sleep_ms(20);
    }
}

/* The README demo: new fails half of its requests at weight 50. Every GET
 * client gets a 2xx (legacy's answer for new's failures), and the policy
 * rolls new back as it does without the shield: the audit entry carries how
 * many requests were shielded. */
static void
test_demo_forced_failure(void **state)
{
    struct fx *f = start(state, ",\"weight\": 50");
    int c[2], n5xx, c2[2], n5xx2;
    json_t *audit, *e, *st;
    long shielded;

    assert_int_equal(h_backend_set(NEW_PORT(f), "error_rate=0.5&seed=3"), 0);
    fx_drive(f, 120, 0, c, &n5xx, NULL);
    assert_int_equal(n5xx, 0);
    wait_state(f, "rolled_back", 3000);
    assert_true(fx_weight(f) == 0);

    audit = fx_audit(f, is_auto_rollback);
    assert_int_equal(json_array_size(audit), 1);
    e = json_object_get(json_array_get(audit, 0), "figures");
    shielded = (long)fx_num(e, "shielded");
    assert_true(shielded > 0);
    assert_true(fx_num(e, "errors") >= shielded);   /* new's window counted each */
    json_decref(audit);

    st = fx_status_at(f, "shield");
    assert_true(fx_num(st, "shielded") >= shielded);
    assert_true(fx_num(json_object_get(st, "by_reason"), "5xx") >= shielded);
    assert_int_equal((long)fx_num(st, "budget_exhausted"), 0);
    assert_true(fx_num(st, "percent") > 0);
    json_decref(st);

    /* after the rollback every request is legacy's */
    fx_drive(f, 10, 0, c2, &n5xx2, NULL);
    assert_int_equal(c2[1], 0);
    assert_int_equal(n5xx2, 0);
    fx_stop_clean(f);                  /* under the sanitizers: nothing reported */
}

/* One GET on a fresh connection, timed from the moment its request is
 * sent (the connect is not counted): the ms until the whole answer was
 * read, or -1. <be> gets the answering backend. */
static long long
timed_get(int port, char *be, size_t len)
{
    static const char req[] = "GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";
    struct h_resp r;
    long long t0, dt = -1;
    int fd = h_connect(port);

    memset(&r, 0, sizeof(r));
    if (fd < 0)
        return -1;
    t0 = h_now_ms();
    if (h_send_all(fd, req, sizeof(req) - 1) == 0 && h_read_response(fd, &r) == 0 &&
        r.status == 200 && h_resp_header(&r, "X-Backend", be, len) != NULL)
        dt = h_now_ms() - t0;
    h_resp_free(&r);
    close(fd);
    return dt;
}

/* A hung new side: after server_response_ms the request goes to legacy and
 * the client gets legacy's answer, never before the timeout by the client's
 * own clock from its send; the timeout counts in new's window. */
static void
test_hung_new_side(void **state)
{
    struct fx *f = start(state, ",\"weight\": 100, \"timeouts\": {\"server_response_ms\": 400}");
    char be[64];
    long long dt;
    json_t *st;

    assert_int_equal(h_backend_set(NEW_PORT(f), "mode=stall"), 0);
    dt = timed_get(f->proxy_port, be, sizeof(be));
    assert_true(dt >= 0);
    assert_string_equal(be, "legacy");
    if (dt < 400)
        fail_msg("legacy answered %lld ms after the send: before new's 400 ms", dt);
    assert_true(dt < 5000);

    st = fx_status_at(f, "%s", "");
    assert_int_equal((long)fx_num(json_object_get(json_object_get(st, "shield"), "by_reason"),
                                  "timeout"), 1);
    assert_int_equal((long)fx_num(json_object_get(json_object_get(st, "new"), "window"),
                                  "errors"), 1);
    assert_int_equal((long)fx_num(json_object_get(json_object_get(st, "legacy"), "window"),
                                  "requests"), 1);
    json_decref(st);
}

/* The background load of the next test: keep-alive GETs forced to legacy,
 * which keep the worker's loop waking up every few hundred microseconds. */
static void
legacy_request(void *arg, unsigned nth, uint64_t rnd, struct h_load_req *out)
{
    static const char req[] = "GET /busy HTTP/1.1\r\nHost: test\r\nX-Cutover-Target: legacy\r\n\r\n";

    out->raw = req;
    out->len = sizeof(req) - 1;
    out->is_head = false;
}

/* The same deadline on a busy loop, ten times: a loop that wakes often
 * looks at its timers often, so a deadline armed from a clock older than
 * the moment it was armed (a coarse clock, or the time cached when the loop
 * woke) would end early here. Each answer still comes no earlier than 400
 * ms after the client sent its request. */
static void
test_hung_new_side_busy_loop(void **state)
{
    struct fx *f = start(state, ",\"weight\": 100, \"rollback\": {\"enabled\": false}, "
                                "\"override\": {\"header\": \"X-Cutover-Target\"}, "
                                "\"timeouts\": {\"server_response_ms\": 400}");
    struct h_load_conf lc = {
        .conns = 4, .gap_min_ms = 0, .gap_max_ms = 1, .requests = 1000000,
        .duration_ms = 6000, .seed = 7, .request = legacy_request, .quiet = true,
    };
    long long dt, min = -1;
    char be[64];
    pid_t load;
    int i;

    assert_int_equal(h_backend_set(NEW_PORT(f), "mode=stall"), 0);
    lc.port = f->proxy_port;
    load = fork();
    assert_true(load >= 0);
    if (load == 0) {
        struct h_load_stats ls;

        setpgid(0, 0);
        _exit(h_load_run(&lc, &ls) == 0 && ls.answered > 0 ? 0 : 1);
    }
    setpgid(load, load);
    assert_int_equal(h_track(load), 0);  /* killed with the test if it fails */
    h_sleep_ms(200);
    for (i = 0; i < 10; i++) {
        dt = timed_get(f->proxy_port, be, sizeof(be));
        assert_true(dt >= 0);
        assert_string_equal(be, "legacy");
        if (min < 0 || dt < min)
            min = dt;
        if (dt < 400)
            fail_msg("request %d: legacy answered %lld ms after the send: before new's "
                     "400 ms", i, dt);
        assert_true(dt < 5000);
    }
    fprintf(stderr, "hung new side on a busy loop: the earliest answer %lld ms after the send\n",
            min);
    assert_int_equal(h_wait_exit(load, 20000), 0);
    assert_int_equal(fx_status_long(f, "shield.by_reason.timeout"), 10);
    fx_stop_clean(f);
}

/* Sends one POST with <extra> header lines; returns the status and the
 * answering backend in <be>. */
static int
post(struct fx *f, const char *extra, char *be, size_t len)
{
    char req[512];
    struct h_resp r;
    int status;

    snprintf(req, sizeof(req), "POST /order HTTP/1.1\r\nHost: test\r\n%s"
             "Content-Length: 5\r\n\r\nhello", extra);
    memset(&r, 0, sizeof(r));
    assert_int_equal(h_exchange(f->proxy_port, req, &r), 0);
    status = r.status;
    if (h_resp_header(&r, "X-Backend", be, len) == NULL)
        snprintf(be, len, "?");
    h_resp_free(&r);
    return status;
}

/* Unsafe methods: never replayed without Idempotency-Key (the backend gets
 * it once, the client gets new's 500); with POST listed and the key, the
 * replay reaches legacy with its body. */
static void
test_post_idempotency(void **state)
{
    struct fx *f = start(state, ",\"weight\": 100, \"rollback\": {\"enabled\": false}, "
                                "\"shield\": {\"methods\": [\"GET\", \"POST\"]}");
    char be[64];

    assert_int_equal(h_backend_set(NEW_PORT(f), "error_rate=1"), 0);
    assert_int_equal(post(f, "", be, sizeof(be)), 500);
    assert_string_equal(be, "new");
    assert_int_equal(h_backend_requests(NEW_PORT(f)), 1);
    assert_int_equal(h_backend_requests(LEGACY_PORT(f)), 0);

    assert_int_equal(post(f, "Idempotency-Key: 8e2f-1\r\n", be, sizeof(be)), 200);
    assert_string_equal(be, "legacy");
    assert_int_equal(h_backend_requests(NEW_PORT(f)), 2);
    assert_int_equal(h_backend_requests(LEGACY_PORT(f)), 1);
    assert_int_equal(h_backend_stat(LEGACY_PORT(f), "body_bytes"), 5);
}

/* The same POST without POST listed: never replayed, key or not. */
static void
test_post_default_methods(void **state)
{
    struct fx *f = start(state, ",\"weight\": 100, \"rollback\": {\"enabled\": false}");
    char be[64];

    assert_int_equal(h_backend_set(NEW_PORT(f), "error_rate=1"), 0);
    assert_int_equal(post(f, "Idempotency-Key: 8e2f-2\r\n", be, sizeof(be)), 500);
    assert_string_equal(be, "new");
    assert_int_equal(h_backend_requests(NEW_PORT(f)), 1);
    assert_int_equal(h_backend_requests(LEGACY_PORT(f)), 0);
}

/* The budget: new fails everything at weight 50 with no floor; replays
 * never exceed budget_ratio of the requests the router sent to legacy, the
 * rest reach the client as 503 and are counted exhausted. */
static void
test_budget_caps_replays(void **state)
{
    struct fx *f;
    int c[2], n5xx;
    long shielded, exhausted, legacy, newreq;
    json_t *st;
    char *m;

    f = fx_new(state, sizeof(struct fx), false, 1,
               ",\"weight\": 50, \"rollback\": {\"enabled\": false}, "
               "\"shield\": {\"budget_ratio\": 0.2, \"budget_min_per_s\": 0}");
    f->admin_port = h_free_port();
    assert_int_equal(fx_write_conf(f), 0);
    assert_int_equal(fx_start_proxy(f, 11), 0);
    assert_int_equal(h_backend_set(NEW_PORT(f), "error_rate=1&status=503"), 0);
    fx_drive(f, 200, 0, c, &n5xx, NULL);

    st = fx_status_at(f, "%s", "");
    shielded = (long)fx_num(json_object_get(st, "shield"), "shielded");
    exhausted = (long)fx_num(json_object_get(st, "shield"), "budget_exhausted");
    legacy = (long)fx_num(json_object_get(json_object_get(st, "legacy"), "counters"), "requests");
    newreq = (long)fx_num(json_object_get(json_object_get(st, "new"), "counters"), "requests");
    json_decref(st);
    /* legacy's requests hold the replays; the router sent it the rest */
    assert_true(shielded > 0);
    assert_true(exhausted > 0);
    assert_int_equal(shielded + exhausted, newreq);
    assert_int_equal(n5xx, exhausted);
    assert_int_equal(c[0], legacy);
    assert_true((double)shielded <= 0.2 * (double)(legacy - shielded));
    assert_true((double)shielded >= 0.2 * (double)(legacy - shielded) - 1);

    m = fx_scrape(f);
    assert_true(fx_metric(m, "cutover_shielded_total{service=\"web\",reason=\"5xx\"}") ==
                (double)shielded);
    assert_true(fx_metric(m, "cutover_shield_budget_exhausted_total{service=\"web\"}") ==
                (double)exhausted);
    assert_true(fx_metric(m, "cutover_drained_connections_total{service=\"web\","
                             "kind=\"tunnel\"}") == 0);
    free(m);
    fx_stop_clean(f);
}

/* Sticky users: a shielded request keeps its bucket (a cookie issued with
 * legacy's answer holds the bucket that routed it to new, so the user comes
 * back to new), and the access log says why=shield. */
static void
test_sticky_and_access_log(void **state)
{
    struct fx *f;
    char cookie[256], line[600];
    struct h_resp r;
    unsigned bucket;
    int i;

    f = fx_new(state, sizeof(struct fx), false, 1,
               ",\"weight\": 50, \"rollback\": {\"enabled\": false}, "
               "\"sticky\": {\"by\": \"cookie\", \"name\": \"cb\"}");
    snprintf(f->top_extra, sizeof(f->top_extra), ", \"access_log\": {\"file\": \"%s/access.log\"}",
             f->dir);
    assert_int_equal(fx_write_conf(f), 0);
    assert_int_equal(fx_start_proxy(f, 5), 0);
    assert_int_equal(h_backend_set(NEW_PORT(f), "error_rate=1"), 0);

    /* a client without a cookie routed to new: legacy's answer, new's bucket */
    for (i = 0; i < 40; i++) {
        memset(&r, 0, sizeof(r));
        assert_int_equal(h_get(f->proxy_port, "/", NULL, &r), 0);
        assert_int_equal(r.status, 200);
        assert_non_null(h_resp_header(&r, "Set-Cookie", cookie, sizeof(cookie)));
        bucket = (unsigned)strtoul(cookie + 3, NULL, 10);
        h_resp_free(&r);
        if (bucket < 5000)
            break;
    }
    assert_true(i < 40);
    /* it comes back with that cookie: new again, shielded again, no cookie */
    *strchr(cookie, ';') = '\0';
    snprintf(line, sizeof(line), "Cookie: %s\r\n", cookie);
    memset(&r, 0, sizeof(r));
    assert_int_equal(h_get(f->proxy_port, "/", line, &r), 0);
    assert_int_equal(r.status, 200);
    assert_null(h_resp_header(&r, "Set-Cookie", cookie, sizeof(cookie)));
    h_resp_free(&r);

    snprintf(line, sizeof(line), "%s/access.log", f->dir);
    assert_int_equal(h_wait_log(line, " why=shield", 5000), 0);
    fx_stop_clean(f);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_demo_forced_failure, fx_teardown),
        cmocka_unit_test_teardown(test_hung_new_side, fx_teardown),
        cmocka_unit_test_teardown(test_hung_new_side_busy_loop, fx_teardown),
        cmocka_unit_test_teardown(test_post_idempotency, fx_teardown),
        cmocka_unit_test_teardown(test_post_default_methods, fx_teardown),
        cmocka_unit_test_teardown(test_budget_caps_replays, fx_teardown),
        cmocka_unit_test_teardown(test_sticky_and_access_log, fx_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
