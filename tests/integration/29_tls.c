/*
 * TLS termination on the listeners, with real clients (the harness's
 * OpenSSL client, `openssl s_client`, `curl`) against the real cutoverd and
 * certificates made at test time (h_tls_make_certs): the certificate SNI
 * picks (exact, wildcard, default; ECDSA and RSA), ALPN, session
 * resumption across workers (tickets and the session cache), client
 * certificates required and optional, plain HTTP and garbage on the TLS
 * port, the handshake timeout, a 64 KiB ClientHello, memory after 100,000
 * failed handshakes, TCP mode, cut requests in every order of
 * close_notify / FIN / RST, the request corpus over TLS, certificate
 * reloads that drop nothing (and bad ones that change nothing), and
 * `cutoverd -t` on TLS settings.
 */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/ssl.h>

#include "tests/harness/harness.h"
#include "tests/harness/tls.h"
#include "tests/integration/fixture.h"

static char *certs;                    /* the group's certificates */

static const char *
cert(const char *name)
{
    static char ring[8][1024];
    static unsigned next;
    char *p = ring[next++ % 8];

    snprintf(p, sizeof(ring[0]), "%s/%s", certs, name);
    return p;
}

static int
group_setup(void **state)
{
    (void)state;
    certs = h_tmpdir();
    return certs != NULL && h_tls_make_certs(certs) == 0 ? 0 : -1;
}

static int
group_teardown(void **state)
{
    (void)state;
    h_kill_all();
    if (certs != NULL)
        h_rmrf(certs);
    free(certs);
    return 0;
}

/* A fixture whose service "web" terminates TLS with "tls": <tls> (JSON),
 * started; with an admin endpoint and an access log in its directory. */
static struct fx *
start_tls(void **state, bool tcp, const char *tls, unsigned workers)
{
    struct fx *f;
    char extra[2048];

    if ((size_t)snprintf(extra, sizeof(extra), ",\n    \"tls\": %s", tls) >= sizeof(extra))
        fail_msg("the \"tls\" of the test is too long");
    f = fx_new(state, sizeof(*f), tcp, 1, extra);
    f->workers = workers;
    f->admin_port = h_free_port();
    snprintf(f->top_extra, sizeof(f->top_extra),
             ",\n  \"access_log\": { \"file\": \"%s/access.log\" }", f->dir);
    assert_int_equal(fx_write_conf(f), 0);
    assert_int_equal(fx_start_proxy(f, 1), 0);
    return f;
}

/* "tls" with the certificates <names> ("srv,wild") of the group. */
static const char *
tls_certs(const char *names, const char *more)
{
    static char buf[4096];
    char list[3072] = "";
    const char *p = names, *q;

    for (; *p != '\0'; p = *q != '\0' ? q + 1 : q) {
        char n[64];

        q = strchr(p, ',');
        if (q == NULL)
            q = p + strlen(p);
        snprintf(n, sizeof(n), "%.*s", (int)(q - p), p);
        snprintf(list + strlen(list), sizeof(list) - strlen(list),
                 "%s{\"cert\": \"%s/%s.pem\", \"key\": \"%s/%s.key\"}",
                 list[0] != '\0' ? ", " : "", certs, n, certs, n);
    }
    snprintf(buf, sizeof(buf), "{\"certs\": [%s]%s}", list, more != NULL ? more : "");
    return buf;
}

static const char get_req[] = "GET /tls HTTP/1.1\r\nHost: a.test\r\n\r\n";

/* One request on open connection <t>: fails the test unless it gets 200. */
static void
get_ok(struct h_tls *t)
{
    struct h_resp r;

    assert_int_equal(h_tls_send(t, get_req, sizeof(get_req) - 1), 0);
    if (h_tls_read_response(t, &r) != 0)
        fail_msg("no response over TLS");
    assert_int_equal(r.status, 200);
    h_resp_free(&r);
}

static long
hs(struct fx *f, const char *result)
{
    return fx_status_long(f, "tls.handshakes.%s", result);
}

/* Polls the status until handshakes of <result> reach <want> (3 s). */
static long
wait_hs(struct fx *f, const char *result, long want)
{
    long long end = h_now_ms() + 3000;
    long n;

    while ((n = hs(f, result)) != want && h_now_ms() < end)
        h_sleep_ms(20);
    return n;
}

static void
test_sni_picks_the_certificate(void **state)
{
    static const struct {
        const char *sni, *subject, *key;
    } cases[] = {
        { "a.test", "/CN=a.test", "EC" },
        { "b.test", "/CN=a.test", "EC" },          /* its second name */
        { "B.Test", "/CN=a.test", "EC" },          /* names are case-blind */
        { "x.wild.test", "/CN=*.wild.test", "RSA" },
        { "y.x.wild.test", "/CN=a.test", "EC" },   /* a wildcard covers one label */
        { "wild.test", "/CN=a.test", "EC" },
        { "rsa.test", "/CN=rsa.test", "RSA" },
        { "unknown.test", "/CN=a.test", "EC" },    /* the first is the default */
        { NULL, "/CN=a.test", "EC" },
    };
    struct fx *f = start_tls(state, false, tls_certs("srv,wild,rsa", NULL), 1);
    char port[16], url[128], resolve[128], out[4096];
    struct h_tls t;
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (h_tls_open(&t, f->proxy_port, &(struct h_tls_opts){ .sni = cases[i].sni }) != 0)
            fail_msg("%s: %s", cases[i].sni, t.error);
        if (strncmp(t.subject, cases[i].subject, strlen(cases[i].subject)) != 0 ||
            strcmp(t.key_type, cases[i].key) != 0)
            fail_msg("SNI %s: served %s (%s), want %s (%s)", cases[i].sni, t.subject,
                     t.key_type, cases[i].subject, cases[i].key);
        get_ok(&t);
        h_tls_close(&t, H_TLS_NOTIFY_FIN);
    }
    /* curl verifies the chain and the name */
    snprintf(port, sizeof(port), "%d", f->proxy_port);
    for (i = 0; i < 3; i++) {
        static const char *const hosts[] = { "b.test", "q.wild.test", "rsa.test" };
        char *argv[] = { "curl", "-sS", "--cacert", (char *)cert("ca.pem"), "--resolve",
                         resolve, "-o", "/dev/null", "-w", "%{http_code}", url, NULL };

        snprintf(resolve, sizeof(resolve), "%s:%s:127.0.0.1", hosts[i], port);
        snprintf(url, sizeof(url), "https://%s:%s/curl", hosts[i], port);
        if (h_run(argv, NULL, out, sizeof(out), 10000) != 0 || strcmp(out, "200") != 0)
            fail_msg("curl %s: %s", url, out);
    }
    assert_int_equal(wait_hs(f, "ok", (long)(sizeof(cases) / sizeof(cases[0])) + 3),
                     (long)(sizeof(cases) / sizeof(cases[0])) + 3);
    /* the backend learns that the client spoke TLS */
    {
        struct h_resp r;

        assert_int_equal(h_tls_exchange(f->proxy_port, &(struct h_tls_opts){ .sni = "a.test" },
                                        "GET /echo HTTP/1.1\r\nHost: a.test\r\n\r\n", &r), 0);
        assert_int_equal(r.status, 200);
        if (strstr(r.body, "\r\nX-Forwarded-Proto: https\r\n") == NULL)
            fail_msg("the backend got: %s", r.body);
        h_resp_free(&r);
    }
}

/* An ECDSA and an RSA certificate for the same names: each client gets the
 * one its signature algorithms take. */
static void
test_ecdsa_and_rsa_for_the_same_names(void **state)
{
    static const struct {
        struct h_tls_opts o;
        const char *key, *org;
    } cases[] = {
        { { .sni = "a.test" }, "EC", "/O=cutover tests" },
        { { .sni = "b.test", .max_version = 12, .ciphers = "ECDHE-RSA-AES128-GCM-SHA256" },
          "RSA", "/O=cutover tests rsa" },
        { { .sni = "a.test", .sigalgs = "rsa_pss_rsae_sha256:rsa_pkcs1_sha256" }, "RSA",
          "/O=cutover tests rsa" },
        { { .sni = "b.test", .max_version = 12, .ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256" },
          "EC", "/O=cutover tests" },
        { { .sni = NULL, .sigalgs = "rsa_pss_rsae_sha256" }, "RSA", "/O=cutover tests rsa" },
    };
    struct fx *f = start_tls(state, false, tls_certs("srv,srvrsa,wild", NULL), 1);
    struct h_tls t;
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct h_tls_opts o = cases[i].o;

        o.ca = cert("ca.pem");
        if (h_tls_open(&t, f->proxy_port, &o) != 0)
            fail_msg("case %zu: %s", i, t.error);
        if (strcmp(t.key_type, cases[i].key) != 0 || strstr(t.subject, cases[i].org) == NULL ||
            (strcmp(cases[i].key, "EC") == 0 && strstr(t.subject, " rsa") != NULL))
            fail_msg("case %zu: served %s (%s), want %s", i, t.subject, t.key_type,
                     cases[i].key);
        get_ok(&t);
        h_tls_close(&t, H_TLS_NOTIFY_FIN);
    }
    /* both are listed */
    {
        json_t *k = fx_status_at(f, "tls.certs.1.key");

        assert_string_equal(json_string_value(k), "RSA 2048");
        json_decref(k);
    }
}

static void
test_alpn(void **state)
{
    static const struct {
        const char *offer, *chosen;
    } cases[] = {
        { "http/1.1", "http/1.1" }, { "h2,http/1.1", "http/1.1" },
        { "http/1.0", "http/1.0" }, { NULL, "" },
    };
    struct fx *f = start_tls(state, false, tls_certs("srv", NULL), 1);
    char *argv[] = { "openssl", "s_client", "-connect", NULL, "-alpn", "h2", NULL };
    char addr[64], out[16384];
    struct h_tls t;
    struct h_resp r;
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (h_tls_open(&t, f->proxy_port, &(struct h_tls_opts){ .sni = "a.test",
                                                               .alpn = cases[i].offer }) != 0)
            fail_msg("ALPN %s: %s", cases[i].offer, t.error);
        assert_string_equal(t.alpn, cases[i].chosen);
        get_ok(&t);
        h_tls_close(&t, H_TLS_NOTIFY_FIN);
    }
    /* a client that speaks h2 only is refused with no_application_protocol */
    assert_int_equal(h_tls_exchange(f->proxy_port, &(struct h_tls_opts){ .alpn = "h2" },
                                    get_req, &r), -1);
    h_resp_free(&r);
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", f->proxy_port);
    argv[3] = addr;
    (void)h_run(argv, "", out, sizeof(out), 10000);
    if (strstr(out, "no application protocol") == NULL)
        fail_msg("s_client -alpn h2: %s", out);
    assert_int_equal(wait_hs(f, "other", 2), 2);
}

/* Connections accepted by worker <w> so far. */
static double
accepted_by(struct fx *f, int w)
{
    char *text = fx_scrape(f);
    double n = fx_metric(text, "cutover_worker_accepted_total{worker=\"%d\"}", w);

    free(text);
    return n;
}

/* Resumes session <sess> (taken over) until each of the two workers has accepted (and
 * resumed) at least one of these connections, 64 tries at most: every one
 * of them must resume, wherever the first handshake was. Returns how many
 * connections it made. */
static int
resume_on_both_workers(struct fx *f, SSL_SESSION *sess, int version)
{
    double a0 = accepted_by(f, 0), a1 = accepted_by(f, 1);
    struct h_tls t;
    int i;

    for (i = 0; i < 64; i++) {
        if (h_tls_open(&t, f->proxy_port, &(struct h_tls_opts){ .sni = "a.test",
                       .session = sess, .max_version = version }) != 0)
            fail_msg("resumption %d: %s", i, t.error);
        if (!t.reused)
            fail_msg("TLS 1.%d: connection %d did not resume its session", version - 10, i);
        get_ok(&t);
        /* the next one uses the session this one was given (a TLS 1.3
         * ticket is for one use) */
        if (t.session != NULL) {
            SSL_SESSION_free(sess);
            sess = t.session;
            t.session = NULL;
        }
        h_tls_close(&t, H_TLS_NOTIFY_FIN);
        if (accepted_by(f, 0) > a0 && accepted_by(f, 1) > a1)
            break;
    }
    SSL_SESSION_free(sess);
    if (i == 64)
        fail_msg("64 connections, all on one worker");
    return i + 1;
}

/* A session of a first full handshake (TLS 1.<version>). */
static SSL_SESSION *
first_session(struct fx *f, int version)
{
    struct h_tls t;
    SSL_SESSION *s;

    if (h_tls_open(&t, f->proxy_port, &(struct h_tls_opts){ .sni = "a.test",
                   .max_version = version }) != 0)
        fail_msg("%s", t.error);
    assert_false(t.reused);
    get_ok(&t);                        /* a TLS 1.3 ticket comes after the handshake */
    s = t.session;
    t.session = NULL;
    assert_non_null(s);
    h_tls_close(&t, H_TLS_NOTIFY_FIN);
    return s;
}

static void
test_resumption_across_workers(void **state)
{
    struct fx *f = start_tls(state, false, tls_certs("srv", NULL), 2);
    char *argv[] = { "openssl", "s_client", "-connect", NULL, "-servername", "a.test",
                     "-CAfile", (char *)cert("ca.pem"), "-ign_eof", NULL, NULL, NULL };
    char addr[64], sess[1024], out[16384], *text;
    long ok;
    int resumed = 1;                   /* s_client's */

    /* openssl s_client: the second connection says "Reused" */
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", f->proxy_port);
    snprintf(sess, sizeof(sess), "%s/s_client.sess", f->dir);
    argv[3] = addr;
    argv[9] = "-sess_out";
    argv[10] = sess;
    assert_int_equal(h_run(argv, "GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
                           out, sizeof(out), 10000), 0);
    if (strstr(out, "\nNew, TLSv1.3") == NULL)
        fail_msg("first s_client: %s", out);
    argv[9] = "-sess_in";
    assert_int_equal(h_run(argv, "GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
                           out, sizeof(out), 10000), 0);
    if (strstr(out, "\nReused, TLSv1.3") == NULL)
        fail_msg("second s_client did not resume: %s", out);

    /* tickets of one worker open sessions on the other, TLS 1.3 and 1.2 */
    resumed += resume_on_both_workers(f, first_session(f, 13), 13);
    resumed += resume_on_both_workers(f, first_session(f, 12), 12);

    ok = wait_hs(f, "ok", hs(f, "ok"));
    assert_int_equal(fx_status_long(f, "tls.resumed"), resumed);
    text = fx_scrape(f);
    assert_true(fx_metric(text, "cutover_tls_handshakes_total{service=\"web\",result=\"ok\"}")
                == (double)ok);
    assert_true(fx_metric(text, "cutover_tls_resumed_total{service=\"web\"}") == resumed);
    assert_true(fx_metric(text, "cutover_tls_cert_expiry_timestamp_seconds{service=\"web\","
                                "cert=\"%s\"}", cert("srv.pem")) > (double)time(NULL));
    free(text);
}

static void
test_session_cache_without_tickets(void **state)
{
    struct fx *f = start_tls(state, false,
                             tls_certs("srv", ", \"session_tickets\": false"), 2);

    resume_on_both_workers(f, first_session(f, 12), 12);
    resume_on_both_workers(f, first_session(f, 13), 13);
}

/* The first access log line with <needle>, copied into <buf>; "" after 3 s. */
static const char *
access_line(struct fx *f, const char *needle, char *buf, size_t len)
{
    char path[1024], *text, *p, *e;
    long long end = h_now_ms() + 3000;

    snprintf(path, sizeof(path), "%s/access.log", f->dir);
    buf[0] = '\0';
    do {
        text = h_read_file(path);
        if (text != NULL && (p = strstr(text, needle)) != NULL) {
            while (p > text && p[-1] != '\n')
                p--;
            e = strchr(p, '\n');
            snprintf(buf, len, "%.*s", e != NULL ? (int)(e - p) : (int)strlen(p), p);
        }
        free(text);
    } while (buf[0] == '\0' && h_now_ms() < end && (h_sleep_ms(20), 1));
    return buf;
}

static void
test_client_certificates(void **state)
{
    char more[1024], line[4096];
    struct fx *f;
    struct h_resp r;

    /* required */
    snprintf(more, sizeof(more), ", \"client_ca\": \"%s\"", cert("ca.pem"));
    f = start_tls(state, false, tls_certs("srv", more), 1);
    assert_int_equal(h_tls_exchange(f->proxy_port, &(struct h_tls_opts){ .sni = "a.test" },
                                    get_req, &r), -1);
    h_resp_free(&r);
    assert_int_equal(wait_hs(f, "bad_certificate", 1), 1);
    assert_int_equal(h_tls_exchange(f->proxy_port, &(struct h_tls_opts){ .sni = "a.test",
                     .cert = cert("stranger.pem"), .key = cert("stranger.key") }, get_req, &r),
                     -1);
    h_resp_free(&r);
    assert_int_equal(wait_hs(f, "unknown_ca", 1), 1);
    assert_int_equal(h_tls_exchange(f->proxy_port, &(struct h_tls_opts){ .sni = "a.test",
                     .cert = cert("client.pem"), .key = cert("client.key") }, get_req, &r), 0);
    assert_int_equal(r.status, 200);
    h_resp_free(&r);
    access_line(f, "client_cert=/CN=client.test", line, sizeof(line));
    if (strstr(line, " sni=a.test ") == NULL || strstr(line, " status=200 ") == NULL)
        fail_msg("access log: %s", line);
    {
        json_t *v = fx_status_at(f, "tls.client_verify");

        assert_string_equal(json_string_value(v), "required");
        json_decref(v);
    }
    fx_fini(f);
    free(f);
    *state = NULL;

    /* optional: none is fine, a good one is logged */
    snprintf(more, sizeof(more), ", \"client_ca\": \"%s\", \"client_verify\": \"optional\"",
             cert("ca.pem"));
    f = start_tls(state, false, tls_certs("srv", more), 1);
    assert_int_equal(h_tls_exchange(f->proxy_port, &(struct h_tls_opts){ .sni = "a.test" },
                                    get_req, &r), 0);
    assert_int_equal(r.status, 200);
    h_resp_free(&r);
    access_line(f, " status=200 ", line, sizeof(line));
    if (strstr(line, " client_cert=-") == NULL)
        fail_msg("access log: %s", line);
    assert_int_equal(h_tls_exchange(f->proxy_port, &(struct h_tls_opts){ .sni = "a.test",
                     .cert = cert("client.pem"), .key = cert("client.key") }, get_req, &r), 0);
    assert_int_equal(r.status, 200);
    h_resp_free(&r);
    access_line(f, "client_cert=/CN=client.test", line, sizeof(line));
    assert_true(line[0] != '\0');
}

static void
test_bad_input(void **state)
{
    struct fx *f = start_tls(state, false,
                             tls_certs("srv", ", \"handshake_timeout_ms\": 300"), 1);
    struct h_resp r;
    struct h_tls t;
    long long t0, dt;
    char buf[64];
    int fd;

    /* plain HTTP: a short plaintext 400 that says why, then a close */
    assert_int_equal(h_exchange(f->proxy_port, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", &r), 0);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(r.body, "TLS"));
    assert_true(r.closed || h_resp_header(&r, "Connection", buf, sizeof(buf)) != NULL);
    h_resp_free(&r);
    assert_int_equal(wait_hs(f, "plain_http", 1), 1);

    /* garbage before a ClientHello: closed without a byte */
    assert_true((fd = h_connect(f->proxy_port)) >= 0);
    assert_int_equal(h_send_all(fd, "\x01\x02\x03garbage", 10), 0);
    assert_true(h_peer_closed(fd, 3000));
    close(fd);
    assert_int_equal(wait_hs(f, "other", 1), 1);

    /* a client that stalls, before or inside its ClientHello */
    assert_true((fd = h_connect(f->proxy_port)) >= 0);
    t0 = h_now_ms();
    assert_true(h_peer_closed(fd, 5000));
    dt = h_now_ms() - t0;
    close(fd);
    if (dt < 250 || dt > 3000)
        fail_msg("closed after %lld ms, handshake_timeout_ms is 300", dt);
    assert_true((fd = h_connect(f->proxy_port)) >= 0);
    assert_int_equal(h_send_all(fd, "\x16\x03\x01\x02\x00\x01", 6), 0);
    t0 = h_now_ms();
    assert_true(h_peer_closed(fd, 5000));
    dt = h_now_ms() - t0;
    close(fd);
    if (dt < 250 || dt > 3000)
        fail_msg("closed after %lld ms, handshake_timeout_ms is 300", dt);
    assert_int_equal(wait_hs(f, "timeout", 2), 2);

    /* closed before a byte: no handshake at all */
    assert_true((fd = h_connect(f->proxy_port)) >= 0);
    close(fd);

    /* a 64 KiB ClientHello (many records) is a ClientHello */
    if (h_tls_open(&t, f->proxy_port, &(struct h_tls_opts){ .sni = "a.test",
                   .hello_pad = 64000 }) != 0)
        fail_msg("64 KiB ClientHello: %s", t.error);
    get_ok(&t);
    h_tls_close(&t, H_TLS_NOTIFY_FIN);
    assert_int_equal(wait_hs(f, "ok", 1), 1);
    assert_int_equal(hs(f, "other"), 1);
    assert_int_equal(hs(f, "plain_http"), 1);
    assert_int_equal(hs(f, "timeout"), 2);
}

/* A handshake that must fail, client-side or at the first read (TLS 1.3
 * clients finish before the server judges their certificate). */
static void
handshake_fails(struct fx *f, const struct h_tls_opts *o)
{
    struct h_tls t;
    char ch;
    bool refused = h_tls_open(&t, f->proxy_port, o) != 0 ||
                   h_tls_send(&t, get_req, sizeof(get_req) - 1) != 0 ||
                   SSL_read(t.ssl, &ch, 1) <= 0;

    h_tls_close(&t, H_TLS_RST);
    if (!refused)
        fail_msg("a handshake that should fail did not");
}

/* <n> failed handshakes of three kinds. */
static void
fail_handshakes(struct fx *f, int n)
{
    int i, fd;

    for (i = 0; i < n; i++) {
        switch (i % 3) {
        case 0:                        /* no cipher in common */
            handshake_fails(f, &(struct h_tls_opts){ .max_version = 12,
                                                     .ciphers = "AES128-SHA" });
            break;
        case 1:                        /* a ClientHello cut by a reset */
            assert_true((fd = h_connect(f->proxy_port)) >= 0);
            assert_int_equal(h_send_all(fd, "\x16\x03\x01\x00\x40\x01\x00\x00\x3c\x03\x03", 11),
                             0);
            {
                struct linger lg = { 1, 0 };

                setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
            }
            close(fd);
            break;
        default:                       /* a client certificate nobody signed */
            handshake_fails(f, &(struct h_tls_opts){ .cert = cert("stranger.pem"),
                                                     .key = cert("stranger.key") });
            break;
        }
    }
}

/* The first flight of a client that offers TLS 1.2 (<version> 12) with
 * <ciphers>, or TLS 1.0 and 1.1 only (<version> 10): one ClientHello,
 * made once with memory BIOs and then sent as it is by many connections
 * (the server refuses it before any key of the client matters). Returns
 * its length in <buf>. */
static size_t
client_hello(int version, const char *ciphers, unsigned char *buf, size_t cap)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
    SSL *ssl;
    int n;

    assert_non_null(ctx);
    if (version == 10) {
        SSL_CTX_set_security_level(ctx, 0);
        assert_int_equal(SSL_CTX_set_min_proto_version(ctx, TLS1_VERSION), 1);
        assert_int_equal(SSL_CTX_set_max_proto_version(ctx, TLS1_1_VERSION), 1);
        assert_int_equal(SSL_CTX_set_cipher_list(ctx, "DEFAULT:@SECLEVEL=0"), 1);
    } else {
        assert_int_equal(SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION), 1);
        assert_int_equal(SSL_CTX_set_cipher_list(ctx, ciphers), 1);
    }
    ssl = SSL_new(ctx);
    assert_non_null(ssl);
    SSL_set_bio(ssl, rb, wb);
    SSL_set_connect_state(ssl);
    SSL_set_tlsext_host_name(ssl, "a.test");
    assert_true(SSL_do_handshake(ssl) <= 0);
    n = BIO_read(wb, buf, (int)cap);
    assert_true(n > 5 && buf[0] == 0x16);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    return (size_t)n;
}

/* <n> connections to <port>, <conc> at a time, each sending <msg> (then,
 * with <fin>, its FIN) and waiting until the proxy closes it (its alert
 * read and dropped): failed handshakes at the proxy's pace, without a TLS
 * client per connection. */
static void
blast(int port, const void *msg, size_t len, bool fin, int n, int conc)
{
    struct pollfd *p = calloc((size_t)conc, sizeof(*p));
    int started = 0, done = 0, i;
    long long deadline = h_now_ms() + 120000;

    assert_non_null(p);
    for (i = 0; i < conc; i++)
        p[i].fd = -1;
    while (done < n) {
        for (i = 0; i < conc && started < n; i++) {
            if (p[i].fd >= 0)
                continue;
            p[i].fd = h_connect(port);
            assert_true(p[i].fd >= 0);
            assert_int_equal(h_send_all(p[i].fd, msg, len), 0);
            if (fin)
                shutdown(p[i].fd, SHUT_WR);
            p[i].events = POLLIN;
            started++;
        }
        assert_true(poll(p, (nfds_t)conc, 1000) >= 0);
        for (i = 0; i < conc; i++) {
            char buf[512];
            ssize_t r;

            if (p[i].fd < 0 || p[i].revents == 0)
                continue;
            while ((r = recv(p[i].fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
                ;
            if (r < 0 && (errno == EAGAIN || errno == EINTR))
                continue;              /* the alert came, the close not yet */
            close(p[i].fd);
            p[i].fd = -1;
            done++;
        }
        if (h_now_ms() > deadline)
            fail_msg("%d of %d connections were closed in 120 s", done, n);
    }
    free(p);
}

/* 100,000 failed handshakes (3,000 under a sanitizer) leave the proxy's
 * memory where it started: most of them ClientHellos sent again and again
 * by plain sockets (no cipher in common, a version below min_version, a
 * record that is no handshake, a ClientHello cut by a FIN), the rest by
 * real TLS clients (no cipher in common, a ClientHello cut by a reset, a
 * client certificate nobody signed: a full handshake each). Each kind is
 * counted in its class. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define NFAIL_REPLAY 0                 /* a sanitizer's quarantine holds what was freed:
                                        * the bound means nothing, the time would */
#else
#define NFAIL_REPLAY 24250             /* per replayed kind: 97,000 of them */
#endif
static void
test_failed_handshakes_leave_memory_as_it_was(void **state)
{
    static const unsigned char garbage[] = "\x16\x03\x01\x00\x08" "garbage!";
    unsigned char hello12[2048], hello10[2048];
    size_t n12 = client_hello(12, "AES128-SHA", hello12, sizeof(hello12));
    size_t n10 = client_hello(10, NULL, hello10, sizeof(hello10));
    char more[1024];
    struct fx *f;
    long before, after, failed, other;
    long long t0;

    snprintf(more, sizeof(more), ", \"client_ca\": \"%s\"", cert("ca.pem"));
    f = start_tls(state, false, tls_certs("srv", more), 1);
    /* warm-up: the loop's buffers, the arenas */
    fail_handshakes(f, 300);
    blast(f->proxy_port, hello12, n12, false, 200, 32);
    blast(f->proxy_port, hello10, n10, false, 200, 32);
    blast(f->proxy_port, garbage, sizeof(garbage) - 1, false, 200, 32);
    blast(f->proxy_port, hello12, n12 / 2, true, 200, 32);
    assert_int_equal(wait_hs(f, "other", 500), 500);
    before = h_rss_kib(f->proxy);
    t0 = h_now_ms();
    fail_handshakes(f, 3000);
    blast(f->proxy_port, hello12, n12, false, NFAIL_REPLAY, 32);
    blast(f->proxy_port, hello10, n10, false, NFAIL_REPLAY, 32);
    blast(f->proxy_port, garbage, sizeof(garbage) - 1, false, NFAIL_REPLAY, 32);
    blast(f->proxy_port, hello12, n12 / 2, true, NFAIL_REPLAY, 32);
    failed = 3000 + 4L * NFAIL_REPLAY;
    other = 1500 + 2L * NFAIL_REPLAY;
    assert_int_equal(wait_hs(f, "no_shared_cipher", 1100 + NFAIL_REPLAY + 200),
                     1100 + NFAIL_REPLAY + 200);
    assert_int_equal(wait_hs(f, "version", NFAIL_REPLAY + 200), NFAIL_REPLAY + 200);
    assert_int_equal(wait_hs(f, "unknown_ca", 1100), 1100);
    assert_int_equal(wait_hs(f, "other", other), other);
    after = h_rss_kib(f->proxy);
    print_message("RSS %ld KiB before, %ld KiB after %ld failed handshakes (%lld ms)\n",
                  before, after, failed, h_now_ms() - t0);
    assert_true(before > 0 && after > 0);
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    /* LeakSanitizer checks cutoverd at its exit instead */
    fx_stop_clean(f);
#else
    if (after - before > 2048)
        fail_msg("RSS grew by %ld KiB over %ld failed handshakes", after - before, failed);
#endif
}

static void
test_tcp_mode_terminates(void **state)
{
    struct fx *f = start_tls(state, true, tls_certs("srv", NULL), 1);
    struct h_tls t;
    char buf[16], line[4096];
    int n;

    if (h_tls_open(&t, f->proxy_port, &(struct h_tls_opts){ .sni = "b.test",
                   .ca = cert("ca.pem") }) != 0)
        fail_msg("%s", t.error);
    assert_string_equal(t.alpn, "");   /* no ALPN answer in tcp mode by default */
    assert_int_equal(h_tls_send(&t, "ping\n", 5), 0);
    /* the TCP backend says its name, then echoes */
    for (n = 0; n < 12;) {
        int k = SSL_read(t.ssl, buf + n, (int)sizeof(buf) - n);

        if (k <= 0)
            fail_msg("the tunnel ended after %d bytes", n);
        n += k;
    }
    assert_int_equal(n, 12);
    assert_memory_equal(buf, "legacy\nping\n", 12);
    /* our close_notify ends the client's direction; the backend closes; the
     * proxy ends ours with close_notify */
    assert_int_equal(SSL_shutdown(t.ssl), 0);
    assert_true(h_tls_peer_closed(&t, 3000));
    h_tls_close(&t, H_TLS_FIN);
    access_line(f, " sni=b.test ", line, sizeof(line));
    if (strstr(line, " bytes_in=5 bytes_out=12 ") == NULL)
        fail_msg("access log: %s", line);

    /* a FIN without close_notify ends the client's direction as on a plain
     * socket: what the server still sends arrives, then its end */
    if (h_tls_open(&t, f->proxy_port, &(struct h_tls_opts){ .sni = "a.test" }) != 0)
        fail_msg("%s", t.error);
    assert_int_equal(h_tls_send(&t, "half\n", 5), 0);
    assert_int_equal(shutdown(t.fd, SHUT_WR), 0);
    for (n = 0; n < 12;) {
        int k = SSL_read(t.ssl, buf + n, (int)sizeof(buf) - n);

        if (k <= 0)
            fail_msg("the tunnel ended after %d bytes", n);
        n += k;
    }
    assert_memory_equal(buf, "legacy\nhalf\n", 12);
    assert_int_equal(h_tls_read_end(&t, 3000, NULL), 1);
    h_tls_close(&t, H_TLS_FIN);
}

/* Request cut short: every order of close_notify / FIN / RST, a small
 * (buffered) body, a large (streamed) one, a chunked one: the backend never
 * sees a whole request. */
static void
test_cut_requests_are_cut(void **state)
{
    static const enum h_tls_end ends[] = { H_TLS_NOTIFY_FIN, H_TLS_FIN, H_TLS_RST,
                                           H_TLS_NOTIFY_RST };
    static const char *const end_names[] = { "close_notify+FIN", "FIN", "RST",
                                             "close_notify+RST" };
    struct fx *f = start_tls(state, false, tls_certs("srv", NULL), 1);
    char head[256], *body = malloc(200000), line[4096];
    struct h_tls t;
    struct h_resp r;
    unsigned e, k;
    long heads = 0;

    assert_non_null(body);
    memset(body, 'b', 200000);
    for (e = 0; e < 4; e++) {
        for (k = 0; k < 3; k++) {
            if (h_tls_open(&t, f->proxy_port, &(struct h_tls_opts){ .sni = "a.test" }) != 0)
                fail_msg("%s", t.error);
            if (k == 0) {               /* buffered: Content-Length 1000, 500 sent */
                snprintf(head, sizeof(head), "POST /cut%u%u HTTP/1.1\r\nHost: a\r\n"
                         "Content-Length: 1000\r\n\r\n", e, k);
                assert_int_equal(h_tls_send(&t, head, strlen(head)), 0);
                assert_int_equal(h_tls_send(&t, body, 500), 0);
            } else if (k == 1) {        /* streamed: 200000, 150000 sent */
                snprintf(head, sizeof(head), "POST /cut%u%u HTTP/1.1\r\nHost: a\r\n"
                         "Content-Length: 200000\r\n\r\n", e, k);
                assert_int_equal(h_tls_send(&t, head, strlen(head)), 0);
                assert_int_equal(h_tls_send(&t, body, 150000), 0);
                /* the head went up: the request is under way */
                heads++;
                assert_int_equal(h_backend_wait_stat(f->port[0][0], "heads", heads, 3000),
                                 heads);
            } else {                    /* chunked without its last chunk */
                snprintf(head, sizeof(head), "POST /cut%u%u HTTP/1.1\r\nHost: a\r\n"
                         "Transfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n", e, k);
                assert_int_equal(h_tls_send(&t, head, strlen(head)), 0);
            }
            if (k != 1)
                h_sleep_ms(50);         /* what was sent reached the proxy */
            h_tls_close(&t, ends[e]);
            snprintf(head, sizeof(head), "path=/cut%u%u ", e, k);
            access_line(f, head, line, sizeof(line));
            if (strstr(line, " error=client_closed ") == NULL)
                fail_msg("%s, body %u: access log: %s", end_names[e], k, line);
            if (h_backend_stat(f->port[0][0], "requests") != 0)
                fail_msg("%s, body %u: the backend got a whole request", end_names[e], k);
        }
    }
    free(body);
    /* and a whole one, then close_notify, goes through */
    assert_int_equal(h_tls_exchange(f->proxy_port, &(struct h_tls_opts){ .sni = "a.test" },
                     "POST /whole HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc", &r), 0);
    assert_int_equal(r.status, 200);
    h_resp_free(&r);
    assert_int_equal(h_backend_wait_stat(f->port[0][0], "requests", 1, 3000), 1);
}

/* close_notify only after a whole response: a response cut by the backend
 * ends without it, so that a close-delimited body (an HTTP/1.0 client) is
 * never taken as whole. */
static void
test_close_notify_only_after_a_whole_response(void **state)
{
    static const char req10[] = "GET /cn HTTP/1.0\r\nHost: a\r\n\r\n";
    struct fx *f = start_tls(state, false, tls_certs("srv", NULL), 1);
    struct h_tls t;
    size_t n;

    assert_int_equal(h_backend_set(f->port[0][0], "chunked=1"), 0);
    if (h_tls_open(&t, f->proxy_port, &(struct h_tls_opts){ .sni = "a.test" }) != 0)
        fail_msg("%s", t.error);
    assert_int_equal(h_tls_send(&t, req10, sizeof(req10) - 1), 0);
    assert_int_equal(h_tls_read_end(&t, 3000, &n), 1);
    assert_true(n > 0);
    h_tls_close(&t, H_TLS_NOTIFY_FIN);

    assert_int_equal(h_backend_set(f->port[0][0], "mode=midbody&chunked=1"), 0);
    if (h_tls_open(&t, f->proxy_port, &(struct h_tls_opts){ .sni = "a.test" }) != 0)
        fail_msg("%s", t.error);
    assert_int_equal(h_tls_send(&t, req10, sizeof(req10) - 1), 0);
    assert_int_equal(h_tls_read_end(&t, 3000, &n), 0);
    assert_true(n > 0);
    h_tls_close(&t, H_TLS_FIN);
}

/* Pipelined requests in one TLS record, more than limits.head_bytes: what
 * OpenSSL decrypted beyond the read watermark is served without waiting for
 * more bytes on the socket. */
static void
test_pipelined_requests_in_one_record(void **state)
{
    char tls[4096];
    struct fx *f;
    char reqs[8192];
    struct h_tls t;
    struct h_resp r;
    size_t len = 0;
    int i, n = 60;

    /* the service's keys after "tls" */
    snprintf(tls, sizeof(tls), "%s,\n    \"limits\": { \"head_bytes\": 1024 }",
             tls_certs("srv", NULL));
    f = start_tls(state, false, tls, 1);
    for (i = 0; i < n; i++)
        len += (size_t)snprintf(reqs + len, sizeof(reqs) - len,
                                "GET /pipe/%02d HTTP/1.1\r\nHost: a.test\r\n\r\n", i);
    if (h_tls_open(&t, f->proxy_port, &(struct h_tls_opts){ .sni = "a.test" }) != 0)
        fail_msg("%s", t.error);
    assert_int_equal(h_tls_send(&t, reqs, len), 0);    /* one SSL_write: one record */
    for (i = 0; i < n; i++) {
        if (h_tls_read_response(&t, &r) != 0)
            fail_msg("response %d of %d did not come", i, n);
        assert_int_equal(r.status, 200);
        h_resp_free(&r);
    }
    h_tls_close(&t, H_TLS_NOTIFY_FIN);
}

/* Bulk both ways through TLS (the relay's backpressure on an OpenSSL
 * bufferevent), a WebSocket upgrade over TLS, and a client below
 * min_version counted as "version". */
static void
test_bulk_upgrade_and_versions(void **state)
{
    static const char ws[] = "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
                             "Connection: Upgrade\r\n\r\n";
    struct fx *f = start_tls(state, false,
                             tls_certs("srv", ", \"min_version\": \"1.3\""), 1);
    char *big = malloc(1 << 20), head[256], echo[64];
    struct h_tls t;
    struct h_resp r;
    int n;

    assert_non_null(big);
    memset(big, 'x', 1 << 20);
    assert_int_equal(h_backend_set(f->port[0][0], "body_bytes=1048576"), 0);
    if (h_tls_open(&t, f->proxy_port, &(struct h_tls_opts){ .sni = "a.test" }) != 0)
        fail_msg("%s", t.error);
    assert_string_equal(t.version, "TLSv1.3");
    get_ok(&t);                        /* 1 MiB down */
    snprintf(head, sizeof(head), "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n",
             1 << 20);
    assert_int_equal(h_tls_send(&t, head, strlen(head)), 0);
    assert_int_equal(h_tls_send(&t, big, 1 << 20), 0);          /* 1 MiB up */
    assert_int_equal(h_tls_read_response(&t, &r), 0);
    assert_int_equal(r.status, 200);
    assert_true(r.body_len > (size_t)(1 << 20));                 /* head + body echoed */
    assert_memory_equal(r.body + r.body_len - 16, big, 16);
    h_resp_free(&r);
    h_tls_close(&t, H_TLS_NOTIFY_FIN);
    free(big);

    if (h_tls_open(&t, f->proxy_port, &(struct h_tls_opts){ .sni = "a.test" }) != 0)
        fail_msg("%s", t.error);
    assert_int_equal(h_tls_send(&t, ws, sizeof(ws) - 1), 0);
    assert_int_equal(h_tls_read_response(&t, &r), 0);
    assert_int_equal(r.status, 101);
    h_resp_free(&r);
    assert_int_equal(h_tls_send(&t, "hello ws", 8), 0);
    for (n = 0; n < 8;) {
        int k = SSL_read(t.ssl, echo + n, (int)sizeof(echo) - n);

        if (k <= 0)
            fail_msg("the tunnel ended after %d bytes", n);
        n += k;
    }
    assert_memory_equal(echo, "hello ws", 8);
    h_tls_close(&t, H_TLS_NOTIFY_FIN);

    assert_int_equal(h_tls_exchange(f->proxy_port, &(struct h_tls_opts){ .sni = "a.test",
                     .max_version = 12 }, get_req, &r), -1);
    h_resp_free(&r);
    assert_int_equal(wait_hs(f, "version", 1), 1);
}

/* A few cases of the request corpus: the same answer over TLS as plain. */
static void
test_corpus_over_tls(void **state)
{
    static const char *const ids[] = {
        "request/sample.md#Simple request",
        "request/transfer-encoding.md#Parse chunks with lowercase size",
        "request/content-length.md#`Content-Length` with zeroes",
        "request/uri.md#Query URL with question mark",
        "request/content-length.md#Error on duplicate `Content-Length`",
        "request/invalid.md#Headers separated by CR",
        "request/invalid.md#Invalid header token #1",
        "request/uri.md#Space in URI",
        "request/transfer-encoding.md#Ignoring `pigeons`",
    };
    struct fx *plain, *tls;
    json_t *root, *cases, *c;
    json_error_t je;
    size_t i, k, n, accepted = 0, rejected = 0;

    root = json_load_file(h_src("tests/corpora/llhttp-requests.json"), 0, &je);
    assert_non_null(root);
    cases = json_object_get(root, "cases");
    tls = start_tls(state, false, tls_certs("srv", NULL), 1);
    plain = calloc(1, sizeof(*plain));
    assert_non_null(plain);
    assert_int_equal(fx_init(plain, false, 1, NULL), 0);
    assert_int_equal(fx_start_proxy(plain, 1), 0);
    for (k = 0; k < sizeof(ids) / sizeof(ids[0]); k++) {
        const char *b64 = NULL, *expect = NULL;
        unsigned char *bytes;
        struct h_resp a, b;
        int ra, rb;

        json_array_foreach(cases, i, c) {
            if (strcmp(json_string_value(json_object_get(c, "id")), ids[k]) != 0)
                continue;
            b64 = json_string_value(json_object_get(c, "host_added_b64"));
            if (b64 == NULL)
                b64 = json_string_value(json_object_get(c, "bytes_b64"));
            expect = json_string_value(json_object_get(c, "expect"));
        }
        if (b64 == NULL)
            fail_msg("no case %s in the corpus", ids[k]);
        assert_non_null(bytes = h_b64_decode(b64, &n));
        ra = h_exchange(plain->proxy_port, (const char *)bytes, &a);
        rb = h_tls_exchange(tls->proxy_port, &(struct h_tls_opts){ .sni = "a.test" },
                            (const char *)bytes, &b);
        if (ra != rb || a.status != b.status)
            fail_msg("%s: plain %d (%d), TLS %d (%d)", ids[k], a.status, ra, b.status, rb);
        if (strcmp(expect, "accept") == 0 ? a.status != 200 : a.status < 400)
            fail_msg("%s (%s): %d", ids[k], expect, a.status);
        accepted += strcmp(expect, "accept") == 0;
        rejected += strcmp(expect, "accept") != 0;
        h_resp_free(&a);
        h_resp_free(&b);
        free(bytes);
    }
    assert_true(accepted >= 4 && rejected >= 4);
    json_decref(root);
    h_stop(plain->proxy, SIGTERM, 10000);
    h_rmrf(plain->dir);
    free(plain->dir);
    free(plain);
}

/* The fixture's service on its own certificate web.pem/web.key in its
 * directory (relative names in the config), made by the test CA. */
static struct fx *
start_own_cert(void **state, unsigned workers, const char *org)
{
    struct fx *f;
    char path[1024], subj[128], *text;

    f = fx_new(state, sizeof(*f), false, 1,
               ",\n    \"tls\": {\"certs\": [{\"cert\": \"web.pem\", \"key\": \"web.key\"}]}");
    f->workers = workers;
    f->admin_port = h_free_port();
    assert_int_equal(fx_write_conf(f), 0);
    for (int i = 0; i < 2; i++) {
        static const char *const n[] = { "ca.pem", "ca.key" };

        text = h_read_file(cert(n[i]));
        assert_non_null(text);
        snprintf(path, sizeof(path), "%s/%s", f->dir, n[i]);
        assert_int_equal(h_write_file(path, text), 0);
        free(text);
    }
    snprintf(subj, sizeof(subj), "/CN=a.test/O=%s", org);
    assert_int_equal(h_tls_make_cert(f->dir, "web", subj, "a.test", 30), 0);
    assert_int_equal(fx_start_proxy(f, 1), 0);
    return f;
}

/* The organisation a new connection is served. */
static const char *
served_org(struct fx *f, char *buf, size_t len)
{
    struct h_tls t;
    const char *o;

    if (h_tls_open(&t, f->proxy_port, &(struct h_tls_opts){ .sni = "a.test",
                   .ca = cert("ca.pem") }) != 0)
        fail_msg("%s", t.error);
    o = strstr(t.subject, "/O=");
    snprintf(buf, len, "%s", o != NULL ? o + 3 : "?");
    get_ok(&t);
    h_tls_close(&t, H_TLS_NOTIFY_FIN);
    return buf;
}

static void
test_reload_swaps_certificates_and_drops_nothing(void **state)
{
    struct fx *f = start_own_cert(state, 2, "first");
    char out[4096], org[64], subj[256];
    struct h_tls old;
    json_t *s;

    if (h_tls_open(&old, f->proxy_port, &(struct h_tls_opts){ .sni = "a.test",
                   .ca = cert("ca.pem") }) != 0)
        fail_msg("%s", old.error);
    get_ok(&old);
    assert_non_null(strstr(old.subject, "/O=first"));

    /* cutoverctl certs reload */
    assert_int_equal(h_tls_make_cert(f->dir, "web", "/CN=a.test/O=second", "a.test", 30), 0);
    if (fx_ctl(f, out, "certs", "reload") != 0)
        fail_msg("certs reload: %s %s", out, h_ctl_err());
    assert_non_null(strstr(out, "1 certificate(s) of 1 service(s) reloaded"));
    get_ok(&old);                      /* the open keep-alive connection goes on */
    assert_string_equal(served_org(f, org, sizeof(org)), "second");

    /* SIGHUP reads them again too */
    assert_int_equal(h_tls_make_cert(f->dir, "web", "/CN=a.test/O=third", "a.test", 30), 0);
    fx_reload_ok(f, 5000, 2);
    get_ok(&old);
    assert_string_equal(served_org(f, org, sizeof(org)), "third");
    h_tls_close(&old, H_TLS_NOTIFY_FIN);

    s = fx_status_at(f, "tls.certs.0");
    assert_non_null(s);
    snprintf(subj, sizeof(subj), "%s", json_string_value(json_object_get(s, "subject")));
    assert_non_null(strstr(subj, "O=third"));
    assert_string_equal(json_string_value(json_array_get(json_object_get(s, "names"), 0)),
                        "a.test");
    assert_true(json_integer_value(json_object_get(s, "expires_in_days")) >= 29);
    assert_string_equal(json_string_value(json_object_get(s, "key")), "ECDSA P-256");
    json_decref(s);
    fx_stop_clean(f);
}

/* A handshake under way when a reload removes its service still ends in
 * a connection, which answers one request and closes, as the removed
 * service's busy connections do. */
static void
test_handshake_across_the_removal_of_its_service(void **state)
{
    struct fx *f = start_tls(state, false, tls_certs("srv", NULL), 1);
    char text[2048];
    struct h_tls t;
    struct h_resp r;

    if (h_tls_open(&t, f->proxy_port, &(struct h_tls_opts){ .sni = "a.test",
                   .connect_only = true }) != 0)
        fail_msg("%s", t.error);
    snprintf(text, sizeof(text),
             "{\"admin\": {\"socket\": \"%s\"}, \"state\": {\"file\": \"%s\"},\n"
             " \"audit\": {\"file\": \"%s\"}, \"workers\": 1,\n"
             " \"services\": [{\"name\": \"other\", \"listen\": [\"127.0.0.1:%d\"],\n"
             "  \"legacy\": {\"servers\": [\"127.0.0.1:%d\"]},\n"
             "  \"new\": {\"servers\": [\"127.0.0.1:%d\"]}}]}\n",
             f->sock, f->state, f->audit, h_free_port(), f->port[0][0], f->port[1][0]);
    assert_int_equal(h_write_file(f->conf, text), 0);
    fx_reload_ok(f, 5000, 2);
    assert_int_equal(h_wait_log(f->log, "service web removed", 3000), 0);
    if (h_tls_handshake(&t) != 0)
        fail_msg("%s", t.error);
    assert_int_equal(h_tls_send(&t, get_req, sizeof(get_req) - 1), 0);
    assert_int_equal(h_tls_read_response(&t, &r), 0);
    assert_int_equal(r.status, 200);
    h_resp_free(&r);
    if (h_tls_read_end(&t, 3000, NULL) != 1)
        fail_msg("the connection of a removed service stayed open");
    h_tls_close(&t, H_TLS_NOTIFY_FIN);
    assert_int_equal(h_wait_log(f->log, "last connection closed; removed", 3000), 0);
}

static bool
is_certs_reload(const json_t *e)
{
    return strcmp(json_string_value(json_object_get(e, "action")), "certs_reload") == 0;
}

static void
test_bad_reload_keeps_the_old_certificate(void **state)
{
    struct fx *f = start_own_cert(state, 1, "first");
    char out[4096], org[64], path[1024], other[1024], *text;
    json_t *audit;

    /* a key that is not the certificate's */
    assert_int_equal(h_tls_make_cert(f->dir, "other", "/CN=a.test/O=other", "a.test", 30), 0);
    snprintf(path, sizeof(path), "%s/web.key", f->dir);
    snprintf(other, sizeof(other), "%s/other.key", f->dir);
    assert_int_equal(rename(other, path), 0);
    assert_int_equal(fx_ctl(f, out, "certs", "reload"), 1);
    if (strstr(h_ctl_err(), "services[0].tls.certs[0].key") == NULL ||
        strstr(h_ctl_err(), "web.key: the key does not match the certificate") == NULL)
        fail_msg("certs reload: %s", h_ctl_err());
    assert_string_equal(served_org(f, org, sizeof(org)), "first");
    /* SIGHUP refuses it the same way */
    assert_int_equal(kill(f->proxy, SIGHUP), 0);
    assert_int_equal(h_wait_log(f->log, "does not match the certificate", 5000), 0);
    assert_int_equal(h_wait_log(f->log, "failed, running configuration (generation 1)", 5000),
                     0);
    assert_string_equal(served_org(f, org, sizeof(org)), "first");

    /* a missing file */
    snprintf(path, sizeof(path), "%s/web.pem", f->dir);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(fx_ctl(f, out, "certs", "reload"), 1);
    if (strstr(h_ctl_err(), "web.pem: cannot read: No such file or directory") == NULL)
        fail_msg("certs reload: %s", h_ctl_err());
    assert_string_equal(served_org(f, org, sizeof(org)), "first");

    /* an expired certificate */
    text = h_read_file(cert("expired.pem"));
    assert_int_equal(h_write_file(path, text), 0);
    free(text);
    assert_int_equal(fx_ctl(f, out, "certs", "reload"), 1);
    if (strstr(h_ctl_err(), "web.pem: the certificate expired on 2020-02-01") == NULL)
        fail_msg("certs reload: %s", h_ctl_err());
    assert_string_equal(served_org(f, org, sizeof(org)), "first");

    /* each one audited; no key material in the log */
    audit = fx_audit(f, is_certs_reload);
    assert_int_equal(json_array_size(audit), 3);
    assert_non_null(strstr(json_string_value(json_object_get(json_array_get(audit, 0),
                                                             "reason")), "failed: "));
    json_decref(audit);
    text = h_read_file(f->log);
    assert_null(strstr(text, "PRIVATE KEY"));
    free(text);
}

static void
test_conf_check(void **state)
{
    static const struct {
        const char *tls;                /* %s: the certificates' directory */
        int rc;
        const char *expect;
    } cases[] = {
        { "{\"certs\": [{\"cert\": \"%s/srv.pem\", \"key\": \"%s/rsa.key\"}]}", 1,
          "services[0].tls.certs[0].key: %s/rsa.key: the key does not match" },
        { "{\"certs\": [{\"cert\": \"%s/expired.pem\", \"key\": \"%s/expired.key\"}]}", 1,
          "services[0].tls.certs[0].cert: %s/expired.pem: the certificate expired on" },
        { "{\"certs\": [{\"cert\": \"%s/soon.pem\", \"key\": \"%s/soon.key\"}]}", 0,
          "services[0].tls.certs[0].cert: %s/soon.pem: the certificate expires in 6 day(s)" },
        { "{\"certs\": [{\"cert\": \"%s/none.pem\", \"key\": \"%s/none.key\"}]}", 0,
          "%s/none.pem does not exist (yet)" },
        { "{\"certs\": [{\"cert\": \"%s/srv.pem\", \"key\": \"%s/srv.key\"}], "
          "\"alpn\": [\"h2\"]}", 1, "services[0].tls.alpn[0]: \"h2\" is not spoken here" },
        { "{\"certs\": [{\"cert\": \"%s/srv.pem\", \"key\": \"%s/srv.key\"}], "
          "\"client_verify\": \"required\"}", 1, "needs tls.client_ca" },
        { "{\"certs\": [{\"cert\": \"%s/srv.pem\", \"key\": \"%s/srv.key\"}], "
          "\"ciphers\": \"NOPE\"}", 1, "services[0].tls.ciphers: no usable cipher" },
        { "{\"certs\": [{\"cert\": \"%s/srv.pem\", \"key\": \"%s/srv.key\"}], "
          "\"min_version\": \"1.1\"}", 1, "services[0].tls.min_version: must be" },
        { "{\"certs\": [{\"cert\": \"%s/srv.pem\", \"key\": \"%s/srv.key\"}],\n"
          "   \"sesion_tickets\": false}", 1, ":7:4: services[0].tls.sesion_tickets: unknown" },
        { "{\"certs\": []}", 1, "services[0].tls.certs: must not be empty" },
    };
    char *dir = h_tmpdir(), conf[1024], tls[1024], text[4096], out[8192], want[1024];
    size_t i;

    (void)state;
    assert_non_null(dir);
    snprintf(conf, sizeof(conf), "%s/c.json", dir);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(tls, sizeof(tls), cases[i].tls, certs, certs);
        snprintf(text, sizeof(text),
                 "{\"services\": [{\"name\": \"web\", \"listen\": [\"127.0.0.1:1\"],\n"
                 " \"legacy\": {\"servers\": [\"127.0.0.1:2\"]},\n"
                 " \"new\": {\"servers\": [\"127.0.0.1:3\"]},\n"
                 " \"tls\": %s}]}\n", tls);
        /* the unknown-key case: its key on line 7 of the file */
        if (strstr(tls, "sesion") != NULL)
            snprintf(text, sizeof(text),
                     "{\"services\": [{\"name\": \"web\",\n \"listen\": [\"127.0.0.1:1\"],\n"
                     " \"legacy\": {\"servers\": [\"127.0.0.1:2\"]},\n"
                     " \"new\": {\"servers\": [\"127.0.0.1:3\"]},\n"
                     " \"tls\":\n  %s}]}\n", tls);
        assert_int_equal(h_write_file(conf, text), 0);
        snprintf(want, sizeof(want), cases[i].expect, certs);
        if (h_cutoverd_check(conf, out, sizeof(out)) != cases[i].rc || strstr(out, want) == NULL)
            fail_msg("case %zu: want exit %d and \"%s\" in: %s", i, cases[i].rc, want, out);
        if (cases[i].rc == 1 && strstr(out, conf) == NULL)
            fail_msg("case %zu: the file is not named: %s", i, out);
    }
    h_rmrf(dir);
    free(dir);
}

/* A thousand live keep-alive TLS connections over two workers (most of them
 * parked, some busy) survive a certificate reload and a SIGHUP: each still
 * answers on the same connection afterwards, none was dropped. */
#define NSTRESS 1000
static void
test_reload_under_many_connections(void **state)
{
    struct fx *f = start_own_cert(state, 2, "first");
    struct h_tls *t = calloc(NSTRESS, sizeof(*t));
    char out[4096], org[64];
    long long t0 = h_now_ms();
    int i;

    assert_non_null(t);
    for (i = 0; i < NSTRESS; i++) {
        if (h_tls_open(&t[i], f->proxy_port, &(struct h_tls_opts){ .sni = "a.test" }) != 0)
            fail_msg("connection %d: %s", i, t[i].error);
        get_ok(&t[i]);
    }
    assert_int_equal(h_tls_make_cert(f->dir, "web", "/CN=a.test/O=second", "a.test", 30), 0);
    /* every third one has a request in flight across both reloads: its
     * answer is read after them */
    for (i = 0; i < NSTRESS; i += 3)
        assert_int_equal(h_tls_send(&t[i], get_req, sizeof(get_req) - 1), 0);
    if (fx_ctl(f, out, "certs", "reload") != 0)
        fail_msg("certs reload: %s", h_ctl_err());
    for (i = 1; i < NSTRESS; i += 3)
        get_ok(&t[i]);
    fx_reload_ok(f, 5000, 2);
    for (i = 0; i < NSTRESS; i += 3) {
        struct h_resp r;

        if (h_tls_read_response(&t[i], &r) != 0)
            fail_msg("connection %d: the answer in flight over the reloads did not come", i);
        assert_int_equal(r.status, 200);
        h_resp_free(&r);
    }
    assert_int_equal(fx_status_long(f, "connections"), NSTRESS);   /* none dropped */
    for (i = 0; i < NSTRESS; i++) {
        get_ok(&t[i]);
        h_tls_close(&t[i], H_TLS_NOTIFY_FIN);
    }
    free(t);
    assert_string_equal(served_org(f, org, sizeof(org)), "second");
    print_message("%d TLS connections through a certs reload and a SIGHUP in %lld ms\n",
                  NSTRESS, h_now_ms() - t0);
    assert_true(h_now_ms() - t0 < 60000);
    fx_stop_clean(f);
}

int
main(void)
{
    struct rlimit rl;

    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_sni_picks_the_certificate, fx_teardown),
        cmocka_unit_test_teardown(test_ecdsa_and_rsa_for_the_same_names, fx_teardown),
        cmocka_unit_test_teardown(test_alpn, fx_teardown),
        cmocka_unit_test_teardown(test_resumption_across_workers, fx_teardown),
        cmocka_unit_test_teardown(test_session_cache_without_tickets, fx_teardown),
        cmocka_unit_test_teardown(test_client_certificates, fx_teardown),
        cmocka_unit_test_teardown(test_bad_input, fx_teardown),
        cmocka_unit_test_teardown(test_failed_handshakes_leave_memory_as_it_was, fx_teardown),
        cmocka_unit_test_teardown(test_tcp_mode_terminates, fx_teardown),
        cmocka_unit_test_teardown(test_cut_requests_are_cut, fx_teardown),
        cmocka_unit_test_teardown(test_close_notify_only_after_a_whole_response,
                                  fx_teardown),
        cmocka_unit_test_teardown(test_pipelined_requests_in_one_record, fx_teardown),
        cmocka_unit_test_teardown(test_bulk_upgrade_and_versions, fx_teardown),
        cmocka_unit_test_teardown(test_corpus_over_tls, fx_teardown),
        cmocka_unit_test_teardown(test_reload_swaps_certificates_and_drops_nothing,
                                  fx_teardown),
        cmocka_unit_test_teardown(test_bad_reload_keeps_the_old_certificate, fx_teardown),
        cmocka_unit_test_teardown(test_handshake_across_the_removal_of_its_service,
                                  fx_teardown),
        cmocka_unit_test(test_conf_check),
        cmocka_unit_test_teardown(test_reload_under_many_connections, fx_teardown),
    };

    /* NSTRESS connections and their descriptors, here and in cutoverd */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 4096 && rl.rlim_max >= 4096) {
        rl.rlim_cur = 4096;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    return cmocka_run_group_tests_name("integration: TLS termination", tests, group_setup,
                                       group_teardown);
}
