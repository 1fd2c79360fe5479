/*
 * Idle keep-alive client connections: between requests a connection gives
 * its bufferevent and buffers back to the loop (it "parks") and takes one
 * again when its client sends the next request. Everything a parked
 * connection is asked next must arrive intact: small and large request
 * bodies (buffered and streamed), large responses, pipelined requests,
 * many connections taking their buffers from each other; its idle timeout
 * still closes it, a client's close is noticed, and a reload between two of
 * its requests applies to the next one.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/integration/fixture.h"

#define NCONN 64

static struct fx *
start(void **state, const char *extra)
{
    assert_int_equal(fx_open(state, false, 1, extra, 7), 0);
    return *state;
}

/* Sends <len> bytes of <raw> on <fd> and reads one response into <r>
 * (freed first). */
static void
askn(int fd, const char *raw, size_t len, struct h_resp *r)
{
    h_resp_free(r);
    assert_int_equal(h_send_all(fd, raw, len), 0);
    assert_int_equal(h_read_response(fd, r), 0);
    assert_false(r->closed);
}

static void
ask(int fd, const char *raw, struct h_resp *r)
{
    askn(fd, raw, strlen(raw), r);
}

/* POST /echo of <n> bytes (a pattern that depends on <seed>) on <fd>: the
 * backend answers with what it received, so the body must come back whole
 * after the request head. */
static void
echo_body(int fd, size_t n, unsigned seed)
{
    char head[256];
    char *req, *body;
    size_t hl, i;
    struct h_resp r;

    memset(&r, 0, sizeof(r));
    hl = (size_t)snprintf(head, sizeof(head),
                          "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n\r\n", n);
    req = malloc(hl + n);
    assert_non_null(req);
    memcpy(req, head, hl);
    body = req + hl;
    for (i = 0; i < n; i++)
        body[i] = (char)('a' + (i * 7 + seed) % 26);
    askn(fd, req, hl + n, &r);
    assert_int_equal(r.status, 200);
    assert_true(r.body_len >= n);
    assert_memory_equal(r.body + r.body_len - n, body, n);
    /* and nothing else after the head it echoed */
    assert_non_null(strstr(r.body, "\r\n\r\n"));
    assert_int_equal((size_t)(strstr(r.body, "\r\n\r\n") + 4 - r.body) + n, r.body_len);
    h_resp_free(&r);
    free(req);
}

static void
test_parked_connections_serve_again(void **state)
{
    struct fx *f = start(state, NULL);
    int fd[NCONN];
    char req[256], want[64];
    const char *two;
    struct h_resp r;
    int i;

    memset(&r, 0, sizeof(r));
    /* many connections, one request each: they all park */
    for (i = 0; i < NCONN; i++) {
        int n = snprintf(req, sizeof(req), "GET /echo HTTP/1.1\r\nHost: t\r\nX-Conn: %d\r\n\r\n", i);

        fd[i] = h_connect(f->proxy_port);
        assert_true(fd[i] >= 0);
        askn(fd[i], req, (size_t)n, &r);
        assert_int_equal(r.status, 200);
        snprintf(want, sizeof(want), "X-Conn: %d\r\n", i);
        assert_non_null(strstr(r.body, want));
    }
    h_sleep_ms(200);
    /* back in another order, each with a body of its own: buffered ones
     * (under buffer_body_bytes), and streamed ones on some */
    for (i = NCONN - 1; i >= 0; i--) {
        echo_body(fd[i], 100 + (size_t)i * 37, (unsigned)i);
        if (i % 16 == 0)
            echo_body(fd[i], 300000 + (size_t)i, (unsigned)i + 1);
    }
    h_sleep_ms(100);
    /* a large response to a parked connection */
    assert_int_equal(h_backend_set(f->port[0][0], "body_bytes=1048576"), 0);
    ask(fd[3], "GET /big HTTP/1.1\r\nHost: t\r\n\r\n", &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 1048576);
    for (i = 0; i < 1048576; i += 4099)
        assert_int_equal(r.body[i], "legacy"[i % 6]);
    h_resp_free(&r);
    assert_int_equal(h_backend_set(f->port[0][0], "reset=1"), 0);
    h_sleep_ms(100);
    /* two pipelined requests wake a parked connection at once */
    two = "GET /a HTTP/1.1\r\nHost: t\r\n\r\n"
          "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello";
    assert_int_equal(h_send_all(fd[7], two, strlen(two)), 0);
    assert_int_equal(h_read_response(fd[7], &r), 0);
    assert_string_equal(r.body, "legacy\n");
    h_resp_free(&r);
    assert_int_equal(h_read_response(fd[7], &r), 0);
    assert_non_null(strstr(r.body, "\r\n\r\nhello"));
    assert_false(r.closed);
    h_resp_free(&r);
    /* clients that close parked connections: the proxy goes on */
    for (i = 0; i < NCONN; i += 2)
        close(fd[i]);
    h_sleep_ms(100);
    for (i = 1; i < NCONN; i += 2) {
        ask(fd[i], "GET / HTTP/1.1\r\nHost: t\r\n\r\n", &r);
        assert_string_equal(r.body, "legacy\n");
        close(fd[i]);
    }
    h_resp_free(&r);
    assert_true(h_alive(f->proxy, NULL));
}

static void
test_parked_connection_idle_timeout(void **state)
{
    struct fx *f = start(state, ", \"timeouts\": { \"client_idle_ms\": 400 }");
    struct h_resp r;
    long long t0;
    int fd = h_connect(f->proxy_port);

    assert_true(fd >= 0);
    memset(&r, 0, sizeof(r));
    ask(fd, "GET / HTTP/1.1\r\nHost: t\r\n\r\n", &r);
    /* within client_idle_ms it is served again, and that restarts it */
    h_sleep_ms(250);
    ask(fd, "GET / HTTP/1.1\r\nHost: t\r\n\r\n", &r);
    h_sleep_ms(250);
    ask(fd, "GET / HTTP/1.1\r\nHost: t\r\n\r\n", &r);
    assert_string_equal(r.body, "legacy\n");
    h_resp_free(&r);
    /* then closed once client_idle_ms has passed without a request */
    t0 = h_now_ms();
    assert_true(h_peer_closed(fd, 3000));
    assert_true(h_now_ms() - t0 >= 300);
    close(fd);
}

static void
test_reload_between_requests_of_a_parked_connection(void **state)
{
    struct fx *f = start(state, NULL);
    const char *many;
    struct h_resp r;
    int fd = h_connect(f->proxy_port);

    assert_true(fd >= 0);
    memset(&r, 0, sizeof(r));
    ask(fd, "GET / HTTP/1.1\r\nHost: t\r\n\r\n", &r);
    assert_string_equal(r.body, "legacy\n");
    h_sleep_ms(100);
    /* the new config allows 10 header fields */
    snprintf(f->extra, sizeof(f->extra), ", \"limits\": { \"headers\": 10 }");
    assert_int_equal(fx_write_conf(f), 0);
    assert_int_equal(kill(f->proxy, SIGHUP), 0);
    assert_int_equal(h_wait_log(f->log, "configuration generation 2 loaded", 10000), 0);
    h_sleep_ms(100);
    ask(fd, "GET / HTTP/1.1\r\nHost: t\r\n\r\n", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "legacy\n");
    h_resp_free(&r);
    /* its next head is read with the new limits */
    many = "GET / HTTP/1.1\r\nHost: t\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n"
           "F: 6\r\nG: 7\r\nH: 8\r\nI: 9\r\nJ: 10\r\n\r\n";
    assert_int_equal(h_send_all(fd, many, strlen(many)), 0);
    assert_int_equal(h_read_response(fd, &r), 0);
    assert_int_equal(r.status, 431);
    h_resp_free(&r);
    close(fd);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_parked_connections_serve_again, fx_teardown),
        cmocka_unit_test_teardown(test_parked_connection_idle_timeout, fx_teardown),
        cmocka_unit_test_teardown(test_reload_between_requests_of_a_parked_connection,
                                  fx_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
