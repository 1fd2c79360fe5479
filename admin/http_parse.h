/*
 * http_parse: the small, strict HTTP/1.1 request-head parser of the admin
 * HTTP endpoint, and the JSON nesting pre-check of its bodies. Pure: no
 * I/O, no allocation; results point into the caller's buffer. It accepts
 * far less than the proxy's parser (lib/http1.c): an admin client is curl
 * or a script, so anything unusual is an error rather than a guess.
 */
#ifndef CUTOVER_ADMIN_HTTP_PARSE_H
#define CUTOVER_ADMIN_HTTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ADM_HP_HEAD_MAX    8192u       /* bytes of a request head, CRLFCRLF included */
#define ADM_HP_BODY_MAX    65536u      /* bytes of a request body */
#define ADM_HP_FIELDS_MAX  64u         /* header fields of one request */

enum adm_hp_result {
    ADM_HP_DONE = 0,         /* a complete, valid head: see the request */
    ADM_HP_AGAIN,            /* valid so far, the head is not complete yet */
    ADM_HP_BAD,              /* refused: req->status and req->error say why */
};

struct adm_hp_slice {
    const char *p;           /* into the parsed buffer; NULL when absent */
    size_t len;
};

struct adm_hp_req {
    struct adm_hp_slice method;
    struct adm_hp_slice target;      /* request-target as sent */
    struct adm_hp_slice path;        /* target without its "?query" */
    struct adm_hp_slice authorization;   /* field value, trimmed */
    int minor;                       /* 0 or 1: HTTP/1.<minor> */
    uint64_t content_length;         /* 0 when absent */
    bool has_content_length;
    bool is_keep_alive;              /* after HTTP/1.x defaults and Connection */
    bool expects_continue;           /* Expect: 100-continue */
    size_t head_len;                 /* bytes of the head, CRLFCRLF included */
    int status;                      /* ADM_HP_BAD: 400, 411, 413, 431 or 505 */
    const char *error;               /* ADM_HP_BAD: static text for the reply */
};

/* Parses the request head at the start of <buf> (<len> bytes available;
 * bytes after the head are not looked at). A head longer than
 * ADM_HP_HEAD_MAX is 431; a Content-Length over ADM_HP_BODY_MAX is 413;
 * Transfer-Encoding is 411 (chunked bodies are not accepted) or 400 with a
 * Content-Length; obs-fold, bare CR or LF, a space before the colon,
 * invalid characters, duplicate Content-Length, Authorization or Host, a
 * missing Host in HTTP/1.1 are 400; a version other than HTTP/1.0 and 1.1 is
 * 505. The result never depends on how <buf> was split across reads:
 * parsing a prefix answers AGAIN or the same BAD. <req> is overwritten. */
enum adm_hp_result adm_hp_parse(const char *buf, size_t len, struct adm_hp_req *req);

/* True when the JSON text <buf> (<len> bytes) nests arrays and objects at
 * most <max_depth> deep. Only brackets outside strings count (escapes
 * inside strings are honoured); the text is not validated otherwise, so
 * this runs before the JSON parser and keeps its recursion bounded. */
bool adm_json_depth_ok(const char *buf, size_t len, unsigned max_depth);

#endif
