/*
 * ctl_gates: `cutoverctl gates`, the migration gates of every service as
 * the daemon's status reply carries them (services[].gates,
 * plan.held_by): a table, or with --json one object per service. Text from
 * the daemon is escaped (admin/ctl_proto.h) before it is printed.
 */
#ifndef CUTOVER_ADMIN_CTL_GATES_H
#define CUTOVER_ADMIN_CTL_GATES_H

#include <stdbool.h>

#include <jansson.h>

/* Prints the gates of status reply <reply> on stdout. */
void ctl_print_gates(const json_t *reply, bool as_json);

#endif
