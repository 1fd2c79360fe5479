/*
 * persist: internal to the control plane (see control_int.h). The state
 * file and the audit log as the change engine sees them. A save that fails
 * after a change took effect (a lowering: applied first) leaves the control
 * plane "dirty": the state in effect is written into the journal that was
 * reserved beside the state file (store.h) and saved again on the policy
 * tick, with backoff, until it is (any later save, of any change, saves it
 * too); the log says so every ADM_UNSAVED_WARN_MS, status and metrics show
 * it, and an exit while dirty says what a restart will not find. Every
 * generation of every service gets an audit entry: one that cannot be
 * written waits in a bounded queue and is written, in order, once the log
 * takes it; generations with no entry at all (a crash between the save and
 * the audit, a full queue) get a "recovered" entry that stands for them,
 * found at startup from the state file's "audited" mark and the log's last
 * entries. Calls request.c only.
 */
#ifndef CUTOVER_ADMIN_PERSIST_H
#define CUTOVER_ADMIN_PERSIST_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "admin/audit.h"
#include "admin/control_int.h"
#include "admin/store.h"
#include "admin/writer.h"

#define ADM_AUDIT_QUEUE_MAX 1000u    /* audit entries kept while the log fails */
#define ADM_RETRY_MIN_MS    200u     /* first retry of a failed save or audit */
#define ADM_RETRY_MAX_MS    5000u    /* the backoff doubles up to this */

/* Gives service <s> the weight, state, generation, plan and audited mark of
 * store entry <e> (the plan as saved: adm_control_set_plan() checks it
 * against the config); <in_file>: <e> is what the state file holds. */
void adm_svc_restore(struct adm_svc *s, const struct adm_store_entry *e, bool in_file);

/* Saves every service's state (nothing without a state file), after what
 * the writer thread still has to write. On success
 * the control plane is clean again (a dirty state is saved with it) and the
 * journal is cleared. 0, or -1 with <err> set (counted; the caller decides
 * whether the state in effect is now unsaved). */
int adm_persist_save(struct adm_control *c, char *err, size_t errlen);

/* A change took effect but adm_persist_save() failed with <err>: dirty,
 * and the state in effect goes into the journal. True when the journal
 * holds it. */
bool adm_persist_unsaved(struct adm_control *c, const char *err);

/* Starts the writer thread (admin/writer.h) unless it runs already; not
 * without a loop (adm_control_set_loop()) or without a file to write. True
 * when it runs. */
bool adm_persist_writer(struct adm_control *c);

/* The outcome of a save on the writer thread, for the change that waits
 * for it. */
struct adm_save_note {
    bool saved;                  /* the state file holds the snapshot */
    bool journaled;              /* not saved, but the journal holds the state in effect */
    char err[512];               /* why it was not saved */
};

/* Saves every service's state on the writer thread (admin/writer.h): the
 * snapshot is taken and serialized now, written later; what
 * adm_persist_save() and adm_persist_unsaved() do after the write is done
 * once it is, on the loop, and <note> (borrowed until then, may be NULL:
 * a failure is logged) says how it went. False when there is no writer
 * (or the snapshot could not be serialized): then nothing was done and the
 * caller saves with adm_persist_save(). */
bool adm_persist_save_async(struct adm_control *c, struct adm_save_note *note);

/* The same for a copy of the fleet's row of service <svc> (admin/fleet.c):
 * the state file is then a local cache, and a failed save is only warned
 * of and counted, never journaled. */
bool adm_persist_save_cache_async(struct adm_control *c, const char *svc);

/* A raise of service <svc> to <st> with plan <plan>, saved on the writer
 * thread before it is applied: the snapshot holds every service as it is
 * and <svc> as it will be. Once the save is done, on the loop, <note>
 * (borrowed until then) says how it went and <then>(<arg>, ...) applies
 * the raise (or refuses it); a failure neither makes the control plane
 * dirty nor journals anything, since nothing took effect. False when
 * there is no writer or no state file (nothing was done: the caller saves
 * on the loop). */
bool adm_persist_save_raise(struct adm_control *c, unsigned svc,
                            const struct adm_svc_state *st, const struct hl_plan *plan,
                            struct adm_save_note *note, adm_wjob_done_fn *then, void *arg);

/* Calls <done>(<arg>, ...) on the loop once every write submitted so far
 * (saves and audit entries) is done and its outcome recorded. Only with a
 * writer (adm_persist_save_async() returned true). */
void adm_persist_after(struct adm_control *c, adm_wjob_done_fn *done, void *arg);

/* Audits change entry <e> (generation e->generation) of service <svc>:
 * written after whatever waits before it, or queued; on the writer thread
 * when c->write_async is set (the change's save went there) and nothing
 * waits before it. Never fails: what
 * cannot be written is retried on the tick. */
void adm_persist_audit(struct adm_control *c, unsigned svc, const struct adm_audit_entry *e);

/* Audits event <e>, one that changed no weight (a refusal, a server's
 * admin state, a certificate reload): on the writer thread when the
 * command in progress can wait for its reply (then c->event_sent is set
 * and the reply waits for the entry: adm_control_exec_wait()), else on the
 * loop, after what the writer holds. 0, or -1 when the audit log is off or
 * the entry could not be made or written (logged; a failure on the writer
 * thread is logged there, and 0 returned). */
int adm_persist_event(struct adm_control *c, const struct adm_audit_entry *e);

/* The startup part, after the state file was loaded and restored: stale
 * temporary files, the state directory's writability, the journal (a
 * record newer than the state file is restored: the control plane starts
 * dirty), the audit log's tail, and the audit of every generation. Warns;
 * never fails. */
void adm_persist_startup(struct adm_control *c);

/* The "store" object of the status reply (new reference). */
json_t *adm_persist_status(const struct adm_control *c);

/* Service <s>'s last change, from the audit entry of its newest generation
 * (the one made since the start, else the newest found in the log's end
 * at startup): {"action","actor","reason","at","generation","from","to"}
 * and "figures", "pid" when the entry has them; JSON null when none is
 * known. New reference (status "last_change"). */
json_t *adm_persist_last_change(const struct adm_svc *s);

/* Frees what adm_persist_*() keeps (the audit queue). */
void adm_persist_free(struct adm_control *c);

/* The policy tick's retry of what the disk did not take (adm_control_store_tick()). */
void adm_persist_tick(struct adm_control *c, uint64_t now_ms);

/* The store's figures (adm_control_store_status()). */
void adm_persist_figures(const struct adm_control *c, struct adm_store_status *out);

/* A last save at exit (adm_control_flush()). */
int adm_persist_flush(struct adm_control *c);

#endif
