/*
 * Migration gates against real PostgreSQL: two private clusters, "legacy"
 * publishing to "new" by logical replication (publication/subscription),
 * started once for the group (tests/harness/pg.h), and the real cutoverd.
 * Each test uses tables of its own.
 *   - sql: a failing gate refuses an operator's raise, --force raises and
 *     the change's audit entry names the gate and its value; verdict
 *     changes are audited; status gates[], cutoverctl gates, metrics;
 *   - the plan holds while the subscription is disabled and rows pile up
 *     (compare and replication_lag gates fail), and walks on to promoted
 *     once it is enabled again;
 *   - a physical standby of legacy (pg_basebackup -R, streaming on its
 *     socket): max_lag_bytes and max_lag_ms fail while its replay is paused
 *     and the primary writes, and pass once it is resumed;
 *   - on_fail rollback rolls back, on_fail freeze freezes (raises refused,
 *     rollback still taken);
 *   - http: a URL on new's server and its status;
 *   - a hung database (SIGSTOP) fails the gate by its timeout and the
 *     daemon keeps answering; a stopped one fails it with the reason; a
 *     restarted daemon shows its gates unknown until checked again;
 *   - config errors name the JSON path;
 *   - cutoverd -t --check-gates: what each gate's databases are (a standby,
 *     a subscriber, the query's number), changing nothing, and every way a
 *     gate cannot work (unreachable, no number, a write, roles swapped or
 *     wrong, the heartbeat table unpublished or without its key).
 * Bounded waits for conditions, short intervals (200-500 ms).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/harness/pg.h"
#include "tests/integration/fixture.h"

static struct pgh *pg_legacy, *pg_new;

static int
group_setup(void **state)
{
    /* legacy is the source of every replica here: its commits reach them
     * within 10 ms (the harness turns synchronous_commit off, so a commit's
     * WAL waits for the WAL writer, every 200 ms by default) */
    static const char *const legacy_settings[] = { "wal_writer_delay=10ms", NULL };
    char v[32];

    (void)state;
    pg_legacy = pgh_start_with(legacy_settings);
    pg_new = pgh_start();
    if (pg_legacy == NULL || pg_new == NULL
        || pgh_query(pg_legacy, "SHOW wal_writer_delay", v, sizeof(v)) != 0
        || strcmp(v, "10ms") != 0) {
        fprintf(stderr, "group setup: legacy not started with its settings\n");
        return -1;
    }
    return 0;
}

static int
group_teardown(void **state)
{
    (void)state;
    pgh_free(pg_legacy);
    pgh_free(pg_new);
    return 0;
}

/* "host=DIR port=5432 dbname=postgres user=postgres" of <h>. */
static const char *
ci(const struct pgh *h, char *buf, size_t len)
{
    snprintf(buf, len, "host=%s port=%s dbname=postgres user=postgres", pgh_host(h),
             pgh_port(h));
    return buf;
}

/* A fixture with <extra> service keys, admin.listen, started. */
static struct fx *
start(void **state, const char *extra)
{
    struct fx *f = fx_new(state, sizeof(struct fx), false, 1, extra);

    f->admin_port = h_free_port();
    assert_int_equal(fx_write_conf(f), 0);
    assert_int_equal(fx_start_proxy(f, 40), 0);
    return f;
}

/* Polls status until gate <idx>'s verdict is <want>; 0, or -1 after
 * <timeout_ms> (the last status printed). */
static int
wait_gate(struct fx *f, int idx, const char *want, int timeout_ms)
{
    long long end = h_now_ms() + timeout_ms;
    json_t *v;

    for (;;) {
        v = fx_status_at(f, "gates.%d", idx);
        if (v != NULL && json_is_string(json_object_get(v, "verdict"))
            && strcmp(json_string_value(json_object_get(v, "verdict")), want) == 0) {
            json_decref(v);
            return 0;
        }
        if (h_now_ms() >= end) {
            char *t = v != NULL ? json_dumps(v, 0) : NULL;

            fprintf(stderr, "gate %d not %s within %d ms: %s\n", idx, want, timeout_ms,
                    t != NULL ? t : "(none)");
            free(t);
            json_decref(v);
            h_dump_file(f->log, 3000);
            return -1;
        }
        json_decref(v);
        h_sleep_ms(50);
    }
}

/* The string at <path> of gate <idx> in status, copied into <buf>. */
static const char *
gate_str(struct fx *f, int idx, const char *key, char *buf, size_t len)
{
    json_t *v = fx_status_at(f, "gates.%d.%s", idx, key);

    snprintf(buf, len, "%s", json_is_string(v) ? json_string_value(v) : "");
    json_decref(v);
    return buf;
}

/* The newest audit entry whose action is <action>, copied (caller decrefs). */
static json_t *
last_audit(struct fx *f, const char *action)
{
    json_t *root = h_ctl_json(f->sock, "audit", "-n", "200", (char *)NULL), *e, *found = NULL;
    size_t i;

    json_array_foreach(json_object_get(root, "entries"), i, e) {
        const char *a = json_string_value(json_object_get(e, "action"));

        if (a != NULL && strcmp(a, action) == 0) {
            json_decref(found);
            found = json_deep_copy(e);
        }
    }
    json_decref(root);
    return found;
}

/* ---- sql: raise refused, --force, audit, status, metrics --------------- */

static void
test_sql_gate_refuses_raise(void **state)
{
    char c[512], extra[2048], out[4096], buf[256];
    struct fx *f;
    json_t *e, *j;
    char *m;

    assert_int_equal(pgh_exec(pg_legacy, "CREATE TABLE t1_ready (x int)"), 0);
    snprintf(extra, sizeof(extra), ", \"gates\": [{\"name\": \"ready\", \"kind\": \"sql\", "
             "\"conninfo\": \"%s\", \"query\": \"SELECT count(*) FROM t1_ready\", "
             "\"min\": 1, \"interval_ms\": 200, \"timeout_ms\": 200}]",
             ci(pg_legacy, c, sizeof(c)));
    f = start(state, extra);
    assert_int_equal(wait_gate(f, 0, "fail", 5000), 0);
    assert_non_null(strstr(gate_str(f, 0, "reason", buf, sizeof(buf)), "below min 1"));

    /* refused, nothing changes */
    assert_int_equal(fx_ctl(f, out, "weight", "10"), 1);
    assert_non_null(strstr(h_ctl_err(), "gate ready (sql) fail, value 0"));
    assert_non_null(strstr(h_ctl_err(), "--force"));
    assert_true(fx_weight(f) == 0);
    assert_int_equal(fx_ctl(f, out, "promote"), 1);
    assert_true(fx_weight(f) == 0);

    /* forced: done, and the change's audit entry names the gate and value */
    assert_int_equal(fx_ctl(f, out, "weight", "10", "--force"), 0);
    assert_true(fx_weight(f) == 10);
    e = last_audit(f, "weight");
    assert_non_null(e);
    assert_non_null(strstr(json_string_value(json_object_get(e, "reason")),
                           "forced past a failing gate: gate ready (sql) fail, value 0"));
    json_decref(e);

    /* cutoverctl gates, status, metrics */
    assert_int_equal(fx_ctl(f, out, "gates"), 0);
    if (strstr(out, "ready ") == NULL || strstr(out, " fail ") == NULL
        || strstr(out, " value 0 is below min 1\n") == NULL)
        fail_msg("cutoverctl gates: %s", out);
    j = h_ctl_json(f->sock, "gates", (char *)NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(h_json_at(j, "0.gates.0.kind")), "sql");
    json_decref(j);
    m = fx_scrape(f);
    assert_non_null(m);
    assert_true(fx_metric(m, "cutover_gate_ok{service=\"web\",gate=\"ready\"}") == 0);
    assert_true(fx_metric(m, "cutover_gate_value{service=\"web\",gate=\"ready\"}") == 0);
    free(m);

    /* the row arrives: passes, a raise goes through */
    assert_int_equal(pgh_exec(pg_legacy, "INSERT INTO t1_ready VALUES (1)"), 0);
    assert_int_equal(wait_gate(f, 0, "pass", 5000), 0);
    assert_int_equal(fx_ctl(f, out, "weight", "20"), 0);
    assert_true(fx_weight(f) == 20);
    m = fx_scrape(f);
    assert_true(fx_metric(m, "cutover_gate_ok{service=\"web\",gate=\"ready\"}") == 1);
    assert_true(fx_metric(m, "cutover_gate_value{service=\"web\",gate=\"ready\"}") == 1);
    free(m);
    e = last_audit(f, "gate");
    assert_non_null(e);
    assert_non_null(strstr(json_string_value(json_object_get(e, "reason")),
                           "gate ready (sql): fail -> pass"));
    assert_string_equal(json_string_value(json_object_get(e, "actor")), "auto");
    json_decref(e);
    /* a lowering is never refused */
    assert_int_equal(pgh_exec(pg_legacy, "DELETE FROM t1_ready"), 0);
    assert_int_equal(wait_gate(f, 0, "fail", 5000), 0);
    assert_int_equal(fx_ctl(f, out, "weight", "5"), 0);
    assert_int_equal(pgh_exec(pg_legacy, "DROP TABLE t1_ready"), 0);
}

/* ---- the plan holds through logical replication lag --------------------- */

/* Sends <n> requests to new (override header) and returns how many got 200. */
static int
to_new(struct fx *f, int n)
{
    struct h_resp r;
    int ok = 0, i;

    for (i = 0; i < n; i++) {
        if (h_get(f->proxy_port, "/", "X-Cutover-Target: new\r\n", &r) == 0 && r.status == 200)
            ok++;
        h_resp_free(&r);
    }
    return ok;
}

static void
test_plan_holds_on_replication(void **state)
{
    char cl[512], cn[512], extra[4096], sql[1024], out[4096];
    long long end;
    struct fx *f;
    json_t *v;
    int step;

    assert_int_equal(pgh_exec(pg_legacy, "CREATE TABLE t2_orders (id int PRIMARY KEY); "
                                         "CREATE TABLE cutover_heartbeat (gate text PRIMARY "
                                         "KEY, seq bigint NOT NULL); CREATE PUBLICATION p2 "
                                         "FOR TABLE t2_orders, cutover_heartbeat"), 0);
    assert_int_equal(pgh_exec(pg_new, "CREATE TABLE t2_orders (id int PRIMARY KEY); "
                                      "CREATE TABLE cutover_heartbeat (gate text PRIMARY "
                                      "KEY, seq bigint NOT NULL)"), 0);
    snprintf(sql, sizeof(sql), "CREATE SUBSCRIPTION s2 CONNECTION '%s' PUBLICATION p2",
             ci(pg_legacy, cl, sizeof(cl)));
    assert_int_equal(pgh_exec(pg_new, sql), 0);
    ci(pg_new, cn, sizeof(cn));
    snprintf(extra, sizeof(extra),
             ", \"override\": {\"header\": \"X-Cutover-Target\"}"
             ", \"plan\": {\"steps\": [10, 50, 100], \"bake_s\": 1}"
             ", \"rollback\": {\"min_requests\": 1, \"window_s\": 5}"
             ", \"gates\": ["
             "{\"name\": \"rows\", \"kind\": \"compare\", \"query\": \"SELECT count(*) FROM "
             "t2_orders\", \"legacy\": {\"conninfo\": \"%s\"}, \"new\": {\"conninfo\": \"%s\"}, "
             "\"interval_ms\": 200, \"timeout_ms\": 200},"
             "{\"name\": \"lag\", \"kind\": \"replication_lag\", \"conninfo\": \"%s\", "
             "\"source\": {\"conninfo\": \"%s\"}, \"max_lag_ms\": 1000, "
             "\"interval_ms\": 200, \"timeout_ms\": 200}]", cl, cn, cn, cl);
    f = start(state, extra);
    assert_int_equal(wait_gate(f, 0, "pass", 10000), 0);
    assert_int_equal(wait_gate(f, 1, "pass", 10000), 0);
    assert_int_equal(fx_ctl(f, out, "plan", "start"), 0);
    assert_true(fx_weight(f) == 10);

    /* the subscription stops, rows pile up on legacy: both gates fail and
     * the plan stays on step 1 for three bakes and more */
    assert_int_equal(pgh_exec(pg_new, "ALTER SUBSCRIPTION s2 DISABLE"), 0);
    assert_int_equal(pgh_exec(pg_legacy, "INSERT INTO t2_orders SELECT generate_series(1, "
                                         "5)"), 0);
    assert_int_equal(wait_gate(f, 0, "fail", 5000), 0);
    assert_int_equal(wait_gate(f, 1, "fail", 5000), 0);
    end = h_now_ms() + 3500;
    while (h_now_ms() < end) {
        to_new(f, 3);
        assert_int_equal(fx_status_long(f, "plan.step"), 1);
        h_sleep_ms(100);
    }
    v = fx_status_at(f, "plan.held_by");
    assert_true(json_is_string(v));
    assert_non_null(strstr(json_string_value(v), "gate "));
    json_decref(v);
    {
        char buf[256];

        assert_non_null(strstr(gate_str(f, 0, "reason", buf, sizeof(buf)),
                               "legacy 5, new 0"));
        assert_non_null(strstr(gate_str(f, 1, "reason", buf, sizeof(buf)), "replica behind"));
    }

    /* enabled again: it catches up, the gates pass and the plan walks on */
    assert_int_equal(pgh_exec(pg_new, "ALTER SUBSCRIPTION s2 ENABLE"), 0);
    end = h_now_ms() + 20000;
    step = 1;
    while (h_now_ms() < end) {
        char st[32];

        to_new(f, 3);
        if (strcmp(fx_state(f, st, sizeof(st)), "promoted") == 0)
            break;
        step = (int)fx_status_long(f, "plan.step");
        h_sleep_ms(100);
    }
    (void)step;
    fx_expect_state(f, "promoted", 100);
    assert_int_equal(pgh_exec(pg_new, "DROP SUBSCRIPTION s2"), 0);
    assert_int_equal(pgh_exec(pg_legacy, "DROP PUBLICATION p2"), 0);
}

/* ---- a physical standby: the lag in bytes and in time -------------------- */

/* The gate <idx>'s value in status (NAN when none). */
static double
gate_value(struct fx *f, int idx)
{
    json_t *v = fx_status_at(f, "gates.%d.value", idx);
    double d = json_is_number(v) ? json_number_value(v) : NAN;

    json_decref(v);
    return d;
}

static void
test_physical_standby_lag(void **state)
{
    char cp[512], cs[512], extra[4096], out[4096], buf[256], sql[256], lsn[64], diff[64];
    struct pgh *stb;
    long long t0, end;
    struct fx *f;
    long checks;
    double v;

    /* pg_basebackup -R from legacy: a standby streaming over its socket */
    assert_int_equal(pgh_exec(pg_legacy, "CREATE TABLE t6_hb (gate text PRIMARY KEY, seq "
                                         "bigint NOT NULL); CREATE TABLE t6_fill (x int, "
                                         "pad text)"), 0);
    stb = pgh_start_standby(pg_legacy);
    assert_non_null(stb);
    assert_int_equal(pgh_query(stb, "SHOW wal_writer_delay", buf, sizeof(buf)), 0);
    assert_string_equal(buf, "10ms");                  /* the primary's settings */
    snprintf(extra, sizeof(extra), ", \"gates\": ["
             "{\"name\": \"bytes\", \"kind\": \"replication_lag\", \"conninfo\": \"%s\", "
             "\"source\": {\"conninfo\": \"%s\"}, \"heartbeat_table\": \"t6_hb\", "
             "\"max_lag_bytes\": 65536, \"interval_ms\": 200, \"timeout_ms\": 200},"
             "{\"name\": \"time\", \"kind\": \"replication_lag\", \"conninfo\": \"%s\", "
             "\"source\": {\"conninfo\": \"%s\"}, \"heartbeat_table\": \"t6_hb\", "
             "\"max_lag_ms\": 1000, \"interval_ms\": 200, \"timeout_ms\": 200}]",
             ci(stb, cs, sizeof(cs)), ci(pg_legacy, cp, sizeof(cp)), cs, cp);
    f = start(state, extra);
    assert_int_equal(wait_gate(f, 0, "pass", 10000), 0);
    assert_int_equal(wait_gate(f, 1, "pass", 10000), 0);
    v = gate_value(f, 0);
    assert_true(v >= 0 && v <= 65536);
    assert_non_null(strstr(gate_str(f, 0, "reason", buf, sizeof(buf)), "bytes (max 65536)"));

    /* replay held on the standby while the primary writes about 1 MB of
     * WAL: the byte gate fails with the distance, the heartbeat ages past
     * its second, and a raise is refused */
    t0 = h_now_ms();
    assert_int_equal(pgh_exec(stb, "SELECT pg_wal_replay_pause()"), 0);
    assert_int_equal(pgh_exec(pg_legacy, "INSERT INTO t6_fill SELECT g, repeat('x', 100) "
                                         "FROM generate_series(1, 5000) g"), 0);
    assert_int_equal(wait_gate(f, 0, "fail", 5000), 0);
    /* the gate's figure is the distance the servers themselves give, give
     * or take the heartbeats written since (a few hundred bytes each), once
     * a check began after the insert ended (one in flight then read the
     * source's position in the middle of it) */
    checks = fx_status_long(f, "gates.0.checks");
    end = h_now_ms() + 5000;
    while (fx_status_long(f, "gates.0.checks") < checks + 2 && h_now_ms() < end)
        h_sleep_ms(50);
    assert_true(fx_status_long(f, "gates.0.checks") >= checks + 2);
    assert_int_equal(pgh_query(stb, "SELECT pg_last_wal_replay_lsn()", lsn, sizeof(lsn)), 0);
    snprintf(sql, sizeof(sql), "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '%s')::bigint",
             lsn);
    assert_int_equal(pgh_query(pg_legacy, sql, diff, sizeof(diff)), 0);
    v = gate_value(f, 0);
    if (!(v > 65536) || fabs(v - atof(diff)) > 16384)
        fail_msg("byte lag %.0f while replay is paused; the servers say %s", v, diff);
    assert_non_null(strstr(gate_str(f, 0, "reason", buf, sizeof(buf)), "replica behind: lag "));
    assert_non_null(strstr(buf, " bytes (max 65536)"));
    assert_int_equal(wait_gate(f, 1, "fail", 5000), 0);
    if (strstr(gate_str(f, 1, "reason", buf, sizeof(buf)), " ms (max 1000)") == NULL)
        fail_msg("after %lld ms: %s", h_now_ms() - t0, buf);
    assert_true(gate_value(f, 1) > 1000);
    assert_int_equal(fx_ctl(f, out, "weight", "10"), 1);
    assert_non_null(strstr(h_ctl_err(), "gate bytes (replication_lag) fail"));

    /* replay resumed: both pass within a few checks, the raise goes through */
    assert_int_equal(pgh_exec(stb, "SELECT pg_wal_replay_resume()"), 0);
    assert_int_equal(wait_gate(f, 0, "pass", 5000), 0);
    assert_int_equal(wait_gate(f, 1, "pass", 5000), 0);
    v = gate_value(f, 0);
    assert_true(v >= 0 && v <= 65536);
    assert_int_equal(fx_ctl(f, out, "weight", "10"), 0);
    assert_true(fx_weight(f) == 10);
    pgh_free(stb);
    assert_int_equal(pgh_exec(pg_legacy, "DROP TABLE t6_hb; DROP TABLE t6_fill"), 0);
}

/* ---- cutoverd -t --check-gates ---------------------------------------------- */

/* Runs cutoverd -t --check-gates on <f>'s config with gates <gates>; its
 * exit status (-1 when it did not end within 20 s), its output in <out>. */
static int
check_gates(struct fx *f, const char *gates, char *out, size_t len)
{
    char log[600];
    char *argv[] = { (char *)h_bin("cutoverd"), "-c", f->conf, "-t", "--check-gates", NULL };
    char *text;
    int st;

    snprintf(f->extra, sizeof(f->extra), ", \"gates\": [%s]", gates);
    assert_int_equal(fx_write_conf(f), 0);
    snprintf(log, sizeof(log), "%s.check", f->conf);
    unlink(log);
    st = h_wait_exit(h_spawn(argv, log), 20000);
    text = h_read_file(log);
    snprintf(out, len, "%s", text != NULL ? text : "");
    free(text);
    /* under make asan: a report exits 1 too, which some cases expect */
    if (strstr(out, "Sanitizer") != NULL || strstr(out, "runtime error") != NULL)
        fail_msg("%s", out);
    return st;
}

static void
expect_line(const char *out, const char *want)
{
    if (strstr(out, want) == NULL) {
        fprintf(stderr, "%s", out);
        fail_msg("\"%s\" not in the output above", want);
    }
}

static void
test_check_gates(void **state)
{
    char cl[512], cn[512], cs[512], sql[1024], gates[8192], out[16384], v[64];
    struct fx *f = fx_new(state, sizeof(struct fx), false, 1, NULL);
    struct pgh *stb;
    long long t0;

    /* legacy: orders, two heartbeat tables (one published to new's
     * subscription), one without a unique index; new subscribes; a standby
     * of legacy */
    assert_int_equal(pgh_exec(pg_legacy, "CREATE TABLE t7_orders (id int PRIMARY KEY); "
                                         "INSERT INTO t7_orders VALUES (1), (2), (3); "
                                         "CREATE TABLE t7_hb (gate text PRIMARY KEY, seq "
                                         "bigint NOT NULL); CREATE TABLE t7_hb_local (gate "
                                         "text PRIMARY KEY, seq bigint NOT NULL); "
                                         "CREATE TABLE t7_hb_nokey (gate text, seq bigint); "
                                         "CREATE PUBLICATION p7 FOR TABLE t7_orders, t7_hb"), 0);
    assert_int_equal(pgh_exec(pg_new, "CREATE TABLE t7_orders (id int PRIMARY KEY); "
                                      "CREATE TABLE t7_hb (gate text PRIMARY KEY, seq bigint "
                                      "NOT NULL); CREATE TABLE t7_hb_local (gate text PRIMARY "
                                      "KEY, seq bigint NOT NULL)"), 0);
    snprintf(sql, sizeof(sql), "CREATE SUBSCRIPTION s7 CONNECTION '%s' PUBLICATION p7 WITH "
             "(copy_data = false)", ci(pg_legacy, cl, sizeof(cl)));
    assert_int_equal(pgh_exec(pg_new, sql), 0);
    stb = pgh_start_standby(pg_legacy);
    assert_non_null(stb);
    ci(pg_new, cn, sizeof(cn));
    ci(stb, cs, sizeof(cs));

    /* every gate can work: exit 0, what each database is, the verdict now */
    snprintf(gates, sizeof(gates),
             "{\"name\": \"count\", \"kind\": \"sql\", \"conninfo\": \"%s\", \"query\": "
             "\"SELECT count(*) FROM t7_orders\", \"min\": 5},"
             "{\"name\": \"rows\", \"kind\": \"compare\", \"legacy\": {\"conninfo\": \"%s\"}, "
             "\"new\": {\"conninfo\": \"%s\"}, \"query\": \"SELECT count(*) FROM t7_orders\"},"
             "{\"name\": \"standby\", \"kind\": \"replication_lag\", \"conninfo\": \"%s\", "
             "\"source\": {\"conninfo\": \"%s\"}, \"heartbeat_table\": \"t7_hb\", "
             "\"max_lag_bytes\": 65536},"
             "{\"name\": \"logical\", \"kind\": \"replication_lag\", \"conninfo\": \"%s\", "
             "\"source\": {\"conninfo\": \"%s\"}, \"heartbeat_table\": \"t7_hb\", "
             "\"subscription\": \"s7\", \"max_lag_ms\": 1000},"
             "{\"name\": \"ready\", \"kind\": \"http\", \"url\": \"http://127.0.0.1:1/\"}",
             cl, cl, cn, cs, cl, cn, cl);
    if (check_gates(f, gates, out, sizeof(out)) != 0)
        fail_msg("not valid:\n%s", out);
    expect_line(out, "web/count (sql) database: connected, the query returns 3\n");
    expect_line(out, "web/count (sql): would fail now: value 3 is below min 5");
    expect_line(out, "web/rows (compare) legacy: connected, the query returns 3\n");
    expect_line(out, "web/rows (compare) new: connected, the query returns 0\n");
    expect_line(out, "web/rows (compare): would fail now: legacy 3, new 0");
    expect_line(out, "web/standby (replication_lag) replica: connected, a standby (in "
                     "recovery), heartbeat t7_hb readable (no row \"web/standby\" yet), "
                     "position ");
    expect_line(out, "web/standby (replication_lag) source: connected, a primary (not in "
                     "recovery), heartbeat t7_hb writable, published in p7\n");
    expect_line(out, "web/standby (replication_lag): roles right: the replica is a physical "
                     "standby of the source");
    expect_line(out, "web/logical (replication_lag) replica: connected, not in recovery (a "
                     "logical subscriber?), heartbeat t7_hb readable (no row \"web/logical\" "
                     "yet), subscription s7\n");
    expect_line(out, "web/logical (replication_lag): roles right: the replica is a logical "
                     "subscriber of another cluster, the source publishes t7_hb in p7");
    expect_line(out, "web/ready (http): not contacted");
    expect_line(out, "configuration is valid");
    /* and it changed nothing: no heartbeat written */
    assert_int_equal(pgh_query(pg_legacy, "SELECT count(*) FROM t7_hb", v, sizeof(v)), 0);
    assert_string_equal(v, "0");

    /* a disabled subscription is a note, not an error */
    assert_int_equal(pgh_exec(pg_new, "ALTER SUBSCRIPTION s7 DISABLE"), 0);
    snprintf(gates, sizeof(gates),
             "{\"name\": \"logical\", \"kind\": \"replication_lag\", \"conninfo\": \"%s\", "
             "\"source\": {\"conninfo\": \"%s\"}, \"heartbeat_table\": \"t7_hb\", "
             "\"subscription\": \"s7\", \"max_lag_ms\": 1000}", cn, cl);
    if (check_gates(f, gates, out, sizeof(out)) != 0)
        fail_msg("not valid:\n%s", out);
    expect_line(out, "note: subscription s7 is disabled: the gate fails until it is enabled");
    assert_int_equal(pgh_exec(pg_new, "ALTER SUBSCRIPTION s7 ENABLE"), 0);

    /* every way a gate cannot work, each reported with its path: exit 1 */
    snprintf(gates, sizeof(gates),
             "{\"name\": \"gone\", \"kind\": \"sql\", \"conninfo\": \"host=/nonexistent "
             "dbname=postgres user=postgres\", \"query\": \"SELECT 1\", \"min\": 1},"
             "{\"name\": \"text\", \"kind\": \"sql\", \"conninfo\": \"%s\", \"query\": "
             "\"SELECT 'x'\", \"min\": 1},"
             "{\"name\": \"missing\", \"kind\": \"compare\", \"legacy\": {\"conninfo\": \"%s\"}, "
             "\"new\": {\"conninfo\": \"%s\"}, \"query\": \"SELECT count(*) FROM t7_none\"},"
             "{\"name\": \"writes\", \"kind\": \"sql\", \"conninfo\": \"%s\", \"query\": "
             "\"INSERT INTO t7_orders VALUES (9) RETURNING 1\", \"min\": 1},"
             "{\"name\": \"swapped\", \"kind\": \"replication_lag\", \"conninfo\": \"%s\", "
             "\"source\": {\"conninfo\": \"%s\"}, \"heartbeat_table\": \"t7_hb\", "
             "\"max_lag_ms\": 1000},"
             "{\"name\": \"unpublished\", \"kind\": \"replication_lag\", \"conninfo\": \"%s\", "
             "\"source\": {\"conninfo\": \"%s\"}, \"heartbeat_table\": \"t7_hb_local\", "
             "\"max_lag_ms\": 1000},"
             "{\"name\": \"nokey\", \"kind\": \"replication_lag\", \"conninfo\": \"%s\", "
             "\"source\": {\"conninfo\": \"%s\"}, \"heartbeat_table\": \"t7_hb_nokey\", "
             "\"max_lag_ms\": 1000},"
             "{\"name\": \"self\", \"kind\": \"replication_lag\", \"conninfo\": \"%s\", "
             "\"source\": {\"conninfo\": \"%s\"}, \"heartbeat_table\": \"t7_hb\", "
             "\"max_lag_ms\": 1000}",
             cl, cl, cn, cl, cl, cs, cn, cl, cs, cl, cl, cl);
    assert_int_equal(check_gates(f, gates, out, sizeof(out)), 1);
    expect_line(out, "services[0].gates[0]: web/gone (sql) database: cannot connect: ");
    expect_line(out, "services[0].gates[1]: web/text (sql) database: the query's value: ");
    expect_line(out, "services[0].gates[2]: web/missing (compare) legacy: the query failed: "
                     "relation \"t7_none\" does not exist");
    expect_line(out, "services[0].gates[2]: web/missing (compare) new: the query failed: ");
    expect_line(out, "services[0].gates[3]: web/writes (sql) database: the query failed: "
                     "cannot execute INSERT in a read-only transaction");
    expect_line(out, "services[0].gates[4]: web/swapped (replication_lag) source: is a standby "
                     "(in recovery)");
    expect_line(out, "services[0].gates[5]: web/unpublished (replication_lag): the replica is "
                     "a logical subscriber, and the source publishes t7_hb_local in no "
                     "publication");
    expect_line(out, "services[0].gates[6]: web/nokey (replication_lag) source: t7_hb_nokey "
                     "has no unique index on \"gate\" alone");
    expect_line(out, "services[0].gates[7]: web/self (replication_lag) replica: not a standby, "
                     "and no subscription in this database");
    assert_null(strstr(out, "configuration is valid"));
    assert_int_equal(pgh_query(pg_legacy, "SELECT count(*) FROM t7_orders", v, sizeof(v)), 0);
    assert_string_equal(v, "3");

    /* a hung server: the gate's timeout bounds the check */
    assert_int_equal(pgh_pause(stb), 0);
    snprintf(gates, sizeof(gates),
             "{\"name\": \"hung\", \"kind\": \"sql\", \"conninfo\": \"%s\", \"query\": "
             "\"SELECT 1\", \"min\": 1, \"timeout_ms\": 300}", cs);
    t0 = h_now_ms();
    assert_int_equal(check_gates(f, gates, out, sizeof(out)), 1);
    expect_line(out, "services[0].gates[0]: web/hung (sql) database: cannot connect: connect "
                     "timeout after 300 ms");
    assert_true(h_now_ms() - t0 < 5000);
    assert_int_equal(pgh_resume(stb), 0);

    pgh_free(stb);
    assert_int_equal(pgh_exec(pg_new, "DROP SUBSCRIPTION s7"), 0);
    assert_int_equal(pgh_exec(pg_legacy, "DROP PUBLICATION p7"), 0);
}

/* ---- on_fail ------------------------------------------------------------ */

static struct fx *
on_fail_start(void **state, const char *table, const char *on_fail)
{
    char c[512], extra[2048], sql[256];
    struct fx *f;

    snprintf(sql, sizeof(sql), "CREATE TABLE %s (x int); INSERT INTO %s VALUES (1)", table,
             table);
    assert_int_equal(pgh_exec(pg_legacy, sql), 0);
    snprintf(extra, sizeof(extra), ", \"gates\": [{\"name\": \"g\", \"kind\": \"sql\", "
             "\"conninfo\": \"%s\", \"query\": \"SELECT count(*) FROM %s\", \"min\": 1, "
             "\"on_fail\": \"%s\", \"interval_ms\": 200, \"timeout_ms\": 200}]",
             ci(pg_legacy, c, sizeof(c)), table, on_fail);
    f = start(state, extra);
    assert_int_equal(wait_gate(f, 0, "pass", 5000), 0);
    return f;
}

static void
test_on_fail_rollback(void **state)
{
    char out[1024], st[32];
    struct fx *f = on_fail_start(state, "t3_rb", "rollback");
    long long end;
    json_t *e;
    char *m;

    assert_int_equal(fx_ctl(f, out, "weight", "10"), 0);
    assert_int_equal(pgh_exec(pg_legacy, "DELETE FROM t3_rb"), 0);
    end = h_now_ms() + 5000;
    while (strcmp(fx_state(f, st, sizeof(st)), "rolled_back") != 0 && h_now_ms() < end)
        h_sleep_ms(50);
    fx_expect_state(f, "rolled_back", 0);
    e = last_audit(f, "rollback");
    assert_non_null(e);
    assert_string_equal(json_string_value(json_object_get(e, "actor")), "auto");
    assert_string_equal(json_string_value(h_json_at(e, "figures.kind")), "gate");
    assert_string_equal(json_string_value(h_json_at(e, "figures.gate")), "g");
    json_decref(e);
    m = fx_scrape(f);
    assert_true(fx_metric(m, "cutover_rollbacks_total{service=\"web\",reason=\"gate\"}") == 1);
    free(m);
    assert_int_equal(pgh_exec(pg_legacy, "DROP TABLE t3_rb"), 0);
}

static void
test_on_fail_freeze(void **state)
{
    char out[1024], st[32];
    struct fx *f = on_fail_start(state, "t4_fr", "freeze");
    long long end;

    assert_int_equal(fx_ctl(f, out, "weight", "10"), 0);
    assert_int_equal(pgh_exec(pg_legacy, "DELETE FROM t4_fr"), 0);
    end = h_now_ms() + 5000;
    while (strcmp(fx_state(f, st, sizeof(st)), "frozen") != 0 && h_now_ms() < end)
        h_sleep_ms(50);
    fx_expect_state(f, "frozen", 10);
    assert_int_equal(h_wait_log(f->log, "FROZEN by gate g", 2000), 0);
    /* no raise while the gate fails; the way back is always open */
    assert_int_equal(fx_ctl(f, out, "weight", "20"), 1);
    fx_expect_state(f, "frozen", 10);
    assert_int_equal(fx_ctl(f, out, "rollback", "--reason", "gate g"), 0);
    fx_expect_state(f, "rolled_back", 0);
    assert_int_equal(pgh_exec(pg_legacy, "DROP TABLE t4_fr"), 0);
}

/* ---- http ------------------------------------------------------------------ */

static void
test_http_gate(void **state)
{
    char extra[512], out[1024], buf[256];
    struct fx *f = fx_new(state, sizeof(struct fx), false, 1, NULL);

    snprintf(extra, sizeof(extra), ", \"gates\": [{\"name\": \"ready\", \"kind\": \"http\", "
             "\"url\": \"http://127.0.0.1:%d/ready\", \"expect_status\": 200, "
             "\"interval_ms\": 200, \"timeout_ms\": 200}]", f->port[1][0]);
    snprintf(f->extra, sizeof(f->extra), "%s", extra);
    assert_int_equal(fx_write_conf(f), 0);
    assert_int_equal(fx_start_proxy(f, 40), 0);
    assert_int_equal(wait_gate(f, 0, "pass", 5000), 0);
    assert_int_equal(h_backend_set(f->port[1][0], "error_rate=1&status=503"), 0);
    assert_int_equal(wait_gate(f, 0, "fail", 5000), 0);
    assert_string_equal(gate_str(f, 0, "reason", buf, sizeof(buf)), "status 503, expected 200");
    assert_int_equal(fx_ctl(f, out, "weight", "10"), 1);
    /* a server that refuses connections */
    kill(f->backend[1][0], SIGKILL);
    h_sleep_ms(500);
    assert_int_equal(wait_gate(f, 0, "fail", 5000), 0);
    assert_non_null(strstr(gate_str(f, 0, "reason", buf, sizeof(buf)), "refused"));
}

/* ---- a hung, a stopped database; a restart ------------------------------ */

static void
test_hung_and_gone_database(void **state)
{
    char c[512], extra[2048], out[4096], buf[256];
    struct pgh *h = pgh_start();
    long long t0, dt;
    struct h_resp r;
    struct fx *f;

    assert_non_null(h);
    assert_int_equal(pgh_exec(h, "CREATE TABLE t5 (x int); INSERT INTO t5 VALUES (1)"), 0);
    snprintf(extra, sizeof(extra), ", \"gates\": [{\"name\": \"db\", \"kind\": \"sql\", "
             "\"conninfo\": \"%s\", \"query\": \"SELECT count(*) FROM t5\", \"min\": 1, "
             "\"interval_ms\": 500, \"timeout_ms\": 300}, "
             "{\"name\": \"slow\", \"kind\": \"sql\", \"conninfo\": \"%s\", "
             "\"query\": \"SELECT 1\", \"max\": 1, \"interval_ms\": 5000, "
             "\"timeout_ms\": 5000}]", ci(h, c, sizeof(c)), c);
    f = start(state, extra);
    assert_int_equal(wait_gate(f, 0, "pass", 5000), 0);
    assert_int_equal(wait_gate(f, 1, "pass", 5000), 0);

    /* hung: the timeout fails the gate; the daemon answers at once */
    assert_int_equal(pgh_pause(h), 0);
    assert_int_equal(wait_gate(f, 0, "fail", 3000), 0);
    assert_non_null(strstr(gate_str(f, 0, "reason", buf, sizeof(buf)), "timeout"));
    t0 = h_now_ms();
    assert_int_equal(fx_ctl(f, out, "status"), 0);
    assert_int_equal(h_get(f->proxy_port, "/", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    h_resp_free(&r);
    dt = h_now_ms() - t0;
    assert_true(dt < 2000);

    /* a restart while it hangs: nothing carried over, unknown until checked */
    assert_int_equal(h_stop(f->proxy, SIGTERM, 5000), 0);
    assert_int_equal(fx_start_proxy(f, 41), 0);
    assert_string_equal(gate_str(f, 1, "verdict", buf, sizeof(buf)), "unknown");
    assert_string_equal(gate_str(f, 1, "reason", buf, sizeof(buf)), "not checked yet");
    assert_int_equal(wait_gate(f, 1, "fail", 8000), 0);

    assert_int_equal(pgh_resume(h), 0);
    assert_int_equal(wait_gate(f, 0, "pass", 8000), 0);

    /* gone: the gate fails with the reason, the daemon serves on */
    assert_int_equal(pgh_stop(h), 0);
    assert_int_equal(wait_gate(f, 0, "fail", 5000), 0);
    gate_str(f, 0, "reason", buf, sizeof(buf));
    assert_true(strstr(buf, "cannot connect") != NULL || strstr(buf, "lost") != NULL
                || strstr(buf, "terminat") != NULL || strstr(buf, "not connected") != NULL);
    assert_int_equal(h_get(f->proxy_port, "/", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    h_resp_free(&r);
    assert_int_equal(pgh_restart(h), 0);
    assert_int_equal(wait_gate(f, 0, "pass", 10000), 0);
    pgh_free(h);
}

/* ---- config --------------------------------------------------------------- */

static void
test_config_errors(void **state)
{
    static const struct {
        const char *gates, *want;
    } cases[] = {
        { "[{\"name\": \"a\", \"kind\": \"sql\", \"conninfo\": \"host=/tmp password=x\", "
          "\"query\": \"SELECT 1\", \"min\": 1}]",
          "services[0].gates[0].conninfo: must not hold a password" },
        { "[{\"name\": \"a\", \"kind\": \"sql\", \"conninfo\": \"host=/tmp\", "
          "\"query\": \"SELECT 1\"}]",
          "services[0].gates[0]: a sql gate needs \"min\", \"max\" or both" },
        { "[{\"name\": \"a\", \"kind\": \"http\", \"url\": \"http://db.example:80/\"}]",
          "services[0].gates[0].url: host \"db.example\" must be a numeric address" },
        { "[{\"name\": \"a\", \"kind\": \"http\", \"url\": \"http://127.0.0.1:1/\", "
          "\"max\": 3}]",
          "services[0].gates[0].max: is a key of kind \"sql\", not of \"http\"" },
        { "[{\"name\": \"a\", \"kind\": \"replication_lag\", \"conninfo\": \"host=/tmp\", "
          "\"source\": {\"conninfo\": \"host=/tmp\"}}]",
          "needs \"max_lag_ms\", \"max_lag_bytes\" or both" },
        { "[{\"name\": \"a\", \"kind\": \"sql\", \"conninfo\": \"host=/tmp\", "
          "\"query\": \"SELECT 1\", \"min\": 1, \"interval_ms\": 500, \"timeout_ms\": 900}]",
          "services[0].gates[0].timeout_ms: 900 is longer than interval_ms (500)" },
        { "[{\"name\": \"a\", \"kind\": \"http\", \"url\": \"http://127.0.0.1:1/\", "
          "\"on_fail\": \"panic\"}]",
          "services[0].gates[0].on_fail: must be hold, rollback or freeze" },
    };
    struct fx *f = fx_new(state, sizeof(struct fx), false, 1, NULL);
    char out[2048];
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(f->extra, sizeof(f->extra), ", \"gates\": %s", cases[i].gates);
        assert_int_equal(fx_write_conf(f), 0);
        assert_int_equal(h_cutoverd_check(f->conf, out, sizeof(out)), 1);
        if (strstr(out, cases[i].want) == NULL)
            fail_msg("case %zu: \"%s\" not in: %s", i, cases[i].want, out);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_config_errors, fx_teardown),
        cmocka_unit_test_teardown(test_sql_gate_refuses_raise, fx_teardown),
        cmocka_unit_test_teardown(test_plan_holds_on_replication, fx_teardown),
        cmocka_unit_test_teardown(test_physical_standby_lag, fx_teardown),
        cmocka_unit_test_teardown(test_check_gates, fx_teardown),
        cmocka_unit_test_teardown(test_on_fail_rollback, fx_teardown),
        cmocka_unit_test_teardown(test_on_fail_freeze, fx_teardown),
        cmocka_unit_test_teardown(test_http_gate, fx_teardown),
        cmocka_unit_test_teardown(test_hung_and_gone_database, fx_teardown),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
