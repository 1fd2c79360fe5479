/*
 * http_conn: what an HTTP connection holds, and its end (see http_conn.h).
 * A connection takes its buffers from the loop's spares when a request
 * needs them and gives them back when it parks or closes, so a busy
 * keep-alive connection allocates nothing per request.
 */
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>

#include "lib/list.h"
#include "lib/log.h"
#include "lib/slab.h"
#include "lib/xmalloc.h"
#include "proxy/accesslog.h"
#include "proxy/http_conn.h"
#include "proxy/io.h"
#include "proxy/server.h"
#include "proxy/shadow_cap.h"
#include "proxy/tls.h"
#include "proxy/tls_io.h"

const char *const px_cs_names[PX_CS__COUNT] = {
    "read_head", "read_body", "connecting", "exchange", "tunnel", "draining", "closed",
};

const char *const px_cs_actions[PX_CS__COUNT] = {
    "reading request head", "reading request body", "connecting to upstream",
    "exchanging with upstream", "tunnelling", "flushing to client", "closed",
};

struct h1_field *
px_hc_fields(struct px_srv *srv, unsigned n)
{
    if (srv->hfields_n < n) {
        free(srv->hfields);
        srv->hfields = xcalloc(n, sizeof(*srv->hfields));
        srv->hfields_n = n;
    }
    return srv->hfields;
}

struct evbuffer *
px_hc_evbuffer(struct px_conn *c, struct evbuffer **b)
{
    struct px_srv *srv = c->srv;

    if (*b == NULL && srv->nspare_evb > 0)
        *b = srv->spare_evb[--srv->nspare_evb];
    if (*b == NULL && (*b = evbuffer_new()) == NULL) {
        log_at(LL_ERR, "http", c->id, "out of memory");
        abort();
    }
    return *b;
}

void
px_hc_spare_evbuffer(struct px_srv *srv, struct evbuffer **b)
{
    if (*b == NULL)
        return;
    if (srv->nspare_evb < PX_SPARES) {
        evbuffer_drain(*b, evbuffer_get_length(*b));
        srv->spare_evb[srv->nspare_evb++] = *b;
    } else {
        evbuffer_free(*b);
    }
    *b = NULL;
}

struct bufferevent *
px_hc_client_bev(struct px_srv *srv, evutil_socket_t fd, struct px_tls_io **tls)
{
    struct bufferevent *bev;

    if (srv->nspare_bev == 0) {
        if ((bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE)) == NULL)
            return NULL;
    } else {
        bev = srv->spare_bev[--srv->nspare_bev];
        bufferevent_setfd(bev, fd);
    }
    if (*tls != NULL)
        px_io_own_tls(bev, *tls);
    else
        px_io_own_reads(bev);
    *tls = NULL;
    return bev;
}

void
px_hc_log_begin(struct px_conn *c, const struct h1_req *r)
{
    c->ex->log_pending = true;
    c->ex->log_status = 0;
    c->ex->log_error = NULL;
    c->ex->log_why = RT_R_NONE;
    c->ex->log_method[0] = '\0';
    c->ex->log_path_len = 0;
    c->ex->log_t0_us = r != NULL ? c->ex->t_req_us : px_now_us(c->srv);
    if (r == NULL)
        return;
    snprintf(c->ex->log_method, sizeof(c->ex->log_method), "%.*s", (int)r->method.len, r->method.p);
    if (c->ex->log_path == NULL)
        c->ex->log_path = c->srv->nspare_path > 0 ? c->srv->spare_path[--c->srv->nspare_path]
                                              : xmalloc(PX_ACCESS_LOG_PATH_MAX);
    c->ex->log_path_len = r->target.len;
    memcpy(c->ex->log_path, r->target.p,
           r->target.len < PX_ACCESS_LOG_PATH_MAX ? r->target.len : PX_ACCESS_LOG_PATH_MAX);
}

void
px_hc_log_request(struct px_conn *c, const char *ended)
{
    struct px_access_log *al = c->srv->access_log;
    bool parsed = c->ex->log_method[0] != '\0';
    bool routed = c->ex->side != RT_NONE && c->ex->srt != NULL;
    char client[96], subj[256] = "";
    const char *sni = NULL;

    c->ex->log_pending = false;
    if (al == NULL)
        return;                        /* a reload turned it off meanwhile */
    if (c->flags & PX_CF_TLS)
        sni = px_tls_peer(c->down, subj, sizeof(subj));
    px_access_log_write(al, &(struct px_access_rec){
        .conn = c->id, .service = sconf(c)->name,
        .client = px_access_client(c->ex->client_ip, c->client_port, client, sizeof(client)),
        .method = parsed ? c->ex->log_method : NULL,
        .path = parsed ? c->ex->log_path : NULL, .path_len = c->ex->log_path_len,
        .status = c->ex->log_status,
        .side = routed ? rt_side_names[c->ex->side] : NULL,
        .server = routed ? c->ex->srt->addr.text : NULL,
        .why = (c->flags & PX_CF_SHIELDED) ? "shield"
               : routed && c->ex->log_why != RT_R_NONE ? rt_reason_names[c->ex->log_why] : NULL,
        .bytes_in = parsed ? c->ex->req.total : 0,
        .bytes_out = c->ex->res_head_done ? c->ex->res.total : 0,
        .duration_us = px_now_us(c->srv) - c->ex->log_t0_us,
        .error = c->ex->log_error != NULL ? c->ex->log_error : ended,
        .sni = sni, .client_cert = subj,
    });
}

void
px_hc_record(struct px_conn *c, int status, enum px_err err)
{
    if (c->ex->res_recorded || c->ex->side == RT_NONE)
        return;
    c->ex->res_recorded = true;
    c->ex->log_status = status;
    if (status == 0)
        c->ex->log_error = px_err_names[err];
    px_service_record(c->svc, c->ex->side, c->ex->srt, status, err,
                      px_now_us(c->srv) - c->ex->t_req_us);
}

bool
px_hc_refresh_conf(struct px_conn *c)
{
    struct px_service *svc = c->svc;

    if (c->conf == svc->conf)
        return true;
    if (svc->conf->mode != PX_MODE_HTTP)
        return false;
    if (c->state == PX_CS_READ_HEAD && svc->conf->limits.head_bytes != c->conf->limits.head_bytes)
        px_io_read_limit(c->down, svc->conf->limits.head_bytes);
    px_confref_get(svc->cref);
    px_confref_put(c->cref);
    c->cref = svc->cref;
    c->conf = svc->conf;
    return true;
}

void
px_hc_arm_response_deadline(struct px_conn *c)
{
    unsigned ms = sconf(c)->timeouts.server_response_ms;
    struct timeval tv;

    c->flags &= ~PX_CF_WATCH_SOON;
    if (!(c->flags & PX_CF_POLLED) && ms > PX_WATCH_DELAY_MS) {
        c->flags |= PX_CF_WATCH_SOON;
        ms = PX_WATCH_DELAY_MS;
    }
    tv = tv_ms(ms);
    evtimer_add(&c->head_timer, &tv);
}

void
px_hc_watch_client(struct px_conn *c)
{
    unsigned ms = sconf(c)->timeouts.server_response_ms;
    struct timeval tv = tv_ms(ms > PX_WATCH_DELAY_MS ? ms - PX_WATCH_DELAY_MS : 1);

    c->flags |= PX_CF_POLLED;
    if (!(c->flags & PX_CF_CLIENT_EOF))
        bufferevent_enable(c->down, EV_READ);
    if (!c->ex->res_head_done && c->up != NULL)
        evtimer_add(&c->head_timer, &tv);
}

/* Gives client bufferevent <bev>, taken off its socket, to the loop's
 * spares (or frees it), its callbacks cleared: the one place besides
 * set_state() (proxy/http.c) that sets a connection's callbacks, to none,
 * as <bev> leaves the connection. */
static void
spare_client_bev(struct px_srv *srv, struct bufferevent *bev)
{
    bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
    if (srv->nspare_bev < PX_SPARES)
        srv->spare_bev[srv->nspare_bev++] = bev;
    else
        bufferevent_free(bev);
}

/* Closes the client connection of <bev>: a plain one's bufferevent goes
 * to the loop's spares, emptied, and its socket is closed here (a new
 * connection then takes it rather than allocating one: a bufferevent and
 * its two evbuffers, freed again at its close, per connection); a TLS one
 * is freed with its SSL. */
static void
close_client_bev(struct px_srv *srv, struct bufferevent *bev)
{
    evutil_socket_t fd = bufferevent_getfd(bev);

    if (px_io_tls(bev) != NULL || srv->nspare_bev >= PX_SPARES || fd < 0) {
        px_io_free(bev);
        return;
    }
    bufferevent_disable(bev, EV_READ | EV_WRITE);
    (void)px_io_detach(bev);           /* plain: no TLS side; its buffers unfrozen */
    evbuffer_drain(bufferevent_get_input(bev), evbuffer_get_length(bufferevent_get_input(bev)));
    evbuffer_drain(bufferevent_get_output(bev),
                   evbuffer_get_length(bufferevent_get_output(bev)));
    spare_client_bev(srv, bev);
    px_io_close(fd);
}

void
px_hc_close(struct px_conn *c)
{
    struct px_service *svc = c->svc;

    log_at(LL_DEBUG, "http", c->id, "closed after %u request(s) while %s",
           c->nreq, px_cs_actions[c->state]);
    if (c->ex != NULL && c->ex->log_pending)   /* a tunnel ended, or the client went away */
        px_hc_log_request(c, c->ex->log_status == 101 ? NULL : "client_closed");
    /* TLS: close_notify only after a whole answer or between requests
     * (parked too), so that a cut response never looks complete to the
     * client */
    if ((c->flags & PX_CF_TLS) && !(c->flags & PX_CF_CUT) &&
        (c->state == PX_CS_READ_HEAD || c->state == PX_CS_DRAINING)) {
        if (c->down != NULL)
            px_tls_close_notify(c->down);
        else
            px_tls_io_close_notify(c->tls);
    }
    c->state = PX_CS_CLOSED;
    px_hc_park_soon_off(c);
    if (c->ex != NULL && c->ex->shadow != NULL) {   /* the response did not complete */
        px_shadow_cap_end(c->ex->shadow, false);
        px_shadow_cap_put(c->ex->shadow);
        c->ex->shadow = NULL;
    }
    upstream_free(c);
    if (c->down != NULL)
        close_client_bev(c->srv, c->down);
    px_tls_io_free(c->tls);
    event_del(&c->head_timer);
    if (c->flags & PX_CF_PARKED)
        px_io_close(event_get_fd(&c->head_timer));   /* parked: the event held it */
    if (c->ex != NULL) {
        bind_server(c, NULL);
        px_hc_exch_put(c->srv, &c->ex);
    }
    px_confref_put(c->cref);
    list_unlink(&c->link);
    slab_free(&c->srv->conn_slab, c);
    px_srv_conn_closed(svc->srv, svc);
}

struct px_conn *
px_hc_conn_alloc(struct px_srv *srv)
{
    if (srv->conn_slab.size == 0)
        slab_init(&srv->conn_slab, sizeof(struct px_conn));
    return slab_alloc(&srv->conn_slab);
}

void
px_hc_set_client(struct px_conn *c, const struct sockaddr *sa)
{
    c->client_family = AF_UNSPEC;
    if (sa->sa_family == AF_INET) {
        c->client_family = AF_INET;
        memcpy(c->client_addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        c->client_family = AF_INET6;
        memcpy(c->client_addr, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    }
    c->client_port = (unsigned short)px_sockaddr_port(sa);
}

/* The client's address of <c> as px_sockaddr_ip() writes it. */
static void
client_ip_text(const struct px_conn *c, char *buf, size_t len)
{
    struct sockaddr_in6 sa = { .sin6_family = c->client_family };

    if (c->client_family == AF_INET)
        memcpy(&((struct sockaddr_in *)&sa)->sin_addr, c->client_addr, 4);
    else if (c->client_family == AF_INET6)
        memcpy(&sa.sin6_addr, c->client_addr, 16);
    px_sockaddr_ip((const struct sockaddr *)&sa, buf, len);
}

struct px_exch *
px_hc_exch_take(struct px_conn *c)
{
    struct px_srv *srv = c->srv;
    struct px_exch *ex = srv->nspare_ex > 0 ? srv->spare_ex[--srv->nspare_ex]
                                            : xmalloc(sizeof(*ex));

    memset(ex, 0, offsetof(struct px_exch, client_ip));
    ex->side = RT_NONE;
    client_ip_text(c, ex->client_ip, sizeof(ex->client_ip));
    return ex;
}

void
px_hc_exch_put(struct px_srv *srv, struct px_exch **exp)
{
    struct px_exch *ex = *exp;

    *exp = NULL;
    if (ex == NULL)
        return;
    px_hc_spare_evbuffer(srv, &ex->up_head);
    px_hc_spare_evbuffer(srv, &ex->req_buf);
    if (ex->log_path != NULL && srv->nspare_path < PX_SPARES)
        srv->spare_path[srv->nspare_path++] = ex->log_path;
    else
        free(ex->log_path);
    if (srv->nspare_ex < PX_SPARES)
        srv->spare_ex[srv->nspare_ex++] = ex;
    else
        free(ex);
}

void
px_hc_loop_free(struct px_srv *srv)
{
    while (srv->nspare_bev > 0)
        bufferevent_free(srv->spare_bev[--srv->nspare_bev]);
    while (srv->nspare_evb > 0)
        evbuffer_free(srv->spare_evb[--srv->nspare_evb]);
    while (srv->nspare_path > 0)
        free(srv->spare_path[--srv->nspare_path]);
    while (srv->nspare_ex > 0)
        free(srv->spare_ex[--srv->nspare_ex]);
    free(srv->hfields);
    srv->hfields = NULL;
    srv->hfields_n = 0;
    slab_destroy(&srv->conn_slab);
}

void
px_hc_park(struct px_conn *c)
{
    bufferevent_disable(c->down, EV_READ | EV_WRITE);
    /* the socket stays open, and a TLS side with <c>: it is parked */
    c->tls = px_io_detach(c->down);
    spare_client_bev(c->srv, c->down);
    c->down = NULL;
    px_hc_exch_put(c->srv, &c->ex);
    c->flags |= PX_CF_PARKED;
}

void
px_hc_close_idle(struct px_service *svc)
{
    struct list *pos, *next;

    for (pos = svc->conns.next; pos != &svc->conns; pos = next) {
        struct px_conn *c = list_entry(pos, struct px_conn, link);

        next = pos->next;
        if (c->busy == 0 && c->state == PX_CS_READ_HEAD &&
            (c->down == NULL || evbuffer_get_length(bufferevent_get_input(c->down)) == 0)) {
            px_hc_close(c);
            /* the last connection of a retired service frees it */
            if (next == &svc->conns)
                return;
        } else {
            c->flags |= PX_CF_NO_KEEPALIVE;   /* finish the current request, then close */
        }
    }
}

void
px_hc_close_all(struct px_service *svc)
{
    while (!list_empty(&svc->conns))
        px_hc_close(list_entry(svc->conns.next, struct px_conn, link));
}
