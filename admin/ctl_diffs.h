/*
 * ctl_diffs: `cutoverctl diffs`, the differences shadow traffic kept
 * (docs/shadow.md) as the daemon's reply carries them, each request with
 * both answers and the differing fields side by side. Text from the daemon
 * is escaped (admin/ctl_proto.h) before it is printed. Part of the
 * cutoverctl binary only.
 */
#ifndef CUTOVER_ADMIN_CTL_DIFFS_H
#define CUTOVER_ADMIN_CTL_DIFFS_H

#include <jansson.h>

/* Prints the kept differences of diffs reply <reply> on stdout, oldest
 * first; "no differences kept" when there is none. */
void ctl_print_diffs(const json_t *reply);

#endif
