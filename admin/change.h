/*
 * change: internal to the control plane (see control_int.h). The change
 * engine: every change of a service's weight, state or plan, by an
 * operator's command or an automatic action, goes through adm_change_run(),
 * which moves it in the order that keeps the disk on the safe side of the
 * data plane (a lowering is applied first and persisted second, a raise
 * persisted first and applied second), ends or takes the plan, audits it and
 * builds the reply.
 * The automatic actions' entry point, adm_control_auto() (control.h), is
 * here too. Calls persist.c (the state file, the journal and the audit log)
 * and request.c; never a command.
 */
#ifndef CUTOVER_ADMIN_CHANGE_H
#define CUTOVER_ADMIN_CHANGE_H

#include <jansson.h>

#include "admin/control_int.h"

/* Makes change <ch> (validated: nothing is checked here) on behalf of
 * <actor> and returns the reply ({"ok":true,"service","weight","state",
 * "generation","previous_weight"}, or {"ok":false,"error"} when a raise
 * could not be saved: then nothing changed, or when a lowering could not be
 * saved: then it stays in effect, the control plane is dirty and the state
 * is saved later, see persist.h). A change with no plan (ch->plan NULL)
 * ends a running plan as aborted. Calls the data plane's ops. */
json_t *adm_change_run(struct adm_control *c, const struct adm_change *ch,
                       const char *actor);

#endif
