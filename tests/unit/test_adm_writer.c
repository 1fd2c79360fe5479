/*
 * Unit tests for admin/writer.c: completions run on the loop in the order
 * the jobs were submitted; a save and an append reach their files; after an
 * append fails, the appends already submitted are skipped (never written
 * before the one that failed) and appends go on once every completion was
 * seen; adm_writer_drain() and adm_writer_free() finish what was submitted.
 * A private event_base, a directory under /tmp.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/event.h>

#include "admin/writer.h"
#include "lib/xmalloc.h"
#include "tests/unit/util.h"

#define MAX_DONE 16

struct fix {
    struct event_base *base;
    struct adm_writer *w;
    char dir[64], state[128], audit[128], bad[128];
    unsigned ndone;
    int order[MAX_DONE];                 /* the tags, as completed */
    enum adm_wjob_result res[MAX_DONE];
    int tags[MAX_DONE];                  /* the <arg>s handed out */
};

static struct fix *F;

static void
on_done(void *arg, enum adm_wjob_result res, const char *err)
{
    int tag = *(int *)arg;

    (void)err;
    assert_true(F->ndone < MAX_DONE);
    F->order[F->ndone] = tag;
    F->res[F->ndone] = res;
    F->ndone++;
}

static void
submit(struct fix *f, int tag, enum adm_wjob_kind kind, const char *file, const char *text)
{
    f->tags[tag] = tag;
    adm_writer_submit(f->w, kind, file, text != NULL ? xstrdup(text) : NULL,
                      text != NULL ? strlen(text) : 0, on_done, &f->tags[tag]);
}

/* Runs the loop until <n> completions ran (5 s at most). */
static void
wait_done(struct fix *f, unsigned n)
{
    int i;

    for (i = 0; i < 5000 && f->ndone < n; i++) {
        event_base_loop(f->base, EVLOOP_NONBLOCK);
        if (f->ndone < n)
            usleep(1000);
    }
    assert_int_equal(f->ndone, n);
}

static char *
slurp(const char *path)
{
    FILE *fp = fopen(path, "r");
    char *buf = xcalloc(1, 65536);

    if (fp != NULL) {
        size_t n = fread(buf, 1, 65535, fp);

        buf[n] = '\0';
        fclose(fp);
    }
    return buf;
}

static int
setup(void **state)
{
    struct fix *f = xcalloc(1, sizeof(*f));
    char err[256];
    FILE *fp;

    snprintf(f->dir, sizeof(f->dir), "/tmp/test_adm_writer.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->state, sizeof(f->state), "%s/state.json", f->dir);
    snprintf(f->audit, sizeof(f->audit), "%s/audit.jsonl", f->dir);
    /* a regular file where a directory should be: appends under it fail */
    snprintf(f->bad, sizeof(f->bad), "%s/plain", f->dir);
    assert_non_null(fp = fopen(f->bad, "w"));
    fclose(fp);
    snprintf(f->bad, sizeof(f->bad), "%s/plain/audit.jsonl", f->dir);
    assert_non_null(f->base = event_base_new());
    f->w = adm_writer_new(f->base, err, sizeof(err));
    assert_non_null(f->w);
    F = f;
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fix *f = *state;

    adm_writer_free(f->w);
    event_base_free(f->base);
    rm_rf(f->dir);
    free(f);
    F = NULL;
    return 0;
}

/* In order, each reaching its file. */
static void
test_jobs_complete_in_order(void **state)
{
    struct fix *f = *state;
    char *text;
    int i;

    submit(f, 0, ADM_WJ_SAVE, f->state, "{\"services\": []}\n");
    submit(f, 1, ADM_WJ_AUDIT, f->audit, "{\"n\":1}\n");
    submit(f, 2, ADM_WJ_AUDIT, f->audit, "{\"n\":2}\n");
    submit(f, 3, ADM_WJ_MARK, NULL, NULL);
    submit(f, 4, ADM_WJ_SAVE, f->state, "{\"services\": [1]}\n");
    wait_done(f, 5);
    for (i = 0; i < 5; i++) {
        assert_int_equal(f->order[i], i);
        assert_int_equal(f->res[i], ADM_WJ_OK);
    }
    assert_true(adm_writer_idle(f->w));
    text = slurp(f->state);
    assert_string_equal(text, "{\"services\": [1]}\n");   /* the newest, whole */
    free(text);
    text = slurp(f->audit);
    assert_string_equal(text, "{\"n\":1}\n{\"n\":2}\n");
    free(text);
}

/* An append that fails stops the ones behind it; they go on afterwards. */
static void
test_failed_append_skips_later_ones(void **state)
{
    struct fix *f = *state;
    char *text;

    submit(f, 0, ADM_WJ_AUDIT, f->bad, "{\"n\":1}\n");
    submit(f, 1, ADM_WJ_AUDIT, f->audit, "{\"n\":2}\n");
    submit(f, 2, ADM_WJ_SAVE, f->state, "{}\n");       /* a save is not an append */
    submit(f, 3, ADM_WJ_AUDIT, f->audit, "{\"n\":3}\n");
    wait_done(f, 4);
    assert_int_equal(f->res[0], ADM_WJ_FAILED);
    assert_int_equal(f->res[1], ADM_WJ_SKIPPED);
    assert_int_equal(f->res[2], ADM_WJ_OK);
    assert_int_equal(f->res[3], ADM_WJ_SKIPPED);
    text = slurp(f->audit);
    assert_string_equal(text, "");
    free(text);
    /* every completion seen: appends go on */
    submit(f, 4, ADM_WJ_AUDIT, f->audit, "{\"n\":4}\n");
    wait_done(f, 5);
    assert_int_equal(f->res[4], ADM_WJ_OK);
    text = slurp(f->audit);
    assert_string_equal(text, "{\"n\":4}\n");
    free(text);
}

/* drain: everything written and completed, without the loop. */
static void
test_drain_finishes_everything(void **state)
{
    struct fix *f = *state;
    int i;

    for (i = 0; i < 6; i++)
        submit(f, i, i % 2 == 0 ? ADM_WJ_SAVE : ADM_WJ_AUDIT,
               i % 2 == 0 ? f->state : f->audit, i % 2 == 0 ? "{}\n" : "{\"x\":1}\n");
    adm_writer_drain(f->w);
    assert_int_equal(f->ndone, 6);
    for (i = 0; i < 6; i++)
        assert_int_equal(f->order[i], i);
    assert_true(adm_writer_idle(f->w));
}

/* free: what was submitted is written and completed first. */
static void
test_free_finishes_pending_jobs(void **state)
{
    struct fix *f = *state;
    char *text;

    submit(f, 0, ADM_WJ_AUDIT, f->audit, "{\"last\":1}\n");
    adm_writer_free(f->w);
    f->w = NULL;
    assert_int_equal(f->ndone, 1);
    assert_int_equal(f->res[0], ADM_WJ_OK);
    text = slurp(f->audit);
    assert_string_equal(text, "{\"last\":1}\n");
    free(text);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_jobs_complete_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_append_skips_later_ones, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drain_finishes_everything, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_finishes_pending_jobs, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
