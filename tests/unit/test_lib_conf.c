/*
 * Tests for lib/conf.c: conf_fail() fills the error and returns -1; the
 * JSON paths of conf_join() and conf_join_index(), truncated to their
 * buffer and never past it; conf_check_keys() names the first unknown key
 * by its path; conf_json_locate() on a table of texts and paths (nested
 * keys and indexes, escapes and UTF-8 in keys and values, columns counted
 * in characters, truncated and malformed text).
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "lib/conf.h"

static void
test_fail(void **state)
{
    struct conf_err err;
    char big[400];

    (void)state;
    memset(&err, 'x', sizeof(err));
    assert_int_equal(conf_fail(&err, "services[0].weight", "must be %d..%d", 0, 100), -1);
    assert_string_equal(err.path, "services[0].weight");
    assert_string_equal(err.msg, "must be 0..100");

    /* a NULL path is the empty path (the whole document) */
    assert_int_equal(conf_fail(&err, NULL, "not an object"), -1);
    assert_string_equal(err.path, "");
    assert_string_equal(err.msg, "not an object");

    /* no error to fill: still -1 */
    assert_int_equal(conf_fail(NULL, "a", "b"), -1);

    /* both are cut to their buffers, NUL-terminated */
    memset(big, 'p', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(conf_fail(&err, big, "%s", big), -1);
    assert_int_equal(strlen(err.path), sizeof(err.path) - 1);
    assert_int_equal(strlen(err.msg), sizeof(err.msg) - 1);
    assert_memory_equal(err.path, big, sizeof(err.path) - 1);
}

static void
test_join(void **state)
{
    char buf[64], small[6];

    (void)state;
    assert_ptr_equal(conf_join(buf, sizeof(buf), "services[0]", "rollback"), buf);
    assert_string_equal(buf, "services[0].rollback");
    assert_string_equal(conf_join(buf, sizeof(buf), "", "services"), "services");
    assert_string_equal(conf_join(buf, sizeof(buf), "a.b", "c"), "a.b.c");

    /* truncated to the buffer: 5 characters and the NUL */
    memset(small, '#', sizeof(small));
    assert_string_equal(conf_join(small, sizeof(small), "admin", "listen"), "admin");
    assert_string_equal(conf_join(small, sizeof(small), "ab", "cdef"), "ab.cd");
    assert_string_equal(conf_join(small, 1, "ab", "cd"), "");

    assert_ptr_equal(conf_join_index(buf, sizeof(buf), "services", 0), buf);
    assert_string_equal(buf, "services[0]");
    assert_string_equal(conf_join_index(buf, sizeof(buf), "a.servers", 12), "a.servers[12]");
    assert_string_equal(conf_join_index(buf, sizeof(buf), "", 3), "[3]");
    assert_string_equal(conf_join_index(buf, sizeof(buf), "x", (size_t)-1),
                        "x[18446744073709551615]");
    assert_string_equal(conf_join_index(small, sizeof(small), "list", 7), "list[");

    /* the building block: three parts, same truncation */
    assert_string_equal(conf_cat3(buf, sizeof(buf), "a", "", "c"), "ac");
    assert_string_equal(conf_cat3(small, sizeof(small), "abc", "def", "ghi"), "abcde");
}

static void
test_check_keys(void **state)
{
    static const char *const allowed[] = { "name", "listen", "weight", NULL };
    static const char *const none[] = { NULL };
    struct conf_err err;
    json_t *o;

    (void)state;
    o = json_pack("{s:s, s:[], s:i}", "name", "web", "listen", "weight", 5);
    assert_non_null(o);
    memset(&err, 0, sizeof(err));
    assert_int_equal(conf_check_keys(o, "services[0]", allowed, &err), 0);
    assert_string_equal(err.path, "");
    assert_string_equal(err.msg, "");

    /* one unknown key among known ones: its full path */
    assert_int_equal(json_object_set_new(o, "wieght", json_integer(5)), 0);
    assert_int_equal(conf_check_keys(o, "services[0]", allowed, &err), -1);
    assert_string_equal(err.path, "services[0].wieght");
    assert_string_equal(err.msg, "unknown key (did you mean \"weight\"?)");

    /* at the top level the path is the key alone */
    assert_int_equal(conf_check_keys(o, "", allowed, &err), -1);
    assert_string_equal(err.path, "wieght");

    /* nothing allowed: any key fails; an empty object never does */
    json_decref(o);
    o = json_pack("{s:b}", "x", 1);
    assert_int_equal(conf_check_keys(o, "top", none, &err), -1);
    assert_string_equal(err.path, "top.x");
    json_decref(o);
    o = json_object();
    assert_int_equal(conf_check_keys(o, "top", none, &err), 0);
    json_decref(o);

    /* keys are compared whole and by case */
    o = json_pack("{s:s}", "Name", "web");
    assert_int_equal(conf_check_keys(o, "s", allowed, &err), -1);
    assert_string_equal(err.path, "s.Name");
    json_decref(o);
    o = json_pack("{s:s}", "nam", "web");
    assert_int_equal(conf_check_keys(o, "s", allowed, &err), -1);
    assert_string_equal(err.path, "s.nam");
    json_decref(o);
}

/* "did you mean": a near known key is named, a far one or a short one is
 * not; with a collector on, every unknown key of an object is listed. */
static void
test_nearest_and_collect(void **state)
{
    static const char *const rb[] = { "enabled", "max_error_rate", "min_requests",
                                      "window_s", "max_p99_ms", "action", NULL };
    static const char *const hc[] = { "type", "path", "interval_ms", "timeout_ms", "rise",
                                      "fall", NULL };
    struct conf_errlist l;
    struct conf_err err;
    json_t *o;

    (void)state;
    assert_string_equal(conf_nearest_key("window", rb), "window_s");
    assert_string_equal(conf_nearest_key("min_request", rb), "min_requests");
    assert_string_equal(conf_nearest_key("max_eror_rate", rb), "max_error_rate");
    assert_string_equal(conf_nearest_key("rsie", hc), "rise");        /* a swap */
    assert_string_equal(conf_nearest_key("intreval_ms", hc), "interval_ms");
    assert_null(conf_nearest_key("colour", rb));
    assert_null(conf_nearest_key("ab", hc));     /* too short to guess: "path"? */
    assert_null(conf_nearest_key("", hc));

    memset(&l, 0, sizeof(l));
    conf_collect(&l);
    o = json_pack("{s:i, s:i, s:i, s:i}", "rsie", 1, "fall", 2, "intreval_ms", 3, "zzz", 4);
    assert_int_equal(conf_check_keys(o, "h", hc, &err), 0);   /* the parse goes on */
    conf_collect(NULL);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.e[0].path, "h.rsie");
    assert_string_equal(l.e[1].path, "h.intreval_ms");
    assert_string_equal(l.e[1].msg, "unknown key (did you mean \"interval_ms\"?)");
    assert_string_equal(l.e[2].msg, "unknown key");
    conf_errlist_add(&l, &l.e[0]);              /* the same error twice: once */
    assert_int_equal(l.n, 3);
    json_decref(o);
    /* off again: the first only */
    memset(&l, 0, sizeof(l));
    o = json_pack("{s:i, s:i}", "a1", 1, "a2", 2);
    assert_int_equal(conf_check_keys(o, "", hc, &err), -1);
    assert_int_equal(l.n, 0);
    json_decref(o);
}

/* The typed readers: a present value of the right type and range is read,
 * an absent one leaves the default (or NULL), and every wrong one fails
 * with the member's path and the reason. */
static void
test_readers(void **state)
{
    json_error_t je;
    json_t *o = json_loads("{\"i\": 7, \"r\": 2000.0, \"big\": 70000, \"neg\": -1,"
                           " \"d\": 0.5, \"s\": \"x\", \"e\": \"\", \"o\": {}, \"n\": 3}",
                           0, &je);
    struct conf_err err;
    long long ll = 99;
    unsigned u = 42;
    double d = 1.5;
    const char *str = "default";
    json_t *obj = NULL;

    (void)state;
    assert_non_null(o);
    assert_int_equal(conf_opt_int(o, "i", "a", 0, 10, &ll, &err), 0);
    assert_int_equal(ll, 7);
    assert_int_equal(conf_opt_int(o, "missing", "a", 0, 10, &ll, &err), 0);
    assert_int_equal(ll, 7);
    assert_int_equal(conf_opt_int(o, "r", "a", 0, 5000, &ll, &err), -1);
    assert_string_equal(err.path, "a.r");
    assert_string_equal(err.msg, "must be an integer");
    assert_int_equal(conf_opt_uint(o, "big", "a.b", 0, 65535, &u, &err), -1);
    assert_string_equal(err.path, "a.b.big");
    assert_string_equal(err.msg, "must be between 0 and 65535");
    assert_int_equal(u, 42);
    assert_int_equal(conf_opt_uint(o, "neg", "", 0, 10, &u, &err), -1);
    assert_string_equal(err.path, "neg");
    assert_int_equal(conf_opt_uint(o, "n", "", 0, 10, &u, &err), 0);
    assert_int_equal(u, 3);
    assert_int_equal(conf_opt_double(o, "d", "a", 0, 1, &d, &err), 0);
    assert_true(d == 0.5);
    assert_int_equal(conf_opt_double(o, "i", "a", 0, 1, &d, &err), -1);
    assert_string_equal(err.msg, "must be between 0 and 1");
    assert_int_equal(conf_opt_double(o, "s", "a", 0, 1, &d, &err), -1);
    assert_string_equal(err.msg, "must be a number");
    assert_int_equal(conf_opt_string(o, "s", "a", &str, &err), 0);
    assert_string_equal(str, "x");
    assert_int_equal(conf_opt_string(o, "missing", "a", &str, &err), 0);
    assert_null(str);
    assert_int_equal(conf_opt_string(o, "e", "a", &str, &err), 0);
    assert_string_equal(str, "");
    assert_int_equal(conf_opt_nonempty(o, "e", "a", &str, &err), -1);
    assert_string_equal(err.path, "a.e");
    assert_string_equal(err.msg, "must not be empty");
    assert_int_equal(conf_opt_string(o, "i", "a", &str, &err), -1);
    assert_string_equal(err.msg, "must be a string");
    assert_int_equal(conf_opt_object(o, "o", "a", &obj, &err), 0);
    assert_true(json_is_object(obj));
    assert_int_equal(conf_opt_object(o, "s", "a", &obj, &err), -1);
    assert_string_equal(err.path, "a.s");
    assert_string_equal(err.msg, "must be an object");
    assert_int_equal(conf_int(json_object_get(o, "i"), "x[0]", 8, 9, &ll, &err), -1);
    assert_string_equal(err.path, "x[0]");
    assert_string_equal(err.msg, "must be between 8 and 9");
    json_decref(o);
}

/* Percentages as basis points: two decimals exact, a third refused, the
 * range by <zero_ok>. */
static void
test_percent(void **state)
{
    json_t *v;
    struct conf_err err;
    uint32_t bp = 7;
    static const struct { const char *json; bool zero_ok; int rc; uint32_t bp; const char *msg; } c[] = {
        { "10.25", true, 0, 1025, NULL },
        { "0.29", true, 0, 29, NULL },
        { "0", true, 0, 0, NULL },
        { "100", false, 0, 10000, NULL },
        { "0", false, -1, 0, "must be greater than 0 and at most 100" },
        { "0.001", false, -1, 0, "must have at most two decimals" },
        { "10.005", true, -1, 0, "must have at most two decimals" },
        { "100.01", true, -1, 0, "must be between 0 and 100" },
        { "-1", true, -1, 0, "must be between 0 and 100" },
        { "\"10\"", true, -1, 0, "must be a number" },
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof c / sizeof c[0]; i++) {
        v = json_loads(c[i].json, JSON_DECODE_ANY, NULL);
        assert_non_null(v);
        bp = 7;
        assert_int_equal(conf_percent_bp(v, "s.weight", c[i].zero_ok, &bp, &err), c[i].rc);
        if (c[i].rc == 0) {
            assert_int_equal(bp, c[i].bp);
        } else {
            assert_int_equal(bp, 7);
            assert_string_equal(err.path, "s.weight");
            assert_string_equal(err.msg, c[i].msg);
        }
        json_decref(v);
    }
}

static void
test_locate(void **state)
{
    static const struct {
        const char *text, *path;
        int rc, line, col;
    } cases[] = {
        { "{\"a\": 1}", "a", 0, 1, 2 },
        { "{\"a\": 1}", "", 0, 1, 1 },
        { "\n\n   {\"a\": 1}", "", 0, 3, 4 },
        { "{\"a\": 1}", "b", -1, 0, 0 },
        { "{\"a\": {\"b\": [1, 2, {\"c\": 3}]}}", "a.b", 0, 1, 8 },
        { "{\"a\": {\"b\": [1, 2, {\"c\": 3}]}}", "a.b[1]", 0, 1, 17 },
        { "{\"a\": {\"b\": [1, 2, {\"c\": 3}]}}", "a.b[2].c", 0, 1, 21 },
        { "{\"a\": {\"b\": [1, 2, {\"c\": 3}]}}", "a.b[3]", -1, 0, 0 },
        { "{\"a\": {\"b\": [1, 2, {\"c\": 3}]}}", "a.b[0].c", -1, 0, 0 },
        { "{\"a\": 1}", "a.b", -1, 0, 0 },
        { "{\"a\": 1}", "a[0]", -1, 0, 0 },
        { "{\n  \"x\": {\"y\": 1},\n  \"a\": {\n    \"rsie\": 3\n  }\n}", "a.rsie", 0, 4, 5 },
        { "{\"x\": \"a.b{[\\\"]\", \"t\": 1}", "t", 0, 1, 19 },
        { "{\"r\\u0073ie\": 1}", "rsie", 0, 1, 2 },
        { "{\"\\ud83d\\ude00\": 1, \"b\": 2}", "\xf0\x9f\x98\x80", 0, 1, 2 },
        { "{\"\xc3\xa9\": \"\xc3\xbc\", \"b\": 2}", "b", 0, 1, 12 },
        { "{\"\xc3\xa9\": 1,\n\t\"b\": 2}", "b", 0, 2, 2 },
        { "[10, [20, 30]]", "[1][0]", 0, 1, 7 },
        { "[10, [20, 30]]", "[1][1]", 0, 1, 11 },
        { "{\"a\": 1, \"a\": 2}", "a", 0, 1, 2 },
        { "{\"a\": [1, 2", "a[5]", -1, 0, 0 },
        { "{\"a\": [1, 2", "a[1]", 0, 1, 11 },
        { "{\"a\": {\"b\"", "a.b", -1, 0, 0 },
        { "{\"a\": {\"b\": ", "a.b", 0, 1, 8 },
        { "{\"a\": {\"b\"", "a.c", -1, 0, 0 },
        { "{\"a\" 1}", "a", -1, 0, 0 },
        { "{\"ab\": 1, \"a\": 2}", "a", 0, 1, 11 },
        { "{\"a\": 1}", "a.", -1, 0, 0 },
        { "{\"a\": [1]}", "a[x]", -1, 0, 0 },
        { "", "", -1, 0, 0 },
        { "{\"s\": [{}, {\"t\": [true, null, {\"u\": -1.5e3}]}]}", "s[1].t[2].u", 0, 1, 32 },
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int line = 0, col = 0;
        int rc = conf_json_locate(cases[i].text, strlen(cases[i].text), cases[i].path,
                                  &line, &col);

        if (rc != cases[i].rc || (rc == 0 && (line != cases[i].line ||
                                              col != cases[i].col)))
            fail_msg("case %zu (%s): got %d %d:%d, want %d %d:%d", i, cases[i].path,
                     rc, line, col, cases[i].rc, cases[i].line, cases[i].col);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fail),
        cmocka_unit_test(test_join),
        cmocka_unit_test(test_nearest_and_collect),
        cmocka_unit_test(test_check_keys),
        cmocka_unit_test(test_readers),
        cmocka_unit_test(test_percent),
        cmocka_unit_test(test_locate),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
