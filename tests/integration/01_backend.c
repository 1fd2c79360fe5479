/*
 * 01_backend: the test backend and the harness, checked against each other
 * before any test puts cutoverd between them. Two HTTP backends ("legacy"
 * and "new") run per test; the TCP test starts its own echo backend. Each
 * test's teardown kills what it started and removes its directory, also
 * when an assertion failed.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/harness/harness.h"

struct fixture {
    char *dir;                         /* owned temp directory */
    int legacy_port, new_port;
    pid_t legacy, fresh;
    int fd;                            /* a client connection, -1 when none */
};

static int
setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    if (f == NULL)
        return -1;
    f->fd = -1;
    *state = f;
    if ((f->dir = h_tmpdir()) == NULL)
        return -1;
    f->legacy_port = h_free_port();
    f->new_port = h_free_port();
    if (f->legacy_port < 0 || f->new_port < 0)
        return -1;
    f->legacy = h_backend_start("legacy", f->legacy_port, f->dir, false);
    f->fresh = h_backend_start("new", f->new_port, f->dir, false);
    return f->legacy > 0 && f->fresh > 0 ? 0 : -1;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;

    if (f == NULL)
        return 0;
    if (f->fd >= 0)
        close(f->fd);
    h_kill_all();
    if (f->dir != NULL)
        h_rmrf(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

/* Sends <req> on f->fd (connecting first when needed). */
static void
send_req(struct fixture *f, int port, const char *req)
{
    if (f->fd < 0)
        f->fd = h_connect(port);
    assert_true(f->fd >= 0);
    assert_int_equal(h_send_all(f->fd, req, strlen(req)), 0);
}

static void
test_name_in_body_and_header(void **state)
{
    struct fixture *f = *state;
    struct h_resp r;
    char v[64];

    assert_int_equal(h_get(f->legacy_port, "/anything?q=1", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "legacy\n");
    assert_int_equal(r.body_len, 7);
    assert_non_null(h_resp_header(&r, "x-backend", v, sizeof(v)));
    assert_string_equal(v, "legacy");
    assert_non_null(h_resp_header(&r, "Content-Type", v, sizeof(v)));
    assert_string_equal(v, "text/plain");
    assert_null(h_resp_header(&r, "X-Missing", v, sizeof(v)));
    h_resp_free(&r);

    assert_int_equal(h_get(f->new_port, "/", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "new\n");
    assert_string_equal(h_resp_header(&r, "X-Backend", v, sizeof(v)), "new");
    h_resp_free(&r);
}

static void
test_echo_returns_head_and_body(void **state)
{
    struct fixture *f = *state;
    const char *req = "POST /echo HTTP/1.1\r\nHost: b\r\nX-Trace: abc 123\r\n"
                      "Content-Length: 5\r\n\r\nhello";
    const char *chunked = "POST /echo HTTP/1.1\r\nHost: b\r\n"
                          "Transfer-Encoding: chunked\r\n\r\n"
                          "3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n";
    struct h_resp r;
    json_t *st;

    send_req(f, f->legacy_port, req);
    assert_int_equal(h_read_response(f->fd, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, strlen(req));
    assert_memory_equal(r.body, req, strlen(req));
    h_resp_free(&r);

    /* the raw chunked framing, trailer included, comes back as received */
    send_req(f, f->legacy_port, chunked);
    assert_int_equal(h_read_response(f->fd, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, chunked);
    h_resp_free(&r);

    st = h_backend_stats(f->legacy_port);
    assert_non_null(st);
    assert_int_equal(json_integer_value(json_object_get(st, "requests")), 2);
    assert_int_equal(json_integer_value(json_object_get(st, "bodies")), 2);
    assert_int_equal(json_integer_value(json_object_get(st, "body_bytes")), 10);
    assert_string_equal(json_string_value(json_object_get(st, "last_request_head")),
                        "POST /echo HTTP/1.1\r\nHost: b\r\n"
                        "Transfer-Encoding: chunked\r\n\r\n");
    json_decref(st);
}

static void
test_keepalive_and_pipelining(void **state)
{
    struct fixture *f = *state;
    struct h_resp r;

    send_req(f, f->new_port, "GET /a HTTP/1.1\r\nHost: b\r\n\r\n");
    assert_int_equal(h_read_response(f->fd, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "new\n");
    assert_false(r.closed);
    h_resp_free(&r);

    /* two pipelined requests, the first delayed: answers keep their order */
    assert_int_equal(h_backend_set(f->new_port, "script=delay200"), 0);
    send_req(f, f->new_port, "GET /slow HTTP/1.1\r\nHost: b\r\n\r\n"
                             "GET /echo HTTP/1.1\r\nHost: b\r\nX-Mark: 2\r\n\r\n");
    assert_int_equal(h_read_response(f->fd, &r), 0);
    assert_string_equal(r.body, "new\n");
    h_resp_free(&r);
    assert_int_equal(h_read_response(f->fd, &r), 0);
    assert_non_null(strstr(r.body, "X-Mark: 2\r\n"));
    h_resp_free(&r);

    /* Connection: close is honoured: answer, then EOF */
    send_req(f, f->new_port, "GET /last HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n");
    assert_int_equal(h_read_response(f->fd, &r), 0);
    assert_int_equal(r.status, 200);
    h_resp_free(&r);
    assert_true(h_peer_closed(f->fd, 2000));

    assert_int_equal(h_backend_requests(f->new_port), 4);
    assert_int_equal(h_backend_requests(f->legacy_port), 0);
}

/* Counts 500s among <n> requests on one keep-alive connection. */
static int
count_errors(struct fixture *f, int port, int n)
{
    int i, errors = 0, fd = h_connect(port);

    assert_true(fd >= 0);
    for (i = 0; i < n; i++) {
        const char *req = "GET /x HTTP/1.1\r\nHost: b\r\n\r\n";
        struct h_resp r;

        assert_int_equal(h_send_all(fd, req, strlen(req)), 0);
        assert_int_equal(h_read_response(fd, &r), 0);
        assert_true(r.status == 200 || r.status == 500);
        errors += r.status == 500;
        h_resp_free(&r);
    }
    close(fd);
    return errors;
}

static void
test_error_rate_is_seeded(void **state)
{
    struct fixture *f = *state;
    int first, second, other;

    assert_int_equal(h_backend_set(f->legacy_port, "error_rate=0.5&seed=42"), 0);
    first = count_errors(f, f->legacy_port, 200);
    assert_in_range(first, 60, 140);

    /* the same seed gives the same sequence */
    assert_int_equal(h_backend_set(f->legacy_port, "reset=1&error_rate=0.5&seed=42"), 0);
    second = count_errors(f, f->legacy_port, 200);
    assert_int_equal(first, second);

    /* status= picks the error status; rate 0 and 1 are exact */
    assert_int_equal(h_backend_set(f->new_port, "error_rate=0.5&seed=7"), 0);
    other = count_errors(f, f->new_port, 200);
    assert_in_range(other, 60, 140);
    assert_int_equal(h_backend_set(f->new_port, "error_rate=1&status=503"), 0);
    {
        struct h_resp r;

        assert_int_equal(h_get(f->new_port, "/", NULL, &r), 0);
        assert_int_equal(r.status, 503);
        assert_string_equal(r.body, "new\n");
        h_resp_free(&r);
    }
    assert_int_equal(h_backend_set(f->new_port, "error_rate=0"), 0);
    assert_int_equal(count_errors(f, f->new_port, 20), 0);

    /* a bad value is refused and changes nothing */
    assert_int_equal(h_backend_set(f->new_port, "error_rate=1&status=99"), -1);
    assert_int_equal(h_backend_set(f->new_port, "nosuchkey=1"), -1);
    assert_int_equal(count_errors(f, f->new_port, 5), 0);
}

static void
test_script_order(void **state)
{
    struct fixture *f = *state;
    static const int want[] = { 200, 200, 500, 503, 200, 200 };
    struct h_resp r;
    size_t i;

    assert_int_equal(h_backend_set(f->legacy_port, "script=200x2,500x1,503"), 0);
    for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        send_req(f, f->legacy_port, "GET / HTTP/1.1\r\nHost: b\r\n\r\n");
        assert_int_equal(h_read_response(f->fd, &r), 0);
        assert_int_equal(r.status, want[i]);
        h_resp_free(&r);
    }
    /* then hang: the script's last item leaves the connection silent */
    assert_int_equal(h_backend_set(f->legacy_port, "script=200,hang"), 0);
    send_req(f, f->legacy_port, "GET / HTTP/1.1\r\nHost: b\r\n\r\n");
    assert_int_equal(h_read_response(f->fd, &r), 0);
    assert_int_equal(r.status, 200);
    h_resp_free(&r);
    send_req(f, f->legacy_port, "GET / HTTP/1.1\r\nHost: b\r\n\r\n");
    assert_int_equal(h_set_timeout_ms(f->fd, 300), 0);
    assert_int_equal(h_read_response(f->fd, &r), -1);
    assert_int_equal(r.status, 0);
    h_resp_free(&r);
    assert_int_equal(h_backend_set(f->legacy_port, "script=bogus"), -1);
}

/* 204 and 304 answers carry no body (204 no Content-Length at all, 304 the
 * representation's), so the connection stays usable after them. */
static void
test_bodyless_statuses(void **state)
{
    struct fixture *f = *state;
    static const int want[] = { 204, 304, 200 };
    char cl[32];
    struct h_resp r;
    size_t i;

    assert_int_equal(h_backend_set(f->legacy_port, "script=204,304"), 0);
    for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        send_req(f, f->legacy_port, "GET / HTTP/1.1\r\nHost: b\r\n\r\n");
        assert_int_equal(h_read_response(f->fd, &r), 0);
        assert_int_equal(r.status, want[i]);
        if (want[i] == 204) {
            assert_null(h_resp_header(&r, "Content-Length", cl, sizeof(cl)));
            assert_null(h_resp_header(&r, "Transfer-Encoding", cl, sizeof(cl)));
        }
        if (want[i] == 200)
            assert_string_equal(r.body, "legacy\n");
        else
            assert_int_equal(r.body_len, 0);
        h_resp_free(&r);
    }
}

static void
test_delay(void **state)
{
    struct fixture *f = *state;
    struct h_resp r;
    long long t0, took;

    assert_int_equal(h_backend_set(f->new_port, "delay_ms=300"), 0);
    t0 = h_now_ms();
    assert_int_equal(h_get(f->new_port, "/", NULL, &r), 0);
    took = h_now_ms() - t0;
    assert_int_equal(r.status, 200);
    h_resp_free(&r);
    assert_in_range(took, 290, 3000);

    /* control and health answers are never delayed */
    t0 = h_now_ms();
    assert_int_equal(h_get(f->new_port, "/healthz", NULL, &r), 0);
    h_resp_free(&r);
    assert_in_range(h_now_ms() - t0, 0, 250);
}

static void
test_reset_mode(void **state)
{
    struct fixture *f = *state;
    struct h_resp r;

    assert_int_equal(h_backend_set(f->legacy_port, "mode=reset"), 0);
    send_req(f, f->legacy_port, "GET / HTTP/1.1\r\nHost: b\r\n\r\n");
    assert_int_equal(h_read_response(f->fd, &r), -1);
    assert_false(r.closed);            /* an RST, not a clean EOF */
    h_resp_free(&r);
    assert_int_equal(h_backend_requests(f->legacy_port), 1);
}

static void
test_stall_mode(void **state)
{
    struct fixture *f = *state;
    struct h_resp r;
    long long t0;

    assert_int_equal(h_backend_set(f->legacy_port, "mode=stall"), 0);
    send_req(f, f->legacy_port, "POST / HTTP/1.1\r\nHost: b\r\nContent-Length: 3\r\n\r\nabc");
    assert_int_equal(h_set_timeout_ms(f->fd, 300), 0);
    t0 = h_now_ms();
    assert_int_equal(h_read_response(f->fd, &r), -1);
    assert_in_range(h_now_ms() - t0, 250, 3000);
    h_resp_free(&r);
    /* it did read the whole request */
    assert_int_equal(h_backend_requests(f->legacy_port), 1);
}

static void
test_close_and_garbage_modes(void **state)
{
    struct fixture *f = *state;
    struct h_resp r;

    assert_int_equal(h_backend_set(f->legacy_port, "mode=close"), 0);
    send_req(f, f->legacy_port, "GET / HTTP/1.1\r\nHost: b\r\n\r\n");
    assert_int_equal(h_read_response(f->fd, &r), -1);
    assert_true(r.closed);             /* a clean EOF, no byte of answer */
    h_resp_free(&r);
    close(f->fd);
    f->fd = -1;

    assert_int_equal(h_backend_set(f->legacy_port, "mode=garbage"), 0);
    send_req(f, f->legacy_port, "GET / HTTP/1.1\r\nHost: b\r\n\r\n");
    assert_int_equal(h_read_response(f->fd, &r), -1);
    h_resp_free(&r);
    assert_int_equal(h_backend_requests(f->legacy_port), 2);
}

static void
test_healthz(void **state)
{
    struct fixture *f = *state;
    struct h_resp r;

    assert_int_equal(h_get(f->new_port, "/healthz", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "ok\n");
    h_resp_free(&r);

    /* modes and errors leave health checks alone; healthy= drives them */
    assert_int_equal(h_backend_set(f->new_port, "healthy=0&mode=reset"), 0);
    assert_int_equal(h_get(f->new_port, "/healthz", NULL, &r), 0);
    assert_int_equal(r.status, 503);
    h_resp_free(&r);
    assert_int_equal(h_backend_set(f->new_port, "healthy=1"), 0);
    assert_int_equal(h_get(f->new_port, "/healthz", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    h_resp_free(&r);
    assert_int_equal(h_backend_requests(f->new_port), 0);
}

static void
test_stats_counts(void **state)
{
    struct fixture *f = *state;
    struct h_resp r;
    json_t *st;
    int i;

    assert_int_equal(h_backend_requests(f->legacy_port), 0);
    for (i = 0; i < 3; i++) {
        assert_int_equal(h_get(f->legacy_port, "/count", "X-Seq: 1\r\n", &r), 0);
        h_resp_free(&r);
    }
    assert_int_equal(h_backend_requests(f->legacy_port), 3);
    assert_int_equal(h_backend_requests(f->new_port), 0);

    /* a head without its whole body is a head, not a request */
    send_req(f, f->legacy_port, "POST /up HTTP/1.1\r\nHost: b\r\nContent-Length: 10\r\n\r\nabc");
    h_sleep_ms(100);
    st = h_backend_stats(f->legacy_port);
    assert_non_null(st);
    assert_int_equal(json_integer_value(json_object_get(st, "requests")), 3);
    assert_int_equal(json_integer_value(json_object_get(st, "heads")), 4);
    assert_true(json_integer_value(json_object_get(st, "connections")) >= 4);
    assert_non_null(strstr(json_string_value(json_object_get(st, "last_request_head")),
                           "X-Seq: 1\r\n"));
    json_decref(st);

    assert_int_equal(h_backend_set(f->legacy_port, "reset=1"), 0);
    st = h_backend_stats(f->legacy_port);
    assert_non_null(st);
    assert_int_equal(json_integer_value(json_object_get(st, "requests")), 0);
    assert_int_equal(json_integer_value(json_object_get(st, "heads")), 0);
    /* only the connection that asked for these stats */
    assert_int_equal(json_integer_value(json_object_get(st, "connections")), 1);
    json_decref(st);
}

static void
test_chunked_and_body_bytes(void **state)
{
    struct fixture *f = *state;
    struct h_resp r;
    char v[64];
    size_t i;

    assert_int_equal(h_backend_set(f->new_port, "chunked=1&body_bytes=10000"), 0);
    assert_int_equal(h_get(f->new_port, "/big", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(h_resp_header(&r, "Transfer-Encoding", v, sizeof(v)), "chunked");
    assert_null(h_resp_header(&r, "Content-Length", v, sizeof(v)));
    assert_int_equal(r.body_len, 10000);
    for (i = 0; i < r.body_len; i++)
        assert_int_equal(r.body[i], "new"[i % 3]);
    h_resp_free(&r);

    /* a HEAD answer has the head only; the next answer still parses */
    send_req(f, f->new_port, "HEAD /big HTTP/1.1\r\nHost: b\r\n\r\n"
                             "GET /small HTTP/1.1\r\nHost: b\r\n\r\n");
    assert_int_equal(h_read_response_head(f->fd, &r), 0);
    assert_int_equal(r.status, 200);
    h_resp_free(&r);
    assert_int_equal(h_read_response(f->fd, &r), 0);
    assert_int_equal(r.body_len, 10000);
    h_resp_free(&r);
    assert_int_equal(h_backend_set(f->new_port, "chunked=0&body_bytes=0"), 0);
    assert_int_equal(h_get(f->new_port, "/", NULL, &r), 0);
    assert_int_equal(r.body_len, 0);
    assert_string_equal(h_resp_header(&r, "Content-Length", v, sizeof(v)), "0");
    h_resp_free(&r);
}

static void
test_bad_requests(void **state)
{
    struct fixture *f = *state;
    struct h_resp r;

    /* Content-Length with Transfer-Encoding: refused, connection closed */
    send_req(f, f->legacy_port, "POST / HTTP/1.1\r\nHost: b\r\nContent-Length: 3\r\n"
                                "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    assert_int_equal(h_read_response(f->fd, &r), 0);
    assert_int_equal(r.status, 400);
    h_resp_free(&r);
    assert_true(h_peer_closed(f->fd, 2000));
    close(f->fd);
    f->fd = -1;

    send_req(f, f->legacy_port, "GET / HTTP/2.0\r\nHost: b\r\n\r\n");
    assert_int_equal(h_read_response(f->fd, &r), 0);
    assert_int_equal(r.status, 505);
    h_resp_free(&r);
    close(f->fd);
    f->fd = -1;

    send_req(f, f->legacy_port, "GET / HTTP/1.1\r\nHost : b\r\n\r\n");
    assert_int_equal(h_read_response(f->fd, &r), 0);
    assert_int_equal(r.status, 400);
    h_resp_free(&r);
    assert_int_equal(h_backend_requests(f->legacy_port), 0);
}

/* raw=, raw_close=, pad_head= and the script item raw. */
static void
test_raw_and_pad_head(void **state)
{
    struct fixture *f = *state;
    const char *req = "GET / HTTP/1.1\r\nHost: b\r\n\r\n";
    struct h_resp r;
    char v[64], buf[64];

    /* exactly the bytes, %00 included; the connection stays open */
    assert_int_equal(h_backend_set(f->legacy_port,
                                   "raw=HTTP%2F1.1%20299%20X%0D%0AContent-Length%3A%203"
                                   "%0D%0A%0D%0Aa%00b"), 0);
    send_req(f, f->legacy_port, req);
    assert_int_equal(recv(f->fd, buf, 40, MSG_WAITALL), 40);
    assert_memory_equal(buf, "HTTP/1.1 299 X\r\nContent-Length: 3\r\n\r\na\0b", 40);
    send_req(f, f->legacy_port, req);
    assert_int_equal(h_read_response(f->fd, &r), 0);
    assert_int_equal(r.status, 299);
    h_resp_free(&r);
    /* raw_close: then FIN */
    assert_int_equal(h_backend_set(f->legacy_port, "raw_close=1"), 0);
    send_req(f, f->legacy_port, req);
    assert_int_equal(h_read_response(f->fd, &r), 0);
    assert_true(h_peer_closed(f->fd, 2000));
    h_resp_free(&r);
    close(f->fd);
    f->fd = -1;

    /* a script item uses the raw bytes once; raw= off answers normally */
    assert_int_equal(h_backend_set(f->legacy_port, "script=201,raw&raw_close=0"), 0);
    assert_int_equal(h_get(f->legacy_port, "/", NULL, &r), 0);
    assert_int_equal(r.status, 201);
    h_resp_free(&r);
    assert_int_equal(h_get(f->legacy_port, "/", NULL, &r), 0);
    assert_int_equal(r.status, 299);
    h_resp_free(&r);
    assert_int_equal(h_backend_set(f->legacy_port, "raw=&pad_head=3000"), 0);
    assert_int_equal(h_get(f->legacy_port, "/", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "legacy\n");
    assert_non_null(h_resp_header(&r, "X-Pad", v, sizeof(v)));
    assert_int_equal(strlen(v), sizeof(v) - 1);        /* truncated copy of 3000 */
    assert_non_null(strstr(r.head, "X-Pad: "));
    assert_true(strlen(r.head) > 3000);
    h_resp_free(&r);

    /* strict: nothing applied when a key is bad */
    assert_int_equal(h_backend_set(f->legacy_port, "script=raw"), -1);    /* no raw= */
    assert_int_equal(h_backend_set(f->legacy_port, "pad_head=+1"), -1);
    assert_int_equal(h_backend_set(f->legacy_port, "raw=%4"), -1);
    assert_int_equal(h_backend_set(f->legacy_port, "raw=%G0"), -1);
    assert_int_equal(h_backend_set(f->legacy_port, "mode=raw"), -1);
    assert_int_equal(h_backend_set(f->legacy_port, "mode%00=reset"), -1);
    assert_int_equal(h_backend_set(f->legacy_port, "pad_head=0&delay_ms=x"), -1);
    assert_int_equal(h_get(f->legacy_port, "/", NULL, &r), 0);
    assert_true(strlen(r.head) > 3000);                 /* pad_head unchanged */
    h_resp_free(&r);
}

/* midbody: head, half the body, RST; midstall: the same, then silence. */
static void
test_midbody_and_midstall(void **state)
{
    struct fixture *f = *state;
    struct h_resp r;
    char v[32];

    assert_int_equal(h_backend_set(f->legacy_port, "mode=midbody&body_bytes=10000"), 0);
    send_req(f, f->legacy_port, "GET / HTTP/1.1\r\nHost: b\r\n\r\n");
    assert_int_equal(h_read_response(f->fd, &r), -1);
    assert_int_equal(r.status, 200);
    assert_string_equal(h_resp_header(&r, "Content-Length", v, sizeof(v)), "10000");
    assert_int_equal(r.body_len, 5000);
    assert_false(r.closed);                             /* an RST, not a FIN */
    h_resp_free(&r);
    close(f->fd);
    f->fd = -1;

    /* chunked and 65536 by default; the connection stays, then the client
     * leaving counts as an aborted answer */
    assert_int_equal(h_backend_set(f->legacy_port, "reset=1&mode=midstall&chunked=1"), 0);
    send_req(f, f->legacy_port, "GET / HTTP/1.1\r\nHost: b\r\n\r\n");
    assert_int_equal(h_set_timeout_ms(f->fd, 300), 0);
    assert_int_equal(h_read_response(f->fd, &r), -1);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 32768);
    assert_false(r.closed);
    h_resp_free(&r);
    assert_int_equal(h_backend_stat(f->legacy_port, "aborted"), 0);
    close(f->fd);
    f->fd = -1;
    assert_int_equal(h_backend_wait_stat(f->legacy_port, "aborted", 1, 3000), 1);
    assert_int_equal(h_backend_wait_stat(f->legacy_port, "open", 0, 3000), 0);
}

/* /ws: 101 and echo with the upgrade fields, ordinary without. */
static void
test_ws_echo(void **state)
{
    struct fixture *f = *state;
    struct h_resp r;
    char v[32], buf[16];

    send_req(f, f->new_port, "GET /ws HTTP/1.1\r\nHost: b\r\nUpgrade: websocket\r\n"
                             "Connection: keep-alive, Upgrade\r\n\r\nhi");
    assert_int_equal(h_read_response(f->fd, &r), 0);
    assert_int_equal(r.status, 101);
    assert_string_equal(h_resp_header(&r, "Upgrade", v, sizeof(v)), "websocket");
    h_resp_free(&r);
    assert_int_equal(recv(f->fd, buf, 2, MSG_WAITALL), 2);
    assert_memory_equal(buf, "hi", 2);
    assert_int_equal(h_send_all(f->fd, "GET / HTTP/1.1\r\n\r\n", 18), 0);
    assert_int_equal(recv(f->fd, buf, 16, MSG_WAITALL), 16);
    assert_memory_equal(buf, "GET / HTTP/1.1\r\n", 16);
    assert_int_equal(recv(f->fd, buf, 2, MSG_WAITALL), 2);
    assert_int_equal(h_backend_stat(f->new_port, "requests"), 1);
    /* the client's EOF ends the echo: flush, FIN */
    assert_int_equal(shutdown(f->fd, SHUT_WR), 0);
    assert_true(h_peer_closed(f->fd, 2000));
    close(f->fd);
    f->fd = -1;
    assert_int_equal(h_backend_wait_stat(f->new_port, "open", 0, 3000), 0);

    assert_int_equal(h_get(f->new_port, "/ws", "Upgrade: websocket\r\n", &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "new\n");
    h_resp_free(&r);
    assert_int_equal(h_backend_stat(f->new_port, "aborted"), 0);
    assert_int_equal(h_backend_stat(f->new_port, "request_connections"), 2);
}

/* A client leaving during delay_ms aborts its request at once. */
static void
test_aborted_during_delay(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(h_backend_set(f->legacy_port, "delay_ms=5000"), 0);
    send_req(f, f->legacy_port, "GET / HTTP/1.1\r\nHost: b\r\n\r\n");
    assert_int_equal(h_backend_wait_stat(f->legacy_port, "requests", 1, 3000), 1);
    assert_int_equal(h_backend_stat(f->legacy_port, "open"), 1);
    close(f->fd);
    f->fd = -1;
    assert_int_equal(h_backend_wait_stat(f->legacy_port, "aborted", 1, 3000), 1);
    assert_int_equal(h_backend_wait_stat(f->legacy_port, "open", 0, 3000), 0);
}

static void
test_tcp_mode_echo_and_half_close(void **state)
{
    struct fixture *f = *state;
    int port = h_free_port(), fd;
    char buf[256];
    size_t len = 0;
    ssize_t n;

    assert_true(port > 0);
    assert_true(h_backend_start("tcpbe", port, f->dir, true) > 0);
    fd = h_connect(port);
    assert_true(fd >= 0);
    f->fd = fd;
    assert_int_equal(h_send_all(fd, "hello ", 6), 0);
    assert_int_equal(h_send_all(fd, "world", 5), 0);
    assert_int_equal(shutdown(fd, SHUT_WR), 0);
    /* the name line and the echo arrive, then EOF (not a reset) */
    while ((n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0)) > 0)
        len += (size_t)n;
    assert_int_equal(n, 0);
    buf[len] = '\0';
    assert_string_equal(buf, "tcpbe\nhello world");
}

static void
test_stop_is_clean(void **state)
{
    struct fixture *f = *state;
    int status;

    /* SIGTERM: exits 0 even with a client connected */
    f->fd = h_connect(f->legacy_port);
    assert_true(f->fd >= 0);
    assert_int_equal(h_stop(f->legacy, SIGTERM, 3000), 0);
    assert_true(h_alive(f->fresh, &status));
    assert_int_equal(h_stop(f->fresh, SIGKILL, 3000), 128 + SIGKILL);
    assert_true(h_peer_closed(f->fd, 2000));
    /* a stopped pid is forgotten: stopping it again reports -1 */
    assert_int_equal(h_stop(f->legacy, SIGTERM, 100), -1);
}

static void
test_harness_utilities(void **state)
{
    struct fixture *f = *state;
    char path[512];
    char *text;
    int a = h_free_port(), b = h_free_port();

    assert_true(a > 0 && b > 0 && a != b);
    assert_true(a != f->legacy_port && a != f->new_port);
    snprintf(path, sizeof(path), "%s/sub", f->dir);
    assert_int_equal(h_wait_path(path, 50), -1);
    snprintf(path, sizeof(path), "%s/file.txt", f->dir);
    assert_int_equal(h_write_file(path, "line one\nline two\n"), 0);
    assert_int_equal(h_wait_path(path, 50), 0);
    assert_int_equal(h_wait_log(path, "line two", 100), 0);
    text = h_read_file(path);
    assert_non_null(text);
    assert_string_equal(text, "line one\nline two\n");
    free(text);
    assert_null(h_read_file("/nonexistent/file"));
    assert_int_equal(h_wait_port(f->legacy_port, 1000), 0);
    assert_int_equal(h_wait_port(a, 100), -1);
    assert_non_null(strstr(h_bin("cutoverd"), "/cutoverd"));
    assert_non_null(strstr(h_src("conf/demo.json"), "/conf/demo.json"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_name_in_body_and_header, setup, teardown),
        cmocka_unit_test_setup_teardown(test_echo_returns_head_and_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keepalive_and_pipelining, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_rate_is_seeded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_script_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bodyless_statuses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_mode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stall_mode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_and_garbage_modes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_healthz, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stats_counts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chunked_and_body_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_raw_and_pad_head, setup, teardown),
        cmocka_unit_test_setup_teardown(test_midbody_and_midstall, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ws_echo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_aborted_during_delay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tcp_mode_echo_and_half_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_is_clean, setup, teardown),
        cmocka_unit_test_setup_teardown(test_harness_utilities, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
