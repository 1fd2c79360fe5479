/*
 * lib/conf: shared helpers of the JSON config parsers (see conf.h).
 *
 * jansson keeps no positions for values, so parsers report a JSON path and
 * conf_json_locate() walks the original text along that path to find the
 * line and column: a small scanner that skips values without building them.
 */
#include "lib/conf.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "lib/text.h"

int
conf_fail(struct conf_err *err, const char *path, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL)
        return -1;
    snprintf(err->path, sizeof(err->path), "%s", path != NULL ? path : "");
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return -1;
}

const char *
conf_cat3(char *buf, size_t len, const char *a, const char *b, const char *c)
{
    const char *parts[3] = { a, b, c };
    size_t n = 0, i, k;

    for (i = 0; i < 3; i++)
        for (k = 0; parts[i][k] != '\0' && n + 1 < len; k++)
            buf[n++] = parts[i][k];
    buf[n] = '\0';
    return buf;
}

const char *
conf_join(char *buf, size_t len, const char *prefix, const char *key)
{
    return conf_cat3(buf, len, prefix, prefix[0] != '\0' ? "." : "", key);
}

const char *
conf_join_index(char *buf, size_t len, const char *prefix, size_t idx)
{
    char ix[24];

    snprintf(ix, sizeof(ix), "[%zu]", idx);
    return conf_cat3(buf, len, prefix, ix, "");
}

static struct conf_errlist *collecting;   /* conf_collect() */

void
conf_collect(struct conf_errlist *l)
{
    collecting = l;
}

void
conf_errlist_add(struct conf_errlist *l, const struct conf_err *e)
{
    unsigned i;

    for (i = 0; i < l->n; i++)
        if (strcmp(l->e[i].path, e->path) == 0 && strcmp(l->e[i].msg, e->msg) == 0)
            return;
    if (l->n < CONF_ERRORS_MAX)
        l->e[l->n++] = *e;
    else
        l->dropped++;
}

#define NEAR_MAX_LEN 64          /* longer keys are not compared */

/* Optimal string alignment distance of <a> and <b> (both shorter than
 * NEAR_MAX_LEN): insertions, deletions, substitutions, and swaps of two
 * neighbours, each 1. */
static size_t
edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), i, j, c, best;
    static size_t d[NEAR_MAX_LEN + 1][NEAR_MAX_LEN + 1];

    for (i = 0; i <= la; i++)
        d[i][0] = i;
    for (j = 0; j <= lb; j++)
        d[0][j] = j;
    for (i = 1; i <= la; i++) {
        for (j = 1; j <= lb; j++) {
            c = a[i - 1] == b[j - 1] ? 0 : 1;
            best = d[i - 1][j - 1] + c;
            if (d[i - 1][j] + 1 < best)
                best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best)
                best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]
                && d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    }
    return d[la][lb];
}

const char *
conf_nearest_key(const char *key, const char *const *allowed)
{
    const char *best = NULL;
    size_t i, dist, best_dist = 3, n = strlen(key);

    if (n == 0 || n >= NEAR_MAX_LEN)
        return NULL;
    for (i = 0; allowed[i] != NULL; i++) {
        if (strlen(allowed[i]) >= NEAR_MAX_LEN)
            continue;
        dist = edit_distance(key, allowed[i]);
        if (dist < best_dist && 2 * dist < n) {
            best = allowed[i];
            best_dist = dist;
        }
    }
    return best;
}

/* The "unknown key" error of member <key> of the object at <path>. */
static int
unknown_key(struct conf_err *err, const char *path, const char *key,
            const char *const *allowed)
{
    const char *near = conf_nearest_key(key, allowed);
    char p[sizeof(err->path)];

    conf_join(p, sizeof(p), path, key);
    if (near != NULL)
        return conf_fail(err, p, "unknown key (did you mean \"%s\"?)", near);
    return conf_fail(err, p, "unknown key");
}

int
conf_check_keys(json_t *obj, const char *path, const char *const *allowed,
                struct conf_err *err)
{
    struct conf_err more;
    const char *key;
    json_t *v;
    size_t i;
    int rc = 0;

    json_object_foreach(obj, key, v) {
        for (i = 0; allowed[i] != NULL; i++)
            if (strcmp(key, allowed[i]) == 0)
                break;
        if (allowed[i] != NULL)
            continue;
        if (collecting == NULL)
            return unknown_key(err, path, key, allowed);
        unknown_key(&more, path, key, allowed);
        conf_errlist_add(collecting, &more);
    }
    /* collecting: the keys are listed; the section's parse goes on (an
     * unknown key is never read) to find its other errors too */
    return rc;
}

/* ---- typed readers ------------------------------------------------- */

int
conf_int(json_t *v, const char *path, long long min, long long max, long long *out,
         struct conf_err *err)
{
    long long x;

    if (!json_is_integer(v))
        return conf_fail(err, path, "must be an integer");
    x = (long long)json_integer_value(v);
    if (x < min || x > max)
        return conf_fail(err, path, "must be between %lld and %lld", min, max);
    *out = x;
    return 0;
}

int
conf_opt_int(json_t *obj, const char *key, const char *prefix, long long min,
             long long max, long long *out, struct conf_err *err)
{
    json_t *v = json_object_get(obj, key);
    char p[sizeof(err->path)];

    if (v == NULL)
        return 0;
    return conf_int(v, conf_join(p, sizeof(p), prefix, key), min, max, out, err);
}

int
conf_opt_uint(json_t *obj, const char *key, const char *prefix, long long min,
              long long max, unsigned *out, struct conf_err *err)
{
    long long x = *out;

    if (conf_opt_int(obj, key, prefix, min, max, &x, err) != 0)
        return -1;
    *out = (unsigned)x;
    return 0;
}

int
conf_opt_double(json_t *obj, const char *key, const char *prefix, double min,
                double max, double *out, struct conf_err *err)
{
    json_t *v = json_object_get(obj, key);
    double d;
    char p[sizeof(err->path)];

    if (v == NULL)
        return 0;
    if (!json_is_number(v))
        return conf_fail(err, conf_join(p, sizeof(p), prefix, key), "must be a number");
    d = json_number_value(v);
    if (!(d >= min && d <= max))
        return conf_fail(err, conf_join(p, sizeof(p), prefix, key),
                         "must be between %g and %g", min, max);
    *out = d;
    return 0;
}

int
conf_opt_object(json_t *obj, const char *key, const char *prefix, json_t **out,
                struct conf_err *err)
{
    json_t *v = json_object_get(obj, key);
    char p[sizeof(err->path)];

    *out = v;
    if (v != NULL && !json_is_object(v))
        return conf_fail(err, conf_join(p, sizeof(p), prefix, key), "must be an object");
    return 0;
}

int
conf_opt_string(json_t *obj, const char *key, const char *prefix, const char **out,
                struct conf_err *err)
{
    json_t *v = json_object_get(obj, key);
    char p[sizeof(err->path)];

    *out = NULL;
    if (v == NULL)
        return 0;
    if (!json_is_string(v))
        return conf_fail(err, conf_join(p, sizeof(p), prefix, key), "must be a string");
    *out = json_string_value(v);
    return 0;
}

int
conf_opt_nonempty(json_t *obj, const char *key, const char *prefix, const char **out,
                  struct conf_err *err)
{
    char p[sizeof(err->path)];

    if (conf_opt_string(obj, key, prefix, out, err) != 0)
        return -1;
    if (*out != NULL && **out == '\0') {
        *out = NULL;
        return conf_fail(err, conf_join(p, sizeof(p), prefix, key), "must not be empty");
    }
    return 0;
}

int
conf_percent_bp(json_t *v, const char *path, bool zero_ok, uint32_t *bp,
                struct conf_err *err)
{
    double d, scaled, diff;
    uint32_t r;

    if (!json_is_number(v))
        return conf_fail(err, path, "must be a number");
    d = json_number_value(v);
    if (zero_ok && !(d >= 0.0 && d <= 100.0))
        return conf_fail(err, path, "must be between 0 and 100");
    if (!zero_ok && !(d > 0.0 && d <= 100.0))
        return conf_fail(err, path, "must be greater than 0 and at most 100");
    scaled = d * 100.0;
    r = (uint32_t)(scaled + 0.5);
    diff = scaled - (double)r;
    if (diff > 1e-6 || diff < -1e-6 || (!zero_ok && r == 0))
        return conf_fail(err, path, "must have at most two decimals");
    *bp = r;
    return 0;
}

/* ---- locating a JSON path in the text ------------------------------ */

/* A cursor over JSON text. <seen> counts the characters (UTF-8 lead bytes)
 * consumed on the current line, so the column of the byte at <p> is
 * seen + 1: the same convention as jansson's error columns. */
struct scan {
    const char *p, *end;
    int line;
    int seen;
};

static int
sc_peek(const struct scan *s)
{
    return s->p < s->end ? (unsigned char)*s->p : -1;
}

static void
sc_adv(struct scan *s)
{
    unsigned char b;

    if (s->p >= s->end)
        return;
    b = (unsigned char)*s->p++;
    if (b == '\n') {
        s->line++;
        s->seen = 0;
    } else if ((b & 0xc0) != 0x80) {
        s->seen++;
    }
}

static void
sc_ws(struct scan *s)
{
    int ch;

    while ((ch = sc_peek(s)) == ' ' || ch == '\t' || ch == '\n' || ch == '\r')
        sc_adv(s);
}

/* Reads the 4 hex digits after "\u". Returns the code unit or -1. */
static long
sc_hex4(struct scan *s)
{
    long v = 0;
    int i, h;

    for (i = 0; i < 4; i++) {
        if ((h = text_hex_value(sc_peek(s))) < 0)
            return -1;
        v = v * 16 + h;
        sc_adv(s);
    }
    return v;
}

/* Consumes the string at the cursor (which must be on its opening quote),
 * decoding escapes, and compares it with the <n> bytes at <want> (<want>
 * may be NULL: skip only). Returns 1 when equal, 0 when not, -1 when the
 * text is not a well-formed string. */
static int
sc_string(struct scan *s, const char *want, size_t n)
{
    size_t k = 0;
    bool same = want != NULL;
    unsigned char u8[4];
    size_t nb, i;
    long cp, lo;
    int ch;

    if (sc_peek(s) != '"')
        return -1;
    sc_adv(s);
    for (;;) {
        if ((ch = sc_peek(s)) < 0)
            return -1;
        sc_adv(s);
        if (ch == '"')
            break;
        if (ch != '\\') {
            u8[0] = (unsigned char)ch;
            nb = 1;
        } else {
            ch = sc_peek(s);
            sc_adv(s);
            nb = 1;
            switch (ch) {
            case '"': case '\\': case '/': u8[0] = (unsigned char)ch; break;
            case 'b': u8[0] = '\b'; break;
            case 'f': u8[0] = '\f'; break;
            case 'n': u8[0] = '\n'; break;
            case 'r': u8[0] = '\r'; break;
            case 't': u8[0] = '\t'; break;
            case 'u':
                if ((cp = sc_hex4(s)) < 0)
                    return -1;
                /* A high surrogate followed by "\uDCxx" is one code point. */
                if (cp >= 0xd800 && cp <= 0xdbff && sc_peek(s) == '\\' &&
                    s->p + 1 < s->end && s->p[1] == 'u') {
                    sc_adv(s);
                    sc_adv(s);
                    if ((lo = sc_hex4(s)) < 0)
                        return -1;
                    if (lo >= 0xdc00 && lo <= 0xdfff)
                        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                    else
                        same = false;
                }
                if (cp < 0x80) {
                    u8[0] = (unsigned char)cp;
                } else if (cp < 0x800) {
                    u8[0] = (unsigned char)(0xc0 | (cp >> 6));
                    u8[1] = (unsigned char)(0x80 | (cp & 0x3f));
                    nb = 2;
                } else if (cp < 0x10000) {
                    u8[0] = (unsigned char)(0xe0 | (cp >> 12));
                    u8[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
                    u8[2] = (unsigned char)(0x80 | (cp & 0x3f));
                    nb = 3;
                } else {
                    u8[0] = (unsigned char)(0xf0 | (cp >> 18));
                    u8[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
                    u8[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
                    u8[3] = (unsigned char)(0x80 | (cp & 0x3f));
                    nb = 4;
                }
                break;
            default:
                return -1;
            }
        }
        for (i = 0; same && i < nb; i++, k++)
            if (k >= n || (unsigned char)want[k] != u8[i])
                same = false;
    }
    return same && k == n;
}

/* Skips one value of any kind. Containers are skipped by depth counting,
 * not recursion, so deeply nested text cannot exhaust the stack. */
static int
sc_skip_value(struct scan *s)
{
    unsigned long depth = 0;
    int ch;

    ch = sc_peek(s);
    if (ch == '"')
        return sc_string(s, NULL, 0) < 0 ? -1 : 0;
    if (ch != '{' && ch != '[') {
        const char *start = s->p;

        while ((ch = sc_peek(s)) >= 0 && strchr(",}] \t\n\r:", ch) == NULL)
            sc_adv(s);
        return s->p > start ? 0 : -1;
    }
    for (;;) {
        if ((ch = sc_peek(s)) < 0)
            return -1;
        if (ch == '"') {
            if (sc_string(s, NULL, 0) < 0)
                return -1;
            continue;
        }
        sc_adv(s);
        if (ch == '{' || ch == '[') {
            depth++;
        } else if (ch == '}' || ch == ']') {
            if (--depth == 0)
                return 0;
        }
    }
}

int
conf_json_locate(const char *text, size_t len, const char *path,
                 int *line, int *col)
{
    struct scan s = { text, text + len, 1, 0 };
    const char *c = path;
    int vline, vcol, m;

    sc_ws(&s);
    if (sc_peek(&s) < 0)
        return -1;
    vline = s.line;
    vcol = s.seen + 1;
    while (*c != '\0') {
        if (*c == '[') {
            unsigned long idx = 0, i;
            const char *d = ++c;

            while (*c >= '0' && *c <= '9' && c - d < 9)
                idx = idx * 10 + (unsigned long)(*c++ - '0');
            if (c == d || *c != ']')
                return -1;
            c++;
            if (sc_peek(&s) != '[')
                return -1;
            sc_adv(&s);
            sc_ws(&s);
            for (i = 0; i < idx; i++) {
                if (sc_peek(&s) == ']' || sc_skip_value(&s) != 0)
                    return -1;
                sc_ws(&s);
                if (sc_peek(&s) != ',')
                    return -1;
                sc_adv(&s);
                sc_ws(&s);
            }
            if (sc_peek(&s) < 0 || sc_peek(&s) == ']')
                return -1;
            vline = s.line;
            vcol = s.seen + 1;
        } else {
            size_t n = strcspn(c, ".[");

            if (n == 0 || sc_peek(&s) != '{')
                return -1;
            sc_adv(&s);
            sc_ws(&s);
            for (;;) {
                if (sc_peek(&s) != '"')
                    return -1;
                vline = s.line;
                vcol = s.seen + 1;
                if ((m = sc_string(&s, c, n)) < 0)
                    return -1;
                sc_ws(&s);
                if (sc_peek(&s) != ':')
                    return -1;
                sc_adv(&s);
                sc_ws(&s);
                if (m == 1)
                    break;
                if (sc_skip_value(&s) != 0)
                    return -1;
                sc_ws(&s);
                if (sc_peek(&s) != ',')
                    return -1;
                sc_adv(&s);
                sc_ws(&s);
            }
            c += n;
        }
        if (*c == '.') {
            c++;
            if (*c == '\0' || *c == '[')
                return -1;
        }
    }
    *line = vline;
    *col = vcol;
    return 0;
}
