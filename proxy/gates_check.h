/*
 * proxy/gates_check: `cutoverd -t --check-gates` (docs/gates.md, "Checking
 * the gates before a start"). Connects to every database of every gate of
 * a loaded config, the way the daemon's gates will (lib/pg.h, the gate's
 * timeout_ms as connect and statement timeout, the same password file), and
 * reports, one line per database and one per gate:
 *
 *   sql, compare      the query runs in a read-only transaction and returns
 *                     one number; the verdict the gate would have now;
 *   replication_lag   the source is a primary (not in recovery) holding the
 *                     heartbeat table with its columns, a unique index on
 *                     "gate" alone and the right to INSERT and UPDATE it;
 *                     the replica is a physical standby of that source (in
 *                     recovery, the same system identifier) or a logical
 *                     subscriber (another cluster, a subscription here, the
 *                     table published on the source), and the gate's own
 *                     replica statement runs there;
 *   http              not contacted (databases only).
 *
 * It changes nothing: every statement runs in a READ ONLY transaction that
 * is rolled back, and the heartbeat is not written. A verdict that would
 * fail now (a compare gate before the copy is done, a subscription
 * disabled) is reported, not an error: what is checked is that each gate
 * can work. Runs on a private event loop before the daemon starts; ends
 * within a few timeouts of the slowest gate.
 */
#ifndef CUTOVER_PROXY_GATES_CHECK_H
#define CUTOVER_PROXY_GATES_CHECK_H

#include <stdint.h>
#include <stdio.h>

struct px_conf;

/* Checks every gate of <conf> (loaded from <conf_file>, the name the lines
 * start with). What holds goes to <out>, every error to <err>, in the
 * order of the config. 0 when every database is reachable, answers and has
 * its role; -1 otherwise (also when no gate has a database). */
int px_gates_check_report(const struct px_conf *conf, const char *conf_file, uint64_t seed,
                          FILE *out, FILE *err);

#endif
