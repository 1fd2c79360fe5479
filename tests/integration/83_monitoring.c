/*
 * 83_monitoring: what `make install` ships for operations is right for this
 * version: the Prometheus alert rules pass `promtool check rules`; every
 * cutover_* metric the rules and the Grafana dashboard name is in the
 * /metrics of a running daemon; the commented /etc/cutover/cutover.json
 * passes `cutoverd -t`, and a comment line keeps the line numbers of the
 * messages.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ctype.h>
#include <sys/wait.h>

#include "tests/integration/fixture.h"

static const char *const shipped[] = {
    "conf/monitoring/cutover-alerts.yml", "conf/monitoring/cutover-dashboard.json",
};

static void
test_promtool(void **state)
{
    char cmd[1200], out[4096];
    FILE *p;
    size_t n;
    int st;

    (void)state;
    snprintf(cmd, sizeof(cmd), "promtool check rules '%s' 2>&1", h_src(shipped[0]));
    p = popen(cmd, "r");
    assert_non_null(p);
    n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    st = pclose(p);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail_msg("promtool check rules (is prometheus installed? tests/tools/deps.sh): %s",
                 out);
    assert_non_null(strstr(out, "SUCCESS"));
}

/* Every cutover_* name in the shipped files is a series of the scrape. */
static void
test_metrics_exist(void **state)
{
    struct fx *f = fx_new(state, sizeof(*f), false, 1, NULL);
    char *scrape, want[160];
    unsigned i, names = 0;

    f->admin_port = h_free_port();
    snprintf(f->top_extra, sizeof(f->top_extra), ",\n  \"notify\": { \"webhooks\": [{ "
             "\"url\": \"http://127.0.0.1:%d/\" }] }", h_free_port());
    assert_int_equal(fx_write_conf(f), 0);
    assert_int_equal(fx_start_proxy(f, 1), 0);
    scrape = fx_scrape(f);
    for (i = 0; i < sizeof(shipped) / sizeof(shipped[0]); i++) {
        char *text = h_read_file(h_src(shipped[i])), *p;

        assert_non_null(text);
        for (p = text; (p = strstr(p, "cutover_")) != NULL;) {
            size_t len = 0;

            if (p > text && (isalnum((unsigned char)p[-1]) || p[-1] == '_')) {
                p++;
                continue;
            }
            while (islower((unsigned char)p[len]) || isdigit((unsigned char)p[len])
                   || p[len] == '_')
                len++;
            assert_true(len < 120);
            snprintf(want, sizeof(want), "\n%.*s{", (int)len, p);
            if (strstr(scrape, want) == NULL) {
                snprintf(want, sizeof(want), "\n%.*s ", (int)len, p);
                if (strstr(scrape, want) == NULL)
                    fail_msg("%s names %.*s, which /metrics does not have", shipped[i],
                             (int)len, p);
            }
            names++;
            p += len;
        }
        free(text);
    }
    free(scrape);
    assert_true(names >= 20);
}

static void
test_etc_config(void **state)
{
    struct fx *f = fx_new(state, sizeof(*f), false, 1, NULL);
    char out[4096], file[600];

    assert_int_equal(h_cutoverd_check(h_src("conf/cutover.json"), out, sizeof(out)), 0);
    assert_null(strstr(out, "warning"));
    /* comments keep the place of an error: line 4, column 3 */
    snprintf(file, sizeof(file), "%s/commented.json", f->dir);
    assert_int_equal(h_write_file(file, "# a comment\n{\n  # another one\n  \"workers\": -1,\n"
                                        "  \"services\": []\n}\n"), 0);
    assert_int_equal(h_cutoverd_check(file, out, sizeof(out)), 1);
    snprintf(file + strlen(file), sizeof(file) - strlen(file), ":4:3: workers: ");
    if (strstr(out, file) == NULL)
        fail_msg("wanted %s, got %s", file, out);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_promtool),
        cmocka_unit_test_teardown(test_metrics_exist, fx_teardown),
        cmocka_unit_test_teardown(test_etc_config, fx_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
