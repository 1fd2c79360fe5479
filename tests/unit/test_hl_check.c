/*
 * tests/unit/test_hl_check.c: the active health checks. The pure half
 * (health/probe.c: rise/fall against a reference model, the fast interval
 * and jitter, the HTTP response reader in every split) and the I/O half
 * (health/check.c) on a private event_base against a small server that
 * runs on the same loop: tcp and http passes and failures, timeouts,
 * body_contains, the request bytes, and freeing a checker mid-check.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "health/check.h"
#include "health/probe.h"

/* ---- rise / fall ------------------------------------------------------ */

static void
test_risefall_initial_up(void **state)
{
    struct hl_risefall rf;

    (void)state;
    hl_risefall_init(&rf, 2, 3, true);
    assert_true(rf.is_up);
    assert_int_equal(rf.run, 0);
    assert_false(hl_risefall_is_changing(&rf));
    /* passes while up change nothing */
    assert_false(hl_risefall_push(&rf, true));
    assert_false(hl_risefall_push(&rf, true));
    assert_true(rf.is_up);
    assert_false(hl_risefall_is_changing(&rf));
}

static void
test_risefall_fall_then_rise(void **state)
{
    struct hl_risefall rf;

    (void)state;
    hl_risefall_init(&rf, 2, 3, true);
    assert_false(hl_risefall_push(&rf, false));
    assert_true(hl_risefall_is_changing(&rf));
    assert_false(hl_risefall_push(&rf, false));
    assert_true(rf.is_up);
    assert_int_equal(rf.run, 2);
    assert_true(hl_risefall_push(&rf, false));       /* third failure: down */
    assert_false(rf.is_up);
    assert_int_equal(rf.run, 0);
    assert_false(hl_risefall_is_changing(&rf));
    assert_false(hl_risefall_push(&rf, false));      /* still down: no change */
    assert_false(hl_risefall_push(&rf, true));
    assert_true(hl_risefall_is_changing(&rf));
    assert_true(hl_risefall_push(&rf, true));        /* second pass: up */
    assert_true(rf.is_up);
    assert_false(hl_risefall_is_changing(&rf));
}

/* One result that agrees with the verdict starts the count again. */
static void
test_risefall_interrupted_runs(void **state)
{
    struct hl_risefall rf;
    int i;

    (void)state;
    hl_risefall_init(&rf, 2, 3, true);
    for (i = 0; i < 10; i++) {
        assert_false(hl_risefall_push(&rf, false));
        assert_false(hl_risefall_push(&rf, false));
        assert_false(hl_risefall_push(&rf, true));   /* resets */
        assert_int_equal(rf.run, 0);
    }
    assert_true(rf.is_up);
    hl_risefall_init(&rf, 3, 1, false);
    for (i = 0; i < 10; i++) {
        assert_false(hl_risefall_push(&rf, true));
        assert_false(hl_risefall_push(&rf, true));
        assert_false(hl_risefall_push(&rf, false));
    }
    assert_false(rf.is_up);
}

/* Alternating results never move the verdict when rise and fall are >= 2. */
static void
test_risefall_flapping(void **state)
{
    struct hl_risefall rf;
    int i, start;

    (void)state;
    for (start = 0; start < 2; start++) {
        hl_risefall_init(&rf, 2, 2, start == 1);
        for (i = 0; i < 1000; i++)
            assert_false(hl_risefall_push(&rf, i % 2 == 0));
        assert_int_equal(rf.is_up, start == 1);
    }
}

static void
test_risefall_one_one(void **state)
{
    struct hl_risefall rf;

    (void)state;
    hl_risefall_init(&rf, 1, 1, true);
    assert_true(hl_risefall_push(&rf, false));
    assert_false(rf.is_up);
    assert_true(hl_risefall_push(&rf, true));
    assert_true(rf.is_up);
    assert_false(hl_risefall_push(&rf, true));
    /* zero is taken as one, never "never" */
    hl_risefall_init(&rf, 0, 0, true);
    assert_true(hl_risefall_push(&rf, false));
}

/* Against a naive model: the verdict flips when the last <fall> (or
 * <rise>) results since the last flip all disagree with it. */
static void
test_risefall_reference_model(void **state)
{
    uint64_t rng = 7;
    unsigned rise, fall, i, k;
    bool hist[4000];

    (void)state;
    for (rise = 1; rise <= 4; rise++) {
        for (fall = 1; fall <= 4; fall++) {
            struct hl_risefall rf;
            bool model_up = true;
            unsigned since = 0;               /* index of the first result after the last flip */

            hl_risefall_init(&rf, rise, fall, true);
            for (i = 0; i < 4000; i++) {
                unsigned need, bad = 0;
                bool changed, model_changed = false;

                /* biased draws so that long runs happen both ways */
                hist[i] = (hl_rand(&rng) % 100) < ((i / 200) % 2 ? 80u : 25u);
                changed = hl_risefall_push(&rf, hist[i]);
                need = model_up ? fall : rise;
                for (k = i + 1; k > since && bad < need; k--) {
                    if (hist[k - 1] == model_up)
                        break;
                    bad++;
                }
                if (bad >= need) {
                    model_up = !model_up;
                    model_changed = true;
                    since = i + 1;
                }
                assert_int_equal(changed, model_changed);
                assert_int_equal(rf.is_up, model_up);
            }
        }
    }
}

/* ---- scheduling ------------------------------------------------------- */

static void
test_fast_interval(void **state)
{
    (void)state;
    assert_int_equal(hl_fast_interval_ms(2000), 500);
    assert_int_equal(hl_fast_interval_ms(60000), 15000);
    assert_int_equal(hl_fast_interval_ms(400), 100);
    assert_int_equal(hl_fast_interval_ms(150), 100);
    assert_int_equal(hl_fast_interval_ms(100), 100);
    assert_int_equal(hl_fast_interval_ms(60), 60);       /* never above the interval */
}

static void
test_next_delay_jitter(void **state)
{
    uint64_t a = 42, b = 42;
    unsigned i, d, lo = ~0u, hi = 0, flo = ~0u, fhi = 0;

    (void)state;
    for (i = 0; i < 10000; i++) {
        d = hl_next_delay_ms(2000, false, &a);
        assert_true(d >= 1800 && d <= 2200);
        assert_int_equal(d, hl_next_delay_ms(2000, false, &b));   /* same seed, same draws */
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
        d = hl_next_delay_ms(2000, true, &a);
        (void)hl_next_delay_ms(2000, true, &b);
        assert_true(d >= 450 && d <= 550);
        flo = d < flo ? d : flo;
        fhi = d > fhi ? d : fhi;
    }
    /* the draws cover the band, so servers drift apart */
    assert_true(lo < 1820 && hi > 2180);
    assert_true(flo < 460 && fhi > 540);
    /* different seeds, different schedules */
    a = 1;
    b = 2;
    for (i = 0, d = 0; i < 10; i++)
        d += hl_next_delay_ms(2000, false, &a) != hl_next_delay_ms(2000, false, &b);
    assert_true(d > 5);
}

static void
test_first_delay_spread(void **state)
{
    uint64_t rng = 3;
    unsigned i, d, buckets[4] = { 0 };

    (void)state;
    for (i = 0; i < 4000; i++) {
        d = hl_first_delay_ms(2000, &rng);
        assert_true(d < 2000);
        buckets[d / 500]++;
    }
    for (i = 0; i < 4; i++)
        assert_true(buckets[i] > 800 && buckets[i] < 1200);
    assert_int_equal(hl_first_delay_ms(0, &rng), 0);
}

/* ---- HTTP response reader --------------------------------------------- */

static struct hl_resp rr;      /* about 24 KiB: off the stack */

/* Feeds <len> bytes of <s> in pieces of <step> bytes; then EOF when <eof>. */
static enum hl_resp_rc
feed_split(struct hl_resp *r, bool is_head, bool want_body, const char *s, size_t len,
           size_t step, bool eof)
{
    enum hl_resp_rc rc = HL_RESP_AGAIN;
    size_t i, k, used;

    hl_resp_init(r, is_head, want_body);
    for (i = 0; i < len && rc == HL_RESP_AGAIN; i += k) {
        k = len - i < step ? len - i : step;
        rc = hl_resp_feed(r, s + i, k, &used);
        if (rc == HL_RESP_AGAIN)
            assert_int_equal(used, k);
    }
    if (rc == HL_RESP_AGAIN && eof)
        rc = hl_resp_eof(r);
    return rc;
}

struct rcase {
    const char *name;
    const char *text;
    bool is_head, want_body, eof;
    enum hl_resp_rc rc;
    int status;
    const char *body;            /* expected kept body when DONE and want_body */
};

static const struct rcase rcases[] = {
    { "length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
      false, true, false, HL_RESP_DONE, 200, "hello" },
    { "length, body not wanted", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
      false, false, false, HL_RESP_DONE, 200, "" },
    { "length 0", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
      false, true, false, HL_RESP_DONE, 200, "" },
    { "chunked with extension and trailer",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n"
      "6\r\n world\r\n0\r\nX-T: 1\r\n\r\n", false, true, false, HL_RESP_DONE, 200, "hello world" },
    { "chunked upper-case hex", "HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n"
      "A\r\n0123456789\r\n0\r\n\r\n", false, true, false, HL_RESP_DONE, 200, "0123456789" },
    { "close-delimited", "HTTP/1.0 200 OK\r\nServer: x\r\n\r\nabc",
      false, true, true, HL_RESP_DONE, 200, "abc" },
    { "close-delimited, empty", "HTTP/1.0 200 OK\r\n\r\n", false, true, true, HL_RESP_DONE, 200, "" },
    { "bare LF", "HTTP/1.1 503 Service Unavailable\nContent-Length: 2\n\nno",
      false, true, false, HL_RESP_DONE, 503, "no" },
    { "no reason phrase", "HTTP/1.1 204\r\n\r\n", false, true, false, HL_RESP_DONE, 204, "" },
    { "interim 100 and 103 skipped", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\n"
      "Link: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
      false, true, false, HL_RESP_DONE, 200, "ok" },
    { "HEAD: no body", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
      true, true, false, HL_RESP_DONE, 200, "" },
    { "304: no body", "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
      false, true, false, HL_RESP_DONE, 304, "" },
    { "same Content-Length twice", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\ncontent-length: 2\r\n\r\nok",
      false, true, false, HL_RESP_DONE, 200, "ok" },
    { "Transfer-Encoding wins over Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n"
      "Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", false, true, false, HL_RESP_DONE, 200, "ok" },
    { "gzip, chunked is chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
      "1\r\nz\r\n0\r\n\r\n", false, true, false, HL_RESP_DONE, 200, "z" },
    { "chunked, gzip reads until close", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"
      "1\r\nz", false, true, true, HL_RESP_DONE, 200, "1\r\nz" },
    { "status 599", "HTTP/1.1 599 X\r\nContent-Length: 0\r\n\r\n", false, true, false, HL_RESP_DONE, 599, "" },
    /* bad */
    { "101", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", false, true, false, HL_RESP_BAD, 0, NULL },
    { "not HTTP", "SSH-2.0-OpenSSH_9.2\r\n", false, true, false, HL_RESP_BAD, 0, NULL },
    { "four-digit status", "HTTP/1.1 2000 OK\r\n\r\n", false, true, false, HL_RESP_BAD, 0, NULL },
    { "status 099", "HTTP/1.1 099 X\r\n\r\n", false, true, false, HL_RESP_BAD, 0, NULL },
    { "status 600", "HTTP/1.1 600 X\r\n\r\n", false, true, false, HL_RESP_BAD, 0, NULL },
    { "differing Content-Lengths", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
      false, true, false, HL_RESP_BAD, 0, NULL },
    { "Content-Length not a number", "HTTP/1.1 200 OK\r\nContent-Length: 5a\r\n\r\n",
      false, true, false, HL_RESP_BAD, 0, NULL },
    { "Content-Length empty", "HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n",
      false, true, false, HL_RESP_BAD, 0, NULL },
    { "header without colon", "HTTP/1.1 200 OK\r\nBroken\r\n\r\n", false, true, false, HL_RESP_BAD, 0, NULL },
    { "space before colon", "HTTP/1.1 200 OK\r\nX-A : 1\r\n\r\n", false, true, false, HL_RESP_BAD, 0, NULL },
    { "folded header", "HTTP/1.1 200 OK\r\nX-A: 1\r\n 2\r\n\r\n", false, true, false, HL_RESP_BAD, 0, NULL },
    { "bad chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
      false, true, false, HL_RESP_BAD, 0, NULL },
    { "chunk size overflows", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
      "1ffffffffffffffff\r\n", false, true, false, HL_RESP_BAD, 0, NULL },
    { "chunk data without CRLF", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
      "2\r\nokXX\r\n", false, true, false, HL_RESP_BAD, 0, NULL },
    { "EOF without bytes", "", false, true, true, HL_RESP_BAD, 0, NULL },
    { "EOF mid status line", "HTTP/1.1 20", false, true, true, HL_RESP_BAD, 0, NULL },
    { "EOF mid head", "HTTP/1.1 200 OK\r\nX: 1\r\n", false, true, true, HL_RESP_BAD, 0, NULL },
    { "EOF mid body", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", false, true, true, HL_RESP_BAD, 0, NULL },
    { "EOF mid chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
      false, true, true, HL_RESP_BAD, 0, NULL },
};

/* Every case gives the same answer in every split, one byte at a time too. */
static void
test_resp_cases(void **state)
{
    static const size_t steps[] = { 1, 2, 3, 7, 64, 100000 };
    size_t c, s;

    (void)state;
    for (c = 0; c < sizeof(rcases) / sizeof(rcases[0]); c++) {
        const struct rcase *k = &rcases[c];

        for (s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
            enum hl_resp_rc rc = feed_split(&rr, k->is_head, k->want_body, k->text,
                                            strlen(k->text), steps[s], k->eof);

            if (rc != k->rc)
                fail_msg("%s (step %zu): rc %d, want %d (%s)", k->name, steps[s], rc, k->rc,
                         rr.err != NULL ? rr.err : "-");
            if (rc == HL_RESP_BAD) {
                assert_non_null(rr.err);
                continue;
            }
            if (rr.status != k->status)
                fail_msg("%s (step %zu): status %d, want %d", k->name, steps[s], rr.status,
                         k->status);
            if (k->want_body && strcmp(rr.body, k->body) != 0)
                fail_msg("%s (step %zu): body \"%s\", want \"%s\"", k->name, steps[s],
                         rr.body, k->body);
        }
    }
}

/* Once done, the reader says how much it used and takes nothing more. */
static void
test_resp_stops_at_end(void **state)
{
    const char *t = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA";
    size_t used;

    (void)state;
    hl_resp_init(&rr, false, true);
    assert_int_equal(hl_resp_feed(&rr, t, strlen(t), &used), HL_RESP_DONE);
    assert_int_equal(used, strlen(t) - 5);
    assert_int_equal(hl_resp_feed(&rr, "more", 4, &used), HL_RESP_DONE);
    assert_int_equal(used, 0);
    assert_int_equal(hl_resp_eof(&rr), HL_RESP_DONE);
    /* without the body wanted it stops at the end of the head */
    hl_resp_init(&rr, false, false);
    assert_int_equal(hl_resp_feed(&rr, t, strlen(t), &used), HL_RESP_DONE);
    assert_int_equal(used, strlen(t) - 7);
}

/* Bounds: the head, one line, the body kept. */
static void
test_resp_bounds(void **state)
{
    static char big[70000];
    size_t n = 0, i;

    (void)state;
    /* many short header lines: over HL_RESP_HEAD_MAX */
    n = (size_t)snprintf(big, sizeof(big), "HTTP/1.1 200 OK\r\n");
    for (i = 0; n < HL_RESP_HEAD_MAX + 2000; i++)
        n += (size_t)snprintf(big + n, sizeof(big) - n, "X-Filler-%zu: %0100d\r\n", i, 0);
    n += (size_t)snprintf(big + n, sizeof(big) - n, "\r\n");
    assert_int_equal(feed_split(&rr, false, true, big, n, 4096, false), HL_RESP_BAD);
    assert_string_equal(rr.err, "response head too large");

    /* one line over HL_RESP_LINE_MAX */
    n = (size_t)snprintf(big, sizeof(big), "HTTP/1.1 200 OK\r\nX-Long: ");
    memset(big + n, 'a', HL_RESP_LINE_MAX);
    n += HL_RESP_LINE_MAX;
    assert_int_equal(feed_split(&rr, false, true, big, n, 1000, false), HL_RESP_BAD);
    assert_string_equal(rr.err, "line too long");

    /* a long body: reading stops at HL_RESP_BODY_MAX, marked cut */
    n = (size_t)snprintf(big, sizeof(big), "HTTP/1.1 200 OK\r\nContent-Length: 60000\r\n\r\n");
    memset(big + n, 'b', 60000);
    big[n + HL_RESP_BODY_MAX - 3] = 'Z';
    n += 60000;
    assert_int_equal(feed_split(&rr, false, true, big, n, 5000, false), HL_RESP_DONE);
    assert_true(rr.body_cut);
    assert_int_equal(rr.body_len, HL_RESP_BODY_MAX);
    assert_true(hl_resp_body_has(&rr, "bZb"));
    /* the same, close-delimited */
    n = (size_t)snprintf(big, sizeof(big), "HTTP/1.1 200 OK\r\n\r\n");
    memset(big + n, 'c', 60000);
    n += 60000;
    assert_int_equal(feed_split(&rr, false, true, big, n, 3000, false), HL_RESP_DONE);
    assert_true(rr.body_cut);
    /* exactly HL_RESP_BODY_MAX bytes is not cut */
    n = (size_t)snprintf(big, sizeof(big), "HTTP/1.1 200 OK\r\nContent-Length: %u\r\n\r\n",
                         HL_RESP_BODY_MAX);
    memset(big + n, 'd', HL_RESP_BODY_MAX);
    n += HL_RESP_BODY_MAX;
    assert_int_equal(feed_split(&rr, false, true, big, n, 999, false), HL_RESP_DONE);
    assert_false(rr.body_cut);
    assert_int_equal(rr.body_len, HL_RESP_BODY_MAX);
}

static void
test_resp_body_has(void **state)
{
    static const char t[] = "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nab\0cd\0ok!";

    (void)state;
    assert_int_equal(feed_split(&rr, false, true, t, sizeof(t) - 1, 4, false), HL_RESP_DONE);
    assert_int_equal(rr.body_len, 9);
    assert_true(hl_resp_body_has(&rr, "ok!"));
    assert_true(hl_resp_body_has(&rr, "cd"));
    assert_true(hl_resp_body_has(&rr, "ab"));
    assert_false(hl_resp_body_has(&rr, "abcd"));
    assert_false(hl_resp_body_has(&rr, "ok!!"));
    assert_true(hl_resp_body_has(&rr, ""));
}

/* ---- the checker on a private event loop ------------------------------ */

/* A server on the test's own loop: answers each request head with <answer>
 * and closes once it is written, or never answers when <answer> is NULL. */
#define TS_MAX_CONNS 256

struct tsrv {
    struct event_base *base;
    struct evconnlistener *l;
    int port;
    const char *answer;          /* NULL: read the request, never answer */
    unsigned accepted;
    char last_request[2048];
    struct bufferevent *conns[TS_MAX_CONNS];
};

static void
ts_close(struct tsrv *ts, struct bufferevent *bev)
{
    unsigned i;

    for (i = 0; i < TS_MAX_CONNS; i++)
        if (ts->conns[i] == bev)
            ts->conns[i] = NULL;
    bufferevent_free(bev);
}

static void
on_ts_write(struct bufferevent *bev, void *arg)
{
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        ts_close(arg, bev);
}

static void
on_ts_read(struct bufferevent *bev, void *arg)
{
    struct tsrv *ts = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    struct evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
    size_t n;

    if (end.pos < 0)
        return;
    n = (size_t)end.pos + 4;
    if (n >= sizeof(ts->last_request))
        n = sizeof(ts->last_request) - 1;
    evbuffer_remove(in, ts->last_request, n);
    ts->last_request[n] = '\0';
    evbuffer_drain(in, evbuffer_get_length(in));
    if (ts->answer == NULL)
        return;
    if (ts->answer[0] == '\0') {
        ts_close(ts, bev);             /* close without a word */
        return;
    }
    bufferevent_write(bev, ts->answer, strlen(ts->answer));
    bufferevent_setcb(bev, on_ts_read, on_ts_write, NULL, ts);
}

static void
on_ts_event(struct bufferevent *bev, short what, void *arg)
{
    (void)what;
    ts_close(arg, bev);
}

static void
on_ts_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
             void *arg)
{
    struct tsrv *ts = arg;
    struct bufferevent *bev = bufferevent_socket_new(ts->base, fd, BEV_OPT_CLOSE_ON_FREE);
    unsigned i;

    (void)l;
    (void)sa;
    (void)salen;
    assert_non_null(bev);
    ts->accepted++;
    for (i = 0; i < TS_MAX_CONNS && ts->conns[i] != NULL; i++)
        ;
    assert_true(i < TS_MAX_CONNS);
    ts->conns[i] = bev;
    bufferevent_setcb(bev, on_ts_read, NULL, on_ts_event, ts);
    bufferevent_enable(bev, EV_READ);
}

static void
ts_start(struct tsrv *ts, struct event_base *base, const char *answer)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);

    memset(ts, 0, sizeof(*ts));
    ts->base = base;
    ts->answer = answer;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ts->l = evconnlistener_new_bind(base, on_ts_accept, ts, LEV_OPT_CLOSE_ON_FREE |
                                    LEV_OPT_REUSEABLE, 64, (struct sockaddr *)&sin, sizeof(sin));
    assert_non_null(ts->l);
    assert_int_equal(getsockname(evconnlistener_get_fd(ts->l), (struct sockaddr *)&sin, &len), 0);
    ts->port = ntohs(sin.sin_port);
}

static void
ts_stop(struct tsrv *ts)
{
    unsigned i;

    for (i = 0; i < TS_MAX_CONNS; i++)
        if (ts->conns[i] != NULL)
            bufferevent_free(ts->conns[i]);
    if (ts->l != NULL)
        evconnlistener_free(ts->l);
    ts->l = NULL;
}

static struct sockaddr_in
loopback(int port)
{
    struct sockaddr_in sin;

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin.sin_port = htons((uint16_t)port);
    return sin;
}

/* A loopback port nobody listens on (bound, then closed). */
static int
closed_port(void)
{
    struct sockaddr_in sin = loopback(0);
    socklen_t len = sizeof(sin);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    close(fd);
    return ntohs(sin.sin_port);
}

/* Verdict changes seen by the callback. */
struct rec {
    unsigned n;
    bool is_up[16];
    unsigned count[16];
    char why[16][160];
};

static void
on_notify(void *arg, bool is_up, unsigned count, const char *why)
{
    struct rec *r = arg;

    assert_true(r->n < 16);
    r->is_up[r->n] = is_up;
    r->count[r->n] = count;
    snprintf(r->why[r->n], sizeof(r->why[r->n]), "%s", why);
    r->n++;
}

static struct hl_check_conf
conf_of(enum hl_check_type type, unsigned rise, unsigned fall)
{
    struct hl_check_conf c = {
        .type = type, .method = "GET", .path = "/hz", .expect_min = 200, .expect_max = 399,
        .body_contains = "", .interval_ms = 150, .timeout_ms = 100, .rise = rise, .fall = fall,
    };

    return c;
}

static long long
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Runs <base> until <done>(<arg>) or 5 s; returns done's last answer. */
static bool
run_until(struct event_base *base, bool (*done)(void *), void *arg)
{
    long long end = now_ms() + 5000;

    while (!done(arg) && now_ms() < end)
        event_base_loop(base, EVLOOP_ONCE);
    return done(arg);
}

struct waitfor {
    struct hl_check *c;
    struct rec *rec;
    unsigned changes;            /* wait for this many verdict changes... */
    uint64_t checks;             /* ...or this many checks in all */
};

static bool
wf_done(void *arg)
{
    struct waitfor *w = arg;
    struct hl_check_stats st;

    hl_check_get_stats(w->c, &st);
    if (w->changes > 0)
        return w->rec->n >= w->changes;
    return st.passed + st.failed >= w->checks;
}

static struct hl_check *
new_check(struct event_base *base, const struct hl_check_conf *conf, int port, struct rec *rec)
{
    struct sockaddr_in sin = loopback(port);
    struct hl_check *c = hl_check_new(base, conf, (struct sockaddr *)&sin, sizeof(sin),
                                      "test-host:1", "test", 99, on_notify, rec);

    assert_non_null(c);
    memset(rec, 0, sizeof(*rec));
    assert_int_equal(hl_check_start(c), 0);
    return c;
}

static void
test_check_tcp_pass(void **state)
{
    struct event_base *base = event_base_new();
    struct hl_check_conf conf = conf_of(HL_CHECK_TCP, 2, 2);
    struct tsrv ts;
    struct rec rec;
    struct hl_check *c;
    struct hl_check_stats st;
    struct waitfor w;

    (void)state;
    ts_start(&ts, base, NULL);
    c = new_check(base, &conf, ts.port, &rec);
    hl_check_get_stats(c, &st);
    assert_true(st.is_up);                        /* starts up */
    assert_string_equal(st.last, "");
    w = (struct waitfor){ c, &rec, 0, 3 };
    assert_true(run_until(base, wf_done, &w));
    hl_check_get_stats(c, &st);
    assert_int_equal(rec.n, 0);                   /* no change, no call */
    assert_true(st.is_up);
    assert_int_equal(st.failed, 0);
    assert_string_equal(st.last, "ok");
    assert_true(ts.accepted >= 3);
    hl_check_free(c);
    ts_stop(&ts);
    event_base_free(base);
}

static void
test_check_tcp_refused(void **state)
{
    struct event_base *base = event_base_new();
    struct hl_check_conf conf = conf_of(HL_CHECK_TCP, 2, 3);
    struct rec rec;
    struct hl_check *c;
    struct hl_check_stats st;
    struct waitfor w;

    (void)state;
    c = new_check(base, &conf, closed_port(), &rec);
    w = (struct waitfor){ c, &rec, 1, 0 };
    assert_true(run_until(base, wf_done, &w));
    assert_false(rec.is_up[0]);
    assert_int_equal(rec.count[0], 3);
    assert_true(strncmp(rec.why[0], "connect: ", 9) == 0);
    /* still down: no further call */
    w = (struct waitfor){ c, &rec, 0, 6 };
    assert_true(run_until(base, wf_done, &w));
    assert_int_equal(rec.n, 1);
    hl_check_get_stats(c, &st);
    assert_false(st.is_up);
    assert_int_equal(st.passed, 0);
    hl_check_free(c);
    event_base_free(base);
}

/* 503 -> down after fall; 200 -> up after rise; one call per change; the
 * request carries method, path, Host and Connection: close. */
static void
test_check_http_down_up(void **state)
{
    struct event_base *base = event_base_new();
    struct hl_check_conf conf = conf_of(HL_CHECK_HTTP, 2, 2);
    struct tsrv ts;
    struct rec rec;
    struct hl_check *c;
    struct hl_check_stats st;
    struct waitfor w;

    (void)state;
    ts_start(&ts, base, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 9\r\n\r\nunhealthy");
    c = new_check(base, &conf, ts.port, &rec);
    w = (struct waitfor){ c, &rec, 1, 0 };
    assert_true(run_until(base, wf_done, &w));
    assert_false(rec.is_up[0]);
    assert_int_equal(rec.count[0], 2);
    assert_string_equal(rec.why[0], "HTTP 503");
    assert_true(strncmp(ts.last_request, "GET /hz HTTP/1.1\r\nHost: test-host:1\r\n",
                        strlen("GET /hz HTTP/1.1\r\nHost: test-host:1\r\n")) == 0);
    assert_non_null(strstr(ts.last_request, "\r\nConnection: close\r\n"));

    ts.answer = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n";
    w = (struct waitfor){ c, &rec, 2, 0 };
    assert_true(run_until(base, wf_done, &w));
    assert_true(rec.is_up[1]);
    assert_int_equal(rec.count[1], 2);
    assert_string_equal(rec.why[1], "ok");
    hl_check_get_stats(c, &st);
    assert_true(st.is_up);
    assert_int_equal(st.failed, 2);
    assert_int_equal(st.passed, 2);
    hl_check_free(c);
    ts_stop(&ts);
    event_base_free(base);
}

/* A server that accepts and never answers: down by timeout. */
static void
test_check_http_timeout(void **state)
{
    struct event_base *base = event_base_new();
    struct hl_check_conf conf = conf_of(HL_CHECK_HTTP, 2, 2);
    struct tsrv ts;
    struct rec rec;
    struct hl_check *c;
    struct hl_check_stats st;
    struct waitfor w;

    (void)state;
    ts_start(&ts, base, NULL);
    c = new_check(base, &conf, ts.port, &rec);
    w = (struct waitfor){ c, &rec, 1, 0 };
    assert_true(run_until(base, wf_done, &w));
    assert_false(rec.is_up[0]);
    assert_string_equal(rec.why[0], "timeout after 100 ms waiting for the response");
    hl_check_get_stats(c, &st);
    assert_true(st.last_ms >= 100);
    hl_check_free(c);
    ts_stop(&ts);
    event_base_free(base);
}

static void
test_check_http_body_and_status(void **state)
{
    struct event_base *base = event_base_new();
    struct hl_check_conf conf = conf_of(HL_CHECK_HTTP, 1, 1);
    struct tsrv ts;
    struct rec rec;
    struct hl_check *c;
    struct hl_check_stats st;
    struct waitfor w;

    (void)state;
    snprintf(conf.body_contains, sizeof(conf.body_contains), "\"ready\"");
    ts_start(&ts, base, "HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\n{\"state\":\"busy\"}");
    c = new_check(base, &conf, ts.port, &rec);
    w = (struct waitfor){ c, &rec, 1, 0 };
    assert_true(run_until(base, wf_done, &w));
    assert_false(rec.is_up[0]);
    assert_int_equal(rec.count[0], 1);
    /* quotes from the config are not copied into the text */
    assert_string_equal(rec.why[0], "HTTP 200, body does not contain \"?ready?\"");

    /* close-delimited body holding it: up */
    ts.answer = "HTTP/1.0 200 OK\r\n\r\n{\"state\":\"ready\"}";
    w = (struct waitfor){ c, &rec, 2, 0 };
    assert_true(run_until(base, wf_done, &w));
    assert_true(rec.is_up[1]);

    /* out of the expected range (a 404 with the right body) */
    conf.expect_min = 200;
    conf.expect_max = 299;
    ts.answer = "HTTP/1.1 404 Not Found\r\nContent-Length: 7\r\n\r\n\"ready\"";
    w = (struct waitfor){ c, &rec, 3, 0 };
    assert_true(run_until(base, wf_done, &w));
    assert_string_equal(rec.why[2], "HTTP 404");

    /* not HTTP at all */
    ts.answer = "hello\r\n\r\n";
    conf.body_contains[0] = '\0';
    w = (struct waitfor){ c, &rec, 0, 0 };
    hl_check_get_stats(c, &st);
    w.checks = st.passed + st.failed + 2;
    assert_true(run_until(base, wf_done, &w));
    hl_check_get_stats(c, &st);
    assert_string_equal(st.last, "bad response: not an HTTP response");
    assert_int_equal(rec.n, 3);                   /* down all along */

    /* closed without a word */
    ts.answer = "";
    w.checks = st.passed + st.failed + 2;
    assert_true(run_until(base, wf_done, &w));
    hl_check_get_stats(c, &st);
    assert_string_equal(st.last, "closed without a response");
    hl_check_free(c);
    ts_stop(&ts);
    event_base_free(base);
}

/* Freeing a checker with a check in flight: no call, nothing leaks (ASan). */
static void
test_check_free_in_flight(void **state)
{
    struct event_base *base = event_base_new();
    struct hl_check_conf conf = conf_of(HL_CHECK_HTTP, 1, 1);
    struct tsrv ts;
    struct rec rec;
    struct hl_check *c;
    long long end;

    (void)state;
    conf.interval_ms = 1000;
    conf.timeout_ms = 900;
    ts_start(&ts, base, NULL);
    c = new_check(base, &conf, ts.port, &rec);
    end = now_ms() + 3000;
    while (ts.last_request[0] == '\0' && now_ms() < end)
        event_base_loop(base, EVLOOP_ONCE);
    assert_true(ts.last_request[0] != '\0');
    hl_check_free(c);
    event_base_loop(base, EVLOOP_NONBLOCK);
    assert_int_equal(rec.n, 0);
    hl_check_free(NULL);
    ts_stop(&ts);
    event_base_free(base);
}

static bool
skipped_3(void *arg)
{
    struct hl_check_stats st;

    hl_check_get_stats(arg, &st);
    return st.skipped >= 3;
}

static bool
passed_1(void *arg)
{
    struct hl_check_stats st;

    hl_check_get_stats(arg, &st);
    return st.passed >= 1;
}

/* The proxy out of descriptors: its checks cannot open a socket. That is
 * no verdict on the server (fall 1 would mark it down at the first
 * failure): the checks are skipped and counted, the verdict stays up; once
 * descriptors are back a check runs and passes. */
static void
test_check_local_shortage_is_no_verdict(void **state)
{
    struct event_base *base = event_base_new();
    struct hl_check_conf conf = conf_of(HL_CHECK_HTTP, 1, 1);
    struct tsrv ts;
    struct rec rec;
    struct hl_check *c;
    struct hl_check_stats st;
    struct rlimit was, low;
    int fill[64], n = 0, fd;

    (void)state;
    ts_start(&ts, base, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    c = new_check(base, &conf, ts.port, &rec);
    /* the limit just above the highest descriptor open now, and every free
     * one below it taken */
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &was), 0);
    fd = dup(0);
    assert_true(fd >= 0);
    close(fd);
    low = was;
    low.rlim_cur = (rlim_t)fd + 32;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    while (n < 64 && (fd = dup(0)) >= 0)
        fill[n++] = fd;
    assert_true(n < 64 && n > 0);
    assert_true(run_until(base, skipped_3, c));
    hl_check_get_stats(c, &st);
    assert_int_equal(rec.n, 0);                   /* no verdict change */
    assert_true(st.is_up);
    assert_int_equal(st.failed, 0);
    assert_int_equal(strncmp(st.last, "skipped: ", 9), 0);
    assert_non_null(strstr(st.last, "Too many open files"));
    while (n > 0)
        close(fill[--n]);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &was), 0);
    assert_true(run_until(base, passed_1, c));
    hl_check_get_stats(c, &st);
    assert_int_equal(rec.n, 0);
    assert_string_equal(st.last, "ok");
    hl_check_free(c);
    ts_stop(&ts);
    event_base_free(base);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_risefall_initial_up),
        cmocka_unit_test(test_risefall_fall_then_rise),
        cmocka_unit_test(test_risefall_interrupted_runs),
        cmocka_unit_test(test_risefall_flapping),
        cmocka_unit_test(test_risefall_one_one),
        cmocka_unit_test(test_risefall_reference_model),
        cmocka_unit_test(test_fast_interval),
        cmocka_unit_test(test_next_delay_jitter),
        cmocka_unit_test(test_first_delay_spread),
        cmocka_unit_test(test_resp_cases),
        cmocka_unit_test(test_resp_stops_at_end),
        cmocka_unit_test(test_resp_bounds),
        cmocka_unit_test(test_resp_body_has),
        cmocka_unit_test(test_check_tcp_pass),
        cmocka_unit_test(test_check_tcp_refused),
        cmocka_unit_test(test_check_http_down_up),
        cmocka_unit_test(test_check_http_timeout),
        cmocka_unit_test(test_check_http_body_and_status),
        cmocka_unit_test(test_check_free_in_flight),
        cmocka_unit_test(test_check_local_shortage_is_no_verdict),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
