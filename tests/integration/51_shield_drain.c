/*
 * Long-lived connections follow a switch and a rollback. A real WebSocket
 * server on each side (tests/tools/ws_backend.py, Debian's
 * python3-websockets) and the RFC 6455 client of tests/harness/ws.c:
 * the upgrade through cutoverd, a 1 MiB message echoed whole, stickiness
 * by header, a tunnel that survives a weight change; `switch legacy
 * --drain-s 1` closes the tunnel on new (not the one on legacy) and the
 * client's reconnect lands on legacy; an automatic rollback closes it after
 * rollback.drain_s, audited with the count; in TCP mode a manual `rollback
 * --drain-s 0` closes the tunnels on new at once. Bounded waits, loopback.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/harness/ws.h"
#include "tests/integration/fixture.h"

#define WAIT_MS 5000

struct ws_fx {
    struct fx f;                 /* first: fx_teardown() frees the whole struct */
    int ws_port[2];              /* [side] the WebSocket servers */
    char user[2][16];            /* [side] an X-User whose bucket routes there at 50 % */
};

/* Starts a WebSocket server per side and cutoverd in front of them, sticky
 * by X-User, with <extra> service keys. */
static struct ws_fx *
start(void **state, const char *extra)
{
    static const char *const names[2] = { "legacy", "new" };
    struct ws_fx *t = fx_new(state, sizeof(*t), false, 1, extra);
    struct fx *f = &t->f;
    char port[16];
    uint64_t seed = rt_seed_from_salt("web", 3);
    unsigned s, i;

    for (s = 0; s < 2; s++) {
        char *argv[] = { "/usr/bin/python3", (char *)h_src("tests/tools/ws_backend.py"),
                         (char *)names[s], port, NULL };
        char log[600];

        t->ws_port[s] = h_free_port();
        snprintf(port, sizeof(port), "%d", t->ws_port[s]);
        snprintf(log, sizeof(log), "%s/ws_%s.log", f->dir, names[s]);
        assert_true(h_spawn(argv, log) > 0);
        snprintf(f->servers[s], sizeof(f->servers[s]), "\"127.0.0.1:%d\"", t->ws_port[s]);
    }
    for (s = 0; s < 2; s++)
        if (h_wait_port(t->ws_port[s], 10000) != 0)
            fail_msg("the WebSocket server of %s did not listen (python3-websockets "
                     "missing? tests/tools/deps.sh installs it)", names[s]);
    /* users on each side of the 50 % line */
    t->user[0][0] = t->user[1][0] = '\0';
    for (i = 0; i < 1000 && (t->user[0][0] == '\0' || t->user[1][0] == '\0'); i++) {
        char u[16];
        uint32_t b;

        snprintf(u, sizeof(u), "u%u", i);
        b = rt_bucket(u, strlen(u), seed);
        if (b < 4000 && t->user[1][0] == '\0')
            snprintf(t->user[1], sizeof(t->user[1]), "%s", u);
        else if (b >= 6000 && t->user[0][0] == '\0')
            snprintf(t->user[0], sizeof(t->user[0]), "%s", u);
    }
    assert_true(t->user[0][0] != '\0' && t->user[1][0] != '\0');
    assert_int_equal(fx_write_conf(f), 0);
    assert_int_equal(fx_start_proxy(f, 9), 0);
    return t;
}

/* A WebSocket through the proxy as user <u>; it must answer "who" with
 * <want>. */
static int
ws_open(struct ws_fx *t, const char *u, const char *want)
{
    char hdr[64], who[64];
    int fd;

    snprintf(hdr, sizeof(hdr), "X-User: %s\r\n", u);
    fd = h_ws_connect(t->f.proxy_port, "/chat", hdr, WAIT_MS);
    assert_true(fd >= 0);
    assert_int_equal(h_ws_who(fd, who, sizeof(who), WAIT_MS), 0);
    assert_string_equal(who, want);
    return fd;
}

static void
ctl_ok(struct fx *f, const char *a, const char *b, const char *c, const char *d)
{
    char out[4096];
    int rc = h_ctl(f->sock, out, sizeof(out), a, b, c, d, NULL);

    if (rc != 0)
        fail_msg("cutoverctl %s %s %s %s: exit %d: %s", a, b ? b : "", c ? c : "",
                 d ? d : "", rc, h_ctl_err());
}

/* The last audit entry of <action>: its figures (borrowed from <all>). */
static json_t *
last_figures(struct fx *f, const char *action, json_t **all)
{
    json_t *e, *found = NULL;
    size_t i;

    *all = fx_audit(f, NULL);
    json_array_foreach(*all, i, e)
        if (strcmp(json_string_value(json_object_get(e, "action")), action) == 0)
            found = e;
    assert_non_null(found);
    return json_object_get(found, "figures");
}

static void
test_ws_switch_drain(void **state)
{
    struct ws_fx *t = start(state, ",\"weight\": 50, \"rollback\": {\"enabled\": false}, "
                                   "\"sticky\": {\"by\": \"header\", \"name\": \"X-User\"}");
    struct fx *f = &t->f;
    size_t big = 1u << 20, i, n;
    char *msg, *echo, who[64];
    int fd_new, fd_legacy, fd;
    long long t0, dt;
    json_t *all, *fig;

    fd_new = ws_open(t, t->user[1], "new");
    fd_legacy = ws_open(t, t->user[0], "legacy");

    /* a 1 MiB message, whole and unchanged */
    msg = malloc(big);
    assert_non_null(msg);
    for (i = 0; i < big; i++)
        msg[i] = (char)(i * 31 + 7);
    assert_int_equal(h_ws_send(fd_new, H_WS_BINARY, msg, big), 0);
    assert_int_equal(h_ws_recv(fd_new, &echo, &n, WAIT_MS), H_WS_BINARY);
    assert_int_equal(n, big);
    assert_memory_equal(echo, msg, big);
    free(echo);
    free(msg);

    /* a weight change moves nobody's tunnel */
    ctl_ok(f, "weight", "60", NULL, NULL);
    assert_int_equal(h_ws_who(fd_new, who, sizeof(who), WAIT_MS), 0);
    assert_string_equal(who, "new");

    /* switch legacy --drain-s 1: new's tunnel closes after about 1 s */
    t0 = h_now_ms();
    ctl_ok(f, "switch", "legacy", "--drain-s", "1");
    assert_int_equal(h_ws_who(fd_new, who, sizeof(who), WAIT_MS), 0);   /* not yet */
    assert_true(h_peer_closed(fd_new, WAIT_MS));
    dt = h_now_ms() - t0;
    assert_true(dt >= 900);
    close(fd_new);
    /* legacy's tunnel stays */
    assert_int_equal(h_ws_who(fd_legacy, who, sizeof(who), WAIT_MS), 0);
    assert_string_equal(who, "legacy");
    close(fd_legacy);
    /* the client reconnects: legacy */
    fd = ws_open(t, t->user[1], "legacy");
    close(fd);

    assert_int_equal(fx_status_long(f, "shield.drained.tunnel"), 1);
    fig = last_figures(f, "switch", &all);
    assert_int_equal((long)fx_num(fig, "drain_s"), 1);
    assert_int_equal((long)fx_num(fig, "draining"), 1);
    json_decref(all);
    fx_stop_clean(f);                  /* under the sanitizers: nothing reported */
}

static void
test_ws_rollback_drain(void **state)
{
    struct ws_fx *t = start(state, ",\"weight\": 50, "
                                   "\"rollback\": {\"min_requests\": 5, \"drain_s\": 1}, "
                                   "\"sticky\": {\"by\": \"header\", \"name\": \"X-User\"}");
    struct fx *f = &t->f;
    char hdr[64], st[64];
    struct h_resp r;
    json_t *all, *fig;
    long long end;
    int fd, i;

    fd = ws_open(t, t->user[1], "new");
    /* new fails its plain requests: the shield answers them from legacy,
     * the policy rolls new back */
    snprintf(hdr, sizeof(hdr), "X-User: %s\r\n", t->user[1]);
    for (i = 0; i < 20 && strcmp(fx_state(f, st, sizeof(st)), "rolled_back") != 0; i++) {
        memset(&r, 0, sizeof(r));
        assert_int_equal(h_get(f->proxy_port, "/fail", hdr, &r), 0);
        assert_int_equal(r.status, 200);
        h_resp_free(&r);
        h_sleep_ms(20);
    }
    end = h_now_ms() + WAIT_MS;
    while (strcmp(fx_state(f, st, sizeof(st)), "rolled_back") != 0 && h_now_ms() < end)
        h_sleep_ms(20);
    assert_string_equal(st, "rolled_back");

    /* the tunnel on new closes after rollback.drain_s; the reconnect is legacy's */
    assert_true(h_peer_closed(fd, WAIT_MS));
    close(fd);
    fd = ws_open(t, t->user[1], "legacy");
    close(fd);

    fig = last_figures(f, "rollback", &all);
    assert_string_equal(json_string_value(json_object_get(fig, "kind")), "error_rate");
    assert_int_equal((long)fx_num(fig, "drain_s"), 1);
    assert_int_equal((long)fx_num(fig, "draining"), 1);
    assert_true(fx_num(fig, "shielded") >= 4);   /* the upgrade was new's fifth request */
    json_decref(all);
    assert_int_equal(fx_status_long(f, "shield.drained.tunnel"), 1);
    fx_stop_clean(f);
}

/* TCP mode: a manual rollback with --drain-s 0 closes the tunnels on new at
 * once (legacy's stay), counted as kind "tcp". */
static void
test_tcp_rollback_drain(void **state)
{
    struct fx *f;
    int fd[8], k, on_new = 0, on_legacy = 0;
    bool is_new[8];
    char buf[64];
    json_t *all, *fig;

    assert_int_equal(fx_open(state, true, 1, ",\"weight\": 50", 4), 0);
    f = *state;
    /* the TCP backends greet each connection with their name */
    for (k = 0; k < 8; k++) {
        ssize_t n;

        assert_true((fd[k] = h_connect(f->proxy_port)) >= 0);
        assert_int_equal(h_set_timeout_ms(fd[k], WAIT_MS), 0);
        n = read(fd[k], buf, sizeof(buf) - 1);
        assert_true(n > 0);
        buf[n] = '\0';
        is_new[k] = strncmp(buf, "new", 3) == 0;
        on_new += is_new[k];
        on_legacy += !is_new[k];
    }
    assert_true(on_new > 0 && on_legacy > 0);
    ctl_ok(f, "rollback", "--drain-s", "0", NULL);
    for (k = 0; k < 8; k++) {
        if (is_new[k])
            assert_true(h_peer_closed(fd[k], WAIT_MS));
        else
            assert_false(h_peer_closed(fd[k], 200));
        close(fd[k]);
    }
    assert_int_equal(fx_status_long(f, "shield.drained.tcp"), on_new);
    fig = last_figures(f, "rollback", &all);
    assert_int_equal((long)fx_num(fig, "drain_s"), 0);
    assert_int_equal((long)fx_num(fig, "draining"), on_new);
    json_decref(all);
    fx_stop_clean(f);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_ws_switch_drain, fx_teardown),
        cmocka_unit_test_teardown(test_ws_rollback_drain, fx_teardown),
        cmocka_unit_test_teardown(test_tcp_rollback_drain, fx_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
