/*
 * proxy/cookie: see cookie.h. The key file, the MAC tables and the
 * cookie's text.
 *
 * Workload: a table is computed when a configuration generation is built
 * (startup, SIGHUP), 10,000 HMACs per key (a few milliseconds); the request
 * path only looks up (px_cookie_verify, px_cookie_sign).
 */
#include "proxy/cookie.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/params.h>

#include "lib/fs.h"
#include "lib/log.h"
#include "lib/text.h"
#include "lib/xmalloc.h"
#include "router/router.h"

#define KEY_FILE_MAX 4096u         /* a larger key file is not one */
#define MSG_LABEL    "cutover-sticky-v1"
#define MSG_LEN      (sizeof(MSG_LABEL) - 1 + 8 + 2)

struct px_cookie_tab {
    unsigned refs;                 /* atomic: the sets of several generations */
    uint64_t seed;
    unsigned nkeys;
    unsigned char mac[2][RT_BP_MAX][PX_COOKIE_MAC_LEN];
};

struct px_cookie_set {
    struct px_cookie_keys keys;
    unsigned n;                    /* services of the generation */
    struct px_cookie_tab **tab;    /* owned: one reference each; NULL entries for
                                    * services that are not sticky by cookie */
};

/* ---- the key file ------------------------------------------------------- */

static int __attribute__((format(printf, 5, 6)))
line_fail(char *err, size_t errlen, const char *file, unsigned line, const char *fmt, ...)
{
    char msg[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (line > 0)
        return text_errf(err, errlen, "%s:%u: %s", file, line, msg);
    return text_errf(err, errlen, "%s: %s", file, msg);
}

static bool
is_blank(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r';
}

/* 64 hex digits at <p> (exactly <n> bytes) into <key>. 0 or -1. */
static int
parse_hex_key(const char *p, size_t n, unsigned char key[PX_COOKIE_KEY_LEN])
{
    size_t i;

    if (n != 2 * PX_COOKIE_KEY_LEN)
        return -1;
    for (i = 0; i < PX_COOKIE_KEY_LEN; i++) {
        int hi = text_hex_value(p[2 * i]), lo = text_hex_value(p[2 * i + 1]);

        if (hi < 0 || lo < 0)
            return -1;
        key[i] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}

int
px_cookie_keys_parse(const char *text, size_t len, const char *file,
                     struct px_cookie_keys *out, char *err, size_t errlen)
{
    struct px_cookie_keys k;
    const char *p = text, *end = text + len, *eol, *w, *we, *v, *ve;
    bool have[2] = { false, false };
    unsigned line = 0, which;

    memset(&k, 0, sizeof(k));
    while (p < end) {
        eol = memchr(p, '\n', (size_t)(end - p));
        if (eol == NULL)
            eol = end;
        line++;
        for (w = p; w < eol && is_blank(*w); w++)
            ;
        if (w == eol || *w == '#') {
            p = eol + (eol < end);
            continue;
        }
        for (we = w; we < eol && !is_blank(*we); we++)
            ;
        for (v = we; v < eol && is_blank(*v); v++)
            ;
        for (ve = v; ve < eol && !is_blank(*ve); ve++)
            ;
        if ((size_t)(we - w) == 7 && memcmp(w, "current", 7) == 0) {
            which = 0;
        } else if ((size_t)(we - w) == 8 && memcmp(w, "previous", 8) == 0) {
            which = 1;
        } else {
            explicit_bzero(&k, sizeof(k));
            return line_fail(err, errlen, file, line, "expected \"current HEX\" or "
                             "\"previous HEX\"");
        }
        if (have[which]) {
            explicit_bzero(&k, sizeof(k));
            return line_fail(err, errlen, file, line, "a second \"%s\" key",
                             which == 0 ? "current" : "previous");
        }
        for (w = ve; w < eol && is_blank(*w); w++)
            ;
        if (v == ve || w != eol || parse_hex_key(v, (size_t)(ve - v), k.key[which]) != 0) {
            explicit_bzero(&k, sizeof(k));
            return line_fail(err, errlen, file, line, "the key must be %u hexadecimal "
                             "digits, alone after the word", 2 * PX_COOKIE_KEY_LEN);
        }
        have[which] = true;
        p = eol + (eol < end);
    }
    if (!have[0]) {
        explicit_bzero(&k, sizeof(k));
        return line_fail(err, errlen, file, 0, "no \"current\" key");
    }
    k.n = have[1] ? 2 : 1;
    *out = k;
    explicit_bzero(&k, sizeof(k));
    return 0;
}

/* Writes a new key file at <file> with a random current key, unless one
 * appears there first. 0, or -1 with <err>. */
static int
keys_create(const char *file, char *err, size_t errlen)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char key[PX_COOKIE_KEY_LEN];
    char text[512], tmp[4096];
    size_t n = 0, off = 0, i;
    ssize_t w;
    int fd, dfd, rc = -1;
    char *dir;

    while (n < sizeof(key)) {
        ssize_t got = getrandom(key + n, sizeof(key) - n, 0);

        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return text_errf(err, errlen, "%s: no random bytes for a new key: %s", file,
                             strerror(errno));
        n += (size_t)got;
    }
    n = (size_t)snprintf(text, sizeof(text),
                         "# cutover: keys of the sticky cookie (HMAC-SHA256). Keep it "
                         "private (mode 0600).\n"
                         "# \"current\" signs and verifies; \"previous\" (optional) only "
                         "verifies, and a cookie\n"
                         "# it verifies is signed again with \"current\". To rotate: "
                         "rename current to\n"
                         "# previous, add a new current line (openssl rand -hex 32), "
                         "then SIGHUP.\n"
                         "current ");
    for (i = 0; i < sizeof(key); i++) {
        text[n++] = hex[key[i] >> 4];
        text[n++] = hex[key[i] & 15];
    }
    text[n++] = '\n';
    explicit_bzero(key, sizeof(key));

    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", file, (long)getpid())
        >= sizeof(tmp)) {
        explicit_bzero(text, sizeof(text));
        return text_errf(err, errlen, "%s: path too long", file);
    }
    unlink(tmp);                   /* a leftover of an earlier run of this pid */
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        text_errf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
        explicit_bzero(text, sizeof(text));
        return -1;
    }
    while (off < n) {
        w = write(fd, text + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            text_errf(err, errlen, "cannot write %s: %s", tmp,
                      w < 0 ? strerror(errno) : "nothing written");
            goto out;
        }
        off += (size_t)w;
    }
    if (fchmod(fd, 0600) != 0 || fsync(fd) != 0) {
        text_errf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
        goto out;
    }
    /* link(), not rename(): it fails when the file appeared meanwhile, so a
     * key in use is never replaced */
    if (link(tmp, file) != 0 && errno != EEXIST) {
        text_errf(err, errlen, "cannot create %s: %s", file, strerror(errno));
        goto out;
    }
    dir = fs_dir_of(file);
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    free(dir);
    rc = 0;
out:
    close(fd);
    unlink(tmp);
    explicit_bzero(text, sizeof(text));
    return rc;
}

int
px_cookie_keys_load(const char *file, bool create, struct px_cookie_keys *out,
                    bool *created, char *err, size_t errlen)
{
    char *text = NULL;
    size_t len = 0;
    int rc;

    *created = false;
    if (fs_read_private(file, KEY_FILE_MAX, &text, &len, err, errlen) != 0) {
        if (errno != ENOENT || !create)
            return -1;
        if (keys_create(file, err, errlen) != 0)
            return -1;
        *created = true;
        if (fs_read_private(file, KEY_FILE_MAX, &text, &len, err, errlen) != 0)
            return -1;
    }
    rc = px_cookie_keys_parse(text, len, file, out, err, errlen);
    explicit_bzero(text, len);
    free(text);
    if (rc != 0)
        errno = EINVAL;            /* there, but not valid */
    return rc;
}

/* ---- MACs ------------------------------------------------------------- */

static void
mac_message(uint64_t seed, uint32_t bucket, unsigned char msg[MSG_LEN])
{
    size_t i, l = sizeof(MSG_LABEL) - 1;

    memcpy(msg, MSG_LABEL, l);
    for (i = 0; i < 8; i++)
        msg[l + i] = (unsigned char)(seed >> (56 - 8 * i));
    msg[l + 8] = (unsigned char)(bucket >> 8);
    msg[l + 9] = (unsigned char)bucket;
}

int
px_cookie_mac(const unsigned char key[PX_COOKIE_KEY_LEN], uint64_t seed, uint32_t bucket,
              unsigned char out[PX_COOKIE_MAC_LEN])
{
    unsigned char msg[MSG_LEN], md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    mac_message(seed, bucket, msg);
    if (HMAC(EVP_sha256(), key, (int)PX_COOKIE_KEY_LEN, msg, sizeof(msg), md, &mdlen) == NULL
        || mdlen < PX_COOKIE_MAC_LEN)
        return -1;
    memcpy(out, md, PX_COOKIE_MAC_LEN);
    return 0;
}

/* Fills tab->mac[k] for every bucket under <key>. 0 or -1. */
static int
tab_fill(struct px_cookie_tab *t, unsigned k, const unsigned char key[PX_COOKIE_KEY_LEN])
{
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    unsigned char msg[MSG_LEN], md[EVP_MAX_MD_SIZE];
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = mac != NULL ? EVP_MAC_CTX_new(mac) : NULL;
    size_t mdlen;
    uint32_t b;
    int rc = -1;

    if (ctx == NULL || EVP_MAC_init(ctx, key, PX_COOKIE_KEY_LEN, params) != 1)
        goto out;
    for (b = 0; b < RT_BP_MAX; b++) {
        mac_message(t->seed, b, msg);
        if ((b > 0 && EVP_MAC_init(ctx, NULL, 0, NULL) != 1) ||
            EVP_MAC_update(ctx, msg, sizeof(msg)) != 1 ||
            EVP_MAC_final(ctx, md, &mdlen, sizeof(md)) != 1 || mdlen < PX_COOKIE_MAC_LEN)
            goto out;
        memcpy(t->mac[k][b], md, PX_COOKIE_MAC_LEN);
    }
    rc = 0;
out:
    explicit_bzero(md, sizeof(md));
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
    return rc;
}

struct px_cookie_tab *
px_cookie_tab_new(const struct px_cookie_keys *keys, uint64_t seed)
{
    struct px_cookie_tab *t = xcalloc(1, sizeof(*t));
    unsigned k;

    t->refs = 1;
    t->seed = seed;
    t->nkeys = keys->n;
    for (k = 0; k < keys->n; k++) {
        if (tab_fill(t, k, keys->key[k]) != 0) {
            free(t);
            return NULL;
        }
    }
    return t;
}

static struct px_cookie_tab *
tab_get(struct px_cookie_tab *t)
{
    __atomic_add_fetch(&t->refs, 1, __ATOMIC_RELAXED);
    return t;
}

void
px_cookie_tab_put(struct px_cookie_tab *t)
{
    if (t == NULL || __atomic_sub_fetch(&t->refs, 1, __ATOMIC_ACQ_REL) > 0)
        return;
    explicit_bzero(t->mac, sizeof(t->mac));   /* as good as the keys to a forger */
    free(t);
}

/* ---- the cookie's text ------------------------------------------------ */

static const char b64url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* The value of base64url character <ch>, or -1. */
static int
b64url_value(unsigned char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    if (ch == '-')
        return 62;
    if (ch == '_')
        return 63;
    return -1;
}

/* 16 characters of base64url into 12 bytes (every 96 bits used: no
 * padding, no spare bits to be lax about). 0 or -1. */
static int
mac_decode(const char *p, unsigned char out[PX_COOKIE_MAC_LEN])
{
    unsigned g, i;

    for (g = 0; g < PX_COOKIE_MAC_TEXT / 4; g++) {
        uint32_t v = 0;

        for (i = 0; i < 4; i++) {
            int d = b64url_value((unsigned char)p[4 * g + i]);

            if (d < 0)
                return -1;
            v = v << 6 | (uint32_t)d;
        }
        out[3 * g] = (unsigned char)(v >> 16);
        out[3 * g + 1] = (unsigned char)(v >> 8);
        out[3 * g + 2] = (unsigned char)v;
    }
    return 0;
}

static void
mac_encode(const unsigned char in[PX_COOKIE_MAC_LEN], char *p)
{
    unsigned g;

    for (g = 0; g < PX_COOKIE_MAC_LEN / 3; g++) {
        uint32_t v = (uint32_t)in[3 * g] << 16 | (uint32_t)in[3 * g + 1] << 8 |
                     in[3 * g + 2];

        p[4 * g] = b64url[v >> 18];
        p[4 * g + 1] = b64url[(v >> 12) & 63];
        p[4 * g + 2] = b64url[(v >> 6) & 63];
        p[4 * g + 3] = b64url[v & 63];
    }
}

enum px_cookie_check
px_cookie_verify(const struct px_cookie_tab *t, const char *val, size_t len,
                 uint32_t *bucket)
{
    const char *dot;
    unsigned char mac[PX_COOKIE_MAC_LEN];
    uint32_t b;

    if (t == NULL || val == NULL || len > PX_COOKIE_VALUE_MAX)
        return PX_COOKIE_BAD;
    dot = memchr(val, '.', len);
    if (dot == NULL || rt_bucket_parse(val, (size_t)(dot - val), &b) != 0 ||
        len - (size_t)(dot + 1 - val) != PX_COOKIE_MAC_TEXT || mac_decode(dot + 1, mac) != 0)
        return PX_COOKIE_BAD;
    if (CRYPTO_memcmp(t->mac[0][b], mac, PX_COOKIE_MAC_LEN) == 0) {
        *bucket = b;
        return PX_COOKIE_OK;
    }
    if (t->nkeys > 1 && CRYPTO_memcmp(t->mac[1][b], mac, PX_COOKIE_MAC_LEN) == 0) {
        *bucket = b;
        return PX_COOKIE_PREVIOUS;
    }
    return PX_COOKIE_BAD;
}

size_t
px_cookie_sign(const struct px_cookie_tab *t, uint32_t bucket, char out[PX_COOKIE_VALUE_MAX])
{
    int n;

    out[0] = '\0';
    if (t == NULL || bucket >= RT_BP_MAX)
        return 0;
    n = snprintf(out, PX_COOKIE_VALUE_MAX, "%u.", (unsigned)bucket);
    mac_encode(t->mac[0][bucket], out + n);
    out[n + PX_COOKIE_MAC_TEXT] = '\0';
    return (size_t)n + PX_COOKIE_MAC_TEXT;
}

/* ---- the set of a generation ------------------------------------------- */

static bool
keys_equal(const struct px_cookie_keys *a, const struct px_cookie_keys *b)
{
    return a->n == b->n &&
           CRYPTO_memcmp(a->key, b->key, a->n * (size_t)PX_COOKIE_KEY_LEN) == 0;
}

/* A table of <seed> among the first <n> entries of <tabs>, or NULL. */
static struct px_cookie_tab *
tab_find(struct px_cookie_tab *const *tabs, unsigned n, uint64_t seed)
{
    unsigned i;

    for (i = 0; i < n; i++)
        if (tabs[i] != NULL && tabs[i]->seed == seed)
            return tabs[i];
    return NULL;
}

int
px_cookie_set_build(const struct px_conf *conf, const char *key_file, bool create,
                    const struct px_cookie_set *old, struct px_cookie_set **out,
                    char *err, size_t errlen)
{
    struct px_cookie_set *s;
    struct px_cookie_tab *t;
    bool created, reuse;
    unsigned i;

    *out = NULL;
    for (i = 0; i < conf->nservices; i++)
        if (conf->services[i].route.sticky_by == RT_STICKY_COOKIE)
            break;
    if (i == conf->nservices)
        return 0;
    s = xcalloc(1, sizeof(*s));
    if (px_cookie_keys_load(key_file, create, &s->keys, &created, err, errlen) != 0) {
        int e = errno;

        free(s);
        errno = e;                 /* ENOENT: missing (and not created) */
        return -1;
    }
    if (created)
        log_at(LL_INFO, "cookie", 0, "sticky-cookie key file %s created with a new random "
               "key (cookies signed by any other key are issued anew)", key_file);
    reuse = old != NULL && keys_equal(&old->keys, &s->keys);
    s->n = conf->nservices;
    s->tab = xcalloc(s->n, sizeof(*s->tab));
    for (i = 0; i < s->n; i++) {
        const struct rt_conf *rc = &conf->services[i].route;

        if (rc->sticky_by != RT_STICKY_COOKIE)
            continue;
        if ((t = tab_find(s->tab, i, rc->seed)) == NULL && reuse)
            t = tab_find(old->tab, old->n, rc->seed);
        if (t != NULL) {
            s->tab[i] = tab_get(t);
            continue;
        }
        if ((s->tab[i] = px_cookie_tab_new(&s->keys, rc->seed)) == NULL) {
            px_cookie_set_free(s);
            return text_errf(err, errlen, "%s: cannot compute the cookie MACs of service "
                             "%s (OpenSSL HMAC failed)", key_file, conf->services[i].name);
        }
    }
    *out = s;
    return 0;
}

const struct px_cookie_tab *
px_cookie_set_tab(const struct px_cookie_set *s, unsigned idx)
{
    return s != NULL && idx < s->n ? s->tab[idx] : NULL;
}

void
px_cookie_set_free(struct px_cookie_set *s)
{
    unsigned i;

    if (s == NULL)
        return;
    for (i = 0; i < s->n; i++)
        px_cookie_tab_put(s->tab[i]);
    free(s->tab);
    explicit_bzero(&s->keys, sizeof(s->keys));
    free(s);
}
