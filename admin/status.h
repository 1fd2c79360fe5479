/*
 * status: internal to the control plane (see control_int.h). The reply of
 * the `status` command: every service's entry (weight, state, generation,
 * plan, last change and the data plane's part) and the store's. A status of
 * many services is built in slices on the control plane's loop, so that it
 * never holds the loop for long (status.c says how). Calls plan_ctl.c,
 * persist.c, fleet.c and request.c.
 */
#ifndef CUTOVER_ADMIN_STATUS_H
#define CUTOVER_ADMIN_STATUS_H

#include <stdbool.h>

#include <jansson.h>

#include "admin/control_int.h"

/* Services a status builds at once; one of more is built in slices when
 * the requester can wait (c->waiter) and the loop is known (c->base). */
#define ADM_STATUS_AT_ONCE 32

/* The work of one slice, in microseconds (at least one service a slice).
 * A request crosses several of the loop's turns (its head in, the response
 * back), and each turn may hold a slice: with 1 ms slices a status of 1000
 * services under traffic delayed a request by more than 5 ms in 5 of 32
 * runs (up to +9.0), with 250 µs in none of 30 (docs/performance.md), for
 * the same time in all. */
#define ADM_STATUS_SLICE_US 250u

/* The reply of `status` for every service, or for service <svc> when
 * <one>: a new reply object, or, when it is built in slices, json_null()
 * with c->waiting set (the reply goes to the waiter's done when complete;
 * an error reply "the daemon is stopping" if the control plane is freed
 * first). */
json_t *adm_status_reply(struct adm_control *c, bool one, unsigned svc, bool at_once);

#endif
