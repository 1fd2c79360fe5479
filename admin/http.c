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
 * - One timer per connection serves the request deadline (ADM_HTTP_REQ_MS
 *   from a request's first byte), the keep-alive idle limit, the 401 delay
 *   and the flush limit of a closing connection, so nothing can hold a
 *   connection open for ever.
 * - A connection is freed only at the tail of one of its own callbacks
 *   (nothing touches it afterwards) or from adm_http_free().
 *
 * Workload: a few scrapes a second and rare operator commands.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <jansson.h>

#include "admin/control.h"
#include "admin/http.h"
#include "admin/http_req.h"
#include "lib/log.h"
#include "lib/text.h"
#include "admin/tokens.h"
#include "lib/xmalloc.h"

#define ADM_HTTP_MAX_CONNS        32
#define ADM_HTTP_BACKLOG          16
#define ADM_HTTP_REQ_MS           10000    /* a request's first byte to its last */
#define ADM_HTTP_IDLE_MS          30000    /* keep-alive wait for the next request */
#define ADM_HTTP_FLUSH_MS         10000    /* a closing connection's output to drain */
#define ADM_HTTP_AUTH_DELAY_MS    200      /* before a 401 goes out */
#define ADM_HTTP_AUTH_AUDITS_PER_S 10      /* auth_refused entries per second */
#define ADM_HTTP_REQS_PER_CB      8        /* pipelined requests per callback */
#define ADM_HTTP_OUT_HIGH         (256u * 1024u)  /* queued reply bytes that pause reading */
#define ADM_HTTP_JSON_DEPTH       8        /* nesting of a request body */
#define ADM_HTTP_REPLY_FLAGS      (JSON_COMPACT | JSON_REAL_PRECISION(15))

enum hc_state {
    HC_READING,              /* reading (or waiting for) a request */
    HC_DELAYING,             /* [transient] 401 decided, timer pending */
    HC_CLOSING,              /* no more requests: freed once the output is sent */
};

struct hconn {
    struct adm_http *h;                /* borrowed: the server that accepted it */
    struct bufferevent *bev;           /* owned (closes the fd) */
    struct event *timer;               /* owned: see the file comment */
    struct event *resume;              /* owned: re-runs request processing */
    enum hc_state state;
    bool is_idle;                      /* between requests: the idle limit runs */
    bool is_eof;                       /* the peer shut its writing side */
    bool is_paused;                    /* reading stopped: output over ADM_HTTP_OUT_HIGH */
    bool sent_continue;                /* "100 Continue" sent for the current request */
    char peer[INET6_ADDRSTRLEN];       /* numeric peer address */
    char actor[INET6_ADDRSTRLEN + 8];  /* "http:<peer>" */
    struct hconn *prev, *next;         /* h->conns list */
};

struct adm_http {
    struct event_base *base;           /* borrowed */
    struct adm_control *ctl;           /* borrowed */
    struct adm_tokens *tokens;         /* owned, may be NULL */
    struct evconnlistener *lev;        /* owned */
    bool read_token_required;
    adm_metrics_fn *metrics;           /* may be NULL */
    void *metrics_arg;                 /* borrowed */
    struct hconn *conns;               /* owned list */
    unsigned nconns;
    time_t audit_sec;                  /* second of the auth_refused entries counted */
    unsigned audit_count;              /* entries written in <audit_sec> */
    unsigned long audit_skipped;       /* refusals not audited since the last entry */
    unsigned long refused_conns;       /* connections refused over the limit */
};

static void on_conn_read(struct bufferevent *bev, void *arg);
static void on_conn_write(struct bufferevent *bev, void *arg);
static void on_conn_event(struct bufferevent *bev, short what, void *arg);
static void on_conn_timer(evutil_socket_t fd, short what, void *arg);
static void on_conn_resume(evutil_socket_t fd, short what, void *arg);

/* ---- connections ------------------------------------------------------ */

static void
conn_free(struct hconn *c)
{
    struct adm_http *h = c->h;

    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        h->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    h->nconns--;
    if (c->timer != NULL)
        event_free(c->timer);
    if (c->resume != NULL)
        event_free(c->resume);
    bufferevent_free(c->bev);
    free(c);
}

static void
conn_arm(struct hconn *c, unsigned ms)
{
    struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

    evtimer_add(c->timer, &tv);        /* re-adding replaces the deadline */
}

/* Stops reading requests; the connection is freed once its output is sent,
 * or ADM_HTTP_FLUSH_MS later. */
static void
conn_close_after_flush(struct hconn *c)
{
    c->state = HC_CLOSING;
    bufferevent_disable(c->bev, EV_READ);
    conn_arm(c, ADM_HTTP_FLUSH_MS);
}

/* Queues a response with <body> (moved out of <body>, which may be NULL
 * for none). <extra> holds complete header lines or is "". With <close>
 * the connection closes once it is sent. */
static void
respond(struct hconn *c, int status, const char *ctype, struct evbuffer *body,
        const char *extra, bool keep_alive, bool close)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    size_t blen = body != NULL ? evbuffer_get_length(body) : 0;
    int rc;

    rc = evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n"
                             "Content-Length: %zu\r\nCache-Control: no-store\r\n%s%s\r\n",
                             status, text_http_status(status), ctype, blen, extra,
                             close || !keep_alive ? "Connection: close\r\n" : "");
    if (rc < 0 || (body != NULL && evbuffer_add_buffer(out, body) != 0)) {
        log_at(LL_WARN, "admin", 0, "http %s: cannot queue a reply: closing", c->peer);
        close = true;
    }
    if (close || !keep_alive)
        conn_close_after_flush(c);
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

/* ---- authentication ---------------------------------------------------- */

/* Audits an authentication refusal of <c>, <why> (no secret in it), at most
 * ADM_HTTP_AUTH_AUDITS_PER_S per second. */
static void
audit_auth_refused(struct hconn *c, const struct adm_req *req, const char *why)
{
    struct adm_http *h = c->h;
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
    log_at(LL_WARN, "admin", 0, "http %s: 401: %s", c->peer, reason);
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
    name = adm_tokens_check(c->h->tokens, tok.p, tok.len, level);
    if (name == NULL)
        *why = c->h->tokens != NULL ? "unknown token" : "no token file is configured";
    return name;
}

/* Refuses <c>'s request 401 after the delay: audits now, answers from the
 * timer, then closes. */
static void
refuse_auth(struct hconn *c, const struct adm_req *req, const char *why)
{
    audit_auth_refused(c, req, why);
    c->state = HC_DELAYING;
    bufferevent_disable(c->bev, EV_READ);
    conn_arm(c, ADM_HTTP_AUTH_DELAY_MS);
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
    struct adm_http *h = c->h;
    struct adm_caller who = { .actor = c->actor, .pid = -1, .level = ADM_LEVEL_READ };
    char actor[ADM_TOKEN_NAME_MAX + 8];
    struct evbuffer *b;
    json_t *q, *r;

    if (!slice_eq(&req->h1.method, "GET")) {
        respond_error(c, 405, "method not allowed (GET only)", "Allow: GET\r\n",
                      req->h1.keep_alive, true);
        return;
    }
    if (h->read_token_required && !token_caller(c, req, &who, actor, sizeof(actor)))
        return;
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
        respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", b, "",
                req->h1.keep_alive, false);
        evbuffer_free(b);
        return;
    }
    q = json_pack("{s:s}", "cmd", "status");
    r = q != NULL ? adm_control_exec_as(h->ctl, q, &who) : NULL;
    json_decref(q);
    respond_json(c, json_is_true(json_object_get(r, "ok")) ? 200 : 409, r,
                 req->h1.keep_alive);
}

/* POST /v1/<cmd>: <cmd> is the path's last segment. */
static void
handle_post(struct hconn *c, const struct adm_req *req, const char *cmd, size_t cmdlen,
            const char *body, size_t blen)
{
    struct adm_http *h = c->h;
    struct adm_caller who = { .pid = -1 };
    char actor[ADM_TOKEN_NAME_MAX + 8], cmdbuf[32], msg[256];
    json_error_t je;
    json_t *q, *v, *r;
    int status;
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
                 "rollback, promote, switch, plan, audit)", cmdbuf);
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
    r = adm_control_exec_as(h->ctl, q, &who);
    json_decref(q);
    if (json_is_true(json_object_get(r, "ok")))
        status = 200;
    else if (json_object_get(r, "required_level") != NULL)
        status = 403;
    else
        status = 409;
    respond_json(c, status, r, req->h1.keep_alive);
}

/* Handles one complete request: <req> parsed from <buf>, its body after the head. */
static void
handle(struct hconn *c, const struct adm_req *req, const char *buf)
{
    const char *body = buf + req->h1.head_len;
    size_t blen = (size_t)req->h1.content_length;

    log_at(LL_DEBUG, "admin", 0, "http %s: %.*s %.*s", c->peer, (int)req->h1.method.len,
           req->h1.method.p, (int)(req->path.len > 256 ? 256 : req->path.len), req->path.p);
    if (slice_eq(&req->path, "/status")) {
        handle_get(c, req, false);
    } else if (slice_eq(&req->path, "/metrics")) {
        handle_get(c, req, true);
    } else if (req->path.len > 4 && memcmp(req->path.p, "/v1/", 4) == 0) {
        handle_post(c, req, req->path.p + 4, req->path.len - 4, body, blen);
    } else {
        respond_error(c, 404, "not found (GET /status, GET /metrics, POST /v1/<command>)",
                      "", req->h1.keep_alive, true);
    }
}

/* Handles up to ADM_HTTP_REQS_PER_CB complete requests from the input.
 * Returns true when another may be ready. */
static bool
conn_process(struct hconn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct evbuffer *out = bufferevent_get_output(c->bev);
    struct adm_req req;
    enum h1_parse res;
    const char *buf;
    size_t len, n, total;
    int k;

    for (k = 0; c->state == HC_READING; k++) {
        if (evbuffer_get_length(out) >= ADM_HTTP_OUT_HIGH) {
            if (!c->is_paused) {
                c->is_paused = true;   /* on_conn_write() resumes */
                bufferevent_disable(c->bev, EV_READ);
            }
            return false;
        }
        len = evbuffer_get_length(in);
        if (len == 0) {
            if (c->is_eof)
                conn_close_after_flush(c);
            return false;
        }
        if (k == ADM_HTTP_REQS_PER_CB)
            return true;
        if (c->is_idle) {
            c->is_idle = false;
            conn_arm(c, ADM_HTTP_REQ_MS);
        }
        n = len < ADM_REQ_HEAD_MAX ? len : ADM_REQ_HEAD_MAX;
        buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
        if (buf == NULL) {
            conn_close_after_flush(c);
            return false;
        }
        res = adm_req_parse(&req, buf, n);
        if (res == H1_PARSE_BAD) {
            log_at(LL_INFO, "admin", 0, "http %s: %d: %s", c->peer, req.status, req.error);
            respond_error(c, req.status, req.error, "", false, true);
            return false;
        }
        if (res == H1_PARSE_AGAIN) {
            if (c->is_eof) {
                respond_error(c, 400, "incomplete request head", "", false, true);
                return false;
            }
            return false;
        }
        total = req.h1.head_len + (size_t)req.h1.content_length;
        if (len < total) {
            if (c->is_eof) {
                respond_error(c, 400, "incomplete request body", "", false, true);
                return false;
            }
            if (req.h1.expect_continue && !c->sent_continue) {
                c->sent_continue = true;
                evbuffer_add_printf(out, "HTTP/1.1 100 Continue\r\n\r\n");
            }
            return false;
        }
        /* The whole request is here: make it contiguous (at most 72 KiB)
         * and parse again, as the pull-up may have moved the head. */
        buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)total);
        if (buf == NULL || adm_req_parse(&req, buf, total) != H1_PARSE_DONE) {
            conn_close_after_flush(c);
            return false;
        }
        c->sent_continue = false;
        handle(c, &req, buf);
        evbuffer_drain(in, total);
        if (c->state == HC_READING) {
            /* the next request's clock starts with its first byte */
            c->is_idle = true;
            conn_arm(c, c->is_eof ? ADM_HTTP_FLUSH_MS : ADM_HTTP_IDLE_MS);
        }
    }
    return false;
}

/* The common tail of every connection callback: schedules more work or
 * frees <c>. <c> must not be touched after this returns. */
static void
conn_settle(struct hconn *c, bool more)
{
    if (c->state == HC_CLOSING) {
        if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
            conn_free(c);
        return;
    }
    if (more && c->state == HC_READING)
        event_active(c->resume, EV_TIMEOUT, 1);
}

static void
on_conn_read(struct bufferevent *bev, void *arg)
{
    struct hconn *c = arg;

    conn_settle(c, conn_process(c));
}

static void
on_conn_resume(evutil_socket_t fd, short what, void *arg)
{
    struct hconn *c = arg;

    conn_settle(c, conn_process(c));
}

static void
on_conn_write(struct bufferevent *bev, void *arg)
{
    struct hconn *c = arg;
    bool more = false;

    if (c->is_paused && c->state == HC_READING) {
        c->is_paused = false;
        if (!c->is_eof && bufferevent_enable(c->bev, EV_READ) != 0)
            conn_close_after_flush(c);
        else
            more = conn_process(c);
    }
    conn_settle(c, more);
}

static void
on_conn_event(struct bufferevent *bev, short what, void *arg)
{
    struct hconn *c = arg;

    if (what & BEV_EVENT_EOF) {
        /* half-close: answer what was sent, then close */
        c->is_eof = true;
        bufferevent_disable(bev, EV_READ);
        conn_settle(c, c->state == HC_READING ? conn_process(c) : false);
        return;
    }
    if (what & BEV_EVENT_ERROR) {
        log_at(LL_DEBUG, "admin", 0, "http %s: %s", c->peer,
               evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        conn_free(c);                  /* nothing can be sent any more */
    }
}

static void
on_conn_timer(evutil_socket_t fd, short what, void *arg)
{
    struct hconn *c = arg;

    switch (c->state) {
    case HC_DELAYING:
        c->state = HC_READING;         /* respond() moves it to closing */
        respond_error(c, 401, "a valid bearer token is required",
                      "WWW-Authenticate: Bearer realm=\"cutover\"\r\n", false, true);
        conn_settle(c, false);
        return;
    case HC_CLOSING:
        conn_free(c);                  /* the peer does not read: give up */
        return;
    case HC_READING:
        if (c->is_idle) {
            conn_free(c);
            return;
        }
        log_at(LL_INFO, "admin", 0, "http %s: request not complete within %d ms",
               c->peer, ADM_HTTP_REQ_MS);
        respond_error(c, 408, "request not complete in time", "", false, true);
        conn_settle(c, false);
        return;
    }
}

/* ---- listener ---------------------------------------------------------- */

static void
on_accept(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
          int salen, void *arg)
{
    struct adm_http *h = arg;
    struct hconn *c;

    if (h->nconns >= ADM_HTTP_MAX_CONNS) {
        /* logged once per 100, so a flood does not flood the log */
        if (h->refused_conns++ % 100 == 0)
            log_at(LL_WARN, "admin", 0, "%u admin HTTP connections open: closing "
                   "another (%lu so far)", h->nconns, h->refused_conns);
        evutil_closesocket(fd);
        return;
    }
    c = xcalloc(1, sizeof(*c));
    c->h = h;
    c->state = HC_READING;
    c->is_idle = false;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)sa)->sin_addr, c->peer, sizeof(c->peer));
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)sa)->sin6_addr, c->peer,
                  sizeof(c->peer));
    else
        snprintf(c->peer, sizeof(c->peer), "unknown");
    snprintf(c->actor, sizeof(c->actor), "http:%s", c->peer);

    c->bev = bufferevent_socket_new(h->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (c->bev == NULL) {
        evutil_closesocket(fd);
        free(c);
        log_at(LL_WARN, "admin", 0, "cannot set up an admin HTTP connection");
        return;
    }
    /* in the list from here: conn_free() undoes everything below */
    c->next = h->conns;
    if (h->conns != NULL)
        h->conns->prev = c;
    h->conns = c;
    h->nconns++;
    c->timer = evtimer_new(h->base, on_conn_timer, c);
    c->resume = event_new(h->base, -1, 0, on_conn_resume, c);
    if (c->timer == NULL || c->resume == NULL)
        goto fail;
    bufferevent_setcb(c->bev, on_conn_read, on_conn_write, on_conn_event, c);
    /* the input never holds much more than one maximal request */
    bufferevent_setwatermark(c->bev, EV_READ, 0, ADM_REQ_HEAD_MAX + ADM_REQ_BODY_MAX);
    if (bufferevent_enable(c->bev, EV_READ) != 0)
        goto fail;
    conn_arm(c, ADM_HTTP_REQ_MS);
    return;

fail:
    conn_free(c);
    log_at(LL_WARN, "admin", 0, "cannot set up an admin HTTP connection");
}

static void
on_accept_error(struct evconnlistener *lev, void *arg)
{
    /* EMFILE and friends: keep listening, the next accept may succeed */
    log_at(LL_WARN, "admin", 0, "accept on the admin HTTP listener: %s",
           evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

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

    h->base = base;
    h->ctl = ctl;
    h->tokens = *tokens;
    *tokens = NULL;
    h->read_token_required = conf->read_token_required;
    h->metrics = conf->metrics;
    h->metrics_arg = conf->metrics_arg;
    h->lev = evconnlistener_new_bind(base, on_accept, h,
                                     LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC
                                     | LEV_OPT_REUSEABLE,
                                     ADM_HTTP_BACKLOG, conf->addr, (int)conf->addrlen);
    if (h->lev == NULL) {
        snprintf(err, errlen, "cannot listen on %s: %s", conf->addr_text,
                 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        adm_http_free(h);
        return NULL;
    }
    evconnlistener_set_error_cb(h->lev, on_accept_error);
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
adm_http_free(struct adm_http *h)
{
    if (h == NULL)
        return;
    while (h->conns != NULL)
        conn_free(h->conns);
    if (h->lev != NULL)
        evconnlistener_free(h->lev);
    adm_tokens_free(h->tokens);
    free(h);
}
