/*
 * load: see load.h. One poll() loop over non-blocking sockets; a
 * connection is either pausing (its gap) or waiting for the answer to the
 * one request it sent (a non-blocking connect needs no state of its own:
 * the request is written once the socket takes it). Responses are parsed with the
 * project's strict parser (lib/http1.h), so what counts as well formed here
 * is what the proxy itself would accept from a backend.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lib/http1.h"
#include "lib/xmalloc.h"
#include "tests/harness/load.h"

#define LOAD_MAX_CONNS   1024
#define LOAD_IN_MAX      (1u << 20)   /* an answer larger than this is malformed here */
#define LOAD_GRACE_MS    5000         /* for the answers still awaited at the end */
#define LOAD_FIELDS      128

enum lc_state { LC_PAUSE, LC_WAIT };

struct lconn {
    int fd;                          /* -1: none */
    enum lc_state state;
    long long next_ms;               /* LC_PAUSE: when the next request goes */
    struct h_load_req req;           /* the request in flight */
    size_t out_off;                  /* bytes of it written */
    char *in;                        /* owned: bytes received, not yet parsed */
    size_t in_len, in_cap;
    bool got_bytes;                  /* a byte of the current answer arrived */
    bool head_done;
    int status;
    bool keep_alive;
    enum h1_framing framing;
    uint64_t left;                   /* H1_BODY_LENGTH: body bytes to come */
    struct h1_chunked ck;
};

struct h_load {
    const struct h_load_conf *c;
    struct h_load_stats *st;
    struct lconn *lc;
    uint64_t rng;
    unsigned nth;                    /* requests handed out */
    struct h1_field fields[LOAD_FIELDS];
};

static const char default_req[] = "GET / HTTP/1.1\r\nHost: load\r\n\r\n";

static long long
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t
rnd(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static unsigned
gap(struct h_load *L)
{
    const struct h_load_conf *c = L->c;

    if (c->gap_max_ms <= c->gap_min_ms)
        return c->gap_min_ms;
    return c->gap_min_ms + (unsigned)(rnd(&L->rng) % (c->gap_max_ms - c->gap_min_ms + 1));
}

static void
lc_close(struct lconn *x)
{
    if (x->fd >= 0)
        close(x->fd);
    x->fd = -1;
    x->in_len = 0;
}

/* The current request is over (answered or not): pause, then the next. */
static void
lc_next(struct h_load *L, struct lconn *x)
{
    x->state = LC_PAUSE;
    x->next_ms = now_ms() + gap(L);
    x->got_bytes = false;
    x->head_done = false;
}

static void
malformed(struct h_load *L, struct lconn *x, const char *why)
{
    L->st->malformed++;
    if (!L->c->quiet)
        fprintf(stderr, "load: fd %d: malformed answer (%s) after %zu bytes: %.60s\n",
                x->fd, why, x->in_len, x->in != NULL ? x->in : "");
    lc_close(x);
    lc_next(L, x);
}

static void
consume(struct lconn *x, size_t n)
{
    memmove(x->in, x->in + n, x->in_len - n);
    x->in_len -= n;
}

static void
answered(struct h_load *L, struct lconn *x)
{
    L->st->answered++;
    L->st->status[x->status >= 100 && x->status < 600 ? x->status : 0]++;
    if (!x->keep_alive || x->framing == H1_BODY_CLOSE) {
        lc_close(x);
    } else if (x->in_len > 0) {
        malformed(L, x, "bytes after the answer");
        return;
    }
    lc_next(L, x);
}

/* Parses what arrived for the request in flight; <eof>: the peer closed. */
static void
parse(struct h_load *L, struct lconn *x, bool eof)
{
    struct h1_parse_limits lim = { LOAD_FIELDS, 0 };
    struct h1_resp r;
    enum h1_parse pr;

    while (!x->head_done) {
        if (x->in_len == 0)
            return;
        memset(&r, 0, sizeof(r));
        r.fields = L->fields;
        pr = h1_resp_parse(&r, x->in, x->in_len, &lim, x->req.is_head);
        if (pr == H1_PARSE_AGAIN) {
            if (eof)
                malformed(L, x, "cut in the head");
            return;
        }
        if (pr == H1_PARSE_BAD) {
            malformed(L, x, r.error != NULL ? r.error : "bad head");
            return;
        }
        consume(x, r.head_len);
        if (r.status < 200 && r.status != 101)
            continue;                  /* interim */
        x->head_done = true;
        x->status = r.status;
        x->keep_alive = r.keep_alive;
        x->framing = r.framing;
        x->left = r.content_length;
        memset(&x->ck, 0, sizeof(x->ck));
        h1_chunked_init(&x->ck);
    }
    switch (x->framing) {
    case H1_BODY_NONE:
        answered(L, x);
        return;
    case H1_BODY_LENGTH: {
        size_t n = x->left < x->in_len ? (size_t)x->left : x->in_len;

        consume(x, n);
        x->left -= n;
        if (x->left == 0)
            answered(L, x);
        else if (eof)
            malformed(L, x, "cut in the body");
        return;
    }
    case H1_BODY_CHUNKED:
        for (;;) {
            size_t used = 0;
            enum h1_chunk ck;

            if (x->ck.data_left > 0) {
                size_t n = x->ck.data_left < x->in_len ? (size_t)x->ck.data_left : x->in_len;

                consume(x, n);
                h1_chunked_data_consumed(&x->ck, n);
                if (x->ck.data_left > 0)
                    break;
                continue;
            }
            ck = h1_chunked_parse(&x->ck, x->in, x->in_len, &used);
            consume(x, used);
            if (ck == H1_CHUNK_DONE) {
                answered(L, x);
                return;
            }
            if (ck == H1_CHUNK_BAD) {
                malformed(L, x, x->ck.error != NULL ? x->ck.error : "bad chunk");
                return;
            }
            if (ck == H1_CHUNK_AGAIN)
                break;
        }
        if (eof)
            malformed(L, x, "cut in a chunked body");
        return;
    case H1_BODY_CLOSE:
        x->in_len = 0;
        if (eof)
            answered(L, x);
        return;
    }
}

/* Reads what <x>'s socket holds. */
static void
on_readable(struct h_load *L, struct lconn *x)
{
    ssize_t n;

    for (;;) {
        if (x->in_cap - x->in_len < 16384) {
            if (x->in_cap >= LOAD_IN_MAX) {
                malformed(L, x, "too large");
                return;
            }
            x->in_cap = x->in_cap ? x->in_cap * 2 : 65536;
            x->in = xrealloc(x->in, x->in_cap + 1);
        }
        n = recv(x->fd, x->in + x->in_len, x->in_cap - x->in_len, MSG_DONTWAIT);
        if (n > 0) {
            x->in_len += (size_t)n;
            x->in[x->in_len] = '\0';
            if (x->state == LC_WAIT) {
                x->got_bytes = true;
                parse(L, x, false);
                if (x->fd < 0)
                    return;
            }
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        break;                         /* EOF or an error */
    }
    if (x->state != LC_WAIT) {
        if (x->in_len > 0) {
            malformed(L, x, "bytes nobody asked for");
            return;
        }
        L->st->closed_idle++;
        lc_close(x);
        return;
    }
    if (!x->got_bytes) {
        if (n == 0)
            L->st->closed_clean++;
        else
            L->st->reset++;
        lc_close(x);
        lc_next(L, x);
        return;
    }
    if (n == 0) {
        parse(L, x, true);
        if (x->state == LC_WAIT)
            malformed(L, x, "cut");
    } else {
        malformed(L, x, strerror(errno));
    }
    lc_close(x);
}

static void
on_writable(struct h_load *L, struct lconn *x)
{
    while (x->out_off < x->req.len) {
        ssize_t n = send(x->fd, x->req.raw + x->out_off, x->req.len - x->out_off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);

        if (n > 0) {
            x->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        /* the server went away before it took the request */
        L->st->reset++;
        lc_close(x);
        lc_next(L, x);
        return;
    }
    if (x->out_off == x->req.len && x->req.len > 0) {
        L->st->sent++;
        x->req.len = 0;                /* written: not counted twice */
        x->out_off = 0;
    }
}

static int
lc_connect(struct h_load *L, struct lconn *x)
{
    struct sockaddr_in sin = { .sin_family = AF_INET };
    int one = 1;

    x->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (x->fd < 0)
        return -1;
    setsockopt(x->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin.sin_port = htons((uint16_t)L->c->port);
    if (connect(x->fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 && errno != EINPROGRESS) {
        close(x->fd);
        x->fd = -1;
        return -1;
    }
    L->st->connects++;
    return 0;
}

/* Starts the next request on <x>: connects when it has no connection. */
static void
lc_start(struct h_load *L, struct lconn *x)
{
    if (x->fd < 0 && lc_connect(L, x) < 0) {
        L->st->connect_failed++;
        lc_next(L, x);
        return;
    }
    x->req = (struct h_load_req){ default_req, sizeof(default_req) - 1, false };
    if (L->c->request != NULL)
        L->c->request(L->c->arg, L->nth, rnd(&L->rng), &x->req);
    L->nth++;
    x->out_off = 0;
    x->in_len = 0;
    x->got_bytes = false;
    x->head_done = false;
    x->state = LC_WAIT;
    on_writable(L, x);
}

int
h_load_run(const struct h_load_conf *c, struct h_load_stats *st)
{
    struct h_load L = { .c = c, .st = st, .rng = c->seed };
    struct pollfd *pfd;
    struct lconn **who;
    long long t0 = now_ms(), stop_at = t0 + c->duration_ms, next_tick = t0 + c->tick_ms;
    long long give_up = 0;
    unsigned i, n, waiting;
    bool sending = true;

    memset(st, 0, sizeof(*st));
    if (c->conns == 0 || c->conns > LOAD_MAX_CONNS) {
        fprintf(stderr, "load: %u connections: must be 1..%d\n", c->conns, LOAD_MAX_CONNS);
        return -1;
    }
    L.lc = xcalloc(c->conns, sizeof(*L.lc));
    pfd = xcalloc(c->conns, sizeof(*pfd));
    who = xcalloc(c->conns, sizeof(*who));
    for (i = 0; i < c->conns; i++) {
        L.lc[i].fd = -1;
        L.lc[i].state = LC_PAUSE;
        L.lc[i].next_ms = t0 + gap(&L);
        if (c->connect_first_ms > 0) {
            if (lc_connect(&L, &L.lc[i]) < 0)
                st->connect_failed++;
            L.lc[i].next_ms = t0 + c->connect_first_ms;
        }
    }
    for (;;) {
        long long now = now_ms(), wake = now + 50;

        if (sending && (now >= stop_at || L.nth >= c->requests)) {
            sending = false;
            give_up = now + LOAD_GRACE_MS;
        }
        if (c->tick != NULL && c->tick_ms > 0 && now >= next_tick) {
            c->tick(c->arg, now - t0);
            next_tick = now_ms() + c->tick_ms;
            now = now_ms();
        }
        waiting = 0;
        n = 0;
        for (i = 0; i < c->conns; i++) {
            struct lconn *x = &L.lc[i];

            if (x->state == LC_PAUSE && sending && now >= x->next_ms && L.nth < c->requests)
                lc_start(&L, x);
            if (x->state == LC_PAUSE && sending && x->next_ms < wake)
                wake = x->next_ms;
            if (x->state == LC_WAIT)
                waiting++;
            if (x->fd < 0)
                continue;
            pfd[n].fd = x->fd;
            pfd[n].events = POLLIN;
            if (x->state == LC_WAIT && x->req.len > 0)
                pfd[n].events |= POLLOUT;
            pfd[n].revents = 0;
            who[n++] = x;
        }
        if (!sending && (waiting == 0 || now >= give_up)) {
            st->unanswered = waiting;
            break;
        }
        if (c->tick != NULL && c->tick_ms > 0 && next_tick < wake)
            wake = next_tick;
        if (poll(pfd, n, wake > now ? (int)(wake - now) : 0) < 0 && errno != EINTR) {
            fprintf(stderr, "load: poll: %s\n", strerror(errno));
            break;
        }
        for (i = 0; i < n; i++) {
            struct lconn *x = who[i];

            if (x->fd != pfd[i].fd)
                continue;
            if ((pfd[i].revents & POLLOUT) && x->state == LC_WAIT)
                on_writable(&L, x);
            if (x->fd >= 0 && (pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
                on_readable(&L, x);
        }
    }
    for (i = 0; i < c->conns; i++) {
        lc_close(&L.lc[i]);
        free(L.lc[i].in);
    }
    st->elapsed_ms = now_ms() - t0;
    free(L.lc);
    free(pfd);
    free(who);
    return 0;
}

unsigned long
h_load_class(const struct h_load_stats *st, int k)
{
    unsigned long sum = 0;
    int s;

    for (s = k * 100; s < k * 100 + 100 && s < 600; s++)
        sum += st->status[s];
    return sum;
}

void
h_load_print(const char *label, const struct h_load_stats *st)
{
    int s;

    fprintf(stderr, "%s: %lu sent, %lu answered in %lld ms (", label, st->sent, st->answered,
            st->elapsed_ms);
    for (s = 100; s < 600; s++)
        if (st->status[s] > 0)
            fprintf(stderr, " %d:%lu", s, st->status[s]);
    fprintf(stderr, " ), closed idle %lu, closed clean %lu, reset %lu, malformed %lu, "
            "connects %lu (failed %lu), unanswered %lu\n", st->closed_idle,
            st->closed_clean, st->reset, st->malformed, st->connects, st->connect_failed,
            st->unanswered);
}
