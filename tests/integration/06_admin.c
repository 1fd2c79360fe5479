/*
 * The admin path end to end: cutoverctl's exit codes (0 done, 1 refused,
 * 2 usage, 3 unreachable), the status table, rollback latching, promote,
 * switch, the audit log, and raw protocol errors that change nothing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/integration/fixture.h"

static struct fx *
start(void **state)
{
    assert_int_equal(fx_open(state, false, 1, NULL, 1), 0);
    return *state;
}

/* Sends raw lines on the admin socket and returns the reply line (owned). */
static char *
admin_raw(struct fx *f, const char *line)
{
    struct sockaddr_un sa;
    char buf[65536];
    size_t got = 0;
    ssize_t n;
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    assert_true(strlen(f->sock) < sizeof(sa.sun_path));
    memcpy(sa.sun_path, f->sock, strlen(f->sock) + 1);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(h_send_all(fd, line, strlen(line)), 0);
    while (got < sizeof(buf) - 1 && (n = read(fd, buf + got, sizeof(buf) - 1 - got)) > 0) {
        got += (size_t)n;
        if (memchr(buf, '\n', got) != NULL)
            break;
    }
    buf[got] = '\0';
    close(fd);
    return strdup(buf);
}

static void
test_exit_codes(void **state)
{
    struct fx *f = start(state);
    char out[8192];
    static const char *const bad_weights[] = {
        "101", "-1", "10.005", "abc", "", "1e1", "50%%", "%", "0x10",
    };
    size_t i;

    assert_int_equal(fx_ctl(f, out, "weight", "12.5"), 0);
    assert_true(fx_weight(f) == 12.5);
    for (i = 0; i < sizeof(bad_weights) / sizeof(bad_weights[0]); i++) {
        if (fx_ctl(f, out, "weight", bad_weights[i]) != 2)
            fail_msg("weight '%s' not a usage error", bad_weights[i]);
    }
    assert_true(fx_weight(f) == 12.5);                 /* unchanged */
    assert_int_equal(fx_ctl(f, out, "frobnicate"), 2);
    assert_int_equal(fx_ctl(f, out, "weight"), 2);
    assert_int_equal(fx_ctl(f, out, "-S", "nosuch", "weight", "5"), 1);
    assert_non_null(strstr(h_ctl_err(), "nosuch"));
    assert_true(fx_weight(f) == 12.5);
    /* no daemon there */
    assert_int_equal(h_ctl("/nonexistent/admin.sock", out, sizeof(out), "status",
                           (char *)NULL), 3);
}

static void
test_status_table_and_socket_mode(void **state)
{
    struct fx *f = start(state);
    char out[8192], addr[64];
    struct stat st;

    assert_int_equal(stat(f->sock, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(fx_ctl(f, out, "weight", "10"), 0);
    assert_int_equal(fx_ctl(f, out, "status"), 0);
    assert_non_null(strstr(out, "web"));
    assert_non_null(strstr(out, "10.00%"));
    assert_non_null(strstr(out, "steady"));
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", f->port[0][0]);
    assert_non_null(strstr(out, addr));
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", f->port[1][0]);
    assert_non_null(strstr(out, addr));
}

static void
test_rollback_promote_switch(void **state)
{
    struct fx *f = start(state);
    char out[8192], st[64];
    int c[2];
    char *audit;

    assert_int_equal(fx_ctl(f, out, "weight", "50"), 0);
    assert_int_equal(fx_ctl(f, out, "rollback", "--reason", "p99 too high"), 0);
    assert_true(fx_weight(f) == 0);
    assert_string_equal(fx_state(f, st, sizeof(st)), "rolled_back");
    assert_int_equal(fx_count(f, 50, "/", NULL, c), 0);
    assert_int_equal(c[1], 0);
    /* an explicit weight clears the latch */
    assert_int_equal(fx_ctl(f, out, "weight", "5"), 0);
    assert_string_equal(fx_state(f, st, sizeof(st)), "steady");
    assert_int_equal(fx_ctl(f, out, "promote"), 0);
    assert_true(fx_weight(f) == 100);
    assert_string_equal(fx_state(f, st, sizeof(st)), "promoted");
    assert_int_equal(fx_count(f, 50, "/", NULL, c), 0);
    assert_int_equal(c[1], 50);
    assert_int_equal(fx_ctl(f, out, "switch", "legacy"), 0);
    assert_true(fx_weight(f) == 0);
    assert_int_equal(fx_ctl(f, out, "switch", "new"), 0);
    assert_true(fx_weight(f) == 100);
    assert_int_equal(fx_ctl(f, out, "switch", "blue"), 2);

    /* every change is in the audit log, with the reason */
    audit = h_read_file(f->audit);
    assert_non_null(audit);
    assert_non_null(strstr(audit, "\"action\":\"rollback\""));
    assert_non_null(strstr(audit, "p99 too high"));
    assert_non_null(strstr(audit, "\"action\":\"promote\""));
    assert_non_null(strstr(audit, "\"actor\":\"uid:"));
    free(audit);
    assert_int_equal(fx_ctl(f, out, "audit", "-n", "2"), 0);
    assert_non_null(strstr(out, "switch"));
}

static void
test_raw_protocol_errors_change_nothing(void **state)
{
    static const char *const bad[] = {
        "this is not json\n",
        "[1,2,3]\n",
        "{\"cmd\":\"nosuch\"}\n",
        "{\"cmd\":\"weight\",\"percent\":101}\n",
        "{\"cmd\":\"weight\",\"percent\":-3}\n",
        "{\"cmd\":\"weight\",\"percent\":\"10\"}\n",
        "{\"cmd\":\"weight\"}\n",
        "{\"cmd\":\"weight\",\"percent\":10,\"bogus\":1}\n",
        "{\"cmd\":\"switch\",\"to\":\"sideways\"}\n",
    };
    struct fx *f = start(state);
    char out[256], *state_before, *state_after, *reply;
    size_t i;

    assert_int_equal(fx_ctl(f, out, "weight", "20"), 0);
    state_before = h_read_file(f->state);
    assert_non_null(state_before);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        reply = admin_raw(f, bad[i]);
        if (strstr(reply, "\"ok\":false") == NULL || strstr(reply, "\"error\"") == NULL)
            fail_msg("case %zu: reply %s", i, reply);
        free(reply);
    }
    state_after = h_read_file(f->state);
    assert_string_equal(state_before, state_after);
    assert_true(fx_weight(f) == 20);
    free(state_before);
    free(state_after);
    /* the daemon still serves traffic */
    reply = admin_raw(f, "{\"cmd\":\"status\"}\n");
    assert_non_null(strstr(reply, "\"ok\":true"));
    free(reply);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_exit_codes, fx_teardown),
        cmocka_unit_test_teardown(test_status_table_and_socket_mode, fx_teardown),
        cmocka_unit_test_teardown(test_rollback_promote_switch, fx_teardown),
        cmocka_unit_test_teardown(test_raw_protocol_errors_change_nothing, fx_teardown),
    };

    return cmocka_run_group_tests_name("integration: admin", tests, NULL, NULL);
}
