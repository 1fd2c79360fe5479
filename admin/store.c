/*
 * store: see store.h. The file is tiny (one entry per service) and written
 * only on operator or automatic changes, so it is read and written whole,
 * with blocking calls, from the control plane. Durability matters more than
 * speed here: every save fsyncs the file and its directory.
 *
 * This file also owns the state name table of admin/control.h, because the
 * state file is what stores the names.
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
#include <unistd.h>

#include <jansson.h>

#include "admin/control.h"
#include "admin/store.h"
#include "lib/fs.h"
#include "lib/text.h"
#include "lib/xmalloc.h"
#include "health/plan.h"

#define STORE_MAX_BYTES (4u * 1024 * 1024)   /* a larger state file is corrupt */

const char *const adm_state_names[ADM_ST__COUNT] = {
    "steady", "progressing", "paused", "rolled_back", "frozen", "promoted",
};

int
adm_state_from_name(const char *name)
{
    int i;

    if (name == NULL)
        return -1;
    for (i = 0; i < ADM_ST__COUNT; i++) {
        if (strcmp(name, adm_state_names[i]) == 0)
            return i;
    }
    return -1;
}

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
        } else {
            return text_errf(err, errlen, "services[%zu]: unknown key \"%s\"", i, key);
        }
    }
    if (seen != 15) {
        const char *missing = !(seen & 1) ? "name" : !(seen & 2) ? "weight_bp"
                            : !(seen & 4) ? "state" : "generation";

        return text_errf(err, errlen, "services[%zu]: missing \"%s\"", i, missing);
    }
    return 0;
}

int
adm_store_load(const char *file, struct adm_store_entry **out, unsigned *n,
               char *err, size_t errlen)
{
    int fd = -1;
    char *text = NULL;
    size_t len = 0, i, k;
    json_t *root = NULL, *v, *svcs = NULL;
    json_error_t je;
    const char *key;
    struct adm_store_entry *e = NULL;
    bool has_version = false;

    *out = NULL;
    *n = 0;
    fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        text_errf(err, errlen, "cannot open: %s", strerror(errno));
        goto fail;
    }
    text = read_all(fd, &len);
    if (text == NULL) {
        text_errf(err, errlen, "cannot read: %s", errno == EFBIG
                  ? "larger than any state file could be" : strerror(errno));
        goto fail;
    }
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
    free(text);
    close(fd);
    return 0;

fail:
    free(e);
    json_decref(root);                 /* NULL-safe */
    free(text);
    if (fd >= 0)
        close(fd);
    return -1;
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

int
adm_store_save(const char *file, const struct adm_store_entry *e, unsigned n,
               char *err, size_t errlen)
{
    json_t *root = NULL, *svcs, *o;
    char *text = NULL, *tmp = NULL, *dir = NULL;
    size_t tmplen;
    int fd = -1, dfd = -1;
    unsigned i;

    root = json_pack("{s:i, s:[]}", "version", ADM_STORE_VERSION, "services");
    svcs = json_object_get(root, "services");   /* borrowed from <root> */
    if (root == NULL || svcs == NULL) {
        text_errf(err, errlen, "cannot build the state document");
        goto fail;
    }
    for (i = 0; i < n; i++) {
        if (e[i].state < 0 || e[i].state >= ADM_ST__COUNT || e[i].weight_bp > 10000
            || memchr(e[i].name, '\0', sizeof(e[i].name)) == NULL) {
            text_errf(err, errlen, "entry %u (%.63s) is out of range", i, e[i].name);
            goto fail;
        }
        o = json_pack("{s:s, s:I, s:s, s:I}", "name", e[i].name,
                      "weight_bp", (json_int_t)e[i].weight_bp,
                      "state", adm_state_names[e[i].state],
                      "generation", (json_int_t)e[i].generation);
        if (o != NULL && e[i].has_plan && store_plan(o, &e[i]) != 0) {
            json_decref(o);
            text_errf(err, errlen, "entry %u (%.63s): plan is out of range", i, e[i].name);
            goto fail;
        }
        if (o == NULL || json_array_append_new(svcs, o) != 0) {
            text_errf(err, errlen, "cannot build the state document");
            goto fail;
        }
    }
    text = json_dumps(root, JSON_INDENT(2));
    if (text == NULL) {
        text_errf(err, errlen, "cannot serialise the state document");
        goto fail;
    }
    if (fs_mkdir_parent(file, err, errlen) != 0)
        goto fail;

    tmplen = strlen(file) + 32;
    tmp = xmalloc(tmplen);
    snprintf(tmp, tmplen, "%s.tmp.%ld", file, (long)getpid());
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        text_errf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
        free(tmp);
        tmp = NULL;                    /* nothing to unlink */
        goto fail;
    }
    if (write_all(fd, text, strlen(text)) != 0 || write_all(fd, "\n", 1) != 0) {
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
    free(text);
    json_decref(root);
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
    free(text);
    json_decref(root);
    return -1;
}
