/*
 * lib/fs: see fs.h.
 */
#include "lib/fs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "lib/text.h"
#include "lib/xmalloc.h"

char *
fs_dir_of(const char *file)
{
    const char *slash = strrchr(file, '/');

    if (slash == NULL)
        return xstrdup(".");
    if (slash == file)
        return xstrdup("/");
    return xstrndup(file, (size_t)(slash - file));
}

char *
fs_resolve(const char *dir, const char *rel)
{
    size_t dl, rl;
    char *p;

    if (rel[0] == '/')
        return xstrdup(rel);
    dl = strlen(dir);
    rl = strlen(rel);
    p = xmalloc(dl + rl + 2);
    memcpy(p, dir, dl);
    if (dl == 0 || dir[dl - 1] != '/')
        p[dl++] = '/';
    memcpy(p + dl, rel, rl + 1);
    return p;
}

int
fs_mkdir_parent(const char *file, char *err, size_t errlen)
{
    char *dir = fs_dir_of(file), *p;
    char saved;
    struct stat sb;
    int rc = -1;

    /* Walk the components left to right; each missing one is created. */
    for (p = dir + 1; dir[1] != '\0'; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        saved = *p;
        *p = '\0';
        if (stat(dir, &sb) == 0) {
            if (!S_ISDIR(sb.st_mode)) {
                text_errf(err, errlen, "%s: not a directory", dir);
                goto out;
            }
        } else if (errno != ENOENT || (mkdir(dir, 0700) != 0 && errno != EEXIST)) {
            text_errf(err, errlen, "cannot create directory %s: %s", dir, strerror(errno));
            goto out;
        }
        *p = saved;
        if (saved == '\0')
            break;
    }
    rc = 0;
out:
    free(dir);
    return rc;
}

int
fs_read_private(const char *file, size_t max, char **out, size_t *len, char *err,
                size_t errlen)
{
    struct stat st;
    char *buf = NULL;
    size_t n = 0;
    ssize_t got;
    int fd, e;

    fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        e = errno;
        text_errf(err, errlen, "%s: %s", file, strerror(e));
        errno = e;
        return -1;
    }
    if (fstat(fd, &st) != 0) {
        e = errno;
        text_errf(err, errlen, "%s: %s", file, strerror(e));
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        e = EINVAL;
        text_errf(err, errlen, "%s: not a regular file", file);
        goto fail;
    }
    if (st.st_mode & 077) {
        e = EPERM;
        text_errf(err, errlen, "%s: mode %04o: group and others must have no access "
                  "(chmod 600)", file, (unsigned)(st.st_mode & 07777));
        goto fail;
    }
    buf = xmalloc(max + 1);
    for (;;) {
        got = read(fd, buf + n, max + 1 - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            e = errno;
            text_errf(err, errlen, "%s: %s", file, strerror(e));
            goto fail;
        }
        if (got == 0)
            break;
        n += (size_t)got;
        if (n > max) {
            e = EFBIG;
            text_errf(err, errlen, "%s: larger than %zu bytes", file, max);
            goto fail;
        }
    }
    close(fd);
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;

fail:
    if (buf != NULL) {
        explicit_bzero(buf, max + 1);
        free(buf);
    }
    close(fd);
    errno = e;
    return -1;
}
