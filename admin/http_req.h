/*
 * http_req: what the admin HTTP endpoint makes of a request head, and the
 * nesting pre-check of its JSON bodies. The head is parsed by lib/http1.c
 * (the proxy's strict, restartable, fuzzed parser); on top of it the
 * endpoint keeps its own limits and refuses what an admin client (curl or
 * a script) never needs: a target that is not a path, a chunked body, a
 * body over 64 KiB, a second Authorization, an expectation other than
 * 100-continue. Pure: no I/O, no allocation; results point into the
 * caller's buffer.
 */
#ifndef CUTOVER_ADMIN_HTTP_REQ_H
#define CUTOVER_ADMIN_HTTP_REQ_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/http1.h"

#define ADM_REQ_HEAD_MAX    8192u      /* bytes of a request head, CRLFCRLF included */
#define ADM_REQ_BODY_MAX    65536u     /* bytes of a request body */
#define ADM_REQ_FIELDS_MAX  64u        /* header fields of one request */

struct adm_req {
    struct h1_req h1;                  /* method, target, minor, keep_alive,
                                        * expect_continue, content_length, head_len */
    struct h1_field fields[ADM_REQ_FIELDS_MAX];   /* h1.fields points here */
    struct h1_iov path;                /* target without its "?query" */
    struct h1_iov authorization;       /* field value, trimmed; p NULL when absent */
    int status;                        /* H1_PARSE_BAD: 400, 411, 413, 431, 501 or 505 */
    const char *error;                 /* H1_PARSE_BAD: static text for the reply */
};

/* Parses the request head at the start of <buf> (<len> bytes available;
 * only the first ADM_REQ_HEAD_MAX are looked at, never the body). Returns
 * H1_PARSE_DONE (r->h1.head_len set), H1_PARSE_AGAIN, or H1_PARSE_BAD with
 * r->status and r->error. lib/http1.c's refusals stand (400, 431 for more
 * than ADM_REQ_FIELDS_MAX fields, 501, 505); besides: no end of the head
 * within ADM_REQ_HEAD_MAX bytes is 431, an empty line before the request
 * line, a target that is not a path, a second Authorization and an Expect
 * other than 100-continue are 400, a chunked body is 411 and a
 * Content-Length over ADM_REQ_BODY_MAX is 413. The verdict never depends
 * on how <buf> was split across reads: a prefix answers AGAIN or the same
 * verdict. <r> is overwritten and must not be copied (h1.fields points
 * into it). */
enum h1_parse adm_req_parse(struct adm_req *r, const char *buf, size_t len);

/* The bearer token of <r>'s Authorization ("Bearer" in any case, then
 * blanks, then the token). Returns 0 with *<token> set, or -1 with <*why>
 * saying what was wrong (no secret in it). */
int adm_req_bearer(const struct adm_req *r, struct h1_iov *token, const char **why);

/* True when the JSON text <buf> (<len> bytes) nests arrays and objects at
 * most <max_depth> deep. Only brackets outside strings count (escapes
 * inside strings are honoured); the text is not validated otherwise, so
 * this runs before the JSON parser and keeps its recursion bounded. */
bool adm_json_depth_ok(const char *buf, size_t len, unsigned max_depth);

#endif
