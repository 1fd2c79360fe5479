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
 * The dashboard's stream (GET /v1/events) at 300 services: its frames
 * (over 256 KiB each) are built in slices and every one reaches a reader
 * that keeps up, in sequence, none dropped; the main thread's CPU per
 * frame and per /metrics scrape is bounded per service; and with the
 * stream open and /metrics scraped over and over under traffic, every
 * request is answered and the frames keep coming.
 * A reload at 300 services is applied in steps and slices (proxy/reload.c)
 * while two services keep answering, one of them moved to another place in
 * the service list: a service changed in the middle (another legacy
 * server), one removed, one added each get their outcome; a storm of
 * SIGHUPs, some landing while a reload is applied, has the file read again
 * after each, every reload applied, none failed, no request refused.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/integration/fixture.h"

#define NSVC      300
#define CLIENTS   4
#define WAIT_MS   30000
#define TOKEN     "read-secret-0123456789"
#define ADM_OUT_MAX_OLD (256u * 1024u) /* the stream's fixed limit before frames scaled it */

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1                    /* memory is the sanitizer's: not measured */
#else
#define SANITIZED 0
#endif

/* The main thread's CPU per frame of the dashboard's stream and per
 * /metrics scrape, per service (a sanitizer makes both slower) */
#define FRAME_US_PER_SVC  (SANITIZED ? 1000L : 300L)
#define SCRAPE_US_PER_SVC (SANITIZED ? 1000L : 300L)

static int ports[NSVC], extra_port;

/* The config of NSVC services in f->conf, with admin.listen; <changed>:
 * s10's legacy server is the new backend, s20 is removed and "extra" (on
 * extra_port) added after the others. */
static void
write_conf_as(struct fx *f, bool changed)
{
    size_t cap = 512 + (size_t)NSVC * 400, n;
    char *t = malloc(cap);
    unsigned i;
    char tokens[600];

    assert_non_null(t);
    snprintf(tokens, sizeof(tokens), "%s/admin.tokens", f->dir);
    assert_int_equal(h_write_file(tokens, "dash read " TOKEN "\n"), 0);
    assert_int_equal(chmod(tokens, 0600), 0);
    n = (size_t)snprintf(t, cap, "{\n  \"admin\": { \"socket\": \"%s\", \"listen\": "
                         "\"127.0.0.1:%d\", \"token_file\": \"%s\" },\n"
                         "  \"state\": { \"file\": \"%s\" },\n"
                         "  \"audit\": { \"file\": \"%s\" },\n  \"workers\": 2,\n"
                         "  \"services\": [\n", f->sock, f->admin_port, tokens, f->state,
                         f->audit);
    for (i = 0; i < NSVC; i++) {
        if (changed && i == 20)
            continue;
        n += (size_t)snprintf(t + n, cap - n,
                              "%s    { \"name\": \"s%u\", \"listen\": [\"127.0.0.1:%d\"], "
                              "\"weight\": 10,\n      \"legacy\": { \"servers\": "
                              "[\"127.0.0.1:%d\"] }, \"new\": { \"servers\": "
                              "[\"127.0.0.1:%d\"] },\n      \"health\": { \"type\": \"http\", "
                              "\"path\": \"/healthz\", \"interval_ms\": 2000 } }",
                              i ? ",\n" : "", i, ports[i],
                              changed && i == 10 ? f->port[1][0] : f->port[0][0],
                              f->port[1][0]);
    }
    if (changed)
        n += (size_t)snprintf(t + n, cap - n,
                              ",\n    { \"name\": \"extra\", \"listen\": [\"127.0.0.1:%d\"], "
                              "\"weight\": 100,\n      \"legacy\": { \"servers\": "
                              "[\"127.0.0.1:%d\"] }, \"new\": { \"servers\": "
                              "[\"127.0.0.1:%d\"] } }", extra_port, f->port[0][0],
                              f->port[1][0]);
    snprintf(t + n, cap - n, "\n  ]\n}\n");
    assert_int_equal(h_write_file(f->conf, t), 0);
    free(t);
}

static void
write_conf(struct fx *f)
{
    write_conf_as(f, false);
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

/* ---- the dashboard's stream ------------------------------------------------ */

/* Checks the complete frame <blk> (<len> bytes, "\n\n" excluded): its id
 * follows <*seq> (any id for the first), its data is JSON with the status
 * of every service and the audit. Returns 0 or -1. */
static int
frame_check(char *blk, size_t len, unsigned long *seq)
{
    unsigned long id;
    char *data;
    json_t *o;
    int ok;

    if (len < 4 || strncmp(blk, "id: ", 4) != 0)
        return -1;
    id = strtoul(blk + 4, NULL, 10);
    if (*seq != 0 && id != *seq + 1)
        return -1;
    *seq = id;
    if ((data = strstr(blk, "\ndata: ")) == NULL)
        return -1;
    data += 7;
    o = json_loadb(data, len - (size_t)(data - blk), 0, NULL);
    ok = o != NULL && json_integer_value(json_object_get(o, "seq")) == (json_int_t)id
         && json_is_true(h_json_at(o, "status.ok"))
         && json_array_size(h_json_at(o, "status.services")) == NSVC
         && json_is_true(h_json_at(o, "audit.ok"));
    json_decref(o);
    return ok ? 0 : -1;
}

/* The child's reader: GET /v1/events on <port>, read as fast as it comes;
 * for every frame checked, "F <id> <bytes>\n" to <out>; at the end
 * (<fd_stop> readable, or the stream failed) "E <error> <frames>\n". */
static void __attribute__((noreturn))
stream_child(int port, int fd_stop, int out)
{
    static const char req[] = "GET /v1/events HTTP/1.1\r\nHost: admin\r\n"
                              "Authorization: Bearer " TOKEN "\r\n\r\n";
    size_t cap = 8u << 20, have = 0, off;
    char *buf = malloc(cap), line[96];
    unsigned long seq = 0, frames = 0;
    const char *err = "none";
    bool head = false;
    int fd = -1;

    if (buf == NULL || (fd = h_connect(port)) < 0 || h_send_all(fd, req, sizeof(req) - 1) != 0)
        _exit(2);
    for (;;) {
        struct pollfd pf[2] = { { .fd = fd, .events = POLLIN }, { .fd = fd_stop,
                                                                  .events = POLLIN } };
        char *p;
        ssize_t k;

        if (poll(pf, 2, 10000) <= 0) {
            err = "no data for 10 s";
            break;
        }
        if (pf[1].revents != 0)
            break;
        if (have == cap - 1) {
            err = "a frame over 8 MB";
            break;
        }
        if ((k = recv(fd, buf + have, cap - 1 - have, 0)) <= 0) {
            err = "the stream closed (dropped?)";
            break;
        }
        have += (size_t)k;
        buf[have] = '\0';
        off = 0;
        if (!head) {
            if ((p = strstr(buf, "\r\n\r\n")) == NULL)
                continue;
            if (strncmp(buf, "HTTP/1.1 200 ", 13) != 0) {
                err = "not 200";
                break;
            }
            head = true;
            off = (size_t)(p + 4 - buf);
        }
        while ((p = strstr(buf + off, "\n\n")) != NULL) {
            size_t blen = (size_t)(p - (buf + off));

            *p = '\0';
            if (strncmp(buf + off, "retry: ", 7) != 0) {
                if (frame_check(buf + off, blen, &seq) != 0) {
                    err = "a frame out of sequence or not the status of every service";
                    goto out;
                }
                frames++;
                snprintf(line, sizeof(line), "F %lu %zu\n", seq, blen + 2);
                if (write(out, line, strlen(line)) < 0)
                    _exit(3);
            }
            off += blen + 2;
        }
        memmove(buf, buf + off, have - off);
        have -= off;
        buf[have] = '\0';
    }
out:
    snprintf(line, sizeof(line), "E %s|%lu\n", err, frames);
    if (write(out, line, strlen(line)) < 0)
        _exit(3);
    _exit(0);
}

struct stream {
    pid_t pid;
    int stop;
    FILE *out;
};

static void
stream_start(struct stream *st, int port)
{
    int ps[2], po[2];

    assert_int_equal(pipe(ps), 0);
    assert_int_equal(pipe(po), 0);
    st->pid = fork();
    assert_true(st->pid >= 0);
    if (st->pid == 0) {
        close(ps[1]);
        close(po[0]);
        stream_child(port, ps[0], po[1]);
    }
    close(ps[0]);
    close(po[1]);
    st->stop = ps[1];
    st->out = fdopen(po[0], "r");
    assert_non_null(st->out);
}

/* Waits for the reader's next frame: its id and size; fails the test when
 * the stream ends instead. */
static unsigned long
stream_next(struct stream *st, size_t *bytes)
{
    char line[256];
    unsigned long id = 0;

    assert_non_null(fgets(line, sizeof(line), st->out));
    if (line[0] != 'F')
        fail_msg("events stream: %s", line);
    assert_int_equal(sscanf(line, "F %lu %zu", &id, bytes), 2);
    return id;
}

/* Stops the reader; the frames it saw since the last stream_next(),
 * after asserting the stream never failed. */
static unsigned long
stream_stop(struct stream *st)
{
    char line[256];
    unsigned long n = 0, frames = 0;
    int status;

    assert_int_equal(write(st->stop, "x", 1), 1);
    while (fgets(line, sizeof(line), st->out) != NULL && line[0] == 'F')
        n++;
    assert_int_equal(waitpid(st->pid, &status, 0), st->pid);
    close(st->stop);
    fclose(st->out);
    if (strncmp(line, "E none|", 7) != 0)
        fail_msg("events stream: %s", line);
    frames = strtoul(line + 7, NULL, 10);
    print_message("events stream: %lu frames in all, none dropped\n", frames);
    return n;
}

/* The stream and /metrics: CPU per frame and per scrape, then both under
 * traffic. */
static void
check_frames_and_scrapes(struct fx *f)
{
    struct stream st;
    struct load l;
    long long c0, c1, t0, idle, frame_us, scrape_us = 0;
    unsigned long id0, id;
    size_t bytes = 0;
    char *text;
    int i;

    /* the main thread idle for 3 s: what the checkers and ticks cost */
    c0 = main_cpu_us(f->proxy);
    h_sleep_ms(3000);
    idle = main_cpu_us(f->proxy) - c0;

    stream_start(&st, f->admin_port);
    id0 = stream_next(&st, &bytes);
    print_message("events: a frame of %zu bytes (the former fixed limit of a stream's "
                  "unsent output: %u)\n", bytes, ADM_OUT_MAX_OLD);
    assert_true(bytes > ADM_OUT_MAX_OLD);
    c0 = main_cpu_us(f->proxy);
    t0 = h_now_ms();
    for (i = 0; i < 3; i++) {
        id = stream_next(&st, &bytes);
        assert_int_equal(id, id0 + 1 + (unsigned long)i);
    }
    c1 = main_cpu_us(f->proxy);
    /* the idle thread's share of the time taken off */
    frame_us = ((c1 - c0) - idle * (h_now_ms() - t0) / 3000) / 3;
    print_message("events: main thread CPU %.1f ms a frame (%.1f ms with the idle "
                  "thread's %.1f ms a second)\n", frame_us / 1000.0, (c1 - c0) / 3000.0,
                  idle / 3000.0);
    assert_true(frame_us <= NSVC * FRAME_US_PER_SVC);

    /* scrapes, the stream open */
    for (i = 0; i < 5; i++) {
        c0 = main_cpu_us(f->proxy);
        text = fx_scrape_token(f, TOKEN);
        c1 = main_cpu_us(f->proxy);
        assert_non_null(strstr(text, "cutover_requests_total{service=\"s299\""));
        free(text);
        if (i == 0 || c1 - c0 < scrape_us)
            scrape_us = c1 - c0;
    }
    print_message("metrics: main thread CPU %.1f ms a scrape (the least of 5)\n",
                  scrape_us / 1000.0);
    assert_true(scrape_us <= NSVC * SCRAPE_US_PER_SVC);

    /* both under traffic: every request answered, the frames keep coming */
    load_start(&l, ports[0]);
    h_sleep_ms(200);
    for (i = 0; i < 10; i++) {
        text = fx_scrape_token(f, TOKEN);
        free(text);
        h_sleep_ms(200);
    }
    h_sleep_ms(100);
    load_stop(&l, "events stream and 10 scrapes");
    assert_true(stream_stop(&st) >= 2);
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

    check_frames_and_scrapes(f);

    /* the services still answer, the last one too */
    assert_int_equal(h_wait_port(ports[NSVC - 1], 1000), 0);
    fx_stop_clean(f);
}

/* One GET / on a new connection to <port>: its status (-1: none), and its
 * body in <body>. */
static int
get_body(int port, char *body, size_t len)
{
    struct h_resp r;
    int status;

    memset(&r, 0, sizeof(r));
    if (h_get(port, "/", NULL, &r) != 0)
        return -1;
    status = r.status;
    snprintf(body, len, "%.*s", (int)r.body_len, r.body != NULL ? r.body : "");
    h_resp_free(&r);
    return status;
}

/* How many times <needle> is in file <path>. */
static unsigned
count_in(const char *path, const char *needle)
{
    char *text = h_read_file(path), *p;
    unsigned n = 0;

    for (p = text; p != NULL && (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    free(text);
    return n;
}

#define STORM_ROUNDS 40                /* of 10 SIGHUPs, 3 ms apart */

static void
test_sliced_reload_at_300_services(void **state)
{
    struct fx *f = fx_new(state, sizeof(struct fx), false, 1, "");
    struct load l0, l1;
    char body[64], needle[96];
    unsigned i, k, started = 0, last;
    long long t0;
    json_t *root, *svcs;
    int fd;

    for (i = 0; i < NSVC; i++)
        assert_true((ports[i] = h_free_port()) > 0);
    assert_true((extra_port = h_free_port()) > 0);
    f->proxy_port = ports[0];
    f->admin_port = h_free_port();
    write_conf(f);
    assert_int_equal(fx_start_proxy(f, 35), 0);
    assert_int_equal(h_wait_port(ports[NSVC - 1], 10000), 0);
    assert_int_equal(get_body(ports[10], body, sizeof(body)), 200);

    /* traffic on s0 and on s299, which the reload moves one place up */
    load_start(&l0, ports[0]);
    load_start(&l1, ports[NSVC - 1]);
    h_sleep_ms(200);
    write_conf_as(f, true);
    fx_reload_ok(f, WAIT_MS, 2);
    /* s10 changed: its legacy side is the new backend now, whatever the
     * split; s20 removed: its port closed; extra added, at weight 100 */
    for (i = 0; i < 5; i++) {
        assert_int_equal(get_body(ports[10], body, sizeof(body)), 200);
        assert_string_equal(body, "new\n");
    }
    fd = h_connect(ports[20]);
    if (fd >= 0)
        close(fd);
    assert_true(fd < 0);
    assert_int_equal(get_body(extra_port, body, sizeof(body)), 200);
    assert_string_equal(body, "new\n");
    root = h_ctl_json(f->sock, "status", (char *)NULL);
    assert_non_null(root);
    svcs = json_object_get(root, "services");
    assert_int_equal(json_array_size(svcs), NSVC);
    assert_string_equal(json_string_value(json_object_get(json_array_get(svcs, 20),
                                                          "name")), "s21");
    assert_string_equal(json_string_value(json_object_get(json_array_get(svcs, NSVC - 1),
                                                          "name")), "extra");
    json_decref(root);

    /* a storm of SIGHUPs: some land while the file is read, some while a
     * reload is applied (its steps and slices); each has the file read
     * again after the reload it met, none is lost, none fails */
    t0 = h_now_ms();
    for (k = 0; k < STORM_ROUNDS && count_in(f->log, "is being applied: it is read again") == 0;
         k++) {
        for (i = 0; i < 10; i++) {
            assert_int_equal(kill(f->proxy, SIGHUP), 0);
            h_sleep_ms(3);
        }
    }
    print_message("SIGHUP storm: %u round(s) of 10 until one landed while a reload was "
                  "applied (%lld ms)\n", k, h_now_ms() - t0);
    assert_true(count_in(f->log, "is being applied: it is read again") > 0);
    /* every reload started ends with its log line: the last generation is
     * 1 + the reloads started, and none starts after it */
    for (k = 0, last = 0; k < 10; k++) {
        started = count_in(f->log, "SIGHUP: reloading") +
                  count_in(f->log, "SIGHUP during the reload: reloading");
        if (started == last)
            break;
        last = started;
        snprintf(needle, sizeof(needle), "configuration generation %u loaded", started + 1);
        if (h_wait_log(f->log, needle, WAIT_MS) != 0)
            fail_msg("no \"%s\" in the log", needle);
        h_sleep_ms(300);
    }
    assert_true(k < 10);
    print_message("SIGHUP storm: %u reloads applied\n", started);
    assert_int_equal(count_in(f->log, "failed, running configuration"), 0);
    load_stop(&l0, "sliced reloads, s0");
    load_stop(&l1, "sliced reloads, s299 moved");
    assert_int_equal(get_body(ports[10], body, sizeof(body)), 200);
    assert_string_equal(body, "new\n");
    assert_int_equal(h_wait_port(extra_port, 1000), 0);
    fx_stop_clean(f);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_reload_and_status_at_300_services, fx_teardown),
        cmocka_unit_test_teardown(test_sliced_reload_at_300_services, fx_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
