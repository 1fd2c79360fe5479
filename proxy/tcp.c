/*
 * tcp: TCP mode. The router decides once per connection (sticky by client
 * address, or a random draw), then bytes are relayed both ways with
 * backpressure: a side's reading stops while the other side's output holds
 * PX_RELAY_HIGH_WM bytes and resumes when it drained to half of that. A
 * half-close is propagated: EOF from one peer becomes shutdown(SHUT_WR)
 * towards the other once everything before it was written. The tunnel ends
 * when both directions are finished, on an error, or after server_idle_ms
 * without a byte in either direction.
 *
 * Once connected, the bytes move with splice(2) through one pipe per
 * direction, never copied through user space: a direction reads while its
 * pipe has room and writes what it holds, and waits for the destination to
 * become writable only when the destination did not take all (so the
 * pipe's 64 KiB bound the backpressure). When a pipe cannot be made the
 * bufferevents relay (proxy/relay.h, the relay of HTTP's upgrade tunnel
 * too).
 *
 * Outcomes: a tunnel that connected counts as a success of its side (class
 * 2xx in the counters), a refused or timed-out connect as an error; a
 * refused connect is retried once on another server of the same side.
 */
#define _GNU_SOURCE                  /* splice(2), pipe2(2) */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>

#include "lib/list.h"
#include "lib/log.h"
#include "lib/syserr.h"
#include "lib/xmalloc.h"
#include "lib/timeval.h"
#include "proxy/accesslog.h"
#include "proxy/io.h"
#include "proxy/relay.h"
#include "proxy/server.h"
#include "proxy/shield.h"
#include "proxy/tcp.h"
#include "proxy/tls.h"
#include "proxy/tls_io.h"

#define PX_TF_CLOSE      0x01u  /* free when the last callback leaves */
#define PX_TF_CONNECTED  0x02u  /* the upstream connect completed */
#define PX_TF_DOWN_EOF   0x04u  /* the client sent FIN */
#define PX_TF_UP_EOF     0x08u  /* the server sent FIN */
#define PX_TF_UP_SHUT    0x10u  /* we sent FIN to the server */
#define PX_TF_DOWN_SHUT  0x20u  /* we sent FIN to the client */
#define PX_TF_RETRIED    0x40u  /* the connect retry was used */
#define PX_TF_SPLICE     0x80u  /* the bytes move by splice (struct px_splice) */
#define PX_TF_TLS        0x100u /* t->down reads and writes through TLS: no splice;
                                 * its half-close is close_notify, then FIN */

#define PX_SPLICE_MAX    (64u * 1024u)  /* bytes asked of one splice() */

/* Spliced tunnels at a time: their pipes (4 descriptors each) may take at
 * most half of the clients' share of descriptors (proxy/io.h; of
 * RLIMIT_NOFILE when it sets no marks) over all workers, so that accept()
 * and connect() never run out because of them; beyond, tunnels relay
 * through buffers. Counted per loop (srv->spliced), each loop its share. */

struct px_tcp;

/* One direction of a spliced tunnel: source socket -> pipe -> destination. */
struct px_splice {
    struct px_tcp *t;
    unsigned dir;                    /* index of bytes[]: 0 client to server */
    int pipe[2];                     /* owned; -1 when none */
    size_t queued;                   /* bytes in the pipe */
    struct event *rd;                /* owned: source readable (idle timeout) */
    struct event *wr;                /* owned: destination writable, armed only
                                      * while the pipe holds bytes it did not take */
};

struct px_tcp {
    struct list link;                /* on svc->tunnels */
    struct px_service *svc;          /* borrowed; a retired service lives until
                                      * its last tunnel is gone */
    struct px_confref *cref;         /* one reference: the generation of <conf> */
    const struct px_service_conf *conf;  /* the service's conf at accept, for
                                      * the tunnel's whole life */
    uint64_t id;
    unsigned flags;                  /* PX_TF_* */
    int busy;                        /* callbacks on the stack */
    struct bufferevent *down;        /* owned: client */
    struct bufferevent *up;          /* owned: server */
    struct event *drain_timer;       /* owned: blue-green drain deadline, or NULL */
    enum rt_side side;
    struct px_server_rt *srt;        /* one reference: the server, or NULL */
    uint64_t t_start_us;             /* accept time: connect latency reference */
    uint64_t last_io_ms;             /* last byte either way: idle timeout */
    uint64_t bytes[2];               /* relayed: [0] client to server, [1] back */
    enum rt_reason why;              /* the router's reason (access log) */
    enum px_err err;                 /* the failure that ended it; PX_E_NONE */
    char client_ip[64];              /* "" unless the access log is on at accept */
    unsigned client_port;
    struct px_splice sp[2];          /* PX_TF_SPLICE: [0] client to server, [1] back */
};

static void on_down_read(struct bufferevent *bev, void *arg);
static void on_up_read(struct bufferevent *bev, void *arg);
static void on_down_write(struct bufferevent *bev, void *arg);
static void on_up_write(struct bufferevent *bev, void *arg);
static void on_down_event(struct bufferevent *bev, short what, void *arg);
static void on_up_event(struct bufferevent *bev, short what, void *arg);

static const struct px_addr *
server_addr(const struct px_tcp *t)
{
    return &t->srt->addr;
}

/* Binds the tunnel to server <s> (NULL: none). */
static void
bind_server(struct px_tcp *t, struct px_server_rt *s)
{
    if (s != NULL)
        px_server_rt_get(s);
    px_server_rt_put(t->srt);
    t->srt = s;
}

static void
splice_free(struct px_tcp *t)
{
    unsigned d;

    for (d = 0; d < 2; d++) {
        struct px_splice *sp = &t->sp[d];

        if (sp->rd != NULL)
            event_free(sp->rd);
        if (sp->wr != NULL)
            event_free(sp->wr);
        if (sp->pipe[0] >= 0)
            close(sp->pipe[0]);
        if (sp->pipe[1] >= 0)
            close(sp->pipe[1]);
        sp->rd = sp->wr = NULL;
        sp->pipe[0] = sp->pipe[1] = -1;
    }
    if (t->flags & PX_TF_SPLICE)
        t->svc->srv->spliced--;
    t->flags &= ~PX_TF_SPLICE;
}

static void
tunnel_free(struct px_tcp *t)
{
    struct px_service *svc = t->svc;
    char client[96], subj[256] = "";
    const char *sni = NULL;

    log_at(LL_DEBUG, "tcp", t->id, "tunnel closed");
    if (svc->srv->access_log != NULL && t->down != NULL && (t->flags & PX_TF_TLS))
        sni = px_tls_peer(t->down, subj, sizeof(subj));
    if (svc->srv->access_log != NULL)
        px_access_log_write(svc->srv->access_log, &(struct px_access_rec){
            .conn = t->id, .service = t->conf->name,
            .client = t->client_ip[0] != '\0'
                      ? px_access_client(t->client_ip, t->client_port, client, sizeof(client))
                      : NULL,
            .side = t->srt != NULL ? rt_side_names[t->side] : NULL,
            .server = t->srt != NULL ? t->srt->addr.text : NULL,
            .why = t->srt != NULL ? rt_reason_names[t->why] : NULL,
            .bytes_in = t->bytes[0], .bytes_out = t->bytes[1],
            .duration_us = px_now_us(svc->srv) - t->t_start_us,
            .error = t->err != PX_E_NONE ? px_err_names[t->err] : NULL,
            .sni = sni, .client_cert = subj,
        });
    splice_free(t);                    /* before the sockets its events watch */
    if (t->down != NULL)
        px_io_free(t->down);
    if (t->up != NULL)
        px_io_free(t->up);
    if (t->drain_timer != NULL)
        event_free(t->drain_timer);
    bind_server(t, NULL);
    px_confref_put(t->cref);
    list_unlink(&t->link);
    free(t);
    px_srv_conn_closed(svc->srv, svc);
}

static void
enter(struct px_tcp *t)
{
    t->busy++;
}

/* Touch nothing of <t> after calling it. */
static void
leave(struct px_tcp *t)
{
    assert(t->busy > 0);
    if (--t->busy == 0 && (t->flags & PX_TF_CLOSE))
        tunnel_free(t);
}

static void
set_idle_timeouts(struct px_tcp *t)
{
    unsigned ms = t->conf->timeouts.server_idle_ms;
    struct timeval tv = tv_ms(ms);

    bufferevent_set_timeouts(t->down, &tv, &tv);
    bufferevent_set_timeouts(t->up, &tv, &tv);
}

/* Sends FIN towards the peer of <to> once its output is empty and the
 * other peer has finished; closes the tunnel when both directions ended. */
static void
check_half_close(struct px_tcp *t)
{
    if ((t->flags & PX_TF_DOWN_EOF) && !(t->flags & PX_TF_UP_SHUT) &&
        evbuffer_get_length(bufferevent_get_output(t->up)) == 0 && t->sp[0].queued == 0) {
        shutdown(bufferevent_getfd(t->up), SHUT_WR);
        t->flags |= PX_TF_UP_SHUT;
    }
    if ((t->flags & PX_TF_UP_EOF) && !(t->flags & PX_TF_DOWN_SHUT) &&
        evbuffer_get_length(bufferevent_get_output(t->down)) == 0 && t->sp[1].queued == 0) {
        if (t->flags & PX_TF_TLS)
            px_tls_close_notify(t->down);  /* what came before it was written */
        shutdown(bufferevent_getfd(t->down), SHUT_WR);
        t->flags |= PX_TF_DOWN_SHUT;
    }
    if ((t->flags & PX_TF_UP_SHUT) && (t->flags & PX_TF_DOWN_SHUT))
        t->flags |= PX_TF_CLOSE;
}

/* Moves what <from> has read to <to>, with backpressure (relay.h). */
static void
relay(struct px_tcp *t, struct bufferevent *from, struct bufferevent *to)
{
    t->last_io_ms = px_now_ms(t->svc->srv);
    t->bytes[from == t->up] += px_relay_move(from, to);
}

static void
on_down_read(struct bufferevent *bev, void *arg)
{
    struct px_tcp *t = arg;

    enter(t);
    if (t->flags & PX_TF_CONNECTED)
        relay(t, bev, t->up);
    leave(t);
}

static void
on_up_read(struct bufferevent *bev, void *arg)
{
    struct px_tcp *t = arg;

    enter(t);
    relay(t, bev, t->down);
    leave(t);
}

/* <bev> drained to its low watermark: let its peer read again unless it
 * sent its EOF. */
static void
drained(struct px_tcp *t, struct bufferevent *bev, struct bufferevent *peer,
        unsigned peer_eof)
{
    t->last_io_ms = px_now_ms(t->svc->srv);
    px_relay_drained(bev, peer, PX_IO_READ_MAX, !(t->flags & peer_eof));
    check_half_close(t);
}

static void
on_down_write(struct bufferevent *bev, void *arg)
{
    struct px_tcp *t = arg;

    enter(t);
    if (t->flags & PX_TF_CONNECTED)
        drained(t, bev, t->up, PX_TF_UP_EOF);
    leave(t);
}

static void
on_up_write(struct bufferevent *bev, void *arg)
{
    struct px_tcp *t = arg;

    enter(t);
    if (t->flags & PX_TF_CONNECTED)
        drained(t, bev, t->down, PX_TF_DOWN_EOF);
    leave(t);
}

/* A read or write timeout on one peer: the tunnel is idle only when
 * neither direction moved a byte for server_idle_ms. */
static void
on_timeout(struct px_tcp *t, struct bufferevent *bev, short what)
{
    if (!px_relay_timeout(bev, what, px_now_ms(t->svc->srv) - t->last_io_ms,
                          t->conf->timeouts.server_idle_ms,
                          !(t->flags & (bev == t->down ? PX_TF_DOWN_EOF : PX_TF_UP_EOF))))
        return;
    log_at(LL_DEBUG, "tcp", t->id, "tunnel to %s idle for %u ms: closed",
           server_addr(t)->text, t->conf->timeouts.server_idle_ms);
    t->flags |= PX_TF_CLOSE;
}

static void
on_down_event(struct bufferevent *bev, short what, void *arg)
{
    struct px_tcp *t = arg;

    enter(t);
    if (what & BEV_EVENT_TIMEOUT) {
        on_timeout(t, bev, what);
    } else if ((what & BEV_EVENT_EOF) && (what & BEV_EVENT_READING)) {
        t->flags |= PX_TF_DOWN_EOF;
        if (!(t->flags & PX_TF_CONNECTED))
            t->flags |= PX_TF_CLOSE;   /* gone before the upstream answered */
        else
            check_half_close(t);
    } else {
        t->flags |= PX_TF_CLOSE;
    }
    leave(t);
}

/* Moves what it can of direction <sp>: reads the source into the pipe while
 * it has room, writes the pipe to the destination; one round per wakeup
 * (the events are level-triggered). The read event stays armed while the
 * pipe empties at once; a destination that did not take all arms the
 * write event instead until the pipe is empty again. */
static void
splice_pump(struct px_tcp *t, struct px_splice *sp)
{
    struct bufferevent *from = sp->dir == 0 ? t->down : t->up;
    struct bufferevent *to = sp->dir == 0 ? t->up : t->down;
    unsigned eof = sp->dir == 0 ? PX_TF_DOWN_EOF : PX_TF_UP_EOF;
    bool was_waiting = sp->queued > 0;
    ssize_t n;

    if (!(t->flags & eof) && sp->queued < PX_SPLICE_MAX) {
        do
            n = splice(bufferevent_getfd(from), NULL, sp->pipe[1], NULL,
                       PX_SPLICE_MAX - sp->queued, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        while (n < 0 && errno == EINTR);
        if (n > 0) {
            sp->queued += (size_t)n;
            t->bytes[sp->dir] += (uint64_t)n;
            t->last_io_ms = px_now_ms(t->svc->srv);
        } else if (n == 0) {
            t->flags |= eof;
            event_del(sp->rd);
        } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
            t->flags |= PX_TF_CLOSE;   /* reset: the tunnel ends */
            return;
        }
    }
    if (sp->queued > 0) {
        do
            n = splice(sp->pipe[0], NULL, bufferevent_getfd(to), NULL, sp->queued,
                       SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        while (n < 0 && errno == EINTR);
        if (n > 0) {
            sp->queued -= (size_t)n;
            t->last_io_ms = px_now_ms(t->svc->srv);
        } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            t->flags |= PX_TF_CLOSE;
            return;
        }
    }
    if (sp->queued > 0 && !was_waiting) {
        struct timeval tv = tv_ms(t->conf->timeouts.server_idle_ms);

        event_del(sp->rd);
        event_add(sp->wr, &tv);
    } else if (sp->queued == 0 && was_waiting) {
        struct timeval tv = tv_ms(t->conf->timeouts.server_idle_ms);

        event_del(sp->wr);
        if (!(t->flags & eof))
            event_add(sp->rd, &tv);
    }
    check_half_close(t);
}

static void
on_splice(evutil_socket_t fd, short what, void *arg)
{
    struct px_splice *sp = arg;
    struct px_tcp *t = sp->t;

    (void)fd;
    enter(t);
    if (what & EV_TIMEOUT) {
        if (px_now_ms(t->svc->srv) - t->last_io_ms >= t->conf->timeouts.server_idle_ms) {
            log_at(LL_DEBUG, "tcp", t->id, "tunnel to %s idle for %u ms: closed",
                   server_addr(t)->text, t->conf->timeouts.server_idle_ms);
            t->flags |= PX_TF_CLOSE;
        }
    } else {
        splice_pump(t, sp);
    }
    leave(t);
}

/* Switches a just-connected tunnel to splice: one pipe per direction and
 * an event per socket and direction. Returns -1 (nothing changed) when it
 * cannot, or when the client's early bytes already sit in a bufferevent. */
static int
splice_start(struct px_tcp *t)
{
    unsigned ms = t->conf->timeouts.server_idle_ms, d;
    struct timeval tv = tv_ms(ms);
    struct px_srv *srv = t->svc->srv;
    struct event_base *base = srv->base;

    if (!srv->spliced_known) {
        struct rlimit rl;

        srv->spliced_known = true;
        srv->spliced_max = 64;
        if (px_io_fd_marks()->limit > 0)
            srv->spliced_max = px_io_fd_marks()->clients_max / 8;
        else if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
            srv->spliced_max = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur / 8 > 1000000
                               ? 1000000u : (unsigned)(rl.rlim_cur / 8);
        if (srv->nworkers > 1)
            srv->spliced_max /= srv->nworkers;
    }
    if (srv->spliced >= srv->spliced_max || (t->flags & PX_TF_TLS) ||
        evbuffer_get_length(bufferevent_get_input(t->down)) > 0)
        return -1;
    for (d = 0; d < 2; d++) {
        struct px_splice *sp = &t->sp[d];
        int src = bufferevent_getfd(d == 0 ? t->down : t->up);
        int dst = bufferevent_getfd(d == 0 ? t->up : t->down);

        sp->t = t;
        sp->dir = d;
        if (pipe2(sp->pipe, O_NONBLOCK | O_CLOEXEC) < 0) {
            sp->pipe[0] = sp->pipe[1] = -1;
            break;
        }
        /* never into the descriptors the control plane keeps: buffers do */
        if (!px_io_fd_data_ok(sp->pipe[0]) || !px_io_fd_data_ok(sp->pipe[1])) {
            errno = EMFILE;
            break;
        }
        sp->rd = event_new(base, src, EV_READ | EV_PERSIST, on_splice, sp);
        sp->wr = event_new(base, dst, EV_WRITE | EV_PERSIST, on_splice, sp);
        if (sp->rd == NULL || sp->wr == NULL || event_add(sp->rd, &tv) < 0)
            break;
    }
    if (d < 2) {
        log_at(LL_DEBUG, "tcp", t->id, "no splice (%s): relaying through buffers",
               strerror(errno));
        splice_free(t);
        return -1;
    }
    t->flags |= PX_TF_SPLICE;
    srv->spliced++;
    /* the bufferevents only hold the sockets now: no event of theirs runs */
    bufferevent_disable(t->down, EV_READ | EV_WRITE);
    bufferevent_disable(t->up, EV_READ | EV_WRITE);
    bufferevent_set_timeouts(t->down, NULL, NULL);
    bufferevent_set_timeouts(t->up, NULL, NULL);
    return 0;
}

static int start_connect(struct px_tcp *t);

static void
on_up_event(struct bufferevent *bev, short what, void *arg)
{
    struct px_tcp *t = arg;
    struct px_server_rt *other;

    enter(t);
    if (!(t->flags & PX_TF_CONNECTED)) {
        if (what & BEV_EVENT_CONNECTED) {
            t->flags |= PX_TF_CONNECTED;
            t->last_io_ms = px_now_ms(t->svc->srv);
            px_service_record(t->svc, t->side, t->srt, 200, PX_E_NONE,
                              px_now_us(t->svc->srv) - t->t_start_us);
            if (splice_start(t) < 0) {
                set_idle_timeouts(t);
                px_io_read_size(t->up, PX_IO_READ_MAX);    /* both outputs are empty */
                px_io_read_size(t->down, PX_IO_READ_MAX);
                bufferevent_enable(t->up, EV_READ | EV_WRITE);
                bufferevent_enable(t->down, EV_READ | EV_WRITE);
                px_io_kick(t->down);       /* what its SSL read ahead */
                relay(t, t->down, t->up);  /* bytes the client sent early */
                check_half_close(t);
            }
        } else {
            enum px_err err = (what & BEV_EVENT_TIMEOUT) ? PX_E_CONNECT_TIMEOUT
                                                         : PX_E_CONNECT;

            px_req_warn(t->svc, "tcp", t->id, "%s server %s: %s", rt_side_names[t->side],
                   server_addr(t)->text, px_err_names[err]);
            if (!(t->flags & PX_TF_RETRIED) &&
                (other = px_service_other_server(t->svc, t->side, t->srt)) != NULL) {
                t->svc->stats[t->side].errors[err]++;
                t->srt->failures++;
                t->flags |= PX_TF_RETRIED;
                bind_server(t, other);
                other->requests++;
                if (start_connect(t) < 0)
                    t->flags |= PX_TF_CLOSE;
            } else {
                px_service_record(t->svc, t->side, t->srt, 0, err,
                                  px_now_us(t->svc->srv) - t->t_start_us);
                t->err = err;
                t->flags |= PX_TF_CLOSE;
            }
        }
    } else if (what & BEV_EVENT_TIMEOUT) {
        on_timeout(t, bev, what);
    } else if ((what & BEV_EVENT_EOF) && (what & BEV_EVENT_READING)) {
        t->flags |= PX_TF_UP_EOF;
        check_half_close(t);
    } else {
        t->flags |= PX_TF_CLOSE;
    }
    leave(t);
}

static int
start_connect(struct px_tcp *t)
{
    const struct px_addr *a = server_addr(t);
    evutil_socket_t fd;
    unsigned ms = t->conf->timeouts.connect_ms;
    struct timeval tv = tv_ms(ms);

    if (t->up != NULL)
        px_io_free(t->up);
    t->up = bufferevent_socket_new(t->svc->srv->base, -1,
                                   BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (t->up == NULL || (fd = px_io_socket(a->ss.ss_family)) < 0) {
        /* the proxy's own shortage: never counted against the server */
        px_service_record(t->svc, t->side, t->srt, 0, PX_E_LOCAL, 0);
        t->err = PX_E_LOCAL;
        return -1;
    }
    bufferevent_setfd(t->up, fd);      /* owned by t->up from here */
    bufferevent_setcb(t->up, on_up_read, on_up_write, on_up_event, t);
    bufferevent_set_timeouts(t->up, NULL, &tv);
    if (bufferevent_socket_connect(t->up, (const struct sockaddr *)&a->ss, (int)a->len) < 0) {
        enum px_err err = sys_err_local(errno) ? PX_E_LOCAL : PX_E_CONNECT;

        px_service_record(t->svc, t->side, t->srt, 0, err, 0);
        t->err = err;
        return -1;
    }
    px_io_own_reads(t->up);            /* the connect assigned the socket */
    return 0;
}

/* A new tunnel of <svc> on client socket <fd> (over TLS <tls>, owned from
 * now on, when not NULL) from <sa>. */
static void
tunnel_new(struct px_service *svc, int fd, struct px_tls_io *tls, const struct sockaddr *sa)
{
    struct px_tcp *t = xcalloc(1, sizeof(*t));
    char ip[64];
    struct rt_input in;
    struct rt_choice ch;

    t->svc = svc;
    t->sp[0].pipe[0] = t->sp[0].pipe[1] = t->sp[1].pipe[0] = t->sp[1].pipe[1] = -1;
    t->cref = px_confref_get(svc->cref);
    t->conf = svc->conf;
    t->id = px_srv_conn_id(svc->srv);
    t->t_start_us = px_now_us(svc->srv);
    if (svc->srv->access_log != NULL) {
        px_sockaddr_ip(sa, t->client_ip, sizeof(t->client_ip));
        t->client_port = px_sockaddr_port(sa);
    }
    list_push(&svc->tunnels, &t->link);
    t->down = bufferevent_socket_new(svc->srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (t->down == NULL) {
        px_io_close(fd);
        px_tls_io_free(tls);
        tunnel_free(t);
        return;
    }
    if (tls != NULL) {
        px_io_own_tls(t->down, tls);
        t->flags |= PX_TF_TLS;
    } else {
        px_io_own_reads(t->down);
    }
    bufferevent_setcb(t->down, on_down_read, on_down_write, on_down_event, t);

    px_sockaddr_ip(sa, ip, sizeof(ip));
    memset(&in, 0, sizeof(in));
    in.rand = px_srv_rand(svc->srv);
    if (svc->conf->route.sticky_by == RT_STICKY_CLIENT_IP) {
        in.sticky_key = ip;
        in.sticky_len = strlen(ip);
    }
    rt_choose(svc->snap, &svc->cursor, &in, &ch);
    if (ch.side == RT_NONE) {
        px_req_warn(svc, "tcp", t->id, "service %s: no side has a usable server",
               svc->conf->name);
        svc->stats[RT_LEGACY].errors[PX_E_NO_SERVER]++;
        t->err = PX_E_NO_SERVER;
        tunnel_free(t);
        return;
    }
    t->side = ch.side;
    t->why = ch.reason;
    bind_server(t, svc->servers[ch.side][ch.server]);
    svc->stats[ch.side].requests++;
    if (ch.fallback)
        svc->stats[ch.side].fallbacks++;
    t->srt->requests++;
    log_at(LL_DEBUG, "tcp", t->id, "from %s -> %s server %s", ip, rt_side_names[ch.side],
           server_addr(t)->text);
    /* read nothing from the client until the upstream is connected */
    bufferevent_disable(t->down, EV_READ);
    if (start_connect(t) < 0)
        tunnel_free(t);
}

void
px_tcp_accept(struct px_service *svc, int fd, const struct sockaddr *sa, int salen)
{
    (void)salen;
    tunnel_new(svc, fd, NULL, sa);
}

void
px_tcp_accept_tls(struct px_service *svc, int fd, struct px_tls_io *tls,
                  const struct sockaddr *sa)
{
    tunnel_new(svc, fd, tls, sa);
}

static void
on_drain_timer(evutil_socket_t fd, short what, void *arg)
{
    struct px_tcp *t = arg;

    (void)fd;
    (void)what;
    log_at(LL_INFO, "tcp", t->id, "drain time over: closing tunnel to %s",
           server_addr(t)->text);
    enter(t);
    px_shield_tcp_drained(t->svc);
    t->flags |= PX_TF_CLOSE;
    leave(t);
}

unsigned
px_tcp_drain_side(struct px_service *svc, enum rt_side side, int drain_s)
{
    struct timeval tv = { drain_s > 0 ? drain_s : 0, 0 };
    struct list *pos, *next;
    unsigned n = 0;

    list_for_each_safe(pos, next, &svc->tunnels) {
        struct px_tcp *t = list_entry(pos, struct px_tcp, link);

        if (t->side != side || t->drain_timer != NULL)
            continue;
        t->drain_timer = evtimer_new(svc->srv->base, on_drain_timer, t);
        if (t->drain_timer == NULL || evtimer_add(t->drain_timer, &tv) < 0)
            log_at(LL_ERR, "tcp", t->id, "cannot schedule the drain of this tunnel");
        else
            n++;
    }
    return n;
}

void
px_tcp_close_all(struct px_service *svc)
{
    while (!list_empty(&svc->tunnels))
        tunnel_free(list_entry(svc->tunnels.next, struct px_tcp, link));
}
