/*
 * proxy/gates: runs the migration gates (health/gate.h, docs/gates.md) on
 * the main loop: each gate's checks on its interval, its PostgreSQL
 * sessions (lib/pg.h, one client per database of a gate) and HTTP probes,
 * never blocking; and what a verdict does: logged and audited when it
 * changes, on_fail rollback or freeze through the control plane
 * (adm_control_auto), the plan held and raises refused through the ops
 * (adm_ops.gates). Reports them to status ("gates") and the metrics.
 *
 * Nothing of a gate's result is kept across a restart: every gate starts
 * unknown and is checked at once.
 */
#ifndef CUTOVER_PROXY_GATES_H
#define CUTOVER_PROXY_GATES_H

#include <stddef.h>

struct hl_gate_conf;
struct json_t;
struct met_writer;
struct px_daemon;
struct px_gates;

/* Starts the gates of every service of <d>'s current config (first checks
 * on the next loop turn). Never NULL. */
struct px_gates *px_gates_new(struct px_daemon *d);

/* After a reload: <old_of_new>[i] is the old index of new service i (-1:
 * added). A gate whose service and settings are unchanged keeps its
 * sessions and its verdict; every other one starts unknown. */
void px_gates_reconfigure(struct px_gates *g, const int *old_of_new, unsigned n);

/* Stops every check and closes every session. NULL is a no-op. */
void px_gates_free(struct px_gates *g);

/* adm_ops.gates: 0 every gate of service <svc> passes (or it has none), 1
 * one fails, 2 one has no result yet; <why> names it. */
int px_gates_verdict(const struct px_gates *g, unsigned svc, char *why, size_t len);

/* Adds "gates": [...] to service <svc>'s status object <obj>. */
void px_gates_status(const struct px_gates *g, unsigned svc, struct json_t *obj);

/* The statement a replication_lag gate <c> runs on its replica, into <buf>:
 * the heartbeat row's seq ($1: "service/gate") and, when bytes are checked,
 * the replica's position ($2: the subscription). Returns the number of
 * parameters it takes (1 or 2). */
int px_gates_replica_sql(const struct hl_gate_conf *c, char *buf, size_t len);

/* cutover_gate_ok{service,gate} and cutover_gate_value{service,gate}. */
void px_gates_metrics(const struct px_gates *g, struct met_writer *w);

#endif
