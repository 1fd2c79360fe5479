/*
 * status: the data plane's part of a service's status (cutoverctl status,
 * GET /status): its mode, open connections and, per side, whether it is
 * healthy, every server with its counts and active-check figures, the
 * passive window and the counters; for a TLS service its certificates
 * (subject, names, expiry; never a key) and handshake counts. The control plane adds weight, state and
 * plan itself (admin/commands.c, admin/plan_ctl.c) and reaches this through
 * the status op of proxy/ops.c. Reads the main replica: the workers'
 * figures are folded in once per status reply, before its first service
 * (the status_begin op), not per service.
 */
#ifndef CUTOVER_PROXY_STATUS_H
#define CUTOVER_PROXY_STATUS_H

struct json_t;
struct px_srv;

/* Adds "mode", "connections", "legacy", "new" and, with TLS, "tls" of
 * service <idx> of the main replica <srv> to object <obj>, every worker's
 * figures as of the last px_workers_fold() included. */
void px_status_service(struct px_srv *srv, unsigned idx, struct json_t *obj);

#endif
