/*
 * Timeouts and connection-level HTTP behaviour through the real cutoverd,
 * with short timeouts in the config: the client head timeout (408, counted
 * from the first byte, so a slowloris client trickling bytes still gets it),
 * silent close of an idle keep-alive connection, the connect timeout (504)
 * against a listener whose accept queue is full, the server response head
 * timeout (504; it runs from the end of the request, so a slow streamed
 * upload is not cut), the server idle timeout mid-body (a raw server that stalls
 * after part of its body), Expect: 100-continue, and HTTP/1.0 clients
 * (never chunked, HEAD without body, 204/304, no interim responses).
 *
 * Every wait is bounded, and timings are asserted loosely: an event due
 * after T ms must come after 0.8 T (it is not premature: the right timer
 * fired) and before 5 T (it came at all), so that a loaded 2-core machine
 * or an ASan build does not make the test flaky.
 *
 * A raw TCP server (a thread of this test) stands in for a backend where
 * the test backend cannot misbehave precisely enough: it answers each
 * request head it reads with the next canned answer, byte for byte, and
 * never closes first.
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <cmocka.h>

#include "tests/integration/fixture.h"

#define CLIENT_HEAD_MS     500
#define CLIENT_IDLE_MS     1000
#define CONNECT_MS         400
#define SERVER_RESPONSE_MS 400
#define SERVER_IDLE_MS     800
#define BODY_LIMIT         1000

#define STR_(x) #x
#define STR(x) STR_(x)
#define CONF_EXTRA \
    ",\"timeouts\":{\"client_head_ms\":" STR(CLIENT_HEAD_MS) \
    ",\"client_idle_ms\":" STR(CLIENT_IDLE_MS) ",\"connect_ms\":" STR(CONNECT_MS) \
    ",\"server_response_ms\":" STR(SERVER_RESPONSE_MS) \
    ",\"server_idle_ms\":" STR(SERVER_IDLE_MS) "}" \
    ",\"limits\":{\"body_bytes\":" STR(BODY_LIMIT) "}"

/* Loose timing bounds around a timeout of <ms>. */
#define assert_took(elapsed, ms) do {                                          \
        long long e_ = (elapsed);                                              \
        if (e_ < (long long)(ms) * 8 / 10 || e_ > (long long)(ms) * 5)         \
            fail_msg("took %lld ms, expected about %d ms", e_, (int)(ms));     \
    } while (0)

/* ---- a raw TCP server in a thread ------------------------------------ */

#define RAW_MAX_CONNS 8

struct raw_srv {
    int lfd;
    int port;
    int stop[2];                     /* pipe: a byte stops the thread */
    pthread_t th;
    const char *const *answers;      /* canned answers, NUL-terminated text */
    size_t nanswers;                 /* the last one repeats */
    atomic_int heads;                /* request heads read */
    int trickle_ms;                  /* > 0: answers go out a byte per trickle_ms */
};

static void
raw_answer(struct raw_srv *s, int fd)
{
    int i = atomic_fetch_add(&s->heads, 1);
    const char *a = s->answers[(size_t)i < s->nanswers ? (size_t)i : s->nanswers - 1];
    size_t len = strlen(a), off = 0;

    while (off < len) {
        ssize_t n = send(fd, a + off, s->trickle_ms > 0 ? 1 : len - off, MSG_NOSIGNAL);

        if (n <= 0)
            return;                  /* the proxy closed: stop trickling */
        off += (size_t)n;
        if (s->trickle_ms > 0)
            h_sleep_ms(s->trickle_ms);
    }
}

static void *
raw_main(void *arg)
{
    struct raw_srv *s = arg;
    struct pollfd pf[2 + RAW_MAX_CONNS];
    char buf[RAW_MAX_CONNS][8192];
    size_t used[RAW_MAX_CONNS];
    int conn[RAW_MAX_CONNS], nconn = 0, i;

    for (;;) {
        pf[0].fd = s->stop[0];
        pf[0].events = POLLIN;
        pf[1].fd = s->lfd;
        pf[1].events = POLLIN;
        for (i = 0; i < nconn; i++) {
            pf[2 + i].fd = conn[i];
            pf[2 + i].events = POLLIN;
        }
        if (poll(pf, (nfds_t)(2 + nconn), -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (pf[0].revents != 0)
            break;
        for (i = nconn - 1; i >= 0; i--) {
            ssize_t n;
            char *end;

            if (!(pf[2 + i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            n = recv(conn[i], buf[i] + used[i], sizeof(buf[i]) - 1 - used[i], 0);
            if (n <= 0) {
                close(conn[i]);
                if (i != nconn - 1) {
                    conn[i] = conn[nconn - 1];
                    used[i] = used[nconn - 1];
                    memcpy(buf[i], buf[nconn - 1], used[i] + 1);
                }
                nconn--;
                continue;
            }
            used[i] += (size_t)n;
            buf[i][used[i]] = '\0';
            /* request heads only: the tests send no request bodies here */
            while ((end = strstr(buf[i], "\r\n\r\n")) != NULL) {
                size_t hl = (size_t)(end + 4 - buf[i]);

                raw_answer(s, conn[i]);
                memmove(buf[i], buf[i] + hl, used[i] - hl + 1);
                used[i] -= hl;
            }
        }
        /* after the connections: pf[] describes only those polled */
        if (pf[1].revents & POLLIN) {
            int fd = accept(s->lfd, NULL, NULL);

            if (fd >= 0 && nconn == RAW_MAX_CONNS) {
                close(fd);                       /* more than the tests need */
            } else if (fd >= 0) {
                used[nconn] = 0;
                conn[nconn++] = fd;
            }
        }
    }
    for (i = 0; i < nconn; i++)
        close(conn[i]);
    return NULL;
}

static struct raw_srv *
raw_start(const char *const *answers, size_t nanswers)
{
    struct raw_srv *s = calloc(1, sizeof(*s));
    struct sockaddr_in sin = { .sin_family = AF_INET };
    socklen_t sl = sizeof(sin);
    int one = 1;

    assert_non_null(s);
    s->answers = answers;
    s->nanswers = nanswers;
    atomic_init(&s->heads, 0);
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(s->lfd >= 0);
    setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(s->lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(s->lfd, 16), 0);
    assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&sin, &sl), 0);
    s->port = ntohs(sin.sin_port);
    assert_int_equal(pipe(s->stop), 0);
    assert_int_equal(pthread_create(&s->th, NULL, raw_main, s), 0);
    return s;
}

static void
raw_stop(struct raw_srv *s)
{
    if (s == NULL)
        return;
    if (write(s->stop[1], "x", 1) != 1)
        perror("raw_stop");
    pthread_join(s->th, NULL);
    close(s->stop[0]);
    close(s->stop[1]);
    close(s->lfd);
    free(s);
}

/* ---- fixture --------------------------------------------------------- */

struct t09 {
    struct fx f;
    struct raw_srv *raw;
    int hole[8];                     /* the blackhole listener and its fillers */
    int nhole;
};

static int
teardown(void **state)
{
    struct t09 *t = *state;
    int i;

    raw_stop(t->raw);
    for (i = 0; i < t->nhole; i++)
        close(t->hole[i]);
    fx_fini(&t->f);
    free(t);
    return 0;
}

/* The fixture with legacy's only server replaced by <legacy_port> when it
 * is > 0 (weight 0: every request goes to legacy). */
static struct t09 *
start(void **state, int legacy_port)
{
    struct t09 *t = calloc(1, sizeof(*t));

    *state = t;
    assert_non_null(t);
    assert_int_equal(fx_init(&t->f, false, 1, CONF_EXTRA), 0);
    if (legacy_port > 0) {
        t->f.port[0][0] = legacy_port;
        assert_int_equal(fx_write_conf(&t->f), 0);
    }
    assert_int_equal(fx_start_proxy(&t->f, 9), 0);
    return t;
}

static long
heads(int port)
{
    json_t *j = h_backend_stats(port);
    long v = j != NULL ? (long)json_integer_value(json_object_get(j, "heads")) : -1;

    json_decref(j);
    return v;
}

/* ---- raw client helpers ---------------------------------------------- */

/* Reads until "\r\n\r\n" (included, nothing after it), EOF or <timeout_ms>.
 * Returns the length read, NUL-terminated in <buf>; -1 on timeout or EOF
 * before the end of a head. */
static ssize_t
read_head_raw(int fd, char *buf, size_t cap, int timeout_ms)
{
    long long deadline = h_now_ms() + timeout_ms;
    size_t len = 0;

    while (len + 1 < cap) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        long long left = deadline - h_now_ms();

        if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
            break;
        if (recv(fd, buf + len, 1, 0) != 1)
            break;
        len++;
        buf[len] = '\0';
        if (len >= 4 && memcmp(buf + len - 4, "\r\n\r\n", 4) == 0)
            return (ssize_t)len;
    }
    buf[len] = '\0';
    return -1;
}

/* Reads everything until EOF or <timeout_ms>; *<eof> tells which. Returns
 * the byte count (NUL-terminated in <buf>, truncated to cap - 1). */
static size_t
read_all_raw(int fd, char *buf, size_t cap, int timeout_ms, bool *eof)
{
    long long deadline = h_now_ms() + timeout_ms;
    size_t len = 0;

    *eof = false;
    for (;;) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        long long left = deadline - h_now_ms();
        char scratch[4096];
        ssize_t n;

        if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
            break;
        n = recv(fd, scratch, sizeof(scratch), 0);
        if (n <= 0) {
            *eof = true;             /* EOF or reset */
            break;
        }
        if (len + 1 < cap) {
            size_t k = (size_t)n < cap - 1 - len ? (size_t)n : cap - 1 - len;

            memcpy(buf + len, scratch, k);
            len += k;
        }
    }
    buf[len] = '\0';
    return len;
}

/* The body part (after the head) of a raw response in <buf>. */
static const char *
body_of(const char *buf)
{
    const char *e = strstr(buf, "\r\n\r\n");

    return e != NULL ? e + 4 : NULL;
}

static int
send_str(int fd, const char *s)
{
    return h_send_all(fd, s, strlen(s));
}

/* ---- client head and idle timeouts ----------------------------------- */

/* Sends <req> one byte every 100 ms from t0 (its first byte) until a byte
 * arrives; returns the time the answer started arriving, relative to t0. */
static long long
slowloris(int fd, const char *req, size_t len, long long *t0)
{
    size_t i;

    for (i = 0; i < len; i++) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN };

        if (send(fd, req + i, 1, MSG_NOSIGNAL) != 1)
            break;
        if (i == 0)
            *t0 = h_now_ms();
        if (poll(&pfd, 1, 100) > 0)
            return h_now_ms() - *t0;
    }
    return -1;
}

static void
test_client_head_timeout_slowloris(void **state)
{
    struct t09 *t = start(state, 0);
    char req[400], buf[1024];
    struct h_resp r;
    long long t0 = 0, took;
    bool eof;
    int fd, n;

    /* a head that would take 6 s to trickle in, one byte per 100 ms */
    n = snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: t\r\nX-Slow: %060d\r\n\r\n", 0);
    fd = h_connect(t->f.proxy_port);
    assert_true(fd >= 0);
    /* idle a little before the first byte: the 408 must be counted from the
     * first byte, not from the accept */
    h_sleep_ms(CLIENT_HEAD_MS / 2);
    took = slowloris(fd, req, (size_t)n, &t0);
    if (took < 0)
        fail_msg("the slow head was never answered");
    assert_took(took, CLIENT_HEAD_MS);
    read_all_raw(fd, buf, sizeof(buf), 3000, &eof);
    assert_true(eof);                                   /* then closed */
    assert_int_equal(strncmp(buf, "HTTP/1.1 408 ", 13), 0);
    assert_non_null(strstr(buf, "\r\nConnection: close\r\n"));
    close(fd);
    assert_int_equal(heads(t->f.port[0][0]), 0);
    assert_int_equal(heads(t->f.port[1][0]), 0);

    /* the same on the second request of a keep-alive connection: its own
     * head timer starts at its own first byte */
    fd = h_connect(t->f.proxy_port);
    assert_true(fd >= 0);
    memset(&r, 0, sizeof(r));
    assert_int_equal(send_str(fd, "GET / HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    assert_int_equal(h_read_response(fd, &r), 0);
    assert_int_equal(r.status, 200);
    h_resp_free(&r);
    took = slowloris(fd, req, (size_t)n, &t0);
    if (took < 0)
        fail_msg("the slow second head was never answered");
    assert_took(took, CLIENT_HEAD_MS);
    read_all_raw(fd, buf, sizeof(buf), 3000, &eof);
    assert_true(eof);
    assert_int_equal(strncmp(buf, "HTTP/1.1 408 ", 13), 0);
    close(fd);
    assert_int_equal(heads(t->f.port[0][0]), 1);
}

/* A connection that never sends a byte is closed after client_head_ms,
 * silently (no request, nothing to answer). */
static void
test_client_silent_before_first_byte(void **state)
{
    struct t09 *t = start(state, 0);
    long long t0;
    int fd;

    fd = h_connect(t->f.proxy_port);
    assert_true(fd >= 0);
    t0 = h_now_ms();
    assert_true(h_peer_closed(fd, CLIENT_HEAD_MS * 5));
    assert_took(h_now_ms() - t0, CLIENT_HEAD_MS);
    close(fd);
}

/* After a complete exchange, no new byte: the proxy closes the keep-alive
 * connection after client_idle_ms without writing anything (no 408). */
static void
test_client_idle_keepalive(void **state)
{
    struct t09 *t = start(state, 0);
    struct h_resp r;
    char c;
    long long t0;
    int fd;

    fd = h_connect(t->f.proxy_port);
    assert_true(fd >= 0);
    memset(&r, 0, sizeof(r));
    assert_int_equal(send_str(fd, "GET / HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    assert_int_equal(h_read_response(fd, &r), 0);
    assert_int_equal(r.status, 200);
    assert_false(r.closed);
    h_resp_free(&r);
    t0 = h_now_ms();
    /* h_peer_closed() is false when any byte arrives before the close */
    assert_true(h_peer_closed(fd, CLIENT_IDLE_MS * 5));
    assert_took(h_now_ms() - t0, CLIENT_IDLE_MS);
    assert_true(recv(fd, &c, 1, MSG_DONTWAIT) <= 0);
    close(fd);
}

/* ---- upstream timeouts ------------------------------------------------ */

/* A listener with backlog 0 that never accepts, its accept queue filled:
 * further SYNs are dropped, so a connect to it hangs. Returns its port. */
static int
blackhole(struct t09 *t)
{
    struct sockaddr_in sin = { .sin_family = AF_INET };
    socklen_t sl = sizeof(sin);
    struct pollfd pfd;
    int lfd, fd, i;

    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(lfd >= 0);
    t->hole[t->nhole++] = lfd;
    assert_int_equal(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(lfd, 0), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sin, &sl), 0);
    for (i = 0; i < 3; i++) {
        fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        t->hole[t->nhole++] = fd;
        if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0)
            assert_int_equal(errno, EINPROGRESS);
    }
    h_sleep_ms(50);
    /* check the premise: one more connect does not complete */
    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0)
        fail_msg("blackhole: connect completed at once");
    pfd.fd = fd;
    pfd.events = POLLOUT;
    if (poll(&pfd, 1, CONNECT_MS) != 0)
        fail_msg("blackhole: a connect to the full listener completed or failed");
    close(fd);
    return ntohs(sin.sin_port);
}

static void
test_connect_timeout_504(void **state)
{
    struct t09 *t = calloc(1, sizeof(*t));
    struct h_resp r;
    char conn[32];
    long long t0;
    int fd, port;

    *state = t;
    assert_non_null(t);
    port = blackhole(t);
    assert_int_equal(fx_init(&t->f, false, 1, CONF_EXTRA), 0);
    t->f.port[0][0] = port;
    assert_int_equal(fx_write_conf(&t->f), 0);
    assert_int_equal(fx_start_proxy(&t->f, 9), 0);

    fd = h_connect(t->f.proxy_port);
    assert_true(fd >= 0);
    memset(&r, 0, sizeof(r));
    t0 = h_now_ms();
    assert_int_equal(send_str(fd, "GET / HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    assert_int_equal(h_read_response(fd, &r), 0);
    assert_int_equal(r.status, 504);
    assert_took(h_now_ms() - t0, CONNECT_MS);
    assert_string_equal(h_resp_header(&r, "Connection", conn, sizeof(conn)), "close");
    assert_true(r.closed || h_peer_closed(fd, 3000));
    h_resp_free(&r);
    close(fd);
    /* nothing crossed to the other side */
    assert_int_equal(heads(t->f.port[1][0]), 0);
}

static void
test_server_response_timeout_504(void **state)
{
    struct t09 *t = start(state, 0);
    struct h_resp r;
    long long t0;
    int fd;

    /* ten times server_response_ms */
    assert_int_equal(h_backend_set(t->f.port[0][0], "delay_ms=4000"), 0);
    fd = h_connect(t->f.proxy_port);
    assert_true(fd >= 0);
    memset(&r, 0, sizeof(r));
    t0 = h_now_ms();
    assert_int_equal(send_str(fd, "GET / HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    assert_int_equal(h_read_response(fd, &r), 0);
    assert_int_equal(r.status, 504);
    assert_took(h_now_ms() - t0, SERVER_RESPONSE_MS);
    assert_true(r.closed || h_peer_closed(fd, 3000));
    h_resp_free(&r);
    close(fd);
    /* the backend did get the request: it was slow, not absent */
    assert_int_equal(heads(t->f.port[0][0]), 1);
}

/* Sends a POST of 16 KiB to /echo, 1 KiB every 100 ms (1.6 s, four times
 * server_response_ms, each gap well under server_idle_ms). Returns the time
 * the last byte was sent. */
static long long
slow_upload(int fd)
{
    char part[1024];
    int i;

    assert_int_equal(send_str(fd, "POST /echo HTTP/1.1\r\nHost: t\r\n"
                                  "Content-Length: 16384\r\n\r\n"), 0);
    memset(part, 'u', sizeof(part));
    for (i = 0; i < 16; i++) {
        h_sleep_ms(100);
        assert_int_equal(h_send_all(fd, part, sizeof(part)), 0);
    }
    return h_now_ms();
}

/* server_response_ms runs from the end of the request: a streamed upload
 * that takes longer is not cut with a 504 while it progresses; after it,
 * a slow backend still gets its 504 about server_response_ms later. */
static void
test_slow_upload_then_response_timeout(void **state)
{
    static const char extra[] =
        ",\"timeouts\":{\"server_response_ms\":" STR(SERVER_RESPONSE_MS)
        ",\"server_idle_ms\":" STR(SERVER_IDLE_MS) "}"
        ",\"limits\":{\"buffer_body_bytes\":1024}";
    struct t09 *t = calloc(1, sizeof(*t));
    struct h_resp r;
    long long t_end;
    json_t *st;
    int fd;

    *state = t;
    assert_non_null(t);
    assert_int_equal(fx_init(&t->f, false, 1, extra), 0);
    assert_int_equal(fx_start_proxy(&t->f, 9), 0);

    fd = h_connect(t->f.proxy_port);
    assert_true(fd >= 0);
    slow_upload(fd);
    memset(&r, 0, sizeof(r));
    assert_int_equal(h_read_response(fd, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len - (size_t)(strstr(r.body, "\r\n\r\n") + 4 - r.body), 16384);
    h_resp_free(&r);
    st = h_backend_stats(t->f.port[0][0]);
    assert_non_null(st);
    assert_int_equal(json_integer_value(json_object_get(st, "body_bytes")), 16384);
    json_decref(st);

    /* a backend that answers late: 504 counted from the request's end */
    assert_int_equal(h_backend_set(t->f.port[0][0], "delay_ms=4000"), 0);
    t_end = slow_upload(fd);
    assert_int_equal(h_read_response(fd, &r), 0);
    assert_int_equal(r.status, 504);
    assert_took(h_now_ms() - t_end, SERVER_RESPONSE_MS);
    h_resp_free(&r);
    close(fd);
}

/* The server sends the head and 1000 of 100000 body bytes, then stalls:
 * the client gets what was sent, then the close, after server_idle_ms. */
static void
test_server_idle_mid_body(void **state)
{
    static char answer[256 + 1000];
    static const char *answers[1] = { answer };
    struct t09 *t = calloc(1, sizeof(*t));
    char head[2048], buf[4096], cl[32];
    struct h_resp r;
    long long t_body = 0, t_eof = 0, deadline;
    size_t got = 0;
    int fd, n;

    *state = t;
    assert_non_null(t);
    n = snprintf(answer, sizeof(answer),
                 "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n\r\n");
    memset(answer + n, 'x', 1000);
    answer[n + 1000] = '\0';
    t->raw = raw_start(answers, 1);
    assert_int_equal(fx_init(&t->f, false, 1, CONF_EXTRA), 0);
    t->f.port[0][0] = t->raw->port;
    assert_int_equal(fx_write_conf(&t->f), 0);
    assert_int_equal(fx_start_proxy(&t->f, 9), 0);

    fd = h_connect(t->f.proxy_port);
    assert_true(fd >= 0);
    assert_int_equal(send_str(fd, "GET /big HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    assert_true(read_head_raw(fd, head, sizeof(head), 3000) > 0);
    assert_int_equal(strncmp(head, "HTTP/1.1 200 ", 13), 0);
    memset(&r, 0, sizeof(r));
    snprintf(r.head, sizeof(r.head), "%s", head);
    assert_string_equal(h_resp_header(&r, "Content-Length", cl, sizeof(cl)), "100000");
    /* the partial body, then EOF; bounded by 5 * server_idle_ms */
    deadline = h_now_ms() + SERVER_IDLE_MS * 5 + 3000;
    while (h_now_ms() < deadline) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        ssize_t k;

        if (poll(&pfd, 1, 100) <= 0)
            continue;
        k = recv(fd, buf, sizeof(buf), 0);
        if (k <= 0) {
            t_eof = h_now_ms();
            break;
        }
        got += (size_t)k;
        if (got >= 1000 && t_body == 0)
            t_body = h_now_ms();
    }
    close(fd);
    assert_int_equal(got, 1000);
    assert_true(t_body > 0);
    if (t_eof == 0)
        fail_msg("the stalled response was never closed");
    assert_took(t_eof - t_body, SERVER_IDLE_MS);
    assert_int_equal(atomic_load(&t->raw->heads), 1);
}

/* A server that trickles its response head a byte every 50 ms (well
 * under server_idle_ms, so the read timeout alone never fires) still gets
 * 504 about server_response_ms after the request: the deadline is for the
 * whole head, not for silence. The whole head would take 10 s. */
static void
test_trickled_response_head_504(void **state)
{
    static char answer[512];
    static const char *answers[1] = { answer };
    struct t09 *t = calloc(1, sizeof(*t));
    struct h_resp r;
    long long t0;
    int fd, n;

    *state = t;
    assert_non_null(t);
    n = snprintf(answer, sizeof(answer), "HTTP/1.1 200 OK\r\nX-Slow: ");
    memset(answer + n, 's', 180);
    snprintf(answer + n + 180, sizeof(answer) - (size_t)n - 180,
             "\r\nContent-Length: 2\r\n\r\nok");
    t->raw = raw_start(answers, 1);
    t->raw->trickle_ms = 50;
    assert_int_equal(fx_init(&t->f, false, 1, CONF_EXTRA), 0);
    t->f.port[0][0] = t->raw->port;
    assert_int_equal(fx_write_conf(&t->f), 0);
    assert_int_equal(fx_start_proxy(&t->f, 9), 0);

    fd = h_connect(t->f.proxy_port);
    assert_true(fd >= 0);
    memset(&r, 0, sizeof(r));
    t0 = h_now_ms();
    assert_int_equal(send_str(fd, "GET /slow HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    assert_int_equal(h_read_response(fd, &r), 0);
    assert_int_equal(r.status, 504);
    assert_took(h_now_ms() - t0, SERVER_RESPONSE_MS);
    assert_true(r.closed || h_peer_closed(fd, 3000));
    h_resp_free(&r);
    close(fd);
}

/* A client that stops sending its body gets 408 after client_idle_ms
 * (a small body is buffered before the upstream request: the backend saw
 * nothing), and one that stops mid-way through a streamed body gets 408
 * after server_idle_ms, its upstream request aborted (never complete). */
static void
test_client_body_stall_408(void **state)
{
    static const char extra[] =
        ",\"timeouts\":{\"client_idle_ms\":" STR(CLIENT_IDLE_MS)
        ",\"server_idle_ms\":" STR(SERVER_IDLE_MS) "}"
        ",\"limits\":{\"buffer_body_bytes\":1024}";
    struct t09 *t = calloc(1, sizeof(*t));
    char part[2048];
    struct h_resp r;
    long long t0;
    json_t *st;
    int fd;

    *state = t;
    assert_non_null(t);
    assert_int_equal(fx_init(&t->f, false, 1, extra), 0);
    assert_int_equal(fx_start_proxy(&t->f, 9), 0);

    /* buffered: 10 of 100 bytes, then silence */
    fd = h_connect(t->f.proxy_port);
    assert_true(fd >= 0);
    memset(&r, 0, sizeof(r));
    assert_int_equal(send_str(fd, "POST /echo HTTP/1.1\r\nHost: t\r\n"
                                  "Content-Length: 100\r\n\r\n0123456789"), 0);
    t0 = h_now_ms();
    assert_int_equal(h_read_response(fd, &r), 0);
    assert_int_equal(r.status, 408);
    assert_took(h_now_ms() - t0, CLIENT_IDLE_MS);
    assert_true(r.closed || h_peer_closed(fd, 3000));
    h_resp_free(&r);
    close(fd);
    assert_int_equal(heads(t->f.port[0][0]), 0);

    /* streamed: 2 KiB of 8 KiB, then silence */
    fd = h_connect(t->f.proxy_port);
    assert_true(fd >= 0);
    memset(part, 'b', sizeof(part));
    assert_int_equal(send_str(fd, "POST /echo HTTP/1.1\r\nHost: t\r\n"
                                  "Content-Length: 8192\r\n\r\n"), 0);
    assert_int_equal(h_send_all(fd, part, sizeof(part)), 0);
    t0 = h_now_ms();
    assert_int_equal(h_read_response(fd, &r), 0);
    assert_int_equal(r.status, 408);
    assert_took(h_now_ms() - t0, SERVER_IDLE_MS);
    h_resp_free(&r);
    close(fd);
    st = h_backend_stats(t->f.port[0][0]);
    assert_non_null(st);
    assert_int_equal(json_integer_value(json_object_get(st, "heads")), 1);
    assert_int_equal(json_integer_value(json_object_get(st, "requests")), 0);
    json_decref(st);
}

/* ---- Expect: 100-continue --------------------------------------------- */

static void
test_expect_continue(void **state)
{
    struct t09 *t = start(state, 0);
    char head[1024], buf[4096];
    struct h_resp r;
    struct pollfd pfd;
    bool eof;
    int fd;

    /* the proxy answers 100 itself, forwards nothing before the body */
    fd = h_connect(t->f.proxy_port);
    assert_true(fd >= 0);
    assert_int_equal(send_str(fd, "PUT /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
                                  "Content-Length: 5\r\n\r\n"), 0);
    assert_true(read_head_raw(fd, head, sizeof(head), 3000) > 0);
    assert_string_equal(head, "HTTP/1.1 100 Continue\r\n\r\n");
    assert_int_equal(heads(t->f.port[0][0]), 0);
    assert_int_equal(send_str(fd, "hello"), 0);
    memset(&r, 0, sizeof(r));
    assert_int_equal(h_read_response(fd, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "PUT /echo HTTP/1.1\r\n"));
    assert_non_null(strstr(r.body, "\r\nContent-Length: 5\r\n"));
    assert_null(strstr(r.body, "Expect"));      /* the expectation was met here */
    assert_non_null(strstr(r.body, "\r\n\r\nhello"));
    h_resp_free(&r);
    close(fd);

    /* over body_bytes: 413 at once, no 100 Continue, then the close */
    fd = h_connect(t->f.proxy_port);
    assert_true(fd >= 0);
    assert_int_equal(send_str(fd, "PUT /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
                                  "Content-Length: 5000\r\n\r\n"), 0);
    read_all_raw(fd, buf, sizeof(buf), 3000, &eof);
    assert_true(eof);
    assert_int_equal(strncmp(buf, "HTTP/1.1 413 ", 13), 0);
    assert_null(strstr(buf, "100 Continue"));
    close(fd);

    /* HTTP/1.0 has no 100 Continue: nothing comes until the body is sent */
    fd = h_connect(t->f.proxy_port);
    assert_true(fd >= 0);
    assert_int_equal(send_str(fd, "PUT /echo HTTP/1.0\r\nExpect: 100-continue\r\n"
                                  "Content-Length: 5\r\n\r\n"), 0);
    pfd.fd = fd;
    pfd.events = POLLIN;
    assert_int_equal(poll(&pfd, 1, 300), 0);
    assert_int_equal(send_str(fd, "hello"), 0);
    read_all_raw(fd, buf, sizeof(buf), 3000, &eof);
    assert_true(eof);
    assert_int_equal(strncmp(buf, "HTTP/1.1 200 ", 13), 0);
    assert_null(strstr(buf, "100 Continue"));
    assert_non_null(strstr(buf, "\r\n\r\nhello"));
    close(fd);

    assert_int_equal(heads(t->f.port[0][0]), 2);
    assert_int_equal(heads(t->f.port[1][0]), 0);
}

/* ---- HTTP/1.0 clients ------------------------------------------------- */

static void
test_http10_never_chunked(void **state)
{
    struct t09 *t = start(state, 0);
    char buf[4096];
    struct h_resp r;
    const char *body;
    bool eof;
    int fd;

    assert_int_equal(h_backend_set(t->f.port[0][0], "chunked=1"), 0);

    /* chunked upstream: the 1.0 client gets the bytes, delimited by close */
    fd = h_connect(t->f.proxy_port);
    assert_true(fd >= 0);
    assert_int_equal(send_str(fd, "GET / HTTP/1.0\r\n\r\n"), 0);
    read_all_raw(fd, buf, sizeof(buf), 3000, &eof);
    close(fd);
    assert_true(eof);
    assert_int_equal(strncmp(buf, "HTTP/1.1 200 ", 13), 0);
    assert_null(strstr(buf, "Transfer-Encoding"));
    assert_null(strstr(buf, "chunked"));
    assert_non_null(body = body_of(buf));
    assert_string_equal(body, "legacy\n");

    /* even when it asks for keep-alive: without a length, close it is */
    fd = h_connect(t->f.proxy_port);
    assert_true(fd >= 0);
    assert_int_equal(send_str(fd, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"), 0);
    read_all_raw(fd, buf, sizeof(buf), 3000, &eof);
    close(fd);
    assert_true(eof);
    assert_null(strstr(buf, "Transfer-Encoding"));
    assert_non_null(strstr(buf, "\r\nConnection: close\r\n"));
    assert_non_null(body = body_of(buf));
    assert_string_equal(body, "legacy\n");

    /* HEAD: the head only, whatever the upstream framing */
    fd = h_connect(t->f.proxy_port);
    assert_true(fd >= 0);
    assert_int_equal(send_str(fd, "HEAD / HTTP/1.0\r\n\r\n"), 0);
    read_all_raw(fd, buf, sizeof(buf), 3000, &eof);
    close(fd);
    assert_true(eof);
    assert_int_equal(strncmp(buf, "HTTP/1.1 200 ", 13), 0);
    assert_null(strstr(buf, "Transfer-Encoding"));
    assert_non_null(body = body_of(buf));
    assert_string_equal(body, "");

    /* a length-delimited upstream answer: 1.0 keep-alive works */
    assert_int_equal(h_backend_set(t->f.port[0][0], "chunked=0"), 0);
    fd = h_connect(t->f.proxy_port);
    assert_true(fd >= 0);
    memset(&r, 0, sizeof(r));
    assert_int_equal(send_str(fd, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"), 0);
    assert_int_equal(h_read_response(fd, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.head, "\r\nContent-Length: 7\r\n"));
    assert_non_null(strstr(r.head, "\r\nConnection: keep-alive\r\n"));
    assert_string_equal(r.body, "legacy\n");
    h_resp_free(&r);
    assert_int_equal(send_str(fd, "HEAD / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"), 0);
    assert_int_equal(h_read_response_head(fd, &r), 0);
    assert_int_equal(r.status, 200);
    h_resp_free(&r);
    /* no body bytes after the HEAD answer: the next answer follows at once */
    assert_int_equal(send_str(fd, "GET / HTTP/1.0\r\n\r\n"), 0);
    assert_int_equal(h_read_response(fd, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "legacy\n");
    assert_true(r.closed || h_peer_closed(fd, 3000));
    h_resp_free(&r);
    close(fd);
}

/* 204 and 304 have no body (a 304 keeps its Content-Length), are never
 * chunked, and leave the connection usable; interim 1xx answers reach
 * HTTP/1.1 clients only. */
static void
test_204_304_and_interim(void **state)
{
    /* one round per client version, the same three answers each time */
#define ROUND "HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n", \
              "HTTP/1.1 304 Not Modified\r\nETag: \"e1\"\r\nContent-Length: 10\r\n\r\n", \
              "HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n" \
              "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    static const char *const answers[] = { ROUND, ROUND };
#undef ROUND
    static const char *const minors[] = { "1.0", "1.1" };
    struct t09 *t = calloc(1, sizeof(*t));
    char req[128], buf[4096];
    size_t len;
    bool eof;
    int fd, m;

    *state = t;
    assert_non_null(t);
    t->raw = raw_start(answers, sizeof(answers) / sizeof(answers[0]));
    assert_int_equal(fx_init(&t->f, false, 1, CONF_EXTRA), 0);
    t->f.port[0][0] = t->raw->port;
    assert_int_equal(fx_write_conf(&t->f), 0);
    assert_int_equal(fx_start_proxy(&t->f, 9), 0);

    for (m = 0; m < 2; m++) {
        /* three keep-alive requests in one write, then a close */
        len = (size_t)snprintf(req, sizeof(req),
                               "GET /a HTTP/%s\r\nHost: t\r\nConnection: keep-alive\r\n\r\n",
                               minors[m]);
        fd = h_connect(t->f.proxy_port);
        assert_true(fd >= 0);
        assert_int_equal(h_send_all(fd, req, len), 0);
        assert_int_equal(h_send_all(fd, req, len), 0);
        len = (size_t)snprintf(req, sizeof(req),
                               "GET /a HTTP/%s\r\nHost: t\r\nConnection: close\r\n\r\n",
                               minors[m]);
        assert_int_equal(h_send_all(fd, req, len), 0);
        read_all_raw(fd, buf, sizeof(buf), 3000, &eof);
        close(fd);
        assert_true(eof);
        /* the exact sequence: no body bytes after 204/304, no chunking */
        assert_null(strstr(buf, "Transfer-Encoding"));
        assert_int_equal(strncmp(buf, "HTTP/1.1 204 No Content\r\n", 25), 0);
        {
            const char *p304 = strstr(buf, "HTTP/1.1 304 Not Modified\r\n");
            const char *p200 = strstr(buf, "HTTP/1.1 200 OK\r\n");
            const char *p103 = strstr(buf, "HTTP/1.1 103 Early Hints\r\n");

            assert_non_null(p304);
            assert_non_null(p200);
            /* each response starts right where the previous head ended */
            assert_ptr_equal(body_of(buf), p304);
            /* the 304 keeps the length of the representation */
            assert_true(strstr(p304, "\r\nContent-Length: 10\r\n") < body_of(p304));
            assert_non_null(strstr(p304, "\r\nContent-Length: 10\r\n"));
            if (m == 0) {
                assert_null(p103);                /* no 1xx to HTTP/1.0 */
                assert_ptr_equal(body_of(p304), p200);
            } else {
                assert_ptr_equal(body_of(p304), p103);
                assert_ptr_equal(body_of(p103), p200);
            }
            assert_string_equal(body_of(p200), "ok");
        }
    }
    assert_int_equal(atomic_load(&t->raw->heads), 6);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_client_head_timeout_slowloris, teardown),
        cmocka_unit_test_teardown(test_client_silent_before_first_byte, teardown),
        cmocka_unit_test_teardown(test_client_idle_keepalive, teardown),
        cmocka_unit_test_teardown(test_connect_timeout_504, teardown),
        cmocka_unit_test_teardown(test_server_response_timeout_504, teardown),
        cmocka_unit_test_teardown(test_slow_upload_then_response_timeout, teardown),
        cmocka_unit_test_teardown(test_server_idle_mid_body, teardown),
        cmocka_unit_test_teardown(test_trickled_response_head_504, teardown),
        cmocka_unit_test_teardown(test_client_body_stall_408, teardown),
        cmocka_unit_test_teardown(test_expect_continue, teardown),
        cmocka_unit_test_teardown(test_http10_never_chunked, teardown),
        cmocka_unit_test_teardown(test_204_304_and_interim, teardown),
    };

    return cmocka_run_group_tests_name("integration: timeouts and connection handling",
                                       tests, NULL, NULL);
}
