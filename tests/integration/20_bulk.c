/*
 * Bulk bytes through the real cutoverd, checked byte for byte: TCP mode
 * (relayed by splice) with a large echo in both directions at once and a
 * half-close at the end, several tunnels at a time; HTTP with large
 * responses (Content-Length and chunked, read on past 4 KiB and written
 * straight to the client), a large streamed request body echoed back, and
 * an upgraded tunnel carrying a large echo; and TCP tunnels beyond the
 * number whose pipes the descriptor limit allows, which relay through
 * buffers beside the spliced ones. The payloads are pseudo-random
 * so that a lost, doubled or reordered chunk cannot go unnoticed.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/integration/fixture.h"

#define BULK_BYTES  (8u << 20)         /* per echo */
#define BULK_WAIT_MS 30000             /* bound of one echo */

static struct fx *
start(void **state, bool tcp)
{
    assert_int_equal(fx_open(state, tcp, 1, NULL, 5), 0);
    return *state;
}

static unsigned char *
payload(size_t n, uint32_t seed)
{
    unsigned char *p = malloc(n);
    uint32_t x = seed | 1u;
    size_t i;

    assert_non_null(p);
    for (i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (unsigned char)(x >> 24);
    }
    return p;
}

/* The echo exchanges of <nfd> connections at once: sends <n> bytes of
 * <data> on each (then shuts its write side down when <shut>) while
 * reading the echo, until every connection got <n> bytes back (and, with
 * <shut>, its EOF). Every echo must equal <data>. */
static void
echo_all(int *fd, unsigned nfd, const unsigned char *data, size_t n, bool shut)
{
    size_t sent[16] = { 0 }, got[16] = { 0 };
    bool eof[16] = { false };
    unsigned char *back[16];
    struct pollfd pfd[16];
    long long deadline = h_now_ms() + BULK_WAIT_MS;
    unsigned i, done = 0;
    ssize_t k;

    assert_true(nfd <= 16);
    for (i = 0; i < nfd; i++) {
        back[i] = malloc(n);
        assert_non_null(back[i]);
        assert_int_equal(fcntl(fd[i], F_SETFL, fcntl(fd[i], F_GETFL) | O_NONBLOCK), 0);
    }
    while (done < nfd) {
        if (h_now_ms() >= deadline)
            fail_msg("echo not complete in %d ms", BULK_WAIT_MS);
        for (i = 0; i < nfd; i++) {
            pfd[i].fd = fd[i];
            pfd[i].events = (short)((got[i] < n || (shut && !eof[i]) ? POLLIN : 0) |
                                    (sent[i] < n ? POLLOUT : 0));
            pfd[i].revents = 0;
        }
        assert_true(poll(pfd, nfd, 1000) >= 0);
        for (i = 0; i < nfd; i++) {
            if (pfd[i].revents & POLLOUT) {
                size_t chunk = n - sent[i] < 100000 ? n - sent[i] : 100000;

                k = write(fd[i], data + sent[i], chunk);
                if (k > 0) {
                    sent[i] += (size_t)k;
                    if (sent[i] == n && shut)
                        assert_int_equal(shutdown(fd[i], SHUT_WR), 0);
                } else {
                    assert_true(k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
                }
            }
            if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR)) {
                unsigned char extra;

                if (got[i] < n)
                    k = read(fd[i], back[i] + got[i], n - got[i]);
                else
                    k = read(fd[i], &extra, 1);
                if (k > 0 && got[i] >= n)
                    fail_msg("connection %u: more bytes than were sent", i);
                if (k > 0) {
                    got[i] += (size_t)k;
                } else if (k == 0) {
                    if (got[i] < n)
                        fail_msg("connection %u: EOF after %zu of %zu bytes", i, got[i], n);
                    eof[i] = true;
                } else {
                    assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
                }
                if (got[i] == n && (!shut || eof[i]) && pfd[i].fd >= 0) {
                    if (memcmp(back[i], data, n) != 0)
                        fail_msg("connection %u: the echo differs from what was sent", i);
                    done++;
                    fd[i] = -fd[i] - 1;    /* poll() skips it from now on */
                }
            }
        }
    }
    for (i = 0; i < nfd; i++) {
        fd[i] = -fd[i] - 1;
        free(back[i]);
    }
}

static void
test_tcp_bulk_echo_and_half_close(void **state)
{
    struct fx *f = start(state, true);
    unsigned char *data = payload(BULK_BYTES, 1);
    char hello[8];
    int fd[4];
    unsigned i;

    for (i = 0; i < 4; i++) {
        fd[i] = h_connect(f->proxy_port);
        assert_true(fd[i] >= 0);
        assert_int_equal(h_recv_n(fd[i], hello, 7), 7);
        assert_memory_equal(hello, "legacy\n", 7);
    }
    echo_all(fd, 4, data, BULK_BYTES, true);
    for (i = 0; i < 4; i++)
        close(fd[i]);
    free(data);
}

static void
test_tcp_bulk_keeps_going_after_echo(void **state)
{
    struct fx *f = start(state, true);
    unsigned char *data = payload(1u << 20, 2);
    char hello[8];
    int fd;
    unsigned round;

    fd = h_connect(f->proxy_port);
    assert_true(fd >= 0);
    assert_int_equal(h_recv_n(fd, hello, 7), 7);
    /* the same tunnel carries one burst after the other (pipes emptied and
     * refilled), the last one ending with a half-close */
    for (round = 0; round < 5; round++)
        echo_all(&fd, 1, data, 1u << 20, round == 4);
    close(fd);
    free(data);
}

/* Pipes the process <pid> holds open. */
static int
count_pipes(pid_t pid)
{
    char dir[64], path[512], link[64];
    struct dirent *e;
    DIR *d;
    int n = 0;
    ssize_t k;

    snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
    d = opendir(dir);
    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        k = readlink(path, link, sizeof(link) - 1);
        if (k > 0) {
            link[k] = '\0';
            n += strncmp(link, "pipe:", 5) == 0;
        }
    }
    closedir(d);
    return n;
}

/* With RLIMIT_NOFILE 128 the clients' share is 96 descriptors (proxy/io.h)
 * and the daemon splices at most 96 / 8 = 12 tunnels at a time (four pipe
 * descriptors each); the rest relay through buffers. */
static void
test_tcp_splice_capped_by_fd_limit(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    unsigned char *data = payload(2u << 20, 5);
    struct rlimit rl, low;
    char hello[8];
    int fd[16], pipes;
    unsigned i;

    *state = f;
    assert_non_null(f);
    assert_int_equal(fx_init(f, true, 1, NULL), 0);
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    low = rl;
    low.rlim_cur = 128;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    i = (unsigned)fx_start_proxy(f, 5);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
    assert_int_equal(i, 0);
    for (i = 0; i < 16; i++) {
        fd[i] = h_connect(f->proxy_port);
        assert_true(fd[i] >= 0);
        assert_int_equal(h_recv_n(fd[i], hello, 7), 7);
        assert_memory_equal(hello, "legacy\n", 7);
    }
    /* the tunnels' pipes are what goes away with them: a pipe the daemon
     * holds for a moment at startup made a count taken then unreliable */
    pipes = count_pipes(f->proxy);
    echo_all(fd, 16, data, 2u << 20, true);
    for (i = 0; i < 16; i++)
        close(fd[i]);
    for (i = 0; i < 250 && count_pipes(f->proxy) != pipes - 12 * 4; i++)
        h_sleep_ms(20);
    assert_int_equal(pipes - count_pipes(f->proxy), 12 * 4);
    free(data);
}

/* The body of "GET <path>" through the proxy, which must be <n> bytes of
 * the backend's name repeated. */
static void
check_big_get(struct fx *f, size_t n)
{
    struct h_resp r;
    size_t i;

    memset(&r, 0, sizeof(r));
    assert_int_equal(h_get(f->proxy_port, "/big", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, n);
    for (i = 0; i < n; i++)
        if (r.body[i] != "legacy"[i % 6])
            fail_msg("byte %zu of the body is wrong", i);
    h_resp_free(&r);
}

static void
test_http_big_responses(void **state)
{
    struct fx *f = start(state, false);
    char q[64];

    snprintf(q, sizeof(q), "body_bytes=%u", BULK_BYTES + 12345u);
    assert_int_equal(h_backend_set(f->port[0][0], q), 0);
    check_big_get(f, BULK_BYTES + 12345u);
    snprintf(q, sizeof(q), "chunked=1&body_bytes=%u", BULK_BYTES + 777u);
    assert_int_equal(h_backend_set(f->port[0][0], q), 0);
    check_big_get(f, BULK_BYTES + 777u);
}

static void
test_http_big_request_body_echoed(void **state)
{
    struct fx *f = start(state, false);
    unsigned char *data = payload(BULK_BYTES, 3);
    char head[256];
    struct h_resp r;
    int fd = h_connect(f->proxy_port), n;

    assert_true(fd >= 0);
    n = snprintf(head, sizeof(head), "POST /echo HTTP/1.1\r\nHost: t\r\n"
                 "Content-Length: %u\r\n\r\n", BULK_BYTES);
    assert_int_equal(h_send_all(fd, head, (size_t)n), 0);
    assert_int_equal(h_send_all(fd, data, BULK_BYTES), 0);
    memset(&r, 0, sizeof(r));
    assert_int_equal(h_read_response(fd, &r), 0);
    assert_int_equal(r.status, 200);
    /* the echo is the head as the backend got it, then the body */
    assert_true(r.body_len > BULK_BYTES);
    if (memcmp(r.body + (r.body_len - BULK_BYTES), data, BULK_BYTES) != 0)
        fail_msg("the echoed request body differs from what was sent");
    h_resp_free(&r);
    close(fd);
    free(data);
}

static void
test_http_upgraded_tunnel_bulk(void **state)
{
    struct fx *f = start(state, false);
    unsigned char *data = payload(BULK_BYTES, 4);
    const char *req = "GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\n\r\n";
    struct h_resp r;
    int fd = h_connect(f->proxy_port);

    assert_true(fd >= 0);
    assert_int_equal(h_send_all(fd, req, strlen(req)), 0);
    memset(&r, 0, sizeof(r));
    assert_int_equal(h_read_response_head(fd, &r), 0);
    assert_int_equal(r.status, 101);
    h_resp_free(&r);
    echo_all(&fd, 1, data, BULK_BYTES, false);
    close(fd);
    free(data);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_tcp_bulk_echo_and_half_close, fx_teardown),
        cmocka_unit_test_teardown(test_tcp_bulk_keeps_going_after_echo, fx_teardown),
        cmocka_unit_test_teardown(test_tcp_splice_capped_by_fd_limit, fx_teardown),
        cmocka_unit_test_teardown(test_http_big_responses, fx_teardown),
        cmocka_unit_test_teardown(test_http_big_request_body_echoed, fx_teardown),
        cmocka_unit_test_teardown(test_http_upgraded_tunnel_bulk, fx_teardown),
    };

    return cmocka_run_group_tests_name("integration: bulk bytes intact", tests, NULL, NULL);
}
