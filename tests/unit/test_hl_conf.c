/*
 * Tests for the comparisons of health/conf.c: hl_check_conf_equal(),
 * hl_rollback_conf_equal() and hl_plan_conf_equal() see a change of every
 * field of their struct, compare strings by content and a plan's steps only
 * up to its step count.
 *
 * Why a field cannot be forgotten: each struct's fields are listed below in
 * declaration order, one X(how, field, base value, other value) line each,
 * and the base config is a positional initialiser made of these lines. A
 * field added to the struct without a line here leaves an initialiser
 * missing, which -Wextra (-Wmissing-field-initializers) under -Werror
 * refuses to build. Every line is also a case: the field set to its other
 * value must make the comparison answer false. So a new field needs a line,
 * and its line fails until the comparison reads the field.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "health/conf.h"

/* <how>: V assigns the value, S copies a string, A sets the last step in
 * use of the base plan (a comparison that stops short of it fails). */
#define SET_V(c, f, v) ((c)->f = (v))
#define SET_S(c, f, v) snprintf((c)->f, sizeof((c)->f), "%s", (v))
#define SET_A(c, f, v) ((c)->f[2] = (v))
#define FIELD_INIT(how, f, base, other) base,

#define CHECK_FIELDS(X)                                            \
    X(V, type, HL_CHECK_HTTP, HL_CHECK_TCP)                        \
    X(S, method, "GET", "HEAD")                                    \
    X(S, path, "/healthz", "/healthy")                             \
    X(V, expect_min, 200, 201)                                     \
    X(V, expect_max, 399, 299)                                     \
    X(S, body_contains, "ok", "OK")                                \
    X(V, interval_ms, 2000, 2001)                                  \
    X(V, timeout_ms, 1000, 999)                                    \
    X(V, rise, 2, 3)                                               \
    X(V, fall, 3, 2)

#define ROLLBACK_FIELDS(X)                                         \
    X(V, enabled, true, false)                                     \
    X(V, max_error_rate, 0.05, 0.06)                               \
    X(V, min_requests, 20, 21)                                     \
    X(V, window_s, 10, 11)                                         \
    X(V, max_p99_ms, 250, 0)                                       \
    X(V, max_error_ratio_to_legacy, 2.0, 0.0)                      \
    X(V, action, HL_ACT_ROLLBACK, HL_ACT_FREEZE)                   \
    X(V, drain_s, 5, 0)                                            \
    X(V, max_diff_rate, 0, 0.01)

#define PLAN_STEPS { 1000, 5000, 10000 }
#define PLAN_FIELDS(X)                                             \
    X(V, nsteps, 3, 2)                                             \
    X(A, steps_bp, PLAN_STEPS, 9999)                               \
    X(V, bake_s, 300, 301)                                         \
    X(V, max_diff_rate, 0.001, 0)                                 \
    X(V, min_compared, 100, 101)

/* Mutators and case tables, one per struct. */
#define DEFINE_CASES(prefix, type, FIELDS)                         \
    FIELDS(prefix##_MUT)                                           \
    static const struct {                                          \
        const char *field;                                         \
        void (*mutate)(type *c);                                   \
    } prefix##_cases[] = { FIELDS(prefix##_CASE) }

#define CHECK_MUT(how, f, base, other)                             \
    static void check_mut_##f(struct hl_check_conf *c) { SET_##how(c, f, other); }
#define CHECK_CASE(how, f, base, other) { #f, check_mut_##f },
#define ROLLBACK_MUT(how, f, base, other)                          \
    static void rollback_mut_##f(struct hl_rollback_conf *c) { SET_##how(c, f, other); }
#define ROLLBACK_CASE(how, f, base, other) { #f, rollback_mut_##f },
#define PLAN_MUT(how, f, base, other)                              \
    static void plan_mut_##f(struct hl_plan_conf *c) { SET_##how(c, f, other); }
#define PLAN_CASE(how, f, base, other) { #f, plan_mut_##f },

DEFINE_CASES(CHECK, struct hl_check_conf, CHECK_FIELDS);
DEFINE_CASES(ROLLBACK, struct hl_rollback_conf, ROLLBACK_FIELDS);
DEFINE_CASES(PLAN, struct hl_plan_conf, PLAN_FIELDS);

static const struct hl_check_conf check_base = { CHECK_FIELDS(FIELD_INIT) };
static const struct hl_rollback_conf rollback_base = { ROLLBACK_FIELDS(FIELD_INIT) };
static const struct hl_plan_conf plan_base = { PLAN_FIELDS(FIELD_INIT) };

static void
test_check_conf_equal(void **state)
{
    struct hl_check_conf c;
    size_t i;

    (void)state;
    c = check_base;
    assert_true(hl_check_conf_equal(&check_base, &c));
    /* strings compare by content: what follows the terminator does not count */
    memset(c.method + 4, 'x', sizeof(c.method) - 5);
    memset(c.path + 9, 'x', sizeof(c.path) - 10);
    memset(c.body_contains + 3, 'x', sizeof(c.body_contains) - 4);
    assert_true(hl_check_conf_equal(&check_base, &c));
    assert_true(hl_check_conf_equal(&c, &check_base));
    for (i = 0; i < sizeof(CHECK_cases) / sizeof(CHECK_cases[0]); i++) {
        c = check_base;
        CHECK_cases[i].mutate(&c);
        if (hl_check_conf_equal(&check_base, &c) || hl_check_conf_equal(&c, &check_base))
            fail_msg("hl_check_conf_equal() does not see a change of %s",
                     CHECK_cases[i].field);
    }
}

static void
test_rollback_conf_equal(void **state)
{
    struct hl_rollback_conf c;
    size_t i;

    (void)state;
    c = rollback_base;
    assert_true(hl_rollback_conf_equal(&rollback_base, &c));
    for (i = 0; i < sizeof(ROLLBACK_cases) / sizeof(ROLLBACK_cases[0]); i++) {
        c = rollback_base;
        ROLLBACK_cases[i].mutate(&c);
        if (hl_rollback_conf_equal(&rollback_base, &c) ||
            hl_rollback_conf_equal(&c, &rollback_base))
            fail_msg("hl_rollback_conf_equal() does not see a change of %s",
                     ROLLBACK_cases[i].field);
    }
}

static void
test_plan_conf_equal(void **state)
{
    struct hl_plan_conf c;
    size_t i;

    (void)state;
    c = plan_base;
    assert_true(hl_plan_conf_equal(&plan_base, &c));
    /* steps past the count are not part of the plan */
    c.steps_bp[3] = 7;
    c.steps_bp[HL_PLAN_MAX_STEPS - 1] = 7;
    assert_true(hl_plan_conf_equal(&plan_base, &c));
    assert_true(hl_plan_conf_equal(&c, &plan_base));
    for (i = 0; i < sizeof(PLAN_cases) / sizeof(PLAN_cases[0]); i++) {
        c = plan_base;
        PLAN_cases[i].mutate(&c);
        if (hl_plan_conf_equal(&plan_base, &c) || hl_plan_conf_equal(&c, &plan_base))
            fail_msg("hl_plan_conf_equal() does not see a change of %s",
                     PLAN_cases[i].field);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_conf_equal),
        cmocka_unit_test(test_rollback_conf_equal),
        cmocka_unit_test(test_plan_conf_equal),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
