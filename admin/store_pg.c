/*
 * store_pg: the fleet's PostgreSQL store (see store_pg.h). The session's
 * setup after every connect: the schema, in one transaction under an
 * advisory lock (BEGIN, the lock, the version table, the version, the
 * missing migrations, the new version, COMMIT), then the owner's up
 * callback. Rows, writes and the audit table follow the same queue: one
 * statement at a time on the one session, every callback from the loop.
 */
#include "admin/store_pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <jansson.h>

#include "admin/state.h"
#include "admin/store_pg_conf.h"
#include "admin/store_pg_schema.h"
#include "health/plan.h"
#include "lib/log.h"
#include "lib/pg.h"
#include "lib/xmalloc.h"

#define AUDIT_QUEUE_MAX 1000u    /* entries kept while the database is away */

struct audit_item {
    struct audit_item *next;
    char *service, *entry;
    uint64_t gen;
};

enum phase {
    PH_DOWN = 0,                 /* no session, or its setup runs */
    PH_UP,                       /* set up: rows may be read and written */
    PH_FATAL,                    /* the schema is refused: stays down */
};

struct adm_pgstore {
    struct event_base *base;     /* borrowed */
    const struct adm_pg_conf *conf;  /* borrowed */
    struct adm_pgstore_cbs cbs;
    void *arg;
    struct pg_client *pg;        /* owned */
    char name[256];              /* "store.postgres (host=... dbname=...)" */
    char channel[64];            /* "cutover_<fleet>" */
    enum phase phase;
    bool was_up;                 /* a setup completed before (reconnect) */
    bool setup_failed;           /* a setup statement failed: ROLLBACK, retry */
    unsigned session;            /* +1 per session: stale replies are ignored */
    int found_version, version;
    char last_error[512];        /* the last down reason */
    bool check_only;             /* cutoverd -t --check-store: change nothing */
    bool waiting;                /* adm_pgstore_wait_ready() runs */
    int wait_rc;                 /* its result: 1 pending, 0 up, -1 failed */
    bool wait_fatal;
    struct audit_item *aq, **aq_tail;    /* the audit queue, oldest first */
    unsigned aq_n;
    bool aq_busy;                /* the head is being written */
    uint64_t audit_dropped;
};

/* ---- setup ------------------------------------------------------------- */

static void setup_fail(struct adm_pgstore *s, const char *what, const struct pg_reply *r,
                       bool fatal);
static void audit_pump(struct adm_pgstore *s);
static pg_query_fn on_rollback_done;

struct setup_q {
    struct adm_pgstore *s;
    unsigned session;
    const char *what;            /* for the message */
};

static struct setup_q *
setup_q(struct adm_pgstore *s, const char *what)
{
    struct setup_q *q = xmalloc(sizeof(*q));

    q->s = s;
    q->session = s->session;
    q->what = what;
    return q;
}

/* A statement of the setup; the last one (COMMIT) completes it. */
static void
on_setup_step(struct pg_client *c, const struct pg_reply *r, void *arg)
{
    struct setup_q *q = arg;
    struct adm_pgstore *s = q->s;
    const char *what = q->what;
    bool stale = q->session != s->session || pg_reply_outcome(r) == PG_CLOSED;

    free(q);
    if (stale || s->setup_failed)
        return;
    if (pg_reply_outcome(r) != PG_OK)
        setup_fail(s, what, r, false);
}

static void
on_setup_commit(struct pg_client *c, const struct pg_reply *r, void *arg)
{
    struct setup_q *q = arg;
    struct adm_pgstore *s = q->s;
    bool stale = q->session != s->session || pg_reply_outcome(r) == PG_CLOSED;
    bool reconnect = s->was_up;

    free(q);
    if (stale || s->setup_failed)
        return;
    if (pg_reply_outcome(r) != PG_OK) {
        setup_fail(s, "COMMIT of the schema", r, false);
        return;
    }
    if (s->found_version != s->version)
        log_at(LL_INFO, "store", 0, "%s: schema migrated from version %d to %d", s->name,
               s->found_version, s->version);
    s->phase = PH_UP;
    s->was_up = true;
    s->last_error[0] = '\0';
    if (s->waiting)
        s->wait_rc = 0;
    log_at(LL_INFO, "store", 0, "%s: up (schema version %d, fleet %s, instance %s)%s",
           s->name, s->version, s->conf->fleet, s->conf->instance,
           reconnect ? ", reconnected: re-reading the fleet's state" : "");
    if (s->cbs.up != NULL)
        s->cbs.up(s->arg, reconnect);
    audit_pump(s);
}

static void
on_setup_version(struct pg_client *c, const struct pg_reply *r, void *arg)
{
    struct setup_q *q = arg;
    struct adm_pgstore *s = q->s;
    bool stale = q->session != s->session || pg_reply_outcome(r) == PG_CLOSED;
    const struct adm_pg_migration *m;
    char err[512], vbuf[16];
    const char *param[1];
    size_t n, first, i, k;
    long v = 0;

    free(q);
    if (stale || s->setup_failed)
        return;
    if (pg_reply_outcome(r) != PG_OK) {
        setup_fail(s, "reading cutover_schema_version", r, false);
        return;
    }
    if (pg_reply_rows(r) > 0 && pg_reply_value(r, 0, 0) != NULL)
        v = strtol(pg_reply_value(r, 0, 0), NULL, 10);
    s->found_version = (int)v;
    if (adm_pg_schema_plan(v, &first, err, sizeof(err)) != 0) {
        snprintf(s->last_error, sizeof(s->last_error), "%s", err);
        setup_fail(s, NULL, NULL, true);
        return;
    }
    m = adm_pg_migrations(&n);
    if (s->check_only) {
        /* report what a start would do, and change nothing */
        s->version = (int)v;
        pg_query(s->pg, "ROLLBACK", 0, NULL, on_rollback_done, NULL);
        if (s->waiting)
            s->wait_rc = 0;
        return;
    }
    for (i = first; i < n; i++) {
        log_at(LL_INFO, "store", 0, "%s: schema step %d: %s", s->name, m[i].version,
               m[i].what);
        for (k = 0; m[i].sql[k] != NULL; k++)
            pg_query(s->pg, m[i].sql[k], 0, NULL, on_setup_step,
                     setup_q(s, "a schema migration"));
    }
    s->version = adm_pg_schema_latest();
    if (first < n) {
        snprintf(vbuf, sizeof(vbuf), "%d", s->version);
        param[0] = vbuf;
        pg_query(s->pg, adm_pg_schema_version_write, 1, param, on_setup_step,
                 setup_q(s, "writing cutover_schema_version"));
    }
    pg_query(s->pg, "COMMIT", 0, NULL, on_setup_commit, setup_q(s, "COMMIT"));
}

static void
on_rollback_done(struct pg_client *c, const struct pg_reply *r, void *arg)
{
    (void)c;
    (void)r;
    (void)arg;
}

/* A setup statement failed (<r>, during <what>), or the schema is refused
 * (<fatal>, the reason already in last_error). The transaction is rolled
 * back; a refused schema stays down for good, anything else waits for the
 * next session. */
static void
setup_fail(struct adm_pgstore *s, const char *what, const struct pg_reply *r, bool fatal)
{
    s->setup_failed = true;
    if (!fatal)
        snprintf(s->last_error, sizeof(s->last_error), "%s failed: %s", what,
                 pg_reply_error(r));
    if (pg_state(s->pg) == PG_STATE_UP)
        pg_query(s->pg, "ROLLBACK", 0, NULL, on_rollback_done, NULL);
    if (fatal) {
        s->phase = PH_FATAL;
        log_at(LL_ERR, "store", 0, "%s: %s", s->name, s->last_error);
        if (s->cbs.fatal != NULL)
            s->cbs.fatal(s->arg, s->last_error);
    } else {
        log_at(LL_ERR, "store", 0, "%s: %s", s->name, s->last_error);
    }
    if (s->waiting) {
        s->wait_rc = -1;
        s->wait_fatal = fatal;
    }
}

static void
setup_start(struct adm_pgstore *s)
{
    char lock[64];

    s->setup_failed = false;
    snprintf(lock, sizeof(lock), "SELECT pg_advisory_xact_lock(%lld)",
             (long long)ADM_PG_SCHEMA_LOCK);
    pg_query(s->pg, "BEGIN", 0, NULL, on_setup_step, setup_q(s, "BEGIN"));
    pg_query(s->pg, lock, 0, NULL, on_setup_step, setup_q(s, "the schema lock"));
    pg_query(s->pg, adm_pg_schema_version_table, 0, NULL, on_setup_step,
             setup_q(s, "creating cutover_schema_version"));
    pg_query(s->pg, adm_pg_schema_version_read, 0, NULL, on_setup_version,
             setup_q(s, "reading cutover_schema_version"));
}

static void
on_pg_state(struct pg_client *c, const struct pg_state_info *st, void *arg)
{
    struct adm_pgstore *s = arg;
    bool was = s->phase == PH_UP;

    (void)c;
    s->session++;
    if (s->phase == PH_FATAL)
        return;
    if (st->state == PG_STATE_UP) {
        setup_start(s);
        return;
    }
    s->phase = PH_DOWN;
    s->aq_busy = false;
    snprintf(s->last_error, sizeof(s->last_error), "%s", st->reason != NULL ? st->reason
                                                                         : "down");
    if (s->waiting) {
        s->wait_rc = -1;
        s->wait_fatal = false;
    }
    if (was)
        log_at(LL_WARN, "store", 0, "%s: down: %s; serving on the last known state, "
               "retrying in %u ms", s->name, s->last_error, st->retry_ms);
    if (s->cbs.down != NULL && (was || !s->was_up || st->attempt <= 1))
        s->cbs.down(s->arg, s->last_error);
}

static void
on_pg_notify(struct pg_client *c, const char *channel, const char *payload, int pid,
             void *arg);

/* ---- life cycle -------------------------------------------------------- */

struct adm_pgstore *
adm_pgstore_new(struct event_base *base, const struct adm_pg_conf *conf, uint64_t seed,
                const struct adm_pgstore_cbs *cbs, void *arg)
{
    struct adm_pgstore *s = xcalloc(1, sizeof(*s));
    struct pg_conf pc = {
        .name = "store", .host = conf->host, .port = conf->port, .dbname = conf->dbname,
        .user = conf->user, .password_file = conf->password_file,
        .application_name = conf->application_name != NULL ? conf->application_name
                                                           : "cutoverd",
        .sslmode = conf->sslmode, .connect_timeout_ms = conf->connect_timeout_ms,
        .statement_timeout_ms = conf->statement_timeout_ms, .seed = seed,
        .max_queue = 256,
    };

    s->base = base;
    s->conf = conf;
    if (cbs != NULL)
        s->cbs = *cbs;
    s->arg = arg;
    s->aq_tail = &s->aq;
    s->found_version = s->version = -1;
    snprintf(s->name, sizeof(s->name), "store.postgres (%.200s)", conf->conninfo);
    snprintf(s->channel, sizeof(s->channel), "cutover_%s", conf->fleet);
    s->pg = pg_new(base, &pc, on_pg_state, s);
    if (s->pg == NULL || pg_listen(s->pg, s->channel, on_pg_notify, s) != 0) {
        pg_free(s->pg);
        free(s);
        return NULL;
    }
    return s;
}

void
adm_pgstore_check_only(struct adm_pgstore *s)
{
    s->check_only = true;
}

int
adm_pgstore_start(struct adm_pgstore *s)
{
    return pg_start(s->pg);
}

int
adm_pgstore_wait_ready(struct adm_pgstore *s, char *err, size_t errlen, bool *fatal)
{
    s->waiting = true;
    s->wait_rc = 1;
    s->wait_fatal = false;
    if (pg_start(s->pg) != 0) {
        s->waiting = false;
        snprintf(err, errlen, "%s: cannot start the client", s->name);
        return -1;
    }
    while (s->wait_rc == 1)
        if (event_base_loop(s->base, EVLOOP_ONCE) < 0)
            break;
    s->waiting = false;
    if (fatal != NULL)
        *fatal = s->wait_fatal;
    if (s->wait_rc != 0) {
        snprintf(err, errlen, "%s: %s", s->name, s->last_error[0] != '\0' ? s->last_error
                                                                          : "not up");
        return -1;
    }
    return 0;
}

bool
adm_pgstore_up(const struct adm_pgstore *s)
{
    return s != NULL && s->phase == PH_UP;
}

void
adm_pgstore_versions(const struct adm_pgstore *s, int *found, int *now)
{
    *found = s->found_version;
    *now = s->version;
}

const char *
adm_pgstore_name(const struct adm_pgstore *s)
{
    return s->name;
}

void
adm_pgstore_free(struct adm_pgstore *s)
{
    struct audit_item *a, *next;

    if (s == NULL)
        return;
    pg_free(s->pg);                    /* calls back the queries still open */
    for (a = s->aq; a != NULL; a = next) {
        next = a->next;
        free(a->service);
        free(a->entry);
        free(a);
    }
    free(s);
}

/* ---- rows -------------------------------------------------------------- */

/* The columns every row read returns, in this order. */
#define ROW_COLS "name, weight_bp, state, generation, plan::text, updated_by, " \
                 "(extract(epoch FROM updated_at) * 1000)::float8"

/* The plan object of an entry, or NULL ("null" in SQL) without one. */
static char *
plan_text(const struct adm_store_entry *e)
{
    json_t *p;
    char *t;

    if (!e->has_plan || e->plan_state < 0 || e->plan_state >= HL_PLAN__COUNT)
        return NULL;
    p = json_pack("{s:s, s:I, s:I, s:I}", "state", hl_plan_state_names[e->plan_state],
                  "step", (json_int_t)e->plan_step, "baked_ms", (json_int_t)e->plan_baked_ms,
                  "requests", (json_int_t)e->plan_requests);
    t = p != NULL ? json_dumps(p, JSON_COMPACT) : NULL;
    json_decref(p);
    return t;
}

/* Reads plan object <p> into <e>; false when it is not one. */
static bool
plan_from_json(json_t *p, struct adm_store_entry *e)
{
    json_t *st = json_object_get(p, "state");
    int k;

    e->has_plan = false;
    if (p == NULL || json_is_null(p))
        return true;
    if (!json_is_string(st) || (k = hl_plan_state_from_name(json_string_value(st))) < 0
        || !json_is_integer(json_object_get(p, "step"))
        || !json_is_integer(json_object_get(p, "baked_ms"))
        || !json_is_integer(json_object_get(p, "requests")))
        return false;
    e->has_plan = true;
    e->plan_state = k;
    e->plan_step = (unsigned)json_integer_value(json_object_get(p, "step"));
    e->plan_baked_ms = (uint64_t)json_integer_value(json_object_get(p, "baked_ms"));
    e->plan_requests = (uint64_t)json_integer_value(json_object_get(p, "requests"));
    return e->plan_step < HL_PLAN_MAX_STEPS;
}

/* Fills <row> from the strings of one row; false when a value is invalid
 * (a row written by something else than cutoverd). */
static bool
row_fill(struct adm_pg_row *row, const char *name, const char *w, const char *state,
         const char *gen, const char *plan, const char *by, const char *at)
{
    json_t *p = NULL;
    int st;
    long wv;
    bool ok;

    memset(row, 0, sizeof(*row));
    if (name == NULL || w == NULL || state == NULL || gen == NULL
        || strlen(name) >= sizeof(row->e.name))
        return false;
    snprintf(row->e.name, sizeof(row->e.name), "%s", name);
    wv = strtol(w, NULL, 10);
    if (wv < 0 || wv > 10000 || (st = adm_state_from_name(state)) < 0)
        return false;
    row->e.weight_bp = (uint32_t)wv;
    row->e.state = st;
    row->e.generation = strtoull(gen, NULL, 10);
    if (plan != NULL && (p = json_loads(plan, 0, NULL)) == NULL)
        return false;
    ok = plan_from_json(p, &row->e);
    json_decref(p);
    snprintf(row->by, sizeof(row->by), "%s", by != NULL ? by : "");
    row->at_ms = at != NULL ? strtod(at, NULL) : 0;
    return ok;
}

struct rows_q {
    struct adm_pgstore *s;
    adm_pgstore_rows_fn *cb;
    void *arg;
    struct adm_store_entry e;    /* a write's entry (the conflict's re-read) */
};

static void
rows_reply(struct rows_q *q, const struct pg_reply *r, const char *what)
{
    struct adm_pg_row *rows;
    char err[512];
    int i, n = pg_reply_rows(r), k = 0;

    if (pg_reply_outcome(r) != PG_OK) {
        snprintf(err, sizeof(err), "%s: %s", what, pg_reply_error(r));
        q->cb(q->arg, false, NULL, 0, err);
        return;
    }
    rows = xcalloc(n > 0 ? (size_t)n : 1, sizeof(*rows));
    for (i = 0; i < n; i++) {
        if (row_fill(&rows[k], pg_reply_value(r, i, 0), pg_reply_value(r, i, 1),
                     pg_reply_value(r, i, 2), pg_reply_value(r, i, 3),
                     pg_reply_value(r, i, 4), pg_reply_value(r, i, 5),
                     pg_reply_value(r, i, 6)))
            k++;
        else
            log_at(LL_WARN, "store", 0, "%s: cutover_service row \"%s\" is not valid: "
                   "ignored", q->s->name, pg_reply_value(r, i, 0) != NULL
                   ? pg_reply_value(r, i, 0) : "");
    }
    q->cb(q->arg, true, rows, (unsigned)k, NULL);
    free(rows);
}

static void
on_read(struct pg_client *c, const struct pg_reply *r, void *arg)
{
    struct rows_q *q = arg;

    (void)c;
    rows_reply(q, r, "reading the fleet's state");
    free(q);
}

static void
on_seed(struct pg_client *c, const struct pg_reply *r, void *arg)
{
    struct rows_q *q = arg;
    char err[512];

    (void)c;
    /* the read queued behind it answers the caller */
    if (pg_reply_outcome(r) != PG_OK && pg_reply_outcome(r) != PG_CLOSED) {
        snprintf(err, sizeof(err), "seeding the fleet's state: %s", pg_reply_error(r));
        log_at(LL_WARN, "store", 0, "%s: %s", q->s->name, err);
    }
    free(q);
}

int
adm_pgstore_seed_and_read(struct adm_pgstore *s, const struct adm_store_entry *e,
                          unsigned n, adm_pgstore_rows_fn *cb, void *arg)
{
    static const char seed[] =
        "INSERT INTO cutover_service (fleet, name, weight_bp, state, generation, plan, "
        "updated_by) VALUES ($1, $2, $3::integer, $4, $5::bigint, $6::jsonb, $7) "
        "ON CONFLICT (fleet, name) DO NOTHING";
    static const char read[] =
        "SELECT " ROW_COLS " FROM cutover_service WHERE fleet = $1 ORDER BY name";
    struct rows_q *q;
    char w[16], g[24], *plan;
    const char *p[7];
    unsigned i;

    for (i = 0; i < n; i++) {
        snprintf(w, sizeof(w), "%u", e[i].weight_bp);
        snprintf(g, sizeof(g), "%llu", (unsigned long long)e[i].generation);
        plan = plan_text(&e[i]);
        p[0] = s->conf->fleet;
        p[1] = e[i].name;
        p[2] = w;
        p[3] = adm_state_names[e[i].state];
        p[4] = g;
        p[5] = plan;
        p[6] = s->conf->instance;
        q = xcalloc(1, sizeof(*q));
        q->s = s;
        pg_query(s->pg, seed, 7, p, on_seed, q);
        free(plan);
    }
    q = xcalloc(1, sizeof(*q));
    q->s = s;
    q->cb = cb;
    q->arg = arg;
    p[0] = s->conf->fleet;
    return pg_query(s->pg, read, 1, p, on_read, q);
}

static void
on_conflict_read(struct pg_client *c, const struct pg_reply *r, void *arg)
{
    struct rows_q *q = arg;
    struct adm_pg_row row;

    (void)c;
    if (pg_reply_outcome(r) == PG_OK && pg_reply_rows(r) == 1
        && row_fill(&row, pg_reply_value(r, 0, 0), pg_reply_value(r, 0, 1),
                    pg_reply_value(r, 0, 2), pg_reply_value(r, 0, 3), pg_reply_value(r, 0, 4),
                    pg_reply_value(r, 0, 5), pg_reply_value(r, 0, 6)))
        q->cb(q->arg, true, &row, 0, "conflict");
    else
        q->cb(q->arg, true, NULL, 0, "conflict");
    free(q);
}

static void
on_write(struct pg_client *c, const struct pg_reply *r, void *arg)
{
    static const char read1[] =
        "SELECT " ROW_COLS " FROM cutover_service WHERE fleet = $1 AND name = $2";
    struct rows_q *q = arg;
    const char *p[2];

    (void)c;
    if (pg_reply_outcome(r) == PG_OK && pg_reply_rows(r) == 0) {
        /* the compare-and-set found another generation, or no row */
        p[0] = q->s->conf->fleet;
        p[1] = q->e.name;
        if (pg_query(q->s->pg, read1, 2, p, on_conflict_read, q) != 0) {
            q->cb(q->arg, true, NULL, 0, "conflict");
            free(q);
        }
        return;
    }
    rows_reply(q, r, "writing the change");
    free(q);
}

int
adm_pgstore_write(struct adm_pgstore *s, const struct adm_store_entry *e,
                  const uint64_t *expect, adm_pgstore_rows_fn *cb, void *arg)
{
    /* One statement, one transaction: the update (compare-and-set when $7
     * is not NULL) and the notification of the row it wrote. */
    static const char sql[] =
        "WITH u AS (UPDATE cutover_service SET weight_bp = $3::integer, state = $4, "
        "plan = $5::jsonb, generation = generation + 1, updated_at = clock_timestamp(), "
        "updated_by = $6 WHERE fleet = $1 AND name = $2 "
        "AND ($7::bigint IS NULL OR generation = $7::bigint) RETURNING *) "
        "SELECT u.name, u.weight_bp, u.state, u.generation, u.plan::text, u.updated_by, "
        "(extract(epoch FROM u.updated_at) * 1000)::float8, "
        "pg_notify($8, json_build_object('service', u.name, 'weight_bp', u.weight_bp, "
        "'state', u.state, 'generation', u.generation, 'plan', u.plan, 'by', u.updated_by, "
        "'at_ms', (extract(epoch FROM u.updated_at) * 1000)::float8)::text) FROM u";
    struct rows_q *q = xcalloc(1, sizeof(*q));
    char w[16], g[24], *plan = plan_text(e);
    const char *p[8];
    int rc;

    q->s = s;
    q->cb = cb;
    q->arg = arg;
    q->e = *e;
    snprintf(w, sizeof(w), "%u", e->weight_bp);
    if (expect != NULL)
        snprintf(g, sizeof(g), "%llu", (unsigned long long)*expect);
    p[0] = s->conf->fleet;
    p[1] = e->name;
    p[2] = w;
    p[3] = adm_state_names[e->state];
    p[4] = plan;
    p[5] = s->conf->instance;
    p[6] = expect != NULL ? g : NULL;
    p[7] = s->channel;
    rc = pg_query(s->pg, sql, 8, p, on_write, q);
    free(plan);
    if (rc != 0)
        free(q);
    return rc;
}

int
adm_pg_row_from_notify(const char *payload, struct adm_pg_row *row)
{
    json_t *j = json_loads(payload, 0, NULL), *p;
    char w[24], g[24], at[32], *plan = NULL;
    bool ok;

    memset(row, 0, sizeof(*row));
    if (j == NULL || !json_is_string(json_object_get(j, "service"))
        || !json_is_integer(json_object_get(j, "weight_bp"))
        || !json_is_string(json_object_get(j, "state"))
        || !json_is_integer(json_object_get(j, "generation"))
        || json_integer_value(json_object_get(j, "generation")) < 0) {
        json_decref(j);
        return -1;
    }
    snprintf(w, sizeof(w), "%lld", (long long)json_integer_value(json_object_get(j, "weight_bp")));
    snprintf(g, sizeof(g), "%lld", (long long)json_integer_value(json_object_get(j, "generation")));
    snprintf(at, sizeof(at), "%.3f", json_number_value(json_object_get(j, "at_ms")));
    p = json_object_get(j, "plan");
    if (p != NULL && !json_is_null(p))
        plan = json_dumps(p, JSON_COMPACT);
    ok = row_fill(row, json_string_value(json_object_get(j, "service")), w,
                  json_string_value(json_object_get(j, "state")), g, plan,
                  json_is_string(json_object_get(j, "by"))
                  ? json_string_value(json_object_get(j, "by")) : "", at);
    free(plan);
    json_decref(j);
    return ok ? 0 : -1;
}

static void
on_pg_notify(struct pg_client *c, const char *channel, const char *payload, int pid,
             void *arg)
{
    struct adm_pgstore *s = arg;
    struct adm_pg_row row;

    (void)c;
    (void)channel;
    (void)pid;
    if (adm_pg_row_from_notify(payload, &row) != 0) {
        log_at(LL_WARN, "store", 0, "%s: a notification that is not a valid row: ignored",
               s->name);
        return;
    }
    if (s->phase == PH_UP && s->cbs.changed != NULL)
        s->cbs.changed(s->arg, &row);
}

/* ---- audit ------------------------------------------------------------- */

static void
on_audit_written(struct pg_client *c, const struct pg_reply *r, void *arg)
{
    struct adm_pgstore *s = arg;
    struct audit_item *a;

    (void)c;
    if (pg_reply_outcome(r) == PG_CLOSED)
        return;
    s->aq_busy = false;
    if (pg_reply_outcome(r) == PG_ERROR) {
        /* the server refused the entry itself: retrying cannot help */
        log_at(LL_ERR, "store", 0, "%s: audit entry refused, not in cutover_audit: %s",
               s->name, pg_reply_error(r));
    } else if (pg_reply_outcome(r) != PG_OK) {
        return;                        /* kept: written after the next setup */
    }
    a = s->aq;
    s->aq = a->next;
    if (s->aq == NULL)
        s->aq_tail = &s->aq;
    s->aq_n--;
    free(a->service);
    free(a->entry);
    free(a);
    audit_pump(s);
}

/* Writes the queue's head when up and nothing is being written. */
static void
audit_pump(struct adm_pgstore *s)
{
    static const char sql[] =
        "INSERT INTO cutover_audit (fleet, instance, service, generation, entry) "
        "VALUES ($1, $2, $3, $4::bigint, $5::jsonb)";
    const char *p[5];
    char g[24];

    if (s->aq == NULL || s->aq_busy || s->phase != PH_UP)
        return;
    snprintf(g, sizeof(g), "%llu", (unsigned long long)s->aq->gen);
    p[0] = s->conf->fleet;
    p[1] = s->conf->instance;
    p[2] = s->aq->service;
    p[3] = g;
    p[4] = s->aq->entry;
    s->aq_busy = true;
    pg_query(s->pg, sql, 5, p, on_audit_written, s);
}

void
adm_pgstore_audit(struct adm_pgstore *s, const char *service, uint64_t gen,
                  const char *entry)
{
    struct audit_item *a;

    if (s->aq_n >= AUDIT_QUEUE_MAX) {
        if (s->audit_dropped++ == 0)
            log_at(LL_ERR, "store", 0, "%s: %u audit entries wait for the database: "
                   "newer ones are not kept for cutover_audit (the local log has them)",
                   s->name, AUDIT_QUEUE_MAX);
        return;
    }
    a = xcalloc(1, sizeof(*a));
    a->service = xstrdup(service);
    a->entry = xstrdup(entry);
    a->gen = gen;
    *s->aq_tail = a;
    s->aq_tail = &a->next;
    s->aq_n++;
    audit_pump(s);
}

unsigned
adm_pgstore_audit_pending(const struct adm_pgstore *s)
{
    return s->aq_n;
}

struct tail_q {
    adm_pgstore_json_fn *cb;
    void *arg;
};

static void
on_tail(struct pg_client *c, const struct pg_reply *r, void *arg)
{
    struct tail_q *q = arg;
    json_t *arr, *e;
    int i, n;

    (void)c;
    if (pg_reply_outcome(r) != PG_OK) {
        q->cb(q->arg, NULL, pg_reply_error(r));
        free(q);
        return;
    }
    arr = json_array();
    n = pg_reply_rows(r);
    for (i = n - 1; i >= 0; i--) {          /* newest first in the reply */
        e = json_loads(pg_reply_value(r, i, 1) != NULL ? pg_reply_value(r, i, 1) : "", 0,
                       NULL);
        if (!json_is_object(e)) {
            json_decref(e);
            continue;
        }
        json_object_set_new(e, "instance", json_string(pg_reply_value(r, i, 0) != NULL
                                                       ? pg_reply_value(r, i, 0) : ""));
        json_array_append_new(arr, e);
    }
    q->cb(q->arg, arr, NULL);
    free(q);
}

int
adm_pgstore_audit_tail(struct adm_pgstore *s, const char *service, unsigned n,
                       adm_pgstore_json_fn *cb, void *arg)
{
    static const char sql[] =
        "SELECT instance, entry::text FROM cutover_audit WHERE fleet = $1 "
        "AND ($2::text IS NULL OR service = $2) ORDER BY id DESC LIMIT $3::integer";
    struct tail_q *q = xcalloc(1, sizeof(*q));
    char nb[16];
    const char *p[3];

    q->cb = cb;
    q->arg = arg;
    snprintf(nb, sizeof(nb), "%u", n);
    p[0] = s->conf->fleet;
    p[1] = service;
    p[2] = nb;
    if (pg_query(s->pg, sql, 3, p, on_tail, q) != 0) {
        free(q);
        return -1;
    }
    return 0;
}
