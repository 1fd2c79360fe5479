/*
 * 08_faults: every way a backend can fail, through the real cutoverd. A
 * refused connect (retried on the other server of the same side), a reset or
 * a close before the response head, garbage, invalid response framing, bad
 * chunk framing that came with the head and a response head over
 * limits.head_bytes all give 502 and leave no upstream connection behind; a
 * failure in the middle of a body cuts the client's response (never a clean
 * end); a client that goes away aborts the upstream
 * request without it counting as a backend failure. After each fault the
 * daemon is still up and serves the next request.
 *
 * Waits are bounded polls on the backend's /__backend/stats ("open",
 * "aborted", "request_connections"), never fixed sleeps.
 */
#include <ctype.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/integration/fixture.h"

#define GET_ROOT "GET / HTTP/1.1\r\nHost: t\r\n\r\n"

static struct fx *
start(void **state, unsigned nservers, const char *extra)
{
    assert_int_equal(fx_open(state, false, nservers, extra, 7), 0);
    return *state;
}

/* cutoverd is alive, its admin socket answers, and once the legacy backend at
 * <port> is back to normal a request through it gets a 200 from legacy. */
static void
assert_still_serving(struct fx *f, int port)
{
    json_t *root;
    struct h_resp r;

    assert_true(h_alive(f->proxy, NULL));
    assert_non_null(fx_status(f, &root));
    json_decref(root);
    if (port > 0)
        assert_int_equal(h_backend_set(port, "mode=normal&raw=&script=&delay_ms=0&"
                                             "pad_head=0&chunked=0"), 0);
    assert_int_equal(h_exchange(f->proxy_port, GET_ROOT, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(strncmp(r.body, "legacy", 6), 0);
    h_resp_free(&r);
}

/* ---- connect failures ------------------------------------------------- */

/* A port where nothing listens: 502, counted as a connect failure of that
 * server, and nothing crosses to the other side. */
static void
test_refused_502(void **state)
{
    struct fx *f = start(state, 1, NULL);
    struct h_resp r;
    char v[32];

    assert_int_equal(h_stop(f->backend[0][0], SIGTERM, 5000), 0);
    assert_int_equal(h_exchange(f->proxy_port, GET_ROOT, &r), 0);
    assert_int_equal(r.status, 502);
    assert_string_equal(h_resp_header(&r, "Connection", v, sizeof(v)), "close");
    h_resp_free(&r);
    assert_int_equal(fx_status_long(f, "legacy.counters.errors.connect"), 1);
    assert_int_equal(fx_status_long(f, "legacy.servers.0.failures"), 1);
    assert_int_equal(fx_status_long(f, "legacy.counters.error"), 1);
    assert_int_equal(h_backend_requests(f->port[1][0]), 0);
    assert_true(h_alive(f->proxy, NULL));

    /* the backend comes back on the same port: served again */
    f->backend[0][0] = h_backend_start("legacy", f->port[0][0], f->dir, false);
    assert_true(f->backend[0][0] > 0);
    assert_still_serving(f, -1);
}

/* Two servers on a side, one refusing: every request is served by the other
 * (the connect is retried within the side), the refusals are counted on the
 * dead server, and the new side sees nothing. */
static void
test_refused_retried_on_other_server(void **state)
{
    struct fx *f = start(state, 2, NULL);
    struct h_resp r;
    int i;

    assert_int_equal(h_stop(f->backend[0][0], SIGTERM, 5000), 0);
    for (i = 0; i < 6; i++) {
        assert_int_equal(h_exchange(f->proxy_port, GET_ROOT, &r), 0);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.body, "legacy2\n");
        h_resp_free(&r);
    }
    /* round robin sent half of them to the dead server first */
    assert_true(fx_status_long(f, "legacy.servers.0.failures") >= 1);
    assert_int_equal(fx_status_long(f, "legacy.servers.1.failures"), 0);
    assert_int_equal(fx_status_long(f, "legacy.counters.errors.connect"),
                     fx_status_long(f, "legacy.servers.0.failures"));
    assert_int_equal(fx_status_long(f, "legacy.counters.2xx"), 6);
    assert_int_equal(h_backend_requests(f->port[0][1]), 6);
    assert_int_equal(h_backend_requests(f->port[1][0]), 0);
    assert_int_equal(h_backend_requests(f->port[1][1]), 0);
    assert_true(h_alive(f->proxy, NULL));
}

/* ---- failures before the response head ----------------------------- */

static void
test_reset_before_head_502(void **state)
{
    struct fx *f = start(state, 1, NULL);
    struct h_resp r;

    assert_int_equal(h_backend_set(f->port[0][0], "mode=reset"), 0);
    assert_int_equal(h_exchange(f->proxy_port, GET_ROOT, &r), 0);
    assert_int_equal(r.status, 502);
    h_resp_free(&r);
    assert_int_equal(h_backend_requests(f->port[0][0]), 1);   /* never resent */
    assert_int_equal(fx_status_long(f, "legacy.counters.errors.upstream_reset"), 1);
    assert_int_equal(fx_status_long(f, "legacy.servers.0.failures"), 1);
    assert_int_equal(h_backend_requests(f->port[1][0]), 0);
    assert_still_serving(f, f->port[0][0]);
}

static void
test_close_before_head_502(void **state)
{
    struct fx *f = start(state, 1, NULL);
    struct h_resp r;

    assert_int_equal(h_backend_set(f->port[0][0], "mode=close"), 0);
    assert_int_equal(h_exchange(f->proxy_port, GET_ROOT, &r), 0);
    assert_int_equal(r.status, 502);
    h_resp_free(&r);
    assert_int_equal(h_backend_requests(f->port[0][0]), 1);
    assert_int_equal(fx_status_long(f, "legacy.counters.errors.upstream_reset"), 1);
    assert_int_equal(fx_status_long(f, "legacy.servers.0.failures"), 1);
    assert_still_serving(f, f->port[0][0]);
}

/* Garbage: 502, and the proxy closes the upstream connection itself (the
 * raw answer keeps the backend's side open, so only the proxy can close it). */
static void
test_garbage_502_connection_closed(void **state)
{
    struct fx *f = start(state, 1, NULL);
    int port = f->port[0][0];
    struct h_resp r;

    /* the backend's own garbage mode (it closes after) */
    assert_int_equal(h_backend_set(port, "mode=garbage"), 0);
    assert_int_equal(h_exchange(f->proxy_port, GET_ROOT, &r), 0);
    assert_int_equal(r.status, 502);
    h_resp_free(&r);
    assert_int_equal(fx_status_long(f, "legacy.counters.errors.upstream_bad_response"), 1);

    /* garbage on a connection the backend keeps open */
    assert_int_equal(h_backend_set_raw(port, "SSH-2.0-OpenSSH_9.2\r\n\r\n", "&mode=normal"), 0);
    assert_int_equal(h_exchange(f->proxy_port, GET_ROOT, &r), 0);
    assert_int_equal(r.status, 502);
    h_resp_free(&r);
    assert_int_equal(h_backend_wait_stat(port, "open", 0, 3000), 0);
    assert_int_equal(fx_status_long(f, "legacy.counters.errors.upstream_bad_response"), 2);
    assert_int_equal(fx_status_long(f, "legacy.servers.0.failures"), 2);
    /* the next request needs a new connection */
    assert_still_serving(f, port);
    assert_int_equal(h_backend_stat(port, "request_connections"), 3);
}

/* Invalid framing in the response head: 502, upstream connection closed by
 * the proxy (the backend keeps it open), the next request on a new one. */
static void
test_invalid_framing_502(void **state)
{
    static const char *const bad[] = {
        /* Content-Length with Transfer-Encoding */
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5\r\nhello\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
        "5\r\nhello\r\n0\r\n\r\n",
        /* two Content-Lengths */
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        "HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello!",
        /* bad Content-Length values */
        "HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\nhello",
        "HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\nhello",
        "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello",
        "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\nhello",
        /* a framing field spelt with "_": a client folding it into "-" would
         * read this body by another length than the proxy */
        "HTTP/1.1 200 OK\r\nTransfer_Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello",
        "HTTP/1.1 200 OK\r\ncontent_length: 5\r\n\r\nhello",
        /* chunked twice, and chunked in HTTP/1.0 */
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
        "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        /* broken heads */
        "HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\nContent-Length: 0\n\n",
        "HTTP/1.1 200 OK\r\nBad Name: x\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
        "HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
        /* a protocol switch the client never asked for */
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    };
    struct fx *f = start(state, 1, NULL);
    int port = f->port[0][0];
    struct h_resp r;
    size_t i, n = sizeof(bad) / sizeof(bad[0]);

    for (i = 0; i < n; i++) {
        assert_int_equal(h_backend_set_raw(port, bad[i], NULL), 0);
        assert_int_equal(h_exchange(f->proxy_port, GET_ROOT, &r), 0);
        if (r.status != 502)
            fail_msg("case %zu: status %d for %s", i, r.status, bad[i]);
        h_resp_free(&r);
        if (h_backend_wait_stat(port, "open", 0, 3000) != 0)
            fail_msg("case %zu: the upstream connection stayed open", i);
        /* one new upstream connection per request: none was reused */
        if (h_backend_stat(port, "request_connections") != (long)i + 1)
            fail_msg("case %zu: %ld upstream connections", i,
                     h_backend_stat(port, "request_connections"));
        assert_true(h_alive(f->proxy, NULL));
    }
    assert_int_equal(fx_status_long(f, "legacy.counters.errors.upstream_bad_response"), (long)n);
    assert_int_equal(fx_status_long(f, "legacy.servers.0.failures"), (long)n);
    assert_int_equal(h_backend_requests(port), (long)n);   /* none resent */
    assert_still_serving(f, port);
}

/* Bad chunk framing among the body bytes that came with the response head
 * is found before the head goes out: 502, as for a bad head, and the
 * upstream connection is closed (the backend keeps it open: only the proxy
 * can have closed it), never pooled or reused. A response's chunk lines
 * follow the same rules as a request's. */
static void
test_bad_chunk_line_with_head_502(void **state)
{
    static const char *const bad[] = {
        "5 \r\nhello\r\n0\r\n\r\n",                /* space after the size */
        "5\t\r\nhello\r\n0\r\n\r\n",
        "5 ;a=b\r\nhello\r\n0\r\n\r\n",
        "5x=y\r\nhello\r\n0\r\n\r\n",              /* an extension without ";" */
        "5;\r\nhello\r\n0\r\n\r\n",                /* ";" without a name */
        "5;=y\r\nhello\r\n0\r\n\r\n",
        "5;a=b;;c\r\nhello\r\n0\r\n\r\n",
        "5;a=\"b\r\nhello\r\n0\r\n\r\n",            /* unbalanced quotes */
        "5;a=b\"\r\nhello\r\n0\r\n\r\n",
        "5;a=\"b\\\"\r\nhello\r\n0\r\n\r\n",
        "zz\r\nhello\r\n0\r\n\r\n",                /* not a size */
        "5\r\nhello\r\n3 \r\nabc\r\n0\r\n\r\n",       /* a later line, at hand too */
        "5\r\nhelloXX\r\n0\r\n\r\n",               /* no CRLF after the data */
        "5\r\nhello\r\n0\r\nX : y\r\n\r\n",         /* a bad trailer */
    };
    struct fx *f = start(state, 1, NULL);
    int port = f->port[0][0];
    struct h_resp r;
    char raw[256], v[32];
    size_t i, n = sizeof(bad) / sizeof(bad[0]);

    for (i = 0; i < n; i++) {
        snprintf(raw, sizeof(raw), "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%s",
                 bad[i]);
        assert_int_equal(h_backend_set_raw(port, raw, NULL), 0);
        assert_int_equal(h_exchange(f->proxy_port, GET_ROOT, &r), 0);
        if (r.status != 502)
            fail_msg("case %zu: status %d for %s", i, r.status, bad[i]);
        assert_string_equal(h_resp_header(&r, "Connection", v, sizeof(v)), "close");
        assert_null(strstr(r.body, "hello"));
        h_resp_free(&r);
        if (h_backend_wait_stat(port, "open", 0, 3000) != 0)
            fail_msg("case %zu: the upstream connection stayed open", i);
        if (h_backend_stat(port, "request_connections") != (long)i + 1)
            fail_msg("case %zu: %ld upstream connections", i,
                     h_backend_stat(port, "request_connections"));
    }
    assert_int_equal(fx_status_long(f, "legacy.counters.errors.upstream_bad_response"), (long)n);
    assert_int_equal(h_backend_requests(port), (long)n);   /* none resent */
    /* the same response with valid chunk lines goes through */
    assert_int_equal(h_backend_set_raw(port, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                   "5;a=\"b\\\"c\";d=e\r\nhello\r\n0\r\nX: y\r\n\r\n", NULL), 0);
    assert_int_equal(h_exchange(f->proxy_port, GET_ROOT, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "hello");
    h_resp_free(&r);
    assert_still_serving(f, port);
}

/* A bad chunk line that comes after the response head was forwarded: the
 * client gets a cut body (no final chunk) and a closed connection, the
 * upstream connection is closed, and the error is counted. The proxy looks
 * at no more than limits.head_bytes of a response before forwarding its
 * head, so a first chunk larger than that puts the bad line out of sight. */
static void
test_bad_chunk_size_cuts_response(void **state)
{
    static const char *const bad[] = {
        "zz\r\nhello\r\n0\r\n\r\n",
        "fffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
        "5 \r\nhello\r\n0\r\n\r\n",
    };
    struct fx *f = start(state, 1, ",\"limits\": {\"head_bytes\": 1024}");
    int port = f->port[0][0];
    char raw[2048], buf[8192];
    size_t i, o;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int fd = h_connect(f->proxy_port);
        size_t len = 0;
        ssize_t got;

        o = (size_t)snprintf(raw, sizeof(raw),
                             "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n44c\r\n");
        memset(raw + o, 'a', 1100);        /* 0x44c; sent as is by h_backend_set_raw() */
        o += 1100;
        snprintf(raw + o, sizeof(raw) - o, "\r\n%s", bad[i]);
        assert_int_equal(h_backend_set_raw(port, raw, NULL), 0);
        assert_true(fd >= 0);
        assert_int_equal(h_send_all(fd, GET_ROOT, strlen(GET_ROOT)), 0);
        while (len < sizeof(buf) - 1 &&
               (got = recv(fd, buf + len, sizeof(buf) - 1 - len, 0)) > 0)
            len += (size_t)got;
        buf[len] = '\0';
        close(fd);
        assert_int_equal(strncmp(buf, "HTTP/1.1 200 ", 13), 0);
        if (strstr(buf, "\r\n0\r\n\r\n") != NULL)
            fail_msg("case %zu: the client saw a complete body: %s", i, buf);
        assert_int_equal(h_backend_wait_stat(port, "open", 0, 3000), 0);
    }
    assert_int_equal(fx_status_long(f, "legacy.counters.errors.upstream_bad_response"), 3);
    assert_still_serving(f, port);
}

/* A response head over limits.head_bytes: 502; just under it passes. */
static void
test_response_head_over_limit_502(void **state)
{
    struct fx *f = start(state, 1, ",\"limits\": {\"head_bytes\": 2048}");
    int port = f->port[0][0];
    struct h_resp r;

    assert_int_equal(h_backend_set(port, "pad_head=1500"), 0);
    assert_int_equal(h_exchange(f->proxy_port, GET_ROOT, &r), 0);
    assert_int_equal(r.status, 200);
    h_resp_free(&r);

    assert_int_equal(h_backend_set(port, "pad_head=4096"), 0);
    assert_int_equal(h_exchange(f->proxy_port, GET_ROOT, &r), 0);
    assert_int_equal(r.status, 502);
    h_resp_free(&r);
    assert_int_equal(fx_status_long(f, "legacy.counters.errors.upstream_bad_response"), 1);
    /* no upstream connection stays open with half a head unread */
    assert_int_equal(h_backend_wait_stat(port, "open", 0, 3000), 0);

    /* far over it (the head keeps arriving while the proxy decides) */
    assert_int_equal(h_backend_set(port, "pad_head=200000"), 0);
    assert_int_equal(h_exchange(f->proxy_port, GET_ROOT, &r), 0);
    assert_int_equal(r.status, 502);
    h_resp_free(&r);
    assert_int_equal(h_backend_wait_stat(port, "open", 0, 3000), 0);
    assert_still_serving(f, port);
}

/* ---- failures in the middle of the body ------------------------------ */

static void
test_midbody_reset_content_length(void **state)
{
    struct fx *f = start(state, 1, NULL);
    struct h_resp r;
    char v[32];

    assert_int_equal(h_backend_set(f->port[0][0], "mode=midbody&body_bytes=65536"), 0);
    assert_int_equal(h_exchange(f->proxy_port, GET_ROOT, &r), -1);
    assert_int_equal(r.status, 200);
    assert_string_equal(h_resp_header(&r, "Content-Length", v, sizeof(v)), "65536");
    assert_true(r.closed);             /* closed, before the announced length */
    assert_true(r.body_len < 65536);
    h_resp_free(&r);
    assert_int_equal(fx_status_long(f, "legacy.counters.errors.upstream_reset"), 1);
    assert_still_serving(f, f->port[0][0]);
}

/* Reads everything until the peer closes; returns the bytes (caller frees). */
static char *
read_all(int fd, size_t *len)
{
    size_t cap = 1 << 20;
    char *buf = malloc(cap + 1);
    ssize_t got;

    assert_non_null(buf);
    *len = 0;
    while (*len < cap && (got = recv(fd, buf + *len, cap - *len, 0)) > 0)
        *len += (size_t)got;
    buf[*len] = '\0';
    return buf;
}

static void
test_midbody_reset_chunked_has_no_last_chunk(void **state)
{
    struct fx *f = start(state, 1, NULL);
    int fd;
    size_t len;
    char *all;

    assert_int_equal(h_backend_set(f->port[0][0], "mode=midbody&chunked=1&body_bytes=65536"),
                     0);
    fd = h_connect(f->proxy_port);
    assert_true(fd >= 0);
    assert_int_equal(h_send_all(fd, GET_ROOT, strlen(GET_ROOT)), 0);
    all = read_all(fd, &len);          /* ends on EOF or reset, within the 5 s timeout */
    close(fd);
    assert_int_equal(strncmp(all, "HTTP/1.1 200 ", 13), 0);
    assert_non_null(strstr(all, "Transfer-Encoding: chunked\r\n"));
    assert_non_null(strstr(all, "legacylegacy"));   /* part of the body came */
    assert_null(strstr(all, "\r\n0\r\n\r\n"));     /* but never its end */
    assert_true(len < 65536);
    free(all);
    assert_int_equal(fx_status_long(f, "legacy.counters.errors.upstream_reset"), 1);
    assert_still_serving(f, f->port[0][0]);
}

/* ---- the client goes away -------------------------------------------- */

/* The client leaves while the backend works on its request: the proxy
 * closes the upstream connection at once (the backend sees the request
 * aborted long before it would have answered), and nothing is counted
 * against the backend. */
static void
test_client_gone_aborts_upstream(void **state)
{
    struct fx *f = start(state, 1, NULL);
    int port = f->port[0][0], fd;
    long long t0;

    assert_int_equal(h_backend_set(port, "delay_ms=2000"), 0);
    fd = h_connect(f->proxy_port);
    assert_true(fd >= 0);
    assert_int_equal(h_send_all(fd, GET_ROOT, strlen(GET_ROOT)), 0);
    /* the request reached the backend, which now waits */
    assert_int_equal(h_backend_wait_stat(port, "heads", 1, 3000), 1);
    close(fd);
    t0 = h_now_ms();
    assert_int_equal(h_backend_wait_stat(port, "aborted", 1, 1500), 1);
    assert_true(h_now_ms() - t0 < 1500);
    assert_int_equal(h_backend_wait_stat(port, "open", 0, 1000), 0);

    assert_int_equal(fx_status_long(f, "legacy.servers.0.failures"), 0);
    assert_int_equal(fx_status_long(f, "legacy.counters.error"), 0);
    assert_int_equal(fx_status_long(f, "legacy.counters.5xx"), 0);
    assert_int_equal(fx_status_long(f, "legacy.window.errors"), 0);
    assert_int_equal(fx_status_long(f, "legacy.counters.errors.upstream_reset"), 0);
    assert_int_equal(fx_status_long(f, "legacy.counters.errors.upstream_timeout"), 0);
    assert_still_serving(f, port);
}

/* A client that sent its whole request at once is not watched during the
 * first PX_WATCH_DELAY_MS (100 ms) of a short exchange, which saves the
 * epoll_ctl that registering its socket costs; a longer one is. Whichever
 * way it goes (the request read at accept or after a poll; the client gone
 * at once, or after the delay; asking for close or not; a keep-alive
 * client's second request), the backend sees the request aborted long
 * before it would have answered, and nothing is counted against it. */
static void
test_client_gone_aborts_upstream_each_way(void **state)
{
    static const char *const reqs[] = {
        GET_ROOT, "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    };
    struct fx *f = start(state, 1, NULL);
    int port = f->port[0][0], fd, round;
    long heads;
    long long t0;
    struct h_resp r;

    for (round = 0; round < 6; round++) {
        const char *req = reqs[round % 2];

        fd = h_connect(f->proxy_port);
        assert_true(fd >= 0);
        if (round >= 4) {
            /* a first request answered: the second one is on a polled socket */
            assert_int_equal(h_backend_set(port, "delay_ms=0"), 0);
            assert_int_equal(h_send_all(fd, GET_ROOT, strlen(GET_ROOT)), 0);
            assert_int_equal(h_read_response(fd, &r), 0);
            assert_int_equal(r.status, 200);
            h_resp_free(&r);
        }
        assert_int_equal(h_backend_set(port, "delay_ms=3000"), 0);
        assert_int_equal(h_send_all(fd, req, strlen(req)), 0);
        /* the request reached the backend, which now waits */
        heads = round >= 4 ? 2 * round - 2 : round + 1;
        assert_int_equal(h_backend_wait_stat(port, "heads", heads, 3000), heads);
        if (round % 4 >= 2)
            usleep(300 * 1000);        /* past the delay: watched by now */
        close(fd);
        t0 = h_now_ms();
        assert_int_equal(h_backend_wait_stat(port, "aborted", round + 1, 2000), round + 1);
        assert_true(h_now_ms() - t0 < 2000);
    }
    assert_int_equal(h_backend_wait_stat(port, "open", 0, 1000), 0);
    assert_int_equal(fx_status_long(f, "legacy.servers.0.failures"), 0);
    assert_int_equal(fx_status_long(f, "legacy.counters.error"), 0);
    assert_int_equal(fx_status_long(f, "legacy.counters.5xx"), 0);
    assert_int_equal(fx_status_long(f, "legacy.counters.errors.upstream_reset"), 0);
    assert_int_equal(fx_status_long(f, "legacy.counters.errors.upstream_timeout"), 0);
    assert_still_serving(f, port);
}

/* The same while the response body streams: the client leaves after the
 * head, the upstream connection is closed (never pooled), the backend sees
 * its answer aborted. */
static void
test_client_gone_mid_body(void **state)
{
    struct fx *f = start(state, 1, NULL);
    int port = f->port[0][0], fd;
    struct h_resp r;

    assert_int_equal(h_backend_set(port, "mode=midstall&body_bytes=100000"), 0);
    fd = h_connect(f->proxy_port);
    assert_true(fd >= 0);
    assert_int_equal(h_send_all(fd, GET_ROOT, strlen(GET_ROOT)), 0);
    assert_int_equal(h_read_response_head(fd, &r), 0);
    assert_int_equal(r.status, 200);
    h_resp_free(&r);
    close(fd);
    assert_int_equal(h_backend_wait_stat(port, "aborted", 1, 3000), 1);
    assert_int_equal(h_backend_wait_stat(port, "open", 0, 1000), 0);
    assert_int_equal(fx_status_long(f, "legacy.servers.0.failures"), 0);
    assert_int_equal(fx_status_long(f, "legacy.counters.error"), 0);
    assert_still_serving(f, port);
    assert_int_equal(h_backend_stat(port, "request_connections"), 2);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_refused_502, fx_teardown),
        cmocka_unit_test_teardown(test_refused_retried_on_other_server, fx_teardown),
        cmocka_unit_test_teardown(test_reset_before_head_502, fx_teardown),
        cmocka_unit_test_teardown(test_close_before_head_502, fx_teardown),
        cmocka_unit_test_teardown(test_garbage_502_connection_closed, fx_teardown),
        cmocka_unit_test_teardown(test_invalid_framing_502, fx_teardown),
        cmocka_unit_test_teardown(test_bad_chunk_line_with_head_502, fx_teardown),
        cmocka_unit_test_teardown(test_bad_chunk_size_cuts_response, fx_teardown),
        cmocka_unit_test_teardown(test_response_head_over_limit_502, fx_teardown),
        cmocka_unit_test_teardown(test_midbody_reset_content_length, fx_teardown),
        cmocka_unit_test_teardown(test_midbody_reset_chunked_has_no_last_chunk, fx_teardown),
        cmocka_unit_test_teardown(test_client_gone_aborts_upstream, fx_teardown),
        cmocka_unit_test_teardown(test_client_gone_aborts_upstream_each_way, fx_teardown),
        cmocka_unit_test_teardown(test_client_gone_mid_body, fx_teardown),
    };

    return cmocka_run_group_tests_name("integration: backend faults", tests, NULL, NULL);
}
