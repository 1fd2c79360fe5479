/*
 * tls_up: the upstream side's TLS (see tls_up.h).
 *
 * Loading: each file is read once into memory, hashed (SHA-256, so a reload
 * can tell an unchanged file from a rewritten one) and parsed from there; a
 * private key's bytes are wiped as soon as OpenSSL has parsed them, and no
 * message ever quotes a file's content. Encrypted keys are refused (the
 * daemon has nobody to ask for a passphrase).
 *
 * Verification (on unless "verify": false): the chain against "ca" (the
 * system store without it), then the name: "sni" when set (also sent as
 * SNI), else the server's numeric address against the certificate's IP
 * SANs (X509_VERIFY_PARAM_set1_ip; no SNI is sent for an address, as RFC
 * 6066 forbids). Renegotiation is refused.
 *
 * Sessions: a client-side cache kept outside OpenSSL (per server runtime,
 * struct px_tls_up_cache): the new-session callback stores the latest
 * session of a connection in the cache its SSL points to (ex_data), and a
 * new connection to that server offers it. Health checks' connections
 * point to no cache and never store one.
 *
 * Connections: the SSL goes on the upstream's socket bufferevent
 * (px_tls_up_attach), which proxy/io.h connects, hands the handshake and
 * then reads and writes in records like the listener side's.
 *
 * Workload: parsing on load and reload only; per upstream connect one
 * SSL_new and a few setters; nothing per request.
 */
#include "proxy/tls_up.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/bufferevent.h>
#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "lib/conf.h"
#include "lib/xmalloc.h"
#include "proxy/io.h"
#include "proxy/tls_io.h"

#define TLS_UP_FILE_MAX  (1u << 20)  /* a PEM file larger than this is not one */
#define TLS_UP_NAME_MAX  253u

struct px_tls_up {
    unsigned refs;                   /* atomic: config generations share it */
    bool verify;
    int min_version;                 /* TLS1_2_VERSION or TLS1_3_VERSION */
    char *ca, *cert, *key;           /* owned, resolved paths; NULL = none */
    char *sni;                       /* owned; NULL = none */
    unsigned char ca_sum[32], cert_sum[32], key_sum[32];  /* SHA-256 of the files */
    SSL_CTX *ctx;                    /* owned reference */
};

static int cache_idx = -1;           /* SSL ex_data: struct px_tls_up_cache * */
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;

static void
cache_idx_init(void)
{
    cache_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

/* OpenSSL's new-session callback: keeps a copy of <sess> in the
 * connection's cache. A copy: SSL_free() of a connection that did not send
 * close_notify (we never do) marks its own session not resumable, which
 * would spoil the cached one. Returns 0: OpenSSL keeps its reference. */
static int
on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    struct px_tls_up_cache *c = cache_idx >= 0 ? SSL_get_ex_data(ssl, cache_idx) : NULL;
    SSL_CTX *ctx = SSL_get_SSL_CTX(ssl);

    if (c == NULL || !SSL_SESSION_is_resumable(sess) || (sess = SSL_SESSION_dup(sess)) == NULL)
        return 0;
    if (c->ctx != ctx) {
        SSL_CTX_up_ref(ctx);
        SSL_CTX_free(c->ctx);
        c->ctx = ctx;
    }
    SSL_SESSION_free(c->sess);
    c->sess = sess;
    return 0;
}

void
px_tls_up_cache_clear(struct px_tls_up_cache *c)
{
    SSL_SESSION_free(c->sess);
    SSL_CTX_free(c->ctx);
    c->sess = NULL;
    c->ctx = NULL;
}

/* ---- loading ----------------------------------------------------------- */

static char *
resolve(const char *dir, const char *rel)
{
    size_t dl = strlen(dir), rl = strlen(rel);
    char *p;

    if (rel[0] == '/')
        return xstrdup(rel);
    p = xmalloc(dl + rl + 2);
    memcpy(p, dir, dl);
    if (dl == 0 || dir[dl - 1] != '/')
        p[dl++] = '/';
    memcpy(p + dl, rel, rl + 1);
    return p;
}

/* OpenSSL's reason for the last error, or <dflt>. */
static const char *
ossl_reason(const char *dflt)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;

    return r != NULL ? r : dflt;
}

/* Reads all of <file> into a fresh buffer and hashes it into <sum>.
 * 0, or -1 with the reason in <err> at <path>. */
static int
read_pem(const char *file, const char *path, char **buf, size_t *len,
         unsigned char sum[32], struct conf_err *err)
{
    FILE *f = fopen(file, "rb");
    size_t n = 0, got;
    char *b;

    if (f == NULL)
        return conf_fail(err, path, "%s: %s", file, strerror(errno));
    b = xmalloc(TLS_UP_FILE_MAX + 1);
    while ((got = fread(b + n, 1, TLS_UP_FILE_MAX + 1 - n, f)) > 0 && n + got <= TLS_UP_FILE_MAX)
        n += got;
    if (ferror(f) || got > 0) {
        int e = errno;

        fclose(f);
        OPENSSL_cleanse(b, TLS_UP_FILE_MAX + 1);
        free(b);
        return got > 0 ? conf_fail(err, path, "%s: larger than %u bytes", file,
                                   TLS_UP_FILE_MAX)
                       : conf_fail(err, path, "%s: %s", file, strerror(e));
    }
    fclose(f);
    if (EVP_Digest(b, n, sum, NULL, EVP_sha256(), NULL) != 1) {
        OPENSSL_cleanse(b, n);
        free(b);
        return conf_fail(err, path, "%s: cannot hash it", file);
    }
    *buf = b;
    *len = n;
    return 0;
}

/* Every certificate of <file> into the context's trust store. */
static int
load_ca(struct px_tls_up *t, const char *path, struct conf_err *err)
{
    X509_STORE *store = SSL_CTX_get_cert_store(t->ctx);
    char *buf;
    size_t len;
    BIO *bio;
    X509 *x;
    int n = 0, rc = 0;

    if (read_pem(t->ca, path, &buf, &len, t->ca_sum, err) != 0)
        return -1;
    bio = BIO_new_mem_buf(buf, (int)len);
    ERR_clear_error();
    while (bio != NULL && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        if (X509_STORE_add_cert(store, x) != 1)
            rc = conf_fail(err, path, "%s: %s", t->ca, ossl_reason("cannot use a certificate"));
        X509_free(x);
        n++;
    }
    if (rc == 0 && n == 0)
        rc = conf_fail(err, path, "%s: holds no PEM certificate", t->ca);
    ERR_clear_error();
    BIO_free(bio);
    free(buf);
    return rc;
}

/* The client certificate (and the chain behind it in the same file). */
static int
load_cert(struct px_tls_up *t, const char *path, struct conf_err *err)
{
    char *buf;
    size_t len;
    BIO *bio;
    X509 *x;
    int rc = 0;

    if (read_pem(t->cert, path, &buf, &len, t->cert_sum, err) != 0)
        return -1;
    bio = BIO_new_mem_buf(buf, (int)len);
    ERR_clear_error();
    if (bio == NULL || (x = PEM_read_bio_X509_AUX(bio, NULL, NULL, NULL)) == NULL) {
        rc = conf_fail(err, path, "%s: holds no PEM certificate", t->cert);
    } else {
        if (SSL_CTX_use_certificate(t->ctx, x) != 1)
            rc = conf_fail(err, path, "%s: %s", t->cert, ossl_reason("cannot use it"));
        X509_free(x);
        while (rc == 0 && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL)
            if (SSL_CTX_add0_chain_cert(t->ctx, x) != 1) {
                X509_free(x);
                rc = conf_fail(err, path, "%s: %s", t->cert, ossl_reason("bad chain"));
            }
    }
    ERR_clear_error();
    BIO_free(bio);
    free(buf);
    return rc;
}

/* No passphrase: an encrypted key fails to load. */
static int
no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

static int
load_key(struct px_tls_up *t, const char *path, const char *cert_path, struct conf_err *err)
{
    char *buf;
    size_t len;
    BIO *bio;
    EVP_PKEY *k = NULL;
    int rc = 0;

    if (read_pem(t->key, path, &buf, &len, t->key_sum, err) != 0)
        return -1;
    bio = BIO_new_mem_buf(buf, (int)len);
    ERR_clear_error();
    if (bio != NULL)
        k = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
    BIO_free(bio);
    OPENSSL_cleanse(buf, len);         /* the key's bytes go at once */
    free(buf);
    if (k == NULL)
        rc = conf_fail(err, path, "%s: holds no usable PEM private key (an encrypted key "
                       "is not supported)", t->key);
    else if (SSL_CTX_use_PrivateKey(t->ctx, k) != 1 || SSL_CTX_check_private_key(t->ctx) != 1)
        rc = conf_fail(err, path, "%s: does not match the certificate of %s (%s)", t->key,
                       cert_path, t->cert);
    EVP_PKEY_free(k);
    ERR_clear_error();
    return rc;
}

/* A DNS name: dot-separated labels of letters, digits and inner hyphens,
 * at most 253 bytes, not an IPv4 address. */
static bool
is_dns_name(const char *s)
{
    size_t n = strlen(s), i, label = 0;
    struct in_addr a4;

    if (n == 0 || n > TLS_UP_NAME_MAX || inet_pton(AF_INET, s, &a4) == 1)
        return false;
    for (i = 0; i <= n; i++) {
        char ch = s[i];

        if (ch == '.' || ch == '\0') {
            if (label == 0 || label > 63 || s[i - 1] == '-')
                return false;
            label = 0;
        } else if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                   (ch >= '0' && ch <= '9') || (ch == '-' && label > 0)) {
            label++;
        } else {
            return false;
        }
    }
    return true;
}

static int
build_ctx(struct px_tls_up *t, const char *path, struct conf_err *err)
{
    char p[sizeof(err->path)], q[sizeof(err->path)];

    pthread_once(&cache_once, cache_idx_init);
    t->ctx = SSL_CTX_new(TLS_client_method());
    if (t->ctx == NULL || cache_idx < 0)
        return conf_fail(err, path, "cannot create a TLS context: %s",
                         ossl_reason("out of memory"));
    SSL_CTX_set_min_proto_version(t->ctx, t->min_version);
    SSL_CTX_set_options(t->ctx, SSL_OP_NO_RENEGOTIATION |
                                (px_tls_io_ktls() ? SSL_OP_ENABLE_KTLS : 0));
    SSL_CTX_set_session_cache_mode(t->ctx, SSL_SESS_CACHE_CLIENT |
                                           SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(t->ctx, on_new_session);
    if (t->verify) {
        SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
        if (t->ca == NULL && SSL_CTX_set_default_verify_paths(t->ctx) != 1)
            return conf_fail(err, path, "cannot load the system's CA store: %s",
                             ossl_reason("unknown reason"));
        if (t->sni != NULL) {
            X509_VERIFY_PARAM *vp = SSL_CTX_get0_param(t->ctx);

            X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            if (X509_VERIFY_PARAM_set1_host(vp, t->sni, 0) != 1)
                return conf_fail(err, conf_join(p, sizeof(p), path, "sni"),
                                 "cannot be verified: %s", ossl_reason("unknown reason"));
        }
    }
    if (t->ca != NULL && load_ca(t, conf_join(p, sizeof(p), path, "ca"), err) != 0)
        return -1;
    if (t->cert != NULL &&
        (load_cert(t, conf_join(p, sizeof(p), path, "cert"), err) != 0 ||
         load_key(t, conf_join(q, sizeof(q), path, "key"), p, err) != 0))
        return -1;
    return 0;
}

int
px_tls_up_parse(json_t *j, const char *path, const char *dir, struct px_tls_up **out,
                struct conf_err *err)
{
    static const char *const keys[] = {
        "ca", "verify", "sni", "cert", "key", "min_version", NULL
    };
    struct px_tls_up *t;
    const char *ca, *cert, *key, *sni, *mv;
    json_t *v;
    char p[sizeof(err->path)];

    *out = NULL;
    if (!json_is_object(j))
        return conf_fail(err, path, "must be an object");
    if (conf_check_keys(j, path, keys, err) != 0 ||
        conf_opt_nonempty(j, "ca", path, &ca, err) != 0 ||
        conf_opt_nonempty(j, "cert", path, &cert, err) != 0 ||
        conf_opt_nonempty(j, "key", path, &key, err) != 0 ||
        conf_opt_nonempty(j, "sni", path, &sni, err) != 0 ||
        conf_opt_nonempty(j, "min_version", path, &mv, err) != 0)
        return -1;
    if ((v = json_object_get(j, "verify")) != NULL && !json_is_boolean(v))
        return conf_fail(err, conf_join(p, sizeof(p), path, "verify"),
                         "must be true or false");
    if (sni != NULL && !is_dns_name(sni))
        return conf_fail(err, conf_join(p, sizeof(p), path, "sni"),
                         "must be a DNS name (without \"sni\", a server's address is "
                         "verified against the certificate's IP addresses)");
    if (mv != NULL && strcmp(mv, "1.2") != 0 && strcmp(mv, "1.3") != 0)
        return conf_fail(err, conf_join(p, sizeof(p), path, "min_version"),
                         "must be \"1.2\" or \"1.3\"");
    if ((cert == NULL) != (key == NULL))
        return conf_fail(err, conf_join(p, sizeof(p), path, cert == NULL ? "key" : "cert"),
                         "needs \"%s\" too (a client certificate and its key)",
                         cert == NULL ? "cert" : "key");

    t = xcalloc(1, sizeof(*t));
    t->refs = 1;
    t->verify = v == NULL || json_is_true(v);
    t->min_version = mv != NULL && strcmp(mv, "1.3") == 0 ? TLS1_3_VERSION : TLS1_2_VERSION;
    t->ca = ca != NULL ? resolve(dir, ca) : NULL;
    t->cert = cert != NULL ? resolve(dir, cert) : NULL;
    t->key = key != NULL ? resolve(dir, key) : NULL;
    t->sni = sni != NULL ? xstrdup(sni) : NULL;
    if (build_ctx(t, path, err) != 0) {
        px_tls_up_put(t);
        return -1;
    }
    *out = t;
    return 0;
}

void
px_tls_up_put(struct px_tls_up *t)
{
    if (t == NULL || __atomic_sub_fetch(&t->refs, 1, __ATOMIC_ACQ_REL) > 0)
        return;
    SSL_CTX_free(t->ctx);
    free(t->ca);
    free(t->cert);
    free(t->key);
    free(t->sni);
    free(t);
}

static bool
str_same(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

bool
px_tls_up_equal(const struct px_tls_up *a, const struct px_tls_up *b)
{
    if (a == b)
        return true;
    if (a == NULL || b == NULL)
        return false;
    return a->verify == b->verify && a->min_version == b->min_version &&
           str_same(a->ca, b->ca) && str_same(a->cert, b->cert) && str_same(a->key, b->key) &&
           str_same(a->sni, b->sni) && memcmp(a->ca_sum, b->ca_sum, 32) == 0 &&
           memcmp(a->cert_sum, b->cert_sum, 32) == 0 && memcmp(a->key_sum, b->key_sum, 32) == 0;
}

void
px_tls_up_keep(struct px_tls_up **now, struct px_tls_up *old)
{
    if (*now == NULL || old == NULL || *now == old || !px_tls_up_equal(*now, old))
        return;
    __atomic_add_fetch(&old->refs, 1, __ATOMIC_RELAXED);
    px_tls_up_put(*now);
    *now = old;
}

SSL_CTX *
px_tls_up_ctx(const struct px_tls_up *t)
{
    return t != NULL ? t->ctx : NULL;
}

const char *
px_tls_up_sni(const struct px_tls_up *t)
{
    return t != NULL ? t->sni : NULL;
}

/* ---- connections ------------------------------------------------------- */

int
px_tls_up_attach(struct bufferevent *bev, const struct px_tls_up *t, const struct sockaddr *sa,
                 struct px_tls_up_cache *cache)
{
    SSL *ssl = SSL_new(t->ctx);
    int ok;

    if (ssl == NULL) {
        ERR_clear_error();
        return -1;
    }
    if (t->sni != NULL) {
        ok = SSL_set_tlsext_host_name(ssl, t->sni) == 1;
    } else if (!t->verify) {
        ok = 1;
    } else if (sa->sa_family == AF_INET) {
        ok = X509_VERIFY_PARAM_set1_ip(SSL_get0_param(ssl),
                                       (const unsigned char *)&((const struct sockaddr_in *)
                                                                sa)->sin_addr, 4) == 1;
    } else {
        ok = sa->sa_family == AF_INET6 &&
             X509_VERIFY_PARAM_set1_ip(SSL_get0_param(ssl),
                                       (const unsigned char *)&((const struct sockaddr_in6 *)
                                                                sa)->sin6_addr, 16) == 1;
    }
    /* a name that cannot be set would verify nothing: no connection then */
    if (!ok || SSL_set_ex_data(ssl, cache_idx, cache) != 1 ||
        SSL_set_fd(ssl, bufferevent_getfd(bev)) != 1) {
        SSL_free(ssl);
        ERR_clear_error();
        return -1;
    }
    if (cache != NULL && cache->sess != NULL && cache->ctx == t->ctx)
        SSL_set_session(ssl, cache->sess);
    SSL_set_connect_state(ssl);
    /* a response's record in one read(2), not its header and body apart */
    SSL_set_read_ahead(ssl, 1);
    px_io_own_tls(bev, px_tls_io_new(ssl));
    return 0;
}

enum px_tls_up_fail
px_tls_up_failure(struct bufferevent *bev, char *why, size_t len)
{
    struct px_tls_io *tls = px_io_tls(bev);
    SSL *ssl = tls != NULL ? tls->ssl : NULL;
    unsigned long reason = tls != NULL ? tls->error : 0;
    long vr;
    BIO *w;

    if (ssl == NULL) {
        snprintf(why, len, "connect failed");
        return PX_TLS_UP_CONNECT;
    }
    vr = SSL_get_verify_result(ssl);
    if ((SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER) && vr != X509_V_OK) {
        snprintf(why, len, "%s", X509_verify_cert_error_string(vr));
        return PX_TLS_UP_VERIFY;
    }
    w = SSL_get_wbio(ssl);
    if (w == NULL || BIO_number_written(w) == 0) {
        snprintf(why, len, "connect failed");
        return PX_TLS_UP_CONNECT;       /* not even a ClientHello went out */
    }
    if (reason != 0 && ERR_reason_error_string(reason) != NULL)
        snprintf(why, len, "%s", ERR_reason_error_string(reason));
    else
        snprintf(why, len, "connection closed during the handshake");
    return PX_TLS_UP_HANDSHAKE;
}

bool
px_tls_up_closed_cleanly(struct bufferevent *bev)
{
    struct px_tls_io *tls = px_io_tls(bev);

    return tls == NULL || (SSL_get_shutdown(tls->ssl) & SSL_RECEIVED_SHUTDOWN) != 0;
}
