/*
 * tests/unit/test_px_cookie.c: proxy/cookie.c, the authenticated sticky
 * cookie. The key file's grammar and its creation (0600, never replacing a
 * key, refused when others may read it); the MAC tables against OpenSSL's
 * one-shot HMAC() of the documented message; sign and verify with the
 * current and the previous key, and every kind of bad cookie (tampered in
 * any character, truncated, extended, unsigned old format, another key,
 * another service's seed); a generation's set reusing the tables of the
 * last one when keys and seed are the same; and verification doing no
 * allocation (OpenSSL's allocator hooked and counted: not timed).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "proxy/conf.h"
#include "proxy/cookie.h"
#include "router/router.h"

#define K1 "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
#define K2 "f0e1d2c3b4a5968778695a4b3c2d1e0ff0e1d2c3b4a5968778695a4b3c2d1e0f"

static long n_alloc;               /* OpenSSL's allocations, counted */

static void *
count_malloc(size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    __atomic_add_fetch(&n_alloc, 1, __ATOMIC_RELAXED);
    return malloc(n);
}

static void *
count_realloc(void *p, size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    __atomic_add_fetch(&n_alloc, 1, __ATOMIC_RELAXED);
    return realloc(p, n);
}

static void
count_free(void *p, const char *file, int line)
{
    (void)file;
    (void)line;
    free(p);
}

static void
keys_from(const char *text, struct px_cookie_keys *k)
{
    char err[512];

    if (px_cookie_keys_parse(text, strlen(text), "KEYS", k, err, sizeof(err)) != 0)
        fail_msg("%s", err);
}

static char *
make_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char *dir;

    if (base == NULL || base[0] == '\0')
        base = "/tmp";
    dir = malloc(strlen(base) + 32);
    assert_non_null(dir);
    sprintf(dir, "%s/test_px_cookie.XXXXXX", base);
    assert_non_null(mkdtemp(dir));
    return dir;
}

/* ---- the key file ------------------------------------------------------ */

static void
test_keys_parse(void **state)
{
    static const struct {
        const char *text, *err;
    } bad[] = {
        { "", "KEYS: no \"current\" key" },
        { "# only a comment\n\n", "KEYS: no \"current\" key" },
        { "previous " K1 "\n", "KEYS: no \"current\" key" },
        { "current " K1 "\ncurrent " K2 "\n", "KEYS:2: a second \"current\" key" },
        { "current " K1 "\nprevious " K2 "\nprevious " K2 "\n",
          "KEYS:3: a second \"previous\" key" },
        { "current\n", "KEYS:1: the key must be 64 hexadecimal digits, alone after the word" },
        { "current " K1 "00\n", "KEYS:1: the key must be 64 hexadecimal digits, alone "
          "after the word" },
        { "current 0g0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n",
          "KEYS:1: the key must be 64 hexadecimal digits, alone after the word" },
        { "current " K1 " extra\n", "KEYS:1: the key must be 64 hexadecimal digits, alone "
          "after the word" },
        { "\n\nkey " K1 "\n", "KEYS:3: expected \"current HEX\" or \"previous HEX\"" },
        { "Current " K1 "\n", "KEYS:1: expected \"current HEX\" or \"previous HEX\"" },
    };
    struct px_cookie_keys k;
    char err[512];
    size_t i;

    (void)state;
    keys_from("current " K1 "\n", &k);
    assert_int_equal(k.n, 1);
    assert_int_equal(k.key[0][0], 0x00);
    assert_int_equal(k.key[0][31], 0x1f);
    keys_from("# keys\n\n  current\t" K1 "  \r\nprevious " K2, &k);
    assert_int_equal(k.n, 2);
    assert_int_equal(k.key[1][0], 0xf0);
    assert_int_equal(k.key[1][31], 0x0f);
    keys_from("previous " K2 "\ncurrent " K1 "\n", &k);   /* any order */
    assert_int_equal(k.n, 2);
    assert_int_equal(k.key[0][1], 0x01);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        if (px_cookie_keys_parse(bad[i].text, strlen(bad[i].text), "KEYS", &k, err,
                                 sizeof(err)) == 0)
            fail_msg("accepted: %s", bad[i].text);
        assert_string_equal(err, bad[i].err);
        /* a message never quotes a key */
        assert_null(strstr(err, "0102030405"));
    }
}

static void
test_keys_load_and_create(void **state)
{
    char *dir = make_tmpdir(), file[512], err[512];
    struct px_cookie_keys k1, k2;
    struct stat st;
    bool created;
    FILE *f;

    (void)state;
    snprintf(file, sizeof(file), "%s/sticky.key", dir);
    /* missing, not created */
    assert_int_equal(px_cookie_keys_load(file, false, &k1, &created, err, sizeof(err)), -1);
    assert_int_equal(errno, ENOENT);
    assert_false(created);
    assert_int_not_equal(access(file, F_OK), 0);
    /* created: 0600, one current key, and read back the same */
    assert_int_equal(px_cookie_keys_load(file, true, &k1, &created, err, sizeof(err)), 0);
    assert_true(created);
    assert_int_equal(stat(file, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(k1.n, 1);
    assert_int_equal(px_cookie_keys_load(file, true, &k2, &created, err, sizeof(err)), 0);
    assert_false(created);
    assert_memory_equal(k1.key[0], k2.key[0], PX_COOKIE_KEY_LEN);
    /* no temporary file left behind */
    {
        char tmp[600];

        snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", file, (long)getpid());
        assert_int_not_equal(access(tmp, F_OK), 0);
    }
    /* a key file others may read is refused, and not replaced */
    assert_int_equal(chmod(file, 0640), 0);
    assert_int_equal(px_cookie_keys_load(file, true, &k2, &created, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "mode 0640: group and others must have no access"));
    assert_int_equal(chmod(file, 0600), 0);
    /* a broken one is an error with its line, and errno is not ENOENT */
    f = fopen(file, "w");
    assert_non_null(f);
    fputs("current " K1 "\nprevious nothex\n", f);
    fclose(f);
    assert_int_equal(px_cookie_keys_load(file, true, &k2, &created, err, sizeof(err)), -1);
    assert_int_not_equal(errno, ENOENT);
    assert_non_null(strstr(err, "sticky.key:2: the key must be 64 hexadecimal digits"));
    /* a second key file name in another directory is another key */
    unlink(file);
    assert_int_equal(px_cookie_keys_load(file, true, &k2, &created, err, sizeof(err)), 0);
    assert_true(created);
    assert_memory_not_equal(k1.key[0], k2.key[0], PX_COOKIE_KEY_LEN);
    unlink(file);
    rmdir(dir);
    free(dir);
}

/* ---- MACs and the cookie's text ------------------------------------------ */

/* The table says what OpenSSL's HMAC() says of the documented message. */
static void
test_mac_definition(void **state)
{
    struct px_cookie_keys k;
    struct px_cookie_tab *t;
    unsigned char msg[64], md[EVP_MAX_MD_SIZE], mac[PX_COOKIE_MAC_LEN];
    char val[PX_COOKIE_VALUE_MAX], expect[PX_COOKIE_VALUE_MAX];
    unsigned int mdlen;
    uint64_t seed = rt_seed_from_salt("web", 3);
    uint32_t b, got;
    size_t l;

    (void)state;
    keys_from("current " K1 "\n", &k);
    t = px_cookie_tab_new(&k, seed);
    assert_non_null(t);
    for (b = 0; b < RT_BP_MAX; b += 1 + b / 7) {
        /* "cutover-sticky-v1" || seed (8, big-endian) || bucket (2, big-endian) */
        memcpy(msg, "cutover-sticky-v1", 17);
        for (l = 0; l < 8; l++)
            msg[17 + l] = (unsigned char)(seed >> (56 - 8 * l));
        msg[25] = (unsigned char)(b >> 8);
        msg[26] = (unsigned char)b;
        assert_non_null(HMAC(EVP_sha256(), k.key[0], 32, msg, 27, md, &mdlen));
        assert_int_equal(px_cookie_mac(k.key[0], seed, b, mac), 0);
        assert_memory_equal(mac, md, PX_COOKIE_MAC_LEN);
        /* its text: the bucket, '.', base64url of 12 bytes */
        l = px_cookie_sign(t, b, val);
        assert_int_equal(l, strlen(val));
        {
            static const char a[] =
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            int n = snprintf(expect, sizeof(expect), "%u.", b);
            unsigned g;

            for (g = 0; g < 4; g++) {
                uint32_t v = (uint32_t)md[3 * g] << 16 | (uint32_t)md[3 * g + 1] << 8 |
                             md[3 * g + 2];

                expect[n++] = a[v >> 18];
                expect[n++] = a[(v >> 12) & 63];
                expect[n++] = a[(v >> 6) & 63];
                expect[n++] = a[v & 63];
            }
            expect[n] = '\0';
        }
        assert_string_equal(val, expect);
        assert_int_equal(px_cookie_verify(t, val, l, &got), PX_COOKIE_OK);
        assert_int_equal(got, b);
    }
    /* the bucket out of range is never signed */
    assert_int_equal(px_cookie_sign(t, RT_BP_MAX, val), 0);
    assert_string_equal(val, "");
    assert_int_equal(px_cookie_sign(NULL, 5, val), 0);
    px_cookie_tab_put(t);
}

static void
test_verify_rejects(void **state)
{
    static const char b64[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    struct px_cookie_keys k, k2;
    struct px_cookie_tab *t, *other_key, *other_seed;
    char val[PX_COOKIE_VALUE_MAX], bad[64];
    uint32_t got = 4242;
    size_t l, i, j;

    (void)state;
    keys_from("current " K1 "\n", &k);
    keys_from("current " K2 "\n", &k2);
    t = px_cookie_tab_new(&k, rt_seed_from_salt("web", 3));
    other_key = px_cookie_tab_new(&k2, rt_seed_from_salt("web", 3));
    other_seed = px_cookie_tab_new(&k, rt_seed_from_salt("api", 3));
    assert_non_null(t);
    assert_non_null(other_key);
    assert_non_null(other_seed);

    l = px_cookie_sign(t, 2720, val);
    assert_int_equal(px_cookie_verify(t, val, l, &got), PX_COOKIE_OK);
    assert_int_equal(got, 2720);
    /* another key, another service's seed */
    got = 4242;
    assert_int_equal(px_cookie_verify(other_key, val, l, &got), PX_COOKIE_BAD);
    assert_int_equal(px_cookie_verify(other_seed, val, l, &got), PX_COOKIE_BAD);
    assert_int_equal(px_cookie_verify(NULL, val, l, &got), PX_COOKIE_BAD);
    assert_int_equal(got, 4242);                  /* untouched when bad */
    /* every character changed to every other allowed one */
    for (i = 0; i < l; i++) {
        for (j = 0; j < 64; j++) {
            memcpy(bad, val, l + 1);
            if (i < 4 || val[i] == '.') {
                if (j >= 10)
                    break;
                bad[i] = (char)('0' + j);
            } else {
                bad[i] = b64[j];
            }
            if (bad[i] == val[i])
                continue;
            if (px_cookie_verify(t, bad, l, &got) != PX_COOKIE_BAD)
                fail_msg("%s (from %s) verified", bad, val);
        }
    }
    /* truncated, extended, empty */
    for (i = 0; i < l; i++)
        assert_int_equal(px_cookie_verify(t, val, i, &got), PX_COOKIE_BAD);
    snprintf(bad, sizeof(bad), "%sA", val);
    assert_int_equal(px_cookie_verify(t, bad, l + 1, &got), PX_COOKIE_BAD);
    snprintf(bad, sizeof(bad), "%s.", val);
    assert_int_equal(px_cookie_verify(t, bad, l + 1, &got), PX_COOKIE_BAD);
    /* the unsigned format of earlier versions, a bare bucket */
    assert_int_equal(px_cookie_verify(t, "2720", 4, &got), PX_COOKIE_BAD);
    assert_int_equal(px_cookie_verify(t, "0", 1, &got), PX_COOKIE_BAD);
    /* the same MAC with another spelling of the bucket, or a stray byte */
    snprintf(bad, sizeof(bad), "0%s", val);
    assert_int_equal(px_cookie_verify(t, bad, l + 1, &got), PX_COOKIE_BAD);
    snprintf(bad, sizeof(bad), "+%s", val);
    assert_int_equal(px_cookie_verify(t, bad, l + 1, &got), PX_COOKIE_BAD);
    memcpy(bad, val, l + 1);
    bad[l - 1] = '=';
    assert_int_equal(px_cookie_verify(t, bad, l, &got), PX_COOKIE_BAD);
    memcpy(bad, val, l + 1);
    bad[4] = ':';
    assert_int_equal(px_cookie_verify(t, bad, l, &got), PX_COOKIE_BAD);
    /* bucket 0 with any other bucket's MAC */
    l = px_cookie_sign(t, 1, val);
    val[0] = '0';
    assert_int_equal(px_cookie_verify(t, val, l, &got), PX_COOKIE_BAD);
    /* a forged bucket 0 with a made-up MAC */
    assert_int_equal(px_cookie_verify(t, "0.AAAAAAAAAAAAAAAA", 18, &got), PX_COOKIE_BAD);
    px_cookie_tab_put(t);
    px_cookie_tab_put(other_key);
    px_cookie_tab_put(other_seed);
}

/* Rotation: the previous key still verifies (to be signed again), the key
 * before it does not. */
static void
test_rotation(void **state)
{
    struct px_cookie_keys old1, rot, rot2;
    struct px_cookie_tab *t1, *t2, *t3;
    char v1[PX_COOKIE_VALUE_MAX], v2[PX_COOKIE_VALUE_MAX];
    uint64_t seed = rt_seed_from_salt("web-2024", 8);
    uint32_t got;
    size_t l1, l2;

    (void)state;
    keys_from("current " K1 "\n", &old1);
    keys_from("current " K2 "\nprevious " K1 "\n", &rot);
    keys_from("current 3333333333333333333333333333333333333333333333333333333333333333\n"
              "previous " K2 "\n", &rot2);
    t1 = px_cookie_tab_new(&old1, seed);
    t2 = px_cookie_tab_new(&rot, seed);
    t3 = px_cookie_tab_new(&rot2, seed);
    l1 = px_cookie_sign(t1, 77, v1);
    assert_int_equal(px_cookie_verify(t2, v1, l1, &got), PX_COOKIE_PREVIOUS);
    assert_int_equal(got, 77);
    l2 = px_cookie_sign(t2, 77, v2);             /* signed again: with the new key */
    assert_string_not_equal(v1, v2);
    assert_int_equal(px_cookie_verify(t2, v2, l2, &got), PX_COOKIE_OK);
    assert_int_equal(px_cookie_verify(t1, v2, l2, &got), PX_COOKIE_BAD);
    /* one more rotation: the re-signed cookie is still good, the old one not */
    assert_int_equal(px_cookie_verify(t3, v2, l2, &got), PX_COOKIE_PREVIOUS);
    assert_int_equal(px_cookie_verify(t3, v1, l1, &got), PX_COOKIE_BAD);
    px_cookie_tab_put(t1);
    px_cookie_tab_put(t2);
    px_cookie_tab_put(t3);
}

/* Verification and signing do not allocate: OpenSSL's allocator is hooked
 * (main) and nothing else is called. */
static void
test_no_allocation(void **state)
{
    struct px_cookie_keys k;
    struct px_cookie_tab *t;
    char val[64][PX_COOKIE_VALUE_MAX];
    size_t len[64];
    uint32_t got, sum = 0;
    long before;
    unsigned i;

    (void)state;
    keys_from("current " K1 "\nprevious " K2 "\n", &k);
    t = px_cookie_tab_new(&k, 99);
    assert_non_null(t);
    assert_true(n_alloc > 0);                 /* the hook is live: the table allocated */
    for (i = 0; i < 64; i++)
        len[i] = px_cookie_sign(t, i * 151 % RT_BP_MAX, val[i]);
    before = n_alloc;
    for (i = 0; i < 100000; i++) {
        if (px_cookie_verify(t, val[i % 64], len[i % 64], &got) == PX_COOKIE_OK)
            sum += got;
        val[7][10] ^= 1;                      /* a bad one in between */
        (void)px_cookie_verify(t, val[7], len[7], &got);
        val[7][10] ^= 1;
        px_cookie_sign(t, i % RT_BP_MAX, val[63]);
        len[63] = strlen(val[63]);
    }
    assert_int_equal(n_alloc, before);
    assert_true(sum > 0);
    px_cookie_tab_put(t);
}

/* ---- the set of a generation --------------------------------------------- */

static struct px_conf *
conf_with(unsigned n, const char *const *salts)
{
    struct px_conf *c = calloc(1, sizeof(*c));
    unsigned i;

    assert_non_null(c);
    c->nservices = n;
    c->services = calloc(n, sizeof(*c->services));
    assert_non_null(c->services);
    for (i = 0; i < n; i++) {
        c->services[i].name = (char *)"svc";
        if (salts[i] != NULL) {
            c->services[i].route.sticky_by = RT_STICKY_COOKIE;
            c->services[i].route.seed = rt_seed_from_salt(salts[i], strlen(salts[i]));
        }
    }
    return c;
}

static void
conf_free_shallow(struct px_conf *c)
{
    free(c->services);
    free(c);
}

static void
test_set_build(void **state)
{
    static const char *const none[] = { NULL, NULL };
    static const char *const three[] = { "a", NULL, "a", "b" };
    char *dir = make_tmpdir(), file[512], err[512], v[PX_COOKIE_VALUE_MAX];
    struct px_conf *c0 = conf_with(2, none), *c1 = conf_with(4, three);
    struct px_cookie_set *s0 = NULL, *s1 = NULL, *s2 = NULL, *s3 = NULL;
    uint32_t got;
    size_t l;
    FILE *f;

    (void)state;
    snprintf(file, sizeof(file), "%s/sticky.key", dir);
    /* no cookie service: nothing built, no file */
    assert_int_equal(px_cookie_set_build(c0, file, true, NULL, &s0, err, sizeof(err)), 0);
    assert_null(s0);
    assert_int_not_equal(access(file, F_OK), 0);
    assert_null(px_cookie_set_tab(NULL, 0));
    /* cookie services: the file is created; services of one seed share a table */
    assert_int_equal(px_cookie_set_build(c1, file, true, NULL, &s1, err, sizeof(err)), 0);
    assert_non_null(s1);
    assert_int_equal(access(file, F_OK), 0);
    assert_non_null(px_cookie_set_tab(s1, 0));
    assert_null(px_cookie_set_tab(s1, 1));
    assert_ptr_equal(px_cookie_set_tab(s1, 0), px_cookie_set_tab(s1, 2));
    assert_ptr_not_equal(px_cookie_set_tab(s1, 0), px_cookie_set_tab(s1, 3));
    assert_null(px_cookie_set_tab(s1, 4));
    /* the next generation with the same keys reuses the tables */
    assert_int_equal(px_cookie_set_build(c1, file, true, s1, &s2, err, sizeof(err)), 0);
    assert_ptr_equal(px_cookie_set_tab(s1, 0), px_cookie_set_tab(s2, 0));
    assert_ptr_equal(px_cookie_set_tab(s1, 3), px_cookie_set_tab(s2, 3));
    l = px_cookie_sign(px_cookie_set_tab(s2, 0), 5, v);
    px_cookie_set_free(s1);                     /* the old generation goes first */
    s1 = NULL;
    assert_int_equal(px_cookie_verify(px_cookie_set_tab(s2, 0), v, l, &got), PX_COOKIE_OK);
    /* a rotated key file: new tables, the old cookie verifies as previous */
    {
        char *text = NULL, line[200];
        size_t n;

        f = fopen(file, "r");
        assert_non_null(f);
        while (fgets(line, sizeof(line), f) != NULL)
            if (strncmp(line, "current ", 8) == 0)
                text = strdup(line + 8);
        fclose(f);
        assert_non_null(text);
        n = strlen(text);
        f = fopen(file, "w");
        assert_non_null(f);
        fprintf(f, "current " K2 "\nprevious %.*s\n", (int)n - 1, text);
        fclose(f);
        free(text);
    }
    assert_int_equal(px_cookie_set_build(c1, file, true, s2, &s3, err, sizeof(err)), 0);
    assert_ptr_not_equal(px_cookie_set_tab(s2, 0), px_cookie_set_tab(s3, 0));
    assert_int_equal(px_cookie_verify(px_cookie_set_tab(s3, 0), v, l, &got),
                     PX_COOKIE_PREVIOUS);
    /* a broken file fails the build and builds nothing */
    f = fopen(file, "w");
    assert_non_null(f);
    fputs("nothing\n", f);
    fclose(f);
    s0 = (struct px_cookie_set *)1;
    assert_int_equal(px_cookie_set_build(c1, file, true, s3, &s0, err, sizeof(err)), -1);
    assert_null(s0);
    assert_non_null(strstr(err, "sticky.key:1: expected \"current HEX\""));
    px_cookie_set_free(s2);
    px_cookie_set_free(s3);
    px_cookie_set_free(NULL);
    conf_free_shallow(c0);
    conf_free_shallow(c1);
    unlink(file);
    rmdir(dir);
    free(dir);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys_parse),
        cmocka_unit_test(test_keys_load_and_create),
        cmocka_unit_test(test_mac_definition),
        cmocka_unit_test(test_verify_rejects),
        cmocka_unit_test(test_rotation),
        cmocka_unit_test(test_no_allocation),
        cmocka_unit_test(test_set_build),
    };

    /* before OpenSSL allocates anything: afterwards it refuses */
    if (!CRYPTO_set_mem_functions(count_malloc, count_realloc, count_free)) {
        fprintf(stderr, "CRYPTO_set_mem_functions refused\n");
        return 1;
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
