/*
 * cutoverd -t on every example in conf/ (so examples cannot rot; the TLS
 * one also with its certificates in place), and the error messages of a
 * bad config: file, line, column and JSON path, exit 1.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <sys/stat.h>

#include "tests/harness/harness.h"
#include "tests/harness/tls.h"

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

/* conf/example.json terminates TLS with certificate files that a
 * deployment puts beside it: -t only warns while they are missing (above);
 * with them in place (made here with the openssl command) every pair is
 * read and matched, and nothing is left to warn about. */
static void
test_example_with_its_certificates(void **state)
{
    static const char *const files[][2] = {
        { "srv.pem", "tls/web.ecdsa.pem" }, { "srv.key", "tls/web.ecdsa.key" },
        { "srvrsa.pem", "tls/web.rsa.pem" }, { "srvrsa.key", "tls/web.rsa.key" },
        { "ca.pem", "tls/clients-ca.pem" },
    };
    char *dir = h_tmpdir(), *text, src[1024], dst[1024], out[8192];
    size_t i;

    (void)state;
    assert_non_null(dir);
    snprintf(dst, sizeof(dst), "%s/tls", dir);
    assert_int_equal(mkdir(dst, 0700), 0);
    assert_int_equal(h_tls_make_certs(dst), 0);
    for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(src, sizeof(src), "%s/tls/%s", dir, files[i][0]);
        snprintf(dst, sizeof(dst), "%s/%s", dir, files[i][1]);
        assert_int_equal(rename(src, dst), 0);
    }
    text = h_read_file(h_src("conf/example.json"));
    assert_non_null(text);
    snprintf(dst, sizeof(dst), "%s/example.json", dir);
    assert_int_equal(h_write_file(dst, text), 0);
    free(text);
    if (h_cutoverd_check(dst, out, sizeof(out)) != 0 || strstr(out, "module=tls") != NULL)
        fail_msg("%s", out);
    /* and a key that is not its certificate's is caught, with its place */
    snprintf(src, sizeof(src), "%s/tls/rsa.key", dir);
    snprintf(dst, sizeof(dst), "%s/tls/web.rsa.key", dir);
    assert_int_equal(rename(src, dst), 0);
    snprintf(dst, sizeof(dst), "%s/example.json", dir);
    if (h_cutoverd_check(dst, out, sizeof(out)) != 1 ||
        strstr(out, "services[0].tls.certs[1].key") == NULL ||
        strstr(out, "the key does not match the certificate") == NULL)
        fail_msg("%s", out);
    h_rmrf(dir);
    free(dir);
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

/* The number of lines of <s>. */
static unsigned
lines_of(const char *s)
{
    unsigned n = 0;

    for (; *s != '\0'; s++)
        n += *s == '\n';
    return n;
}

/* One run reports every error it can find, in the order of the file, with
 * a "did you mean" for a typo of a known key, and a listen address that is
 * also admin.listen; a bounded number of them. */
static void
test_every_error_in_one_run(void **state)
{
    static const char three_typos[] =
        "{\"admin\": {\"listen\": \"127.0.0.1:9901\"},\n"
        " \"services\": [{\"name\": \"web\", \"listen\": [\"127.0.0.1:9901\"],\n"
        "  \"legacy\": {\"servers\": [\"127.0.0.1:2\"]},\n"
        "  \"new\": {\"servers\": [\"127.0.0.1:3\"]}, \"wieght\": 10,\n"
        "  \"rollback\": {\"max_error_rate\": 1.5, \"windw_s\": 10},\n"
        "  \"health\": {\"type\": \"http\", \"intreval_ms\": 500, \"colour\": 1}},\n"
        " {\"name\": \"shop\", \"listen\": [\"0.0.0.0:9901\"], \"mode\": \"udp\",\n"
        "  \"legacy\": {\"servers\": [\"127.0.0.1:2\"]},\n"
        "  \"new\": {\"servers\": [\"127.0.0.1:3\"]}}]}\n";
    static const char *const expect[] = {
        ":2:42: services[0].listen[0]: 127.0.0.1:9901 is also admin.listen (127.0.0.1:9901)",
        ":4:40: services[0].wieght: unknown key (did you mean \"weight\"?)",
        ":5:16: services[0].rollback.max_error_rate: must be between 0 and 1",
        ":5:39: services[0].rollback.windw_s: unknown key (did you mean \"window_s\"?)",
        ":6:30: services[0].health.intreval_ms: unknown key (did you mean \"interval_ms\"?)",
        ":6:50: services[0].health.colour: unknown key\n",
        ":7:30: services[1].listen[0]: 0.0.0.0:9901 overlaps 127.0.0.1:9901 of service \"web\"",
        ":7:47: services[1].mode: must be \"http\" or \"tcp\"",
        ": 8 errors",
    };
    char *dir = h_tmpdir(), path[1024], out[16384], *text, *p;
    const char *at;
    size_t i, k;

    (void)state;
    assert_non_null(dir);
    snprintf(path, sizeof(path), "%s/bad.json", dir);
    assert_int_equal(h_write_file(path, three_typos), 0);
    assert_int_equal(h_cutoverd_check(path, out, sizeof(out)), 1);
    /* in this order, nothing else */
    for (i = 0, at = out; i < sizeof(expect) / sizeof(expect[0]); i++) {
        if ((at = strstr(at, expect[i])) == NULL)
            fail_msg("expected, in order, \"%s\" in:\n%s", expect[i], out);
    }
    assert_int_equal(lines_of(out), 9);

    /* bounded: 30 unknown keys give 20 lines and the count */
    text = malloc(8192);
    assert_non_null(text);
    p = text + sprintf(text, "{\"services\": [{\"name\": \"web\", \"listen\": "
                       "[\"127.0.0.1:1\"], \"legacy\": {\"servers\": [\"127.0.0.1:2\"]}, "
                       "\"new\": {\"servers\": [\"127.0.0.1:3\"]}");
    for (k = 0; k < 30; k++)
        p += sprintf(p, ",\n  \"x%02zu\": 1", k);
    sprintf(p, "}]}\n");
    assert_int_equal(h_write_file(path, text), 0);
    free(text);
    assert_int_equal(h_cutoverd_check(path, out, sizeof(out)), 1);
    assert_int_equal(lines_of(out), 21);
    assert_non_null(strstr(out, ": 30 errors (the first 20 shown)"));
    assert_non_null(strstr(out, "services[0].x19: unknown key"));
    assert_null(strstr(out, "services[0].x20"));
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
        cmocka_unit_test(test_example_with_its_certificates),
        cmocka_unit_test(test_bad_configs_name_the_place),
        cmocka_unit_test(test_every_error_in_one_run),
        cmocka_unit_test(test_missing_file),
    };

    return cmocka_run_group_tests_name("integration: cutoverd -t", tests, NULL, NULL);
}
