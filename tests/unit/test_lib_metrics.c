/*
 * tests/unit/test_lib_metrics.c: lib/metrics.c, the Prometheus text
 * writer. A scrape that Prometheus cannot parse loses every metric at once,
 * so the exact text is compared: escaping of label values and help, the
 * shape of a histogram (cumulative buckets, +Inf, _sum, _count), numbers
 * without the locale, and the rules that keep a family's samples together
 * under one HELP/TYPE (refused calls write nothing and latch met_failed).
 * A scrape written in parts (met_init_part) is the text written at once,
 * whatever the budget, also when a part stops its walk once it is over:
 * each part starts where the last one stopped and writes at least 32 steps.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "lib/metrics.h"

struct fixture {
    struct evbuffer *out;
    struct met_writer w;
};

static int
setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    f->out = evbuffer_new();
    assert_non_null(f->out);
    met_init(&f->w, f->out);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;

    evbuffer_free(f->out);
    free(f);
    return 0;
}

/* The text written so far (NUL-terminated, owned by the caller). */
static char *
text(struct fixture *f)
{
    size_t n = evbuffer_get_length(f->out);
    char *s = malloc(n + 1);

    assert_non_null(s);
    evbuffer_copyout(f->out, s, n);
    s[n] = '\0';
    return s;
}

static void
assert_text(struct fixture *f, const char *expected)
{
    char *s = text(f);

    if (strcmp(s, expected) != 0)
        fprintf(stderr, "--- expected\n%s--- got\n%s---\n", expected, s);
    assert_string_equal(s, expected);
    free(s);
}

static void
test_counter_and_gauge(void **state)
{
    struct fixture *f = *state;
    const struct met_label l[] = { { "service", "web" }, { "side", "new" } };

    assert_int_equal(met_family(&f->w, "cutover_requests_total", MET_COUNTER,
                                "Requests by side."), 0);
    assert_int_equal(met_sample_u64(&f->w, l, 2, 18446744073709551615ULL), 0);
    assert_int_equal(met_sample_u64(&f->w, l, 1, 0), 0);
    assert_int_equal(met_family(&f->w, "cutover_weight_percent", MET_GAUGE, "Weight."), 0);
    assert_int_equal(met_sample_double(&f->w, l, 1, 12.5), 0);
    assert_int_equal(met_sample_double(&f->w, NULL, 0, 100), 0);
    assert_false(met_failed(&f->w));
    assert_text(f,
                "# HELP cutover_requests_total Requests by side.\n"
                "# TYPE cutover_requests_total counter\n"
                "cutover_requests_total{service=\"web\",side=\"new\"} 18446744073709551615\n"
                "cutover_requests_total{service=\"web\"} 0\n"
                "# HELP cutover_weight_percent Weight.\n"
                "# TYPE cutover_weight_percent gauge\n"
                "cutover_weight_percent{service=\"web\"} 12.5\n"
                "cutover_weight_percent 100\n");
}

static void
test_label_value_escaping(void **state)
{
    struct fixture *f = *state;
    const struct met_label l[] = { { "reason", "a\\b \"q\"\nnext" }, { "x", "" } };

    assert_int_equal(met_family(&f->w, "t_total", MET_COUNTER, "back\\slash\nand \"quotes\""),
                     0);
    assert_int_equal(met_sample_u64(&f->w, l, 2, 1), 0);
    /* help escapes backslash and newline only; label values also the quote */
    assert_text(f,
                "# HELP t_total back\\\\slash\\nand \"quotes\"\n"
                "# TYPE t_total counter\n"
                "t_total{reason=\"a\\\\b \\\"q\\\"\\nnext\",x=\"\"} 1\n");
}

static void
test_histogram_shape(void **state)
{
    struct fixture *f = *state;
    const double bounds[] = { 0.005, 0.1, 1, 2.5 };
    const uint64_t counts[] = { 3, 0, 2, 1, 4 };   /* last: above 2.5 */
    const struct met_label l[] = { { "side", "legacy" } };

    assert_int_equal(met_family(&f->w, "d_seconds", MET_HISTOGRAM, "Latency."), 0);
    assert_int_equal(met_histogram(&f->w, l, 1, bounds, 4, counts, 12.25), 0);
    assert_text(f,
                "# HELP d_seconds Latency.\n"
                "# TYPE d_seconds histogram\n"
                "d_seconds_bucket{side=\"legacy\",le=\"0.005\"} 3\n"
                "d_seconds_bucket{side=\"legacy\",le=\"0.1\"} 3\n"
                "d_seconds_bucket{side=\"legacy\",le=\"1\"} 5\n"
                "d_seconds_bucket{side=\"legacy\",le=\"2.5\"} 6\n"
                "d_seconds_bucket{side=\"legacy\",le=\"+Inf\"} 10\n"
                "d_seconds_sum{side=\"legacy\"} 12.25\n"
                "d_seconds_count{side=\"legacy\"} 10\n");
}

static void
test_histogram_without_labels_or_bounds(void **state)
{
    struct fixture *f = *state;
    const uint64_t counts[] = { 7 };

    assert_int_equal(met_family(&f->w, "h", MET_HISTOGRAM, ""), 0);
    assert_int_equal(met_histogram(&f->w, NULL, 0, NULL, 0, counts, 0), 0);
    assert_text(f,
                "# HELP h \n"
                "# TYPE h histogram\n"
                "h_bucket{le=\"+Inf\"} 7\n"
                "h_sum 0\n"
                "h_count 7\n");
}

static void
test_histogram_refusals(void **state)
{
    struct fixture *f = *state;
    const double unsorted[] = { 1, 0.5 };
    const double same[] = { 1, 1 };
    const double inf[] = { 1, INFINITY };
    const uint64_t counts[] = { 1, 2, 3 };
    const struct met_label le[] = { { "le", "1" } };

    /* a histogram sample outside a histogram family, and the reverse */
    assert_int_equal(met_family(&f->w, "g", MET_GAUGE, "g"), 0);
    assert_int_equal(met_histogram(&f->w, NULL, 0, same, 1, counts, 0), -1);
    assert_int_equal(met_family(&f->w, "h", MET_HISTOGRAM, "h"), 0);
    assert_int_equal(met_sample_u64(&f->w, NULL, 0, 1), -1);
    assert_int_equal(met_histogram(&f->w, NULL, 0, unsorted, 2, counts, 0), -1);
    assert_int_equal(met_histogram(&f->w, NULL, 0, same, 2, counts, 0), -1);
    assert_int_equal(met_histogram(&f->w, NULL, 0, inf, 2, counts, 0), -1);
    assert_int_equal(met_histogram(&f->w, le, 1, same, 1, counts, 0), -1);
    assert_true(met_failed(&f->w));
    /* refused calls wrote nothing */
    assert_text(f, "# HELP g g\n# TYPE g gauge\n# HELP h h\n# TYPE h histogram\n");
}

static void
test_family_ordering(void **state)
{
    struct fixture *f = *state;
    const struct met_label l[] = { { "service", "a" } };

    /* a sample before any family has nowhere to go */
    assert_int_equal(met_sample_u64(&f->w, l, 1, 1), -1);
    assert_int_equal(met_family(&f->w, "a_total", MET_COUNTER, "A."), 0);
    assert_int_equal(met_sample_u64(&f->w, l, 1, 1), 0);
    assert_int_equal(met_family(&f->w, "b", MET_GAUGE, "B."), 0);
    assert_int_equal(met_sample_u64(&f->w, l, 1, 2), 0);
    /* going back to a family would split its samples: refused */
    assert_int_equal(met_family(&f->w, "a_total", MET_COUNTER, "A."), -1);
    assert_int_equal(met_family(&f->w, "a_total", MET_GAUGE, "A."), -1);
    /* still the open family: samples land under "b" */
    assert_int_equal(met_sample_u64(&f->w, l, 1, 3), 0);
    assert_true(met_failed(&f->w));
    assert_text(f,
                "# HELP a_total A.\n# TYPE a_total counter\na_total{service=\"a\"} 1\n"
                "# HELP b B.\n# TYPE b gauge\nb{service=\"a\"} 2\nb{service=\"a\"} 3\n");
}

static void
test_names(void **state)
{
    struct fixture *f = *state;
    const struct met_label bad1[] = { { "1x", "v" } };
    const struct met_label bad2[] = { { "__name", "v" } };
    const struct met_label bad3[] = { { "a-b", "v" } };
    const struct met_label bad4[] = { { "ok", NULL } };
    const struct met_label good[] = { { "_ok9", "v" } };
    char longname[MET_NAME_MAX + 1];

    assert_int_equal(met_family(&f->w, "requests", MET_COUNTER, "no _total"), -1);
    assert_int_equal(met_family(&f->w, "_total", MET_COUNTER, "only the suffix"), -1);
    assert_int_equal(met_family(&f->w, "9lives", MET_GAUGE, "digit first"), -1);
    assert_int_equal(met_family(&f->w, "a b", MET_GAUGE, "space"), -1);
    assert_int_equal(met_family(&f->w, "", MET_GAUGE, "empty"), -1);
    memset(longname, 'a', MET_NAME_MAX);
    longname[MET_NAME_MAX] = '\0';
    assert_int_equal(met_family(&f->w, longname, MET_GAUGE, "too long"), -1);
    assert_int_equal(met_family(&f->w, "ns:sub_x9", MET_GAUGE, "colons are fine"), 0);
    assert_int_equal(met_sample_u64(&f->w, bad1, 1, 1), -1);
    assert_int_equal(met_sample_u64(&f->w, bad2, 1, 1), -1);
    assert_int_equal(met_sample_u64(&f->w, bad3, 1, 1), -1);
    assert_int_equal(met_sample_u64(&f->w, bad4, 1, 1), -1);
    assert_int_equal(met_sample_u64(&f->w, good, 1, 1), 0);
    assert_text(f, "# HELP ns:sub_x9 colons are fine\n# TYPE ns:sub_x9 gauge\n"
                   "ns:sub_x9{_ok9=\"v\"} 1\n");
}

static void
test_numbers(void **state)
{
    static const struct {
        double v;
        const char *text;
    } cases[] = {
        { 0, "0" }, { -3, "-3" }, { 1e15, "1000000000000000" },
        { 9007199254740991.0, "9007199254740991" }, { 0.1, "0.1" }, { 0.0025, "0.0025" },
        { 2.5, "2.5" }, { 1.0 / 3.0, "0.33333333333333331" }, { 1e-7, "1e-07" },
        { 1e300, "1e+300" }, { 0.1 + 0.2, "0.30000000000000004" },
    };
    char buf[64];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        met_format_double(cases[i].v, buf, sizeof(buf));
        assert_string_equal(buf, cases[i].text);
        /* whatever was written reads back to the same value */
        assert_true(strtod(buf, NULL) == cases[i].v);
    }
    assert_string_equal(met_format_double(INFINITY, buf, sizeof(buf)), "+Inf");
    assert_string_equal(met_format_double(-INFINITY, buf, sizeof(buf)), "-Inf");
    assert_string_equal(met_format_double(NAN, buf, sizeof(buf)), "NaN");
}

static void
test_families_max(void **state)
{
    struct fixture *f = *state;
    char name[32];
    unsigned i;

    for (i = 0; i < MET_FAMILIES_MAX; i++) {
        snprintf(name, sizeof(name), "f%u", i);
        assert_int_equal(met_family(&f->w, name, MET_GAUGE, ""), 0);
    }
    assert_false(met_failed(&f->w));
    assert_int_equal(met_family(&f->w, "one_more", MET_GAUGE, ""), -1);
    assert_true(met_failed(&f->w));
}

/* A scrape of <nsvc> services: families of counters, a histogram each,
 * and families whose samples start in one part and end in another; like
 * proxy/metrics.c, it stops a part's walk once the part is over. */
static void
scrape(struct met_writer *w, unsigned nsvc)
{
    static const double bounds[3] = { 0.01, 0.1, 1 };
    struct met_label l[2] = { { "service", "" }, { "side", "" } };
    uint64_t counts[4];
    char name[16];
    unsigned i, k;

    met_family(w, "x_build_info", MET_GAUGE, "Always 1.");
    met_sample_u64(w, NULL, 0, 1);
    met_family(w, "x_requests_total", MET_COUNTER, "Requests\nby side.");
    for (i = 0; i < nsvc && !met_part_over(w); i++) {
        snprintf(name, sizeof(name), "s\"%u", i);
        l[0].value = name;
        for (k = 0; k < 2; k++) {
            l[1].value = k ? "new" : "legacy";
            met_sample_u64(w, l, 2, (uint64_t)i * 7 + k);
        }
    }
    if (met_part_over(w))
        return;
    met_family(w, "x_duration_seconds", MET_HISTOGRAM, "Time.");
    for (i = 0; i < nsvc; i++) {
        snprintf(name, sizeof(name), "s\"%u", i);
        l[0].value = name;
        for (k = 0; k < 4; k++)
            counts[k] = i + k;
        met_histogram(w, l, 1, bounds, 3, counts, i * 0.25);
    }
    met_family(w, "x_weight_percent", MET_GAUGE, "Weight.");
    for (i = 0; i < nsvc; i++) {
        snprintf(name, sizeof(name), "s\"%u", i);
        l[0].value = name;
        met_sample_double(w, l, 1, i / 3.0);
    }
}

static void
test_parts_make_the_text_at_once(void **state)
{
    struct fixture *f = *state;
    struct evbuffer *parts = evbuffer_new();
    struct met_writer *w = malloc(sizeof(*w));
    uint64_t next = 0, steps = 0;
    unsigned budget, nparts;
    char *once;

    assert_non_null(parts);
    assert_non_null(w);
    scrape(&f->w, 500);
    assert_false(met_failed(&f->w));
    once = text(f);
    for (budget = 0; budget <= 2000; budget = budget ? budget * 4 : 1) {
        evbuffer_drain(parts, evbuffer_get_length(parts));
        next = 0;
        for (nparts = 1;; nparts++) {
            size_t before = evbuffer_get_length(parts);
            uint64_t from = next;
            bool done;

            met_init_part(w, parts, next, budget);
            scrape(w, 500);
            assert_false(met_failed(w));
            done = met_part_done(w, &next);
            assert_true(done == !met_part_over(w));
            if (done) {
                steps = met_steps(w);   /* 1 + 1 + 1 + 1000 + 1 + 500 + 1 + 500 */
                break;
            }
            /* progress: at least 32 steps, and some text */
            assert_true(next >= from + 32);
            assert_true(evbuffer_get_length(parts) > before);
            assert_true(nparts < 10000);
        }
        if (budget == 0)
            assert_true(nparts > 10);
        print_message("budget %u us: %u parts\n", budget, nparts);
        assert_int_equal(evbuffer_get_length(parts), strlen(once));
        assert_memory_equal(evbuffer_pullup(parts, -1), once, strlen(once));
    }
    assert_int_equal(steps, 2005);
    free(once);
    free(w);
    evbuffer_free(parts);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_counter_and_gauge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_label_value_escaping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_histogram_shape, setup, teardown),
        cmocka_unit_test_setup_teardown(test_histogram_without_labels_or_bounds, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_histogram_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_family_ordering, setup, teardown),
        cmocka_unit_test_setup_teardown(test_names, setup, teardown),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test_setup_teardown(test_families_max, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parts_make_the_text_at_once, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
