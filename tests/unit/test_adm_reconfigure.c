/*
 * Tests for adm_control_reconfigure() (admin/control.c), the control
 * plane's half of a config reload: services are matched by name, a kept
 * one keeps weight, latch and generation under its new index, a new one
 * starts from its initial weight or from the state file, a removed one is
 * dropped (and leaves the state file with the next save), and a refused
 * reconfiguration (bad or duplicate names, unreadable state file) changes
 * nothing. Nothing is applied or persisted by the call itself.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "admin/control.h"
#include "health/conf.h"

struct fx {
    char dir[PATH_MAX];
    char state[PATH_MAX + 32];
    unsigned napply;                 /* apply callbacks seen */
    struct adm_control *c;
};

static void
on_apply(void *arg, unsigned svc, const struct adm_svc_state *st)
{
    struct fx *f = arg;

    (void)svc;
    (void)st;
    f->napply++;
}

static const struct adm_ops ops = { .apply = on_apply };

static int
setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    static const char *const names[] = { "web", "api", "old" };
    static const uint32_t initial[] = { 0, 1000, 0 };
    char err[512];

    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/test_adm_reconfigure.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->state, sizeof(f->state), "%s/state.json", f->dir);
    f->c = adm_control_new(names, initial, 3, f->state, NULL, &ops, f, err, sizeof(err));
    assert_non_null(f->c);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fx *f = *state;
    adm_control_free(f->c);
    unlink(f->state);
    rmdir(f->dir);
    free(f);
    return 0;
}

/* Runs one command line and returns whether it answered ok. */
static bool
exec_ok(struct fx *f, const char *line)
{
    char *reply = adm_control_exec_line(f->c, line, strlen(line), "uid:0");
    bool ok = reply != NULL && strstr(reply, "\"ok\":true") != NULL;

    free(reply);
    return ok;
}

static void
test_kept_services_keep_state_under_new_index(void **state)
{
    struct fx *f = *state;
    static const char *const names[] = { "new1", "api", "web" };
    static const uint32_t initial[] = { 2500, 9000, 9000 };
    const struct adm_svc_state *st;
    struct adm_svc_state web, api;
    unsigned napply;
    char err[512];

    assert_true(exec_ok(f, "{\"cmd\":\"weight\",\"service\":\"web\",\"percent\":30}"));
    assert_true(exec_ok(f, "{\"cmd\":\"rollback\",\"service\":\"api\",\"reason\":\"x\"}"));
    web = *adm_control_state(f->c, 0);
    api = *adm_control_state(f->c, 1);
    napply = f->napply;

    assert_int_equal(adm_control_reconfigure(f->c, names, initial, 3, err, sizeof(err)), 0);
    assert_int_equal(f->napply, napply);           /* nothing applied */
    st = adm_control_state(f->c, 2);               /* web moved from 0 to 2 */
    assert_int_equal(st->weight_bp, web.weight_bp);
    assert_int_equal(st->weight_bp, 3000);         /* not the config's 90 % */
    assert_int_equal(st->state, web.state);
    assert_int_equal(st->generation, web.generation);
    st = adm_control_state(f->c, 1);               /* api: the latch stays */
    assert_int_equal(st->state, ADM_ST_ROLLED_BACK);
    assert_int_equal(st->weight_bp, 0);
    assert_int_equal(st->generation, api.generation);
    st = adm_control_state(f->c, 0);               /* new1: from the config */
    assert_int_equal(st->weight_bp, 2500);
    assert_int_equal(st->state, ADM_ST_STEADY);
    assert_int_equal(st->generation, 0);

    /* commands find services by their new indices; "old" is gone */
    assert_true(exec_ok(f, "{\"cmd\":\"weight\",\"service\":\"web\",\"percent\":40}"));
    assert_int_equal(adm_control_state(f->c, 2)->weight_bp, 4000);
    assert_false(exec_ok(f, "{\"cmd\":\"weight\",\"service\":\"old\",\"percent\":40}"));
}

static void
test_new_service_takes_state_from_file(void **state)
{
    struct fx *f = *state;
    static const char *const two[] = { "web", "api" };
    static const char *const three[] = { "web", "api", "old" };
    static const uint32_t initial[] = { 0, 0, 5000 };
    const struct adm_svc_state *st;
    char err[512];

    /* "old" gets a state, is removed, and the file keeps its record until
     * the next save; coming back it takes that state */
    assert_true(exec_ok(f, "{\"cmd\":\"weight\",\"service\":\"old\",\"percent\":12.5}"));
    assert_int_equal(adm_control_reconfigure(f->c, two, initial, 2, err, sizeof(err)), 0);
    assert_int_equal(adm_control_reconfigure(f->c, three, initial, 3, err, sizeof(err)), 0);
    st = adm_control_state(f->c, 2);
    assert_int_equal(st->weight_bp, 1250);
    assert_int_equal(st->generation, 1);

    /* after a save without it, it comes back from the config */
    assert_int_equal(adm_control_reconfigure(f->c, two, initial, 2, err, sizeof(err)), 0);
    assert_true(exec_ok(f, "{\"cmd\":\"weight\",\"service\":\"web\",\"percent\":1}"));
    assert_int_equal(adm_control_reconfigure(f->c, three, initial, 3, err, sizeof(err)), 0);
    st = adm_control_state(f->c, 2);
    assert_int_equal(st->weight_bp, 5000);
    assert_int_equal(st->generation, 0);
}

static void
test_refused_changes_nothing(void **state)
{
    struct fx *f = *state;
    static const char *const dup[] = { "web", "web" };
    static const char *const empty[] = { "web", "" };
    static const char *const fresh[] = { "web", "brand_new" };
    static const uint32_t initial[] = { 0, 0 };
    static const uint32_t too_big[] = { 0, 10001 };
    char err[512];

    assert_true(exec_ok(f, "{\"cmd\":\"weight\",\"service\":\"api\",\"percent\":20}"));
    assert_int_equal(adm_control_reconfigure(f->c, dup, initial, 2, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "duplicate"));
    assert_int_equal(adm_control_reconfigure(f->c, empty, initial, 2, err, sizeof(err)), -1);
    assert_int_equal(adm_control_reconfigure(f->c, fresh, too_big, 2, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "out of range"));
    /* a corrupt state file refuses adding a service */
    {
        FILE *fp = fopen(f->state, "w");

        assert_non_null(fp);
        fputs("{ not json", fp);
        fclose(fp);
    }
    assert_int_equal(adm_control_reconfigure(f->c, fresh, initial, 2, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "state file"));
    /* all three services are still there, api at 20 % */
    assert_int_equal(adm_control_state(f->c, 1)->weight_bp, 2000);
    assert_true(exec_ok(f, "{\"cmd\":\"status\",\"service\":\"old\"}"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_kept_services_keep_state_under_new_index,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_new_service_takes_state_from_file,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_changes_nothing, setup, teardown),
    };

    return cmocka_run_group_tests_name("adm_control_reconfigure", tests, NULL, NULL);
}
