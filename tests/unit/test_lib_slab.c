/*
 * Tests for lib/slab.c: objects come zeroed, aligned and apart (each is
 * written whole and read back intact); a block holds per_block objects and
 * the next one maps a second block; a block whose last object goes is kept
 * as the one spare (a count moving across a block's edge maps nothing
 * more), a second empty one is unmapped; slots given back are used again
 * before new ones are carved; a block freed from full takes objects again;
 * destroy unmaps every block, full ones included, and does nothing to a
 * zeroed slab that was never set up.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "lib/slab.h"

#define OBJ 200                  /* rounded up to 208 */

static void
fill(void *p, unsigned char v)
{
    memset(p, v, OBJ);
}

static void
check(const void *p, unsigned char v)
{
    const unsigned char *b = p;

    for (size_t i = 0; i < OBJ; i++)
        assert_int_equal(b[i], v);
}

static void
test_alloc_free(void **state)
{
    struct slab s;
    void *o[700];
    unsigned per, i;

    (void)state;
    slab_init(&s, OBJ);
    assert_int_equal(s.size, 208);
    per = s.per_block;
    assert_true(per >= 300 && per * 208 <= SLAB_BLOCK);
    assert_int_equal(s.blocks, 0);

    /* one block for per_block objects, zeroed, 16-byte aligned, apart */
    for (i = 0; i < per; i++) {
        o[i] = slab_alloc(&s);
        assert_non_null(o[i]);
        assert_int_equal((uintptr_t)o[i] % 16, 0);
        check(o[i], 0);
        fill(o[i], (unsigned char)i);
    }
    assert_int_equal(s.blocks, 1);
    for (i = 0; i < per; i++)
        check(o[i], (unsigned char)i);

    /* the next one maps a second block */
    o[per] = slab_alloc(&s);
    assert_int_equal(s.blocks, 2);
    assert_int_equal(s.live, per + 1);

    /* a slot of the full block given back is the next one handed out,
     * zeroed again; nothing is mapped */
    slab_free(&s, o[per]);             /* the second block empty: kept as the spare */
    assert_int_equal(s.blocks, 2);
    slab_free(&s, o[5]);
    assert_ptr_equal(slab_alloc(&s), o[5]);
    check(o[5], 0);
    fill(o[5], 5);
    assert_int_equal(s.blocks, 2);

    /* across the block's edge and back: the spare serves, nothing mapped */
    for (i = 0; i < 3; i++) {
        o[per] = slab_alloc(&s);
        assert_non_null(o[per]);
        check(o[per], 0);
        assert_int_equal(s.blocks, 2);
        slab_free(&s, o[per]);
        assert_int_equal(s.blocks, 2);
    }

    /* fill a second and third block; emptying the first two keeps one
     * spare and unmaps the other */
    for (i = per; i < 3 * per && i < 700; i++)
        o[i] = slab_alloc(&s);
    assert_true(i == 700 || i == 3 * per);
    assert_int_equal(s.blocks, 3);
    for (i = 0; i < per; i++) {
        check(o[i], (unsigned char)i);
        slab_free(&s, o[i]);
    }
    assert_int_equal(s.blocks, 3);     /* the first is the spare now */
    for (i = per; i < 2 * per; i++)
        slab_free(&s, o[i]);
    assert_int_equal(s.blocks, 2);     /* one spare only */
    assert_int_equal(s.live, (i == 2 * per ? 700 : 3 * per) - 2 * per);

    /* destroy unmaps the rest, full or not */
    slab_destroy(&s);
    assert_int_equal(s.blocks, 0);
    assert_int_equal(s.live, 0);
}

static void
test_empty(void **state)
{
    struct slab s;

    (void)state;
    memset(&s, 0, sizeof(s));
    slab_destroy(&s);                  /* zeroed, never set up: nothing to do */
    slab_init(&s, 1);
    assert_int_equal(s.size, 16);
    slab_free(&s, NULL);
    slab_destroy(&s);                  /* nothing mapped: nothing to do */
    assert_int_equal(s.blocks, 0);
    assert_non_null(slab_alloc(&s));   /* usable after destroy */
    slab_destroy(&s);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alloc_free),
        cmocka_unit_test(test_empty),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
