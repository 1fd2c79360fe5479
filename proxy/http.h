/*
 * http: HTTP mode, what the rest of the data plane sees of it: an accepted
 * client socket becomes a connection of its service, and the connections
 * of a service can be closed when idle (shutdown) or all at once (exit).
 * How a connection serves its requests is in proxy/http.c; closing them is
 * proxy/http_conn.c's.
 */
#ifndef CUTOVER_PROXY_HTTP_H
#define CUTOVER_PROXY_HTTP_H

struct px_service;
struct px_srv;
struct px_tls_io;
struct sockaddr;

/* Takes an accepted client socket <fd> of an HTTP service. */
void px_http_accept(struct px_service *svc, int fd, const struct sockaddr *sa, int salen);

/* Takes a client connection of an HTTP service whose TLS handshake is done
 * (proxy/tls_accept.c): socket <fd> and its TLS side <tls> (both owned from
 * now on), <sa> the client's address. It is served as a plain one through
 * proxy/io.h (and parks as one, keeping only <tls> and its socket), and
 * says X-Forwarded-Proto: https. */
void px_http_accept_tls(struct px_service *svc, int fd, struct px_tls_io *tls,
                        const struct sockaddr *sa);

/* Closes idle keep-alive client connections; the others close after their
 * current request (shutdown, retired service). */
void px_http_close_idle(struct px_service *svc);

/* Frees every connection at once (exit after the grace time). */
void px_http_close_all(struct px_service *svc);

/* Frees what HTTP mode keeps per loop (the header field table and the
 * spare buffers); after its last connection, before the event base. */
void px_http_loop_free(struct px_srv *srv);

#endif
