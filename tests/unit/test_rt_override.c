/*
 * tests/unit/test_rt_override.c: who may steer a request with the override
 * header (router/router.c and router/conf.c; the rest of the router is in
 * test_rt_router.c). The header's value grammar ("new", "legacy; key=S"),
 * the decision "honoured" (a source in allow_from, or the secret), the
 * refusal in rt_choose() (routed exactly as without the header, and
 * flagged), the config keys (allow_from's loopback default, its strict
 * parsing, the secret's) and rt_conf_set_secret().
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include <jansson.h>

#include "router/conf.h"
#include "router/router.h"

#define SECRET "Ab0-_.~!#$%&'*+/:<=>?@[]^`{|}xyz"   /* 32 printable bytes */

static struct cidr_addr
ip(const char *text)
{
    struct cidr_addr a;

    if (cidr_addr_parse(text, strlen(text), &a) != 0)
        fail_msg("%s: not an address", text);
    return a;
}

/* A service config with an override header, parsed from <override> (JSON
 * of the "override" object) the way the loader does; fails the test when
 * it does not parse. */
static void
conf_from(const char *override, struct rt_conf *c)
{
    char text[1024];
    struct conf_err err;
    json_error_t je;
    json_t *svc;

    snprintf(text, sizeof(text), "{\"override\": %s}", override);
    svc = json_loads(text, 0, &je);
    if (svc == NULL)
        fail_msg("%s: %s", text, je.text);
    memset(&err, 0, sizeof(err));
    if (rt_conf_parse(svc, "web", "services[0]", c, &err) != 0)
        fail_msg("%s: %s: %s", text, err.path, err.msg);
    json_decref(svc);
}

/* The error of <override>, as "PATH: MSG". */
static const char *
conf_error(const char *override, char *buf, size_t len)
{
    char text[1024];
    struct conf_err err;
    struct rt_conf c;
    json_t *svc;

    snprintf(text, sizeof(text), "{\"override\": %s}", override);
    svc = json_loads(text, 0, NULL);
    assert_non_null(svc);
    memset(&err, 0, sizeof(err));
    if (rt_conf_parse(svc, "web", "services[0]", &c, &err) == 0)
        fail_msg("%s was accepted", text);
    json_decref(svc);
    snprintf(buf, len, "%s: %s", err.path, err.msg);
    return buf;
}

static void
set_secret(struct rt_conf *c, const char *s)
{
    const char *why = NULL;

    if (rt_conf_set_secret(c, s, strlen(s), &why) != 0)
        fail_msg("secret %s: %s", s, why);
}

/* ---- the value --------------------------------------------------------- */

static void
test_value_grammar(void **state)
{
    static const struct {
        const char *val;
        int side;                /* RT_NONE for none */
        const char *key;         /* NULL: none */
    } t[] = {
        { "new", RT_NEW, NULL },
        { "NeW", RT_NEW, NULL },
        { "legacy", RT_LEGACY, NULL },
        { "new; key=abc", RT_NEW, "abc" },
        { "new;key=abc", RT_NEW, "abc" },
        { "new ; key=abc", RT_NEW, "abc" },
        { "new\t;\tKEY=abc", RT_NEW, "abc" },
        { "LEGACY; Key=" SECRET, RT_LEGACY, SECRET },
        { "", RT_NONE, NULL },
        { "blue", RT_NONE, NULL },
        { "blue; key=abc", RT_NONE, NULL },
        { " new", RT_NONE, NULL },
        { "new ", RT_NONE, NULL },
        { "new;", RT_NONE, NULL },
        { "new; ", RT_NONE, NULL },
        { "new; key", RT_NONE, NULL },
        { "new; key=", RT_NONE, NULL },
        { "new; key =abc", RT_NONE, NULL },
        { "new; key= abc", RT_NONE, NULL },
        { "new; key=abc ", RT_NONE, NULL },
        { "new; key=a b", RT_NONE, NULL },
        { "new; key=a;b", RT_NONE, NULL },
        { "new; key=a,b", RT_NONE, NULL },
        { "new; key=\"abc\"", RT_NONE, NULL },
        { "new; key=a\\b", RT_NONE, NULL },
        { "new; key=abc; key=abc", RT_NONE, NULL },
        { "new; token=abc", RT_NONE, NULL },
        { "new, legacy", RT_NONE, NULL },
        { "new;new", RT_NONE, NULL },
        { "new; key=ab\xc3\xa9", RT_NONE, NULL },
    };
    const char *key;
    size_t i, klen;
    enum rt_side side;

    (void)state;
    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        key = "poison";
        klen = 99;
        side = rt_override_parse(t[i].val, strlen(t[i].val), &key, &klen);
        if ((int)side != t[i].side)
            fail_msg("\"%s\": side %d, want %d", t[i].val, (int)side, t[i].side);
        if (t[i].key == NULL) {
            if (key != NULL || klen != 0)
                fail_msg("\"%s\": a key of %zu bytes", t[i].val, klen);
        } else {
            assert_non_null(key);
            assert_int_equal(klen, strlen(t[i].key));
            assert_memory_equal(key, t[i].key, klen);
        }
    }
    /* the length is the value's end: bytes after it are not read */
    assert_int_equal(rt_override_parse("newXX", 3, &key, &klen), RT_NEW);
    assert_int_equal(rt_override_parse("new; key=abcdef", 12, &key, &klen), RT_NEW);
    assert_int_equal(klen, 3);
    assert_int_equal(rt_override_parse("new\0", 4, &key, &klen), RT_NONE);
    assert_int_equal(rt_override_parse(NULL, 0, &key, &klen), RT_NONE);
}

/* ---- who is honoured ------------------------------------------------------ */

static void
test_honoured_by_source(void **state)
{
    struct rt_conf c;
    struct cidr_addr a;

    (void)state;
    conf_from("{\"header\": \"X-T\"}", &c);           /* default: loopback */
    a = ip("127.0.0.1");
    assert_true(rt_override_honoured(&c, &a, NULL, 0));
    a = ip("127.0.0.2");
    assert_true(rt_override_honoured(&c, &a, NULL, 0));
    a = ip("::1");
    assert_true(rt_override_honoured(&c, &a, NULL, 0));
    a = ip("::ffff:127.0.0.9");                         /* dual-stack socket */
    assert_true(rt_override_honoured(&c, &a, NULL, 0));
    a = ip("128.0.0.1");
    assert_false(rt_override_honoured(&c, &a, NULL, 0));
    a = ip("192.0.2.1");
    assert_false(rt_override_honoured(&c, &a, NULL, 0));
    a = ip("::2");
    assert_false(rt_override_honoured(&c, &a, NULL, 0));
    assert_false(rt_override_honoured(&c, NULL, NULL, 0));   /* unknown source */
    /* without a secret, no key helps */
    a = ip("192.0.2.1");
    assert_false(rt_override_honoured(&c, &a, "", 0));
    assert_false(rt_override_honoured(&c, &a, "x", 1));

    /* an explicit list replaces the default */
    conf_from("{\"header\": \"X-T\", \"allow_from\": [\"127.0.0.1/32\", "
              "\"2001:db8::/32\"]}", &c);
    a = ip("127.0.0.1");
    assert_true(rt_override_honoured(&c, &a, NULL, 0));
    a = ip("127.0.0.2");
    assert_false(rt_override_honoured(&c, &a, NULL, 0));
    a = ip("::1");
    assert_false(rt_override_honoured(&c, &a, NULL, 0));
    a = ip("2001:db8:1::5");
    assert_true(rt_override_honoured(&c, &a, NULL, 0));

    /* everyone */
    conf_from("{\"header\": \"X-T\", \"allow_from\": [\"0.0.0.0/0\", \"::/0\"]}", &c);
    a = ip("203.0.113.7");
    assert_true(rt_override_honoured(&c, &a, NULL, 0));
    a = ip("2001:db8::7");
    assert_true(rt_override_honoured(&c, &a, NULL, 0));
}

static void
test_honoured_by_secret(void **state)
{
    struct rt_conf c;
    struct cidr_addr out = ip("192.0.2.1"), lo = ip("127.0.0.1");
    char key[sizeof(SECRET) + 1];
    size_t n = strlen(SECRET), i;

    (void)state;
    conf_from("{\"header\": \"X-T\", \"allow_from\": [], \"secret_file\": \"s\"}", &c);
    assert_int_equal(c.nallow, 0);
    set_secret(&c, SECRET);
    assert_true(rt_override_honoured(&c, &out, SECRET, n));
    assert_true(rt_override_honoured(&c, NULL, SECRET, n));
    /* allow_from is empty: loopback needs the key too */
    assert_false(rt_override_honoured(&c, &lo, NULL, 0));
    assert_true(rt_override_honoured(&c, &lo, SECRET, n));
    /* wrong in any one byte, truncated, longer, empty, absent */
    for (i = 0; i < n; i++) {
        memcpy(key, SECRET, n);
        key[i] ^= 1;
        if (rt_override_honoured(&c, &out, key, n))
            fail_msg("a key wrong in byte %zu was honoured", i);
    }
    for (i = 0; i < n; i++)
        assert_false(rt_override_honoured(&c, &out, SECRET, i));
    memcpy(key, SECRET, n);
    key[n] = 'x';
    assert_false(rt_override_honoured(&c, &out, key, n + 1));
    assert_false(rt_override_honoured(&c, &out, NULL, 0));

    /* both: the source or the key */
    conf_from("{\"header\": \"X-T\", \"secret_file\": \"s\"}", &c);
    set_secret(&c, SECRET);
    assert_true(rt_override_honoured(&c, &lo, NULL, 0));
    assert_true(rt_override_honoured(&c, &lo, "wrong-wrong-wrong", 17));  /* source */
    assert_true(rt_override_honoured(&c, &out, SECRET, n));
    assert_false(rt_override_honoured(&c, &out, "wrong-wrong-wrong", 17));
}

/* In rt_choose(): a refused override routes exactly as no header would
 * (weight, sticky, fallback), and says so; an honoured one steers. */
static void
test_refused_routes_as_absent(void **state)
{
    static const char *const vals[] = {
        "new", "legacy", "NEW", "new; key=wrong-wrong-wrong", "blue", "new; key=",
    };
    struct rt_conf c;
    struct rt_snapshot s;
    struct rt_cursor cur1 = { { 0, 0 } }, cur2 = { { 0, 0 } };
    struct rt_input in, plain;
    struct rt_choice a, b;
    struct cidr_addr out = ip("127.0.0.2"), lo = ip("127.0.0.1");
    unsigned r, v, w;

    (void)state;
    conf_from("{\"header\": \"X-T\", \"allow_from\": [\"127.0.0.1\"], "
              "\"secret_file\": \"s\"}", &c);
    set_secret(&c, SECRET);
    c.sticky_by = RT_STICKY_COOKIE;
    for (w = 0; w <= RT_BP_MAX; w += 2500) {
        rt_snapshot_init(&s, &c, w, 2, 2);
        for (v = 0; v < sizeof(vals) / sizeof(vals[0]); v++) {
            for (r = 0; r < 20000; r += 173) {
                memset(&in, 0, sizeof(in));
                memset(&plain, 0, sizeof(plain));
                in.override_val = vals[v];
                in.override_len = strlen(vals[v]);
                in.client = &out;
                in.rand = plain.rand = r;
                in.has_cookie_bucket = plain.has_cookie_bucket = r % 3 == 0;
                in.cookie_bucket = plain.cookie_bucket = r % RT_BP_MAX;
                rt_choose(&s, &cur1, &in, &a);
                rt_choose(&s, &cur2, &plain, &b);
                assert_true(a.override_refused);
                assert_false(b.override_refused);
                assert_int_equal(a.side, b.side);
                assert_int_equal(a.server, b.server);
                assert_int_equal(a.reason, b.reason);
                assert_int_equal(a.issue_cookie, b.issue_cookie);
                assert_int_equal(a.bucket, b.bucket);
                assert_int_not_equal(a.reason, RT_R_OVERRIDE);
            }
        }
    }
    /* from an allowed source, or with the key: steered, not refused */
    rt_snapshot_init(&s, &c, 0, 1, 1);
    memset(&in, 0, sizeof(in));
    in.override_val = "new";
    in.override_len = 3;
    in.client = &lo;
    rt_choose(&s, &cur1, &in, &a);
    assert_int_equal(a.side, RT_NEW);
    assert_int_equal(a.reason, RT_R_OVERRIDE);
    assert_false(a.override_refused);
    in.override_val = "new; key=" SECRET;
    in.override_len = strlen(in.override_val);
    in.client = &out;
    rt_choose(&s, &cur1, &in, &a);
    assert_int_equal(a.side, RT_NEW);
    assert_false(a.override_refused);
    /* an unknown value from an allowed source is ignored, not refused */
    in.override_val = "blue";
    in.override_len = 4;
    in.client = &lo;
    rt_choose(&s, &cur1, &in, &a);
    assert_int_equal(a.side, RT_LEGACY);
    assert_false(a.override_refused);
    /* refused even when both sides are down (it is counted all the same) */
    s.usable[RT_LEGACY] = s.usable[RT_NEW] = 0;
    in.client = &out;
    in.override_val = "new";
    in.override_len = 3;
    rt_choose(&s, &cur1, &in, &a);
    assert_int_equal(a.side, RT_NONE);
    assert_true(a.override_refused);
    /* no header: nothing refused */
    in.override_val = NULL;
    in.override_len = 0;
    rt_choose(&s, &cur1, &in, &a);
    assert_false(a.override_refused);
}

/* ---- the config keys ------------------------------------------------------- */

static void
test_conf_keys(void **state)
{
    char buf[512];
    struct rt_conf c;
    struct cidr lo8, lo6;
    const char *why;

    (void)state;
    conf_from("{\"header\": \"X-Cutover-Target\"}", &c);
    assert_true(c.has_override);
    assert_int_equal(c.nallow, 2);
    assert_int_equal(cidr_parse("127.0.0.0/8", &lo8, &why, NULL, 0), 0);
    assert_int_equal(cidr_parse("::1/128", &lo6, &why, NULL, 0), 0);
    assert_true(cidr_equal(&c.allow_from[0], &lo8));
    assert_true(cidr_equal(&c.allow_from[1], &lo6));
    assert_int_equal(c.secret_len, 0);

    conf_from("{\"header\": \"X\", \"allow_from\": [\"10.0.0.0/8\", \"::1\", "
              "\"192.0.2.7\"]}", &c);
    assert_int_equal(c.nallow, 3);
    assert_int_equal(c.allow_from[2].bits, 32);

    assert_string_equal(conf_error("{\"header\": \"X\", \"allow_from\": \"10.0.0.0/8\"}",
                                   buf, sizeof(buf)),
                        "services[0].override.allow_from: must be an array of IPv4 or "
                        "IPv6 ranges (\"10.0.0.0/8\", \"::1\")");
    assert_string_equal(conf_error("{\"header\": \"X\", \"allow_from\": [\"::1\", 8]}",
                                   buf, sizeof(buf)),
                        "services[0].override.allow_from[1]: must be a string");
    assert_string_equal(conf_error("{\"header\": \"X\", \"allow_from\": [\"10.0.0.1/8\"]}",
                                   buf, sizeof(buf)),
                        "services[0].override.allow_from[0]: \"10.0.0.1/8\" has bits set "
                        "after the prefix length (a host address with a network's "
                        "length): did you mean 10.0.0.0/8?");
    assert_string_equal(conf_error("{\"header\": \"X\", \"allow_from\": [\"localhost\"]}",
                                   buf, sizeof(buf)),
                        "services[0].override.allow_from[0]: \"localhost\" is not an IPv4 "
                        "or IPv6 address or range (\"10.0.0.0/8\", \"::1\")");
    assert_string_equal(conf_error("{\"header\": \"X\", \"allow_from\": [\"::/200\"]}",
                                   buf, sizeof(buf)),
                        "services[0].override.allow_from[0]: \"::/200\" has a prefix "
                        "length over 128 (IPv6)");
    assert_string_equal(conf_error("{\"header\": \"X\", \"allow_from\": []}", buf,
                                   sizeof(buf)),
                        "services[0].override.allow_from: is empty and there is no "
                        "secret_file: the override could never be honoured (remove "
                        "\"override\" to have none)");
    assert_string_equal(conf_error("{\"header\": \"X\", \"secret_file\": \"\"}", buf,
                                   sizeof(buf)),
                        "services[0].override.secret_file: must not be empty");
    assert_string_equal(conf_error("{\"header\": \"X\", \"secret_file\": 3}", buf,
                                   sizeof(buf)),
                        "services[0].override.secret_file: must be a string");
    assert_string_equal(conf_error("{\"header\": \"X\", \"allow\": []}", buf, sizeof(buf)),
                        "services[0].override.allow: unknown key");
    {
        char big[2048];
        size_t k, n = 0;

        n += (size_t)snprintf(big + n, sizeof(big) - n, "{\"header\": \"X\", \"allow_from\": [");
        for (k = 0; k <= RT_ALLOW_MAX; k++)
            n += (size_t)snprintf(big + n, sizeof(big) - n, "%s\"10.0.%zu.0/24\"",
                                  k ? ", " : "", k);
        snprintf(big + n, sizeof(big) - n, "]}");
        assert_string_equal(conf_error(big, buf, sizeof(buf)),
                            "services[0].override.allow_from: has 33 ranges, at most 32");
    }
}

static void
test_set_secret(void **state)
{
    static const struct {
        const char *text;
        const char *why;         /* NULL: accepted */
        size_t len;              /* of the secret kept */
    } t[] = {
        { "0123456789abcdef", NULL, 16 },
        { "0123456789abcdef\n", NULL, 16 },
        { "0123456789abcdef\r\n", NULL, 16 },
        { SECRET, NULL, 32 },
        { "", "is empty", 0 },
        { "\n", "is empty", 0 },
        { "\r\n", "is empty", 0 },
        { "0123456789abcde", "must hold one line of 16 to 128 characters", 0 },
        { "0123456789abcdef\n\n", "must hold one line of printable", 0 },
        { "0123456789 abcdef", "must hold one line of printable", 0 },
        { "0123456789abcdef\t", "must hold one line of printable", 0 },
        { "01234567;9abcdef", "must hold one line of printable", 0 },
        { "01234567,9abcdef", "must hold one line of printable", 0 },
        { "01234567\"9abcdef", "must hold one line of printable", 0 },
        { "01234567\\9abcdef", "must hold one line of printable", 0 },
        { "01234567\x7f" "9abcdef", "must hold one line of printable", 0 },
        { "0123456789abcdef\nsecond line", "must hold one line of printable", 0 },
    };
    char long_ok[RT_SECRET_MAX + 2], too_long[RT_SECRET_MAX + 2];
    struct rt_conf c;
    const char *why;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        memset(&c, 0, sizeof(c));
        why = NULL;
        if (t[i].why == NULL) {
            if (rt_conf_set_secret(&c, t[i].text, strlen(t[i].text), &why) != 0)
                fail_msg("\"%s\": %s", t[i].text, why);
            assert_int_equal(c.secret_len, t[i].len);
            assert_memory_equal(c.secret, t[i].text, t[i].len);
        } else {
            if (rt_conf_set_secret(&c, t[i].text, strlen(t[i].text), &why) == 0)
                fail_msg("\"%s\" was accepted", t[i].text);
            if (strncmp(why, t[i].why, strlen(t[i].why)) != 0)
                fail_msg("\"%s\": %s", t[i].text, why);
            assert_int_equal(c.secret_len, 0);
        }
    }
    memset(long_ok, 'k', RT_SECRET_MAX);
    long_ok[RT_SECRET_MAX] = '\n';
    assert_int_equal(rt_conf_set_secret(&c, long_ok, RT_SECRET_MAX + 1, &why), 0);
    assert_int_equal(c.secret_len, RT_SECRET_MAX);
    memset(too_long, 'k', RT_SECRET_MAX + 1);
    memset(&c, 0, sizeof(c));
    assert_int_equal(rt_conf_set_secret(&c, too_long, RT_SECRET_MAX + 1, &why), -1);
    assert_int_equal(c.secret_len, 0);
    /* a NUL inside is not printable */
    assert_int_equal(rt_conf_set_secret(&c, "01234567\0" "9abcdef", 16, &why), -1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_value_grammar),
        cmocka_unit_test(test_honoured_by_source),
        cmocka_unit_test(test_honoured_by_secret),
        cmocka_unit_test(test_refused_routes_as_absent),
        cmocka_unit_test(test_conf_keys),
        cmocka_unit_test(test_set_secret),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
