/*
 * listen: listeners, the accept dispatch to the service's mode, and the
 * fan-outs to both modes at shutdown and exit (see listen.h).
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "lib/log.h"
#include "lib/xmalloc.h"
#include "proxy/http.h"
#include "proxy/listen.h"
#include "proxy/pool.h"
#include "proxy/server.h"
#include "proxy/tcp.h"
#include "proxy/tls_accept.h"

static void
on_listener_accept(struct evconnlistener *l, evutil_socket_t fd,
                   struct sockaddr *sa, int salen, void *arg)
{
    struct px_service *svc = arg;
    int one = 1;

    (void)l;
    if (svc->srv->stopping) {
        evutil_closesocket(fd);
        return;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    svc->srv->accepted++;
    svc->conns_active++;
    svc->srv->conns_active++;
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
    struct px_service *svc = arg;
    int e = EVUTIL_SOCKET_ERROR();

    (void)l;
    /* EMFILE and friends: keep the listener, the next accept may succeed */
    log_at(LL_WARN, "listen", 0, "service %s: accept failed: %s",
           svc->conf->name, evutil_socket_error_to_string(e));
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
px_srv_loop_free(struct px_srv *srv)
{
    px_http_loop_free(srv);
}
