/*
 * Tests for admin/audit.c: an entry is in the log whole or not at all (a
 * short write, forced here with RLIMIT_FSIZE as a full disk would, is cut
 * back); a torn last line is moved aside before the next entry, so nothing
 * is glued onto it; the startup check repairs a torn or broken tail and
 * keeps a whole entry found at the end of a broken line; readers find that
 * entry too; the backwards scan stops where it is told.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "tests/unit/util.h"
#include "admin/audit.h"

struct fx {
    char dir[PATH_MAX];
    char file[PATH_MAX + 32];    /* <dir>/audit.jsonl */
    char torn[PATH_MAX + 32];    /* <dir>/audit.jsonl.torn */
};

static int
setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    const char *tmp = getenv("TMPDIR");

    if (f == NULL)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "%s/test_adm_audit.XXXXXX",
             tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    if (mkdtemp(f->dir) == NULL) {
        free(f);
        return -1;
    }
    snprintf(f->file, sizeof(f->file), "%s/audit.jsonl", f->dir);
    snprintf(f->torn, sizeof(f->torn), "%s/audit.jsonl.torn", f->dir);
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

/* The whole file as a new string; NULL when it does not exist. */
static char *
slurp(const char *path)
{
    FILE *fp = fopen(path, "rb");
    char *buf;
    long len;

    if (fp == NULL)
        return NULL;
    assert_int_equal(fseek(fp, 0, SEEK_END), 0);
    len = ftell(fp);
    rewind(fp);
    buf = calloc(1, (size_t)len + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)len, fp), (size_t)len);
    fclose(fp);
    return buf;
}

static off_t
size_of(const char *path)
{
    struct stat sb;

    assert_int_equal(stat(path, &sb), 0);
    return sb.st_size;
}

/* Every line of <file> is a JSON object and the file ends with a newline;
 * returns the number of lines. */
static unsigned
assert_whole_lines(const char *file)
{
    char *text = slurp(file), *line, *save = NULL;
    unsigned n = 0;
    json_t *o;

    assert_non_null(text);
    assert_true(text[0] == '\0' || text[strlen(text) - 1] == '\n');
    for (line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
        o = json_loads(line, 0, NULL);
        if (!json_is_object(o))
            fail_msg("%s: line %u is not a JSON object: %s", file, n + 1, line);
        json_decref(o);
        n++;
    }
    free(text);
    return n;
}

static int
append(const struct fx *f, const char *action, uint64_t gen, const char *reason, char *err,
       size_t errlen)
{
    struct adm_audit_entry e = {
        .service = "web", .actor = "uid:0", .action = action, .from_bp = 0, .to_bp = 1000,
        .reason = reason, .generation = gen,
    };

    return adm_audit_append(f->file, &e, err, errlen);
}

/* A full disk lets part of a line in: it is cut back, the file stays what
 * it was, and the next append (once there is room) is a line of its own. */
static void
test_short_write_is_cut_back(void **state)
{
    struct fx *f = *state;
    struct rlimit old, lim;
    char err[512] = "", reason[300];
    off_t before;

    assert_int_equal(append(f, "weight", 1, "", err, sizeof(err)), 0);
    before = size_of(f->file);
    memset(reason, 'r', sizeof(reason) - 1);
    reason[sizeof(reason) - 1] = '\0';

    /* room for 40 more bytes: the write is short, then fails */
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = (rlim_t)before + 40;
    signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    assert_int_equal(append(f, "rollback", 2, reason, err, sizeof(err)), -1);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    if (strstr(err, "40 of ") == NULL || strstr(err, "cut back") == NULL)
        fail_msg("error \"%s\" lacks \"40 of\" and \"cut back\"", err);
    assert_int_equal(size_of(f->file), before);
    assert_int_equal(assert_whole_lines(f->file), 1);

    /* room again: the retry is whole, and nothing is glued */
    assert_int_equal(append(f, "rollback", 2, reason, err, sizeof(err)), 0);
    assert_int_equal(assert_whole_lines(f->file), 2);
}

/* A log that ends in the middle of a line (a crash mid-write): the partial
 * line is moved to .torn before the next entry goes in. */
static void
test_torn_tail_moved_aside_before_append(void **state)
{
    struct fx *f = *state;
    char err[512] = "", *torn;
    json_t *tail;

    write_file(f->file, "{\"service\":\"web\",\"generation\":1}\n{\"ts\":\"2024-01-01T00:0");
    assert_int_equal(append(f, "weight", 2, "", err, sizeof(err)), 0);
    assert_int_equal(assert_whole_lines(f->file), 2);
    torn = slurp(f->torn);
    assert_non_null(torn);
    assert_string_equal(torn, "{\"ts\":\"2024-01-01T00:0\n");
    free(torn);
    tail = adm_audit_tail(f->file, 10, NULL, err, sizeof(err));
    assert_non_null(tail);
    assert_int_equal(json_array_size(tail), 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(tail, 1),
                                                        "generation")), 2);
    json_decref(tail);
}

/* The startup check: a torn tail is cut; a last line that is a broken
 * entry with a whole one appended to it (what an older version left) keeps
 * the whole one as a line of its own; a sound or missing log is left. */
static void
test_repair_at_startup(void **state)
{
    struct fx *f = *state;
    static const char good[] = "{\"ts\":\"a\",\"service\":\"web\",\"generation\":1}\n";
    static const char glued[] = "{\"ts\":\"b\",\"service\":\"web\",\"act"
                                "{\"ts\":\"c\",\"service\":\"web\",\"action\":\"weight\","
                                "\"generation\":3}\n";
    char err[512] = "", text[512], *got;

    assert_int_equal(adm_audit_repair(f->file, err, sizeof(err)), 0);    /* missing */
    write_file(f->file, good);
    assert_int_equal(adm_audit_repair(f->file, err, sizeof(err)), 0);    /* sound */
    assert_int_equal(size_of(f->file), (off_t)strlen(good));

    snprintf(text, sizeof(text), "%s{\"ts\":\"b\",\"serv", good);
    write_file(f->file, text);
    assert_int_equal(adm_audit_repair(f->file, err, sizeof(err)), 1);
    got = slurp(f->file);
    assert_string_equal(got, good);
    free(got);

    snprintf(text, sizeof(text), "%s%s", good, glued);
    write_file(f->file, text);
    assert_int_equal(adm_audit_repair(f->file, err, sizeof(err)), 1);
    got = slurp(f->file);
    snprintf(text, sizeof(text), "%s%s", good, strstr(glued + 1, "{\"ts\":\"c\""));
    assert_string_equal(got, text);
    free(got);
    assert_int_equal(assert_whole_lines(f->file), 2);
    got = slurp(f->torn);                /* both cuts were kept */
    assert_non_null(strstr(got, "{\"ts\":\"b\",\"serv\n"));
    assert_non_null(strstr(got, glued));
    free(got);

    /* a last line that is no JSON at all goes whole */
    snprintf(text, sizeof(text), "%snot json\n", good);
    write_file(f->file, text);
    assert_int_equal(adm_audit_repair(f->file, err, sizeof(err)), 1);
    got = slurp(f->file);
    assert_string_equal(got, good);
    free(got);
}

/* Readers take the whole entry at the end of a broken line (in the middle
 * of a log written by an older version): the entry that cleared a latch is
 * not skipped. */
static void
test_tail_reads_entry_glued_to_a_torn_one(void **state)
{
    struct fx *f = *state;
    char err[512] = "";
    json_t *tail;

    write_file(f->file,
               "{\"ts\":\"a\",\"service\":\"web\",\"action\":\"rollback\",\"generation\":1}\n"
               "{\"ts\":\"b\",\"service\":\"web\",\"action\":\"weig"
               "{\"ts\":\"c\",\"service\":\"web\",\"action\":\"weight\",\"generation\":3}\n"
               "{\"ts\":\"d\",\"service\":\"web\",\"action\":\"promote\",\"generation\":4}\n");
    tail = adm_audit_tail(f->file, 10, "web", err, sizeof(err));
    assert_non_null(tail);
    assert_int_equal(json_array_size(tail), 3);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(tail, 1),
                                                        "generation")), 3);
    json_decref(tail);
}

struct count {
    unsigned seen, stop_at;
};

static int
count_visit(void *arg, json_t *o)
{
    struct count *c = arg;

    (void)o;
    return ++c->seen == c->stop_at;
}

static void
test_scan_stops_where_told(void **state)
{
    struct fx *f = *state;
    struct count c = { 0, 0 };
    char err[512] = "";
    unsigned i;

    for (i = 1; i <= 50; i++)
        assert_int_equal(append(f, "weight", i, "", err, sizeof(err)), 0);
    assert_int_equal(adm_audit_scan(f->file, 0, count_visit, &c, err, sizeof(err)), 0);
    assert_int_equal(c.seen, 50);
    c = (struct count){ 0, 7 };
    assert_int_equal(adm_audit_scan(f->file, 0, count_visit, &c, err, sizeof(err)), 0);
    assert_int_equal(c.seen, 7);
    /* at most one block read: 64 KiB holds all 50, a 1-byte budget reads one block */
    c = (struct count){ 0, 0 };
    assert_int_equal(adm_audit_scan(f->file, 1, count_visit, &c, err, sizeof(err)), 0);
    assert_int_equal(c.seen, 50);
    /* a missing log has nothing */
    unlink(f->file);
    c = (struct count){ 0, 0 };
    assert_int_equal(adm_audit_scan(f->file, 0, count_visit, &c, err, sizeof(err)), 0);
    assert_int_equal(c.seen, 0);
}

static void
test_write_refuses_what_is_not_one_line(void **state)
{
    struct fx *f = *state;
    char err[512] = "";

    assert_int_equal(adm_audit_write(f->file, "{}", 2, err, sizeof(err)), -1);
    assert_int_equal(adm_audit_write(f->file, "{}\n{}\n", 6, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "one line"));
    assert_int_equal(access(f->file, F_OK), -1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_short_write_is_cut_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_tail_moved_aside_before_append, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_repair_at_startup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tail_reads_entry_glued_to_a_torn_one, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_scan_stops_where_told, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_refuses_what_is_not_one_line, setup,
                                        teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
