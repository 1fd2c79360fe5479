/*
 * io: direct writes and own reads for socket bufferevents, plain or TLS,
 * and the descriptor reserve of the data plane (io.h).
 */
#include <errno.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_struct.h>   /* ev_read, ev_write, wm_read, timeouts */
#include <event2/event.h>

#include "proxy/io.h"
#include "proxy/tls_io.h"

#define PX_IO_WRITE_IOV 64            /* chunks of an evbuffer sent in one sendmsg */

static void on_read(evutil_socket_t fd, short what, void *arg);
static void on_tls_read(evutil_socket_t fd, short what, void *arg);
static inline void tls_kick(struct bufferevent *bev, struct px_tls_io *t);
static void on_tls_write(evutil_socket_t fd, short what, void *arg);

static inline event_callback_fn
read_cb(const struct bufferevent *bev)
{
    return bev->ev_read.ev_evcallback.evcb_cb_union.evcb_callback;
}

/* The TLS side of <bev> (px_io_own_tls), or NULL: one compare. */
static inline struct px_tls_io *
tls_of(const struct bufferevent *bev)
{
    return read_cb(bev) == on_tls_read ? bev->ev_read.ev_evcallback.evcb_arg : NULL;
}

/* Sends what <buf> holds (its first PX_IO_WRITE_IOV chunks) to socket <fd>
 * with one sendmsg and drains what the socket took. sendmsg goes straight
 * to the socket layer; evbuffer_write()'s writev goes through the file
 * layer first (fdget_pos, vfs_writev: about 3 % of the CPU per small
 * request in the profile). Returns the bytes sent, or -1 with errno
 * (nothing drained). */
static ssize_t
sock_send(struct evbuffer *buf, evutil_socket_t fd)
{
    struct evbuffer_iovec v[PX_IO_WRITE_IOV];
    struct iovec iov[PX_IO_WRITE_IOV];
    struct msghdr m;
    ssize_t r;
    int n, i;

    n = evbuffer_peek(buf, -1, NULL, v, PX_IO_WRITE_IOV);
    if (n <= 0)
        return 0;
    if (n > PX_IO_WRITE_IOV)
        n = PX_IO_WRITE_IOV;
    for (i = 0; i < n; i++) {
        iov[i].iov_base = v[i].iov_base;
        iov[i].iov_len = v[i].iov_len;
    }
    memset(&m, 0, sizeof(m));
    m.msg_iov = iov;
    m.msg_iovlen = (size_t)n;
    do
        r = sendmsg(fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (r < 0 && errno == EINTR);
    if (r > 0)
        evbuffer_drain(buf, (size_t)r);
    return r;
}

/* Writes <buf> towards <bev>'s peer at once: straight to the socket, or
 * as TLS records (<t>). Returns the bytes taken, or -1 with errno. */
static inline ssize_t
bev_send(struct bufferevent *bev, struct px_tls_io *t, struct evbuffer *buf)
{
    return t != NULL ? px_tls_io_send(t, buf) : sock_send(buf, bufferevent_getfd(bev));
}

/* May io.c write to <bev>'s socket itself? Its reads are ours (a plain
 * socket) and, over TLS, the handshake is done. *<t>: its TLS side. */
static inline bool
direct(const struct bufferevent *bev, struct px_tls_io **t)
{
    event_callback_fn cb = read_cb(bev);

    *t = NULL;
    if (cb == on_read)
        return true;
    if (cb != on_tls_read)
        return false;
    *t = bev->ev_read.ev_evcallback.evcb_arg;
    return (*t)->state == PX_TLS_IO_OPEN;
}

void
px_io_send(struct bufferevent *bev, struct evbuffer *src)
{
    struct evbuffer *out = bufferevent_get_output(bev);
    struct px_tls_io *t;

    if (evbuffer_get_length(src) == 0)
        return;
    if (evbuffer_get_length(out) == 0 && direct(bev, &t))
        (void)bev_send(bev, t, src);
    if (evbuffer_get_length(src) > 0) {
        evbuffer_add_buffer(out, src);
        if (!(bufferevent_get_enabled(bev) & EV_WRITE))
            bufferevent_enable(bev, EV_WRITE);
    }
}

size_t
px_io_flush(struct bufferevent *bev)
{
    struct evbuffer *out = bufferevent_get_output(bev);
    size_t left = evbuffer_get_length(out);
    struct px_tls_io *t;

    if (!direct(bev, &t)) {
        /* a TLS connect or handshake in flight waits on events of its own:
         * never touched here */
        if (t != NULL)
            return left;
        /* libevent writes; never switched off here */
        if (left > 0 && !(bufferevent_get_enabled(bev) & EV_WRITE))
            bufferevent_enable(bev, EV_WRITE);
        return left;
    }
    if (t != NULL)
        tls_kick(bev, t);
    if (left == 0) {
        /* the write event was removed when the output drained: this only
         * clears the flag, so that queued output arms nothing */
        if (bufferevent_get_enabled(bev) & EV_WRITE)
            bufferevent_disable(bev, EV_WRITE);
        return 0;
    }
    if (bufferevent_get_enabled(bev) & EV_WRITE)
        return left;                   /* armed: the socket was full */
    if (bufferevent_getfd(bev) >= 0) {
        /* a socket bufferevent keeps the front of its output frozen: only
         * its own write may drain it */
        evbuffer_unfreeze(out, 1);
        (void)bev_send(bev, t, out);
        evbuffer_freeze(out, 1);
    }
    left = evbuffer_get_length(out);
    if (left > 0)
        bufferevent_enable(bev, EV_WRITE);
    return left;
}

/* Reads at most <max> bytes from socket <fd> onto the end of <in> with one
 * recvmsg into reserved space (straight to the socket layer, as sock_send()
 * writes). Returns the bytes read, 0 at EOF, -1 with errno set. */
static ssize_t
sock_recv(struct evbuffer *in, evutil_socket_t fd, size_t max)
{
    struct evbuffer_iovec v[2];
    struct iovec iov[2];
    struct msghdr m;
    ssize_t r;
    size_t left = max;
    int n, i;

    /* a socket bufferevent keeps the end of its input frozen: only its own
     * read may add to it */
    evbuffer_unfreeze(in, 0);
    n = evbuffer_reserve_space(in, (ev_ssize_t)max, v, 2);
    if (n <= 0) {
        evbuffer_freeze(in, 0);
        errno = ENOMEM;
        return -1;
    }
    for (i = 0; i < n; i++) {
        iov[i].iov_base = v[i].iov_base;
        iov[i].iov_len = v[i].iov_len < left ? v[i].iov_len : left;
        left -= iov[i].iov_len;
    }
    memset(&m, 0, sizeof(m));
    m.msg_iov = iov;
    m.msg_iovlen = (size_t)n;
    do
        r = recvmsg(fd, &m, MSG_DONTWAIT);
    while (r < 0 && errno == EINTR);
    if (r <= 0) {
        int err = errno;

        evbuffer_commit_space(in, v, 0);
        evbuffer_freeze(in, 0);
        errno = err;
        return r;
    }
    left = (size_t)r;
    for (i = 0; i < n && left > 0; i++) {
        v[i].iov_len = iov[i].iov_len < left ? iov[i].iov_len : left;
        left -= v[i].iov_len;
    }
    /* may suspend reading: the input reached the read high watermark */
    i = evbuffer_commit_space(in, v, i);
    evbuffer_freeze(in, 0);
    if (i < 0) {
        errno = ENOMEM;
        return -1;
    }
    return r;
}

/* How many bytes a read event of <bev> (<what>) may read now; 0 when it
 * must read nothing: a bare timeout (reported here), or an input at its
 * read high watermark. */
static size_t
read_room(struct bufferevent *bev, short what)
{
    size_t max = (size_t)bufferevent_get_max_single_read(bev);

    /* only a bare timeout is one: EV_TIMEOUT|EV_READ means bytes came */
    if (what == EV_TIMEOUT) {
        bufferevent_disable(bev, EV_READ);
        bufferevent_trigger_event(bev, BEV_EVENT_READING | BEV_EVENT_TIMEOUT, 0);
        return 0;
    }
    if (bev->wm_read.high != 0) {
        size_t len = evbuffer_get_length(bufferevent_get_input(bev)), high = bev->wm_read.high;

        if (len >= high) {
            /* the mark was set to what the input holds already, which
             * bufferevent_setwatermark() leaves as it is, or set by
             * px_io_read_limit() without libevent's callback: suspend
             * reading as libevent's callback would here, through a mark
             * one lower (head_bytes is at least 1024); the input's
             * watermark callback, installed by these calls, resumes it
             * once the input drains below the mark */
            bufferevent_setwatermark(bev, EV_READ, bev->wm_read.low, high - 1);
            bufferevent_setwatermark(bev, EV_READ, bev->wm_read.low, high);
            return 0;
        }
        if (high - len < max)
            max = high - len;
    }
    return max;
}

/* A read of <bev> gave <r>: bytes (the read callback, deferred if the
 * bufferevent defers, and only at the read low watermark, as libevent
 * runs it), 0 at the end of the stream or -1 with errno (reading off, the
 * event callback). Touch nothing of <bev> after it. */
static void
read_done(struct bufferevent *bev, ssize_t r)
{
    int err;

    if (r > 0) {
        bufferevent_trigger(bev, EV_READ, 0);
        return;
    }
    err = errno;
    bufferevent_disable(bev, EV_READ);
    errno = err;                       /* the event callback may look (libevent
                                        * keeps it for a deferred one) */
    bufferevent_trigger_event(bev, BEV_EVENT_READING |
                                   (r < 0 ? BEV_EVENT_ERROR : BEV_EVENT_EOF), 0);
}

/* The read event of a bufferevent owned by px_io_own_reads(): what
 * libevent's bufferevent_readcb() does, with sock_recv() in place of
 * evbuffer_read() (FIONREAD, then a readv of at most 4096 bytes). */
static void
on_read(evutil_socket_t fd, short what, void *arg)
{
    struct bufferevent *bev = arg;
    size_t max = read_room(bev, what);
    ssize_t r;

    if (max == 0)
        return;
    r = sock_recv(bufferevent_get_input(bev), fd, max);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return;
    read_done(bev, r);
}

void
px_io_read_on(struct bufferevent *bev)
{
    if (!(bev->enabled & EV_READ))
        bufferevent_enable(bev, EV_READ);
}

void
px_io_write_marks_off(struct bufferevent *bev)
{
    if (bev->wm_write.low != 0 || bev->wm_write.high != 0)
        bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
}

void
px_io_read_limit(struct bufferevent *bev, size_t limit)
{
    if (bev->wm_read.high == limit && bev->wm_read.low == 0)
        return;
    /* libevent's callback off (and reading resumed), then the mark alone */
    bufferevent_setwatermark(bev, EV_READ, 0, 0);
    bev->wm_read.high = limit;
}

void
px_io_read_now(struct bufferevent *bev)
{
    if (read_cb(bev) == on_read && (bev->enabled & EV_READ))
        on_read(bufferevent_getfd(bev), EV_READ, bev);
}

void
px_io_own_reads(struct bufferevent *bev)
{
    struct event *ev = &bev->ev_read;
    /* reassigning an added event would corrupt the loop's lists: take it
     * off and put it back (none of the callers has reading on yet; only a
     * bufferevent with reading enabled can have its read event added) */
    int pending = (bev->enabled & EV_READ) && event_pending(ev, EV_READ, NULL);

    if (pending)
        event_del(ev);
    /* the same socket and flags (persistent, finalized with the
     * bufferevent) as libevent gave it; only the callback changes */
    event_assign(ev, event_get_base(ev), event_get_fd(ev), event_get_events(ev), on_read,
                 bev);
    if (pending)
        event_add(ev, evutil_timerisset(&bev->timeout_read) ? &bev->timeout_read : NULL);
    px_io_read_size(bev, PX_IO_READ_HEAD);
}

/* ---- TLS ------------------------------------------------------------- */

/* Adds <ev> with timeout <tv> (none when unset). */
static void
ev_add(struct event *ev, const struct timeval *tv)
{
    event_add(ev, evutil_timerisset(tv) ? tv : NULL);
}

/* The loop's cached clock, in milliseconds. */
static uint64_t
loop_ms(struct bufferevent *bev)
{
    struct timeval tv;

    event_base_gettimeofday_cached(bufferevent_get_base(bev), &tv);
    return (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
}

/* A client connect or handshake waits for <what> on the socket, until
 * what is left of the deadline set at the connect. */
static void
tls_wait(struct px_tls_io *t, short what)
{
    struct bufferevent *bev = t->bev;
    struct timeval tv = { 0, 0 };
    uint64_t now = loop_ms(bev);

    if (t->deadline_ms > 0) {
        uint64_t left = t->deadline_ms > now ? t->deadline_ms - now : 1;

        tv.tv_sec = (time_t)(left / 1000u);
        tv.tv_usec = (suseconds_t)(left % 1000u) * 1000;
    }
    event_del(what == EV_READ ? &bev->ev_write : &bev->ev_read);
    ev_add(what == EV_READ ? &bev->ev_read : &bev->ev_write, &tv);
}

/* The client connect or handshake of <t> failed: BEV_EVENT_ERROR (errno
 * <err>) or a timeout. */
static void
tls_fail(struct px_tls_io *t, short what, int err)
{
    struct bufferevent *bev = t->bev;

    t->state = PX_TLS_IO_FAILED;
    event_del(&bev->ev_read);
    event_del(&bev->ev_write);
    errno = err;
    bufferevent_trigger_event(bev, what, 0);
}

/* A client TLS connection's read or write event (<ev>) before its
 * handshake is done: the connect completes, then the handshake runs, then
 * BEV_EVENT_CONNECTED, as libevent reports a connect; writing is left off
 * (the first write is a direct one), reading as the bufferevent has it. */
static void
tls_connect_step(struct px_tls_io *t, short what, short ev)
{
    struct bufferevent *bev = t->bev;
    socklen_t len = sizeof(int);
    int err = 0, r;

    if (t->state == PX_TLS_IO_FAILED)
        return;
    if (what == EV_TIMEOUT) {
        tls_fail(t, BEV_EVENT_TIMEOUT | (ev == EV_READ ? BEV_EVENT_READING : BEV_EVENT_WRITING),
                 ETIMEDOUT);
        return;
    }
    if (t->state == PX_TLS_IO_CONNECTING) {
        err = t->connect_err;
        if (err == 0 &&
            getsockopt(bufferevent_getfd(bev), SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        if (err != 0) {
            tls_fail(t, BEV_EVENT_ERROR, err);
            return;
        }
        t->state = PX_TLS_IO_HANDSHAKE;
    }
    r = px_tls_io_handshake(t);
    if (r == PX_TLS_IO_AGAIN) {
        tls_wait(t, EV_READ);
    } else if (r == PX_TLS_IO_WANT_WRITE) {
        tls_wait(t, EV_WRITE);
    } else if (r < 0) {
        tls_fail(t, BEV_EVENT_ERROR, errno);
    } else {
        bufferevent_disable(bev, EV_WRITE);
        if (!(bev->enabled & EV_READ))
            event_del(&bev->ev_read);
        else
            ev_add(&bev->ev_read, &bev->timeout_read);
        bufferevent_trigger_event(bev, BEV_EVENT_CONNECTED, 0);
    }
}

/* Reading is on over an SSL that holds what was read ahead (or the end of
 * the stream): no socket event will say so, the read event runs now. */
static inline void
tls_kick(struct bufferevent *bev, struct px_tls_io *t)
{
    if (t->more && (bev->enabled & EV_READ))
        event_active(&bev->ev_read, EV_READ, 1);
}

void
px_io_kick(struct bufferevent *bev)
{
    struct px_tls_io *t = tls_of(bev);

    if (t != NULL)
        tls_kick(bev, t);
}

/* The read event of a TLS bufferevent (px_io_own_tls): on_read() with
 * records in place of bytes. */
static void
on_tls_read(evutil_socket_t fd, short what, void *arg)
{
    struct px_tls_io *t = arg;
    struct bufferevent *bev = t->bev;
    struct evbuffer *in;
    size_t max;
    ssize_t r;

    (void)fd;
    if (t->state != PX_TLS_IO_OPEN) {
        tls_connect_step(t, what, EV_READ);
        return;
    }
    /* a read run by io.c itself (t->more) while reading is off waits for
     * reading to be on again (px_io_flush) */
    if (!(bev->enabled & EV_READ) && !(what & EV_TIMEOUT))
        return;
    if ((max = read_room(bev, what)) == 0)
        return;
    in = bufferevent_get_input(bev);
    t->more = false;
    evbuffer_unfreeze(in, 0);
    r = px_tls_io_recv(t, in, max);
    evbuffer_freeze(in, 0);
    if (r == PX_TLS_IO_AGAIN)
        return;
    if (r > 0 && t->more)
        event_active(&bev->ev_read, EV_READ, 1);   /* what the SSL still holds */
    if (r == PX_TLS_IO_WANT_WRITE) {
        /* OpenSSL must write before it reads on (a reply to the peer's
         * key update): reading waits for the write event */
        t->read_wants_write = true;
        event_del(&bev->ev_read);
        ev_add(&bev->ev_write, &bev->timeout_write);
        return;
    }
    read_done(bev, r);
}

/* The write event of a TLS bufferevent: what libevent's
 * bufferevent_writecb() does, with records in place of bytes. */
static void
on_tls_write(evutil_socket_t fd, short what, void *arg)
{
    struct px_tls_io *t = arg;
    struct bufferevent *bev = t->bev;
    struct evbuffer *out = bufferevent_get_output(bev);
    ssize_t r = 0;
    int err;

    (void)fd;
    if (t->state != PX_TLS_IO_OPEN) {
        tls_connect_step(t, what, EV_WRITE);
        return;
    }
    /* only a bare timeout is one, as in libevent */
    if (what == EV_TIMEOUT) {
        bufferevent_disable(bev, EV_WRITE);
        bufferevent_trigger_event(bev, BEV_EVENT_WRITING | BEV_EVENT_TIMEOUT, 0);
        return;
    }
    if (t->read_wants_write) {
        /* the socket takes bytes again: the read goes on first */
        t->read_wants_write = false;
        if (evbuffer_get_length(out) == 0 || !(bev->enabled & EV_WRITE))
            event_del(&bev->ev_write);
        if (bev->enabled & EV_READ)
            ev_add(&bev->ev_read, &bev->timeout_read);
        event_active(&bev->ev_read, EV_READ, 1);
        return;
    }
    if (evbuffer_get_length(out) > 0) {
        evbuffer_unfreeze(out, 1);
        r = px_tls_io_send(t, out);
        evbuffer_freeze(out, 1);
        if (r < 0) {
            err = errno;
            bufferevent_disable(bev, EV_WRITE);
            errno = err;
            bufferevent_trigger_event(bev, BEV_EVENT_WRITING | BEV_EVENT_ERROR, 0);
            return;
        }
    }
    if (evbuffer_get_length(out) == 0)
        event_del(&bev->ev_write);
    /* the write callback at the low watermark, as libevent runs it */
    if (r > 0)
        bufferevent_trigger(bev, EV_WRITE, 0);
}

void
px_io_own_tls(struct bufferevent *bev, struct px_tls_io *t)
{
    struct event *r = &bev->ev_read, *w = &bev->ev_write;
    int rp = event_pending(r, EV_READ, NULL), wp = event_pending(w, EV_WRITE, NULL);

    if (rp)
        event_del(r);
    if (wp)
        event_del(w);
    event_assign(r, event_get_base(r), event_get_fd(r), event_get_events(r), on_tls_read, t);
    event_assign(w, event_get_base(w), event_get_fd(w), event_get_events(w), on_tls_write, t);
    t->bev = bev;
    if (rp)
        ev_add(r, &bev->timeout_read);
    if (wp)
        ev_add(w, &bev->timeout_write);
    px_io_read_size(bev, PX_IO_READ_HEAD);
    /* what a handshake read ahead is read as soon as reading is on */
    if (t->state == PX_TLS_IO_OPEN && px_tls_io_holds(t)) {
        t->more = true;
        event_active(r, EV_READ, 1);
    }
}

struct px_tls_io *
px_io_tls(const struct bufferevent *bev)
{
    return tls_of(bev);
}

struct px_tls_io *
px_io_detach(struct bufferevent *bev)
{
    struct px_tls_io *t = tls_of(bev);

    /* libevent's own callbacks again, no socket, both events off */
    bufferevent_setfd(bev, -1);
    if (t != NULL)
        t->bev = NULL;
    return t;
}

int
px_io_connect(struct bufferevent *bev, const struct sockaddr *sa, int salen)
{
    struct px_tls_io *t = tls_of(bev);
    int r;

    if (t == NULL) {
        if (bufferevent_socket_connect(bev, sa, salen) < 0)
            return -1;
        px_io_own_reads(bev);          /* the connect assigned the socket */
        return 0;
    }
    do
        r = connect(bufferevent_getfd(bev), sa, (socklen_t)salen);
    while (r < 0 && errno == EINTR);
    if (r < 0 && errno != EINPROGRESS) {
        /* as libevent: only a refusal is the server's, reported through
         * the loop; anything else fails here */
        if (errno != ECONNREFUSED)
            return -1;
        t->connect_err = ECONNREFUSED;
        event_active(&bev->ev_write, EV_WRITE, 1);
        return 0;
    }
    /* the connect and the handshake together within the write timeout */
    t->deadline_ms = evutil_timerisset(&bev->timeout_write)
                     ? loop_ms(bev) + (uint64_t)bev->timeout_write.tv_sec * 1000u +
                           (uint64_t)bev->timeout_write.tv_usec / 1000u
                     : 0;
    tls_wait(t, EV_WRITE);
    return 0;
}

bool
px_io_holds(const struct bufferevent *bev)
{
    return px_tls_io_holds(tls_of(bev));
}

void
px_io_free(struct bufferevent *bev)
{
    struct px_tls_io *t = tls_of(bev);

    px_io_fd_closing(bufferevent_getfd(bev));   /* closed by libevent (CLOSE_ON_FREE) */
    if (t != NULL) {
        /* its events point at <t>: off before <t> goes (a deferred
         * callback may keep the bufferevent a little longer), and their
         * argument the bufferevent again, which libevent's finalizer takes
         * from whichever of them it finalizes */
        event_del(&bev->ev_read);
        event_del(&bev->ev_write);
        bev->ev_read.ev_evcallback.evcb_arg = bev;
        bev->ev_write.ev_evcallback.evcb_arg = bev;
    }
    bufferevent_free(bev);
    px_tls_io_free(t);
}

void
px_io_read_size(struct bufferevent *bev, size_t max)
{
    /* kept in the bufferevent: libevent 2.1 reads it only in its own read
     * callback, which no longer runs; it costs the connection nothing */
    if (max == 0)
        max = 1;
    else if (max > PX_IO_READ_MAX)
        max = PX_IO_READ_MAX;
    bufferevent_set_max_single_read(bev, max);
}

/* ---- the descriptor reserve ------------------------------------------ */

/* Written once by main() before any worker thread starts; read-only after. */
static struct px_fd_marks fd_marks;

void
px_io_fd_reserve_init(void)
{
    struct rlimit rl;
    unsigned limit, r;

    memset(&fd_marks, 0, sizeof(fd_marks));
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
        rl.rlim_cur > (rlim_t)1 << 30)
        return;
    limit = (unsigned)rl.rlim_cur;
    r = limit / 8;
    r = r < 8 ? 8 : r > 1024 ? 1024 : r;
    if (limit < 4 * r)
        return;                        /* too few to split: no marks */
    fd_marks.limit = limit;
    fd_marks.data_max = limit - r;
    fd_marks.clients_max = limit - 2 * r;
}

const struct px_fd_marks *
px_io_fd_marks(void)
{
    return &fd_marks;
}

bool
px_io_fd_client_ok(int fd)
{
    return fd_marks.limit == 0 || (unsigned)fd < fd_marks.clients_max;
}

bool
px_io_fd_data_ok(int fd)
{
    return fd_marks.limit == 0 || (unsigned)fd < fd_marks.data_max;
}

#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>

#define PX_FD_HB_MAX 65536
static char fd_hb[PX_FD_HB_MAX];       /* one address per descriptor number */

void
px_io_fd_closing(int fd)
{
    if (fd >= 0 && fd < PX_FD_HB_MAX)
        __tsan_release(&fd_hb[fd]);
}

void
px_io_fd_opened(int fd)
{
    if (fd >= 0 && fd < PX_FD_HB_MAX)
        __tsan_acquire(&fd_hb[fd]);
}
#endif

void
px_io_close(int fd)
{
    px_io_fd_closing(fd);
    close(fd);
}

int
px_io_socket(int family)
{
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    px_io_fd_opened(fd);

    if (fd >= 0 && !px_io_fd_data_ok(fd)) {
        px_io_close(fd);
        errno = EMFILE;
        return -1;
    }
    return fd;
}
