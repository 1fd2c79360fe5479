/*
 * lib/http1_int: internal to the HTTP/1.1 parser, shared by lib/http1.c
 * (heads) and lib/h1chunk.c (chunked bodies); nothing else includes it.
 * The character classes of RFC 9110 both scan with and the bound both hold
 * lengths to. Header only: every helper is static inline, so the byte
 * loops stay as fast as with file-local functions.
 */
#ifndef CUTOVER_LIB_HTTP1_INT_H
#define CUTOVER_LIB_HTTP1_INT_H

#include <stdbool.h>

/* Content-Length and chunk sizes are at most 2^63-1. */
#define H1_INT63_MAX          0x7fffffffffffffffull

/* ---- character classes ------------------------------------------------ */

/* The classes the head scans byte by byte, as one table look-up each: a
 * field name's bytes (tchar) and a field value's bytes but CR (the value's
 * end), the loops that take most of a head's parse. */
#define H1_C_TCHAR 0x01u      /* tchar, RFC 9110 §5.6.2 */
#define H1_C_VALUE 0x02u      /* HT, SP, VCHAR, obs-text: inside a field value */

static const unsigned char h1_class[256] = {
    ['\t'] = H1_C_VALUE, [' '] = H1_C_VALUE,
    ['!'] = H1_C_TCHAR | H1_C_VALUE, ['"'] = H1_C_VALUE,
    ['#'] = H1_C_TCHAR | H1_C_VALUE, ['$'] = H1_C_TCHAR | H1_C_VALUE,
    ['%'] = H1_C_TCHAR | H1_C_VALUE, ['&'] = H1_C_TCHAR | H1_C_VALUE,
    ['\''] = H1_C_TCHAR | H1_C_VALUE, ['('] = H1_C_VALUE, [')'] = H1_C_VALUE,
    ['*'] = H1_C_TCHAR | H1_C_VALUE, ['+'] = H1_C_TCHAR | H1_C_VALUE,
    [','] = H1_C_VALUE, ['-'] = H1_C_TCHAR | H1_C_VALUE,
    ['.'] = H1_C_TCHAR | H1_C_VALUE, ['/'] = H1_C_VALUE,
    ['0' ... '9'] = H1_C_TCHAR | H1_C_VALUE,
    [':' ... '@'] = H1_C_VALUE,
    ['A' ... 'Z'] = H1_C_TCHAR | H1_C_VALUE,
    ['['] = H1_C_VALUE, ['\\'] = H1_C_VALUE, [']'] = H1_C_VALUE,
    ['^'] = H1_C_TCHAR | H1_C_VALUE, ['_'] = H1_C_TCHAR | H1_C_VALUE,
    ['`'] = H1_C_TCHAR | H1_C_VALUE,
    ['a' ... 'z'] = H1_C_TCHAR | H1_C_VALUE,
    ['{'] = H1_C_VALUE, ['|'] = H1_C_TCHAR | H1_C_VALUE, ['}'] = H1_C_VALUE,
    ['~'] = H1_C_TCHAR | H1_C_VALUE,
    [0x80 ... 0xff] = H1_C_VALUE,
};

/* tchar, RFC 9110 §5.6.2. */
static inline bool
is_tchar(unsigned char c)
{
    return (h1_class[c] & H1_C_TCHAR) != 0;
}

static inline bool
is_ows(unsigned char c)
{
    return c == ' ' || c == '\t';
}

/* A byte allowed inside a field value: HT, SP, VCHAR, obs-text. */
static inline bool
is_field_byte(unsigned char c)
{
    return c == '\t' || c == ' ' || (c >= 0x21 && c != 0x7f);
}

static inline bool
is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

#endif
