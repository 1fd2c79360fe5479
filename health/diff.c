/*
 * health/diff: captures of two responses and their comparison, the noise
 * set and the diff-rate window (see diff.h). Pure: no clock, no I/O.
 */
#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "health/diff.h"
#include "lib/xmalloc.h"

/* ---- small helpers ---------------------------------------------------- */

static uint64_t
hash_str(const char *s, uint64_t seed)
{
    return XXH3_64bits_withSeed(s, strlen(s), seed);
}

/* Copies at most <max> bytes of <p> into <dst> (max + 1 bytes), showing
 * every byte outside printable ASCII as '.', so the text is always valid
 * UTF-8 for a JSON reply. */
static void
show(char *dst, size_t max, const char *p, size_t n)
{
    size_t i;

    if (n > max)
        n = max;
    for (i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)p[i];

        dst[i] = ch >= 0x20 && ch < 0x7f ? (char)ch : '.';
    }
    dst[n] = '\0';
}

static void
lower(char *dst, size_t cap, const char *p, size_t n)
{
    size_t i;

    if (n >= cap)
        n = cap - 1;
    for (i = 0; i < n; i++)
        dst[i] = (p[i] >= 'A' && p[i] <= 'Z') ? (char)(p[i] - 'A' + 'a') : p[i];
    dst[n] = '\0';
}

/* Fields that frame or route a message, never part of what it says. */
static bool
framing_field(const char *name)
{
    static const char *const hop[] = {
        "connection", "keep-alive", "proxy-connection", "te", "trailer",
        "transfer-encoding", "upgrade", "content-length", NULL
    };
    size_t i;

    for (i = 0; hop[i] != NULL; i++)
        if (strcmp(name, hop[i]) == 0)
            return true;
    return false;
}

static bool
listed(const char (*list)[HL_DIFF_NAME_MAX], unsigned n, const char *name)
{
    unsigned i;

    for (i = 0; i < n; i++)
        if (strcmp(list[i], name) == 0)
            return true;
    return false;
}

/* ---- ignore_json paths ------------------------------------------------ */

enum seg_kind { SEG_KEY, SEG_ANY_KEY, SEG_INDEX, SEG_ANY_INDEX };

struct seg {
    enum seg_kind kind;
    const char *key;
    size_t klen;
    unsigned long index;
};

#define SEGS_MAX 32

/* Splits <path> into segments; returns their number, or -1 with <why>. */
static int
path_split(const char *path, struct seg *s, const char **why)
{
    const char *p = path;
    int n = 0;

    if (p[0] != '$') {
        *why = "must start with \"$\"";
        return -1;
    }
    p++;
    while (*p != '\0') {
        if (n == SEGS_MAX) {
            *why = "has more than 32 segments";
            return -1;
        }
        if (*p == '.') {
            const char *k = ++p;

            while (*p != '\0' && *p != '.' && *p != '[')
                p++;
            if (p == k) {
                *why = "has an empty key after \".\"";
                return -1;
            }
            s[n].kind = (p - k == 1 && k[0] == '*') ? SEG_ANY_KEY : SEG_KEY;
            s[n].key = k;
            s[n].klen = (size_t)(p - k);
        } else if (*p == '[') {
            p++;
            if (p[0] == '*' && p[1] == ']') {
                s[n].kind = SEG_ANY_INDEX;
                p += 2;
            } else {
                char *end;

                if (*p < '0' || *p > '9') {
                    *why = "has an index that is neither a number nor *";
                    return -1;
                }
                s[n].kind = SEG_INDEX;
                s[n].index = strtoul(p, &end, 10);
                if (*end != ']') {
                    *why = "has an index without its \"]\"";
                    return -1;
                }
                p = end + 1;
            }
        } else {
            *why = "expects \".key\", \".*\", \"[N]\" or \"[*]\" after \"$\"";
            return -1;
        }
        n++;
    }
    return n;
}

const char *
hl_diff_path_check(const char *path)
{
    struct seg s[SEGS_MAX];
    const char *why = NULL;

    if (strlen(path) >= HL_DIFF_PATH_MAX)
        return "is longer than 127 bytes";
    return path_split(path, s, &why) < 0 ? why : NULL;
}

/* ---- capture ---------------------------------------------------------- */

void
hl_diff_resp_init(struct hl_diff_resp *r, const struct hl_diff_conf *c)
{
    memset(r, 0, sizeof(*r));
    if (c->body == HL_DIFF_BODY_BYTES) {
        r->xs = XXH3_createState();
        if (r->xs == NULL)
            abort();
        XXH3_64bits_reset(r->xs);
    }
}

void
hl_diff_resp_free(struct hl_diff_resp *r)
{
    if (r->xs != NULL)
        XXH3_freeState(r->xs);
    free(r->buf);
    free(r->leaves);
    free(r->arena);
    memset(r, 0, sizeof(*r));
}

void
hl_diff_resp_status(struct hl_diff_resp *r, int status)
{
    r->status = status;
}

void
hl_diff_resp_header(struct hl_diff_resp *r, const struct hl_diff_conf *c,
                    const char *name, size_t nlen, const char *value, size_t vlen)
{
    char n[HL_DIFF_NAME_MAX];
    struct hl_diff_header *h = NULL;
    unsigned i;

    if (nlen >= HL_DIFF_NAME_MAX)
        return;                        /* no listed name is that long */
    lower(n, sizeof(n), name, nlen);
    if (c->all_headers) {
        if (framing_field(n) || listed(c->ignore_headers, c->nignore_headers, n))
            return;
    } else if (!listed(c->headers, c->nheaders, n)) {
        return;
    }
    for (i = 0; i < r->nheaders; i++)
        if (strcmp(r->h[i].name, n) == 0)
            h = &r->h[i];
    if (h == NULL) {
        if (r->nheaders == HL_DIFF_HEADERS_MAX)
            return;
        h = &r->h[r->nheaders++];
        memcpy(h->name, n, sizeof(n));
        h->hash = XXH3_64bits(value, vlen);
        show(h->text, HL_DIFF_TEXT, value, vlen);
        h->len = vlen;
        return;
    }
    /* a repeated field: its values joined with ", " */
    h->hash = XXH3_64bits_withSeed(value, vlen, h->hash);
    if (h->len < HL_DIFF_TEXT) {
        size_t at = strlen(h->text);

        show(h->text + at, HL_DIFF_TEXT - at, ", ", 2);
        at = strlen(h->text);
        show(h->text + at, HL_DIFF_TEXT - at, value, vlen);
    }
    h->len += 2 + vlen;
}

int
hl_diff_resp_body(struct hl_diff_resp *r, const struct hl_diff_conf *c, const void *p,
                  size_t n)
{
    if (r->too_large || c->body == HL_DIFF_BODY_NONE)
        return r->too_large ? -1 : 0;
    if (r->body_len + n > c->max_bytes) {
        r->too_large = true;
        return -1;
    }
    if (r->prefix_len < HL_DIFF_PREFIX) {
        size_t k = HL_DIFF_PREFIX - r->prefix_len < n ? HL_DIFF_PREFIX - r->prefix_len : n;

        memcpy(r->prefix + r->prefix_len, p, k);
        r->prefix_len += k;
    }
    r->body_len += n;
    if (c->body == HL_DIFF_BODY_BYTES) {
        XXH3_64bits_update(r->xs, p, n);
        return 0;
    }
    if (r->buf_len + n > r->buf_cap) {
        size_t cap = r->buf_cap == 0 ? 4096 : r->buf_cap;

        while (cap < r->buf_len + n)
            cap *= 2;
        if (cap > c->max_bytes)
            cap = (size_t)c->max_bytes;
        r->buf = xrealloc(r->buf, cap);
        r->buf_cap = cap;
    }
    memcpy(r->buf + r->buf_len, p, n);
    r->buf_len += n;
    return 0;
}

/* ---- JSON flattening -------------------------------------------------- */

struct flat {
    struct hl_diff_resp *r;
    struct seg ign[HL_DIFF_IGNORE_MAX][SEGS_MAX];
    int nign[HL_DIFF_IGNORE_MAX];
    unsigned ncount;
    bool overflow;                     /* more than HL_DIFF_LEAVES_MAX leaves */
};

static uint32_t
arena_add(struct hl_diff_resp *r, const char *s, size_t n)
{
    uint32_t at = (uint32_t)r->arena_len;

    if (r->arena_len + n + 1 > r->arena_cap) {
        size_t cap = r->arena_cap == 0 ? 1024 : r->arena_cap;

        while (cap < r->arena_len + n + 1)
            cap *= 2;
        r->arena = xrealloc(r->arena, cap);
        r->arena_cap = cap;
    }
    memcpy(r->arena + r->arena_len, s, n);
    r->arena[r->arena_len + n] = '\0';
    r->arena_len += n + 1;
    return at;
}

/* The canonical text of scalar <v> into <buf> (numbers as numbers). */
static size_t
canon(json_t *v, char *buf, size_t len, const char **str, size_t *slen)
{
    double d;

    *str = NULL;
    switch (json_typeof(v)) {
    case JSON_STRING:
        *str = json_string_value(v);
        *slen = json_string_length(v);
        return 0;
    case JSON_INTEGER:
        return (size_t)snprintf(buf, len, "%lld", (long long)json_integer_value(v));
    case JSON_REAL:
        d = json_real_value(v);
        if (d == floor(d) && fabs(d) < 9.2e18)
            return (size_t)snprintf(buf, len, "%lld", (long long)d);
        return (size_t)snprintf(buf, len, "%.17g", d);
    case JSON_TRUE:
        return (size_t)snprintf(buf, len, "true");
    case JSON_FALSE:
        return (size_t)snprintf(buf, len, "false");
    case JSON_NULL:
        return (size_t)snprintf(buf, len, "null");
    case JSON_OBJECT:
        return (size_t)snprintf(buf, len, "{}");
    case JSON_ARRAY:
        return (size_t)snprintf(buf, len, "[]");
    }
    return 0;
}

static void
leaf_add(struct flat *f, json_t *v, const char *path, uint64_t ph, uint64_t nh)
{
    struct hl_diff_resp *r = f->r;
    struct hl_diff_leaf *l;
    char num[64], text[HL_DIFF_TEXT + 3];
    const char *s;
    size_t n, slen = 0;

    if (r->nleaves == HL_DIFF_LEAVES_MAX) {
        f->overflow = true;
        return;
    }
    if (r->nleaves == f->ncount) {
        f->ncount = f->ncount == 0 ? 64 : f->ncount * 2;
        r->leaves = xrealloc(r->leaves, f->ncount * sizeof(*r->leaves));
    }
    l = &r->leaves[r->nleaves++];
    l->path_hash = ph;
    l->noise_hash = nh;
    n = canon(v, num, sizeof(num), &s, &slen);
    if (s != NULL) {
        /* a string: "s" tells it from a number with the same text */
        l->value_hash = XXH3_64bits_withSeed(s, slen, 's');
        text[0] = '"';
        show(text + 1, HL_DIFF_TEXT - 1, s, slen);
        n = strlen(text);
        text[n++] = '"';
        text[n] = '\0';
    } else {
        l->value_hash = XXH3_64bits_withSeed(num, n, 'n');
        show(text, HL_DIFF_TEXT, num, n);
        n = strlen(text);
    }
    l->path_off = arena_add(r, path, strlen(path));
    l->text_off = arena_add(r, text, n);
}

/* Matches segment <s> of ignore pattern against a key or an index. */
static bool
seg_match(const struct seg *s, const char *key, unsigned long index)
{
    if (key != NULL)
        return s->kind == SEG_ANY_KEY ||
               (s->kind == SEG_KEY && strlen(key) == s->klen &&
                memcmp(key, s->key, s->klen) == 0);
    return s->kind == SEG_ANY_INDEX || (s->kind == SEG_INDEX && s->index == index);
}

/* Walks <v> at depth <d> whose path is <path> (text, truncated to the
 * buffer), <ph> its hash, <nh> its noise hash; <live> the ignore patterns
 * whose first <d> segments matched. */
static void
walk(struct flat *f, json_t *v, char *path, size_t plen, uint64_t ph, uint64_t nh,
     unsigned d, uint32_t live)
{
    const char *key;
    json_t *child;
    size_t i;
    unsigned k;

    for (k = 0; k < HL_DIFF_IGNORE_MAX; k++)
        if ((live & (1u << k)) && f->nign[k] == (int)d)
            return;                    /* an ignored path: the whole subtree goes */
    if (f->overflow)
        return;
    if (json_is_object(v) && json_object_size(v) > 0) {
        json_object_foreach(v, key, child) {
            uint32_t next = 0;
            size_t n = plen;

            for (k = 0; k < HL_DIFF_IGNORE_MAX; k++)
                if ((live & (1u << k)) && f->nign[k] > (int)d &&
                    seg_match(&f->ign[k][d], key, 0))
                    next |= 1u << k;
            if (n + 1 < HL_DIFF_PATH_MAX) {
                n += (size_t)snprintf(path + n, HL_DIFF_PATH_MAX - n, ".%s", key);
                if (n >= HL_DIFF_PATH_MAX)
                    n = HL_DIFF_PATH_MAX - 1;
            }
            walk(f, child, path, n, XXH3_64bits_withSeed(key, strlen(key), ph ^ 'k'),
                 XXH3_64bits_withSeed(key, strlen(key), nh ^ 'k'), d + 1, next);
            path[plen] = '\0';
        }
        return;
    }
    if (json_is_array(v) && json_array_size(v) > 0) {
        json_array_foreach(v, i, child) {
            uint32_t next = 0;
            size_t n = plen;

            for (k = 0; k < HL_DIFF_IGNORE_MAX; k++)
                if ((live & (1u << k)) && f->nign[k] > (int)d &&
                    seg_match(&f->ign[k][d], NULL, i))
                    next |= 1u << k;
            if (n + 1 < HL_DIFF_PATH_MAX) {
                n += (size_t)snprintf(path + n, HL_DIFF_PATH_MAX - n, "[%zu]", i);
                if (n >= HL_DIFF_PATH_MAX)
                    n = HL_DIFF_PATH_MAX - 1;
            }
            walk(f, child, path, n, XXH3_64bits_withSeed(&i, sizeof(i), ph ^ 'i'),
                 XXH3_64bits_withSeed("*", 1, nh ^ 'i'), d + 1, next);
            path[plen] = '\0';
        }
        return;
    }
    leaf_add(f, v, path, ph, nh);
}

static int
leaf_cmp(const void *x, const void *y)
{
    const struct hl_diff_leaf *a = x, *b = y;

    return a->path_hash < b->path_hash ? -1 : a->path_hash > b->path_hash;
}

static void
flatten(struct hl_diff_resp *r, const struct hl_diff_conf *c)
{
    struct flat *f;
    json_error_t e;
    json_t *root;
    char path[HL_DIFF_PATH_MAX] = "$";
    uint32_t live = 0;
    unsigned k;

    root = json_loadb(r->buf != NULL ? r->buf : "", r->buf_len,
                      JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
    if (root == NULL)
        return;                        /* not JSON: compared as bytes */
    f = xcalloc(1, sizeof(*f));
    f->r = r;
    for (k = 0; k < c->nignore_json && k < HL_DIFF_IGNORE_MAX; k++) {
        const char *why;

        f->nign[k] = path_split(c->ignore_json[k], f->ign[k], &why);
        if (f->nign[k] >= 0)
            live |= 1u << k;
    }
    walk(f, root, path, 1, XXH3_64bits("$", 1), XXH3_64bits("$", 1), 0, live);
    json_decref(root);
    if (f->overflow) {
        free(r->leaves);
        free(r->arena);
        r->leaves = NULL;
        r->arena = NULL;
        r->nleaves = 0;
        r->arena_len = r->arena_cap = 0;
    } else {
        if (r->nleaves > 1)            /* none at all when every path is ignored */
            qsort(r->leaves, r->nleaves, sizeof(*r->leaves), leaf_cmp);
        r->json = true;
    }
    free(f);
}

void
hl_diff_resp_end(struct hl_diff_resp *r, const struct hl_diff_conf *c)
{
    if (r->ended)
        return;
    r->ended = true;
    if (r->too_large)
        return;
    if (c->body == HL_DIFF_BODY_BYTES) {
        r->body_hash = XXH3_64bits_digest(r->xs);
        return;
    }
    if (c->body != HL_DIFF_BODY_JSON)
        return;
    r->body_hash = XXH3_64bits(r->buf != NULL ? r->buf : "", r->buf_len);
    flatten(r, c);
    free(r->buf);
    r->buf = NULL;
    r->buf_len = r->buf_cap = 0;
}

/* ---- noise ------------------------------------------------------------ */

bool
hl_noise_has(const struct hl_noise *n, uint64_t key)
{
    unsigned i;

    for (i = 0; i < n->n; i++)
        if (n->key[i] == key)
            return true;
    return false;
}

bool
hl_noise_add(struct hl_noise *n, uint64_t key, const char *name)
{
    if (hl_noise_has(n, key))
        return false;
    if (n->n == HL_NOISE_MAX) {
        n->full = true;
        return false;
    }
    n->key[n->n] = key;
    snprintf(n->name[n->n], sizeof(n->name[0]), "%s", name);
    n->n++;
    return true;
}

unsigned
hl_noise_merge(struct hl_noise *dst, const struct hl_noise *src)
{
    unsigned i, added = 0;

    for (i = 0; i < src->n; i++)
        added += hl_noise_add(dst, src->key[i], src->name[i]);
    if (src->full)
        dst->full = true;
    return added;
}

/* ---- comparison ------------------------------------------------------- */

/* Called for every differing field: <key> its noise key. */
typedef void diff_fn(void *ctx, uint64_t key, const char *name, const char *a,
                     const char *b);

static const struct hl_diff_header *
header_find(const struct hl_diff_resp *r, const char *name)
{
    unsigned i;

    for (i = 0; i < r->nheaders; i++)
        if (strcmp(r->h[i].name, name) == 0)
            return &r->h[i];
    return NULL;
}

static void
diff_header(const char *name, const struct hl_diff_resp *a, const struct hl_diff_resp *b,
            diff_fn *fn, void *ctx)
{
    const struct hl_diff_header *x = header_find(a, name), *y = header_find(b, name);
    char n[HL_DIFF_PATH_MAX];

    if (x == NULL && y == NULL)
        return;
    if (x != NULL && y != NULL && x->hash == y->hash && x->len == y->len)
        return;
    snprintf(n, sizeof(n), "header:%s", name);
    fn(ctx, hash_str(n, 0), n, x != NULL ? x->text : "(absent)",
       y != NULL ? y->text : "(absent)");
}

static void
diff_bytes(const struct hl_diff_resp *a, const struct hl_diff_resp *b, diff_fn *fn,
           void *ctx)
{
    char x[HL_DIFF_TEXT + 1], y[HL_DIFF_TEXT + 1];

    if (a->body_hash == b->body_hash && a->body_len == b->body_len)
        return;
    show(x, HL_DIFF_TEXT, a->prefix, a->prefix_len);
    show(y, HL_DIFF_TEXT, b->prefix, b->prefix_len);
    fn(ctx, hash_str("body", 0), "body", x, y);
}

/* The name of leaf <l> as noise: its path with every index as [*]. */
static void
noise_name(const char *path, char *out, size_t len)
{
    size_t o = 0;

    while (*path != '\0' && o + 1 < len) {
        if (*path == '[') {
            while (*path != '\0' && *path != ']')
                path++;
            if (*path == ']')
                path++;
            if (o + 4 < len) {
                memcpy(out + o, "[*]", 3);
                o += 3;
            }
            continue;
        }
        out[o++] = *path++;
    }
    out[o] = '\0';
}

static void
leaf_diff(const struct hl_diff_resp *r, const struct hl_diff_leaf *l,
          const struct hl_diff_resp *other, const struct hl_diff_leaf *m, bool first,
          diff_fn *fn, void *ctx)
{
    const char *t = r->arena + l->text_off;
    const char *u = m != NULL ? other->arena + m->text_off : "(absent)";

    if (first)
        fn(ctx, l->noise_hash, r->arena + l->path_off, t, u);
    else
        fn(ctx, l->noise_hash, r->arena + l->path_off, u, t);
}

static void
diff_json(const struct hl_diff_resp *a, const struct hl_diff_resp *b, diff_fn *fn,
          void *ctx)
{
    unsigned i = 0, j = 0;

    while (i < a->nleaves || j < b->nleaves) {
        const struct hl_diff_leaf *x = i < a->nleaves ? &a->leaves[i] : NULL;
        const struct hl_diff_leaf *y = j < b->nleaves ? &b->leaves[j] : NULL;

        if (y == NULL || (x != NULL && x->path_hash < y->path_hash)) {
            leaf_diff(a, x, b, NULL, true, fn, ctx);
            i++;
        } else if (x == NULL || y->path_hash < x->path_hash) {
            leaf_diff(b, y, a, NULL, false, fn, ctx);
            j++;
        } else {
            if (x->value_hash != y->value_hash)
                fn(ctx, x->noise_hash, a->arena + x->path_off, a->arena + x->text_off,
                   b->arena + y->text_off);
            i++;
            j++;
        }
    }
}

static void
diff_walk(const struct hl_diff_conf *c, const struct hl_diff_resp *a,
          const struct hl_diff_resp *b, diff_fn *fn, void *ctx)
{
    unsigned i;

    if (c->status && a->status != b->status) {
        char x[16], y[16];

        snprintf(x, sizeof(x), "%d", a->status);
        snprintf(y, sizeof(y), "%d", b->status);
        fn(ctx, hash_str("status", 0), "status", x, y);
    }
    if (c->all_headers) {
        for (i = 0; i < a->nheaders; i++)
            diff_header(a->h[i].name, a, b, fn, ctx);
        for (i = 0; i < b->nheaders; i++)
            if (header_find(a, b->h[i].name) == NULL)
                diff_header(b->h[i].name, a, b, fn, ctx);
    } else {
        for (i = 0; i < c->nheaders; i++)
            diff_header(c->headers[i], a, b, fn, ctx);
    }
    if (c->body == HL_DIFF_BODY_NONE)
        return;
    if (c->body == HL_DIFF_BODY_JSON && a->json && b->json)
        diff_json(a, b, fn, ctx);
    else
        diff_bytes(a, b, fn, ctx);
}

struct cmp_ctx {
    const struct hl_noise *noise;
    struct hl_diff_out *out;
};

static void
on_cmp(void *arg, uint64_t key, const char *name, const char *a, const char *b)
{
    struct cmp_ctx *x = arg;
    struct hl_diff_field *f;

    if (x->noise != NULL && hl_noise_has(x->noise, key)) {
        x->out->noise++;
        return;
    }
    x->out->total++;
    if (x->out->n == HL_DIFF_FIELDS_MAX)
        return;
    f = &x->out->f[x->out->n++];
    snprintf(f->name, sizeof(f->name), "%s", name);
    snprintf(f->a, sizeof(f->a), "%s", a);
    snprintf(f->b, sizeof(f->b), "%s", b);
}

unsigned
hl_diff_compare(const struct hl_diff_conf *c, const struct hl_diff_resp *a,
                const struct hl_diff_resp *b, const struct hl_noise *noise,
                struct hl_diff_out *out)
{
    struct cmp_ctx x = { noise, out };

    memset(out, 0, sizeof(*out));
    diff_walk(c, a, b, on_cmp, &x);
    return out->total;
}

struct learn_ctx {
    struct hl_noise *noise;
    unsigned added;
};

static void
on_learn(void *arg, uint64_t key, const char *name, const char *a, const char *b)
{
    struct learn_ctx *x = arg;
    char n[HL_DIFF_PATH_MAX];

    (void)a;
    (void)b;
    if (name[0] == '$')
        noise_name(name, n, sizeof(n));
    else
        snprintf(n, sizeof(n), "%s", name);
    x->added += hl_noise_add(x->noise, key, n);
}

unsigned
hl_diff_learn(const struct hl_diff_conf *c, const struct hl_diff_resp *a,
              const struct hl_diff_resp *b, struct hl_noise *noise)
{
    struct learn_ctx x = { noise, 0 };

    diff_walk(c, a, b, on_learn, &x);
    return x.added;
}

/* ---- the diff-rate window --------------------------------------------- */

void
hl_diffwin_init(struct hl_diffwin *w, unsigned window_s)
{
    assert(window_s >= 1 && window_s <= HL_DIFFWIN_MAX_S);
    memset(w, 0, sizeof(*w));
    w->window_s = window_s;
}

void
hl_diffwin_reset(struct hl_diffwin *w)
{
    hl_diffwin_init(w, w->window_s);
}

static void
add_sec(struct hl_diffwin *w, uint64_t sec, uint32_t compared, uint32_t diffs)
{
    unsigned i = (unsigned)(sec % w->window_s);

    if (w->newest_sec != 0 && sec + w->window_s <= w->newest_sec)
        return;                        /* fell out of the window */
    if (w->b[i].sec != sec) {
        w->b[i].sec = sec;
        w->b[i].compared = w->b[i].diffs = 0;
    }
    w->b[i].compared += compared;
    w->b[i].diffs += diffs;
    if (sec > w->newest_sec)
        w->newest_sec = sec;
}

void
hl_diffwin_push(struct hl_diffwin *w, uint64_t now_ms, bool differed)
{
    add_sec(w, now_ms / 1000u, 1, differed ? 1 : 0);
}

void
hl_diffwin_stats(const struct hl_diffwin *w, uint64_t now_ms, struct hl_diff_stats *out)
{
    uint64_t now = now_ms / 1000u;
    unsigned i;

    memset(out, 0, sizeof(*out));
    for (i = 0; i < w->window_s; i++) {
        uint64_t s = w->b[i].sec;

        if (s == 0 || s > now || s + w->window_s <= now)
            continue;
        out->compared += w->b[i].compared;
        out->diffs += w->b[i].diffs;
    }
    out->rate = out->compared > 0 ? (double)out->diffs / (double)out->compared : 0;
}

void
hl_diffwin_merge(struct hl_diffwin *dst, const struct hl_diffwin *src)
{
    unsigned i;

    assert(dst->window_s == src->window_s);
    for (i = 0; i < src->window_s; i++)
        if (src->b[i].sec != 0 && src->b[i].compared > 0)
            add_sec(dst, src->b[i].sec, src->b[i].compared, src->b[i].diffs);
}
