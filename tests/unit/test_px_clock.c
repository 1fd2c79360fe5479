/*
 * Tests for the clock of px_event_base_new()'s loops (proxy/server.c): a
 * timer ends no earlier than its timeout after the moment it was armed, by
 * CLOCK_MONOTONIC, wherever in a loop pass it is armed. libevent's default
 * would break that twice: its clock on Linux is CLOCK_MONOTONIC_COARSE (up
 * to a scheduler tick, 4 ms on many kernels, behind the real time), and it
 * reads the clock once per pass, so a timer armed after work done in the
 * same pass is measured from the pass's start. Either ends a deadline early
 * when something else wakes the loop just before it, as a busy proxy's
 * loop is woken all the time; here an event every 0.5 ms does.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <time.h>

#include <event2/event.h>

#include "proxy/server.h"

#define TIMEOUT_US 20000         /* each timer's timeout */
#define ROUNDS 40

struct clk {
    struct event_base *base;
    struct event *timer, *waker;
    uint64_t armed_us;           /* when the pending timer was armed */
    int64_t min_late_us;         /* earliest firing seen, from armed + TIMEOUT_US */
    unsigned fired, work_us, wakes;
    uint64_t rng;
};

/* CLOCK_MONOTONIC in microseconds, cut as libevent cuts it (a timeval), so
 * that a reading before event_add() is never later than libevent's. */
static uint64_t
now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static unsigned
draw(struct clk *k, unsigned below)
{
    k->rng = k->rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (unsigned)(k->rng >> 33) % below;
}

/* Some work of the pass (0 .. work_us), then the timer armed. */
static void
arm(struct clk *k)
{
    struct timeval tv = { 0, TIMEOUT_US };
    uint64_t until = now_us() + (k->work_us > 0 ? draw(k, k->work_us) : 0);

    while (now_us() < until)
        ;
    k->armed_us = now_us();
    assert_int_equal(evtimer_add(k->timer, &tv), 0);
}

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct clk *k = arg;
    int64_t late = (int64_t)(now_us() - k->armed_us) - TIMEOUT_US;

    if (k->fired == 0 || late < k->min_late_us)
        k->min_late_us = late;
    if (++k->fired == ROUNDS)
        event_base_loopbreak(k->base);
    k->wakes = 0;
}

/* Every 0.5 ms; arms the timer when none is pending, at a drawn wake, so
 * that arming falls at any phase of the clock's ticks. */
static void
on_wake(evutil_socket_t fd, short what, void *arg)
{
    struct clk *k = arg;

    if (!evtimer_pending(k->timer, NULL) && k->fired < ROUNDS && ++k->wakes > draw(k, 8))
        arm(k);
}

static void
run(unsigned work_us, int64_t *min_late)
{
    struct clk k = { .work_us = work_us, .rng = 42 };
    struct timeval half = { 0, 500 };

    k.base = px_event_base_new();
    assert_non_null(k.base);
    k.timer = evtimer_new(k.base, on_timer, &k);
    k.waker = event_new(k.base, -1, EV_PERSIST, on_wake, &k);
    assert_non_null(k.timer);
    assert_non_null(k.waker);
    assert_int_equal(event_add(k.waker, &half), 0);
    assert_int_equal(event_base_dispatch(k.base), 0);
    assert_int_equal(k.fired, ROUNDS);
    *min_late = k.min_late_us;
    event_free(k.waker);
    event_free(k.timer);
    event_base_free(k.base);
}

/* Armed at the start of a pass, at any phase of the clock's ticks: a
 * coarse clock would end some of them up to a tick early. */
static void
test_never_early_at_any_phase(void **state)
{
    int64_t min_late;

    run(0, &min_late);
    fprintf(stderr, "armed at a pass's start: the earliest end %+lld us from the timeout\n",
            (long long)min_late);
    assert_true(min_late >= 0);
}

/* Armed after up to 3 ms of work in the same pass: a clock read once per
 * pass would end them by that much early. */
static void
test_never_early_late_in_a_pass(void **state)
{
    int64_t min_late;

    run(3000, &min_late);
    fprintf(stderr, "armed late in a pass: the earliest end %+lld us from the timeout\n",
            (long long)min_late);
    assert_true(min_late >= 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_never_early_at_any_phase),
        cmocka_unit_test(test_never_early_late_in_a_pass),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
