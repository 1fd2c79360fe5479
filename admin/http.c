/*
 * http: see http.h. One listener on the daemon's event loop; each
 * connection parses its requests with admin/http_req.c (lib/http1.c plus
 * the endpoint's own limits) and answers them in order, one at a time.
 *
 * Key decisions:
 * - The request head is re-parsed from the input until the whole request
 *   (head and Content-Length body, at most 72 KiB) is there, instead of
 *   keeping pointers into an evbuffer that may move: parsing 8 KiB is
 *   cheaper than the bookkeeping, and the request is then handled from one
 *   contiguous block.
 * - A missing or unknown token is answered 401 only after ADM_HTTP_AUTH_DELAY_MS,
 *   by a timer, never by sleeping the loop; the connection reads nothing
 *   meanwhile and is closed after the answer. With at most ADM_HTTP_MAX_CONNS
 *   connections, guessing is slow. Those refusals are audited (the audit
 *   append fsyncs), at most ADM_HTTP_AUTH_AUDITS_PER_S per second; the rest
 *   are counted and the count rides in the next entry.
 * - The connection's life is admin/conn.c's, shared with the admin socket:
 *   its one timer serves the request deadline (from the accept or a
 *   request's first byte), the keep-alive idle limit, the 401 delay (a
 *   hold) and the flush limit of a closing connection (ADM_HTTP_FLUSH_MS,
 *   also the limit for replies the peer does not read), so nothing can
 *   hold a connection open for ever.
 * - Capacity is kept for the operator: a connection that has not presented
 *   a valid token yet is in a budget of its own, with short limits
 *   (ADM_HTTP_UNAUTH_REQ_MS per request, ADM_HTTP_UNAUTH_IDLE_MS idle):
 *   over ADM_HTTP_MAX_UNAUTH a new one evicts one that sent no complete
 *   request in its first ADM_HTTP_GRACE_MS, over ADM_HTTP_HARD_UNAUTH
 *   (never exceeded) one in the order of admin/conn.h (the peer key is the
 *   address: a flooding address evicts its own connections first). Once it
 *   has presented a valid token it moves to the ADM_HTTP_MAX_AUTH places of
 *   authenticated connections (the least recently used makes room), which
 *   unauthenticated ones can never take, with ADM_HTTP_REQ_MS and
 *   ADM_HTTP_IDLE_MS. A flood of slow connections without a token
 *   therefore only ever evicts itself, and an operator's request, sent
 *   with its connection, is handled within its grace (admin/conn.c).
 *
 * Workload: a few scrapes a second and rare operator commands; under
 * attack, any number of connections that send nothing useful.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <jansson.h>

#include "admin/conn.h"
#include "admin/control.h"
#include "admin/dash.h"
#include "admin/events.h"
#include "admin/http.h"
#include "admin/http_req.h"
#include "lib/log.h"
#include "lib/text.h"
#include "admin/tokens.h"
#include "lib/xmalloc.h"

#define ADM_HTTP_MAX_AUTH         24       /* connections that presented a valid token */
#define ADM_HTTP_MAX_UNAUTH       8        /* connections that did not (yet) ... */
#define ADM_HTTP_HARD_UNAUTH      64       /* ... and while new ones are in their grace */
#define ADM_HTTP_GRACE_MS         1000     /* a new connection's time to send a request */
#define ADM_HTTP_REQ_MS           10000    /* a request's first byte to its last */
#define ADM_HTTP_IDLE_MS          30000    /* keep-alive wait for the next request */
#define ADM_HTTP_WAIT_MS          30000u   /* a reply waiting for the fleet's store */
#define ADM_HTTP_UNAUTH_REQ_MS    3000     /* the same without a valid token yet */
#define ADM_HTTP_UNAUTH_IDLE_MS   5000
#define ADM_HTTP_FLUSH_MS         10000    /* output not read, or a closing
                                            * connection's output to drain */
#define ADM_HTTP_AUTH_DELAY_MS    200      /* before a 401 goes out */
#define ADM_HTTP_AUTH_AUDITS_PER_S 10      /* auth_refused entries per second */
#define ADM_HTTP_REQS_PER_CB      8        /* pipelined requests per callback */
#define ADM_HTTP_OUT_HIGH         (256u * 1024u)  /* queued reply bytes that pause reading */
#define ADM_HTTP_JSON_DEPTH       8        /* nesting of a request body */
#define ADM_HTTP_REPLY_FLAGS      (JSON_COMPACT | JSON_REAL_PRECISION(15))
#define ADM_HTTP_METRICS_SLICE_US 1000u    /* the work of one part of a scrape */

struct hconn;

/* GET /metrics written in parts, one per loop turn (adm_metrics_part_fn). */
struct scrape {
    struct hconn *c;                   /* borrowed: whose request it is */
    struct evbuffer *body;             /* owned: the text so far */
    struct event *ev;                  /* owned: the next part, at the loop's next turn */
    struct adm_metrics_cursor cur;
    bool keep_alive;                   /* the request's */
};

/* A connection: the generic part first (admin/conn.c frees it as one). */
struct hconn {
    struct adm_conn conn;              /* conn.peer is the numeric peer address */
    bool sent_continue;                /* "100 Continue" sent for the current request */
    bool is_stream;                    /* GET /v1/events: subscribed to the hub */
    bool wait_keep_alive;              /* the waiting request's keep-alive */
    struct adm_wait *wait;             /* a reply to come: from the fleet's store, or a
                                        * status built in slices */
    struct scrape *scrape;             /* owned: GET /metrics being written in parts */
    char actor[INET6_ADDRSTRLEN + 8];  /* "http:<peer>" */
};

_Static_assert(offsetof(struct hconn, conn) == 0, "adm_conn must come first");

struct adm_http {
    struct adm_control *ctl;           /* borrowed */
    struct adm_tokens *tokens;         /* owned, may be NULL */
    struct adm_listener lis;           /* the listener and its connections */
    struct adm_events *events;         /* owned: the dashboard's streams */
    bool read_token_required;
    adm_metrics_fn *metrics;           /* may be NULL */
    adm_metrics_part_fn *metrics_part; /* may be NULL: <metrics> at once */
    void *metrics_arg;                 /* borrowed */
    time_t audit_sec;                  /* second of the auth_refused entries counted */
    unsigned audit_count;              /* entries written in <audit_sec> */
    unsigned long audit_skipped;       /* refusals not audited since the last entry */
    bool stopping;                     /* GET /healthz: 503 */
};

static struct adm_http *
http_of(const struct hconn *c)
{
    return c->conn.lis->owner;
}

/* Queues a response with <body> (moved out of <body>, which may be NULL
 * for none). <extra> holds complete header lines or is "". With <close>
 * the connection closes once it is sent. */
static void
respond(struct hconn *c, int status, const char *ctype, struct evbuffer *body,
        const char *extra, bool keep_alive, bool close)
{
    struct evbuffer *out = bufferevent_get_output(c->conn.bev);
    size_t blen = body != NULL ? evbuffer_get_length(body) : 0;
    int rc;

    rc = evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n"
                             "Content-Length: %zu\r\nCache-Control: no-store\r\n%s%s\r\n",
                             status, text_http_status(status), ctype, blen, extra,
                             close || !keep_alive ? "Connection: close\r\n" : "");
    if (rc < 0 || (body != NULL && evbuffer_add_buffer(out, body) != 0)) {
        log_at(LL_WARN, "admin", 0, "http %s: cannot queue a reply: closing", c->conn.peer);
        close = true;
    }
    if (close || !keep_alive)
        adm_conn_close(&c->conn);
}

/* Queues {"ok":false,"error":<msg>} with <status>. */
static void
respond_error(struct hconn *c, int status, const char *msg, const char *extra,
              bool keep_alive, bool close)
{
    struct evbuffer *b = evbuffer_new();
    json_t *o = json_pack("{s:b, s:s}", "ok", 0, "error", msg);
    char *text = o != NULL ? json_dumps(o, ADM_HTTP_REPLY_FLAGS) : NULL;

    json_decref(o);
    if (b != NULL) {
        if (text != NULL)
            evbuffer_add_printf(b, "%s\n", text);
        else
            evbuffer_add_printf(b, "{\"ok\":false,\"error\":\"internal error\"}\n");
    }
    free(text);
    respond(c, status, "application/json", b, extra, keep_alive, close);
    if (b != NULL)
        evbuffer_free(b);
}

/* Queues the JSON reply <reply> (stolen) with <status>. */
static void
respond_json(struct hconn *c, int status, json_t *reply, bool keep_alive)
{
    char *text = reply != NULL ? json_dumps(reply, ADM_HTTP_REPLY_FLAGS) : NULL;
    struct evbuffer *b;

    json_decref(reply);
    if (text == NULL) {
        respond_error(c, 500, "internal error building the reply", "", keep_alive, true);
        return;
    }
    b = evbuffer_new();
    if (b != NULL)
        evbuffer_add_printf(b, "%s\n", text);
    free(text);
    respond(c, status, "application/json", b, "", keep_alive, b == NULL);
    if (b != NULL)
        evbuffer_free(b);
}

/* The HTTP status of a command's reply <r>. */
static int
reply_status(json_t *r)
{
    if (json_is_true(json_object_get(r, "ok")))
        return 200;
    if (json_object_get(r, "required_level") != NULL)
        return 403;
    return 409;
}

/* A reply that waited (<text>, freed here): for the fleet's store, or a
 * status built in slices. A success is sent as it is (a status of many
 * services is large: parsing and dumping it again would hold the loop);
 * anything else is read for its HTTP status. */
static void
http_waited(void *arg, char *text)
{
    struct hconn *c = arg;
    static const char ok[] = "{\"ok\":true";
    struct evbuffer *b;
    json_t *r;

    c->wait = NULL;
    if (text != NULL && strncmp(text, ok, sizeof(ok) - 1) == 0
        && (b = evbuffer_new()) != NULL) {
        if (evbuffer_add(b, text, strlen(text)) == 0 && evbuffer_add(b, "\n", 1) == 0) {
            free(text);
            respond(c, 200, "application/json", b, "", c->wait_keep_alive, false);
            evbuffer_free(b);
            adm_conn_done(&c->conn);
            return;
        }
        evbuffer_free(b);
    }
    r = text != NULL ? json_loads(text, 0, NULL) : NULL;
    free(text);
    respond_json(c, r != NULL ? reply_status(r) : 500, r, c->wait_keep_alive);
    adm_conn_done(&c->conn);
}

static void
scrape_free(struct scrape *s)
{
    if (s == NULL)
        return;
    if (s->ev != NULL)
        event_free(s->ev);
    if (s->body != NULL)
        evbuffer_free(s->body);
    free(s);
}

/* ops->gone: freed while a reply waits for the store, a status or a scrape. */
static void
http_gone(struct adm_conn *conn)
{
    struct hconn *c = (struct hconn *)conn;

    adm_control_wait_cancel(c->wait);
    c->wait = NULL;
    scrape_free(c->scrape);
    c->scrape = NULL;
}

#define METRICS_CTYPE "text/plain; version=0.0.4; charset=utf-8"

/* The next part of <arg>'s scrape; the response once it is complete. */
static void
on_scrape_part(evutil_socket_t fd, short what, void *arg)
{
    struct scrape *s = arg;
    struct hconn *c = s->c;
    struct adm_http *h = http_of(c);
    struct timeval now = { 0, 0 };

    (void)fd;
    (void)what;
    if (!h->metrics_part(h->metrics_arg, s->body, &s->cur, ADM_HTTP_METRICS_SLICE_US)) {
        if (event_add(s->ev, &now) == 0)
            return;                    /* the loop's next turn: its events first */
        while (!h->metrics_part(h->metrics_arg, s->body, &s->cur, ADM_HTTP_METRICS_SLICE_US))
            ;                          /* no event: the rest at once */
    }
    c->scrape = NULL;
    respond(c, 200, METRICS_CTYPE, s->body, "", s->keep_alive, false);
    scrape_free(s);
    adm_conn_done(&c->conn);
}

/* GET /metrics, in parts: the first now, and when it is the whole text
 * (few services) the response at once; else the connection waits for the
 * parts to come, one per loop turn. */
static void
scrape_start(struct hconn *c, bool keep_alive)
{
    struct adm_http *h = http_of(c);
    struct timeval now = { 0, 0 };
    struct scrape *s = xcalloc(1, sizeof(*s));

    s->c = c;
    s->keep_alive = keep_alive;
    if ((s->body = evbuffer_new()) == NULL) {
        scrape_free(s);
        respond_error(c, 500, "out of memory", "", keep_alive, true);
        return;
    }
    if (!h->metrics_part(h->metrics_arg, s->body, &s->cur, ADM_HTTP_METRICS_SLICE_US)) {
        s->ev = event_new(c->conn.lis->base, -1, 0, on_scrape_part, s);
        if (s->ev != NULL && event_add(s->ev, &now) == 0) {
            c->scrape = s;
            adm_conn_wait(&c->conn, ADM_HTTP_WAIT_MS);
            return;
        }
        while (!h->metrics_part(h->metrics_arg, s->body, &s->cur, ADM_HTTP_METRICS_SLICE_US))
            ;                          /* no event: the rest at once */
    }
    respond(c, 200, METRICS_CTYPE, s->body, "", keep_alive, false);
    scrape_free(s);
}

/* ---- authentication ---------------------------------------------------- */

/* Audits an authentication refusal of <c>, <why> (no secret in it), at most
 * ADM_HTTP_AUTH_AUDITS_PER_S per second. */
static void
audit_auth_refused(struct hconn *c, const struct adm_req *req, const char *why)
{
    struct adm_http *h = http_of(c);
    struct adm_caller who = { .actor = c->actor, .pid = -1, .level = ADM_LEVEL_READ };
    struct timespec ts;
    char reason[384];

    clock_gettime(CLOCK_MONOTONIC, &ts);
    if (ts.tv_sec != h->audit_sec) {
        h->audit_sec = ts.tv_sec;
        h->audit_count = 0;
    }
    if (h->audit_count >= ADM_HTTP_AUTH_AUDITS_PER_S) {
        h->audit_skipped++;
        return;
    }
    h->audit_count++;
    /* the method and path are tokens and visible characters (the parser
     * checked), never the Authorization value */
    snprintf(reason, sizeof(reason), "%.*s %.*s: %s", (int)req->h1.method.len,
             req->h1.method.p, (int)(req->path.len > 128 ? 128 : req->path.len),
             req->path.p, why);
    if (h->audit_skipped > 0) {
        size_t k = strlen(reason);

        snprintf(reason + k, sizeof(reason) - k, " (and %lu earlier refusal%s not "
                 "audited: over %d a second)", h->audit_skipped,
                 h->audit_skipped == 1 ? "" : "s", ADM_HTTP_AUTH_AUDITS_PER_S);
        h->audit_skipped = 0;
    }
    log_at(LL_WARN, "admin", 0, "http %s: 401: %s", c->conn.peer, reason);
    adm_control_audit_event(h->ctl, "", &who, "auth_refused", reason);
}

/* Looks up the bearer token of <req>. Returns the token's name (borrowed)
 * with its level, or NULL with <*why> saying what was wrong. */
static const char *
authenticate(struct hconn *c, const struct adm_req *req, enum adm_level *level,
             const char **why)
{
    struct h1_iov tok;
    const char *name;

    if (adm_req_bearer(req, &tok, why) != 0)
        return NULL;
    name = adm_tokens_check(http_of(c)->tokens, tok.p, tok.len, level);
    if (name == NULL)
        *why = http_of(c)->tokens != NULL ? "unknown token" : "no token file is configured";
    return name;
}

/* Refuses <c>'s request 401 after the delay: audits now, answers from the
 * timer, then closes. */
static void
refuse_auth(struct hconn *c, const struct adm_req *req, const char *why)
{
    audit_auth_refused(c, req, why);
    adm_conn_hold(&c->conn, ADM_HTTP_AUTH_DELAY_MS);
}

/* ---- requests ---------------------------------------------------------- */

/* Fills <who> from the request's bearer token (actor "token:NAME" written
 * into <actor>, <alen> bytes, and its level). Returns false when the token
 * is missing or unknown: the refusal is then under way (audited, answered
 * 401 after the delay) and the caller must stop. */
static bool
token_caller(struct hconn *c, const struct adm_req *req, struct adm_caller *who,
             char *actor, size_t alen)
{
    enum adm_level level = ADM_LEVEL_READ;
    const char *name, *why = NULL;

    if ((name = authenticate(c, req, &level, &why)) == NULL) {
        refuse_auth(c, req, why);
        return false;
    }
    adm_conn_trust(&c->conn);
    snprintf(actor, alen, "token:%s", name);
    who->actor = actor;
    who->level = level;
    return true;
}

static bool
slice_eq(const struct h1_iov *s, const char *lit)
{
    return s->len == strlen(lit) && memcmp(s->p, lit, s->len) == 0;
}

static void
handle_get(struct hconn *c, const struct adm_req *req, bool is_metrics)
{
    struct adm_http *h = http_of(c);
    struct adm_caller who = { .actor = c->actor, .pid = -1, .level = ADM_LEVEL_READ };
    char actor[ADM_TOKEN_NAME_MAX + 8];
    struct evbuffer *b;
    json_t *q, *r;

    if (!slice_eq(&req->h1.method, "GET")) {
        respond_error(c, 405, "method not allowed (GET only)", "Allow: GET\r\n",
                      req->h1.keep_alive, true);
        return;
    }
    if (h->read_token_required) {
        if (!token_caller(c, req, &who, actor, sizeof(actor)))
            return;
    } else if (req->authorization.p != NULL) {
        /* not needed, but a valid token still earns an authenticated place
         * (a scraper that must see through a flood sends one); a wrong one
         * is ignored here as before */
        enum adm_level level;
        const char *why;

        if (authenticate(c, req, &level, &why) != NULL)
            adm_conn_trust(&c->conn);
    }
    if (is_metrics && h->metrics_part != NULL) {
        scrape_start(c, req->h1.keep_alive);
        return;
    }
    if (is_metrics) {
        if (h->metrics == NULL) {
            respond_error(c, 404, "metrics not available", "", req->h1.keep_alive, false);
            return;
        }
        if ((b = evbuffer_new()) == NULL) {
            respond_error(c, 500, "out of memory", "", req->h1.keep_alive, true);
            return;
        }
        h->metrics(h->metrics_arg, b);
        respond(c, 200, METRICS_CTYPE, b, "",
                req->h1.keep_alive, false);
        evbuffer_free(b);
        return;
    }
    q = json_pack("{s:s}", "cmd", "status");
    r = q != NULL ? adm_control_exec_wait(h->ctl, q, &who, http_waited, c, &c->wait) : NULL;
    json_decref(q);
    if (r == NULL && c->wait != NULL) {
        /* a status of many services, built in slices (admin/status.c) */
        c->wait_keep_alive = req->h1.keep_alive;
        adm_conn_wait(&c->conn, ADM_HTTP_WAIT_MS);
        return;
    }
    respond_json(c, json_is_true(json_object_get(r, "ok")) ? 200 : 409, r,
                 req->h1.keep_alive);
}

/* GET /, /dash.js, /dash.css: the dashboard's files, open like the page
 * of any admin UI (they hold no data; the figures need a token). */
static void
handle_asset(struct hconn *c, const struct adm_req *req, const struct adm_dash_asset *a)
{
    struct evbuffer *b;

    if (!slice_eq(&req->h1.method, "GET")) {
        respond_error(c, 405, "method not allowed (GET only)", "Allow: GET\r\n",
                      req->h1.keep_alive, true);
        return;
    }
    if ((b = evbuffer_new()) == NULL || evbuffer_add_reference(b, a->body, a->len, NULL,
                                                               NULL) != 0) {
        if (b != NULL)
            evbuffer_free(b);
        respond_error(c, 500, "out of memory", "", req->h1.keep_alive, true);
        return;
    }
    respond(c, 200, a->ctype, b, ADM_DASH_HEADERS, req->h1.keep_alive, false);
    evbuffer_free(b);
}

/* GET /v1/events: a token of any level, then the stream (admin/events.h). */
static void
handle_events(struct hconn *c, const struct adm_req *req)
{
    struct adm_http *h = http_of(c);
    struct adm_caller who = { .pid = -1 };
    char actor[ADM_TOKEN_NAME_MAX + 8], msg[128];

    if (!slice_eq(&req->h1.method, "GET")) {
        respond_error(c, 405, "method not allowed (GET only)", "Allow: GET\r\n",
                      req->h1.keep_alive, true);
        return;
    }
    if (!token_caller(c, req, &who, actor, sizeof(actor)))
        return;
    if (!adm_events_has_room(h->events)) {
        snprintf(msg, sizeof(msg), "too many event streams (%d open): try again later",
                 ADM_EVENTS_MAX);
        respond_error(c, 503, msg, "Retry-After: 5\r\n", req->h1.keep_alive, true);
        return;
    }
    evbuffer_add_printf(bufferevent_get_output(c->conn.bev),
                        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
                        "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
                        "Connection: close\r\n\r\n");
    c->is_stream = true;
    adm_conn_stream(&c->conn);
    adm_events_add(h->events, &c->conn);
    log_at(LL_DEBUG, "admin", 0, "http %s: event stream for %s", c->conn.peer, actor);
}

/* POST /v1/<cmd>: <cmd> is the path's last segment. */
static void
handle_post(struct hconn *c, const struct adm_req *req, const char *cmd, size_t cmdlen,
            const char *body, size_t blen)
{
    struct adm_http *h = http_of(c);
    struct adm_caller who = { .pid = -1 };
    char actor[ADM_TOKEN_NAME_MAX + 8], cmdbuf[32], msg[256];
    json_error_t je;
    json_t *q, *v, *r;
    size_t i;

    if (!slice_eq(&req->h1.method, "POST")) {
        respond_error(c, 405, "method not allowed (POST only)", "Allow: POST\r\n",
                      req->h1.keep_alive, true);
        return;
    }
    if (!token_caller(c, req, &who, actor, sizeof(actor)))
        return;

    for (i = 0; i < cmdlen && cmdlen < sizeof(cmdbuf); i++) {
        if ((cmd[i] < 'a' || cmd[i] > 'z') && cmd[i] != '_')
            break;
    }
    if (cmdlen == 0 || cmdlen >= sizeof(cmdbuf) || i < cmdlen) {
        respond_error(c, 400, "unknown command in the path (POST /v1/<command>)", "",
                      req->h1.keep_alive, false);
        return;
    }
    memcpy(cmdbuf, cmd, cmdlen);
    cmdbuf[cmdlen] = '\0';
    if (!adm_control_is_command(cmdbuf)) {
        snprintf(msg, sizeof(msg), "unknown command \"%s\" (one of: status, weight, "
                 "rollback, promote, switch, plan, audit, certs)", cmdbuf);
        respond_error(c, 400, msg, "", req->h1.keep_alive, false);
        return;
    }
    if (!adm_json_depth_ok(body, blen, ADM_HTTP_JSON_DEPTH)) {
        snprintf(msg, sizeof(msg), "bad JSON: nested deeper than %d levels",
                 ADM_HTTP_JSON_DEPTH);
        respond_error(c, 400, msg, "", req->h1.keep_alive, false);
        return;
    }
    if (blen == 0) {
        q = json_object();
    } else {
        q = json_loadb(body, blen, JSON_REJECT_DUPLICATES, &je);
        if (q == NULL) {
            snprintf(msg, sizeof(msg), "bad JSON: %s at line %d column %d", je.text,
                     je.line, je.column);
            respond_error(c, 400, msg, "", req->h1.keep_alive, false);
            return;
        }
    }
    if (!json_is_object(q)) {
        json_decref(q);
        respond_error(c, 400, "the body must be a JSON object", "", req->h1.keep_alive,
                      false);
        return;
    }
    v = json_object_get(q, "cmd");
    if (v != NULL && (!json_is_string(v) || strcmp(json_string_value(v), cmdbuf) != 0)) {
        json_decref(q);
        snprintf(msg, sizeof(msg), "\"cmd\" in the body differs from the path's \"%s\"",
                 cmdbuf);
        respond_error(c, 400, msg, "", req->h1.keep_alive, false);
        return;
    }
    if (v == NULL && json_object_set_new(q, "cmd", json_string(cmdbuf)) != 0) {
        json_decref(q);
        respond_error(c, 500, "internal error", "", req->h1.keep_alive, true);
        return;
    }
    r = adm_control_exec_wait(h->ctl, q, &who, http_waited, c, &c->wait);
    json_decref(q);
    if (r == NULL && c->wait != NULL) {
        /* A change the fleet's store must commit first: answered when it has
         * (or refused), as the admin socket does. */
        c->wait_keep_alive = req->h1.keep_alive;
        adm_conn_wait(&c->conn, ADM_HTTP_WAIT_MS);
        return;
    }
    respond_json(c, reply_status(r), r, req->h1.keep_alive);
}

void
adm_http_set_stopping(struct adm_http *h)
{
    if (h != NULL)
        h->stopping = true;
}

/* GET /healthz, for a load balancer in front of several daemons: never a
 * token (it tells nothing but whether to send traffic here). */
static void
handle_healthz(struct hconn *c, const struct adm_req *req)
{
    bool up = !http_of(c)->stopping;

    if (!slice_eq(&req->h1.method, "GET")) {
        respond_error(c, 405, "method not allowed (GET only)", "Allow: GET\r\n",
                      req->h1.keep_alive, true);
        return;
    }
    respond_json(c, up ? 200 : 503,
                 json_pack("{s:b, s:s}", "ok", up, "status", up ? "serving" : "stopping"),
                 req->h1.keep_alive);
}

/* Handles one complete request: <req> parsed from <buf>, its body after the head. */
static void
handle(struct hconn *c, const struct adm_req *req, const char *buf)
{
    const char *body = buf + req->h1.head_len;
    size_t blen = (size_t)req->h1.content_length;
    const struct adm_dash_asset *asset;

    log_at(LL_DEBUG, "admin", 0, "http %s: %.*s %.*s", c->conn.peer,
           (int)req->h1.method.len, req->h1.method.p,
           (int)(req->path.len > 256 ? 256 : req->path.len), req->path.p);
    if ((asset = adm_dash_find(req->path.p, req->path.len)) != NULL) {
        handle_asset(c, req, asset);
    } else if (slice_eq(&req->path, "/v1/events")) {
        handle_events(c, req);
    } else if (slice_eq(&req->path, "/healthz")) {
        handle_healthz(c, req);
    } else if (slice_eq(&req->path, "/status")) {
        handle_get(c, req, false);
    } else if (slice_eq(&req->path, "/metrics")) {
        handle_get(c, req, true);
    } else if (req->path.len > 4 && memcmp(req->path.p, "/v1/", 4) == 0) {
        handle_post(c, req, req->path.p + 4, req->path.len - 4, body, blen);
    } else {
        respond_error(c, 404, "not found (GET /, GET /status, GET /metrics, GET /v1/events, "
                      "POST /v1/<command>)",
                      "", req->h1.keep_alive, true);
    }
}

/* ops->step: handles the request at the front of the input once the whole of
 * it (head and body) is there. */
static bool
http_step(struct adm_conn *conn)
{
    struct hconn *c = (struct hconn *)conn;
    struct evbuffer *in = bufferevent_get_input(conn->bev);
    struct evbuffer *out = bufferevent_get_output(conn->bev);
    struct adm_req req;
    enum h1_parse res;
    const char *buf;
    size_t len = evbuffer_get_length(in), n, total;

    n = len < ADM_REQ_HEAD_MAX ? len : ADM_REQ_HEAD_MAX;
    buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
    if (buf == NULL) {
        adm_conn_close(conn);
        return false;
    }
    res = adm_req_parse(&req, buf, n);
    if (res == H1_PARSE_BAD) {
        log_at(LL_INFO, "admin", 0, "http %s: %d: %s", conn->peer, req.status, req.error);
        respond_error(c, req.status, req.error, "", false, true);
        return false;
    }
    if (res == H1_PARSE_AGAIN) {
        if (conn->is_eof)
            respond_error(c, 400, "incomplete request head", "", false, true);
        return false;
    }
    total = req.h1.head_len + (size_t)req.h1.content_length;
    if (len < total) {
        if (conn->is_eof) {
            respond_error(c, 400, "incomplete request body", "", false, true);
            return false;
        }
        if (req.h1.expect_continue && !c->sent_continue) {
            c->sent_continue = true;
            evbuffer_add_printf(out, "HTTP/1.1 100 Continue\r\n\r\n");
        }
        return false;
    }
    /* The whole request is here: make it contiguous (at most 72 KiB) and
     * parse again, as the pull-up may have moved the head. */
    buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)total);
    if (buf == NULL || adm_req_parse(&req, buf, total) != H1_PARSE_DONE) {
        adm_conn_close(conn);
        return false;
    }
    c->sent_continue = false;
    handle(c, &req, buf);
    evbuffer_drain(in, total);
    return true;
}

/* ops->expire: the 401 delay is over, or a request is not complete in time. */
static void
http_expire(struct adm_conn *conn)
{
    struct hconn *c = (struct hconn *)conn;

    if (conn->state == ADM_CONN_WAITING && c->scrape != NULL) {
        http_gone(conn);
        respond_error(c, 503, "the metrics were not written within 30 s", "", false, true);
        adm_conn_done(conn);
        return;
    }
    if (conn->state == ADM_CONN_WAITING) {
        http_gone(conn);
        respond_error(c, 504, "the fleet's store did not answer within 30 s: the change "
                      "may still be made; check status", "", c->wait_keep_alive, false);
        adm_conn_done(conn);
        return;
    }
    if (conn->state == ADM_CONN_HELD) {
        respond_error(c, 401, "a valid bearer token is required",
                      "WWW-Authenticate: Bearer realm=\"cutover\"\r\n", false, true);
        return;
    }
    log_at(LL_DEBUG, "admin", 0, "http %s: request not complete within %u ms",
           conn->peer, conn->lis->ops->pool[conn->pool].req_ms);
    respond_error(c, 408, "request not complete in time", "", false, true);
}

/* ops->release: a stream leaves the hub. */
static void
http_release(struct adm_conn *conn)
{
    struct hconn *c = (struct hconn *)conn;

    if (c->is_stream)
        adm_events_remove(http_of(c)->events, conn);
}

/* FNV-1a of <len> bytes at <p>: the peer key of an address. */
static unsigned long long
addr_key(const void *p, size_t len)
{
    const unsigned char *b = p;
    unsigned long long h = 14695981039346656037ULL;
    size_t i;

    for (i = 0; i < len; i++)
        h = (h ^ b[i]) * 1099511628211ULL;
    return h;
}

/* ops->accept: the peer's address (its key too). */
static int
http_accept(struct adm_conn *conn, evutil_socket_t fd, const struct sockaddr *sa,
            int salen)
{
    struct hconn *c = (struct hconn *)conn;

    if (sa->sa_family == AF_INET) {
        const struct in_addr *a = &((const struct sockaddr_in *)sa)->sin_addr;

        inet_ntop(AF_INET, a, conn->peer, sizeof(conn->peer));
        conn->peer_key = addr_key(a, sizeof(*a));
    } else if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;

        inet_ntop(AF_INET6, a, conn->peer, sizeof(conn->peer));
        conn->peer_key = addr_key(a, sizeof(*a));
    } else {
        snprintf(conn->peer, sizeof(conn->peer), "unknown");
    }
    snprintf(c->actor, sizeof(c->actor), "http:%s", conn->peer);
    return 0;
}

/* The input never holds much more than one maximal request. */
static const struct adm_conn_ops http_ops = {
    .name = "admin HTTP",
    .listener = "the admin HTTP listener",
    .size = sizeof(struct hconn),
    .in_max = ADM_REQ_HEAD_MAX + ADM_REQ_BODY_MAX,
    .out_high = ADM_HTTP_OUT_HIGH,
    .reqs_per_cb = ADM_HTTP_REQS_PER_CB,
    .pool = {
        [ADM_POOL_UNTRUSTED] = { .max_conns = ADM_HTTP_MAX_UNAUTH,
                                 .hard_conns = ADM_HTTP_HARD_UNAUTH,
                                 .req_ms = ADM_HTTP_UNAUTH_REQ_MS,
                                 .idle_ms = ADM_HTTP_UNAUTH_IDLE_MS },
        [ADM_POOL_TRUSTED] = { .max_conns = ADM_HTTP_MAX_AUTH,
                               .hard_conns = ADM_HTTP_MAX_AUTH,
                               .req_ms = ADM_HTTP_REQ_MS, .idle_ms = ADM_HTTP_IDLE_MS },
    },
    .grace_ms = ADM_HTTP_GRACE_MS,
    .flush_ms = ADM_HTTP_FLUSH_MS,
    .accept = http_accept,
    .step = http_step,
    .expire = http_expire,
    .release = http_release,
    .gone = http_gone,
};

/* ---- listener ---------------------------------------------------------- */

static bool
is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family == AF_INET6)
        return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)sa)->sin6_addr);
    return false;
}

struct adm_http *
adm_http_new(struct event_base *base, struct adm_control *ctl, struct adm_tokens **tokens,
             const struct adm_http_conf *conf, char *err, size_t errlen)
{
    struct adm_http *h = xcalloc(1, sizeof(*h));

    h->ctl = ctl;
    h->tokens = *tokens;
    *tokens = NULL;
    h->read_token_required = conf->read_token_required;
    h->metrics = conf->metrics;
    h->metrics_part = conf->metrics_part;
    h->metrics_arg = conf->metrics_arg;
    adm_listener_init(&h->lis, base, &http_ops, h);
    if ((h->events = adm_events_new(base, ctl)) == NULL) {
        snprintf(err, errlen, "out of memory");
        adm_http_free(h);
        return NULL;
    }
    if (adm_listener_listen_addr(&h->lis, conf->addr, conf->addrlen) != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", conf->addr_text,
                 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        adm_http_free(h);
        return NULL;
    }
    if (!is_loopback(conf->addr))
        log_at(LL_WARN, "admin", 0, "admin HTTP endpoint on %s, not a loopback address: "
               "tokens travel in clear text; put it behind TLS", conf->addr_text);
    log_at(LL_INFO, "admin", 0, "admin HTTP endpoint on %s (%u token%s, reading %s)",
           conf->addr_text, adm_tokens_count(h->tokens),
           adm_tokens_count(h->tokens) == 1 ? "" : "s",
           h->read_token_required ? "needs a token" : "open");
    return h;
}

void
adm_http_conn_stats(const struct adm_http *h, struct adm_conn_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (h != NULL)
        adm_listener_stats(&h->lis, out);
}

void
adm_http_free(struct adm_http *h)
{
    if (h == NULL)
        return;
    adm_listener_close(&h->lis);       /* streams leave the hub first */
    adm_events_free(h->events);
    adm_tokens_free(h->tokens);
    free(h);
}
