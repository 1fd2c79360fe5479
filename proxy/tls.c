/*
 * tls: the listener side's contexts, certificates by SNI, session tickets,
 * the classes of failed handshakes (see tls.h).
 *
 * Workload: contexts are built at load (startup, SIGHUP, `cutoverctl certs
 * reload`); per handshake the SNI callback does two binary searches, the
 * ticket callback copies a key under a mutex held for that copy. Nothing
 * here runs per request.
 */
#include "proxy/tls.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/bufferevent_struct.h>   /* px_tls_bev_watch(): ev_read, enabled */
#include <event2/event.h>
#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "lib/log.h"
#include "lib/xmalloc.h"
#include "proxy/conf.h"
#include "proxy/tls_conf.h"

#define PX_TLS_FILE_MAX (1u << 20)   /* a larger PEM file is surely not one */

/* Mozilla's "intermediate" configuration (version 5.7): TLS 1.2 suites
 * with forward secrecy and AEAD only, the client's order. */
#define PX_TLS_CIPHERS_DEFAULT                                                 \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"               \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"               \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"               \
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:"                     \
    "DHE-RSA-CHACHA20-POLY1305"
#define PX_TLS_SUITES_DEFAULT                                                  \
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
#define PX_TLS_GROUPS_DEFAULT "X25519:P-256:P-384"

const char *const px_tls_result_names[PX_TLS_R__COUNT] = {
    "ok", "no_shared_cipher", "unknown_ca", "bad_certificate", "version", "timeout",
    "plain_http", "other",
};

/* ---- ticket keys ------------------------------------------------------ */

struct px_tls_key {
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char hmac[32];
};

struct px_tls_keys {
    unsigned refs;                   /* atomic: the contexts that use it */
    pthread_mutex_t mu;              /* guards what follows, for the ticket
                                      * callbacks of every worker */
    struct px_tls_key cur, prev;
    bool has_prev;
    uint64_t cur_since_s;            /* monotonic seconds when <cur> began */
    unsigned rotate_s;
    EVP_CIPHER *aes;                 /* owned: AES-256-CBC, fetched once */
};

static uint64_t
mono_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec;
}

static int
key_fill(struct px_tls_key *k)
{
    return RAND_bytes((unsigned char *)k, (int)sizeof(*k)) == 1 ? 0 : -1;
}

struct px_tls_keys *
px_tls_keys_new(uint64_t now_s, unsigned rotate_s)
{
    struct px_tls_keys *k = xcalloc(1, sizeof(*k));

    k->refs = 1;
    k->rotate_s = rotate_s > 0 ? rotate_s : 1;
    k->cur_since_s = now_s;
    pthread_mutex_init(&k->mu, NULL);
    if (key_fill(&k->cur) != 0 || (k->aes = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL)) == NULL) {
        pthread_mutex_destroy(&k->mu);
        EVP_CIPHER_free(k->aes);
        OPENSSL_cleanse(k, sizeof(*k));
        free(k);
        return NULL;
    }
    return k;
}

static struct px_tls_keys *
keys_get(struct px_tls_keys *k)
{
    __atomic_add_fetch(&k->refs, 1, __ATOMIC_RELAXED);
    return k;
}

void
px_tls_keys_put(struct px_tls_keys *k)
{
    if (k == NULL || __atomic_sub_fetch(&k->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    pthread_mutex_destroy(&k->mu);
    EVP_CIPHER_free(k->aes);
    OPENSSL_cleanse(k, sizeof(*k));
    free(k);
}

/* With k->mu held: a new encrypting key once the current one is
 * rotate_s old; the one it replaces still decrypts for one period. */
static void
keys_rotate_locked(struct px_tls_keys *k, uint64_t now_s)
{
    struct px_tls_key next;
    uint64_t periods;

    if (now_s < k->cur_since_s + k->rotate_s)
        return;
    if (key_fill(&next) != 0)
        return;                        /* keep the one we have; tried again later */
    periods = (now_s - k->cur_since_s) / k->rotate_s;
    k->prev = k->cur;
    k->has_prev = periods == 1;        /* older than one period: gone too */
    k->cur = next;
    k->cur_since_s = now_s;
    OPENSSL_cleanse(&next, sizeof(next));
}

void
px_tls_keys_current(struct px_tls_keys *k, uint64_t now_s, unsigned char name[16])
{
    pthread_mutex_lock(&k->mu);
    keys_rotate_locked(k, now_s);
    memcpy(name, k->cur.name, 16);
    pthread_mutex_unlock(&k->mu);
}

/* Copies the key named <name> into <out>: 1 current, 2 previous, 0 none. */
static int
keys_lookup(struct px_tls_keys *k, const unsigned char name[16], uint64_t now_s,
            struct px_tls_key *out)
{
    int rc = 0;

    pthread_mutex_lock(&k->mu);
    keys_rotate_locked(k, now_s);
    if (memcmp(name, k->cur.name, 16) == 0) {
        *out = k->cur;
        rc = 1;
    } else if (k->has_prev && memcmp(name, k->prev.name, 16) == 0) {
        *out = k->prev;
        rc = 2;
    }
    pthread_mutex_unlock(&k->mu);
    return rc;
}

int
px_tls_keys_find(struct px_tls_keys *k, const unsigned char name[16])
{
    int rc;

    pthread_mutex_lock(&k->mu);
    rc = memcmp(name, k->cur.name, 16) == 0 ? 1
         : k->has_prev && memcmp(name, k->prev.name, 16) == 0 ? 2 : 0;
    pthread_mutex_unlock(&k->mu);
    return rc;
}

/* ---- contexts --------------------------------------------------------- */

struct px_tls_cert {
    SSL_CTX *ctx;                    /* one reference */
    struct px_tls_cert_info info;    /* strings owned */
};

/* A name a certificate is chosen for: exact ("a.example.com") or, in the
 * wildcard table, the part after "*." ("example.com"). */
struct px_tls_name {
    char *name;                      /* owned, lower case */
    unsigned cert;
};

struct px_tls_ctx {
    unsigned refs;                   /* atomic: services of every worker, handshakes */
    unsigned ncerts;
    struct px_tls_cert *certs;       /* owned; [0] the default */
    struct px_tls_name *exact, *wild;    /* owned, sorted by name */
    unsigned nexact, nwild;
    struct px_tls_keys *keys;        /* one reference; NULL without tickets */
    unsigned char alpn[PX_TLS_MAX_ALPN * 256];  /* wire format: length-prefixed */
    unsigned alpn_len;               /* 0: ALPN not answered */
    int64_t loaded_s;                /* wall clock of the load */
};

struct px_tls_ctx *
px_tls_ctx_get(struct px_tls_ctx *t)
{
    if (t != NULL)
        __atomic_add_fetch(&t->refs, 1, __ATOMIC_RELAXED);
    return t;
}

static void
ctx_free(struct px_tls_ctx *t)
{
    unsigned i, k;

    for (i = 0; i < t->ncerts; i++) {
        struct px_tls_cert *c = &t->certs[i];

        SSL_CTX_free(c->ctx);          /* a handshake's SSL keeps its own reference */
        free((char *)c->info.file);
        free((char *)c->info.subject);
        for (k = 0; k < c->info.nnames; k++)
            free((char *)c->info.names[k]);
        free((char **)c->info.names);
        free((char *)c->info.key_type);
    }
    for (i = 0; i < t->nexact; i++)
        free(t->exact[i].name);
    for (i = 0; i < t->nwild; i++)
        free(t->wild[i].name);
    free(t->exact);
    free(t->wild);
    free(t->certs);
    px_tls_keys_put(t->keys);
    free(t);
}

void
px_tls_ctx_put(struct px_tls_ctx *t)
{
    if (t != NULL && __atomic_sub_fetch(&t->refs, 1, __ATOMIC_ACQ_REL) == 0)
        ctx_free(t);
}

struct px_tls_keys *
px_tls_ctx_keys(struct px_tls_ctx *t)
{
    return t->keys;
}

unsigned
px_tls_ncerts(const struct px_tls_ctx *t)
{
    return t->ncerts;
}

const struct px_tls_cert_info *
px_tls_cert(const struct px_tls_ctx *t, unsigned i)
{
    return &t->certs[i].info;
}

static int
name_cmp(const void *a, const void *b)
{
    const struct px_tls_name *x = a, *y = b;
    int c = strcmp(x->name, y->name);

    return c != 0 ? c : (x->cert > y->cert) - (x->cert < y->cert);
}

static int
name_key_cmp(const void *key, const void *elem)
{
    return strcmp(key, ((const struct px_tls_name *)elem)->name);
}

/* The first certificate (config order) of table <tab> named <name>. */
static int
table_find(const struct px_tls_name *tab, unsigned n, const char *name)
{
    const struct px_tls_name *hit;

    if (n == 0)
        return -1;
    hit = bsearch(name, tab, n, sizeof(*tab), name_key_cmp);
    if (hit == NULL)
        return -1;
    while (hit > tab && strcmp(hit[-1].name, name) == 0)
        hit--;                         /* equal names sort by certificate */
    return (int)hit->cert;
}

unsigned
px_tls_pick(const struct px_tls_ctx *t, const char *name)
{
    char low[256];
    const char *dot;
    size_t i, n;
    int hit;

    if (name == NULL || (n = strlen(name)) == 0 || n >= sizeof(low))
        return 0;
    for (i = 0; i < n; i++)
        low[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] - 'A' + 'a' : name[i]);
    low[n] = '\0';
    if (n > 0 && low[n - 1] == '.')
        low[--n] = '\0';               /* "a.example.com." is "a.example.com" */
    if ((hit = table_find(t->exact, t->nexact, low)) >= 0)
        return (unsigned)hit;
    dot = strchr(low, '.');
    if (dot != NULL && dot != low && dot[1] != '\0' &&
        (hit = table_find(t->wild, t->nwild, dot + 1)) >= 0)
        return (unsigned)hit;
    return 0;
}

/* ---- callbacks (any worker's thread, during a handshake) --------------- */

static int
on_servername(SSL *s, int *alert, void *arg)
{
    struct px_tls_ctx *t = arg;
    unsigned i;

    (void)alert;
    if (t->ncerts > 1 &&
        (i = px_tls_pick(t, SSL_get_servername(s, TLSEXT_NAMETYPE_host_name))) != 0)
        SSL_set_SSL_CTX(s, t->certs[i].ctx);
    return SSL_TLSEXT_ERR_OK;
}

static int
on_alpn(SSL *s, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
        unsigned inlen, void *arg)
{
    struct px_tls_ctx *t = arg;
    unsigned char *sel = NULL;

    (void)s;
    if (SSL_select_next_proto(&sel, outlen, t->alpn, t->alpn_len, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL;   /* no_application_protocol */
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

static int
on_ticket_key(SSL *s, unsigned char key_name[16], unsigned char *iv, EVP_CIPHER_CTX *cctx,
              EVP_MAC_CTX *hctx, int enc)
{
    struct px_tls_ctx *t = SSL_CTX_get_app_data(SSL_get_SSL_CTX(s));
    struct px_tls_keys *k = t->keys;
    struct px_tls_key key;
    OSSL_PARAM params[3];
    int rc;

    if (enc) {
        pthread_mutex_lock(&k->mu);
        keys_rotate_locked(k, mono_s());
        key = k->cur;
        pthread_mutex_unlock(&k->mu);
        rc = 1;
        if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(k->aes)) != 1) {
            OPENSSL_cleanse(&key, sizeof(key));
            return -1;
        }
        memcpy(key_name, key.name, 16);
    } else if ((rc = keys_lookup(k, key_name, mono_s(), &key)) == 0) {
        return 0;                      /* unknown or too old: a full handshake */
    } else if (SSL_version(s) == TLS1_3_VERSION) {
        rc = 2;                        /* a TLS 1.3 ticket is for one use: the client
                                        * gets the next one with this resumption */
    }
    params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key.hmac,
                                                  sizeof(key.hmac));
    params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0);
    params[2] = OSSL_PARAM_construct_end();
    if (EVP_MAC_CTX_set_params(hctx, params) != 1 ||
        (enc ? EVP_EncryptInit_ex2(cctx, k->aes, key.aes, iv, NULL)
             : EVP_DecryptInit_ex2(cctx, k->aes, key.aes, iv, NULL)) != 1)
        rc = -1;
    OPENSSL_cleanse(&key, sizeof(key));
    return rc;
}

/* ---- loading ---------------------------------------------------------- */

/* Where an error is, for its message: "FILE: services[I].tls.KEY". */
struct place {
    const char *conf_file;
    unsigned svc;
    char *err;
    size_t errlen;
};

static int fail_at(const struct place *pl, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
fail_at(const struct place *pl, const char *key, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(pl->err, pl->errlen, "%s: services[%u].tls.%s: %s", pl->conf_file, pl->svc, key,
             msg);
    return -1;
}

/* OpenSSL's reason for the last failure, and its error queue emptied. */
static const char *
ssl_reason(char *buf, size_t len)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;

    snprintf(buf, len, "%s", r != NULL ? r : "unknown OpenSSL error");
    ERR_clear_error();
    return buf;
}

/* Reads all of <path> (at most PX_TLS_FILE_MAX bytes). 0, or -1 with
 * errno (EFBIG when too large). */
static int
read_all(const char *path, unsigned char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf;
    size_t n = 0, got;

    if (f == NULL)
        return -1;
    buf = xmalloc(PX_TLS_FILE_MAX + 1);
    while ((got = fread(buf + n, 1, PX_TLS_FILE_MAX + 1 - n, f)) > 0) {
        n += got;
        if (n > PX_TLS_FILE_MAX)
            break;
    }
    if (ferror(f) || n > PX_TLS_FILE_MAX) {
        int e = ferror(f) ? errno : EFBIG;

        fclose(f);
        OPENSSL_cleanse(buf, n);
        free(buf);
        errno = e;
        return -1;
    }
    fclose(f);
    *out = buf;
    *len = n;
    return 0;
}

static int
no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;                         /* never prompts: an encrypted key fails */
}

static void
iso_time(int64_t t, char *buf, size_t len)
{
    time_t tt = (time_t)t;
    struct tm tm;

    gmtime_r(&tt, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int64_t
asn1_epoch(const ASN1_TIME *a)
{
    struct tm tm;

    memset(&tm, 0, sizeof(tm));
    if (a == NULL || ASN1_TIME_to_tm(a, &tm) != 1)
        return 0;
    return (int64_t)timegm(&tm);
}

/* The names <x> is chosen for: its subjectAltName DNS entries, else the
 * CN of its subject; lower case. */
static void
cert_names(X509 *x, struct px_tls_cert_info *info)
{
    GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    char **names = NULL, cn[256];
    unsigned n = 0, k;
    int i;

    if (sans != NULL) {
        names = xcalloc((size_t)sk_GENERAL_NAME_num(sans) + 1, sizeof(*names));
        for (i = 0; i < sk_GENERAL_NAME_num(sans); i++) {
            const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
            const unsigned char *d;
            int len;

            if (g->type != GEN_DNS)
                continue;
            d = ASN1_STRING_get0_data(g->d.dNSName);
            len = ASN1_STRING_length(g->d.dNSName);
            if (len <= 0 || len > 253 || memchr(d, '\0', (size_t)len) != NULL)
                continue;
            names[n++] = xstrndup((const char *)d, (size_t)len);
        }
        GENERAL_NAMES_free(sans);
    }
    if (n == 0 && X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn,
                                            sizeof(cn)) > 0) {
        free(names);
        names = xcalloc(1, sizeof(*names));
        names[n++] = xstrdup(cn);
    }
    for (k = 0; k < n; k++) {
        char *p;

        for (p = names[k]; *p != '\0'; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p - 'A' + 'a');
    }
    info->names = (const char *const *)names;
    info->nnames = n;
}

static char *
key_type(EVP_PKEY *k)
{
    char buf[96], group[64];
    size_t glen = 0;

    switch (EVP_PKEY_get_base_id(k)) {
    case EVP_PKEY_RSA:
        snprintf(buf, sizeof(buf), "RSA %d", EVP_PKEY_get_bits(k));
        break;
    case EVP_PKEY_EC:
        if (EVP_PKEY_get_group_name(k, group, sizeof(group), &glen) != 1)
            snprintf(group, sizeof(group), "?");
        snprintf(buf, sizeof(buf), "ECDSA %s",
                 strcmp(group, "prime256v1") == 0 ? "P-256"
                 : strcmp(group, "secp384r1") == 0 ? "P-384"
                 : strcmp(group, "secp521r1") == 0 ? "P-521" : group);
        break;
    case EVP_PKEY_ED25519:
        snprintf(buf, sizeof(buf), "Ed25519");
        break;
    default:
        snprintf(buf, sizeof(buf), "%s", OBJ_nid2sn(EVP_PKEY_get_base_id(k)));
        break;
    }
    return xstrdup(buf);
}

/* Loads certificate <k> of <tc> into <ctx>: the chain, then the key, which
 * must match. 0, 1 (check only: a file is not there yet, warned), or -1
 * with the message. */
static int
load_cert(SSL_CTX *ctx, const struct px_tls_conf *tc, unsigned k, struct px_tls_cert_info *info,
          bool check_only, const struct place *pl)
{
    const struct px_tls_cert_conf *cc = &tc->certs[k];
    char key_cert[64], key_key[64], why[256], when[32], subj[1024];
    unsigned char *pem = NULL;
    size_t len = 0;
    BIO *bio = NULL;
    X509 *leaf = NULL, *x;
    EVP_PKEY *pkey = NULL;
    int64_t now = (int64_t)time(NULL), days;
    int rc = -1;

    snprintf(key_cert, sizeof(key_cert), "certs[%u].cert", k);
    snprintf(key_key, sizeof(key_key), "certs[%u].key", k);
    if (read_all(cc->cert, &pem, &len) != 0) {
        if (check_only && errno == ENOENT)
            goto missing;
        return fail_at(pl, key_cert, "%s: cannot read: %s", cc->cert,
                       errno == EFBIG ? "larger than 1 MiB" : strerror(errno));
    }
    bio = BIO_new_mem_buf(pem, (int)len);
    if (bio == NULL || (leaf = PEM_read_bio_X509_AUX(bio, NULL, no_passphrase, NULL)) == NULL) {
        fail_at(pl, key_cert, "%s: no PEM certificate in it (%s)", cc->cert,
                ssl_reason(why, sizeof(why)));
        goto out;
    }
    if (SSL_CTX_use_certificate(ctx, leaf) != 1) {
        fail_at(pl, key_cert, "%s: unusable certificate: %s", cc->cert,
                ssl_reason(why, sizeof(why)));
        goto out;
    }
    SSL_CTX_clear_chain_certs(ctx);
    while ((x = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL)) != NULL) {
        if (SSL_CTX_add0_chain_cert(ctx, x) != 1) {
            X509_free(x);
            fail_at(pl, key_cert, "%s: unusable chain certificate: %s", cc->cert,
                    ssl_reason(why, sizeof(why)));
            goto out;
        }
    }
    ERR_clear_error();                 /* the end of the file */
    BIO_free(bio);
    bio = NULL;
    free(pem);
    pem = NULL;

    info->not_before = asn1_epoch(X509_get0_notBefore(leaf));
    info->not_after = asn1_epoch(X509_get0_notAfter(leaf));
    if (info->not_after <= now) {
        iso_time(info->not_after, when, sizeof(when));
        fail_at(pl, key_cert, "%s: the certificate expired on %s", cc->cert, when);
        goto out;
    }

    /* the key: parsed from a buffer wiped at once, never from stdio's */
    if (read_all(cc->key, &pem, &len) != 0) {
        if (check_only && errno == ENOENT)
            goto missing;
        fail_at(pl, key_key, "%s: cannot read: %s", cc->key,
                errno == EFBIG ? "larger than 1 MiB" : strerror(errno));
        goto out;
    }
    bio = BIO_new_mem_buf(pem, (int)len);
    pkey = bio != NULL ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL) : NULL;
    BIO_free(bio);
    bio = NULL;
    OPENSSL_cleanse(pem, len);
    free(pem);
    pem = NULL;
    if (pkey == NULL) {
        fail_at(pl, key_key, "%s: no usable PEM private key in it (an encrypted key is "
                "not supported; %s)", cc->key, ssl_reason(why, sizeof(why)));
        goto out;
    }
    if (SSL_CTX_use_PrivateKey(ctx, pkey) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
        ERR_clear_error();
        fail_at(pl, key_key, "%s: the key does not match the certificate %s", cc->key,
                cc->cert);
        goto out;
    }

    subj[0] = '\0';
    {
        BIO *m = BIO_new(BIO_s_mem());
        char *p = NULL;
        long n;

        if (m != NULL && X509_NAME_print_ex(m, X509_get_subject_name(leaf), 0,
                                            XN_FLAG_RFC2253) >= 0 &&
            (n = BIO_get_mem_data(m, &p)) > 0 && (size_t)n < sizeof(subj)) {
            memcpy(subj, p, (size_t)n);
            subj[n] = '\0';
        }
        BIO_free(m);
    }
    info->file = xstrdup(cc->cert_as_written);
    info->subject = xstrdup(subj);
    info->key_type = key_type(pkey);
    cert_names(leaf, info);
    if (info->nnames == 0) {
        fail_at(pl, key_cert, "%s: the certificate names no host (no subjectAltName DNS "
                "name, no CN)", cc->cert);
        goto out;
    }
    days = (info->not_after - now) / 86400;
    if (days < (int64_t)PX_TLS_EXPIRY_WARN_DAYS) {
        iso_time(info->not_after, when, sizeof(when));
        log_at(LL_WARN, "tls", 0, "%s: services[%u].tls.%s: %s: the certificate expires in "
               "%lld day(s), on %s", pl->conf_file, pl->svc, key_cert, cc->cert,
               (long long)days, when);
    }
    if (info->not_before > now) {
        iso_time(info->not_before, when, sizeof(when));
        log_at(LL_WARN, "tls", 0, "%s: services[%u].tls.%s: %s: the certificate is not "
               "valid before %s", pl->conf_file, pl->svc, key_cert, cc->cert, when);
    }
    rc = 0;
    goto out;

missing:                               /* the certificate if no leaf was read yet */
    log_at(LL_WARN, "tls", 0, "%s: services[%u].tls.%s: %s does not exist (yet): cutoverd "
           "will not start without it", pl->conf_file, pl->svc,
           leaf == NULL ? key_cert : key_key, leaf == NULL ? cc->cert : cc->key);
    rc = 1;
out:
    BIO_free(bio);
    if (pem != NULL) {
        OPENSSL_cleanse(pem, len);
        free(pem);
    }
    X509_free(leaf);
    EVP_PKEY_free(pkey);
    ERR_clear_error();
    return rc;
}

/* The settings every context of <tc> shares. 0, or -1 with the message. */
static int
ctx_setup(SSL_CTX *ctx, struct px_tls_ctx *t, const struct px_tls_conf *tc,
          const char *svc_name, bool check_only, const struct place *pl)
{
    unsigned char sid[SHA256_DIGEST_LENGTH];
    char why[256];
    int mode;

    SSL_CTX_set_min_proto_version(ctx, tc->min_version == 13 ? TLS1_3_VERSION
                                                              : TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
    /* no renegotiation; a FIN without close_notify ends the stream as on a
     * plain socket (HTTP framing, not the TLS layer, says whether a request
     * was whole); no compression (CRIME) */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                             SSL_OP_IGNORE_UNEXPECTED_EOF |
                             (tc->session_tickets ? 0 : SSL_OP_NO_TICKET));
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);   /* an idle connection holds
                                                        * no record buffers */
    if (SSL_CTX_set_cipher_list(ctx, tc->ciphers != NULL ? tc->ciphers
                                                         : PX_TLS_CIPHERS_DEFAULT) != 1)
        return fail_at(pl, "ciphers", "no usable cipher in \"%s\" (%s)",
                       tc->ciphers != NULL ? tc->ciphers : PX_TLS_CIPHERS_DEFAULT,
                       ssl_reason(why, sizeof(why)));
    if (SSL_CTX_set_ciphersuites(ctx, tc->ciphersuites != NULL ? tc->ciphersuites
                                                               : PX_TLS_SUITES_DEFAULT) != 1)
        return fail_at(pl, "ciphersuites", "no usable TLS 1.3 suite in \"%s\" (%s)",
                       tc->ciphersuites != NULL ? tc->ciphersuites : PX_TLS_SUITES_DEFAULT,
                       ssl_reason(why, sizeof(why)));
    SSL_CTX_set1_groups_list(ctx, PX_TLS_GROUPS_DEFAULT);
    SSL_CTX_set_dh_auto(ctx, 1);       /* the DHE-RSA suites */
    /* a session resumes only on the service (and client settings) it began
     * on */
    {
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        unsigned int n = 0;
        const char *ca = tc->client_ca != NULL ? tc->client_ca : "";

        if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1 ||
            EVP_DigestUpdate(md, svc_name, strlen(svc_name) + 1) != 1 ||
            EVP_DigestUpdate(md, ca, strlen(ca) + 1) != 1 ||
            EVP_DigestUpdate(md, &tc->client_verify, sizeof(tc->client_verify)) != 1 ||
            EVP_DigestFinal_ex(md, sid, &n) != 1 ||
            SSL_CTX_set_session_id_context(ctx, sid, n) != 1) {
            EVP_MD_CTX_free(md);
            return fail_at(pl, "certs", "cannot set the session id context (%s)",
                           ssl_reason(why, sizeof(why)));
        }
        EVP_MD_CTX_free(md);
    }
    SSL_CTX_set_timeout(ctx, PX_TLS_SESSION_TIMEOUT_S);
    if (tc->session_tickets) {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
        SSL_CTX_set_num_tickets(ctx, 1);
        SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, on_ticket_key);
    } else {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
        SSL_CTX_sess_set_cache_size(ctx, PX_TLS_SESSION_CACHE);
    }
    if (t->alpn_len > 0)
        SSL_CTX_set_alpn_select_cb(ctx, on_alpn, t);
    SSL_CTX_set_tlsext_servername_callback(ctx, on_servername);
    SSL_CTX_set_tlsext_servername_arg(ctx, t);
    SSL_CTX_set_app_data(ctx, t);

    if (tc->client_ca != NULL) {
        STACK_OF(X509_NAME) *names;

        if (SSL_CTX_load_verify_locations(ctx, tc->client_ca, NULL) != 1) {
            if (check_only && access(tc->client_ca, F_OK) != 0 && errno == ENOENT) {
                log_at(LL_WARN, "tls", 0, "%s: services[%u].tls.client_ca: %s does not "
                       "exist (yet): cutoverd will not start without it", pl->conf_file,
                       pl->svc, tc->client_ca);
                ERR_clear_error();
                return 1;
            }
            return fail_at(pl, "client_ca", "%s: cannot load: %s", tc->client_ca,
                           access(tc->client_ca, R_OK) != 0 ? strerror(errno)
                                                            : ssl_reason(why, sizeof(why)));
        }
        names = SSL_load_client_CA_file(tc->client_ca);
        if (names == NULL)
            return fail_at(pl, "client_ca", "%s: no CA certificate in it (%s)", tc->client_ca,
                           ssl_reason(why, sizeof(why)));
        SSL_CTX_set_client_CA_list(ctx, names);
    }
    mode = tc->client_verify == PX_TLS_VERIFY_REQUIRED
           ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT
           : tc->client_verify == PX_TLS_VERIFY_OPTIONAL ? SSL_VERIFY_PEER : SSL_VERIFY_NONE;
    SSL_CTX_set_verify(ctx, mode, NULL);
    return 0;
}

/* Adds certificate <k>'s names to the SNI tables of <t>. */
static void
tables_add(struct px_tls_ctx *t, unsigned k)
{
    const struct px_tls_cert_info *info = &t->certs[k].info;
    unsigned i;

    for (i = 0; i < info->nnames; i++) {
        const char *n = info->names[i];

        if (n[0] == '*' && n[1] == '.' && n[2] != '\0') {
            t->wild = xrealloc(t->wild, (t->nwild + 1) * sizeof(*t->wild));
            t->wild[t->nwild++] = (struct px_tls_name){ xstrdup(n + 2), k };
        } else {
            t->exact = xrealloc(t->exact, (t->nexact + 1) * sizeof(*t->exact));
            t->exact[t->nexact++] = (struct px_tls_name){ xstrdup(n), k };
        }
    }
}

/* The material of service <i> of <c>: 0 with *out, 1 (check only, a file
 * is missing: nothing built), -1 with the message. */
static int
ctx_build(const struct px_conf *c, unsigned i, struct px_tls_keys *keys, bool check_only,
          struct px_tls_ctx **out, char *err, size_t errlen)
{
    const struct px_service_conf *sc = &c->services[i];
    const struct px_tls_conf *tc = sc->tls;
    struct place pl = { c->file, i, err, errlen };
    struct px_tls_ctx *t = xcalloc(1, sizeof(*t));
    unsigned k, a;
    int rc = 0;

    t->refs = 1;
    t->loaded_s = (int64_t)time(NULL);
    t->certs = xcalloc(tc->ncerts, sizeof(*t->certs));
    for (a = 0; a < tc->nalpn; a++) {
        size_t n = strlen(tc->alpn[a]);

        t->alpn[t->alpn_len++] = (unsigned char)n;
        memcpy(t->alpn + t->alpn_len, tc->alpn[a], n);
        t->alpn_len += (unsigned)n;
    }
    if (tc->session_tickets) {
        t->keys = keys != NULL ? keys_get(keys) : px_tls_keys_new(mono_s(),
                                                                  PX_TLS_TICKET_ROTATE_S);
        if (t->keys == NULL) {
            rc = fail_at(&pl, "session_tickets", "cannot make a ticket key: %s",
                         ssl_reason((char[256]){ 0 }, 256));
            goto fail;
        }
    }
    for (k = 0; k < tc->ncerts; k++) {
        SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

        if (ctx == NULL) {
            rc = fail_at(&pl, "certs", "cannot create a TLS context: %s",
                         ssl_reason((char[256]){ 0 }, 256));
            goto fail;
        }
        t->certs[k].ctx = ctx;
        t->ncerts = k + 1;
        if ((rc = ctx_setup(ctx, t, tc, sc->name, check_only, &pl)) != 0 ||
            (rc = load_cert(ctx, tc, k, &t->certs[k].info, check_only, &pl)) != 0)
            goto fail;
        tables_add(t, k);
    }
    if (t->nexact > 0)
        qsort(t->exact, t->nexact, sizeof(*t->exact), name_cmp);
    if (t->nwild > 0)
        qsort(t->wild, t->nwild, sizeof(*t->wild), name_cmp);
    *out = t;
    return 0;

fail:
    ctx_free(t);
    ERR_clear_error();
    return rc;
}

int
px_tls_load_all(const struct px_conf *c, struct px_tls_ctx *const *prev, bool check_only,
                struct px_tls_ctx ***out, char *err, size_t errlen)
{
    struct px_tls_ctx **all = xcalloc(c->nservices > 0 ? c->nservices : 1, sizeof(*all));
    unsigned i;
    int rc;

    for (i = 0; i < c->nservices; i++) {
        struct px_tls_keys *keys = prev != NULL && prev[i] != NULL ? prev[i]->keys : NULL;

        if (c->services[i].tls == NULL)
            continue;
        rc = ctx_build(c, i, keys, check_only, &all[i], err, errlen);
        if (rc < 0) {
            px_tls_free_all(all, c->nservices);
            return -1;
        }
    }
    *out = all;
    return 0;
}

void
px_tls_free_all(struct px_tls_ctx **all, unsigned n)
{
    unsigned i;

    if (all == NULL)
        return;
    for (i = 0; i < n; i++)
        px_tls_ctx_put(all[i]);
    free(all);
}

/* ---- handshakes ------------------------------------------------------- */

SSL *
px_tls_ssl_new(struct px_tls_ctx *t, int fd)
{
    SSL *s = SSL_new(t->certs[0].ctx);

    if (s == NULL)
        return NULL;
    if (SSL_set_fd(s, fd) != 1) {
        SSL_free(s);
        ERR_clear_error();
        return NULL;
    }
    SSL_set_accept_state(s);
    return s;
}

/* A verification failure: is it the CA (unknown, or a chain that does not
 * reach one we trust)? */
static bool
verify_unknown_ca(long v)
{
    return v == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT ||
           v == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
           v == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN ||
           v == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT ||
           v == X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE;
}

enum px_tls_result
px_tls_classify(SSL *ssl, int ret, int ssl_error, char *why, size_t whylen)
{
    unsigned long e = ERR_peek_error();
    int reason = ERR_GET_REASON(e);
    enum px_tls_result r = PX_TLS_OTHER;
    long v;

    (void)ret;
    if (e == 0) {
        snprintf(why, whylen, "%s", ssl_error == SSL_ERROR_SYSCALL ? "connection closed or "
                 "reset during the handshake" : "handshake failed");
        return PX_TLS_OTHER;
    }
    switch (reason) {
    case SSL_R_NO_SHARED_CIPHER:
    case SSL_R_NO_SHARED_GROUPS:
    case SSL_R_NO_SHARED_SIGNATURE_ALGORITHMS:
    case SSL_R_NO_SUITABLE_SIGNATURE_ALGORITHM:
    case SSL_R_NO_CIPHERS_AVAILABLE:
        r = PX_TLS_NO_SHARED_CIPHER;
        break;
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_VERSION_TOO_LOW:
    case SSL_R_VERSION_TOO_HIGH:
    case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
    case SSL_R_UNSUPPORTED_SSL_VERSION:
    case SSL_R_NO_PROTOCOLS_AVAILABLE:
        r = PX_TLS_VERSION;
        break;
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
        r = PX_TLS_UNKNOWN_CA;
        break;
    case SSL_R_CERTIFICATE_VERIFY_FAILED:
        v = SSL_get_verify_result(ssl);
        r = verify_unknown_ca(v) ? PX_TLS_UNKNOWN_CA : PX_TLS_BAD_CERT;
        snprintf(why, whylen, "client certificate: %s", X509_verify_cert_error_string(v));
        ERR_clear_error();
        return r;
    case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
    case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
        r = PX_TLS_BAD_CERT;
        break;
    default:
        break;
    }
    snprintf(why, whylen, "%s", ERR_reason_error_string(e) != NULL
                                ? ERR_reason_error_string(e) : "handshake failed");
    ERR_clear_error();
    return r;
}

/* ---- connections ------------------------------------------------------ */

const char *
px_tls_peer(struct bufferevent *bev, char *subj, size_t len)
{
    SSL *s = bufferevent_openssl_get_ssl(bev);
    X509 *x;

    subj[0] = '\0';
    if (s == NULL)
        return NULL;
    if ((x = SSL_get0_peer_certificate(s)) != NULL)
        X509_NAME_oneline(X509_get_subject_name(x), subj, (int)len);
    return SSL_get_servername(s, TLSEXT_NAMETYPE_host_name);
}

void
px_tls_close_notify(struct bufferevent *bev)
{
    SSL *s = bufferevent_openssl_get_ssl(bev);

    if (s == NULL || (SSL_get_shutdown(s) & SSL_SENT_SHUTDOWN) ||
        evbuffer_get_length(bufferevent_get_output(bev)) != 0)
        return;
    (void)SSL_shutdown(s);             /* one non-blocking write of the alert */
    ERR_clear_error();
}

/* The input of a TLS bufferevent was drained: what OpenSSL holds already
 * decrypted (libevent stopped at the high watermark) is read now; the
 * socket may have nothing more to wake the read event. */
static void
on_input_drained(struct evbuffer *in, const struct evbuffer_cb_info *info, void *arg)
{
    struct bufferevent *bev = arg;
    SSL *s;

    (void)in;
    if (info->n_deleted == 0 || !(bev->enabled & EV_READ))
        return;
    s = bufferevent_openssl_get_ssl(bev);
    if (s != NULL && SSL_pending(s) > 0)
        event_active(&bev->ev_read, EV_READ, 1);
}

void
px_tls_bev_watch(struct bufferevent *bev)
{
    evbuffer_add_cb(bufferevent_get_input(bev), on_input_drained, bev);
}

/* ---- status ----------------------------------------------------------- */

void
px_tls_status(const struct px_tls_ctx *t, const struct px_tls_conf *tc, json_t *obj)
{
    json_t *o = json_object(), *certs = json_array(), *alpn = json_array();
    int64_t now = (int64_t)time(NULL);
    char when[32];
    unsigned i, k;

    for (i = 0; i < t->ncerts; i++) {
        const struct px_tls_cert_info *ci = &t->certs[i].info;
        json_t *c = json_object(), *names = json_array();

        for (k = 0; k < ci->nnames; k++)
            json_array_append_new(names, json_string(ci->names[k]));
        json_object_set_new(c, "file", json_string(ci->file));
        json_object_set_new(c, "subject", json_string(ci->subject));
        json_object_set_new(c, "names", names);
        iso_time(ci->not_before, when, sizeof(when));
        json_object_set_new(c, "not_before", json_string(when));
        iso_time(ci->not_after, when, sizeof(when));
        json_object_set_new(c, "not_after", json_string(when));
        json_object_set_new(c, "expires_in_days",
                            json_integer((json_int_t)((ci->not_after - now) / 86400)));
        json_object_set_new(c, "key", json_string(ci->key_type));
        json_array_append_new(certs, c);
    }
    for (i = 0; i < tc->nalpn; i++)
        json_array_append_new(alpn, json_string(tc->alpn[i]));
    iso_time(t->loaded_s, when, sizeof(when));
    json_object_set_new(o, "certs", certs);
    json_object_set_new(o, "loaded", json_string(when));
    json_object_set_new(o, "alpn", alpn);
    json_object_set_new(o, "min_version", json_string(tc->min_version == 13 ? "1.3" : "1.2"));
    json_object_set_new(o, "client_verify", json_string(px_tls_verify_names[tc->client_verify]));
    json_object_set_new(o, "session_tickets", json_boolean(tc->session_tickets));
    json_object_set_new(obj, "tls", o);
}
