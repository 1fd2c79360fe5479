/*
 * audit: see audit.h. Appends are rare (one per change) and must be
 * durable, so each one opens, writes one line, fsyncs and closes: no
 * descriptor is kept across log rotation. Tails read the file from its end
 * in fixed blocks, because the log grows forever and an operator asks for
 * the last few entries.
 */
#include <errno.h>
#include <fcntl.h>
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
#include "admin/store.h"
#include "lib/fs.h"
#include "lib/text.h"
#include "lib/xmalloc.h"

#define TAIL_BLOCK     (64u * 1024)          /* bytes read per step backwards */
#define TAIL_LINE_MAX  (1024u * 1024)        /* a longer line is corrupt */
#define AUDIT_DUMP_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(15))

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

int
adm_audit_append(const char *file, const struct adm_audit_entry *e,
                 char *err, size_t errlen)
{
    json_t *o = NULL;
    char ts[40], *text = NULL;
    size_t len;
    ssize_t w;
    int fd = -1, rc = -1;

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

    if (fs_mkdir_parent(file, err, errlen) != 0)
        goto out;
    fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        text_errf(err, errlen, "cannot open %s: %s", file, strerror(errno));
        goto out;
    }
    do {
        w = write(fd, text, len);
    } while (w < 0 && errno == EINTR);
    if (w < 0) {
        text_errf(err, errlen, "cannot write %s: %s", file, strerror(errno));
        goto out;
    }
    if ((size_t)w != len) {
        text_errf(err, errlen, "short write to %s (%zd of %zu bytes)", file, w, len);
        goto out;
    }
    if (fsync(fd) != 0) {
        text_errf(err, errlen, "cannot fsync %s: %s", file, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    if (fd >= 0 && close(fd) != 0 && rc == 0)
        rc = text_errf(err, errlen, "cannot close %s: %s", file, strerror(errno));
    free(text);                        /* jansson's default allocator is malloc */
    json_decref(o);
    return rc;
}

/* Tail state: entries found so far, newest first. */
struct tail {
    const char *file;
    const char *service;       /* filter, or NULL */
    unsigned want;
    json_t *found;             /* owned: array, newest first */
};

/* Considers the line <s>/<len> that starts at byte <off> of the file. */
static void
tail_line(struct tail *t, const char *s, size_t len, off_t off)
{
    json_t *o, *svc;
    json_error_t je;

    if (len == 0)
        return;
    o = json_loadb(s, len, 0, &je);
    if (o == NULL || !json_is_object(o)) {
        log_at(LL_WARN, "audit", 0, "%s: skipping corrupt line at byte %lld: %s",
               t->file, (long long)off, o == NULL ? je.text : "not a JSON object");
        json_decref(o);
        return;
    }
    if (t->service != NULL) {
        svc = json_object_get(o, "service");
        if (!json_is_string(svc) || strcmp(json_string_value(svc), t->service) != 0) {
            json_decref(o);
            return;
        }
    }
    json_array_append_new(t->found, o);
}

json_t *
adm_audit_tail(const char *file, unsigned n, const char *service,
               char *err, size_t errlen)
{
    struct tail t = { .file = file, .service = service, .want = n, .found = NULL };
    char *buf = NULL;          /* bytes [pos, pos + len) of the file, unprocessed */
    size_t len = 0, cap = 0, i, blk;
    off_t pos;
    struct stat sb;
    bool overlong = false;     /* the line being assembled exceeds TAIL_LINE_MAX */
    json_t *out = NULL;
    ssize_t r;
    int fd = -1;

    if (n == 0 || n > ADM_AUDIT_TAIL_MAX) {
        text_errf(err, errlen, "n must be 1..%u", ADM_AUDIT_TAIL_MAX);
        return NULL;
    }
    t.found = json_array();
    if (t.found == NULL) {
        text_errf(err, errlen, "out of memory");
        return NULL;
    }
    fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            goto done;
        text_errf(err, errlen, "cannot open %s: %s", file, strerror(errno));
        goto fail;
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

    while (json_array_size(t.found) < t.want && pos > 0) {
        blk = (size_t)(pos < (off_t)TAIL_BLOCK ? pos : (off_t)TAIL_BLOCK);
        if (len + blk > cap) {
            cap = len + blk;
            buf = xrealloc(buf, cap);
        }
        /* Prepend the block: <len> stays small (one partial line at most). */
        memmove(buf + blk, buf, len);
        pos -= (off_t)blk;
        for (i = 0; i < blk; i += (size_t)r) {
            r = pread(fd, buf + i, blk - i, pos + (off_t)i);
            if (r < 0 && errno == EINTR) {
                r = 0;
                continue;
            }
            if (r <= 0) {
                text_errf(err, errlen, "cannot read %s: %s", file,
                          r < 0 ? strerror(errno) : "file shrank while reading");
                goto fail;
            }
        }
        len += blk;

        /* Every line after a newline in the buffer is complete. */
        for (i = len; i > 0 && json_array_size(t.found) < t.want; i--) {
            if (buf[i - 1] != '\n')
                continue;
            if (overlong) {
                log_at(LL_WARN, "audit", 0,
                       "%s: skipping corrupt line at byte %lld: longer than %u bytes",
                       file, (long long)(pos + (off_t)i), TAIL_LINE_MAX);
                overlong = false;
            } else {
                tail_line(&t, buf + i, len - i, pos + (off_t)i);
            }
            len = i - 1;
        }
        if (len > TAIL_LINE_MAX) {
            overlong = true;           /* drop its bytes, keep scanning for its start */
            len = 0;
        }
    }
    /* The start of the file is the start of the oldest line. */
    if (pos == 0 && json_array_size(t.found) < t.want) {
        if (overlong)
            log_at(LL_WARN, "audit", 0,
                   "%s: skipping corrupt line at byte 0: longer than %u bytes",
                   file, TAIL_LINE_MAX);
        else
            tail_line(&t, buf, len, 0);
    }

done:
    out = json_array();
    if (out == NULL) {
        text_errf(err, errlen, "out of memory");
        goto fail;
    }
    for (i = json_array_size(t.found); i > 0; i--)
        json_array_append(out, json_array_get(t.found, i - 1));
    json_decref(t.found);
    free(buf);
    if (fd >= 0)
        close(fd);
    return out;

fail:
    json_decref(t.found);
    free(buf);
    if (fd >= 0)
        close(fd);
    return NULL;
}
