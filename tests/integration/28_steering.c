/*
 * Who may steer a request to a side, through the real cutoverd. The
 * override header is honoured only from override.allow_from (default
 * loopback: a client bound to 127.0.0.2 is let in, so the tests narrow it
 * to 127.0.0.1 to play a client from outside) or with the secret of
 * override.secret_file ("new; key=..."); a refused one is routed as if
 * absent and counted, and the header never reaches a backend, honoured or
 * not (the backend's /echo shows what it received).
 */
#include <ctype.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/integration/fixture.h"

#define OUTSIDE "127.0.0.2"        /* a client outside allow_from */
#define SECRET  "s3cret-for-the-steering-test"
#define ONLY_LO ", \"allow_from\": [\"127.0.0.1\"]"

/* fx_new with <extra> (leading comma), two workers (the counters are
 * folded from both), admin.listen for /metrics, cutoverd started. */
static struct fx *
start(void **state, const char *extra, const char *secret)
{
    struct fx *f = fx_new(state, sizeof(struct fx), false, 1, extra);
    char path[600];

    if (secret != NULL) {
        snprintf(path, sizeof(path), "%s/override.secret", f->dir);
        assert_int_equal(h_write_file(path, secret), 0);
        assert_int_equal(chmod(path, 0600), 0);
    }
    f->workers = 2;
    f->admin_port = h_free_port();
    assert_int_equal(fx_write_conf(f), 0);
    assert_int_equal(fx_start_proxy(f, 28), 0);
    return f;
}

/* True when <field> (a header name) appears, in any case, in <text>. */
static bool
has_field(const char *text, size_t len, const char *field)
{
    size_t n = strlen(field), i, k;

    for (i = 0; i + n <= len; i++) {
        for (k = 0; k < n && tolower((unsigned char)text[i + k]) ==
                             tolower((unsigned char)field[k]); k++)
            ;
        if (k == n)
            return true;
    }
    return false;
}

/* GET /echo from <src> (NULL: 127.0.0.1) with the header lines <hdr>:
 * asserts a 200 whose request, as the backend received it, holds no
 * override header and not <never> (when set); returns the backend's name
 * ("legacy" or "new") in <be>. */
static const char *
echo(struct fx *f, const char *src, const char *hdr, const char *never, char *be,
     size_t len)
{
    struct h_resp r;

    assert_int_equal(h_get_from(src, f->proxy_port, "/echo", hdr, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(h_resp_header(&r, "X-Backend", be, len));
    if (has_field(r.body, r.body_len, "x-cutover-target"))
        fail_msg("the override header reached %s:\n%.*s", be, (int)r.body_len, r.body);
    if (never != NULL && has_field(r.body, r.body_len, never))
        fail_msg("\"%s\" reached %s:\n%.*s", never, be, (int)r.body_len, r.body);
    /* the echo is of a real request: the other fields went up */
    assert_true(has_field(r.body, r.body_len, "x-forwarded-for"));
    h_resp_free(&r);
    return be;
}

static long
refused(struct fx *f)
{
    return fx_status_long(f, "steering.override_refused");
}

/* A forged override from outside allow_from is ignored (weight 0: legacy),
 * never forwarded, and counted; from inside it steers, and is not
 * forwarded either. */
static void
test_override_from_outside(void **state)
{
    struct fx *f = start(state, ", \"override\": {\"header\": \"X-Cutover-Target\"" ONLY_LO
                         "}", NULL);
    char be[64], *text;
    int i;

    for (i = 0; i < 10; i++)
        assert_string_equal(echo(f, OUTSIDE, "X-Cutover-Target: new\r\n", NULL, be,
                                 sizeof(be)), "legacy");
    /* any spelling, twice, with a key that is no secret: all dropped */
    assert_string_equal(echo(f, OUTSIDE, "x-cutover-target: new\r\n"
                             "X-CUTOVER-TARGET: new; key=guess-guess-guess\r\n", NULL, be,
                             sizeof(be)), "legacy");
    /* without the header: nothing refused */
    assert_string_equal(echo(f, OUTSIDE, NULL, NULL, be, sizeof(be)), "legacy");
    assert_int_equal(refused(f), 11);
    text = fx_scrape(f);
    assert_true(fx_metric(text, "cutover_override_refused_total{service=\"web\"}") == 11);
    free(text);

    /* 127.0.0.1 is in allow_from: steered, and the header still stays here */
    for (i = 0; i < 5; i++)
        assert_string_equal(echo(f, NULL, "X-Cutover-Target: new\r\n", NULL, be,
                                 sizeof(be)), "new");
    fx_ctl_ok(f, "weight", "100");
    assert_string_equal(echo(f, NULL, "X-Cutover-Target: legacy\r\n", NULL, be, sizeof(be)),
                        "legacy");
    assert_string_equal(echo(f, OUTSIDE, "X-Cutover-Target: legacy\r\n", NULL, be,
                             sizeof(be)), "new");
    assert_int_equal(refused(f), 12);
}

/* With the default allow_from (loopback) every test client is inside. */
static void
test_override_default_loopback(void **state)
{
    struct fx *f = start(state, ", \"override\": {\"header\": \"X-Cutover-Target\"}", NULL);
    char be[64];

    assert_string_equal(echo(f, OUTSIDE, "X-Cutover-Target: new\r\n", NULL, be, sizeof(be)),
                        "new");
    assert_string_equal(echo(f, NULL, "X-Cutover-Target: new\r\n", NULL, be, sizeof(be)),
                        "new");
    assert_int_equal(refused(f), 0);
}

/* The secret opens the override from anywhere; a wrong or missing key does
 * not. The key goes no further than the proxy. A reload reads the secret
 * file again. */
static void
test_override_secret(void **state)
{
    struct fx *f = start(state, ", \"override\": {\"header\": \"X-Cutover-Target\"" ONLY_LO
                         ", \"secret_file\": \"override.secret\"}", SECRET "\n");
    char be[64], path[600];

    assert_string_equal(echo(f, OUTSIDE, "X-Cutover-Target: new; key=" SECRET "\r\n", SECRET,
                             be, sizeof(be)), "new");
    assert_int_equal(refused(f), 0);
    assert_string_equal(echo(f, OUTSIDE, "X-Cutover-Target: new; key=" SECRET "x\r\n",
                             SECRET, be, sizeof(be)), "legacy");
    assert_string_equal(echo(f, OUTSIDE, "X-Cutover-Target: new; key=s3cret\r\n", NULL, be,
                             sizeof(be)), "legacy");
    assert_string_equal(echo(f, OUTSIDE, "X-Cutover-Target: new\r\n", NULL, be, sizeof(be)),
                        "legacy");
    assert_int_equal(refused(f), 3);
    /* from inside, with or without a key */
    assert_string_equal(echo(f, NULL, "X-Cutover-Target: new\r\n", NULL, be, sizeof(be)),
                        "new");

    /* a new secret takes effect with the reload; the old one no more */
    snprintf(path, sizeof(path), "%s/override.secret", f->dir);
    assert_int_equal(h_write_file(path, "another-secret-of-16-or-more\n"), 0);
    fx_reload_ok(f, 10000, 2);
    assert_string_equal(echo(f, OUTSIDE, "X-Cutover-Target: new; key=" SECRET "\r\n", SECRET,
                             be, sizeof(be)), "legacy");
    assert_string_equal(echo(f, OUTSIDE, "X-Cutover-Target: new; "
                             "key=another-secret-of-16-or-more\r\n",
                             "another-secret", be, sizeof(be)), "new");
    assert_int_equal(refused(f), 4);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_override_from_outside, fx_teardown),
        cmocka_unit_test_teardown(test_override_default_loopback, fx_teardown),
        cmocka_unit_test_teardown(test_override_secret, fx_teardown),
    };

    return cmocka_run_group_tests_name("integration: steering", tests, NULL, NULL);
}
