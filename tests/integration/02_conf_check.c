/*
 * cutoverd -t on every example in conf/ (so examples cannot rot; the TLS
 * one also with its certificates in place) and on every config sample of
 * the docs (below: test_every_doc_sample_is_valid), and the error messages of a
 * bad config: file, line, column and JSON path, exit 1.
 */
#include <dirent.h>
#include <stdbool.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

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

/* ---- the config samples of the docs ------------------------------------
 *
 * Every ```json block of the docs (docs/, each .md) is a config or a part of one, and says
 * which in an HTML comment on the line before it (invisible once rendered):
 *
 *   <!-- config: file -->     a whole config file
 *   <!-- config: top -->      members of the top-level object ("store": …)
 *   <!-- config: service -->  members of one service ("legacy": …, "tls": …)
 *   <!-- config: gates -->    items of one service's "gates" array
 *   <!-- input: NAME -->      read and run by 84_doc_samples instead
 *
 * A part is set into a small config of one service (on 127.0.0.1, its own
 * keys winning); the paths under /etc/cutover, /var/lib/cutover and
 * /run/cutover move to a private directory; every file the sample names is
 * made there (a certificate and its key for each "cert"/"key" pair, signed
 * by the test CA, the CA itself for "ca", a private file of one line for a
 * password_file, secret_file or token_file); then `cutoverd -t` must accept it and say
 * nothing else (no warning). A json block without the comment fails, so a
 * new sample cannot go unchecked. */

#define DOC_MAX_BLOCK 16384

/* Moves the absolute paths of a sample into <dir>. */
static void
doc_move_paths(json_t *j, const char *dir)
{
    static const char *const roots[] = { "/etc/cutover/", "/var/lib/cutover/", "/run/cutover/" };
    const char *key;
    json_t *v;
    size_t i, k;

    if (json_is_object(j)) {
        json_object_foreach(j, key, v) {
            if (!json_is_string(v)) {
                doc_move_paths(v, dir);
                continue;
            }
            for (k = 0; k < sizeof(roots) / sizeof(roots[0]); k++) {
                const char *s = json_string_value(v);
                char moved[1024];

                if (strncmp(s, roots[k], strlen(roots[k])) != 0)
                    continue;
                snprintf(moved, sizeof(moved), "%s/%s", dir, s + strlen(roots[k]));
                json_object_set_new(j, key, json_string(moved));
                break;
            }
        }
    } else if (json_is_array(j)) {
        json_array_foreach(j, i, v)
            doc_move_paths(v, dir);
    }
}

/* <dir>/<rel> (or <rel> when absolute), its directories made. */
static void
doc_place(char *out, size_t len, const char *dir, const char *rel)
{
    char *slash;

    if (rel[0] == '/')
        snprintf(out, len, "%s", rel);
    else
        snprintf(out, len, "%s/%s", dir, rel);
    for (slash = strchr(out + 1, '/'); slash != NULL; slash = strchr(slash + 1, '/')) {
        *slash = '\0';
        (void)mkdir(out, 0700);
        *slash = '/';
    }
}

/* Copies the file <from> to <to>. */
static void
doc_copy(const char *from, const char *to)
{
    char *text = h_read_file(from);

    assert_non_null(text);
    assert_int_equal(h_write_file(to, text), 0);
    free(text);
}

/* Makes every file the sample <j> names, under <dir>; the test CA and the
 * certificates are made in <certs>. */
static void
doc_make_files(const json_t *j, const char *dir, const char *certs, unsigned *npair)
{
    const char *key;
    json_t *v, *cert, *pkey;
    char path[1024], from[1024], name[32];
    size_t i;

    if (json_is_array(j)) {
        json_array_foreach(j, i, v)
            doc_make_files(v, dir, certs, npair);
        return;
    }
    if (!json_is_object(j))
        return;
    cert = json_object_get(j, "cert");
    pkey = json_object_get(j, "key");
    if (json_is_string(cert) && json_is_string(pkey)) {
        snprintf(name, sizeof(name), "pair%u", (*npair)++);
        assert_int_equal(h_tls_make_cert(certs, name, "/CN=doc.test", "doc.test", 90), 0);
        snprintf(from, sizeof(from), "%s/%s.pem", certs, name);
        doc_place(path, sizeof(path), dir, json_string_value(cert));
        doc_copy(from, path);
        snprintf(from, sizeof(from), "%s/%s.key", certs, name);
        doc_place(path, sizeof(path), dir, json_string_value(pkey));
        doc_copy(from, path);
    }
    json_object_foreach((json_t *)j, key, v) {
        if (json_is_string(v) && strcmp(key, "ca") == 0) {
            snprintf(from, sizeof(from), "%s/ca.pem", certs);
            doc_place(path, sizeof(path), dir, json_string_value(v));
            doc_copy(from, path);
        } else if (json_is_string(v)
                   && (strcmp(key, "password_file") == 0 || strcmp(key, "secret_file") == 0
                       || strcmp(key, "token_file") == 0)) {
            doc_place(path, sizeof(path), dir, json_string_value(v));
            assert_int_equal(h_write_file(path, strcmp(key, "token_file") == 0
                                                ? "ops operate a-token-of-the-sample-0123456789\n"
                                                : "a-secret-of-the-sample-0123456789\n"), 0);
            assert_int_equal(chmod(path, 0600), 0);
        } else {
            doc_make_files(v, dir, certs, npair);
        }
    }
}

/* The config a block of <kind> stands for, or NULL with <why> set. */
static json_t *
doc_config(const char *kind, const char *text, char *why, size_t whylen)
{
    static const char base[] =
        "{\"services\": [{\"name\": \"doc\", \"listen\": [\"127.0.0.1:18080\"],"
        " \"legacy\": {\"servers\": [\"127.0.0.1:19001\"]},"
        " \"new\": {\"servers\": [\"127.0.0.1:19002\"]}}]}";
    char wrapped[DOC_MAX_BLOCK + 8];
    json_error_t e;
    json_t *conf, *part, *svc;
    bool items = strcmp(kind, "gates") == 0;

    snprintf(wrapped, sizeof(wrapped), "%s%s%s",
             strcmp(kind, "file") == 0 ? "" : items ? "[" : "{", text,
             strcmp(kind, "file") == 0 ? "" : items ? "]" : "}");
    part = json_loads(wrapped, JSON_REJECT_DUPLICATES, &e);
    if (part == NULL) {
        snprintf(why, whylen, "not JSON (line %d of the block: %s)", e.line, e.text);
        return NULL;
    }
    if (strcmp(kind, "file") == 0)
        return part;
    conf = json_loads(base, 0, &e);
    assert_non_null(conf);
    svc = json_array_get(json_object_get(conf, "services"), 0);
    if (strcmp(kind, "top") == 0) {
        json_object_update(conf, part);
    } else if (strcmp(kind, "service") == 0) {
        json_object_update(svc, part);
    } else if (items) {
        json_object_set(svc, "gates", part);
    } else {
        snprintf(why, whylen, "unknown kind \"%s\" (file, top, service, gates)", kind);
        json_decref(conf);
        conf = NULL;
    }
    json_decref(part);
    return conf;
}

/* Checks the block of <kind> that <doc> holds from line <line>. */
static void
doc_check_block(const char *doc, unsigned line, const char *kind, const char *text,
                const char *certs, unsigned *npair)
{
    char *dir = h_tmpdir(), why[512], path[1024], out[8192];
    json_t *conf;

    assert_non_null(dir);
    if ((conf = doc_config(kind, text, why, sizeof(why))) == NULL)
        fail_msg("%s:%u: %s", doc, line, why);
    doc_move_paths(conf, dir);
    doc_make_files(conf, dir, certs, npair);
    snprintf(path, sizeof(path), "%s/sample.json", dir);
    assert_int_equal(json_dump_file(conf, path, JSON_INDENT(2)), 0);
    if (h_cutoverd_check(path, out, sizeof(out)) != 0 || strstr(out, "level=") != NULL) {
        char *sample = json_dumps(conf, JSON_INDENT(2));

        fail_msg("%s:%u (a %s sample): cutoverd -t says:\n%s\nof:\n%s", doc, line, kind, out,
                 sample);
    }
    json_decref(conf);
    h_rmrf(dir);
    free(dir);
}

/* The kind a marker line names ("file", …), "" for an <!-- input: -->
 * block, NULL when <s> is no marker. */
static const char *
doc_marker(const char *s, char *kind, size_t len)
{
    int n = 0;

    if (strncmp(s, "<!-- input: ", 12) == 0)
        return "";
    if (sscanf(s, "<!-- config: %31[a-z] -->%n", kind, &n) != 1 || n == 0)
        return NULL;
    (void)len;
    return kind;
}

static void
test_every_doc_sample_is_valid(void **state)
{
    const char *docs = h_src("docs");
    char *certs = h_tmpdir(), path[1024], kind[32], prev[256];
    DIR *d = opendir(docs);
    struct dirent *e;
    unsigned npair = 0, nblocks = 0;

    (void)state;
    assert_non_null(d);
    assert_non_null(certs);
    assert_int_equal(h_tls_make_certs(certs), 0);
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        char *text, *at, *nl, block[DOC_MAX_BLOCK];
        unsigned line = 0;

        if (len < 4 || strcmp(e->d_name + len - 3, ".md") != 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", docs, e->d_name);
        text = h_read_file(path);
        assert_non_null(text);
        prev[0] = '\0';
        for (at = text; *at != '\0'; at = nl != NULL ? nl + 1 : at + strlen(at)) {
            const char *k;
            unsigned start;
            size_t used = 0;

            nl = strchr(at, '\n');
            line++;
            if (strncmp(at, "```json", 7) != 0 || (at[7] != '\n' && at[7] != '\0')) {
                if (at[0] != '\n')
                    snprintf(prev, sizeof(prev), "%.*s",
                             (int)(nl != NULL ? (size_t)(nl - at) : strlen(at)), at);
                continue;
            }
            if ((k = doc_marker(prev, kind, sizeof(kind))) == NULL)
                fail_msg("docs/%s:%u: a json block without a <!-- config: KIND --> line "
                         "before it (file, top, service, gates)", e->d_name, line);
            start = line;
            /* the block's lines, up to the closing fence */
            for (at = nl + 1; *at != '\0' && strncmp(at, "```", 3) != 0; at = nl + 1) {
                nl = strchr(at, '\n');
                line++;
                assert_non_null(nl);
                assert_true(used + (size_t)(nl - at) + 2 < sizeof(block));
                memcpy(block + used, at, (size_t)(nl - at) + 1);
                used += (size_t)(nl - at) + 1;
            }
            block[used] = '\0';
            nl = strchr(at, '\n');
            line++;
            if (*k != '\0') {
                char where[300];

                snprintf(where, sizeof(where), "docs/%s", e->d_name);
                doc_check_block(where, start, k, block, certs, &npair);
            }
            nblocks++;
            prev[0] = '\0';
        }
        free(text);
    }
    closedir(d);
    assert_true(nblocks >= 8);           /* tls 2, gates 2, fleet, shadow, DESIGN, operations */
    h_rmrf(certs);
    free(certs);
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
        cmocka_unit_test(test_every_doc_sample_is_valid),
    };

    return cmocka_run_group_tests_name("integration: cutoverd -t", tests, NULL, NULL);
}
