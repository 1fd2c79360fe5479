/*
 * 25_disk_faults: the state file and the audit log on a disk that is full
 * or read-only (a small tmpfs mounted for the test: root only; skipped with
 * a message otherwise). A rollback always takes effect; one the disk did not
 * take is reported dirty (status, metrics), kept in the journal when the
 * disk is full, survives a kill -9 there, and is saved once the disk takes
 * writes again; the audit log never holds a torn line (a short write is cut
 * back) and gets the entry late; an exit while dirty on a read-only disk
 * says in the log what a restart will not find, and the next start warns
 * that the state directory is not writable.
 *
 * Waits are bounded polls of the status (the retries back off up to 5 s),
 * never fixed sleeps.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "admin/control.h"
#include "tests/integration/fixture.h"

#define DISK_BYTES (1024u * 1024)    /* the tmpfs: room for what the daemon writes */
#define PAGE 4096u
#define SAVED_WITHIN_MS 12000        /* the retry backs off to 5 s: two of them and more */

struct df {
    struct fx f;                 /* first: fx_new() */
    char disk[256];              /* the tmpfs mount point */
    char filler[300];            /* the file that fills it */
};

static int
df_teardown(void **state)
{
    struct df *d = *state;

    if (d != NULL) {
        h_kill_all();
        h_umount(d->disk);
    }
    return fx_teardown(state);
}

/* A fixture whose state file and audit log live on a fresh tmpfs, with
 * admin.listen for the metrics; cutoverd started. */
static struct df *
start(void **state)
{
    struct df *d;
    struct fx *f;

    if (geteuid() != 0) {
        fprintf(stderr, "25_disk_faults: needs root (mounts a tmpfs to fill and to make "
                "read-only): skipped\n");
        skip();
    }
    d = fx_new(state, sizeof(*d), false, 1, NULL);
    f = &d->f;
    snprintf(d->disk, sizeof(d->disk), "%s/disk", f->dir);
    snprintf(d->filler, sizeof(d->filler), "%s/filler", d->disk);
    assert_int_equal(mkdir(d->disk, 0700), 0);
    assert_int_equal(h_tmpfs_mount(d->disk, DISK_BYTES), 0);
    snprintf(f->state, sizeof(f->state), "%s/state.json", d->disk);
    snprintf(f->audit, sizeof(f->audit), "%s/audit.jsonl", d->disk);
    f->admin_port = h_free_port();
    assert_int_equal(fx_write_conf(f), 0);
    assert_int_equal(fx_start_proxy(f, 25), 0);
    return d;
}

static off_t
size_of(const char *path)
{
    struct stat sb;

    assert_int_equal(stat(path, &sb), 0);
    return sb.st_size;
}

/* Appends a JSON line to the audit log (the daemon is idle) so that the
 * log ends <room> bytes before a page boundary: the next entry then fits
 * only in part on a full tmpfs, a short write. */
static void
pad_audit(struct fx *f, unsigned room)
{
    off_t size = size_of(f->audit), end = size + 32;
    char line[2 * PAGE];
    size_t len;
    int fd;

    while (end % PAGE != PAGE - room)
        end++;
    len = (size_t)(end - size);
    memset(line, 'x', len);
    memcpy(line, "{\"pad\":\"", 8);
    memcpy(line + len - 3, "\"}\n", 3);
    fd = open(f->audit, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, line, len), (ssize_t)len);
    close(fd);
    assert_int_equal(size_of(f->audit) % PAGE, PAGE - room);
}

/* The status reply's "store" object, copied (caller decrefs). */
static json_t *
store_status(struct fx *f)
{
    json_t *root = h_ctl_json(f->sock, "status", (char *)NULL);
    json_t *st = json_deep_copy(json_object_get(root, "store"));

    json_decref(root);
    assert_non_null(st);
    return st;
}

static bool
is_dirty(struct fx *f, bool *journaled, long *audit_pending)
{
    json_t *st = store_status(f);
    bool dirty = json_is_true(json_object_get(st, "dirty"));

    if (journaled != NULL)
        *journaled = json_is_true(json_object_get(st, "journaled"));
    if (audit_pending != NULL)
        *audit_pending = (long)json_integer_value(json_object_get(st, "audit_pending"));
    json_decref(st);
    return dirty;
}

/* Polls the status until nothing waits to be written (state saved, audit
 * entries written); fails the test after SAVED_WITHIN_MS. */
static void
wait_saved(struct fx *f)
{
    long long end = h_now_ms() + SAVED_WITHIN_MS;
    long pending = 0;

    while (is_dirty(f, NULL, &pending) || pending > 0) {
        if (h_now_ms() > end) {
            h_dump_file(f->log, 4000);
            fail_msg("still unsaved %d ms after the disk took writes again",
                     SAVED_WITHIN_MS);
        }
        h_sleep_ms(50);
    }
}

/* cutoverctl <args> must exit 1 with every one of <needles> in its stderr. */
static void
ctl_refused(struct fx *f, const char *a, const char *b, const char *n1, const char *n2)
{
    char out[4096];
    int rc = b != NULL ? fx_ctl(f, out, a, b) : fx_ctl(f, out, a);

    if (rc != 1)
        fail_msg("cutoverctl %s: exit %d (want 1): %s", a, rc, h_ctl_err());
    if (strstr(h_ctl_err(), n1) == NULL || (n2 != NULL && strstr(h_ctl_err(), n2) == NULL))
        fail_msg("cutoverctl %s: \"%s\" lacks \"%s\" / \"%s\"", a, h_ctl_err(), n1,
                 n2 != NULL ? n2 : "");
}

/* Every request goes to legacy. */
static void
all_to_legacy(struct fx *f)
{
    int c[2];

    assert_int_equal(fx_count(f, 20, "/", NULL, c), 0);
    assert_int_equal(c[0], 20);
    assert_int_equal(c[1], 0);
}

/* A full disk: the rollback takes effect, is reported dirty and kept in the
 * journal; its audit entry, which fitted only in part, is cut back (no torn
 * line) and waits; both are written once there is room again. */
static void
test_full_disk_rollback_saved_later(void **state)
{
    struct df *d = start(state);
    struct fx *f = &d->f;
    struct adm_store_entry e;
    bool journaled = false;
    long pending = 0;
    off_t audit_size;
    char *m, out[8192];

    fx_ctl_ok(f, "weight", "50");
    pad_audit(f, 40);
    audit_size = size_of(f->audit);
    assert_true(h_fill_fs(d->filler) > 0);

    ctl_refused(f, "rollback", NULL, "applied but not saved", "kept in the journal");
    fx_expect_state(f, "rolled_back", 0);
    all_to_legacy(f);
    assert_true(is_dirty(f, &journaled, &pending));
    assert_true(journaled);
    assert_int_equal(pending, 1);
    assert_int_equal(fx_ctl(f, out, "status"), 0);
    assert_non_null(strstr(out, "STATE NOT SAVED since "));
    assert_non_null(strstr(out, "AUDIT ENTRIES WAITING: 1"));
    m = fx_scrape(f);
    assert_true(fx_metric(m, "cutover_state_dirty") == 1);
    assert_true(fx_metric(m, "cutover_store_errors_total{file=\"state\"}") >= 1);
    assert_true(fx_metric(m, "cutover_store_errors_total{file=\"audit\"}") >= 1);
    assert_true(fx_metric(m, "cutover_audit_pending") == 1);
    free(m);
    /* the entry went in part (a short write) and was cut back */
    assert_int_equal(h_wait_log(f->log, "bytes written, cut back", 2000), 0);
    assert_int_equal(size_of(f->audit), audit_size);
    fx_audit_covers(f, "web", 1);
    e = fx_state_file(f, "web");
    assert_int_equal(e.weight_bp, 5000);             /* the disk has the old state */

    assert_int_equal(unlink(d->filler), 0);
    wait_saved(f);
    e = fx_state_file(f, "web");
    assert_int_equal(e.weight_bp, 0);
    assert_int_equal(e.state, ADM_ST_ROLLED_BACK);
    assert_true(e.generation == 2);
    assert_int_equal(fx_audit_covers(f, "web", 2), 0);   /* its own entry, late */
    assert_int_equal(h_wait_log(f->log, "state saved to", 1000), 0);
    m = fx_scrape(f);
    assert_true(fx_metric(m, "cutover_state_dirty") == 0);
    assert_true(fx_metric(m, "cutover_audit_pending") == 0);
    free(m);
    fx_stop_clean(f);
}

/* kill -9 while a rollback on a full disk is unsaved: the next start finds
 * it in the journal, keeps the latch, says so at error level, and saves it
 * (and the audit entry that stands for it) once there is room. */
static void
test_full_disk_kill9_keeps_latch(void **state)
{
    struct df *d = start(state);
    struct fx *f = &d->f;
    struct adm_store_entry e;

    fx_ctl_ok(f, "weight", "50");
    pad_audit(f, 40);                                 /* its audit entry will not fit */
    assert_true(h_fill_fs(d->filler) > 0);
    ctl_refused(f, "rollback", NULL, "applied but not saved", "kept in the journal");
    assert_int_equal(h_stop(f->proxy, SIGKILL, 5000), 128 + SIGKILL);

    assert_int_equal(fx_start_proxy(f, 25), 0);       /* the disk is still full */
    assert_int_equal(h_wait_log(f->log, "UNSAVED STATE FOUND", 2000), 0);
    fx_expect_state(f, "rolled_back", 0);
    all_to_legacy(f);
    assert_true(is_dirty(f, NULL, NULL));
    e = fx_state_file(f, "web");
    assert_int_equal(e.weight_bp, 5000);

    assert_int_equal(unlink(d->filler), 0);
    wait_saved(f);
    e = fx_state_file(f, "web");
    assert_int_equal(e.weight_bp, 0);
    assert_int_equal(e.state, ADM_ST_ROLLED_BACK);
    assert_true(e.generation == 2);
    /* its entry was lost with the process: one stands for it */
    assert_int_equal(fx_audit_covers(f, "web", 2), 1);
    fx_stop_clean(f);
}

/* A read-only disk: a lowering takes effect, dirty and not journaled, and a
 * raise is refused; both are fine once it is writable. A rollback unsaved
 * at exit is named in the log as lost; the next start warns that the state
 * directory is not writable. */
static void
test_read_only_disk(void **state)
{
    struct df *d = start(state);
    struct fx *f = &d->f;
    struct adm_store_entry e;
    bool journaled = true;

    fx_ctl_ok(f, "weight", "30");
    assert_int_equal(h_tmpfs_remount(d->disk, DISK_BYTES, true), 0);
    ctl_refused(f, "weight", "20", "applied but not saved", "NOT kept in the journal");
    fx_expect_state(f, "steady", 20);
    assert_true(is_dirty(f, &journaled, NULL));
    assert_false(journaled);
    ctl_refused(f, "weight", "25", "cannot save state", NULL);
    fx_expect_state(f, "steady", 20);

    assert_int_equal(h_tmpfs_remount(d->disk, DISK_BYTES, false), 0);
    wait_saved(f);
    e = fx_state_file(f, "web");
    assert_int_equal(e.weight_bp, 2000);
    assert_true(e.generation == 2);
    fx_audit_covers(f, "web", 2);

    assert_int_equal(h_tmpfs_remount(d->disk, DISK_BYTES, true), 0);
    ctl_refused(f, "rollback", NULL, "applied but not saved", "NOT kept in the journal");
    fx_stop_clean(f);
    assert_int_equal(h_wait_log(f->log, "exiting with state that is NOT in the state file",
                                1000), 0);
    assert_int_equal(h_wait_log(f->log, "weight 0% rolled_back generation 3", 1000), 0);
    assert_int_equal(h_wait_log(f->log, "exiting with an audit entry not written", 1000), 0);

    assert_int_equal(fx_start_proxy(f, 25), 0);
    assert_int_equal(h_wait_log(f->log, "the state directory is not writable", 2000), 0);
    fx_expect_state(f, "steady", 20);                 /* as the exit said */
    fx_stop_clean(f);
    assert_int_equal(h_tmpfs_remount(d->disk, DISK_BYTES, false), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_full_disk_rollback_saved_later, df_teardown),
        cmocka_unit_test_teardown(test_full_disk_kill9_keeps_latch, df_teardown),
        cmocka_unit_test_teardown(test_read_only_disk, df_teardown),
    };

    return cmocka_run_group_tests_name("integration: disk faults", tests, NULL, NULL);
}
