/*
 * plan_ctl: internal to the control plane (see control_int.h). The
 * progressive plan's glue: what the commands need of it (its part of the
 * status, the plan command); its public side (adm_control_set_plan,
 * adm_control_plan_tick, adm_control_plan_step) is declared in control.h.
 * Calls change.c and request.c; never a command.
 */
#ifndef CUTOVER_ADMIN_PLAN_CTL_H
#define CUTOVER_ADMIN_PLAN_CTL_H

#include <jansson.h>

#include "admin/control_int.h"

/* The "plan" object of service <s>'s status (control.h lists its members;
 * {"state":"none","step":0,"steps":0} without a plan). A new reference. */
json_t *adm_plan_status(const struct adm_svc *s);

/* What holds the running plan of service <svc>: the migration gate that
 * fails or has no result yet ("gate NAME ...", a new reference), or NULL
 * when no plan runs or nothing holds it. The status puts it in the plan
 * object as "held_by". */
json_t *adm_plan_gate_status(const struct adm_control *c, unsigned svc);

/* Executes `plan start|pause|resume|abort` request <req> on behalf of
 * <actor> (levels already checked) and returns the reply; a refusal changes
 * nothing. */
json_t *adm_plan_command(struct adm_control *c, json_t *req, const char *actor);

#endif
