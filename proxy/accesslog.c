/*
 * accesslog: see accesslog.h. The expected load is one line per request at
 * the proxy's full rate, so a line costs a clock read, a formatted append
 * to an evbuffer and, once per loop iteration, one write(2) for all the
 * lines of that iteration. The date part of the timestamp is formatted
 * once per second.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "lib/log.h"
#include "lib/xmalloc.h"
#include "proxy/accesslog.h"

struct px_access_log {
    char *path;                  /* owned */
    int fd;                      /* owned: O_APPEND */
    struct evbuffer *buf;        /* owned: lines not written yet */
    struct event *flush_ev;      /* owned: activated by the first pending line */
    bool flush_pending;          /* <flush_ev> is active */
    bool failing;                /* the last write failed (logged once) */
    uint64_t dropped;            /* lines lost to write errors while failing */
    uint64_t pending_lines;      /* lines in <buf> */
    time_t ts_sec;               /* second of <ts_prefix> */
    char ts_prefix[32];          /* "2026-12-05T18:40:34" for <ts_sec> */
};

static int
open_log(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);

    if (fd < 0)
        snprintf(err, errlen, "access log %s: cannot open: %s", path, strerror(errno));
    return fd;
}

/* Writes everything in l->buf to l->fd. On an error the batch is dropped:
 * the log must not hold the process's memory hostage to a full disk. */
static void
write_pending(struct px_access_log *l)
{
    int n;

    while (evbuffer_get_length(l->buf) > 0) {
        n = evbuffer_write(l->buf, l->fd);
        if (n > 0)
            continue;
        if (n < 0 && errno == EINTR)
            continue;
        if (!l->failing)
            log_at(LL_ERR, "accesslog", 0, "%s: write failed: %s; lines are dropped "
                   "until writing works again", l->path,
                   n < 0 ? strerror(errno) : "nothing written");
        l->failing = true;
        l->dropped += l->pending_lines;
        evbuffer_drain(l->buf, evbuffer_get_length(l->buf));
        l->pending_lines = 0;
        return;
    }
    if (l->failing && l->pending_lines > 0) {
        log_at(LL_WARN, "accesslog", 0, "%s: writing again; %llu line(s) were dropped",
               l->path, (unsigned long long)l->dropped);
        l->failing = false;
        l->dropped = 0;
    }
    l->pending_lines = 0;
}

static void
on_flush(evutil_socket_t fd, short what, void *arg)
{
    struct px_access_log *l = arg;

    (void)fd;
    (void)what;
    l->flush_pending = false;
    write_pending(l);
}

struct px_access_log *
px_access_log_new(struct event_base *base, const char *path, char *err, size_t errlen)
{
    struct px_access_log *l = xcalloc(1, sizeof(*l));

    l->fd = -1;
    l->path = xstrdup(path);
    l->ts_sec = (time_t)-1;
    if ((l->buf = evbuffer_new()) == NULL ||
        (l->flush_ev = event_new(base, -1, 0, on_flush, l)) == NULL) {
        snprintf(err, errlen, "access log %s: cannot allocate its buffer", path);
        goto fail;
    }
    if ((l->fd = open_log(path, err, errlen)) < 0)
        goto fail;
    return l;

fail:
    px_access_log_free(l);
    return NULL;
}

void
px_access_log_free(struct px_access_log *l)
{
    if (l == NULL)
        return;
    if (l->fd >= 0 && l->buf != NULL)
        write_pending(l);
    if (l->flush_ev != NULL)
        event_free(l->flush_ev);
    if (l->buf != NULL)
        evbuffer_free(l->buf);
    if (l->fd >= 0)
        close(l->fd);
    free(l->path);
    free(l);
}

int
px_access_log_reopen(struct px_access_log *l)
{
    char err[512];
    int fd;

    write_pending(l);                  /* the old file gets what it was given */
    fd = open_log(l->path, err, sizeof(err));
    if (fd < 0) {
        log_at(LL_ERR, "accesslog", 0, "%s; still writing to the file it had", err);
        return -1;
    }
    close(l->fd);
    l->fd = fd;
    log_at(LL_INFO, "accesslog", 0, "%s reopened", l->path);
    return 0;
}

const char *
px_access_log_path(const struct px_access_log *l)
{
    return l->path;
}

void
px_access_log_flush(struct px_access_log *l)
{
    write_pending(l);
}

unsigned
px_sockaddr_port(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)sa)->sin_port);
    if (sa->sa_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    return 0;
}

const char *
px_access_client(const char *ip, unsigned port, char *buf, size_t len)
{
    if (strchr(ip, ':') != NULL)
        snprintf(buf, len, "[%s]:%u", ip, port);
    else
        snprintf(buf, len, "%s:%u", ip, port);
    return buf;
}

/* Appends <s> (or "-" when NULL or empty) as one value: bytes that would
 * break the line's key=value syntax (space, quote, backslash, control and
 * non-ASCII bytes) become \xHH. */
static void
add_value(struct evbuffer *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    char esc[4] = { '\\', 'x', 0, 0 };
    size_t i, run = 0;

    if (s == NULL || len == 0) {
        evbuffer_add(out, "-", 1);
        return;
    }
    for (i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];

        if (ch > 0x20 && ch < 0x7f && ch != '"' && ch != '\\')
            continue;
        evbuffer_add(out, s + run, i - run);
        esc[2] = hex[ch >> 4];
        esc[3] = hex[ch & 15];
        evbuffer_add(out, esc, 4);
        run = i + 1;
    }
    evbuffer_add(out, s + run, len - run);
}

static void
add_str(struct evbuffer *out, const char *key, const char *s)
{
    evbuffer_add_printf(out, " %s=", key);
    add_value(out, s, s != NULL ? strlen(s) : 0);
}

void
px_access_log_write(struct px_access_log *l, const struct px_access_rec *r)
{
    struct timespec ts;
    struct tm tm;
    size_t plen = r->path_len;

    clock_gettime(CLOCK_REALTIME, &ts);
    if (ts.tv_sec != l->ts_sec) {
        gmtime_r(&ts.tv_sec, &tm);
        strftime(l->ts_prefix, sizeof(l->ts_prefix), "%Y-%m-%dT%H:%M:%S", &tm);
        l->ts_sec = ts.tv_sec;
    }
    evbuffer_add_printf(l->buf, "ts=%s.%03ldZ conn=%llu", l->ts_prefix,
                        (long)(ts.tv_nsec / 1000000), (unsigned long long)r->conn);
    add_str(l->buf, "service", r->service);
    add_str(l->buf, "client", r->client);
    add_str(l->buf, "method", r->method);
    evbuffer_add(l->buf, " path=", 6);
    if (plen > PX_ACCESS_LOG_PATH_MAX)
        plen = PX_ACCESS_LOG_PATH_MAX;
    add_value(l->buf, r->path, r->path != NULL ? plen : 0);
    if (plen < r->path_len)
        evbuffer_add(l->buf, "...", 3);
    evbuffer_add_printf(l->buf, " status=%d", r->status);
    add_str(l->buf, "side", r->side);
    add_str(l->buf, "server", r->server);
    add_str(l->buf, "why", r->why);
    evbuffer_add_printf(l->buf, " bytes_in=%llu bytes_out=%llu duration_ms=%llu.%03llu",
                        (unsigned long long)r->bytes_in, (unsigned long long)r->bytes_out,
                        (unsigned long long)(r->duration_us / 1000u),
                        (unsigned long long)(r->duration_us % 1000u));
    add_str(l->buf, "error", r->error);
    add_str(l->buf, "sni", r->sni);
    add_str(l->buf, "client_cert", r->client_cert);
    evbuffer_add(l->buf, "\n", 1);
    l->pending_lines++;

    if (evbuffer_get_length(l->buf) >= PX_ACCESS_LOG_FLUSH_BYTES) {
        write_pending(l);
    } else if (!l->flush_pending) {
        /* runs once the callbacks of this loop iteration are done */
        event_active(l->flush_ev, 0, 0);
        l->flush_pending = true;
    }
}
