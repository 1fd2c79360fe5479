/*
 * 35_scale: cutoverd with 300 services (workers 2, HTTP checks every
 * 2 s), traffic on one of them from another process. A reload (the config
 * unchanged) and a status (on the admin socket, built in slices, and GET
 * /status) answer every request meanwhile, and the status lists all 300
 * services; the main thread spends at most 1 ms per service on a reload
 * (its CPU time, from schedstat: what the load of the machine does not
 * move); memory stays within 100 KB per service (it was 0.6 MB: a
 * 600-second window per side, per loop). The worst request latency during
 * each is printed, not asserted: it moves with the machine's load
 * (tests/bench/scale.sh measures it beside HAProxy).
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/integration/fixture.h"

#define NSVC      300
#define CLIENTS   4
#define WAIT_MS   30000

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1                    /* memory is the sanitizer's: not measured */
#else
#define SANITIZED 0
#endif

static int ports[NSVC];

/* The config of NSVC services in f->conf, with admin.listen. */
static void
write_conf(struct fx *f)
{
    size_t cap = 512 + (size_t)NSVC * 400, n;
    char *t = malloc(cap);
    unsigned i;

    assert_non_null(t);
    n = (size_t)snprintf(t, cap, "{\n  \"admin\": { \"socket\": \"%s\", \"listen\": "
                         "\"127.0.0.1:%d\" },\n  \"state\": { \"file\": \"%s\" },\n"
                         "  \"audit\": { \"file\": \"%s\" },\n  \"workers\": 2,\n"
                         "  \"services\": [\n", f->sock, f->admin_port, f->state, f->audit);
    for (i = 0; i < NSVC; i++)
        n += (size_t)snprintf(t + n, cap - n,
                              "%s    { \"name\": \"s%u\", \"listen\": [\"127.0.0.1:%d\"], "
                              "\"weight\": 10,\n      \"legacy\": { \"servers\": "
                              "[\"127.0.0.1:%d\"] }, \"new\": { \"servers\": "
                              "[\"127.0.0.1:%d\"] },\n      \"health\": { \"type\": \"http\", "
                              "\"path\": \"/healthz\", \"interval_ms\": 2000 } }",
                              i ? ",\n" : "", i, ports[i], f->port[0][0], f->port[1][0]);
    snprintf(t + n, cap - n, "\n  ]\n}\n");
    assert_int_equal(h_write_file(f->conf, t), 0);
    free(t);
}

/* The main thread's CPU time so far, in microseconds. */
static long long
main_cpu_us(pid_t pid)
{
    char path[64], *text;
    long long ns = -1;

    snprintf(path, sizeof(path), "/proc/%d/task/%d/schedstat", (int)pid, (int)pid);
    text = h_read_file(path);
    if (text != NULL)
        ns = strtoll(text, NULL, 10);
    free(text);
    return ns / 1000;
}

/* The child's load: CLIENTS keep-alive connections to <port>, a GET on
 * each, then each answer, until <fd_stop> is readable; writes "answered
 * errors worst_us" to <out>. */
static void __attribute__((noreturn))
load_child(int port, int fd_stop, int out)
{
    static const char req[] = "GET / HTTP/1.1\r\nHost: t\r\n\r\n";
    int fds[CLIENTS], i;
    long answered = 0, errors = 0;
    long long worst = 0;
    char line[96];
    struct h_resp r;

    for (i = 0; i < CLIENTS; i++)
        if ((fds[i] = h_connect(port)) < 0 || h_set_timeout_ms(fds[i], 10000) != 0)
            _exit(2);
    for (;;) {
        long long t0;
        char b;

        if (read(fd_stop, &b, 1) >= 0 || errno != EAGAIN)
            break;
        t0 = h_now_ms() * 1000;
        for (i = 0; i < CLIENTS; i++)
            if (h_send_all(fds[i], req, sizeof(req) - 1) != 0)
                errors++;
        for (i = 0; i < CLIENTS; i++) {
            memset(&r, 0, sizeof(r));
            if (h_read_response(fds[i], &r) == 0 && r.status == 200)
                answered++;
            else
                errors++;
            h_resp_free(&r);
        }
        if (h_now_ms() * 1000 - t0 > worst)
            worst = h_now_ms() * 1000 - t0;
        if (errors > 0)
            break;
    }
    snprintf(line, sizeof(line), "%ld %ld %lld\n", answered, errors, worst);
    if (write(out, line, strlen(line)) < 0)
        _exit(3);
    _exit(0);
}

struct load {
    pid_t pid;
    int stop, out;
};

static void
load_start(struct load *l, int port)
{
    int ps[2], po[2];

    assert_int_equal(pipe(ps), 0);
    assert_int_equal(pipe(po), 0);
    l->pid = fork();
    assert_true(l->pid >= 0);
    if (l->pid == 0) {
        close(ps[1]);
        close(po[0]);
        fcntl(ps[0], F_SETFL, O_NONBLOCK);
        load_child(port, ps[0], po[1]);
    }
    close(ps[0]);
    close(po[1]);
    l->stop = ps[1];
    l->out = po[0];
}

/* Stops the load; its worst round trip in ms (4 requests, one per
 * connection), after asserting every request got a 200. */
static double
load_stop(struct load *l, const char *during)
{
    char line[96] = "";
    long answered = -1, errors = -1;
    long long worst = -1;
    int st;
    ssize_t n;

    assert_int_equal(write(l->stop, "x", 1), 1);
    n = read(l->out, line, sizeof(line) - 1);
    assert_true(n > 0);
    line[n] = '\0';
    assert_int_equal(sscanf(line, "%ld %ld %lld", &answered, &errors, &worst), 3);
    assert_int_equal(waitpid(l->pid, &st, 0), l->pid);
    close(l->stop);
    close(l->out);
    print_message("%s: %ld requests answered 200, worst round trip %.1f ms\n", during,
                  answered, worst / 1000.0);
    assert_int_equal(errors, 0);
    assert_true(answered > 0);
    return worst / 1000.0;
}

static void
test_reload_and_status_at_300_services(void **state)
{
    struct fx *f = fx_new(state, sizeof(struct fx), false, 1, "");
    struct load l;
    long long c0, c1, t0;
    json_t *root, *j;
    long rss;
    unsigned i;

    for (i = 0; i < NSVC; i++)
        assert_true((ports[i] = h_free_port()) > 0);
    f->proxy_port = ports[0];
    f->admin_port = h_free_port();
    write_conf(f);
    t0 = h_now_ms();
    assert_int_equal(fx_start_proxy(f, 33), 0);
    assert_int_equal(h_wait_port(ports[NSVC - 1], 10000), 0);
    print_message("%d services ready in %lld ms\n", NSVC, h_now_ms() - t0);
    h_sleep_ms(2500);                  /* every checker has run */

    rss = h_rss_kib(f->proxy);
    print_message("RSS %ld KiB, %ld KiB per service\n", rss, rss / NSVC);
    if (!SANITIZED)
        assert_true(rss < NSVC * 100L);

    /* quiet */
    load_start(&l, ports[0]);
    h_sleep_ms(600);
    load_stop(&l, "quiet");

    /* a reload: the config unchanged */
    load_start(&l, ports[0]);
    h_sleep_ms(200);
    c0 = main_cpu_us(f->proxy);
    fx_reload_ok(f, WAIT_MS, 2);
    c1 = main_cpu_us(f->proxy);
    h_sleep_ms(100);
    load_stop(&l, "reload");
    print_message("reload: main thread CPU %.1f ms\n", (c1 - c0) / 1000.0);
    assert_true(c0 >= 0 && c1 - c0 <= NSVC * 1000L);

    /* a status on the socket, then over HTTP */
    load_start(&l, ports[0]);
    h_sleep_ms(200);
    root = h_ctl_json(f->sock, "status", (char *)NULL);
    assert_non_null(root);
    assert_int_equal(json_array_size(json_object_get(root, "services")), NSVC);
    assert_string_equal(json_string_value(json_object_get(json_array_get(
        json_object_get(root, "services"), NSVC - 1), "name")), "s299");
    json_decref(root);
    assert_int_equal(fx_admin_call(f, "GET", "/status", NULL, NULL, &j), 200);
    assert_non_null(j);
    assert_int_equal(json_array_size(json_object_get(j, "services")), NSVC);
    assert_true(json_is_object(json_object_get(j, "store")));
    json_decref(j);
    h_sleep_ms(100);
    load_stop(&l, "status");

    /* the services still answer, the last one too */
    assert_int_equal(h_wait_port(ports[NSVC - 1], 1000), 0);
    fx_stop_clean(f);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_reload_and_status_at_300_services, fx_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
