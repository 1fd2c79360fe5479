/*
 * 36_fleet_fast: how soon a fleet's change is everywhere (docs/fleet.md),
 * three cutoverd instances on a private PostgreSQL cluster
 * (tests/harness/pg.h):
 *   - a lowering (weight, rollback; socket and HTTP endpoint) is applied on
 *     its instance first, but its reply comes once the row is committed:
 *     read from the database right after the reply, the row holds it;
 *   - with the database stopped (SIGSTOP of the whole cluster) a rollback
 *     still answers, within the reply's deadline, that it is applied here
 *     and queued; it is in effect at once, and everywhere once the
 *     database is back;
 *   - a breach on one instance is acted on when it happens, not at the
 *     policy tick: the instances run with policy_tick_ms 60000, so the tick
 *     never comes during the test, and the fleet's leader cannot decide it
 *     either (the other instances' successes keep the fleet's sum under the
 *     threshold); only the prompt evaluation of the breaching instance can
 *     roll it back, and the others follow from its notification. The
 *     bounds are generous (the bench measures: make bench-fleet); without
 *     the prompt evaluation neither could hold.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <sys/wait.h>
#include <cmocka.h>

#include <libpq-fe.h>

#include "tests/harness/pg.h"
#include "tests/integration/fleet_fixture.h"

#define N FLEET_N
#define TOK_OPERATE "operate-secret-0123456789"

/* The service's row as "weight_bp state generation". */
static const char *
row(struct fleet *fl, char *buf, size_t len)
{
    if (pgh_query(fl->pg, "SELECT weight_bp || ' ' || state || ' ' || generation FROM "
                  "cutover_service WHERE fleet = 'f' AND name = 'web'", buf, len) != 0)
        snprintf(buf, len, "(none)");
    return buf;
}

static void
raise_all(struct fleet *fl, const char *percent)
{
    char out[4096];
    double w = strtod(percent, NULL);
    int i;

    if (fx_ctl(&fl->fx[0], out, "weight", percent) != 0)
        fail_msg("weight %s: %s", percent, h_ctl_err());
    for (i = 0; i < N; i++)
        assert_true(fleet_wait_state(fl, i, w, "steady", 3000));
}

/* A lowering answers once the row is in the database: read right after the
 * reply, the database has it (a raise always did: it is written first). */
static int
setup(void **state)
{
    static const struct fleet_opts o = {
        .fleet = "f", .service_extra = ", \"rollback\": {\"min_requests\": 5, \"window_s\": 60}",
        .top_extra = ", \"policy_tick_ms\": 60000", .tokens = "ops operate " TOK_OPERATE "\n",
        .seed = 36, .poll_ms = 5,
    };

    return fleet_setup(state, &o);
}

static void
test_lowering_reply_after_commit(void **state)
{
    struct fleet *fl = *state;
    char out[4096], buf[128], want[128], body[256];
    json_t *r, *j;
    int i, k, status;

    for (k = 0; k < 5; k++) {
        raise_all(fl, "50");
        /* cutoverctl on instance k % 3's socket */
        r = h_ctl_json(fl->fx[k % N].sock, "weight", "10", (char *)NULL);
        assert_non_null(r);
        assert_int_equal(h_ctl_status(), 0);
        snprintf(want, sizeof(want), "1000 steady %lld",
                 (long long)json_integer_value(json_object_get(r, "generation")));
        assert_string_equal(row(fl, buf, sizeof(buf)), want);
        assert_string_equal(json_string_value(json_object_get(r, "store")), "written");
        json_decref(r);
        for (i = 0; i < N; i++)        /* the next raise starts from it */
            assert_true(fleet_wait_state(fl, i, 10, "steady", 3000));
    }
    /* a rollback, printed as an operator sees it */
    raise_all(fl, "50");
    assert_int_equal(fx_ctl(&fl->fx[1], out, "rollback", "--reason", "fast"), 0);
    assert_non_null(strstr(out, "web: weight"));
    assert_null(strstr(out, "store:"));            /* no note: it is written */
    assert_int_equal(strncmp(row(fl, buf, sizeof(buf)), "0 rolled_back ", 14), 0);
    for (i = 0; i < N; i++)
        assert_true(fleet_wait_state(fl, i, 0, "rolled_back", 3000));
    /* the HTTP endpoint waits the same way */
    raise_all(fl, "40");
    snprintf(body, sizeof(body), "{\"service\": \"web\", \"percent\": 20}");
    status = fx_admin_call(&fl->fx[2], "POST", "/v1/weight", TOK_OPERATE, body, &j);
    assert_int_equal(status, 200);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "store")), "written");
    snprintf(want, sizeof(want), "2000 steady %lld",
             (long long)json_integer_value(json_object_get(j, "generation")));
    json_decref(j);
    assert_string_equal(row(fl, buf, sizeof(buf)), want);
    for (i = 0; i < N; i++)
        assert_true(fleet_wait_state(fl, i, 20, "steady", 3000));
}

/* The database stopped (every process of the cluster SIGSTOPped): a
 * rollback answers within its deadline, applied here and queued; the
 * database back, it is written and every instance applies it. */
static void
test_rollback_store_stopped(void **state)
{
    struct fleet *fl = *state;
    char out[4096], buf[128], written[256];
    long long t0, took;
    int rc, i;

    raise_all(fl, "30");
    assert_int_equal(pgh_pause(fl->pg), 0);
    t0 = h_now_ms();
    rc = fx_ctl(&fl->fx[1], out, "rollback", "--reason", "db stopped");
    took = h_now_ms() - t0;
    /* printed before asserting: the note is what an operator reads */
    fprintf(stderr, "rollback with the database stopped: %lld ms, exit %d: %s", took, rc, out);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "store: applied here"));
    assert_non_null(strstr(out, "queued"));
    /* the deadline (2 s), or the store's statement timeout (2 s), plus
     * cutoverctl's own start */
    assert_true(took < 3500);
    /* in effect here, whatever the database */
    assert_true(fleet_wait_state(fl, 1, 0, "rolled_back", 100));
    assert_int_equal(pgh_resume(fl->pg), 0);
    for (i = 0; i < N; i++)
        assert_true(fleet_wait_state(fl, i, 0, "rolled_back", 15000));
    assert_int_equal(strncmp(row(fl, buf, sizeof(buf)), "0 rolled_back ", 14), 0);
    /* i1 settled too: its write answered after all, or it reconnected and
     * reconciled (else a later raise could meet its latch, which wins) */
    snprintf(written, sizeof(written), "written to the fleet's store: weight 0 bp, state "
             "rolled_back, generation %s", buf + 14);
    for (t0 = h_now_ms(); h_now_ms() - t0 < 15000; h_sleep_ms(20)) {
        char *log = h_read_file(fl->fx[1].log);
        bool settled = log != NULL && (strstr(log, "reconcile") != NULL
                                       || strstr(log, written) != NULL);

        free(log);
        if (settled)
            break;
    }
    assert_true(h_now_ms() - t0 < 15000);
}

/* A breach on i0 rolls back i0 within a bound the 60 s tick cannot meet,
 * and i1 and i2 from its notification. */
static void
test_breach_prompt(void **state)
{
    struct fleet *fl = *state;
    struct h_resp r;
    long long t5, a_ms = -1, bc_ms = -1, end;
    char buf[32];
    int i, k;

    raise_all(fl, "100");
    /* successes on new at i1 and i2: the fleet's sum stays far under the
     * error rate when i0 breaches (5 errors of 205), so the leader cannot
     * be the one that rolls back */
    for (i = 1; i < N; i++) {
        for (k = 0; k < 100; k++) {
            assert_int_equal(h_get(fl->fx[i].proxy_port, "/", NULL, &r), 0);
            assert_int_equal(r.status, 200);
            h_resp_free(&r);
        }
    }
    h_sleep_ms(2500);                  /* published (once a second) before the errors */
    assert_int_equal(h_backend_set(fl->fx[0].port[1][0], "error_rate=1"), 0);
    /* five requests, each an error on new (the client may get legacy's
     * answer: the canary shield replays a failed GET there) */
    for (k = 0; k < 5; k++) {
        assert_int_equal(h_get(fl->fx[0].proxy_port, "/", NULL, &r), 0);
        h_resp_free(&r);
    }
    t5 = h_now_ms();                   /* the answer that made the 5th error */
    end = t5 + 3000;
    while ((a_ms < 0 || bc_ms < 0) && h_now_ms() < end) {
        if (a_ms < 0 && strcmp(fx_state(&fl->fx[0], buf, sizeof(buf)), "rolled_back") == 0)
            a_ms = h_now_ms() - t5;
        if (bc_ms < 0 && strcmp(fx_state(&fl->fx[1], buf, sizeof(buf)), "rolled_back") == 0
            && strcmp(fx_state(&fl->fx[2], buf, sizeof(buf)), "rolled_back") == 0)
            bc_ms = h_now_ms() - t5;
    }
    fprintf(stderr, "breach on i0: i0 rolled back after %lld ms, i1 and i2 after %lld ms "
            "(status polled)\n", a_ms, bc_ms);
    h_backend_set(fl->fx[0].port[1][0], "reset=1");
    assert_true(a_ms >= 0 && a_ms < 1000);
    assert_true(bc_ms >= 0 && bc_ms < 1500);
    /* acted on by i0 itself (actor auto, its own log line), not the leader */
    assert_int_equal(h_wait_log(fl->fx[0].log, "service web: AUTOMATIC ROLLBACK (error_rate): "
                                "error rate 1.000 > 0.050 over 5 requests (5 errors)", 1000), 0);
    assert_true(fleet_wait_state(fl, 0, 0, "rolled_back", 100));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lowering_reply_after_commit),
        cmocka_unit_test(test_rollback_store_stopped),
        cmocka_unit_test(test_breach_prompt),
    };

    return cmocka_run_group_tests(tests, setup, fleet_teardown);
}
