/*
 * Tests for admin/store.c: the state file round trip, the strict loader
 * (every corruption is an error with a precise message, never a default),
 * the atomic save (no temporary file left, directory created), the journal
 * of unsaved state (slots, torn records, sizing) and the startup checks
 * (stale temporary files, writability).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/unit/util.h"
#include "admin/control.h"
#include "admin/store.h"

struct fx {
    char dir[PATH_MAX];          /* private temporary directory */
    char file[PATH_MAX + 32];    /* <dir>/state.json */
};

static int
setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    const char *tmp = getenv("TMPDIR");

    if (f == NULL)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "%s/test_adm_store.XXXXXX",
             tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    if (mkdtemp(f->dir) == NULL) {
        free(f);
        return -1;
    }
    snprintf(f->file, sizeof(f->file), "%s/state.json", f->dir);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fx *f = *state;

    rm_rf(f->dir);
    free(f);
    return 0;
}

static void
write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");

    assert_non_null(fp);
    assert_int_equal(fwrite(text, 1, strlen(text), fp), strlen(text));
    assert_int_equal(fclose(fp), 0);
}

/* Number of entries in <dir> other than "." and "..". */
static unsigned
count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    unsigned n = 0;

    assert_non_null(d);
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            n++;
    }
    closedir(d);
    return n;
}

/* The whole file as a new string (fails the test when unreadable). */
static char *
read_text(const char *path)
{
    FILE *fp = fopen(path, "r");
    char *text = calloc(1, 65536);

    assert_non_null(fp);
    assert_non_null(text);
    assert_true(fread(text, 1, 65535, fp) > 0);
    fclose(fp);
    return text;
}

static const struct adm_store_entry three[] = {
    { .name = "web", .weight_bp = 1000, .state = ADM_ST_STEADY, .generation = 3 },
    { .name = "api", .weight_bp = 0, .state = ADM_ST_ROLLED_BACK, .generation = 12 },
    { .name = "db", .weight_bp = 10000, .state = ADM_ST_PROMOTED, .generation = 4000000000ull },
};

static void
test_round_trip(void **state)
{
    struct fx *f = *state;
    struct adm_store_entry *e = NULL;
    unsigned n = 99, i;
    char err[256] = "";
    struct stat sb;

    assert_int_equal(adm_store_save(f->file, three, 3, err, sizeof(err)), 0);
    assert_int_equal(stat(f->file, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    assert_int_equal(adm_store_load(f->file, &e, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 3);
    for (i = 0; i < 3; i++) {
        assert_string_equal(e[i].name, three[i].name);
        assert_int_equal(e[i].weight_bp, three[i].weight_bp);
        assert_int_equal(e[i].state, three[i].state);
        assert_true(e[i].generation == three[i].generation);
    }
    free(e);

    /* A second save replaces the content whole. */
    assert_int_equal(adm_store_save(f->file, three + 1, 1, err, sizeof(err)), 0);
    assert_int_equal(adm_store_load(f->file, &e, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 1);
    assert_string_equal(e[0].name, "api");
    free(e);

    /* Zero services is a valid file too. */
    assert_int_equal(adm_store_save(f->file, NULL, 0, err, sizeof(err)), 0);
    e = (void *)1;
    assert_int_equal(adm_store_load(f->file, &e, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 0);
    assert_null(e);
}

/* The plan's progress round-trips; an idle plan writes no "plan" key, so a
 * file without one (written before plans existed) still loads. */
static void
test_plan_round_trip_and_old_files(void **state)
{
    struct fx *f = *state;
    struct adm_store_entry in[2], *e = NULL;
    unsigned n = 0;
    char err[256] = "", *text;
    static const char old[] = "{\"version\":1,\"services\":[{\"name\":\"web\","
                              "\"weight_bp\":1000,\"state\":\"steady\",\"generation\":3}]}\n";
    FILE *fp;

    memset(in, 0, sizeof(in));
    snprintf(in[0].name, sizeof(in[0].name), "web");
    in[0].weight_bp = 5000;
    in[0].state = ADM_ST_PAUSED;
    in[0].generation = 9;
    in[0].has_plan = true;
    in[0].plan_state = 2;              /* HL_PLAN_PAUSED */
    in[0].plan_step = 1;
    in[0].plan_baked_ms = 400;
    in[0].plan_requests = 17;
    snprintf(in[1].name, sizeof(in[1].name), "api");
    assert_int_equal(adm_store_save(f->file, in, 2, err, sizeof(err)), 0);
    assert_int_equal(adm_store_load(f->file, &e, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 2);
    assert_true(e[0].has_plan);
    assert_int_equal(e[0].plan_state, 2);
    assert_int_equal(e[0].plan_step, 1);
    assert_true(e[0].plan_baked_ms == 400);
    assert_true(e[0].plan_requests == 17);
    assert_false(e[1].has_plan);
    free(e);

    /* no "plan" key for an entry without one */
    fp = fopen(f->file, "r");
    assert_non_null(fp);
    text = calloc(1, 4096);
    assert_non_null(text);
    assert_true(fread(text, 1, 4095, fp) > 0);
    fclose(fp);
    assert_non_null(strstr(text, "\"paused\""));
    assert_int_equal(strstr(strstr(text, "\"api\""), "plan") == NULL, 1);
    free(text);

    /* an out-of-range plan is not saved */
    in[0].plan_state = 6;
    assert_int_equal(adm_store_save(f->file, in, 1, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "plan is out of range"));

    fp = fopen(f->file, "w");
    assert_non_null(fp);
    assert_int_equal(fputs(old, fp) >= 0, 1);
    assert_int_equal(fclose(fp), 0);
    assert_int_equal(adm_store_load(f->file, &e, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 1);
    assert_false(e[0].has_plan);
    assert_int_equal(e[0].weight_bp, 1000);
    free(e);
}

static void
test_every_state_name_round_trips(void **state)
{
    struct fx *f = *state;
    struct adm_store_entry in[ADM_ST__COUNT], *e = NULL;
    unsigned n, i;
    char err[256];

    memset(in, 0, sizeof(in));
    for (i = 0; i < ADM_ST__COUNT; i++) {
        snprintf(in[i].name, sizeof(in[i].name), "svc%u", i);
        in[i].weight_bp = i * 1000;
        in[i].state = (int)i;
        in[i].generation = i;
        assert_int_equal(adm_state_from_name(adm_state_names[i]), (int)i);
    }
    assert_int_equal(adm_state_from_name("sleeping"), -1);
    assert_int_equal(adm_state_from_name(NULL), -1);
    assert_int_equal(adm_store_save(f->file, in, ADM_ST__COUNT, err, sizeof(err)), 0);
    assert_int_equal(adm_store_load(f->file, &e, &n, err, sizeof(err)), 0);
    assert_int_equal(n, ADM_ST__COUNT);
    for (i = 0; i < n; i++)
        assert_int_equal(e[i].state, (int)i);
    free(e);
}

static void
test_missing_file_is_empty(void **state)
{
    struct fx *f = *state;
    struct adm_store_entry *e = (void *)1;
    unsigned n = 7;
    char err[256] = "";

    assert_int_equal(adm_store_load(f->file, &e, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 0);
    assert_null(e);
}

static const struct {
    const char *text;
    const char *msg;             /* substring the error must contain */
} corrupt[] = {
    { "{\"version\":1,\"services\":[}", "bad JSON at line 1, column" },
    { "{\"version\":1,\n\"services\":[\n{\"name\":\"web\",,}]}", "bad JSON at line 3" },
    { "", "bad JSON at line" },
    { "{\"version\":1,\"services\":[{\"name\":\"web\",\"weight_bp\":10", "bad JSON" },
    { "{\"version\":2,\"services\":[]}", "unsupported version 2 (expected 1)" },
    { "{\"version\":\"1\",\"services\":[]}", "version: must be an integer" },
    { "{\"services\":[]}", "missing \"version\"" },
    { "{\"version\":1}", "missing \"services\"" },
    { "[1]", "must be a JSON object" },
    { "{\"version\":1,\"services\":{}}", "services: must be an array" },
    { "{\"version\":1,\"services\":[],\"extra\":1}", "unknown key \"extra\"" },
    { "{\"version\":1,\"services\":[7]}", "services[0]: must be an object" },
    { "{\"version\":1,\"services\":[{\"name\":\"web\",\"weight_bp\":0,"
      "\"state\":\"sleeping\",\"generation\":0}]}",
      "services[0].state: unknown state \"sleeping\"" },
    { "{\"version\":1,\"services\":[{\"name\":\"web\",\"weight_bp\":10001,"
      "\"state\":\"steady\",\"generation\":0}]}",
      "services[0].weight_bp: must be 0..10000, got 10001" },
    { "{\"version\":1,\"services\":[{\"name\":\"web\",\"weight_bp\":-1,"
      "\"state\":\"steady\",\"generation\":0}]}",
      "services[0].weight_bp: must be 0..10000, got -1" },
    { "{\"version\":1,\"services\":[{\"name\":\"web\",\"weight_bp\":\"10\","
      "\"state\":\"steady\",\"generation\":0}]}",
      "services[0].weight_bp: must be an integer" },
    { "{\"version\":1,\"services\":[{\"name\":\"web\",\"weight_bp\":10.5,"
      "\"state\":\"steady\",\"generation\":0}]}",
      "services[0].weight_bp: must be an integer" },
    { "{\"version\":1,\"services\":[{\"name\":5,\"weight_bp\":0,"
      "\"state\":\"steady\",\"generation\":0}]}",
      "services[0].name: must be a string" },
    { "{\"version\":1,\"services\":[{\"name\":\"\",\"weight_bp\":0,"
      "\"state\":\"steady\",\"generation\":0}]}",
      "services[0].name: must be 1..63 bytes long" },
    { "{\"version\":1,\"services\":[{\"name\":\"web\",\"weight_bp\":0,"
      "\"state\":3,\"generation\":0}]}",
      "services[0].state: must be a string" },
    { "{\"version\":1,\"services\":[{\"name\":\"web\",\"weight_bp\":0,"
      "\"state\":\"steady\",\"generation\":-4}]}",
      "services[0].generation: must be >= 0, got -4" },
    { "{\"version\":1,\"services\":[{\"name\":\"web\",\"weight_bp\":0,"
      "\"state\":\"steady\",\"generation\":true}]}",
      "services[0].generation: must be an integer" },
    { "{\"version\":1,\"services\":[{\"name\":\"web\",\"weight_bp\":0,"
      "\"state\":\"steady\"}]}",
      "services[0]: missing \"generation\"" },
    { "{\"version\":1,\"services\":[{\"name\":\"web\",\"weight_bp\":0,"
      "\"state\":\"steady\",\"generation\":0,\"owner\":\"me\"}]}",
      "services[0]: unknown key \"owner\"" },
    { "{\"version\":1,\"services\":["
      "{\"name\":\"web\",\"weight_bp\":0,\"state\":\"steady\",\"generation\":0},"
      "{\"name\":\"api\",\"weight_bp\":0,\"state\":\"steady\",\"generation\":0},"
      "{\"name\":\"web\",\"weight_bp\":500,\"state\":\"steady\",\"generation\":1}]}",
      "services[2]: duplicate service \"web\"" },
    { "{\"version\":1,\"version\":1,\"services\":[]}", "bad JSON" },
#define PLAN_ENTRY(p) "{\"version\":1,\"services\":[{\"name\":\"web\",\"weight_bp\":0," \
                      "\"state\":\"steady\",\"generation\":0,\"plan\":" p "}]}"
    { PLAN_ENTRY("[]"), "services[0].plan: must be an object" },
    { PLAN_ENTRY("{\"state\":\"running\",\"step\":0,\"baked_ms\":0,\"requests\":0}"),
      "services[0].plan.state: unknown plan state \"running\"" },
    { PLAN_ENTRY("{\"state\":1,\"step\":0,\"baked_ms\":0,\"requests\":0}"),
      "services[0].plan.state: must be a string" },
    { PLAN_ENTRY("{\"state\":\"paused\",\"step\":32,\"baked_ms\":0,\"requests\":0}"),
      "services[0].plan.step: must be 0..31, got 32" },
    { PLAN_ENTRY("{\"state\":\"paused\",\"step\":0,\"baked_ms\":-1,\"requests\":0}"),
      "services[0].plan.baked_ms: must be >= 0, got -1" },
    { PLAN_ENTRY("{\"state\":\"paused\",\"step\":0,\"baked_ms\":0,\"requests\":0.5}"),
      "services[0].plan.requests: must be an integer" },
    { PLAN_ENTRY("{\"state\":\"paused\",\"step\":0,\"baked_ms\":0}"),
      "services[0].plan: missing \"requests\"" },
    { PLAN_ENTRY("{\"state\":\"paused\",\"step\":0,\"baked_ms\":0,\"requests\":0,\"x\":1}"),
      "services[0].plan: unknown key \"x\"" },
#undef PLAN_ENTRY
#define AUDITED(a) "{\"version\":1,\"services\":[{\"name\":\"web\",\"weight_bp\":0," \
                   "\"state\":\"steady\",\"generation\":4,\"audited\":" a "}]}"
    { AUDITED("-1"), "services[0].audited: must be an integer >= 0" },
    { AUDITED("\"3\""), "services[0].audited: must be an integer >= 0" },
    { AUDITED("5"), "services[0].audited: 5 is above the generation 4" },
#undef AUDITED
};

static void
test_corrupt_files_are_errors(void **state)
{
    struct fx *f = *state;
    struct adm_store_entry *e;
    unsigned n, i;
    char err[256];

    for (i = 0; i < sizeof(corrupt) / sizeof(corrupt[0]); i++) {
        write_file(f->file, corrupt[i].text);
        e = (void *)1;
        n = 99;
        err[0] = '\0';
        if (adm_store_load(f->file, &e, &n, err, sizeof(err)) != -1)
            fail_msg("case %u (%s) loaded", i, corrupt[i].text);
        if (strstr(err, corrupt[i].msg) == NULL)
            fail_msg("case %u: error \"%s\" lacks \"%s\"", i, err, corrupt[i].msg);
        assert_null(e);
        assert_int_equal(n, 0);
    }
}

static void
test_truncated_file_is_an_error(void **state)
{
    struct fx *f = *state;
    struct adm_store_entry *e = NULL;
    unsigned n;
    char err[256];
    struct stat sb;
    off_t len;

    assert_int_equal(adm_store_save(f->file, three, 3, err, sizeof(err)), 0);
    assert_int_equal(stat(f->file, &sb), 0);
    /* Every proper prefix that cuts into the document must be refused. */
    for (len = sb.st_size - 3; len >= 0; len -= 7) {
        assert_int_equal(truncate(f->file, len), 0);
        err[0] = '\0';
        assert_int_equal(adm_store_load(f->file, &e, &n, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "bad JSON"));
        assert_null(e);
    }
}

static void
test_unreadable_file_is_an_error(void **state)
{
    struct fx *f = *state;
    struct adm_store_entry *e = NULL;
    unsigned n;
    char err[256] = "";

    /* A directory where the file should be: open works, read fails. */
    assert_int_equal(mkdir(f->file, 0700), 0);
    assert_int_equal(adm_store_load(f->file, &e, &n, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "cannot read"));
    assert_null(e);
}

static void
test_save_leaves_no_temporary_file(void **state)
{
    struct fx *f = *state;
    char err[256];
    int i;

    for (i = 0; i < 3; i++)
        assert_int_equal(adm_store_save(f->file, three, 3, err, sizeof(err)), 0);
    assert_int_equal(count_entries(f->dir), 1);   /* only state.json */
    assert_int_equal(access(f->file, F_OK), 0);
}

static void
test_save_creates_the_directory(void **state)
{
    struct fx *f = *state;
    char file[PATH_MAX + 128], sub[PATH_MAX + 64], err[256];
    struct adm_store_entry *e = NULL;
    unsigned n;
    struct stat sb;

    snprintf(sub, sizeof(sub), "%s/a/b", f->dir);
    snprintf(file, sizeof(file), "%s/state.json", sub);
    assert_int_equal(adm_store_save(file, three, 3, err, sizeof(err)), 0);
    assert_int_equal(stat(sub, &sb), 0);
    assert_true(S_ISDIR(sb.st_mode));
    assert_int_equal(sb.st_mode & 0777, 0700);
    snprintf(sub, sizeof(sub), "%s/a", f->dir);
    assert_int_equal(stat(sub, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);
    assert_int_equal(adm_store_load(file, &e, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 3);
    free(e);
}

static void
test_save_failure_reports_and_keeps_old_file(void **state)
{
    struct fx *f = *state;
    char file[PATH_MAX + 128], blocker[PATH_MAX + 64], err[256] = "";
    struct adm_store_entry *e = NULL;
    unsigned n;

    /* The parent of the state file is a regular file. */
    snprintf(blocker, sizeof(blocker), "%s/blocker", f->dir);
    write_file(blocker, "x");
    snprintf(file, sizeof(file), "%s/state.json", blocker);
    assert_int_equal(adm_store_save(file, three, 3, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "not a directory"));
    assert_int_equal(count_entries(f->dir), 1);

    /* The target is a directory: the rename fails, the temporary goes. */
    assert_int_equal(mkdir(f->file, 0700), 0);
    err[0] = '\0';
    assert_int_equal(adm_store_save(f->file, three, 3, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "cannot rename"));
    assert_int_equal(count_entries(f->dir), 2);   /* blocker, state.json/ */
    assert_int_equal(adm_store_load(f->file, &e, &n, err, sizeof(err)), -1);
}

static void
test_save_rejects_out_of_range_entries(void **state)
{
    struct fx *f = *state;
    struct adm_store_entry bad[1] = { { .name = "web", .weight_bp = 10001, .state = ADM_ST_STEADY, .generation = 0 } };
    char err[256] = "";

    assert_int_equal(adm_store_save(f->file, bad, 1, err, sizeof(err)), -1);
    assert_int_equal(access(f->file, F_OK), -1);
    bad[0].weight_bp = 0;
    bad[0].state = ADM_ST__COUNT;
    assert_int_equal(adm_store_save(f->file, bad, 1, err, sizeof(err)), -1);
    assert_int_equal(count_entries(f->dir), 0);
}


/* "audited" round-trips; a file without it loads with has_audited false,
 * and an entry without it writes none. */
static void
test_audited_round_trip(void **state)
{
    struct fx *f = *state;
    struct adm_store_entry in[2], *e = NULL;
    unsigned n = 0;
    char err[256] = "", *text;

    memset(in, 0, sizeof(in));
    snprintf(in[0].name, sizeof(in[0].name), "web");
    in[0].generation = 9;
    in[0].has_audited = true;
    in[0].audited = 8;
    snprintf(in[1].name, sizeof(in[1].name), "api");
    in[1].generation = 2;
    assert_int_equal(adm_store_save(f->file, in, 2, err, sizeof(err)), 0);
    assert_int_equal(adm_store_load(f->file, &e, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 2);
    assert_true(e[0].has_audited);
    assert_true(e[0].audited == 8);
    assert_false(e[1].has_audited);
    free(e);
    text = read_text(f->file);
    assert_null(strstr(strstr(text, "\"api\""), "audited"));
    free(text);

    /* a mark above the generation is never written */
    in[0].audited = 10;
    assert_int_equal(adm_store_save(f->file, in, 1, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "out of range"));
}

static void
journal_path(const struct fx *f, char *buf, size_t len)
{
    snprintf(buf, len, "%s.pending", f->file);
}

/* The journal: reserved with real bytes, written in place in two slots
 * that alternate, the newest valid record wins, a torn slot falls back to
 * the other one, a cleared journal holds nothing. */
static void
test_journal_slots(void **state)
{
    struct fx *f = *state;
    struct adm_store_entry *e = NULL, in[1];
    char err[256] = "", jp[PATH_MAX + 64];
    unsigned n = 9;
    uint64_t seq = 9;
    struct stat sb;
    int fd;

    journal_path(f, jp, sizeof(jp));
    /* no journal: nothing in it, and nothing can be written into it */
    assert_int_equal(adm_store_journal_read(f->file, &seq, &e, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 0);
    assert_null(e);
    assert_int_equal(adm_store_journal_write(f->file, 1, three, 3, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "cannot open"));
    assert_int_equal(access(jp, F_OK), -1);      /* never created by a write */

    assert_int_equal(adm_store_journal_prepare(f->file, 3, err, sizeof(err)), 0);
    assert_int_equal(stat(jp, &sb), 0);
    assert_int_equal((size_t)sb.st_size, adm_store_journal_size(3));
    assert_int_equal(sb.st_mode & 0777, 0600);
    assert_true(sb.st_blocks * 512 >= sb.st_size);   /* real bytes, not a hole */
    assert_int_equal(adm_store_journal_read(f->file, &seq, &e, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 0);                          /* zeros: no record */
    assert_int_equal(count_entries(f->dir), 1);      /* no temporary file left */

    assert_int_equal(adm_store_journal_write(f->file, 6, three, 3, err, sizeof(err)), 0);
    memcpy(in, three, sizeof(in));
    in[0].weight_bp = 0;
    in[0].state = ADM_ST_ROLLED_BACK;
    in[0].generation = 4;
    assert_int_equal(adm_store_journal_write(f->file, 7, in, 1, err, sizeof(err)), 0);
    assert_int_equal(adm_store_journal_read(f->file, &seq, &e, &n, err, sizeof(err)), 0);
    assert_true(seq == 7);
    assert_int_equal(n, 1);
    assert_int_equal(e[0].state, ADM_ST_ROLLED_BACK);
    assert_true(e[0].generation == 4);
    free(e);

    /* a crash in the middle of record 7: its slot is torn, record 6 wins */
    fd = open(jp, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, "X", 1, (off_t)(sb.st_size / 2) + 100), 1);
    close(fd);
    assert_int_equal(adm_store_journal_read(f->file, &seq, &e, &n, err, sizeof(err)), 0);
    assert_true(seq == 6);
    assert_int_equal(n, 3);
    assert_string_equal(e[2].name, "db");
    free(e);

    /* an existing journal large enough is kept as it is by prepare */
    assert_int_equal(adm_store_journal_prepare(f->file, 2, err, sizeof(err)), 0);
    assert_int_equal(adm_store_journal_read(f->file, &seq, &e, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 3);
    free(e);

    assert_int_equal(adm_store_journal_clear(f->file, err, sizeof(err)), 0);
    assert_int_equal(adm_store_journal_read(f->file, &seq, &e, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 0);
    assert_null(e);
}

/* More state than the journal was sized for is refused, not cut; prepare
 * for more services replaces it with a larger one. */
static void
test_journal_too_small(void **state)
{
    struct fx *f = *state;
    struct adm_store_entry *many, *e = NULL;
    char err[256] = "";
    unsigned i, n = 0, count = 64;
    uint64_t seq;

    many = calloc(count, sizeof(*many));
    assert_non_null(many);
    for (i = 0; i < count; i++) {
        snprintf(many[i].name, sizeof(many[i].name), "service-with-a-long-name-%038u", i);
        many[i].generation = 18446744073709551ull;
    }
    assert_int_equal(adm_store_journal_prepare(f->file, 1, err, sizeof(err)), 0);
    assert_int_equal(adm_store_journal_write(f->file, 1, many, count, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "do not fit"));
    assert_int_equal(adm_store_journal_prepare(f->file, count, err, sizeof(err)), 0);
    assert_int_equal(adm_store_journal_write(f->file, 1, many, count, err, sizeof(err)), 0);
    assert_int_equal(adm_store_journal_read(f->file, &seq, &e, &n, err, sizeof(err)), 0);
    assert_int_equal(n, count);
    free(e);
    free(many);
}

/* Only <file>.tmp.<pid> and <file>.pending.tmp.<pid> of processes that are
 * gone (or of this one) are removed. */
static void
test_clean_tmp_removes_only_stale_own_files(void **state)
{
    struct fx *f = *state;
    static const char *const keep[] = {
        "state.json", "state.json.tmp.1", "state.json.tmp.abc", "state.json.tmp.",
        "other.json.tmp.%ld", "state.json.tmp.%ld.x", "state.json.bak.%ld",
    };
    static const char *const gone[] = {
        "state.json.tmp.%ld", "state.json.pending.tmp.%ld", "state.json.tmp.%ld",
    };
    char path[PATH_MAX + 128], name[128], err[256] = "";
    unsigned i, removed = 99;
    pid_t dead;
    int st;

    dead = fork();
    assert_true(dead >= 0);
    if (dead == 0)
        _exit(0);
    assert_int_equal(waitpid(dead, &st, 0), dead);
    for (i = 0; i < sizeof(keep) / sizeof(keep[0]); i++) {
        snprintf(name, sizeof(name), keep[i], (long)dead);
        snprintf(path, sizeof(path), "%s/%s", f->dir, name);
        write_file(path, "x");
    }
    for (i = 0; i < sizeof(gone) / sizeof(gone[0]); i++) {
        snprintf(name, sizeof(name), gone[i], i == 2 ? (long)getpid() : (long)dead);
        snprintf(path, sizeof(path), "%s/%s", f->dir, name);
        write_file(path, "x");
    }
    assert_int_equal(adm_store_clean_tmp(f->file, &removed, err, sizeof(err)), 0);
    assert_int_equal(removed, 3);
    assert_int_equal(count_entries(f->dir), sizeof(keep) / sizeof(keep[0]));
    for (i = 0; i < sizeof(keep) / sizeof(keep[0]); i++) {
        snprintf(name, sizeof(name), keep[i], (long)dead);
        snprintf(path, sizeof(path), "%s/%s", f->dir, name);
        assert_int_equal(access(path, F_OK), 0);
    }
    /* a directory that does not exist yet holds nothing stale */
    snprintf(path, sizeof(path), "%s/nothing/state.json", f->dir);
    assert_int_equal(adm_store_clean_tmp(path, &removed, err, sizeof(err)), 0);
    assert_int_equal(removed, 0);
}

static void
test_probe(void **state)
{
    struct fx *f = *state;
    char path[PATH_MAX + 64], err[256] = "";

    assert_int_equal(adm_store_probe(f->file, err, sizeof(err)), 0);
    assert_int_equal(count_entries(f->dir), 0);      /* removed again */
    /* a missing directory is created, as a save would */
    snprintf(path, sizeof(path), "%s/missing/state.json", f->dir);
    assert_int_equal(adm_store_probe(path, err, sizeof(err)), 0);
    /* a directory that cannot be: the probe says so */
    snprintf(path, sizeof(path), "%s/blocker", f->dir);
    write_file(path, "x");
    snprintf(path, sizeof(path), "%s/blocker/state.json", f->dir);
    assert_int_equal(adm_store_probe(path, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "not a directory"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_state_name_round_trips, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plan_round_trip_and_old_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_file_is_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_files_are_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_file_is_an_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreadable_file_is_an_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_save_leaves_no_temporary_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_save_creates_the_directory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_save_failure_reports_and_keeps_old_file,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_audited_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_journal_slots, setup, teardown),
        cmocka_unit_test_setup_teardown(test_journal_too_small, setup, teardown),
        cmocka_unit_test_setup_teardown(test_clean_tmp_removes_only_stale_own_files, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_probe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_save_rejects_out_of_range_entries,
                                        setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
