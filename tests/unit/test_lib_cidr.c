/*
 * tests/unit/test_lib_cidr.c: lib/cidr.c. Ranges parse strictly (with the
 * reason, and the range meant when host bits are set), match at the edge
 * prefixes /0, /1, /31, /32, /127 and /128 and in the middle of a byte,
 * IPv4 clients on a dual-stack socket (::ffff:a.b.c.d) count as IPv4, and
 * contains() agrees with a bit-by-bit model over many pseudo-random
 * addresses and ranges (fixed seed).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "lib/cidr.h"

static struct cidr
range(const char *text)
{
    struct cidr c;
    const char *why = NULL;

    if (cidr_parse(text, &c, &why, NULL, 0) != 0)
        fail_msg("%s: %s", text, why);
    return c;
}

static struct cidr_addr
ip(const char *text)
{
    struct cidr_addr a;

    if (cidr_addr_parse(text, strlen(text), &a) != 0)
        fail_msg("%s: not an address", text);
    return a;
}

static bool
in(const char *r, const char *a)
{
    struct cidr c = range(r);
    struct cidr_addr x = ip(a);

    return cidr_contains(&c, &x);
}

static void
test_parse_ok(void **state)
{
    static const struct {
        const char *text, *canon;
    } t[] = {
        { "127.0.0.0/8", "127.0.0.0/8" },
        { "127.0.0.1", "127.0.0.1/32" },
        { "0.0.0.0/0", "0.0.0.0/0" },
        { "10.1.2.3/32", "10.1.2.3/32" },
        { "192.168.4.0/22", "192.168.4.0/22" },
        { "::1", "::1/128" },
        { "::/0", "::/0" },
        { "2001:db8::/32", "2001:db8::/32" },
        { "2001:DB8:0:0:0:0:0:1/128", "2001:db8::1/128" },
        { "fe80::/10", "fe80::/10" },
    };
    char buf[CIDR_TEXT_MAX];
    struct cidr c;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        c = range(t[i].text);
        assert_string_equal(cidr_format(&c, buf, sizeof(buf)), t[i].canon);
    }
    c = range("10.0.0.0/8");
    assert_int_equal(c.net.family, 4);
    assert_int_equal(c.bits, 8);
    c = range("::1");
    assert_int_equal(c.net.family, 6);
    assert_int_equal(c.bits, 128);
}

static void
test_parse_refused(void **state)
{
    static const struct {
        const char *text, *why, *hint;
    } t[] = {
        { "", "is not an IPv4 or IPv6 address or range", "" },
        { "localhost", "is not an IPv4 or IPv6 address or range", "" },
        { "10.0.0/8", "is not an IPv4 or IPv6 address or range", "" },
        { "010.0.0.0/8", "is not an IPv4 or IPv6 address or range", "" },
        { "10.0.0.0 /8", "is not an IPv4 or IPv6 address or range", "" },
        { "[::1]", "is not an IPv4 or IPv6 address or range", "" },
        { "10.0.0.0/", "has a prefix length that is not a plain decimal number", "" },
        { "10.0.0.0/08", "has a prefix length that is not a plain decimal number", "" },
        { "10.0.0.0/+8", "has a prefix length that is not a plain decimal number", "" },
        { "10.0.0.0/8/8", "has a prefix length that is not a plain decimal number", "" },
        { "10.0.0.0/1000", "has a prefix length that is not a plain decimal number", "" },
        { "10.0.0.0/33", "has a prefix length over 32 (IPv4)", "" },
        { "::/129", "has a prefix length over 128 (IPv6)", "" },
        { "10.0.0.1/8", "has bits set after the prefix length", "10.0.0.0/8" },
        { "127.0.0.1/0", "has bits set after the prefix length", "0.0.0.0/0" },
        { "192.168.5.0/22", "has bits set after the prefix length", "192.168.4.0/22" },
        { "::1/64", "has bits set after the prefix length", "::/64" },
        { "2001:db8::4000/113", "has bits set after the prefix length", "2001:db8::/113" },
        { "2001:db8::c000/113", "has bits set after the prefix length", "2001:db8::8000/113" },
        { "::ffff:10.0.0.0/104", "is an IPv4-mapped IPv6 range", "" },
        { "::ffff:127.0.0.1", "is an IPv4-mapped IPv6 range", "" },
    };
    char hint[CIDR_TEXT_MAX], big[200];
    const char *why;
    struct cidr c;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        why = NULL;
        memset(&c, 0x5a, sizeof(c));
        if (cidr_parse(t[i].text, &c, &why, hint, sizeof(hint)) == 0)
            fail_msg("\"%s\" was accepted", t[i].text);
        assert_non_null(why);
        if (strncmp(why, t[i].why, strlen(t[i].why)) != 0)
            fail_msg("\"%s\": %s (want %s)", t[i].text, why, t[i].why);
        assert_string_equal(hint, t[i].hint);
        assert_int_equal(c.bits, 0x5a);          /* untouched */
    }
    memset(big, '1', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(cidr_parse(big, &c, &why, NULL, 0), -1);
}

static void
test_contains_edges(void **state)
{
    (void)state;
    /* /0 takes every address of its family, and only of its family */
    assert_true(in("0.0.0.0/0", "0.0.0.0"));
    assert_true(in("0.0.0.0/0", "255.255.255.255"));
    assert_false(in("0.0.0.0/0", "::1"));
    assert_true(in("::/0", "::"));
    assert_true(in("::/0", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
    assert_false(in("::/0", "127.0.0.1"));
    /* /1 */
    assert_true(in("128.0.0.0/1", "128.0.0.0"));
    assert_true(in("128.0.0.0/1", "255.1.2.3"));
    assert_false(in("128.0.0.0/1", "127.255.255.255"));
    /* /8 and a prefix in the middle of a byte */
    assert_true(in("127.0.0.0/8", "127.0.0.2"));
    assert_true(in("127.0.0.0/8", "127.255.255.255"));
    assert_false(in("127.0.0.0/8", "128.0.0.1"));
    assert_false(in("127.0.0.0/8", "126.255.255.255"));
    assert_true(in("192.168.4.0/22", "192.168.7.255"));
    assert_false(in("192.168.4.0/22", "192.168.8.0"));
    assert_false(in("192.168.4.0/22", "192.168.3.255"));
    /* /31, /32 */
    assert_true(in("10.0.0.2/31", "10.0.0.3"));
    assert_false(in("10.0.0.2/31", "10.0.0.4"));
    assert_true(in("10.0.0.1/32", "10.0.0.1"));
    assert_false(in("10.0.0.1/32", "10.0.0.0"));
    assert_false(in("10.0.0.1/32", "10.0.0.2"));
    assert_true(in("127.0.0.1", "127.0.0.1"));
    assert_false(in("127.0.0.1", "127.0.0.2"));
    /* IPv6: /127, /128, /10 */
    assert_true(in("::1", "::1"));
    assert_false(in("::1", "::2"));
    assert_false(in("::1/128", "::0"));
    assert_true(in("2001:db8::/127", "2001:db8::1"));
    assert_false(in("2001:db8::/127", "2001:db8::2"));
    assert_true(in("fe80::/10", "febf::1"));
    assert_false(in("fe80::/10", "fec0::1"));
    assert_true(in("2001:db8::/32", "2001:db8:ffff::1"));
    assert_false(in("2001:db8::/32", "2001:db9::1"));
}

/* A client on a dual-stack socket is an IPv4 address here. */
static void
test_mapped_is_ipv4(void **state)
{
    struct cidr_addr a = ip("::ffff:127.0.0.1");
    static const uint8_t mapped[16] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 9, 8, 7 };
    static const uint8_t v6[16] = { 0x20, 0x01, 0x0d, 0xb8, [15] = 1 };
    static const uint8_t v4[4] = { 192, 0, 2, 1 };

    (void)state;
    assert_int_equal(a.family, 4);
    assert_true(in("127.0.0.0/8", "::ffff:127.0.0.1"));
    assert_false(in("::/0", "::ffff:127.0.0.1"));
    assert_false(in("::1", "::ffff:127.0.0.1"));

    cidr_addr_set(&a, 6, mapped);
    assert_int_equal(a.family, 4);
    assert_int_equal(a.bytes[0], 10);
    assert_int_equal(a.bytes[3], 7);
    assert_int_equal(a.bytes[4], 0);
    cidr_addr_set(&a, 6, v6);
    assert_int_equal(a.family, 6);
    assert_memory_equal(a.bytes, v6, 16);
    cidr_addr_set(&a, 4, v4);
    assert_int_equal(a.family, 4);
    assert_memory_equal(a.bytes, v4, 4);

    /* not addresses */
    assert_int_equal(cidr_addr_parse("unknown", 7, &a), -1);
    assert_int_equal(cidr_addr_parse("127.0.0.1", 0, &a), -1);
    assert_int_equal(cidr_addr_parse("127.0.0.1\0x", 11, &a), -1);
    assert_int_equal(cidr_addr_parse("127.0.0.1/8", 11, &a), -1);
    /* a length that stops early reads only that much */
    assert_int_equal(cidr_addr_parse("127.0.0.12", 9, &a), 0);
    assert_int_equal(a.bytes[3], 1);
}

static void
test_match_any_and_equal(void **state)
{
    struct cidr list[3] = { range("10.0.0.0/8"), range("::1"), range("192.168.0.0/16") };
    struct cidr_addr a;

    (void)state;
    a = ip("192.168.77.1");
    assert_true(cidr_match_any(list, 3, &a));
    assert_false(cidr_match_any(list, 2, &a));      /* only the first n count */
    assert_false(cidr_match_any(list, 0, &a));
    a = ip("::1");
    assert_true(cidr_match_any(list, 3, &a));
    assert_false(cidr_match_any(list, 3, NULL));
    memset(&a, 0, sizeof(a));                       /* family 0: nothing matches it */
    assert_false(cidr_match_any(list, 3, &a));

    assert_true(cidr_equal(&list[0], &list[0]));
    {
        struct cidr b = range("10.0.0.0/9"), c = range("11.0.0.0/8");

        assert_false(cidr_equal(&list[0], &b));
        assert_false(cidr_equal(&list[0], &c));
    }
}

/* splitmix64, fixed seed */
static uint64_t
next_rand(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* cidr_contains() against the bit-by-bit definition. */
static void
test_contains_model(void **state)
{
    uint64_t s = 42;
    unsigned iter, i, fam, bits, nbits;

    (void)state;
    for (iter = 0; iter < 200000; iter++) {
        struct cidr c;
        struct cidr_addr a;
        bool want = true;

        memset(&c, 0, sizeof(c));
        memset(&a, 0, sizeof(a));
        fam = next_rand(&s) & 1 ? 4 : 6;
        nbits = fam == 4 ? 32 : 128;
        bits = (unsigned)(next_rand(&s) % (nbits + 1));
        c.net.family = (uint8_t)fam;
        c.bits = (uint8_t)bits;
        a.family = (uint8_t)(next_rand(&s) % 8 == 0 ? 10 - fam : fam);
        for (i = 0; i < nbits / 8; i++) {
            a.bytes[i] = (uint8_t)next_rand(&s);
            c.net.bytes[i] = a.bytes[i];
        }
        /* flip one bit of the address somewhere, half of the time */
        if (next_rand(&s) & 1) {
            unsigned b = (unsigned)(next_rand(&s) % nbits);

            a.bytes[b / 8] ^= (uint8_t)(0x80u >> (b % 8));
            want = b >= bits;
        }
        /* the network keeps its host bits zero */
        for (i = bits; i < nbits; i++)
            c.net.bytes[i / 8] &= (uint8_t)~(0x80u >> (i % 8));
        if (a.family != c.net.family)
            want = false;
        if (cidr_contains(&c, &a) != want)
            fail_msg("iteration %u: family %u/%u bits %u: %d, want %d", iter, fam,
                     (unsigned)a.family, bits, !want, want);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_ok),
        cmocka_unit_test(test_parse_refused),
        cmocka_unit_test(test_contains_edges),
        cmocka_unit_test(test_mapped_is_ipv4),
        cmocka_unit_test(test_match_any_and_equal),
        cmocka_unit_test(test_contains_model),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
