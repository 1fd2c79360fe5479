/* tlsload: the benchmark's TLS client (tests/bench/run.sh), for what wrk
 * cannot do over https: a handshake per connection that is known to be full
 * (wrk keeps the session of a connection and offers it on the next one, so
 * its `Connection: close` runs resume), resumed handshakes counted as such,
 * idle TLS keep-alive connections held open, and a probe that says what a
 * target negotiated.
 *
 *   tlsload [options] probe PORT        one connection (two with -r); prints
 *                                       "tls PROTO CIPHER GROUP KEY resumed=0|1"
 *   tlsload [options] idle PORT COUNT   COUNT keep-alive connections, one GET
 *                                       each; prints "ready COUNT" and holds
 *                                       them until killed
 *   tlsload [options] load PORT CONNS SECS
 *                                       CONNS connections at a time for SECS
 *                                       seconds, each: connect, handshake, one
 *                                       GET with "Connection: close", the whole
 *                                       response, close_notify, close; prints
 *                                       the line of tests/bench/report.lua
 *                                       ("BENCH requests=…", latency from
 *                                       connect to the response's last byte)
 *                                       and "TLS handshakes=N resumed=N …"
 * Options:
 *   -r          offer the session of the connection before (per connection
 *               slot; the first is full); without -r no session is ever
 *               offered, so every handshake is full
 *   -k ecdsa|rsa  the server's key must be of that type (rsa: only RSA
 *               signature algorithms are offered, so a server holding both
 *               certificates has to use its RSA one)
 *   -s NAME     SNI name (default bench.test)
 *   -p PATH     path to GET (default /small)
 *   -b BYTES    the body must have this length
 *
 * The client does not verify the server (neither does wrk). Protocol
 * versions, TLS 1.3 suites and groups are OpenSSL's defaults, which
 * OPENSSL_CONF may change as it does for wrk. Every response must be a 200
 * with a Content-Length. Exit status 0 ok (load: errors are counted in the
 * BENCH line), 1 a failure, 2 usage.
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#define TIMEOUT_MS 10000
#define HEAD_MAX 16384

#define RSA_SIGALGS                                                            \
    "rsa_pss_rsae_sha256:rsa_pss_rsae_sha384:rsa_pss_rsae_sha512:"             \
    "rsa_pkcs1_sha256:rsa_pkcs1_sha384:rsa_pkcs1_sha512"

static const char *sni = "bench.test";
static const char *path = "/small";
static long want_bytes = -1;
static int want_key;                   /* 0 any, EVP_PKEY_EC, EVP_PKEY_RSA */
static int resume;
static int port;
static SSL_CTX *ctx;

static uint64_t
now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void
usage(void)
{
    fprintf(stderr, "usage: tlsload [-r] [-k ecdsa|rsa] [-s NAME] [-p PATH] [-b BYTES] "
                    "probe PORT | idle PORT COUNT | load PORT CONNS SECS\n");
    exit(2);
}

static const char *
ssl_reason(void)
{
    static char buf[256];
    unsigned long e = ERR_get_error();

    if (e == 0)
        return errno != 0 ? strerror(errno) : "closed";
    ERR_error_string_n(e, buf, sizeof(buf));
    ERR_clear_error();
    return buf;
}

static int
tcp_socket(int nonblock)
{
    struct sockaddr_in sa = { .sin_family = AF_INET };
    int one = 1, fd;

    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (nonblock)
        (void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    sa.sin_port = htons((unsigned short)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

/* the server's key type against -k; returns 0 when it fits */
static int
check_key(SSL *ssl, const char **name)
{
    X509 *peer = SSL_get0_peer_certificate(ssl);
    EVP_PKEY *pk = peer != NULL ? X509_get0_pubkey(peer) : NULL;
    int id = pk != NULL ? EVP_PKEY_get_base_id(pk) : 0;

    *name = id == EVP_PKEY_EC ? "ECDSA" : id == EVP_PKEY_RSA ? "RSA" : "other";
    return want_key == 0 || id == want_key ? 0 : -1;
}

/* parses a response head in buf[0..len); returns the head's length and sets
 * *clen, 0 when the head is not complete, -1 when it is not a 200 with a
 * Content-Length */
static long
parse_head(const char *buf, size_t len, long *clen)
{
    const char *end = NULL;

    for (size_t i = 0; i + 3 < len; i++)
        if (memcmp(buf + i, "\r\n\r\n", 4) == 0) {
            end = buf + i;
            break;
        }
    if (end == NULL)
        return len >= HEAD_MAX ? -1 : 0;
    if (strncmp(buf, "HTTP/1.1 200 ", 13) != 0 && strncmp(buf, "HTTP/1.0 200 ", 13) != 0)
        return -1;
    *clen = -1;
    for (const char *l = strstr(buf, "\r\n") + 2; l < end; l = strstr(l, "\r\n") + 2)
        if (strncasecmp(l, "content-length:", 15) == 0)
            *clen = strtol(l + 15, NULL, 10);
    if (*clen < 0 || (want_bytes >= 0 && *clen != want_bytes))
        return -1;
    return (long)(end + 4 - buf);
}

static int
build_request(char *req, size_t size, int close_it)
{
    return snprintf(req, size, "GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n", path, sni,
                    close_it ? "Connection: close\r\n" : "");
}

static SSL *
new_ssl(int fd, SSL_SESSION *sess)
{
    SSL *ssl = SSL_new(ctx);

    if (ssl == NULL)
        return NULL;
    SSL_set_fd(ssl, fd);
    SSL_set_tlsext_host_name(ssl, sni);
    if (sess != NULL)
        SSL_set_session(ssl, sess);
    return ssl;
}

/* ---- probe and idle: blocking, one connection after the other ---------- */

/* opens one connection, does one GET on it; returns the SSL or NULL */
static SSL *
one_exchange(int i, SSL_SESSION *sess, int close_it)
{
    struct timeval tv = { .tv_sec = TIMEOUT_MS / 1000 };
    static char buf[HEAD_MAX + 65536];
    char req[512];
    size_t have = 0;
    long head = 0, clen = 0, got;
    const char *key;
    int fd, len;
    SSL *ssl;

    fd = tcp_socket(0);
    if (fd < 0) {
        fprintf(stderr, "tlsload: connect %d to 127.0.0.1:%d: %s\n", i, port, strerror(errno));
        return NULL;
    }
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    ssl = new_ssl(fd, sess);
    if (ssl == NULL || SSL_connect(ssl) != 1) {
        fprintf(stderr, "tlsload: connection %d: handshake: %s\n", i, ssl_reason());
        return NULL;
    }
    if (check_key(ssl, &key) != 0) {
        fprintf(stderr, "tlsload: connection %d: the server's key is %s\n", i, key);
        return NULL;
    }
    len = build_request(req, sizeof(req), close_it);
    if (SSL_write(ssl, req, len) != len) {
        fprintf(stderr, "tlsload: connection %d: write: %s\n", i, ssl_reason());
        return NULL;
    }
    while (head == 0) {
        int n = SSL_read(ssl, buf + have, (int)(sizeof(buf) - 1 - have));

        if (n <= 0) {
            fprintf(stderr, "tlsload: connection %d: %s before the response head\n", i,
                    ssl_reason());
            return NULL;
        }
        have += (size_t)n;
        buf[have] = '\0';
        head = parse_head(buf, have, &clen);
        if (head < 0) {
            fprintf(stderr, "tlsload: connection %d: not a 200 with the expected "
                            "Content-Length: %.80s\n", i, buf);
            return NULL;
        }
    }
    got = (long)have - head;
    while (got < clen) {
        int n = SSL_read(ssl, buf, sizeof(buf));

        if (n <= 0) {
            fprintf(stderr, "tlsload: connection %d: body cut at %ld of %ld bytes (%s)\n", i,
                    got, clen, ssl_reason());
            return NULL;
        }
        got += n;
    }
    if (got != clen) {
        fprintf(stderr, "tlsload: connection %d: %ld bytes after the body\n", i, got - clen);
        return NULL;
    }
    return ssl;
}

static const char *
group_name(SSL *ssl)
{
    int nid = SSL_get_negotiated_group(ssl);
    const char *n = nid > 0 ? OBJ_nid2sn(nid) : NULL;

    return n != NULL ? n : "none";
}

static int
probe(void)
{
    SSL_SESSION *sess = NULL;
    SSL *ssl = NULL;
    const char *key;

    for (int i = 0; i < (resume ? 2 : 1); i++) {
        if (ssl != NULL) {
            sess = SSL_get1_session(ssl);
            SSL_shutdown(ssl);
            close(SSL_get_fd(ssl));
            SSL_free(ssl);
        }
        ssl = one_exchange(i, sess, 0);
        SSL_SESSION_free(sess);
        sess = NULL;
        if (ssl == NULL)
            return 1;
    }
    (void)check_key(ssl, &key);
    printf("tls %s %s %s %s resumed=%d\n", SSL_get_version(ssl), SSL_get_cipher_name(ssl),
           group_name(ssl), key, SSL_session_reused(ssl));
    return 0;
}

static int
idle(int count)
{
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    for (int i = 0; i < count; i++)
        if (one_exchange(i, NULL, 0) == NULL)
            return 1;
    printf("ready %d\n", count);
    fflush(stdout);
    for (;;)
        pause();
}

/* ---- load: non-blocking, CONNS connections at a time ------------------- */

enum st { S_CONNECT, S_HANDSHAKE, S_WRITE, S_READ };

struct slot {
    int fd;
    enum st st;
    SSL *ssl;
    SSL_SESSION *sess;                 /* -r: the last connection's */
    uint64_t t0;
    size_t have;                       /* head bytes in buf */
    long head, clen, got;
    char buf[HEAD_MAX + 1];
};

static struct {
    uint64_t requests, bytes, handshakes, resumed;
    uint64_t e_connect, e_read, e_write, e_status, e_timeout;
    uint32_t *lat;
    size_t nlat, cap;
    char proto[32], cipher[64], group[32], key[8];
} g;

static int ep;

static void
watch(struct slot *s, uint32_t ev, int op)
{
    struct epoll_event e = { .events = ev, .data.ptr = s };

    (void)epoll_ctl(ep, op, s->fd, &e);
}

static void
slot_close(struct slot *s, int clean)
{
    if (s->ssl != NULL) {
        if (clean)
            (void)SSL_shutdown(s->ssl);  /* close_notify, as wrk sends it */
        SSL_free(s->ssl);
        s->ssl = NULL;
    }
    if (s->fd >= 0) {
        close(s->fd);               /* leaves the epoll set with it */
        s->fd = -1;
    }
}

static void
slot_start(struct slot *s)
{
    s->fd = tcp_socket(1);
    s->t0 = now_us();
    s->have = 0;
    s->head = 0;
    s->got = 0;
    if (s->fd < 0) {
        g.e_connect++;
        return;
    }
    s->st = S_CONNECT;
    watch(s, EPOLLOUT, EPOLL_CTL_ADD);
}

static void
record(struct slot *s)
{
    uint64_t t = now_us() - s->t0;

    if (g.nlat == g.cap) {
        g.cap = g.cap ? g.cap * 2 : 65536;
        g.lat = realloc(g.lat, g.cap * sizeof(*g.lat));
        if (g.lat == NULL)
            exit(1);
    }
    g.lat[g.nlat++] = t > UINT32_MAX ? UINT32_MAX : (uint32_t)t;
    g.requests++;
    g.bytes += (uint64_t)(s->head + s->got);
}

/* an SSL call wants to wait: arms the event it waits for; 0, or -1 on an error */
static int
ssl_wait(struct slot *s, int r)
{
    switch (SSL_get_error(s->ssl, r)) {
    case SSL_ERROR_WANT_READ:
        watch(s, EPOLLIN, EPOLL_CTL_MOD);
        return 0;
    case SSL_ERROR_WANT_WRITE:
        watch(s, EPOLLOUT, EPOLL_CTL_MOD);
        return 0;
    default:
        return -1;
    }
}

/* runs the slot as far as it goes; returns when it must wait */
static void
slot_step(struct slot *s)
{
    char req[512], buf[65536];
    const char *key;
    int r, len;

    for (;;)
        switch (s->st) {
        case S_CONNECT: {
            int err = 0;
            socklen_t sl = sizeof(err);

            if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &sl) < 0 || err != 0) {
                g.e_connect++;
                slot_close(s, 0);
                return;
            }
            s->ssl = new_ssl(s->fd, resume ? s->sess : NULL);
            if (s->ssl == NULL)
                exit(1);
            s->st = S_HANDSHAKE;
            break;
        }
        case S_HANDSHAKE:
            r = SSL_connect(s->ssl);
            if (r != 1) {
                if (ssl_wait(s, r) == 0)
                    return;
                g.e_connect++;
                ERR_clear_error();
                slot_close(s, 0);
                return;
            }
            g.handshakes++;
            if (SSL_session_reused(s->ssl))
                g.resumed++;
            if (check_key(s->ssl, &key) != 0) {
                fprintf(stderr, "tlsload: the server's key is %s\n", key);
                exit(1);
            }
            if (g.proto[0] == '\0') {
                snprintf(g.proto, sizeof(g.proto), "%s", SSL_get_version(s->ssl));
                snprintf(g.cipher, sizeof(g.cipher), "%s", SSL_get_cipher_name(s->ssl));
                snprintf(g.group, sizeof(g.group), "%s", group_name(s->ssl));
                snprintf(g.key, sizeof(g.key), "%s", key);
            }
            s->st = S_WRITE;
            break;
        case S_WRITE:
            len = build_request(req, sizeof(req), 1);
            r = SSL_write(s->ssl, req, len);
            if (r != len) {
                if (r <= 0 && ssl_wait(s, r) == 0)
                    return;
                g.e_write++;
                ERR_clear_error();
                slot_close(s, 0);
                return;
            }
            s->st = S_READ;
            watch(s, EPOLLIN, EPOLL_CTL_MOD);
            break;
        case S_READ:
            if (s->head == 0)
                r = SSL_read(s->ssl, s->buf + s->have, (int)(HEAD_MAX - s->have));
            else
                r = SSL_read(s->ssl, buf, sizeof(buf));
            if (r <= 0) {
                if (ssl_wait(s, r) == 0)
                    return;
                g.e_read++;
                ERR_clear_error();
                slot_close(s, 0);
                return;
            }
            if (s->head == 0) {
                s->have += (size_t)r;
                s->buf[s->have] = '\0';
                s->head = parse_head(s->buf, s->have, &s->clen);
                if (s->head < 0) {
                    g.e_status++;
                    slot_close(s, 0);
                    return;
                }
                if (s->head > 0)
                    s->got = (long)s->have - s->head;
            } else
                s->got += r;
            if (s->head > 0 && s->got >= s->clen) {
                if (s->got > s->clen) {
                    g.e_read++;
                    slot_close(s, 0);
                    return;
                }
                record(s);
                if (resume) {
                    SSL_SESSION_free(s->sess);
                    s->sess = SSL_get1_session(s->ssl);
                }
                slot_close(s, 1);
                return;
            }
            break;
        }
}

static int
cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

    return x < y ? -1 : x > y;
}

static double
pct(double p)
{
    if (g.nlat == 0)
        return 0;
    return g.lat[(size_t)((double)(g.nlat - 1) * p / 100.0 + 0.5)];
}

static int
load(int conns, int secs)
{
    struct slot *slots = calloc((size_t)conns, sizeof(*slots));
    struct epoll_event evs[256];
    uint64_t start, end, t;

    ep = epoll_create1(0);
    if (slots == NULL || ep < 0)
        return 1;
    start = now_us();
    end = start + (uint64_t)secs * 1000000u;
    for (int i = 0; i < conns; i++) {
        slots[i].fd = -1;
        slot_start(&slots[i]);
    }
    while ((t = now_us()) < end) {
        int n = epoll_wait(ep, evs, 256, 100);

        for (int i = 0; i < n; i++)
            slot_step(evs[i].data.ptr);
        t = now_us();
        for (int i = 0; i < conns && t < end; i++) {
            struct slot *s = &slots[i];

            if (s->fd >= 0 && t - s->t0 > TIMEOUT_MS * 1000u) {
                g.e_timeout++;
                slot_close(s, 0);
            }
            if (s->fd < 0)
                slot_start(s);
        }
    }
    qsort(g.lat, g.nlat, sizeof(*g.lat), cmp_u32);
    printf("BENCH requests=%llu bytes=%llu duration_us=%llu p50_us=%.0f p99_us=%.0f"
           " connect=%llu read=%llu write=%llu status=%llu timeout=%llu\n",
           (unsigned long long)g.requests, (unsigned long long)g.bytes,
           (unsigned long long)(t - start), pct(50), pct(99), (unsigned long long)g.e_connect,
           (unsigned long long)g.e_read, (unsigned long long)g.e_write,
           (unsigned long long)g.e_status, (unsigned long long)g.e_timeout);
    printf("TLS handshakes=%llu resumed=%llu proto=%s cipher=%s group=%s key=%s\n",
           (unsigned long long)g.handshakes, (unsigned long long)g.resumed,
           g.proto[0] ? g.proto : "-", g.cipher[0] ? g.cipher : "-",
           g.group[0] ? g.group : "-", g.key[0] ? g.key : "-");
    return 0;
}

int
main(int argc, char **argv)
{
    struct rlimit rl;
    const char *mode;
    int c, a, b = 0;

    while ((c = getopt(argc, argv, "rk:s:p:b:")) != -1)
        switch (c) {
        case 'r':
            resume = 1;
            break;
        case 'k':
            if (strcmp(optarg, "ecdsa") == 0)
                want_key = EVP_PKEY_EC;
            else if (strcmp(optarg, "rsa") == 0)
                want_key = EVP_PKEY_RSA;
            else
                usage();
            break;
        case 's':
            sni = optarg;
            break;
        case 'p':
            path = optarg;
            break;
        case 'b':
            want_bytes = strtol(optarg, NULL, 10);
            break;
        default:
            usage();
        }
    if (argc - optind < 2)
        usage();
    mode = argv[optind];
    port = atoi(argv[optind + 1]);
    a = argc - optind > 2 ? atoi(argv[optind + 2]) : 0;
    if (argc - optind > 3)
        b = atoi(argv[optind + 3]);
    if (port <= 0 || port > 65535)
        usage();
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
    ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL)
        return 1;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    /* sessions are kept by hand (-r), never by OpenSSL's cache */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (want_key == EVP_PKEY_RSA && SSL_CTX_set1_sigalgs_list(ctx, RSA_SIGALGS) != 1)
        return 1;
    if (strcmp(mode, "probe") == 0 && argc - optind == 2)
        return probe();
    if (strcmp(mode, "idle") == 0 && argc - optind == 3 && a > 0)
        return idle(a);
    if (strcmp(mode, "load") == 0 && argc - optind == 4 && a > 0 && b > 0)
        return load(a, b);
    usage();
}
