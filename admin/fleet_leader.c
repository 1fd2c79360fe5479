/*
 * fleet_leader: the fleet's windows and its leader (see fleet_leader.h).
 * One timer every half period: the even turns publish (and, while another
 * leads, try the lock in the same statement), the odd ones read the
 * fleet's windows (the leader) or try the lock (the others). At most one
 * of these statements is in flight; a turn that finds one still running
 * is skipped, so a slow database never gets a queue from here (the
 * leader's skipped turn runs when the answer comes: it is its heartbeat).
 * A follower whose try fails and finds the holder's lease expired ends the
 * holder's session and takes the lock (take_over()).
 */
#include "admin/fleet_leader.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "admin/store_pg_conf.h"
#include "lib/log.h"
#include "lib/pg.h"
#include "lib/xmalloc.h"

struct adm_leader {
    struct event_base *base;     /* borrowed */
    struct adm_pg_conf *conf;    /* owned: a copy (a reload frees the config) */
    struct pg_client *pg;        /* owned: the fleet session */
    struct adm_leader_hooks hooks;
    void *arg;
    char *address, *host, *version;  /* owned */
    long pid;
    double started_ms;
    char name[320];              /* "store.postgres (...) fleet session" */
    struct event *timer;         /* owned: every half period */
    unsigned turn;               /* even: publish; odd: read or try */
    unsigned session;            /* +1 per session: stale answers are ignored */
    bool ready;                  /* up, and the session's settings applied */
    bool busy;                   /* a periodic statement is in flight */
    bool leader;                 /* this session holds the fleet's lock */
    bool missed;                 /* the leader skipped a turn while busy */
    bool late;                   /* the leader's last read came after its lease */
    bool no_takeover;            /* this session's role may not end another's */
    bool refused_logged;         /* that refusal was logged (once a process) */
    uint64_t terms, takeovers;
    unsigned instances;          /* live instances, as the leader counted them */
    char leader_instance[64];    /* who leads, as last known */
    double leader_known_ms;      /* monotonic, when those two were learned */
    uint64_t publishes, reads;
    double read_sum_ms, read_max_ms;
    char last_warn[256];         /* the last statement failure logged */
};

/* One statement's context: stale once the session changed. */
struct lq {
    struct adm_leader *l;
    unsigned session;
    double sent_ms;              /* monotonic, when it was sent */
    adm_leader_fleet_fn *cb;     /* status only */
    void *arg;
};

static double
mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static struct lq *
lq_new(struct adm_leader *l)
{
    struct lq *q = xcalloc(1, sizeof(*q));

    q->l = l;
    q->session = l->session;
    q->sent_ms = mono_ms();
    return q;
}

/* True (and frees <q>) when the answer is for a session that is gone or
 * the client is being freed: nothing to do. */
static bool
lq_stale(struct lq *q, const struct pg_reply *r)
{
    if (pg_reply_outcome(r) == PG_CLOSED || q->session != q->l->session) {
        free(q);
        return true;
    }
    return false;
}

/* A periodic statement failed: logged once per distinct reason (the
 * session's own loss is logged by lib/pg and by the state callback). */
static void
warn_failed(struct adm_leader *l, const char *what, const struct pg_reply *r)
{
    char msg[256];

    snprintf(msg, sizeof(msg), "%s: %s", what, pg_reply_error(r));
    if (strcmp(msg, l->last_warn) == 0)
        return;
    snprintf(l->last_warn, sizeof(l->last_warn), "%s", msg);
    log_at(LL_WARN, "fleet", 0, "%s: %s", l->name, msg);
}

static void read_fleet(struct adm_leader *l);

/* This session holds the lock now: leads, and writes its heartbeat at once
 * (the read writes cutover_leader) so that no follower finds the new
 * holder's lease old. */
static void
become_leader(struct adm_leader *l)
{
    char pid[16];

    if (l->leader)
        return;
    l->leader = true;
    l->terms++;
    snprintf(l->leader_instance, sizeof(l->leader_instance), "%s", l->conf->instance);
    l->leader_known_ms = mono_ms();
    snprintf(pid, sizeof(pid), "%d", pg_backend_pid(l->pg));
    log_at(LL_INFO, "fleet", 0, "fleet %s: this instance (%s) leads: it holds the fleet's "
           "lock on its fleet session and applies the rollback policy to the fleet's "
           "windows", l->conf->fleet, l->conf->instance);
    log_kv(LL_INFO, "fleet", "leader", "fleet", l->conf->fleet, "instance",
           l->conf->instance, "server_pid", pid);
    if (!l->busy)
        read_fleet(l);
}

static void
lose_leader(struct adm_leader *l, const char *why)
{
    if (!l->leader)
        return;
    l->leader = false;
    l->leader_instance[0] = '\0';
    l->instances = 0;
    log_at(LL_WARN, "fleet", 0, "fleet %s: this instance (%s) no longer leads: %s; the "
           "lock went with the session, another instance takes it", l->conf->fleet,
           l->conf->instance, why);
    log_kv(LL_WARN, "fleet", "leader_lost", "fleet", l->conf->fleet, "instance",
           l->conf->instance, "reason", why);
}

/* ---- publish ----------------------------------------------------------- */

/* The lock holder's lease as the leader's row names it: the age, by the
 * database's clock, of the later of its two heartbeats, its read (the
 * row's at) and its publication (its instance row's seen_at); ms. NULL
 * when no leader ever wrote the row. $1 is the fleet. */
#define LEASE_AGE_SQL                                                                  \
    "(extract(epoch FROM clock_timestamp() - greatest(l.at, (SELECT max(s.seen_at) "   \
    "FROM cutover_instance AS s WHERE s.fleet = $1 AND s.backend_pid = l.backend_pid))" \
    ") * 1000)::float8"

/* One statement: the instance row, every service's window row, and (while
 * another leads) the try for the lock; it reads back who leads and the
 * age of its lease. */
static const char publish_sql[] =
    "WITH i AS (INSERT INTO cutover_instance AS t (fleet, instance, address, host, version, "
    "pid, backend_pid, applied, started_at, seen_at) VALUES ($1, $2, $3, $4, $5, "
    "$6::integer, pg_backend_pid(), $7::jsonb, to_timestamp($8::float8 / 1000), "
    "clock_timestamp()) ON CONFLICT (fleet, instance) DO UPDATE SET "
    "address = EXCLUDED.address, host = EXCLUDED.host, version = EXCLUDED.version, "
    "pid = EXCLUDED.pid, backend_pid = EXCLUDED.backend_pid, applied = EXCLUDED.applied, "
    "started_at = EXCLUDED.started_at, seen_at = EXCLUDED.seen_at RETURNING seen_at), "
    "w AS (INSERT INTO cutover_window AS t (fleet, instance, service, generation, window_s, "
    "legacy_classes, legacy_hist, new_classes, new_hist, at) SELECT $1, $2, x.service, "
    "x.generation, x.window_s, x.lc, x.lh, x.nc, x.nh, i.seen_at FROM "
    "jsonb_to_recordset($9::jsonb) AS x(service text, generation bigint, window_s integer, "
    "lc bigint[], lh bigint[], nc bigint[], nh bigint[]) CROSS JOIN i "
    "ON CONFLICT (fleet, instance, service) DO UPDATE SET generation = EXCLUDED.generation, "
    "window_s = EXCLUDED.window_s, legacy_classes = EXCLUDED.legacy_classes, "
    "legacy_hist = EXCLUDED.legacy_hist, new_classes = EXCLUDED.new_classes, "
    "new_hist = EXCLUDED.new_hist, at = EXCLUDED.at) "
    "SELECT CASE WHEN $10::boolean THEN pg_try_advisory_lock($11::integer, hashtext($1)) END, "
    "l.instance, l.instances, (extract(epoch FROM clock_timestamp() - l.at) * 1000)::float8, "
    LEASE_AGE_SQL " FROM (SELECT 1) AS one LEFT JOIN cutover_leader AS l ON l.fleet = $1";

static void take_over(struct adm_leader *l);
static void run_turn(struct adm_leader *l);

/* A try that failed: true when the lease the leader's row names has
 * expired, by <age> (LEASE_AGE_SQL's column; NULL: no leader ever wrote
 * the row), and this session may end another's. take_over() checks the
 * holder's own lease, authoritatively. */
static bool
lease_expired(const struct adm_leader *l, const char *age)
{
    return !l->no_takeover && age != NULL && strtod(age, NULL) > ADM_LEADER_LEASE_MS;
}

/* An answer of the leader's: a turn skipped meanwhile runs now (its
 * heartbeat must not wait for the next tick). */
static void
catch_up(struct adm_leader *l)
{
    if (!l->missed)
        return;
    l->missed = false;
    if (l->leader && l->ready && !l->busy)
        run_turn(l);
}

static void
on_published(struct pg_client *c, const struct pg_reply *r, void *arg)
{
    struct lq *q = arg;
    struct adm_leader *l = q->l;
    const char *got, *who, *n, *age;

    (void)c;
    if (lq_stale(q, r))
        return;
    free(q);
    l->busy = false;
    if (pg_reply_outcome(r) != PG_OK) {
        warn_failed(l, "publishing this instance's windows", r);
        catch_up(l);
        return;
    }
    l->publishes++;
    got = pg_reply_value(r, 0, 0);
    if (got != NULL && strcmp(got, "t") == 0)
        become_leader(l);
    if (l->leader) {
        catch_up(l);
        return;
    }
    who = pg_reply_value(r, 0, 1);
    n = pg_reply_value(r, 0, 2);
    age = pg_reply_value(r, 0, 3);
    if (who != NULL && age != NULL && strtod(age, NULL) <= ADM_LEADER_FRESH_MS) {
        snprintf(l->leader_instance, sizeof(l->leader_instance), "%s", who);
        l->instances = n != NULL ? (unsigned)strtoul(n, NULL, 10) : 0;
    } else {
        l->leader_instance[0] = '\0';    /* nobody summed lately */
        l->instances = 0;
    }
    l->leader_known_ms = mono_ms();
    if (got != NULL && lease_expired(l, pg_reply_value(r, 0, 4)))
        take_over(l);
}

static void
publish(struct adm_leader *l)
{
    struct adm_fw_svc *svcs = NULL;
    unsigned n = l->hooks.collect(l->arg, &svcs);
    json_t *doc = adm_fw_publish_doc(svcs, n), *applied = adm_fw_applied(svcs, n);
    char *doc_text = json_dumps(doc, JSON_COMPACT), *applied_text;
    char pid[24], started[32], lock[16];
    const char *p[11];

    applied_text = json_dumps(applied, JSON_COMPACT);
    json_decref(doc);
    json_decref(applied);
    free(svcs);
    snprintf(pid, sizeof(pid), "%ld", l->pid);
    snprintf(started, sizeof(started), "%.3f", l->started_ms);
    snprintf(lock, sizeof(lock), "%d", ADM_LEADER_LOCK_CLASS);
    p[0] = l->conf->fleet;
    p[1] = l->conf->instance;
    p[2] = l->address;
    p[3] = l->host;
    p[4] = l->version;
    p[5] = pid;
    p[6] = applied_text != NULL ? applied_text : "{}";
    p[7] = started;
    p[8] = doc_text != NULL ? doc_text : "[]";
    p[9] = l->leader ? "false" : "true";
    p[10] = lock;
    l->busy = true;
    pg_query(l->pg, publish_sql, 11, p, on_published, lq_new(l));
    free(doc_text);
    free(applied_text);
}

/* ---- a follower's try -------------------------------------------------- */

static void
on_tried(struct pg_client *c, const struct pg_reply *r, void *arg)
{
    struct lq *q = arg;
    struct adm_leader *l = q->l;
    const char *got;

    (void)c;
    if (lq_stale(q, r))
        return;
    free(q);
    l->busy = false;
    if (pg_reply_outcome(r) != PG_OK) {
        warn_failed(l, "trying the fleet's lock", r);
        return;
    }
    got = pg_reply_value(r, 0, 0);
    if (got != NULL && strcmp(got, "t") == 0)
        become_leader(l);
    else if (got != NULL && lease_expired(l, pg_reply_value(r, 0, 1)))
        take_over(l);
}

static void
try_lock(struct adm_leader *l)
{
    char lock[16];
    const char *p[2];

    snprintf(lock, sizeof(lock), "%d", ADM_LEADER_LOCK_CLASS);
    p[0] = l->conf->fleet;
    p[1] = lock;
    l->busy = true;
    pg_query(l->pg, "SELECT pg_try_advisory_lock($2::integer, hashtext($1)), " LEASE_AGE_SQL
             " FROM (SELECT 1) AS one LEFT JOIN cutover_leader AS l ON l.fleet = $1", 2, p,
             on_tried, lq_new(l));
}

/* ---- a takeover -------------------------------------------------------- */

/* ONE statement: the lock's holder, from pg_locks (authoritative); its
 * lease, the later of its two heartbeats (the leader's row when the row
 * names that server process; its instance row's seen_at); the leader's row
 * locked, so that two followers, or the holder's own read, cannot
 * interleave with this (SKIP LOCKED: a row being written is a heartbeat on
 * its way, or another follower at it), and the lease checked again on the
 * row's newest version (READ COMMITTED rechecks a row updated meanwhile);
 * only if it expired, the holder's session ended, the lock tried every
 * millisecond, $4 times at most (the ended session lets it go as it exits,
 * within a few; a plain try of another instance may come first, which the
 * answer says without failing the statement) and the row written naming
 * this session, a fresh heartbeat no other follower can find old. No row:
 * the lease is fresh, or another follower is at it. */
static const char takeover_sql[] =
    "WITH h AS MATERIALIZED (SELECT (SELECT k.pid FROM pg_locks AS k WHERE "
    "k.locktype = 'advisory' AND k.granted AND k.classid = $2::integer::oid AND "
    "k.objid = (hashtext($1)::bigint & 4294967295)::oid AND k.objsubid = 2 LIMIT 1) AS pid), "
    "s AS (SELECT h.pid AS backend_pid, (SELECT i.instance FROM cutover_instance AS i "
    "WHERE i.fleet = $1 AND i.backend_pid = h.pid ORDER BY i.seen_at DESC LIMIT 1) AS instance, "
    "(extract(epoch FROM clock_timestamp() - greatest(CASE WHEN l.backend_pid = h.pid THEN "
    "l.at END, (SELECT max(i.seen_at) FROM cutover_instance AS i WHERE i.fleet = $1 AND "
    "i.backend_pid = h.pid))) * 1000)::float8 AS stale_ms "
    "FROM cutover_leader AS l, h WHERE l.fleet = $1 AND h.pid <> pg_backend_pid() AND "
    "greatest(CASE WHEN l.backend_pid = h.pid THEN l.at END, (SELECT max(i.seen_at) FROM "
    "cutover_instance AS i WHERE i.fleet = $1 AND i.backend_pid = h.pid)) < "
    "clock_timestamp() - make_interval(secs => $3::float8 / 1000) "
    "FOR UPDATE OF l SKIP LOCKED), "
    "e AS MATERIALIZED (SELECT s.instance, s.backend_pid, s.stale_ms, "
    "pg_terminate_backend(s.backend_pid) AS ended FROM s), "
    "g AS MATERIALIZED (SELECT e.instance, e.backend_pid, e.stale_ms, e.ended, CASE WHEN "
    "e.ended THEN EXISTS (SELECT 1 FROM generate_series(1, $4::integer) AS n WHERE CASE "
    "WHEN n = 1 THEN pg_try_advisory_lock($2::integer, hashtext($1)) WHEN "
    "pg_sleep(0.001) IS NULL THEN false ELSE pg_try_advisory_lock($2::integer, "
    "hashtext($1)) END) ELSE false END AS got FROM e), "
    "u AS (UPDATE cutover_leader AS l SET instance = $5, backend_pid = pg_backend_pid(), "
    "since = clock_timestamp(), at = clock_timestamp() FROM g WHERE g.got AND l.fleet = $1) "
    "SELECT coalesce(g.instance, '?'), g.backend_pid, g.stale_ms, g.ended, g.got FROM g";

/* The takeover statement failed: a role without the right to end another
 * role's session is told once, and this session stops trying (the holder
 * is then replaced only when its session ends: docs/fleet.md). */
static void
takeover_failed(struct adm_leader *l, const struct pg_reply *r)
{
    const char *state = pg_reply_sqlstate(r);

    if (strcmp(state, "42501") == 0) {
        l->no_takeover = true;
        if (!l->refused_logged)
            log_at(LL_ERR, "fleet", 0, "%s: the leader's lease expired but this instance "
                   "may not end its session (pg_terminate_backend: %s): the role needs to "
                   "be the leader's or a member of pg_signal_backend; until then a leader "
                   "that hangs keeps leading and one whose host vanished is replaced when "
                   "the server's keepalives end its session", l->name, pg_reply_error(r));
        l->refused_logged = true;
    } else {
        warn_failed(l, "taking over from a leader whose lease expired", r);
    }
}

static void
on_taken_over(struct pg_client *c, const struct pg_reply *r, void *arg)
{
    struct lq *q = arg;
    struct adm_leader *l = q->l;
    const char *who, *pid, *stale, *ended, *got;
    struct adm_leader_takeover t;

    (void)c;
    if (lq_stale(q, r))
        return;
    free(q);
    l->busy = false;
    if (pg_reply_outcome(r) != PG_OK) {
        takeover_failed(l, r);
        return;
    }
    if (pg_reply_rows(r) < 1)
        return;                        /* fresh again, or another follower's */
    who = pg_reply_value(r, 0, 0);
    pid = pg_reply_value(r, 0, 1);
    stale = pg_reply_value(r, 0, 2);
    ended = pg_reply_value(r, 0, 3);
    got = pg_reply_value(r, 0, 4);
    if (who == NULL || pid == NULL || stale == NULL || ended == NULL || got == NULL)
        return;
    if (strcmp(ended, "t") != 0) {
        log_at(LL_WARN, "fleet", 0, "%s: leader %s's lease expired (stale %.0f ms) but its "
               "session (server pid %s) could not be ended", l->name, who,
               strtod(stale, NULL), pid);
        return;
    }
    t = (struct adm_leader_takeover){ .fleet = l->conf->fleet, .instance = who,
                                      .backend_pid = atoi(pid),
                                      .stale_ms = strtod(stale, NULL),
                                      .by = l->conf->instance,
                                      .leading = strcmp(got, "t") == 0 };
    l->takeovers++;
    log_at(LL_WARN, "fleet", 0, "fleet %s: leader %s's lease expired (stale %.0f ms); its "
           "session ended; %s", l->conf->fleet, who, t.stale_ms, t.leading ? "leading"
           : "another instance took the lock first");
    log_kv(LL_WARN, "fleet", "leader_takeover", "fleet", l->conf->fleet, "instance",
           l->conf->instance, "previous", who, "previous_server_pid", pid, "stale_ms",
           stale, "leading", t.leading ? "yes" : "no");
    if (t.leading)
        become_leader(l);
    if (l->hooks.takeover != NULL)
        l->hooks.takeover(l->arg, &t);
}

static void
take_over(struct adm_leader *l)
{
    char lock[16], lease[16], tries[16];
    const char *p[5];

    snprintf(lock, sizeof(lock), "%d", ADM_LEADER_LOCK_CLASS);
    snprintf(lease, sizeof(lease), "%u", ADM_LEADER_LEASE_MS);
    snprintf(tries, sizeof(tries), "%u", ADM_LEADER_TAKEOVER_TRIES);
    p[0] = l->conf->fleet;
    p[1] = lock;
    p[2] = lease;
    p[3] = tries;
    p[4] = l->conf->instance;
    l->busy = true;
    pg_query(l->pg, takeover_sql, 5, p, on_taken_over, lq_new(l));
}

/* ---- the leader's read ------------------------------------------------- */

/* Every instance's last publication (within ADM_LEADER_KEEP_MS), and the
 * leader's row in the same statement: who leads and the live instances. */
static const char read_sql[] =
    "WITH r AS (SELECT w.instance, w.service, w.generation, w.legacy_classes, w.legacy_hist, "
    "w.new_classes, w.new_hist, (extract(epoch FROM clock_timestamp() - w.at) * 1000)::float8 "
    "AS age_ms FROM cutover_window AS w WHERE w.fleet = $1 AND w.at > clock_timestamp() - "
    "make_interval(secs => $4::float8 / 1000)), "
    "u AS (INSERT INTO cutover_leader AS l (fleet, instance, backend_pid, since, at, instances) "
    "VALUES ($1, $2, pg_backend_pid(), clock_timestamp(), clock_timestamp(), "
    "(SELECT count(DISTINCT instance) FROM r WHERE age_ms <= $3::float8)) "
    "ON CONFLICT (fleet) DO UPDATE SET instance = EXCLUDED.instance, "
    "backend_pid = EXCLUDED.backend_pid, since = CASE WHEN l.instance = EXCLUDED.instance "
    "AND l.backend_pid = EXCLUDED.backend_pid THEN l.since ELSE EXCLUDED.since END, "
    "at = EXCLUDED.at, instances = EXCLUDED.instances) "
    "SELECT instance, service, generation, legacy_classes::text, legacy_hist::text, "
    "new_classes::text, new_hist::text, age_ms FROM r ORDER BY service, instance";

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void
on_read(struct pg_client *c, const struct pg_reply *r, void *arg)
{
    struct lq *q = arg;
    struct adm_leader *l = q->l;
    struct hl_fleet_row *rows;
    struct adm_leader_view v;
    const char **live, **svc_of;
    char err[160];
    int nr, i;
    unsigned k = 0, nlive = 0, distinct = 0, j, start;
    double t0, ms, took;

    (void)c;
    if (lq_stale(q, r))
        return;
    took = mono_ms() - q->sent_ms;
    free(q);
    l->busy = false;
    if (pg_reply_outcome(r) != PG_OK) {
        warn_failed(l, "reading the fleet's windows", r);
        catch_up(l);
        return;
    }
    if (!l->leader)
        return;                        /* lost meanwhile: nothing to act on */
    if (took > ADM_LEADER_LEASE_MS) {
        /* the heartbeat this answer carries is older than the lease: a
         * follower may have ended this session and lead by now */
        if (!l->late)
            log_at(LL_WARN, "fleet", 0, "%s: the fleet's windows read took %.0f ms, longer "
                   "than the leader's lease (%u ms): not acted upon (another instance may "
                   "lead by now)", l->name, took, ADM_LEADER_LEASE_MS);
        l->late = true;
        catch_up(l);
        return;
    }
    l->late = false;
    t0 = mono_ms();
    l->reads++;
    nr = pg_reply_rows(r);
    rows = xcalloc(nr > 0 ? (size_t)nr : 1, sizeof(*rows));
    live = xcalloc(nr > 0 ? (size_t)nr : 1, sizeof(*live));
    svc_of = xcalloc(nr > 0 ? (size_t)nr : 1, sizeof(*svc_of));
    for (i = 0; i < nr; i++) {
        struct hl_fleet_row *row = &rows[k];
        const char *inst = pg_reply_value(r, i, 0), *svc = pg_reply_value(r, i, 1);
        const char *gen = pg_reply_value(r, i, 2), *age = pg_reply_value(r, i, 7);

        if (inst == NULL || svc == NULL || gen == NULL || age == NULL) {
            snprintf(err, sizeof(err), "a column is NULL");
        } else if (adm_fw_counts_parse(pg_reply_value(r, i, 3), pg_reply_value(r, i, 4),
                                       &row->side[RT_LEGACY], err, sizeof(err)) == 0
                   && adm_fw_counts_parse(pg_reply_value(r, i, 5), pg_reply_value(r, i, 6),
                                          &row->side[RT_NEW], err, sizeof(err)) == 0) {
            row->instance = inst;
            row->generation = strtoull(gen, NULL, 10);
            row->age_ms = strtod(age, NULL);
            if (row->age_ms <= ADM_LEADER_LIVE_MS)
                live[nlive++] = inst;
            svc_of[k++] = svc;
            continue;
        }
        log_at(LL_WARN, "fleet", 0, "%s: the window row of instance %s, service %s is not "
               "valid (%s): left out", l->name, inst != NULL ? inst : "?",
               svc != NULL ? svc : "?", err);
        memset(row, 0, sizeof(*row));
    }
    /* live instances, over every service */
    qsort(live, nlive, sizeof(*live), cmp_str);
    for (j = 0; j < nlive; j++)
        if (j == 0 || strcmp(live[j], live[j - 1]) != 0)
            distinct++;
    l->instances = distinct;
    l->leader_known_ms = mono_ms();
    v = (struct adm_leader_view){ .instance = l->conf->instance,
                                  .live_ms = ADM_LEADER_LIVE_MS, .instances = distinct };
    /* one evaluation per service (the reply is ordered by service) */
    for (start = 0, j = 1; j <= k; j++) {
        if (j < k && strcmp(svc_of[j], svc_of[start]) == 0)
            continue;
        if (start < k)
            l->hooks.evaluate(l->arg, svc_of[start], &rows[start], j - start, &v);
        start = j;
    }
    free(rows);
    free(live);
    free(svc_of);
    ms = mono_ms() - t0;
    l->read_sum_ms += ms;
    if (ms > l->read_max_ms)
        l->read_max_ms = ms;
    catch_up(l);
}

static void
read_fleet(struct adm_leader *l)
{
    char live[16], keep[16];
    const char *p[4];

    snprintf(live, sizeof(live), "%u", ADM_LEADER_LIVE_MS);
    snprintf(keep, sizeof(keep), "%u", ADM_LEADER_KEEP_MS);
    p[0] = l->conf->fleet;
    p[1] = l->conf->instance;
    p[2] = live;
    p[3] = keep;
    l->busy = true;
    pg_query(l->pg, read_sql, 4, p, on_read, lq_new(l));
}
/* ---- the session ------------------------------------------------------- */

/* The server's side of the session, set at every connect before the lock
 * is tried (docs/fleet.md): a vanished instance is noticed by TCP
 * keepalives (idle, interval, count) and tcp_user_timeout, a dead one
 * during a statement by client_connection_check_interval (PostgreSQL 14
 * and later). On a unix socket the TCP settings do nothing and read as 0:
 * a dead peer there closes the socket at once. */
static void
on_set(struct pg_client *c, const struct pg_reply *r, void *arg)
{
    struct lq *q = arg;
    struct adm_leader *l = q->l;

    (void)c;
    if (lq_stale(q, r))
        return;
    free(q);
    l->busy = false;
    if (pg_reply_outcome(r) != PG_OK) {
        /* a server that refuses them: leading from it could hold the lock
         * for hours after this instance vanished; the next session retries */
        warn_failed(l, "setting the fleet session's timeouts (the lock is not tried "
                       "without them)", r);
        return;
    }
    l->ready = true;
    l->last_warn[0] = '\0';
    log_at(LL_INFO, "fleet", 0, "%s: up (server pid %d): publishing every %u ms and "
           "contending for the fleet's lock", l->name, pg_backend_pid(l->pg),
           ADM_LEADER_PERIOD_MS);
    publish(l);                        /* at once: a free lock is taken now */
    l->turn = 1;
}

static void
session_set(struct adm_leader *l)
{
    char sql[512];

    snprintf(sql, sizeof(sql),
             "SELECT set_config('tcp_keepalives_idle', '%u', false), "
             "set_config('tcp_keepalives_interval', '%u', false), "
             "set_config('tcp_keepalives_count', '%u', false), "
             "set_config('tcp_user_timeout', '%u', false), "
             "CASE WHEN current_setting('server_version_num')::integer >= 140000 THEN "
             "set_config('client_connection_check_interval', '%u', false) END",
             ADM_LEADER_KEEPALIVE_IDLE_S, ADM_LEADER_KEEPALIVE_INTERVAL_S,
             ADM_LEADER_KEEPALIVE_COUNT, ADM_LEADER_TCP_USER_TIMEOUT_MS,
             ADM_LEADER_CHECK_INTERVAL_MS);
    l->busy = true;
    pg_query(l->pg, sql, 0, NULL, on_set, lq_new(l));
}

static void
on_pg_state(struct pg_client *c, const struct pg_state_info *st, void *arg)
{
    struct adm_leader *l = arg;

    (void)c;
    l->session++;
    l->ready = false;
    l->busy = false;
    l->missed = false;
    l->no_takeover = false;            /* a new session: the role may have changed */
    if (st->state == PG_STATE_UP) {
        session_set(l);
        return;
    }
    lose_leader(l, st->reason != NULL ? st->reason : "the fleet session is down");
}

static void
arm(struct adm_leader *l)
{
    struct timeval tv = { 0, (ADM_LEADER_PERIOD_MS / 2) * 1000 };

    evtimer_add(l->timer, &tv);
}

static void
run_turn(struct adm_leader *l)
{
    if (l->turn++ % 2 == 0)
        publish(l);
    else if (l->leader)
        read_fleet(l);
    else
        try_lock(l);
}

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct adm_leader *l = arg;

    (void)fd;
    (void)what;
    arm(l);
    if (l->ready && l->busy && l->leader)
        l->missed = true;              /* run when the answer comes */
    if (!l->ready || l->busy)
        return;                        /* down, or the last one still runs */
    run_turn(l);
}

/* ---- life cycle -------------------------------------------------------- */

struct adm_leader *
adm_leader_new(struct event_base *base, const struct adm_pg_conf *conf,
               const struct adm_leader_ident *id, uint64_t seed,
               const struct adm_leader_hooks *hooks, void *arg)
{
    struct adm_leader *l = xcalloc(1, sizeof(*l));
    char app[96];
    struct pg_conf pc;

    l->base = base;
    l->conf = adm_pg_conf_dup(conf);
    l->hooks = *hooks;
    l->arg = arg;
    l->address = xstrdup(id->address != NULL ? id->address : "");
    l->host = xstrdup(id->host != NULL ? id->host : "");
    l->version = xstrdup(id->version != NULL ? id->version : "");
    l->pid = id->pid;
    l->started_ms = id->started_ms;
    snprintf(l->name, sizeof(l->name), "store.postgres (%.200s) fleet session",
             l->conf->conninfo);
    snprintf(app, sizeof(app), "%.60s-fleet", l->conf->application_name != NULL
                                              ? l->conf->application_name : "cutoverd");
    pc = (struct pg_conf){
        .name = "fleet", .host = l->conf->host, .port = l->conf->port,
        .dbname = l->conf->dbname, .user = l->conf->user,
        .password_file = l->conf->password_file, .application_name = app,
        .sslmode = l->conf->sslmode, .connect_timeout_ms = l->conf->connect_timeout_ms,
        .statement_timeout_ms = l->conf->statement_timeout_ms,
        .keepalive_idle_s = ADM_LEADER_KEEPALIVE_IDLE_S,
        .keepalive_interval_s = ADM_LEADER_KEEPALIVE_INTERVAL_S,
        .keepalive_count = ADM_LEADER_KEEPALIVE_COUNT,
        .tcp_user_timeout_ms = ADM_LEADER_TCP_USER_TIMEOUT_MS,
        .seed = seed ^ 0x666c656574ULL,
    };
    l->pg = pg_new(base, &pc, on_pg_state, l);
    l->timer = evtimer_new(base, on_timer, l);
    if (l->pg == NULL || l->timer == NULL) {
        log_at(LL_ERR, "fleet", 0, "%s: cannot be created", l->name);
        adm_leader_free(l);
        return NULL;
    }
    return l;
}

int
adm_leader_start(struct adm_leader *l)
{
    if (pg_start(l->pg) != 0)
        return -1;
    arm(l);
    return 0;
}

void
adm_leader_free(struct adm_leader *l)
{
    if (l == NULL)
        return;
    if (l->timer != NULL)
        event_free(l->timer);
    pg_free(l->pg);                    /* answers what is pending with PG_CLOSED */
    adm_pg_conf_free(l->conf);
    free(l->address);
    free(l->host);
    free(l->version);
    free(l);
}

/* ---- what it shows ----------------------------------------------------- */

void
adm_leader_figures(const struct adm_leader *l, struct adm_leader_figures *out)
{
    bool fresh = l->leader_known_ms > 0
                 && mono_ms() - l->leader_known_ms <= ADM_LEADER_LIVE_MS;

    memset(out, 0, sizeof(*out));
    out->up = l->ready;
    out->leader = l->leader;
    out->instances = l->leader || fresh ? l->instances : 0;
    if (l->leader || fresh)
        snprintf(out->leader_instance, sizeof(out->leader_instance), "%s",
                 l->leader_instance);
    out->publishes = l->publishes;
    out->reads = l->reads;
    out->terms = l->terms;
    out->takeovers = l->takeovers;
    out->read_sum_ms = l->read_sum_ms;
    out->read_max_ms = l->read_max_ms;
}

void
adm_leader_status(const struct adm_leader *l, json_t *o)
{
    struct adm_leader_figures f;

    adm_leader_figures(l, &f);
    json_object_set_new(o, "leader", json_boolean(f.leader));
    json_object_set_new(o, "leader_instance", f.leader_instance[0] != '\0'
                        ? json_string(f.leader_instance) : json_null());
    json_object_set_new(o, "fleet_instances", json_integer((json_int_t)f.instances));
    json_object_set_new(o, "fleet_session_up", json_boolean(f.up));
    json_object_set_new(o, "leader_takeovers", json_integer((json_int_t)f.takeovers));
    if (f.reads > 0)
        json_object_set_new(o, "leader_reads", json_pack(
            "{s:I, s:f, s:f}", "count", (json_int_t)f.reads,
            "mean_ms", f.read_sum_ms / (double)f.reads, "max_ms", f.read_max_ms));
}

/* `status --fleet`: one row per (instance, service); instances without a
 * current window row come once with NULL windows. */
static const char status_sql[] =
    "SELECT i.instance, i.address, i.host, i.version, i.pid, i.applied::text, "
    "(extract(epoch FROM clock_timestamp() - i.seen_at) * 1000)::float8, "
    "to_char(i.seen_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), "
    "to_char(i.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
    "i.seen_at > clock_timestamp() - make_interval(secs => $3::float8 / 1000) AND "
    "EXISTS (SELECT 1 FROM pg_locks AS k WHERE k.locktype = 'advisory' AND k.granted "
    "AND k.pid = i.backend_pid AND k.classid = $2::integer::oid "
    "AND k.objid = (hashtext($1)::bigint & 4294967295)::oid AND k.objsubid = 2), "
    "w.service, w.generation, w.window_s, w.legacy_classes::text, w.legacy_hist::text, "
    "w.new_classes::text, w.new_hist::text "
    "FROM cutover_instance AS i LEFT JOIN cutover_window AS w ON w.fleet = i.fleet "
    "AND w.instance = i.instance AND w.at = i.seen_at "
    "WHERE i.fleet = $1 ORDER BY i.instance, w.service";

static json_t *
str_or_null(const char *s)
{
    return s != NULL ? json_string(s) : json_null();
}

/* One service's windows of status row <i>, or NULL when they do not parse. */
static json_t *
status_service(const struct pg_reply *r, int i)
{
    struct hl_counts lc, nc;
    char err[160];

    if (adm_fw_counts_parse(pg_reply_value(r, i, 13), pg_reply_value(r, i, 14), &lc, err,
                            sizeof(err)) != 0
        || adm_fw_counts_parse(pg_reply_value(r, i, 15), pg_reply_value(r, i, 16), &nc, err,
                               sizeof(err)) != 0)
        return json_pack("{s:s, s:s}", "name", pg_reply_value(r, i, 10), "error", err);
    return json_pack("{s:s, s:I, s:I, s:o, s:o}", "name", pg_reply_value(r, i, 10),
                     "generation", (json_int_t)strtoll(pg_reply_value(r, i, 11) != NULL
                                                       ? pg_reply_value(r, i, 11) : "0",
                                                       NULL, 10),
                     "window_s", (json_int_t)strtoll(pg_reply_value(r, i, 12) != NULL
                                                     ? pg_reply_value(r, i, 12) : "0",
                                                     NULL, 10),
                     "legacy", adm_fw_window_json(&lc), "new", adm_fw_window_json(&nc));
}

static void
on_status(struct pg_client *c, const struct pg_reply *r, void *arg)
{
    struct lq *q = arg;
    struct adm_leader *l = q->l;
    json_t *list, *inst = NULL, *applied, *svcs = NULL;
    const char *prev = NULL, *name;
    int i, n;

    (void)c;
    if (pg_reply_outcome(r) != PG_OK) {
        q->cb(q->arg, NULL, pg_reply_error(r));
        free(q);
        return;
    }
    list = json_array();
    n = pg_reply_rows(r);
    for (i = 0; i < n; i++) {
        name = pg_reply_value(r, i, 0);
        if (name == NULL)
            continue;
        if (prev == NULL || strcmp(prev, name) != 0) {
            applied = json_loads(pg_reply_value(r, i, 5) != NULL ? pg_reply_value(r, i, 5)
                                                                 : "{}", 0, NULL);
            svcs = json_array();
            inst = json_pack("{s:s, s:o, s:o, s:o, s:I, s:o, s:o, s:f, s:b, s:b, s:o, s:o}",
                             "instance", name,
                             "address", str_or_null(pg_reply_value(r, i, 1)),
                             "host", str_or_null(pg_reply_value(r, i, 2)),
                             "version", str_or_null(pg_reply_value(r, i, 3)),
                             "pid", (json_int_t)strtoll(pg_reply_value(r, i, 4) != NULL
                                                        ? pg_reply_value(r, i, 4) : "0",
                                                        NULL, 10),
                             "started_at", str_or_null(pg_reply_value(r, i, 8)),
                             "last_seen", str_or_null(pg_reply_value(r, i, 7)),
                             "last_seen_ms", pg_reply_value(r, i, 6) != NULL
                                             ? strtod(pg_reply_value(r, i, 6), NULL) : -1.0,
                             "live", pg_reply_value(r, i, 6) != NULL
                                     && strtod(pg_reply_value(r, i, 6), NULL)
                                        <= ADM_LEADER_LIVE_MS,
                             "leader", pg_reply_value(r, i, 9) != NULL
                                       && strcmp(pg_reply_value(r, i, 9), "t") == 0,
                             "applied", applied != NULL ? applied : json_object(),
                             "services", svcs);
            json_array_append_new(list, inst);
            prev = name;
        }
        if (pg_reply_value(r, i, 10) != NULL)
            json_array_append_new(svcs, status_service(r, i));
    }
    q->cb(q->arg, json_pack("{s:s, s:s, s:I, s:o}", "fleet", l->conf->fleet, "instance",
                            l->conf->instance, "live_ms", (json_int_t)ADM_LEADER_LIVE_MS,
                            "instances", list), NULL);
    free(q);
}

int
adm_leader_fleet_status(struct adm_leader *l, adm_leader_fleet_fn *cb, void *arg,
                        char *err, size_t errlen)
{
    char lock[16], live[16];
    const char *p[3];
    struct lq *q;

    if (pg_state(l->pg) != PG_STATE_UP) {
        snprintf(err, errlen, "%s is down", l->name);
        return -1;
    }
    snprintf(lock, sizeof(lock), "%d", ADM_LEADER_LOCK_CLASS);
    snprintf(live, sizeof(live), "%u", ADM_LEADER_LIVE_MS);
    p[0] = l->conf->fleet;
    p[1] = lock;
    p[2] = live;
    q = lq_new(l);
    q->cb = cb;
    q->arg = arg;
    if (pg_query(l->pg, status_sql, 3, p, on_status, q) != 0) {
        free(q);
        snprintf(err, errlen, "%s is closing", l->name);
        return -1;
    }
    return 0;
}
