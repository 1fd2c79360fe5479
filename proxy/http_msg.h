/*
 * http_msg: the heads and bodies of an HTTP exchange as the proxy rewrites
 * them (proxy/http_msg.c): what a parsed request head means for the
 * exchange, the upstream request head, the response heads sent to the
 * client, the bodies re-framed with back-pressure, and the answers the
 * proxy gives itself. Used by proxy/http.c, the connection's state machine;
 * it stands on proxy/http_conn.h and never calls up into http.c.
 */
#ifndef CUTOVER_PROXY_HTTP_MSG_H
#define CUTOVER_PROXY_HTTP_MSG_H

#include "proxy/http_conn.h"

/* Takes what the exchange needs of the parsed request head <r>: the
 * client's version, what its method allows (HEAD, a resend), the upgrade
 * asked for, keep-alive, and the framing of its body (c->req). */
void px_hm_request(struct px_conn *c, const struct h1_req *r);

/* What px_hm_route_input() saw of the sticky cookie. */
#define PX_RI_COOKIE_INVALID 0x1u   /* present, and none verified: count it */
#define PX_RI_COOKIE_RESIGN  0x2u   /* verified by the previous key: issue it
                                     * again, signed with the current one */

/* Fills the router's input from the request; in->client points to
 * <client>, filled with the client's address when the request carries the
 * override header. Returns PX_RI_* flags. */
unsigned px_hm_route_input(struct px_conn *c, const struct h1_req *r, struct rt_input *in,
                           struct cidr_addr *client);

/* Rebuilds the upstream request head into c->up_head: whole for a request
 * without a body, else without its framing line and final CRLF (added once
 * the body framing is known, proxy/http.c). */
void px_hm_request_head(struct px_conn *c, const struct h1_req *r);

/* Writes the final response head <r> to the client, rebuilt, and sets up
 * the framing of the response body (c->res). */
void px_hm_response_head(struct px_conn *c, const struct h1_resp *r);

/* Writes an interim (1xx) response head <r> to the client. */
void px_hm_interim_head(struct px_conn *c, const struct h1_resp *r);

/* Writes the 101 response head <r> that opens a tunnel to <out>, with the
 * protocol of its Upgrade field <u>. */
void px_hm_upgrade_head(struct evbuffer *out, const struct h1_resp *r,
                        const struct h1_field *u);

/* Writes the response the proxy answers with itself, <status> with its
 * reason phrase <text> as the body, the connection to be closed after it. */
void px_hm_error(struct evbuffer *out, int status, const char *text);

/* Moves <n> bytes from <src> to <dst>, wrapped in a chunk when <out> says. */
void px_hm_move(struct evbuffer *src, struct evbuffer *dst, size_t n, enum px_out out);

/* Moves what is available of body <b> from <src> to <dst>, re-framed, at
 * most until <dst> holds <upto> bytes. Returns 0, or -1 on a framing error.
 * Sets b->done at the end of a length or chunked body (the end of a
 * close-delimited body is the caller's EOF). */
int px_hm_body_upto(struct px_body *b, struct evbuffer *src, struct evbuffer *dst,
                    size_t upto);

/* px_hm_body_upto() with the back-pressure limit. */
static inline int
px_hm_body(struct px_body *b, struct evbuffer *src, struct evbuffer *dst)
{
    return px_hm_body_upto(b, src, dst, PX_RELAY_HIGH_WM);
}

/* Appends the contents of <kept> to <out> without consuming <kept>. */
void px_hm_send_kept(struct evbuffer *out, struct evbuffer *kept);

/* Reads a small request body into c->req_buf before the connect: 1 when it
 * is complete or too large to buffer (then it streams), 0 when more is
 * needed, -1 when it is refused (*<status> 400 or 413, *<why> the reason). */
int px_hm_buffer_body(struct px_conn *c, int *status, const char **why);

/* Tunnel: moves what <from> read to <to>, with backpressure. */
void px_hm_tunnel_relay(struct px_conn *c, struct bufferevent *from, struct bufferevent *to);

/* Tunnel: <bev> drained below its low watermark, <peer> may read again. */
void px_hm_tunnel_drained(struct px_conn *c, struct bufferevent *bev,
                          struct bufferevent *peer);

/* Tunnel: a timeout on <bev>; the connection closes only when neither
 * direction moved a byte for server_idle_ms. */
void px_hm_tunnel_timeout(struct px_conn *c, struct bufferevent *bev, short what);

#endif
