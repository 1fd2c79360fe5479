/*
 * tests/unit/test_adm_http_parse.c: admin/http_parse.c, the admin HTTP
 * request-head parser and the JSON depth pre-check. Every verdict is also
 * checked byte by byte: each prefix of the input must answer AGAIN or the
 * very same verdict.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "admin/http_parse.h"

/* Parses <text> whole and every prefix of it; returns the whole verdict
 * (and <req>), failing when a prefix disagrees. */
static enum adm_hp_result
parse_all(const char *text, size_t len, struct adm_hp_req *req)
{
    struct adm_hp_req r2;
    enum adm_hp_result whole = adm_hp_parse(text, len, req), part;
    size_t i;

    for (i = 0; i < len; i++) {
        part = adm_hp_parse(text, i, &r2);
        if (part == ADM_HP_AGAIN)
            continue;
        if (part != whole || (part == ADM_HP_BAD && r2.status != req->status))
            fail_msg("prefix of %zu bytes: %d/%d, whole: %d/%d", i, part, r2.status, whole,
                     req->status);
        if (part == ADM_HP_DONE && r2.head_len != req->head_len)
            fail_msg("prefix of %zu bytes: head_len %zu, whole %zu", i, r2.head_len,
                     req->head_len);
    }
    return whole;
}

static void
expect_bad(const char *text, int status)
{
    struct adm_hp_req r;

    if (parse_all(text, strlen(text), &r) != ADM_HP_BAD)
        fail_msg("not refused: %s", text);
    if (r.status != status)
        fail_msg("status %d (%s), expected %d, for: %s", r.status, r.error, status, text);
    assert_non_null(r.error);
}

static void
test_get_status(void **state)
{
    static const char req[] = "GET /status?x=1 HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\nrest";
    struct adm_hp_req r;

    assert_int_equal(parse_all(req, sizeof(req) - 1, &r), ADM_HP_DONE);
    assert_int_equal(r.head_len, sizeof(req) - 1 - 4);
    assert_int_equal(r.method.len, 3);
    assert_memory_equal(r.method.p, "GET", 3);
    assert_int_equal(r.path.len, 7);
    assert_memory_equal(r.path.p, "/status", 7);
    assert_int_equal(r.target.len, 11);
    assert_int_equal(r.minor, 1);
    assert_true(r.is_keep_alive);
    assert_false(r.has_content_length);
    assert_null(r.authorization.p);
}

static void
test_post_with_body_and_token(void **state)
{
    static const char req[] =
        "POST /v1/weight HTTP/1.1\r\nhost: a\r\nauthorization:   Bearer abc  \r\n"
        "Content-Length: 17\r\nConnection: close\r\nExpect: 100-continue\r\n\r\n";
    struct adm_hp_req r;

    assert_int_equal(parse_all(req, sizeof(req) - 1, &r), ADM_HP_DONE);
    assert_int_equal(r.content_length, 17);
    assert_true(r.has_content_length);
    assert_false(r.is_keep_alive);
    assert_true(r.expects_continue);
    assert_int_equal(r.authorization.len, 10);
    assert_memory_equal(r.authorization.p, "Bearer abc", 10);
}

static void
test_http10_keep_alive(void **state)
{
    struct adm_hp_req r;
    static const char a[] = "GET / HTTP/1.0\r\n\r\n";
    static const char b[] = "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n";

    assert_int_equal(parse_all(a, sizeof(a) - 1, &r), ADM_HP_DONE);
    assert_false(r.is_keep_alive);
    assert_int_equal(r.minor, 0);
    assert_int_equal(parse_all(b, sizeof(b) - 1, &r), ADM_HP_DONE);
    assert_true(r.is_keep_alive);
}

static void
test_incomplete(void **state)
{
    struct adm_hp_req r;
    static const char a[] = "GET /status HTTP/1.1\r\nHost: a\r\n";

    assert_int_equal(adm_hp_parse(a, sizeof(a) - 1, &r), ADM_HP_AGAIN);
    assert_int_equal(adm_hp_parse(a, 0, &r), ADM_HP_AGAIN);
}

static void
test_bad_requests(void **state)
{
    expect_bad("\r\n\r\n", 400);
    expect_bad("GET /status HTTP/1.1\nHost: a\n\n", 400);           /* bare LF */
    expect_bad("GET /status HTTP/1.1\rHost: a\r\n\r\n", 400);       /* bare CR */
    expect_bad("GET  /status HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    expect_bad("GET /status\r\nHost: a\r\n\r\n", 400);
    expect_bad("GET status HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    expect_bad("GET http://a/status HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    expect_bad("G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    expect_bad("GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400);
    expect_bad("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505);
    expect_bad("GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505);
    expect_bad("GET / HTTP/1.1\r\n\r\n", 400);                      /* no Host */
    expect_bad("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400);
    expect_bad("GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400);
    expect_bad("GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", 400);
    expect_bad("GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", 400);
    expect_bad("GET / HTTP/1.1\r\nHost: a\r\n: v\r\n\r\n", 400);
    expect_bad("POST /v1/x HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n\r\n", 400);
    expect_bad("POST /v1/x HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n"
               "Content-Length: 1\r\n\r\n", 400);
    expect_bad("POST /v1/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", 411);
    expect_bad("POST /v1/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
               "Content-Length: 3\r\n\r\n", 400);
    expect_bad("POST /v1/x HTTP/1.1\r\nHost: a\r\nContent-Length: 65537\r\n\r\n", 413);
    expect_bad("POST /v1/x HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
               400);
    expect_bad("POST /v1/x HTTP/1.1\r\nHost: a\r\nExpect: magic\r\n\r\n", 400);
    expect_bad("POST /v1/x HTTP/1.1\r\nHost: a\r\nAuthorization: a\r\n"
               "Authorization: b\r\n\r\n", 400);
}

static void
test_body_limit_exact(void **state)
{
    struct adm_hp_req r;
    static const char a[] = "POST /v1/x HTTP/1.1\r\nHost: a\r\nContent-Length: 65536\r\n\r\n";

    assert_int_equal(parse_all(a, sizeof(a) - 1, &r), ADM_HP_DONE);
    assert_int_equal(r.content_length, 65536);
}

static void
test_head_limit(void **state)
{
    char *big = malloc(ADM_HP_HEAD_MAX + 64);
    struct adm_hp_req r;
    size_t n;

    assert_non_null(big);
    /* exactly ADM_HP_HEAD_MAX bytes of head: accepted */
    n = (size_t)snprintf(big, ADM_HP_HEAD_MAX + 64, "GET / HTTP/1.1\r\nHost: a\r\nX: ");
    memset(big + n, 'a', ADM_HP_HEAD_MAX - n - 4);
    memcpy(big + ADM_HP_HEAD_MAX - 4, "\r\n\r\n", 4);
    assert_int_equal(adm_hp_parse(big, ADM_HP_HEAD_MAX, &r), ADM_HP_DONE);
    assert_int_equal(r.head_len, ADM_HP_HEAD_MAX);
    /* one byte more: 431, whether the end has arrived or not */
    memset(big + n, 'a', ADM_HP_HEAD_MAX - n - 3);
    memcpy(big + ADM_HP_HEAD_MAX - 3, "\r\n\r\n", 4);
    assert_int_equal(adm_hp_parse(big, ADM_HP_HEAD_MAX + 1, &r), ADM_HP_BAD);
    assert_int_equal(r.status, 431);
    /* a CR as the last byte of the limit needs the next byte to decide: the
     * caller always offers ADM_HP_HEAD_MAX + 1 bytes when it has them */
    assert_int_equal(adm_hp_parse(big, ADM_HP_HEAD_MAX, &r), ADM_HP_AGAIN);
    /* no line end at all: 431 at the limit */
    memset(big + n, 'a', ADM_HP_HEAD_MAX + 8 - n);
    assert_int_equal(adm_hp_parse(big, ADM_HP_HEAD_MAX - 1, &r), ADM_HP_AGAIN);
    assert_int_equal(adm_hp_parse(big, ADM_HP_HEAD_MAX, &r), ADM_HP_BAD);
    assert_int_equal(r.status, 431);
    free(big);
}

static void
test_too_many_fields(void **state)
{
    char buf[4096];
    size_t n;
    unsigned i;

    n = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: a\r\n");
    for (i = 0; i < ADM_HP_FIELDS_MAX; i++)
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "X%u: v\r\n", i);
    snprintf(buf + n, sizeof(buf) - n, "\r\n");
    expect_bad(buf, 431);
}

static void
test_json_depth(void **state)
{
    assert_true(adm_json_depth_ok("{}", 2, 1));
    assert_false(adm_json_depth_ok("{\"a\":[1]}", 9, 1));
    assert_true(adm_json_depth_ok("{\"a\":[1]}", 9, 2));
    assert_true(adm_json_depth_ok("{\"a\":\"[[[[[[\"}", 14, 1));     /* in a string */
    assert_true(adm_json_depth_ok("{\"a\\\"[[[\":1}", 13, 1));       /* escaped quote */
    assert_false(adm_json_depth_ok("[[[[[[[[[]]]]]]]]]", 18, 8));
    assert_true(adm_json_depth_ok("[[[[[[[[]]]]]]]]", 16, 8));
    assert_true(adm_json_depth_ok("[][][][][][][][][][]", 20, 1));
    assert_true(adm_json_depth_ok("]]]]{", 5, 1));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_status),
        cmocka_unit_test(test_post_with_body_and_token),
        cmocka_unit_test(test_http10_keep_alive),
        cmocka_unit_test(test_incomplete),
        cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_body_limit_exact),
        cmocka_unit_test(test_head_limit),
        cmocka_unit_test(test_too_many_fields),
        cmocka_unit_test(test_json_depth),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
