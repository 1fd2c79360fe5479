/*
 * 30_soak: mixed traffic (GET, HEAD, POST with a length and chunked, some
 * asking to close) from 32 keep-alive clients for 12 s on two workers,
 * while the weight flips every second and a backend is restarted every
 * 2 s (SIGTERM and SIGKILL in turn, one server of a side at a time). Every
 * request gets a well-formed response or a clean close, never a cut or
 * garbled one or a reset; the proxy's counters equal what the clients saw;
 * and once the load is gone the daemon's descriptors and resident memory
 * are back at their baseline (taken after a warm-up of the same load).
 * Bounded: about 20 s in all, loopback only, seeded.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/harness/load.h"
#include "tests/integration/fixture.h"

#define SOAK_MS      12000
#define WARMUP_MS    2000
#define SOAK_CONNS   32
#define FLIP_MS      1000
#define RESTART_MS   2000
/* every answer takes 2 ms: a restart finds requests in flight */
#define BACKEND_SET  "delay_ms=2"

struct soak {
    struct fx f;                 /* first: fx_teardown frees the whole struct */
    long long next_flip, next_restart;
    unsigned flips, restarts, restart_failures;
};

static const char *const names[2][2] = { { "legacy", "legacy2" }, { "new", "new2" } };

/* The request mix, one draw per request. */
static void
soak_request(void *arg, unsigned nth, uint64_t rnd, struct h_load_req *out)
{
    static const char get[] = "GET /soak HTTP/1.1\r\nHost: soak\r\n\r\n";
    static const char get_close[] = "GET /soak?c HTTP/1.1\r\nHost: soak\r\n"
                                    "Connection: close\r\n\r\n";
    static const char head[] = "HEAD /soak HTTP/1.1\r\nHost: soak\r\n\r\n";
    static const char post[] = "POST /echo HTTP/1.1\r\nHost: soak\r\nContent-Length: 11\r\n"
                               "\r\nhello world";
    static const char chunked[] = "POST /echo HTTP/1.1\r\nHost: soak\r\n"
                                  "Transfer-Encoding: chunked\r\n\r\n"
                                  "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    unsigned r = (unsigned)(rnd % 100);

    (void)arg;
    (void)nth;
    if (r < 60)
        *out = (struct h_load_req){ get, sizeof(get) - 1, false };
    else if (r < 70)
        *out = (struct h_load_req){ head, sizeof(head) - 1, true };
    else if (r < 85)
        *out = (struct h_load_req){ post, sizeof(post) - 1, false };
    else if (r < 95)
        *out = (struct h_load_req){ chunked, sizeof(chunked) - 1, false };
    else
        *out = (struct h_load_req){ get_close, sizeof(get_close) - 1, false };
}

/* Every second a weight (cutoverctl over the unix socket), every 2 s a
 * restart of one backend; the order is fixed. */
static void
soak_tick(void *arg, long long elapsed_ms)
{
    static const char *const weights[] = { "25", "100", "0", "50", "10", "75" };
    struct soak *s = arg;
    struct fx *f = &s->f;
    char out[1024];

    if (elapsed_ms >= s->next_flip) {
        if (fx_ctl(f, out, "weight", weights[s->flips % 6]) != 0)
            fprintf(stderr, "soak: weight %s: %s\n", weights[s->flips % 6], h_ctl_err());
        s->flips++;
        s->next_flip += FLIP_MS;
    }
    if (elapsed_ms >= s->next_restart) {
        unsigned k = s->restarts % 4, side = k % 2, i = k / 2;

        /* SIGKILL drops what the backend had not written; SIGTERM exits at
         * once too: both leave requests without an answer upstream */
        h_stop(f->backend[side][i], s->restarts % 2 ? SIGKILL : SIGTERM, 2000);
        f->backend[side][i] = h_backend_start(names[side][i], f->port[side][i], f->dir,
                                              false);
        if (f->backend[side][i] < 0 || h_backend_set(f->port[side][i], BACKEND_SET) != 0)
            s->restart_failures++;
        s->restarts++;
        s->next_restart += RESTART_MS;
    }
}

/* The sum over both sides of cutover_requests_total of <class>. */
static double
class_total(const char *m, const char *class)
{
    return fx_metric(m, "cutover_requests_total{service=\"web\",side=\"legacy\",class=\"%s\"}",
                     class) +
           fx_metric(m, "cutover_requests_total{service=\"web\",side=\"new\",class=\"%s\"}",
                     class);
}

static double
no_server(const char *m)
{
    return fx_metric(m, "cutover_errors_total{service=\"web\",side=\"legacy\",kind=\"no_server\"}") +
           fx_metric(m, "cutover_errors_total{service=\"web\",side=\"new\",kind=\"no_server\"}");
}

/* True when cutoverd runs under a sanitizer (its resident memory then
 * holds the sanitizer's quarantine and shadow, which do not shrink). */
static bool
sanitized(pid_t pid)
{
    char path[64], *maps;
    bool yes;

    snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
    maps = h_read_file(path);
    yes = maps != NULL && (strstr(maps, "libasan") != NULL || strstr(maps, "libtsan") != NULL ||
                           strstr(maps, "libubsan") != NULL);
    free(maps);
    return yes;
}

/* Waits up to <ms> until cutoverd holds at most <fds> descriptors; returns
 * the last count. */
static int
wait_fds(pid_t pid, int fds, int ms)
{
    long long end = h_now_ms() + ms;
    int n;

    while ((n = h_open_fds(pid)) > fds && h_now_ms() < end)
        h_sleep_ms(50);
    return n;
}

static void
test_soak(void **state)
{
    struct soak *s = fx_new(state, sizeof(struct soak), false, 2,
                            ",\"weight\": 50, \"rollback\": {\"enabled\": false}, "
                            "\"pool\": {\"idle_timeout_ms\": 300}, \"health\": {\"type\": "
                            "\"http\", \"path\": \"/healthz\", \"interval_ms\": 300, "
                            "\"timeout_ms\": 200, \"rise\": 2, \"fall\": 2}");
    struct fx *f = &s->f;
    struct h_load_conf c = {
        .conns = SOAK_CONNS, .gap_min_ms = 0, .gap_max_ms = 20, .requests = 1000000,
        .seed = 30, .request = soak_request, .arg = s,
    };
    struct h_load_stats st;
    char *m0, *m1;
    double d2xx, d3xx, d4xx, d5xx, derr, dnos;
    int fds0, fds1;
    long rss0, rss1;

    for (unsigned side = 0; side < 2; side++)
        for (unsigned i = 0; i < 2; i++)
            assert_int_equal(h_backend_set(f->port[side][i], BACKEND_SET), 0);
    f->workers = 2;
    f->admin_port = h_free_port();
    assert_int_equal(fx_write_conf(f), 0);
    assert_int_equal(fx_start_proxy(f, 30), 0);
    c.port = f->proxy_port;

    /* warm-up: the same load, no faults; then the baseline, once the idle
     * pooled and client connections are gone */
    c.duration_ms = WARMUP_MS;
    assert_int_equal(h_load_run(&c, &st), 0);
    h_load_print("soak warm-up", &st);
    assert_int_equal(st.answered, st.sent);
    h_sleep_ms(1000);                  /* past pool.idle_timeout_ms */
    fds0 = h_open_fds(f->proxy);
    rss0 = h_rss_kib(f->proxy);
    assert_true(fds0 > 0 && rss0 > 0);
    m0 = fx_scrape(f);

    /* the soak */
    c.duration_ms = SOAK_MS;
    c.tick = soak_tick;
    c.tick_ms = 100;
    c.quiet = false;
    s->next_flip = FLIP_MS;
    s->next_restart = RESTART_MS / 2;
    assert_int_equal(h_load_run(&c, &st), 0);
    h_load_print("soak", &st);
    fprintf(stderr, "soak: %u weight flips, %u backend restarts\n", s->flips, s->restarts);
    assert_int_equal(s->restart_failures, 0);
    assert_true(s->flips >= SOAK_MS / FLIP_MS - 1 && s->restarts >= SOAK_MS / RESTART_MS - 1);
    assert_true(st.sent >= 2000);

    /* well formed or a clean close, every one */
    assert_int_equal(st.malformed, 0);
    assert_int_equal(st.reset, 0);
    assert_int_equal(st.unanswered, 0);
    assert_int_equal(st.answered + st.closed_clean, st.sent);
    assert_int_equal(h_load_class(&st, 1) + h_load_class(&st, 3) + h_load_class(&st, 4), 0);

    /* the counters say what the clients saw: backends answer 2xx only, so
     * every 5xx is the proxy's (class error: its 502/503/504 after a
     * transport failure, or no_server: both sides down) */
    m1 = fx_scrape(f);
    d2xx = class_total(m1, "2xx") - class_total(m0, "2xx");
    d3xx = class_total(m1, "3xx") - class_total(m0, "3xx");
    d4xx = class_total(m1, "4xx") - class_total(m0, "4xx");
    d5xx = class_total(m1, "5xx") - class_total(m0, "5xx");
    derr = class_total(m1, "error") - class_total(m0, "error");
    dnos = no_server(m1) - no_server(m0);
    fprintf(stderr, "soak counters: 2xx %.0f, 5xx %.0f, error %.0f, no_server %.0f; clients: "
            "2xx %lu, 5xx %lu, closed %lu\n", d2xx, d5xx, derr, dnos, h_load_class(&st, 2),
            h_load_class(&st, 5), st.closed_clean);
    assert_true(d2xx == (double)h_load_class(&st, 2));
    assert_true(d3xx == 0 && d4xx == 0 && d5xx == 0);
    assert_true(derr + dnos == (double)(h_load_class(&st, 5) + st.closed_clean));
    free(m0);
    free(m1);

    /* back to the baseline: the clients are gone, idle pooled connections
     * expire after 300 ms; a health check may hold one socket for a moment */
    fds1 = wait_fds(f->proxy, fds0 + 1, 3000);
    rss1 = h_rss_kib(f->proxy);
    fprintf(stderr, "soak: descriptors %d -> %d, rss %ld -> %ld KiB\n", fds0, fds1, rss0, rss1);
    assert_true(fds1 <= fds0 + 1);
    if (sanitized(f->proxy))
        fprintf(stderr, "soak: under a sanitizer: the resident memory is not compared\n");
    else
        assert_true(rss1 <= rss0 + 4096);
    assert_int_equal(fx_status_long(f, "connections"), 0);
    fx_stop_clean(f);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_soak, fx_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
