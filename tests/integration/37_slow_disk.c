/*
 * A slow disk does not stall the data plane: with every fsync of the
 * daemon's files taking SLOW_MS longer (tests/tools/slowsync.so, preloaded
 * into cutoverd only), requests sent without a pause all the while are each
 * answered within ANSWER_MS while lowerings and a rollback are saved and
 * audited (the state file and the audit log are written on the control
 * plane's writer thread); each command still answers only after its save
 * (it takes SLOW_MS at least); the state file and the audit log hold every
 * change, in order, afterwards. A SIGTERM while a save is on its way loses
 * nothing: the daemon finishes it before it exits.
 */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "admin/state.h"
#include "tests/integration/fixture.h"

#define SLOW_MS   300              /* added to every fsync under the test's directory */
#define ANSWER_MS 100              /* the longest any request may wait */

/* Starts cutoverd with slowsync.so preloaded (fsync under f->dir slowed). */
static void
start_slow(struct fx *f)
{
    char ms[16];

    snprintf(ms, sizeof(ms), "%d", SLOW_MS);
    assert_int_equal(access(h_bin("tests/tools/slowsync.so"), R_OK), 0);
    setenv("LD_PRELOAD", h_bin("tests/tools/slowsync.so"), 1);
    setenv("SLOWSYNC_DIR", f->dir, 1);
    setenv("SLOWSYNC_MS", ms, 1);
    /* under ASan the runtime wants to come first: the shim has none */
    setenv("ASAN_OPTIONS", "verify_asan_link_order=0", 0);
    assert_int_equal(fx_start_proxy(f, 7), 0);
    unsetenv("LD_PRELOAD");
    unsetenv("SLOWSYNC_DIR");
    unsetenv("SLOWSYNC_MS");
}

/* The requests sent without a pause while commands run. */
struct load {
    int port;
    atomic_bool stop;
    long answered;
    long long max_ms;            /* the longest wait for an answer */
    int failed;                  /* a request without an answer */
};

static void *
load_main(void *arg)
{
    static const char req[] = "GET / HTTP/1.1\r\nHost: test\r\n\r\n";
    struct load *l = arg;
    struct h_resp r;
    long long t0, dt;
    int fd = -1;

    memset(&r, 0, sizeof(r));
    while (!atomic_load(&l->stop)) {
        t0 = h_now_ms();
        if (fd < 0 && (fd = h_connect(l->port)) < 0) {
            l->failed++;
            break;
        }
        if (h_send_all(fd, req, sizeof(req) - 1) != 0 || h_read_response(fd, &r) != 0) {
            l->failed++;
            break;
        }
        dt = h_now_ms() - t0;
        if (dt > l->max_ms)
            l->max_ms = dt;
        l->answered++;
        if (r.closed) {
            close(fd);
            fd = -1;
        }
        h_resp_free(&r);
    }
    if (fd >= 0)
        close(fd);
    return NULL;
}

/* Runs cutoverctl <a> <b>; returns how long it took, in ms. */
static long long
timed_ctl(struct fx *f, const char *a, const char *b)
{
    long long t0 = h_now_ms();

    fx_ctl_ok(f, a, b);
    return h_now_ms() - t0;
}

static void
test_slow_fsync_does_not_stall_requests(void **state)
{
    struct fx *f = fx_new(state, sizeof(struct fx), false, 1, ",\"weight\": 80");
    static const char *const weights[] = { "60", "40", "20", NULL };
    struct load l = { 0 };
    struct adm_store_entry e;
    pthread_t th;
    json_t *all, *x;
    long long dt;
    long gen;
    uint64_t last = 0, g;
    size_t i;

    start_slow(f);
    l.port = f->proxy_port;
    assert_int_equal(pthread_create(&th, NULL, load_main, &l), 0);
    h_sleep_ms(200);
    for (i = 0; weights[i] != NULL; i++) {
        dt = timed_ctl(f, "weight", weights[i]);
        fprintf(stderr, "weight %s answered in %lld ms\n", weights[i], dt);
        if (dt < SLOW_MS)              /* the reply came before its save could */
            fail_msg("weight %s answered in %lld ms, before its save (%d ms at least)",
                     weights[i], dt, SLOW_MS);
    }
    dt = timed_ctl(f, "rollback", NULL);
    fprintf(stderr, "rollback answered in %lld ms\n", dt);
    if (dt < SLOW_MS)
        fail_msg("rollback answered in %lld ms, before its save (%d ms at least)", dt,
                 SLOW_MS);
    h_sleep_ms(200);
    atomic_store(&l.stop, true);
    pthread_join(th, NULL);
    fprintf(stderr, "%ld requests answered while the commands ran, the longest in %lld ms\n",
            l.answered, l.max_ms);
    assert_int_equal(l.failed, 0);
    assert_true(l.answered > 20);
    if (l.max_ms >= ANSWER_MS)
        fail_msg("a request waited %lld ms (of %ld answered) while the disk was slow",
                 l.max_ms, l.answered);

    /* everything on disk, in order */
    gen = fx_status_long(f, "generation");
    assert_true(gen >= 4);
    e = fx_state_file(f, "web");
    assert_int_equal(e.generation, (uint64_t)gen);
    assert_int_equal(e.weight_bp, 0);
    assert_int_equal(e.state, ADM_ST_ROLLED_BACK);
    assert_int_equal(fx_audit_covers(f, "web", (uint64_t)gen), 0);
    all = fx_audit(f, NULL);
    json_array_foreach(all, i, x) {
        if (!fx_is_change_action(json_string_value(json_object_get(x, "action"))))
            continue;
        g = (uint64_t)json_integer_value(json_object_get(x, "generation"));
        assert_true(g > last);
        last = g;
    }
    json_decref(all);
    assert_int_equal(last, (uint64_t)gen);
}

static void
test_sigterm_finishes_the_save(void **state)
{
    struct fx *f = fx_new(state, sizeof(struct fx), false, 1, ",\"weight\": 80");
    char *argv[] = { (char *)h_bin("cutoverctl"), "-s", f->sock, "weight", "10", NULL };
    struct adm_store_entry e;
    pid_t ctl;

    start_slow(f);
    ctl = h_spawn(argv, NULL);
    assert_true(ctl > 0);
    h_sleep_ms(SLOW_MS / 2);           /* its save is on its way */
    assert_int_equal(h_stop(f->proxy, SIGTERM, 15000), 0);
    h_wait_exit(ctl, 5000);
    e = fx_state_file(f, "web");
    assert_int_equal(e.weight_bp, 1000);
    fx_audit_covers(f, "web", e.generation);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_slow_fsync_does_not_stall_requests, fx_teardown),
        cmocka_unit_test_teardown(test_sigterm_finishes_the_save, fx_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
