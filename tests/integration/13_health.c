/*
 * Active health checks through the real cutoverd: a new side whose
 * /healthz answers 503 is marked down within a bounded time and all traffic
 * goes to legacy whatever the weight (which stays as set), and comes back by
 * itself on recovery; both sides down gives 503 with Retry-After; a tcp
 * check against a killed backend, an http check whose body lacks the
 * expected text, and a backend that stops answering (SIGSTOP: checks time
 * out) all mark the server down. Every change is logged once and audited.
 * Checks run every 150 ms with rise 2 and fall 2; every wait is bounded.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/integration/fixture.h"

#define HEALTH_HTTP ",\"health\": {\"type\": \"http\", \"path\": \"/healthz\", " \
                    "\"interval_ms\": 150, \"timeout_ms\": 100, \"rise\": 2, \"fall\": 2}"
#define HEALTH_TCP  ",\"health\": {\"type\": \"tcp\", " \
                    "\"interval_ms\": 150, \"timeout_ms\": 100, \"rise\": 2, \"fall\": 2}"
#define WAIT_MS 5000

static struct fx *
start(void **state, bool tcp, const char *extra)
{
    assert_int_equal(fx_open(state, tcp, 1, extra, 42), 0);
    return *state;
}

/* "last_check" of server 0 of <side>, copied into <buf>. */
static const char *
last_check(struct fx *f, const char *side, char *buf, size_t len)
{
    json_t *s = fx_status_at(f, "%s.servers.0", side);
    const char *v = s != NULL ? json_string_value(json_object_get(s, "last_check")) : NULL;

    snprintf(buf, len, "%s", v != NULL ? v : "(none)");
    json_decref(s);
    return buf;
}

/* Polls until the "last_check" of <side> is <want>. 0, or -1 after WAIT_MS. */
static int
wait_last(struct fx *f, const char *side, const char *want)
{
    long long end = h_now_ms() + WAIT_MS;
    char buf[256];

    while (strcmp(last_check(f, side, buf, sizeof(buf)), want) != 0) {
        if (h_now_ms() > end) {
            fprintf(stderr, "wait_last: %s: \"%s\", not \"%s\"\n", side, buf, want);
            return -1;
        }
        h_sleep_ms(50);
    }
    return 0;
}

/* The health entries of the audit log (for fx_audit()). */
static bool
is_health(const json_t *e)
{
    const char *action = json_string_value(json_object_get(e, "action"));

    return action != NULL && strcmp(action, "health") == 0;
}

/* Occurrences of <needle> in file <path>. */
static int
count_in_file(const char *path, const char *needle)
{
    char *text = h_read_file(path), *p;
    int n = 0;

    if (text == NULL)
        return -1;
    for (p = text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    free(text);
    return n;
}

/* The first line a TCP-mode backend sends through the proxy ("new\n"). */
static int
tcp_greeting(int port, char *buf, size_t len)
{
    int fd = h_connect(port);
    ssize_t n;
    size_t got = 0;

    if (fd < 0)
        return -1;
    while (got + 1 < len) {
        n = recv(fd, buf + got, len - 1 - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
        if (memchr(buf, '\n', got) != NULL)
            break;
    }
    buf[got] = '\0';
    close(fd);
    return got > 0 ? 0 : -1;
}

/* new's /healthz answers 503: within a bounded time new is down, every
 * request goes to legacy at weight 50 and 100, the weight stays what the
 * operator set; healthy again: traffic returns by itself. One log line and
 * one audit entry per change. */
static void
test_new_down_falls_back(void **state)
{
    struct fx *f = start(state, false, ",\"weight\": 50" HEALTH_HTTP);
    char buf[256], needle[256], out[8192];
    json_t *root, *svc, *s, *audit, *e;
    long before;
    int c[2];

    assert_int_equal(fx_count(f, 200, "/", NULL, c), 0);
    assert_true(c[0] > 40 && c[1] > 40);          /* both sides serve at 50 % */
    s = fx_status_at(f, "new.servers.0");
    assert_true(json_integer_value(json_object_get(s, "idle")) >= 1);   /* pooled */
    json_decref(s);

    assert_int_equal(h_backend_set(f->port[1][0], "healthy=0"), 0);
    assert_int_equal(fx_wait_up(f, "new", false, WAIT_MS), 0);
    s = fx_status_at(f, "new.servers.0");
    assert_int_equal(json_integer_value(json_object_get(s, "idle")), 0);  /* closed when down */
    json_decref(s);
    svc = fx_status(f, &root);
    assert_non_null(svc);
    assert_false(json_is_true(json_object_get(json_object_get(svc, "new"), "healthy")));
    assert_true(json_is_true(json_object_get(json_object_get(svc, "legacy"), "healthy")));
    assert_int_equal((int)json_number_value(json_object_get(svc, "weight")), 50);
    assert_string_equal(json_string_value(json_object_get(svc, "state")), "steady");
    s = json_array_get(json_object_get(json_object_get(svc, "new"), "servers"), 0);
    assert_string_equal(json_string_value(json_object_get(s, "last_check")), "HTTP 503");
    assert_true(json_integer_value(json_object_get(json_object_get(s, "checks"), "fail")) >= 2);
    json_decref(root);

    /* the human table says it too */
    assert_int_equal(fx_ctl(f, out, "status"), 0);
    assert_non_null(strstr(out, "down  check: HTTP 503"));

    before = h_backend_requests(f->port[1][0]);
    assert_int_equal(fx_count(f, 200, "/", NULL, c), 0);
    assert_int_equal(c[0], 200);
    assert_int_equal(c[1], 0);
    fx_ctl_ok(f, "weight", "100");
    assert_int_equal(fx_count(f, 100, "/", NULL, c), 0);
    assert_int_equal(c[0], 100);
    assert_int_equal((int)fx_weight(f), 100);
    assert_int_equal(h_backend_requests(f->port[1][0]), before);   /* new got nothing */
    svc = fx_status(f, &root);
    assert_true(json_integer_value(json_object_get(json_object_get(
        json_object_get(svc, "legacy"), "counters"), "fallbacks")) >= 100);
    json_decref(root);

    assert_int_equal(h_backend_set(f->port[1][0], "healthy=1"), 0);
    assert_int_equal(fx_wait_up(f, "new", true, WAIT_MS), 0);
    assert_int_equal(fx_count(f, 100, "/", NULL, c), 0);
    assert_int_equal(c[1], 100);                  /* weight 100: all back on new */
    assert_string_equal(last_check(f, "new", buf, sizeof(buf)), "ok");

    /* more checks pass; still one line per change */
    h_sleep_ms(500);
    snprintf(needle, sizeof(needle), "web new/127.0.0.1:%d DOWN after 2 failed checks: HTTP 503",
             f->port[1][0]);
    assert_int_equal(count_in_file(f->log, needle), 1);
    snprintf(needle, sizeof(needle), "web new/127.0.0.1:%d UP after 2 passed checks",
             f->port[1][0]);
    assert_int_equal(count_in_file(f->log, needle), 1);
    assert_int_equal(count_in_file(f->log, " DOWN after "), 1);
    assert_int_equal(count_in_file(f->log, "new has no healthy server"), 1);

    audit = fx_audit(f, is_health);
    assert_int_equal(json_array_size(audit), 2);
    e = json_array_get(audit, 0);
    assert_string_equal(json_string_value(json_object_get(e, "actor")), "auto");
    assert_string_equal(json_string_value(json_object_get(e, "from")), "up");
    assert_string_equal(json_string_value(json_object_get(e, "to")), "down");
    assert_non_null(strstr(json_string_value(json_object_get(e, "reason")),
                           "DOWN after 2 failed checks: HTTP 503"));
    assert_string_equal(json_string_value(json_object_get(json_object_get(e, "figures"),
                                                          "last_check")), "HTTP 503");
    e = json_array_get(audit, 1);
    assert_string_equal(json_string_value(json_object_get(e, "from")), "down");
    assert_string_equal(json_string_value(json_object_get(e, "to")), "up");
    json_decref(audit);

    /* cutoverctl audit prints them readably */
    assert_int_equal(fx_ctl(f, out, "audit"), 0);
    assert_non_null(strstr(out, "auto  health  up -> down"));
    assert_non_null(strstr(out, "auto  health  down -> up"));
}

/* Both sides down: 503 with Retry-After; legacy back: served again. */
static void
test_both_down_503(void **state)
{
    struct fx *f = start(state, false, ",\"weight\": 50" HEALTH_HTTP);
    struct h_resp r;
    char buf[64];

    memset(&r, 0, sizeof(r));
    assert_int_equal(h_backend_set(f->port[0][0], "healthy=0"), 0);
    assert_int_equal(h_backend_set(f->port[1][0], "healthy=0"), 0);
    assert_int_equal(fx_wait_up(f, "legacy", false, WAIT_MS), 0);
    assert_int_equal(fx_wait_up(f, "new", false, WAIT_MS), 0);
    assert_int_equal(h_get(f->proxy_port, "/", NULL, &r), 0);
    assert_int_equal(r.status, 503);
    assert_non_null(h_resp_header(&r, "Retry-After", buf, sizeof(buf)));
    h_resp_free(&r);
    assert_int_equal(count_in_file(f->log, "neither side has one, requests are answered 503"), 1);
    assert_int_equal((int)fx_weight(f), 50);

    assert_int_equal(h_backend_set(f->port[0][0], "healthy=1"), 0);
    assert_int_equal(fx_wait_up(f, "legacy", true, WAIT_MS), 0);
    assert_int_equal(h_get(f->proxy_port, "/", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "legacy\n");
    h_resp_free(&r);
}

/* TCP mode, tcp checks: the killed new backend is down (connect refused),
 * connections go to legacy at weight 100; restarted, it takes them back. */
static void
test_tcp_check_killed_backend(void **state)
{
    struct fx *f = start(state, true, ",\"weight\": 100" HEALTH_TCP);
    char buf[256];

    assert_int_equal(tcp_greeting(f->proxy_port, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "new\n");
    h_stop(f->backend[1][0], SIGTERM, 3000);
    assert_int_equal(fx_wait_up(f, "new", false, WAIT_MS), 0);
    assert_true(strncmp(last_check(f, "new", buf, sizeof(buf)), "connect: ", 9) == 0);
    assert_int_equal(tcp_greeting(f->proxy_port, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "legacy\n");
    assert_int_equal((int)fx_weight(f), 100);

    f->backend[1][0] = h_backend_start("new", f->port[1][0], f->dir, true);
    assert_true(f->backend[1][0] > 0);
    assert_int_equal(fx_wait_up(f, "new", true, WAIT_MS), 0);
    assert_int_equal(tcp_greeting(f->proxy_port, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "new\n");
}

/* http check on "/" expecting the text "legacy": new answers 200 "new",
 * so only new is down. */
static void
test_http_body_mismatch(void **state)
{
    struct fx *f = start(state, false, ",\"weight\": 100, \"health\": {\"type\": \"http\", "
                         "\"path\": \"/\", \"body_contains\": \"legacy\", \"interval_ms\": 150, "
                         "\"timeout_ms\": 100, \"rise\": 2, \"fall\": 2}");
    char buf[256];
    int c[2];

    assert_int_equal(fx_wait_up(f, "new", false, WAIT_MS), 0);
    assert_non_null(strstr(last_check(f, "new", buf, sizeof(buf)),
                           "HTTP 200, body does not contain \"legacy\""));
    assert_int_equal(wait_last(f, "legacy", "ok"), 0);
    assert_int_equal(fx_wait_up(f, "legacy", true, WAIT_MS), 0);
    assert_int_equal(fx_count(f, 50, "/", NULL, c), 0);
    assert_int_equal(c[0], 50);
}

/* A backend that stops answering (SIGSTOP: the kernel still accepts) is
 * down by timeout; SIGCONT brings it back. */
static void
test_stalled_backend_times_out(void **state)
{
    struct fx *f = start(state, false, ",\"weight\": 100" HEALTH_HTTP);
    char buf[256];
    int c[2];

    assert_int_equal(kill(f->backend[1][0], SIGSTOP), 0);
    if (fx_wait_up(f, "new", false, WAIT_MS) != 0) {
        kill(f->backend[1][0], SIGCONT);
        fail_msg("new was not marked down while stopped");
    }
    last_check(f, "new", buf, sizeof(buf));
    kill(f->backend[1][0], SIGCONT);
    assert_true(strncmp(buf, "timeout after 100 ms", 20) == 0);
    assert_int_equal(fx_wait_up(f, "new", true, WAIT_MS), 0);
    assert_int_equal(fx_count(f, 20, "/", NULL, c), 0);
    assert_int_equal(c[1], 20);
}

/* Without a "health" section nothing is checked and status has no check
 * fields. */
static void
test_no_health_section(void **state)
{
    struct fx *f = start(state, false, NULL);
    json_t *s;

    h_sleep_ms(300);
    s = fx_status_at(f, "new.servers.0");
    assert_non_null(s);
    assert_true(json_is_true(json_object_get(s, "up")));
    assert_null(json_object_get(s, "last_check"));
    json_decref(s);
    assert_int_equal(count_in_file(f->log, "checks every"), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_new_down_falls_back, fx_teardown),
        cmocka_unit_test_teardown(test_both_down_503, fx_teardown),
        cmocka_unit_test_teardown(test_tcp_check_killed_backend, fx_teardown),
        cmocka_unit_test_teardown(test_http_body_mismatch, fx_teardown),
        cmocka_unit_test_teardown(test_stalled_backend_times_out, fx_teardown),
        cmocka_unit_test_teardown(test_no_health_section, fx_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
