/*
 * lib/cidr: see cidr.h. Text goes through inet_pton(), so the accepted
 * spellings are exactly the kernel's and glibc's; the prefix length is
 * parsed here, strictly (decimal, no sign, no leading zero).
 */
#include "lib/cidr.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

static const uint8_t v4_mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

void
cidr_addr_set(struct cidr_addr *out, int family, const void *bytes)
{
    const uint8_t *b = bytes;

    memset(out, 0, sizeof(*out));
    if (family == 4) {
        out->family = 4;
        memcpy(out->bytes, b, 4);
    } else if (family == 6 && memcmp(b, v4_mapped, sizeof(v4_mapped)) == 0) {
        out->family = 4;
        memcpy(out->bytes, b + 12, 4);
    } else if (family == 6) {
        out->family = 6;
        memcpy(out->bytes, b, 16);
    }
}

/* Parses <len> bytes of <text> as a numeric address, keeping an
 * IPv4-mapped IPv6 address as written when <keep_mapped>. */
static int
addr_parse(const char *text, size_t len, struct cidr_addr *out, bool keep_mapped)
{
    char buf[CIDR_TEXT_MAX];
    uint8_t b[16];

    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, text, len);
    buf[len] = '\0';
    if (memchr(buf, '\0', len) != NULL)
        return -1;
    if (inet_pton(AF_INET, buf, b) == 1) {
        cidr_addr_set(out, 4, b);
        return 0;
    }
    if (inet_pton(AF_INET6, buf, b) == 1) {
        if (keep_mapped) {
            memset(out, 0, sizeof(*out));
            out->family = 6;
            memcpy(out->bytes, b, 16);
        } else {
            cidr_addr_set(out, 6, b);
        }
        return 0;
    }
    return -1;
}

int
cidr_addr_parse(const char *text, size_t len, struct cidr_addr *out)
{
    return addr_parse(text, len, out, false);
}

/* <a> with every bit from <bits> on cleared. */
static void
mask_from(struct cidr_addr *a, unsigned bits)
{
    unsigned i, n = a->family == 4 ? 4 : 16;

    for (i = 0; i < n; i++) {
        if (bits >= 8 * (i + 1))
            continue;
        if (bits <= 8 * i)
            a->bytes[i] = 0;
        else
            a->bytes[i] &= (uint8_t)(0xff00u >> (bits - 8 * i));
    }
}

int
cidr_parse(const char *text, struct cidr *out, const char **why, char *hint,
           size_t hintlen)
{
    const char *slash = strchr(text, '/');
    size_t alen = slash != NULL ? (size_t)(slash - text) : strlen(text);
    struct cidr c;
    unsigned max, bits = 0;
    const char *p;

    if (hint != NULL && hintlen > 0)
        hint[0] = '\0';
    memset(&c, 0, sizeof(c));
    if (strlen(text) >= CIDR_TEXT_MAX || addr_parse(text, alen, &c.net, true) != 0) {
        *why = "is not an IPv4 or IPv6 address or range (\"10.0.0.0/8\", \"::1\")";
        return -1;
    }
    if (c.net.family == 6 && memcmp(c.net.bytes, v4_mapped, sizeof(v4_mapped)) == 0) {
        *why = "is an IPv4-mapped IPv6 range: write it as IPv4 (IPv4 clients are "
               "matched against the IPv4 ranges)";
        return -1;
    }
    max = c.net.family == 4 ? 32 : 128;
    if (slash == NULL) {
        bits = max;
    } else {
        p = slash + 1;
        if (p[0] == '\0' || strlen(p) > 3 || (p[0] == '0' && p[1] != '\0')) {
            *why = "has a prefix length that is not a plain decimal number";
            return -1;
        }
        for (; *p != '\0'; p++) {
            if (*p < '0' || *p > '9') {
                *why = "has a prefix length that is not a plain decimal number";
                return -1;
            }
            bits = bits * 10 + (unsigned)(*p - '0');
        }
        if (bits > max) {
            *why = c.net.family == 4 ? "has a prefix length over 32 (IPv4)"
                                     : "has a prefix length over 128 (IPv6)";
            return -1;
        }
    }
    c.bits = (uint8_t)bits;
    {
        struct cidr m = c;

        mask_from(&m.net, bits);
        if (memcmp(m.net.bytes, c.net.bytes, sizeof(c.net.bytes)) != 0) {
            *why = "has bits set after the prefix length (a host address with a "
                   "network's length)";
            if (hint != NULL)
                cidr_format(&m, hint, hintlen);
            return -1;
        }
    }
    *out = c;
    return 0;
}

bool
cidr_contains(const struct cidr *c, const struct cidr_addr *a)
{
    unsigned full, rest;

    if (a == NULL || a->family == 0 || a->family != c->net.family)
        return false;
    full = c->bits / 8u;
    rest = c->bits % 8u;
    if (memcmp(a->bytes, c->net.bytes, full) != 0)
        return false;
    if (rest == 0)
        return true;
    return ((a->bytes[full] ^ c->net.bytes[full]) & (uint8_t)(0xff00u >> rest)) == 0;
}

bool
cidr_match_any(const struct cidr *list, unsigned n, const struct cidr_addr *a)
{
    unsigned i;

    for (i = 0; i < n; i++)
        if (cidr_contains(&list[i], a))
            return true;
    return false;
}

bool
cidr_equal(const struct cidr *a, const struct cidr *b)
{
    return a->bits == b->bits && a->net.family == b->net.family &&
           memcmp(a->net.bytes, b->net.bytes, sizeof(a->net.bytes)) == 0;
}

const char *
cidr_format(const struct cidr *c, char *buf, size_t len)
{
    char a[INET6_ADDRSTRLEN];

    if (inet_ntop(c->net.family == 4 ? AF_INET : AF_INET6, c->net.bytes, a,
                  sizeof(a)) == NULL)
        snprintf(a, sizeof(a), "?");
    snprintf(buf, len, "%s/%u", a, (unsigned)c->bits);
    return buf;
}
