/*
 * Graceful stop: SIGTERM stops accepting at once, closes idle keep-alive
 * client connections, lets a request in flight finish (answered with
 * "Connection: close") and exits 0; a request still running when
 * shutdown_grace_ms (2 s in the fixture) is over is cut and the daemon
 * still exits 0. The service manager is told: READY=1 once the daemon
 * serves, RELOADING=1 then READY=1 around a reload (also one that fails),
 * STOPPING=1 when it starts to drain ($NOTIFY_SOCKET, read here from a
 * datagram socket the test binds).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/integration/fixture.h"

#define LEGACY_PORT(f) ((f)->port[0][0])

struct drain_fx {
    struct fx f;
    int notify_fd;               /* bound datagram socket, $NOTIFY_SOCKET */
    char notify_path[600];
};

static int
teardown(void **state)
{
    struct drain_fx *d = *state;

    if (d != NULL && d->notify_fd >= 0)
        close(d->notify_fd);
    unsetenv("NOTIFY_SOCKET");
    return fx_teardown(state);
}

/* Waits up to <ms> for a notification datagram containing <needle>;
 * earlier datagrams that do not contain it are skipped. 0 or -1. */
static int
wait_notify(struct drain_fx *d, const char *needle, int ms)
{
    long long deadline = h_now_ms() + ms;
    char buf[1024];

    for (;;) {
        struct pollfd p = { .fd = d->notify_fd, .events = POLLIN };
        long long left = deadline - h_now_ms();
        ssize_t n;

        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            return -1;
        n = recv(d->notify_fd, buf, sizeof(buf) - 1, 0);
        if (n < 0)
            return -1;
        buf[n] = '\0';
        if (strstr(buf, needle) != NULL)
            return 0;
    }
}

static struct drain_fx *
start(void **state)
{
    struct drain_fx *d = calloc(1, sizeof(*d));
    struct sockaddr_un sun;

    *state = d;
    d->notify_fd = -1;
    assert_int_equal(fx_init(&d->f, false, 1, NULL), 0);
    snprintf(d->notify_path, sizeof(d->notify_path), "%s/notify", d->f.dir);
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    assert_true(strlen(d->notify_path) < sizeof(sun.sun_path));
    strcpy(sun.sun_path, d->notify_path);
    d->notify_fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    assert_true(d->notify_fd >= 0);
    assert_int_equal(bind(d->notify_fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    setenv("NOTIFY_SOCKET", d->notify_path, 1);
    assert_int_equal(fx_start_proxy(&d->f, 7), 0);
    assert_int_equal(wait_notify(d, "READY=1", 5000), 0);
    return d;
}

/* Sends GET <path> on <fd> without reading the answer. */
static void
send_get(int fd, const char *path)
{
    char req[256];

    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: test\r\n\r\n", path);
    assert_int_equal(h_send_all(fd, req, strlen(req)), 0);
}

/* True once a connect to <port> is refused, within <ms>. */
static bool
refused_within(int port, int ms)
{
    long long deadline = h_now_ms() + ms;

    while (h_now_ms() < deadline) {
        int fd = h_connect(port);

        if (fd < 0)
            return true;
        close(fd);
        h_sleep_ms(20);
    }
    return false;
}

static void
test_sigterm_drains_in_flight(void **state)
{
    struct drain_fx *d = start(state);
    struct fx *f = &d->f;
    struct h_resp r;
    char hv[64];
    int idle, slow;

    memset(&r, 0, sizeof(r));
    /* an idle keep-alive client: one answered request, then nothing */
    idle = h_connect(f->proxy_port);
    assert_true(idle >= 0);
    send_get(idle, "/first");
    assert_int_equal(h_read_response(idle, &r), 0);
    assert_int_equal(r.status, 200);
    assert_false(r.closed);
    h_resp_free(&r);

    /* a slow request in flight when the signal comes */
    assert_int_equal(h_backend_set(LEGACY_PORT(f), "delay_ms=1500"), 0);
    slow = h_connect(f->proxy_port);
    assert_true(slow >= 0);
    send_get(slow, "/slow");
    h_sleep_ms(300);
    assert_int_equal(kill(f->proxy, SIGTERM), 0);

    assert_true(refused_within(f->proxy_port, 1000));       /* stops accepting */
    assert_true(h_peer_closed(idle, 1000));                  /* idle one closed */
    assert_int_equal(wait_notify(d, "STOPPING=1", 2000), 0);
    assert_int_equal(kill(f->proxy, SIGTERM), 0);            /* a repeat changes nothing */

    assert_int_equal(h_set_timeout_ms(slow, 5000), 0);
    assert_int_equal(h_read_response(slow, &r), 0);         /* finishes */
    assert_int_equal(r.status, 200);
    assert_non_null(h_resp_header(&r, "Connection", hv, sizeof(hv)));
    assert_string_equal(hv, "close");
    h_resp_free(&r);
    close(slow);
    close(idle);

    assert_int_equal(h_wait_exit(f->proxy, 5000), 0);      /* exits 0 by itself once drained */
    assert_int_equal(h_wait_log(f->log, "draining", 100), 0);
}

static void
test_grace_over_cuts_and_exits_0(void **state)
{
    struct drain_fx *d = start(state);
    struct fx *f = &d->f;
    struct h_resp r;
    int slow;

    memset(&r, 0, sizeof(r));
    assert_int_equal(h_backend_set(LEGACY_PORT(f), "delay_ms=8000"), 0);
    slow = h_connect(f->proxy_port);
    assert_true(slow >= 0);
    send_get(slow, "/very-slow");
    h_sleep_ms(300);
    assert_int_equal(kill(f->proxy, SIGTERM), 0);
    h_sleep_ms(1000);
    assert_true(h_alive(f->proxy, NULL));                    /* waits for it */
    /* shutdown_grace_ms is 2000: gone well before the backend answers */
    assert_int_equal(h_wait_exit(f->proxy, 5000), 0);
    assert_int_equal(h_wait_log(f->log, "shutdown grace over", 100), 0);
    /* the client gets no answer, only the close */
    assert_int_equal(h_set_timeout_ms(slow, 2000), 0);
    assert_int_equal(h_read_response(slow, &r), -1);
    h_resp_free(&r);
    close(slow);
}

static void
test_reload_notifies(void **state)
{
    struct drain_fx *d = start(state);
    struct fx *f = &d->f;

    assert_int_equal(kill(f->proxy, SIGHUP), 0);
    assert_int_equal(wait_notify(d, "RELOADING=1", 5000), 0);
    assert_int_equal(wait_notify(d, "READY=1", 5000), 0);
    /* a broken file: the reload fails, the manager still hears READY */
    assert_int_equal(h_write_file(f->conf, "{ \"services\": [ }\n"), 0);
    assert_int_equal(kill(f->proxy, SIGHUP), 0);
    assert_int_equal(wait_notify(d, "RELOADING=1", 5000), 0);
    assert_int_equal(wait_notify(d, "READY=1", 5000), 0);
    assert_int_equal(h_wait_log(f->log, "failed", 2000), 0);
    assert_int_equal(kill(f->proxy, SIGTERM), 0);
    assert_int_equal(wait_notify(d, "STOPPING=1", 5000), 0);
    assert_int_equal(h_wait_exit(f->proxy, 5000), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_sigterm_drains_in_flight, teardown),
        cmocka_unit_test_teardown(test_grace_over_cuts_and_exits_0, teardown),
        cmocka_unit_test_teardown(test_reload_notifies, teardown),
    };

    return cmocka_run_group_tests_name("integration: graceful stop", tests, NULL, NULL);
}
