/*
 * harness/tls: what the TLS tests need beside the harness: a set of test
 * certificates made with the `openssl` command, a blocking TLS client in
 * the test process (SNI, ALPN, a CA to verify the server, a client
 * certificate, a session to resume, the order in which it closes:
 * close_notify, FIN, RST), whose responses the harness's reader parses,
 * and a runner for the `openssl s_client` and `curl` commands.
 */
#ifndef CUTOVER_TESTS_HARNESS_TLS_H
#define CUTOVER_TESTS_HARNESS_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include "tests/harness/harness.h"

typedef struct ssl_session_st SSL_SESSION;
typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;

/* Makes, in <dir> (which exists), with the `openssl` command:
 *   ca.pem/.key          the test CA ("cutover test CA", ECDSA P-256)
 *   otherca.pem/.key     another CA nobody trusts
 *   srv.pem/.key         ECDSA P-256, CN=a.test, names a.test and b.test, 30 days
 *   wild.pem/.key        RSA 2048, *.wild.test, 30 days
 *   rsa.pem/.key         RSA 2048, rsa.test, 30 days
 *   srvrsa.pem/.key      RSA 2048, the names of srv, O=cutover tests rsa
 *   soon.pem/.key        ECDSA, soon.test, expires in 7 days
 *   expired.pem/.key     ECDSA, expired.test, expired in 2020
 *   client.pem/.key      client certificate CN=client.test by the test CA
 *   stranger.pem/.key    client certificate CN=stranger.test by otherca
 * Every certificate but the CAs' is signed by ca unless said. Returns 0, or
 * -1 with the command's output on stderr. */
int h_tls_make_certs(const char *dir);

/* Makes <dir>/<name>.pem and .key: a new ECDSA key and a certificate for
 * <subject> ("/CN=a.test/O=x") with DNS names <names> ("a.test,b.test")
 * signed by <dir>/ca.pem, <days> days. 0 or -1. */
int h_tls_make_cert(const char *dir, const char *name, const char *subject, const char *names,
                    int days);

/* How the client ends a connection. */
enum h_tls_end {
    H_TLS_NOTIFY_FIN = 0,        /* close_notify, then FIN (a clean close) */
    H_TLS_FIN,                   /* FIN without close_notify */
    H_TLS_RST,                   /* RST without close_notify */
    H_TLS_NOTIFY_RST,            /* close_notify, then RST */
};

struct h_tls_opts {
    const char *sni;             /* server name to send; NULL: none */
    const char *ca;              /* verify the server against this CA file (and the
                                  * name against <sni>); NULL: no verification */
    const char *cert, *key;      /* client certificate; NULL: none */
    const char *alpn;            /* offered protocols, "h2,http/1.1"; NULL: none */
    int min_version, max_version;/* 12 or 13; 0: the library's */
    const char *ciphers;         /* TLS 1.2 cipher list; NULL: the library's */
    const char *sigalgs;         /* signature algorithms offered; NULL: the library's */
    SSL_SESSION *session;        /* resume it; NULL: a full handshake */
    size_t hello_pad;            /* > 0: an unknown extension of that many bytes
                                  * swells the ClientHello */
    bool connect_only;           /* h_tls_open() connects, h_tls_handshake() later */
};

/* One client connection. */
struct h_tls {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    SSL_SESSION *session;        /* the last session the server gave (a ticket
                                  * arrives after the handshake: read first) */
    char subject[512];           /* the server certificate's subject, "/CN=a.test" */
    char key_type[32];           /* "EC" or "RSA": its key */
    char alpn[64];               /* the protocol the server chose, "" none */
    char version[16];            /* "TLSv1.3" */
    bool reused;                 /* the session was resumed */
    char error[512];             /* why the connect or handshake failed */
};

/* Connects to 127.0.0.1:<port> and runs the handshake (5 s at most).
 * Returns 0, or -1 with t->error set (t is usable for h_tls_close() either
 * way). */
int h_tls_open(struct h_tls *t, int port, const struct h_tls_opts *o);

/* The handshake of a connection opened with connect_only. 0, or -1 with
 * t->error set. */
int h_tls_handshake(struct h_tls *t);

/* Writes all of <buf>. 0 or -1 (t->error says why). */
int h_tls_send(struct h_tls *t, const void *buf, size_t len);

/* Writes <text> on the bare socket, under TLS (a client that talks
 * nonsense after the handshake, or a prefix before one). 0 or -1. */
int h_tls_send_raw(struct h_tls *t, const void *buf, size_t len);

/* Reads one response (as h_read_response()). */
int h_tls_read_response(struct h_tls *t, struct h_resp *r);

/* True when the server ends the connection (close_notify, FIN or RST)
 * within <timeout_ms> with no data before it. */
bool h_tls_peer_closed(struct h_tls *t, int timeout_ms);

/* Reads and drops what the server still sends until it ends the stream,
 * at most <timeout_ms>: 1 when it ended with close_notify, 0 with a FIN or
 * RST and no close_notify (a cut stream), -1 when it did not end in time.
 * *<bytes> (when not NULL) gets the number of bytes dropped. */
int h_tls_read_end(struct h_tls *t, int timeout_ms, size_t *bytes);

/* Ends the connection in the order <how> and frees everything (the
 * session in t->session too). */
void h_tls_close(struct h_tls *t, enum h_tls_end how);

/* h_tls_open, one request <raw>, one response into <r> (zeroed first),
 * a clean close. Returns 0, or -1 (handshake failure, no response; said on
 * stderr only when the response was cut). */
int h_tls_exchange(int port, const struct h_tls_opts *o, const char *raw, struct h_resp *r);

/* Runs <argv> (argv[0] a command in $PATH) with <input> on its stdin
 * (NULL: nothing), stdout and stderr into <out> (NUL-terminated, cut to
 * <outlen>), killed after <timeout_ms>. Returns its exit code, or -1. */
int h_run(char *const argv[], const char *input, char *out, size_t outlen, int timeout_ms);

#endif
