/*
 * TCP mode through the real cutoverd: the split per connection at 0, 50 and
 * 100 %, bytes relayed both ways, a half-close propagated (the client's FIN
 * reaches the backend, which still answers), connect failures counted.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/integration/fixture.h"

static struct fx *
start(void **state)
{
    assert_int_equal(fx_open(state, true, 1, NULL, 99), 0);
    return *state;
}

/* Opens a tunnel and returns which side answered (0 legacy, 1 new, -1). */
static int
tunnel_side(struct fx *f)
{
    char line[16] = "";
    int fd = h_connect(f->proxy_port), side = -1;
    size_t n;

    if (fd < 0)
        return -1;
    n = h_recv_n(fd, line, 4);
    if (n >= 4 && memcmp(line, "new\n", 4) == 0)
        side = 1;
    else if (n >= 4 && memcmp(line, "lega", 4) == 0)
        side = 0;
    close(fd);
    return side;
}

static void
test_tcp_split(void **state)
{
    struct fx *f = start(state);
    char out[4096];
    int i, c[2] = { 0, 0 }, s;

    for (i = 0; i < 50; i++) {
        s = tunnel_side(f);
        assert_int_equal(s, 0);
    }
    assert_int_equal(fx_ctl(f, out, "weight", "50"), 0);
    for (i = 0; i < 200; i++) {
        s = tunnel_side(f);
        assert_true(s == 0 || s == 1);
        c[s]++;
    }
    if (c[1] < 65 || c[1] > 135)
        fail_msg("tcp weight 50: %d of 200 on new", c[1]);
    assert_int_equal(fx_ctl(f, out, "weight", "100"), 0);
    for (i = 0; i < 50; i++)
        assert_int_equal(tunnel_side(f), 1);
}

static void
test_tcp_relay_and_half_close(void **state)
{
    struct fx *f = start(state);
    char buf[70000], *payload = malloc(65536);
    int fd = h_connect(f->proxy_port);
    size_t n;

    assert_non_null(payload);
    assert_true(fd >= 0);
    memset(payload, 'x', 65536);
    assert_int_equal(h_recv_n(fd, buf, 7), 7);
    assert_memory_equal(buf, "legacy\n", 7);
    assert_int_equal(h_send_all(fd, payload, 65536), 0);
    /* half-close: our FIN must reach the backend, which then finishes its
     * echo and closes; we still read everything */
    assert_int_equal(shutdown(fd, SHUT_WR), 0);
    n = h_recv_n(fd, buf, sizeof(buf));
    assert_int_equal(n, 65536);
    assert_memory_equal(buf, payload, 65536);
    close(fd);
    free(payload);
}

static void
test_tcp_connect_failure_counted(void **state)
{
    struct fx *f = start(state);
    char b[8];
    int fd;

    /* one full tunnel first: the readiness probe's connection was accepted
     * before it, so no earlier connect can land after the backend stops */
    assert_int_equal(tunnel_side(f), 0);
    assert_int_equal(fx_status_long(f, "legacy.counters.errors.connect"), 0);
    assert_int_equal(h_stop(f->backend[0][0], SIGTERM, 5000), 0);
    fd = h_connect(f->proxy_port);
    assert_true(fd >= 0);
    /* the proxy closes the client when the backend refuses */
    assert_int_equal(h_recv_n(fd, b, sizeof(b)), 0);
    close(fd);
    assert_int_equal(fx_status_long(f, "legacy.counters.errors.connect"), 1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_tcp_split, fx_teardown),
        cmocka_unit_test_teardown(test_tcp_relay_and_half_close, fx_teardown),
        cmocka_unit_test_teardown(test_tcp_connect_failure_counted, fx_teardown),
    };

    return cmocka_run_group_tests_name("integration: tcp mode", tests, NULL, NULL);
}
