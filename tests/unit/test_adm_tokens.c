/*
 * tests/unit/test_adm_tokens.c: admin/tokens.c. Format errors name the file
 * and line, the file's permissions and type are checked, sha256: entries
 * match their plain secret, levels come back with the name, and anything
 * else (a prefix, a longer string, an empty token) matches nothing.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "admin/tokens.h"

static struct adm_tokens *
parse(const char *text, char *err, size_t errlen)
{
    return adm_tokens_parse(text, strlen(text), "t.tokens", err, errlen);
}

/* Expects <text> to be refused with a message starting with <prefix>. */
static void
expect_error(const char *text, const char *prefix)
{
    char err[512];
    struct adm_tokens *t = parse(text, err, sizeof(err));

    if (t != NULL) {
        adm_tokens_free(t);
        fail_msg("accepted: %s", text);
    }
    if (strncmp(err, prefix, strlen(prefix)) != 0)
        fail_msg("message \"%s\" does not start with \"%s\"", err, prefix);
}

static void
test_levels_and_names(void **state)
{
    char err[512];
    enum adm_level lv = ADM_LEVEL__COUNT;
    const char *text =
        "# admin tokens\n"
        "\n"
        "reader   read    r-secret-0123456789\n"
        "  ops\toperate\to-secret-0123456789   \r\n"
        "root admin a-secret-0123456789\n";
    struct adm_tokens *t = parse(text, err, sizeof(err));

    if (t == NULL)
        fail_msg("%s", err);
    assert_int_equal(adm_tokens_count(t), 3);
    assert_string_equal(adm_tokens_check(t, "r-secret-0123456789", 19, &lv), "reader");
    assert_int_equal(lv, ADM_LEVEL_READ);
    assert_string_equal(adm_tokens_check(t, "o-secret-0123456789", 19, &lv), "ops");
    assert_int_equal(lv, ADM_LEVEL_OPERATE);
    assert_string_equal(adm_tokens_check(t, "a-secret-0123456789", 19, &lv), "root");
    assert_int_equal(lv, ADM_LEVEL_ADMIN);
    assert_int_equal(adm_level_from_name("operate"), ADM_LEVEL_OPERATE);
    assert_int_equal(adm_level_from_name("root"), -1);
    adm_tokens_free(t);
}

static void
test_wrong_tokens(void **state)
{
    char err[512];
    enum adm_level lv = ADM_LEVEL_ADMIN;
    struct adm_tokens *t = parse("root admin a-secret-0123456789\n", err, sizeof(err));

    assert_non_null(t);
    assert_null(adm_tokens_check(t, "a-secret-012345678", 18, &lv));     /* prefix */
    assert_null(adm_tokens_check(t, "a-secret-0123456789x", 20, &lv));   /* longer */
    assert_null(adm_tokens_check(t, "A-secret-0123456789", 19, &lv));    /* case */
    assert_null(adm_tokens_check(t, "", 0, &lv));
    /* the name is not a token */
    assert_null(adm_tokens_check(t, "root", 4, &lv));
    assert_null(adm_tokens_check(NULL, "a-secret-0123456789", 19, &lv));
    adm_tokens_free(t);
}

static void
test_sha256_form(void **state)
{
    char err[512];
    enum adm_level lv = ADM_LEVEL__COUNT;
    /* the digest is that of: printf %s secret-for-hashing-1 | sha256sum */
    const char *text =
        "# hashed\n"
        "hashed operate sha256:%s\n"
        "HASHED2 admin SHA256-IS-NOT-A-PREFIX-HERE\n";
    char buf[512];
    struct adm_tokens *t;

    snprintf(buf, sizeof(buf), text, "607a1e59a61cb64ae7fee6d60cdc0941d0792ed55af0d25b004829dc83a84f5c");
    t = parse(buf, err, sizeof(err));
    if (t == NULL)
        fail_msg("%s", err);
    assert_string_equal(adm_tokens_check(t, "secret-for-hashing-1", 20, &lv), "hashed");
    assert_int_equal(lv, ADM_LEVEL_OPERATE);
    /* the digest itself is no token; the upper-case form is a plain secret */
    assert_null(adm_tokens_check(t, "607a1e59a61cb64ae7fee6d60cdc0941d0792ed55af0d25b004829dc83a84f5c", 64, &lv));
    assert_string_equal(adm_tokens_check(t, "SHA256-IS-NOT-A-PREFIX-HERE", 27, &lv),
                        "HASHED2");
    assert_int_equal(lv, ADM_LEVEL_ADMIN);
    adm_tokens_free(t);

    /* upper-case hex digits are accepted */
    snprintf(buf, sizeof(buf), "h read sha256:%s\n", "607A1E59A61CB64AE7FEE6D60CDC0941D0792ED55AF0D25B004829DC83A84F5C");
    t = parse(buf, err, sizeof(err));
    if (t == NULL)
        fail_msg("%s", err);
    assert_string_equal(adm_tokens_check(t, "secret-for-hashing-1", 20, &lv), "h");
    adm_tokens_free(t);
}

static void
test_format_errors(void **state)
{
    expect_error("a read x-secret-0123456789 extra\n", "t.tokens:1: expected NAME LEVEL SECRET");
    expect_error("\n# c\na read\n", "t.tokens:3: expected NAME LEVEL SECRET");
    expect_error("a superuser x-secret-0123456789\n", "t.tokens:1: token a: level must be");
    expect_error("a read short\n", "t.tokens:1: token a: the secret is 5 bytes long, at least 16");
    expect_error("a/b read x-secret-0123456789\n", "t.tokens:1: token name may hold only");
    expect_error("a read x-secret-0123456789\n"
                 "a admin y-secret-0123456789\n", "t.tokens:2: token a: name already used on line 1");
    expect_error("a read x-secret-0123456789\n"
                 "b admin x-secret-0123456789\n", "t.tokens:2: token b: same secret as token a");
    expect_error("a read sha256:abcd\n", "t.tokens:1: token a: sha256: must be followed by 64");
    expect_error("a read sha256:zz94e8b6cbca5e0b9c5e0ab8b57b7bfd80de6a3c8a4b0c0a52cb1ac28e5b3a0a\n",
                 "t.tokens:1: token a: sha256: must be followed by 64");
    expect_error("a read x-secret-0123456789\x01\n", "t.tokens:1: token a: the secret may hold");
    expect_error("# only comments\n\n", "t.tokens: no token defined");
    expect_error("", "t.tokens: no token defined");
    expect_error("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa read "
                 "x-secret-0123456789\n", "t.tokens:1: token name is 64 bytes long");
}

static void
test_secret_never_in_messages(void **state)
{
    char err[512];
    struct adm_tokens *t;

    t = parse("a read x-secret-0123456789\nb admin x-secret-0123456789\n", err, sizeof(err));
    assert_null(t);
    assert_null(strstr(err, "x-secret"));
    t = parse("a read Tiny-Secret\n", err, sizeof(err));
    assert_null(t);
    assert_null(strstr(err, "Tiny"));
}

/* Writes <text> to a new file in a temporary directory with <mode>. */
static void
write_file(char *path, size_t len, const char *text, mode_t mode)
{
    char dir[] = "/tmp/test_adm_tokens.XXXXXX";
    int fd;

    assert_non_null(mkdtemp(dir));
    snprintf(path, len, "%s/admin.tokens", dir);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

static void
remove_file(const char *path)
{
    char dir[256];

    unlink(path);
    snprintf(dir, sizeof(dir), "%s", path);
    *strrchr(dir, '/') = '\0';
    rmdir(dir);
}

static void
test_load_permissions(void **state)
{
    static const mode_t bad[] = { 0640, 0604, 0620, 0602, 0644, 0660, 0666 };
    char path[256], err[512];
    struct adm_tokens *t;
    size_t i;

    write_file(path, sizeof(path), "root admin a-secret-0123456789\n", 0600);
    t = adm_tokens_load(path, err, sizeof(err));
    if (t == NULL)
        fail_msg("%s", err);
    assert_int_equal(adm_tokens_count(t), 1);
    adm_tokens_free(t);
    assert_int_equal(chmod(path, 0400), 0);
    t = adm_tokens_load(path, err, sizeof(err));
    assert_non_null(t);
    adm_tokens_free(t);

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(chmod(path, bad[i]), 0);
        assert_null(adm_tokens_load(path, err, sizeof(err)));
        assert_non_null(strstr(err, path));
        assert_non_null(strstr(err, "group and others must have no access"));
    }
    remove_file(path);
    assert_null(adm_tokens_load(path, err, sizeof(err)));
    assert_non_null(strstr(err, "cannot open the token file"));
}

static void
test_load_not_regular(void **state)
{
    char dir[] = "/tmp/test_adm_tokens.XXXXXX", err[512];

    assert_non_null(mkdtemp(dir));
    assert_int_equal(chmod(dir, 0700), 0);
    assert_null(adm_tokens_load(dir, err, sizeof(err)));
    assert_non_null(strstr(err, "not a regular file"));
    rmdir(dir);
}

static void
test_load_malformed_names_file_and_line(void **state)
{
    char path[256], err[512], want[300];

    write_file(path, sizeof(path), "# ok\nroot admin a-secret-0123456789\nbad line\n", 0600);
    assert_null(adm_tokens_load(path, err, sizeof(err)));
    snprintf(want, sizeof(want), "%s:3: expected NAME LEVEL SECRET", path);
    assert_int_equal(strncmp(err, want, strlen(want)), 0);
    remove_file(path);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_levels_and_names),
        cmocka_unit_test(test_wrong_tokens),
        cmocka_unit_test(test_sha256_form),
        cmocka_unit_test(test_format_errors),
        cmocka_unit_test(test_secret_never_in_messages),
        cmocka_unit_test(test_load_permissions),
        cmocka_unit_test(test_load_not_regular),
        cmocka_unit_test(test_load_malformed_names_file_and_line),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
