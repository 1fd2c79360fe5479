/*
 * Progressive plan: `cutoverctl plan start` puts the weight on step 1 and the
 * 100 ms tick walks the steps (10, 50, 100 %) once each has baked bake_s and
 * new served min_requests in it, up to `promoted`; pause holds the step with
 * its bake clock stopped (and across a kill -9), resume continues with the
 * time that was left; abort stops it with the weight kept; an automatic
 * rollback mid-way stops it too. Short bakes (1-2 s), bounded request loops,
 * fixed seeds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/integration/fixture.h"

#define PLAN_3(bake) ",\"plan\": {\"steps\": [10, 50, 100], \"bake_s\": " #bake "}, " \
                     "\"rollback\": {\"window_s\": 1, \"min_requests\": 5}"
/* For the breach test: a step long enough that the failing traffic lands
 * inside it on a loaded machine, and a window that holds all of it (with a
 * 1 s window, requests straddling a second boundary may leave fewer than
 * min_requests in either second). */
#define PLAN_3_BREACH ",\"plan\": {\"steps\": [10, 50, 100], \"bake_s\": 4}, " \
                      "\"rollback\": {\"window_s\": 3, \"min_requests\": 5}"
#define MAX_WALK_MS 20000        /* generous bound for a whole plan of 1 s steps */

static struct fx *
start(void **state, const char *extra)
{
    assert_int_equal(fx_open(state, false, 1, extra, 11), 0);
    return *state;
}

/* What status --json says about the service and its plan. */
struct view {
    double weight;
    char state[32];              /* service state */
    char plan[32];               /* plan state */
    int step, steps;
    double bake_left_s, requests;
};

static struct view
look(struct fx *f)
{
    struct view v;
    json_t *root, *svc = fx_status(f, &root), *p;

    memset(&v, 0, sizeof(v));
    assert_non_null(svc);
    p = json_object_get(svc, "plan");
    assert_true(json_is_object(p));
    v.weight = json_number_value(json_object_get(svc, "weight"));
    snprintf(v.state, sizeof(v.state), "%s", json_string_value(json_object_get(svc, "state")));
    snprintf(v.plan, sizeof(v.plan), "%s", json_string_value(json_object_get(p, "state")));
    v.step = (int)json_integer_value(json_object_get(p, "step"));
    v.steps = (int)json_integer_value(json_object_get(p, "steps"));
    v.bake_left_s = json_number_value(json_object_get(p, "bake_left_s"));
    v.requests = json_number_value(json_object_get(p, "requests"));
    json_decref(root);
    return v;
}

/* Drives traffic in batches of 20 requests until the plan is at step <step>
 * (any state) or, with <step> 0, the service is in state <state>; at most
 * <max_ms>. Returns the ms it took; fails the test on timeout. <seen> (may
 * be NULL) collects the steps observed, as a bit mask. */
static long
drive_until(struct fx *f, int step, const char *state, long max_ms, unsigned *seen)
{
    long long t0 = h_now_ms();
    struct view v;
    int c[2];

    for (;;) {
        v = look(f);
        if (seen != NULL)
            *seen |= 1u << v.step;
        if (step > 0 ? v.step == step : strcmp(v.state, state) == 0)
            return (long)(h_now_ms() - t0);
        if (h_now_ms() - t0 > max_ms)
            fail_msg("after %ld ms: step %d/%d, state %s, plan %s, weight %.2f "
                     "(waiting for %s%d%s)", max_ms, v.step, v.steps, v.state, v.plan,
                     v.weight, step > 0 ? "step " : "state ", step,
                     step > 0 ? "" : state);
        fx_drive(f, 20, 0, c, NULL, NULL);
        h_sleep_ms(20);
    }
}

/* The audit entries whose action starts with "plan" (for fx_audit()). */
static bool
is_plan(const json_t *e)
{
    return strncmp(json_string_value(json_object_get(e, "action")), "plan", 4) == 0;
}

static const char *
entry_str(json_t *entries, size_t i, const char *key)
{
    const char *s = json_string_value(json_object_get(json_array_get(entries, i), key));

    if (s == NULL)
        fail_msg("audit entry %zu has no \"%s\"", i, key);
    return s;
}

/* start -> 10 % -> 50 % -> 100 %, promoted, each step by actor auto. */
static void
test_plan_walks_to_promoted(void **state)
{
    struct fx *f = start(state, PLAN_3(1));
    char out[8192];
    struct view v;
    json_t *entries;
    unsigned seen = 0;
    int c[2];

    v = look(f);
    assert_string_equal(v.plan, "idle");
    assert_int_equal(v.step, 0);
    assert_int_equal(v.steps, 3);
    assert_int_equal(fx_ctl(f, out, "status"), 0);
    assert_non_null(strstr(out, "plan    not started: 3 steps (10% 50% 100%), bake 1 s each"));

    assert_int_equal(fx_ctl(f, out, "plan", "start"), 0);
    assert_non_null(strstr(out, "weight 0.00% -> 10.00%"));
    assert_non_null(strstr(out, "state progressing, plan progressing at step 1/3"));
    v = look(f);
    assert_true(v.weight == 10);
    assert_string_equal(v.state, "progressing");
    assert_int_equal(v.step, 1);
    assert_true(v.bake_left_s > 0 && v.bake_left_s <= 1);

    /* the human status: step, bake bar, both windows side by side */
    fx_drive(f, 20, 0, c, NULL, NULL);
    assert_int_equal(fx_ctl(f, out, "status"), 0);
    assert_non_null(strstr(out, "plan    step 1/3 (10%)  progressing  bake ["));
    assert_non_null(strstr(out, "requests"));
    assert_non_null(strstr(out, "window        legacy                new"));
    assert_non_null(strstr(out, "p50 / p99 ms"));

    drive_until(f, 0, "promoted", MAX_WALK_MS, &seen);
    assert_true(seen & (1u << 2));               /* 50 % was a step of its own */
    v = look(f);
    assert_true(v.weight == 100);
    assert_string_equal(v.plan, "completed");
    assert_int_equal(v.step, 3);
    assert_true(v.bake_left_s == 0);
    fx_drive(f, 20, 0, c, NULL, NULL);
    assert_int_equal(c[0], 0);
    assert_int_equal(fx_ctl(f, out, "status"), 0);
    assert_non_null(strstr(out, "plan    step 3/3 (100%)  completed"));

    /* audited: the operator's start, then two automatic steps */
    entries = fx_audit(f, is_plan);
    assert_int_equal(json_array_size(entries), 3);
    assert_string_equal(entry_str(entries, 0, "action"), "plan_start");
    assert_int_equal(strncmp(entry_str(entries, 0, "actor"), "uid:", 4), 0);
    assert_string_equal(entry_str(entries, 1, "action"), "plan_step");
    assert_string_equal(entry_str(entries, 1, "actor"), "auto");
    assert_non_null(strstr(entry_str(entries, 1, "reason"), "step 2/3 (50%)"));
    assert_string_equal(entry_str(entries, 2, "actor"), "auto");
    assert_non_null(strstr(entry_str(entries, 2, "reason"), "plan completed"));
    assert_true(json_number_value(json_object_get(
        json_object_get(json_array_get(entries, 2), "figures"), "requests")) >= 5);
    json_decref(entries);

    /* done: start is refused, it would lower the weight */
    assert_int_equal(fx_ctl(f, out, "plan", "start"), 1);
    assert_non_null(strstr(h_ctl_err(), "a plan never lowers the weight"));
}

/* pause holds the step with the bake clock stopped, also across kill -9;
 * resume bakes only what was left. */
static void
test_plan_pause_holds(void **state)
{
    struct fx *f = start(state, PLAN_3(2));
    char out[8192];
    struct view v, w;
    long ms;
    int c[2], i;

    assert_int_equal(fx_ctl(f, out, "plan", "start"), 0);
    fx_drive(f, 60, 0, c, NULL, NULL);
    h_sleep_ms(600);
    assert_int_equal(fx_ctl(f, out, "plan", "pause"), 0);
    assert_non_null(strstr(out, "state paused, plan paused at step 1/3"));
    v = look(f);
    assert_string_equal(v.state, "paused");
    assert_true(v.bake_left_s > 0.5 && v.bake_left_s < 1.9);
    /* paused for longer than a whole bake, with traffic: nothing moves */
    for (i = 0; i < 5; i++) {
        fx_drive(f, 40, 0, c, NULL, NULL);
        h_sleep_ms(500);
    }
    w = look(f);
    assert_true(w.weight == 10);
    assert_string_equal(w.state, "paused");
    assert_int_equal(w.step, 1);
    assert_true(w.bake_left_s == v.bake_left_s);
    assert_true(w.requests == v.requests);
    assert_int_equal(fx_ctl(f, out, "status"), 0);
    assert_non_null(strstr(out, "(clock stopped)"));
    assert_int_equal(fx_ctl(f, out, "plan", "pause"), 1);
    assert_non_null(strstr(h_ctl_err(), "no plan is progressing (the plan is paused)"));

    /* kill -9 and restart: still paused at the same point */
    assert_int_equal(h_stop(f->proxy, SIGKILL, 5000), 128 + SIGKILL);
    assert_int_equal(fx_start_proxy(f, 11), 0);
    w = look(f);
    assert_true(w.weight == 10);
    assert_string_equal(w.state, "paused");
    assert_int_equal(w.step, 1);
    assert_true(w.bake_left_s == v.bake_left_s);

    /* resume: the step is taken after the time that was left, not 2 s */
    assert_int_equal(fx_ctl(f, out, "plan", "resume"), 0);
    assert_non_null(strstr(out, "state progressing"));
    ms = drive_until(f, 2, NULL, MAX_WALK_MS, NULL);
    fprintf(stderr, "15_plan: step 2 came %ld ms after resume (%.1f s of bake left)\n",
            ms, v.bake_left_s);
    assert_true(ms >= (long)(v.bake_left_s * 1000) - 150);
    w = look(f);
    assert_true(w.weight == 50);
    assert_string_equal(w.state, "progressing");
}

/* abort: the plan stops where it is, the weight stays, state steady. */
static void
test_plan_abort_stops(void **state)
{
    struct fx *f = start(state, PLAN_3(1));
    char out[8192];
    struct view v;
    json_t *entries;
    int c[2], i;

    assert_int_equal(fx_ctl(f, out, "plan", "start"), 0);
    assert_int_equal(fx_ctl(f, out, "plan", "abort"), 0);
    assert_non_null(strstr(out, "state steady, plan aborted at step 1/3"));
    /* longer than a bake, with traffic: nothing moves */
    for (i = 0; i < 4; i++) {
        fx_drive(f, 40, 0, c, NULL, NULL);
        h_sleep_ms(400);
    }
    v = look(f);
    assert_true(v.weight == 10);
    assert_string_equal(v.state, "steady");
    assert_string_equal(v.plan, "aborted");
    assert_int_equal(v.step, 1);
    assert_int_equal(fx_ctl(f, out, "plan", "resume"), 1);
    assert_non_null(strstr(h_ctl_err(), "the plan is not paused (it is aborted)"));
    assert_int_equal(fx_ctl(f, out, "plan", "abort"), 1);
    assert_non_null(strstr(h_ctl_err(), "no plan is running"));
    entries = fx_audit(f, is_plan);
    assert_int_equal(json_array_size(entries), 2);
    assert_string_equal(entry_str(entries, 1, "action"), "plan_abort");
    json_decref(entries);

    /* an operator's weight during a plan ends it as well */
    assert_int_equal(fx_ctl(f, out, "weight", "5"), 0);
    assert_int_equal(fx_ctl(f, out, "plan", "start"), 0);
    assert_int_equal(fx_ctl(f, out, "weight", "20"), 0);
    for (i = 0; i < 4; i++) {
        fx_drive(f, 40, 0, c, NULL, NULL);
        h_sleep_ms(400);
    }
    v = look(f);
    assert_true(v.weight == 20);
    assert_string_equal(v.state, "steady");
    assert_string_equal(v.plan, "aborted");
}

/* An automatic rollback mid-way stops the plan: weight 0, rolled_back, and
 * no step is taken afterwards; start is refused until a weight is set. */
static void
test_plan_rolled_back_midway(void **state)
{
    /* the shield off: the test counts new's failed answers */
    struct fx *f = start(state, PLAN_3_BREACH ", \"shield\": {\"enabled\": false}");
    char out[8192];
    struct view v;
    int c[2], i;

    assert_int_equal(fx_ctl(f, out, "plan", "start"), 0);
    drive_until(f, 2, NULL, MAX_WALK_MS, NULL);
    assert_int_equal(h_backend_set(f->port[1][0], "error_rate=1&seed=1"), 0);
    fx_drive(f, 60, 0, c, NULL, NULL);
    assert_true(c[1] >= 5);
    assert_int_equal(h_wait_log(f->log, "AUTOMATIC ROLLBACK", 3000), 0);
    v = look(f);
    assert_true(v.weight == 0);
    assert_string_equal(v.state, "rolled_back");
    assert_string_equal(v.plan, "breached");
    assert_int_equal(v.step, 2);
    for (i = 0; i < 3; i++) {
        fx_drive(f, 40, 0, c, NULL, NULL);
        assert_int_equal(c[1], 0);
        h_sleep_ms(500);
    }
    v = look(f);
    assert_true(v.weight == 0);
    assert_string_equal(v.plan, "breached");
    assert_int_equal(fx_ctl(f, out, "status"), 0);
    assert_non_null(strstr(out, "step 2/3 (50%)  stopped by a breach"));
    assert_int_equal(fx_ctl(f, out, "plan", "start"), 1);
    assert_non_null(strstr(h_ctl_err(), "service web is rolled_back"));
}

/* Without a plan in the config: a clear refusal; a bad action: usage. */
static void
test_plan_refusals(void **state)
{
    struct fx *f = start(state, NULL);
    char out[8192];
    json_t *root, *svc;

    svc = fx_status(f, &root);
    assert_string_equal(json_string_value(json_object_get(json_object_get(svc, "plan"),
                                                          "state")), "none");
    json_decref(root);
    assert_int_equal(fx_ctl(f, out, "plan", "start"), 1);
    assert_non_null(strstr(h_ctl_err(), "service web has no plan"));
    assert_int_equal(fx_ctl(f, out, "plan", "go"), 2);
    assert_int_equal(fx_ctl(f, out, "plan"), 2);
    assert_true(fx_weight(f) == 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_plan_walks_to_promoted, fx_teardown),
        cmocka_unit_test_teardown(test_plan_pause_holds, fx_teardown),
        cmocka_unit_test_teardown(test_plan_abort_stops, fx_teardown),
        cmocka_unit_test_teardown(test_plan_rolled_back_midway, fx_teardown),
        cmocka_unit_test_teardown(test_plan_refusals, fx_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
