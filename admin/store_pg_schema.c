/*
 * store_pg_schema: the migrations of the fleet store's schema, in order
 * (see store_pg_schema.h). Append a step to change the schema; never edit
 * one that was released.
 *
 * Version 1:
 *   cutover_service  one row per (fleet, service): weight, state latch,
 *                    generation, the plan's progress; changed only by a
 *                    compare-and-set on the generation (a raise) or by a
 *                    lowering that wins regardless (admin/store_pg.c)
 *   cutover_audit    append-only (a trigger refuses UPDATE, DELETE and
 *                    TRUNCATE): every audit entry of every instance
 *
 * Version 2 (the fleet's windows and its leader, admin/fleet_leader.c):
 *   cutover_instance one row per (fleet, instance), upserted every second:
 *                    address, host, version, process, the fleet session's
 *                    server process (whose advisory lock makes the leader),
 *                    what it applied of each service, last seen
 *   cutover_window   one row per (fleet, instance, service), upserted in the
 *                    same statement: the generation applied and both sides'
 *                    window counts (per class; the latency histogram as
 *                    (bin, count) pairs, bins of health/window.h)
 *   cutover_leader   one row per fleet, written by the leader with every
 *                    sum: who leads since when, the live instances it counted
 * The upserted tables leave room in their pages (fillfactor 50) so an
 * update stays on its page (HOT) and touches no index.
 */
#include "admin/store_pg_schema.h"

#include <stdio.h>

/* Created only when it is not there: CREATE TABLE IF NOT EXISTS checks the
 * schema's CREATE privilege before it looks, so a role without it (public's
 * default since PostgreSQL 15) could not start on a schema made by another. */
const char adm_pg_schema_version_table[] =
    "DO $cutover$ BEGIN"
    " IF to_regclass('cutover_schema_version') IS NULL THEN"
    " CREATE TABLE cutover_schema_version ("
    " one boolean PRIMARY KEY DEFAULT true CHECK (one),"
    " version integer NOT NULL,"
    " updated_at timestamptz NOT NULL DEFAULT now());"
    " END IF; END $cutover$";

const char adm_pg_schema_version_read[] = "SELECT version FROM cutover_schema_version";

const char adm_pg_schema_version_write[] =
    "INSERT INTO cutover_schema_version (one, version) VALUES (true, $1::integer)"
    " ON CONFLICT (one) DO UPDATE SET version = EXCLUDED.version, updated_at = now()";

static const char *const v1[] = {
    "CREATE TABLE cutover_service ("
    " fleet text NOT NULL,"
    " name text NOT NULL,"
    " weight_bp integer NOT NULL CHECK (weight_bp BETWEEN 0 AND 10000),"
    " state text NOT NULL,"
    " generation bigint NOT NULL CHECK (generation >= 0),"
    " plan jsonb,"
    " updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),"
    " updated_by text NOT NULL,"
    " PRIMARY KEY (fleet, name))",

    "CREATE TABLE cutover_audit ("
    " id bigserial PRIMARY KEY,"
    " fleet text NOT NULL,"
    " instance text NOT NULL,"
    " at timestamptz NOT NULL DEFAULT clock_timestamp(),"
    " service text NOT NULL,"
    " generation bigint NOT NULL,"
    " entry jsonb NOT NULL)",

    "CREATE INDEX cutover_audit_fleet ON cutover_audit (fleet, id)",

    "CREATE FUNCTION cutover_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS"
    " $$BEGIN RAISE EXCEPTION 'cutover_audit is append-only'; END$$",

    "CREATE TRIGGER cutover_audit_no_change BEFORE UPDATE OR DELETE ON cutover_audit"
    " FOR EACH ROW EXECUTE FUNCTION cutover_audit_append_only()",

    "CREATE TRIGGER cutover_audit_no_truncate BEFORE TRUNCATE ON cutover_audit"
    " FOR EACH STATEMENT EXECUTE FUNCTION cutover_audit_append_only()",
    NULL
};

static const char *const v2[] = {
    "CREATE TABLE cutover_instance ("
    " fleet text NOT NULL,"
    " instance text NOT NULL,"
    " address text NOT NULL,"
    " host text NOT NULL,"
    " version text NOT NULL,"
    " pid integer NOT NULL,"
    " backend_pid integer NOT NULL,"
    " applied jsonb NOT NULL,"
    " started_at timestamptz NOT NULL,"
    " seen_at timestamptz NOT NULL,"
    " PRIMARY KEY (fleet, instance)) WITH (fillfactor = 50)",

    "CREATE TABLE cutover_window ("
    " fleet text NOT NULL,"
    " instance text NOT NULL,"
    " service text NOT NULL,"
    " generation bigint NOT NULL,"
    " window_s integer NOT NULL,"
    " legacy_classes bigint[] NOT NULL,"
    " legacy_hist bigint[] NOT NULL,"
    " new_classes bigint[] NOT NULL,"
    " new_hist bigint[] NOT NULL,"
    " at timestamptz NOT NULL,"
    " PRIMARY KEY (fleet, instance, service)) WITH (fillfactor = 50)",

    "CREATE TABLE cutover_leader ("
    " fleet text PRIMARY KEY,"
    " instance text NOT NULL,"
    " backend_pid integer NOT NULL,"
    " since timestamptz NOT NULL,"
    " at timestamptz NOT NULL,"
    " instances integer NOT NULL) WITH (fillfactor = 50)",
    NULL
};

static const struct adm_pg_migration migrations[] = {
    { 1, "fleet state (cutover_service) and audit (cutover_audit)", v1 },
    { 2, "fleet windows and leader (cutover_instance, cutover_window, cutover_leader)", v2 },
    /* append the next step here: { 3, "...", v3 }, */
};

const struct adm_pg_migration *
adm_pg_migrations(size_t *n)
{
    *n = sizeof(migrations) / sizeof(migrations[0]);
    return migrations;
}

int
adm_pg_schema_latest(void)
{
    return migrations[sizeof(migrations) / sizeof(migrations[0]) - 1].version;
}

int
adm_pg_schema_plan(long db_version, size_t *first, char *err, size_t errlen)
{
    size_t n = sizeof(migrations) / sizeof(migrations[0]), i;

    if (db_version < 0) {
        snprintf(err, errlen, "the database's schema version is %ld: not a version", db_version);
        return -1;
    }
    if (db_version > adm_pg_schema_latest()) {
        snprintf(err, errlen, "the database's schema is version %ld, newer than this "
                 "cutoverd's (%d): it was migrated by a newer cutoverd; run that version "
                 "or newer", db_version, adm_pg_schema_latest());
        return -1;
    }
    for (i = 0; i < n && migrations[i].version <= db_version; i++)
        ;
    *first = i;
    return 0;
}
