/*
 * ctl_proto: the few rules cutoverctl and the daemon must agree on, kept in
 * one libc-only file that both link: the default socket path, the weight
 * syntax and the text that may be shown as it is. The weight is parsed as
 * text by cutoverctl (so "10.005" is refused before anything is sent) and
 * checked again as a JSON number by the daemon; both end in basis points so
 * there is one integer representation. The text rule is what the daemon
 * accepts in an operator's reason and what cutoverctl prints unescaped:
 * whatever an audit entry, a status or an error holds, cutoverctl never
 * sends a control or escape sequence to the terminal, nor a line that is
 * not one of its own.
 */
#include "admin/ctl_proto.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CTL_MAX_BP 10000u

void
ctl_default_socket(char *buf, size_t len)
{
    const char *env = getenv("CUTOVER_SOCKET");
    const char *xdg;
    uid_t uid;

    if (len == 0)
        return;
    if (env != NULL && env[0] != '\0') {
        snprintf(buf, len, "%s", env);
        return;
    }
    uid = getuid();
    if (uid == 0) {
        snprintf(buf, len, "%s", "/run/cutover/admin.sock");
        return;
    }
    /* A relative XDG_RUNTIME_DIR is invalid by the XDG spec: ignore it
     * rather than put the socket somewhere that depends on the cwd. */
    xdg = getenv("XDG_RUNTIME_DIR");
    if (xdg != NULL && xdg[0] == '/') {
        snprintf(buf, len, "%s/cutover/admin.sock", xdg);
        return;
    }
    snprintf(buf, len, "/tmp/cutover-%lu/admin.sock", (unsigned long)uid);
}

static bool
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

int
ctl_weight_parse(const char *text, uint32_t *bp)
{
    const char *p = text;
    uint32_t whole = 0, frac = 0;
    int nfrac = 0;

    if (p == NULL || !is_digit(*p))
        return -1;                     /* "", ".5", "+5", "-1", " 5" */
    /* Leading zeros are accepted ("007" is 7); <whole> is capped as it grows
     * so a long run of digits cannot overflow. */
    for (; is_digit(*p); p++) {
        whole = whole * 10 + (uint32_t)(*p - '0');
        if (whole > 100)
            return -1;
    }
    if (*p == '.') {
        p++;
        for (; is_digit(*p); p++) {
            if (++nfrac > 2)
                return -1;             /* "10.005" */
            frac = frac * 10 + (uint32_t)(*p - '0');
        }
        if (nfrac == 0)
            return -1;                 /* "5." */
        if (nfrac == 1)
            frac *= 10;
    }
    if (*p != '\0')
        return -1;                     /* "1e1", "0x10", "5 " */
    if (whole * 100 + frac > CTL_MAX_BP)
        return -1;                     /* "100.01" */
    *bp = whole * 100 + frac;
    return 0;
}

int
ctl_weight_from_double(double percent, uint32_t *bp)
{
    double scaled;
    long long r;

    if (!isfinite(percent) || percent < 0.0 || percent > 100.0)
        return -1;
    scaled = percent * 100.0;
    r = llround(scaled);
    /* 12.34 is not exact in binary: allow the rounding error of the
     * decimal-to-double conversion, but nothing near a third decimal. */
    if (fabs(scaled - (double)r) > 1e-6)
        return -1;
    if (r < 0 || r > (long long)CTL_MAX_BP)
        return -1;
    *bp = (uint32_t)r;
    return 0;
}

size_t
ctl_text_char(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    uint32_t cp;
    size_t n, i;

    if (len == 0)
        return 0;
    if (p[0] < 0x80)
        return p[0] >= 0x20 && p[0] < 0x7f ? 1 : 0;
    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        n = 2;
        cp = p[0] & 0x1f;
    } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        n = 3;
        cp = p[0] & 0x0f;
    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        n = 4;
        cp = p[0] & 0x07;
    } else {
        return 0;                      /* a continuation byte, 0xc0, 0xc1, 0xf5.. */
    }
    if (len < n)
        return 0;
    for (i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff))
        || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;                      /* overlong, out of range, a surrogate */
    if (cp <= 0x9f)
        return 0;                      /* C1 controls */
    if (cp == 0x61c || cp == 0x200e || cp == 0x200f || (cp >= 0x2028 && cp <= 0x202e)
        || (cp >= 0x2066 && cp <= 0x2069))
        return 0;                      /* separators, bidirectional formatting */
    return n;
}

bool
ctl_text_ok(const char *s, size_t len, size_t *bad)
{
    size_t i = 0, k;

    while (i < len) {
        if ((k = ctl_text_char(s + i, len - i)) == 0) {
            if (bad != NULL)
                *bad = i;
            return false;
        }
        i += k;
    }
    return true;
}

size_t
ctl_escape(char *out, size_t outlen, const char *s, size_t len, unsigned flags)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, n = 0, w = 0, k, plen;
    bool full = outlen == 0;
    char esc[4];
    const char *piece;

    while (i < len) {
        k = 1;
        plen = 2;
        if (p[i] == '\\') {
            piece = "\\\\";
        } else if (p[i] == '"' && (flags & CTL_ESC_QUOTED)) {
            piece = "\\\"";
        } else if (p[i] == '\n') {
            piece = "\\n";
        } else if (p[i] == '\r') {
            piece = "\\r";
        } else if (p[i] == '\t') {
            piece = "\\t";
        } else if ((k = ctl_text_char(s + i, len - i)) > 0) {
            piece = s + i;
            plen = k;
        } else {
            k = 1;
            esc[0] = '\\';
            esc[1] = 'x';
            esc[2] = hex[p[i] >> 4];
            esc[3] = hex[p[i] & 15];
            piece = esc;
            plen = 4;
        }
        if (!full && w + plen < outlen) {
            memcpy(out + w, piece, plen);
            w += plen;
        } else {
            full = true;               /* no piece is cut, none follows */
        }
        n += plen;
        i += k;
    }
    if (outlen > 0)
        out[w] = '\0';
    return n;
}
