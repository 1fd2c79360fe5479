/*
 * io: direct writes and larger reads for socket bufferevents (io.h).
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "proxy/io.h"

#define PX_IO_LIBEVENT_READ 4096u    /* libevent 2.1's EVBUFFER_MAX_READ */
#define PX_IO_WRITE_IOV 64            /* chunks of an evbuffer sent in one sendmsg */

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

ssize_t
px_io_read_more(struct bufferevent *bev, size_t max)
{
    struct evbuffer *in = bufferevent_get_input(bev);
    struct evbuffer_iovec v[2];
    struct iovec iov[2];
    evutil_socket_t fd = bufferevent_getfd(bev);
    ssize_t r;
    size_t left;
    int n, i;

    if (max == 0 || fd < 0 || evbuffer_get_length(in) < PX_IO_LIBEVENT_READ ||
        !(bufferevent_get_enabled(bev) & EV_READ))
        return 0;
    /* a socket bufferevent keeps the end of its input frozen: only its own
     * read may add to it */
    evbuffer_unfreeze(in, 0);
    n = evbuffer_reserve_space(in, (ev_ssize_t)max, v, 2);
    if (n <= 0) {
        evbuffer_freeze(in, 0);
        return 0;
    }
    left = max;
    for (i = 0; i < n; i++) {
        iov[i].iov_base = v[i].iov_base;
        iov[i].iov_len = v[i].iov_len < left ? v[i].iov_len : left;
        left -= iov[i].iov_len;
    }
    do
        r = readv(fd, iov, n);
    while (r < 0 && errno == EINTR);
    if (r <= 0) {
        evbuffer_commit_space(in, v, 0);
        evbuffer_freeze(in, 0);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        return r < 0 ? -1 : 0;
    }
    left = (size_t)r;
    for (i = 0; i < n && left > 0; i++) {
        v[i].iov_len = iov[i].iov_len < left ? iov[i].iov_len : left;
        left -= v[i].iov_len;
    }
    i = evbuffer_commit_space(in, v, i);
    evbuffer_freeze(in, 0);
    return i < 0 ? -1 : r;
}
