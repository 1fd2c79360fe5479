/*
 * store_pg_schema: the fleet store's schema in PostgreSQL and its versions.
 * One ordered list of migrations (admin/store_pg_schema.c): step N takes a
 * database at version N-1 to version N; cutoverd runs the steps a database
 * lacks at startup, all in one transaction under an advisory lock (several
 * instances starting at once migrate once), and records the version in
 * cutover_schema_version. A database at a version above the newest step was
 * migrated by a newer cutoverd: this one refuses to start, naming both
 * versions, rather than write rows it does not understand.
 *
 * To change the schema, append a step; never edit a step that was released.
 * Pure: no I/O here (admin/store_pg.c runs the statements).
 */
#ifndef CUTOVER_ADMIN_STORE_PG_SCHEMA_H
#define CUTOVER_ADMIN_STORE_PG_SCHEMA_H

#include <stddef.h>

struct adm_pg_migration {
    int version;                 /* 1, 2, ...: the version after this step */
    const char *what;            /* one line, for the log */
    const char *const *sql;      /* statements, one each, NULL-terminated */
};

/* The advisory lock (pg_advisory_xact_lock) that serialises migrations. */
#define ADM_PG_SCHEMA_LOCK 0x637574736368LL   /* "cutsch" */

/* The statement that creates the version table when missing (run before
 * the version is read), and the one that reads it (0 rows: version 0). */
extern const char adm_pg_schema_version_table[];
extern const char adm_pg_schema_version_read[];
/* Records version $1 (text). */
extern const char adm_pg_schema_version_write[];

/* The migrations, in order, and their number. */
const struct adm_pg_migration *adm_pg_migrations(size_t *n);

/* The version this binary writes: the last step's. */
int adm_pg_schema_latest(void);

/* What to do with a database at version <db_version>: 0 with <*first> the
 * index of the first step to run (== n when none), or -1 with <err> saying
 * why not ("the database's schema is version 7, newer than this cutoverd's
 * (3): ..."; a negative version). */
int adm_pg_schema_plan(long db_version, size_t *first, char *err, size_t errlen);

#endif
