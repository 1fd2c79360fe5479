/*
 * Configuration reload on SIGHUP: under load (four client processes, keep-
 * alive and new connections) five reloads that add and remove a server and
 * change the sticky settings lose no request and keep the operator's
 * weight; a reload that fails (syntax error, semantic error, a listen
 * address another process holds) keeps the old config running, logs the
 * error with its place and audits it; a service added with its own listener
 * answers, and once removed its port is closed while the other service's
 * listener never refused a connection; a request in flight to a server
 * that a reload removes completes with 200; the rolled_back latch and the
 * generation survive a reload. Bounded loops, generous waits, fixed seeds.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <cmocka.h>

#include "tests/integration/fixture.h"

#define WAIT_MS    15000           /* generous: a reload takes a few ms */
#define NCHILD     4               /* load processes */
#define PER_CHILD  750             /* requests each: 3000 in all */
#define PER_CONN   10              /* keep-alive requests before a new connection */

/* A "health" section (leading comma) checking /healthz every <ms> ms with
 * a timeout of <to> ms. */
#define HEALTH(ms, to) ",\n    \"health\": { \"type\": \"http\", \"path\": \"/healthz\", " \
                       "\"interval_ms\": " #ms ", \"timeout_ms\": " #to ", \"rise\": 1, " \
                       "\"fall\": 1 }"

/* "127.0.0.1:PORT" of backend <i> of <side>, quoted, into <buf>. */
static const char *
be(const struct fx *f, int side, int i, char *buf, size_t len)
{
    snprintf(buf, len, "\"127.0.0.1:%d\"", f->port[side][i]);
    return buf;
}

/* Writes the config (workers 2, shutdown_grace_ms 3000): service "web" on
 * the fixture's port (plus the listen addresses <more_listen>, each with a
 * leading comma, may be ""), legacy server legacy, new servers <new_list>
 * (JSON list contents), the service keys <web_extra> (leading comma) and
 * the services <more_services> (leading comma) after it. */
static void
conf_write(struct fx *f, const char *more_listen, const char *new_list,
           const char *web_extra, const char *more_services)
{
    f->workers = 2;
    f->grace_ms = 3000;
    snprintf(f->listen, sizeof(f->listen), "\"127.0.0.1:%d\"%s", f->proxy_port, more_listen);
    be(f, 0, 0, f->servers[0], sizeof(f->servers[0]));
    snprintf(f->servers[1], sizeof(f->servers[1]), "%s", new_list);
    snprintf(f->extra, sizeof(f->extra), "%s", web_extra);
    snprintf(f->more_services, sizeof(f->more_services), "%s", more_services);
    assert_int_equal(fx_write_conf(f), 0);
}

/* fx_init with two servers per side, the config written by conf_write()
 * with new servers [new] and <web_extra>, and cutoverd started. */
static struct fx *
start(void **state, const char *web_extra)
{
    struct fx *f = calloc(1, sizeof(*f));
    char n0[64];

    *state = f;
    assert_non_null(f);
    assert_int_equal(fx_init(f, false, 2, NULL), 0);
    conf_write(f, "", be(f, 1, 0, n0, sizeof(n0)), web_extra, "");
    assert_int_equal(fx_start_proxy(f, 11), 0);
    return f;
}

/* Sends SIGHUP and waits for a failed reload whose log line holds <needle>. */
static void
reload_fails(struct fx *f, const char *needle)
{
    assert_int_equal(kill(f->proxy, SIGHUP), 0);
    if (h_wait_log(f->log, needle, WAIT_MS) != 0)
        fail_msg("no \"%s\" in the log", needle);
}

/* One GET / on a new connection to <port>: its status, or -1. */
static int
get_status(int port, char *body, size_t len)
{
    struct h_resp r;
    int status;

    memset(&r, 0, sizeof(r));
    if (h_get(port, "/", NULL, &r) != 0)
        return -1;
    status = r.status;
    if (body != NULL)
        snprintf(body, len, "%.*s", (int)r.body_len, r.body != NULL ? r.body : "");
    h_resp_free(&r);
    return status;
}

/* A child's load: <n> GET / (with a sticky header), PER_CONN per keep-alive
 * connection, then a new one; every PER_CONN-th also on its own short
 * connection. Exit status: the number of failed requests (capped). */
static void __attribute__((noreturn))
load_child(int port, int id, int n)
{
    char req[256];
    struct h_resp r;
    int fd = -1, i, failed = 0, st;

    memset(&r, 0, sizeof(r));
    for (i = 0; i < n; i++) {
        snprintf(req, sizeof(req), "GET /?c=%d&i=%d HTTP/1.1\r\nHost: test\r\n"
                 "X-User: u%d\r\n\r\n", id, i, (id * 1000 + i) % 97);
        if (fd < 0 && (fd = h_connect(port)) < 0) {
            fprintf(stderr, "child %d: request %d: connect refused\n", id, i);
            failed++;
            continue;
        }
        if (h_send_all(fd, req, strlen(req)) != 0 || h_read_response(fd, &r) != 0 ||
            r.status != 200) {
            fprintf(stderr, "child %d: request %d failed (status %d)\n", id, i, r.status);
            failed++;
            h_resp_free(&r);
            close(fd);
            fd = -1;
            continue;
        }
        if (r.closed || (i + 1) % PER_CONN == 0) {
            close(fd);
            fd = -1;
        }
        h_resp_free(&r);
        if (i % PER_CONN == 5) {
            st = get_status(port, NULL, 0);
            if (st != 200) {
                fprintf(stderr, "child %d: short request %d: status %d\n", id, i, st);
                failed++;
            }
        }
    }
    if (fd >= 0)
        close(fd);
    _exit(failed > 100 ? 100 : failed);
}

static pid_t
spawn_load(int port, int id, int n)
{
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0)
        load_child(port, id, n);
    return pid;
}

/* Waits for <pid>: its exit status (failed requests), or -1. */
static int
reap(pid_t pid)
{
    int st;

    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st))
        return -1;
    return WEXITSTATUS(st);
}

/* The audit entries with action "reload" (for fx_audit()). */
static bool
is_reload(const json_t *e)
{
    const char *action = json_string_value(json_object_get(e, "action"));

    return action != NULL && strcmp(action, "reload") == 0;
}

/* Counts the audit entries with action "reload" (each by "signal:HUP",
 * with a reason); <failed> of them with a reason starting "failed: ". */
static int
audit_reloads(struct fx *f, int *failed)
{
    json_t *all = fx_audit(f, is_reload), *e;
    int n = (int)json_array_size(all);
    size_t i;

    *failed = 0;
    json_array_foreach(all, i, e) {
        const char *actor = json_string_value(json_object_get(e, "actor"));
        const char *reason = json_string_value(json_object_get(e, "reason"));

        assert_string_equal(actor, "signal:HUP");
        assert_non_null(reason);
        if (strncmp(reason, "failed: ", 8) == 0)
            (*failed)++;
    }
    json_decref(all);
    return n;
}

/* The number of servers of side <side> ("legacy"/"new") in the status of
 * the first service. */
static size_t
status_servers(struct fx *f, const char *side)
{
    json_t *root, *svc = fx_status(f, &root);
    size_t n = json_array_size(json_object_get(json_object_get(svc, side), "servers"));

    json_decref(root);
    return n;
}

static uint64_t
status_generation(struct fx *f)
{
    json_t *root, *svc = fx_status(f, &root);
    uint64_t g = (uint64_t)json_integer_value(json_object_get(svc, "generation"));

    json_decref(root);
    return g;
}

/* Five reloads under 3000 requests: none fails, the weight stays 30. */
static void
test_reload_under_load(void **state)
{
    struct fx *f = start(state, "");
    char out[4096], n0[64], n1[64], two[160], one[64];
    pid_t kids[NCHILD];
    int i, failed, nfailed;
    unsigned gen = 1;

    assert_int_equal(fx_ctl(f, out, "weight", "30"), 0);
    snprintf(one, sizeof(one), "%s", be(f, 1, 0, n0, sizeof(n0)));
    snprintf(two, sizeof(two), "%s, %s", n0, be(f, 1, 1, n1, sizeof(n1)));
    for (i = 0; i < NCHILD; i++)
        kids[i] = spawn_load(f->proxy_port, i, PER_CHILD);
    h_sleep_ms(100);
    for (i = 0; i < 5; i++) {
        /* B: a second new server and sticky by header; A: as started */
        if (i % 2 == 0)
            conf_write(f, "", two, ",\n    \"sticky\": { \"by\": \"header\", \"name\": \"X-User\" }",
                       "");
        else
            conf_write(f, "", one, ",\n    \"sticky\": { \"by\": \"client_ip\" }", "");
        fx_reload_ok(f, WAIT_MS, ++gen);
        h_sleep_ms(150);
    }
    failed = 0;
    for (i = 0; i < NCHILD; i++) {
        int k = reap(kids[i]);

        if (k != 0)
            fprintf(stderr, "load process %d: %d failed request(s)\n", i, k);
        failed += k != 0 ? 1 : 0;
    }
    assert_int_equal(failed, 0);
    assert_true(fx_weight(f) == 30.0);
    assert_int_equal(status_servers(f, "new"), 2);    /* B was the last */
    assert_int_equal(audit_reloads(f, &nfailed), 5);
    assert_int_equal(nfailed, 0);
    /* the new server added by the reloads took traffic */
    assert_true(h_backend_requests(f->port[1][1]) > 0);
    assert_int_equal(get_status(f->proxy_port, NULL, 0), 200);
    fx_stop_clean(f);
}

/* Reloads that fail change nothing. */
static void
test_failed_reload_keeps_config(void **state)
{
    struct fx *f = start(state, "");
    char out[4096], n0[64], needle[700], extra[64];
    struct sockaddr_in sa;
    int one = 1, busy_port, lfd, nfailed;
    uint64_t gen;

    assert_int_equal(fx_ctl(f, out, "weight", "30"), 0);
    gen = status_generation(f);

    /* syntax error: named with file:line:col */
    assert_int_equal(h_write_file(f->conf, "{\n  \"services\": [\n    oops\n"), 0);
    snprintf(needle, sizeof(needle), "unchanged: %s:3:", f->conf);
    reload_fails(f, needle);
    assert_int_equal(get_status(f->proxy_port, NULL, 0), 200);

    /* semantic error: named with its path */
    conf_write(f, "", be(f, 1, 0, n0, sizeof(n0)),
               ",\n    \"rollback\": { \"max_error_rate\": 2 }", "");
    snprintf(needle, sizeof(needle), "unchanged: %s:12:19: services[0].rollback."
             "max_error_rate: must be between 0 and 1", f->conf);
    reload_fails(f, needle);
    assert_int_equal(get_status(f->proxy_port, NULL, 0), 200);

    /* a listen address another process holds */
    busy_port = h_free_port();
    lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(lfd >= 0);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)busy_port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(lfd, 8), 0);
    snprintf(extra, sizeof(extra), ", \"127.0.0.1:%d\"", busy_port);
    conf_write(f, extra, n0, "", "");
    snprintf(needle, sizeof(needle), "cannot listen on 127.0.0.1:%d", busy_port);
    reload_fails(f, needle);
    close(lfd);

    /* still running the first config, with the same state */
    assert_int_equal(get_status(f->proxy_port, NULL, 0), 200);
    assert_true(fx_weight(f) == 30.0);
    assert_int_equal(status_generation(f), gen);
    assert_int_equal(status_servers(f, "new"), 1);
    assert_int_equal(audit_reloads(f, &nfailed), 3);
    assert_int_equal(nfailed, 3);
    assert_true(h_alive(f->proxy, NULL));

    /* and a good reload after them works */
    conf_write(f, "", n0, "", "");
    fx_reload_ok(f, WAIT_MS, 2);
    assert_int_equal(get_status(f->proxy_port, NULL, 0), 200);
    fx_stop_clean(f);
}

/* A service added with its own listener answers; removed, its port closes,
 * and the first service's listener never refused a connection. */
static void
test_add_and_remove_service(void **state)
{
    struct fx *f = start(state, "");
    static const char req[] = "GET / HTTP/1.1\r\nHost: test\r\n\r\n";
    char n0[64], l1[64], api[1024], body[64];
    int api_port = h_free_port(), fd, idle_fd, slow_fd;
    struct h_resp r;
    pid_t kid;

    kid = spawn_load(f->proxy_port, 9, 600);
    snprintf(api, sizeof(api),
             ",\n  {\n    \"name\": \"api\", \"listen\": [\"127.0.0.1:%d\"],\n"
             "    \"legacy\": { \"servers\": [%s] },\n"
             "    \"new\": { \"servers\": [%s] }, \"weight\": 100%s\n  }",
             api_port, be(f, 0, 1, l1, sizeof(l1)), be(f, 1, 1, n0, sizeof(n0)),
             HEALTH(1000, 800));
    conf_write(f, "", be(f, 1, 0, n0, sizeof(n0)), "", api);
    fx_reload_ok(f, WAIT_MS, 2);
    /* the new service's servers are checked from the start */
    assert_int_equal(h_wait_log(f->log, "service api: http checks every 1000 ms", WAIT_MS), 0);
    assert_int_equal(get_status(api_port, body, sizeof(body)), 200);
    assert_string_equal(body, "new2\n");          /* api's weight 100 */
    assert_int_equal(get_status(f->proxy_port, NULL, 0), 200);

    /* an idle keep-alive client and a slow request on api */
    memset(&r, 0, sizeof(r));
    idle_fd = h_connect(api_port);
    assert_true(idle_fd >= 0);
    assert_int_equal(h_send_all(idle_fd, req, sizeof(req) - 1), 0);
    assert_int_equal(h_read_response(idle_fd, &r), 0);
    assert_int_equal(r.status, 200);
    assert_false(r.closed);
    h_resp_free(&r);
    assert_int_equal(h_backend_set(f->port[1][1], "script=delay1000"), 0);
    slow_fd = h_connect(api_port);
    assert_true(slow_fd >= 0);
    assert_int_equal(h_set_timeout_ms(slow_fd, 10000), 0);
    assert_int_equal(h_send_all(slow_fd, req, sizeof(req) - 1), 0);
    h_sleep_ms(200);

    /* removed again: its port is closed, the idle client is let go, the
     * slow request completes, and then the service is gone */
    conf_write(f, "", n0, "", "");
    fx_reload_ok(f, WAIT_MS, 3);
    fd = h_connect(api_port);
    if (fd >= 0)
        close(fd);
    assert_true(fd < 0);
    assert_true(h_peer_closed(idle_fd, 5000));
    close(idle_fd);
    assert_int_equal(h_read_response(slow_fd, &r), 0);
    assert_int_equal(r.status, 200);
    assert_true(r.closed || h_peer_closed(slow_fd, 5000));   /* not kept alive */
    h_resp_free(&r);
    close(slow_fd);
    assert_int_equal(h_wait_log(f->log, "service api: last connection closed; removed",
                                WAIT_MS), 0);
    assert_int_equal(get_status(f->proxy_port, NULL, 0), 200);
    assert_int_equal(reap(kid), 0);               /* web never refused */
    fx_stop_clean(f);
}

/* A long request to a server that a reload removes completes with 200. */
static void
test_inflight_survives_server_removal(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    static const char req[] = "GET /slow HTTP/1.1\r\nHost: test\r\n\r\n";
    char n0[64], n1[64], body[64], needle[160];
    struct h_resp r;
    int fd;

    *state = f;
    assert_non_null(f);
    assert_int_equal(fx_init(f, false, 2, NULL), 0);
    /* all traffic to new, whose only server is new2 */
    conf_write(f, "", be(f, 1, 1, n1, sizeof(n1)), ",\n    \"weight\": 100", "");
    assert_int_equal(fx_start_proxy(f, 13), 0);
    assert_int_equal(h_backend_set(f->port[1][1], "script=delay1500"), 0);

    fd = h_connect(f->proxy_port);
    assert_true(fd >= 0);
    assert_int_equal(h_set_timeout_ms(fd, 10000), 0);
    assert_int_equal(h_send_all(fd, req, sizeof(req) - 1), 0);
    h_sleep_ms(300);                               /* it reached new2 and waits */

    conf_write(f, "", be(f, 1, 0, n0, sizeof(n0)), ",\n    \"weight\": 100", "");
    fx_reload_ok(f, WAIT_MS, 2);
    assert_int_equal(status_servers(f, "new"), 1);
    /* it was removed while the request was in flight to it */
    snprintf(needle, sizeof(needle), "new server 127.0.0.1:%d removed; 1 reference(s) "
             "in flight finish", f->port[1][1]);
    assert_int_equal(h_wait_log(f->log, needle, WAIT_MS), 0);

    memset(&r, 0, sizeof(r));
    assert_int_equal(h_read_response(fd, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 5);
    assert_memory_equal(r.body, "new2\n", 5);
    h_resp_free(&r);
    close(fd);
    /* the next request goes to the server that stays */
    assert_int_equal(get_status(f->proxy_port, body, sizeof(body)), 200);
    assert_string_equal(body, "new\n");
    fx_stop_clean(f);
}

/* The rolled_back latch and the generation survive a reload. */
static void
test_latch_survives_reload(void **state)
{
    struct fx *f = start(state, "");
    char out[4096], n0[64], st[32];
    uint64_t gen;

    assert_int_equal(fx_ctl(f, out, "weight", "30"), 0);
    assert_int_equal(fx_ctl(f, out, "rollback", "--reason", "bad deploy"), 0);
    assert_string_equal(fx_state(f, st, sizeof(st)), "rolled_back");
    gen = status_generation(f);

    /* a config whose initial weight says otherwise changes nothing */
    conf_write(f, "", be(f, 1, 0, n0, sizeof(n0)),
               ",\n    \"weight\": 50,\n    \"sticky\": { \"by\": \"client_ip\" }", "");
    fx_reload_ok(f, WAIT_MS, 2);
    assert_string_equal(fx_state(f, st, sizeof(st)), "rolled_back");
    assert_true(fx_weight(f) == 0.0);
    assert_int_equal(status_generation(f), gen);
    assert_int_equal(get_status(f->proxy_port, NULL, 0), 200);
    fx_stop_clean(f);
}

/* Waits until new's "healthy" in status is <want>. 0, or -1 after WAIT_MS. */
static int
wait_new_healthy(struct fx *f, bool want)
{
    long long end = h_now_ms() + WAIT_MS;

    while (h_now_ms() < end) {
        json_t *root, *svc = fx_status(f, &root);
        bool up = json_is_true(json_object_get(json_object_get(svc, "new"), "healthy"));

        json_decref(root);
        if (up == want)
            return 0;
        h_sleep_ms(50);
    }
    return -1;
}

static bool
new_healthy(struct fx *f)
{
    json_t *root, *svc = fx_status(f, &root);
    bool up = json_is_true(json_object_get(json_object_get(svc, "new"), "healthy"));

    json_decref(root);
    return up;
}

/* Health checks across reloads: a kept checker keeps its verdict and keeps
 * checking (its settings now those of the new config); a checker restarted
 * because the health section changed starts from the server's verdict. */
static void
test_health_checks_across_reloads(void **state)
{
    struct fx *f = start(state, HEALTH(200, 150));
    char n0[64];

    be(f, 1, 0, n0, sizeof(n0));
    assert_int_equal(h_backend_set(f->port[1][0], "healthy=0"), 0);
    assert_int_equal(wait_new_healthy(f, false), 0);

    /* health unchanged: the checker stays, and so does the verdict */
    conf_write(f, "", n0, HEALTH(200, 150) ",\n    \"sticky\": { \"by\": \"client_ip\" }", "");
    fx_reload_ok(f, WAIT_MS, 2);
    assert_false(new_healthy(f));
    assert_int_equal(h_backend_set(f->port[1][0], "healthy=1"), 0);
    assert_int_equal(wait_new_healthy(f, true), 0);
    assert_int_equal(h_backend_set(f->port[1][0], "healthy=0"), 0);
    assert_int_equal(wait_new_healthy(f, false), 0);

    /* health changed: a new checker, starting from "down", so that the
     * server healthy again before its first check is reported up (a
     * checker starting from "up" would never say so) */
    conf_write(f, "", n0, HEALTH(5000, 1000), "");
    fx_reload_ok(f, WAIT_MS, 3);
    assert_false(new_healthy(f));
    assert_int_equal(h_backend_set(f->port[1][0], "healthy=1"), 0);
    assert_int_equal(wait_new_healthy(f, true), 0);

    /* health removed: nothing could mark a down server up again */
    assert_int_equal(h_backend_set(f->port[1][0], "healthy=0"), 0);
    assert_int_equal(wait_new_healthy(f, false), 0);
    conf_write(f, "", n0, "", "");
    fx_reload_ok(f, WAIT_MS, 4);
    assert_true(new_healthy(f));
    fx_stop_clean(f);
}

/* TCP mode: a tunnel to a server that a reload removes keeps relaying. */
static void
test_tcp_tunnel_survives_reload(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    char n0[64], n1[64], buf[64];
    int fd, fd2;

    *state = f;
    assert_non_null(f);
    assert_int_equal(fx_init(f, true, 2, NULL), 0);
    conf_write(f, "", be(f, 1, 1, n1, sizeof(n1)), ",\n    \"weight\": 100", "");
    assert_int_equal(fx_start_proxy(f, 17), 0);
    fd = h_connect(f->proxy_port);
    assert_true(fd >= 0);
    assert_int_equal(h_recv_n(fd, buf, 5), 5);
    assert_memory_equal(buf, "new2\n", 5);
    assert_int_equal(h_send_all(fd, "hello", 5), 0);
    assert_int_equal(h_recv_n(fd, buf, 5), 5);
    assert_memory_equal(buf, "hello", 5);

    conf_write(f, "", be(f, 1, 0, n0, sizeof(n0)), ",\n    \"weight\": 100", "");
    fx_reload_ok(f, WAIT_MS, 2);
    assert_int_equal(h_send_all(fd, "again", 5), 0);
    assert_int_equal(h_recv_n(fd, buf, 5), 5);
    assert_memory_equal(buf, "again", 5);
    fd2 = h_connect(f->proxy_port);
    assert_true(fd2 >= 0);
    assert_int_equal(h_recv_n(fd2, buf, 4), 4);
    assert_memory_equal(buf, "new\n", 4);
    close(fd2);
    close(fd);
    fx_stop_clean(f);
}

/* Waits for the log line of config generation <generation> loaded. */
static void
wait_generation(struct fx *f, unsigned generation)
{
    char needle[96];

    snprintf(needle, sizeof(needle), "configuration generation %u loaded", generation);
    if (h_wait_log(f->log, needle, WAIT_MS) != 0)
        fail_msg("no \"%s\" in the log", needle);
}

/* Writes <text> into the FIFO <path> once a reader has it open (the
 * daemon's reload); fails the test after WAIT_MS. */
static void
feed_fifo(const char *path, const char *text)
{
    long long end = h_now_ms() + WAIT_MS;
    int fd = -1;

    while ((fd = open(path, O_WRONLY | O_NONBLOCK)) < 0 && errno == ENXIO &&
           h_now_ms() < end)
        h_sleep_ms(20);
    if (fd < 0)
        fail_msg("nobody reads the FIFO %s: %s", path, strerror(errno));
    /* a config is far smaller than a pipe's buffer: one write */
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

/* The file is read and checked off the main loop: while a config file that
 * cannot be read yet (a FIFO nobody writes) holds a reload, requests are
 * answered (both loops: 2 workers) and so is the admin socket; a SIGHUP
 * meanwhile has the file read again once the first reload is applied; a
 * stop does not wait for a file that cannot be read. */
static void
test_reload_reads_off_the_loop(void **state)
{
    struct fx *f = start(state, "");
    char out[4096], n0[64], n1[64], both[160];
    char *text;
    int i, st;

    snprintf(both, sizeof(both), "%s, %s", be(f, 1, 0, n0, sizeof(n0)),
             be(f, 1, 1, n1, sizeof(n1)));
    conf_write(f, "", both, "", "");
    text = h_read_file(f->conf);
    assert_non_null(text);
    assert_int_equal(unlink(f->conf), 0);
    assert_int_equal(mkfifo(f->conf, 0600), 0);

    assert_int_equal(kill(f->proxy, SIGHUP), 0);
    assert_int_equal(h_wait_log(f->log, "SIGHUP: reloading", WAIT_MS), 0);
    h_sleep_ms(200);                   /* the reading thread waits for a writer */
    for (i = 0; i < 8; i++)
        assert_int_equal(get_status(f->proxy_port, NULL, 0), 200);
    assert_int_equal(fx_ctl(f, out, "status"), 0);
    assert_int_equal(kill(f->proxy, SIGHUP), 0);
    assert_int_equal(h_wait_log(f->log, "is read again once this reload is applied",
                                WAIT_MS), 0);
    feed_fifo(f->conf, text);
    wait_generation(f, 2);
    /* read again: it waits for a writer once more, and the loop serves */
    assert_int_equal(h_wait_log(f->log, "SIGHUP during the reload: reloading", WAIT_MS), 0);
    for (i = 0; i < 8; i++)
        assert_int_equal(get_status(f->proxy_port, NULL, 0), 200);
    feed_fifo(f->conf, text);
    wait_generation(f, 3);
    assert_int_equal(fx_ctl(f, out, "status"), 0);
    snprintf(n1, sizeof(n1), "127.0.0.1:%d", f->port[1][1]);
    assert_non_null(strstr(out, n1));              /* the second new server */

    /* a stop while the file cannot be read */
    assert_int_equal(kill(f->proxy, SIGHUP), 0);
    h_sleep_ms(300);
    assert_int_equal(kill(f->proxy, SIGTERM), 0);
    st = h_wait_exit(f->proxy, WAIT_MS);
    assert_int_equal(st, 0);
    f->proxy = 0;
    assert_int_equal(h_wait_log(f->log, "not waiting for it", 1000), 0);
    free(text);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_reload_under_load, fx_teardown),
        cmocka_unit_test_teardown(test_failed_reload_keeps_config, fx_teardown),
        cmocka_unit_test_teardown(test_add_and_remove_service, fx_teardown),
        cmocka_unit_test_teardown(test_inflight_survives_server_removal, fx_teardown),
        cmocka_unit_test_teardown(test_latch_survives_reload, fx_teardown),
        cmocka_unit_test_teardown(test_health_checks_across_reloads, fx_teardown),
        cmocka_unit_test_teardown(test_tcp_tunnel_survives_reload, fx_teardown),
        cmocka_unit_test_teardown(test_reload_reads_off_the_loop, fx_teardown),
    };

    return cmocka_run_group_tests_name("integration: configuration reload", tests, NULL, NULL);
}
