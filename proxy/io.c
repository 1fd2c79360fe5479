/*
 * io: direct writes and own reads for socket bufferevents (io.h).
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_struct.h>   /* ev_read, wm_read, timeout_read */
#include <event2/event.h>

#include "proxy/io.h"

#define PX_IO_WRITE_IOV 64            /* chunks of an evbuffer sent in one sendmsg */

static void on_read(evutil_socket_t fd, short what, void *arg);

/* A plain socket bufferevent: its reads are io.c's (px_io_own_reads), so
 * its writes may go straight to the socket too. Any other (a TLS one, whose
 * bytes go through its SSL) is left to libevent's own writes. One compare
 * of a field of the bufferevent, set once per connection. */
static inline int
io_owned(const struct bufferevent *bev)
{
    return bev->ev_read.ev_evcallback.evcb_cb_union.evcb_callback == on_read;
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

void
px_io_send(struct bufferevent *bev, struct evbuffer *src)
{
    struct evbuffer *out = bufferevent_get_output(bev);

    if (evbuffer_get_length(src) == 0)
        return;
    if (!io_owned(bev)) {
        evbuffer_add_buffer(out, src); /* libevent writes it */
        return;
    }
    if (evbuffer_get_length(out) == 0)
        (void)sock_send(src, bufferevent_getfd(bev));
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

    if (!io_owned(bev))
        return left;                   /* libevent writes it */
    if (left == 0) {
        /* libevent removed the event when it drained the output: this
         * only clears the flag, so that queued output arms nothing */
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
        (void)sock_send(out, bufferevent_getfd(bev));
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

/* The read event of a bufferevent owned by px_io_own_reads(): what
 * libevent's bufferevent_readcb() does, with sock_recv() in place of
 * evbuffer_read() (FIONREAD, then a readv of at most 4096 bytes). */
static void
on_read(evutil_socket_t fd, short what, void *arg)
{
    struct bufferevent *bev = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t max = (size_t)bufferevent_get_max_single_read(bev);
    ssize_t r;
    int err;

    /* only a bare timeout is one: EV_TIMEOUT|EV_READ means bytes came */
    if (what == EV_TIMEOUT) {
        bufferevent_disable(bev, EV_READ);
        bufferevent_trigger_event(bev, BEV_EVENT_READING | BEV_EVENT_TIMEOUT, 0);
        return;
    }
    if (bev->wm_read.high != 0) {
        size_t len = evbuffer_get_length(in), high = bev->wm_read.high;

        if (len >= high) {
            /* the mark was set to what the input holds already, which
             * bufferevent_setwatermark() leaves as it is: suspend reading
             * as libevent's callback would here, through a mark one lower
             * (head_bytes is at least 1024); the input's watermark
             * callback resumes it once the input drains below the mark */
            bufferevent_setwatermark(bev, EV_READ, bev->wm_read.low, high - 1);
            bufferevent_setwatermark(bev, EV_READ, bev->wm_read.low, high);
            return;
        }
        if (high - len < max)
            max = high - len;
    }
    r = sock_recv(in, fd, max);
    if (r > 0) {
        /* the read callback, deferred if the bufferevent defers, and only
         * at the read low watermark, as libevent runs it */
        bufferevent_trigger(bev, EV_READ, 0);
        return;
    }
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return;
    err = errno;
    bufferevent_disable(bev, EV_READ);
    errno = err;                       /* the event callback may look (libevent
                                        * keeps it for a deferred one) */
    bufferevent_trigger_event(bev, BEV_EVENT_READING |
                                   (r < 0 ? BEV_EVENT_ERROR : BEV_EVENT_EOF), 0);
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
