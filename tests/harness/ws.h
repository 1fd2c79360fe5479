/*
 * ws: a small RFC 6455 (WebSocket) client for the integration tests: the
 * opening handshake over a plain TCP connection (Sec-WebSocket-Key and its
 * Accept checked), masked frames out, frames in (fragmented messages
 * joined, pings answered), so a test can drive a real WebSocket server
 * (tests/tools/ws_backend.py, Debian's python3-websockets) through cutoverd.
 */
#ifndef CUTOVER_TESTS_WS_H
#define CUTOVER_TESTS_WS_H

#include <stddef.h>

#define H_WS_TEXT   0x1
#define H_WS_BINARY 0x2
#define H_WS_CLOSE  0x8

/* Connects to 127.0.0.1:<port> and upgrades GET <path> (with <extra>
 * header lines, "" for none) to a WebSocket; waits <timeout_ms> at most.
 * Returns the socket, or -1 (the reason on stderr). */
int h_ws_connect(int port, const char *path, const char *extra, int timeout_ms);

/* Sends one message (<opcode> H_WS_TEXT or H_WS_BINARY), masked, as one
 * frame. Returns 0 or -1. */
int h_ws_send(int fd, int opcode, const void *buf, size_t len);

/* Receives one whole message into *<buf> (malloc'ed, NUL added; caller
 * frees) and its length, waiting <timeout_ms> at most for each read.
 * Returns its opcode, or -1 when the connection closed, failed or timed
 * out. */
int h_ws_recv(int fd, char **buf, size_t *len, int timeout_ms);

/* Sends "who" and returns the server's name in <name> (0), or -1. */
int h_ws_who(int fd, char *name, size_t len, int timeout_ms);

#endif
