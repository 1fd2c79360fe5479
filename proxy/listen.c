/*
 * listen: listeners, the accept dispatch to the service's mode, and the
 * fan-outs to both modes at shutdown and exit (see listen.h).
 *
 * Accept errors back off. A listener whose accept() fails (out of
 * descriptors, memory) stays readable: accepting again at once fails again,
 * so the loop would spin and log without end (781,848 lines in 10 s were
 * seen with a descriptor limit of 256 and 400 clients). An error, or a
 * client whose descriptor lies in the reserve (proxy/io.h; it is closed at
 * once), pauses accepting on every listener of the loop: 100 ms, doubling
 * while the errors go on, at most 1 s, back to 100 ms after an accept that
 * worked; the clients wait in the kernel's backlog meanwhile, as with
 * HAProxy's and NGINX's accept pauses. Each error is counted by reason
 * (cutover_accept_errors_total); the log gets one line per 5 s for the
 * whole process (running out of descriptors is the process's state, not a
 * listener's), and the count of those held back when the 5 s are over.
 *
 * limits.max_connections caps the client connections (TLS handshakes and
 * TCP tunnels included) of the process and of a service, over every loop.
 * A loop counts each accept and close in the shared counts (atomic: an
 * accept and a close, never a request, touch them); the accept that
 * reaches a cap stops accepting on the listeners the cap concerns (all of
 * the loop's for the process's, the service's for its own), so the next
 * clients wait in the kernel's backlog, as with HAProxy's maxconn, instead
 * of being accepted into a shortage. A close on the loop looks for room at
 * once, and a paused loop looks every CAP_POLL_MS for room another loop's
 * closes made. Each loop accepts on its own sockets: a loop that has not
 * paused yet may accept one connection past a cap (at most one per other
 * loop). Without the key, the process's cap is derived from RLIMIT_NOFILE:
 * a third of the clients' share (below clients_max, proxy/io.h) left once
 * every listener is open: each client connection, its upstream connection
 * and an idle pooled one (left by an earlier client, to another server)
 * fit in the share, so a client is never refused for a descriptor and
 * never answered 503 for want of one.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "lib/log.h"
#include "lib/timeval.h"
#include "lib/xmalloc.h"
#include "proxy/http.h"
#include "proxy/io.h"
#include "proxy/listen.h"
#include "proxy/pool.h"
#include "proxy/server.h"
#include "proxy/tcp.h"
#include "proxy/tls_accept.h"

#define ACCEPT_PAUSE_MIN_MS   100u
#define ACCEPT_PAUSE_MAX_MS   1000u
#define ACCEPT_LOG_PERIOD_MS  5000u
#define CAP_POLL_MS           10u

/* The accept error lines of the whole process (every loop): one per
 * period, the rest counted. */
static pthread_mutex_t accept_log_mu = PTHREAD_MUTEX_INITIALIZER;
static struct log_ratelimit accept_log_rl = { .period_ms = ACCEPT_LOG_PERIOD_MS };

static enum px_accept_err
accept_reason(int e)
{
    switch (e) {
    case EMFILE:
        return PX_AE_EMFILE;
    case ENFILE:
        return PX_AE_ENFILE;
    case ENOMEM:
    case ENOBUFS:
        return PX_AE_ENOMEM;
    default:
        return PX_AE_OTHER;
    }
}

/* The configured address of listener <l> of <svc>, for log lines. */
static const char *
listener_addr(const struct px_service *svc, const struct evconnlistener *l)
{
    unsigned k;

    for (k = 0; svc->listeners != NULL && k < svc->conf->nlisten; k++)
        if (svc->listeners[k] == l)
            return svc->conf->listen[k].text;
    return "?";
}

/* Whether a cap stops <svc> accepting now: the process's (<full>) or
 * its own. */
static bool
svc_capped(const struct px_service *svc, bool full)
{
    unsigned cap = svc->conf->limits.max_connections;

    return full || (cap > 0 && __atomic_load_n(&svc->shared->conns, __ATOMIC_RELAXED) >= cap);
}

/* Whether the process's cap holds: reached when the loop accepted, and
 * once paused until a 64th of it (at least one) is free again, so that at
 * the cap a loop of many listeners does not switch them all off and on for
 * every client that leaves. */
static bool
process_full(struct px_srv *srv)
{
    struct px_srv *m = px_srv_main(srv);
    unsigned cap = __atomic_load_n(&m->conns_cap, __ATOMIC_RELAXED), margin = cap / 64;
    unsigned n = __atomic_load_n(&m->conns_all, __ATOMIC_RELAXED);

    if (cap == 0)
        return false;
    return srv->cap_full ? n + (margin > 0 ? margin : 1) > cap : n >= cap;
}

static void on_cap_poll(evutil_socket_t fd, short what, void *arg);

/* A pause at a cap is logged at most once per CAP_LOG_MS per loop: at the
 * cap, clients come and go by the thousand. */
#define CAP_LOG_MS 10000u

/* Logs that <svc> (NULL: every service, the process's cap) stopped
 * accepting on <srv>'s loop, unless one was logged lately. */
static void
cap_log(struct px_srv *srv, const struct px_service *svc)
{
    struct px_srv *m = px_srv_main(srv);
    uint64_t now = px_now_ms(srv);

    if (srv->cap_log_ms != 0 && now - srv->cap_log_ms < CAP_LOG_MS)
        return;
    srv->cap_log_ms = now;
    if (svc == NULL)
        log_at(LL_WARN, "listen", 0, "%u client connections: limits.max_connections (%u) "
               "reached; accepting paused on every listener of loop %u, new clients wait "
               "in the backlog (at most one such line every %u s)",
               __atomic_load_n(&m->conns_all, __ATOMIC_RELAXED),
               __atomic_load_n(&m->conns_cap, __ATOMIC_RELAXED), srv->worker_id,
               CAP_LOG_MS / 1000u);
    else
        log_at(LL_WARN, "listen", 0, "service %s: %u client connections: its "
               "limits.max_connections reached; accepting paused on loop %u, new clients "
               "wait in the backlog (at most one such line every %u s)", svc->conf->name,
               __atomic_load_n(&svc->shared->conns, __ATOMIC_RELAXED), srv->worker_id,
               CAP_LOG_MS / 1000u);
}

/* Switches accepting on <svc>'s listeners of this loop on or off as the
 * accept errors and the caps (<full>: the process's) say. */
static void
svc_update(struct px_srv *srv, struct px_service *svc, bool full)
{
    bool capped = svc_capped(svc, full), on = !srv->accept_error_paused && !capped;
    unsigned k;

    if (capped && !full && !svc->cap_paused)
        cap_log(srv, svc);
    svc->cap_paused = capped;
    for (k = 0; svc->listeners != NULL && k < svc->conf->nlisten; k++) {
        if (svc->listeners[k] == NULL)
            continue;
        if (on)
            evconnlistener_enable(svc->listeners[k]);
        else
            evconnlistener_disable(svc->listeners[k]);
    }
}

/* Looks for room every CAP_POLL_MS while a cap holds a listener of the
 * loop (<paused>), not otherwise. */
static void
cap_poll(struct px_srv *srv, bool paused)
{
    struct timeval tv = tv_ms(CAP_POLL_MS);

    srv->cap_paused = paused;
    if (paused && srv->cap_timer == NULL)
        srv->cap_timer = evtimer_new(srv->base, on_cap_poll, srv);
    if (srv->cap_timer == NULL)
        return;
    if (paused)
        evtimer_add(srv->cap_timer, &tv);
    else
        evtimer_del(srv->cap_timer);
}

/* Switches accepting on every listener of <srv>'s loop on or off as the
 * accept errors and the caps say. */
static void
update_accepting(struct px_srv *srv)
{
    bool full = process_full(srv), paused = false;
    unsigned s;

    if (full && !srv->cap_full)
        cap_log(srv, NULL);
    srv->cap_full = full;
    for (s = 0; s < srv->nsvcs; s++) {
        svc_update(srv, srv->svcs[s], full);
        paused |= srv->svcs[s]->cap_paused;
    }
    cap_poll(srv, paused);
}

static void
on_cap_poll(evutil_socket_t fd, short what, void *arg)
{
    struct px_srv *srv = arg;

    (void)fd;
    (void)what;
    if (!srv->stopping)
        update_accepting(srv);
}

static void
on_accept_resume(evutil_socket_t fd, short what, void *arg)
{
    struct px_srv *srv = arg;

    (void)fd;
    (void)what;
    srv->accept_error_paused = false;
    if (!srv->stopping)
        update_accepting(srv);
}

static void
on_accept_log_flush(evutil_socket_t fd, short what, void *arg)
{
    struct px_srv *srv = arg;
    uint64_t held, due, now = px_now_ms(srv);
    struct timeval tv;

    (void)fd;
    (void)what;
    pthread_mutex_lock(&accept_log_mu);
    due = log_ratelimit_due_ms(&accept_log_rl);
    held = log_ratelimit_flush(&accept_log_rl, now);
    pthread_mutex_unlock(&accept_log_mu);
    if (held == 0 && due > now) {
        /* early by libevent's coarse clock: again when it is due */
        tv = tv_ms((unsigned)(due - now));
        evtimer_add(srv->accept_log_timer, &tv);
        return;
    }
    if (held > 0)
        log_at(LL_WARN, "listen", 0, "%llu more accept error(s) in the last %u s "
               "(cutover_accept_errors_total counts them all)", (unsigned long long)held,
               ACCEPT_LOG_PERIOD_MS / 1000u);
}

/* An accept on listener <l> of <svc> failed for <why> (<text>): counts it,
 * pauses accepting on this loop and logs within the process's limit. */
static void
accept_failed(struct px_service *svc, const struct evconnlistener *l,
              enum px_accept_err why, const char *text)
{
    struct px_srv *srv = svc->srv;
    uint64_t now = px_now_ms(srv), held, due;
    struct timeval tv;
    bool pass, paused = false;

    svc->accept_errors[why]++;
    srv->accept_pause_ms = srv->accept_pause_ms == 0 ? ACCEPT_PAUSE_MIN_MS
                           : srv->accept_pause_ms * 2 > ACCEPT_PAUSE_MAX_MS
                           ? ACCEPT_PAUSE_MAX_MS : srv->accept_pause_ms * 2;
    if (srv->accept_timer == NULL)
        srv->accept_timer = evtimer_new(srv->base, on_accept_resume, srv);
    tv = tv_ms(srv->accept_pause_ms);
    if (srv->accept_timer != NULL && evtimer_add(srv->accept_timer, &tv) == 0) {
        srv->accept_error_paused = true;
        update_accepting(srv);
        paused = true;
    }

    pthread_mutex_lock(&accept_log_mu);
    pass = log_ratelimit_pass(&accept_log_rl, now, 1, &held);
    due = log_ratelimit_due_ms(&accept_log_rl);
    pthread_mutex_unlock(&accept_log_mu);
    if (held > 0)
        log_at(LL_WARN, "listen", 0, "%llu more accept error(s) in the last %u s "
               "(cutover_accept_errors_total counts them all)", (unsigned long long)held,
               ACCEPT_LOG_PERIOD_MS / 1000u);
    if (pass) {
        log_at(LL_WARN, "listen", 0, "service %s: accept on %s failed (%s): %s; %s; "
               "at most one such line every %u s", svc->conf->name, listener_addr(svc, l),
               px_accept_err_names[why], text,
               paused ? "accepting paused (100 ms, doubling up to 1 s while it lasts)"
                      : "cannot pause accepting", ACCEPT_LOG_PERIOD_MS / 1000u);
        return;
    }
    /* held back: its count is written when the period ends */
    if (srv->accept_log_timer == NULL)
        srv->accept_log_timer = evtimer_new(srv->base, on_accept_log_flush, srv);
    if (srv->accept_log_timer != NULL && due != 0 &&
        !evtimer_pending(srv->accept_log_timer, NULL)) {
        tv = tv_ms(due > now ? (unsigned)(due - now) : 0);
        evtimer_add(srv->accept_log_timer, &tv);
    }
}

static void
on_listener_accept(struct evconnlistener *l, evutil_socket_t fd,
                   struct sockaddr *sa, int salen, void *arg)
{
    struct px_service *svc = arg;
    int one = 1;

    px_io_fd_opened(fd);               /* accepted inside libevent (proxy/io.h) */
    if (svc->srv->stopping) {
        px_io_close(fd);
        return;
    }
    if (!px_io_fd_client_ok(fd)) {
        const struct px_fd_marks *m = px_io_fd_marks();
        char text[200];

        char drain[4096];

        /* read what the client sent already, so that the close is a FIN and
         * not a reset: the client sees a clean close, nothing else */
        while (recv(fd, drain, sizeof(drain), MSG_DONTWAIT) > 0)
            ;
        px_io_close(fd);
        snprintf(text, sizeof(text), "descriptor %d is past the clients' share (below %u "
                 "of RLIMIT_NOFILE %u; the rest is kept for upstream connections, health "
                 "checks, state, audit and admin): connection closed", (int)fd,
                 m->clients_max, m->limit);
        accept_failed(svc, l, PX_AE_EMFILE, text);
        return;
    }
    svc->srv->accept_pause_ms = 0;     /* accepting works: a new error pauses briefly */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    svc->srv->accepted++;
    svc->conns_active++;
    svc->srv->conns_active++;
    __atomic_add_fetch(&svc->shared->conns, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&px_srv_main(svc->srv)->conns_all, 1, __ATOMIC_RELAXED);
    /* at a cap the next clients wait in the backlog */
    if (!svc->srv->cap_full && process_full(svc->srv)) {
        update_accepting(svc->srv);    /* every listener of the loop */
    } else if (!svc->cap_paused && svc_capped(svc, false)) {
        svc_update(svc->srv, svc, svc->srv->cap_full);
        cap_poll(svc->srv, true);
    }
    if (svc->tls != NULL)
        px_tls_accept(svc, fd, sa, salen);  /* then the mode, once it is done */
    else if (svc->conf->mode == PX_MODE_TCP)
        px_tcp_accept(svc, fd, sa, salen);
    else
        px_http_accept(svc, fd, sa, salen);
}

static void
on_listener_error(struct evconnlistener *l, void *arg)
{
    int e = EVUTIL_SOCKET_ERROR();

    accept_failed(arg, l, accept_reason(e), evutil_socket_error_to_string(e));
}

/* With several workers every listener sets SO_REUSEPORT, which would also
 * let this daemon join the sockets of another one of the same user on that
 * address. The main loop therefore first binds the address plainly: that
 * fails with EADDRINUSE while anybody listens there. 0, or -1 with errno. */
static int
address_free(const struct px_addr *a)
{
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1, rc = 0, e = 0;

    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&a->ss, (socklen_t)a->len) < 0) {
        rc = -1;
        e = errno;
    }
    close(fd);
    errno = e;
    return rc;
}

struct evconnlistener *
px_listener_new(struct px_srv *srv, const struct px_addr *a)
{
    unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE;

    if (srv->nworkers > 1) {
        if (srv->worker_id == 0 && address_free(a) < 0)
            return NULL;
        flags |= LEV_OPT_REUSEABLE_PORT;
    }
    /* no callback before px_listener_attach(): nothing is accepted before
     * the loop runs again, and a reload binds before it commits */
    return evconnlistener_new_bind(srv->base, NULL, NULL, flags, 1024,
                                   (const struct sockaddr *)&a->ss, (int)a->len);
}

void
px_listener_attach(struct evconnlistener *l, struct px_service *svc)
{
    evconnlistener_set_cb(l, on_listener_accept, svc);
    evconnlistener_set_error_cb(l, on_listener_error);
}

int
px_srv_listen(struct px_srv *srv)
{
    unsigned s, i;

    for (s = 0; s < srv->nsvcs; s++) {
        struct px_service *svc = srv->svcs[s];

        svc->listeners = xcalloc(svc->conf->nlisten, sizeof(*svc->listeners));
        for (i = 0; i < svc->conf->nlisten; i++) {
            const struct px_addr *a = &svc->conf->listen[i];
            struct evconnlistener *l = px_listener_new(srv, a);

            if (l == NULL) {
                log_at(LL_ERR, "listen", 0, "service %s: cannot listen on %s: %s",
                       svc->conf->name, a->text, strerror(errno));
                return -1;
            }
            px_listener_attach(l, svc);
            svc->listeners[i] = l;
            if (srv->worker_id == 0)
                log_at(LL_INFO, "listen", 0, "service %s (%s) listening on %s",
                   svc->conf->name, svc->conf->mode == PX_MODE_TCP ? "tcp" : "http",
                   a->text);
        }
    }
    return 0;
}

void
px_srv_stop_listening(struct px_srv *srv)
{
    unsigned s, i;

    for (s = 0; s < srv->nsvcs; s++) {
        struct px_service *svc = srv->svcs[s];

        if (svc->listeners == NULL)
            continue;
        for (i = 0; i < svc->conf->nlisten; i++) {
            if (svc->listeners[i] != NULL)
                evconnlistener_free(svc->listeners[i]);
            svc->listeners[i] = NULL;
        }
        px_http_close_idle(svc);       /* HTTP connections (a reload may have
                                        * made the service a TCP one since) */
        px_tls_accept_close_all(svc);  /* handshakes: nothing was asked yet */
        px_pool_close_side(svc, RT_LEGACY);
        px_pool_close_side(svc, RT_NEW);
    }
}

void
px_service_close_conns(struct px_service *svc)
{
    /* both: a reload may have changed the service's mode since they opened */
    px_http_close_all(svc);
    px_tcp_close_all(svc);
    px_tls_accept_close_all(svc);
}

void
px_listen_caps(struct px_srv *srv)
{
    if (!srv->stopping)
        update_accepting(srv);
}

unsigned
px_listen_cap_default(unsigned later)
{
    const struct px_fd_marks *m = px_io_fd_marks();
    int fd;
    unsigned used;

    if (m->limit == 0)
        return 0;                      /* no known limit: no cap of ours */
    /* the kernel hands out the lowest free descriptor: the descriptors in
     * use now, listeners included, lie below it */
    if ((fd = dup(2)) < 0)
        return 1;
    used = (unsigned)fd + later;
    close(fd);
    return m->clients_max > used + 3 ? (m->clients_max - used) / 3 : 1;
}

void
px_srv_loop_free(struct px_srv *srv)
{
    if (srv->cap_timer != NULL)
        event_free(srv->cap_timer);
    srv->cap_timer = NULL;
    if (srv->accept_timer != NULL)
        event_free(srv->accept_timer);
    if (srv->accept_log_timer != NULL)
        event_free(srv->accept_log_timer);
    srv->accept_timer = srv->accept_log_timer = NULL;
    px_http_loop_free(srv);
}
