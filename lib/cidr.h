/*
 * lib/cidr: IP address ranges ("10.0.0.0/8", "::1/128", "127.0.0.1") and
 * the test "is this client address in that range", for the list of sources
 * a service honours its override header from (router/conf.c parses the
 * list, router/router.c matches against it, proxy/http_msg.c turns the
 * client's address into a struct cidr_addr).
 *
 * An IPv4 client seen through a dual-stack IPv6 socket (::ffff:a.b.c.d) is
 * an IPv4 address here: it matches the IPv4 ranges, never the IPv6 ones.
 *
 * A leaf: libc only. Matching is pure and allocation-free (a request may
 * call it); parsing runs at config load.
 */
#ifndef CUTOVER_LIB_CIDR_H
#define CUTOVER_LIB_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CIDR_TEXT_MAX 64u            /* longer text is not a range */

/* An address: family 4 (bytes 0..3 used, the rest zero) or 6; 0 = none. */
struct cidr_addr {
    uint8_t family;
    uint8_t bytes[16];
};

/* A range: <net> with its host bits zero, and a prefix length of 0..32
 * (IPv4) or 0..128 (IPv6). */
struct cidr {
    struct cidr_addr net;
    uint8_t bits;
};

/* Parses a numeric address ("192.0.2.1", "2001:db8::1", "::ffff:192.0.2.1",
 * which is taken as 192.0.2.1) of <len> bytes into <out>. Returns 0 or -1. */
int cidr_addr_parse(const char *text, size_t len, struct cidr_addr *out);

/* Sets <out> from the raw network-order bytes of an IPv4 (<family> 4, 4
 * bytes) or IPv6 (6, 16 bytes) address, an IPv4-mapped IPv6 one becoming
 * IPv4. */
void cidr_addr_set(struct cidr_addr *out, int family, const void *bytes);

/* Parses "ADDR/BITS" or a bare "ADDR" (a single host: /32 or /128) into
 * <out>. Refused, with the reason in <*why> (static text): anything but a
 * numeric address, a prefix length out of range or written with a sign or
 * leading zeros, host bits set beyond the prefix (the operator meant
 * another range than the one written: the message shows the network), and
 * an IPv4-mapped IPv6 range (write it as IPv4). Returns 0 or -1. <hint>
 * (capacity <hintlen>, may be NULL) gets the range the operator probably
 * meant when host bits were set ("10.0.0.0/8"), else "". */
int cidr_parse(const char *text, struct cidr *out, const char **why, char *hint,
               size_t hintlen);

/* True when <a> is inside <c> (same family, the first c->bits bits equal). */
bool cidr_contains(const struct cidr *c, const struct cidr_addr *a);

/* True when <a> is inside one of the <n> ranges of <list>. */
bool cidr_match_any(const struct cidr *list, unsigned n, const struct cidr_addr *a);

/* True when <a> and <b> are the same range. */
bool cidr_equal(const struct cidr *a, const struct cidr *b);

/* Writes <c> as "ADDR/BITS" into <buf>; returns <buf>. */
const char *cidr_format(const struct cidr *c, char *buf, size_t len);

#endif
