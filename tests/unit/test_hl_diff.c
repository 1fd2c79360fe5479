/* tests/unit/test_hl_diff.c: the response comparison of health/diff.c:
 * status, listed and all headers, bytes bodies by streaming hash, JSON as
 * data (key order, numbers, ignore_json), noise learning, bounded bodies,
 * and the diff-rate window. */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "health/diff.h"

static struct hl_diffwin wa, wb;

static void
conf_init(struct hl_diff_conf *c, enum hl_diff_body body)
{
    memset(c, 0, sizeof(*c));
    c->status = true;
    c->body = body;
    c->max_bytes = 1 << 20;
}

static void
add_header(struct hl_diff_conf *c, const char *name)
{
    snprintf(c->headers[c->nheaders++], HL_DIFF_NAME_MAX, "%s", name);
}

static void
add_ignore(struct hl_diff_conf *c, const char *path)
{
    assert_null(hl_diff_path_check(path));
    snprintf(c->ignore_json[c->nignore_json++], HL_DIFF_PATH_MAX, "%s", path);
}

/* Captures a response: status, "Name: value" lines, the body fed in pieces
 * of <step> bytes. */
static void
capture(struct hl_diff_resp *r, const struct hl_diff_conf *c, int status,
        const char *const *headers, const char *body, size_t step)
{
    size_t i, n = strlen(body);

    hl_diff_resp_init(r, c);
    hl_diff_resp_status(r, status);
    for (i = 0; headers != NULL && headers[i] != NULL; i++) {
        const char *colon = strchr(headers[i], ':');

        hl_diff_resp_header(r, c, headers[i], (size_t)(colon - headers[i]), colon + 2,
                            strlen(colon + 2));
    }
    for (i = 0; i < n; i += step)
        hl_diff_resp_body(r, c, body + i, n - i < step ? n - i : step);
    hl_diff_resp_end(r, c);
}

static unsigned
compare(const struct hl_diff_conf *c, int sa, const char *const *ha, const char *ba,
        int sb, const char *const *hb, const char *bb, const struct hl_noise *noise,
        struct hl_diff_out *out)
{
    struct hl_diff_resp a, b;
    unsigned n;

    capture(&a, c, sa, ha, ba, 3);
    capture(&b, c, sb, hb, bb, 7);
    n = hl_diff_compare(c, &a, &b, noise, out);
    hl_diff_resp_free(&a);
    hl_diff_resp_free(&b);
    return n;
}

static void
test_status_and_bytes(void **state)
{
    struct hl_diff_conf c;
    struct hl_diff_out o;

    (void)state;
    conf_init(&c, HL_DIFF_BODY_BYTES);
    assert_int_equal(compare(&c, 200, NULL, "hello world", 200, NULL, "hello world", NULL,
                             &o), 0);
    assert_int_equal(compare(&c, 200, NULL, "hello", 404, NULL, "hello", NULL, &o), 1);
    assert_string_equal(o.f[0].name, "status");
    assert_string_equal(o.f[0].a, "200");
    assert_string_equal(o.f[0].b, "404");
    assert_int_equal(compare(&c, 200, NULL, "hello", 200, NULL, "hellp", NULL, &o), 1);
    assert_string_equal(o.f[0].name, "body");
    assert_string_equal(o.f[0].a, "hello");
    assert_string_equal(o.f[0].b, "hellp");
    /* a prefix of the other is a difference (lengths differ) */
    assert_int_equal(compare(&c, 200, NULL, "hello", 200, NULL, "hello!", NULL, &o), 1);
    /* status off: only the body */
    c.status = false;
    assert_int_equal(compare(&c, 200, NULL, "x", 500, NULL, "x", NULL, &o), 0);
    /* body none */
    c.body = HL_DIFF_BODY_NONE;
    assert_int_equal(compare(&c, 200, NULL, "x", 200, NULL, "y", NULL, &o), 0);
}

static void
test_headers(void **state)
{
    static const char *const h1[] = { "Content-Type: text/plain", "X-Id: 1",
                                      "Date: Mon", NULL };
    static const char *const h2[] = { "content-type: text/html", "X-Id: 2",
                                      "Date: Tue", NULL };
    static const char *const h3[] = { "Content-Type: text/plain", "X-Id: 1",
                                      "Date: Mon", "Content-Length: 5", NULL };
    struct hl_diff_conf c;
    struct hl_diff_out o;

    (void)state;
    conf_init(&c, HL_DIFF_BODY_NONE);
    add_header(&c, "content-type");
    assert_int_equal(compare(&c, 200, h1, "", 200, h2, "", NULL, &o), 1);
    assert_string_equal(o.f[0].name, "header:content-type");
    assert_string_equal(o.f[0].a, "text/plain");
    assert_string_equal(o.f[0].b, "text/html");
    /* absent on one side */
    assert_int_equal(compare(&c, 200, h1, "", 200, NULL, "", NULL, &o), 1);
    assert_string_equal(o.f[0].b, "(absent)");
    /* "*": every field but framing ones and the ignored ones */
    conf_init(&c, HL_DIFF_BODY_NONE);
    c.all_headers = true;
    assert_int_equal(compare(&c, 200, h1, "", 200, h2, "", NULL, &o), 3);
    assert_int_equal(compare(&c, 200, h1, "", 200, h3, "", NULL, &o), 0);
    snprintf(c.ignore_headers[c.nignore_headers++], HL_DIFF_NAME_MAX, "date");
    assert_int_equal(compare(&c, 200, h1, "", 200, h2, "", NULL, &o), 2);
}

static void
test_json_order_and_numbers(void **state)
{
    struct hl_diff_conf c;
    struct hl_diff_out o;

    (void)state;
    conf_init(&c, HL_DIFF_BODY_JSON);
    /* key order does not matter; numbers are numbers */
    assert_int_equal(compare(&c, 200, NULL, "{\"a\":1,\"b\":[1,2,{\"c\":2.50}]}", 200, NULL,
                             " { \"b\" : [1.0, 2e0, {\"c\": 2.5}], \"a\": 1 } ", NULL, &o), 0);
    /* a value differs */
    assert_int_equal(compare(&c, 200, NULL, "{\"a\":1,\"b\":2}", 200, NULL,
                             "{\"b\":3,\"a\":1}", NULL, &o), 1);
    assert_string_equal(o.f[0].name, "$.b");
    assert_string_equal(o.f[0].a, "2");
    assert_string_equal(o.f[0].b, "3");
    /* a string "1" is not the number 1 */
    assert_int_equal(compare(&c, 200, NULL, "{\"a\":1}", 200, NULL, "{\"a\":\"1\"}", NULL,
                             &o), 1);
    /* array order matters; a missing key is a difference */
    assert_int_equal(compare(&c, 200, NULL, "[1,2]", 200, NULL, "[2,1]", NULL, &o), 2);
    assert_int_equal(compare(&c, 200, NULL, "{\"a\":1,\"x\":{}}", 200, NULL, "{\"a\":1}",
                             NULL, &o), 1);
    assert_string_equal(o.f[0].name, "$.x");
    assert_string_equal(o.f[0].b, "(absent)");
    /* big integers compare exactly */
    assert_int_equal(compare(&c, 200, NULL, "[9007199254740993]", 200, NULL,
                             "[9007199254740992]", NULL, &o), 1);
    /* not JSON on both sides: bytes */
    assert_int_equal(compare(&c, 200, NULL, "not json", 200, NULL, "not json", NULL, &o), 0);
    assert_int_equal(compare(&c, 200, NULL, "{\"a\":1}", 200, NULL, "{\"a\":1", NULL, &o), 1);
    assert_string_equal(o.f[0].name, "body");
}

static void
test_ignore_json(void **state)
{
    struct hl_diff_conf c;
    struct hl_diff_out o;

    (void)state;
    conf_init(&c, HL_DIFF_BODY_JSON);
    add_ignore(&c, "$.ts");
    add_ignore(&c, "$.items[*].id");
    add_ignore(&c, "$.*.rev");
    assert_int_equal(compare(&c, 200, NULL,
                             "{\"ts\":1,\"items\":[{\"id\":1,\"v\":1},{\"id\":2,\"v\":2}],"
                             "\"m\":{\"rev\":1,\"k\":1}}", 200, NULL,
                             "{\"ts\":{\"deep\":2},\"items\":[{\"id\":9,\"v\":1},"
                             "{\"id\":8,\"v\":2}],\"m\":{\"rev\":5,\"k\":1}}", NULL, &o), 0);
    /* every leaf ignored: nothing to compare (found by tests/fuzz/fuzz_diff.c) */
    assert_int_equal(compare(&c, 200, NULL, "{\"ts\":1}", 200, NULL, "{\"ts\":2}", NULL, &o), 0);
    assert_int_equal(compare(&c, 200, NULL, "{\"items\":[{\"id\":1,\"v\":1}]}", 200, NULL,
                             "{\"items\":[{\"id\":1,\"v\":3}]}", NULL, &o), 1);
    assert_string_equal(o.f[0].name, "$.items[0].v");
    assert_non_null(hl_diff_path_check("ts"));
    assert_non_null(hl_diff_path_check("$.a[x]"));
    assert_non_null(hl_diff_path_check("$..a"));
    assert_non_null(hl_diff_path_check("$.a[1"));
    assert_null(hl_diff_path_check("$"));
    assert_null(hl_diff_path_check("$[3].a"));
}

static void
test_noise_learning(void **state)
{
    static const char *const h1[] = { "X-Request-Id: a1", "Content-Type: j", NULL };
    static const char *const h2[] = { "X-Request-Id: b2", "Content-Type: j", NULL };
    struct hl_diff_conf c;
    struct hl_diff_resp p, s, cand;
    struct hl_diff_out o;
    struct hl_noise noise;

    (void)state;
    memset(&noise, 0, sizeof(noise));
    conf_init(&c, HL_DIFF_BODY_JSON);
    c.all_headers = true;
    /* two servers of the serving side disagree on the id and a timestamp */
    capture(&p, &c, 200, h1, "{\"v\":1,\"at\":[{\"ts\":100}]}", 5);
    capture(&s, &c, 200, h2, "{\"at\":[{\"ts\":101}],\"v\":1}", 5);
    assert_int_equal(hl_diff_learn(&c, &p, &s, &noise), 2);
    assert_int_equal(noise.n, 2);
    assert_int_equal(hl_diff_learn(&c, &p, &s, &noise), 0);
    /* the candidate differs in those and in v: only v counts */
    capture(&cand, &c, 200, h2, "{\"v\":2,\"at\":[{\"ts\":102}]}", 5);
    assert_int_equal(hl_diff_compare(&c, &p, &cand, &noise, &o), 1);
    assert_int_equal(o.noise, 2);
    assert_string_equal(o.f[0].name, "$.v");
    /* noise names generalise the index */
    assert_true(strcmp(noise.name[0], "$.at[*].ts") == 0 ||
                strcmp(noise.name[1], "$.at[*].ts") == 0);
    hl_diff_resp_free(&p);
    hl_diff_resp_free(&s);
    hl_diff_resp_free(&cand);

    {
        struct hl_noise other;

        memset(&other, 0, sizeof(other));
        hl_noise_add(&other, 42, "x");
        assert_int_equal(hl_noise_merge(&other, &noise), 2);
        assert_int_equal(hl_noise_merge(&other, &noise), 0);
        assert_int_equal(other.n, 3);
    }
}

static void
test_bounded(void **state)
{
    struct hl_diff_conf c;
    struct hl_diff_resp r;
    char big[100];

    (void)state;
    conf_init(&c, HL_DIFF_BODY_JSON);
    c.max_bytes = 64;
    memset(big, 'x', sizeof(big));
    hl_diff_resp_init(&r, &c);
    assert_int_equal(hl_diff_resp_body(&r, &c, big, 60), 0);
    assert_int_equal(hl_diff_resp_body(&r, &c, big, 10), -1);
    assert_true(r.too_large);
    assert_true(r.buf_cap <= 64);
    hl_diff_resp_end(&r, &c);
    hl_diff_resp_free(&r);
    /* bytes: a hash, no buffer */
    c.body = HL_DIFF_BODY_BYTES;
    c.max_bytes = 1u << 30;
    hl_diff_resp_init(&r, &c);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(hl_diff_resp_body(&r, &c, big, sizeof(big)), 0);
    assert_null(r.buf);
    assert_int_equal(r.prefix_len, HL_DIFF_PREFIX);
    hl_diff_resp_end(&r, &c);
    hl_diff_resp_free(&r);
}

static void
test_window(void **state)
{
    struct hl_diff_stats st;

    (void)state;
    hl_diffwin_init(&wa, 10);
    hl_diffwin_init(&wb, 10);
    hl_diffwin_push(&wa, 1000, false);
    hl_diffwin_push(&wa, 1500, true);
    hl_diffwin_push(&wb, 5000, true);
    hl_diffwin_stats(&wa, 5000, &st);
    assert_int_equal(st.compared, 2);
    assert_int_equal(st.diffs, 1);
    hl_diffwin_merge(&wa, &wb);
    hl_diffwin_stats(&wa, 5000, &st);
    assert_int_equal(st.compared, 3);
    assert_int_equal(st.diffs, 2);
    /* ten seconds on, the first second left the window */
    hl_diffwin_stats(&wa, 10999, &st);
    assert_int_equal(st.compared, 3);
    hl_diffwin_stats(&wa, 11000, &st);
    assert_int_equal(st.compared, 1);
    hl_diffwin_reset(&wa);
    hl_diffwin_stats(&wa, 5000, &st);
    assert_int_equal(st.compared, 0);
    assert_true(st.rate == 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_and_bytes),
        cmocka_unit_test(test_headers),
        cmocka_unit_test(test_json_order_and_numbers),
        cmocka_unit_test(test_ignore_json),
        cmocka_unit_test(test_noise_learning),
        cmocka_unit_test(test_bounded),
        cmocka_unit_test(test_window),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
