/*
 * health/probe: rise/fall counting, check scheduling and the HTTP check
 * response reader (see probe.h). Pure: the checker in health/check.c owns
 * the sockets, the timers and the clock and feeds this file bytes, results
 * and its PRNG state.
 *
 * The response reader takes its input byte-exact in any split (the unit
 * tests feed every response one byte at a time too) and keeps only what a
 * check needs: the final status and, when a body substring is configured,
 * the first HL_RESP_BODY_MAX bytes of the body.
 */
#include "health/probe.h"

#include <string.h>

/* ---- rise / fall ------------------------------------------------------ */

void
hl_risefall_init(struct hl_risefall *rf, unsigned rise, unsigned fall, bool is_up)
{
    rf->rise = rise > 0 ? rise : 1;
    rf->fall = fall > 0 ? fall : 1;
    rf->is_up = is_up;
    rf->run = 0;
}

bool
hl_risefall_push(struct hl_risefall *rf, bool passed)
{
    if (passed == rf->is_up) {
        rf->run = 0;                   /* agrees with the verdict: count again */
        return false;
    }
    rf->run++;
    if (rf->run < (rf->is_up ? rf->fall : rf->rise))
        return false;
    rf->is_up = !rf->is_up;
    rf->run = 0;
    return true;
}

bool
hl_risefall_is_changing(const struct hl_risefall *rf)
{
    return rf->run > 0;
}

/* ---- scheduling ------------------------------------------------------- */

uint64_t
hl_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

unsigned
hl_fast_interval_ms(unsigned interval_ms)
{
    unsigned fast = interval_ms / HL_FAST_DIV;

    if (fast < HL_FAST_MIN_MS)
        fast = HL_FAST_MIN_MS;
    if (fast > interval_ms)
        fast = interval_ms;
    return fast;
}

unsigned
hl_next_delay_ms(unsigned interval_ms, bool is_changing, uint64_t *rng)
{
    unsigned base = is_changing ? hl_fast_interval_ms(interval_ms) : interval_ms;
    unsigned span = (unsigned)((uint64_t)base * HL_JITTER_PCT / 100u);

    return base - span + (unsigned)(hl_rand(rng) % (2u * (uint64_t)span + 1u));
}

unsigned
hl_first_delay_ms(unsigned interval_ms, uint64_t *rng)
{
    if (interval_ms == 0)
        return 0;
    return (unsigned)(hl_rand(rng) % interval_ms);
}

/* ---- HTTP check response ----------------------------------------------- */

void
hl_resp_init(struct hl_resp *r, bool is_head, bool want_body)
{
    r->is_head = is_head;
    r->want_body = want_body;
    r->status = 0;
    r->body[0] = '\0';
    r->body_len = 0;
    r->body_cut = false;
    r->err = NULL;
    r->phase = HL_RP_STATUS;
    r->seen_bytes = false;
    r->is_chunked = false;
    r->has_length = false;
    r->length = 0;
    r->left = 0;
    r->head_bytes = 0;
    r->line_len = 0;
}

static enum hl_resp_rc
bad(struct hl_resp *r, const char *why)
{
    r->phase = HL_RP_BAD;
    r->err = why;
    return HL_RESP_BAD;
}

static enum hl_resp_rc
done(struct hl_resp *r)
{
    r->phase = HL_RP_DONE;
    return HL_RESP_DONE;
}

static bool
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static char
lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* Case-insensitive comparison of <a> (length <alen>) with NUL-terminated <b>. */
static bool
eq_nocase(const char *a, size_t alen, const char *b)
{
    size_t i;

    if (alen != strlen(b))
        return false;
    for (i = 0; i < alen; i++)
        if (lower(a[i]) != lower(b[i]))
            return false;
    return true;
}

/* "HTTP/1.1 200 OK" (reason optional). */
static enum hl_resp_rc
status_line(struct hl_resp *r, const char *s, size_t n)
{
    int st;

    if (n < 12 || memcmp(s, "HTTP/", 5) != 0 || !is_digit(s[5]) || s[6] != '.' ||
        !is_digit(s[7]) || s[8] != ' ' || !is_digit(s[9]) || !is_digit(s[10]) ||
        !is_digit(s[11]) || (n > 12 && s[12] != ' '))
        return bad(r, "not an HTTP response");
    st = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
    if (st < 100 || st > 599)
        return bad(r, "status out of range");
    r->status = st;
    r->is_chunked = false;
    r->has_length = false;
    r->length = 0;
    r->phase = HL_RP_HEADER;
    return HL_RESP_AGAIN;
}

/* The empty line: decides how the body is framed. */
static enum hl_resp_rc
end_of_head(struct hl_resp *r)
{
    if (r->status >= 100 && r->status < 200) {
        if (r->status == 101)
            return bad(r, "unexpected 101 Switching Protocols");
        r->status = 0;                 /* interim: the final head follows */
        r->phase = HL_RP_STATUS;
        return HL_RESP_AGAIN;
    }
    if (!r->want_body || r->is_head || r->status == 204 || r->status == 304)
        return done(r);
    if (r->is_chunked) {
        r->phase = HL_RP_CHUNK_SIZE;
    } else if (r->has_length) {
        if (r->length == 0)
            return done(r);
        r->left = r->length;
        r->phase = HL_RP_BODY_LENGTH;
    } else {
        r->phase = HL_RP_BODY_CLOSE;
    }
    return HL_RESP_AGAIN;
}

static enum hl_resp_rc
header_line(struct hl_resp *r, const char *s, size_t n)
{
    const char *colon, *v, *end;
    size_t nlen, i;
    uint64_t x = 0;

    if (n == 0)
        return end_of_head(r);
    if (s[0] == ' ' || s[0] == '\t')
        return bad(r, "folded header line");
    colon = memchr(s, ':', n);
    if (colon == NULL || colon == s)
        return bad(r, "malformed header line");
    nlen = (size_t)(colon - s);
    for (i = 0; i < nlen; i++)
        if (s[i] == ' ' || s[i] == '\t')
            return bad(r, "malformed header line");
    v = colon + 1;
    end = s + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;

    if (eq_nocase(s, nlen, "content-length")) {
        if (v == end || end - v > 18)
            return bad(r, "invalid Content-Length");
        for (; v < end; v++) {
            if (!is_digit(*v))
                return bad(r, "invalid Content-Length");
            x = x * 10 + (uint64_t)(*v - '0');
        }
        if (r->has_length && r->length != x)
            return bad(r, "differing Content-Lengths");
        r->has_length = true;
        r->length = x;
    } else if (eq_nocase(s, nlen, "transfer-encoding")) {
        /* the last coding decides: chunked, or read until close */
        const char *t = end;

        while (t > v && t[-1] != ',')
            t--;
        while (t < end && (*t == ' ' || *t == '\t'))
            t++;
        r->is_chunked = eq_nocase(t, (size_t)(end - t), "chunked");
    }
    return HL_RESP_AGAIN;
}

/* "1a;ext=1" */
static enum hl_resp_rc
chunk_size_line(struct hl_resp *r, const char *s, size_t n)
{
    uint64_t x = 0;
    size_t i;
    int d;

    for (i = 0; i < n; i++) {
        char c = lower(s[i]);

        if (is_digit(c))
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else
            break;
        if (x >> 56)
            return bad(r, "chunk size too large");
        x = x * 16 + (uint64_t)d;
    }
    if (i == 0 || (i < n && s[i] != ';' && s[i] != ' ' && s[i] != '\t'))
        return bad(r, "invalid chunk size");
    if (x == 0) {
        r->phase = HL_RP_TRAILER;
    } else {
        r->left = x;
        r->phase = HL_RP_CHUNK_DATA;
    }
    return HL_RESP_AGAIN;
}

static enum hl_resp_rc
line(struct hl_resp *r, const char *s, size_t n)
{
    switch (r->phase) {
    case HL_RP_STATUS:
        return status_line(r, s, n);
    case HL_RP_HEADER:
        return header_line(r, s, n);
    case HL_RP_CHUNK_SIZE:
        return chunk_size_line(r, s, n);
    case HL_RP_CHUNK_CRLF:
        if (n != 0)
            return bad(r, "missing CRLF after chunk data");
        r->phase = HL_RP_CHUNK_SIZE;
        return HL_RESP_AGAIN;
    case HL_RP_TRAILER:
        return n == 0 ? done(r) : HL_RESP_AGAIN;
    default:
        return bad(r, "internal: line in a body phase");
    }
}

/* Keeps up to HL_RESP_BODY_MAX body bytes. Returns false when bytes had to
 * be dropped (the body is cut: reading stops). */
static bool
keep(struct hl_resp *r, const char *p, size_t n)
{
    size_t room = HL_RESP_BODY_MAX - r->body_len;
    size_t k = n < room ? n : room;

    memcpy(r->body + r->body_len, p, k);
    r->body_len += k;
    r->body[r->body_len] = '\0';
    if (k < n) {
        r->body_cut = true;
        return false;
    }
    return true;
}

enum hl_resp_rc
hl_resp_feed(struct hl_resp *r, const char *p, size_t n, size_t *used)
{
    size_t i = 0;

    if (n > 0)
        r->seen_bytes = true;
    while (i < n && r->phase != HL_RP_DONE && r->phase != HL_RP_BAD) {
        switch (r->phase) {
        case HL_RP_BODY_LENGTH:
        case HL_RP_CHUNK_DATA: {
            size_t k = (uint64_t)(n - i) < r->left ? n - i : (size_t)r->left;

            if (!keep(r, p + i, k)) {
                i += k;
                done(r);
                break;
            }
            i += k;
            r->left -= k;
            if (r->left == 0) {
                if (r->phase == HL_RP_BODY_LENGTH)
                    done(r);
                else
                    r->phase = HL_RP_CHUNK_CRLF;
            }
            break;
        }
        case HL_RP_BODY_CLOSE:
            if (!keep(r, p + i, n - i))
                done(r);
            i = n;
            break;
        default: {
            const char *nl = memchr(p + i, '\n', n - i);
            size_t take = nl != NULL ? (size_t)(nl - (p + i)) + 1 : n - i;
            size_t text = nl != NULL ? take - 1 : take;
            bool in_head = r->phase == HL_RP_STATUS || r->phase == HL_RP_HEADER ||
                           r->phase == HL_RP_TRAILER;

            if (in_head && (r->head_bytes += take) > HL_RESP_HEAD_MAX) {
                bad(r, "response head too large");
                break;
            }
            if (r->line_len + text >= HL_RESP_LINE_MAX) {
                bad(r, "line too long");
                break;
            }
            memcpy(r->line + r->line_len, p + i, text);
            r->line_len += text;
            i += take;
            if (nl == NULL)
                break;
            if (r->line_len > 0 && r->line[r->line_len - 1] == '\r')
                r->line_len--;
            r->line[r->line_len] = '\0';
            text = r->line_len;
            r->line_len = 0;
            line(r, r->line, text);
            break;
        }
        }
    }
    if (used != NULL)
        *used = i;
    if (r->phase == HL_RP_DONE)
        return HL_RESP_DONE;
    if (r->phase == HL_RP_BAD)
        return HL_RESP_BAD;
    return HL_RESP_AGAIN;
}

enum hl_resp_rc
hl_resp_eof(struct hl_resp *r)
{
    switch (r->phase) {
    case HL_RP_DONE:
        return HL_RESP_DONE;
    case HL_RP_BAD:
        return HL_RESP_BAD;
    case HL_RP_BODY_CLOSE:
        return done(r);
    case HL_RP_STATUS:
        if (!r->seen_bytes)
            return bad(r, "closed without a response");
        return bad(r, "closed before the end of the response head");
    case HL_RP_HEADER:
        return bad(r, "closed before the end of the response head");
    default:
        return bad(r, "closed before the end of the body");
    }
}

bool
hl_resp_body_has(const struct hl_resp *r, const char *needle)
{
    size_t n = strlen(needle), i;

    if (n == 0)
        return true;
    for (i = 0; i + n <= r->body_len; i++)
        if (memcmp(r->body + i, needle, n) == 0)
            return true;
    return false;
}
