/*
 * `make run-migration` as an operator uses it: tests/tools/migration-demo.sh
 * started the way the Makefile does (as root, its clusters run as the
 * postgres user), in a directory of its own under /tmp, on free ports, with
 * 1 s bakes; then the walkthrough of docs/gates.md ("Try it"):
 *   - both gates pass once the initial copy is done; plan start puts 10 % on
 *     new;
 *   - the subscription disabled (the command the demo prints): both gates
 *     fail, the plan stays on its step for three bakes and more, held by a
 *     gate, and a raise is refused;
 *   - enabled again: the gates pass and the plan walks to promoted;
 *   - Ctrl-C (SIGINT) stops everything, the two clusters included, and
 *     cutoverd's log holds no sanitizer report (make asan).
 * Bounded waits; the clusters are stopped in the teardown whatever happened.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/integration/fixture.h"

struct demo {
    struct fx fx;                /* only sock is used: the fixture's status helpers */
    char dir[64];
    char log[128];
    pid_t pid;
};

/* sh tests/tools/pgcluster.sh <cmd> <dir>/<cluster> [-c <sql>]; its exit status. */
static int
pgcluster(struct demo *d, const char *cmd, const char *cluster, const char *sql)
{
    char line[1024];
    int st;

    if (sql != NULL)
        snprintf(line, sizeof(line), "sh '%s' %s '%s/%s' -qc '%s' >/dev/null",
                 h_src("tests/tools/pgcluster.sh"), cmd, d->dir, cluster, sql);
    else
        snprintf(line, sizeof(line), "sh '%s' %s '%s/%s' >/dev/null 2>&1",
                 h_src("tests/tools/pgcluster.sh"), cmd, d->dir, cluster);
    st = system(line);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int
teardown(void **state)
{
    struct demo *d = *state;
    char cmd[128];

    if (d == NULL)
        return 0;
    if (d->pid > 0)
        h_stop(d->pid, SIGINT, 20000);
    pgcluster(d, "stop", "pg-new", NULL);
    pgcluster(d, "stop", "pg-legacy", NULL);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", d->dir);
    free(d);
    return 0;
}

/* Polls status until gate <idx>'s verdict is <want>; 0, or -1 after
 * <timeout_ms> (the demo's log dumped). */
static int
wait_gate(struct demo *d, int idx, const char *want, int timeout_ms)
{
    long long end = h_now_ms() + timeout_ms;

    for (;;) {
        json_t *v = fx_status_at(&d->fx, "gates.%d.verdict", idx);
        bool ok = json_is_string(v) && strcmp(json_string_value(v), want) == 0;

        json_decref(v);
        if (ok)
            return 0;
        if (h_now_ms() >= end) {
            fprintf(stderr, "gate %d not %s within %d ms\n", idx, want, timeout_ms);
            h_dump_file(d->log, 4000);
            return -1;
        }
        h_sleep_ms(100);
    }
}

static void
test_walkthrough(void **state)
{
    struct demo *d = calloc(1, sizeof(*d));
    char env[32], out[4096], st[32];
    char *argv[] = { "/bin/sh", (char *)h_src("tests/tools/migration-demo.sh"), NULL };
    long long end;
    double weight;
    long step;
    json_t *v;

    assert_non_null(d);
    *state = d;
    snprintf(d->dir, sizeof(d->dir), "/tmp/cutover-demo.XXXXXX");
    assert_non_null(mkdtemp(d->dir));
    assert_int_equal(chmod(d->dir, 0755), 0);          /* the postgres user enters it */
    snprintf(d->log, sizeof(d->log), "%s/demo.out", d->dir);
    snprintf(d->fx.sock, sizeof(d->fx.sock), "%s/migration.sock", d->dir);
    setenv("CUTOVER_DEMO_DIR", d->dir, 1);
    snprintf(env, sizeof(env), "%d", h_free_port());
    setenv("CUTOVER_DEMO_PORT", env, 1);
    snprintf(env, sizeof(env), "%d", h_free_port());
    setenv("CUTOVER_DEMO_LEGACY_PORT", env, 1);
    snprintf(env, sizeof(env), "%d", h_free_port());
    setenv("CUTOVER_DEMO_NEW_PORT", env, 1);
    setenv("MIGRATION_BAKE_S", "1", 1);
    setenv("DEMO_RPS", "20", 1);
    setenv("CUTOVER_BIN_DIR", h_bin(""), 1);

    /* two initdb and the initial copy; the check of the gates before the start */
    d->pid = h_spawn(argv, d->log);
    assert_true(d->pid > 0);
    end = h_now_ms() + 60000;
    while (h_ctl(d->fx.sock, out, sizeof(out), "status", (char *)NULL) != 0) {
        if (h_now_ms() >= end || !h_alive(d->pid, NULL)) {
            h_dump_file(d->log, 4000);
            fail_msg("the demo did not start");
        }
        h_sleep_ms(200);
    }
    assert_int_equal(h_wait_log(d->log, "cutover migration demo is running", 10000), 0);
    {
        char *text = h_read_file(d->log);

        assert_non_null(text);
        if (strstr(text, "web/replica_lag (replication_lag): roles right: the replica is a "
                         "logical subscriber") == NULL
            || strstr(text, "cutover migration demo is running") == NULL)
            fail_msg("%s", text);
        free(text);
    }
    assert_int_equal(wait_gate(d, 0, "pass", 20000), 0);
    assert_int_equal(wait_gate(d, 1, "pass", 20000), 0);
    assert_int_equal(h_ctl(d->fx.sock, out, sizeof(out), "plan", "start", (char *)NULL), 0);
    assert_true(fx_weight(&d->fx) == 10);

    /* replication stops: the gates fail, the plan holds, a raise is refused */
    assert_int_equal(pgcluster(d, "psql", "pg-new", "ALTER SUBSCRIPTION migration DISABLE"),
                     0);
    assert_int_equal(wait_gate(d, 0, "fail", 10000), 0);
    assert_int_equal(wait_gate(d, 1, "fail", 10000), 0);
    /* the step it holds: 1, or 2 when step 1 had its requests before the
     * gates noticed (a few seconds) */
    step = fx_status_long(&d->fx, "plan.step");
    weight = fx_weight(&d->fx);
    assert_true(step >= 1 && step < 4);
    end = h_now_ms() + 3500;
    while (h_now_ms() < end) {
        assert_int_equal(fx_status_long(&d->fx, "plan.step"), step);
        h_sleep_ms(200);
    }
    v = fx_status_at(&d->fx, "plan.held_by");
    assert_true(json_is_string(v));
    assert_non_null(strstr(json_string_value(v), "gate "));
    json_decref(v);
    assert_int_equal(h_ctl(d->fx.sock, out, sizeof(out), "weight", "100", (char *)NULL), 1);
    assert_true(fx_weight(&d->fx) == weight);

    /* it catches up: the plan goes on to the end */
    assert_int_equal(pgcluster(d, "psql", "pg-new", "ALTER SUBSCRIPTION migration ENABLE"),
                     0);
    end = h_now_ms() + 40000;
    while (strcmp(fx_state(&d->fx, st, sizeof(st)), "promoted") != 0 && h_now_ms() < end)
        h_sleep_ms(200);
    if (strcmp(st, "promoted") != 0) {
        h_dump_file(d->log, 4000);
        fail_msg("not promoted: %s, step %ld", st, fx_status_long(&d->fx, "plan.step"));
    }
    assert_true(fx_weight(&d->fx) == 100);

    /* Ctrl-C: everything stops, the clusters too */
    assert_int_equal(h_stop(d->pid, SIGINT, 20000), 0);
    d->pid = 0;
    {
        char pidfile[128];

        snprintf(pidfile, sizeof(pidfile), "%s/pg-legacy/data/postmaster.pid", d->dir);
        assert_int_equal(access(pidfile, F_OK), -1);
        snprintf(pidfile, sizeof(pidfile), "%s/pg-new/data/postmaster.pid", d->dir);
        assert_int_equal(access(pidfile, F_OK), -1);
    }
    /* under make asan: cutoverd stopped cleanly, without a report */
    {
        char path[128];
        char *text;

        snprintf(path, sizeof(path), "%s/migration.log", d->dir);
        text = h_read_file(path);
        assert_non_null(text);
        if (strstr(text, "Sanitizer") != NULL || strstr(text, "runtime error") != NULL)
            fail_msg("%s", text);
        free(text);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_walkthrough, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
