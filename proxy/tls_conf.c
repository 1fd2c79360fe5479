/*
 * tls_conf: the service "tls" key, parsed and compared (see tls_conf.h).
 * Workload: config loads only.
 */
#include "proxy/tls_conf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "lib/fs.h"
#include "lib/xmalloc.h"

const char *const px_tls_verify_names[3] = { "none", "optional", "required" };

/* A required non-empty string member <key> of <obj>, resolved against <dir>
 * as a file name. */
static int
path_member(json_t *obj, const char *key, const char *prefix, const char *dir, char **out,
            char **as_written, struct conf_err *err)
{
    const char *s;
    char p[sizeof(err->path)];

    if (conf_opt_nonempty(obj, key, prefix, &s, err) != 0)
        return -1;
    if (s == NULL)
        return conf_fail(err, conf_join(p, sizeof(p), prefix, key), "is required");
    *out = fs_resolve(dir, s);
    if (as_written != NULL)
        *as_written = xstrdup(s);
    return 0;
}

static int
parse_certs(json_t *arr, const char *path, const char *dir, struct px_tls_conf *c,
            struct conf_err *err)
{
    static const char *const keys[] = { "cert", "key", NULL };
    char p[sizeof(err->path)];
    json_t *v;
    size_t i;

    if (arr == NULL)
        return conf_fail(err, path, "is required (at least one {\"cert\", \"key\"} pair)");
    if (!json_is_array(arr))
        return conf_fail(err, path, "must be an array of {\"cert\", \"key\"} objects");
    if (json_array_size(arr) == 0)
        return conf_fail(err, path, "must not be empty");
    if (json_array_size(arr) > PX_TLS_MAX_CERTS)
        return conf_fail(err, path, "must hold at most %u certificates", PX_TLS_MAX_CERTS);
    c->certs = xcalloc(json_array_size(arr), sizeof(*c->certs));
    json_array_foreach(arr, i, v) {
        struct px_tls_cert_conf *cc = &c->certs[i];

        conf_join_index(p, sizeof(p), path, i);
        if (!json_is_object(v))
            return conf_fail(err, p, "must be an object {\"cert\": FILE, \"key\": FILE}");
        c->ncerts = (unsigned)i + 1;
        if (conf_check_keys(v, p, keys, err) != 0 ||
            path_member(v, "cert", p, dir, &cc->cert, &cc->cert_as_written, err) != 0 ||
            path_member(v, "key", p, dir, &cc->key, NULL, err) != 0)
            return -1;
    }
    return 0;
}

/* An ALPN protocol name: 1..255 printable bytes. In http mode only the
 * HTTP/1 names: anything else would be promised and not spoken. */
static int
parse_alpn(json_t *arr, const char *path, bool http, struct px_tls_conf *c,
           struct conf_err *err)
{
    char p[sizeof(err->path)];
    json_t *v;
    size_t i, k, n;

    if (arr == NULL) {
        if (http) {
            c->alpn = xcalloc(2, sizeof(*c->alpn));
            c->alpn[0] = xstrdup("http/1.1");
            c->alpn[1] = xstrdup("http/1.0");
            c->nalpn = 2;
        }
        return 0;
    }
    if (!json_is_array(arr))
        return conf_fail(err, path, "must be an array of protocol names");
    if (json_array_size(arr) > PX_TLS_MAX_ALPN)
        return conf_fail(err, path, "must hold at most %u names", PX_TLS_MAX_ALPN);
    c->alpn = xcalloc(json_array_size(arr) + 1, sizeof(*c->alpn));
    json_array_foreach(arr, i, v) {
        const char *s;

        conf_join_index(p, sizeof(p), path, i);
        if (!json_is_string(v))
            return conf_fail(err, p, "must be a string");
        s = json_string_value(v);
        n = json_string_length(v);
        if (n == 0 || n > 255 || strlen(s) != n)
            return conf_fail(err, p, "must be 1..255 bytes");
        for (k = 0; k < n; k++)
            if ((unsigned char)s[k] <= 0x20 || (unsigned char)s[k] >= 0x7f)
                return conf_fail(err, p, "must be printable ASCII without spaces");
        if (http && strcmp(s, "http/1.1") != 0 && strcmp(s, "http/1.0") != 0)
            return conf_fail(err, p, "\"%s\" is not spoken here: an http service "
                             "offers \"http/1.1\" and \"http/1.0\" only", s);
        for (k = 0; k < i; k++)
            if (strcmp(c->alpn[k], s) == 0)
                return conf_fail(err, p, "\"%s\" is listed twice", s);
        c->alpn[i] = xstrdup(s);
        c->nalpn = (unsigned)i + 1;
    }
    return 0;
}

int
px_tls_conf_parse(json_t *j, const char *path, const char *dir, bool http,
                  struct px_tls_conf **out, struct conf_err *err)
{
    static const char *const keys[] = {
        "certs", "alpn", "min_version", "ciphers", "ciphersuites", "client_ca",
        "client_verify", "session_tickets", "handshake_timeout_ms", NULL
    };
    struct px_tls_conf *c;
    char p[sizeof(err->path)];
    const char *s;
    json_t *v;

    *out = NULL;
    if (j == NULL)
        return 0;
    if (!json_is_object(j))
        return conf_fail(err, path, "must be an object");
    c = xcalloc(1, sizeof(*c));
    *out = c;                          /* freed by the caller on failure too */
    c->min_version = 12;
    c->session_tickets = true;
    c->handshake_timeout_ms = 10000;
    if (conf_check_keys(j, path, keys, err) != 0 ||
        parse_certs(json_object_get(j, "certs"), conf_join(p, sizeof(p), path, "certs"),
                    dir, c, err) != 0 ||
        parse_alpn(json_object_get(j, "alpn"), conf_join(p, sizeof(p), path, "alpn"), http,
                   c, err) != 0)
        return -1;

    if (conf_opt_nonempty(j, "min_version", path, &s, err) != 0)
        return -1;
    if (s != NULL && strcmp(s, "1.2") != 0 && strcmp(s, "1.3") != 0)
        return conf_fail(err, conf_join(p, sizeof(p), path, "min_version"),
                         "must be \"1.2\" or \"1.3\"");
    if (s != NULL)
        c->min_version = strcmp(s, "1.3") == 0 ? 13 : 12;

    if (conf_opt_nonempty(j, "ciphers", path, &s, err) != 0)
        return -1;
    c->ciphers = s != NULL ? xstrdup(s) : NULL;
    if (conf_opt_nonempty(j, "ciphersuites", path, &s, err) != 0)
        return -1;
    c->ciphersuites = s != NULL ? xstrdup(s) : NULL;

    if (conf_opt_nonempty(j, "client_ca", path, &s, err) != 0)
        return -1;
    c->client_ca = s != NULL ? fs_resolve(dir, s) : NULL;
    c->client_verify = c->client_ca != NULL ? PX_TLS_VERIFY_REQUIRED : PX_TLS_VERIFY_NONE;
    if (conf_opt_nonempty(j, "client_verify", path, &s, err) != 0)
        return -1;
    conf_join(p, sizeof(p), path, "client_verify");
    if (s != NULL) {
        if (strcmp(s, "none") == 0)
            c->client_verify = PX_TLS_VERIFY_NONE;
        else if (strcmp(s, "optional") == 0)
            c->client_verify = PX_TLS_VERIFY_OPTIONAL;
        else if (strcmp(s, "required") == 0)
            c->client_verify = PX_TLS_VERIFY_REQUIRED;
        else
            return conf_fail(err, p, "must be \"none\", \"optional\" or \"required\"");
        if (c->client_verify != PX_TLS_VERIFY_NONE && c->client_ca == NULL)
            return conf_fail(err, p, "\"%s\" needs tls.client_ca (the CA that signs the "
                             "client certificates)", s);
    }

    if ((v = json_object_get(j, "session_tickets")) != NULL) {
        if (!json_is_boolean(v))
            return conf_fail(err, conf_join(p, sizeof(p), path, "session_tickets"),
                             "must be true or false");
        c->session_tickets = json_is_true(v);
    }
    if (conf_opt_uint(j, "handshake_timeout_ms", path, 1, 600000, &c->handshake_timeout_ms,
                      err) != 0)
        return -1;
    return 0;
}

void
px_tls_conf_free(struct px_tls_conf *c)
{
    unsigned i;

    if (c == NULL)
        return;
    for (i = 0; c->certs != NULL && i < c->ncerts; i++) {
        free(c->certs[i].cert);
        free(c->certs[i].key);
        free(c->certs[i].cert_as_written);
    }
    free(c->certs);
    for (i = 0; c->alpn != NULL && i < c->nalpn; i++)
        free(c->alpn[i]);
    free(c->alpn);
    free(c->ciphers);
    free(c->ciphersuites);
    free(c->client_ca);
    free(c);
}

static bool
str_same(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

bool
px_tls_conf_equal(const struct px_tls_conf *a, const struct px_tls_conf *b)
{
    unsigned i;

    if (a == NULL || b == NULL)
        return a == b;
    if (a->ncerts != b->ncerts || a->nalpn != b->nalpn || a->min_version != b->min_version ||
        !str_same(a->ciphers, b->ciphers) || !str_same(a->ciphersuites, b->ciphersuites) ||
        !str_same(a->client_ca, b->client_ca) || a->client_verify != b->client_verify ||
        a->session_tickets != b->session_tickets ||
        a->handshake_timeout_ms != b->handshake_timeout_ms)
        return false;
    for (i = 0; i < a->ncerts; i++)
        if (!str_same(a->certs[i].cert, b->certs[i].cert) ||
            !str_same(a->certs[i].key, b->certs[i].key) ||
            !str_same(a->certs[i].cert_as_written, b->certs[i].cert_as_written))
            return false;
    for (i = 0; i < a->nalpn; i++)
        if (!str_same(a->alpn[i], b->alpn[i]))
            return false;
    return true;
}
