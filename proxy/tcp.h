/*
 * tcp: TCP mode, what the rest of the data plane sees of it: an accepted
 * client socket becomes a tunnel to one server, chosen once per
 * connection; a blue-green switch drains the tunnels of a side, and the
 * tunnels of a service can be closed all at once (exit). How a tunnel
 * relays is in proxy/tcp.c.
 */
#ifndef CUTOVER_PROXY_TCP_H
#define CUTOVER_PROXY_TCP_H

#include "router/router.h"

struct px_service;
struct px_tls_io;
struct sockaddr;

/* Takes an accepted client socket <fd> of a TCP service. */
void px_tcp_accept(struct px_service *svc, int fd, const struct sockaddr *sa, int salen);

/* Takes a client connection of a TCP service whose TLS handshake is done
 * (proxy/tls_accept.c): socket <fd> and its TLS side <tls> (both owned
 * from now on). The tunnel relays the decrypted bytes through buffers (no
 * splice); the server's end of stream reaches the client as close_notify,
 * then FIN. */
void px_tcp_accept_tls(struct px_service *svc, int fd, struct px_tls_io *tls,
                       const struct sockaddr *sa);

/* Blue-green, rollback: closes the tunnels of <side> after <drain_s> seconds
 * (0: now). Returns how many were scheduled. */
unsigned px_tcp_drain_side(struct px_service *svc, enum rt_side side, int drain_s);

/* Frees every tunnel at once (exit after the grace time). */
void px_tcp_close_all(struct px_service *svc);

#endif
