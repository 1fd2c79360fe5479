/*
 * http: one client connection of an HTTP service, as a state machine.
 *
 * A request travels: head read and parsed by lib/http1.c (never forwarded
 * before it is complete and valid) -> side and server chosen by the router ->
 * a small body (up to limits.buffer_body_bytes) read and validated completely
 * -> upstream connect (a failed connect is retried once on another server of
 * the same side) -> the rebuilt head, then the body, streamed upstream ->
 * the response head parsed and rebuilt -> the response body streamed back,
 * re-framed for the client -> the client connection kept alive for the next
 * request (pipelined bytes wait in the input buffer and are served in order).
 *
 * Framing never passes through: Content-Length and chunked are regenerated
 * from the parsed values, hop-by-hop fields are dropped. Bodies move between
 * evbuffers with evbuffer_remove_buffer(), never copied, and every move
 * checks the high watermark of its destination (backpressure both ways,
 * proxy/relay.h).
 *
 * Upstream connections come from the per-server keep-alive pool
 * (proxy/pool.c) and go back to it only after a clean exchange. A request
 * sent on a reused connection that closes before any response byte is
 * retried once on a fresh connection when it is idempotent and its body was
 * buffered (the usual race with a backend's keep-alive timeout); any other
 * request that was sent is never retried.
 *
 * An Upgrade request (WebSocket) answered with a valid 101 turns the
 * connection into a tunnel: bytes are relayed both ways until either peer
 * closes.
 */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_struct.h>   /* park()/unpark(): ev_read, enabled */
#include <event2/event.h>
#include <event2/util.h>

#include "lib/list.h"
#include "lib/log.h"
#include "lib/xmalloc.h"
#include "proxy/accesslog.h"
#include "lib/http1.h"
#include "proxy/io.h"
#include "proxy/http.h"
#include "proxy/pool.h"
#include "proxy/relay.h"
#include "proxy/server.h"

enum px_conn_state {
    PX_CS_READ_HEAD = 0,  /* waiting for or reading a request head */
    PX_CS_READ_BODY,      /* buffering a small request body before connecting */
    PX_CS_CONNECTING,     /* side and server chosen, upstream connect in flight */
    PX_CS_EXCHANGE,       /* request body up, response head and body down */
    PX_CS_TUNNEL,         /* after a 101: raw bytes both ways */
    PX_CS_DRAINING,       /* flushing the last bytes to the client, then close */
    PX_CS_CLOSED,         /* [terminal] resources released, struct awaits free */
    PX_CS__COUNT
};

static const char *const px_cs_names[PX_CS__COUNT] = {
    "read_head", "read_body", "connecting", "exchange", "tunnel", "draining", "closed",
};

static const char *const px_cs_actions[PX_CS__COUNT] = {
    "reading request head", "reading request body", "connecting to upstream",
    "exchanging with upstream", "tunnelling", "flushing to client", "closed",
};

#define PX_CF_CLOSE        0x01u  /* free when the last callback leaves */
#define PX_CF_NO_KEEPALIVE 0x02u  /* close the client connection after this response */
#define PX_CF_CLIENT_EOF   0x04u  /* the client half-closed its side */
#define PX_CF_HEAD_TIMER   0x08u  /* the head timer runs for the current request */
#define PX_CF_RES_STARTED  0x10u  /* response bytes of this request went to the client */
#define PX_CF_RETRIED      0x20u  /* this request already used its connect retry */
#define PX_CF_REQ_STREAMED 0x40u  /* request body bytes were sent without a copy kept for a retry */
#define PX_CF_UP_REUSED    0x80u  /* the upstream connection came from the pool */
#define PX_CF_STALE_RETRY  0x100u /* this request was resent after a stale pooled connection */
#define PX_CF_RES_BYTES    0x200u /* the upstream sent at least one byte for this request */
#define PX_CF_PARK_SOON    0x400u /* head_timer was activated to run park() */
#define PX_CF_PARKED       0x800u /* parked: no bufferevent, head_timer watches the socket */

enum px_out {
    PX_OUT_PLAIN = 0,     /* move bytes as they are (Content-Length or close-delimited) */
    PX_OUT_CHUNKED,       /* wrap every moved segment in a chunk */
};

/* Body state of one direction of the current exchange. */
struct px_body {
    enum h1_framing framing;
    enum px_out out;
    uint64_t left;               /* H1_BODY_LENGTH: bytes still to move */
    uint64_t total;              /* bytes moved so far (payload) */
    struct h1_chunked ck;        /* H1_BODY_CHUNKED: decoder state */
    bool done;                   /* the whole body was moved */
};

/* What an idle (parked) connection holds is mostly this struct: its field
 * order leaves no holes (448 bytes on LP64). */
struct px_conn {
    struct list link;                /* on svc->conns */
    struct px_service *svc;          /* borrowed; a retired service lives until
                                      * its last connection is gone */
    struct px_srv *srv;              /* borrowed */
    struct px_confref *cref;         /* one reference: the generation of <conf> */
    const struct px_service_conf *conf;  /* the service's conf when this
                                      * connection took it: at accept, then between
                                      * requests (conn_refresh_conf) */
    uint64_t id;
    enum px_conn_state state;        /* written only by set_state() */
    unsigned flags;                  /* PX_CF_* */
    int busy;                        /* callbacks on the stack */
    unsigned client_port;
    struct bufferevent *down;        /* owned: the client; NULL while parked (it went
                                      * back to the loop's spares) */
    struct bufferevent *up;          /* owned: the upstream of the current request, or NULL */
    struct event *head_timer;        /* owned: deadline of the phase; client_head_ms from
                                      * the first byte of a head (READ_HEAD), or
                                      * server_response_ms from the end of the request to
                                      * the end of the response head (EXCHANGE); runs
                                      * park() (PX_CF_PARK_SOON); while parked, the read
                                      * event on the client socket */
    char client_ip[64];

    /* the current request */
    unsigned nreq;                   /* requests served on this connection */
    int req_minor;                   /* HTTP/1.<minor> of the client */
    bool req_is_head;                /* method HEAD: the response has no body */
    bool req_idempotent;             /* RFC 9110 9.2.2: may be resent */
    bool req_upgrade;                /* Connection: upgrade + Upgrade: asked for */
    bool fallback;
    bool issue_cookie;
    enum rt_side side;
    uint32_t bucket;
    struct px_body req;
    struct evbuffer *up_head;        /* owned: rebuilt head, sent once connected; taken
                                      * by a request, given back by park() */
    struct evbuffer *req_buf;        /* owned: buffered small body; taken by the first
                                      * body to buffer, given back by park() */
    struct px_server_rt *srt;        /* one reference: the server of the current
                                      * request, or NULL (RT_NONE side) */
    uint64_t t_req_us;               /* head complete: latency reference */

    /* the current response */
    int res_status;
    bool res_head_done;
    bool res_recorded;               /* outcome reported to the service */
    bool res_keep_alive;             /* the upstream connection may be reused */
    bool log_pending;                /* access log: a request began and is not logged yet */
    struct px_body res;
    uint64_t last_io_ms;             /* tunnel: last byte either way */

    /* the access log's view of the current request (kept only with an
     * access log: log_begin() sets log_pending, log_request() clears it) */
    int log_status;                  /* status sent to the client; 0 none yet */
    enum rt_reason log_why;          /* the router's reason; RT_R_NONE: not routed */
    const char *log_error;           /* static: what failed; NULL nothing known */
    uint64_t log_t0_us;              /* px_now_us() when the request began */
    char log_method[32];             /* "" when no head was parsed */
    char *log_path;                  /* owned: PX_ACCESS_LOG_PATH_MAX bytes, or NULL;
                                      * given back by park() */
    size_t log_path_len;             /* length of the target (may exceed what is kept) */
};

static void set_state(struct px_conn *c, enum px_conn_state next);
static void process(struct px_conn *c);
static void conn_close_now(struct px_conn *c);
static bool conn_refresh_conf(struct px_conn *c);
static void on_client_read(struct bufferevent *bev, void *arg);
static void on_client_write(struct bufferevent *bev, void *arg);
static void on_client_event(struct bufferevent *bev, short what, void *arg);
static void on_upstream_read(struct bufferevent *bev, void *arg);
static void on_upstream_write(struct bufferevent *bev, void *arg);
static void on_upstream_event(struct bufferevent *bev, short what, void *arg);
static void on_head_timeout(evutil_socket_t fd, short what, void *arg);

static const struct px_service_conf *
sconf(const struct px_conn *c)
{
    return c->conf;
}

/* The address of the current request's server. */
static const struct px_addr *
srt_addr(const struct px_conn *c)
{
    return &c->srt->addr;
}

/* Binds the current request to <s> (NULL: none). */
static void
bind_server(struct px_conn *c, struct px_server_rt *s)
{
    if (s != NULL)
        px_server_rt_get(s);
    px_server_rt_put(c->srt);
    c->srt = s;
}

/* The header field table to parse one head with <n> fields at most. It is
 * the loop's (struct px_srv), not a connection's: a head is parsed, used and
 * rebuilt (request: routed, upstream head built, then drained; response:
 * written to the client) within one callback, and the loop runs one callback
 * at a time, so one table serves every connection of the loop. Nothing may
 * keep a pointer into it past that callback; a worker thread gets its own
 * struct px_srv and so its own table. */
static struct h1_field *
head_fields(struct px_srv *srv, unsigned n)
{
    if (srv->hfields_n < n) {
        free(srv->hfields);
        srv->hfields = xcalloc(n, sizeof(*srv->hfields));
        srv->hfields_n = n;
    }
    return srv->hfields;
}

static struct timeval
ms_tv(unsigned ms)
{
    struct timeval tv = { (time_t)(ms / 1000u), (suseconds_t)((ms % 1000u) * 1000u) };

    return tv;
}

static void
enter(struct px_conn *c)
{
    c->busy++;
}

/* Writes what the last callback queued straight to the sockets (io.h): the
 * write events are armed only for what a socket did not take, so their
 * callbacks run only then; a draining connection whose output went out
 * here is done. */
static void
flush_out(struct px_conn *c)
{
    if (c->up != NULL)
        px_io_flush(c->up);
    /* a parked connection has no bufferevent, and nothing to send */
    if (c->down != NULL && px_io_flush(c->down) == 0 && c->state == PX_CS_DRAINING)
        c->flags |= PX_CF_CLOSE;
}

/* Frees <c> if it was closed and no callback of it is on the stack, else
 * flushes its output when the outermost callback leaves.
 * Touch nothing of <c> after calling it. */
static void
leave(struct px_conn *c)
{
    assert(c->busy > 0);
    if (c->busy == 1 && !(c->flags & PX_CF_CLOSE))
        flush_out(c);
    if (--c->busy > 0 || !(c->flags & PX_CF_CLOSE))
        return;
    conn_close_now(c);
}

static void
mark_close(struct px_conn *c)
{
    c->flags |= PX_CF_CLOSE;
}

static void
upstream_free(struct px_conn *c)
{
    if (c->up != NULL) {
        bufferevent_free(c->up);
        c->up = NULL;
    }
}

/* ---- access log ------------------------------------------------------ */

/* The current request begins for the access log: a parsed head <r>, or,
 * with <r> NULL, bytes the proxy refuses before they made a request. The
 * head is drained before the request ends, so what the line needs of it is
 * kept here. Called only with an access log. */
static void
log_begin(struct px_conn *c, const struct h1_req *r)
{
    c->log_pending = true;
    c->log_status = 0;
    c->log_error = NULL;
    c->log_why = RT_R_NONE;
    c->log_method[0] = '\0';
    c->log_path_len = 0;
    c->log_t0_us = r != NULL ? c->t_req_us : px_now_us(c->srv);
    if (r == NULL)
        return;
    snprintf(c->log_method, sizeof(c->log_method), "%.*s", (int)r->method.len, r->method.p);
    if (c->log_path == NULL)
        c->log_path = c->srv->nspare_path > 0 ? c->srv->spare_path[--c->srv->nspare_path]
                                              : xmalloc(PX_ACCESS_LOG_PATH_MAX);
    c->log_path_len = r->target.len;
    memcpy(c->log_path, r->target.p,
           r->target.len < PX_ACCESS_LOG_PATH_MAX ? r->target.len : PX_ACCESS_LOG_PATH_MAX);
}

/* Writes the current request's access log line, once. <ended> is the error
 * to report when the request itself knows of none (the connection ended
 * under it). Call while the request's side and server are still bound. */
static void
log_request(struct px_conn *c, const char *ended)
{
    struct px_access_log *al = c->srv->access_log;
    bool parsed = c->log_method[0] != '\0';
    bool routed = c->side != RT_NONE && c->srt != NULL;
    char client[96];

    c->log_pending = false;
    if (al == NULL)
        return;                        /* a reload turned it off meanwhile */
    px_access_log_write(al, &(struct px_access_rec){
        .conn = c->id, .service = sconf(c)->name,
        .client = px_access_client(c->client_ip, c->client_port, client, sizeof(client)),
        .method = parsed ? c->log_method : NULL,
        .path = parsed ? c->log_path : NULL, .path_len = c->log_path_len,
        .status = c->log_status,
        .side = routed ? rt_side_names[c->side] : NULL,
        .server = routed ? c->srt->addr.text : NULL,
        .why = routed && c->log_why != RT_R_NONE ? rt_reason_names[c->log_why] : NULL,
        .bytes_in = parsed ? c->req.total : 0,
        .bytes_out = c->res_head_done ? c->res.total : 0,
        .duration_us = px_now_us(c->srv) - c->log_t0_us,
        .error = c->log_error != NULL ? c->log_error : ended,
    });
}

static void
conn_close_now(struct px_conn *c)
{
    struct px_service *svc = c->svc;

    log_at(LL_DEBUG, "http", c->id, "closed after %u request(s) while %s",
           c->nreq, px_cs_actions[c->state]);
    if (c->log_pending)                /* a tunnel ended, or the client went away */
        log_request(c, c->log_status == 101 ? NULL : "client_closed");
    c->state = PX_CS_CLOSED;
    upstream_free(c);
    if (c->down != NULL)
        bufferevent_free(c->down);
    if (c->head_timer != NULL) {
        evutil_socket_t fd = event_get_fd(c->head_timer);

        event_free(c->head_timer);
        if (c->flags & PX_CF_PARKED)
            evutil_closesocket(fd);    /* parked: the event held the socket */
    }
    if (c->up_head != NULL)
        evbuffer_free(c->up_head);
    if (c->req_buf != NULL)
        evbuffer_free(c->req_buf);
    free(c->log_path);
    bind_server(c, NULL);
    px_confref_put(c->cref);
    list_unlink(&c->link);
    free(c);
    px_srv_conn_closed(svc->srv, svc);
}

/* The whole request is upstream: its response head must be complete within
 * server_response_ms, however the server trickles it (the bufferevent read
 * timeout alone measures silence, which one byte at a time resets). */
static void
arm_response_deadline(struct px_conn *c)
{
    struct timeval tv = ms_tv(sconf(c)->timeouts.server_response_ms);

    evtimer_add(c->head_timer, &tv);
}

/* The only writer of c->state: installs timeouts and enabled directions,
 * and the callbacks of a new bufferevent of the connection (c->down when
 * accepted or unparked, c->up when connecting). The one other place that
 * sets callbacks is park(), which clears those of the bufferevent it gives
 * to the loop's spares: that bufferevent leaves the connection (whose
 * state stays READ_HEAD), and whichever connection takes it next gets its
 * own callbacks here. */
static void
set_state(struct px_conn *c, enum px_conn_state next)
{
    const struct px_timeouts *to = &sconf(c)->timeouts;
    enum px_conn_state prev = c->state;
    struct timeval tv_r, tv_w;

    assert(next < PX_CS__COUNT);
    if (next != prev)
        log_at(LL_DEBUG, "http", c->id, "state %s -> %s", px_cs_names[prev],
               px_cs_names[next]);
    c->state = next;

    switch (next) {
    case PX_CS_READ_HEAD:
        if (prev == PX_CS_CLOSED || (c->flags & PX_CF_PARKED))   /* accepted, unparked */
            bufferevent_setcb(c->down, on_client_read, on_client_write, on_client_event, c);
        /* first request: the head timeout runs from accept, so an idle
         * connection cannot be held; later ones: the keep-alive idle time */
        tv_r = ms_tv(c->nreq == 0 ? to->client_head_ms : to->client_idle_ms);
        bufferevent_set_timeouts(c->down, &tv_r, NULL);
        bufferevent_setwatermark(c->down, EV_WRITE, 0, 0);
        /* a head larger than this is a 431 anyway: read no further */
        bufferevent_setwatermark(c->down, EV_READ, 0, sconf(c)->limits.head_bytes);
        px_io_read_size(c->down, PX_IO_READ_HEAD);  /* a streamed body may have changed it */
        /* writing: armed by leave() only when a socket is full (io.h) */
        bufferevent_enable(c->down, EV_READ);
        break;
    case PX_CS_READ_BODY:
        tv_r = ms_tv(to->client_idle_ms);
        bufferevent_set_timeouts(c->down, &tv_r, NULL);
        bufferevent_setwatermark(c->down, EV_READ, 0, 0);
        bufferevent_enable(c->down, EV_READ);
        break;
    case PX_CS_CONNECTING:
        /* c->up is always a new one (start_connect) */
        bufferevent_setcb(c->up, on_upstream_read, on_upstream_write, on_upstream_event, c);
        /* nothing more is read from the client until the upstream is up; a
         * pooled connection is up at once (EXCHANGE enables reading again in
         * the same step: switching it off and on would cost an epoll_ctl) */
        if (!(c->flags & PX_CF_UP_REUSED))
            bufferevent_disable(c->down, EV_READ);
        tv_w = ms_tv(to->connect_ms);  /* libevent applies the write timeout to connect */
        bufferevent_set_timeouts(c->up, NULL, &tv_w);
        break;
    case PX_CS_EXCHANGE:
        /* server_response_ms runs once the whole request is up (see
         * process()); while a streamed body still goes up, the idle
         * timeouts of both peers bound the exchange */
        tv_r = ms_tv(to->server_response_ms);
        tv_w = ms_tv(to->server_idle_ms);
        bufferevent_set_timeouts(c->up, c->req.done ? &tv_r : NULL, &tv_w);
        if (c->req.done)
            arm_response_deadline(c);
        bufferevent_enable(c->up, EV_READ);
        tv_r = ms_tv(to->server_idle_ms);
        bufferevent_set_timeouts(c->down, c->req.done ? NULL : &tv_r, &tv_r);
        /* keep reading the client, so that its going away aborts the
         * upstream request; pipelined bytes wait, bounded by head_bytes */
        bufferevent_setwatermark(c->down, EV_READ, 0, sconf(c)->limits.head_bytes);
        if (c->flags & PX_CF_CLIENT_EOF)
            bufferevent_disable(c->down, EV_READ);
        else
            bufferevent_enable(c->down, EV_READ);
        break;
    case PX_CS_TUNNEL:
        tv_r = ms_tv(to->server_idle_ms);
        bufferevent_setwatermark(c->down, EV_READ, 0, 0);
        bufferevent_set_timeouts(c->down, &tv_r, &tv_r);
        bufferevent_set_timeouts(c->up, &tv_r, &tv_r);
        bufferevent_enable(c->down, EV_READ);
        bufferevent_enable(c->up, EV_READ);
        break;
    case PX_CS_DRAINING:
        if (c->log_pending)            /* answered (by the proxy) or cut: it ends here */
            log_request(c, NULL);
        upstream_free(c);
        if (c->head_timer != NULL)
            evtimer_del(c->head_timer);
        bufferevent_disable(c->down, EV_READ);
        bufferevent_setwatermark(c->down, EV_WRITE, 0, 0);
        tv_w = ms_tv(to->server_idle_ms);
        bufferevent_set_timeouts(c->down, NULL, &tv_w);
        if (evbuffer_get_length(bufferevent_get_output(c->down)) == 0)
            mark_close(c);
        break;
    case PX_CS_CLOSED:
    case PX_CS__COUNT:
        break;
    }
}

/* Answers the current request with <status> generated by the proxy and
 * closes the client connection once it is flushed. Nothing is sent when the
 * response had already started (the connection is just closed). */
static void
reply_error(struct px_conn *c, int status, const char *why)
{
    struct evbuffer *out = bufferevent_get_output(c->down);
    const char *text = h1_status_text(status);

    /* a client's bad request is its problem (debug); our 5xx is ours */
    if (status >= 500)
        px_req_warn(c->svc, "http", c->id, "%d %s (%s) while %s", status, text, why,
                    px_cs_actions[c->state]);
    else
        log_at(LL_DEBUG, "http", c->id, "%d %s (%s) while %s", status, text, why,
               px_cs_actions[c->state]);
    if (c->srv->access_log != NULL && !c->log_pending)
        log_begin(c, NULL);            /* bytes that never made a request */
    if (!(c->flags & PX_CF_RES_STARTED)) {
        c->log_status = status;
        evbuffer_add_printf(out,
                            "HTTP/1.1 %d %s\r\n"
                            "Content-Type: text/plain\r\n"
                            "Content-Length: %zu\r\n"
                            "%s"
                            "Connection: close\r\n\r\n%s\n",
                            status, text, strlen(text) + 1,
                            status == 503 ? "Retry-After: 1\r\n" : "", text);
        c->flags |= PX_CF_RES_STARTED;
    }
    set_state(c, PX_CS_DRAINING);
}

/* Records the outcome of the current request once. */
static void
record(struct px_conn *c, int status, enum px_err err)
{
    if (c->res_recorded || c->side == RT_NONE)
        return;
    c->res_recorded = true;
    c->log_status = status;
    if (status == 0)
        c->log_error = px_err_names[err];
    px_service_record(c->svc, c->side, c->srt, status, err,
                      px_now_us(c->srv) - c->t_req_us);
}

/* Moves <n> bytes from <src> to <dst>, wrapped in a chunk when <out> says. */
static void
move(struct evbuffer *src, struct evbuffer *dst, size_t n, enum px_out out)
{
    if (n == 0)
        return;
    if (out == PX_OUT_CHUNKED)
        evbuffer_add_printf(dst, "%zx\r\n", n);
    evbuffer_remove_buffer(src, dst, n);
    if (out == PX_OUT_CHUNKED)
        evbuffer_add(dst, "\r\n", 2);
}

/* Moves what is available of body <b> from <src> to <dst>, re-framed, at
 * most until <dst> holds <upto> bytes. Returns 0, or -1 on a framing error.
 * Sets b->done at the end of a length or chunked body (the end of a
 * close-delimited body is the caller's EOF). */
static int
pump_body_upto(struct px_body *b, struct evbuffer *src, struct evbuffer *dst, size_t upto)
{
    while (!b->done && evbuffer_get_length(dst) < upto) {
        size_t avail = evbuffer_get_length(src), n, used = 0;
        struct evbuffer_iovec v;

        switch (b->framing) {
        case H1_BODY_NONE:
            b->done = true;
            return 0;
        case H1_BODY_LENGTH:
            if (b->left == 0) {
                b->done = true;
                return 0;
            }
            if (avail == 0)
                return 0;
            n = avail < b->left ? avail : (size_t)b->left;
            move(src, dst, n, b->out);
            b->left -= n;
            b->total += n;
            break;
        case H1_BODY_CLOSE:
            if (avail == 0)
                return 0;
            b->total += avail;
            move(src, dst, avail, b->out);
            break;
        case H1_BODY_CHUNKED:
            if (avail == 0)
                return 0;
            if (b->ck.data_left > 0) {
                n = avail < b->ck.data_left ? avail : (size_t)b->ck.data_left;
                move(src, dst, n, b->out);
                h1_chunked_data_consumed(&b->ck, n);
                b->total += n;
                break;
            }
            if (evbuffer_peek(src, -1, NULL, &v, 1) < 1)
                return 0;
            switch (h1_chunked_parse(&b->ck, v.iov_base, v.iov_len, &used)) {
            case H1_CHUNK_BAD:
                return -1;
            case H1_CHUNK_DONE:
                b->done = true;
                if (b->out == PX_OUT_CHUNKED)
                    evbuffer_add(dst, "0\r\n\r\n", 5);
                break;
            case H1_CHUNK_AGAIN:
            case H1_CHUNK_DATA:
                break;
            }
            evbuffer_drain(src, used);
            break;
        }
    }
    return 0;
}

/* pump_body_upto() with the backpressure limit. */
static int
pump_body(struct px_body *b, struct evbuffer *src, struct evbuffer *dst)
{
    return pump_body_upto(b, src, dst, PX_RELAY_HIGH_WM);
}

/* ---- request head ---------------------------------------------------- */

static struct h1_iov
field_value(const struct h1_req *r, const char *name)
{
    const struct h1_field *f = h1_field_find(r->fields, r->nfields, name);
    struct h1_iov none = { NULL, 0 };

    return f != NULL ? f->value : none;
}

/* Fills the router's input from the request. */
static void
route_input(struct px_conn *c, const struct h1_req *r, struct rt_input *in)
{
    const struct rt_conf *rc = &sconf(c)->route;
    struct h1_iov v;
    size_t i;

    memset(in, 0, sizeof(*in));
    in->rand = px_srv_rand(c->srv);
    switch (rc->sticky_by) {
    case RT_STICKY_NONE:
        break;
    case RT_STICKY_COOKIE:
        for (i = 0; i < r->nfields; i++) {
            if (!h1_iov_eq(r->fields[i].name, "cookie"))
                continue;
            v = h1_cookie_find(r->fields[i].value, rc->sticky_name);
            if (v.p != NULL && rt_bucket_parse(v.p, v.len, &in->cookie_bucket) == 0) {
                in->has_cookie_bucket = true;
                break;
            }
        }
        break;
    case RT_STICKY_HEADER:
        v = field_value(r, rc->sticky_name);
        if (v.p != NULL && v.len > 0) {
            in->sticky_key = v.p;
            in->sticky_len = v.len;
        }
        break;
    case RT_STICKY_CLIENT_IP:
        in->sticky_key = c->client_ip;
        in->sticky_len = strlen(c->client_ip);
        break;
    }
    if (rc->has_override) {
        v = field_value(r, rc->override_header);
        if (v.p != NULL) {
            in->override_val = v.p;
            in->override_len = v.len;
        }
    }
}

/* *<b>, taken when a request first needs it (a spare of the loop, else a
 * new one); a connection keeps it until it parks or closes. */
static struct evbuffer *
conn_evbuffer(struct px_conn *c, struct evbuffer **b)
{
    struct px_srv *srv = c->srv;

    if (*b == NULL && srv->nspare_evb > 0)
        *b = srv->spare_evb[--srv->nspare_evb];
    if (*b == NULL && (*b = evbuffer_new()) == NULL) {
        log_at(LL_ERR, "http", c->id, "out of memory");
        abort();
    }
    return *b;
}

/* Rebuilds the upstream request head (without its framing line and final
 * CRLF, added once the body framing is known) into c->up_head. */
static void
build_up_head(struct px_conn *c, const struct h1_req *r)
{
    struct evbuffer *h = conn_evbuffer(c, &c->up_head);
    const struct px_addr *srv = srt_addr(c);
    bool have_xff = false;
    size_t i;

    evbuffer_drain(h, evbuffer_get_length(h));
    evbuffer_add(h, r->method.p, r->method.len);
    evbuffer_add(h, " ", 1);
    evbuffer_add(h, r->target.p, r->target.len);
    evbuffer_add(h, " HTTP/1.1\r\n", 11);
    if (r->host.len == 0)
        evbuffer_add_printf(h, "Host: %s\r\n", srv->text);
    for (i = 0; i < r->nfields; i++) {
        const struct h1_field *f = &r->fields[i];

        if ((f->flags & H1_FF_HOP) || h1_iov_eq(f->name, "x-forwarded-for") ||
            h1_iov_eq(f->name, "x-forwarded-proto") ||
            (r->expect_continue && h1_iov_eq(f->name, "expect")))
            continue;
        evbuffer_add(h, f->name.p, f->name.len);
        evbuffer_add(h, ": ", 2);
        evbuffer_add(h, f->value.p, f->value.len);
        evbuffer_add(h, "\r\n", 2);
    }
    /* X-Forwarded-For: every earlier hop, then the client we saw */
    for (i = 0; i < r->nfields; i++) {
        const struct h1_field *f = &r->fields[i];

        if (!h1_iov_eq(f->name, "x-forwarded-for") || f->value.len == 0)
            continue;
        evbuffer_add(h, have_xff ? ", " : "X-Forwarded-For: ", have_xff ? 2 : 17);
        evbuffer_add(h, f->value.p, f->value.len);
        have_xff = true;
    }
    evbuffer_add_printf(h, "%s%s\r\nX-Forwarded-Proto: http\r\n",
                        have_xff ? ", " : "X-Forwarded-For: ", c->client_ip);
    if (c->req_upgrade) {
        const struct h1_field *u = h1_field_find(r->fields, r->nfields, "upgrade");

        evbuffer_add(h, "Connection: upgrade\r\nUpgrade: ", 30);
        evbuffer_add(h, u->value.p, u->value.len);
        evbuffer_add(h, "\r\n", 2);
    }
}

static void on_upstream_connected(struct px_conn *c);

static void
start_connect(struct px_conn *c)
{
    const struct px_addr *a = srt_addr(c);

    upstream_free(c);
    c->flags &= ~(PX_CF_UP_REUSED | PX_CF_RES_BYTES);
    if (!(c->flags & PX_CF_STALE_RETRY) &&
        (c->up = px_pool_get(c->srt)) != NULL) {
        c->flags |= PX_CF_UP_REUSED;
        bufferevent_disable(c->up, EV_WRITE);   /* output empty: leave() writes */
        set_state(c, PX_CS_CONNECTING);
        on_upstream_connected(c);
        return;
    }
    c->up = bufferevent_socket_new(c->srv->base, -1,
                                   BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (c->up == NULL) {
        reply_error(c, 502, "cannot allocate an upstream connection");
        return;
    }
    set_state(c, PX_CS_CONNECTING);
    /* with DEFER_CALLBACKS an immediate failure is reported through the loop,
     * never from inside this call */
    if (bufferevent_socket_connect(c->up, (const struct sockaddr *)&a->ss, (int)a->len) < 0) {
        upstream_free(c);
        record(c, 0, PX_E_CONNECT);
        reply_error(c, 502, "upstream connect failed at once");
        return;
    }
    px_io_own_reads(c->up);            /* the connect assigned the socket */
}

/* The request body framing is settled: finish the head and connect. */
static void
request_ready(struct px_conn *c)
{
    if (c->req.framing == H1_BODY_LENGTH)
        evbuffer_add_printf(c->up_head, "Content-Length: %" PRIu64 "\r\n",
                            c->req.left +
                            (c->req_buf != NULL ? evbuffer_get_length(c->req_buf) : 0));
    else if (c->req.framing == H1_BODY_CHUNKED)
        evbuffer_add(c->up_head, "Transfer-Encoding: chunked\r\n", 28);
    evbuffer_add(c->up_head, "\r\n", 2);
    start_connect(c);
}

/* Reads a small body into c->req_buf. Returns true when the body is complete
 * or too large to buffer (then it streams), false when more is needed. */
static bool
buffer_body(struct px_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->down);
    const struct px_limits *lim = &sconf(c)->limits;

    if (c->req.framing == H1_BODY_LENGTH) {
        if (c->req.left > lim->buffer_body_bytes)
            return true;                       /* streams after connect */
        conn_evbuffer(c, &c->req_buf);
        if (evbuffer_get_length(in) < c->req.left)
            return false;
        evbuffer_remove_buffer(in, c->req_buf, (size_t)c->req.left);
        c->req.total = c->req.left;
        c->req.left = 0;
        c->req.done = true;
        return true;
    }
    /* chunked: decode into req_buf; resend with Content-Length when it ends
     * within the buffer limit, else stream the rest chunked. Decoding stops
     * one byte past the limit, however much of the body one read brought,
     * so that only a body within it is ever sent with a Content-Length */
    c->req.out = PX_OUT_PLAIN;
    if (pump_body_upto(&c->req, in, conn_evbuffer(c, &c->req_buf),
                       (size_t)lim->buffer_body_bytes + 1) < 0) {
        reply_error(c, 400, c->req.ck.error != NULL ? c->req.ck.error : "bad chunked body");
        return false;
    }
    if (lim->body_bytes > 0 && c->req.total > lim->body_bytes) {
        reply_error(c, 413, "request body over limits.body_bytes");
        return false;
    }
    if (c->req.done) {
        c->req.framing = H1_BODY_LENGTH;
        c->req.left = 0;
        return true;
    }
    if (evbuffer_get_length(c->req_buf) > lim->buffer_body_bytes) {
        c->req.out = PX_OUT_CHUNKED;
        return true;
    }
    return false;
}

/* ---- parking ---------------------------------------------------------- */

/* Gives <b> back to the loop's spares, emptied (or frees it). */
static void
spare_evbuffer(struct px_srv *srv, struct evbuffer **b)
{
    if (*b == NULL)
        return;
    if (srv->nspare_evb < PX_SPARES) {
        evbuffer_drain(*b, evbuffer_get_length(*b));
        srv->spare_evb[srv->nspare_evb++] = *b;
    } else {
        evbuffer_free(*b);
    }
    *b = NULL;
}

/* A client bufferevent on <fd>, reading through io.h: a spare of the loop,
 * else a new one. */
static struct bufferevent *
client_bev(struct px_srv *srv, evutil_socket_t fd)
{
    struct bufferevent *bev;

    if (srv->nspare_bev == 0) {
        if ((bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE)) == NULL)
            return NULL;
    } else {
        bev = srv->spare_bev[--srv->nspare_bev];
        bufferevent_setfd(bev, fd);
    }
    px_io_own_reads(bev);
    return bev;
}

/* Between requests, nothing buffered either way: park() from the loop (not
 * from under the caller, who may still use c->down), in this loop pass. */
static void
park_soon(struct px_conn *c)
{
    if (c->nreq == 0 || (c->flags & (PX_CF_HEAD_TIMER | PX_CF_PARK_SOON | PX_CF_PARKED |
                                     PX_CF_CLOSE | PX_CF_CLIENT_EOF)))
        return;
    c->flags |= PX_CF_PARK_SOON;
    event_active(c->head_timer, EV_TIMEOUT, 1);
}

static void on_parked(evutil_socket_t fd, short what, void *arg);

/* An idle keep-alive connection (a request was served, the response is out,
 * nothing of the next one came yet) gives its bufferevent, up_head, req_buf
 * and the access log's path buffer to the loop's spares, for whichever
 * connection needs them next (so a busy keep-alive connection, which parks
 * between every two requests, allocates nothing for it). The head timer
 * becomes a read event on the socket, timed to client_idle_ms (what
 * set_state(READ_HEAD) just started); the first byte or the close from the
 * client brings the connection back (on_parked()). A parked connection
 * holds its struct px_conn and that one event; the loop holds about as many
 * buffers as it has busy connections (at most PX_SPARES spare ones).
 *
 * Event interest stays as it was: the parked event is added on the socket
 * before the bufferevent's read event goes, and deleted only after it came
 * back, so libevent's per-fd count never drops to zero and no epoll_ctl is
 * made for it; the write event is only taken off where the write callback
 * would have taken it off (the output is empty). */
static void
park(struct px_conn *c)
{
    struct timeval tv = ms_tv(sconf(c)->timeouts.client_idle_ms);
    evutil_socket_t fd;

    if (c->state != PX_CS_READ_HEAD || c->nreq == 0 || c->up != NULL ||
        (c->flags & (PX_CF_CLOSE | PX_CF_CLIENT_EOF | PX_CF_HEAD_TIMER | PX_CF_PARKED)) ||
        (fd = bufferevent_getfd(c->down)) < 0 ||
        evbuffer_get_length(bufferevent_get_input(c->down)) != 0 ||
        evbuffer_get_length(bufferevent_get_output(c->down)) != 0)
        return;
    /* persistent: libevent deletes a plain event before its callback, which
     * would drop the fd from epoll until unpark() adds it back */
    event_assign(c->head_timer, c->srv->base, fd, EV_READ | EV_PERSIST, on_parked, c);
    if (event_add(c->head_timer, &tv) < 0) {
        event_assign(c->head_timer, c->srv->base, -1, 0, on_head_timeout, c);
        return;                        /* stays as it is */
    }
    bufferevent_disable(c->down, EV_READ | EV_WRITE);
    bufferevent_setfd(c->down, -1);    /* the socket stays open: it is parked */
    bufferevent_setcb(c->down, NULL, NULL, NULL, NULL);   /* it leaves <c> (set_state) */
    if (c->srv->nspare_bev < PX_SPARES)
        c->srv->spare_bev[c->srv->nspare_bev++] = c->down;
    else
        bufferevent_free(c->down);
    c->down = NULL;
    spare_evbuffer(c->srv, &c->up_head);
    spare_evbuffer(c->srv, &c->req_buf);
    if (c->log_path != NULL && c->srv->nspare_path < PX_SPARES)
        c->srv->spare_path[c->srv->nspare_path++] = c->log_path;
    else
        free(c->log_path);
    c->log_path = NULL;
    c->flags |= PX_CF_PARKED;
}

/* The client of a parked connection sent something (or closed): it gets a
 * bufferevent again, in the state park() left, and that bufferevent reads
 * in this loop pass. Returns false when none can be allocated. */
static bool
unpark(struct px_conn *c, evutil_socket_t fd)
{
    struct bufferevent *bev = client_bev(c->srv, fd);

    if (bev == NULL) {
        log_at(LL_ERR, "http", c->id, "cannot allocate a connection");
        return false;
    }
    c->down = bev;
    /* as set_state(READ_HEAD) left it before park() (nreq > 0: the idle
     * timeout), callbacks included; reading is enabled while the parked
     * event still holds the fd */
    set_state(c, PX_CS_READ_HEAD);
    /* writing stays allowed as set_state(READ_HEAD) left it, but the write
     * event is added only when output is queued (as after the write
     * callback found the output empty), not at once */
    bev->enabled |= EV_WRITE;
    event_del(c->head_timer);
    event_assign(c->head_timer, c->srv->base, -1, 0, on_head_timeout, c);
    c->flags &= ~PX_CF_PARKED;
    event_active(&bev->ev_read, EV_READ, 1);   /* the bytes are there: read now */
    return true;
}

static void
on_parked(evutil_socket_t fd, short what, void *arg)
{
    struct px_conn *c = arg;

    enter(c);
    if (what & EV_TIMEOUT)
        mark_close(c);                 /* idle keep-alive: silent, as unparked */
    else if (!unpark(c, fd))
        mark_close(c);
    leave(c);
}

/* Parses a request head from the client input when one is complete. */
static void
read_head(struct px_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->down);
    const struct px_limits *lim = &sconf(c)->limits;
    struct h1_parse_limits pl = { lim->headers, lim->uri_bytes };
    size_t len = evbuffer_get_length(in), n;
    struct h1_req r;
    struct rt_input rin;
    struct rt_choice ch;
    const char *p;
    enum h1_parse pr;

    if (len == 0) {
        park_soon(c);
        return;
    }
    if (!(c->flags & PX_CF_HEAD_TIMER)) {
        struct timeval tv = ms_tv(sconf(c)->timeouts.client_head_ms);

        evtimer_add(c->head_timer, &tv);   /* cancels a park_soon() */
        c->flags |= PX_CF_HEAD_TIMER;
        c->flags &= ~PX_CF_PARK_SOON;
    }
    n = len < lim->head_bytes ? len : lim->head_bytes;
    /* linearises only the head bytes (bounded by head_bytes), never a body */
    p = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
    memset(&r, 0, sizeof(r));
    r.fields = head_fields(c->srv, pl.max_fields);
    pr = h1_req_parse(&r, p, n, &pl);
    if (pr == H1_PARSE_AGAIN) {
        if (n >= lim->head_bytes)
            reply_error(c, 431, "request head over limits.head_bytes");
        return;
    }
    if (pr == H1_PARSE_BAD) {
        reply_error(c, r.status, r.error != NULL ? r.error : "bad request");
        return;
    }

    evtimer_del(c->head_timer);
    c->flags &= ~PX_CF_HEAD_TIMER;
    c->nreq++;
    c->t_req_us = px_now_us(c->srv);
    if (c->srv->access_log != NULL)
        log_begin(c, &r);
    c->req_minor = r.minor;
    c->req_is_head = h1_iov_eq(r.method, "HEAD");
    c->req_idempotent = h1_iov_eq(r.method, "GET") || c->req_is_head ||
                        h1_iov_eq(r.method, "OPTIONS") || h1_iov_eq(r.method, "TRACE") ||
                        h1_iov_eq(r.method, "PUT") || h1_iov_eq(r.method, "DELETE");
    c->req_upgrade = r.upgrade && h1_field_find(r.fields, r.nfields, "upgrade") != NULL;
    if (!r.keep_alive)
        c->flags |= PX_CF_NO_KEEPALIVE;
    memset(&c->req, 0, sizeof(c->req));
    c->req.framing = r.framing;
    c->req.left = r.framing == H1_BODY_LENGTH ? r.content_length : 0;
    c->req.out = r.framing == H1_BODY_CHUNKED ? PX_OUT_CHUNKED : PX_OUT_PLAIN;
    h1_chunked_init(&c->req.ck);
    c->req.ck.max_ext = sconf(c)->limits.chunk_ext_bytes;
    c->req.done = r.framing == H1_BODY_NONE ||
                  (r.framing == H1_BODY_LENGTH && r.content_length == 0);

    if (r.framing == H1_BODY_LENGTH && lim->body_bytes > 0 &&
        r.content_length > lim->body_bytes) {
        reply_error(c, 413, "Content-Length over limits.body_bytes");
        return;
    }

    route_input(c, &r, &rin);
    rt_choose(c->svc->snap, &c->svc->cursor, &rin, &ch);
    if (ch.side == RT_NONE) {
        c->side = RT_NONE;
        c->svc->stats[RT_LEGACY].errors[PX_E_NO_SERVER]++;
        c->log_error = px_err_names[PX_E_NO_SERVER];
        reply_error(c, 503, "no side has a usable server");
        return;
    }
    c->side = ch.side;
    bind_server(c, c->svc->servers[ch.side][ch.server]);
    c->fallback = ch.fallback;
    c->log_why = ch.reason;
    c->issue_cookie = ch.issue_cookie;
    c->bucket = ch.bucket;
    c->svc->stats[ch.side].requests++;
    if (ch.fallback)
        c->svc->stats[ch.side].fallbacks++;
    c->srt->requests++;
    log_at(LL_DEBUG, "http", c->id, "%.*s %.*s -> %s server %u (%s)",
           (int)r.method.len, r.method.p, (int)r.target.len, r.target.p,
           rt_side_names[ch.side], ch.server, rt_reason_names[ch.reason]);

    build_up_head(c, &r);
    /* the head is consumed only now that it was parsed: fields point into it */
    evbuffer_drain(in, r.head_len);
    if (r.expect_continue && !c->req.done && c->req_minor == 1)
        evbuffer_add(bufferevent_get_output(c->down), "HTTP/1.1 100 Continue\r\n\r\n", 25);

    if (c->req.done || buffer_body(c)) {
        if (c->state != PX_CS_DRAINING)
            request_ready(c);
        return;
    }
    if (c->state != PX_CS_DRAINING)
        set_state(c, PX_CS_READ_BODY);
}

/* Serves whatever the client input allows in the current state. */
static void
process(struct px_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->down);

    switch (c->state) {
    case PX_CS_READ_HEAD:
        if (evbuffer_get_length(in) == 0 && (c->flags & PX_CF_CLIENT_EOF)) {
            mark_close(c);
            return;
        }
        /* a reload while this connection waited: the head is read with the
         * service's current conf */
        if (!conn_refresh_conf(c)) {
            mark_close(c);
            return;
        }
        read_head(c);
        break;
    case PX_CS_READ_BODY:
        if (buffer_body(c) && c->state == PX_CS_READ_BODY)
            request_ready(c);
        else if (c->state == PX_CS_READ_BODY && (c->flags & PX_CF_CLIENT_EOF))
            mark_close(c);             /* body cut short: nothing reached a backend */
        break;
    case PX_CS_EXCHANGE:
        if (!c->req.done && c->up != NULL) {
            struct evbuffer *dst = bufferevent_get_output(c->up);

            if (!(c->flags & PX_CF_REQ_STREAMED) && evbuffer_get_length(in) > 0)
                c->flags |= PX_CF_REQ_STREAMED;
            if (pump_body(&c->req, in, dst) < 0) {
                /* the backend must never see a complete request from this:
                 * close the upstream before the last chunk goes out */
                upstream_free(c);
                reply_error(c, 400, c->req.ck.error != NULL ? c->req.ck.error
                                                            : "bad chunked body");
                return;
            }
            if (sconf(c)->limits.body_bytes > 0 &&
                c->req.total > sconf(c)->limits.body_bytes) {
                upstream_free(c);
                reply_error(c, 413, "request body over limits.body_bytes");
                return;
            }
            if (c->req.done) {
                bufferevent_disable(c->down, EV_READ);
                if (!c->res_head_done) {
                    struct timeval tv_r = ms_tv(sconf(c)->timeouts.server_response_ms);
                    struct timeval tv_w = ms_tv(sconf(c)->timeouts.server_idle_ms);

                    bufferevent_set_timeouts(c->up, &tv_r, &tv_w);
                    arm_response_deadline(c);
                }
            } else if (px_relay_room(c->down, c->up, px_io_flush(c->up), PX_IO_READ_MAX) &&
                       (c->flags & PX_CF_CLIENT_EOF)) {
                /* the client stopped sending mid-body */
                upstream_free(c);
                mark_close(c);
            }
        }
        break;
    default:
        break;
    }
}

/* ---- response -------------------------------------------------------- */

/* Between requests (no side, no server bound): takes the service's current
 * conf when a reload changed it, so a keep-alive client gets the new
 * timeouts, limits and routing keys from its next request on. Returns false
 * when the connection cannot go on (the service is now a TCP service). */
static bool
conn_refresh_conf(struct px_conn *c)
{
    struct px_service *svc = c->svc;

    if (c->conf == svc->conf)
        return true;
    if (svc->conf->mode != PX_MODE_HTTP)
        return false;
    if (c->state == PX_CS_READ_HEAD && svc->conf->limits.head_bytes != c->conf->limits.head_bytes)
        bufferevent_setwatermark(c->down, EV_READ, 0, svc->conf->limits.head_bytes);
    px_confref_get(svc->cref);
    px_confref_put(c->cref);
    c->cref = svc->cref;
    c->conf = svc->conf;
    return true;
}

/* The response is complete: close the upstream and wait for the next
 * request, or close the client connection. */
static void
finish_exchange(struct px_conn *c)
{
    if (c->log_pending)
        log_request(c, NULL);
    if (c->up != NULL && c->res_keep_alive && c->req.done &&
        sconf(c)->pool.max_idle > 0) {
        px_pool_put(c->svc, c->srt, c->up);   /* the pool owns it now */
        c->up = NULL;
    }
    upstream_free(c);
    if (!c->req.done)
        c->flags |= PX_CF_NO_KEEPALIVE;   /* unread request body: cannot resync */
    if (c->flags & (PX_CF_NO_KEEPALIVE | PX_CF_CLIENT_EOF)) {
        set_state(c, PX_CS_DRAINING);
        return;
    }
    c->flags &= ~(PX_CF_RES_STARTED | PX_CF_RETRIED | PX_CF_REQ_STREAMED |
                  PX_CF_UP_REUSED | PX_CF_STALE_RETRY | PX_CF_RES_BYTES);
    c->res_head_done = false;
    c->res_recorded = false;
    c->side = RT_NONE;
    bind_server(c, NULL);
    if (!conn_refresh_conf(c)) {
        set_state(c, PX_CS_DRAINING);
        return;
    }
    if (c->req_buf != NULL)
        evbuffer_drain(c->req_buf, evbuffer_get_length(c->req_buf));
    set_state(c, PX_CS_READ_HEAD);
    process(c);                       /* a pipelined request may be waiting */
}

static void
write_response_head(struct px_conn *c, const struct h1_resp *r)
{
    struct evbuffer *out = bufferevent_get_output(c->down);
    const struct rt_conf *rc = &sconf(c)->route;
    bool chunk_ok = c->req_minor == 1;
    size_t i;

    c->res.framing = r->framing;
    c->res.left = r->framing == H1_BODY_LENGTH ? r->content_length : 0;
    c->res.out = PX_OUT_PLAIN;
    if (r->framing == H1_BODY_CHUNKED || r->framing == H1_BODY_CLOSE) {
        if (chunk_ok)
            c->res.out = PX_OUT_CHUNKED;
        else
            c->flags |= PX_CF_NO_KEEPALIVE;   /* HTTP/1.0: delimit by close */
    }
    if (!c->req.done)
        c->flags |= PX_CF_NO_KEEPALIVE;

    evbuffer_add_printf(out, "HTTP/1.1 %d ", r->status);
    evbuffer_add(out, r->reason.p, r->reason.len);
    evbuffer_add(out, "\r\n", 2);
    /* like write_fields(), but a HEAD or 304 answer keeps its length */
    for (i = 0; i < r->nfields; i++) {
        const struct h1_field *f = &r->fields[i];

        /* a HEAD or 304 answer keeps the length of the representation */
        if ((f->flags & H1_FF_HOP) &&
            !(r->framing == H1_BODY_NONE && h1_iov_eq(f->name, "content-length")))
            continue;
        evbuffer_add(out, f->name.p, f->name.len);
        evbuffer_add(out, ": ", 2);
        evbuffer_add(out, f->value.p, f->value.len);
        evbuffer_add(out, "\r\n", 2);
    }
    if (r->framing == H1_BODY_LENGTH)
        evbuffer_add_printf(out, "Content-Length: %" PRIu64 "\r\n", r->content_length);
    else if (c->res.out == PX_OUT_CHUNKED)
        evbuffer_add(out, "Transfer-Encoding: chunked\r\n", 28);
    if (c->issue_cookie)
        evbuffer_add_printf(out, "Set-Cookie: %s=%u; Path=/; Max-Age=2592000; HttpOnly; "
                            "SameSite=Lax\r\n", rc->sticky_name, (unsigned)c->bucket);
    if (c->flags & (PX_CF_NO_KEEPALIVE | PX_CF_CLIENT_EOF))
        evbuffer_add(out, "Connection: close\r\n", 19);
    else if (c->req_minor == 0)
        evbuffer_add(out, "Connection: keep-alive\r\n", 24);
    evbuffer_add(out, "\r\n", 2);
    c->flags |= PX_CF_RES_STARTED;
}

static void
write_fields(struct evbuffer *out, const struct h1_resp *r)
{
    size_t i;

    for (i = 0; i < r->nfields; i++) {
        const struct h1_field *f = &r->fields[i];

        if (f->flags & H1_FF_HOP)
            continue;
        evbuffer_add(out, f->name.p, f->name.len);
        evbuffer_add(out, ": ", 2);
        evbuffer_add(out, f->value.p, f->value.len);
        evbuffer_add(out, "\r\n", 2);
    }
}

static void
write_interim_head(struct px_conn *c, const struct h1_resp *r)
{
    struct evbuffer *out = bufferevent_get_output(c->down);

    evbuffer_add_printf(out, "HTTP/1.1 %d ", r->status);
    evbuffer_add(out, r->reason.p, r->reason.len);
    evbuffer_add(out, "\r\n", 2);
    write_fields(out, r);
    evbuffer_add(out, "\r\n", 2);
}

/* A valid 101 to an Upgrade request: forward it and relay raw bytes. */
static void
start_tunnel(struct px_conn *c, const struct h1_resp *r)
{
    struct evbuffer *out = bufferevent_get_output(c->down);
    struct evbuffer *in = bufferevent_get_input(c->up);
    const struct h1_field *u = h1_field_find(r->fields, r->nfields, "upgrade");

    if (u == NULL) {
        upstream_free(c);
        record(c, 0, PX_E_UP_BAD);
        reply_error(c, 502, "101 without an Upgrade field from upstream");
        return;
    }
    record(c, r->status, PX_E_NONE);
    evbuffer_add(out, "HTTP/1.1 101 Switching Protocols\r\n", 34);
    write_fields(out, r);
    evbuffer_add(out, "Connection: upgrade\r\nUpgrade: ", 30);
    evbuffer_add(out, u->value.p, u->value.len);
    evbuffer_add(out, "\r\n\r\n", 4);
    evbuffer_drain(in, r->head_len);
    c->flags |= PX_CF_RES_STARTED | PX_CF_NO_KEEPALIVE;
    c->res_head_done = true;
    evtimer_del(c->head_timer);
    c->last_io_ms = px_now_ms(c->srv);
    log_at(LL_DEBUG, "http", c->id, "upgraded: tunnel to %s",
           srt_addr(c)->text);
    set_state(c, PX_CS_TUNNEL);
    /* bytes that followed the 101 in either direction */
    evbuffer_add_buffer(out, in);
    evbuffer_add_buffer(bufferevent_get_output(c->up), bufferevent_get_input(c->down));
    (void)px_relay_room(c->up, c->down, evbuffer_get_length(out), PX_IO_READ_MAX);
    (void)px_relay_room(c->down, c->up, evbuffer_get_length(bufferevent_get_output(c->up)),
                        PX_IO_READ_MAX);
}

/* Tunnel: moves what <from> read to <to>, with backpressure. */
static void
tunnel_relay(struct px_conn *c, struct bufferevent *from, struct bufferevent *to)
{
    c->last_io_ms = px_now_ms(c->srv);
    (void)px_relay_move(from, to);
}

/* Parses the response head from the upstream input. Returns true once it
 * was parsed and written to the client. */
static bool
read_response_head(struct px_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->up);
    const struct px_limits *lim = &sconf(c)->limits;
    struct h1_parse_limits pl = { lim->headers, lim->uri_bytes };
    struct h1_resp r;
    struct timeval tv;
    const char *p;
    size_t len, n;
    enum h1_parse pr;

    for (;;) {
        len = evbuffer_get_length(in);
        if (len == 0)
            return false;
        n = len < lim->head_bytes ? len : lim->head_bytes;
        p = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
        memset(&r, 0, sizeof(r));
        r.fields = head_fields(c->srv, pl.max_fields);
        pr = h1_resp_parse(&r, p, n, &pl, c->req_is_head);
        if (pr == H1_PARSE_AGAIN) {
            if (n < lim->head_bytes)
                return false;
            r.error = "response head over limits.head_bytes";
            pr = H1_PARSE_BAD;
        }
        if (pr == H1_PARSE_BAD) {
            px_req_warn(c->svc, "http", c->id, "invalid response from %s: %s",
                   srt_addr(c)->text,
                   r.error != NULL ? r.error : "?");
            upstream_free(c);
            record(c, 0, PX_E_UP_BAD);
            reply_error(c, 502, "invalid response from upstream");
            return false;
        }
        if (r.status == 101) {
            if (c->req_upgrade && c->req.done) {
                start_tunnel(c, &r);
                return false;
            }
            upstream_free(c);
            record(c, 0, PX_E_UP_BAD);
            reply_error(c, 502, "unrequested protocol switch from upstream");
            return false;
        }
        if (r.status < 200) {
            /* interim responses: 100 Continue was answered by the proxy
             * itself (Expect is not forwarded); others (103) go to HTTP/1.1
             * clients as they are */
            if (r.status != 100 && c->req_minor == 1)
                write_interim_head(c, &r);
            evbuffer_drain(in, r.head_len);
            continue;
        }
        break;
    }
    c->res_keep_alive = r.keep_alive;
    c->res_head_done = true;
    evtimer_del(c->head_timer);
    c->res_status = r.status;
    record(c, r.status, PX_E_NONE);
    write_response_head(c, &r);
    evbuffer_drain(in, r.head_len);
    memset(&c->res.ck, 0, sizeof(c->res.ck));
    h1_chunked_init(&c->res.ck);
    c->res.ck.max_ext = sconf(c)->limits.chunk_ext_bytes;
    c->res.total = 0;
    c->res.done = r.framing == H1_BODY_NONE ||
                  (r.framing == H1_BODY_LENGTH && r.content_length == 0);
    /* from now on the upstream may be idle at most server_idle_ms */
    tv = ms_tv(sconf(c)->timeouts.server_idle_ms);
    bufferevent_set_timeouts(c->up, &tv, &tv);
    return true;
}

static void
pump_response(struct px_conn *c)
{
    struct evbuffer *out = bufferevent_get_output(c->down);

    if (!c->res_head_done && !read_response_head(c))
        return;
    if (pump_body(&c->res, bufferevent_get_input(c->up), out) < 0) {
        px_req_warn(c->svc, "http", c->id, "bad response body framing from %s: %s",
               srt_addr(c)->text,
               c->res.ck.error != NULL ? c->res.ck.error : "?");
        c->svc->stats[c->side].errors[PX_E_UP_BAD]++;
        c->log_error = px_err_names[PX_E_UP_BAD];
        /* the client sees a cut response, never a final chunk */
        c->flags |= PX_CF_NO_KEEPALIVE;
        set_state(c, PX_CS_DRAINING);
        return;
    }
    if (c->res.done) {
        finish_exchange(c);
        return;
    }
    /* the head is in: the body is read in bulk */
    (void)px_relay_room(c->up, c->down, px_io_flush(c->down), PX_IO_READ_MAX);
}

/* ---- callbacks ------------------------------------------------------- */

static void
on_client_read(struct bufferevent *bev, void *arg)
{
    struct px_conn *c = arg;

    (void)bev;
    enter(c);
    if (c->state == PX_CS_TUNNEL)
        tunnel_relay(c, c->down, c->up);
    else if (!(c->flags & PX_CF_CLOSE))
        process(c);
    leave(c);
}

/* <bev> drained below its low watermark: let <peer> read again. */
static void
tunnel_drained(struct px_conn *c, struct bufferevent *bev, struct bufferevent *peer)
{
    c->last_io_ms = px_now_ms(c->srv);
    px_relay_drained(bev, peer, PX_IO_READ_MAX, true);
}

/* A timeout in the tunnel: close only when neither direction moved a byte
 * for server_idle_ms. */
static void
tunnel_timeout(struct px_conn *c, struct bufferevent *bev, short what)
{
    if (!px_relay_timeout(bev, what, px_now_ms(c->srv) - c->last_io_ms,
                          sconf(c)->timeouts.server_idle_ms, true))
        return;
    log_at(LL_DEBUG, "http", c->id, "tunnel idle for %u ms: closed",
           sconf(c)->timeouts.server_idle_ms);
    mark_close(c);
}

static void
on_client_write(struct bufferevent *bev, void *arg)
{
    struct px_conn *c = arg;

    (void)bev;
    enter(c);
    if (c->state == PX_CS_DRAINING) {
        if (evbuffer_get_length(bufferevent_get_output(c->down)) == 0)
            mark_close(c);
    } else if (c->state == PX_CS_TUNNEL) {
        tunnel_drained(c, c->down, c->up);
    } else if (c->state == PX_CS_EXCHANGE && c->up != NULL) {
        /* the client drained below the low watermark: read upstream again */
        px_relay_drained(c->down, c->up, c->res_head_done ? PX_IO_READ_MAX : PX_IO_READ_HEAD,
                         true);
        pump_response(c);
    } else if (c->state == PX_CS_READ_HEAD) {
        park_soon(c);                  /* the last response is out */
    }
    leave(c);
}

static void
on_client_event(struct bufferevent *bev, short what, void *arg)
{
    struct px_conn *c = arg;

    (void)bev;
    enter(c);
    if (c->state == PX_CS_TUNNEL) {
        if (what & BEV_EVENT_TIMEOUT)
            tunnel_timeout(c, c->down, what);
        else
            mark_close(c);             /* the client ended the tunnel */
    } else if (what & BEV_EVENT_TIMEOUT) {
        if (c->state == PX_CS_READ_HEAD && evbuffer_get_length(bufferevent_get_input(c->down)) > 0) {
            reply_error(c, 408, "client head timeout");
        } else if ((what & BEV_EVENT_READING) && !c->req.done &&
                   (c->state == PX_CS_READ_BODY || c->state == PX_CS_EXCHANGE)) {
            /* the client stopped sending its body: the upstream request
             * (never complete) is aborted, not a backend failure */
            c->res_recorded = true;
            upstream_free(c);
            reply_error(c, 408, "client body timeout");
        } else {
            mark_close(c);             /* idle keep-alive or a client not reading: silent */
        }
    } else if ((what & BEV_EVENT_EOF) && (what & BEV_EVENT_READING)) {
        c->flags |= PX_CF_CLIENT_EOF;
        switch (c->state) {
        case PX_CS_READ_HEAD:
        case PX_CS_READ_BODY:
            process(c);
            if (!(c->flags & PX_CF_CLOSE) &&
                (c->state == PX_CS_READ_HEAD || c->state == PX_CS_READ_BODY))
                mark_close(c);         /* an incomplete request: nothing to answer */
            break;
        case PX_CS_CONNECTING:
        case PX_CS_EXCHANGE:
            /* the client went away before its answer was complete: abort
             * the upstream request (its connection is closed, never pooled);
             * not a backend failure */
            log_at(LL_DEBUG, "http", c->id, "client closed while %s: upstream aborted",
                   px_cs_actions[c->state]);
            c->res_recorded = true;
            mark_close(c);
            break;
        default:
            mark_close(c);
            break;
        }
    } else {
        /* error: the client is gone; the backend is not at fault */
        c->res_recorded = true;
        mark_close(c);
    }
    leave(c);
}

static void
on_head_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct px_conn *c = arg;

    (void)fd;
    (void)what;
    enter(c);
    c->flags &= ~PX_CF_HEAD_TIMER;
    if (c->flags & PX_CF_PARK_SOON) {
        c->flags &= ~PX_CF_PARK_SOON;
        park(c);
    } else if (c->state == PX_CS_READ_HEAD) {
        reply_error(c, 408, "client head timeout");
    } else if (c->state == PX_CS_EXCHANGE && !c->res_head_done && c->up != NULL) {
        upstream_free(c);
        record(c, 0, PX_E_UP_TIMEOUT);
        reply_error(c, 504, "no complete response head in time");
    }
    leave(c);
}

/* Appends the contents of <kept> to <out> without consuming <kept>. */
static void
send_kept(struct evbuffer *out, struct evbuffer *kept)
{
    size_t n = kept != NULL ? evbuffer_get_length(kept) : 0;

    if (n == 0)
        return;
    if (evbuffer_add_buffer_reference(out, kept) < 0)
        evbuffer_add(out, evbuffer_pullup(kept, -1), n);   /* bounded: head or small body */
}

static void
on_upstream_connected(struct px_conn *c)
{
    struct evbuffer *out = bufferevent_get_output(c->up);

    log_at(LL_DEBUG, "http", c->id, "%s %s",
           (c->flags & PX_CF_UP_REUSED) ? "reusing a connection to" : "connected to",
           srt_addr(c)->text);
    /* the head and a buffered body are shared, not moved, so that a resend
     * after a stale pooled connection still has them */
    send_kept(out, c->up_head);
    if (c->req.out == PX_OUT_PLAIN) {
        send_kept(out, c->req_buf);
    } else if (c->req_buf != NULL && evbuffer_get_length(c->req_buf) > 0) {
        move(c->req_buf, out, evbuffer_get_length(c->req_buf), c->req.out);
        c->flags |= PX_CF_REQ_STREAMED;
    }
    if (c->req.done && c->req.out == PX_OUT_CHUNKED)
        evbuffer_add(out, "0\r\n\r\n", 5);
    set_state(c, PX_CS_EXCHANGE);
    /* the response head first: a small response takes one such read; the
     * client's output may still hold a pipelined client's last response */
    (void)px_relay_room(c->up, c->down, evbuffer_get_length(bufferevent_get_output(c->down)),
                        PX_IO_READ_HEAD);
    process(c);
}

/* A connect failed: retry once on another server of the same side while no
 * byte of the request body was consumed from the client, else answer. */
static void
on_connect_failed(struct px_conn *c, enum px_err err)
{
    struct px_server_rt *other;
    const char *addr = srt_addr(c)->text;

    px_req_warn(c->svc, "http", c->id, "%s server %s: %s", rt_side_names[c->side], addr,
           err == PX_E_CONNECT_TIMEOUT ? "connect timeout" : "connect failed");
    upstream_free(c);
    if (!(c->flags & PX_CF_RETRIED) &&
        (other = px_service_other_server(c->svc, c->side, c->srt)) != NULL) {
        /* counted here: the request's own outcome is that of the retry */
        c->svc->stats[c->side].errors[err]++;
        c->srt->failures++;
        c->flags |= PX_CF_RETRIED;
        bind_server(c, other);
        other->requests++;
        start_connect(c);
        return;
    }
    record(c, 0, err);
    reply_error(c, err == PX_E_CONNECT_TIMEOUT ? 504 : 502, px_err_names[err]);
}

static void
on_upstream_read(struct bufferevent *bev, void *arg)
{
    struct px_conn *c = arg;

    (void)bev;
    enter(c);
    if (c->state == PX_CS_TUNNEL) {
        tunnel_relay(c, c->up, c->down);
    } else if (c->state == PX_CS_EXCHANGE) {
        /* a deferred callback queued for a pooled connection's previous
         * use may run with nothing read: not a response byte */
        if (evbuffer_get_length(bufferevent_get_input(c->up)) > 0)
            c->flags |= PX_CF_RES_BYTES;
        pump_response(c);
    }
    leave(c);
}

static void
on_upstream_write(struct bufferevent *bev, void *arg)
{
    struct px_conn *c = arg;

    (void)bev;
    enter(c);
    if (c->state == PX_CS_TUNNEL) {
        tunnel_drained(c, c->up, c->down);
    } else if (c->state == PX_CS_EXCHANGE && !c->req.done) {
        /* upstream drained below the low watermark: read the client again */
        px_relay_drained(c->up, c->down, PX_IO_READ_MAX, true);
        process(c);
    }
    leave(c);
}

static void
on_upstream_event(struct bufferevent *bev, short what, void *arg)
{
    struct px_conn *c = arg;

    (void)bev;
    enter(c);
    if (c->state == PX_CS_TUNNEL) {
        if (what & BEV_EVENT_TIMEOUT) {
            tunnel_timeout(c, c->up, what);
        } else {
            /* the server ended the tunnel: flush what it sent, then close */
            evbuffer_add_buffer(bufferevent_get_output(c->down), bufferevent_get_input(c->up));
            set_state(c, PX_CS_DRAINING);
        }
    } else if (c->state == PX_CS_CONNECTING) {
        if (what & BEV_EVENT_CONNECTED)
            on_upstream_connected(c);
        else
            on_connect_failed(c, (what & BEV_EVENT_TIMEOUT) ? PX_E_CONNECT_TIMEOUT
                                                             : PX_E_CONNECT);
    } else if (c->state == PX_CS_EXCHANGE) {
        if (what & BEV_EVENT_TIMEOUT) {
            if (!c->res_head_done) {
                upstream_free(c);
                record(c, 0, PX_E_UP_TIMEOUT);
                reply_error(c, 504, "no response head in time");
            } else {
                c->svc->stats[c->side].errors[PX_E_UP_TIMEOUT]++;
                c->log_error = px_err_names[PX_E_UP_TIMEOUT];
                c->flags |= PX_CF_NO_KEEPALIVE;
                set_state(c, PX_CS_DRAINING);
            }
        } else {
            /* EOF or error: whatever is buffered is still valid input */
            pump_response(c);
            if (c->state == PX_CS_EXCHANGE && c->up != NULL) {
                if (!c->res_head_done && !(c->flags & PX_CF_RES_BYTES) &&
                    (c->flags & PX_CF_UP_REUSED) && !(c->flags & PX_CF_STALE_RETRY) &&
                    c->req_idempotent && !(c->flags & PX_CF_REQ_STREAMED)) {
                    /* a pooled connection the server had closed: resend
                     * once on a fresh one; not a backend failure */
                    log_at(LL_DEBUG, "http", c->id, "pooled connection to %s was closed: "
                           "resending", srt_addr(c)->text);
                    c->flags |= PX_CF_STALE_RETRY;
                    start_connect(c);
                } else if (!c->res_head_done) {
                    upstream_free(c);
                    record(c, 0, PX_E_UP_RESET);
                    reply_error(c, 502, "upstream closed before a response");
                } else if (c->res.framing == H1_BODY_CLOSE && (what & BEV_EVENT_EOF)) {
                    c->res.done = true;
                    if (c->res.out == PX_OUT_CHUNKED)
                        evbuffer_add(bufferevent_get_output(c->down), "0\r\n\r\n", 5);
                    finish_exchange(c);
                } else {
                    /* cut mid-body: the client must see a broken response */
                    c->svc->stats[c->side].errors[PX_E_UP_RESET]++;
                    c->log_error = px_err_names[PX_E_UP_RESET];
                    px_req_warn(c->svc, "http", c->id, "upstream %s closed mid-body",
                           srt_addr(c)->text);
                    c->flags |= PX_CF_NO_KEEPALIVE;
                    set_state(c, PX_CS_DRAINING);
                }
            }
        }
    }
    leave(c);
}

/* ---- public ---------------------------------------------------------- */

void
px_http_accept(struct px_service *svc, int fd, const struct sockaddr *sa, int salen)
{
    struct px_srv *srv = svc->srv;
    struct px_conn *c = xcalloc(1, sizeof(*c));

    (void)salen;
    c->svc = svc;
    c->srv = srv;
    c->id = px_srv_conn_id(srv);
    c->cref = px_confref_get(svc->cref);
    c->conf = svc->conf;
    c->side = RT_NONE;
    c->state = PX_CS_CLOSED;           /* set_state() below moves it */
    px_sockaddr_ip(sa, c->client_ip, sizeof(c->client_ip));
    c->client_port = px_sockaddr_port(sa);
    c->head_timer = evtimer_new(srv->base, on_head_timeout, c);
    c->down = client_bev(srv, fd);
    list_push(&svc->conns, &c->link);
    if (c->head_timer == NULL || c->down == NULL) {
        log_at(LL_ERR, "http", c->id, "cannot allocate a connection");
        if (c->down == NULL)
            evutil_closesocket(fd);
        conn_close_now(c);
        return;
    }
    log_at(LL_DEBUG, "http", c->id, "accepted from %s on service %s", c->client_ip,
           svc->conf->name);
    set_state(c, PX_CS_READ_HEAD);
}

void
px_http_close_idle(struct px_service *svc)
{
    struct list *pos, *next;

    for (pos = svc->conns.next; pos != &svc->conns; pos = next) {
        struct px_conn *c = list_entry(pos, struct px_conn, link);

        next = pos->next;
        if (c->busy == 0 && c->state == PX_CS_READ_HEAD &&
            (c->down == NULL || evbuffer_get_length(bufferevent_get_input(c->down)) == 0)) {
            conn_close_now(c);
            /* the last connection of a retired service frees it */
            if (next == &svc->conns)
                return;
        } else {
            c->flags |= PX_CF_NO_KEEPALIVE;   /* finish the current request, then close */
        }
    }
}

void
px_http_close_all(struct px_service *svc)
{
    while (!list_empty(&svc->conns))
        conn_close_now(list_entry(svc->conns.next, struct px_conn, link));
}

void
px_http_loop_free(struct px_srv *srv)
{
    while (srv->nspare_bev > 0)
        bufferevent_free(srv->spare_bev[--srv->nspare_bev]);
    while (srv->nspare_evb > 0)
        evbuffer_free(srv->spare_evb[--srv->nspare_evb]);
    while (srv->nspare_path > 0)
        free(srv->spare_path[--srv->nspare_path]);
    free(srv->hfields);
    srv->hfields = NULL;
    srv->hfields_n = 0;
}
