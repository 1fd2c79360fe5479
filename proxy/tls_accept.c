/*
 * tls_accept: first byte, handshake, hand-over to the mode (see
 * tls_accept.h).
 */
#include "proxy/tls_accept.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "lib/list.h"
#include "lib/log.h"
#include "lib/timeval.h"
#include "lib/xmalloc.h"
#include "proxy/http.h"
#include "proxy/io.h"
#include "proxy/server.h"
#include "proxy/tcp.h"
#include "proxy/tls.h"
#include "proxy/tls_conf.h"
#include "proxy/tls_io.h"

enum hs_state {
    HS_PEEK = 0,                     /* waiting for the first byte */
    HS_HANDSHAKE,                    /* SSL_do_handshake() until done */
    HS_LINGER,                       /* the plain-HTTP 400 was sent: reading to EOF */
};

struct px_hs {
    struct list link;                /* on svc->handshakes */
    struct px_service *svc;          /* borrowed: alive while we count in conns_active */
    struct px_tls_ctx *tls;          /* one reference: its callbacks read it */
    SSL *ssl;                        /* owned once the first byte said TLS */
    int fd;                          /* owned */
    struct event *ev;                /* owned: the socket, with the deadline */
    enum hs_state state;
    uint64_t id;
    uint64_t deadline_ms;            /* px_now_ms() of the end of handshake_timeout_ms
                                      * (HS_LINGER: of the linger) */
    struct sockaddr_storage sa;
    int salen;
};

static const char plain_reply[] =
    "HTTP/1.1 400 Bad Request\r\n"
    "Content-Type: text/plain\r\n"
    "Content-Length: 53\r\n"
    "Connection: close\r\n"
    "\r\n"
    "This port speaks TLS: send the request with https://\n";

static void on_hs_event(evutil_socket_t fd, short what, void *arg);

/* Ends <h>: the socket and the SSL are closed (unless <keep>: the mode
 * took them), the service told. Touch nothing of <h> after it. */
static void
hs_free(struct px_hs *h, bool keep)
{
    struct px_service *svc = h->svc;

    event_free(h->ev);
    if (!keep) {
        SSL_free(h->ssl);
        px_io_close(h->fd);
    }
    px_tls_ctx_put(h->tls);
    list_unlink(&h->link);
    free(h);
    if (!keep)
        px_srv_conn_closed(svc->srv, svc);
}

static void
hs_fail(struct px_hs *h, enum px_tls_result r, const char *why)
{
    h->svc->tls_hs[r]++;
    log_at(LL_DEBUG, "tls", h->id, "service %s: handshake failed (%s): %s",
           h->svc->conf->name, px_tls_result_names[r], why);
    hs_free(h, false);
}

/* Waits for <what> on the socket until the deadline. */
static void
hs_arm(struct px_hs *h, short what)
{
    uint64_t now = px_now_ms(h->svc->srv);
    struct timeval tv = tv_ms(h->deadline_ms > now ? (unsigned)(h->deadline_ms - now) : 1);

    event_del(h->ev);
    event_assign(h->ev, h->svc->srv->base, h->fd, what, on_hs_event, h);
    event_add(h->ev, &tv);
}

/* The handshake is done: the socket and its SSL go to the service's mode,
 * which reads and writes them through proxy/io.h. */
static void
hs_done(struct px_hs *h)
{
    struct px_service *svc = h->svc;
    struct sockaddr_storage sa = h->sa;
    struct px_tls_io *tls;
    int fd = h->fd;

    svc->tls_hs[PX_TLS_OK]++;
    if (SSL_session_reused(h->ssl))
        svc->tls_resumed++;
    log_at(LL_DEBUG, "tls", h->id, "service %s: %s %s handshake with %s", svc->conf->name,
           SSL_get_version(h->ssl), SSL_session_reused(h->ssl) ? "resumed" : "full",
           SSL_get_cipher_name(h->ssl));
    /* from now on a request's record is one read(2), not its header and
     * its body apart (proxy/tls_io.h) */
    SSL_set_read_ahead(h->ssl, 1);
    tls = px_tls_io_new(h->ssl);
    h->ssl = NULL;
    if (px_tls_io_ktls_send(tls))
        svc->tls_ktls++;
    hs_free(h, true);
    if (svc->conf->mode == PX_MODE_TCP)
        px_tcp_accept_tls(svc, fd, tls, (struct sockaddr *)&sa);
    else
        px_http_accept_tls(svc, fd, tls, (struct sockaddr *)&sa);
}

static void
hs_step(struct px_hs *h)
{
    char why[256];
    int r, e;

    ERR_clear_error();
    r = SSL_do_handshake(h->ssl);
    if (r == 1) {
        hs_done(h);
        return;
    }
    e = SSL_get_error(h->ssl, r);
    if (e == SSL_ERROR_WANT_READ) {
        hs_arm(h, EV_READ);
    } else if (e == SSL_ERROR_WANT_WRITE) {
        hs_arm(h, EV_WRITE);
    } else {
        enum px_tls_result res = px_tls_classify(h->ssl, r, e, why, sizeof(why));

        hs_fail(h, res, why);
    }
}

/* The first byte decides: a TLS record, a request line, or garbage. */
static void
hs_peek(struct px_hs *h)
{
    unsigned char b;
    ssize_t n;

    do
        n = recv(h->fd, &b, 1, MSG_PEEK);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        hs_arm(h, EV_READ);
        return;
    }
    if (n <= 0) {
        /* closed or reset before a byte: no handshake to count */
        log_at(LL_DEBUG, "tls", h->id, "closed before its first byte");
        hs_free(h, false);
        return;
    }
    if (b == 0x16) {
        h->state = HS_HANDSHAKE;
        if ((h->ssl = px_tls_ssl_new(h->tls, h->fd)) == NULL) {
            log_at(LL_ERR, "tls", h->id, "cannot allocate a TLS session");
            hs_free(h, false);
            return;
        }
        hs_step(h);
        return;
    }
    if (b >= 'A' && b <= 'Z') {
        /* the answer fits any socket buffer; the client's bytes are read
         * to its close, so that closing with them unread (a reset) does
         * not destroy the answer on its way */
        h->svc->tls_hs[PX_TLS_PLAIN_HTTP]++;
        log_at(LL_DEBUG, "tls", h->id, "service %s: plain HTTP on the TLS port: 400",
               h->svc->conf->name);
        (void)send(h->fd, plain_reply, sizeof(plain_reply) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        shutdown(h->fd, SHUT_WR);
        h->state = HS_LINGER;
        h->deadline_ms = px_now_ms(h->svc->srv) + PX_TLS_LINGER_MS;
        hs_arm(h, EV_READ);
        return;
    }
    hs_fail(h, PX_TLS_OTHER, "not a TLS record");
}

static void
hs_linger(struct px_hs *h)
{
    char buf[4096];
    ssize_t n;

    while ((n = recv(h->fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
        ;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        hs_arm(h, EV_READ);
        return;
    }
    hs_free(h, false);
}

static void
on_hs_event(evutil_socket_t fd, short what, void *arg)
{
    struct px_hs *h = arg;

    (void)fd;
    if (what & EV_TIMEOUT) {
        if (h->state == HS_LINGER)
            hs_free(h, false);         /* counted as plain_http already */
        else
            hs_fail(h, PX_TLS_TIMEOUT, "handshake_timeout_ms passed");
        return;
    }
    switch (h->state) {
    case HS_PEEK:
        hs_peek(h);
        break;
    case HS_HANDSHAKE:
        hs_step(h);
        break;
    case HS_LINGER:
        hs_linger(h);
        break;
    }
}

void
px_tls_accept(struct px_service *svc, int fd, const struct sockaddr *sa, int salen)
{
    struct px_hs *h = xcalloc(1, sizeof(*h));

    h->svc = svc;
    h->fd = fd;
    h->id = px_srv_conn_id(svc->srv);
    h->tls = px_tls_ctx_get(svc->tls);
    h->deadline_ms = px_now_ms(svc->srv) +
                     (svc->conf->tls != NULL ? svc->conf->tls->handshake_timeout_ms : 10000);
    if (salen > 0 && (size_t)salen <= sizeof(h->sa)) {
        memcpy(&h->sa, sa, (size_t)salen);
        h->salen = salen;
    }
    list_push(&svc->handshakes, &h->link);
    h->ev = event_new(svc->srv->base, fd, EV_READ, on_hs_event, h);
    if (h->ev == NULL) {
        log_at(LL_ERR, "tls", h->id, "cannot allocate a handshake");
        list_unlink(&h->link);
        px_tls_ctx_put(h->tls);
        free(h);
        px_io_close(fd);
        px_srv_conn_closed(svc->srv, svc);
        return;
    }
    hs_arm(h, EV_READ);
}

void
px_tls_accept_close_all(struct px_service *svc)
{
    while (!list_empty(&svc->handshakes))
        hs_free(list_entry(svc->handshakes.next, struct px_hs, link), false);
}
