/*
 * ctl_proto: what cutoverctl and the daemon agree on, with no dependency on
 * either (libc only): the default socket path, the weight syntax, and what
 * text may be shown on an operator's terminal as it is.
 */
#ifndef CUTOVER_ADMIN_CTL_PROTO_H
#define CUTOVER_ADMIN_CTL_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The default admin socket path: $CUTOVER_SOCKET when set, else
 * /run/cutover/admin.sock for root, else $XDG_RUNTIME_DIR/cutover/admin.sock,
 * else /tmp/cutover-<uid>/admin.sock. Written into <buf>. */
void ctl_default_socket(char *buf, size_t len);

/* Parses a weight in percent with at most two decimals ("10", "12.5",
 * "99.99", "100", "0.5") into basis points. Rejects signs, exponents,
 * spaces, "", ".", values over 100 and a third decimal. Returns 0 or -1. */
int ctl_weight_parse(const char *text, uint32_t *bp);

/* Converts a JSON number of percent to basis points with the same rules
 * (0..100, at most two decimals). Returns 0 or -1. */
int ctl_weight_from_double(double percent, uint32_t *bp);

/* The length of the character at <s> (<len> bytes there) when it may be
 * shown on a terminal as it is: a printable ASCII character (0x20..0x7e),
 * or a well-formed UTF-8 sequence (shortest form, no surrogate, at most
 * U+10FFFF) of a character that is not a C1 control (U+0080..U+009F), a
 * line or paragraph separator (U+2028, U+2029) or a bidirectional
 * formatting character (U+061C, U+200E, U+200F, U+202A..U+202E,
 * U+2066..U+2069): nothing that can move the cursor, end a line, send an
 * escape sequence or reorder what follows. 0 otherwise (a control
 * character, tab and newline included, DEL, invalid UTF-8). */
size_t ctl_text_char(const char *s, size_t len);

/* True when all <len> bytes of <s> are characters ctl_text_char() accepts;
 * otherwise false with *<bad> (when not NULL) the offset of the first
 * byte that is not. */
bool ctl_text_ok(const char *s, size_t len, size_t *bad);

#define CTL_ESC_QUOTED 1u              /* the text is shown between quotes */

/* Writes <s> (<len> bytes) into <out> (<outlen> bytes, NUL-terminated; a
 * piece that does not fit ends the output, none is cut) so that it can be
 * shown on a terminal and read back without doubt: what ctl_text_char()
 * accepts as it is, a backslash as "\\", with CTL_ESC_QUOTED a double
 * quote as "\"", newline, CR and tab as "\n", "\r", "\t", any other byte
 * as "\xHH". Returns the length of the whole result, as snprintf() does; it
 * is at most 4 * <len>. <out> may be NULL when <outlen> is 0. */
size_t ctl_escape(char *out, size_t outlen, const char *s, size_t len, unsigned flags);

#endif
