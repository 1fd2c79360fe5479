/*
 * libFuzzer target for the admin endpoint's request path: admin/http_req.c
 * over lib/http1.c (request heads, the bearer token, the JSON depth
 * pre-check of the body) and admin/tokens.c (the token check of a presented
 * bearer, and the token file).
 *
 * A request head is parsed whole and as every prefix cut at a point derived
 * from the data (and byte by byte for short inputs); a prefix must answer
 * AGAIN or the very same verdict, status and head length. On DONE: parsed
 * slices lie inside the head, the head is at most ADM_REQ_HEAD_MAX bytes and
 * ends with CRLFCRLF, the target is a path and the path its prefix, no
 * chunked body and no body over the limit is accepted; the bearer token
 * lies inside the Authorization value and is checked against a fixed token
 * set (the right secret must find its token, whatever else must not crash);
 * the bytes after the head go through the depth check as the body would.
 * The depth check must agree with a cut in two (a prefix that fails implies
 * the whole fails). The token parser must either refuse with a FILE:LINE
 * message or give at least one token that its own check finds. Any
 * difference calls abort().
 *
 * Built and run by tests/fuzz/run.sh.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/http_req.h"
#include "admin/tokens.h"

#define BYTEWISE_MAX 256u
#define JSON_DEPTH   8u                /* the endpoint's ADM_HTTP_JSON_DEPTH */
#define READ_SECRET  "read-secret-0123456789"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_admin_http: %s\n", what);
        abort();
    }
}

static bool
inside(const struct h1_iov *s, const char *buf, size_t head_len)
{
    if (s->p == NULL)
        return s->len == 0;
    return s->p >= buf && s->p + s->len <= buf + head_len;
}

/* The token set requests are checked against: built once, kept. */
static const struct adm_tokens *
tokens(void)
{
    static const char text[] =
        "# fuzz\nreader read " READ_SECRET "\n"
        "ops operate sha256:"
        "0000000000000000000000000000000000000000000000000000000000000000\n";
    static struct adm_tokens *t;
    char err[256];

    if (t == NULL) {
        t = adm_tokens_parse(text, sizeof(text) - 1, "fuzz-tokens", err, sizeof(err));
        check(t != NULL, "the fixed token set was refused");
    }
    return t;
}

static void
same_or_again(const char *buf, size_t cut, enum h1_parse whole, const struct adm_req *w)
{
    static struct adm_req r;               /* 2.6 KiB: not on the fuzzer's stack */
    enum h1_parse res = adm_req_parse(&r, buf, cut);

    if (res == H1_PARSE_AGAIN)
        return;
    check(res == whole, "a prefix gave another verdict");
    if (res == H1_PARSE_BAD)
        check(r.status == w->status, "a prefix gave another status");
    else
        check(r.h1.head_len == w->h1.head_len, "a prefix gave another head length");
}

/* What the endpoint does with a head it accepted: the token, the body. */
static void
use_request(const struct adm_req *w, const char *buf, size_t size)
{
    const char *why = NULL, *name;
    struct h1_iov tok = { NULL, 0 };
    enum adm_level lv = ADM_LEVEL__COUNT;
    size_t blen = size - w->h1.head_len;

    if (adm_req_bearer(w, &tok, &why) == 0) {
        check(tok.len > 0 && inside(&tok, buf, w->h1.head_len)
              && tok.p >= w->authorization.p
              && tok.p + tok.len <= w->authorization.p + w->authorization.len,
              "bearer token outside the Authorization value");
        name = adm_tokens_check(tokens(), tok.p, tok.len, &lv);
        if (tok.len == strlen(READ_SECRET) && memcmp(tok.p, READ_SECRET, tok.len) == 0)
            check(name != NULL && strcmp(name, "reader") == 0 && lv == ADM_LEVEL_READ,
                  "the right secret did not find its token");
        else
            check(name == NULL, "a wrong secret found a token");
    } else {
        check(why != NULL, "a refused token without a reason");
    }
    if (w->h1.framing == H1_BODY_LENGTH && w->h1.content_length < blen)
        blen = (size_t)w->h1.content_length;
    (void)adm_json_depth_ok(buf + w->h1.head_len, blen, JSON_DEPTH);
}

static void
fuzz_head(const char *buf, size_t size)
{
    static struct adm_req w;
    enum h1_parse whole = adm_req_parse(&w, buf, size);
    size_t i, cut;

    if (whole == H1_PARSE_DONE) {
        check(w.h1.head_len >= 4 && w.h1.head_len <= ADM_REQ_HEAD_MAX
              && w.h1.head_len <= size, "head length out of range");
        check(memcmp(buf + w.h1.head_len - 4, "\r\n\r\n", 4) == 0,
              "head does not end in CRLFCRLF");
        check(inside(&w.h1.method, buf, w.h1.head_len)
              && inside(&w.h1.target, buf, w.h1.head_len)
              && inside(&w.path, buf, w.h1.head_len)
              && inside(&w.authorization, buf, w.h1.head_len), "slice outside the head");
        check(w.h1.method.len > 0 && w.path.len > 0 && w.path.p[0] == '/',
              "empty method or path");
        check(w.path.p == w.h1.target.p && w.path.len <= w.h1.target.len,
              "the path is not a prefix of the target");
        check(w.h1.framing == H1_BODY_NONE || w.h1.framing == H1_BODY_LENGTH,
              "a body that is not Content-Length accepted");
        check(w.h1.framing != H1_BODY_LENGTH || w.h1.content_length <= ADM_REQ_BODY_MAX,
              "body over the limit accepted");
        check(w.h1.minor == 0 || w.h1.minor == 1, "version");
        use_request(&w, buf, size);
    } else if (whole == H1_PARSE_BAD) {
        check(w.error != NULL, "no error text");
        check(w.status == 400 || w.status == 411 || w.status == 413 || w.status == 431
              || w.status == 501 || w.status == 505, "unexpected status");
    } else {
        check(size < ADM_REQ_HEAD_MAX, "AGAIN past the head limit");
    }
    if (size == 0)
        return;
    cut = (size_t)(unsigned char)buf[0] * 131u % size;
    same_or_again(buf, cut, whole, &w);
    if (size <= BYTEWISE_MAX)
        for (i = 0; i < size; i++)
            same_or_again(buf, i, whole, &w);
}

static void
fuzz_depth(const char *buf, size_t size)
{
    unsigned d = size > 0 ? (unsigned char)buf[0] % 12u : 8u;
    bool whole = adm_json_depth_ok(buf, size, d);
    size_t cut = size > 1 ? (size_t)(unsigned char)buf[1] * 257u % size : 0;

    if (!adm_json_depth_ok(buf, cut, d))
        check(!whole, "depth: a prefix too deep but the whole not");
    check(adm_json_depth_ok(buf, size, d + 1) || !whole, "depth: not monotonic");
}

static void
fuzz_tokens(const char *buf, size_t size)
{
    char err[512];
    struct adm_tokens *t = adm_tokens_parse(buf, size, "fuzz", err, sizeof(err));
    enum adm_level lv;

    if (t == NULL) {
        check(strncmp(err, "fuzz", 4) == 0, "token error does not name the file");
        return;
    }
    check(adm_tokens_count(t) > 0, "an empty token set was accepted");
    /* a presented token is any bytes: must never crash */
    (void)adm_tokens_check(t, buf, size, &lv);
    adm_tokens_free(t);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);

    if (buf == NULL)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    fuzz_head(buf, size);
    fuzz_depth(buf, size);
    if (size <= 4096)
        fuzz_tokens(buf, size);
    free(buf);
    return 0;
}
