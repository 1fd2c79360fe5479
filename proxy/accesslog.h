/*
 * accesslog: the daemon-wide access log (config key "access_log": {"file"}),
 * one line per finished HTTP request or TCP connection, key=value fields
 * separated by single spaces, values never containing a space, a quote or
 * a control character (the request path is escaped as \xHH):
 *
 *   ts=2026-12-05T18:40:34.123Z conn=7 service=web client=127.0.0.1:51234
 *   method=GET path=/a?b=1 status=200 side=new server=127.0.0.1:9002
 *   why=weight bytes_in=0 bytes_out=12 duration_ms=1.234 error=- sni=-
 *   client_cert=-
 *
 * (one line in the file). A missing value is "-". Off by default: without
 * the key there is no object and the data plane pays one pointer test.
 *
 * Lines are appended to an evbuffer and written once per event-loop
 * iteration (an event activated by the first line), or at once past
 * 64 KiB: a write(2) per batch, never an fsync. The file is opened with
 * O_APPEND and reopened by px_access_log_reopen() (SIGHUP, after
 * logrotate moved it). A write error drops the batch (memory stays
 * bounded) and is logged when it starts and when it ends, not per line.
 */
#ifndef CUTOVER_PROXY_ACCESSLOG_H
#define CUTOVER_PROXY_ACCESSLOG_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct px_access_log;
struct sockaddr;

/* One finished request or connection. Every pointer is borrowed for the
 * call; NULL strings are written as "-". */
struct px_access_rec {
    uint64_t conn;               /* connection id (as in the debug log) */
    const char *service;
    const char *client;          /* "ip:port" */
    const char *method;          /* HTTP method; NULL for TCP or no parsed head */
    const char *path;            /* request target as received (raw bytes, escaped
                                  * on output); NULL for TCP or no parsed head */
    size_t path_len;
    int status;                  /* status sent to the client; 0 when none */
    const char *side;            /* "legacy" / "new"; NULL when not routed */
    const char *server;          /* "ip:port" of the server; NULL when none */
    const char *why;             /* routing reason (weight, sticky, override,
                                  * fallback); NULL when not routed */
    uint64_t bytes_in;           /* request body bytes (TCP: client to server) */
    uint64_t bytes_out;          /* response body bytes (TCP: server to client) */
    uint64_t duration_us;        /* head complete (TCP: accept) to the end */
    const char *error;           /* error kind (px_err_names, "client_closed", …);
                                  * NULL when none */
    const char *sni;             /* TLS: the server name the client asked for;
                                  * NULL for none or a plain connection */
    const char *client_cert;     /* TLS: the subject of the client's certificate
                                  * ("/CN=..."); NULL or "" when none */
};

#define PX_ACCESS_LOG_FLUSH_BYTES (64u * 1024u)  /* written at once past this */
#define PX_ACCESS_LOG_PATH_MAX    2048u          /* raw path bytes logged; longer
                                                  * paths end in "..." */

/* Opens (creates, mode 0640) <path> for appending and returns the log, or
 * NULL with a message in <err>. Batches are written from events of <base>
 * (borrowed: must outlive the log). */
struct px_access_log *px_access_log_new(struct event_base *base, const char *path,
                                        char *err, size_t errlen);

/* Writes what is pending, closes the file and frees <l>. NULL is a no-op. */
void px_access_log_free(struct px_access_log *l);

/* Writes what is pending to the current file, then reopens the path (a new
 * file when logrotate moved the old one). Returns 0, or -1 (logged) when
 * the path cannot be opened: the log keeps writing to the file it had. */
int px_access_log_reopen(struct px_access_log *l);

/* The path being written (borrowed from <l>). */
const char *px_access_log_path(const struct px_access_log *l);

/* Appends the line of <r>. Never blocks on the loop beyond a write(2) of a
 * full batch. */
void px_access_log_write(struct px_access_log *l, const struct px_access_rec *r);

/* Writes what is pending now (tests, shutdown). */
void px_access_log_flush(struct px_access_log *l);

/* The port of <sa> (AF_INET or AF_INET6; 0 otherwise). */
unsigned px_sockaddr_port(const struct sockaddr *sa);

/* Formats <ip> and <port> as "ip:port" ("[ip]:port" for IPv6) into <buf>.
 * Returns <buf>. */
const char *px_access_client(const char *ip, unsigned port, char *buf, size_t len);

#endif
