/*
 * The operator's seat, end to end with the real cutoverctl and cutoverd:
 * the command-line conventions (--version, --help, help COMMAND, options
 * before or after the command, `weight 10%`), --reason on every changing
 * command over the socket and HTTP, admin.require_reason, and what status
 * tells (the last change, the effective share, a plan line consistent with
 * the state).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/integration/fixture.h"

#define OPERATE_SECRET "operate-secret-0123456789"

/* The last audit entry of the fixture's log (caller decrefs), or NULL. */
static json_t *
last_entry(struct fx *f)
{
    json_t *all = fx_audit(f, NULL), *e;

    e = json_array_size(all) > 0 ? json_incref(json_array_get(all, json_array_size(all) - 1))
                                 : NULL;
    json_decref(all);
    return e;
}

/* Fails unless the last audit entry has <action> and <reason>. */
static void
expect_last(struct fx *f, const char *action, const char *reason)
{
    json_t *e = last_entry(f);

    assert_non_null(e);
    if (strcmp(json_string_value(json_object_get(e, "action")), action) != 0
        || strcmp(json_string_value(json_object_get(e, "reason")), reason) != 0) {
        char *t = json_dumps(e, JSON_COMPACT);

        fail_msg("last audit entry %s, want action %s reason \"%s\"", t, action, reason);
    }
    json_decref(e);
}

/* Runs cutoverd with <arg> alone; its stdout (and stderr) into <out>.
 * Returns its exit status, -1 when it did not run. */
static int
run_cutoverd(const char *arg, char *out, size_t len)
{
    char cmd[1200];
    size_t n;
    FILE *p;
    int st;

    snprintf(cmd, sizeof(cmd), "'%s' %s 2>&1", h_bin("cutoverd"), arg);
    if ((p = popen(cmd, "r")) == NULL)
        return -1;
    n = fread(out, 1, len - 1, p);
    out[n] = '\0';
    st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void
test_conventions(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    char out[16384];

    *state = f;
    assert_non_null(f);
    assert_int_equal(fx_init(f, false, 1, NULL), 0);
    /* two services: -S is needed, and works after the command too */
    snprintf(f->more_services, sizeof(f->more_services),
             ", {\"name\": \"shop\", \"listen\": [\"127.0.0.1:%d\"], "
             "\"legacy\": {\"servers\": [\"127.0.0.1:%d\"]}, "
             "\"new\": {\"servers\": [\"127.0.0.1:%d\"]}}",
             h_free_port(), f->port[0][0], f->port[1][0]);
    assert_int_equal(fx_write_conf(f), 0);
    assert_int_equal(fx_start_proxy(f, 1), 0);

    /* both binaries: version and help, exit 0 */
    assert_int_equal(run_cutoverd("--version", out, sizeof(out)), 0);
    assert_true(strncmp(out, "cutoverd ", 9) == 0);
    assert_int_equal(run_cutoverd("-V", out, sizeof(out)), 0);
    assert_true(strncmp(out, "cutoverd ", 9) == 0);
    assert_int_equal(run_cutoverd("--help", out, sizeof(out)), 0);
    assert_non_null(strstr(out, "usage: cutoverd"));
    assert_non_null(strstr(out, "--version"));
    assert_int_equal(run_cutoverd("--frobnicate", out, sizeof(out)), 2);

    /* version and help, without a daemon to talk to */
    assert_int_equal(h_ctl("/nonexistent.sock", out, sizeof(out), "--version", (char *)NULL),
                     0);
    assert_true(strncmp(out, "cutoverctl ", 11) == 0);
    assert_int_equal(h_ctl("/nonexistent.sock", out, sizeof(out), "-V", (char *)NULL), 0);
    assert_true(strncmp(out, "cutoverctl ", 11) == 0);
    assert_int_equal(h_ctl("/nonexistent.sock", out, sizeof(out), "--help", (char *)NULL), 0);
    assert_non_null(strstr(out, "usage: cutoverctl"));
    assert_non_null(strstr(out, "help [COMMAND]"));
    assert_int_equal(h_ctl("/nonexistent.sock", out, sizeof(out), "help", "switch",
                           (char *)NULL), 0);
    assert_non_null(strstr(out, "switch new|legacy"));
    assert_non_null(strstr(out, "--drain-s N"));
    assert_null(strstr(out, "plan start|pause"));  /* not the plan's usage (--force names
                                                     * the raises it applies to) */
    assert_int_equal(h_ctl("/nonexistent.sock", out, sizeof(out), "weight", "--help",
                           (char *)NULL), 0);
    assert_non_null(strstr(out, "weight P"));
    assert_int_equal(h_ctl("/nonexistent.sock", out, sizeof(out), "help", "nosuch",
                           (char *)NULL), 2);
    /* an option of another command is a usage error, sent nowhere */
    assert_int_equal(fx_ctl(f, out, "status", "--force"), 2);
    assert_non_null(strstr(h_ctl_err(), "--force does not apply to status"));

    /* options after the command; 10% is 10 */
    assert_int_equal(fx_ctl(f, out, "weight", "10%", "-S", "shop"), 0);
    assert_int_equal(fx_ctl(f, out, "status", "-S", "shop"), 0);
    assert_non_null(strstr(out, "SERVICE shop"));
    assert_non_null(strstr(out, "weight 10.00%"));
    assert_null(strstr(out, "SERVICE web"));
    assert_int_equal(fx_ctl(f, out, "status", "--json", "--service=shop"), 0);
    assert_non_null(strstr(out, "\"weight\":10"));
    assert_int_equal(fx_ctl(f, out, "-S", "web", "weight", "12.5%"), 0);
    assert_int_equal(fx_ctl(f, out, "weight", "12.5", "--service", "web", "--json"), 0);
    assert_non_null(strstr(out, "\"weight\":12.5"));
    assert_int_equal(fx_ctl(f, out, "weight", "%", "-S", "web"), 2);
    assert_int_equal(fx_ctl(f, out, "weight", "10%%", "-S", "web"), 2);
}

static void
test_reason_on_every_change(void **state)
{
    struct fx *f = fx_new(state, sizeof(struct fx), false, 1,
                          ", \"plan\": {\"steps\": [5, 50], \"bake_s\": 600}");
    char out[8192], body[256];
    json_t *reply = NULL;

    f->admin_port = h_free_port();
    assert_int_equal(fx_admin_tokens(f, "deploybot operate " OPERATE_SECRET "\n"), 0);
    assert_int_equal(fx_write_conf(f), 0);
    assert_int_equal(fx_start_proxy(f, 1), 0);

    assert_int_equal(fx_ctl(f, out, "weight", "20", "--reason", "CHG-1"), 0);
    expect_last(f, "weight", "CHG-1");
    assert_int_equal(fx_ctl(f, out, "--reason=CHG-2", "promote"), 0);
    expect_last(f, "promote", "CHG-2");
    assert_int_equal(fx_ctl(f, out, "switch", "legacy", "--reason", "CHG-3"), 0);
    expect_last(f, "switch", "CHG-3");
    assert_int_equal(fx_ctl(f, out, "plan", "start", "--reason", "CHG-4"), 0);
    expect_last(f, "plan_start", "CHG-4; step 1/2 (5%); each step bakes 600 s with at least "
                "20 requests on new");
    assert_int_equal(fx_ctl(f, out, "plan", "pause", "--reason", "CHG-5"), 0);
    {
        json_t *e = last_entry(f);

        assert_string_equal(json_string_value(json_object_get(e, "action")), "plan_pause");
        assert_true(strncmp(json_string_value(json_object_get(e, "reason")), "CHG-5; ", 7)
                    == 0);
        json_decref(e);
    }
    assert_int_equal(fx_ctl(f, out, "rollback", "--reason", "CHG-6"), 0);
    expect_last(f, "rollback", "CHG-6");

    /* over HTTP, the same field */
    snprintf(body, sizeof(body), "{\"percent\": 3, \"reason\": \"CHG-7\"}");
    assert_int_equal(fx_admin_call(f, "POST", "/v1/weight", OPERATE_SECRET, body,
                                   &reply), 403);   /* clears the latch: admin only */
    json_decref(reply);
    assert_int_equal(fx_ctl(f, out, "weight", "1"), 0);
    assert_int_equal(fx_admin_call(f, "POST", "/v1/weight", OPERATE_SECRET, body,
                                   &reply), 200);
    json_decref(reply);
    expect_last(f, "weight", "CHG-7");

    /* a reason that is not one line of text changes nothing, on any command */
    assert_int_equal(fx_admin_call(f, "POST", "/v1/weight", OPERATE_SECRET,
                                   "{\"percent\": 2, \"reason\": \"a\\nb\"}", &reply), 409);
    json_decref(reply);
    assert_int_equal(fx_admin_call(f, "POST", "/v1/weight", OPERATE_SECRET,
                                   "{\"percent\": 2, \"reason\": 7}", &reply), 409);
    json_decref(reply);
    assert_true(fx_weight(f) == 3);
    assert_int_equal(fx_ctl(f, out, "weight", "2", "--reason", "a\tb"), 2);
    assert_true(fx_weight(f) == 3);
    expect_last(f, "weight", "CHG-7");
}

static void
test_require_reason(void **state)
{
    struct fx *f = fx_new(state, sizeof(struct fx), false, 1, NULL);
    char out[8192], st[64];
    json_t *reply = NULL, *all;
    size_t n;

    f->admin_port = h_free_port();
    assert_int_equal(fx_admin_tokens(f, "deploybot operate " OPERATE_SECRET "\n"), 0);
    snprintf(f->admin_extra + strlen(f->admin_extra),
             sizeof(f->admin_extra) - strlen(f->admin_extra), ", \"require_reason\": true");
    assert_int_equal(fx_write_conf(f), 0);
    assert_int_equal(fx_start_proxy(f, 1), 0);

    all = fx_audit(f, NULL);
    n = json_array_size(all);
    json_decref(all);
    /* refused without one, changing nothing */
    assert_int_equal(fx_ctl(f, out, "weight", "10"), 1);
    assert_non_null(strstr(h_ctl_err(), "a reason is required (admin.require_reason)"));
    assert_int_equal(fx_ctl(f, out, "weight", "10", "--reason", ""), 1);
    assert_int_equal(fx_ctl(f, out, "promote"), 1);
    assert_int_equal(fx_ctl(f, out, "switch", "new"), 1);
    assert_int_equal(fx_ctl(f, out, "rollback"), 1);
    assert_int_equal(fx_admin_call(f, "POST", "/v1/weight", OPERATE_SECRET,
                                   "{\"percent\": 10}", &reply), 409);
    assert_non_null(strstr(json_string_value(json_object_get(reply, "error")),
                           "a reason is required"));
    json_decref(reply);
    fx_expect_state(f, "steady", 0);
    all = fx_audit(f, NULL);
    assert_int_equal(json_array_size(all), n);
    json_decref(all);
    /* reading needs none */
    assert_int_equal(fx_ctl(f, out, "status"), 0);
    assert_int_equal(fx_ctl(f, out, "audit"), 0);
    /* and with one, it goes */
    assert_int_equal(fx_ctl(f, out, "weight", "10", "--reason", "CHG-9"), 0);
    expect_last(f, "weight", "CHG-9");
    assert_int_equal(fx_admin_call(f, "POST", "/v1/rollback", OPERATE_SECRET,
                                   "{\"reason\": \"CHG-10\"}", &reply), 200);
    json_decref(reply);
    assert_string_equal(fx_state(f, st, sizeof(st)), "rolled_back");
    expect_last(f, "rollback", "CHG-10");
}

/* Polls status --json every 50 ms until <path> (h_json_at) of the only
 * service is the string <want>; fails the test after <timeout_ms>. */
static void
wait_status_str(struct fx *f, const char *path, const char *want, int timeout_ms)
{
    long long t0 = h_now_ms();
    json_t *v;

    for (;;) {
        v = fx_status_at(f, "%s", path);
        if (json_is_string(v) && strcmp(json_string_value(v), want) == 0) {
            json_decref(v);
            return;
        }
        json_decref(v);
        if (h_now_ms() - t0 > timeout_ms) {
            h_dump_file(f->log, 3000);
            fail_msg("status %s did not become \"%s\" within %d ms", path, want, timeout_ms);
        }
        h_sleep_ms(50);
    }
}

/* How often <needle> occurs in <hay>. */
static unsigned
count_of(const char *hay, const char *needle)
{
    unsigned n = 0;

    for (; (hay = strstr(hay, needle)) != NULL; hay += strlen(needle))
        n++;
    return n;
}

/* Status tells the story: the last change with its actor, reason, time and
 * the figures of an automatic one, before and after a restart; the share
 * new gets now beside the weight; a plan ended by a breach is said once and
 * is history after the next change. */
static void
test_status_story(void **state)
{
    struct fx *f = fx_new(state, sizeof(struct fx), false, 1,
                          ", \"plan\": {\"steps\": [10, 50], \"bake_s\": 600}"
                          ", \"rollback\": {\"min_requests\": 5, \"window_s\": 10}"
                          ", \"health\": {\"type\": \"http\", \"path\": \"/healthz\", "
                          "\"interval_ms\": 150, \"timeout_ms\": 100, \"rise\": 2, \"fall\": 2}"
                          ", \"shield\": {\"enabled\": false}");   /* new's 5xx reach the client */
    char out[16384], at[64];
    json_t *lc, *v;
    int c[2];

    assert_int_equal(fx_start_proxy(f, 1), 0);
    v = fx_status_at(f, "last_change");
    assert_true(json_is_null(v));      /* a fresh daemon: nothing to tell */
    json_decref(v);
    v = fx_status_at(f, "effective_weight");
    assert_true(json_is_number(v) && json_number_value(v) == 0);
    json_decref(v);

    /* a plan stopped by a breach: the rollback's story, with its figures */
    assert_int_equal(fx_ctl(f, out, "plan", "start", "--reason", "CHG-11"), 0);
    assert_int_equal(h_backend_set(f->port[1][0], "error_rate=1&seed=1"), 0);
    fx_drive(f, 60, 0, c, NULL, NULL);
    assert_true(c[1] >= 5);
    wait_status_str(f, "state", "rolled_back", 5000);
    lc = fx_status_at(f, "last_change");
    assert_non_null(lc);
    assert_string_equal(json_string_value(json_object_get(lc, "action")), "rollback");
    assert_string_equal(json_string_value(json_object_get(lc, "actor")), "auto");
    assert_non_null(strstr(json_string_value(json_object_get(lc, "reason")), "error rate"));
    assert_true(json_is_string(json_object_get(lc, "at")));
    assert_true(json_number_value(json_object_get(lc, "from")) == 10);
    assert_true(json_number_value(json_object_get(lc, "to")) == 0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(lc, "figures"),
                                                          "kind")), "error_rate");
    json_decref(lc);
    v = fx_status_at(f, "plan.current");
    assert_true(json_is_true(v));
    json_decref(v);
    assert_int_equal(fx_ctl(f, out, "status"), 0);
    assert_int_equal(count_of(out, "breach"), 1);
    assert_non_null(strstr(out, "plan    step 1/2 (10%)  stopped by a breach"));
    assert_non_null(strstr(out, "last    rollback 10.00% -> 0.00% by auto at "));
    assert_non_null(strstr(out, "figures kind=error_rate"));

    /* promote: the plan is history, said nowhere as current */
    assert_int_equal(h_backend_set(f->port[1][0], "error_rate=0"), 0);
    assert_int_equal(fx_ctl(f, out, "promote", "--reason", "CHG-12"), 0);
    v = fx_status_at(f, "plan.current");
    assert_true(json_is_false(v));
    json_decref(v);
    assert_int_equal(fx_ctl(f, out, "status"), 0);
    assert_null(strstr(out, "breach"));
    assert_null(strstr(out, "step 1/2"));
    assert_non_null(strstr(out, "plan    not running: 2 steps (10% 50%), bake 600 s each"));
    assert_non_null(strstr(out, "last    promote 0.00% -> 100.00% by uid:"));
    assert_non_null(strstr(out, "reason \"CHG-12\""));
    assert_null(strstr(out, "figures"));

    /* new down at weight 50: everything goes to legacy, and status says so */
    assert_int_equal(fx_ctl(f, out, "weight", "50"), 0);
    assert_int_equal(fx_ctl(f, out, "status"), 0);
    assert_non_null(strstr(out, "weight 50.00%  effective 50.00%  state steady"));
    assert_null(strstr(out, "note"));
    assert_int_equal(h_backend_set(f->port[1][0], "healthy=0"), 0);
    assert_int_equal(fx_wait_up(f, "new", false, 5000), 0);
    v = fx_status_at(f, "effective_weight");
    assert_true(json_is_number(v) && json_number_value(v) == 0);
    json_decref(v);
    assert_int_equal(fx_ctl(f, out, "status"), 0);
    assert_non_null(strstr(out, "weight 50.00%  effective 0.00%  state steady"));
    assert_non_null(strstr(out, "note    new has no healthy server: its share falls back to "
                                "legacy"));
    fx_drive(f, 20, 0, c, NULL, NULL);
    assert_int_equal(c[1], 0);

    /* a restart keeps the story: read back from the audit log */
    lc = fx_status_at(f, "last_change");
    snprintf(at, sizeof(at), "%s", json_string_value(json_object_get(lc, "at")));
    json_decref(lc);
    fx_stop_clean(f);
    assert_int_equal(fx_start_proxy(f, 2), 0);
    lc = fx_status_at(f, "last_change");
    assert_non_null(lc);
    assert_string_equal(json_string_value(json_object_get(lc, "action")), "weight");
    assert_string_equal(json_string_value(json_object_get(lc, "at")), at);
    json_decref(lc);
}

/* The longest line of <text>, in characters (UTF-8 continuation bytes not
 * counted). */
static size_t
widest_line(const char *text)
{
    size_t w = 0, max = 0;

    for (; *text != '\0'; text++) {
        if (*text == '\n') {
            w = 0;
            continue;
        }
        if (((unsigned char)*text & 0xc0) != 0x80 && ++w > max)
            max = w;
    }
    return max;
}

/* watch: a timestamp per frame, "no data" rather than zeros, 80 columns,
 * a daemon restart survived (said once each way), exit 0 on Ctrl-C. */
static void
test_watch(void **state)
{
    struct fx *f = fx_new(state, sizeof(struct fx), false, 1,
                          ", \"plan\": {\"steps\": [10, 50], \"bake_s\": 600}");
    char log[600], *argv[] = { (char *)h_bin("cutoverctl"), "-s", NULL, "watch", NULL };
    char *text;
    long long t0;
    pid_t w;
    int c[2];

    assert_int_equal(fx_start_proxy(f, 1), 0);
    fx_ctl_ok(f, "plan", "start");
    snprintf(log, sizeof(log), "%s/watch.out", f->dir);
    argv[2] = f->sock;
    w = h_spawn(argv, log);
    assert_true(w > 0);
    assert_int_equal(h_wait_log(log, "requests on new", 5000), 0);
    text = h_read_file(log);
    assert_non_null(strstr(text, "cutoverctl watch  2"));      /* the date */
    assert_non_null(strstr(text, "(every 1 s; Ctrl-C stops)"));
    assert_non_null(strstr(text, "errors        no data               no data"));
    assert_null(strstr(text, "0 / 0"));
    if (widest_line(text) > 80)
        fail_msg("a watch line is wider than 80 columns:\n%s", text);
    free(text);

    /* traffic: figures instead of "no data" */
    fx_drive(f, 20, 0, c, NULL, NULL);
    assert_int_equal(h_wait_log(log, "requests      ", 5000), 0);

    /* the daemon restarts: watch says so and goes on */
    assert_int_equal(h_stop(f->proxy, SIGTERM, 10000), 0);
    assert_int_equal(h_wait_log(log, "lost the daemon (", 5000), 0);
    assert_true(h_alive(w, NULL));
    assert_int_equal(fx_start_proxy(f, 2), 0);
    assert_int_equal(h_wait_log(log, "reconnected after ", 5000), 0);
    text = h_read_file(log);
    assert_int_equal(count_of(text, "lost the daemon"), 1);
    assert_int_equal(count_of(text, "reconnected after"), 1);
    /* a frame after the reconnection, within 5 s */
    for (t0 = h_now_ms(); strstr(strstr(text, "reconnected after"), "SERVICE web (http)") == NULL;
         h_sleep_ms(50)) {
        if (h_now_ms() - t0 > 5000)
            fail_msg("no frame after the reconnection:\n%s", text);
        free(text);
        text = h_read_file(log);
        assert_non_null(text);
    }
    if (widest_line(text) > 80)
        fail_msg("a watch line is wider than 80 columns:\n%s", text);
    free(text);

    /* Ctrl-C: exit 0, promptly */
    assert_int_equal(h_stop(w, SIGINT, 3000), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_conventions, fx_teardown),
        cmocka_unit_test_teardown(test_reason_on_every_change, fx_teardown),
        cmocka_unit_test_teardown(test_require_reason, fx_teardown),
        cmocka_unit_test_teardown(test_status_story, fx_teardown),
        cmocka_unit_test_teardown(test_watch, fx_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
