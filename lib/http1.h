/*
 * http1: our own strict HTTP/1.1 head parser and chunked-body decoder
 * (RFC 9112, RFC 9110). Pure: no libevent, no allocation, no I/O, so it can
 * be unit-tested table-driven and fuzzed in place. Heads are parsed by
 * lib/http1.c, chunked bodies decoded by lib/h1chunk.c; both are declared
 * here, since whoever decodes a body has parsed its head first.
 *
 * Heads are parsed into (pointer, length) pairs over the caller's head bytes;
 * bodies are never copied. Parsing is restartable the picohttpparser way: call
 * again with more bytes after H1_PARSE_AGAIN; the verdict does not depend on
 * how the bytes were split. A byte that can never become valid is rejected at
 * once (H1_PARSE_BAD) even before the head is complete. Everything ambiguous
 * is rejected: a proxy must never forward a byte it is not sure of.
 */
#ifndef CUTOVER_LIB_HTTP1_H
#define CUTOVER_LIB_HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

enum h1_parse {
    H1_PARSE_DONE = 0,   /* a complete, valid head: see head_len */
    H1_PARSE_AGAIN,      /* valid so far, need more bytes */
    H1_PARSE_BAD,        /* invalid: see status and error */
};

/* A (pointer, length) pair into the caller's buffer. */
struct h1_iov {
    const char *p;
    size_t len;
};

/* Field flags, one bit each. */
#define H1_FF_HOP      0x01u  /* hop-by-hop: never forwarded (Connection and what it
                                 names, Keep-Alive, Proxy-Connection, TE, Upgrade,
                                 Transfer-Encoding, Content-Length: framing is
                                 regenerated from the parsed values) */

struct h1_field {
    struct h1_iov name;      /* token, case preserved */
    struct h1_iov value;     /* OWS trimmed at both ends */
    unsigned flags;          /* H1_FF_* */
};

enum h1_framing {
    H1_BODY_NONE = 0,        /* no body (request without CL/TE, HEAD/204/304/1xx response) */
    H1_BODY_LENGTH,          /* content_length bytes */
    H1_BODY_CHUNKED,         /* chunked transfer coding */
    H1_BODY_CLOSE,           /* response only: body runs until the server closes */
};

/* Parsing limits; zero fields mean "use the built-in default". */
struct h1_parse_limits {
    unsigned max_fields;     /* header count limit (and size of the fields array) */
    unsigned max_uri;        /* request-target bytes; over it: 414 */
};

struct h1_req {
    struct h1_iov method;
    struct h1_iov target;
    int minor;                   /* HTTP/1.<minor>: 0 or 1 */
    struct h1_field *fields;     /* caller-provided array of limits.max_fields */
    size_t nfields;
    size_t head_len;             /* bytes of the head including the final CRLF CRLF */

    /* derived, valid on H1_PARSE_DONE */
    enum h1_framing framing;     /* NONE, LENGTH or CHUNKED */
    uint64_t content_length;     /* when framing == H1_BODY_LENGTH */
    struct h1_iov host;          /* Host value; len 0 when absent (HTTP/1.0) */
    bool keep_alive;             /* 1.1 without "close", or 1.0 with "keep-alive" */
    bool expect_continue;        /* Expect: 100-continue */
    bool upgrade;                /* HTTP/1.1 with Connection: upgrade + Upgrade:
                                  * (ignored on HTTP/1.0, RFC 9110 §7.8) */
    bool te_trailers;            /* TE: trailers was sent */

    /* on H1_PARSE_BAD */
    int status;                  /* 400, 414, 431, 501 or 505 */
    const char *error;           /* static text, e.g. "Content-Length with Transfer-Encoding" */
};

struct h1_resp {
    int minor;
    int status;                  /* 100..999 */
    struct h1_iov reason;
    struct h1_field *fields;
    size_t nfields;
    size_t head_len;

    enum h1_framing framing;     /* NONE, LENGTH, CHUNKED or CLOSE */
    uint64_t content_length;
    bool keep_alive;             /* the server lets us reuse the connection */

    const char *error;           /* on H1_PARSE_BAD */
};

/* Parses a request head from <buf>[0..<len>). <r>->fields must point to an
 * array of at least <lim>->max_fields entries. Returns DONE (r->head_len set),
 * AGAIN, or BAD (r->status and r->error set). Never reads past <len>. */
enum h1_parse h1_req_parse(struct h1_req *r, const char *buf, size_t len,
                           const struct h1_parse_limits *lim);

/* Parses a response head. <req_method_head> is true when the request was
 * HEAD (no body whatever the framing fields say). 1xx, 204 and 304 have no
 * body. Same contract as h1_req_parse(). */
enum h1_parse h1_resp_parse(struct h1_resp *r, const char *buf, size_t len,
                            const struct h1_parse_limits *lim, bool req_method_head);

/* First field named <name> (case-insensitive), or NULL. */
const struct h1_field *h1_field_find(const struct h1_field *f, size_t n,
                                     const char *name);

/* Value of cookie <name> in a Cookie field value, or {NULL, 0}. */
struct h1_iov h1_cookie_find(struct h1_iov cookie_header, const char *name);

/* Case-insensitive comparison of an iov with a NUL-terminated string.
 * Inline: most callers compare with a literal, whose length is then known
 * at compile time, and most comparisons end at the length. */
static inline bool
h1_iov_eq(struct h1_iov v, const char *s)
{
    size_t n = strlen(s), i;

    if (v.len != n)
        return false;
    for (i = 0; i < n; i++) {
        unsigned char a = (unsigned char)v.p[i], b = (unsigned char)s[i];
        unsigned la = a | 0x20u;        /* lower case, if <a> is a letter */

        if (a != b && (la != (b | 0x20u) || la < 'a' || la > 'z'))
            return false;
    }
    return true;
}

/* Is method <m> exactly <s>? Methods are case-sensitive (RFC 9110 §9.1):
 * "head" is a method of its own, not HEAD, and its response has a body. */
bool h1_method_eq(struct h1_iov m, const char *s);

/* GET, HEAD, OPTIONS, TRACE, PUT or DELETE, exactly (RFC 9110 §9.2.2). Any
 * other token is a valid method, but not known to be idempotent. */
bool h1_method_idempotent(struct h1_iov m);

/*
 * Chunked decoder (lib/h1chunk.c). Feed it the bytes following the head; it consumes chunk
 * framing itself and tells the caller how much chunk data follows, which
 * the caller moves without copying (evbuffer_remove_buffer) and reports back
 * with h1_chunked_data_consumed(). Trailer fields are parsed, validated and
 * dropped (never merged into the head).
 */
enum h1_chunk {
    H1_CHUNK_AGAIN = 0,      /* all <len> bytes consumed, need more */
    H1_CHUNK_DATA,           /* st->data_left bytes of data start at buf + *used */
    H1_CHUNK_DONE,           /* last chunk and trailers consumed: body complete */
    H1_CHUNK_BAD,            /* invalid framing: st->error */
};

struct h1_chunked {
    uint64_t data_left;          /* bytes of chunk data still to move */
    uint64_t size;               /* size of the current chunk (internal) */
    const char *error;
    int state;                   /* internal */
    unsigned line_bytes;         /* bytes of the current size/trailer line (internal) */
    unsigned trailer_bytes;      /* total trailer bytes (internal) */
    unsigned max_ext;            /* chunk-extension byte limit; 0 = default 4096 */
};

void h1_chunked_init(struct h1_chunked *st);

/* Consumes framing bytes from <buf>[0..<len>), stopping at chunk data, at the
 * end of the body, or on error; *<used> is how many bytes were consumed. */
enum h1_chunk h1_chunked_parse(struct h1_chunked *st, const char *buf, size_t len,
                               size_t *used);

/* The caller moved <n> (<= st->data_left) bytes of chunk data. */
void h1_chunked_data_consumed(struct h1_chunked *st, uint64_t n);

/* Looks for a chunked framing error in <buf>[0..<len>), the first body
 * bytes of a message (those at hand when its head ended), with a fresh
 * decoder whose extensions are limited to <max_ext> (0: default). Returns
 * NULL when there is none (the bytes may stop anywhere, and what follows
 * the end of the body is not looked at), else the decoder's error. Lets a
 * proxy refuse a response whose framing is already known to be bad before
 * it forwards the head. */
const char *h1_chunked_check(const char *buf, size_t len, unsigned max_ext);

/* The reason phrase of <status> ("Bad Request"), or "Unknown". */
const char *h1_status_text(int status);

#endif
