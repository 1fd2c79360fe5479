/*
 * Tests for lib/log.c: the logfmt line (fields, quoting and escaping, so a
 * hostile text can never split or forge a line), the level filter and the
 * rate limit (its count reported by the next line or, once due, by the
 * owner's timer; clocks injected).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/log.h"

/* Runs <fn> with stderr redirected to a temporary file and returns what it
 * wrote (caller frees). */
static char *
capture(void (*fn)(void))
{
    char tmpl[] = "/tmp/test_lib_log.XXXXXX";
    int fd = mkstemp(tmpl), saved = dup(STDERR_FILENO);
    char *buf = calloc(1, 8192);
    ssize_t n;

    assert_true(fd >= 0 && saved >= 0 && buf != NULL);
    unlink(tmpl);
    assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
    fn();
    assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
    close(saved);
    n = pread(fd, buf, 8191, 0);
    assert_true(n >= 0);
    close(fd);
    return buf;
}

static void
write_plain(void)
{
    log_at(LL_INFO, "control", 0, "service %s: weight %d%%", "web", 10);
}

static void
test_text_line(void **state)
{
    char *out = capture(write_plain);
    int y, mo, d, h, mi, s, ms;

    (void)state;
    assert_int_equal(sscanf(out, "ts=%d-%d-%dT%d:%d:%d.%dZ ", &y, &mo, &d, &h, &mi, &s, &ms), 7);
    assert_non_null(strstr(out, "Z level=info module=control msg=\"service web: weight 10%\"\n"));
    assert_null(strstr(out, "conn="));           /* no connection: no field */
    assert_int_equal(strchr(out, '\n')[1], '\0');   /* exactly one line */
    free(out);
}

static void
write_hostile(void)
{
    log_at(LL_WARN, "http", 42, "bad header %s", "a\"b\\c\r\nts=forged level=error\x01");
}

static void
test_escaping(void **state)
{
    char *out = capture(write_hostile);

    (void)state;
    assert_non_null(strstr(out, " level=warn module=http conn=42 msg=\"bad header "
                                "a\\\"b\\\\c\\r\\nts=forged level=error\\x01\"\n"));
    assert_int_equal(strchr(out, '\n')[1], '\0');
    free(out);
}

static void
write_kv(void)
{
    log_kv(LL_WARN, "health", "server_down", "service", "web", "side", "new",
           "server", "127.0.0.1:9002", "why", "connect: refused", "empty", "");
}

static void
test_kv_line(void **state)
{
    char *out = capture(write_kv);

    (void)state;
    assert_non_null(strstr(out, " level=warn module=health event=server_down service=web "
                                "side=new server=127.0.0.1:9002 why=\"connect: refused\" "
                                "empty=\"\"\n"));
    free(out);
}

static void
write_filtered(void)
{
    log_at(LL_DEBUG, "x", 0, "hidden");
    log_kv(LL_DEBUG, "x", "hidden");
}

static void
test_level_filter(void **state)
{
    char *out = capture(write_filtered);

    (void)state;
    assert_string_equal(out, "");
    free(out);
}

static void
test_fmt_value(void **state)
{
    char buf[16];

    (void)state;
    assert_int_equal(log_fmt_value(buf, sizeof(buf), "plain"), 5);
    assert_string_equal(buf, "plain");
    log_fmt_value(buf, sizeof(buf), "a=b");
    assert_string_equal(buf, "\"a=b\"");
    /* truncated, still NUL-terminated within the buffer */
    log_fmt_value(buf, sizeof(buf), "0123456789012345678901234");
    assert_true(strlen(buf) < sizeof(buf));
}

static void
test_ratelimit(void **state)
{
    struct log_ratelimit rl = { 0 };
    uint64_t sup;
    int passed = 0, i;

    (void)state;
    for (i = 0; i < 100; i++)
        passed += log_ratelimit_pass(&rl, 5000 + (uint64_t)i, 5, &sup);
    assert_int_equal(passed, 5);
    /* the next second: passes again and reports what was held back */
    assert_true(log_ratelimit_pass(&rl, 6000, 5, &sup));
    assert_int_equal(sup, 95);
    assert_true(log_ratelimit_pass(&rl, 6001, 5, &sup));
    assert_int_equal(sup, 0);
}

/* The case: a burst, then silence. The count is due at the end of
 * the burst's second and reported then, once; the next line that passes,
 * seconds later, has nothing more to report. */
static void
test_ratelimit_flush_after_burst(void **state)
{
    struct log_ratelimit rl = { 0 };
    uint64_t sup;
    int i;

    (void)state;
    assert_int_equal(log_ratelimit_due_ms(&rl), 0);
    assert_int_equal(log_ratelimit_flush(&rl, 99999), 0);
    for (i = 0; i < 100; i++)
        log_ratelimit_pass(&rl, 5000 + (uint64_t)i, 5, &sup);
    assert_int_equal(log_ratelimit_due_ms(&rl), 6000);
    /* not before the second is over: more may be held back in it */
    assert_int_equal(log_ratelimit_flush(&rl, 5999), 0);
    assert_int_equal(log_ratelimit_flush(&rl, 6000), 95);
    assert_int_equal(log_ratelimit_due_ms(&rl), 0);
    assert_int_equal(log_ratelimit_flush(&rl, 6500), 0);      /* once */
    /* 9 s later: the next line passes and reports nothing twice */
    assert_true(log_ratelimit_pass(&rl, 15000, 5, &sup));
    assert_int_equal(sup, 0);
}

/* Held back, then a line passes in a later second before the timer ran: it
 * reports the count, and the flush finds nothing left. */
static void
test_ratelimit_pass_reports_before_flush(void **state)
{
    struct log_ratelimit rl = { 0 };
    uint64_t sup;
    int i;

    (void)state;
    for (i = 0; i < 8; i++)
        log_ratelimit_pass(&rl, 1000, 5, &sup);
    assert_true(log_ratelimit_pass(&rl, 2100, 5, &sup));
    assert_int_equal(sup, 3);
    assert_int_equal(log_ratelimit_flush(&rl, 3000), 0);
    assert_int_equal(log_ratelimit_due_ms(&rl), 0);
}

/* A limiter with a period of its own (an accept error line every 5 s). */
static void
test_ratelimit_period(void **state)
{
    struct log_ratelimit rl = { .period_ms = 5000 };
    uint64_t sup;

    (void)state;
    assert_true(log_ratelimit_pass(&rl, 10000, 1, &sup));
    assert_false(log_ratelimit_pass(&rl, 11000, 1, &sup));
    assert_false(log_ratelimit_pass(&rl, 14999, 1, &sup));
    assert_int_equal(log_ratelimit_due_ms(&rl), 15000);
    assert_int_equal(log_ratelimit_flush(&rl, 14999), 0);
    assert_int_equal(log_ratelimit_flush(&rl, 15000), 2);
    assert_true(log_ratelimit_pass(&rl, 15001, 1, &sup));
    assert_int_equal(sup, 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_line),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_kv_line),
        cmocka_unit_test(test_level_filter),
        cmocka_unit_test(test_fmt_value),
        cmocka_unit_test(test_ratelimit),
        cmocka_unit_test(test_ratelimit_flush_after_burst),
        cmocka_unit_test(test_ratelimit_pass_reports_before_flush),
        cmocka_unit_test(test_ratelimit_period),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
