/* rateload: the benchmark's open-loop load: requests at a fixed rate,
 * whatever the server's answers do, with latency measured from each
 * request's intended send time.
 *
 *   rateload PORT PATH RATE CONNS SECS [close]
 *
 * Opens CONNS keep-alive connections to 127.0.0.1:PORT and, for SECS
 * seconds, schedules "GET PATH" number k at start + k / RATE seconds, on
 * connection k % CONNS. A connection has one request in flight at a time:
 * a request whose time comes while its connection still waits for an
 * answer is sent when that answer is in, and its latency still runs from
 * its intended time, so a server that stalls is charged for every request
 * it delayed (no coordinated omission, as in wrk2). Answers must be 200
 * with a Content-Length. Then it prints the line the benchmark parses, as
 * tests/bench/report.lua does for wrk ("BENCH requests=... p50_us=...
 * p99_us=... status=... timeout=..."; status counts answers other than 200,
 * timeout requests without an answer 5 s after the last was due), and a
 * line "RATE rate=R sent=N late=L max_us=M p999_us=P" (L: requests sent
 * more than 1 ms after their intended time). Exit status 0 ok, 1 a
 * connection failed, 2 usage.
 *
 * With "close", every request has a connection of its own ("Connection:
 * close"): CONNS is then how many may be open at once, and request k,
 * when its time comes, connects on slot k % CONNS as soon as that slot's
 * connection before it has its answer; its latency still runs from its
 * intended time, the connect included (wrk starts its clock after the
 * connect). The client closes once the answer is whole, as wrk does.
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define QMAX     4096                  /* requests waiting on one connection */
#define RBUF     16384                 /* bytes of an answer held at once */
#define GRACE_NS 5000000000ull         /* wait for the last answers */

struct conn {
    int fd;
    bool busy;                         /* a request is in flight */
    bool connecting;                   /* close mode: its connect is under way */
    uint64_t due[QMAX];                /* intended times (ns) of the waiting ones */
    unsigned head, n;                  /* ring of due[] */
    uint64_t sent_due;                 /* the one in flight: its intended time */
    char buf[RBUF];
    size_t have;
};

static char req[512];
static size_t req_len;
static uint64_t *lat;                  /* ns, one per answer */
static size_t nlat, nstatus, nlate, nsent;
static double bytes;
static bool close_mode;
static int ep;
static struct sockaddr_in sin;

static uint64_t
now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int
send_next(struct conn *c)
{
    uint64_t due = c->due[c->head], t = now_ns();
    ssize_t n;

    c->head = (c->head + 1) % QMAX;
    c->n--;
    if (close_mode) {
        struct epoll_event ev = { .events = EPOLLOUT, .data.ptr = c };
        int one = 1;

        if ((c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0)) < 0) {
            fprintf(stderr, "rateload: socket: %s\n", strerror(errno));
            return -1;
        }
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (connect(c->fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 && errno != EINPROGRESS) {
            fprintf(stderr, "rateload: connect: %s\n", strerror(errno));
            return -1;
        }
        if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
            return -1;
        c->connecting = true;
        goto sent;
    }
    n = write(c->fd, req, req_len);    /* small: the socket takes it whole */
    if (n != (ssize_t)req_len) {
        fprintf(stderr, "rateload: write: %s\n", n < 0 ? strerror(errno) : "short");
        return -1;
    }
sent:
    if (t > due + 1000000)
        nlate++;
    nsent++;
    c->busy = true;
    c->sent_due = due;
    return 0;
}

/* The answer in c->buf, when whole: its length, else 0; -1 when invalid. */
static long
answer_len(struct conn *c, int *status)
{
    char *end, *p;
    long clen = -1;

    c->buf[c->have < RBUF ? c->have : RBUF - 1] = '\0';
    if ((end = strstr(c->buf, "\r\n\r\n")) == NULL)
        return c->have >= RBUF - 1 ? -1 : 0;
    if (strncmp(c->buf, "HTTP/1.", 7) != 0)
        return -1;
    *status = atoi(c->buf + 9);
    for (p = strstr(c->buf, "\r\n"); p != NULL && p < end; p = strstr(p + 2, "\r\n"))
        if (strncasecmp(p + 2, "Content-Length:", 15) == 0)
            clen = atol(p + 17);
    if (clen < 0 || (size_t)(end + 4 - c->buf) + (size_t)clen > RBUF - 1)
        return -1;
    if (c->have < (size_t)(end + 4 - c->buf) + (size_t)clen)
        return 0;
    return (long)((end + 4 - c->buf) + clen);
}

/* Close mode: the connect of <c> ended; the request goes. */
static int
on_connected(struct conn *c)
{
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
    int e = 0;
    socklen_t len = sizeof(e);

    c->connecting = false;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0 || e != 0) {
        fprintf(stderr, "rateload: connect: %s\n", strerror(e != 0 ? e : errno));
        return -1;
    }
    if (write(c->fd, req, req_len) != (ssize_t)req_len) {
        fprintf(stderr, "rateload: write: %s\n", strerror(errno));
        return -1;
    }
    return epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static int
on_readable(struct conn *c)
{
    ssize_t n;
    long len;
    int status = 0;

    n = read(c->fd, c->buf + c->have, RBUF - 1 - c->have);
    if (n <= 0) {
        if (n < 0 && errno == EAGAIN)
            return 0;
        fprintf(stderr, "rateload: the server closed a connection\n");
        return -1;
    }
    c->have += (size_t)n;
    if ((len = answer_len(c, &status)) < 0) {
        fprintf(stderr, "rateload: an invalid answer\n");
        return -1;
    }
    if (len == 0)
        return 0;
    if (!c->busy) {
        fprintf(stderr, "rateload: an answer to nothing\n");
        return -1;
    }
    lat[nlat++] = now_ns() - c->sent_due;
    bytes += (double)len;
    if (status != 200)
        nstatus++;
    memmove(c->buf, c->buf + len, c->have - (size_t)len);
    c->have -= (size_t)len;
    c->busy = false;
    if (close_mode) {
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
        c->have = 0;
    }
    return c->n > 0 ? send_next(c) : 0;
}

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

int
main(int argc, char **argv)
{
    struct epoll_event ev, evs[64];
    struct itimerspec its;
    struct conn *cs;
    long rate, nconns, secs;
    uint64_t t0, t_end, k = 0, total, next, deadline;
    int tfd, i, n, one = 1;
    size_t pending;

    if ((argc != 6 && (argc != 7 || strcmp(argv[6], "close") != 0)) ||
        (rate = atol(argv[3])) < 1 || (nconns = atol(argv[4])) < 1 ||
        (secs = atol(argv[5])) < 1) {
        fprintf(stderr, "usage: rateload PORT PATH RATE CONNS SECS [close]\n");
        return 2;
    }
    close_mode = argc == 7;
    req_len = (size_t)snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: bench\r\n%s\r\n",
                               argv[2], close_mode ? "Connection: close\r\n" : "");
    total = (uint64_t)rate * (uint64_t)secs;
    if ((lat = calloc(total + 1, sizeof(*lat))) == NULL ||
        (cs = calloc((size_t)nconns, sizeof(*cs))) == NULL)
        return 1;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)atoi(argv[1]));
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if ((ep = epoll_create1(0)) < 0 ||
        (tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK)) < 0)
        return 1;
    for (i = 0; i < nconns && !close_mode; i++) {
        struct conn *c = &cs[i];

        if ((c->fd = socket(AF_INET, SOCK_STREAM, 0)) < 0 ||
            connect(c->fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
            fprintf(stderr, "rateload: connect: %s\n", strerror(errno));
            return 1;
        }
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        ev.events = EPOLLIN;
        ev.data.ptr = c;
        if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
            return 1;
    }
    ev.events = EPOLLIN;
    ev.data.ptr = NULL;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev) < 0)
        return 1;

    t0 = now_ns() + 10000000ull;       /* 10 ms from now */
    t_end = t0 + (uint64_t)secs * 1000000000ull;
    deadline = t_end + GRACE_NS;
    next = t0;
    memset(&its, 0, sizeof(its));
    for (;;) {
        uint64_t t = now_ns();

        /* every request whose time has come goes to its connection */
        while (k < total && next <= t) {
            struct conn *c = &cs[k % (uint64_t)nconns];

            if (c->n == QMAX) {
                fprintf(stderr, "rateload: %u requests wait on one connection\n", QMAX);
                return 1;
            }
            c->due[(c->head + c->n) % QMAX] = next;
            c->n++;
            if (!c->busy && send_next(c) < 0)
                return 1;
            k++;
            next = t0 + k * 1000000000ull / (uint64_t)rate;
        }
        pending = 0;
        for (i = 0; i < nconns; i++)
            pending += cs[i].busy + cs[i].n;
        if (k == total && pending == 0)
            break;
        if (t > deadline)
            break;
        if (k < total) {
            its.it_value.tv_sec = (time_t)(next / 1000000000ull);
            its.it_value.tv_nsec = (long)(next % 1000000000ull);
            timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
        }
        n = epoll_wait(ep, evs, 64, k < total ? -1 : 100);
        if (n < 0 && errno != EINTR)
            return 1;
        for (i = 0; i < n; i++) {
            uint64_t x;

            if (evs[i].data.ptr == NULL) {
                if (read(tfd, &x, sizeof(x)) < 0 && errno != EAGAIN)
                    return 1;
                continue;
            }
            /* close mode: one event per descriptor per wait, so an event
             * here is never for a connection closed earlier in this batch */
            if ((((struct conn *)evs[i].data.ptr)->connecting
                     ? on_connected(evs[i].data.ptr) : on_readable(evs[i].data.ptr)) < 0)
                return 1;
        }
    }
    pending = 0;
    for (i = 0; i < nconns; i++)
        pending += cs[i].busy + cs[i].n;
    qsort(lat, nlat, sizeof(*lat), cmp_u64);
    printf("BENCH requests=%zu bytes=%.0f duration_us=%.0f p50_us=%.0f p99_us=%.0f"
           " connect=0 read=0 write=0 status=%zu timeout=%zu\n",
           nlat, bytes, (double)secs * 1e6,
           nlat > 0 ? (double)lat[nlat / 2] / 1e3 : 0.0,
           nlat > 0 ? (double)lat[(nlat * 99) / 100] / 1e3 : 0.0, nstatus, pending);
    printf("RATE rate=%ld sent=%zu late=%zu max_us=%.0f p999_us=%.0f\n", rate, nsent, nlate,
           nlat > 0 ? (double)lat[nlat - 1] / 1e3 : 0.0,
           nlat > 0 ? (double)lat[(nlat * 999) / 1000] / 1e3 : 0.0);
    return 0;
}
