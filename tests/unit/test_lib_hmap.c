/*
 * Tests for lib/hmap.c: the index from byte strings to values finds what
 * was put and nothing else, walks every entry of a key that was put more
 * than once, keeps working across its growth, and takes empty keys and
 * keys that differ in one byte.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/hmap.h"

#define N 20000

static void
test_put_get(void **state)
{
    static char names[N][16];
    struct hmap m;
    unsigned i, v;

    (void)state;
    hmap_init(&m, 4);                  /* far too small: it grows */
    for (i = 0; i < N; i++) {
        snprintf(names[i], sizeof(names[i]), "svc%u", i);
        hmap_put_str(&m, names[i], i);
    }
    assert_int_equal(m.n, N);
    assert_true(m.cap >= 2 * N);
    for (i = 0; i < N; i++) {
        char k[16];

        snprintf(k, sizeof(k), "svc%u", i);  /* another buffer: compared by bytes */
        assert_true(hmap_get_str(&m, k, &v));
        assert_int_equal(v, i);
    }
    assert_false(hmap_get_str(&m, "svc", &v));
    assert_false(hmap_get_str(&m, "svc20000", &v));
    assert_false(hmap_get_str(&m, "", &v));
    hmap_free(&m);
    assert_null(m.slots);
}

/* A key put several times: every value, once each; binary keys. */
static void
test_duplicates(void **state)
{
    static const unsigned char a[] = { 0, 1, 2, 3 }, b[] = { 0, 1, 2, 4 };
    struct hmap m;
    unsigned pos = 0, v, seen = 0, i;

    (void)state;
    hmap_init(&m, 0);
    for (i = 0; i < 40; i++)
        hmap_put(&m, i % 2 ? a : b, sizeof(a), i);
    hmap_put(&m, "", 0, 99);
    while (hmap_next(&m, a, sizeof(a), &pos, &v)) {
        assert_true(v % 2 == 1);
        assert_false(seen & (1ull << (v / 2)));
        seen |= 1u << (v / 2);
    }
    assert_int_equal(seen, (1u << 20) - 1);
    pos = 0;
    assert_true(hmap_next(&m, "", 0, &pos, &v));
    assert_int_equal(v, 99);
    assert_false(hmap_next(&m, "", 0, &pos, &v));
    pos = 0;
    assert_false(hmap_next(&m, a, 3, &pos, &v));
    hmap_free(&m);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_get),
        cmocka_unit_test(test_duplicates),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
