/*
 * tests/unit/test_hl_plan.c: the progressive plan of health/plan.c. Time and
 * request counts are passed in, so every rule is checked tick by tick: a
 * step advances only after its bake time AND min_requests, pause keeps the
 * remaining bake, abort and breach stop it for good, the last step completes
 * it; and a reference model agrees over random schedules.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "health/plan.h"

#define TICK_MS 100

/* steps 10, 50, 100 %, bake 1 s */
static struct hl_plan_conf
conf3(void)
{
    struct hl_plan_conf c = { .nsteps = 3, .steps_bp = { 1000, 5000, 10000 }, .bake_s = 1 };

    return c;
}

/* A clock and a request counter the tests move by hand. */
struct sim {
    struct hl_plan p;
    struct hl_plan_conf conf;
    uint64_t now_ms, reqs;
    unsigned min_requests;
};

static void
sim_init(struct sim *s, unsigned min_requests)
{
    memset(s, 0, sizeof(*s));
    hl_plan_init(&s->p);
    s->conf = conf3();
    s->now_ms = 1000000;                 /* not 0: nothing may assume a zero clock */
    s->min_requests = min_requests;
}

/* Moves time by <ms> and the counter by <reqs>, then ticks. */
static enum hl_plan_event
sim_tick(struct sim *s, uint64_t ms, uint64_t reqs)
{
    struct hl_plan_input in;

    s->now_ms += ms;
    s->reqs += reqs;
    in = (struct hl_plan_input){ .now_ms = s->now_ms, .new_requests = s->reqs,
                                 .min_requests = s->min_requests };
    return hl_plan_tick(&s->p, &s->conf, &in);
}

/* Ticks every TICK_MS with <reqs_per_tick> until an event; returns the
 * number of ticks it took (-1 after <max> ticks). */
static int
ticks_to_event(struct sim *s, uint64_t reqs_per_tick, int max, enum hl_plan_event *ev)
{
    int i;

    for (i = 1; i <= max; i++) {
        *ev = sim_tick(s, TICK_MS, reqs_per_tick);
        if (*ev != HL_PLAN_EV_NONE)
            return i;
    }
    return -1;
}

/* A gate that does not hold for one tick anywhere in the bake starts the
 * bake over: the step advances only a whole bake after the last held tick. */
static void
test_gate_hold_restarts_bake(void **state)
{
    struct hl_plan_input in;
    enum hl_plan_event ev;
    struct sim s;
    int i, n;

    (void)state;
    sim_init(&s, 1);
    assert_int_equal(hl_plan_start(&s.p, &s.conf), 0);
    sim_tick(&s, TICK_MS, 1);                   /* anchors */
    for (i = 0; i < 9; i++)
        assert_int_equal(sim_tick(&s, TICK_MS, 1), HL_PLAN_EV_NONE);
    assert_int_equal(s.p.baked_ms, 900);
    /* held at 900 ms of 1000: the step keeps nothing */
    s.now_ms += TICK_MS;
    s.reqs += 1;
    in = (struct hl_plan_input){ .now_ms = s.now_ms, .new_requests = s.reqs,
                                 .min_requests = 1, .held = true };
    assert_int_equal(hl_plan_tick(&s.p, &s.conf, &in), HL_PLAN_EV_NONE);
    assert_int_equal(s.p.baked_ms, 0);
    assert_int_equal(s.p.step_requests, 0);
    assert_int_equal(s.p.step, 0);
    /* a whole bake again, from the held tick on */
    n = ticks_to_event(&s, 1, 100, &ev);
    assert_int_equal(n, 10);
    assert_int_equal(ev, HL_PLAN_EV_ADVANCE);
    assert_int_equal(s.p.step, 1);
    /* held on the very first tick of a run (no anchor yet): nothing counts */
    assert_int_equal(hl_plan_pause(&s.p), 0);
    assert_int_equal(hl_plan_resume(&s.p), 0);
    s.p.baked_ms = 500;
    in.now_ms = s.now_ms += TICK_MS;
    assert_int_equal(hl_plan_tick(&s.p, &s.conf, &in), HL_PLAN_EV_NONE);
    assert_int_equal(s.p.baked_ms, 0);
}

static void
test_names_round_trip(void **state)
{
    int i;

    (void)state;
    for (i = 0; i < HL_PLAN__COUNT; i++)
        assert_int_equal(hl_plan_state_from_name(hl_plan_state_names[i]), i);
    assert_int_equal(hl_plan_state_from_name("promoted"), -1);
    assert_int_equal(hl_plan_state_from_name(NULL), -1);
    assert_string_equal(hl_plan_state_names[HL_PLAN_PROGRESSING], "progressing");
}

static void
test_start(void **state)
{
    struct sim s;
    struct hl_plan_conf none = { .nsteps = 0, .bake_s = 300 };

    (void)state;
    sim_init(&s, 5);
    assert_false(hl_plan_is_running(&s.p));
    assert_int_equal(hl_plan_start(&s.p, &none), -1);    /* no steps */
    assert_int_equal(s.p.state, HL_PLAN_IDLE);

    assert_int_equal(hl_plan_start(&s.p, &s.conf), 0);
    assert_int_equal(s.p.state, HL_PLAN_PROGRESSING);
    assert_int_equal(s.p.step, 0);
    assert_int_equal(hl_plan_weight_bp(&s.p, &s.conf), 1000);
    assert_true(hl_plan_bake_left_ms(&s.p, &s.conf) == 1000);
    assert_true(hl_plan_is_running(&s.p));

    /* already running: refused, unchanged */
    s.p.baked_ms = 300;
    assert_int_equal(hl_plan_start(&s.p, &s.conf), -1);
    assert_true(s.p.baked_ms == 300);
    assert_int_equal(hl_plan_pause(&s.p), 0);
    assert_int_equal(hl_plan_start(&s.p, &s.conf), -1);
    assert_int_equal(s.p.state, HL_PLAN_PAUSED);
}

/* The bake alone is not enough, and min_requests alone is not either. */
static void
test_advance_needs_bake_and_requests(void **state)
{
    struct sim s;
    enum hl_plan_event ev = HL_PLAN_EV_NONE;
    int i;

    (void)state;
    sim_init(&s, 20);
    assert_int_equal(hl_plan_start(&s.p, &s.conf), 0);
    assert_int_equal(sim_tick(&s, 0, 0), HL_PLAN_EV_NONE);    /* anchors */

    /* plenty of requests, bake not over: 9 ticks = 900 ms */
    for (i = 0; i < 9; i++)
        assert_int_equal(sim_tick(&s, TICK_MS, 50), HL_PLAN_EV_NONE);
    assert_true(s.p.baked_ms == 900);
    assert_true(s.p.step_requests == 450);
    assert_true(hl_plan_bake_left_ms(&s.p, &s.conf) == 100);
    /* 1000 ms: advance */
    assert_int_equal(sim_tick(&s, TICK_MS, 0), HL_PLAN_EV_ADVANCE);
    assert_int_equal(s.p.step, 1);
    assert_int_equal(hl_plan_weight_bp(&s.p, &s.conf), 5000);
    assert_true(s.p.baked_ms == 0 && s.p.step_requests == 0);

    /* step 2: bake long over, requests short by one */
    for (i = 0; i < 30; i++)
        assert_int_equal(sim_tick(&s, TICK_MS, i == 0 ? 19 : 0), HL_PLAN_EV_NONE);
    assert_true(s.p.baked_ms == 3000);
    assert_true(s.p.step_requests == 19);
    assert_true(hl_plan_bake_left_ms(&s.p, &s.conf) == 0);
    /* the 20th request: completes (100 % is the last step) */
    assert_int_equal(sim_tick(&s, TICK_MS, 1), HL_PLAN_EV_COMPLETE);
    assert_int_equal(s.p.state, HL_PLAN_COMPLETED);
    assert_int_equal(s.p.step, 2);
    assert_int_equal(hl_plan_weight_bp(&s.p, &s.conf), 10000);
    assert_false(hl_plan_is_running(&s.p));

    /* completed: ticks do nothing */
    assert_int_equal(ticks_to_event(&s, 100, 50, &ev), -1);
    assert_int_equal(s.p.step, 2);
}

/* Requests counted in one step do not carry into the next. */
static void
test_requests_count_per_step(void **state)
{
    struct sim s;
    enum hl_plan_event ev;

    (void)state;
    sim_init(&s, 10);
    assert_int_equal(hl_plan_start(&s.p, &s.conf), 0);
    sim_tick(&s, 0, 1000);                         /* before the anchor: not counted */
    assert_true(s.p.step_requests == 0);
    assert_int_equal(ticks_to_event(&s, 100, 100, &ev), 10);   /* 1 s */
    assert_int_equal(ev, HL_PLAN_EV_ADVANCE);
    /* step 2 starts at 0 although step 1 counted 1000 */
    assert_int_equal(ticks_to_event(&s, 1, 100, &ev), 10);     /* 10 requests at tick 10 */
    assert_int_equal(ev, HL_PLAN_EV_COMPLETE);
}

/* Pause stops the bake clock with the time left; resume continues from it. */
static void
test_pause_keeps_remaining_time(void **state)
{
    struct sim s;
    enum hl_plan_event ev;
    int i;

    (void)state;
    sim_init(&s, 1);
    assert_int_equal(hl_plan_start(&s.p, &s.conf), 0);
    sim_tick(&s, 0, 0);
    for (i = 0; i < 6; i++)
        sim_tick(&s, TICK_MS, 5);
    assert_true(s.p.baked_ms == 600);
    assert_int_equal(hl_plan_pause(&s.p), 0);
    assert_int_equal(s.p.state, HL_PLAN_PAUSED);
    assert_int_equal(hl_plan_pause(&s.p), -1);      /* not progressing */

    /* a long pause: nothing moves, not even the count */
    for (i = 0; i < 100; i++)
        assert_int_equal(sim_tick(&s, TICK_MS, 5), HL_PLAN_EV_NONE);
    assert_true(s.p.baked_ms == 600);
    assert_true(s.p.step_requests == 30);
    assert_true(hl_plan_bake_left_ms(&s.p, &s.conf) == 400);
    assert_int_equal(s.p.step, 0);

    assert_int_equal(hl_plan_resume(&s.p), 0);
    assert_int_equal(hl_plan_resume(&s.p), -1);     /* not paused */
    assert_int_equal(s.p.state, HL_PLAN_PROGRESSING);
    /* first tick after the resume anchors, then 400 ms to go: 4 more ticks
     * (a big jump of the clock during the pause does not count) */
    assert_int_equal(sim_tick(&s, 50000, 0), HL_PLAN_EV_NONE);
    assert_true(s.p.baked_ms == 600);
    assert_int_equal(ticks_to_event(&s, 0, 100, &ev), 4);
    assert_int_equal(ev, HL_PLAN_EV_ADVANCE);
}

static void
test_abort_stops_for_good(void **state)
{
    struct sim s;
    enum hl_plan_event ev;

    (void)state;
    sim_init(&s, 1);
    assert_int_equal(hl_plan_abort(&s.p), -1);      /* idle */
    assert_int_equal(hl_plan_start(&s.p, &s.conf), 0);
    sim_tick(&s, 0, 0);
    assert_int_equal(ticks_to_event(&s, 10, 100, &ev), 10);
    assert_int_equal(hl_plan_abort(&s.p), 0);
    assert_int_equal(s.p.state, HL_PLAN_ABORTED);
    assert_int_equal(s.p.step, 1);                  /* where it stopped */
    assert_false(hl_plan_is_running(&s.p));
    assert_int_equal(hl_plan_abort(&s.p), -1);
    assert_int_equal(hl_plan_pause(&s.p), -1);
    assert_int_equal(hl_plan_resume(&s.p), -1);
    assert_int_equal(ticks_to_event(&s, 10, 100, &ev), -1);
    assert_int_equal(s.p.step, 1);
    assert_true(hl_plan_bake_left_ms(&s.p, &s.conf) == 0);

    /* paused plans can be aborted too, and a stopped plan can start again */
    assert_int_equal(hl_plan_start(&s.p, &s.conf), 0);
    assert_int_equal(s.p.step, 0);
    assert_true(s.p.baked_ms == 0);
    assert_int_equal(hl_plan_pause(&s.p), 0);
    assert_int_equal(hl_plan_abort(&s.p), 0);
    assert_int_equal(s.p.state, HL_PLAN_ABORTED);
}

/* A breach (automatic rollback or freeze) stops a running plan, paused or
 * not; nothing advances after it. */
static void
test_breach_stops(void **state)
{
    struct sim s;
    enum hl_plan_event ev;

    (void)state;
    sim_init(&s, 1);
    assert_int_equal(hl_plan_breach(&s.p), -1);     /* not running: no change */
    assert_int_equal(s.p.state, HL_PLAN_IDLE);
    assert_int_equal(hl_plan_start(&s.p, &s.conf), 0);
    sim_tick(&s, 0, 0);
    sim_tick(&s, 900, 10);                          /* one tick short of the bake */
    assert_int_equal(hl_plan_breach(&s.p), 0);
    assert_int_equal(s.p.state, HL_PLAN_BREACHED);
    assert_int_equal(ticks_to_event(&s, 10, 100, &ev), -1);
    assert_int_equal(s.p.step, 0);
    assert_int_equal(hl_plan_resume(&s.p), -1);

    assert_int_equal(hl_plan_start(&s.p, &s.conf), 0);
    assert_int_equal(hl_plan_pause(&s.p), 0);
    assert_int_equal(hl_plan_breach(&s.p), 0);
    assert_int_equal(s.p.state, HL_PLAN_BREACHED);
    /* completed plans stay completed */
    s.p.state = HL_PLAN_COMPLETED;
    assert_int_equal(hl_plan_breach(&s.p), -1);
    assert_int_equal(s.p.state, HL_PLAN_COMPLETED);
}

/* One step: entering it is the end. The last step need not be 100 %. */
static void
test_one_step_and_last_step_below_100(void **state)
{
    struct hl_plan p;
    struct hl_plan_conf one = { .nsteps = 1, .steps_bp = { 10000 }, .bake_s = 60 };
    struct hl_plan_conf two = { .nsteps = 2, .steps_bp = { 100, 2500 }, .bake_s = 2 };
    struct hl_plan_input in = { .now_ms = 5, .new_requests = 0, .min_requests = 0 };

    (void)state;
    hl_plan_init(&p);
    assert_int_equal(hl_plan_start(&p, &one), 0);
    assert_int_equal(p.state, HL_PLAN_COMPLETED);
    assert_int_equal(hl_plan_weight_bp(&p, &one), 10000);

    hl_plan_init(&p);
    assert_int_equal(hl_plan_start(&p, &two), 0);
    assert_int_equal(hl_plan_tick(&p, &two, &in), HL_PLAN_EV_NONE);
    in.now_ms += 1999;
    assert_int_equal(hl_plan_tick(&p, &two, &in), HL_PLAN_EV_NONE);
    in.now_ms += 1;                                 /* min_requests 0: time alone */
    assert_int_equal(hl_plan_tick(&p, &two, &in), HL_PLAN_EV_COMPLETE);
    assert_int_equal(hl_plan_weight_bp(&p, &two), 2500);
}

/* A clock or counter going backwards re-anchors instead of counting. */
static void
test_backwards_inputs_reanchor(void **state)
{
    struct sim s;

    (void)state;
    sim_init(&s, 5);
    assert_int_equal(hl_plan_start(&s.p, &s.conf), 0);
    sim_tick(&s, 0, 100);
    sim_tick(&s, 500, 3);
    assert_true(s.p.baked_ms == 500 && s.p.step_requests == 3);
    s.reqs = 0;                                     /* counter restarted */
    assert_int_equal(sim_tick(&s, 100, 0), HL_PLAN_EV_NONE);
    assert_true(s.p.baked_ms == 500 && s.p.step_requests == 3);
    s.now_ms -= 10000;                              /* clock stepped back */
    assert_int_equal(sim_tick(&s, 0, 1), HL_PLAN_EV_NONE);
    assert_true(s.p.baked_ms == 500 && s.p.step_requests == 3);
    assert_int_equal(sim_tick(&s, 500, 2), HL_PLAN_EV_ADVANCE);
}

static void
test_restore(void **state)
{
    struct hl_plan p;
    struct hl_plan_conf c = conf3();
    struct hl_plan_input in = { .now_ms = 77, .new_requests = 9, .min_requests = 1 };

    (void)state;
    /* paused at step 1 with 400 ms baked: resumes with 600 ms to go */
    assert_int_equal(hl_plan_restore(&p, &c, HL_PLAN_PAUSED, 1, 400, 3), 0);
    assert_int_equal(p.state, HL_PLAN_PAUSED);
    assert_false(p.has_anchor);
    assert_true(hl_plan_bake_left_ms(&p, &c) == 600);
    assert_int_equal(hl_plan_resume(&p), 0);
    assert_int_equal(hl_plan_tick(&p, &c, &in), HL_PLAN_EV_NONE);
    in.now_ms += 599;
    assert_int_equal(hl_plan_tick(&p, &c, &in), HL_PLAN_EV_NONE);
    in.now_ms += 1;
    assert_int_equal(hl_plan_tick(&p, &c, &in), HL_PLAN_EV_COMPLETE);

    assert_int_equal(hl_plan_restore(&p, &c, HL_PLAN_IDLE, 0, 0, 0), 0);
    assert_int_equal(hl_plan_restore(&p, &c, HL_PLAN_COMPLETED, 2, 0, 0), 0);
    assert_int_equal(hl_plan_restore(&p, &c, HL_PLAN_ABORTED, 1, 0, 0), 0);
    /* cannot be a plan of this config: idle */
    assert_int_equal(hl_plan_restore(&p, &c, HL_PLAN_PROGRESSING, 2, 0, 0), -1);
    assert_int_equal(p.state, HL_PLAN_IDLE);
    assert_int_equal(hl_plan_restore(&p, &c, HL_PLAN_ABORTED, 3, 0, 0), -1);
    assert_int_equal(hl_plan_restore(&p, &c, HL_PLAN__COUNT, 0, 0, 0), -1);
    assert_int_equal(hl_plan_restore(&p, &c, -1, 0, 0, 0), -1);
    c.nsteps = 0;
    assert_int_equal(hl_plan_restore(&p, &c, HL_PLAN_PAUSED, 0, 0, 0), -1);
    assert_int_equal(p.state, HL_PLAN_IDLE);
}

/* xorshift: the test's own deterministic draws */
static uint64_t
draw(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* Reference model over random schedules of ticks, pauses and resumes: a step
 * advances at the first progressing tick at which the progressing time since
 * its first counted tick reaches bake_s and the outcomes counted meanwhile
 * reach min_requests. */
static void
test_matches_reference_model(void **state)
{
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    unsigned run;

    (void)state;
    for (run = 0; run < 2000; run++) {
        struct sim s;
        /* the model */
        unsigned m_step = 0;
        bool m_paused = false, m_anchored = false, m_done = false;
        uint64_t m_baked = 0, m_reqs = 0;
        int t;

        sim_init(&s, (unsigned)(draw(&x) % 30));
        s.conf.bake_s = 1 + (unsigned)(draw(&x) % 3);
        assert_int_equal(hl_plan_start(&s.p, &s.conf), 0);
        for (t = 0; t < 400 && !m_done; t++) {
            uint64_t ms = draw(&x) % 250, reqs = draw(&x) % 4;
            unsigned op = (unsigned)(draw(&x) % 40);
            enum hl_plan_event ev, want = HL_PLAN_EV_NONE;

            if (op == 0) {
                assert_int_equal(hl_plan_pause(&s.p), m_paused ? -1 : 0);
                if (!m_paused)
                    m_anchored = false;
                m_paused = true;
            } else if (op == 1) {
                assert_int_equal(hl_plan_resume(&s.p), m_paused ? 0 : -1);
                if (m_paused)
                    m_anchored = false;
                m_paused = false;
            }
            ev = sim_tick(&s, ms, reqs);
            if (!m_paused) {
                if (!m_anchored) {
                    m_anchored = true;
                } else {
                    m_baked += ms;
                    m_reqs += reqs;
                    if (m_baked >= s.conf.bake_s * 1000u && m_reqs >= s.min_requests) {
                        m_step++;
                        m_baked = m_reqs = 0;
                        want = m_step == 2 ? HL_PLAN_EV_COMPLETE : HL_PLAN_EV_ADVANCE;
                        m_done = m_step == 2;
                    }
                }
            }
            if (ev != want)
                fail_msg("run %u tick %d: event %d, model %d", run, t, ev, want);
            assert_int_equal(s.p.step, m_step);
            if (!m_done) {
                assert_true(s.p.baked_ms == m_baked);
                assert_true(s.p.step_requests == m_reqs);
            }
        }
    }
}

/* The diff gate: a first step at 0 % bakes on shadow comparisons alone
 * (no requests on new needed) and advances only when strictly fewer than
 * max_diff_rate of at least min_compared comparisons of the step differed;
 * the counts start afresh in every step. */
static void
test_diff_gate(void **state)
{
    struct hl_plan_conf c = { .nsteps = 3, .steps_bp = { 0, 1000, 10000 }, .bake_s = 1,
                              .max_diff_rate = 0.01, .min_compared = 100 };
    struct hl_plan p;
    struct hl_plan_input in = { .now_ms = 5000, .min_requests = 20 };
    int i;

    (void)state;
    hl_plan_init(&p);
    assert_int_equal(hl_plan_start(&p, &c), 0);
    assert_int_equal(hl_plan_tick(&p, &c, &in), HL_PLAN_EV_NONE);     /* anchor */
    /* baked, no requests on new, 99 comparisons: held by min_compared */
    in.now_ms += 2000;
    in.compared += 99;
    assert_int_equal(hl_plan_tick(&p, &c, &in), HL_PLAN_EV_NONE);
    assert_true(hl_plan_diff_held(&p, &c));
    /* 200 comparisons, 2 differed: 1 % is not under 1 % */
    in.now_ms += 100;
    in.compared += 101;
    in.diffs += 2;
    assert_int_equal(hl_plan_tick(&p, &c, &in), HL_PLAN_EV_NONE);
    assert_int_equal(p.step_compared, 200);
    /* 201: under 1 %: advances, and the next step counts afresh */
    in.now_ms += 100;
    in.compared += 1;
    assert_int_equal(hl_plan_tick(&p, &c, &in), HL_PLAN_EV_ADVANCE);
    assert_int_equal(p.step, 1);
    assert_int_equal(p.step_compared, 0);
    /* step 10 %: requests are needed again, and the gate */
    for (i = 0; i < 20; i++) {
        in.now_ms += 100;
        in.compared += 10;
        assert_int_equal(hl_plan_tick(&p, &c, &in), HL_PLAN_EV_NONE);
    }
    in.now_ms += 100;
    in.new_requests += 20;
    assert_int_equal(hl_plan_tick(&p, &c, &in), HL_PLAN_EV_COMPLETE);
    /* counts that went backwards only re-anchor */
    hl_plan_init(&p);
    assert_int_equal(hl_plan_start(&p, &c), 0);
    in.compared = 1000;
    assert_int_equal(hl_plan_tick(&p, &c, &in), HL_PLAN_EV_NONE);
    in.now_ms += 2000;
    in.compared = 10;
    assert_int_equal(hl_plan_tick(&p, &c, &in), HL_PLAN_EV_NONE);
    assert_int_equal(p.step_compared, 0);
    /* no gate configured: never held */
    c.max_diff_rate = 0;
    assert_false(hl_plan_diff_held(&p, &c));
}

/* A migration gate that holds the step starts its bake over, and with it
 * the shadow comparisons the diff gate counts: those made before the hold,
 * and during it, do not count toward the step. */
static void
test_gate_hold_restarts_diff_count(void **state)
{
    struct hl_plan_conf c = { .nsteps = 3, .steps_bp = { 0, 1000, 10000 }, .bake_s = 1,
                              .max_diff_rate = 0.01, .min_compared = 100 };
    struct hl_plan p;
    struct hl_plan_input in = { .now_ms = 5000, .min_requests = 20 };

    (void)state;
    hl_plan_init(&p);
    assert_int_equal(hl_plan_start(&p, &c), 0);
    assert_int_equal(hl_plan_tick(&p, &c, &in), HL_PLAN_EV_NONE);     /* anchor */
    in.now_ms += 500;
    in.compared += 150;
    assert_int_equal(hl_plan_tick(&p, &c, &in), HL_PLAN_EV_NONE);
    assert_int_equal(p.step_compared, 150);
    /* held: nothing of the step is kept, and what is compared meanwhile
     * does not count */
    in.now_ms += 100;
    in.compared += 50;
    in.diffs += 5;
    in.held = true;
    assert_int_equal(hl_plan_tick(&p, &c, &in), HL_PLAN_EV_NONE);
    assert_int_equal(p.baked_ms, 0);
    assert_int_equal(p.step_compared, 0);
    assert_int_equal(p.step_diffs, 0);
    /* baked through again, but 10 comparisons since the hold: the diff
     * gate holds the step */
    in.held = false;
    in.now_ms += 1000;
    in.compared += 10;
    assert_int_equal(hl_plan_tick(&p, &c, &in), HL_PLAN_EV_NONE);
    assert_int_equal(p.step_compared, 10);
    assert_int_equal(p.step_diffs, 0);
    assert_true(hl_plan_diff_held(&p, &c));
    /* 100 since the hold, none differed: advances */
    in.now_ms += 100;
    in.compared += 90;
    assert_int_equal(hl_plan_tick(&p, &c, &in), HL_PLAN_EV_ADVANCE);
    assert_int_equal(p.step, 1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_round_trip),
        cmocka_unit_test(test_start),
        cmocka_unit_test(test_advance_needs_bake_and_requests),
        cmocka_unit_test(test_requests_count_per_step),
        cmocka_unit_test(test_pause_keeps_remaining_time),
        cmocka_unit_test(test_abort_stops_for_good),
        cmocka_unit_test(test_breach_stops),
        cmocka_unit_test(test_one_step_and_last_step_below_100),
        cmocka_unit_test(test_backwards_inputs_reanchor),
        cmocka_unit_test(test_restore),
        cmocka_unit_test(test_gate_hold_restarts_bake),
        cmocka_unit_test(test_matches_reference_model),
        cmocka_unit_test(test_diff_gate),
        cmocka_unit_test(test_gate_hold_restarts_diff_count),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
