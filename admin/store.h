/*
 * store: the file state store. Keeps the operator-visible state of every
 * service (weight, state latch, generation) across restarts in one small
 * JSON file:
 *
 *   {"version":1,"services":[{"name":"web","weight_bp":1000,
 *                             "state":"steady","generation":3}]}
 *
 * with an optional "plan" object per service (the progressive plan's step
 * and bake progress, see struct adm_store_entry).
 *
 * A save is atomic (temporary file in the same directory, fsync, rename,
 * fsync of the directory), so a crash leaves either the old or the new file,
 * never a torn one. A load is strict: anything it cannot vouch for is an
 * error, because silently defaulting could put traffic back on a side an
 * operator rolled away from.
 */
#ifndef CUTOVER_ADMIN_STORE_H
#define CUTOVER_ADMIN_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ADM_STORE_VERSION 1

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

#endif
