/*
 * ctl_proto: the few rules cutoverctl and the daemon must agree on, kept in
 * one libc-only file that both link: the default socket path and the weight
 * syntax. The weight is parsed as text by cutoverctl (so "10.005" is refused
 * before anything is sent) and checked again as a JSON number by the daemon;
 * both end in basis points so there is one integer representation.
 */
#include "admin/ctl_proto.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
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
