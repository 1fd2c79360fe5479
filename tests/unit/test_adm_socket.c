/*
 * tests/unit/test_adm_socket.c: admin/socket.c (over admin/conn.c), end to
 * end on a private event_base in a temporary directory, with a real control
 * plane (admin/control.c) whose data-plane ops only record their calls. The
 * client side is a real non-blocking unix socket; the test drives the loop
 * with EVLOOP_NONBLOCK while it sends and reads, so nothing depends on
 * timing.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>
#include <jansson.h>

#include "admin/conn.h"
#include "admin/control.h"
#include "admin/socket.h"

#define SPIN_MAX 2000000               /* loop iterations before a test gives up */

struct rec {
    unsigned applies;
    struct adm_svc_state last;         /* state given to the last apply */
    unsigned statuses;
    unsigned switches;
    bool new_healthy;
};

struct fx {
    char dir[64];                      /* the temporary directory */
    char path[100];                    /* the socket path (dir/run/admin.sock) */
    struct event_base *base;
    struct adm_control *ctl;
    struct rec rec;
    mode_t umask_before;
};

struct client {
    int fd;
    char buf[1 << 20];                 /* bytes read, not yet returned as lines */
    size_t len;
};

/* ---- recording ops ----------------------------------------------------- */

static void
op_apply(void *arg, unsigned svc, const struct adm_svc_state *st)
{
    struct rec *r = arg;

    r->applies++;
    r->last = *st;
}

static bool
op_side_healthy(void *arg, unsigned svc, enum rt_side side)
{
    struct rec *r = arg;

    return side == RT_LEGACY || r->new_healthy;
}

static void
op_status(void *arg, unsigned svc, json_t *obj)
{
    struct rec *r = arg;

    r->statuses++;
    json_object_set_new(obj, "mode", json_string("http"));
    json_object_set_new(obj, "legacy", json_pack(
        "{s:b, s:[{s:s, s:b}], s:{s:i, s:i, s:f, s:i, s:i}}", "healthy", 1, "servers",
        "addr", "127.0.0.1:9001", "up", 1, "window", "requests", 120, "errors", 2,
        "error_rate", 2.0 / 120, "p50_ms", 3, "p99_ms", 12));
    json_object_set_new(obj, "new", json_pack(
        "{s:b, s:[{s:s, s:b}]}", "healthy", 1, "servers",
        "addr", "127.0.0.1:9002", "up", 1));
}

static unsigned
op_switched(void *arg, unsigned svc, enum rt_side left, int *drain_s)
{
    struct rec *r = arg;

    r->switches++;
    return 0;
}

static const struct adm_ops rec_ops = {
    .apply = op_apply,
    .side_healthy = op_side_healthy,
    .status = op_status,
    .switched = op_switched,
};

/* ---- fixture ----------------------------------------------------------- */

static int
setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    const char *names[] = { "web" };
    const uint32_t bp[] = { 0 };
    char sf[160], af[160], err[256];

    if (f == NULL)
        return -1;
    signal(SIGPIPE, SIG_IGN);
    f->umask_before = umask(022);
    snprintf(f->dir, sizeof(f->dir), "/tmp/test_adm_socket.XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    snprintf(f->path, sizeof(f->path), "%s/run/admin.sock", f->dir);
    snprintf(sf, sizeof(sf), "%s/state.json", f->dir);
    snprintf(af, sizeof(af), "%s/audit.jsonl", f->dir);
    f->base = event_base_new();
    f->rec.new_healthy = true;
    f->ctl = adm_control_new(names, bp, 1, sf, af, &rec_ops, &f->rec, err, sizeof(err));
    if (f->base == NULL || f->ctl == NULL) {
        fprintf(stderr, "setup: %s\n", err);
        return -1;
    }
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fx *f = *state;
    char cmd[128];

    adm_control_free(f->ctl);
    event_base_free(f->base);
    /* mkdtemp made a unique name under /tmp: safe to remove */
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "teardown: cannot remove %s\n", f->dir);
    umask(f->umask_before);
    free(f);
    return 0;
}

static struct adm_server *
start(struct fx *f, const char *path, mode_t mode)
{
    char err[256] = "";
    struct adm_server *s = adm_server_new(f->base, f->ctl, path, mode, err, sizeof(err));

    if (s == NULL)
        fail_msg("adm_server_new(%s): %s", path, err);
    return s;
}

/* ---- client helpers ---------------------------------------------------- */

static int
sock_connect(const char *path)
{
    struct sockaddr_un a;
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    memset(&a, 0, sizeof(a));
    a.sun_family = AF_UNIX;
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        int e = errno;

        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static struct client *
client_new(const char *path)
{
    struct client *c = calloc(1, sizeof(*c));

    assert_non_null(c);
    c->fd = sock_connect(path);
    if (c->fd < 0)
        fail_msg("connect %s: %s", path, strerror(errno));
    assert_int_equal(fcntl(c->fd, F_SETFL, O_NONBLOCK), 0);
    return c;
}

static void
client_free(struct client *c)
{
    close(c->fd);
    free(c);
}

static void
spin(struct fx *f)
{
    assert_true(event_base_loop(f->base, EVLOOP_NONBLOCK) >= 0);
}

/* Sends all of <data>, running the loop whenever the socket is full. */
static void
client_send(struct fx *f, struct client *c, const char *data, size_t len)
{
    size_t off = 0;
    long i;

    for (i = 0; off < len && i < SPIN_MAX; i++) {
        ssize_t k = send(c->fd, data + off, len - off, MSG_NOSIGNAL);

        if (k > 0)
            off += (size_t)k;
        else if (k < 0 && errno != EAGAIN && errno != EINTR)
            fail_msg("send: %s", strerror(errno));
        spin(f);
    }
    assert_int_equal(off, len);
}

/* Reads what is there; returns bytes read, 0 on EOF (or reset: the server
 * closed with our unread bytes), -1 when nothing is ready yet. */
static ssize_t
client_fill(struct client *c)
{
    ssize_t k;

    assert_true(c->len < sizeof(c->buf) - 1);
    k = recv(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len, 0);
    if (k > 0) {
        c->len += (size_t)k;
        return k;
    }
    if (k == 0 || errno == ECONNRESET)
        return 0;
    if (errno == EAGAIN || errno == EINTR)
        return -1;
    fail_msg("recv: %s", strerror(errno));
    return 0;
}

/* Returns the next reply line (malloc'd, without its LF), or NULL when the
 * server closed the connection first. */
static char *
client_line(struct fx *f, struct client *c)
{
    long i;

    for (i = 0; i < SPIN_MAX; i++) {
        char *nl = memchr(c->buf, '\n', c->len);

        if (nl != NULL) {
            size_t n = (size_t)(nl - c->buf);
            char *line = malloc(n + 1);

            assert_non_null(line);
            memcpy(line, c->buf, n);
            line[n] = '\0';
            c->len -= n + 1;
            memmove(c->buf, nl + 1, c->len);
            return line;
        }
        if (client_fill(c) == 0)
            return NULL;
        spin(f);
    }
    fail_msg("no reply line after %d loop iterations", SPIN_MAX);
    return NULL;
}

/* Runs the loop a while and checks that no more bytes arrived. */
static void
client_expect_quiet(struct fx *f, struct client *c)
{
    int i;

    for (i = 0; i < 50; i++)
        spin(f);
    assert_int_equal(client_fill(c), -1);
    assert_int_equal(c->len, 0);
}

/* Expects the server to close the connection (after any pending lines). */
static void
client_expect_closed(struct fx *f, struct client *c)
{
    long i;

    for (i = 0; i < SPIN_MAX; i++) {
        if (client_fill(c) == 0) {
            assert_int_equal(c->len, 0);
            return;
        }
        spin(f);
    }
    fail_msg("the server did not close the connection");
}

/* Sends <req> plus LF and returns the parsed reply (caller decrefs). */
static json_t *
request(struct fx *f, struct client *c, const char *req)
{
    char *line;
    json_t *j;
    json_error_t je;

    client_send(f, c, req, strlen(req));
    client_send(f, c, "\n", 1);
    line = client_line(f, c);
    assert_non_null(line);
    j = json_loads(line, 0, &je);
    if (j == NULL)
        fail_msg("reply is not JSON (%s): %s", je.text, line);
    free(line);
    return j;
}

static bool
reply_ok(const json_t *j)
{
    return json_is_true(json_object_get(j, "ok"));
}

static const char *
reply_error(const json_t *j)
{
    const char *e = json_string_value(json_object_get(j, "error"));

    return e != NULL ? e : "";
}

/* ---- tests ------------------------------------------------------------- */

/* The socket file is born with <mode>: the ambient umask (0 here) does not
 * widen it, no chmod follows the bind (inotify sees no IN_ATTRIB), and the
 * umask is restored. */
static void
test_mode_set_at_bind(void **state)
{
    struct fx *f = *state;
    char dir[128], path[160], evbuf[4096];
    struct adm_server *s;
    struct stat st;
    ssize_t n, off;
    int ino, wd;
    bool created = false;

    snprintf(dir, sizeof(dir), "%s/m", f->dir);
    snprintf(path, sizeof(path), "%s/admin.sock", dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    assert_true(ino >= 0);
    wd = inotify_add_watch(ino, dir, IN_CREATE | IN_ATTRIB);
    assert_true(wd >= 0);

    umask(0);
    s = start(f, path, 0600);
    assert_int_equal(umask(022), 0);   /* the ambient umask came back */

    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0600);

    n = read(ino, evbuf, sizeof(evbuf));
    assert_true(n > 0);
    for (off = 0; off < n;) {
        const struct inotify_event *ev = (const struct inotify_event *)(evbuf + off);

        if (ev->mask & IN_ATTRIB)
            fail_msg("the socket's attributes changed after it was created");
        if ((ev->mask & IN_CREATE) && ev->len > 0 && strcmp(ev->name, "admin.sock") == 0)
            created = true;
        off += (ssize_t)(sizeof(*ev) + ev->len);
    }
    assert_true(created);
    close(ino);
    adm_server_free(s);
}

/* Another mode under a restrictive umask: <mode> wins both ways. */
static void
test_mode_other_value(void **state)
{
    struct fx *f = *state;
    struct adm_server *s;
    struct stat st;

    umask(077);
    s = start(f, f->path, 0660);
    assert_int_equal(umask(022), 077);
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0660);
    adm_server_free(s);
}

/* The missing parent directory is created 0700 (whatever the umask);
 * deeper missing directories are an error, not silently created. */
static void
test_creates_parent_dir(void **state)
{
    struct fx *f = *state;
    char dir[128], deep[160], err[256] = "";
    struct adm_server *s;
    struct stat st;

    snprintf(dir, sizeof(dir), "%s/run", f->dir);
    assert_int_equal(stat(dir, &st), -1);
    umask(0277);
    s = start(f, f->path, 0600);
    umask(022);
    assert_int_equal(stat(dir, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0700);
    adm_server_free(s);

    snprintf(deep, sizeof(deep), "%s/a/b/admin.sock", f->dir);
    assert_null(adm_server_new(f->base, f->ctl, deep, 0600, err, sizeof(err)));
    assert_non_null(strstr(err, "cannot create directory"));
}

/* adm_server_free() unlinks the socket file. */
static void
test_free_unlinks(void **state)
{
    struct fx *f = *state;
    struct adm_server *s = start(f, f->path, 0600);
    struct stat st;

    assert_int_equal(stat(f->path, &st), 0);
    adm_server_free(s);
    assert_int_equal(stat(f->path, &st), -1);
    assert_int_equal(errno, ENOENT);
    adm_server_free(NULL);
}

/* One reply per request line; the peer's uid is the actor. */
static void
test_status_reply(void **state)
{
    struct fx *f = *state;
    struct adm_server *s = start(f, f->path, 0600);
    struct client *c = client_new(f->path);
    json_t *r, *svc;

    r = request(f, c, "{\"cmd\":\"status\"}");
    assert_true(reply_ok(r));
    svc = json_array_get(json_object_get(r, "services"), 0);
    assert_string_equal(json_string_value(json_object_get(svc, "name")), "web");
    assert_string_equal(json_string_value(json_object_get(svc, "mode")), "http");
    assert_int_equal(json_array_size(json_object_get(r, "services")), 1);
    assert_int_equal(f->rec.statuses, 1);
    json_decref(r);
    client_expect_quiet(f, c);

    client_free(c);
    adm_server_free(s);
}

/* Two requests in one write on one connection: two replies, in order, and
 * the change reached the data plane with the peer's uid as actor. */
static void
test_two_requests_one_connection(void **state)
{
    struct fx *f = *state;
    struct adm_server *s = start(f, f->path, 0600);
    struct client *c = client_new(f->path);
    static const char two[] = "{\"cmd\":\"status\"}\n{\"cmd\":\"weight\",\"percent\":10}\n";
    char *l1, *l2, want_actor[32];
    json_t *r1, *r2, *a, *e;

    client_send(f, c, two, sizeof(two) - 1);
    l1 = client_line(f, c);
    l2 = client_line(f, c);
    assert_non_null(l1);
    assert_non_null(l2);
    r1 = json_loads(l1, 0, NULL);
    r2 = json_loads(l2, 0, NULL);
    assert_true(reply_ok(r1));
    assert_non_null(json_object_get(r1, "services"));
    assert_true(reply_ok(r2));
    assert_int_equal(json_number_value(json_object_get(r2, "weight")), 10);
    assert_int_equal(json_number_value(json_object_get(r2, "previous_weight")), 0);
    assert_int_equal(f->rec.applies, 1);
    assert_int_equal(f->rec.last.weight_bp, 1000);
    client_expect_quiet(f, c);

    a = request(f, c, "{\"cmd\":\"audit\",\"n\":1}");
    assert_true(reply_ok(a));
    e = json_array_get(json_object_get(a, "entries"), 0);
    snprintf(want_actor, sizeof(want_actor), "uid:%lu", (unsigned long)getuid());
    assert_string_equal(json_string_value(json_object_get(e, "actor")), want_actor);

    json_decref(a);
    json_decref(r1);
    json_decref(r2);
    free(l1);
    free(l2);
    client_free(c);
    adm_server_free(s);
}

/* Bad JSON and an empty line get error replies; the connection stays
 * usable and nothing changed. */
static void
test_bad_json_keeps_connection(void **state)
{
    struct fx *f = *state;
    struct adm_server *s = start(f, f->path, 0600);
    struct client *c = client_new(f->path);
    json_t *r;

    r = request(f, c, "{not json");
    assert_false(reply_ok(r));
    assert_true(strlen(reply_error(r)) > 0);
    json_decref(r);

    r = request(f, c, "");
    assert_false(reply_ok(r));
    json_decref(r);

    r = request(f, c, "{\"cmd\":\"weight\",\"percent\":10.005}");
    assert_false(reply_ok(r));
    json_decref(r);
    assert_int_equal(f->rec.applies, 0);

    r = request(f, c, "{\"cmd\":\"status\"}");
    assert_true(reply_ok(r));
    json_decref(r);

    client_free(c);
    adm_server_free(s);
}

/* A line of exactly 64 KiB is served; one byte more is refused with an
 * error reply and the connection is closed. */
static void
test_long_line(void **state)
{
    struct fx *f = *state;
    struct adm_server *s = start(f, f->path, 0600);
    struct client *c = client_new(f->path);
    const size_t max = 65536;
    char *big = malloc(max + 2);
    static const char req[] = "{\"cmd\":\"status\"}";
    char *line;
    json_t *r;

    assert_non_null(big);
    memset(big, ' ', max + 1);
    memcpy(big, req, sizeof(req) - 1);

    /* exactly max bytes, then LF: a valid request padded with spaces */
    big[max] = '\n';
    client_send(f, c, big, max + 1);
    line = client_line(f, c);
    assert_non_null(line);
    r = json_loads(line, 0, NULL);
    assert_true(reply_ok(r));
    json_decref(r);
    free(line);

    /* max + 1 bytes before the LF */
    big[max] = ' ';
    big[max + 1] = '\n';
    client_send(f, c, big, max + 2);
    line = client_line(f, c);
    assert_non_null(line);
    r = json_loads(line, 0, NULL);
    assert_false(reply_ok(r));
    assert_non_null(strstr(reply_error(r), "longer than"));
    json_decref(r);
    free(line);
    client_expect_closed(f, c);

    /* the same without any LF at all: refused as soon as it is too long */
    client_free(c);
    c = client_new(f->path);
    memset(big, 'x', max + 2);
    client_send(f, c, big, max + 2);
    line = client_line(f, c);
    assert_non_null(line);
    assert_non_null(strstr(line, "longer than"));
    free(line);
    client_expect_closed(f, c);

    free(big);
    client_free(c);
    adm_server_free(s);
}

/* Many pipelined requests, sent before any reply is read: every one gets its
 * reply, in order (bounded work per callback must not lose or reorder). */
static void
test_pipelined_in_order(void **state)
{
    struct fx *f = *state;
    struct adm_server *s = start(f, f->path, 0600);
    struct client *c = client_new(f->path);
    enum { N = 3000 };
    char pad[201], req[300], want[300];
    char *all = malloc((size_t)N * sizeof(req)), *line;
    size_t len = 0, sent = 0;
    int i, got = 0;
    long spins;

    assert_non_null(all);
    memset(pad, 'p', sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = '\0';
    for (i = 0; i < N; i++)
        len += (size_t)sprintf(all + len, "{\"cmd\":\"x%d%s\"}\n", i, pad);

    /* send what fits, read what came back, until everything is answered */
    for (spins = 0; got < N && spins < SPIN_MAX; spins++) {
        if (sent < len) {
            ssize_t k = send(c->fd, all + sent, len - sent, MSG_NOSIGNAL);

            if (k > 0)
                sent += (size_t)k;
        }
        spin(f);
        if (spins % 4 != 0)
            continue;                  /* let the server's output pile up */
        (void)client_fill(c);
        while ((line = memchr(c->buf, '\n', c->len)) != NULL) {
            size_t n = (size_t)(line - c->buf);

            c->buf[n] = '\0';
            snprintf(want, sizeof(want), "unknown command \\\"x%d%s\\\"", got, pad);
            if (strstr(c->buf, want) == NULL)
                fail_msg("reply %d out of order: %.80s", got, c->buf);
            c->len -= n + 1;
            memmove(c->buf, c->buf + n + 1, c->len);
            got++;
        }
    }
    assert_int_equal(got, N);
    client_expect_quiet(f, c);

    free(all);
    client_free(c);
    adm_server_free(s);
}

/* A request whose client half-closes without a final LF is still answered,
 * then the server closes. */
static void
test_half_close(void **state)
{
    struct fx *f = *state;
    struct adm_server *s = start(f, f->path, 0600);
    struct client *c = client_new(f->path);
    static const char req[] = "{\"cmd\":\"status\"}\n{\"cmd\":\"status\"}";
    char *line;
    int i;

    client_send(f, c, req, sizeof(req) - 1);
    assert_int_equal(shutdown(c->fd, SHUT_WR), 0);
    for (i = 0; i < 2; i++) {
        line = client_line(f, c);
        assert_non_null(line);
        assert_non_null(strstr(line, "\"ok\":true"));
        free(line);
    }
    client_expect_closed(f, c);

    client_free(c);
    adm_server_free(s);
}

/* A socket file nobody listens on (a crashed daemon's) is replaced. */
static void
test_stale_socket_replaced(void **state)
{
    struct fx *f = *state;
    struct sockaddr_un a;
    struct adm_server *s;
    struct client *c;
    struct stat st;
    char dir[128];
    json_t *r;
    int fd;

    snprintf(dir, sizeof(dir), "%s/run", f->dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    memset(&a, 0, sizeof(a));
    a.sun_family = AF_UNIX;
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", f->path);
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    close(fd);
    assert_int_equal(stat(f->path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(sock_connect(f->path), -1);
    assert_int_equal(errno, ECONNREFUSED);

    s = start(f, f->path, 0600);
    c = client_new(f->path);
    r = request(f, c, "{\"cmd\":\"status\"}");
    assert_true(reply_ok(r));
    json_decref(r);
    client_free(c);
    adm_server_free(s);
}

/* A file at the path that is not a socket is left alone: error. */
static void
test_regular_file_not_replaced(void **state)
{
    struct fx *f = *state;
    char dir[128], err[256] = "";
    struct stat st;
    FILE *fp;

    snprintf(dir, sizeof(dir), "%s/run", f->dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    fp = fopen(f->path, "w");
    assert_non_null(fp);
    fputs("keep me\n", fp);
    fclose(fp);
    assert_null(adm_server_new(f->base, f->ctl, f->path, 0600, err, sizeof(err)));
    assert_non_null(strstr(err, "not a socket"));
    assert_int_equal(stat(f->path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_size, 8);
}

/* A second server on the path of a live one fails and leaves it working. */
static void
test_live_socket_refused(void **state)
{
    struct fx *f = *state;
    struct adm_server *s1 = start(f, f->path, 0600), *s2;
    struct client *c;
    char err[256] = "", want[200];
    json_t *r;

    s2 = adm_server_new(f->base, f->ctl, f->path, 0600, err, sizeof(err));
    assert_null(s2);
    snprintf(want, sizeof(want), "socket %s is in use by a running daemon", f->path);
    assert_string_equal(err, want);

    c = client_new(f->path);
    r = request(f, c, "{\"cmd\":\"status\"}");
    assert_true(reply_ok(r));
    json_decref(r);
    client_free(c);
    adm_server_free(s1);
}

/* admin.socket_group: the file belongs to the group and has the group
 * bits of <mode>, never more. Our own primary group is the one group a
 * test can give a file to without privileges. */
static void
test_socket_group(void **state)
{
    struct fx *f = *state;
    char err[256] = "";
    struct adm_server *s;
    struct client *c;
    struct stat st;
    json_t *r;

    s = adm_server_new_group(f->base, f->ctl, f->path, 0660, (long)getgid(), err,
                             sizeof(err));
    if (s == NULL)
        fail_msg("adm_server_new_group: %s", err);
    assert_int_equal(stat(f->path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0660);
    assert_int_equal(st.st_gid, getgid());
    c = client_new(f->path);
    r = request(f, c, "{\"cmd\":\"status\"}");
    assert_true(reply_ok(r));
    json_decref(r);
    client_free(c);
    adm_server_free(s);

    if (geteuid() != 0) {
        /* a group the process is not in cannot be given */
        assert_null(adm_server_new_group(f->base, f->ctl, f->path, 0660, 0, err,
                                         sizeof(err)));
        assert_non_null(strstr(err, "cannot give"));
        assert_int_equal(access(f->path, F_OK), -1);   /* nothing left behind */
    } else {
        /* root may give it to any group: 65534 (nogroup) */
        s = adm_server_new_group(f->base, f->ctl, f->path, 0640, 65534, err, sizeof(err));
        if (s == NULL)
            fail_msg("adm_server_new_group: %s", err);
        assert_int_equal(stat(f->path, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0640);
        assert_int_equal(st.st_gid, 65534);
        adm_server_free(s);
    }
}

/* A stale socket that belongs to another user is not removed. */
static void
test_stale_socket_of_other_user_kept(void **state)
{
    struct fx *f = *state;
    struct sockaddr_un a;
    char dir[128], err[256] = "";
    struct stat st;
    int fd;

    if (geteuid() != 0)
        skip();                        /* only root can make another user's file */
    snprintf(dir, sizeof(dir), "%s/run", f->dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    memset(&a, 0, sizeof(a));
    a.sun_family = AF_UNIX;
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", f->path);
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    close(fd);
    assert_int_equal(chown(f->path, 65534, 65534), 0);
    assert_null(adm_server_new(f->base, f->ctl, f->path, 0600, err, sizeof(err)));
    assert_non_null(strstr(err, "is a socket of uid 65534, not ours"));
    assert_int_equal(stat(f->path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_uid, 65534);
}

/* Every command carries the peer's uid and pid: the audit entry of a change
 * has "actor":"uid:N" and "pid" (here: this very process). */
static void
test_audit_uid_and_pid(void **state)
{
    struct fx *f = *state;
    struct adm_server *s = start(f, f->path, 0600);
    struct client *c = client_new(f->path);
    char af[160], want[32], *nl;
    json_t *r, *e;
    FILE *fp;
    char line[2048];

    r = request(f, c, "{\"cmd\":\"weight\",\"percent\":3}");
    assert_true(reply_ok(r));
    json_decref(r);
    client_free(c);
    adm_server_free(s);

    snprintf(af, sizeof(af), "%s/audit.jsonl", f->dir);
    fp = fopen(af, "r");
    assert_non_null(fp);
    assert_non_null(fgets(line, sizeof(line), fp));
    fclose(fp);
    if ((nl = strchr(line, '\n')) != NULL)
        *nl = '\0';
    e = json_loads(line, 0, NULL);
    assert_non_null(e);
    snprintf(want, sizeof(want), "uid:%lu", (unsigned long)getuid());
    assert_string_equal(json_string_value(json_object_get(e, "actor")), want);
    assert_int_equal(json_integer_value(json_object_get(e, "pid")), (long long)getpid());
    json_decref(e);
}

/* The socket file is 0600 by default (the config's default socket_mode):
 * checked on the file itself, not only through the umask. */
static void
test_default_mode_0600(void **state)
{
    struct fx *f = *state;
    struct adm_server *s = start(f, f->path, 0600);
    struct stat st;

    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(st.st_uid, geteuid());
    adm_server_free(s);
}

/* Freeing the server with clients connected (one mid-line) frees them and
 * closes their connections. */
static void
test_free_with_clients(void **state)
{
    struct fx *f = *state;
    struct adm_server *s = start(f, f->path, 0600);
    struct client *c1 = client_new(f->path), *c2 = client_new(f->path);
    json_t *r;

    r = request(f, c1, "{\"cmd\":\"status\"}");
    json_decref(r);
    client_send(f, c2, "{\"cmd\":", 7);
    spin(f);
    adm_server_free(s);
    /* libevent 2.1 finalizes a freed bufferevent (closing its fd) on the
     * next loop iteration */
    spin(f);
    assert_int_equal(client_fill(c1), 0);
    assert_int_equal(client_fill(c2), 0);
    client_free(c1);
    client_free(c2);
}

/* True while the server keeps <c> open (nothing to read, no EOF). */
static bool
client_open(struct client *c)
{
    return client_fill(c) == -1;
}

static void
server_stats(struct adm_server *s, struct adm_conn_stats *st)
{
    adm_server_conn_stats(s, st);
}

/* Runs the loop for <ms>. */
static void
spin_ms(struct fx *f, long ms)
{
    struct timespec t0, t;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        spin(f);
        usleep(1000);
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 < ms);
}

static void
status_ok(struct fx *f, struct client *c)
{
    json_t *r = request(f, c, "{\"cmd\":\"status\"}");

    assert_true(reply_ok(r));
    json_decref(r);
}

/* 64 clients of our own user, and one more is never refused: over 64 it
 * evicts one that sent no complete line in its first second (only such
 * one: the others stay, up to 128), over 128 the least recently used. */
static void
test_client_limit_evicts(void **state)
{
    struct fx *f = *state;
    struct adm_server *s = start(f, f->path, 0600);
    struct client *c[130];
    struct adm_conn_stats st;
    int i;

    for (i = 0; i < 65; i++) {
        c[i] = client_new(f->path);
        if (i != 10)
            status_ok(f, c[i]);        /* c[10] sends nothing */
    }
    server_stats(s, &st);
    assert_int_equal(st.open, 65);     /* c[10] has its second */
    assert_int_equal(st.evicted, 0);
    spin_ms(f, 1100);
    c[65] = client_new(f->path);
    status_ok(f, c[65]);
    client_expect_closed(f, c[10]);
    server_stats(s, &st);
    assert_int_equal(st.open, 65);
    assert_int_equal(st.evicted, 1);
    for (i = 66; i < 130; i++) {
        c[i] = client_new(f->path);
        status_ok(f, c[i]);
    }
    /* 128 at most: the 129th evicted c[0], the least recently used */
    client_expect_closed(f, c[0]);
    for (i = 1; i < 130; i++)
        if (i != 10)
            assert_true(client_open(c[i]));
    server_stats(s, &st);
    assert_int_equal(st.open, 128);
    assert_int_equal(st.evicted, 2);
    for (i = 0; i < 130; i++)
        client_free(c[i]);
    adm_server_free(s);
}

/* Peers of another user (let in by the socket's mode) have places of their
 * own (16, 32 while new ones have their first second): however many they
 * open, they evict each other, never a connection of root or of the
 * daemon's user, and they are served. Runs as root only (the child
 * switches to uid 65534). */
static void
test_other_users_pool(void **state)
{
    struct fx *f = *state;
    struct adm_server *s;
    struct client *c[64];
    struct adm_conn_stats st;
    char run[128], got = 0;
    int pfd[2], i, status;
    pid_t pid;
    long k;

    if (geteuid() != 0) {
        skip();
        return;
    }
    s = start(f, f->path, 0666);
    snprintf(run, sizeof(run), "%s/run", f->dir);
    assert_int_equal(chmod(f->dir, 0711), 0);
    assert_int_equal(chmod(run, 0711), 0);
    for (i = 0; i < 64; i++)
        c[i] = client_new(f->path);    /* root's: they send nothing */
    for (k = 0; k < SPIN_MAX; k++) {
        server_stats(s, &st);
        if (st.open == 64)
            break;
        spin(f);
    }
    assert_int_equal(st.open, 64);
    assert_int_equal(pipe(pfd), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* 40 connections as nobody; the last one asks for the status */
        char buf[4096], ok = 'n';
        int fds[40], n = 0;
        ssize_t k2;

        close(pfd[0]);
        if (setgid(65534) != 0 || setuid(65534) != 0)
            _exit(2);
        prctl(PR_SET_PDEATHSIG, SIGKILL);      /* after setuid(), which clears it */
        if (getppid() == 1)
            _exit(6);
        for (i = 0; i < 40; i++)
            if ((fds[i] = sock_connect(f->path)) < 0)
                _exit(3);
        if (write(fds[39], "{\"cmd\":\"status\"}\n", 17) != 17)
            _exit(4);
        while (n < (int)sizeof(buf) - 1 && (k2 = read(fds[39], buf + n,
                                                       sizeof(buf) - 1 - (size_t)n)) > 0) {
            n += (int)k2;
            if (memchr(buf, '\n', (size_t)n) != NULL)
                break;
        }
        buf[n] = '\0';
        if (strstr(buf, "\"ok\":true") != NULL)
            ok = 'y';
        if (write(pfd[1], &ok, 1) != 1)
            _exit(5);
        pause();
        _exit(0);
    }
    close(pfd[1]);
    assert_int_equal(fcntl(pfd[0], F_SETFL, O_NONBLOCK), 0);
    for (k = 0; k < SPIN_MAX && read(pfd[0], &got, 1) != 1; k++)
        spin(f);
    assert_int_equal(got, 'y');
    server_stats(s, &st);
    assert_int_equal(st.open, 64 + 32);
    assert_int_equal(st.evicted, 40 - 32);
    for (i = 0; i < 64; i++)
        assert_true(client_open(c[i]));
    kill(pid, SIGKILL);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    close(pfd[0]);
    for (i = 0; i < 64; i++)
        client_free(c[i]);
    adm_server_free(s);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_mode_set_at_bind, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mode_other_value, setup, teardown),
        cmocka_unit_test_setup_teardown(test_creates_parent_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_unlinks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_status_reply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_requests_one_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_json_keeps_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipelined_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_half_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_socket_replaced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_regular_file_not_replaced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_live_socket_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_with_clients, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_limit_evicts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_users_pool, setup, teardown),
        cmocka_unit_test_setup_teardown(test_socket_group, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_uid_and_pid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_socket_of_other_user_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_default_mode_0600, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
