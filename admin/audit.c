/*
 * audit: see audit.h. Appends are rare (one per change) and must be
 * durable, so each one opens, writes one line, fsyncs and closes: no
 * descriptor is kept across log rotation. A line goes in whole or not at
 * all: a short write (a full disk) is cut back to where the file ended, and
 * a file found ending in the middle of a line (a crash, or a cut that
 * failed) has that partial line moved aside before anything is appended, so
 * an entry is never glued onto a broken one. Readers go backwards from the
 * end in fixed blocks, because the log grows forever and an operator asks
 * for the last few entries.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "admin/audit.h"
#include "lib/log.h"
#include "lib/fs.h"
#include "lib/text.h"
#include "lib/xmalloc.h"

#define TAIL_BLOCK     (64u * 1024)          /* bytes read per step backwards */
#define TAIL_LINE_MAX  (1024u * 1024)        /* a longer line is corrupt */
#define AUDIT_DUMP_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(15))
#define ENTRY_START    "{\"ts\":"            /* how every entry we write begins */
#define TORN_PREVIEW   1024                  /* bytes of a torn line quoted in the log */

json_t *
adm_percent_json(uint32_t bp)
{
    if (bp % 100 == 0)
        return json_integer((json_int_t)(bp / 100));
    return json_real((double)bp / 100.0);
}

/* Writes the current real time as RFC 3339 UTC with milliseconds. */
static void
format_ts(char *buf, size_t len)
{
    struct timespec ts;
    struct tm tm;
    size_t k;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    k = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + k, len - k, ".%03ldZ", ts.tv_nsec / 1000000L);
}

static adm_audit_observer_fn observer;
static void *observer_arg;
static adm_audit_barrier_fn *barrier;
static void *barrier_arg;

void
adm_audit_set_barrier(adm_audit_barrier_fn *fn, void *arg)
{
    barrier = fn;
    barrier_arg = arg;
}

void *
adm_audit_barrier_arg(void)
{
    return barrier_arg;
}

void
adm_audit_set_observer(adm_audit_observer_fn fn, void *arg)
{
    observer = fn;
    observer_arg = arg;
}

char *
adm_audit_format(const struct adm_audit_entry *e, size_t *lenp, char *err, size_t errlen)
{
    json_t *o = NULL;
    char ts[40], *text = NULL;
    size_t len;

    format_ts(ts, sizeof(ts));
    o = json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:s, s:I}",
                  "ts", ts, "service", e->service,
                  "actor", e->actor != NULL ? e->actor : "",
                  "action", e->action,
                  "from", e->from_text != NULL ? json_string(e->from_text)
                                               : adm_percent_json(e->from_bp),
                  "to", e->to_text != NULL ? json_string(e->to_text)
                                           : adm_percent_json(e->to_bp),
                  "reason", e->reason != NULL ? e->reason : "",
                  "generation", (json_int_t)e->generation);
    if (o == NULL) {
        text_errf(err, errlen, "cannot build the audit entry");
        goto out;
    }
    if (e->pid > 0 && json_object_set_new(o, "pid", json_integer((json_int_t)e->pid)) != 0) {
        text_errf(err, errlen, "cannot build the audit entry");
        goto out;
    }
    if (e->figures != NULL && json_object_set(o, "figures", e->figures) != 0) {
        text_errf(err, errlen, "cannot build the audit entry");
        goto out;
    }
    text = json_dumps(o, AUDIT_DUMP_FLAGS);
    if (text == NULL) {
        text_errf(err, errlen, "cannot serialise the audit entry");
        goto out;
    }
    /* Terminate the line in the same buffer: one write(2) per line. */
    len = strlen(text);
    text = xrealloc(text, len + 2);
    text[len++] = '\n';
    text[len] = '\0';
    *lenp = len;
    if (observer != NULL)
        observer(observer_arg, e->action, text, len);
out:
    json_decref(o);
    return text;
}

/* Reads exactly <len> bytes of <fd> at <off>. 0, or -1 (errno; EIO when the
 * file is shorter). */
static int
pread_full(int fd, char *buf, size_t len, off_t off)
{
    ssize_t r;

    while (len > 0) {
        r = pread(fd, buf, len, off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            if (r == 0)
                errno = EIO;
            return -1;
        }
        buf += r;
        len -= (size_t)r;
        off += r;
    }
    return 0;
}

/* Writes all <len> bytes of <s> to <fd>. Returns the bytes written: <len>,
 * or fewer with errno set. */
static size_t
write_full(int fd, const char *s, size_t len)
{
    size_t done = 0;
    ssize_t w;

    while (done < len) {
        w = write(fd, s + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = ENOSPC;
            break;
        }
        done += (size_t)w;
    }
    return done;
}

/* Appends <len> bytes <s> (and a newline when <s> lacks one) to
 * <file>.torn, where the audit log's torn and broken lines are kept. 0, or
 * -1 with errno. */
static int
move_aside(const char *file, const char *s, size_t len)
{
    char path[4096];
    int fd, rc = 0;

    if (snprintf(path, sizeof(path), "%s.torn", file) >= (int)sizeof(path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    if (write_full(fd, s, len) != len
        || (len > 0 && s[len - 1] != '\n' && write_full(fd, "\n", 1) != 1)
        || fsync(fd) != 0)
        rc = -1;
    close(fd);
    return rc;
}

/* The offset where the line holding byte <end> - 1 starts: just after the
 * newline before it, 0 when there is none. -1 on a read error. */
static off_t
line_start(int fd, off_t end)
{
    char buf[4096];
    off_t pos = end;
    size_t blk, i;

    while (pos > 0) {
        blk = pos < (off_t)sizeof(buf) ? (size_t)pos : sizeof(buf);
        if (pread_full(fd, buf, blk, pos - (off_t)blk) != 0)
            return -1;
        for (i = blk; i > 0; i--) {
            if (buf[i - 1] == '\n')
                return pos - (off_t)blk + (off_t)i;
        }
        pos -= (off_t)blk;
    }
    return 0;
}

/* A JSON object parsed from the line <s>/<len>, or, when the line is not
 * one, from its last part that starts like an entry and is one (a torn
 * entry with a whole one appended to it by an older version): then
 * <*salvaged> is the offset of that part. NULL when neither parses. */
static json_t *
parse_line(const char *s, size_t len, size_t *salvaged, json_error_t *je)
{
    json_t *o = json_loadb(s, len, 0, je);
    size_t k, n = strlen(ENTRY_START);

    *salvaged = 0;
    if (json_is_object(o))
        return o;
    json_decref(o);
    for (k = len >= n ? len - n : 0; k > 0; k--) {
        if (memcmp(s + k, ENTRY_START, n) != 0)
            continue;
        o = json_loadb(s + k, len - k, 0, NULL);
        if (json_is_object(o)) {
            *salvaged = k;
            return o;
        }
        json_decref(o);
        break;                         /* the last entry start decides */
    }
    return NULL;
}

/* Cuts the broken last line of the audit log <fd> (<file>, <size> bytes)
 * off: a line without its newline always; with <check_json>, also a last
 * line that is not a JSON object (keeping the whole entry at its end, if
 * there is one, as a line of its own). The cut bytes go to <file>.torn and
 * are quoted in a warning. Returns the file's size afterwards, or -1 with
 * <err> set. */
static off_t
repair_tail(int fd, const char *file, off_t size, bool check_json, char *err, size_t errlen)
{
    char last, *torn = NULL;
    off_t start;
    size_t len, salvaged = 0;
    json_t *o = NULL;
    bool whole;
    int aside;

    if (size == 0)
        return 0;
    if (pread_full(fd, &last, 1, size - 1) != 0)
        return text_errf(err, errlen, "cannot read %s: %s", file, strerror(errno));
    whole = last == '\n';
    if (whole && !check_json)
        return size;
    start = line_start(fd, whole ? size - 1 : size);
    if (start < 0)
        return text_errf(err, errlen, "cannot read %s: %s", file, strerror(errno));
    len = (size_t)(size - start);
    if (len > TAIL_LINE_MAX) {
        /* not worth keeping: cut, and say how long it was */
        torn = NULL;
    } else {
        torn = xmalloc(len + 1);
        if (pread_full(fd, torn, len, start) != 0) {
            free(torn);
            return text_errf(err, errlen, "cannot read %s: %s", file, strerror(errno));
        }
        torn[len] = '\0';
        if (whole) {
            o = parse_line(torn, len - 1, &salvaged, NULL);
            if (o != NULL && salvaged == 0) {
                json_decref(o);        /* a good last line: nothing to do */
                free(torn);
                return size;
            }
            json_decref(o);
        }
    }
    aside = torn != NULL ? move_aside(file, torn, len) : -1;
    log_at(LL_WARN, "audit", 0, "%s: the last line (byte %lld, %zu bytes) is %s: cut off, "
           "its bytes %s%s%s: %.*s", file, (long long)start, len,
           !whole ? "torn (no newline: a write that did not finish)"
                  : salvaged > 0 ? "a broken entry with a whole one after it"
                                 : "not a JSON object",
           aside == 0 ? "kept in " : "kept nowhere else", aside == 0 ? file : "",
           aside == 0 ? ".torn" : "",
           torn != NULL ? (int)(len < TORN_PREVIEW ? len : TORN_PREVIEW) : 0,
           torn != NULL ? torn : "");
    if (ftruncate(fd, start) != 0) {
        free(torn);
        return text_errf(err, errlen, "cannot cut the broken last line of %s: %s", file,
                         strerror(errno));
    }
    if (salvaged > 0 && (lseek(fd, start, SEEK_SET) != start
                         || write_full(fd, torn + salvaged, len - salvaged) != len - salvaged)) {
        /* whole or nothing: the entry is in .torn and in the warning above */
        if (ftruncate(fd, start) != 0) {
            free(torn);
            return text_errf(err, errlen, "cannot cut %s back: %s", file, strerror(errno));
        }
    } else if (salvaged > 0) {
        log_at(LL_WARN, "audit", 0, "%s: the whole entry at the end of that line is kept "
               "as a line of its own", file);
        start += (off_t)(len - salvaged);
    }
    free(torn);
    if (fsync(fd) != 0)
        return text_errf(err, errlen, "cannot fsync %s: %s", file, strerror(errno));
    return start;
}

/* adm_audit_write() under <append_mu>. */
static int
write_line(const char *file, const char *line, size_t len, char *err, size_t errlen)
{
    struct stat sb;
    off_t end;
    size_t done;
    int fd, e;

    if (len == 0 || line[len - 1] != '\n' || memchr(line, '\n', len - 1) != NULL)
        return text_errf(err, errlen, "an audit entry must be one line");
    if (fs_mkdir_parent(file, err, errlen) != 0)
        return -1;
    fd = open(file, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return text_errf(err, errlen, "cannot open %s: %s", file, strerror(errno));
    if (fstat(fd, &sb) != 0) {
        text_errf(err, errlen, "cannot stat %s: %s", file, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(sb.st_mode)) {
        text_errf(err, errlen, "%s: not a regular file", file);
        goto fail;
    }
    /* Never glue an entry onto a torn line (a crash, or a cut that failed). */
    end = repair_tail(fd, file, sb.st_size, false, err, errlen);
    if (end < 0)
        goto fail;
    done = write_full(fd, line, len);
    if (done != len || fsync(fd) != 0) {
        e = errno;
        /* Whole or nothing: a failed append leaves no trace, so that it can
         * be retried without a duplicate. The daemon is the log's only
         * writer, so <end> is still where its last line ends. */
        if (ftruncate(fd, end) != 0) {
            text_errf(err, errlen, "cannot write %s: %s (%zu of %zu bytes written); and "
                      "cannot cut the partial line back: %s", file, strerror(e), done, len,
                      strerror(errno));
        } else if (done != len) {
            text_errf(err, errlen, "cannot write %s: %s (%zu of %zu bytes written, cut "
                      "back)", file, strerror(e), done, len);
        } else {
            text_errf(err, errlen, "cannot fsync %s: %s (the entry was cut back)", file,
                      strerror(e));
        }
        fsync(fd);
        goto fail;
    }
    if (close(fd) != 0)
        return text_errf(err, errlen, "cannot close %s: %s", file, strerror(errno));
    return 0;
fail:
    close(fd);
    return -1;
}

/* The control plane's writer thread (admin/writer.h) appends the changes'
 * entries while the main loop may append an event's: one append at a time,
 * so that a cut back after a failed append never cuts another one. */
static pthread_mutex_t append_mu = PTHREAD_MUTEX_INITIALIZER;

int
adm_audit_write(const char *file, const char *line, size_t len, char *err, size_t errlen)
{
    int rc;

    pthread_mutex_lock(&append_mu);
    rc = write_line(file, line, len, err, errlen);
    pthread_mutex_unlock(&append_mu);
    return rc;
}

int
adm_audit_append(const char *file, const struct adm_audit_entry *e,
                 char *err, size_t errlen)
{
    size_t len = 0;
    char *line = adm_audit_format(e, &len, err, errlen);
    int rc;

    if (line == NULL)
        return -1;
    if (barrier != NULL)               /* the entries on their way go first */
        barrier(barrier_arg);
    rc = adm_audit_write(file, line, len, err, errlen);
    free(line);                        /* jansson's default allocator is malloc */
    return rc;
}

int
adm_audit_repair(const char *file, char *err, size_t errlen)
{
    struct stat sb;
    off_t end;
    int fd;

    fd = open(file, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : text_errf(err, errlen, "cannot open %s: %s", file,
                                               strerror(errno));
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        text_errf(err, errlen, "%s: %s", file,
                  S_ISREG(sb.st_mode) ? strerror(errno) : "not a regular file");
        close(fd);
        return -1;
    }
    end = repair_tail(fd, file, sb.st_size, true, err, errlen);
    close(fd);
    if (end < 0)
        return -1;
    return end != sb.st_size ? 1 : 0;
}

/* ---- reading backwards ---------------------------------------------------- */

struct scan {
    const char *file;
    adm_audit_visit_fn visit;
    void *arg;
    bool stop;
};

/* Considers the line <s>/<len> that starts at byte <off> of the file. */
static void
scan_line(struct scan *t, const char *s, size_t len, off_t off)
{
    json_t *o;
    json_error_t je;
    size_t salvaged;

    if (len == 0)
        return;
    o = parse_line(s, len, &salvaged, &je);
    if (o == NULL) {
        json_t *any = json_loadb(s, len, 0, &je);

        log_at(LL_WARN, "audit", 0, "%s: skipping corrupt line at byte %lld: %s",
               t->file, (long long)off, any == NULL ? je.text : "not a JSON object");
        json_decref(any);
        return;
    }
    if (salvaged > 0)
        log_at(LL_WARN, "audit", 0, "%s: line at byte %lld: skipping %zu bytes of a broken "
               "entry before a whole one", t->file, (long long)off, salvaged);
    if (t->visit(t->arg, o) != 0)
        t->stop = true;
    json_decref(o);
}

int
adm_audit_scan(const char *file, uint64_t max_bytes, adm_audit_visit_fn visit, void *arg,
               char *err, size_t errlen)
{
    struct scan t = { .file = file, .visit = visit, .arg = arg, .stop = false };
    char *buf = NULL;          /* bytes [pos, pos + len) of the file, unprocessed */
    size_t len = 0, cap = 0, i, blk;
    off_t pos;
    struct stat sb;
    bool overlong = false;     /* the line being assembled exceeds TAIL_LINE_MAX */
    int fd, rc = 0;

    fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        return text_errf(err, errlen, "cannot open %s: %s", file, strerror(errno));
    }
    if (fstat(fd, &sb) != 0) {
        text_errf(err, errlen, "cannot stat %s: %s", file, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(sb.st_mode)) {
        text_errf(err, errlen, "%s: not a regular file", file);
        goto fail;
    }
    pos = sb.st_size;

    while (!t.stop && pos > 0) {
        if (max_bytes > 0 && (uint64_t)(sb.st_size - pos) >= max_bytes) {
            rc = 1;                    /* read as far as allowed */
            break;
        }
        blk = (size_t)(pos < (off_t)TAIL_BLOCK ? pos : (off_t)TAIL_BLOCK);
        if (len + blk > cap) {
            cap = len + blk;
            buf = xrealloc(buf, cap);
        }
        /* Prepend the block: <len> stays small (one partial line at most). */
        memmove(buf + blk, buf, len);
        pos -= (off_t)blk;
        if (pread_full(fd, buf, blk, pos) != 0) {
            text_errf(err, errlen, "cannot read %s: %s", file,
                      errno == EIO ? "file shrank while reading" : strerror(errno));
            goto fail;
        }
        len += blk;

        /* Every line after a newline in the buffer is complete. */
        for (i = len; i > 0 && !t.stop; i--) {
            if (buf[i - 1] != '\n')
                continue;
            if (overlong) {
                log_at(LL_WARN, "audit", 0,
                       "%s: skipping corrupt line at byte %lld: longer than %u bytes",
                       file, (long long)(pos + (off_t)i), TAIL_LINE_MAX);
                overlong = false;
            } else {
                scan_line(&t, buf + i, len - i, pos + (off_t)i);
            }
            len = i - 1;
        }
        if (len > TAIL_LINE_MAX) {
            overlong = true;           /* drop its bytes, keep scanning for its start */
            len = 0;
        }
    }
    /* The start of the file is the start of the oldest line. */
    if (pos == 0 && !t.stop && rc == 0) {
        if (overlong)
            log_at(LL_WARN, "audit", 0,
                   "%s: skipping corrupt line at byte 0: longer than %u bytes",
                   file, TAIL_LINE_MAX);
        else
            scan_line(&t, buf, len, 0);
    }
    free(buf);
    close(fd);
    return rc;

fail:
    free(buf);
    close(fd);
    return -1;
}

/* Tail state: entries found so far, newest first. */
struct tail {
    const char *service;       /* filter, or NULL */
    unsigned want;
    json_t *found;             /* owned: array, newest first */
};

static int
tail_visit(void *arg, json_t *o)
{
    struct tail *t = arg;
    json_t *svc;

    if (t->service != NULL) {
        svc = json_object_get(o, "service");
        if (!json_is_string(svc) || strcmp(json_string_value(svc), t->service) != 0)
            return 0;
    }
    json_array_append(t->found, o);
    return json_array_size(t->found) >= t->want;
}

json_t *
adm_audit_tail(const char *file, unsigned n, const char *service,
               char *err, size_t errlen)
{
    struct tail t = { .service = service, .want = n, .found = NULL };
    json_t *out;
    size_t i;

    if (n == 0 || n > ADM_AUDIT_TAIL_MAX) {
        text_errf(err, errlen, "n must be 1..%u", ADM_AUDIT_TAIL_MAX);
        return NULL;
    }
    t.found = json_array();
    out = json_array();
    if (t.found == NULL || out == NULL) {
        text_errf(err, errlen, "out of memory");
        goto fail;
    }
    if (adm_audit_scan(file, 0, tail_visit, &t, err, errlen) < 0)
        goto fail;
    for (i = json_array_size(t.found); i > 0; i--)
        json_array_append(out, json_array_get(t.found, i - 1));
    json_decref(t.found);
    return out;
fail:
    json_decref(t.found);
    json_decref(out);
    return NULL;
}
