/*
 * Tests for lib/fs.c: fs_dir_of() on absolute, relative and bare names;
 * fs_mkdir_parent() creates the missing parents of a file with mode 0700
 * (and leaves existing ones as they are), fails when a component is a file
 * or cannot be created, and names that directory in its message;
 * fs_read_private() reads a private file and refuses any other. Runs in
 * fresh mkdtemp directories under $TMPDIR (or /tmp), with umask 0 while
 * modes are compared.
 */
#define _XOPEN_SOURCE 700       /* nftw() */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/fs.h"

/* A new private directory (caller frees the name). */
static char *
make_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char *dir;

    if (base == NULL || base[0] == '\0')
        base = "/tmp";
    dir = malloc(strlen(base) + 32);
    assert_non_null(dir);
    sprintf(dir, "%s/test_lib_fs.XXXXXX", base);
    assert_non_null(mkdtemp(dir));
    return dir;
}

static int
remove_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    return remove(path);
}

/* Removes <dir> and everything below it (links are not followed). */
static void
remove_tree(const char *dir)
{
    assert_int_equal(nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS), 0);
}

/* The permission bits of <path>, or -1 when it is not a directory. */
static int
dir_mode(const char *path)
{
    struct stat sb;

    if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return -1;
    return (int)(sb.st_mode & 07777);
}

static void
test_dir_of(void **state)
{
    static const struct {
        const char *file, *dir;
    } cases[] = {
        { "/var/lib/cutover/state.json", "/var/lib/cutover" },
        { "/state.json", "/" },
        { "/", "/" },
        { "state.json", "." },
        { "", "." },
        { "run/state.json", "run" },
        { "./state.json", "." },
        { "a/b/", "a/b" },
        { "a//b", "a/" },
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *d = fs_dir_of(cases[i].file);

        assert_non_null(d);
        if (strcmp(d, cases[i].dir) != 0)
            fail_msg("fs_dir_of(\"%s\"): \"%s\", want \"%s\"", cases[i].file, d,
                     cases[i].dir);
        free(d);
    }
}

static void
test_mkdir_parent_creates(void **state)
{
    char *tmp = make_tmpdir(), path[PATH_MAX], err[256], cwd[PATH_MAX];
    mode_t old = umask(0);

    (void)state;
    /* three missing levels, all 0700; the file itself is not created */
    snprintf(path, sizeof(path), "%s/a/b/c/state.json", tmp);
    strcpy(err, "untouched");
    assert_int_equal(fs_mkdir_parent(path, err, sizeof(err)), 0);
    assert_string_equal(err, "untouched");
    snprintf(path, sizeof(path), "%s/a", tmp);
    assert_int_equal(dir_mode(path), 0700);
    snprintf(path, sizeof(path), "%s/a/b", tmp);
    assert_int_equal(dir_mode(path), 0700);
    snprintf(path, sizeof(path), "%s/a/b/c", tmp);
    assert_int_equal(dir_mode(path), 0700);
    snprintf(path, sizeof(path), "%s/a/b/c/state.json", tmp);
    assert_int_equal(access(path, F_OK), -1);

    /* again: nothing to do, still 0 */
    assert_int_equal(fs_mkdir_parent(path, err, sizeof(err)), 0);

    /* an existing parent keeps its mode; the missing one below it is 0700 */
    snprintf(path, sizeof(path), "%s/open", tmp);
    assert_int_equal(mkdir(path, 0755), 0);
    snprintf(path, sizeof(path), "%s/open/private/audit.jsonl", tmp);
    assert_int_equal(fs_mkdir_parent(path, err, sizeof(err)), 0);
    snprintf(path, sizeof(path), "%s/open", tmp);
    assert_int_equal(dir_mode(path), 0755);
    snprintf(path, sizeof(path), "%s/open/private", tmp);
    assert_int_equal(dir_mode(path), 0700);

    /* a doubled slash is one separator */
    snprintf(path, sizeof(path), "%s/d1//d2/f", tmp);
    assert_int_equal(fs_mkdir_parent(path, err, sizeof(err)), 0);
    snprintf(path, sizeof(path), "%s/d1/d2", tmp);
    assert_int_equal(dir_mode(path), 0700);

    /* a relative name is created below the working directory */
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir(tmp), 0);
    assert_int_equal(fs_mkdir_parent("rel/x/f", err, sizeof(err)), 0);
    assert_int_equal(dir_mode("rel"), 0700);
    assert_int_equal(dir_mode("rel/x"), 0700);
    /* no directory part, or the root: nothing to create */
    assert_int_equal(fs_mkdir_parent("bare.json", err, sizeof(err)), 0);
    assert_int_equal(fs_mkdir_parent("/bare.json", err, sizeof(err)), 0);
    assert_int_equal(chdir(cwd), 0);

    umask(old);
    remove_tree(tmp);
    free(tmp);
}

static void
test_mkdir_parent_fails(void **state)
{
    char *tmp = make_tmpdir(), path[PATH_MAX], want[PATH_MAX + 64], err[PATH_MAX + 64];
    char small[12], name[300];
    FILE *f;

    (void)state;
    /* a component is a regular file: named, with the reason */
    snprintf(path, sizeof(path), "%s/plain", tmp);
    f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fclose(f), 0);
    snprintf(path, sizeof(path), "%s/plain/sub/state.json", tmp);
    assert_int_equal(fs_mkdir_parent(path, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "%s/plain: not a directory", tmp);
    assert_string_equal(err, want);
    snprintf(path, sizeof(path), "%s/plain/sub", tmp);
    assert_int_equal(access(path, F_OK), -1);

    /* the file's own directory is a file */
    snprintf(path, sizeof(path), "%s/plain/state.json", tmp);
    assert_int_equal(fs_mkdir_parent(path, err, sizeof(err)), -1);
    assert_string_equal(err, want);

    /* a component that cannot be created (a name over NAME_MAX, whatever
     * the permissions of the user running the test) */
    memset(name, 'n', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    snprintf(path, sizeof(path), "%s/ok/%s/state.json", tmp, name);
    assert_int_equal(fs_mkdir_parent(path, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "cannot create directory %s/ok/%s: %s", tmp, name,
             strerror(ENAMETOOLONG));
    assert_string_equal(err, want);
    snprintf(path, sizeof(path), "%s/ok", tmp);
    assert_int_equal(dir_mode(path) >= 0, 1);     /* the levels above it were made */

    /* the message is cut to the buffer; no buffer at all is fine too */
    snprintf(path, sizeof(path), "%s/plain/x", tmp);
    assert_int_equal(fs_mkdir_parent(path, small, sizeof(small)), -1);
    assert_int_equal(strlen(small), sizeof(small) - 1);
    assert_memory_equal(small, tmp, sizeof(small) - 1);
    assert_int_equal(fs_mkdir_parent(path, NULL, 0), -1);

    remove_tree(tmp);
    free(tmp);
}

/* fs_read_private(): a private regular file is read whole; anything else
 * is refused with the file named and errno set. */
static void
test_read_private(void **state)
{
    char *tmp = make_tmpdir(), path[PATH_MAX], want[PATH_MAX + 128], err[PATH_MAX + 128];
    char *text = NULL;
    size_t len = 99;
    FILE *f;

    (void)state;
    snprintf(path, sizeof(path), "%s/secret", tmp);
    f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs("a secret\n", f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(path, 0600), 0);
    assert_int_equal(fs_read_private(path, 64, &text, &len, err, sizeof(err)), 0);
    assert_int_equal(len, 9);
    assert_string_equal(text, "a secret\n");
    free(text);
    /* exactly the limit is fine, one byte under it is not */
    assert_int_equal(fs_read_private(path, 9, &text, &len, err, sizeof(err)), 0);
    free(text);
    text = NULL;
    assert_int_equal(fs_read_private(path, 8, &text, &len, err, sizeof(err)), -1);
    assert_int_equal(errno, EFBIG);
    snprintf(want, sizeof(want), "%s: larger than 8 bytes", path);
    assert_string_equal(err, want);
    assert_null(text);
    /* group or others may read it */
    assert_int_equal(chmod(path, 0640), 0);
    assert_int_equal(fs_read_private(path, 64, &text, &len, err, sizeof(err)), -1);
    assert_int_equal(errno, EPERM);
    snprintf(want, sizeof(want), "%s: mode 0640: group and others must have no access "
             "(chmod 600)", path);
    assert_string_equal(err, want);
    assert_int_equal(chmod(path, 0602), 0);
    assert_int_equal(fs_read_private(path, 64, &text, &len, err, sizeof(err)), -1);
    /* missing, a directory */
    snprintf(path, sizeof(path), "%s/none", tmp);
    assert_int_equal(fs_read_private(path, 64, &text, &len, err, sizeof(err)), -1);
    assert_int_equal(errno, ENOENT);
    snprintf(want, sizeof(want), "%s: %s", path, strerror(ENOENT));
    assert_string_equal(err, want);
    assert_int_equal(fs_read_private(tmp, 64, &text, &len, err, sizeof(err)), -1);
    assert_int_equal(errno, EINVAL);
    snprintf(want, sizeof(want), "%s: not a regular file", tmp);
    assert_string_equal(err, want);

    remove_tree(tmp);
    free(tmp);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dir_of),
        cmocka_unit_test(test_mkdir_parent_creates),
        cmocka_unit_test(test_mkdir_parent_fails),
        cmocka_unit_test(test_read_private),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
