/*
 * store: the file state store. Keeps the operator-visible state of every
 * service (weight, state latch, generation) across restarts in one small
 * JSON file:
 *
 *   {"version":1,"services":[{"name":"web","weight_bp":1000,
 *                             "state":"steady","generation":3}]}
 *
 * with an optional "plan" object per service (the progressive plan's step
 * and bake progress, see struct adm_store_entry) and an optional "audited"
 * (the newest generation of the service whose audit entry was known to be
 * written when the file was saved).
 *
 * A save is atomic (temporary file in the same directory, fsync, rename,
 * fsync of the directory), so a crash leaves either the old or the new file,
 * never a torn one.
 *
 * Beside the file lives its journal, <file>.pending: space reserved while
 * the disk has some (real bytes, no hole), into which the state is written
 * in place when a save fails (a full disk): a rollback that took effect but
 * could not be saved is then still found by the next start. Two slots, each
 * "cutover-pending 1 <seq> <len> <fnv1a64>" padded to 96 bytes and the
 * compact state document; the slot with the higher valid <seq> wins, so a
 * crash in the middle of a write loses at most that write.
 *
 * A load is strict: anything it cannot vouch for is an error, because
 * silently defaulting could put traffic back on a side an operator rolled
 * away from.
 */
#ifndef CUTOVER_ADMIN_STORE_H
#define CUTOVER_ADMIN_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ADM_STORE_VERSION 1
#define ADM_STORE_ENTRY_MAX 512  /* bytes of one compact entry, at most (journal sizing) */

struct adm_store_entry {
    char name[64];           /* service name, NUL-terminated, 1..63 bytes */
    uint32_t weight_bp;      /* share to new, 0..10000 */
    int state;               /* enum adm_state (admin/control.h) */
    uint64_t generation;     /* +1 on every change */
    /* The progressive plan's progress, the optional "plan" object:
     * {"state":"paused","step":1,"baked_ms":400,"requests":3}. Written only
     * when <has_plan>; files without it (all files written before plans
     * existed) load with has_plan false. */
    bool has_plan;
    int plan_state;          /* enum hl_plan_state (health/plan.h) */
    unsigned plan_step;      /* index of the current step, 0..HL_PLAN_MAX_STEPS-1 */
    uint64_t plan_baked_ms;  /* bake time accumulated in that step */
    uint64_t plan_requests;  /* new-side outcomes counted in that step */
    /* "audited": the newest generation whose audit entry was written when
     * the file was saved (never above <generation>). Written only when
     * <has_audited>; older files load with has_audited false. */
    bool has_audited;
    uint64_t audited;
};

/* Loads <file>. On success returns 0 with <*out> a new array of <*n>
 * entries (caller frees it with free(); NULL when *n is 0). A file that does
 * not exist is success with *n = 0. Returns -1 with a precise message in
 * <err> (without the file name: the caller adds it) when the file is
 * unreadable or corrupt: bad JSON (with line and column), wrong version,
 * wrong types or unknown keys, unknown state name, weight out of range,
 * duplicate service. Nothing is allocated on failure. */
int adm_store_load(const char *file, struct adm_store_entry **out, unsigned *n,
                   char *err, size_t errlen);

/* Replaces <file> atomically with the <n> entries <e>: writes
 * <file>.tmp.<pid> in the same directory (mode 0600), fsyncs it, renames it
 * over <file> and fsyncs the directory. The directory is created (mode 0700,
 * parents too) when missing. Returns 0, or -1 with a message in <err>; a
 * failure before the rename leaves <file> untouched and removes the
 * temporary file, a failure of the final directory fsync leaves the new
 * content in place but not yet durable. Blocking: call it from the control
 * plane, never from a worker. */
int adm_store_save(const char *file, const struct adm_store_entry *e, unsigned n,
                   char *err, size_t errlen);

/* adm_store_save() in two parts. The document of the <n> entries <e>, as
 * adm_store_save() writes it: a new string (caller frees), its length in
 * <*len>; NULL with <err> set. Touches no file. */
char *adm_store_format(const struct adm_store_entry *e, unsigned n, size_t *len, char *err,
                       size_t errlen);

/* Replaces <file> with the <len> bytes <text> as adm_store_save() does.
 * Uses no JSON and no shared state: the control plane's writer thread
 * (admin/writer.h) calls it, one call at a time. */
int adm_store_write(const char *file, const char *text, size_t len, char *err,
                    size_t errlen);

/* ---- the journal (<file>.pending) ---------------------------------------- */

/* Bytes the journal of a state file with <nsvcs> services is given. */
size_t adm_store_journal_size(unsigned nsvcs);

/* Makes sure <file>.pending exists with room for <nsvcs> services, written
 * with real bytes so that a later write into it needs no free space. A
 * journal already large enough is left as it is (it may hold a record the
 * caller has not read yet: read it first). 0, or -1 with <err> set. */
int adm_store_journal_prepare(const char *file, unsigned nsvcs, char *err, size_t errlen);

/* Writes the <n> entries <e> into the journal of <file>, in place, as
 * record <seq> (slot seq % 2), and fsyncs it. Never creates nor grows the
 * file. 0, or -1 with <err> set (no journal, too small, I/O error). */
int adm_store_journal_write(const char *file, uint64_t seq, const struct adm_store_entry *e,
                            unsigned n, char *err, size_t errlen);

/* Reads the newest valid record of the journal of <file>: 0 with <*seq>,
 * <*out> (caller frees) and <*n>, or with *n 0 and *out NULL when there is
 * no journal or no valid record in it (a torn or cleared slot is skipped,
 * with a warning when torn). -1 with <err> set when it cannot be read. */
int adm_store_journal_read(const char *file, uint64_t *seq, struct adm_store_entry **out,
                           unsigned *n, char *err, size_t errlen);

/* Invalidates both slots of the journal of <file> (in place: no space
 * needed), after the state it held was saved. 0 (also when there is no
 * journal), or -1 with <err> set. */
int adm_store_journal_clear(const char *file, char *err, size_t errlen);

/* ---- startup checks ---------------------------------------------------- */

/* Removes the temporary files a crash left next to <file>: exactly
 * <file>.tmp.<pid> and <file>.pending.tmp.<pid> whose process is not alive
 * (or is this one). <*removed> gets their number. 0, or -1 with <err> set
 * when the directory cannot be read (a missing one is no error). */
int adm_store_clean_tmp(const char *file, unsigned *removed, char *err, size_t errlen);

/* Whether a save of <file> could create its temporary file: creates the
 * directory when missing (as a save would), then creates and removes
 * <file>.tmp.<pid>. 0, or -1 with <err> saying why not (read-only file
 * system, permissions, a directory that cannot be created). */
int adm_store_probe(const char *file, char *err, size_t errlen);

#endif
