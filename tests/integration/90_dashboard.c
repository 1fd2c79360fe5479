/*
 * The dashboard (GET / on admin.listen, docs/dashboard.md) in a real
 * headless Chromium (tests/harness/cdp.h): it renders the status with a
 * read token, shows a `cutoverctl weight` within a second, refuses the
 * rollback button to a read token (nothing changes) and rolls back with an
 * operate token after the confirmation, and shows a hostile reason as text
 * (no script runs, no element is made of it); no exception, no CSP
 * violation. Without the browser: the page's headers (CSP, nosniff,
 * framing), a page with no inline script or style and a script with no
 * HTML sink or eval; GET /v1/events needs a token, streams a status frame
 * at once and another within a second, is capped (503 beyond, room again
 * once a stream closes), and a stream that does not read is dropped while
 * the endpoint keeps answering.
 * CUTOVER_SCREENSHOT=PATH keeps the browser test's screenshot there (the
 * one in docs/ is made this way).
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

#include "admin/events.h"
#include "tests/harness/cdp.h"
#include "tests/integration/fixture.h"

#define TOK_READ    "read-secret-0123456789"
#define TOK_OPERATE "operate-secret-0123456789"
#define TOK_ADMIN   "admin-secret-0123456789"
#define HOSTILE     "<script>window.__pwned=1</script><img src=x onerror=\"window.__pwned=2\">"

static struct fx *
start(void **state)
{
    struct fx *f = fx_new(state, sizeof(*f), false, 1,
                          ",\"plan\": {\"steps\": [10, 50, 100], \"bake_s\": 30}"
                          ",\"health\": {\"type\": \"http\", \"path\": \"/healthz\", "
                          "\"interval_ms\": 500, \"timeout_ms\": 400}");

    f->admin_port = h_free_port();
    assert_int_equal(fx_admin_tokens(f, "reader read " TOK_READ "\n"
                                        "ops operate " TOK_OPERATE "\n"
                                        "root admin " TOK_ADMIN "\n"), 0);
    assert_int_equal(fx_write_conf(f), 0);
    assert_int_equal(fx_start_proxy(f, 1), 0);
    return f;
}

/* ---- in the browser ------------------------------------------------------ */

#define CARD "document.querySelector('[data-service=\"web\"]')"

/* Enters <token> in the page's form, as typed, and waits for the stream. */
static void
page_connect(struct h_cdp *b, const char *token)
{
    json_decref(h_cdp_eval(b, "document.getElementById('token').focus()", 5000));
    assert_int_equal(h_cdp_type(b, token), 0);
    json_decref(h_cdp_eval(b, "document.getElementById('connect').click()", 5000));
    assert_true(h_cdp_wait(b, "document.getElementById('conn').textContent === 'live' && "
                           CARD " !== null", 5000) >= 0);
}

/* Clicks the rollback button, types <reason> in the confirmation and
 * confirms. */
static void
page_rollback(struct h_cdp *b, const char *reason)
{
    json_decref(h_cdp_eval(b, CARD ".querySelector('.rb').click()", 5000));
    assert_true(h_cdp_wait(b, "!" CARD ".querySelector('.confirm').hidden", 2000) >= 0);
    json_decref(h_cdp_eval(b, CARD ".querySelector('.rb-reason').focus()", 5000));
    assert_int_equal(h_cdp_type(b, reason), 0);
    json_decref(h_cdp_eval(b, CARD ".querySelector('.rb-yes').click()", 5000));
}

static void
test_browser(void **state)
{
    struct fx *f = start(state);
    char url[128], dir[600], log[600], png[600], text[4096], out[4096];
    const char *keep = getenv("CUTOVER_SCREENSHOT");
    struct h_cdp *b;
    long long t0;
    long took;

    snprintf(dir, sizeof(dir), "%s/browser", f->dir);
    snprintf(log, sizeof(log), "%s/browser.log", f->dir);
    b = h_cdp_start(dir, log, 1280, 1000);
    assert_non_null(b);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", f->admin_port);
    assert_int_equal(h_cdp_navigate(b, url, 10000), 0);
    assert_int_equal(h_cdp_eval_str(b, "document.title", text, sizeof(text)), 0);
    assert_string_equal(text, "cutover");

    /* a read token: the page renders the status */
    page_connect(b, TOK_READ);
    assert_true(h_cdp_wait(b, CARD ".querySelector('.weight').textContent === "
                           "'weight 0% to new'", 3000) >= 0);
    assert_true(h_cdp_wait(b, CARD ".querySelector('.state').textContent === 'steady'",
                           3000) >= 0);
    assert_true(h_cdp_wait(b, CARD ".querySelectorAll('.srv.up').length === 2", 5000) >= 0);
    assert_true(h_cdp_wait(b, CARD ".querySelectorAll('.step').length === 3", 3000) >= 0);
    /* some traffic for the charts */
    fx_drive(f, 30, 0, NULL, NULL, NULL);

    /* cutoverctl weight shows within a second */
    t0 = h_now_ms();
    assert_int_equal(h_ctl(f->sock, out, sizeof(out), "weight", "20", NULL), 0);
    took = h_cdp_wait(b, CARD ".querySelector('.weight').textContent === 'weight 20% to new'",
                      1000);
    assert_true(took >= 0);
    print_message("weight 20 shown %lld ms after cutoverctl started\n", h_now_ms() - t0);
    assert_true(h_now_ms() - t0 <= 1000);

    /* the rollback button with a read token: refused, nothing changes */
    page_rollback(b, "not allowed");
    assert_true(h_cdp_wait(b, CARD ".querySelector('.result').textContent.includes("
                           "'rollback: refused (403, needs a token of level operate)')",
                           3000) >= 0);
    fx_expect_state(f, "steady", 20);

    /* an operate token: the rollback happens, its hostile reason shown as text */
    json_decref(h_cdp_eval(b, "document.getElementById('forget').click()", 5000));
    assert_true(h_cdp_wait(b, CARD " === null", 2000) >= 0);
    page_connect(b, TOK_OPERATE);
    page_rollback(b, HOSTILE);
    assert_true(h_cdp_wait(b, CARD ".querySelector('.result').textContent === 'rollback: done'",
                           3000) >= 0);
    assert_true(h_cdp_wait(b, CARD ".querySelector('.state').textContent === 'rolled_back' && "
                           CARD ".querySelector('.weight').textContent === 'weight 0% to new'",
                           2000) >= 0);
    fx_expect_state(f, "rolled_back", 0);
    assert_true(h_cdp_wait(b, CARD ".querySelector('.why').textContent.includes("
                           "'by token:ops (rollback): " HOSTILE "')", 3000) >= 0);
    assert_true(h_cdp_wait(b, "[...document.querySelectorAll('#audit td')].some("
                           "(td) => td.textContent === '" HOSTILE "')", 3000) >= 0);
    assert_int_equal(h_cdp_eval_str(b, "String(window.__pwned) + ' ' + document.scripts.length"
                                    " + ' ' + document.images.length", text, sizeof(text)), 0);
    assert_string_equal(text, "undefined 1 0");

    snprintf(png, sizeof(png), "%s/dashboard.png", f->dir);
    assert_int_equal(h_cdp_screenshot(b, keep != NULL && keep[0] != '\0' ? keep : png), 0);
    if (h_cdp_exceptions(b) > 0 || strstr(h_cdp_log(b), "Content Security Policy") != NULL)
        fprintf(stderr, "%s", h_cdp_log(b));
    assert_int_equal(h_cdp_exceptions(b), 0);
    assert_null(strstr(h_cdp_log(b), "Content Security Policy"));
    h_cdp_stop(b);
    fx_stop_clean(f);
}

/* ---- without the browser ------------------------------------------------- */

static void
test_page_headers(void **state)
{
    struct fx *f = start(state);
    char v[1024];
    struct h_resp r;
    const char *p;

    memset(&r, 0, sizeof(r));
    assert_int_equal(h_get(f->admin_port, "/", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(h_resp_header(&r, "Content-Type", v, sizeof(v)));
    assert_string_equal(v, "text/html; charset=utf-8");
    assert_non_null(h_resp_header(&r, "Content-Security-Policy", v, sizeof(v)));
    assert_non_null(strstr(v, "default-src 'none'"));
    assert_non_null(strstr(v, "script-src 'self';"));
    assert_non_null(strstr(v, "frame-ancestors 'none'"));
    assert_null(strstr(v, "unsafe"));
    assert_non_null(h_resp_header(&r, "X-Content-Type-Options", v, sizeof(v)));
    assert_string_equal(v, "nosniff");
    assert_non_null(h_resp_header(&r, "X-Frame-Options", v, sizeof(v)));
    /* no inline script or style: every <script> has a src, no style attribute */
    for (p = r.body; (p = strstr(p, "<script")) != NULL; p++)
        assert_true(strncmp(p, "<script src=", 12) == 0);
    assert_null(strstr(r.body, "<style"));
    assert_null(strstr(r.body, "style="));
    assert_null(strstr(r.body, "http://"));
    assert_null(strstr(r.body, "https://"));
    h_resp_free(&r);

    assert_int_equal(h_get(f->admin_port, "/dash.js", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(h_resp_header(&r, "Content-Type", v, sizeof(v)));
    assert_string_equal(v, "text/javascript; charset=utf-8");
    assert_non_null(h_resp_header(&r, "Content-Security-Policy", v, sizeof(v)));
    /* no HTML sink, no eval, no outside URL (the SVG namespace aside) */
    assert_null(strstr(r.body, "innerHTML"));
    assert_null(strstr(r.body, "outerHTML"));
    assert_null(strstr(r.body, "insertAdjacentHTML"));
    assert_null(strstr(r.body, "document.write"));
    assert_null(strstr(r.body, "eval("));
    assert_null(strstr(r.body, "new Function"));
    assert_null(strstr(r.body, "localStorage"));
    assert_null(strstr(r.body, "sessionStorage"));
    assert_null(strstr(r.body, "document.cookie"));
    assert_null(strstr(r.body, "https://"));
    h_resp_free(&r);

    assert_int_equal(h_get(f->admin_port, "/dash.css", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(h_resp_header(&r, "Content-Type", v, sizeof(v)));
    assert_string_equal(v, "text/css; charset=utf-8");
    assert_null(strstr(r.body, "url("));
    h_resp_free(&r);

    /* GET only */
    assert_int_equal(fx_admin_call(f, "POST", "/", TOK_ADMIN, NULL, NULL), 405);
    fx_stop_clean(f);
}

/* Opens GET /v1/events with <token> (NULL: none) and reads the response
 * head into <r> (no body). Returns the fd. */
static int
open_stream(struct fx *f, const char *token, struct h_resp *r)
{
    char req[512], auth[256] = "";
    int fd = h_connect(f->admin_port);

    assert_true(fd >= 0);
    if (token != NULL)
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s\r\n", token);
    snprintf(req, sizeof(req), "GET /v1/events HTTP/1.1\r\nHost: admin\r\n%s\r\n", auth);
    assert_int_equal(h_send_all(fd, req, strlen(req)), 0);
    memset(r, 0, sizeof(*r));
    return fd;
}

/* Reads from <fd> until <buf> holds <n> complete frames ("\n\n" after a
 * "data:" line) or <timeout_ms> passed. Returns the frames seen. */
static int
read_frames(int fd, char *buf, size_t len, int n, int timeout_ms)
{
    long long deadline = h_now_ms() + timeout_ms;
    size_t have = 0;
    int frames = 0;

    buf[0] = '\0';
    while (frames < n && h_now_ms() < deadline && have < len - 1) {
        const char *p;
        ssize_t k;

        h_set_timeout_ms(fd, (int)(deadline - h_now_ms()) + 1);
        k = recv(fd, buf + have, len - 1 - have, 0);
        if (k <= 0)
            break;
        have += (size_t)k;
        buf[have] = '\0';
        for (frames = 0, p = buf; (p = strstr(p, "\ndata: ")) != NULL; p++)
            frames += strstr(p, "\n\n") != NULL;
    }
    return frames;
}

static void
test_events(void **state)
{
    struct fx *f = start(state);
    static char buf[1 << 20];
    int fds[ADM_EVENTS_MAX], fd, i;
    struct h_resp r;
    char *data, *end;
    json_t *frame;
    long long t0;

    /* a token is needed */
    fd = open_stream(f, NULL, &r);
    assert_int_equal(h_read_response(fd, &r), 0);
    assert_int_equal(r.status, 401);
    h_resp_free(&r);
    close(fd);
    fd = open_stream(f, "wrong-secret-0123456789", &r);
    assert_int_equal(h_read_response(fd, &r), 0);
    assert_int_equal(r.status, 401);
    h_resp_free(&r);
    close(fd);

    /* a read token: a frame at once, another within a second */
    t0 = h_now_ms();
    fd = open_stream(f, TOK_READ, &r);
    assert_int_equal(read_frames(fd, buf, sizeof(buf), 1, 1000), 1);
    assert_non_null(strstr(buf, "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(buf, "Content-Type: text/event-stream"));
    assert_non_null(strstr(buf, "\r\n\r\nretry: 2000\n\n"));
    assert_non_null(data = strstr(buf, "\nevent: status\ndata: "));
    data += strlen("\nevent: status\ndata: ");
    assert_non_null(end = strstr(data, "\n\n"));
    *end = '\0';
    assert_non_null(frame = json_loads(data, 0, NULL));
    assert_true(json_is_true(h_json_at(frame, "status.ok")));
    assert_string_equal(json_string_value(h_json_at(frame, "status.services.0.name")), "web");
    assert_true(json_is_true(h_json_at(frame, "audit.ok")));
    json_decref(frame);
    assert_true(read_frames(fd, buf, sizeof(buf), 1, 1500) >= 1);
    assert_true(h_now_ms() - t0 <= 1500);

    /* the cap: ADM_EVENTS_MAX streams, then 503 */
    fds[0] = fd;
    for (i = 1; i < ADM_EVENTS_MAX; i++) {
        fds[i] = open_stream(f, TOK_READ, &r);
        assert_true(read_frames(fds[i], buf, sizeof(buf), 1, 2000) >= 1);
    }
    fd = open_stream(f, TOK_READ, &r);
    assert_int_equal(h_read_response(fd, &r), 0);
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(r.head, "Retry-After: 5"));
    h_resp_free(&r);
    close(fd);
    /* a stream that closes makes room at once */
    close(fds[0]);
    t0 = h_now_ms();
    for (;;) {
        fd = open_stream(f, TOK_READ, &r);
        if (read_frames(fd, buf, sizeof(buf), 1, 1000) == 1 && strstr(buf, " 200 OK") != NULL)
            break;
        close(fd);
        assert_true(h_now_ms() - t0 < 500);     /* the EOF frees it, no write needed */
        h_sleep_ms(50);
    }
    fds[0] = fd;
    for (i = 0; i < ADM_EVENTS_MAX; i++)
        close(fds[i]);
    fx_stop_clean(f);
}

static void
test_slow_stream_dropped(void **state)
{
    struct fx *f = start(state);
    char reason[1001], out[256];
    int fd, rcv = 4096, i;
    struct h_resp r;
    long long t0;

    /* long audit entries make big frames: the stream falls behind fast */
    memset(reason, 'x', sizeof(reason) - 1);
    reason[sizeof(reason) - 1] = '\0';
    for (i = 0; i < 20; i++)
        assert_int_equal(h_ctl(f->sock, out, sizeof(out), "rollback", "--reason", reason,
                               NULL), 0);
    /* a client that reads nothing, with a small receive buffer */
    fd = open_stream(f, TOK_READ, &r);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
    t0 = h_now_ms();
    assert_int_equal(h_wait_log(f->log, "events: stream of 127.0.0.1 dropped", 20000), 0);
    print_message("a stream that reads nothing dropped after %lld ms\n", h_now_ms() - t0);
    /* the endpoint answered all along */
    assert_int_equal(fx_admin_call(f, "GET", "/status", NULL, NULL, NULL), 200);
    close(fd);
    fx_stop_clean(f);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_browser, fx_teardown),
        cmocka_unit_test_teardown(test_page_headers, fx_teardown),
        cmocka_unit_test_teardown(test_events, fx_teardown),
        cmocka_unit_test_teardown(test_slow_stream_dropped, fx_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
