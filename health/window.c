/*
 * health/window.c: the passive outcome window (see window.h).
 *
 * The ring has nb buckets, 1 <= nb <= window_s, and second s lives in
 * b[s % nb]. It starts small and grows (doubling, at most to window_s) only
 * when a push or a merge needs a slot that holds another second still in
 * the window: a window fed a few seconds at a time between merges (a
 * worker's) or an idle one stays at a few buckets, a busy one reaches
 * window_s. Growing re-places the live buckets; it never loses one. A
 * bucket is recycled lazily: the push for a second that maps to a stale
 * one clears it first. Invariants: every second has at most one bucket, at
 * its slot; every bucket's sec is at most newest_sec; a bucket whose sec is
 * window_s or more behind newest_sec is stale (kept until recycled, never
 * counted).
 */
#include <assert.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "health/window.h"
#include "lib/xmalloc.h"

/* Lower edges of sub-bins 1..4 of a power of two, as 2^31 * 2^(j/5) rounded:
 * a latency v in [2^k, 2^(k+1)) scaled to v << (31 - k) is compared with
 * them, which places it without floating point or libm. */
static const uint64_t sub_edge[HL_HIST_PER_OCTAVE - 1] = {
    2466810934u, 2833621662u, 3254976542u, 3738986199u,
};

/* Geometric middle of sub-bin j relative to its power of two: 2^((j + 0.5) / 5). */
static const double sub_mid[HL_HIST_PER_OCTAVE] = {
    1.0717734625362931, 1.2311444133449163, 1.4142135623730951,
    1.6245047927124710, 1.8660659830736148,
};

enum hl_outcome
hl_outcome_from_status(int status)
{
    if (status >= 100 && status < 300)
        return HL_OUT_2XX;
    if (status >= 300 && status < 400)
        return HL_OUT_3XX;
    if (status >= 400 && status < 500)
        return HL_OUT_4XX;
    if (status >= 500 && status < 600)
        return HL_OUT_5XX;
    return HL_OUT_ERROR;
}

/* floor(log2(v)) for v > 0. */
static unsigned
log2_floor(uint32_t v)
{
    unsigned k = 0;

    if (v >= 1u << 16) { v >>= 16; k += 16; }
    if (v >= 1u << 8)  { v >>= 8;  k += 8; }
    if (v >= 1u << 4)  { v >>= 4;  k += 4; }
    if (v >= 1u << 2)  { v >>= 2;  k += 2; }
    if (v >= 1u << 1)  { k += 1; }
    return k;
}

/* Histogram bin of a latency (see window.h for the layout). */
static unsigned
hist_bin(uint32_t us)
{
    unsigned k, j = 0;
    uint64_t scaled;

    if (us < 1u << HL_HIST_MIN_LOG2)
        return 0;
    k = log2_floor(us);
    if (k > HL_HIST_MAX_LOG2)
        return HL_HIST_BINS - 1;
    scaled = (uint64_t)us << (31 - k);     /* in [2^31, 2^32) */
    while (j < HL_HIST_PER_OCTAVE - 1 && scaled >= sub_edge[j])
        j++;
    return 1 + (k - HL_HIST_MIN_LOG2) * HL_HIST_PER_OCTAVE + j;
}

/* The latency (us) a bin reports: its geometric middle; bin 0 its midpoint. */
static double
bin_value_us(unsigned bin)
{
    unsigned k, j;

    if (bin == 0)
        return (double)(1u << HL_HIST_MIN_LOG2) / 2.0;
    k = HL_HIST_MIN_LOG2 + (bin - 1) / HL_HIST_PER_OCTAVE;
    j = (bin - 1) % HL_HIST_PER_OCTAVE;
    return (double)(1u << k) * sub_mid[j];
}

/* Buckets a ring starts with (at most window_s). */
#define RING_START 2u

/* Outcomes counted in <b>. */
static uint64_t
bucket_count(const struct hl_bucket *b)
{
    uint64_t n = 0;
    unsigned k;

    for (k = 0; k < HL_OUT__COUNT; k++)
        n += b->by_class[k];
    return n;
}

void
hl_window_init(struct hl_window *w, unsigned window_s)
{
    unsigned nb = window_s < RING_START ? window_s : RING_START;

    assert(window_s >= 1 && window_s <= HL_WINDOW_MAX_S);
    /* a ring already there is kept when its length fits the window */
    if (w->b == NULL || w->window_s != window_s) {
        free(w->b);
        w->b = xmalloc((size_t)nb * sizeof w->b[0]);
        w->nb = nb;
    }
    w->window_s = window_s;
    hl_window_reset(w);
}

void
hl_window_free(struct hl_window *w)
{
    free(w->b);
    memset(w, 0, sizeof(*w));
}

void
hl_window_reset(struct hl_window *w)
{
    /* the ring keeps its size: what it grew to is what the traffic needs */
    w->newest_sec = 0;
    if (w->b != NULL)
        memset(w->b, 0, (size_t)w->nb * sizeof w->b[0]);
}

void
hl_window_copy(struct hl_window *dst, const struct hl_window *src)
{
    if (dst == src)
        return;
    if (src->b == NULL) {
        hl_window_free(dst);
        return;
    }
    if (dst->b == NULL || dst->nb != src->nb) {
        free(dst->b);
        dst->b = xmalloc((size_t)src->nb * sizeof src->b[0]);
        dst->nb = src->nb;
    }
    dst->window_s = src->window_s;
    dst->newest_sec = src->newest_sec;
    memcpy(dst->b, src->b, (size_t)src->nb * sizeof src->b[0]);
}

/* True when <b> holds outcomes of a second still in the window once the
 * newest second is <newest>. */
static bool
bucket_live(const struct hl_window *w, const struct hl_bucket *b, uint64_t newest)
{
    return b->sec + w->window_s > newest && bucket_count(b) > 0;
}

/* Doubles the ring of <w> (at most to window_s), re-placing the buckets
 * still live once the newest second is <newest>: two of them never share a
 * slot of the larger ring, as they did not share one of the smaller (and
 * two seconds less than window_s apart differ modulo window_s). */
static void
ring_grow(struct hl_window *w, uint64_t newest)
{
    unsigned nb = w->nb * 2 > w->window_s ? w->window_s : w->nb * 2, i;
    struct hl_bucket *b = xcalloc(nb, sizeof(*b));

    for (i = 0; i < w->nb; i++)
        if (bucket_live(w, &w->b[i], newest))
            b[w->b[i].sec % nb] = w->b[i];
    free(w->b);
    w->b = b;
    w->nb = nb;
}

/* The bucket that holds second <sec> (cleared if it held a stale second;
 * the ring grown first if it held a live one), or NULL when <sec> is too
 * old for the window. Does not move newest_sec. */
static struct hl_bucket *
bucket_for(struct hl_window *w, uint64_t sec)
{
    uint64_t newest = sec > w->newest_sec ? sec : w->newest_sec;
    struct hl_bucket *b;

    if (sec + w->window_s <= w->newest_sec)
        return NULL;
    for (;;) {
        b = &w->b[sec % w->nb];
        if (b->sec == sec)
            return b;
        if (!bucket_live(w, b, newest))
            break;
        /* A full ring (nb == window_s) never gets here: two seconds that
         * share one of its slots are at least window_s apart, so one of
         * them is out of the window. */
        assert(w->nb < w->window_s);
        ring_grow(w, newest);
    }
    memset(b, 0, sizeof *b);
    b->sec = sec;
    return b;
}

void
hl_window_push(struct hl_window *w, uint64_t now_ms, enum hl_outcome o,
               uint32_t latency_us)
{
    uint64_t sec = now_ms / 1000;
    struct hl_bucket *b;

    assert((unsigned)o < HL_OUT__COUNT);
    if ((b = bucket_for(w, sec)) == NULL)
        return;
    if (sec > w->newest_sec)
        w->newest_sec = sec;
    b->by_class[o]++;
    b->hist[hist_bin(latency_us)]++;
}

/* Nearest-rank percentile <pct> (1..100) of the <n> latencies in <hist>,
 * in ms: the value of the sample of rank ceil(pct * n / 100). */
static double
percentile_ms(const uint64_t *hist, uint64_t n, unsigned pct)
{
    uint64_t rank = (n * pct + 99) / 100, cum = 0;
    unsigned i;

    if (rank == 0)
        rank = 1;
    for (i = 0; i < HL_HIST_BINS; i++) {
        cum += hist[i];
        if (cum >= rank)
            return bin_value_us(i) / 1000.0;
    }
    return 0.0;      /* n == 0 */
}

void
hl_window_counts(const struct hl_window *w, uint64_t now_ms, struct hl_counts *out)
{
    uint64_t now_sec = now_ms / 1000;
    unsigned i, k;

    memset(out, 0, sizeof *out);
    for (i = 0; i < w->nb; i++) {
        const struct hl_bucket *b = &w->b[i];

        if (b->sec > now_sec || b->sec + w->window_s <= now_sec)
            continue;
        for (k = 0; k < HL_OUT__COUNT; k++)
            out->by_class[k] += b->by_class[k];
        for (k = 0; k < HL_HIST_BINS; k++)
            out->hist[k] += b->hist[k];
    }
}

void
hl_counts_add(struct hl_counts *dst, const struct hl_counts *src)
{
    unsigned k;

    for (k = 0; k < HL_OUT__COUNT; k++)
        dst->by_class[k] += src->by_class[k];
    for (k = 0; k < HL_HIST_BINS; k++)
        dst->hist[k] += src->hist[k];
}

void
hl_counts_stats(const struct hl_counts *c, struct hl_stats *out)
{
    uint64_t total = 0;
    unsigned k;

    memset(out, 0, sizeof *out);
    for (k = 0; k < HL_OUT__COUNT; k++) {
        out->by_class[k] = c->by_class[k];
        out->requests += c->by_class[k];
    }
    out->errors = c->by_class[HL_OUT_5XX] + c->by_class[HL_OUT_ERROR];
    for (k = 0; k < HL_HIST_BINS; k++)
        total += c->hist[k];
    if (out->requests == 0)
        return;
    out->error_rate = (double)out->errors / (double)out->requests;
    if (total == 0)
        return;
    out->p50_ms = percentile_ms(c->hist, total, 50);
    out->p99_ms = percentile_ms(c->hist, total, 99);
}

void
hl_window_stats(const struct hl_window *w, uint64_t now_ms, struct hl_stats *out)
{
    struct hl_counts c;

    hl_window_counts(w, now_ms, &c);
    hl_counts_stats(&c, out);
}

void
hl_window_merge(struct hl_window *dst, const struct hl_window *src)
{
    unsigned i, k;

    assert(dst->window_s == src->window_s && dst != src);
    /* Settle the newest second first, so whether a second of <src> is kept
     * does not depend on the order the ring is walked in. */
    if (src->newest_sec > dst->newest_sec)
        dst->newest_sec = src->newest_sec;
    for (i = 0; i < src->nb; i++) {
        const struct hl_bucket *s = &src->b[i];
        struct hl_bucket *d;

        /* (bucket_for() may grow dst's ring, never src's) */
        if (bucket_count(s) == 0 || (d = bucket_for(dst, s->sec)) == NULL)
            continue;
        for (k = 0; k < HL_OUT__COUNT; k++)
            d->by_class[k] += s->by_class[k];
        for (k = 0; k < HL_HIST_BINS; k++)
            d->hist[k] += s->hist[k];
    }
}
