/*
 * tokens: see tokens.h. The file is parsed line by line into SHA-256
 * digests; the plain secrets never outlive the parse (the buffer that held
 * the file is wiped before it is freed). A check hashes the presented token
 * once and compares it with every digest, whatever matched before, so the
 * time taken does not tell which entry (or how much of one) matched.
 *
 * Workload: a handful of tokens, a check per admin HTTP request.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "lib/text.h"
#include "admin/tokens.h"
#include "lib/xmalloc.h"

#define DIGEST_LEN 32u

const char *const adm_level_names[ADM_LEVEL__COUNT] = { "read", "operate", "admin" };

struct adm_token {
    char name[ADM_TOKEN_NAME_MAX + 1];
    enum adm_level level;
    unsigned char digest[DIGEST_LEN];    /* SHA-256 of the secret */
    unsigned line;                       /* where it was defined, for messages */
};

struct adm_tokens {
    struct adm_token *v;                 /* owned, <n> entries */
    unsigned n;
};

int
adm_level_from_name(const char *name)
{
    int i;

    for (i = 0; i < ADM_LEVEL__COUNT; i++) {
        if (strcmp(name, adm_level_names[i]) == 0)
            return i;
    }
    return -1;
}

static int
sha256(const void *data, size_t len, unsigned char out[DIGEST_LEN])
{
    unsigned int olen = 0;

    if (EVP_Digest(data, len, out, &olen, EVP_sha256(), NULL) != 1 || olen != DIGEST_LEN)
        return -1;
    return 0;
}

static int __attribute__((format(printf, 5, 6)))
line_fail(char *err, size_t errlen, const char *file, unsigned line, const char *fmt, ...)
{
    va_list ap;
    int k;

    if (err == NULL || errlen == 0)
        return -1;
    k = snprintf(err, errlen, "%s:%u: ", file, line);
    if (k < 0 || (size_t)k >= errlen)
        return -1;
    va_start(ap, fmt);
    vsnprintf(err + k, errlen - (size_t)k, fmt, ap);
    va_end(ap);
    return -1;
}

static bool
is_name_char(char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9')
           || ch == '_' || ch == '.' || ch == '-';
}

static bool
is_blank(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r';
}

/* Splits line <p>..<end> into at most 4 blank-separated fields. Returns the
 * number of fields found (4 means "more than three"). */
static unsigned
split(const char *p, const char *end, const char *f[4], size_t flen[4])
{
    unsigned n = 0;

    while (p < end && n < 4) {
        while (p < end && is_blank(*p))
            p++;
        if (p == end)
            break;
        f[n] = p;
        while (p < end && !is_blank(*p))
            p++;
        flen[n] = (size_t)(p - f[n]);
        n++;
    }
    return n;
}

/* Parses one non-comment line into <t>. Returns 0 or -1 with <err> set. */
static int
parse_line(const char *p, const char *end, const char *file, unsigned line,
           struct adm_token *t, char *err, size_t errlen)
{
    static const char pfx[] = "sha256:";
    const char *f[4];
    size_t flen[4], i;
    char level[16];
    unsigned nf = split(p, end, f, flen);
    int lv, hi, lo;

    if (nf != 3)
        return line_fail(err, errlen, file, line, "expected NAME LEVEL SECRET, got %u "
                         "field%s", nf > 3 ? 4 : nf, nf == 1 ? "" : "s");
    if (flen[0] > ADM_TOKEN_NAME_MAX)
        return line_fail(err, errlen, file, line, "token name is %zu bytes long, at "
                         "most %u", flen[0], ADM_TOKEN_NAME_MAX);
    for (i = 0; i < flen[0]; i++) {
        if (!is_name_char(f[0][i]))
            return line_fail(err, errlen, file, line, "token name may hold only "
                             "A-Z a-z 0-9 _ . - (byte %zu is not one)", i + 1);
    }
    memcpy(t->name, f[0], flen[0]);
    t->name[flen[0]] = '\0';
    t->line = line;

    lv = -1;
    if (flen[1] < sizeof(level)) {
        memcpy(level, f[1], flen[1]);
        level[flen[1]] = '\0';
        lv = adm_level_from_name(level);
    }
    if (lv < 0)
        return line_fail(err, errlen, file, line, "token %s: level must be read, "
                         "operate or admin", t->name);
    t->level = (enum adm_level)lv;

    /* Messages about the secret never quote it. */
    for (i = 0; i < flen[2]; i++) {
        unsigned char ch = (unsigned char)f[2][i];

        if (ch < 0x21 || ch > 0x7e)
            return line_fail(err, errlen, file, line, "token %s: the secret may hold "
                             "only printable ASCII without spaces", t->name);
    }
    if (flen[2] > sizeof(pfx) - 1 && memcmp(f[2], pfx, sizeof(pfx) - 1) == 0) {
        const char *h = f[2] + sizeof(pfx) - 1;

        if (flen[2] - (sizeof(pfx) - 1) != 2 * DIGEST_LEN)
            return line_fail(err, errlen, file, line, "token %s: sha256: must be "
                             "followed by 64 hex digits", t->name);
        for (i = 0; i < DIGEST_LEN; i++) {
            hi = text_hex_value(h[2 * i]);
            lo = text_hex_value(h[2 * i + 1]);
            if (hi < 0 || lo < 0)
                return line_fail(err, errlen, file, line, "token %s: sha256: must be "
                                 "followed by 64 hex digits", t->name);
            t->digest[i] = (unsigned char)(hi << 4 | lo);
        }
        return 0;
    }
    if (flen[2] < ADM_TOKEN_SECRET_MIN)
        return line_fail(err, errlen, file, line, "token %s: the secret is %zu bytes "
                         "long, at least %u (or give sha256:<64 hex>)", t->name, flen[2],
                         ADM_TOKEN_SECRET_MIN);
    if (flen[2] > ADM_TOKEN_SECRET_MAX)
        return line_fail(err, errlen, file, line, "token %s: the secret is %zu bytes "
                         "long, at most %u", t->name, flen[2], ADM_TOKEN_SECRET_MAX);
    if (sha256(f[2], flen[2], t->digest) != 0)
        return line_fail(err, errlen, file, line, "token %s: cannot hash the secret",
                         t->name);
    return 0;
}

struct adm_tokens *
adm_tokens_parse(const char *text, size_t len, const char *file, char *err,
                 size_t errlen)
{
    struct adm_tokens *ts = xcalloc(1, sizeof(*ts));
    const char *p = text, *end = text + len, *eol, *q;
    unsigned line = 0, cap = 0, i;
    struct adm_token t;

    if (errlen > 0)
        err[0] = '\0';
    while (p < end) {
        line++;
        eol = memchr(p, '\n', (size_t)(end - p));
        if (eol == NULL)
            eol = end;
        if (memchr(p, '\0', (size_t)(eol - p)) != NULL) {
            line_fail(err, errlen, file, line, "NUL byte in the line");
            goto fail;
        }
        for (q = p; q < eol && is_blank(*q); q++)
            ;
        if (q == eol || *q == '#') {
            p = eol < end ? eol + 1 : end;
            continue;
        }
        memset(&t, 0, sizeof(t));
        if (parse_line(q, eol, file, line, &t, err, errlen) != 0)
            goto fail;
        for (i = 0; i < ts->n; i++) {
            if (strcmp(ts->v[i].name, t.name) == 0) {
                line_fail(err, errlen, file, line, "token %s: name already used on "
                          "line %u", t.name, ts->v[i].line);
                goto fail;
            }
            /* Not secret-dependent timing worth hiding: both are ours. */
            if (memcmp(ts->v[i].digest, t.digest, DIGEST_LEN) == 0) {
                line_fail(err, errlen, file, line, "token %s: same secret as token %s "
                          "(line %u); every token needs its own", t.name, ts->v[i].name,
                          ts->v[i].line);
                goto fail;
            }
        }
        if (ts->n == cap) {
            cap = cap ? cap * 2 : 8;
            ts->v = xrealloc(ts->v, cap * sizeof(*ts->v));
        }
        ts->v[ts->n++] = t;
        p = eol < end ? eol + 1 : end;
    }
    if (ts->n == 0) {
        snprintf(err, errlen, "%s: no token defined (one per line: NAME LEVEL SECRET)",
                 file);
        goto fail;
    }
    return ts;

fail:
    adm_tokens_free(ts);
    return NULL;
}

struct adm_tokens *
adm_tokens_load(const char *file, char *err, size_t errlen)
{
    struct adm_tokens *ts = NULL;
    struct stat st;
    char *buf = NULL;
    size_t got = 0;
    ssize_t r;
    int fd;

    fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot open the token file: %s", file, strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) != 0) {
        snprintf(err, errlen, "%s: cannot stat the token file: %s", file, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: the token file is not a regular file", file);
        goto out;
    }
    if (st.st_mode & 077) {
        snprintf(err, errlen, "%s: the token file has mode %04o: group and others must "
                 "have no access (chmod 600)", file, (unsigned)(st.st_mode & 07777));
        goto out;
    }
    if ((unsigned long long)st.st_size > ADM_TOKEN_FILE_MAX) {
        snprintf(err, errlen, "%s: the token file is larger than %u bytes", file,
                 ADM_TOKEN_FILE_MAX);
        goto out;
    }
    buf = xmalloc(ADM_TOKEN_FILE_MAX + 1);
    for (;;) {
        r = read(fd, buf + got, ADM_TOKEN_FILE_MAX + 1 - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(err, errlen, "%s: cannot read the token file: %s", file,
                     strerror(errno));
            goto out;
        }
        if (r == 0)
            break;
        got += (size_t)r;
        if (got > ADM_TOKEN_FILE_MAX) {
            snprintf(err, errlen, "%s: the token file is larger than %u bytes", file,
                     ADM_TOKEN_FILE_MAX);
            goto out;
        }
    }
    ts = adm_tokens_parse(buf, got, file, err, errlen);
out:
    if (buf != NULL) {
        OPENSSL_cleanse(buf, got);     /* the plain secrets go no further */
        free(buf);
    }
    close(fd);
    return ts;
}

void
adm_tokens_free(struct adm_tokens *t)
{
    if (t == NULL)
        return;
    if (t->v != NULL)
        OPENSSL_cleanse(t->v, t->n * sizeof(*t->v));
    free(t->v);
    free(t);
}

unsigned
adm_tokens_count(const struct adm_tokens *t)
{
    return t != NULL ? t->n : 0;
}

const char *
adm_tokens_check(const struct adm_tokens *t, const char *secret, size_t len,
                 enum adm_level *level)
{
    unsigned char d[DIGEST_LEN];
    unsigned i, found = 0;
    int hit = -1;

    if (t == NULL || sha256(secret, len, d) != 0)
        return NULL;
    /* Every entry is compared, whatever matched before. */
    for (i = 0; i < t->n; i++) {
        int eq = CRYPTO_memcmp(d, t->v[i].digest, DIGEST_LEN) == 0;

        found |= (unsigned)eq;
        if (eq)
            hit = (int)i;
    }
    OPENSSL_cleanse(d, sizeof(d));
    if (!found || hit < 0)
        return NULL;
    if (level != NULL)
        *level = t->v[hit].level;
    return t->v[hit].name;
}
