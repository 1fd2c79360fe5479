/*
 * ws: the RFC 6455 client of the integration tests (see ws.h).
 */
#define _GNU_SOURCE                    /* strcasestr */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "tests/harness/harness.h"
#include "tests/harness/ws.h"

/* Reads exactly <n> bytes, each read within <timeout_ms>. 0 or -1. */
static int
read_n(int fd, void *buf, size_t n, int timeout_ms)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    size_t got = 0;
    ssize_t r;

    while (got < n) {
        if (poll(&p, 1, timeout_ms) <= 0)
            return -1;
        r = read(fd, (char *)buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

static int
send_frame(int fd, int opcode, const void *buf, size_t len)
{
    unsigned char head[14], mask[4], *out;
    size_t h = 0, i;
    int rc;

    head[h++] = (unsigned char)(0x80 | opcode);
    if (len < 126) {
        head[h++] = (unsigned char)(0x80 | len);
    } else if (len <= 0xffff) {
        head[h++] = 0x80 | 126;
        head[h++] = (unsigned char)(len >> 8);
        head[h++] = (unsigned char)len;
    } else {
        head[h++] = 0x80 | 127;
        for (i = 0; i < 8; i++)
            head[h++] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
    }
    if (RAND_bytes(mask, 4) != 1)
        return -1;
    memcpy(head + h, mask, 4);
    h += 4;
    if ((out = malloc(h + len + 1)) == NULL)
        return -1;
    memcpy(out, head, h);
    for (i = 0; i < len; i++)
        out[h + i] = ((const unsigned char *)buf)[i] ^ mask[i % 4];
    rc = h_send_all(fd, out, h + len);
    free(out);
    return rc;
}

int
h_ws_connect(int port, const char *path, const char *extra, int timeout_ms)
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char nonce[16], sha[SHA_DIGEST_LENGTH];
    char key[32], want[64], cat[128], req[2048], head[8192];
    size_t n = 0;
    int fd;

    if (RAND_bytes(nonce, sizeof(nonce)) != 1)
        return -1;
    EVP_EncodeBlock((unsigned char *)key, nonce, sizeof(nonce));
    snprintf(cat, sizeof(cat), "%s%s", key, guid);
    SHA1((const unsigned char *)cat, strlen(cat), sha);
    EVP_EncodeBlock((unsigned char *)want, sha, sizeof(sha));
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
             "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
             "%s\r\n", path, port, key, extra);
    if ((fd = h_connect(port)) < 0)
        return -1;
    if (h_send_all(fd, req, strlen(req)) < 0)
        goto fail;
    /* the head, byte by byte: nothing after it may be taken from a frame */
    while (n < sizeof(head) - 1) {
        if (read_n(fd, head + n, 1, timeout_ms) < 0)
            goto fail;
        head[++n] = '\0';
        if (n >= 4 && memcmp(head + n - 4, "\r\n\r\n", 4) == 0)
            break;
    }
    if (strncmp(head, "HTTP/1.1 101", 12) != 0) {
        fprintf(stderr, "h_ws_connect: not upgraded: %.200s\n", head);
        goto fail;
    }
    if (strcasestr(head, want) == NULL) {
        fprintf(stderr, "h_ws_connect: no Sec-WebSocket-Accept %s in %.400s\n", want, head);
        goto fail;
    }
    return fd;
fail:
    close(fd);
    return -1;
}

int
h_ws_send(int fd, int opcode, const void *buf, size_t len)
{
    return send_frame(fd, opcode, buf, len);
}

int
h_ws_recv(int fd, char **buf, size_t *len, int timeout_ms)
{
    unsigned char h[2], ext[8];
    char *msg = NULL;
    size_t total = 0;
    int opcode = -1;

    for (;;) {
        uint64_t plen;
        int op, fin, i;
        char *p;

        if (read_n(fd, h, 2, timeout_ms) < 0)
            goto fail;
        fin = h[0] & 0x80;
        op = h[0] & 0x0f;
        plen = h[1] & 0x7f;
        if (h[1] & 0x80)
            goto fail;                 /* a server never masks */
        if (plen >= 126) {
            int k = plen == 126 ? 2 : 8;

            if (read_n(fd, ext, (size_t)k, timeout_ms) < 0)
                goto fail;
            for (plen = 0, i = 0; i < k; i++)
                plen = plen << 8 | ext[i];
        }
        if (plen > (64u << 20) || (p = realloc(msg, total + plen + 1)) == NULL)
            goto fail;
        msg = p;
        if (plen > 0 && read_n(fd, msg + total, (size_t)plen, timeout_ms) < 0)
            goto fail;
        if (op == 0x9) {               /* ping: pong, not part of the message */
            if (send_frame(fd, 0xA, msg + total, (size_t)plen) < 0)
                goto fail;
            continue;
        }
        if (op == 0xA)
            continue;
        if (op == H_WS_CLOSE)
            goto fail;
        if (op != 0)
            opcode = op;
        total += plen;
        if (fin)
            break;
    }
    msg[total] = '\0';
    *buf = msg;
    *len = total;
    return opcode;
fail:
    free(msg);
    return -1;
}

int
h_ws_who(int fd, char *name, size_t len, int timeout_ms)
{
    char *m;
    size_t n;

    if (h_ws_send(fd, H_WS_TEXT, "who", 3) < 0 || h_ws_recv(fd, &m, &n, timeout_ms) < 0)
        return -1;
    snprintf(name, len, "%s", m);
    free(m);
    return 0;
}
