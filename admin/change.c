/*
 * change: the change engine of the control plane (see change.h). Every
 * command is validated completely before it gets here: a refused request
 * changes no weight, no latch, no generation, no file and no audit line. A
 * change then follows the ordering rule that keeps the disk on the safe side
 * of the data plane: lowering the weight is applied first (traffic leaves
 * new at once, even if the disk is full) and persisted second; raising it is
 * persisted first and applied only once the save succeeded. What the disk
 * does not take at once (a lowering's save, an audit entry) is kept and
 * retried by persist.c. The saves and audit entries go to the writer
 * thread (admin/writer.h): the loop, which also serves clients, goes on.
 * A lowering (by command or automatic) is applied at once and written
 * there, its reply held until both are on disk; a raise by command is
 * saved there first and applied in the save's completion, its reply held
 * until then; a change made while such a raise is on its way waits for
 * it, on the loop (see adm_change_run()). A plan's step (a raise by
 * "auto") goes the same way, its outcome to the plan (adm_change.done). A
 * fleet's committed raise is applied, then cached and audited there, its
 * reply held until then. On the loop still: a command whose requester
 * cannot wait, and everything when there is no writer (no loop: unit
 * tests; the thread could not start).
 *
 * Workload: a handful of services and a few commands a minute; clarity and
 * strictness matter here, not speed.
 */
#include <assert.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "admin/audit.h"
#include "admin/change.h"
#include "admin/fleet.h"
#include "admin/persist.h"
#include "admin/request.h"
#include "admin/store.h"
#include "admin/writer.h"
#include "health/plan.h"
#include "lib/log.h"
#include "lib/xmalloc.h"

/* ---- changes ---------------------------------------------------------- */

/* A change whose save is on the writer thread, and the reply that waits
 * for it. */
struct change_wait {
    struct adm_control *c;       /* borrowed */
    struct adm_save_note note;   /* filled by the save's completion */
    struct adm_wait *wait;       /* owned: whom to answer; NULL: nobody waits */
    json_t *reply;               /* owned: the reply when saved */
    char name[64];               /* the service */
    char action[32];             /* the change's audit action */
};

static const char unsaved_kept[] = "kept in the journal (a restart restores it) and saved "
                                   "as soon as the disk takes it";
static const char unsaved_lost[] = "NOT kept in the journal either: saved as soon as the "
                                   "disk takes it; a restart before that brings back the "
                                   "state file's values";

/* Whether change <ch>'s save may go to the writer thread: a lowering or a
 * fleet's committed raise (the caller checked; the database holds the
 * latter already, the state file is its cache), unless another wait is in
 * the way for a command (such as the fleet's commit of an earlier step of
 * the same command) or the requester cannot wait for the reply. A reply
 * handed out already (<held>) waits for the writes. An automatic action
 * (no caller) goes there too: its log line (adm_control_log_written())
 * follows the writes. */
static bool
save_off_loop(struct adm_control *c, const struct adm_change *ch)
{
    if (c->waiting != NULL)
        return false;
    if (c->held == NULL && !ch->committed && c->caller != NULL && c->waiter == NULL)
        return false;                  /* the reply must come now: saved first */
    return adm_persist_writer(c);
}

/* Whether raise <ch> may be saved on the writer thread and applied in the
 * save's completion: a command whose requester can wait for the reply, or
 * a plan's step (<ch->done> takes its outcome), without the fleet's store
 * (its raises are written to the database first, admin/fleet.c), with a
 * state file to save it in. */
static bool
raise_off_loop(struct adm_control *c, const struct adm_change *ch)
{
    if (c->waiting != NULL || c->fleet != NULL || c->state_file == NULL)
        return false;
    /* a command whose requester waits, or an automatic raise whose caller
     * takes its outcome later */
    if (c->caller != NULL ? c->waiter == NULL : ch->done == NULL)
        return false;
    return adm_persist_writer(c);
}

/* A raise (by command, or a plan's step) whose save is on the writer
 * thread: applied once it is saved, then audited, then answered. */
struct raise_wait {
    struct adm_control *c;       /* borrowed */
    struct adm_change ch;        /* the change, its pointers to the copies below */
    struct adm_save_note note;   /* filled by the save's completion */
    struct hl_plan plan;         /* <ch.plan> points here when it has one */
    char *actor;                 /* owned */
    char *reason;                /* owned */
    char *who_actor;             /* owned: <who.actor> */
    struct adm_caller who;       /* the command's caller */
    bool has_caller;             /* false: an automatic raise */
    struct adm_wait *wait;       /* owned until handed on: whom to answer */
    char name[64];               /* the service */
    uint64_t gen;                /* its generation when the raise was saved */
};

static void
raise_free(struct raise_wait *rw)
{
    json_decref(rw->ch.figures);
    free(rw->actor);
    free(rw->reason);
    free(rw->who_actor);
    free(rw->wait);
    free(rw);
}

/* Sends reply <r> (taken; NULL: an internal error) to <w>, unless cancelled. */
static void
answer(struct adm_wait *w, json_t *r)
{
    char *text;

    if (w != NULL && w->done != NULL) {
        text = r != NULL ? json_dumps(r, JSON_COMPACT | JSON_REAL_PRECISION(15)) : NULL;
        if (text == NULL)
            text = xstrdup("{\"ok\":false,\"error\":\"internal error building the reply\"}");
        w->done(w->arg, text);
    }
    json_decref(r);
}

/* Every write of the change is done: its save and audit entry, and those
 * before them. Answers. */
static void
on_change_written(void *arg, enum adm_wjob_result res, const char *err)
{
    struct change_wait *cw = arg;
    json_t *r = cw->reply;

    (void)res;
    (void)err;
    if (!cw->note.saved) {
        const char *more = cw->note.journaled ? unsaved_kept : unsaved_lost;

        log_at(LL_ERR, "control", 0, "%s: %s applied but not saved: %s; %s", cw->name,
               cw->action, cw->note.err, more);
        json_decref(r);
        r = adm_fail_reply("applied but not saved: %s; %s", cw->note.err, more);
    }
    if (cw->wait != NULL)
        answer(cw->wait, r);
    else
        json_decref(r);
    free(cw->wait);
    free(cw);
}

static json_t *change_run(struct adm_control *c, const struct adm_change *ch,
                          const char *actor);

/* The save of raise <arg> (a struct raise_wait) is done: applied now when
 * the file holds it, else refused (nothing changed). */
static void
on_raise_saved(void *arg, enum adm_wjob_result res, const char *err)
{
    struct raise_wait *rw = arg;
    struct adm_control *c = rw->c;
    int k = adm_svc_find(c, rw->name);
    json_t *r;

    (void)res;
    (void)err;
    c->raising--;
    /* an automatic raise not applied: its caller takes the refusal */
    if (k >= 0 && rw->ch.done != NULL
        && (!rw->note.saved || c->svcs[k].st.generation != rw->gen))
        rw->ch.done(c, (unsigned)k, false);
    if (k < 0) {
        r = adm_fail_reply("service %s is no longer configured; nothing changed", rw->name);
    } else if (!rw->note.saved) {
        log_at(LL_ERR, "control", 0, "%s: %s by %s refused: cannot save state: %s", rw->name,
               rw->ch.action, rw->actor, rw->note.err);
        r = adm_fail_reply("cannot save state: %s", rw->note.err);
    } else if (c->svcs[k].st.generation != rw->gen) {
        /* never: a change waits for the raises on their way (adm_change_run) */
        log_at(LL_ERR, "control", 0, "%s: %s by %s not applied: the service changed while "
               "it was being saved", rw->name, rw->ch.action, rw->actor);
        r = adm_fail_reply("not applied: service %s changed while the raise was being "
                           "saved; check status and try again", rw->name);
    } else {
        /* saved: applied now; the reply waits for the audit entry (the
         * engine takes <wait> from <held>). This may run inside another
         * command (a drain): its requester is put back afterwards. */
        const struct adm_caller *caller = c->caller;
        struct adm_wait_req *waiter = c->waiter;
        struct adm_wait *waiting = c->waiting;

        rw->ch.svc = (unsigned)k;
        c->caller = rw->has_caller ? &rw->who : NULL;
        c->waiter = NULL;
        c->waiting = NULL;
        c->held = rw->wait;
        r = change_run(c, &rw->ch, rw->actor);
        if (c->held == NULL)
            rw->wait = NULL;           /* taken: answered once written */
        c->held = NULL;
        c->caller = caller;
        c->waiter = waiter;
        c->waiting = waiting;
        if (r != NULL && rw->ch.plan != NULL && c->plan_status != NULL
            && json_is_true(json_object_get(r, "ok")))
            json_object_set_new(r, "plan", c->plan_status(&c->svcs[k]));
        if (rw->ch.done != NULL)
            rw->ch.done(c, (unsigned)k, true);
        if (rw->wait == NULL) {
            json_decref(r);
            raise_free(rw);
            return;
        }
    }
    answer(rw->wait, r);
    raise_free(rw);
}

/* Saves raise <ch> on the writer thread, to be applied once saved; the
 * reply waits (JSON null is returned meanwhile). NULL when the save could
 * not be submitted (nothing done: the caller saves on the loop). */
static json_t *
raise_submit(struct adm_control *c, const struct adm_change *ch, const char *actor)
{
    struct adm_svc *s = &c->svcs[ch->svc];
    struct adm_svc_state st = { .weight_bp = ch->weight_bp, .state = ch->state,
                                .generation = s->st.generation + 1 };
    struct hl_plan plan = s->plan;
    struct raise_wait *rw = xcalloc(1, sizeof(*rw));

    /* the plan as plan_take() will leave it */
    if (ch->plan != NULL)
        plan = *ch->plan;
    else
        (void)hl_plan_abort(&plan);
    rw->c = c;
    rw->ch = *ch;
    rw->ch.saved = true;
    rw->actor = xstrdup(actor);
    rw->reason = xstrdup(ch->reason != NULL ? ch->reason : "");
    rw->ch.reason = rw->reason;
    if (ch->figures != NULL)
        json_incref(ch->figures);
    if (ch->plan != NULL) {
        rw->plan = *ch->plan;
        rw->ch.plan = &rw->plan;
    }
    if (c->caller != NULL) {
        rw->has_caller = true;
        rw->who = *c->caller;
        rw->who_actor = xstrdup(c->caller->actor != NULL ? c->caller->actor : "unknown");
        rw->who.actor = rw->who_actor;
    }
    if (c->waiter != NULL) {
        rw->wait = xcalloc(1, sizeof(*rw->wait));
        rw->wait->done = c->waiter->done;
        rw->wait->arg = c->waiter->arg;
    }
    snprintf(rw->name, sizeof(rw->name), "%s", s->name);
    rw->gen = s->st.generation;
    if (!adm_persist_save_raise(c, ch->svc, &st, &plan, &rw->note, on_raise_saved, rw)) {
        raise_free(rw);
        return NULL;
    }
    c->raising++;
    c->waiting = rw->wait;             /* NULL for an automatic raise: nobody waits */
    return json_null();
}

/* Publishes service <svc>'s state; <left> is the side a blue-green switch
 * took traffic away from (RT_NONE when not a switch). */
static unsigned
apply(struct adm_control *c, unsigned svc, enum rt_side left, int *drain_s)
{
    if (c->ops.apply != NULL)
        c->ops.apply(c->arg, svc, &c->svcs[svc].st);
    if (left != RT_NONE && c->ops.switched != NULL)
        return c->ops.switched(c->arg, svc, left, drain_s);
    return 0;
}

/* Puts the plan of change <ch> in place; a change without one ends a
 * running plan as aborted: the operator took the weight into their own
 * hands. */
static void
plan_take(struct adm_control *c, const struct adm_change *ch, const char *actor)
{
    struct adm_svc *s = &c->svcs[ch->svc];

    if (ch->plan != NULL) {
        s->plan = *ch->plan;
        return;
    }
    if (hl_plan_abort(&s->plan) != 0)
        return;                        /* no plan running */
    log_at(LL_INFO, "control", 0, "%s: %s by %s ends the plan at step %u/%u (aborted)",
           s->name, ch->action, actor, s->plan.step + 1, s->plan_conf.nsteps);
}

static json_t *
change_run(struct adm_control *c, const struct adm_change *ch, const char *actor)
{
    struct adm_svc *s = &c->svcs[ch->svc];
    struct adm_svc_state old = s->st;
    struct hl_plan old_plan = s->plan;
    struct adm_audit_entry ae;
    char err[512], p0[16], p1[16], *qreason, by[128];
    json_t *quoted;
    bool saved = true, journaled = false;
    struct change_wait *cw = NULL;
    json_t *r;
    int drain_s = ch->drain_s;
    unsigned draining = 0;
    json_t *fig = NULL;
    long pid = c->caller != NULL && strcmp(c->caller->actor, actor) == 0 ? c->caller->pid : -1;

    /* the fleet's store: a raise is written there first (admin/fleet.c) */
    if (c->fleet != NULL && !ch->committed && !adm_fleet_is_safe(&old, ch))
        return adm_fleet_raise(c, ch, actor);

    /* A raise is saved before it is applied: on the writer thread when the
     * requester can wait (applied in the save's completion), else here, on
     * the loop, after what the writer thread still writes, so that a
     * failure it reports journals the state in effect, not this raise. */
    if (ch->weight_bp > old.weight_bp && !ch->committed && !ch->saved) {
        if (raise_off_loop(c, ch) && (r = raise_submit(c, ch, actor)) != NULL)
            return r;
        adm_writer_drain(c->writer);
    }

    /* the log line names the process behind a socket command */
    if (pid > 0)
        snprintf(by, sizeof(by), "%s pid:%ld", actor, pid);
    else
        snprintf(by, sizeof(by), "%s", actor);

    s->st.weight_bp = ch->weight_bp;
    s->st.state = ch->state;
    s->st.generation = old.generation + 1;
    plan_take(c, ch, actor);

    if (ch->weight_bp <= old.weight_bp || ch->committed || ch->saved) {
        /* Lowering: traffic leaves new now, whatever the disk says; what
         * cannot be saved is kept in the journal and saved later. */
        draining = apply(c, ch->svc, ch->left, &drain_s);
        /* the fleet's store: the write goes out now, so that the database's
         * commit and the local cache's fsync overlap (the reply waits for
         * the commit: adm_fleet_lowered_wait()) */
        if (c->fleet != NULL && !ch->committed && !ch->saved)
            adm_fleet_lowered(c, ch->svc);
        if (ch->saved) {
            /* a raise the state file holds: its audit entry follows on the
             * writer thread, and the reply after it */
            cw = xcalloc(1, sizeof(*cw));
            cw->note.saved = true;
            c->write_async = true;
        } else if (save_off_loop(c, ch)) {
            /* the reply waits for it (below), the loop does not */
            cw = xcalloc(1, sizeof(*cw));
            if (!adm_persist_save_async(c, &cw->note)) {
                free(cw);
                cw = NULL;
            }
            c->write_async = cw != NULL;   /* the audit entry below follows it */
        }
        if (cw == NULL) {
            saved = adm_persist_save(c, err, sizeof(err)) == 0;
            if (!saved)
                journaled = adm_persist_unsaved(c, err);
        }
    } else {
        /* Raising: never put more on new than a restart would restore. A
         * save also saves a dirty state, which is then saved with it. */
        if (adm_persist_save(c, err, sizeof(err)) != 0) {
            s->st = old;
            s->plan = old_plan;
            log_at(LL_ERR, "control", 0, "%s: %s by %s refused: cannot save state: %s",
                   s->name, ch->action, by, err);
            return adm_fail_reply("cannot save state: %s", err);
        }
        draining = apply(c, ch->svc, ch->left, &drain_s);
    }

    if (hl_plan_is_running(&old_plan) && !hl_plan_is_running(&s->plan))
        s->plan_end_gen = s->st.generation;   /* this change ended the plan */

    /* The reason is operator text: quoted, so a newline cannot forge a log line. */
    quoted = ch->reason[0] != '\0' ? json_string(ch->reason) : NULL;
    qreason = quoted != NULL ? json_dumps(quoted, JSON_ENCODE_ANY) : NULL;
    json_decref(quoted);
    log_at(LL_INFO, "control", 0, "%s: %s by %s: weight %s -> %s, state %s -> %s, "
           "generation %llu%s%s", s->name, ch->action, by,
           adm_pct(old.weight_bp, p0, sizeof(p0)), adm_pct(s->st.weight_bp, p1, sizeof(p1)),
           adm_state_names[old.state], adm_state_names[s->st.state],
           (unsigned long long)s->st.generation,
           qreason != NULL ? ", reason: " : "", qreason != NULL ? qreason : "");
    free(qreason);

    ae = (struct adm_audit_entry){
        .service = s->name, .actor = actor, .action = ch->action,
        .from_bp = old.weight_bp, .to_bp = s->st.weight_bp,
        .reason = ch->reason, .generation = s->st.generation, .figures = ch->figures,
        .pid = pid,
    };
    /* the tunnels left on the side that lost its traffic, and when they close */
    if (ch->left != RT_NONE && drain_s >= 0) {
        fig = ch->figures != NULL ? json_incref(ch->figures) : json_object();
        json_object_set_new(fig, "drain_s", json_integer(drain_s));
        json_object_set_new(fig, "draining", json_integer((json_int_t)draining));
        ae.figures = fig;
        log_at(LL_INFO, "control", 0, "%s: %u tunnel(s) on %s close in %d s", s->name,
               draining, rt_side_names[ch->left], drain_s);
    }
    /* The change happened: a failing audit log must not hide it, nor undo
     * it. What cannot be written now waits and is retried. */
    adm_persist_audit(c, ch->svc, &ae);
    c->write_async = false;
    if (c->fleet != NULL)
        adm_fleet_audit(c, &ae);
    json_decref(fig);

    if (!saved) {
        const char *more = journaled ? unsaved_kept : unsaved_lost;

        log_at(LL_ERR, "control", 0, "%s: %s applied but not saved: %s; %s", s->name,
               ch->action, err, more);
        return adm_fail_reply("applied but not saved: %s; %s", err, more);
    }
    r = json_pack("{s:b, s:s, s:o, s:s, s:I, s:o}", "ok", 1, "service", s->name,
                  "weight", adm_percent_json(s->st.weight_bp),
                  "state", adm_state_names[s->st.state],
                  "generation", (json_int_t)s->st.generation,
                  "previous_weight", adm_percent_json(old.weight_bp));
    if (cw == NULL)
        return r;
    /* The reply comes once the save and the audit entry are written (the
     * caller's additions to <r> included: it is the same object). */
    cw->c = c;
    cw->reply = json_incref(r);
    snprintf(cw->name, sizeof(cw->name), "%s", s->name);
    snprintf(cw->action, sizeof(cw->action), "%s", ch->action);
    if (c->held != NULL) {
        cw->wait = c->held;            /* handed out already: taken */
        c->held = NULL;
    } else if (c->caller != NULL && c->waiter != NULL) {
        cw->wait = xcalloc(1, sizeof(*cw->wait));
        cw->wait->done = c->waiter->done;
        cw->wait->arg = c->waiter->arg;
        c->waiting = cw->wait;
    }
    adm_persist_after(c, on_change_written, cw);
    return r;
}

json_t *
adm_change_run(struct adm_control *c, const struct adm_change *ch, const char *actor)
{
    /* A raise saved on the writer thread is applied in its save's
     * completion: a change made meanwhile waits for it here, on the loop
     * (a raise's save takes milliseconds; a change that comes within them
     * is rare), so that it starts from the state the raise leaves and its
     * snapshot, written after the raise's, holds the raise too. */
    if (c->raising > 0 && !ch->saved)
        adm_writer_drain(c->writer);
    return change_run(c, ch, actor);
}
