/*
 * lib/fs: see fs.h.
 */
#include "lib/fs.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

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
