/*
 * Tests for lib/notify.c: the sd_notify datagram reaches a socket named by
 * $NOTIFY_SOCKET (a path or an abstract name), nothing is sent without it,
 * and an invalid value is an error rather than a silent success.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/notify.h"

/* Binds a datagram socket at <name> (a path, or '@' + abstract name). */
static int
bind_dgram(const char *name)
{
    struct sockaddr_un sun;
    socklen_t len;
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);

    assert_true(fd >= 0);
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path, name, strlen(name));
    if (name[0] == '@')
        sun.sun_path[0] = '\0';
    len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(name) +
                      (name[0] == '@' ? 0 : 1));
    assert_int_equal(bind(fd, (struct sockaddr *)&sun, len), 0);
    return fd;
}

static void
expect_datagram(int fd, const char *want)
{
    char buf[512];
    ssize_t n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);

    assert_true(n >= 0);
    buf[n] = '\0';
    assert_string_equal(buf, want);
}

static void
test_path_socket(void **state)
{
    char dir[] = "/tmp/test_lib_notify.XXXXXX", path[128];
    int fd;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/notify", dir);
    fd = bind_dgram(path);
    setenv("NOTIFY_SOCKET", path, 1);
    assert_int_equal(notify_send("READY=1\nSTATUS=serving 1 service"), 1);
    expect_datagram(fd, "READY=1\nSTATUS=serving 1 service");
    assert_int_equal(notify_sendf("STOPPING=1\nSTATUS=draining %d", 3), 1);
    expect_datagram(fd, "STOPPING=1\nSTATUS=draining 3");
    close(fd);
    unlink(path);
    rmdir(dir);
    /* the manager's socket is gone: an error, not a silent success */
    assert_int_equal(notify_send("READY=1"), -1);
    unsetenv("NOTIFY_SOCKET");
}

static void
test_abstract_socket(void **state)
{
    char name[64];
    int fd;

    (void)state;
    snprintf(name, sizeof(name), "@cutover-test-notify-%ld", (long)getpid());
    fd = bind_dgram(name);
    setenv("NOTIFY_SOCKET", name, 1);
    assert_int_equal(notify_send("RELOADING=1"), 1);
    expect_datagram(fd, "RELOADING=1");
    close(fd);
    unsetenv("NOTIFY_SOCKET");
}

static void
test_not_asked(void **state)
{
    (void)state;
    unsetenv("NOTIFY_SOCKET");
    assert_int_equal(notify_send("READY=1"), 0);
    setenv("NOTIFY_SOCKET", "", 1);
    assert_int_equal(notify_send("READY=1"), 0);
    setenv("NOTIFY_SOCKET", "relative/path", 1);
    assert_int_equal(notify_send("READY=1"), -1);
    assert_int_equal(errno, EINVAL);
    unsetenv("NOTIFY_SOCKET");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_socket),
        cmocka_unit_test(test_abstract_socket),
        cmocka_unit_test(test_not_asked),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
