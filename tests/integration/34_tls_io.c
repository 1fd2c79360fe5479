/*
 * 34_tls_io: how cutoverd reads and writes TLS (proxy/tls_io.c, driven by
 * proxy/io.c), seen from outside: a small response reaches the client as
 * one TLS record, and a small request with its body reaches a TLS backend
 * as one (counted by OpenSSL's message callback in the test's client and
 * in the test backend: libevent's bufferevent_openssl wrote one record per
 * evbuffer chain, two for a head and a body), over TLS 1.3 and 1.2, on
 * keep-alive connections that park between requests; idle TLS keep-alive
 * connections parked (the memory each holds is bounded by what HAProxy's
 * holds in the bench, and each serves its next request), and one that stays
 * idle closed with close_notify; kernel TLS as the status reports it.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <cmocka.h>
#include <openssl/ssl.h>

#include "tests/harness/harness.h"
#include "tests/harness/tls.h"
#include "tests/integration/fixture.h"

#define NIDLE 1000                     /* idle TLS connections held open */

struct t32 {
    struct fx f;                       /* first: fx_teardown() frees the whole */
    int ctl;                           /* a TLS backend's plain control port */
};

/* OpenSSL's message callback of the test's client: counts the application
 * data records received into *<arg> (TLS 1.3: a record's inner content
 * type; TLS 1.2: its header's). */
static void
on_msg(int write_p, int version, int content_type, const void *buf, size_t len, SSL *ssl,
       void *arg)
{
    const unsigned char *b = buf;

    (void)version;
    if (write_p || len < 1 || b[0] != SSL3_RT_APPLICATION_DATA)
        return;
    if (content_type == (SSL_version(ssl) == TLS1_3_VERSION ? SSL3_RT_INNER_CONTENT_TYPE
                                                            : SSL3_RT_HEADER))
        (*(int *)arg)++;
}

/* The fixture with the test certificates in its directory and service
 * "web" terminating TLS with srv.pem (plus service keys <extra>);
 * cutoverd started. */
static struct t32 *
start_tls(void **state, const char *extra)
{
    struct t32 *t = fx_new(state, sizeof(*t), false, 1, NULL);
    struct fx *f = &t->f;

    assert_int_equal(h_tls_make_certs(f->dir), 0);
    snprintf(f->extra, sizeof(f->extra),
             ",\n    \"tls\": {\"certs\": [{\"cert\": \"%s/srv.pem\", \"key\": \"%s/srv.key\"}]}"
             "%s", f->dir, f->dir, extra != NULL ? extra : "");
    assert_int_equal(fx_write_conf(f), 0);
    assert_int_equal(fx_start_proxy(f, 1), 0);
    return t;
}

/* One GET on <t>; the response must be a 200 with <body>. */
static void
get_ok(struct h_tls *t, const char *body)
{
    static const char req[] = "GET /small HTTP/1.1\r\nHost: a.test\r\n\r\n";
    struct h_resp r;

    assert_int_equal(h_tls_send(t, req, sizeof(req) - 1), 0);
    if (h_tls_read_response(t, &r) != 0)
        fail_msg("no response over TLS");
    assert_int_equal(r.status, 200);
    if (body != NULL && (r.body_len != strlen(body) || memcmp(r.body, body, r.body_len) != 0))
        fail_msg("body %.*s, want %s", (int)r.body_len, r.body, body);
    h_resp_free(&r);
}

/* A small response is one record, over TLS 1.3 and 1.2, request after
 * request on one connection (the connection parks between them). */
static void
test_one_record_per_response(void **state)
{
    static const int versions[] = { 13, 12 };
    struct t32 *t = start_tls(state, NULL);
    struct h_tls c;
    unsigned v;
    int i, records;

    for (v = 0; v < 2; v++) {
        if (h_tls_open(&c, t->f.proxy_port, &(struct h_tls_opts){
                           .sni = "a.test", .max_version = versions[v] }) != 0)
            fail_msg("%s", c.error);
        SSL_set_msg_callback(c.ssl, on_msg);
        SSL_set_msg_callback_arg(c.ssl, &records);
        for (i = 0; i < 3; i++) {
            records = 0;
            get_ok(&c, "legacy\n");
            if (records != 1)
                fail_msg("TLS 1.%d, request %d: the response came in %d records",
                         versions[v] % 10, i + 1, records);
            h_sleep_ms(30);            /* idle: parked before the next one */
        }
        h_tls_close(&c, H_TLS_NOTIFY_FIN);
    }
}

/* A response whose head is larger than the proxy builds on its stack (a
 * 6,000-byte field) and whose body takes several records (40,000 bytes)
 * comes whole, in records of at most 16 KiB each and no more of them than
 * its bytes need. */
static void
test_large_head_and_body(void **state)
{
    struct t32 *t = start_tls(state, NULL);
    static char v[8192];
    struct h_tls c;
    struct h_resp r;
    size_t i, total;
    int records = 0;

    assert_int_equal(h_backend_set(t->f.port[0][0], "pad_head=6000&body_bytes=40000"), 0);
    if (h_tls_open(&c, t->f.proxy_port, &(struct h_tls_opts){ .sni = "a.test" }) != 0)
        fail_msg("%s", c.error);
    SSL_set_msg_callback(c.ssl, on_msg);
    SSL_set_msg_callback_arg(c.ssl, &records);
    assert_int_equal(h_tls_send(&c, "GET /big HTTP/1.1\r\nHost: a.test\r\n\r\n", 35), 0);
    assert_int_equal(h_tls_read_response(&c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 40000);
    for (i = 0; i < r.body_len; i++)
        if (r.body[i] != "legacy"[i % 6])
            fail_msg("body byte %zu is %d", i, r.body[i]);
    assert_non_null(h_resp_header(&r, "X-Pad", v, sizeof(v)));
    assert_int_equal(strlen(v), 6000);
    total = strlen(r.head) + r.body_len;
    h_resp_free(&r);
    print_message("%zu bytes of head and body in %d records\n", total, records);
    assert_true(records >= (int)((total + 16383) / 16384));
    assert_true(records <= (int)((total + 16383) / 16384) + 2);
    h_tls_close(&c, H_TLS_NOTIFY_FIN);
}

/* Writes each of the <n> pieces of <piece> on <t> as a record of its own,
 * all of them with one send(): they reach the proxy together, and its
 * read-ahead takes several records at once. */
static void
send_records(struct h_tls *t, const char *const *piece, int n)
{
    BIO *mem = BIO_new(BIO_s_mem()), *sock = SSL_get_rbio(t->ssl);
    char *p;
    long len;
    int i;

    assert_non_null(mem);
    assert_int_equal(BIO_up_ref(sock), 1);
    SSL_set0_wbio(t->ssl, mem);
    for (i = 0; i < n; i++)
        assert_true(SSL_write(t->ssl, piece[i], (int)strlen(piece[i])) > 0);
    len = BIO_get_mem_data(mem, &p);
    assert_true(len > 0);
    assert_int_equal(h_send_all(t->fd, p, (size_t)len), 0);
    SSL_set0_wbio(t->ssl, sock);       /* the socket again; the memory BIO goes */
}

/* Requests in records of their own that arrive together (the proxy reads
 * them ahead, more than limits.head_bytes at once: reading stops at the
 * mark with records still in the SSL and starts again as requests are
 * served), on a new connection and on one that was parked: every one is
 * answered, in order. */
static void
test_pipelined_records_read_ahead(void **state)
{
    struct t32 *t = start_tls(state, ",\n    \"limits\": { \"head_bytes\": 1024 }");
    static char req[40][96];
    const char *piece[40];
    struct h_tls c;
    struct h_resp r;
    char want[32];
    int i, round;

    for (i = 0; i < 40; i++) {
        snprintf(req[i], sizeof(req[i]), "GET /echo HTTP/1.1\r\nHost: a.test\r\nX-N: %02d\r\n\r\n", i);
        piece[i] = req[i];
    }
    if (h_tls_open(&c, t->f.proxy_port, &(struct h_tls_opts){ .sni = "a.test" }) != 0)
        fail_msg("%s", c.error);
    for (round = 0; round < 2; round++) {
        send_records(&c, piece, 40);
        for (i = 0; i < 40; i++) {
            if (h_tls_read_response(&c, &r) != 0)
                fail_msg("round %d: response %d of 40 did not come", round, i);
            assert_int_equal(r.status, 200);
            snprintf(want, sizeof(want), "X-N: %02d\r\n", i);
            if (strstr(r.body, want) == NULL)
                fail_msg("round %d: response %d echoes %s", round, i, r.body);
            h_resp_free(&r);
        }
        h_sleep_ms(200);               /* idle: parked before the next round */
    }
    h_tls_close(&c, H_TLS_NOTIFY_FIN);
}

/* TCP mode: records the client sends together right after its handshake,
 * before the tunnel's upstream is connected, all reach the backend (read
 * ahead while reading was off: read when the connect switches it on). */
static void
test_tcp_mode_records_read_ahead(void **state)
{
    static const char *const piece[] = { "one\n", "two\n", "three\n" };
    struct t32 *t = fx_new(state, sizeof(*t), true, 1, NULL);
    struct fx *f = &t->f;
    struct h_tls c;
    char buf[64];
    int n = 0;

    assert_int_equal(h_tls_make_certs(f->dir), 0);
    snprintf(f->extra, sizeof(f->extra),
             ",\n    \"tls\": {\"certs\": [{\"cert\": \"%s/srv.pem\", \"key\": \"%s/srv.key\"}]}",
             f->dir, f->dir);
    assert_int_equal(fx_write_conf(f), 0);
    assert_int_equal(fx_start_proxy(f, 1), 0);
    if (h_tls_open(&c, f->proxy_port, &(struct h_tls_opts){ .sni = "a.test" }) != 0)
        fail_msg("%s", c.error);
    send_records(&c, piece, 3);
    /* the TCP backend says its name, then echoes */
    while (n < 21) {
        int k = SSL_read(c.ssl, buf + n, (int)sizeof(buf) - 1 - n);

        if (k <= 0)
            fail_msg("the tunnel ended after %d bytes", n);
        n += k;
    }
    buf[n] = '\0';
    assert_string_equal(buf, "legacy\none\ntwo\nthree\n");
    h_tls_close(&c, H_TLS_NOTIFY_FIN);
}

/* (Re)starts the "new" backend as a TLS server with up-ip.pem, its plain
 * control port in t->ctl. */
static void
tls_backend(struct t32 *t)
{
    struct fx *f = &t->f;
    char c[600], k[600], ctl[64];
    const char *args[7];

    if (f->backend[1][0] > 0)
        h_stop(f->backend[1][0], SIGTERM, 3000);
    t->ctl = h_free_port();
    snprintf(c, sizeof(c), "%s/up-ip.pem", f->dir);
    snprintf(k, sizeof(k), "%s/up-ip.key", f->dir);
    snprintf(ctl, sizeof(ctl), "127.0.0.1:%d", t->ctl);
    args[0] = "--tls-cert";
    args[1] = c;
    args[2] = "--tls-key";
    args[3] = k;
    args[4] = "--control";
    args[5] = ctl;
    args[6] = NULL;
    f->backend[1][0] = h_backend_start_args("new", f->port[1][0], f->dir, false, args);
    assert_true(f->backend[1][0] > 0);
}

/* A request with a small body goes to a TLS backend as one record (its
 * head and its body are two chains of the upstream's output), on a new
 * connection and on a pooled one. */
static void
test_one_record_per_request_upstream(void **state)
{
    static const char post[] = "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello";
    struct t32 *t = fx_new(state, sizeof(*t), false, 1, ", \"weight\": 100");
    struct fx *f = &t->f;
    struct h_resp r;
    int fd, i;

    assert_int_equal(h_tls_make_upstream_certs(f->dir), 0);
    tls_backend(t);
    snprintf(f->side_extra[1], sizeof(f->side_extra[1]), ", \"tls\": {\"ca\": \"up-ca.pem\"}");
    assert_int_equal(fx_write_conf(f), 0);
    assert_int_equal(fx_start_proxy(f, 1), 0);
    fd = h_connect(f->proxy_port);
    assert_true(fd >= 0);
    for (i = 1; i <= 3; i++) {
        assert_int_equal(h_send_all(fd, post, sizeof(post) - 1), 0);
        assert_int_equal(h_read_response(fd, &r), 0);
        assert_int_equal(r.status, 200);
        h_resp_free(&r);
        assert_int_equal(h_backend_stat(t->ctl, "requests"), i);
        if (h_backend_stat(t->ctl, "tls_records") != i)
            fail_msg("%d request(s) came to the backend in %ld records", i,
                     h_backend_stat(t->ctl, "tls_records"));
    }
    close(fd);
    assert_int_equal(h_backend_stat(t->ctl, "tls_handshakes"), 1);   /* pooled */
}

/* Responses from a TLS backend, which the proxy reads ahead (one read(2)
 * for what the socket holds, records handed over as they fit): 1 MiB to a
 * client that reads slowly (reading the backend stops at the relay's
 * limit and starts again with records already in the SSL), then a body
 * that only close_notify ends (its last record and the alert may come in
 * one read): both whole and at once. */
static void
test_tls_backend_read_ahead(void **state)
{
    static const char get[] = "GET /big HTTP/1.1\r\nHost: t\r\n\r\n";
    struct t32 *t = fx_new(state, sizeof(*t), false, 1, ", \"weight\": 100");
    struct fx *f = &t->f;
    struct h_resp r;
    size_t i, got = 0;
    char *all, *body = NULL;
    int fd;
    long long t0;

    assert_int_equal(h_tls_make_upstream_certs(f->dir), 0);
    tls_backend(t);
    snprintf(f->side_extra[1], sizeof(f->side_extra[1]), ", \"tls\": {\"ca\": \"up-ca.pem\"}");
    assert_int_equal(fx_write_conf(f), 0);
    assert_int_equal(fx_start_proxy(f, 1), 0);
    assert_int_equal(h_backend_set(t->ctl, "body_bytes=1048576"), 0);
    fd = h_connect(f->proxy_port);
    assert_true(fd >= 0);
    assert_int_equal(h_send_all(fd, get, sizeof(get) - 1), 0);
    h_sleep_ms(300);                   /* the proxy fills its buffers and waits */
    assert_int_equal(h_set_timeout_ms(fd, 5000), 0);
    all = malloc(2 << 20);
    assert_non_null(all);
    while (body == NULL || (size_t)(all + got - body) < 1048576) {
        ssize_t n = recv(fd, all + got, 65536, 0);   /* slowly: 64 KiB at a time */

        if (n <= 0)
            fail_msg("the response stopped after %zu bytes", got);
        got += (size_t)n;
        all[got] = '\0';
        if (body == NULL && (body = strstr(all, "\r\n\r\n")) != NULL)
            body += 4;
        if (got < 600000)
            h_sleep_ms(5);
    }
    assert_int_equal((size_t)(all + got - body), 1048576);
    for (i = 0; i < 1048576; i++)
        if (body[i] != "new"[i % 3])
            fail_msg("body byte %zu is %d", i, body[i]);
    free(all);
    /* a close-delimited body: it ends with the backend's close_notify */
    assert_int_equal(h_backend_set_raw(t->ctl, "HTTP/1.1 200 OK\r\nX-Backend: new\r\n\r\n"
                                       "until the end", "&raw_close=1"), 0);
    t0 = h_now_ms();
    assert_int_equal(h_send_all(fd, get, sizeof(get) - 1), 0);
    assert_int_equal(h_read_response(fd, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 13);
    assert_memory_equal(r.body, "until the end", 13);
    h_resp_free(&r);
    assert_true(h_now_ms() - t0 < 2000);
    close(fd);
    assert_int_equal(fx_status_long(f, "new.counters.errors.upstream_reset"), 0);
}

/* A TLS server of one connection on 127.0.0.1:<port> (a child process):
 * the handshake with up-ip.pem, the request read, then a response whose
 * body only its end delimits and close_notify, sent by one send() so that
 * they arrive together; the TCP connection is left open 3 s. */
static pid_t
one_shot_server(const char *dir, int port)
{
    struct sockaddr_in sa;
    char cert[600], key[600], req[4096];
    size_t n = 0;
    int one = 1, lfd, fd;
    pid_t pid;

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(lfd >= 0);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(lfd, 4), 0);
    if ((pid = fork()) != 0) {
        assert_true(pid > 0);
        close(lfd);
        return pid;
    }
    snprintf(cert, sizeof(cert), "%s/up-ip.pem", dir);
    snprintf(key, sizeof(key), "%s/up-ip.key", dir);
    {
        SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
        BIO *mem = BIO_new(BIO_s_mem());
        static const char res[] = "HTTP/1.1 200 OK\r\nX-Backend: new\r\n\r\nuntil the end";
        SSL *ssl;
        char *out;
        long len;
        ssize_t r;

        if (ctx == NULL || mem == NULL ||
            SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
            SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
            (fd = accept(lfd, NULL, NULL)) < 0 || (ssl = SSL_new(ctx)) == NULL ||
            SSL_set_fd(ssl, fd) != 1 || SSL_accept(ssl) != 1)
            _exit(1);
        while (n < sizeof(req) - 1 && strstr(req, "\r\n\r\n") == NULL) {
            if ((r = SSL_read(ssl, req + n, (int)(sizeof(req) - 1 - n))) <= 0)
                _exit(1);
            n += (size_t)r;
            req[n] = '\0';
        }
        SSL_set0_wbio(ssl, mem);       /* both records into one buffer */
        if (SSL_write(ssl, res, (int)sizeof(res) - 1) <= 0)
            _exit(1);
        (void)SSL_shutdown(ssl);
        len = BIO_get_mem_data(mem, &out);
        if (len <= 0 || send(fd, out, (size_t)len, 0) != (ssize_t)len)
            _exit(1);
        sleep(3);
        _exit(0);
    }
}

/* A response delimited by the end of the stream whose last record and
 * close_notify come in one read: the proxy hands the data over, then the
 * end it already holds (read ahead), at once, though the server's FIN
 * comes only 3 s later. */
static void
test_close_notify_with_the_last_record(void **state)
{
    static const char get[] = "GET / HTTP/1.1\r\nHost: t\r\n\r\n";
    struct t32 *t = fx_new(state, sizeof(*t), false, 1, ", \"weight\": 100");
    struct fx *f = &t->f;
    struct h_resp r;
    pid_t srv;
    long long t0;
    int fd;

    assert_int_equal(h_tls_make_upstream_certs(f->dir), 0);
    h_stop(f->backend[1][0], SIGTERM, 3000);    /* its port is the one-shot server's */
    f->backend[1][0] = 0;
    snprintf(f->side_extra[1], sizeof(f->side_extra[1]), ", \"tls\": {\"ca\": \"up-ca.pem\"}");
    assert_int_equal(fx_write_conf(f), 0);
    assert_int_equal(fx_start_proxy(f, 1), 0);
    srv = one_shot_server(f->dir, f->port[1][0]);
    fd = h_connect(f->proxy_port);
    assert_true(fd >= 0);
    t0 = h_now_ms();
    assert_int_equal(h_send_all(fd, get, sizeof(get) - 1), 0);
    assert_int_equal(h_read_response(fd, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 13);
    assert_memory_equal(r.body, "until the end", 13);
    h_resp_free(&r);
    print_message("answered in %lld ms\n", h_now_ms() - t0);
    assert_true(h_now_ms() - t0 < 1500);
    close(fd);
    kill(srv, SIGKILL);
    waitpid(srv, NULL, 0);
}

/* NIDLE idle TLS keep-alive connections, each after one request: what each
 * holds in cutoverd (RSS) stays below what an idle TLS connection holds in
 * HAProxy in the bench (15.5 KB: an SSL and its session, its record
 * buffers released); a connection that is not parked keeps a bufferevent,
 * its buffers and events beside them (16.8 KB). Each serves its next
 * request. */
static void
test_idle_tls_connections_are_parked(void **state)
{
    struct t32 *t = start_tls(state, ",\n    \"timeouts\": { \"client_idle_ms\": 60000 }");
    struct h_tls *c = calloc(NIDLE, sizeof(*c));
    long before, after;
    double per;
    int i;

    assert_non_null(c);
    for (i = 0; i < 50; i++) {         /* warm-up: the loop's spares, the arenas */
        if (h_tls_open(&c[i], t->f.proxy_port, &(struct h_tls_opts){ .sni = "a.test" }) != 0)
            fail_msg("%s", c[i].error);
        get_ok(&c[i], NULL);
    }
    for (i = 0; i < 50; i++)
        h_tls_close(&c[i], H_TLS_NOTIFY_FIN);
    h_sleep_ms(100);
    before = h_rss_kib(t->f.proxy);
    for (i = 0; i < NIDLE; i++) {
        if (h_tls_open(&c[i], t->f.proxy_port, &(struct h_tls_opts){ .sni = "a.test" }) != 0)
            fail_msg("connection %d: %s", i, c[i].error);
        get_ok(&c[i], NULL);
    }
    h_sleep_ms(300);                   /* idle PX_PARK_DELAY_MS: all parked */
    after = h_rss_kib(t->f.proxy);
    per = (double)(after - before) * 1.024 / NIDLE;
    print_message("RSS %ld KiB before, %ld KiB after %d idle TLS connections: %.2f KB each\n",
                  before, after, NIDLE, per);
    for (i = 0; i < NIDLE; i++) {
        get_ok(&c[i], NULL);
        h_tls_close(&c[i], H_TLS_NOTIFY_FIN);
    }
    free(c);
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
    /* (a sanitizer's allocator makes the figure meaningless) */
    if (per > 15.5)
        fail_msg("%.2f KB per idle TLS connection", per);
#endif
    fx_stop_clean(&t->f);
}

/* A parked TLS connection that stays idle is closed at client_idle_ms
 * with close_notify (between requests, nothing was cut). */
static void
test_parked_tls_connection_idle_timeout(void **state)
{
    struct t32 *t = start_tls(state, ",\n    \"timeouts\": { \"client_idle_ms\": 300 }");
    struct h_tls c;
    long long t0;
    int end;

    if (h_tls_open(&c, t->f.proxy_port, &(struct h_tls_opts){ .sni = "a.test" }) != 0)
        fail_msg("%s", c.error);
    get_ok(&c, "legacy\n");
    t0 = h_now_ms();
    end = h_tls_read_end(&c, 3000, NULL);
    if (end != 1)
        fail_msg("the idle connection ended %s", end == 0 ? "without close_notify" : "late");
    assert_true(h_now_ms() - t0 >= 250);
    h_tls_close(&c, H_TLS_FIN);
}

/* Whether this kernel takes the "tls" ULP on a loopback connection (what
 * cutoverd probes at start, asked independently). */
static bool
kernel_has_tls(void)
{
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    int l, c = -1, a = -1;
    bool ok = false;

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    l = socket(AF_INET, SOCK_STREAM, 0);
    if (l >= 0 && bind(l, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(l, 1) == 0 &&
        getsockname(l, (struct sockaddr *)&sa, &sl) == 0 &&
        (c = socket(AF_INET, SOCK_STREAM, 0)) >= 0 &&
        connect(c, (struct sockaddr *)&sa, sizeof(sa)) == 0 && (a = accept(l, NULL, NULL)) >= 0)
        ok = setsockopt(a, IPPROTO_TCP, TCP_ULP, "tls", sizeof("tls")) == 0;
    if (a >= 0)
        close(a);
    if (c >= 0)
        close(c);
    if (l >= 0)
        close(l);
    return ok;
}

/* Kernel TLS is probed at start: the status says whether it is in use (and
 * why not) and counts the connections whose records the kernel writes;
 * the log says it once. Where the kernel has no "tls" module (this
 * project's machines so far) that is "not available", and TLS works. */
static void
test_kernel_tls_status(void **state)
{
    struct t32 *t = start_tls(state, NULL);
    bool have = kernel_has_tls();
    json_t *v = fx_status_at(&t->f, "tls.kernel_tls"), *why;
    struct h_tls c;

    assert_true(json_is_string(v));
    print_message("kernel TLS: %s\n", json_string_value(v));
    assert_string_equal(json_string_value(v), have ? "in use" : "not available");
    json_decref(v);
    why = fx_status_at(&t->f, "tls.kernel_tls_why");
    if (have) {
        assert_null(why);
    } else {
        assert_true(json_is_string(why) && json_string_length(why) > 0);
        assert_int_equal(h_wait_log(t->f.log, "kernel TLS: not available (", 3000), 0);
    }
    json_decref(why);
    if (h_tls_open(&c, t->f.proxy_port, &(struct h_tls_opts){ .sni = "a.test" }) != 0)
        fail_msg("%s", c.error);
    get_ok(&c, "legacy\n");
    h_tls_close(&c, H_TLS_NOTIFY_FIN);
    if (!have)
        assert_int_equal(fx_status_long(&t->f, "tls.kernel_tls_connections"), 0);
    else
        assert_true(fx_status_long(&t->f, "tls.kernel_tls_connections") >= 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_one_record_per_response, fx_teardown),
        cmocka_unit_test_teardown(test_one_record_per_request_upstream, fx_teardown),
        cmocka_unit_test_teardown(test_large_head_and_body, fx_teardown),
        cmocka_unit_test_teardown(test_pipelined_records_read_ahead, fx_teardown),
        cmocka_unit_test_teardown(test_tcp_mode_records_read_ahead, fx_teardown),
        cmocka_unit_test_teardown(test_tls_backend_read_ahead, fx_teardown),
        cmocka_unit_test_teardown(test_close_notify_with_the_last_record, fx_teardown),
        cmocka_unit_test_teardown(test_idle_tls_connections_are_parked, fx_teardown),
        cmocka_unit_test_teardown(test_parked_tls_connection_idle_timeout, fx_teardown),
        cmocka_unit_test_teardown(test_kernel_tls_status, fx_teardown),
    };
    struct rlimit rl;

    /* NIDLE connections and their descriptors, here and in cutoverd */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 4096 && rl.rlim_max >= 4096) {
        rl.rlim_cur = 4096;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    return cmocka_run_group_tests_name("integration: TLS I/O", tests, NULL, NULL);
}
