/*
 * tests/unit/test_adm_http_req.c: admin/http_req.c, the admin HTTP
 * endpoint's reading of a request head (lib/http1.c plus the endpoint's
 * own limits and refusals), its bearer token and the JSON depth pre-check.
 * Every verdict is also checked byte by byte: each prefix of the input must
 * answer AGAIN or the very same verdict.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "admin/http_req.h"

/* Parses <text> whole and every prefix of it; returns the whole verdict
 * (and <req>), failing when a prefix disagrees. */
static enum h1_parse
parse_all(const char *text, size_t len, struct adm_req *req)
{
    struct adm_req r2;
    enum h1_parse whole = adm_req_parse(req, text, len), part;
    size_t i;

    for (i = 0; i < len; i++) {
        part = adm_req_parse(&r2, text, i);
        if (part == H1_PARSE_AGAIN)
            continue;
        if (part != whole || (part == H1_PARSE_BAD && r2.status != req->status))
            fail_msg("prefix of %zu bytes: %d/%d, whole: %d/%d", i, part, r2.status, whole,
                     req->status);
        if (part == H1_PARSE_DONE && r2.h1.head_len != req->h1.head_len)
            fail_msg("prefix of %zu bytes: head_len %zu, whole %zu", i, r2.h1.head_len,
                     req->h1.head_len);
    }
    return whole;
}

static void
expect_bad(const char *text, int status)
{
    struct adm_req r;

    if (parse_all(text, strlen(text), &r) != H1_PARSE_BAD)
        fail_msg("not refused: %s", text);
    if (r.status != status)
        fail_msg("status %d (%s), expected %d, for: %s", r.status, r.error, status, text);
    assert_non_null(r.error);
}

static void
test_get_status(void **state)
{
    static const char req[] =
        "GET /status?x=1 HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\nrest";
    struct adm_req r;

    assert_int_equal(parse_all(req, sizeof(req) - 1, &r), H1_PARSE_DONE);
    assert_int_equal(r.h1.head_len, sizeof(req) - 1 - 4);
    assert_int_equal(r.h1.method.len, 3);
    assert_memory_equal(r.h1.method.p, "GET", 3);
    assert_int_equal(r.path.len, 7);
    assert_memory_equal(r.path.p, "/status", 7);
    assert_int_equal(r.h1.target.len, 11);
    assert_int_equal(r.h1.minor, 1);
    assert_true(r.h1.keep_alive);
    assert_int_equal(r.h1.framing, H1_BODY_NONE);     /* no Content-Length */
    assert_int_equal(r.h1.content_length, 0);
    assert_null(r.authorization.p);
}

static void
test_post_with_body_and_token(void **state)
{
    static const char req[] =
        "POST /v1/weight HTTP/1.1\r\nhost: a\r\nauthorization:   Bearer abc  \r\n"
        "Content-Length: 17\r\nConnection: close\r\nExpect: 100-continue\r\n\r\n";
    struct adm_req r;
    struct h1_iov tok;
    const char *why = NULL;

    assert_int_equal(parse_all(req, sizeof(req) - 1, &r), H1_PARSE_DONE);
    assert_int_equal(r.h1.content_length, 17);
    assert_int_equal(r.h1.framing, H1_BODY_LENGTH);
    assert_false(r.h1.keep_alive);
    assert_true(r.h1.expect_continue);
    assert_int_equal(r.authorization.len, 10);
    assert_memory_equal(r.authorization.p, "Bearer abc", 10);
    assert_int_equal(adm_req_bearer(&r, &tok, &why), 0);
    assert_int_equal(tok.len, 3);
    assert_memory_equal(tok.p, "abc", 3);
}

static void
test_http10_keep_alive(void **state)
{
    struct adm_req r;
    static const char a[] = "GET / HTTP/1.0\r\n\r\n";
    static const char b[] = "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n";
    static const char c[] = "GET / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n";

    assert_int_equal(parse_all(a, sizeof(a) - 1, &r), H1_PARSE_DONE);
    assert_false(r.h1.keep_alive);
    assert_int_equal(r.h1.minor, 0);
    assert_int_equal(parse_all(b, sizeof(b) - 1, &r), H1_PARSE_DONE);
    assert_true(r.h1.keep_alive);
    /* accepted, but an HTTP/1.0 client gets no 100 Continue (RFC 9110 10.1.1) */
    assert_int_equal(parse_all(c, sizeof(c) - 1, &r), H1_PARSE_DONE);
    assert_false(r.h1.expect_continue);
}

static void
test_incomplete(void **state)
{
    struct adm_req r;
    static const char a[] = "GET /status HTTP/1.1\r\nHost: a\r\n";

    assert_int_equal(adm_req_parse(&r, a, sizeof(a) - 1), H1_PARSE_AGAIN);
    assert_int_equal(adm_req_parse(&r, a, 0), H1_PARSE_AGAIN);
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
    expect_bad("POST /v1/x HTTP/1.1\r\nHost: a\r\n"
               "Content-Length: 99999999999999999999\r\n\r\n", 400);
    expect_bad("POST /v1/x HTTP/1.1\r\nHost: a\r\nExpect: magic\r\n\r\n", 400);
    expect_bad("POST /v1/x HTTP/1.1\r\nHost: a\r\nAuthorization: a\r\n"
               "Authorization: b\r\n\r\n", 400);
}

/* What lib/http1.c would take but the admin endpoint does not, and what
 * lib/http1.c refuses more precisely than the endpoint's former parser. */
static void
test_bad_requests_admin_only(void **state)
{
    /* an empty line before the request line (lib/http1.c skips one) */
    expect_bad("\r\nGET /status HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    /* asterisk-form; absolute-form whatever the case of its scheme */
    expect_bad("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    expect_bad("GET HTTP://a/status HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    /* every Expect field counts */
    expect_bad("POST /v1/x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
               "Expect: magic\r\n\r\n", 400);
    /* other transfer codings: 400 when chunked is not last (RFC 9112 6.3),
     * 501 for a coding before a final chunked, 400 in HTTP/1.0 */
    expect_bad("POST /v1/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 400);
    expect_bad("POST /v1/x HTTP/1.1\r\nHost: a\r\n"
               "Transfer-Encoding: gzip, chunked\r\n\r\n", 501);
    expect_bad("POST /v1/x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
    expect_bad("CONNECT /status HTTP/1.1\r\nHost: a\r\n\r\n", 501);
    expect_bad("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400);          /* invalid Host */
    expect_bad("GET / HTTP/1.1\r\nHost: a\r\nConnection: close x\r\n\r\n", 400);
}

static void
test_bearer(void **state)
{
    static const struct {
        const char *field;             /* Authorization line, or NULL for none */
        const char *token;             /* expected token, or NULL: refused */
    } cases[] = {
        { NULL, NULL },
        { "Authorization: Basic YWJj\r\n", NULL },
        { "Authorization: Bearer\r\n", NULL },
        { "Authorization: Bearer    \r\n", NULL },
        { "Authorization: Bearerabc\r\n", NULL },
        { "Authorization: bearer abc\r\n", "abc" },
        { "Authorization: BEARER\t \tabc def\r\n", "abc def" },
    };
    char buf[256];
    struct adm_req r;
    struct h1_iov tok;
    const char *why;
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(buf, sizeof(buf), "GET /status HTTP/1.1\r\nHost: a\r\n%s\r\n",
                 cases[i].field != NULL ? cases[i].field : "");
        assert_int_equal(parse_all(buf, strlen(buf), &r), H1_PARSE_DONE);
        why = NULL;
        tok.p = NULL;
        if (cases[i].token == NULL) {
            assert_int_equal(adm_req_bearer(&r, &tok, &why), -1);
            assert_non_null(why);
            continue;
        }
        assert_int_equal(adm_req_bearer(&r, &tok, &why), 0);
        assert_int_equal(tok.len, strlen(cases[i].token));
        assert_memory_equal(tok.p, cases[i].token, tok.len);
    }
}

static void
test_body_limit_exact(void **state)
{
    struct adm_req r;
    static const char a[] = "POST /v1/x HTTP/1.1\r\nHost: a\r\nContent-Length: 65536\r\n\r\n";

    assert_int_equal(parse_all(a, sizeof(a) - 1, &r), H1_PARSE_DONE);
    assert_int_equal(r.h1.content_length, 65536);
}

static void
test_head_limit(void **state)
{
    char *big = malloc(ADM_REQ_HEAD_MAX + 64);
    struct adm_req r;
    size_t n;

    assert_non_null(big);
    /* exactly ADM_REQ_HEAD_MAX bytes of head: accepted */
    n = (size_t)snprintf(big, ADM_REQ_HEAD_MAX + 64, "GET / HTTP/1.1\r\nHost: a\r\nX: ");
    memset(big + n, 'a', ADM_REQ_HEAD_MAX - n - 4);
    memcpy(big + ADM_REQ_HEAD_MAX - 4, "\r\n\r\n", 4);
    assert_int_equal(parse_all(big, ADM_REQ_HEAD_MAX, &r), H1_PARSE_DONE);
    assert_int_equal(r.h1.head_len, ADM_REQ_HEAD_MAX);
    /* one byte more: 431, whether the end has arrived or not */
    memset(big + n, 'a', ADM_REQ_HEAD_MAX - n - 3);
    memcpy(big + ADM_REQ_HEAD_MAX - 3, "\r\n\r\n", 4);
    assert_int_equal(parse_all(big, ADM_REQ_HEAD_MAX + 1, &r), H1_PARSE_BAD);
    assert_int_equal(r.status, 431);
    /* the first ADM_REQ_HEAD_MAX bytes decide: a CR as the last of them
     * that could only end the head after the limit is already 431 */
    assert_int_equal(adm_req_parse(&r, big, ADM_REQ_HEAD_MAX), H1_PARSE_BAD);
    assert_int_equal(r.status, 431);
    /* no line end at all: 431 at the limit */
    memset(big + n, 'a', ADM_REQ_HEAD_MAX + 8 - n);
    assert_int_equal(adm_req_parse(&r, big, ADM_REQ_HEAD_MAX - 1), H1_PARSE_AGAIN);
    assert_int_equal(adm_req_parse(&r, big, ADM_REQ_HEAD_MAX), H1_PARSE_BAD);
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
    for (i = 0; i < ADM_REQ_FIELDS_MAX; i++)
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
        cmocka_unit_test(test_bad_requests_admin_only),
        cmocka_unit_test(test_bearer),
        cmocka_unit_test(test_body_limit_exact),
        cmocka_unit_test(test_head_limit),
        cmocka_unit_test(test_too_many_fields),
        cmocka_unit_test(test_json_depth),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
