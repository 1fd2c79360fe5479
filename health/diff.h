/*
 * health/diff: the comparison of two HTTP responses to the same request, as
 * shadow traffic needs it (proxy/shadow.c): what is captured of a response
 * (status, the listed header fields, the body as a streaming hash or as
 * flattened JSON), which fields of two captures differ, the noise learned
 * from two servers of the same side (fields that differ there are ignored
 * from then on, as Diffy does), and the diff-rate window. Pure: libc,
 * jansson and xxhash only; no clock (times are parameters), no I/O, no
 * logging.
 *
 * Memory per capture is bounded: a bytes body is a 64-bit streaming hash
 * and its first HL_DIFF_PREFIX bytes; a JSON body is buffered up to
 * conf->max_bytes, then flattened into one leaf per scalar (its path, the
 * hash of its value and at most HL_DIFF_TEXT bytes of it) and the buffer
 * freed. A body over max_bytes is not compared (the capture says so).
 *
 * JSON is compared as data: object key order does not matter, numbers are
 * numbers (1, 1.0 and 1e0 are equal; integers beyond 2^53 are compared
 * exactly when both are integers), strings by their decoded value. A body
 * that does not parse as JSON is compared as bytes.
 */
#ifndef CUTOVER_HEALTH_DIFF_H
#define CUTOVER_HEALTH_DIFF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <xxhash.h>

#define HL_DIFF_HEADERS_MAX 32       /* listed / captured header fields */
#define HL_DIFF_NAME_MAX    64       /* a header name, lower case */
#define HL_DIFF_IGNORE_MAX  32       /* ignore_json paths */
#define HL_DIFF_PATH_MAX    128      /* an ignore_json path */
#define HL_DIFF_TEXT        96       /* bytes of a value kept to show */
#define HL_DIFF_PREFIX      256      /* bytes of a bytes body kept to show */
#define HL_DIFF_FIELDS_MAX  8        /* differing fields reported per comparison */
#define HL_DIFF_LEAVES_MAX  65536    /* JSON leaves per body; more: compared as bytes */
#define HL_NOISE_MAX        256      /* noise fields learned per service */

enum hl_diff_body { HL_DIFF_BODY_BYTES = 0, HL_DIFF_BODY_JSON, HL_DIFF_BODY_NONE };

/* What is compared ("shadow.compare"). */
struct hl_diff_conf {
    bool status;                         /* default true */
    bool all_headers;                    /* "headers": ["*"]: every field but the
                                          * framing and hop-by-hop ones */
    unsigned nheaders;
    char headers[HL_DIFF_HEADERS_MAX][HL_DIFF_NAME_MAX];        /* lower case */
    unsigned nignore_headers;            /* with all_headers: left out */
    char ignore_headers[HL_DIFF_HEADERS_MAX][HL_DIFF_NAME_MAX];
    enum hl_diff_body body;              /* default bytes */
    unsigned nignore_json;
    char ignore_json[HL_DIFF_IGNORE_MAX][HL_DIFF_PATH_MAX];    /* "$.a.b", "$.items[*].ts",
                                          * "$.*.id": a path and everything below it */
    uint64_t max_bytes;                  /* a body past it is not compared */
};

/* Checks an ignore_json path: NULL when valid, else why not (static text). */
const char *hl_diff_path_check(const char *path);

struct hl_diff_header {
    char name[HL_DIFF_NAME_MAX];         /* lower case */
    uint64_t hash;                       /* of the whole value (repeated fields
                                          * joined with ", ") */
    char text[HL_DIFF_TEXT + 1];         /* its start, NUL-terminated */
    size_t len;                          /* whole value */
};

struct hl_diff_leaf {
    uint64_t path_hash;                  /* of the path, e.g. $.items[3].ts */
    uint64_t noise_hash;                 /* of the path with every index as [*] */
    uint64_t value_hash;                 /* of the canonical value */
    uint32_t path_off, text_off;         /* into <arena>: NUL-terminated */
};

/* One captured response; embedded by its owner, hl_diff_resp_init() first,
 * hl_diff_resp_free() last. */
struct hl_diff_resp {
    int status;                          /* 0: none */
    unsigned nheaders;
    struct hl_diff_header h[HL_DIFF_HEADERS_MAX];
    bool too_large;                      /* the body passed max_bytes */
    bool ended;                          /* hl_diff_resp_end() was called */
    uint64_t body_len;
    XXH3_state_t *xs;                    /* owned: bytes body hash while reading */
    uint64_t body_hash;                  /* after the end */
    char prefix[HL_DIFF_PREFIX];
    size_t prefix_len;
    char *buf;                           /* owned: JSON body while reading */
    size_t buf_len, buf_cap;
    bool json;                           /* parsed: <leaves> hold the body */
    struct hl_diff_leaf *leaves;         /* owned, sorted by path_hash */
    unsigned nleaves;
    char *arena;                         /* owned: paths and value texts */
    size_t arena_len, arena_cap;
};

void hl_diff_resp_init(struct hl_diff_resp *r, const struct hl_diff_conf *c);
void hl_diff_resp_free(struct hl_diff_resp *r);

/* The status, and one header field of the response head (call once per
 * field, in order; fields the conf does not compare are skipped). */
void hl_diff_resp_status(struct hl_diff_resp *r, int status);
void hl_diff_resp_header(struct hl_diff_resp *r, const struct hl_diff_conf *c,
                         const char *name, size_t nlen, const char *value, size_t vlen);

/* Body bytes, in order. Returns 0, or -1 once the body passed max_bytes
 * (the capture stops reading it: too_large). */
int hl_diff_resp_body(struct hl_diff_resp *r, const struct hl_diff_conf *c,
                      const void *p, size_t n);

/* The body is complete: finishes the hash or flattens the JSON. */
void hl_diff_resp_end(struct hl_diff_resp *r, const struct hl_diff_conf *c);

/* Noise learned from two servers of the same side: field keys, each the
 * hash of "status", "header:NAME", "body" or a JSON path with [*] for every
 * index, and its text to show. Embedded, zeroed to start. */
struct hl_noise {
    unsigned n;
    uint64_t key[HL_NOISE_MAX];
    char name[HL_NOISE_MAX][HL_DIFF_PATH_MAX];
    bool full;                           /* a field could not be added */
};

bool hl_noise_has(const struct hl_noise *n, uint64_t key);
/* Adds <key> named <name>; returns true when it is new. */
bool hl_noise_add(struct hl_noise *n, uint64_t key, const char *name);
/* Adds every key of <src> to <dst>; returns how many were new. */
unsigned hl_noise_merge(struct hl_noise *dst, const struct hl_noise *src);

/* One field that differs, with both sides' values to show. */
struct hl_diff_field {
    char name[HL_DIFF_PATH_MAX];         /* "status", "header:x-a", "body", "$.a.b" */
    char a[HL_DIFF_TEXT + 1];
    char b[HL_DIFF_TEXT + 1];
};

struct hl_diff_out {
    unsigned total;                      /* differing fields, noise left out */
    unsigned noise;                      /* differing fields that were noise */
    unsigned n;                          /* of them in <f> */
    struct hl_diff_field f[HL_DIFF_FIELDS_MAX];
};

/* Compares <a> with <b> (both ended, neither too large) as <c> says, leaving
 * out the fields in <noise> (NULL: none) and the ignore_json paths. Returns
 * out->total: 0 when they match. */
unsigned hl_diff_compare(const struct hl_diff_conf *c, const struct hl_diff_resp *a,
                         const struct hl_diff_resp *b, const struct hl_noise *noise,
                         struct hl_diff_out *out);

/* Learns as noise every field in which <a> and <b> (two servers of the
 * same side) differ. Returns how many keys were new. */
unsigned hl_diff_learn(const struct hl_diff_conf *c, const struct hl_diff_resp *a,
                       const struct hl_diff_resp *b, struct hl_noise *noise);

/* ---- the diff-rate window ------------------------------------------------
 * A ring of one-second buckets over window_s seconds counting comparisons
 * and those that differed; the same rules of time as health/window.h. */
#define HL_DIFFWIN_MAX_S 600

struct hl_diffwin {
    unsigned window_s;
    uint64_t newest_sec;
    struct { uint64_t sec; uint32_t compared, diffs; } b[HL_DIFFWIN_MAX_S];
};

struct hl_diff_stats {
    uint64_t compared, diffs;
    double rate;                         /* diffs / compared, 0 when none */
};

void hl_diffwin_init(struct hl_diffwin *w, unsigned window_s);
void hl_diffwin_push(struct hl_diffwin *w, uint64_t now_ms, bool differed);
void hl_diffwin_stats(const struct hl_diffwin *w, uint64_t now_ms, struct hl_diff_stats *out);
/* Adds <src> into <dst> second by second (same window_s). */
void hl_diffwin_merge(struct hl_diffwin *dst, const struct hl_diffwin *src);
void hl_diffwin_reset(struct hl_diffwin *w);

#endif
