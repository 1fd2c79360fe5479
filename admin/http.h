/*
 * http: the HTTP admin endpoint (admin.listen) inside the daemon, on the
 * daemon's event loop. GET /healthz (never a token: 200 while serving, 503
 * once stopping), GET /status and GET /metrics, and POST /v1/<cmd>
 * with the admin protocol's JSON object as body and a bearer token whose
 * level admin/commands.c checks against the request; the dashboard's page
 * at GET / (admin/dash.h) and its event stream GET /v1/events
 * (admin/events.h). Everything is bounded
 * (head 8 KiB, body 64 KiB; 8 connections without a valid token, 64 while
 * new ones have their first second, 3 s per request, 5 s idle; 24 with
 * one, 10 s per request, 30 s idle keep-alive)
 * and nothing blocks but the audit appends of the control plane, whose
 * rate is bounded: admin trouble must never hold up traffic, and
 * connections without a token never crowd out an operator's (http.c).
 */
#ifndef CUTOVER_ADMIN_HTTP_H
#define CUTOVER_ADMIN_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct event_base;
struct evbuffer;
struct adm_control;
struct adm_tokens;
struct adm_http;
struct adm_conn_stats;

/* Renders the Prometheus text exposition (format 0.0.4) into <out>.
 * Called from the event loop for every GET /metrics; must not block. */
typedef void adm_metrics_fn(void *arg, struct evbuffer *out);

/* Where a scrape written in parts stands: zeroed at its start, kept by the
 * endpoint between parts, read and written by the renderer only. */
struct adm_metrics_cursor {
    bool started;                    /* false: (re)start at the next part */
    unsigned restarts;               /* starts so far */
    uint64_t next;                   /* the renderer's: where the next part starts */
    uint64_t generation;             /* the renderer's: what it was started on */
};

/* Writes the next part of the exposition into <out> (which holds what the
 * earlier parts wrote), about <budget_us> microseconds of work. Returns
 * true when <out> holds the whole text. Called from the event loop, a part
 * per loop turn, so that a scrape of many services never holds the loop
 * for long; must not block. */
typedef bool adm_metrics_part_fn(void *arg, struct evbuffer *out,
                                 struct adm_metrics_cursor *cur, unsigned budget_us);

struct adm_http_conf {
    const struct sockaddr *addr;     /* where to listen; borrowed for the call */
    socklen_t addrlen;
    const char *addr_text;           /* as configured, for messages; borrowed */
    bool read_token_required;        /* GET /status and /metrics need a token too */
    adm_metrics_fn *metrics;         /* NULL: GET /metrics is 404 "metrics not available" */
    adm_metrics_part_fn *metrics_part;   /* NULL: <metrics> writes every scrape at once */
    void *metrics_arg;               /* both's */
};

/* Starts listening on <conf->addr> on <base>, executing requests with
 * <ctl> (borrowed, must outlive the server). Takes ownership of <*tokens>
 * (NULL allowed: then every request that needs a token is refused 401),
 * even on failure: *tokens is NULL on return. Returns NULL with a message
 * in <err> when the address cannot be bound. */
struct adm_http *adm_http_new(struct event_base *base, struct adm_control *ctl,
                              struct adm_tokens **tokens,
                              const struct adm_http_conf *conf,
                              char *err, size_t errlen);

/* The connections open, evicted and timed out so far (all 0 for NULL). */
void adm_http_conn_stats(const struct adm_http *h, struct adm_conn_stats *out);

/* From now on GET /healthz answers 503 "stopping" (the daemon drains). */
void adm_http_set_stopping(struct adm_http *h);

/* Closes the listener and every connection (no reply to requests in
 * progress), and frees the tokens. NULL is a no-op. */
void adm_http_free(struct adm_http *h);

#endif
