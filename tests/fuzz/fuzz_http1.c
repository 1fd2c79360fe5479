/*
 * libFuzzer target for lib/http1.c: request heads, response heads and the
 * chunked decoder, each checked for split invariance.
 *
 * Every input is parsed whole and again as a prefix cut at a point derived
 * from the data (and, for short inputs, one byte more per call, as the proxy
 * does); the prefix must answer AGAIN until the deciding byte and then the
 * very same verdict, status and head_len. Parsed pointers must stay inside
 * the head. The chunked decoder runs over the input (or the body after a
 * parsed request or response head) whole and cut in two, and must stop at
 * the same byte with the same data delivered; h1_chunked_check() must find
 * the decoder's error and no other. Any difference calls abort().
 *
 * Built and run by tests/fuzz/run.sh.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/http1.h"

#define FUZZ_MAX_FIELDS 8u
#define FUZZ_MAX_URI    128u
#define BYTEWISE_MAX    160u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct h1_field g_fields[FUZZ_MAX_FIELDS];

static void
check(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_http1: %s\n", what);
        abort();
    }
}

static uint64_t
fnv1a(const uint8_t *p, size_t n, uint64_t h)
{
    size_t i;

    for (i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

struct head_result {
    enum h1_parse v;
    int status;
    size_t head_len;
};

static bool
same(struct head_result a, struct head_result b)
{
    return a.v == b.v && a.status == b.status && a.head_len == b.head_len;
}

static bool
inside(struct h1_iov v, const char *buf, size_t len)
{
    return v.len == 0 || (v.p >= buf && v.p + v.len <= buf + len);
}

static void
check_fields(const struct h1_field *f, size_t n, const char *buf, size_t head_len)
{
    size_t i;

    check(n <= FUZZ_MAX_FIELDS, "nfields over max_fields");
    for (i = 0; i < n; i++) {
        check(f[i].name.len > 0, "empty field name accepted");
        check(inside(f[i].name, buf, head_len) && inside(f[i].value, buf, head_len),
              "field outside the head");
    }
}

/* Parses <data>[0..<n>) from an exact-size heap copy. */
static struct head_result
req_once(const uint8_t *data, size_t n)
{
    struct h1_parse_limits lim = { FUZZ_MAX_FIELDS, FUZZ_MAX_URI };
    struct head_result res = { H1_PARSE_AGAIN, 0, 0 };
    char *buf = malloc(n ? n : 1);
    struct h1_req r;

    check(buf != NULL, "out of memory");
    if (n)
        memcpy(buf, data, n);
    r.fields = g_fields;
    res.v = h1_req_parse(&r, buf, n, &lim);
    if (res.v == H1_PARSE_BAD) {
        check(r.error != NULL, "BAD without error");
        check(r.status == 400 || r.status == 414 || r.status == 431 || r.status == 501 ||
              r.status == 505, "unexpected request status");
        res.status = r.status;
    } else if (res.v == H1_PARSE_DONE) {
        check(r.head_len >= 4 && r.head_len <= n, "head_len out of range");
        check(r.method.len > 0 && r.target.len > 0 && r.target.len <= FUZZ_MAX_URI,
              "method or target");
        check(inside(r.method, buf, r.head_len) && inside(r.target, buf, r.head_len) &&
              inside(r.host, buf, r.head_len), "request line outside the head");
        check(r.minor == 0 || r.minor == 1, "minor");
        check(r.framing == H1_BODY_NONE || r.framing == H1_BODY_LENGTH ||
              r.framing == H1_BODY_CHUNKED, "request framing");
        check(r.minor == 0 || r.host.len > 0, "HTTP/1.1 without Host");
        check(r.content_length <= 0x7fffffffffffffffull, "content_length");
        check_fields(r.fields, r.nfields, buf, r.head_len);
        res.head_len = r.head_len;
    }
    free(buf);
    return res;
}

static struct head_result
resp_once(const uint8_t *data, size_t n, bool req_head)
{
    struct h1_parse_limits lim = { FUZZ_MAX_FIELDS, FUZZ_MAX_URI };
    struct head_result res = { H1_PARSE_AGAIN, 0, 0 };
    char *buf = malloc(n ? n : 1);
    struct h1_resp r;

    check(buf != NULL, "out of memory");
    if (n)
        memcpy(buf, data, n);
    r.fields = g_fields;
    res.v = h1_resp_parse(&r, buf, n, &lim, req_head);
    if (res.v == H1_PARSE_BAD) {
        check(r.error != NULL, "BAD without error");
    } else if (res.v == H1_PARSE_DONE) {
        check(r.head_len >= 4 && r.head_len <= n, "head_len out of range");
        check(r.status >= 100 && r.status <= 999, "status out of range");
        check(inside(r.reason, buf, r.head_len), "reason outside the head");
        check(r.framing != H1_BODY_CLOSE || !r.keep_alive, "keep-alive with close framing");
        check(!req_head || r.framing == H1_BODY_NONE, "body after HEAD");
        check_fields(r.fields, r.nfields, buf, r.head_len);
        res.head_len = r.head_len;
    }
    free(buf);
    return res;
}

typedef struct head_result head_fn(const uint8_t *data, size_t n, bool flag);

static struct head_result
req_fn(const uint8_t *data, size_t n, bool flag)
{
    (void)flag;
    return req_once(data, n);
}

static struct head_result
resp_fn(const uint8_t *data, size_t n, bool flag)
{
    return resp_once(data, n, flag);
}

/* Whole, split at <cut>, and (short inputs) one byte more per call. */
static struct head_result
check_head(head_fn *fn, const uint8_t *data, size_t size, size_t cut, bool flag)
{
    struct head_result whole = fn(data, size, flag), r;
    size_t n, decide = size + 1;

    r = fn(data, cut, flag);
    check(r.v == H1_PARSE_AGAIN || same(r, whole), "split verdict differs");
    if (size <= BYTEWISE_MAX) {
        for (n = 0; n <= size; n++) {
            r = fn(data, n, flag);
            if (decide > size && r.v != H1_PARSE_AGAIN)
                decide = n;
            check(n < decide ? r.v == H1_PARSE_AGAIN : same(r, whole),
                  "byte-by-byte verdict differs");
        }
        check(whole.v == H1_PARSE_AGAIN || decide <= size, "undecided");
    }
    return whole;
}

struct chunk_run {
    enum h1_chunk v;
    size_t consumed;
    size_t delivered;
    uint64_t hash;
    const char *error;
};

/* The decoder over <in>, the readable end first at <cut> then at <len>. */
static struct chunk_run
chunk_run(const uint8_t *in, size_t len, size_t cut, unsigned max_ext)
{
    struct chunk_run res = { H1_CHUNK_AGAIN, 0, 0, 0xcbf29ce484222325ull, NULL };
    struct h1_chunked st;
    size_t off = 0, end = cut, used, take;
    enum h1_chunk v;
    char *win;

    h1_chunked_init(&st);
    st.max_ext = max_ext;
    for (;;) {
        win = malloc(end - off ? end - off : 1);
        check(win != NULL, "out of memory");
        if (end > off)
            memcpy(win, in + off, end - off);
        v = h1_chunked_parse(&st, win, end - off, &used);
        free(win);
        check(used <= end - off, "chunked used too much");
        off += used;
        if (v == H1_CHUNK_DATA) {
            check(st.data_left > 0, "DATA with nothing left");
            take = end - off < st.data_left ? end - off : (size_t)st.data_left;
            res.hash = fnv1a(in + off, take, res.hash);
            res.delivered += take;
            off += take;
            h1_chunked_data_consumed(&st, take);
            if (take > 0)
                continue;
        } else if (v == H1_CHUNK_DONE || v == H1_CHUNK_BAD) {
            check(v == H1_CHUNK_DONE || st.error != NULL, "BAD without error");
            res.v = v;
            res.consumed = off;
            res.error = st.error;
            return res;
        } else {
            check(off == end, "AGAIN before the end");
        }
        if (end == len) {
            res.consumed = off;
            return res;
        }
        end = len;
    }
}

static void
check_chunked(const uint8_t *in, size_t len, size_t cut, unsigned max_ext)
{
    struct chunk_run a = chunk_run(in, len, len, max_ext);
    struct chunk_run b = chunk_run(in, len, cut, max_ext);
    char *copy = malloc(len ? len : 1);

    check(a.v == b.v && a.consumed == b.consumed && a.delivered == b.delivered &&
          a.hash == b.hash && a.error == b.error, "chunked split differs");
    /* h1_chunked_check() finds exactly the decoder's error, or none */
    check(copy != NULL, "out of memory");
    if (len)
        memcpy(copy, in, len);
    check(h1_chunked_check(copy, len, max_ext) == (a.v == H1_CHUNK_BAD ? a.error : NULL),
          "h1_chunked_check differs from the decoder");
    free(copy);
}

/* The framing of a response parsed from <data>, and its head_len. */
static enum h1_framing
resp_framing(const uint8_t *data, size_t size, size_t *head_len)
{
    struct h1_parse_limits lim = { FUZZ_MAX_FIELDS, FUZZ_MAX_URI };
    struct h1_resp r;

    r.fields = g_fields;
    if (h1_resp_parse(&r, (const char *)data, size, &lim, false) != H1_PARSE_DONE)
        return H1_BODY_NONE;
    *head_len = r.head_len;
    return r.framing;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t h = fnv1a(data, size, 0xcbf29ce484222325ull);
    size_t cut = (size_t)(h % (size + 1));
    struct head_result req;
    size_t hl = 0;

    req = check_head(req_fn, data, size, cut, false);
    check_head(resp_fn, data, size, cut, (h >> 32) & 1);

    check_chunked(data, size, cut, (h >> 33) & 1 ? 16 : 0);
    if (req.v == H1_PARSE_DONE) {
        size_t blen = size - req.head_len;

        check_chunked(data + req.head_len, blen, (size_t)((h >> 8) % (blen + 1)), 0);
    }
    if (resp_framing(data, size, &hl) == H1_BODY_CHUNKED)
        check_chunked(data + hl, size - hl, (size_t)((h >> 16) % (size - hl + 1)), 0);
    return 0;
}
