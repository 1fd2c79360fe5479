/* idle: the benchmark's keep-alive client for the memory row and the probes.
 *
 *   idle PORT COUNT [PATH [BYTES]]
 *
 * Opens COUNT connections to 127.0.0.1:PORT, sends one "GET PATH" on each
 * (default /small) and reads the whole response, which must be a 200 with a
 * Content-Length (equal to BYTES when given). Then it prints "ready COUNT",
 * and with COUNT > 1 holds the connections open (idle, kept alive) until it
 * is killed (SIGTERM); with COUNT 1 it exits at once (a probe). Exit status 0 ok, 1 a connection or response failed,
 * 2 usage. */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define TIMEOUT_MS 10000

static int
wait_fd(int fd, short ev)
{
    struct pollfd p = { .fd = fd, .events = ev };
    int n;

    do
        n = poll(&p, 1, TIMEOUT_MS);
    while (n < 0 && errno == EINTR);
    return n == 1 ? 0 : -1;
}

/* reads one response on fd; returns its body length or -1 */
static long
read_response(int fd, int i)
{
    static char buf[65536];
    size_t have = 0;
    char *end = NULL;
    long clen = -1, got;

    while (end == NULL) {
        ssize_t n;

        if (have >= sizeof(buf) - 1) {
            fprintf(stderr, "idle: connection %d: response head too large\n", i);
            return -1;
        }
        if (wait_fd(fd, POLLIN) < 0) {
            fprintf(stderr, "idle: connection %d: no response within %d ms\n", i, TIMEOUT_MS);
            return -1;
        }
        n = read(fd, buf + have, sizeof(buf) - 1 - have);
        if (n <= 0) {
            fprintf(stderr, "idle: connection %d: %s before the response head\n", i,
                    n == 0 ? "closed" : strerror(errno));
            return -1;
        }
        have += (size_t)n;
        buf[have] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    if (strncmp(buf, "HTTP/1.1 200 ", 13) != 0 && strncmp(buf, "HTTP/1.0 200 ", 13) != 0) {
        char *eol = strstr(buf, "\r\n");

        *eol = '\0';
        fprintf(stderr, "idle: connection %d: status line \"%s\"\n", i, buf);
        return -1;
    }
    for (char *l = strstr(buf, "\r\n") + 2; l < end; l = strstr(l, "\r\n") + 2)
        if (strncasecmp(l, "content-length:", 15) == 0)
            clen = strtol(l + 15, NULL, 10);
    if (clen < 0) {
        fprintf(stderr, "idle: connection %d: response without Content-Length\n", i);
        return -1;
    }
    got = (long)(have - (size_t)(end + 4 - buf));
    while (got < clen) {
        ssize_t n;

        if (wait_fd(fd, POLLIN) < 0) {
            fprintf(stderr, "idle: connection %d: body stalled\n", i);
            return -1;
        }
        n = read(fd, buf, sizeof(buf));
        if (n <= 0) {
            fprintf(stderr, "idle: connection %d: body cut at %ld of %ld bytes\n", i, got, clen);
            return -1;
        }
        got += n;
    }
    if (got != clen) {
        fprintf(stderr, "idle: connection %d: %ld bytes after a %ld-byte body\n", i, got - clen,
                clen);
        return -1;
    }
    return clen;
}

int
main(int argc, char **argv)
{
    struct sockaddr_in sa = { .sin_family = AF_INET };
    struct rlimit rl;
    const char *path = argc > 3 ? argv[3] : "/small";
    long want = argc > 4 ? strtol(argv[4], NULL, 10) : -1;
    char req[512];
    int port, count, len;
    int *fds;

    if (argc < 3 || argc > 5) {
        fprintf(stderr, "usage: idle PORT COUNT [PATH [BYTES]]\n");
        return 2;
    }
    port = atoi(argv[1]);
    count = atoi(argv[2]);
    if (port <= 0 || port > 65535 || count <= 0) {
        fprintf(stderr, "usage: idle PORT COUNT [PATH [BYTES]]\n");
        return 2;
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
    fds = calloc((size_t)count, sizeof(*fds));
    if (fds == NULL)
        return 1;
    sa.sin_port = htons((unsigned short)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    len = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", path, port);

    for (int i = 0; i < count; i++) {
        int one = 1;
        long body;

        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (fds[i] < 0) {
            fprintf(stderr, "idle: socket %d: %s\n", i, strerror(errno));
            return 1;
        }
        (void)setsockopt(fds[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (connect(fds[i], (struct sockaddr *)&sa, sizeof(sa)) < 0) {
            fprintf(stderr, "idle: connect %d to 127.0.0.1:%d: %s\n", i, port, strerror(errno));
            return 1;
        }
        if (write(fds[i], req, (size_t)len) != len) {
            fprintf(stderr, "idle: connection %d: short write\n", i);
            return 1;
        }
        body = read_response(fds[i], i);
        if (body < 0)
            return 1;
        if (want >= 0 && body != want) {
            fprintf(stderr, "idle: connection %d: %ld-byte body, expected %ld\n", i, body, want);
            return 1;
        }
    }
    printf("ready %d\n", count);
    fflush(stdout);
    if (count > 1)
        for (;;)
            pause();
    return 0;
}
