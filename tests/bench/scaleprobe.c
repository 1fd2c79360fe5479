/*
 * scaleprobe: the probes of the scale bench (tests/bench/scale.sh).
 *
 *   scaleprobe load PORT CONNS QUIET_MS CMD [ARG...]
 *     Keeps CONNS keep-alive connections to 127.0.0.1:PORT busy, each
 *     sending "GET /" and reading the whole answer (Content-Length
 *     framing) before the next; after QUIET_MS runs CMD (fork and exec,
 *     its output discarded) and goes on until it exits and 50 ms more.
 *     Prints one line:
 *       cmd_ms=N during_max_ms=N during_requests=N quiet_max_ms=N
 *       quiet_requests=N errors=N cmd_status=N
 *     the worst latency of the requests in flight while the command ran,
 *     beside the worst of the quiet spell before it: what a reload or a
 *     status costs the requests a proxy serves meanwhile (with SO_REUSEPORT
 *     the connections spread over every event loop, the main one
 *     included). Exit 1 when a connection failed or an answer was not 2xx.
 *   scaleprobe wait PORT TIMEOUT_MS
 *     Until "GET /" on a new connection to 127.0.0.1:PORT is answered 2xx
 *     (every 2 ms); exit 1 after TIMEOUT_MS.
 *   scaleprobe unix PATH LINE
 *     Sends LINE and a newline on the unix socket PATH and reads the answer
 *     until the peer closes or, when it starts with '{', until its first
 *     newline (the admin socket's one reply line); prints its size.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAXC 256

struct conn {
    int fd;
    double sent;                 /* when the request went out (ms) */
    char buf[65536];
    size_t len;
};

static double
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int
conn_open(int port)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        perror("scaleprobe: connect");
        exit(1);
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static void
send_req(struct conn *c)
{
    static const char req[] = "GET / HTTP/1.1\r\nHost: bench\r\n\r\n";

    c->len = 0;
    c->sent = now_ms();
    if (write(c->fd, req, sizeof(req) - 1) != (ssize_t)(sizeof(req) - 1)) {
        perror("scaleprobe: write");
        exit(1);
    }
}

/* 1: an answer is complete (its status in *status), 0: not yet, -1: closed. */
static int
answer_done(struct conn *c, int *status)
{
    char *end, *cl;
    size_t head, body;

    c->buf[c->len < sizeof(c->buf) ? c->len : sizeof(c->buf) - 1] = '\0';
    if ((end = strstr(c->buf, "\r\n\r\n")) == NULL)
        return 0;
    head = (size_t)(end - c->buf) + 4;
    cl = strcasestr(c->buf, "\r\nContent-Length:");
    body = cl != NULL && cl < end ? strtoul(cl + 17, NULL, 10) : 0;
    if (c->len < head + body)
        return 0;
    *status = atoi(c->buf + 9);
    return 1;
}

/* 1 when "GET /" on a new connection to <port> gets a 2xx, else 0. */
static int
get_ok(int port)
{
    static const char req[] = "GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n";
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    char buf[512];
    int fd = socket(AF_INET, SOCK_STREAM, 0), ok = 0;
    ssize_t n;

    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        write(fd, req, sizeof(req) - 1) == (ssize_t)(sizeof(req) - 1) &&
        (n = read(fd, buf, sizeof(buf) - 1)) > 12) {
        buf[n] = '\0';
        ok = strncmp(buf, "HTTP/1.1 2", 10) == 0;
    }
    if (fd >= 0)
        close(fd);
    return ok;
}

static int
cmd_wait(int port, double timeout_ms)
{
    double end = now_ms() + timeout_ms;

    while (!get_ok(port)) {
        if (now_ms() > end)
            return 1;
        usleep(2000);
    }
    return 0;
}

static int
cmd_unix(const char *path, const char *line)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    static char buf[1 << 16];
    size_t total = 0;
    ssize_t n;
    int fd = socket(AF_UNIX, SOCK_STREAM, 0), json = -1;

    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        perror("scaleprobe: unix connect");
        return 1;
    }
    if (write(fd, line, strlen(line)) < 0 || write(fd, "\n", 1) != 1) {
        perror("scaleprobe: unix write");
        return 1;
    }
    while ((n = read(fd, buf, sizeof(buf))) > 0) {
        if (json < 0)
            json = buf[0] == '{';
        total += (size_t)n;
        if (json == 1 && memchr(buf, '\n', (size_t)n) != NULL)
            break;
    }
    close(fd);
    printf("%zu bytes\n", total);
    return total > 0 ? 0 : 1;
}

static int cmd_load(int argc, char **argv);

int
main(int argc, char **argv)
{
    if (argc >= 4 && strcmp(argv[1], "wait") == 0)
        return cmd_wait(atoi(argv[2]), atof(argv[3]));
    if (argc >= 4 && strcmp(argv[1], "unix") == 0)
        return cmd_unix(argv[2], argv[3]);
    if (argc >= 6 && strcmp(argv[1], "load") == 0)
        return cmd_load(argc - 1, argv + 1);
    fprintf(stderr, "usage: scaleprobe load PORT CONNS QUIET_MS CMD [ARG...]\n"
                    "       scaleprobe wait PORT TIMEOUT_MS\n"
                    "       scaleprobe unix PATH LINE\n");
    return 2;
}

static int
cmd_load(int argc, char **argv)
{
    static struct conn cs[MAXC];
    struct pollfd pf[MAXC];
    int port, n, i, status, errors = 0, wst = 0;
    double quiet_ms, t0, cmd_start = 0, cmd_end = 0, stop_at = 0;
    double quiet_max = 0, during_max = 0;
    unsigned long quiet_n = 0, during_n = 0;
    pid_t child = 0;

    (void)argc;                        /* main checked there is a command */
    port = atoi(argv[1]);
    n = atoi(argv[2]);
    quiet_ms = atof(argv[3]);
    if (n < 1 || n > MAXC)
        n = MAXC;
    for (i = 0; i < n; i++) {
        cs[i].fd = conn_open(port);
        pf[i].fd = cs[i].fd;
        pf[i].events = POLLIN;
    }
    t0 = now_ms();
    for (i = 0; i < n; i++)
        send_req(&cs[i]);
    for (;;) {
        double t = now_ms();

        if (child == 0 && t - t0 >= quiet_ms) {
            cmd_start = t;
            if ((child = fork()) == 0) {
                int null = open("/dev/null", O_WRONLY);

                if (null >= 0)
                    dup2(null, 1);     /* the command's output is not ours */
                execvp(argv[4], argv + 4);
                perror("scaleprobe: exec");
                _exit(127);
            }
        }
        if (child > 0 && cmd_end == 0 && waitpid(child, &wst, WNOHANG) == child) {
            cmd_end = now_ms();
            stop_at = cmd_end + 50;
        }
        if (stop_at > 0 && t >= stop_at)
            break;
        if (poll(pf, (nfds_t)n, 5) < 0 && errno != EINTR) {
            perror("scaleprobe: poll");
            return 1;
        }
        for (i = 0; i < n; i++) {
            struct conn *c = &cs[i];
            ssize_t r;
            int d;

            if (!(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            r = read(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len);
            if (r <= 0) {
                fprintf(stderr, "scaleprobe: connection %d closed\n", i);
                return 1;
            }
            c->len += (size_t)r;
            if ((d = answer_done(c, &status)) == 0)
                continue;
            t = now_ms();
            if (status < 200 || status > 299)
                errors++;
            /* a request counts for the command when any part of it was in
             * flight while the command ran; for the quiet spell when it
             * ended within the spell before it */
            if (cmd_start > 0 && t >= cmd_start && (cmd_end == 0 || c->sent <= cmd_end)) {
                during_n++;
                if (t - c->sent > during_max)
                    during_max = t - c->sent;
            } else if (cmd_start == 0 && t >= t0 + quiet_ms / 4) {
                quiet_n++;
                if (t - c->sent > quiet_max)
                    quiet_max = t - c->sent;
            }
            send_req(c);
        }
    }
    printf("cmd_ms=%.1f during_max_ms=%.2f during_requests=%lu quiet_max_ms=%.2f "
           "quiet_requests=%lu errors=%d cmd_status=%d\n", cmd_end - cmd_start, during_max,
           during_n, quiet_max, quiet_n, errors, WIFEXITED(wst) ? WEXITSTATUS(wst) : -1);
    return errors > 0 ? 1 : 0;
}
