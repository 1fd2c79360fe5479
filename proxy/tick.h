/*
 * tick: the control plane's policy tick. Every PX_TICK_MS it reads the
 * passive windows of both sides of every service, evaluates the rollback
 * rule (health/policy.h) and the on_new_down rule, and has the control plane
 * execute what hl_auto_decide() says (automatic rollback or freeze). It also
 * evaluates the rule as soon as the data plane records an outcome on new
 * that can make a breach (srv->suspect), at most every PX_TICK_PROMPT_MS,
 * so a breach is acted on within that, not within a tick. Part of
 * the composition root (created and freed by proxy/main.c only): like main.c
 * it knows both the data plane's windows and the control plane.
 */
#ifndef CUTOVER_PROXY_TICK_H
#define CUTOVER_PROXY_TICK_H

#define PX_TICK_MS 100               /* policy evaluation period (the default
                                      * of the config's policy_tick_ms) */
#define PX_TICK_PROMPT_MS 5          /* a prompt evaluation (an outcome that can
                                      * make a breach) at most this often */
#define PX_TICK_FROZEN_ALERT_MS 10000 /* a frozen service is reported this often */

#include <stdbool.h>

#include "health/policy.h"

struct adm_control;
struct json_t;
struct px_service;
struct px_srv;
struct px_tick;

/* The audit "figures" of an automatic decision on <svc> (a new reference):
 * "kind", new's error rate, p99, requests and errors, legacy's error rate
 * and requests, "new_healthy", "thresholds" (the rollback section). The
 * fleet's leader (proxy/fleet_tick.c) adds its own to the same. */
struct json_t *px_tick_figures(const struct px_service *svc, const char *kind,
                               const struct hl_stats *ns, const struct hl_stats *ls,
                               const struct hl_breach *br, bool new_healthy);

/* The name of breach kind <k> in the figures and the metrics ("error_rate",
 * "p99", "ratio_to_legacy"). */
const char *px_tick_breach_kind(enum hl_breach_kind k);

/* Starts the tick on the main replica <srv>'s loop, acting through control
 * plane <ctl>; both must be built and outlive the tick. Returns the tick,
 * or NULL with a logged error. */
struct px_tick *px_tick_new(struct px_srv *srv, struct adm_control *ctl);

/* A reload re-ordered the services: srv->svcs (already the new list) has
 * <n> services, and <old_of_new>[i] is the index service i had before, or
 * -1 for a new one. Kept services keep what the tick remembers of them. */
void px_tick_reconfigure(struct px_tick *t, const int *old_of_new, unsigned n);

/* Stops and frees <t>; NULL is a no-op. Call before the control plane and
 * the services are freed. */
void px_tick_free(struct px_tick *t);

#endif
