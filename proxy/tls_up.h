/*
 * tls_up: TLS towards the upstream servers of one side ("legacy.tls",
 * "new.tls"). Reads and checks the side's "tls" section, loads its files
 * (CA, client certificate and key) and builds one client SSL_CTX per side
 * when the config loads, so `cutoverd -t` checks them and no request ever
 * reads a file. Then, per new upstream connection: the SSL of its socket
 * bufferevent (proxy/io.h connects it and runs the handshake), which sends
 * the side's SNI, verifies the server's name (the side's "sni", else the
 * server's IP address against the certificate's IP SANs) and resumes the
 * server's last session; and the class of a failed handshake.
 *
 * A struct px_tls_up is immutable once loaded and shared by reference count
 * between config generations (a reload that finds a side's settings and
 * files unchanged keeps the old one: px_tls_up_keep), so pooled connections
 * and cached sessions stay valid across reloads that did not touch TLS.
 * Connections hold their SSL (and through it the SSL_CTX) by reference: a
 * reload that changes a side's TLS never pulls a context from under one.
 *
 * Includes nothing of ours but lib/: conf.h holds a pointer to it.
 */
#ifndef CUTOVER_PROXY_TLS_UP_H
#define CUTOVER_PROXY_TLS_UP_H

#include <stdbool.h>
#include <stddef.h>

struct bufferevent;
struct conf_err;
struct json_t;
struct sockaddr;
struct ssl_ctx_st;
struct ssl_session_st;

struct px_tls_up;

/* The last session a server gave (TLS 1.2 session or TLS 1.3 ticket), per
 * server runtime and replica, for the next connection to resume. It holds
 * a reference on the SSL_CTX it came from: a session is offered only to a
 * connection of that same context (a reload that changed the side's CA or
 * settings never resumes a session verified under the old ones). Zeroed =
 * empty; filled by OpenSSL's callback on the loop thread of the connection. */
struct px_tls_up_cache {
    struct ssl_session_st *sess;     /* owned, or NULL */
    struct ssl_ctx_st *ctx;          /* one reference, or NULL */
};

/* Parses "tls" object <j> at JSON path <path> (its files relative to <dir>),
 * loads the files and builds the context. 0 with *<out> (one reference), or
 * -1 with the place and the reason in <err> (the file and OpenSSL's or the
 * system's reason). */
int px_tls_up_parse(struct json_t *j, const char *path, const char *dir,
                    struct px_tls_up **out, struct conf_err *err);

/* Drops one reference (the last frees it). NULL is a no-op. */
void px_tls_up_put(struct px_tls_up *t);

/* Same settings and the same file contents (SHA-256), or both NULL. */
bool px_tls_up_equal(const struct px_tls_up *a, const struct px_tls_up *b);

/* A reload: when *<now> (the new config's) equals <old>, it is replaced by
 * a reference to <old>, so the side keeps its context. */
void px_tls_up_keep(struct px_tls_up **now, struct px_tls_up *old);

/* The side's context (borrowed), NULL for a NULL <t>. */
struct ssl_ctx_st *px_tls_up_ctx(const struct px_tls_up *t);

/* The configured "sni", or NULL. */
const char *px_tls_up_sni(const struct px_tls_up *t);

/* Makes <bev>, a socket bufferevent whose socket is set and not yet
 * connected, a TLS client of <t> (proxy/io.h: px_io_own_tls) for a connect
 * to <sa> with px_io_connect(): SNI, the name or IP to verify, and the
 * session of <cache> set. 0, or -1 when it cannot be made (nothing
 * changed). */
int px_tls_up_attach(struct bufferevent *bev, const struct px_tls_up *t,
                     const struct sockaddr *sa, struct px_tls_up_cache *cache);

/* Why the connect of TLS bufferevent <bev> failed (not a timeout). */
enum px_tls_up_fail {
    PX_TLS_UP_CONNECT = 0,           /* the TCP connect itself: nothing was sent */
    PX_TLS_UP_VERIFY,                /* the server's certificate was refused */
    PX_TLS_UP_HANDSHAKE,             /* any other handshake failure */
};

/* Classifies the failure and writes the reason (X509_verify_cert_error_string
 * or OpenSSL's reason) into <why>. */
enum px_tls_up_fail px_tls_up_failure(struct bufferevent *bev, char *why, size_t len);

/* True unless <bev> is a TLS bufferevent whose peer did not send
 * close_notify: only then may a close end a close-delimited body (a FIN or
 * an RST alone, whatever libevent reports, is a truncation). */
bool px_tls_up_closed_cleanly(struct bufferevent *bev);

/* Frees what <cache> holds. */
void px_tls_up_cache_clear(struct px_tls_up_cache *cache);

#endif
