/*
 * shield_conf: the "shield" section of an HTTP service (the canary shield,
 * proxy/shield.h) and the per-replica counters the shield keeps beside the
 * other runtime objects of a service (struct px_service embeds struct
 * px_shield_rt). A leaf of proxy/conf.h: it includes nothing of the proxy.
 */
#ifndef CUTOVER_PROXY_SHIELD_CONF_H
#define CUTOVER_PROXY_SHIELD_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct json_t;
struct conf_err;

/* The failures a replay answers (the "on" list; the metric's reason). */
enum px_shield_reason {
    PX_SH_CONNECT = 0,           /* connect refused or timed out, TLS handshake */
    PX_SH_RESET,                 /* closed, reset or an invalid response before a head */
    PX_SH_TIMEOUT,               /* no response head within server_response_ms */
    PX_SH_5XX,                   /* a response status listed in "statuses" */
    PX_SH__COUNT
};

extern const char *const px_shield_reason_names[PX_SH__COUNT];

#define PX_SHIELD_METHODS_MAX 16
#define PX_SHIELD_METHOD_LEN  32     /* bytes of a method name, NUL included */
#define PX_SHIELD_WINDOW_MAX  600    /* seconds of the budget's ring (rollback.window_s) */

struct px_shield_conf {
    bool enabled;                /* default true (http services) */
    unsigned nmethods;           /* default GET, HEAD, OPTIONS */
    char methods[PX_SHIELD_METHODS_MAX][PX_SHIELD_METHOD_LEN];
    bool unsafe;                 /* a listed method is not safe (RFC 9110 9.2.1):
                                  * those need an Idempotency-Key */
    unsigned on;                 /* bit per enum px_shield_reason; default all */
    uint64_t statuses[2];        /* bit (s - 500) for each listed status 500..599;
                                  * default 500, 502, 503, 504 */
    unsigned max_body_bytes;     /* default 65536, 0..16777216 */
    double budget_ratio;         /* default 0.2, 0..1 */
    unsigned budget_min_per_s;   /* default 10, 0..100000: replays always allowed
                                  * per second of the window (Linkerd's floor) */
};

/* Reads the optional "shield" object <j> (NULL: defaults) at <path> into
 * <out>, strictly; <http> false (tcp mode) refuses the section and leaves the
 * shield off. An unsafe method in "methods" is logged as a warning naming
 * <file> and the path. 0 or -1 + <err>. */
int px_shield_conf_parse(struct json_t *j, const char *path, const char *file, bool http,
                         struct px_shield_conf *out, struct conf_err *err);

bool px_shield_conf_equal(const struct px_shield_conf *a, const struct px_shield_conf *b);

/* True when <status> is listed. */
static inline bool
px_shield_status_listed(const struct px_shield_conf *c, int status)
{
    return status >= 500 && status <= 599 &&
           (c->statuses[(status - 500) / 64] >> ((status - 500) % 64) & 1u);
}

/* What the shield of one service counts on one replica (the ring freed
 * with the service, proxy/server.c). The ring (one slot per second of the
 * window) is the budget's: requests the router sent to
 * legacy and replays, per second; it is never folded. The counters are
 * folded into the main replica (px_shield_fold()) like the others. */
struct px_shield_rt {
    uint64_t sec;                /* the newest second of the ring; 0 before any */
    unsigned cur;                /* its slot */
    unsigned w;                  /* slots in use: rollback.window_s when it was set */
    uint64_t legacy, replays;    /* sums over the ring */
    uint32_t *ring_legacy;       /* owned: 2 x <w> slots, allocated by the first
                                  * advance (a service without requests to legacy
                                  * holds none); NULL before */
    uint32_t *ring_replays;      /* the second half of <ring_legacy> */
    uint64_t shielded[PX_SH__COUNT];     /* replays made, by reason */
    uint64_t exhausted;                  /* failures not replayed: over the budget */
    uint64_t drained[2];                 /* connections closed by a drain: [0] HTTP
                                          * upgrade tunnels, [1] TCP tunnels */
    uint64_t mark;                       /* main: shielded total when new's window
                                          * last started afresh */
};

#endif
