/*
 * tests/unit/test_rt_router.c: router/router.c through its public API.
 *
 * Properties rather than examples: the share to new matches the weight over
 * 100k keys (sticky and random), weights 0 and 10000 are exact, stickiness
 * is monotonic as the weight moves, and rt_choose() agrees with a naive
 * reference model on many pseudo-random inputs. Deterministic: every random
 * draw comes from a splitmix64 generator with a fixed seed.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <cmocka.h>

#include "router/conf.h"
#include "router/router.h"

#define NKEYS 100000u

/* splitmix64: small, well-mixed, and the same sequence on every machine. */
struct prng {
    uint64_t s;
};

static uint64_t
prng_next(struct prng *p)
{
    uint64_t z = (p->s += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void
conf_make(struct rt_conf *c, enum rt_sticky_by by, const char *name,
          const char *salt, bool has_override)
{
    memset(c, 0, sizeof(*c));
    c->sticky_by = by;
    if (name != NULL)
        snprintf(c->sticky_name, sizeof(c->sticky_name), "%s", name);
    c->seed = rt_seed_from_salt(salt, strlen(salt));
    c->has_override = has_override;
    if (has_override) {
        const char *why;

        snprintf(c->override_header, sizeof(c->override_header), "%s",
                 "X-Cutover-Target");
        /* the default of override.allow_from: loopback */
        assert_int_equal(cidr_parse("127.0.0.0/8", &c->allow_from[0], &why, NULL, 0), 0);
        assert_int_equal(cidr_parse("::1", &c->allow_from[1], &why, NULL, 0), 0);
        c->nallow = 2;
    }
}

/* The address <text>, in one of 8 static slots (a few may be in use at
 * once); NULL for NULL. */
static const struct cidr_addr *
addr(const char *text)
{
    static struct cidr_addr ring[8];
    static unsigned next;
    struct cidr_addr *a;

    if (text == NULL)
        return NULL;
    a = &ring[next++ % 8];
    assert_int_equal(cidr_addr_parse(text, strlen(text), a), 0);
    return a;
}

/* The range <text>, which must parse. */
static struct cidr
conf_range(const char *text)
{
    struct cidr c;
    const char *why = NULL;

    if (cidr_parse(text, &c, &why, NULL, 0) != 0)
        fail_msg("%s: %s", text, why);
    return c;
}

/* Writes "user-<i>" into <buf> and returns its length. */
static size_t
user_key(char *buf, size_t size, unsigned i)
{
    return (size_t)snprintf(buf, size, "user-%u", i);
}

static struct rt_choice
choose(const struct rt_snapshot *s, struct rt_cursor *cur,
       const struct rt_input *in)
{
    struct rt_choice c;

    /* poison: rt_choose must write every field */
    memset(&c, 0xa5, sizeof(c));
    rt_choose(s, cur, in, &c);
    return c;
}

static uint64_t
isqrt(uint64_t v)
{
    uint64_t r = 0;

    while ((r + 1) * (r + 1) <= v)
        r++;
    return r;
}

/* Asserts that <got> of <n> trials went to new at weight <w>: exact for 0
 * and 10000, otherwise within 5 standard deviations of the binomial. */
static void
assert_share(uint32_t w, uint64_t n, uint64_t got)
{
    uint64_t expect = n * w / RT_BP_MAX;
    uint64_t var = n * w * (RT_BP_MAX - w) / ((uint64_t)RT_BP_MAX * RT_BP_MAX);
    uint64_t tol = 5 * (isqrt(var) + 1);
    uint64_t diff = got > expect ? got - expect : expect - got;

    if (w == 0)
        assert_int_equal(got, 0);
    else if (w == RT_BP_MAX)
        assert_int_equal(got, n);
    if (diff > tol)
        fail_msg("weight %u bp: %llu of %llu to new, expected %llu +- %llu",
                 (unsigned)w, (unsigned long long)got, (unsigned long long)n,
                 (unsigned long long)expect, (unsigned long long)tol);
}

static const uint32_t share_weights[] = { 0, 100, 1000, 2500, 5000, 7500, 9999, 10000 };

/* ---- names, seeds, buckets ---------------------------------------------- */

static void
test_names(void **state)
{
    assert_string_equal(rt_side_names[RT_LEGACY], "legacy");
    assert_string_equal(rt_side_names[RT_NEW], "new");
    assert_string_equal(rt_reason_names[RT_R_WEIGHT], "weight");
    assert_string_equal(rt_reason_names[RT_R_STICKY], "sticky");
    assert_string_equal(rt_reason_names[RT_R_OVERRIDE], "override");
    assert_string_equal(rt_reason_names[RT_R_FALLBACK], "fallback");
    assert_string_equal(rt_reason_names[RT_R_NONE], "none");
}

/* Buckets are persisted in client cookies and shared by every proxy of a
 * fleet, so they must never change. XXH3's output has been frozen since
 * xxHash 0.8.0 and is the same on every machine (endianness-independent),
 * so these values, computed once, must hold everywhere. The empty-input
 * value is XXH3's published reference value. */
static void
test_bucket_stable(void **state)
{
    static const struct {
        const char *key;
        uint32_t seed0;      /* rt_bucket(key, 0) */
        uint32_t web;        /* rt_bucket(key, rt_seed_from_salt("web")) */
    } t[] = {
        { "user-0",   9328, 3088 },
        { "user-1",   6057, 9764 },
        { "user-42",  2621, 9737 },
        { "10.0.0.1", 3510, 6815 },
        { "",         3138, 5510 },
    };
    uint64_t web = rt_seed_from_salt("web", 3);
    size_t i;

    assert_true(rt_seed_from_salt("", 0) == 0x2d06800538d394c2ULL);
    assert_true(web == 0x22fd8ad0bcfe2d1fULL);
    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        assert_int_equal(rt_bucket(t[i].key, strlen(t[i].key), 0), t[i].seed0);
        assert_int_equal(rt_bucket(t[i].key, strlen(t[i].key), web), t[i].web);
    }
    /* Only <len> bytes are hashed. */
    assert_int_equal(rt_bucket("user-1xyz", 6, web), 9764);
}

/* Buckets stay in range and cover it roughly evenly (10 deciles). */
static void
test_bucket_range_and_spread(void **state)
{
    uint64_t seed = rt_seed_from_salt("web", 3);
    unsigned decile[10] = { 0 };
    char key[32];
    unsigned i;

    for (i = 0; i < NKEYS; i++) {
        size_t len = user_key(key, sizeof(key), i);
        uint32_t b = rt_bucket(key, len, seed);

        assert_true(b < RT_BP_MAX);
        assert_int_equal(rt_bucket(key, len, seed), b);
        decile[b / 1000]++;
    }
    for (i = 0; i < 10; i++)
        assert_share(1000, NKEYS, decile[i]);
}

static void
test_snapshot_init(void **state)
{
    struct rt_conf conf;
    struct rt_snapshot s;

    conf_make(&conf, RT_STICKY_NONE, NULL, "web", false);
    memset(&s, 0x5a, sizeof(s));
    rt_snapshot_init(&s, &conf, 2500, 3, 64);
    assert_int_equal(s.weight_bp, 2500);
    assert_int_equal(s.generation, 0);
    assert_int_equal(s.nservers[RT_LEGACY], 3);
    assert_int_equal(s.nservers[RT_NEW], 64);
    assert_true(s.usable[RT_LEGACY] == 0x7);
    assert_true(s.usable[RT_NEW] == ~(uint64_t)0);
    assert_ptr_equal(s.conf, &conf);
    assert_true(rt_side_usable(&s, RT_LEGACY));
    assert_true(rt_side_usable(&s, RT_NEW));

    rt_snapshot_init(&s, &conf, 0, 0, 1);
    assert_true(s.usable[RT_LEGACY] == 0);
    assert_false(rt_side_usable(&s, RT_LEGACY));
    assert_true(rt_side_usable(&s, RT_NEW));
    assert_false(rt_side_usable(&s, RT_NONE));
}

/* Bits at or above nservers name no server and must not make a side usable. */
static void
test_usable_ignores_stray_bits(void **state)
{
    struct rt_conf conf;
    struct rt_snapshot s;
    struct rt_cursor cur = { { 0, 0 } };
    struct rt_input in = { 0 };
    struct rt_choice c;

    conf_make(&conf, RT_STICKY_NONE, NULL, "web", false);
    rt_snapshot_init(&s, &conf, 10000, 2, 2);
    s.usable[RT_NEW] = (uint64_t)1 << 5;
    assert_false(rt_side_usable(&s, RT_NEW));
    c = choose(&s, &cur, &in);
    assert_int_equal(c.side, RT_LEGACY);
    assert_true(c.fallback);
}

/* ---- share and stickiness ----------------------------------------------- */

static void
test_share_sticky_header(void **state)
{
    struct rt_conf conf;
    struct rt_snapshot s;
    struct rt_cursor cur = { { 0, 0 } };
    struct rt_input in = { 0 };
    struct rt_choice c;
    char key[32];
    size_t wi;
    unsigned i;

    conf_make(&conf, RT_STICKY_HEADER, "X-User", "web", false);
    for (wi = 0; wi < sizeof(share_weights) / sizeof(share_weights[0]); wi++) {
        uint64_t nnew = 0;

        rt_snapshot_init(&s, &conf, share_weights[wi], 2, 3);
        for (i = 0; i < NKEYS; i++) {
            in.sticky_key = key;
            in.sticky_len = user_key(key, sizeof(key), i);
            in.rand = i;          /* must not matter with a sticky key */
            c = choose(&s, &cur, &in);
            assert_int_equal(c.reason, RT_R_STICKY);
            assert_true(c.has_bucket);
            assert_false(c.issue_cookie);
            assert_false(c.fallback);
            assert_int_equal(c.bucket, rt_bucket(key, in.sticky_len, conf.seed));
            assert_int_equal(c.side, c.bucket < share_weights[wi] ? RT_NEW : RT_LEGACY);
            nnew += c.side == RT_NEW;
        }
        assert_share(share_weights[wi], NKEYS, nnew);
    }
}

/* client_ip mode hashes the address text exactly as header mode does. */
static void
test_share_sticky_client_ip(void **state)
{
    struct rt_conf ch, ci;
    struct rt_snapshot sh, si;
    struct rt_cursor cur = { { 0, 0 } };
    struct rt_input in = { 0 };
    struct rt_choice a, b;
    char ip[32];
    uint64_t nnew = 0;
    unsigned i;

    conf_make(&ch, RT_STICKY_HEADER, "X-User", "api", false);
    conf_make(&ci, RT_STICKY_CLIENT_IP, NULL, "api", false);
    rt_snapshot_init(&sh, &ch, 2500, 1, 1);
    rt_snapshot_init(&si, &ci, 2500, 1, 1);
    for (i = 0; i < NKEYS; i++) {
        in.sticky_key = ip;
        in.sticky_len = (size_t)snprintf(ip, sizeof(ip), "10.%u.%u.%u",
                                         i >> 16, (i >> 8) & 255, i & 255);
        a = choose(&sh, &cur, &in);
        b = choose(&si, &cur, &in);
        assert_int_equal(a.side, b.side);
        assert_int_equal(a.bucket, b.bucket);
        assert_int_equal(b.reason, RT_R_STICKY);
        nnew += b.side == RT_NEW;
    }
    assert_share(2500, NKEYS, nnew);
}

static void
test_share_random(void **state)
{
    struct rt_conf conf;
    struct rt_snapshot s;
    struct rt_cursor cur = { { 0, 0 } };
    struct rt_input in = { 0 };
    struct rt_choice c;
    struct prng p = { 12345 };
    size_t wi;
    unsigned i;

    conf_make(&conf, RT_STICKY_NONE, NULL, "web", false);
    for (wi = 0; wi < sizeof(share_weights) / sizeof(share_weights[0]); wi++) {
        uint64_t nnew = 0;

        rt_snapshot_init(&s, &conf, share_weights[wi], 1, 1);
        for (i = 0; i < NKEYS; i++) {
            in.rand = prng_next(&p);
            c = choose(&s, &cur, &in);
            assert_int_equal(c.reason, RT_R_WEIGHT);
            assert_false(c.has_bucket);
            assert_false(c.issue_cookie);
            assert_int_equal(c.side, in.rand % 10000 < share_weights[wi] ? RT_NEW : RT_LEGACY);
            nnew += c.side == RT_NEW;
        }
        assert_share(share_weights[wi], NKEYS, nnew);
    }
}

/* Weights 0 and 10000 are exact even at the edges of the draw. */
static void
test_weight_edges_exact(void **state)
{
    static const uint64_t draws[] = { 0, 1, 9998, 9999, 10000, 19999,
                                      UINT64_MAX, UINT64_MAX - 1 };
    struct rt_conf conf;
    struct rt_snapshot s0, s100, s1;
    struct rt_cursor cur = { { 0, 0 } };
    struct rt_input in = { 0 };
    size_t i;

    conf_make(&conf, RT_STICKY_NONE, NULL, "web", false);
    rt_snapshot_init(&s0, &conf, 0, 1, 1);
    rt_snapshot_init(&s100, &conf, 10000, 1, 1);
    rt_snapshot_init(&s1, &conf, 1, 1, 1);
    for (i = 0; i < sizeof(draws) / sizeof(draws[0]); i++) {
        in.rand = draws[i];
        assert_int_equal(choose(&s0, &cur, &in).side, RT_LEGACY);
        assert_int_equal(choose(&s100, &cur, &in).side, RT_NEW);
        /* 1 bp: exactly the draws with rand % 10000 == 0 */
        assert_int_equal(choose(&s1, &cur, &in).side,
                         draws[i] % 10000 == 0 ? RT_NEW : RT_LEGACY);
    }
}

/* Raising the weight only moves keys legacy -> new; lowering it only moves
 * them new -> legacy. Every key is checked at every step. */
static void
test_sticky_monotonic(void **state)
{
    static const uint32_t seq[] = { 0, 1, 100, 500, 1000, 2500, 5000, 5001,
                                    7500, 9999, 10000, 9999, 7500, 5000, 4999,
                                    2500, 1000, 100, 1, 0, 3333, 6666 };
    static unsigned char side[NKEYS];
    struct rt_conf conf;
    struct rt_snapshot s;
    struct rt_cursor cur = { { 0, 0 } };
    struct rt_input in = { 0 };
    char key[32];
    size_t si;
    unsigned i;

    conf_make(&conf, RT_STICKY_HEADER, "X-User", "web", false);
    for (si = 0; si < sizeof(seq) / sizeof(seq[0]); si++) {
        uint64_t nnew = 0, moved = 0;

        rt_snapshot_init(&s, &conf, seq[si], 1, 1);
        for (i = 0; i < NKEYS; i++) {
            unsigned char now;

            in.sticky_key = key;
            in.sticky_len = user_key(key, sizeof(key), i);
            now = (unsigned char)choose(&s, &cur, &in).side;
            if (si > 0 && now != side[i]) {
                moved++;
                if (seq[si] > seq[si - 1] && now != RT_NEW)
                    fail_msg("key %u left new when the weight rose %u -> %u",
                             i, (unsigned)seq[si - 1], (unsigned)seq[si]);
                if (seq[si] < seq[si - 1] && now != RT_LEGACY)
                    fail_msg("key %u left legacy when the weight fell %u -> %u",
                             i, (unsigned)seq[si - 1], (unsigned)seq[si]);
            }
            side[i] = now;
            nnew += now == RT_NEW;
        }
        assert_share(seq[si], NKEYS, nnew);
        /* Something must actually move on a large step. */
        if (si > 0 && (seq[si] > seq[si - 1] ? seq[si] - seq[si - 1]
                                               : seq[si - 1] - seq[si]) >= 1000)
            assert_true(moved > 0);
    }
}

/* ---- cookie mode -------------------------------------------------------- */

static void
test_cookie_bucket_honoured(void **state)
{
    struct rt_conf conf;
    struct rt_snapshot s;
    struct rt_cursor cur = { { 0, 0 } };
    struct rt_input in = { 0 };
    struct rt_choice c;
    uint32_t b;

    conf_make(&conf, RT_STICKY_COOKIE, "cutover_bucket", "web", false);
    rt_snapshot_init(&s, &conf, 2500, 1, 1);
    for (b = 0; b < RT_BP_MAX; b++) {
        in.has_cookie_bucket = true;
        in.cookie_bucket = b;
        in.rand = 9999 - b;       /* the draw must be ignored */
        in.sticky_key = "ignored";
        in.sticky_len = 7;
        c = choose(&s, &cur, &in);
        assert_false(c.issue_cookie);
        assert_true(c.has_bucket);
        assert_int_equal(c.bucket, b);
        assert_int_equal(c.reason, RT_R_STICKY);
        assert_int_equal(c.side, b < 2500 ? RT_NEW : RT_LEGACY);
    }
}

static void
test_cookie_issued_when_absent(void **state)
{
    static const uint64_t draws[] = { 0, 2499, 2500, 9999, 10000, 12499,
                                      0x123456789abcdefULL, UINT64_MAX };
    struct rt_conf conf;
    struct rt_snapshot s;
    struct rt_cursor cur = { { 0, 0 } };
    struct rt_input in = { 0 };
    struct rt_choice c;
    size_t i;

    conf_make(&conf, RT_STICKY_COOKIE, "cutover_bucket", "web", false);
    rt_snapshot_init(&s, &conf, 2500, 1, 1);
    for (i = 0; i < sizeof(draws) / sizeof(draws[0]); i++) {
        in.has_cookie_bucket = false;
        in.cookie_bucket = 7;     /* not valid: must be ignored */
        in.rand = draws[i];
        c = choose(&s, &cur, &in);
        assert_true(c.issue_cookie);
        assert_true(c.has_bucket);
        assert_int_equal(c.bucket, draws[i] % 10000);
        assert_int_equal(c.reason, RT_R_STICKY);
        assert_int_equal(c.side, c.bucket < 2500 ? RT_NEW : RT_LEGACY);

        /* An out-of-range bucket claimed valid is treated as absent. */
        in.has_cookie_bucket = true;
        in.cookie_bucket = RT_BP_MAX + 3;
        c = choose(&s, &cur, &in);
        assert_true(c.issue_cookie);
        assert_int_equal(c.bucket, draws[i] % 10000);
    }
}

/* ---- override ----------------------------------------------------------- */

static void
test_override_both_ways(void **state)
{
    static const struct {
        const char *val;
        enum rt_side side;
    } t[] = {
        { "new", RT_NEW }, { "NEW", RT_NEW }, { "nEw", RT_NEW },
        { "legacy", RT_LEGACY }, { "LEGACY", RT_LEGACY }, { "Legacy", RT_LEGACY },
    };
    struct rt_conf conf;
    struct rt_snapshot s0, s100;
    struct rt_cursor cur = { { 0, 0 } };
    struct rt_input in = { 0 };
    struct rt_choice c;
    size_t i;

    conf_make(&conf, RT_STICKY_COOKIE, "cutover_bucket", "web", true);
    rt_snapshot_init(&s0, &conf, 0, 2, 2);
    rt_snapshot_init(&s100, &conf, 10000, 2, 2);
    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        in.override_val = t[i].val;
        in.override_len = strlen(t[i].val);
        in.client = addr(i % 2 ? "127.0.0.1" : "::1");   /* allow_from: loopback */
        in.has_cookie_bucket = true;
        in.cookie_bucket = t[i].side == RT_NEW ? 9999 : 0;   /* points away */
        c = choose(&s0, &cur, &in);
        assert_int_equal(c.side, t[i].side);
        assert_int_equal(c.reason, RT_R_OVERRIDE);
        assert_false(c.fallback);
        assert_false(c.issue_cookie);
        assert_false(c.override_refused);
        c = choose(&s100, &cur, &in);
        assert_int_equal(c.side, t[i].side);
        assert_int_equal(c.reason, RT_R_OVERRIDE);
    }
}

/* An override naming a side that is down is ignored: the usual rules and
 * their fallback apply. */
static void
test_override_ignored_when_side_down(void **state)
{
    struct rt_conf conf;
    struct rt_snapshot s;
    struct rt_cursor cur = { { 0, 0 } };
    struct rt_input in = { 0 };
    struct rt_choice c;

    conf_make(&conf, RT_STICKY_NONE, NULL, "web", true);
    in.client = addr("127.0.0.1");

    /* new down, weight 0: override new -> legacy by weight, no fallback */
    rt_snapshot_init(&s, &conf, 0, 1, 1);
    s.usable[RT_NEW] = 0;
    in.override_val = "new";
    in.override_len = 3;
    c = choose(&s, &cur, &in);
    assert_int_equal(c.side, RT_LEGACY);
    assert_int_equal(c.reason, RT_R_WEIGHT);
    assert_false(c.fallback);

    /* legacy down, weight 0: override legacy -> weight picks legacy, which
     * is down, so it falls back to new */
    rt_snapshot_init(&s, &conf, 0, 1, 1);
    s.usable[RT_LEGACY] = 0;
    in.override_val = "legacy";
    in.override_len = 6;
    c = choose(&s, &cur, &in);
    assert_int_equal(c.side, RT_NEW);
    assert_int_equal(c.reason, RT_R_FALLBACK);
    assert_true(c.fallback);
}

/* Unknown values, and any value when the service has no override header,
 * give exactly the decision made without the header. */
static void
test_override_unknown_ignored(void **state)
{
    static const struct {
        const char *val;
        size_t len;
    } t[] = {
        { "", 0 }, { "ne", 2 }, { "news", 4 }, { "new ", 4 }, { " new", 4 },
        { "legac", 5 }, { "legacyy", 7 }, { "canary", 6 }, { "1", 1 },
        { "new\0", 4 }, { "n\xc3\xa9w", 4 }, { "newlegacy", 9 },
    };
    struct rt_conf with, without;
    struct rt_snapshot s, s_off;
    struct rt_cursor cur = { { 0, 0 } };
    struct rt_input in = { 0 }, plain = { 0 };
    struct rt_choice a, b;
    size_t i;
    unsigned r;

    conf_make(&with, RT_STICKY_NONE, NULL, "web", true);
    conf_make(&without, RT_STICKY_NONE, NULL, "web", false);
    in.client = addr("127.0.0.1");     /* honoured: ignored for the value alone */
    rt_snapshot_init(&s, &with, 5000, 1, 1);
    rt_snapshot_init(&s_off, &without, 5000, 1, 1);
    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        for (r = 0; r < 10000; r += 97) {
            in.override_val = t[i].val;
            in.override_len = t[i].len;
            in.rand = r;
            plain.rand = r;
            a = choose(&s, &cur, &in);
            b = choose(&s, &cur, &plain);
            assert_int_equal(a.side, b.side);
            assert_int_equal(a.reason, RT_R_WEIGHT);
            assert_int_equal(b.reason, RT_R_WEIGHT);
            assert_false(a.override_refused);
        }
    }
    /* No override configured: even "new" is ignored. */
    in.override_val = "new";
    in.override_len = 3;
    in.rand = 9999;
    a = choose(&s_off, &cur, &in);
    assert_int_equal(a.side, RT_LEGACY);
    assert_int_equal(a.reason, RT_R_WEIGHT);
}

/* ---- sticky key absent --------------------------------------------------- */

static void
test_header_without_key_draws_at_random(void **state)
{
    struct rt_conf conf;
    struct rt_snapshot s;
    struct rt_cursor cur = { { 0, 0 } };
    struct rt_input in = { 0 };
    struct rt_choice c;
    uint64_t r;

    conf_make(&conf, RT_STICKY_HEADER, "X-User", "web", false);
    rt_snapshot_init(&s, &conf, 3000, 1, 1);
    for (r = 0; r < 20000; r += 7) {
        in.sticky_key = NULL;
        in.rand = r;
        c = choose(&s, &cur, &in);
        assert_false(c.has_bucket);
        assert_false(c.issue_cookie);
        assert_int_equal(c.reason, RT_R_WEIGHT);
        assert_int_equal(c.side, r % 10000 < 3000 ? RT_NEW : RT_LEGACY);
    }

    /* An empty value is still a key (NULL means none): it is hashed. */
    in.sticky_key = "";
    in.sticky_len = 0;
    c = choose(&s, &cur, &in);
    assert_true(c.has_bucket);
    assert_int_equal(c.reason, RT_R_STICKY);
    assert_int_equal(c.bucket, rt_bucket("", 0, conf.seed));
}

/* ---- fallback ----------------------------------------------------------- */

static void
test_fallback_when_side_down(void **state)
{
    struct rt_conf conf;
    struct rt_snapshot s;
    struct rt_cursor cur = { { 0, 0 } };
    struct rt_input in = { 0 };
    struct rt_choice c;
    char key[32];
    unsigned i;

    /* new down (every server unusable), weight 100 %: all to legacy */
    conf_make(&conf, RT_STICKY_HEADER, "X-User", "web", false);
    rt_snapshot_init(&s, &conf, 10000, 3, 3);
    s.usable[RT_NEW] = 0;
    for (i = 0; i < 1000; i++) {
        in.sticky_key = key;
        in.sticky_len = user_key(key, sizeof(key), i);
        c = choose(&s, &cur, &in);
        assert_int_equal(c.side, RT_LEGACY);
        assert_true(c.fallback);
        assert_int_equal(c.reason, RT_R_FALLBACK);
        assert_true(c.has_bucket);   /* the bucket is still reported */
        assert_int_equal(c.bucket, rt_bucket(key, in.sticky_len, conf.seed));
        assert_true(c.server < 3);
    }

    /* legacy has no servers at all, weight 0: all to new */
    conf_make(&conf, RT_STICKY_NONE, NULL, "web", false);
    rt_snapshot_init(&s, &conf, 0, 0, 2);
    for (i = 0; i < 1000; i++) {
        in.sticky_key = NULL;
        in.rand = i * 13u;
        c = choose(&s, &cur, &in);
        assert_int_equal(c.side, RT_NEW);
        assert_true(c.fallback);
        assert_int_equal(c.reason, RT_R_FALLBACK);
    }

    /* A side that is up is chosen normally: no fallback flag. */
    rt_snapshot_init(&s, &conf, 5000, 1, 1);
    s.usable[RT_LEGACY] = 0;
    in.rand = 1;
    c = choose(&s, &cur, &in);
    assert_int_equal(c.side, RT_NEW);
    assert_false(c.fallback);
    assert_int_equal(c.reason, RT_R_WEIGHT);
}

static void
test_both_down(void **state)
{
    struct rt_conf conf;
    struct rt_snapshot s;
    struct rt_cursor cur = { { 5, 6 } };
    struct rt_input in = { 0 };
    struct rt_choice c;

    conf_make(&conf, RT_STICKY_COOKIE, "cutover_bucket", "web", true);
    rt_snapshot_init(&s, &conf, 5000, 8, 8);
    s.usable[RT_LEGACY] = 0;
    s.usable[RT_NEW] = 0;
    in.override_val = "new";
    in.override_len = 3;
    in.client = addr("127.0.0.1");
    c = choose(&s, &cur, &in);
    assert_int_equal(c.side, RT_NONE);
    assert_int_equal(c.reason, RT_R_NONE);
    assert_false(c.fallback);
    /* the cursor is untouched */
    assert_int_equal(cur.next[RT_LEGACY], 5);
    assert_int_equal(cur.next[RT_NEW], 6);

    rt_snapshot_init(&s, &conf, 5000, 0, 0);
    c = choose(&s, &cur, &in);
    assert_int_equal(c.side, RT_NONE);
    assert_int_equal(c.reason, RT_R_NONE);
}

/* The share new gets after fallback, against what choose() does. */
static void
test_effective_share(void **state)
{
    struct rt_conf conf;
    struct rt_snapshot s;
    struct rt_cursor cur = { { 0, 0 } };
    struct rt_input in = { 0 };
    unsigned i, to_new;

    conf_make(&conf, RT_STICKY_NONE, NULL, "web", false);
    rt_snapshot_init(&s, &conf, 5000, 2, 2);
    assert_int_equal(rt_effective_bp(&s), 5000);
    s.usable[RT_NEW] = 0;              /* new down: all to legacy */
    assert_int_equal(rt_effective_bp(&s), 0);
    for (i = 0, to_new = 0; i < 1000; i++) {
        in.rand = i * 7919u;
        to_new += choose(&s, &cur, &in).side == RT_NEW;
    }
    assert_int_equal(to_new, 0);
    rt_snapshot_init(&s, &conf, 5000, 2, 2);
    s.usable[RT_LEGACY] = 0;           /* legacy down: all to new */
    assert_int_equal(rt_effective_bp(&s), 10000);
    s.usable[RT_NEW] = 0;              /* both: none */
    assert_int_equal(rt_effective_bp(&s), -1);
    rt_snapshot_init(&s, &conf, 0, 2, 0);   /* no new server at weight 0 */
    assert_int_equal(rt_effective_bp(&s), 0);
}

/* ---- round robin -------------------------------------------------------- */

static void
test_round_robin_even(void **state)
{
    struct rt_conf conf;
    struct rt_snapshot s;
    struct rt_cursor cur = { { 0, 0 } };
    struct rt_input in = { 0 };
    struct rt_choice c;
    unsigned count[4] = { 0 }, i;

    conf_make(&conf, RT_STICKY_NONE, NULL, "web", false);
    rt_snapshot_init(&s, &conf, 0, 4, 3);
    for (i = 0; i < 4000; i++) {
        c = choose(&s, &cur, &in);
        assert_int_equal(c.side, RT_LEGACY);
        assert_int_equal(c.server, i % 4);
        count[c.server]++;
    }
    for (i = 0; i < 4; i++)
        assert_int_equal(count[i], 1000);
    /* the other side's cursor did not move */
    assert_int_equal(cur.next[RT_NEW], 0);
}

static void
test_round_robin_skips_unusable(void **state)
{
    static const unsigned want[] = { 0, 2, 4, 0, 2, 4 };
    struct rt_conf conf;
    struct rt_snapshot s;
    struct rt_cursor cur = { { 0, 0 } };
    struct rt_input in = { 0 };
    struct rt_choice c;
    unsigned i;

    conf_make(&conf, RT_STICKY_NONE, NULL, "web", false);
    rt_snapshot_init(&s, &conf, 10000, 1, 5);
    s.usable[RT_NEW] = 0x15;   /* servers 0, 2, 4 */
    for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        c = choose(&s, &cur, &in);
        assert_int_equal(c.side, RT_NEW);
        assert_int_equal(c.server, want[i]);
    }

    /* only the last server up; a stale cursor past the end wraps */
    s.usable[RT_NEW] = 0x10;
    cur.next[RT_NEW] = 17;
    for (i = 0; i < 5; i++)
        assert_int_equal(choose(&s, &cur, &in).server, 4);

    /* 64 servers: bit 63 is reachable and the cycle is exact */
    rt_snapshot_init(&s, &conf, 10000, 1, 64);
    cur.next[RT_NEW] = 60;
    for (i = 0; i < 128; i++)
        assert_int_equal(choose(&s, &cur, &in).server, (60 + i) % 64);
    s.usable[RT_NEW] = ((uint64_t)1 << 63) | 1;
    for (i = 0; i < 6; i++)
        assert_int_equal(choose(&s, &cur, &in).server, i % 2 ? 0 : 63);
}

/* ---- rt_bucket_parse ---------------------------------------------------- */

static void
test_bucket_parse(void **state)
{
    static const struct {
        const char *val;
        size_t len;
        int rc;
        uint32_t bucket;
    } t[] = {
        { "0", 1, 0, 0 },         { "1", 1, 0, 1 },
        { "42", 2, 0, 42 },       { "999", 3, 0, 999 },
        { "1000", 4, 0, 1000 },   { "9999", 4, 0, 9999 },
        { "12345", 2, 0, 12 },    /* only <len> bytes count */
        { "", 0, -1, 0 },         { "10000", 5, -1, 0 },
        { "99999", 5, -1, 0 },    { "00", 2, -1, 0 },
        { "01", 2, -1, 0 },       { "0009", 4, -1, 0 },
        { "-1", 2, -1, 0 },       { "+1", 2, -1, 0 },
        { " 1", 2, -1, 0 },       { "1 ", 2, -1, 0 },
        { "1a", 2, -1, 0 },       { "0x10", 4, -1, 0 },
        { "1.5", 3, -1, 0 },      { "1\0", 2, -1, 0 },
        { "abc", 3, -1, 0 },      { "4294967296", 10, -1, 0 },
    };
    size_t i;
    uint32_t b;

    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        b = 77777;
        if (rt_bucket_parse(t[i].val, t[i].len, &b) != t[i].rc)
            fail_msg("rt_bucket_parse(\"%.*s\", %zu): wrong return",
                     (int)t[i].len, t[i].val, t[i].len);
        if (t[i].rc == 0)
            assert_int_equal(b, t[i].bucket);
        else
            assert_int_equal(b, 77777);   /* untouched on failure */
    }
    assert_int_equal(rt_bucket_parse(NULL, 0, &b), -1);

    /* every bucket round-trips through its decimal text */
    for (i = 0; i < RT_BP_MAX; i++) {
        char buf[8];
        int n = snprintf(buf, sizeof(buf), "%zu", i);

        assert_int_equal(rt_bucket_parse(buf, (size_t)n, &b), 0);
        assert_int_equal(b, i);
    }
}

/* ---- reference model ---------------------------------------------------- */

/* The rules written the slow, obvious way, independently of router.c. */
struct model_out {
    int side;
    unsigned server;
    int reason;
    bool fallback, issue_cookie, has_bucket, override_refused;
    uint32_t bucket;
};

static bool
model_up(const struct rt_snapshot *s, int side, unsigned i)
{
    return i < s->nservers[side] && i < 64 && ((s->usable[side] >> i) & 1);
}

/* Is <a> in <c>? Bit by bit, the slow way. */
static bool
model_in_range(const struct cidr *c, const struct cidr_addr *a)
{
    unsigned i;

    if (a == NULL || a->family != c->net.family)
        return false;
    for (i = 0; i < c->bits; i++) {
        unsigned byte = i / 8, bit = 7 - i % 8;

        if (((a->bytes[byte] >> bit) & 1) != ((c->net.bytes[byte] >> bit) & 1))
            return false;
    }
    return true;
}

/* The side the override names, -1 for none; <*refused> when the value is
 * there but neither the source nor a key lets it count. */
static int
model_override(const struct rt_conf *conf, const struct rt_input *in, bool *refused)
{
    char v[96], *semi, *side, *param;
    const char *key = NULL;
    bool allowed = false;
    size_t n, i;
    int named = -1;

    *refused = false;
    if (!conf->has_override || in->override_val == NULL)
        return -1;
    if (in->override_len >= sizeof(v) || memchr(in->override_val, '\0', in->override_len))
        n = 0, v[0] = '\1', v[1] = '\0';     /* no side can be named by it */
    else
        n = in->override_len, memcpy(v, in->override_val, n), v[n] = '\0';
    side = v;
    semi = strchr(v, ';');
    param = NULL;
    if (semi != NULL) {
        *semi = '\0';
        param = semi + 1;
        /* spaces or tabs before the ';' belong to no side name */
        for (i = strlen(side); i > 0 && (side[i - 1] == ' ' || side[i - 1] == '\t'); i--)
            side[i - 1] = '\0';
        while (*param == ' ' || *param == '\t')
            param++;
    }
    if (strcasecmp(side, "new") == 0)
        named = RT_NEW;
    else if (strcasecmp(side, "legacy") == 0)
        named = RT_LEGACY;
    if (param != NULL) {
        if (strncasecmp(param, "key=", 4) != 0 || param[4] == '\0' ||
            strpbrk(param + 4, " \t;,\"\\") != NULL)
            named = -1;
        else
            key = param + 4;
        for (i = 4; key != NULL && key[i - 4] != '\0'; i++)
            if ((unsigned char)key[i - 4] < 0x21 || (unsigned char)key[i - 4] > 0x7e)
                named = -1, key = NULL;
    }
    if (named < 0)
        key = NULL;
    for (i = 0; i < conf->nallow; i++)
        allowed = allowed || model_in_range(&conf->allow_from[i], in->client);
    if (!allowed && key != NULL && conf->secret_len > 0 && strlen(key) == conf->secret_len &&
        memcmp(key, conf->secret, conf->secret_len) == 0)
        allowed = true;
    if (!allowed) {
        *refused = true;
        return -1;
    }
    return named;
}

static void
model_choose(const struct rt_snapshot *s, unsigned next[2],
             const struct rt_input *in, struct model_out *o)
{
    const struct rt_conf *conf = s->conf;
    bool up[2] = { false, false };
    unsigned i, n;
    int ov, side;

    memset(o, 0, sizeof(*o));
    ov = model_override(conf, in, &o->override_refused);
    for (side = 0; side < 2; side++)
        for (i = 0; i < 64; i++)
            up[side] = up[side] || model_up(s, side, i);
    if (!up[0] && !up[1]) {
        o->side = RT_NONE;
        o->reason = RT_R_NONE;
        return;
    }
    if (ov >= 0 && up[ov]) {
        side = ov;
        o->reason = RT_R_OVERRIDE;
    } else {
        if (conf->sticky_by == RT_STICKY_COOKIE) {
            o->has_bucket = true;
            if (in->has_cookie_bucket && in->cookie_bucket <= 9999) {
                o->bucket = in->cookie_bucket;
            } else {
                o->bucket = (uint32_t)(in->rand % 10000);
                o->issue_cookie = true;
            }
        } else if (conf->sticky_by != RT_STICKY_NONE && in->sticky_key != NULL) {
            o->has_bucket = true;
            o->bucket = rt_bucket(in->sticky_key, in->sticky_len, conf->seed);
        }
        if (o->has_bucket) {
            o->reason = RT_R_STICKY;
            side = o->bucket < s->weight_bp ? RT_NEW : RT_LEGACY;
        } else {
            o->reason = RT_R_WEIGHT;
            side = in->rand % 10000 < s->weight_bp ? RT_NEW : RT_LEGACY;
        }
        if (!up[side]) {
            side = 1 - side;
            o->fallback = true;
            o->reason = RT_R_FALLBACK;
        }
    }
    o->side = side;
    /* first usable index >= cursor, else the lowest usable index */
    n = s->nservers[side];
    o->server = n;
    for (i = next[side] % n; i < n && o->server == n; i++)
        if (model_up(s, side, i))
            o->server = i;
    for (i = 0; i < n && o->server == n; i++)
        if (model_up(s, side, i))
            o->server = i;
    next[side] = (o->server + 1) % n;
}

static void
test_reference_model(void **state)
{
    static const struct {
        const char *val;
        size_t len;
    } ov[] = {
        { NULL, 0 }, { "new", 3 }, { "NEW", 3 }, { "legacy", 6 },
        { "LeGaCy", 6 }, { "ne", 2 }, { "newx", 4 }, { "legacyy", 7 },
        { "", 0 }, { "canary", 6 }, { "new\0", 4 }, { "Legacy!", 7 },
        { "new; key=s3cret-s3cret-s3cret", 29 }, { "legacy;KEY=s3cret-s3cret-s3cret", 31 },
        { "new ;\tkey=s3cret-s3cret-s3cret", 30 }, { "new; key=s3cret-s3cret-s3creT", 29 },
        { "new; key=s3cret-s3cret-s3cre", 28 }, { "new; key=s3cret-s3cret-s3cret!", 30 },
        { "new; key=s3cret-s3cret-s3cret ", 30 }, { "new; key=", 9 }, { "new;", 4 },
        { "new; kex=s3cret-s3cret-s3cret", 29 }, { "canary; key=s3cret-s3cret-s3cret", 32 },
        { "new; key=s3cret s3cret-s3cret", 29 }, { " new; key=s3cret-s3cret-s3cret", 30 },
    };
    static const char *const clients[] = {
        NULL, "127.0.0.1", "127.0.0.2", "127.255.255.255", "128.0.0.1", "10.1.2.3",
        "::1", "::2", "::ffff:127.0.0.1", "::ffff:10.9.9.9", "2001:db8::1", "0.0.0.0",
    };
    static const enum rt_sticky_by modes[] = {
        RT_STICKY_NONE, RT_STICKY_COOKIE, RT_STICKY_HEADER, RT_STICKY_CLIENT_IP,
    };
    struct prng p = { 0xc0ffee };
    struct rt_conf conf;
    struct rt_snapshot s;
    struct rt_cursor cur;
    struct rt_input in;
    struct rt_choice c;
    struct model_out m;
    unsigned next[2];
    char key[32];
    unsigned iter, side;

    for (iter = 0; iter < 200000; iter++) {
        uint64_t r = prng_next(&p);
        uint32_t w;

        conf_make(&conf, modes[r & 3], "k", (r >> 2) & 1 ? "web" : "api",
                  (r >> 3) & 1);
        switch ((r >> 50) & 3) {      /* allow_from: loopback, 10/8, none, ::/0 */
        case 0: break;
        case 1: conf.nallow = 1; conf.allow_from[0] = conf_range("10.0.0.0/8"); break;
        case 2: conf.nallow = 0; break;
        default: conf.nallow = 1; conf.allow_from[0] = conf_range("::/0"); break;
        }
        if ((r >> 52) & 1) {
            memcpy(conf.secret, "s3cret-s3cret-s3cret", 20);
            conf.secret_len = 20;
        }
        switch ((r >> 4) & 7) {
        case 0: w = 0; break;
        case 1: w = 10000; break;
        case 2: w = 1; break;
        case 3: w = 9999; break;
        default: w = (uint32_t)(prng_next(&p) % 10001); break;
        }
        rt_snapshot_init(&s, &conf, w, 0, 0);
        for (side = 0; side < 2; side++) {
            uint64_t u = prng_next(&p);

            s.nservers[side] = (u & 7) == 7 ? 64 : (unsigned)(u % 6);
            switch ((u >> 8) & 3) {
            case 0: s.usable[side] = ~(uint64_t)0; break;
            case 1: s.usable[side] = 0; break;
            default: s.usable[side] = prng_next(&p); break;
            }
            cur.next[side] = (unsigned)((u >> 16) % 70);
            next[side] = cur.next[side];
        }

        memset(&in, 0, sizeof(in));
        r = prng_next(&p);
        if (r & 1) {
            in.sticky_key = key;
            in.sticky_len = user_key(key, sizeof(key), (unsigned)((r >> 1) % 5000));
        }
        in.has_cookie_bucket = (r >> 16) & 1;
        in.cookie_bucket = (r >> 17) & 1 ? (uint32_t)((r >> 20) % 10000)
                                         : (uint32_t)((r >> 20) % 20000);
        in.override_val = ov[(r >> 40) % (sizeof(ov) / sizeof(ov[0]))].val;
        in.override_len = ov[(r >> 40) % (sizeof(ov) / sizeof(ov[0]))].len;
        in.client = addr(clients[(r >> 48) % (sizeof(clients) / sizeof(clients[0]))]);
        in.rand = prng_next(&p);

        c = choose(&s, &cur, &in);
        model_choose(&s, next, &in, &m);
        if ((int)c.side != m.side || c.reason != (enum rt_reason)m.reason
            || c.override_refused != m.override_refused
            || c.fallback != m.fallback || c.issue_cookie != m.issue_cookie
            || c.has_bucket != m.has_bucket
            || (m.has_bucket && c.bucket != m.bucket)
            || (m.side != RT_NONE && c.server != m.server)
            || cur.next[0] != next[0] || cur.next[1] != next[1])
            fail_msg("iteration %u: router side %d server %u reason %d fb %d "
                     "cookie %d bucket %d/%u cursor %u,%u refused %d; model side %d "
                     "server %u reason %d fb %d cookie %d bucket %d/%u "
                     "cursor %u,%u refused %d", iter, (int)c.side, c.server,
                     (int)c.reason, c.fallback, c.issue_cookie, c.has_bucket, c.bucket,
                     cur.next[0], cur.next[1], c.override_refused, m.side, m.server,
                     m.reason, m.fallback, m.issue_cookie, m.has_bucket, m.bucket,
                     next[0], next[1], m.override_refused);
        if (c.side != RT_NONE)
            assert_true(model_up(&s, c.side, c.server));
    }
}

/* ---- rt_conf_equal ---------------------------------------------------- */

/* Every field of struct rt_conf, in declaration order, as
 * X(how, field, base value, other value); <how> is V (assigned), S (a
 * string, copied) or M (a member path and assignment applied to the field).
 *
 * Why a field cannot be forgotten: the base config is a positional
 * initialiser made of these lines (RT_FIELD_INIT), so a field added to the
 * struct without a line here leaves an initialiser missing, which -Wextra
 * (-Wmissing-field-initializers) under -Werror refuses to build. And every
 * line is a case of test_conf_equal_every_field: the field set to its other
 * value must make rt_conf_equal() answer false. So a new field needs a line,
 * and its line fails until rt_conf_equal() compares it. */
#define RT_ALLOW_BASE { { { 4, { 10 } }, 8 } }   /* 10.0.0.0/8 */
#define RT_CONF_FIELDS(X)                                          \
    X(V, weight_bp, 2500, 2600)                                    \
    X(V, sticky_by, RT_STICKY_COOKIE, RT_STICKY_HEADER)            \
    X(S, sticky_name, "cv", "cw")                                  \
    X(V, seed, 7, 8)                                               \
    X(V, has_override, true, false)                                \
    X(S, override_header, "X-Side", "X-Sidf")                      \
    X(V, nallow, 1, 2)                                             \
    X(M, allow_from, RT_ALLOW_BASE, [0].bits = 9)                  \
    X(V, secret_len, 16, 15)                                       \
    X(M, secret, "0123456789abcdef", [15] = 'F')

#define RT_SET_V(c, f, v) ((c)->f = (v))
#define RT_SET_S(c, f, v) snprintf((c)->f, sizeof((c)->f), "%s", (v))
#define RT_SET_M(c, f, v) ((c)->f v)
#define RT_FIELD_INIT(how, f, base, other) base,
#define RT_FIELD_MUT(how, f, base, other)                          \
    static void rt_mut_##f(struct rt_conf *c) { RT_SET_##how(c, f, other); }
#define RT_FIELD_CASE(how, f, base, other) { #f, rt_mut_##f },

RT_CONF_FIELDS(RT_FIELD_MUT)

static void
test_conf_equal_every_field(void **state)
{
    static const struct rt_conf base = { RT_CONF_FIELDS(RT_FIELD_INIT) };
    static const struct {
        const char *field;
        void (*mutate)(struct rt_conf *c);
    } cases[] = { RT_CONF_FIELDS(RT_FIELD_CASE) };
    struct rt_conf c;
    size_t i;

    (void)state;
    c = base;
    assert_true(rt_conf_equal(&base, &c));
    /* strings compare by content: what follows the terminator does not count */
    memset(c.sticky_name + 3, 'x', sizeof(c.sticky_name) - 4);
    memset(c.override_header + 7, 'x', sizeof(c.override_header) - 8);
    /* ranges past nallow and secret bytes past secret_len do not count */
    c.allow_from[1].bits = 17;
    c.allow_from[1].net.family = 6;
    memset(c.secret + 16, 'y', sizeof(c.secret) - 16);
    assert_true(rt_conf_equal(&base, &c));
    assert_true(rt_conf_equal(&c, &base));
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        c = base;
        cases[i].mutate(&c);
        if (rt_conf_equal(&base, &c) || rt_conf_equal(&c, &base))
            fail_msg("rt_conf_equal() does not see a change of %s", cases[i].field);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_bucket_stable),
        cmocka_unit_test(test_bucket_range_and_spread),
        cmocka_unit_test(test_snapshot_init),
        cmocka_unit_test(test_usable_ignores_stray_bits),
        cmocka_unit_test(test_share_sticky_header),
        cmocka_unit_test(test_share_sticky_client_ip),
        cmocka_unit_test(test_share_random),
        cmocka_unit_test(test_weight_edges_exact),
        cmocka_unit_test(test_sticky_monotonic),
        cmocka_unit_test(test_cookie_bucket_honoured),
        cmocka_unit_test(test_cookie_issued_when_absent),
        cmocka_unit_test(test_override_both_ways),
        cmocka_unit_test(test_override_ignored_when_side_down),
        cmocka_unit_test(test_override_unknown_ignored),
        cmocka_unit_test(test_header_without_key_draws_at_random),
        cmocka_unit_test(test_fallback_when_side_down),
        cmocka_unit_test(test_effective_share),
        cmocka_unit_test(test_both_down),
        cmocka_unit_test(test_round_robin_even),
        cmocka_unit_test(test_round_robin_skips_unusable),
        cmocka_unit_test(test_bucket_parse),
        cmocka_unit_test(test_reference_model),
        cmocka_unit_test(test_conf_equal_every_field),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
