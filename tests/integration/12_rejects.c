/*
 * Malformed requests through the real cutoverd: each one, on a fresh client
 * connection, gets the right status (400 framing and syntax, 501 an unknown
 * but well-formed transfer coding or CONNECT, 505 a version other than
 * HTTP/1.0 and HTTP/1.1, 431/414/413 over the configured limits) with
 * "Connection: close", then the connection is closed, and no backend ever
 * sees a request head (the backends' "heads" counter is checked after every
 * case). A valid request after each batch proves the daemon is still
 * serving. Then pipelining (two valid requests in one write; a valid one
 * followed by a malformed one), Connection naming Host or X-Forwarded-For,
 * and a framing error in a chunked body large enough to stream.
 *
 * Choices the cases encode (RFC 9112, RFC 9110, docs/DESIGN.md):
 * - Transfer-Encoding whose final coding is not chunked ("gzip",
 *   "chunked, gzip", "identity") is 400: RFC 9112 §6.3 says the length of
 *   such a request cannot be determined, the server MUST answer 400 and
 *   close. chunked applied twice is 400 as well (§6.1: MUST NOT apply
 *   chunked more than once).
 * - A well-formed list ending in chunked with another coding before it
 *   ("foo, chunked", "gzip, chunked") is framed reliably but carries a
 *   coding the proxy does not implement: 501, as RFC 9112 §6.1 asks of a
 *   server that receives a transfer coding it does not understand (the
 *   parser, lib/http1.c, decides this at the end of the head).
 * - A "#" in the request-target is 400: RFC 9112 §3.2 gives the
 *   request-target no fragment, and a server that cut the path at "#"
 *   would route differently from one that did not.
 * - A Content-Length or Transfer-Encoding field spelt with "_" for "-"
 *   (any case) is 400, never forwarded: a backend that folds "_" into "-"
 *   would frame the request by it, the proxy by the other fields.
 * - Two Content-Length fields are rejected even when identical (RFC 9110
 *   §8.6 allows either rejecting or collapsing them; the proxy is strict).
 * - Connection naming Host or X-Forwarded-For is not an error: RFC 9110
 *   §7.6.1 forbids a proxy from letting a client remove them, and the parser
 *   simply does not treat them as hop-by-hop; test_connection_cannot_remove
 *   checks that they still reach the backend.
 * - Chunked body errors: the head is valid, but a body up to
 *   limits.buffer_body_bytes (64 KiB by default, kept here) is read and its
 *   chunked framing validated before the upstream request starts
 *   (proxy/http.c buffer_body()), so these bodies reach no backend at all:
 *   "heads" stays 0 for them too. A larger body streams; its framing error
 *   then aborts the upstream request, so the backend sees the head but
 *   never a complete request (test_streamed_chunked_error).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/integration/fixture.h"

/* Small limits, so that every one of them can be crossed cheaply. A head
 * that never completes gets 408 after 2 s: a case the proxy wrongly waits
 * on shows up as 408, well within the client's 4 s receive timeout. */
#define LIMITS ",\"timeouts\":{\"client_head_ms\":2000}," \
               "\"limits\":{\"head_bytes\":1024,\"headers\":12,\"uri_bytes\":64," \
               "\"body_bytes\":100,\"chunk_ext_bytes\":32}"

struct bad_case {
    const char *name;
    const char *raw;
    size_t len;                  /* bytes of <raw> (it may hold NULs) */
    int status;
};

#define C(name, raw, status) { name, raw, sizeof(raw) - 1, status }

/* Request line and start of the head. */
static const struct bad_case bad_request_line[] = {
    C("HTTP/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    C("HTTP/1.2", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505),
    C("HTTP/0.9 version", "GET / HTTP/0.9\r\n\r\n", 505),
    C("HTTP/3.0", "GET / HTTP/3.0\r\nHost: a\r\n\r\n", 505),
    C("HTTP/1.9", "POST / HTTP/1.9\r\nHost: a\r\nContent-Length: 0\r\n\r\n", 505),
    C("HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400),
    C("HTTP/0.9-style request line", "GET /\r\n\r\n", 400),
    C("HTTP/0.9-style, bare LF", "GET /index.html\n", 400),
    C("method only", "GET\r\n\r\n", 400),
    C("HTTP/1.10", "GET / HTTP/1.10\r\nHost: a\r\n\r\n", 400),
    C("HTTP/11.1", "GET / HTTP/11.1\r\nHost: a\r\n\r\n", 400),
    C("lowercase version", "GET / http/1.1\r\nHost: a\r\n\r\n", 400),
    C("HTTP/1 without minor", "GET / HTTP/1\r\nHost: a\r\n\r\n", 400),
    C("trailing SP after version", "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400),
    C("double SP after method", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    C("HT as separator", "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    C("leading SP", " GET / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    C("@ in method", "G@T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    C("( in method", "GE(T) / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    C("UTF-8 in method", "G\xc3\x89T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    C("NUL in method", "GE\0T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    C("UTF-8 in target", "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    C("DEL in target", "GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    C("NUL in target", "GET /a\0b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    C("relative target", "GET x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    C("fragment", "GET /forums/1?page=1#posts-17408 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    C("empty fragment", "GET /# HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    C("fragment in absolute-form", "GET http://a/x#y HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    C("asterisk with GET", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    C("ftp scheme", "GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    C("userinfo in absolute-form", "GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    C("absolute-form Host mismatch", "GET http://a/ HTTP/1.1\r\nHost: b\r\n\r\n", 400),
    C("CONNECT", "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 501),
    C("two empty lines first", "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    C("leading bare LF", "\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    C("bare LF after request line", "GET / HTTP/1.1\nHost: a\r\n\r\n", 400),
    C("bare CR after request line", "GET / HTTP/1.1\rHost: a\r\n\r\n", 400),
    C("CR CR LF", "GET / HTTP/1.1\r\r\nHost: a\r\n\r\n", 400),
    C("bare LF line endings", "GET / HTTP/1.1\nHost: a\n\n", 400),
};

/* Field lines. */
static const struct bad_case bad_fields[] = {
    C("obs-fold SP", "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 400),
    C("obs-fold HT", "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n", 400),
    C("whitespace before first field", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400),
    C("SP before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
    C("HT before colon", "GET / HTTP/1.1\r\nHost: a\r\nX\t: a\r\n\r\n", 400),
    C("SP before colon, Content-Length",
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\nhello", 400),
    C("empty field name", "GET / HTTP/1.1\r\nHost: a\r\n: a\r\n\r\n", 400),
    C("CTL in field name", "GET / HTTP/1.1\r\nHost: a\r\nX\x01Y: a\r\n\r\n", 400),
    C("paren in field name", "GET / HTTP/1.1\r\nHost: a\r\nX(Y): a\r\n\r\n", 400),
    C("UTF-8 in field name", "GET / HTTP/1.1\r\nHost: a\r\nX\xc3\xa9: a\r\n\r\n", 400),
    C("space inside field name", "GET / HTTP/1.1\r\nHost: a\r\nX Y: a\r\n\r\n", 400),
    C("field without colon", "GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", 400),
    C("NUL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n", 400),
    C("NUL as whole value", "GET / HTTP/1.1\r\nHost: a\r\nX: \0\r\n\r\n", 400),
    C("bare CR in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\rY: b\r\n\r\n", 400),
    C("bare LF in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\nY: b\r\n\r\n", 400),
    C("DEL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f" "b\r\n\r\n", 400),
    C("VT in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x0b" "b\r\n\r\n", 400),
    C("ESC in value", "GET / HTTP/1.1\r\nHost: a\r\nX: \x1b[0m\r\n\r\n", 400),
    C("bare LF ends head", "GET / HTTP/1.1\r\nHost: a\r\n\n", 400),
    C("bare CR ends head", "GET / HTTP/1.1\r\nHost: a\r\n\rX", 400),
    C("Connection names Content-Length",
      "POST / HTTP/1.1\r\nHost: a\r\nConnection: content-length\r\n\r\n", 400),
    C("Connection names Transfer-Encoding",
      "POST / HTTP/1.1\r\nHost: a\r\nConnection: close, Transfer-Encoding\r\n\r\n", 400),
    C("Connection with parameter", "GET / HTTP/1.1\r\nHost: a\r\nConnection: close;x\r\n\r\n", 400),
};

/* Host. */
static const struct bad_case bad_host[] = {
    C("missing Host", "GET / HTTP/1.1\r\n\r\n", 400),
    C("missing Host with fields", "GET / HTTP/1.1\r\nX: y\r\nAccept: */*\r\n\r\n", 400),
    C("duplicate Host, same", "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400),
    C("duplicate Host, differing", "GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", 400),
    C("duplicate Host, HTTP/1.0", "GET / HTTP/1.0\r\nHost: a\r\nHOST: b\r\n\r\n", 400),
    C("Host with space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    C("Host with slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
    C("Host with userinfo", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400),
    C("empty Host", "GET / HTTP/1.1\r\nHost:\r\n\r\n", 400),
    C("Host port too big", "GET / HTTP/1.1\r\nHost: a:99999\r\n\r\n", 400),
    C("Host unclosed IP-literal", "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 400),
};

/* Content-Length and Transfer-Encoding. */
static const struct bad_case bad_framing[] = {
    C("CL then TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
      "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400),
    C("TE then CL", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
      "Content-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400),
    C("CL with TE gzip", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
      "Transfer-Encoding: gzip\r\n\r\nhello", 400),
    C("CL +5", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello", 400),
    C("CL -1", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400),
    C("CL 0x10", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n0123456789abcdef", 400),
    C("CL ' 5 x'", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:  5 x\r\n\r\nhello", 400),
    C("CL empty", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", 400),
    C("CL blank", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:   \r\n\r\n", 400),
    C("CL 1.5", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1.5\r\n\r\nh", 400),
    C("CL list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello", 400),
    C("CL differing duplicates", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
      "Content-Length: 6\r\n\r\nhello!", 400),
    C("CL identical duplicates", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
      "Content-Length: 5\r\n\r\nhello", 400),
    C("CL 20 digits", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 00000000000000000005\r\n"
      "\r\nhello", 400),
    C("CL 24 digits", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100000000000000000000000\r\n"
      "\r\n", 400),
    C("CL 2^63", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775808\r\n\r\n", 400),
    C("CL 2^64", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551616\r\n\r\n", 400),
    C("TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\nhello\r\n0\r\n\r\n", 400),
    C("Transfer_Encoding", "POST / HTTP/1.1\r\nHost: a\r\nTransfer_Encoding: chunked\r\n\r\n"
      "5\r\nhello\r\n0\r\n\r\n", 400),
    C("transfer_encoding with Content-Length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
      "transfer_encoding: chunked\r\n\r\nhello", 400),
    C("Content_Length", "POST / HTTP/1.1\r\nHost: a\r\nContent_Length: 5\r\n\r\nhello", 400),
    C("CONTENT_LENGTH with Transfer-Encoding", "POST / HTTP/1.1\r\nHost: a\r\n"
      "Transfer-Encoding: chunked\r\nCONTENT_LENGTH: 5\r\n\r\n0\r\n\r\n", 400),
    C("TE chunked, gzip", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400),
    C("TE chunked, chunked", "POST / HTTP/1.1\r\nHost: a\r\n"
      "Transfer-Encoding: chunked, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400),
    C("TE gzip alone", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
    C("TE identity", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", 400),
    C("TE chunkedchunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunkedchunked\r\n\r\n", 400),
    C("TE fields chunked then gzip", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
      "Transfer-Encoding: gzip\r\n\r\n", 400),
    C("TE fields chunked twice", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
      "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400),
    C("TE with parameter", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;q=1\r\n\r\n", 400),
    C("TE trailing comma", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked,\r\n\r\n", 400),
    C("TE empty element", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip,,chunked\r\n\r\n", 400),
    C("TE empty", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n", 400),
    C("TE foo, chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: foo, chunked\r\n\r\n"
      "5\r\nhello\r\n0\r\n\r\n", 501),
    C("TE gzip, chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
    C("TE fields gzip then chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n"
      "Transfer-Encoding: chunked\r\n\r\n", 501),
};

/* A valid chunked head, then a malformed body. All of these fit in
 * buffer_body_bytes: the proxy validates them before connecting. */
#define CH "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"

static const struct bad_case bad_chunked[] = {
    C("chunk size not hex", CH "zz\r\nhello\r\n0\r\n\r\n", 400),
    C("chunk size +5", CH "+5\r\nhello\r\n0\r\n\r\n", 400),
    C("chunk size -5", CH "-5\r\nhello\r\n0\r\n\r\n", 400),
    C("chunk size 0x5", CH "0x5\r\nhello\r\n0\r\n\r\n", 400),
    C("chunk size leading SP", CH " 5\r\nhello\r\n0\r\n\r\n", 400),
    C("chunk size trailing SP", CH "5 \r\nhello\r\n0\r\n\r\n", 400),
    C("chunk size empty", CH "\r\nhello\r\n0\r\n\r\n", 400),
    C("chunk size 17 digits", CH "10000000000000005\r\nhello\r\n0\r\n\r\n", 400),
    C("chunk size over 2^63", CH "8000000000000000\r\nhello\r\n0\r\n\r\n", 400),
    C("chunk size ffff...f", CH "ffffffffffffffffffff\r\nhello\r\n0\r\n\r\n", 400),
    C("chunk size bare LF", CH "5\nhello\r\n0\r\n\r\n", 400),
    C("chunk size bare CR", CH "5\rhello\r\n0\r\n\r\n", 400),
    C("chunk ext empty name", CH "5;\r\nhello\r\n0\r\n\r\n", 400),
    C("chunk ext empty value", CH "5;a=\r\nhello\r\n0\r\n\r\n", 400),
    C("chunk ext BWS", CH "5 ;a=b\r\nhello\r\n0\r\n\r\n", 400),
    C("chunk ext SP in name", CH "5;a b=c\r\nhello\r\n0\r\n\r\n", 400),
    C("chunk ext unterminated quote", CH "5;a=\"x\r\nhello\r\n0\r\n\r\n", 400),
    C("chunk ext junk after quote", CH "5;a=\"x\"y\r\nhello\r\n0\r\n\r\n", 400),
    C("chunk ext NUL", CH "5;a=b\0\r\nhello\r\n0\r\n\r\n", 400),
    C("chunk ext over chunk_ext_bytes", CH "5;n=0123456789abcdef0123456789abcdef0123\r\n"
      "hello\r\n0\r\n\r\n", 400),
    C("missing CRLF after chunk data", CH "5\r\nhelloX\r\n0\r\n\r\n", 400),
    C("chunk data longer than its size", CH "3\r\nhello\r\n0\r\n\r\n", 400),
    C("no CRLF before last chunk", CH "5\r\nhello0\r\n\r\n", 400),
    C("bare LF after chunk data", CH "5\r\nhello\n0\r\n\r\n", 400),
    C("bare CR after chunk data", CH "5\r\nhello\rX0\r\n\r\n", 400),
    C("trailer SP before colon", CH "5\r\nhello\r\n0\r\nX : y\r\n\r\n", 400),
    C("trailer obs-fold", CH "5\r\nhello\r\n0\r\nX: y\r\n z\r\n\r\n", 400),
    C("trailer NUL in value", CH "5\r\nhello\r\n0\r\nX: a\0b\r\n\r\n", 400),
    C("trailer bare CR at end", CH "5\r\nhello\r\n0\r\n\rX", 400),
};

static struct fx *
start(void **state, unsigned nservers, const char *extra)
{
    assert_int_equal(fx_open(state, false, nservers, extra, 7), 0);
    return *state;
}

/* Sum of stats <key> over every backend of the fixture, or -1. */
static long
backends_sum(struct fx *f, const char *key)
{
    long sum = 0, v;
    unsigned s, i;

    for (s = 0; s < 2; s++) {
        for (i = 0; i < f->nservers; i++) {
            if ((v = h_backend_stat(f->port[s][i], key)) < 0)
                return -1;
            sum += v;
        }
    }
    return sum;
}

/* Sends <raw> on a fresh connection and checks the answer: status <want>,
 * "Connection: close", then the proxy closes. Returns 0, or -1 after
 * printing what differed. */
static int
check_reject(struct fx *f, const char *name, const char *raw, size_t len, int want)
{
    struct h_resp r;
    char conn[64];
    int fd = h_connect(f->proxy_port), rc = -1;

    memset(&r, 0, sizeof(r));
    if (fd < 0) {
        fprintf(stderr, "case '%s': cannot connect\n", name);
        return -1;
    }
    h_set_timeout_ms(fd, 4000);
    if (h_send_all(fd, raw, len) != 0 || h_read_response(fd, &r) != 0)
        fprintf(stderr, "case '%s': no response (status %d)\n", name, r.status);
    else if (r.status != want)
        fprintf(stderr, "case '%s': status %d, want %d\n", name, r.status, want);
    else if (h_resp_header(&r, "Connection", conn, sizeof(conn)) == NULL ||
             strcmp(conn, "close") != 0)
        fprintf(stderr, "case '%s': %d without Connection: close\n", name, r.status);
    else if (!r.closed && !h_peer_closed(fd, 3000))
        fprintf(stderr, "case '%s': %d but the connection stayed open\n", name, r.status);
    else
        rc = 0;
    h_resp_free(&r);
    close(fd);
    return rc;
}

/* Runs a table of cases; every failure is reported, then counted. Checks
 * after each case that no backend saw a request head. */
static int
run_cases(struct fx *f, const struct bad_case *cases, size_t n)
{
    int failures = 0;
    size_t i;
    long heads;

    for (i = 0; i < n; i++) {
        if (check_reject(f, cases[i].name, cases[i].raw, cases[i].len, cases[i].status) != 0)
            failures++;
        if ((heads = backends_sum(f, "heads")) != 0) {
            fprintf(stderr, "case '%s': the backends saw %ld request head(s)\n",
                    cases[i].name, heads);
            failures++;
            break;
        }
    }
    return failures;
}

/* The daemon still serves: GET /healthz goes through the proxy to a
 * backend (which does not count /healthz in its stats). */
static void
assert_alive(struct fx *f)
{
    struct h_resp r;

    memset(&r, 0, sizeof(r));
    assert_int_equal(h_get(f->proxy_port, "/healthz", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "ok\n");
    h_resp_free(&r);
    assert_true(h_alive(f->proxy, NULL));
}

#define NCASES(a) (sizeof(a) / sizeof((a)[0]))

static void
test_bad_request_lines(void **state)
{
    struct fx *f = start(state, 1, LIMITS);

    assert_int_equal(run_cases(f, bad_request_line, NCASES(bad_request_line)), 0);
    assert_alive(f);
    assert_int_equal(backends_sum(f, "heads"), 0);
}

static void
test_bad_fields_and_host(void **state)
{
    struct fx *f = start(state, 1, LIMITS);

    assert_int_equal(run_cases(f, bad_fields, NCASES(bad_fields)), 0);
    assert_alive(f);
    assert_int_equal(run_cases(f, bad_host, NCASES(bad_host)), 0);
    assert_alive(f);
    assert_int_equal(backends_sum(f, "heads"), 0);
}

static void
test_bad_framing(void **state)
{
    struct fx *f = start(state, 1, LIMITS);

    assert_int_equal(run_cases(f, bad_framing, NCASES(bad_framing)), 0);
    assert_alive(f);
    assert_int_equal(backends_sum(f, "heads"), 0);
}

static void
test_bad_chunked_bodies(void **state)
{
    struct fx *f = start(state, 1, LIMITS);
    struct h_resp r;

    assert_int_equal(run_cases(f, bad_chunked, NCASES(bad_chunked)), 0);
    assert_alive(f);
    assert_int_equal(backends_sum(f, "heads"), 0);
    /* the same head with a valid body does go through: the cases above
     * failed for their bodies alone */
    {
        static const char ok[] = CH "5;a=\"x\"\r\nhello\r\n0\r\nX-T: 1\r\n\r\n";
        int fd = h_connect(f->proxy_port);

        assert_true(fd >= 0);
        memset(&r, 0, sizeof(r));
        assert_int_equal(h_send_all(fd, ok, sizeof(ok) - 1), 0);
        assert_int_equal(h_read_response(fd, &r), 0);
        assert_int_equal(r.status, 200);
        assert_non_null(strstr(r.body, "\r\n\r\nhello"));
        h_resp_free(&r);
        close(fd);
    }
    assert_int_equal(backends_sum(f, "requests"), 1);
}

/* Fills <buf> with "GET /<n bytes> HTTP/1.1" etc.; helpers for the limits. */
static size_t
build_long_uri(char *buf, size_t cap, size_t uri_len, bool absolute)
{
    size_t o;

    o = (size_t)snprintf(buf, cap, "GET %s/", absolute ? "http://a" : "");
    while (o < cap - 64 && (o - 4) < uri_len)
        buf[o++] = 'u';
    o += (size_t)snprintf(buf + o, cap - o, " HTTP/1.1\r\nHost: a\r\n\r\n");
    return o;
}

static void
test_limits(void **state)
{
    struct fx *f = start(state, 1, LIMITS);
    char buf[4096];
    size_t n, i;
    int failures = 0;

    /* 414: a target over uri_bytes (64), origin-form and absolute-form */
    n = build_long_uri(buf, sizeof(buf), 65, false);
    failures += check_reject(f, "URI 66 bytes", buf, n, 414) != 0;
    n = build_long_uri(buf, sizeof(buf), 500, false);
    failures += check_reject(f, "URI 500 bytes", buf, n, 414) != 0;
    n = build_long_uri(buf, sizeof(buf), 200, true);
    failures += check_reject(f, "absolute URI 200 bytes", buf, n, 414) != 0;

    /* 431: more fields than limits.headers (12) */
    n = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: a\r\n");
    for (i = 0; i < 12; i++)
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "X-F%zu: %zu\r\n", i, i);
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\r\n");
    failures += check_reject(f, "13 header fields", buf, n, 431) != 0;

    /* 431: a complete head over head_bytes (1024), in one field */
    n = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: a\r\nX-Big: ");
    memset(buf + n, 'b', 1100);
    n += 1100;
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\r\n\r\n");
    failures += check_reject(f, "head of 1.1 KiB", buf, n, 431) != 0;

    /* 431: a head that is still incomplete at head_bytes (many small fields
     * under the field count; the end is never sent) */
    n = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: a\r\nX-Long: ");
    memset(buf + n, 'c', 1030);
    n += 1030;
    failures += check_reject(f, "unterminated head over head_bytes", buf, n, 431) != 0;

    /* 413: Content-Length over body_bytes (100), with and without the body */
    n = (size_t)snprintf(buf, sizeof(buf),
                         "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n\r\n");
    failures += check_reject(f, "CL 101, no body", buf, n, 413) != 0;
    memset(buf + n, 'd', 101);
    n += 101;
    failures += check_reject(f, "CL 101 with its body", buf, n, 413) != 0;
    n = (size_t)snprintf(buf, sizeof(buf),
                         "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775807\r\n\r\n");
    failures += check_reject(f, "CL 2^63-1", buf, n, 413) != 0;
    n = (size_t)snprintf(buf, sizeof(buf), "PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
                         "Content-Length: 1000\r\n\r\n");
    failures += check_reject(f, "CL 1000 with Expect", buf, n, 413) != 0;

    /* 413: a chunked body whose decoded size passes body_bytes */
    n = (size_t)snprintf(buf, sizeof(buf), CH "40\r\n");
    memset(buf + n, 'e', 64);
    n += 64;
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\r\n40\r\n");
    memset(buf + n, 'f', 64);
    n += 64;
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\r\n0\r\n\r\n");
    failures += check_reject(f, "chunked body of 128 bytes", buf, n, 413) != 0;

    assert_int_equal(failures, 0);
    assert_int_equal(backends_sum(f, "heads"), 0);
    assert_alive(f);

    /* and just under every limit, the request goes through */
    {
        struct h_resp r;
        int fd;

        n = build_long_uri(buf, sizeof(buf), 64, false);   /* exactly uri_bytes */
        memset(&r, 0, sizeof(r));
        fd = h_connect(f->proxy_port);
        assert_true(fd >= 0);
        assert_int_equal(h_send_all(fd, buf, n), 0);
        assert_int_equal(h_read_response(fd, &r), 0);
        assert_int_equal(r.status, 200);
        h_resp_free(&r);
        n = (size_t)snprintf(buf, sizeof(buf),
                             "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n");
        memset(buf + n, 'g', 100);
        n += 100;
        assert_int_equal(h_send_all(fd, buf, n), 0);
        assert_int_equal(h_read_response(fd, &r), 0);
        assert_int_equal(r.status, 200);
        h_resp_free(&r);
        /* a head of exactly head_bytes with exactly limits.headers fields */
        n = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: a\r\n");
        for (i = 0; i < 10; i++)
            n += (size_t)snprintf(buf + n, sizeof(buf) - n, "X-F%zu: %zu\r\n", i, i);
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "X-Pad: ");
        memset(buf + n, 'p', 1024 - n - 4);
        n = 1024 - 4;
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\r\n\r\n");
        assert_int_equal(n, 1024);
        assert_int_equal(h_send_all(fd, buf, n), 0);
        assert_int_equal(h_read_response(fd, &r), 0);
        assert_int_equal(r.status, 200);
        h_resp_free(&r);
        close(fd);
    }
    assert_int_equal(backends_sum(f, "requests"), 3);

    /* one byte more than head_bytes: 431 */
    n = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: ");
    memset(buf + n, 'p', 1025 - n - 4);
    n = 1025 - 4;
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\r\n\r\n");
    assert_int_equal(check_reject(f, "head of head_bytes + 1", buf, n, 431), 0);
    assert_int_equal(backends_sum(f, "heads"), 3);
}

/* Two valid requests in one write: two answers, in order. */
static void
test_pipelined_valid(void **state)
{
    static const char two[] =
        "GET /echo?first HTTP/1.1\r\nHost: a\r\n\r\n"
        "POST /echo?second HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nxyz";
    struct fx *f = start(state, 1, LIMITS);
    struct h_resp r;
    int fd = h_connect(f->proxy_port);

    assert_true(fd >= 0);
    memset(&r, 0, sizeof(r));
    assert_int_equal(h_send_all(fd, two, sizeof(two) - 1), 0);
    assert_int_equal(h_read_response(fd, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "GET /echo?first HTTP/1.1\r\n"));
    h_resp_free(&r);
    assert_int_equal(h_read_response(fd, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "POST /echo?second HTTP/1.1\r\n"));
    assert_non_null(strstr(r.body, "\r\n\r\nxyz"));
    assert_false(r.closed);
    h_resp_free(&r);
    close(fd);
    assert_int_equal(backends_sum(f, "requests"), 2);
}

/* A valid request then a malformed one in one write: 200, then 400 and the
 * close; the backend saw the first request only. */
static void
test_pipelined_valid_then_bad(void **state)
{
    static const char *const seconds[] = {
        "GET / HTTP/1.1\r\nHost : a\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
        CH "5\r\nhelloX\r\n0\r\n\r\n",
        "GET / HTTP/2.0\r\nHost: a\r\n\r\n",
    };
    static const int want[] = { 400, 400, 400, 400, 505 };
    struct fx *f = start(state, 1, LIMITS);
    char buf[1024], conn[64];
    struct h_resp r;
    size_t i;
    int fd, n;

    memset(&r, 0, sizeof(r));
    for (i = 0; i < NCASES(seconds); i++) {
        n = snprintf(buf, sizeof(buf), "GET /echo?n=%zu HTTP/1.1\r\nHost: a\r\n\r\n%s",
                     i, seconds[i]);
        fd = h_connect(f->proxy_port);
        assert_true(fd >= 0);
        assert_int_equal(h_send_all(fd, buf, (size_t)n), 0);
        assert_int_equal(h_read_response(fd, &r), 0);
        assert_int_equal(r.status, 200);
        snprintf(buf, sizeof(buf), "GET /echo?n=%zu HTTP/1.1\r\n", i);
        assert_non_null(strstr(r.body, buf));
        h_resp_free(&r);
        assert_int_equal(h_read_response(fd, &r), 0);
        if (r.status != want[i])
            fail_msg("pipelined case %zu: second answer %d, want %d", i, r.status, want[i]);
        assert_string_equal(h_resp_header(&r, "Connection", conn, sizeof(conn)), "close");
        assert_true(r.closed || h_peer_closed(fd, 3000));
        h_resp_free(&r);
        close(fd);
        /* exactly one request per connection reached a backend */
        assert_int_equal(backends_sum(f, "heads"), (long)i + 1);
        assert_int_equal(backends_sum(f, "requests"), (long)i + 1);
    }
}

/* Connection may not make Host or X-Forwarded-* hop-by-hop: they still
 * reach the backend (and other nominated fields do not). */
static void
test_connection_cannot_remove(void **state)
{
    static const char req[] =
        "GET /echo HTTP/1.1\r\n"
        "Host: keep.example\r\n"
        "X-Forwarded-For: 203.0.113.7\r\n"
        "X-Forwarded-Host: orig.example\r\n"
        "X-Drop: 1\r\n"
        "Connection: Host, X-Forwarded-For, x-forwarded-host, X-Drop\r\n"
        "\r\n";
    struct fx *f = start(state, 1, LIMITS);
    struct h_resp r;
    int fd = h_connect(f->proxy_port);

    assert_true(fd >= 0);
    memset(&r, 0, sizeof(r));
    assert_int_equal(h_send_all(fd, req, sizeof(req) - 1), 0);
    assert_int_equal(h_read_response(fd, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\r\nHost: keep.example\r\n"));
    assert_non_null(strstr(r.body, "\r\nX-Forwarded-For: 203.0.113.7, 127.0.0.1\r\n"));
    assert_non_null(strstr(r.body, "\r\nX-Forwarded-Host: orig.example\r\n"));
    assert_null(strstr(r.body, "X-Drop"));
    assert_null(strstr(r.body, "Connection: Host"));
    h_resp_free(&r);
    close(fd);
}

/* A chunked body larger than buffer_body_bytes streams; a framing error
 * found after the upstream request started aborts it: 400 to the client,
 * and the backend saw the head but never a complete request. */
static void
test_streamed_chunked_error(void **state)
{
    static const char tail[] = "5\r\nhelloXX0\r\n\r\n";   /* no CRLF after the data */
    struct fx *f = start(state, 1, ",\"limits\":{\"buffer_body_bytes\":1024}");
    char *req = malloc(16384), *p;
    long long deadline;
    struct h_resp r;
    int fd, i;

    assert_non_null(req);
    p = req + sprintf(req, CH);
    for (i = 0; i < 8; i++)
        p += sprintf(p, "200\r\n%0512d\r\n", i);
    fd = h_connect(f->proxy_port);
    assert_true(fd >= 0);
    memset(&r, 0, sizeof(r));
    assert_int_equal(h_send_all(fd, req, (size_t)(p - req)), 0);
    /* 4 KiB of valid chunks: over buffer_body_bytes, so the upstream request
     * starts; wait until the backend has the head */
    deadline = h_now_ms() + 3000;
    while (backends_sum(f, "heads") < 1 && h_now_ms() < deadline)
        h_sleep_ms(20);
    assert_int_equal(backends_sum(f, "heads"), 1);
    assert_int_equal(h_send_all(fd, tail, sizeof(tail) - 1), 0);
    assert_int_equal(h_read_response(fd, &r), 0);
    assert_int_equal(r.status, 400);
    assert_true(r.closed || h_peer_closed(fd, 3000));
    h_resp_free(&r);
    close(fd);
    free(req);
    /* give a late byte the time to arrive: still no complete request */
    h_sleep_ms(200);
    assert_int_equal(backends_sum(f, "requests"), 0);
    assert_int_equal(backends_sum(f, "heads"), 1);
    assert_alive(f);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_bad_request_lines, fx_teardown),
        cmocka_unit_test_teardown(test_bad_fields_and_host, fx_teardown),
        cmocka_unit_test_teardown(test_bad_framing, fx_teardown),
        cmocka_unit_test_teardown(test_bad_chunked_bodies, fx_teardown),
        cmocka_unit_test_teardown(test_limits, fx_teardown),
        cmocka_unit_test_teardown(test_pipelined_valid, fx_teardown),
        cmocka_unit_test_teardown(test_pipelined_valid_then_bad, fx_teardown),
        cmocka_unit_test_teardown(test_connection_cannot_remove, fx_teardown),
        cmocka_unit_test_teardown(test_streamed_chunked_error, fx_teardown),
    };

    return cmocka_run_group_tests_name("integration: malformed requests", tests, NULL, NULL);
}
