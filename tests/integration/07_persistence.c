/*
 * State survives a crash: after kill -9 and a restart, the weight and the
 * rolled-back latch are what they were; the config's initial weight does not
 * win over the state file; a corrupt state file stops startup with a clear
 * message instead of silently defaulting; the temporary files a crash left
 * are removed at the next start.
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

static struct fx *
start(void **state, const char *extra)
{
    assert_int_equal(fx_open(state, false, 1, extra, 3), 0);
    return *state;
}

static void
crash_and_restart(struct fx *f)
{
    assert_int_equal(h_stop(f->proxy, SIGKILL, 5000), 128 + SIGKILL);
    assert_int_equal(fx_start_proxy(f, 3), 0);
}

static void
test_weight_survives_kill9(void **state)
{
    struct fx *f = start(state, ",\"weight\": 5");
    char out[4096], st[64];
    int c[2];

    assert_true(fx_weight(f) == 5);                 /* the config's initial weight */
    assert_int_equal(fx_ctl(f, out, "weight", "37.5"), 0);
    crash_and_restart(f);
    assert_true(fx_weight(f) == 37.5);              /* the state file wins */
    assert_string_equal(fx_state(f, st, sizeof(st)), "steady");
    assert_int_equal(fx_ctl(f, out, "promote"), 0);
    crash_and_restart(f);
    assert_true(fx_weight(f) == 100);
    assert_int_equal(fx_count(f, 20, "/", NULL, c), 0);
    assert_int_equal(c[1], 20);
}

static void
test_rollback_latch_survives_kill9(void **state)
{
    struct fx *f = start(state, NULL);
    char out[4096], st[64];
    int c[2];

    assert_int_equal(fx_ctl(f, out, "weight", "80"), 0);
    assert_int_equal(fx_ctl(f, out, "rollback", "--reason", "errors"), 0);
    crash_and_restart(f);
    assert_true(fx_weight(f) == 0);
    assert_string_equal(fx_state(f, st, sizeof(st)), "rolled_back");
    assert_int_equal(fx_count(f, 30, "/", NULL, c), 0);
    assert_int_equal(c[1], 0);
}

static void
test_corrupt_state_stops_startup(void **state)
{
    struct fx *f = start(state, NULL);
    char *argv[] = { (char *)h_bin("cutoverd"), "-c", f->conf, NULL };
    char *log;
    pid_t pid;

    assert_int_equal(h_stop(f->proxy, SIGKILL, 5000), 128 + SIGKILL);
    assert_int_equal(h_write_file(f->state, "{\"version\":1,\"services\":[{\"name\":"), 0);
    unlink(f->log);
    pid = h_spawn(argv, f->log);
    assert_true(pid > 0);
    assert_int_equal(h_stop(pid, 0, 10000), 1);     /* exits 1 by itself */
    log = h_read_file(f->log);
    assert_non_null(log);
    assert_non_null(strstr(log, f->state));
    free(log);
}

static void
test_sigterm_exits_zero(void **state)
{
    struct fx *f = start(state, NULL);
    char out[4096];

    assert_int_equal(fx_ctl(f, out, "weight", "1"), 0);
    assert_int_equal(h_stop(f->proxy, SIGTERM, 10000), 0);
    assert_int_equal(fx_start_proxy(f, 3), 0);
    assert_true(fx_weight(f) == 1);
}

/* A crash during a save leaves state.json.tmp.<pid>: the next start removes
 * those of processes that are gone, and says so; a live process's file and
 * files that only look alike stay. */
static void
test_stale_temporary_files_removed(void **state)
{
    struct fx *f = start(state, NULL);
    char dead_tmp[600], live_tmp[600], other[600];
    pid_t dead;
    int st;

    assert_int_equal(h_stop(f->proxy, SIGKILL, 5000), 128 + SIGKILL);
    dead = fork();
    assert_true(dead >= 0);
    if (dead == 0)
        _exit(0);
    assert_int_equal(waitpid(dead, &st, 0), dead);
    snprintf(dead_tmp, sizeof(dead_tmp), "%s.tmp.%ld", f->state, (long)dead);
    snprintf(live_tmp, sizeof(live_tmp), "%s.tmp.%ld", f->state, (long)getpid());
    snprintf(other, sizeof(other), "%s.tmp.%ld.bak", f->state, (long)dead);
    assert_int_equal(h_write_file(dead_tmp, "{\"version\":1,\"serv"), 0);
    assert_int_equal(h_write_file(live_tmp, "x"), 0);
    assert_int_equal(h_write_file(other, "x"), 0);
    assert_int_equal(fx_start_proxy(f, 3), 0);
    assert_int_equal(h_wait_log(f->log, "removed 1 stale temporary file", 2000), 0);
    assert_int_equal(access(dead_tmp, F_OK), -1);
    assert_int_equal(access(live_tmp, F_OK), 0);
    assert_int_equal(access(other, F_OK), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_weight_survives_kill9, fx_teardown),
        cmocka_unit_test_teardown(test_rollback_latch_survives_kill9, fx_teardown),
        cmocka_unit_test_teardown(test_corrupt_state_stops_startup, fx_teardown),
        cmocka_unit_test_teardown(test_sigterm_exits_zero, fx_teardown),
        cmocka_unit_test_teardown(test_stale_temporary_files_removed, fx_teardown),
    };

    return cmocka_run_group_tests_name("integration: persistence", tests, NULL, NULL);
}
