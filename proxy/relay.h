/*
 * relay: bytes moved from one bufferevent to another with back-pressure,
 * for the HTTP upgrade tunnel (proxy/http.c), the TCP tunnel when it does
 * not splice (proxy/tcp.c), and the bodies of an HTTP exchange, which use
 * the same limit.
 *
 * Back-pressure of one direction: once the destination's output holds
 * PX_RELAY_HIGH_WM bytes the source stops reading, and the destination's
 * write low watermark is set to half of that; its write callback then
 * calls px_relay_drained(), which lets the source read again (half of the
 * limit is room for more than a read). Below the limit the source reads
 * at most what is left below it (io.h), so that no read overshoots it.
 * Writes go straight to the socket while nothing waits in the output
 * (io.h), so the write event, and the write callback, come only when a
 * socket did not take all.
 *
 * A tunnel is idle when neither direction moved a byte for its idle time:
 * px_relay_timeout() tells a timeout of one peer from that.
 *
 * The calls made per read are inline here: they are the hot path of every
 * relayed byte.
 */
#ifndef CUTOVER_PROXY_RELAY_H
#define CUTOVER_PROXY_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "proxy/io.h"

/* Bytes queued towards one peer before the other stops being read. */
#define PX_RELAY_HIGH_WM (256u * 1024u)

/* Back-pressure of one direction once <to>'s output holds <queued> bytes:
 * <from> reads at most <max> bytes per read and never more than is left
 * below PX_RELAY_HIGH_WM; at the limit it stops reading until <to> drained
 * to half of it. Returns true while <from> may read. */
static inline bool
px_relay_room(struct bufferevent *from, struct bufferevent *to, size_t queued, size_t max)
{
    if (queued >= PX_RELAY_HIGH_WM) {
        bufferevent_disable(from, EV_READ);
        bufferevent_setwatermark(to, EV_WRITE, PX_RELAY_HIGH_WM / 2, 0);
        return false;
    }
    px_io_read_size(from, PX_RELAY_HIGH_WM - queued < max ? PX_RELAY_HIGH_WM - queued : max);
    return true;
}

/* Moves what <from> has read to <to>, straight to <to>'s socket while its
 * output is empty, with back-pressure. Returns the bytes moved. */
static inline size_t
px_relay_move(struct bufferevent *from, struct bufferevent *to)
{
    struct evbuffer *src = bufferevent_get_input(from);
    size_t n = evbuffer_get_length(src);

    px_io_send(to, src);
    (void)px_relay_room(from, to, evbuffer_get_length(bufferevent_get_output(to)),
                        PX_IO_READ_MAX);
    return n;
}

/* <bev>'s write callback: its output drained below the low watermark, so
 * <peer> reads again, <read_max> bytes per read, unless <peer_reads> is
 * false (it already sent its EOF). */
void px_relay_drained(struct bufferevent *bev, struct bufferevent *peer, size_t read_max,
                      bool peer_reads);

/* A read or write timeout of <bev>, a peer of a tunnel whose last byte in
 * either direction moved <quiet_ms> ago. Returns true when that is
 * <idle_ms> or more (the tunnel is idle: close it); else enables the
 * direction that timed out again (libevent disabled it; reading only when
 * <reads>) and returns false. */
bool px_relay_timeout(struct bufferevent *bev, short what, uint64_t quiet_ms, unsigned idle_ms,
                      bool reads);

#endif
