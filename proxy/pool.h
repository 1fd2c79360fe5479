/*
 * pool: the idle keep-alive connections to the upstream servers, kept per
 * server runtime (struct px_server_rt) and reused most recent first. HTTP
 * mode takes a connection before it connects and gives it back after a
 * clean exchange; a server going down, a switch, a reload and a shutdown
 * close what is idle. How an idle connection is watched is in
 * proxy/pool.c.
 */
#ifndef CUTOVER_PROXY_POOL_H
#define CUTOVER_PROXY_POOL_H

#include <stdbool.h>

#include "router/router.h"

struct bufferevent;
struct px_server_rt;
struct px_service;

struct px_tls_up;

/* An idle keep-alive connection to <server>, with no callbacks and no
 * timeouts set (the caller owns it), or NULL. Nothing its idle life saw
 * can reach the caller (proxy/pool.c). <tls> is the side's upstream TLS in
 * the caller's config (NULL: plain): the pool holds connections of the
 * service's current one only (a reload that changes a side's TLS closes
 * its idle connections), so a caller of another gets none. With
 * <check_open> (a request that could not be resent should the connection
 * turn out closed), a connection its server already closed is skipped too,
 * at the cost of one peek. */
struct bufferevent *px_pool_get(struct px_server_rt *server, const struct px_tls_up *tls,
                                bool check_open);

/* Gives back <bev> after a clean exchange (the whole response read,
 * nothing pending either way); <tls> as above, the one <bev> was made
 * with. The pool owns it from here; it is freed at once when the pool is
 * full, the server is down or was detached by a reload, the side's TLS is
 * no longer <tls>, or the daemon stops. */
void px_pool_put(struct px_service *svc, struct px_server_rt *server,
                 struct bufferevent *bev, const struct px_tls_up *tls);

/* Closes every idle connection to <side> (blue-green switch, shutdown). */
void px_pool_close_side(struct px_service *svc, enum rt_side side);

#endif
