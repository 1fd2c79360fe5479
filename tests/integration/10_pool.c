/*
 * 10_pool: the upstream keep-alive pool, seen from the backend. Sequential
 * requests share one upstream connection whatever client connection they
 * came on; pool.max_idle bounds what stays idle; pool.idle_timeout_ms closes
 * idle connections; a connection is never reused after an error or a body
 * that was not read to its end; and a request that meets a pooled
 * connection the server has just closed is resent on a fresh one only when
 * it is idempotent.
 *
 * The backend's stats tell: "request_connections" (connections that
 * carried traffic), "open" (connections open now) and "requests". Waits
 * are bounded polls, never fixed sleeps.
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

#define GET_ROOT "GET / HTTP/1.1\r\nHost: t\r\n\r\n"
#define POST_ROOT "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"

static struct fx *
start(void **state, const char *extra)
{
    assert_int_equal(fx_open(state, false, 1, extra, 7), 0);
    return *state;
}

/* One request on a new client connection; returns the status (0 on failure). */
static int
status_of(struct fx *f, const char *raw)
{
    struct h_resp r;
    int st;

    st = h_exchange(f->proxy_port, raw, &r) == 0 ? r.status : 0;
    h_resp_free(&r);
    return st;
}

/* Ten requests on one client connection, then ten more on ten client
 * connections: all of them travel on one upstream connection. */
static void
test_sequential_requests_share_one_connection(void **state)
{
    struct fx *f = start(state, NULL);
    int port = f->port[0][0], fd, i;
    struct h_resp r;

    fd = h_connect(f->proxy_port);
    assert_true(fd >= 0);
    for (i = 0; i < 10; i++) {
        assert_int_equal(h_send_all(fd, GET_ROOT, strlen(GET_ROOT)), 0);
        assert_int_equal(h_read_response(fd, &r), 0);
        assert_int_equal(r.status, 200);
        assert_false(r.closed);
        h_resp_free(&r);
    }
    close(fd);
    for (i = 0; i < 10; i++)
        assert_int_equal(status_of(f, i % 2 ? GET_ROOT : POST_ROOT), 200);
    assert_int_equal(h_backend_requests(port), 20);
    assert_int_equal(h_backend_stat(port, "request_connections"), 1);
    assert_int_equal(fx_status_long(f, "legacy.servers.0.reused"), 19);
    /* and it stays in the pool */
    assert_int_equal(fx_status_long(f, "legacy.servers.0.idle"), 1);
    assert_int_equal(h_backend_wait_stat(port, "open", 1, 3000), 1);
}

/* Bodies that take many reads (and fill the client's buffer, so the client
 * side drives the last reads) go back to the pool as well. */
static void
test_large_responses_are_pooled(void **state)
{
    struct fx *f = start(state, NULL);
    int port = f->port[0][0], i;
    struct h_resp r;

    assert_int_equal(h_backend_set(port, "body_bytes=300000"), 0);
    for (i = 0; i < 8; i++) {
        if (i == 4)
            assert_int_equal(h_backend_set(port, "chunked=1"), 0);
        assert_int_equal(h_exchange(f->proxy_port, GET_ROOT, &r), 0);
        assert_int_equal(r.status, 200);
        assert_int_equal(r.body_len, 300000);
        h_resp_free(&r);
    }
    assert_int_equal(h_backend_stat(port, "request_connections"), 1);
    assert_int_equal(fx_status_long(f, "legacy.servers.0.reused"), 7);
    assert_int_equal(fx_status_long(f, "legacy.servers.0.idle"), 1);
}

/* Four requests at once need four upstream connections; afterwards
 * pool.max_idle 1 keeps one of them and closes the others. */
static void
test_max_idle_bounds_the_pool(void **state)
{
    struct fx *f = start(state, ",\"pool\": {\"max_idle\": 1, \"idle_timeout_ms\": 60000}");
    int port = f->port[0][0], fd[4], i;
    struct h_resp r;

    assert_int_equal(h_backend_set(port, "delay_ms=300"), 0);
    for (i = 0; i < 4; i++) {
        fd[i] = h_connect(f->proxy_port);
        assert_true(fd[i] >= 0);
        assert_int_equal(h_send_all(fd[i], GET_ROOT, strlen(GET_ROOT)), 0);
    }
    for (i = 0; i < 4; i++) {
        assert_int_equal(h_read_response(fd[i], &r), 0);
        assert_int_equal(r.status, 200);
        h_resp_free(&r);
    }
    assert_int_equal(h_backend_stat(port, "request_connections"), 4);
    assert_int_equal(h_backend_wait_stat(port, "open", 1, 3000), 1);
    assert_int_equal(fx_status_long(f, "legacy.servers.0.idle"), 1);
    /* the client connections are still open: it is the pool that closed */
    for (i = 0; i < 4; i++) {
        assert_int_equal(h_send_all(fd[i], GET_ROOT, strlen(GET_ROOT)), 0);
        assert_int_equal(h_read_response(fd[i], &r), 0);
        assert_int_equal(r.status, 200);
        h_resp_free(&r);
        close(fd[i]);
    }
    /* sequential now: all four went on the one kept connection */
    assert_int_equal(h_backend_stat(port, "request_connections"), 4);
    assert_int_equal(fx_status_long(f, "legacy.servers.0.idle"), 1);
}

/* pool.max_idle 0: no keep-alive upstream at all. */
static void
test_max_idle_zero_never_pools(void **state)
{
    struct fx *f = start(state, ",\"pool\": {\"max_idle\": 0}");
    int port = f->port[0][0], i;

    for (i = 0; i < 3; i++)
        assert_int_equal(status_of(f, GET_ROOT), 200);
    assert_int_equal(h_backend_stat(port, "request_connections"), 3);
    assert_int_equal(h_backend_wait_stat(port, "open", 0, 3000), 0);
    assert_int_equal(fx_status_long(f, "legacy.servers.0.reused"), 0);
}

/* An idle pooled connection is closed after pool.idle_timeout_ms. */
static void
test_idle_timeout_closes(void **state)
{
    struct fx *f = start(state, ",\"pool\": {\"idle_timeout_ms\": 1000}");
    int port = f->port[0][0];
    long long t0;

    assert_int_equal(status_of(f, GET_ROOT), 200);
    t0 = h_now_ms();
    /* pooled: still open on the backend right after the answer */
    assert_int_equal(h_backend_stat(port, "open"), 1);
    assert_int_equal(fx_status_long(f, "legacy.servers.0.idle"), 1);
    assert_int_equal(h_backend_wait_stat(port, "open", 0, 5000), 0);
    assert_true(h_now_ms() - t0 >= 800);
    assert_int_equal(fx_status_long(f, "legacy.servers.0.idle"), 0);
    /* the next request opens a new one */
    assert_int_equal(status_of(f, GET_ROOT), 200);
    assert_int_equal(h_backend_stat(port, "request_connections"), 2);
}

/* An invalid response on a pooled connection: 502, that connection is
 * closed (the backend would keep it), the next request opens a new one. */
static void
test_no_reuse_after_bad_response(void **state)
{
    struct fx *f = start(state, NULL);
    int port = f->port[0][0];

    assert_int_equal(status_of(f, GET_ROOT), 200);     /* connection A, pooled */
    assert_int_equal(h_backend_set_raw(port, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
                                             "Content-Length: 6\r\n\r\nhello!", NULL), 0);
    assert_int_equal(status_of(f, GET_ROOT), 502);     /* on A */
    assert_int_equal(h_backend_wait_stat(port, "open", 0, 3000), 0);
    assert_int_equal(h_backend_set(port, "raw="), 0);
    assert_int_equal(status_of(f, GET_ROOT), 200);     /* B */
    assert_int_equal(h_backend_stat(port, "request_connections"), 2);
    assert_int_equal(h_backend_requests(port), 3);
}

/* A framing error in a chunked body, after a valid first chunk (the
 * backend keeps the connection): it came with the head, so the client gets
 * a 502 (a later one would cut the response: 08_faults), and the upstream
 * connection is closed, never pooled. */
static void
test_no_reuse_after_bad_chunk(void **state)
{
    struct fx *f = start(state, NULL);
    int port = f->port[0][0];

    assert_int_equal(status_of(f, GET_ROOT), 200);
    assert_int_equal(h_backend_set_raw(port, "HTTP/1.1 200 OK\r\n"
                                             "Transfer-Encoding: chunked\r\n\r\n"
                                             "5\r\nhello\r\nzz\r\n", NULL), 0);
    assert_int_equal(status_of(f, GET_ROOT), 502);
    assert_int_equal(h_backend_wait_stat(port, "open", 0, 3000), 0);
    assert_int_equal(h_backend_set(port, "raw="), 0);
    assert_int_equal(status_of(f, GET_ROOT), 200);
    assert_int_equal(h_backend_stat(port, "request_connections"), 2);
}

/* A response body the client did not wait for (it left mid-body): the
 * upstream connection still has body bytes coming and is closed, never
 * pooled; the same after a backend reset mid-body. */
static void
test_no_reuse_after_incomplete_body(void **state)
{
    struct fx *f = start(state, NULL);
    int port = f->port[0][0], fd;
    struct h_resp r;

    assert_int_equal(status_of(f, GET_ROOT), 200);     /* A, pooled */
    assert_int_equal(h_backend_set(port, "mode=midstall&body_bytes=40000"), 0);
    fd = h_connect(f->proxy_port);
    assert_true(fd >= 0);
    assert_int_equal(h_send_all(fd, GET_ROOT, strlen(GET_ROOT)), 0);
    assert_int_equal(h_read_response_head(fd, &r), 0);
    assert_int_equal(r.status, 200);
    h_resp_free(&r);
    close(fd);
    assert_int_equal(h_backend_wait_stat(port, "aborted", 1, 3000), 1);
    assert_int_equal(h_backend_wait_stat(port, "open", 0, 3000), 0);
    assert_int_equal(fx_status_long(f, "legacy.servers.0.idle"), 0);

    assert_int_equal(h_backend_set(port, "mode=midbody"), 0);
    assert_int_equal(h_exchange(f->proxy_port, GET_ROOT, &r), -1);   /* B, reset mid-body */
    assert_int_equal(r.status, 200);
    h_resp_free(&r);
    assert_int_equal(h_backend_set(port, "mode=normal"), 0);
    assert_int_equal(status_of(f, GET_ROOT), 200);     /* C */
    assert_int_equal(h_backend_stat(port, "request_connections"), 3);
    assert_int_equal(fx_status_long(f, "legacy.servers.0.idle"), 1);
}

/* The pooled connection closes as the second request arrives ("close":
 * FIN, no answer). A GET is resent once on a fresh connection and succeeds,
 * and that is not a backend failure. */
static void
test_stale_connection_get_is_resent(void **state)
{
    struct fx *f = start(state, NULL);
    int port = f->port[0][0];

    assert_int_equal(h_backend_set(port, "script=200,close,200"), 0);
    assert_int_equal(status_of(f, GET_ROOT), 200);
    assert_int_equal(status_of(f, GET_ROOT), 200);
    assert_int_equal(h_backend_requests(port), 3);
    assert_int_equal(h_backend_stat(port, "request_connections"), 2);
    assert_int_equal(fx_status_long(f, "legacy.servers.0.failures"), 0);
    assert_int_equal(fx_status_long(f, "legacy.counters.error"), 0);
    assert_int_equal(fx_status_long(f, "legacy.counters.2xx"), 2);
}

/* The same with a POST: not idempotent, so never resent: 502, and the
 * backend saw the request once. */
static void
test_stale_connection_post_is_not_resent(void **state)
{
    struct fx *f = start(state, NULL);
    int port = f->port[0][0];

    assert_int_equal(h_backend_set(port, "script=200,close,200"), 0);
    assert_int_equal(status_of(f, POST_ROOT), 200);
    assert_int_equal(status_of(f, POST_ROOT), 502);
    assert_int_equal(h_backend_requests(port), 2);
    assert_int_equal(fx_status_long(f, "legacy.counters.error"), 1);
    /* the third script item is still there for the next request */
    assert_int_equal(status_of(f, POST_ROOT), 200);
    assert_int_equal(h_backend_requests(port), 3);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_sequential_requests_share_one_connection, fx_teardown),
        cmocka_unit_test_teardown(test_large_responses_are_pooled, fx_teardown),
        cmocka_unit_test_teardown(test_max_idle_bounds_the_pool, fx_teardown),
        cmocka_unit_test_teardown(test_max_idle_zero_never_pools, fx_teardown),
        cmocka_unit_test_teardown(test_idle_timeout_closes, fx_teardown),
        cmocka_unit_test_teardown(test_no_reuse_after_bad_response, fx_teardown),
        cmocka_unit_test_teardown(test_no_reuse_after_bad_chunk, fx_teardown),
        cmocka_unit_test_teardown(test_no_reuse_after_incomplete_body, fx_teardown),
        cmocka_unit_test_teardown(test_stale_connection_get_is_resent, fx_teardown),
        cmocka_unit_test_teardown(test_stale_connection_post_is_not_resent, fx_teardown),
    };

    return cmocka_run_group_tests_name("integration: upstream pool", tests, NULL, NULL);
}
