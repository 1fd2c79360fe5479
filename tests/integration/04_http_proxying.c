/*
 * What the proxy does to requests and responses on the way: forwarded
 * headers, hop-by-hop removal, request bodies by Content-Length and chunked
 * (re-framed), keep-alive and pipelining in order, HEAD, any token as a
 * method (case-sensitive: "head" is not HEAD), HTTP/1.0 clients,
 * large streamed responses, a malformed request reaching no backend, 502 on
 * a refused backend and the retry on another server of the same side.
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

static struct fx *
start(void **state, unsigned nservers, const char *extra)
{
    assert_int_equal(fx_open(state, false, nservers, extra, 7), 0);
    return *state;
}

static void
test_forwarded_and_hop_by_hop(void **state)
{
    struct fx *f = start(state, 1, NULL);
    struct h_resp r;

    assert_int_equal(h_exchange(f->proxy_port,
        "GET /echo HTTP/1.1\r\n"
        "Host: example.test\r\n"
        "X-Forwarded-For: 203.0.113.9\r\n"
        "X-Forwarded-Proto: https\r\n"
        "Connection: keep-alive, X-Secret\r\n"
        "X-Secret: drop me\r\n"
        "Keep-Alive: timeout=5\r\n"
        "Proxy-Connection: keep-alive\r\n"
        "TE: trailers\r\n"
        "X-Keep: yes\r\n"
        "\r\n", &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "GET /echo HTTP/1.1\r\n"));
    assert_non_null(strstr(r.body, "Host: example.test\r\n"));
    assert_non_null(strstr(r.body, "X-Forwarded-For: 203.0.113.9, 127.0.0.1\r\n"));
    assert_non_null(strstr(r.body, "X-Forwarded-Proto: http\r\n"));
    assert_null(strstr(r.body, "https"));
    assert_non_null(strstr(r.body, "X-Keep: yes\r\n"));
    assert_null(strstr(r.body, "X-Secret"));
    assert_null(strstr(r.body, "Keep-Alive"));
    assert_null(strstr(r.body, "Proxy-Connection"));
    assert_null(strstr(r.body, "TE:"));
    h_resp_free(&r);
}

static void
test_request_bodies(void **state)
{
    struct fx *f = start(state, 1, NULL);
    struct h_resp r;

    /* Content-Length body arrives whole */
    assert_int_equal(h_exchange(f->proxy_port,
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world", &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "Content-Length: 11\r\n"));
    assert_non_null(strstr(r.body, "\r\n\r\nhello world"));
    h_resp_free(&r);

    /* a small chunked body is buffered, validated and sent with a length */
    assert_int_equal(h_exchange(f->proxy_port,
        "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n", &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "Content-Length: 11\r\n"));
    assert_null(strstr(r.body, "Transfer-Encoding"));
    assert_null(strstr(r.body, "X-Trailer"));
    assert_non_null(strstr(r.body, "\r\n\r\nhello world"));
    h_resp_free(&r);
}

/* A chunked body over buffer_body_bytes streams upstream chunked. */
static void
test_large_chunked_request_streams(void **state)
{
    struct fx *f = start(state, 1, ",\"limits\": {\"buffer_body_bytes\": 1024}");
    struct h_resp r;
    char *req = malloc(64 * 1024), *p;
    size_t i;

    assert_non_null(req);
    p = req + sprintf(req, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (i = 0; i < 20; i++)
        p += sprintf(p, "100\r\n%0256d\r\n", (int)i);
    sprintf(p, "0\r\n\r\n");
    assert_int_equal(h_exchange(f->proxy_port, req, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "Transfer-Encoding: chunked\r\n"));
    assert_null(strstr(r.body, "Content-Length"));
    h_resp_free(&r);
    free(req);
}

static void
test_keepalive_and_pipelining(void **state)
{
    struct fx *f = start(state, 1, NULL);
    const char *three =
        "GET /a HTTP/1.1\r\nHost: t\r\n\r\n"
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
        "GET /echo HTTP/1.1\r\nHost: t\r\nX-Third: 3\r\n\r\n";
    struct h_resp r;
    int fd = h_connect(f->proxy_port);

    assert_true(fd >= 0);
    memset(&r, 0, sizeof(r));
    assert_int_equal(h_send_all(fd, three, strlen(three)), 0);
    assert_int_equal(h_read_response(fd, &r), 0);
    assert_string_equal(r.body, "legacy\n");
    h_resp_free(&r);
    assert_int_equal(h_read_response(fd, &r), 0);
    assert_non_null(strstr(r.body, "POST /echo"));
    assert_non_null(strstr(r.body, "\r\n\r\nabc"));
    h_resp_free(&r);
    assert_int_equal(h_read_response(fd, &r), 0);
    assert_non_null(strstr(r.body, "X-Third: 3"));
    assert_false(r.closed);
    h_resp_free(&r);
    close(fd);
}

static void
test_head_and_http10(void **state)
{
    struct fx *f = start(state, 1, NULL);
    struct h_resp r;
    char buf[64];
    int fd;

    /* HEAD: the length of the representation, no body */
    fd = h_connect(f->proxy_port);
    assert_true(fd >= 0);
    memset(&r, 0, sizeof(r));
    assert_int_equal(h_send_all(fd, "HEAD / HTTP/1.1\r\nHost: t\r\n\r\n", 28), 0);
    assert_int_equal(h_read_response_head(fd, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(h_resp_header(&r, "Content-Length", buf, sizeof(buf)), "7");
    h_resp_free(&r);
    /* the connection is still usable: the HEAD left no body bytes behind */
    assert_int_equal(h_send_all(fd, "GET / HTTP/1.1\r\nHost: t\r\n\r\n", 27), 0);
    assert_int_equal(h_read_response(fd, &r), 0);
    assert_string_equal(r.body, "legacy\n");
    h_resp_free(&r);
    close(fd);

    /* HTTP/1.0 client, chunked response upstream: never sent chunked */
    assert_int_equal(h_backend_set(f->port[0][0], "chunked=1"), 0);
    assert_int_equal(h_exchange(f->proxy_port, "GET / HTTP/1.0\r\n\r\n", &r), 0);
    assert_int_equal(r.status, 200);
    assert_null(h_resp_header(&r, "Transfer-Encoding", buf, sizeof(buf)));
    assert_string_equal(r.body, "legacy\n");
    assert_true(r.closed);
    h_resp_free(&r);
    /* and an HTTP/1.1 client gets it chunked */
    assert_int_equal(h_exchange(f->proxy_port, "GET / HTTP/1.1\r\nHost: t\r\n\r\n", &r), 0);
    assert_string_equal(h_resp_header(&r, "Transfer-Encoding", buf, sizeof(buf)), "chunked");
    assert_string_equal(r.body, "legacy\n");
    h_resp_free(&r);
}

/* Any token is a method: each goes up as it came, its body framed by its
 * own fields. Methods are case-sensitive, so "head" is not HEAD: its
 * response keeps its body (treating it as HEAD would leave the body behind
 * and put the client out of step). Pipelined on one connection, so a
 * response read out of step shows in the next one. */
static void
test_token_methods(void **state)
{
    static const char reqs[] =
        "M-SEARCH /echo HTTP/1.1\r\nHost: t\r\n\r\n"
        "PROPFIND /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
        "FOO_BAR /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        "3\r\nabc\r\n0\r\n\r\n"
        "head / HTTP/1.1\r\nHost: t\r\n\r\n"
        "GET / HTTP/1.1\r\nHost: t\r\n\r\n";
    struct fx *f = start(state, 1, NULL);
    struct h_resp r;
    int fd = h_connect(f->proxy_port);

    assert_true(fd >= 0);
    memset(&r, 0, sizeof(r));
    assert_int_equal(h_send_all(fd, reqs, sizeof(reqs) - 1), 0);
    assert_int_equal(h_read_response(fd, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(strncmp(r.body, "M-SEARCH /echo HTTP/1.1\r\n", 25), 0);
    h_resp_free(&r);
    assert_int_equal(h_read_response(fd, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(strncmp(r.body, "PROPFIND /echo HTTP/1.1\r\n", 25), 0);
    assert_non_null(strstr(r.body, "\r\nContent-Length: 5\r\n"));
    assert_non_null(strstr(r.body, "\r\n\r\nhello"));
    h_resp_free(&r);
    assert_int_equal(h_read_response(fd, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(strncmp(r.body, "FOO_BAR /echo HTTP/1.1\r\n", 24), 0);
    assert_non_null(strstr(r.body, "\r\nContent-Length: 3\r\n"));
    assert_non_null(strstr(r.body, "\r\n\r\nabc"));
    h_resp_free(&r);
    assert_int_equal(h_read_response(fd, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "legacy\n");
    h_resp_free(&r);
    assert_int_equal(h_read_response(fd, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "legacy\n");
    assert_false(r.closed);
    h_resp_free(&r);
    close(fd);
    assert_int_equal(h_backend_requests(f->port[0][0]), 5);
}

static void
test_large_response(void **state)
{
    struct fx *f = start(state, 1, NULL);
    struct h_resp r;

    assert_int_equal(h_backend_set(f->port[0][0], "body_bytes=3000000"), 0);
    assert_int_equal(h_exchange(f->proxy_port, "GET / HTTP/1.1\r\nHost: t\r\n\r\n", &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 3000000);
    h_resp_free(&r);
    assert_int_equal(h_backend_set(f->port[0][0], "chunked=1"), 0);
    assert_int_equal(h_exchange(f->proxy_port, "GET / HTTP/1.1\r\nHost: t\r\n\r\n", &r), 0);
    assert_int_equal(r.body_len, 3000000);
    h_resp_free(&r);
}

/* A malformed request gets 400 and reaches no backend at all. */
static void
test_bad_request_reaches_no_backend(void **state)
{
    static const char *const bad[] = {
        "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        "GET / HTTP/1.1\r\nHost : t\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    };
    struct fx *f = start(state, 1, NULL);
    struct h_resp r;
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(h_exchange(f->proxy_port, bad[i], &r), 0);
        if (r.status != 400)
            fail_msg("case %zu: status %d", i, r.status);
        h_resp_free(&r);
    }
    assert_int_equal(h_backend_requests(f->port[0][0]), 0);
    assert_int_equal(h_backend_requests(f->port[1][0]), 0);
}

static void
test_refused_backend_502_and_retry(void **state)
{
    struct fx *f = start(state, 2, NULL);
    struct h_resp r;
    int i, before;

    /* one of the two legacy servers is gone: every request still succeeds */
    assert_int_equal(h_stop(f->backend[0][0], SIGTERM, 5000), 0);
    for (i = 0; i < 6; i++) {
        assert_int_equal(h_exchange(f->proxy_port, "GET / HTTP/1.1\r\nHost: t\r\n\r\n", &r), 0);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.body, "legacy2\n");
        h_resp_free(&r);
    }
    before = (int)h_backend_requests(f->port[0][1]);
    assert_int_equal(before, 6);
    /* both gone: 502, and nothing crosses to new */
    assert_int_equal(h_stop(f->backend[0][1], SIGTERM, 5000), 0);
    assert_int_equal(h_exchange(f->proxy_port, "GET / HTTP/1.1\r\nHost: t\r\n\r\n", &r), 0);
    assert_int_equal(r.status, 502);
    h_resp_free(&r);
    assert_int_equal(h_backend_requests(f->port[1][0]), 0);
}

static void
test_backend_error_passed_through(void **state)
{
    struct fx *f = start(state, 1, NULL);
    struct h_resp r;
    json_t *root, *svc;

    assert_int_equal(h_backend_set(f->port[0][0], "script=503x2"), 0);
    assert_int_equal(h_exchange(f->proxy_port, "GET / HTTP/1.1\r\nHost: t\r\n\r\n", &r), 0);
    assert_int_equal(r.status, 503);
    h_resp_free(&r);
    assert_int_equal(h_exchange(f->proxy_port, "GET / HTTP/1.1\r\nHost: t\r\n\r\n", &r), 0);
    assert_int_equal(r.status, 503);
    h_resp_free(&r);
    assert_int_equal(h_exchange(f->proxy_port, "GET / HTTP/1.1\r\nHost: t\r\n\r\n", &r), 0);
    assert_int_equal(r.status, 200);
    h_resp_free(&r);
    /* counted in legacy's window */
    svc = fx_status(f, &root);
    assert_non_null(svc);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(
        json_object_get(svc, "legacy"), "window"), "requests")), 3);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(
        json_object_get(svc, "legacy"), "window"), "errors")), 2);
    json_decref(root);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_forwarded_and_hop_by_hop, fx_teardown),
        cmocka_unit_test_teardown(test_request_bodies, fx_teardown),
        cmocka_unit_test_teardown(test_large_chunked_request_streams, fx_teardown),
        cmocka_unit_test_teardown(test_keepalive_and_pipelining, fx_teardown),
        cmocka_unit_test_teardown(test_head_and_http10, fx_teardown),
        cmocka_unit_test_teardown(test_token_methods, fx_teardown),
        cmocka_unit_test_teardown(test_large_response, fx_teardown),
        cmocka_unit_test_teardown(test_bad_request_reaches_no_backend, fx_teardown),
        cmocka_unit_test_teardown(test_refused_backend_502_and_retry, fx_teardown),
        cmocka_unit_test_teardown(test_backend_error_passed_through, fx_teardown),
    };

    return cmocka_run_group_tests_name("integration: http proxying", tests, NULL, NULL);
}
