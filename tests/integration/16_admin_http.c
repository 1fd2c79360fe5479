/*
 * The HTTP admin endpoint (admin.listen) and the admin socket's audit
 * trail: GET /status without a token; POST /v1/<cmd> refused 401 (after
 * the delay, audited, no secret in the audit) without or with a wrong
 * token; levels read/operate/admin decided on the service's state (403,
 * audited, nothing changed); protocol errors (413, 400 and close, too deep
 * JSON); a token file readable by others stops cutoverd (and `-t`);
 * admin.read_token_required; cutoverctl's audit entries carry uid and pid;
 * a reason is printable text, and cutoverctl escapes what it prints.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/integration/fixture.h"

#define TOK_READ    "read-secret-0123456789"
#define TOK_OPERATE "operate-secret-0123456789"
#define TOK_ADMIN   "admin-secret-0123456789"

struct hx {
    struct fx f;                 /* f.admin_port: admin.listen */
    char tokens[512];
};

static void
write_tokens(struct hx *x, mode_t mode)
{
    assert_int_equal(h_write_file(x->tokens,
                                  "# name level secret\n"
                                  "reader read " TOK_READ "\n"
                                  "ops operate " TOK_OPERATE "\n"
                                  "root admin " TOK_ADMIN "\n"), 0);
    assert_int_equal(chmod(x->tokens, mode), 0);
}

static struct hx *
setup_x(void **state, const char *admin_extra)
{
    struct hx *x = fx_new(state, sizeof(*x), false, 1, NULL);

    x->f.admin_port = h_free_port();
    snprintf(x->tokens, sizeof(x->tokens), "%s/admin.tokens", x->f.dir);
    write_tokens(x, 0600);
    x->f.workers = 0;            /* cutoverd's default: one per CPU */
    snprintf(x->f.admin_extra, sizeof(x->f.admin_extra), ", \"token_file\": \"%s\"%s",
             x->tokens, admin_extra);
    assert_int_equal(fx_write_conf(&x->f), 0);
    return x;
}

static struct hx *
start(void **state, const char *admin_extra)
{
    struct hx *x = setup_x(state, admin_extra);

    assert_int_equal(fx_start_proxy(&x->f, 1), 0);   /* and admin.listen */
    return x;
}

/* One request on a fresh connection: <method> <path>, <token> (NULL: no
 * Authorization), <body> (NULL: none). Fills <r>; returns the fd (still
 * open, for close checks) or fails. */
static int
request(struct hx *x, const char *method, const char *path, const char *token,
        const char *body, struct h_resp *r)
{
    char head[1024], auth[256] = "";
    int fd = h_connect(x->f.admin_port);

    assert_true(fd >= 0);
    if (token != NULL)
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s\r\n", token);
    snprintf(head, sizeof(head), "%s %s HTTP/1.1\r\nHost: admin\r\n%sContent-Length: %zu\r\n"
             "Content-Type: application/json\r\n\r\n", method, path, auth,
             body != NULL ? strlen(body) : 0);
    assert_int_equal(h_send_all(fd, head, strlen(head)), 0);
    if (body != NULL)
        assert_int_equal(h_send_all(fd, body, strlen(body)), 0);
    memset(r, 0, sizeof(*r));
    if (h_read_response(fd, r) < 0)
        fail_msg("%s %s: no response", method, path);
    return fd;
}

/* request() and close; returns the status, <json> gets the parsed body
 * when not NULL (caller decrefs). */
static int
call(struct hx *x, const char *method, const char *path, const char *token,
     const char *body, json_t **json)
{
    struct h_resp r;
    json_error_t je;
    int fd = request(x, method, path, token, body, &r), status = r.status;

    close(fd);
    if (json != NULL) {
        *json = json_loadb(r.body != NULL ? r.body : "", r.body_len, 0, &je);
        if (*json == NULL)
            fail_msg("%s %s: %d, body not JSON: %.*s", method, path, r.status,
                     (int)r.body_len, r.body != NULL ? r.body : "");
    }
    h_resp_free(&r);
    return status;
}

static const char *
jstr(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));

    return s != NULL ? s : "";
}

/* The last audit entry with action <action> (new reference), or NULL. */
static json_t *
last_audit(struct hx *x, const char *action)
{
    json_t *all = fx_audit(&x->f, NULL), *e, *found = NULL;
    size_t i;

    json_array_foreach(all, i, e) {
        if (strcmp(jstr(e, "action"), action) == 0)
            found = e;
    }
    json_incref(found);
    json_decref(all);
    return found;
}

static int
audit_count(struct hx *x, const char *action)
{
    char *text = h_read_file(x->f.audit), needle[64], *p;
    int n = 0;

    if (text == NULL)
        return 0;
    snprintf(needle, sizeof(needle), "\"action\":\"%s\"", action);
    for (p = text; (p = strstr(p, needle)) != NULL; p++)
        n++;
    free(text);
    return n;
}

static void
test_status_without_token(void **state)
{
    struct hx *x = start(state, "");
    json_t *j, *svc;
    struct h_resp r;
    char ct[128];
    int fd;

    assert_int_equal(call(x, "GET", "/status", NULL, NULL, &j), 200);
    assert_true(json_is_true(json_object_get(j, "ok")));
    svc = json_array_get(json_object_get(j, "services"), 0);
    assert_string_equal(jstr(svc, "name"), "web");
    assert_non_null(json_object_get(svc, "legacy"));
    json_decref(j);

    /* the same JSON as cutoverctl --json status: keep-alive, two requests */
    fd = request(x, "GET", "/status", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(h_resp_header(&r, "Content-Type", ct, sizeof(ct)));
    assert_string_equal(ct, "application/json");
    assert_false(r.closed);
    h_resp_free(&r);
    {
        static const char again[] = "GET /status HTTP/1.1\r\nHost: a\r\n\r\n";

        assert_int_equal(h_send_all(fd, again, sizeof(again) - 1), 0);
    }
    assert_int_equal(h_read_response(fd, &r), 0);
    assert_int_equal(r.status, 200);
    h_resp_free(&r);
    close(fd);

    /* metrics: the exposition format, readable without a token */
    fd = request(x, "GET", "/metrics", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(h_resp_header(&r, "Content-Type", ct, sizeof(ct)));
    assert_string_equal(ct, "text/plain; version=0.0.4; charset=utf-8");
    assert_non_null(strstr(r.body, "\ncutover_weight_percent{service=\"web\"} "));
    h_resp_free(&r);
    close(fd);

    assert_int_equal(call(x, "GET", "/nothing", NULL, NULL, NULL), 404);
    assert_int_equal(call(x, "POST", "/status", NULL, NULL, NULL), 405);
    assert_int_equal(call(x, "GET", "/v1/status", TOK_ADMIN, NULL, NULL), 405);
}

static void
test_tokens_and_levels(void **state)
{
    struct hx *x = start(state, "");
    struct fx *f = &x->f;
    struct h_resp r;
    long long t0;
    char hdr[128], out[4096];
    json_t *j, *e;
    int fd;

    /* no token: 401 with WWW-Authenticate, after the delay, closed, audited */
    t0 = h_now_ms();
    fd = request(x, "POST", "/v1/weight", NULL, "{\"percent\":10}", &r);
    assert_int_equal(r.status, 401);
    assert_true(h_now_ms() - t0 >= 150);
    assert_non_null(h_resp_header(&r, "WWW-Authenticate", hdr, sizeof(hdr)));
    assert_int_equal(strncmp(hdr, "Bearer", 6), 0);
    assert_true(r.closed || h_peer_closed(fd, 5000));
    h_resp_free(&r);
    close(fd);
    e = last_audit(x, "auth_refused");
    assert_non_null(e);
    assert_string_equal(jstr(e, "actor"), "http:127.0.0.1");
    assert_non_null(strstr(jstr(e, "reason"), "no Authorization"));
    json_decref(e);

    /* a wrong token: 401 after the delay, audited without the token */
    t0 = h_now_ms();
    assert_int_equal(call(x, "POST", "/v1/weight", "wrong-secret-0123456789",
                          "{\"percent\":10}", NULL), 401);
    assert_true(h_now_ms() - t0 >= 150);
    assert_int_equal(audit_count(x, "auth_refused"), 2);
    e = last_audit(x, "auth_refused");
    assert_non_null(strstr(jstr(e, "reason"), "unknown token"));
    json_decref(e);
    {
        char *a = h_read_file(f->audit), *l = h_read_file(f->log);

        assert_null(strstr(a, "wrong-secret"));
        assert_null(strstr(l, "wrong-secret"));
        free(a);
        free(l);
    }
    assert_true(fx_weight(f) == 0);

    /* read: status yes, weight no (403, audited, nothing changed) */
    assert_int_equal(call(x, "POST", "/v1/status", TOK_READ, NULL, NULL), 200);
    assert_int_equal(call(x, "POST", "/v1/weight", TOK_READ, "{\"percent\":10}", &j), 403);
    assert_string_equal(jstr(j, "required_level"), "operate");
    json_decref(j);
    assert_true(fx_weight(f) == 0);
    e = last_audit(x, "refused");
    assert_non_null(e);
    assert_string_equal(jstr(e, "actor"), "token:reader");
    assert_non_null(strstr(jstr(e, "reason"), "weight 10 needs level operate"));
    json_decref(e);

    /* operate: weight 10 yes */
    assert_int_equal(call(x, "POST", "/v1/weight", TOK_OPERATE, "{\"percent\":10}", &j), 200);
    assert_true(json_is_true(json_object_get(j, "ok")));
    json_decref(j);
    assert_true(fx_weight(f) == 10);
    e = last_audit(x, "weight");
    assert_string_equal(jstr(e, "actor"), "token:ops");
    assert_null(json_object_get(e, "pid"));
    json_decref(e);
    assert_int_equal(fx_ctl(f, out, "audit"), 0);
    assert_non_null(strstr(out, "token:ops"));

    /* operate: weight 100 and promote no */
    assert_int_equal(call(x, "POST", "/v1/weight", TOK_OPERATE, "{\"percent\":100}", NULL), 403);
    assert_int_equal(call(x, "POST", "/v1/promote", TOK_OPERATE, "{}", &j), 403);
    assert_string_equal(jstr(j, "required_level"), "admin");
    json_decref(j);
    assert_true(fx_weight(f) == 10);
    /* cutoverctl shows a refusal without a "from -> to": nothing changed */
    assert_int_equal(fx_ctl(f, out, "audit", "-n", "1"), 0);
    assert_non_null(strstr(out, "  token:ops  refused  reason \"promote needs level admin"));
    assert_null(strstr(out, "->"));

    /* admin: promote yes */
    assert_int_equal(call(x, "POST", "/v1/promote", TOK_ADMIN, NULL, NULL), 200);
    assert_true(fx_weight(f) == 100);

    /* operate: rollback yes; then a weight would clear the latch: admin only */
    assert_int_equal(call(x, "POST", "/v1/rollback", TOK_OPERATE,
                          "{\"reason\":\"bad deploy\"}", NULL), 200);
    assert_true(fx_weight(f) == 0);
    assert_int_equal(call(x, "POST", "/v1/weight", TOK_OPERATE, "{\"percent\":5}", &j), 403);
    assert_non_null(strstr(jstr(j, "error"), "clears the latch"));
    json_decref(j);
    {
        char st[32];

        assert_string_equal(fx_state(f, st, sizeof(st)), "rolled_back");
    }
    assert_int_equal(call(x, "POST", "/v1/weight", TOK_ADMIN, "{\"percent\":5}", NULL), 200);
    assert_true(fx_weight(f) == 5);

    /* the control plane's own refusal: 409 */
    assert_int_equal(call(x, "POST", "/v1/weight", TOK_ADMIN, "{\"percent\":101}", &j), 409);
    assert_false(json_is_true(json_object_get(j, "ok")));
    json_decref(j);
    assert_int_equal(call(x, "POST", "/v1/plan", TOK_ADMIN, "{\"action\":\"start\"}", NULL),
                     409);
    assert_true(fx_weight(f) == 5);
}

static void
test_bad_requests(void **state)
{
    struct hx *x = start(state, "");
    struct fx *f = &x->f;
    static const char big_head[] =
        "POST /v1/weight HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer " TOK_ADMIN "\r\n"
        "Content-Length: 70000\r\n\r\n";
    char deep[256];
    struct h_resp r;
    json_t *j;
    int fd, i;

    /* oversized body: 413 at the head, closed */
    fd = h_connect(x->f.admin_port);
    assert_true(fd >= 0);
    assert_int_equal(h_send_all(fd, big_head, sizeof(big_head) - 1), 0);
    assert_int_equal(h_read_response(fd, &r), 0);
    assert_int_equal(r.status, 413);
    assert_true(r.closed || h_peer_closed(fd, 5000));
    h_resp_free(&r);
    close(fd);

    /* garbage: 400 and closed */
    fd = h_connect(x->f.admin_port);
    assert_true(fd >= 0);
    assert_int_equal(h_send_all(fd, "HELLO THERE\r\n\r\n", 15), 0);
    assert_int_equal(h_read_response(fd, &r), 0);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(r.body, "\"ok\":false"));
    assert_true(r.closed || h_peer_closed(fd, 5000));
    h_resp_free(&r);
    close(fd);

    /* chunked: 411 */
    fd = h_connect(x->f.admin_port);
    {
        static const char chunked[] = "POST /v1/status HTTP/1.1\r\nHost: a\r\n"
                                      "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n";

        assert_int_equal(h_send_all(fd, chunked, sizeof(chunked) - 1), 0);
    }
    assert_int_equal(h_read_response(fd, &r), 0);
    assert_int_equal(r.status, 411);
    h_resp_free(&r);
    close(fd);

    /* too deep JSON: 400, nothing changed */
    snprintf(deep, sizeof(deep), "{\"percent\":10,\"x\":");
    for (i = 0; i < 10; i++)
        strcat(deep, "[");
    for (i = 0; i < 10; i++)
        strcat(deep, "]");
    strcat(deep, "}");
    assert_int_equal(call(x, "POST", "/v1/weight", TOK_ADMIN, deep, &j), 400);
    assert_non_null(strstr(jstr(j, "error"), "nested deeper"));
    json_decref(j);

    /* bad JSON, a body that is not an object, a differing cmd, an unknown command */
    assert_int_equal(call(x, "POST", "/v1/weight", TOK_ADMIN, "{\"percent\":", NULL), 400);
    assert_int_equal(call(x, "POST", "/v1/weight", TOK_ADMIN, "[10]", NULL), 400);
    assert_int_equal(call(x, "POST", "/v1/weight", TOK_ADMIN,
                          "{\"cmd\":\"promote\",\"percent\":10}", NULL), 400);
    assert_int_equal(call(x, "POST", "/v1/explode", TOK_ADMIN, "{}", &j), 400);
    assert_non_null(strstr(jstr(j, "error"), "unknown command"));
    json_decref(j);
    assert_true(fx_weight(f) == 0);

    /* the daemon is fine and the socket still works */
    assert_int_equal(call(x, "GET", "/status", NULL, NULL, NULL), 200);
}

static void
test_token_file_mode_refused(void **state)
{
    struct hx *x = setup_x(state, "");
    struct fx *f = &x->f;
    char *argv_t[] = { (char *)h_bin("cutoverd"), "-t", "-c", f->conf, NULL };
    char *argv[] = { (char *)h_bin("cutoverd"), "-c", f->conf, NULL };
    char *log;
    pid_t pid;

    assert_int_equal(chmod(x->tokens, 0644), 0);
    pid = h_spawn(argv, f->log);
    assert_true(pid > 0);
    assert_int_equal(h_wait_exit(pid, 10000), 1);
    log = h_read_file(f->log);
    assert_non_null(strstr(log, x->tokens));
    assert_non_null(strstr(log, "mode 0644"));
    free(log);
    assert_int_equal(access(f->sock, F_OK), -1);

    /* -t reports it too */
    pid = h_spawn(argv_t, f->log);
    assert_true(pid > 0);
    assert_int_equal(h_wait_exit(pid, 10000), 1);

    /* and with the mode fixed, -t passes */
    assert_int_equal(chmod(x->tokens, 0600), 0);
    pid = h_spawn(argv_t, f->log);
    assert_true(pid > 0);
    assert_int_equal(h_wait_exit(pid, 10000), 0);

    /* a missing token file: -t warns (secrets come later), the daemon refuses */
    assert_int_equal(unlink(x->tokens), 0);
    unlink(f->log);
    pid = h_spawn(argv_t, f->log);
    assert_true(pid > 0);
    assert_int_equal(h_wait_exit(pid, 10000), 0);
    log = h_read_file(f->log);
    assert_non_null(strstr(log, "does not exist (yet)"));
    free(log);
    pid = h_spawn(argv, f->log);
    assert_true(pid > 0);
    assert_int_equal(h_wait_exit(pid, 10000), 1);
    log = h_read_file(f->log);
    assert_non_null(strstr(log, "cannot open the token file"));
    free(log);
}

/* Runs cutoverd -t on <conf_text>; returns its exit code, its output in <log>. */
static int
check_conf(struct hx *x, const char *conf_text, char **log)
{
    struct fx *f = &x->f;
    char *argv[] = { (char *)h_bin("cutoverd"), "-t", "-c", f->conf, NULL };
    pid_t pid;
    int rc;

    assert_int_equal(h_write_file(f->conf, conf_text), 0);
    unlink(f->log);
    pid = h_spawn(argv, f->log);
    assert_true(pid > 0);
    rc = h_wait_exit(pid, 10000);
    *log = h_read_file(f->log);
    assert_non_null(*log);
    return rc;
}

static void
test_conf_keys(void **state)
{
    struct hx *x = setup_x(state, "");
    char conf[2048], *log;

    snprintf(conf, sizeof(conf), "{\"admin\": {\"socket\": \"%s\", \"socket_group\": "
             "\"no-such-group-here\"}, \"services\": [{\"name\": \"web\", \"listen\": "
             "[\"127.0.0.1:%d\"], \"legacy\": {\"servers\": [\"127.0.0.1:1\"]}, "
             "\"new\": {\"servers\": [\"127.0.0.1:2\"]}}]}\n", x->f.sock, x->f.proxy_port);
    assert_int_equal(check_conf(x, conf, &log), 1);
    assert_non_null(strstr(log, "admin.socket_group: no group named \"no-such-group-here\""));
    free(log);

    snprintf(conf, sizeof(conf), "{\"admin\": {\"socket\": \"%s\", \"socket_group\": "
             "\"0\", \"read_token_required\": false}, \"services\": [{\"name\": \"web\", "
             "\"listen\": [\"127.0.0.1:%d\"], \"legacy\": {\"servers\": [\"127.0.0.1:1\"]}, "
             "\"new\": {\"servers\": [\"127.0.0.1:2\"]}}]}\n", x->f.sock, x->f.proxy_port);
    assert_int_equal(check_conf(x, conf, &log), 0);
    free(log);

    snprintf(conf, sizeof(conf), "{\"admin\": {\"socket\": \"%s\", \"listen\": "
             "\"127.0.0.1:%d\", \"read_token_required\": true}, \"services\": [{\"name\": "
             "\"web\", \"listen\": [\"127.0.0.1:%d\"], \"legacy\": {\"servers\": "
             "[\"127.0.0.1:1\"]}, \"new\": {\"servers\": [\"127.0.0.1:2\"]}}]}\n", x->f.sock,
             x->f.admin_port, x->f.proxy_port);
    assert_int_equal(check_conf(x, conf, &log), 1);
    assert_non_null(strstr(log, "admin.read_token_required: needs admin.token_file"));
    free(log);
}

/* Connections without a valid token never lock anybody out: 32 that send
 * a byte each (over the 8 such connections allowed) do not stop a request
 * with or without a token from being answered at once; once they have had
 * their second, the next new connection closes all but 8 of them, oldest
 * first. Traffic is not affected. */
static void
test_connection_limit(void **state)
{
    struct hx *x = start(state, "");
    int fds[32], i;
    struct h_resp r;

    for (i = 0; i < 32; i++) {
        fds[i] = h_connect(x->f.admin_port);
        assert_true(fds[i] >= 0);
        /* a byte each, so each is surely accepted before the next */
        assert_int_equal(h_send_all(fds[i], "G", 1), 0);
    }
    assert_int_equal(call(x, "GET", "/status", NULL, NULL, NULL), 200);
    assert_int_equal(call(x, "POST", "/v1/status", TOK_READ, NULL, NULL), 200);
    for (i = 0; i < 32; i++)
        assert_false(h_peer_closed(fds[i], 0));
    h_sleep_ms(1100);
    assert_int_equal(call(x, "GET", "/status", NULL, NULL, NULL), 200);
    for (i = 0; i < 25; i++)
        if (!h_peer_closed(fds[i], 2000))
            fail_msg("connection %d of 32 is still open", i);
    for (i = 25; i < 32; i++)
        assert_false(h_peer_closed(fds[i], 100));
    /* the proxy still serves */
    assert_int_equal(h_get(x->f.proxy_port, "/", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    h_resp_free(&r);
    for (i = 0; i < 32; i++)
        close(fds[i]);
}

/* Bytes of <text> that a terminal would act on: ESC, the C1 CSI, a
 * bidirectional override. NULL when there is none. */
static const char *
raw_control(const char *text)
{
    const char *p;

    if ((p = strchr(text, '\x1b')) != NULL)
        return p;
    if ((p = strstr(text, "\xc2\x9b")) != NULL)
        return p;
    return strstr(text, "\xe2\x80\xae");
}

/* A reason is one line of printable text: over HTTP (operate token) and
 * from cutoverctl one that is not is refused and changes nothing. And
 * cutoverctl escapes what it prints: an audit entry written before the
 * rule, whose reason holds a fake "promote" line, escape sequences, a C1
 * control and a bidirectional override, is printed on one line, escaped,
 * with --json too; an error that echoes a service name with an escape
 * sequence is escaped on stderr. */
static void
test_reason_text(void **state)
{
    static const char old_entry[] =
        "{\"ts\":\"2026-01-01T00:00:00.000Z\",\"service\":\"web\",\"actor\":\"token:ops\","
        "\"action\":\"rollback\",\"from\":10,\"to\":0,\"reason\":\"x\\n2026-01-01T00:00:01."
        "000Z  web  uid:0  promote  0.00% -> 100.00%  generation 9\\u001b[2J\\u009b31m"
        "\\u202eevil\",\"generation\":2}\n";
    struct hx *x = setup_x(state, "");
    struct fx *f = &x->f;
    char out[8192], svc[64];
    json_t *j, *e;
    const char *reason, *line;
    int n;

    assert_int_equal(h_write_file(f->audit, old_entry), 0);
    assert_int_equal(fx_start_proxy(f, 1), 0);
    fx_ctl_ok(f, "weight", "10");

    assert_int_equal(call(x, "POST", "/v1/rollback", TOK_OPERATE,
                          "{\"reason\":\"ok\\n2026-01-01T00:00:02.000Z  web  uid:0  promote\"}",
                          &j), 409);
    assert_non_null(strstr(jstr(j, "error"), "must be one line of printable text"));
    json_decref(j);
    assert_int_equal(call(x, "POST", "/v1/rollback", TOK_OPERATE,
                          "{\"reason\":\"\\u001b]0;owned\\u0007\"}", NULL), 409);
    assert_int_equal(fx_ctl(f, out, "rollback", "--reason", "two\nlines"), 2);
    assert_non_null(strstr(h_ctl_err(), "--reason must be one line of printable text"));
    fx_expect_state(f, "steady", 10);
    assert_int_equal(audit_count(x, "rollback"), 1);          /* the old one only */

    /* the old entry: one line of output per entry, escaped (the entries are
     * the old rollback, the weight, and whatever the start audited about
     * the old entry's generation, which no state file holds) */
    j = h_ctl_json(f->sock, "audit", (char *)NULL);
    assert_non_null(j);
    assert_true(json_array_size(json_object_get(j, "entries")) >= 2);
    assert_int_equal(fx_ctl(f, out, "audit"), 0);
    assert_null(raw_control(out));
    for (n = 0, line = out; (line = strchr(line, '\n')) != NULL; line++)
        n++;
    assert_int_equal(n, (int)json_array_size(json_object_get(j, "entries")));
    json_decref(j);
    assert_non_null(strstr(out, "reason \"x\\n2026-01-01T00:00:01.000Z  web  uid:0  "
                                "promote  0.00% -> 100.00%  generation 9\\x1b[2J"
                                "\\xc2\\x9b31m\\xe2\\x80\\xaeevil\""));
    /* --json: the same entry, decodable, nothing raw */
    j = h_ctl_json(f->sock, "audit", (char *)NULL);
    assert_non_null(j);
    e = json_array_get(json_object_get(j, "entries"), 0);
    reason = jstr(e, "reason");
    assert_non_null(strstr(reason, "\x1b[2J\xc2\x9b" "31m\xe2\x80\xae" "evil"));
    json_decref(j);
    assert_int_equal(h_ctl(f->sock, out, sizeof(out), "--json", "audit", (char *)NULL), 0);
    assert_null(raw_control(out));
    assert_non_null(strstr(out, "\\u001B[2J\\u009B31m\\u202Eevil"));     /* jansson's case */

    /* an error echoing what was sent */
    snprintf(svc, sizeof(svc), "we\x1b[31mb");
    assert_int_equal(fx_ctl(f, out, "-S", svc, "status"), 1);
    assert_null(raw_control(h_ctl_err()));
    assert_non_null(strstr(h_ctl_err(), "unknown service \"we\\x1b[31mb\""));
}

static void
test_read_token_required(void **state)
{
    struct hx *x = start(state, ", \"read_token_required\": true");

    assert_int_equal(call(x, "GET", "/status", NULL, NULL, NULL), 401);
    assert_int_equal(call(x, "GET", "/status", "nope-nope-nope-nope", NULL, NULL), 401);
    assert_int_equal(call(x, "GET", "/status", TOK_READ, NULL, NULL), 200);
    assert_int_equal(audit_count(x, "auth_refused"), 2);
}

static void
test_socket_audit_uid_pid(void **state)
{
    struct hx *x = start(state, "");
    struct fx *f = &x->f;
    char out[1024], uid[32], *log;
    json_t *e;

    assert_int_equal(fx_ctl(f, out, "weight", "7"), 0);
    e = last_audit(x, "weight");
    assert_non_null(e);
    snprintf(uid, sizeof(uid), "uid:%lu", (unsigned long)getuid());
    assert_string_equal(jstr(e, "actor"), uid);
    /* cutoverctl's pid: a process that existed, not ours */
    assert_true(json_integer_value(json_object_get(e, "pid")) > 0);
    assert_true(json_integer_value(json_object_get(e, "pid")) != getpid());
    json_decref(e);
    /* the log line of the change names both */
    assert_int_equal(h_wait_log(f->log, "weight by uid:", 5000), 0);
    log = h_read_file(f->log);
    assert_non_null(strstr(strstr(log, "weight by uid:"), " pid:"));
    free(log);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_status_without_token, fx_teardown),
        cmocka_unit_test_teardown(test_tokens_and_levels, fx_teardown),
        cmocka_unit_test_teardown(test_bad_requests, fx_teardown),
        cmocka_unit_test_teardown(test_token_file_mode_refused, fx_teardown),
        cmocka_unit_test_teardown(test_read_token_required, fx_teardown),
        cmocka_unit_test_teardown(test_reason_text, fx_teardown),
        cmocka_unit_test_teardown(test_socket_audit_uid_pid, fx_teardown),
        cmocka_unit_test_teardown(test_conf_keys, fx_teardown),
        cmocka_unit_test_teardown(test_connection_limit, fx_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
