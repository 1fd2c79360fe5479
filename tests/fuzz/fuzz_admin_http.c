/*
 * libFuzzer target for the admin endpoint's parsers: admin/http_parse.c
 * (request heads and the JSON depth pre-check) and admin/tokens.c (the
 * token file).
 *
 * A request head is parsed whole and as every prefix cut at a point derived
 * from the data (and byte by byte for short inputs); a prefix must answer
 * AGAIN or the very same verdict, status and head length. Parsed slices must
 * lie inside the head, a DONE head is at most ADM_HP_HEAD_MAX bytes and ends
 * with CRLFCRLF, and a body over the limit is never accepted. The depth
 * check must agree with a cut in two (a prefix that fails implies the whole
 * fails). The token parser must either refuse with a FILE:LINE message or
 * give at least one token that its own check finds. Any difference calls
 * abort().
 *
 * Built and run by tests/fuzz/run.sh.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/http_parse.h"
#include "admin/tokens.h"

#define BYTEWISE_MAX 256u

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
inside(const struct adm_hp_slice *s, const char *buf, size_t head_len)
{
    if (s->p == NULL)
        return s->len == 0;
    return s->p >= buf && s->p + s->len <= buf + head_len;
}

static void
same_or_again(const char *buf, size_t cut, enum adm_hp_result whole,
              const struct adm_hp_req *w)
{
    struct adm_hp_req r;
    enum adm_hp_result res = adm_hp_parse(buf, cut, &r);

    if (res == ADM_HP_AGAIN)
        return;
    check(res == whole, "a prefix gave another verdict");
    if (res == ADM_HP_BAD)
        check(r.status == w->status, "a prefix gave another status");
    else
        check(r.head_len == w->head_len, "a prefix gave another head length");
}

static void
fuzz_head(const char *buf, size_t size)
{
    struct adm_hp_req w;
    enum adm_hp_result whole = adm_hp_parse(buf, size, &w);
    size_t i, cut;

    if (whole == ADM_HP_DONE) {
        check(w.head_len >= 4 && w.head_len <= ADM_HP_HEAD_MAX && w.head_len <= size,
              "head length out of range");
        check(memcmp(buf + w.head_len - 4, "\r\n\r\n", 4) == 0, "head does not end in CRLFCRLF");
        check(inside(&w.method, buf, w.head_len) && inside(&w.target, buf, w.head_len)
              && inside(&w.path, buf, w.head_len)
              && inside(&w.authorization, buf, w.head_len), "slice outside the head");
        check(w.method.len > 0 && w.path.len > 0 && w.path.p[0] == '/', "empty method or path");
        check(w.content_length <= ADM_HP_BODY_MAX, "body over the limit accepted");
        check(w.minor == 0 || w.minor == 1, "version");
    } else if (whole == ADM_HP_BAD) {
        check(w.error != NULL, "no error text");
        check(w.status == 400 || w.status == 411 || w.status == 413 || w.status == 431
              || w.status == 505, "unexpected status");
    } else {
        check(size <= ADM_HP_HEAD_MAX, "AGAIN past the head limit");
    }
    if (size == 0)
        return;
    cut = (size_t)buf[0] * 131u % size;
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
    size_t cut = size > 1 ? (size_t)buf[1] * 257u % size : 0;

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
