/*
 * fleet: the control plane on the fleet's PostgreSQL store (see fleet.h).
 */
#include "admin/fleet.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <time.h>

#include <event2/event.h>
#include <jansson.h>

#include "admin/persist.h"
#include "admin/request.h"
#include "admin/store_pg.h"
#include "admin/store_pg_conf.h"
#include "health/plan.h"
#include "lib/log.h"
#include "lib/xmalloc.h"

struct lower_wait;
struct later;

struct adm_fleet {
    struct adm_control *c;       /* borrowed: the owner */
    struct event_base *base;     /* borrowed: the loop */
    struct adm_pgstore *store;   /* owned */
    struct lower_wait *lw;       /* owned: lowerings' replies waiting for their
                                  * commit, oldest first */
    struct later *later;         /* owned: rows notified while their service's
                                  * write was in flight (later_keep()) */
    struct adm_pg_conf *conf;    /* owned: a copy (a reload frees the config) */
    bool fatal;                  /* the schema is refused */
    bool up;                     /* up, and the fleet's rows read since */
    bool starting;               /* adm_fleet_open() waits for the first read */
    int64_t last_sync_ms;        /* realtime of the last row read, written or notified */
    double apply_sum_s;          /* commit -> applied here, for the metrics */
    uint64_t apply_count;
    uint64_t apply_buckets[ADM_FLEET_APPLY_BUCKETS + 1];
};

const double adm_fleet_apply_bounds[ADM_FLEET_APPLY_BUCKETS] = {
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5,
};

static int64_t
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double
now_ms_f(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static bool
latched(enum adm_state s)
{
    return s == ADM_ST_ROLLED_BACK || s == ADM_ST_FROZEN;
}

bool
adm_fleet_is_safe(const struct adm_svc_state *old, const struct adm_change *ch)
{
    return ch->weight_bp < old->weight_bp
        || (ch->weight_bp == old->weight_bp && latched(ch->state));
}

enum adm_fleet_rc
adm_fleet_reconcile(const struct adm_svc_state *local, bool unsynced,
                    const struct adm_svc_state *db)
{
    bool same = local->weight_bp == db->weight_bp && local->state == db->state;

    if (!unsynced)
        return same && local->generation == db->generation ? ADM_FLEET_KEEP
                                                           : ADM_FLEET_ADOPT;
    /* this instance lowered the service while the database was away */
    if (latched(db->state) && !latched(local->state))
        return ADM_FLEET_ADOPT;                   /* the latch wins */
    if (latched(local->state) && !latched(db->state))
        return ADM_FLEET_WRITE;                   /* the latch wins */
    return local->weight_bp < db->weight_bp ? ADM_FLEET_WRITE : ADM_FLEET_ADOPT;
}

static void
entry_of(const struct adm_svc *s, struct adm_store_entry *e)
{
    memset(e, 0, sizeof(*e));
    snprintf(e->name, sizeof(e->name), "%s", s->name);
    e->weight_bp = s->st.weight_bp;
    e->state = s->st.state;
    e->generation = s->st.generation;
    if (s->plan.state != HL_PLAN_IDLE) {
        e->has_plan = true;
        e->plan_state = s->plan.state;
        e->plan_step = s->plan.step;
        e->plan_baked_ms = s->plan.baked_ms;
        e->plan_requests = s->plan.step_requests;
    }
}

/* ---- lowerings' replies ------------------------------------------------ */

/* A lowering's reply, held until a write that holds the lowering committed
 * (or ADM_FLEET_LOWER_WAIT_MS passed, or the write failed). */
struct lower_wait {
    struct lower_wait *next;
    struct adm_fleet *f;         /* borrowed */
    struct adm_wait *wait;       /* owned: whom to answer */
    char name[64];               /* the service */
    uint64_t seq;                /* the service's fleet_seq after this lowering */
    json_t *reply;               /* owned: the engine's reply */
    struct event *timer;         /* owned: the deadline */
};

/* Answers <w> and frees it: <store> is "written" (then <gen> is the row's
 * generation), "queued" or "superseded", <note> NULL or why. */
static void
lw_answer(struct adm_fleet *f, struct lower_wait *w, const char *store, uint64_t gen,
          const char *note)
{
    struct lower_wait **p;
    char *text;

    for (p = &f->lw; *p != NULL; p = &(*p)->next) {
        if (*p == w) {
            *p = w->next;
            break;
        }
    }
    if (w->timer != NULL)
        event_free(w->timer);
    if (json_is_object(w->reply)) {
        json_object_set_new(w->reply, "store", json_string(store));
        if (gen != 0)
            json_object_set_new(w->reply, "generation", json_integer((json_int_t)gen));
        if (note != NULL)
            json_object_set_new(w->reply, "store_note", json_string(note));
    }
    if (w->wait->done != NULL) {
        text = json_dumps(w->reply, JSON_COMPACT | JSON_REAL_PRECISION(15));
        if (text == NULL)
            text = xstrdup("{\"ok\":false,\"error\":\"internal error building the reply\"}");
        w->wait->done(w->wait->arg, text);
    }
    json_decref(w->reply);
    free(w->wait);
    free(w);
}

/* Answers the waiting replies of service <name> whose lowering is held by
 * write <seq> or an earlier one (UINT64_MAX: all of them). */
static void
lw_release(struct adm_fleet *f, const char *name, uint64_t seq, const char *store,
           uint64_t gen, const char *note)
{
    struct lower_wait *w;

    /* from the head again after each: an answer runs the requester's code */
    for (;;) {
        for (w = f->lw; w != NULL; w = w->next)
            if (w->seq <= seq && strcmp(w->name, name) == 0)
                break;
        if (w == NULL)
            return;
        lw_answer(f, w, store, gen, note);
    }
}

static void
on_lower_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct lower_wait *w = arg;
    char note[256];

    (void)fd;
    (void)what;
    log_at(LL_WARN, "fleet", 0, "%s: the fleet's store has not committed the lowering "
           "within %u ms: answered as applied here and queued", w->name,
           ADM_FLEET_LOWER_WAIT_MS);
    snprintf(note, sizeof(note), "applied here; the fleet's store did not commit it within "
             "%u ms: queued, written as soon as it answers (the other instances follow "
             "then)", ADM_FLEET_LOWER_WAIT_MS);
    lw_answer(w->f, w, "queued", 0, note);
}

json_t *
adm_fleet_lowered_wait(struct adm_control *c, json_t *r)
{
    struct adm_fleet *f = c->fleet;
    struct adm_svc *s;
    struct lower_wait *w, **tail;
    struct timeval tv = { ADM_FLEET_LOWER_WAIT_MS / 1000,
                          (ADM_FLEET_LOWER_WAIT_MS % 1000) * 1000 };
    char note[600];

    if (f == NULL || !c->lowered || c->lowered_svc >= c->n || !json_is_object(r))
        return r;
    s = &c->svcs[c->lowered_svc];
    if (!s->fleet_dirty)
        return r;                      /* already settled (adopted meanwhile) */
    if (!adm_pgstore_up(f->store) || !s->fleet_busy) {
        /* not sent: nothing will commit before the store is back */
        snprintf(note, sizeof(note), "applied here; the fleet's store is unreachable (%s): "
                 "queued, written when it is back (the other instances follow then)",
                 adm_pgstore_name(f->store));
        json_object_set_new(r, "store", json_string("queued"));
        json_object_set_new(r, "store_note", json_string(note));
        return r;
    }
    if (c->waiter == NULL)
        return r;                      /* nobody can wait: answered now */
    w = xcalloc(1, sizeof(*w));
    w->f = f;
    w->wait = xcalloc(1, sizeof(*w->wait));
    w->wait->done = c->waiter->done;
    w->wait->arg = c->waiter->arg;
    snprintf(w->name, sizeof(w->name), "%s", s->name);
    w->seq = s->fleet_seq;
    w->reply = r;
    w->timer = evtimer_new(f->base, on_lower_deadline, w);
    if (w->timer == NULL || evtimer_add(w->timer, &tv) != 0) {
        /* no deadline, no wait: answered now */
        if (w->timer != NULL)
            event_free(w->timer);
        free(w->wait);
        free(w);
        return r;
    }
    for (tail = &f->lw; *tail != NULL; tail = &(*tail)->next)
        ;
    *tail = w;
    c->waiting = w->wait;
    return NULL;
}

/* Applies <row> to service <s> (index <svc>) here: the data plane, the
 * local cache, the local audit log (actor "fleet:<instance that wrote it>",
 * action <why>). */
static void
adopt(struct adm_fleet *f, unsigned svc, const struct adm_pg_row *row, const char *why)
{
    struct adm_control *c = f->c;
    struct adm_svc *s = &c->svcs[svc];
    struct adm_svc_state old = s->st;
    struct adm_audit_entry ae;
    char err[512], actor[96], p0[16], p1[16];

    if (s->fleet_dirty) {
        /* a lowering made here lost the reconcile: its replies say so */
        char note[256];

        snprintf(note, sizeof(note), "applied here, then replaced by the fleet's row "
                 "(generation %llu by %s: weight %s, state %s), adopted here",
                 (unsigned long long)row->e.generation, row->by,
                 adm_pct(row->e.weight_bp, p0, sizeof(p0)), adm_state_names[row->e.state]);
        lw_release(f, s->name, UINT64_MAX, "superseded", 0, note);
    }
    s->st.weight_bp = row->e.weight_bp;
    s->st.state = row->e.state;
    s->st.generation = row->e.generation;
    if (row->e.has_plan)
        hl_plan_restore(&s->plan, &s->plan_conf, row->e.plan_state, row->e.plan_step,
                        row->e.plan_baked_ms, row->e.plan_requests);
    else
        hl_plan_init(&s->plan);
    s->fleet_dirty = false;
    /* at the start nothing runs yet: main publishes every state after
     * adm_control_fleet_open() (the workers' apply would wait for them) */
    if (c->ops.apply != NULL && !f->starting)
        c->ops.apply(c->arg, svc, &s->st);
    if (row->at_ms > 0) {
        double d = (now_ms_f() - row->at_ms) / 1000.0;
        unsigned i;

        if (d < 0)
            d = 0;
        f->apply_sum_s += d;
        f->apply_count++;
        for (i = 0; i < ADM_FLEET_APPLY_BUCKETS && d > adm_fleet_apply_bounds[i]; i++)
            ;
        f->apply_buckets[i]++;
    }
    /* the database holds it already: the local cache and the audit entry
     * are written off the loop */
    c->write_async = adm_persist_save_cache_async(c, s->name);
    if (!c->write_async && adm_persist_save(c, err, sizeof(err)) != 0)
        log_at(LL_WARN, "fleet", 0, "%s: the local cache is not saved: %s", s->name, err);
    log_at(LL_INFO, "fleet", 0, "%s: %s from the fleet (written by %s): weight %s -> %s, "
           "state %s -> %s, generation %llu", s->name, why, row->by,
           adm_pct(old.weight_bp, p0, sizeof(p0)), adm_pct(s->st.weight_bp, p1, sizeof(p1)),
           adm_state_names[old.state], adm_state_names[s->st.state],
           (unsigned long long)s->st.generation);
    if (s->st.generation != old.generation) {
        snprintf(actor, sizeof(actor), "fleet:%s", row->by);
        ae = (struct adm_audit_entry){
            .service = s->name, .actor = actor, .action = why, .from_bp = old.weight_bp,
            .to_bp = s->st.weight_bp, .reason = "", .generation = s->st.generation, .pid = -1,
        };
        adm_persist_audit(c, svc, &ae);
    }
    c->write_async = false;
    f->last_sync_ms = now_ms();
}

/* ---- notifications that came while a write was in flight -------------- */

/* The newest notified row of a service whose write was in flight: its
 * answer is handled from the loop after the notification that followed
 * the commit may already have been (lib/pg answers queries through the
 * loop, notifications at once). */
struct later {
    struct later *next;
    struct adm_pg_row row;
};

static void
later_keep(struct adm_fleet *f, const struct adm_pg_row *row)
{
    struct later *l;

    for (l = f->later; l != NULL; l = l->next) {
        if (strcmp(l->row.e.name, row->e.name) == 0) {
            if (row->e.generation > l->row.e.generation)
                l->row = *row;
            return;
        }
    }
    l = xcalloc(1, sizeof(*l));
    l->row = *row;
    l->next = f->later;
    f->later = l;
}

static void on_changed(void *arg, const struct adm_pg_row *row);

/* Service <name>'s write answered: a row notified meanwhile is handled
 * now, as if it had just come (applied when still newer). */
static void
later_run(struct adm_fleet *f, const char *name)
{
    struct later **p, *l;

    for (p = &f->later; *p != NULL; p = &(*p)->next) {
        if (strcmp((*p)->row.e.name, name) == 0) {
            l = *p;
            *p = l->next;
            on_changed(f, &l->row);
            free(l);
            return;
        }
    }
}

/* ---- writes ------------------------------------------------------------ */

static void write_dirty(struct adm_fleet *f, unsigned svc);

struct lower_q {
    struct adm_fleet *f;
    char name[64];
    uint64_t seq;                /* the service's fleet_seq the write holds */
};

static void
lower_written(void *arg, bool ok, const struct adm_pg_row *rows, unsigned n,
              const char *err)
{
    struct lower_q *q = arg;
    struct adm_fleet *f = q->f;
    struct adm_control *c = f->c;
    int k = adm_svc_find(c, q->name);
    struct adm_svc *s;

    if (k < 0) {
        /* removed by a reload meanwhile */
        lw_release(f, q->name, UINT64_MAX, "queued", 0, "applied here; the service "
                   "was removed from the config before its write answered");
        free(q);
        return;
    }
    s = &c->svcs[k];
    s->fleet_busy = false;
    if (!ok || n != 1) {
        char note[768];

        log_at(LL_WARN, "fleet", 0, "%s: the lowering is applied here but not written to "
               "the fleet's store yet: %s; written when it is back", s->name,
               err != NULL ? err : "no row");
        snprintf(note, sizeof(note), "applied here; the fleet's store did not take it (%s): "
                 "queued, written when it is back (the other instances follow then)",
                 err != NULL ? err : "no row");
        lw_release(f, s->name, UINT64_MAX, "queued", 0, note);
        free(q);
        return;
    }
    f->last_sync_ms = now_ms();
    if (s->st.weight_bp == rows[0].e.weight_bp && (int)s->st.state == rows[0].e.state) {
        /* written as in effect here: the database's generation is the fleet's */
        s->fleet_dirty = false;
        s->st.generation = rows[0].e.generation;
        if (s->audited_gen < s->st.generation)
            s->audited_gen = s->st.generation;
        if (c->ops.apply != NULL)
            c->ops.apply(c->arg, (unsigned)k, &s->st);
        log_at(LL_INFO, "fleet", 0, "%s: written to the fleet's store: weight %u bp, "
               "state %s, generation %llu", s->name, s->st.weight_bp,
               adm_state_names[s->st.state], (unsigned long long)s->st.generation);
    } else if (s->fleet_dirty) {
        write_dirty(f, (unsigned)k);   /* changed again while it was written */
    }
    /* committed: every instance can see what these replies announce */
    lw_release(f, q->name, q->seq, "written", rows[0].e.generation, NULL);
    free(q);
}

/* A write of service <name> answered (handled by <fn>): then the row
 * notified meanwhile, if any (later_run()). */
static void
written_then_later(adm_pgstore_rows_fn *fn, struct adm_fleet *f, const char *name,
                   void *arg, bool ok, const struct adm_pg_row *rows, unsigned n,
                   const char *err)
{
    char copy[64];
    int k;

    snprintf(copy, sizeof(copy), "%s", name);   /* <arg> is freed by <fn> */
    fn(arg, ok, rows, n, err);
    k = adm_svc_find(f->c, copy);
    if (k >= 0 && !f->c->svcs[k].fleet_busy)
        later_run(f, copy);
}

static void
on_lower_written(void *arg, bool ok, const struct adm_pg_row *rows, unsigned n,
                 const char *err)
{
    struct lower_q *q = arg;

    written_then_later(lower_written, q->f, q->name, arg, ok, rows, n, err);
}

/* Writes service <svc>'s state as it is here, unconditionally (it is on
 * the safe side: see adm_fleet_is_safe()). */
static void
write_dirty(struct adm_fleet *f, unsigned svc)
{
    struct adm_svc *s = &f->c->svcs[svc];
    struct adm_store_entry e;
    struct lower_q *q;

    if (!s->fleet_dirty || s->fleet_busy || !adm_pgstore_up(f->store))
        return;
    entry_of(s, &e);
    q = xcalloc(1, sizeof(*q));
    q->f = f;
    snprintf(q->name, sizeof(q->name), "%s", s->name);
    q->seq = s->fleet_seq;
    s->fleet_busy = true;
    if (adm_pgstore_write(f->store, &e, NULL, on_lower_written, q) != 0) {
        s->fleet_busy = false;
        free(q);
    }
}

void
adm_fleet_lowered(struct adm_control *c, unsigned svc)
{
    c->svcs[svc].fleet_dirty = true;
    c->svcs[svc].fleet_seq++;
    c->lowered = true;
    c->lowered_svc = svc;
    write_dirty(c->fleet, svc);
}

/* A raise on its way to the database. */
struct raise_q {
    struct adm_fleet *f;
    struct adm_wait *wait;       /* owned; NULL: nobody waits */
    struct adm_change ch;        /* ch.reason, ch.figures, ch.plan: the copies below */
    char name[64];
    char *actor, *reason;
    long pid;
    enum adm_level level;
    bool has_plan;
    struct hl_plan plan;
    uint64_t expect;
};

static void
raise_reply(struct raise_q *q, json_t *r)
{
    char *text;

    if (q->wait != NULL && q->wait->done != NULL) {
        text = r != NULL ? json_dumps(r, JSON_COMPACT | JSON_REAL_PRECISION(15)) : NULL;
        if (text == NULL)
            text = xstrdup("{\"ok\":false,\"error\":\"internal error building the reply\"}");
        q->wait->done(q->wait->arg, text);
    }
    json_decref(r);
    free(q->wait);
    json_decref(q->ch.figures);
    free(q->actor);
    free(q->reason);
    free(q);
}

static void
raise_written(void *arg, bool ok, const struct adm_pg_row *rows, unsigned n,
              const char *err)
{
    struct raise_q *q = arg;
    struct adm_fleet *f = q->f;
    struct adm_control *c = f->c;
    int k = adm_svc_find(c, q->name);
    struct adm_caller who = { .actor = q->actor, .pid = q->pid, .level = q->level };
    char p0[16];
    json_t *r;

    if (k < 0) {
        raise_reply(q, adm_fail_reply("service %s is no longer configured here", q->name));
        return;
    }
    c->svcs[k].fleet_busy = false;
    if (!ok) {
        log_at(LL_WARN, "fleet", 0, "%s: %s by %s refused: store unreachable: %s", q->name,
               q->ch.action, q->actor, err);
        raise_reply(q, adm_fail_reply("store unreachable: %s; nothing changed", err));
        return;
    }
    if (n == 0) {
        /* the compare-and-set lost: another instance changed it first */
        if (rows != NULL) {
            if (rows[0].e.generation > c->svcs[k].st.generation)
                adopt(f, (unsigned)k, rows, "changed");
            log_at(LL_WARN, "fleet", 0, "%s: %s by %s refused: the service changed "
                   "meanwhile (generation %llu by %s)", q->name, q->ch.action, q->actor,
                   (unsigned long long)rows[0].e.generation, rows[0].by);
            r = adm_fail_reply("refused: service %s changed meanwhile in the fleet "
                               "(generation %llu, expected %llu, by %s: weight %s, state "
                               "%s); nothing changed: check status and try again",
                               q->name, (unsigned long long)rows[0].e.generation,
                               (unsigned long long)q->expect, rows[0].by,
                               adm_pct(rows[0].e.weight_bp, p0, sizeof(p0)),
                               adm_state_names[rows[0].e.state]);
        } else {
            r = adm_fail_reply("refused: service %s is not in the fleet's store; nothing "
                               "changed", q->name);
        }
        raise_reply(q, r);
        return;
    }
    /* committed: applied here now, then cached and audited */
    f->last_sync_ms = now_ms();
    q->ch.svc = (unsigned)k;
    q->ch.committed = true;
    q->ch.plan = q->has_plan ? &q->plan : NULL;
    c->caller = &who;
    /* the engine holds the reply until the local cache and the audit entry
     * are written (on the writer thread): it takes the wait */
    c->held = q->wait;
    r = c->change_run(c, &q->ch, q->actor);
    if (c->held == NULL)
        q->wait = NULL;                /* taken: raise_reply() below sends nothing */
    c->held = NULL;
    c->caller = NULL;
    c->svcs[k].st.generation = rows[0].e.generation;
    if (r != NULL && json_is_object(r) && json_is_true(json_object_get(r, "ok"))) {
        json_object_set_new(r, "generation", json_integer((json_int_t)rows[0].e.generation));
    }
    raise_reply(q, r);
}

static void
on_raise_written(void *arg, bool ok, const struct adm_pg_row *rows, unsigned n,
                 const char *err)
{
    struct raise_q *q = arg;

    written_then_later(raise_written, q->f, q->name, arg, ok, rows, n, err);
}

json_t *
adm_fleet_raise(struct adm_control *c, const struct adm_change *ch, const char *actor)
{
    struct adm_fleet *f = c->fleet;
    struct adm_svc *s = &c->svcs[ch->svc];
    struct adm_store_entry e;
    struct raise_q *q;

    if (!adm_pgstore_up(f->store) || !f->up)
        return adm_fail_reply("store unreachable: %s is down; raising a weight waits for "
                              "it (lowering and rollback still work); nothing changed",
                              adm_pgstore_name(f->store));
    if (s->fleet_busy || s->fleet_dirty)
        return adm_fail_reply("a change of %s is still being written to the fleet's "
                              "store; nothing changed: try again", s->name);
    entry_of(s, &e);
    e.weight_bp = ch->weight_bp;
    e.state = ch->state;
    if (ch->plan != NULL) {
        e.has_plan = ch->plan->state != HL_PLAN_IDLE;
        e.plan_state = ch->plan->state;
        e.plan_step = ch->plan->step;
        e.plan_baked_ms = ch->plan->baked_ms;
        e.plan_requests = ch->plan->step_requests;
    } else {
        e.has_plan = false;            /* any other change ends a running plan */
    }
    q = xcalloc(1, sizeof(*q));
    q->f = f;
    q->ch = *ch;
    snprintf(q->name, sizeof(q->name), "%s", s->name);
    q->actor = xstrdup(actor);
    q->reason = xstrdup(ch->reason != NULL ? ch->reason : "");
    q->ch.reason = q->reason;
    if (ch->figures != NULL)
        json_incref(ch->figures);
    q->pid = c->caller != NULL ? c->caller->pid : -1;
    q->level = c->caller != NULL ? c->caller->level : ADM_LEVEL_ADMIN;
    if (ch->plan != NULL) {
        q->has_plan = true;
        q->plan = *ch->plan;
    }
    q->expect = s->st.generation;
    if (c->waiter != NULL) {
        q->wait = xcalloc(1, sizeof(*q->wait));
        q->wait->done = c->waiter->done;
        q->wait->arg = c->waiter->arg;
    }
    s->fleet_busy = true;
    if (adm_pgstore_write(f->store, &e, &q->expect, on_raise_written, q) != 0) {
        s->fleet_busy = false;
        q->wait = (free(q->wait), NULL);
        raise_reply(q, NULL);
        return adm_fail_reply("store unreachable: cannot queue the write; nothing changed");
    }
    if (q->wait != NULL) {
        c->waiting = q->wait;
        return json_null();
    }
    return json_pack("{s:b, s:s, s:s}", "ok", 1, "service", s->name, "submitted",
                     "written to the fleet's store first, applied once committed");
}

/* ---- audit ------------------------------------------------------------- */

void
adm_fleet_audit(struct adm_control *c, const struct adm_audit_entry *e)
{
    char err[256], *line;
    size_t len;

    line = adm_audit_format(e, &len, err, sizeof(err));
    if (line == NULL)
        return;
    while (len > 0 && line[len - 1] == '\n')
        line[--len] = '\0';
    adm_pgstore_audit(c->fleet->store, e->service, e->generation, line);
    free(line);
}

static void
on_audit_tail(void *arg, json_t *entries, const char *err)
{
    struct adm_wait *w = arg;
    json_t *r;
    char *text;

    r = entries != NULL ? json_pack("{s:b, s:s, s:o}", "ok", 1, "source", "fleet",
                                    "entries", entries)
                        : adm_fail_reply("audit: the fleet's store: %s", err);
    if (w->done != NULL) {
        text = r != NULL ? json_dumps(r, JSON_COMPACT) : NULL;
        w->done(w->arg, text != NULL ? text : xstrdup("{\"ok\":false}"));
    }
    json_decref(r);
    free(w);
}

json_t *
adm_fleet_audit_tail(struct adm_control *c, const char *service, unsigned n)
{
    struct adm_fleet *f = c->fleet;
    struct adm_wait *w;

    if (f == NULL || c->waiter == NULL || !adm_pgstore_up(f->store))
        return NULL;
    w = xcalloc(1, sizeof(*w));
    w->done = c->waiter->done;
    w->arg = c->waiter->arg;
    if (adm_pgstore_audit_tail(f->store, service, n, on_audit_tail, w) != 0) {
        free(w);
        return NULL;
    }
    c->waiting = w;
    return json_null();
}

void
adm_fleet_status(const struct adm_control *c, json_t *o)
{
    struct adm_fleet *f = c->fleet;

    json_object_set_new(o, "kind", json_string("postgres"));
    json_object_set_new(o, "up", json_boolean(f->up && adm_pgstore_up(f->store)));
    json_object_set_new(o, "leader", json_false());
    json_object_set_new(o, "last_sync_ms", f->last_sync_ms > 0
                        ? json_integer((json_int_t)(now_ms() - f->last_sync_ms))
                        : json_null());
    json_object_set_new(o, "fleet", json_string(f->conf->fleet));
    json_object_set_new(o, "instance", json_string(f->conf->instance));
    json_object_set_new(o, "fleet_audit_pending",
                        json_integer(adm_pgstore_audit_pending(f->store)));
}

void
adm_fleet_figures(const struct adm_control *c, struct adm_store_status *out)
{
    struct adm_fleet *f = c->fleet;
    unsigned i;

    out->fleet = true;
    out->up = f->up && adm_pgstore_up(f->store);
    out->apply_sum_s = f->apply_sum_s;
    out->apply_count = f->apply_count;
    for (i = 0; i <= ADM_FLEET_APPLY_BUCKETS; i++)
        out->apply_buckets[i] = f->apply_buckets[i];
}

/* ---- the store's events ------------------------------------------------ */

/* The fleet's rows, read at the start and after every reconnect: a latch
 * is applied first, then the rest; what this instance lowered while the
 * database was away is reconciled (docs/fleet.md). */
static void
on_rows(void *arg, bool ok, const struct adm_pg_row *rows, unsigned n, const char *err)
{
    struct adm_fleet *f = arg;
    struct adm_control *c = f->c;
    unsigned pass, i;
    int k;

    if (!ok) {
        log_at(LL_WARN, "fleet", 0, "%s: %s; retried at the next session",
               adm_pgstore_name(f->store), err);
        return;
    }
    for (pass = 0; pass < 2; pass++) {
        for (i = 0; i < n; i++) {
            struct adm_svc_state db = { rows[i].e.weight_bp, rows[i].e.state,
                                        rows[i].e.generation };
            enum adm_fleet_rc rc;

            if (latched(db.state) != (pass == 0))
                continue;                  /* latches first */
            if ((k = adm_svc_find(c, rows[i].e.name)) < 0)
                continue;                  /* another config's service */
            if (c->svcs[k].fleet_busy)
                continue;                  /* its write answers */
            rc = adm_fleet_reconcile(&c->svcs[k].st, c->svcs[k].fleet_dirty, &db);
            if (rc == ADM_FLEET_ADOPT) {
                if (c->svcs[k].fleet_dirty)
                    log_at(LL_WARN, "fleet", 0, "%s: reconcile: the fleet's %s at %u bp "
                           "wins over this instance's %s at %u bp made while the store "
                           "was away", c->svcs[k].name, adm_state_names[db.state],
                           db.weight_bp, adm_state_names[c->svcs[k].st.state],
                           c->svcs[k].st.weight_bp);
                adopt(f, (unsigned)k, &rows[i], c->svcs[k].fleet_dirty ? "reconcile"
                      : f->starting ? "start" : "resync");
            } else if (rc == ADM_FLEET_WRITE) {
                struct adm_audit_entry ae = {
                    .service = c->svcs[k].name, .actor = "fleet", .action = "reconcile",
                    .from_bp = db.weight_bp, .to_bp = c->svcs[k].st.weight_bp,
                    .reason = "a lowering made while the store was away wins",
                    .generation = c->svcs[k].st.generation, .pid = -1,
                };

                log_at(LL_WARN, "fleet", 0, "%s: reconcile: this instance's %s at %u bp, "
                       "made while the store was away, wins over the fleet's %s at %u bp: "
                       "written", c->svcs[k].name, adm_state_names[c->svcs[k].st.state],
                       c->svcs[k].st.weight_bp, adm_state_names[db.state], db.weight_bp);
                adm_persist_audit(c, (unsigned)k, &ae);
                adm_fleet_audit(c, &ae);
                write_dirty(f, (unsigned)k);
            }
        }
    }
    f->up = true;
    f->starting = false;
    f->last_sync_ms = now_ms();
}

static void
read_all(struct adm_fleet *f)
{
    struct adm_control *c = f->c;
    struct adm_store_entry *e = xcalloc(c->n > 0 ? c->n : 1, sizeof(*e));
    unsigned i;

    for (i = 0; i < c->n; i++)
        entry_of(&c->svcs[i], &e[i]);
    adm_pgstore_seed_and_read(f->store, e, c->n, on_rows, f);
    free(e);
}

static void
on_up(void *arg, bool reconnect)
{
    struct adm_fleet *f = arg;

    (void)reconnect;
    read_all(f);
}

static void
on_down(void *arg, const char *reason)
{
    struct adm_fleet *f = arg;

    (void)reason;
    f->up = false;
}

enum adm_fleet_nt
adm_fleet_notified(const struct adm_svc_state *local, bool dirty, bool busy, uint64_t gen)
{
    if (busy)
        return ADM_FLEET_NT_LATER;
    if (dirty)
        return ADM_FLEET_NT_RECONCILE;
    return gen > local->generation ? ADM_FLEET_NT_APPLY : ADM_FLEET_NT_KNOWN;
}

static void
on_changed(void *arg, const struct adm_pg_row *row)
{
    struct adm_fleet *f = arg;
    struct adm_control *c = f->c;
    int k = adm_svc_find(c, row->e.name);
    struct adm_svc *s;
    struct adm_svc_state db = { row->e.weight_bp, row->e.state, row->e.generation };

    if (k < 0 || !f->up)
        return;
    s = &c->svcs[k];
    switch (adm_fleet_notified(&s->st, s->fleet_dirty, s->fleet_busy, row->e.generation)) {
    case ADM_FLEET_NT_KNOWN:
        break;                         /* our own, or older */
    case ADM_FLEET_NT_APPLY:
        adopt(f, (unsigned)k, row, "changed");
        break;
    case ADM_FLEET_NT_LATER:
        later_keep(f, row);            /* our write's answer comes first */
        break;
    case ADM_FLEET_NT_RECONCILE:
        if (adm_fleet_reconcile(&s->st, true, &db) == ADM_FLEET_ADOPT)
            adopt(f, (unsigned)k, row, "reconcile");
        break;
    }
}

static void
on_fatal(void *arg, const char *reason)
{
    struct adm_fleet *f = arg;

    (void)reason;
    f->fatal = true;
}

int
adm_fleet_open(struct adm_control *c, struct event_base *base,
                       const struct adm_pg_conf *conf, uint64_t seed, char *err,
                       size_t errlen)
{
    static const struct adm_pgstore_cbs cbs = {
        .up = on_up, .down = on_down, .changed = on_changed, .fatal = on_fatal,
    };
    struct adm_fleet *f = xcalloc(1, sizeof(*f));
    char why[768];
    bool fatal = false, cache;

    f->c = c;
    f->base = base;
    f->conf = adm_pg_conf_dup(conf);
    conf = f->conf;
    f->store = adm_pgstore_new(base, conf, seed, &cbs, f);
    if (f->store == NULL) {
        snprintf(err, errlen, "store.postgres: cannot create the client");
        adm_pg_conf_free(f->conf);
        free(f);
        return -1;
    }
    c->fleet = f;
    f->starting = true;
    if (adm_pgstore_wait_ready(f->store, why, sizeof(why), &fatal) == 0) {
        /* the rows, read and applied before anything serves */
        while (!f->up && adm_pgstore_up(f->store))
            if (event_base_loop(base, EVLOOP_ONCE) < 0)
                break;
        if (f->up)
            return 0;
        snprintf(why, sizeof(why), "%s: reading the fleet's state failed",
                 adm_pgstore_name(f->store));
    }
    cache = c->state_file != NULL && access(c->state_file, F_OK) == 0;
    if (fatal || !conf->start_without || !cache) {
        snprintf(err, errlen, "%s%s", why, fatal ? ""
                 : !conf->start_without ? " (cutoverd does not start without its store "
                                          "unless store.postgres.start_without is true and "
                                          "a local cache exists)"
                 : " (start_without is set, but there is no local cache to start from)");
        return -1;
    }
    log_at(LL_WARN, "fleet", 0, "%s; starting from the local cache %s (start_without): "
           "raises are refused until the store is back", why, c->state_file);
    return 0;
}

void
adm_fleet_free(struct adm_fleet *f)
{
    if (f == NULL)
        return;
    f->up = false;                     /* no row is applied from here on */
    adm_pgstore_free(f->store);        /* answers the writes still open */
    while (f->lw != NULL)
        lw_answer(f, f->lw, "queued", 0, "applied here; cutoverd stopped before the "
                  "fleet's store answered: written by the next start's reconcile");
    while (f->later != NULL) {
        struct later *l = f->later;

        f->later = l->next;
        free(l);
    }
    adm_pg_conf_free(f->conf);
    free(f);
}
