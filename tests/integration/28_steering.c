/*
 * Who may steer a request to a side, through the real cutoverd. The
 * override header is honoured only from override.allow_from (default
 * loopback: a client bound to 127.0.0.2 is let in, so the tests narrow it
 * to 127.0.0.1 to play a client from outside) or with the secret of
 * override.secret_file ("new; key=..."); a refused one is routed as if
 * absent and counted, and the header never reaches a backend, honoured or
 * not (the backend's /echo shows what it received). The sticky cookie is
 * signed: a forged one (bucket 0, unsigned or with a bad MAC) is replaced
 * by a valid one and counted, a valid one keeps its user on their side
 * across a restart (the key is persisted in the state directory, mode
 * 0600) and across a key rotation (the previous key still verifies, and
 * the cookie is signed again with the current one); cutoverd -t checks an
 * existing key file.
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

static long
invalid(struct fx *f)
{
    return fx_status_long(f, "steering.cookie_invalid");
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

/* The Set-Cookie of <r> for "cb": its value into <val>, its bucket
 * returned; fails the test when there is none. */
static unsigned
issued(const struct h_resp *r, char *val, size_t len)
{
    char buf[256];
    unsigned bucket;
    char *semi;

    if (h_resp_header(r, "Set-Cookie", buf, sizeof(buf)) == NULL)
        fail_msg("no Set-Cookie in:\n%s", r->head);
    assert_int_equal(strncmp(buf, "cb=", 3), 0);
    if ((semi = strchr(buf, ';')) != NULL)
        *semi = '\0';
    assert_true(strlen(buf + 3) < len);
    memcpy(val, buf + 3, strlen(buf + 3) + 1);
    assert_int_equal(sscanf(val, "%u.", &bucket), 1);
    assert_true(bucket < 10000);
    return bucket;
}

/* GET / with "Cookie: cb=<val>"; the backend's name in <be>, and the
 * answer in <r> (caller frees). */
static const char *
get_with_cookie(struct fx *f, const char *val, struct h_resp *r, char *be, size_t len)
{
    char hdr[256];

    snprintf(hdr, sizeof(hdr), "Cookie: theme=dark; cb=%s\r\n", val);
    assert_int_equal(h_get_from(OUTSIDE, f->proxy_port, "/", hdr, r), 0);
    assert_int_equal(r->status, 200);
    assert_non_null(h_resp_header(r, "X-Backend", be, len));
    return be;
}

/* A forged cookie (bucket 0: new at any weight above 0) is treated as
 * absent: the request goes where the freshly drawn, validly signed bucket
 * says, that cookie is issued, and the forgery is counted. */
static void
test_forged_cookie(void **state)
{
    struct fx *f = start(state, ", \"sticky\": {\"by\": \"cookie\", \"name\": \"cb\"}", NULL);
    char fresh[PX_COOKIE_VALUE_MAX], good[PX_COOKIE_VALUE_MAX], val[128], tampered[64], be[64];
    const char *forged[4];
    struct h_resp r;
    unsigned b, i;
    char *text;

    fx_ctl_ok(f, "weight", "0.01");        /* bucket 0 alone is on new */
    fx_cookie_value(f, "web", 1, tampered);
    tampered[0] = '0';                      /* bucket 1's MAC on bucket 0 */
    forged[0] = "0";                        /* the unsigned format of earlier versions */
    forged[1] = "0.AAAAAAAAAAAAAAAA";
    forged[2] = tampered;
    forged[3] = "0.";
    for (i = 0; i < 4; i++) {
        get_with_cookie(f, forged[i], &r, be, sizeof(be));
        b = issued(&r, val, sizeof(val));
        /* the issued cookie is valid, and the side is its bucket's */
        assert_string_equal(val, fx_cookie_value(f, "web", b, fresh));
        assert_string_equal(be, b < 1 ? "new" : "legacy");
        h_resp_free(&r);
        /* and it is honoured from then on */
        get_with_cookie(f, val, &r, be, sizeof(be));
        assert_string_equal(be, b < 1 ? "new" : "legacy");
        assert_null(h_resp_header(&r, "Set-Cookie", fresh, sizeof(fresh)));
        h_resp_free(&r);
    }
    assert_int_equal(invalid(f), 4);
    text = fx_scrape(f);
    assert_true(fx_metric(text, "cutover_cookie_invalid_total{service=\"web\"}") == 4);
    free(text);

    /* a validly signed bucket 0 is on new, kept, not counted */
    fx_cookie_value(f, "web", 0, good);
    for (i = 0; i < 3; i++) {
        assert_string_equal(get_with_cookie(f, good, &r, be, sizeof(be)), "new");
        assert_null(h_resp_header(&r, "Set-Cookie", fresh, sizeof(fresh)));
        h_resp_free(&r);
    }
    /* signed for another service (another salt): refused */
    get_with_cookie(f, fx_cookie_value(f, "api", 0, fresh), &r, be, sizeof(be));
    b = issued(&r, val, sizeof(val));
    assert_string_equal(be, b < 1 ? "new" : "legacy");
    h_resp_free(&r);
    assert_int_equal(invalid(f), 5);
}

/* Users keep their side across a restart: the key is in the state
 * directory, private. */
static void
test_cookie_across_restart(void **state)
{
    struct fx *f = start(state, ", \"sticky\": {\"by\": \"cookie\", \"name\": \"cb\"}", NULL);
    char val[8][128], side[8][16], be[64], buf[256], key[600];
    struct h_resp r;
    struct stat st;
    unsigned i;

    fx_ctl_ok(f, "weight", "50");
    snprintf(key, sizeof(key), "%s/sticky.key", f->dir);
    assert_int_equal(stat(key, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    for (i = 0; i < 8; i++) {
        assert_int_equal(h_get(f->proxy_port, "/", NULL, &r), 0);
        issued(&r, val[i], sizeof(val[i]));
        assert_non_null(h_resp_header(&r, "X-Backend", side[i], sizeof(side[i])));
        h_resp_free(&r);
    }
    fx_stop_clean(f);
    assert_int_equal(fx_start_proxy(f, 29), 0);
    for (i = 0; i < 8; i++) {
        assert_string_equal(get_with_cookie(f, val[i], &r, be, sizeof(be)), side[i]);
        assert_null(h_resp_header(&r, "Set-Cookie", buf, sizeof(buf)));
        h_resp_free(&r);
    }
    assert_int_equal(invalid(f), 0);
}

/* Rotation without re-bucketing: the previous key still verifies and the
 * cookie comes back signed with the current one; a broken key file fails
 * the reload and changes nothing. */
static void
test_cookie_rotation(void **state)
{
    struct fx *f = start(state, ", \"sticky\": {\"by\": \"cookie\", \"name\": \"cb\"}", NULL);
    char v1[128], v2[128], side[16], be[64], buf[256], key[600], keys[512], *text, *cur;
    unsigned b1, b2;
    struct h_resp r;

    fx_ctl_ok(f, "weight", "50");
    assert_int_equal(h_get(f->proxy_port, "/", NULL, &r), 0);
    b1 = issued(&r, v1, sizeof(v1));
    assert_non_null(h_resp_header(&r, "X-Backend", side, sizeof(side)));
    h_resp_free(&r);

    /* the documented rotation: current becomes previous, a new current */
    snprintf(key, sizeof(key), "%s/sticky.key", f->dir);
    text = h_read_file(key);
    assert_non_null(text);
    cur = strstr(text, "\ncurrent ");
    assert_non_null(cur);
    snprintf(keys, sizeof(keys),
             "current 5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a\n"
             "previous %.64s\n", cur + 9);
    free(text);
    assert_int_equal(h_write_file(key, keys), 0);
    assert_int_equal(chmod(key, 0600), 0);
    fx_reload_ok(f, 10000, 2);

    assert_string_equal(get_with_cookie(f, v1, &r, be, sizeof(be)), side);
    b2 = issued(&r, v2, sizeof(v2));          /* signed again ... */
    assert_int_equal(b2, b1);                 /* ... with the same bucket */
    assert_string_not_equal(v2, v1);
    h_resp_free(&r);
    assert_string_equal(get_with_cookie(f, v2, &r, be, sizeof(be)), side);
    assert_null(h_resp_header(&r, "Set-Cookie", buf, sizeof(buf)));
    h_resp_free(&r);
    assert_int_equal(invalid(f), 0);

    /* a broken key file: the reload fails, the running keys stay */
    assert_int_equal(h_write_file(key, "current 1234\n"), 0);
    assert_int_equal(kill(f->proxy, SIGHUP), 0);
    assert_int_equal(h_wait_log(f->log, "sticky.key:1: the key must be 64 hexadecimal", 10000),
                     0);
    assert_string_equal(get_with_cookie(f, v2, &r, be, sizeof(be)), side);
    assert_null(h_resp_header(&r, "Set-Cookie", buf, sizeof(buf)));
    h_resp_free(&r);
    assert_string_equal(get_with_cookie(f, v1, &r, be, sizeof(be)), side);
    assert_non_null(h_resp_header(&r, "Set-Cookie", buf, sizeof(buf)));
    h_resp_free(&r);
    assert_int_equal(invalid(f), 0);
}

/* cutoverd -t: a missing key file is fine (the first start creates it) and
 * is not created; a broken or readable one fails the check. */
static void
test_key_file_checked(void **state)
{
    struct fx *f = fx_new(state, sizeof(struct fx), false, 1,
                          ", \"sticky\": {\"by\": \"cookie\", \"name\": \"cb\"}");
    char key[600], out[4096];

    snprintf(key, sizeof(key), "%s/sticky.key", f->dir);
    assert_int_equal(h_cutoverd_check(f->conf, out, sizeof(out)), 0);
    assert_int_not_equal(access(key, F_OK), 0);
    assert_int_equal(h_write_file(key, "current 00\n"), 0);
    assert_int_equal(chmod(key, 0600), 0);
    assert_int_equal(h_cutoverd_check(f->conf, out, sizeof(out)), 1);
    assert_non_null(strstr(out, "sticky.key:1: the key must be 64 hexadecimal digits"));
    assert_int_equal(h_write_file(key, "current "
                                  "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n"),
                     0);
    assert_int_equal(h_cutoverd_check(f->conf, out, sizeof(out)), 0);
    assert_int_equal(chmod(key, 0644), 0);
    assert_int_equal(h_cutoverd_check(f->conf, out, sizeof(out)), 1);
    assert_non_null(strstr(out, "sticky.key: mode 0644: group and others must have no access"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_override_from_outside, fx_teardown),
        cmocka_unit_test_teardown(test_override_default_loopback, fx_teardown),
        cmocka_unit_test_teardown(test_override_secret, fx_teardown),
        cmocka_unit_test_teardown(test_forged_cookie, fx_teardown),
        cmocka_unit_test_teardown(test_cookie_across_restart, fx_teardown),
        cmocka_unit_test_teardown(test_cookie_rotation, fx_teardown),
        cmocka_unit_test_teardown(test_key_file_checked, fx_teardown),
    };

    return cmocka_run_group_tests_name("integration: steering", tests, NULL, NULL);
}
