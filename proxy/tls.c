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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "lib/log.h"
#include "lib/xmalloc.h"
#include "proxy/conf.h"
#include "proxy/io.h"
#include "proxy/tls_cert.h"
#include "proxy/tls_conf.h"
#include "proxy/tls_io.h"

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
    unsigned i;

    for (i = 0; i < t->ncerts; i++) {
        SSL_CTX_free(t->certs[i].ctx); /* a handshake's SSL keeps its own reference */
        px_tls_cert_info_free(&t->certs[i].info);
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

/* The settings every context of <tc> shares. 0, or -1 with the message. */
static int
ctx_setup(SSL_CTX *ctx, struct px_tls_ctx *t, const struct px_tls_conf *tc,
          const char *svc_name, bool check_only, const struct px_tls_place *pl)
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
                             (tc->session_tickets ? 0 : SSL_OP_NO_TICKET) |
                             (px_tls_io_ktls() ? SSL_OP_ENABLE_KTLS : 0));
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);   /* an idle connection holds
                                                        * no record buffers */
    if (SSL_CTX_set_cipher_list(ctx, tc->ciphers != NULL ? tc->ciphers
                                                         : PX_TLS_CIPHERS_DEFAULT) != 1)
        return px_tls_fail_at(pl, "ciphers", "no usable cipher in \"%s\" (%s)",
                       tc->ciphers != NULL ? tc->ciphers : PX_TLS_CIPHERS_DEFAULT,
                       px_tls_ssl_reason(why, sizeof(why)));
    if (SSL_CTX_set_ciphersuites(ctx, tc->ciphersuites != NULL ? tc->ciphersuites
                                                               : PX_TLS_SUITES_DEFAULT) != 1)
        return px_tls_fail_at(pl, "ciphersuites", "no usable TLS 1.3 suite in \"%s\" (%s)",
                       tc->ciphersuites != NULL ? tc->ciphersuites : PX_TLS_SUITES_DEFAULT,
                       px_tls_ssl_reason(why, sizeof(why)));
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
            return px_tls_fail_at(pl, "certs", "cannot set the session id context (%s)",
                           px_tls_ssl_reason(why, sizeof(why)));
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
                if (ctx == t->certs[0].ctx)    /* said once, not per certificate */
                    log_at(LL_WARN, "tls", 0, "%s: services[%u].tls.client_ca: %s does "
                           "not exist (yet): cutoverd will not start without it",
                           pl->conf_file, pl->svc, tc->client_ca);
                ERR_clear_error();
                return 1;
            }
            return px_tls_fail_at(pl, "client_ca", "%s: cannot load: %s", tc->client_ca,
                           access(tc->client_ca, R_OK) != 0 ? strerror(errno)
                                                            : px_tls_ssl_reason(why, sizeof(why)));
        }
        names = SSL_load_client_CA_file(tc->client_ca);
        if (names == NULL)
            return px_tls_fail_at(pl, "client_ca", "%s: no CA certificate in it (%s)", tc->client_ca,
                           px_tls_ssl_reason(why, sizeof(why)));
        SSL_CTX_set_client_CA_list(ctx, names);
    }
    mode = tc->client_verify == PX_TLS_VERIFY_REQUIRED
           ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT
           : tc->client_verify == PX_TLS_VERIFY_OPTIONAL ? SSL_VERIFY_PEER : SSL_VERIFY_NONE;
    SSL_CTX_set_verify(ctx, mode, NULL);
    return 0;
}

/* The first certificate before <k> of <t> with exactly <k>'s names and
 * another kind of key (the first word of key_type), alone in its context;
 * -1 when there is none. */
static int
dual_of(const struct px_tls_ctx *t, unsigned k)
{
    const struct px_tls_cert_info *b = &t->certs[k].info;
    size_t kl = strcspn(b->key_type, " ");
    unsigned j, x, y;

    for (j = 0; j < k; j++) {
        const struct px_tls_cert_info *a = &t->certs[j].info;
        bool shared = false;

        for (x = 0; x < j; x++)
            shared |= t->certs[x].ctx == t->certs[j].ctx;
        for (x = j + 1; x < k; x++)
            shared |= t->certs[x].ctx == t->certs[j].ctx;
        if (shared || a->nnames != b->nnames ||
            (strcspn(a->key_type, " ") == kl && strncmp(a->key_type, b->key_type, kl) == 0))
            continue;
        for (x = 0; x < b->nnames; x++) {
            for (y = 0; y < a->nnames && strcmp(a->names[y], b->names[x]) != 0; y++)
                ;
            if (y == a->nnames)
                break;
        }
        if (x == b->nnames)
            return (int)j;
    }
    return -1;
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
    struct px_tls_place pl = { c->file, i, err, errlen };
    struct px_tls_ctx *t = xcalloc(1, sizeof(*t));
    unsigned k, a;
    int rc = 0, j;
    bool missing = false;

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
            rc = px_tls_fail_at(&pl, "session_tickets", "cannot make a ticket key: %s",
                         px_tls_ssl_reason((char[256]){ 0 }, 256));
            goto fail;
        }
    }
    for (k = 0; k < tc->ncerts; k++) {
        SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

        if (ctx == NULL) {
            rc = px_tls_fail_at(&pl, "certs", "cannot create a TLS context: %s",
                         px_tls_ssl_reason((char[256]){ 0 }, 256));
            goto fail;
        }
        t->certs[k].ctx = ctx;
        t->ncerts = k + 1;
        if ((rc = ctx_setup(ctx, t, tc, sc->name, check_only, &pl)) < 0)
            goto fail;
        missing |= rc > 0;
        if ((rc = px_tls_cert_load(ctx, tc, k, &t->certs[k].info, check_only, &pl)) < 0)
            goto fail;
        if (rc > 0 || missing) {
            missing = true;            /* -t: said so; the other files are checked */
            continue;
        }
        if ((j = dual_of(t, k)) >= 0) {
            /* the same names with another kind of key (ECDSA beside RSA):
             * both in one context, and OpenSSL gives each client the one
             * its signature algorithms take */
            struct px_tls_cert_info scratch;

            memset(&scratch, 0, sizeof(scratch));
            rc = px_tls_cert_load(t->certs[j].ctx, tc, k, &scratch, check_only, &pl);
            px_tls_cert_info_free(&scratch);
            if (rc != 0)
                goto fail;
            SSL_CTX_free(ctx);
            SSL_CTX_up_ref(t->certs[j].ctx);
            t->certs[k].ctx = t->certs[j].ctx;
        }
        tables_add(t, k);
    }
    if (missing) {
        ctx_free(t);                   /* -t: nothing is built with a file missing */
        return 1;
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
        if (!check_only)
            px_tls_io_ktls_log();
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
    return px_tls_io_peer(px_io_tls(bev), subj, len);
}

void
px_tls_close_notify(struct bufferevent *bev)
{
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        px_tls_io_close_notify(px_io_tls(bev));
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
        px_tls_iso_time(ci->not_before, when, sizeof(when));
        json_object_set_new(c, "not_before", json_string(when));
        px_tls_iso_time(ci->not_after, when, sizeof(when));
        json_object_set_new(c, "not_after", json_string(when));
        json_object_set_new(c, "expires_in_days",
                            json_integer((json_int_t)((ci->not_after - now) / 86400)));
        json_object_set_new(c, "key", json_string(ci->key_type));
        json_array_append_new(certs, c);
    }
    for (i = 0; i < tc->nalpn; i++)
        json_array_append_new(alpn, json_string(tc->alpn[i]));
    px_tls_iso_time(t->loaded_s, when, sizeof(when));
    json_object_set_new(o, "certs", certs);
    json_object_set_new(o, "loaded", json_string(when));
    json_object_set_new(o, "alpn", alpn);
    json_object_set_new(o, "min_version", json_string(tc->min_version == 13 ? "1.3" : "1.2"));
    json_object_set_new(o, "client_verify", json_string(px_tls_verify_names[tc->client_verify]));
    json_object_set_new(o, "session_tickets", json_boolean(tc->session_tickets));
    json_object_set_new(o, "kernel_tls", json_string(px_tls_io_ktls() ? "in use"
                                                                      : "not available"));
    if (!px_tls_io_ktls())
        json_object_set_new(o, "kernel_tls_why", json_string(px_tls_io_ktls_why()));
    json_object_set_new(obj, "tls", o);
}
