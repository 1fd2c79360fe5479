/*
 * fleet_tick: the fleet's part of the policy (docs/fleet.md, "Windows and
 * the leader"), beside proxy/tick.c's per-instance part. With
 * "store": {"postgres"} it builds the fleet session (admin/fleet_leader.h)
 * and gives it its two hooks: what this instance publishes every second
 * (every service's applied generation, weight and state and both sides'
 * window counts, from the main replica the tick folds every PX_TICK_MS),
 * and, on the leader, the evaluation of the fleet's sum (health/fleet.h)
 * by the same rules as proxy/tick.c (hl_policy_eval, hl_auto_decide),
 * acting through adm_control_auto() with the figures of the whole fleet
 * ("scope": "fleet", the leader, the instances and what each brought).
 * An instance's own breach is still its tick's at once, locally, then
 * fleet-wide through the store. Part of the composition root: like tick.c
 * it knows the data plane's windows and the control plane.
 */
#ifndef CUTOVER_PROXY_FLEET_TICK_H
#define CUTOVER_PROXY_FLEET_TICK_H

struct px_daemon;

/* Builds and starts the fleet session of <d> when its config has
 * store.postgres (else does nothing), once the control plane's store is
 * open; the control plane owns it from then on. 0, or -1 (logged). */
int px_fleet_start(struct px_daemon *d);

#endif
