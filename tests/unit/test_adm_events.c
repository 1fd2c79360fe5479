/*
 * Tests for the rule that drops a dashboard stream that falls behind
 * (adm_events_is_behind(), admin/events.c): small frames keep the fixed
 * ADM_EVENTS_OUT_MAX; a frame bigger than half of it never drops a reader
 * that keeps up (it holds at most the rest of the last frame, even when
 * that frame was a little bigger than the new one), which is what dropped
 * every stream at its second frame past 256 KiB; a reader still holding a
 * whole frame and more than an eighth of another is dropped, at any frame
 * size, so that what a stream holds stays bounded by about two frames.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>

#include "admin/events.h"

static void
test_small_frames_keep_the_fixed_limit(void **state)
{
    size_t len;

    (void)state;
    for (len = 1; len <= ADM_EVENTS_OUT_MAX / 2 - ADM_EVENTS_OUT_MAX / 16; len += 1000) {
        assert_false(adm_events_is_behind(0, len));
        assert_false(adm_events_is_behind(ADM_EVENTS_OUT_MAX - len, len));
        assert_true(adm_events_is_behind(ADM_EVENTS_OUT_MAX - len + 1, len));
    }
}

static void
test_a_reader_that_keeps_up_is_kept(void **state)
{
    size_t len;

    (void)state;
    /* 256 KiB .. 16 MB frames (1000 services: 1.5 MB) */
    for (len = ADM_EVENTS_OUT_MAX; len <= 16u << 20; len += 4093) {
        /* nothing or part of the last frame unsent */
        assert_false(adm_events_is_behind(0, len));
        assert_false(adm_events_is_behind(len / 2, len));
        /* the whole last frame, and it was 10 % bigger than this one */
        assert_false(adm_events_is_behind(len + len / 10, len));
    }
}

static void
test_a_reader_a_frame_behind_is_dropped(void **state)
{
    size_t len, worst = 0;

    (void)state;
    for (len = 1; len <= 16u << 20; len += 4093) {
        size_t room = ADM_EVENTS_OUT_MAX, unsent;

        if (2 * len + len / 8 > room)
            room = 2 * len + len / 8;
        /* exactly at the limit kept, one byte more dropped */
        unsent = room - len;
        assert_false(adm_events_is_behind(unsent, len));
        assert_true(adm_events_is_behind(unsent + 1, len));
        /* past 256 KiB frames: a frame and an eighth, never more */
        if (2 * len > ADM_EVENTS_OUT_MAX)
            assert_true(adm_events_is_behind(len + len / 8 + 1, len));
        /* what a kept stream may hold with the new frame, in frames */
        if (len >= ADM_EVENTS_OUT_MAX && room / len > worst)
            worst = room / len;
    }
    assert_int_equal(worst, 2);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_frames_keep_the_fixed_limit),
        cmocka_unit_test(test_a_reader_that_keeps_up_is_kept),
        cmocka_unit_test(test_a_reader_a_frame_behind_is_dropped),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
