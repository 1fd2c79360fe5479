/*
 * pool: idle keep-alive upstream connections, per server, reused LIFO (the
 * most recently used connection is the most likely to still be open).
 *
 * An idle connection is watched: any byte or event from the server while
 * idle (it closed, reset, or sent something unsolicited) and the idle
 * timeout (pool.idle_timeout_ms, below the usual backend keep-alive times)
 * close it. Only connections whose exchange ended cleanly come back here:
 * the caller never returns one after an error or an incompletely read body.
 * A TLS connection is pooled as it is, its SSL and session with it; its
 * server closing it (close_notify, FIN or reset) is the same event here.
 */
#include <stdlib.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "lib/list.h"
#include "lib/log.h"
#include "lib/xmalloc.h"
#include "lib/timeval.h"
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
    px_pooled_free(arg);                  /* closed, reset or idle timeout */
}

struct bufferevent *
px_pool_get(struct px_server_rt *s, const struct px_tls_up *tls)
{
    struct px_pooled *p;
    struct bufferevent *bev;

    if (list_empty(&s->idle) || tls != s->svc->conf->side[s->side].tls)
        return NULL;
    p = px_pooled_of(s->idle.next);
    bev = p->bev;
    p->bev = NULL;
    list_unlink(&p->link);
    s->nidle--;
    list_push(&s->spare, &p->link);    /* its node serves the next px_pool_put() */
    bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
    bufferevent_set_timeouts(bev, NULL, NULL);
    s->reused++;
    return bev;
}

void
px_pool_put(struct px_service *svc, struct px_server_rt *s, struct bufferevent *bev,
            const struct px_tls_up *tls)
{
    unsigned ms = svc->conf->pool.idle_timeout_ms;
    struct timeval tv = tv_ms(ms);
    struct px_pooled *p;

    /* a detached server (removed by a reload) is never used again */
    if (s->nidle >= svc->conf->pool.max_idle || !s->up || !s->attached ||
        s->svc != svc || svc->retired || svc->srv->stopping ||
        tls != svc->conf->side[s->side].tls ||
        evbuffer_get_length(bufferevent_get_input(bev)) != 0 ||
        evbuffer_get_length(bufferevent_get_output(bev)) != 0) {
        bufferevent_free(bev);
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
    list_push(&s->idle, &p->link);
    s->nidle++;
    bufferevent_setwatermark(bev, EV_READ, 0, 0);
    bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
    bufferevent_setcb(bev, on_idle_read, NULL, on_idle_event, p);
    bufferevent_set_timeouts(bev, &tv, NULL);
    if (bufferevent_enable(bev, EV_READ) < 0)
        px_pooled_free(p);
}

void
px_pool_close_side(struct px_service *svc, enum rt_side side)
{
    unsigned i;

    for (i = 0; i < svc->conf->side[side].nservers; i++)
        px_server_rt_close_idle(svc->servers[side][i]);
}
