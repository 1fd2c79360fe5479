/*
 * http1: our own strict HTTP/1.1 head parser (RFC 9112, RFC 9110), with the
 * small helpers that go with heads (field and cookie look-up, methods,
 * status text). The chunked-body decoder declared beside it in lib/http1.h
 * is lib/h1chunk.c; the character classes both use are lib/http1_int.h.
 *
 * Heads are parsed the picohttpparser way: every call scans the buffer from
 * its first byte, left to right, and stops at the first byte that can never
 * become valid. Nothing is kept between calls, so the verdict (and the status
 * of a rejection) cannot depend on how the bytes were split: an error is
 * always found while scanning some byte, and the end of the buffer only ever
 * means H1_PARSE_AGAIN. Checks that need a whole field line (Content-Length,
 * Host, Transfer-Encoding, Connection) run when its CRLF arrives; checks that
 * need the whole head (missing Host, final framing) run at the empty line.
 * Heads are small (the caller bounds them), so re-scanning is cheap.
 *
 * Choices where RFC 9112/9110 leave room, always on the strict side:
 * - One empty line (CRLF) before the request or status line is ignored
 *   (RFC 9112 §2.2); a second one is rejected (400). head_len counts it.
 * - A "#" anywhere in the request-target is rejected: a fragment is never
 *   sent (RFC 9112 §3.2), and servers disagree about where the path ends.
 * - Any token is a method, compared case-sensitively ("head" is not HEAD:
 *   h1_method_eq()). CONNECT is not supported (501). asterisk-form is
 *   only accepted as "OPTIONS *". absolute-form is only http:// or https://,
 *   with a valid authority and no userinfo (RFC 9110 §4.2.4); it still needs
 *   a Host field, which must name the same authority (compared without case,
 *   the scheme's default port ignored on both sides), else 400.
 * - Host must be a non-empty reg-name, IPv4 or IP-literal with an optional
 *   port of 1 to 5 digits (<= 65535). An empty Host is rejected.
 * - A field named Content-Length or Transfer-Encoding with "_" for "-"
 *   (any case: "Transfer_Encoding", "content_length") is rejected, in
 *   requests and responses: some servers fold "_" into "-", and would then
 *   frame the message by a field the proxy forwarded as an ordinary one.
 * - Content-Length is 1*DIGIT of at most 19 digits and <= 2^63-1. A second
 *   Content-Length field is rejected even when identical; lists are rejected.
 * - Transfer-Encoding is a list of bare tokens (no parameters, no empty
 *   elements). chunked twice: 400. Requests: chunked not last: 400, other
 *   codings with chunked last: 501. Responses: chunked not last means the
 *   body runs to the close (RFC 9112 §6.3); other codings before a final
 *   chunked are rejected, since the framing is regenerated downstream and
 *   such a coding could not be forwarded intact. Transfer-Encoding in an
 *   HTTP/1.0 message is rejected (RFC 9112 §6.1).
 * - Connection is a token list whose empty elements are ignored (RFC 9110
 *   §5.6.1.2). Naming Content-Length or Transfer-Encoding in it is rejected;
 *   naming Host or X-Forwarded-* is ignored (those fields stay end-to-end).
 * - Upgrade on HTTP/1.0 is ignored (RFC 9110 §7.8): no upgrade, and the
 *   Upgrade and Connection fields are dropped as on any request.
 * - Expect: 100-continue (any case) sets expect_continue on HTTP/1.1; other
 *   expectations are passed on untouched.
 *
 * Limits: max_fields defaults to PX_DEFAULT_MAX_FIELDS (100), max_uri to
 * PX_DEFAULT_MAX_URI (8192).
 */
#include "lib/text.h"
#include "lib/http1.h"
#include "lib/http1_int.h"

#include <string.h>

#define PX_DEFAULT_MAX_FIELDS 100u
#define PX_DEFAULT_MAX_URI    8192u

/* ---- comparisons, methods, field look-up ------------------------------ */

static unsigned char
lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

static bool
mem_ieq(const char *a, const char *b, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
            return false;
    return true;
}

static bool
iov_ieq_iov(struct h1_iov a, struct h1_iov b)
{
    return a.len == b.len && mem_ieq(a.p, b.p, a.len);
}

/* Case-sensitive: methods are case-sensitive (RFC 9110 §9.1). */
static bool
iov_eq_cs(struct h1_iov v, const char *s)
{
    size_t n = strlen(s);

    return v.len == n && memcmp(v.p, s, n) == 0;
}

static bool
iov_iprefix(struct h1_iov v, const char *s)
{
    size_t n = strlen(s);

    return v.len >= n && mem_ieq(v.p, s, n);
}

bool
h1_method_eq(struct h1_iov m, const char *s)
{
    return iov_eq_cs(m, s);
}

bool
h1_method_idempotent(struct h1_iov m)
{
    static const char *const idem[] = { "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE" };
    size_t i;

    for (i = 0; i < sizeof idem / sizeof idem[0]; i++)
        if (iov_eq_cs(m, idem[i]))
            return true;
    return false;
}

const struct h1_field *
h1_field_find(const struct h1_field *f, size_t n, const char *name)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (h1_iov_eq(f[i].name, name))
            return &f[i];
    return NULL;
}

/* ---- lists, hosts, numbers -------------------------------------------- */

/* Next element of the comma-separated token list <v>, scanning from *<i>
 * (0 for the first call). Returns 1 with <el> set, 0 at the end of the list,
 * -1 when the list is malformed: an element that is not a single token, or
 * an empty element when !<allow_empty> (empty elements are skipped
 * otherwise). */
static int
list_next(struct h1_iov v, size_t *i, struct h1_iov *el, bool allow_empty)
{
    const unsigned char *p = (const unsigned char *)v.p;
    size_t n = v.len, j, s;

    for (;;) {
        j = *i;
        if (j > n)
            return 0;
        while (j < n && is_ows(p[j]))
            j++;
        s = j;
        while (j < n && is_tchar(p[j]))
            j++;
        el->p = v.p + s;
        el->len = j - s;
        while (j < n && is_ows(p[j]))
            j++;
        if (j < n && p[j] != ',')
            return -1;
        *i = j + 1;                       /* past the comma; n + 1 at the end */
        if (el->len > 0)
            return 1;
        if (!allow_empty)
            return -1;
    }
}

static bool
is_regname_byte(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    switch (c) {
    case '-': case '.': case '_': case '~':                       /* unreserved */
    case '!': case '$': case '&': case '\'': case '(': case ')':  /* sub-delims */
    case '*': case '+': case ',': case ';': case '=':
        return true;
    default:
        return false;
    }
}

/* uri-host [ ":" port ] (RFC 9110 §7.2), strict: non-empty host, port of
 * 1 to 5 digits and at most 65535. */
static bool
host_valid(struct h1_iov h)
{
    const unsigned char *p = (const unsigned char *)h.p;
    size_t n = h.len, i = 0, digits;
    unsigned long port = 0;

    if (n == 0)
        return false;
    if (p[0] == '[') {
        for (i = 1; i < n && p[i] != ']'; i++)
            if (text_hex_value(p[i]) < 0 && p[i] != ':' && p[i] != '.')
                return false;
        if (i == n || i == 1)
            return false;
        i++;
    } else {
        while (i < n && p[i] != ':') {
            if (p[i] == '%') {
                if (i + 2 >= n || text_hex_value(p[i + 1]) < 0 || text_hex_value(p[i + 2]) < 0)
                    return false;
                i += 3;
                continue;
            }
            if (!is_regname_byte(p[i]))
                return false;
            i++;
        }
        if (i == 0)
            return false;
    }
    if (i == n)
        return true;
    if (p[i++] != ':')
        return false;
    for (digits = 0; i < n; i++, digits++) {
        if (!is_digit(p[i]) || digits == 5)
            return false;
        port = port * 10 + (unsigned long)(p[i] - '0');
    }
    return digits > 0 && port <= 65535;
}

/* Content-Length value: 1*DIGIT, at most 19 digits, <= 2^63-1. */
static int
parse_content_length(struct h1_iov v, uint64_t *out, const char **why)
{
    uint64_t n = 0;
    size_t i;

    if (v.len == 0) {
        *why = "empty Content-Length";
        return -1;
    }
    for (i = 0; i < v.len; i++) {
        unsigned char c = (unsigned char)v.p[i];

        if (!is_digit(c)) {
            *why = "invalid Content-Length";
            return -1;
        }
        if (i >= 19 || n > (H1_INT63_MAX - (uint64_t)(c - '0')) / 10) {
            *why = "Content-Length overflow";
            return -1;
        }
        n = n * 10 + (uint64_t)(c - '0');
    }
    *out = n;
    return 0;
}

/* ---- head parsing, shared by requests and responses ------------------- */

struct head {
    bool is_resp;
    int minor;                   /* 0 or 1 */
    struct h1_field *fields;     /* caller's array, borrowed */
    size_t nfields;
    size_t max_fields;

    unsigned host_count;
    struct h1_iov host;
    bool has_cl;
    uint64_t cl;
    bool has_te;
    bool te_chunked_seen;        /* chunked appeared in the list */
    bool te_chunked_last;        /* ... and is (so far) its last element */
    bool te_other;               /* a coding other than chunked appeared */
    bool conn_close;
    bool conn_keep_alive;
    bool conn_upgrade;
    bool conn_other;             /* Connection names something else than close,
                                  * keep-alive and upgrade */
    bool has_upgrade;
    bool expect_continue;
    bool te_trailers;

    int status;                  /* on BAD */
    const char *error;           /* on BAD, static */
};

static int
fail(struct head *h, int status, const char *why)
{
    h->status = status;
    h->error = why;
    return -1;
}

static enum h1_parse
bad(struct head *h, int status, const char *why)
{
    fail(h, status, why);
    return H1_PARSE_BAD;
}

static int
check_transfer_encoding(struct head *h, struct h1_iov v)
{
    struct h1_iov el;
    size_t i = 0;
    int rc;

    if (h->minor == 0)
        return fail(h, 400, "Transfer-Encoding in an HTTP/1.0 message");
    if (h->has_cl)
        return fail(h, 400, "Content-Length with Transfer-Encoding");
    h->has_te = true;
    while ((rc = list_next(v, &i, &el, false)) == 1) {
        bool chunked = h1_iov_eq(el, "chunked");

        if (chunked && h->te_chunked_seen)
            return fail(h, 400, "chunked applied more than once");
        if (h->te_chunked_last) {
            if (!h->is_resp)
                return fail(h, 400, "chunked is not the final transfer coding");
            h->te_chunked_last = false;
        }
        if (chunked) {
            h->te_chunked_seen = true;
            h->te_chunked_last = true;
        } else {
            h->te_other = true;
        }
    }
    if (rc < 0)
        return fail(h, 400, "malformed Transfer-Encoding");
    return 0;
}

static int
check_connection(struct head *h, struct h1_iov v)
{
    struct h1_iov el;
    size_t i = 0;
    int rc;

    while ((rc = list_next(v, &i, &el, true)) == 1) {
        if (h1_iov_eq(el, "close"))
            h->conn_close = true;
        else if (h1_iov_eq(el, "keep-alive"))
            h->conn_keep_alive = true;
        else if (h1_iov_eq(el, "upgrade"))
            h->conn_upgrade = true;
        else if (h1_iov_eq(el, "content-length") || h1_iov_eq(el, "transfer-encoding"))
            return fail(h, 400, "Connection names a framing field");
        else
            h->conn_other = true;
    }
    if (rc < 0)
        return fail(h, 400, "malformed Connection");
    return 0;
}

/* Does the TE field value list "trailers"? Loose: TE is hop-by-hop and
 * dropped, so a malformed one only fails to set the flag. */
static bool
te_has_trailers(struct h1_iov v)
{
    size_t i = 0, s, e;

    while (i < v.len) {
        while (i < v.len && (is_ows((unsigned char)v.p[i]) || v.p[i] == ','))
            i++;
        s = i;
        while (i < v.len && v.p[i] != ',' && v.p[i] != ';' && !is_ows((unsigned char)v.p[i]))
            i++;
        e = i;
        if (e - s == 8 && mem_ieq(v.p + s, "trailers", 8))
            return true;
        while (i < v.len && v.p[i] != ',')
            i++;
    }
    return false;
}

/* Is field name <n> <framing> (lower case, with "-") spelt with at least
 * one "_" for a "-"? "Transfer_Encoding", "content_length". */
static bool
is_underscore_alias(struct h1_iov n, const char *framing)
{
    bool alias = false;
    size_t i;

    if (n.len != strlen(framing))
        return false;
    for (i = 0; i < n.len; i++) {
        if (n.p[i] == '_' && framing[i] == '-')
            alias = true;
        else if (lower((unsigned char)n.p[i]) != (unsigned char)framing[i])
            return false;
    }
    return alias;
}

/* Checks one complete field line; 0, or -1 with h->status/error set. */
static int
check_field(struct head *h, struct h1_field *f)
{
    struct h1_iov n = f->name, v = f->value;
    const char *why;

    /* a peer that reads "_" as "-" would frame the message by a field the
     * proxy never saw as framing (request smuggling, response splitting) */
    if ((n.len == 14 || n.len == 17) && memchr(n.p, '_', n.len) != NULL &&
        (is_underscore_alias(n, "content-length") || is_underscore_alias(n, "transfer-encoding")))
        return fail(h, 400, "framing field name with \"_\" for \"-\"");

    switch (lower((unsigned char)n.p[0])) {
    case 'c':
        if (h1_iov_eq(n, "content-length")) {
            f->flags |= H1_FF_HOP;
            if (h->has_cl)
                return fail(h, 400, "duplicate Content-Length");
            if (h->has_te)
                return fail(h, 400, "Content-Length with Transfer-Encoding");
            if (parse_content_length(v, &h->cl, &why) < 0)
                return fail(h, 400, why);
            h->has_cl = true;
        } else if (h1_iov_eq(n, "connection")) {
            f->flags |= H1_FF_HOP;
            return check_connection(h, v);
        }
        break;
    case 'e':
        if (!h->is_resp && h1_iov_eq(n, "expect") && h1_iov_eq(v, "100-continue") &&
            h->minor == 1)
            h->expect_continue = true;
        break;
    case 'h':
        if (!h->is_resp && h1_iov_eq(n, "host")) {
            if (h->host_count++ > 0)
                return fail(h, 400, "duplicate Host");
            if (!host_valid(v))
                return fail(h, 400, "invalid Host");
            h->host = v;
        }
        break;
    case 'k':
        if (h1_iov_eq(n, "keep-alive"))
            f->flags |= H1_FF_HOP;
        break;
    case 'p':
        if (h1_iov_eq(n, "proxy-connection"))
            f->flags |= H1_FF_HOP;
        break;
    case 't':
        if (h1_iov_eq(n, "transfer-encoding")) {
            f->flags |= H1_FF_HOP;
            return check_transfer_encoding(h, v);
        }
        if (h1_iov_eq(n, "te")) {
            f->flags |= H1_FF_HOP;
            if (!h->is_resp && te_has_trailers(v))
                h->te_trailers = true;
        }
        break;
    case 'u':
        if (h1_iov_eq(n, "upgrade")) {
            f->flags |= H1_FF_HOP;
            h->has_upgrade = true;
        }
        break;
    default:
        break;
    }
    return 0;
}

/* Parses field lines from *<pos> up to and including the empty line.
 * DONE with *pos just past the final CRLF, AGAIN, or BAD. */
static enum h1_parse
parse_fields(struct head *h, const char *buf, size_t len, size_t *pos)
{
    const unsigned char *b = (const unsigned char *)buf;
    size_t i = *pos, ns, ne, vs, ve;
    struct h1_field *f;

    for (;;) {
        if (i == len)
            return H1_PARSE_AGAIN;
        if (b[i] == '\r') {
            if (i + 1 == len)
                return H1_PARSE_AGAIN;
            if (b[i + 1] != '\n')
                return bad(h, 400, "bare CR");
            *pos = i + 2;
            return H1_PARSE_DONE;
        }
        if (b[i] == '\n')
            return bad(h, 400, "bare LF");
        if (is_ows(b[i]))
            return bad(h, 400, "obs-fold or whitespace before a field name");
        if (h->nfields == h->max_fields)
            return bad(h, 431, "too many header fields");

        ns = i;
        while (i < len && is_tchar(b[i]))
            i++;
        if (i == len)
            return H1_PARSE_AGAIN;
        if (b[i] != ':') {
            if (i == ns)
                return bad(h, 400, "invalid character in field name");
            if (is_ows(b[i]))
                return bad(h, 400, "whitespace between field name and colon");
            if (b[i] == '\r' || b[i] == '\n')
                return bad(h, 400, "field line without a colon");
            return bad(h, 400, "invalid character in field name");
        }
        if (i == ns)
            return bad(h, 400, "empty field name");
        ne = i++;

        while (i < len && is_ows(b[i]))
            i++;
        /* the value runs to its CR, less trailing whitespace; the first
         * byte that is neither a value byte nor CR is an error */
        vs = i;
        while (i < len && (h1_class[b[i]] & H1_C_VALUE))
            i++;
        if (i == len)
            return H1_PARSE_AGAIN;
        if (b[i] != '\r')
            return bad(h, 400, b[i] == '\n' ? "bare LF" : "control character in field value");
        ve = i;
        while (ve > vs && is_ows(b[ve - 1]))
            ve--;
        if (i + 1 == len)
            return H1_PARSE_AGAIN;
        if (b[i + 1] != '\n')
            return bad(h, 400, "bare CR");
        i += 2;

        f = &h->fields[h->nfields++];
        f->name.p = buf + ns;
        f->name.len = ne - ns;
        f->value.p = buf + vs;
        f->value.len = ve - vs;
        f->flags = 0;
        if (check_field(h, f) < 0)
            return H1_PARSE_BAD;
    }
}

/* Host and X-Forwarded-* are never made hop-by-hop by a Connection field. */
static bool
is_protected_name(struct h1_iov n)
{
    return h1_iov_eq(n, "host") || iov_iprefix(n, "x-forwarded-");
}

/* Flags every field named in a Connection field (RFC 9110 §7.6.1). */
static void
mark_nominated(struct head *h)
{
    struct h1_iov el;
    size_t c, j, i;

    /* keep-alive and upgrade name fields that are hop-by-hop already
     * (check_field()): only close or another name can flag one more */
    if (!h->conn_close && !h->conn_other)
        return;
    for (c = 0; c < h->nfields; c++) {
        if (!h1_iov_eq(h->fields[c].name, "connection"))
            continue;
        i = 0;
        while (list_next(h->fields[c].value, &i, &el, true) == 1) {
            if (is_protected_name(el))
                continue;
            for (j = 0; j < h->nfields; j++)
                if (iov_ieq_iov(h->fields[j].name, el))
                    h->fields[j].flags |= H1_FF_HOP;
        }
    }
}

static void
head_init(struct head *h, bool is_resp, struct h1_field *fields,
          const struct h1_parse_limits *lim)
{
    memset(h, 0, sizeof *h);
    h->is_resp = is_resp;
    h->fields = fields;
    h->max_fields = (lim != NULL && lim->max_fields != 0) ? lim->max_fields
                                                           : PX_DEFAULT_MAX_FIELDS;
}

/* Skips the one empty line tolerated before a start line. Returns 0 with
 * *<i> set, 1 for "need more", -1 on a bare CR or LF. */
static int
skip_leading_crlf(struct head *h, const char *buf, size_t len, size_t *i)
{
    *i = 0;
    if (len == 0)
        return 1;
    if (buf[0] == '\n')
        return fail(h, 400, "bare LF");
    if (buf[0] != '\r')
        return 0;
    if (len < 2)
        return 1;
    if (buf[1] != '\n')
        return fail(h, 400, "bare CR");
    *i = 2;
    return 0;
}

/* ---- requests --------------------------------------------------------- */

enum target_form { TF_ORIGIN, TF_ASTERISK, TF_ABSOLUTE };

/* Could <t>[0..<n>) still begin "http://" or "https://" (scheme without
 * case)? Only the first 8 bytes are looked at. */
static bool
abs_prefix_ok(const char *t, size_t n)
{
    static const char *const schemes[] = { "http://", "https://" };
    size_t s, k, m;

    for (s = 0; s < 2; s++) {
        m = strlen(schemes[s]);
        k = n < m ? n : m;
        if (mem_ieq(t, schemes[s], k))
            return true;
    }
    return false;
}

/* The authority of an absolute-form target, checked. 0 or -1. */
static int
abs_authority(struct h1_iov t, struct h1_iov *auth, bool *https)
{
    size_t off, e;

    if (iov_iprefix(t, "http://")) {
        off = 7;
        *https = false;
    } else if (iov_iprefix(t, "https://")) {
        off = 8;
        *https = true;
    } else {
        return -1;
    }
    for (e = off; e < t.len && t.p[e] != '/' && t.p[e] != '?'; e++)
        if (t.p[e] == '@')
            return -1;                    /* userinfo: RFC 9110 §4.2.4 */
    auth->p = t.p + off;
    auth->len = e - off;
    return host_valid(*auth) ? 0 : -1;
}

static struct h1_iov
strip_default_port(struct h1_iov a, bool https)
{
    const char *port = https ? ":443" : ":80";
    size_t n = strlen(port);

    if (a.len > n && memcmp(a.p + a.len - n, port, n) == 0)
        a.len -= n;
    return a;
}

/* HTTP-version ("HTTP/" DIGIT "." DIGIT) at *<i>, shared by the request and
 * the status line. A byte that breaks "HTTP/" is answered <status> with
 * <name_err>, a malformed number <status> "invalid HTTP version", a version
 * other than 1.0 or 1.1 <unsup_status>. DONE with *<i> past it and
 * *<minor> set, AGAIN, or BAD. */
static enum h1_parse
parse_version(struct head *h, const unsigned char *b, size_t len, size_t *ip,
              int status, const char *name_err, int unsup_status, unsigned char *minor)
{
    static const char http_name[] = "HTTP/";
    unsigned char major;
    size_t i = *ip, k;

    for (k = 0; k < sizeof http_name - 1; k++, i++) {
        if (i == len)
            return H1_PARSE_AGAIN;
        if (b[i] != (unsigned char)http_name[k])
            return bad(h, status, name_err);
    }
    if (i == len)
        return H1_PARSE_AGAIN;
    if (!is_digit(major = b[i++]))
        return bad(h, status, "invalid HTTP version");
    if (i == len)
        return H1_PARSE_AGAIN;
    if (b[i++] != '.')
        return bad(h, status, "invalid HTTP version");
    if (i == len)
        return H1_PARSE_AGAIN;
    if (!is_digit(*minor = b[i++]))
        return bad(h, status, "invalid HTTP version");
    if (major != '1' || (*minor != '0' && *minor != '1'))
        return bad(h, unsup_status, "unsupported HTTP version");
    *ip = i;
    return H1_PARSE_DONE;
}

static enum h1_parse
req_parse(struct h1_req *r, struct head *h, const char *buf, size_t len,
          const struct h1_parse_limits *lim)
{
    const unsigned char *b = (const unsigned char *)buf;
    size_t max_uri = (lim != NULL && lim->max_uri != 0) ? lim->max_uri : PX_DEFAULT_MAX_URI;
    enum target_form form = TF_ORIGIN;
    struct h1_iov auth = { NULL, 0 };
    bool is_options, https = false;
    unsigned char minor;
    size_t i, ms, ts, k;
    enum h1_parse v;
    int rc;

    if ((rc = skip_leading_crlf(h, buf, len, &i)) != 0)
        return rc > 0 ? H1_PARSE_AGAIN : H1_PARSE_BAD;

    /* method SP */
    ms = i;
    while (i < len && is_tchar(b[i]))
        i++;
    if (i == len)
        return H1_PARSE_AGAIN;
    if (i == ms && (b[i] == '\r' || b[i] == '\n'))
        return bad(h, 400, "empty line before the request line");
    if (i == ms || b[i] != ' ')
        return bad(h, 400, "invalid request method");
    r->method.p = buf + ms;
    r->method.len = i - ms;
    if (iov_eq_cs(r->method, "CONNECT"))
        return bad(h, 501, "CONNECT is not supported");
    is_options = iov_eq_cs(r->method, "OPTIONS");
    i++;

    /* request-target SP */
    ts = i;
    for (;;) {
        if (i == len)
            return H1_PARSE_AGAIN;
        if (b[i] == ' ')
            break;
        if (b[i] < 0x21 || b[i] > 0x7e) {
            if (b[i] == '\r' || b[i] == '\n')
                return bad(h, 400, "request line without an HTTP version");
            return bad(h, 400, "invalid character in request-target");
        }
        if (b[i] == '#')                  /* RFC 9112 §3.2: no fragment */
            return bad(h, 400, "fragment in request-target");
        k = i - ts;
        if (k + 1 > max_uri)
            return bad(h, 414, "request-target too long");
        if (k == 0) {
            if (b[i] == '/')
                form = TF_ORIGIN;
            else if (b[i] == '*' && is_options)
                form = TF_ASTERISK;
            else if (b[i] == '*')
                return bad(h, 400, "asterisk-form without OPTIONS");
            else if (b[i] == 'h' || b[i] == 'H')
                form = TF_ABSOLUTE;
            else
                return bad(h, 400, "invalid request-target");
        } else if (form == TF_ASTERISK) {
            return bad(h, 400, "invalid asterisk-form");
        } else if (form == TF_ABSOLUTE && k < 8 && !abs_prefix_ok(buf + ts, k + 1)) {
            return bad(h, 400, "invalid request-target");
        }
        i++;
    }
    if (i == ts)
        return bad(h, 400, "empty request-target");
    r->target.p = buf + ts;
    r->target.len = i - ts;
    if (form == TF_ABSOLUTE && abs_authority(r->target, &auth, &https) < 0)
        return bad(h, 400, "invalid absolute-form target");
    i++;

    /* HTTP-version CRLF */
    if ((v = parse_version(h, b, len, &i, 400, "invalid HTTP version", 505,
                           &minor)) != H1_PARSE_DONE)
        return v;
    if (i == len)
        return H1_PARSE_AGAIN;
    if (b[i++] != '\r')
        return bad(h, 400, "invalid HTTP version");
    if (i == len)
        return H1_PARSE_AGAIN;
    if (b[i++] != '\n')
        return bad(h, 400, "bare CR");
    r->minor = h->minor = minor - '0';

    if ((v = parse_fields(h, buf, len, &i)) != H1_PARSE_DONE)
        return v;

    /* the whole head is here */
    if (h->host_count == 0 && (h->minor == 1 || form == TF_ABSOLUTE))
        return bad(h, 400, "missing Host");
    if (form == TF_ABSOLUTE &&
        !iov_ieq_iov(strip_default_port(auth, https), strip_default_port(h->host, https)))
        return bad(h, 400, "Host does not match the request-target");
    if (h->has_te) {
        if (!h->te_chunked_last)
            return bad(h, 400, "final transfer coding is not chunked");
        if (h->te_other)
            return bad(h, 501, "unsupported transfer coding");
        r->framing = H1_BODY_CHUNKED;
    } else if (h->has_cl) {
        r->framing = H1_BODY_LENGTH;
        r->content_length = h->cl;
    } else {
        r->framing = H1_BODY_NONE;
    }
    mark_nominated(h);

    r->nfields = h->nfields;
    r->head_len = i;
    r->host = h->host;
    r->keep_alive = !h->conn_close && (h->minor == 1 || h->conn_keep_alive);
    r->expect_continue = h->expect_continue;
    /* RFC 9110 §7.8: Upgrade in an HTTP/1.0 request is ignored (both fields
     * are hop-by-hop, so the request goes up without them) */
    r->upgrade = h->minor == 1 && h->conn_upgrade && h->has_upgrade;
    r->te_trailers = h->te_trailers;
    return H1_PARSE_DONE;
}

enum h1_parse
h1_req_parse(struct h1_req *r, const char *buf, size_t len,
             const struct h1_parse_limits *lim)
{
    struct h1_field *fields = r->fields;
    struct head h;
    enum h1_parse v;

    memset(r, 0, sizeof *r);
    r->fields = fields;
    head_init(&h, false, fields, lim);
    v = req_parse(r, &h, buf, len, lim);
    r->nfields = h.nfields;
    if (v == H1_PARSE_BAD) {
        r->status = h.status;
        r->error = h.error;
    }
    return v;
}

/* ---- responses -------------------------------------------------------- */

static enum h1_parse
resp_parse(struct h1_resp *r, struct head *h, const char *buf, size_t len,
           bool req_method_head)
{
    const unsigned char *b = (const unsigned char *)buf;
    unsigned char minor;
    size_t i, k, rs, re;
    enum h1_parse v;
    int rc, status = 0;

    if ((rc = skip_leading_crlf(h, buf, len, &i)) != 0)
        return rc > 0 ? H1_PARSE_AGAIN : H1_PARSE_BAD;

    if ((v = parse_version(h, b, len, &i, 502, "invalid status line", 502,
                           &minor)) != H1_PARSE_DONE)
        return v;
    if (i == len)
        return H1_PARSE_AGAIN;
    if (b[i++] != ' ')
        return bad(h, 502, "invalid status line");
    for (k = 0; k < 3; k++, i++) {
        if (i == len)
            return H1_PARSE_AGAIN;
        if (!is_digit(b[i]) || (k == 0 && b[i] == '0'))
            return bad(h, 502, "invalid status code");
        status = status * 10 + (b[i] - '0');
    }
    if (i == len)
        return H1_PARSE_AGAIN;
    if (b[i] == ' ') {
        i++;
        rs = re = i;
        for (;;) {
            if (i == len)
                return H1_PARSE_AGAIN;
            if (b[i] == '\r')
                break;
            if (!is_field_byte(b[i]))
                return bad(h, 502, "invalid character in reason phrase");
            i++;
        }
        re = i;
    } else if (b[i] == '\r') {
        rs = re = i;
    } else {
        return bad(h, 502, "invalid status code");
    }
    i++;
    if (i == len)
        return H1_PARSE_AGAIN;
    if (b[i++] != '\n')
        return bad(h, 502, "bare CR");
    r->minor = h->minor = minor - '0';
    r->status = status;
    r->reason.p = buf + rs;
    r->reason.len = re - rs;

    if ((v = parse_fields(h, buf, len, &i)) != H1_PARSE_DONE)
        return v;

    if (h->has_te && h->te_chunked_last && h->te_other)
        return bad(h, 502, "unsupported transfer coding");
    if (req_method_head || status < 200 || status == 204 || status == 304)
        r->framing = H1_BODY_NONE;
    else if (h->has_te)
        r->framing = h->te_chunked_last ? H1_BODY_CHUNKED : H1_BODY_CLOSE;
    else if (h->has_cl)
        r->framing = H1_BODY_LENGTH;
    else
        r->framing = H1_BODY_CLOSE;
    if (r->framing == H1_BODY_LENGTH)
        r->content_length = h->cl;
    mark_nominated(h);

    r->nfields = h->nfields;
    r->head_len = i;
    r->keep_alive = r->framing != H1_BODY_CLOSE && !h->conn_close &&
                    (h->minor == 1 || h->conn_keep_alive);
    return H1_PARSE_DONE;
}

enum h1_parse
h1_resp_parse(struct h1_resp *r, const char *buf, size_t len,
              const struct h1_parse_limits *lim, bool req_method_head)
{
    struct h1_field *fields = r->fields;
    struct head h;
    enum h1_parse v;

    memset(r, 0, sizeof *r);
    r->fields = fields;
    head_init(&h, true, fields, lim);
    v = resp_parse(r, &h, buf, len, req_method_head);
    r->nfields = h.nfields;
    if (v == H1_PARSE_BAD)
        r->error = h.error;
    return v;
}

/* ---- cookies ---------------------------------------------------------- */

struct h1_iov
h1_cookie_find(struct h1_iov cookie_header, const char *name)
{
    const char *p = cookie_header.p;
    size_t n = cookie_header.len, nl = strlen(name), i = 0, ks, ke, vs, ve;
    struct h1_iov none = { NULL, 0 }, val;

    if (nl == 0 || p == NULL)
        return none;
    while (i < n) {
        while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == ';'))
            i++;
        ks = i;
        while (i < n && p[i] != '=' && p[i] != ';')
            i++;
        ke = i;
        while (ke > ks && (p[ke - 1] == ' ' || p[ke - 1] == '\t'))
            ke--;
        if (i == n || p[i] != '=')
            continue;                     /* no "=": not a cookie-pair */
        vs = ++i;
        while (i < n && p[i] != ';')
            i++;
        ve = i;
        while (vs < ve && (p[vs] == ' ' || p[vs] == '\t'))
            vs++;
        while (ve > vs && (p[ve - 1] == ' ' || p[ve - 1] == '\t'))
            ve--;
        if (ke - ks == nl && memcmp(p + ks, name, nl) == 0) {
            if (ve - vs >= 2 && p[vs] == '"' && p[ve - 1] == '"') {
                vs++;
                ve--;
            }
            val.p = p + vs;
            val.len = ve - vs;
            return val;
        }
    }
    return none;
}

/* ---- status text ------------------------------------------------------ */

const char *
h1_status_text(int status)
{
    return text_http_status(status);
}
