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

#include <stdbool.h>

struct evbuffer;
struct px_daemon;
struct adm_metrics_cursor;

/* Start-overs of a scrape in parts (reloads between two parts) after
 * which its rest is written at once. */
#define PX_METRICS_RESTARTS 3

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

/* The next part of a scrape of daemon <arg> (the struct px_daemon) into
 * <out>, about <budget_us> microseconds of writing, with the signature of
 * the HTTP admin endpoint's adm_metrics_part_fn: <cur> zeroed at the
 * scrape's start, <out> holding only what the earlier parts wrote. Returns
 * true when <out> holds the whole text, the same as px_metrics_render()'s
 * (each line as of its part). A reload between two parts empties <out>
 * and starts over; after PX_METRICS_RESTARTS start-overs the rest is
 * written at once. */
bool px_metrics_render_part(void *arg, struct evbuffer *out, struct adm_metrics_cursor *cur,
                            unsigned budget_us);

#endif
