/*
 * 24_pool_race: a pooled upstream connection is never failed by what
 * happened to it while it was idle. Thousands of reuses with the pool's idle
 * timer always near expiry (pool.idle_timeout_ms 20, keep-alive clients
 * pausing 0..40 ms, so their connections park and come back just as idle
 * upstream connections expire) get no 502 or 504 and count no upstream
 * error; and idle connections the backend closes itself (its keep-alive
 * time below the pool's) are skipped or their requests resent, never
 * answered 502.
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

/* The load of every test: bounded by count and by time. */
#define RACE_REQUESTS 4000
#define RACE_MS       4500

static struct fx *
start(void **state, const char *extra)
{
    assert_int_equal(fx_open(state, false, 1, extra, 11), 0);
    return *state;
}

/* Every request was answered 200 and the proxy counted no upstream error. */
static void
expect_clean(struct fx *f, const char *label, const struct h_load_stats *st)
{
    h_load_print(label, st);
    if (st->answered != st->status[200])
        h_dump_file(f->log, 3000);
    assert_true(st->sent >= 500);      /* the load ran */
    assert_int_equal(st->answered, st->sent);
    assert_int_equal(st->status[200], st->answered);
    assert_int_equal(st->closed_clean + st->reset + st->malformed + st->unanswered, 0);
    assert_int_equal(fx_status_long(f, "legacy.counters.errors.upstream_timeout"), 0);
    assert_int_equal(fx_status_long(f, "legacy.counters.errors.upstream_reset"), 0);
    assert_int_equal(fx_status_long(f, "legacy.servers.0.failures"), 0);
}

/* The reproduction: 16 keep-alive clients, gaps of 0..40 ms around
 * an idle timeout of 20 ms. */
static void
test_idle_timer_never_fails_a_reused_connection(void **state)
{
    struct fx *f = start(state, ",\"pool\": {\"idle_timeout_ms\": 20}");
    struct h_load_conf c = {
        .port = f->proxy_port, .conns = 16, .gap_min_ms = 0, .gap_max_ms = 40,
        .requests = RACE_REQUESTS, .duration_ms = RACE_MS, .seed = 24,
    };
    struct h_load_stats st;

    assert_int_equal(h_load_run(&c, &st), 0);
    expect_clean(f, "idle timer race", &st);
    /* the pool was used, and its idle timer did close connections */
    assert_true(fx_status_long(f, "legacy.servers.0.reused") > 100);
    assert_true(h_backend_stat(f->port[0][0], "request_connections") > 10);
    fx_stop_clean(f);
}

/* Every third request is a HEAD (no body in its answer), the others GET:
 * requests the proxy may resend on a fresh connection. */
static void
idempotent_request(void *arg, unsigned nth, uint64_t rnd, struct h_load_req *out)
{
    static const char get[] = "GET / HTTP/1.1\r\nHost: race\r\n\r\n";
    static const char head[] = "HEAD / HTTP/1.1\r\nHost: race\r\n\r\n";

    (void)arg;
    (void)rnd;
    if (nth % 3 == 2)
        *out = (struct h_load_req){ head, sizeof(head) - 1, true };
    else
        *out = (struct h_load_req){ get, sizeof(get) - 1, false };
}

/* The backend closes connections idle for 20 ms, long before the pool
 * would: a connection whose close the loop saw but whose callback has not
 * run yet is not taken, and a request that meets a closed one anyway is
 * resent on a fresh connection. (A POST that meets a connection its server
 * closes at that very moment cannot be resent: it is answered 502, as by
 * any HTTP/1.1 proxy; tests/integration/10_pool.c has that case.) */
static void
test_server_closed_idle_connections_are_not_failures(void **state)
{
    struct fx *f = start(state, ",\"pool\": {\"idle_timeout_ms\": 4000}");
    struct h_load_conf c = {
        .port = f->proxy_port, .conns = 16, .gap_min_ms = 0, .gap_max_ms = 40,
        .requests = RACE_REQUESTS, .duration_ms = RACE_MS, .seed = 25,
        .request = idempotent_request,
    };
    struct h_load_stats st;

    assert_int_equal(h_backend_set(f->port[0][0], "keepalive_ms=20"), 0);
    assert_int_equal(h_load_run(&c, &st), 0);
    expect_clean(f, "server-closed race", &st);
    assert_true(h_backend_stat(f->port[0][0], "request_connections") > 10);
    fx_stop_clean(f);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_idle_timer_never_fails_a_reused_connection,
                                  fx_teardown),
        cmocka_unit_test_teardown(test_server_closed_idle_connections_are_not_failures,
                                  fx_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
