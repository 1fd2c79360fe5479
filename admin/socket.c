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
 * - Work per callback is bounded (ADM_LINES_PER_CB lines); the rest is
 *   picked up by a "resume" event on the next loop iteration, so a client
 *   that pipelines many requests cannot starve the loop. A client that does
 *   not read its replies stops being read once ADM_OUT_HIGH bytes are queued.
 * - A client is freed only at the tail of one of its own callbacks (nothing
 *   touches it afterwards) or from adm_server_free().
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
#include <event2/event.h>
#include <event2/listener.h>

#include "admin/control.h"
#include "lib/log.h"
#include "lib/xmalloc.h"

#define ADM_MAX_LINE      65536u       /* bytes of one request line, LF excluded */
#define ADM_LINES_PER_CB  16           /* requests handled per callback */
#define ADM_OUT_HIGH      (256u * 1024u) /* queued reply bytes that pause reading */
#define ADM_MAX_CLIENTS   64           /* concurrent admin connections */
#define ADM_BACKLOG       16

struct adm_client {
    struct adm_server *srv;            /* borrowed: the server that accepted it */
    struct bufferevent *bev;           /* owned (closes the fd) */
    struct event *resume;              /* owned: re-runs line processing */
    char actor[32];                    /* "uid:N" from SO_PEERCRED */
    long pid;                          /* peer pid from SO_PEERCRED, -1 unknown */
    bool is_eof;                       /* peer shut its writing side */
    bool is_paused;                    /* reading stopped: output over ADM_OUT_HIGH */
    bool is_closing;                   /* no more requests: free once output is sent */
    struct adm_client *prev, *next;    /* srv->clients list */
};

struct adm_server {
    struct event_base *base;           /* borrowed */
    struct adm_control *ctl;           /* borrowed */
    struct evconnlistener *lev;        /* owned (closes the listening fd) */
    char *path;                        /* owned: unlinked by adm_server_free() */
    struct adm_client *clients;        /* owned list */
    unsigned nclients;
};

static void on_client_read(struct bufferevent *bev, void *arg);
static void on_client_write(struct bufferevent *bev, void *arg);
static void on_client_event(struct bufferevent *bev, short what, void *arg);
static void on_client_resume(evutil_socket_t fd, short what, void *arg);

static void
client_free(struct adm_client *c)
{
    struct adm_server *s = c->srv;

    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        s->clients = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    s->nclients--;
    if (c->resume != NULL)
        event_free(c->resume);
    bufferevent_free(c->bev);          /* safe from the bev's own callback */
    free(c);
}

/* Appends <text> (no newline) plus "\n" to <c>'s output. On failure the
 * connection cannot keep its one-reply-per-line promise: close it. */
static void
client_reply(struct adm_client *c, const char *text, size_t len)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);

    if (evbuffer_add(out, text, len) != 0 || evbuffer_add(out, "\n", 1) != 0) {
        log_at(LL_WARN, "admin", 0, "cannot queue a reply for %s: closing", c->actor);
        c->is_closing = true;
    }
}

/* Stops reading requests; the connection is freed once its output is sent. */
static void
client_close_after_flush(struct adm_client *c)
{
    c->is_closing = true;
    bufferevent_disable(c->bev, EV_READ);
}

static void
client_refuse_long_line(struct adm_client *c)
{
    static const char msg[] =
        "{\"ok\":false,\"error\":\"request line longer than 65536 bytes\"}";

    log_at(LL_WARN, "admin", 0, "request from %s over %u bytes: closing",
           c->actor, ADM_MAX_LINE);
    client_reply(c, msg, sizeof(msg) - 1);
    client_close_after_flush(c);
}

/* Executes the <len> bytes at the front of the input as one request and
 * drains them plus <eol_len> bytes of line end. */
static void
client_exec(struct adm_client *c, size_t len, size_t eol_len)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    const unsigned char *line;
    char *reply;

    /* Only the request's own bytes are made contiguous (at most
     * ADM_MAX_LINE + 1), never the rest of the input. */
    line = evbuffer_pullup(in, (ev_ssize_t)(len + eol_len));
    if (line == NULL && len + eol_len > 0) {
        client_close_after_flush(c);
        return;
    }
    reply = adm_control_exec_line_as(c->srv->ctl, len ? (const char *)line : "", len,
                                     &(struct adm_caller){ .actor = c->actor, .pid = c->pid,
                                                           .level = ADM_LEVEL_ADMIN });
    evbuffer_drain(in, len + eol_len);
    if (reply == NULL) {
        static const char msg[] = "{\"ok\":false,\"error\":\"internal error\"}";

        client_reply(c, msg, sizeof(msg) - 1);
        return;
    }
    client_reply(c, reply, strlen(reply));
    free(reply);
}

/* Handles up to ADM_LINES_PER_CB complete lines from the input. Returns true
 * when more work is ready (another complete line, or the final unterminated
 * line after EOF) and the output is not over ADM_OUT_HIGH. */
static bool
client_process(struct adm_client *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct evbuffer *out = bufferevent_get_output(c->bev);
    struct evbuffer_ptr eol;
    size_t eol_len, inlen;
    int n;

    for (n = 0; !c->is_closing; n++) {
        if (evbuffer_get_length(out) >= ADM_OUT_HIGH) {
            if (!c->is_paused) {
                /* on_client_write() resumes when the output drains */
                c->is_paused = true;
                bufferevent_disable(c->bev, EV_READ);
            }
            return false;
        }
        inlen = evbuffer_get_length(in);
        eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_LF);
        if (eol.pos < 0) {
            if (inlen > ADM_MAX_LINE) {
                client_refuse_long_line(c);
            } else if (c->is_eof) {
                /* the peer will send nothing more: an unterminated last
                 * line is still a request */
                if (inlen > 0)
                    client_exec(c, inlen, 0);
                client_close_after_flush(c);
            }
            return false;
        }
        if ((size_t)eol.pos > ADM_MAX_LINE) {
            client_refuse_long_line(c);
            return false;
        }
        if (n == ADM_LINES_PER_CB)
            return true;
        client_exec(c, (size_t)eol.pos, eol_len);
    }
    return false;
}

/* The common tail of every client callback: schedules the rest of the work
 * or frees <c>. <c> must not be touched after this returns. */
static void
client_settle(struct adm_client *c, bool more)
{
    if (c->is_closing) {
        if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
            client_free(c);
        /* else on_client_write() frees it when the output is sent */
        return;
    }
    if (more)
        event_active(c->resume, EV_TIMEOUT, 1);
}

static void
on_client_read(struct bufferevent *bev, void *arg)
{
    struct adm_client *c = arg;

    client_settle(c, client_process(c));
}

static void
on_client_resume(evutil_socket_t fd, short what, void *arg)
{
    struct adm_client *c = arg;

    client_settle(c, client_process(c));
}

/* Runs when the output is fully sent (write low watermark 0). */
static void
on_client_write(struct bufferevent *bev, void *arg)
{
    struct adm_client *c = arg;
    bool more = false;

    if (c->is_paused && !c->is_closing) {
        c->is_paused = false;
        if (!c->is_eof && bufferevent_enable(c->bev, EV_READ) != 0)
            client_close_after_flush(c);
        else
            more = client_process(c);
    }
    client_settle(c, more);
}

static void
on_client_event(struct bufferevent *bev, short what, void *arg)
{
    struct adm_client *c = arg;

    if (what & BEV_EVENT_EOF) {
        /* Half-close: answer what was sent, then close once flushed. */
        c->is_eof = true;
        bufferevent_disable(bev, EV_READ);
        client_settle(c, client_process(c));
        return;
    }
    if (what & BEV_EVENT_ERROR) {
        log_at(LL_DEBUG, "admin", 0, "connection from %s: %s", c->actor,
               evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        client_free(c);                /* nothing can be flushed any more */
        return;
    }
}

static void
on_accept(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
          int salen, void *arg)
{
    struct adm_server *s = arg;
    struct adm_client *c;
    struct ucred cred;
    socklen_t credlen = sizeof(cred);

    if (s->nclients >= ADM_MAX_CLIENTS) {
        log_at(LL_WARN, "admin", 0, "%u admin connections open: refusing another",
               s->nclients);
        evutil_closesocket(fd);
        return;
    }
    c = xcalloc(1, sizeof(*c));
    c->srv = s;
    c->pid = -1;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &credlen) == 0) {
        snprintf(c->actor, sizeof(c->actor), "uid:%lu", (unsigned long)cred.uid);
        c->pid = cred.pid > 0 ? (long)cred.pid : -1;  /* 0: not in our pid namespace */
    } else {
        snprintf(c->actor, sizeof(c->actor), "uid:unknown");
    }

    c->bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (c->bev == NULL) {
        evutil_closesocket(fd);
        free(c);
        log_at(LL_WARN, "admin", 0, "cannot set up an admin connection");
        return;
    }
    c->resume = event_new(s->base, -1, 0, on_client_resume, c);
    if (c->resume == NULL)
        goto fail;
    bufferevent_setcb(c->bev, on_client_read, on_client_write, on_client_event, c);
    /* Input never holds more than one maximal line plus its LF: a longer
     * line is detected when the input is full without an LF. */
    bufferevent_setwatermark(c->bev, EV_READ, 0, ADM_MAX_LINE + 1);
    if (bufferevent_enable(c->bev, EV_READ) != 0)
        goto fail;

    c->next = s->clients;
    if (s->clients != NULL)
        s->clients->prev = c;
    s->clients = c;
    s->nclients++;
    log_at(LL_DEBUG, "admin", 0, "admin connection from %s pid:%ld", c->actor, c->pid);
    return;

fail:
    if (c->resume != NULL)
        event_free(c->resume);
    bufferevent_free(c->bev);
    free(c);
    log_at(LL_WARN, "admin", 0, "cannot set up an admin connection");
}

static void
on_accept_error(struct evconnlistener *lev, void *arg)
{
    int e = EVUTIL_SOCKET_ERROR();

    /* EMFILE and friends: keep listening, the next accept may succeed */
    log_at(LL_WARN, "admin", 0, "accept on the admin socket: %s",
           evutil_socket_error_to_string(e));
}

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
    s->base = base;
    s->ctl = ctl;
    s->path = xstrdup(path);
    /* evconnlistener_new() calls listen(); with CLOSE_ON_FREE it owns <fd>
     * from here on, but only when it succeeds. */
    s->lev = evconnlistener_new(base, on_accept, s,
                                LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_CLOSE_ON_FREE,
                                ADM_BACKLOG, fd);
    if (s->lev == NULL) {
        snprintf(err, errlen, "cannot listen on %s: %s", path, strerror(errno));
        goto fail;
    }
    fd = -1;
    evconnlistener_set_error_cb(s->lev, on_accept_error);
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
adm_server_free(struct adm_server *s)
{
    if (s == NULL)
        return;
    while (s->clients != NULL)
        client_free(s->clients);
    evconnlistener_free(s->lev);
    if (unlink(s->path) != 0 && errno != ENOENT)
        log_at(LL_WARN, "admin", 0, "cannot remove %s: %s", s->path, strerror(errno));
    free(s->path);
    free(s);
}
