/*
 * Tests for the status reply built in slices (admin/status.c): a status of
 * many services, asked by a requester that can wait, is built on the
 * control plane's loop a slice at a time (each slice bounded in time, the
 * loop's other events served between two), and its reply is the very text
 * of the one built at once; the data plane's figures are brought up to date
 * once per reply; a requester that goes away gets nothing and leaks
 * nothing; a reload in the middle starts the build over with the new
 * services; a control plane freed in the middle tells the requester; a few
 * services are answered at once.
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
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "tests/unit/util.h"
#include "admin/control.h"
#include "admin/status.h"
#include "health/conf.h"
#include "lib/log.h"

#define NSVC 200
#define SVC_US 200                   /* what the data plane's part of one entry costs */

struct fx {
    char dir[PATH_MAX];
    char state[PATH_MAX + 32];
    struct event_base *base;
    struct adm_control *c;
    char *names[NSVC];
    uint32_t initial[NSVC];
    unsigned nbegin;                 /* status_begin calls */
    unsigned nstatus;                /* status calls */
    unsigned in_turn;                /* status calls in the current loop turn */
    unsigned max_turn;               /* the most in one loop turn */
    unsigned ndone;                  /* replies that came */
    char *reply;                     /* the last one */
};

static void
on_status_begin(void *arg)
{
    ((struct fx *)arg)->nbegin++;
}

/* The data plane's part, slow on purpose. */
static void
on_status(void *arg, unsigned svc, json_t *obj)
{
    struct fx *f = arg;

    f->nstatus++;
    f->in_turn++;
    usleep(SVC_US);
    json_object_set_new(obj, "mode", json_string("http"));
    json_object_set_new(obj, "svc_index", json_integer(svc));
}

static const struct adm_ops ops = { .status_begin = on_status_begin, .status = on_status };

static void
on_done(void *arg, char *reply)
{
    struct fx *f = arg;

    f->ndone++;
    free(f->reply);
    f->reply = reply;
}

static int
setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    char err[512];
    unsigned i;

    assert_non_null(f);
    log_min_level = LL_WARN;           /* the reload's lines, one per service */
    snprintf(f->dir, sizeof(f->dir), "/tmp/test_adm_status.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->state, sizeof(f->state), "%s/state.json", f->dir);
    for (i = 0; i < NSVC; i++) {
        char n[32];

        snprintf(n, sizeof(n), "svc%03u", i);
        f->names[i] = strdup(n);
        f->initial[i] = i * 10;
    }
    f->base = event_base_new();
    assert_non_null(f->base);
    f->c = adm_control_new((const char *const *)f->names, f->initial, NSVC, f->state, NULL,
                           &ops, f, err, sizeof(err));
    assert_non_null(f->c);
    adm_control_set_loop(f->c, f->base);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fx *f = *state;
    unsigned i;

    adm_control_free(f->c);
    event_base_free(f->base);
    for (i = 0; i < NSVC; i++)
        free(f->names[i]);
    free(f->reply);
    rm_rf(f->dir);
    free(f);
    return 0;
}

static const struct adm_caller who = { .actor = "uid:0", .pid = -1, .level = ADM_LEVEL_READ };

/* Asks for the status of every service; returns the reply when it came at
 * once, else NULL with <*w> set. */
static char *
ask(struct fx *f, const char *line, struct adm_wait **w)
{
    return adm_control_exec_line_wait(f->c, line, strlen(line), &who, on_done, f, w);
}

/* Runs the loop one turn at a time until a reply came or nothing is left
 * to run; returns the turns. */
static unsigned
run_until_done(struct fx *f, unsigned ndone)
{
    unsigned turns = 0;

    while (f->ndone == ndone && turns < 100000) {
        f->in_turn = 0;
        if (event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK) != 0
            && event_base_get_num_events(f->base, EVENT_BASE_COUNT_ADDED) == 0)
            break;
        if (f->in_turn > f->max_turn)
            f->max_turn = f->in_turn;
        turns++;
    }
    return turns;
}

/* The same text as the status built at once, a slice per loop turn: each
 * slice does about ADM_STATUS_SLICE_US of work (250 us: at most 2 entries of
 * 200 us here, whatever the machine's load: a slower turn holds fewer), and
 * the figures are brought up to date once. */
static void
test_slices_equal_at_once(void **state)
{
    struct fx *f = *state;
    struct adm_wait *w = NULL;
    const char *line = "{\"cmd\":\"status\"}";
    char *at_once, *r;
    unsigned turns;
    json_t *j;

    at_once = adm_control_exec_line(f->c, line, strlen(line), "uid:0");
    assert_non_null(at_once);
    assert_int_equal(f->nbegin, 1);
    assert_int_equal(f->nstatus, NSVC);

    f->nbegin = f->nstatus = 0;
    r = ask(f, line, &w);
    assert_null(r);
    assert_non_null(w);
    assert_int_equal(f->nstatus, 0);         /* nothing built inside the request */
    turns = run_until_done(f, 0);
    assert_int_equal(f->ndone, 1);
    assert_int_equal(f->nbegin, 1);
    assert_int_equal(f->nstatus, NSVC);
    assert_true(f->max_turn >= 1 && f->max_turn <= ADM_STATUS_SLICE_US / SVC_US + 1);
    assert_true(turns >= NSVC / (ADM_STATUS_SLICE_US / SVC_US + 1));
    assert_string_equal(f->reply, at_once);
    j = json_loads(f->reply, 0, NULL);
    assert_non_null(j);
    assert_int_equal(json_array_size(json_object_get(j, "services")), NSVC);
    assert_string_equal(json_string_value(json_object_get(
        json_array_get(json_object_get(j, "services"), NSVC - 1), "name")), "svc199");
    json_decref(j);
    free(at_once);
}

/* One service, or a few, are answered at once; a service asked by name
 * too. */
static void
test_one_at_once(void **state)
{
    struct fx *f = *state;
    struct adm_wait *w = NULL;
    const char *line = "{\"cmd\":\"status\",\"service\":\"svc007\"}";
    char *r = ask(f, line, &w);

    assert_non_null(r);
    assert_null(w);
    assert_non_null(strstr(r, "\"name\":\"svc007\""));
    assert_null(strstr(r, "svc008"));
    assert_int_equal(f->ndone, 0);
    free(r);
}

/* A requester that goes away gets no reply; the build stops and frees
 * what it made (ASan checks the leak). */
static void
test_cancel(void **state)
{
    struct fx *f = *state;
    struct adm_wait *w = NULL;
    const char *line = "{\"cmd\":\"status\"}";

    assert_null(ask(f, line, &w));
    f->in_turn = 0;
    event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    assert_true(f->nstatus > 0 && f->nstatus < NSVC);
    adm_control_wait_cancel(w);
    run_until_done(f, 0);
    assert_int_equal(f->ndone, 0);
    assert_int_equal(event_base_get_num_events(f->base, EVENT_BASE_COUNT_ADDED), 0);
}

/* A reload in the middle: the build starts over, and the reply lists the
 * services of the new config in its order. */
static void
test_reload_starts_over(void **state)
{
    struct fx *f = *state;
    struct adm_wait *w = NULL;
    const char *line = "{\"cmd\":\"status\"}";
    const char *names[NSVC / 2];
    uint32_t initial[NSVC / 2];
    char err[512];
    unsigned i;
    json_t *j, *list;

    assert_null(ask(f, line, &w));
    for (i = 0; i < 3; i++)
        event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    assert_int_equal(f->nbegin, 1);
    for (i = 0; i < NSVC / 2; i++) {
        names[i] = f->names[NSVC - 1 - 2 * i];     /* every other one, reversed */
        initial[i] = 0;
    }
    assert_int_equal(adm_control_reconfigure(f->c, names, initial, NSVC / 2, err,
                                             sizeof(err)), 0);
    run_until_done(f, 0);
    assert_int_equal(f->ndone, 1);
    assert_int_equal(f->nbegin, 2);
    j = json_loads(f->reply, 0, NULL);
    assert_non_null(j);
    list = json_object_get(j, "services");
    assert_int_equal(json_array_size(list), NSVC / 2);
    for (i = 0; i < NSVC / 2; i++)
        assert_string_equal(json_string_value(json_object_get(json_array_get(list, i),
                                                              "name")), names[i]);
    json_decref(j);
}

/* The control plane freed while a status is built: the requester is told,
 * nothing is left on the loop. */
static void
test_free_while_building(void **state)
{
    struct fx *f = *state;
    struct adm_wait *w = NULL;
    const char *line = "{\"cmd\":\"status\"}";

    assert_null(ask(f, line, &w));
    event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    adm_control_free(f->c);
    f->c = NULL;
    assert_int_equal(f->ndone, 1);
    assert_non_null(strstr(f->reply, "\"ok\":false"));
    assert_non_null(strstr(f->reply, "stopping"));
    assert_int_equal(event_base_get_num_events(f->base, EVENT_BASE_COUNT_ADDED), 0);
}

/* Without a requester that can wait (adm_control_exec_line), or without
 * the loop, everything is built at once. */
static void
test_no_loop_at_once(void **state)
{
    struct fx *f = *state;
    struct adm_wait *w = NULL;
    const char *line = "{\"cmd\":\"status\"}";
    char *r;

    adm_control_set_loop(f->c, NULL);
    r = ask(f, line, &w);
    assert_non_null(r);
    assert_null(w);
    assert_int_equal(f->nstatus, NSVC);
    free(r);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_slices_equal_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reload_starts_over, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_while_building, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_loop_at_once, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
