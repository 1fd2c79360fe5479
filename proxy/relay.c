/*
 * relay: the back-pressure calls that run once per episode, not per read
 * (see relay.h).
 */
#include "proxy/relay.h"

void
px_relay_drained(struct bufferevent *bev, struct bufferevent *peer, size_t read_max,
                 bool peer_reads)
{
    bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
    px_io_read_size(peer, read_max);
    if (peer_reads) {
        bufferevent_enable(peer, EV_READ);
        px_io_kick(peer);              /* what its SSL read ahead */
    }
}

bool
px_relay_timeout(struct bufferevent *bev, short what, uint64_t quiet_ms, unsigned idle_ms,
                 bool reads)
{
    if (quiet_ms >= idle_ms)
        return true;
    if ((what & BEV_EVENT_READING) && reads)
        bufferevent_enable(bev, EV_READ);
    if (what & BEV_EVENT_WRITING)
        bufferevent_enable(bev, EV_WRITE);
    return false;
}
