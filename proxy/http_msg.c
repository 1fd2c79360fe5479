/*
 * http_msg: the HTTP/1.1 messages as the proxy rewrites them (see
 * http_conn.h): what the router reads of a request (the sticky cookie
 * verified, the client's address when an override header asks), the
 * upstream request head rebuilt (hop-by-hop fields and the override header
 * dropped, X-Forwarded-For and -Proto added, the upgrade asked for kept),
 * the response heads rebuilt for the client (framing regenerated, the
 * signed sticky cookie issued, the connection's fate said), and bodies
 * moved between evbuffers re-framed, never copied.
 * Nothing here moves the state machine (http.c): no state, timeout,
 * callback or event of a connection is set here.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "lib/cidr.h"
#include "lib/http1.h"
#include "proxy/cookie.h"
#include "proxy/http_conn.h"
#include "proxy/http_msg.h"
#include "proxy/server.h"
#include "proxy/shadow_cap.h"
#include "proxy/shield.h"
#include "router/router.h"

/* A head written in pieces into a buffer on the stack and added to its
 * evbuffer in one piece (or a few, past HB_SIZE): each evbuffer_add() to a
 * bufferevent's output runs the output's callbacks, and a response head is
 * about 30 pieces. */
#define HB_SIZE 2048

struct hb {
    struct evbuffer *out;
    size_t n;
    char b[HB_SIZE];
};

static void
hb_flush(struct hb *h)
{
    if (h->n > 0)
        evbuffer_add(h->out, h->b, h->n);
    h->n = 0;
}

/* hb_add() of a piece that does not fit what is left of the buffer. */
static void
hb_add_slow(struct hb *h, const void *p, size_t len)
{
    hb_flush(h);
    if (len > HB_SIZE) {
        evbuffer_add(h->out, p, len);
        return;
    }
    memcpy(h->b, p, len);
    h->n = len;
}

/* Inline: a head is some 30 pieces, most of them literals whose copy the
 * compiler then does in place. */
static inline void
hb_add(struct hb *h, const void *p, size_t len)
{
    if (len > HB_SIZE - h->n) {
        hb_add_slow(h, p, len);
        return;
    }
    memcpy(h->b + h->n, p, len);
    h->n += len;
}

#define hb_lit(h, s) hb_add((h), (s), sizeof(s) - 1)

/* <v> in decimal. */
static void
hb_u64(struct hb *h, uint64_t v)
{
    char d[20];
    int i = (int)sizeof(d);

    do
        d[--i] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    hb_add(h, d + i, sizeof(d) - (size_t)i);
}

/* "name: value\r\n" */
static void
hb_field(struct hb *h, const struct h1_field *f)
{
    hb_add(h, f->name.p, f->name.len);
    hb_lit(h, ": ");
    hb_add(h, f->value.p, f->value.len);
    hb_lit(h, "\r\n");
}

static struct h1_iov
field_value(const struct h1_req *r, const char *name)
{
    const struct h1_field *f = h1_field_find(r->fields, r->nfields, name);
    struct h1_iov none = { NULL, 0 };

    return f != NULL ? f->value : none;
}

/* The sticky-cookie table of the connection's service in its generation. */
static const struct px_cookie_tab *
cookie_tab(const struct px_conn *c)
{
    return px_cookie_set_tab(c->cref->cookies,
                             (unsigned)(sconf(c) - c->cref->conf->services));
}

unsigned
px_hm_route_input(struct px_conn *c, const struct h1_req *r, struct rt_input *in,
                  struct cidr_addr *client)
{
    const struct rt_conf *rc = &sconf(c)->route;
    const struct px_cookie_tab *tab;
    enum px_cookie_check chk;
    struct h1_iov v;
    unsigned flags = 0;
    size_t i;

    memset(in, 0, sizeof(*in));
    in->rand = px_srv_rand(c->srv);
    switch (rc->sticky_by) {
    case RT_STICKY_NONE:
        break;
    case RT_STICKY_COOKIE:
        /* the first cookie of that name that verifies; one that does not
         * counts as absent (a bucket is drawn and a signed cookie issued) */
        tab = cookie_tab(c);
        for (i = 0; i < r->nfields; i++) {
            if (!h1_iov_eq(r->fields[i].name, "cookie"))
                continue;
            v = h1_cookie_find(r->fields[i].value, rc->sticky_name);
            if (v.p == NULL)
                continue;
            chk = px_cookie_verify(tab, v.p, v.len, &in->cookie_bucket);
            if (chk == PX_COOKIE_BAD) {
                flags |= PX_RI_COOKIE_INVALID;
                continue;
            }
            in->has_cookie_bucket = true;
            flags &= ~PX_RI_COOKIE_INVALID;
            if (chk == PX_COOKIE_PREVIOUS)
                flags |= PX_RI_COOKIE_RESIGN;
            break;
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
        in->sticky_key = c->ex->client_ip;
        in->sticky_len = strlen(c->ex->client_ip);
        break;
    }
    if (rc->has_override) {
        v = field_value(r, rc->override_header);
        if (v.p != NULL) {
            in->override_val = v.p;
            in->override_len = v.len;
            /* the address is read only for a request that asks */
            if (cidr_addr_parse(c->ex->client_ip, strlen(c->ex->client_ip), client) == 0)
                in->client = client;
        }
    }
    return flags;
}

void
px_hm_request(struct px_conn *c, const struct h1_req *r)
{
    c->ex->req_minor = r->minor;
    c->ex->req_is_head = h1_method_eq(r->method, "HEAD");
    c->ex->req_idempotent = h1_method_idempotent(r->method);
    c->ex->req_upgrade = r->upgrade && h1_field_find(r->fields, r->nfields, "upgrade") != NULL;
    c->ex->shield_ok = px_shield_eligible(sconf(c), r);
    if (!r->keep_alive)
        c->flags |= PX_CF_NO_KEEPALIVE;
    memset(&c->ex->req, 0, sizeof(c->ex->req));
    c->ex->req.framing = r->framing;
    c->ex->req.left = r->framing == H1_BODY_LENGTH ? r->content_length : 0;
    c->ex->req.out = r->framing == H1_BODY_CHUNKED ? PX_OUT_CHUNKED : PX_OUT_PLAIN;
    h1_chunked_init(&c->ex->req.ck);
    c->ex->req.ck.max_ext = sconf(c)->limits.chunk_ext_bytes;
    c->ex->req.done = r->framing == H1_BODY_NONE ||
                  (r->framing == H1_BODY_LENGTH && r->content_length == 0);
}

void
px_hm_request_head(struct px_conn *c, const struct h1_req *r)
{
    struct hb h;
    const struct rt_conf *rc = &sconf(c)->route;
    const struct px_addr *srv = srt_addr(c);
    bool have_xff = false;
    size_t i;

    px_shield_routed(c->svc, c->ex->side, c->ex->t_req_us);   /* the budget counts legacy's */
    h.out = px_hc_evbuffer(c, &c->ex->up_head);
    h.n = 0;
    evbuffer_drain(h.out, evbuffer_get_length(h.out));
    hb_add(&h, r->method.p, r->method.len);
    hb_lit(&h, " ");
    hb_add(&h, r->target.p, r->target.len);
    hb_lit(&h, " HTTP/1.1\r\n");
    if (r->host.len == 0) {
        hb_lit(&h, "Host: ");
        hb_add(&h, srv->text, strlen(srv->text));
        hb_lit(&h, "\r\n");
    }
    for (i = 0; i < r->nfields; i++) {
        const struct h1_field *f = &r->fields[i];

        if ((f->flags & H1_FF_HOP) || h1_iov_eq(f->name, "x-forwarded-for") ||
            h1_iov_eq(f->name, "x-forwarded-proto") ||
            (r->expect_continue && h1_iov_eq(f->name, "expect")) ||
            (rc->has_override && h1_iov_eq(f->name, rc->override_header)))
            continue;             /* the override is ours: never forwarded */
        hb_field(&h, f);
    }
    /* X-Forwarded-For: every earlier hop, then the client we saw */
    for (i = 0; i < r->nfields; i++) {
        const struct h1_field *f = &r->fields[i];

        if (!h1_iov_eq(f->name, "x-forwarded-for") || f->value.len == 0)
            continue;
        if (have_xff)
            hb_lit(&h, ", ");
        else
            hb_lit(&h, "X-Forwarded-For: ");
        hb_add(&h, f->value.p, f->value.len);
        have_xff = true;
    }
    if (have_xff)
        hb_lit(&h, ", ");
    else
        hb_lit(&h, "X-Forwarded-For: ");
    hb_add(&h, c->ex->client_ip, strlen(c->ex->client_ip));
    if (c->flags & PX_CF_TLS)
        hb_lit(&h, "\r\nX-Forwarded-Proto: https\r\n");
    else
        hb_lit(&h, "\r\nX-Forwarded-Proto: http\r\n");
    if (c->ex->req_upgrade) {
        const struct h1_field *u = h1_field_find(r->fields, r->nfields, "upgrade");

        hb_lit(&h, "Connection: upgrade\r\nUpgrade: ");
        hb_add(&h, u->value.p, u->value.len);
        hb_lit(&h, "\r\n");
    }
    if (r->framing == H1_BODY_NONE)
        hb_lit(&h, "\r\n");          /* no body: the head is whole */
    hb_flush(&h);
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

void
px_hm_response_head(struct px_conn *c, const struct h1_resp *r)
{
    struct hb h;
    const struct rt_conf *rc = &sconf(c)->route;
    bool chunk_ok = c->ex->req_minor == 1;
    size_t i;

    c->ex->res.framing = r->framing;
    c->ex->res.left = r->framing == H1_BODY_LENGTH ? r->content_length : 0;
    c->ex->res.out = PX_OUT_PLAIN;
    if (r->framing == H1_BODY_CHUNKED || r->framing == H1_BODY_CLOSE) {
        if (chunk_ok)
            c->ex->res.out = PX_OUT_CHUNKED;
        else
            c->flags |= PX_CF_NO_KEEPALIVE;   /* HTTP/1.0: delimit by close */
    }
    if (!c->ex->req.done)
        c->flags |= PX_CF_NO_KEEPALIVE;

    h.out = bufferevent_get_output(c->down);
    h.n = 0;
    hb_lit(&h, "HTTP/1.1 ");
    hb_u64(&h, (uint64_t)r->status);
    hb_lit(&h, " ");
    hb_add(&h, r->reason.p, r->reason.len);
    hb_lit(&h, "\r\n");
    /* like write_fields(), but a HEAD or 304 answer keeps its length */
    for (i = 0; i < r->nfields; i++) {
        const struct h1_field *f = &r->fields[i];

        /* a HEAD or 304 answer keeps the length of the representation */
        if ((f->flags & H1_FF_HOP) &&
            !(r->framing == H1_BODY_NONE && h1_iov_eq(f->name, "content-length")))
            continue;
        hb_field(&h, f);
    }
    if (r->framing == H1_BODY_LENGTH) {
        hb_lit(&h, "Content-Length: ");
        hb_u64(&h, r->content_length);
        hb_lit(&h, "\r\n");
    } else if (c->ex->res.out == PX_OUT_CHUNKED) {
        hb_lit(&h, "Transfer-Encoding: chunked\r\n");
    }
    if (c->ex->issue_cookie) {
        char val[PX_COOKIE_VALUE_MAX];

        if (px_cookie_sign(cookie_tab(c), c->ex->bucket, val) > 0) {
            hb_lit(&h, "Set-Cookie: ");
            hb_add(&h, rc->sticky_name, strlen(rc->sticky_name));
            hb_lit(&h, "=");
            hb_add(&h, val, strlen(val));
            hb_lit(&h, "; Path=/; Max-Age=2592000; HttpOnly; SameSite=Lax\r\n");
        }
    }
    if (c->flags & (PX_CF_NO_KEEPALIVE | PX_CF_CLIENT_EOF))
        hb_lit(&h, "Connection: close\r\n");
    else if (c->ex->req_minor == 0)
        hb_lit(&h, "Connection: keep-alive\r\n");
    hb_lit(&h, "\r\n");
    hb_flush(&h);
    c->flags |= PX_CF_RES_STARTED;
}

void
px_hm_interim_head(struct px_conn *c, const struct h1_resp *r)
{
    struct evbuffer *out = bufferevent_get_output(c->down);

    c->flags |= PX_CF_INTERIM;         /* bytes of new went out: never replayed */
    evbuffer_add_printf(out, "HTTP/1.1 %d ", r->status);
    evbuffer_add(out, r->reason.p, r->reason.len);
    evbuffer_add(out, "\r\n", 2);
    write_fields(out, r);
    evbuffer_add(out, "\r\n", 2);
}

void
px_hm_upgrade_head(struct evbuffer *out, const struct h1_resp *r, const struct h1_field *u)
{
    evbuffer_add(out, "HTTP/1.1 101 Switching Protocols\r\n", 34);
    write_fields(out, r);
    evbuffer_add(out, "Connection: upgrade\r\nUpgrade: ", 30);
    evbuffer_add(out, u->value.p, u->value.len);
    evbuffer_add(out, "\r\n\r\n", 4);
}

void
px_hm_error(struct evbuffer *out, int status, const char *text)
{
    evbuffer_add_printf(out,
                        "HTTP/1.1 %d %s\r\n"
                        "Content-Type: text/plain\r\n"
                        "Content-Length: %zu\r\n"
                        "%s"
                        "Connection: close\r\n\r\n%s\n",
                        status, text, strlen(text) + 1,
                        status == 503 ? "Retry-After: 1\r\n" : "", text);
}

void
px_hm_move(struct evbuffer *src, struct evbuffer *dst, size_t n, enum px_out out)
{
    if (n == 0)
        return;
    if (out == PX_OUT_CHUNKED)
        evbuffer_add_printf(dst, "%zx\r\n", n);
    evbuffer_remove_buffer(src, dst, n);
    if (out == PX_OUT_CHUNKED)
        evbuffer_add(dst, "\r\n", 2);
}

/* Moves <n> payload bytes of body <b>, shown first to its tap (shadow). */
static void
body_move(struct px_body *b, struct evbuffer *src, struct evbuffer *dst, size_t n)
{
    if (b->tap != NULL)
        px_shadow_cap_body(b->tap, src, n);
    px_hm_move(src, dst, n, b->out);
}

int
px_hm_body_upto(struct px_body *b, struct evbuffer *src, struct evbuffer *dst, size_t upto)
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
            body_move(b, src, dst, n);
            b->left -= n;
            b->total += n;
            break;
        case H1_BODY_CLOSE:
            if (avail == 0)
                return 0;
            b->total += avail;
            body_move(b, src, dst, avail);
            break;
        case H1_BODY_CHUNKED:
            if (avail == 0)
                return 0;
            if (b->ck.data_left > 0) {
                n = avail < b->ck.data_left ? avail : (size_t)b->ck.data_left;
                body_move(b, src, dst, n);
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

void
px_hm_send_kept(struct evbuffer *out, struct evbuffer *kept)
{
    size_t n = kept != NULL ? evbuffer_get_length(kept) : 0;

    if (n == 0)
        return;
    if (evbuffer_add_buffer_reference(out, kept) < 0)
        evbuffer_add(out, evbuffer_pullup(kept, -1), n);   /* bounded: head or small body */
}

/* ---- request bodies read before the connect ----------------------- */

int
px_hm_buffer_body(struct px_conn *c, int *status, const char **why)
{
    struct evbuffer *in = bufferevent_get_input(c->down);
    const struct px_limits *lim = &sconf(c)->limits;

    if (c->ex->req.framing == H1_BODY_LENGTH) {
        if (c->ex->req.left > lim->buffer_body_bytes)
            return 1;                       /* streams after connect */
        px_hc_evbuffer(c, &c->ex->req_buf);
        if (evbuffer_get_length(in) < c->ex->req.left)
            return 0;
        evbuffer_remove_buffer(in, c->ex->req_buf, (size_t)c->ex->req.left);
        c->ex->req.total = c->ex->req.left;
        c->ex->req.left = 0;
        c->ex->req.done = true;
        return 1;
    }
    /* chunked: decode into req_buf; resend with Content-Length when it ends
     * within the buffer limit, else stream the rest chunked. Decoding stops
     * one byte past the limit, however much of the body one read brought,
     * so that only a body within it is ever sent with a Content-Length */
    c->ex->req.out = PX_OUT_PLAIN;
    if (px_hm_body_upto(&c->ex->req, in, px_hc_evbuffer(c, &c->ex->req_buf),
                        (size_t)lim->buffer_body_bytes + 1) < 0) {
        *status = 400;
        *why = c->ex->req.ck.error != NULL ? c->ex->req.ck.error : "bad chunked body";
        return -1;
    }
    if (lim->body_bytes > 0 && c->ex->req.total > lim->body_bytes) {
        *status = 413;
        *why = "request body over limits.body_bytes";
        return -1;
    }
    if (c->ex->req.done) {
        c->ex->req.framing = H1_BODY_LENGTH;
        c->ex->req.left = 0;
        return 1;
    }
    if (evbuffer_get_length(c->ex->req_buf) > lim->buffer_body_bytes) {
        c->ex->req.out = PX_OUT_CHUNKED;
        return 1;
    }
    return 0;
}

/* ---- tunnels: the bytes as they are ------------------------------- */

/* Tunnel: moves what <from> read to <to>, with backpressure. */
void
px_hm_tunnel_relay(struct px_conn *c, struct bufferevent *from, struct bufferevent *to)
{
    c->ex->last_io_ms = px_now_ms(c->srv);
    (void)px_relay_move(from, to);
}

/* <bev> drained below its low watermark: let <peer> read again. */
void
px_hm_tunnel_drained(struct px_conn *c, struct bufferevent *bev, struct bufferevent *peer)
{
    c->ex->last_io_ms = px_now_ms(c->srv);
    px_relay_drained(bev, peer, PX_IO_READ_MAX, true);
}

/* A timeout in the tunnel: close only when neither direction moved a byte
 * for server_idle_ms. */
void
px_hm_tunnel_timeout(struct px_conn *c, struct bufferevent *bev, short what)
{
    if (!px_relay_timeout(bev, what, px_now_ms(c->srv) - c->ex->last_io_ms,
                          sconf(c)->timeouts.server_idle_ms, true))
        return;
    log_at(LL_DEBUG, "http", c->id, "tunnel idle for %u ms: closed",
           sconf(c)->timeouts.server_idle_ms);
    mark_close(c);
}
