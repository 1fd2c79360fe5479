/*
 * Tests for lib/text: text_errf() formats into the caller's buffer (cut to
 * it, or not at all without one) and always returns -1; text_hex_value()
 * over every byte; text_http_status() for the codes the proxy and the admin
 * endpoint send, and "Unknown" for the rest.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "lib/text.h"

static void
test_errf(void **state)
{
    char err[32], small[8];

    (void)state;
    memset(err, 'x', sizeof(err));
    assert_int_equal(text_errf(err, sizeof(err), "%s: %d", "state.json", 42), -1);
    assert_string_equal(err, "state.json: 42");

    /* cut to the buffer, NUL-terminated */
    memset(small, 'x', sizeof(small));
    assert_int_equal(text_errf(small, sizeof(small), "%s", "0123456789"), -1);
    assert_string_equal(small, "0123456");

    /* no buffer, or one of size 0: nothing written, still -1 */
    assert_int_equal(text_errf(NULL, 100, "%s", "x"), -1);
    memset(small, 'x', sizeof(small));
    assert_int_equal(text_errf(small, 0, "%s", "abc"), -1);
    assert_int_equal(small[0], 'x');
    assert_int_equal(text_errf(small, 1, "%s", "abc"), -1);
    assert_string_equal(small, "");
}

static void
test_hex_value(void **state)
{
    int ch, valid = 0;

    (void)state;
    assert_int_equal(text_hex_value('0'), 0);
    assert_int_equal(text_hex_value('7'), 7);
    assert_int_equal(text_hex_value('9'), 9);
    assert_int_equal(text_hex_value('a'), 10);
    assert_int_equal(text_hex_value('f'), 15);
    assert_int_equal(text_hex_value('A'), 10);
    assert_int_equal(text_hex_value('C'), 12);
    assert_int_equal(text_hex_value('F'), 15);
    /* the neighbours of each range */
    assert_int_equal(text_hex_value('/'), -1);
    assert_int_equal(text_hex_value(':'), -1);
    assert_int_equal(text_hex_value('`'), -1);
    assert_int_equal(text_hex_value('g'), -1);
    assert_int_equal(text_hex_value('@'), -1);
    assert_int_equal(text_hex_value('G'), -1);
    assert_int_equal(text_hex_value(-1), -1);      /* EOF from a peek */
    assert_int_equal(text_hex_value(0), -1);

    /* over every byte: exactly the 22 digits, each worth its place */
    for (ch = 0; ch < 256; ch++) {
        int v = text_hex_value(ch);

        if (v < 0)
            continue;
        valid++;
        assert_true(v <= 15);
        assert_int_equal(ch, v < 10 ? '0' + v
                             : ch >= 'a' ? 'a' + v - 10 : 'A' + v - 10);
    }
    assert_int_equal(valid, 22);
}

static void
test_http_status(void **state)
{
    static const struct {
        int status;
        const char *reason;
    } cases[] = {
        { 100, "Continue" },
        { 101, "Switching Protocols" },
        { 200, "OK" },
        { 204, "No Content" },
        { 304, "Not Modified" },
        { 400, "Bad Request" },
        { 401, "Unauthorized" },
        { 403, "Forbidden" },
        { 404, "Not Found" },
        { 405, "Method Not Allowed" },
        { 408, "Request Timeout" },
        { 411, "Length Required" },
        { 413, "Content Too Large" },
        { 414, "URI Too Long" },
        { 429, "Too Many Requests" },
        { 431, "Request Header Fields Too Large" },
        { 500, "Internal Server Error" },
        { 501, "Not Implemented" },
        { 502, "Bad Gateway" },
        { 503, "Service Unavailable" },
        { 504, "Gateway Timeout" },
        { 505, "HTTP Version Not Supported" },
        { 0, "Unknown" },
        { -1, "Unknown" },
        { 299, "Unknown" },
        { 418, "Unknown" },
        { 506, "Unknown" },
        { 999, "Unknown" },
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *r = text_http_status(cases[i].status);

        if (strcmp(r, cases[i].reason) != 0)
            fail_msg("%d: \"%s\", want \"%s\"", cases[i].status, r, cases[i].reason);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_errf),
        cmocka_unit_test(test_hex_value),
        cmocka_unit_test(test_http_status),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
