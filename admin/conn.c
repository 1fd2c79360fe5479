/*
 * conn: see conn.h. One evconnlistener per admin listener; each connection
 * is a bufferevent with two events of its own, a timer and a "resume".
 *
 * Key decisions:
 * - Work per callback is bounded (ops->reqs_per_cb requests); the rest is
 *   picked up by the resume event on the next loop iteration, so a client
 *   that pipelines many requests cannot starve the loop. A client that does
 *   not read its replies stops being read once ops->out_high bytes are
 *   queued, and is read again once they are sent.
 * - The input never holds more than ops->in_max bytes (the read high
 *   watermark): the protocol sizes it so that one maximal request fits and
 *   a longer one is detected with the input full.
 * - One timer per connection serves the request deadline (req_ms from the
 *   accept or a request's first byte), the keep-alive idle limit, the
 *   protocol's hold and the flush limit of a closing connection; a limit of
 *   0 leaves the timer unarmed.
 * - A half-close (EOF) still gets answers to what was sent, then the
 *   connection closes once they are flushed.
 * - A connection is freed only at the tail of one of its own callbacks
 *   (nothing touches it afterwards) or from adm_listener_close().
 * - Over ops->max_conns a new connection is closed at once, and that is
 *   logged once per 100, so a flood does not flood the log.
 */
#include "admin/conn.h"

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "lib/log.h"
#include "lib/xmalloc.h"
#include "lib/timeval.h"

#define ADM_CONN_BACKLOG 16

static void
conn_free(struct adm_conn *c)
{
    list_unlink(&c->node);
    c->lis->nconns--;
    if (c->timer != NULL)
        event_free(c->timer);
    if (c->resume != NULL)
        event_free(c->resume);
    bufferevent_free(c->bev);          /* safe from the bev's own callback */
    free(c);
}

/* (Re)starts the timer for <ms>; 0 stops it. */
static void
conn_arm(struct adm_conn *c, unsigned ms)
{
    struct timeval tv = tv_ms(ms);

    if (ms == 0)
        evtimer_del(c->timer);
    else
        evtimer_add(c->timer, &tv);    /* re-adding replaces the deadline */
}

void
adm_conn_close(struct adm_conn *c)
{
    c->state = ADM_CONN_CLOSING;
    bufferevent_disable(c->bev, EV_READ);
    conn_arm(c, c->lis->ops->flush_ms);
}

void
adm_conn_hold(struct adm_conn *c, unsigned ms)
{
    c->state = ADM_CONN_HELD;
    bufferevent_disable(c->bev, EV_READ);
    conn_arm(c, ms);
}

/* Hands up to ops->reqs_per_cb requests to the protocol. Returns true when
 * another may be ready. */
static bool
conn_process(struct adm_conn *c)
{
    const struct adm_conn_ops *ops = c->lis->ops;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct evbuffer *out = bufferevent_get_output(c->bev);
    unsigned n;

    for (n = 0; c->state == ADM_CONN_OPEN; n++) {
        if (evbuffer_get_length(out) >= ops->out_high) {
            if (!c->is_paused) {
                c->is_paused = true;   /* on_conn_write() resumes */
                bufferevent_disable(c->bev, EV_READ);
            }
            return false;
        }
        if (evbuffer_get_length(in) == 0) {
            if (c->is_eof)
                adm_conn_close(c);
            return false;
        }
        if (n == ops->reqs_per_cb)
            return true;
        if (c->is_idle) {
            /* the request's clock starts with its first byte */
            c->is_idle = false;
            conn_arm(c, ops->req_ms);
        }
        if (!ops->step(c))
            return false;
        if (c->state == ADM_CONN_OPEN) {
            c->is_idle = true;
            conn_arm(c, c->is_eof ? ops->flush_ms : ops->idle_ms);
        }
    }
    return false;
}

/* The common tail of every connection callback: schedules more work or
 * frees <c>. <c> must not be touched after this returns. */
static void
conn_settle(struct adm_conn *c, bool more)
{
    if (c->state == ADM_CONN_CLOSING) {
        if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
            conn_free(c);
        /* else on_conn_write() frees it when the output is sent */
        return;
    }
    if (more && c->state == ADM_CONN_OPEN)
        event_active(c->resume, EV_TIMEOUT, 1);
}

static void
on_conn_read(struct bufferevent *bev, void *arg)
{
    struct adm_conn *c = arg;

    conn_settle(c, conn_process(c));
}

static void
on_conn_resume(evutil_socket_t fd, short what, void *arg)
{
    struct adm_conn *c = arg;

    conn_settle(c, conn_process(c));
}

/* Runs when the output is fully sent (write low watermark 0). */
static void
on_conn_write(struct bufferevent *bev, void *arg)
{
    struct adm_conn *c = arg;
    bool more = false;

    if (c->is_paused && c->state == ADM_CONN_OPEN) {
        c->is_paused = false;
        if (!c->is_eof && bufferevent_enable(c->bev, EV_READ) != 0)
            adm_conn_close(c);
        else
            more = conn_process(c);
    }
    conn_settle(c, more);
}

static void
on_conn_event(struct bufferevent *bev, short what, void *arg)
{
    struct adm_conn *c = arg;

    if (what & BEV_EVENT_EOF) {
        /* half-close: answer what was sent, then close once flushed */
        c->is_eof = true;
        bufferevent_disable(bev, EV_READ);
        conn_settle(c, c->state == ADM_CONN_OPEN ? conn_process(c) : false);
        return;
    }
    if (what & BEV_EVENT_ERROR) {
        log_at(LL_DEBUG, "admin", 0, "%s connection %s: %s", c->lis->ops->name, c->peer,
               evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        conn_free(c);                  /* nothing can be sent any more */
    }
}

static void
on_conn_timer(evutil_socket_t fd, short what, void *arg)
{
    struct adm_conn *c = arg;

    if (c->state == ADM_CONN_CLOSING              /* the peer does not read: give up */
        || (c->state == ADM_CONN_OPEN && c->is_idle)
        || c->lis->ops->expire == NULL) {
        conn_free(c);
        return;
    }
    c->lis->ops->expire(c);
    conn_settle(c, false);
}

static void
on_accept(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
          int salen, void *arg)
{
    struct adm_listener *l = arg;
    const struct adm_conn_ops *ops = l->ops;
    struct adm_conn *c;

    if (l->nconns >= ops->max_conns) {
        if (l->refused++ % 100 == 0)
            log_at(LL_WARN, "admin", 0, "%u %s connections open: closing another "
                   "(%lu so far)", l->nconns, ops->name, l->refused);
        evutil_closesocket(fd);
        return;
    }
    c = xcalloc(1, ops->size);
    c->lis = l;
    c->state = ADM_CONN_OPEN;
    c->bev = bufferevent_socket_new(l->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (c->bev == NULL) {
        evutil_closesocket(fd);
        free(c);
        log_at(LL_WARN, "admin", 0, "cannot set up an %s connection", ops->name);
        return;
    }
    /* on the list from here: conn_free() undoes everything below */
    list_push(&l->conns, &c->node);
    l->nconns++;
    c->timer = evtimer_new(l->base, on_conn_timer, c);
    c->resume = event_new(l->base, -1, 0, on_conn_resume, c);
    if (c->timer == NULL || c->resume == NULL || ops->accept(c, fd, sa, salen) != 0)
        goto fail;
    bufferevent_setcb(c->bev, on_conn_read, on_conn_write, on_conn_event, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, ops->in_max);
    if (bufferevent_enable(c->bev, EV_READ) != 0)
        goto fail;
    conn_arm(c, ops->req_ms);
    return;

fail:
    conn_free(c);
    log_at(LL_WARN, "admin", 0, "cannot set up an %s connection", ops->name);
}

static void
on_accept_error(struct evconnlistener *lev, void *arg)
{
    struct adm_listener *l = arg;

    /* EMFILE and friends: keep listening, the next accept may succeed */
    log_at(LL_WARN, "admin", 0, "accept on %s: %s", l->ops->listener,
           evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

void
adm_listener_init(struct adm_listener *l, struct event_base *base,
                  const struct adm_conn_ops *ops, void *owner)
{
    l->base = base;
    l->ops = ops;
    l->owner = owner;
    l->lev = NULL;
    list_init(&l->conns);
    l->nconns = 0;
    l->refused = 0;
}

int
adm_listener_listen_fd(struct adm_listener *l, evutil_socket_t fd)
{
    /* evconnlistener_new() calls listen(); with CLOSE_ON_FREE it owns <fd>
     * from here on, but only when it succeeds */
    l->lev = evconnlistener_new(l->base, on_accept, l,
                                LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_CLOSE_ON_FREE,
                                ADM_CONN_BACKLOG, fd);
    if (l->lev == NULL)
        return -1;
    evconnlistener_set_error_cb(l->lev, on_accept_error);
    return 0;
}

int
adm_listener_listen_addr(struct adm_listener *l, const struct sockaddr *sa,
                         socklen_t salen)
{
    l->lev = evconnlistener_new_bind(l->base, on_accept, l,
                                     LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC
                                     | LEV_OPT_REUSEABLE,
                                     ADM_CONN_BACKLOG, sa, (int)salen);
    if (l->lev == NULL)
        return -1;
    evconnlistener_set_error_cb(l->lev, on_accept_error);
    return 0;
}

void
adm_listener_close(struct adm_listener *l)
{
    while (!list_empty(&l->conns))
        conn_free(list_entry(l->conns.next, struct adm_conn, node));
    if (l->lev != NULL)
        evconnlistener_free(l->lev);
    l->lev = NULL;
}
