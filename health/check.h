/*
 * health/check: the active health checker of one server. It runs on an
 * event loop it is given, never blocks it (non-blocking connect, one
 * deadline per check), and reports a verdict only when it *changes*,
 * through the callback it was handed (proxy/verdict.c wires it to the
 * routing snapshot, the log and the audit log). It knows nothing of
 * services, sides or the router.
 *
 *   tcp    the check passes when the connect succeeds (then it closes);
 *   http   sends "<method> <path> HTTP/1.1" with Host, Connection: close,
 *          and passes when the final status is in expect_min..expect_max and,
 *          when body_contains is set, the first 16 KiB of the body hold it.
 *          The response is read bounded (health/probe.h): 16 KiB of head,
 *          Content-Length, chunked or close-delimited bodies, and without
 *          body_contains the body is not read at all.
 *
 * Timing: a check must finish within timeout_ms (connect and response
 * together) or it fails. Checks start interval_ms apart (start to start),
 * at the fast interval (interval / 4, at least 100 ms) while the verdict is
 * changing, each delay moved by +-10 % drawn from a seeded PRNG, and the
 * first check comes at a random point of the first interval. Checks never
 * overlap: a check that outlives the (fast) interval delays the next one.
 *
 * Verdict: a server starts UP (traffic flows from the start) and goes down
 * after <fall> consecutive failed checks, up again after <rise> consecutive
 * passes (health/probe.h, struct hl_risefall).
 *
 * A check the proxy itself cannot run (no descriptor, memory or local port
 * for its socket: lib/syserr.h) says nothing about the server: it is
 * skipped, neither a pass nor a failure, so the verdict stays what it was
 * and a streak of results is neither broken nor extended; it is counted
 * (skipped), logged once per streak, and the next check comes at the
 * usual interval.
 */
#ifndef CUTOVER_HEALTH_CHECK_H
#define CUTOVER_HEALTH_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "health/conf.h"

struct event_base;
struct sockaddr;
struct hl_check;

/* Called from the event loop when the verdict of the server changes (never
 * on every check): <is_up> the new verdict, <count> the consecutive checks
 * that led to it (rise or fall), <why> the result of the last check ("ok",
 * "HTTP 503", "timeout while connecting", ...): a string valid only during
 * the call. The callback must not free the checker. */
typedef void hl_check_notify_fn(void *arg, bool is_up, unsigned count, const char *why);

/* What status shows of one checker. */
struct hl_check_stats {
    bool is_up;                  /* the verdict */
    uint64_t passed, failed;     /* checks since start */
    uint64_t skipped;            /* checks that could not run for a local reason
                                  * (lib/syserr.h): no result, the verdict kept */
    unsigned run;                /* consecutive results against the verdict */
    unsigned last_ms;            /* duration of the last check */
    char last[160];              /* result of the last check; "" before the first */
};

/* Creates the checker of the server at <sa>/<salen> (copied) with settings
 * <conf> (borrowed: must outlive the checker; type TCP or HTTP). <host> is
 * the Host header of HTTP checks (copied; usually the server's "ip:port").
 * <label> names the server in debug log lines (copied). <seed> seeds the
 * jitter PRNG, so a daemon started with the same -R seed schedules the same
 * way. <notify>(<arg>, ...) is called on every verdict change. Nothing runs
 * before hl_check_start(). Returns NULL when a libevent object cannot be
 * created (logged). */
struct hl_check *hl_check_new(struct event_base *base, const struct hl_check_conf *conf,
                              const struct sockaddr *sa, size_t salen,
                              const char *host, const char *label, uint64_t seed,
                              hl_check_notify_fn *notify, void *arg);

/* Schedules the first check (at a random point of the first interval).
 * Never calls <notify> itself. 0, or -1 when the timer cannot be added. */
int hl_check_start(struct hl_check *c);

/* Stops <c> (a check in flight is abandoned, its socket closed) and frees
 * it; <notify> is not called. NULL is a no-op. Not from <c>'s own callback. */
void hl_check_free(struct hl_check *c);

/* Sets the verdict <c> starts from (before hl_check_start; the default is
 * up): a checker restarted for a server already marked down reports it up
 * only after <rise> passes. */
void hl_check_set_verdict(struct hl_check *c, bool is_up);

/* Repoints <c>'s borrowed settings to <conf>, equal in every field to the
 * ones it was created with (a config reload that kept them: the old copy
 * is about to be freed). The running schedule and counts are kept. */
void hl_check_set_conf(struct hl_check *c, const struct hl_check_conf *conf);

struct ssl_ctx_st;

/* The server speaks TLS: every check from the next one on connects through
 * <ctx> (an OpenSSL client SSL_CTX, one reference taken; NULL: plain
 * again), sending <sni> (copied; NULL: none) and verifying the server's
 * name as the context says, or, without <sni>, its address against the
 * certificate's IP addresses when the context verifies. A tcp check passes
 * once the handshake completed; an http check sends its request after it,
 * and a close-delimited body must end with the server's close_notify. A
 * refused certificate fails the check ("tls: certificate refused: REASON").
 * 0, or -1 (out of memory; the settings stay as they were). */
int hl_check_set_tls(struct hl_check *c, struct ssl_ctx_st *ctx, const char *sni);

/* Copies <c>'s figures into <out>. */
void hl_check_get_stats(const struct hl_check *c, struct hl_check_stats *out);

#endif
