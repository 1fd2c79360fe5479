/*
 * tests/unit/test_hl_gate.c: the pure rules of the migration gates
 * (health/gate.c) and their config parser (health/gate_conf.c): numbers as
 * PostgreSQL prints them, the verdict of each kind, LSNs, the heartbeat
 * lag, a gate's verdict over time and which gate blocks; the keys of each
 * kind, defaults and the precise errors.
 */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include <jansson.h>

#include "health/gate.h"
#include "health/gate_conf.h"
#include "lib/conf.h"

static void
test_number(void **state)
{
    static const char *const bad[] = { "", "NaN", "Infinity", "-Infinity", "t", "0x10",
                                       "1 ", " 1", "1e999", "abc", "--", "." };
    char why[128];
    double v;
    size_t i;

    (void)state;
    assert_int_equal(hl_gate_number("42", &v, why, sizeof(why)), 0);
    assert_true(v == 42);
    assert_int_equal(hl_gate_number("-3.25", &v, why, sizeof(why)), 0);
    assert_true(v == -3.25);
    assert_int_equal(hl_gate_number("1.5e3", &v, why, sizeof(why)), 0);
    assert_true(v == 1500);
    assert_int_equal(hl_gate_number("9223372036854775807", &v, why, sizeof(why)), 0);
    assert_int_equal(hl_gate_number(NULL, &v, why, sizeof(why)), -1);
    assert_string_equal(why, "the value is NULL");
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (hl_gate_number(bad[i], &v, why, sizeof(why)) == 0)
            fail_msg("\"%s\" taken as a number", bad[i]);
}

static void
test_eval(void **state)
{
    struct hl_gate_conf c;
    struct hl_gate_result r;

    (void)state;
    memset(&c, 0, sizeof(c));
    c.has_min = true;
    c.min = 1;
    hl_gate_eval_sql(&c, 0, &r);
    assert_int_equal(r.verdict, HL_GV_FAIL);
    assert_true(r.has_value && r.value == 0);
    assert_string_equal(r.reason, "value 0 is below min 1");
    hl_gate_eval_sql(&c, 1, &r);
    assert_int_equal(r.verdict, HL_GV_PASS);
    c.has_max = true;
    c.max = 10;
    hl_gate_eval_sql(&c, 10.5, &r);
    assert_int_equal(r.verdict, HL_GV_FAIL);
    assert_string_equal(r.reason, "value 10.5 is above max 10");

    memset(&c, 0, sizeof(c));                  /* compare: exact by default */
    hl_gate_eval_compare(&c, 5, 5, &r);
    assert_int_equal(r.verdict, HL_GV_PASS);
    hl_gate_eval_compare(&c, 5, 4, &r);
    assert_int_equal(r.verdict, HL_GV_FAIL);
    assert_true(r.value == -1);
    assert_non_null(strstr(r.reason, "legacy 5, new 4: difference 1 over tolerance 0"));
    c.tolerance = 1;
    hl_gate_eval_compare(&c, 5, 4, &r);
    assert_int_equal(r.verdict, HL_GV_PASS);
    c.has_ratio = true;                        /* 1 % of the larger */
    c.tolerance_ratio = 0.01;
    hl_gate_eval_compare(&c, 1000, 990, &r);
    assert_int_equal(r.verdict, HL_GV_PASS);
    hl_gate_eval_compare(&c, 1000, 989, &r);
    assert_int_equal(r.verdict, HL_GV_FAIL);
    hl_gate_eval_compare(&c, 0, 0, &r);
    assert_int_equal(r.verdict, HL_GV_PASS);

    memset(&c, 0, sizeof(c));
    c.max_lag_ms = 1000;
    hl_gate_eval_lag(&c, 1000, false, -1, &r);
    assert_int_equal(r.verdict, HL_GV_PASS);
    hl_gate_eval_lag(&c, 1001, true, -1, &r);
    assert_int_equal(r.verdict, HL_GV_FAIL);
    assert_string_equal(r.reason, "replica behind: lag at least 1001 ms (max 1000)");
    hl_gate_eval_lag(&c, -1, false, -1, &r);
    assert_int_equal(r.verdict, HL_GV_FAIL);
    c.max_lag_bytes = 100;
    hl_gate_eval_lag(&c, 5, false, 101, &r);
    assert_int_equal(r.verdict, HL_GV_FAIL);
    assert_string_equal(r.reason, "replica behind: lag 5 ms (max 1000), 101 bytes (max 100)");
    c.max_lag_ms = 0;
    hl_gate_eval_lag(&c, -1, false, 100, &r);
    assert_int_equal(r.verdict, HL_GV_PASS);
    assert_true(r.value == 100);

    c.expect_status = 200;
    hl_gate_eval_http(&c, 200, &r);
    assert_int_equal(r.verdict, HL_GV_PASS);
    hl_gate_eval_http(&c, 503, &r);
    assert_int_equal(r.verdict, HL_GV_FAIL);
    assert_string_equal(r.reason, "status 503, expected 200");
}

static void
test_lsn(void **state)
{
    uint64_t v;

    (void)state;
    assert_int_equal(hl_lsn_parse("16/B374D848", &v), 0);
    assert_true(v == ((uint64_t)0x16 << 32 | 0xB374D848u));
    assert_int_equal(hl_lsn_parse("0/0", &v), 0);
    assert_true(v == 0);
    assert_int_equal(hl_lsn_parse("FFFFFFFF/FFFFFFFF", &v), 0);
    assert_true(v == UINT64_MAX);
    assert_int_equal(hl_lsn_parse("16B374D848", &v), -1);
    assert_int_equal(hl_lsn_parse("/1", &v), -1);
    assert_int_equal(hl_lsn_parse("1/", &v), -1);
    assert_int_equal(hl_lsn_parse("1/1 ", &v), -1);
    assert_int_equal(hl_lsn_parse("100000000/0", &v), -1);
    assert_int_equal(hl_lsn_parse(NULL, &v), -1);
}

static void
test_heartbeat(void **state)
{
    struct hl_heartbeat hb;
    bool lower;
    int64_t s1, s2;
    unsigned i;

    (void)state;
    memset(&hb, 0, sizeof(hb));
    assert_int_equal(hl_hb_lag_ms(&hb, 5, 1000, &lower), -1);
    s1 = hl_hb_next_seq(&hb, 1000000);
    assert_true(s1 == 1000000);
    hl_hb_wrote(&hb, s1, 100);
    s2 = hl_hb_next_seq(&hb, 999);              /* a clock that went back */
    assert_true(s2 == s1 + 1);
    hl_hb_wrote(&hb, s2, 300);
    assert_int_equal(hl_hb_lag_ms(&hb, s2, 350, &lower), 0);      /* has the last */
    assert_int_equal(hl_hb_lag_ms(&hb, s1, 350, &lower), 50);     /* misses s2 */
    assert_false(lower);
    assert_int_equal(hl_hb_lag_ms(&hb, -1, 350, &lower), 250);    /* misses both */
    assert_int_equal(hl_hb_lag_ms(&hb, 7, 350, &lower), 250);     /* an older process's */
    /* the ring turns: the oldest remembered gives a lower bound */
    for (i = 0; i < HL_HB_RING + 5; i++)
        hl_hb_wrote(&hb, hl_hb_next_seq(&hb, 0), 1000 + i);
    assert_int_equal(hb.n, HL_HB_RING);
    assert_int_equal(hl_hb_lag_ms(&hb, s1, 2000, &lower), 2000 - (1000 + 5));
    assert_true(lower);
}

static void
test_state_and_blocking(void **state)
{
    struct hl_gate_state st[3];
    struct hl_gate_result pass = { .verdict = HL_GV_PASS, .has_value = true, .value = 1,
                                   .reason = "ok" };
    struct hl_gate_result bad = { .verdict = HL_GV_FAIL, .reason = "down" };
    unsigned i;

    (void)state;
    for (i = 0; i < 3; i++)
        hl_gate_state_init(&st[i], 10, 1000);
    assert_int_equal(st[0].verdict, HL_GV_UNKNOWN);
    assert_string_equal(st[0].reason, "not checked yet");
    assert_int_equal(hl_gates_blocking(st, 3, true), 0);
    assert_int_equal(hl_gates_blocking(st, 3, false), -1);
    assert_true(hl_gate_record(&st[0], &pass, 20, 1010));
    assert_false(hl_gate_record(&st[0], &pass, 30, 1020));
    assert_true(st[0].since_ms == 20 && st[0].last_ms == 30 && st[0].checks == 2);
    assert_true(hl_gate_record(&st[1], &pass, 20, 1010));
    assert_int_equal(hl_gates_blocking(st, 3, true), 2);
    assert_true(hl_gate_record(&st[2], &bad, 40, 1030));
    assert_int_equal(hl_gates_blocking(st, 3, false), 2);
    assert_true(hl_gate_record(&st[1], &bad, 50, 1040));
    assert_int_equal(hl_gates_blocking(st, 3, true), 1);       /* first failing */
    assert_true(st[1].failures == 1 && !st[1].has_value);
    assert_int_equal(hl_gates_blocking(st, 0, true), -1);
}

/* Parses <text> as the gates array; returns 0 or -1 with the error in <msg>. */
static int
parse(const char *text, struct hl_gates_conf *out, char *msg, size_t len)
{
    struct conf_err err = { "", "" };
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    int rc;

    if (j == NULL)
        fail_msg("bad JSON in the test: %s", je.text);
    rc = hl_gates_conf_parse(j, "services[0].gates", "/etc/cutover", out, &err);
    snprintf(msg, len, "%s: %s", err.path, err.msg);
    json_decref(j);
    return rc;
}

static void
test_conf_ok(void **state)
{
    struct hl_gates_conf c, d;
    char msg[512];

    (void)state;
    assert_int_equal(parse("[{\"name\": \"rows\", \"kind\": \"compare\", \"query\": \"SELECT 1\","
                           " \"legacy\": {\"conninfo\": \"host=/run/pg dbname=a user=u\", "
                           "\"password_file\": \"pw\"}, \"new\": {\"conninfo\": "
                           "\"host=10.0.0.2 port=6432 dbname='my db' sslmode=require\"}, "
                           "\"tolerance_ratio\": 0.001, \"on_fail\": \"freeze\"},"
                           "{\"name\": \"lag\", \"kind\": \"replication_lag\", \"conninfo\": "
                           "\"host=/r\", \"source\": {\"conninfo\": \"host=/s\"}, "
                           "\"max_lag_bytes\": 1048576, \"subscription\": \"sub1\"},"
                           "{\"name\": \"ready\", \"kind\": \"http\", \"url\": "
                           "\"http://[::1]:8080/ready?x=1\"}]", &c, msg, sizeof(msg)), 0);
    assert_int_equal(c.n, 3);
    assert_int_equal(c.g[0].kind, HL_GATE_COMPARE);
    assert_int_equal(c.g[0].on_fail, HL_GATE_FREEZE);
    assert_int_equal(c.g[0].interval_ms, 5000);
    assert_int_equal(c.g[0].timeout_ms, 2000);
    assert_string_equal(c.g[0].db.host, "/run/pg");
    assert_string_equal(c.g[0].db.password_file, "/etc/cutover/pw");
    assert_string_equal(c.g[0].db2.dbname, "my db");
    assert_string_equal(c.g[0].db2.port, "6432");
    assert_true(c.g[0].has_ratio && c.g[0].tolerance_ratio == 0.001);
    assert_int_equal(c.g[1].on_fail, HL_GATE_HOLD);
    assert_string_equal(c.g[1].heartbeat_table, "cutover_heartbeat");
    assert_true(c.g[1].max_lag_bytes == 1048576 && c.g[1].max_lag_ms == 0);
    assert_string_equal(c.g[2].http_host, "::1");
    assert_int_equal(c.g[2].http_port, 8080);
    assert_string_equal(c.g[2].http_path, "/ready?x=1");
    assert_int_equal(c.g[2].expect_status, 200);
    assert_int_equal(hl_gates_conf_copy(&d, &c), 0);
    assert_true(hl_gates_conf_equal(&c, &d));
    d.g[1].max_lag_bytes++;
    assert_false(hl_gates_conf_equal(&c, &d));
    hl_gates_conf_free(&d);
    hl_gates_conf_free(&c);
    assert_int_equal(parse("[]", &c, msg, sizeof(msg)), 0);
    assert_int_equal(c.n, 0);
}

static void
test_conf_errors(void **state)
{
    static const struct {
        const char *text, *want;
    } cases[] = {
        { "{}", "services[0].gates: must be an array" },
        { "[{\"kind\": \"sql\"}]", "services[0].gates[0].name: is required" },
        { "[{\"name\": \"a b\", \"kind\": \"sql\"}]", "services[0].gates[0].name: must be" },
        { "[{\"name\": \"a\", \"kind\": \"mysql\"}]",
          "services[0].gates[0].kind: must be sql, compare, replication_lag or http" },
        { "[{\"name\": \"a\", \"kind\": \"sql\", \"query\": \"SELECT 1\", \"min\": 0}]",
          "services[0].gates[0].conninfo: is required" },
        { "[{\"name\": \"a\", \"kind\": \"sql\", \"conninfo\": \"host=/x\", \"min\": 0}]",
          "services[0].gates[0].query: is required" },
        { "[{\"name\": \"a\", \"kind\": \"sql\", \"conninfo\": \"host=/x\", \"query\": \"q\", "
          "\"min\": 2, \"max\": 1}]", "services[0].gates[0].min: 2 is above max (1)" },
        { "[{\"name\": \"a\", \"kind\": \"sql\", \"conninfo\": \"host=/x\", \"query\": \"q\", "
          "\"min\": 0, \"url\": \"http://1.2.3.4:1/\"}]",
          "services[0].gates[0].url: is a key of kind \"http\", not of \"sql\"" },
        { "[{\"name\": \"a\", \"kind\": \"sql\", \"conninfo\": \"host=/x\", \"query\": \"q\", "
          "\"min\": 0, \"colour\": 1}]", "services[0].gates[0].colour: unknown key" },
        { "[{\"name\": \"a\", \"kind\": \"sql\", \"conninfo\": \"dbname=x\", \"query\": \"q\", "
          "\"min\": 0}]", "services[0].gates[0].conninfo: needs host=" },
        { "[{\"name\": \"a\", \"kind\": \"sql\", \"conninfo\": \"host=db.internal\", "
          "\"query\": \"q\", \"min\": 0}]", "must be a socket directory or a numeric address" },
        { "[{\"name\": \"a\", \"kind\": \"sql\", \"conninfo\": \"host=/x sslcert=c\", "
          "\"query\": \"q\", \"min\": 0}]", "conninfo: unknown key \"sslcert\"" },
        { "[{\"name\": \"a\", \"kind\": \"sql\", \"conninfo\": \"host=/x dbname='a\", "
          "\"query\": \"q\", \"min\": 0}]", "the value of dbname has no closing quote" },
        { "[{\"name\": \"a\", \"kind\": \"compare\", \"query\": \"q\", \"legacy\": "
          "{\"conninfo\": \"host=/x\"}}]", "services[0].gates[0].new: is required" },
        { "[{\"name\": \"a\", \"kind\": \"compare\", \"query\": \"q\", \"legacy\": "
          "{\"conninfo\": \"host=/x\"}, \"new\": {\"conninfo\": \"host=/y\", \"pass\": 1}}]",
          "services[0].gates[0].new.pass: unknown key" },
        { "[{\"name\": \"a\", \"kind\": \"compare\", \"query\": \"q\", \"legacy\": "
          "{\"conninfo\": \"host=/x\"}, \"new\": {\"conninfo\": \"host=/y\"}, "
          "\"tolerance\": 1, \"tolerance_ratio\": 0.1}]",
          "tolerance_ratio: and \"tolerance\" exclude each other" },
        { "[{\"name\": \"a\", \"kind\": \"replication_lag\", \"conninfo\": \"host=/x\", "
          "\"max_lag_ms\": 100}]", "services[0].gates[0].source: is required" },
        { "[{\"name\": \"a\", \"kind\": \"replication_lag\", \"conninfo\": \"host=/x\", "
          "\"source\": {\"conninfo\": \"host=/y\"}, \"max_lag_ms\": 100, "
          "\"heartbeat_table\": \"hb; DROP TABLE x\"}]",
          "services[0].gates[0].heartbeat_table: must be a table name" },
        { "[{\"name\": \"a\", \"kind\": \"http\", \"url\": \"https://1.2.3.4:1/\"}]",
          "services[0].gates[0].url: must start with http://" },
        { "[{\"name\": \"a\", \"kind\": \"http\", \"url\": \"http://1.2.3.4/\"}]",
          "url: needs a port" },
        { "[{\"name\": \"a\", \"kind\": \"http\", \"url\": \"http://1.2.3.4:1/\", "
          "\"expect_status\": 99}]", "services[0].gates[0].expect_status" },
        { "[{\"name\": \"a\", \"kind\": \"http\", \"url\": \"http://1.2.3.4:1/\", "
          "\"interval_ms\": 50}]", "services[0].gates[0].interval_ms" },
        { "[{\"name\": \"a\", \"kind\": \"http\", \"url\": \"http://1.2.3.4:1/\"}, "
          "{\"name\": \"a\", \"kind\": \"http\", \"url\": \"http://1.2.3.4:1/\"}]",
          "services[0].gates[1].name: duplicate gate name \"a\" (also services[0].gates[0])" },
    };
    struct hl_gates_conf c;
    char msg[512];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (parse(cases[i].text, &c, msg, sizeof(msg)) != -1)
            fail_msg("case %zu accepted", i);
        if (strstr(msg, cases[i].want) == NULL)
            fail_msg("case %zu: \"%s\" not in \"%s\"", i, cases[i].want, msg);
        assert_int_equal(c.n, 0);
        assert_null(c.g);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_number),
        cmocka_unit_test(test_eval),
        cmocka_unit_test(test_lsn),
        cmocka_unit_test(test_heartbeat),
        cmocka_unit_test(test_state_and_blocking),
        cmocka_unit_test(test_conf_ok),
        cmocka_unit_test(test_conf_errors),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
