/*
 * metrics: see metrics.h. Text is appended to the caller's evbuffer line by
 * line; a refused call appends nothing, so the text written so far stays
 * well-formed even when the caller ignores a -1.
 *
 * In parts (met_init_part), every family, sample or histogram call is a
 * numbered step: a part writes its stretch of steps and only counts the
 * others, so the caller can run the same sequence once per part without
 * keeping where each of its loops stood; a step not written costs a
 * compare (and a family's name copy), not its formatting.
 *
 * Workload: one scrape every few seconds of a few hundred lines; clarity
 * over speed, but no allocation beyond the evbuffer's own.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>

#include "lib/metrics.h"

static const char *const type_names[] = {
    [MET_COUNTER] = "counter", [MET_GAUGE] = "gauge", [MET_HISTOGRAM] = "histogram",
};

void
met_init(struct met_writer *w, struct evbuffer *out)
{
    w->out = out;
    w->family[0] = '\0';
    w->type = MET_GAUGE;
    w->nseen = 0;
    w->failed = false;
    w->step = 0;
    w->from = 0;
    w->until = UINT64_MAX;
    w->deadline_ns = 0;
}

static uint64_t
mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void
met_init_part(struct met_writer *w, struct evbuffer *out, uint64_t from, unsigned budget_us)
{
    met_init(w, out);
    w->from = from;
    w->deadline_ns = mono_ns() + (uint64_t)budget_us * 1000u;
}

uint64_t
met_steps(const struct met_writer *w)
{
    return w->step;
}

bool
met_part_done(const struct met_writer *w, uint64_t *next)
{
    *next = w->until;
    return w->until == UINT64_MAX;
}

bool
met_part_over(const struct met_writer *w)
{
    return w->until != UINT64_MAX;
}

/* Counts a step; true when it is not this part's to write. The clock is
 * read every 32 steps written, so a part writes at least 32. */
static bool
step_skipped(struct met_writer *w)
{
    uint64_t s = w->step++;

    if (s < w->from || s >= w->until)
        return true;
    if (w->deadline_ns != 0 && s > w->from && ((s - w->from) & 31) == 0
        && mono_ns() >= w->deadline_ns) {
        w->until = s;
        return true;
    }
    return false;
}

bool
met_failed(const struct met_writer *w)
{
    return w->failed;
}

static int
refuse(struct met_writer *w)
{
    w->failed = true;
    return -1;
}

static bool
is_alpha_(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_';
}

static bool
is_digit(char ch)
{
    return ch >= '0' && ch <= '9';
}

/* A metric name: [a-zA-Z_:][a-zA-Z0-9_:]*, shorter than MET_NAME_MAX. */
static bool
valid_metric_name(const char *s)
{
    size_t i;

    if (s == NULL || s[0] == '\0' || strlen(s) >= MET_NAME_MAX)
        return false;
    for (i = 0; s[i] != '\0'; i++) {
        if (!is_alpha_(s[i]) && s[i] != ':' && (i == 0 || !is_digit(s[i])))
            return false;
    }
    return true;
}

/* A label name: [a-zA-Z_][a-zA-Z0-9_]*, not "__…" (reserved), not "le"
 * (histograms add it themselves). */
static bool
valid_label_name(const char *s)
{
    size_t i;

    if (s == NULL || s[0] == '\0' || strlen(s) >= MET_NAME_MAX)
        return false;
    if ((s[0] == '_' && s[1] == '_') || strcmp(s, "le") == 0)
        return false;
    for (i = 0; s[i] != '\0'; i++) {
        if (!is_alpha_(s[i]) && (i == 0 || !is_digit(s[i])))
            return false;
    }
    return true;
}

static bool
valid_labels(const struct met_label *labels, size_t n)
{
    size_t i;

    if (n > MET_LABELS_MAX || (n > 0 && labels == NULL))
        return false;
    for (i = 0; i < n; i++) {
        if (!valid_label_name(labels[i].name) || labels[i].value == NULL)
            return false;
    }
    return true;
}

/* Appends <s> with the characters the format escapes: backslash and
 * newline always, the double quote inside label values (<quote>). */
static void
add_escaped(struct evbuffer *out, const char *s, bool quote)
{
    const char *run = s;

    for (; *s != '\0'; s++) {
        const char *esc = NULL;

        if (*s == '\\')
            esc = "\\\\";
        else if (*s == '\n')
            esc = "\\n";
        else if (*s == '"' && quote)
            esc = "\\\"";
        if (esc == NULL)
            continue;
        evbuffer_add(out, run, (size_t)(s - run));
        evbuffer_add(out, esc, 2);
        run = s + 1;
    }
    evbuffer_add(out, run, (size_t)(s - run));
}

const char *
met_format_double(double v, char *buf, size_t len)
{
    char *p;

    if (isnan(v)) {
        snprintf(buf, len, "NaN");
        return buf;
    }
    if (isinf(v)) {
        snprintf(buf, len, v > 0 ? "+Inf" : "-Inf");
        return buf;
    }
    if (v == floor(v) && fabs(v) < 9007199254740992.0) {
        /* integral and exactly representable: no exponent, no fraction */
        snprintf(buf, len, "%lld", (long long)v);
        return buf;
    }
    snprintf(buf, len, "%.15g", v);
    if (strtod(buf, NULL) != v)
        snprintf(buf, len, "%.17g", v);
    /* whatever LC_NUMERIC says, Prometheus reads a '.' */
    for (p = buf; *p != '\0'; p++) {
        if (!is_digit(*p) && *p != 'e' && *p != 'E' && *p != '-' && *p != '+')
            *p = '.';
    }
    return buf;
}

/* Appends "<name><suffix>{l1="v1",…[,le="<le>"]} " (no braces without
 * labels). */
static void
add_series(struct met_writer *w, const char *suffix, const struct met_label *labels,
           size_t n, const char *le)
{
    size_t i;

    evbuffer_add_printf(w->out, "%s%s", w->family, suffix);
    if (n > 0 || le != NULL) {
        evbuffer_add(w->out, "{", 1);
        for (i = 0; i < n; i++) {
            evbuffer_add_printf(w->out, "%s%s=\"", i > 0 ? "," : "", labels[i].name);
            add_escaped(w->out, labels[i].value, true);
            evbuffer_add(w->out, "\"", 1);
        }
        if (le != NULL)
            evbuffer_add_printf(w->out, "%sle=\"%s\"", n > 0 ? "," : "", le);
        evbuffer_add(w->out, "}", 1);
    }
    evbuffer_add(w->out, " ", 1);
}

int
met_family(struct met_writer *w, const char *name, enum met_type type, const char *help)
{
    size_t len;
    unsigned i;

    if (step_skipped(w)) {
        /* the samples a part writes next belong to it */
        if (name != NULL && (len = strlen(name)) < MET_NAME_MAX) {
            memcpy(w->family, name, len + 1);
            w->type = type;
        }
        return 0;
    }
    if (!valid_metric_name(name) || (unsigned)type > MET_HISTOGRAM)
        return refuse(w);
    len = strlen(name);
    if (type == MET_COUNTER && (len <= 6 || strcmp(name + len - 6, "_total") != 0))
        return refuse(w);
    for (i = 0; i < w->nseen; i++) {
        if (strcmp(w->seen[i], name) == 0)
            return refuse(w);          /* a family's samples must be contiguous */
    }
    if (w->nseen >= MET_FAMILIES_MAX)
        return refuse(w);
    memcpy(w->seen[w->nseen++], name, len + 1);
    memcpy(w->family, name, len + 1);
    w->type = type;
    evbuffer_add_printf(w->out, "# HELP %s ", name);
    add_escaped(w->out, help != NULL ? help : "", false);
    evbuffer_add_printf(w->out, "\n# TYPE %s %s\n", name, type_names[type]);
    return 0;
}

static int
check_scalar(struct met_writer *w, const struct met_label *labels, size_t n)
{
    if (w->family[0] == '\0' || w->type == MET_HISTOGRAM || !valid_labels(labels, n))
        return refuse(w);
    return 0;
}

int
met_sample_u64(struct met_writer *w, const struct met_label *labels, size_t nlabels,
               uint64_t value)
{
    if (step_skipped(w))
        return 0;
    if (check_scalar(w, labels, nlabels) != 0)
        return -1;
    add_series(w, "", labels, nlabels, NULL);
    evbuffer_add_printf(w->out, "%llu\n", (unsigned long long)value);
    return 0;
}

int
met_sample_double(struct met_writer *w, const struct met_label *labels, size_t nlabels,
                  double value)
{
    char num[64];

    if (step_skipped(w))
        return 0;
    if (check_scalar(w, labels, nlabels) != 0)
        return -1;
    add_series(w, "", labels, nlabels, NULL);
    evbuffer_add_printf(w->out, "%s\n", met_format_double(value, num, sizeof(num)));
    return 0;
}

int
met_histogram(struct met_writer *w, const struct met_label *labels, size_t nlabels,
              const double *bounds, size_t nbounds, const uint64_t *counts, double sum)
{
    char le[64], num[64];
    uint64_t cum = 0;
    size_t i;

    if (step_skipped(w))
        return 0;
    if (w->family[0] == '\0' || w->type != MET_HISTOGRAM || !valid_labels(labels, nlabels)
        || nbounds > MET_BUCKETS_MAX || (nbounds > 0 && bounds == NULL) || counts == NULL)
        return refuse(w);
    for (i = 0; i < nbounds; i++) {
        if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1])))
            return refuse(w);
    }
    for (i = 0; i <= nbounds; i++) {
        cum += counts[i];
        if (i < nbounds)
            met_format_double(bounds[i], le, sizeof(le));
        else
            snprintf(le, sizeof(le), "+Inf");
        add_series(w, "_bucket", labels, nlabels, le);
        evbuffer_add_printf(w->out, "%llu\n", (unsigned long long)cum);
    }
    add_series(w, "_sum", labels, nlabels, NULL);
    evbuffer_add_printf(w->out, "%s\n", met_format_double(sum, num, sizeof(num)));
    add_series(w, "_count", labels, nlabels, NULL);
    evbuffer_add_printf(w->out, "%llu\n", (unsigned long long)cum);
    return 0;
}
