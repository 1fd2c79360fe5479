/*
 * io: the socket side of the data plane's bufferevents, done with fewer
 * system calls than libevent 2.1 makes on its own.
 *
 * - Writes go straight to the socket when nothing waits in the output
 *   (px_io_send, px_io_flush); the write event is armed only for what the
 *   socket did not take, so a response that fits costs one sendmsg and no
 *   epoll_ctl (libevent arms the write event whenever output is queued and
 *   removes it once drained: two epoll_ctl per write).
 * - Reads: libevent 2.1 asks FIONREAD before every read and then reads at
 *   most 4096 bytes (evbuffer_read); nothing turns either off. Once
 *   px_io_own_reads() pointed a bufferevent's read event at io.c, a read is
 *   one recvmsg into evbuffer_reserve_space() of the input: up to the
 *   bufferevent's read size (PX_IO_READ_HEAD unless px_io_read_size() set
 *   another: bulk data, or less to stay below a relay's backpressure limit)
 *   and never past its read high watermark. Then the bufferevent's
 *   callbacks run as after libevent's own read: the read callback, or on
 *   EOF, an error or the read timeout, reading disabled and the event
 *   callback with BEV_EVENT_READING and BEV_EVENT_EOF, _ERROR or _TIMEOUT;
 *   deferred when the bufferevent defers its callbacks.
 *   Only the callback changes: the event stays the bufferevent's, so
 *   bufferevent_enable/disable(EV_READ), the read timeout of
 *   bufferevent_set_timeouts() and the suspension at the read high
 *   watermark work on it as before, and a connection holds no more memory
 *   for it (a parked one gives its bufferevent back as before).
 *
 * Reads only for plain socket bufferevents (bufferevent_socket_new). The
 * writes of a bufferevent whose reads are not io.c's (a TLS one: its bytes
 * go through its SSL) are left to libevent: px_io_send() appends,
 * px_io_flush() reports what waits.
 */
#ifndef CUTOVER_PROXY_IO_H
#define CUTOVER_PROXY_IO_H

#include <stddef.h>

struct bufferevent;
struct evbuffer;

/* Bytes per read: heads and small bodies (the default), bulk data (at most).
 * libevent allocates a chunk of the next power of two above what is asked
 * plus its own header, so 16 and 64 KiB would allocate 32 and 128 KiB (the
 * latter past glibc's mmap threshold): these fit 16 and 64 KiB chunks. */
#define PX_IO_READ_HEAD (16u * 1024u - 128u)
#define PX_IO_READ_MAX  (64u * 1024u - 128u)

/* Moves all of <src> towards <bev>'s socket: written at once while <bev>'s
 * output is empty, the rest appended to the output with the write event
 * armed (also on an error: libevent's write then reports it). */
void px_io_send(struct bufferevent *bev, struct evbuffer *src);

/* Writes what <bev>'s output holds unless the write event is already armed
 * (the socket was full); arms it for what remains, disarms it when the
 * output is empty. Returns the bytes left in the output. */
size_t px_io_flush(struct bufferevent *bev);

/* Reads of <bev> go through io.c from now on, PX_IO_READ_HEAD bytes at
 * most each. libevent points the read event back at its own callback when
 * it assigns the socket: call this after bufferevent_socket_new() with a
 * socket, bufferevent_setfd() with one and bufferevent_socket_connect(). */
void px_io_own_reads(struct bufferevent *bev);

/* The next reads of <bev> take at most <max> bytes each (1..PX_IO_READ_MAX):
 * a relay passes the room left before its destination's backpressure
 * limit, so that no read overshoots it. */
void px_io_read_size(struct bufferevent *bev, size_t max);

#endif
