/*
 * store: see store.h. The file is tiny (one entry per service) and written
 * only on operator or automatic changes, so it is read and written whole,
 * with blocking calls, from the control plane. Durability matters more than
 * speed here: every save fsyncs the file and its directory.
 *
 * This file also owns the state name table of admin/control.h, because the
 * state file is what stores the names.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <jansson.h>

#include "admin/state.h"
#include "admin/store.h"
#include "lib/fs.h"
#include "lib/log.h"
#include "lib/text.h"
#include "lib/xmalloc.h"
#include "health/plan.h"

#define STORE_MAX_BYTES (4u * 1024 * 1024)   /* a larger state file is corrupt */

/* Reads all of <fd> into a new NUL-terminated buffer. Returns it with its
 * length in <*len>, or NULL with errno set (EFBIG when over the limit). */
static char *
read_all(int fd, size_t *len)
{
    size_t cap = 4096, n = 0;
    char *buf = xmalloc(cap);
    ssize_t r;

    for (;;) {
        if (n + 1 >= cap) {
            if (cap >= STORE_MAX_BYTES) {
                free(buf);
                errno = EFBIG;
                return NULL;
            }
            cap *= 2;
            buf = xrealloc(buf, cap);
        }
        r = read(fd, buf + n, cap - n - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;

            free(buf);
            errno = e;
            return NULL;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* Checks the "plan" object <j> of services[<i>] and fills the plan fields of
 * <e>. Returns 0 or -1 with <err> set. */
static int
parse_plan(json_t *j, size_t i, struct adm_store_entry *e, char *err, size_t errlen)
{
    const char *key;
    json_t *v;
    json_int_t iv;
    int st;
    unsigned seen = 0;

    if (!json_is_object(j))
        return text_errf(err, errlen, "services[%zu].plan: must be an object", i);
    json_object_foreach(j, key, v) {
        if (strcmp(key, "state") == 0) {
            if (!json_is_string(v))
                return text_errf(err, errlen, "services[%zu].plan.state: must be a string",
                                 i);
            st = hl_plan_state_from_name(json_string_value(v));
            if (st < 0)
                return text_errf(err, errlen,
                                 "services[%zu].plan.state: unknown plan state \"%s\"",
                                 i, json_string_value(v));
            e->plan_state = st;
            seen |= 1;
            continue;
        }
        if (strcmp(key, "step") != 0 && strcmp(key, "baked_ms") != 0
            && strcmp(key, "requests") != 0)
            return text_errf(err, errlen, "services[%zu].plan: unknown key \"%s\"", i, key);
        if (!json_is_integer(v))
            return text_errf(err, errlen, "services[%zu].plan.%s: must be an integer",
                             i, key);
        iv = json_integer_value(v);
        if (iv < 0)
            return text_errf(err, errlen, "services[%zu].plan.%s: must be >= 0, got %lld",
                             i, key, (long long)iv);
        if (strcmp(key, "step") == 0) {
            if (iv >= HL_PLAN_MAX_STEPS)
                return text_errf(err, errlen,
                                 "services[%zu].plan.step: must be 0..%d, got %lld",
                                 i, HL_PLAN_MAX_STEPS - 1, (long long)iv);
            e->plan_step = (unsigned)iv;
            seen |= 2;
        } else if (strcmp(key, "baked_ms") == 0) {
            e->plan_baked_ms = (uint64_t)iv;
            seen |= 4;
        } else {
            e->plan_requests = (uint64_t)iv;
            seen |= 8;
        }
    }
    if (seen != 15) {
        const char *missing = !(seen & 1) ? "state" : !(seen & 2) ? "step"
                            : !(seen & 4) ? "baked_ms" : "requests";

        return text_errf(err, errlen, "services[%zu].plan: missing \"%s\"", i, missing);
    }
    e->has_plan = true;
    return 0;
}

/* Checks one element of "services" and fills <e>. <i> is its index, for
 * messages. Returns 0 or -1 with <err> set. */
static int
parse_entry(json_t *j, size_t i, struct adm_store_entry *e, char *err, size_t errlen)
{
    const char *key;
    json_t *v;
    json_int_t iv;
    int st;
    unsigned seen = 0;

    if (!json_is_object(j))
        return text_errf(err, errlen, "services[%zu]: must be an object", i);
    json_object_foreach(j, key, v) {
        if (strcmp(key, "name") == 0) {
            const char *s = json_string_value(v);

            if (s == NULL)
                return text_errf(err, errlen, "services[%zu].name: must be a string", i);
            if (s[0] == '\0' || strlen(s) >= sizeof(e->name))
                return text_errf(err, errlen,
                                 "services[%zu].name: must be 1..%zu bytes long",
                                 i, sizeof(e->name) - 1);
            memcpy(e->name, s, strlen(s) + 1);
            seen |= 1;
        } else if (strcmp(key, "weight_bp") == 0) {
            if (!json_is_integer(v))
                return text_errf(err, errlen,
                                 "services[%zu].weight_bp: must be an integer", i);
            iv = json_integer_value(v);
            if (iv < 0 || iv > 10000)
                return text_errf(err, errlen,
                                 "services[%zu].weight_bp: must be 0..10000, got %lld",
                                 i, (long long)iv);
            e->weight_bp = (uint32_t)iv;
            seen |= 2;
        } else if (strcmp(key, "state") == 0) {
            if (!json_is_string(v))
                return text_errf(err, errlen, "services[%zu].state: must be a string", i);
            st = adm_state_from_name(json_string_value(v));
            if (st < 0)
                return text_errf(err, errlen, "services[%zu].state: unknown state \"%s\"",
                                 i, json_string_value(v));
            e->state = st;
            seen |= 4;
        } else if (strcmp(key, "generation") == 0) {
            if (!json_is_integer(v))
                return text_errf(err, errlen,
                                 "services[%zu].generation: must be an integer", i);
            iv = json_integer_value(v);
            if (iv < 0)
                return text_errf(err, errlen,
                                 "services[%zu].generation: must be >= 0, got %lld",
                                 i, (long long)iv);
            e->generation = (uint64_t)iv;
            seen |= 8;
        } else if (strcmp(key, "plan") == 0) {
            if (parse_plan(v, i, e, err, errlen) != 0)
                return -1;
        } else if (strcmp(key, "audited") == 0) {
            if (!json_is_integer(v) || json_integer_value(v) < 0)
                return text_errf(err, errlen,
                                 "services[%zu].audited: must be an integer >= 0", i);
            e->audited = (uint64_t)json_integer_value(v);
            e->has_audited = true;
        } else {
            return text_errf(err, errlen, "services[%zu]: unknown key \"%s\"", i, key);
        }
    }
    if (seen != 15) {
        const char *missing = !(seen & 1) ? "name" : !(seen & 2) ? "weight_bp"
                            : !(seen & 4) ? "state" : "generation";

        return text_errf(err, errlen, "services[%zu]: missing \"%s\"", i, missing);
    }
    if (e->has_audited && e->audited > e->generation)
        return text_errf(err, errlen, "services[%zu].audited: %llu is above the generation "
                         "%llu", i, (unsigned long long)e->audited,
                         (unsigned long long)e->generation);
    return 0;
}

/* Parses the state document <text>/<len> into a new array <*out> of <*n>
 * entries (NULL when 0). Returns 0, or -1 with <err> set and nothing
 * allocated. */
static int
parse_doc(const char *text, size_t len, struct adm_store_entry **out, unsigned *n,
          char *err, size_t errlen)
{
    size_t i, k;
    json_t *root = NULL, *v, *svcs = NULL;
    json_error_t je;
    const char *key;
    struct adm_store_entry *e = NULL;
    bool has_version = false;

    *out = NULL;
    *n = 0;
    root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (root == NULL) {
        text_errf(err, errlen, "bad JSON at line %d, column %d: %s",
                  je.line, je.column, je.text);
        goto fail;
    }
    if (!json_is_object(root)) {
        text_errf(err, errlen, "must be a JSON object");
        goto fail;
    }
    json_object_foreach(root, key, v) {
        if (strcmp(key, "version") == 0) {
            if (!json_is_integer(v)) {
                text_errf(err, errlen, "version: must be an integer");
                goto fail;
            }
            if (json_integer_value(v) != ADM_STORE_VERSION) {
                text_errf(err, errlen, "unsupported version %lld (expected %d)",
                          (long long)json_integer_value(v), ADM_STORE_VERSION);
                goto fail;
            }
            has_version = true;
        } else if (strcmp(key, "services") == 0) {
            if (!json_is_array(v)) {
                text_errf(err, errlen, "services: must be an array");
                goto fail;
            }
            svcs = v;
        } else {
            text_errf(err, errlen, "unknown key \"%s\"", key);
            goto fail;
        }
    }
    if (!has_version || svcs == NULL) {
        text_errf(err, errlen, "missing \"%s\"", has_version ? "services" : "version");
        goto fail;
    }
    if (json_array_size(svcs) > 0) {
        e = xcalloc(json_array_size(svcs), sizeof(*e));
        json_array_foreach(svcs, i, v) {
            if (parse_entry(v, i, &e[i], err, errlen) != 0)
                goto fail;
            for (k = 0; k < i; k++) {
                if (strcmp(e[k].name, e[i].name) == 0) {
                    text_errf(err, errlen, "services[%zu]: duplicate service \"%s\"",
                              i, e[i].name);
                    goto fail;
                }
            }
        }
    }
    *out = e;
    *n = (unsigned)json_array_size(svcs);
    json_decref(root);
    return 0;

fail:
    free(e);
    json_decref(root);                 /* NULL-safe */
    return -1;
}

int
adm_store_load(const char *file, struct adm_store_entry **out, unsigned *n,
               char *err, size_t errlen)
{
    int fd, rc;
    char *text;
    size_t len = 0;

    *out = NULL;
    *n = 0;
    fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        return text_errf(err, errlen, "cannot open: %s", strerror(errno));
    }
    text = read_all(fd, &len);
    close(fd);
    if (text == NULL)
        return text_errf(err, errlen, "cannot read: %s", errno == EFBIG
                         ? "larger than any state file could be" : strerror(errno));
    rc = parse_doc(text, len, out, n, err, errlen);
    free(text);
    return rc;
}

/* Writes all <len> bytes of <buf> to <fd>. Returns 0 or -1 with errno. */
static int
write_all(int fd, const char *buf, size_t len)
{
    ssize_t w;

    while (len > 0) {
        w = write(fd, buf, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Adds the "plan" object of <e> to its entry object <o>. 0, or -1 when the
 * plan fields are out of range. */
static int
store_plan(json_t *o, const struct adm_store_entry *e)
{
    json_t *p;

    if (e->plan_state < 0 || e->plan_state >= HL_PLAN__COUNT
        || e->plan_step >= HL_PLAN_MAX_STEPS || e->plan_baked_ms > (uint64_t)INT64_MAX
        || e->plan_requests > (uint64_t)INT64_MAX)
        return -1;
    p = json_pack("{s:s, s:I, s:I, s:I}", "state", hl_plan_state_names[e->plan_state],
                  "step", (json_int_t)e->plan_step,
                  "baked_ms", (json_int_t)e->plan_baked_ms,
                  "requests", (json_int_t)e->plan_requests);
    if (p == NULL)
        return -1;
    return json_object_set_new(o, "plan", p);
}

/* The state document of the <n> entries <e> as new text (JSON_INDENT(2) for
 * the state file, compact for the journal), or NULL with <err> set. */
static char *
build_doc(const struct adm_store_entry *e, unsigned n, size_t flags, char *err, size_t errlen)
{
    json_t *root, *svcs, *o;
    char *text = NULL;
    unsigned i;

    root = json_pack("{s:i, s:[]}", "version", ADM_STORE_VERSION, "services");
    svcs = json_object_get(root, "services");   /* borrowed from <root> */
    if (root == NULL || svcs == NULL) {
        text_errf(err, errlen, "cannot build the state document");
        goto out;
    }
    for (i = 0; i < n; i++) {
        if (e[i].state < 0 || e[i].state >= ADM_ST__COUNT || e[i].weight_bp > 10000
            || memchr(e[i].name, '\0', sizeof(e[i].name)) == NULL
            || (e[i].has_audited && e[i].audited > e[i].generation)) {
            text_errf(err, errlen, "entry %u (%.63s) is out of range", i, e[i].name);
            goto out;
        }
        o = json_pack("{s:s, s:I, s:s, s:I}", "name", e[i].name,
                      "weight_bp", (json_int_t)e[i].weight_bp,
                      "state", adm_state_names[e[i].state],
                      "generation", (json_int_t)e[i].generation);
        if (o != NULL && e[i].has_audited
            && json_object_set_new(o, "audited", json_integer((json_int_t)e[i].audited)) != 0) {
            json_decref(o);
            o = NULL;
        }
        if (o != NULL && e[i].has_plan && store_plan(o, &e[i]) != 0) {
            json_decref(o);
            text_errf(err, errlen, "entry %u (%.63s): plan is out of range", i, e[i].name);
            goto out;
        }
        if (o == NULL || json_array_append_new(svcs, o) != 0) {
            text_errf(err, errlen, "cannot build the state document");
            goto out;
        }
    }
    text = json_dumps(root, flags);
    if (text == NULL)
        text_errf(err, errlen, "cannot serialise the state document");
out:
    json_decref(root);
    return text;
}

/* <file>.tmp.<pid>: the temporary name of every replacement of <file> (a
 * new string). adm_store_clean_tmp() recognises exactly this pattern. */
static char *
tmp_name(const char *file)
{
    size_t len = strlen(file) + 32;
    char *tmp = xmalloc(len);

    snprintf(tmp, len, "%s.tmp.%ld", file, (long)getpid());
    return tmp;
}

/* Replaces <file> atomically with the <len> bytes <data> (mode 0600):
 * temporary file, fsync, rename, fsync of the directory. 0, or -1 with
 * <err> set; the temporary file never stays behind. */
static int
replace_file(const char *file, const char *data, size_t len, char *err, size_t errlen)
{
    char *tmp = NULL, *dir = NULL;
    int fd = -1, dfd = -1;

    if (fs_mkdir_parent(file, err, errlen) != 0)
        return -1;
    tmp = tmp_name(file);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        text_errf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
        free(tmp);
        tmp = NULL;                    /* nothing to unlink */
        goto fail;
    }
    if (write_all(fd, data, len) != 0) {
        text_errf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
        goto fail;
    }
    if (fsync(fd) != 0) {
        text_errf(err, errlen, "cannot fsync %s: %s", tmp, strerror(errno));
        goto fail;
    }
    if (close(fd) != 0) {
        fd = -1;
        text_errf(err, errlen, "cannot close %s: %s", tmp, strerror(errno));
        goto fail;
    }
    fd = -1;
    if (rename(tmp, file) != 0) {
        text_errf(err, errlen, "cannot rename %s to %s: %s", tmp, file, strerror(errno));
        goto fail;
    }
    free(tmp);
    tmp = NULL;                        /* renamed: nothing left to unlink */

    /* The rename is durable only once the directory entry is on disk. */
    dir = fs_dir_of(file);
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || (fsync(dfd) != 0 && errno != EINVAL)) {
        text_errf(err, errlen, "cannot fsync directory %s: %s", dir, strerror(errno));
        goto fail;
    }
    close(dfd);
    free(dir);
    return 0;

fail:
    if (dfd >= 0)
        close(dfd);
    if (fd >= 0)
        close(fd);
    if (tmp != NULL) {
        unlink(tmp);
        free(tmp);
    }
    free(dir);
    return -1;
}

int
adm_store_save(const char *file, const struct adm_store_entry *e, unsigned n,
               char *err, size_t errlen)
{
    size_t len;
    char *text = adm_store_format(e, n, &len, err, errlen);
    int rc;

    if (text == NULL)
        return -1;
    rc = adm_store_write(file, text, len, err, errlen);
    free(text);
    return rc;
}

char *
adm_store_format(const struct adm_store_entry *e, unsigned n, size_t *len, char *err,
                 size_t errlen)
{
    char *text = build_doc(e, n, JSON_INDENT(2), err, errlen);

    if (text == NULL)
        return NULL;
    *len = strlen(text);
    text = xrealloc(text, *len + 2);
    text[(*len)++] = '\n';
    text[*len] = '\0';
    return text;
}

int
adm_store_write(const char *file, const char *text, size_t len, char *err, size_t errlen)
{
    return replace_file(file, text, len, err, errlen);
}

/* ---- the journal of unsaved state ---------------------------------------- */

#define JOURNAL_SUFFIX  ".pending"
#define JOURNAL_HEAD    96u            /* bytes of a slot's header line */
#define JOURNAL_MAGIC   "cutover-pending 1 "

/* <file>.pending as a new string. */
static char *
journal_name(const char *file)
{
    size_t len = strlen(file) + sizeof(JOURNAL_SUFFIX);
    char *j = xmalloc(len);

    snprintf(j, len, "%s%s", file, JOURNAL_SUFFIX);
    return j;
}

/* FNV-1a, 64 bits: detects a slot torn by a crash in the middle of its
 * write (not an adversary: the file is the daemon's own, mode 0600). */
static uint64_t
fnv1a64(const char *p, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL;

    while (len-- > 0) {
        h ^= (unsigned char)*p++;
        h *= 0x100000001b3ULL;
    }
    return h;
}

size_t
adm_store_journal_size(unsigned nsvcs)
{
    size_t slot = JOURNAL_HEAD + 1024 + (size_t)nsvcs * ADM_STORE_ENTRY_MAX;

    slot = (slot + 4095) / 4096 * 4096;
    return 2 * slot;
}

int
adm_store_journal_prepare(const char *file, unsigned nsvcs, char *err, size_t errlen)
{
    char *j = journal_name(file), *zeros;
    size_t need = adm_store_journal_size(nsvcs);
    struct stat sb;
    int rc;

    if (stat(j, &sb) == 0 && S_ISREG(sb.st_mode) && (size_t)sb.st_size >= need
        && sb.st_size % 2 == 0) {
        free(j);
        return 0;                      /* big enough: kept as it is */
    }
    /* Real bytes, not a hole: a write into them needs no free space later. */
    zeros = xcalloc(1, need);
    rc = replace_file(j, zeros, need, err, errlen);
    free(zeros);
    free(j);
    return rc;
}

int
adm_store_journal_write(const char *file, uint64_t seq, const struct adm_store_entry *e,
                        unsigned n, char *err, size_t errlen)
{
    char *j = journal_name(file), *doc = NULL, *buf = NULL;
    char head[JOURNAL_HEAD + 1];
    size_t len, slot;
    struct stat sb;
    ssize_t w;
    int fd = -1, rc = -1;

    doc = build_doc(e, n, JSON_COMPACT, err, errlen);
    if (doc == NULL)
        goto out;
    /* No O_CREAT: the journal exists only as the space reserved for it. */
    fd = open(j, O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        text_errf(err, errlen, "cannot open %s: %s", j, strerror(errno));
        goto out;
    }
    if (fstat(fd, &sb) != 0) {
        text_errf(err, errlen, "cannot stat %s: %s", j, strerror(errno));
        goto out;
    }
    slot = (size_t)sb.st_size / 2;
    len = strlen(doc);
    if (slot < JOURNAL_HEAD || len > slot - JOURNAL_HEAD) {
        text_errf(err, errlen, "%s: %zu bytes of state do not fit in its %zu-byte slots", j,
                  len, slot);
        goto out;
    }
    snprintf(head, sizeof(head), "%s%020llu %010zu %016llx", JOURNAL_MAGIC,
             (unsigned long long)seq, len, (unsigned long long)fnv1a64(doc, len));
    memset(head + strlen(head), ' ', JOURNAL_HEAD - strlen(head));
    head[JOURNAL_HEAD - 1] = '\n';
    buf = xmalloc(JOURNAL_HEAD + len);
    memcpy(buf, head, JOURNAL_HEAD);
    memcpy(buf + JOURNAL_HEAD, doc, len);
    /* The slots alternate with <seq>: a write torn by a crash spoils only
     * its own slot, never the other one's older record. */
    do {
        w = pwrite(fd, buf, JOURNAL_HEAD + len, (off_t)((seq % 2) * slot));
    } while (w < 0 && errno == EINTR);
    if (w < 0 || (size_t)w != JOURNAL_HEAD + len) {
        text_errf(err, errlen, "cannot write %s: %s", j,
                  w < 0 ? strerror(errno) : "short write");
        goto out;
    }
    if (fsync(fd) != 0) {
        text_errf(err, errlen, "cannot fsync %s: %s", j, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    if (fd >= 0 && close(fd) != 0 && rc == 0)
        rc = text_errf(err, errlen, "cannot close %s: %s", j, strerror(errno));
    free(buf);
    free(doc);
    free(j);
    return rc;
}

/* Reads slot <k> (of <slot> bytes) of journal <fd>: 0 with the record's
 * <*seq>, <*out> and <*n> when it holds a valid one, -1 otherwise. */
static int
journal_slot(int fd, const char *j, size_t slot, unsigned k, uint64_t *seq,
             struct adm_store_entry **out, unsigned *n)
{
    char head[JOURNAL_HEAD + 1], *doc, perr[256];
    unsigned long long s, sum;
    size_t len;
    ssize_t r;
    int rc;

    r = pread(fd, head, JOURNAL_HEAD, (off_t)(k * slot));
    if (r != (ssize_t)JOURNAL_HEAD)
        return -1;
    head[JOURNAL_HEAD] = '\0';
    if (strncmp(head, JOURNAL_MAGIC, strlen(JOURNAL_MAGIC)) != 0
        || sscanf(head + strlen(JOURNAL_MAGIC), "%20llu %10zu %16llx", &s, &len, &sum) != 3
        || len > slot - JOURNAL_HEAD)
        return -1;
    doc = xmalloc(len + 1);
    r = pread(fd, doc, len, (off_t)(k * slot + JOURNAL_HEAD));
    if (r != (ssize_t)len || fnv1a64(doc, len) != sum) {
        free(doc);
        log_at(LL_WARN, "store", 0, "%s: slot %u is torn (a crash while writing it): ignored",
               j, k);
        return -1;
    }
    rc = parse_doc(doc, len, out, n, perr, sizeof(perr));
    free(doc);
    if (rc != 0) {
        log_at(LL_WARN, "store", 0, "%s: slot %u: %s: ignored", j, k, perr);
        return -1;
    }
    *seq = s;
    return 0;
}

int
adm_store_journal_read(const char *file, uint64_t *seq, struct adm_store_entry **out,
                       unsigned *n, char *err, size_t errlen)
{
    char *j = journal_name(file);
    struct adm_store_entry *e[2] = { NULL, NULL };
    unsigned ne[2] = { 0, 0 }, k;
    uint64_t s[2] = { 0, 0 };
    bool ok[2];
    struct stat sb;
    size_t slot;
    int fd, best;

    *seq = 0;
    *out = NULL;
    *n = 0;
    fd = open(j, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e0 = errno;

        free(j);
        if (e0 == ENOENT)
            return 0;
        return text_errf(err, errlen, "cannot open %s%s: %s", file, JOURNAL_SUFFIX,
                         strerror(e0));
    }
    if (fstat(fd, &sb) != 0) {
        text_errf(err, errlen, "cannot stat %s: %s", j, strerror(errno));
        close(fd);
        free(j);
        return -1;
    }
    slot = (size_t)sb.st_size / 2;
    for (k = 0; k < 2; k++)
        ok[k] = slot >= JOURNAL_HEAD && journal_slot(fd, j, slot, k, &s[k], &e[k], &ne[k]) == 0;
    close(fd);
    free(j);
    best = ok[0] && ok[1] ? (s[1] > s[0] ? 1 : 0) : ok[0] ? 0 : ok[1] ? 1 : -1;
    if (best < 0)
        return 0;
    *seq = s[best];
    *out = e[best];
    *n = ne[best];
    free(e[1 - best]);
    return 0;
}

int
adm_store_journal_clear(const char *file, char *err, size_t errlen)
{
    char *j = journal_name(file), zero[JOURNAL_HEAD];
    struct stat sb;
    size_t slot;
    unsigned k;
    int fd, rc = -1;

    memset(zero, 0, sizeof(zero));
    fd = open(j, O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = errno == ENOENT ? 0 : text_errf(err, errlen, "cannot open %s: %s", j,
                                             strerror(errno));
        free(j);
        return rc;
    }
    if (fstat(fd, &sb) != 0) {
        text_errf(err, errlen, "cannot stat %s: %s", j, strerror(errno));
        goto out;
    }
    slot = (size_t)sb.st_size / 2;
    for (k = 0; k < 2 && slot >= JOURNAL_HEAD; k++) {
        if (pwrite(fd, zero, sizeof(zero), (off_t)(k * slot)) != (ssize_t)sizeof(zero)) {
            text_errf(err, errlen, "cannot write %s: %s", j, strerror(errno));
            goto out;
        }
    }
    if (fsync(fd) != 0) {
        text_errf(err, errlen, "cannot fsync %s: %s", j, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    close(fd);
    free(j);
    return rc;
}

/* ---- startup checks ------------------------------------------------------- */

int
adm_store_clean_tmp(const char *file, unsigned *removed, char *err, size_t errlen)
{
    char *dir = fs_dir_of(file), *path;
    const char *base = strrchr(file, '/');
    size_t blen, plen, skip;
    struct dirent *de;
    DIR *d;
    long pid;
    char *end;

    *removed = 0;
    base = base != NULL ? base + 1 : file;
    blen = strlen(base);
    d = opendir(dir);
    if (d == NULL) {
        int e = errno;

        free(dir);
        return e == ENOENT ? 0 : text_errf(err, errlen, "cannot read directory of %s: %s",
                                           file, strerror(e));
    }
    while ((de = readdir(d)) != NULL) {
        /* exactly <base>.tmp.<pid> or <base>.pending.tmp.<pid>: nothing
         * else is ours */
        if (strncmp(de->d_name, base, blen) != 0)
            continue;
        skip = blen;
        if (strncmp(de->d_name + skip, JOURNAL_SUFFIX, strlen(JOURNAL_SUFFIX)) == 0)
            skip += strlen(JOURNAL_SUFFIX);
        if (strncmp(de->d_name + skip, ".tmp.", 5) != 0
            || !isdigit((unsigned char)de->d_name[skip + 5]))
            continue;
        errno = 0;
        pid = strtol(de->d_name + skip + 5, &end, 10);
        if (errno != 0 || *end != '\0' || pid <= 0)
            continue;
        /* a live process may be writing it (another daemon on the same
         * directory is a mistake, but its file is not ours to take) */
        if (pid != (long)getpid() && (kill((pid_t)pid, 0) == 0 || errno != ESRCH))
            continue;
        plen = strlen(dir) + strlen(de->d_name) + 2;
        path = xmalloc(plen);
        snprintf(path, plen, "%s/%s", dir, de->d_name);
        if (unlink(path) == 0)
            (*removed)++;
        else
            log_at(LL_WARN, "store", 0, "cannot remove stale temporary file %s: %s", path,
                   strerror(errno));
        free(path);
    }
    closedir(d);
    free(dir);
    return 0;
}

int
adm_store_probe(const char *file, char *err, size_t errlen)
{
    char *tmp, *dir;
    int fd, rc = 0;

    if (fs_mkdir_parent(file, err, errlen) != 0)   /* as a save would */
        return -1;
    tmp = tmp_name(file);
    dir = fs_dir_of(file);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        rc = text_errf(err, errlen, "cannot create a file in %s: %s", dir, strerror(errno));
    else if (close(fd) != 0 || unlink(tmp) != 0)
        rc = text_errf(err, errlen, "cannot remove %s: %s", tmp, strerror(errno));
    free(tmp);
    free(dir);
    return rc;
}
