/*
 * writer: one thread that does the control plane's blocking disk writes
 * (the state file's replacement, the audit log's appends, each with its
 * fsync), so that the main loop, which also serves clients, does not wait
 * for the disk. Jobs run one at a time in the order they were submitted;
 * their completions run on the main loop, in the same order, from an
 * eventfd the thread signals (or from adm_writer_drain()). The thread sees
 * only a job's file name and bytes: it never touches the control plane's
 * structures. Serializing is the caller's work, on the main loop.
 *
 * When several saves of the same file are queued and not started, only the
 * newest is written, in the place of the oldest: each completion still
 * runs in its own place in the order, with the outcome of the write that
 * covered it (the newer snapshot holds everything the older one did).
 *
 * After an audit append fails, the later audit jobs already submitted are
 * not attempted (ADM_WJ_SKIPPED), so that no entry is written before one
 * that failed; the main loop re-arms appends once it has seen every
 * completion.
 */
#ifndef CUTOVER_ADMIN_WRITER_H
#define CUTOVER_ADMIN_WRITER_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct adm_writer;

enum adm_wjob_kind {
    ADM_WJ_SAVE,                 /* replace <file> with <data> (adm_store_write) */
    ADM_WJ_AUDIT,                /* append the line <data> to <file> (adm_audit_write) */
    ADM_WJ_MARK,                 /* no I/O: completes once every earlier job did */
};

enum adm_wjob_result {
    ADM_WJ_OK,
    ADM_WJ_FAILED,               /* <err> says why */
    ADM_WJ_SKIPPED,              /* audit: not attempted, an earlier append failed */
};

struct adm_wjob;

/* Called on the main loop once <job> is done: <res>, <err> ("" unless
 * FAILED or SKIPPED, valid only during the call), <arg> as submitted. */
typedef void adm_wjob_done_fn(void *arg, enum adm_wjob_result res, const char *err);

/* Starts the thread; its completions come on <base> (its event is added
 * there with the first job). NULL with <err> set. */
struct adm_writer *adm_writer_new(struct event_base *base, char *err, size_t errlen);

/* Finishes every job (adm_writer_drain), stops the thread, frees <w>.
 * NULL: nothing. */
void adm_writer_free(struct adm_writer *w);

/* Queues a job of <kind> on <file> (copied) with the <len> bytes <data>
 * (taken: freed by the writer; NULL for a MARK); <done>(<arg>, ...) runs on
 * the main loop once it is done. Main loop only. */
void adm_writer_submit(struct adm_writer *w, enum adm_wjob_kind kind, const char *file,
                       char *data, size_t len, adm_wjob_done_fn *done, void *arg);

/* Blocks until every submitted job is done, then runs the completions not
 * run yet, in order. Main loop only; a completion may submit again (then
 * that job is waited for too). */
void adm_writer_drain(struct adm_writer *w);

/* True when no job is queued, running, or waiting for its completion. */
bool adm_writer_idle(const struct adm_writer *w);

#endif
