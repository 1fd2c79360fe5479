/*
 * 11_upgrade: HTTP/1.1 Upgrade (WebSocket-style) through cutoverd. After
 * the backend's 101 the connection is a tunnel: bytes flow both ways
 * unchanged, and either side closing (or half-closing) it closes the other.
 * Without "Connection: upgrade" the Upgrade field is hop-by-hop noise and is
 * dropped, and so is an HTTP/1.0 request's Upgrade (RFC 9110 §7.8: the
 * request goes up as a plain one); a 101 the client did not ask for (or one without Upgrade) is a
 * 502 and the upstream connection is closed.
 *
 * The backend's /ws path answers 101 and echoes when asked with
 * "Upgrade: websocket" and "Connection: upgrade". Waits are bounded.
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

#define WS_REQ "GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" \
               "Sec-WebSocket-Version: 13\r\n\r\n"

struct ufx {
    struct fx fx;
    int fd;                            /* the client connection, -1 when none */
};

static int
teardown(void **state)
{
    struct ufx *u = *state;

    if (u != NULL && u->fd >= 0)
        close(u->fd);
    return fx_teardown(state);
}

static struct fx *
start(void **state)
{
    struct ufx *u = calloc(1, sizeof(*u));

    *state = u;
    assert_non_null(u);
    u->fd = -1;
    assert_int_equal(fx_init(&u->fx, false, 1, NULL), 0);
    assert_int_equal(fx_start_proxy(&u->fx, 7), 0);
    return &u->fx;
}

/* Connects, asks for the upgrade, expects the 101. Returns the fd. */
static int
upgrade(void **state, struct fx *f)
{
    struct ufx *u = *state;
    struct h_resp r;
    char v[64];

    u->fd = h_connect(f->proxy_port);
    assert_true(u->fd >= 0);
    assert_int_equal(h_send_all(u->fd, WS_REQ, strlen(WS_REQ)), 0);
    assert_int_equal(h_read_response(u->fd, &r), 0);
    assert_int_equal(r.status, 101);
    assert_string_equal(h_resp_header(&r, "Upgrade", v, sizeof(v)), "websocket");
    assert_non_null(h_resp_header(&r, "Connection", v, sizeof(v)));
    for (char *p = v; *p != '\0'; p++)
        *p = (char)tolower((unsigned char)*p);
    assert_string_equal(v, "upgrade");
    assert_null(h_resp_header(&r, "Content-Length", v, sizeof(v)));
    assert_null(h_resp_header(&r, "Transfer-Encoding", v, sizeof(v)));
    h_resp_free(&r);
    return u->fd;
}

/* After the 101, bytes go both ways through the proxy unchanged, in small
 * and large amounts, including bytes that look like HTTP. */
static void
test_ws_tunnel_echoes_both_ways(void **state)
{
    struct fx *f = start(state);
    int fd = upgrade(state, f), i;
    static char out[65536], in[65536];
    char small[64];
    size_t k;

    assert_int_equal(h_send_all(fd, "ping-1", 6), 0);
    assert_int_equal(h_recv_n(fd, small, 6), 6);
    assert_memory_equal(small, "ping-1", 6);
    /* not parsed as HTTP any more */
    assert_int_equal(h_send_all(fd, "GET / HTTP/1.1\r\n\r\n", 18), 0);
    assert_int_equal(h_recv_n(fd, small, 18), 18);
    assert_memory_equal(small, "GET / HTTP/1.1\r\n\r\n", 18);
    /* 1 MiB in 64 KiB rounds, every byte value */
    for (k = 0; k < sizeof(out); k++)
        out[k] = (char)(k * 7 + 3);
    for (i = 0; i < 16; i++) {
        out[0] = (char)i;
        assert_int_equal(h_send_all(fd, out, sizeof(out)), 0);
        assert_int_equal(h_recv_n(fd, in, sizeof(in)), sizeof(in));
        assert_memory_equal(in, out, sizeof(out));
    }
    /* the backend saw one request: the upgrade, never the tunnelled bytes */
    assert_int_equal(h_backend_requests(f->port[0][0]), 1);
    assert_int_equal(h_backend_stat(f->port[0][0], "heads"), 1);
    assert_true(h_alive(f->proxy, NULL));
}

/* Bytes the client sends right behind its upgrade request are tunnel data. */
static void
test_ws_bytes_right_after_request(void **state)
{
    struct ufx *u;
    struct fx *f = start(state);
    const char *both = WS_REQ "early-bytes";
    struct h_resp r;
    char buf[16];

    u = *state;
    u->fd = h_connect(f->proxy_port);
    assert_true(u->fd >= 0);
    assert_int_equal(h_send_all(u->fd, both, strlen(both)), 0);
    assert_int_equal(h_read_response(u->fd, &r), 0);
    assert_int_equal(r.status, 101);
    h_resp_free(&r);
    assert_int_equal(h_recv_n(u->fd, buf, 11), 11);
    assert_memory_equal(buf, "early-bytes", 11);
}

/* /ws without the upgrade fields is an ordinary request, on a keep-alive
 * connection that then serves the next one. */
static void
test_ws_path_without_upgrade_is_http(void **state)
{
    struct ufx *u;
    struct fx *f = start(state);
    struct h_resp r;
    const char *plain = "GET /ws HTTP/1.1\r\nHost: t\r\n\r\n";
    const char *no_conn = "GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n\r\n";

    u = *state;
    u->fd = h_connect(f->proxy_port);
    assert_true(u->fd >= 0);
    assert_int_equal(h_send_all(u->fd, plain, strlen(plain)), 0);
    assert_int_equal(h_read_response(u->fd, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "legacy\n");
    h_resp_free(&r);
    /* Upgrade without Connection: upgrade is not an upgrade request */
    assert_int_equal(h_send_all(u->fd, no_conn, strlen(no_conn)), 0);
    assert_int_equal(h_read_response(u->fd, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "legacy\n");
    assert_false(r.closed);
    h_resp_free(&r);
    assert_int_equal(h_backend_requests(f->port[0][0]), 2);
}

/* Lower-cases <s> in place. */
static char *
lower(char *s)
{
    for (char *p = s; *p != '\0'; p++)
        *p = (char)tolower((unsigned char)*p);
    return s;
}

/* An Upgrade field without "Connection: upgrade" is not forwarded. */
static void
test_upgrade_field_stripped_when_not_upgrading(void **state)
{
    struct ufx *u;
    struct fx *f = start(state);
    struct h_resp r;
    const char *req = "GET /echo HTTP/1.1\r\nHost: t\r\nUpgrade: foo\r\n"
                      "Connection: keep-alive\r\nX-Keep: 1\r\n\r\n";

    u = *state;
    u->fd = h_connect(f->proxy_port);
    assert_true(u->fd >= 0);
    assert_int_equal(h_send_all(u->fd, req, strlen(req)), 0);
    assert_int_equal(h_read_response(u->fd, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "X-Keep: 1\r\n"));
    lower(r.body);
    assert_null(strstr(r.body, "upgrade"));
    assert_null(strstr(r.body, "foo"));
    h_resp_free(&r);
}

/* Upgrade on an HTTP/1.0 request is ignored (RFC 9110 §7.8): the request
 * goes up as a plain one, without Upgrade and without "Connection: upgrade",
 * so /ws answers as an ordinary path; no tunnel, and the keep-alive the
 * client asked for still holds for its next request. */
static void
test_http10_upgrade_is_plain_request(void **state)
{
    struct ufx *u;
    struct fx *f = start(state);
    int port = f->port[0][0];
    struct h_resp r;
    json_t *st;
    char head[4096], v[64];
    const char *req = "GET /ws HTTP/1.0\r\nHost: t\r\nUpgrade: websocket\r\n"
                      "Connection: keep-alive, Upgrade\r\nX-Keep: 1\r\n\r\n";
    const char *next = "GET /echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";

    u = *state;
    u->fd = h_connect(f->proxy_port);
    assert_true(u->fd >= 0);
    assert_int_equal(h_send_all(u->fd, req, strlen(req)), 0);
    assert_int_equal(h_read_response(u->fd, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "legacy\n");
    assert_null(h_resp_header(&r, "Upgrade", v, sizeof(v)));
    assert_string_equal(h_resp_header(&r, "Connection", v, sizeof(v)), "keep-alive");
    assert_false(r.closed);
    h_resp_free(&r);

    st = h_backend_stats(port);
    assert_non_null(st);
    snprintf(head, sizeof(head), "%s", json_string_value(json_object_get(st, "last_request_head")));
    json_decref(st);
    assert_non_null(strstr(head, "GET /ws HTTP/1.1\r\n"));
    assert_non_null(strstr(head, "X-Keep: 1\r\n"));
    lower(head);
    assert_null(strstr(head, "upgrade"));
    assert_null(strstr(head, "websocket"));

    /* still plain HTTP on the same connection */
    assert_int_equal(h_send_all(u->fd, next, strlen(next)), 0);
    assert_int_equal(h_read_response(u->fd, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "GET /echo HTTP/1.1\r\n"));
    h_resp_free(&r);
    assert_int_equal(h_backend_requests(port), 2);
}

/* The backend switches protocols although the client asked for nothing:
 * 502, client connection closed, upstream connection closed. */
static void
test_unrequested_101_is_502(void **state)
{
    struct ufx *u;
    struct fx *f = start(state);
    int port = f->port[0][0];
    struct h_resp r;

    u = *state;
    assert_int_equal(h_backend_set_raw(port, "HTTP/1.1 101 Switching Protocols\r\n"
                                             "Upgrade: websocket\r\n"
                                             "Connection: Upgrade\r\n\r\n", NULL), 0);
    u->fd = h_connect(f->proxy_port);
    assert_true(u->fd >= 0);
    assert_int_equal(h_send_all(u->fd, "GET /ws HTTP/1.1\r\nHost: t\r\n\r\n", 29), 0);
    assert_int_equal(h_read_response(u->fd, &r), 0);
    assert_int_equal(r.status, 502);
    h_resp_free(&r);
    assert_true(h_peer_closed(u->fd, 3000));
    assert_int_equal(h_backend_wait_stat(port, "open", 0, 3000), 0);
    assert_true(h_alive(f->proxy, NULL));
}

/* Asked for, but the 101 names no protocol: 502 too. */
static void
test_101_without_upgrade_field_is_502(void **state)
{
    struct ufx *u;
    struct fx *f = start(state);
    int port = f->port[0][0];
    struct h_resp r;
    const char *req = "GET /chat HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\n\r\n";

    u = *state;
    assert_int_equal(h_backend_set_raw(port, "HTTP/1.1 101 Switching Protocols\r\n\r\n", NULL), 0);
    u->fd = h_connect(f->proxy_port);
    assert_true(u->fd >= 0);
    /* not /ws: the backend answers it with the raw bytes */
    assert_int_equal(h_send_all(u->fd, req, strlen(req)), 0);
    assert_int_equal(h_read_response(u->fd, &r), 0);
    assert_int_equal(r.status, 502);
    h_resp_free(&r);
    assert_true(h_peer_closed(u->fd, 3000));
    assert_int_equal(h_backend_wait_stat(port, "open", 0, 3000), 0);
}

/* The client half-closes the tunnel: the proxy closes both sides. */
static void
test_client_half_close_closes_tunnel(void **state)
{
    struct fx *f = start(state);
    int fd = upgrade(state, f);
    char buf[8];

    assert_int_equal(h_send_all(fd, "x", 1), 0);
    assert_int_equal(h_recv_n(fd, buf, 1), 1);
    assert_int_equal(h_backend_stat(f->port[0][0], "open"), 1);
    assert_int_equal(shutdown(fd, SHUT_WR), 0);
    assert_true(h_peer_closed(fd, 3000));
    assert_int_equal(h_backend_wait_stat(f->port[0][0], "open", 0, 3000), 0);
    assert_true(h_alive(f->proxy, NULL));
}

/* The client closes the tunnel outright: the upstream connection closes. */
static void
test_client_close_closes_tunnel(void **state)
{
    struct ufx *u;
    struct fx *f = start(state);
    int fd = upgrade(state, f);
    char buf[8];

    u = *state;
    assert_int_equal(h_send_all(fd, "y", 1), 0);
    assert_int_equal(h_recv_n(fd, buf, 1), 1);
    close(fd);
    u->fd = -1;
    assert_int_equal(h_backend_wait_stat(f->port[0][0], "open", 0, 3000), 0);
    assert_int_equal(h_backend_stat(f->port[0][0], "aborted"), 0);
    assert_true(h_alive(f->proxy, NULL));
}

/* The backend ends the tunnel: what it sent still arrives, then the client
 * connection closes. */
static void
test_server_close_closes_tunnel(void **state)
{
    struct fx *f = start(state);
    int fd = upgrade(state, f);
    char buf[8];

    assert_int_equal(h_send_all(fd, "z", 1), 0);
    assert_int_equal(h_recv_n(fd, buf, 1), 1);
    assert_int_equal(h_stop(f->backend[0][0], SIGTERM, 5000), 0);
    assert_true(h_peer_closed(fd, 3000));
    assert_true(h_alive(f->proxy, NULL));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_ws_tunnel_echoes_both_ways, teardown),
        cmocka_unit_test_teardown(test_ws_bytes_right_after_request, teardown),
        cmocka_unit_test_teardown(test_ws_path_without_upgrade_is_http, teardown),
        cmocka_unit_test_teardown(test_upgrade_field_stripped_when_not_upgrading, teardown),
        cmocka_unit_test_teardown(test_http10_upgrade_is_plain_request, teardown),
        cmocka_unit_test_teardown(test_unrequested_101_is_502, teardown),
        cmocka_unit_test_teardown(test_101_without_upgrade_field_is_502, teardown),
        cmocka_unit_test_teardown(test_client_half_close_closes_tunnel, teardown),
        cmocka_unit_test_teardown(test_client_close_closes_tunnel, teardown),
        cmocka_unit_test_teardown(test_server_close_closes_tunnel, teardown),
    };

    return cmocka_run_group_tests_name("integration: upgrade tunnel", tests, NULL, NULL);
}
