/*
 * h1chunk: our own strict decoder of the chunked transfer coding (RFC 9112
 * §7.1), declared in lib/http1.h beside the head parser (lib/http1.c) whose
 * character classes it shares (lib/http1_int.h). Pure, like the parser: no
 * libevent, no allocation, no I/O.
 *
 * Heads are small and re-scanned from their first byte; the chunked decoder
 * runs over streaming bodies of any size and is a true byte-at-a-time state
 * machine held in struct h1_chunked. It consumes the framing itself and
 * stops at chunk data, which it never looks at: the caller moves those
 * bytes and reports them with h1_chunked_data_consumed(). Trailer fields
 * are validated and dropped. h1_chunked_check() runs a fresh decoder over
 * the body bytes that came with a head.
 *
 * Choices where RFC 9112 leaves room, always on the strict side:
 * - Chunk size lines take no whitespace at all (no BWS around ";" or "="):
 *   no sender generates it and parsers disagree about it.
 *
 * Limits: chunk sizes to PX_MAX_CHUNK_DIGITS (16) hex digits and 2^63-1;
 * chunk extensions to max_ext, default 4096 bytes, per size line; trailer
 * sections to PX_MAX_TRAILER_BYTES (16384).
 */
#include "lib/text.h"
#include "lib/http1.h"
#include "lib/http1_int.h"

#include <assert.h>
#include <string.h>

#define PX_DEFAULT_MAX_EXT    4096u
#define PX_MAX_TRAILER_BYTES  16384u
#define PX_MAX_CHUNK_DIGITS   16u

/* States of struct h1_chunked. The extension states must stay contiguous
 * (CS_EXT_NAME0..CS_EXT_QEND) and so must the trailer states
 * (CS_TR_LINE0..CS_TR_END_LF): the byte limits test ranges. */
enum {
    CS_SIZE0 = 0,      /* first hex digit of a chunk size */
    CS_SIZE,           /* more hex digits, ";" or CR */
    CS_EXT_NAME0,      /* first tchar of an extension name */
    CS_EXT_NAME,       /* tchar, "=", ";" or CR */
    CS_EXT_VAL0,       /* first byte of a value: tchar or DQUOTE */
    CS_EXT_TOKEN,      /* tchar, ";" or CR */
    CS_EXT_QUOTED,     /* inside a quoted-string */
    CS_EXT_QPAIR,      /* after a backslash in a quoted-string */
    CS_EXT_QEND,       /* after the closing DQUOTE: ";" or CR */
    CS_SIZE_LF,        /* LF ending a size line */
    CS_DATA,           /* data_left > 0 bytes of data next */
    CS_DATA_CR,        /* CR after chunk data */
    CS_DATA_LF,        /* LF after chunk data */
    CS_TR_LINE0,       /* start of a trailer line: CR (end) or a name */
    CS_TR_NAME,        /* tchar or ":" */
    CS_TR_VALUE,       /* field bytes or CR */
    CS_TR_VALUE_LF,    /* LF ending a trailer field line */
    CS_TR_END_LF,      /* LF ending the trailer section */
    CS_DONE,
    CS_BAD,
};

void
h1_chunked_init(struct h1_chunked *st)
{
    memset(st, 0, sizeof *st);
    st->state = CS_SIZE0;
}

static enum h1_chunk
chunk_fail(struct h1_chunked *st, size_t i, size_t *used, const char *why)
{
    st->state = CS_BAD;
    st->error = why;
    *used = i;
    return H1_CHUNK_BAD;
}

enum h1_chunk
h1_chunked_parse(struct h1_chunked *st, const char *buf, size_t len, size_t *used)
{
    const unsigned char *b = (const unsigned char *)buf;
    unsigned max_ext = st->max_ext != 0 ? st->max_ext : PX_DEFAULT_MAX_EXT;
    size_t i;
    int d;

    *used = 0;
    switch (st->state) {
    case CS_BAD:
        return H1_CHUNK_BAD;
    case CS_DONE:
        return H1_CHUNK_DONE;
    case CS_DATA:
        return H1_CHUNK_DATA;
    default:
        break;
    }
    for (i = 0; i < len; i++) {
        unsigned char c = b[i];

        if (st->state >= CS_EXT_NAME0 && st->state <= CS_EXT_QEND && ++st->line_bytes > max_ext)
            return chunk_fail(st, i, used, "chunk extensions too long");
        if (st->state >= CS_TR_LINE0 && st->state <= CS_TR_END_LF &&
            ++st->trailer_bytes > PX_MAX_TRAILER_BYTES)
            return chunk_fail(st, i, used, "trailer section too large");

        switch (st->state) {
        case CS_SIZE0:
            if ((d = text_hex_value(c)) < 0)
                return chunk_fail(st, i, used, "invalid chunk size");
            st->size = (uint64_t)d;
            st->line_bytes = 1;
            st->state = CS_SIZE;
            break;
        case CS_SIZE:
            if ((d = text_hex_value(c)) >= 0) {
                /* size * 16 + d stays <= 2^63-1 for every digit d (0..15)
                 * exactly when size <= (2^63-1) / 16 */
                if (++st->line_bytes > PX_MAX_CHUNK_DIGITS ||
                    st->size > H1_INT63_MAX / 16)
                    return chunk_fail(st, i, used, "chunk size overflow");
                st->size = st->size * 16 + (uint64_t)d;
            } else if (c == ';') {
                st->line_bytes = 1;
                st->state = CS_EXT_NAME0;
            } else if (c == '\r') {
                st->state = CS_SIZE_LF;
            } else {
                return chunk_fail(st, i, used, "invalid character after chunk size");
            }
            break;
        case CS_EXT_NAME0:
            if (!is_tchar(c))
                return chunk_fail(st, i, used, "invalid chunk extension name");
            st->state = CS_EXT_NAME;
            break;
        case CS_EXT_NAME:
            if (c == '=')
                st->state = CS_EXT_VAL0;
            else if (c == ';')
                st->state = CS_EXT_NAME0;
            else if (c == '\r')
                st->state = CS_SIZE_LF;
            else if (!is_tchar(c))
                return chunk_fail(st, i, used, "invalid chunk extension name");
            break;
        case CS_EXT_VAL0:
            if (c == '"')
                st->state = CS_EXT_QUOTED;
            else if (is_tchar(c))
                st->state = CS_EXT_TOKEN;
            else
                return chunk_fail(st, i, used, "invalid chunk extension value");
            break;
        case CS_EXT_TOKEN:
            if (c == ';')
                st->state = CS_EXT_NAME0;
            else if (c == '\r')
                st->state = CS_SIZE_LF;
            else if (!is_tchar(c))
                return chunk_fail(st, i, used, "invalid chunk extension value");
            break;
        case CS_EXT_QUOTED:
            /* qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text */
            if (c == '"')
                st->state = CS_EXT_QEND;
            else if (c == '\\')
                st->state = CS_EXT_QPAIR;
            else if (!is_field_byte(c))
                return chunk_fail(st, i, used, "invalid quoted chunk extension value");
            break;
        case CS_EXT_QPAIR:
            if (!is_field_byte(c))
                return chunk_fail(st, i, used, "invalid quoted chunk extension value");
            st->state = CS_EXT_QUOTED;
            break;
        case CS_EXT_QEND:
            if (c == ';')
                st->state = CS_EXT_NAME0;
            else if (c == '\r')
                st->state = CS_SIZE_LF;
            else
                return chunk_fail(st, i, used, "invalid character after chunk extension");
            break;
        case CS_SIZE_LF:
            if (c != '\n')
                return chunk_fail(st, i, used, "bare CR in chunk size line");
            st->line_bytes = 0;
            if (st->size == 0) {
                st->trailer_bytes = 0;
                st->state = CS_TR_LINE0;
                break;
            }
            st->data_left = st->size;
            st->state = CS_DATA;
            *used = i + 1;
            return H1_CHUNK_DATA;
        case CS_DATA_CR:
            if (c != '\r')
                return chunk_fail(st, i, used, "missing CRLF after chunk data");
            st->state = CS_DATA_LF;
            break;
        case CS_DATA_LF:
            if (c != '\n')
                return chunk_fail(st, i, used, "missing CRLF after chunk data");
            st->size = 0;
            st->state = CS_SIZE0;
            break;
        case CS_TR_LINE0:
            if (c == '\r')
                st->state = CS_TR_END_LF;
            else if (is_tchar(c))
                st->state = CS_TR_NAME;
            else
                return chunk_fail(st, i, used, is_ows(c) ? "obs-fold in trailer section"
                                                         : "invalid trailer field");
            break;
        case CS_TR_NAME:
            if (c == ':')
                st->state = CS_TR_VALUE;
            else if (!is_tchar(c))
                return chunk_fail(st, i, used, "invalid trailer field name");
            break;
        case CS_TR_VALUE:
            if (c == '\r')
                st->state = CS_TR_VALUE_LF;
            else if (!is_field_byte(c))
                return chunk_fail(st, i, used, "invalid trailer field value");
            break;
        case CS_TR_VALUE_LF:
            if (c != '\n')
                return chunk_fail(st, i, used, "bare CR in trailer section");
            st->state = CS_TR_LINE0;
            break;
        case CS_TR_END_LF:
            if (c != '\n')
                return chunk_fail(st, i, used, "bare CR in trailer section");
            st->state = CS_DONE;
            *used = i + 1;
            return H1_CHUNK_DONE;
        default:
            assert(!"h1_chunked: state out of range");
            return chunk_fail(st, i, used, "internal error");
        }
    }
    *used = len;
    return H1_CHUNK_AGAIN;
}

void
h1_chunked_data_consumed(struct h1_chunked *st, uint64_t n)
{
    if (n == 0)
        return;
    assert(st->state == CS_DATA && n <= st->data_left);
    st->data_left -= n;
    if (st->data_left == 0)
        st->state = CS_DATA_CR;
}

const char *
h1_chunked_check(const char *buf, size_t len, unsigned max_ext)
{
    struct h1_chunked st;
    size_t off = 0, used, take;

    if (len == 0)
        return NULL;
    h1_chunked_init(&st);
    st.max_ext = max_ext;
    for (;;) {
        switch (h1_chunked_parse(&st, buf + off, len - off, &used)) {
        case H1_CHUNK_BAD:
            return st.error;
        case H1_CHUNK_DATA:
            off += used;
            take = len - off < st.data_left ? len - off : (size_t)st.data_left;
            if (take == 0)
                return NULL;
            off += take;
            h1_chunked_data_consumed(&st, take);
            break;
        case H1_CHUNK_AGAIN:
        case H1_CHUNK_DONE:
            return NULL;
        }
    }
}
