/*
 * tls_accept: the accept path of a TLS service, between the listener
 * (proxy/listen.c) and the service's mode (proxy/http.c, proxy/tcp.c).
 *
 * An accepted socket first waits for its first byte (peeked, not read): a
 * TLS record starts with 0x16 and gets a handshake; an ASCII capital (a
 * request line: plain HTTP on the TLS port) gets a short plaintext 400
 * saying so, its bytes are read and dropped until the client closes (at
 * most PX_TLS_LINGER_MS, so the answer is not lost to a reset), and the
 * socket is closed; anything else is closed without a word. The handshake
 * is driven here with SSL_do_handshake() on the bare socket (no buffers are
 * allocated for a client that never completes one), bounded with the wait
 * for the first byte by the service's tls.handshake_timeout_ms. Once done,
 * the mode takes the socket with its SSL (struct px_tls_io, proxy/tls_io.h)
 * like an accepted socket, and reads and writes it through proxy/io.h; the
 * mode never sees a handshake.
 *
 * Every handshake that began (a first byte came) ends in exactly one class
 * of cutover_tls_handshakes_total (svc->tls_hs); a connection closed
 * before its first byte is no handshake and counts nowhere.
 */
#ifndef CUTOVER_PROXY_TLS_ACCEPT_H
#define CUTOVER_PROXY_TLS_ACCEPT_H

struct px_service;
struct sockaddr;

#define PX_TLS_LINGER_MS 2000         /* reading after the plain-HTTP 400 */

/* Takes an accepted client socket <fd> of service <svc>, which has TLS
 * material (svc->tls); counted in conns_active already. */
void px_tls_accept(struct px_service *svc, int fd, const struct sockaddr *sa, int salen);

/* Closes the handshakes in flight of <svc> (shutdown, exit). <svc> must not
 * be a retired service whose last connections these are. */
void px_tls_accept_close_all(struct px_service *svc);

#endif
