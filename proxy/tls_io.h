/*
 * tls_io: TLS records between an evbuffer and a non-blocking socket, for
 * the data plane's own TLS I/O. proxy/io.c drives it from a socket
 * bufferevent's events (its read and write events call io.c, which reads
 * and writes through the functions here), so a TLS connection is an
 * ordinary socket bufferevent to everything above io.h: the same direct
 * writes, the write event armed only for what the socket did not take, the
 * same parking. libevent's bufferevent_openssl is not used on this path: it
 * calls SSL_write once per evbuffer chain (two records for a response whose
 * head and body are two chains) and arms the write event on every write.
 *
 * - Writes: one SSL_write per record of up to PX_TLS_IO_RECORD bytes, taken
 *   from the front of the evbuffer (evbuffer_pullup: a small response, head
 *   and body, is one record and one write(2)); only what the socket took is
 *   drained. A record the socket took in part stays in OpenSSL's buffer and
 *   its bytes at the front of the evbuffer: the next write passes them
 *   again, as SSL_write requires (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER: the
 *   evbuffer may move them).
 * - Reads: a record and all of its plaintext, even past the size asked, so
 *   that nothing decrypted waits inside the SSL. Connections read ahead
 *   (SSL_set_read_ahead, on a listener's connection only after its
 *   handshake): one read(2) takes what the socket holds, a small request or
 *   response in one call instead of its header and its body apart; the
 *   records read ahead are handed over in the same call while they fit the
 *   size asked, and when some stay in the SSL, or what ends the stream
 *   (close_notify, or a FIN where SSL_OP_IGNORE_UNEXPECTED_EOF allows it)
 *   came behind the data, t->more says so and io.c runs the read event
 *   again without a socket event (at once, and whenever reading is on
 *   again).
 * - Handshakes run elsewhere (proxy/tls_accept.c for clients, on the bare
 *   socket); a client-side one (upstream) is stepped here by io.c's events.
 *
 * The thread's OpenSSL error queue is left empty by every call (errors are
 * read and cleared where they happen), so SSL_get_error() sees only the
 * call it asks about.
 *
 * Kernel TLS: OpenSSL 3.0 can hand a connection's record layer to the
 * kernel (SSL_OP_ENABLE_KTLS) when the kernel has the "tls" upper-layer
 * protocol. px_tls_io_ktls() probes it once, the first time a TLS context
 * is built: a loopback connection asks for the ULP (TCP_ULP "tls"), which
 * needs the module present, loadable and not disabled; the contexts set
 * SSL_OP_ENABLE_KTLS only when that worked. The reads and writes here are
 * the same either way (SSL_read/SSL_write on the socket BIO).
 */
#ifndef CUTOVER_PROXY_TLS_IO_H
#define CUTOVER_PROXY_TLS_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct bufferevent;
struct evbuffer;
typedef struct ssl_st SSL;

/* Plaintext bytes per record written (TLS's maximum). */
#define PX_TLS_IO_RECORD 16384u

enum px_tls_io_state {
    PX_TLS_IO_OPEN = 0,              /* handshake done: records both ways */
    PX_TLS_IO_CONNECTING,            /* client: the TCP connect is in flight */
    PX_TLS_IO_HANDSHAKE,             /* client: SSL_do_handshake() until done */
    PX_TLS_IO_FAILED,                /* the connect or the handshake failed */
};

/* Results of px_tls_io_recv() and px_tls_io_handshake() besides bytes. */
#define PX_TLS_IO_AGAIN      (-2)    /* wait until the socket is readable */
#define PX_TLS_IO_WANT_WRITE (-3)    /* wait until the socket is writable */

/* The TLS side of one connection. io.c reads the first fields. */
struct px_tls_io {
    SSL *ssl;                        /* owned */
    struct bufferevent *bev;         /* the bufferevent whose events drive it
                                      * (io.c), or NULL while detached */
    size_t wpending;                 /* > 0: a record of this many bytes is
                                      * partly written: pass them again */
    uint64_t deadline_ms;            /* client: end of connect_ms (io.c) */
    unsigned long error;             /* the last OpenSSL error of a failed
                                      * handshake, or 0 */
    int connect_err;                 /* client: a connect refused at once */
    unsigned char state;             /* enum px_tls_io_state */
    bool read_wants_write;           /* SSL_read must write first (io.c waits) */
    bool more;                       /* the last read left records read ahead, or
                                      * the end of the stream, in the SSL: the next
                                      * read needs no socket event (io.c runs it) */
};

/* The TLS side of a connection whose SSL is <ssl> (owned from now on, on
 * its socket): open when its handshake is done, else a client that still
 * has to connect. */
struct px_tls_io *px_tls_io_new(SSL *ssl);

/* Frees <t> and its SSL (the socket stays open). NULL is a no-op. */
void px_tls_io_free(struct px_tls_io *t);

/* Reads one record into the end of <in>, and the records read ahead after
 * it while they fit: at most <max> bytes, unless a record holds more (all
 * of it is taken). Returns the bytes read, 0 at the end of the stream,
 * PX_TLS_IO_AGAIN, PX_TLS_IO_WANT_WRITE, or -1 with errno (ECONNRESET,
 * EPROTO for a TLS error, ENOMEM); sets t->more when bytes came and the
 * SSL still holds records or the end. <in> must not be frozen at its end. */
ssize_t px_tls_io_recv(struct px_tls_io *t, struct evbuffer *in, size_t max);

/* Writes what <out> holds as records until the socket takes no more;
 * drains what went out. Returns the bytes written (0: none, the socket is
 * full), or -1 with errno on an error. <out> must not be frozen at its
 * front. */
ssize_t px_tls_io_send(struct px_tls_io *t, struct evbuffer *out);

/* One step of a client handshake: 1 done, PX_TLS_IO_AGAIN,
 * PX_TLS_IO_WANT_WRITE, or -1 (t->error holds OpenSSL's reason). */
int px_tls_io_handshake(struct px_tls_io *t);

/* Whether the SSL of <t> holds bytes read from the socket and not handed
 * over yet (read ahead), or the end of the stream. */
bool px_tls_io_holds(const struct px_tls_io *t);

/* Sends close_notify once, best effort, never blocking. */
void px_tls_io_close_notify(struct px_tls_io *t);

/* The SNI name the client sent (borrowed; NULL none) and the subject of its
 * certificate in <subj> ("" none). */
const char *px_tls_io_peer(struct px_tls_io *t, char *subj, size_t len);

/* Whether the kernel takes TLS records (probed on the first call, from any
 * thread), and why not ("" when it does). */
bool px_tls_io_ktls(void);
const char *px_tls_io_ktls_why(void);

/* Logs the probe's answer (info), once per process: the daemon's load,
 * not `cutoverd -t`. */
void px_tls_io_ktls_log(void);

/* Whether <t>'s records go out through the kernel. */
bool px_tls_io_ktls_send(const struct px_tls_io *t);

#endif
