/*
 * store_pg_conf: the "store": {"postgres": {...}} section of the config, the
 * fleet's PostgreSQL store (docs/fleet.md). Parsed and checked here, pure
 * apart from gethostname() for the default instance name: a conninfo in
 * libpq's key=value form (the keys lib/pg.h takes; a password in it is
 * refused: it comes from password_file or libpq's own PGPASSFILE), the
 * password file, the fleet and instance names, start_without and the
 * timeouts. proxy/conf.c calls it for the top-level "store" key; the
 * store (admin/store_pg.c) takes the result.
 *
 *   "store": {"postgres": {
 *       "conninfo": "host=/run/postgresql dbname=cutover user=cutover",
 *       "password_file": "/etc/cutover/pg.pass",   (optional)
 *       "fleet": "prod-eu",                        (default "default")
 *       "instance": "proxy-1",                     (default: the host name)
 *       "start_without": false,                    (start from the local cache
 *                                                   when the database is away)
 *       "connect_timeout_ms": 5000, "statement_timeout_ms": 2000}}
 */
#ifndef CUTOVER_ADMIN_STORE_PG_CONF_H
#define CUTOVER_ADMIN_STORE_PG_CONF_H

#include <stdbool.h>
#include <stddef.h>

struct json_t;
struct conf_err;

#define ADM_PG_FLEET_MAX    48   /* bytes of a fleet name ("cutover_" + it is a channel) */
#define ADM_PG_INSTANCE_MAX 63   /* bytes of an instance name */

struct adm_pg_conf {
    char *conninfo;              /* owned: as written (never holds a password) */
    /* its keys, parsed (owned; NULL: libpq's default) */
    char *host, *port, *dbname, *user, *sslmode, *application_name;
    unsigned conninfo_connect_timeout_s;   /* its connect_timeout; 0: none */
    char *password_file;         /* owned, resolved against the config's folder; NULL:
                                  * libpq's own ways (PGPASSFILE, ~/.pgpass) */
    char fleet[ADM_PG_FLEET_MAX + 1];       /* [A-Za-z0-9_.-]{1,48} */
    char instance[ADM_PG_INSTANCE_MAX + 1]; /* printable, no space; 1..63 bytes */
    bool start_without;          /* default false */
    unsigned connect_timeout_ms; /* one connect attempt; default 5000 (or the
                                  * conninfo's connect_timeout) */
    unsigned statement_timeout_ms;   /* every statement; default 2000 */
};

/* Parses object <j> (the value of "store") at JSON path <path> ("store");
 * <dir> resolves a relative password_file. 0 with <*out> a new conf (or
 * NULL when "store" has no "postgres"), or -1 with <err> filled (the path
 * of the offending key and why) and nothing allocated. */
int adm_pg_conf_parse(struct json_t *j, const char *path, const char *dir,
                      struct adm_pg_conf **out, struct conf_err *err);

/* Parses a libpq conninfo "key=value ..." into <c>'s key fields. 0, or -1
 * with a message in <msg> (an unknown or repeated key, a password, a bad
 * quote, a URI). Used by adm_pg_conf_parse(); exposed for the unit tests. */
int adm_pg_conninfo_parse(const char *conninfo, struct adm_pg_conf *c, char *msg,
                          size_t msglen);

void adm_pg_conf_free(struct adm_pg_conf *c);

/* A copy of <c> that the caller frees with adm_pg_conf_free(). */
struct adm_pg_conf *adm_pg_conf_dup(const struct adm_pg_conf *c);

/* True when both are NULL or every field is equal. */
bool adm_pg_conf_equal(const struct adm_pg_conf *a, const struct adm_pg_conf *b);

#endif
