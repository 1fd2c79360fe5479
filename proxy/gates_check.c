/*
 * proxy/gates_check: `cutoverd -t --check-gates` (see gates_check.h).
 *
 * One probe per database of a gate, each with a client of its own (lib/pg.h)
 * on one private event base, all at once. A probe is a short script run one
 * statement at a time; every script starts with BEGIN TRANSACTION READ ONLY
 * and ends with ROLLBACK, so nothing is changed whatever it finds:
 *
 *   query    (sql; compare's legacy and new)  the gate's query: one number
 *   replica  (replication_lag)  the role: in recovery?, system identifier,
 *            does the heartbeat table exist; the gate's own replica
 *            statement; not in recovery: its subscription(s)
 *   source   (replication_lag)  the role, as above; the table's columns;
 *            INSERT and UPDATE rights, a unique index on "gate" alone, the
 *            publications that hold it
 *
 * A probe ends at its first error (a failed connect attempt counts: no
 * retry), or after its ROLLBACK; a gate ends when its probes have, and its
 * summary compares what they found (the verdict now; for a lag gate, the
 * roles of the two servers against each other). The loop ends when every
 * gate has, or at a deadline of its own (longest timeout_ms x 8 + 1 s).
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "health/gate.h"
#include "lib/pg.h"
#include "lib/timeval.h"
#include "lib/xmalloc.h"
#include "proxy/conf.h"
#include "proxy/gates.h"
#include "proxy/gates_check.h"

#define LINE_MAX_ 768

enum role { R_QUERY, R_REPLICA, R_SOURCE };

enum step { ST_BEGIN, ST_QUERY, ST_ROLE, ST_READ, ST_SUB, ST_COLS, ST_TABLE, ST_END };

struct chk;

struct probe {
    struct chk *chk;
    int db;                          /* 0: conf.db, 1: conf.db2 */
    enum role role;
    struct pg_client *pg;
    enum step step;
    bool up_once, done, failed;
    char info[LINE_MAX_];            /* what holds, for the report */
    char err[LINE_MAX_];             /* the error, when failed */
    char note[LINE_MAX_];            /* a warning (the verdict now), not an error */
    /* what it found */
    bool have_num;
    double num;
    bool in_recovery;
    char sysid[32];
    bool table;                      /* the heartbeat table exists */
    bool published;
    char pubs[256];
    char read_seq[32];               /* replica: the heartbeat row's seq, "" none */
};

struct run;

struct chk {
    struct run *run;
    const struct hl_gate_conf *c;
    unsigned si, gi;
    const char *svc;
    char key[160];                   /* "service/gate": the heartbeat row */
    unsigned nprobes, pending;
    struct probe p[2];
};

struct run {
    struct event_base *base;
    unsigned pending;                /* gates not ended */
};

static const char *const db_names[HL_GATE_KIND__COUNT][2] = {
    [HL_GATE_SQL] = { "database", "" },
    [HL_GATE_COMPARE] = { "legacy", "new" },
    [HL_GATE_LAG] = { "replica", "source" },
    [HL_GATE_HTTP] = { "", "" },
};

static void
appendf(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void
appendf(char *buf, size_t len, const char *fmt, ...)
{
    size_t n = strlen(buf);
    va_list ap;

    if (n + 1 >= len)
        return;
    va_start(ap, fmt);
    vsnprintf(buf + n, len - n, fmt, ap);
    va_end(ap);
}

static void chk_probe_ended(struct chk *k);

static void
probe_end(struct probe *p)
{
    if (p->done)
        return;
    p->done = true;
    chk_probe_ended(p->chk);
}

static void
probe_fail(struct probe *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
probe_fail(struct probe *p, const char *fmt, ...)
{
    va_list ap;

    if (p->done)
        return;
    va_start(ap, fmt);
    vsnprintf(p->err, sizeof(p->err), fmt, ap);
    va_end(ap);
    p->failed = true;
    probe_end(p);
}

static void on_reply(struct pg_client *c, const struct pg_reply *r, void *arg);

static void
q_send(struct probe *p, enum step st, const char *sql, int n, const char *const *params)
{
    p->step = st;
    if (pg_query(p->pg, sql, n, params, on_reply, p) != 0)
        probe_fail(p, "the client is closing");
}

static bool
is_true(const char *v)
{
    return v != NULL && strcmp(v, "t") == 0;
}

/* ROLE: in recovery, the system identifier, the heartbeat table. */
static void
send_role(struct probe *p)
{
    const char *params[1] = { p->chk->c->heartbeat_table };

    q_send(p, ST_ROLE, "SELECT pg_is_in_recovery(), (SELECT system_identifier FROM "
         "pg_control_system())::text, to_regclass($1) IS NOT NULL", 1, params);
}

static void
send_end(struct probe *p)
{
    q_send(p, ST_END, "ROLLBACK", 0, NULL);
}

static void
send_read(struct probe *p)
{
    char sql[512];
    const char *params[2] = { p->chk->key, p->chk->c->subscription };
    int n = px_gates_replica_sql(p->chk->c, sql, sizeof(sql));

    q_send(p, ST_READ, sql, n, params);
}

static void
send_sub(struct probe *p)
{
    const struct hl_gate_conf *c = p->chk->c;
    const char *params[1] = { c->subscription };

    if (c->subscription[0] != '\0')
        q_send(p, ST_SUB, "SELECT count(*), count(*) FILTER (WHERE subenabled) FROM "
             "pg_subscription WHERE subname = $1 AND subdbid = (SELECT oid FROM pg_database "
             "WHERE datname = current_database())", 1, params);
    else
        q_send(p, ST_SUB, "SELECT count(*), count(*) FILTER (WHERE subenabled) FROM "
             "pg_subscription WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = "
             "current_database())", 0, NULL);
}

static void
send_cols(struct probe *p)
{
    char sql[256];

    snprintf(sql, sizeof(sql), "SELECT gate, seq FROM %s WHERE false",
             p->chk->c->heartbeat_table);
    q_send(p, ST_COLS, sql, 0, NULL);
}

static void
send_table(struct probe *p)
{
    const char *params[1] = { p->chk->c->heartbeat_table };

    q_send(p, ST_TABLE, "SELECT has_table_privilege($1, 'INSERT') AND has_table_privilege($1, "
         "'UPDATE'), EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = "
         "i.indrelid AND a.attnum = i.indkey[0] WHERE i.indrelid = to_regclass($1) AND "
         "i.indisunique AND i.indnkeyatts = 1 AND i.indpred IS NULL AND a.attname = 'gate'), "
         "(SELECT string_agg(pubname, ', ' ORDER BY pubname) FROM pg_publication_tables WHERE "
         "format('%I.%I', schemaname, tablename)::regclass = to_regclass($1))", 1, params);
}

static void
on_role(struct probe *p, const struct pg_reply *r)
{
    const struct hl_gate_conf *c = p->chk->c;

    if (pg_reply_rows(r) != 1 || pg_reply_cols(r) != 3) {
        probe_fail(p, "unexpected reply to the role query");
        return;
    }
    p->in_recovery = is_true(pg_reply_value(r, 0, 0));
    snprintf(p->sysid, sizeof(p->sysid), "%s",
             pg_reply_value(r, 0, 1) != NULL ? pg_reply_value(r, 0, 1) : "?");
    p->table = is_true(pg_reply_value(r, 0, 2));
    if (p->role == R_SOURCE) {
        if (p->in_recovery) {
            probe_fail(p, "is a standby (in recovery): the heartbeat is written on the "
                       "source, which must be the primary (are conninfo and source the "
                       "wrong way round?)");
            return;
        }
        if (!p->table) {
            probe_fail(p, "no heartbeat table %s: CREATE TABLE %s (gate text PRIMARY KEY, "
                       "seq bigint NOT NULL)", c->heartbeat_table, c->heartbeat_table);
            return;
        }
        appendf(p->info, sizeof(p->info), ", a primary (not in recovery)");
        send_cols(p);
        return;
    }
    if (!p->table) {
        probe_fail(p, "no heartbeat table %s (%s)", c->heartbeat_table, p->in_recovery
                   ? "a standby gets it from its primary: create it on the source"
                   : "a logical subscriber needs it created, and subscribed to");
        return;
    }
    appendf(p->info, sizeof(p->info), ", %s", p->in_recovery ? "a standby (in recovery)"
            : "not in recovery (a logical subscriber?)");
    send_read(p);
}

static void
on_read(struct probe *p, const struct pg_reply *r)
{
    const struct hl_gate_conf *c = p->chk->c;
    const char *seq, *lsn;

    if (pg_reply_rows(r) != 1 || pg_reply_cols(r) != 2) {
        probe_fail(p, "unexpected reply to the gate's replica statement");
        return;
    }
    seq = pg_reply_value(r, 0, 0);
    lsn = pg_reply_value(r, 0, 1);
    snprintf(p->read_seq, sizeof(p->read_seq), "%s", seq != NULL ? seq : "");
    appendf(p->info, sizeof(p->info), ", heartbeat %s %s", c->heartbeat_table,
            seq != NULL ? "row present" : "readable (no row \"");
    if (seq == NULL)
        appendf(p->info, sizeof(p->info), "%s\" yet)", p->chk->key);
    if (c->max_lag_bytes > 0) {
        if (lsn != NULL)
            appendf(p->info, sizeof(p->info), ", position %s", lsn);
        else if (p->in_recovery)
            snprintf(p->note, sizeof(p->note), "no replay position yet");
    }
    if (p->in_recovery) {
        send_end(p);
        return;
    }
    if (c->max_lag_bytes > 0 && c->subscription[0] == '\0') {
        probe_fail(p, "not a standby, and max_lag_bytes on a logical subscriber needs "
                   "\"subscription\" (its latest_end_lsn is the position)");
        return;
    }
    send_sub(p);
}

static void
on_sub(struct probe *p, const struct pg_reply *r)
{
    const struct hl_gate_conf *c = p->chk->c;
    long n, enabled;

    if (pg_reply_rows(r) != 1 || pg_reply_cols(r) != 2) {
        probe_fail(p, "unexpected reply to the subscription query");
        return;
    }
    n = strtol(pg_reply_value(r, 0, 0) != NULL ? pg_reply_value(r, 0, 0) : "0", NULL, 10);
    enabled = strtol(pg_reply_value(r, 0, 1) != NULL ? pg_reply_value(r, 0, 1) : "0", NULL,
                     10);
    if (c->subscription[0] != '\0') {
        if (n == 0) {
            probe_fail(p, "not a standby, and no subscription \"%s\" in this database",
                       c->subscription);
            return;
        }
        appendf(p->info, sizeof(p->info), ", subscription %s", c->subscription);
        if (enabled == 0)
            snprintf(p->note, sizeof(p->note), "subscription %s is disabled: the gate fails "
                     "until it is enabled", c->subscription);
    } else {
        if (n == 0) {
            probe_fail(p, "not a standby, and no subscription in this database: nothing "
                       "replicates into it");
            return;
        }
        appendf(p->info, sizeof(p->info), ", %ld subscription(s), %ld enabled", n, enabled);
        if (enabled == 0)
            snprintf(p->note, sizeof(p->note), "no subscription is enabled: the gate fails "
                     "until one is");
    }
    send_end(p);
}

static void
on_table(struct probe *p, const struct pg_reply *r)
{
    const struct hl_gate_conf *c = p->chk->c;
    const char *pubs;

    if (pg_reply_rows(r) != 1 || pg_reply_cols(r) != 3) {
        probe_fail(p, "unexpected reply to the heartbeat table query");
        return;
    }
    if (!is_true(pg_reply_value(r, 0, 0))) {
        probe_fail(p, "cannot INSERT and UPDATE %s: the heartbeat cannot be written "
                   "(GRANT INSERT, UPDATE ON %s TO ...)", c->heartbeat_table,
                   c->heartbeat_table);
        return;
    }
    if (!is_true(pg_reply_value(r, 0, 1))) {
        probe_fail(p, "%s has no unique index on \"gate\" alone: the heartbeat's upsert "
                   "(ON CONFLICT (gate)) needs one (gate text PRIMARY KEY)",
                   c->heartbeat_table);
        return;
    }
    pubs = pg_reply_value(r, 0, 2);
    p->published = pubs != NULL;
    snprintf(p->pubs, sizeof(p->pubs), "%s", pubs != NULL ? pubs : "");
    appendf(p->info, sizeof(p->info), ", heartbeat %s writable%s%s", c->heartbeat_table,
            pubs != NULL ? ", published in " : "", pubs != NULL ? pubs : "");
    send_end(p);
}

static void
on_query(struct probe *p, const struct pg_reply *r)
{
    char why[160];

    if (pg_reply_rows(r) != 1 || pg_reply_cols(r) != 1) {
        probe_fail(p, "the query returned %d row(s) and %d column(s), not one number",
                   pg_reply_rows(r), pg_reply_cols(r));
        return;
    }
    if (hl_gate_number(pg_reply_value(r, 0, 0), &p->num, why, sizeof(why)) != 0) {
        probe_fail(p, "the query's value: %s", why);
        return;
    }
    p->have_num = true;
    appendf(p->info, sizeof(p->info), ", the query returns %.15g", p->num);
    send_end(p);
}

static void
on_reply(struct pg_client *c, const struct pg_reply *r, void *arg)
{
    struct probe *p = arg;
    enum pg_outcome o = pg_reply_outcome(r);

    (void)c;
    if (p->done)
        return;
    if (o != PG_OK) {
        const char *what = p->step == ST_QUERY ? "the query"
                         : p->step == ST_READ ? "the gate's replica statement"
                         : p->step == ST_COLS ? "reading gate and seq of the heartbeat table"
                         : "a check";

        probe_fail(p, "%s failed: %s", what, pg_reply_error(r));
        return;
    }
    switch (p->step) {
    case ST_BEGIN:
        if (p->role == R_QUERY)
            q_send(p, ST_QUERY, p->chk->c->query, 0, NULL);
        else
            send_role(p);
        break;
    case ST_QUERY: on_query(p, r); break;
    case ST_ROLE: on_role(p, r); break;
    case ST_READ: on_read(p, r); break;
    case ST_SUB: on_sub(p, r); break;
    case ST_COLS: send_table(p); break;
    case ST_TABLE: on_table(p, r); break;
    case ST_END:
    default:
        probe_end(p);
        break;
    }
}

static void
on_state(struct pg_client *c, const struct pg_state_info *st, void *arg)
{
    struct probe *p = arg;

    (void)c;
    if (p->done)
        return;
    if (st->state == PG_STATE_UP) {
        if (p->up_once)
            return;
        p->up_once = true;
        snprintf(p->info, sizeof(p->info), "connected");
        q_send(p, ST_BEGIN, "BEGIN TRANSACTION READ ONLY", 0, NULL);
        return;
    }
    probe_fail(p, "%s: %s", p->up_once ? "session lost" : "cannot connect",
               st->reason != NULL ? st->reason : "no reason given");
}

/* ---- a gate ------------------------------------------------------------ */

static void
chk_probe_ended(struct chk *k)
{
    if (--k->pending == 0 && --k->run->pending == 0)
        event_base_loopbreak(k->run->base);
}

static void
probe_start(struct chk *k, int db, enum role role, const struct hl_gate_db *d, uint64_t seed)
{
    struct probe *p = &k->p[db];
    char name[200];
    struct pg_conf pc;

    p->chk = k;
    p->db = db;
    p->role = role;
    snprintf(name, sizeof(name), "check %s/%s%s%s", k->svc, k->c->name,
             db_names[k->c->kind][db][0] ? " " : "", db_names[k->c->kind][db]);
    pc = (struct pg_conf){
        .name = name,
        .host = d->host[0] ? d->host : NULL,
        .port = d->port[0] ? d->port : NULL,
        .dbname = d->dbname[0] ? d->dbname : NULL,
        .user = d->user[0] ? d->user : NULL,
        .password_file = d->password_file[0] ? d->password_file : NULL,
        .application_name = d->application_name[0] ? d->application_name
                                                   : "cutoverd gate check",
        .sslmode = d->sslmode[0] ? d->sslmode : NULL,
        .connect_timeout_ms = k->c->timeout_ms,
        .statement_timeout_ms = k->c->timeout_ms,
        .max_queue = 4,
        .seed = seed,
    };
    k->nprobes++;
    k->pending++;
    p->pg = pg_new(k->run->base, &pc, on_state, p);
    if (p->pg == NULL || pg_start(p->pg) != 0) {
        k->pending--;
        p->done = p->failed = true;
        snprintf(p->err, sizeof(p->err), "cannot create the client");
    }
}

/* The gate's own line, once its probes ended: "" when there is nothing to
 * say. Returns false when the gate cannot work (an error). */
static bool
chk_summary(const struct chk *k, char *line, size_t len)
{
    const struct hl_gate_conf *c = k->c;
    const struct probe *rep = &k->p[0], *src = &k->p[1];
    struct hl_gate_result res;

    line[0] = '\0';
    if (k->p[0].failed || (k->nprobes > 1 && k->p[1].failed))
        return true;                   /* its probe's error says it */
    switch (c->kind) {
    case HL_GATE_SQL:
    case HL_GATE_COMPARE:
        if (c->kind == HL_GATE_SQL)
            hl_gate_eval_sql(c, k->p[0].num, &res);
        else
            hl_gate_eval_compare(c, k->p[0].num, k->p[1].num, &res);
        snprintf(line, len, "would %s now: %s", res.verdict == HL_GV_PASS ? "pass" : "fail",
                 res.reason);
        return true;
    case HL_GATE_LAG:
        if (rep->in_recovery && strcmp(rep->sysid, src->sysid) == 0) {
            snprintf(line, len, "roles right: the replica is a physical standby of the "
                     "source (system identifier %s)", src->sysid);
            return true;
        }
        if (rep->in_recovery) {
            snprintf(line, len, "the replica is a standby of another cluster (system "
                     "identifier %s, the source's %s): it never shows the source's "
                     "heartbeat", rep->sysid, src->sysid);
            return false;
        }
        if (strcmp(rep->sysid, src->sysid) == 0) {
            snprintf(line, len, "the replica is not in recovery and is the source's cluster "
                     "(system identifier %s): the same server twice, or a promoted standby; "
                     "nothing replicates into it", src->sysid);
            return false;
        }
        if (!src->published) {
            snprintf(line, len, "the replica is a logical subscriber, and the source "
                     "publishes %s in no publication: it never sees a heartbeat (ALTER "
                     "PUBLICATION ... ADD TABLE %s)", c->heartbeat_table,
                     c->heartbeat_table);
            return false;
        }
        snprintf(line, len, "roles right: the replica is a logical subscriber of another "
                 "cluster, the source publishes %s in %s", c->heartbeat_table, src->pubs);
        return true;
    default:
        return true;
    }
}

/* One line of the report, in the order written whatever the streams. */
static void
say(FILE *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
say(FILE *f, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fflush(f);
}

static void
print_gate(const struct chk *k, const char *conf_file, FILE *out, FILE *err, bool *ok)
{
    const struct hl_gate_conf *c = k->c;
    const char *kind = hl_gate_kind_names[c->kind];
    char line[LINE_MAX_ * 2];
    unsigned i;

    if (c->kind == HL_GATE_HTTP) {
        say(out, "%s: %s/%s (%s): not contacted (--check-gates connects to databases)\n",
                conf_file, k->svc, c->name, kind);
        return;
    }
    for (i = 0; i < k->nprobes; i++) {
        const struct probe *p = &k->p[i];
        const char *who = db_names[c->kind][i];

        if (p->failed) {
            say(err, "%s: services[%u].gates[%u]: %s/%s (%s) %s: %s\n", conf_file, k->si,
                    k->gi, k->svc, c->name, kind, who, p->err);
            *ok = false;
            continue;
        }
        if (!p->done) {
            say(err, "%s: services[%u].gates[%u]: %s/%s (%s) %s: no answer in time "
                    "(%s)\n", conf_file, k->si, k->gi, k->svc, c->name, kind, who,
                    p->info[0] ? p->info : "not connected");
            *ok = false;
            continue;
        }
        say(out, "%s: %s/%s (%s) %s: %s\n", conf_file, k->svc, c->name, kind, who,
                p->info);
        if (p->note[0] != '\0')
            say(out, "%s: %s/%s (%s) %s: note: %s\n", conf_file, k->svc, c->name, kind,
                    who, p->note);
    }
    if (!k->p[0].done || (k->nprobes > 1 && !k->p[1].done))
        return;
    if (!chk_summary(k, line, sizeof(line))) {
        say(err, "%s: services[%u].gates[%u]: %s/%s (%s): %s\n", conf_file, k->si, k->gi,
                k->svc, c->name, kind, line);
        *ok = false;
    } else if (line[0] != '\0') {
        say(out, "%s: %s/%s (%s): %s\n", conf_file, k->svc, c->name, kind, line);
    }
}

static void
on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    event_base_loopbreak(arg);
}

int
px_gates_check_report(const struct px_conf *conf, const char *conf_file, uint64_t seed,
                      FILE *out, FILE *err)
{
    struct run run = { 0 };
    struct chk *ks;
    struct event *deadline = NULL;
    unsigned i, g, n = 0, ndb = 0, longest = 0;
    bool ok = true;

    for (i = 0; i < conf->nservices; i++)
        n += conf->services[i].gates.n;
    ks = xcalloc(n > 0 ? n : 1, sizeof(*ks));
    run.base = event_base_new();
    if (run.base == NULL) {
        fprintf(err, "%s: --check-gates: cannot create an event loop\n", conf_file);
        free(ks);
        return -1;
    }
    n = 0;
    for (i = 0; i < conf->nservices; i++) {
        const struct hl_gates_conf *gc = &conf->services[i].gates;

        for (g = 0; g < gc->n; g++) {
            struct chk *k = &ks[n++];
            const struct hl_gate_conf *c = &gc->g[g];

            k->run = &run;
            k->c = c;
            k->si = i;
            k->gi = g;
            k->svc = conf->services[i].name;
            snprintf(k->key, sizeof(k->key), "%s/%s", k->svc, c->name);
            if (c->kind == HL_GATE_HTTP)
                continue;
            ndb++;
            if (c->timeout_ms > longest)
                longest = c->timeout_ms;
            run.pending++;
            switch (c->kind) {
            case HL_GATE_SQL:
                probe_start(k, 0, R_QUERY, &c->db, seed + n * 2);
                break;
            case HL_GATE_COMPARE:
                probe_start(k, 0, R_QUERY, &c->db, seed + n * 2);
                probe_start(k, 1, R_QUERY, &c->db2, seed + n * 2 + 1);
                break;
            case HL_GATE_LAG:
                probe_start(k, 0, R_REPLICA, &c->db, seed + n * 2);
                probe_start(k, 1, R_SOURCE, &c->db2, seed + n * 2 + 1);
                break;
            default:
                break;
            }
            if (k->pending == 0)
                run.pending--;             /* no client could be created */
        }
    }
    if (ndb == 0) {
        fprintf(err, "%s: --check-gates: no gate with a database in the configuration\n",
                conf_file);
        ok = false;
    } else if (run.pending > 0) {
        struct timeval tv = tv_ms(longest * 8 + 1000);

        deadline = evtimer_new(run.base, on_deadline, run.base);
        if (deadline != NULL)
            event_add(deadline, &tv);
        event_base_dispatch(run.base);
    }
    for (i = 0; i < n; i++)
        print_gate(&ks[i], conf_file, out, err, &ok);
    for (i = 0; i < n; i++) {
        pg_free(ks[i].p[0].pg);
        pg_free(ks[i].p[1].pg);
    }
    if (deadline != NULL)
        event_free(deadline);
    event_base_free(run.base);
    free(ks);
    return ok ? 0 : -1;
}
