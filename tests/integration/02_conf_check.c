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
        cmocka_unit_test(test_missing_file),
    };

    return cmocka_run_group_tests_name("integration: cutoverd -t", tests, NULL, NULL);
}
