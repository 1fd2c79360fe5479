/*
 * health/window: the passive outcome window of one side of a service. A ring
 * of one-second buckets over the last window_s seconds, each counting outcomes
 * per class and a log-scale latency histogram, from which error rate, p50 and
 * p99 are read. Pure: libc only, no clock (now_ms is a parameter), no
 * logging. struct hl_window is embedded by its owner; its ring of buckets
 * starts at two and grows (doubling, at most to window_s) only when the
 * seconds it must hold at once need it, so a window pays for what it holds:
 * an idle one or a worker's (merged into the main loop's and emptied every
 * tick) stays at a few buckets, a busy one reaches window_s, never the
 * longest window allowed.
 */
#ifndef CUTOVER_HEALTH_WINDOW_H
#define CUTOVER_HEALTH_WINDOW_H

#include <stdint.h>

/* Outcome classes of one exchange. The order is relied on: it indexes
 * hl_stats.by_class and the metrics class labels ("2xx".."5xx", "error"). */
enum hl_outcome {
    HL_OUT_2XX,      /* also 1xx (101 Switching Protocols ends an exchange) */
    HL_OUT_3XX,
    HL_OUT_4XX,
    HL_OUT_5XX,      /* counts as an error */
    HL_OUT_ERROR,    /* transport error: connect, reset, timeout, bad reply */
    HL_OUT__COUNT
};

/* Longest window (seconds). */
#define HL_WINDOW_MAX_S 600

/* Latency histogram: bin 0 holds [0, 32 us); then 5 log-spaced bins per
 * power of two (each 2^(1/5), about 14.9% wide) from 32 us (2^5) up to
 * 2^26 us (about 67 s). Latencies at or above 2^26 us fall into the last bin.
 * A percentile is reported as the geometric middle of its bin, so it is
 * within 7.2% of the exact sample for latencies from 32 us up to 58 s; bin 0
 * reports 16 us and the last bin about 62.6 s. */
#define HL_HIST_MIN_LOG2 5
#define HL_HIST_MAX_LOG2 25      /* last power of two with its own bins */
#define HL_HIST_PER_OCTAVE 5
#define HL_HIST_BINS (1 + (HL_HIST_MAX_LOG2 - HL_HIST_MIN_LOG2 + 1) * HL_HIST_PER_OCTAVE)

/* One second of outcomes: 456 bytes, so at most 4.5 KB per window of the
 * default 10 s and 270 KB for the longest. */
struct hl_bucket {
    uint64_t sec;                        /* now_ms / 1000 this bucket holds */
    uint32_t by_class[HL_OUT__COUNT];    /* outcomes per class */
    uint32_t hist[HL_HIST_BINS];         /* latencies, one count per outcome */
};

/* Embedded by its owner (zeroed, then hl_window_init(); hl_window_free()
 * at the end); fields are private to window.c. Not thread-safe: one writer
 * (a worker), merged into another window for reading. */
struct hl_window {
    unsigned window_s;                   /* 1..HL_WINDOW_MAX_S; 0: no ring yet */
    unsigned nb;                         /* buckets in the ring, 1..window_s */
    uint64_t newest_sec;                 /* newest second pushed, 0 before any */
    struct hl_bucket *b;                 /* owned: <nb> buckets, second s lives
                                          * in b[s % nb] */
};

/* What a window holds over its last window_s seconds. */
struct hl_stats {
    uint64_t requests;                   /* all outcomes */
    uint64_t errors;                     /* 5xx + transport errors */
    uint64_t by_class[HL_OUT__COUNT];    /* indexed by enum hl_outcome */
    double error_rate;                   /* errors / requests, 0 when no requests */
    double p50_ms, p99_ms;               /* nearest-rank percentiles, 0 when no requests */
};

/* What a window holds over its last window_s seconds as counts: outcomes
 * per class and the latency histogram (the bins above). The form that adds
 * up: the instances of a fleet publish theirs and the leader sums them
 * (health/fleet.h); hl_counts_stats() reads a sum's figures exactly as
 * hl_window_stats() reads one window's (p99 from the summed histogram, not
 * an average of p99s). About 900 bytes. */
struct hl_counts {
    uint64_t by_class[HL_OUT__COUNT];    /* indexed by enum hl_outcome */
    uint64_t hist[HL_HIST_BINS];         /* latencies, one count per outcome */
};

/* HTTP status to class: 100..299 2xx (1xx with them), 300..399, 400..499,
 * 500..599; anything else (0 or negative for transport errors, >= 600 for a
 * malformed reply) is HL_OUT_ERROR. */
enum hl_outcome hl_outcome_from_status(int status);

/* Empties <w> and sets its length, allocating its ring (at most two
 * buckets to start; a ring it has is kept when the length is the same: <w>
 * must be zeroed or initialized before). <window_s> must be
 * 1..HL_WINDOW_MAX_S (asserted: the config parser range-checks it). */
void hl_window_init(struct hl_window *w, unsigned window_s);

/* Frees the ring of <w> (zeroed or initialized); <w> is zeroed after. */
void hl_window_free(struct hl_window *w);

/* Counts one outcome that ended at <now_ms> after <latency_us>. Time is
 * bucketed by second (now_ms / 1000). A push older than the newest second
 * seen but still inside the window counts in its own second; a push whose
 * second is window_s or more behind the newest is dropped. <o> must be a
 * valid class (asserted). Allocates only when the ring must grow: at most
 * log2(window_s) times in a window's life. */
void hl_window_push(struct hl_window *w, uint64_t now_ms, enum hl_outcome o,
                    uint32_t latency_us);

/* Fills <out> with the outcomes of the seconds s with
 * now_ms / 1000 - window_s < s <= now_ms / 1000: the current (partial) second
 * and the window_s - 1 before it, so an outcome counts for between
 * window_s - 1 and window_s seconds. Older buckets are ignored (later pushes
 * recycle them). Meant for now_ms at or past the newest push; with now_ms
 * behind it, seconds after now_ms are left out and seconds whose bucket a
 * newer second took are missing. Cost: window_s * HL_HIST_BINS additions. */
void hl_window_stats(const struct hl_window *w, uint64_t now_ms, struct hl_stats *out);

/* Fills <out> with the counts of the seconds hl_window_stats() reads at
 * <now_ms>. Cost: window_s * HL_HIST_BINS additions. */
void hl_window_counts(const struct hl_window *w, uint64_t now_ms, struct hl_counts *out);

/* Adds <src> into <dst>, class by class and bin by bin. */
void hl_counts_add(struct hl_counts *dst, const struct hl_counts *src);

/* The figures of <c> as hl_window_stats() gives them: requests the sum of
 * the classes, errors 5xx + transport errors, the error rate, and the
 * nearest-rank p50 and p99 of the histogram (over the histogram's own
 * total, which equals requests for counts taken from windows). */
void hl_counts_stats(const struct hl_counts *c, struct hl_stats *out);

/* Forgets every outcome, keeping window_s (and the ring's size): the
 * window starts afresh. */
void hl_window_reset(struct hl_window *w);

/* Makes <dst> (zeroed or initialized) an exact copy of <src> (window_s and
 * the ring's size included): a few KB for short windows, cheap enough to
 * snapshot every tick. */
void hl_window_copy(struct hl_window *dst, const struct hl_window *src);

/* Adds the outcomes of <src> into <dst> (per-worker windows into one), second
 * by second, as if every push to <src> had been made to <dst>: a second of
 * <src> too old for <dst>'s newest second is dropped, and the same second
 * adds up (<dst>'s ring grows when it must). Both must have the same
 * window_s and be two windows (asserted). After the merge,
 * stats at any now_ms at or past both windows' newest pushes equal those of
 * one window that saw all pushes in time order. */
void hl_window_merge(struct hl_window *dst, const struct hl_window *src);

#endif
