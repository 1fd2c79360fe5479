/*
 * socket: the admin unix-socket server inside the daemon. One JSON object per
 * line in, one reply line out (adm_control_exec_line() does the work), and
 * the connection stays open for more.
 *
 * Key decisions:
 * - The socket file gets its final mode from the umask in force at bind()
 *   time, never from a chmod() afterwards, so there is no moment where it is
 *   wider than <mode>. With a group, bind() creates it with the owner bits
 *   only; it is chown'ed to the group and only then given the group bits,
 *   all before listen(), so nobody outside the group ever had access.
 * - A stale socket file (left by a crash) is replaced only when it is a
 *   socket owned by our effective uid and nobody answers a connect on it;
 *   a live daemon, or another user's file, is never displaced.
 * - The peer's uid and pid (SO_PEERCRED) go with every command: the uid is
 *   the actor ("uid:N"), the pid is audited and logged with each change.
 * - The connection's life (accept, bounded reads, ADM_LINES_PER_CB lines per
 *   callback, reading paused over ADM_OUT_HIGH queued reply bytes, EOF and
 *   teardown) is admin/conn.c's, shared with the HTTP endpoint; this file
 *   finds and executes lines.
 * - Nobody who can connect can lock the operator out (the way to roll back
 *   must always be open): a line must be complete within ADM_LINE_MS of
 *   the accept or its first byte (else an error line and the close), a
 *   connection idle for ADM_IDLE_MS between lines is closed (`cutoverctl
 *   watch` sends a line every second), a peer that reads none of its
 *   replies for ADM_FLUSH_MS is dropped, and a new connection is never
 *   refused: over ADM_MAX_CLIENTS it evicts one that sent no complete line
 *   in its first ADM_GRACE_MS, and over twice that many the least recently
 *   used one (admin/conn.h has the order; a process's own connections go
 *   first: the peer key is the pid). Peers running as root or as the
 *   daemon's own user are trusted: they have places of their own, which
 *   the other users the socket's group lets in (ADM_MAX_OTHERS) can never
 *   take.
 *
 * Workload: a handful of operators and scripts; a request is small and rare.
 * Writes to a peer that went away raise SIGPIPE: the daemon ignores SIGPIPE.
 */
#define _GNU_SOURCE                    /* struct ucred (SO_PEERCRED) */

#include "admin/socket.h"

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "admin/conn.h"
#include "admin/control.h"
#include "lib/log.h"
#include "lib/xmalloc.h"

#define ADM_MAX_LINE      65536u       /* bytes of one request line, LF excluded */
#define ADM_LINES_PER_CB  16           /* requests handled per callback */
#define ADM_OUT_HIGH      (256u * 1024u) /* queued reply bytes that pause reading */
#define ADM_MAX_CLIENTS   64           /* connections of root or our own user; twice
                                        * as many while new ones are in their grace */
#define ADM_MAX_OTHERS    16           /* the same for other users (socket_group) */
#define ADM_GRACE_MS      1000         /* a new connection's time to send a line */
#define ADM_LINE_MS       10000        /* accept or a line's first byte to its LF */
#define ADM_IDLE_MS       60000        /* between lines */
#define ADM_FLUSH_MS      10000        /* replies not read at all for this long */

/* A connection: the generic part first (admin/conn.c frees it as one). */
struct adm_client {
    struct adm_conn conn;              /* conn.peer is the actor, "uid:N" */
    long pid;                          /* peer pid from SO_PEERCRED, -1 unknown */
    struct adm_wait *wait;             /* a reply to come: from the fleet's store, or a
                                        * status built in slices */
};

/* How long a reply may wait for the fleet's store (its statements time out
 * well before: this only bounds a store that never answers). */
#define ADM_WAIT_MS 30000u

_Static_assert(offsetof(struct adm_client, conn) == 0, "adm_conn must come first");

struct adm_server {
    struct adm_control *ctl;           /* borrowed */
    struct adm_listener lis;           /* the listener and its clients */
    char *path;                        /* owned: unlinked by adm_server_free() */
};

/* Appends <text> (no newline) plus "\n" to <c>'s output. On failure the
 * connection cannot keep its one-reply-per-line promise: close it. */
static void
client_reply(struct adm_client *c, const char *text, size_t len)
{
    struct evbuffer *out = bufferevent_get_output(c->conn.bev);

    if (evbuffer_add(out, text, len) != 0 || evbuffer_add(out, "\n", 1) != 0) {
        log_at(LL_WARN, "admin", 0, "cannot queue a reply for %s: closing", c->conn.peer);
        adm_conn_close(&c->conn);
    }
}

static void
client_refuse_long_line(struct adm_client *c)
{
    static const char msg[] =
        "{\"ok\":false,\"error\":\"request line longer than 65536 bytes\"}";

    log_at(LL_WARN, "admin", 0, "request from %s over %u bytes: closing",
           c->conn.peer, ADM_MAX_LINE);
    client_reply(c, msg, sizeof(msg) - 1);
    adm_conn_close(&c->conn);
}

/* The reply that waited for the fleet's store. */
static void
client_waited(void *arg, char *reply)
{
    struct adm_client *c = arg;

    c->wait = NULL;
    client_reply(c, reply, strlen(reply));
    free(reply);
    adm_conn_done(&c->conn);
}

/* ops->gone: freed while a reply waits. */
static void
client_gone(struct adm_conn *conn)
{
    struct adm_client *c = (struct adm_client *)conn;

    adm_control_wait_cancel(c->wait);
    c->wait = NULL;
}

/* Executes the <len> bytes at the front of the input as one request and
 * drains them plus <eol_len> bytes of line end. */
static void
client_exec(struct adm_client *c, size_t len, size_t eol_len)
{
    struct adm_server *s = c->conn.lis->owner;
    struct evbuffer *in = bufferevent_get_input(c->conn.bev);
    const unsigned char *line;
    char *reply;

    /* Only the request's own bytes are made contiguous (at most
     * ADM_MAX_LINE + 1), never the rest of the input. */
    line = evbuffer_pullup(in, (ev_ssize_t)(len + eol_len));
    if (line == NULL && len + eol_len > 0) {
        adm_conn_close(&c->conn);
        return;
    }
    reply = adm_control_exec_line_wait(s->ctl, len ? (const char *)line : "", len,
                                       &(struct adm_caller){ .actor = c->conn.peer,
                                                             .pid = c->pid,
                                                             .level = ADM_LEVEL_ADMIN },
                                       client_waited, c, &c->wait);
    evbuffer_drain(in, len + eol_len);
    if (reply == NULL && c->wait != NULL) {
        adm_conn_wait(&c->conn, ADM_WAIT_MS);
        return;
    }
    if (reply == NULL) {
        static const char msg[] = "{\"ok\":false,\"error\":\"internal error\"}";

        client_reply(c, msg, sizeof(msg) - 1);
        return;
    }
    client_reply(c, reply, strlen(reply));
    free(reply);
}

/* ops->step: executes the complete line at the front of the input, or, after
 * EOF, the unterminated last one. */
static bool
client_step(struct adm_conn *conn)
{
    struct adm_client *c = (struct adm_client *)conn;
    struct evbuffer *in = bufferevent_get_input(conn->bev);
    struct evbuffer_ptr eol;
    size_t eol_len, inlen = evbuffer_get_length(in);

    eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_LF);
    if (eol.pos < 0) {
        if (inlen > ADM_MAX_LINE) {
            client_refuse_long_line(c);
        } else if (conn->is_eof) {
            /* the peer will send nothing more: an unterminated last line
             * is still a request */
            client_exec(c, inlen, 0);
            adm_conn_close(conn);
        }
        return false;
    }
    if ((size_t)eol.pos > ADM_MAX_LINE) {
        client_refuse_long_line(c);
        return false;
    }
    client_exec(c, (size_t)eol.pos, eol_len);
    return true;
}

/* ops->expire: no complete line within ADM_LINE_MS. */
static void
client_expire(struct adm_conn *conn)
{
    static const char msg[] =
        "{\"ok\":false,\"error\":\"no complete request line within 10 s: closing\"}";
    static const char late[] =
        "{\"ok\":false,\"error\":\"the fleet's store did not answer within 30 s: the "
        "change may still be made; check status\"}";

    if (conn->state == ADM_CONN_WAITING) {
        client_gone(conn);
        client_reply((struct adm_client *)conn, late, sizeof(late) - 1);
        adm_conn_done(conn);
        return;
    }

    _Static_assert(ADM_LINE_MS == 10000, "the message says 10 s");
    log_at(LL_DEBUG, "admin", 0, "%s sent no complete request line within %u ms: closing",
           conn->peer, ADM_LINE_MS);
    client_reply((struct adm_client *)conn, msg, sizeof(msg) - 1);
    adm_conn_close(conn);
}

/* ops->accept: the peer's uid and pid (SO_PEERCRED); root and our own
 * user are trusted. */
static int
client_accept(struct adm_conn *conn, evutil_socket_t fd, const struct sockaddr *sa,
              int salen)
{
    struct adm_client *c = (struct adm_client *)conn;
    struct ucred cred;
    socklen_t credlen = sizeof(cred);

    c->pid = -1;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &credlen) == 0) {
        snprintf(conn->peer, sizeof(conn->peer), "uid:%lu", (unsigned long)cred.uid);
        c->pid = cred.pid > 0 ? (long)cred.pid : -1;  /* 0: not in our pid namespace */
        if (cred.uid == 0 || cred.uid == geteuid())
            conn->pool = ADM_POOL_TRUSTED;
        conn->peer_key = cred.pid > 0 ? (unsigned long long)cred.pid
                                      : (1ULL << 40) + cred.uid;
    } else {
        snprintf(conn->peer, sizeof(conn->peer), "uid:unknown");
    }
    log_at(LL_DEBUG, "admin", 0, "admin connection from %s pid:%ld", conn->peer, c->pid);
    return 0;
}

/* The input never holds more than one maximal line plus its LF: a longer
 * line is detected when the input is full without an LF. */
static const struct adm_conn_ops client_ops = {
    .name = "admin",
    .listener = "the admin socket",
    .size = sizeof(struct adm_client),
    .in_max = ADM_MAX_LINE + 1,
    .out_high = ADM_OUT_HIGH,
    .reqs_per_cb = ADM_LINES_PER_CB,
    .pool = {
        [ADM_POOL_UNTRUSTED] = { .max_conns = ADM_MAX_OTHERS,
                                 .hard_conns = 2 * ADM_MAX_OTHERS,
                                 .req_ms = ADM_LINE_MS, .idle_ms = ADM_IDLE_MS },
        [ADM_POOL_TRUSTED] = { .max_conns = ADM_MAX_CLIENTS,
                               .hard_conns = 2 * ADM_MAX_CLIENTS,
                               .req_ms = ADM_LINE_MS, .idle_ms = ADM_IDLE_MS },
    },
    .grace_ms = ADM_GRACE_MS,
    .flush_ms = ADM_FLUSH_MS,
    .accept = client_accept,
    .step = client_step,
    .expire = client_expire,
    .gone = client_gone,
};

/* Creates the parent directory of <path> (the last component only) with mode
 * 0700 when it is missing. Returns 0 or -1 with <err> set. */
static int
make_parent_dir(const char *path, char *err, size_t errlen)
{
    char *dir = xstrdup(path);
    char *slash = strrchr(dir, '/');
    mode_t old;
    int rc = 0;

    if (slash == NULL || slash == dir) {
        free(dir);                     /* relative name or in "/": nothing to do */
        return 0;
    }
    *slash = '\0';
    old = umask(077);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create directory %s: %s", dir, strerror(errno));
        rc = -1;
    }
    umask(old);
    free(dir);
    return rc;
}

/* Removes a socket file left by a dead daemon. Returns 0 when <path> is free
 * to bind, -1 with <err> set when it must not be touched. */
static int
remove_stale_socket(const struct sockaddr_un *addr, socklen_t addrlen, char *err,
                    size_t errlen)
{
    const char *path = addr->sun_path;
    struct stat st;
    int fd, rc, e;

    if (lstat(path, &st) != 0) {
        if (errno == ENOENT)
            return 0;
        snprintf(err, errlen, "cannot stat socket %s: %s", path, strerror(errno));
        return -1;
    }
    if (!S_ISSOCK(st.st_mode)) {
        snprintf(err, errlen, "%s exists and is not a socket", path);
        return -1;
    }
    if (st.st_uid != geteuid()) {
        snprintf(err, errlen, "%s is a socket of uid %lu, not ours (uid %lu): not removed",
                 path, (unsigned long)st.st_uid, (unsigned long)geteuid());
        return -1;
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    /* Non-blocking: a live daemon with a full backlog answers EAGAIN rather
     * than making us wait. */
    rc = connect(fd, (const struct sockaddr *)addr, addrlen);
    e = errno;
    close(fd);
    if (rc == 0 || e == EAGAIN || e == EINPROGRESS) {
        snprintf(err, errlen, "socket %s is in use by a running daemon", path);
        return -1;
    }
    if (e == ENOENT)
        return 0;                      /* removed meanwhile */
    if (e != ECONNREFUSED) {
        snprintf(err, errlen, "cannot probe socket %s: %s", path, strerror(e));
        return -1;
    }
    if (unlink(path) != 0 && errno != ENOENT) {
        snprintf(err, errlen, "cannot remove stale socket %s: %s", path,
                 strerror(errno));
        return -1;
    }
    log_at(LL_INFO, "admin", 0, "removed stale socket %s", path);
    return 0;
}

struct adm_server *
adm_server_new(struct event_base *base, struct adm_control *ctl, const char *path,
               mode_t mode, char *err, size_t errlen)
{
    return adm_server_new_group(base, ctl, path, mode, -1, err, errlen);
}

struct adm_server *
adm_server_new_group(struct event_base *base, struct adm_control *ctl, const char *path,
                     mode_t mode, long gid, char *err, size_t errlen)
{
    struct adm_server *s = NULL;
    struct sockaddr_un addr;
    socklen_t addrlen;
    mode_t old;
    int fd = -1, rc, e;
    bool bound = false;

    if (errlen > 0)
        err[0] = '\0';
    memset(&addr, 0, sizeof(addr));
    addr.sun_family = AF_UNIX;
    if (path == NULL || path[0] == '\0' || strlen(path) >= sizeof(addr.sun_path)) {
        snprintf(err, errlen, "socket path %s is empty or longer than %zu bytes",
                 path ? path : "(null)", sizeof(addr.sun_path) - 1);
        return NULL;
    }
    memcpy(addr.sun_path, path, strlen(path));
    addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);

    if (make_parent_dir(path, err, errlen) != 0)
        goto fail;
    if (remove_stale_socket(&addr, addrlen, err, errlen) != 0)
        goto fail;

    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        goto fail;
    }
    /* The file is created by bind() with 0777 & ~umask: set the umask so it
     * is born with <mode>. The umask is process-wide; this runs at startup
     * or reload on the control thread, before anything else creates files. */
    old = umask(~(gid >= 0 ? mode & 0700 : mode) & 0777);
    rc = bind(fd, (const struct sockaddr *)&addr, addrlen);
    e = errno;
    umask(old);
    if (rc != 0) {
        snprintf(err, errlen, "cannot bind %s: %s", path, strerror(e));
        goto fail;
    }
    bound = true;
    /* Group access: the group first, its bits second, both before listen():
     * until listen() a connect is refused anyway. */
    if (gid >= 0 && chown(path, (uid_t)-1, (gid_t)gid) != 0) {
        snprintf(err, errlen, "cannot give %s to group %ld: %s", path, gid, strerror(errno));
        goto fail;
    }
    if (gid >= 0 && chmod(path, mode & 0777) != 0) {
        snprintf(err, errlen, "cannot set mode %04o on %s: %s", (unsigned)(mode & 0777),
                 path, strerror(errno));
        goto fail;
    }

    s = xcalloc(1, sizeof(*s));
    s->ctl = ctl;
    s->path = xstrdup(path);
    adm_listener_init(&s->lis, base, &client_ops, s);
    if (adm_listener_listen_fd(&s->lis, fd) != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", path, strerror(errno));
        adm_listener_close(&s->lis);   /* what it made; <fd> is still ours */
        goto fail;
    }
    fd = -1;                           /* the listener's now */
    if (gid >= 0)
        log_at(LL_INFO, "admin", 0, "admin socket %s (mode %04o, group %ld)", path,
               (unsigned)(mode & 07777), gid);
    else
        log_at(LL_INFO, "admin", 0, "admin socket %s (mode %04o)", path,
               (unsigned)(mode & 07777));
    return s;

fail:
    if (fd >= 0)
        close(fd);
    if (bound)
        unlink(path);
    if (s != NULL) {
        free(s->path);
        free(s);
    }
    return NULL;
}

void
adm_server_conn_stats(const struct adm_server *s, struct adm_conn_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (s != NULL)
        adm_listener_stats(&s->lis, out);
}

void
adm_server_free(struct adm_server *s)
{
    if (s == NULL)
        return;
    adm_listener_close(&s->lis);
    if (unlink(s->path) != 0 && errno != ENOENT)
        log_at(LL_WARN, "admin", 0, "cannot remove %s: %s", s->path, strerror(errno));
    free(s->path);
    free(s);
}
