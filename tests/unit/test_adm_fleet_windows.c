/* tests/unit/test_adm_fleet_windows.c: the fleet's windows as the database
 * holds them (admin/fleet_windows.c): what an instance publishes reads back
 * to the same counts, and a row that is malformed or does not add up is
 * refused with the reason, never summed. */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "admin/fleet_windows.h"
#include "admin/state.h"

static struct hl_window w;

/* The PostgreSQL array text of JSON array <a> ("{1,2,3}"). */
static char *
pg_array(const json_t *a)
{
    char *buf = calloc(1, 4096);
    size_t i, n = 0;
    const json_t *v;

    assert_non_null(buf);
    n += (size_t)snprintf(buf + n, 4096 - n, "{");
    json_array_foreach(a, i, v)
        n += (size_t)snprintf(buf + n, 4096 - n, "%s%lld", i > 0 ? "," : "",
                              (long long)json_integer_value(v));
    snprintf(buf + n, 4096 - n, "}");
    return buf;
}

static void
test_round_trip(void **state)
{
    struct adm_fw_svc s[2];
    struct hl_counts back;
    struct hl_stats a, b;
    json_t *doc, *row, *ap;
    char err[160], *lc, *lh, *nc, *nh;
    unsigned i;

    (void)state;
    memset(s, 0, sizeof(s));
    hl_window_init(&w, 10);
    for (i = 0; i < 50; i++)
        hl_window_push(&w, 10000 + i, i % 7 == 0 ? HL_OUT_5XX : HL_OUT_2XX, 100 + i * 997);
    hl_window_push(&w, 10500, HL_OUT_ERROR, 70000000);     /* the last bin */
    snprintf(s[0].name, sizeof(s[0].name), "web");
    s[0].generation = 7;
    s[0].weight_bp = 1250;
    s[0].state = ADM_ST_PROGRESSING;
    s[0].window_s = 10;
    hl_window_counts(&w, 10999, &s[0].side[RT_NEW]);
    snprintf(s[1].name, sizeof(s[1].name), "api");           /* empty windows */
    s[1].state = ADM_ST_STEADY;
    s[1].window_s = 30;
    doc = adm_fw_publish_doc(s, 2);
    assert_int_equal(json_array_size(doc), 2);
    row = json_array_get(doc, 0);
    assert_string_equal(json_string_value(json_object_get(row, "service")), "web");
    assert_int_equal(json_integer_value(json_object_get(row, "generation")), 7);
    assert_int_equal(json_integer_value(json_object_get(row, "window_s")), 10);
    assert_int_equal(json_array_size(json_object_get(row, "nc")), HL_OUT__COUNT);
    /* only the bins that hold something, in pairs */
    assert_true(json_array_size(json_object_get(row, "nh")) % 2 == 0);
    assert_true(json_array_size(json_object_get(row, "nh")) < 2 * HL_HIST_BINS);
    assert_int_equal(json_array_size(json_object_get(row, "lh")), 0);
    lc = pg_array(json_object_get(row, "lc"));
    lh = pg_array(json_object_get(row, "lh"));
    nc = pg_array(json_object_get(row, "nc"));
    nh = pg_array(json_object_get(row, "nh"));
    assert_int_equal(adm_fw_counts_parse(nc, nh, &back, err, sizeof(err)), 0);
    assert_memory_equal(&back, &s[0].side[RT_NEW], sizeof(back));
    hl_counts_stats(&back, &a);
    hl_window_stats(&w, 10999, &b);
    assert_int_equal(a.requests, 51);
    assert_true(a.p99_ms == b.p99_ms && a.errors == b.errors);
    assert_int_equal(adm_fw_counts_parse(lc, lh, &back, err, sizeof(err)), 0);
    hl_counts_stats(&back, &a);
    assert_int_equal(a.requests, 0);
    /* what the instance row says it applied */
    ap = adm_fw_applied(s, 2);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(ap, "web"),
                                                        "weight_bp")), 1250);
    assert_string_equal(json_string_value(json_object_get(json_object_get(ap, "web"),
                                                          "state")), "progressing");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(ap, "api"),
                                                        "generation")), 0);
    json_decref(ap);
    json_decref(doc);
    free(lc);
    free(lh);
    free(nc);
    free(nh);
}

static void
test_refused(void **state)
{
    static const struct { const char *c, *h, *why; } t[] = {
        { "{1,2,3,4}", "{1,10}", "4 elements, not 5" },
        { "{1,2,3,4,5,6}", "{}", "more than 5 elements" },
        { "1,2,3,4,5", "{}", "not an array" },
        { NULL, "{}", "not an array" },
        { "{1,2,-3,4,5}", "{}", "element 3 is not a non-negative integer" },
        { "{1,2,3,4,5} ", "{}", "malformed after element 5" },
        { "{1,2,3,4,99999999999999999999}", "{}", "out of range" },
        { "{1,0,0,0,0}", "{3}", "not (bin, count) pairs" },
        { "{1,0,0,0,0}", "{106,1}", "bin 106 out of range" },
        { "{2,0,0,0,0}", "{5,1,5,1}", "out of order" },
        { "{2,0,0,0,0}", "{6,1,5,1}", "out of order" },
        { "{2,0,0,0,0}", "{5,1}", "holds 1 latencies for 2 outcomes" },
        { "{0,0,0,0,0}", "{5,1}", "holds 1 latencies for 0 outcomes" },
    };
    struct hl_counts c;
    char err[160];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        memset(&c, 0xff, sizeof(c));
        assert_int_equal(adm_fw_counts_parse(t[i].c, t[i].h, &c, err, sizeof(err)), -1);
        if (strstr(err, t[i].why) == NULL)
            fail_msg("case %zu: \"%s\" does not say \"%s\"", i, err, t[i].why);
        /* nothing of a refused row is kept */
        assert_int_equal(c.by_class[0], 0);
        assert_int_equal(c.hist[5], 0);
    }
    assert_int_equal(adm_fw_counts_parse("{0,0,0,0,0}", "{}", &c, err, sizeof(err)), 0);
    assert_int_equal(adm_fw_counts_parse("{3,0,0,1,0}", "{0,1,105,3}", &c, err, sizeof(err)),
                     0);
    assert_int_equal(c.hist[105], 3);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_refused),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
