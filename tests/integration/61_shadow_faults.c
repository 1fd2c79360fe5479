/*
 * Shadow traffic when the shadow side misbehaves, and the calibration run:
 * the real cutoverd in front of test backends. Whatever the side that gets
 * the copies does (no healthy server, a huge answer, one that never ends,
 * one whose Content-Length never completes, bytes that are not HTTP, a slow
 * answer), the client gets the serving side's answer at once; copies stop
 * while the other side has no healthy server and resume with it; a request
 * body over max_body_bytes is not copied; an answer over max_response_bytes
 * is cut there and its connection closed, the daemon's memory staying
 * bounded. In a calibration run (new a copy of legacy, both stamping their
 * answers with a timestamp and a request id), once noise.second_server has
 * learned the stamps, at most 0.1 % of comparisons differ.
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
        if (want != NULL && (r.body == NULL || strcmp(r.body, want) != 0))
            fail_msg("request %d: the client got \"%s\", not the serving side's \"%s\"", i,
                     r.body != NULL ? r.body : "", want);
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

/* Waits until shadow.inflight is 0 (every copy ended), 5 s at most. */
static void
wait_no_copy(struct fx *f)
{
    long long end = h_now_ms() + 5000;

    while (fx_status_long(f, "shadow.inflight") != 0) {
        if (h_now_ms() > end)
            fail_msg("copies still in flight after 5 s");
        h_sleep_ms(20);
    }
}

#define HEALTH_CONF ",\"health\": {\"type\": \"http\", \"path\": \"/healthz\", " \
                    "\"interval_ms\": 150, \"timeout_ms\": 100, \"rise\": 2, \"fall\": 2}, " \
                    "\"shadow\": {\"percent\": 100}"

/* New's only server fails its active checks: no copy is sent (new gets no
 * request), each request shadowing considered is counted skipped; once it
 * passes them again, copies resume. */
static void
test_no_healthy_server(void **state)
{
    struct fx *f;
    long heads;

    assert_int_equal(fx_open(state, false, 1, HEALTH_CONF, 71), 0);
    f = *state;
    assert_int_equal(fx_wait_up(f, "new", true, 5000), 0);
    get_n(f, 5, "/", "legacy\n", 2000);
    fx_wait_status_long(f, "shadow.results.diff", 5, 5000);
    assert_int_equal(h_backend_stat(f->port[NEW][0], "heads"), 5);

    assert_int_equal(h_backend_set(f->port[NEW][0], "healthy=0"), 0);
    assert_int_equal(fx_wait_up(f, "new", false, 5000), 0);
    wait_no_copy(f);
    heads = h_backend_stat(f->port[NEW][0], "heads");
    assert_int_equal(results(f, "skipped"), 0);
    get_n(f, 10, "/", "legacy\n", 2000);
    assert_int_equal(results(f, "skipped"), 10);
    assert_int_equal(fx_status_long(f, "shadow.skipped_no_server"), 10);
    assert_int_equal(h_wait_log(f->log, "service web: copies stop: new has no healthy server",
                                1000), 0);
    assert_int_equal(results(f, "diff"), 5);
    assert_int_equal(results(f, "error") + results(f, "dropped"), 0);
    assert_int_equal(fx_status_long(f, "shadow.inflight"), 0);
    h_sleep_ms(100);
    assert_int_equal(h_backend_stat(f->port[NEW][0], "heads"), heads);

    assert_int_equal(h_backend_set(f->port[NEW][0], "healthy=1"), 0);
    assert_int_equal(fx_wait_up(f, "new", true, 5000), 0);
    get_n(f, 5, "/", "legacy\n", 2000);
    fx_wait_status_long(f, "shadow.results.diff", 10, 5000);
    assert_int_equal(results(f, "skipped"), 10);
    assert_int_equal(h_wait_log(f->log, "service web: copies resume: new has a healthy server "
                                "again", 1000), 0);
    assert_int_equal(h_backend_stat(f->port[NEW][0], "heads"), heads + 5);
}

#define BODY_CONF ",\"shadow\": {\"percent\": 100, \"methods\": [\"GET\", \"POST\"], " \
                  "\"max_body_bytes\": 100}"

/* POST /x with a body of <n> bytes on a fresh connection: the client's
 * answer must be legacy's 200. */
static void
post_n(struct fx *f, size_t n)
{
    static const char head[] = "POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n"
                               "Connection: close\r\n\r\n";
    size_t hl;
    char *req = malloc(sizeof(head) + 32 + n);
    struct h_resp r;

    assert_non_null(req);
    hl = (size_t)sprintf(req, head, n);
    memset(req + hl, 'b', n);
    req[hl + n] = '\0';
    memset(&r, 0, sizeof(r));
    assert_int_equal(h_exchange(f->proxy_port, req, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "legacy\n");
    h_resp_free(&r);
    free(req);
}

/* A body up to max_body_bytes goes with its copy; a larger one, buffered or
 * streamed (over limits.buffer_body_bytes), is not copied and is counted
 * too_large; the client's exchange is the same either way. */
static void
test_body_too_large(void **state)
{
    struct fx *f;

    assert_int_equal(fx_open(state, false, 1, BODY_CONF, 72), 0);
    f = *state;
    post_n(f, 100);
    fx_wait_status_long(f, "shadow.results.diff", 1, 5000);
    assert_int_equal(h_backend_stat(f->port[NEW][0], "body_bytes"), 100);

    post_n(f, 101);
    assert_int_equal(results(f, "too_large"), 1);
    post_n(f, 200 * 1024);             /* streamed */
    assert_int_equal(results(f, "too_large"), 2);
    assert_int_equal(h_backend_stat(f->port[LEGACY][0], "body_bytes"), 100 + 101 + 200 * 1024);
    h_sleep_ms(100);
    assert_int_equal(h_backend_stat(f->port[NEW][0], "requests"), 1);
    assert_int_equal(h_backend_stat(f->port[NEW][0], "heads"), 1);
    assert_int_equal(results(f, "diff"), 1);
    assert_int_equal(results(f, "error"), 0);
}

#define CUT_CONF ",\"shadow\": {\"percent\": 100, \"max_response_bytes\": 65536, " \
                 "\"timeout_ms\": 2000}"

/* New answers as <how> says to <n> copies: each ends as an error within
 * <within_ms> of the last client answer, its connection closed (no copy's
 * connection stays open at new); the clients get legacy's answers at once. */
static void
cut_round(struct fx *f, const char *how, int n, int within_ms, long *errors)
{
    assert_int_equal(h_backend_set(f->port[NEW][0], how), 0);
    get_n(f, n, "/", "legacy\n", 1000);
    *errors += n;
    fx_wait_status_long(f, "shadow.results.error", *errors, within_ms);
    assert_int_equal(results(f, "match") + results(f, "diff") + results(f, "too_large"), 0);
    wait_no_copy(f);
    if (h_backend_wait_stat(f->port[NEW][0], "open", 0, 5000) != 0)
        fail_msg("%s: connections of copies still open at new", how);
}

static void
test_huge_and_endless(void **state)
{
    struct fx *f;
    long errors = 0, rss0, rss1;

    assert_int_equal(fx_open(state, false, 1, CUT_CONF, 73), 0);
    f = *state;
    /* 1 MiB with a Content-Length: cut at 64 KiB, well before the copies'
     * deadline (2 s from their start) */
    cut_round(f, "body_bytes=1048576", 10, 1000, &errors);
    /* chunked, never ending: the backend is still writing when the copy
     * is cut, so every one is an answer its peer left */
    rss0 = h_rss_kib(f->proxy);
    cut_round(f, "reset=1&mode=endless&chunked=1", 50, 1000, &errors);
    assert_int_equal(h_backend_stat(f->port[NEW][0], "aborted"), 50);
    /* a Content-Length of 1 GiB, sent as fast as it is read */
    cut_round(f, "reset=1&mode=endless", 50, 1000, &errors);
    assert_int_equal(h_backend_stat(f->port[NEW][0], "aborted"), 50);
    rss1 = h_rss_kib(f->proxy);
    print_message("RSS of cutoverd before and after 100 endless answers cut at 64 KiB: "
                  "%ld and %ld KiB\n", rss0, rss1);
    /* bounded by the copies in flight at once (each at most the limit and
     * a read's buffer), not by what the backend would send (a sanitizer's
     * allocator, whose quarantine keeps what was freed, makes the figure
     * meaningless) */
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
    assert_true(rss1 - rss0 < 16384);
#endif

    /* a Content-Length body that stops half-way and never completes: the
     * copy ends at its deadline (timeout_ms), and its connection with it */
    cut_round(f, "reset=1&mode=midstall&body_bytes=20000", 5, 5000, &errors);
    assert_int_equal(h_backend_stat(f->port[NEW][0], "aborted"), 5);
    /* a chunked one whose last chunk never comes */
    cut_round(f, "reset=1&mode=midstall&chunked=1&body_bytes=20000", 5, 5000, &errors);
    assert_int_equal(results(f, "error"), errors);

    /* new answers normally again: copies compare (and differ: the bodies
     * are the names) */
    assert_int_equal(h_backend_set(f->port[NEW][0], "reset=1"), 0);
    get_n(f, 3, "/", "legacy\n", 1000);
    fx_wait_status_long(f, "shadow.results.diff", 3, 5000);
    fx_stop_clean(f);                  /* under make asan: nothing leaked */
}

#define NONE_CONF ",\"shadow\": {\"percent\": 100, \"max_response_bytes\": 65536, " \
                  "\"timeout_ms\": 2000, \"compare\": {\"body\": \"none\"}}"

/* With bodies not compared, a copy's answer is still cut at
 * max_response_bytes, not read until its deadline. */
static void
test_endless_body_not_compared(void **state)
{
    struct fx *f;
    long errors = 0;

    assert_int_equal(fx_open(state, false, 1, NONE_CONF, 77), 0);
    f = *state;
    cut_round(f, "mode=endless&chunked=1", 10, 1000, &errors);
    assert_int_equal(h_backend_stat(f->port[NEW][0], "aborted"), 10);
    /* a body within the limit is read whole and the answers compared
     * (the statuses alike: a match) */
    assert_int_equal(h_backend_set(f->port[NEW][0], "reset=1&body_bytes=60000"), 0);
    get_n(f, 3, "/", "legacy\n", 1000);
    fx_wait_status_long(f, "shadow.results.match", 3, 5000);
}

#define GARBAGE_CONF ",\"shadow\": {\"percent\": 100, \"timeout_ms\": 1500}"

/* Answers that are not HTTP, or not valid HTTP, and a side that is down:
 * error, clients unaffected. */
static void
test_garbage(void **state)
{
    static const char *const raw[] = {
        "ICY 200 OK\r\n\r\n",
        "HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n",
    };
    struct fx *f;
    long errors = 0;
    size_t i;

    assert_int_equal(fx_open(state, false, 1, GARBAGE_CONF, 74), 0);
    f = *state;
    assert_int_equal(h_backend_set(f->port[NEW][0], "mode=garbage"), 0);
    get_n(f, 5, "/", "legacy\n", 1000);
    errors += 5;
    fx_wait_status_long(f, "shadow.results.error", errors, 5000);
    assert_int_equal(h_backend_set(f->port[NEW][0], "mode=normal"), 0);
    for (i = 0; i < sizeof(raw) / sizeof(raw[0]); i++) {
        assert_int_equal(h_backend_set_raw(f->port[NEW][0], raw[i], "&raw_close=1"), 0);
        get_n(f, 3, "/", "legacy\n", 1000);
        errors += 3;
        if (fx_wait_status_long(f, "shadow.results.error", errors, 5000) != errors)
            fail_msg("answer %zu: %ld errors, not %ld", i, results(f, "error"), errors);
    }
    assert_int_equal(results(f, "match") + results(f, "diff"), 0);
    wait_no_copy(f);

    /* a shadow side that is down (nothing listens; no active checks here
     * to say so): every connect is refused, an error each */
    assert_int_equal(h_stop(f->backend[NEW][0], SIGTERM, 5000), 0);
    f->backend[NEW][0] = 0;
    get_n(f, 5, "/", "legacy\n", 1000);
    errors += 5;
    fx_wait_status_long(f, "shadow.results.error", errors, 5000);
    assert_int_equal(results(f, "match") + results(f, "diff"), 0);
    wait_no_copy(f);
    fx_stop_clean(f);
}

#define SLOW_CONF ",\"shadow\": {\"percent\": 100, \"timeout_ms\": 2000}"

/* A shadow side that answers, but 300 ms late: no client answer waits for
 * it (each comes well before 300 ms), and every copy is still compared. */
static void
test_slow_side(void **state)
{
    struct fx *f;
    long long slowest;

    assert_int_equal(fx_open(state, false, 1, SLOW_CONF, 75), 0);
    f = *state;
    assert_int_equal(h_backend_set(f->port[NEW][0], "delay_ms=300"), 0);
    slowest = get_n(f, 20, "/", "legacy\n", 250);
    print_message("slowest client answer with a shadow side 300 ms slow: %lld ms\n", slowest);
    fx_wait_status_long(f, "shadow.results.diff", 20, 5000);
    assert_int_equal(results(f, "error") + results(f, "dropped"), 0);
    /* the daemon stops cleanly with copies in flight (under make asan:
     * nothing leaked, nothing touched after it was freed) */
    get_n(f, 5, "/", "legacy\n", 250);
    assert_true(fx_status_long(f, "shadow.inflight") > 0);
    fx_stop_clean(f);
}

#define UNANSWERED_CONF ",\"shadow\": {\"percent\": 100, \"timeout_ms\": 300}, " \
                        "\"timeouts\": {\"server_response_ms\": 1000}"

/* A copy goes only once the serving side's answer began: while legacy
 * never answers, nothing is sent to new, and the copy is given up at its
 * deadline (skipped), long before the client's own 504. */
static void
test_copy_waits_for_the_answer(void **state)
{
    struct fx *f;
    struct h_resp r;

    assert_int_equal(fx_open(state, false, 1, UNANSWERED_CONF, 78), 0);
    f = *state;
    assert_int_equal(h_backend_set(f->port[LEGACY][0], "mode=stall"), 0);
    memset(&r, 0, sizeof(r));
    assert_int_equal(h_get(f->proxy_port, "/", NULL, &r), 0);
    assert_int_equal(r.status, 504);
    h_resp_free(&r);
    assert_int_equal(results(f, "skipped"), 1);
    assert_int_equal(fx_status_long(f, "shadow.inflight"), 0);
    assert_int_equal(h_backend_stat(f->port[NEW][0], "heads"), 0);

    /* legacy answers 250 ms late: the copy goes then, and has its own
     * timeout_ms (300) from there */
    assert_int_equal(h_backend_set(f->port[LEGACY][0], "mode=normal&delay_ms=250"), 0);
    assert_int_equal(h_backend_set(f->port[NEW][0], "delay_ms=200"), 0);
    get_n(f, 2, "/", "legacy\n", 1000);
    fx_wait_status_long(f, "shadow.results.diff", 2, 5000);
    assert_int_equal(results(f, "error"), 0);
    fx_stop_clean(f);
}

#define CALIB_CONF ",\"shadow\": {\"percent\": 100, \"noise\": {\"second_server\": true}, " \
                   "\"compare\": {\"headers\": [\"content-type\", \"x-request-id\", " \
                   "\"x-timestamp\"], \"body\": \"json\"}}"
#define CALIB_N 2000

/* The calibration run: new is the same program as legacy, every answer
 * stamped with the time in milliseconds and a request id, in headers and
 * in the JSON body. Learning (until the four stamp fields are noise), then
 * CALIB_N comparisons of which at most 0.1 % may differ. */
static void
test_calibration(void **state)
{
    struct fx *f;
    json_t *noise;
    long c0, d0, c1, d1, learn = 0;
    size_t nn = 0;
    unsigned s, i;

    assert_int_equal(fx_open(state, false, 2, CALIB_CONF, 76), 0);
    f = *state;
    for (s = 0; s < 2; s++)
        for (i = 0; i < 2; i++)
            assert_int_equal(h_backend_set(f->port[s][i], "stamp=1"), 0);
    while (nn < 4) {
        if (learn >= 5000)
            fail_msg("after %ld requests only %zu stamp fields are learned as noise", learn,
                     nn);
        get_n(f, 100, "/", NULL, 2000);
        learn += 100;
        wait_no_copy(f);
        noise = fx_status_at(f, "shadow.noise");
        nn = json_array_size(noise);
        json_decref(noise);
    }
    c0 = results(f, "match") + results(f, "diff");
    d0 = results(f, "diff");
    get_n(f, CALIB_N, "/", NULL, 2000);
    wait_no_copy(f);
    c1 = results(f, "match") + results(f, "diff");
    d1 = results(f, "diff");
    print_message("calibration: noise learned in %ld requests (%ld differing before); then "
                  "%ld comparisons, %ld differing (%.3f %%)\n", learn, d0, c1 - c0, d1 - d0,
                  100.0 * (double)(d1 - d0) / (double)(c1 - c0));
    assert_int_equal(c1 - c0, CALIB_N);
    assert_true((d1 - d0) * 1000 <= c1 - c0);
    assert_int_equal(results(f, "error") + results(f, "dropped"), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_no_healthy_server, fx_teardown),
        cmocka_unit_test_teardown(test_body_too_large, fx_teardown),
        cmocka_unit_test_teardown(test_huge_and_endless, fx_teardown),
        cmocka_unit_test_teardown(test_endless_body_not_compared, fx_teardown),
        cmocka_unit_test_teardown(test_garbage, fx_teardown),
        cmocka_unit_test_teardown(test_slow_side, fx_teardown),
        cmocka_unit_test_teardown(test_copy_waits_for_the_answer, fx_teardown),
        cmocka_unit_test_teardown(test_calibration, fx_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
