/*
 * cutoverd -t on every example in conf/ (so examples cannot rot), and the
 * error messages of a bad config: file, line, column and JSON path, exit 1.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tests/harness/harness.h"

static void
test_every_example_is_valid(void **state)
{
    const char *dir = h_src("conf");
    char path[1024], out[4096];
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    (void)state;
    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);

        if (len < 6 || strcmp(e->d_name + len - 5, ".json") != 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", h_src("conf"), e->d_name);
        if (h_cutoverd_check(path, out, sizeof(out)) != 0)
            fail_msg("%s: %s", path, out);
        n++;
    }
    closedir(d);
    assert_true(n >= 3);          /* demo, example, tcp at least */
}

static void
test_bad_configs_name_the_place(void **state)
{
    static const struct {
        const char *text;
        const char *expect;       /* substring after "FILE" */
    } cases[] = {
        { "{\n  \"services\": [\n", ":3:" },
        { "{\"services\": [{\"name\": \"web\", \"listen\": [\"127.0.0.1:1\"],\n"
          " \"legacy\": {\"servers\": [\"127.0.0.1:2\"]},\n"
          " \"new\": {\"servers\": [\"127.0.0.1:3\"]},\n"
          " \"rollback\": {\"max_error_rate\": 0.05,\n   \"rsie\": 3}}]}\n",
          ":5:4: services[0].rollback.rsie" },
        { "{\"services\": [{\"name\": \"web\", \"listen\": [\"127.0.0.1:1\"],\n"
          " \"legacy\": {\"servers\": [\"127.0.0.1:2\"]},\n"
          " \"new\": {\"servers\": [\"127.0.0.1:3\"]},\n"
          " \"rollback\": {\"max_error_rate\": 1.5}}]}\n",
          "services[0].rollback.max_error_rate: must be between 0 and 1" },
        { "{\"services\": [{\"name\": \"web\", \"listen\": [\"127.0.0.1:1\"],\n"
          " \"legacy\": {\"servers\": [\"127.0.0.1:2\"]},\n"
          " \"new\": {\"servers\": [\"127.0.0.1:3\"]}, \"weight\": 10.005}]}\n",
          "services[0].weight" },
    };
    char *dir = h_tmpdir(), path[1024], out[4096];
    size_t i;

    (void)state;
    assert_non_null(dir);
    snprintf(path, sizeof(path), "%s/bad.json", dir);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(h_write_file(path, cases[i].text), 0);
        assert_int_equal(h_cutoverd_check(path, out, sizeof(out)), 1);
        if (strstr(out, path) == NULL || strstr(out, cases[i].expect) == NULL)
            fail_msg("case %zu: expected \"%s\" in: %s", i, cases[i].expect, out);
    }
    h_rmrf(dir);
    free(dir);
}

static void
test_missing_file(void **state)
{
    char out[4096];

    (void)state;
    assert_int_equal(h_cutoverd_check("/nonexistent/cutover.json", out, sizeof(out)), 1);
    assert_non_null(strstr(out, "/nonexistent/cutover.json"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_example_is_valid),
        cmocka_unit_test(test_bad_configs_name_the_place),
        cmocka_unit_test(test_missing_file),
    };

    return cmocka_run_group_tests_name("integration: cutoverd -t", tests, NULL, NULL);
}
