/*
 * 33_fleet_leader: the fleet's windows and its leader (docs/fleet.md,
 * "Windows and the leader"), three cutoverd instances on a private
 * PostgreSQL cluster (tests/harness/pg.h; never a system one):
 *   - status --fleet: every instance with its address, last seen, applied
 *     generation and windows, one leader marked; status store.leader on
 *     the leader only, the same leader and 3 instances known to all; the
 *     metrics cutover_fleet_leader and cutover_fleet_instances; the rows;
 *     a "fleet" that is not a boolean is refused, the HTTP endpoint answers it;
 *   - a fleet rollback by summed windows: each instance alone under
 *     min_requests, the fleet over it: the leader rolls back through the
 *     normal automatic path (audited with the fleet's figures, in the
 *     fleet's audit once), every instance follows; then, with two
 *     instances stopped (SIGSTOP) so their rows still hold the errors of
 *     before, an operator's new weight is not rolled back again by them;
 *   - an instance's own breach rolls back at once, locally, then
 *     fleet-wide;
 *   - the leader killed (kill -9) while idle: another leads within 2 s;
 *   - the leader killed while its statement waits on a row lock the test
 *     holds (mid-query): its server process notices (client_connection_
 *     check_interval) and another leads within 2 s, the row still locked.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <libpq-fe.h>

#include "tests/harness/pg.h"
#include "tests/integration/fleet_fixture.h"

#define N FLEET_N
#define TAKEOVER_MS 2000         /* the contract: another leads within 2 s */
#define READ_TOKEN "reader-0123456789abcdef"

static const char rollback_conf[] =
    ", \"rollback\": {\"min_requests\": 30, \"max_error_rate\": 0.05, \"window_s\": 10}";

/* Sends <n> requests to instance <i> (answered, whatever the status). */
static void
drive(struct fleet *fl, int i, int n)
{
    int n5xx;

    fx_drive(&fl->fx[i], n, 0, NULL, &n5xx, NULL);
}

static void
set_new_errors(struct fleet *fl, bool on)
{
    int i;

    for (i = 0; i < N; i++)
        assert_int_equal(h_backend_set(fl->fx[i].port[1][0], on ? "error_rate=1&seed=3"
                                                                : "reset=1"), 0);
}

/* Everything status --fleet says, one leader marked. */
static int
setup(void **state)
{
    static const struct fleet_opts o = {
        .fleet = "t", .service_extra = rollback_conf, .tokens = "reader read " READ_TOKEN "\n",
        .seed = 33, .poll_ms = 20,
    };

    return fleet_setup(state, &o);
}

static void
test_status_fleet(void **state)
{
    struct fleet *fl = *state;
    json_t *root, *insts, *inst, *svc, *r;
    long long end;
    char out[8192], buf[128], *text, ldr[16];
    size_t k;
    int i, L;

    L = fleet_leader_of(fl, -1, 5000);
    assert_true(L >= 0);
    snprintf(ldr, sizeof(ldr), "i%d", L);
    /* every instance knows the leader and the 3 live instances it counted */
    end = h_now_ms() + 5000;
    for (i = 0; i < N; i++) {
        json_t *who, *n;

        for (;;) {
            who = fleet_status_at(fl, i, "store.leader_instance");
            n = fleet_status_at(fl, i, "store.fleet_instances");
            if ((json_is_string(who) && strcmp(json_string_value(who), ldr) == 0
                 && json_integer_value(n) == 3) || h_now_ms() > end)
                break;
            json_decref(who);
            json_decref(n);
            h_sleep_ms(50);
        }
        assert_true(json_is_string(who));
        assert_string_equal(json_string_value(who), ldr);
        assert_int_equal(json_integer_value(n), 3);
        json_decref(who);
        json_decref(n);
        text = fx_scrape(&fl->fx[i]);
        assert_true(fx_metric(text, "cutover_fleet_leader") == (i == L ? 1 : 0));
        assert_true(fx_metric(text, "cutover_fleet_instances") == 3);
        free(text);
    }
    assert_int_equal(fx_ctl(&fl->fx[0], out, "weight", "10"), 0);
    for (i = 0; i < N; i++)
        assert_true(fleet_wait_state(fl, i, 10, "steady", 2000));
    drive(fl, 1, 5);
    /* the JSON: every instance, its row as published within the second */
    end = h_now_ms() + 3000;
    for (;;) {
        root = h_ctl_json(fl->fx[2].sock, "status", "--fleet", (char *)NULL);
        assert_non_null(root);
        assert_int_equal(h_ctl_status(), 0);
        insts = h_json_at(root, "fleet.instances");
        assert_int_equal(json_array_size(insts), 3);
        inst = json_array_get(insts, 1);
        if (json_integer_value(h_json_at(inst, "services.0.new.requests"))
            + json_integer_value(h_json_at(inst, "services.0.legacy.requests")) == 5
            && json_integer_value(h_json_at(inst, "applied.web.weight_bp")) == 1000)
            break;
        assert_true(h_now_ms() < end);
        json_decref(root);
        h_sleep_ms(100);
    }
    assert_string_equal(json_string_value(h_json_at(root, "fleet.fleet")), "t");
    json_array_foreach(insts, k, inst) {
        snprintf(buf, sizeof(buf), "i%zu", k);
        assert_string_equal(json_string_value(json_object_get(inst, "instance")), buf);
        snprintf(buf, sizeof(buf), "127.0.0.1:%d", fl->fx[k].proxy_port);
        assert_string_equal(json_string_value(json_object_get(inst, "address")), buf);
        assert_int_equal(json_integer_value(json_object_get(inst, "pid")), fl->fx[k].proxy);
        assert_true(json_is_true(json_object_get(inst, "live")));
        assert_true(json_number_value(json_object_get(inst, "last_seen_ms")) < 3000);
        assert_non_null(strstr(json_string_value(json_object_get(inst, "last_seen")), "Z"));
        assert_true(json_is_true(json_object_get(inst, "leader")) == ((int)k == L));
        svc = h_json_at(inst, "services.0");
        assert_string_equal(json_string_value(json_object_get(svc, "name")), "web");
        assert_int_equal(json_integer_value(json_object_get(svc, "window_s")), 10);
        /* the applied generation: the one every instance has now */
        assert_int_equal(json_integer_value(json_object_get(svc, "generation")),
                         json_integer_value(h_json_at(inst, "applied.web.generation")));
        assert_true(json_is_number(h_json_at(svc, "legacy.p99_ms")));
    }
    json_decref(root);
    /* the human form */
    assert_int_equal(fx_ctl(&fl->fx[1], out, "status", "--fleet"), 0);
    snprintf(buf, sizeof(buf), "FLEET t: 3 instances, 3 live, leader %s", ldr);
    if (strstr(out, buf) == NULL || strstr(out, "LEADER") == NULL
        || strstr(out, "weight 10.00%  steady  legacy ") == NULL)
        fail_msg("status --fleet:\n%s", out);
    /* the rows in the database */
    assert_string_equal(fleet_db_value(fl, "SELECT count(*) FROM cutover_instance WHERE fleet = 't'",
                                 buf, sizeof(buf)), "3");
    assert_string_equal(fleet_db_value(fl, "SELECT instance FROM cutover_leader WHERE fleet = 't'",
                                 buf, sizeof(buf)), ldr);
    /* bad input: refused, precisely */
    assert_int_equal(fx_admin_call(&fl->fx[0], "POST", "/v1/status", READ_TOKEN,
                                   "{\"fleet\": \"yes\"}", &r), 409);
    assert_non_null(strstr(json_string_value(json_object_get(r, "error")),
                           "\"fleet\" must be a boolean, got a string"));
    json_decref(r);
    assert_int_equal(fx_admin_call(&fl->fx[0], "POST", "/v1/status", READ_TOKEN,
                                   "{\"fleet\": true, \"x\": 1}", &r), 409);
    assert_non_null(strstr(json_string_value(json_object_get(r, "error")), "\"x\""));
    json_decref(r);
    /* the HTTP endpoint holds the reply until the rows are read, as the socket does */
    assert_int_equal(fx_admin_call(&fl->fx[0], "POST", "/v1/status", READ_TOKEN,
                                   "{\"fleet\": true}", &r), 200);
    assert_int_equal(json_array_size(json_object_get(json_object_get(r, "fleet"),
                                                     "instances")), 3);
    json_decref(r);
    assert_int_equal(fx_ctl(&fl->fx[0], out, "audit", "--fleet"), 2);
}

/* The fleet's sum crosses min_requests where no instance alone does. */
static void
test_fleet_rollback_by_sum(void **state)
{
    struct fleet *fl = *state;
    char out[4096], buf[256], sql[512];
    json_t *reads0, *reads1, *n;
    int L, f[2], i, k;

    L = fleet_leader_of(fl, -1, 3000);
    assert_true(L >= 0);
    for (i = 0, k = 0; i < N; i++)
        if (i != L)
            f[k++] = i;
    assert_int_equal(fx_ctl(&fl->fx[0], out, "weight", "100"), 0);
    for (i = 0; i < N; i++)
        assert_true(fleet_wait_state(fl, i, 100, "steady", 2000));
    set_new_errors(fl, true);
    /* the leader's 6 published first, then 15 on each other instance:
     * 6, 15 and 15 are each under min_requests 30; the fleet has 36 */
    drive(fl, L, 6);
    h_sleep_ms(1100);
    drive(fl, f[0], 15);
    drive(fl, f[1], 15);
    for (i = 0; i < N; i++)
        assert_true(fleet_wait_state(fl, i, 0, "rolled_back", 5000));
    /* one rollback, by the leader, with the fleet's figures */
    assert_string_equal(fleet_db_value(fl, "SELECT count(*) FROM cutover_audit WHERE fleet = 't' "
                                 "AND entry->>'action' = 'rollback'", buf, sizeof(buf)), "1");
    snprintf(sql, sizeof(sql), "SELECT instance || ' ' || (entry->>'actor') || ' ' || "
             "(entry->'figures'->>'scope') || ' ' || (entry->'figures'->>'leader') || ' ' || "
             "(entry->'figures'->>'instances') || ' ' || (entry->'figures'->>'kind') FROM "
             "cutover_audit WHERE fleet = 't' AND entry->>'action' = 'rollback'");
    snprintf(out, sizeof(out), "i%d auto fleet i%d 3 error_rate", L, L);
    assert_string_equal(fleet_db_value(fl, sql, buf, sizeof(buf)), out);
    assert_true(atoi(fleet_db_value(fl, "SELECT entry->'figures'->>'requests' FROM cutover_audit "
                              "WHERE fleet = 't' AND entry->>'action' = 'rollback'", buf,
                              sizeof(buf))) >= 30);
    snprintf(buf, sizeof(buf), "FLEET AUTOMATIC ROLLBACK (error_rate) decided by the leader i%d",
             L);
    assert_int_equal(h_wait_log(fl->fx[L].log, buf, 1000), 0);
    snprintf(buf, sizeof(buf), "changed from the fleet (written by i%d): weight 100 -> 0", L);
    assert_int_equal(h_wait_log(fl->fx[f[0]].log, buf, 1000), 0);

    /* Two instances stopped: their rows keep 15 errors each (30, the
     * floor) at the rollback's generation. An operator sets the weight on
     * the leader: new's window starts afresh there, and their rows, older
     * than that generation, are left out of the sum while still live. */
    for (k = 0; k < 2; k++)
        assert_int_equal(kill(fl->fx[f[k]].proxy, SIGSTOP), 0);
    reads0 = fleet_status_at(fl, L, "store.leader_reads.count");
    assert_int_equal(fx_ctl(&fl->fx[L], out, "weight", "100"), 0);
    h_sleep_ms(1300);                  /* a read or two, the stopped rows live */
    reads1 = fleet_status_at(fl, L, "store.leader_reads.count");
    n = fleet_status_at(fl, L, "store.fleet_instances");
    assert_true(json_integer_value(reads1) > json_integer_value(reads0));
    assert_int_equal(json_integer_value(n), 3);
    json_decref(reads0);
    json_decref(reads1);
    json_decref(n);
    assert_true(fleet_wait_state(fl, L, 100, "steady", 10));
    for (k = 0; k < 2; k++)
        assert_int_equal(kill(fl->fx[f[k]].proxy, SIGCONT), 0);
    for (i = 0; i < N; i++)
        assert_true(fleet_wait_state(fl, i, 100, "steady", 5000));
    set_new_errors(fl, false);
}

/* One instance's own breach: rolled back there at once, then everywhere. */
static void
test_own_breach_fleet_wide(void **state)
{
    struct fleet *fl = *state;
    json_t *all, *e, *found;
    long long t0;
    char buf[128], sql[256];
    size_t k;
    int L, F, i;

    L = fleet_leader_of(fl, -1, 3000);
    assert_true(L >= 0);
    F = (L + 1) % N;
    for (i = 0; i < N; i++)
        assert_true(fleet_wait_state(fl, i, 100, "steady", 2000));
    assert_int_equal(h_backend_set(fl->fx[F].port[1][0], "error_rate=1&seed=4"), 0);
    drive(fl, F, 40);
    t0 = h_now_ms();
    for (i = 0; i < N; i++)
        assert_true(fleet_wait_state(fl, i, 0, "rolled_back", 2000));
    fprintf(stderr, "own breach on i%d: every instance at 0 within %lld ms\n", F,
            h_now_ms() - t0);
    /* decided there, by its own windows (no fleet figures), and written to
     * the fleet's audit by it */
    all = fx_audit(&fl->fx[F], NULL);
    found = NULL;
    json_array_foreach(all, k, e) {
        const char *actor = json_string_value(json_object_get(e, "actor"));
        const char *action = json_string_value(json_object_get(e, "action"));

        if (actor != NULL && action != NULL && strcmp(actor, "auto") == 0
            && strcmp(action, "rollback") == 0)
            found = e;
    }
    assert_non_null(found);
    assert_null(h_json_at(found, "figures.scope"));
    assert_true(json_integer_value(h_json_at(found, "figures.requests")) >= 30);
    json_decref(all);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM cutover_audit WHERE fleet = 't' AND "
             "instance = 'i%d' AND entry->>'actor' = 'auto' AND entry->>'action' = "
             "'rollback' AND entry->'figures'->>'scope' IS NULL", F);
    assert_string_equal(fleet_db_value(fl, sql, buf, sizeof(buf)), "1");
    assert_int_equal(h_backend_set(fl->fx[F].port[1][0], "reset=1"), 0);
}

/* Restarts killed instance <i>: it follows the new leader <L>. */
static void
restart_follower(struct fleet *fl, int i, int L)
{
    json_t *who;
    char want[8];

    assert_int_equal(fleet_start(fl, i), 0);
    snprintf(want, sizeof(want), "i%d", L);
    assert_int_equal(fleet_leader_of(fl, -1, 3000), L);
    /* its first publication may still find the killed leader's last row */
    who = fleet_status_at(fl, i, "store.leader_instance");
    for (int k = 0; k < 60 && !(json_is_string(who)
                                && strcmp(json_string_value(who), want) == 0); k++) {
        json_decref(who);
        h_sleep_ms(50);
        who = fleet_status_at(fl, i, "store.leader_instance");
    }
    assert_true(json_is_string(who));
    assert_string_equal(json_string_value(who), want);
    json_decref(who);
}

static void
test_failover_idle(void **state)
{
    struct fleet *fl = *state;
    long long t0, ms;
    int L, L2;

    L = fleet_leader_of(fl, -1, 3000);
    assert_true(L >= 0);
    assert_int_equal(kill(fl->fx[L].proxy, SIGKILL), 0);
    t0 = h_now_ms();
    ms = fleet_takeover(fl, L, t0, TAKEOVER_MS + 3000, "killed", &L2);
    fprintf(stderr, "leader i%d killed idle: i%d leads after %lld ms\n", L, L2, ms);
    assert_true(ms < TAKEOVER_MS);
    assert_int_equal(h_wait_exit(fl->fx[L].proxy, 5000), 128 + SIGKILL);
    restart_follower(fl, L, L2);
}

/* The leader's statement waits on the cutover_leader row, which the test
 * holds locked; the leader is killed while it waits. */
static void
test_failover_mid_query(void **state)
{
    struct fleet *fl = *state;
    PGconn *lock;
    char sql[256], buf[64], pid[32];
    long long t0, ms;
    int L, L2;

    L = fleet_leader_of(fl, -1, 3000);
    assert_true(L >= 0);
    /* the leader's fleet session: the one holding the advisory lock */
    fleet_lock_holder(fl, pid, sizeof(pid));
    assert_true(atoi(pid) > 0);
    /* its next read waits on the row (bounded) */
    lock = fleet_hold_leader_row(fl, pid);
    assert_int_equal(kill(fl->fx[L].proxy, SIGKILL), 0);
    t0 = h_now_ms();
    ms = fleet_takeover(fl, L, t0, TAKEOVER_MS + 3000, "killed", &L2);
    fprintf(stderr, "leader i%d killed mid-query: i%d leads after %lld ms\n", L, L2, ms);
    assert_true(ms < TAKEOVER_MS);
    /* the killed leader's server process ended, though its statement waited */
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", pid);
    assert_string_equal(fleet_db_value(fl, sql, buf, sizeof(buf)), "0");
    /* the row is still held: the takeover did not need it */
    assert_int_equal(PQtransactionStatus(lock), PQTRANS_INTRANS);
    PQclear(PQexec(lock, "COMMIT"));
    PQfinish(lock);
    assert_int_equal(h_wait_exit(fl->fx[L].proxy, 5000), 128 + SIGKILL);
    restart_follower(fl, L, L2);
}

/* SIGTERM: every instance stops cleanly (under the sanitizers, nothing
 * leaked), the leader's lock going with its session: the last one leads. */
static void
test_stop_clean(void **state)
{
    fleet_stop_clean(*state);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_fleet),
        cmocka_unit_test(test_fleet_rollback_by_sum),
        cmocka_unit_test(test_own_breach_fleet_wide),
        cmocka_unit_test(test_failover_idle),
        cmocka_unit_test(test_failover_mid_query),
        cmocka_unit_test(test_stop_clean),
    };

    return cmocka_run_group_tests(tests, setup, fleet_teardown);
}
