/*
 * harness/pg: a private PostgreSQL cluster for the tests of lib/pg.h. It
 * never touches the system's clusters: initdb writes a new cluster into a
 * fresh directory under /tmp, and postgres serves it on a unix socket in that
 * directory only (listen_addresses is empty), with fsync off.
 *
 * PostgreSQL refuses to run as root: when the test runs as root, initdb and
 * postgres run as the `postgres` user the Debian package creates, and the
 * directory is handed to that user. The server binaries are looked up at run
 * time: $CUTOVER_PG_BINDIR, else the newest /usr/lib/postgresql/<major>/bin.
 * When there are none, pgh_start() fails and says so: the tests need a real
 * server (make deps installs it), they do not skip.
 *
 * Authentication: the superuser "postgres" connects without a password; every
 * other role needs its password (scram-sha-256), so a test can create a role
 * and try wrong and right passwords. The superuser may also open a
 * replication connection, for a physical standby (pgh_start_standby).
 *
 * Blocking on purpose, like tests/harness/harness.h: a test is a script.
 * Every wait is bounded; every failure is printed on stderr before -1/NULL.
 * The server is SIGKILLed with its process group if the test process dies.
 */
#ifndef CUTOVER_TESTS_HARNESS_PG_H
#define CUTOVER_TESTS_HARNESS_PG_H

#include <stdbool.h>
#include <stddef.h>

struct pgh;

/* initdb into a new directory and start the server; returns once it
 * accepts connections. NULL when PostgreSQL is not installed or does not
 * come up (the reason and the server's log are printed). */
struct pgh *pgh_start(void);

/* pgh_start() with server settings <settings> ("name=value", NULL-ended,
 * at most PGH_SETTINGS_MAX; copied) after the harness's own, which they
 * override (tests/bench/fleet: more connections, durable commits). */
#define PGH_SETTINGS_MAX 16
struct pgh *pgh_start_with(const char *const *settings);

/* A physical standby of <primary> (which must run): pg_basebackup -R from
 * the primary's socket into a new directory (standby.signal, primary_conninfo
 * on that socket: streaming replication), started the same way, as the same
 * user, with the primary's settings (pgh_start_with()); returns once it accepts connections (a hot standby: read-only
 * queries, pg_wal_replay_pause()). pgh_free() it before its primary. NULL
 * when it does not come up (printed). */
struct pgh *pgh_start_standby(struct pgh *primary);

/* The directory of the server's socket (libpq's host) and its port. */
const char *pgh_host(const struct pgh *h);
const char *pgh_port(const struct pgh *h);

/* "host=... port=... dbname=postgres user=postgres" (the superuser). */
const char *pgh_conninfo(const struct pgh *h);

/* Runs <sql> as the superuser on a connection of its own. 0, or -1. */
int pgh_exec(struct pgh *h, const char *sql);

/* Runs <sql> like pgh_exec() and copies the first column of its first row
 * into <out> ("" for NULL). 0, or -1 (no row, or an error: printed). */
int pgh_query(struct pgh *h, const char *sql, char *out, size_t len);

/* Fast shutdown (SIGINT to the postmaster), waiting until it has exited. */
int pgh_stop(struct pgh *h);

/* A crash: SIGKILL to the postmaster and every backend at once (its process
 * group), so every client connection breaks. */
int pgh_kill(struct pgh *h);

/* Starts the server again on the same directory (after pgh_stop or
 * pgh_kill; crash recovery runs first) and waits until it accepts. */
int pgh_restart(struct pgh *h);

bool pgh_running(const struct pgh *h);

/* A hung server: SIGSTOP to the postmaster and every process it started
 * (backends are process groups of their own); connections stay open and nothing answers until pgh_resume()
 * (SIGCONT). 0, or -1. */
int pgh_pause(struct pgh *h);
int pgh_resume(struct pgh *h);

/* Stops the server if it runs and removes the directory. NULL is a no-op. */
void pgh_free(struct pgh *h);

#endif
