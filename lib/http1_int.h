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

/* tchar, RFC 9110 §5.6.2. */
static inline bool
is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*':
    case '+': case '-': case '.': case '^': case '_': case '`': case '|':
    case '~':
        return true;
    default:
        return false;
    }
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
