/*
 * fleet_fixture: what the fleet's integration tests share on top of
 * fixture.h: a private PostgreSQL cluster (tests/harness/pg.h, never a
 * system one) and FLEET_N instances of one fleet on it, each a struct fx
 * with its own backends, directory and store section; their start and
 * teardown; and the reads they all make: a status field, who leads, a
 * weight and state reached, a value from the database, a takeover.
 * Header-only (static inline) like fixture.h.
 */
#ifndef CUTOVER_TESTS_FLEET_FIXTURE_H
#define CUTOVER_TESTS_FLEET_FIXTURE_H

#include <libpq-fe.h>

#include "tests/harness/pg.h"
#include "tests/integration/fixture.h"

#define FLEET_N 3

struct fleet_opts {
    const char *fleet;           /* the fleet's name */
    const char *service_extra;   /* more keys of the service (fx_init), or NULL */
    const char *top_extra;       /* more top-level keys, before "store" (", \"k\": v"), or NULL */
    const char *tokens;          /* every instance's admin token file, or NULL: none */
    unsigned seed;               /* instance i starts with seed + i */
    int poll_ms;                 /* fleet_wait_state()'s poll interval */
};

struct fleet {
    struct pgh *pg;
    struct fx fx[FLEET_N];
    char conninfo[512];          /* the test's own connections' */
    struct fleet_opts o;
};

/* Writes instance <i>'s store section (with <more> keys of it, or NULL)
 * into its top-level extra keys; the next fleet_start() uses it. */
static inline void
fleet_store_conf(struct fleet *fl, int i, const char *more)
{
    snprintf(fl->fx[i].top_extra, sizeof(fl->fx[i].top_extra),
             "%s, \"store\": {\"postgres\": {\"conninfo\": \"%s\", \"fleet\": \"%s\", "
             "\"instance\": \"i%d\"%s}}", fl->o.top_extra != NULL ? fl->o.top_extra : "",
             fl->conninfo, fl->o.fleet, i, more != NULL ? more : "");
}

/* Writes instance <i>'s config and starts it (0, or -1). */
static inline int
fleet_start(struct fleet *fl, int i)
{
    if (fx_write_conf(&fl->fx[i]) != 0)
        return -1;
    return fx_start_proxy(&fl->fx[i], fl->o.seed + (unsigned)i);
}

/* cmocka's group setup: the cluster, then FLEET_N instances as <o> says,
 * each with an admin HTTP port, started in order. */
static inline int
fleet_setup(void **state, const struct fleet_opts *o)
{
    struct fleet *fl = calloc(1, sizeof(*fl));
    int i;

    *state = fl;
    if (fl == NULL || (fl->pg = pgh_start()) == NULL)
        return -1;
    fl->o = *o;
    snprintf(fl->conninfo, sizeof(fl->conninfo), "host=%s port=%s dbname=postgres "
             "user=postgres", pgh_host(fl->pg), pgh_port(fl->pg));
    for (i = 0; i < FLEET_N; i++) {
        struct fx *f = &fl->fx[i];

        if (fx_init(f, false, 1, o->service_extra) != 0)
            return -1;
        f->admin_port = h_free_port();
        if (o->tokens != NULL && fx_admin_tokens(f, o->tokens) != 0)
            return -1;
        fleet_store_conf(fl, i, NULL);
        if (fleet_start(fl, i) != 0)
            return -1;
    }
    return 0;
}

/* cmocka's group teardown: every process, directory and the cluster. */
static inline int
fleet_teardown(void **state)
{
    struct fleet *fl = *state;
    int i;

    if (fl == NULL)
        return 0;
    h_kill_all();
    for (i = 0; i < FLEET_N; i++) {
        if (fl->fx[i].dir != NULL) {
            h_rmrf(fl->fx[i].dir);
            free(fl->fx[i].dir);
        }
    }
    pgh_free(fl->pg);
    free(fl);
    return 0;
}

/* The value at <path> of instance <i>'s status (a copy; caller decrefs). */
static inline json_t *
fleet_status_at(struct fleet *fl, int i, const char *path)
{
    json_t *root = h_ctl_json(fl->fx[i].sock, "status", (char *)NULL), *v;

    v = root != NULL ? h_json_at(root, path) : NULL;
    v = v != NULL ? json_deep_copy(v) : NULL;
    json_decref(root);
    return v;
}

/* The integer at <path> of instance <i>'s status; -1 when it is none. */
static inline long long
fleet_status_int(struct fleet *fl, int i, const char *path)
{
    json_t *v = fleet_status_at(fl, i, path);
    long long n = json_is_integer(v) ? (long long)json_integer_value(v) : -1;

    json_decref(v);
    return n;
}

static inline bool
fleet_is_leader(struct fleet *fl, int i)
{
    json_t *v = fleet_status_at(fl, i, "store.leader");
    bool yes = json_is_true(v);

    json_decref(v);
    return yes;
}

/* The one instance that leads, among those not <skip> (-1: none); waits up
 * to <ms> for exactly one. -1 when none does. */
static inline int
fleet_leader_of(struct fleet *fl, int skip, int ms)
{
    long long end = h_now_ms() + ms;
    int i, who, n;

    do {
        for (who = -1, n = 0, i = 0; i < FLEET_N; i++) {
            if (i != skip && fleet_is_leader(fl, i)) {
                who = i;
                n++;
            }
        }
        if (n == 1)
            return who;
        h_sleep_ms(20);
    } while (h_now_ms() < end);
    return -1;
}

/* Polls the instances but <dead> until one leads; returns the time from
 * <t0> it took (and who, in <who>), or fails past <limit_ms>, saying the
 * leader was <what> ("killed", "stopped"). */
static inline long long
fleet_takeover(struct fleet *fl, int dead, long long t0, int limit_ms, const char *what,
               int *who)
{
    long long end = t0 + limit_ms;
    int i;

    for (;;) {
        for (i = 0; i < FLEET_N; i++) {
            if (i != dead && fleet_is_leader(fl, i)) {
                *who = i;
                return h_now_ms() - t0;
            }
        }
        if (h_now_ms() > end)
            fail_msg("no instance leads %d ms after the leader i%d was %s", limit_ms, dead,
                     what);
        h_sleep_ms(10);
    }
}

/* Waits up to <ms> for instance <i> to show <weight> and state <st>. */
static inline bool
fleet_wait_state(struct fleet *fl, int i, double weight, const char *st, int ms)
{
    char who[32];

    snprintf(who, sizeof(who), "instance %d", i);
    return fx_wait_state(&fl->fx[i], who, weight, st, ms, fl->o.poll_ms);
}

/* A connection of the test's own (for reads and row locks). */
static inline PGconn *
fleet_db(struct fleet *fl)
{
    PGconn *c = PQconnectdb(fl->conninfo);

    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("test connection: %s", PQerrorMessage(c));
    return c;
}

/* The first value of <sql>'s first row, copied into <buf> ("(none)"). */
static inline const char *
fleet_db_value(struct fleet *fl, const char *sql, char *buf, size_t len)
{
    PGconn *c = fleet_db(fl);
    PGresult *r = PQexec(c, sql);

    snprintf(buf, len, "%s", PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0
                             ? PQgetvalue(r, 0, 0) : "(none)");
    PQclear(r);
    PQfinish(c);
    return buf;
}

/* The server process that holds the fleet's lock, into <buf> ("(none)"
 * when free): the leader's fleet session. */
static inline const char *
fleet_lock_holder(struct fleet *fl, char *buf, size_t len)
{
    return fleet_db_value(fl, "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND "
                          "granted AND classid = 1668641910 AND objsubid = 2", buf, len);
}

/* Locks the fleet's leader row in a transaction of a connection of the
 * test's own (returned: PQfinish() ends it) and waits up to 3 s until the
 * leader's session <pid> waits on it (its next read). */
static inline PGconn *
fleet_hold_leader_row(struct fleet *fl, const char *pid)
{
    PGconn *lock = fleet_db(fl);
    PGresult *r;
    char sql[256], buf[64];
    long long end;

    PQclear(PQexec(lock, "BEGIN"));
    snprintf(sql, sizeof(sql), "SELECT 1 FROM cutover_leader WHERE fleet = '%s' FOR UPDATE",
             fl->o.fleet);
    r = PQexec(lock, sql);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    PQclear(r);
    snprintf(sql, sizeof(sql), "SELECT coalesce(wait_event_type, '-') FROM pg_stat_activity "
             "WHERE pid = %s", pid);
    end = h_now_ms() + 3000;
    while (strcmp(fleet_db_value(fl, sql, buf, sizeof(buf)), "Lock") != 0 && h_now_ms() < end)
        h_sleep_ms(5);
    assert_string_equal(buf, "Lock");
    return lock;
}

/* Stops every instance with SIGTERM, the leader first each time: each must
 * exit cleanly (under the sanitizers, nothing leaked), the lock going with
 * the leader's session to one of those left, which then leads. A stopped
 * instance answers no status, so the leader is found among the others. */
static inline void
fleet_stop_clean(struct fleet *fl)
{
    int L, k;

    for (k = 0; k < FLEET_N; k++) {
        L = fleet_leader_of(fl, -1, 3000);
        assert_true(L >= 0);
        fx_stop_clean(&fl->fx[L]);
    }
}

#endif
