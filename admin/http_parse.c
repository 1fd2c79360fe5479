/*
 * http_parse: see http_parse.h. Two passes: the first walks the bytes in
 * order until the blank line that ends the head, refusing a bare CR or LF
 * where it stands (so the verdict is tied to a byte position and does not
 * depend on how the head arrived); the second parses the complete head,
 * which is at most ADM_HP_HEAD_MAX bytes, line by line.
 */
#include <string.h>
#include <strings.h>

#include "admin/http_parse.h"

/* RFC 9110 tchar */
static bool
is_tchar(unsigned char ch)
{
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
        return true;
    return ch != 0 && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

static enum adm_hp_result
bad(struct adm_hp_req *r, int status, const char *error)
{
    r->status = status;
    r->error = error;
    return ADM_HP_BAD;
}

static bool
slice_is(const char *p, size_t len, const char *lit)
{
    return strlen(lit) == len && strncasecmp(p, lit, len) == 0;
}

/* Finds the end of the head. Returns DONE with r->head_len set, AGAIN, or
 * BAD (bare CR/LF: 400; no end within ADM_HP_HEAD_MAX: 431). */
static enum adm_hp_result
find_end(const char *buf, size_t len, struct adm_hp_req *r)
{
    size_t i, line_start = 0, n = len < ADM_HP_HEAD_MAX ? len : ADM_HP_HEAD_MAX;

    for (i = 0; i < n; i++) {
        if (buf[i] == '\n')
            return bad(r, 400, "bare LF in the request head (lines end with CRLF)");
        if (buf[i] != '\r')
            continue;
        if (i + 1 >= len)
            return ADM_HP_AGAIN;
        if (buf[i + 1] != '\n')
            return bad(r, 400, "bare CR in the request head");
        if (i == 0)
            return bad(r, 400, "empty request line");
        if (i == line_start) {
            /* the blank line: the head ends after its CRLF */
            if (i + 2 > ADM_HP_HEAD_MAX)
                return bad(r, 431, "request head over 8192 bytes");
            r->head_len = i + 2;
            return ADM_HP_DONE;
        }
        line_start = i + 2;
        i++;                           /* the LF of this line end */
    }
    if (len >= ADM_HP_HEAD_MAX)
        return bad(r, 431, "request head over 8192 bytes");
    return ADM_HP_AGAIN;
}

/* Parses the request line <p>..<end> (CRLF excluded). */
static enum adm_hp_result
parse_request_line(const char *p, const char *end, struct adm_hp_req *r)
{
    const char *q = p;

    while (q < end && is_tchar((unsigned char)*q))
        q++;
    if (q == p || q == end || *q != ' ')
        return bad(r, 400, "malformed request line (method)");
    r->method.p = p;
    r->method.len = (size_t)(q - p);
    p = ++q;
    while (q < end && (unsigned char)*q > 0x20 && (unsigned char)*q < 0x7f)
        q++;
    if (q == p || q == end || *q != ' ')
        return bad(r, 400, "malformed request line (target)");
    r->target.p = p;
    r->target.len = (size_t)(q - p);
    if (*p != '/')
        return bad(r, 400, "the request target must be a path starting with /");
    r->path.p = p;
    r->path.len = r->target.len;
    {
        const char *qm = memchr(p, '?', r->target.len);

        if (qm != NULL)
            r->path.len = (size_t)(qm - p);
    }
    p = ++q;
    if (end - p != 8 || memcmp(p, "HTTP/", 5) != 0 || p[5] < '0' || p[5] > '9'
        || p[6] != '.' || p[7] < '0' || p[7] > '9')
        return bad(r, 400, "malformed request line (version)");
    if (p[5] != '1' || (p[7] != '0' && p[7] != '1'))
        return bad(r, 505, "HTTP version not supported (HTTP/1.0 or HTTP/1.1 only)");
    r->minor = p[7] - '0';
    return ADM_HP_DONE;
}

/* Parses a Content-Length value. */
static int
parse_length(const char *p, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    size_t i;

    if (len == 0 || len > 19)
        return -1;
    for (i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(p[i] - '0');
    }
    *out = v;
    return 0;
}

/* Applies the Connection tokens of value <p>/<len> to <close>/<keep>. */
static void
parse_connection(const char *p, size_t len, bool *close, bool *keep)
{
    size_t i = 0, s, e;

    while (i < len) {
        while (i < len && (p[i] == ' ' || p[i] == '\t' || p[i] == ','))
            i++;
        s = i;
        while (i < len && p[i] != ',')
            i++;
        e = i;
        while (e > s && (p[e - 1] == ' ' || p[e - 1] == '\t'))
            e--;
        if (slice_is(p + s, e - s, "close"))
            *close = true;
        else if (slice_is(p + s, e - s, "keep-alive"))
            *keep = true;
    }
}

enum adm_hp_result
adm_hp_parse(const char *buf, size_t len, struct adm_hp_req *r)
{
    const char *p, *end, *eol, *name, *colon, *v, *ve;
    enum adm_hp_result res;
    unsigned nfields = 0, nhost = 0;
    bool has_te = false, close = false, keep = false;

    memset(r, 0, sizeof(*r));
    res = find_end(buf, len, r);
    if (res != ADM_HP_DONE)
        return res;
    p = buf;
    end = buf + r->head_len - 2;       /* the final CRLF ends the field lines */
    eol = memchr(p, '\r', (size_t)(end - p));     /* not NULL: find_end saw it */
    res = parse_request_line(p, eol, r);
    if (res != ADM_HP_DONE)
        return res;
    for (p = eol + 2; p < end; p = eol + 2) {
        eol = memchr(p, '\r', (size_t)(end - p));    /* find_end saw every CR's LF */
        if (*p == ' ' || *p == '\t')
            return bad(r, 400, "obsolete line folding in the request head");
        if (++nfields > ADM_HP_FIELDS_MAX)
            return bad(r, 431, "more than 64 header fields");
        name = p;
        for (colon = p; colon < eol && is_tchar((unsigned char)*colon); colon++)
            ;
        if (colon == name || colon == eol || *colon != ':')
            return bad(r, 400, "malformed header field (name, or a space before the colon)");
        v = colon + 1;
        while (v < eol && (*v == ' ' || *v == '\t'))
            v++;
        ve = eol;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        for (const char *c = v; c < ve; c++) {
            unsigned char ch = (unsigned char)*c;

            if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
                return bad(r, 400, "control character in a header value");
        }
        if (slice_is(name, (size_t)(colon - name), "content-length")) {
            if (r->has_content_length)
                return bad(r, 400, "more than one Content-Length");
            if (parse_length(v, (size_t)(ve - v), &r->content_length) != 0)
                return bad(r, 400, "malformed Content-Length");
            r->has_content_length = true;
        } else if (slice_is(name, (size_t)(colon - name), "transfer-encoding")) {
            has_te = true;
        } else if (slice_is(name, (size_t)(colon - name), "authorization")) {
            if (r->authorization.p != NULL)
                return bad(r, 400, "more than one Authorization");
            r->authorization.p = v;
            r->authorization.len = (size_t)(ve - v);
        } else if (slice_is(name, (size_t)(colon - name), "host")) {
            if (++nhost > 1)
                return bad(r, 400, "more than one Host");
        } else if (slice_is(name, (size_t)(colon - name), "connection")) {
            parse_connection(v, (size_t)(ve - v), &close, &keep);
        } else if (slice_is(name, (size_t)(colon - name), "expect")) {
            if (!slice_is(v, (size_t)(ve - v), "100-continue"))
                return bad(r, 400, "unsupported Expect (only 100-continue)");
            r->expects_continue = true;
        }
    }
    if (r->minor == 1 && nhost == 0)
        return bad(r, 400, "HTTP/1.1 request without Host");
    if (has_te && r->has_content_length)
        return bad(r, 400, "both Transfer-Encoding and Content-Length");
    if (has_te)
        return bad(r, 411, "chunked bodies are not accepted: send Content-Length");
    if (r->content_length > ADM_HP_BODY_MAX)
        return bad(r, 413, "request body over 65536 bytes");
    r->is_keep_alive = r->minor == 1 ? !close : (keep && !close);
    return ADM_HP_DONE;
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
