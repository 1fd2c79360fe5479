/*
 * ops: how a change reaches the data plane. The control plane's ops
 * (px_ops: apply a weight and state, tell a side's health, add the status,
 * close what a blue-green switch left) and the other changes the main loop
 * makes (a health verdict, the end of a reload, reopened logs, shutdown)
 * are applied to the main replica and, as jobs (proxy/worker.h), to every
 * worker's, before the call returns.
 */
#ifndef CUTOVER_PROXY_OPS_H
#define CUTOVER_PROXY_OPS_H

#include <stdbool.h>
#include <stdint.h>

#include "router/router.h"

struct adm_ops;
struct px_srv;

/* The ops handed to adm_control_new() with the main replica (struct
 * px_srv) as their argument. */
extern const struct adm_ops px_ops;

/* Server <server> of <side> of service <idx> has health verdict <up>: every
 * worker's replica takes it and republishes with <weight_bp>/<generation>
 * (the main replica <main> has taken it already: px_service_set_up). */
void px_ops_workers_set_up(struct px_srv *main, unsigned idx, enum rt_side side,
                           unsigned server, bool up, uint32_t weight_bp, uint64_t generation);

/* On worker replica <w>'s thread: publishes every service's routing
 * snapshot and applied state as the main replica <main> has them. */
void px_ops_publish_all(struct px_srv *w, struct px_srv *main);

/* Reopens the access log of every replica (SIGHUP; a failure is logged and
 * the old file kept). */
void px_ops_reopen_logs(struct px_srv *main);

/* Shutdown: every replica stops accepting; a worker with nothing open left
 * says it drained. The caller has set main->stopping. */
void px_ops_stop(struct px_srv *main);

#endif
