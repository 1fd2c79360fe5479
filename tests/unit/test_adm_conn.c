/*
 * tests/unit/test_adm_conn.c: admin/conn.c, the admin connection lifecycle,
 * with a toy line protocol (echo, hold, big replies, close) on a unix socket
 * in a temporary directory and a private event_base. The limits are small
 * (2 connections, 2 requests per callback, 1 KiB of output before reading
 * pauses, timers of 100 to 250 ms), so the timers really run: each timing
 * check allows a wide margin.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "admin/conn.h"

#define HOLD_MS    100
#define REQ_MS     150
#define IDLE_MS    250
#define FLUSH_MS   150
#define WAIT_MS    5000                /* a step that should happen at once */

struct tconn {
    struct adm_conn conn;
    unsigned id;
};

struct fx {
    char dir[64];
    char path[100];
    struct event_base *base;
    struct adm_listener lis;
    unsigned accepted;                 /* connections accepted */
    unsigned steps;                    /* requests handled */
    unsigned expired_open, expired_held;
};

struct client {
    int fd;
    char buf[4096];
    size_t len;
};

/* ---- the toy protocol -------------------------------------------------- */

static struct fx *
fx_of(struct adm_conn *c)
{
    return c->lis->owner;
}

static void
reply(struct adm_conn *c, const char *text)
{
    evbuffer_add_printf(bufferevent_get_output(c->bev), "%s\n", text);
}

/* Lines: "hold" holds for HOLD_MS, "big N" answers N bytes of 'x',
 * "bigclose N" the same and closes, "close" answers "bye" and closes, any
 * other line is echoed as "echo:<line>". After EOF an unterminated last line
 * counts. */
static bool
toy_step(struct adm_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t len = evbuffer_get_length(in), eol_len = 0;
    struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_LF);
    char line[128], msg[160];
    unsigned long n;

    if (eol.pos < 0 && !c->is_eof)
        return false;
    if (eol.pos >= 0)
        len = (size_t)eol.pos;
    assert_true(len < sizeof(line));
    evbuffer_remove(in, line, len);
    line[len] = '\0';
    evbuffer_drain(in, eol_len);
    fx_of(c)->steps++;
    if (strcmp(line, "hold") == 0) {
        adm_conn_hold(c, HOLD_MS);
    } else if (strcmp(line, "close") == 0) {
        reply(c, "bye");
        adm_conn_close(c);
    } else if (sscanf(line, "big %lu", &n) == 1 || sscanf(line, "bigclose %lu", &n) == 1) {
        char *x = malloc(n + 1);

        assert_non_null(x);
        memset(x, 'x', n);
        x[n] = '\n';
        evbuffer_add(bufferevent_get_output(c->bev), x, n + 1);
        free(x);
        if (line[3] == 'c')
            adm_conn_close(c);
    } else {
        snprintf(msg, sizeof(msg), "echo:%s", line);
        reply(c, msg);
    }
    return true;
}

static void
toy_expire(struct adm_conn *c)
{
    if (c->state == ADM_CONN_HELD) {
        fx_of(c)->expired_held++;
        reply(c, "held");
    } else {
        fx_of(c)->expired_open++;
        reply(c, "timeout");
    }
    adm_conn_close(c);
}

static int
toy_accept(struct adm_conn *c, evutil_socket_t fd, const struct sockaddr *sa, int salen)
{
    struct tconn *t = (struct tconn *)c;

    t->id = ++fx_of(c)->accepted;
    snprintf(c->peer, sizeof(c->peer), "toy%u", t->id);
    return 0;
}

static const struct adm_conn_ops toy_ops = {
    .name = "toy",
    .listener = "the toy socket",
    .size = sizeof(struct tconn),
    .max_conns = 2,
    .in_max = 256,
    .out_high = 1024,
    .reqs_per_cb = 2,
    .req_ms = REQ_MS,
    .idle_ms = IDLE_MS,
    .flush_ms = FLUSH_MS,
    .accept = toy_accept,
    .step = toy_step,
    .expire = toy_expire,
};

/* ---- fixture ----------------------------------------------------------- */

static int
setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    struct sockaddr_un a;
    int fd;

    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/test_adm_conn.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/toy.sock", f->dir);
    f->base = event_base_new();
    assert_non_null(f->base);
    memset(&a, 0, sizeof(a));
    a.sun_family = AF_UNIX;
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", f->path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    adm_listener_init(&f->lis, f->base, &toy_ops, f);
    assert_int_equal(adm_listener_listen_fd(&f->lis, fd), 0);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fx *f = *state;

    adm_listener_close(&f->lis);
    event_base_free(f->base);
    unlink(f->path);
    rmdir(f->dir);
    free(f);
    return 0;
}

static long
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
spin(struct fx *f)
{
    assert_true(event_base_loop(f->base, EVLOOP_NONBLOCK) >= 0);
    usleep(500);
}

static void
spin_ms(struct fx *f, long ms)
{
    long end = now_ms() + ms;

    while (now_ms() < end)
        spin(f);
}

static struct client *
client_new(struct fx *f)
{
    struct client *c = calloc(1, sizeof(*c));
    struct sockaddr_un a;

    assert_non_null(c);
    memset(&a, 0, sizeof(a));
    a.sun_family = AF_UNIX;
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", f->path);
    c->fd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(c->fd >= 0);
    assert_int_equal(connect(c->fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(fcntl(c->fd, F_SETFL, O_NONBLOCK), 0);
    return c;
}

static void
client_free(struct client *c)
{
    close(c->fd);
    free(c);
}

static void
client_send(struct client *c, const char *text)
{
    size_t len = strlen(text);

    assert_int_equal(send(c->fd, text, len, MSG_NOSIGNAL), (ssize_t)len);
}

/* Reads what is there: bytes read, 0 on EOF or reset, -1 when nothing is
 * ready. With <discard> the bytes are counted, not kept. */
static ssize_t
client_fill(struct client *c, bool discard)
{
    char tmp[65536];
    ssize_t k;

    if (discard)
        k = recv(c->fd, tmp, sizeof(tmp), 0);
    else
        k = recv(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len, 0);
    if (k > 0) {
        if (!discard)
            c->len += (size_t)k;
        return k;
    }
    if (k == 0 || errno == ECONNRESET)
        return 0;
    assert_true(errno == EAGAIN || errno == EINTR);
    return -1;
}

/* The next line (without its LF) into <out>, false when the server closed
 * first. Fails after WAIT_MS. */
static bool
client_line(struct fx *f, struct client *c, char *out, size_t outlen)
{
    long end = now_ms() + WAIT_MS;

    while (now_ms() < end) {
        char *nl = memchr(c->buf, '\n', c->len);

        if (nl != NULL) {
            size_t n = (size_t)(nl - c->buf);

            assert_true(n < outlen);
            memcpy(out, c->buf, n);
            out[n] = '\0';
            c->len -= n + 1;
            memmove(c->buf, nl + 1, c->len);
            return true;
        }
        if (client_fill(c, false) == 0)
            return false;
        spin(f);
    }
    fail_msg("no line within %d ms", WAIT_MS);
    return false;
}

static void
expect_line(struct fx *f, struct client *c, const char *want)
{
    char line[256];

    if (!client_line(f, c, line, sizeof(line)))
        fail_msg("closed, expected \"%s\"", want);
    assert_string_equal(line, want);
}

/* Expects the server to close without sending more. Returns the ms waited. */
static long
expect_closed(struct fx *f, struct client *c)
{
    long start = now_ms();

    while (now_ms() < start + WAIT_MS) {
        if (client_fill(c, false) == 0) {
            assert_int_equal(c->len, 0);
            return now_ms() - start;
        }
        spin(f);
    }
    fail_msg("not closed within %d ms", WAIT_MS);
    return 0;
}

static struct adm_conn *
first_conn(struct fx *f)
{
    assert_false(list_empty(&f->lis.conns));
    return list_entry(f->lis.conns.next, struct adm_conn, node);
}

/* ---- tests ------------------------------------------------------------- */

/* Pipelined requests are answered in order, two per callback, the rest on
 * the next loop turns. */
static void
test_pipelined_in_order(void **state)
{
    struct fx *f = *state;
    struct client *c = client_new(f);

    client_send(c, "a\nb\nc\nd\ne\n");
    expect_line(f, c, "echo:a");
    expect_line(f, c, "echo:b");
    expect_line(f, c, "echo:c");
    expect_line(f, c, "echo:d");
    expect_line(f, c, "echo:e");
    assert_int_equal(f->steps, 5);
    assert_int_equal(f->lis.nconns, 1);
    client_send(c, "close\n");
    expect_line(f, c, "bye");
    expect_closed(f, c);
    assert_int_equal(f->lis.nconns, 0);
    client_free(c);
}

/* Over max_conns a connection is closed at once; once one goes, another
 * is served. */
static void
test_connection_limit(void **state)
{
    struct fx *f = *state;
    struct client *a = client_new(f), *b = client_new(f), *c;

    client_send(a, "1\n");
    expect_line(f, a, "echo:1");
    client_send(b, "2\n");
    expect_line(f, b, "echo:2");
    c = client_new(f);
    expect_closed(f, c);
    client_free(c);
    assert_int_equal(f->lis.nconns, 2);
    assert_int_equal(f->lis.refused, 1);
    client_free(a);
    while (f->lis.nconns > 1)
        spin(f);
    c = client_new(f);
    client_send(c, "3\n");
    expect_line(f, c, "echo:3");
    assert_int_equal(f->accepted, 3);
    client_free(b);
    client_free(c);
}

/* A request not complete within req_ms: the protocol answers and closes. */
static void
test_request_deadline(void **state)
{
    struct fx *f = *state;
    struct client *c = client_new(f);
    long t0 = now_ms();

    client_send(c, "abc");
    expect_line(f, c, "timeout");
    assert_true(now_ms() - t0 >= REQ_MS - 20);
    expect_closed(f, c);
    assert_int_equal(f->expired_open, 1);
    assert_int_equal(f->steps, 0);
    client_free(c);
}

/* Between requests the idle limit runs: closed without a word; a request's
 * first byte starts its own deadline. */
static void
test_idle_close(void **state)
{
    struct fx *f = *state;
    struct client *c = client_new(f);
    long t0;

    client_send(c, "a\n");
    expect_line(f, c, "echo:a");
    t0 = now_ms();
    spin_ms(f, IDLE_MS / 2);
    client_send(c, "b");               /* a request begins: REQ_MS from here */
    expect_line(f, c, "timeout");
    assert_true(now_ms() - t0 >= IDLE_MS / 2 + REQ_MS - 20);
    expect_closed(f, c);
    client_free(c);

    c = client_new(f);
    client_send(c, "a\n");
    expect_line(f, c, "echo:a");
    t0 = now_ms();
    expect_closed(f, c);
    assert_true(now_ms() - t0 >= IDLE_MS - 20);
    assert_int_equal(f->expired_open, 1);
    assert_int_equal(f->lis.nconns, 0);
    client_free(c);
}

/* A held connection reads nothing until its timer; then the protocol
 * answers and closes, and what came meanwhile is never handled. */
static void
test_hold(void **state)
{
    struct fx *f = *state;
    struct client *c = client_new(f);
    long t0 = now_ms();

    client_send(c, "hold\nx\n");
    expect_line(f, c, "held");
    assert_true(now_ms() - t0 >= HOLD_MS - 20);
    expect_closed(f, c);
    assert_int_equal(f->steps, 1);
    assert_int_equal(f->expired_held, 1);
    client_free(c);
}

/* A half-close still gets its answers, the unterminated last line too. */
static void
test_half_close(void **state)
{
    struct fx *f = *state;
    struct client *c = client_new(f);

    client_send(c, "a\nb");
    assert_int_equal(shutdown(c->fd, SHUT_WR), 0);
    expect_line(f, c, "echo:a");
    expect_line(f, c, "echo:b");
    expect_closed(f, c);
    assert_int_equal(f->lis.nconns, 0);
    client_free(c);
}

/* A client that does not read its replies stops being read once out_high
 * bytes are queued, and is read again once they are sent. */
static void
test_pause_and_resume(void **state)
{
    struct fx *f = *state;
    struct client *c = client_new(f);
    size_t got = 0, want = 6 * 100001;
    long end;

    client_send(c, "big 100000\nbig 100000\nbig 100000\nbig 100000\nbig 100000\n"
                   "big 100000\n");
    spin_ms(f, 100);
    assert_true(first_conn(f)->is_paused);
    assert_true(f->steps < 6);
    for (end = now_ms() + WAIT_MS; got < want && now_ms() < end; spin(f)) {
        ssize_t k = client_fill(c, true);

        assert_int_not_equal(k, 0);
        if (k > 0)
            got += (size_t)k;
    }
    assert_int_equal(got, want);
    assert_int_equal(f->steps, 6);
    assert_false(first_conn(f)->is_paused);
    client_send(c, "a\n");
    expect_line(f, c, "echo:a");
    client_free(c);
}

/* A closing connection whose peer does not read is dropped after flush_ms. */
static void
test_flush_limit(void **state)
{
    struct fx *f = *state;
    struct client *c = client_new(f);
    long t0 = now_ms();

    client_send(c, "bigclose 4000000\n");
    while ((f->steps == 0 || f->lis.nconns > 0) && now_ms() < t0 + WAIT_MS)
        spin(f);
    assert_int_equal(f->steps, 1);
    assert_int_equal(f->lis.nconns, 0);
    assert_true(now_ms() - t0 >= FLUSH_MS - 20);
    client_free(c);
}

/* adm_listener_close() frees every connection, whatever its state. */
static void
test_close_frees_all(void **state)
{
    struct fx *f = *state;
    struct client *a = client_new(f), *b = client_new(f);

    client_send(a, "partial");
    client_send(b, "hold\n");
    while (f->accepted < 2 || f->steps < 1)
        spin(f);
    assert_int_equal(f->lis.nconns, 2);
    adm_listener_close(&f->lis);
    assert_int_equal(f->lis.nconns, 0);
    assert_true(list_empty(&f->lis.conns));
    expect_closed(f, a);
    expect_closed(f, b);
    client_free(a);
    client_free(b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pipelined_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hold, setup, teardown),
        cmocka_unit_test_setup_teardown(test_half_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pause_and_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flush_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_frees_all, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
