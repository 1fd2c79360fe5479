/* tests/unit/test_hl_fleet.c: the fleet's windows added up (health/fleet.c)
 * and the counts they are made of (hl_window_counts, hl_counts_add,
 * hl_counts_stats in health/window.c): what the leader sums and what the
 * rollback policy then says of the sum. */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "health/fleet.h"
#include "health/policy.h"

/* Windows are large (about 270 KB): keep them off the stack. */
static struct hl_window win[4], all;

static void
push_n(struct hl_window *w, uint64_t now_ms, enum hl_outcome o, uint32_t us, unsigned n)
{
    while (n--)
        hl_window_push(w, now_ms, o, us);
}

static bool
same_stats(const struct hl_stats *a, const struct hl_stats *b)
{
    return a->requests == b->requests && a->errors == b->errors
        && memcmp(a->by_class, b->by_class, sizeof(a->by_class)) == 0
        && a->error_rate == b->error_rate && a->p50_ms == b->p50_ms
        && a->p99_ms == b->p99_ms;
}

/* A row of instance <name> holding window <w>'s counts on new (and <lw>'s
 * on legacy when not NULL) at <now_ms>. */
static void
row_of(struct hl_fleet_row *r, const char *name, const struct hl_window *lw,
       const struct hl_window *w, uint64_t now_ms, double age_ms, uint64_t gen)
{
    memset(r, 0, sizeof(*r));
    r->instance = name;
    r->age_ms = age_ms;
    r->generation = gen;
    if (lw != NULL)
        hl_window_counts(lw, now_ms, &r->side[RT_LEGACY]);
    hl_window_counts(w, now_ms, &r->side[RT_NEW]);
}

/* The counts read back as figures are the window's own figures. */
static void
test_counts_are_the_window(void **state)
{
    struct hl_counts c;
    struct hl_stats a, b;

    (void)state;
    hl_window_init(&win[0], 10);
    push_n(&win[0], 5000, HL_OUT_2XX, 900, 70);
    push_n(&win[0], 6000, HL_OUT_4XX, 30000, 10);
    push_n(&win[0], 7000, HL_OUT_5XX, 250000, 15);
    push_n(&win[0], 7500, HL_OUT_ERROR, 2000000, 5);
    hl_window_counts(&win[0], 8000, &c);
    hl_counts_stats(&c, &a);
    hl_window_stats(&win[0], 8000, &b);
    assert_true(same_stats(&a, &b));
    assert_int_equal(a.requests, 100);
    assert_int_equal(a.errors, 20);
    /* seconds that left the window are not counted */
    hl_window_counts(&win[0], 16500, &c);
    hl_counts_stats(&c, &a);
    assert_int_equal(a.requests, 20);
}

/* Three instances under min_requests each: none breaches alone, their sum
 * does (the fleet reaches min_requests three times sooner). */
static void
test_sum_reaches_min_requests(void **state)
{
    struct hl_rollback_conf rc = { .enabled = true, .max_error_rate = 0.05,
                                   .min_requests = 30, .window_s = 10 };
    struct hl_fleet_row rows[3];
    struct hl_fleet_sum sum;
    struct hl_stats st, ls;
    struct hl_breach br;
    static const char *const names[3] = { "i0", "i1", "i2" };
    unsigned i;

    (void)state;
    for (i = 0; i < 3; i++) {
        hl_window_init(&win[i], 10);
        push_n(&win[i], 100000 + i * 10, HL_OUT_5XX, 1000, 15);
        row_of(&rows[i], names[i], NULL, &win[i], 100500, 300.0 * i, 4);
        hl_counts_stats(&rows[i].side[RT_NEW], &st);
        assert_int_equal(st.requests, 15);
        assert_false(hl_policy_eval(&rc, &st, NULL, &br));
    }
    hl_fleet_sum(rows, 3, 3000, 4, &sum);
    assert_int_equal(sum.live, 3);
    assert_int_equal(sum.stale, 0);
    assert_int_equal(sum.gone, 0);
    hl_counts_stats(&sum.side[RT_NEW], &st);
    hl_counts_stats(&sum.side[RT_LEGACY], &ls);
    assert_int_equal(st.requests, 45);
    assert_int_equal(st.errors, 45);
    assert_int_equal(ls.requests, 0);
    assert_true(hl_policy_eval(&rc, &st, &ls, &br));
    assert_int_equal(br.kind, HL_BR_ERROR_RATE);
    assert_int_equal(br.requests, 45);
}

/* The sum's p99 is the p99 of every outcome: exactly what one window that
 * saw all of them says, not the mean of the instances' p99s. A breach
 * spread thin (a few slow answers on one instance, many fast ones on the
 * others) is seen. */
static void
test_sum_p99_is_exact(void **state)
{
    struct hl_rollback_conf rc = { .enabled = true, .max_error_rate = 0.05,
                                   .min_requests = 20, .window_s = 10, .max_p99_ms = 100 };
    struct hl_fleet_row rows[3];
    struct hl_fleet_sum sum;
    struct hl_stats st, one;
    struct hl_breach br;
    unsigned i;

    (void)state;
    hl_window_init(&all, 10);
    for (i = 0; i < 3; i++)
        hl_window_init(&win[i], 10);
    /* i0 and i1: 60 fast answers each; i2: 12 fast and 3 slow ones, under
     * min_requests alone */
    push_n(&win[0], 200000, HL_OUT_2XX, 1200, 60);
    push_n(&win[1], 201000, HL_OUT_2XX, 1500, 60);
    push_n(&win[2], 202000, HL_OUT_2XX, 1100, 12);
    push_n(&win[2], 202500, HL_OUT_2XX, 400000, 3);
    for (i = 0; i < 3; i++) {
        hl_window_merge(&all, &win[i]);
        row_of(&rows[i], "x", NULL, &win[i], 203000, 10, 1);
        hl_counts_stats(&rows[i].side[RT_NEW], &st);
        /* none breaches alone: i0 and i1 are fast, i2 is under min_requests */
        assert_false(hl_policy_eval(&rc, &st, NULL, &br));
    }
    hl_fleet_sum(rows, 3, 3000, 0, &sum);
    hl_counts_stats(&sum.side[RT_NEW], &st);
    hl_window_stats(&all, 203000, &one);
    assert_true(same_stats(&st, &one));
    assert_int_equal(st.requests, 135);
    /* rank ceil(0.99 x 135) = 134: a slow one (about 400 ms, within 7.2 %) */
    assert_true(st.p99_ms > 370 && st.p99_ms < 430);
    assert_true(hl_policy_eval(&rc, &st, NULL, &br));
    assert_int_equal(br.kind, HL_BR_P99);
}

/* An instance not seen within live_ms is gone: its row is left out. */
static void
test_gone_left_out(void **state)
{
    struct hl_fleet_row rows[3];
    struct hl_fleet_sum sum;
    struct hl_stats st;
    unsigned i;

    (void)state;
    for (i = 0; i < 3; i++) {
        hl_window_init(&win[i], 10);
        push_n(&win[i], 300000, HL_OUT_2XX, 1000, 10 * (i + 1));
    }
    row_of(&rows[0], "i0", &win[0], &win[0], 300100, 2999.0, 1);
    row_of(&rows[1], "i1", &win[1], &win[1], 300100, 3000.0, 1);   /* at the bound: live */
    row_of(&rows[2], "i2", &win[2], &win[2], 300100, 3000.5, 1);   /* past it: gone */
    hl_fleet_sum(rows, 3, 3000, 0, &sum);
    assert_int_equal(sum.live, 2);
    assert_int_equal(sum.gone, 1);
    hl_counts_stats(&sum.side[RT_NEW], &st);
    assert_int_equal(st.requests, 30);
    hl_counts_stats(&sum.side[RT_LEGACY], &st);
    assert_int_equal(st.requests, 30);
    /* a clock step (a negative age) still counts as seen */
    rows[2].age_ms = -50;
    hl_fleet_sum(rows, 3, 3000, 0, &sum);
    assert_int_equal(sum.live, 3);
    /* none live: an empty sum */
    rows[2].age_ms = 3000.5;
    hl_fleet_sum(rows, 3, 1000, 0, &sum);
    hl_counts_stats(&sum.side[RT_NEW], &st);
    assert_int_equal(sum.live, 0);
    assert_int_equal(st.requests, 0);
    hl_fleet_sum(rows, 0, 1000, 0, &sum);
    assert_int_equal(sum.live + sum.gone, 0);
}

/* New's side of a row published before the leader's last reset of new's
 * window is stale (the errors that made a rollback, still held by an
 * instance that has not applied the operator's new weight): left out;
 * legacy's side counts. */
static void
test_stale_new_left_out(void **state)
{
    struct hl_rollback_conf rc = { .enabled = true, .max_error_rate = 0.05,
                                   .min_requests = 20, .window_s = 10 };
    struct hl_fleet_row rows[3];
    struct hl_fleet_sum sum;
    struct hl_stats st;
    struct hl_breach br;
    unsigned i;

    (void)state;
    for (i = 0; i < 3; i++) {
        hl_window_init(&win[i], 10);
        push_n(&win[i], 400000, HL_OUT_2XX, 1000, 20);
    }
    push_n(&win[2], 400000, HL_OUT_5XX, 1000, 30);   /* i2 still holds the old errors */
    row_of(&rows[0], "i0", &win[0], &win[0], 400200, 100, 8);
    row_of(&rows[1], "i1", &win[1], &win[1], 400200, 100, 9);   /* ahead: counts */
    row_of(&rows[2], "i2", &win[2], &win[2], 400200, 100, 7);   /* before the reset at 8 */
    hl_fleet_sum(rows, 3, 3000, 8, &sum);
    assert_int_equal(sum.live, 3);
    assert_int_equal(sum.stale, 1);
    hl_counts_stats(&sum.side[RT_NEW], &st);
    assert_int_equal(st.requests, 40);
    assert_int_equal(st.errors, 0);
    assert_false(hl_policy_eval(&rc, &st, NULL, &br));
    hl_counts_stats(&sum.side[RT_LEGACY], &st);
    assert_int_equal(st.requests, 90);
    /* without the rule the stale errors would roll back again */
    hl_fleet_sum(rows, 3, 3000, 0, &sum);
    hl_counts_stats(&sum.side[RT_NEW], &st);
    assert_int_equal(st.errors, 30);
    assert_true(hl_policy_eval(&rc, &st, NULL, &br));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts_are_the_window),
        cmocka_unit_test(test_sum_reaches_min_requests),
        cmocka_unit_test(test_sum_p99_is_exact),
        cmocka_unit_test(test_gone_left_out),
        cmocka_unit_test(test_stale_new_left_out),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
