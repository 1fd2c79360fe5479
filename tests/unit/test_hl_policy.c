/* tests/unit/test_hl_policy.c: the rollback rule and the automatic decision
 * of health/policy.c. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "health/policy.h"
#include "health/window.h"

#define NO_LEGACY UINT64_MAX     /* legacy_req value meaning "pass NULL" */

struct pcase {
    const char *name;
    /* conf (defaults: enabled, 0.05, min 20, window 10, no p99, no ratio) */
    bool disabled;
    double max_error_rate;       /* < 0: default */
    unsigned min_requests;       /* 0: default */
    unsigned max_p99_ms;
    double ratio;
    /* new side */
    uint64_t req, err;
    double p99_ms;
    /* legacy side */
    uint64_t legacy_req, legacy_err;
    /* expected */
    enum hl_breach_kind kind;
};

static const struct pcase cases[] = {
    { "disabled, all errors", true, -1, 0, 0, 0, 100, 100, 5, 100, 0, HL_BR_NONE },
    { "one below min_requests", false, -1, 0, 0, 0, 19, 19, 5, 100, 0, HL_BR_NONE },
    { "at min_requests, 0.10", false, -1, 0, 0, 0, 20, 2, 5, 100, 0, HL_BR_ERROR_RATE },
    { "rate equal 1/20", false, -1, 0, 0, 0, 20, 1, 5, 100, 0, HL_BR_NONE },
    { "rate equal 3/60", false, -1, 0, 0, 0, 60, 3, 5, 100, 0, HL_BR_NONE },
    { "rate just above 4/79", false, -1, 0, 0, 0, 79, 4, 5, 100, 0, HL_BR_ERROR_RATE },
    { "rate 0.075", false, -1, 0, 0, 0, 40, 3, 5, 100, 0, HL_BR_ERROR_RATE },
    { "max 0, no error", false, 0, 0, 0, 0, 100, 0, 5, 100, 0, HL_BR_NONE },
    { "max 0, one error", false, 0, 0, 0, 0, 100, 1, 5, 100, 0, HL_BR_ERROR_RATE },
    { "max 1, all errors", false, 1, 0, 0, 0, 100, 100, 5, 100, 0, HL_BR_NONE },
    { "min_requests 1, one error", false, -1, 1, 0, 0, 1, 1, 5, 0, 0, HL_BR_ERROR_RATE },
    { "min_requests 1, no request", false, -1, 1, 0, 0, 0, 0, 0, 0, 0, HL_BR_NONE },
    { "p99 unset, p99 huge", false, -1, 0, 0, 0, 100, 0, 60000, 100, 0, HL_BR_NONE },
    { "p99 equal", false, -1, 0, 500, 0, 100, 0, 500.0, 100, 0, HL_BR_NONE },
    { "p99 just above", false, -1, 0, 500, 0, 100, 0, 500.1, 100, 0, HL_BR_P99 },
    { "p99 above, few requests", false, -1, 0, 500, 0, 19, 0, 9000, 100, 0, HL_BR_NONE },
    { "rate and p99: rate wins", false, -1, 0, 500, 0, 100, 10, 900, 100, 0, HL_BR_ERROR_RATE },
    { "p99 and ratio: p99 wins", false, -1, 0, 500, 2, 100, 3, 900, 100, 0, HL_BR_P99 },
    { "ratio equal 2 x 0.02", false, -1, 0, 0, 2, 100, 4, 5, 100, 2, HL_BR_NONE },
    { "ratio above 2 x 0.02", false, -1, 0, 0, 2, 100, 5, 5, 100, 2, HL_BR_RATIO_TO_LEGACY },
    { "ratio equal 3 x 0.05 (rounding)", false, 0.2, 0, 0, 3, 20, 3, 5, 20, 1, HL_BR_NONE },
    { "ratio equal 1.5 x 0.04 (rounding)", false, 0.1, 0, 0, 1.5, 100, 6, 5, 100, 4, HL_BR_NONE },
    { "ratio equal 1.1 x 7/55 (rounds below)", false, 0.5, 0, 0, 1.1, 50, 7, 5, 55, 7, HL_BR_NONE },
    { "ratio equal 1.2 x 7/21 (rounds below)", false, 0.5, 0, 0, 1.2, 20, 8, 5, 21, 7, HL_BR_NONE },
    { "ratio just above 1.1 x 7/55", false, 0.5, 0, 0, 1.1, 49, 7, 5, 55, 7, HL_BR_RATIO_TO_LEGACY },
    { "ratio, legacy 0 errors, new 1", false, -1, 0, 0, 2, 100, 1, 5, 100, 0, HL_BR_RATIO_TO_LEGACY },
    { "ratio, both 0 errors", false, -1, 0, 0, 2, 100, 0, 5, 100, 0, HL_BR_NONE },
    { "ratio, legacy below min", false, -1, 0, 0, 2, 100, 1, 5, 19, 0, HL_BR_NONE },
    { "ratio, legacy at min", false, -1, 0, 0, 2, 100, 1, 5, 20, 0, HL_BR_RATIO_TO_LEGACY },
    { "ratio, no legacy stats", false, -1, 0, 0, 2, 100, 1, 5, NO_LEGACY, 0, HL_BR_NONE },
    { "ratio unset", false, -1, 0, 0, 0, 100, 1, 5, 100, 0, HL_BR_NONE },
    { "ratio, new below min", false, -1, 0, 0, 2, 19, 1, 5, 100, 0, HL_BR_NONE },
};

static struct hl_rollback_conf
conf_of(const struct pcase *pc)
{
    struct hl_rollback_conf c = {
        .enabled = true, .max_error_rate = 0.05, .min_requests = 20,
        .window_s = 10, .max_p99_ms = 0, .max_error_ratio_to_legacy = 0,
        .action = HL_ACT_ROLLBACK,
    };

    c.enabled = !pc->disabled;
    if (pc->max_error_rate >= 0)
        c.max_error_rate = pc->max_error_rate;
    if (pc->min_requests != 0)
        c.min_requests = pc->min_requests;
    c.max_p99_ms = pc->max_p99_ms;
    c.max_error_ratio_to_legacy = pc->ratio;
    return c;
}

static struct hl_stats
stats_of(uint64_t req, uint64_t err, double p99_ms)
{
    struct hl_stats s;

    memset(&s, 0, sizeof s);
    s.requests = req;
    s.errors = err;
    s.by_class[HL_OUT_2XX] = req - err;
    s.by_class[HL_OUT_5XX] = err;
    s.error_rate = req ? (double)err / (double)req : 0;
    s.p50_ms = p99_ms / 2;
    s.p99_ms = p99_ms;
    return s;
}

static void
test_table(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct pcase *pc = &cases[i];
        struct hl_rollback_conf c = conf_of(pc);
        struct hl_stats n = stats_of(pc->req, pc->err, pc->p99_ms);
        struct hl_stats l = stats_of(pc->legacy_req == NO_LEGACY ? 0 : pc->legacy_req,
                                     pc->legacy_err, 5);
        struct hl_breach b;
        bool got;

        memset(&b, 0x5a, sizeof b);
        got = hl_policy_eval(&c, &n, pc->legacy_req == NO_LEGACY ? NULL : &l, &b);
        if (got != (pc->kind != HL_BR_NONE) || b.kind != pc->kind)
            fail_msg("case '%s': breached %d kind %d, want kind %d (text '%s')",
                     pc->name, got, (int)b.kind, (int)pc->kind, b.text);
        assert_int_equal(b.breached, got);
        assert_int_equal(b.requests, pc->req);
        assert_true(b.p99_ms == pc->p99_ms);
        assert_true(b.error_rate == (pc->req ? (double)pc->err / (double)pc->req : 0));
        if (pc->legacy_req == NO_LEGACY || pc->legacy_req == 0)
            assert_true(b.legacy_error_rate == 0);
        else
            assert_true(b.legacy_error_rate == (double)pc->legacy_err / (double)pc->legacy_req);
        if (got)
            assert_true(strlen(b.text) > 0 && strlen(b.text) < sizeof b.text);
        else
            assert_string_equal(b.text, "");
    }
}

static void
test_text_error_rate(void **state)
{
    struct hl_rollback_conf c = conf_of(&cases[0]);
    struct hl_stats n = stats_of(40, 5, 12);
    struct hl_breach b;

    (void)state;
    c.enabled = true;
    assert_true(hl_policy_eval(&c, &n, NULL, &b));
    assert_int_equal(b.kind, HL_BR_ERROR_RATE);
    assert_string_equal(b.text, "error rate 0.125 > 0.050 over 40 requests (5 errors)");
}

static void
test_text_p99(void **state)
{
    struct hl_rollback_conf c = conf_of(&cases[0]);
    struct hl_stats n = stats_of(120, 0, 812.34);
    struct hl_breach b;

    (void)state;
    c.enabled = true;
    c.max_p99_ms = 500;
    assert_true(hl_policy_eval(&c, &n, NULL, &b));
    assert_int_equal(b.kind, HL_BR_P99);
    assert_non_null(strstr(b.text, "812.3 ms"));
    assert_non_null(strstr(b.text, "> 500 ms"));
    assert_non_null(strstr(b.text, "120 requests"));
}

static void
test_text_ratio(void **state)
{
    struct hl_rollback_conf c = conf_of(&cases[0]);
    struct hl_stats n = stats_of(200, 8, 12), l = stats_of(500, 5, 10);
    struct hl_breach b;

    (void)state;
    c.enabled = true;
    c.max_error_ratio_to_legacy = 3;
    assert_true(hl_policy_eval(&c, &n, &l, &b));   /* 0.04 > 3 x 0.01 */
    assert_int_equal(b.kind, HL_BR_RATIO_TO_LEGACY);
    assert_non_null(strstr(b.text, "0.040"));
    assert_non_null(strstr(b.text, "3.00 x legacy 0.010"));
    assert_non_null(strstr(b.text, "200 requests"));
    assert_non_null(strstr(b.text, "legacy 500 requests"));
    assert_true(b.legacy_error_rate == 0.01);
}

/* The rate is the counts' ratio, whatever error_rate the caller left. */
static void
test_rate_from_counts(void **state)
{
    struct hl_rollback_conf c = conf_of(&cases[0]);
    struct hl_stats n = stats_of(100, 10, 5);
    struct hl_breach b;

    (void)state;
    c.enabled = true;
    n.error_rate = 0;
    assert_true(hl_policy_eval(&c, &n, NULL, &b));
    assert_true(b.error_rate == 0.1);
}

/* Sweep: for every error count over 1000 requests, the verdict is exactly
 * errors > 50 (rate 0.05) and, with the ratio rule alone against legacy at
 * 0.01 x 2, exactly errors > 20. */
static void
test_threshold_sweep(void **state)
{
    struct hl_rollback_conf c = conf_of(&cases[0]);
    struct hl_stats l = stats_of(1000, 10, 5);
    struct hl_breach b;
    uint64_t e;

    (void)state;
    c.enabled = true;
    for (e = 0; e <= 1000; e++) {
        struct hl_stats n = stats_of(1000, e, 5);

        c.max_error_ratio_to_legacy = 0;
        c.max_error_rate = 0.05;
        assert_int_equal(hl_policy_eval(&c, &n, &l, &b), e > 50);
        c.max_error_ratio_to_legacy = 2;
        c.max_error_rate = 1;
        assert_int_equal(hl_policy_eval(&c, &n, &l, &b), e > 20);
        if (e > 20)
            assert_int_equal(b.kind, HL_BR_RATIO_TO_LEGACY);
    }
}

/* hl_policy_suspect(): errors always, fast answers never, slow ones from
 * 93% of max_p99_ms; nothing with the rule off. */
static void
test_suspect(void **state)
{
    struct hl_rollback_conf c = { .enabled = true, .max_error_rate = 0.05,
                                  .min_requests = 5, .window_s = 10 };
    enum hl_outcome o;

    (void)state;
    for (o = HL_OUT_2XX; o < HL_OUT__COUNT; o++)
        assert_int_equal(hl_policy_suspect(&c, o, 1000), o == HL_OUT_5XX || o == HL_OUT_ERROR);
    assert_false(hl_policy_suspect(&c, HL_OUT_2XX, UINT32_MAX));   /* no p99 rule */
    c.max_p99_ms = 100;
    assert_false(hl_policy_suspect(&c, HL_OUT_2XX, 93000));
    assert_true(hl_policy_suspect(&c, HL_OUT_2XX, 93001));
    assert_true(hl_policy_suspect(&c, HL_OUT_4XX, UINT32_MAX));
    c.enabled = false;
    assert_false(hl_policy_suspect(&c, HL_OUT_5XX, 1000));
    assert_false(hl_policy_suspect(&c, HL_OUT_2XX, UINT32_MAX));
}

/* No p99 breach goes unflagged: for latencies swept over the histogram's
 * range, a window of successes at one latency after min_requests - 1 fast
 * ones breaches the p99 rule only when that latency is flagged. */
static void
test_suspect_covers_p99(void **state)
{
    struct hl_rollback_conf c = { .enabled = true, .max_error_rate = 1, .min_requests = 1,
                                  .window_s = 10 };
    unsigned max_ms, lat;

    (void)state;
    for (max_ms = 1; max_ms <= 5000; max_ms = max_ms * 3 / 2 + 1) {
        c.max_p99_ms = max_ms;
        for (lat = max_ms * 800; lat <= max_ms * 1200; lat += max_ms > 100 ? max_ms / 10 : 1) {
            struct hl_window w = { 0 };
            struct hl_stats st;
            struct hl_breach b;

            hl_window_init(&w, 10);
            hl_window_push(&w, 5000, HL_OUT_2XX, lat);
            hl_window_stats(&w, 5000, &st);
            if (hl_policy_eval(&c, &st, NULL, &b) && b.kind == HL_BR_P99
                && !hl_policy_suspect(&c, HL_OUT_2XX, lat))
                fail_msg("max_p99_ms %u: %u us breaches (p99 %.3f ms) but is not flagged",
                         max_ms, lat, st.p99_ms);
            hl_window_free(&w);
        }
    }
}

/* Every combination of latch, plan, weight and input against the rule of
 * policy.h, written out the long way. */
static void
test_auto_decide(void **state)
{
    static const uint32_t weights[] = { 0, 1, 5000, 10000 };
    unsigned w, bits, sbits;

    (void)state;
    for (sbits = 0; sbits < 4; sbits++) {
        for (w = 0; w < sizeof(weights) / sizeof(weights[0]); w++) {
            for (bits = 0; bits < 16; bits++) {
                struct hl_auto_svc sv = { .weight_bp = weights[w], .latched = sbits & 1,
                                          .progressing = sbits & 2 };
                struct hl_auto_input in = {
                    .breached = bits & 1, .freeze = bits & 2,
                    .new_healthy = bits & 4, .rollback_on_new_down = bits & 8,
                };
                bool armed = !sv.latched && (weights[w] > 0 || sv.progressing);
                enum hl_auto_action want = HL_AUTO_NONE;

                if (armed && in.breached)
                    want = in.freeze ? HL_AUTO_FREEZE : HL_AUTO_ROLLBACK;
                else if (armed && !in.new_healthy && in.rollback_on_new_down)
                    want = HL_AUTO_ROLLBACK;
                assert_int_equal(hl_auto_armed(sv), armed);
                assert_int_equal(hl_auto_decide(sv, &in), want);
            }
        }
    }
}

/* The shadow rule: at least min_requests comparisons and strictly more
 * than max_diff_rate of them differing; off at 0 and when disabled; an
 * earlier breach is left as it is. */
static void
test_diff_rate(void **state)
{
    struct hl_rollback_conf c = {
        .enabled = true, .max_error_rate = 0.05, .min_requests = 20, .window_s = 10,
        .action = HL_ACT_ROLLBACK, .max_diff_rate = 0.1,
    };
    struct hl_breach b;

    (void)state;
    memset(&b, 0, sizeof(b));
    assert_false(hl_policy_eval_diff(&c, 19, 19, &b));          /* too few */
    assert_false(hl_policy_eval_diff(&c, 100, 10, &b));         /* at the limit */
    assert_true(hl_policy_eval_diff(&c, 100, 11, &b));
    assert_int_equal(b.kind, HL_BR_DIFF_RATE);
    assert_non_null(strstr(b.text, "diff rate 0.110 > 0.100 over 100 shadow comparisons"));
    memset(&b, 0, sizeof(b));
    c.max_diff_rate = 0;
    assert_false(hl_policy_eval_diff(&c, 100, 100, &b));
    c.max_diff_rate = 0.1;
    c.enabled = false;
    assert_false(hl_policy_eval_diff(&c, 100, 100, &b));
    c.enabled = true;
    b.breached = true;
    b.kind = HL_BR_ERROR_RATE;
    assert_true(hl_policy_eval_diff(&c, 1, 0, &b));
    assert_int_equal(b.kind, HL_BR_ERROR_RATE);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_text_error_rate),
        cmocka_unit_test(test_text_p99),
        cmocka_unit_test(test_text_ratio),
        cmocka_unit_test(test_rate_from_counts),
        cmocka_unit_test(test_threshold_sweep),
        cmocka_unit_test(test_auto_decide),
        cmocka_unit_test(test_diff_rate),
        cmocka_unit_test(test_suspect),
        cmocka_unit_test(test_suspect_covers_p99),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
