/*
 * metrics: a writer of the Prometheus text exposition format 0.0.4 (a leaf
 * utility: libc and libevent's evbuffer only; every module but router/ may
 * use it). It owns the format, not the numbers: callers keep their counters
 * as plain integers in their own structs and hand them over at scrape time.
 *
 * The format is enforced by construction: a sample carries no name of its
 * own, it belongs to the family opened last, so the samples of a family are
 * always contiguous under one "# HELP" and one "# TYPE"; a family opened a
 * second time is refused. Label values are escaped (\\, \", \n), numbers are
 * written without the locale (integers exact, +Inf/-Inf/NaN spelled as
 * Prometheus reads them), histograms are cumulative and end with +Inf.
 *
 * Misuse (a bad name, a counter not ending in _total, a sample outside a
 * family, a family twice) returns -1, writes nothing of that call, and
 * latches met_failed(): a scrape is built in one go, so the caller checks
 * once at the end instead of after every line.
 *
 * A long scrape can be written in parts (met_init_part()): the caller runs
 * the same sequence of calls once per part; each part writes the calls
 * from where the last one stopped until its time budget is spent and only
 * counts the others, so the parts together are the text of one pass. The
 * sequence must be the same in every part (same families, same series).
 */
#ifndef CUTOVER_LIB_METRICS_H
#define CUTOVER_LIB_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;

enum met_type {
    MET_COUNTER = 0,             /* name must end in "_total" */
    MET_GAUGE,
    MET_HISTOGRAM,               /* samples: name_bucket{le}, name_sum, name_count */
};

#define MET_NAME_MAX     128     /* bytes of a metric or label name, NUL included */
#define MET_FAMILIES_MAX 128     /* families per writer (one scrape) */
#define MET_LABELS_MAX   8       /* labels per sample, "le" not counted */
#define MET_BUCKETS_MAX  64      /* finite histogram bounds */

struct met_label {
    const char *name;            /* [a-zA-Z_][a-zA-Z0-9_]*, not starting with "__" */
    const char *value;           /* any text; escaped on output */
};

/* One scrape being written. Caller-embedded: met_init(), no _fini (it owns
 * nothing but fixed arrays). */
struct met_writer {
    struct evbuffer *out;        /* borrowed: where the text goes */
    char family[MET_NAME_MAX];   /* the family open now; "" before the first */
    enum met_type type;          /* its type */
    char seen[MET_FAMILIES_MAX][MET_NAME_MAX];   /* families opened so far */
    unsigned nseen;
    bool failed;                 /* a call was refused (see met_failed) */
    /* in parts (met_init_part): every family, sample and histogram call is a
     * step, numbered from 0 in each pass; steps [from, until) are written */
    uint64_t step;               /* steps so far in this pass */
    uint64_t from;               /* the first step this part writes */
    uint64_t until;              /* the first it does not: UINT64_MAX until the
                                  * budget is spent */
    uint64_t deadline_ns;        /* CLOCK_MONOTONIC; 0: no budget (met_init) */
};

/* Starts a scrape that writes to <out> (borrowed, must outlive <w>'s use). */
void met_init(struct met_writer *w, struct evbuffer *out);

/* Starts a part of a scrape that writes to <out>: the steps before <from>
 * (written by earlier parts) are counted, not written; then steps are
 * written for about <budget_us> microseconds (at least 32 of them), and
 * the rest counted. Outside the steps it writes, a call is not checked and
 * returns 0. */
void met_init_part(struct met_writer *w, struct evbuffer *out, uint64_t from,
                   unsigned budget_us);

/* After a pass of a part: the steps the pass made, and whether the part
 * wrote up to the last one; when not, <*next> is the first step the next
 * part must write. */
uint64_t met_steps(const struct met_writer *w);
bool met_part_done(const struct met_writer *w, uint64_t *next);

/* True once the part has spent its budget: the rest of the pass would
 * write nothing, and the caller may stop it there (the part is then not
 * done; the walk to the end is what a part costs beyond its writing). */
bool met_part_over(const struct met_writer *w);

/* Opens family <name> of <type>: writes "# HELP <name> <help>" (help
 * escaped: \\ and \n) and "# TYPE <name> <type>". Every sample that follows
 * belongs to it. Returns 0, or -1 when <name> is not a valid metric name, a
 * counter's name does not end in "_total", the family was opened before in
 * this scrape, or MET_FAMILIES_MAX families were opened. */
int met_family(struct met_writer *w, const char *name, enum met_type type,
               const char *help);

/* One sample of the open counter or gauge with <nlabels> labels <labels>
 * (may be NULL when 0). Returns 0, or -1 when no counter or gauge family is
 * open, or a label name is invalid or reserved ("le" on any family). */
int met_sample_u64(struct met_writer *w, const struct met_label *labels, size_t nlabels,
                   uint64_t value);
int met_sample_double(struct met_writer *w, const struct met_label *labels,
                      size_t nlabels, double value);

/* One histogram of the open histogram family: <nbounds> finite upper bounds
 * <bounds>, strictly increasing, and <counts> holding nbounds + 1
 * observation counts per bucket, NOT cumulative (counts[i] for
 * bounds[i-1] < v <= bounds[i], the last one above every bound). Writes
 * the cumulative name_bucket{…,le="…"} series ending with le="+Inf", then
 * name_sum <sum> and name_count (the +Inf bucket). Returns 0, or -1 when no
 * histogram family is open, a label is invalid, or the bounds are not
 * finite and increasing. */
int met_histogram(struct met_writer *w, const struct met_label *labels, size_t nlabels,
                  const double *bounds, size_t nbounds, const uint64_t *counts,
                  double sum);

/* True when any call on <w> was refused since met_init(). */
bool met_failed(const struct met_writer *w);

/* Writes <v> as Prometheus reads it into <buf> (at least 32 bytes):
 * integral values below 2^53 in magnitude without a fraction ("3", "-2"),
 * others in the shortest of %.15g / %.17g that reads back exactly, always
 * with '.' as the decimal point whatever the locale; "+Inf", "-Inf", "NaN".
 * Returns <buf>. */
const char *met_format_double(double v, char *buf, size_t len);

#endif
