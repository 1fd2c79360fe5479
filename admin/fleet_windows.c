/*
 * fleet_windows: the fleet's windows as the database holds them (see
 * fleet_windows.h).
 */
#include "admin/fleet_windows.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/state.h"

/* The classes of <c> as a JSON array. */
static json_t *
classes_json(const struct hl_counts *c)
{
    json_t *a = json_array();
    unsigned k;

    for (k = 0; k < HL_OUT__COUNT; k++)
        json_array_append_new(a, json_integer((json_int_t)c->by_class[k]));
    return a;
}

/* The bins of <c> that hold something, as [bin, count, bin, count, ...]. */
static json_t *
hist_json(const struct hl_counts *c)
{
    json_t *a = json_array();
    unsigned k;

    for (k = 0; k < HL_HIST_BINS; k++) {
        if (c->hist[k] == 0)
            continue;
        json_array_append_new(a, json_integer((json_int_t)k));
        json_array_append_new(a, json_integer((json_int_t)c->hist[k]));
    }
    return a;
}

json_t *
adm_fw_publish_doc(const struct adm_fw_svc *s, unsigned n)
{
    json_t *doc = json_array();
    unsigned i;

    for (i = 0; i < n; i++)
        json_array_append_new(doc, json_pack(
            "{s:s, s:I, s:I, s:o, s:o, s:o, s:o}", "service", s[i].name,
            "generation", (json_int_t)s[i].generation, "window_s", (json_int_t)s[i].window_s,
            "lc", classes_json(&s[i].side[RT_LEGACY]), "lh", hist_json(&s[i].side[RT_LEGACY]),
            "nc", classes_json(&s[i].side[RT_NEW]), "nh", hist_json(&s[i].side[RT_NEW])));
    return doc;
}

json_t *
adm_fw_applied(const struct adm_fw_svc *s, unsigned n)
{
    json_t *o = json_object();
    unsigned i;

    for (i = 0; i < n; i++)
        json_object_set_new(o, s[i].name, json_pack(
            "{s:I, s:I, s:s}", "generation", (json_int_t)s[i].generation,
            "weight_bp", (json_int_t)s[i].weight_bp,
            "state", s[i].state >= 0 && s[i].state < ADM_ST__COUNT
                     ? adm_state_names[s[i].state] : "unknown"));
    return o;
}

/* Reads array text "{1,2,3}" of non-negative integers into <v> (at most
 * <max>); *<n> gets the count. 0, or -1 with <err>. */
static int
array_parse(const char *text, const char *what, uint64_t *v, unsigned max, unsigned *n,
            char *err, size_t errlen)
{
    const char *p = text;
    char *end;

    *n = 0;
    if (p == NULL || *p++ != '{') {
        snprintf(err, errlen, "%s: not an array", what);
        return -1;
    }
    if (*p == '}' && p[1] == '\0')
        return 0;
    for (;;) {
        if (*p < '0' || *p > '9') {
            snprintf(err, errlen, "%s: element %u is not a non-negative integer", what,
                     *n + 1);
            return -1;
        }
        if (*n >= max) {
            snprintf(err, errlen, "%s: more than %u elements", what, max);
            return -1;
        }
        errno = 0;
        v[*n] = strtoull(p, &end, 10);
        if (errno != 0) {
            snprintf(err, errlen, "%s: element %u is out of range", what, *n + 1);
            return -1;
        }
        (*n)++;
        p = end;
        if (*p == ',') {
            p++;
            continue;
        }
        if (*p == '}' && p[1] == '\0')
            return 0;
        snprintf(err, errlen, "%s: malformed after element %u", what, *n);
        return -1;
    }
}

int
adm_fw_counts_parse(const char *classes, const char *hist, struct hl_counts *out,
                    char *err, size_t errlen)
{
    uint64_t pairs[2 * HL_HIST_BINS], requests = 0, latencies = 0;
    unsigned n, k;
    int last = -1;

    memset(out, 0, sizeof(*out));
    if (array_parse(classes, "classes", out->by_class, HL_OUT__COUNT, &n, err, errlen) != 0)
        goto fail;
    if (n != HL_OUT__COUNT) {
        snprintf(err, errlen, "classes: %u elements, not %d", n, HL_OUT__COUNT);
        goto fail;
    }
    if (array_parse(hist, "histogram", pairs, 2 * HL_HIST_BINS, &n, err, errlen) != 0)
        goto fail;
    if (n % 2 != 0) {
        snprintf(err, errlen, "histogram: %u elements, not (bin, count) pairs", n);
        goto fail;
    }
    for (k = 0; k < n; k += 2) {
        if (pairs[k] >= HL_HIST_BINS || (int)pairs[k] <= last) {
            snprintf(err, errlen, "histogram: bin %llu out of range or out of order",
                     (unsigned long long)pairs[k]);
            goto fail;
        }
        last = (int)pairs[k];
        out->hist[pairs[k]] = pairs[k + 1];
        latencies += pairs[k + 1];
    }
    for (k = 0; k < HL_OUT__COUNT; k++)
        requests += out->by_class[k];
    if (latencies != requests) {
        snprintf(err, errlen, "histogram holds %llu latencies for %llu outcomes",
                 (unsigned long long)latencies, (unsigned long long)requests);
        goto fail;
    }
    return 0;
fail:
    memset(out, 0, sizeof(*out));
    return -1;
}

json_t *
adm_fw_window_json(const struct hl_counts *c)
{
    struct hl_stats st;

    hl_counts_stats(c, &st);
    return json_pack("{s:I, s:I, s:f, s:f, s:f}", "requests", (json_int_t)st.requests,
                     "errors", (json_int_t)st.errors, "error_rate", st.error_rate,
                     "p50_ms", st.p50_ms, "p99_ms", st.p99_ms);
}
