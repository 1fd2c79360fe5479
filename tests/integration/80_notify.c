/*
 * 80_notify: notifications (proxy/webhook.c, docs/DESIGN.md
 * "Notifications"). A local receiver (the test backend with --record) gets
 * each subscribed audit entry as a JSON POST with the bearer token; a
 * receiver that is down at first gets the entry once it comes back; one that
 * hangs never delays a rollback and gets the entry when it answers again; a
 * full queue drops its oldest entries and counts them; config errors are
 * precise.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <jansson.h>

#include "tests/integration/fixture.h"

#define TOKEN "hook-secret-0123456789"

struct nf {
    struct fx f;
    int rport;                   /* the receiver's port */
    pid_t receiver;
    char record[600];            /* what it received, one JSON line each */
};

/* Starts the receiver on n->rport, recording into n->record. */
static void
receiver_start(struct nf *n)
{
    const char *const extra[] = { "--record", n->record, NULL };

    n->receiver = h_backend_start_args("receiver", n->rport, n->f.dir, false, extra);
    assert_true(n->receiver > 0);
}

/* A fixture with admin.listen and one webhook to the receiver with
 * <hook_extra> keys (leading comma), the receiver started when <up>. */
static struct nf *
nf_open(void **state, const char *events, const char *hook_extra, bool up)
{
    struct nf *n = fx_new(state, sizeof(*n), false, 1, NULL);
    char tokfile[600];

    n->rport = h_free_port();
    snprintf(n->record, sizeof(n->record), "%s/received.jsonl", n->f.dir);
    snprintf(tokfile, sizeof(tokfile), "%s/hook.token", n->f.dir);
    assert_int_equal(h_write_file(tokfile, TOKEN "\n"), 0);
    assert_int_equal(chmod(tokfile, 0600), 0);
    n->f.admin_port = h_free_port();
    snprintf(n->f.top_extra, sizeof(n->f.top_extra),
             ",\n  \"notify\": { \"webhooks\": [{ \"name\": \"ops\", "
             "\"url\": \"http://127.0.0.1:%d/hook?team=web\", \"events\": [%s], "
             "\"token_file\": \"hook.token\"%s }] }", n->rport, events, hook_extra);
    assert_int_equal(fx_write_conf(&n->f), 0);
    if (up)
        receiver_start(n);
    assert_int_equal(fx_start_proxy(&n->f, 7), 0);
    return n;
}

/* The lines the receiver recorded (a JSON array, caller decrefs). */
static json_t *
received(struct nf *n)
{
    json_t *a = json_array();
    char *text = h_read_file(n->record), *p, *nl;

    for (p = text; p != NULL && *p != '\0'; p = nl + 1) {
        json_t *o;

        if ((nl = strchr(p, '\n')) == NULL)
            break;
        o = json_loadb(p, (size_t)(nl - p), 0, NULL);
        assert_non_null(o);
        json_array_append_new(a, o);
    }
    free(text);
    return a;
}

/* The series <name>{webhook="ops"<more>} now. */
static double
metric(struct nf *n, const char *name, const char *more)
{
    char *text = fx_scrape(&n->f);
    double v = fx_metric(text, "%s{webhook=\"ops\"%s}", name, more);

    free(text);
    return v;
}

/* Waits up to <ms> for metric <name> to reach <want>; returns its value. */
static double
wait_metric(struct nf *n, const char *name, const char *more, double want, int ms)
{
    long long end = h_now_ms() + ms;
    double v;

    while ((v = metric(n, name, more)) < want && h_now_ms() < end)
        h_sleep_ms(50);
    return v;
}

/* The audit entry a recorded request carries. */
static json_t *
entry_of(const json_t *req)
{
    json_t *e = json_loads(json_string_value(json_object_get(req, "body")), 0, NULL);

    assert_non_null(e);
    return e;
}

/* A rollback, timed: returns the ms cutoverctl took. */
static long long
timed_rollback(struct nf *n, const char *reason)
{
    char out[512];
    long long t0 = h_now_ms();

    assert_int_equal(fx_ctl(&n->f, out, "rollback", "--reason", reason), 0);
    return h_now_ms() - t0;
}

/* Only the subscribed action goes out, as the audit log has it, with the
 * token, the event and a delivery id; the queue ends empty. */
static void
test_delivered(void **state)
{
    struct nf *n = nf_open(state, "\"rollback\"", "", true);
    char out[512], head_tok[128];
    json_t *got, *e;
    const char *head;

    fx_ctl_ok(&n->f, "weight", "10");
    timed_rollback(n, "CHG-42 bad deploy");
    assert_true(wait_metric(n, "cutover_notify_sent_total", "", 1, 5000) == 1);
    fx_ctl_ok(&n->f, "weight", "5");   /* not subscribed */
    assert_int_equal(fx_ctl(&n->f, out, "audit"), 0);
    h_sleep_ms(300);                   /* anything wrongly sent would be there now */
    got = received(n);
    assert_int_equal(json_array_size(got), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(got, 0), "target")),
                        "/hook?team=web");
    head = json_string_value(json_object_get(json_array_get(got, 0), "head"));
    assert_non_null(strstr(head, "POST /hook?team=web HTTP/1.1\r\n"));
    snprintf(head_tok, sizeof(head_tok), "\r\nAuthorization: Bearer %s\r\n", TOKEN);
    assert_non_null(strstr(head, head_tok));
    assert_non_null(strstr(head, "\r\nContent-Type: application/json\r\n"));
    assert_non_null(strstr(head, "\r\nX-Cutover-Event: rollback\r\n"));
    assert_non_null(strstr(head, "\r\nX-Cutover-Delivery: "));
    e = entry_of(json_array_get(got, 0));
    assert_string_equal(json_string_value(json_object_get(e, "action")), "rollback");
    assert_string_equal(json_string_value(json_object_get(e, "reason")), "CHG-42 bad deploy");
    assert_string_equal(json_string_value(json_object_get(e, "service")), "web");
    assert_int_equal(json_number_value(json_object_get(e, "from")), 10);
    assert_non_null(json_object_get(e, "generation"));
    assert_non_null(json_object_get(e, "ts"));
    json_decref(e);
    json_decref(got);
    assert_true(metric(n, "cutover_notify_queue", "") == 0);
    assert_true(metric(n, "cutover_notify_failures_total", "") == 0);
}

/* A receiver that is down when the rollback happens gets it once it is up:
 * the rollback itself does not wait. */
static void
test_down_then_back(void **state)
{
    struct nf *n = nf_open(state, "\"rollback\", \"weight\"", "", false);
    json_t *got, *e;
    long long ms;

    fx_ctl_ok(&n->f, "weight", "20");
    ms = timed_rollback(n, "receiver down");
    assert_true(ms < 1000);
    assert_true(wait_metric(n, "cutover_notify_failures_total", "", 1, 3000) >= 1);
    assert_true(metric(n, "cutover_notify_queue", "") == 2);
    receiver_start(n);
    /* retries at 1, 2, 4 s after the first failure: well within 10 s */
    assert_true(wait_metric(n, "cutover_notify_sent_total", "", 2, 10000) == 2);
    got = received(n);
    assert_int_equal(json_array_size(got), 2);     /* in order, each once */
    e = entry_of(json_array_get(got, 0));
    assert_string_equal(json_string_value(json_object_get(e, "action")), "weight");
    json_decref(e);
    e = entry_of(json_array_get(got, 1));
    assert_string_equal(json_string_value(json_object_get(e, "action")), "rollback");
    assert_string_equal(json_string_value(json_object_get(e, "reason")), "receiver down");
    json_decref(e);
    json_decref(got);
    assert_true(metric(n, "cutover_notify_queue", "") == 0);
}

/* A receiver that reads the request and never answers: each attempt ends at
 * timeout_ms, rollbacks and traffic go on undelayed meanwhile, and the
 * entry is delivered (the same delivery id) once it answers again. */
static void
test_hanging(void **state)
{
    struct nf *n = nf_open(state, "\"rollback\"", ", \"timeout_ms\": 300", true);
    json_t *got;
    const char *h0, *h1;
    char id0[64], id1[64];
    struct h_resp r;
    long long ms;
    int i;

    assert_int_equal(h_backend_set(n->rport, "mode=stall"), 0);
    fx_ctl_ok(&n->f, "weight", "30");
    timed_rollback(n, "first");
    assert_true(h_backend_wait_stat(n->rport, "requests", 1, 3000) >= 1);
    /* an attempt is hanging now: the next rollback does not wait for it */
    fx_ctl_ok(&n->f, "weight", "30");
    ms = timed_rollback(n, "second");
    assert_true(ms < 500);
    for (i = 0; i < 5; i++) {
        memset(&r, 0, sizeof(r));
        assert_int_equal(h_get(n->f.proxy_port, "/", NULL, &r), 0);
        assert_int_equal(r.status, 200);
        h_resp_free(&r);
    }
    assert_true(wait_metric(n, "cutover_notify_failures_total", "", 1, 3000) >= 1);
    assert_true(metric(n, "cutover_notify_sent_total", "") == 0);
    assert_int_equal(h_backend_set(n->rport, "mode=normal"), 0);
    assert_true(wait_metric(n, "cutover_notify_sent_total", "", 2, 10000) == 2);
    /* the first two recorded requests are the first entry's attempts */
    got = received(n);
    assert_true(json_array_size(got) >= 3);
    h0 = strstr(json_string_value(json_object_get(json_array_get(got, 0), "head")),
                "X-Cutover-Delivery: ");
    h1 = strstr(json_string_value(json_object_get(json_array_get(got, 1), "head")),
                "X-Cutover-Delivery: ");
    assert_non_null(h0);
    assert_non_null(h1);
    snprintf(id0, sizeof(id0), "%.*s", (int)strcspn(h0, "\r"), h0);
    snprintf(id1, sizeof(id1), "%.*s", (int)strcspn(h1, "\r"), h1);
    assert_string_equal(id0, id1);
    json_decref(got);
}

/* queue 2, receiver down, five entries: three dropped and counted, the two
 * kept delivered when it comes back, the newest last. */
static void
test_queue_full(void **state)
{
    struct nf *n = nf_open(state, "\"*\"", ", \"queue\": 2", false);
    const char *w[5] = { "1", "2", "3", "4", "5" };
    json_t *got, *e;
    int i;

    for (i = 0; i < 5; i++)
        fx_ctl_ok(&n->f, "weight", w[i]);
    assert_true(metric(n, "cutover_notify_dropped_total", ",reason=\"queue_full\"") == 3);
    assert_true(metric(n, "cutover_notify_queue", "") == 2);
    receiver_start(n);
    assert_true(wait_metric(n, "cutover_notify_sent_total", "", 2, 10000) == 2);
    got = received(n);
    assert_int_equal(json_array_size(got), 2);
    e = entry_of(json_array_get(got, 1));
    assert_int_equal(json_number_value(json_object_get(e, "to")), 5);
    json_decref(e);
    json_decref(got);
    assert_true(metric(n, "cutover_notify_dropped_total", ",reason=\"rejected\"") == 0);
}

/* A 4xx is final: dropped as rejected, never retried. */
static void
test_rejected(void **state)
{
    struct nf *n = nf_open(state, "\"rollback\"", "", true);

    assert_int_equal(h_backend_set(n->rport, "error_rate=1&status=403"), 0);
    fx_ctl_ok(&n->f, "weight", "10");
    timed_rollback(n, "refused");
    assert_true(wait_metric(n, "cutover_notify_dropped_total", ",reason=\"rejected\"", 1,
                            5000) == 1);
    h_sleep_ms(1500);                  /* past the first retry's time: none comes */
    assert_int_equal(h_backend_stat(n->rport, "requests"), 1);
    assert_true(metric(n, "cutover_notify_failures_total", "") == 0);
    assert_true(metric(n, "cutover_notify_queue", "") == 0);
}

/* https: verified against the URL's address with ca_file; a receiver whose
 * certificate another CA signed is never sent the entry. */
static void
test_https(void **state)
{
    struct nf *n = fx_new(state, sizeof(*n), false, 1, NULL);
    char cert[600], key[600], *text;
    const char *extra[] = { "--tls-cert", cert, "--tls-key", key, "--record", n->record, NULL };
    json_t *got, *e;

    assert_int_equal(h_tls_make_upstream_certs(n->f.dir), 0);
    snprintf(cert, sizeof(cert), "%s/up-ip.pem", n->f.dir);
    snprintf(key, sizeof(key), "%s/up-ip.key", n->f.dir);
    snprintf(n->record, sizeof(n->record), "%s/received.jsonl", n->f.dir);
    n->rport = h_free_port();
    n->receiver = h_backend_start_args("receiver", n->rport, n->f.dir, false, extra);
    assert_true(n->receiver > 0);
    n->f.admin_port = h_free_port();
    snprintf(n->f.top_extra, sizeof(n->f.top_extra),
             ",\n  \"notify\": { \"webhooks\": ["
             "{ \"name\": \"ops\", \"url\": \"https://127.0.0.1:%d/tls\", "
             "\"ca_file\": \"up-ca.pem\" },"
             "{ \"name\": \"wrong-ca\", \"url\": \"https://127.0.0.1:%d/tls\", "
             "\"ca_file\": \"up-ca2.pem\" }] }", n->rport, n->rport);
    assert_int_equal(fx_write_conf(&n->f), 0);
    assert_int_equal(fx_start_proxy(&n->f, 7), 0);
    fx_ctl_ok(&n->f, "weight", "10");
    timed_rollback(n, "over TLS");
    assert_true(wait_metric(n, "cutover_notify_sent_total", "", 1, 5000) == 1);
    text = fx_scrape(&n->f);
    assert_true(fx_metric(text, "cutover_notify_sent_total{webhook=\"wrong-ca\"}") == 0);
    assert_true(fx_metric(text, "cutover_notify_failures_total{webhook=\"wrong-ca\"}") >= 1);
    free(text);
    got = received(n);
    assert_int_equal(json_array_size(got), 1);
    e = entry_of(json_array_get(got, 0));
    assert_string_equal(json_string_value(json_object_get(e, "reason")), "over TLS");
    json_decref(e);
    json_decref(got);
    assert_int_equal(h_wait_log(n->f.log, "webhook wrong-ca: TLS: certificate verify failed",
                                3000), 0);
}

/* Each bad "notify" is refused by cutoverd -t with the place and why. */
static void
test_conf_errors(void **state)
{
    static const struct {
        const char *notify, *want;
    } cases[] = {
        { "{}", "notify.webhooks: is required" },
        { "{\"webhooks\": [{\"events\": [\"rollback\"]}]}", "notify.webhooks[0].url: is required" },
        { "{\"webhooks\": [{\"url\": \"ftp://x/\"}]}",
          "notify.webhooks[0].url: must start with http:// or https://" },
        { "{\"webhooks\": [{\"url\": \"http://u:p@h/\"}]}",
          "notify.webhooks[0].url: must not hold credentials" },
        { "{\"webhooks\": [{\"url\": \"http://h:0/\"}]}",
          "notify.webhooks[0].url: has a bad port" },
        { "{\"webhooks\": [{\"url\": \"http://h/a b\"}]}",
          "notify.webhooks[0].url: must not hold spaces" },
        { "{\"webhooks\": [{\"url\": \"http://h/\", \"events\": [\"rollbak\"]}]}",
          "notify.webhooks[0].events[0]: unknown event \"rollbak\" (one of: weight, rollback" },
        { "{\"webhooks\": [{\"url\": \"http://h/\", \"events\": []}]}",
          "notify.webhooks[0].events: must be a non-empty array" },
        { "{\"webhooks\": [{\"url\": \"http://h/\", \"ca_file\": \"ca.pem\"}]}",
          "notify.webhooks[0].ca_file: needs an https:// url" },
        { "{\"webhooks\": [{\"url\": \"http://h/\", \"timeout_ms\": 5}]}",
          "notify.webhooks[0].timeout_ms: must be" },
        { "{\"webhooks\": [{\"url\": \"http://h/\", \"retry\": 1}]}",
          "notify.webhooks[0].retry: unknown key" },
        { "{\"webhooks\": [{\"url\": \"http://h/a\"}, {\"url\": \"http://h/b\"}]}",
          "notify.webhooks[1]: has the name \"h\" of notify.webhooks[0]" },
        { "{\"webhooks\": [{\"url\": \"http://h/\", \"token_file\": \"open.token\"}]}",
          "notify.webhooks[0].token_file: " },
    };
    struct fx *f = fx_new(state, sizeof(struct fx), false, 1, NULL);
    char out[4096], tok[600];
    size_t i;

    snprintf(tok, sizeof(tok), "%s/open.token", f->dir);
    assert_int_equal(h_write_file(tok, TOKEN "\n"), 0);
    assert_int_equal(chmod(tok, 0644), 0);   /* readable by others: refused */
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(f->top_extra, sizeof(f->top_extra), ",\n  \"notify\": %s", cases[i].notify);
        assert_int_equal(fx_write_conf(f), 0);
        if (h_cutoverd_check(f->conf, out, sizeof(out)) != 1 || strstr(out, cases[i].want) == NULL)
            fail_msg("case %zu: %s\nwanted: %s\ngot: %s", i, cases[i].notify, cases[i].want, out);
    }
    /* a missing token file only warns under -t */
    snprintf(f->top_extra, sizeof(f->top_extra), ",\n  \"notify\": {\"webhooks\": [{\"url\": "
             "\"https://hooks.example.net/x\", \"token_file\": \"later.token\"}]}");
    assert_int_equal(fx_write_conf(f), 0);
    assert_int_equal(h_cutoverd_check(f->conf, out, sizeof(out)), 0);
    assert_non_null(strstr(out, "warning: notify.webhooks[0].token_file"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_delivered, fx_teardown),
        cmocka_unit_test_teardown(test_down_then_back, fx_teardown),
        cmocka_unit_test_teardown(test_hanging, fx_teardown),
        cmocka_unit_test_teardown(test_queue_full, fx_teardown),
        cmocka_unit_test_teardown(test_rejected, fx_teardown),
        cmocka_unit_test_teardown(test_https, fx_teardown),
        cmocka_unit_test_teardown(test_conf_errors, fx_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
