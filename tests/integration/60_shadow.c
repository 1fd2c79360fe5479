/*
 * Shadow traffic with response diffing: the real cutoverd in front of test
 * backends programmed to answer alike or with controlled differences (a
 * status, a header, a JSON value, JSON keys in another order, a stamp that
 * differs on every answer). The client always gets the serving side's
 * answer, promptly, whatever the shadow side does (stalls: by design the
 * client never waits for it); copies over max_inflight are dropped; unsafe
 * methods are copied only when listed; the diff rate rolls back
 * (rollback.max_diff_rate) and holds a plan whose first step bakes on
 * shadow traffic at 0 % (plan.max_diff_rate) until new answers alike.
 * Loopback only, fixed seeds, bounded waits.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/integration/fixture.h"

#define LEGACY 0
#define NEW 1
#define JSON_CT "Content-Type: application/json\r\n"

/* Sends <n> GET <path> on one keep-alive connection; every answer must be
 * a 200 with body <want> (NULL: any), each within <max_ms>. Returns the
 * slowest, in ms. */
static long long
get_n(struct fx *f, int n, const char *path, const char *want, long long max_ms)
{
    char req[256];
    struct h_resp r;
    long long t0, dt, slowest = 0;
    int fd, i;

    memset(&r, 0, sizeof(r));
    assert_true((fd = h_connect(f->proxy_port)) >= 0);
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: test\r\n\r\n", path);
    for (i = 0; i < n; i++) {
        t0 = h_now_ms();
        assert_int_equal(h_send_all(fd, req, strlen(req)), 0);
        if (h_read_response(fd, &r) != 0)
            fail_msg("request %d of %d got no answer", i, n);
        dt = h_now_ms() - t0;
        if (dt > slowest)
            slowest = dt;
        assert_int_equal(r.status, 200);
        if (want != NULL && strcmp(r.body, want) != 0)
            fail_msg("request %d: the client got \"%s\", not the serving side's \"%s\"", i,
                     r.body, want);
        if (dt > max_ms)
            fail_msg("request %d took %lld ms (at most %lld)", i, dt, max_ms);
        h_resp_free(&r);
    }
    close(fd);
    return slowest;
}

static long
results(struct fx *f, const char *which)
{
    return fx_status_long(f, "shadow.results.%s", which);
}

/* The kept differences of the service (--json), as an array (decref the
 * root). */
static json_t *
diffs(struct fx *f, json_t **root)
{
    *root = h_ctl_json(f->sock, "diffs", "-n", "5", (char *)NULL);
    assert_non_null(*root);
    assert_true(json_is_true(json_object_get(*root, "ok")));
    return json_object_get(*root, "diffs");
}

/* The field name of the first differing field of the newest kept diff. */
static void
expect_last_diff(struct fx *f, const char *field, const char *served, const char *shadow)
{
    json_t *root, *a = diffs(f, &root), *d, *fl;

    d = json_array_get(a, json_array_size(a) - 1);
    assert_non_null(d);
    fl = json_array_get(json_object_get(d, "fields"), 0);
    assert_string_equal(json_string_value(json_object_get(fl, "field")), field);
    assert_string_equal(json_string_value(json_object_get(fl, "served")), served);
    assert_string_equal(json_string_value(json_object_get(fl, "shadow")), shadow);
    assert_string_equal(json_string_value(json_object_get(d, "shadow_side")), "new");
    json_decref(root);
}

#define SHADOW_JSON ",\"shadow\": {\"percent\": 100, \"compare\": {\"headers\": [\"x-a\"], " \
                    "\"body\": \"json\", \"ignore_json\": [\"$.meta.ts\"]}}"

/* Status, a listed header, JSON values; reordered keys and numbers written
 * another way are equal; an ignored path is ignored; the client gets
 * legacy's answer all along; metrics and `cutoverctl diffs` show it. */
static void
test_compare(void **state)
{
    static const char lbody[] = "{\"a\":1,\"b\":[1,2.5],\"meta\":{\"ts\":1}}";
    struct fx *f;
    char out[8192];
    long n;

    assert_int_equal(fx_open(state, false, 1, SHADOW_JSON, 60), 0);
    f = *state;
    fx_backend_answer(f->port[LEGACY][0], 200, JSON_CT "X-A: 1\r\n", lbody);

    /* the same data, keys in another order, 2.5 as 25e-1, another ts */
    fx_backend_answer(f->port[NEW][0], 200, "X-A: 1\r\n" JSON_CT,
                      "{\"meta\":{\"ts\":2},\"b\":[1.0,25e-1],\"a\":1}");
    get_n(f, 5, "/api/x", lbody, 2000);
    fx_wait_status_long(f, "shadow.results.match", 5, 5000);
    assert_int_equal(results(f, "diff"), 0);

    /* a value */
    fx_backend_answer(f->port[NEW][0], 200, JSON_CT "X-A: 1\r\n", "{\"a\":2,\"b\":[1,2.5]}");
    get_n(f, 1, "/api/y", lbody, 2000);
    fx_wait_status_long(f, "shadow.results.diff", 1, 5000);
    expect_last_diff(f, "$.a", "1", "2");

    /* a listed header */
    fx_backend_answer(f->port[NEW][0], 200, JSON_CT "X-A: 2\r\n", lbody);
    get_n(f, 1, "/api/z", lbody, 2000);
    fx_wait_status_long(f, "shadow.results.diff", 2, 5000);
    expect_last_diff(f, "header:x-a", "1", "2");

    /* the status */
    fx_backend_answer(f->port[NEW][0], 503, JSON_CT "X-A: 1\r\n", lbody);
    get_n(f, 1, "/other", lbody, 2000);
    fx_wait_status_long(f, "shadow.results.diff", 3, 5000);
    expect_last_diff(f, "status", "200", "503");

    /* per route prefix, and the rate over both */
    assert_int_equal(fx_status_long(f, "shadow.prefixes./api.compared"), 7);
    assert_int_equal(fx_status_long(f, "shadow.prefixes./api.diffs"), 2);
    assert_int_equal(fx_status_long(f, "shadow.prefixes./other.diffs"), 1);
    assert_int_equal(fx_status_long(f, "shadow.legacy.diffs"), 3);
    n = fx_status_long(f, "shadow.compared");
    assert_int_equal(n, 8);

    /* the copies reached new: 8 of them; they are no requests of new's in
     * the counters (nor in its window) */
    assert_int_equal(h_backend_requests(f->port[NEW][0]), 8);
    assert_int_equal(h_backend_requests(f->port[LEGACY][0]), 8);
    assert_int_equal(fx_status_long(f, "new.servers.0.requests"), 0);
    assert_int_equal(fx_status_long(f, "new.window.requests"), 0);

    /* cutoverctl diffs, side by side; the metrics */
    assert_int_equal(fx_ctl(f, out, "diffs"), 0);
    assert_non_null(strstr(out, "GET /api/y  served legacy"));
    assert_non_null(strstr(out, "header:x-a"));
    assert_non_null(strstr(out, "status"));
}

#define METRICS_CONF ",\"shadow\": {\"percent\": 100}"

/* cutover_shadow_total{service,result} on the admin endpoint: every result
 * present from the start, then counting. */
static void
test_metrics(void **state)
{
    struct fx *f = fx_new(state, sizeof(struct fx), false, 1, METRICS_CONF);
    struct h_resp r;

    f->admin_port = h_free_port();
    assert_int_equal(fx_write_conf(f), 0);
    assert_int_equal(fx_start_proxy(f, 61), 0);
    memset(&r, 0, sizeof(r));
    assert_int_equal(h_get(f->admin_port, "/metrics", NULL, &r), 0);
    assert_non_null(strstr(r.body, "cutover_shadow_total{service=\"web\",result=\"dropped\"} 0"));
    h_resp_free(&r);
    get_n(f, 3, "/", "legacy\n", 2000);
    fx_wait_status_long(f, "shadow.results.diff", 3, 5000);
    assert_int_equal(h_get(f->admin_port, "/metrics", NULL, &r), 0);
    assert_non_null(strstr(r.body, "cutover_shadow_total{service=\"web\",result=\"diff\"} 3"));
    assert_non_null(strstr(r.body, "cutover_shadow_total{service=\"web\",result=\"match\"} 0"));
    h_resp_free(&r);
}

#define NOISE_CONF ",\"shadow\": {\"percent\": 100, \"noise\": {\"second_server\": true}, " \
                   "\"compare\": {\"headers\": [\"x-request-id\"], \"body\": \"json\"}}"

/* A stamp that differs on every answer, in a header and a JSON field: two
 * legacy servers disagree on it, so it is learned as noise and never
 * counts; a real difference beside it still does. */
static void
test_noise(void **state)
{
    static const char body[] = "{\"v\":1,\"items\":[{\"at\":\"@@@@@@@@@@\"}]}";
    static const char hdr[] = JSON_CT "X-Request-Id: @@@@@@@@@@\r\n";
    struct fx *f;
    json_t *noise;

    assert_int_equal(fx_open(state, false, 2, NOISE_CONF, 62), 0);
    f = *state;
    fx_backend_answer(f->port[LEGACY][0], 200, hdr, body);
    fx_backend_answer(f->port[LEGACY][1], 200, hdr, body);
    fx_backend_answer(f->port[NEW][0], 200, hdr, body);
    fx_backend_answer(f->port[NEW][1], 200, hdr, body);
    get_n(f, 20, "/", NULL, 2000);
    fx_wait_status_long(f, "shadow.results.match", 20, 5000);
    assert_int_equal(results(f, "diff"), 0);
    noise = fx_status_at(f, "shadow.noise");
    assert_int_equal(json_array_size(noise), 2);
    assert_string_equal(json_string_value(json_array_get(noise, 0)), "header:x-request-id");
    assert_string_equal(json_string_value(json_array_get(noise, 1)), "$.items[*].at");
    json_decref(noise);
    assert_true(fx_status_long(f, "shadow.noise_ignored") >= 40);

    /* new changes v: a difference, the noise still left out */
    fx_backend_answer(f->port[NEW][0], 200, hdr, "{\"v\":2,\"items\":[{\"at\":\"@@@@@@@@@@\"}]}");
    fx_backend_answer(f->port[NEW][1], 200, hdr, "{\"v\":2,\"items\":[{\"at\":\"@@@@@@@@@@\"}]}");
    get_n(f, 4, "/", NULL, 2000);
    fx_wait_status_long(f, "shadow.results.diff", 4, 5000);
    {
        json_t *root, *a = diffs(f, &root), *d = json_array_get(a, 0);

        assert_int_equal(json_integer_value(json_object_get(d, "differing")), 1);
        json_decref(root);
    }
    expect_last_diff(f, "$.v", "1", "2");
}

#define SLOW_CONF ",\"shadow\": {\"percent\": 100, \"timeout_ms\": 1500}"

/* A shadow side that never answers: every client answer comes from legacy
 * without waiting (by design the client never waits for a copy; a client
 * that did would wait timeout_ms each time); the copies end as errors at
 * their deadline. */
static void
test_stalled_shadow_side(void **state)
{
    struct fx *f;
    long long slowest;

    assert_int_equal(fx_open(state, false, 1, SLOW_CONF, 63), 0);
    f = *state;
    assert_int_equal(h_backend_set(f->port[NEW][0], "mode=stall"), 0);
    slowest = get_n(f, 20, "/", "legacy\n", 1000);
    print_message("slowest client answer with a stalled shadow side: %lld ms\n", slowest);
    fx_wait_status_long(f, "shadow.results.error", 20, 10000);
    assert_int_equal(results(f, "match") + results(f, "diff"), 0);
    assert_int_equal(fx_status_long(f, "shadow.inflight"), 0);
    /* a shadow side that answers garbage: errors, clients unaffected */
    assert_int_equal(h_backend_set(f->port[NEW][0], "mode=garbage"), 0);
    get_n(f, 5, "/", "legacy\n", 1000);
    fx_wait_status_long(f, "shadow.results.error", 25, 10000);
    /* a chunked answer that stops inside a chunk-size line: the copy waits
     * for the rest and ends at its deadline */
    assert_int_equal(h_backend_set(f->port[NEW][0], "mode=normal"), 0);
    assert_int_equal(h_backend_set_raw(f->port[NEW][0], "HTTP/1.1 200 OK\r\n"
                                       "Transfer-Encoding: chunked\r\n\r\n5", NULL), 0);
    get_n(f, 3, "/", "legacy\n", 1000);
    fx_wait_status_long(f, "shadow.results.error", 28, 10000);
    get_n(f, 1, "/", "legacy\n", 1000);
}

#define INFLIGHT_CONF ",\"shadow\": {\"percent\": 100, \"timeout_ms\": 20000, " \
                      "\"max_inflight\": 2}"

/* Over max_inflight, copies are dropped and counted; clients unaffected. */
static void
test_max_inflight(void **state)
{
    struct fx *f;

    assert_int_equal(fx_open(state, false, 1, INFLIGHT_CONF, 64), 0);
    f = *state;
    assert_int_equal(h_backend_set(f->port[NEW][0], "mode=stall"), 0);
    get_n(f, 10, "/", "legacy\n", 1000);
    assert_int_equal(results(f, "dropped"), 8);
    assert_int_equal(fx_status_long(f, "shadow.inflight"), 2);
    assert_int_equal(h_backend_wait_stat(f->port[NEW][0], "heads", 2, 5000), 2);
}

/* POST /x with a small body on a fresh connection. */
static void
post(struct fx *f)
{
    static const char req[] = "POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                              "Connection: close\r\n\r\nhello";
    struct h_resp r;

    assert_int_equal(h_exchange(f->proxy_port, req, &r), 0);
    assert_int_equal(r.status, 200);
    h_resp_free(&r);
}

/* An unsafe method is not copied by default... */
static void
test_unsafe_not_listed(void **state)
{
    struct fx *f;

    assert_int_equal(fx_open(state, false, 1, METRICS_CONF, 65), 0);
    f = *state;
    post(f);
    get_n(f, 1, "/", "legacy\n", 2000);
    fx_wait_status_long(f, "shadow.results.diff", 1, 5000);
    /* the GET was copied, the POST not: new saw one request */
    assert_int_equal(h_backend_requests(f->port[NEW][0]), 1);
    assert_int_equal(fx_status_long(f, "shadow.compared"), 1);
}

#define UNSAFE_CONF ",\"shadow\": {\"percent\": 100, \"methods\": [\"GET\", \"POST\"]}"

/* ... only when listed, with a warning at load; its body goes along. */
static void
test_unsafe_listed(void **state)
{
    struct fx *f;
    json_t *st;

    assert_int_equal(fx_open(state, false, 1, UNSAFE_CONF, 66), 0);
    f = *state;
    assert_int_equal(h_wait_log(f->log, "shadow.methods: copies unsafe methods (POST)", 1000),
                     0);
    post(f);
    fx_wait_status_long(f, "shadow.results.diff", 1, 5000);
    assert_int_equal(h_backend_requests(f->port[NEW][0]), 1);
    st = h_backend_stats(f->port[NEW][0]);
    assert_non_null(strstr(json_string_value(json_object_get(st, "last_request_head")),
                           "POST /x HTTP/1.1"));
    assert_int_equal(json_integer_value(json_object_get(st, "body_bytes")), 5);
    json_decref(st);
}

#define ROLLBACK_CONF ",\"weight\": 20, \"shadow\": {\"percent\": 100}, " \
                      "\"rollback\": {\"max_diff_rate\": 0.2, \"min_requests\": 10, " \
                      "\"window_s\": 30, \"max_error_rate\": 1}"

/* More differing answers than rollback.max_diff_rate: an automatic
 * rollback, audited with kind diff_rate. Alike answers first: no rollback. */
static void
test_rollback_on_diff_rate(void **state)
{
    static const char same[] = "same\n";
    struct fx *f;
    char st[64], *audit;

    assert_int_equal(fx_open(state, false, 1, ROLLBACK_CONF, 67), 0);
    f = *state;
    fx_backend_answer(f->port[LEGACY][0], 200, "", same);
    fx_backend_answer(f->port[NEW][0], 200, "", same);
    get_n(f, 20, "/", same, 2000);
    fx_wait_status_long(f, "shadow.results.match", 20, 5000);
    h_sleep_ms(300);                   /* three ticks */
    assert_string_equal(fx_state(f, st, sizeof(st)), "steady");

    fx_backend_answer(f->port[NEW][0], 200, "", "other\n");
    get_n(f, 20, "/", NULL, 2000);
    fx_wait_status_long(f, "shadow.results.diff", 6, 5000);
    {
        long long end = h_now_ms() + 5000;

        while (strcmp(fx_state(f, st, sizeof(st)), "rolled_back") != 0 && h_now_ms() < end)
            h_sleep_ms(50);
    }
    fx_expect_state(f, "rolled_back", 0);
    audit = h_read_file(f->audit);
    assert_non_null(audit);
    assert_non_null(strstr(audit, "\"kind\":\"diff_rate\""));
    free(audit);
}

#define PLAN_CONF ",\"shadow\": {\"percent\": 100}, " \
                  "\"plan\": {\"steps\": [0, 50], \"bake_s\": 1, \"max_diff_rate\": 0.01, " \
                  "\"min_compared\": 20}"

/* Requests for about <ms>, <gap_ms> apart. */
static void
drive_for(struct fx *f, int ms, int gap_ms)
{
    long long end = h_now_ms() + ms;

    while (h_now_ms() < end) {
        get_n(f, 1, "/", NULL, 2000);
        h_sleep_ms(gap_ms);
    }
}

/* The plan's first step bakes at 0 % on shadow traffic: it holds while new
 * answers differently, whatever the bake time; a plan started again once
 * new answers alike advances to 50 %: the first real user goes to new only
 * then. */
static void
test_plan_gate(void **state)
{
    struct fx *f;
    json_t *v;

    assert_int_equal(fx_open(state, false, 1, PLAN_CONF, 68), 0);
    f = *state;
    fx_ctl_ok(f, "plan", "start");
    fx_expect_state(f, "progressing", 0);
    drive_for(f, 2500, 20);            /* 2.5 bakes, every answer differing */
    fx_expect_state(f, "progressing", 0);
    v = fx_status_at(f, "plan.diff_gate.held");
    assert_true(json_is_true(v));
    json_decref(v);
    assert_true(fx_status_long(f, "plan.diff_gate.compared") >= 20);
    assert_int_equal(fx_status_long(f, "plan.step"), 1);

    /* new fixed: the plan again, and it advances */
    fx_ctl_ok(f, "plan", "abort");
    fx_backend_answer(f->port[LEGACY][0], 200, "", "same\n");
    fx_backend_answer(f->port[NEW][0], 200, "", "same\n");
    fx_ctl_ok(f, "plan", "start");
    {
        long long end = h_now_ms() + 10000;

        while (fx_weight(f) != 50 && h_now_ms() < end)
            drive_for(f, 200, 10);
    }
    assert_true(fx_weight(f) == 50);
}

#define SHIELD_CONF ",\"weight\": 100, \"shadow\": {\"percent\": 100}"

/* New answers 503 and the canary shield replays each request on legacy:
 * the client gets legacy's answer, not new's, so the copy (to legacy) has
 * no answer of new's to compare: skipped, never a match counted for new.
 * With the shield off the client gets new's 503 and the copy differs. */
static void
test_shielded_not_compared(void **state)
{
    struct fx *f;
    struct h_resp r;
    int i;

    assert_int_equal(fx_open(state, false, 1, SHIELD_CONF, 70), 0);
    f = *state;
    fx_backend_answer(f->port[LEGACY][0], 200, "", "same\n");
    fx_backend_answer(f->port[NEW][0], 503, "", "same\n");
    get_n(f, 5, "/", "same\n", 2000);  /* legacy's answers, by the shield */
    assert_int_equal(fx_status_long(f, "shield.shielded"), 5);
    fx_wait_status_long(f, "shadow.results.skipped", 5, 5000);
    assert_int_equal(results(f, "match") + results(f, "diff"), 0);
    assert_int_equal(fx_status_long(f, "shadow.new.compared"), 0);
    fx_teardown(state);

    assert_int_equal(fx_open(state, false, 1, SHIELD_CONF ", \"shield\": {\"enabled\": false}",
                             71), 0);
    f = *state;
    fx_backend_answer(f->port[LEGACY][0], 200, "", "same\n");
    fx_backend_answer(f->port[NEW][0], 503, "", "same\n");
    for (i = 0; i < 5; i++) {
        memset(&r, 0, sizeof(r));
        assert_int_equal(h_get(f->proxy_port, "/", NULL, &r), 0);
        assert_int_equal(r.status, 503);
        h_resp_free(&r);
    }
    fx_wait_status_long(f, "shadow.results.diff", 5, 5000);
    assert_int_equal(fx_status_long(f, "shadow.new.diffs"), 5);
    assert_int_equal(results(f, "skipped"), 0);
}

#define WORKERS_CONF ",\"shadow\": {\"percent\": 100, \"keep_diffs\": 10}"

/* Two event loops: each counts its own copies; status, the kept
 * differences and the metrics bring them together (px_shadow_fold). */
static void
test_workers(void **state)
{
    struct fx *f = fx_new(state, sizeof(struct fx), false, 1, WORKERS_CONF);
    struct h_resp r;
    json_t *root, *a;
    int i;

    f->workers = 2;
    assert_int_equal(fx_write_conf(f), 0);
    assert_int_equal(fx_start_proxy(f, 69), 0);
    for (i = 0; i < 30; i++) {            /* one connection each: both loops take some */
        assert_int_equal(h_get(f->proxy_port, "/w", NULL, &r), 0);
        assert_int_equal(r.status, 200);
        h_resp_free(&r);
    }
    fx_wait_status_long(f, "shadow.results.diff", 30, 5000);
    assert_int_equal(fx_status_long(f, "shadow.compared"), 30);
    assert_int_equal(fx_status_long(f, "shadow.prefixes./w.diffs"), 30);
    a = diffs(f, &root);
    assert_int_equal(json_array_size(a), 5);
    for (i = 1; i < 5; i++)
        assert_true(json_integer_value(json_object_get(json_array_get(a, i - 1), "at_ms")) <=
                    json_integer_value(json_object_get(json_array_get(a, i), "at_ms")));
    json_decref(root);
    assert_int_equal(fx_status_long(f, "shadow.kept"), 10);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_compare, fx_teardown),
        cmocka_unit_test_teardown(test_metrics, fx_teardown),
        cmocka_unit_test_teardown(test_noise, fx_teardown),
        cmocka_unit_test_teardown(test_stalled_shadow_side, fx_teardown),
        cmocka_unit_test_teardown(test_max_inflight, fx_teardown),
        cmocka_unit_test_teardown(test_unsafe_not_listed, fx_teardown),
        cmocka_unit_test_teardown(test_unsafe_listed, fx_teardown),
        cmocka_unit_test_teardown(test_rollback_on_diff_rate, fx_teardown),
        cmocka_unit_test_teardown(test_plan_gate, fx_teardown),
        cmocka_unit_test_teardown(test_workers, fx_teardown),
        cmocka_unit_test_teardown(test_shielded_not_compared, fx_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
