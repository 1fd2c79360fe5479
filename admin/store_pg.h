/*
 * store_pg: the fleet's store in PostgreSQL (docs/fleet.md): the daemon's
 * one session to the database (lib/pg.h, on the main loop, never
 * blocking), the schema it creates and migrates (store_pg_schema.h), the
 * rows of the fleet's services, the notifications that announce their
 * changes and the fleet's audit table. It knows rows, not the control
 * plane: admin/fleet.c turns rows into applied state and changes into rows.
 *
 * Rows: one per (fleet, service) in cutover_service, as struct
 * adm_store_entry (admin/store.h) plus who wrote it and when. A write is
 * one statement, so one transaction: an UPDATE whose WHERE holds the
 * generation the writer started from (a compare-and-set: one of two racing
 * writers changes nothing and learns it) or none (a lowering, already in
 * effect, which wins regardless), with pg_notify() of the new row on the
 * fleet's channel "cutover_<fleet>" in the same statement. Notifications
 * are hints: after a reconnect the owner re-reads every row.
 */
#ifndef CUTOVER_ADMIN_STORE_PG_H
#define CUTOVER_ADMIN_STORE_PG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "admin/store.h"

struct event_base;
struct json_t;
struct adm_pg_conf;
struct adm_pgstore;

/* A row of cutover_service. */
struct adm_pg_row {
    struct adm_store_entry e;    /* name, weight, state, generation, plan */
    char by[64];                 /* the instance that wrote it */
    double at_ms;                /* when (the database's clock, Unix ms) */
};

/* What the store tells its owner. Every callback runs from the loop. */
struct adm_pgstore_cbs {
    /* The session is up, the schema checked, the LISTEN in place:
     * <reconnect> when it was up before (re-read: notifications were lost). */
    void (*up)(void *arg, bool reconnect);
    /* The session was lost or an attempt failed: <reason>, one line. */
    void (*down)(void *arg, const char *reason);
    /* Another instance's (or this one's) committed change. */
    void (*changed)(void *arg, const struct adm_pg_row *row);
    /* The schema cannot be used (newer than this binary, a failed
     * migration): <reason>. The store stays down. */
    void (*fatal)(void *arg, const char *reason);
};

/* A store on <base> with settings <conf> (borrowed: must outlive it) and
 * <seed> for the reconnect jitter. Does nothing before adm_pgstore_start().
 * NULL on a libevent failure (logged). */
struct adm_pgstore *adm_pgstore_new(struct event_base *base, const struct adm_pg_conf *conf,
                                    uint64_t seed, const struct adm_pgstore_cbs *cbs,
                                    void *arg);

/* `cutoverd -t --check-store`: the setup reads the schema version and
 * rolls back; nothing is created or migrated, no up callback. */
void adm_pgstore_check_only(struct adm_pgstore *s);

/* Starts connecting (on the loop). 0 or -1. */
int adm_pgstore_start(struct adm_pgstore *s);

/* Runs the loop until the first session is up and the schema migrated
 * (0), or the first attempt failed or the schema is refused (-1 with the
 * reason in <err>, naming the store). For startup and `cutoverd -t
 * --check-store`, before anything else is on the loop. <*fatal> is set
 * when the reason is the schema (a retry cannot help). */
int adm_pgstore_wait_ready(struct adm_pgstore *s, char *err, size_t errlen, bool *fatal);

/* Up: the session is up and the schema is usable. */
bool adm_pgstore_up(const struct adm_pgstore *s);

/* The schema version found in the database at the last setup (before any
 * migration), and the one it has now. */
void adm_pgstore_versions(const struct adm_pgstore *s, int *found, int *now);

/* "store.postgres (host=... dbname=...)": how the messages name it. */
const char *adm_pgstore_name(const struct adm_pgstore *s);

void adm_pgstore_free(struct adm_pgstore *s);

/* ---- rows -------------------------------------------------------------- */

/* <ok> false: the query failed (<err> says why, the session may be gone). */
typedef void adm_pgstore_rows_fn(void *arg, bool ok, const struct adm_pg_row *rows,
                                 unsigned n, const char *err);

/* Inserts a row for each of the <n> entries <e> that the database does not
 * have yet (the first instance of a fleet seeds it from its cache or its
 * config), then reads every row of the fleet. */
int adm_pgstore_seed_and_read(struct adm_pgstore *s, const struct adm_store_entry *e,
                              unsigned n, adm_pgstore_rows_fn *cb, void *arg);

/* Writes <e> (name, weight, state, plan; its generation is ignored): the
 * row's generation becomes its old one + 1. <expect> non-NULL: only when
 * the row's generation is *<expect> (compare-and-set). The callback gets
 * the row written (n 1), or n 0 when the compare-and-set found another
 * generation (then the current row is read and passed as rows[0] with ok
 * true and err "conflict"), or ok false. */
int adm_pgstore_write(struct adm_pgstore *s, const struct adm_store_entry *e,
                      const uint64_t *expect, adm_pgstore_rows_fn *cb, void *arg);

/* Reads the payload of a notification on the fleet's channel into <row>:
 * the row the writing statement committed, as pg_notify() got it from
 * json_build_object() (service, weight_bp, state, generation, plan, by,
 * at_ms: a few hundred bytes at most, names being 63 bytes at most, far
 * under NOTIFY's 8000). 0, or -1 when it is not a valid row (not JSON, a
 * field missing or of the wrong type, a weight out of 0..10000, an unknown
 * state or plan state). */
int adm_pg_row_from_notify(const char *payload, struct adm_pg_row *row);

/* ---- audit ------------------------------------------------------------- */

/* Appends audit entry <entry> (a JSON object text, as the local log's line)
 * of service <service>, generation <gen>, with this instance's id. What
 * cannot be written now (down, an error) waits in a bounded queue, in
 * order, and is written once the session is up again. */
void adm_pgstore_audit(struct adm_pgstore *s, const char *service, uint64_t gen,
                       const char *entry);

/* Entries waiting to be written. */
unsigned adm_pgstore_audit_pending(const struct adm_pgstore *s);

typedef void adm_pgstore_json_fn(void *arg, struct json_t *entries, const char *err);

/* The fleet's last <n> audit entries, oldest first, of <service> (NULL:
 * all), each with its "instance". <cb> gets a new array, or NULL and err. */
int adm_pgstore_audit_tail(struct adm_pgstore *s, const char *service, unsigned n,
                           adm_pgstore_json_fn *cb, void *arg);

#endif
