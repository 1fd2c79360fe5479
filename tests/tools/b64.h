/*
 * tests/tools/b64.h: the one base64 decoder of the tests (the corpora's
 * bytes_b64), for the parser tests, the fuzz seeder and the harness. Header
 * only, libc only.
 */
#ifndef CUTOVER_TESTS_B64_H
#define CUTOVER_TESTS_B64_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static inline int
tb64_value(int c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Decodes base64 <s> (stopping at '=') into a new buffer of *<len> bytes
 * plus a NUL (caller frees); NULL when <s> is not base64 or on no memory. */
static inline unsigned char *
tb64_decode(const char *s, size_t *len)
{
    size_t n = strlen(s), i, o = 0;
    unsigned char *out = malloc(n / 4 * 3 + 4);
    uint32_t acc = 0;
    unsigned bits = 0;
    int v;

    if (out == NULL)
        return NULL;
    for (i = 0; i < n && s[i] != '='; i++) {
        if ((v = tb64_value((unsigned char)s[i])) < 0) {
            free(out);
            return NULL;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    out[o] = '\0';
    *len = o;
    return out;
}

#endif
