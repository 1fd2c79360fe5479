/*
 * notify: see notify.h.
 */
#include "lib/notify.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int
notify_send(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sun;
    socklen_t len;
    size_t plen;
    ssize_t n;
    int fd;

    if (path == NULL || path[0] == '\0')
        return 0;
    plen = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || plen >= sizeof(sun.sun_path)) {
        errno = EINVAL;
        return -1;
    }
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path, path, plen);
    if (path[0] == '@')
        sun.sun_path[0] = '\0';          /* abstract namespace */
    len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen +
                      (path[0] == '@' ? 0 : 1));
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    n = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sun, len);
    if (n < 0) {
        int e = errno;

        close(fd);
        errno = e;
        return -1;
    }
    close(fd);
    return 1;
}

int
notify_sendf(const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    int k;

    va_start(ap, fmt);
    k = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= sizeof(buf)) {
        errno = EMSGSIZE;
        return -1;
    }
    return notify_send(buf);
}
