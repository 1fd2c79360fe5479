/*
 * control: the control plane of the daemon. Owns the operator-visible state
 * of every service (weight, state, generation), executes admin commands
 * (status, weight, rollback, promote, switch, audit), persists every change
 * through the state store and records it in the audit log. It never touches
 * the data plane directly: it calls the ops that proxy/ops.c provides and
 * proxy/main.c wires.
 *
 * Ordering (docs/DESIGN.md): a change that lowers the weight (rollback,
 * switch legacy, a lower weight) is applied first and persisted second; a
 * change that raises it is persisted first and applied second, so a crash
 * can never leave more traffic on new than the disk says.
 *
 * This header is the control plane's whole interface. Behind it, one file
 * per concept, each calling only those after it: admin/commands.c (the
 * commands and their levels) -> admin/plan_ctl.c (the plan glue) ->
 * admin/change.c (the change engine: persist/apply/audit ordering, the
 * latch, the automatic actions) -> admin/persist.c (the state file and the
 * audit log under faults: unsaved state, its journal and retries, the audit
 * of every generation, the startup checks) -> admin/request.c (request and
 * reply helpers); admin/control.c builds, reconfigures and frees it.
 */
#ifndef CUTOVER_ADMIN_CONTROL_H
#define CUTOVER_ADMIN_CONTROL_H

#include <stdbool.h>
#include <stdint.h>

#include "admin/state.h"
#include "admin/tokens.h"
#include "lib/log.h"
#include "health/policy.h"
#include "router/router.h"

struct json_t;

struct adm_control;

/* Creates the control plane for <n> services named <names> (copied), with
 * initial weights <initial_bp>. Restores state from <state_file> when it
 * exists (its weights and latches win over the config), then runs the
 * startup checks of admin/persist.h: stale temporary files, the state
 * directory's writability, the journal (an unsaved rollback is restored),
 * the audit log's tail and the generations it has no entry for; those warn
 * and never fail. Returns NULL with a message in <err> when the state file
 * is unreadable or corrupt: startup must stop, never silently default.
 * <audit_file> may be NULL (no audit). */
struct adm_control *adm_control_new(const char *const *names,
                                    const uint32_t *initial_bp, unsigned n,
                                    const char *state_file, const char *audit_file,
                                    const struct adm_ops *ops, void *arg,
                                    char *err, size_t errlen);

void adm_control_free(struct adm_control *c);

/* The number of services (indices 0..n-1 of the calls below). */
unsigned adm_control_count(const struct adm_control *c);

/* Current state of service <svc> (borrowed, valid until the next command). */
const struct adm_svc_state *adm_control_state(const struct adm_control *c, unsigned svc);

/* Copies service <svc>'s counters into <out>. */
void adm_control_counters(const struct adm_control *c, unsigned svc,
                          struct adm_counters *out);

/* ---- the state file and the audit log (admin/persist.c) -----------------
 *
 * A change that took effect but could not be saved (a lowering on a full or
 * read-only disk) leaves the control plane dirty: the state in effect is
 * kept in the journal beside the state file when it can be, saved again on
 * the tick (backoff ADM_RETRY_MIN_MS doubling to ADM_RETRY_MAX_MS, see
 * admin/persist.h) and by any later save, warned about every
 * ADM_UNSAVED_WARN_MS, and reported by status ("store") and the metrics.
 * Audit entries that could not be written wait and are retried the same
 * way.
 */

void adm_control_store_status(const struct adm_control *c, struct adm_store_status *out);

/* The retries, from the policy tick: <now_ms> monotonic. Saves a dirty
 * state, writes waiting audit entries and the entries that stand for
 * generations with none, each when its backoff allows; warns while dirty.
 * Called from the event loop that runs the admin socket. */
void adm_control_store_tick(struct adm_control *c, uint64_t now_ms);

/* At exit: one last try to save a dirty state and to write waiting audit
 * entries; what still fails is logged at error level, naming what a
 * restart will not find (and what the journal keeps). 0 when nothing is
 * left unsaved, -1 otherwise. */
int adm_control_flush(struct adm_control *c);

/* The running plan's step of service <svc>, 1-based; 0 when no plan runs
 * (none configured, not started, or ended). */
unsigned adm_control_plan_step(const struct adm_control *c, unsigned svc);

struct event_base;

/* The event loop the control plane runs on (the admin socket's): a long
 * reply (the status of many services) is built there in slices, between
 * other events, when its requester can wait for it (the _wait variants
 * below). Without it every reply is built at once. With it, and a state
 * file or an audit log, a thread started here writes them
 * (admin/writer.h): a lowering's save and audit entry no longer hold
 * the loop, and the command's reply still waits for them. */
void adm_control_set_loop(struct adm_control *c, struct event_base *base);

/* Executes one request object <req> on behalf of <actor> ("uid:0") and
 * returns a new reply object ({"ok":true,…} or {"ok":false,"error":…}); the
 * caller owns it. A request that is refused changes nothing. */
struct json_t *adm_control_exec(struct adm_control *c, struct json_t *req,
                                const char *actor);

/* Executes one request line (JSON text) and returns the reply as a newly
 * allocated, single-line, NUL-terminated string (caller frees). Bad JSON gets
 * an error reply. */
char *adm_control_exec_line(struct adm_control *c, const char *line, size_t len,
                            const char *actor);

/* ---- callers and levels ---------------------------------------------------
 *
 * Who asks, and what they may do. adm_control_exec() runs with level admin
 * (the unix socket: its file mode is the access control). The level a
 * request needs depends on the service's state, so it is decided here:
 * read for status and audit; operate for rollback, plan pause and abort,
 * and a weight below 100 while the service is not latched; admin for
 * everything else (promote, switch, weight 100, a weight that clears the
 * rolled_back or frozen latch, plan start and resume). A request refused
 * for its level changes nothing; it is audited (action "refused", the
 * reason naming the command and the level needed) and answered
 * {"ok":false,"error":…,"required_level":"admin"}.
 */

/* adm_control_exec() on behalf of <who>. */
struct json_t *adm_control_exec_as(struct adm_control *c, struct json_t *req,
                                   const struct adm_caller *who);

/* adm_control_exec_line() on behalf of <who>. */
char *adm_control_exec_line_as(struct adm_control *c, const char *line, size_t len,
                               const struct adm_caller *who);

/* ---- replies that wait for the fleet's store -------------------------------
 *
 * With the fleet's store (adm_control_fleet_open()), a raise is written to
 * the database before it is applied, and `audit` reads the fleet's table:
 * their replies come later. The listeners use these variants; the others
 * above answer such a request at once with the reply's refusal ("this
 * request waits for the fleet's store").
 */

struct adm_wait;

/* The reply of a waiting request, a single-line JSON text that the callee
 * owns (free()). Called exactly once, from the loop, unless cancelled. */
typedef void adm_wait_fn(void *arg, char *reply);

/* adm_control_exec_line_as(); returns NULL when the reply waits: then
 * <*wait> is set and <done>(<arg>, reply) comes later. */
char *adm_control_exec_line_wait(struct adm_control *c, const char *line, size_t len,
                                 const struct adm_caller *who, adm_wait_fn *done,
                                 void *arg, struct adm_wait **wait);

/* adm_control_exec_as() the same way; the reply object is dumped as by
 * adm_control_exec_line_as() when it comes. */
struct json_t *adm_control_exec_wait(struct adm_control *c, struct json_t *req,
                                     const struct adm_caller *who, adm_wait_fn *done,
                                     void *arg, struct adm_wait **wait);

/* The requester is gone: <done> will not be called (the change itself
 * still completes or fails as it would have). */
void adm_control_wait_cancel(struct adm_wait *w);

/* True when <cmd> names a command of the protocol. */
bool adm_control_is_command(const char *cmd);

/* Records in the audit log an event that changed nothing (the HTTP
 * endpoint's refused authentications, action "auth_refused"): service
 * <service> ("" when none applies), actor and pid of <who>, <action>,
 * <reason> (must not hold a secret). Blocking (fsync): the caller bounds the
 * rate. Returns 0, or -1 (logged) when the audit log is off or failed. */
int adm_control_audit_event(struct adm_control *c, const char *service,
                            const struct adm_caller *who, const char *action,
                            const char *reason);

/* ---- automatic decisions (the policy tick, proxy/tick.c) ----------------
 *
 * The tick evaluates the rollback rule and the new side's health every
 * 100 ms and decides with hl_auto_decide() (health/policy.h, pure); the
 * execution is a change like an operator's (same ordering, persistence,
 * audit), by actor "auto".
 */

/* Service state <st> as the automatic decision sees it: latched when
 * rolled_back or frozen, progressing when a plan is. */
struct hl_auto_svc adm_auto_svc(const struct adm_svc_state *st);

/* Executes <a> (HL_AUTO_ROLLBACK or HL_AUTO_FREEZE, asserted) on service
 * <svc> as actor "auto", with <reason> (borrowed; the breach text) and
 * <figures> (borrowed, may be NULL: the numbers behind the decision, written
 * to the audit entry as "figures"). A rollback is applied first and persisted
 * second (on the writer thread when there is one: the caller's log line that
 * says it is saved goes through adm_control_log_written()); a freeze keeps
 * the weight. Either stops the plan and latches the
 * state until an operator sets a weight (weight, promote, switch, rollback).
 * Returns 0 when the change was made (applied; a failed save is logged, the
 * change stays in effect), or -1 when <svc> is not armed (already latched,
 * or weight 0 outside a plan): nothing changes, nothing is audited, so a
 * breach that lasts is acted on exactly once. Called from the event loop
 * that runs the admin socket, never from inside an ops callback. */
int adm_control_auto(struct adm_control *c, unsigned svc, enum hl_auto_action a,
                     const char *reason, struct json_t *figures);

/* Logs <fmt>, ... at <level> for <module> once every write the control
 * plane has submitted so far (the state file, the audit log; admin/writer.h)
 * is done, at once when none is on its way: the line of an automatic action,
 * which says the state file holds it, follows its save. Formatted now.
 * Called from the event loop. */
void adm_control_log_written(struct adm_control *c, enum log_level level, const char *module,
                             const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Replaces <file> with the <len> bytes <text> (taken) on the control
 * plane's writer thread (adm_store_write(): a temporary file, fsync,
 * rename, fsync of the directory), after the writes submitted before it;
 * a failure is logged there as "<what>: <why>: <note>". A command's reply
 * waits for it (when its requester can wait). Without a writer thread it
 * is written now. Called from the event loop (proxy/srvadmin.c: the
 * servers' admin states). */
void adm_control_write_file(struct adm_control *c, const char *file, char *text, size_t len,
                            const char *what, const char *note);

/* ---- progressive plan ----------------------------------------------------
 *
 * `plan start|pause|resume|abort` ({"cmd":"plan","action":…}) and the plan's
 * steps are changes like any other (ordering, persistence, audit). start:
 * weight to step 1 (persisted first, applied second), state progressing;
 * refused without a configured plan, while a plan runs, while rolled_back or
 * frozen (an operator sets a weight first), and when the weight is above
 * step 1 (a plan never lowers the weight). pause: state paused, the bake
 * clock stops; resume: progressing again with the bake time that was left.
 * abort: the plan stops, the weight stays, state steady. A step advances,
 * by actor "auto", when it has baked bake_s seconds and the new side served
 * at least rollback.min_requests in it; entering the last step completes the
 * plan (state promoted when that step is 100 %, else steady). Any other
 * operator change (weight, promote, switch, rollback) ends a running plan as
 * aborted; adm_control_auto() ends it as breached. The status carries
 * "plan": {"state","step","steps","percent","steps_percent","bake_s",
 * "baked_s","bake_left_s","requests","min_requests"} ("state":"none" and no
 * more without a plan); the state file keeps the step and the bake done.
 */

struct hl_plan_conf;

/* admin.require_reason: every command that changes something (weight,
 * rollback, promote, switch, plan, certs reload) is refused, changing
 * nothing, unless it carries a non-empty "reason". Off by default. */
void adm_control_set_require_reason(struct adm_control *c, bool on);

/* Gives service <svc> its plan <plan> (copied; nsteps 0: none) and the
 * request floor of a step <min_requests> (rollback.min_requests). Call once
 * per service right after adm_control_new(), before any command or tick:
 * it checks the plan restored from the state file against the config, and
 * a running plan that no longer fits (steps changed, plan removed) is
 * stopped with a warning, its weight kept, state steady. Without this call a
 * service has no plan. */
void adm_control_set_plan(struct adm_control *c, unsigned svc,
                          const struct hl_plan_conf *plan, unsigned min_requests);

/* The plan's tick for service <svc>, from the policy tick, after the
 * rollback decision of the same tick (so a breach stops the plan before it
 * can advance): <now_ms> monotonic, <new_requests> the outcomes the new side
 * has served since the daemon started (monotonic). Advances the plan by at
 * most one step. Returns 1 when a step was taken (raised: persisted, then
 * applied, audited as "plan_step" by "auto"; with the writer thread its
 * save is on its way then: applied once saved, or refused and retried no
 * sooner than 5 s later, the plan waiting meanwhile), 0 when nothing
 * changed, -1 when a step was due but could not be saved (nothing changed;
 * retried no sooner than 5 s later). Called from the event loop that runs the admin
 * socket, never from inside an ops callback. */
int adm_control_plan_tick(struct adm_control *c, unsigned svc, uint64_t now_ms,
                          uint64_t new_requests);

/* The shadow comparisons of service <svc> since the daemon started
 * (monotonic), and of them those that differed: the plan's diff gate
 * (plan.max_diff_rate) reads them at its next tick. From the policy tick,
 * before adm_control_plan_tick(). */
void adm_control_plan_shadow(struct adm_control *c, unsigned svc, uint64_t compared,
                             uint64_t diffs);

/* ---- the fleet's store (admin/fleet.c, docs/fleet.md) --------------------
 *
 * With "store": {"postgres"}, the state lives in PostgreSQL and the state
 * file is this instance's cache of it.
 */

struct event_base;
struct adm_pg_conf;

/* Connects the control plane to the fleet's store <conf> (copied) on <base>, right after adm_control_new() and
 * adm_control_set_plan(), before anything serves: runs the loop until the
 * schema is created or migrated and the fleet's state is read and applied.
 * When the database cannot be reached: with start_without and a state file
 * (the cache), starts from it and warns (the store keeps trying); else -1
 * with <err> naming the store and why (wrong password, unknown database,
 * refused connection). A schema newer than this binary is always -1.
 * <seed> seeds the reconnect jitter. */
int adm_control_fleet_open(struct adm_control *c, struct event_base *base,
                           const struct adm_pg_conf *conf, uint64_t seed, char *err,
                           size_t errlen);

/* The fleet's windows and its leader (admin/fleet_leader.h), built by the
 * composition root once the store is open: the control plane takes <l>
 * (frees it with itself) for the status ("store": "leader",
 * "leader_instance", "fleet_instances"; `status` with "fleet": true, every
 * instance's row, the reply waiting for the database) and the metrics. */
struct adm_leader;
void adm_control_set_leader(struct adm_control *c, struct adm_leader *l);

/* Audits an event of the fleet's leadership that changed no weight
 * (action "leader_takeover"): service "*", actor "fleet", <reason>,
 * <figures> (borrowed, may be NULL), in the local audit log (blocking,
 * fsync: such events are rare) and in the fleet's. No-op without a fleet. */
void adm_control_fleet_event(struct adm_control *c, const char *action, const char *reason,
                             struct json_t *figures);

/* ---- reconfiguration ----------------------------------------------------
 *
 * A config reload (SIGHUP) gives the control plane the new list of
 * services: <n> names (copied) in the new config order, with their initial
 * weights. Services are matched by name: a kept one keeps its weight,
 * latch, generation, plan progress and counters (the control plane's state
 * wins over the config's initial weight) and takes its new index; a new one
 * starts from <initial_bp> or, when the state file has it, from the file;
 * a removed one is dropped (its record leaves the state file with the next
 * save). Nothing is applied, persisted or audited here. Afterwards the
 * caller re-sets every service's plan with adm_control_set_plan() (in new
 * indices) and publishes every state. Returns 0, or -1 with a message in
 * <err> (a bad name, a duplicate, an unreadable state file): nothing
 * changed. */
int adm_control_reconfigure(struct adm_control *c, const char *const *names,
                            const uint32_t *initial_bp, unsigned n, char *err,
                            size_t errlen);

#endif
