/*
 * tests/unit/test_px_conf.c: proxy/conf.c (with router/conf.c and
 * health/conf.c behind it) through px_conf_load() and the two pure helpers.
 *
 * Every example in conf/ must load; a table of broken configs checks the
 * exact one-line message, place included, because operators act on that
 * line; px_addr_parse() gets tables of its own (conf_json_locate()'s is in
 * test_lib_conf.c).
 * Config texts are written with ' for " to keep the tables readable; each
 * is written to a fresh mkstemp file under $TMPDIR (or /tmp).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <cmocka.h>

#include <jansson.h>

#include "proxy/conf.h"
#include "proxy/tls_conf.h"
#include "router/conf.h"
#include "health/conf.h"

#define ERRLEN 1024

static const char *
tmp_dir(void)
{
    const char *d = getenv("TMPDIR");

    return d != NULL && d[0] != '\0' ? d : "/tmp";
}

/* Writes <text> to the file <path>, turning every ' into ". */
static void
write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    const char *p;

    assert_non_null(f);
    for (p = text; *p != '\0'; p++)
        assert_int_not_equal(fputc(*p == '\'' ? '"' : *p, f), EOF);
    assert_int_equal(fclose(f), 0);
}

/* Writes <text> into a new temporary file; its name goes to <path>. */
static void
write_tmp(const char *text, char *path, size_t len)
{
    int fd;

    snprintf(path, len, "%s/cutover-conf-XXXXXX", tmp_dir());
    fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    write_text(path, text);
}

/* Loads <text> from a temporary file. On failure <err> holds the message
 * with the file name replaced by "FILE". */
static struct px_conf *
load_text(const char *text, char *err, size_t errlen)
{
    char path[512], raw[ERRLEN];
    struct px_conf *c;
    size_t n;

    write_tmp(text, path, sizeof(path));
    raw[0] = '\0';
    c = px_conf_load(path, raw, sizeof(raw));
    unlink(path);
    n = strlen(path);
    if (c == NULL) {
        assert_memory_equal(raw, path, n);
        snprintf(err, errlen, "FILE%s", raw + n);
    } else {
        err[0] = '\0';
    }
    return c;
}

/* ------------------------------------------------------------------ */
/* The examples in conf/                                               */

static const char *
src_dir(void)
{
    const char *d = getenv("CUTOVER_SRC_DIR");

    return d != NULL && d[0] != '\0' ? d : ".";
}

static struct px_conf *
load_example(const char *name)
{
    char path[1024], err[ERRLEN];
    struct px_conf *c;

    snprintf(path, sizeof(path), "%s/conf/%s", src_dir(), name);
    c = px_conf_load(path, err, sizeof(err));
    if (c == NULL)
        fail_msg("%s", err);
    return c;
}

static void
test_examples_load(void **state)
{
    char path[1024], err[ERRLEN];
    struct dirent *de;
    unsigned n = 0;
    DIR *d;

    (void)state;
    snprintf(path, sizeof(path), "%s/conf", src_dir());
    d = opendir(path);
    assert_non_null(d);
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        struct px_conf *c;

        if (len < 5 || strcmp(de->d_name + len - 5, ".json") != 0)
            continue;
        snprintf(path, sizeof(path), "%s/conf/%s", src_dir(), de->d_name);
        c = px_conf_load(path, err, sizeof(err));
        if (c == NULL)
            fail_msg("%s", err);
        assert_true(c->nservices >= 1);
        px_conf_free(c);
        n++;
    }
    closedir(d);
    assert_true(n >= 4);
}

static void
test_demo(void **state)
{
    struct px_conf *c = load_example("demo.json");
    char want[1200];
    const struct px_service_conf *s;

    (void)state;
    assert_int_equal(c->nservices, 1);
    s = &c->services[0];
    assert_string_equal(s->name, "web");
    assert_int_equal(s->mode, PX_MODE_HTTP);
    assert_int_equal(s->nlisten, 1);
    assert_string_equal(s->listen[0].text, "127.0.0.1:8080");
    assert_int_equal(s->side[RT_LEGACY].nservers, 1);
    assert_string_equal(s->side[RT_LEGACY].servers[0].text, "127.0.0.1:9001");
    assert_int_equal(s->side[RT_NEW].nservers, 1);
    assert_string_equal(s->side[RT_NEW].servers[0].text, "127.0.0.1:9002");
    assert_int_equal(s->route.weight_bp, 0);
    assert_int_equal(s->route.sticky_by, RT_STICKY_NONE);
    assert_null(c->admin_socket);
    snprintf(want, sizeof(want), "%s/conf/../.run/demo-state.json", src_dir());
    assert_string_equal(c->state_file, want);
    snprintf(want, sizeof(want), "%s/conf/../.run/demo-audit.jsonl", src_dir());
    assert_string_equal(c->audit_file, want);
    px_conf_free(c);
}

static void
test_example(void **state)
{
    static const uint32_t steps[] = { 100, 500, 1000, 2500, 5000, 7500, 10000 };
    struct px_conf *c = load_example("example.json");
    const struct px_service_conf *s;
    char want[1200];
    unsigned i;

    (void)state;
    assert_string_equal(c->admin_socket, "/run/cutover/admin.sock");
    assert_int_equal(c->admin_socket_mode, 0660);
    assert_string_equal(c->admin_listen, "127.0.0.1:9901");
    snprintf(want, sizeof(want), "%s/conf/admin.tokens", src_dir());
    assert_string_equal(c->admin_token_file, want);
    assert_string_equal(c->state_file, "/var/lib/cutover/state.json");
    assert_int_equal(c->max_connections, 20000);
    assert_int_equal(c->nservices, 2);

    s = &c->services[0];
    assert_int_equal(s->nlisten, 2);
    assert_int_equal(s->listen[1].ss.ss_family, AF_INET6);
    assert_int_equal(s->route.sticky_by, RT_STICKY_COOKIE);
    assert_string_equal(s->route.sticky_name, "cutover_bucket");
    assert_true(s->route.seed == rt_seed_from_salt("web-2024", 8));
    assert_true(s->route.has_override);
    assert_string_equal(s->route.override_header, "X-Cutover-Target");
    assert_int_equal(s->route.nallow, 3);
    assert_int_equal(s->route.allow_from[2].bits, 24);
    assert_int_equal(s->route.secret_len, 0);
    assert_int_equal(s->health.type, HL_CHECK_HTTP);
    assert_int_equal(s->health.expect_min, 200);
    assert_int_equal(s->health.expect_max, 299);
    assert_string_equal(s->health.body_contains, "ok");
    assert_int_equal(s->rollback.max_p99_ms, 800);
    assert_true(s->rollback.max_error_ratio_to_legacy == 2.5);
    assert_int_equal(s->plan.nsteps, 7);
    for (i = 0; i < 7; i++)
        assert_int_equal(s->plan.steps_bp[i], steps[i]);
    assert_non_null(s->tls);
    assert_int_equal(s->tls->ncerts, 2);
    snprintf(want, sizeof(want), "%s/conf/tls/web.ecdsa.pem", src_dir());
    assert_string_equal(s->tls->certs[0].cert, want);
    assert_string_equal(s->tls->certs[0].cert_as_written, "tls/web.ecdsa.pem");
    assert_int_equal(s->tls->client_verify, PX_TLS_VERIFY_OPTIONAL);
    assert_int_equal(s->limits.max_connections, 10000);

    s = &c->services[1];
    assert_null(s->tls);
    assert_string_equal(s->name, "orders-db");
    assert_int_equal(s->mode, PX_MODE_TCP);
    assert_int_equal(s->route.sticky_by, RT_STICKY_CLIENT_IP);
    assert_true(s->route.seed == rt_seed_from_salt("orders-db", 9));
    assert_int_equal(s->health.type, HL_CHECK_TCP);
    assert_int_equal(s->rollback.action, HL_ACT_FREEZE);
    assert_int_equal(s->on_new_down, HL_NEWDOWN_ROLLBACK);
    assert_int_equal(s->timeouts.server_idle_ms, 3600000);
    assert_int_equal(s->timeouts.client_head_ms, 10000);
    px_conf_free(c);
}

/* ------------------------------------------------------------------ */
/* Defaults and conversions                                            */

static void
test_defaults(void **state)
{
    struct px_conf *c = load_example("minimal.json");
    const struct px_service_conf *s = &c->services[0];

    (void)state;
    assert_null(c->admin_socket);
    assert_int_equal(c->admin_socket_mode, 0600);
    assert_null(c->admin_listen);
    assert_null(c->admin_token_file);
    assert_null(c->state_file);
    assert_null(c->audit_file);
    assert_int_equal(c->workers, 0);
    assert_int_equal(c->shutdown_grace_ms, 10000);
    assert_int_equal(c->policy_tick_ms, 100);
    assert_int_equal(c->max_connections, -1);  /* from RLIMIT_NOFILE at startup */

    assert_int_equal(s->mode, PX_MODE_HTTP);
    assert_int_equal(s->route.weight_bp, 0);
    assert_int_equal(s->route.sticky_by, RT_STICKY_NONE);
    assert_false(s->route.has_override);
    assert_true(s->route.seed == rt_seed_from_salt("web", 3));
    assert_int_equal(s->health.type, HL_CHECK_NONE);
    assert_int_equal(s->health.interval_ms, 2000);
    assert_int_equal(s->health.timeout_ms, 1000);
    assert_int_equal(s->health.rise, 2);
    assert_int_equal(s->health.fall, 3);
    assert_true(s->rollback.enabled);
    assert_true(s->rollback.max_error_rate == 0.05);
    assert_int_equal(s->rollback.min_requests, 20);
    assert_int_equal(s->rollback.window_s, 10);
    assert_int_equal(s->rollback.max_p99_ms, 0);
    assert_true(s->rollback.max_error_ratio_to_legacy == 0);
    assert_int_equal(s->rollback.action, HL_ACT_ROLLBACK);
    assert_int_equal(s->plan.nsteps, 0);
    assert_int_equal(s->plan.bake_s, 300);
    assert_int_equal(s->on_new_down, HL_NEWDOWN_FALLBACK);
    assert_int_equal(s->timeouts.client_head_ms, 10000);
    assert_int_equal(s->timeouts.client_idle_ms, 60000);
    assert_int_equal(s->timeouts.connect_ms, 2000);
    assert_int_equal(s->timeouts.server_response_ms, 30000);
    assert_int_equal(s->timeouts.server_idle_ms, 60000);
    assert_int_equal(s->limits.head_bytes, 16384);
    assert_int_equal(s->limits.headers, 100);
    assert_int_equal(s->limits.uri_bytes, 8192);
    assert_true(s->limits.body_bytes == 0);
    assert_int_equal(s->limits.buffer_body_bytes, 65536);
    assert_int_equal(s->limits.chunk_ext_bytes, 4096);
    assert_int_equal(s->limits.max_connections, 0);
    px_conf_free(c);
}

/* A health section without a type is a tcp check with the usual timing;
 * an http check gets GET /healthz expecting 200..399. */
static void
test_section_defaults(void **state)
{
    struct hl_check_conf hc;
    struct hl_rollback_conf rc;
    struct hl_plan_conf pc;
    struct conf_err err;
    json_t *j;

    (void)state;
    j = json_loads("{\"rise\": 5}", 0, NULL);
    assert_int_equal(hl_check_conf_parse(j, "health", &hc, &err), 0);
    assert_int_equal(hc.type, HL_CHECK_TCP);
    assert_int_equal(hc.rise, 5);
    assert_int_equal(hc.fall, 3);
    json_decref(j);

    j = json_loads("{\"type\": \"http\"}", 0, NULL);
    assert_int_equal(hl_check_conf_parse(j, "health", &hc, &err), 0);
    assert_string_equal(hc.method, "GET");
    assert_string_equal(hc.path, "/healthz");
    assert_int_equal(hc.expect_min, 200);
    assert_int_equal(hc.expect_max, 399);
    assert_string_equal(hc.body_contains, "");
    json_decref(j);

    j = json_loads("{\"enabled\": false}", 0, NULL);
    assert_int_equal(hl_rollback_conf_parse(j, "rollback", &rc, &err), 0);
    assert_false(rc.enabled);
    assert_true(rc.max_error_rate == 0.05);
    json_decref(j);

    assert_int_equal(hl_plan_conf_parse(NULL, "plan", &pc, &err), 0);
    assert_int_equal(pc.nsteps, 0);

    j = json_loads("{\"steps\": [0.01, 0.29, 33.3, 99.99, 100]}", 0, NULL);
    assert_int_equal(hl_plan_conf_parse(j, "plan", &pc, &err), 0);
    assert_int_equal(pc.nsteps, 5);
    assert_int_equal(pc.steps_bp[0], 1);
    assert_int_equal(pc.steps_bp[1], 29);
    assert_int_equal(pc.steps_bp[2], 3330);
    assert_int_equal(pc.steps_bp[3], 9999);
    assert_int_equal(pc.steps_bp[4], 10000);
    assert_int_equal(pc.bake_s, 300);
    json_decref(j);

    /* The error paths are full paths built on the caller's prefix. */
    j = json_loads("{\"fall\": 0}", 0, NULL);
    assert_int_equal(hl_check_conf_parse(j, "services[3].health", &hc, &err), -1);
    assert_string_equal(err.path, "services[3].health.fall");
    assert_string_equal(err.msg, "must be between 1 and 100");
    json_decref(j);
}

static void
test_weights(void **state)
{
    static const struct { const char *json; uint32_t bp; } cases[] = {
        { "0", 0 }, { "0.01", 1 }, { "0.29", 29 }, { "1", 100 }, { "12.34", 1234 },
        { "33.3", 3330 }, { "50.5", 5050 }, { "99.99", 9999 }, { "100", 10000 },
        { "100.0", 10000 }, { "1e1", 1000 }, { "0.07", 7 },
    };
    char text[256];
    struct rt_conf rc;
    struct conf_err err;
    size_t i;
    json_t *j;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(text, sizeof(text), "{\"weight\": %s}", cases[i].json);
        j = json_loads(text, 0, NULL);
        assert_non_null(j);
        if (rt_conf_parse(j, "web", "services[0]", &rc, &err) != 0)
            fail_msg("%s: %s: %s", cases[i].json, err.path, err.msg);
        assert_int_equal(rc.weight_bp, cases[i].bp);
        json_decref(j);
    }
}

static void
test_sticky_salt(void **state)
{
    struct rt_conf rc;
    struct conf_err err;
    json_t *j;

    (void)state;
    j = json_loads("{\"sticky\": {\"by\": \"header\", \"name\": \"X-User\"}}", 0, NULL);
    assert_int_equal(rt_conf_parse(j, "api", "services[0]", &rc, &err), 0);
    assert_int_equal(rc.sticky_by, RT_STICKY_HEADER);
    assert_string_equal(rc.sticky_name, "X-User");
    assert_true(rc.seed == rt_seed_from_salt("api", 3));
    json_decref(j);

    j = json_loads("{\"sticky\": {\"by\": \"client_ip\", \"salt\": \"s1\"}}", 0, NULL);
    assert_int_equal(rt_conf_parse(j, "api", "services[0]", &rc, &err), 0);
    assert_int_equal(rc.sticky_by, RT_STICKY_CLIENT_IP);
    assert_string_equal(rc.sticky_name, "");
    assert_true(rc.seed == rt_seed_from_salt("s1", 2));
    assert_true(rc.seed != rt_seed_from_salt("api", 3));
    json_decref(j);
}

static void
test_relative_paths(void **state)
{
    char dir[512], sub[600], path[700], want[800], err[ERRLEN];
    struct px_conf *c;

    (void)state;
    snprintf(dir, sizeof(dir), "%s/cutover-conf-dir-XXXXXX", tmp_dir());
    assert_non_null(mkdtemp(dir));
    snprintf(sub, sizeof(sub), "%s/etc", dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    snprintf(path, sizeof(path), "%s/cutover.json", sub);
    write_text(path,
        "{'admin': {'socket': 'run/admin.sock', 'token_file': '../tokens'},\n"
        " 'state': {'file': 'state.json'},\n"
        " 'audit': {'file': '/var/log/cutover/audit.jsonl'},\n"
        " 'services': [{'name': 'web', 'listen': ['127.0.0.1:8080'],\n"
        "   'legacy': {'servers': ['127.0.0.1:9001']},\n"
        "   'new': {'servers': ['127.0.0.1:9002']}}]}\n");
    c = px_conf_load(path, err, sizeof(err));
    if (c == NULL)
        fail_msg("%s", err);
    assert_string_equal(c->file, path);
    assert_string_equal(c->dir, sub);
    snprintf(want, sizeof(want), "%s/run/admin.sock", sub);
    assert_string_equal(c->admin_socket, want);
    snprintf(want, sizeof(want), "%s/../tokens", sub);
    assert_string_equal(c->admin_token_file, want);
    snprintf(want, sizeof(want), "%s/state.json", sub);
    assert_string_equal(c->state_file, want);
    assert_string_equal(c->audit_file, "/var/log/cutover/audit.jsonl");
    px_conf_free(c);
    unlink(path);
    rmdir(sub);
    rmdir(dir);
}

/* A file name without a directory resolves against ".". */
static void
test_relative_paths_bare_name(void **state)
{
    char dir[512], cwd[1024], err[ERRLEN];
    struct px_conf *c;

    (void)state;
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    snprintf(dir, sizeof(dir), "%s/cutover-conf-dir-XXXXXX", tmp_dir());
    assert_non_null(mkdtemp(dir));
    assert_int_equal(chdir(dir), 0);
    write_text("c.json",
        "{'state': {'file': 'st.json'}, 'services': [{'name': 'web',\n"
        " 'listen': ['127.0.0.1:8080'], 'legacy': {'servers': ['127.0.0.1:9001']},\n"
        " 'new': {'servers': ['127.0.0.1:9002']}}]}\n");
    c = px_conf_load("c.json", err, sizeof(err));
    unlink("c.json");
    assert_int_equal(chdir(cwd), 0);
    rmdir(dir);
    if (c == NULL)
        fail_msg("%s", err);
    assert_string_equal(c->dir, ".");
    assert_string_equal(c->state_file, "./st.json");
    px_conf_free(c);
}

/* override.secret_file: read at load, relative to the config's
 * directory, private, one line; every failure names its place and never
 * the secret. */
static void
test_override_secret_file(void **state)
{
    static const struct {
        const char *content;     /* NULL: no file */
        mode_t mode;
        const char *msg;         /* NULL: loads; else the end of the message */
    } t[] = {
        { "0123456789abcdef-secret\n", 0600, NULL },
        { "0123456789abcdef-secret", 0400, NULL },
        { NULL, 0, "cannot read the secret: DIR/secret: No such file or directory" },
        { "0123456789abcdef-secret\n", 0640, "cannot read the secret: DIR/secret: mode "
          "0640: group and others must have no access (chmod 600)" },
        { "0123456789abcdef-secret\n", 0604, "cannot read the secret: DIR/secret: mode "
          "0604: group and others must have no access (chmod 600)" },
        { "", 0600, "DIR/secret is empty" },
        { "\n", 0600, "DIR/secret is empty" },
        { "short\n", 0600, "DIR/secret must hold one line of 16 to 128 characters" },
        { "0123456789abcdef secret\n", 0600, "DIR/secret must hold one line of printable "
          "characters without spaces, ';', ',', '\"' or '\\'" },
    };
    char dir[512], path[700], secret[700], err[ERRLEN], want[ERRLEN + 700];
    struct px_conf *c;
    struct cidr_addr out;
    size_t i;
    const char *sec = "0123456789abcdef-secret";

    (void)state;
    assert_int_equal(cidr_addr_parse("192.0.2.1", 9, &out), 0);
    snprintf(dir, sizeof(dir), "%s/cutover-conf-dir-XXXXXX", tmp_dir());
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/cutover.json", dir);
    snprintf(secret, sizeof(secret), "%s/secret", dir);
    write_text(path,
        "{'services': [{'name': 'web', 'listen': ['127.0.0.1:8080'],\n"
        "   'legacy': {'servers': ['127.0.0.1:9001']},\n"
        "   'new': {'servers': ['127.0.0.1:9002']},\n"
        "   'override': {'header': 'X-Cutover-Target', 'allow_from': [],\n"
        "                'secret_file': 'secret'}}]}\n");
    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        unlink(secret);
        if (t[i].content != NULL) {
            write_text(secret, t[i].content);
            assert_int_equal(chmod(secret, t[i].mode), 0);
        }
        c = px_conf_load(path, err, sizeof(err));
        if (t[i].msg == NULL) {
            if (c == NULL)
                fail_msg("case %zu: %s", i, err);
            assert_int_equal(c->services[0].route.secret_len, strlen(sec));
            assert_true(rt_override_honoured(&c->services[0].route, &out, sec,
                                             strlen(sec)));
            assert_false(rt_override_honoured(&c->services[0].route, &out, sec,
                                              strlen(sec) - 1));
            px_conf_free(c);
            continue;
        }
        assert_null(c);
        snprintf(want, sizeof(want), "%s:5:17: services[0].override.secret_file: %s", path,
                 t[i].msg);
        {
            /* DIR stands for the directory */
            char *d = strstr(want, "DIR/");

            if (d != NULL) {
                char rest[ERRLEN];

                snprintf(rest, sizeof(rest), "%s", d + 3);
                snprintf(d, sizeof(want) - (size_t)(d - want), "%s%s", dir, rest);
            }
        }
        if (strcmp(err, want) != 0)
            fail_msg("case %zu\n  got:  %s\n  want: %s", i, err, want);
        assert_null(strstr(err, "0123456789abcdef"));   /* never the secret */
    }
    unlink(secret);
    unlink(path);
    rmdir(dir);
}

/* ------------------------------------------------------------------ */
/* Broken configs: the exact message                                   */

/* One service; <extra> continues line 7 at column 19, after "'mode': 'http', ". */
#define SVC(extra)                                              \
    "{\n"                                                       \
    " 'services': [{\n"                                         \
    "  'name': 'web',\n"                                        \
    "  'listen': ['127.0.0.1:8080'],\n"                         \
    "  'legacy': {'servers': ['127.0.0.1:9001']},\n"            \
    "  'new': {'servers': ['127.0.0.1:9002']},\n"               \
    "  'mode': 'http', " extra "\n"                             \
    " }]\n"                                                     \
    "}\n"

/* A top-level key at line 2, column 2, before a valid service. */
#define TOP(extra)                                              \
    "{\n"                                                       \
    " " extra ",\n"                                             \
    " 'services': [{'name': 'web', 'listen': ['127.0.0.1:8080'],\n" \
    "   'legacy': {'servers': ['127.0.0.1:9001']},\n"           \
    "   'new': {'servers': ['127.0.0.1:9002']}}]\n"             \
    "}\n"

/* A service of its own on line 1, from column 3, for two-service cases. */
#define ONE(name, listen) \
    "{'name': '" name "', 'listen': [" listen "], 'legacy': {'servers': ['127.0.0.1:9001']}, " \
    "'new': {'servers': ['127.0.0.1:9002']}}"

static const struct bad_case {
    const char *text;
    const char *msg;         /* "FILE" stands for the file name */
} bad_cases[] = {
    /* syntax, reported by jansson with its own line and column */
    { SVC("'weight': 5,"),
      "FILE:8:2: string or '}' expected near '}'" },
    { SVC("'weight': 5, 'weight': 6"),
      "FILE:7:39: duplicate object key near '\"weight\"'" },
    { "",
      "FILE:1:1: '[' or '{' expected near end of file" },
    { "{ services: [] }",
      "FILE:1:10: string or '}' expected near 'services'" },
    { "[1]",
      "FILE:1:1: the top level must be an object" },

    /* top level */
    { TOP("'servers': []"),
      "FILE:2:2: servers: unknown key" },
    { "{}",
      "FILE: services: is required" },
    { "{'services': []}",
      "FILE:1:2: services: must not be empty" },
    { "{'services': {}}",
      "FILE:1:2: services: must be an array" },
    { TOP("'workers': 257"),
      "FILE:2:2: workers: must be between 0 and 256" },
    { TOP("'workers': 2.5"),
      "FILE:2:2: workers: must be an integer" },
    { TOP("'shutdown_grace_ms': -1"),
      "FILE:2:2: shutdown_grace_ms: must be between 0 and 3600000" },
    { TOP("'policy_tick_ms': 9"),
      "FILE:2:2: policy_tick_ms: must be between 10 and 60000" },
    { TOP("'policy_tick_ms': 60001"),
      "FILE:2:2: policy_tick_ms: must be between 10 and 60000" },
    { TOP("'admin': {'socket_mode': '0800'}"),
      "FILE:2:12: admin.socket_mode: must be an octal string from \"0000\" to \"0777\"" },
    { TOP("'admin': {'socket_mode': 384}"),
      "FILE:2:12: admin.socket_mode: must be an octal string from \"0000\" to \"0777\"" },
    { TOP("'admin': {'socket_mode': '01777'}"),
      "FILE:2:12: admin.socket_mode: must be an octal string from \"0000\" to \"0777\"" },
    { TOP("'admin': {'listen': 'localhost:9901'}"),
      "FILE:2:12: admin.listen: must be \"IP:PORT\" or \"[IPv6]:PORT\" with a numeric "
      "address and a port 1..65535" },
    { TOP("'admin': {'sockt': '/run/x.sock'}"),
      "FILE:2:12: admin.sockt: unknown key (did you mean \"socket\"?)" },
    { TOP("'admin': {'socket': ''}"),
      "FILE:2:12: admin.socket: must not be empty" },
    { TOP("'admin': {'socket': '/run/cutover/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
          "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.sock'}"),
      "FILE:2:12: admin.socket: path too long for a unix socket (118 bytes, at most 107)" },
    { TOP("'admin': []"),
      "FILE:2:2: admin: must be an object" },
    { TOP("'state': {'file': 5}"),
      "FILE:2:12: state.file: must be a string" },
    { TOP("'audit': {'path': 'audit.jsonl'}"),
      "FILE:2:12: audit.path: unknown key" },

    /* service skeleton */
    { "{'services': ['web']}",
      "FILE:1:15: services[0]: must be an object" },
    { SVC("'wieght': 10"),
      "FILE:7:19: services[0].wieght: unknown key (did you mean \"weight\"?)" },
    { "{'services': [{'listen': ['127.0.0.1:8080']}]}",
      "FILE: services[0].name: is required" },
    { "{'services': [{'name': 'web app'}]}",
      "FILE:1:16: services[0].name: must be 1..63 characters from A-Z a-z 0-9 _ . -" },
    { "{'services': [\n  " ONE("web", "'127.0.0.1:8080'") ",\n  "
      ONE("web", "'127.0.0.1:8081'") "\n]}",
      "FILE:3:4: services[1].name: duplicate service name \"web\" (also services[0])" },
    { "{'services': [{'name': 'web', 'mode': 'udp'}]}",
      "FILE:1:31: services[0].mode: must be \"http\" or \"tcp\"" },
    { "{'services': [{'name': 'web'}]}",
      "FILE: services[0].listen: is required" },
    { "{'services': [{'name': 'web', 'listen': []}]}",
      "FILE:1:31: services[0].listen: must not be empty" },
    { "{'services': [{'name': 'web', 'listen': '127.0.0.1:8080'}]}",
      "FILE:1:31: services[0].listen: must be an array" },
    { "{'services': [{'name': 'web', 'listen': ['127.0.0.1:8080', '127.0.0.1:0']}]}",
      "FILE:1:60: services[0].listen[1]: must be \"IP:PORT\" or \"[IPv6]:PORT\" with a "
      "numeric address and a port 1..65535" },
    { "{'services': [{'name': 'web', 'listen': ['[::1]8080']}]}",
      "FILE:1:42: services[0].listen[0]: must be \"IP:PORT\" or \"[IPv6]:PORT\" with a "
      "numeric address and a port 1..65535" },
    { "{'services': [{'name': 'web', 'listen': [8080]}]}",
      "FILE:1:42: services[0].listen[0]: must be a string" },
    { "{'services': [\n  " ONE("a", "'127.0.0.1:8080'") ",\n  "
      ONE("b", "'127.0.0.1:8081', '127.0.0.1:8080'") "\n]}",
      "FILE:3:46: services[1].listen[1]: 127.0.0.1:8080 is already used by service \"a\"" },
    { "{'services': [\n  " ONE("a", "'127.0.0.1:8080'") ",\n  "
      ONE("b", "'0.0.0.0:8080'") "\n]}",
      "FILE:3:28: services[1].listen[0]: 0.0.0.0:8080 overlaps 127.0.0.1:8080 of service \"a\"" },
    { "{'services': [{'name': 'web', 'listen': ['127.0.0.1:8080'],\n"
      " 'legacy': {'servers': ['127.0.0.1:9001']}}]}",
      "FILE: services[0].new: is required" },
    { "{'services': [{'name': 'web', 'listen': ['127.0.0.1:8080'],\n"
      " 'legacy': {'servers': ['127.0.0.1:9001']}, 'new': {}}]}",
      "FILE: services[0].new.servers: is required" },
    { "{'services': [{'name': 'web', 'listen': ['127.0.0.1:8080'],\n"
      " 'legacy': {'servers': []}}]}",
      "FILE:2:13: services[0].legacy.servers: must not be empty" },
    { "{'services': [{'name': 'web', 'listen': ['127.0.0.1:8080'],\n"
      " 'legacy': {'servers': ['127.0.0.1:9001'], 'weight': 5}}]}",
      "FILE:2:44: services[0].legacy.weight: unknown key" },
    { "{'services': [{'name': 'web', 'listen': ['127.0.0.1:8080'],\n"
      " 'legacy': ['127.0.0.1:9001']}]}",
      "FILE:2:2: services[0].legacy: must be an object" },

    /* routing */
    { SVC("'weight': 10.005"),
      "FILE:7:19: services[0].weight: must have at most two decimals" },
    { SVC("'weight': 100.01"),
      "FILE:7:19: services[0].weight: must be between 0 and 100" },
    { SVC("'weight': -1"),
      "FILE:7:19: services[0].weight: must be between 0 and 100" },
    { SVC("'weight': '10'"),
      "FILE:7:19: services[0].weight: must be a number" },
    { SVC("'sticky': {'by': 'ip'}"),
      "FILE:7:30: services[0].sticky.by: must be \"cookie\", \"header\" or \"client_ip\"" },
    { SVC("'sticky': {'by': 'cookie'}"),
      "FILE: services[0].sticky.name: is required with \"by\": \"cookie\"" },
    { SVC("'sticky': {'by': 'client_ip', 'name': 'x'}"),
      "FILE:7:49: services[0].sticky.name: not allowed with \"by\": \"client_ip\"" },
    { SVC("'sticky': {'by': 'header', 'name': 'X User'}"),
      "FILE:7:46: services[0].sticky.name: must be an HTTP token of 1..63 characters" },
    { SVC("'sticky': {'by': 'header', 'name': 'X-User', 'seed': 1}"),
      "FILE:7:64: services[0].sticky.seed: unknown key" },
    { SVC("'sticky': {'by': 'client_ip', 'salt': ''}"),
      "FILE:7:49: services[0].sticky.salt: must not be empty" },
    { SVC("'override': {}"),
      "FILE: services[0].override.header: is required" },
    { SVC("'override': {'header': 5}"),
      "FILE:7:32: services[0].override.header: must be a string" },
    { SVC("'override': {'header': 'X', 'allow_from': ['10.0.0.1/8']}"),
      "FILE:7:62: services[0].override.allow_from[0]: \"10.0.0.1/8\" has bits set after "
      "the prefix length (a host address with a network's length): did you mean "
      "10.0.0.0/8?" },
    { SVC("'override': {'header': 'X', 'allow_from': []}"),
      "FILE:7:47: services[0].override.allow_from: is empty and there is no secret_file: "
      "the override could never be honoured (remove \"override\" to have none)" },
    { "{'services': [{'name': 'db', 'mode': 'tcp', 'listen': ['127.0.0.1:5433'],\n"
      " 'legacy': {'servers': ['127.0.0.1:9001']}, 'new': {'servers': ['127.0.0.1:9002']},\n"
      " 'sticky': {'by': 'cookie', 'name': 'b'}}]}",
      "FILE:3:13: services[0].sticky.by: must be \"client_ip\" in tcp mode" },
    { "{'services': [{'name': 'db', 'mode': 'tcp', 'listen': ['127.0.0.1:5433'],\n"
      " 'legacy': {'servers': ['127.0.0.1:9001']}, 'new': {'servers': ['127.0.0.1:9002']},\n"
      " 'override': {'header': 'X-T'}}]}",
      "FILE:3:2: services[0].override: only valid in http mode" },

    /* health */
    { SVC("'health': {'type': 'tcp', 'rsie': 3}"),
      "FILE:7:45: services[0].health.rsie: unknown key (did you mean \"rise\"?)" },
    { SVC("'health': {'interval_ms': 2000.5}"),
      "FILE:7:30: services[0].health.interval_ms: must be an integer" },
    { SVC("'health': {'interval_ms': 1000, 'timeout_ms': 1000}"),
      "FILE:7:51: services[0].health.timeout_ms: must be less than interval_ms (1000)" },
    { SVC("'health': {'interval_ms': 500}"),
      "FILE:7:30: services[0].health.interval_ms: must be greater than timeout_ms (1000)" },
    { SVC("'health': {'interval_ms': 50}"),
      "FILE:7:30: services[0].health.interval_ms: must be between 100 and 3600000" },
    { SVC("'health': {'type': 'icmp'}"),
      "FILE:7:30: services[0].health.type: must be \"tcp\" or \"http\"" },
    { SVC("'health': {'type': 'tcp', 'path': '/healthz'}"),
      "FILE:7:45: services[0].health.path: only valid with \"type\": \"http\"" },
    { SVC("'health': {'type': 'http', 'path': 'healthz'}"),
      "FILE:7:46: services[0].health.path: must start with '/', hold visible ASCII only "
      "and be shorter than 256 bytes" },
    { SVC("'health': {'type': 'http', 'method': 'G T'}"),
      "FILE:7:46: services[0].health.method: must be an HTTP method token of 1..15 "
      "characters" },
    { SVC("'health': {'type': 'http', 'expect_status': [200]}"),
      "FILE:7:46: services[0].health.expect_status: must be an array [min, max] of two "
      "status codes" },
    { SVC("'health': {'type': 'http', 'expect_status': [300, 200]}"),
      "FILE:7:69: services[0].health.expect_status[1]: must not be less than the "
      "minimum (300)" },
    { SVC("'health': {'type': 'http', 'expect_status': [200, 600]}"),
      "FILE:7:69: services[0].health.expect_status[1]: must be between 100 and 599" },
    { SVC("'health': {'rise': 0}"),
      "FILE:7:30: services[0].health.rise: must be between 1 and 100" },
    { SVC("'health': 'http'"),
      "FILE:7:19: services[0].health: must be an object" },

    /* rollback */
    { SVC("'rollback': {'rsie': 1}"),
      "FILE:7:32: services[0].rollback.rsie: unknown key" },
    { SVC("'rollback': {'max_error_rate': 1.5}"),
      "FILE:7:32: services[0].rollback.max_error_rate: must be between 0 and 1" },
    { SVC("'rollback': {'max_error_rate': -0.01}"),
      "FILE:7:32: services[0].rollback.max_error_rate: must be between 0 and 1" },
    { SVC("'rollback': {'max_error_rate': '5%'}"),
      "FILE:7:32: services[0].rollback.max_error_rate: must be a number" },
    { SVC("'rollback': {'window_s': 601}"),
      "FILE:7:32: services[0].rollback.window_s: must be between 1 and 600" },
    { SVC("'rollback': {'min_requests': 0}"),
      "FILE:7:32: services[0].rollback.min_requests: must be between 1 and 1000000" },
    { SVC("'rollback': {'enabled': 'yes'}"),
      "FILE:7:32: services[0].rollback.enabled: must be true or false" },
    { SVC("'rollback': {'action': 'panic'}"),
      "FILE:7:32: services[0].rollback.action: must be \"rollback\" or \"freeze\"" },
    { SVC("'rollback': {'max_error_ratio_to_legacy': -1}"),
      "FILE:7:32: services[0].rollback.max_error_ratio_to_legacy: must be between 0 and "
      "1000" },

    /* plan */
    { SVC("'plan': {'steps': [1, 5, 5]}"),
      "FILE:7:44: services[0].plan.steps[2]: must be greater than the previous step (5)" },
    { SVC("'plan': {'steps': [10, 2.5]}"),
      "FILE:7:42: services[0].plan.steps[1]: must be greater than the previous step (10)" },
    { SVC("'plan': {'steps': [0, 10]}"),
      "FILE:7:38: services[0].plan.steps[0]: may be 0 only with max_diff_rate (a bake on "
      "shadow traffic that the diff rate gates)" },
    { SVC("'plan': {'steps': [10, 0]}"),
      "FILE:7:42: services[0].plan.steps[1]: must be greater than 0 and at most 100" },
    { SVC("'plan': {'steps': [100.5]}"),
      "FILE:7:38: services[0].plan.steps[0]: must be between 0 and 100" },
    { SVC("'plan': {'steps': [0, 10], 'max_diff_rate': 0.01}"),
      "FILE:7:46: services[0].plan.max_diff_rate: needs a \"shadow\" section (the diff rate is "
      "shadow traffic's)" },
    { SVC("'plan': {'steps': [10], 'max_diff_rate': 2}"),
      "FILE:7:43: services[0].plan.max_diff_rate: must be between 0 and 1" },
    { SVC("'rollback': {'max_diff_rate': 0.1}"),
      "FILE:7:32: services[0].rollback.max_diff_rate: needs a \"shadow\" section (the diff rate "
      "is shadow traffic's)" },

    /* shadow */
    { SVC("'shadow': {'percnt': 5}"),
      "FILE:7:30: services[0].shadow.percnt: unknown key (did you mean \"percent\"?)" },
    { SVC("'shadow': {'percent': 101}"),
      "FILE:7:30: services[0].shadow.percent: must be between 0 and 100" },
    { SVC("'shadow': {'to': 'both'}"),
      "FILE:7:30: services[0].shadow.to: must be \"other\", \"new\" or \"legacy\"" },
    { SVC("'shadow': {'methods': ['get']}"),
      "FILE:7:42: services[0].shadow.methods[0]: must be an HTTP method in capitals "
      "(1..15 of A-Z 0-9 - _)" },
    { SVC("'shadow': {'methods': []}"),
      "FILE:7:30: services[0].shadow.methods: must not be empty (remove \"shadow\" to turn "
      "it off)" },
    { SVC("'shadow': {'max_inflight': 0}"),
      "FILE:7:30: services[0].shadow.max_inflight: must be between 1 and 100000" },
    { SVC("'shadow': {'compare': {'body': 'xml'}}"),
      "FILE:7:42: services[0].shadow.compare.body: must be \"bytes\", \"json\" or \"none\"" },
    { SVC("'shadow': {'compare': {'body': 'json', 'ignore_json': ['ts']}}"),
      "FILE:7:74: services[0].shadow.compare.ignore_json[0]: must start with \"$\"" },
    { SVC("'shadow': {'compare': {'ignore_json': ['$.ts']}}"),
      "FILE:7:42: services[0].shadow.compare.ignore_json: applies only with \"body\": "
      "\"json\"" },
    { SVC("'shadow': {'compare': {'headers': ['*', 'date']}}"),
      "FILE:7:42: services[0].shadow.compare.headers: \"*\" must be the only entry" },
    { SVC("'shadow': {'compare': {'ignore_headers': ['date']}}"),
      "FILE:7:42: services[0].shadow.compare.ignore_headers: applies only with \"headers\": "
      "[\"*\"]" },
    { SVC("'shadow': {'noise': {'second_server': 1}}"),
      "FILE:7:40: services[0].shadow.noise.second_server: must be true or false" },
    { SVC("'plan': {'steps': [1.005]}"),
      "FILE:7:38: services[0].plan.steps[0]: must have at most two decimals" },
    { SVC("'plan': {'bake_s': 60}"),
      "FILE: services[0].plan.steps: is required" },
    { SVC("'plan': {'steps': []}"),
      "FILE:7:28: services[0].plan.steps: must hold 1..32 steps" },
    { SVC("'plan': {'steps': [50], 'bake_s': 0}"),
      "FILE:7:43: services[0].plan.bake_s: must be between 1 and 604800" },

    /* the rest of a service */
    { SVC("'on_new_down': 'panic'"),
      "FILE:7:19: services[0].on_new_down: must be \"fallback\" or \"rollback\"" },
    { SVC("'timeouts': {'connect_ms': 0}"),
      "FILE:7:32: services[0].timeouts.connect_ms: must be between 1 and 86400000" },
    { SVC("'timeouts': {'read_ms': 1000}"),
      "FILE:7:32: services[0].timeouts.read_ms: unknown key" },
    { SVC("'timeouts': 30"),
      "FILE:7:19: services[0].timeouts: must be an object" },
    { SVC("'limits': {'head_bytes': 100}"),
      "FILE:7:30: services[0].limits.head_bytes: must be between 1024 and 1048576" },
    { SVC("'limits': {'body_bytes': -1}"),
      "FILE:7:30: services[0].limits.body_bytes: must be between 0 and "
      "9223372036854775807" },
    { SVC("'limits': {'chunk_ext_bytes': 0}"),
      "FILE:7:30: services[0].limits.chunk_ext_bytes: must be between 1 and 65536" },
    { SVC("'limits': {'max_connections': 10000001}"),
      "FILE:7:30: services[0].limits.max_connections: must be between 0 and 10000000" },
    { TOP("'limits': {'max_connections': -1}"),
      "FILE:2:13: limits.max_connections: must be between 0 and 10000000" },
    { TOP("'limits': {'max_conections': 5}"),
      "FILE:2:13: limits.max_conections: unknown key (did you mean \"max_connections\"?)" },
};

static void
test_bad_configs(void **state)
{
    char err[ERRLEN];
    size_t i, failed = 0;

    (void)state;
    for (i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        struct px_conf *c = load_text(bad_cases[i].text, err, sizeof(err));

        if (c != NULL) {
            print_error("case %zu loaded, expected: %s\n", i, bad_cases[i].msg);
            px_conf_free(c);
            failed++;
        } else if (strcmp(err, bad_cases[i].msg) != 0) {
            print_error("case %zu\n  got:  %s\n  want: %s\n", i, err, bad_cases[i].msg);
            failed++;
        }
    }
    assert_int_equal(failed, 0);
    assert_true(i >= 40);
}

/* Shadow traffic's errors are collected with the others of one load
 * (px_conf_load_n, `cutoverd -t`): a bad "shadow" and the errors after it;
 * a diff rate is said to need a "shadow" only when there is none, not when
 * the section is there but wrong. */
static void
test_shadow_errors_collected(void **state)
{
    char path[512], err[4096];
    struct px_conf *c;

    (void)state;
    write_tmp(SVC("'shadow': {'percnt': 5}, 'rollback': {'max_diff_rate': 0.1},\n"
                  "  'limits': {'head_bytes': 100}"), path, sizeof(path));
    c = px_conf_load_n(path, CONF_ERRORS_MAX, err, sizeof(err));
    unlink(path);
    assert_null(c);
    assert_non_null(strstr(err, "services[0].shadow.percnt: unknown key"));
    assert_non_null(strstr(err, "services[0].limits.head_bytes: must be between"));
    assert_non_null(strstr(err, ": 2 errors"));
    assert_null(strstr(err, "needs a \"shadow\" section"));

    write_tmp("{'services': [{'name': 'db', 'mode': 'tcp', 'listen': ['127.0.0.1:8080'],\n"
              " 'legacy': {'servers': ['127.0.0.1:9001']},\n"
              " 'new': {'servers': ['127.0.0.1:9002']},\n"
              " 'shadow': {}, 'plan': {'steps': [10], 'max_diff_rate': 0.1}}]}\n",
              path, sizeof(path));
    c = px_conf_load_n(path, CONF_ERRORS_MAX, err, sizeof(err));
    unlink(path);
    assert_null(c);
    assert_non_null(strstr(err, "services[0].shadow: only valid in http mode"));
    assert_null(strstr(err, "needs a \"shadow\" section"));
}

/* One server too many on a side. */
static void
test_too_many_servers(void **state)
{
    char text[8192], err[ERRLEN];
    size_t n = 0;
    unsigned i;

    (void)state;
    n += (size_t)snprintf(text + n, sizeof(text) - n,
                          "{'services': [{'name': 'web', 'listen': ['127.0.0.1:8080'],\n"
                          " 'new': {'servers': ['127.0.0.1:9002']},\n"
                          " 'legacy': {'servers': [");
    for (i = 0; i <= RT_MAX_SERVERS; i++)
        n += (size_t)snprintf(text + n, sizeof(text) - n, "%s'10.0.0.%u:80'",
                              i > 0 ? ", " : "", i + 1);
    snprintf(text + n, sizeof(text) - n, "]}}]}\n");
    assert_null(load_text(text, err, sizeof(err)));
    assert_string_equal(err, "FILE:3:13: services[0].legacy.servers: must hold at most 64 "
                             "addresses");
}

static void
test_missing_file(void **state)
{
    char path[512], err[ERRLEN], want[700];

    (void)state;
    snprintf(path, sizeof(path), "%s/cutover-no-such-dir/conf.json", tmp_dir());
    assert_null(px_conf_load(path, err, sizeof(err)));
    snprintf(want, sizeof(want), "%s: No such file or directory", path);
    assert_string_equal(err, want);
}

/* A valid but suspicious value loads, and the warning names its place. */
static void
test_warnings(void **state)
{
    char path[512], out[1024], log[4096], err[ERRLEN];
    struct px_conf *c;
    int saved, fd;
    ssize_t n;

    (void)state;
    write_tmp(SVC("'timeouts': {'connect_ms': 5},\n"
                  "  'plan': {'steps': [10, 100], 'bake_s': 5}"), path, sizeof(path));
    snprintf(out, sizeof(out), "%s/cutover-conf-log-XXXXXX", tmp_dir());
    fd = mkstemp(out);
    assert_true(fd >= 0);
    saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
    c = px_conf_load(path, err, sizeof(err));
    assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
    close(saved);
    n = pread(fd, log, sizeof(log) - 1, 0);
    close(fd);
    unlink(out);
    unlink(path);
    if (c == NULL)
        fail_msg("%s", err);
    px_conf_free(c);
    assert_true(n > 0);
    log[n] = '\0';
    snprintf(out, sizeof(out), "%s:7:32: services[0].timeouts.connect_ms: 5 is "
             "suspiciously small for a value in milliseconds", path);
    if (strstr(log, out) == NULL)
        fail_msg("no \"%s\" in:\n%s", out, log);
    snprintf(out, sizeof(out), "%s:8:32: services[0].plan.bake_s: 5 is shorter than "
             "rollback.window_s (10)", path);
    if (strstr(log, out) == NULL)
        fail_msg("no \"%s\" in:\n%s", out, log);
    assert_non_null(strstr(log, " level=warn module=conf msg="));   /* logfmt */
}

/* ------------------------------------------------------------------ */
/* px_addr_parse                                                       */

static void
test_addr_parse_valid(void **state)
{
    static const struct {
        const char *text;
        int family;
        unsigned port;
    } cases[] = {
        { "127.0.0.1:8080", AF_INET, 8080 },
        { "0.0.0.0:1", AF_INET, 1 },
        { "255.255.255.255:65535", AF_INET, 65535 },
        { "[::1]:8080", AF_INET6, 8080 },
        { "[::]:443", AF_INET6, 443 },
        { "[2001:db8::1]:5432", AF_INET6, 5432 },
        { "[::ffff:10.0.0.1]:80", AF_INET6, 80 },
    };
    struct px_addr a;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (px_addr_parse(cases[i].text, &a) != 0)
            fail_msg("%s refused", cases[i].text);
        assert_string_equal(a.text, cases[i].text);
        assert_int_equal(a.ss.ss_family, cases[i].family);
        if (cases[i].family == AF_INET) {
            const struct sockaddr_in *sin = (const void *)&a.ss;

            assert_int_equal(a.len, sizeof(*sin));
            assert_int_equal(ntohs(sin->sin_port), cases[i].port);
        } else {
            const struct sockaddr_in6 *sin6 = (const void *)&a.ss;

            assert_int_equal(a.len, sizeof(*sin6));
            assert_int_equal(ntohs(sin6->sin6_port), cases[i].port);
        }
    }
    assert_int_equal(px_addr_parse("10.1.2.3:80", &a), 0);
    assert_int_equal(((const struct sockaddr_in *)(const void *)&a.ss)->sin_addr.s_addr,
                     htonl(0x0a010203));
}

static void
test_addr_parse_invalid(void **state)
{
    static const char *const cases[] = {
        "", "127.0.0.1", "127.0.0.1:", ":8080", "127.0.0.1:0", "127.0.0.1:65536",
        "127.0.0.1:99999", "127.0.0.1:123456", "127.0.0.1:-1", "127.0.0.1:+80",
        "127.0.0.1:80a", "127.0.0.1: 80", "localhost:80", "example.com:443",
        "1.2.3:80", "1.2.3.4.5:80", "256.0.0.1:80", "::1:8080", "[::1]", "[::1]:",
        "[::1]8080", "[::1:8080", "::1]:8080", "[127.0.0.1]:80", "[fe80::1%eth0]:80",
        "[]:80", " 127.0.0.1:80", "127.0.0.1:80 ", "*:80",
        "[0000:0000:0000:0000:0000:0000:0000:0001]:65535xxxxxxxxxxxxxxxxxxxxxxxxx",
    };
    struct px_addr a;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        if (px_addr_parse(cases[i], &a) == 0)
            fail_msg("\"%s\" accepted", cases[i]);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_examples_load),
        cmocka_unit_test(test_demo),
        cmocka_unit_test(test_example),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_section_defaults),
        cmocka_unit_test(test_weights),
        cmocka_unit_test(test_sticky_salt),
        cmocka_unit_test(test_relative_paths),
        cmocka_unit_test(test_relative_paths_bare_name),
        cmocka_unit_test(test_override_secret_file),
        cmocka_unit_test(test_bad_configs),
        cmocka_unit_test(test_shadow_errors_collected),
        cmocka_unit_test(test_too_many_servers),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_warnings),
        cmocka_unit_test(test_addr_parse_valid),
        cmocka_unit_test(test_addr_parse_invalid),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
