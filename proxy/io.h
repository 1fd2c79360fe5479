/*
 * io: the socket side of the data plane's bufferevents, done with fewer
 * system calls than libevent 2.1 makes on its own, plain or TLS.
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
 * - TLS: a TLS connection is a socket bufferevent too, whose read and write
 *   events px_io_own_tls() pointed at io.c with its struct px_tls_io
 *   (proxy/tls_io.h): the same reads and direct writes, in records, so a
 *   small response is one record and one write(2) with no epoll_ctl, and the
 *   write event, when a socket is full, writes records too. Everything
 *   above sees a plain bufferevent: enable/disable, timeouts, watermarks,
 *   callbacks, parking (px_io_detach() gives the TLS side back with the
 *   socket, px_io_own_tls() puts it on another bufferevent). A client
 *   (upstream) connection connects with px_io_connect(), which also runs
 *   its handshake and reports BEV_EVENT_CONNECTED after it. A TLS
 *   bufferevent is freed with px_io_free(), which frees its SSL.
 *
 * The direct paths are only for the bufferevents whose reads io.c owns.
 * Any other (health checks' bufferevent_openssl ones) may be handed to
 * px_io_send and px_io_flush all the same: its output is left to libevent
 * (the write event enabled while output waits), never written here.
 */
#ifndef CUTOVER_PROXY_IO_H
#define CUTOVER_PROXY_IO_H

#include <stdbool.h>
#include <stddef.h>

struct bufferevent;
struct evbuffer;
struct px_tls_io;
struct sockaddr;

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

/* Switches reading of <bev> on unless it is on: a bufferevent's enable
 * re-adds its read event (and reads the clock for its timeout) even then,
 * right after bufferevent_set_timeouts() re-added it. */
void px_io_read_on(struct bufferevent *bev);

/* Clears <bev>'s write watermarks unless they are clear: libevent's call
 * re-checks the output and its callbacks every time. */
void px_io_write_marks_off(struct bufferevent *bev);

/* The input of <bev> holds at most <limit> bytes (0: no limit): its reads
 * stop there and wait until the input is drained below it. The read high
 * watermark, without the input callback libevent installs for it, which
 * re-adds the read event (and reads the clock for its timeout) at every
 * change of the input: reads are bounded by it here (io.c), and reading
 * is suspended through libevent's watermark only once the input is full.
 * Only for a bufferevent whose reads are io.c's. */
void px_io_read_limit(struct bufferevent *bev, size_t limit);

/* Reads <bev>'s socket now, as its read event would when it fires (the
 * callbacks run from inside this call), if its reads are io.c's and
 * reading is on: for a socket just accepted, whose first bytes are often
 * there already, so they are served before the socket is ever polled.
 * Nothing when the socket has nothing yet. */
void px_io_read_now(struct bufferevent *bev);

/* The next reads of <bev> take at most <max> bytes each (1..PX_IO_READ_MAX):
 * a relay passes the room left before its destination's backpressure
 * limit, so that no read overshoots it. */
void px_io_read_size(struct bufferevent *bev, size_t max);

/* From now on <bev>, a socket bufferevent on the socket of <tls>'s SSL,
 * reads and writes through TLS <tls> (owned by <bev> from now on): an open
 * connection (its handshake done), or a client one to be connected by
 * px_io_connect(). Its reads take PX_IO_READ_HEAD bytes at most. */
void px_io_own_tls(struct bufferevent *bev, struct px_tls_io *tls);

/* The TLS side of <bev>, or NULL for a plain one. */
struct px_tls_io *px_io_tls(const struct bufferevent *bev);

/* Takes the socket away from <bev> (left open, both events off, <bev>
 * plain again, as bufferevent_setfd(bev, -1)); returns its TLS side, now
 * the caller's, or NULL. */
struct px_tls_io *px_io_detach(struct bufferevent *bev);

/* bufferevent_socket_connect() of <bev>, whose socket is set, to <sa>:
 * a plain one then reads through io.c; a TLS one runs its handshake after
 * the connect and reports BEV_EVENT_CONNECTED only then (the connect and
 * the handshake together within the write timeout set before), a failure
 * as BEV_EVENT_ERROR or BEV_EVENT_TIMEOUT. A refused connect is reported
 * through the loop; 0, or -1 with errno for a failure at once. */
int px_io_connect(struct bufferevent *bev, const struct sockaddr *sa, int salen);

/* Reading of <bev> was switched on again outside a callback of proxy/http.c
 * (whose callbacks end in px_io_flush(), which does this): when its TLS
 * side holds records read ahead, or the end of its stream, the read event
 * runs now, as no socket event will say so. Nothing for a plain one. */
void px_io_kick(struct bufferevent *bev);

/* Whether <bev> read from its socket more than its input shows (a TLS
 * side's records read ahead, or the end of its stream, still in the SSL):
 * false for a plain one. */
bool px_io_holds(const struct bufferevent *bev);

/* bufferevent_free(), and the TLS side with its SSL. */
void px_io_free(struct bufferevent *bev);

/* ---- the descriptor reserve ------------------------------------------ */

/* Running out of descriptors must starve the clients first, never the
 * control plane: the health checks (a check that cannot open a socket
 * would mark a healthy server down), the state and audit writes (an
 * automatic rollback must be saved and audited) and the admin paths. The
 * kernel hands out the lowest free descriptor, so a descriptor numbered N
 * means all below N are taken: the data plane keeps a client connection
 * only below clients_max and opens an upstream socket or a splice pipe only
 * below data_max, and whatever lies above data_max is only ever the control
 * plane's. With limit = RLIMIT_NOFILE (soft), R = limit / 8 within
 * [8, 1024]: data_max = limit - R, clients_max = limit - 2R (so at 256,
 * clients below 192, upstreams below 224, the last 32 for the rest). */
struct px_fd_marks {
    unsigned limit;              /* RLIMIT_NOFILE; 0: unknown or unlimited, no marks */
    unsigned data_max;           /* sockets and pipes of the data plane: below this */
    unsigned clients_max;        /* client connections: below this */
};

/* Reads RLIMIT_NOFILE and sets the marks: once, in main() before any
 * worker starts (until then nothing is refused). */
void px_io_fd_reserve_init(void);

const struct px_fd_marks *px_io_fd_marks(void);

/* ThreadSanitizer (make tsan) only; nothing otherwise. tests/tsan.supp
 * ignores what libevent calls, so TSan never sees a descriptor that
 * libevent accepts or closes (an evconnlistener's accept, the close of a
 * bufferevent freed with BEV_OPT_CLOSE_ON_FREE), while it does see
 * cutoverd's own socket(), recvmsg(), sendmsg() and close(). A number one
 * loop used and closed through libevent and another loop then accepted
 * through libevent would look to TSan like one descriptor shared by two
 * threads. px_io_fd_closing() before every close of a data-plane socket
 * and px_io_fd_opened() once one is accepted or made order the number's
 * lives as the kernel does: its last close before its next use. */
#if defined(__SANITIZE_THREAD__)
void px_io_fd_closing(int fd);
void px_io_fd_opened(int fd);
#else
static inline void
px_io_fd_closing(int fd)
{
    (void)fd;
}

static inline void
px_io_fd_opened(int fd)
{
    (void)fd;
}
#endif

/* Closes data-plane socket <fd> that no bufferevent holds (TSan told first). */
void px_io_close(int fd);

/* True when descriptor <fd> may be kept for a client connection / for a
 * socket or pipe of the data plane. */
bool px_io_fd_client_ok(int fd);
bool px_io_fd_data_ok(int fd);

/* A new non-blocking, close-on-exec stream socket of <family> for an
 * upstream connection, or -1 with errno; EMFILE also when it would have
 * taken a descriptor of the reserve (it is closed again). */
int px_io_socket(int family);

#endif
