/*
 * tests/unit/test_ctl_proto.c: admin/ctl_proto.c. The weight syntax is the
 * operator's first line of defence ("cutoverctl weight 10.005" must fail
 * before anything is sent), so it is checked against a table of accepted and
 * refused texts, and against a reference model over every two-decimal value.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <unistd.h>

#include <cmocka.h>

#include "admin/ctl_proto.h"

struct parse_case {
    const char *text;
    int rc;                            /* expected return */
    uint32_t bp;                       /* expected basis points when rc == 0 */
};

static const struct parse_case parse_cases[] = {
    { "0", 0, 0 },
    { "1", 0, 100 },
    { "10", 0, 1000 },
    { "12.5", 0, 1250 },
    { "12.50", 0, 1250 },
    { "99.99", 0, 9999 },
    { "100", 0, 10000 },
    { "100.0", 0, 10000 },
    { "100.00", 0, 10000 },
    { "0.5", 0, 50 },
    { "0.05", 0, 5 },
    { "0.01", 0, 1 },
    { "0.00", 0, 0 },
    { "007", 0, 700 },
    { "50.1", 0, 5010 },
    { "100.01", -1, 0 },
    { "100.1", -1, 0 },
    { "101", -1, 0 },
    { "1000", -1, 0 },
    { "99999999999999999999", -1, 0 },
    { "-1", -1, 0 },
    { "-0", -1, 0 },
    { "+5", -1, 0 },
    { "1e1", -1, 0 },
    { "1E1", -1, 0 },
    { " 5", -1, 0 },
    { "5 ", -1, 0 },
    { "5\n", -1, 0 },
    { "", -1, 0 },
    { ".", -1, 0 },
    { ".5", -1, 0 },
    { "5.", -1, 0 },
    { "0x10", -1, 0 },
    { "10.005", -1, 0 },
    { "10.000", -1, 0 },
    { "1..2", -1, 0 },
    { "1.2.3", -1, 0 },
    { "10%", -1, 0 },
    { "nan", -1, 0 },
    { "inf", -1, 0 },
    { "ten", -1, 0 },
    { "1,5", -1, 0 },
};

static void
test_weight_parse_table(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
        const struct parse_case *pc = &parse_cases[i];
        uint32_t bp = 0xdeadbeef;
        int rc = ctl_weight_parse(pc->text, &bp);

        if (rc != pc->rc)
            fail_msg("ctl_weight_parse(\"%s\") returned %d, want %d",
                     pc->text, rc, pc->rc);
        if (pc->rc == 0 && bp != pc->bp)
            fail_msg("ctl_weight_parse(\"%s\") gave %u bp, want %u",
                     pc->text, bp, pc->bp);
        if (pc->rc != 0 && bp != 0xdeadbeef)
            fail_msg("ctl_weight_parse(\"%s\") wrote its output on failure",
                     pc->text);
    }
}

static void
test_weight_parse_null(void **state)
{
    uint32_t bp = 7;

    (void)state;
    assert_int_equal(ctl_weight_parse(NULL, &bp), -1);
    assert_int_equal(bp, 7);
}

/* Every value 0.00..100.00 written with two, one or no decimals parses to
 * the same basis points as the integer model, and the next value past 100
 * is refused in every form. */
static void
test_weight_parse_every_value(void **state)
{
    char text[32];
    uint32_t v, bp;

    (void)state;
    for (v = 0; v <= 10001; v++) {
        int want = v <= 10000 ? 0 : -1;

        snprintf(text, sizeof(text), "%u.%02u", v / 100, v % 100);
        assert_int_equal(ctl_weight_parse(text, &bp), want);
        if (want == 0)
            assert_int_equal(bp, v);
        if (v % 10 == 0) {
            snprintf(text, sizeof(text), "%u.%u", v / 100, (v % 100) / 10);
            assert_int_equal(ctl_weight_parse(text, &bp), want);
            if (want == 0)
                assert_int_equal(bp, v);
        }
        if (v % 100 == 0) {
            snprintf(text, sizeof(text), "%u", v / 100);
            assert_int_equal(ctl_weight_parse(text, &bp), want);
            if (want == 0)
                assert_int_equal(bp, v);
        }
    }
}

struct double_case {
    double percent;
    int rc;
    uint32_t bp;
};

static void
test_weight_from_double_table(void **state)
{
    const struct double_case cases[] = {
        { 0.0, 0, 0 },
        { -0.0, 0, 0 },
        { 10.0, 0, 1000 },
        { 12.5, 0, 1250 },
        { 12.34, 0, 1234 },
        { 0.01, 0, 1 },
        { 0.07, 0, 7 },
        { 99.99, 0, 9999 },
        { 100.0, 0, 10000 },
        { 33.33, 0, 3333 },
        { 100.01, -1, 0 },
        { 100.0000001, -1, 0 },
        { -0.01, -1, 0 },
        { -1.0, -1, 0 },
        { 10.005, -1, 0 },
        { 0.001, -1, 0 },
        { 33.333, -1, 0 },
        { 1e9, -1, 0 },
        { NAN, -1, 0 },
        { INFINITY, -1, 0 },
        { -INFINITY, -1, 0 },
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint32_t bp = 0xdeadbeef;
        int rc = ctl_weight_from_double(cases[i].percent, &bp);

        if (rc != cases[i].rc)
            fail_msg("ctl_weight_from_double(%.17g) returned %d, want %d",
                     cases[i].percent, rc, cases[i].rc);
        if (cases[i].rc == 0 && bp != cases[i].bp)
            fail_msg("ctl_weight_from_double(%.17g) gave %u bp, want %u",
                     cases[i].percent, bp, cases[i].bp);
    }
}

/* What cutoverctl sends (bp / 100.0, printed and read back as JSON text
 * would be) comes back to the same basis points for every weight. */
static void
test_weight_double_round_trip(void **state)
{
    char text[64];
    uint32_t v, bp;

    (void)state;
    for (v = 0; v <= 10000; v++) {
        double p = v / 100.0;

        assert_int_equal(ctl_weight_from_double(p, &bp), 0);
        assert_int_equal(bp, v);
        snprintf(text, sizeof(text), "%.17g", p);
        assert_int_equal(ctl_weight_from_double(strtod(text, NULL), &bp), 0);
        assert_int_equal(bp, v);
        /* half a basis point away is never a valid weight */
        assert_int_equal(ctl_weight_from_double(p + 0.005, &bp), -1);
    }
}

static void
test_default_socket_env(void **state)
{
    char buf[256];

    (void)state;
    assert_int_equal(setenv("CUTOVER_SOCKET", "/tmp/x/custom.sock", 1), 0);
    ctl_default_socket(buf, sizeof(buf));
    assert_string_equal(buf, "/tmp/x/custom.sock");

    /* an empty value counts as unset */
    assert_int_equal(setenv("CUTOVER_SOCKET", "", 1), 0);
    ctl_default_socket(buf, sizeof(buf));
    assert_string_not_equal(buf, "");
    assert_int_equal(unsetenv("CUTOVER_SOCKET"), 0);
}

static void
test_default_socket_unset(void **state)
{
    char buf[256], want[256];

    (void)state;
    assert_int_equal(unsetenv("CUTOVER_SOCKET"), 0);
    if (getuid() == 0) {
        ctl_default_socket(buf, sizeof(buf));
        assert_string_equal(buf, "/run/cutover/admin.sock");
        return;
    }
    assert_int_equal(setenv("XDG_RUNTIME_DIR", "/run/user/4242", 1), 0);
    ctl_default_socket(buf, sizeof(buf));
    assert_string_equal(buf, "/run/user/4242/cutover/admin.sock");

    snprintf(want, sizeof(want), "/tmp/cutover-%lu/admin.sock",
             (unsigned long)getuid());
    assert_int_equal(unsetenv("XDG_RUNTIME_DIR"), 0);
    ctl_default_socket(buf, sizeof(buf));
    assert_string_equal(buf, want);

    /* a relative runtime dir is invalid: ignored */
    assert_int_equal(setenv("XDG_RUNTIME_DIR", "run/user", 1), 0);
    ctl_default_socket(buf, sizeof(buf));
    assert_string_equal(buf, want);
}

/* The result always fits the caller's buffer, NUL-terminated. */
static void
test_default_socket_truncates(void **state)
{
    char buf[8];

    (void)state;
    memset(buf, 'x', sizeof(buf));
    assert_int_equal(setenv("CUTOVER_SOCKET", "/a/very/long/path.sock", 1), 0);
    ctl_default_socket(buf, sizeof(buf));
    assert_int_equal(buf[sizeof(buf) - 1], '\0');
    assert_string_equal(buf, "/a/very");
    assert_int_equal(unsetenv("CUTOVER_SOCKET"), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_weight_parse_table),
        cmocka_unit_test(test_weight_parse_null),
        cmocka_unit_test(test_weight_parse_every_value),
        cmocka_unit_test(test_weight_from_double_table),
        cmocka_unit_test(test_weight_double_round_trip),
        cmocka_unit_test(test_default_socket_env),
        cmocka_unit_test(test_default_socket_unset),
        cmocka_unit_test(test_default_socket_truncates),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
