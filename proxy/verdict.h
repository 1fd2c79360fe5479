/*
 * verdict: the active health checks and what their verdicts do. On the main
 * loop, every server of a service with a "health" section has a checker
 * (health/check.h); when its verdict changes, the server is marked up or
 * down on every replica and the routing republished (the weight stays what
 * the control plane says), the change is logged once and audited with
 * actor "auto". A server of a side with "tls" is checked over TLS with the
 * side's context. Workers run no checkers: verdicts reach them by job
 * (proxy/ops.c).
 */
#ifndef CUTOVER_PROXY_VERDICT_H
#define CUTOVER_PROXY_VERDICT_H

struct px_daemon;
struct px_service;
struct px_srv;

/* Starts a checker for every server of every service of the main replica
 * that has a "health" section, each from the server's current verdict.
 * 0, or -1 (logged). */
int px_verdict_start(struct px_daemon *d);

/* The same for service <svc> of the main replica, for its servers that
 * have no checker yet (a reload's added servers or services, or all after
 * a change of its "health" section). 0, or -1 (logged). */
int px_verdict_start_service(struct px_daemon *d, struct px_service *svc);

struct px_server_rt;

/* Hands the checker of <s> (if any) the upstream TLS of its side in <svc>'s
 * current config (none: plain): from its next check on. 0, or -1. */
int px_verdict_set_tls(struct px_service *svc, struct px_server_rt *s);

/* Stops and frees the checkers of <svc> (none on a worker's replica). */
void px_verdict_stop_service(struct px_service *svc);

/* Stops and frees every checker of replica <srv> (before its event loop is
 * freed). */
void px_verdict_stop(struct px_srv *srv);

#endif
