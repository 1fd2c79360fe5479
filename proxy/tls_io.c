/*
 * tls_io: TLS records between an evbuffer and a socket (see tls_io.h).
 *
 * Workload: per request one SSL_read and one SSL_write per direction of a
 * TLS connection, on the loop's thread; nothing here takes a lock.
 */
#include "proxy/tls_io.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "lib/log.h"
#include "lib/xmalloc.h"

struct px_tls_io *
px_tls_io_new(SSL *ssl)
{
    struct px_tls_io *t = xcalloc(1, sizeof(*t));

    t->ssl = ssl;
    t->state = SSL_is_init_finished(ssl) ? PX_TLS_IO_OPEN : PX_TLS_IO_CONNECTING;
    /* a record the socket took in part is passed again from wherever the
     * evbuffer holds its bytes then */
    SSL_set_mode(ssl, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    return t;
}

void
px_tls_io_free(struct px_tls_io *t)
{
    if (t == NULL)
        return;
    SSL_free(t->ssl);
    free(t);
}

/* Why the last call on <t> failed, as errno (the error queue emptied). */
static int
failure_errno(struct px_tls_io *t, int ssl_error)
{
    int e = errno;

    if (ssl_error == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)
        e = e != 0 && e != EAGAIN ? e : ECONNRESET;
    else
        e = EPROTO;
    t->error = ERR_peek_last_error();
    ERR_clear_error();
    return e;
}

ssize_t
px_tls_io_recv(struct px_tls_io *t, struct evbuffer *in, size_t max)
{
    struct evbuffer_iovec v;
    size_t got, total = 0, want = max > 0 ? max : 1;
    int e;

    for (;;) {
        if (evbuffer_reserve_space(in, (ev_ssize_t)want, &v, 1) < 1) {
            errno = ENOMEM;
            return -1;
        }
        if (v.iov_len > want)
            v.iov_len = want;
        errno = 0;
        if (!SSL_read_ex(t->ssl, v.iov_base, v.iov_len, &got)) {
            evbuffer_commit_space(in, &v, 0);
            e = SSL_get_error(t->ssl, 0);
            if (total > 0) {
                /* read ahead: the data first; the end of the stream or the
                 * error behind it is handed over by the next read, which
                 * the caller runs at once (the SSL says it again) */
                if (e != SSL_ERROR_WANT_READ)
                    t->more = true;
                ERR_clear_error();
                return (ssize_t)total;
            }
            if (e == SSL_ERROR_WANT_READ)
                return PX_TLS_IO_AGAIN;
            if (e == SSL_ERROR_WANT_WRITE)
                return PX_TLS_IO_WANT_WRITE;
            if (e == SSL_ERROR_ZERO_RETURN) {
                ERR_clear_error();
                return 0;
            }
            errno = failure_errno(t, e);
            return -1;
        }
        v.iov_len = got;
        if (evbuffer_commit_space(in, &v, 1) < 0) {
            errno = ENOMEM;
            return -1;
        }
        total += got;
        /* the rest of this record's plaintext, never left in the SSL */
        if ((want = (size_t)SSL_pending(t->ssl)) > 0)
            continue;
        /* records read ahead: handed over while there is room, else by the
         * next read, which the caller runs at once */
        if (!SSL_has_pending(t->ssl))
            return (ssize_t)total;
        if (total >= max) {
            t->more = true;
            return (ssize_t)total;
        }
        want = max - total;
    }
}

ssize_t
px_tls_io_send(struct px_tls_io *t, struct evbuffer *out)
{
    size_t len, n, w, total = 0;
    unsigned char *p;
    int e;

    while ((len = evbuffer_get_length(out)) > 0) {
        n = t->wpending > 0 ? t->wpending : len < PX_TLS_IO_RECORD ? len : PX_TLS_IO_RECORD;
        /* one record: its bytes in one piece (a response's head and body
         * are two chains; a bulk body's chains hold 16 KiB at once) */
        if ((p = evbuffer_pullup(out, (ev_ssize_t)n)) == NULL) {
            errno = ENOMEM;
            return -1;
        }
        errno = 0;
        if (!SSL_write_ex(t->ssl, p, n, &w)) {
            e = SSL_get_error(t->ssl, 0);
            if (e == SSL_ERROR_WANT_WRITE) {
                t->wpending = n;       /* encrypted: these bytes again, and no others */
                return (ssize_t)total;
            }
            /* WANT_READ: renegotiation, which is off both ways */
            errno = e == SSL_ERROR_WANT_READ ? EPROTO : failure_errno(t, e);
            return -1;
        }
        t->wpending = 0;
        evbuffer_drain(out, w);
        total += w;
    }
    return (ssize_t)total;
}

int
px_tls_io_handshake(struct px_tls_io *t)
{
    int r, e;

    errno = 0;
    if ((r = SSL_do_handshake(t->ssl)) == 1) {
        t->state = PX_TLS_IO_OPEN;
        return 1;
    }
    e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ)
        return PX_TLS_IO_AGAIN;
    if (e == SSL_ERROR_WANT_WRITE)
        return PX_TLS_IO_WANT_WRITE;
    errno = failure_errno(t, e);
    t->state = PX_TLS_IO_FAILED;
    return -1;
}

bool
px_tls_io_holds(const struct px_tls_io *t)
{
    return t != NULL && (t->more || SSL_has_pending(t->ssl));
}

void
px_tls_io_close_notify(struct px_tls_io *t)
{
    if (t == NULL || t->state != PX_TLS_IO_OPEN || t->wpending > 0 ||
        (SSL_get_shutdown(t->ssl) & SSL_SENT_SHUTDOWN))
        return;
    (void)SSL_shutdown(t->ssl);        /* one non-blocking write of the alert */
    ERR_clear_error();
}

const char *
px_tls_io_peer(struct px_tls_io *t, char *subj, size_t len)
{
    X509 *x;

    subj[0] = '\0';
    if (t == NULL)
        return NULL;
    if ((x = SSL_get0_peer_certificate(t->ssl)) != NULL)
        X509_NAME_oneline(X509_get_subject_name(x), subj, (int)len);
    return SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name);
}

/* ---- kernel TLS --------------------------------------------------------- */

static pthread_once_t ktls_once = PTHREAD_ONCE_INIT;
static bool ktls_ok;                   /* written once (ktls_once), read-only after */
static char ktls_why[160];

/* Asks for the "tls" ULP on one end of a loopback connection. */
static void
ktls_probe(void)
{
#if defined(OPENSSL_NO_KTLS) || !defined(TCP_ULP)
    snprintf(ktls_why, sizeof(ktls_why), "OpenSSL or the system's headers lack kernel TLS");
#else
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    int l, c = -1, a = -1;

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (l < 0 || bind(l, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(l, 1) != 0 ||
        getsockname(l, (struct sockaddr *)&sa, &sl) != 0 ||
        (c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
        connect(c, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        (a = accept(l, NULL, NULL)) < 0)
        snprintf(ktls_why, sizeof(ktls_why), "cannot probe it over loopback: %s",
                 strerror(errno));
    else if (setsockopt(a, IPPROTO_TCP, TCP_ULP, "tls", sizeof("tls")) != 0)
        snprintf(ktls_why, sizeof(ktls_why), "the kernel has no \"tls\" module (TCP_ULP: %s)",
                 strerror(errno));
    else
        ktls_ok = true;
    if (a >= 0)
        close(a);
    if (c >= 0)
        close(c);
    if (l >= 0)
        close(l);
#endif
}

static void
ktls_log(void)
{
    if (px_tls_io_ktls())
        log_at(LL_INFO, "tls", 0, "kernel TLS: available, the contexts enable it");
    else
        log_at(LL_INFO, "tls", 0, "kernel TLS: not available (%s): records are OpenSSL's",
               ktls_why);
}

void
px_tls_io_ktls_log(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;

    pthread_once(&once, ktls_log);
}

bool
px_tls_io_ktls(void)
{
    pthread_once(&ktls_once, ktls_probe);
    return ktls_ok;
}

const char *
px_tls_io_ktls_why(void)
{
    pthread_once(&ktls_once, ktls_probe);
    return ktls_why;
}

bool
px_tls_io_ktls_send(const struct px_tls_io *t)
{
    return t != NULL && BIO_get_ktls_send(SSL_get_wbio(t->ssl)) != 0;
}
