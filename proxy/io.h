/*
 * io: the socket side of the data plane's bufferevents, done with fewer
 * system calls than libevent 2.1 makes on its own.
 *
 * - Writes go straight to the socket when nothing waits in the output
 *   (px_io_send, px_io_flush); the write event is armed only for what the
 *   socket did not take, so a response that fits costs one writev and no
 *   epoll_ctl (libevent arms the write event whenever output is queued and
 *   removes it once drained: two epoll_ctl per write).
 * - Reads: libevent 2.1 reads at most 4096 bytes per wakeup (and asks
 *   FIONREAD first). px_io_read_more() reads on into the input in one
 *   readv when that first read came back full, so bulk data moves in
 *   chunks of up to PX_IO_READ_MAX.
 *
 * Only for plain socket bufferevents (bufferevent_socket_new).
 */
#ifndef CUTOVER_PROXY_IO_H
#define CUTOVER_PROXY_IO_H

#include <stddef.h>
#include <sys/types.h>

struct bufferevent;
struct evbuffer;

#define PX_IO_READ_MAX (64u * 1024u) /* bytes read on in one px_io_read_more() */

/* Moves all of <src> towards <bev>'s socket: written at once while <bev>'s
 * output is empty, the rest appended to the output with the write event
 * armed (also on an error: libevent's write then reports it). */
void px_io_send(struct bufferevent *bev, struct evbuffer *src);

/* Writes what <bev>'s output holds unless the write event is already armed
 * (the socket was full); arms it for what remains, disarms it when the
 * output is empty. Returns the bytes left in the output. */
size_t px_io_flush(struct bufferevent *bev);

/* Called in a read callback: when <bev>'s input holds at least one full
 * libevent read (4096 bytes), reads on into it, at most <max> bytes, in one
 * readv. Returns the bytes read, 0 when it did not read or found nothing,
 * -1 on a socket error (errno set; the error was consumed: the caller must
 * act on it, libevent will see only EOF). EOF is left for libevent to see. */
ssize_t px_io_read_more(struct bufferevent *bev, size_t max);

#endif
