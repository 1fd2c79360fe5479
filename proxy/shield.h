/*
 * shield: the canary shield and the drains of long-lived connections.
 *
 * Shield: a request the router sent to new that fails there before any
 * response byte reached the client (connect, reset, timeout, a listed 5xx)
 * is sent again to legacy, and the client gets legacy's answer; new's
 * window has counted the failure as always. Only what can be sent again
 * safely: a listed method (an unsafe one only with Idempotency-Key), a body
 * still whole in the buffer, no override to new, at most one replay, and
 * within the retry budget (replays per window against the requests the
 * router sent to legacy). The rules are in docs/DESIGN.md, "Canary shield
 * and drains".
 *
 * Drains: after a switch or a rollback, the HTTP upgrade tunnels still on
 * the side that was left are closed after a delay (TCP tunnels:
 * proxy/tcp.c), so their clients reconnect to the other side.
 *
 * Part of the HTTP layer, below proxy/http.c: it stands on
 * proxy/http_conn.h; http.c and http_msg.c call it at the points where a
 * request is routed, fails, and where a drained tunnel's time is over.
 */
#ifndef CUTOVER_PROXY_SHIELD_H
#define CUTOVER_PROXY_SHIELD_H

#include <stdbool.h>
#include <stdint.h>

#include "proxy/server.h"

struct px_conn;
struct h1_req;
struct json_t;
struct met_writer;

/* Whether the request <r> may be replayed at all, by its head: the shield
 * is on, the method is listed (an unsafe one carries Idempotency-Key) and
 * the head names its Host (a head without one was rebuilt with new's
 * address). Called once per request head. */
bool px_shield_eligible(const struct px_service_conf *sc, const struct h1_req *r);

/* The request of <c> was routed to its side: a legacy one counts in the
 * budget's ring. Called once per routed request. */
void px_shield_ring_advance(struct px_shield_rt *s, unsigned window_s, uint64_t sec);
static inline void
px_shield_routed(struct px_service *svc, enum rt_side side, uint64_t now_us)
{
    struct px_shield_rt *s = &svc->shield;
    uint64_t sec = now_us / 1000000u;

    if (side != RT_LEGACY || !svc->conf->shield.enabled)
        return;
    if (sec != s->sec)
        px_shield_ring_advance(s, svc->conf->rollback.window_s, sec);
    s->ring_legacy[s->cur]++;
    s->legacy++;
}

/* The request of <c> failed on new: <err> (a transport failure, <status>
 * 0, its outcome recorded already) or a response head of <status> (not
 * recorded yet: recorded here when replayed). When the shield takes it, new's
 * outcome is recorded, its connection closed, the request bound to a legacy
 * server and the connect started from the loop (c->head_timer, with
 * PX_CF_SHIELD_SOON: http.c's on_head_timeout() calls start_connect());
 * returns true. Else false, and the caller answers as it would have. */
bool px_shield_replay(struct px_conn *c, enum px_err err, int status);

/* Closes the HTTP upgrade tunnels of <side> of <svc> after <drain_s>
 * seconds (0: at the next loop turn), through their head timers. Returns
 * how many were scheduled. */
unsigned px_shield_drain_tunnels(struct px_service *svc, enum rt_side side, int drain_s);

/* The drain time of tunnel <c> is over: counted, logged, closed. */
void px_shield_tunnel_drained(struct px_conn *c);

/* A TCP tunnel was closed by a drain. */
static inline void
px_shield_tcp_drained(struct px_service *svc)
{
    svc->shield.drained[1]++;
}

/* Main loop: adds worker <w>'s counters to <m> and clears them. */
void px_shield_fold(struct px_shield_rt *m, struct px_shield_rt *w);

/* New's window starts afresh: the count of an automatic rollback's audit
 * entry ("shielded") starts again. */
void px_shield_fresh(struct px_service *svc);

/* Requests shielded since new's window last started afresh (main loop,
 * after a fold). */
uint64_t px_shield_since_fresh(const struct px_service *svc);

/* Status: "shield" of service <svc> into <obj>. */
void px_shield_status(const struct px_service *svc, struct json_t *obj);

/* /metrics: cutover_shielded_total, cutover_shield_budget_exhausted_total,
 * cutover_drained_connections_total. */
void px_shield_metrics(struct px_srv *srv, struct met_writer *w);

#endif
