/*
 * tests/unit/util.h: what several unit tests need beside cmocka and the
 * module under test (the integration tests have tests/harness instead).
 * Header only, libc only.
 */
#ifndef CUTOVER_TESTS_UNIT_UTIL_H
#define CUTOVER_TESTS_UNIT_UTIL_H

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Removes <path> and everything below it; a directory a test made
 * unreadable or read-only is made 0700 first. Missing: nothing to do. */
static inline void
rm_rf(const char *path)
{
    struct stat sb;
    DIR *d;
    struct dirent *de;
    char sub[PATH_MAX + 256];

    if (lstat(path, &sb) != 0)
        return;
    if (S_ISDIR(sb.st_mode)) {
        chmod(path, 0700);
        d = opendir(path);
        if (d != NULL) {
            while ((de = readdir(d)) != NULL) {
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                    continue;
                if ((size_t)snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name)
                    < sizeof(sub))
                    rm_rf(sub);
            }
            closedir(d);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
}

#endif
