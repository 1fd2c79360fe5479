/*
 * proxy/metrics: the daemon's Prometheus scrape (GET /metrics on
 * admin.listen). Reads the counters the data plane keeps in place (struct
 * px_side_stats, struct px_server_rt) and the control plane's state and
 * counters, and writes them with lib/metrics.h under the stable names of
 * docs/DESIGN.md "Metrics". Nothing is counted here: rendering allocates
 * only the text, and costs the data plane nothing between scrapes.
 */
#ifndef CUTOVER_PROXY_METRICS_H
#define CUTOVER_PROXY_METRICS_H

struct evbuffer;
struct px_daemon;

/* The version in cutover_build_info{version}: lib/version.h. */
#include "lib/version.h"

/* Appends the whole exposition (text format 0.0.4) for every service of
 * daemon <d> to <out>. Called from the event loop between events (the
 * counters do not move under it). A writer refusal is a bug in the names
 * below: it is logged and the text written so far stays valid. */
void px_metrics_render(struct px_daemon *d, struct evbuffer *out);

/* The same with the signature of the HTTP admin endpoint's metrics hook
 * (<d> is the struct px_daemon). */
void px_metrics_render_cb(void *d, struct evbuffer *out);

#endif
