/*
 * fleet: internal to the control plane (see control_int.h). The glue
 * between the change engine and the fleet's PostgreSQL store
 * (admin/store_pg.h), when "store": {"postgres"} is configured: the start
 * (schema, the fleet's rows read and applied, a latch first), changes
 * written to the database in the order that keeps the fleet on the safe
 * side (a lowering applied here first and written second, a raise written
 * first with a compare-and-set on the generation and applied once
 * committed), other instances' changes applied from their notifications,
 * the re-read after a reconnect, what waits while the database is away and
 * the reconcile when it returns. The rules are in docs/DESIGN.md ("Fleet on
 * PostgreSQL") and docs/fleet.md. Calls change.c's helpers, persist.c and
 * request.c.
 */
#ifndef CUTOVER_ADMIN_FLEET_H
#define CUTOVER_ADMIN_FLEET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "admin/audit.h"
#include "admin/control_int.h"
#include "admin/state.h"

struct adm_fleet;
struct adm_pg_conf;
struct event_base;

/* adm_control_fleet_open() (control.h). */
int adm_fleet_open(struct adm_control *c, struct event_base *base,
                   const struct adm_pg_conf *conf, uint64_t seed, char *err, size_t errlen);

void adm_fleet_free(struct adm_fleet *f);

/* True when change <ch> of a service at <old> is on the safe side (lower
 * weight, or the same weight latched): applied here first, written second
 * and never refused by the database (it wins over a concurrent raise).
 * Anything else is a raise: written first. */
bool adm_fleet_is_safe(const struct adm_svc_state *old, const struct adm_change *ch);

/* A raise <ch> by <actor>: refused at once while the store is unreachable
 * or a write of the service is in flight; else written with a
 * compare-and-set on the service's generation, and applied once committed
 * (adm_change_run() with ch->committed). The reply waits (c->waiting) when
 * the caller can wait; otherwise the change goes on and the reply says it
 * was submitted. */
json_t *adm_fleet_raise(struct adm_control *c, const struct adm_change *ch,
                        const char *actor);

/* Service <svc> was lowered here (applied to the data plane): written to
 * the database now, or when it is back. The command in progress is marked
 * (c->lowered) so that its reply can wait for the commit. */
void adm_fleet_lowered(struct adm_control *c, unsigned svc);

/* How long a lowering's reply waits for its write to commit; then it
 * answers anyway that the change is applied here and queued for the store
 * (a rollback is never refused for the database's sake). */
#define ADM_FLEET_LOWER_WAIT_MS 2000u

/* The reply <r> (taken) of a command that lowered c->lowered_svc: when
 * someone can wait (c->waiter) and the write is on its way, the reply is
 * held (c->waiting set, NULL returned) until the write committed, then
 * completed with "store": "written" and the row's "generation"; when the
 * store is unreachable, or does not answer within ADM_FLEET_LOWER_WAIT_MS,
 * or a later row of the fleet replaced it, it answers with "store":
 * "queued" or "superseded" and a "store_note" saying so. Otherwise <r> is
 * returned as it is. */
json_t *adm_fleet_lowered_wait(struct adm_control *c, json_t *r);

/* Audit entry <e> also goes to the fleet's table. */
void adm_fleet_audit(struct adm_control *c, const struct adm_audit_entry *e);

/* `audit` with the fleet's store up: the fleet's entries (the reply
 * waits); NULL when it cannot (down, nobody waits): the local log answers. */
json_t *adm_fleet_audit_tail(struct adm_control *c, const char *service, unsigned n);

/* The status "store" object's fleet part, added to <o>. */
void adm_fleet_status(const struct adm_control *c, json_t *o);

/* The store's figures for the metrics (adm_control_store_status()). */
void adm_fleet_figures(const struct adm_control *c, struct adm_store_status *out);

/* What reconcile does with a service found in the database at <db> while
 * this instance holds <local>, <unsynced> when <local> was lowered here and
 * not written (pure; docs/fleet.md): */
enum adm_fleet_rc {
    ADM_FLEET_KEEP = 0,          /* the same: nothing to do */
    ADM_FLEET_ADOPT,             /* apply the database's row here */
    ADM_FLEET_WRITE,             /* write this instance's state to the database */
};
enum adm_fleet_rc adm_fleet_reconcile(const struct adm_svc_state *local, bool unsynced,
                                      const struct adm_svc_state *db);

/* What a follower does with a notification: it carries the whole row
 * (weight, state, generation, plan, who, when; well under NOTIFY's 8000
 * bytes), so a newer one is applied from the payload alone, without a read;
 * rows are whole states, not deltas, so a generation skipped (a
 * notification lost) needs nothing more. <local> is the service here,
 * <dirty> when it was lowered here and not written yet, <busy> when a write
 * of it is in flight, <gen> the notified row's generation (pure): */
enum adm_fleet_nt {
    ADM_FLEET_NT_KNOWN = 0,      /* not newer than what is applied here: nothing */
    ADM_FLEET_NT_APPLY,          /* newer: applied from the payload */
    ADM_FLEET_NT_LATER,          /* a write is in flight: kept, and applied after
                                  * its answer if it is still newer then (its
                                  * answer may come after the notification) */
    ADM_FLEET_NT_RECONCILE,      /* lowered here, not written: adm_fleet_reconcile() */
};
enum adm_fleet_nt adm_fleet_notified(const struct adm_svc_state *local, bool dirty,
                                     bool busy, uint64_t gen);

#endif
