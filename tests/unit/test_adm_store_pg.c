/*
 * Tests for the pure parts of the fleet's PostgreSQL store: the
 * "store": {"postgres"} section (admin/store_pg_conf.c: every key, its
 * defaults, each refusal with its path and reason, the conninfo's key=value
 * syntax and the password it must not hold, adm_pg_conf_equal() field by
 * field), the schema's versions (admin/store_pg_schema.c: the steps to
 * run from each version, a newer version refused naming both), and the
 * fleet's rules (admin/fleet.c): which changes are safe (applied first,
 * written unconditionally), what the reconcile does with a service
 * lowered while the database was away, and what a follower does with a
 * notification (admin/store_pg.c reads its payload, the row itself:
 * adm_pg_row_from_notify(); admin/fleet.c decides: adm_fleet_notified()).
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "admin/fleet.h"
#include "admin/store_pg.h"
#include "admin/store_pg_conf.h"
#include "admin/store_pg_schema.h"
#include "lib/conf.h"

/* Parses "store" text <text>: 0 with *out, or -1 with <err>. */
static int
parse(const char *text, struct adm_pg_conf **out, struct conf_err *err)
{
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    int rc;

    if (j == NULL)
        fail_msg("bad test JSON: %s", je.text);
    memset(err, 0, sizeof(*err));
    rc = adm_pg_conf_parse(j, "store", "/etc/cutover", out, err);
    json_decref(j);
    return rc;
}

static void
expect_refused(const char *text, const char *path, const char *msg_part)
{
    struct adm_pg_conf *c = (struct adm_pg_conf *)1;
    struct conf_err err;

    assert_int_equal(parse(text, &c, &err), -1);
    assert_null(c);
    assert_string_equal(err.path, path);
    if (strstr(err.msg, msg_part) == NULL)
        fail_msg("%s: message \"%s\" lacks \"%s\"", text, err.msg, msg_part);
}

static void
test_conf_full(void **state)
{
    struct adm_pg_conf *c;
    struct conf_err err;

    (void)state;
    assert_int_equal(parse("{\"postgres\": {\"conninfo\": \"host=/run/pg port=5433 "
                           "dbname='cut over' user=app sslmode=verify-full "
                           "application_name=a\\\\ b connect_timeout=3\", "
                           "\"password_file\": \"pg.pass\", \"fleet\": \"prod-eu\", "
                           "\"instance\": \"proxy-1\", \"start_without\": true, "
                           "\"statement_timeout_ms\": 900}}", &c, &err), 0);
    assert_non_null(c);
    assert_string_equal(c->host, "/run/pg");
    assert_string_equal(c->port, "5433");
    assert_string_equal(c->dbname, "cut over");
    assert_string_equal(c->user, "app");
    assert_string_equal(c->sslmode, "verify-full");
    assert_string_equal(c->application_name, "a b");
    assert_int_equal(c->connect_timeout_ms, 3000);  /* the conninfo's */
    assert_string_equal(c->password_file, "/etc/cutover/pg.pass");
    assert_string_equal(c->fleet, "prod-eu");
    assert_string_equal(c->instance, "proxy-1");
    assert_true(c->start_without);
    assert_int_equal(c->statement_timeout_ms, 900);
    adm_pg_conf_free(c);
}

static void
test_conf_defaults(void **state)
{
    struct adm_pg_conf *c;
    struct conf_err err;

    (void)state;
    assert_int_equal(parse("{\"postgres\": {\"conninfo\": \"dbname=cutover\"}}", &c, &err), 0);
    assert_null(c->host);
    assert_null(c->password_file);
    assert_string_equal(c->fleet, "default");
    assert_true(c->instance[0] != '\0');          /* the host name */
    assert_false(c->start_without);
    assert_int_equal(c->connect_timeout_ms, 5000);
    assert_int_equal(c->statement_timeout_ms, 2000);
    adm_pg_conf_free(c);
    /* "store" without "postgres": the file store */
    c = (struct adm_pg_conf *)1;
    assert_int_equal(parse("{}", &c, &err), 0);
    assert_null(c);
}

static void
test_conf_refused(void **state)
{
    (void)state;
    expect_refused("[]", "store", "must be an object");
    expect_refused("{\"redis\": {}}", "store.redis", "unknown key");
    expect_refused("{\"postgres\": {}}", "store.postgres.conninfo", "is required");
    expect_refused("{\"postgres\": {\"conninfo\": \"\"}}", "store.postgres.conninfo",
                   "empty");
    expect_refused("{\"postgres\": {\"conninfo\": \"host=x password=secret\"}}",
                   "store.postgres.conninfo", "must not hold a password");
    expect_refused("{\"postgres\": {\"conninfo\": \"hots=x\"}}", "store.postgres.conninfo",
                   "unknown key \"hots\"");
    expect_refused("{\"postgres\": {\"conninfo\": \"host=a host=b\"}}",
                   "store.postgres.conninfo", "\"host\" is given twice");
    expect_refused("{\"postgres\": {\"conninfo\": \"host\"}}", "store.postgres.conninfo",
                   "missing \"=\"");
    expect_refused("{\"postgres\": {\"conninfo\": \"dbname='x\"}}", "store.postgres.conninfo",
                   "unterminated");
    expect_refused("{\"postgres\": {\"conninfo\": \"port=0\"}}", "store.postgres.conninfo",
                   "port must be 1..65535");
    expect_refused("{\"postgres\": {\"conninfo\": \"sslmode=maybe\"}}",
                   "store.postgres.conninfo", "sslmode \"maybe\"");
    expect_refused("{\"postgres\": {\"conninfo\": \"host=a,b\"}}", "store.postgres.conninfo",
                   "one server");
    expect_refused("{\"postgres\": {\"conninfo\": \"postgresql://u@h/db\"}}",
                   "store.postgres.conninfo", "URI");
    expect_refused("{\"postgres\": {\"conninfo\": \"connect_timeout=0\"}}",
                   "store.postgres.conninfo", "connect_timeout must be");
    expect_refused("{\"postgres\": {\"conninfo\": \"host=x\", \"fleet\": \"a b\"}}",
                   "store.postgres.fleet", "must be 1..48");
    expect_refused("{\"postgres\": {\"conninfo\": \"host=x\", \"fleet\": "
                   "\"0123456789012345678901234567890123456789012345678\"}}",
                   "store.postgres.fleet", "must be 1..48");
    expect_refused("{\"postgres\": {\"conninfo\": \"host=x\", \"instance\": \"a b\"}}",
                   "store.postgres.instance", "without spaces");
    expect_refused("{\"postgres\": {\"conninfo\": \"host=x\", \"start_without\": 1}}",
                   "store.postgres.start_without", "true or false");
    expect_refused("{\"postgres\": {\"conninfo\": \"host=x\", \"statement_timeout_ms\": 5}}",
                   "store.postgres.statement_timeout_ms", "");
    expect_refused("{\"postgres\": {\"conninfo\": \"host=x\", \"password\": \"s\"}}",
                   "store.postgres.password", "unknown key");
}

static void
test_conf_equal(void **state)
{
    struct adm_pg_conf *a, *b;
    struct conf_err err;

    (void)state;
    assert_int_equal(parse("{\"postgres\": {\"conninfo\": \"host=x\", \"instance\": \"i\"}}",
                           &a, &err), 0);
    b = adm_pg_conf_dup(a);
    assert_true(adm_pg_conf_equal(a, b));
    assert_true(adm_pg_conf_equal(NULL, NULL));
    assert_false(adm_pg_conf_equal(a, NULL));
    b->start_without = true;
    assert_false(adm_pg_conf_equal(a, b));
    b->start_without = false;
    b->statement_timeout_ms++;
    assert_false(adm_pg_conf_equal(a, b));
    b->statement_timeout_ms--;
    b->connect_timeout_ms++;
    assert_false(adm_pg_conf_equal(a, b));
    b->connect_timeout_ms--;
    b->fleet[0] = 'X';
    assert_false(adm_pg_conf_equal(a, b));
    strcpy(b->fleet, a->fleet);
    b->instance[0] = 'X';
    assert_false(adm_pg_conf_equal(a, b));
    strcpy(b->instance, a->instance);
    b->password_file = strdup("/p");
    assert_false(adm_pg_conf_equal(a, b));
    free(b->password_file);
    b->password_file = NULL;
    free(b->conninfo);
    b->conninfo = strdup("host=y");
    assert_false(adm_pg_conf_equal(a, b));
    adm_pg_conf_free(a);
    adm_pg_conf_free(b);
}

static void
test_schema_plan(void **state)
{
    const struct adm_pg_migration *m;
    size_t n, first, i;
    char err[256];
    int latest = adm_pg_schema_latest();

    (void)state;
    m = adm_pg_migrations(&n);
    assert_true(n >= 1);
    for (i = 0; i < n; i++) {                      /* 1, 2, 3, ... in order */
        assert_int_equal(m[i].version, (int)i + 1);
        assert_non_null(m[i].sql[0]);
    }
    assert_int_equal(latest, m[n - 1].version);
    assert_int_equal(adm_pg_schema_plan(0, &first, err, sizeof(err)), 0);
    assert_int_equal(first, 0);                    /* everything */
    assert_int_equal(adm_pg_schema_plan(latest, &first, err, sizeof(err)), 0);
    assert_int_equal(first, n);                    /* nothing */
    if (latest > 1) {
        assert_int_equal(adm_pg_schema_plan(latest - 1, &first, err, sizeof(err)), 0);
        assert_int_equal(first, n - 1);
    }
    assert_int_equal(adm_pg_schema_plan(latest + 1, &first, err, sizeof(err)), -1);
    {
        char want[128];

        snprintf(want, sizeof(want), "version %d, newer than this cutoverd's (%d)",
                 latest + 1, latest);
        if (strstr(err, want) == NULL)
            fail_msg("\"%s\" lacks \"%s\"", err, want);
    }
    assert_int_equal(adm_pg_schema_plan(-1, &first, err, sizeof(err)), -1);
}

static void
test_safe(void **state)
{
    struct adm_svc_state old = { 2000, ADM_ST_STEADY, 4 };
    struct adm_change ch = { .weight_bp = 1000, .state = ADM_ST_STEADY };

    (void)state;
    assert_true(adm_fleet_is_safe(&old, &ch));        /* lower */
    ch.weight_bp = 3000;
    assert_false(adm_fleet_is_safe(&old, &ch));       /* raise */
    ch.weight_bp = 2000;
    assert_false(adm_fleet_is_safe(&old, &ch));       /* same weight, no latch */
    ch.state = ADM_ST_FROZEN;
    assert_true(adm_fleet_is_safe(&old, &ch));        /* freeze */
    old.weight_bp = 0;
    ch.weight_bp = 0;
    ch.state = ADM_ST_ROLLED_BACK;
    assert_true(adm_fleet_is_safe(&old, &ch));        /* rollback at 0 */
    old.state = ADM_ST_ROLLED_BACK;
    ch.state = ADM_ST_STEADY;
    assert_false(adm_fleet_is_safe(&old, &ch));       /* clearing a latch: a raise */
}

static void
test_reconcile(void **state)
{
    const struct adm_svc_state steady20 = { 2000, ADM_ST_STEADY, 5 },
                               steady10 = { 1000, ADM_ST_STEADY, 6 },
                               steady30 = { 3000, ADM_ST_STEADY, 7 },
                               rolled = { 0, ADM_ST_ROLLED_BACK, 6 },
                               frozen20 = { 2000, ADM_ST_FROZEN, 8 },
                               rolled_db = { 0, ADM_ST_ROLLED_BACK, 9 };

    (void)state;
    /* nothing lowered here: the database is the truth */
    assert_int_equal(adm_fleet_reconcile(&steady20, false, &steady20), ADM_FLEET_KEEP);
    assert_int_equal(adm_fleet_reconcile(&steady20, false, &steady30), ADM_FLEET_ADOPT);
    assert_int_equal(adm_fleet_reconcile(&rolled, false, &steady30), ADM_FLEET_ADOPT);
    /* a latch wins, on either side */
    assert_int_equal(adm_fleet_reconcile(&rolled, true, &steady30), ADM_FLEET_WRITE);
    assert_int_equal(adm_fleet_reconcile(&rolled, true, &steady10), ADM_FLEET_WRITE);
    assert_int_equal(adm_fleet_reconcile(&steady10, true, &rolled_db), ADM_FLEET_ADOPT);
    assert_int_equal(adm_fleet_reconcile(&steady10, true, &frozen20), ADM_FLEET_ADOPT);
    /* both latched: the lower weight */
    assert_int_equal(adm_fleet_reconcile(&rolled, true, &frozen20), ADM_FLEET_WRITE);
    assert_int_equal(adm_fleet_reconcile(&frozen20, true, &rolled_db), ADM_FLEET_ADOPT);
    /* neither: the lower weight */
    assert_int_equal(adm_fleet_reconcile(&steady10, true, &steady30), ADM_FLEET_WRITE);
    assert_int_equal(adm_fleet_reconcile(&steady30, true, &steady10), ADM_FLEET_ADOPT);
}

/* The payload as the writing statement's json_build_object() makes it
 * (PostgreSQL's own spacing), read back into the row. */
static void
test_notify_payload(void **state)
{
    struct adm_pg_row row;

    (void)state;
    assert_int_equal(adm_pg_row_from_notify(
        "{\"service\" : \"web\", \"weight_bp\" : 1000, \"state\" : \"rolled_back\", "
        "\"generation\" : 17, \"plan\" : null, \"by\" : \"proxy-2\", "
        "\"at_ms\" : 1765000000123.456}", &row), 0);
    assert_string_equal(row.e.name, "web");
    assert_int_equal(row.e.weight_bp, 1000);
    assert_int_equal(row.e.state, ADM_ST_ROLLED_BACK);
    assert_int_equal(row.e.generation, 17);
    assert_false(row.e.has_plan);
    assert_string_equal(row.by, "proxy-2");
    assert_true(row.at_ms > 1765000000123.0 && row.at_ms < 1765000000124.0);
    /* a plan's progress travels with it */
    assert_int_equal(adm_pg_row_from_notify(
        "{\"service\" : \"api\", \"weight_bp\" : 2500, \"state\" : \"progressing\", "
        "\"generation\" : 3, \"plan\" : {\"state\": \"progressing\", \"step\": 2, "
        "\"baked_ms\": 120000, \"requests\": 4242}, \"by\" : \"a\", \"at_ms\" : 1}", &row), 0);
    assert_true(row.e.has_plan);
    assert_int_equal(row.e.plan_state, HL_PLAN_PROGRESSING);
    assert_int_equal(row.e.plan_step, 2);
    assert_int_equal(row.e.plan_baked_ms, 120000);
    assert_int_equal(row.e.plan_requests, 4242);
    /* who and when are optional; what a follower applies is not */
    assert_int_equal(adm_pg_row_from_notify("{\"service\":\"web\",\"weight_bp\":0,"
                                            "\"state\":\"steady\",\"generation\":1}", &row), 0);
    assert_string_equal(row.by, "");
    assert_int_equal(adm_pg_row_from_notify("", &row), -1);
    assert_int_equal(adm_pg_row_from_notify("not json", &row), -1);
    assert_int_equal(adm_pg_row_from_notify("[1]", &row), -1);
    assert_int_equal(adm_pg_row_from_notify("{\"service\":\"web\",\"weight_bp\":0,"
                                            "\"state\":\"steady\"}", &row), -1);
    assert_int_equal(adm_pg_row_from_notify("{\"service\":\"web\",\"weight_bp\":\"0\","
                                            "\"state\":\"steady\",\"generation\":1}", &row), -1);
    assert_int_equal(adm_pg_row_from_notify("{\"service\":\"web\",\"weight_bp\":10001,"
                                            "\"state\":\"steady\",\"generation\":1}", &row), -1);
    assert_int_equal(adm_pg_row_from_notify("{\"service\":\"web\",\"weight_bp\":-1,"
                                            "\"state\":\"steady\",\"generation\":1}", &row), -1);
    assert_int_equal(adm_pg_row_from_notify("{\"service\":\"web\",\"weight_bp\":5,"
                                            "\"state\":\"sleepy\",\"generation\":1}", &row), -1);
    assert_int_equal(adm_pg_row_from_notify("{\"service\":\"web\",\"weight_bp\":5,"
                                            "\"state\":\"steady\",\"generation\":-4}", &row), -1);
    assert_int_equal(adm_pg_row_from_notify("{\"service\":\"web\",\"weight_bp\":5,"
                                            "\"state\":\"steady\",\"generation\":1,"
                                            "\"plan\":{\"state\":\"baking\"}}", &row), -1);
}

/* The largest row a notification can carry stays far under NOTIFY's
 * payload limit (8000 bytes): 63-byte names, the largest numbers. */
static void
test_notify_payload_size(void **state)
{
    char name[64], by[64];
    json_t *j;
    char *text;
    struct adm_pg_row row;

    (void)state;
    memset(name, 'n', 63);
    name[63] = '\0';
    memset(by, 'b', 63);
    by[63] = '\0';
    j = json_pack("{s:s, s:i, s:s, s:I, s:{s:s, s:i, s:I, s:I}, s:s, s:f}", "service", name,
                  "weight_bp", 10000, "state", "rolled_back", "generation",
                  (json_int_t)INT64_MAX, "plan", "state", "progressing", "step", 31,
                  "baked_ms", (json_int_t)INT64_MAX, "requests", (json_int_t)INT64_MAX, "by",
                  by, "at_ms", 1765000000123.456);
    text = json_dumps(j, JSON_INDENT(1));      /* spaces, as the server's */
    assert_non_null(text);
    assert_true(strlen(text) < 1000);
    assert_int_equal(adm_pg_row_from_notify(text, &row), 0);
    assert_string_equal(row.e.name, name);
    assert_int_equal(row.e.generation, (uint64_t)INT64_MAX);
    free(text);
    json_decref(j);
}

static void
test_notified(void **state)
{
    const struct adm_svc_state here = { 2000, ADM_ST_STEADY, 6 };

    (void)state;
    assert_int_equal(adm_fleet_notified(&here, false, false, 7), ADM_FLEET_NT_APPLY);
    assert_int_equal(adm_fleet_notified(&here, false, false, 9), ADM_FLEET_NT_APPLY);
    assert_int_equal(adm_fleet_notified(&here, false, false, 6), ADM_FLEET_NT_KNOWN);
    assert_int_equal(adm_fleet_notified(&here, false, false, 2), ADM_FLEET_NT_KNOWN);
    /* a write in flight: its answer first, whatever the generation */
    assert_int_equal(adm_fleet_notified(&here, false, true, 7), ADM_FLEET_NT_LATER);
    assert_int_equal(adm_fleet_notified(&here, true, true, 7), ADM_FLEET_NT_LATER);
    /* lowered here and not written: the reconcile's rule */
    assert_int_equal(adm_fleet_notified(&here, true, false, 7), ADM_FLEET_NT_RECONCILE);
    assert_int_equal(adm_fleet_notified(&here, true, false, 3), ADM_FLEET_NT_RECONCILE);
}

/* A reference model: notifications of rows 1..N arrive in any order, some
 * lost (a listener's session dropped); a follower that applies by
 * adm_fleet_notified() ends on the newest it received, and never goes
 * back to an older row on the way. */
static void
test_notified_any_order(void **state)
{
    enum { N = 12 };
    uint64_t order[N], x = 88172645463325252ULL;
    unsigned trial, i, k;

    (void)state;
    for (trial = 0; trial < 2000; trial++) {
        struct adm_svc_state here = { 0, ADM_ST_STEADY, 0 };
        uint64_t newest = 0, t;

        for (i = 0; i < N; i++)
            order[i] = i + 1;
        for (i = N - 1; i > 0; i--) {          /* xorshift64 shuffle */
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            k = (unsigned)(x % (i + 1));
            t = order[i];
            order[i] = order[k];
            order[k] = t;
        }
        for (i = 0; i < N; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if (x % 4 == 0)
                continue;                      /* lost */
            if (order[i] > newest)
                newest = order[i];
            if (adm_fleet_notified(&here, false, false, order[i]) == ADM_FLEET_NT_APPLY) {
                assert_true(order[i] > here.generation);
                here.generation = order[i];
                here.weight_bp = (uint32_t)order[i] * 10;   /* the row's own weight */
            }
        }
        assert_int_equal(here.generation, newest);
        assert_int_equal(here.weight_bp, (uint32_t)newest * 10);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conf_full),
        cmocka_unit_test(test_conf_defaults),
        cmocka_unit_test(test_conf_refused),
        cmocka_unit_test(test_conf_equal),
        cmocka_unit_test(test_schema_plan),
        cmocka_unit_test(test_safe),
        cmocka_unit_test(test_reconcile),
        cmocka_unit_test(test_notify_payload),
        cmocka_unit_test(test_notify_payload_size),
        cmocka_unit_test(test_notified),
        cmocka_unit_test(test_notified_any_order),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
