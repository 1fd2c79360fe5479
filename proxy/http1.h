/*
 * http1: our own strict HTTP/1.1 head parser and chunked-body decoder
 * (RFC 9112, RFC 9110). Pure: no libevent, no allocation, no I/O, so it can
 * be unit-tested table-driven and fuzzed in place.
 *
 * Heads are parsed into (pointer, length) pairs over the caller's head bytes;
 * bodies are never copied. Parsing is restartable the picohttpparser way: call
 * again with more bytes after PX_PARSE_AGAIN; the verdict does not depend on
 * how the bytes were split. A byte that can never become valid is rejected at
 * once (PX_PARSE_BAD) even before the head is complete. Everything ambiguous
 * is rejected: a proxy must never forward a byte it is not sure of.
 */
#ifndef CUTOVER_PROXY_HTTP1_H
#define CUTOVER_PROXY_HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum px_parse {
    PX_PARSE_DONE = 0,   /* a complete, valid head: see head_len */
    PX_PARSE_AGAIN,      /* valid so far, need more bytes */
    PX_PARSE_BAD,        /* invalid: see status and error */
};

/* A (pointer, length) pair into the caller's buffer. */
struct px_iov {
    const char *p;
    size_t len;
};

/* Field flags, one bit each. */
#define PX_FF_HOP      0x01u  /* hop-by-hop: never forwarded (Connection and what it
                                 names, Keep-Alive, Proxy-Connection, TE, Upgrade,
                                 Transfer-Encoding, Content-Length: framing is
                                 regenerated from the parsed values) */

struct px_field {
    struct px_iov name;      /* token, case preserved */
    struct px_iov value;     /* OWS trimmed at both ends */
    unsigned flags;          /* PX_FF_* */
};

enum px_framing {
    PX_BODY_NONE = 0,        /* no body (request without CL/TE, HEAD/204/304/1xx response) */
    PX_BODY_LENGTH,          /* content_length bytes */
    PX_BODY_CHUNKED,         /* chunked transfer coding */
    PX_BODY_CLOSE,           /* response only: body runs until the server closes */
};

/* Parsing limits; zero fields mean "use the built-in default". */
struct px_parse_limits {
    unsigned max_fields;     /* header count limit (and size of the fields array) */
    unsigned max_uri;        /* request-target bytes; over it: 414 */
};

struct px_req {
    struct px_iov method;
    struct px_iov target;
    int minor;                   /* HTTP/1.<minor>: 0 or 1 */
    struct px_field *fields;     /* caller-provided array of limits.max_fields */
    size_t nfields;
    size_t head_len;             /* bytes of the head including the final CRLF CRLF */

    /* derived, valid on PX_PARSE_DONE */
    enum px_framing framing;     /* NONE, LENGTH or CHUNKED */
    uint64_t content_length;     /* when framing == PX_BODY_LENGTH */
    struct px_iov host;          /* Host value; len 0 when absent (HTTP/1.0) */
    bool keep_alive;             /* 1.1 without "close", or 1.0 with "keep-alive" */
    bool expect_continue;        /* Expect: 100-continue */
    bool upgrade;                /* Connection: upgrade + Upgrade: present */
    bool te_trailers;            /* TE: trailers was sent */

    /* on PX_PARSE_BAD */
    int status;                  /* 400, 414, 431, 501 or 505 */
    const char *error;           /* static text, e.g. "Content-Length with Transfer-Encoding" */
};

struct px_resp {
    int minor;
    int status;                  /* 100..999 */
    struct px_iov reason;
    struct px_field *fields;
    size_t nfields;
    size_t head_len;

    enum px_framing framing;     /* NONE, LENGTH, CHUNKED or CLOSE */
    uint64_t content_length;
    bool keep_alive;             /* the server lets us reuse the connection */

    const char *error;           /* on PX_PARSE_BAD */
};

/* Parses a request head from <buf>[0..<len>). <r>->fields must point to an
 * array of at least <lim>->max_fields entries. Returns DONE (r->head_len set),
 * AGAIN, or BAD (r->status and r->error set). Never reads past <len>. */
enum px_parse px_req_parse(struct px_req *r, const char *buf, size_t len,
                           const struct px_parse_limits *lim);

/* Parses a response head. <req_method_head> is true when the request was
 * HEAD (no body whatever the framing fields say). 1xx, 204 and 304 have no
 * body. Same contract as px_req_parse(). */
enum px_parse px_resp_parse(struct px_resp *r, const char *buf, size_t len,
                            const struct px_parse_limits *lim, bool req_method_head);

/* First field named <name> (case-insensitive), or NULL. */
const struct px_field *px_field_find(const struct px_field *f, size_t n,
                                     const char *name);

/* Value of cookie <name> in a Cookie field value, or {NULL, 0}. */
struct px_iov px_cookie_find(struct px_iov cookie_header, const char *name);

/* Case-insensitive comparison of an iov with a NUL-terminated string. */
bool px_iov_eq(struct px_iov v, const char *s);

/*
 * Chunked decoder. Feed it the bytes following the head; it consumes chunk
 * framing itself and tells the caller how much chunk data follows, which
 * the caller moves without copying (evbuffer_remove_buffer) and reports back
 * with px_chunked_data_consumed(). Trailer fields are parsed, validated and
 * dropped (never merged into the head).
 */
enum px_chunk {
    PX_CHUNK_AGAIN = 0,      /* all <len> bytes consumed, need more */
    PX_CHUNK_DATA,           /* st->data_left bytes of data start at buf + *used */
    PX_CHUNK_DONE,           /* last chunk and trailers consumed: body complete */
    PX_CHUNK_BAD,            /* invalid framing: st->error */
};

struct px_chunked {
    uint64_t data_left;          /* bytes of chunk data still to move */
    uint64_t size;               /* size of the current chunk (internal) */
    const char *error;
    int state;                   /* internal */
    unsigned line_bytes;         /* bytes of the current size/trailer line (internal) */
    unsigned trailer_bytes;      /* total trailer bytes (internal) */
    unsigned max_ext;            /* chunk-extension byte limit; 0 = default 4096 */
};

void px_chunked_init(struct px_chunked *st);

/* Consumes framing bytes from <buf>[0..<len>), stopping at chunk data, at the
 * end of the body, or on error; *<used> is how many bytes were consumed. */
enum px_chunk px_chunked_parse(struct px_chunked *st, const char *buf, size_t len,
                               size_t *used);

/* The caller moved <n> (<= st->data_left) bytes of chunk data. */
void px_chunked_data_consumed(struct px_chunked *st, uint64_t n);

/* The reason phrase of <status> ("Bad Request"), or "Unknown". */
const char *px_status_text(int status);

#endif
