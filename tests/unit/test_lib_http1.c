/*
 * Unit tests for lib/http1.c: the strict head parser and chunked decoder.
 *
 * Every table case is parsed whole, then fed one byte more at a time (the
 * caller's way: each call gets the longer prefix), then at 50 seeded random
 * split points; verdict, status and head_len must be the same every way, and
 * a prefix must answer AGAIN exactly until the byte that decides. Each call
 * gets its bytes in a heap block of exactly that size, so a read past <len>
 * is caught under ASan (make asan).
 *
 * The llhttp conformance corpus (tests/corpora/) is replayed message
 * by message; every disagreement must be listed in corpus_exceptions[] with
 * its reason, and every listed case must still disagree.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "tests/tools/b64.h"

#include "lib/http1.h"

#define TEST_MAX_FIELDS 32u
#define TEST_MAX_URI    256u
#define FIELDS_CAP      128u
#define RANDOM_SPLITS   50

/* ---- helpers ------------------------------------------------------------ */

static uint64_t
splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A heap copy of exactly <n> bytes (ASan sees any read past it). */
static char *
exact_copy(const char *p, size_t n)
{
    char *c = malloc(n ? n : 1);

    assert_non_null(c);
    if (n)
        memcpy(c, p, n);
    return c;
}

static bool
iov_is(struct h1_iov v, const char *s)
{
    if (s == NULL)
        return v.len == 0;
    return v.len == strlen(s) && memcmp(v.p, s, v.len) == 0;
}

/* Names of the fields flagged hop-by-hop, comma-joined in field order. */
static void
hop_names(const struct h1_field *f, size_t n, char *out, size_t cap)
{
    size_t i, o = 0;

    out[0] = '\0';
    for (i = 0; i < n; i++) {
        if (!(f[i].flags & H1_FF_HOP))
            continue;
        o += (size_t)snprintf(out + o, cap - o, "%s%.*s", o ? "," : "",
                              (int)f[i].name.len, f[i].name.p);
        if (o >= cap)
            fail_msg("hop list too long");
    }
}

/* ---- request table ------------------------------------------------------ */

struct req_case {
    const char *name;
    const char *raw;
    size_t len;
    unsigned max_fields;         /* 0: TEST_MAX_FIELDS */
    unsigned max_uri;            /* 0: TEST_MAX_URI */
    enum h1_parse verdict;
    int status;                  /* BAD only */
    /* DONE only */
    const char *method;
    const char *target;
    const char *host;            /* NULL: no Host */
    int minor;
    enum h1_framing framing;
    uint64_t cl;
    bool ka;
    bool upgrade;
    bool expect;
    bool trailers;
    const char *hop;             /* NULL: none */
    const char *fname;           /* optional field to look up ... */
    const char *fval;            /* ... and its expected (trimmed) value */
    size_t body;                 /* bytes after the head in <raw> */
};

#define RQ_BAD(N, R, S) \
    { .name = (N), .raw = (R), .len = sizeof(R) - 1, .verdict = H1_PARSE_BAD, .status = (S) }
#define RQ_OK(N, R) .name = (N), .raw = (R), .len = sizeof(R) - 1, .verdict = H1_PARSE_DONE

#define H11 " HTTP/1.1\r\nHost: a\r\n"
#define RAW(R) .raw = (R), .len = sizeof(R) - 1

static const struct req_case req_cases[] = {
    /* request line */
    RQ_BAD("leading space", " GET / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    /* found by fuzz_http1: an empty method before a valid target */
    RQ_BAD("empty method", " /PltU HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    RQ_BAD("double SP after method", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    RQ_BAD("double SP before version", "GET /  HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    RQ_BAD("trailing SP after version", "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400),
    RQ_BAD("HT in target", "GET /\tx HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    RQ_BAD("HT as separator", "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    RQ_BAD("bare LF after request line", "GET / HTTP/1.1\nHost: a\r\n\r\n", 400),
    RQ_BAD("bare CR after request line", "GET / HTTP/1.1\rHost: a\r\n\r\n", 400),
    RQ_BAD("CR CR LF", "GET / HTTP/1.1\r\r\nHost: a\r\n\r\n", 400),
    RQ_BAD("lowercase version", "GET / http/1.1\r\nHost: a\r\n\r\n", 400),
    RQ_BAD("HTTP/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    RQ_BAD("HTTP/1.2", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505),
    RQ_BAD("HTTP/0.9", "GET / HTTP/0.9\r\n\r\n", 505),
    RQ_BAD("HTTP/5.6 without CRLF", "GET / HTTP/5.6", 505),
    RQ_BAD("HTTP/1.10", "GET / HTTP/1.10\r\nHost: a\r\n\r\n", 400),
    RQ_BAD("HTTP/11.1", "GET / HTTP/11.1\r\nHost: a\r\n\r\n", 400),
    RQ_BAD("HTTP/1 only", "GET / HTTP/1\r\nHost: a\r\n\r\n", 400),
    RQ_BAD("HTTP/1.x", "GET / HTTP/1.x\r\nHost: a\r\n\r\n", 400),
    RQ_BAD("HTTP/ without digits", "GET / HTTP/\r\n\r\n", 400),
    RQ_BAD("ICE protocol", "SOURCE / ICE/1.0\r\nHost: a\r\n\r\n", 400),
    RQ_BAD("HTTP/0.9 request line", "GET /\r\n\r\n", 400),
    RQ_BAD("UTF-8 in target", "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    RQ_BAD("DEL in target", "GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    RQ_BAD("NUL in target", "GET /\0 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    RQ_BAD("fragment", "GET /forums/1?page=1#posts-17408 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    RQ_BAD("empty fragment", "GET /# HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    RQ_BAD("fragment decided early", "GET /a#", 400),
    RQ_BAD("fragment in absolute-form", "GET http://a/x#y HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    RQ_BAD("fragment right after authority", "GET http://a#y HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    RQ_BAD("fragment as target", "GET # HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    RQ_BAD("fragment after asterisk", "OPTIONS *# HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    RQ_BAD("relative target", "GET x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    RQ_BAD("asterisk with GET", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    RQ_BAD("asterisk with tail", "OPTIONS *x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    RQ_BAD("ftp scheme", "GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    RQ_BAD("scheme prefix only", "GET http HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    RQ_BAD("userinfo in absolute-form", "GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    RQ_BAD("empty authority", "GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    RQ_BAD("absolute-form Host mismatch", "GET http://a/ HTTP/1.1\r\nHost: b\r\n\r\n", 400),
    RQ_BAD("absolute-form port mismatch", "GET http://a:81/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    RQ_BAD("absolute-form without Host", "GET http://a/ HTTP/1.0\r\n\r\n", 400),
    RQ_BAD("CONNECT", "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 501),
    RQ_BAD("CONNECT decided early", "CONNECT ", 501),
    RQ_BAD("authority-form with GET", "GET a:443 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    RQ_BAD("@ in method", "G@T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    RQ_BAD("no SP after method", "GET/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    RQ_BAD("UTF-8 in method", "G\xc3\x89T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    RQ_BAD("two empty lines first", "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    RQ_BAD("leading bare LF", "\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    RQ_BAD("leading bare CR", "\rGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    RQ_BAD("empty head", "\r\n\r\n", 400),
    RQ_BAD("bare LF ends head", "GET / HTTP/1.1\r\nHost: a\r\n\n", 400),
    RQ_BAD("bare CR ends head", "GET / HTTP/1.1\r\nHost: a\r\n\rX", 400),
    { .name = "target over max_uri", RAW("GET /123456789 HTTP/1.1\r\nHost: a\r\n\r\n"),
      .max_uri = 8, .verdict = H1_PARSE_BAD, .status = 414 },
    { .name = "414 before the end of the target", RAW("GET /12345678"),
      .max_uri = 8, .verdict = H1_PARSE_BAD, .status = 414 },

    /* Host */
    RQ_BAD("missing Host", "GET / HTTP/1.1\r\n\r\n", 400),
    RQ_BAD("missing Host with fields", "GET / HTTP/1.1\r\nX: y\r\n\r\n", 400),
    RQ_BAD("duplicate Host", "GET /" H11 "Host: a\r\n\r\n", 400),
    RQ_BAD("duplicate Host, 1.0", "GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n", 400),
    RQ_BAD("Host with space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    RQ_BAD("Host with slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
    RQ_BAD("Host with userinfo", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400),
    RQ_BAD("empty Host", "GET / HTTP/1.1\r\nHost:\r\n\r\n", 400),
    RQ_BAD("Host port too big", "GET / HTTP/1.1\r\nHost: a:99999\r\n\r\n", 400),
    RQ_BAD("Host port too long", "GET / HTTP/1.1\r\nHost: a:000080\r\n\r\n", 400),
    RQ_BAD("Host empty port", "GET / HTTP/1.1\r\nHost: a:\r\n\r\n", 400),
    RQ_BAD("Host bad port", "GET / HTTP/1.1\r\nHost: a:8x\r\n\r\n", 400),
    RQ_BAD("Host unclosed IP-literal", "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 400),
    RQ_BAD("Host bad pct-encoding", "GET / HTTP/1.1\r\nHost: a%4\r\n\r\n", 400),
    RQ_BAD("Host only a port", "GET / HTTP/1.1\r\nHost: :80\r\n\r\n", 400),

    /* field syntax */
    RQ_BAD("SP before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
    RQ_BAD("HT before colon", "GET /" H11 "X\t: a\r\n\r\n", 400),
    RQ_BAD("empty field name", "GET /" H11 ": a\r\n\r\n", 400),
    RQ_BAD("CTL in field name", "GET /" H11 "X\x01Y: a\r\n\r\n", 400),
    RQ_BAD("paren in field name", "GET /" H11 "X(Y): a\r\n\r\n", 400),
    RQ_BAD("UTF-8 in field name", "GET /" H11 "X\xc3\xa9: a\r\n\r\n", 400),
    RQ_BAD("NUL in value", "GET /" H11 "X: a\0b\r\n\r\n", 400),
    RQ_BAD("DEL in value", "GET /" H11 "X: a\x7f" "b\r\n\r\n", 400),
    RQ_BAD("VT in value", "GET /" H11 "X: a\x0b" "b\r\n\r\n", 400),
    RQ_BAD("FF as whole value", "GET /" H11 "X: \x0c\r\n\r\n", 400),
    RQ_BAD("bare LF in value", "GET /" H11 "X: a\nY: b\r\n\r\n", 400),
    RQ_BAD("bare CR in value", "GET /" H11 "X: a\rY: b\r\n\r\n", 400),
    RQ_BAD("bare CR in empty value", "GET /" H11 "X:\rY: b\r\n\r\n", 400),
    RQ_BAD("obs-fold", "GET /" H11 "X: a\r\n b\r\n\r\n", 400),
    RQ_BAD("obs-fold with HT", "GET /" H11 "X: a\r\n\tb\r\n\r\n", 400),
    RQ_BAD("whitespace before first field", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400),
    RQ_BAD("field without colon", "GET /" H11 "NoColon\r\n\r\n", 400),

    /* Content-Length */
    RQ_BAD("CL negative", "POST /" H11 "Content-Length: -1\r\n\r\n", 400),
    RQ_BAD("CL plus sign", "POST /" H11 "Content-Length: +1\r\n\r\n", 400),
    RQ_BAD("CL inner space", "POST /" H11 "Content-Length: 1 2\r\n\r\n", 400),
    RQ_BAD("CL list", "POST /" H11 "Content-Length: 1,1\r\n\r\n", 400),
    RQ_BAD("CL hex", "POST /" H11 "Content-Length: 0x10\r\n\r\n", 400),
    RQ_BAD("CL empty", "POST /" H11 "Content-Length:\r\n\r\n", 400),
    RQ_BAD("CL 20 digits", "POST /" H11 "Content-Length: 00000000000000000001\r\n\r\n", 400),
    RQ_BAD("CL 2^63", "POST /" H11 "Content-Length: 9223372036854775808\r\n\r\n", 400),
    RQ_BAD("CL overflow before the end of the head",
           "PUT /url" H11 "Content-Length: 1000000000000000000000\r\n", 400),
    RQ_BAD("CL identical duplicate", "POST /" H11 "Content-Length: 5\r\nContent-Length: 5\r\n\r\n", 400),
    RQ_BAD("CL differing duplicate", "POST /" H11 "Content-Length: 1\r\nContent-Length: 2\r\n", 400),
    RQ_BAD("CL then TE", "POST /" H11 "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    RQ_BAD("TE then CL", "POST /" H11 "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400),

    /* framing field names with "_" for "-" (smuggling through backends that fold them) */
    RQ_BAD("Transfer_Encoding", "POST /" H11 "Transfer_Encoding: chunked\r\n\r\n", 400),
    RQ_BAD("transfer_encoding any case", "POST /" H11 "tRANSFER_eNCODING: chunked\r\n\r\n", 400),
    RQ_BAD("Content_Length", "POST /" H11 "Content_Length: 5\r\n\r\nhello", 400),
    RQ_BAD("content_length with a real one", "POST /" H11 "Content-Length: 5\r\ncontent_length: 0\r\n\r\nhello", 400),
    RQ_BAD("Transfer_Encoding with Content-Length", "POST /" H11 "Content-Length: 5\r\nTransfer_Encoding: chunked\r\n\r\n", 400),
    RQ_BAD("Content_Length decided at its CRLF", "POST /" H11 "Content_Length: 5\r\n", 400),
    RQ_BAD("Transfer_Encoding on HTTP/1.0", "POST / HTTP/1.0\r\nTransfer_Encoding: chunked\r\n\r\n", 400),

    /* Transfer-Encoding */
    RQ_BAD("TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    RQ_BAD("TE chunked twice", "POST /" H11 "Transfer-Encoding: chunked, chunked\r\n\r\n", 400),
    RQ_BAD("TE chunked not last", "POST /" H11 "Transfer-Encoding: chunked, gzip\r\n\r\n", 400),
    RQ_BAD("TE without chunked", "POST /" H11 "Transfer-Encoding: gzip\r\n\r\n", 400),
    RQ_BAD("TE identity", "POST /" H11 "Transfer-Encoding: identity\r\n\r\n", 400),
    RQ_BAD("TE chunkedchunked", "POST /" H11 "Transfer-Encoding: chunkedchunked\r\n\r\n", 400),
    RQ_BAD("TE gzip then chunked", "POST /" H11 "Transfer-Encoding: gzip, chunked\r\n\r\n", 501),
    RQ_BAD("TE empty", "POST /" H11 "Transfer-Encoding:\r\n\r\n", 400),
    RQ_BAD("TE trailing comma", "POST /" H11 "Transfer-Encoding: chunked,\r\n\r\n", 400),
    RQ_BAD("TE leading comma", "POST /" H11 "Transfer-Encoding: ,chunked\r\n\r\n", 400),
    RQ_BAD("TE empty element", "POST /" H11 "Transfer-Encoding: gzip,,chunked\r\n\r\n", 400),
    RQ_BAD("TE with parameter", "POST /" H11 "Transfer-Encoding: chunked;q=1\r\n\r\n", 400),
    RQ_BAD("TE with inner space", "POST /" H11 "Transfer-Encoding: chun ked\r\n\r\n", 400),
    RQ_BAD("TE fields chunked twice",
           "POST /" H11 "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    RQ_BAD("TE fields chunked then gzip",
           "POST /" H11 "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
    RQ_BAD("TE fields gzip then chunked",
           "POST /" H11 "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", 501),

    /* Connection */
    RQ_BAD("Connection names Content-Length", "POST /" H11 "Connection: content-length\r\n\r\n", 400),
    RQ_BAD("Connection names TE", "POST /" H11 "Connection: close, Transfer-Encoding\r\n\r\n", 400),
    RQ_BAD("Connection with parameter", "GET /" H11 "Connection: close;x\r\n\r\n", 400),
    RQ_BAD("Connection with inner space", "GET /" H11 "Connection: keep alive\r\n\r\n", 400),

    /* limits */
    { .name = "too many fields", RAW("GET /" H11 "A: 1\r\nB: 2\r\n\r\n"),
      .max_fields = 2, .verdict = H1_PARSE_BAD, .status = 431 },
    { .name = "431 before the end of the head", RAW("GET /" H11 "A: 1\r\nB"),
      .max_fields = 2, .verdict = H1_PARSE_BAD, .status = 431 },

    /* valid */
    { RQ_OK("basic", "GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
      .method = "GET", .target = "/", .host = "a", .minor = 1, .ka = true },
    { RQ_OK("HTTP/1.0 without Host", "GET /x?y=1 HTTP/1.0\r\nUser-Agent: t\r\n\r\n"),
      .method = "GET", .target = "/x?y=1", .minor = 0 },
    { RQ_OK("HTTP/1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"),
      .method = "GET", .target = "/", .minor = 0, .ka = true, .hop = "Connection" },
    { RQ_OK("HTTP/1.0 keep-alive and close", "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"),
      .method = "GET", .target = "/", .minor = 0, .hop = "Connection" },
    { RQ_OK("close", "GET /" H11 "Connection: close\r\n\r\n"),
      .method = "GET", .target = "/", .host = "a", .minor = 1, .hop = "Connection" },
    { RQ_OK("close with HT", "GET /" H11 "Connection: close\t\r\n\r\n"),
      .method = "GET", .target = "/", .host = "a", .minor = 1, .hop = "Connection" },
    { RQ_OK("Connection empty elements", "GET /" H11 "Connection: , close ,,\r\n\r\n"),
      .method = "GET", .target = "/", .host = "a", .minor = 1, .hop = "Connection" },
    { RQ_OK("Content-Length with body", "POST /p" H11 "Content-Length: 5\r\n\r\nhello"),
      .method = "POST", .target = "/p", .host = "a", .minor = 1, .framing = H1_BODY_LENGTH,
      .cl = 5, .ka = true, .hop = "Content-Length", .body = 5 },
    { RQ_OK("Content-Length leading zeros", "PUT /url" H11 "Content-Length: 007\r\n\r\n"),
      .method = "PUT", .target = "/url", .host = "a", .minor = 1, .framing = H1_BODY_LENGTH,
      .cl = 7, .ka = true, .hop = "Content-Length" },
    { RQ_OK("Content-Length 2^63-1", "PUT /" H11 "Content-Length: 9223372036854775807\r\n\r\n"),
      .method = "PUT", .target = "/", .host = "a", .minor = 1, .framing = H1_BODY_LENGTH,
      .cl = 9223372036854775807ull, .ka = true, .hop = "Content-Length" },
    { RQ_OK("Content-Length 0", "POST /" H11 "content-length:\t0\t \r\n\r\n"),
      .method = "POST", .target = "/", .host = "a", .minor = 1, .framing = H1_BODY_LENGTH,
      .cl = 0, .ka = true, .hop = "content-length" },
    { RQ_OK("chunked", "POST /" H11 "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
      .method = "POST", .target = "/", .host = "a", .minor = 1, .framing = H1_BODY_CHUNKED,
      .ka = true, .hop = "Transfer-Encoding", .body = 15 },
    { RQ_OK("chunked any case, OWS", "POST /" H11 "transfer-encoding:  Chunked \t\r\n\r\n"),
      .method = "POST", .target = "/", .host = "a", .minor = 1, .framing = H1_BODY_CHUNKED,
      .ka = true, .hop = "transfer-encoding" },
    { RQ_OK("one leading CRLF", "\r\nGET /url HTTP/1.1\r\nHost: a\r\n\r\n"),
      .method = "GET", .target = "/url", .host = "a", .minor = 1, .ka = true },
    { RQ_OK("OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"),
      .method = "OPTIONS", .target = "*", .host = "a", .minor = 1, .ka = true },
    { RQ_OK("absolute-form", "GET http://a/x HTTP/1.1\r\nHost: a\r\n\r\n"),
      .method = "GET", .target = "http://a/x", .host = "a", .minor = 1, .ka = true },
    { RQ_OK("absolute-form default port", "GET http://a:80/ HTTP/1.1\r\nHost: a\r\n\r\n"),
      .method = "GET", .target = "http://a:80/", .host = "a", .minor = 1, .ka = true },
    { RQ_OK("absolute-form https any case", "GET HTTPS://A.example:443 HTTP/1.1\r\nHost: a.EXAMPLE\r\n\r\n"),
      .method = "GET", .target = "HTTPS://A.example:443", .host = "a.EXAMPLE", .minor = 1, .ka = true },
    { RQ_OK("absolute-form query only", "GET http://h.org?x=1 HTTP/1.1\r\nHost: h.org\r\n\r\n"),
      .method = "GET", .target = "http://h.org?x=1", .host = "h.org", .minor = 1, .ka = true },
    { RQ_OK("absolute-form HTTP/1.0 with Host", "GET http://h:8/ HTTP/1.0\r\nHost: h:8\r\n\r\n"),
      .method = "GET", .target = "http://h:8/", .host = "h:8", .minor = 0 },
    { RQ_OK("Host with port", "GET / HTTP/1.1\r\nHost: example.com:8080\r\n\r\n"),
      .method = "GET", .target = "/", .host = "example.com:8080", .minor = 1, .ka = true },
    { RQ_OK("Host IPv6", "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n"),
      .method = "GET", .target = "/", .host = "[::1]:8080", .minor = 1, .ka = true },
    { RQ_OK("Host sub-delims and pct", "GET / HTTP/1.1\r\nHOST: 0.0.0.0=5000%41\r\n\r\n"),
      .method = "GET", .target = "/", .host = "0.0.0.0=5000%41", .minor = 1, .ka = true },
    { RQ_OK("Host with HT", "GET / HTTP/1.1\r\nHost:\ta\t\r\n\r\n"),
      .method = "GET", .target = "/", .host = "a", .minor = 1, .ka = true },
    { RQ_OK("Expect 100-continue", "PUT /" H11 "Expect: 100-Continue\r\nContent-Length: 1\r\n\r\n"),
      .method = "PUT", .target = "/", .host = "a", .minor = 1, .framing = H1_BODY_LENGTH, .cl = 1,
      .ka = true, .expect = true, .hop = "Content-Length" },
    { RQ_OK("Expect on HTTP/1.0 ignored", "PUT / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n"),
      .method = "PUT", .target = "/", .minor = 0 },
    { RQ_OK("unknown expectation passed on", "GET /" H11 "Expect: foo\r\n\r\n"),
      .method = "GET", .target = "/", .host = "a", .minor = 1, .ka = true,
      .fname = "expect", .fval = "foo" },
    { RQ_OK("upgrade", "GET /ws" H11 "Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n"),
      .method = "GET", .target = "/ws", .host = "a", .minor = 1, .ka = true, .upgrade = true,
      .hop = "Connection,Upgrade" },
    { RQ_OK("upgrade on HTTP/1.0 ignored", "GET /ws HTTP/1.0\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"),
      .method = "GET", .target = "/ws", .minor = 0, .hop = "Connection,Upgrade" },
    { RQ_OK("upgrade on HTTP/1.0 keep-alive ignored", "GET /ws HTTP/1.0\r\nHost: a\r\nUpgrade: h2c\r\nConnection: keep-alive, upgrade\r\n\r\n"),
      .method = "GET", .target = "/ws", .host = "a", .minor = 0, .ka = true, .hop = "Upgrade,Connection" },
    { RQ_OK("Upgrade without Connection", "GET /ws" H11 "Upgrade: websocket\r\n\r\n"),
      .method = "GET", .target = "/ws", .host = "a", .minor = 1, .ka = true, .hop = "Upgrade" },
    { RQ_OK("Connection upgrade without Upgrade", "GET /" H11 "Connection: upgrade\r\n\r\n"),
      .method = "GET", .target = "/", .host = "a", .minor = 1, .ka = true, .hop = "Connection" },
    { RQ_OK("nominated fields", "GET /" H11 "X-Foo: 1\r\nConnection: keep-alive, x-foo\r\nX-Bar: 2\r\nx-FOO: 3\r\n\r\n"),
      .method = "GET", .target = "/", .host = "a", .minor = 1, .ka = true,
      .hop = "X-Foo,Connection,x-FOO" },
    { RQ_OK("Host and X-Forwarded-* stay", "GET /" H11 "X-Forwarded-For: 1.2.3.4\r\nConnection: Host, X-Forwarded-For\r\n\r\n"),
      .method = "GET", .target = "/", .host = "a", .minor = 1, .ka = true, .hop = "Connection" },
    { RQ_OK("two Connection fields", "GET /" H11 "Connection: x-a\r\nX-A: 1\r\nConnection: close\r\n\r\n"),
      .method = "GET", .target = "/", .host = "a", .minor = 1, .hop = "Connection,X-A,Connection" },
    { RQ_OK("TE trailers", "GET /" H11 "TE: trailers\r\n\r\n"),
      .method = "GET", .target = "/", .host = "a", .minor = 1, .ka = true, .trailers = true, .hop = "TE" },
    { RQ_OK("TE list with trailers", "GET /" H11 "TE: gzip;q=0.5, Trailers\r\n\r\n"),
      .method = "GET", .target = "/", .host = "a", .minor = 1, .ka = true, .trailers = true, .hop = "TE" },
    { RQ_OK("TE without trailers", "GET /" H11 "TE: gzip\r\n\r\n"),
      .method = "GET", .target = "/", .host = "a", .minor = 1, .ka = true, .hop = "TE" },
    { RQ_OK("Keep-Alive and Proxy-Connection", "GET /" H11 "Keep-Alive: 300\r\nProxy-Connection: close\r\n\r\n"),
      .method = "GET", .target = "/", .host = "a", .minor = 1, .ka = true,
      .hop = "Keep-Alive,Proxy-Connection" },
    { RQ_OK("OWS trimmed", "GET /" H11 "X:  \t v w \t \r\n\r\n"),
      .method = "GET", .target = "/", .host = "a", .minor = 1, .ka = true, .fname = "x", .fval = "v w" },
    { RQ_OK("obs-text in value", "GET /" H11 "X: D\xc3\xbcsseldorf\xff\r\n\r\n"),
      .method = "GET", .target = "/", .host = "a", .minor = 1, .ka = true,
      .fname = "X", .fval = "D\xc3\xbcsseldorf\xff" },
    { RQ_OK("empty value", "GET /" H11 "Pragma:\r\nX: \r\n\r\n"),
      .method = "GET", .target = "/", .host = "a", .minor = 1, .ka = true, .fname = "x", .fval = "" },
    { RQ_OK("visible ASCII target", "GET /with_\"q\"|x?a=\\b{}[]`^~ HTTP/1.1\r\nHost: a\r\n\r\n"),
      .method = "GET", .target = "/with_\"q\"|x?a=\\b{}[]`^~", .host = "a", .minor = 1, .ka = true },
    { .name = "target at max_uri", RAW("GET /1234567 HTTP/1.1\r\nHost: a\r\n\r\n"),
      .max_uri = 8, .verdict = H1_PARSE_DONE,
      .method = "GET", .target = "/1234567", .host = "a", .minor = 1, .ka = true },
    { .name = "fields at max_fields", RAW("GET /" H11 "A: 1\r\n\r\n"),
      .max_fields = 2, .verdict = H1_PARSE_DONE,
      .method = "GET", .target = "/", .host = "a", .minor = 1, .ka = true, .fname = "a", .fval = "1" },
    { RQ_OK("extension method", "M-SEARCH /x HTTP/1.1\r\nHost: a\r\n\r\n"),
      .method = "M-SEARCH", .target = "/x", .host = "a", .minor = 1, .ka = true },
    { RQ_OK("lowercase method is a token", "get / HTTP/1.1\r\nHost: a\r\n\r\n"),
      .method = "get", .target = "/", .host = "a", .minor = 1, .ka = true },
    /* any token is a method (RFC 9110 §9.1); only the framing fields say
     * whether a body follows */
    { RQ_OK("WebDAV method with a length", "PROPFIND /d" H11 "Content-Length: 3\r\n\r\nabc"),
      .method = "PROPFIND", .target = "/d", .host = "a", .minor = 1, .framing = H1_BODY_LENGTH,
      .cl = 3, .ka = true, .hop = "Content-Length", .body = 3 },
    { RQ_OK("made-up method, chunked", "FOO_BAR /" H11 "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
      .method = "FOO_BAR", .target = "/", .host = "a", .minor = 1, .framing = H1_BODY_CHUNKED,
      .ka = true, .hop = "Transfer-Encoding", .body = 5 },
    { RQ_OK("tchar-only method", "!#$%&'*+-.^_`|~09az /" H11 "\r\n"),
      .method = "!#$%&'*+-.^_`|~09az", .target = "/", .host = "a", .minor = 1, .ka = true },
    { RQ_OK("lowercase head is not HEAD", "head /" H11 "\r\n"),
      .method = "head", .target = "/", .host = "a", .minor = 1, .ka = true },
    { RQ_OK("tchar field names", "GET /" H11 "X-$Proto_~!#%&'*+.^`|: 1\r\n\r\n"),
      .method = "GET", .target = "/", .host = "a", .minor = 1, .ka = true,
      .fname = "x-$proto_~!#%&'*+.^`|", .fval = "1" },
    { RQ_OK("underscore names that are not framing", "GET /" H11 "X_Content_Length: 1\r\nContent_Lengths: 2\r\nTransfer_Encodin: 3\r\n\r\n"),
      .method = "GET", .target = "/", .host = "a", .minor = 1, .ka = true,
      .fname = "content_lengths", .fval = "2" },
    { RQ_OK("next request follows", "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\n"),
      .method = "GET", .target = "/", .host = "a", .minor = 1, .ka = true, .body = 16 },
};

/* ---- response table ----------------------------------------------------- */

struct resp_case {
    const char *name;
    const char *raw;
    size_t len;
    bool req_head;
    unsigned max_fields;
    enum h1_parse verdict;
    int status;
    const char *reason;
    int minor;
    enum h1_framing framing;
    uint64_t cl;
    bool ka;
    const char *hop;
    size_t body;
};

#define RS_BAD(N, R) \
    { .name = (N), .raw = (R), .len = sizeof(R) - 1, .verdict = H1_PARSE_BAD }
#define RS_OK(N, R) .name = (N), .raw = (R), .len = sizeof(R) - 1, .verdict = H1_PARSE_DONE

static const struct resp_case resp_cases[] = {
    RS_BAD("bare LF after status line", "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n"),
    RS_BAD("bare CR after status line", "HTTP/1.1 200 OK\rContent-Length: 0\r\n\r\n"),
    RS_BAD("four-digit status", "HTTP/1.1 2000 OK\r\n\r\n"),
    RS_BAD("two-digit status", "HTTP/1.1 20 OK\r\n\r\n"),
    RS_BAD("status below 100", "HTTP/1.1 099 X\r\n\r\n"),
    RS_BAD("double SP before status", "HTTP/1.1  200 OK\r\n\r\n"),
    RS_BAD("HTTP/2.0", "HTTP/2.0 200 OK\r\n\r\n"),
    RS_BAD("HTTP/0.9", "HTTP/0.9 200 OK\r\n\r\n"),
    RS_BAD("HTTP/01.1", "HTTP/01.1 200 OK\r\n\r\n"),
    RS_BAD("HTTP/1.01", "HTTP/1.01 200 OK\r\n\r\n"),
    RS_BAD("HT after version", "HTTP/1.1\t200 OK\r\n\r\n"),
    RS_BAD("lowercase http", "http/1.1 200 OK\r\n\r\n"),
    RS_BAD("HTP", "HTP/1.1 200 OK\r\n\r\n"),
    RS_BAD("RTSP", "RTSP/1.1 200 OK\r\n\r\n"),
    RS_BAD("CTL in reason", "HTTP/1.1 200 O\x01K\r\n\r\n"),
    RS_BAD("no SP before reason", "HTTP/1.1 200OK\r\n\r\n"),
    RS_BAD("CL with TE", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"),
    RS_BAD("CL with TE on 304", "HTTP/1.1 304 NM\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n"),
    RS_BAD("differing CL", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
    RS_BAD("invalid CL", "HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n"),
    RS_BAD("TE gzip, chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
    RS_BAD("TE chunked twice", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip, chunked\r\n\r\n"),
    RS_BAD("TE in HTTP/1.0", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
    RS_BAD("Transfer_Encoding", "HTTP/1.1 200 OK\r\nTransfer_Encoding: chunked\r\nContent-Length: 5\r\n\r\n"),
    RS_BAD("content_length", "HTTP/1.1 200 OK\r\ncontent_length: 5\r\n\r\n"),
    RS_BAD("TE malformed", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked;\r\n\r\n"),
    RS_BAD("obs-fold", "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n"),
    RS_BAD("whitespace after status line", "HTTP/1.1 200 OK\r\n Host: foo"),
    RS_BAD("SP before colon", "HTTP/1.1 200 OK\r\nX : y\r\n\r\n"),
    RS_BAD("space in field name", "HTTP/1.1 200 OK\r\nen-US Content-Type: text/xml\r\n\r\n"),
    RS_BAD("bare CR in value", "HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n"),
    RS_BAD("bare CR ends head", "HTTP/1.1 200 OK\r\n\rX"),
    RS_BAD("Connection names Content-Length", "HTTP/1.1 200 OK\r\nConnection: Content-Length\r\n\r\n"),
    RS_BAD("two empty lines first", "\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"),
    RS_BAD("CR before status line", "\rHTTP/1.1 200 OK\r\n\r\n"),
    { .name = "too many fields", RAW("HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\n\r\n"),
      .max_fields = 1, .verdict = H1_PARSE_BAD },

    { RS_OK("200 with length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
      .status = 200, .reason = "OK", .minor = 1, .framing = H1_BODY_LENGTH, .cl = 5, .ka = true,
      .hop = "Content-Length", .body = 5 },
    { RS_OK("200 until close", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhello"),
      .status = 200, .reason = "OK", .minor = 1, .framing = H1_BODY_CLOSE, .body = 5 },
    { RS_OK("204", "HTTP/1.1 204 No Content\r\n\r\n"),
      .status = 204, .reason = "No Content", .minor = 1, .framing = H1_BODY_NONE, .ka = true },
    { RS_OK("304 with CL", "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n"),
      .status = 304, .reason = "Not Modified", .minor = 1, .framing = H1_BODY_NONE, .ka = true,
      .hop = "Content-Length" },
    { RS_OK("100 Continue", "HTTP/1.1 100 Continue\r\n\r\n"),
      .status = 100, .reason = "Continue", .minor = 1, .framing = H1_BODY_NONE, .ka = true },
    { RS_OK("101", "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\nbinary"),
      .status = 101, .reason = "Switching Protocols", .minor = 1, .framing = H1_BODY_NONE,
      .ka = true, .hop = "Connection,Upgrade", .body = 6 },
    { RS_OK("HEAD response", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"), .req_head = true,
      .status = 200, .reason = "OK", .minor = 1, .framing = H1_BODY_NONE, .ka = true,
      .hop = "Content-Length" },
    { RS_OK("HEAD response chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), .req_head = true,
      .status = 200, .reason = "OK", .minor = 1, .framing = H1_BODY_NONE, .ka = true,
      .hop = "Transfer-Encoding" },
    { RS_OK("chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
      .status = 200, .reason = "OK", .minor = 1, .framing = H1_BODY_CHUNKED, .ka = true,
      .hop = "Transfer-Encoding", .body = 5 },
    { RS_OK("chunked not last", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, deflate\r\n\r\n"),
      .status = 200, .reason = "OK", .minor = 1, .framing = H1_BODY_CLOSE, .hop = "Transfer-Encoding" },
    { RS_OK("chunked not last, two fields", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n"),
      .status = 200, .reason = "OK", .minor = 1, .framing = H1_BODY_CLOSE,
      .hop = "Transfer-Encoding,Transfer-Encoding" },
    { RS_OK("TE without chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunkedchunked\r\n\r\n"),
      .status = 200, .reason = "OK", .minor = 1, .framing = H1_BODY_CLOSE, .hop = "Transfer-Encoding" },
    { RS_OK("1.0 with length", "HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\n"),
      .status = 200, .reason = "OK", .minor = 0, .framing = H1_BODY_LENGTH, .cl = 3,
      .hop = "Content-Length" },
    { RS_OK("1.0 keep-alive", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\n"),
      .status = 200, .reason = "OK", .minor = 0, .framing = H1_BODY_LENGTH, .cl = 3, .ka = true,
      .hop = "Connection,Content-Length" },
    { RS_OK("1.1 close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"),
      .status = 200, .reason = "OK", .minor = 1, .framing = H1_BODY_LENGTH, .cl = 0,
      .hop = "Connection,Content-Length" },
    { RS_OK("no reason", "HTTP/1.1 301\r\nContent-Length: 0\r\n\r\n"),
      .status = 301, .reason = "", .minor = 1, .framing = H1_BODY_LENGTH, .ka = true,
      .hop = "Content-Length" },
    { RS_OK("empty reason", "HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n"),
      .status = 200, .reason = "", .minor = 1, .framing = H1_BODY_LENGTH, .ka = true,
      .hop = "Content-Length" },
    { RS_OK("reason with SP and obs-text", "HTTP/1.1 500 Ori\xc3\xabntatie  probleem\t\r\nContent-Length: 0\r\n\r\n"),
      .status = 500, .reason = "Ori\xc3\xabntatie  probleem\t", .minor = 1, .framing = H1_BODY_LENGTH,
      .ka = true, .hop = "Content-Length" },
    { RS_OK("leading CRLF", "\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
      .status = 200, .reason = "OK", .minor = 1, .framing = H1_BODY_LENGTH, .ka = true,
      .hop = "Content-Length" },
    { RS_OK("status 999", "HTTP/1.1 999 Odd\r\nContent-Length: 0\r\n\r\n"),
      .status = 999, .reason = "Odd", .minor = 1, .framing = H1_BODY_LENGTH, .ka = true,
      .hop = "Content-Length" },
    { RS_OK("nominated field", "HTTP/1.1 200 OK\r\nConnection: x-trace\r\nX-Trace: 1\r\nContent-Length: 0\r\n\r\n"),
      .status = 200, .reason = "OK", .minor = 1, .framing = H1_BODY_LENGTH, .ka = true,
      .hop = "Connection,X-Trace,Content-Length" },
    { RS_OK("Host in a response is just a field", "HTTP/1.1 200 OK\r\nHost: a b\r\nHost: c\r\nContent-Length: 0\r\n\r\n"),
      .status = 200, .reason = "OK", .minor = 1, .framing = H1_BODY_LENGTH, .ka = true,
      .hop = "Content-Length" },
};

/* ---- the split-invariance driver ---------------------------------------- */

struct head_result {
    enum h1_parse v;
    int status;
    size_t head_len;
};

static struct head_result
run_req(struct h1_req *r, struct h1_field *fields, const char *raw, size_t n,
        const struct h1_parse_limits *lim)
{
    struct head_result res;
    char *copy = exact_copy(raw, n);

    r->fields = fields;
    res.v = h1_req_parse(r, copy, n, lim);
    res.status = res.v == H1_PARSE_BAD ? r->status : 0;
    res.head_len = res.v == H1_PARSE_DONE ? r->head_len : 0;
    if (res.v == H1_PARSE_BAD)
        assert_non_null(r->error);
    free(copy);
    return res;
}

static struct head_result
run_resp(struct h1_resp *r, struct h1_field *fields, const char *raw, size_t n,
         const struct h1_parse_limits *lim, bool req_head)
{
    struct head_result res;
    char *copy = exact_copy(raw, n);

    r->fields = fields;
    res.v = h1_resp_parse(r, copy, n, lim, req_head);
    res.status = 0;
    res.head_len = res.v == H1_PARSE_DONE ? r->head_len : 0;
    if (res.v == H1_PARSE_BAD)
        assert_non_null(r->error);
    free(copy);
    return res;
}

typedef struct head_result head_fn(const void *c, const char *raw, size_t n);

static bool
same(struct head_result a, struct head_result b)
{
    return a.v == b.v && a.status == b.status && a.head_len == b.head_len;
}

/* Runs <raw> whole, byte by byte and at RANDOM_SPLITS seeded split points.
 * Returns the whole-input result; fails the test on any difference. */
static struct head_result
check_splits(const char *name, head_fn *fn, const void *c, const char *raw, size_t len,
             uint64_t seed)
{
    struct head_result whole = fn(c, raw, len), r;
    size_t n, decide = len + 1, k;
    int i;

    /* one more byte per call: AGAIN until the deciding byte, then the same verdict */
    for (n = 0; n <= len; n++) {
        r = fn(c, raw, n);
        if (decide > len && r.v != H1_PARSE_AGAIN)
            decide = n;
        if (n < decide) {
            if (r.v != H1_PARSE_AGAIN)
                fail_msg("%s: prefix %zu gave %d, expected AGAIN", name, n, r.v);
        } else if (!same(r, whole)) {
            fail_msg("%s: prefix %zu gave %d/%d/%zu, whole gave %d/%d/%zu", name, n,
                     r.v, r.status, r.head_len, whole.v, whole.status, whole.head_len);
        }
    }
    if (whole.v != H1_PARSE_AGAIN && decide > len)
        fail_msg("%s: no prefix decided", name);

    /* two calls: a random prefix, then everything */
    for (i = 0; i < RANDOM_SPLITS; i++) {
        k = (size_t)(splitmix64(&seed) % (len + 1));
        r = fn(c, raw, k);
        if (k < decide ? r.v != H1_PARSE_AGAIN : !same(r, whole))
            fail_msg("%s: split at %zu gave %d (decides at %zu)", name, k, r.v, decide);
        r = fn(c, raw, len);
        if (!same(r, whole))
            fail_msg("%s: whole after split at %zu differs", name, k);
    }
    return whole;
}

static struct h1_field g_fields[FIELDS_CAP];

static struct h1_parse_limits
req_limits(const struct req_case *c)
{
    struct h1_parse_limits lim = {
        .max_fields = c->max_fields ? c->max_fields : TEST_MAX_FIELDS,
        .max_uri = c->max_uri ? c->max_uri : TEST_MAX_URI,
    };

    return lim;
}

static struct head_result
req_case_fn(const void *vc, const char *raw, size_t n)
{
    const struct req_case *c = vc;
    struct h1_parse_limits lim = req_limits(c);
    struct h1_req r;

    return run_req(&r, g_fields, raw, n, &lim);
}

static void
check_req_values(const struct req_case *c)
{
    struct h1_parse_limits lim = req_limits(c);
    struct h1_req r;
    const struct h1_field *f;
    char hops[512];

    r.fields = g_fields;
    assert_int_equal(h1_req_parse(&r, c->raw, c->len, &lim), H1_PARSE_DONE);
    if (!iov_is(r.method, c->method) || !iov_is(r.target, c->target))
        fail_msg("%s: method/target '%.*s' '%.*s'", c->name, (int)r.method.len, r.method.p,
                 (int)r.target.len, r.target.p);
    if (!iov_is(r.host, c->host))
        fail_msg("%s: host '%.*s'", c->name, (int)r.host.len, r.host.p);
    if (r.minor != c->minor || r.framing != c->framing || r.content_length != c->cl)
        fail_msg("%s: minor %d framing %d cl %llu", c->name, r.minor, r.framing,
                 (unsigned long long)r.content_length);
    if (r.keep_alive != c->ka || r.upgrade != c->upgrade || r.expect_continue != c->expect ||
        r.te_trailers != c->trailers)
        fail_msg("%s: ka %d upgrade %d expect %d trailers %d", c->name, r.keep_alive,
                 r.upgrade, r.expect_continue, r.te_trailers);
    if (r.head_len != c->len - c->body)
        fail_msg("%s: head_len %zu", c->name, r.head_len);
    hop_names(r.fields, r.nfields, hops, sizeof hops);
    if (strcmp(hops, c->hop ? c->hop : "") != 0)
        fail_msg("%s: hop fields '%s'", c->name, hops);
    if (c->fname != NULL) {
        f = h1_field_find(r.fields, r.nfields, c->fname);
        if (f == NULL || !iov_is(f->value, c->fval))
            fail_msg("%s: field %s", c->name, c->fname);
    }
}

static void
test_request_table(void **state)
{
    size_t i, nbad = 0, nok = 0;
    struct head_result w;
    uint64_t seed = 0x5eed0001;

    (void)state;
    for (i = 0; i < sizeof req_cases / sizeof req_cases[0]; i++) {
        const struct req_case *c = &req_cases[i];

        w = check_splits(c->name, req_case_fn, c, c->raw, c->len, seed + i);
        if (w.v != c->verdict || w.status != c->status)
            fail_msg("%s: verdict %d status %d, expected %d %d", c->name, w.v, w.status,
                     c->verdict, c->status);
        if (c->verdict == H1_PARSE_DONE) {
            check_req_values(c);
            nok++;
        } else {
            nbad++;
        }
    }
    print_message("request table: %zu malformed, %zu valid\n", nbad, nok);
    assert_true(nbad >= 80);
    assert_true(nok >= 40);
}

static struct head_result
resp_case_fn(const void *vc, const char *raw, size_t n)
{
    const struct resp_case *c = vc;
    struct h1_parse_limits lim = { .max_fields = c->max_fields ? c->max_fields : TEST_MAX_FIELDS };
    struct h1_resp r;

    return run_resp(&r, g_fields, raw, n, &lim, c->req_head);
}

static void
test_response_table(void **state)
{
    size_t i, nbad = 0, nok = 0;
    struct head_result w;
    uint64_t seed = 0x5eed0002;
    struct h1_parse_limits lim = { .max_fields = TEST_MAX_FIELDS };
    struct h1_resp r;
    char hops[512];

    (void)state;
    for (i = 0; i < sizeof resp_cases / sizeof resp_cases[0]; i++) {
        const struct resp_case *c = &resp_cases[i];

        w = check_splits(c->name, resp_case_fn, c, c->raw, c->len, seed + i);
        if (w.v != c->verdict)
            fail_msg("%s: verdict %d, expected %d", c->name, w.v, c->verdict);
        if (c->verdict != H1_PARSE_DONE) {
            nbad++;
            continue;
        }
        nok++;
        r.fields = g_fields;
        assert_int_equal(h1_resp_parse(&r, c->raw, c->len, &lim, c->req_head), H1_PARSE_DONE);
        if (r.status != c->status || !iov_is(r.reason, c->reason) || r.minor != c->minor)
            fail_msg("%s: status %d reason '%.*s' minor %d", c->name, r.status,
                     (int)r.reason.len, r.reason.p, r.minor);
        if (r.framing != c->framing || r.content_length != c->cl || r.keep_alive != c->ka)
            fail_msg("%s: framing %d cl %llu ka %d", c->name, r.framing,
                     (unsigned long long)r.content_length, r.keep_alive);
        if (r.head_len != c->len - c->body)
            fail_msg("%s: head_len %zu", c->name, r.head_len);
        hop_names(r.fields, r.nfields, hops, sizeof hops);
        if (strcmp(hops, c->hop ? c->hop : "") != 0)
            fail_msg("%s: hop fields '%s'", c->name, hops);
    }
    print_message("response table: %zu malformed, %zu valid\n", nbad, nok);
    assert_true(nbad >= 30);
    assert_true(nok >= 20);
}

/* Mutated valid heads: whatever the verdict, it must not depend on the split. */
static void
test_mutations_split_invariant(void **state)
{
    static const char alphabet[] = "\r\n \t:;,\"\\/@*0aZ\x7f\x80\xff";
    uint64_t seed = 0x6d757461;
    char buf[512];
    size_t i, len;
    int m, k;

    (void)state;
    for (i = 0; i < sizeof req_cases / sizeof req_cases[0]; i++) {
        const struct req_case *c = &req_cases[i];

        if (c->verdict != H1_PARSE_DONE || c->len > sizeof buf)
            continue;
        for (m = 0; m < 40; m++) {
            memcpy(buf, c->raw, c->len);
            len = c->len;
            for (k = 0; k < 1 + m % 3; k++) {
                uint64_t x = splitmix64(&seed);

                buf[x % len] = alphabet[(x >> 32) % (sizeof alphabet - 1)];
            }
            if (m % 5 == 4)
                len = (size_t)(splitmix64(&seed) % (len + 1));
            check_splits(c->name, req_case_fn, c, buf, len, splitmix64(&seed));
        }
    }
    for (i = 0; i < sizeof resp_cases / sizeof resp_cases[0]; i++) {
        const struct resp_case *c = &resp_cases[i];

        if (c->verdict != H1_PARSE_DONE || c->len > sizeof buf)
            continue;
        for (m = 0; m < 40; m++) {
            uint64_t x = splitmix64(&seed);

            memcpy(buf, c->raw, c->len);
            buf[x % c->len] = alphabet[(x >> 32) % (sizeof alphabet - 1)];
            check_splits(c->name, resp_case_fn, c, buf, c->len, splitmix64(&seed));
        }
    }
}

/* ---- chunked decoder ---------------------------------------------------- */

struct chunk_case {
    const char *name;
    const char *raw;
    size_t len;
    unsigned max_ext;
    enum h1_chunk verdict;       /* DONE, BAD, or AGAIN (input ends early) */
    const char *payload;
    size_t plen;
    size_t consumed;             /* bytes used up to DONE/BAD; 0: len */
};

#define CK(N, R, V, P) \
    { .name = (N), .raw = (R), .len = sizeof(R) - 1, .verdict = (V), .payload = (P), \
      .plen = sizeof(P) - 1 }
#define CK_BAD(N, R) CK(N, R, H1_CHUNK_BAD, "")

static const struct chunk_case chunk_cases[] = {
    CK("empty body", "0\r\n\r\n", H1_CHUNK_DONE, ""),
    CK("one chunk", "5\r\nhello\r\n0\r\n\r\n", H1_CHUNK_DONE, "hello"),
    CK("two chunks", "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", H1_CHUNK_DONE, "hello world"),
    CK("lowercase hex", "a\r\n0123456789\r\n0\r\n\r\n", H1_CHUNK_DONE, "0123456789"),
    CK("uppercase hex", "A\r\n0123456789\r\n0\r\n\r\n", H1_CHUNK_DONE, "0123456789"),
    CK("big hex", "1e\r\nall your base are belong to us\r\n0\r\n\r\n", H1_CHUNK_DONE,
       "all your base are belong to us"),
    CK("zeros in last chunk", "5\r\nhello\r\n000\r\n\r\n", H1_CHUNK_DONE, "hello"),
    CK("16 digits", "0000000000000003\r\nabc\r\n0\r\n\r\n", H1_CHUNK_DONE, "abc"),
    CK("CRLF inside data", "4\r\n\r\n\r\n\r\n0\r\n\r\n", H1_CHUNK_DONE, "\r\n\r\n"),
    CK("binary data", "3\r\n\0\xff\n\r\n0\r\n\r\n", H1_CHUNK_DONE, "\0\xff\n"),
    CK("extensions", "5;a=b;c;d=e\r\nhello\r\n0;last\r\n\r\n", H1_CHUNK_DONE, "hello"),
    CK("quoted extension", "5;x=\"I \\\"love\\\"; \\\\ext\";y=z\r\nhello\r\n0\r\n\r\n", H1_CHUNK_DONE, "hello"),
    CK("empty quoted extension", "1;x=\"\"\r\na\r\n0\r\n\r\n", H1_CHUNK_DONE, "a"),
    CK("obs-text in quoted extension", "1;x=\"\xc3\xa9\"\r\na\r\n0\r\n\r\n", H1_CHUNK_DONE, "a"),
    CK("trailers", "5\r\nhello\r\n0\r\nVary: *\r\nContent-Type: text/plain\r\n\r\n", H1_CHUNK_DONE, "hello"),
    CK("empty trailer value", "0\r\nX:\r\n\r\n", H1_CHUNK_DONE, ""),
    CK("obs-text in trailer", "0\r\nX: caf\xc3\xa9\r\n\r\n", H1_CHUNK_DONE, ""),
    { .name = "bytes after the end", RAW("1\r\nx\r\n0\r\n\r\nGET / HTTP/1.1\r\n"),
      .verdict = H1_CHUNK_DONE, .payload = "x", .plen = 1, .consumed = 11 },
    CK("incomplete data", "5\r\nhel", H1_CHUNK_AGAIN, "hel"),
    CK("incomplete size line", "5;a=\"b", H1_CHUNK_AGAIN, ""),
    CK("incomplete trailers", "0\r\nX: y\r\n", H1_CHUNK_AGAIN, ""),
    CK("missing last CRLF", "0\r\n\r", H1_CHUNK_AGAIN, ""),
    { .name = "extensions at max_ext", RAW("1;aaaaaaa\r\nx\r\n0\r\n\r\n"), .max_ext = 9,
      .verdict = H1_CHUNK_DONE, .payload = "x", .plen = 1 },

    CK_BAD("empty size", "\r\n"),
    CK_BAD("missing last-chunk", "3\r\nfoo\r\n\r\n"),
    CK_BAD("leading space", " 5\r\nhello\r\n0\r\n\r\n"),
    CK_BAD("space after size", "5 \r\nhello\r\n0\r\n\r\n"),
    CK_BAD("space before extension", "5 ;a\r\nhello\r\n0\r\n\r\n"),
    CK_BAD("HT after size", "5\t\r\nhello\r\n0\r\n\r\n"),
    CK_BAD("sign", "+5\r\nhello\r\n0\r\n\r\n"),
    CK_BAD("0x prefix", "0x5\r\nhello\r\n0\r\n\r\n"),
    CK_BAD("non-hex", "g\r\n"),
    CK_BAD("no size before extension", ";x\r\n"),
    CK_BAD("bare LF after size", "5\nhello\r\n0\r\n\r\n"),
    CK_BAD("bare CR after size", "5\rhello\r\n0\r\n\r\n"),
    CK_BAD("CR CR after size", "5\r\r\nhello\r\n0\r\n\r\n"),
    CK_BAD("data too long", "5\r\nhelloX\r\n0\r\n\r\n"),
    CK_BAD("bare LF after data", "5\r\nhello\n0\r\n\r\n"),
    CK_BAD("bare CR after data", "5\r\nhello\r0\r\n\r\n"),
    CK_BAD("17 digits", "00000000000000001\r\nx\r\n0\r\n\r\n"),
    CK_BAD("2^63", "8000000000000000\r\n"),
    CK_BAD("2^64", "10000000000000000\r\n"),
    CK_BAD("empty extension", "2;\r\naa\r\n0\r\n\r\n"),
    CK_BAD("extension without name", "2;=x\r\naa\r\n0\r\n\r\n"),
    CK_BAD("extension empty value", "2;a=\r\naa\r\n0\r\n\r\n"),
    CK_BAD("extension with space", "2;a b\r\naa\r\n0\r\n\r\n"),
    CK_BAD("space around =", "2;a = b\r\naa\r\n0\r\n\r\n"),
    CK_BAD("unterminated quote", "5;a=\"abc\r\nhello\r\n0\r\n\r\n"),
    CK_BAD("text after quote", "5;a=\"x\"y\r\nhello\r\n0\r\n\r\n"),
    CK_BAD("CTL in quote", "5;a=\"\x01\"\r\nhello\r\n0\r\n\r\n"),
    CK_BAD("CR in quoted-pair", "5;a=\"\\\r\"\r\nhello\r\n0\r\n\r\n"),
    CK_BAD("bad char in extension name", "5;a@b\r\nhello\r\n0\r\n\r\n"),
    CK_BAD("extension without ;", "5a=b\r\nhello\r\n0\r\n\r\n"),
    CK_BAD("extension after space without ;", "5 a=b\r\nhello\r\n0\r\n\r\n"),
    CK_BAD("two ; without a name", "5;;a=b\r\nhello\r\n0\r\n\r\n"),
    CK_BAD("; without a name after an extension", "5;a=b;\r\nhello\r\n0\r\n\r\n"),
    CK_BAD("quote closed, not opened", "5;a=b\"\r\nhello\r\n0\r\n\r\n"),
    CK_BAD("escaped closing quote", "5;a=\"b\\\"\r\nhello\r\n0\r\n\r\n"),
    CK_BAD("quote in the name", "5;a\"b\"=c\r\nhello\r\n0\r\n\r\n"),
    CK_BAD("trailer obs-fold", "0\r\nX: y\r\n z\r\n\r\n"),
    CK_BAD("trailer without colon", "0\r\nXY\r\n\r\n"),
    CK_BAD("trailer space before colon", "0\r\nX : y\r\n\r\n"),
    CK_BAD("trailer empty name", "0\r\n: y\r\n\r\n"),
    CK_BAD("trailer CTL", "0\r\nX: \x01\r\n\r\n"),
    CK_BAD("trailer bare LF", "0\r\nX: y\n\r\n"),
    CK_BAD("trailer bare CR", "0\r\nX: y\rZ\r\n\r\n"),
    CK_BAD("bare LF ends body", "0\r\n\n"),
    CK_BAD("bare CR ends body", "0\r\n\rX"),
    { .name = "extensions over max_ext", RAW("1;aaaaaaaa\r\nx\r\n0\r\n\r\n"), .max_ext = 9,
      .verdict = H1_CHUNK_BAD, .payload = "", .plen = 0 },
};

struct chunk_result {
    enum h1_chunk v;
    size_t consumed;
    char payload[256];
    size_t plen;
    const char *error;
};

/* Same stop and same data delivered, whatever the splits. */
static bool
same_chunk_run(const struct chunk_result *a, const struct chunk_result *b)
{
    return a->v == b->v && a->consumed == b->consumed && a->error == b->error &&
           a->plen == b->plen && memcmp(a->payload, b->payload, a->plen) == 0;
}

/* Feeds <in> to a fresh decoder, the readable end growing through <cuts>
 * (increasing offsets) and then to <len>; chunk data is moved out the way
 * the proxy does it. */
static void
chunk_feed(const char *in, size_t len, const size_t *cuts, size_t ncuts, unsigned max_ext,
           struct chunk_result *res)
{
    struct h1_chunked st;
    size_t off = 0, end = ncuts ? cuts[0] : len, ci = 0, used, take;
    enum h1_chunk v;
    char *win;

    h1_chunked_init(&st);
    st.max_ext = max_ext;
    res->plen = 0;
    res->error = NULL;
    for (;;) {
        win = exact_copy(in + off, end - off);
        v = h1_chunked_parse(&st, win, end - off, &used);
        free(win);
        assert_true(used <= end - off);
        off += used;
        if (v == H1_CHUNK_DATA) {
            take = end - off < st.data_left ? end - off : (size_t)st.data_left;
            assert_true(res->plen + take <= sizeof res->payload);
            memcpy(res->payload + res->plen, in + off, take);
            res->plen += take;
            off += take;
            h1_chunked_data_consumed(&st, take);
            if (take > 0)
                continue;
        } else if (v == H1_CHUNK_DONE || v == H1_CHUNK_BAD) {
            res->v = v;
            res->consumed = off;
            res->error = st.error;
            if (v == H1_CHUNK_BAD)
                assert_non_null(st.error);
            return;
        } else {
            assert_int_equal(off, end);
        }
        if (end == len) {
            res->v = H1_CHUNK_AGAIN;
            res->consumed = off;
            return;
        }
        while (ci < ncuts && cuts[ci] <= end)
            ci++;
        end = ci < ncuts ? cuts[ci] : len;
    }
}

static void
check_chunk_result(const struct chunk_case *c, const struct chunk_result *r, const char *how)
{
    size_t consumed = c->consumed ? c->consumed : c->len;

    if (r->v != c->verdict)
        fail_msg("%s (%s): verdict %d (%s)", c->name, how, r->v, r->error ? r->error : "");
    if (c->verdict != H1_CHUNK_BAD && r->consumed != consumed)
        fail_msg("%s (%s): consumed %zu", c->name, how, r->consumed);
    if (c->verdict != H1_CHUNK_BAD &&
        (r->plen != c->plen || memcmp(r->payload, c->payload, c->plen) != 0))
        fail_msg("%s (%s): payload differs", c->name, how);
}

static void
test_chunked_table(void **state)
{
    uint64_t seed = 0x5eed0003;
    struct chunk_result whole, r;
    size_t i, k, cuts[256], ncuts, nbad = 0, nok = 0;
    int s;

    (void)state;
    for (i = 0; i < sizeof chunk_cases / sizeof chunk_cases[0]; i++) {
        const struct chunk_case *c = &chunk_cases[i];

        chunk_feed(c->raw, c->len, NULL, 0, c->max_ext, &whole);
        check_chunk_result(c, &whole, "whole");

        ncuts = 0;
        for (k = 1; k < c->len && ncuts < 256; k++)
            cuts[ncuts++] = k;
        chunk_feed(c->raw, c->len, cuts, ncuts, c->max_ext, &r);
        check_chunk_result(c, &r, "byte by byte");
        if (!same_chunk_run(&r, &whole))
            fail_msg("%s: byte by byte differs from whole", c->name);

        for (s = 0; s < RANDOM_SPLITS; s++) {
            size_t n = 1 + (size_t)(splitmix64(&seed) % 4), j;

            for (j = 0, ncuts = 0; j < n; j++)
                cuts[ncuts++] = (size_t)(splitmix64(&seed) % (c->len + 1));
            /* sort the few cut points */
            for (j = 1; j < ncuts; j++)
                for (k = j; k > 0 && cuts[k - 1] > cuts[k]; k--) {
                    size_t t = cuts[k];

                    cuts[k] = cuts[k - 1];
                    cuts[k - 1] = t;
                }
            chunk_feed(c->raw, c->len, cuts, ncuts, c->max_ext, &r);
            check_chunk_result(c, &r, "random splits");
            if (!same_chunk_run(&r, &whole))
                fail_msg("%s: random split differs from whole", c->name);
        }
        if (c->verdict == H1_CHUNK_BAD)
            nbad++;
        else
            nok++;
    }
    print_message("chunked table: %zu invalid, %zu valid\n", nbad, nok);
}

/* h1_chunked_check() on the bytes after a response head and after a
 * request head: every chunk case gets the verdict and error the decoder
 * gives it, so a response's chunk lines are held to the request's rules. */
static void
test_chunked_check(void **state)
{
    static const char resp_head[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    static const char req_head[] = "POST /" H11 "Transfer-Encoding: chunked\r\n\r\n";
    struct h1_parse_limits lim = { .max_fields = TEST_MAX_FIELDS };
    static char buf[512];
    struct chunk_result whole;
    struct h1_resp rs;
    struct h1_req rq;
    const char *err;
    size_t i, n, cut;

    (void)state;
    for (i = 0; i < sizeof chunk_cases / sizeof chunk_cases[0]; i++) {
        const struct chunk_case *c = &chunk_cases[i];

        assert_true(sizeof resp_head - 1 + c->len <= sizeof buf);
        chunk_feed(c->raw, c->len, NULL, 0, c->max_ext, &whole);

        memcpy(buf, resp_head, sizeof resp_head - 1);
        memcpy(buf + sizeof resp_head - 1, c->raw, c->len);
        n = sizeof resp_head - 1 + c->len;
        rs.fields = g_fields;
        assert_int_equal(h1_resp_parse(&rs, buf, n, &lim, false), H1_PARSE_DONE);
        assert_int_equal(rs.framing, H1_BODY_CHUNKED);
        err = h1_chunked_check(buf + rs.head_len, n - rs.head_len, c->max_ext);
        if ((err != NULL) != (c->verdict == H1_CHUNK_BAD) || err != whole.error)
            fail_msg("%s: response check '%s', decoder '%s'", c->name, err ? err : "",
                     whole.error ? whole.error : "");

        memcpy(buf, req_head, sizeof req_head - 1);
        memcpy(buf + sizeof req_head - 1, c->raw, c->len);
        n = sizeof req_head - 1 + c->len;
        rq.fields = g_fields;
        assert_int_equal(h1_req_parse(&rq, buf, n, &lim), H1_PARSE_DONE);
        err = h1_chunked_check(buf + rq.head_len, n - rq.head_len, c->max_ext);
        if (err != whole.error)
            fail_msg("%s: request check '%s', decoder '%s'", c->name, err ? err : "",
                     whole.error ? whole.error : "");

        /* a prefix finds no error, or the same one */
        for (cut = 0; cut <= c->len; cut++) {
            char *copy = exact_copy(c->raw, cut);

            err = h1_chunked_check(copy, cut, c->max_ext);
            free(copy);
            if (err != NULL && err != whole.error)
                fail_msg("%s: prefix %zu gave '%s'", c->name, cut, err);
        }
    }
    /* bytes after the end of the body are not looked at */
    assert_null(h1_chunked_check("0\r\n\r\nzz \r\n", 11, 0));
    /* an error past the first chunk is found when it is at hand */
    assert_non_null(h1_chunked_check("1\r\nx\r\n1 \r\ny\r\n0\r\n\r\n", 21, 0));
    assert_null(h1_chunked_check(NULL, 0, 0));
}

/* Default extension limit (4096) and the trailer section limit (16384). */
static void
test_chunked_limits(void **state)
{
    static char buf[20000];
    struct chunk_result r;
    size_t n;

    (void)state;
    /* "1;" + name: 4096 extension bytes counting the ';' and the CR */
    n = 0;
    buf[n++] = '1';
    buf[n++] = ';';
    memset(buf + n, 'e', 4094);
    n += 4094;
    memcpy(buf + n, "\r\nx\r\n0\r\n\r\n", 10);
    chunk_feed(buf, n + 10, NULL, 0, 0, &r);
    assert_int_equal(r.v, H1_CHUNK_DONE);
    memmove(buf + 3, buf + 2, n + 10 - 2);
    buf[2] = 'e';
    chunk_feed(buf, n + 11, NULL, 0, 0, &r);
    assert_int_equal(r.v, H1_CHUNK_BAD);

    /* trailer section of exactly 16384 bytes, then one more */
    memcpy(buf, "0\r\nX: ", 6);
    n = 16384 - 7;                 /* "X: " + value + CRLF + CRLF = 16384 */
    memset(buf + 6, 'v', n);
    memcpy(buf + 6 + n, "\r\n\r\n", 4);
    chunk_feed(buf, 6 + n + 4, NULL, 0, 0, &r);
    assert_int_equal(r.v, H1_CHUNK_DONE);
    memset(buf + 6, 'v', n + 1);
    memcpy(buf + 6 + n + 1, "\r\n\r\n", 4);
    chunk_feed(buf, 6 + n + 5, NULL, 0, 0, &r);
    assert_int_equal(r.v, H1_CHUNK_BAD);
}

/* The proxy moves less than offered; the decoder keeps its place. */
static void
test_chunked_partial_consume(void **state)
{
    static const char body[] = "a\r\n0123456789\r\n0\r\n\r\n";
    struct h1_chunked st;
    size_t used, off;

    (void)state;
    h1_chunked_init(&st);
    assert_int_equal(h1_chunked_parse(&st, body, sizeof body - 1, &used), H1_CHUNK_DATA);
    assert_int_equal(used, 3);
    assert_int_equal(st.data_left, 10);
    off = used;
    h1_chunked_data_consumed(&st, 4);
    off += 4;
    assert_int_equal(h1_chunked_parse(&st, body + off, sizeof body - 1 - off, &used), H1_CHUNK_DATA);
    assert_int_equal(used, 0);
    assert_int_equal(st.data_left, 6);
    h1_chunked_data_consumed(&st, 0);
    h1_chunked_data_consumed(&st, 6);
    off += 6;
    assert_int_equal(h1_chunked_parse(&st, body + off, sizeof body - 1 - off, &used), H1_CHUNK_DONE);
    assert_int_equal(off + used, sizeof body - 1);
    assert_int_equal(h1_chunked_parse(&st, "x", 1, &used), H1_CHUNK_DONE);
    assert_int_equal(used, 0);

    h1_chunked_init(&st);
    assert_int_equal(h1_chunked_parse(&st, "z", 1, &used), H1_CHUNK_BAD);
    assert_non_null(st.error);
    assert_int_equal(h1_chunked_parse(&st, "0\r\n\r\n", 5, &used), H1_CHUNK_BAD);
}

/* ---- small helpers ------------------------------------------------------ */

static void
test_helpers(void **state)
{
    struct h1_iov v, c;
    struct h1_field f[2] = {
        { .name = { "Host", 4 }, .value = { "a", 1 } },
        { .name = { "X-Y", 3 }, .value = { "b", 1 } },
    };

    (void)state;
    v.p = "Keep-Alive";
    v.len = 10;
    assert_true(h1_iov_eq(v, "keep-alive"));
    assert_false(h1_iov_eq(v, "keep-aliv"));
    assert_false(h1_iov_eq(v, "keep-alive2"));
    assert_ptr_equal(h1_field_find(f, 2, "x-y"), &f[1]);
    assert_null(h1_field_find(f, 2, "x"));

    c.p = "a=1; cutover_bucket=42;b=\"q\" ; empty=; flag; A=x";
    c.len = strlen(c.p);
    assert_true(iov_is(h1_cookie_find(c, "cutover_bucket"), "42"));
    assert_true(iov_is(h1_cookie_find(c, "a"), "1"));
    assert_true(iov_is(h1_cookie_find(c, "A"), "x"));
    assert_true(iov_is(h1_cookie_find(c, "b"), "q"));
    v = h1_cookie_find(c, "empty");
    assert_non_null(v.p);
    assert_int_equal(v.len, 0);
    assert_null(h1_cookie_find(c, "flag").p);
    assert_null(h1_cookie_find(c, "cutover").p);
    assert_null(h1_cookie_find(c, "").p);

    /* methods are case-sensitive: "head" is not HEAD, "get" not idempotent */
    v.p = "HEAD";
    v.len = 4;
    assert_true(h1_method_eq(v, "HEAD"));
    assert_true(h1_method_idempotent(v));
    v.p = "head";
    assert_false(h1_method_eq(v, "HEAD"));
    assert_false(h1_method_idempotent(v));
    v.p = "HEADX";
    v.len = 5;
    assert_false(h1_method_eq(v, "HEAD"));
    assert_false(h1_method_idempotent(v));
    v.p = "HEA";
    v.len = 3;
    assert_false(h1_method_eq(v, "HEAD"));
    {
        static const char *const idem[] = { "GET", "OPTIONS", "TRACE", "PUT", "DELETE" };
        static const char *const not_idem[] = { "POST", "PATCH", "PROPFIND", "M-SEARCH",
                                                "FOO_BAR", "get", "Put" };
        size_t i;

        for (i = 0; i < sizeof idem / sizeof idem[0]; i++) {
            v.p = idem[i];
            v.len = strlen(idem[i]);
            assert_true(h1_method_idempotent(v));
        }
        for (i = 0; i < sizeof not_idem / sizeof not_idem[0]; i++) {
            v.p = not_idem[i];
            v.len = strlen(not_idem[i]);
            assert_false(h1_method_idempotent(v));
        }
    }

    assert_string_equal(h1_status_text(400), "Bad Request");
    assert_string_equal(h1_status_text(431), "Request Header Fields Too Large");
    assert_string_equal(h1_status_text(505), "HTTP Version Not Supported");
    assert_string_equal(h1_status_text(799), "Unknown");
    {
        static const int used[] = { 100, 101, 200, 204, 304, 400, 404, 408, 413, 414,
                                    417, 431, 500, 501, 502, 503, 504, 505 };
        size_t i;

        for (i = 0; i < sizeof used / sizeof used[0]; i++)
            assert_string_not_equal(h1_status_text(used[i]), "Unknown");
    }
}

/* Default limits (zero fields) and a NULL limits pointer. */
static void
test_default_limits(void **state)
{
    static char buf[9000];
    struct h1_parse_limits zero = { 0, 0 };
    struct h1_req r;
    size_t n;

    (void)state;
    memcpy(buf, "GET /", 5);
    memset(buf + 5, 'a', 8192 - 1);
    n = 5 + 8191;
    memcpy(buf + n, " HTTP/1.1\r\nHost: a\r\n\r\n", 22);
    r.fields = g_fields;
    assert_int_equal(h1_req_parse(&r, buf, n + 22, &zero), H1_PARSE_DONE);
    assert_int_equal(r.target.len, 8192);
    r.fields = g_fields;
    assert_int_equal(h1_req_parse(&r, buf, n + 22, NULL), H1_PARSE_DONE);
    memcpy(buf, "GET /", 5);
    memset(buf + 5, 'a', 8192);
    n = 5 + 8192;
    memcpy(buf + n, " HTTP/1.1\r\nHost: a\r\n\r\n", 22);
    assert_int_equal(h1_req_parse(&r, buf, n + 22, &zero), H1_PARSE_BAD);
    assert_int_equal(r.status, 414);
}

/* ---- llhttp corpus replay ----------------------------------------------- */

struct exception {
    const char *id;
    const char *reason;
};

static const struct exception corpus_exceptions[] = {
    /* lenient-mode cases: a strict parser rejects them */
    { "request/connection.md#Resetting flags when keep-alive is off (1.0, lenient)", "lenient: data after a close-delimited exchange" },
    { "request/connection.md#CRLF between requests, explicit `close` (lenient)", "lenient: data after Connection: close" },
    { "request/connection.md#Multiple tokens with folding", "lenient: obs-fold" },
    { "request/connection.md#Multiple tokens with folding, LWS, and CRLF", "lenient: obs-fold" },
    { "request/connection.md#Invalid whitespace token with `Connection` header field (lenient)", "lenient: space before colon" },
    { "request/content-length.md#Invalid whitespace token with `Content-Length` header field (lenient)", "lenient: space before colon" },
    { "request/content-length.md#No error on simultaneous `Content-Length` and `Transfer-Encoding: identity` (lenient)", "lenient: CL with TE" },
    { "request/content-length.md#Missing CRLF-CRLF before body (lenient)", "lenient: bare CR" },
    { "request/invalid.md#Only LFs present (lenient)", "lenient: bare LF" },
    { "request/invalid.md#Spaces before headers (lenient)", "lenient: obs-fold" },
    { "request/lenient-header-value-relaxed.md#Control char in header value (relaxed)", "lenient: CTL in a field value" },
    { "request/lenient-headers.md#Header value (lenient)", "lenient: CTL in a field value" },
    { "request/lenient-headers.md#Second request header value (lenient)", "lenient: CTL in a field value" },
    { "request/lenient-headers.md#Empty headers separated by CR (lenient)", "lenient: bare CR" },
    { "request/lenient-version.md#Invalid HTTP version (lenient)", "lenient: HTTP/5.6 gets 505" },
    { "request/sample.md#Line folding in header value with CRLF", "lenient: obs-fold" },
    { "request/sample.md#No LF after CR (lenient)", "lenient: bare CR" },
    { "request/sample.md#X-SSL-Nonsense", "lenient: obs-fold" },
    { "request/transfer-encoding.md#POST with `Transfer-Encoding` and `Content-Length` (lenient)", "lenient: CL with TE" },
    { "request/transfer-encoding.md#POST with `chunked` before other transfer-coding (lenient)", "lenient: chunked not last" },
    { "request/transfer-encoding.md#POST with `chunked` and duplicate transfer-encoding (lenient)", "lenient: chunked not last" },
    { "request/transfer-encoding.md#Chunk header not terminated by CRLF (lenient)", "lenient: bare CR in chunk size line" },
    { "request/transfer-encoding.md#Chunk data not terminated by CRLF (lenient)", "lenient: no CRLF after chunk data" },
    { "request/transfer-encoding.md#Space after chunk header (lenient)", "lenient: whitespace after chunk size" },
    { "response/connection.md#HTTP/1.1 with keep-alive disabled, content-length (lenient)", "lenient: data after Connection: close" },
    { "response/connection.md#HTTP/1.1 with keep-alive disabled and 204 status (lenient)", "lenient: data after Connection: close" },
    { "response/invalid.md#Bare CR after response line (lenient)", "lenient: bare CR" },
    { "response/invalid.md#Only LFs present and no body (lenient)", "lenient: bare LF" },
    { "response/invalid.md#Only LFs present (lenient)", "lenient: bare LF" },
    { "response/lenient-version.md#Invalid HTTP version (lenient)", "lenient: HTTP/5.6" },
    { "response/sample.md#No carriage ret (lenient)", "lenient: bare LF" },
    { "response/transfer-encoding.md#Invalid OBS fold after chunked value", "lenient: obs-fold" },

    /* our documented choices */
    { "request/connection.md#CRLF between requests, implicit `keep-alive`", "one empty line is tolerated before a request line, not two" },
    { "request/invalid.md#HTTP protocol and ANNOUNCE method", "any token is a method (RFC 9110 §9.1)" },
    { "request/invalid.md#Invalid method", "any token is a method (RFC 9110 §9.1)" },
    { "request/method.md#CONNECT request", "CONNECT gets 501" },
    { "request/method.md#CONNECT request with CAPS", "CONNECT gets 501" },
    { "request/method.md#CONNECT with body", "CONNECT gets 501" },
    { "request/uri.md#Underscore in hostname", "CONNECT gets 501" },
    { "request/method.md#M-SEARCH request", "asterisk-form only with OPTIONS (RFC 9112 §3.2.4)" },
    { "request/method.md#PRI request HTTP2", "asterisk-form only with OPTIONS; PRI is the HTTP/2 preface" },
    { "request/method.md#SOURCE request with ICE", "only HTTP/1.0 and HTTP/1.1" },
    { "request/method.md#OPTIONS request with RTSP", "only HTTP/1.0 and HTTP/1.1" },
    { "request/method.md#ANNOUNCE request with RTSP", "only HTTP/1.0 and HTTP/1.1" },
    { "request/sample.md#No HTTP version", "HTTP/0.9 request lines are rejected" },
    { "request/transfer-encoding.md#POST with `chunked` as last transfer-encoding", "a fragment in the target gets 400 (without it, codings other than chunked get 501)" },
    { "request/transfer-encoding.md#POST with `chunked` as last transfer-encoding (multiple headers)", "a fragment in the target gets 400 (without it, codings other than chunked get 501)" },
    { "request/uri.md#Fragment in URI", "a fragment in the target gets 400 (RFC 9112 §3.2)" },
    { "request/uri.md#`host:port` and basic auth", "userinfo in absolute-form is rejected (RFC 9110 §4.2.4)" },
    { "response/finish.md#It should be safe to finish with cb after empty response", "a close-delimited body is complete at EOF" },
    { "response/sample.md#RTSP response", "only HTTP/1.0 and HTTP/1.1" },
    { "response/sample.md#ICE response", "only HTTP/1.0 and HTTP/1.1" },
    { "response/sample.md#HTTP version 0.9", "only HTTP/1.0 and HTTP/1.1" },
};

enum verdict { V_ACCEPT, V_REJECT };

/* Reads a body framed by <framing>/<cl> at <b>[*pos..n). Returns 1 when the
 * body is complete (*pos past it), 0 when the input ends inside it, -1 when
 * its framing is bad. */
static int
replay_body(const unsigned char *b, size_t n, size_t *pos, enum h1_framing framing, uint64_t cl)
{
    struct h1_chunked st;
    size_t used, take;
    enum h1_chunk v;

    switch (framing) {
    case H1_BODY_NONE:
        return 1;
    case H1_BODY_CLOSE:
        *pos = n;
        return 1;                         /* the end of the input closes it */
    case H1_BODY_LENGTH:
        if (n - *pos < cl)
            return 0;
        *pos += (size_t)cl;
        return 1;
    case H1_BODY_CHUNKED:
        h1_chunked_init(&st);
        for (;;) {
            v = h1_chunked_parse(&st, (const char *)b + *pos, n - *pos, &used);
            *pos += used;
            if (v == H1_CHUNK_DONE)
                return 1;
            if (v == H1_CHUNK_BAD)
                return -1;
            if (v == H1_CHUNK_AGAIN)
                return 0;
            take = n - *pos < st.data_left ? n - *pos : (size_t)st.data_left;
            if (take == 0)
                return 0;
            *pos += take;
            h1_chunked_data_consumed(&st, take);
        }
    }
    return -1;
}

/* Replays a connection's worth of bytes the way the proxy reads them:
 * message by message, each head then its body, stopping at an upgrade.
 * <finish>: the input ending inside a message is an error (llhttp_finish). */
static enum verdict
replay(const unsigned char *b, size_t n, bool is_req, bool finish)
{
    struct h1_parse_limits lim = { 0, 0 };
    size_t pos = 0;
    enum h1_parse v;
    enum h1_framing framing;
    uint64_t cl;
    bool ka;
    int rc;

    while (pos < n) {
        if (is_req) {
            struct h1_req r;

            r.fields = g_fields;
            v = h1_req_parse(&r, (const char *)b + pos, n - pos, &lim);
            if (v != H1_PARSE_DONE)
                return v == H1_PARSE_BAD || finish ? V_REJECT : V_ACCEPT;
            pos += r.head_len;
            if (r.upgrade)
                return V_ACCEPT;          /* the connection is handed over */
            framing = r.framing;
            cl = r.content_length;
            ka = r.keep_alive;
        } else {
            struct h1_resp r;

            r.fields = g_fields;
            v = h1_resp_parse(&r, (const char *)b + pos, n - pos, &lim, false);
            if (v != H1_PARSE_DONE)
                return v == H1_PARSE_BAD || finish ? V_REJECT : V_ACCEPT;
            pos += r.head_len;
            if (r.status == 101)
                return V_ACCEPT;
            framing = r.framing;
            cl = r.content_length;
            ka = r.keep_alive;
        }
        rc = replay_body(b, n, &pos, framing, cl);
        if (rc < 0)
            return V_REJECT;
        if (rc == 0)
            return finish ? V_REJECT : V_ACCEPT;
        if (!ka && pos < n)
            return V_REJECT;              /* data after the last message */
    }
    return V_ACCEPT;
}

/* The corpora live in the tree (tests/corpora/, with their source and
 * licence); CUTOVER_SRC_DIR points at the tree when the test does not run
 * from its top. */
static const char *
corpora_dir(void)
{
    const char *s = getenv("CUTOVER_SRC_DIR");

    return (s != NULL && *s != '\0') ? s : ".";
}

static void
replay_file(const char *file, bool is_req, bool *seen, size_t *ncases, size_t *nmismatch)
{
    char path[4096];
    json_error_t jerr;
    json_t *root, *cases, *c, *meta;
    const char *id, *b64, *expect, *type;
    unsigned char *bytes;
    size_t i, j, n = 0;
    enum verdict ours;
    bool want_reject, listed;

    snprintf(path, sizeof path, "%s/tests/corpora/%s", corpora_dir(), file);
    root = json_load_file(path, 0, &jerr);
    if (root == NULL)
        fail_msg("cannot read %s: %s (set CUTOVER_SRC_DIR to the tree)", path, jerr.text);
    cases = json_object_get(root, "cases");
    assert_true(json_is_array(cases));
    assert_true(json_array_size(cases) > 0);
    json_array_foreach(cases, i, c) {
        id = json_string_value(json_object_get(c, "id"));
        expect = json_string_value(json_object_get(c, "expect"));
        b64 = json_string_value(json_object_get(c, "host_added_b64"));
        if (b64 == NULL)
            b64 = json_string_value(json_object_get(c, "bytes_b64"));
        meta = json_object_get(c, "meta");
        type = json_string_value(json_object_get(meta, "type"));
        assert_non_null(id);
        assert_non_null(expect);
        assert_non_null(b64);
        assert_non_null(type);
        bytes = tb64_decode(b64, &n);
        if (bytes == NULL)
            fail_msg("%s: bad base64", id);
        ours = replay(bytes, n, is_req,
                      strlen(type) > 7 && strcmp(type + strlen(type) - 7, "-finish") == 0);
        free(bytes);
        want_reject = strcmp(expect, "reject") == 0;
        listed = false;
        for (j = 0; j < sizeof corpus_exceptions / sizeof corpus_exceptions[0]; j++) {
            if (strcmp(corpus_exceptions[j].id, id) == 0) {
                listed = true;
                seen[j] = true;
            }
        }
        (*ncases)++;
        if ((ours == V_REJECT) != want_reject && !listed) {
            print_error("corpus: %s: expected %s, we %s\n", id, expect,
                        ours == V_REJECT ? "reject" : "accept");
            (*nmismatch)++;
        } else if ((ours == V_REJECT) == want_reject && listed) {
            print_error("corpus: %s: listed as an exception but agrees (%s)\n", id, expect);
            (*nmismatch)++;
        }
    }
    json_decref(root);
}

static void
test_llhttp_corpus(void **state)
{
    bool seen[sizeof corpus_exceptions / sizeof corpus_exceptions[0]] = { false };
    size_t ncases = 0, nmismatch = 0, j;

    (void)state;
    replay_file("llhttp-requests.json", true, seen, &ncases, &nmismatch);
    replay_file("llhttp-responses.json", false, seen, &ncases, &nmismatch);
    for (j = 0; j < sizeof seen / sizeof seen[0]; j++) {
        if (!seen[j]) {
            print_error("corpus: exception '%s' names no case\n", corpus_exceptions[j].id);
            nmismatch++;
        }
    }
    print_message("corpus: %zu cases, %zu exceptions, %zu unexplained\n", ncases,
                  sizeof seen / sizeof seen[0], nmismatch);
    assert_true(ncases >= 200);
    assert_int_equal(nmismatch, 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_table),
        cmocka_unit_test(test_response_table),
        cmocka_unit_test(test_mutations_split_invariant),
        cmocka_unit_test(test_chunked_table),
        cmocka_unit_test(test_chunked_check),
        cmocka_unit_test(test_chunked_limits),
        cmocka_unit_test(test_chunked_partial_consume),
        cmocka_unit_test(test_helpers),
        cmocka_unit_test(test_default_limits),
        cmocka_unit_test(test_llhttp_corpus),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
