/*
 * harness/tls: see tls.h. Blocking and single-threaded like the harness:
 * the client's socket has 5 s send and receive timeouts.
 */
#define _GNU_SOURCE                  /* pipe2(2) */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "tests/harness/tls.h"

#define H_TLS_IO_MS 5000
#define H_TLS_PAD_EXT 0xfd00u         /* an extension type nobody knows */

/* ---- certificates ---------------------------------------------------- */

/* The recipe; "$1" is the directory. */
static const char make_certs_sh[] =
    "set -e\n"
    "cd \"$1\"\n"
    "ec() { openssl ecparam -name prime256v1 -genkey -noout -out \"$1.key\"; }\n"
    "rsa() { openssl genrsa -out \"$1.key\" 2048 2>/dev/null; }\n"
    "ca() { ec \"$1\"; openssl req -x509 -new -key \"$1.key\" -subj \"/CN=$2\" -days 3650 "
    "-out \"$1.pem\"; }\n"
    "leaf() {\n"
    "  openssl req -new -key \"$1.key\" -subj \"$3\" -out \"$1.csr\"\n"
    "  printf '%s\\n' \"$4\" > \"$1.ext\"\n"
    "  openssl x509 -req -in \"$1.csr\" -CA \"$2.pem\" -CAkey \"$2.key\" -CAcreateserial "
    "-days \"$5\" -extfile \"$1.ext\" -out \"$1.pem\" 2>/dev/null\n"
    "}\n"
    "ca ca 'cutover test CA'\n"
    "ca otherca 'another CA'\n"
    "ec srv; leaf srv ca '/CN=a.test/O=cutover tests' 'subjectAltName=DNS:a.test,DNS:b.test' 30\n"
    "rsa wild; leaf wild ca '/CN=*.wild.test' 'subjectAltName=DNS:*.wild.test' 30\n"
    "rsa rsa; leaf rsa ca '/CN=rsa.test' 'subjectAltName=DNS:rsa.test' 30\n"
    "rsa srvrsa; leaf srvrsa ca '/CN=a.test/O=cutover tests rsa' "
    "'subjectAltName=DNS:a.test,DNS:b.test' 30\n"
    "ec soon; leaf soon ca '/CN=soon.test' 'subjectAltName=DNS:soon.test' 7\n"
    "ec client; leaf client ca '/CN=client.test' 'extendedKeyUsage=clientAuth' 30\n"
    "ec stranger; leaf stranger otherca '/CN=stranger.test' 'extendedKeyUsage=clientAuth' 30\n"
    /* expired: `openssl ca` sets both dates */
    "ec expired\n"
    "openssl req -new -key expired.key -subj '/CN=expired.test' -out expired.csr\n"
    "mkdir -p ca.db; : > ca.db/index.txt; echo 01 > ca.db/serial\n"
    "printf '[ca]\\ndefault_ca = d\\n[d]\\ndatabase = ca.db/index.txt\\nserial = ca.db/serial\\n"
    "new_certs_dir = ca.db\\ndefault_md = sha256\\npolicy = p\\n[p]\\ncommonName = supplied\\n'"
    " > ca.cnf\n"
    "openssl ca -batch -notext -config ca.cnf -cert ca.pem -keyfile ca.key "
    "-startdate 20200101000000Z -enddate 20200201000000Z -in expired.csr -out expired.pem "
    "2>/dev/null\n";

static const char make_cert_sh[] =
    "set -e\n"
    "cd \"$1\"\n"
    "openssl ecparam -name prime256v1 -genkey -noout -out \"$2.key.new\"\n"
    "openssl req -new -key \"$2.key.new\" -subj \"$3\" -out \"$2.csr\"\n"
    "printf 'subjectAltName=%s\\n' \"$4\" > \"$2.ext\"\n"
    "openssl x509 -req -in \"$2.csr\" -CA ca.pem -CAkey ca.key -CAcreateserial -days \"$5\" "
    "-extfile \"$2.ext\" -out \"$2.pem.new\" 2>/dev/null\n"
    /* both in place at once, as a deployment would */
    "mv \"$2.key.new\" \"$2.key\"; mv \"$2.pem.new\" \"$2.pem\"\n";

int
h_tls_make_certs(const char *dir)
{
    char *argv[] = { "sh", "-c", (char *)make_certs_sh, "sh", (char *)dir, NULL };
    char out[8192];
    int rc = h_run(argv, NULL, out, sizeof(out), 120000);

    if (rc != 0)
        fprintf(stderr, "harness: making the test certificates in %s failed (%d):\n%s\n", dir,
                rc, out);
    return rc == 0 ? 0 : -1;
}

int
h_tls_make_cert(const char *dir, const char *name, const char *subject, const char *names,
                int days)
{
    char d[16], sans[1024], *p, *q;
    char *argv[] = { "sh", "-c", (char *)make_cert_sh, "sh", (char *)dir, (char *)name,
                     (char *)subject, sans, d, NULL };
    char out[4096];
    int rc;

    snprintf(d, sizeof(d), "%d", days);
    /* "a.test,b.test" -> "DNS:a.test,DNS:b.test" */
    sans[0] = '\0';
    for (p = (char *)names; *p != '\0'; p = *q != '\0' ? q + 1 : q) {
        q = strchr(p, ',');
        if (q == NULL)
            q = p + strlen(p);
        snprintf(sans + strlen(sans), sizeof(sans) - strlen(sans), "%sDNS:%.*s",
                 sans[0] != '\0' ? "," : "", (int)(q - p), p);
    }
    rc = h_run(argv, NULL, out, sizeof(out), 60000);
    if (rc != 0)
        fprintf(stderr, "harness: making %s/%s.pem failed (%d):\n%s\n", dir, name, rc, out);
    return rc == 0 ? 0 : -1;
}

/* ---- client ---------------------------------------------------------- */

static int
on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    struct h_tls *t = SSL_get_app_data(ssl);

    if (t->session != NULL)
        SSL_SESSION_free(t->session);
    t->session = sess;                 /* we keep the reference */
    return 1;
}

static int
pad_add(SSL *s, unsigned int ext_type, unsigned int context, const unsigned char **out,
        size_t *outlen, X509 *x, size_t chainidx, int *al, void *add_arg)
{
    size_t n = *(size_t *)add_arg;
    unsigned char *p;

    (void)s;
    (void)ext_type;
    (void)context;
    (void)x;
    (void)chainidx;
    (void)al;
    if (n == 0)
        return 0;
    if ((p = malloc(n)) == NULL)
        return -1;
    memset(p, 'p', n);
    *out = p;
    *outlen = n;
    return 1;
}

static void
pad_free(SSL *s, unsigned int ext_type, unsigned int context, const unsigned char *out,
         void *add_arg)
{
    (void)s;
    (void)ext_type;
    (void)context;
    (void)add_arg;
    free((void *)out);
}

static void
ssl_error_text(struct h_tls *t, const char *what)
{
    unsigned long e = ERR_get_error();
    char buf[256];

    if (e != 0)
        ERR_error_string_n(e, buf, sizeof(buf));
    else
        snprintf(buf, sizeof(buf), "%s", errno != 0 ? strerror(errno) : "no OpenSSL error");
    snprintf(t->error, sizeof(t->error), "%s: %s", what, buf);
    ERR_clear_error();
}

static int
version_of(int v)
{
    return v == 13 ? TLS1_3_VERSION : v == 12 ? TLS1_2_VERSION : 0;
}

int
h_tls_open(struct h_tls *t, int port, const struct h_tls_opts *o)
{
    static size_t pad;                 /* the pad callback's argument */
    struct sockaddr_in sin = { .sin_family = AF_INET };
    int one = 1;

    memset(t, 0, sizeof(*t));
    t->fd = -1;
    ERR_clear_error();
    if ((t->ctx = SSL_CTX_new(TLS_client_method())) == NULL) {
        ssl_error_text(t, "SSL_CTX_new");
        return -1;
    }
    SSL_CTX_set_session_cache_mode(t->ctx, SSL_SESS_CACHE_CLIENT |
                                           SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(t->ctx, on_new_session);
    if (o->min_version != 0)
        SSL_CTX_set_min_proto_version(t->ctx, version_of(o->min_version));
    if (o->max_version != 0)
        SSL_CTX_set_max_proto_version(t->ctx, version_of(o->max_version));
    if (o->ciphers != NULL && SSL_CTX_set_cipher_list(t->ctx, o->ciphers) != 1) {
        ssl_error_text(t, "cipher list");
        return -1;
    }
    if (o->sigalgs != NULL && SSL_CTX_set1_sigalgs_list(t->ctx, o->sigalgs) != 1) {
        ssl_error_text(t, "signature algorithms");
        return -1;
    }
    if (o->ca != NULL) {
        if (SSL_CTX_load_verify_locations(t->ctx, o->ca, NULL) != 1) {
            ssl_error_text(t, o->ca);
            return -1;
        }
        SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
    }
    if (o->cert != NULL &&
        (SSL_CTX_use_certificate_chain_file(t->ctx, o->cert) != 1 ||
         SSL_CTX_use_PrivateKey_file(t->ctx, o->key, SSL_FILETYPE_PEM) != 1)) {
        ssl_error_text(t, o->cert);
        return -1;
    }
    if (o->hello_pad > 0) {
        pad = o->hello_pad;
        SSL_CTX_add_custom_ext(t->ctx, H_TLS_PAD_EXT, SSL_EXT_CLIENT_HELLO, pad_add, pad_free,
                               &pad, NULL, NULL);
    }
    if ((t->ssl = SSL_new(t->ctx)) == NULL) {
        ssl_error_text(t, "SSL_new");
        return -1;
    }
    SSL_set_app_data(t->ssl, t);
    if (o->sni != NULL) {
        SSL_set_tlsext_host_name(t->ssl, o->sni);
        if (o->ca != NULL)
            SSL_set1_host(t->ssl, o->sni);
    }
    if (o->alpn != NULL) {
        unsigned char wire[256];
        size_t n = 0;
        const char *p = o->alpn, *q;

        for (; *p != '\0'; p = *q != '\0' ? q + 1 : q) {
            q = strchr(p, ',');
            if (q == NULL)
                q = p + strlen(p);
            wire[n++] = (unsigned char)(q - p);
            memcpy(wire + n, p, (size_t)(q - p));
            n += (size_t)(q - p);
        }
        SSL_set_alpn_protos(t->ssl, wire, (unsigned)n);
    }
    if (o->session != NULL)
        SSL_set_session(t->ssl, o->session);

    if ((t->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
        h_set_timeout_ms(t->fd, H_TLS_IO_MS) != 0) {
        snprintf(t->error, sizeof(t->error), "socket: %s", strerror(errno));
        return -1;
    }
    setsockopt(t->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin.sin_port = htons((uint16_t)port);
    if (connect(t->fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
        snprintf(t->error, sizeof(t->error), "connect 127.0.0.1:%d: %s", port, strerror(errno));
        return -1;
    }
    SSL_set_fd(t->ssl, t->fd);
    return o->connect_only ? 0 : h_tls_handshake(t);
}

int
h_tls_handshake(struct h_tls *t)
{
    X509 *peer;
    const unsigned char *sel = NULL;
    unsigned sel_len = 0;

    errno = 0;
    if (SSL_connect(t->ssl) != 1) {
        ssl_error_text(t, "handshake");
        return -1;
    }
    if ((peer = SSL_get1_peer_certificate(t->ssl)) != NULL) {
        EVP_PKEY *k = X509_get0_pubkey(peer);

        X509_NAME_oneline(X509_get_subject_name(peer), t->subject, sizeof(t->subject));
        snprintf(t->key_type, sizeof(t->key_type), "%s",
                 k == NULL ? "?" : EVP_PKEY_get_base_id(k) == EVP_PKEY_RSA ? "RSA"
                 : EVP_PKEY_get_base_id(k) == EVP_PKEY_EC ? "EC" : "other");
        X509_free(peer);
    }
    SSL_get0_alpn_selected(t->ssl, &sel, &sel_len);
    snprintf(t->alpn, sizeof(t->alpn), "%.*s", (int)sel_len, sel != NULL ? (const char *)sel : "");
    snprintf(t->version, sizeof(t->version), "%s", SSL_get_version(t->ssl));
    t->reused = SSL_session_reused(t->ssl) == 1;
    return 0;
}

int
h_tls_send(struct h_tls *t, const void *buf, size_t len)
{
    const char *p = buf;

    while (len > 0) {
        int n = SSL_write(t->ssl, p, len > 65536 ? 65536 : (int)len);

        if (n <= 0) {
            ssl_error_text(t, "SSL_write");
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int
h_tls_send_raw(struct h_tls *t, const void *buf, size_t len)
{
    return h_send_all(t->fd, buf, len);
}

/* recv(2) as the harness's reader wants it, over the SSL: 0 at the end of
 * the stream (close_notify or EOF), -1 with errno otherwise. */
static ssize_t
tls_recv(void *arg, void *buf, size_t n, bool peek)
{
    struct h_tls *t = arg;
    int r, e;

    if (n > 1 << 30)
        n = 1 << 30;
    errno = 0;
    r = peek ? SSL_peek(t->ssl, buf, (int)n) : SSL_read(t->ssl, buf, (int)n);
    if (r > 0)
        return r;
    e = SSL_get_error(t->ssl, r);
    ERR_clear_error();
    if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && errno == 0))
        return 0;
    if (e == SSL_ERROR_SSL)
        errno = EPROTO;
    else if (errno == 0)
        errno = EIO;
    return -1;
}

int
h_tls_read_response(struct h_tls *t, struct h_resp *r)
{
    struct h_reader rd = { tls_recv, t, t->fd };

    return h_read_response_from(&rd, r);
}

bool
h_tls_peer_closed(struct h_tls *t, int timeout_ms)
{
    struct pollfd pfd = { .fd = t->fd, .events = POLLIN };
    char ch;
    ssize_t n;

    if (SSL_pending(t->ssl) > 0)
        return false;
    if (poll(&pfd, 1, timeout_ms) <= 0)
        return false;
    h_set_timeout_ms(t->fd, 200);
    n = tls_recv(t, &ch, 1, true);
    h_set_timeout_ms(t->fd, H_TLS_IO_MS);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

int
h_tls_read_end(struct h_tls *t, int timeout_ms, size_t *bytes)
{
    char buf[16384];
    long long end = h_now_ms() + timeout_ms;
    size_t n = 0;
    int r, e, rc = -1;

    h_set_timeout_ms(t->fd, timeout_ms > 0 ? timeout_ms : 1);
    while (h_now_ms() <= end) {
        errno = 0;
        r = SSL_read(t->ssl, buf, sizeof(buf));
        if (r > 0) {
            n += (size_t)r;
            continue;
        }
        e = SSL_get_error(t->ssl, r);
        if (e == SSL_ERROR_ZERO_RETURN)
            rc = 1;
        else if (e == SSL_ERROR_SSL || (e == SSL_ERROR_SYSCALL && errno != EAGAIN &&
                                        errno != EWOULDBLOCK))
            rc = 0;                    /* OpenSSL 3: "unexpected eof", or a reset */
        ERR_clear_error();
        break;
    }
    h_set_timeout_ms(t->fd, H_TLS_IO_MS);
    if (bytes != NULL)
        *bytes = n;
    return rc;
}

void
h_tls_close(struct h_tls *t, enum h_tls_end how)
{
    struct linger lg = { 1, 0 };

    if (t->ssl != NULL && t->fd >= 0 && (how == H_TLS_NOTIFY_FIN || how == H_TLS_NOTIFY_RST))
        (void)SSL_shutdown(t->ssl);    /* sends close_notify, does not wait */
    if (t->fd >= 0) {
        if (how == H_TLS_RST || how == H_TLS_NOTIFY_RST)
            setsockopt(t->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        else
            shutdown(t->fd, SHUT_WR);
        close(t->fd);
    }
    SSL_free(t->ssl);
    SSL_CTX_free(t->ctx);
    if (t->session != NULL)
        SSL_SESSION_free(t->session);
    ERR_clear_error();
    t->ssl = NULL;
    t->ctx = NULL;
    t->session = NULL;
    t->fd = -1;
}

int
h_tls_exchange(int port, const struct h_tls_opts *o, const char *raw, struct h_resp *r)
{
    struct h_tls t;
    int rc = -1;

    memset(r, 0, sizeof(*r));
    if (h_tls_open(&t, port, o) == 0 && h_tls_send(&t, raw, strlen(raw)) == 0)
        rc = h_tls_read_response(&t, r);
    h_tls_close(&t, H_TLS_NOTIFY_FIN);
    return rc;
}

/* ---- commands -------------------------------------------------------- */

int
h_run(char *const argv[], const char *input, char *out, size_t outlen, int timeout_ms)
{
    int in[2], ob[2], status = 0;
    size_t len = 0, inlen = input != NULL ? strlen(input) : 0, sent = 0;
    long long deadline = h_now_ms() + timeout_ms;
    pid_t pid;
    bool out_open = true;

    out[0] = '\0';
    if (pipe2(in, O_CLOEXEC) != 0)
        return -1;
    if (pipe2(ob, O_CLOEXEC) != 0) {
        close(in[0]);
        close(in[1]);
        return -1;
    }
    pid = fork();
    if (pid < 0) {
        close(in[0]);
        close(in[1]);
        close(ob[0]);
        close(ob[1]);
        return -1;
    }
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(ob[1], 1);
        dup2(ob[1], 2);
        setpgid(0, 0);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(in[0]);
    close(ob[1]);
    signal(SIGPIPE, SIG_IGN);
    fcntl(in[1], F_SETFL, O_NONBLOCK);
    if (inlen == 0) {
        close(in[1]);
        in[1] = -1;
    }
    while (out_open && h_now_ms() < deadline) {
        struct pollfd p[2] = { { ob[0], POLLIN, 0 }, { in[1], POLLOUT, 0 } };
        int np = in[1] >= 0 ? 2 : 1;

        if (poll(p, (nfds_t)np, 50) < 0 && errno != EINTR)
            break;
        if (np == 2 && (p[1].revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t n = write(in[1], input + sent, inlen - sent);

            if (n > 0)
                sent += (size_t)n;
            if (n < 0 || sent == inlen) {
                close(in[1]);
                in[1] = -1;
            }
        }
        if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            char buf[4096];
            ssize_t n = read(ob[0], buf, sizeof(buf));

            if (n <= 0) {
                out_open = false;
            } else if (len + 1 < outlen) {
                size_t k = (size_t)n < outlen - 1 - len ? (size_t)n : outlen - 1 - len;

                memcpy(out + len, buf, k);
                len += k;
                out[len] = '\0';
            }
        }
    }
    if (in[1] >= 0)
        close(in[1]);
    close(ob[0]);
    if (out_open) {
        kill(-pid, SIGKILL);
        waitpid(pid, &status, 0);
        fprintf(stderr, "harness: %s ran longer than %d ms: killed\n", argv[0], timeout_ms);
        return -1;
    }
    if (waitpid(pid, &status, 0) != pid)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

