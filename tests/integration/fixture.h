/*
 * fixture: the setup most integration tests share, on top of the harness: a
 * private directory, two test backends per side on free loopback ports, a
 * config for one service written from a template (with the variations the
 * tests need: admin.listen, workers, listen addresses, more services...),
 * and the real cutoverd started on it with a fixed random seed (so random
 * draws are repeatable); then what several tests read and do through it:
 * status fields, the state file, the audit log (and whether every
 * generation has an entry), /metrics, traffic, cutoverctl, a clean stop.
 * Header-only (static inline) so each test stays one file.
 */
#ifndef CUTOVER_TESTS_FIXTURE_H
#define CUTOVER_TESTS_FIXTURE_H

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "admin/store.h"
#include "proxy/cookie.h"
#include "router/router.h"
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
                                  * pools and seeded draws pin one; 0 is cutoverd's
                                  * default, one per CPU */
    /* What fx_write_conf() writes besides (fx_init() leaves them empty or 0,
     * grace_ms aside): */
    int admin_port;              /* > 0: admin.listen on it, and fx_start_proxy()
                                  * waits for it too */
    int grace_ms;                /* shutdown_grace_ms: 2000 from fx_init() */
    char admin_extra[1024];      /* more "admin" keys, leading comma included */
    char top_extra[1024];        /* more top-level keys, leading comma included */
    char listen[512];            /* the service's "listen" list contents; "": the
                                  * fixture's port */
    char servers[2][512];        /* [side] "servers" list contents; "": all of the
                                  * side's backends */
    char side_extra[2][1024];    /* [side] more keys of the side object ("tls"),
                                  * leading comma included */
    char more_services[2048];    /* services after "web", leading comma included */
    unsigned nofile;             /* > 0: fx_start_proxy() starts cutoverd with this
                                  * RLIMIT_NOFILE (h_spawn_nofile) */
};

/* Writes the config of f->conf from the fields above. Returns 0 or -1. */
static inline int
fx_write_conf(struct fx *f)
{
    char servers[2][512], listen[512], admin_listen[64] = "", buf[16384];
    unsigned s, i;
    int n;

    for (s = 0; s < 2; s++) {
        snprintf(servers[s], sizeof(servers[s]), "%s", f->servers[s]);
        for (i = 0; f->servers[s][0] == '\0' && i < f->nservers; i++) {
            size_t k = strlen(servers[s]);

            snprintf(servers[s] + k, sizeof(servers[s]) - k, "%s\"127.0.0.1:%d\"",
                     i ? ", " : "", f->port[s][i]);
        }
    }
    if (f->listen[0] != '\0')
        snprintf(listen, sizeof(listen), "%s", f->listen);
    else
        snprintf(listen, sizeof(listen), "\"127.0.0.1:%d\"", f->proxy_port);
    if (f->admin_port > 0)
        snprintf(admin_listen, sizeof(admin_listen), ", \"listen\": \"127.0.0.1:%d\"",
                 f->admin_port);
    n = snprintf(buf, sizeof(buf),
                 "{\n"
                 "  \"admin\": { \"socket\": \"%s\"%s%s }%s,\n"
                 "  \"state\": { \"file\": \"%s\" },\n"
                 "  \"audit\": { \"file\": \"%s\" },\n"
                 "  \"shutdown_grace_ms\": %d,\n"
                 "  \"workers\": %u,\n"
                 "  \"services\": [{\n"
                 "    \"name\": \"web\", \"mode\": \"%s\",\n"
                 "    \"listen\": [%s],\n"
                 "    \"legacy\": { \"servers\": [%s]%s },\n"
                 "    \"new\": { \"servers\": [%s]%s }%s\n"
                 "  }%s]\n"
                 "}\n",
                 f->sock, admin_listen, f->admin_extra, f->top_extra, f->state, f->audit,
                 f->grace_ms, f->workers, f->tcp ? "tcp" : "http", listen, servers[0],
                 f->side_extra[0], servers[1], f->side_extra[1], f->extra, f->more_services);
    if (n < 0 || (size_t)n >= sizeof(buf)) {
        fprintf(stderr, "fx_write_conf: the config is longer than %zu bytes\n", sizeof(buf));
        return -1;
    }
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
    f->grace_ms = 2000;
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

/* Starts cutoverd -R <seed> on the fixture's config and waits (10 s at
 * most) until it listens, on admin.listen too when f->admin_port is set.
 * Returns 0 or -1 (log dumped). */
static inline int
fx_start_proxy(struct fx *f, unsigned seed)
{
    char seed_text[32];
    char *argv[] = { (char *)h_bin("cutoverd"), "-c", f->conf, "-R", seed_text, NULL };

    snprintf(seed_text, sizeof(seed_text), "%u", seed);
    f->proxy = h_spawn_nofile(argv, f->log, f->nofile);
    if (f->proxy < 0)
        return -1;
    if (h_wait_unix(f->sock, 10000) < 0 || h_wait_port(f->proxy_port, 10000) < 0 ||
        (f->admin_port > 0 && h_wait_port(f->admin_port, 10000) < 0)) {
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

/* For a test whose cmocka state is a struct of <size> bytes that begins
 * with its struct fx: allocates it zeroed into *<state> (so that the
 * teardown finds it even when a step fails) and initializes the fx
 * (fx_init). Returns it; fails the test when a step fails. */
static inline void *
fx_new(void **state, size_t size, bool tcp, unsigned nservers, const char *extra)
{
    struct fx *f = calloc(1, size);

    *state = f;
    assert_non_null(f);
    assert_int_equal(fx_init(f, tcp, nservers, extra), 0);
    return f;
}

/* cmocka teardown of fx_open() and fx_new(): stops everything, removes the
 * directory, frees the state. */
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

/* Waits up to <ms> (polling every <poll_ms>) for <f> to show <weight> and
 * state <st>; on a timeout says what it shows, naming it <who>. */
static inline bool
fx_wait_state(struct fx *f, const char *who, double weight, const char *st, int ms,
              int poll_ms)
{
    long long end = h_now_ms() + ms;
    char buf[32];

    do {
        if (fx_weight(f) == weight && strcmp(fx_state(f, buf, sizeof(buf)), st) == 0)
            return true;
        h_sleep_ms(poll_ms);
    } while (h_now_ms() < end);
    fprintf(stderr, "%s: weight %g state %s, expected %g %s\n", who, fx_weight(f),
            fx_state(f, buf, sizeof(buf)), weight, st);
    return false;
}

/* fx_status_at() with a va_list. */
static inline json_t *
fx_status_vat(struct fx *f, const char *fmt, va_list ap)
{
    char path[256];
    json_t *root, *svc = fx_status(f, &root), *v;

    vsnprintf(path, sizeof(path), fmt, ap);
    v = svc != NULL ? h_json_at(svc, path) : NULL;
    v = v != NULL ? json_deep_copy(v) : NULL;
    json_decref(root);
    return v;
}

/* The value at <fmt> (printf-style, then an h_json_at() path such as
 * "legacy.servers.0") in the status of the only service, copied (caller
 * decrefs); NULL when absent. */
static inline json_t *__attribute__((format(printf, 2, 3)))
fx_status_at(struct fx *f, const char *fmt, ...)
{
    json_t *v;
    va_list ap;

    va_start(ap, fmt);
    v = fx_status_vat(f, fmt, ap);
    va_end(ap);
    return v;
}

/* The integer at <fmt> in the status ("legacy.counters.errors.%s"), -1
 * when absent or not an integer. */
static inline long __attribute__((format(printf, 2, 3)))
fx_status_long(struct fx *f, const char *fmt, ...)
{
    json_t *v;
    long n = -1;
    va_list ap;

    va_start(ap, fmt);
    v = fx_status_vat(f, fmt, ap);
    va_end(ap);
    if (json_is_integer(v))
        n = (long)json_integer_value(v);
    json_decref(v);
    return n;
}

/* Polls status every 50 ms until server 0 of <side> ("legacy"/"new") is
 * <up>. 0, or -1 after <timeout_ms> (said on stderr, the log dumped). */
static inline int
fx_wait_up(struct fx *f, const char *side, bool up, int timeout_ms)
{
    long long end = h_now_ms() + timeout_ms;
    json_t *s;
    bool is;

    for (;;) {
        s = fx_status_at(f, "%s.servers.0", side);
        is = s != NULL && json_is_true(json_object_get(s, "up"));
        json_decref(s);
        if (s != NULL && is == up)
            return 0;
        if (h_now_ms() > end) {
            fprintf(stderr, "fx_wait_up: %s did not become %s within %d ms\n", side,
                    up ? "up" : "down", timeout_ms);
            h_dump_file(f->log, 3000);
            return -1;
        }
        h_sleep_ms(50);
    }
}

/* Runs cutoverctl <a> (and <b> unless NULL) on the fixture's socket; fails
 * the test unless it exits 0. */
static inline void
fx_ctl_ok(struct fx *f, const char *a, const char *b)
{
    char out[4096];
    int rc = b != NULL ? fx_ctl(f, out, a, b) : fx_ctl(f, out, a);

    if (rc != 0)
        fail_msg("cutoverctl %s %s: exit %d: %s %s", a, b != NULL ? b : "", rc, out,
                 h_ctl_err());
}

/* Sends <n> GET / on keep-alive connections (a new one when the proxy
 * closed the last), <gap_ms> apart; every request must get an answer.
 * With <c>, counts the answers by backend (X-Backend, which must be
 * "legacy" or "new") into c[0] legacy / c[1] new, and calls <on_new> (when
 * not NULL) with c[1] after each answer from new; *<n5xx> (when not NULL)
 * gets the number of 5xx answers. */
static inline void
fx_drive(struct fx *f, int n, int gap_ms, int c[2], int *n5xx, void (*on_new)(int nth))
{
    static const char req[] = "GET / HTTP/1.1\r\nHost: test\r\n\r\n";
    char be[64];
    struct h_resp r;
    int fd = -1, i;

    if (c != NULL)
        c[0] = c[1] = 0;
    if (n5xx != NULL)
        *n5xx = 0;
    memset(&r, 0, sizeof(r));
    for (i = 0; i < n; i++) {
        if (fd < 0)
            assert_true((fd = h_connect(f->proxy_port)) >= 0);
        assert_int_equal(h_send_all(fd, req, sizeof(req) - 1), 0);
        if (h_read_response(fd, &r) != 0)
            fail_msg("request %d of %d got no answer", i, n);
        if (c != NULL) {
            if (h_resp_header(&r, "X-Backend", be, sizeof(be)) == NULL)
                fail_msg("request %d: answer %d without X-Backend", i, r.status);
            if (strcmp(be, "new") == 0) {
                c[1]++;
                if (on_new != NULL)
                    on_new(c[1]);
            } else if (strcmp(be, "legacy") == 0) {
                c[0]++;
            } else {
                fail_msg("request %d: unknown backend %s", i, be);
            }
        }
        if (n5xx != NULL && r.status >= 500)
            (*n5xx)++;
        if (r.closed) {
            close(fd);
            fd = -1;
        }
        h_resp_free(&r);
        if (gap_ms > 0)
            h_sleep_ms(gap_ms);
    }
    if (fd >= 0)
        close(fd);
}

/* The entries of the audit log (one JSON object a line; a line that is not
 * one fails the test) for which <keep> is true (NULL: all), in order, as a
 * new array (caller decrefs); empty while there is no log. */
static inline json_t *
fx_audit(struct fx *f, bool (*keep)(const json_t *entry))
{
    char *text = h_read_file(f->audit), *line, *save = NULL;
    json_t *all = json_array(), *e;

    assert_non_null(all);
    for (line = text != NULL ? strtok_r(text, "\n", &save) : NULL; line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        e = json_loads(line, 0, NULL);
        if (e == NULL)
            fail_msg("%s: a line that is not JSON: %s", f->audit, line);
        if (keep == NULL || keep(e))
            json_array_append(all, e);
        json_decref(e);
    }
    free(text);
    return all;
}

/* The state file's entry of service <svc> (the test fails when the file
 * does not load: a state file must always parse); generation 0 and weight
 * -1 when the file or the service is not there. */
static inline struct adm_store_entry
fx_state_file(struct fx *f, const char *svc)
{
    struct adm_store_entry *e = NULL, out;
    unsigned n = 0, i;
    char err[512];

    memset(&out, 0, sizeof(out));
    out.weight_bp = (uint32_t)-1;
    if (adm_store_load(f->state, &e, &n, err, sizeof(err)) != 0)
        fail_msg("state file %s does not load: %s", f->state, err);
    for (i = 0; i < n; i++) {
        if (strcmp(e[i].name, svc) == 0)
            out = e[i];
    }
    free(e);
    return out;
}

/* True for the audit actions of changes (those that carry a new generation;
 * "recovered" stands for generations that have no entry of their own). */
static inline bool
fx_is_change_action(const char *a)
{
    static const char *const changes[] = {
        "weight", "rollback", "promote", "switch", "freeze", "plan_start", "plan_pause",
        "plan_resume", "plan_abort", "plan_step", "recovered", NULL,
    };
    unsigned i;

    for (i = 0; a != NULL && changes[i] != NULL; i++) {
        if (strcmp(a, changes[i]) == 0)
            return true;
    }
    return false;
}

/* Checks the audit log against generation <upto> of service <svc>: the file
 * ends with a newline (no torn line), every line is JSON, every generation
 * 1..<upto> has an entry (its own, or a "recovered" one whose
 * figures.first_generation..generation covers it) and no change entry is
 * above <upto>. Fails the test naming the generation; returns the number of
 * "recovered" entries. */
static inline unsigned
fx_audit_covers(struct fx *f, const char *svc, uint64_t upto)
{
    char *text = h_read_file(f->audit);
    json_t *all, *e;
    unsigned char *seen;
    uint64_t g, first, k;
    unsigned recovered = 0;
    size_t i;

    if (text != NULL && text[0] != '\0' && text[strlen(text) - 1] != '\n')
        fail_msg("%s ends in a torn line: ...%s", f->audit,
                 text + (strlen(text) > 200 ? strlen(text) - 200 : 0));
    free(text);
    seen = calloc(upto + 1, 1);
    assert_non_null(seen);
    all = fx_audit(f, NULL);
    json_array_foreach(all, i, e) {
        const char *action = json_string_value(json_object_get(e, "action"));
        const char *s = json_string_value(json_object_get(e, "service"));

        if (s == NULL || strcmp(s, svc) != 0 || !fx_is_change_action(action))
            continue;
        g = (uint64_t)json_integer_value(json_object_get(e, "generation"));
        if (g > upto)
            fail_msg("audit entry of generation %llu, above the state's %llu",
                     (unsigned long long)g, (unsigned long long)upto);
        first = g;
        if (strcmp(action, "recovered") == 0) {
            recovered++;
            first = (uint64_t)json_integer_value(
                json_object_get(json_object_get(e, "figures"), "first_generation"));
        }
        for (k = first; k <= g; k++)
            seen[k] = 1;
    }
    json_decref(all);
    for (k = 1; k <= upto; k++) {
        if (!seen[k]) {
            free(seen);
            h_dump_file(f->audit, 3000);
            fail_msg("generation %llu of %s has no audit entry", (unsigned long long)k, svc);
        }
    }
    free(seen);
    return recovered;
}

/* The number <key> of <o>; fails the test when it is not a number. *//* The number <key> of <o>; fails the test when it is not a number. */
static inline double
fx_num(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);

    if (!json_is_number(v))
        fail_msg("\"%s\" is not a number", key);
    return json_number_value(v);
}

/* SIGTERM: cutoverd drains and exits 0 within 30 s (under the sanitizers, a
 * leak or an error makes that fail); fails the test otherwise. */
static inline void
fx_stop_clean(struct fx *f)
{
    int rc = h_stop(f->proxy, SIGTERM, 30000);

    if (rc != 0) {
        h_dump_file(f->log, 6000);
        fail_msg("cutoverd exited %d after SIGTERM", rc);
    }
    f->proxy = 0;
}

/* GET /metrics on admin.listen (f->admin_port) with <token> (NULL: none):
 * fails the test unless it answers 200 with a text/plain body; returns the
 * text (caller frees). */
static inline char *
fx_scrape_token(struct fx *f, const char *token)
{
    struct h_resp r;
    char ct[128], auth[512] = "";
    char *text;

    if (token != NULL)
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s\r\n", token);
    memset(&r, 0, sizeof(r));
    if (h_get(f->admin_port, "/metrics", token != NULL ? auth : NULL, &r) != 0)
        fail_msg("GET /metrics on 127.0.0.1:%d: no answer", f->admin_port);
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

/* fx_scrape_token() without a token. */
static inline char *
fx_scrape(struct fx *f)
{
    return fx_scrape_token(f, NULL);
}

/* Writes <lines> ("NAME LEVEL SECRET" each) to <dir>/admin.tokens (mode
 * 0600) and points admin.token_file at it, after what admin_extra held;
 * call fx_write_conf() afterwards. Returns 0 or -1. */
static inline int
fx_admin_tokens(struct fx *f, const char *lines)
{
    char path[600];
    size_t n = strlen(f->admin_extra);

    snprintf(path, sizeof(path), "%s/admin.tokens", f->dir);
    if (h_write_file(path, lines) != 0 || chmod(path, 0600) != 0)
        return -1;
    snprintf(f->admin_extra + n, sizeof(f->admin_extra) - n, ", \"token_file\": \"%s\"",
             path);
    return 0;
}

/* <method> <path> on admin.listen on a fresh connection, with <token>
 * (NULL: no Authorization) and <body> (NULL: none), closed afterwards.
 * Returns the status, or -1 when no response came (within 5 s); <json>,
 * when not NULL, gets the body parsed (NULL when it is not JSON). */
static inline int
fx_admin_call(struct fx *f, const char *method, const char *path, const char *token,
              const char *body, json_t **json)
{
    char req[2048], auth[512] = "";
    struct h_resp r;
    int fd, status = -1;

    if (json != NULL)
        *json = NULL;
    if (token != NULL)
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s\r\n", token);
    snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: admin\r\n%sContent-Length: %zu\r\n"
             "Connection: close\r\n\r\n%s", method, path, auth,
             body != NULL ? strlen(body) : 0, body != NULL ? body : "");
    memset(&r, 0, sizeof(r));
    if ((fd = h_connect(f->admin_port)) < 0)
        return -1;
    /* one write: the endpoint handles a request that came with the connection */
    if (h_send_all(fd, req, strlen(req)) == 0 && h_read_response(fd, &r) == 0) {
        status = r.status;
        if (json != NULL)
            *json = json_loadb(r.body != NULL ? r.body : "", r.body_len, 0, NULL);
    }
    h_resp_free(&r);
    close(fd);
    return status;
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

/* The value of a sticky cookie that carries <bucket> for a service whose
 * sticky salt is <salt> (the service name when the config sets none),
 * signed with the current key in the fixture's state directory, which
 * cutoverd creates at its first start; written into <buf>. Fails the test
 * when there is no valid key file. */
static inline const char *
fx_cookie_value(struct fx *f, const char *salt, uint32_t bucket,
                char buf[PX_COOKIE_VALUE_MAX])
{
    char file[600], err[512];
    struct px_cookie_keys k;
    struct px_cookie_tab *t;
    bool created;

    snprintf(file, sizeof(file), "%s/%s", f->dir, PX_COOKIE_KEY_FILE);
    if (px_cookie_keys_load(file, false, &k, &created, err, sizeof(err)) != 0)
        fail_msg("sticky-cookie keys: %s", err);
    t = px_cookie_tab_new(&k, rt_seed_from_salt(salt, strlen(salt)));
    assert_non_null(t);
    assert_true(px_cookie_sign(t, bucket, buf) > 0);
    px_cookie_tab_put(t);
    return buf;
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

/* The backend at <port> answers every request with <status>, the header
 * lines <headers> (each ending in "\r\n"; "" none) and <body> with its
 * Content-Length (raw=; "@@@@@@@@@@" in it becomes a stamp that differs on
 * every answer, tests/tools/backend.c). Fails the test when refused. */
static inline void
fx_backend_answer(int port, int status, const char *headers, const char *body)
{
    char raw[4096];
    int n = snprintf(raw, sizeof(raw), "HTTP/1.1 %d X\r\n%sContent-Length: %zu\r\n\r\n%s",
                     status, headers, strlen(body), body);

    assert_true(n > 0 && (size_t)n < sizeof(raw));
    assert_int_equal(h_backend_set_raw(port, raw, NULL), 0);
}

/* Polls the status every 20 ms until the integer at <path> ("shadow.results.
 * match") is at least <want>; returns the last value (-1: absent), failing
 * the test after <timeout_ms> with the log dumped. */
static inline long
fx_wait_status_long(struct fx *f, const char *path, long want, int timeout_ms)
{
    long long end = h_now_ms() + timeout_ms;
    long v;

    for (;;) {
        v = fx_status_long(f, "%s", path);
        if (v >= want)
            return v;
        if (h_now_ms() > end) {
            h_dump_file(f->log, 3000);
            fail_msg("status %s is %ld, not %ld or more within %d ms", path, v, want,
                     timeout_ms);
        }
        h_sleep_ms(20);
    }
}

#endif
