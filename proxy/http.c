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
 * A side with "tls" connects through proxy/tls_up.c (a failed connect is
 * classified there: connect, tls_verify, tls_handshake, each retried like a
 * refused connect); such a connection is pooled like a plain one. Over TLS
 * a close-delimited response ends only with the server's close_notify.
 *
 * An Upgrade request (WebSocket) answered with a valid 101 turns the
 * connection into a tunnel: bytes are relayed both ways until either peer
 * closes.
 *
 * This file is the state machine; the heads and bodies it rewrites are
 * proxy/http_msg.c's, what a connection holds is proxy/http_conn.c's
 * (proxy/http_conn.h).
 */
#include <assert.h>
#include <errno.h>
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

#include "lib/http1.h"
#include "lib/list.h"
#include "lib/log.h"
#include "lib/syserr.h"
#include "lib/xmalloc.h"
#include "proxy/accesslog.h"
#include "proxy/http.h"
#include "proxy/http_conn.h"
#include "proxy/http_msg.h"
#include "proxy/io.h"
#include "proxy/pool.h"
#include "proxy/relay.h"
#include "proxy/server.h"
#include "proxy/shadow.h"
#include "proxy/shield.h"
#include "proxy/tls_io.h"
#include "proxy/tls_up.h"

static void set_state(struct px_conn *c, enum px_conn_state next);
static void process(struct px_conn *c);
static void on_client_read(struct bufferevent *bev, void *arg);
static void on_client_write(struct bufferevent *bev, void *arg);
static void on_client_event(struct bufferevent *bev, short what, void *arg);
static void on_upstream_read(struct bufferevent *bev, void *arg);
static void on_upstream_write(struct bufferevent *bev, void *arg);
static void on_upstream_event(struct bufferevent *bev, short what, void *arg);
static void on_head_timeout(evutil_socket_t fd, short what, void *arg);

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
    px_hc_close(c);
}

/* ---- states ---------------------------------------------------------- */

/* The only writer of c->state: installs timeouts and enabled directions,
 * and the callbacks of a new bufferevent of the connection (c->down when
 * accepted or unparked, c->up when connecting). The one other place that
 * sets callbacks is proxy/http_conn.c's spare_client_bev() (a connection
 * parks or closes), which clears those of the bufferevent it gives to the
 * loop's spares: that bufferevent leaves the connection, and whichever
 * connection takes it next gets its own callbacks here. */
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
        /* after accept conn_new() decides: it reads first */
        if (prev != PX_CS_CLOSED)
            c->flags |= PX_CF_POLLED;
        /* accepted or unparked: a new bufferevent, which reads PX_IO_READ_HEAD
         * (px_hc_client_bev); else a streamed body may have changed that */
        if (prev == PX_CS_CLOSED || (c->flags & PX_CF_PARKED))
            bufferevent_setcb(c->down, on_client_read, on_client_write, on_client_event, c);
        else
            px_io_read_size(c->down, PX_IO_READ_HEAD);
        /* first request: the head timeout runs from accept, so an idle
         * connection cannot be held; later ones: the keep-alive idle time */
        tv_r = tv_ms(c->nreq == 0 ? to->client_head_ms : to->client_idle_ms);
        bufferevent_set_timeouts(c->down, &tv_r, NULL);
        px_io_write_marks_off(c->down);
        /* a head larger than this is a 431 anyway: read no further */
        px_io_read_limit(c->down, sconf(c)->limits.head_bytes);
        /* writing: armed by leave() only when a socket is full (io.h) */
        px_io_read_on(c->down);
        break;
    case PX_CS_READ_BODY:
        c->flags |= PX_CF_POLLED;
        tv_r = tv_ms(to->client_idle_ms);
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
        /* libevent applies the write timeout to connect; a TLS handshake
         * also waits to read: connect_ms bounds both. A pooled connection
         * is connected: EXCHANGE sets its timeouts */
        tv_w = tv_ms(to->connect_ms);
        if (!(c->flags & PX_CF_UP_REUSED))
            bufferevent_set_timeouts(c->up, sconf(c)->side[c->ex->side].tls != NULL ? &tv_w
                                                                                 : NULL, &tv_w);
        break;
    case PX_CS_EXCHANGE:
        /* server_response_ms runs once the whole request is up (see
         * process()); while a streamed body still goes up, the idle
         * timeouts of both peers bound the exchange. Reads from the
         * upstream are not timed until the response head is in: the
         * head's deadline (px_hc_arm_response_deadline()) ends no later
         * than a read timeout of server_response_ms would */
        tv_w = tv_ms(to->server_idle_ms);
        bufferevent_set_timeouts(c->up, NULL, &tv_w);
        if (c->ex->req.done)
            px_hc_arm_response_deadline(c);
        px_io_read_on(c->up);
        tv_r = tv_ms(to->server_idle_ms);
        bufferevent_set_timeouts(c->down, c->ex->req.done ? NULL : &tv_r, &tv_r);
        /* keep reading the client, so that its going away aborts the
         * upstream request; pipelined bytes wait, bounded by head_bytes.
         * A client never polled yet with its whole request in is left
         * alone until the exchange outlives PX_WATCH_DELAY_MS
         * (px_hc_arm_response_deadline()) */
        px_io_read_limit(c->down, sconf(c)->limits.head_bytes);
        if ((c->flags & PX_CF_CLIENT_EOF) || (c->ex->req.done && !(c->flags & PX_CF_POLLED))) {
            bufferevent_disable(c->down, EV_READ);
        } else {
            c->flags |= PX_CF_POLLED;
            px_io_read_on(c->down);
        }
        break;
    case PX_CS_TUNNEL:
        c->flags = (c->flags & ~PX_CF_WATCH_SOON) | PX_CF_POLLED;
        tv_r = tv_ms(to->server_idle_ms);
        bufferevent_setwatermark(c->down, EV_READ, 0, 0);
        bufferevent_set_timeouts(c->down, &tv_r, &tv_r);
        bufferevent_set_timeouts(c->up, &tv_r, &tv_r);
        bufferevent_enable(c->down, EV_READ);
        bufferevent_enable(c->up, EV_READ);
        break;
    case PX_CS_DRAINING:
        if (c->ex->log_pending)            /* answered (by the proxy) or cut: it ends here */
            px_hc_log_request(c, NULL);
        upstream_free(c);
        evtimer_del(&c->head_timer);
        c->flags &= ~PX_CF_WATCH_SOON;
        bufferevent_disable(c->down, EV_READ);
        bufferevent_setwatermark(c->down, EV_WRITE, 0, 0);
        tv_w = tv_ms(to->server_idle_ms);
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
    const char *text = h1_status_text(status);

    /* a client's bad request is its problem (debug); our 5xx is ours */
    if (status >= 500)
        px_req_warn(c->svc, "http", c->id, "%d %s (%s) while %s", status, text, why,
                    px_cs_actions[c->state]);
    else
        log_at(LL_DEBUG, "http", c->id, "%d %s (%s) while %s", status, text, why,
               px_cs_actions[c->state]);
    if (c->srv->access_log != NULL && !c->ex->log_pending)
        px_hc_log_begin(c, NULL);      /* bytes that never made a request */
    if (!(c->flags & PX_CF_RES_STARTED)) {
        c->ex->log_status = status;
        px_hm_error(bufferevent_get_output(c->down), status, text);
        c->flags |= PX_CF_RES_STARTED;
    }
    set_state(c, PX_CS_DRAINING);
}

/* The request failed upstream (<err>) before any response byte: replayed
 * on legacy when the shield takes it (proxy/shield.h), else answered. */
static void
fail(struct px_conn *c, enum px_err err, int status, const char *why)
{
    upstream_free(c);
    px_hc_record(c, 0, err);
    if (!px_shield_replay(c, err, 0))
        reply_error(c, status, why);
}

/* ---- request --------------------------------------------------------- */

static void on_upstream_connected(struct px_conn *c);

/* The proxy itself is short of descriptors, memory or ports for the
 * upstream connection of <c> (errno <e>): 503 with Retry-After, counted as
 * local_resource, never against the server or in its side's window. */
static void
local_failure(struct px_conn *c, int e, const char *what)
{
    char why[160];

    upstream_free(c);
    snprintf(why, sizeof(why), "%s: %s (a local shortage, not the server's fault)", what,
             strerror(e));
    px_hc_record(c, 0, PX_E_LOCAL);
    reply_error(c, 503, why);
}

static void
start_connect(struct px_conn *c)
{
    const struct px_addr *a = srt_addr(c);
    const struct px_tls_up *tls = sconf(c)->side[c->ex->side].tls;
    evutil_socket_t fd;

    upstream_free(c);
    c->flags &= ~(PX_CF_UP_REUSED | PX_CF_RES_BYTES);
    /* a request that could not be resent after a pooled connection turned
     * out closed is given one its server has not closed already */
    if (!(c->flags & PX_CF_STALE_RETRY) &&
        (c->up = px_pool_get(c->ex->srt, tls,
                             !c->ex->req_idempotent || !c->ex->req.done)) != NULL) {
        c->flags |= PX_CF_UP_REUSED;
        bufferevent_disable(c->up, EV_WRITE);   /* output empty: leave() writes */
        set_state(c, PX_CS_CONNECTING);
        on_upstream_connected(c);
        return;
    }
    c->up = bufferevent_socket_new(c->srv->base, -1,
                                   BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (c->up == NULL || (fd = px_io_socket(a->ss.ss_family)) < 0) {
        local_failure(c, c->up == NULL ? ENOMEM : errno, "cannot open an upstream connection");
        return;
    }
    bufferevent_setfd(c->up, fd);      /* owned by c->up from here */
    if (tls != NULL && px_tls_up_attach(c->up, tls, (const struct sockaddr *)&a->ss,
                                        &c->ex->srt->tls_cache) < 0) {
        reply_error(c, 502, "cannot allocate an upstream TLS connection");
        return;
    }
    set_state(c, PX_CS_CONNECTING);
    /* with DEFER_CALLBACKS an immediate failure is reported through the loop,
     * never from inside this call; a TLS one reports its handshake's end */
    if (px_io_connect(c->up, (const struct sockaddr *)&a->ss, (int)a->len) < 0) {
        int e = errno;

        if (sys_err_local(e)) {
            local_failure(c, e, "upstream connect failed at once");
            return;
        }
        fail(c, PX_E_CONNECT, 502, "upstream connect failed at once");
        return;
    }
}

/* The request body framing is settled: finish the head and connect. */
static void
request_ready(struct px_conn *c)
{
    if (c->ex->req.framing == H1_BODY_LENGTH)
        evbuffer_add_printf(c->ex->up_head, "Content-Length: %" PRIu64 "\r\n",
                            c->ex->req.left +
                            (c->ex->req_buf != NULL ? evbuffer_get_length(c->ex->req_buf) : 0));
    else if (c->ex->req.framing == H1_BODY_CHUNKED)
        evbuffer_add(c->ex->up_head, "Transfer-Encoding: chunked\r\n", 28);
    if (c->ex->req.framing != H1_BODY_NONE)   /* px_hm_request_head() ended it */
        evbuffer_add(c->ex->up_head, "\r\n", 2);
    px_shadow_begin(c);               /* a copy beside it, maybe (shadow traffic) */
    start_connect(c);
}

/* Reads a small body into c->ex->req_buf (px_hm_buffer_body()). Returns true
 * when the body is complete or too large to buffer (then it streams), false
 * when more is needed or it was refused (answered here). */
static bool
buffer_body(struct px_conn *c)
{
    const char *why = NULL;
    int status = 0, r = px_hm_buffer_body(c, &status, &why);

    if (r < 0)
        reply_error(c, status, why);
    return r > 0;
}

/* ---- parking ---------------------------------------------------------- */

/* Between requests, nothing buffered either way: park() from the loop (not
 * from under the caller, who may still use c->down) once the connection
 * stayed idle PX_PARK_DELAY_MS; a busy one's next request comes sooner and
 * cancels it, so it keeps its bufferevent instead of parking per request. */
static void
park_soon(struct px_conn *c)
{
    struct timeval tv = tv_ms(PX_PARK_DELAY_MS);

    if (c->nreq == 0 || (c->flags & (PX_CF_HEAD_TIMER | PX_CF_PARK_SOON | PX_CF_PARKED |
                                     PX_CF_CLOSE | PX_CF_CLIENT_EOF)))
        return;
    c->flags |= PX_CF_PARK_SOON;
    if (c->srv->parking++ >= PX_PARK_WAITING) {
        c->flags |= PX_CF_PARK_NOW;
        tv = tv_ms(0);
    }
    evtimer_add(&c->head_timer, &tv);
}

static void on_parked(evutil_socket_t fd, short what, void *arg);

/* An idle keep-alive connection (a request was served, the response is out,
 * nothing of the next one came within PX_PARK_DELAY_MS) gives its
 * bufferevent and its request state (struct px_exch, with up_head, req_buf
 * and the access log's path buffer) to the loop's spares, for whichever
 * connection needs them next (so parking allocates nothing). The head
 * timer becomes a read event on the socket, timed to what is left of
 * client_idle_ms (which set_state(READ_HEAD) started PX_PARK_DELAY_MS ago,
 * or, with PX_CF_PARK_NOW, in the loop pass before);
 * the first byte or the close from the client brings the connection back
 * (on_parked()). A parked connection holds its struct px_conn and that one
 * event; the loop holds about as many buffers and request states as it has
 * busy connections (at most PX_SPARES spare ones).
 *
 * Event interest stays as it was: the parked event is added on the socket
 * before the bufferevent's read event goes, and deleted only after it came
 * back, so libevent's per-fd count never drops to zero and no epoll_ctl is
 * made for it; the write event is only taken off where the write callback
 * would have taken it off (the output is empty). */
static void
park(struct px_conn *c)
{
    unsigned idle = sconf(c)->timeouts.client_idle_ms;
    unsigned waited = (c->flags & PX_CF_PARK_NOW) ? 0 : PX_PARK_DELAY_MS;
    struct timeval tv = tv_ms(idle > waited ? idle - waited : 1);
    evutil_socket_t fd;

    if (c->state != PX_CS_READ_HEAD || c->nreq == 0 || c->up != NULL ||
        (c->flags & (PX_CF_CLOSE | PX_CF_CLIENT_EOF | PX_CF_HEAD_TIMER | PX_CF_PARKED)) ||
        (fd = bufferevent_getfd(c->down)) < 0 || px_io_holds(c->down) ||
        evbuffer_get_length(bufferevent_get_input(c->down)) != 0 ||
        evbuffer_get_length(bufferevent_get_output(c->down)) != 0)
        return;
    /* persistent: libevent deletes a plain event before its callback, which
     * would drop the fd from epoll until unpark() adds it back */
    event_assign(&c->head_timer, c->srv->base, fd, EV_READ | EV_PERSIST, on_parked, c);
    if (event_add(&c->head_timer, &tv) < 0) {
        event_assign(&c->head_timer, c->srv->base, -1, 0, on_head_timeout, c);
        return;                        /* stays as it is */
    }
    px_hc_park(c);
}

/* The client of a parked connection sent something (or closed): it gets a
 * bufferevent again, in the state park() left, and that bufferevent reads
 * in this loop pass. Returns false when none can be allocated. */
static bool
unpark(struct px_conn *c, evutil_socket_t fd)
{
    struct bufferevent *bev = px_hc_client_bev(c->srv, fd, &c->tls);

    if (bev == NULL) {
        log_at(LL_ERR, "http", c->id, "cannot allocate a connection");
        return false;
    }
    c->down = bev;
    c->ex = px_hc_exch_take(c);
    /* as set_state(READ_HEAD) left it before park() (nreq > 0: the idle
     * timeout), callbacks included; reading is enabled while the parked
     * event still holds the fd */
    set_state(c, PX_CS_READ_HEAD);
    /* writing stays allowed as set_state(READ_HEAD) left it, but the write
     * event is added only when output is queued (as after the write
     * callback found the output empty), not at once */
    bev->enabled |= EV_WRITE;
    event_del(&c->head_timer);
    event_assign(&c->head_timer, c->srv->base, -1, 0, on_head_timeout, c);
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
    struct cidr_addr client;
    const char *p;
    enum h1_parse pr;
    unsigned ri;

    if (len == 0) {
        park_soon(c);
        return;
    }
    n = len < lim->head_bytes ? len : lim->head_bytes;
    /* linearises only the head bytes (bounded by head_bytes), never a body */
    p = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
    memset(&r, 0, sizeof(r));
    r.fields = px_hc_fields(c->srv, pl.max_fields);
    pr = h1_req_parse(&r, p, n, &pl);
    if (pr == H1_PARSE_AGAIN) {
        if (n >= lim->head_bytes) {
            reply_error(c, 431, "request head over limits.head_bytes");
        } else if (!(c->flags & PX_CF_HEAD_TIMER)) {
            /* client_head_ms from the first byte of a head: armed only
             * for one that did not come whole in one read */
            struct timeval tv = tv_ms(sconf(c)->timeouts.client_head_ms);

            evtimer_add(&c->head_timer, &tv);   /* cancels a park_soon() */
            c->flags |= PX_CF_HEAD_TIMER;
            px_hc_park_soon_off(c);
        }
        return;
    }
    if (pr == H1_PARSE_BAD) {
        reply_error(c, r.status, r.error != NULL ? r.error : "bad request");
        return;
    }

    if (c->flags & (PX_CF_HEAD_TIMER | PX_CF_PARK_SOON)) {
        evtimer_del(&c->head_timer);
        c->flags &= ~PX_CF_HEAD_TIMER;
        px_hc_park_soon_off(c);
    }
    c->nreq++;
    c->ex->t_req_us = px_now_us(c->srv);
    if (c->srv->access_log != NULL)
        px_hc_log_begin(c, &r);
    px_hm_request(c, &r);

    if (r.framing == H1_BODY_LENGTH && lim->body_bytes > 0 &&
        r.content_length > lim->body_bytes) {
        reply_error(c, 413, "Content-Length over limits.body_bytes");
        return;
    }

    ri = px_hm_route_input(c, &r, &rin, &client);
    rt_choose(c->svc->snap, &c->svc->cursor, &rin, &ch);
    if (ch.override_refused)
        c->svc->override_refused++;
    if (ri & PX_RI_COOKIE_INVALID)
        c->svc->cookie_invalid++;
    if (ch.side == RT_NONE) {
        c->ex->side = RT_NONE;
        c->svc->stats[RT_LEGACY].errors[PX_E_NO_SERVER]++;
        c->ex->log_error = px_err_names[PX_E_NO_SERVER];
        reply_error(c, 503, "no side has a usable server");
        return;
    }
    c->ex->side = ch.side;
    bind_server(c, c->svc->servers[ch.side][ch.server]);
    c->ex->fallback = ch.fallback;
    c->ex->log_why = ch.reason;
    /* a cookie the previous key signed is signed again with the current one */
    c->ex->issue_cookie = ch.issue_cookie || (ch.has_bucket && (ri & PX_RI_COOKIE_RESIGN));
    c->ex->bucket = ch.bucket;
    c->ex->has_bucket = ch.has_bucket;
    c->svc->stats[ch.side].requests++;
    if (ch.fallback)
        c->svc->stats[ch.side].fallbacks++;
    c->ex->srt->requests++;
    log_at(LL_DEBUG, "http", c->id, "%.*s %.*s -> %s server %u (%s)",
           (int)r.method.len, r.method.p, (int)r.target.len, r.target.p,
           rt_side_names[ch.side], ch.server, rt_reason_names[ch.reason]);

    px_hm_request_head(c, &r);
    /* the head is consumed only now that it was parsed: fields point into it */
    evbuffer_drain(in, r.head_len);
    if (r.expect_continue && !c->ex->req.done && c->ex->req_minor == 1)
        evbuffer_add(bufferevent_get_output(c->down), "HTTP/1.1 100 Continue\r\n\r\n", 25);

    if (c->ex->req.done || buffer_body(c)) {
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
        if (!px_hc_refresh_conf(c)) {
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
        if (!c->ex->req.done && c->up != NULL) {
            struct evbuffer *dst = bufferevent_get_output(c->up);

            if (!(c->flags & PX_CF_REQ_STREAMED) && evbuffer_get_length(in) > 0)
                c->flags |= PX_CF_REQ_STREAMED;
            if (px_hm_body(&c->ex->req, in, dst) < 0) {
                /* the backend must never see a complete request from this:
                 * close the upstream before the last chunk goes out */
                upstream_free(c);
                reply_error(c, 400, c->ex->req.ck.error != NULL ? c->ex->req.ck.error
                                                            : "bad chunked body");
                return;
            }
            if (sconf(c)->limits.body_bytes > 0 &&
                c->ex->req.total > sconf(c)->limits.body_bytes) {
                upstream_free(c);
                reply_error(c, 413, "request body over limits.body_bytes");
                return;
            }
            if (c->ex->req.done) {
                bufferevent_disable(c->down, EV_READ);
                if (!c->ex->res_head_done) {
                    struct timeval tv_r = tv_ms(sconf(c)->timeouts.server_response_ms);
                    struct timeval tv_w = tv_ms(sconf(c)->timeouts.server_idle_ms);

                    bufferevent_set_timeouts(c->up, &tv_r, &tv_w);
                    px_hc_arm_response_deadline(c);
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

/* The response is complete: close the upstream and wait for the next
 * request, or close the client connection. */
static void
finish_exchange(struct px_conn *c)
{
    if (c->ex->shadow != NULL)
        px_shadow_primary_end(c);
    if (c->ex->log_pending)
        px_hc_log_request(c, NULL);
    if (c->up != NULL && c->ex->res_keep_alive && c->ex->req.done &&
        sconf(c)->pool.max_idle > 0) {
        px_pool_put(c->svc, c->ex->srt, c->up, sconf(c)->side[c->ex->side].tls);   /* owns it now */
        c->up = NULL;
    }
    upstream_free(c);
    if (c->flags & PX_CF_WATCH_SOON) {
        c->flags &= ~PX_CF_WATCH_SOON;
        evtimer_del(&c->head_timer);
    }
    if (!c->ex->req.done)
        c->flags |= PX_CF_NO_KEEPALIVE;   /* unread request body: cannot resync */
    if (c->flags & (PX_CF_NO_KEEPALIVE | PX_CF_CLIENT_EOF)) {
        set_state(c, PX_CS_DRAINING);
        return;
    }
    c->flags &= ~(PX_CF_RES_STARTED | PX_CF_RETRIED | PX_CF_REQ_STREAMED |
                  PX_CF_UP_REUSED | PX_CF_STALE_RETRY | PX_CF_RES_BYTES | PX_CF_SHIELD_FLAGS);
    c->ex->res_head_done = false;
    c->ex->res_recorded = false;
    c->ex->side = RT_NONE;
    bind_server(c, NULL);
    if (!px_hc_refresh_conf(c)) {
        set_state(c, PX_CS_DRAINING);
        return;
    }
    if (c->ex->req_buf != NULL)
        evbuffer_drain(c->ex->req_buf, evbuffer_get_length(c->ex->req_buf));
    set_state(c, PX_CS_READ_HEAD);
    process(c);                       /* a pipelined request may be waiting */
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
        px_hc_record(c, 0, PX_E_UP_BAD);
        reply_error(c, 502, "101 without an Upgrade field from upstream");
        return;
    }
    px_hc_record(c, r->status, PX_E_NONE);
    px_hm_upgrade_head(out, r, u);
    evbuffer_drain(in, r->head_len);
    c->flags |= PX_CF_RES_STARTED | PX_CF_NO_KEEPALIVE;
    c->ex->res_head_done = true;
    evtimer_del(&c->head_timer);
    c->ex->last_io_ms = px_now_ms(c->srv);
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
        r.fields = px_hc_fields(c->srv, pl.max_fields);
        pr = h1_resp_parse(&r, p, n, &pl, c->ex->req_is_head);
        /* bad chunk framing already at hand: 502 before the head goes out */
        if (pr == H1_PARSE_DONE && r.framing == H1_BODY_CHUNKED &&
            (r.error = h1_chunked_check(p + r.head_len, n - r.head_len,
                                        lim->chunk_ext_bytes)) != NULL)
            pr = H1_PARSE_BAD;
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
            fail(c, PX_E_UP_BAD, 502, "invalid response from upstream");
            return false;
        }
        if (r.status == 101) {
            if (c->ex->req_upgrade && c->ex->req.done) {
                start_tunnel(c, &r);
                return false;
            }
            fail(c, PX_E_UP_BAD, 502, "unrequested protocol switch from upstream");
            return false;
        }
        if (r.status < 200) {
            /* interim responses: 100 Continue was answered by the proxy
             * itself (Expect is not forwarded); others (103) go to HTTP/1.1
             * clients as they are */
            if (r.status != 100 && c->ex->req_minor == 1)
                px_hm_interim_head(c, &r);
            evbuffer_drain(in, r.head_len);
            continue;
        }
        break;
    }
    if (r.status >= 500 && px_shield_replay(c, PX_E_NONE, r.status))
        return false;                  /* new's answer goes with its connection */
    c->ex->res_keep_alive = r.keep_alive;
    c->ex->res_head_done = true;
    /* a client not watched yet is watched once a slow body outlives
     * PX_WATCH_DELAY_MS (the timer then arms nothing more) */
    if (!(c->flags & PX_CF_WATCH_SOON))
        evtimer_del(&c->head_timer);
    c->ex->res_status = r.status;
    px_hc_record(c, r.status, PX_E_NONE);
    px_hm_response_head(c, &r);
    if (c->ex->shadow != NULL)
        px_shadow_primary_head(c, &r);
    evbuffer_drain(in, r.head_len);
    memset(&c->ex->res.ck, 0, sizeof(c->ex->res.ck));
    h1_chunked_init(&c->ex->res.ck);
    c->ex->res.ck.max_ext = sconf(c)->limits.chunk_ext_bytes;
    c->ex->res.total = 0;
    c->ex->res.done = r.framing == H1_BODY_NONE ||
                  (r.framing == H1_BODY_LENGTH && r.content_length == 0);
    /* from now on the upstream may be idle at most server_idle_ms; not
     * armed when the whole body is in already (the exchange ends in this
     * callback) */
    if (!c->ex->res.done &&
        !(r.framing == H1_BODY_LENGTH && evbuffer_get_length(in) >= r.content_length)) {
        tv = tv_ms(sconf(c)->timeouts.server_idle_ms);
        bufferevent_set_timeouts(c->up, &tv, &tv);
    }
    return true;
}

static void
pump_response(struct px_conn *c)
{
    struct evbuffer *out = bufferevent_get_output(c->down);

    if (!c->ex->res_head_done && !read_response_head(c))
        return;
    if (px_hm_body(&c->ex->res, bufferevent_get_input(c->up), out) < 0) {
        px_req_warn(c->svc, "http", c->id, "bad response body framing from %s: %s",
               srt_addr(c)->text,
               c->ex->res.ck.error != NULL ? c->ex->res.ck.error : "?");
        c->svc->stats[c->ex->side].errors[PX_E_UP_BAD]++;
        c->ex->log_error = px_err_names[PX_E_UP_BAD];
        /* the client sees a cut response, never a final chunk */
        c->flags |= PX_CF_NO_KEEPALIVE | PX_CF_CUT;
        set_state(c, PX_CS_DRAINING);
        return;
    }
    if (c->ex->res.done) {
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
        px_hm_tunnel_relay(c, c->down, c->up);
    else if (!(c->flags & PX_CF_CLOSE))
        process(c);
    leave(c);
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
        px_hm_tunnel_drained(c, c->down, c->up);
    } else if (c->state == PX_CS_EXCHANGE && c->up != NULL) {
        /* the client drained below the low watermark: read upstream again */
        px_relay_drained(c->down, c->up, c->ex->res_head_done ? PX_IO_READ_MAX : PX_IO_READ_HEAD,
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
            px_hm_tunnel_timeout(c, c->down, what);
        else
            mark_close(c);             /* the client ended the tunnel */
    } else if (what & BEV_EVENT_TIMEOUT) {
        if (c->state == PX_CS_READ_HEAD && evbuffer_get_length(bufferevent_get_input(c->down)) > 0) {
            reply_error(c, 408, "client head timeout");
        } else if ((what & BEV_EVENT_READING) && !c->ex->req.done &&
                   (c->state == PX_CS_READ_BODY || c->state == PX_CS_EXCHANGE)) {
            /* the client stopped sending its body: the upstream request
             * (never complete) is aborted, not a backend failure */
            c->ex->res_recorded = true;
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
            c->ex->res_recorded = true;
            mark_close(c);
            break;
        default:
            mark_close(c);
            break;
        }
    } else {
        /* error: the client is gone; the backend is not at fault */
        c->ex->res_recorded = true;
        c->flags |= PX_CF_CUT;
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
    if (c->flags & PX_CF_SHIELD_SOON) {
        c->flags &= ~PX_CF_SHIELD_SOON;
        start_connect(c);              /* the shield's replay (proxy/shield.h) */
    } else if (c->state == PX_CS_TUNNEL) {
        px_shield_tunnel_drained(c);
    } else if (c->flags & PX_CF_PARK_SOON) {
        park(c);                       /* PX_CF_PARK_NOW still tells how long it waited */
        px_hc_park_soon_off(c);
    } else if (c->flags & PX_CF_WATCH_SOON) {
        c->flags &= ~PX_CF_WATCH_SOON;
        px_hc_watch_client(c);
    } else if (c->state == PX_CS_READ_HEAD) {
        reply_error(c, 408, "client head timeout");
    } else if (c->state == PX_CS_EXCHANGE && !c->ex->res_head_done && c->up != NULL) {
        fail(c, PX_E_UP_TIMEOUT, 504, "no complete response head in time");
    }
    leave(c);
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
    px_hm_send_kept(out, c->ex->up_head);
    if (c->ex->req.out == PX_OUT_PLAIN) {
        px_hm_send_kept(out, c->ex->req_buf);
    } else if (c->ex->req_buf != NULL && evbuffer_get_length(c->ex->req_buf) > 0) {
        px_hm_move(c->ex->req_buf, out, evbuffer_get_length(c->ex->req_buf), c->ex->req.out);
        c->flags |= PX_CF_REQ_STREAMED;
    }
    if (c->ex->req.done && c->ex->req.out == PX_OUT_CHUNKED)
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
on_connect_failed(struct px_conn *c, short what)
{
    struct px_server_rt *other;
    const char *addr = srt_addr(c)->text;
    enum px_err err = (what & BEV_EVENT_TIMEOUT) ? PX_E_CONNECT_TIMEOUT : PX_E_CONNECT;
    char why[192];

    snprintf(why, sizeof(why), "%s", err == PX_E_CONNECT ? "connect failed" : "connect timeout");
    if (err == PX_E_CONNECT && sconf(c)->side[c->ex->side].tls != NULL)
        err = px_tls_err(px_tls_up_failure(c->up, why, sizeof(why)));
    px_req_warn(c->svc, "http", c->id, "%s server %s: %s%s", rt_side_names[c->ex->side], addr,
                err == PX_E_TLS_VERIFY ? "TLS certificate refused: "
                : err == PX_E_TLS_HANDSHAKE ? "TLS handshake failed: " : "", why);
    upstream_free(c);
    if (!(c->flags & PX_CF_RETRIED) &&
        (other = px_service_other_server(c->svc, c->ex->side, c->ex->srt)) != NULL) {
        /* counted here: the request's own outcome is that of the retry */
        c->svc->stats[c->ex->side].errors[err]++;
        c->ex->srt->failures++;
        c->flags |= PX_CF_RETRIED;
        bind_server(c, other);
        other->requests++;
        start_connect(c);
        return;
    }
    fail(c, err, err == PX_E_CONNECT_TIMEOUT ? 504 : 502, px_err_names[err]);
}

static void
on_upstream_read(struct bufferevent *bev, void *arg)
{
    struct px_conn *c = arg;

    (void)bev;
    enter(c);
    if (c->state == PX_CS_TUNNEL) {
        px_hm_tunnel_relay(c, c->up, c->down);
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
        px_hm_tunnel_drained(c, c->up, c->down);
    } else if (c->state == PX_CS_EXCHANGE && !c->ex->req.done) {
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
            px_hm_tunnel_timeout(c, c->up, what);
        } else {
            /* the server ended the tunnel: flush what it sent, then close */
            evbuffer_add_buffer(bufferevent_get_output(c->down), bufferevent_get_input(c->up));
            set_state(c, PX_CS_DRAINING);
        }
    } else if (c->state == PX_CS_CONNECTING) {
        if (what & BEV_EVENT_CONNECTED)
            on_upstream_connected(c);
        else
            on_connect_failed(c, what);
    } else if (c->state == PX_CS_EXCHANGE) {
        if (what & BEV_EVENT_TIMEOUT) {
            if (!c->ex->res_head_done) {
                fail(c, PX_E_UP_TIMEOUT, 504, "no response head in time");
            } else {
                c->svc->stats[c->ex->side].errors[PX_E_UP_TIMEOUT]++;
                c->ex->log_error = px_err_names[PX_E_UP_TIMEOUT];
                c->flags |= PX_CF_NO_KEEPALIVE | PX_CF_CUT;
                set_state(c, PX_CS_DRAINING);
            }
        } else {
            /* EOF or error: whatever is buffered is still valid input */
            pump_response(c);
            if (c->state == PX_CS_EXCHANGE && c->up != NULL) {
                if (!c->ex->res_head_done && !(c->flags & PX_CF_RES_BYTES) &&
                    (c->flags & PX_CF_UP_REUSED) && !(c->flags & PX_CF_STALE_RETRY) &&
                    c->ex->req_idempotent && !(c->flags & PX_CF_REQ_STREAMED)) {
                    /* a pooled connection the server had closed: resend
                     * once on a fresh one; not a backend failure */
                    log_at(LL_DEBUG, "http", c->id, "pooled connection to %s was closed: "
                           "resending", srt_addr(c)->text);
                    c->flags |= PX_CF_STALE_RETRY;
                    start_connect(c);
                } else if (!c->ex->res_head_done) {
                    fail(c, PX_E_UP_RESET, 502, "upstream closed before a response");
                } else if (c->ex->res.framing == H1_BODY_CLOSE && (what & BEV_EVENT_EOF) &&
                           px_tls_up_closed_cleanly(c->up)) {
                    /* over TLS only close_notify ends the body: libevent
                     * 2.1 reports a reset as EOF there */
                    c->ex->res.done = true;
                    if (c->ex->res.out == PX_OUT_CHUNKED)
                        evbuffer_add(bufferevent_get_output(c->down), "0\r\n\r\n", 5);
                    finish_exchange(c);
                } else {
                    /* cut mid-body: the client must see a broken response */
                    c->svc->stats[c->ex->side].errors[PX_E_UP_RESET]++;
                    c->ex->log_error = px_err_names[PX_E_UP_RESET];
                    px_req_warn(c->svc, "http", c->id, "upstream %s closed mid-body",
                           srt_addr(c)->text);
                    c->flags |= PX_CF_NO_KEEPALIVE | PX_CF_CUT;
                    set_state(c, PX_CS_DRAINING);
                }
            }
        }
    }
    leave(c);
}

/* ---- public ---------------------------------------------------------- */

/* A new connection of <svc> on socket <fd> (over TLS <tls> when not NULL)
 * from <sa>. */
static void
conn_new(struct px_service *svc, int fd, struct px_tls_io *tls, const struct sockaddr *sa)
{
    struct px_srv *srv = svc->srv;
    struct px_conn *c = px_hc_conn_alloc(srv);

    if (c == NULL) {
        log_at(LL_ERR, "http", 0, "cannot allocate a connection");
        px_tls_io_free(tls);
        px_io_close(fd);
        px_srv_conn_closed(srv, svc);
        return;
    }
    c->svc = svc;
    c->srv = srv;
    c->id = px_srv_conn_id(srv);
    c->cref = px_confref_get(svc->cref);
    c->conf = svc->conf;
    c->state = PX_CS_CLOSED;           /* set_state() below moves it */
    px_hc_set_client(c, sa);
    c->ex = px_hc_exch_take(c);
    evtimer_assign(&c->head_timer, srv->base, on_head_timeout, c);
    if ((c->tls = tls) != NULL)
        c->flags |= PX_CF_TLS;
    c->down = px_hc_client_bev(srv, fd, &c->tls);
    list_push(&svc->conns, &c->link);
    if (c->down == NULL) {
        log_at(LL_ERR, "http", c->id, "cannot allocate a connection");
        px_io_close(fd);
        c->flags |= PX_CF_CUT;
        px_hc_close(c);
        return;
    }
    log_at(LL_DEBUG, "http", c->id, "accepted from %s on service %s%s", c->ex->client_ip,
           svc->conf->name, tls != NULL ? " (TLS)" : "");
    /* a handshake that ended after a reload removed the service: one
     * request, as for the connections the removal found busy */
    if (svc->retired || srv->stopping)
        c->flags |= PX_CF_NO_KEEPALIVE;
    set_state(c, PX_CS_READ_HEAD);
    if (tls != NULL) {
        c->flags |= PX_CF_POLLED;      /* its handshake polled the socket */
        return;
    }
    /* a client sends its request once connected, so it is often there
     * when the connection is accepted: read it now. Reading was switched
     * on above, which reaches epoll only at the loop's next wait: when the
     * request is whole and its exchange switches reading off before then
     * (set_state(EXCHANGE)), the socket is never registered, and a short
     * exchange that closes makes no epoll_ctl for it. */
    enter(c);
    px_io_read_now(c->down);
    if (!(c->flags & PX_CF_CLOSE) && (bufferevent_get_enabled(c->down) & EV_READ))
        c->flags |= PX_CF_POLLED;
    leave(c);
}

void
px_http_accept(struct px_service *svc, int fd, const struct sockaddr *sa, int salen)
{
    (void)salen;
    conn_new(svc, fd, NULL, sa);
}

void
px_http_accept_tls(struct px_service *svc, int fd, struct px_tls_io *tls,
                   const struct sockaddr *sa)
{
    conn_new(svc, fd, tls, sa);
}

void
px_http_close_idle(struct px_service *svc)
{
    px_hc_close_idle(svc);
}

void
px_http_close_all(struct px_service *svc)
{
    px_hc_close_all(svc);
}

void
px_http_loop_free(struct px_srv *srv)
{
    px_hc_loop_free(srv);
}
