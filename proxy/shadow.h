/*
 * shadow: shadow traffic with response diffing (docs/shadow.md). A sampled
 * share of an HTTP service's requests is copied, beside the real exchange,
 * to the side that did not serve it (through that side's pool, with the
 * copy's own deadline), and, with noise.second_server, to a second server
 * of the serving side; the client's response is captured as it passes
 * (proxy/shadow_cap.h) and never waits for a copy. When every answer is
 * in, health/diff.c compares them: the result goes to the per-side and
 * per-route-prefix diff windows, the counters (cutover_shadow_total) and,
 * for a difference, the ring of kept differences (`cutoverctl diffs`).
 *
 * Per event loop and service (struct px_shadow_svc, svc->shadow): the
 * copies in flight (max_inflight counts per loop), counters, windows,
 * learned noise and kept differences; px_shadow_fold() brings a worker's
 * into the main replica, as proxy/worker.c does for the other counters,
 * and shares the noise learned by every loop with all of them.
 */
#ifndef CUTOVER_PROXY_SHADOW_H
#define CUTOVER_PROXY_SHADOW_H

#include <stdbool.h>
#include <stdint.h>

#include "health/diff.h"

struct px_conn;
struct px_service;
struct px_srv;
struct h1_resp;
struct json_t;
struct met_writer;

/* What became of a request that shadowing considered. Must remain in this
 * order (px_shadow_result_names: the metrics' "result" label). */
enum px_shadow_result {
    PX_SR_MATCH = 0,         /* the answers agree (noise left out) */
    PX_SR_DIFF,              /* they differ */
    PX_SR_ERROR,             /* the copy got no usable answer: connect, timeout,
                              * reset, invalid, or cut at max_response_bytes */
    PX_SR_DROPPED,           /* not copied: max_inflight copies in flight */
    PX_SR_TOO_LARGE,         /* not copied or not compared: a request body over
                              * max_body_bytes (or streamed), or a client response
                              * over max_response_bytes */
    PX_SR_SKIPPED,           /* not compared: the other side had no healthy server,
                              * or the client's own exchange did not complete (or
                              * the canary shield replayed it on legacy) */
    PX_SR__COUNT
};

extern const char *const px_shadow_result_names[PX_SR__COUNT];

/* ---- the request path (proxy/http.c) ---------------------------------- */

/* The request of <c> is ready to go upstream (head rebuilt, body buffered
 * or streaming): prepares its copy when the service shadows it (sent once
 * the answer's head came: px_shadow_primary_head). */
void px_shadow_begin(struct px_conn *c);

/* The final response head <r> of <c>'s request, about to go to the client;
 * the copy is sent once the calling callback returned. */
void px_shadow_primary_head(struct px_conn *c, const struct h1_resp *r);

/* <c>'s response is complete (or, from its close, was not). */
void px_shadow_primary_end(struct px_conn *c);

/* ---- reports ---------------------------------------------------------- */

/* Adds a worker's counters, windows and kept differences of service <ws>
 * into the main replica's <ms> (and forgets them in <ws>); the noise sets
 * of both become their union. On the worker's thread, the main loop
 * waiting (px_workers_run_each). */
void px_shadow_fold(struct px_service *ms, struct px_service *ws);

/* The comparisons of <svc> since start and those that differed (the plan's
 * diff gate). */
void px_shadow_totals(const struct px_service *svc, uint64_t *compared, uint64_t *diffs);

/* Both sides' diff window of <svc> summed at <now_ms> (rollback.max_diff_rate).
 * False when <svc> does not shadow. */
bool px_shadow_window(const struct px_service *svc, uint64_t now_ms,
                      struct hl_diff_stats *out);

/* Status "shadow" of <svc> into <obj> (nothing when it does not shadow). */
void px_shadow_status(const struct px_service *svc, uint64_t now_ms, struct json_t *obj);

/* cutover_shadow_total{service,result} of every service that shadows. */
void px_shadow_metrics(struct px_srv *srv, struct met_writer *w);

/* The last <n> kept differences of <svc>, oldest first (new reference). */
struct json_t *px_shadow_diffs(const struct px_service *svc, unsigned n);

#endif
