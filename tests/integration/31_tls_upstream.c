/*
 * 31_tls_upstream: TLS towards the upstream servers ("legacy.tls",
 * "new.tls"), with the real test backend speaking TLS and certificates made
 * by the openssl command at test time (h_tls_make_upstream_certs): a plain
 * legacy beside a new side over TLS with its own CA; pooled TLS connections
 * reused (N requests on one upstream connection) and sessions resumed when
 * the server closes; a refused certificate (wrong CA, wrong name, wrong IP)
 * answered 502, counted as tls_verify and logged with the server and the
 * reason; mTLS to a backend that requires a client certificate; health
 * checks over TLS marking the server up, then down when its certificate
 * fails verification after a reload; responses cut short in every order of
 * close_notify / FIN / RST never relayed as complete; cutoverd -t checking
 * the files.
 *
 * The TLS backend is "new" on the fixture's port; its control and stats go
 * through its plain --control port. One worker, so one pool.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "tests/integration/fixture.h"

#define GET_ROOT "GET / HTTP/1.1\r\nHost: t\r\n\r\n"

struct t31 {
    struct fx f;                 /* first: fx_teardown() frees the whole */
    int ctl;                     /* the TLS backend's plain control port */
};

/* (Re)starts the "new" backend as a TLS server with certificate <cert>
 * (NAME of NAME.pem/NAME.key in the fixture's directory) and, when not
 * NULL, a required client CA. */
static void
tls_backend(struct t31 *t, const char *cert, const char *client_ca)
{
    struct fx *f = &t->f;
    char c[600], k[600], ca[600], ctl[64];
    const char *args[12];
    int n = 0;

    if (f->backend[1][0] > 0)
        h_stop(f->backend[1][0], SIGTERM, 3000);
    snprintf(c, sizeof(c), "%s/%s.pem", f->dir, cert);
    snprintf(k, sizeof(k), "%s/%s.key", f->dir, cert);
    snprintf(ctl, sizeof(ctl), "127.0.0.1:%d", t->ctl);
    args[n++] = "--tls-cert";
    args[n++] = c;
    args[n++] = "--tls-key";
    args[n++] = k;
    args[n++] = "--control";
    args[n++] = ctl;
    if (client_ca != NULL) {
        snprintf(ca, sizeof(ca), "%s/%s.pem", f->dir, client_ca);
        args[n++] = "--tls-client-ca";
        args[n++] = ca;
    }
    args[n] = NULL;
    f->backend[1][0] = h_backend_start_args("new", f->port[1][0], f->dir, false, args);
    assert_true(f->backend[1][0] > 0);
}

/* The fixture with certificates, "new" over TLS with server certificate
 * <cert> and side keys <new_tls> (",\"tls\": {...}"), service keys <extra>;
 * cutoverd started. */
static struct t31 *
start(void **state, const char *cert, const char *client_ca, const char *new_tls,
      const char *extra)
{
    struct t31 *t = fx_new(state, sizeof(*t), false, 1, extra);

    t->ctl = h_free_port();
    assert_int_equal(h_tls_make_upstream_certs(t->f.dir), 0);
    tls_backend(t, cert, client_ca);
    snprintf(t->f.side_extra[1], sizeof(t->f.side_extra[1]), "%s", new_tls);
    assert_int_equal(fx_write_conf(&t->f), 0);
    assert_int_equal(fx_start_proxy(&t->f, 7), 0);
    return t;
}

/* Rewrites new's "tls" and reloads; waits for the generation. */
static void
reload_tls(struct t31 *t, const char *new_tls, int generation)
{
    char needle[64];

    snprintf(t->f.side_extra[1], sizeof(t->f.side_extra[1]), "%s", new_tls);
    assert_int_equal(fx_write_conf(&t->f), 0);
    assert_int_equal(kill(t->f.proxy, SIGHUP), 0);
    snprintf(needle, sizeof(needle), "config_generation=%d", generation);
    assert_int_equal(h_wait_log(t->f.log, needle, 5000), 0);
}

/* One GET / on a new client connection: the status (0 without an answer). */
static int
get_status(struct t31 *t, char *backend, size_t len)
{
    struct h_resp r;
    int st;

    st = h_exchange(t->f.proxy_port, GET_ROOT, &r) == 0 ? r.status : 0;
    if (backend != NULL && h_resp_header(&r, "X-Backend", backend, len) == NULL)
        snprintf(backend, len, "-");
    h_resp_free(&r);
    return st;
}

/* Legacy plain, new over TLS (its own CA, the IP SAN verified): the weight
 * moves traffic between them; 20 requests on one keep-alive client travel
 * on one TLS connection (one handshake), and the pool keeps it, also over
 * a reload that leaves the side's TLS as it was, not over one that changes
 * it. */
static void
test_plain_legacy_tls_new_pooled(void **state)
{
    struct t31 *t = start(state, "up-ip", NULL, ", \"tls\": {\"ca\": \"up-ca.pem\"}",
                          ", \"weight\": 100");
    struct fx *f = &t->f;
    char be[32];
    struct h_resp r;
    int fd, i;

    fd = h_connect(f->proxy_port);
    assert_true(fd >= 0);
    for (i = 0; i < 20; i++) {
        assert_int_equal(h_send_all(fd, GET_ROOT, strlen(GET_ROOT)), 0);
        assert_int_equal(h_read_response(fd, &r), 0);
        assert_int_equal(r.status, 200);
        assert_non_null(h_resp_header(&r, "X-Backend", be, sizeof(be)));
        assert_string_equal(be, "new");
        h_resp_free(&r);
    }
    close(fd);
    assert_int_equal(h_backend_requests(t->ctl), 20);
    assert_int_equal(h_backend_stat(t->ctl, "request_connections"), 1);
    assert_int_equal(h_backend_stat(t->ctl, "tls_handshakes"), 1);
    assert_int_equal(fx_status_long(f, "new.servers.0.reused"), 19);
    assert_int_equal(fx_status_long(f, "new.servers.0.idle"), 1);
    /* a reload that leaves the TLS settings and files as they were keeps
     * the context and its pooled connection */
    reload_tls(t, ", \"tls\": {\"ca\": \"up-ca.pem\"}", 2);
    assert_int_equal(get_status(t, be, sizeof(be)), 200);
    assert_int_equal(h_backend_stat(t->ctl, "tls_handshakes"), 1);
    assert_int_equal(fx_status_long(f, "new.servers.0.reused"), 20);
    /* one that changes them closes it: the next request connects anew */
    reload_tls(t, ", \"tls\": {\"ca\": \"up-ca.pem\", \"min_version\": \"1.3\"}", 3);
    assert_int_equal(h_wait_log(f->log, "new upstream TLS changed", 3000), 0);
    assert_int_equal(get_status(t, be, sizeof(be)), 200);
    assert_int_equal(h_backend_stat(t->ctl, "tls_handshakes"), 2);
    assert_int_equal(fx_status_long(f, "new.servers.0.reused"), 20);
    /* legacy stays plain */
    fx_ctl_ok(f, "weight", "0");
    assert_int_equal(get_status(t, be, sizeof(be)), 200);
    assert_string_equal(be, "legacy");
    assert_int_equal(h_backend_requests(f->port[0][0]), 1);
    assert_int_equal(h_backend_requests(t->ctl), 22);
}

/* A server that closes after every answer: each request needs a new TLS
 * connection, and every one after the first resumes the session. The
 * same with the pool's connection closed by the server while idle: the
 * next request connects again, nothing fails. */
static void
test_sessions_resumed(void **state)
{
    struct t31 *t = start(state, "up-ip", NULL, ", \"tls\": {\"ca\": \"up-ca.pem\"}",
                          ", \"weight\": 100");
    int i;

    assert_int_equal(h_backend_set_raw(t->ctl, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n"
                                       "X-Backend: new\r\nConnection: close\r\n\r\nnew\n",
                                       "&raw_close=1"), 0);
    for (i = 0; i < 5; i++)
        assert_int_equal(get_status(t, NULL, 0), 200);
    assert_int_equal(h_backend_stat(t->ctl, "requests"), 5);
    assert_int_equal(h_backend_stat(t->ctl, "tls_handshakes"), 5);
    assert_int_equal(h_backend_stat(t->ctl, "tls_resumed"), 4);
    assert_int_equal(fx_status_long(&t->f, "new.counters.errors.tls_handshake"), 0);
}

/* Shadow copies to a side over TLS: legacy serves, every GET is copied to
 * new over TLS. Copies on a kept connection, then copies whose connection
 * the server closes after each answer (so the copy's connection, TLS and
 * all, is freed with it): every one comes back compared, none in error,
 * clients are served, and cutoverd exits cleanly (under make asan, with
 * nothing leaked). */
static void
test_shadow_to_tls_side(void **state)
{
    struct t31 *t = start(state, "up-ip", NULL, ", \"tls\": {\"ca\": \"up-ca.pem\"}",
                          ", \"weight\": 0, \"shadow\": {\"percent\": 100}");
    struct fx *f = &t->f;
    char be[32];
    long done = 0;
    long long end;
    int i;

    for (i = 0; i < 5; i++) {
        assert_int_equal(get_status(t, be, sizeof(be)), 200);
        assert_string_equal(be, "legacy");
    }
    assert_int_equal(h_backend_set_raw(t->ctl, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n"
                                       "X-Backend: new\r\nConnection: close\r\n\r\nnew\n",
                                       "&raw_close=1"), 0);
    for (i = 0; i < 5; i++) {
        assert_int_equal(get_status(t, be, sizeof(be)), 200);
        assert_string_equal(be, "legacy");
    }
    end = h_now_ms() + 5000;
    while (h_now_ms() < end) {
        done = fx_status_long(f, "shadow.results.match") + fx_status_long(f, "shadow.results.diff");
        if (done >= 10)
            break;
        h_sleep_ms(50);
    }
    assert_int_equal(done, 10);
    assert_int_equal(fx_status_long(f, "shadow.results.error"), 0);
    assert_int_equal(h_backend_stat(t->ctl, "requests"), 10);
    /* the first five on one kept connection, which the sixth may still
     * reuse; each of the others on a connection of its own */
    assert_true(h_backend_stat(t->ctl, "tls_handshakes") >= 5);
    fx_stop_clean(f);
}

/* Every refusal of the server's certificate is a 502, counted as
 * tls_verify and logged with the server and OpenSSL's reason: a CA that
 * did not sign it, a name it does not carry (sni), an address it does not
 * carry (no sni: the IP SAN). The right name then passes. */
static void
test_verification_failures(void **state)
{
    /* the shield off: the failures must reach the client */
    struct t31 *t = start(state, "up-ip", NULL, ", \"tls\": {\"ca\": \"up-ca2.pem\"}",
                          ", \"weight\": 100, \"shield\": {\"enabled\": false}");
    struct fx *f = &t->f;
    char needle[160];

    assert_int_equal(get_status(t, NULL, 0), 502);
    assert_int_equal(fx_status_long(f, "new.counters.errors.tls_verify"), 1);
    snprintf(needle, sizeof(needle), "new server 127.0.0.1:%d: TLS certificate refused: "
             "unable to get local issuer certificate", f->port[1][0]);
    assert_int_equal(h_wait_log(f->log, needle, 3000), 0);
    assert_int_equal(h_backend_stat(t->ctl, "heads"), 0);

    /* the right CA, a name the certificate does not carry */
    reload_tls(t, ", \"tls\": {\"ca\": \"up-ca.pem\", \"sni\": \"backend.test\"}", 2);
    assert_int_equal(get_status(t, NULL, 0), 502);
    assert_int_equal(fx_status_long(f, "new.counters.errors.tls_verify"), 2);
    assert_int_equal(h_wait_log(f->log, "TLS certificate refused: hostname mismatch", 3000), 0);

    /* a certificate for the name only: the address is not in it */
    tls_backend(t, "up-dns", NULL);
    reload_tls(t, ", \"tls\": {\"ca\": \"up-ca.pem\"}", 3);
    assert_int_equal(get_status(t, NULL, 0), 502);
    assert_int_equal(fx_status_long(f, "new.counters.errors.tls_verify"), 3);
    assert_int_equal(h_wait_log(f->log, "TLS certificate refused: IP address mismatch", 3000),
                     0);

    /* its name as sni: verified, answered */
    reload_tls(t, ", \"tls\": {\"ca\": \"up-ca.pem\", \"sni\": \"backend.test\"}", 4);
    assert_int_equal(get_status(t, NULL, 0), 200);
    assert_int_equal(h_backend_requests(t->ctl), 1);
    /* counted per side and in /metrics' kinds: no other class moved */
    assert_int_equal(fx_status_long(f, "new.counters.errors.connect"), 0);
    assert_int_equal(fx_status_long(f, "new.counters.error"), 3);
}

/* A handshake that fails otherwise is tls_handshake (502): new's TLS
 * pointed at a plain server. A server that accepts the connection
 * but never answers the ClientHello is cut at connect_ms (504,
 * connect_timeout): the handshake is bounded like the connect. */
static void
test_handshake_failure_and_timeout(void **state)
{
    struct t31 *t = start(state, "up-ip", NULL, ", \"tls\": {\"ca\": \"up-ca.pem\"}",
                          ", \"weight\": 100, \"timeouts\": {\"connect_ms\": 300}, "
                          "\"shield\": {\"enabled\": false}");
    struct fx *f = &t->f;
    struct sockaddr_in sin;
    long long t0;
    int ls, one = 1, plain;

    /* a plain TCP server that greets with a line: not TLS */
    plain = h_free_port();
    assert_true(h_backend_start("plain", plain, f->dir, true) > 0);
    snprintf(f->servers[1], sizeof(f->servers[1]), "\"127.0.0.1:%d\"", plain);
    reload_tls(t, ", \"tls\": {\"ca\": \"up-ca.pem\"}", 2);
    assert_int_equal(get_status(t, NULL, 0), 502);
    assert_int_equal(fx_status_long(f, "new.counters.errors.tls_handshake"), 1);
    assert_int_equal(h_wait_log(f->log, "TLS handshake failed: ", 3000), 0);

    /* a listener nobody accepts on: the kernel completes the connect */
    ls = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(ls >= 0);
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin.sin_port = htons((uint16_t)h_free_port());
    assert_int_equal(bind(ls, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(ls, 16), 0);
    snprintf(f->servers[1], sizeof(f->servers[1]), "\"127.0.0.1:%d\"", ntohs(sin.sin_port));
    reload_tls(t, ", \"tls\": {\"ca\": \"up-ca.pem\"}", 3);
    t0 = h_now_ms();
    assert_int_equal(get_status(t, NULL, 0), 504);
    assert_true(h_now_ms() - t0 >= 250);
    assert_true(h_now_ms() - t0 < 3000);
    assert_int_equal(fx_status_long(f, "new.counters.errors.connect_timeout"), 1);
    close(ls);
}

/* A backend that requires a client certificate: refused without one (502,
 * nothing served), served with the side's "cert" and "key". */
static void
test_mtls(void **state)
{
    struct t31 *t = start(state, "up-ip", "up-ca", ", \"tls\": {\"ca\": \"up-ca.pem\"}",
                          ", \"weight\": 100, \"shield\": {\"enabled\": false}");

    assert_int_equal(get_status(t, NULL, 0), 502);
    assert_int_equal(h_backend_stat(t->ctl, "requests"), 0);
    reload_tls(t, ", \"tls\": {\"ca\": \"up-ca.pem\", \"cert\": \"up-client.pem\", "
               "\"key\": \"up-client.key\"}", 2);
    assert_int_equal(get_status(t, NULL, 0), 200);
    assert_int_equal(h_backend_stat(t->ctl, "requests"), 1);
}

/* Health checks use the side's TLS: an http check over TLS marks the TLS
 * server up; after a reload to a CA that did not sign its certificate the
 * checks fail and it goes down, the reason in its last check. */
static void
test_health_checks_over_tls(void **state)
{
    struct t31 *t = start(state, "up-ip", NULL, ", \"tls\": {\"ca\": \"up-ca.pem\"}",
                          ", \"health\": {\"type\": \"http\", \"path\": \"/healthz\", "
                          "\"interval_ms\": 200, \"timeout_ms\": 150, \"rise\": 1, "
                          "\"fall\": 1}");
    struct fx *f = &t->f;
    long long end;
    json_t *last;

    assert_int_equal(fx_wait_up(f, "new", true, 3000), 0);
    /* checks pass: they went over TLS (the backend counts handshakes) */
    for (end = h_now_ms() + 3000; h_backend_stat(t->ctl, "tls_handshakes") < 3;)
        if (h_now_ms() > end)
            fail_msg("no 3 checks over TLS within 3 s");
        else
            h_sleep_ms(20);
    assert_int_equal(fx_status_long(f, "new.servers.0.checks.fail"), 0);
    reload_tls(t, ", \"tls\": {\"ca\": \"up-ca2.pem\"}", 2);
    assert_int_equal(fx_wait_up(f, "new", false, 3000), 0);
    last = fx_status_at(f, "new.servers.0.last_check");
    assert_non_null(last);
    assert_non_null(strstr(json_string_value(last), "tls: certificate refused: "
                                                    "unable to get local issuer certificate"));
    json_decref(last);
    /* and up again with the right one */
    reload_tls(t, ", \"tls\": {\"ca\": \"up-ca.pem\"}", 3);
    assert_int_equal(fx_wait_up(f, "new", true, 3000), 0);
}

/* One ordering of a response's end: the backend's settings, what the
 * client must see (complete or cut), and whether it counts as cut. */
struct ending {
    const char *set;             /* backend settings (after reset=1) */
    bool raw;                    /* close-delimited raw answer instead of midclose/midbody */
    bool complete;               /* the client gets the whole response */
};

/* Responses that end in every order of close_notify / FIN / RST: a
 * close-delimited body is complete only when close_notify came (then FIN
 * or RST after it); a body framed by Content-Length or chunked and cut
 * short is cut whatever came (close_notify, FIN or RST, alone or
 * together). A cut one is never relayed as complete: the client sees the
 * connection closed before the end, and it counts as upstream_reset. */
static void
test_truncation_orderings(void **state)
{
    static const struct ending endings[] = {
        /* close-delimited, the body complete, then: */
        { "close_notify=1&close_rst=0", true, true },    /* close_notify, FIN */
        { "close_notify=1&close_rst=1", true, true },    /* close_notify, RST */
        { "close_notify=0&close_rst=0", true, false },   /* FIN alone */
        { "close_notify=0&close_rst=1", true, false },   /* RST alone */
        /* half of a Content-Length body, then: */
        { "mode=midclose&close_notify=1", false, false },
        { "mode=midclose&close_notify=0", false, false },
        { "mode=midclose&close_notify=1&close_rst=1", false, false },
        { "mode=midbody&close_notify=0", false, false },
        { "mode=midbody&close_notify=1", false, false },
        /* half of a chunked body, then: */
        { "mode=midclose&chunked=1&close_notify=1", false, false },
        { "mode=midclose&chunked=1&close_notify=0", false, false },
        { "mode=midbody&chunked=1&close_notify=0", false, false },
        { "mode=midbody&chunked=1&close_notify=1", false, false },
    };
    static const char body[] = "close-delimited body over TLS";
    struct t31 *t = start(state, "up-ip", NULL, ", \"tls\": {\"ca\": \"up-ca.pem\"}",
                          ", \"weight\": 100");
    char q[256];
    struct h_resp r;
    long cut = 0;
    size_t i;
    int rc;

    for (i = 0; i < sizeof(endings) / sizeof(endings[0]); i++) {
        const struct ending *e = &endings[i];

        snprintf(q, sizeof(q), "reset=1&%s&body_bytes=20000", e->set);
        assert_int_equal(h_backend_set(t->ctl, q), 0);
        if (e->raw)
            assert_int_equal(h_backend_set_raw(t->ctl, "HTTP/1.1 200 OK\r\nX-Backend: new\r\n"
                                               "\r\nclose-delimited body over TLS",
                                               "&raw_close=1"), 0);
        rc = h_exchange(t->f.proxy_port, GET_ROOT, &r);
        if (e->complete) {
            if (rc != 0 || r.status != 200 || r.body_len != strlen(body) ||
                memcmp(r.body, body, r.body_len) != 0)
                fail_msg("%s: not complete (rc %d, status %d, %zu bytes)", e->set, rc,
                         r.status, r.body_len);
        } else {
            cut++;
            if (rc == 0)
                fail_msg("%s: a cut response was relayed as complete (%zu bytes)", e->set,
                         r.body_len);
            if (r.status != 200)
                fail_msg("%s: status %d, want the 200 head then a cut", e->set, r.status);
        }
        h_resp_free(&r);
        assert_int_equal(fx_status_long(&t->f, "new.counters.errors.upstream_reset"), cut);
    }
    /* nothing was reused after an end: every exchange had its own connection */
    assert_int_equal(fx_status_long(&t->f, "new.servers.0.reused"), 0);
}

/* cutoverd -t loads the files: a missing file, a key that does not match
 * its certificate, a file without a certificate, an IP as sni, TLS in tcp
 * mode, a cert without its key are each an error with the place. */
static void
test_conf_check(void **state)
{
    static const struct {
        const char *tls;         /* new's "tls" */
        bool tcp;
        const char *want;        /* in the message */
    } cases[] = {
        { "{\"ca\": \"up-ca.pem\"}", false, NULL },
        { "{\"ca\": \"missing.pem\"}", false,
          "services[0].new.tls.ca: %s/missing.pem: No such file or directory" },
        { "{\"ca\": \"up-ca.pem\", \"cert\": \"up-client.pem\", \"key\": \"up-ip.key\"}", false,
          "services[0].new.tls.key: %s/up-ip.key: does not match the certificate of "
          "services[0].new.tls.cert" },
        { "{\"ca\": \"up-ca.key\"}", false, "services[0].new.tls.ca: %s/up-ca.key: holds no "
          "PEM certificate" },
        { "{\"sni\": \"127.0.0.1\"}", false, "services[0].new.tls.sni: must be a DNS name" },
        { "{\"cert\": \"up-client.pem\"}", false, "services[0].new.tls.cert: needs \"key\" too" },
        { "{\"min_version\": \"1.1\"}", false, "services[0].new.tls.min_version: must be" },
        { "{\"verify\": \"yes\"}", false, "services[0].new.tls.verify: must be true or false" },
        { "{\"cafile\": \"up-ca.pem\"}", false, "services[0].new.tls.cafile" },
        { "{\"ca\": \"up-ca.pem\"}", true, "services[0].new.tls: upstream TLS is only "
          "available in http mode" },
    };
    struct fx *f = fx_new(state, sizeof(struct t31), false, 1, NULL);
    char out[4096], want[600];
    size_t i;
    int rc;

    assert_int_equal(h_tls_make_upstream_certs(f->dir), 0);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        f->tcp = cases[i].tcp;
        snprintf(f->side_extra[1], sizeof(f->side_extra[1]), ", \"tls\": %s", cases[i].tls);
        assert_int_equal(fx_write_conf(f), 0);
        rc = h_cutoverd_check(f->conf, out, sizeof(out));
        if (cases[i].want == NULL) {
            if (rc != 0)
                fail_msg("%s: refused: %s", cases[i].tls, out);
            continue;
        }
        snprintf(want, sizeof(want), cases[i].want, f->dir);
        if (rc != 1 || strstr(out, want) == NULL || strstr(out, f->conf) == NULL)
            fail_msg("%s: exit %d, want 1 and \"%s\": %s", cases[i].tls, rc, want, out);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_plain_legacy_tls_new_pooled, fx_teardown),
        cmocka_unit_test_teardown(test_sessions_resumed, fx_teardown),
        cmocka_unit_test_teardown(test_shadow_to_tls_side, fx_teardown),
        cmocka_unit_test_teardown(test_verification_failures, fx_teardown),
        cmocka_unit_test_teardown(test_handshake_failure_and_timeout, fx_teardown),
        cmocka_unit_test_teardown(test_mtls, fx_teardown),
        cmocka_unit_test_teardown(test_health_checks_over_tls, fx_teardown),
        cmocka_unit_test_teardown(test_truncation_orderings, fx_teardown),
        cmocka_unit_test_teardown(test_conf_check, fx_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
