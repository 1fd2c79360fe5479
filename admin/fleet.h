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

#include "admin/control_int.h"
#include "admin/state.h"

struct adm_fleet;
struct adm_pg_conf;
struct event_base;

/* adm_control_fleet_open() (control.h). */
int adm_fleet_open(struct adm_control *c, struct event_base *base,
                   const struct adm_pg_conf *conf, uint64_t seed, char *err, size_t errlen);

void adm_fleet_free(struct adm_fleet *f);

#endif
