/*
 * Automatic rollback: the 100 ms policy tick rolls the new side back on its
 * own when its passive window breaches the budget (error rate, p99, error
 * rate relative to legacy), within one tick of the breach; it leaves things
 * alone when legacy is the one failing or new has served fewer than
 * min_requests; the rolled_back latch survives kill -9; "freeze" holds the
 * weight instead; an operator's weight clears the latch without the old
 * errors re-triggering it; on_new_down "rollback" latches a rollback when
 * the active checks mark new down ("fallback", the default, does not).
 * Small windows (3 s) and bounded request loops, fixed seeds (cutoverd -R,
 * backend seed=).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/integration/fixture.h"

#define PX_TICK_MS     100         /* proxy/tick.h */
#define NEW_PORT(f)    ((f)->port[1][0])
#define LEGACY_PORT(f) ((f)->port[0][0])
#define TICK_WAIT_MS   3000        /* generous: a rollback takes one 100 ms tick */
#define QUIET_MS       500         /* five ticks: long enough for a breach to act */

static struct fx *
start(void **state, const char *extra)
{
    assert_int_equal(fx_open(state, false, 1, extra, 7), 0);
    return *state;
}

/* The real time (ms since the epoch, the clock of the daemon's log lines)
 * at which the 10th answer from new arrived, noted by mark_10th_new(). */
static long long mark_rt_ms;

static long long
realtime_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* fx_drive()'s on_new: notes mark_rt_ms at the 10th answer from new. */
static void
mark_10th_new(int nth)
{
    if (nth == 10)
        mark_rt_ms = realtime_ms();
}

static const char *
str(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));

    if (s == NULL)
        fail_msg("\"%s\" is not a string", key);
    return s;
}

/* The automatic rollback and freeze entries of the audit log (for
 * fx_audit()): actor "auto", action "rollback" or "freeze" (health changes
 * are "auto" too). */
static bool
is_auto_action(const json_t *e)
{
    return strcmp(str(e, "actor"), "auto") == 0
           && (strcmp(str(e, "action"), "rollback") == 0
               || strcmp(str(e, "action"), "freeze") == 0);
}

/* Checks the one automatic entry and returns its figures (borrowed from
 * <entries>). */
static const json_t *
the_auto_entry(json_t *entries, const char *action, double from, double to,
               const char *reason_part, const char *kind)
{
    const json_t *e, *fig;

    assert_int_equal(json_array_size(entries), 1);
    e = json_array_get(entries, 0);
    assert_string_equal(str(e, "action"), action);
    assert_true(fx_num(e, "from") == from);
    assert_true(fx_num(e, "to") == to);
    if (strstr(str(e, "reason"), reason_part) == NULL)
        fail_msg("reason \"%s\" lacks \"%s\"", str(e, "reason"), reason_part);
    fig = json_object_get(e, "figures");
    assert_true(json_is_object(fig));
    assert_string_equal(str(fig, "kind"), kind);
    assert_true(json_is_object(json_object_get(fig, "thresholds")));
    return fig;
}

/* The time stamp (ms since the epoch) of the first log line holding
 * <needle>. */
static long long
log_line_ms(struct fx *f, const char *needle)
{
    char *log = h_read_file(f->log), *p;
    struct tm tm;
    int ms = 0;
    long long t;

    assert_non_null(log);
    p = strstr(log, needle);
    assert_non_null(p);
    while (p > log && p[-1] != '\n')
        p--;
    assert_memory_equal(p, "ts=", 3);   /* logfmt: the line starts with its time */
    p += 3;
    memset(&tm, 0, sizeof(tm));
    assert_int_equal(sscanf(p, "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon,
                            &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms), 7);
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    t = (long long)timegm(&tm) * 1000 + ms;
    free(log);
    return t;
}

/* The exact breach_to_apply_ms figure of the last automatic action in the
 * log (the tick replays the outcomes since the previous tick to find the
 * one that made the breach), or -1 when it logged only an upper bound. */
static double
breach_to_apply_ms(struct fx *f)
{
    static const char key[] = "breach_to_apply_ms";
    char *log = h_read_file(f->log), *p, *last = NULL;
    double ms = -1;

    assert_non_null(log);
    for (p = log; (p = strstr(p, key)) != NULL; p++)
        last = p;
    assert_non_null(last);
    if (last[sizeof(key) - 1] == '=')
        ms = strtod(last + sizeof(key), NULL);
    else
        h_dump_file(f->log, 8192);
    free(log);
    return ms;
}

/* 5xx on new at weight 50: rolled back within one tick, figures audited. */
static void
test_error_rate_rolls_back(void **state)
{
    /* the shield off: the answers from new are the marks this test counts */
    struct fx *f = start(state, ",\"weight\": 50, \"rollback\": {\"window_s\": 3, "
                                "\"min_requests\": 10, \"max_error_rate\": 0.2}, "
                                "\"shield\": {\"enabled\": false}");
    const json_t *fig, *th;
    json_t *entries;
    int c[2], n5xx;
    long long seen_ms;
    double ms;

    assert_int_equal(h_backend_set(NEW_PORT(f), "error_rate=1&seed=1"), 0);
    /* 2 ms apart: the breach lands between ticks, as it would in production;
     * it is the 10th answer from new (min_requests 10, all errors) */
    fx_drive(f, 120, 2, c, &n5xx, mark_10th_new);
    assert_true(c[1] >= 10);
    assert_int_equal(h_wait_log(f->log, "AUTOMATIC ROLLBACK (error_rate)", TICK_WAIT_MS), 0);
    fx_expect_state(f, "rolled_back", 0);

    entries = fx_audit(f, is_auto_action);
    fig = the_auto_entry(entries, "rollback", 50, 0, "error rate", "error_rate");
    assert_true(fx_num(fig, "error_rate") == 1);
    assert_true(fx_num(fig, "requests") >= 10);
    assert_true(fx_num(fig, "errors") == fx_num(fig, "requests"));
    assert_true(fx_num(fig, "legacy_error_rate") == 0);
    th = json_object_get(fig, "thresholds");
    assert_true(fx_num(th, "max_error_rate") == 0.2);
    assert_true(fx_num(th, "min_requests") == 10);
    assert_true(fx_num(th, "window_s") == 3);
    json_decref(entries);

    /* breach to rollback applied: within one tick (plus timer lateness) */
    ms = breach_to_apply_ms(f);
    seen_ms = log_line_ms(f, "AUTOMATIC ROLLBACK") - mark_rt_ms;
    fprintf(stderr, "14_rollback: breach_to_apply_ms=%.1f (logged), %lld ms from the "
            "10th answer from new to the rollback's log line (test clock)\n", ms, seen_ms);
    assert_true(ms >= 0 && ms <= PX_TICK_MS + 50);
    /* the same from outside: the log line follows the apply by the state and
     * audit fsyncs; the answer left the proxy just after its record */
    assert_true(seen_ms >= (long long)ms - 3 && seen_ms <= (long long)ms + 300);

    /* new gets nothing any more, and a lasting breach is audited once */
    fx_drive(f, 40, 0, c, NULL, NULL);
    assert_int_equal(c[1], 0);
    h_sleep_ms(QUIET_MS);
    entries = fx_audit(f, is_auto_action);
    assert_int_equal(json_array_size(entries), 1);
    json_decref(entries);
}

/* Slow answers on new (weight 100): p99 over max_p99_ms rolls back. */
static void
test_p99_rolls_back(void **state)
{
    struct fx *f = start(state, ",\"weight\": 100, \"rollback\": {\"window_s\": 3, "
                                "\"min_requests\": 10, \"max_p99_ms\": 40}");
    const json_t *fig;
    json_t *entries;
    int c[2], n5xx;

    assert_int_equal(h_backend_set(NEW_PORT(f), "delay_ms=70"), 0);
    fx_drive(f, 14, 0, c, &n5xx, NULL);
    assert_int_equal(n5xx, 0);
    assert_true(c[1] >= 10);
    assert_int_equal(h_wait_log(f->log, "AUTOMATIC ROLLBACK (p99)", TICK_WAIT_MS), 0);
    fx_expect_state(f, "rolled_back", 0);
    entries = fx_audit(f, is_auto_action);
    fig = the_auto_entry(entries, "rollback", 100, 0, "p99", "p99");
    assert_true(fx_num(fig, "p99_ms") > 40);
    assert_true(fx_num(fig, "error_rate") == 0);
    assert_true(fx_num(json_object_get(fig, "thresholds"), "max_p99_ms") == 40);
    json_decref(entries);
    fx_drive(f, 10, 0, c, NULL, NULL);
    assert_int_equal(c[1], 0);
}

/* Repeats <item> <times> times, comma-separated, after "script=". */
static void
script(char *buf, size_t len, const char *item, int times)
{
    size_t n;
    int i;

    snprintf(buf, len, "script=");
    for (i = 0; i < times; i++) {
        n = strlen(buf);
        snprintf(buf + n, len - n, "%s%s", i > 0 ? "," : "", item);
    }
}

/* Legacy errs 1 in 20, new 1 in 3: under max_error_rate 0.5, but over 3x
 * legacy's rate: rolled back by the ratio rule. */
static void
test_ratio_to_legacy_rolls_back(void **state)
{
    struct fx *f = start(state, ",\"weight\": 50, \"rollback\": {\"window_s\": 3, "
                                "\"min_requests\": 20, \"max_error_rate\": 0.5, "
                                "\"max_error_ratio_to_legacy\": 3}");
    char q[1024];
    const json_t *fig;
    json_t *entries;
    int c[2];

    script(q, sizeof(q), "500,200x2", 21);
    assert_int_equal(h_backend_set(NEW_PORT(f), q), 0);
    script(q, sizeof(q), "200x19,500", 5);
    assert_int_equal(h_backend_set(LEGACY_PORT(f), q), 0);
    fx_drive(f, 110, 0, c, NULL, NULL);
    /* new's count is checked on the rule's own figures (below): the client
     * sees only new's successes (the shield answers its errors from legacy),
     * and the rule now acts as soon as new has served min_requests, so
     * about two thirds of 20 reach the client */
    assert_true(c[0] >= 20);
    assert_int_equal(h_wait_log(f->log, "AUTOMATIC ROLLBACK (ratio_to_legacy)",
                                TICK_WAIT_MS), 0);
    fx_expect_state(f, "rolled_back", 0);
    entries = fx_audit(f, is_auto_action);
    fig = the_auto_entry(entries, "rollback", 50, 0, "x legacy", "ratio_to_legacy");
    assert_true(fx_num(fig, "requests") >= 20 && fx_num(fig, "legacy_requests") >= 20);
    assert_true(fx_num(fig, "legacy_error_rate") > 0);
    assert_true(fx_num(fig, "error_rate") < 0.5);
    assert_true(fx_num(fig, "error_rate") > 3 * fx_num(fig, "legacy_error_rate"));
    assert_true(fx_num(json_object_get(fig, "thresholds"), "max_error_ratio_to_legacy") == 3);
    json_decref(entries);
}

/* Legacy answering 500 to everything is not new's fault: nothing happens. */
static void
test_legacy_failing_does_not_roll_back(void **state)
{
    struct fx *f = start(state, ",\"weight\": 50, \"rollback\": {\"window_s\": 3, "
                                "\"min_requests\": 10, \"max_error_rate\": 0.2, "
                                "\"max_error_ratio_to_legacy\": 2}");
    char q[1024], *log;
    json_t *entries;
    int c[2], n5xx;

    assert_int_equal(h_backend_set(LEGACY_PORT(f), "error_rate=1&seed=2"), 0);
    script(q, sizeof(q), "500,200x9", 20);         /* new: 10% errors */
    assert_int_equal(h_backend_set(NEW_PORT(f), q), 0);
    fx_drive(f, 120, 0, c, &n5xx, NULL);
    assert_true(c[0] >= 20 && c[1] >= 20);
    assert_true(n5xx >= c[0]);
    h_sleep_ms(QUIET_MS);
    fx_expect_state(f, "steady", 50);
    entries = fx_audit(f, is_auto_action);
    assert_int_equal(json_array_size(entries), 0);
    json_decref(entries);
    log = h_read_file(f->log);
    assert_non_null(log);
    assert_null(strstr(log, "AUTOMATIC"));
    free(log);
}

/* 19 errors of 19 requests under min_requests 20: nothing; the 20th acts. */
static void
test_no_rollback_under_min_requests(void **state)
{
    struct fx *f = start(state, ",\"weight\": 100, \"rollback\": {\"window_s\": 3, "
                                "\"min_requests\": 20, \"max_error_rate\": 0.2}, "
                                "\"shield\": {\"enabled\": false}");
    json_t *entries;
    int c[2], n5xx;

    assert_int_equal(h_backend_set(NEW_PORT(f), "error_rate=1&seed=3"), 0);
    fx_drive(f, 19, 0, c, &n5xx, NULL);
    assert_int_equal(c[1], 19);
    assert_int_equal(n5xx, 19);
    h_sleep_ms(QUIET_MS);
    fx_expect_state(f, "steady", 100);
    entries = fx_audit(f, is_auto_action);
    assert_int_equal(json_array_size(entries), 0);
    json_decref(entries);

    fx_drive(f, 1, 0, c, &n5xx, NULL);
    assert_int_equal(c[1], 1);
    assert_int_equal(h_wait_log(f->log, "AUTOMATIC ROLLBACK", TICK_WAIT_MS), 0);
    fx_expect_state(f, "rolled_back", 0);
    entries = fx_audit(f, is_auto_action);
    assert_true(fx_num(json_object_get(json_array_get(entries, 0), "figures"),
                    "requests") == 20);
    json_decref(entries);
}

/* The latch is in the state file: kill -9 and a restart keep it, even with
 * new healthy again. */
static void
test_latch_survives_kill9(void **state)
{
    struct fx *f = start(state, ",\"weight\": 40, \"rollback\": {\"window_s\": 3, "
                                "\"min_requests\": 10}");
    json_t *entries, *st, *svc;
    int c[2];

    assert_int_equal(h_backend_set(NEW_PORT(f), "error_rate=1&status=503&seed=4"), 0);
    fx_drive(f, 100, 0, c, NULL, NULL);
    assert_int_equal(h_wait_log(f->log, "AUTOMATIC ROLLBACK", TICK_WAIT_MS), 0);
    st = json_load_file(f->state, 0, NULL);
    assert_non_null(st);
    svc = json_array_get(json_object_get(st, "services"), 0);
    assert_string_equal(str(svc, "state"), "rolled_back");
    assert_true(fx_num(svc, "weight_bp") == 0);
    json_decref(st);

    assert_int_equal(h_backend_set(NEW_PORT(f), "reset=1"), 0);
    assert_int_equal(h_stop(f->proxy, SIGKILL, 5000), 128 + SIGKILL);
    assert_int_equal(fx_start_proxy(f, 7), 0);
    fx_expect_state(f, "rolled_back", 0);
    fx_drive(f, 40, 0, c, NULL, NULL);
    assert_int_equal(c[1], 0);
    h_sleep_ms(QUIET_MS);
    fx_expect_state(f, "rolled_back", 0);
    entries = fx_audit(f, is_auto_action);
    assert_int_equal(json_array_size(entries), 1);
    json_decref(entries);
}

/* action "freeze": the weight stays, the state is frozen and reported, and
 * only an operator moves it on; the latch survives a restart too. */
static void
test_freeze_holds_weight(void **state)
{
    struct fx *f = start(state, ",\"weight\": 50, \"rollback\": {\"window_s\": 3, "
                                "\"min_requests\": 10, \"action\": \"freeze\"}");
    char out[4096];
    json_t *entries;
    int c[2];

    assert_int_equal(h_backend_set(NEW_PORT(f), "error_rate=1&seed=5"), 0);
    fx_drive(f, 100, 0, c, NULL, NULL);
    assert_int_equal(h_wait_log(f->log, "AUTOMATIC FREEZE (error_rate)", TICK_WAIT_MS), 0);
    fx_expect_state(f, "frozen", 50);
    entries = fx_audit(f, is_auto_action);
    the_auto_entry(entries, "freeze", 50, 50, "error rate", "error_rate");
    json_decref(entries);

    /* the weight holds: new still gets its share; no second audit entry */
    fx_drive(f, 60, 0, c, NULL, NULL);
    assert_true(c[1] > 0 && c[0] > 0);
    h_sleep_ms(QUIET_MS);
    fx_expect_state(f, "frozen", 50);
    entries = fx_audit(f, is_auto_action);
    assert_int_equal(json_array_size(entries), 1);
    json_decref(entries);

    /* restarted frozen: the alert comes back at once */
    assert_int_equal(h_stop(f->proxy, SIGKILL, 5000), 128 + SIGKILL);
    assert_int_equal(fx_start_proxy(f, 7), 0);
    fx_expect_state(f, "frozen", 50);
    assert_int_equal(h_wait_log(f->log, "latch restored from the state file",
                                TICK_WAIT_MS), 0);

    /* an operator decides */
    assert_int_equal(fx_ctl(f, out, "weight", "10"), 0);
    fx_expect_state(f, "steady", 10);
}

/* An operator's weight clears the latch; the errors that caused the
 * rollback (still inside the 3 s window) do not trigger it again; a new
 * breach does. */
static void
test_operator_weight_clears_latch(void **state)
{
    struct fx *f = start(state, ",\"weight\": 50, \"rollback\": {\"window_s\": 3, "
                                "\"min_requests\": 10, \"max_error_rate\": 0.2}");
    char out[4096];
    json_t *entries;
    int c[2], n5xx;

    assert_int_equal(h_backend_set(NEW_PORT(f), "error_rate=1&seed=6"), 0);
    fx_drive(f, 100, 0, c, NULL, NULL);
    assert_int_equal(h_wait_log(f->log, "AUTOMATIC ROLLBACK", TICK_WAIT_MS), 0);
    fx_expect_state(f, "rolled_back", 0);

    /* fixed, and back to 50 at once, well inside the window of the errors */
    assert_int_equal(h_backend_set(NEW_PORT(f), "reset=1"), 0);
    assert_int_equal(fx_ctl(f, out, "weight", "50"), 0);
    fx_expect_state(f, "steady", 50);
    fx_drive(f, 60, 0, c, &n5xx, NULL);
    assert_true(c[1] > 0);
    assert_int_equal(n5xx, 0);
    h_sleep_ms(QUIET_MS);
    fx_expect_state(f, "steady", 50);
    entries = fx_audit(f, is_auto_action);
    assert_int_equal(json_array_size(entries), 1);
    json_decref(entries);

    /* the latch is re-armed: a new breach rolls back again */
    assert_int_equal(h_backend_set(NEW_PORT(f), "error_rate=1&seed=6"), 0);
    fx_drive(f, 100, 0, c, NULL, NULL);
    h_sleep_ms(QUIET_MS);
    fx_expect_state(f, "rolled_back", 0);
    entries = fx_audit(f, is_auto_action);
    assert_int_equal(json_array_size(entries), 2);
    json_decref(entries);
}

#define HEALTH_FAST ",\"health\": {\"type\": \"http\", \"path\": \"/healthz\", " \
                    "\"interval_ms\": 150, \"timeout_ms\": 100, \"rise\": 2, \"fall\": 2}"

/* on_new_down "rollback": new's checks fail, the tick latches a rollback
 * ("new side down") without a single request; legacy keeps serving. */
static void
test_new_down_rolls_back(void **state)
{
    struct fx *f = start(state, ",\"weight\": 30, \"on_new_down\": \"rollback\""
                                HEALTH_FAST);
    const json_t *fig;
    json_t *entries;
    int c[2];
    double ms;

    h_sleep_ms(QUIET_MS);
    fx_expect_state(f, "steady", 30);
    assert_int_equal(h_backend_set(NEW_PORT(f), "healthy=0"), 0);
    assert_int_equal(h_wait_log(f->log, "AUTOMATIC ROLLBACK (new_down)", 5000), 0);
    fx_expect_state(f, "rolled_back", 0);
    entries = fx_audit(f, is_auto_action);
    fig = the_auto_entry(entries, "rollback", 30, 0, "new side down", "new_down");
    assert_true(json_is_false(json_object_get(fig, "new_healthy")));
    json_decref(entries);
    ms = breach_to_apply_ms(f);        /* from the snapshot that marked new down */
    assert_true(ms >= 0 && ms <= PX_TICK_MS + 50);

    /* back up: the latch holds until an operator acts */
    assert_int_equal(h_backend_set(NEW_PORT(f), "healthy=1"), 0);
    fx_drive(f, 20, 0, c, NULL, NULL);
    assert_int_equal(c[1], 0);
    h_sleep_ms(QUIET_MS);
    fx_expect_state(f, "rolled_back", 0);
}

/* on_new_down left at "fallback": new going down moves its share to legacy
 * (the router) and the weight and state stay as they are. */
static void
test_new_down_falls_back_by_default(void **state)
{
    struct fx *f = start(state, ",\"weight\": 30" HEALTH_FAST);
    json_t *entries;
    int c[2];

    assert_int_equal(h_backend_set(NEW_PORT(f), "healthy=0"), 0);
    assert_int_equal(h_wait_log(f->log, "has no healthy server", 5000), 0);
    fx_drive(f, 20, 0, c, NULL, NULL);
    assert_int_equal(c[1], 0);
    h_sleep_ms(QUIET_MS);
    fx_expect_state(f, "steady", 30);
    entries = fx_audit(f, is_auto_action);
    assert_int_equal(json_array_size(entries), 0);
    json_decref(entries);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_error_rate_rolls_back, fx_teardown),
        cmocka_unit_test_teardown(test_p99_rolls_back, fx_teardown),
        cmocka_unit_test_teardown(test_ratio_to_legacy_rolls_back, fx_teardown),
        cmocka_unit_test_teardown(test_legacy_failing_does_not_roll_back, fx_teardown),
        cmocka_unit_test_teardown(test_no_rollback_under_min_requests, fx_teardown),
        cmocka_unit_test_teardown(test_latch_survives_kill9, fx_teardown),
        cmocka_unit_test_teardown(test_freeze_holds_weight, fx_teardown),
        cmocka_unit_test_teardown(test_operator_weight_clears_latch, fx_teardown),
        cmocka_unit_test_teardown(test_new_down_rolls_back, fx_teardown),
        cmocka_unit_test_teardown(test_new_down_falls_back_by_default, fx_teardown),
    };

    return cmocka_run_group_tests_name("integration: automatic rollback", tests, NULL, NULL);
}
