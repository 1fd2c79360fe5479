/*
 * shadow_conf: the "shadow" section of an HTTP service (shadow traffic with
 * response diffing, docs/shadow.md): which requests are copied to which
 * side, the limits of the copies, and what is compared. Parsed strictly
 * like the rest of the config (proxy/conf.c calls it); the comparison
 * settings are health/diff.h's.
 */
#ifndef CUTOVER_PROXY_SHADOW_CONF_H
#define CUTOVER_PROXY_SHADOW_CONF_H

#include <stdbool.h>
#include <stdint.h>

#include "health/diff.h"

struct json_t;
struct conf_err;

#define PX_SHADOW_METHODS_MAX 16

/* Which side a copy goes to. */
enum px_shadow_to {
    PX_SHADOW_TO_OTHER = 0,      /* the side that did not serve the request */
    PX_SHADOW_TO_NEW,            /* only requests legacy served, copied to new */
    PX_SHADOW_TO_LEGACY,         /* only requests new served, copied to legacy */
};

struct px_shadow_conf {
    uint32_t percent_bp;         /* share of requests copied, 0..10000 (default 100 %) */
    enum px_shadow_to to;
    unsigned nmethods;
    char methods[PX_SHADOW_METHODS_MAX][16];   /* default GET, HEAD */
    char unsafe[64];             /* the listed methods that are not safe (RFC 9110
                                  * 9.2.1), "" none: a warning at load */
    unsigned max_inflight;       /* copies in flight per event loop, default 64 */
    uint64_t max_body_bytes;     /* request bodies up to it are copied, default 1 MiB;
                                  * only bodies buffered whole (limits.buffer_body_bytes) */
    uint64_t max_response_bytes; /* read of a shadow response and compared of either,
                                  * default 1 MiB */
    unsigned timeout_ms;         /* a copy's whole exchange, default 2000 */
    struct hl_diff_conf compare;
    bool second_server;          /* noise.second_server */
    unsigned keep_diffs;         /* differences kept to show, default 100, 0..1000 */
};

/* Parses "shadow" (<j> may be NULL: no shadow, *out stays NULL) at <path>
 * into a new *<out>. 0, or -1 + <err>. */
int px_shadow_conf_parse(struct json_t *j, const char *path, struct px_shadow_conf **out,
                         struct conf_err *err);

void px_shadow_conf_free(struct px_shadow_conf *c);

/* Same settings (NULL: none). */
bool px_shadow_conf_equal(const struct px_shadow_conf *a, const struct px_shadow_conf *b);

#endif
