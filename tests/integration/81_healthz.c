/*
 * 81_healthz: GET /healthz on admin.listen (admin/http.c): no token even
 * when admin.read_token_required is set, 200 "serving" while the daemon
 * serves, 503 "stopping" from SIGTERM on while requests in flight drain.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <jansson.h>

#include "tests/integration/fixture.h"

/* GET /healthz: its status, and its "status" field in <what>. */
static int
healthz(struct fx *f, char *what, size_t len)
{
    json_t *j = NULL;
    int st = fx_admin_call(f, "GET", "/healthz", NULL, NULL, &j);

    snprintf(what, len, "%s", json_string_value(json_object_get(j, "status")) != NULL
                                  ? json_string_value(json_object_get(j, "status")) : "");
    json_decref(j);
    return st;
}

static void
test_serving_without_token(void **state)
{
    struct fx *f = fx_new(state, sizeof(*f), false, 1, NULL);
    char what[64];

    f->admin_port = h_free_port();
    snprintf(f->admin_extra, sizeof(f->admin_extra), ", \"read_token_required\": true");
    assert_int_equal(fx_admin_tokens(f, "ops read 0123456789abcdef0123\n"), 0);
    assert_int_equal(fx_write_conf(f), 0);
    assert_int_equal(fx_start_proxy(f, 1), 0);
    assert_int_equal(healthz(f, what, sizeof(what)), 200);
    assert_string_equal(what, "serving");
    /* the rest of the endpoint still wants the token */
    assert_int_equal(fx_admin_call(f, "GET", "/status", NULL, NULL, NULL), 401);
    assert_int_equal(fx_admin_call(f, "POST", "/healthz", NULL, "{}", NULL), 405);
}

static void
test_stopping_is_503(void **state)
{
    struct fx *f = fx_new(state, sizeof(*f), false, 1, NULL);
    const char req[] = "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n";
    struct h_resp r;
    char what[64];
    int fd;

    f->admin_port = h_free_port();
    f->grace_ms = 5000;
    assert_int_equal(fx_write_conf(f), 0);
    assert_int_equal(fx_start_proxy(f, 1), 0);
    assert_int_equal(h_backend_set(f->port[0][0], "delay_ms=1500"), 0);
    fd = h_connect(f->proxy_port);
    assert_true(fd >= 0);
    assert_int_equal(h_send_all(fd, req, strlen(req)), 0);
    assert_true(h_backend_wait_stat(f->port[0][0], "heads", 1, 3000) >= 1);
    assert_int_equal(kill(f->proxy, SIGTERM), 0);
    assert_int_equal(h_wait_log(f->log, "no new connections", 3000), 0);
    assert_int_equal(healthz(f, what, sizeof(what)), 503);
    assert_string_equal(what, "stopping");
    memset(&r, 0, sizeof(r));
    assert_int_equal(h_read_response(fd, &r), 0);   /* the request in flight finishes */
    assert_int_equal(r.status, 200);
    h_resp_free(&r);
    close(fd);
    assert_int_equal(h_wait_exit(f->proxy, 5000), 0);
    f->proxy = 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_serving_without_token, fx_teardown),
        cmocka_unit_test_teardown(test_stopping_is_503, fx_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
