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
 * - One timer per connection serves the request deadline (its pool's
 *   req_ms from the accept or a request's first byte), the keep-alive idle
 *   limit, the protocol's hold and the flush limit of a closing
 *   connection; a limit of 0 leaves the timer unarmed. Output that makes no
 *   progress for ops->flush_ms is the bufferevent's write timeout: a peer
 *   that stops reading is dropped whatever state it is in.
 * - A full pool never refuses (the rules are struct adm_pool_limits'):
 *   the list of connections is kept in the order of their usefulness (a
 *   connection moves to the tail when accepted and after each request it
 *   had handled), so the eviction takes the oldest silent connection, or
 *   the least recently used one. Every connection has its grace to send a
 *   first request: below the hard limit, only connections past it that
 *   never had a request handled are evicted, so a flood of connections
 *   that send nothing (or a byte at a time), reopened as fast as they are
 *   closed, turns over at most once per grace period and never evicts an
 *   operator's new connection before it could speak, nor `cutoverctl
 *   watch`. Over the hard limit the newcomer's own peer, else the peer
 *   holding the most connections, pays: a flood from one process or
 *   address never evicts anybody else's connection. Untrusted
 *   connections cannot evict trusted ones: the pools are separate.
 * - A connection that sends its request with the connection (cutoverctl,
 *   curl) is answered even under a storm of new connections: its input is
 *   read once at the accept and a request already there is handled at once;
 *   at most ADM_CONN_ACCEPTS_PER_CB connections are accepted per loop turn,
 *   so those accepted are read before more come; and a connection chosen
 *   for eviction that never had a request handled gets a last read first:
 *   a complete request there is handled (it is no longer evicted), only a
 *   silent or incomplete one is closed.
 * - The listener is disabled after ADM_CONN_ACCEPTS_PER_CB accepts (libevent
 *   2.1's accept loop stops there) and enabled again by a timer due at the
 *   next loop turn; after an accept error (descriptors, memory) the same
 *   timer waits ADM_CONN_PAUSE_MS (logged once per 10 s), where a
 *   level-triggered listener would spin and log at every turn. The accepts
 *   stay libevent's, as the data plane's are (see tests/tsan.supp).
 * - A half-close (EOF) still gets answers to what was sent, then the
 *   connection closes once they are flushed.
 * - A connection is freed only at the tail of one of its own callbacks
 *   (nothing touches it afterwards), from adm_listener_close(), or as the
 *   victim of an eviction, which runs from the listener's callback or from
 *   another connection's (adm_conn_trust()): the loop runs one callback at
 *   a time and the victim is never the caller. A victim's last read handles
 *   its request from there too, with the same tail (conn_settle()).
 * - Evictions are logged once per 100, so a flood does not flood the log.
 * - A stream (adm_conn_stream(), the dashboard's events) is a reply with
 *   no end: no request or idle limit, input discarded, the peer's EOF
 *   frees it, and the write timeout still drops a peer that stops reading;
 *   ops->release() tells the protocol whenever a connection goes.
 */
#include "admin/conn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "lib/log.h"
#include "lib/xmalloc.h"
#include "lib/timeval.h"

#define ADM_CONN_BACKLOG        128
#define ADM_CONN_ACCEPTS_PER_CB 4      /* accepts per loop turn */
#define ADM_CONN_PAUSE_MS       250    /* no accept after EMFILE, ENFILE, ENOMEM... */
#define ADM_CONN_ERR_LOG_S      10     /* one accept-error line per this many seconds */

static const char *const pool_names[ADM_POOL__COUNT] = { "untrusted", "trusted" };

static const struct adm_pool_limits *
conn_limits(const struct adm_conn *c)
{
    return &c->lis->ops->pool[c->pool];
}

static void
conn_free(struct adm_conn *c)
{
    if (c->state == ADM_CONN_WAITING && c->lis->ops->gone != NULL)
        c->lis->ops->gone(c);
    if (c->lis->ops->release != NULL)
        c->lis->ops->release(c);
    list_unlink(&c->node);
    c->lis->nconns--;
    c->lis->npool[c->pool]--;
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

static unsigned long long
mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000 + (unsigned long long)ts.tv_nsec / 1000000;
}

/* The connection of <pool> of the peer <key> to evict: its oldest still in
 * its grace, else its least recently used. NULL when it has none. */
static struct adm_conn *
peer_victim(struct adm_listener *l, enum adm_pool pool, const struct adm_conn *keep,
            unsigned long long key)
{
    struct adm_conn *c, *served = NULL;
    struct list *n;

    for (n = l->conns.next; n != &l->conns; n = n->next) {
        c = list_entry(n, struct adm_conn, node);
        if (c == keep || c->pool != pool || c->peer_key != key)
            continue;
        if (!c->is_served)
            return c;
        if (served == NULL)
            served = c;
    }
    return served;
}

/* The peer key that has the most connections of <pool> but <keep>, and
 * how many in <*count>. */
static unsigned long long
largest_peer(struct adm_listener *l, enum adm_pool pool, const struct adm_conn *keep,
             unsigned *count)
{
    struct adm_conn *c, *d;
    struct list *n, *m;
    unsigned long long best = 0;
    unsigned k;

    *count = 0;
    for (n = l->conns.next; n != &l->conns; n = n->next) {
        c = list_entry(n, struct adm_conn, node);
        if (c == keep || c->pool != pool || (*count > 0 && c->peer_key == best))
            continue;
        for (k = 0, m = l->conns.next; m != &l->conns; m = m->next) {
            d = list_entry(m, struct adm_conn, node);
            k += d != keep && d->pool == pool && d->peer_key == c->peer_key;
        }
        if (k > *count) {
            *count = k;
            best = c->peer_key;
        }
    }
    return best;
}

/* The connection of pool <pool> to evict for <keep> (never <keep> itself)
 * at <now>, in the order of struct adm_pool_limits; <hard> when the pool
 * is over its hard_conns. NULL when there is none to evict. The list is in
 * accept order among those that never had a request handled (they never
 * move), in the order of their last request among the others. */
static struct adm_conn *
pick_victim(struct adm_listener *l, enum adm_pool pool, const struct adm_conn *keep,
            unsigned long long now, bool hard)
{
    struct adm_conn *c, *fresh = NULL, *served = NULL;
    struct list *n;
    unsigned long long key;
    unsigned count;

    for (n = l->conns.next; n != &l->conns; n = n->next) {
        c = list_entry(n, struct adm_conn, node);
        if (c == keep || c->pool != pool)
            continue;
        if (!c->is_served && now - c->accepted_ms >= l->ops->grace_ms)
            return c;                  /* the oldest that had its chance */
        if (c->is_served && served == NULL)
            served = c;
        if (!c->is_served && fresh == NULL)
            fresh = c;
    }
    if (!hard)
        return NULL;
    if ((c = peer_victim(l, pool, keep, keep->peer_key)) != NULL)
        return c;                      /* the newcomer's own peer pays */
    key = largest_peer(l, pool, keep, &count);
    if (count > 1)
        return peer_victim(l, pool, keep, key);    /* else the one that holds most */
    return served != NULL ? served : fresh;
}

static bool conn_process(struct adm_conn *c);
static void conn_settle(struct adm_conn *c, bool more);

/* Reads what the peer of <c> sent, at most what the input may hold: the
 * bufferevent keeps the end of its input frozen but for its own reads, and
 * this is one of those. Returns what evbuffer_read() returned; EOF and
 * errors are left to the bufferevent, which sees them again. */
static int
conn_read_now(struct adm_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t have = evbuffer_get_length(in);
    int n = -1;

    if (have < c->lis->ops->in_max) {
        evbuffer_unfreeze(in, 0);
        n = evbuffer_read(in, bufferevent_getfd(c->bev),
                          (int)(c->lis->ops->in_max - have));
        evbuffer_freeze(in, 0);
    }
    return n;
}

/* <v>'s last chance before it is evicted: when it is reading requests and
 * never had one handled, what it sent meanwhile is read and a complete
 * request there is handled (its reply queued). Returns true when that
 * saved it (it had one handled, or it went by itself): pick again. */
static bool
last_chance(struct adm_conn *v)
{
    bool more;

    if (v->is_served || v->state != ADM_CONN_OPEN || v->is_paused)
        return false;
    if (conn_read_now(v) <= 0 && evbuffer_get_length(bufferevent_get_input(v->bev)) == 0)
        return false;
    more = conn_process(v);
    if (!v->is_served && v->state == ADM_CONN_OPEN)
        return false;                  /* nothing complete: it goes */
    conn_settle(v, more);              /* may free it: not touched below */
    return true;
}

/* Makes room in <keep>'s pool while it is over its limits, evicting others
 * of the pool (struct adm_pool_limits). */
static void
make_room(struct adm_listener *l, const struct adm_conn *keep)
{
    const struct adm_conn_ops *ops = l->ops;
    enum adm_pool pool = keep->pool;
    const struct adm_pool_limits *lim = &ops->pool[pool];
    unsigned long long now = mono_ms();
    struct adm_conn *v;

    while (l->npool[pool] > lim->max_conns
           && (v = pick_victim(l, pool, keep, now,
                               l->npool[pool] > lim->hard_conns)) != NULL) {
        if (last_chance(v))
            continue;
        if (l->evicted++ % 100 == 0)
            log_at(LL_WARN, "admin", 0, "%u %s %s connections open (limit %u, at most %u): "
                   "closed one for a new one: %s, %s (%lu so far)", l->npool[pool],
                   pool_names[pool], ops->name, lim->max_conns, lim->hard_conns, v->peer,
                   v->is_served ? "least recently used"
                   : now - v->accepted_ms >= ops->grace_ms ? "no request in time"
                   : "the oldest new one", l->evicted);
        conn_free(v);
    }
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

void
adm_conn_stream(struct adm_conn *c)
{
    c->state = ADM_CONN_STREAM;
    c->is_idle = false;
    conn_arm(c, 0);
}

void
adm_conn_abort(struct adm_conn *c)
{
    conn_free(c);
}

void
adm_conn_wait(struct adm_conn *c, unsigned ms)
{
    c->state = ADM_CONN_WAITING;
    bufferevent_disable(c->bev, EV_READ);
    conn_arm(c, ms);
}

void
adm_conn_done(struct adm_conn *c)
{
    if (c->state != ADM_CONN_WAITING)
        return;
    c->state = ADM_CONN_OPEN;
    c->is_idle = true;
    conn_arm(c, c->is_eof ? c->lis->ops->flush_ms : conn_limits(c)->idle_ms);
    if (!c->is_eof && !c->is_paused && bufferevent_enable(c->bev, EV_READ) != 0) {
        adm_conn_close(c);
        return;
    }
    event_active(c->resume, EV_TIMEOUT, 1);
}

void
adm_conn_trust(struct adm_conn *c)
{
    struct adm_listener *l = c->lis;

    if (c->pool == ADM_POOL_TRUSTED)
        return;
    l->npool[c->pool]--;
    c->pool = ADM_POOL_TRUSTED;
    l->npool[c->pool]++;
    make_room(l, c);
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
            conn_arm(c, conn_limits(c)->req_ms);
        }
        if (!ops->step(c))
            return false;
        /* useful: to the tail of the eviction order */
        c->is_served = true;
        list_unlink(&c->node);
        list_append(&c->lis->conns, &c->node);
        if (c->state == ADM_CONN_OPEN) {
            c->is_idle = true;
            conn_arm(c, c->is_eof ? ops->flush_ms : conn_limits(c)->idle_ms);
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
    struct evbuffer *in = bufferevent_get_input(bev);

    if (c->state == ADM_CONN_STREAM) {
        evbuffer_drain(in, evbuffer_get_length(in));    /* nothing more is asked */
        return;
    }
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

    if (what & BEV_EVENT_TIMEOUT) {
        /* the write timeout: output made no progress for flush_ms */
        c->lis->timed_out++;
        log_at(LL_DEBUG, "admin", 0, "%s connection %s does not read its replies: "
               "closed after %u ms", c->lis->ops->name, c->peer, c->lis->ops->flush_ms);
        conn_free(c);
        return;
    }
    if ((what & BEV_EVENT_EOF) && c->state == ADM_CONN_STREAM) {
        conn_free(c);                  /* a stream's reader went away */
        return;
    }
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

    if (c->state != ADM_CONN_HELD)     /* a hold's end is the protocol's, not a limit */
        c->lis->timed_out++;
    if (c->state == ADM_CONN_CLOSING              /* the peer does not read: give up */
        || (c->state == ADM_CONN_OPEN && c->is_idle)
        || c->lis->ops->expire == NULL) {
        conn_free(c);
        return;
    }
    c->lis->ops->expire(c);
    conn_settle(c, false);
}

/* Frees <c> before it was counted and listed (a failed accept). */
static void
conn_discard(struct adm_conn *c)
{
    if (c->timer != NULL)
        event_free(c->timer);
    if (c->resume != NULL)
        event_free(c->resume);
    bufferevent_free(c->bev);
    free(c);
}

/* Sets up the accepted connection <fd> from <sa>. */
static void
conn_accept(struct adm_listener *l, evutil_socket_t fd, struct sockaddr *sa, int salen)
{
    const struct adm_conn_ops *ops = l->ops;
    struct timeval flush = tv_ms(ops->flush_ms);
    struct adm_conn *c;

    c = xcalloc(1, ops->size);
    c->lis = l;
    c->state = ADM_CONN_OPEN;
    c->pool = ADM_POOL_UNTRUSTED;
    c->accepted_ms = mono_ms();
    list_init(&c->node);
    c->bev = bufferevent_socket_new(l->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (c->bev == NULL) {
        evutil_closesocket(fd);
        free(c);
        log_at(LL_WARN, "admin", 0, "cannot set up an %s connection", ops->name);
        return;
    }
    c->timer = evtimer_new(l->base, on_conn_timer, c);
    c->resume = event_new(l->base, -1, 0, on_conn_resume, c);
    if (c->timer == NULL || c->resume == NULL || ops->accept(c, fd, sa, salen) != 0) {
        conn_discard(c);
        log_at(LL_WARN, "admin", 0, "cannot set up an %s connection", ops->name);
        return;
    }
    /* counted and listed from here: conn_free() undoes everything */
    list_append(&l->conns, &c->node);
    l->nconns++;
    l->npool[c->pool]++;               /* the pool ops->accept() chose */
    bufferevent_setcb(c->bev, on_conn_read, on_conn_write, on_conn_event, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, ops->in_max);
    bufferevent_set_timeouts(c->bev, NULL, ops->flush_ms > 0 ? &flush : NULL);
    if (bufferevent_enable(c->bev, EV_READ) != 0) {
        conn_free(c);
        log_at(LL_WARN, "admin", 0, "cannot set up an %s connection", ops->name);
        return;
    }
    conn_arm(c, conn_limits(c)->req_ms);
    make_room(l, c);
    /* a request that came with the connection is handled now */
    if (conn_read_now(c) > 0)
        conn_settle(c, conn_process(c));
}

/* The next loop turn, or ADM_CONN_PAUSE_MS after an accept error. */
static void
on_accept_resume(evutil_socket_t fd, short what, void *arg)
{
    struct adm_listener *l = arg;

    l->turn_accepts = 0;
    if (evconnlistener_enable(l->lev) != 0)
        log_at(LL_ERR, "admin", 0, "cannot accept on %s any more", l->ops->listener);
}

static void
on_accept(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
          int salen, void *arg)
{
    static const struct timeval next_turn = { 0, 0 };
    struct adm_listener *l = arg;

    /* libevent's accept loop stops once the listener is disabled */
    if (++l->turn_accepts >= ADM_CONN_ACCEPTS_PER_CB) {
        evconnlistener_disable(lev);
        evtimer_add(l->resume_ev, &next_turn);
    }
    conn_accept(l, fd, sa, salen);
}

/* An accept failed with an error that is not transient (EMFILE, ENFILE,
 * ENOBUFS, ENOMEM...): accepting pauses for ADM_CONN_PAUSE_MS, since the
 * socket stays readable and the loop would spin; one log line per
 * ADM_CONN_ERR_LOG_S. */
static void
on_accept_error(struct evconnlistener *lev, void *arg)
{
    static const struct timeval pause = { 0, ADM_CONN_PAUSE_MS * 1000 };
    struct adm_listener *l = arg;
    int err = EVUTIL_SOCKET_ERROR();
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    if (l->accept_errors++ == 0 || now.tv_sec - l->accept_err_logged >= ADM_CONN_ERR_LOG_S) {
        log_at(LL_WARN, "admin", 0, "accept on %s: %s: not accepting for %d ms (%lu so "
               "far)", l->ops->listener, evutil_socket_error_to_string(err),
               ADM_CONN_PAUSE_MS, l->accept_errors);
        l->accept_err_logged = now.tv_sec;
    }
    evconnlistener_disable(lev);
    evtimer_add(l->resume_ev, &pause);
}

void
adm_listener_init(struct adm_listener *l, struct event_base *base,
                  const struct adm_conn_ops *ops, void *owner)
{
    memset(l, 0, sizeof(*l));
    l->base = base;
    l->ops = ops;
    l->owner = owner;
    list_init(&l->conns);
}

/* The timer that enables the listener again, made before the listener so
 * that a failure leaves the listening socket to the caller. 0 or -1. */
static int
listener_timer(struct adm_listener *l)
{
    if (l->resume_ev == NULL)
        l->resume_ev = evtimer_new(l->base, on_accept_resume, l);
    if (l->resume_ev != NULL)
        return 0;
    errno = ENOMEM;
    return -1;
}

int
adm_listener_listen_fd(struct adm_listener *l, evutil_socket_t fd)
{
    if (listener_timer(l) != 0)
        return -1;
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
    if (listener_timer(l) != 0)
        return -1;
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
    if (l->resume_ev != NULL)
        event_free(l->resume_ev);
    l->resume_ev = NULL;
    if (l->lev != NULL)
        evconnlistener_free(l->lev);
    l->lev = NULL;
}

void
adm_listener_stats(const struct adm_listener *l, struct adm_conn_stats *out)
{
    out->open = l->nconns;
    out->evicted = l->evicted;
    out->timed_out = l->timed_out;
}
