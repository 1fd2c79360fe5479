/*
 * http_req: see http_req.h. lib/http1.c parses the head; the admin's own
 * refusals are decided here, either before it (an empty first line, which
 * lib/http1.c tolerates once) or once the head is complete, so they keep
 * its property that a prefix answers AGAIN or the same verdict.
 */
#include <string.h>
#include <strings.h>

#include "admin/http_req.h"

static enum h1_parse
bad(struct adm_req *r, int status, const char *error)
{
    r->status = status;
    r->error = error;
    return H1_PARSE_BAD;
}

/* The admin's checks of a complete head lib/http1.c accepted. */
static enum h1_parse
check_head(struct adm_req *r)
{
    const struct h1_req *h = &r->h1;
    const char *qm;
    size_t i;

    /* origin-form only: lib/http1.c also takes "OPTIONS *" and absolute-form */
    if (h->target.p[0] != '/')
        return bad(r, 400, "the request target must be a path starting with /");
    r->path = h->target;
    qm = memchr(h->target.p, '?', h->target.len);
    if (qm != NULL)
        r->path.len = (size_t)(qm - h->target.p);
    for (i = 0; i < h->nfields; i++) {
        const struct h1_field *f = &h->fields[i];

        if (h1_iov_eq(f->name, "authorization")) {
            if (r->authorization.p != NULL)
                return bad(r, 400, "more than one Authorization");
            r->authorization = f->value;
        } else if (h1_iov_eq(f->name, "expect") && !h1_iov_eq(f->value, "100-continue")) {
            return bad(r, 400, "unsupported Expect (only 100-continue)");
        }
    }
    if (h->framing == H1_BODY_CHUNKED)
        return bad(r, 411, "chunked bodies are not accepted: send Content-Length");
    if (h->framing == H1_BODY_LENGTH && h->content_length > ADM_REQ_BODY_MAX)
        return bad(r, 413, "request body over 65536 bytes");
    return H1_PARSE_DONE;
}

enum h1_parse
adm_req_parse(struct adm_req *r, const char *buf, size_t len)
{
    static const struct h1_parse_limits lim = {
        .max_fields = ADM_REQ_FIELDS_MAX,
        .max_uri = ADM_REQ_HEAD_MAX,
    };
    size_t n = len < ADM_REQ_HEAD_MAX ? len : ADM_REQ_HEAD_MAX;
    enum h1_parse res;

    memset(r, 0, sizeof(*r));
    r->h1.fields = r->fields;
    if (len >= 2 && buf[0] == '\r' && buf[1] == '\n')
        return bad(r, 400, "empty request line");
    res = h1_req_parse(&r->h1, buf, n, &lim);
    if (res == H1_PARSE_BAD)
        return bad(r, r->h1.status, r->h1.error);
    if (res == H1_PARSE_AGAIN) {
        /* the first ADM_REQ_HEAD_MAX bytes hold no end of the head */
        if (len >= ADM_REQ_HEAD_MAX)
            return bad(r, 431, "request head over 8192 bytes");
        return H1_PARSE_AGAIN;
    }
    return check_head(r);
}

int
adm_req_bearer(const struct adm_req *r, struct h1_iov *token, const char **why)
{
    const char *v = r->authorization.p;
    size_t len = r->authorization.len, i = 6;

    if (v == NULL) {
        *why = "no Authorization header";
        return -1;
    }
    if (len < 7 || strncasecmp(v, "Bearer", 6) != 0 || (v[6] != ' ' && v[6] != '\t')) {
        *why = "Authorization is not a Bearer token";
        return -1;
    }
    while (i < len && (v[i] == ' ' || v[i] == '\t'))
        i++;
    if (i == len) {
        *why = "empty bearer token";
        return -1;
    }
    token->p = v + i;
    token->len = len - i;
    return 0;
}

bool
adm_json_depth_ok(const char *buf, size_t len, unsigned max_depth)
{
    unsigned depth = 0;
    bool in_str = false, esc = false;
    size_t i;

    for (i = 0; i < len; i++) {
        char ch = buf[i];

        if (in_str) {
            if (esc)
                esc = false;
            else if (ch == '\\')
                esc = true;
            else if (ch == '"')
                in_str = false;
            continue;
        }
        if (ch == '"') {
            in_str = true;
        } else if (ch == '[' || ch == '{') {
            if (++depth > max_depth)
                return false;
        } else if ((ch == ']' || ch == '}') && depth > 0) {
            depth--;
        }
    }
    return true;
}
