/*
 * Metrics and the access log. GET /metrics on admin.listen after real
 * traffic: requests_total per side adds up to what was sent and matches
 * what each backend answered, the latency histogram counts every request,
 * weight, server_up, cutover_rollbacks_total{reason="manual"} after a
 * `cutoverctl rollback`, reason="error_rate" after an automatic rollback
 * and cutover_freezes_total after an automatic freeze; the whole text passes `promtool check metrics`
 * (format and lint; promtool comes from the Debian package prometheus, and
 * its absence fails the test). The access log: off by default (no file),
 * one line per HTTP request and per TCP connection with side and server
 * when "access_log" is set (failures with their kind, refused requests
 * too, paths escaped), reopened on SIGHUP after a rotation; a bad
 * "access_log" key is refused with its place, and a file that cannot be
 * opened stops the daemon at startup with the reason.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/integration/fixture.h"

#define NREQ 40

struct t {
    struct fx f;                 /* f.admin_port: admin.listen */
    char access_log[600];        /* "" when off */
};

/* Rewrites the fixture's config with admin.listen, one loop per CPU
 * (cutoverd's default) and, when <alog> is not NULL, "access_log": {"file":
 * <alog>} (relative: against the config's directory). */
static void
write_conf(struct t *t, const char *alog, const char *service_extra)
{
    struct fx *f = &t->f;

    f->workers = 0;
    if (alog != NULL)
        snprintf(f->top_extra, sizeof(f->top_extra), ",\n  \"access_log\": { \"file\": \"%s\" }",
                 alog);
    else
        f->top_extra[0] = '\0';
    snprintf(f->extra, sizeof(f->extra), "%s", service_extra);
    assert_int_equal(fx_write_conf(f), 0);
    if (alog != NULL)
        snprintf(t->access_log, sizeof(t->access_log), "%s/%s", f->dir, alog);
    else
        t->access_log[0] = '\0';
}

static struct t *
start(void **state, bool tcp, const char *alog, const char *service_extra)
{
    struct t *t = fx_new(state, sizeof(*t), tcp, 1, NULL);

    t->f.admin_port = h_free_port();
    write_conf(t, alog, service_extra);
    assert_int_equal(fx_start_proxy(&t->f, 7), 0);     /* and admin.listen */
    return t;
}

/* Runs promtool check metrics on <text>; fails the test on any complaint
 * (format errors and lint problems alike) or when promtool is missing. */
static void
promtool_check(struct t *t, const char *text)
{
    char path[600], cmd[1400], out[8192];
    size_t n;
    FILE *p;
    int st;

    snprintf(path, sizeof(path), "%s/scrape.prom", t->f.dir);
    assert_int_equal(h_write_file(path, text), 0);
    snprintf(cmd, sizeof(cmd), "promtool check metrics < '%s' 2>&1", path);
    p = popen(cmd, "r");
    assert_non_null(p);
    n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    st = pclose(p);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 127)
        fail_msg("promtool not found: install the Debian package prometheus "
                 "(tests/tools/deps.sh)");
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || n > 0)
        fail_msg("promtool check metrics (exit %d):\n%s", WIFEXITED(st) ? WEXITSTATUS(st) : -1,
                 out);
}

static double
side_requests(const char *text, const char *side)
{
    static const char *const classes[] = { "2xx", "3xx", "4xx", "5xx", "error" };
    double sum = 0;
    size_t i;

    for (i = 0; i < 5; i++)
        sum += fx_metric(text, "cutover_requests_total{service=\"web\",side=\"%s\",class=\"%s\"}",
                      side, classes[i]);
    return sum;
}

static void
test_metrics_after_traffic(void **state)
{
    struct t *t = start(state, false, NULL, ",\n    \"weight\": 50");
    struct fx *f = &t->f;
    char out[1024], path[600];
    struct stat sb;
    int c[2], i;
    char *text;

    assert_int_equal(fx_count(f, NREQ, "/", NULL, c), 0);
    assert_int_equal(c[0] + c[1], NREQ);
    /* seed 7 at 50 %: both sides served some */
    assert_true(c[0] > 0 && c[1] > 0);

    /* the clients have closed, but the proxy (one loop per CPU) counts a close
     * when it reads it: scrape until every close is counted, within 3 s */
    for (i = 0;; i++) {
        text = fx_scrape(&t->f);
        if (fx_metric(text, "cutover_connections{service=\"web\"}") == 0 || i == 300)
            break;
        free(text);
        h_sleep_ms(10);
    }
    promtool_check(t, text);
    assert_true(side_requests(text, "legacy") == c[0]);
    assert_true(side_requests(text, "new") == c[1]);
    assert_true(fx_metric(text, "cutover_requests_total{service=\"web\",side=\"legacy\","
                             "class=\"2xx\"}") == c[0]);
    assert_true(fx_metric(text, "cutover_request_duration_seconds_count{service=\"web\","
                             "side=\"legacy\"}") == c[0]);
    assert_true(fx_metric(text, "cutover_request_duration_seconds_count{service=\"web\","
                             "side=\"new\"}") == c[1]);
    assert_true(fx_metric(text, "cutover_request_duration_seconds_bucket{service=\"web\","
                             "side=\"new\",le=\"+Inf\"}") == c[1]);
    assert_true(fx_metric(text, "cutover_request_duration_seconds_sum{service=\"web\","
                             "side=\"new\"}") > 0);
    assert_true(fx_metric(text, "cutover_weight_percent{service=\"web\"}") == 50);
    assert_true(fx_metric(text, "cutover_server_up{service=\"web\",side=\"legacy\","
                             "server=\"127.0.0.1:%d\"}", f->port[0][0]) == 1);
    assert_true(fx_metric(text, "cutover_server_up{service=\"web\",side=\"new\","
                             "server=\"127.0.0.1:%d\"}", f->port[1][0]) == 1);
    assert_true(fx_metric(text, "cutover_server_requests_total{service=\"web\",side=\"new\","
                             "server=\"127.0.0.1:%d\"}", f->port[1][0]) == c[1]);
    assert_true(fx_metric(text, "cutover_server_failures_total{service=\"web\",side=\"new\","
                             "server=\"127.0.0.1:%d\"}", f->port[1][0]) == 0);
    assert_true(fx_metric(text, "cutover_errors_total{service=\"web\",side=\"new\","
                             "kind=\"connect\"}") == 0);
    assert_true(fx_metric(text, "cutover_fallbacks_total{service=\"web\"}") == 0);
    assert_true(fx_metric(text, "cutover_rollbacks_total{service=\"web\",reason=\"manual\"}") == 0);
    assert_true(fx_metric(text, "cutover_state{service=\"web\",state=\"steady\"}") == 1);
    assert_true(fx_metric(text, "cutover_plan_step{service=\"web\"}") == 0);
    assert_true(fx_metric(text, "cutover_connections{service=\"web\"}") == 0);
    assert_true(fx_metric(text, "cutover_build_info{version=\"%s\"}", "0.1.0") == 1);
    assert_true(fx_metric(text, "cutover_start_time_seconds") > 1.7e9);
    free(text);

    assert_int_equal(fx_ctl(f, out, "rollback", "--reason", "metrics test"), 0);
    text = fx_scrape(&t->f);
    promtool_check(t, text);
    assert_true(fx_metric(text, "cutover_rollbacks_total{service=\"web\",reason=\"manual\"}") == 1);
    assert_true(fx_metric(text, "cutover_rollbacks_total{service=\"web\",reason=\"error_rate\"}")
                == 0);
    assert_true(fx_metric(text, "cutover_weight_percent{service=\"web\"}") == 0);
    assert_true(fx_metric(text, "cutover_state{service=\"web\",state=\"rolled_back\"}") == 1);
    assert_true(fx_metric(text, "cutover_state{service=\"web\",state=\"steady\"}") == 0);
    assert_true(fx_metric(text, "cutover_generation{service=\"web\"}") >= 1);
    free(text);

    /* the access log is off by default: no file anywhere near the config */
    snprintf(path, sizeof(path), "%s/access.log", f->dir);
    assert_int_equal(stat(path, &sb), -1);
    assert_int_equal(errno, ENOENT);
}

/* Automatic decisions are counted by what caused them: a breach of the
 * error rate is cutover_rollbacks_total{reason="error_rate"}, with
 * rollback.action "freeze" it is cutover_freezes_total instead. */
static void
test_metrics_automatic_decisions(void **state)
{
    static const char *const actions[] = { "rollback", "freeze" };
    char extra[512], *text = NULL;
    long long until;
    unsigned k;

    for (k = 0; k < 2; k++) {
        struct t *t;

        snprintf(extra, sizeof(extra), ",\n    \"weight\": 50, \"rollback\": {\"window_s\": 3, "
                 "\"min_requests\": 10, \"max_error_rate\": 0.2, \"action\": \"%s\"}",
                 actions[k]);
        if (k == 1) {
            fx_teardown(state);
            *state = NULL;
        }
        t = start(state, false, NULL, extra);
        assert_int_equal(h_backend_set(t->f.port[1][0], "error_rate=1&seed=1"), 0);
        fx_drive(&t->f, 100, 0, NULL, NULL, NULL);
        until = h_now_ms() + 5000;
        for (;;) {
            text = fx_scrape(&t->f);
            if (fx_metric(text, "cutover_state{service=\"web\",state=\"%s\"}",
                       k == 0 ? "rolled_back" : "frozen") == 1)
                break;
            free(text);
            if (h_now_ms() > until)
                fail_msg("no automatic %s within 5 s", actions[k]);
            h_sleep_ms(50);
        }
        promtool_check(t, text);
        assert_true(fx_metric(text, "cutover_rollbacks_total{service=\"web\",reason=\"error_rate\"}")
                    == (k == 0 ? 1 : 0));
        assert_true(fx_metric(text, "cutover_rollbacks_total{service=\"web\",reason=\"manual\"}")
                    == 0);
        assert_true(fx_metric(text, "cutover_freezes_total{service=\"web\"}") == (k == 0 ? 0 : 1));
        assert_true(fx_metric(text, "cutover_weight_percent{service=\"web\"}") == (k == 0 ? 0 : 50));
        free(text);
    }
}

/* Lines of <path> that contain <needle>, up to <max> (copied into <lines>,
 * caller frees each). */
static int
grep_lines(const char *path, const char *needle, char **lines, int max)
{
    char *text = h_read_file(path), *line, *save = NULL;
    int n = 0;

    if (text == NULL)
        return -1;
    for (line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save))
        if (strstr(line, needle) != NULL && n < max)
            lines[n++] = strdup(line);
    free(text);
    return n;
}

/* The value of " key=" in <line> (up to the next space) into <buf>. */
static const char *
field(const char *line, const char *key, char *buf, size_t len)
{
    char pat[64];
    const char *p;
    size_t n;

    snprintf(pat, sizeof(pat), " %s=", key);
    p = strstr(line, pat);
    if (p == NULL && strncmp(line, pat + 1, strlen(pat) - 1) == 0)
        p = line - 1;
    if (p == NULL)
        fail_msg("no %s= in access log line: %s", key, line);
    p += strlen(pat);
    n = strcspn(p, " ");
    snprintf(buf, len, "%.*s", (int)n, p);
    return buf;
}

/* Waits until <path> holds <n> lines containing <needle>; returns them. */
static void
wait_lines(const char *path, const char *needle, char **lines, int n)
{
    long long until = h_now_ms() + 10000;
    int got = -1, i;

    while (h_now_ms() < until) {
        got = grep_lines(path, needle, lines, n + 1);
        if (got == n)
            return;
        for (i = 0; i < got; i++)
            free(lines[i]);
        h_sleep_ms(50);
    }
    h_dump_file(path, 4000);
    fail_msg("%s: %d line(s) with \"%s\", expected %d", path, got, needle, n);
}

static void
test_access_log_http(void **state)
{
    struct t *t = start(state, false, "logs.access", ",\n    \"weight\": 50");
    struct fx *f = &t->f;
    char *lines[NREQ + 1], buf[256], srv[2][64], rotated[700];
    int c[2], side_n[2] = { 0, 0 }, i;

    snprintf(srv[0], sizeof(srv[0]), "127.0.0.1:%d", f->port[0][0]);
    snprintf(srv[1], sizeof(srv[1]), "127.0.0.1:%d", f->port[1][0]);
    assert_int_equal(fx_count(f, NREQ, "/al/x?q=1", NULL, c), 0);
    wait_lines(t->access_log, "path=/al/x?q=1", lines, NREQ);
    for (i = 0; i < NREQ; i++) {
        bool is_new = strcmp(field(lines[i], "side", buf, sizeof(buf)), "new") == 0;

        if (!is_new && strcmp(buf, "legacy") != 0)
            fail_msg("side %s in: %s", buf, lines[i]);
        side_n[is_new]++;
        assert_string_equal(field(lines[i], "server", buf, sizeof(buf)), srv[is_new]);
        assert_string_equal(field(lines[i], "status", buf, sizeof(buf)), "200");
        assert_string_equal(field(lines[i], "method", buf, sizeof(buf)), "GET");
        assert_string_equal(field(lines[i], "service", buf, sizeof(buf)), "web");
        assert_string_equal(field(lines[i], "why", buf, sizeof(buf)), "weight");
        assert_string_equal(field(lines[i], "error", buf, sizeof(buf)), "-");
        assert_true(strncmp(field(lines[i], "client", buf, sizeof(buf)), "127.0.0.1:", 10) == 0);
        /* RFC 3339, UTC, milliseconds: 2026-12-05T18:40:34.123Z */
        field(lines[i], "ts", buf, sizeof(buf));
        assert_int_equal(strlen(buf), 24);
        assert_true(buf[10] == 'T' && buf[19] == '.' && buf[23] == 'Z');
        free(lines[i]);
    }
    assert_int_equal(side_n[0], c[0]);
    assert_int_equal(side_n[1], c[1]);

    /* quotes and backslashes in a path are escaped, so a line always splits
     * on spaces; a request refused by the proxy itself is logged too */
    {
        static const char odd[] = "GET /q\"x\\y HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
        static const char bad[] = "GET /v HTTP/2.0\r\nHost: t\r\n\r\n";
        struct h_resp r;
        int fd;

        memset(&r, 0, sizeof(r));
        assert_true((fd = h_connect(f->proxy_port)) >= 0);
        assert_int_equal(h_send_all(fd, odd, sizeof(odd) - 1), 0);
        assert_int_equal(h_read_response(fd, &r), 0);
        assert_int_equal(r.status, 200);
        h_resp_free(&r);
        close(fd);
        wait_lines(t->access_log, "path=/q\\x22x\\x5cy ", lines, 1);
        free(lines[0]);
        assert_true((fd = h_connect(f->proxy_port)) >= 0);
        assert_int_equal(h_send_all(fd, bad, sizeof(bad) - 1), 0);
        assert_int_equal(h_read_response(fd, &r), 0);
        assert_int_equal(r.status, 505);
        h_resp_free(&r);
        close(fd);
        wait_lines(t->access_log, " status=505 ", lines, 1);
        assert_string_equal(field(lines[0], "side", buf, sizeof(buf)), "-");
        assert_string_equal(field(lines[0], "server", buf, sizeof(buf)), "-");
        free(lines[0]);
    }

    /* logrotate: move the file, SIGHUP, the next lines go to a new file */
    snprintf(rotated, sizeof(rotated), "%s.1", t->access_log);
    assert_int_equal(rename(t->access_log, rotated), 0);
    assert_int_equal(kill(f->proxy, SIGHUP), 0);
    assert_int_equal(h_wait_path(t->access_log, 10000), 0);
    assert_int_equal(fx_count(f, 3, "/after-rotation", NULL, c), 0);
    wait_lines(t->access_log, "path=/after-rotation", lines, 3);
    for (i = 0; i < 3; i++)
        free(lines[i]);
    assert_int_equal(grep_lines(rotated, "path=/after-rotation", lines, 1), 0);
}

/* Failures are logged with what failed: a backend that resets is a 502
 * with error=upstream_reset on the side and server that failed, and the
 * metrics count it as an error of that side. */
static void
test_access_log_errors(void **state)
{
    /* the shield off: the reset must reach the client */
    struct t *t = start(state, false, "err.access", ",\n    \"weight\": 100, "
                                                    "\"shield\": {\"enabled\": false}");
    struct fx *f = &t->f;
    char *lines[2], buf[256], srv[64], *text;
    struct h_resp r;

    snprintf(srv, sizeof(srv), "127.0.0.1:%d", f->port[1][0]);
    assert_int_equal(h_backend_set(f->port[1][0], "mode=reset"), 0);
    memset(&r, 0, sizeof(r));
    assert_int_equal(h_get(f->proxy_port, "/reset-me", NULL, &r), 0);
    assert_int_equal(r.status, 502);
    h_resp_free(&r);
    wait_lines(t->access_log, "path=/reset-me ", lines, 1);
    assert_string_equal(field(lines[0], "status", buf, sizeof(buf)), "502");
    assert_string_equal(field(lines[0], "side", buf, sizeof(buf)), "new");
    assert_string_equal(field(lines[0], "server", buf, sizeof(buf)), srv);
    assert_string_equal(field(lines[0], "error", buf, sizeof(buf)), "upstream_reset");
    free(lines[0]);

    text = fx_scrape(&t->f);
    promtool_check(t, text);
    assert_true(fx_metric(text, "cutover_requests_total{service=\"web\",side=\"new\","
                             "class=\"error\"}") == 1);
    assert_true(fx_metric(text, "cutover_errors_total{service=\"web\",side=\"new\","
                             "kind=\"upstream_reset\"}") == 1);
    assert_true(fx_metric(text, "cutover_server_failures_total{service=\"web\",side=\"new\","
                             "server=\"%s\"}", srv) == 1);
    assert_true(fx_metric(text, "cutover_request_duration_seconds_count{service=\"web\","
                             "side=\"new\"}") == 1);
    free(text);
}

static void
test_access_log_tcp(void **state)
{
    struct t *t = start(state, true, "tcp.access", ",\n    \"weight\": 100");
    struct fx *f = &t->f;
    char *lines[4], buf[256], srv[64], echo[16];
    int i, fd;

    snprintf(srv, sizeof(srv), "127.0.0.1:%d", f->port[1][0]);
    for (i = 0; i < 3; i++) {
        assert_true((fd = h_connect(f->proxy_port)) >= 0);
        assert_int_equal(h_send_all(fd, "ping", 4), 0);
        assert_int_equal(read(fd, echo, 4), 4);
        close(fd);
    }
    /* one line per connection: the 3 above (4 bytes each way at least; the
     * test backend greets first) and the harness's readiness probe */
    wait_lines(t->access_log, " service=web ", lines, 4);
    for (i = 0; i < 4; i++)
        free(lines[i]);
    wait_lines(t->access_log, " bytes_in=4 ", lines, 3);
    for (i = 0; i < 3; i++) {
        assert_string_equal(field(lines[i], "side", buf, sizeof(buf)), "new");
        assert_string_equal(field(lines[i], "server", buf, sizeof(buf)), srv);
        assert_string_equal(field(lines[i], "method", buf, sizeof(buf)), "-");
        assert_string_equal(field(lines[i], "status", buf, sizeof(buf)), "0");
        assert_string_equal(field(lines[i], "error", buf, sizeof(buf)), "-");
        assert_true(atoi(field(lines[i], "bytes_out", buf, sizeof(buf))) >= 4);
        free(lines[i]);
    }
}

static void
test_access_log_config_errors(void **state)
{
    static const struct {
        const char *value;
        const char *expect;
    } cases[] = {
        { "{\"fiel\": \"a.log\"}", ":2:18: access_log.fiel: unknown key" },
        { "{}", "access_log.file: is required" },
        { "{\"file\": 5}", "access_log.file: must be a string" },
        { "{\"file\": \"\"}", "access_log.file: must not be empty" },
        { "\"a.log\"", "access_log: must be an object" },
    };
    char *dir = h_tmpdir(), conf[600], text[2048], out[4096];
    size_t i;

    (void)state;
    assert_non_null(dir);
    snprintf(conf, sizeof(conf), "%s/c.json", dir);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(text, sizeof(text),
                 "{\n  \"access_log\": %s,\n"
                 "  \"services\": [{\"name\": \"web\", \"listen\": [\"127.0.0.1:1\"],\n"
                 "    \"legacy\": {\"servers\": [\"127.0.0.1:2\"]},\n"
                 "    \"new\": {\"servers\": [\"127.0.0.1:3\"]}}]}\n", cases[i].value);
        assert_int_equal(h_write_file(conf, text), 0);
        if (h_cutoverd_check(conf, out, sizeof(out)) != 1 || strstr(out, cases[i].expect) == NULL)
            fail_msg("access_log %s: expected \"%s\", got: %s", cases[i].value,
                     cases[i].expect, out);
    }

    /* a path that cannot be opened stops cutoverd at startup, saying why */
    {
        char log[600], sock[600];
        char *argv[] = { (char *)h_bin("cutoverd"), "-c", conf, NULL };
        pid_t pid;
        char *logtext;

        snprintf(log, sizeof(log), "%s/d.log", dir);
        snprintf(sock, sizeof(sock), "%s/a.sock", dir);
        snprintf(text, sizeof(text),
                 "{\n  \"admin\": {\"socket\": \"%s\"},\n"
                 "  \"state\": {\"file\": \"st.json\"}, \"audit\": {\"file\": \"au.jsonl\"},\n"
                 "  \"access_log\": {\"file\": \"no/such/dir/a.log\"},\n"
                 "  \"services\": [{\"name\": \"web\", \"listen\": [\"127.0.0.1:%d\"],\n"
                 "    \"legacy\": {\"servers\": [\"127.0.0.1:2\"]},\n"
                 "    \"new\": {\"servers\": [\"127.0.0.1:3\"]}}]}\n", sock, h_free_port());
        assert_int_equal(h_write_file(conf, text), 0);
        pid = h_spawn(argv, log);
        assert_true(pid > 0);
        assert_int_equal(h_wait_exit(pid, 10000), 1);
        logtext = h_read_file(log);
        assert_non_null(logtext);
        if (strstr(logtext, "no/such/dir/a.log: cannot open: No such file or directory") == NULL)
            fail_msg("no reason in the log:\n%s", logtext);
        free(logtext);
    }
    h_rmrf(dir);
    free(dir);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_metrics_after_traffic, fx_teardown),
        cmocka_unit_test_teardown(test_metrics_automatic_decisions, fx_teardown),
        cmocka_unit_test_teardown(test_access_log_http, fx_teardown),
        cmocka_unit_test_teardown(test_access_log_errors, fx_teardown),
        cmocka_unit_test_teardown(test_access_log_tcp, fx_teardown),
        cmocka_unit_test(test_access_log_config_errors),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
