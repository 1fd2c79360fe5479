/*
 * A slow disk does not stall the data plane: with every fsync of the
 * daemon's files taking SLOW_MS longer (tests/tools/slowsync.so, preloaded
 * into cutoverd only), requests sent without a pause all the while are each
 * answered within ANSWER_MS while lowerings and a rollback are saved and
 * audited (the state file and the audit log are written on the control
 * plane's writer thread); each command still answers only after its save
 * (it takes SLOW_MS at least); the state file and the audit log hold every
 * change, in order, afterwards. The same while a raise is saved: it is
 * applied only once saved (status shows the old weight meanwhile) and
 * answered after that; and while an automatic rollback (a new side that
 * answers 500) is saved: the routing changes at once, the rollback's log
 * line comes only once the state file and the audit log hold it; and
 * while a plan's step (a raise by "auto") is saved, and while a command's
 * audit entry of an event that changed no weight is written. Saves
 * queued behind a slow one are written as one. Over the fleet's store
 * (a private PostgreSQL cluster) a lowering answers once committed and
 * saved, a raise once committed, applied and saved, requests answered
 * all the while. A SIGTERM
 * while a save is on its way loses nothing: the daemon finishes it before
 * it exits.
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
#include "tests/harness/pg.h"
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

/* Starts the load on <f>'s proxy. */
static void
load_start(struct fx *f, struct load *l, pthread_t *th)
{
    memset(l, 0, sizeof(*l));
    l->port = f->proxy_port;
    assert_int_equal(pthread_create(th, NULL, load_main, l), 0);
}

/* Stops it and checks that every request was answered within ANSWER_MS. */
static void
load_check(struct load *l, pthread_t th, const char *what)
{
    atomic_store(&l->stop, true);
    pthread_join(th, NULL);
    fprintf(stderr, "%ld requests answered while %s, the longest in %lld ms\n", l->answered,
            what, l->max_ms);
    assert_int_equal(l->failed, 0);
    assert_true(l->answered > 20);
    if (l->max_ms >= ANSWER_MS)
        fail_msg("a request waited %lld ms (of %ld answered) while %s", l->max_ms,
                 l->answered, what);
}

/* The state file holds the generation status shows, with <weight_bp>, and
 * the audit log has an entry for every generation up to it. */
static void
expect_on_disk(struct fx *f, uint32_t weight_bp)
{
    long gen = fx_status_long(f, "generation");
    struct adm_store_entry e = fx_state_file(f, "web");

    assert_int_equal(e.generation, (uint64_t)gen);
    assert_int_equal(e.weight_bp, weight_bp);
    assert_int_equal(fx_audit_covers(f, "web", (uint64_t)gen), 0);
}

/* A raise by command: saved first, on the writer thread, while requests go
 * on; applied only once saved (status, answered meanwhile, shows the old
 * weight, and so does the state file), answered after that. */
static void
test_raise_saved_then_applied(void **state)
{
    struct fx *f = fx_new(state, sizeof(struct fx), false, 1, ",\"weight\": 20");
    char *argv[] = { (char *)h_bin("cutoverctl"), "-s", NULL, "weight", "60", NULL };
    struct adm_store_entry e;
    struct load l;
    pthread_t th;
    long long t0, seen_ms, dt;
    double w;
    pid_t ctl;

    start_slow(f);
    argv[2] = f->sock;
    load_start(f, &l, &th);
    h_sleep_ms(200);
    t0 = h_now_ms();
    ctl = h_spawn(argv, NULL);
    assert_true(ctl > 0);
    /* while its save is on its way: the old weight, in effect and on disk */
    h_sleep_ms(SLOW_MS / 3);
    w = fx_weight(f);
    seen_ms = h_now_ms() - t0;
    e = fx_state_file(f, "web");
    fprintf(stderr, "%lld ms after the raise was sent: status weight %.2f, the state file "
            "%u bp\n", seen_ms, w, e.weight_bp);
    if (seen_ms < SLOW_MS && w != 20)
        fail_msg("status shows weight %.2f %lld ms after the raise was sent, before its save "
                 "could be done (%d ms at least)", w, seen_ms, SLOW_MS);
    if (w != 20 && e.weight_bp != 6000)
        fail_msg("weight %.2f applied while the state file holds %u bp", w, e.weight_bp);
    assert_int_equal(h_wait_exit(ctl, 10000), 0);
    dt = h_now_ms() - t0;
    fprintf(stderr, "weight 60 answered in %lld ms\n", dt);
    if (dt < SLOW_MS)
        fail_msg("weight 60 answered in %lld ms, before its save (%d ms at least)", dt,
                 SLOW_MS);
    fx_expect_state(f, "steady", 60);
    h_sleep_ms(200);
    load_check(&l, th, "a raise was saved");

    expect_on_disk(f, 6000);
    fx_stop_clean(f);                  /* exits 0: under the sanitizers, no leak or error */
}

/* An automatic rollback (new answers 500) while requests go on: applied at
 * once, written after; its log line only once the state file and the audit
 * log hold it. */
static void
test_auto_rollback_logged_once_saved(void **state)
{
    /* the shield off: the 500s from new are what breaches */
    struct fx *f = fx_new(state, sizeof(struct fx), false, 1, ",\"weight\": 50, "
                          "\"rollback\": {\"window_s\": 3, \"min_requests\": 10, "
                          "\"max_error_rate\": 0.2}, \"shield\": {\"enabled\": false}");
    static const char line[] = "AUTOMATIC ROLLBACK (error_rate)";
    struct adm_store_entry e;
    struct load l;
    pthread_t th;
    long long t0, applied_ms, logged_ms;
    char *log;
    bool logged;
    long gen;

    start_slow(f);
    assert_int_equal(h_backend_set(f->port[1][0], "error_rate=1&seed=1"), 0);
    t0 = h_now_ms();
    load_start(f, &l, &th);
    /* the rollback in effect: status (answered on the loop) says so */
    while (fx_weight(f) != 0) {
        if (h_now_ms() - t0 > 5000)
            fail_msg("no rollback within 5 s");
        h_sleep_ms(10);
    }
    applied_ms = h_now_ms() - t0;
    log = h_read_file(f->log);
    assert_non_null(log);
    logged = strstr(log, line) != NULL;
    free(log);
    e = fx_state_file(f, "web");
    fprintf(stderr, "rollback seen in effect after %lld ms: logged %s, the state file %u bp "
            "%s\n", applied_ms, logged ? "yes" : "no", e.weight_bp,
            adm_state_names[e.state]);
    if (logged && (e.weight_bp != 0 || e.state != ADM_ST_ROLLED_BACK))
        fail_msg("the rollback's line is logged while the state file holds %u bp %s",
                 e.weight_bp, adm_state_names[e.state]);
    /* in effect before it could be on disk: applied first, written second */
    if (logged)
        fail_msg("the rollback was seen in effect only once its line was logged: its "
                 "writes held the loop");
    assert_int_equal(h_wait_log(f->log, line, 10000), 0);
    logged_ms = h_now_ms() - t0;
    e = fx_state_file(f, "web");
    assert_int_equal(e.weight_bp, 0);
    assert_int_equal(e.state, ADM_ST_ROLLED_BACK);
    gen = (long)e.generation;
    assert_int_equal(fx_audit_covers(f, "web", (uint64_t)gen), 0);
    fprintf(stderr, "the rollback's line logged after %lld ms\n", logged_ms);
    if (logged_ms - applied_ms < SLOW_MS / 2)
        fail_msg("the line came %lld ms after the rollback was in effect: its writes take "
                 "%d ms at least", logged_ms - applied_ms, SLOW_MS);
    h_sleep_ms(200);
    load_check(&l, th, "an automatic rollback was saved");
    assert_int_equal(fx_status_long(f, "generation"), gen);
    fx_stop_clean(f);                  /* exits 0: under the sanitizers, no leak or error */
}

/* A plan's step (a raise by "auto") is saved on the writer thread too, and
 * applied once saved: requests are answered meanwhile, and whenever status
 * shows the step the state file holds it. */
static void
test_plan_step_saved_then_applied(void **state)
{
    struct fx *f = fx_new(state, sizeof(struct fx), false, 1,
                          ",\"plan\": {\"steps\": [10, 50], \"bake_s\": 1}, "
                          "\"rollback\": {\"window_s\": 1, \"min_requests\": 5}");
    struct adm_store_entry e;
    struct load l;
    pthread_t th;
    long long t0;
    double w;
    long gen;

    start_slow(f);
    load_start(f, &l, &th);
    h_sleep_ms(200);
    assert_true(timed_ctl(f, "plan", "start") >= SLOW_MS);
    /* the step to 50 % once step 1 baked 1 s with 5 requests on new */
    t0 = h_now_ms();
    while ((w = fx_weight(f)) != 50) {
        assert_true(w == 10);
        e = fx_state_file(f, "web");
        if (h_now_ms() - t0 > 15000)
            fail_msg("no step to 50 %% within 15 s (weight %.2f, the state file %u bp)", w,
                     e.weight_bp);
        h_sleep_ms(20);
    }
    e = fx_state_file(f, "web");
    fprintf(stderr, "the step to 50 %% seen after %lld ms, the state file %u bp\n",
            h_now_ms() - t0, e.weight_bp);
    assert_int_equal(e.weight_bp, 5000);       /* saved before it was applied */
    h_sleep_ms(200);
    load_check(&l, th, "a plan's step was saved");
    gen = fx_status_long(f, "generation");
    assert_int_equal(e.generation, (uint64_t)gen);
    assert_int_equal(fx_audit_covers(f, "web", (uint64_t)gen), 0);
    fx_stop_clean(f);                  /* exits 0: under the sanitizers, no leak or error */
}

/* Saves queued behind a slow one are coalesced: three lowerings sent while
 * the first one's save runs cost one more save, not three (each save is
 * two fsyncs, each audit entry one: SLOW_MS each), and every one of them
 * is answered once the file holds it. The three set the same weight, so
 * that whatever order they arrive in, each is a lowering (a raise would
 * wait for the saves before it). */
static void
test_queued_saves_coalesced(void **state)
{
    struct fx *f = fx_new(state, sizeof(struct fx), false, 1, ",\"weight\": 80");
    static const char *const weights[] = { "70", "40", "40", "40" };
    char *argv[4][6];
    pid_t ctl[4];
    long long t0, dt;
    int i;

    start_slow(f);
    t0 = h_now_ms();
    for (i = 0; i < 4; i++) {
        argv[i][0] = (char *)h_bin("cutoverctl");
        argv[i][1] = "-s";
        argv[i][2] = f->sock;
        argv[i][3] = "weight";
        argv[i][4] = (char *)weights[i];
        argv[i][5] = NULL;
        ctl[i] = h_spawn(argv[i], NULL);
        assert_true(ctl[i] > 0);
        if (i == 0)
            h_sleep_ms(SLOW_MS / 2);   /* its save runs: the others queue behind it */
    }
    for (i = 0; i < 4; i++) {
        assert_int_equal(h_wait_exit(ctl[i], 15000), 0);
        fprintf(stderr, "weight %s answered after %lld ms\n", weights[i], h_now_ms() - t0);
    }
    dt = h_now_ms() - t0;
    /* one at a time: 4 x (save + entry) = 12 x SLOW_MS; coalesced: the
     * first save, then one for the three queued, and the four entries */
    fprintf(stderr, "4 lowerings, 3 of them queued, answered in %lld ms (%d without "
            "coalescing, %d with)\n", dt, 12 * SLOW_MS, 8 * SLOW_MS);
    if (dt >= 10 * SLOW_MS)
        fail_msg("4 lowerings took %lld ms: their saves were not coalesced", dt);
    assert_int_equal(fx_status_long(f, "generation"), 4);
    expect_on_disk(f, (uint32_t)(fx_weight(f) * 100 + 0.5));
    fx_stop_clean(f);                  /* exits 0: under the sanitizers, no leak or error */
}

/* The audit entries of events that changed no weight, made by a command
 * (a server's admin state), are written on the writer thread too: each
 * reply comes once its entry is written (the log holds it right after),
 * requests answered meanwhile. */
static bool
is_server_entry(const json_t *e)
{
    return strncmp(json_string_value(json_object_get(e, "action")), "server_", 7) == 0;
}

static void
test_event_entry_written_off_the_loop(void **state)
{
    struct fx *f = fx_new(state, sizeof(struct fx), false, 2, ",\"weight\": 50");
    static const char *const actions[] = { "drain", "enable" };
    char addr[64], out[4096];
    struct load l;
    pthread_t th;
    json_t *audit;
    long long t0, dt;
    size_t i;

    start_slow(f);
    load_start(f, &l, &th);
    h_sleep_ms(200);
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", f->port[0][1]);
    for (i = 0; i < 2; i++) {
        t0 = h_now_ms();
        assert_int_equal(h_ctl(f->sock, out, sizeof(out), "server", actions[i], "legacy", addr,
                               (char *)NULL), 0);
        dt = h_now_ms() - t0;
        fprintf(stderr, "server %s answered in %lld ms\n", actions[i], dt);
        if (dt < SLOW_MS)
            fail_msg("server %s answered in %lld ms, before its audit entry (%d ms at least)",
                     actions[i], dt, SLOW_MS);
        audit = fx_audit(f, is_server_entry);
        assert_int_equal(json_array_size(audit), i + 1);
        json_decref(audit);
    }
    h_sleep_ms(200);
    load_check(&l, th, "a server's admin state was audited");
    fx_stop_clean(f);                  /* exits 0: under the sanitizers, no leak or error */
}

/* A test over the fleet's store: its fixture, then the private cluster. */
struct slow_fleet {
    struct fx fx;                /* first: fx_new() */
    struct pgh *pg;
};

static int
fleet_teardown(void **state)
{
    struct slow_fleet *sf = *state;
    struct pgh *pg = sf != NULL ? sf->pg : NULL;

    fx_teardown(state);
    pgh_free(pg);
    return 0;
}

/* Runs cutoverctl --json weight <percent> on <f>: its reply, how long it
 * took in <*ms>. */
static json_t *
timed_weight(struct fx *f, const char *percent, long long *ms)
{
    long long t0 = h_now_ms();
    json_t *r = h_ctl_json(f->sock, "weight", percent, (char *)NULL);

    *ms = h_now_ms() - t0;
    if (r == NULL || h_ctl_status() != 0)
        fail_msg("weight %s: %s", percent, h_ctl_err());
    return r;
}

/* Over the fleet's store (a private PostgreSQL cluster, whose files are not
 * under the slow directory): a lowering by command answers once its row is
 * committed and its local save is done; a raise once committed, applied,
 * cached and audited; requests are answered meanwhile. */
static void
test_fleet_changes_off_the_loop(void **state)
{
    struct slow_fleet *sf = fx_new(state, sizeof(*sf), false, 1, ",\"weight\": 50");
    struct fx *f = &sf->fx;
    struct load l;
    pthread_t th;
    json_t *r;
    long long dt;

    assert_non_null(sf->pg = pgh_start());
    snprintf(f->top_extra, sizeof(f->top_extra), ", \"store\": {\"postgres\": {\"conninfo\": "
             "\"%s\", \"fleet\": \"f\", \"instance\": \"i0\"}}", pgh_conninfo(sf->pg));
    assert_int_equal(fx_write_conf(f), 0);
    start_slow(f);
    load_start(f, &l, &th);
    h_sleep_ms(200);

    r = timed_weight(f, "20", &dt);
    fprintf(stderr, "fleet: weight 20 (a lowering) answered in %lld ms, store %s\n", dt,
            json_string_value(json_object_get(r, "store")));
    assert_string_equal(json_string_value(json_object_get(r, "store")), "written");
    json_decref(r);
    if (dt < SLOW_MS)
        fail_msg("the lowering answered in %lld ms, before its local save (%d ms at least)",
                 dt, SLOW_MS);
    r = timed_weight(f, "60", &dt);
    fprintf(stderr, "fleet: weight 60 (a raise) answered in %lld ms\n", dt);
    assert_true(json_is_true(json_object_get(r, "ok")));
    json_decref(r);
    if (dt < SLOW_MS)
        fail_msg("the raise answered in %lld ms, before its local save (%d ms at least)",
                 dt, SLOW_MS);
    fx_expect_state(f, "steady", 60);
    h_sleep_ms(200);
    load_check(&l, th, "changes over the fleet's store were saved");

    expect_on_disk(f, 6000);
    fx_stop_clean(f);                  /* exits 0: under the sanitizers, no leak or error */
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
        cmocka_unit_test_teardown(test_raise_saved_then_applied, fx_teardown),
        cmocka_unit_test_teardown(test_auto_rollback_logged_once_saved, fx_teardown),
        cmocka_unit_test_teardown(test_plan_step_saved_then_applied, fx_teardown),
        cmocka_unit_test_teardown(test_queued_saves_coalesced, fx_teardown),
        cmocka_unit_test_teardown(test_event_entry_written_off_the_loop, fx_teardown),
        cmocka_unit_test_teardown(test_fleet_changes_off_the_loop, fleet_teardown),
        cmocka_unit_test_teardown(test_sigterm_finishes_the_save, fx_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
