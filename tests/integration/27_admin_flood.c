/*
 * The admin paths stay open to the operator (docs/reliability.md, "Admin"):
 * a flood of idle and slow connections on the admin socket, beyond its
 * limit, and of slow unauthenticated connections on the HTTP endpoint
 * (each reopened at once when the daemon closes it) never blocks a
 * rollback: by cutoverctl on the socket and by POST /v1/rollback with a
 * valid token, each within 1 s, round after round, while `cutoverctl
 * watch` keeps running and traffic is served; once the flood ends,
 * every connection and descriptor is released. The time limits of both
 * endpoints, end to end: a line or head that does not complete, idle
 * connections, a peer that does not read its replies.
 */
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/integration/fixture.h"

#define TOK_READ    "read-secret-0123456789"
#define TOK_OPERATE "operate-secret-0123456789"

#define FLOOD_UNIX   144         /* over the socket's 64 places, and its 128 at most */
#define FLOOD_HTTP   40          /* over the endpoint's 8 places without a token */
#define FLOOD_GAP_MS 50          /* a byte on each slow connection this often */
#define ROUNDS       5           /* rollbacks on each path under the flood */
#define ROUND_GAP_MS 600         /* the rounds span the flood's turnover: its
                                  * connections' grace (1 s) and the HTTP ones'
                                  * request limit (3 s, then reopened) */
#define ROLLBACK_MS  1000        /* the promise */

struct ax {
    struct fx f;                 /* admin.listen and a token file */
    pid_t flooder;               /* the flood's process, 0 when none */
    int flood_pipe;              /* its reports, -1 when none */
};

static struct ax *
start(void **state)
{
    /* no upstream keep-alive: the descriptors counted are the admin's */
    struct ax *x = fx_new(state, sizeof(*x), false, 1, ", \"pool\": {\"max_idle\": 0}");

    x->flooder = 0;
    x->flood_pipe = -1;
    x->f.admin_port = h_free_port();
    assert_int_equal(fx_admin_tokens(&x->f, "reader read " TOK_READ "\n"
                                            "ops operate " TOK_OPERATE "\n"), 0);
    assert_int_equal(fx_write_conf(&x->f), 0);
    assert_int_equal(fx_start_proxy(&x->f, 1), 0);
    return x;
}

static int
teardown(void **state)
{
    struct ax *x = *state;

    if (x != NULL && x->flooder > 0) {
        kill(x->flooder, SIGKILL);
        waitpid(x->flooder, NULL, 0);
    }
    if (x != NULL && x->flood_pipe >= 0)
        close(x->flood_pipe);
    return fx_teardown(state);
}

/* ---- the flood (a child process) ----------------------------------------- */

struct fconn {
    int fd;
    bool is_unix, is_slow;
    size_t sent;                 /* bytes of its endless request sent */
};

static volatile sig_atomic_t flood_stop;

static void
on_flood_term(int sig)
{
    (void)sig;
    flood_stop = 1;
}

static int
unix_connect(const char *path)
{
    struct sockaddr_un a;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    memset(&a, 0, sizeof(a));
    a.sun_family = AF_UNIX;
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void
flood_open(struct fconn *c, const char *sock, int port)
{
    c->fd = c->is_unix ? unix_connect(sock) : h_connect(port);
    c->sent = 0;
    if (c->fd >= 0)
        fcntl(c->fd, F_SETFL, O_NONBLOCK);
}

/* The next byte of <c>'s request that never ends. */
static char
flood_byte(const struct fconn *c)
{
    static const char head[] = "GET /status HTTP/1.1\r\nHost: a\r\nX-Slow: ";
    static const char line[] = "{\"cmd\":\"status\",\"x\":\"";
    const char *p = c->is_unix ? line : head;
    size_t n = c->is_unix ? sizeof(line) - 1 : sizeof(head) - 1;

    return c->sent < n ? p[c->sent] : 'a';
}

/* Runs the flood until SIGTERM: writes 'r' to <out> once every connection
 * was opened once, then, at the end, the number of connections it opened
 * in all ("%lu\n"). Never returns. */
static void
flood_run(const char *sock, int port, int out)
{
    struct fconn c[FLOOD_UNIX + FLOOD_HTTP];
    struct pollfd pfd[FLOOD_UNIX + FLOOD_HTTP];
    unsigned long opened = 0;
    long long next_send = h_now_ms() + FLOOD_GAP_MS;
    char buf[4096], msg[32];
    int i, n = FLOOD_UNIX + FLOOD_HTTP, k;

    prctl(PR_SET_PDEATHSIG, SIGKILL);
    signal(SIGTERM, on_flood_term);
    signal(SIGPIPE, SIG_IGN);
    for (i = 0; i < n; i++) {
        c[i].is_unix = i < FLOOD_UNIX;
        c[i].is_slow = c[i].is_unix ? i % 2 == 1 : true;   /* half the socket's idle */
        flood_open(&c[i], sock, port);
        opened++;
    }
    if (write(out, "r", 1) != 1)
        _exit(1);
    while (!flood_stop) {
        long long now = h_now_ms();
        int wait = next_send > now ? (int)(next_send - now) : 0;

        for (i = 0; i < n; i++) {
            pfd[i].fd = c[i].fd;
            pfd[i].events = POLLIN;
            pfd[i].revents = 0;
        }
        k = poll(pfd, (nfds_t)n, wait);
        if (k < 0 && errno != EINTR)
            _exit(1);
        for (i = 0; k > 0 && i < n; i++) {
            ssize_t got;

            if (pfd[i].revents == 0)
                continue;
            /* an answer (408, an error line) or the close: reopen at EOF */
            while ((got = recv(c[i].fd, buf, sizeof(buf), 0)) > 0)
                ;
            if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
                close(c[i].fd);
                flood_open(&c[i], sock, port);
                opened++;
            }
        }
        if (h_now_ms() >= next_send) {
            next_send += FLOOD_GAP_MS;
            for (i = 0; i < n; i++) {
                char b = flood_byte(&c[i]);

                if (c[i].fd < 0) {
                    flood_open(&c[i], sock, port);
                    opened++;
                } else if (c[i].is_slow) {
                    if (send(c[i].fd, &b, 1, MSG_NOSIGNAL) == 1) {
                        c[i].sent++;
                    } else if (errno != EAGAIN) {
                        close(c[i].fd);
                        flood_open(&c[i], sock, port);
                        opened++;
                    }
                }
            }
        }
    }
    k = snprintf(msg, sizeof(msg), "%lu\n", opened);
    if (write(out, msg, (size_t)k) != k)
        _exit(1);
    _exit(0);
}

/* Starts the flood and waits until it has opened every connection once. */
static void
flood_start(struct ax *x)
{
    int p[2];
    char ch = 0;

    assert_int_equal(pipe(p), 0);
    x->flooder = fork();
    assert_true(x->flooder >= 0);
    if (x->flooder == 0) {
        close(p[0]);
        flood_run(x->f.sock, x->f.admin_port, p[1]);
    }
    close(p[1]);
    x->flood_pipe = p[0];
    assert_int_equal(poll(&(struct pollfd){ .fd = p[0], .events = POLLIN }, 1, 10000), 1);
    assert_int_equal(read(p[0], &ch, 1), 1);
    assert_int_equal(ch, 'r');
}

/* Ends the flood (its connections close with its process); returns how
 * many connections it opened in all. */
static unsigned long
flood_stop_wait(struct ax *x)
{
    char buf[64] = "";
    ssize_t n = 0, k;
    int status;

    assert_int_equal(kill(x->flooder, SIGTERM), 0);
    while ((k = read(x->flood_pipe, buf + n, sizeof(buf) - 1 - (size_t)n)) > 0)
        n += k;
    assert_int_equal(waitpid(x->flooder, &status, 0), x->flooder);
    x->flooder = 0;
    close(x->flood_pipe);
    x->flood_pipe = -1;
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    return strtoul(buf, NULL, 10);
}

/* ---- what the daemon holds --------------------------------------------- */

/* The number of descriptors <pid> has open. */
static int
fd_count(pid_t pid)
{
    char path[64];
    struct dirent *e;
    DIR *d;
    int n = 0;

    snprintf(path, sizeof(path), "/proc/%ld/fd", (long)pid);
    d = opendir(path);
    assert_non_null(d);
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

/* The descriptor count once it held still for 300 ms (connections just
 * closed by their clients are closed by the daemon when it reads EOF). */
static int
fd_count_settled(pid_t pid)
{
    int last = fd_count(pid), same = 0, i, n;

    for (i = 0; i < 100 && same < 6; i++) {
        h_sleep_ms(50);
        n = fd_count(pid);
        same = n == last ? same + 1 : 0;
        last = n;
    }
    return last;
}

/* Polls (3 s at most) until the daemon holds <fds> descriptors again, then
 * checks that the admin connections are those of the scrape itself only. */
static void
expect_released(struct ax *x, int fds)
{
    long long end = h_now_ms() + 3000;
    char cmd[128], *text;
    int n;

    while ((n = fd_count(x->f.proxy)) != fds && h_now_ms() < end)
        h_sleep_ms(50);
    if (n != fds) {
        snprintf(cmd, sizeof(cmd), "ls -l /proc/%ld/fd >&2", (long)x->f.proxy);
        if (system(cmd) != 0)
            fprintf(stderr, "cannot list the descriptors\n");
        fail_msg("not released: %d descriptors, %d before the flood", n, fds);
    }
    text = fx_scrape_token(&x->f, TOK_READ);
    assert_true(fx_metric(text, "cutover_admin_connections{endpoint=\"socket\"}") == 0);
    assert_true(fx_metric(text, "cutover_admin_connections{endpoint=\"http\"}") == 1);
    free(text);
}

/* ---- the operator -------------------------------------------------------- */

static void
set_weight(struct ax *x, const char *w)
{
    char out[4096];

    if (fx_ctl(&x->f, out, "weight", w) != 0)
        fail_msg("cutoverctl weight %s: %s", w, h_ctl_err());
}

/* `cutoverctl rollback` on the socket; returns the ms it took. */
static long long
rollback_socket(struct ax *x, int round)
{
    char out[4096], reason[64];
    long long t0 = h_now_ms();
    int rc;

    snprintf(reason, sizeof(reason), "flood round %d", round);
    rc = fx_ctl(&x->f, out, "rollback", "--reason", reason);
    if (rc != 0)
        fail_msg("round %d: cutoverctl rollback exited %d: %s", round, rc, h_ctl_err());
    return h_now_ms() - t0;
}

/* POST /v1/rollback with the operate token; returns the ms it took. */
static long long
rollback_http(struct ax *x, int round)
{
    long long t0 = h_now_ms();
    json_t *j;
    int status = fx_admin_call(&x->f, "POST", "/v1/rollback", TOK_OPERATE,
                               "{\"reason\":\"flood over http\"}", &j);

    if (status != 200)
        fail_msg("round %d: POST /v1/rollback answered %d", round, status);
    assert_true(json_is_true(json_object_get(j, "ok")));
    json_decref(j);
    return h_now_ms() - t0;
}

/* Lines in <path> (frames of `cutoverctl watch --json`). */
static int
line_count(const char *path)
{
    char *text = h_read_file(path), *p;
    int n = 0;

    for (p = text; p != NULL && *p != '\0'; p++)
        n += *p == '\n';
    free(text);
    return n;
}

static void
wait_lines(const char *path, int n, int timeout_ms)
{
    long long end = h_now_ms() + timeout_ms;

    while (line_count(path) < n) {
        if (h_now_ms() > end)
            fail_msg("%s: fewer than %d lines after %d ms", path, n, timeout_ms);
        h_sleep_ms(50);
    }
}

static void
test_flood(void **state)
{
    struct ax *x = start(state);
    struct fx *f = &x->f;
    char watch_log[600], *text;
    char *argv[] = { (char *)h_bin("cutoverctl"), "-s", f->sock, "--json", "watch", NULL };
    long long ms, max_sock = 0, max_http = 0, t_flood;
    unsigned long opened;
    int fds, frames, round, rc;
    pid_t watch;
    struct h_resp r;

    fds = fd_count_settled(f->proxy);
    snprintf(watch_log, sizeof(watch_log), "%s/watch.out", f->dir);
    watch = h_spawn(argv, watch_log);
    assert_true(watch > 0);
    wait_lines(watch_log, 1, 5000);

    flood_start(x);
    t_flood = h_now_ms();
    frames = line_count(watch_log);
    for (round = 1; round <= ROUNDS; round++) {
        h_sleep_ms(ROUND_GAP_MS);
        set_weight(x, "10");
        ms = rollback_socket(x, round);
        if (ms > max_sock)
            max_sock = ms;
        if (ms >= ROLLBACK_MS)
            fail_msg("round %d: the socket rollback took %lld ms", round, ms);
        fx_expect_state(f, "rolled_back", 0);

        set_weight(x, "10");
        ms = rollback_http(x, round);
        if (ms > max_http)
            max_http = ms;
        if (ms >= ROLLBACK_MS)
            fail_msg("round %d: the HTTP rollback took %lld ms", round, ms);
        fx_expect_state(f, "rolled_back", 0);
    }
    /* the flood went beyond both limits: connections were evicted */
    text = fx_scrape_token(f, TOK_READ);
    assert_true(fx_metric(text, "cutover_admin_evictions_total{endpoint=\"socket\"}") > 0);
    assert_true(fx_metric(text, "cutover_admin_evictions_total{endpoint=\"http\"}") > 0);
    free(text);
    /* traffic is served meanwhile */
    assert_int_equal(h_get(f->proxy_port, "/", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    h_resp_free(&r);
    /* watch was never evicted: a frame a second all along (one more to be
     * sure it still runs) */
    wait_lines(watch_log, frames + (int)((h_now_ms() - t_flood) / 1000), 3000);
    assert_true(h_alive(watch, NULL));

    opened = flood_stop_wait(x);
    print_message("flood: %lu connections opened; rollbacks: socket %lld ms, HTTP %lld ms "
                  "at most\n", opened, max_sock, max_http);
    assert_true(opened > FLOOD_UNIX + FLOOD_HTTP);
    rc = h_stop(watch, SIGINT, 5000);
    assert_int_equal(rc, 0);
    expect_released(x, fds);
    fx_stop_clean(f);
}

/* ---- time limits ------------------------------------------------------- */

/* A connection under watch: what it received and when it was closed. */
struct probe {
    const char *name;
    int fd;
    bool slow;                   /* sends a byte of its head every 500 ms */
    size_t sent;
    char got[4096];
    size_t len;
    long long closed_ms;         /* since the start; -1 while open */
};

static void
probe_send(struct probe *p, const char *text)
{
    assert_int_equal(h_send_all(p->fd, text, strlen(text)), 0);
}

/* Runs until <until_ms> since <t0>: slow probes send a byte every 500 ms,
 * every probe's input is read and its close recorded. */
static void
probes_run(struct probe *p, int n, long long t0, long long until_ms)
{
    static const char head[] = "GET /status HTTP/1.1\r\nHost: a\r\nX-Slow: ";
    long long next = h_now_ms();
    struct pollfd pfd[16];
    int i, k;

    assert_true(n <= 16);
    while (h_now_ms() - t0 < until_ms) {
        if (h_now_ms() >= next) {
            next += 500;
            for (i = 0; i < n; i++) {
                char b = p[i].sent < sizeof(head) - 1 ? head[p[i].sent] : 'a';

                if (p[i].slow && p[i].closed_ms < 0
                    && send(p[i].fd, &b, 1, MSG_NOSIGNAL) == 1)
                    p[i].sent++;
            }
        }
        for (i = 0; i < n; i++) {
            pfd[i].fd = p[i].closed_ms < 0 ? p[i].fd : -1;
            pfd[i].events = POLLIN;
        }
        k = poll(pfd, (nfds_t)n, 50);
        for (i = 0; k > 0 && i < n; i++) {
            ssize_t got;

            if (pfd[i].fd < 0 || pfd[i].revents == 0)
                continue;
            got = recv(p[i].fd, p[i].got + p[i].len, sizeof(p[i].got) - 1 - p[i].len,
                       MSG_DONTWAIT);
            if (got > 0) {
                p[i].len += (size_t)got;
                p[i].got[p[i].len] = '\0';
            } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
                p[i].closed_ms = h_now_ms() - t0;
            }
        }
    }
}

/* <p> was closed between <lo> and <hi> ms, after receiving text that
 * contains <want> (NULL: nothing at all). */
static void
expect_closed_between(const struct probe *p, long long lo, long long hi, const char *want)
{
    if (p->closed_ms < lo || p->closed_ms > hi)
        fail_msg("%s: closed at %lld ms, expected %lld..%lld (received: %s)", p->name,
                 p->closed_ms, lo, hi, p->got);
    if (want == NULL ? p->len != 0 : strstr(p->got, want) == NULL)
        fail_msg("%s: received \"%s\", expected %s", p->name, p->got,
                 want != NULL ? want : "nothing");
}

static int
unix_connect_fd(struct fx *f)
{
    int fd = unix_connect(f->sock);

    assert_true(fd >= 0);
    return fd;
}

/* Each limit, end to end, all at once (12 s): on the socket a line must be
 * complete within 10 s of the accept or its first byte, and a peer that
 * reads none of its replies is dropped after 10 s without progress; on
 * the HTTP endpoint a request without a valid token must be complete
 * within 3 s and such a connection may idle 5 s, while one with a valid
 * token gets 10 s and 30 s. */
static void
test_time_limits(void **state)
{
    struct ax *x = start(state);
    struct fx *f = &x->f;
    static const char auth_req[] = "GET /status HTTP/1.1\r\nHost: a\r\n"
                                   "Authorization: Bearer " TOK_READ "\r\n\r\n";
    struct probe p[6] = {
        { .name = "socket, nothing sent" },
        { .name = "socket, a partial line" },
        { .name = "http, slow without a token", .slow = true },
        { .name = "http, idle without a token" },
        { .name = "http, partial after a valid token" },
        { .name = "http, idle after a valid token" },
    };
    struct h_resp r;
    char buf[65536], *lines;
    long long t0;
    size_t drained = 0;
    ssize_t k;
    int unread, i;

    for (i = 0; i < 6; i++) {
        p[i].fd = i < 2 ? unix_connect_fd(f) : h_connect(f->admin_port);
        assert_true(p[i].fd >= 0);
        p[i].closed_ms = -1;
    }
    /* the requests that are answered: read their answers before the clock */
    memset(&r, 0, sizeof(r));
    probe_send(&p[3], "GET /status HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_int_equal(h_read_response(p[3].fd, &r), 0);
    assert_int_equal(r.status, 200);
    h_resp_free(&r);
    for (i = 4; i < 6; i++) {
        probe_send(&p[i], auth_req);
        assert_int_equal(h_read_response(p[i].fd, &r), 0);
        assert_int_equal(r.status, 200);
        h_resp_free(&r);
    }
    /* a peer that sends 2000 status requests and reads nothing */
    unread = unix_connect_fd(f);
    lines = malloc(2000 * 17 + 1);
    assert_non_null(lines);
    for (i = 0; i < 2000; i++)
        memcpy(lines + i * 17, "{\"cmd\":\"status\"}\n", 17);
    lines[2000 * 17] = '\0';
    t0 = h_now_ms();
    probe_send(&p[1], "{\"cmd\":\"sta");
    probe_send(&p[4], "GET /sta");
    assert_int_equal(h_send_all(unread, lines, 2000 * 17), 0);
    free(lines);

    probes_run(p, 6, t0, 12000);

    expect_closed_between(&p[0], 9500, 11500, "no complete request line within 10 s");
    expect_closed_between(&p[1], 9500, 11500, "no complete request line within 10 s");
    expect_closed_between(&p[2], 2500, 4500, "HTTP/1.1 408");
    expect_closed_between(&p[3], 4500, 6500, NULL);
    expect_closed_between(&p[4], 9500, 11500, "HTTP/1.1 408");
    if (p[5].closed_ms >= 0)
        fail_msg("%s: closed at %lld ms", p[5].name, p[5].closed_ms);
    /* the peer that read nothing was dropped: what was sent ends in EOF
     * (or a reset: the daemon closed with requests of it unread) */
    h_set_timeout_ms(unread, 1000);
    while ((k = recv(unread, buf, sizeof(buf), 0)) > 0)
        drained += (size_t)k;
    if (k != 0 && errno != ECONNRESET)
        fail_msg("the peer that read nothing is still connected (%zu bytes queued)",
                 drained);
    close(unread);
    for (i = 0; i < 6; i++)
        close(p[i].fd);
    fx_stop_clean(f);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_flood, teardown),
        cmocka_unit_test_teardown(test_time_limits, teardown),
    };

    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
