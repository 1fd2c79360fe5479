/* tests/unit/test_hl_window.c: the passive outcome window of health/window.c. */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <setjmp.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "health/window.h"

/* Windows whose rings the tests re-initialize at other lengths. */
static struct hl_window wa, wb, wc, wm;

/* splitmix64: a seeded, reproducible generator. */
static uint64_t
sm64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static double
unit(uint64_t *s)
{
    return (double)(sm64(s) >> 11) / 9007199254740992.0;
}

static void
push_n(struct hl_window *w, uint64_t now_ms, enum hl_outcome o, uint32_t us, unsigned n)
{
    while (n--)
        hl_window_push(w, now_ms, o, us);
}

static uint64_t
stats_requests(const struct hl_window *w, uint64_t now_ms)
{
    struct hl_stats st;

    hl_window_stats(w, now_ms, &st);
    return st.requests;
}

static void
test_outcome_from_status(void **state)
{
    static const struct { int status; enum hl_outcome o; } t[] = {
        { 100, HL_OUT_2XX }, { 101, HL_OUT_2XX }, { 200, HL_OUT_2XX }, { 299, HL_OUT_2XX },
        { 300, HL_OUT_3XX }, { 304, HL_OUT_3XX }, { 399, HL_OUT_3XX },
        { 400, HL_OUT_4XX }, { 404, HL_OUT_4XX }, { 499, HL_OUT_4XX },
        { 500, HL_OUT_5XX }, { 503, HL_OUT_5XX }, { 599, HL_OUT_5XX },
        { 0, HL_OUT_ERROR }, { -1, HL_OUT_ERROR }, { 99, HL_OUT_ERROR },
        { 600, HL_OUT_ERROR }, { 999, HL_OUT_ERROR },
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof t / sizeof t[0]; i++)
        assert_int_equal(hl_outcome_from_status(t[i].status), t[i].o);
}

static void
test_empty(void **state)
{
    struct hl_stats st;

    (void)state;
    hl_window_init(&wa, 10);
    hl_window_stats(&wa, 123456, &st);
    assert_int_equal(st.requests, 0);
    assert_int_equal(st.errors, 0);
    assert_true(st.error_rate == 0 && st.p50_ms == 0 && st.p99_ms == 0);
}

static void
test_counts_per_class(void **state)
{
    struct hl_stats st;

    (void)state;
    hl_window_init(&wa, 10);
    push_n(&wa, 5000, HL_OUT_2XX, 1000, 40);
    push_n(&wa, 5100, HL_OUT_3XX, 1000, 3);
    push_n(&wa, 5200, HL_OUT_4XX, 1000, 2);
    push_n(&wa, 5300, HL_OUT_5XX, 1000, 3);
    push_n(&wa, 5999, HL_OUT_ERROR, 1000, 2);
    hl_window_stats(&wa, 5999, &st);
    assert_int_equal(st.requests, 50);
    assert_int_equal(st.by_class[HL_OUT_2XX], 40);
    assert_int_equal(st.by_class[HL_OUT_3XX], 3);
    assert_int_equal(st.by_class[HL_OUT_4XX], 2);
    assert_int_equal(st.by_class[HL_OUT_5XX], 3);
    assert_int_equal(st.by_class[HL_OUT_ERROR], 2);
    assert_int_equal(st.errors, 5);
    assert_true(st.error_rate == 0.1);
}

/* Second i holds i + 1 outcomes; each step of now drops exactly one second. */
static void
test_counts_per_bucket(void **state)
{
    unsigned i;

    (void)state;
    hl_window_init(&wa, 5);
    for (i = 0; i < 5; i++)
        push_n(&wa, 100000 + i * 1000 + 500, HL_OUT_2XX, 2000, i + 1);
    assert_int_equal(stats_requests(&wa, 104000), 15);
    assert_int_equal(stats_requests(&wa, 105000), 14);
    assert_int_equal(stats_requests(&wa, 106000), 12);
    assert_int_equal(stats_requests(&wa, 107000), 9);
    assert_int_equal(stats_requests(&wa, 108000), 5);
    assert_int_equal(stats_requests(&wa, 109000), 0);
    /* now behind the pushes: only the seconds up to now count */
    assert_int_equal(stats_requests(&wa, 101999), 3);
    assert_int_equal(stats_requests(&wa, 99999), 0);
}

/* An outcome of second s counts while now_ms / 1000 < s + window_s. */
static void
test_expiry_exact_boundary(void **state)
{
    (void)state;
    hl_window_init(&wa, 10);
    hl_window_push(&wa, 1000, HL_OUT_5XX, 500);
    hl_window_push(&wa, 1999, HL_OUT_5XX, 500);
    hl_window_push(&wa, 999, HL_OUT_5XX, 500);
    assert_int_equal(stats_requests(&wa, 999), 1);
    assert_int_equal(stats_requests(&wa, 1000), 3);
    assert_int_equal(stats_requests(&wa, 9999), 3);
    assert_int_equal(stats_requests(&wa, 10000), 2);   /* second 0 gone */
    assert_int_equal(stats_requests(&wa, 10999), 2);
    assert_int_equal(stats_requests(&wa, 11000), 0);   /* second 1 gone */

    /* the longest and the shortest window */
    hl_window_init(&wa, HL_WINDOW_MAX_S);
    hl_window_push(&wa, 7000, HL_OUT_2XX, 500);
    hl_window_push(&wa, 7000 + 599999, HL_OUT_2XX, 500);
    assert_int_equal(stats_requests(&wa, 7000 + 599999), 2);
    assert_int_equal(stats_requests(&wa, 7000 + 600000), 1);
    hl_window_init(&wa, 1);
    hl_window_push(&wa, 7000, HL_OUT_2XX, 500);
    assert_int_equal(stats_requests(&wa, 7999), 1);
    assert_int_equal(stats_requests(&wa, 8000), 0);
    hl_window_push(&wa, 8000, HL_OUT_2XX, 500);
    hl_window_push(&wa, 7999, HL_OUT_2XX, 500);        /* too old: dropped */
    assert_int_equal(stats_requests(&wa, 8000), 1);
}

/* Thousands of seconds with gaps shorter and longer than the window, against
 * per-second reference counts. */
static void
test_ring_wraparound(void **state)
{
    enum { W = 7, SECS = 20000 };
    static uint32_t ref_req[SECS], ref_err[SECS];
    uint64_t seed = 42, sec = 0;
    unsigned checks = 0;

    (void)state;
    memset(ref_req, 0, sizeof ref_req);
    memset(ref_err, 0, sizeof ref_err);
    hl_window_init(&wa, W);
    while (sec < SECS) {
        unsigned n = (unsigned)(sm64(&seed) % 6), i;
        uint64_t r = sm64(&seed) % 100, s, want_req = 0, want_err = 0;
        struct hl_stats st;

        for (i = 0; i < n; i++) {
            enum hl_outcome o = (enum hl_outcome)(sm64(&seed) % HL_OUT__COUNT);

            hl_window_push(&wa, sec * 1000 + sm64(&seed) % 1000, o, 1000);
            ref_req[sec]++;
            if (o == HL_OUT_5XX || o == HL_OUT_ERROR)
                ref_err[sec]++;
        }
        for (s = sec + 1 >= W ? sec + 1 - W : 0; s <= sec; s++) {
            want_req += ref_req[s];
            want_err += ref_err[s];
        }
        hl_window_stats(&wa, sec * 1000 + 999, &st);
        assert_int_equal(st.requests, want_req);
        assert_int_equal(st.errors, want_err);
        checks++;
        /* mostly the next second, sometimes a gap within or past the window */
        sec += r < 80 ? 1 : r < 95 ? 1 + sm64(&seed) % W : W + sm64(&seed) % (3 * W);
    }
    assert_true(checks > 5000);
}

static void
test_reset(void **state)
{
    struct hl_stats st;

    (void)state;
    hl_window_init(&wa, 10);
    push_n(&wa, 50000, HL_OUT_5XX, 3000, 30);
    assert_int_equal(stats_requests(&wa, 50000), 30);
    hl_window_reset(&wa);
    hl_window_stats(&wa, 50000, &st);
    assert_int_equal(st.requests, 0);
    assert_true(st.error_rate == 0 && st.p99_ms == 0);
    /* the window is still 10 s long, and starts over from any time */
    hl_window_push(&wa, 31000, HL_OUT_2XX, 3000);
    hl_window_push(&wa, 50000, HL_OUT_2XX, 3000);
    assert_int_equal(stats_requests(&wa, 31000), 1);
    assert_int_equal(stats_requests(&wa, 50000), 1);
    assert_int_equal(stats_requests(&wa, 59999), 1);
    assert_int_equal(stats_requests(&wa, 60000), 0);
}

static void
test_out_of_order(void **state)
{
    struct hl_stats st;

    (void)state;
    hl_window_init(&wa, 10);
    hl_window_push(&wa, 20500, HL_OUT_2XX, 1000);
    hl_window_push(&wa, 15500, HL_OUT_5XX, 1000);   /* 5 s back: counts */
    hl_window_push(&wa, 11000, HL_OUT_ERROR, 1000); /* 9 s back: counts */
    hl_window_push(&wa, 10999, HL_OUT_5XX, 1000);   /* 10 s back: dropped */
    hl_window_push(&wa, 500, HL_OUT_5XX, 1000);     /* long ago: dropped */
    hl_window_stats(&wa, 20999, &st);
    assert_int_equal(st.requests, 3);
    assert_int_equal(st.errors, 2);
    /* the dropped push shares second 20's bucket: second 20 is intact */
    assert_int_equal(stats_requests(&wa, 29999), 1);
    assert_int_equal(stats_requests(&wa, 21000), 2);
    /* a late push into a second that already has outcomes adds to it */
    hl_window_push(&wa, 15000, HL_OUT_2XX, 1000);
    assert_int_equal(stats_requests(&wa, 20999), 4);
    assert_int_equal(stats_requests(&wa, 24999), 3);
    assert_int_equal(stats_requests(&wa, 25000), 1);
}

/* Every latency maps to a value within 2^0.1 - 1 (7.18%) of itself from 32 us
 * to 58 s, and the mapping is monotonic. A window of 1 s, one push per second,
 * reads back one latency at a time. */
static void
test_histogram_resolution(void **state)
{
    struct hl_stats st;
    uint64_t sec = 0;
    double v = 1, prev = 0, worst = 0;

    (void)state;
    hl_window_init(&wa, 1);
    while (v < 4294967295.0) {
        uint32_t us = (uint32_t)v;
        double got;

        hl_window_push(&wa, sec * 1000, HL_OUT_2XX, us);
        hl_window_stats(&wa, sec * 1000, &st);
        assert_int_equal(st.requests, 1);
        assert_true(st.p50_ms == st.p99_ms);
        got = st.p50_ms * 1000.0;
        assert_true(got >= prev);
        prev = got;
        if (us < 32) {
            assert_true(got == 16.0);
        } else if (us < 58000000) {
            double err = fabs(got - us) / us;

            if (err > worst)
                worst = err;
        } else if (us >= 67108864) {
            assert_true(got >= 58000000.0 && got < 67108864.0);
        }
        sec++;
        v = v < 300000 ? v + 1 : v * 1.0001;
    }
    assert_true(worst > 0.06 && worst < 0.0719);
}

/* Nearest-rank percentile of a sorted array: the sample of rank ceil(p n). */
static uint32_t
exact_pct(const uint32_t *sorted, size_t n, unsigned pct)
{
    size_t rank = (n * pct + 99) / 100;

    return sorted[rank ? rank - 1 : 0];
}

static int
cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

    return x < y ? -1 : x > y;
}

enum dist { D_LOGUNIFORM, D_EXPONENTIAL, D_BIMODAL, D_NARROW, D_CONSTANT, D__COUNT };

/* A latency in us, between 100 us and 60 s, drawn from <d>. */
static uint32_t
draw(enum dist d, uint64_t *s)
{
    double us = 0;

    switch (d) {
    case D_LOGUNIFORM:
        us = 100.0 * exp(unit(s) * log(600000.0));
        break;
    case D_EXPONENTIAL:
        us = 100.0 - 4000.0 * log(1.0 - unit(s));
        break;
    case D_BIMODAL:
        us = unit(s) < 0.9 ? 1500.0 + 1000.0 * unit(s) : 700000.0 + 300000.0 * unit(s);
        break;
    case D_NARROW:
        us = 5000.0 + 100.0 * (unit(s) + unit(s) + unit(s) - 1.5);
        break;
    default:
        us = 12345.0;
        break;
    }
    if (us > 60000000.0)
        us = 60000000.0;
    return (uint32_t)us;
}

static void
test_percentiles_vs_reference(void **state)
{
    static const size_t sizes[] = { 1, 2, 3, 10, 99, 100, 101, 1000, 25000 };
    static uint32_t lat[25000];
    uint64_t seed = 7;
    unsigned d, z, cases = 0;
    double worst99 = 0, worst50 = 0;

    (void)state;
    for (d = 0; d < D__COUNT; d++) {
        for (z = 0; z < sizeof sizes / sizeof sizes[0]; z++) {
            size_t n = sizes[z], i;
            struct hl_stats st;
            double e50, e99;

            hl_window_init(&wa, 30);
            for (i = 0; i < n; i++) {
                lat[i] = draw((enum dist)d, &seed);
                /* spread over the 30 s of the window, out of order */
                hl_window_push(&wa, 1000000 + sm64(&seed) % 30000, HL_OUT_2XX, lat[i]);
            }
            qsort(lat, n, sizeof lat[0], cmp_u32);
            hl_window_stats(&wa, 1029999, &st);
            assert_int_equal(st.requests, n);
            e50 = exact_pct(lat, n, 50) / 1000.0;
            e99 = exact_pct(lat, n, 99) / 1000.0;
            if (fabs(st.p50_ms - e50) > 0.10 * e50 || fabs(st.p99_ms - e99) > 0.10 * e99)
                fail_msg("dist %u n %zu: p50 %.4f (exact %.4f), p99 %.4f (exact %.4f)",
                         d, n, st.p50_ms, e50, st.p99_ms, e99);
            assert_true(st.p50_ms <= st.p99_ms);
            if (fabs(st.p99_ms - e99) / e99 > worst99)
                worst99 = fabs(st.p99_ms - e99) / e99;
            if (fabs(st.p50_ms - e50) / e50 > worst50)
                worst50 = fabs(st.p50_ms - e50) / e50;
            if (n == 25000)
                printf("dist %u, %zu samples: p99 %.3f ms, exact %.3f ms (%+.2f%%)\n",
                       d, n, st.p99_ms, e99, 100.0 * (st.p99_ms - e99) / e99);
            cases++;
        }
    }
    printf("percentiles vs exact over %u sample sets: worst p50 error %.2f%%, p99 %.2f%%\n",
           cases, 100.0 * worst50, 100.0 * worst99);
    assert_int_equal(cases, D__COUNT * (sizeof sizes / sizeof sizes[0]));
}

/* The percentile rank: 99 fast and 1 slow of 100 gives a fast p99 (rank 99);
 * one more slow one makes p99 slow (rank 100 of 101 is slow). */
static void
test_percentile_rank(void **state)
{
    struct hl_stats st;

    (void)state;
    hl_window_init(&wa, 10);
    push_n(&wa, 5000, HL_OUT_2XX, 1000, 99);
    push_n(&wa, 5000, HL_OUT_2XX, 900000, 1);
    hl_window_stats(&wa, 5000, &st);
    assert_true(st.p99_ms > 0.9 && st.p99_ms < 1.1);
    assert_true(st.p50_ms > 0.9 && st.p50_ms < 1.1);
    push_n(&wa, 5000, HL_OUT_2XX, 900000, 1);
    hl_window_stats(&wa, 5000, &st);
    assert_true(st.p99_ms > 850 && st.p99_ms < 950);
}

static void
test_huge_and_tiny_latency(void **state)
{
    struct hl_stats st;

    (void)state;
    hl_window_init(&wa, 10);
    hl_window_push(&wa, 5000, HL_OUT_ERROR, UINT32_MAX);
    hl_window_stats(&wa, 5000, &st);
    assert_true(st.p99_ms >= 58000 && st.p99_ms < 67109);
    assert_true(isfinite(st.p99_ms));
    hl_window_push(&wa, 5000, HL_OUT_ERROR, 100000000);   /* 100 s */
    hl_window_push(&wa, 5000, HL_OUT_ERROR, 60000000);    /* 60 s */
    hl_window_stats(&wa, 5000, &st);
    assert_true(st.p50_ms >= 58000 && st.p50_ms < 67109);
    assert_int_equal(st.requests, 3);

    hl_window_init(&wa, 10);
    push_n(&wa, 5000, HL_OUT_2XX, 0, 10);
    hl_window_stats(&wa, 5000, &st);
    assert_true(st.p99_ms > 0 && st.p99_ms < 0.032);
}

static void
assert_stats_equal(const struct hl_stats *a, const struct hl_stats *b)
{
    unsigned k;

    assert_int_equal(a->requests, b->requests);
    assert_int_equal(a->errors, b->errors);
    for (k = 0; k < HL_OUT__COUNT; k++)
        assert_int_equal(a->by_class[k], b->by_class[k]);
    assert_true(a->error_rate == b->error_rate);
    assert_true(a->p50_ms == b->p50_ms);
    assert_true(a->p99_ms == b->p99_ms);
}

/* Two workers' windows merged equal one window that saw every push. Worker B
 * sometimes lags (its last push is older than A's), sometimes stops. */
static void
test_merge_equals_single(void **state)
{
    enum { W = 20 };
    uint64_t seed = 99, t = 3000000, compared = 0;
    unsigned round;

    (void)state;
    hl_window_init(&wa, W);
    hl_window_init(&wb, W);
    hl_window_init(&wc, W);
    for (round = 0; round < 400; round++) {
        unsigned n = 1 + (unsigned)(sm64(&seed) % 200), i, j;
        bool b_stopped = round % 50 >= 40;
        static const uint64_t later_ms[] = { 0, 999, 1000, 5000, (W - 1) * 1000, W * 1000 };

        for (i = 0; i < n; i++) {
            enum hl_outcome o = (enum hl_outcome)(sm64(&seed) % HL_OUT__COUNT);
            uint32_t us = draw((enum dist)(sm64(&seed) % D__COUNT), &seed);

            t += sm64(&seed) % 300;
            hl_window_push(&wc, t, o, us);
            hl_window_push(!b_stopped && sm64(&seed) % 3 == 0 ? &wb : &wa, t, o, us);
        }
        if (sm64(&seed) % 8 == 0)
            t += (sm64(&seed) % 3) * W * 1000;    /* a quiet spell */

        for (j = 0; j < 2; j++) {
            /* merge either way round: the result is the same */
            hl_window_copy(&wm, j ? &wb : &wa);
            hl_window_merge(&wm, j ? &wa : &wb);
            for (i = 0; i < sizeof later_ms / sizeof later_ms[0]; i++) {
                struct hl_stats sm, sc;

                hl_window_stats(&wm, t + later_ms[i], &sm);
                hl_window_stats(&wc, t + later_ms[i], &sc);
                assert_stats_equal(&sm, &sc);
                compared += sc.requests;
            }
        }
    }
    assert_true(compared > 100000);
}

/* Merging an empty window changes nothing; merging a window with itself
 * doubles every count and keeps the percentiles. */
static void
test_merge_empty_and_self(void **state)
{
    struct hl_stats before, after;
    uint64_t seed = 5;
    unsigned i;

    (void)state;
    hl_window_init(&wa, 10);
    hl_window_init(&wb, 10);
    for (i = 0; i < 500; i++)
        hl_window_push(&wa, 40000 + i * 17, (enum hl_outcome)(i % HL_OUT__COUNT),
                       draw(D_LOGUNIFORM, &seed));
    hl_window_stats(&wa, 49000, &before);
    hl_window_merge(&wa, &wb);
    hl_window_stats(&wa, 49000, &after);
    assert_stats_equal(&before, &after);

    hl_window_copy(&wm, &wa);
    hl_window_merge(&wm, &wa);
    hl_window_stats(&wm, 49000, &after);
    assert_int_equal(after.requests, 2 * before.requests);
    assert_int_equal(after.errors, 2 * before.errors);
    assert_true(after.error_rate == before.error_rate);
    assert_true(after.p50_ms == before.p50_ms && after.p99_ms == before.p99_ms);

    /* an old worker window adds nothing to a newer one */
    hl_window_init(&wb, 10);
    push_n(&wb, 5000, HL_OUT_5XX, 1000, 50);
    hl_window_copy(&wm, &wa);
    hl_window_merge(&wm, &wb);
    hl_window_stats(&wm, 49000, &after);
    assert_stats_equal(&before, &after);
}

/* A merged window goes on taking pushes and merges as if it had seen those
 * of <src>: what is too old for src's newest second is dropped. */
static void
test_merge_then_push(void **state)
{
    (void)state;
    hl_window_init(&wa, 10);
    hl_window_init(&wb, 10);
    hl_window_push(&wa, 10000, HL_OUT_2XX, 1000);
    push_n(&wb, 25000, HL_OUT_5XX, 1000, 4);
    hl_window_merge(&wa, &wb);
    assert_int_equal(stats_requests(&wa, 25000), 4);
    hl_window_push(&wa, 15000, HL_OUT_2XX, 1000);      /* 10 s behind 25: dropped */
    hl_window_push(&wa, 16000, HL_OUT_2XX, 1000);      /* 9 s behind: counts */
    assert_int_equal(stats_requests(&wa, 25999), 5);
    assert_int_equal(stats_requests(&wa, 26000), 4);
    /* merging an old window afterwards adds nothing to second 10 (which
     * still holds wa's own push: stats behind the newest second are not
     * meant to be exact, but no merge may add to a stale second) */
    assert_int_equal(stats_requests(&wa, 10000), 1);
    hl_window_init(&wc, 10);
    hl_window_push(&wc, 10000, HL_OUT_2XX, 1000);
    hl_window_merge(&wa, &wc);
    assert_int_equal(stats_requests(&wa, 10000), 1);
    assert_int_equal(stats_requests(&wa, 25000), 5);
}

/* A copy answers like the original, and goes on like it under the same
 * pushes, whatever the destination held before (another length, stale
 * buckets past the source's window_s). */
static void
test_copy(void **state)
{
    static const uint64_t later_ms[] = { 0, 999, 1000, 3000, 6999, 7000 };
    uint64_t seed = 11, t = 900000;
    struct hl_stats so, sc;
    unsigned round, i;

    (void)state;
    hl_window_init(&wa, 7);
    hl_window_init(&wm, 600);
    for (i = 0; i < 2000; i++)
        hl_window_push(&wm, 100000 + i * 300, HL_OUT_5XX, 5000);
    for (round = 0; round < 50; round++) {
        for (i = 0; i < 100; i++) {
            t += sm64(&seed) % 120;
            hl_window_push(&wa, t, (enum hl_outcome)(sm64(&seed) % HL_OUT__COUNT),
                           draw(D_LOGUNIFORM, &seed));
        }
        hl_window_copy(&wm, &wa);
        for (i = 0; i < sizeof later_ms / sizeof later_ms[0]; i++) {
            hl_window_stats(&wa, t + later_ms[i], &so);
            hl_window_stats(&wm, t + later_ms[i], &sc);
            assert_stats_equal(&so, &sc);
        }
        /* the same pushes on both keep them equal */
        for (i = 0; i < 30; i++) {
            uint32_t us = draw(D_LOGUNIFORM, &seed);

            t += sm64(&seed) % 400;
            hl_window_push(&wa, t, HL_OUT_2XX, us);
            hl_window_push(&wm, t, HL_OUT_2XX, us);
        }
        hl_window_stats(&wa, t, &so);
        hl_window_stats(&wm, t, &sc);
        assert_stats_equal(&so, &sc);
        assert_true(sc.requests > 0);
    }
}

/* The ring is sized to window_s: a window initialized again at another
 * length, or copied into a zeroed one, behaves like a fresh one of that
 * length; freeing leaves a zeroed window that can be initialized again. */
static void
test_resize_and_free(void **state)
{
    static const unsigned len[] = { 600, 3, 10, 1, 600, 10 };
    struct hl_window z, y;
    struct hl_stats st;
    unsigned i, k;

    (void)state;
    memset(&z, 0, sizeof(z));
    memset(&y, 0, sizeof(y));
    for (i = 0; i < sizeof len / sizeof len[0]; i++) {
        hl_window_init(&z, len[i]);
        assert_int_equal(stats_requests(&z, 50000), 0);
        for (k = 0; k < 2 * len[i] + 5; k++)
            hl_window_push(&z, 50000 + (uint64_t)k * 1000, HL_OUT_2XX, 1000);
        /* the last len[i] seconds, one outcome each */
        assert_int_equal(stats_requests(&z, 50000 + (uint64_t)(2 * len[i] + 4) * 1000),
                         len[i]);
        hl_window_copy(&y, &z);
        hl_window_stats(&y, 50000 + (uint64_t)(2 * len[i] + 4) * 1000, &st);
        assert_int_equal(st.requests, len[i]);
        hl_window_free(&y);
        assert_null(y.b);
        assert_int_equal(y.window_s, 0);
    }
    hl_window_free(&z);
    hl_window_free(&z);             /* a zeroed window: a no-op */
    hl_window_init(&z, 5);
    push_n(&z, 7000, HL_OUT_5XX, 10, 3);
    assert_int_equal(stats_requests(&z, 7000), 3);
    hl_window_free(&z);
}

/* The ring grows to what the pushes hold at once and loses nothing on the
 * way: outcomes pushed in any order within the window (a worker's window
 * between two merges, a stalled loop's) against per-second reference
 * counts; a window fed two seconds at a time stays at two buckets. */
static void
test_ring_grows_to_need(void **state)
{
    enum { W = 37, SECS = 3000 };
    static uint32_t ref[SECS][HL_OUT__COUNT];
    uint64_t seed = 1234, newest = 0, base = 50;
    unsigned round, i, k;

    (void)state;
    hl_window_free(&wa);
    hl_window_init(&wa, W);
    assert_int_equal(wa.nb, 2);
    memset(ref, 0, sizeof(ref));
    for (round = 0; round < 400; round++) {
        /* the newest second moves on by 0..3, sometimes by more than W */
        uint64_t step = sm64(&seed) % 16 == 0 ? W + sm64(&seed) % 5 : sm64(&seed) % 4;
        unsigned n = 1 + (unsigned)(sm64(&seed) % 40);

        if (base + newest + step + 1 >= SECS)
            break;
        newest += step;
        for (i = 0; i < n; i++) {
            /* any second of the window, older ones too; now and then one
             * just too old */
            uint64_t back = sm64(&seed) % (W + 2), sec;
            enum hl_outcome o = (enum hl_outcome)(sm64(&seed) % HL_OUT__COUNT);

            if (back > newest)
                back = newest;
            sec = base + newest - back;
            hl_window_push(&wa, sec * 1000 + sm64(&seed) % 1000, o, 1000);
            if (sec + W > base + newest || wa.newest_sec < sec)
                ref[sec][o]++;
            if (sec > base + newest)
                newest = sec - base;
        }
        for (k = 0; k < 3; k++) {
            uint64_t now = base + newest + k * (W / 2);
            struct hl_stats st;
            uint64_t want[HL_OUT__COUNT] = { 0 }, s0;
            unsigned c;

            for (s0 = now + 1 > W ? now + 1 - W : 0; s0 <= now && s0 < SECS; s0++)
                for (c = 0; c < HL_OUT__COUNT; c++)
                    want[c] += ref[s0][c];
            hl_window_stats(&wa, now * 1000 + 999, &st);
            for (c = 0; c < HL_OUT__COUNT; c++)
                assert_int_equal(st.by_class[c], want[c]);
        }
        assert_true(wa.nb >= 2 && wa.nb <= W);
    }
    assert_int_equal(wa.nb, W);      /* it held a whole window at once */

    /* two seconds at a time, emptied between: two buckets for ever */
    hl_window_free(&wb);
    hl_window_init(&wb, 600);
    for (round = 0; round < 1000; round++) {
        push_n(&wb, 4000000 + round * 700, HL_OUT_2XX, 500, 3);
        push_n(&wb, 4000000 + round * 700 + 650, HL_OUT_5XX, 500, 2);
        assert_int_equal(stats_requests(&wb, 4000000 + round * 700 + 650), 5);
        hl_window_reset(&wb);
    }
    assert_int_equal(wb.nb, 2);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_outcome_from_status),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_counts_per_class),
        cmocka_unit_test(test_counts_per_bucket),
        cmocka_unit_test(test_expiry_exact_boundary),
        cmocka_unit_test(test_ring_wraparound),
        cmocka_unit_test(test_reset),
        cmocka_unit_test(test_out_of_order),
        cmocka_unit_test(test_histogram_resolution),
        cmocka_unit_test(test_percentiles_vs_reference),
        cmocka_unit_test(test_percentile_rank),
        cmocka_unit_test(test_huge_and_tiny_latency),
        cmocka_unit_test(test_merge_equals_single),
        cmocka_unit_test(test_merge_empty_and_self),
        cmocka_unit_test(test_merge_then_push),
        cmocka_unit_test(test_copy),
        cmocka_unit_test(test_resize_and_free),
        cmocka_unit_test(test_ring_grows_to_need),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
