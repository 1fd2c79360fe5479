/*
 * tests/unit/test_adm_conn.c: admin/conn.c, the admin connection lifecycle,
 * with a toy line protocol (echo, hold, big replies, close, trust) on a unix
 * socket in a temporary directory and a private event_base. The limits are
 * small (2 connections per pool, 4 at most, 2 requests per callback, 1 KiB
 * of output before reading pauses, timers of 100 to 1000 ms), so the timers
 * really run: each timing check allows a wide margin.
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
#include <sys/resource.h>
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
#define GRACE_MS   1000                /* the eviction tests run well within it */
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
    unsigned long long next_peer;      /* the peer key of the next connection */
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
 * "bigclose N" the same and closes, "close" answers "bye" and closes,
 * "trust" moves the connection to the trusted pool and answers "trusted",
 * any other line is echoed as "echo:<line>". After EOF an unterminated last
 * line counts. */
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
    } else if (strcmp(line, "trust") == 0) {
        adm_conn_trust(c);
        reply(c, "trusted");
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
    c->peer_key = fx_of(c)->next_peer;
    return 0;
}

static const struct adm_conn_ops toy_ops = {
    .name = "toy",
    .listener = "the toy socket",
    .size = sizeof(struct tconn),
    .in_max = 256,
    .out_high = 1024,
    .reqs_per_cb = 2,
    .pool = {
        [ADM_POOL_UNTRUSTED] = { .max_conns = 2, .hard_conns = 4, .req_ms = REQ_MS,
                                 .idle_ms = IDLE_MS },
        [ADM_POOL_TRUSTED] = { .max_conns = 2, .hard_conns = 4, .req_ms = REQ_MS,
                               .idle_ms = IDLE_MS },
    },
    .grace_ms = GRACE_MS,
    .flush_ms = FLUSH_MS,
    .accept = toy_accept,
    .step = toy_step,
    .expire = toy_expire,
};

/* The same without request or idle limits: only the flush limit can close
 * a connection (and an eviction: the eviction tests outlast REQ_MS). */
static const struct adm_conn_ops toy_ops_untimed = {
    .name = "toy",
    .listener = "the toy socket",
    .size = sizeof(struct tconn),
    .in_max = 256,
    .out_high = 1024,
    .reqs_per_cb = 2,
    .pool = {
        [ADM_POOL_UNTRUSTED] = { .max_conns = 2, .hard_conns = 4 },
        [ADM_POOL_TRUSTED] = { .max_conns = 2, .hard_conns = 4 },
    },
    .grace_ms = GRACE_MS,
    .flush_ms = FLUSH_MS,
    .accept = toy_accept,
    .step = toy_step,
    .expire = toy_expire,
};

/* ---- fixture ----------------------------------------------------------- */

static const struct adm_conn_ops *setup_ops = &toy_ops;

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
    adm_listener_init(&f->lis, f->base, setup_ops, f);
    assert_int_equal(adm_listener_listen_fd(&f->lis, fd), 0);
    *state = f;
    return 0;
}

static int
setup_untimed(void **state)
{
    int rc;

    setup_ops = &toy_ops_untimed;
    rc = setup(state);
    setup_ops = &toy_ops;
    return rc;
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

/* One turn of the loop (EVLOOP_NONBLOCK alone keeps turning while events
 * stay active: a spinning listener would never return). */
static void
spin(struct fx *f)
{
    assert_true(event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK) >= 0);
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

/* True once the server closed <c> (EOF or reset), reading and dropping
 * whatever came before; false while it is open. Never waits. */
static bool
is_closed(struct client *c)
{
    ssize_t k;

    while ((k = client_fill(c, true)) > 0)
        ;
    return k == 0;
}

/* Spins until <f> has accepted <n> connections in all. */
static void
wait_accepted(struct fx *f, unsigned n)
{
    long end = now_ms() + WAIT_MS;

    while (f->accepted < n && now_ms() < end)
        spin(f);
    assert_int_equal(f->accepted, n);
}

/* A full pool never refuses. Over the limit, a new connection evicts one
 * that had its grace and sent no complete request, and only such one:
 * while the others are new or useful the pool holds more. Over the hard
 * limit it evicts one of its own peer's first, then the least recently
 * used useful one, then the oldest new one. */
static void
test_full_pool_evicts(void **state)
{
    struct fx *f = *state;
    struct client *a, *b, *c, *d, *e, *g, *h, *i;
    long t0;

    f->next_peer = 1;
    a = client_new(f);
    client_send(a, "1\n");
    expect_line(f, a, "echo:1");       /* a is useful */
    f->next_peer = 2;
    b = client_new(f);                 /* b sends nothing */
    wait_accepted(f, 2);
    spin_ms(f, GRACE_MS + 50);
    t0 = now_ms();
    f->next_peer = 3;
    c = client_new(f);                 /* over the limit: b had its chance */
    wait_accepted(f, 3);
    expect_closed(f, b);
    assert_false(is_closed(a));
    assert_int_equal(f->lis.evicted, 1);
    f->next_peer = 4;
    d = client_new(f);                 /* c is new, a useful: nobody goes */
    wait_accepted(f, 4);
    f->next_peer = 5;
    e = client_new(f);
    wait_accepted(f, 5);
    assert_int_equal(f->lis.nconns, 4);
    assert_int_equal(f->lis.evicted, 1);
    f->next_peer = 6;
    g = client_new(f);                 /* over the hard limit: a, the useful one */
    wait_accepted(f, 6);
    expect_closed(f, a);
    f->next_peer = 7;
    h = client_new(f);                 /* then the oldest new one: c */
    wait_accepted(f, 7);
    expect_closed(f, c);
    i = client_new(f);                 /* h's peer again: h, its own */
    wait_accepted(f, 8);
    expect_closed(f, h);
    assert_true(now_ms() - t0 < GRACE_MS);     /* all that within c's grace */
    assert_int_equal(f->lis.nconns, 4);
    assert_int_equal(f->lis.evicted, 4);
    client_send(d, "2\n");
    expect_line(f, d, "echo:2");
    client_send(i, "3\n");
    expect_line(f, i, "echo:3");
    client_free(a);
    client_free(b);
    client_free(c);
    client_free(d);
    client_free(e);
    client_free(g);
    client_free(h);
    client_free(i);
}

/* Over the hard limit, a peer's new connection evicts that peer's own
 * oldest: a flood from one peer never evicts another's connection, new
 * (before it could send its request) or useful. */
static void
test_flood_evicts_its_own(void **state)
{
    struct fx *f = *state;
    struct client *fl[8], *op, *watch;
    int i;

    f->next_peer = 2;
    watch = client_new(f);             /* useful */
    client_send(watch, "status\n");
    expect_line(f, watch, "echo:status");
    f->next_peer = 1;
    for (i = 0; i < 2; i++) {
        fl[i] = client_new(f);
        wait_accepted(f, (unsigned)i + 2);
    }
    f->next_peer = 3;
    op = client_new(f);                /* the operator's: in its grace */
    wait_accepted(f, 4);
    f->next_peer = 1;
    for (i = 2; i < 8; i++) {
        fl[i] = client_new(f);
        wait_accepted(f, (unsigned)i + 3);
    }
    assert_int_equal(f->lis.nconns, 4);
    assert_int_equal(f->lis.evicted, 6);
    assert_false(is_closed(op));
    assert_false(is_closed(watch));
    for (i = 0; i < 6; i++)
        expect_closed(f, fl[i]);
    client_send(op, "rollback\n");
    expect_line(f, op, "echo:rollback");
    client_send(watch, "status\n");
    expect_line(f, watch, "echo:status");
    for (i = 0; i < 8; i++)
        client_free(fl[i]);
    client_free(op);
    client_free(watch);
}

/* Over the hard limit, a newcomer with no connection of its own evicts one
 * of the peer that holds the most (here a flood's), never a useful one of
 * another peer (`cutoverctl watch`). */
static void
test_largest_peer_pays(void **state)
{
    struct fx *f = *state;
    struct client *watch, *fl[3], *op[2];
    int i;

    f->next_peer = 2;
    watch = client_new(f);
    client_send(watch, "status\n");
    expect_line(f, watch, "echo:status");
    f->next_peer = 1;
    for (i = 0; i < 3; i++) {
        fl[i] = client_new(f);
        wait_accepted(f, (unsigned)i + 2);
    }
    for (i = 0; i < 2; i++) {
        f->next_peer = 3 + (unsigned)i;
        op[i] = client_new(f);
        wait_accepted(f, 5 + (unsigned)i);
        expect_closed(f, fl[i]);
    }
    assert_false(is_closed(watch));
    assert_false(is_closed(op[0]));
    assert_false(is_closed(fl[2]));
    client_send(watch, "status\n");
    expect_line(f, watch, "echo:status");
    client_send(op[0], "rollback\n");
    expect_line(f, op[0], "echo:rollback");
    client_free(watch);
    for (i = 0; i < 3; i++)
        client_free(fl[i]);
    client_free(op[0]);
    client_free(op[1]);
}

/* A connection chosen for eviction whose complete request arrived but was
 * not read yet (its read event did not run) gets a last read: the request
 * is handled and the connection stays. */
static void
test_last_chance(void **state)
{
    struct fx *f = *state;
    struct client *a = client_new(f), *b = client_new(f), *c;
    struct adm_conn *ca;

    wait_accepted(f, 2);
    ca = first_conn(f);                /* a's */
    spin_ms(f, GRACE_MS + 50);
    bufferevent_disable(ca->bev, EV_READ);     /* as if its turn had not come */
    client_send(a, "late\n");
    c = client_new(f);                 /* a is the oldest silent one: last read */
    wait_accepted(f, 3);
    expect_line(f, a, "echo:late");
    expect_closed(f, b);               /* b, silent, went instead */
    assert_int_equal(f->lis.evicted, 1);
    assert_int_equal(f->steps, 1);
    client_free(a);
    client_free(b);
    client_free(c);
}

/* Trusted connections have places of their own: untrusted newcomers never
 * evict them; a connection made trusted over that pool's hard limit
 * evicts the least recently used trusted one, never itself. */
static void
test_trusted_pool(void **state)
{
    struct fx *f = *state;
    struct client *t[5], *u[6];
    struct adm_conn_stats st;
    int i;

    for (i = 0; i < 4; i++) {
        t[i] = client_new(f);
        client_send(t[i], "trust\n");
        expect_line(f, t[i], "trusted");
    }
    for (i = 0; i < 6; i++) {
        u[i] = client_new(f);
        wait_accepted(f, 5 + (unsigned)i);
    }
    assert_int_equal(f->lis.npool[ADM_POOL_TRUSTED], 4);
    assert_int_equal(f->lis.npool[ADM_POOL_UNTRUSTED], 4);
    for (i = 0; i < 4; i++)
        assert_false(is_closed(t[i]));
    expect_closed(f, u[0]);            /* the oldest new untrusted ones went */
    expect_closed(f, u[1]);

    /* a fifth trusted one: t[0], the least recently used, makes room */
    client_send(t[1], "x\n");
    expect_line(f, t[1], "echo:x");
    t[4] = client_new(f);
    client_send(t[4], "trust\n");
    expect_line(f, t[4], "trusted");
    expect_closed(f, t[0]);
    for (i = 1; i < 5; i++)
        assert_false(is_closed(t[i]));
    assert_int_equal(f->lis.npool[ADM_POOL_TRUSTED], 4);
    adm_listener_stats(&f->lis, &st);
    assert_int_equal(st.open, 7);      /* t1..t4, u3..u5 */
    assert_int_equal(st.evicted, 4);   /* u0, u1, u2 (for t[4]) and t0 */
    for (i = 0; i < 5; i++)
        client_free(t[i]);
    for (i = 0; i < 6; i++)
        client_free(u[i]);
}

/* A request that came with the connection is handled in the accept's own
 * callback, before any later accept could evict it. */
static void
test_request_handled_at_accept(void **state)
{
    struct fx *f = *state;
    struct client *c = client_new(f);

    client_send(c, "now\n");          /* before the loop ever ran */
    while (f->accepted == 0)
        assert_true(event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK) >= 0);
    assert_int_equal(f->steps, 1);
    expect_line(f, c, "echo:now");
    client_free(c);
}

/* At most 4 accepts per loop turn: connections already accepted are read
 * before more come (under a storm of connections, a request that came
 * with its connection is not pushed out by those after it). */
static void
test_accepts_bounded_per_turn(void **state)
{
    struct fx *f = *state;
    struct client *c[10];
    int i;

    for (i = 0; i < 10; i++)
        c[i] = client_new(f);          /* all in the backlog */
    assert_true(event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK) >= 0);
    assert_int_equal(f->accepted, 4);
    wait_accepted(f, 10);
    for (i = 0; i < 10; i++)
        client_free(c[i]);
}

/* An open connection whose peer reads none of its replies is dropped once
 * its output made no progress for flush_ms (no idle limit here: nothing
 * else would ever close it). */
static void
test_unread_output_dropped(void **state)
{
    struct fx *f = *state;
    struct client *c = client_new(f);
    long t0 = now_ms();

    client_send(c, "big 4000000\n");
    while ((f->steps == 0 || f->lis.nconns > 0) && now_ms() < t0 + WAIT_MS)
        spin(f);
    assert_int_equal(f->steps, 1);
    assert_int_equal(f->lis.nconns, 0);
    assert_true(now_ms() - t0 >= FLUSH_MS - 20);
    assert_int_equal(f->lis.timed_out, 1);
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

/* Out of descriptors, the accept fails: accepting pauses (250 ms) instead
 * of failing again at every loop turn, and the connection waiting is
 * accepted and served once descriptors are free again. */
static void
test_accept_shortage_pauses(void **state)
{
    struct fx *f = *state;
    struct rlimit old, low;
    struct client *c;
    unsigned long errors;
    unsigned accepted;
    int fds[64], n = 0, i;

    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    c = client_new(f);                 /* waits in the backlog */
    low = old;
    low.rlim_cur = (rlim_t)(dup(0) + 1);       /* the next descriptor is the last */
    close((int)low.rlim_cur - 1);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    while (n < 64 && (fds[n] = dup(0)) >= 0)
        n++;                           /* every descriptor taken */
    spin_ms(f, 300);
    errors = f->lis.accept_errors;
    accepted = f->accepted;
    for (i = 0; i < n; i++)            /* before any assertion can end the test */
        close(fds[i]);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
    assert_true(errors >= 1);
    assert_true(errors <= 3);          /* paused, not failing at every turn */
    assert_int_equal(accepted, 0);
    client_send(c, "back\n");
    expect_line(f, c, "echo:back");
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
        cmocka_unit_test_setup_teardown(test_full_pool_evicts, setup_untimed, teardown),
        cmocka_unit_test_setup_teardown(test_flood_evicts_its_own, setup_untimed, teardown),
        cmocka_unit_test_setup_teardown(test_largest_peer_pays, setup_untimed, teardown),
        cmocka_unit_test_setup_teardown(test_last_chance, setup_untimed, teardown),
        cmocka_unit_test_setup_teardown(test_trusted_pool, setup_untimed, teardown),
        cmocka_unit_test_setup_teardown(test_request_handled_at_accept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_accepts_bounded_per_turn, setup_untimed,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_unread_output_dropped, setup_untimed, teardown),
        cmocka_unit_test_setup_teardown(test_request_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hold, setup, teardown),
        cmocka_unit_test_setup_teardown(test_half_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pause_and_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flush_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_accept_shortage_pauses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_frees_all, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
