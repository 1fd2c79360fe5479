/*
 * tests/unit/test_px_tls.c: the listener side's TLS settings
 * (proxy/tls_conf.c: the "tls" key parsed, with its defaults and every
 * refusal naming its place; px_tls_conf_equal() over every field) and the
 * session ticket keys of proxy/tls.c (the encrypting key rotates on time,
 * the one before still decrypts for one period, older ones are gone). The
 * contexts themselves need certificate files and real handshakes:
 * tests/integration/29_tls.c.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <jansson.h>

#include "proxy/tls.h"
#include "proxy/tls_conf.h"

/* Parses "tls" text <text> (' for ") of an http (or tcp) service. */
static int
parse(const char *text, bool http, struct px_tls_conf **out, struct conf_err *err)
{
    char buf[2048];
    json_t *j;
    size_t i;
    int rc;

    for (i = 0; text[i] != '\0' && i + 1 < sizeof(buf); i++)
        buf[i] = text[i] == '\'' ? '"' : text[i];
    buf[i] = '\0';
    j = json_loads(buf, 0, NULL);
    assert_non_null(j);
    memset(err, 0, sizeof(*err));
    rc = px_tls_conf_parse(j, "services[0].tls", "/etc/cutover", http, out, err);
    json_decref(j);
    return rc;
}

static void
test_defaults(void **state)
{
    struct px_tls_conf *c;
    struct conf_err err;

    (void)state;
    assert_int_equal(parse("{'certs': [{'cert': 'web.pem', 'key': '/k/web.key'}]}", true, &c,
                           &err), 0);
    assert_int_equal(c->ncerts, 1);
    assert_string_equal(c->certs[0].cert, "/etc/cutover/web.pem");   /* the config's dir */
    assert_string_equal(c->certs[0].cert_as_written, "web.pem");
    assert_string_equal(c->certs[0].key, "/k/web.key");
    assert_int_equal(c->nalpn, 2);
    assert_string_equal(c->alpn[0], "http/1.1");
    assert_string_equal(c->alpn[1], "http/1.0");
    assert_int_equal(c->min_version, 12);
    assert_null(c->ciphers);
    assert_null(c->ciphersuites);
    assert_null(c->client_ca);
    assert_int_equal(c->client_verify, PX_TLS_VERIFY_NONE);
    assert_true(c->session_tickets);
    assert_int_equal(c->handshake_timeout_ms, 10000);
    px_tls_conf_free(c);

    /* tcp: no ALPN answer unless configured; a CA means "required" */
    assert_int_equal(parse("{'certs': [{'cert': 'a', 'key': 'b'}], 'client_ca': 'ca.pem'}",
                           false, &c, &err), 0);
    assert_int_equal(c->nalpn, 0);
    assert_string_equal(c->client_ca, "/etc/cutover/ca.pem");
    assert_int_equal(c->client_verify, PX_TLS_VERIFY_REQUIRED);
    px_tls_conf_free(c);

    assert_int_equal(parse("{'certs': [{'cert': 'a', 'key': 'b'}, {'cert': 'c', 'key': 'd'}],"
                           " 'alpn': ['imap', 'x-y'], 'min_version': '1.3', 'ciphers': 'HIGH',"
                           " 'ciphersuites': 'TLS_AES_128_GCM_SHA256', 'client_ca': 'ca',"
                           " 'client_verify': 'optional', 'session_tickets': false,"
                           " 'handshake_timeout_ms': 500}", false, &c, &err), 0);
    assert_int_equal(c->ncerts, 2);
    assert_int_equal(c->nalpn, 2);
    assert_string_equal(c->alpn[1], "x-y");
    assert_int_equal(c->min_version, 13);
    assert_string_equal(c->ciphers, "HIGH");
    assert_int_equal(c->client_verify, PX_TLS_VERIFY_OPTIONAL);
    assert_false(c->session_tickets);
    assert_int_equal(c->handshake_timeout_ms, 500);
    px_tls_conf_free(c);

    /* absent: no TLS */
    assert_int_equal(px_tls_conf_parse(NULL, "services[0].tls", "/", true, &c, &err), 0);
    assert_null(c);
}

static void
test_refusals_name_the_place(void **state)
{
    static const struct {
        const char *text;
        bool http;
        const char *path, *msg;
    } cases[] = {
        { "[]", true, "services[0].tls", "must be an object" },
        { "{}", true, "services[0].tls.certs", "is required" },
        { "{'certs': []}", true, "services[0].tls.certs", "must not be empty" },
        { "{'certs': {}}", true, "services[0].tls.certs", "must be an array" },
        { "{'certs': ['a.pem']}", true, "services[0].tls.certs[0]", "must be an object" },
        { "{'certs': [{'cert': 'a'}]}", true, "services[0].tls.certs[0].key", "is required" },
        { "{'certs': [{'cert': '', 'key': 'b'}]}", true, "services[0].tls.certs[0].cert",
          "must not be empty" },
        { "{'certs': [{'cert': 'a', 'key': 'b', 'chain': 'c'}]}", true,
          "services[0].tls.certs[0].chain", "unknown key" },
        { "{'certs': [{'cert': 'a', 'key': 'b'}], 'alpn': ['h2']}", true,
          "services[0].tls.alpn[0]", "\"h2\" is not spoken here" },
        { "{'certs': [{'cert': 'a', 'key': 'b'}], 'alpn': ['x', 'x']}", false,
          "services[0].tls.alpn[1]", "\"x\" is listed twice" },
        { "{'certs': [{'cert': 'a', 'key': 'b'}], 'alpn': ['a b']}", false,
          "services[0].tls.alpn[0]", "printable ASCII" },
        { "{'certs': [{'cert': 'a', 'key': 'b'}], 'alpn': 'http/1.1'}", true,
          "services[0].tls.alpn", "must be an array" },
        { "{'certs': [{'cert': 'a', 'key': 'b'}], 'min_version': '1.0'}", true,
          "services[0].tls.min_version", "must be \"1.2\" or \"1.3\"" },
        { "{'certs': [{'cert': 'a', 'key': 'b'}], 'min_version': 1.2}", true,
          "services[0].tls.min_version", "must be a string" },
        { "{'certs': [{'cert': 'a', 'key': 'b'}], 'client_verify': 'yes'}", true,
          "services[0].tls.client_verify", "must be \"none\", \"optional\" or" },
        { "{'certs': [{'cert': 'a', 'key': 'b'}], 'client_verify': 'optional'}", true,
          "services[0].tls.client_verify", "needs tls.client_ca" },
        { "{'certs': [{'cert': 'a', 'key': 'b'}], 'session_tickets': 1}", true,
          "services[0].tls.session_tickets", "must be true or false" },
        { "{'certs': [{'cert': 'a', 'key': 'b'}], 'handshake_timeout_ms': 0}", true,
          "services[0].tls.handshake_timeout_ms", "" },
        { "{'certs': [{'cert': 'a', 'key': 'b'}], 'handshake_timeout_ms': 600001}", true,
          "services[0].tls.handshake_timeout_ms", "" },
        { "{'certs': [{'cert': 'a', 'key': 'b'}], 'cert': 'c'}", true,
          "services[0].tls.cert", "unknown key" },
    };
    struct px_tls_conf *c;
    struct conf_err err;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        c = NULL;
        if (parse(cases[i].text, cases[i].http, &c, &err) != -1 ||
            strcmp(err.path, cases[i].path) != 0 || strstr(err.msg, cases[i].msg) == NULL)
            fail_msg("case %zu %s: got %s: %s", i, cases[i].text, err.path, err.msg);
        px_tls_conf_free(c);
    }
}

/* Every field of struct px_tls_conf, positionally: a field added to it
 * does not build until it is here, and its case below fails until
 * px_tls_conf_equal() reads it. */
static void
test_equal_reads_every_field(void **state)
{
    static struct px_tls_cert_conf certs_a[1] = { { "/a.pem", "/a.key", "a.pem" } };
    static struct px_tls_cert_conf certs_b[1] = { { "/a.pem", "/a.key", "a.pem" } };
    static char *alpn_a[1] = { "http/1.1" }, *alpn_b[1] = { "http/1.1" };
    const struct px_tls_conf base = {
        1, certs_a, 1, alpn_a, 12, "HIGH", "TLS_AES_128_GCM_SHA256", "/ca.pem",
        PX_TLS_VERIFY_REQUIRED, true, 10000,
    };
    struct px_tls_conf a = base, b;
    struct px_tls_cert_conf cb;
    char *alpn_c[1] = { "http/1.0" };
    int k;

    (void)state;
    b = base;
    b.certs = certs_b;                 /* by content, not by pointer */
    b.alpn = alpn_b;
    assert_true(px_tls_conf_equal(&a, &b));
    assert_true(px_tls_conf_equal(NULL, NULL));
    assert_false(px_tls_conf_equal(&a, NULL));
    for (k = 0; k < 14; k++) {
        b = base;
        cb = certs_a[0];
        b.certs = &cb;
        switch (k) {
        case 0: b.ncerts = 0; break;
        case 1: cb.cert = "/b.pem"; break;
        case 2: cb.key = "/b.key"; break;
        case 3: cb.cert_as_written = "./a.pem"; break;
        case 4: b.nalpn = 0; break;
        case 5: b.alpn = alpn_c; break;
        case 6: b.min_version = 13; break;
        case 7: b.ciphers = NULL; break;
        case 8: b.ciphersuites = "TLS_AES_256_GCM_SHA384"; break;
        case 9: b.client_ca = "/other.pem"; break;
        case 10: b.client_verify = PX_TLS_VERIFY_OPTIONAL; break;
        case 11: b.session_tickets = false; break;
        case 12: b.handshake_timeout_ms = 9999; break;
        default: b.client_ca = NULL; break;
        }
        if (px_tls_conf_equal(&a, &b) || px_tls_conf_equal(&b, &a))
            fail_msg("change %d is not seen", k);
    }
}

static void
test_ticket_keys_rotate(void **state)
{
    struct px_tls_keys *k = px_tls_keys_new(1000, 100);
    unsigned char a[16], a2[16], b[16], c[16], d[16];

    (void)state;
    assert_non_null(k);
    px_tls_keys_current(k, 1000, a);
    px_tls_keys_current(k, 1099, a2);
    assert_memory_equal(a, a2, 16);    /* not due yet */
    assert_int_equal(px_tls_keys_find(k, a), 1);
    /* due: a new key encrypts, the old one still decrypts (renewed) */
    px_tls_keys_current(k, 1100, b);
    assert_memory_not_equal(a, b, 16);
    assert_int_equal(px_tls_keys_find(k, b), 1);
    assert_int_equal(px_tls_keys_find(k, a), 2);
    /* one more period: the first is gone */
    px_tls_keys_current(k, 1200, c);
    assert_int_equal(px_tls_keys_find(k, c), 1);
    assert_int_equal(px_tls_keys_find(k, b), 2);
    assert_int_equal(px_tls_keys_find(k, a), 0);
    /* idle for several periods: none of the old ones decrypts */
    px_tls_keys_current(k, 1600, d);
    assert_int_equal(px_tls_keys_find(k, d), 1);
    assert_int_equal(px_tls_keys_find(k, c), 0);
    assert_int_equal(px_tls_keys_find(k, b), 0);
    px_tls_keys_put(k);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_refusals_name_the_place),
        cmocka_unit_test(test_equal_reads_every_field),
        cmocka_unit_test(test_ticket_keys_rotate),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
