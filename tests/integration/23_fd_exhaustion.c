/*
 * 23_fd_exhaustion: cutoverd out of descriptors (RLIMIT_NOFILE 256, set by
 * the harness before exec) with more clients than that, and its caps on
 * client connections (limits.max_connections).
 *
 * Without a cap ("max_connections": 0) it must stay quiet
 * (a bounded number of log lines, no busy loop: its CPU time over the
 * period stays small), count what it refused (cutover_accept_errors_total),
 * mark no backend down and roll nothing back; a real automatic rollback in
 * the middle of it is still saved and audited (the control plane has its
 * descriptors); requests that find no descriptor for their upstream
 * connection are answered 503 and never counted against the backend; and
 * it serves again once the clients close. Also: the
 * per-request warnings are limited, and the count of those held back
 * comes within about a second of their burst, not with the next warning.
 *
 * With its default cap (half the descriptors left once it listens) the
 * same load waits in the backlog instead: every request gets a 200, none
 * a 503, no accept fails. A service's cap and the process's hold the next
 * clients in the backlog until a connection closes, with one event loop
 * exactly, with two at most one connection past the cap.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/harness/load.h"
#include "tests/integration/fixture.h"

#define NOFILE   256
#define CLIENTS  400
#define HOLD_MS  3000

/* weight 10 so that an automatic rollback has something to take back;
 * checks every 200 ms, down after 2 failures: a false verdict would show
 * within half a second; the silent clients are not timed out during a
 * test (client_head_ms 60 s), so they hold their descriptors throughout */
#define EXTRA ",\"weight\": 10, \"on_new_down\": \"rollback\", \"health\": {\"type\": " \
              "\"http\", \"path\": \"/healthz\", \"interval_ms\": 200, \"timeout_ms\": 150, " \
              "\"rise\": 2, \"fall\": 2}, \"timeouts\": {\"client_head_ms\": 60000}"

/* No cap of clients: the descriptors run out (the default cap would hold
 * the clients in the backlog first). */
#define NO_CAP ",\n  \"limits\": { \"max_connections\": 0 }"

static struct fx *
start(void **state)
{
    struct fx *f = fx_new(state, sizeof(struct fx), false, 1, EXTRA);

    snprintf(f->top_extra, sizeof(f->top_extra), "%s", NO_CAP);
    f->nofile = NOFILE;
    f->workers = 2;
    f->admin_port = h_free_port();
    assert_int_equal(fx_write_conf(f), 0);
    assert_int_equal(fx_start_proxy(f, 23), 0);
    return f;
}

/* Opens <n> connections to <port> without waiting for their handshake
 * (most will wait in the backlog); returns how many sockets were made. */
static int
flood(int port, int *fds, int n)
{
    struct sockaddr_in sin = { .sin_family = AF_INET };
    int i, made = 0;

    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin.sin_port = htons((uint16_t)port);
    for (i = 0; i < n; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fds[i] < 0)
            continue;
        if (connect(fds[i], (struct sockaddr *)&sin, sizeof(sin)) != 0 &&
            errno != EINPROGRESS) {
            close(fds[i]);
            fds[i] = -1;
            continue;
        }
        made++;
    }
    return made;
}

static void
unflood(int *fds, int n)
{
    int i;

    for (i = 0; i < n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
}

/* Lines of <path> from byte <off> on; those containing <needle> (NULL:
 * all). */
static int
lines_since(const char *path, size_t off, const char *needle)
{
    char *text = h_read_file(path), *p, *nl;
    int n = 0;

    assert_non_null(text);
    assert_true(strlen(text) >= off);
    for (p = text + off; *p != '\0'; p = nl + 1) {
        if ((nl = strchr(p, '\n')) == NULL)
            break;
        *nl = '\0';
        if (needle == NULL || strstr(p, needle) != NULL)
            n++;
    }
    free(text);
    return n;
}

static size_t
log_size(struct fx *f)
{
    char *text = h_read_file(f->log);
    size_t n;

    assert_non_null(text);
    n = strlen(text);
    free(text);
    return n;
}

/* Waits (5 s at most) until both servers passed two checks. */
static void
wait_checked(struct fx *f)
{
    long long end = h_now_ms() + 5000;

    while (fx_status_long(f, "legacy.servers.0.checks.ok") < 2 ||
           fx_status_long(f, "new.servers.0.checks.ok") < 2) {
        if (h_now_ms() > end)
            fail_msg("the health checks did not run");
        h_sleep_ms(50);
    }
}

/* Waits (3 s at most) until the daemon refused a client for want of
 * descriptors. */
static void
wait_exhausted(struct fx *f)
{
    long long end = h_now_ms() + 3000;

    while (fx_status_long(f, "accept_errors.emfile") < 1) {
        if (h_now_ms() > end) {
            h_dump_file(f->log, 3000);
            fail_msg("no accept error within 3 s: descriptors never ran out");
        }
        h_sleep_ms(50);
    }
}

/* One GET / on a fresh connection within <ms>: its status, 0 if none. */
static int
get_within(struct fx *f, int ms)
{
    long long end = h_now_ms() + ms;
    struct h_resp r;
    int st = 0;

    do {
        memset(&r, 0, sizeof(r));
        if (h_get(f->proxy_port, "/", NULL, &r) == 0)
            st = r.status;
        h_resp_free(&r);
        if (st == 200)
            return st;
        h_sleep_ms(100);
    } while (h_now_ms() < end);
    return st;
}

static bool
is_health_or_rollback(const json_t *e)
{
    const char *a = json_string_value(json_object_get(e, "action"));

    return a != NULL && (strcmp(a, "health") == 0 || strcmp(a, "rollback") == 0);
}

static void
test_out_of_descriptors_stays_quiet_and_judges_nobody(void **state)
{
    struct fx *f = start(state);
    int fds[CLIENTS], made, accept_lines, lines;
    long long cpu0, cpu1, t0;
    size_t off;
    json_t *audit;
    char *m;

    wait_checked(f);
    assert_int_equal(get_within(f, 2000), 200);
    off = log_size(f);
    cpu0 = h_cpu_ms(f->proxy);
    assert_true(cpu0 >= 0);
    t0 = h_now_ms();
    made = flood(f->proxy_port, fds, CLIENTS);
    assert_true(made > NOFILE);
    wait_exhausted(f);
    h_sleep_ms((int)(HOLD_MS - (h_now_ms() - t0)));

    /* no busy loop: two event loops spinning would burn 2 CPU s a second */
    cpu1 = h_cpu_ms(f->proxy);
    fprintf(stderr, "cpu over %d ms out of descriptors: %lld ms\n", HOLD_MS, cpu1 - cpu0);
    assert_true(cpu1 - cpu0 <= 500);
    /* a bounded log: one accept line per 5 s for the whole process */
    accept_lines = lines_since(f->log, off, "module=listen");
    lines = lines_since(f->log, off, NULL);
    fprintf(stderr, "log lines out of descriptors: %d (accept: %d)\n", lines, accept_lines);
    assert_true(accept_lines >= 1 && accept_lines <= 2);
    assert_true(lines <= 6);
    /* the clients' shortage judged nobody */
    assert_true(fx_status_long(f, "accept_errors.emfile") >= 1);
    assert_int_equal(fx_status_long(f, "legacy.servers.0.checks.fail"), 0);
    assert_int_equal(fx_status_long(f, "new.servers.0.checks.fail"), 0);
    assert_int_equal(fx_wait_up(f, "legacy", true, 100), 0);
    assert_int_equal(fx_wait_up(f, "new", true, 100), 0);
    fx_expect_state(f, "steady", 10);
    audit = fx_audit(f, is_health_or_rollback);
    assert_int_equal(json_array_size(audit), 0);
    json_decref(audit);
    m = fx_scrape(f);
    assert_true(fx_metric(m, "cutover_accept_errors_total{reason=\"emfile\"}") >= 1);
    assert_true(fx_metric(m, "cutover_rollbacks_total{service=\"web\",reason=\"new_down\"}")
                == 0);
    free(m);

    /* the clients go: it serves again (a pause lasts 1 s at most) */
    unflood(fds, CLIENTS);
    assert_int_equal(get_within(f, 3000), 200);
    fx_stop_clean(f);
}

/* A real verdict while the clients hold every descriptor of theirs: new
 * stops answering its health check; the rollback that follows is applied,
 * saved and audited, as any rollback. */
static void
test_rollback_while_out_of_descriptors_is_saved_and_audited(void **state)
{
    struct fx *f = start(state);
    int fds[CLIENTS];
    long long end;
    char st[64], *saved;
    json_t *audit, *e;
    size_t i;
    bool health_down = false, rollback = false;

    wait_checked(f);
    assert_true(flood(f->proxy_port, fds, CLIENTS) > NOFILE);
    wait_exhausted(f);
    assert_int_equal(h_backend_set(f->port[1][0], "healthy=0"), 0);
    end = h_now_ms() + 5000;
    while (strcmp(fx_state(f, st, sizeof(st)), "rolled_back") != 0) {
        if (h_now_ms() > end) {
            h_dump_file(f->log, 3000);
            fail_msg("no rollback within 5 s of new going down");
        }
        h_sleep_ms(50);
    }
    /* saved and audited: routing changes at once, the state file and the
     * audit entry are written after it by the writer thread (docs/DESIGN.md,
     * "Where the disk is written"), so both are waited for, within 5 s */
    end = h_now_ms() + 5000;
    for (;;) {
        saved = h_read_file(f->state);
        audit = fx_audit(f, is_health_or_rollback);
        json_array_foreach(audit, i, e) {
            const char *a = json_string_value(json_object_get(e, "action"));
            const char *to = json_string_value(json_object_get(e, "to"));

            if (strcmp(a, "health") == 0 && to != NULL && strcmp(to, "down") == 0)
                health_down = true;
            if (strcmp(a, "rollback") == 0 &&
                strcmp(json_string_value(json_object_get(e, "actor")), "auto") == 0)
                rollback = true;
        }
        json_decref(audit);
        if ((saved != NULL && strstr(saved, "rolled_back") != NULL && health_down && rollback) ||
            h_now_ms() > end)
            break;
        free(saved);
        h_sleep_ms(50);
    }
    assert_non_null(saved);
    assert_non_null(strstr(saved, "rolled_back"));
    free(saved);
    assert_true(health_down);
    assert_true(rollback);
    assert_int_equal(lines_since(f->log, 0, "not saved"), 0);
    assert_int_equal(lines_since(f->log, 0, "audit log:"), 0);
    unflood(fds, CLIENTS);
    fx_stop_clean(f);
}

/* Requests while the upstream sockets run out: 240 clients connect and the
 * daemon accepts as many as the clients' share allows; then each sends a
 * GET. New (weight 100) answers after 1.5 s, so every request holds an
 * upstream descriptor; past the data plane's share the next ones are
 * answered 503 by the proxy itself. Those
 * are its own shortage: counted as local_resource, never as the server's
 * failures or in new's window, so the error-rate rule (5 % of at least 20)
 * rolls nothing back. */
static void
test_local_connect_failures_are_not_the_backends(void **state)
{
    struct fx *f = fx_new(state, sizeof(struct fx), false, 1,
                          ",\"weight\": 100, \"timeouts\": {\"client_head_ms\": 60000}");
    struct h_load_conf c = {
        .conns = 240, .gap_min_ms = 0, .gap_max_ms = 0, .requests = 240,
        .duration_ms = 1500, .seed = 23, .quiet = true, .connect_first_ms = 500,
    };
    struct h_load_stats st;
    json_t *audit;
    long local;

    f->nofile = NOFILE;
    snprintf(f->top_extra, sizeof(f->top_extra), "%s", NO_CAP);
    assert_int_equal(fx_write_conf(f), 0);
    assert_int_equal(fx_start_proxy(f, 23), 0);
    assert_int_equal(h_backend_set(f->port[1][0], "delay_ms=1500"), 0);
    c.port = f->proxy_port;
    assert_int_equal(h_load_run(&c, &st), 0);
    h_load_print("upstream sockets used up", &st);
    local = fx_status_long(f, "new.counters.errors.local_resource");
    assert_true(st.status[200] >= 20);           /* new served enough to be judged */
    assert_true(st.status[503] >= 1);
    assert_int_equal(st.answered, st.status[200] + st.status[503]);
    assert_int_equal(local, (long)st.status[503]);
    assert_int_equal(fx_status_long(f, "new.servers.0.failures"), 0);
    assert_int_equal(fx_status_long(f, "new.window.errors"), 0);
    assert_int_equal(fx_status_long(f, "new.counters.errors.connect"), 0);
    fx_expect_state(f, "steady", 100);
    audit = fx_audit(f, is_health_or_rollback);
    assert_int_equal(json_array_size(audit), 0);
    json_decref(audit);
    fx_stop_clean(f);
}

/* A burst of 20 failed requests: 5 warnings pass, and the count of the
 * other 15 is written within about a second, though no warning follows. */
static void
test_held_back_warnings_are_counted_within_a_second(void **state)
{
    struct fx *f;
    struct h_resp r;
    long long t_end;
    char *text, *p;
    unsigned long held = 0;
    int i, passed;

    assert_int_equal(fx_open(state, false, 1, NULL, 23), 0);
    f = *state;
    assert_int_equal(h_backend_set(f->port[0][0], "mode=reset"), 0);
    for (i = 0; i < 20; i++) {
        assert_int_equal(h_exchange(f->proxy_port, "GET / HTTP/1.1\r\nHost: t\r\n\r\n", &r), 0);
        assert_int_equal(r.status, 502);
        h_resp_free(&r);
    }
    t_end = h_now_ms();
    if (h_wait_log(f->log, "held back in the last second", 2500) != 0)
        fail_msg("the count of the held-back warnings did not come within 2.5 s");
    fprintf(stderr, "held-back count written %lld ms after the burst\n", h_now_ms() - t_end);
    passed = lines_since(f->log, 0, "502 Bad Gateway");
    text = h_read_file(f->log);
    assert_non_null(text);
    for (p = text; (p = strstr(p, "service web: ")) != NULL; p++)
        if (strstr(p, " more per-request warning(s) held back") ==
            p + 13 + strspn(p + 13, "0123456789"))
            held += strtoul(p + 13, NULL, 10);
    free(text);
    fprintf(stderr, "warnings: %d written, %lu held back\n", passed, held);
    assert_true(passed <= 5 * 2);      /* at most 5 a second (a burst may span two) */
    assert_int_equal((unsigned long)passed + held, 20);
    fx_stop_clean(f);
}

/* Each client asks once and leaves (an idle keep-alive connection holds
 * its place under a cap, as HAProxy's maxconn counts it). */
static void
close_request(void *arg, unsigned nth, uint64_t rnd, struct h_load_req *out)
{
    static const char req[] = "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";

    (void)arg;
    (void)nth;
    (void)rnd;
    out->raw = req;
    out->len = sizeof(req) - 1;
    out->is_head = false;
}

/* The same load as above (each client leaving after its answer) with the
 * default cap: the clients past it wait in the backlog and are served as
 * others finish; none gets a 503, none is refused, no accept fails. */
static void
test_default_cap_queues_instead_of_503(void **state)
{
    struct fx *f = fx_new(state, sizeof(struct fx), false, 1,
                          ",\"weight\": 100, \"timeouts\": {\"client_head_ms\": 60000}");
    struct h_load_conf c = {
        .conns = 240, .gap_min_ms = 0, .gap_max_ms = 0, .requests = 240,
        .duration_ms = 1500, .seed = 23, .quiet = true, .connect_first_ms = 500,
    };
    struct h_load_stats st;

    f->nofile = NOFILE;
    assert_int_equal(fx_write_conf(f), 0);
    assert_int_equal(fx_start_proxy(f, 23), 0);
    assert_int_equal(h_wait_log(f->log, "limits.max_connections: ", 2000), 0);
    assert_int_equal(h_wait_log(f->log, "(from RLIMIT_NOFILE", 100), 0);
    /* four rounds of a third of the share each, well within the load's
     * time (its 1.5 s and 5 s for the answers) */
    assert_int_equal(h_backend_set(f->port[1][0], "delay_ms=800"), 0);
    c.port = f->proxy_port;
    c.request = close_request;
    assert_int_equal(h_load_run(&c, &st), 0);
    h_load_print("240 clients, default cap", &st);
    if (st.status[200] != 240)
        h_dump_file(f->log, 6000);
    assert_int_equal(st.status[200], 240);
    assert_int_equal(st.answered, 240);
    assert_int_equal(fx_status_long(f, "new.counters.errors.local_resource"), 0);
    assert_int_equal(fx_status_long(f, "accept_errors.emfile"), 0);
    assert_int_equal(h_wait_log(f->log, "limits.max_connections (", 100), 0);
    fx_stop_clean(f);
}

/* A keep-alive connection to <port> whose GET / was answered 200: its
 * descriptor (open). */
static int
open_answered(int port)
{
    static const char req[] = "GET / HTTP/1.1\r\nHost: t\r\n\r\n";
    struct h_resp r;
    int fd = h_connect(port);

    assert_true(fd >= 0);
    assert_int_equal(h_set_timeout_ms(fd, 5000), 0);
    assert_int_equal(h_send_all(fd, req, sizeof(req) - 1), 0);
    memset(&r, 0, sizeof(r));
    assert_int_equal(h_read_response(fd, &r), 0);
    assert_int_equal(r.status, 200);
    h_resp_free(&r);
    return fd;
}

/* A connection to <port> that sent GET / (its answer not read yet). */
static int
open_asking(int port)
{
    static const char req[] = "GET / HTTP/1.1\r\nHost: t\r\n\r\n";
    int fd = h_connect(port);

    assert_true(fd >= 0);
    assert_int_equal(h_send_all(fd, req, sizeof(req) - 1), 0);
    return fd;
}

/* Whether <fd> got a whole 200 within <ms>. */
static bool
answered_within(int fd, int ms)
{
    struct h_resp r;
    bool ok;

    memset(&r, 0, sizeof(r));
    assert_int_equal(h_set_timeout_ms(fd, ms), 0);
    ok = h_read_response(fd, &r) == 0 && r.status == 200;
    h_resp_free(&r);
    return ok;
}

/* A service's cap, one event loop: the fourth client waits in the backlog
 * (no answer, no error) while three are open, another service is not held,
 * and the fourth is answered once one of the three leaves. */
static void
test_service_cap_holds_clients_in_the_backlog(void **state)
{
    struct fx *f = fx_new(state, sizeof(struct fx), false, 1,
                          ",\"limits\": {\"max_connections\": 3}");
    int fds[3], next, other, port2 = h_free_port(), i;

    snprintf(f->more_services, sizeof(f->more_services),
             ",{\n    \"name\": \"api\", \"listen\": [\"127.0.0.1:%d\"],\n"
             "    \"legacy\": { \"servers\": [\"127.0.0.1:%d\"] },\n"
             "    \"new\": { \"servers\": [\"127.0.0.1:%d\"] }\n  }",
             port2, f->port[0][0], f->port[1][0]);
    assert_int_equal(fx_write_conf(f), 0);
    assert_int_equal(fx_start_proxy(f, 23), 0);
    for (i = 0; i < 3; i++)
        fds[i] = open_answered(f->proxy_port);
    next = open_asking(f->proxy_port);
    assert_false(answered_within(next, 700));
    assert_int_equal(fx_status_long(f, "connections"), 3);
    assert_int_equal(fx_status_long(f, "max_connections"), 3);
    other = open_answered(port2);                  /* not this service's cap */
    close(other);
    assert_int_equal(h_wait_log(f->log, "service web: 3 client connections: its "
                                "limits.max_connections reached", 100), 0);
    close(fds[0]);
    assert_true(answered_within(next, 3000));
    close(next);
    close(fds[1]);
    close(fds[2]);
    assert_int_equal(h_backend_requests(f->port[0][0]) + h_backend_requests(f->port[1][0]),
                     5);
    fx_stop_clean(f);
}

/* The process's cap over two services and two event loops: past it the
 * clients wait (a loop that had not paused yet may take one more), and are
 * answered once the first ones leave. */
static void
test_process_cap_two_loops(void **state)
{
    struct fx *f = fx_new(state, sizeof(struct fx), false, 1, "");
    int fds[4], more[3], port2 = h_free_port(), i, early = 0;
    bool got[3];
    char *m;

    f->workers = 2;
    f->admin_port = h_free_port();
    snprintf(f->top_extra, sizeof(f->top_extra), ",\n  \"limits\": { \"max_connections\": 4 }");
    snprintf(f->more_services, sizeof(f->more_services),
             ",{\n    \"name\": \"api\", \"listen\": [\"127.0.0.1:%d\"],\n"
             "    \"legacy\": { \"servers\": [\"127.0.0.1:%d\"] },\n"
             "    \"new\": { \"servers\": [\"127.0.0.1:%d\"] }\n  }",
             port2, f->port[0][0], f->port[1][0]);
    assert_int_equal(fx_write_conf(f), 0);
    assert_int_equal(fx_start_proxy(f, 23), 0);
    assert_int_equal(h_wait_log(f->log, "limits.max_connections: 4", 2000), 0);
    for (i = 0; i < 4; i++)
        fds[i] = open_answered(i % 2 ? port2 : f->proxy_port);
    m = fx_scrape(f);
    assert_true(fx_metric(m, "cutover_max_connections") == 4);
    assert_true(fx_metric(m, "cutover_client_connections") == 4);
    free(m);
    for (i = 0; i < 3; i++)
        more[i] = open_asking(i % 2 ? port2 : f->proxy_port);
    for (i = 0; i < 3; i++)
        early += (got[i] = answered_within(more[i], 300));
    assert_true(early <= 1);
    for (i = 0; i < 4; i++)
        close(fds[i]);
    for (i = 0; i < 3; i++) {
        if (!got[i])
            assert_true(answered_within(more[i], 3000));
        close(more[i]);
    }
    fx_stop_clean(f);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_out_of_descriptors_stays_quiet_and_judges_nobody,
                                  fx_teardown),
        cmocka_unit_test_teardown(test_rollback_while_out_of_descriptors_is_saved_and_audited,
                                  fx_teardown),
        cmocka_unit_test_teardown(test_local_connect_failures_are_not_the_backends,
                                  fx_teardown),
        cmocka_unit_test_teardown(test_default_cap_queues_instead_of_503, fx_teardown),
        cmocka_unit_test_teardown(test_service_cap_holds_clients_in_the_backlog, fx_teardown),
        cmocka_unit_test_teardown(test_process_cap_two_loops, fx_teardown),
        cmocka_unit_test_teardown(test_held_back_warnings_are_counted_within_a_second,
                                  fx_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
