/*
 * HTTP routing through the real cutoverd: the split at 0, 10, 50 and 100 %,
 * a weight change taking effect on the very next request of an open
 * connection, stickiness by header surviving a weight raise, sticky cookies
 * issued and honoured, and the override header (from 127.0.0.1, inside the
 * default allow_from; who else may steer is 28_steering.c).
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
start(void **state, const char *extra)
{
    assert_int_equal(fx_open(state, false, 1, extra, 42), 0);
    return *state;
}

/* Random draws (seeded): the share at 0, 10, 50 and 100 %. */
static void
test_split(void **state)
{
    struct fx *f = start(state, NULL);
    int c[2];

    assert_int_equal(fx_count(f, 400, "/", NULL, c), 0);
    assert_int_equal(c[0], 400);                 /* weight 0: never new */
    assert_int_equal(c[1], 0);

    fx_ctl_ok(f, "weight", "10");
    assert_int_equal(fx_count(f, 1000, "/", NULL, c), 0);
    assert_int_equal(c[0] + c[1], 1000);
    /* 100 expected, sd 9.5: 5 sd either way */
    if (c[1] < 52 || c[1] > 148)
        fail_msg("weight 10: %d of 1000 went to new", c[1]);

    fx_ctl_ok(f, "weight", "50");
    assert_int_equal(fx_count(f, 1000, "/", NULL, c), 0);
    if (c[1] < 420 || c[1] > 580)
        fail_msg("weight 50: %d of 1000 went to new", c[1]);

    fx_ctl_ok(f, "weight", "100");
    assert_int_equal(fx_count(f, 400, "/", NULL, c), 0);
    assert_int_equal(c[1], 400);                 /* weight 100: always new */
}

/* A weight change applies to the next request on an already open
 * keep-alive connection. */
static void
test_weight_change_next_request(void **state)
{
    struct fx *f = start(state, NULL);
    const char *req = "GET / HTTP/1.1\r\nHost: t\r\n\r\n";
    struct h_resp r;
    int fd = h_connect(f->proxy_port);

    assert_true(fd >= 0);
    memset(&r, 0, sizeof(r));
    assert_int_equal(h_send_all(fd, req, strlen(req)), 0);
    assert_int_equal(h_read_response(fd, &r), 0);
    assert_string_equal(r.body, "legacy\n");
    h_resp_free(&r);

    fx_ctl_ok(f, "weight", "100");
    assert_int_equal(h_send_all(fd, req, strlen(req)), 0);
    assert_int_equal(h_read_response(fd, &r), 0);
    assert_string_equal(r.body, "new\n");
    h_resp_free(&r);

    fx_ctl_ok(f, "weight", "0");
    assert_int_equal(h_send_all(fd, req, strlen(req)), 0);
    assert_int_equal(h_read_response(fd, &r), 0);
    assert_string_equal(r.body, "legacy\n");
    h_resp_free(&r);
    close(fd);
}

static void
user_header(int i, char *buf, size_t len)
{
    snprintf(buf, len, "X-User: user-%d\r\n", i);
}

/* Sticky by header: the same users land on the same side every time, and
 * raising the weight only moves users from legacy to new. */
static void
test_sticky_header_survives_raise(void **state)
{
    struct fx *f = start(state, ",\"sticky\": {\"by\": \"header\", \"name\": \"X-User\"}");
    enum { N = 300 };
    bool on_new[N];
    int i, c[2], moved = 0;
    char req[256];
    struct h_resp r;
    int fd;

    fx_ctl_ok(f, "weight", "20");
    memset(&r, 0, sizeof(r));
    fd = h_connect(f->proxy_port);
    assert_true(fd >= 0);
    for (i = 0; i < N; i++) {
        snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: t\r\nX-User: user-%d\r\n\r\n", i);
        assert_int_equal(h_send_all(fd, req, strlen(req)), 0);
        assert_int_equal(h_read_response(fd, &r), 0);
        on_new[i] = strcmp(r.body, "new\n") == 0;
        h_resp_free(&r);
    }
    /* the same again: nobody moves at the same weight */
    for (i = 0; i < N; i++) {
        snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: t\r\nX-User: user-%d\r\n\r\n", i);
        assert_int_equal(h_send_all(fd, req, strlen(req)), 0);
        assert_int_equal(h_read_response(fd, &r), 0);
        assert_int_equal(on_new[i], strcmp(r.body, "new\n") == 0);
        h_resp_free(&r);
    }
    fx_ctl_ok(f, "weight", "60");
    for (i = 0; i < N; i++) {
        bool now_new;

        snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: t\r\nX-User: user-%d\r\n\r\n", i);
        assert_int_equal(h_send_all(fd, req, strlen(req)), 0);
        assert_int_equal(h_read_response(fd, &r), 0);
        now_new = strcmp(r.body, "new\n") == 0;
        if (on_new[i])
            assert_true(now_new);     /* never back from new to legacy */
        moved += now_new && !on_new[i];
        h_resp_free(&r);
    }
    close(fd);
    assert_true(moved > 0);
    /* the share follows the weight: 60 % of 300, 5 sd = 42 */
    assert_int_equal(fx_count(f, N, "/", user_header, c), 0);
    if (c[1] < 138 || c[1] > 222)
        fail_msg("weight 60, sticky: %d of %d on new", c[1], N);
}

/* Cookie mode: the proxy issues the bucket cookie (signed: see
 * 28_steering.c), and a client that sends it back keeps its side. */
static void
test_sticky_cookie(void **state)
{
    struct fx *f = start(state, ",\"sticky\": {\"by\": \"cookie\", \"name\": \"cb\"}");
    struct h_resp r;
    char buf[256], hdr[128], v4999[PX_COOKIE_VALUE_MAX], v5000[PX_COOKIE_VALUE_MAX];
    unsigned bucket;
    int i;

    fx_ctl_ok(f, "weight", "50");
    memset(&r, 0, sizeof(r));
    assert_int_equal(h_get(f->proxy_port, "/", NULL, &r), 0);
    assert_non_null(h_resp_header(&r, "Set-Cookie", buf, sizeof(buf)));
    assert_int_equal(sscanf(buf, "cb=%u.", &bucket), 1);
    assert_true(bucket < 10000);
    assert_string_equal(r.body, bucket < 5000 ? "new\n" : "legacy\n");
    h_resp_free(&r);

    /* a client with bucket 4999 is on new at 50 %, 5000 is on legacy */
    fx_cookie_value(f, "web", 4999, v4999);
    fx_cookie_value(f, "web", 5000, v5000);
    for (i = 0; i < 20; i++) {
        snprintf(hdr, sizeof(hdr), "Cookie: a=b; cb=%s\r\n", v4999);
        assert_int_equal(h_get(f->proxy_port, "/", hdr, &r), 0);
        assert_string_equal(r.body, "new\n");
        assert_null(h_resp_header(&r, "Set-Cookie", buf, sizeof(buf)));
        h_resp_free(&r);
        snprintf(hdr, sizeof(hdr), "Cookie: cb=%s\r\n", v5000);
        assert_int_equal(h_get(f->proxy_port, "/", hdr, &r), 0);
        assert_string_equal(r.body, "legacy\n");
        h_resp_free(&r);
    }
    /* a bogus bucket is replaced */
    snprintf(hdr, sizeof(hdr), "Cookie: cb=99999\r\n");
    assert_int_equal(h_get(f->proxy_port, "/", hdr, &r), 0);
    assert_non_null(h_resp_header(&r, "Set-Cookie", buf, sizeof(buf)));
    h_resp_free(&r);
}

static void
test_override(void **state)
{
    struct fx *f = start(state, ",\"override\": {\"header\": \"X-Cutover-Target\"}");
    struct h_resp r;
    int i;

    memset(&r, 0, sizeof(r));
    for (i = 0; i < 10; i++) {
        /* weight 0, yet the override reaches new */
        assert_int_equal(h_get(f->proxy_port, "/", "X-Cutover-Target: new\r\n", &r), 0);
        assert_string_equal(r.body, "new\n");
        h_resp_free(&r);
    }
    fx_ctl_ok(f, "weight", "100");
    for (i = 0; i < 10; i++) {
        assert_int_equal(h_get(f->proxy_port, "/", "X-Cutover-Target: legacy\r\n", &r), 0);
        assert_string_equal(r.body, "legacy\n");
        h_resp_free(&r);
        /* an unknown value is ignored */
        assert_int_equal(h_get(f->proxy_port, "/", "X-Cutover-Target: blue\r\n", &r), 0);
        assert_string_equal(r.body, "new\n");
        h_resp_free(&r);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_split, fx_teardown),
        cmocka_unit_test_teardown(test_weight_change_next_request, fx_teardown),
        cmocka_unit_test_teardown(test_sticky_header_survives_raise, fx_teardown),
        cmocka_unit_test_teardown(test_sticky_cookie, fx_teardown),
        cmocka_unit_test_teardown(test_override, fx_teardown),
    };

    return cmocka_run_group_tests_name("integration: http routing", tests, NULL, NULL);
}
