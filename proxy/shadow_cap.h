/*
 * shadow_cap: what shadow traffic keeps of the response the client gets
 * (the "primary" answer), captured as it passes without delaying or
 * changing a byte of it: its status and head fields when the head is
 * parsed, its body bytes as proxy/http_msg.c moves them to the client.
 * Shared by two owners, each holding one reference: the client connection
 * (proxy/http.c, until the response is complete or the connection ends)
 * and the shadow copy of the request (proxy/shadow.c, until both answers
 * are in). It sits below both, so neither includes the other.
 */
#ifndef CUTOVER_PROXY_SHADOW_CAP_H
#define CUTOVER_PROXY_SHADOW_CAP_H

#include <stdbool.h>
#include <stddef.h>

#include "health/diff.h"

struct evbuffer;
struct h1_resp;

enum px_cap_state {
    PX_CAP_WAIT = 0,             /* the primary response is still coming */
    PX_CAP_DONE,                 /* complete: <resp> is ended */
    PX_CAP_FAILED,               /* no complete response (error, cut, client gone) */
};

struct px_shadow_cap {
    unsigned refs;
    enum px_cap_state state;
    const struct hl_diff_conf *conf;     /* borrowed: the shadow's conf generation */
    struct hl_diff_resp resp;
    void (*ended)(void *arg);            /* the shadow copy, told once the primary
                                          * ended; NULL once it no longer cares */
    void *arg;
};

/* A capture with two references (the connection's and the shadow's). */
struct px_shadow_cap *px_shadow_cap_new(const struct hl_diff_conf *conf,
                                        void (*ended)(void *arg), void *arg);

/* The final response head <r> (status and fields). */
void px_shadow_cap_head(struct px_shadow_cap *cap, const struct h1_resp *r);

/* The next <n> body bytes at the start of <src>, about to be moved to the
 * client (read in place, not consumed). */
void px_shadow_cap_body(struct px_shadow_cap *cap, struct evbuffer *src, size_t n);

/* The primary response ended, <whole> or not; tells the shadow (once). */
void px_shadow_cap_end(struct px_shadow_cap *cap, bool whole);

/* Drops one reference; the last frees it. NULL is a no-op. */
void px_shadow_cap_put(struct px_shadow_cap *cap);

#endif
