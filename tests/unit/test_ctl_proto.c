/*
 * tests/unit/test_ctl_proto.c: admin/ctl_proto.c. The weight syntax is the
 * operator's first line of defence ("cutoverctl weight 10.005" must fail
 * before anything is sent), so it is checked against a table of accepted and
 * refused texts, and against a reference model over every two-decimal value.
 * The text rule (what cutoverctl prints as it is, what a reason may hold) is
 * checked against a table of attacks and encodings, and by a seeded random
 * run: whatever the input, the escaped text is safe to print and decodes
 * back to the input.
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

/* ---- text that may be shown ------------------------------------------- */

struct esc_case {
    const char *in;
    size_t len;                        /* 0: strlen(in) */
    unsigned flags;
    const char *out;
};

static const struct esc_case esc_cases[] = {
    { "p99 above budget", 0, 0, "p99 above budget" },
    /* a reason that would print as a line of its own */
    { "x\n2026-12-06T00:00:00.000Z  web  uid:0  promote  0.00% -> 100.00%", 0, 0,
      "x\\n2026-12-06T00:00:00.000Z  web  uid:0  promote  0.00% -> 100.00%" },
    { "a\r\tb", 0, 0, "a\\r\\tb" },
    { "\x1b[2J\x1b]0;owned\x07", 0, 0, "\\x1b[2J\\x1b]0;owned\\x07" },
    { "del\x7f", 0, 0, "del\\x7f" },
    { "nul", 4, 0, "nul\\x00" },
    { "back\\slash", 0, 0, "back\\\\slash" },
    { "say \"hi\"", 0, 0, "say \"hi\"" },
    { "say \"hi\"", 0, CTL_ESC_QUOTED, "say \\\"hi\\\"" },
    /* C1 controls: CSI, NEL */
    { "\xc2\x9b" "31m", 0, 0, "\\xc2\\x9b31m" },
    { "a\xc2\x85" "b", 0, 0, "a\\xc2\\x85b" },
    { "\xc2\xa0\xc2\xbf", 0, 0, "\xc2\xa0\xc2\xbf" },       /* U+00A0, U+00BF: shown */
    /* separators and bidirectional formatting */
    { "a\xe2\x80\xa8" "b\xe2\x80\xa9", 0, 0, "a\\xe2\\x80\\xa8b\\xe2\\x80\\xa9" },
    { "\xe2\x80\xae" "dlrow", 0, 0, "\\xe2\\x80\\xaedlrow" },
    { "\xe2\x81\xa6" "x\xe2\x81\xa9", 0, 0, "\\xe2\\x81\\xa6x\\xe2\\x81\\xa9" },
    { "\xd8\x9c\xe2\x80\x8e\xe2\x80\x8f", 0, 0,
      "\\xd8\\x9c\\xe2\\x80\\x8e\\xe2\\x80\\x8f" },
    /* valid printable UTF-8 stays */
    { "h\xc3\xa9llo w\xc3\xb6rld \xe2\x9c\x93 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80", 0, 0,
      "h\xc3\xa9llo w\xc3\xb6rld \xe2\x9c\x93 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80" },
    /* invalid UTF-8: each byte */
    { "\x80", 0, 0, "\\x80" },
    { "\xc0\xaf", 0, 0, "\\xc0\\xaf" },                   /* overlong '/' */
    { "\xe0\x80\xaf", 0, 0, "\\xe0\\x80\\xaf" },           /* overlong, 3 bytes */
    { "\xed\xa0\x80", 0, 0, "\\xed\\xa0\\x80" },           /* a surrogate */
    { "\xf4\x90\x80\x80", 0, 0, "\\xf4\\x90\\x80\\x80" },   /* over U+10FFFF */
    { "\xe2\x82", 0, 0, "\\xe2\\x82" },                    /* cut short */
    { "\xe2" "a", 0, 0, "\\xe2a" },
    { "\xff\xfe", 0, 0, "\\xff\\xfe" },
};

static void
test_escape_table(void **state)
{
    char out[512];
    size_t i, len, n;

    for (i = 0; i < sizeof(esc_cases) / sizeof(esc_cases[0]); i++) {
        const struct esc_case *c = &esc_cases[i];

        len = c->len ? c->len : strlen(c->in);
        n = ctl_escape(out, sizeof(out), c->in, len, c->flags);
        if (strcmp(out, c->out) != 0)
            fail_msg("case %zu: got \"%s\", want \"%s\"", i, out, c->out);
        assert_int_equal(n, strlen(c->out));
        assert_int_equal(ctl_escape(NULL, 0, c->in, len, c->flags), n);
        /* the text is shown as it is exactly when nothing was escaped
         * (backslashes and quotes aside) */
        if (strchr(c->in, '\\') == NULL && !(c->flags & CTL_ESC_QUOTED))
            assert_int_equal(ctl_text_ok(c->in, len, NULL), strcmp(out, c->in) == 0);
    }
}

/* A result that does not fit ends before the first piece that does not:
 * never half an escape or half a character; the length is the whole one. */
static void
test_escape_truncates(void **state)
{
    char out[8];

    assert_int_equal(ctl_escape(out, sizeof(out), "abc\x1b" "def", 7, 0), 10);
    assert_string_equal(out, "abc\\x1b");
    assert_int_equal(ctl_escape(out, 6, "abc\x1b" "def", 7, 0), 10);
    assert_string_equal(out, "abc");
    assert_int_equal(ctl_escape(out, 5, "ab\xe6\x97\xa5", 5, 0), 5);
    assert_string_equal(out, "ab");
    assert_int_equal(ctl_escape(out, 1, "abc", 3, 0), 3);
    assert_string_equal(out, "");
}

static void
test_text_ok_offset(void **state)
{
    size_t bad = 99;

    assert_true(ctl_text_ok("", 0, &bad));
    assert_true(ctl_text_ok("disk full, p99 \xe2\x9c\x93", 18, &bad));
    assert_false(ctl_text_ok("two\nlines", 9, &bad));
    assert_int_equal(bad, 3);
    assert_false(ctl_text_ok("ok \xc2\x9b", 5, &bad));
    assert_int_equal(bad, 3);
    assert_false(ctl_text_ok("tab\there", 8, &bad));
    assert_int_equal(bad, 3);
    assert_false(ctl_text_ok("x\xe2\x80\xae", 4, &bad));
    assert_int_equal(bad, 1);
}

/* Decodes ctl_escape()'s output <s> into <out>; returns the length, or
 * -1 when it is not something ctl_escape() writes. */
static long
unescape(const char *s, char *out)
{
    long n = 0;

    while (*s != '\0') {
        if (*s != '\\') {
            out[n++] = *s++;
            continue;
        }
        s++;
        switch (*s) {
        case '\\': out[n++] = '\\'; s++; break;
        case '"': out[n++] = '"'; s++; break;
        case 'n': out[n++] = '\n'; s++; break;
        case 'r': out[n++] = '\r'; s++; break;
        case 't': out[n++] = '\t'; s++; break;
        case 'x': {
            char h[3] = { s[1], s[2], '\0' };

            if (strspn(h, "0123456789abcdef") != 2)
                return -1;
            out[n++] = (char)strtol(h, NULL, 16);
            s += 3;
            break;
        }
        default:
            return -1;
        }
    }
    return n;
}

/* Random bytes (seeded; biased towards UTF-8 lead and continuation bytes,
 * controls, quotes and backslashes): the output is always safe to print
 * (ctl_text_ok(), no byte below 0x20 or 0x7f) and decodes back exactly. */
static void
test_escape_random(void **state)
{
    static const unsigned char pick[] = { 0x00, 0x07, 0x09, 0x0a, 0x0d, 0x1b, 0x22, 0x5c,
                                          0x7f, 0x80, 0x85, 0x9b, 0xa8, 0xae, 0xbf, 0xc0,
                                          0xc2, 0xd8, 0xe2, 0xed, 0xf0, 0xf4, 0xf5, 0xff };
    char in[64], out[64 * 4 + 1], back[64];
    unsigned long seed = 20261206;
    int round, i, len, flags;
    long n;

    for (round = 0; round < 20000; round++) {
        seed = seed * 6364136223846793005UL + 1442695040888963407UL;
        len = (int)((seed >> 33) % 24);
        for (i = 0; i < len; i++) {
            seed = seed * 6364136223846793005UL + 1442695040888963407UL;
            in[i] = (seed >> 40) % 3 == 0 ? (char)('a' + (seed >> 20) % 26)
                                           : (char)pick[(seed >> 45) % sizeof(pick)];
        }
        flags = round % 2 ? CTL_ESC_QUOTED : 0;
        assert_true(ctl_escape(out, sizeof(out), in, (size_t)len, flags) < sizeof(out));
        assert_true(ctl_text_ok(out, strlen(out), NULL));
        if (flags)
            for (i = 0; out[i] != '\0'; i++)
                assert_false(out[i] == '"' && (i == 0 || out[i - 1] != '\\'));
        n = unescape(out, back);
        assert_int_equal(n, len);
        assert_memory_equal(back, in, (size_t)len);
    }
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
        cmocka_unit_test(test_escape_table),
        cmocka_unit_test(test_escape_truncates),
        cmocka_unit_test(test_text_ok_offset),
        cmocka_unit_test(test_escape_random),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
