/*
 * Idle keep-alive client connections: between requests a connection gives
 * its bufferevent and buffers back to the loop (it "parks") and takes one
 * again when its client sends the next request. Everything a parked
 * connection is asked next must arrive intact: small and large request
 * bodies (buffered and streamed), large responses, pipelined requests,
 * many connections taking their buffers from each other; its idle timeout
 * still closes it, a client's close is noticed, and a reload between two of
 * its requests applies to the next one. A burst of connections answered at
 * once, more than wait PX_PARK_DELAY_MS to park (PX_PARK_WAITING, 64; the
 * others park at once), are all served again, and each is closed no sooner
 * than client_idle_ms after its answer, however it parked.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/integration/fixture.h"

#define NCONN 64
#define NBURST 200               /* over PX_PARK_WAITING (proxy/http_conn.h) */

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

/* NBURST requests sent before any answer is read; the backend holds each
 * 100 ms, so that the proxy answers them all within a few loop passes and
 * more than PX_PARK_WAITING connections wait to park at once. t0[i]: when
 * the answer on fd[i] was read (the proxy's idle time began just before). */
static void
burst(struct fx *f, int *fd, long long *t0, struct h_resp *r)
{
    const char *get = "GET / HTTP/1.1\r\nHost: t\r\n\r\n";
    int i;

    assert_int_equal(h_backend_set(f->port[0][0], "delay_ms=100"), 0);
    for (i = 0; i < NBURST; i++) {
        if (fd[i] < 0)
            fd[i] = h_connect(f->proxy_port);
        assert_true(fd[i] >= 0);
        assert_int_equal(h_send_all(fd[i], get, strlen(get)), 0);
    }
    for (i = 0; i < NBURST; i++) {
        h_resp_free(r);
        assert_int_equal(h_read_response(fd[i], r), 0);
        t0[i] = h_now_ms();
        assert_int_equal(r->status, 200);
        assert_string_equal(r->body, "legacy\n");
        assert_false(r->closed);
    }
}

/* t1[i]: when the proxy's close of fd[i] was seen, all of them watched at
 * once (one watched after another would see a close that came while it
 * waited for another one late); -1 when not within <timeout_ms>. */
static void
closed_times(const int *fd, long long *t1, int timeout_ms)
{
    struct pollfd p[NBURST];
    long long end = h_now_ms() + timeout_ms;
    int i, open = NBURST;

    for (i = 0; i < NBURST; i++) {
        p[i].fd = fd[i];
        p[i].events = POLLIN;
        t1[i] = -1;
    }
    while (open > 0 && h_now_ms() < end) {
        int n = poll(p, NBURST, (int)(end - h_now_ms()));
        long long now = h_now_ms();

        assert_true(n >= 0);
        for (i = 0; i < NBURST && n > 0; i++) {
            char ch;

            if (p[i].fd < 0 || p[i].revents == 0)
                continue;
            n--;
            /* nothing is sent on an idle connection: readable means closed */
            assert_true(recv(p[i].fd, &ch, 1, MSG_DONTWAIT) <= 0);
            t1[i] = now;
            p[i].fd = -1;
            open--;
        }
    }
}

static void
test_burst_parks_serves_and_times_out(void **state)
{
    const unsigned idle = 3000;
    struct fx *f = start(state, ", \"timeouts\": { \"client_idle_ms\": 3000 }");
    int fd[NBURST];
    long long t0[NBURST], t1[NBURST];
    struct h_resp r;
    int i;

    memset(&r, 0, sizeof(r));
    for (i = 0; i < NBURST; i++)
        fd[i] = -1;
    burst(f, fd, t0, &r);
    assert_int_equal(h_backend_set(f->port[0][0], "delay_ms=0"), 0);
    /* all parked by now; each is served again (in another order, some
     * with a body, some with two pipelined requests) */
    h_sleep_ms(150);
    for (i = NBURST - 1; i >= 0; i--) {
        if (i % 3 == 0) {
            echo_body(fd[i], 50 + (size_t)i, (unsigned)i);
        } else if (i % 3 == 1) {
            ask(fd[i], "GET / HTTP/1.1\r\nHost: t\r\n\r\n", &r);
            assert_string_equal(r.body, "legacy\n");
        } else {
            const char *two = "GET /a HTTP/1.1\r\nHost: t\r\n\r\n"
                              "GET /b HTTP/1.1\r\nHost: t\r\n\r\n";

            h_resp_free(&r);
            assert_int_equal(h_send_all(fd[i], two, strlen(two)), 0);
            assert_int_equal(h_read_response(fd[i], &r), 0);
            assert_string_equal(r.body, "legacy\n");
            h_resp_free(&r);
            assert_int_equal(h_read_response(fd[i], &r), 0);
            assert_string_equal(r.body, "legacy\n");
            assert_false(r.closed);
        }
    }
    /* a second burst on the same connections restarts every idle time;
     * none closes sooner than client_idle_ms after its answer (less 40 ms:
     * the answer is read a little after the proxy's idle time began; one
     * that parked at once and lost its PX_PARK_DELAY_MS would close 50 ms
     * early), all within a bounded time after */
    burst(f, fd, t0, &r);
    h_resp_free(&r);
    closed_times(fd, t1, (int)idle + 5000);
    for (i = 0; i < NBURST; i++) {
        if (t1[i] < 0)
            fail_msg("connection %d still open %u ms after client_idle_ms", i, 5000u);
        if (t1[i] - t0[i] < (long long)idle - 40)
            fail_msg("connection %d closed %lld ms after its answer, before client_idle_ms %u",
                     i, t1[i] - t0[i], idle);
        close(fd[i]);
    }
    assert_true(h_alive(f->proxy, NULL));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_parked_connections_serve_again, fx_teardown),
        cmocka_unit_test_teardown(test_parked_connection_idle_timeout, fx_teardown),
        cmocka_unit_test_teardown(test_burst_parks_serves_and_times_out, fx_teardown),
        cmocka_unit_test_teardown(test_reload_between_requests_of_a_parked_connection,
                                  fx_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
