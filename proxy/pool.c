/*
 * pool: idle keep-alive upstream connections, per server, reused LIFO (the
 * most recently used connection is the most likely to still be open).
 *
 * An idle connection is watched: any byte or event from the server while
 * idle (it closed, reset, or sent something unsolicited) closes it, and so
 * does the pool's idle timer once it was idle pool.idle_timeout_ms (below
 * the usual backend keep-alive times). Only connections whose exchange
 * ended cleanly come back here: the caller never returns one after an
 * error or an incompletely read body. A TLS connection is pooled as it is,
 * its SSL and session with it; its server closing it (close_notify, FIN or
 * reset) is the same event here, and the pool holds connections of the
 * side's current TLS only (a reload that changes it closes them).
 *
 * Nothing of a connection's idle life may reach the request that takes it
 * next. Its callbacks are deferred (BEV_OPT_DEFER_CALLBACKS): an event the
 * loop saw while it was idle (the server's close, a timeout) runs its
 * callback later in the same loop pass, through whatever callbacks the
 * bufferevent has by then; a request that took the connection in between
 * would get it as its own (a 504 in a tenth of a millisecond, counted
 * against the backend). So:
 *  - the idle timeout is not a bufferevent timeout but one timer per server
 *    (its oldest idle connection's deadline), whose callback frees expired
 *    connections directly, never through a deferred callback; a connection
 *    taken out of the list is out of its reach;
 *  - px_pool_get() takes only a connection with nothing pending: one whose
 *    reading was switched off (the read path saw EOF, an error or a
 *    timeout: its event callback is on its way) or that holds input (or,
 *    over TLS, records read ahead that its input does not show yet), or
 *    that outlived the idle timeout, is closed there and the next one
 *    tried; and for a request that could not be resent, one whose server
 *    closed it already (a peek at the socket) as well.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "lib/list.h"
#include "lib/log.h"
#include "lib/xmalloc.h"
#include "lib/timeval.h"
#include "proxy/io.h"
#include "proxy/pool.h"
#include "proxy/server.h"

static void
on_idle_read(struct bufferevent *bev, void *arg)
{
    /* a read callback deferred (BEV_OPT_DEFER_CALLBACKS) before the
     * connection came back here may run now with nothing to read: only
     * bytes mean the server talked */
    if (evbuffer_get_length(bufferevent_get_input(bev)) == 0)
        return;
    /* a server must not talk on an idle connection: never reuse it */
    px_pooled_free(arg);
}

static void
on_idle_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    (void)what;
    px_pooled_free(arg);                  /* closed or reset */
}

/* The idle timeout of server <s>'s pool, as its service says now. */
static uint64_t
idle_ms(const struct px_server_rt *s)
{
    return s->svc->conf->pool.idle_timeout_ms;
}

/* Arms <s>'s idle timer for the deadline of its oldest idle connection. */
static void
arm_idle_timer(struct px_server_rt *s, uint64_t now_ms)
{
    struct px_pooled *oldest;
    uint64_t due;
    struct timeval tv;

    if (list_empty(&s->idle))
        return;
    oldest = px_pooled_of(s->idle.prev);
    due = oldest->since_ms + idle_ms(s);
    tv = tv_ms(due > now_ms ? (unsigned)(due - now_ms) : 0);
    if (evtimer_add(s->idle_timer, &tv) < 0)
        log_at(LL_ERR, "pool", 0, "%s: cannot arm the idle timer: idle connections "
               "close only when the server closes them", s->addr.text);
}

/* Closes the connections of <s> idle for pool.idle_timeout_ms or longer
 * (the oldest are at the tail) and re-arms for the next deadline. */
static void
on_idle_timer(evutil_socket_t fd, short what, void *arg)
{
    struct px_server_rt *s = arg;
    uint64_t now = px_now_ms(s->svc->srv);

    (void)fd;
    (void)what;
    while (!list_empty(&s->idle) && px_pooled_of(s->idle.prev)->since_ms + idle_ms(s) <= now)
        px_pooled_free(px_pooled_of(s->idle.prev));
    arm_idle_timer(s, now);
}

/* False when the server closed, reset or talked on idle connection <fd>
 * (one peek, nothing consumed). */
static bool
still_open(evutil_socket_t fd)
{
    char b;
    ssize_t n;

    do
        n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

struct bufferevent *
px_pool_get(struct px_server_rt *s, const struct px_tls_up *tls, bool check_open)
{
    struct px_pooled *p;
    struct bufferevent *bev;
    uint64_t now;

    if (list_empty(&s->idle) || tls != s->svc->conf->side[s->side].tls)
        return NULL;
    now = px_now_ms(s->svc->srv);
    while (!list_empty(&s->idle)) {
        p = px_pooled_of(s->idle.next);
        bev = p->bev;
        /* reading off: EOF, an error or a timeout was seen and its callback
         * is deferred; input: the server talked; or it is past its time */
        if (!(bufferevent_get_enabled(bev) & EV_READ) ||
            evbuffer_get_length(bufferevent_get_input(bev)) != 0 || px_io_holds(bev) ||
            now - p->since_ms >= idle_ms(s) ||
            (check_open && !still_open(bufferevent_getfd(bev)))) {
            px_pooled_free(p);
            continue;
        }
        p->bev = NULL;
        list_unlink(&p->link);
        s->nidle--;
        list_push(&s->spare, &p->link);    /* its node serves the next px_pool_put() */
        bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
        s->reused++;
        return bev;
    }
    return NULL;
}

void
px_pool_put(struct px_service *svc, struct px_server_rt *s, struct bufferevent *bev,
            const struct px_tls_up *tls)
{
    uint64_t now = px_now_ms(svc->srv);
    struct px_pooled *p;

    /* a detached server (removed by a reload) is never used again */
    if (s->nidle >= svc->conf->pool.max_idle || !s->up || !s->attached ||
        s->svc != svc || svc->retired || svc->srv->stopping ||
        tls != svc->conf->side[s->side].tls ||
        evbuffer_get_length(bufferevent_get_input(bev)) != 0 || px_io_holds(bev) ||
        evbuffer_get_length(bufferevent_get_output(bev)) != 0 ||
        (s->idle_timer == NULL &&
         (s->idle_timer = evtimer_new(svc->srv->base, on_idle_timer, s)) == NULL)) {
        px_io_free(bev);
        return;
    }
    if (!list_empty(&s->spare)) {
        p = px_pooled_of(s->spare.next);
        list_unlink(&p->link);
    } else {
        p = xcalloc(1, sizeof(*p));
    }
    p->srv_rt = s;
    p->bev = bev;
    p->since_ms = now;
    list_push(&s->idle, &p->link);
    s->nidle++;
    bufferevent_setwatermark(bev, EV_READ, 0, 0);
    bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
    bufferevent_setcb(bev, on_idle_read, NULL, on_idle_event, p);
    /* no bufferevent timeout while idle: the pool's timer does it */
    bufferevent_set_timeouts(bev, NULL, NULL);
    /* reading is on after a whole response, mostly: enabling it again
     * would only re-add its event */
    if (!(bufferevent_get_enabled(bev) & EV_READ) && bufferevent_enable(bev, EV_READ) < 0) {
        px_pooled_free(p);
        return;
    }
    /* an armed timer is due for an older connection, so no later than this
     * one's deadline */
    if (!evtimer_pending(s->idle_timer, NULL))
        arm_idle_timer(s, now);
}

void
px_pool_close_side(struct px_service *svc, enum rt_side side)
{
    unsigned i;

    for (i = 0; i < svc->conf->side[side].nservers; i++)
        px_server_rt_close_idle(svc->servers[side][i]);
}
