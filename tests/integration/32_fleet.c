/*
 * 32_fleet: three cutoverd instances sharing one fleet through a private
 * PostgreSQL cluster (tests/harness/pg.h; never a system one), the store of
 * docs/fleet.md:
 *   - a weight set on one instance moves all three; the rows and the
 *     fleet's audit table hold it with the instance that wrote it;
 *   - two operators racing on two instances: one success, one refusal that
 *     names the generation (made deterministic by holding the row locked
 *     until both updates wait on it);
 *   - the database killed under load: no request fails, a raise is refused
 *     with "store unreachable", a rollback applies at once on its instance;
 *     after the restart the rollback is in the database and on every
 *     instance (reconcile: the latch wins) and in the fleet's audit;
 *   - every instance restarted: the state comes from the database (changed
 *     there while all were stopped), not from their caches;
 *   - a wrong password and an unknown database stop the start with an error
 *     naming the store; start_without with a cache starts anyway;
 *   - a schema newer than the binary is refused naming both versions.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <sys/wait.h>
#include <cmocka.h>

#include <libpq-fe.h>

#include "tests/harness/load.h"
#include "tests/harness/pg.h"
#include "tests/integration/fleet_fixture.h"

#define N FLEET_N
#define TOK_OPERATE "operate-secret-0123456789"

static int
setup(void **state)
{
    static const struct fleet_opts o = {
        .fleet = "t", .tokens = "ops operate " TOK_OPERATE "\n", .seed = 7, .poll_ms = 20,
    };

    return fleet_setup(state, &o);
}

static void
test_propagation(void **state)
{
    struct fleet *fl = *state;
    char out[4096], buf[256];
    int i;

    assert_int_equal(fx_ctl(&fl->fx[0], out, "weight", "10"), 0);
    for (i = 0; i < N; i++)
        assert_true(fleet_wait_state(fl, i, 10, "steady", 2000));
    assert_string_equal(fleet_db_value(fl, "SELECT weight_bp || ' ' || state || ' ' || updated_by "
                                 "FROM cutover_service WHERE fleet = 't' AND name = 'web'",
                                 buf, sizeof(buf)), "1000 steady i0");
    /* the fleet's audit: the entry with the instance that made it */
    assert_string_equal(fleet_db_value(fl, "SELECT instance || ' ' || (entry->>'action') FROM "
                                 "cutover_audit WHERE fleet = 't' ORDER BY id DESC LIMIT 1",
                                 buf, sizeof(buf)), "i0 weight");
    /* `cutoverctl audit` on another instance shows it */
    assert_int_equal(fx_ctl(&fl->fx[2], out, "audit"), 0);
    assert_non_null(strstr(out, "weight"));
    {
        json_t *st = fx_status_at(&fl->fx[1], "%s", "generation");

        json_decref(st);
    }
}

/* Two operators race: the row is held locked until both updates wait on
 * it, so each started from the same generation; the first to get the lock
 * wins and the other's compare-and-set finds a newer generation. */
static void
test_race(void **state)
{
    struct fleet *fl = *state;
    PGconn *lock = fleet_db(fl);
    PGresult *r;
    char logs[2][600], buf[64], url[128], *t;
    pid_t pid[2];
    int i, ok = 0, refused = 0;
    long long end;

    PQclear(PQexec(lock, "BEGIN"));
    r = PQexec(lock, "SELECT 1 FROM cutover_service WHERE fleet = 't' FOR UPDATE");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    PQclear(r);
    /* one operator on i0's socket, the other on i1's HTTP endpoint: both
     * ways wait for the store's answer (curl -f exits 22 on the 409) */
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/weight", fl->fx[1].admin_port);
    for (i = 0; i < 2; i++) {
        char *ctl[] = { (char *)h_bin("cutoverctl"), "-s", fl->fx[0].sock, "weight", "20",
                        NULL };
        char *curl[] = { "curl", "-sS", "-f", "--max-time", "10", "-H",
                         "Authorization: Bearer " TOK_OPERATE, "-X", "POST", "-d",
                         "{\"service\": \"web\", \"percent\": 30}", url, NULL };

        snprintf(logs[i], sizeof(logs[i]), "%s/race%d.log", fl->fx[i].dir, i);
        pid[i] = h_spawn(i == 0 ? ctl : curl, logs[i]);
        assert_true(pid[i] > 0);
    }
    /* both updates wait for the lock (bounded) */
    end = h_now_ms() + 5000;
    while (strcmp(fleet_db_value(fl, "SELECT count(*) FROM pg_stat_activity WHERE "
                           "application_name = 'cutoverd' AND wait_event_type = 'Lock'",
                           buf, sizeof(buf)), "2") != 0 && h_now_ms() < end)
        h_sleep_ms(10);
    if (strcmp(buf, "2") != 0) {
        for (i = 0; i < 2; i++) {
            t = h_read_file(logs[i]);
            fprintf(stderr, "operator %d: %s\n", i, t != NULL ? t : "(no log)");
            free(t);
        }
    }
    assert_string_equal(buf, "2");
    /* neither operator has had an answer yet: both wait for the store */
    for (i = 0; i < 2; i++) {
        siginfo_t si = { 0 };

        assert_int_equal(waitid(P_PID, (id_t)pid[i], &si, WEXITED | WNOHANG | WNOWAIT), 0);
        if (si.si_pid != 0)
            fail_msg("operator %d answered before the store committed: %s", i,
                     h_read_file(logs[i]));
    }
    PQclear(PQexec(lock, "COMMIT"));
    PQfinish(lock);
    for (i = 0; i < 2; i++) {
        int st = h_wait_exit(pid[i], 5000);

        t = h_read_file(logs[i]);
        assert_non_null(t);
        if (st == 0) {
            ok++;
        } else {
            refused++;
            /* curl -f prints only the status: the refusal's text is in the log */
            if (strstr(t, i == 0 ? "changed meanwhile" : "409") == NULL)
                fail_msg("refusal without the reason: %s", t);
        }
        free(t);
    }
    assert_int_equal(ok, 1);
    assert_int_equal(refused, 1);
}

struct outage {
    struct fleet *fl;
    int step;
    int raise_rc, rollback_rc;
    char raise_err[512];
};

/* The load's tick: at 300 ms the database dies, at 600 ms a raise on i0 is
 * refused and a rollback on i1 applied, at 1200 ms the database restarts. */
static void
outage_tick(void *arg, long long ms)
{
    struct outage *o = arg;
    char out[2048];

    if (o->step == 0 && ms >= 300) {
        assert_int_equal(pgh_kill(o->fl->pg), 0);
        o->step = 1;
    } else if (o->step == 1 && ms >= 600) {
        o->raise_rc = fx_ctl(&o->fl->fx[0], out, "weight", "60");
        snprintf(o->raise_err, sizeof(o->raise_err), "%s", h_ctl_err());
        o->rollback_rc = fx_ctl(&o->fl->fx[1], out, "rollback", "--reason", "outage");
        o->step = 2;
    } else if (o->step == 2 && ms >= 1200) {
        assert_int_equal(pgh_restart(o->fl->pg), 0);
        o->step = 3;
    }
}

static void
test_outage(void **state)
{
    struct fleet *fl = *state;
    struct outage o = { .fl = fl };
    struct h_load_conf lc = {
        .port = fl->fx[0].proxy_port, .conns = 8, .gap_min_ms = 1, .gap_max_ms = 5,
        .requests = 100000, .duration_ms = 2000, .seed = 32, .tick = outage_tick,
        .tick_ms = 20, .arg = &o,
    };
    struct h_load_stats st;
    char out[2048], buf[128];
    int i;

    assert_int_equal(fx_ctl(&fl->fx[0], out, "weight", "50"), 0);
    for (i = 0; i < N; i++)
        assert_true(fleet_wait_state(fl, i, 50, "steady", 2000));
    assert_int_equal(h_load_run(&lc, &st), 0);
    h_load_print("outage", &st);
    assert_int_equal(o.step, 3);
    /* no request failed because of it */
    assert_true(st.answered > 100);
    assert_int_equal(st.answered, st.sent);
    assert_int_equal(h_load_class(&st, 5), 0);
    assert_int_equal(st.reset + st.closed_clean + st.malformed + st.unanswered, 0);
    /* the raise was refused, the rollback applied at once */
    assert_int_equal(o.raise_rc, 1);
    assert_non_null(strstr(o.raise_err, "store unreachable"));
    assert_int_equal(o.rollback_rc, 0);
    /* back: the rollback is in the database and everywhere */
    for (i = 0; i < N; i++)
        assert_true(fleet_wait_state(fl, i, 0, "rolled_back", 15000));
    assert_string_equal(fleet_db_value(fl, "SELECT weight_bp || ' ' || state FROM cutover_service "
                                 "WHERE fleet = 't'", buf, sizeof(buf)), "0 rolled_back");
    assert_string_equal(fleet_db_value(fl, "SELECT count(*) FROM cutover_audit WHERE fleet = 't' "
                                 "AND instance = 'i1' AND entry->>'action' = 'rollback' AND "
                                 "entry->>'reason' = 'outage'", buf, sizeof(buf)), "1");
    assert_string_equal(fleet_db_value(fl, "SELECT count(*) FROM cutover_audit WHERE fleet = 't' "
                                 "AND instance = 'i1' AND entry->>'action' = 'reconcile'",
                                 buf, sizeof(buf)), "1");
    assert_int_equal(h_wait_log(fl->fx[1].log, "reconcile", 1000), 0);
}

static void
test_restart_all(void **state)
{
    struct fleet *fl = *state;
    PGconn *c;
    int i;

    for (i = 0; i < N; i++)
        assert_int_equal(h_stop(fl->fx[i].proxy, SIGTERM, 5000), 0);
    /* changed in the database while every instance is stopped */
    c = fleet_db(fl);
    PQclear(PQexec(c, "UPDATE cutover_service SET weight_bp = 2500, state = 'steady', "
                      "generation = generation + 1 WHERE fleet = 't'"));
    PQfinish(c);
    for (i = 0; i < N; i++)
        assert_int_equal(fleet_start(fl, i), 0);
    for (i = 0; i < N; i++)
        assert_true(fleet_wait_state(fl, i, 25, "steady", 2000));
}

static void
test_bad_store(void **state)
{
    struct fleet *fl = *state;
    struct fx *f = &fl->fx[2];
    char pw[600], *log;
    int st;

    assert_int_equal(h_stop(f->proxy, SIGTERM, 5000), 0);
    assert_int_equal(pgh_exec(fl->pg, "CREATE ROLE app LOGIN PASSWORD 'right'"), 0);
    snprintf(pw, sizeof(pw), "%s/pg.pass", f->dir);
    assert_int_equal(h_write_file(pw, "wrong\n"), 0);
    snprintf(f->top_extra, sizeof(f->top_extra),
             ", \"store\": {\"postgres\": {\"conninfo\": \"host=%s port=%s dbname=postgres "
             "user=app\", \"password_file\": \"%s\", \"fleet\": \"t\", \"instance\": \"i2\"}}",
             pgh_host(fl->pg), pgh_port(fl->pg), pw);
    assert_int_equal(fx_write_conf(f), 0);
    {
        char *argv[] = { (char *)h_bin("cutoverd"), "-c", f->conf, NULL };

        unlink(f->log);
        f->proxy = h_spawn(argv, f->log);
        st = h_wait_exit(f->proxy, 10000);
        assert_int_equal(st, 1);
        log = h_read_file(f->log);
        assert_non_null(log);
        assert_non_null(strstr(log, "store.postgres (host="));
        assert_non_null(strstr(log, "password authentication failed for user"));
        assert_null(strstr(log, "right"));
        free(log);
    }
    /* start_without with the cache it has: starts, serving the cache */
    snprintf(f->top_extra + strlen(f->top_extra) - 2, 64, ", \"start_without\": true}}");
    assert_int_equal(fx_write_conf(f), 0);
    assert_int_equal(fx_start_proxy(f, 9), 0);
    assert_true(fleet_wait_state(fl, 2, 25, "steady", 2000));
    assert_int_equal(h_wait_log(f->log, "starting from the local cache", 1000), 0);
    assert_int_equal(h_stop(f->proxy, SIGTERM, 5000), 0);
    fleet_store_conf(fl, 2, NULL);
}

static void
test_newer_schema(void **state)
{
    struct fleet *fl = *state;
    struct fx *f = &fl->fx[2];
    char *log, cur[32], want[96], back[96];
    int st;

    /* the version this binary migrated to (its newest step) */
    fleet_db_value(fl, "SELECT version FROM cutover_schema_version", cur, sizeof(cur));
    snprintf(want, sizeof(want), "version 99, newer than this cutoverd's (%s)", cur);
    snprintf(back, sizeof(back), "UPDATE cutover_schema_version SET version = %s", cur);
    assert_int_equal(pgh_exec(fl->pg, "UPDATE cutover_schema_version SET version = 99"), 0);
    assert_int_equal(fx_write_conf(f), 0);
    {
        char *argv[] = { (char *)h_bin("cutoverd"), "-c", f->conf, NULL };
        char *targv[] = { (char *)h_bin("cutoverd"), "-c", f->conf, "-t", "--check-store",
                          NULL };

        unlink(f->log);
        f->proxy = h_spawn(argv, f->log);
        st = h_wait_exit(f->proxy, 10000);
        assert_int_equal(st, 1);
        log = h_read_file(f->log);
        assert_non_null(log);
        if (strstr(log, want) == NULL)
            fail_msg("%s", log);
        free(log);
        unlink(f->log);
        st = h_wait_exit(h_spawn(targv, f->log), 10000);
        assert_int_equal(st, 1);
        log = h_read_file(f->log);
        assert_non_null(strstr(log, "newer than this cutoverd's"));
        free(log);
    }
    assert_int_equal(pgh_exec(fl->pg, back), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_propagation),
        cmocka_unit_test(test_race),
        cmocka_unit_test(test_outage),
        cmocka_unit_test(test_restart_all),
        cmocka_unit_test(test_bad_store),
        cmocka_unit_test(test_newer_schema),
    };

    return cmocka_run_group_tests(tests, setup, fleet_teardown);
}
