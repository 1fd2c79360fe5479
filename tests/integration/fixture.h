/*
 * fixture: the setup most integration tests share, on top of the harness: a
 * private directory, two test backends per side on free loopback ports, a
 * config for one service written from a template, and the real cutoverd
 * started on it with a fixed random seed (so random draws are repeatable).
 * Header-only (static inline) so each test stays one file.
 */
#ifndef CUTOVER_TESTS_FIXTURE_H
#define CUTOVER_TESTS_FIXTURE_H

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/harness/harness.h"

struct fx {
    char *dir;                   /* owned: private temp directory */
    bool tcp;                    /* service mode */
    unsigned nservers;           /* backends per side (1 or 2) */
    int port[2][2];              /* [side][i] backend ports; side 0 legacy, 1 new */
    pid_t backend[2][2];
    int proxy_port;
    pid_t proxy;
    char sock[512], conf[512], log[512], state[512], audit[512];
    char extra[2048];            /* extra service keys, JSON, leading comma included */
    unsigned workers;            /* "workers": 1 from fx_init(): which worker accepts a
                                  * connection depends on its source port, so tests of
                                  * pools and seeded draws pin one; 22_workers sets 2 */
};

static inline int
fx_write_conf(struct fx *f)
{
    char servers[2][256], buf[8192];
    unsigned s, i;

    for (s = 0; s < 2; s++) {
        servers[s][0] = '\0';
        for (i = 0; i < f->nservers; i++) {
            size_t n = strlen(servers[s]);

            snprintf(servers[s] + n, sizeof(servers[s]) - n, "%s\"127.0.0.1:%d\"",
                     i ? ", " : "", f->port[s][i]);
        }
    }
    snprintf(buf, sizeof(buf),
             "{\n"
             "  \"admin\": { \"socket\": \"%s\" },\n"
             "  \"state\": { \"file\": \"%s\" },\n"
             "  \"audit\": { \"file\": \"%s\" },\n"
             "  \"shutdown_grace_ms\": 2000,\n"
             "  \"workers\": %u,\n"
             "  \"services\": [{\n"
             "    \"name\": \"web\", \"mode\": \"%s\",\n"
             "    \"listen\": [\"127.0.0.1:%d\"],\n"
             "    \"legacy\": { \"servers\": [%s] },\n"
             "    \"new\": { \"servers\": [%s] }%s\n"
             "  }]\n"
             "}\n",
             f->sock, f->state, f->audit, f->workers, f->tcp ? "tcp" : "http", f->proxy_port,
             servers[0], servers[1], f->extra);
    return h_write_file(f->conf, buf);
}

/* Creates the directory and starts the backends (named legacy, new, or
 * legacy2/new2 for the second server of a side). <extra> is appended to the
 * service object (",\"weight\": 10"). Returns 0 or -1. */
static inline int
fx_init(struct fx *f, bool tcp, unsigned nservers, const char *extra)
{
    static const char *const names[2][2] = { { "legacy", "legacy2" }, { "new", "new2" } };
    unsigned s, i;

    memset(f, 0, sizeof(*f));
    f->workers = 1;
    f->tcp = tcp;
    f->nservers = nservers;
    if ((f->dir = h_tmpdir()) == NULL)
        return -1;
    snprintf(f->sock, sizeof(f->sock), "%s/admin.sock", f->dir);
    snprintf(f->conf, sizeof(f->conf), "%s/cutover.json", f->dir);
    snprintf(f->log, sizeof(f->log), "%s/cutoverd.log", f->dir);
    snprintf(f->state, sizeof(f->state), "%s/state.json", f->dir);
    snprintf(f->audit, sizeof(f->audit), "%s/audit.jsonl", f->dir);
    snprintf(f->extra, sizeof(f->extra), "%s", extra != NULL ? extra : "");
    f->proxy_port = h_free_port();
    for (s = 0; s < 2; s++) {
        for (i = 0; i < nservers; i++) {
            f->port[s][i] = h_free_port();
            f->backend[s][i] = h_backend_start(names[s][i], f->port[s][i], f->dir, tcp);
            if (f->backend[s][i] < 0)
                return -1;
        }
    }
    return fx_write_conf(f);
}

/* Starts cutoverd -R <seed> on the fixture's config and waits until it
 * listens. Returns 0 or -1 (log dumped). */
static inline int
fx_start_proxy(struct fx *f, unsigned seed)
{
    char seed_text[32];
    char *argv[] = { (char *)h_bin("cutoverd"), "-c", f->conf, "-R", seed_text, NULL };

    snprintf(seed_text, sizeof(seed_text), "%u", seed);
    f->proxy = h_spawn(argv, f->log);
    if (f->proxy < 0)
        return -1;
    if (h_wait_unix(f->sock, 10000) < 0 || h_wait_port(f->proxy_port, 10000) < 0) {
        h_dump_file(f->log, 4000);
        return -1;
    }
    return 0;
}

static inline void
fx_fini(struct fx *f)
{
    h_kill_all();
    if (f->dir != NULL) {
        h_rmrf(f->dir);
        free(f->dir);
    }
    f->dir = NULL;
}

/* For a test whose cmocka state is a struct fx: allocates it into *<state>
 * (so the teardown finds it even when a step fails), initializes it
 * (fx_init) and starts cutoverd with <seed>. Returns 0 or -1. */
static inline int
fx_open(void **state, bool tcp, unsigned nservers, const char *extra, unsigned seed)
{
    struct fx *f = calloc(1, sizeof(*f));

    *state = f;
    if (f == NULL || fx_init(f, tcp, nservers, extra) != 0)
        return -1;
    return fx_start_proxy(f, seed);
}

/* cmocka teardown of fx_open(): stops everything, removes the directory. */
static inline int
fx_teardown(void **state)
{
    struct fx *f = *state;

    if (f != NULL) {
        fx_fini(f);
        free(f);
    }
    return 0;
}

/* Sends <n> GET <path> requests on one keep-alive connection (with
 * <hdr>(i) extra header lines when <hdr> is not NULL) and counts the
 * answers of each backend by body. Returns 0 or -1. */
static inline int
fx_count(struct fx *f, int n, const char *path,
         void (*hdr)(int i, char *buf, size_t len), int counts[2])
{
    char req[1024], extra[512];
    struct h_resp r;
    int fd = -1, i;

    counts[0] = counts[1] = 0;
    memset(&r, 0, sizeof(r));
    for (i = 0; i < n; i++) {
        if (fd < 0 && (fd = h_connect(f->proxy_port)) < 0)
            return -1;
        extra[0] = '\0';
        if (hdr != NULL)
            hdr(i, extra, sizeof(extra));
        snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: test\r\n%s\r\n", path, extra);
        if (h_send_all(fd, req, strlen(req)) < 0 || h_read_response(fd, &r) < 0) {
            fprintf(stderr, "fx_count: request %d failed\n", i);
            close(fd);
            return -1;
        }
        if (r.status == 200 && r.body_len >= 4 && strncmp(r.body, "new", 3) == 0)
            counts[1]++;
        else if (r.status == 200 && strncmp(r.body, "legacy", 6) == 0)
            counts[0]++;
        else
            fprintf(stderr, "fx_count: unexpected answer %d %.*s\n", r.status,
                    (int)r.body_len, r.body != NULL ? r.body : "");
        if (r.closed) {
            close(fd);
            fd = -1;
        }
        h_resp_free(&r);
    }
    if (fd >= 0)
        close(fd);
    return 0;
}

/* Runs cutoverctl on the fixture's socket; returns its exit code. */
#define fx_ctl(f, out, ...) h_ctl((f)->sock, (out), sizeof(out), __VA_ARGS__, (char *)NULL)

/* status --json of the only service, as an object (caller decrefs the root). */
static inline json_t *
fx_status(struct fx *f, json_t **root)
{
    json_t *svcs;

    *root = h_ctl_json(f->sock, "status", (char *)NULL);
    if (*root == NULL)
        return NULL;
    svcs = json_object_get(*root, "services");
    return json_array_get(svcs, 0);
}

/* Weight in percent from status, or -1. */
static inline double
fx_weight(struct fx *f)
{
    json_t *root, *svc = fx_status(f, &root);
    double w = svc != NULL ? json_number_value(json_object_get(svc, "weight")) : -1;

    json_decref(root);
    return w;
}

/* State name from status, copied into <buf>. */
static inline const char *
fx_state(struct fx *f, char *buf, size_t len)
{
    json_t *root, *svc = fx_status(f, &root);
    const char *s = svc != NULL ? json_string_value(json_object_get(svc, "state")) : NULL;

    snprintf(buf, len, "%s", s != NULL ? s : "?");
    json_decref(root);
    return buf;
}

/* GET /metrics on the HTTP admin endpoint at <admin_port>: fails the test
 * unless it answers 200 with a text/plain body; returns the text (caller
 * frees). */
static inline char *
fx_scrape(int admin_port)
{
    struct h_resp r;
    char ct[128];
    char *text;

    memset(&r, 0, sizeof(r));
    if (h_get(admin_port, "/metrics", NULL, &r) != 0)
        fail_msg("GET /metrics on 127.0.0.1:%d: no answer", admin_port);
    if (r.status != 200)
        fail_msg("GET /metrics: status %d", r.status);
    if (h_resp_header(&r, "Content-Type", ct, sizeof(ct)) == NULL ||
        strncmp(ct, "text/plain", 10) != 0)
        fail_msg("GET /metrics: Content-Type %s", ct);
    text = strndup(r.body != NULL ? r.body : "", r.body_len);
    h_resp_free(&r);
    assert_non_null(text);
    return text;
}

/* The value of the series written exactly as <fmt> (name{labels}) in the
 * scrape <text>; fails the test when it is absent. */
static inline double __attribute__((format(printf, 2, 3)))
fx_metric(const char *text, const char *fmt, ...)
{
    char series[512];
    const char *p = text;
    size_t n;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(series, sizeof(series), fmt, ap);
    va_end(ap);
    n = strlen(series);
    while ((p = strstr(p, series)) != NULL) {
        if ((p == text || p[-1] == '\n') && p[n] == ' ')
            return strtod(p + n + 1, NULL);
        p += n;
    }
    fail_msg("series %s is not in the scrape:\n%s", series, text);
    return -1;
}

/* Asserts the service's state and weight (percent). */
static inline void
fx_expect_state(struct fx *f, const char *want, double weight)
{
    char st[64];

    assert_string_equal(fx_state(f, st, sizeof(st)), want);
    assert_true(fx_weight(f) == weight);
}

/* Sends SIGHUP and waits up to <wait_ms> for the log line of the
 * successful reload that makes config generation <generation>. */
static inline void
fx_reload_ok(struct fx *f, int wait_ms, unsigned generation)
{
    char needle[96];

    snprintf(needle, sizeof(needle), "configuration generation %u loaded", generation);
    assert_int_equal(kill(f->proxy, SIGHUP), 0);
    if (h_wait_log(f->log, needle, wait_ms) != 0)
        fail_msg("no \"%s\" in the log", needle);
}

#endif
