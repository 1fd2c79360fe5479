/*
 * Tests for admin/control.c (and the audit log it writes, admin/audit.c):
 * commands change weight, latch and generation as documented; the ordering
 * rule (raise: persist then apply; lower: apply then persist) is observed
 * from inside the apply callback; refused requests change nothing at all;
 * the state file wins at startup; the audit log records every change and
 * its tail is read correctly across block boundaries.
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

#include "admin/audit.h"
#include "admin/control.h"
#include "admin/store.h"

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

static void
rm_rf(const char *path)
{
    struct stat sb;
    DIR *d;
    struct dirent *de;
    char sub[PATH_MAX + 256];

    if (lstat(path, &sb) != 0)
        return;
    if (S_ISDIR(sb.st_mode)) {
        d = opendir(path);
        if (d != NULL) {
            while ((de = readdir(d)) != NULL) {
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                    continue;
                snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
                rm_rf(sub);
            }
            closedir(d);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
}

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

static void
on_switched(void *arg, unsigned svc, enum rt_side left, int drain_s)
{
    struct fx *f = arg;
    struct call *c;

    assert_true(f->ncalls < MAX_CALLS);
    c = &f->calls[f->ncalls++];
    c->kind = 's';
    c->svc = svc;
    c->left = left;
    c->drain_s = drain_s;
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

    /* Promote is a raise. */
    expect_ok(r = run(f, "{\"cmd\":\"promote\"}"));
    json_decref(r);
    assert_int_equal(f->calls[3].file_bp, 10000);
    fx_free(f);
}

static void
test_unsaved_raise_is_refused_unsaved_lowering_stays(void **state)
{
    struct fx *f = fx_one(2000);
    char blocker[PATH_MAX + 64];
    char *audit_before;
    json_t *r;

    /* From now on the state file's directory cannot exist. */
    snprintf(blocker, sizeof(blocker), "%s/state", f->dir);
    write_file(blocker, "not a directory");

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
    assert_int_equal(f->ncalls, 2);
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
    { "{\"cmd\":\"weight\",\"service\":\"c\",\"percent\":10}",
      "unknown service \"c\" (one of: a, b)" },
    { "{\"cmd\":\"weight\",\"percent\":10}", "service required (one of: a, b)" },
    { "{\"cmd\":\"weight\",\"service\":7,\"percent\":10}", "\"service\" must be a string" },
    { "{\"cmd\":\"rollback\"}", "service required (one of: a, b)" },
    { "{\"cmd\":\"rollback\",\"service\":\"a\",\"reason\":5}", "\"reason\" must be a string" },
    { "{\"cmd\":\"rollback\",\"service\":\"a\",\"percent\":0}",
      "unknown key in \"rollback\" request: \"percent\"" },
    { "{\"cmd\":\"promote\",\"service\":\"a\",\"force\":true}",
      "unknown key in \"promote\" request: \"force\"" },
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
    { "{\"cmd\":\"plan\",\"service\":\"a\",\"action\":\"start\"}", "plan: not available yet" },
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

/* ---- startup ------------------------------------------------------------ */

static void
test_state_file_wins_over_config(void **state)
{
    static const char *const names[] = { "web", "api" };
    static const uint32_t bp[] = { 500, 9000 };
    struct adm_store_entry saved[] = {
        { "web", 3000, ADM_ST_ROLLED_BACK, 7 },
        { "gone", 100, ADM_ST_STEADY, 2 },        /* not in the config: dropped */
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

    /* A reason with a newline stays one reply line and one audit line. */
    line = "{\"cmd\":\"rollback\",\"reason\":\"two\\nlines\"}";
    out = adm_control_exec_line(f->c, line, strlen(line), "uid:0");
    assert_null(strchr(out, '\n'));
    free(out);
    out = slurp(f->audit);
    assert_non_null(out);
    assert_non_null(strstr(out, "\"reason\":\"two\\nlines\""));
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
        cmocka_unit_test(test_exec_rejects_non_objects),
        cmocka_unit_test(test_state_file_wins_over_config),
        cmocka_unit_test(test_corrupt_state_file_stops_startup),
        cmocka_unit_test(test_bad_service_names_are_refused),
        cmocka_unit_test(test_status_lists_percent_weights),
        cmocka_unit_test(test_reply_is_one_line_with_short_decimals),
        cmocka_unit_test(test_audit_records_every_change),
        cmocka_unit_test(test_audit_filter_by_service_and_actor),
        cmocka_unit_test(test_audit_failure_does_not_fail_the_command),
        cmocka_unit_test(test_audit_tail_reads_backwards_across_blocks),
    };

    return cmocka_run_group_tests(tests, NULL, teardown_group);
}
