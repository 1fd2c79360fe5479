/*
 * listen: the data plane's entry and exit, above its connection modes. It
 * opens the listeners of every service and hands each accepted socket to
 * the mode of its service (px_http_accept, px_tcp_accept; a TLS service's
 * through its handshake first, proxy/tls_accept.h), stops accepting
 * at shutdown, and fans out to both modes when every connection of a
 * service, or what the modes keep per loop, goes at exit.
 *
 * The layers of the data plane, each calling only those below it:
 * listen.c (-> tls_accept.c) -> http.c, tcp.c -> relay.h, pool.c -> server.c (the runtime
 * objects: services, servers, counters, windows). Nothing below calls up
 * into this file, so the modes never see a listener and server.c never
 * sees a mode.
 */
#ifndef CUTOVER_PROXY_LISTEN_H
#define CUTOVER_PROXY_LISTEN_H

struct evconnlistener;
struct px_addr;
struct px_service;
struct px_srv;

/* A listener on <a> for <srv>'s loop, accepting nothing before
 * px_listener_attach() (a reload binds before it commits), or NULL with
 * errno. With several workers it joins the address's SO_REUSEPORT group,
 * which the main loop first checks nobody else listens on. */
struct evconnlistener *px_listener_new(struct px_srv *srv, const struct px_addr *a);

/* Accepted connections of <l> go to <svc> from now on (a reload that
 * creates or moves listeners). */
void px_listener_attach(struct evconnlistener *l, struct px_service *svc);

/* Creates the listeners of every service. 0, or -1 with a logged error. */
int px_srv_listen(struct px_srv *srv);

/* Stops accepting on every listener and closes the idle keep-alive client
 * and pooled connections (shutdown, first step). */
void px_srv_stop_listening(struct px_srv *srv);

/* Frees every connection of <svc> at once, HTTP or TCP (exit after the
 * grace time). */
void px_service_close_conns(struct px_service *svc);

/* limits.max_connections: switches accepting on every listener of <srv>'s
 * loop on or off as the caps now say (at startup, after a reload: the
 * listeners and the caps may have changed). */
void px_listen_caps(struct px_srv *srv);

/* The process's cap when the config sets none: a third of the clients'
 * share of descriptors (below clients_max, proxy/io.h) left once every
 * listener is open, so that each client connection has one for its
 * upstream connection and one for an idle pooled one; 0 (none) when
 * RLIMIT_NOFILE is unknown or unlimited. Called before the worker threads
 * start (a descriptor taken and closed while they run would race theirs),
 * once the main loop listens; <later> counts the descriptors the other
 * loops will open (their listeners, event bases and wakeups). */
unsigned px_listen_cap_default(unsigned later);

/* Frees what the connection modes keep per loop; after their last
 * connection, before the event base. */
void px_srv_loop_free(struct px_srv *srv);

#endif
