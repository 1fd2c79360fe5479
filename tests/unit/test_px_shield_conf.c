/*
 * The "shield" section (proxy/shield_conf.c): defaults, every key read,
 * and bad input refused with the path of the offending value and a precise
 * reason, leaving the output untouched; the section is refused in tcp mode.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "lib/conf.h"
#include "proxy/shield_conf.h"

static int
parse(const char *text, bool http, struct px_shield_conf *out, struct conf_err *err)
{
    json_t *j = text != NULL ? json_loads(text, 0, NULL) : NULL;
    int rc;

    if (text != NULL)
        assert_non_null(j);
    rc = px_shield_conf_parse(j, "services[0].shield", "t.json", http, out, err);
    json_decref(j);
    return rc;
}

static void
test_defaults(void **state)
{
    struct px_shield_conf c;
    struct conf_err err;

    (void)state;
    assert_int_equal(parse(NULL, true, &c, &err), 0);
    assert_true(c.enabled);
    assert_int_equal(c.nmethods, 3);
    assert_string_equal(c.methods[0], "GET");
    assert_string_equal(c.methods[2], "OPTIONS");
    assert_false(c.unsafe);
    assert_int_equal(c.on, (1u << PX_SH__COUNT) - 1);
    assert_true(px_shield_status_listed(&c, 500));
    assert_false(px_shield_status_listed(&c, 501));
    assert_true(px_shield_status_listed(&c, 504));
    assert_int_equal(c.max_body_bytes, 65536);
    assert_true(c.budget_ratio == 0.2);
    assert_int_equal(c.budget_min_per_s, 10);
    /* tcp mode: off, and the section refused */
    assert_int_equal(parse(NULL, false, &c, &err), 0);
    assert_false(c.enabled);
    assert_int_equal(parse("{}", false, &c, &err), -1);
    assert_string_equal(err.path, "services[0].shield");
    assert_string_equal(err.msg, "only valid in http mode");
}

static void
test_keys(void **state)
{
    struct px_shield_conf c, d;
    struct conf_err err;

    (void)state;
    assert_int_equal(parse("{\"enabled\": false, \"methods\": [\"GET\", \"POST\"], "
                           "\"on\": [\"5xx\"], \"statuses\": [503, 599], "
                           "\"max_body_bytes\": 0, \"budget_ratio\": 1, "
                           "\"budget_min_per_s\": 0}", true, &c, &err), 0);
    assert_false(c.enabled);
    assert_int_equal(c.nmethods, 2);
    assert_true(c.unsafe);
    assert_int_equal(c.on, 1u << PX_SH_5XX);
    assert_true(px_shield_status_listed(&c, 503) && px_shield_status_listed(&c, 599));
    assert_false(px_shield_status_listed(&c, 500));
    assert_int_equal(c.max_body_bytes, 0);
    assert_true(c.budget_ratio == 1);
    assert_int_equal(c.budget_min_per_s, 0);
    d = c;
    assert_true(px_shield_conf_equal(&c, &d));
    d.statuses[1] = 1;
    assert_false(px_shield_conf_equal(&c, &d));
}

static void
test_bad_input(void **state)
{
    static const struct { const char *text, *path, *msg; } cases[] = {
        { "[]", "services[0].shield", "must be an object" },
        { "{\"retries\": 1}", "services[0].shield.retries", NULL },
        { "{\"enabled\": 1}", "services[0].shield.enabled", "must be true or false" },
        { "{\"methods\": \"GET\"}", "services[0].shield.methods", NULL },
        { "{\"methods\": [\"get\"]}", "services[0].shield.methods[0]",
          "must be a method name in capitals (\"GET\")" },
        { "{\"methods\": [\"GET\", \"GET\"]}", "services[0].shield.methods[1]",
          "\"GET\" is listed twice" },
        { "{\"on\": [\"4xx\"]}", "services[0].shield.on[0]",
          "must be \"connect\", \"reset\", \"timeout\" or \"5xx\"" },
        { "{\"on\": [\"reset\", \"reset\"]}", "services[0].shield.on[1]",
          "\"reset\" is listed twice" },
        { "{\"statuses\": [404]}", "services[0].shield.statuses[0]", NULL },
        { "{\"statuses\": [502, 502]}", "services[0].shield.statuses[1]",
          "502 is listed twice" },
        { "{\"max_body_bytes\": -1}", "services[0].shield.max_body_bytes", NULL },
        { "{\"budget_ratio\": 1.5}", "services[0].shield.budget_ratio", NULL },
        { "{\"budget_min_per_s\": 100001}", "services[0].shield.budget_min_per_s", NULL },
    };
    struct px_shield_conf c, before;
    struct conf_err err;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memset(&c, 0x5a, sizeof(c));
        before = c;
        memset(&err, 0, sizeof(err));
        if (parse(cases[i].text, true, &c, &err) != -1)
            fail_msg("%s: accepted", cases[i].text);
        if (strcmp(err.path, cases[i].path) != 0)
            fail_msg("%s: path %s, not %s", cases[i].text, err.path, cases[i].path);
        if (cases[i].msg != NULL && strcmp(err.msg, cases[i].msg) != 0)
            fail_msg("%s: message \"%s\"", cases[i].text, err.msg);
        assert_true(err.msg[0] != '\0');
        assert_memory_equal(&c, &before, sizeof(c));    /* nothing changed */
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_bad_input),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
