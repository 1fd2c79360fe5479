/*
 * persist: the state file and the audit log as the change engine sees them
 * (see persist.h). The rules (docs/DESIGN.md, "nothing is lost"):
 *
 * - A save that fails after a change took effect makes the control plane
 *   dirty. The state in effect goes into the journal (store.h: space
 *   reserved beside the state file, written in place, so a full disk still
 *   takes it), and is saved again on the tick with backoff, or with any
 *   later change's save, whichever comes first. A start that finds a
 *   journal record newer than the state file restores it (it can only be
 *   lower than the file: raises are applied only once saved) and starts
 *   dirty, at error level in the log.
 * - Every generation of every service has an audit entry. An entry that
 *   cannot be written waits in a queue (bounded: ADM_AUDIT_QUEUE_MAX) and is
 *   written in order before any later one. Generations with no entry (the
 *   daemon died between the state save and the audit write; the queue was
 *   full; the queue was lost with the process) get one "recovered" entry
 *   that stands for them, with the weight and state they left. At startup
 *   the gap is found from the state file's "audited" mark (the newest
 *   generation audited when the file was saved) and the newest change
 *   entries of the log, read backwards.
 *
 * - Where the writes run: the changes (lowerings, automatic actions,
 *   raises by command, a fleet's committed raise, the notifications applied
 *   from the fleet's store) and the tick's retry have their snapshot and
 *   audit line serialized here and written by the writer thread
 *   (admin/writer.h); their completions do here, in order, what a save or
 *   an append on the loop does after it, by the save's kind (a raise's
 *   failure refuses it and dirties nothing; a retry's keeps the state
 *   dirty). Every write still made on the loop (a plan's step, an event's
 *   audit entry, the audit queue, the exit) first waits for what the
 *   writer holds, so the newest snapshot always lands last.
 *
 * Workload: nothing here runs on a healthy disk beyond one save and one
 * append per change and a few comparisons per tick.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "admin/audit.h"
#include "admin/persist.h"
#include "admin/request.h"
#include "admin/store.h"
#include "admin/writer.h"
#include "health/plan.h"
#include "lib/log.h"
#include "lib/xmalloc.h"

/* why generations have no entry, as the entry that stands for them says */
#define GAP_WHY "the daemon stopped between saving the state and writing the entry, or " \
                "the audit log could not take it"
#define GAP_SCAN_NEAR_BYTES (1024ull * 1024)       /* read for every service at startup */
#define GAP_SCAN_MAX_BYTES (64ull * 1024 * 1024)   /* read for a service with a gap */

/* The audit actions of adm_change_run(): the entries that carry a new
 * generation. Everything else in the log (health, refused, auth_refused,
 * reload) reports an event that changed no weight or state. */
static const char *const change_actions[] = {
    "weight", "rollback", "promote", "switch", "freeze", "plan_start", "plan_pause",
    "plan_resume", "plan_abort", "plan_step", "recovered", NULL,
};

static bool
is_change_action(const char *a)
{
    unsigned i;

    for (i = 0; a != NULL && change_actions[i] != NULL; i++) {
        if (strcmp(a, change_actions[i]) == 0)
            return true;
    }
    return false;
}

static int64_t
realtime_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* RFC 3339 UTC with milliseconds of <ms> since the epoch. */
static const char *
format_ms(int64_t ms, char *buf, size_t len)
{
    time_t sec = (time_t)(ms / 1000);
    struct tm tm;
    size_t k;

    gmtime_r(&sec, &tm);
    k = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + k, len - k, ".%03dZ", (int)(ms % 1000));
    return buf;
}

/* ---- the state file ------------------------------------------------------ */

/* The plan of store entry <e> as saved: adm_control_set_plan() checks it
 * against the config. */
static void
plan_from_entry(struct adm_svc *s, const struct adm_store_entry *e)
{
    hl_plan_init(&s->plan);
    if (!e->has_plan)
        return;
    s->plan.state = (enum hl_plan_state)e->plan_state;
    s->plan.step = e->plan_step;
    s->plan.baked_ms = e->plan_baked_ms;
    s->plan.step_requests = e->plan_requests;
}

/* The plan of <s> into store entry <e>. */
static void
plan_to_entry(const struct adm_svc *s, struct adm_store_entry *e)
{
    /* an idle plan writes nothing: the file stays what it was before plans */
    e->has_plan = s->plan.state != HL_PLAN_IDLE;
    if (!e->has_plan)
        return;
    e->plan_state = (int)s->plan.state;
    e->plan_step = s->plan.step;
    e->plan_baked_ms = s->plan.baked_ms;
    e->plan_requests = s->plan.step_requests;
}

void
adm_svc_restore(struct adm_svc *s, const struct adm_store_entry *e, bool in_file)
{
    s->st.weight_bp = e->weight_bp;
    s->st.state = (enum adm_state)e->state;
    s->st.generation = e->generation;
    plan_from_entry(s, e);
    /* a file written before the mark existed is trusted as fully audited */
    s->audited_gen = e->has_audited ? e->audited : e->generation;
    s->audited_bp = e->has_audited && e->audited < e->generation ? -1 : (int64_t)e->weight_bp;
    if (in_file) {
        s->saved = s->st;
        s->saved_known = true;
    }
}

/* Every service's state as store entries (caller frees). */
static struct adm_store_entry *
entries_of(const struct adm_control *c)
{
    struct adm_store_entry *e = xcalloc(c->n > 0 ? c->n : 1, sizeof(*e));
    unsigned i;

    for (i = 0; i < c->n; i++) {
        const struct adm_svc *s = &c->svcs[i];

        snprintf(e[i].name, sizeof(e[i].name), "%s", s->name);
        e[i].weight_bp = s->st.weight_bp;
        e[i].state = (int)s->st.state;
        e[i].generation = s->st.generation;
        e[i].has_audited = true;
        e[i].audited = s->audited_gen < s->st.generation ? s->audited_gen : s->st.generation;
        plan_to_entry(s, &e[i]);
    }
    return e;
}

/* " web: weight 0 % rolled_back generation 5 (the state file: 80 % steady
 * generation 4);" for every service whose state in effect is not saved. */
static void
describe_unsaved(const struct adm_control *c, char *buf, size_t len)
{
    size_t k = 0;
    unsigned i;
    char w0[16], w1[16];

    buf[0] = '\0';
    for (i = 0; i < c->n && k < len; i++) {
        const struct adm_svc *s = &c->svcs[i];

        if (s->saved_known && s->saved.generation == s->st.generation)
            continue;
        if (s->saved_known)
            k += (size_t)snprintf(buf + k, len - k, " %s: weight %s%% %s generation %" PRIu64
                                  " (the state file: %s%% %s generation %" PRIu64 ");",
                                  s->name, adm_pct(s->st.weight_bp, w0, sizeof(w0)),
                                  adm_state_names[s->st.state], s->st.generation,
                                  adm_pct(s->saved.weight_bp, w1, sizeof(w1)),
                                  adm_state_names[s->saved.state], s->saved.generation);
        else
            k += (size_t)snprintf(buf + k, len - k, " %s: weight %s%% %s generation %" PRIu64
                                  " (not in the state file: the config's weight);",
                                  s->name, adm_pct(s->st.weight_bp, w0, sizeof(w0)),
                                  adm_state_names[s->st.state], s->st.generation);
    }
}

static void saved_clean(struct adm_control *c);

int
adm_persist_save(struct adm_control *c, char *err, size_t errlen)
{
    struct adm_persist *p = &c->persist;
    struct adm_store_entry *e;
    unsigned i;
    int rc;

    if (c->state_file == NULL)
        return 0;
    /* the writer's saves first: this one is newer and must land last */
    adm_writer_drain(c->writer);
    e = entries_of(c);
    rc = adm_store_save(c->state_file, e, c->n, err, errlen);
    free(e);
    if (rc != 0) {
        p->save_errors++;
        snprintf(p->last_error, sizeof(p->last_error), "%s", err);
        return -1;
    }
    for (i = 0; i < c->n; i++) {
        c->svcs[i].saved = c->svcs[i].st;
        c->svcs[i].saved_known = true;
    }
    saved_clean(c);
    return 0;
}

/* After a save that held every service's state in effect: clean again,
 * the journal cleared, room in it for services added. */
static void
saved_clean(struct adm_control *c)
{
    struct adm_persist *p = &c->persist;
    char jerr[512];

    if (p->dirty)
        log_at(LL_WARN, "control", 0, "state saved to %s again, after %.1f s unsaved",
               c->state_file, (double)(realtime_ms() - p->dirty_since_ms) / 1000.0);
    p->dirty = false;
    p->journaled = false;
    if (p->journal_valid) {
        if (adm_store_journal_clear(c->state_file, jerr, sizeof(jerr)) == 0)
            p->journal_valid = false;
        else                           /* harmless: its generations are not newer */
            log_at(LL_WARN, "control", 0, "journal: %s", jerr);
    }
    if (p->journal_cap < c->n) {       /* services were added: room for them */
        if (adm_store_journal_prepare(c->state_file, c->n, jerr, sizeof(jerr)) == 0)
            p->journal_cap = c->n;
        else
            log_at(LL_WARN, "control", 0, "journal: %s", jerr);
    }
}

/* Writes the state in effect into the journal. */
static void
journal_write(struct adm_control *c)
{
    struct adm_persist *p = &c->persist;
    struct adm_store_entry *e = entries_of(c);
    char jerr[512];

    if (adm_store_journal_write(c->state_file, p->journal_seq, e, c->n, jerr,
                                sizeof(jerr)) == 0) {
        p->journal_seq++;
        p->journaled = true;
        p->journal_valid = true;
    } else {
        p->journaled = false;
        log_at(LL_ERR, "control", 0, "journal: %s: the state in effect is kept nowhere on "
               "disk until a save succeeds", jerr);
    }
    free(e);
}

/* The state in effect is not in the state file (<why>). */
static void
mark_dirty(struct adm_control *c, const char *why)
{
    struct adm_persist *p = &c->persist;

    if (!p->dirty) {
        p->dirty = true;
        p->dirty_since_ms = realtime_ms();
        p->next_warn_ms = 0;
    }
    p->next_retry_ms = 0;              /* retried from the next tick on */
    p->backoff_ms = 0;
    snprintf(p->last_error, sizeof(p->last_error), "%s", why);
}

bool
adm_persist_unsaved(struct adm_control *c, const char *err)
{
    mark_dirty(c, err);
    journal_write(c);
    return c->persist.journaled;
}

/* ---- saves on the writer thread ------------------------------------------ */

/* What a save is for, which decides what its failure does. */
enum save_kind {
    SAVE_CHANGE,                 /* the state in effect after a change: a failure
                                  * makes the control plane dirty (journaled) */
    SAVE_CACHE,                  /* a copy of the fleet's row: only warned of */
    SAVE_RAISE,                  /* a raise not applied yet: a failure refuses it,
                                  * the state in effect did not change */
    SAVE_RETRY,                  /* the tick's retry while dirty: a failure keeps
                                  * it dirty (journaled when it was not yet) */
};

/* A snapshot on its way to the state file. */
struct save_job {
    struct adm_control *c;       /* borrowed */
    enum save_kind kind;
    struct adm_store_entry *e;   /* owned: what the file will hold, <n> entries */
    unsigned n;
    struct adm_save_note *note;  /* borrowed, may be NULL: the change waiting for it */
    char *cache_of;              /* owned, may be NULL: the service whose copy of
                                  * the fleet's row this saves (SAVE_CACHE) */
    adm_wjob_done_fn *then;      /* may be NULL: called once the outcome is recorded */
    void *then_arg;
};

/* Whether every service's state in effect is in the state file. */
static bool
all_saved(const struct adm_control *c)
{
    unsigned i;

    for (i = 0; i < c->n; i++) {
        if (!c->svcs[i].saved_known || c->svcs[i].saved.generation != c->svcs[i].st.generation)
            return false;
    }
    return true;
}

static void
on_save_done(void *arg, enum adm_wjob_result res, const char *err)
{
    struct save_job *sj = arg;
    struct adm_control *c = sj->c;
    struct adm_persist *p = &c->persist;
    bool journaled;
    unsigned i;
    int k;

    if (res == ADM_WJ_OK) {
        /* by name: a reload may have added or removed services meanwhile */
        for (i = 0; i < sj->n; i++) {
            struct adm_svc *s;

            if ((k = adm_svc_find(c, sj->e[i].name)) < 0)
                continue;
            s = &c->svcs[k];
            if (s->saved_known && s->saved.generation >= sj->e[i].generation)
                continue;
            s->saved = (struct adm_svc_state){ .weight_bp = sj->e[i].weight_bp,
                                               .state = (enum adm_state)sj->e[i].state,
                                               .generation = sj->e[i].generation };
            s->saved_known = true;
        }
        if (sj->note != NULL)
            sj->note->saved = true;
    } else {
        p->save_errors++;
        snprintf(p->last_error, sizeof(p->last_error), "%s", err);
        switch (sj->kind) {
        case SAVE_CACHE:
            log_at(LL_WARN, "fleet", 0, "%s: the local cache is not saved: %s", sj->cache_of,
                   err);
            break;
        case SAVE_RAISE:               /* refused by <then>: nothing took effect */
            if (sj->note != NULL)
                snprintf(sj->note->err, sizeof(sj->note->err), "%s", err);
            break;
        case SAVE_RETRY:               /* still dirty: the tick tries again */
            if (!p->journaled)
                journal_write(c);      /* the journal may take it now */
            break;
        case SAVE_CHANGE:
            journaled = adm_persist_unsaved(c, err);
            if (sj->note != NULL) {
                sj->note->journaled = journaled;
                snprintf(sj->note->err, sizeof(sj->note->err), "%s", err);
            } else {
                log_at(LL_ERR, "control", 0, "state not saved: %s; %s", err, journaled
                       ? "kept in the journal (a restart restores it) and saved as soon as "
                         "the disk takes it"
                       : "NOT kept in the journal either: saved as soon as the disk takes "
                         "it; a restart before that brings back the state file's values");
            }
            break;
        }
    }
    /* a raise is applied here, so that the file is seen to hold it below */
    if (sj->then != NULL)
        sj->then(sj->then_arg, res, err);
    if (res == ADM_WJ_OK && all_saved(c))   /* else a newer save is on its way */
        saved_clean(c);
    free(sj->cache_of);
    free(sj->e);
    free(sj);
}

/* An audit entry written on the loop (an event that changed nothing, a
 * health verdict, a reload): the changes' entries on their way go first. */
static void
on_audit_barrier(void *arg)
{
    struct adm_control *c = arg;

    adm_writer_drain(c->writer);
}

bool
adm_persist_writer(struct adm_control *c)
{
    char err[256];

    if (c->writer != NULL)
        return true;
    if (c->base == NULL || (c->state_file == NULL && c->audit_file == NULL)
        || c->writer_failed)
        return false;
    c->writer = adm_writer_new(c->base, err, sizeof(err));
    if (c->writer == NULL) {
        c->writer_failed = true;
        log_at(LL_WARN, "control", 0, "no writer thread (%s): the state file and the audit "
               "log are written on the main loop", err);
        return false;
    }
    adm_audit_set_barrier(on_audit_barrier, c);
    return true;
}

/* Submits a save of snapshot <e>/<n> (taken) of <kind>; see
 * adm_persist_save_async(). */
static bool
submit_save(struct adm_control *c, enum save_kind kind, struct adm_store_entry *e,
            unsigned n, struct adm_save_note *note, const char *cache_of,
            adm_wjob_done_fn *then, void *then_arg)
{
    struct save_job *sj;
    char *text, ferr[512];
    size_t len = 0;

    /* serialized here: the thread sees bytes only */
    text = adm_store_format(e, n, &len, ferr, sizeof(ferr));
    if (text == NULL) {
        log_at(LL_WARN, "control", 0, "state file: %s", ferr);
        free(e);
        return false;                  /* the caller saves in place, and reports that */
    }
    sj = xcalloc(1, sizeof(*sj));
    sj->c = c;
    sj->kind = kind;
    sj->e = e;
    sj->n = n;
    sj->note = note;
    sj->cache_of = cache_of != NULL ? xstrdup(cache_of) : NULL;
    sj->then = then;
    sj->then_arg = then_arg;
    if (note != NULL)
        *note = (struct adm_save_note){ .saved = false };
    adm_writer_submit(c->writer, ADM_WJ_SAVE, c->state_file, text, len, on_save_done, sj);
    return true;
}

static bool
save_async(struct adm_control *c, struct adm_save_note *note, const char *cache_of)
{
    if (!adm_persist_writer(c))
        return false;
    if (note != NULL)
        *note = (struct adm_save_note){ .saved = true };
    if (c->state_file == NULL)
        return true;
    return submit_save(c, cache_of != NULL ? SAVE_CACHE : SAVE_CHANGE, entries_of(c), c->n,
                       note, cache_of, NULL, NULL);
}

bool
adm_persist_save_async(struct adm_control *c, struct adm_save_note *note)
{
    return save_async(c, note, NULL);
}

bool
adm_persist_save_cache_async(struct adm_control *c, const char *svc)
{
    return save_async(c, NULL, svc);
}

bool
adm_persist_save_raise(struct adm_control *c, unsigned svc, const struct adm_svc_state *st,
                       const struct hl_plan *plan, struct adm_save_note *note,
                       adm_wjob_done_fn *then, void *arg)
{
    struct adm_svc *s = &c->svcs[svc];
    struct adm_svc_state was = s->st;
    struct hl_plan was_plan = s->plan;
    struct adm_store_entry *e;

    if (c->state_file == NULL || !adm_persist_writer(c))
        return false;
    /* the snapshot as it will be once applied: every other service as it is */
    s->st = *st;
    s->plan = *plan;
    e = entries_of(c);
    s->st = was;
    s->plan = was_plan;
    return submit_save(c, SAVE_RAISE, e, c->n, note, NULL, then, arg);
}

void
adm_persist_after(struct adm_control *c, adm_wjob_done_fn *done, void *arg)
{
    adm_writer_submit(c->writer, ADM_WJ_MARK, NULL, NULL, 0, done, arg);
}

/* ---- the audit of every generation --------------------------------------- */

/* Keeps audit entry <e> (borrowed) of a change of <s> as its last change. */
static void
remember_entry(struct adm_svc *s, json_t *e)
{
    json_decref(s->last);
    s->last = json_incref(e);
}

/* The same with the entry as its line <line>/<len>. */
static void
remember_line(struct adm_svc *s, const char *line, size_t len)
{
    json_t *e = json_loadb(line, len, 0, NULL);

    if (json_is_object(e))
        remember_entry(s, e);
    json_decref(e);
}

json_t *
adm_persist_last_change(const struct adm_svc *s)
{
    static const char *const keys[] = { "action", "actor", "reason", "generation", "from",
                                        "to", "figures", "pid", NULL };
    json_t *o, *v;
    unsigned i;

    if (s->last == NULL)
        return json_null();
    o = json_object();
    json_object_set(o, "at", json_object_get(s->last, "ts"));
    for (i = 0; keys[i] != NULL; i++)
        if ((v = json_object_get(s->last, keys[i])) != NULL)
            json_object_set(o, keys[i], v);
    return o;
}

/* Writes the entry that stands for generations <first>..<last> of <s>,
 * which have none: <to_bp> and <state> (NULL: unknown) as they were after
 * <last>, <from_bp> before <first> (-1: unknown), <why> they have none.
 * 0, or -1 with <err> set. */
static int
write_recovered(struct adm_control *c, struct adm_svc *s, uint64_t first, uint64_t last,
                int64_t from_bp, uint32_t to_bp, const char *state, const char *why,
                char *err, size_t errlen)
{
    struct adm_audit_entry ae;
    char reason[768], gens[64], *line;
    json_t *fig;
    size_t len = 0;
    int rc;

    if (first == last)
        snprintf(gens, sizeof(gens), "generation %" PRIu64, last);
    else
        snprintf(gens, sizeof(gens), "generations %" PRIu64 "..%" PRIu64, first, last);
    snprintf(reason, sizeof(reason), "%s took effect with no audit entry (%s); this entry "
             "stands for %s: the weight%s after it", gens, why,
             first == last ? "it" : "them", state != NULL ? " and state" : "");
    fig = json_pack("{s:I, s:I}", "first_generation", (json_int_t)first,
                    "last_generation", (json_int_t)last);
    if (fig != NULL && state != NULL)
        json_object_set_new(fig, "state", json_string(state));
    ae = (struct adm_audit_entry){
        .service = s->name, .actor = "auto", .action = "recovered",
        .from_bp = from_bp >= 0 ? (uint32_t)from_bp : 0,
        .from_text = from_bp >= 0 ? NULL : "unknown",
        .to_bp = to_bp, .reason = reason, .generation = last, .figures = fig,
    };
    line = adm_audit_format(&ae, &len, err, errlen);
    json_decref(fig);
    if (line == NULL)
        return -1;
    rc = adm_audit_write(c->audit_file, line, len, err, errlen);
    if (rc == 0)
        remember_line(s, line, len);
    free(line);
    if (rc != 0)
        return -1;
    log_at(LL_WARN, "control", 0, "%s: audit: %s had no entry (%s): a \"recovered\" entry "
           "stands for %s", s->name, gens, why, first == last ? "it" : "them");
    s->audited_gen = last;
    s->audited_bp = to_bp;
    return 0;
}

/* Writes queued or new entry <q> (its service may be gone after a reload),
 * after the entry that stands for the generations before it that have none.
 * 0, or -1 with <err> set. */
static int
write_entry(struct adm_control *c, const struct adm_audit_pending *q, char *err,
            size_t errlen)
{
    int k = adm_svc_find(c, q->service);
    struct adm_svc *s = k >= 0 ? &c->svcs[k] : NULL;

    if (s != NULL && s->audited_gen + 1 < q->generation
        && write_recovered(c, s, s->audited_gen + 1, q->generation - 1, s->audited_bp,
                           q->from_bp, NULL, "not written while the audit log failed, "
                           "and more than the queue could keep", err, errlen) != 0)
        return -1;
    if (adm_audit_write(c->audit_file, q->line, q->len, err, errlen) != 0)
        return -1;
    if (s != NULL && q->generation > s->audited_gen) {
        s->audited_gen = q->generation;
        s->audited_bp = q->to_bp;
    }
    return 0;
}

static void
pending_free(struct adm_audit_pending *q)
{
    free(q->service);
    free(q->line);
    free(q);
}

/* Writes the queued entries, oldest first, until one fails. 0 when the
 * queue is empty, -1 with <err> set otherwise. */
static int
flush_queue(struct adm_control *c, char *err, size_t errlen)
{
    struct adm_persist *p = &c->persist;
    struct adm_audit_pending *q;
    unsigned written = 0;

    while ((q = p->queue) != NULL) {
        if (write_entry(c, q, err, errlen) != 0) {
            p->audit_errors++;
            snprintf(p->audit_error, sizeof(p->audit_error), "%s", err);
            return -1;
        }
        p->queue = q->next;
        if (p->queue == NULL)
            p->queue_tail = &p->queue;
        p->queued--;
        pending_free(q);
        written++;
    }
    if (written > 0)
        log_at(LL_WARN, "control", 0, "audit: %u entr%s written late to %s", written,
               written == 1 ? "y" : "ies", c->audit_file);
    return 0;
}

/* Writes the entries that stand for the generations of every service that
 * have none (the queue being empty). 0, or -1 with <err> set. */
static int
close_gaps(struct adm_control *c, const char *why, char *err, size_t errlen)
{
    unsigned i;

    for (i = 0; i < c->n; i++) {
        struct adm_svc *s = &c->svcs[i];

        if (s->audited_gen >= s->st.generation)
            continue;
        if (write_recovered(c, s, s->audited_gen + 1, s->st.generation, s->audited_bp,
                            s->st.weight_bp, adm_state_names[s->st.state], why, err,
                            errlen) != 0) {
            c->persist.audit_errors++;
            snprintf(c->persist.audit_error, sizeof(c->persist.audit_error), "%s", err);
            return -1;
        }
    }
    return 0;
}

static bool
has_gaps(const struct adm_control *c)
{
    unsigned i;

    for (i = 0; i < c->n; i++) {
        if (c->svcs[i].audited_gen < c->svcs[i].st.generation)
            return true;
    }
    return false;
}

/* Keeps entry <q> (taken) that the log did not take (<err>) in the queue,
 * or drops it when the queue is full. */
static void
keep_entry(struct adm_control *c, struct adm_audit_pending *q, const char *err)
{
    struct adm_persist *p = &c->persist;

    if (p->queued >= ADM_AUDIT_QUEUE_MAX) {
        p->dropped++;
        log_at(LL_ERR, "control", 0, "%s: audit log: %s; the queue is full (%u entries): "
               "this one is dropped, an entry will stand for its generation: %.*s",
               q->service, err, p->queued, (int)(q->len - 1), q->line);
        pending_free(q);
        return;
    }
    q->next = NULL;
    *p->queue_tail = q;
    p->queue_tail = &q->next;
    p->queued++;
    log_at(LL_ERR, "control", 0, "%s: audit log: %s; the entry waits (%u waiting) and is "
           "retried", q->service, err, p->queued);
}

/* An entry on its way to the audit log. */
struct audit_job {
    struct adm_control *c;       /* borrowed */
    struct adm_audit_pending *q; /* owned */
};

static void
on_audit_done(void *arg, enum adm_wjob_result res, const char *err)
{
    struct audit_job *aj = arg;
    struct adm_control *c = aj->c;
    struct adm_audit_pending *q = aj->q;
    int k = adm_svc_find(c, q->service);

    free(aj);
    if (res == ADM_WJ_OK) {
        if (k >= 0 && q->generation > c->svcs[k].audited_gen) {
            c->svcs[k].audited_gen = q->generation;
            c->svcs[k].audited_bp = q->to_bp;
        }
        pending_free(q);
        return;
    }
    if (res == ADM_WJ_FAILED) {
        c->persist.audit_errors++;
        snprintf(c->persist.audit_error, sizeof(c->persist.audit_error), "%s", err);
    }
    keep_entry(c, q, err);             /* in order: completions run in order */
}

static void audit_now(struct adm_control *c, struct adm_audit_pending *q);

void
adm_persist_audit(struct adm_control *c, unsigned svc, const struct adm_audit_entry *e)
{
    struct adm_persist *p = &c->persist;
    struct adm_svc *s = &c->svcs[svc];
    struct adm_audit_pending *q;
    char err[512];
    size_t len = 0;
    char *line;

    line = adm_audit_format(e, &len, err, sizeof(err));
    if (line == NULL) {
        log_at(LL_ERR, "control", 0, "%s: audit: %s", s->name, err);
        if (c->audit_file == NULL)
            s->audited_gen = s->st.generation;
        return;                        /* the gap is closed by the tick */
    }
    /* status shows it, whether or not the log takes it now */
    remember_line(s, line, len);
    if (c->audit_file == NULL) {
        s->audited_gen = s->st.generation;   /* nothing to audit into */
        free(line);
        return;
    }
    q = xcalloc(1, sizeof(*q));
    q->service = xstrdup(s->name);
    q->generation = e->generation;
    q->from_bp = e->from_bp;
    q->to_bp = e->to_bp;
    q->line = line;
    q->len = len;
    /* on the writer thread when nothing waits before it: no entry queued,
     * no generation of this service without one (written or on its way) */
    if (c->writer != NULL && c->write_async && p->queued == 0
        && (s->audited_gen > s->audit_sent_gen ? s->audited_gen : s->audit_sent_gen) + 1
           >= q->generation) {
        struct audit_job *aj = xcalloc(1, sizeof(*aj));

        aj->c = c;
        aj->q = q;
        if (q->generation > s->audit_sent_gen)
            s->audit_sent_gen = q->generation;
        adm_writer_submit(c->writer, ADM_WJ_AUDIT, c->audit_file,
                          memcpy(xmalloc(q->len), q->line, q->len), q->len, on_audit_done,
                          aj);
        return;
    }
    adm_writer_drain(c->writer);       /* what it still writes goes first */
    audit_now(c, q);
}

/* Writes <q> (taken) now, after what waits before it, or keeps it in the
 * queue. */
static void
audit_now(struct adm_control *c, struct adm_audit_pending *q)
{
    struct adm_persist *p = &c->persist;
    char err[512];

    /* in order: what waits goes first */
    if (flush_queue(c, err, sizeof(err)) == 0) {
        if (write_entry(c, q, err, sizeof(err)) == 0) {
            pending_free(q);
            return;
        }
        p->audit_errors++;
        snprintf(p->audit_error, sizeof(p->audit_error), "%s", err);
    }
    keep_entry(c, q, err);
}


/* ---- events that changed no weight --------------------------------------- */

/* An event's entry on its way to the audit log. */
struct event_job {
    char *line;                  /* owned: for the log, should it fail */
    size_t len;
};

static void
on_event_done(void *arg, enum adm_wjob_result res, const char *err)
{
    struct event_job *ej = arg;

    if (res != ADM_WJ_OK)
        log_at(LL_ERR, "control", 0, "audit log: %s; not written: %.*s", err,
               (int)(ej->len > 0 ? ej->len - 1 : 0), ej->line);
    free(ej->line);
    free(ej);
}

int
adm_persist_event(struct adm_control *c, const struct adm_audit_entry *e)
{
    struct event_job *ej;
    char err[512];
    size_t len = 0;
    char *line;

    if (c->audit_file == NULL)
        return -1;
    if (c->caller == NULL || c->waiter == NULL || c->waiting != NULL
        || !adm_persist_writer(c)) {
        /* nobody can wait for it: written now (the barrier lets the
         * writer's entries go first) */
        if (adm_audit_append(c->audit_file, e, err, sizeof(err)) != 0) {
            log_at(LL_ERR, "control", 0, "audit log: %s", err);
            return -1;
        }
        return 0;
    }
    if ((line = adm_audit_format(e, &len, err, sizeof(err))) == NULL) {
        log_at(LL_ERR, "control", 0, "audit log: %s", err);
        return -1;
    }
    ej = xcalloc(1, sizeof(*ej));
    ej->line = line;
    ej->len = len;
    adm_writer_submit(c->writer, ADM_WJ_AUDIT, c->audit_file,
                      memcpy(xmalloc(len), line, len), len, on_event_done, ej);
    c->event_sent = true;
    return 0;
}

/* ---- startup ------------------------------------------------------------- */

struct gap_scan {
    struct adm_control *c;
    uint64_t *found;             /* newest change generation in the log, per service */
    int64_t *found_bp;           /* its "to", -1 unknown */
    bool *found_set;             /* <found> is set */
    bool *done;                  /* found, or not looked for */
    unsigned left;
};

static int
gap_visit(void *arg, json_t *o)
{
    struct gap_scan *g = arg;
    json_t *gen = json_object_get(o, "generation"), *to = json_object_get(o, "to");
    const char *name = json_string_value(json_object_get(o, "service"));
    int k = name != NULL ? adm_svc_find(g->c, name) : -1;

    if (k < 0 || g->done[k] || !json_is_integer(gen) || json_integer_value(gen) < 0
        || !is_change_action(json_string_value(json_object_get(o, "action"))))
        return 0;
    g->found[k] = (uint64_t)json_integer_value(gen);
    g->found_bp[k] = json_is_number(to) && json_number_value(to) >= 0
                     && json_number_value(to) <= 100
                     ? (int64_t)(json_number_value(to) * 100.0 + 0.5) : -1;
    g->done[k] = true;
    g->found_set[k] = true;
    if (g->c->svcs[k].last == NULL)    /* the newest change: status shows it */
        remember_entry(&g->c->svcs[k], o);
    return --g->left == 0;
}

/* Finds the generations with no audit entry at startup and writes the
 * entries that stand for them. */
static void
startup_gaps(struct adm_control *c)
{
    struct gap_scan g = { .c = c };
    char err[512], w[16];
    unsigned i;
    int rc;

    if (c->audit_file == NULL) {
        for (i = 0; i < c->n; i++)
            c->svcs[i].audited_gen = c->svcs[i].st.generation;
        return;
    }
    g.found = xcalloc(c->n + 1, sizeof(*g.found));
    g.found_bp = xcalloc(c->n + 1, sizeof(*g.found_bp));
    g.done = xcalloc(c->n + 1, sizeof(*g.done));
    g.found_set = xcalloc(c->n + 1, sizeof(*g.found_set));
    /* Every service's newest change entry among the last ones (a change
     * audited but never saved is one of those), then, further back, the
     * newest of those whose state file's mark says something may be
     * missing. */
    for (i = 0; i < c->n; i++)
        g.found_bp[i] = -1;
    g.left = c->n;
    rc = g.left == 0 ? 0 : adm_audit_scan(c->audit_file, GAP_SCAN_NEAR_BYTES, gap_visit,
                                          &g, err, sizeof(err));
    if (rc > 0) {
        g.left = 0;
        for (i = 0; i < c->n; i++) {
            g.done[i] = g.done[i] || c->svcs[i].audited_gen >= c->svcs[i].st.generation;
            g.left += g.done[i] ? 0 : 1;
        }
        rc = g.left == 0 ? 0 : adm_audit_scan(c->audit_file, GAP_SCAN_MAX_BYTES, gap_visit,
                                              &g, err, sizeof(err));
    }
    if (rc < 0)
        log_at(LL_ERR, "control", 0, "audit: cannot check it for missing generations: %s",
               err);
    else if (rc > 0)
        log_at(LL_WARN, "control", 0, "audit: %s: stopped looking for the newest entries "
               "after %llu MiB", c->audit_file, GAP_SCAN_MAX_BYTES >> 20);
    for (i = 0; rc >= 0 && i < c->n; i++) {
        struct adm_svc *s = &c->svcs[i];

        if (!g.found_set[i] || g.found[i] < s->audited_gen)
            continue;
        if (g.found[i] > s->st.generation) {
            /* Audited but neither saved nor in the journal (a read-only
             * disk): it took effect before the restart and is not in effect
             * now. That move back is a change too: audited, and saved. */
            char why[256];

            log_at(LL_ERR, "control", 0, "%s: the audit log records generation %" PRIu64
                   " (weight %s%%) but the state file has only generation %" PRIu64
                   " (weight %s%%): a change that took effect before the restart was never "
                   "saved and is NOT in effect now", s->name, g.found[i], g.found_bp[i] >= 0
                   ? adm_pct((uint32_t)g.found_bp[i], err, sizeof(err)) : "?",
                   s->st.generation, adm_pct(s->st.weight_bp, w, sizeof(w)));
            snprintf(why, sizeof(why), "generation %" PRIu64 " was never saved: the restart "
                     "brought back the state file's generation %" PRIu64, g.found[i],
                     s->st.generation);
            s->audited_gen = g.found[i];
            s->audited_bp = g.found_bp[i];
            s->st.generation = g.found[i] + 1;
            mark_dirty(c, why);
            if (write_recovered(c, s, s->st.generation, s->st.generation, s->audited_bp,
                                s->st.weight_bp, adm_state_names[s->st.state], why, err,
                                sizeof(err)) != 0)
                log_at(LL_ERR, "control", 0, "audit: %s; retried", err);
            continue;
        }
        s->audited_gen = g.found[i];
        s->audited_bp = g.found_bp[i];
    }
    free(g.found);
    free(g.found_bp);
    free(g.done);
    free(g.found_set);
    if (close_gaps(c, GAP_WHY, err, sizeof(err)) != 0)
        log_at(LL_ERR, "control", 0, "audit: %s; retried", err);
}

/* A journal record newer than the state file: restores it. */
static void
startup_journal(struct adm_control *c)
{
    struct adm_persist *p = &c->persist;
    struct adm_store_entry *e = NULL;
    unsigned n = 0, i;
    uint64_t seq = 0;
    char err[512], w0[16], w1[16];
    int k;

    if (adm_store_journal_read(c->state_file, &seq, &e, &n, err, sizeof(err)) != 0) {
        log_at(LL_ERR, "control", 0, "journal: %s", err);
        return;
    }
    p->journal_seq = seq + 1;
    for (i = 0; i < n; i++) {
        struct adm_svc *s;

        k = adm_svc_find(c, e[i].name);
        if (k < 0)
            continue;
        s = &c->svcs[k];
        p->journal_valid = true;       /* something in it: cleared after a save */
        if (e[i].generation <= s->st.generation)
            continue;                  /* saved since */
        if (e[i].weight_bp > s->st.weight_bp) {
            /* never: only lowerings are in effect unsaved. A journal that
             * outlived its state file must not raise the weight. */
            log_at(LL_ERR, "control", 0, "%s: the journal %s.pending holds generation %"
                   PRIu64 " at weight %s%%, above the state file's %s%%: not restored",
                   s->name, c->state_file, e[i].generation,
                   adm_pct(e[i].weight_bp, w0, sizeof(w0)),
                   adm_pct(s->st.weight_bp, w1, sizeof(w1)));
            continue;
        }
        log_at(LL_ERR, "control", 0, "%s: UNSAVED STATE FOUND: the state file %s has weight "
               "%s%% state %s generation %" PRIu64 ", but weight %s%% state %s generation %"
               PRIu64 " was in effect before the restart and could not be saved (it is in "
               "the journal %s.pending): restored; it is saved as soon as the disk takes it",
               s->name, c->state_file, adm_pct(s->st.weight_bp, w1, sizeof(w1)),
               adm_state_names[s->st.state], s->st.generation,
               adm_pct(e[i].weight_bp, w0, sizeof(w0)), adm_state_names[e[i].state],
               e[i].generation, c->state_file);
        adm_svc_restore(s, &e[i], false);
        if (!p->dirty) {
            p->dirty = true;
            p->dirty_since_ms = realtime_ms();
            p->journaled = true;
            snprintf(p->last_error, sizeof(p->last_error), "restored from the journal %s"
                     ".pending at startup: not in the state file yet", c->state_file);
        }
    }
    free(e);
}

/* Before anything serves: its writes (stale files, the journal, the
 * audit log's repair and "recovered" entries) are made here, on the
 * caller's thread, not on the writer thread, whose completions would need
 * the loop that is not running yet; nothing waits for them. */
void
adm_persist_startup(struct adm_control *c)
{
    struct adm_persist *p = &c->persist;
    char err[512];
    unsigned removed = 0;

    p->queue_tail = &p->queue;
    if (c->state_file != NULL) {
        if (adm_store_clean_tmp(c->state_file, &removed, err, sizeof(err)) != 0)
            log_at(LL_WARN, "control", 0, "%s", err);
        else if (removed > 0)
            log_at(LL_INFO, "control", 0, "removed %u stale temporary file%s of %s left by "
                   "an earlier crash", removed, removed == 1 ? "" : "s", c->state_file);
        startup_journal(c);
        if (adm_store_probe(c->state_file, err, sizeof(err)) != 0)
            log_at(LL_WARN, "control", 0, "the state directory is not writable (%s): "
                   "changes will take effect but cannot be saved until it is", err);
        /* after the read: preparing may replace a journal too small */
        if (adm_store_journal_prepare(c->state_file, c->n, err, sizeof(err)) == 0)
            p->journal_cap = c->n;
        else
            log_at(LL_WARN, "control", 0, "cannot reserve the journal of the state file (%s):"
                   " a change that cannot be saved on a full disk will not survive a restart",
                   err);
    }
    if (c->audit_file != NULL) {
        if (adm_audit_repair(c->audit_file, err, sizeof(err)) < 0)
            log_at(LL_ERR, "control", 0, "audit: %s", err);
    }
    startup_gaps(c);
}

/* ---- the tick, the status, the exit -------------------------------------- */

/* The tick's retry of a dirty state's save, on the writer thread. False
 * when there is none (nothing was done). */
static bool
retry_async(struct adm_control *c)
{
    if (c->state_file == NULL || !adm_persist_writer(c))
        return false;
    return submit_save(c, SAVE_RETRY, entries_of(c), c->n, NULL, NULL, NULL, NULL);
}

void
adm_persist_tick(struct adm_control *c, uint64_t now_ms)
{
    struct adm_persist *p = &c->persist;
    char err[512], what[2048];
    bool audit_due = p->queued > 0 || (c->audit_file != NULL && has_gaps(c));

    if (!p->dirty && !audit_due) {
        p->next_retry_ms = 0;
        p->backoff_ms = 0;
        return;
    }
    if (p->next_retry_ms == 0) {       /* it just failed: wait a little first */
        p->backoff_ms = ADM_RETRY_MIN_MS;
        p->next_retry_ms = now_ms + p->backoff_ms;
    }
    if (p->dirty && p->next_warn_ms == 0)
        p->next_warn_ms = now_ms + ADM_UNSAVED_WARN_MS;
    /* not while the writer is busy: its entries are not gaps, and a retry
     * waits for it anyway (the next tick) */
    if (now_ms >= p->next_retry_ms && adm_writer_idle(c->writer)) {
        if (audit_due && flush_queue(c, err, sizeof(err)) == 0)
            close_gaps(c, GAP_WHY, err, sizeof(err));
        /* on the writer thread (its completion journals what still fails);
         * on the loop only without one */
        if (p->dirty && !retry_async(c) && adm_persist_save(c, err, sizeof(err)) != 0
            && !p->journaled)
            journal_write(c);          /* the journal may take it now */
        if (p->dirty || p->queued > 0 || (c->audit_file != NULL && has_gaps(c))) {
            p->backoff_ms = p->backoff_ms * 2 < ADM_RETRY_MAX_MS ? p->backoff_ms * 2
                                                                 : ADM_RETRY_MAX_MS;
            p->next_retry_ms = now_ms + p->backoff_ms;
        } else {
            p->next_retry_ms = 0;
            p->backoff_ms = 0;
        }
    }
    if (p->dirty && now_ms >= p->next_warn_ms) {
        p->next_warn_ms = now_ms + ADM_UNSAVED_WARN_MS;
        describe_unsaved(c, what, sizeof(what));
        log_at(LL_WARN, "control", 0, "state NOT saved for %.0f s (%s):%s %s; retried every "
               "%.1f s at most", (double)(realtime_ms() - p->dirty_since_ms) / 1000.0,
               p->last_error, what, p->journaled
               ? "kept in the journal: a restart restores it"
               : "NOT kept in the journal: a restart would bring back the state file's values",
               (double)ADM_RETRY_MAX_MS / 1000.0);
    }
}

void
adm_persist_figures(const struct adm_control *c, struct adm_store_status *out)
{
    *out = (struct adm_store_status){
        .dirty = c->persist.dirty, .journaled = c->persist.journaled,
        .save_errors = c->persist.save_errors, .audit_errors = c->persist.audit_errors,
        .audit_pending = c->persist.queued,
    };
}

json_t *
adm_persist_status(const struct adm_control *c)
{
    const struct adm_persist *p = &c->persist;
    json_t *o, *unsaved = json_array();
    char ts[40];
    unsigned i;

    for (i = 0; p->dirty && i < c->n; i++) {
        if (!c->svcs[i].saved_known || c->svcs[i].saved.generation != c->svcs[i].st.generation)
            json_array_append_new(unsaved, json_string(c->svcs[i].name));
    }
    o = json_pack("{s:s?, s:b, s:b, s:I, s:I, s:I, s:o}", "file", c->state_file,
                  "dirty", p->dirty, "journaled", p->journaled,
                  "save_errors", (json_int_t)p->save_errors,
                  "audit_errors", (json_int_t)p->audit_errors,
                  "audit_pending", (json_int_t)p->queued, "unsaved", unsaved);
    if (o == NULL)
        return NULL;
    if (p->dirty)
        json_object_set_new(o, "since", json_string(format_ms(p->dirty_since_ms, ts,
                                                              sizeof(ts))));
    if (p->last_error[0] != '\0')
        json_object_set_new(o, "last_error", json_string(p->last_error));
    if (p->audit_error[0] != '\0')
        json_object_set_new(o, "audit_error", json_string(p->audit_error));
    return o;
}

/* At exit, once the main loop stopped: what the writer holds is written
 * first, then what is left is written here, on the caller's thread. */
int
adm_persist_flush(struct adm_control *c)
{
    struct adm_persist *p = &c->persist;
    struct adm_audit_pending *q;
    char err[512], what[2048];

    adm_writer_drain(c->writer);       /* what is on its way is written first */
    if (p->queued > 0 || (c->audit_file != NULL && has_gaps(c))) {
        if (flush_queue(c, err, sizeof(err)) == 0)
            close_gaps(c, GAP_WHY, err, sizeof(err));
    }
    if (p->dirty)
        adm_persist_save(c, err, sizeof(err));
    if (p->dirty) {
        describe_unsaved(c, what, sizeof(what));
        log_at(LL_ERR, "control", 0, "exiting with state that is NOT in the state file %s "
               "(unsaved for %.0f s: %s):%s %s", c->state_file,
               (double)(realtime_ms() - p->dirty_since_ms) / 1000.0, p->last_error, what,
               p->journaled ? "it is in the journal: the next start restores it"
                            : "it is NOT in the journal either: the next start brings back "
                              "the state file's values; set them again once the disk takes "
                              "writes");
    }
    for (q = p->queue; q != NULL; q = q->next)
        log_at(LL_ERR, "control", 0, "exiting with an audit entry not written to %s (%s): "
               "%.*s", c->audit_file, p->audit_error, (int)(q->len - 1), q->line);
    return p->dirty || p->queued > 0 ? -1 : 0;
}

void
adm_persist_free(struct adm_control *c)
{
    struct adm_audit_pending *q, *next;

    for (q = c->persist.queue; q != NULL; q = next) {
        next = q->next;
        pending_free(q);
    }
    c->persist.queue = NULL;
    c->persist.queue_tail = &c->persist.queue;
    c->persist.queued = 0;
}
