/*
 * proxy/gates: the migration gates on the main loop (see gates.h; the pure
 * rules are health/gate.c, the operator's guide docs/gates.md).
 *
 * One check of a gate, started by its interval timer (the first at once):
 *
 *   sql      BEGIN READ ONLY; the query; ROLLBACK          on its database
 *   compare  the same on legacy and on new, side by side; both numbers
 *   replication_lag
 *            on the source: the heartbeat row upserted (our own statement,
 *            the one write a gate makes), then pg_current_wal_lsn() when
 *            bytes are checked; then on the replica, read-only: the row's
 *            sequence number and the replica's position (standby:
 *            pg_last_wal_replay_lsn(); subscriber: pg_stat_subscription's
 *            latest_end_lsn of "subscription")
 *   http     GET url, HTTP/1.1, Connection: close; the status line only
 *
 * Every check ends within timeout_ms: a deadline timer fails it ("timeout
 * after N ms"), and each PostgreSQL statement carries the same timeout (the
 * client closes a session whose statement outlives it; lib/pg.h). A
 * database that cannot be reached fails the check with the client's reason
 * at once; one still connecting is waited for, up to the deadline. Answers
 * of a check that already ended are dropped (a check number). Nothing
 * blocks: lib/pg.h never does, and the HTTP probe is a bufferevent.
 *
 * A verdict that changes is logged and audited (action "gate", actor
 * "auto"); one that becomes fail acts by on_fail through
 * adm_control_auto(): rollback or freeze, when new has something to lose
 * (weight > 0 or a plan progressing, not latched already). Only a change
 * to fail acts: an operator's forced raise past a failing gate is not
 * undone by the next check of the same failure.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <jansson.h>

#include "admin/control.h"
#include "health/gate.h"
#include "health/policy.h"
#include "health/probe.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/pg.h"
#include "lib/timeval.h"
#include "lib/xmalloc.h"
#include "proxy/conf.h"
#include "proxy/daemon.h"
#include "proxy/gates.h"
#include "proxy/server.h"

#define HTTP_STATUS_MAX 1024         /* bytes of status line read at most */

struct gate;
typedef void step_fn(struct gate *g);

struct gate {
    struct px_gates *owner;
    unsigned svc;                    /* index in the current config */
    char svc_name[64];
    char key[160];                   /* "service/gate": the heartbeat row */
    struct hl_gate_conf conf;        /* a copy: outlives a reload's config */
    struct hl_gate_state st;
    struct hl_heartbeat hb;
    struct pg_client *pg[2];         /* conf.db, conf.db2 (NULL when unused) */
    char pg_down[2][256];            /* the last failed attempt's reason; "" up */
    step_fn *wait[2];                /* run when pg[i] comes up during a check */
    struct event *timer;             /* every interval_ms */
    struct event *deadline;          /* the running check's timeout_ms */
    uint64_t seq;                    /* the check number */
    bool running;
    bool closing;                    /* being freed: callbacks do nothing */
    /* the running check */
    bool have[2];
    double num[2];
    int64_t hb_seq;
    uint64_t src_lsn;
    bool have_lsn;
    struct bufferevent *http;
};

struct svc_gates {
    unsigned n;
    struct gate **g;                 /* owned */
};

struct px_gates {
    struct px_daemon *d;
    unsigned nsvcs;
    struct svc_gates *svcs;          /* owned, nsvcs entries */
};

/* One statement in flight: which gate, which check, which step. */
enum phase { PH_BEGIN, PH_QUERY, PH_END, PH_HB_WRITE, PH_SRC_LSN };

struct qctx {
    struct gate *g;
    uint64_t seq;
    int db;
    enum phase ph;
};

static int64_t
wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t
wall_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static uint64_t
now_ms(struct gate *g)
{
    return px_now_ms(&g->owner->d->srv);
}

static const char *const db_names[HL_GATE_KIND__COUNT][2] = {
    [HL_GATE_SQL] = { "database", "" },
    [HL_GATE_COMPARE] = { "legacy", "new" },
    [HL_GATE_LAG] = { "replica", "source" },
    [HL_GATE_HTTP] = { "", "" },
};

/* ---- the end of a check ----------------------------------------------------- */

static void
act_on_fail(struct gate *g)
{
    struct adm_control *ctl = g->owner->d->ctl;
    const struct hl_gate_conf *c = &g->conf;
    enum hl_auto_action a;
    char why[512];
    json_t *fig;

    if (c->on_fail == HL_GATE_HOLD) {
        log_at(LL_WARN, "gates", 0, "service %s: gate %s fails: %s; the plan holds and "
               "raising the weight is refused (on_fail hold)", g->svc_name, c->name,
               g->st.reason);
        return;
    }
    a = c->on_fail == HL_GATE_ROLLBACK ? HL_AUTO_ROLLBACK : HL_AUTO_FREEZE;
    snprintf(why, sizeof(why), "gate %s (%s) failed: %s", c->name,
             hl_gate_kind_names[c->kind], g->st.reason);
    fig = json_pack("{s:s, s:s, s:s, s:s, s:o}", "kind", "gate", "gate", c->name,
                    "gate_kind", hl_gate_kind_names[c->kind], "on_fail",
                    hl_gate_on_fail_names[c->on_fail],
                    "value", g->st.has_value ? json_real(g->st.value) : json_null());
    if (adm_control_auto(ctl, g->svc, a, why, fig) != 0) {
        log_at(LL_WARN, "gates", 0, "service %s: gate %s fails: %s; new has no traffic to "
               "take back (or the service is latched already): nothing to %s", g->svc_name,
               c->name, g->st.reason, hl_gate_on_fail_names[c->on_fail]);
    } else if (a == HL_AUTO_ROLLBACK) {
        /* after its save, as the tick's line (proxy/tick.c) */
        adm_control_log_written(ctl, LL_WARN, "gates", "service %s: AUTOMATIC ROLLBACK "
                                "(gate %s): %s; weight 0, state rolled_back until an "
                                "operator sets a weight", g->svc_name, c->name,
                                g->st.reason);
    } else {
        adm_control_log_written(ctl, LL_ERR, "gates", "service %s: FROZEN by gate %s: %s; "
                                "the weight is held, the plan stopped, raising refused: "
                                "waiting for an operator", g->svc_name, c->name,
                                g->st.reason);
    }
    json_decref(fig);
}

static void
finish(struct gate *g, const struct hl_gate_result *r)
{
    enum hl_gate_verdict was = g->st.verdict;
    struct adm_caller who = { .actor = "auto", .pid = -1, .level = ADM_LEVEL_ADMIN };
    char reason[HL_GATE_REASON_MAX + 128], v[48];

    g->running = false;
    event_del(g->deadline);
    g->wait[0] = g->wait[1] = NULL;
    if (g->http != NULL) {
        bufferevent_free(g->http);
        g->http = NULL;
    }
    if (!hl_gate_record(&g->st, r, now_ms(g), wall_ms()))
        return;
    if (g->st.has_value)
        snprintf(v, sizeof(v), "%.15g", g->st.value);
    else
        snprintf(v, sizeof(v), "none");
    log_kv(r->verdict == HL_GV_FAIL ? LL_WARN : LL_INFO, "gates", "gate", "service",
           g->svc_name, "gate", g->conf.name, "from", hl_gate_verdict_names[was], "to",
           hl_gate_verdict_names[r->verdict], "value", v, "msg", r->reason);
    snprintf(reason, sizeof(reason), "gate %s (%s): %s -> %s: %s", g->conf.name,
             hl_gate_kind_names[g->conf.kind], hl_gate_verdict_names[was],
             hl_gate_verdict_names[r->verdict], r->reason);
    adm_control_audit_event(g->owner->d->ctl, g->svc_name, &who, "gate", reason);
    if (r->verdict == HL_GV_FAIL)
        act_on_fail(g);
}

static void
fail(struct gate *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
fail(struct gate *g, const char *fmt, ...)
{
    struct hl_gate_result r;
    va_list ap;

    r.verdict = HL_GV_FAIL;
    r.has_value = false;
    r.value = 0;
    va_start(ap, fmt);
    vsnprintf(r.reason, sizeof(r.reason), fmt, ap);
    va_end(ap);
    finish(g, &r);
}

static void
on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct gate *g = arg;

    (void)fd;
    (void)what;
    if (g->running)
        fail(g, "timeout after %u ms", g->conf.timeout_ms);
}

/* ---- PostgreSQL ------------------------------------------------------------- */

static void on_pg(struct pg_client *c, const struct pg_reply *r, void *arg);

/* Sends <sql> on database <db> for the running check as step <ph>. 0, or
 * -1 (the client is being freed: nothing will call back). */
static int
q_send(struct gate *g, int db, enum phase ph, const char *sql, int n, const char *const *params)
{
    struct qctx *q = xmalloc(sizeof(*q));

    *q = (struct qctx){ .g = g, .seq = g->seq, .db = db, .ph = ph };
    if (pg_query(g->pg[db], sql, n, params, on_pg, q) != 0) {
        free(q);
        return -1;
    }
    return 0;
}

int
px_gates_replica_sql(const struct hl_gate_conf *c, char *buf, size_t len)
{
    if (c->max_lag_bytes > 0) {
        snprintf(buf, len, "SELECT (SELECT seq FROM %s WHERE gate = $1)::text, "
                 "CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()::text ELSE "
                 "(SELECT latest_end_lsn::text FROM pg_stat_subscription WHERE subname = $2 "
                 "AND relid IS NULL) END", c->heartbeat_table);
        return 2;
    }
    snprintf(buf, len, "SELECT (SELECT seq FROM %s WHERE gate = $1)::text, NULL::text",
             c->heartbeat_table);
    return 1;
}

/* The read-only statement of database <db> in this check, and its
 * parameters: the gate's query, or the lag gate's replica read. */
static const char *
ro_sql(struct gate *g, int db, int *n, const char **params)
{
    static char sql[512];

    (void)db;
    if (g->conf.kind != HL_GATE_LAG) {
        *n = 0;
        return g->conf.query;
    }
    params[0] = g->key;
    params[1] = g->conf.subscription;
    *n = px_gates_replica_sql(&g->conf, sql, sizeof(sql));
    return sql;
}

/* The number in the only column of the only row of <r>, or a failure. */
static int
one_number(struct gate *g, int db, const struct pg_reply *r, double *out)
{
    char why[160];
    const char *who = db_names[g->conf.kind][db];

    if (pg_reply_rows(r) != 1 || pg_reply_cols(r) != 1) {
        fail(g, "%s%squery returned %d row(s) and %d column(s), not one number", who,
             who[0] ? ": " : "", pg_reply_rows(r), pg_reply_cols(r));
        return -1;
    }
    if (hl_gate_number(pg_reply_value(r, 0, 0), out, why, sizeof(why)) != 0) {
        fail(g, "%s%s%s", who, who[0] ? ": " : "", why);
        return -1;
    }
    return 0;
}

static void
lag_result(struct gate *g, const struct pg_reply *r)
{
    const char *seen_text, *lsn_text;
    struct hl_gate_result res;
    int64_t lag_ms = -1, lag_bytes = -1, seen;
    uint64_t lsn;
    bool lower = false;
    char *end;

    if (pg_reply_rows(r) != 1 || pg_reply_cols(r) != 2) {
        fail(g, "replica: unexpected reply (%d rows)", pg_reply_rows(r));
        return;
    }
    seen_text = pg_reply_value(r, 0, 0);
    lsn_text = pg_reply_value(r, 0, 1);
    if (g->conf.max_lag_ms > 0) {
        if (seen_text == NULL) {
            fail(g, "replica: no heartbeat row \"%s\" in %s (is the table replicated?)",
                 g->key, g->conf.heartbeat_table);
            return;
        }
        seen = strtoll(seen_text, &end, 10);
        if (*end != '\0') {
            fail(g, "replica: heartbeat seq \"%.32s\" is not a number", seen_text);
            return;
        }
        lag_ms = hl_hb_lag_ms(&g->hb, seen, now_ms(g), &lower);
    }
    if (g->conf.max_lag_bytes > 0) {
        if (lsn_text == NULL) {
            fail(g, "replica: no replay position (not a standby, and no running "
                 "subscription \"%s\")", g->conf.subscription);
            return;
        }
        if (hl_lsn_parse(lsn_text, &lsn) != 0 || !g->have_lsn) {
            fail(g, "replica: position \"%.32s\" unreadable", lsn_text);
            return;
        }
        lag_bytes = g->src_lsn > lsn ? (int64_t)(g->src_lsn - lsn) : 0;
    }
    hl_gate_eval_lag(&g->conf, lag_ms, lower, lag_bytes, &res);
    finish(g, &res);
}

/* A read-only statement's answer on database <db>. */
static void
ro_result(struct gate *g, int db, const struct pg_reply *r)
{
    struct hl_gate_result res;
    double v;

    switch (g->conf.kind) {
    case HL_GATE_SQL:
        if (one_number(g, db, r, &v) == 0) {
            hl_gate_eval_sql(&g->conf, v, &res);
            finish(g, &res);
        }
        break;
    case HL_GATE_COMPARE:
        if (one_number(g, db, r, &g->num[db]) != 0)
            break;
        g->have[db] = true;
        if (g->have[0] && g->have[1]) {
            hl_gate_eval_compare(&g->conf, g->num[0], g->num[1], &res);
            finish(g, &res);
        }
        break;
    case HL_GATE_LAG:
        lag_result(g, r);
        break;
    default:
        break;
    }
}

static void step_replica(struct gate *g);

static void
on_pg(struct pg_client *c, const struct pg_reply *r, void *arg)
{
    struct qctx q = *(struct qctx *)arg;
    struct gate *g = q.g;
    enum pg_outcome o = pg_reply_outcome(r);
    bool live = !g->closing && g->running && g->seq == q.seq;
    const char *who = db_names[g->conf.kind][q.db];
    const char *params[2];
    int n;

    (void)c;
    free(arg);
    if (g->closing)
        return;
    switch (q.ph) {
    case PH_BEGIN:
        if (o != PG_OK) {
            if (live)
                fail(g, "%s: %s", who, pg_reply_error(r));
            return;
        }
        if (!live) {
            q_send(g, q.db, PH_END, "ROLLBACK", 0, NULL);
            return;
        }
        {
            const char *sql = ro_sql(g, q.db, &n, params);

            q_send(g, q.db, PH_QUERY, sql, n, params);
        }
        return;
    case PH_QUERY:
        if (o == PG_OK || o == PG_ERROR)
            q_send(g, q.db, PH_END, "ROLLBACK", 0, NULL);
        if (!live)
            return;
        if (o != PG_OK) {
            fail(g, "%s: %s%s", who, o == PG_ERROR ? "query failed: " : "",
                 pg_reply_error(r));
            return;
        }
        ro_result(g, q.db, r);
        return;
    case PH_HB_WRITE:
        if (!live)
            return;
        if (o != PG_OK) {
            fail(g, "source: heartbeat write failed: %s", pg_reply_error(r));
            return;
        }
        hl_hb_wrote(&g->hb, g->hb_seq, now_ms(g));
        if (g->conf.max_lag_bytes > 0)
            q_send(g, 1, PH_SRC_LSN, "SELECT pg_current_wal_lsn()::text", 0, NULL);
        else
            step_replica(g);
        return;
    case PH_SRC_LSN:
        if (!live)
            return;
        if (o != PG_OK || pg_reply_rows(r) != 1
            || hl_lsn_parse(pg_reply_value(r, 0, 0), &g->src_lsn) != 0) {
            fail(g, "source: cannot read its WAL position: %s",
                 o != PG_OK ? pg_reply_error(r) : "unexpected reply");
            return;
        }
        g->have_lsn = true;
        step_replica(g);
        return;
    case PH_END:
    default:
        return;
    }
}

/* Runs <fn> once database <db> can take statements: now when its session
 * is up; at its next up while it is connecting; a failure now when its
 * last attempt failed (the client's reason). */
static void
when_up(struct gate *g, int db, step_fn *fn)
{
    if (pg_state(g->pg[db]) == PG_STATE_UP) {
        fn(g);
        return;
    }
    if (g->pg_down[db][0] != '\0') {
        fail(g, "%s: cannot connect: %s", db_names[g->conf.kind][db], g->pg_down[db]);
        return;
    }
    g->wait[db] = fn;
}

static void
begin_ro(struct gate *g, int db)
{
    q_send(g, db, PH_BEGIN, "BEGIN TRANSACTION READ ONLY", 0, NULL);
}

static void step_db0(struct gate *g) { begin_ro(g, 0); }
static void step_db1(struct gate *g) { begin_ro(g, 1); }

static void
step_replica(struct gate *g)
{
    when_up(g, 0, step_db0);
}

static void
step_heartbeat(struct gate *g)
{
    static char sql[384];
    char seq[32];
    const char *params[2] = { g->key, seq };

    g->hb_seq = hl_hb_next_seq(&g->hb, wall_us());
    snprintf(seq, sizeof(seq), "%" PRId64, g->hb_seq);
    snprintf(sql, sizeof(sql), "INSERT INTO %s (gate, seq) VALUES ($1, $2::bigint) "
             "ON CONFLICT (gate) DO UPDATE SET seq = EXCLUDED.seq", g->conf.heartbeat_table);
    q_send(g, 1, PH_HB_WRITE, sql, 2, params);
}

static void
on_pg_state(struct pg_client *c, const struct pg_state_info *st, void *arg)
{
    struct gate *g = arg;
    int db = c == g->pg[0] ? 0 : 1;
    step_fn *fn = g->wait[db];

    if (g->closing)
        return;
    if (st->state == PG_STATE_UP) {
        g->pg_down[db][0] = '\0';
        g->wait[db] = NULL;
        if (g->running && fn != NULL)
            fn(g);
        return;
    }
    snprintf(g->pg_down[db], sizeof(g->pg_down[db]), "%s",
             st->reason != NULL ? st->reason : "session lost");
    if (g->running && fn != NULL)
        fail(g, "%s: cannot connect: %s", db_names[g->conf.kind][db], g->pg_down[db]);
}

/* ---- HTTP --------------------------------------------------------------------- */

static void
on_http_read(struct bufferevent *bev, void *arg)
{
    struct gate *g = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    struct hl_gate_result res;
    size_t n;
    char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF);
    int status;

    if (line == NULL) {
        if (evbuffer_get_length(in) > HTTP_STATUS_MAX)
            fail(g, "status line longer than %d bytes", HTTP_STATUS_MAX);
        return;
    }
    if (n < 12 || strncmp(line, "HTTP/1.", 7) != 0 || line[8] != ' '
        || sscanf(line + 9, "%3d", &status) != 1 || status < 100 || status > 599) {
        fail(g, "not an HTTP response: \"%.40s\"", line);
        free(line);
        return;
    }
    free(line);
    hl_gate_eval_http(&g->conf, status, &res);
    finish(g, &res);
}

static void
on_http_event(struct bufferevent *bev, short what, void *arg)
{
    struct gate *g = arg;
    int err = EVUTIL_SOCKET_ERROR();

    (void)bev;
    if (what & BEV_EVENT_CONNECTED)
        return;
    if (what & BEV_EVENT_EOF)
        fail(g, "connection closed before a status line");
    else
        fail(g, "%s: %s", g->conf.url, evutil_socket_error_to_string(err));
}

static void
start_http(struct gate *g)
{
    struct sockaddr_storage ss;
    socklen_t len;
    struct event_base *base = g->owner->d->srv.base;
    bool v6 = strchr(g->conf.http_host, ':') != NULL;

    memset(&ss, 0, sizeof(ss));
    if (v6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;

        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)g->conf.http_port);
        inet_pton(AF_INET6, g->conf.http_host, &a->sin6_addr);
        len = sizeof(*a);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;

        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)g->conf.http_port);
        inet_pton(AF_INET, g->conf.http_host, &a->sin_addr);
        len = sizeof(*a);
    }
    g->http = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (g->http == NULL) {
        fail(g, "cannot create a connection");
        return;
    }
    bufferevent_setcb(g->http, on_http_read, NULL, on_http_event, g);
    bufferevent_enable(g->http, EV_READ);
    evbuffer_add_printf(bufferevent_get_output(g->http),
                        "GET %s HTTP/1.1\r\nHost: %s%s%s:%u\r\nUser-Agent: cutoverd-gate\r\n"
                        "Connection: close\r\n\r\n", g->conf.http_path, v6 ? "[" : "",
                        g->conf.http_host, v6 ? "]" : "", g->conf.http_port);
    if (bufferevent_socket_connect(g->http, (struct sockaddr *)&ss, (int)len) < 0) {
        int err = EVUTIL_SOCKET_ERROR();

        fail(g, "connect %s: %s", g->conf.url, evutil_socket_error_to_string(err));
    }
}

/* ---- a check ------------------------------------------------------------------ */

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct gate *g = arg;
    struct timeval tv = tv_ms(g->conf.timeout_ms);

    (void)fd;
    (void)what;
    if (g->running)
        return;                        /* cannot happen: timeout_ms <= interval_ms */
    g->seq++;
    g->running = true;
    g->have[0] = g->have[1] = false;
    g->have_lsn = false;
    event_add(g->deadline, &tv);
    switch (g->conf.kind) {
    case HL_GATE_SQL:
        when_up(g, 0, step_db0);
        break;
    case HL_GATE_COMPARE:
        when_up(g, 0, step_db0);
        if (g->running)
            when_up(g, 1, step_db1);
        break;
    case HL_GATE_LAG:
        when_up(g, 1, step_heartbeat);
        break;
    case HL_GATE_HTTP:
        start_http(g);
        break;
    default:
        break;
    }
}

/* ---- life cycle ------------------------------------------------------------- */

static struct pg_client *
client_new(struct gate *g, const struct hl_gate_db *db, int i)
{
    struct px_srv *srv = &g->owner->d->srv;
    char name[200];
    struct pg_conf pc;
    struct pg_client *c;

    snprintf(name, sizeof(name), "gate %s/%s%s%s", g->svc_name, g->conf.name,
             db_names[g->conf.kind][i][0] ? " " : "", db_names[g->conf.kind][i]);
    pc = (struct pg_conf){
        .name = name,
        .host = db->host[0] ? db->host : NULL,
        .port = db->port[0] ? db->port : NULL,
        .dbname = db->dbname[0] ? db->dbname : NULL,
        .user = db->user[0] ? db->user : NULL,
        .password_file = db->password_file[0] ? db->password_file : NULL,
        .application_name = db->application_name[0] ? db->application_name
                                                    : "cutoverd gate",
        .sslmode = db->sslmode[0] ? db->sslmode : NULL,
        .connect_timeout_ms = g->conf.timeout_ms,
        .statement_timeout_ms = g->conf.timeout_ms,
        .max_queue = 8,
        .seed = hl_rand(&srv->rng),
    };
    c = pg_new(srv->base, &pc, on_pg_state, g);
    if (c != NULL)
        pg_start(c);
    return c;
}

static struct gate *
gate_new(struct px_gates *gs, unsigned svc, const struct hl_gate_conf *conf)
{
    struct px_srv *srv = &gs->d->srv;
    struct gate *g = xcalloc(1, sizeof(*g));
    struct timeval tv = tv_ms(conf->interval_ms);

    g->owner = gs;
    g->svc = svc;
    snprintf(g->svc_name, sizeof(g->svc_name), "%s", srv->conf->services[svc].name);
    snprintf(g->key, sizeof(g->key), "%s/%s", g->svc_name, conf->name);
    g->conf = *conf;
    hl_gate_state_init(&g->st, px_now_ms(srv), wall_ms());
    if (conf->kind != HL_GATE_HTTP)
        g->pg[0] = client_new(g, &conf->db, 0);
    if (conf->kind == HL_GATE_COMPARE || conf->kind == HL_GATE_LAG)
        g->pg[1] = client_new(g, &conf->db2, 1);
    g->timer = event_new(srv->base, -1, EV_PERSIST, on_timer, g);
    g->deadline = evtimer_new(srv->base, on_deadline, g);
    if (g->timer == NULL || g->deadline == NULL || event_add(g->timer, &tv) < 0
        || (conf->kind != HL_GATE_HTTP && (g->pg[0] == NULL
                                           || (conf->kind != HL_GATE_SQL && g->pg[1] == NULL))))
        log_at(LL_ERR, "gates", 0, "service %s: gate %s cannot start (out of memory?): it "
               "stays unknown", g->svc_name, conf->name);
    else
        event_active(g->timer, EV_TIMEOUT, 0);   /* the first check now */
    return g;
}

static void
gate_free(struct gate *g)
{
    if (g == NULL)
        return;
    g->closing = true;
    if (g->timer != NULL)
        event_free(g->timer);
    if (g->deadline != NULL)
        event_free(g->deadline);
    if (g->http != NULL)
        bufferevent_free(g->http);
    pg_free(g->pg[0]);
    pg_free(g->pg[1]);
    free(g);
}

static void
svc_build(struct px_gates *gs, unsigned svc, struct svc_gates *out)
{
    const struct hl_gates_conf *gc = &gs->d->srv.conf->services[svc].gates;
    unsigned k;

    out->n = gc->n;
    out->g = xcalloc(gc->n > 0 ? gc->n : 1, sizeof(*out->g));
    for (k = 0; k < gc->n; k++)
        out->g[k] = gate_new(gs, svc, &gc->g[k]);
}

struct px_gates *
px_gates_new(struct px_daemon *d)
{
    struct px_gates *gs = xcalloc(1, sizeof(*gs));
    unsigned i;

    gs->d = d;
    gs->nsvcs = d->srv.nsvcs;
    gs->svcs = xcalloc(gs->nsvcs > 0 ? gs->nsvcs : 1, sizeof(*gs->svcs));
    for (i = 0; i < gs->nsvcs; i++)
        svc_build(gs, i, &gs->svcs[i]);
    return gs;
}

void
px_gates_reconfigure(struct px_gates *gs, const int *old_of_new, unsigned n)
{
    struct svc_gates *now = xcalloc(n > 0 ? n : 1, sizeof(*now));
    unsigned i, k, m;

    for (i = 0; i < n; i++) {
        const struct hl_gates_conf *gc = &gs->d->srv.conf->services[i].gates;
        struct svc_gates *was = old_of_new[i] >= 0 ? &gs->svcs[old_of_new[i]] : NULL;

        now[i].n = gc->n;
        now[i].g = xcalloc(gc->n > 0 ? gc->n : 1, sizeof(*now[i].g));
        for (k = 0; k < gc->n; k++) {
            for (m = 0; was != NULL && m < was->n; m++) {
                if (was->g[m] != NULL && hl_gate_conf_equal(&was->g[m]->conf, &gc->g[k])) {
                    now[i].g[k] = was->g[m];   /* sessions, verdict, heartbeats */
                    now[i].g[k]->svc = i;
                    was->g[m] = NULL;
                    break;
                }
            }
            if (now[i].g[k] == NULL)
                now[i].g[k] = gate_new(gs, i, &gc->g[k]);
        }
    }
    for (i = 0; i < gs->nsvcs; i++) {
        for (k = 0; k < gs->svcs[i].n; k++)
            gate_free(gs->svcs[i].g[k]);
        free(gs->svcs[i].g);
    }
    free(gs->svcs);
    gs->svcs = now;
    gs->nsvcs = n;
}

void
px_gates_free(struct px_gates *gs)
{
    unsigned i, k;

    if (gs == NULL)
        return;
    for (i = 0; i < gs->nsvcs; i++) {
        for (k = 0; k < gs->svcs[i].n; k++)
            gate_free(gs->svcs[i].g[k]);
        free(gs->svcs[i].g);
    }
    free(gs->svcs);
    free(gs);
}

/* ---- reports ---------------------------------------------------------------- */

int
px_gates_verdict(const struct px_gates *gs, unsigned svc, char *why, size_t len)
{
    const struct svc_gates *sg;
    struct hl_gate_state st[HL_GATE_MAX];
    const struct gate *g;
    unsigned k;
    int i;

    if (gs == NULL || svc >= gs->nsvcs || gs->svcs[svc].n == 0)
        return 0;
    sg = &gs->svcs[svc];
    for (k = 0; k < sg->n && k < HL_GATE_MAX; k++)
        st[k] = sg->g[k]->st;
    i = hl_gates_blocking(st, k, true);
    if (i < 0)
        return 0;
    g = sg->g[i];
    if (g->st.has_value)
        snprintf(why, len, "gate %s (%s) %s, value %.15g: %s", g->conf.name,
                 hl_gate_kind_names[g->conf.kind], hl_gate_verdict_names[g->st.verdict],
                 g->st.value, g->st.reason);
    else
        snprintf(why, len, "gate %s (%s) %s: %s", g->conf.name,
                 hl_gate_kind_names[g->conf.kind], hl_gate_verdict_names[g->st.verdict],
                 g->st.reason);
    return g->st.verdict == HL_GV_FAIL ? 1 : 2;
}

static json_t *
rfc3339(int64_t ms)
{
    char buf[40];
    time_t t = (time_t)(ms / 1000);
    struct tm tm;

    if (ms <= 0)
        return json_null();
    gmtime_r(&t, &tm);
    strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), ".%03dZ", (int)(ms % 1000));
    return json_string(buf);
}

void
px_gates_status(const struct px_gates *gs, unsigned svc, json_t *obj)
{
    json_t *arr = json_array();
    unsigned k;

    for (k = 0; gs != NULL && svc < gs->nsvcs && k < gs->svcs[svc].n; k++) {
        const struct gate *g = gs->svcs[svc].g[k];

        json_array_append_new(arr, json_pack(
            "{s:s, s:s, s:s, s:s, s:o, s:s, s:o, s:o, s:I, s:I, s:i, s:i}",
            "name", g->conf.name, "kind", hl_gate_kind_names[g->conf.kind],
            "on_fail", hl_gate_on_fail_names[g->conf.on_fail],
            "verdict", hl_gate_verdict_names[g->st.verdict],
            "value", g->st.has_value ? json_real(g->st.value) : json_null(),
            "reason", g->st.reason,
            "since", rfc3339(g->st.since_wall_ms),
            "last_check", rfc3339(g->st.last_wall_ms),
            "checks", (json_int_t)g->st.checks, "failures", (json_int_t)g->st.failures,
            "interval_ms", (int)g->conf.interval_ms, "timeout_ms", (int)g->conf.timeout_ms));
    }
    json_object_set_new(obj, "gates", arr);
}

void
px_gates_metrics(const struct px_gates *gs, struct met_writer *w)
{
    struct met_label l[2] = { { "service", "" }, { "gate", "" } };
    unsigned i, k;

    met_family(w, "cutover_gate_ok", MET_GAUGE,
               "Migration gate verdict: 1 passes, 0 fails, -1 not checked yet.");
    for (i = 0; gs != NULL && i < gs->nsvcs; i++) {
        for (k = 0; k < gs->svcs[i].n; k++) {
            const struct gate *g = gs->svcs[i].g[k];

            l[0].value = g->svc_name;
            l[1].value = g->conf.name;
            met_sample_double(w, l, 2, g->st.verdict == HL_GV_PASS ? 1.0
                                       : g->st.verdict == HL_GV_FAIL ? 0.0 : -1.0);
        }
    }
    met_family(w, "cutover_gate_value", MET_GAUGE,
               "Last value a migration gate read (sql: the number; compare: new minus "
               "legacy; replication_lag: ms, or bytes when only bytes are checked; http: "
               "the status); NaN when none.");
    for (i = 0; gs != NULL && i < gs->nsvcs; i++) {
        for (k = 0; k < gs->svcs[i].n; k++) {
            const struct gate *g = gs->svcs[i].g[k];

            l[0].value = g->svc_name;
            l[1].value = g->conf.name;
            met_sample_double(w, l, 2, g->st.has_value ? g->st.value : NAN);
        }
    }
}
