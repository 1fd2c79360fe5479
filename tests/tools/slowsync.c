/*
 * slowsync: an LD_PRELOAD library for tests/integration/37_slow_disk. It
 * makes fsync(2) and fdatasync(2) of files (and directories) under
 * $SLOWSYNC_DIR take $SLOWSYNC_MS milliseconds longer, as a busy disk does,
 * then calls the real ones. Everything else passes through untouched.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int fsync(int fd);
int fdatasync(int fd);

typedef int sync_fn(int fd);

/* Sleeps $SLOWSYNC_MS when <fd> is under $SLOWSYNC_DIR. */
static void
maybe_slow(int fd)
{
    const char *dir = getenv("SLOWSYNC_DIR"), *ms = getenv("SLOWSYNC_MS");
    char link[64], path[4096];
    struct timespec ts;
    ssize_t n;
    long delay;

    if (dir == NULL || ms == NULL || (delay = strtol(ms, NULL, 10)) <= 0)
        return;
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    if ((n = readlink(link, path, sizeof(path) - 1)) < 0)
        return;
    path[n] = '\0';
    if (strncmp(path, dir, strlen(dir)) != 0)
        return;
    ts.tv_sec = delay / 1000;
    ts.tv_nsec = (delay % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) != 0)
        ;
}

int
fsync(int fd)
{
    static sync_fn *real;

    if (real == NULL)
        *(void **)&real = dlsym(RTLD_NEXT, "fsync");
    maybe_slow(fd);
    return real(fd);
}

int
fdatasync(int fd)
{
    static sync_fn *real;

    if (real == NULL)
        *(void **)&real = dlsym(RTLD_NEXT, "fdatasync");
    maybe_slow(fd);
    return real(fd);
}
