/*
 * Tests for the control plane (admin/control.c, commands.c, plan_ctl.c,
 * change.c, request.c; and the audit log it writes, admin/audit.c):
 * commands change weight, latch and generation as documented; the ordering
 * rule (raise: persist then apply; lower: apply then persist) is observed
 * from inside the apply callback; refused requests change nothing at all;
 * the state file wins at startup; the audit log records every change and
 * its tail is read correctly across block boundaries; a state the disk did
 * not take is kept in the journal, reported dirty and saved by the tick or
 * the next save, and restored by a restart; audit entries the log refused
 * wait and are written in order; generations without an entry (a crash
 * between the save and the audit) get one at startup.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "tests/unit/util.h"
#include "admin/audit.h"
#include "admin/control.h"
#include "admin/persist.h"
#include "admin/tokens.h"
#include "admin/store.h"
#include "health/conf.h"
#include "lib/log.h"

#define MAX_CALLS 32

/* What the recording ops saw, in call order. */
struct call {
    char kind;                   /* 'a' apply, 's' switched */
    unsigned svc;
    struct adm_svc_state st;     /* apply: the state given */
    long file_bp;                /* apply: weight of <svc> in the state file at
                                  * that moment, -1 when absent */
    enum rt_side left;           /* switched */
    int drain_s;                 /* switched */
};

struct fx {
    char dir[PATH_MAX];          /* private temporary directory */
    char state[PATH_MAX + 64];   /* state file */
    char audit[PATH_MAX + 64];   /* audit file */
    const char *names[4];
    unsigned n;
    bool new_healthy;
    unsigned nstatus;            /* status callback count */
    unsigned ncalls;
    struct call calls[MAX_CALLS];
    struct adm_ops ops;
    struct adm_control *c;
};

/* Fixtures still alive: a failed assertion leaves its test early, and the
 * group teardown then removes what it left behind. */
static struct fx *live[8];

/* ---- helpers ------------------------------------------------------------ */

/* Returns the whole file as a new string, or NULL when it does not exist. */
static char *
slurp(const char *path)
{
    FILE *fp = fopen(path, "rb");
    char *buf;
    long len;

    if (fp == NULL)
        return NULL;
    assert_int_equal(fseek(fp, 0, SEEK_END), 0);
    len = ftell(fp);
    assert_true(len >= 0);
    rewind(fp);
    buf = malloc((size_t)len + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)len, fp), (size_t)len);
    buf[len] = '\0';
    fclose(fp);
    return buf;
}

static void
write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");

    assert_non_null(fp);
    assert_int_equal(fwrite(text, 1, strlen(text), fp), strlen(text));
    assert_int_equal(fclose(fp), 0);
}

/* From now on the state file's directory cannot exist: it (with the state
 * file and its journal) is replaced by a regular file. */
static void
block_state_dir(struct fx *f)
{
    char blocker[PATH_MAX + 64];

    snprintf(blocker, sizeof(blocker), "%s/state", f->dir);
    rm_rf(blocker);
    write_file(blocker, "not a directory");
}

/* Weight of service <name> in the state file, -1 when absent, -2 when the
 * file cannot be read. */
static long
file_weight(const char *file, const char *name, int *st, uint64_t *gen)
{
    struct adm_store_entry *e = NULL;
    unsigned n = 0, i;
    char err[256];
    long w = -1;

    if (adm_store_load(file, &e, &n, err, sizeof(err)) != 0)
        return -2;
    for (i = 0; i < n; i++) {
        if (strcmp(e[i].name, name) == 0) {
            w = (long)e[i].weight_bp;
            if (st != NULL)
                *st = e[i].state;
            if (gen != NULL)
                *gen = e[i].generation;
        }
    }
    free(e);
    return w;
}

static void
on_apply(void *arg, unsigned svc, const struct adm_svc_state *st)
{
    struct fx *f = arg;
    struct call *c;

    assert_true(f->ncalls < MAX_CALLS);
    c = &f->calls[f->ncalls++];
    c->kind = 'a';
    c->svc = svc;
    c->st = *st;
    c->file_bp = file_weight(f->state, f->names[svc], NULL, NULL);
}

static bool
on_side_healthy(void *arg, unsigned svc, enum rt_side side)
{
    struct fx *f = arg;

    return side == RT_LEGACY || f->new_healthy;
}

static void
on_status(void *arg, unsigned svc, json_t *obj)
{
    struct fx *f = arg;

    f->nstatus++;
    json_object_set_new(obj, "mode", json_string(svc == 0 ? "http" : "tcp"));
}

static unsigned
on_switched(void *arg, unsigned svc, enum rt_side left, int *drain_s)
{
    struct fx *f = arg;
    struct call *c;

    assert_true(f->ncalls < MAX_CALLS);
    c = &f->calls[f->ncalls++];
    c->kind = 's';
    c->svc = svc;
    c->left = left;
    c->drain_s = *drain_s;
    return 0;
}

static struct fx *
fx_new(void)
{
    struct fx *f = calloc(1, sizeof(*f));
    const char *tmp = getenv("TMPDIR");
    size_t i;

    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "%s/test_adm_control.XXXXXX",
             tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->state, sizeof(f->state), "%s/state/state.json", f->dir);
    snprintf(f->audit, sizeof(f->audit), "%s/audit.jsonl", f->dir);
    f->new_healthy = true;
    f->ops = (struct adm_ops){ .apply = on_apply, .side_healthy = on_side_healthy,
                               .status = on_status, .switched = on_switched };
    for (i = 0; i < sizeof(live) / sizeof(live[0]); i++) {
        if (live[i] == NULL) {
            live[i] = f;
            break;
        }
    }
    assert_true(i < sizeof(live) / sizeof(live[0]));
    return f;
}

/* Creates the control plane for services <names> with <initial_bp>. */
static void
fx_start(struct fx *f, unsigned n, const char *const *names, const uint32_t *initial_bp)
{
    char err[512] = "";
    unsigned i;

    f->n = n;
    for (i = 0; i < n; i++)
        f->names[i] = names[i];
    f->c = adm_control_new(names, initial_bp, n, f->state, f->audit, &f->ops, f,
                           err, sizeof(err));
    if (f->c == NULL)
        fail_msg("adm_control_new: %s", err);
    assert_int_equal(f->ncalls, 0);    /* creation never calls the data plane */
}

static struct fx *
fx_one(uint32_t bp)
{
    static const char *const names[] = { "web" };
    struct fx *f = fx_new();

    fx_start(f, 1, names, &bp);
    return f;
}

static struct fx *
fx_two(void)
{
    static const char *const names[] = { "a", "b" };
    static const uint32_t bp[] = { 0, 0 };
    struct fx *f = fx_new();

    fx_start(f, 2, names, bp);
    return f;
}

static void
fx_free(struct fx *f)
{
    size_t i;

    for (i = 0; i < sizeof(live) / sizeof(live[0]); i++) {
        if (live[i] == f)
            live[i] = NULL;
    }
    adm_control_free(f->c);
    rm_rf(f->dir);
    free(f);
}

static int
teardown_group(void **state)
{
    size_t i;

    for (i = 0; i < sizeof(live) / sizeof(live[0]); i++) {
        if (live[i] != NULL)
            fx_free(live[i]);
    }
    return 0;
}

/* Runs one request line and returns the parsed reply; checks that the reply
 * is a single line of JSON. */
static json_t *
run(struct fx *f, const char *line)
{
    char *out = adm_control_exec_line(f->c, line, strlen(line), "uid:0");
    json_t *r;
    json_error_t je;

    assert_non_null(out);
    assert_null(strchr(out, '\n'));
    r = json_loads(out, 0, &je);
    if (r == NULL)
        fail_msg("reply is not JSON: %s", out);
    free(out);
    assert_true(json_is_object(r));
    return r;
}

static void
expect_ok(json_t *r)
{
    if (!json_is_true(json_object_get(r, "ok"))) {
        char *s = json_dumps(r, JSON_COMPACT);

        fail_msg("expected ok, got %s", s);
    }
}

/* Asserts that <r> is an error whose text contains <msg>; frees <r>. */
static void
expect_error(json_t *r, const char *msg)
{
    const char *e = json_string_value(json_object_get(r, "error"));

    assert_true(json_is_false(json_object_get(r, "ok")));
    assert_non_null(e);
    if (strstr(e, msg) == NULL)
        fail_msg("error \"%s\" lacks \"%s\"", e, msg);
    json_decref(r);
}

/* Runs <line> <n> times; each must succeed. */
static void
run_ok_n(struct fx *f, const char *line, unsigned n)
{
    json_t *r;

    while (n-- > 0) {
        r = run(f, line);
        expect_ok(r);
        json_decref(r);
    }
}

static double
num(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);

    assert_true(json_is_number(v));
    return json_number_value(v);
}

static void
assert_state(struct fx *f, unsigned svc, uint32_t bp, enum adm_state st, uint64_t gen)
{
    const struct adm_svc_state *s = adm_control_state(f->c, svc);

    assert_int_equal(s->weight_bp, bp);
    assert_int_equal(s->state, st);
    assert_true(s->generation == gen);
}

/* ---- commands ----------------------------------------------------------- */

static void
test_weight_sets_state_and_persists(void **state)
{
    struct fx *f = fx_one(0);
    json_t *r;
    int st = -1;
    uint64_t gen = 0;

    r = run(f, "{\"cmd\":\"weight\",\"percent\":12.5}");
    expect_ok(r);
    assert_string_equal(json_string_value(json_object_get(r, "service")), "web");
    assert_true(num(r, "weight") == 12.5);
    assert_true(num(r, "previous_weight") == 0);
    assert_string_equal(json_string_value(json_object_get(r, "state")), "steady");
    assert_int_equal(json_integer_value(json_object_get(r, "generation")), 1);
    json_decref(r);
    assert_state(f, 0, 1250, ADM_ST_STEADY, 1);

    /* Persisted: the file says the same. */
    assert_int_equal(file_weight(f->state, "web", &st, &gen), 1250);
    assert_int_equal(st, ADM_ST_STEADY);
    assert_true(gen == 1);

    /* Applied once with the new state. */
    assert_int_equal(f->ncalls, 1);
    assert_int_equal(f->calls[0].kind, 'a');
    assert_int_equal(f->calls[0].st.weight_bp, 1250);
    assert_true(f->calls[0].st.generation == 1);

    /* An integer percent and the largest two-decimal value below 100. */
    expect_ok(r = run(f, "{\"cmd\":\"weight\",\"service\":\"web\",\"percent\":99.99}"));
    json_decref(r);
    assert_state(f, 0, 9999, ADM_ST_STEADY, 2);
    expect_ok(r = run(f, "{\"cmd\":\"weight\",\"percent\":0}"));
    assert_true(num(r, "previous_weight") == 99.99);
    json_decref(r);
    assert_state(f, 0, 0, ADM_ST_STEADY, 3);
    fx_free(f);
}

static void
test_raise_persists_first_lower_applies_first(void **state)
{
    struct fx *f = fx_one(0);
    json_t *r;

    /* Raise 0 -> 10: the file already holds 10 when apply runs. */
    expect_ok(r = run(f, "{\"cmd\":\"weight\",\"percent\":10}"));
    json_decref(r);
    assert_int_equal(f->ncalls, 1);
    assert_int_equal(f->calls[0].file_bp, 1000);

    /* Lower 10 -> 5: apply runs while the file still holds 10. */
    expect_ok(r = run(f, "{\"cmd\":\"weight\",\"percent\":5}"));
    json_decref(r);
    assert_int_equal(f->ncalls, 2);
    assert_int_equal(f->calls[1].st.weight_bp, 500);
    assert_int_equal(f->calls[1].file_bp, 1000);
    assert_int_equal(file_weight(f->state, "web", NULL, NULL), 500);

    /* Rollback is a lowering: applied before the file changes. */
    expect_ok(r = run(f, "{\"cmd\":\"rollback\"}"));
    json_decref(r);
    assert_int_equal(f->calls[2].st.weight_bp, 0);
    assert_int_equal(f->calls[2].file_bp, 500);
    assert_int_equal(file_weight(f->state, "web", NULL, NULL), 0);
    /* and new's tunnels close after rollback.drain_s */
    assert_int_equal(f->calls[3].kind, 's');
    assert_int_equal(f->calls[3].left, RT_NEW);
    assert_int_equal(f->calls[3].drain_s, ADM_DRAIN_ROLLBACK);

    /* Promote is a raise. */
    expect_ok(r = run(f, "{\"cmd\":\"promote\"}"));
    json_decref(r);
    assert_int_equal(f->calls[4].file_bp, 10000);
    fx_free(f);
}

static void
test_unsaved_raise_is_refused_unsaved_lowering_stays(void **state)
{
    struct fx *f = fx_one(2000);
    char *audit_before;
    json_t *r;

    block_state_dir(f);

    r = run(f, "{\"cmd\":\"weight\",\"percent\":30}");
    expect_error(r, "cannot save state: ");
    assert_int_equal(f->ncalls, 0);                /* nothing applied */
    assert_state(f, 0, 2000, ADM_ST_STEADY, 0);   /* nothing changed */
    assert_null(slurp(f->audit));                  /* nothing audited */
    r = run(f, "{\"cmd\":\"promote\"}");
    expect_error(r, "cannot save state: ");
    r = run(f, "{\"cmd\":\"switch\",\"to\":\"new\"}");
    expect_error(r, "cannot save state: ");
    assert_int_equal(f->ncalls, 0);
    assert_state(f, 0, 2000, ADM_ST_STEADY, 0);

    /* A lowering takes effect anyway (safety first), and says it was not saved. */
    r = run(f, "{\"cmd\":\"weight\",\"percent\":10}");
    expect_error(r, "applied but not saved: ");
    assert_int_equal(f->ncalls, 1);
    assert_int_equal(f->calls[0].st.weight_bp, 1000);
    assert_state(f, 0, 1000, ADM_ST_STEADY, 1);
    audit_before = slurp(f->audit);                /* the change happened: audited */
    assert_non_null(audit_before);
    assert_non_null(strstr(audit_before, "\"to\":10"));
    free(audit_before);

    r = run(f, "{\"cmd\":\"rollback\",\"reason\":\"disk full\"}");
    expect_error(r, "applied but not saved: ");
    assert_state(f, 0, 0, ADM_ST_ROLLED_BACK, 2);
    assert_int_equal(f->ncalls, 3);                /* applied, and new's tunnels drained */
    fx_free(f);
}

static void
test_rollback_latches_and_weight_clears_it(void **state)
{
    struct fx *f = fx_one(0);
    json_t *r;
    int st = -1;

    expect_ok(r = run(f, "{\"cmd\":\"weight\",\"percent\":20}"));
    json_decref(r);
    expect_ok(r = run(f, "{\"cmd\":\"rollback\",\"reason\":\"5xx spike\"}"));
    assert_true(num(r, "weight") == 0);
    assert_true(num(r, "previous_weight") == 20);
    assert_string_equal(json_string_value(json_object_get(r, "state")), "rolled_back");
    json_decref(r);
    assert_state(f, 0, 0, ADM_ST_ROLLED_BACK, 2);
    assert_int_equal(file_weight(f->state, "web", &st, NULL), 0);
    assert_int_equal(st, ADM_ST_ROLLED_BACK);

    /* A second rollback keeps the latch and still counts as a change. */
    expect_ok(r = run(f, "{\"cmd\":\"rollback\"}"));
    json_decref(r);
    assert_state(f, 0, 0, ADM_ST_ROLLED_BACK, 3);

    /* An explicit weight clears the latch. */
    expect_ok(r = run(f, "{\"cmd\":\"weight\",\"percent\":5}"));
    assert_string_equal(json_string_value(json_object_get(r, "state")), "steady");
    json_decref(r);
    assert_state(f, 0, 500, ADM_ST_STEADY, 4);
    assert_int_equal(file_weight(f->state, "web", &st, NULL), 500);
    assert_int_equal(st, ADM_ST_STEADY);
    fx_free(f);
}

static void
test_promote(void **state)
{
    struct fx *f = fx_one(1000);
    json_t *r;

    expect_ok(r = run(f, "{\"cmd\":\"promote\"}"));
    assert_true(num(r, "weight") == 100);
    assert_true(json_is_integer(json_object_get(r, "weight")));
    assert_true(num(r, "previous_weight") == 10);
    assert_string_equal(json_string_value(json_object_get(r, "state")), "promoted");
    json_decref(r);
    assert_state(f, 0, 10000, ADM_ST_PROMOTED, 1);
    assert_int_equal(f->ncalls, 1);
    assert_int_equal(f->calls[0].file_bp, 10000);

    /* weight 100 is a plain weight: state steady, the promoted latch cleared. */
    expect_ok(r = run(f, "{\"cmd\":\"weight\",\"percent\":100}"));
    json_decref(r);
    assert_state(f, 0, 10000, ADM_ST_STEADY, 2);
    fx_free(f);
}

static void
test_switch(void **state)
{
    struct fx *f = fx_one(1000);
    json_t *r;

    /* Refused while new has no healthy server, and nothing moves. */
    f->new_healthy = false;
    r = run(f, "{\"cmd\":\"switch\",\"to\":\"new\"}");
    expect_error(r, "new has no healthy server; use --force");
    r = run(f, "{\"cmd\":\"switch\",\"to\":\"new\",\"force\":false,\"drain_s\":3}");
    expect_error(r, "new has no healthy server; use --force");
    assert_int_equal(f->ncalls, 0);
    assert_state(f, 0, 1000, ADM_ST_STEADY, 0);
    assert_null(slurp(f->state));
    assert_null(slurp(f->audit));

    /* Forced: all traffic to new, then legacy is told it was left. */
    expect_ok(r = run(f, "{\"cmd\":\"switch\",\"to\":\"new\",\"force\":true,\"drain_s\":30}"));
    assert_true(num(r, "weight") == 100);
    assert_string_equal(json_string_value(json_object_get(r, "state")), "promoted");
    json_decref(r);
    assert_state(f, 0, 10000, ADM_ST_PROMOTED, 1);
    assert_int_equal(f->ncalls, 2);
    assert_int_equal(f->calls[0].kind, 'a');
    assert_int_equal(f->calls[0].file_bp, 10000);
    assert_int_equal(f->calls[1].kind, 's');
    assert_int_equal(f->calls[1].left, RT_LEGACY);
    assert_int_equal(f->calls[1].drain_s, 30);

    /* Back to legacy (no health check needed), tunnels left open by default. */
    expect_ok(r = run(f, "{\"cmd\":\"switch\",\"to\":\"legacy\"}"));
    assert_true(num(r, "weight") == 0);
    assert_string_equal(json_string_value(json_object_get(r, "state")), "steady");
    json_decref(r);
    assert_state(f, 0, 0, ADM_ST_STEADY, 2);
    assert_int_equal(f->ncalls, 4);
    assert_int_equal(f->calls[2].kind, 'a');
    assert_int_equal(f->calls[2].file_bp, 10000);  /* lowering: applied first */
    assert_int_equal(f->calls[3].kind, 's');
    assert_int_equal(f->calls[3].left, RT_NEW);
    assert_int_equal(f->calls[3].drain_s, -1);

    /* Healthy: no force needed; drain 0 closes tunnels at once. */
    f->new_healthy = true;
    expect_ok(r = run(f, "{\"cmd\":\"switch\",\"to\":\"new\",\"drain_s\":0}"));
    json_decref(r);
    assert_int_equal(f->calls[5].kind, 's');
    assert_int_equal(f->calls[5].drain_s, 0);
    fx_free(f);
}

/* ---- refused requests --------------------------------------------------- */

static const struct {
    const char *line;
    const char *msg;             /* substring of the error */
} bad[] = {
    { "{\"cmd\":\"weight\",\"service\":\"a\",\"percent\":10", "bad JSON: " },
    { "{\"cmd\":\"weight\" \"service\":\"a\"}", "at column " },
    { "", "bad JSON: " },
    { "[\"weight\"]", "request must be a JSON object, got an array" },
    { "{\"cmd\":\"weight\",\"service\":\"a\",\"percent\":10,\"percent\":20}", "bad JSON: " },
    { "{\"service\":\"a\",\"percent\":10}", "missing \"cmd\"" },
    { "{\"cmd\":5}", "\"cmd\" must be a string" },
    { "{\"cmd\":\"fly\",\"service\":\"a\"}", "unknown command \"fly\"" },
    { "{\"cmd\":\"weight\",\"service\":\"a\",\"percent\":101}",
      "percent must be 0..100 with at most two decimals, got 101" },
    { "{\"cmd\":\"weight\",\"service\":\"a\",\"percent\":100.01}", "percent must be 0..100" },
    { "{\"cmd\":\"weight\",\"service\":\"a\",\"percent\":-1}", "got -1" },
    { "{\"cmd\":\"weight\",\"service\":\"a\",\"percent\":-0.01}", "percent must be 0..100" },
    { "{\"cmd\":\"weight\",\"service\":\"a\",\"percent\":10.005}", "got 10.005" },
    { "{\"cmd\":\"weight\",\"service\":\"a\",\"percent\":1e400}", "bad JSON: " },
    { "{\"cmd\":\"weight\",\"service\":\"a\",\"percent\":\"10\"}",
      "\"percent\" must be a number, got a string" },
    { "{\"cmd\":\"weight\",\"service\":\"a\",\"percent\":null}", "must be a number, got null" },
    { "{\"cmd\":\"weight\",\"service\":\"a\",\"percent\":true}", "must be a number" },
    { "{\"cmd\":\"weight\",\"service\":\"a\"}", "missing \"percent\"" },
    { "{\"cmd\":\"weight\",\"service\":\"a\",\"percent\":10,\"pecent\":3}",
      "unknown key in \"weight\" request: \"pecent\"" },
    { "{\"cmd\":\"weight\",\"service\":\"a\",\"percent\":10,\"x\":1,\"y\":2}",
      "unknown keys in \"weight\" request: \"x\", \"y\"" },
    { "{\"x\":1,\"cmd\":\"weight\",\"service\":\"a\",\"y\":2,\"percent\":10,\"z\":3}",
      "unknown keys in \"weight\" request: \"x\", \"y\", \"z\"" },
    { "{\"cmd\":\"weight\",\"service\":\"c\",\"percent\":10}",
      "unknown service \"c\" (one of: a, b)" },
    { "{\"cmd\":\"weight\",\"percent\":10}", "service required (one of: a, b)" },
    { "{\"cmd\":\"weight\",\"service\":7,\"percent\":10}", "\"service\" must be a string" },
    { "{\"cmd\":\"rollback\"}", "service required (one of: a, b)" },
    { "{\"cmd\":\"rollback\",\"service\":\"a\",\"reason\":5}", "\"reason\" must be a string" },
    /* a reason is one line of printable text: no line that looks like an
     * audit entry of its own, no escape sequence, no C1 control, no
     * reordering, no NUL */
    { "{\"cmd\":\"rollback\",\"service\":\"a\",\"reason\":\"x\\n2026-12-06T00:00:00Z  a  "
      "uid:0  promote  0.00% -> 100.00%\"}", "\"reason\" must be one line of printable text: "
      "byte 1 is a control character" },
    { "{\"cmd\":\"rollback\",\"service\":\"a\",\"reason\":\"ok\\u001b[2J\"}", "byte 2 is" },
    { "{\"cmd\":\"rollback\",\"service\":\"a\",\"reason\":\"\\u009b31m\"}", "byte 0 is" },
    { "{\"cmd\":\"rollback\",\"service\":\"a\",\"reason\":\"a\\u202eb\"}", "byte 1 is" },
    { "{\"cmd\":\"rollback\",\"service\":\"a\",\"reason\":\"tab\\there\"}", "byte 3 is" },
    { "{\"cmd\":\"rollback\",\"service\":\"a\",\"reason\":\"a\\u2028b\"}", "byte 1 is" },
    { "{\"cmd\":\"rollback\",\"service\":\"a\",\"percent\":0}",
      "unknown key in \"rollback\" request: \"percent\"" },
    { "{\"cmd\":\"promote\",\"service\":\"a\",\"drain_s\":1}",
      "unknown key in \"promote\" request: \"drain_s\"" },
    { "{\"cmd\":\"promote\",\"service\":\"a\",\"force\":1}",
      "\"force\" must be a boolean, got an integer" },
    { "{\"cmd\":\"weight\",\"service\":\"a\",\"percent\":5,\"force\":\"yes\"}",
      "\"force\" must be a boolean, got a string" },
    { "{\"cmd\":\"switch\",\"service\":\"a\",\"to\":\"blue\"}",
      "\"to\" must be \"new\" or \"legacy\", got \"blue\"" },
    { "{\"cmd\":\"switch\",\"service\":\"a\"}", "missing \"to\"" },
    { "{\"cmd\":\"switch\",\"service\":\"a\",\"to\":\"new\",\"drain_s\":-5}",
      "\"drain_s\" must be 0..2147483647 seconds, got -5" },
    { "{\"cmd\":\"switch\",\"service\":\"a\",\"to\":\"new\",\"drain_s\":\"5\"}",
      "\"drain_s\" must be an integer" },
    { "{\"cmd\":\"switch\",\"service\":\"a\",\"to\":\"new\",\"drain_s\":1.5}",
      "\"drain_s\" must be an integer" },
    { "{\"cmd\":\"switch\",\"service\":\"a\",\"to\":\"new\",\"force\":\"yes\"}",
      "\"force\" must be a boolean" },
    { "{\"cmd\":\"audit\",\"n\":0}", "\"n\" must be 1..10000, got 0" },
    { "{\"cmd\":\"audit\",\"n\":10001}", "\"n\" must be 1..10000" },
    { "{\"cmd\":\"audit\",\"n\":\"5\"}", "\"n\" must be an integer" },
    { "{\"cmd\":\"status\",\"verbose\":true}", "unknown key in \"status\" request" },
    { "{\"cmd\":\"plan\",\"service\":\"a\",\"action\":\"start\"}", "service a has no plan" },
    { "{\"cmd\":\"plan\",\"service\":\"a\"}", "missing \"action\"" },
    { "{\"cmd\":\"plan\",\"service\":\"a\",\"action\":\"go\"}",
      "\"action\" must be start, pause, resume or abort, got \"go\"" },
    { "{\"cmd\":\"plan\",\"service\":\"a\",\"action\":1}", "\"action\" must be a string" },
    { "{\"cmd\":\"plan\",\"service\":\"a\",\"action\":\"start\",\"steps\":[1]}",
      "unknown key in \"plan\" request: \"steps\"" },
};

static void
test_bad_requests_change_nothing(void **state)
{
    struct fx *f = fx_two();
    char *state_before, *audit_before, *s, *a;
    json_t *r;
    unsigned i, calls;

    /* Some history first, so "untouched" is about existing files. */
    expect_ok(r = run(f, "{\"cmd\":\"weight\",\"service\":\"a\",\"percent\":12.5}"));
    json_decref(r);
    state_before = slurp(f->state);
    audit_before = slurp(f->audit);
    assert_non_null(state_before);
    assert_non_null(audit_before);
    calls = f->ncalls;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r = run(f, bad[i].line);
        if (!json_is_false(json_object_get(r, "ok")))
            fail_msg("case %u (%s) was accepted", i, bad[i].line);
        expect_error(r, bad[i].msg);
        assert_state(f, 0, 1250, ADM_ST_STEADY, 1);
        assert_state(f, 1, 0, ADM_ST_STEADY, 0);
        if (f->ncalls != calls)
            fail_msg("case %u (%s) called the data plane", i, bad[i].line);
        s = slurp(f->state);
        a = slurp(f->audit);
        assert_string_equal(s, state_before);
        assert_string_equal(a, audit_before);
        free(s);
        free(a);
    }
    free(state_before);
    free(audit_before);
    fx_free(f);
}

/* Many unknown keys: every one up to the reply's bound is named, in the
 * request's order, and the reply stays short; one very long key is named
 * (cut) and still refused. */
static void
test_unknown_keys_are_listed_within_bounds(void **state)
{
    struct fx *f = fx_one(0);
    json_t *req = json_pack("{s:s}", "cmd", "status"), *r;
    const char *e;
    char key[16], longkey[400];
    unsigned i;

    for (i = 0; i < 300; i++) {
        snprintf(key, sizeof(key), "k%03u", i);
        json_object_set_new(req, key, json_integer(i));
    }
    r = adm_control_exec(f->c, req, "uid:0");
    e = json_string_value(json_object_get(r, "error"));
    assert_non_null(e);
    assert_true(strstr(e, "unknown keys in \"status\" request: \"k000\", \"k001\", "
                       "\"k002\"") == e);
    assert_true(strlen(e) < 1024);
    json_decref(r);
    json_decref(req);

    memset(longkey, 'x', sizeof(longkey) - 1);
    longkey[sizeof(longkey) - 1] = '\0';
    req = json_pack("{s:s, s:i}", "cmd", "status", longkey, 1);
    r = adm_control_exec(f->c, req, "uid:0");
    expect_error(r, "unknown key in \"status\" request: \"xxxxxxxxxx");
    json_decref(req);
    assert_state(f, 0, 0, ADM_ST_STEADY, 0);
    fx_free(f);
}

static void
test_exec_rejects_non_objects(void **state)
{
    struct fx *f = fx_one(0);
    json_t *req = json_integer(3), *r;

    expect_error(adm_control_exec(f->c, req, "uid:0"),
                 "request must be a JSON object, got an integer");
    json_decref(req);
    req = json_pack("{s:s, s:i}", "cmd", "weight", "percent", 7);
    r = adm_control_exec(f->c, req, "uid:0");
    expect_ok(r);
    json_decref(r);
    json_decref(req);
    assert_state(f, 0, 700, ADM_ST_STEADY, 1);
    fx_free(f);
}

/* ---- levels --------------------------------------------------------------- */

/* Runs {"cmd":<cmd>, …<extra>} as token:<name> at <level>; the reply. */
static json_t *
as_level(struct fx *f, enum adm_level level, const char *json)
{
    struct adm_caller who = { .actor = "token:t", .pid = -1, .level = level };
    json_t *req = json_loads(json, 0, NULL), *r;

    assert_non_null(req);
    r = adm_control_exec_as(f->c, req, &who);
    json_decref(req);
    return r;
}

static void
expect_level_refused(json_t *r, const char *level)
{
    assert_true(json_is_false(json_object_get(r, "ok")));
    assert_string_equal(json_string_value(json_object_get(r, "required_level")), level);
    json_decref(r);
}

static void
test_levels(void **state)
{
    struct fx *f = fx_one(0);
    char *audit;
    json_t *r;

    (void)state;
    /* read: status and audit only */
    r = as_level(f, ADM_LEVEL_READ, "{\"cmd\":\"status\"}");
    expect_ok(r);
    json_decref(r);
    expect_level_refused(as_level(f, ADM_LEVEL_READ, "{\"cmd\":\"weight\",\"percent\":5}"),
                         "operate");
    assert_state(f, 0, 0, ADM_ST_STEADY, 0);

    /* operate: a weight below 100 while not latched, rollback */
    r = as_level(f, ADM_LEVEL_OPERATE, "{\"cmd\":\"weight\",\"percent\":5}");
    expect_ok(r);
    json_decref(r);
    assert_state(f, 0, 500, ADM_ST_STEADY, 1);
    expect_level_refused(as_level(f, ADM_LEVEL_OPERATE, "{\"cmd\":\"weight\",\"percent\":100}"),
                         "admin");
    expect_level_refused(as_level(f, ADM_LEVEL_OPERATE, "{\"cmd\":\"promote\"}"), "admin");
    expect_level_refused(as_level(f, ADM_LEVEL_OPERATE,
                                  "{\"cmd\":\"switch\",\"to\":\"legacy\"}"), "admin");
    assert_state(f, 0, 500, ADM_ST_STEADY, 1);
    r = as_level(f, ADM_LEVEL_OPERATE, "{\"cmd\":\"rollback\",\"reason\":\"x\"}");
    expect_ok(r);
    json_decref(r);
    assert_state(f, 0, 0, ADM_ST_ROLLED_BACK, 2);
    /* clearing the latch is admin's */
    expect_level_refused(as_level(f, ADM_LEVEL_OPERATE, "{\"cmd\":\"weight\",\"percent\":1}"),
                         "admin");
    assert_state(f, 0, 0, ADM_ST_ROLLED_BACK, 2);
    r = as_level(f, ADM_LEVEL_ADMIN, "{\"cmd\":\"weight\",\"percent\":1}");
    expect_ok(r);
    json_decref(r);
    assert_state(f, 0, 100, ADM_ST_STEADY, 3);

    /* every refusal is audited, and changed nothing */
    audit = slurp(f->audit);
    assert_non_null(audit);
    assert_non_null(strstr(audit, "\"action\":\"refused\""));
    assert_non_null(strstr(audit, "\"actor\":\"token:t\""));
    free(audit);
    fx_free(f);
}

/* ---- startup ------------------------------------------------------------ */

static void
test_state_file_wins_over_config(void **state)
{
    static const char *const names[] = { "web", "api" };
    static const uint32_t bp[] = { 500, 9000 };
    struct adm_store_entry saved[] = {
        { .name = "web", .weight_bp = 3000, .state = ADM_ST_ROLLED_BACK, .generation = 7 },
        { .name = "gone", .weight_bp = 100, .state = ADM_ST_STEADY, .generation = 2 },        /* not in the config: dropped */
    };
    struct fx *f = fx_new();
    char err[256];
    json_t *r;

    assert_int_equal(adm_store_save(f->state, saved, 2, err, sizeof(err)), 0);
    fx_start(f, 2, names, bp);
    assert_state(f, 0, 3000, ADM_ST_ROLLED_BACK, 7);
    assert_state(f, 1, 9000, ADM_ST_STEADY, 0);   /* not in the file: config */

    expect_ok(r = run(f, "{\"cmd\":\"weight\",\"service\":\"web\",\"percent\":40}"));
    json_decref(r);
    assert_state(f, 0, 4000, ADM_ST_STEADY, 8);
    assert_int_equal(file_weight(f->state, "web", NULL, NULL), 4000);
    assert_int_equal(file_weight(f->state, "api", NULL, NULL), 9000);
    assert_int_equal(file_weight(f->state, "gone", NULL, NULL), -1);
    fx_free(f);
}

static void
test_corrupt_state_file_stops_startup(void **state)
{
    static const char *const names[] = { "web" };
    static const uint32_t bp[] = { 0 };
    struct fx *f = fx_new();
    char dir[PATH_MAX + 64], err[512] = "";
    struct adm_control *c;

    snprintf(dir, sizeof(dir), "%s/state", f->dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    write_file(f->state, "{\"version\":1,\"services\":[{\"name\":\"web\",");
    c = adm_control_new(names, bp, 1, f->state, f->audit, &f->ops, f, err, sizeof(err));
    assert_null(c);
    assert_non_null(strstr(err, "state file "));
    assert_non_null(strstr(err, f->state));
    assert_non_null(strstr(err, "bad JSON at line 1"));
    assert_non_null(strstr(err, "; fix or remove it"));

    write_file(f->state, "{\"version\":1,\"services\":[{\"name\":\"web\",\"weight_bp\":0,"
               "\"state\":\"asleep\",\"generation\":0}]}");
    err[0] = '\0';
    assert_null(adm_control_new(names, bp, 1, f->state, NULL, &f->ops, f, err, sizeof(err)));
    assert_non_null(strstr(err, "unknown state \"asleep\""));
    assert_int_equal(f->ncalls, 0);
    fx_free(f);
}

static void
test_bad_service_names_are_refused(void **state)
{
    static const char *const dup[] = { "a", "a" };
    static const char *const empty[] = { "" };
    static const uint32_t bp[] = { 0, 0 }, big[] = { 10001 };
    char err[256] = "";

    assert_null(adm_control_new(dup, bp, 2, NULL, NULL, NULL, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "duplicate"));
    assert_null(adm_control_new(empty, bp, 1, NULL, NULL, NULL, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "1..63 bytes"));
    assert_null(adm_control_new(dup, big, 1, NULL, NULL, NULL, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "out of range"));
}

/* ---- status ------------------------------------------------------------- */

static void
test_status_lists_percent_weights(void **state)
{
    struct fx *f = fx_two();
    json_t *r, *list, *o;

    expect_ok(r = run(f, "{\"cmd\":\"weight\",\"service\":\"a\",\"percent\":12.5}"));
    json_decref(r);
    r = run(f, "{\"cmd\":\"status\"}");
    expect_ok(r);
    list = json_object_get(r, "services");
    assert_int_equal(json_array_size(list), 2);
    o = json_array_get(list, 0);
    assert_string_equal(json_string_value(json_object_get(o, "name")), "a");
    assert_true(json_is_real(json_object_get(o, "weight")));
    assert_true(num(o, "weight") == 12.5);
    assert_string_equal(json_string_value(json_object_get(o, "state")), "steady");
    assert_int_equal(json_integer_value(json_object_get(o, "generation")), 1);
    assert_string_equal(json_string_value(json_object_get(o, "mode")), "http");
    o = json_array_get(list, 1);
    assert_string_equal(json_string_value(json_object_get(o, "name")), "b");
    assert_true(num(o, "weight") == 0);
    assert_int_equal(json_integer_value(json_object_get(o, "generation")), 0);
    assert_string_equal(json_string_value(json_object_get(o, "mode")), "tcp");
    json_decref(r);
    assert_int_equal(f->nstatus, 2);

    r = run(f, "{\"cmd\":\"status\",\"service\":\"b\"}");
    expect_ok(r);
    list = json_object_get(r, "services");
    assert_int_equal(json_array_size(list), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(list, 0), "name")),
                        "b");
    json_decref(r);
    expect_error(run(f, "{\"cmd\":\"status\",\"service\":\"z\"}"), "unknown service \"z\"");
    assert_int_equal(f->ncalls, 1);                /* status applies nothing */
    fx_free(f);
}

static void
test_reply_is_one_line_with_short_decimals(void **state)
{
    struct fx *f = fx_one(0);
    const char *line = "{\"cmd\":\"weight\",\"percent\":12.34}";
    char *out;

    out = adm_control_exec_line(f->c, line, strlen(line), "uid:0");
    assert_non_null(strstr(out, "\"weight\":12.34,"));
    assert_non_null(strstr(out, "\"previous_weight\":0"));
    assert_null(strchr(out, '\n'));
    free(out);

    /* A reason with a newline is refused, in one reply line, and changes
     * nothing: it is one line of printable text (admin/ctl_proto.h). */
    line = "{\"cmd\":\"rollback\",\"reason\":\"two\\nlines\"}";
    out = adm_control_exec_line(f->c, line, strlen(line), "uid:0");
    assert_null(strchr(out, '\n'));
    assert_non_null(strstr(out, "\"ok\":false"));
    assert_non_null(strstr(out, "byte 3 is a control character"));
    free(out);
    out = slurp(f->audit);
    assert_non_null(out);
    assert_null(strstr(out, "two"));
    assert_non_null(strstr(out, "\"to\":12.34,"));
    free(out);
    fx_free(f);
}

/* ---- audit -------------------------------------------------------------- */

static void
check_ts(const char *ts)
{
    /* 2024-05-01T12:00:00.123Z */
    assert_non_null(ts);
    assert_int_equal(strlen(ts), 24);
    assert_int_equal(ts[4], '-');
    assert_int_equal(ts[10], 'T');
    assert_int_equal(ts[19], '.');
    assert_int_equal(ts[23], 'Z');
}

static void
test_audit_records_every_change(void **state)
{
    struct fx *f = fx_one(0);
    char *text, *line, *save = NULL;
    json_t *r, *e, *entries;
    unsigned n = 0;
    static const struct {
        const char *action;
        double from, to;
        const char *reason;
    } want[] = {
        { "weight", 0, 10, "" },
        { "weight", 10, 12.5, "" },
        { "rollback", 12.5, 0, "p99 too high" },
        { "promote", 0, 100, "" },
        { "switch", 100, 0, "" },
    };

    expect_ok(r = run(f, "{\"cmd\":\"weight\",\"percent\":10}"));
    json_decref(r);
    expect_ok(r = run(f, "{\"cmd\":\"weight\",\"percent\":12.5}"));
    json_decref(r);
    expect_ok(r = run(f, "{\"cmd\":\"rollback\",\"reason\":\"p99 too high\"}"));
    json_decref(r);
    expect_ok(r = run(f, "{\"cmd\":\"promote\"}"));
    json_decref(r);
    expect_ok(r = run(f, "{\"cmd\":\"switch\",\"to\":\"legacy\"}"));
    json_decref(r);
    /* Refused and read-only commands write nothing. */
    json_decref(run(f, "{\"cmd\":\"weight\",\"percent\":200}"));
    json_decref(run(f, "{\"cmd\":\"status\"}"));

    text = slurp(f->audit);
    assert_non_null(text);
    for (line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save), n++) {
        assert_true(n < 5);
        e = json_loads(line, 0, NULL);
        assert_non_null(e);
        assert_int_equal(json_object_size(e), 8);
        check_ts(json_string_value(json_object_get(e, "ts")));
        assert_string_equal(json_string_value(json_object_get(e, "service")), "web");
        assert_string_equal(json_string_value(json_object_get(e, "actor")), "uid:0");
        assert_string_equal(json_string_value(json_object_get(e, "action")), want[n].action);
        assert_true(num(e, "from") == want[n].from);
        assert_true(num(e, "to") == want[n].to);
        assert_string_equal(json_string_value(json_object_get(e, "reason")), want[n].reason);
        assert_int_equal(json_integer_value(json_object_get(e, "generation")), n + 1);
        json_decref(e);
    }
    assert_int_equal(n, 5);
    free(text);

    /* The audit command returns the last N, oldest first. */
    r = run(f, "{\"cmd\":\"audit\",\"n\":3}");
    expect_ok(r);
    entries = json_object_get(r, "entries");
    assert_int_equal(json_array_size(entries), 3);
    for (n = 0; n < 3; n++) {
        e = json_array_get(entries, n);
        assert_string_equal(json_string_value(json_object_get(e, "action")),
                            want[n + 2].action);
        assert_int_equal(json_integer_value(json_object_get(e, "generation")), n + 3);
    }
    json_decref(r);

    /* Default n (20) returns all five. */
    r = run(f, "{\"cmd\":\"audit\"}");
    expect_ok(r);
    assert_int_equal(json_array_size(json_object_get(r, "entries")), 5);
    json_decref(r);
    fx_free(f);
}

static void
test_audit_filter_by_service_and_actor(void **state)
{
    struct fx *f = fx_two();
    const char *line = "{\"cmd\":\"rollback\",\"service\":\"b\"}";
    char *out;
    json_t *r, *entries;

    expect_ok(r = run(f, "{\"cmd\":\"weight\",\"service\":\"a\",\"percent\":1}"));
    json_decref(r);
    out = adm_control_exec_line(f->c, line, strlen(line), "token:ops");
    free(out);
    expect_ok(r = run(f, "{\"cmd\":\"weight\",\"service\":\"a\",\"percent\":2}"));
    json_decref(r);

    r = run(f, "{\"cmd\":\"audit\",\"service\":\"b\"}");
    expect_ok(r);
    entries = json_object_get(r, "entries");
    assert_int_equal(json_array_size(entries), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(entries, 0),
                                                          "actor")), "token:ops");
    json_decref(r);
    r = run(f, "{\"cmd\":\"audit\",\"service\":\"a\",\"n\":1}");
    expect_ok(r);
    entries = json_object_get(r, "entries");
    assert_int_equal(json_array_size(entries), 1);
    assert_true(num(json_array_get(entries, 0), "to") == 2);
    json_decref(r);
    r = run(f, "{\"cmd\":\"audit\"}");
    expect_ok(r);
    assert_int_equal(json_array_size(json_object_get(r, "entries")), 3);
    json_decref(r);
    fx_free(f);
}

static void
test_audit_failure_does_not_fail_the_command(void **state)
{
    static const char *const names[] = { "web" };
    static const uint32_t bp[] = { 0 };
    struct fx *f = fx_new();
    json_t *r;

    /* The audit path is a directory: appends fail, commands still work. */
    assert_int_equal(mkdir(f->audit, 0700), 0);
    fx_start(f, 1, names, bp);
    expect_ok(r = run(f, "{\"cmd\":\"weight\",\"percent\":3}"));
    json_decref(r);
    assert_state(f, 0, 300, ADM_ST_STEADY, 1);
    expect_error(run(f, "{\"cmd\":\"audit\"}"), "not a regular file");
    fx_free(f);
}

/* Writes <n> audit-like lines with "seq" 0..n-1 to <file>, padding each to a
 * varying length so lines straddle the reader's block boundaries; the line
 * with seq == <corrupt> is replaced by garbage. No newline after the last
 * line when <trailing_nl> is false. */
static void
write_seq_log(const char *file, unsigned n, unsigned corrupt, bool trailing_nl)
{
    FILE *fp = fopen(file, "w");
    unsigned i;

    assert_non_null(fp);
    for (i = 0; i < n; i++) {
        if (i == corrupt)
            fprintf(fp, "{\"seq\":%u, this is not JSON", i);
        else
            fprintf(fp, "{\"service\":\"%s\",\"seq\":%u,\"pad\":\"%.*s\"}",
                    i % 3 == 0 ? "a" : "b", i, (int)(i * 7919u % 200u),
                    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
        if (i + 1 < n || trailing_nl)
            fputc('\n', fp);
    }
    assert_int_equal(fclose(fp), 0);
}

static void
test_audit_tail_reads_backwards_across_blocks(void **state)
{
    struct fx *f = fx_new();
    char err[256] = "";
    json_t *a;
    unsigned i, expect;
    struct stat sb;

    /* ~600 KB: about ten 64 KiB blocks. */
    write_seq_log(f->audit, 5000, 2500, true);
    assert_int_equal(stat(f->audit, &sb), 0);
    assert_true(sb.st_size > 8 * 64 * 1024);

    a = adm_audit_tail(f->audit, 10, NULL, err, sizeof(err));
    assert_non_null(a);
    assert_int_equal(json_array_size(a), 10);
    for (i = 0; i < 10; i++)
        assert_int_equal(json_integer_value(json_object_get(json_array_get(a, i), "seq")),
                         4990 + i);
    json_decref(a);

    /* Everything: every seq in order, the corrupt line skipped. */
    a = adm_audit_tail(f->audit, 10000, NULL, err, sizeof(err));
    assert_non_null(a);
    assert_int_equal(json_array_size(a), 4999);
    for (i = 0, expect = 0; i < json_array_size(a); i++, expect++) {
        if (expect == 2500)
            expect++;
        assert_int_equal(json_integer_value(json_object_get(json_array_get(a, i), "seq")),
                         expect);
    }
    json_decref(a);

    /* A window that spans the corrupt line. */
    a = adm_audit_tail(f->audit, 2501, NULL, err, sizeof(err));
    assert_int_equal(json_array_size(a), 2501);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(a, 0), "seq")), 2498);
    json_decref(a);

    /* Filtered by service: seq multiple of 3 are "a". */
    a = adm_audit_tail(f->audit, 4, "a", err, sizeof(err));
    assert_int_equal(json_array_size(a), 4);
    for (i = 0; i < 4; i++)
        assert_int_equal(json_integer_value(json_object_get(json_array_get(a, i), "seq")),
                         4989 + 3 * i);
    json_decref(a);

    /* No newline after the last line, and a corrupt first line. */
    write_seq_log(f->audit, 300, 0, false);
    a = adm_audit_tail(f->audit, 10000, NULL, err, sizeof(err));
    assert_int_equal(json_array_size(a), 299);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(a, 0), "seq")), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(a, 298), "seq")), 299);
    json_decref(a);

    /* Missing file: empty; out-of-range n: error. */
    unlink(f->audit);
    a = adm_audit_tail(f->audit, 5, NULL, err, sizeof(err));
    assert_int_equal(json_array_size(a), 0);
    json_decref(a);
    assert_null(adm_audit_tail(f->audit, 0, NULL, err, sizeof(err)));
    fx_free(f);
}

/* ---- automatic decisions ------------------------------------------------ */

/* The last line of the audit log, parsed (caller decrefs), or NULL. */
static json_t *
last_audit(struct fx *f)
{
    char *text = slurp(f->audit), *last, *end;
    json_t *e;

    if (text == NULL)
        return NULL;
    end = text + strlen(text);
    while (end > text && end[-1] == '\n')
        *--end = '\0';
    last = strrchr(text, '\n');
    e = json_loads(last != NULL ? last + 1 : text, 0, NULL);
    assert_non_null(e);
    free(text);
    return e;
}

static unsigned
audit_lines(struct fx *f)
{
    char *text = slurp(f->audit), *p;
    unsigned n = 0;

    if (text == NULL)
        return 0;
    for (p = text; *p != '\0'; p++)
        n += *p == '\n';
    free(text);
    return n;
}

static json_t *
some_figures(void)
{
    return json_pack("{s:s, s:f, s:f, s:I, s:f, s:{s:f, s:I, s:I}}", "kind", "error_rate",
                     "error_rate", 0.5, "p99_ms", 12.5, "requests", (json_int_t)40,
                     "legacy_error_rate", 0.0, "thresholds", "max_error_rate", 0.05,
                     "min_requests", (json_int_t)20, "window_s", (json_int_t)10);
}

/* Every state and weight as the automatic decision sees it: latched exactly
 * when rolled_back or frozen, progressing exactly when progressing, the
 * weight as it is (the decision itself: test_hl_policy.c). */
static void
test_auto_svc(void **state)
{
    static const uint32_t weights[] = { 0, 1, 5000, 10000 };
    enum adm_state s;
    unsigned w;

    for (s = 0; s < ADM_ST__COUNT; s++) {
        for (w = 0; w < sizeof(weights) / sizeof(weights[0]); w++) {
            struct adm_svc_state st = { .weight_bp = weights[w], .state = s,
                                        .generation = 7 };
            struct hl_auto_svc v = adm_auto_svc(&st);

            assert_int_equal(v.weight_bp, weights[w]);
            assert_int_equal(v.latched, s == ADM_ST_ROLLED_BACK || s == ADM_ST_FROZEN);
            assert_int_equal(v.progressing, s == ADM_ST_PROGRESSING);
        }
    }
}

/* A breach at weight 20: weight 0 applied before the file changes, latch
 * persisted, one audit entry by "auto" with the figures; the same breach
 * again does nothing at all; an operator's weight re-arms it. */
static void
test_auto_rollback_latches_once(void **state)
{
    struct fx *f = fx_one(0);
    json_t *r, *e, *fig = some_figures();
    int st = -1;
    uint64_t gen = 0;

    expect_ok(r = run(f, "{\"cmd\":\"weight\",\"percent\":20}"));
    json_decref(r);
    f->ncalls = 0;
    assert_int_equal(adm_control_auto(f->c, 0, HL_AUTO_ROLLBACK,
                                      "error rate 0.500 > 0.050 over 40 requests (20 errors)",
                                      fig), 0);
    assert_state(f, 0, 0, ADM_ST_ROLLED_BACK, 2);
    assert_int_equal(f->ncalls, 2);                     /* applied, new's tunnels drained */
    assert_int_equal(f->calls[0].kind, 'a');
    assert_int_equal(f->calls[1].kind, 's');
    assert_int_equal(f->calls[1].left, RT_NEW);
    assert_int_equal(f->calls[0].st.weight_bp, 0);
    assert_int_equal(f->calls[0].st.state, ADM_ST_ROLLED_BACK);
    assert_int_equal(f->calls[0].file_bp, 2000);        /* applied first */
    assert_int_equal(file_weight(f->state, "web", &st, &gen), 0);   /* persisted second */
    assert_int_equal(st, ADM_ST_ROLLED_BACK);
    assert_true(gen == 2);

    e = last_audit(f);
    assert_int_equal(json_object_size(e), 9);
    assert_string_equal(json_string_value(json_object_get(e, "actor")), "auto");
    assert_string_equal(json_string_value(json_object_get(e, "action")), "rollback");
    assert_true(num(e, "from") == 20);
    assert_true(num(e, "to") == 0);
    assert_string_equal(json_string_value(json_object_get(e, "reason")),
                        "error rate 0.500 > 0.050 over 40 requests (20 errors)");
    assert_int_equal(json_integer_value(json_object_get(e, "generation")), 2);
    assert_true(json_equal(json_object_get(e, "figures"), fig));
    json_decref(e);
    assert_int_equal(audit_lines(f), 2);

    /* latched: a lasting breach (or a freeze) is not acted on again */
    assert_int_equal(adm_control_auto(f->c, 0, HL_AUTO_ROLLBACK, "again", fig), -1);
    assert_int_equal(adm_control_auto(f->c, 0, HL_AUTO_FREEZE, "again", fig), -1);
    assert_int_equal(f->ncalls, 2);
    assert_state(f, 0, 0, ADM_ST_ROLLED_BACK, 2);
    assert_int_equal(audit_lines(f), 2);

    /* the latch survives a restart */
    adm_control_free(f->c);
    f->c = NULL;
    f->ncalls = 0;
    f->ncalls = 0;
    fx_start(f, 1, f->names, (const uint32_t[]){ 5000 });
    assert_state(f, 0, 0, ADM_ST_ROLLED_BACK, 2);
    assert_int_equal(adm_control_auto(f->c, 0, HL_AUTO_ROLLBACK, "again", fig), -1);

    /* an operator's weight clears it and re-arms the rule */
    expect_ok(r = run(f, "{\"cmd\":\"weight\",\"percent\":5}"));
    json_decref(r);
    assert_state(f, 0, 500, ADM_ST_STEADY, 3);
    assert_int_equal(adm_control_auto(f->c, 0, HL_AUTO_ROLLBACK, "new side down", NULL), 0);
    assert_state(f, 0, 0, ADM_ST_ROLLED_BACK, 4);
    e = last_audit(f);
    assert_null(json_object_get(e, "figures"));
    assert_string_equal(json_string_value(json_object_get(e, "reason")), "new side down");
    json_decref(e);
    json_decref(fig);
    fx_free(f);
}

/* freeze: the weight holds, the latch is frozen and persisted, audited
 * once; an operator's rollback, promote or weight ends it. */
static void
test_auto_freeze_holds_weight(void **state)
{
    struct fx *f = fx_one(3000);
    json_t *r, *e, *fig = some_figures();
    int st = -1;

    assert_int_equal(adm_control_auto(f->c, 0, HL_AUTO_FREEZE, "p99 900.0 ms > 500 ms", fig), 0);
    assert_state(f, 0, 3000, ADM_ST_FROZEN, 1);
    assert_int_equal(f->ncalls, 1);
    assert_int_equal(f->calls[0].st.weight_bp, 3000);
    assert_int_equal(f->calls[0].st.state, ADM_ST_FROZEN);
    assert_int_equal(file_weight(f->state, "web", &st, NULL), 3000);
    assert_int_equal(st, ADM_ST_FROZEN);
    e = last_audit(f);
    assert_string_equal(json_string_value(json_object_get(e, "actor")), "auto");
    assert_string_equal(json_string_value(json_object_get(e, "action")), "freeze");
    assert_true(num(e, "from") == 30 && num(e, "to") == 30);
    assert_true(json_equal(json_object_get(e, "figures"), fig));
    json_decref(e);

    /* frozen is a latch too: nothing more happens automatically */
    assert_int_equal(adm_control_auto(f->c, 0, HL_AUTO_FREEZE, "again", fig), -1);
    assert_int_equal(adm_control_auto(f->c, 0, HL_AUTO_ROLLBACK, "again", fig), -1);
    assert_int_equal(f->ncalls, 1);
    assert_int_equal(audit_lines(f), 1);

    /* status shows it */
    r = run(f, "{\"cmd\":\"status\"}");
    expect_ok(r);
    assert_string_equal(json_string_value(json_object_get(
        json_array_get(json_object_get(r, "services"), 0), "state")), "frozen");
    json_decref(r);

    /* the operator rolls back: a plain rollback latch from here */
    expect_ok(r = run(f, "{\"cmd\":\"rollback\",\"reason\":\"after the freeze\"}"));
    json_decref(r);
    assert_state(f, 0, 0, ADM_ST_ROLLED_BACK, 2);

    /* freeze again from a promoted service; promote and weight clear it */
    expect_ok(r = run(f, "{\"cmd\":\"promote\"}"));
    json_decref(r);
    assert_int_equal(adm_control_auto(f->c, 0, HL_AUTO_FREEZE, "x", NULL), 0);
    assert_state(f, 0, 10000, ADM_ST_FROZEN, 4);
    expect_ok(r = run(f, "{\"cmd\":\"promote\"}"));
    json_decref(r);
    assert_state(f, 0, 10000, ADM_ST_PROMOTED, 5);
    assert_int_equal(adm_control_auto(f->c, 0, HL_AUTO_FREEZE, "x", NULL), 0);
    expect_ok(r = run(f, "{\"cmd\":\"weight\",\"percent\":1}"));
    json_decref(r);
    assert_state(f, 0, 100, ADM_ST_STEADY, 7);
    json_decref(fig);
    fx_free(f);
}

/* At weight 0 outside a plan there is nothing to take away: no change, no
 * apply, no file, no audit. */
static void
test_auto_at_weight_zero_does_nothing(void **state)
{
    struct fx *f = fx_one(0);

    assert_int_equal(adm_control_auto(f->c, 0, HL_AUTO_ROLLBACK, "x", NULL), -1);
    assert_int_equal(adm_control_auto(f->c, 0, HL_AUTO_FREEZE, "x", NULL), -1);
    assert_int_equal(f->ncalls, 0);
    assert_state(f, 0, 0, ADM_ST_STEADY, 0);
    assert_null(slurp(f->audit));
    assert_int_equal(file_weight(f->state, "web", NULL, NULL), -1);
    fx_free(f);
}

/* The state file cannot be written: the rollback takes effect anyway (it is
 * a lowering), is audited, and reports done. */
static void
test_auto_rollback_unsaved_still_applies(void **state)
{
    struct fx *f = fx_one(4000);

    block_state_dir(f);
    assert_int_equal(adm_control_auto(f->c, 0, HL_AUTO_ROLLBACK, "x", NULL), 0);
    assert_state(f, 0, 0, ADM_ST_ROLLED_BACK, 1);
    assert_int_equal(f->ncalls, 2);                /* applied, then new's tunnels drained */
    assert_int_equal(f->calls[0].st.weight_bp, 0);
    assert_int_equal(f->calls[1].kind, 's');
    assert_int_equal(audit_lines(f), 1);
    fx_free(f);
}


/* ---- the state file and the audit log under faults ---------------------- */

/* The state file cannot be replaced (a directory stands where it goes) but
 * its directory, with the journal, is there: a save fails, the journal
 * takes the state in effect. */
static void
block_state_file(struct fx *f)
{
    unlink(f->state);
    assert_int_equal(mkdir(f->state, 0700), 0);
}

static void
unblock_state_file(struct fx *f)
{
    assert_int_equal(rmdir(f->state), 0);
}

/* Sends what is written to stderr (the log) to a file in <f>'s directory
 * until captured_stderr(). */
static int saved_stderr = -1;

static void
capture_stderr(struct fx *f)
{
    char path[PATH_MAX + 64];
    FILE *fp;

    snprintf(path, sizeof(path), "%s/stderr.txt", f->dir);
    fflush(stderr);
    fp = fopen(path, "w");
    assert_non_null(fp);
    saved_stderr = dup(STDERR_FILENO);
    assert_true(saved_stderr >= 0);
    assert_true(dup2(fileno(fp), STDERR_FILENO) >= 0);
    fclose(fp);
}

/* Ends capture_stderr() and returns what was written (caller frees). */
static char *
captured_stderr(struct fx *f)
{
    char path[PATH_MAX + 64], *text;

    snprintf(path, sizeof(path), "%s/stderr.txt", f->dir);
    fflush(stderr);
    assert_true(dup2(saved_stderr, STDERR_FILENO) >= 0);
    close(saved_stderr);
    saved_stderr = -1;
    text = slurp(path);
    assert_non_null(text);
    return text;
}

/* The status reply's "store" object (caller decrefs <*root>). */
static json_t *
store_of_status(struct fx *f, json_t **root)
{
    *root = run(f, "{\"cmd\":\"status\"}");
    expect_ok(*root);
    return json_object_get(*root, "store");
}

/* A rollback the disk did not take stays in effect, is in the journal,
 * shows as dirty, and is saved by the tick once the disk takes it: not at
 * once, then with a backoff that doubles. */
static void
test_unsaved_rollback_is_retried_until_saved(void **state)
{
    struct fx *f = fx_one(0);
    struct adm_store_entry *e = NULL;
    struct adm_store_status ss;
    unsigned n = 0;
    uint64_t seq;
    char err[256], *log_text;
    json_t *r, *root, *st;
    int fst = -1;

    expect_ok(r = run(f, "{\"cmd\":\"weight\",\"percent\":80}"));
    json_decref(r);
    adm_control_store_status(f->c, &ss);
    assert_false(ss.dirty);
    block_state_file(f);
    expect_error(run(f, "{\"cmd\":\"rollback\",\"reason\":\"disk full\"}"),
                 "applied but not saved: cannot rename");
    assert_state(f, 0, 0, ADM_ST_ROLLED_BACK, 2);
    adm_control_store_status(f->c, &ss);
    assert_true(ss.dirty);
    assert_true(ss.journaled);
    assert_true(ss.save_errors == 1);
    st = store_of_status(f, &root);
    assert_true(json_is_true(json_object_get(st, "dirty")));
    assert_true(json_is_true(json_object_get(st, "journaled")));
    assert_non_null(json_string_value(json_object_get(st, "since")));
    assert_non_null(strstr(json_string_value(json_object_get(st, "last_error")),
                           "cannot rename"));
    assert_string_equal(json_string_value(json_array_get(json_object_get(st, "unsaved"), 0)),
                        "web");
    json_decref(root);
    /* the journal holds the rollback */
    assert_int_equal(adm_store_journal_read(f->state, &seq, &e, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 1);
    assert_int_equal(e[0].state, ADM_ST_ROLLED_BACK);
    assert_true(e[0].generation == 2);
    free(e);

    /* the tick: a first wait, then retries further and further apart */
    adm_control_store_tick(f->c, 1000);                  /* schedules */
    adm_control_store_tick(f->c, 1199);
    adm_control_store_status(f->c, &ss);
    assert_true(ss.save_errors == 1);
    adm_control_store_tick(f->c, 1200);                  /* tried: fails */
    adm_control_store_status(f->c, &ss);
    assert_true(ss.save_errors == 2);
    adm_control_store_tick(f->c, 1599);
    adm_control_store_status(f->c, &ss);
    assert_true(ss.save_errors == 2);
    adm_control_store_tick(f->c, 1600);                  /* 400 ms later */
    adm_control_store_status(f->c, &ss);
    assert_true(ss.save_errors == 3);
    assert_int_equal(file_weight(f->state, "web", NULL, NULL), -2);
    /* while it lasts, a warning every ADM_UNSAVED_WARN_MS says so */
    capture_stderr(f);
    adm_control_store_tick(f->c, 1000 + ADM_UNSAVED_WARN_MS - 1);
    log_text = captured_stderr(f);
    assert_null(strstr(log_text, "state NOT saved"));
    free(log_text);
    capture_stderr(f);
    adm_control_store_tick(f->c, 1000 + ADM_UNSAVED_WARN_MS);
    log_text = captured_stderr(f);
    assert_non_null(strstr(log_text, "state NOT saved for "));
    assert_non_null(strstr(log_text, "web: weight 0% rolled_back generation 2 (the state "
                                     "file: 80% steady generation 1)"));
    assert_non_null(strstr(log_text, "kept in the journal"));
    free(log_text);
    adm_control_store_status(f->c, &ss);
    assert_true(ss.save_errors == 4);                    /* tried at 10999, next 1.6 s later */

    unblock_state_file(f);
    adm_control_store_tick(f->c, 12598);
    assert_int_equal(file_weight(f->state, "web", NULL, NULL), -1);   /* not yet */
    adm_control_store_tick(f->c, 12599);                 /* saved */
    assert_int_equal(file_weight(f->state, "web", &fst, NULL), 0);
    assert_int_equal(fst, ADM_ST_ROLLED_BACK);
    adm_control_store_status(f->c, &ss);
    assert_false(ss.dirty);
    st = store_of_status(f, &root);
    assert_true(json_is_false(json_object_get(st, "dirty")));
    assert_null(json_object_get(st, "since"));
    json_decref(root);
    /* the journal was cleared with the save */
    assert_int_equal(adm_store_journal_read(f->state, &seq, &e, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 0);
    assert_int_equal(adm_control_flush(f->c), 0);
    fx_free(f);
}

/* Any later save saves a dirty state with it: a raise once the disk is
 * back, which a raise on the still-broken disk is refused. */
static void
test_later_change_saves_dirty_state(void **state)
{
    struct fx *f = fx_one(3000);
    struct adm_store_status ss;
    int fst = -1;
    json_t *r;

    block_state_file(f);
    expect_error(run(f, "{\"cmd\":\"rollback\"}"), "applied but not saved");
    expect_error(run(f, "{\"cmd\":\"weight\",\"percent\":5}"), "cannot save state");
    assert_state(f, 0, 0, ADM_ST_ROLLED_BACK, 1);
    assert_int_equal(adm_control_flush(f->c), -1);      /* still unsaved at exit */
    unblock_state_file(f);
    expect_ok(r = run(f, "{\"cmd\":\"weight\",\"percent\":5}"));
    json_decref(r);
    adm_control_store_status(f->c, &ss);
    assert_false(ss.dirty);
    assert_int_equal(file_weight(f->state, "web", &fst, NULL), 500);
    assert_int_equal(fst, ADM_ST_STEADY);
    fx_free(f);
}

/* A restart (no flush: killed) finds the unsaved rollback in the journal
 * and restores it, dirty; a journal record that would raise the weight
 * above the state file's is never restored. */
static void
test_restart_restores_unsaved_rollback_from_journal(void **state)
{
    static const char *const names[] = { "web" };
    static const uint32_t bp[] = { 0 };
    struct adm_store_entry up = { .name = "web", .weight_bp = 9000, .state = ADM_ST_STEADY,
                                  .generation = 9 };
    struct adm_store_status ss;
    struct fx *f = fx_one(0);
    char err[256];
    json_t *r;
    int fst = -1;

    expect_ok(r = run(f, "{\"cmd\":\"weight\",\"percent\":60}"));
    json_decref(r);
    block_state_file(f);
    expect_error(run(f, "{\"cmd\":\"rollback\"}"), "kept in the journal");
    adm_control_free(f->c);                              /* kill -9 */
    unblock_state_file(f);
    assert_int_equal(file_weight(f->state, "web", NULL, NULL), -1);
    f->c = adm_control_new(names, bp, 1, f->state, f->audit, &f->ops, f, err, sizeof(err));
    assert_non_null(f->c);
    assert_state(f, 0, 0, ADM_ST_ROLLED_BACK, 2);
    adm_control_store_status(f->c, &ss);
    assert_true(ss.dirty);
    adm_control_store_tick(f->c, 50);
    adm_control_store_tick(f->c, 250);
    assert_int_equal(file_weight(f->state, "web", &fst, NULL), 0);
    assert_int_equal(fst, ADM_ST_ROLLED_BACK);
    adm_control_free(f->c);

    /* a journal that outlived its state file cannot raise the weight */
    up.generation = 3;
    up.weight_bp = 0;
    assert_int_equal(adm_store_save(f->state, &up, 1, err, sizeof(err)), 0);
    up.generation = 4;
    up.weight_bp = 9000;
    assert_int_equal(adm_store_journal_write(f->state, 99, &up, 1, err, sizeof(err)), 0);
    f->c = adm_control_new(names, bp, 1, f->state, f->audit, &f->ops, f, err, sizeof(err));
    assert_non_null(f->c);
    assert_state(f, 0, 0, ADM_ST_STEADY, 3);
    adm_control_store_status(f->c, &ss);
    assert_false(ss.dirty);
    fx_free(f);
}

/* The generations of <svc> that the audit log has entries for: bit g set
 * for generation g (a "recovered" entry covers figures.first_generation to
 * its generation). */
static uint64_t
audited_bits(struct fx *f, const char *svc)
{
    char *text = slurp(f->audit), *line, *save = NULL;
    uint64_t bits = 0, g, first;
    json_t *o;

    for (line = text != NULL ? strtok_r(text, "\n", &save) : NULL; line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        o = json_loads(line, 0, NULL);
        if (o == NULL)
            fail_msg("audit line is not JSON: %s", line);
        if (strcmp(json_string_value(json_object_get(o, "service")), svc) == 0) {
            g = (uint64_t)json_integer_value(json_object_get(o, "generation"));
            first = g;
            if (strcmp(json_string_value(json_object_get(o, "action")), "recovered") == 0)
                first = (uint64_t)json_integer_value(
                    json_object_get(json_object_get(o, "figures"), "first_generation"));
            for (; first <= g && first < 64; first++)
                bits |= 1ull << first;
        }
        json_decref(o);
    }
    free(text);
    return bits;
}

/* Entries the audit log refused wait, in order, and are written by the tick
 * once it takes them. */
static void
test_audit_entries_wait_and_are_written_in_order(void **state)
{
    static const char *const names[] = { "web" };
    static const uint32_t bp[] = { 0 };
    struct adm_store_status ss;
    struct fx *f = fx_new();
    char *text, *p1, *p2, *p3;
    json_t *r, *root, *st;

    assert_int_equal(mkdir(f->audit, 0700), 0);          /* appends fail */
    fx_start(f, 1, names, bp);
    expect_ok(r = run(f, "{\"cmd\":\"weight\",\"percent\":10}"));
    json_decref(r);
    expect_ok(r = run(f, "{\"cmd\":\"weight\",\"percent\":20}"));
    json_decref(r);
    expect_ok(r = run(f, "{\"cmd\":\"rollback\",\"reason\":\"r3\"}"));
    json_decref(r);
    adm_control_store_status(f->c, &ss);
    assert_false(ss.dirty);
    assert_int_equal(ss.audit_pending, 3);
    assert_true(ss.audit_errors == 3);
    st = store_of_status(f, &root);
    assert_int_equal(json_integer_value(json_object_get(st, "audit_pending")), 3);
    json_decref(root);

    assert_int_equal(rmdir(f->audit), 0);
    adm_control_store_tick(f->c, 100);                   /* schedules */
    adm_control_store_tick(f->c, 300);
    adm_control_store_status(f->c, &ss);
    assert_int_equal(ss.audit_pending, 0);
    text = slurp(f->audit);
    assert_non_null(text);
    p1 = strstr(text, "\"generation\":1");
    p2 = strstr(text, "\"generation\":2");
    p3 = strstr(text, "\"reason\":\"r3\"");
    assert_true(p1 != NULL && p2 != NULL && p3 != NULL && p1 < p2 && p2 < p3);
    free(text);
    assert_int_equal(audit_lines(f), 3);
    assert_true(audited_bits(f, "web") == 0xe);
    /* a new change goes after them */
    expect_ok(r = run(f, "{\"cmd\":\"weight\",\"percent\":1}"));
    json_decref(r);
    assert_true(audited_bits(f, "web") == 0x1e);
    fx_free(f);
}

/* More refused entries than the queue keeps: the ones it could not keep
 * are stood for by one "recovered" entry, written in order between the
 * queued ones and the next change's own. */
static void
test_audit_queue_overflow_becomes_a_recovered_entry(void **state)
{
    static const char *const names[] = { "web" };
    static const uint32_t bp[] = { 0 };
    struct adm_store_status ss;
    struct fx *f = fx_new();
    char line[96];
    unsigned i, n = ADM_AUDIT_QUEUE_MAX + 5;
    json_t *tail, *rec;

    assert_int_equal(mkdir(f->audit, 0700), 0);
    f->ops.apply = NULL;                                 /* more changes than it records */
    fx_start(f, 1, names, bp);
    log_min_level = (enum log_level)(LL_ERR + 1);        /* a thousand "entry waits" lines */
    for (i = 1; i <= n; i++) {
        snprintf(line, sizeof(line), "{\"cmd\":\"weight\",\"percent\":%u}", i % 2);
        run_ok_n(f, line, 1);
    }
    log_min_level = LL_INFO;
    adm_control_store_status(f->c, &ss);
    assert_int_equal(ss.audit_pending, ADM_AUDIT_QUEUE_MAX);
    assert_int_equal(rmdir(f->audit), 0);
    run_ok_n(f, "{\"cmd\":\"rollback\"}", 1);       /* flushes, then its own */
    adm_control_store_status(f->c, &ss);
    assert_int_equal(ss.audit_pending, 0);
    assert_int_equal(audit_lines(f), ADM_AUDIT_QUEUE_MAX + 2);
    tail = adm_audit_tail(f->audit, 2, "web", NULL, 0);
    rec = json_array_get(tail, 0);
    assert_string_equal(json_string_value(json_object_get(rec, "action")), "recovered");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(rec, "figures"),
                                                        "first_generation")),
                     ADM_AUDIT_QUEUE_MAX + 1);
    assert_int_equal(json_integer_value(json_object_get(rec, "generation")), n);
    assert_string_equal(json_string_value(json_object_get(json_array_get(tail, 1), "action")),
                        "rollback");
    json_decref(tail);
    fx_free(f);
}

/* A crash between the state save and the audit write: the start finds the
 * generations the log has no entry for (the state file's "audited" mark
 * and the log's newest entries) and writes one entry that stands for them;
 * an older state file without the mark is trusted. */
static void
test_startup_recovers_missing_audit_generations(void **state)
{
    static const char *const names[] = { "web", "api" };
    static const uint32_t bp[] = { 0, 0 };
    struct adm_store_entry e[2] = {
        { .name = "web", .weight_bp = 0, .state = ADM_ST_ROLLED_BACK, .generation = 5,
          .has_audited = true, .audited = 2 },
        { .name = "api", .weight_bp = 700, .state = ADM_ST_STEADY, .generation = 9 },
    };
    struct fx *f = fx_new();
    char err[256];
    json_t *tail, *last, *fig;
    unsigned lines;

    fx_start(f, 2, names, bp);
    run_ok_n(f, "{\"cmd\":\"weight\",\"service\":\"web\",\"percent\":10}", 1);
    run_ok_n(f, "{\"cmd\":\"weight\",\"service\":\"web\",\"percent\":20}", 1);
    adm_control_free(f->c);
    f->c = NULL;
    f->ncalls = 0;
    /* what a crash after saving generation 5 (3 and 4 unaudited too) leaves */
    assert_int_equal(adm_store_save(f->state, e, 2, err, sizeof(err)), 0);
    lines = audit_lines(f);
    fx_start(f, 2, names, bp);
    assert_int_equal(audit_lines(f), lines + 1);        /* one entry, for web only */
    assert_true(audited_bits(f, "web") == 0x3e);
    tail = adm_audit_tail(f->audit, 1, "web", err, sizeof(err));
    last = json_array_get(tail, 0);
    assert_string_equal(json_string_value(json_object_get(last, "action")), "recovered");
    assert_true(num(last, "from") == 20);
    assert_true(num(last, "to") == 0);
    fig = json_object_get(last, "figures");
    assert_int_equal(json_integer_value(json_object_get(fig, "first_generation")), 3);
    assert_int_equal(json_integer_value(json_object_get(fig, "last_generation")), 5);
    assert_string_equal(json_string_value(json_object_get(fig, "state")), "rolled_back");
    json_decref(tail);
    /* nothing more at the next start, and the mark is saved with changes */
    adm_control_free(f->c);
    f->c = NULL;
    f->ncalls = 0;
    fx_start(f, 2, names, bp);
    assert_int_equal(audit_lines(f), lines + 1);
    run_ok_n(f, "{\"cmd\":\"weight\",\"service\":\"web\",\"percent\":3}", 1);
    assert_true(audited_bits(f, "web") == 0x7e);
    fx_free(f);
}

/* The log holds a generation the state file does not (audited, then the
 * save failed on a read-only disk and nothing kept it): the start says so,
 * and the move back to the state file's weight is a change of its own,
 * audited, with generations going on from there. */
static void
test_startup_audit_ahead_of_state(void **state)
{
    static const char *const names[] = { "web" };
    static const uint32_t bp[] = { 0 };
    struct adm_store_entry e = { .name = "web", .weight_bp = 4000, .state = ADM_ST_STEADY,
                                 .generation = 1, .has_audited = true, .audited = 1 };
    struct fx *f = fx_new();
    char err[256];
    json_t *tail, *last;

    fx_start(f, 1, names, bp);
    run_ok_n(f, "{\"cmd\":\"weight\",\"percent\":40}", 1);
    run_ok_n(f, "{\"cmd\":\"rollback\"}", 1);
    adm_control_free(f->c);
    f->c = NULL;
    f->ncalls = 0;
    assert_int_equal(adm_store_save(f->state, &e, 1, err, sizeof(err)), 0);
    fx_start(f, 1, names, bp);
    assert_state(f, 0, 4000, ADM_ST_STEADY, 3);
    tail = adm_audit_tail(f->audit, 1, "web", err, sizeof(err));
    last = json_array_get(tail, 0);
    assert_string_equal(json_string_value(json_object_get(last, "action")), "recovered");
    assert_true(num(last, "from") == 0);
    assert_true(num(last, "to") == 40);
    assert_int_equal(json_integer_value(json_object_get(last, "generation")), 3);
    json_decref(tail);
    assert_true(audited_bits(f, "web") == 0xe);
    fx_free(f);
}

/* ---- progressive plan --------------------------------------------------- */

#define T0 1000000u              /* the plan tests' clock starts here (ms) */

/* steps 10, 50, 100 %, bake 1 s, 5 requests per step */
static void
plan_conf3(struct fx *f, unsigned svc)
{
    struct hl_plan_conf pc = { .nsteps = 3, .steps_bp = { 1000, 5000, 10000 }, .bake_s = 1 };

    adm_control_set_plan(f->c, svc, &pc, 5);
}

/* The "plan" object of service 0 in a status reply (caller decrefs <*root>). */
static json_t *
plan_of_status(struct fx *f, json_t **root)
{
    *root = run(f, "{\"cmd\":\"status\"}");
    expect_ok(*root);
    return json_object_get(json_array_get(json_object_get(*root, "services"), 0), "plan");
}

static const char *
str_of(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));

    if (s == NULL)
        fail_msg("\"%s\" is not a string", key);
    return s;
}

/* Plan state and step (1-based) in the state file's entry of "web". */
static void
assert_file_plan(struct fx *f, const char *state, unsigned step)
{
    char *text = slurp(f->state);
    json_t *root, *p;

    assert_non_null(text);
    root = json_loads(text, 0, NULL);
    free(text);
    assert_non_null(root);
    p = json_object_get(json_array_get(json_object_get(root, "services"), 0), "plan");
    assert_true(json_is_object(p));
    assert_string_equal(str_of(p, "state"), state);
    assert_int_equal(json_integer_value(json_object_get(p, "step")), step - 1);
    json_decref(root);
}

static void
test_plan_start_pause_resume_abort(void **state)
{
    struct fx *f = fx_one(0);
    json_t *r, *root, *p, *e;
    int st = -1;

    plan_conf3(f, 0);
    r = run(f, "{\"cmd\":\"plan\",\"action\":\"start\"}");
    expect_ok(r);
    assert_true(num(r, "weight") == 10);
    assert_string_equal(str_of(r, "state"), "progressing");
    p = json_object_get(r, "plan");
    assert_int_equal(json_integer_value(json_object_get(p, "step")), 1);
    assert_int_equal(json_integer_value(json_object_get(p, "steps")), 3);
    json_decref(r);
    assert_state(f, 0, 1000, ADM_ST_PROGRESSING, 1);
    /* a raise: persisted first, applied second */
    assert_int_equal(f->ncalls, 1);
    assert_int_equal(f->calls[0].file_bp, 1000);
    assert_int_equal(file_weight(f->state, "web", &st, NULL), 1000);
    assert_int_equal(st, ADM_ST_PROGRESSING);
    assert_file_plan(f, "progressing", 1);
    e = last_audit(f);
    assert_string_equal(str_of(e, "action"), "plan_start");
    assert_string_equal(str_of(e, "actor"), "uid:0");
    assert_true(num(e, "from") == 0 && num(e, "to") == 10);
    json_decref(e);

    /* refusals while progressing */
    expect_error(run(f, "{\"cmd\":\"plan\",\"action\":\"start\"}"),
                 "plan start: the plan is already progressing at step 1/3 (10%)");
    expect_error(run(f, "{\"cmd\":\"plan\",\"action\":\"resume\"}"),
                 "plan resume: the plan is not paused (it is progressing)");
    assert_state(f, 0, 1000, ADM_ST_PROGRESSING, 1);

    /* 600 ms baked with requests, then a pause */
    assert_int_equal(adm_control_plan_tick(f->c, 0, T0, 0), 0);
    assert_int_equal(adm_control_plan_tick(f->c, 0, T0 + 600, 50), 0);
    expect_ok(r = run(f, "{\"cmd\":\"plan\",\"action\":\"pause\"}"));
    assert_string_equal(str_of(r, "state"), "paused");
    assert_true(num(json_object_get(r, "plan"), "bake_left_s") == 0.4);
    json_decref(r);
    assert_state(f, 0, 1000, ADM_ST_PAUSED, 2);
    assert_file_plan(f, "paused", 1);
    expect_error(run(f, "{\"cmd\":\"plan\",\"action\":\"pause\"}"),
                 "plan pause: no plan is progressing (the plan is paused)");

    /* paused: time passes, nothing moves */
    assert_int_equal(adm_control_plan_tick(f->c, 0, T0 + 60000, 500), 0);
    p = plan_of_status(f, &root);
    assert_string_equal(str_of(p, "state"), "paused");
    assert_true(num(p, "bake_left_s") == 0.4);
    assert_true(num(p, "baked_s") == 0.6);
    assert_true(num(p, "requests") == 50);
    assert_true(num(p, "percent") == 10);
    json_decref(root);

    /* resume: 400 ms to go from the first tick after it */
    expect_ok(r = run(f, "{\"cmd\":\"plan\",\"action\":\"resume\"}"));
    assert_string_equal(str_of(r, "state"), "progressing");
    json_decref(r);
    assert_state(f, 0, 1000, ADM_ST_PROGRESSING, 3);
    assert_int_equal(adm_control_plan_tick(f->c, 0, T0 + 70000, 500), 0);
    assert_int_equal(adm_control_plan_tick(f->c, 0, T0 + 70399, 500), 0);
    assert_int_equal(adm_control_plan_tick(f->c, 0, T0 + 70400, 500), 1);
    assert_state(f, 0, 5000, ADM_ST_PROGRESSING, 4);
    assert_int_equal(f->calls[f->ncalls - 1].file_bp, 5000);   /* persisted first */
    assert_file_plan(f, "progressing", 2);
    e = last_audit(f);
    assert_string_equal(str_of(e, "action"), "plan_step");
    assert_string_equal(str_of(e, "actor"), "auto");
    assert_true(num(e, "from") == 10 && num(e, "to") == 50);
    assert_non_null(strstr(str_of(e, "reason"), "step 1/3 (10%) baked 1.0 s with 50 requests"));
    assert_true(num(json_object_get(e, "figures"), "step") == 2);
    assert_true(num(json_object_get(e, "figures"), "min_requests") == 5);
    json_decref(e);

    /* abort: the weight stays, state steady, nothing advances any more */
    expect_ok(r = run(f, "{\"cmd\":\"plan\",\"action\":\"abort\"}"));
    assert_string_equal(str_of(r, "state"), "steady");
    assert_string_equal(str_of(json_object_get(r, "plan"), "state"), "aborted");
    json_decref(r);
    assert_state(f, 0, 5000, ADM_ST_STEADY, 5);
    assert_file_plan(f, "aborted", 2);
    e = last_audit(f);
    assert_string_equal(str_of(e, "action"), "plan_abort");
    assert_string_equal(str_of(e, "actor"), "uid:0");
    json_decref(e);
    assert_int_equal(adm_control_plan_tick(f->c, 0, T0 + 80000, 900), 0);
    assert_int_equal(adm_control_plan_tick(f->c, 0, T0 + 90000, 1900), 0);
    assert_state(f, 0, 5000, ADM_ST_STEADY, 5);
    expect_error(run(f, "{\"cmd\":\"plan\",\"action\":\"abort\"}"),
                 "plan abort: no plan is running (the plan is aborted)");
    expect_error(run(f, "{\"cmd\":\"plan\",\"action\":\"pause\"}"), "no plan is progressing");
    /* at 50 % a new run of the plan would lower the weight */
    expect_error(run(f, "{\"cmd\":\"plan\",\"action\":\"start\"}"),
                 "the weight (50%) is above the plan's first step (10%)");
    assert_state(f, 0, 5000, ADM_ST_STEADY, 5);
    fx_free(f);
}

/* A step needs its bake AND min_requests; the last step completes the plan
 * as promoted. */
static void
test_plan_steps_need_bake_and_requests_then_promote(void **state)
{
    struct fx *f = fx_one(0);
    json_t *r, *root, *p, *e;
    uint64_t t = T0;

    plan_conf3(f, 0);
    expect_ok(r = run(f, "{\"cmd\":\"plan\",\"action\":\"start\"}"));
    json_decref(r);
    assert_int_equal(adm_control_plan_tick(f->c, 0, t, 100), 0);
    /* 5 s baked, only 4 requests */
    assert_int_equal(adm_control_plan_tick(f->c, 0, t += 5000, 104), 0);
    assert_state(f, 0, 1000, ADM_ST_PROGRESSING, 1);
    p = plan_of_status(f, &root);
    assert_true(num(p, "bake_left_s") == 0);
    assert_true(num(p, "requests") == 4);
    json_decref(root);
    /* the 5th */
    assert_int_equal(adm_control_plan_tick(f->c, 0, t += 100, 105), 1);
    assert_state(f, 0, 5000, ADM_ST_PROGRESSING, 2);

    /* 50 requests at once, bake not over */
    assert_int_equal(adm_control_plan_tick(f->c, 0, t += 100, 155), 0);
    assert_int_equal(adm_control_plan_tick(f->c, 0, t += 800, 155), 0);
    assert_state(f, 0, 5000, ADM_ST_PROGRESSING, 2);
    /* 1000 ms since the step began: the last step, promoted */
    assert_int_equal(adm_control_plan_tick(f->c, 0, t += 100, 155), 1);
    assert_state(f, 0, 10000, ADM_ST_PROMOTED, 3);
    assert_int_equal(f->calls[f->ncalls - 1].file_bp, 10000);
    assert_file_plan(f, "completed", 3);
    e = last_audit(f);
    assert_string_equal(str_of(e, "action"), "plan_step");
    assert_non_null(strstr(str_of(e, "reason"), "last step 3/3 (100%), plan completed"));
    json_decref(e);
    p = plan_of_status(f, &root);
    assert_string_equal(str_of(p, "state"), "completed");
    assert_int_equal(json_integer_value(json_object_get(p, "step")), 3);
    assert_true(num(p, "percent") == 100);
    json_decref(root);
    assert_int_equal(adm_control_plan_tick(f->c, 0, t += 10000, 999), 0);
    assert_state(f, 0, 10000, ADM_ST_PROMOTED, 3);
    fx_free(f);
}

/* A plan whose last step is below 100 % ends steady there. */
static void
test_plan_last_step_below_100_ends_steady(void **state)
{
    struct fx *f = fx_one(0);
    struct hl_plan_conf pc = { .nsteps = 2, .steps_bp = { 100, 2500 }, .bake_s = 2 };
    json_t *r;

    adm_control_set_plan(f->c, 0, &pc, 1);
    expect_ok(r = run(f, "{\"cmd\":\"plan\",\"action\":\"start\"}"));
    json_decref(r);
    assert_int_equal(adm_control_plan_tick(f->c, 0, T0, 0), 0);
    assert_int_equal(adm_control_plan_tick(f->c, 0, T0 + 2000, 1), 1);
    assert_state(f, 0, 2500, ADM_ST_STEADY, 2);
    fx_free(f);
}

static void
test_plan_refusals_change_nothing(void **state)
{
    static const char *const names[] = { "a", "b" };
    static const uint32_t bp[] = { 0, 2000 };
    struct fx *f = fx_new();
    char *state_before;
    json_t *r;

    fx_start(f, 2, names, bp);
    plan_conf3(f, 1);
    /* "a" has no plan at all */
    expect_error(run(f, "{\"cmd\":\"plan\",\"service\":\"a\",\"action\":\"start\"}"),
                 "plan start: service a has no plan");
    /* no service named with two services */
    expect_error(run(f, "{\"cmd\":\"plan\",\"action\":\"start\"}"), "service required");
    /* "b" runs at 20 %, above the first step */
    expect_error(run(f, "{\"cmd\":\"plan\",\"service\":\"b\",\"action\":\"start\"}"),
                 "plan start: the weight (20%) is above the plan's first step (10%) and a "
                 "plan never lowers the weight; set the weight to 10% or less first");
    /* rolled back: the latch holds */
    expect_ok(r = run(f, "{\"cmd\":\"rollback\",\"service\":\"b\"}"));
    json_decref(r);
    state_before = slurp(f->state);
    expect_error(run(f, "{\"cmd\":\"plan\",\"service\":\"b\",\"action\":\"start\"}"),
                 "plan start: service b is rolled_back; the latch holds until an operator "
                 "sets a weight");
    expect_error(run(f, "{\"cmd\":\"plan\",\"service\":\"b\",\"action\":\"resume\"}"),
                 "the plan is not paused (it is idle)");
    expect_error(run(f, "{\"cmd\":\"plan\",\"service\":\"b\",\"action\":\"abort\"}"),
                 "no plan is running (the plan is idle)");
    assert_state(f, 1, 0, ADM_ST_ROLLED_BACK, 1);
    {
        char *s = slurp(f->state);

        assert_string_equal(s, state_before);
        free(s);
    }
    free(state_before);
    assert_int_equal(audit_lines(f), 1);
    /* weight 0 clears the latch: then it starts */
    expect_ok(r = run(f, "{\"cmd\":\"weight\",\"service\":\"b\",\"percent\":0}"));
    json_decref(r);
    expect_ok(r = run(f, "{\"cmd\":\"plan\",\"service\":\"b\",\"action\":\"start\"}"));
    json_decref(r);
    assert_state(f, 1, 1000, ADM_ST_PROGRESSING, 3);
    assert_state(f, 0, 0, ADM_ST_STEADY, 0);
    fx_free(f);
}

/* An automatic rollback or freeze stops the plan (breached); an operator's
 * weight ends it (aborted). */
static void
test_plan_breach_and_operator_end_it(void **state)
{
    struct fx *f = fx_one(0);
    json_t *r, *root, *p;

    plan_conf3(f, 0);
    expect_ok(r = run(f, "{\"cmd\":\"plan\",\"action\":\"start\"}"));
    json_decref(r);
    assert_int_equal(adm_control_plan_tick(f->c, 0, T0, 0), 0);
    assert_int_equal(adm_control_plan_tick(f->c, 0, T0 + 900, 100), 0);
    assert_int_equal(adm_control_auto(f->c, 0, HL_AUTO_ROLLBACK, "error rate", NULL), 0);
    assert_state(f, 0, 0, ADM_ST_ROLLED_BACK, 2);
    assert_file_plan(f, "breached", 1);
    assert_int_equal(adm_control_plan_tick(f->c, 0, T0 + 5000, 500), 0);
    assert_state(f, 0, 0, ADM_ST_ROLLED_BACK, 2);
    p = plan_of_status(f, &root);
    assert_string_equal(str_of(p, "state"), "breached");
    assert_true(num(p, "bake_left_s") == 0);
    json_decref(root);

    /* freeze while paused: the weight is held, the plan stops */
    expect_ok(r = run(f, "{\"cmd\":\"weight\",\"percent\":0}"));
    json_decref(r);
    expect_ok(r = run(f, "{\"cmd\":\"plan\",\"action\":\"start\"}"));
    json_decref(r);
    expect_ok(r = run(f, "{\"cmd\":\"plan\",\"action\":\"pause\"}"));
    json_decref(r);
    assert_int_equal(adm_control_auto(f->c, 0, HL_AUTO_FREEZE, "p99", NULL), 0);
    assert_state(f, 0, 1000, ADM_ST_FROZEN, 6);
    expect_error(run(f, "{\"cmd\":\"plan\",\"action\":\"resume\"}"), "it is breached");
    expect_error(run(f, "{\"cmd\":\"plan\",\"action\":\"start\"}"), "service web is frozen");

    /* an operator's weight during a plan ends it */
    expect_ok(r = run(f, "{\"cmd\":\"weight\",\"percent\":0}"));
    json_decref(r);
    expect_ok(r = run(f, "{\"cmd\":\"plan\",\"action\":\"start\"}"));
    json_decref(r);
    expect_ok(r = run(f, "{\"cmd\":\"weight\",\"percent\":5}"));
    json_decref(r);
    assert_state(f, 0, 500, ADM_ST_STEADY, 9);
    assert_file_plan(f, "aborted", 1);
    assert_int_equal(adm_control_plan_tick(f->c, 0, T0 + 9000, 1000), 0);
    assert_int_equal(adm_control_plan_tick(f->c, 0, T0 + 19000, 2000), 0);
    assert_state(f, 0, 500, ADM_ST_STEADY, 9);
    /* and so does promote */
    expect_ok(r = run(f, "{\"cmd\":\"weight\",\"percent\":0}"));
    json_decref(r);
    expect_ok(r = run(f, "{\"cmd\":\"plan\",\"action\":\"start\"}"));
    json_decref(r);
    expect_ok(r = run(f, "{\"cmd\":\"promote\"}"));
    json_decref(r);
    assert_state(f, 0, 10000, ADM_ST_PROMOTED, 12);
    assert_file_plan(f, "aborted", 1);
    fx_free(f);
}

/* A step that cannot be saved is not taken (nothing applied or audited) and
 * is retried no sooner than 5 s later; a plan command's raise likewise. */
static void
test_plan_unsaved_step_is_not_taken(void **state)
{
    struct fx *f = fx_one(0);
    char blocker[PATH_MAX + 64];
    unsigned calls, lines;
    json_t *r;

    plan_conf3(f, 0);
    expect_ok(r = run(f, "{\"cmd\":\"plan\",\"action\":\"start\"}"));
    json_decref(r);
    assert_int_equal(adm_control_plan_tick(f->c, 0, T0, 0), 0);
    /* from now on the state file's directory cannot exist */
    snprintf(blocker, sizeof(blocker), "%s/state", f->dir);
    block_state_dir(f);
    calls = f->ncalls;
    lines = audit_lines(f);
    assert_int_equal(adm_control_plan_tick(f->c, 0, T0 + 1000, 10), -1);
    assert_state(f, 0, 1000, ADM_ST_PROGRESSING, 1);
    assert_int_equal(f->ncalls, calls);
    assert_int_equal(audit_lines(f), lines);
    /* not retried on every tick */
    assert_int_equal(adm_control_plan_tick(f->c, 0, T0 + 1100, 10), 0);
    assert_int_equal(adm_control_plan_tick(f->c, 0, T0 + 5999, 10), 0);
    /* the retry re-anchors, then the step is due again: what the step baked
     * and counted was kept */
    assert_int_equal(adm_control_plan_tick(f->c, 0, T0 + 6000, 10), 0);
    assert_int_equal(adm_control_plan_tick(f->c, 0, T0 + 6001, 10), -1);
    /* pause is not a raise: applied, reported unsaved */
    expect_error(run(f, "{\"cmd\":\"plan\",\"action\":\"pause\"}"), "applied but not saved");
    assert_state(f, 0, 1000, ADM_ST_PAUSED, 2);
    /* the disk is back: resume, and the step is taken at once (baked) */
    assert_int_equal(unlink(blocker), 0);
    expect_ok(r = run(f, "{\"cmd\":\"plan\",\"action\":\"resume\"}"));
    json_decref(r);
    assert_int_equal(adm_control_plan_tick(f->c, 0, T0 + 7000, 10), 0);   /* anchors */
    assert_int_equal(adm_control_plan_tick(f->c, 0, T0 + 7001, 10), 1);
    assert_state(f, 0, 5000, ADM_ST_PROGRESSING, 4);
    fx_free(f);
}

/* The plan's progress survives a restart; a restored plan that no longer fits
 * the config is stopped with its weight kept. */
static void
test_plan_restored_from_state_file(void **state)
{
    static const char *const names[] = { "web" };
    static const uint32_t bp[] = { 0 };
    struct hl_plan_conf other = { .nsteps = 2, .steps_bp = { 2000, 10000 }, .bake_s = 1 };
    struct hl_plan_conf none = { .nsteps = 0, .bake_s = 300 };
    struct fx *f = fx_one(0);
    json_t *r, *root, *p;
    char err[256];

    plan_conf3(f, 0);
    expect_ok(r = run(f, "{\"cmd\":\"plan\",\"action\":\"start\"}"));
    json_decref(r);
    assert_int_equal(adm_control_plan_tick(f->c, 0, T0, 0), 0);
    assert_int_equal(adm_control_plan_tick(f->c, 0, T0 + 1000, 5), 1);      /* step 2 */
    assert_int_equal(adm_control_plan_tick(f->c, 0, T0 + 1300, 7), 0);
    expect_ok(r = run(f, "{\"cmd\":\"plan\",\"action\":\"pause\"}"));
    json_decref(r);

    /* restart */
    adm_control_free(f->c);
    f->c = adm_control_new(names, bp, 1, f->state, f->audit, &f->ops, f, err, sizeof(err));
    assert_non_null(f->c);
    plan_conf3(f, 0);
    assert_state(f, 0, 5000, ADM_ST_PAUSED, 3);
    p = plan_of_status(f, &root);
    assert_string_equal(str_of(p, "state"), "paused");
    assert_int_equal(json_integer_value(json_object_get(p, "step")), 2);
    assert_true(num(p, "bake_left_s") == 0.7);
    assert_true(num(p, "requests") == 2);
    json_decref(root);
    expect_ok(r = run(f, "{\"cmd\":\"plan\",\"action\":\"resume\"}"));
    json_decref(r);
    assert_int_equal(adm_control_plan_tick(f->c, 0, 50, 0), 0);            /* anchors */
    assert_int_equal(adm_control_plan_tick(f->c, 0, 749, 3), 0);
    assert_int_equal(adm_control_plan_tick(f->c, 0, 750, 3), 1);
    assert_state(f, 0, 10000, ADM_ST_PROMOTED, 5);

    /* a running plan restored against other steps: stopped, weight kept */
    expect_ok(r = run(f, "{\"cmd\":\"weight\",\"percent\":0}"));
    json_decref(r);
    expect_ok(r = run(f, "{\"cmd\":\"plan\",\"action\":\"start\"}"));
    json_decref(r);
    adm_control_free(f->c);
    f->c = adm_control_new(names, bp, 1, f->state, f->audit, &f->ops, f, err, sizeof(err));
    assert_non_null(f->c);
    adm_control_set_plan(f->c, 0, &other, 5);
    assert_state(f, 0, 1000, ADM_ST_STEADY, 7);
    p = plan_of_status(f, &root);
    assert_string_equal(str_of(p, "state"), "aborted");
    json_decref(root);
    assert_int_equal(adm_control_plan_tick(f->c, 0, 0, 0), 0);
    assert_int_equal(adm_control_plan_tick(f->c, 0, 5000, 50), 0);
    assert_state(f, 0, 1000, ADM_ST_STEADY, 7);

    /* and against no plan at all */
    adm_control_free(f->c);
    f->c = adm_control_new(names, bp, 1, f->state, f->audit, &f->ops, f, err, sizeof(err));
    assert_non_null(f->c);
    assert_state(f, 0, 1000, ADM_ST_PROGRESSING, 7);   /* as the file says... */
    adm_control_set_plan(f->c, 0, &none, 5);
    assert_state(f, 0, 1000, ADM_ST_STEADY, 7);        /* ...until checked */
    p = plan_of_status(f, &root);
    assert_string_equal(str_of(p, "state"), "none");
    json_decref(root);
    fx_free(f);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_weight_sets_state_and_persists),
        cmocka_unit_test(test_raise_persists_first_lower_applies_first),
        cmocka_unit_test(test_unsaved_raise_is_refused_unsaved_lowering_stays),
        cmocka_unit_test(test_rollback_latches_and_weight_clears_it),
        cmocka_unit_test(test_promote),
        cmocka_unit_test(test_switch),
        cmocka_unit_test(test_bad_requests_change_nothing),
        cmocka_unit_test(test_unknown_keys_are_listed_within_bounds),
        cmocka_unit_test(test_exec_rejects_non_objects),
        cmocka_unit_test(test_levels),
        cmocka_unit_test(test_state_file_wins_over_config),
        cmocka_unit_test(test_corrupt_state_file_stops_startup),
        cmocka_unit_test(test_bad_service_names_are_refused),
        cmocka_unit_test(test_status_lists_percent_weights),
        cmocka_unit_test(test_reply_is_one_line_with_short_decimals),
        cmocka_unit_test(test_audit_records_every_change),
        cmocka_unit_test(test_audit_filter_by_service_and_actor),
        cmocka_unit_test(test_audit_failure_does_not_fail_the_command),
        cmocka_unit_test(test_audit_tail_reads_backwards_across_blocks),
        cmocka_unit_test(test_auto_svc),
        cmocka_unit_test(test_auto_rollback_latches_once),
        cmocka_unit_test(test_auto_freeze_holds_weight),
        cmocka_unit_test(test_auto_at_weight_zero_does_nothing),
        cmocka_unit_test(test_auto_rollback_unsaved_still_applies),
        cmocka_unit_test(test_unsaved_rollback_is_retried_until_saved),
        cmocka_unit_test(test_later_change_saves_dirty_state),
        cmocka_unit_test(test_restart_restores_unsaved_rollback_from_journal),
        cmocka_unit_test(test_audit_entries_wait_and_are_written_in_order),
        cmocka_unit_test(test_audit_queue_overflow_becomes_a_recovered_entry),
        cmocka_unit_test(test_startup_recovers_missing_audit_generations),
        cmocka_unit_test(test_startup_audit_ahead_of_state),
        cmocka_unit_test(test_plan_start_pause_resume_abort),
        cmocka_unit_test(test_plan_steps_need_bake_and_requests_then_promote),
        cmocka_unit_test(test_plan_last_step_below_100_ends_steady),
        cmocka_unit_test(test_plan_refusals_change_nothing),
        cmocka_unit_test(test_plan_breach_and_operator_end_it),
        cmocka_unit_test(test_plan_unsaved_step_is_not_taken),
        cmocka_unit_test(test_plan_restored_from_state_file),
    };

    return cmocka_run_group_tests(tests, NULL, teardown_group);
}
