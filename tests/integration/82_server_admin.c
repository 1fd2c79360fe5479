/*
 * 82_server_admin: `cutoverctl server drain|disable|enable SIDE ADDR` (as in
 * HAProxy's runtime API; proxy/srvadmin.c, admin/server_ctl.c) with two
 * workers: a drained server gets no new request while the one in flight
 * finishes; a disabled one is not probed; the state shows in status, is
 * audited, survives a reload and a restart; a side with every server out
 * falls back; bad requests are refused and change nothing; over HTTP it
 * needs an admin token.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <jansson.h>

#include "tests/integration/fixture.h"

#define HEALTH ", \"health\": { \"type\": \"http\", \"path\": \"/healthz\", " \
               "\"interval_ms\": 100, \"timeout_ms\": 80, \"rise\": 1, \"fall\": 1 }"

static struct fx *
open_fx(void **state, const char *extra, unsigned workers)
{
    struct fx *f = fx_new(state, sizeof(*f), false, 2, extra);

    f->workers = workers;
    assert_int_equal(fx_write_conf(f), 0);
    assert_int_equal(fx_start_proxy(f, 3), 0);
    return f;
}

/* status: the "admin" of server <addr> of <side>. */
static void
admin_of(struct fx *f, const char *side, int port, char *buf, size_t len)
{
    json_t *root = NULL, *svc = fx_status(f, &root), *s;
    char addr[64];
    size_t i;

    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    buf[0] = '\0';
    json_array_foreach(json_object_get(json_object_get(svc, side), "servers"), i, s)
        if (strcmp(json_string_value(json_object_get(s, "addr")), addr) == 0)
            snprintf(buf, len, "%s", json_string_value(json_object_get(s, "admin")));
    json_decref(root);
}

/* cutoverctl server <action> <side> 127.0.0.1:<port> [--reason R]: exit code. */
static int
server_cmd(struct fx *f, const char *action, const char *side, int port, const char *reason,
           char *out, size_t outlen)
{
    char addr[64];

    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    if (reason != NULL)
        return h_ctl(f->sock, out, outlen, "server", action, side, addr, "--reason", reason,
                     (char *)NULL);
    return h_ctl(f->sock, out, outlen, "server", action, side, addr, (char *)NULL);
}

static bool
is_server_entry(const json_t *e)
{
    return strncmp(json_string_value(json_object_get(e, "action")), "server_", 7) == 0;
}

/* A request in flight on legacy's first server when it is drained finishes
 * there; every new one goes to the second; enable brings it back. */
static void
test_drain_in_flight(void **state)
{
    struct fx *f = open_fx(state, NULL, 2);
    const char req[] = "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n";
    char out[1024], st[32], be[64];
    struct h_resp r;
    long long t0;
    json_t *audit, *e;
    int fd, i;

    assert_int_equal(h_backend_set(f->port[0][0], "delay_ms=1500"), 0);
    /* round robin per worker: keep connecting until one request waits on legacy */
    for (i = 0; i < 8 && h_backend_stat(f->port[0][0], "heads") < 1; i++) {
        fd = h_connect(f->proxy_port);
        assert_true(fd >= 0);
        assert_int_equal(h_send_all(fd, req, strlen(req)), 0);
        if (h_backend_wait_stat(f->port[0][0], "heads", 1, 300) >= 1)
            break;
        memset(&r, 0, sizeof(r));
        assert_int_equal(h_read_response(fd, &r), 0);   /* it went to legacy2 */
        h_resp_free(&r);
        close(fd);
        fd = -1;
    }
    assert_int_equal(h_backend_stat(f->port[0][0], "heads"), 1);
    t0 = h_now_ms();
    assert_int_equal(server_cmd(f, "drain", "legacy", f->port[0][0], "kernel update", out,
                                sizeof(out)), 0);
    assert_true(h_now_ms() - t0 < 1000);              /* never waits for the drain */
    assert_non_null(strstr(out, "ready -> drain"));
    admin_of(f, "legacy", f->port[0][0], st, sizeof(st));
    assert_string_equal(st, "drain");
    fx_drive(f, 20, 0, NULL, NULL, NULL);
    assert_int_equal(h_backend_stat(f->port[0][0], "heads"), 1);   /* nothing new */
    memset(&r, 0, sizeof(r));
    assert_int_equal(h_read_response(fd, &r), 0);     /* the one in flight finishes */
    assert_int_equal(r.status, 200);
    assert_non_null(h_resp_header(&r, "X-Backend", be, sizeof(be)));
    assert_string_equal(be, "legacy");
    h_resp_free(&r);
    close(fd);
    /* the status text shows it */
    assert_int_equal(fx_ctl(f, out, "status"), 0);
    assert_non_null(strstr(out, "  drain"));

    assert_int_equal(h_backend_set(f->port[0][0], "delay_ms=0"), 0);
    assert_int_equal(server_cmd(f, "enable", "legacy", f->port[0][0], NULL, out,
                                sizeof(out)), 0);
    fx_drive(f, 20, 0, NULL, NULL, NULL);
    assert_true(h_backend_stat(f->port[0][0], "heads") >= 5);

    audit = fx_audit(f, is_server_entry);
    assert_int_equal(json_array_size(audit), 2);
    e = json_array_get(audit, 0);
    assert_string_equal(json_string_value(json_object_get(e, "action")), "server_drain");
    assert_string_equal(json_string_value(json_object_get(e, "from")), "ready");
    assert_string_equal(json_string_value(json_object_get(e, "to")), "drain");
    assert_string_equal(json_string_value(json_object_get(e, "reason")), "kernel update");
    assert_string_equal(json_string_value(json_object_get(json_object_get(e, "figures"),
                                                          "side")), "legacy");
    e = json_array_get(audit, 1);
    assert_string_equal(json_string_value(json_object_get(e, "action")), "server_enable");
    assert_string_equal(json_string_value(json_object_get(e, "to")), "ready");
    json_decref(audit);
}

/* A disabled server is not probed, survives a reload and a restart, and
 * is checked and routed to again once enabled; every server of new out:
 * new's share falls back to legacy. */
static void
test_disable_survives(void **state)
{
    struct fx *f = open_fx(state, ", \"weight\": 100" HEALTH, 2);
    char out[1024], st[32];
    long c0, c1;
    int c[2];

    assert_int_equal(server_cmd(f, "disable", "new", f->port[1][1], NULL, out, sizeof(out)),
                     0);
    h_sleep_ms(300);                   /* a check already under way ends */
    c0 = h_backend_stat(f->port[1][1], "connections");
    h_sleep_ms(800);                   /* 8 check intervals */
    c1 = h_backend_stat(f->port[1][1], "connections");
    assert_int_equal(c1 - c0, 1);      /* our own stats connection only */
    fx_drive(f, 10, 0, c, NULL, NULL);
    assert_int_equal(c[1], 10);        /* new's other server takes them */
    assert_int_equal(h_backend_stat(f->port[1][1], "requests"), 0);

    /* reload, then restart: still disabled */
    assert_int_equal(kill(f->proxy, SIGHUP), 0);
    assert_int_equal(h_wait_log(f->log, "event=reload", 5000), 0);
    admin_of(f, "new", f->port[1][1], st, sizeof(st));
    assert_string_equal(st, "disabled");
    fx_stop_clean(f);
    assert_int_equal(fx_start_proxy(f, 3), 0);
    admin_of(f, "new", f->port[1][1], st, sizeof(st));
    assert_string_equal(st, "disabled");
    assert_int_equal(h_wait_log(f->log, "is disabled (kept from", 1000), 0);
    fx_drive(f, 10, 0, c, NULL, NULL);
    assert_int_equal(c[1], 10);
    assert_int_equal(h_backend_stat(f->port[1][1], "requests"), 0);

    /* drain the other one too: new has no usable server, legacy serves */
    assert_int_equal(server_cmd(f, "drain", "new", f->port[1][0], NULL, out, sizeof(out)), 0);
    assert_non_null(strstr(out, "its share goes to the other side"));
    c0 = h_backend_requests(f->port[0][0]) + h_backend_requests(f->port[0][1]);
    fx_drive(f, 10, 0, NULL, NULL, NULL);
    assert_int_equal(h_backend_requests(f->port[0][0]) + h_backend_requests(f->port[0][1]),
                     c0 + 10);

    /* enable both: probed and routed to again */
    assert_int_equal(server_cmd(f, "enable", "new", f->port[1][1], NULL, out, sizeof(out)), 0);
    assert_int_equal(server_cmd(f, "enable", "new", f->port[1][0], NULL, out, sizeof(out)), 0);
    c0 = h_backend_stat(f->port[1][1], "connections");
    h_sleep_ms(500);
    assert_true(h_backend_stat(f->port[1][1], "connections") - c0 >= 3);
    fx_drive(f, 20, 0, NULL, NULL, NULL);
    assert_true(h_backend_stat(f->port[1][1], "requests") >= 5);
    fx_stop_clean(f);
    assert_int_equal(fx_start_proxy(f, 3), 0);
    admin_of(f, "new", f->port[1][1], st, sizeof(st));
    assert_string_equal(st, "ready");
}

/* Refusals change nothing; over HTTP the level is admin. */
static void
test_refused(void **state)
{
    struct fx *f = fx_new(state, sizeof(*f), false, 2, NULL);
    char out[1024], st[32], body[256];
    json_t *j;

    f->admin_port = h_free_port();
    assert_int_equal(fx_admin_tokens(f, "viewer read 0123456789abcdef0123\n"
                                        "root admin fedcba9876543210fedc\n"), 0);
    assert_int_equal(fx_write_conf(f), 0);
    assert_int_equal(fx_start_proxy(f, 3), 0);
    assert_int_equal(h_ctl(f->sock, out, sizeof(out), "server", "drain", "new",
                           "127.0.0.1:1", (char *)NULL), 1);
    assert_non_null(strstr(h_ctl_err(), "has no new server \"127.0.0.1:1\" (its new servers:"));
    assert_int_equal(h_ctl(f->sock, out, sizeof(out), "server", "drain", "middle",
                           "127.0.0.1:1", (char *)NULL), 2);
    assert_int_equal(h_ctl(f->sock, out, sizeof(out), "server", "pause", "new",
                           "127.0.0.1:1", (char *)NULL), 2);
    assert_int_equal(h_ctl(f->sock, out, sizeof(out), "server", "drain", "new",
                           (char *)NULL), 2);
    snprintf(body, sizeof(body), "{\"side\":\"new\",\"server\":\"127.0.0.1:%d\","
             "\"action\":\"drain\",\"bogus\":1}", f->port[1][0]);
    assert_int_equal(fx_admin_call(f, "POST", "/v1/server", "fedcba9876543210fedc", body,
                                   NULL), 409);
    snprintf(body, sizeof(body), "{\"side\":\"new\",\"server\":\"127.0.0.1:%d\","
             "\"action\":\"drain\"}", f->port[1][0]);
    assert_int_equal(fx_admin_call(f, "POST", "/v1/server", "0123456789abcdef0123", body,
                                   NULL), 403);
    admin_of(f, "new", f->port[1][0], st, sizeof(st));
    assert_string_equal(st, "ready");
    assert_int_equal(fx_admin_call(f, "POST", "/v1/server", "fedcba9876543210fedc", body,
                                   &j), 200);
    assert_string_equal(json_string_value(json_object_get(j, "admin")), "drain");
    json_decref(j);
    admin_of(f, "new", f->port[1][0], st, sizeof(st));
    assert_string_equal(st, "drain");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_drain_in_flight, fx_teardown),
        cmocka_unit_test_teardown(test_disable_survives, fx_teardown),
        cmocka_unit_test_teardown(test_refused, fx_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
