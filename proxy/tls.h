/*
 * tls: the listener side's TLS material, built from a service's "tls" key
 * (proxy/tls_conf.h) with OpenSSL 3.
 *
 * One struct px_tls_ctx per TLS service and load: an SSL_CTX per
 * certificate (all with the same settings: versions, ciphers, ALPN, client
 * verification, session resumption), the first one the default. A
 * handshake starts on the default context; the server-name callback moves
 * it to the certificate whose names match the client's SNI, exact name
 * first, then a wildcard ("*.example.com" covers one label), else it stays
 * on the default. Built at load, never per connection, immutable after,
 * and shared by every worker through an atomic reference count: a worker's
 * service holds one reference, a handshake in flight another (the SNI,
 * ALPN and ticket callbacks read it); an established connection needs none
 * (OpenSSL's SSL keeps its own SSL_CTX references, and nothing of ours is
 * called after the handshake: renegotiation is off). A reload builds a new
 * one; connections keep what they started with.
 *
 * Session resumption: with session_tickets (the default), stateless tickets
 * sealed by keys of ours (AES-256-CBC + HMAC-SHA256, the format OpenSSL
 * uses itself) kept in memory only, in a struct px_tls_keys that every
 * context of the service shares, across workers and across reloads, so any
 * worker resumes any other's ticket and a certificate reload loses no
 * session. The encrypting key is replaced every PX_TLS_TICKET_ROTATE_S; the
 * one before it still decrypts (and such a ticket is renewed). Without
 * tickets, OpenSSL's session cache on the default context, shared by the
 * workers, PX_TLS_SESSION_CACHE entries.
 *
 * Each certificate and key pair is loaded by proxy/tls_cert.c (what it
 * refuses and what it warns about is said there).
 */
#ifndef CUTOVER_PROXY_TLS_H
#define CUTOVER_PROXY_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/tls_cert.h"

struct bufferevent;
struct json_t;
struct px_conf;
struct px_tls_conf;
typedef struct ssl_st SSL;

#define PX_TLS_TICKET_ROTATE_S  (12u * 3600u)  /* a new ticket key this often */
#define PX_TLS_SESSION_TIMEOUT_S 7200u         /* a session resumes this long */
#define PX_TLS_SESSION_CACHE    20480u         /* cached sessions without tickets */

/* How a handshake ended: cutover_tls_handshakes_total{result}. Must remain
 * in this order (px_tls_result_names). */
enum px_tls_result {
    PX_TLS_OK = 0,
    PX_TLS_NO_SHARED_CIPHER,     /* no cipher, group or signature in common */
    PX_TLS_UNKNOWN_CA,           /* a client certificate of a CA we do not know,
                                  * or the client does not know ours */
    PX_TLS_BAD_CERT,             /* a client certificate missing (required),
                                  * expired, revoked, unusable */
    PX_TLS_VERSION,              /* no protocol version in common */
    PX_TLS_TIMEOUT,              /* not done within handshake_timeout_ms */
    PX_TLS_PLAIN_HTTP,           /* plain HTTP on the TLS port (answered 400) */
    PX_TLS_OTHER,                /* anything else: garbage, a close mid-way, no
                                  * common ALPN protocol */
    PX_TLS_R__COUNT
};

extern const char *const px_tls_result_names[PX_TLS_R__COUNT];

struct px_tls_ctx;
struct px_tls_keys;

/* Builds the TLS material of every service of <c> that has "tls": a new
 * array of c->nservices entries (NULL where a service has none) in *out.
 * <prev> (NULL, or c->nservices entries) holds the running material of
 * the service of the same name, whose ticket keys the new one keeps.
 * <check_only> (`cutoverd -t`): a file that does not exist yet only warns
 * (configs are checked before their secrets are deployed) and its service
 * gets no material. Warnings (a certificate expiring within
 * PX_TLS_EXPIRY_WARN_DAYS days) are logged. Returns 0, or -1 with
 * "FILE: services[I].tls.certs[K].key: /path/key.pem: reason" in <err> and
 * nothing built. */
int px_tls_load_all(const struct px_conf *c, struct px_tls_ctx *const *prev,
                    bool check_only, struct px_tls_ctx ***out, char *err, size_t errlen);

/* Drops the references of an array of <n> entries from px_tls_load_all()
 * and frees it. NULL is a no-op. */
void px_tls_free_all(struct px_tls_ctx **all, unsigned n);

/* Takes one more reference on <t> (NULL passes); returns <t>. */
struct px_tls_ctx *px_tls_ctx_get(struct px_tls_ctx *t);

/* Drops one reference; the last frees it. NULL is a no-op. Any thread. */
void px_tls_ctx_put(struct px_tls_ctx *t);

/* A new server-side SSL on the default context of <t>, for socket <fd>, in
 * accept state, or NULL. The caller holds a reference on <t> until the
 * handshake ended. */
SSL *px_tls_ssl_new(struct px_tls_ctx *t, int fd);

/* The class of a failed handshake: <ret> and the SSL_get_error() of the
 * last SSL_do_handshake() on <ssl>, with OpenSSL's error queue as it left it
 * (emptied here). Fills <why> with OpenSSL's reason (for the debug log). */
enum px_tls_result px_tls_classify(SSL *ssl, int ret, int ssl_error, char *why,
                                   size_t whylen);

/* How many certificates <t> has, and certificate <i> of them (borrowed
 * from <t>). */
unsigned px_tls_ncerts(const struct px_tls_ctx *t);
const struct px_tls_cert_info *px_tls_cert(const struct px_tls_ctx *t, unsigned i);

/* Adds "tls": {"certs":[{"file","subject","names","not_before","not_after",
 * "expires_in_days","key"}], "loaded", "alpn", "min_version",
 * "client_verify", "session_tickets", "kernel_tls" ("in use" or "not
 * available", with "kernel_tls_why")} of <t> to status object <obj>. No
 * key material. */
void px_tls_status(const struct px_tls_ctx *t, const struct px_tls_conf *tc,
                   struct json_t *obj);

/* For the access log of a TLS connection on <bev>: the SNI name the client
 * sent (borrowed from its SSL; NULL when none) and the subject of its
 * certificate written into <subj> ("" when it sent none). No allocation. */
const char *px_tls_peer(struct bufferevent *bev, char *subj, size_t len);

/* Sends close_notify on TLS bufferevent <bev> (proxy/io.h) before it is
 * freed, when its output is empty (a response that ended cleanly); best
 * effort, never blocks. Nothing for a plain one. */
void px_tls_close_notify(struct bufferevent *bev);

/* ---- ticket keys (for the tests: the rotation is time-driven) ---------- */

/* A new key set: one random key, created now (<now_s>, seconds of a
 * monotonic clock), rotating every <rotate_s>. One reference. */
struct px_tls_keys *px_tls_keys_new(uint64_t now_s, unsigned rotate_s);
void px_tls_keys_put(struct px_tls_keys *k);

/* The name (16 bytes) of the key that encrypts at <now_s> (rotating when
 * due) into <name>. */
void px_tls_keys_current(struct px_tls_keys *k, uint64_t now_s, unsigned char name[16]);

/* 1 when <name> is the current key, 2 when it is the previous one (still
 * decrypts: the ticket is renewed), 0 when it is unknown (a full
 * handshake). */
int px_tls_keys_find(struct px_tls_keys *k, const unsigned char name[16]);

/* The key set of <t> (borrowed). */
struct px_tls_keys *px_tls_ctx_keys(struct px_tls_ctx *t);

/* Which certificate of <t> serves SNI name <name> (NULL: none sent):
 * exact, then wildcard, else 0 (the default). */
unsigned px_tls_pick(const struct px_tls_ctx *t, const char *name);

#endif
