/*
 * control_int: internal to the control plane (admin/control.c and its
 * siblings); nothing else includes it. The structures the pieces share: the
 * control plane itself and its services. Functions shared between the
 * pieces are declared in each piece's own internal header.
 *
 * Who calls whom (a file calls only files below it; nothing calls up, so
 * the engine never calls a command or the plan's glue):
 *
 *   commands.c   the commands and their levels, adm_control_exec*(), the
 *                audit of events that changed nothing
 *   status.c     the status reply, built in slices when it is long
 *   plan_ctl.c   the progressive plan: its command, tick, status and the
 *                check of a restored plan against the config
 *   control.c    life cycle, accessors, reconfiguration
 *   change.c     the change engine: ordering, persistence, audit, latches,
 *                the automatic actions (adm_control_auto)
 *   persist.c    the state file and the audit log as the engine sees them:
 *                saves, the dirty state and its journal, retries, the audit
 *                of every generation (queue, recovered gaps), the startup
 *                checks
 *   request.c    replies, request checks, service lookup, percent text
 */
#ifndef CUTOVER_ADMIN_CONTROL_INT_H
#define CUTOVER_ADMIN_CONTROL_INT_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "admin/state.h"
#include "health/plan.h"
#include "router/router.h"

struct adm_change;
struct adm_status_job;
struct adm_writer;
struct event_base;

struct adm_svc {
    char *name;                  /* owned, 1..63 bytes */
    struct adm_svc_state st;     /* the state the data plane was last given */
    struct hl_plan plan;         /* the progressive plan's progress; as restored
                                  * from the state file until adm_control_set_plan()
                                  * checks it against the config */
    struct hl_plan_conf plan_conf;   /* nsteps 0: no plan (none configured, or
                                      * adm_control_set_plan() not called) */
    unsigned min_requests;       /* a step's floor of outcomes on new */
    uint64_t plan_retry_ms;      /* now_ms before which a failed step is not retried */
    bool step_saving;            /* a step's save is on the writer thread: the
                                  * plan waits for it (plan_ctl.c) */
    uint64_t step_baked_ms;      /* that step's bake and requests, and when it is */
    uint64_t step_requests;      /* retried, should its save fail */
    uint64_t step_retry_ms;
    uint64_t shadow_compared;    /* shadow comparisons since start, and of them */
    uint64_t shadow_diffs;       /* those that differed (adm_control_plan_shadow) */
    struct adm_counters counters;    /* rollbacks and freezes since start (metrics) */
    /* persist.c: what the state file and the audit log hold of this service */
    struct adm_svc_state saved;  /* as the state file holds it (when <saved_known>) */
    bool saved_known;            /* false: not in the state file (yet) */
    uint64_t audited_gen;        /* the audit log has an entry for every generation
                                  * up to this one (its own or a "recovered" one) */
    int64_t audited_bp;          /* the weight after <audited_gen>; -1 unknown */
    uint64_t audit_sent_gen;     /* the newest generation whose entry went to the
                                  * writer thread (persist.c) */
    /* fleet.c: with the fleet's store */
    bool fleet_dirty;            /* <st> was lowered here and is not in the database yet */
    bool fleet_busy;             /* a write of this service is in flight */
    uint64_t fleet_seq;          /* lowerings made here since start: a write
                                  * carries the number it holds, so a waiting
                                  * reply knows when its lowering committed */
    uint64_t plan_end_gen;       /* the generation whose change ended the plan
                                  * (breach, abort, last step); 0: none since start */
    json_t *last;                /* owned: the audit entry of the last change
                                  * (status "last_change"); NULL: none known */
};

/* An audit entry of a change that could not be written yet (persist.c). */
struct adm_audit_pending {
    struct adm_audit_pending *next;
    char *service;               /* owned */
    uint64_t generation;
    uint32_t from_bp, to_bp;
    char *line;                  /* owned: the entry as formatted, "\n" included */
    size_t len;
};

/* The health of the state file and the audit log (persist.c). */
struct adm_persist {
    bool dirty;                  /* a state in effect is not in the state file */
    int64_t dirty_since_ms;      /* realtime, when it became dirty */
    bool journaled;              /* ... but it is in the journal (<state>.pending) */
    bool journal_valid;          /* the journal may hold a record: clear after a save */
    unsigned journal_cap;        /* services the journal was sized for */
    uint64_t journal_seq;        /* the next journal record's number */
    char last_error[512];        /* the last failure to save the state */
    char audit_error[512];       /* the last failure to write an audit entry */
    uint64_t save_errors;        /* failed saves of the state file */
    uint64_t audit_errors;       /* failed writes of an audit entry */
    struct adm_audit_pending *queue, **queue_tail;   /* oldest first */
    unsigned queued;
    uint64_t dropped;            /* entries the full queue could not keep */
    uint64_t next_retry_ms;      /* tick clock; 0: schedule at the next tick */
    uint64_t backoff_ms;
    uint64_t next_warn_ms;
};

struct adm_control {
    struct adm_svc *svcs;        /* owned, <n> entries in config order */
    unsigned n;
    char *state_file;            /* owned; NULL: changes are not persisted */
    char *audit_file;            /* owned; NULL: no audit log */
    struct adm_ops ops;          /* copied; any callback may be NULL */
    void *arg;                   /* borrowed: the ops' argument */
    const struct adm_caller *caller;   /* borrowed: who runs the command in
                                        * progress (pid for the audit and the
                                        * log); NULL outside adm_control_exec_as() */
    struct adm_persist persist;
    struct adm_writer *writer;   /* owned: the thread that writes the state file and
                                  * the audit log (admin/writer.h); NULL: written on
                                  * the caller's thread (no loop set: unit tests) */
    bool writer_failed;          /* it could not be started: not tried again */
    bool write_async;            /* the change in progress writes its audit entry on
                                  * <writer> (its save went there too); false: on
                                  * the loop (persist.c) */
    unsigned raising;            /* raises saved on <writer> and not applied yet
                                  * (change.c): any other change waits for them */
    bool require_reason;         /* admin.require_reason */
    struct adm_fleet *fleet;     /* owned: the fleet's store (admin/fleet.h); NULL
                                  * without "store": {"postgres"} */
    struct adm_leader *leader;   /* owned: the fleet's windows and its leader
                                  * (admin/fleet_leader.h); NULL without the store */
    /* a reply that waits (control.h): who waits for the command in progress
     * (NULL: nobody can, the reply must come at once), and the wait a
     * command set up (then its reply object is discarded) */
    struct adm_wait_req {
        void (*done)(void *arg, char *reply);
        void *arg;
    } *waiter;
    struct adm_wait *waiting;
    struct adm_wait *held;       /* a wait handed out already (a raise saved on the
                                  * writer thread, being applied): the change in
                                  * progress takes it for its reply (change.c) */
    /* fleet.c: the command in progress lowered service <lowered_svc> (applied
     * here, its write on the way): adm_control_exec_wait() holds the reply
     * until the write committed (adm_fleet_lowered_wait()) */
    bool lowered;
    unsigned lowered_svc;
    /* persist.c: the command in progress sent an event's audit entry to the
     * writer thread: adm_control_exec_wait() holds the reply until it is
     * written (adm_persist_event()) */
    bool event_sent;
    struct event_base *base;     /* borrowed: the loop the control plane runs on
                                  * (adm_control_set_loop()); NULL: none known */
    uint64_t reconfigs;          /* adm_control_reconfigure() calls so far */
    struct adm_status_job *status_jobs;  /* status.c: replies being built in slices */
    void (*status_jobs_free)(struct adm_control *c);   /* set by status.c when it
                                  * builds in slices; adm_control_free() calls it
                                  * (control.c is below status.c) */
    /* fleet.c runs a committed raise through the engine with this (set by
     * control.c), so that it does not include change.h, which includes it */
    json_t *(*change_run)(struct adm_control *c, const struct adm_change *ch,
                          const char *actor);
    /* change.c adds a plan's status to the reply of a plan command applied
     * after its save with this (set by plan_ctl.c, which includes change.h) */
    json_t *(*plan_status)(const struct adm_svc *s);
};

/* A reply still to come (admin/fleet.c makes them, commands.c hands them
 * out). */
struct adm_wait {
    void (*done)(void *arg, char *reply);   /* NULL once cancelled */
    void *arg;
};

/* One requested change of a validated command or of an automatic action
 * (adm_change_run()). */
struct adm_change {
    unsigned svc;
    uint32_t weight_bp;
    enum adm_state state;
    const char *action;          /* audit action */
    const char *reason;          /* borrowed; "" when none */
    enum rt_side left;           /* switch, rollback: side that loses traffic; else RT_NONE */
    int drain_s;                 /* switch, rollback: tunnel drain, -1 = leave open,
                                  * ADM_DRAIN_ROLLBACK = rollback.drain_s */
    json_t *figures;             /* borrowed, may be NULL: automatic decisions' numbers */
    bool committed;              /* fleet: written to the store already (apply
                                  * first, then the local cache; admin/fleet.c) */
    bool saved;                  /* a raise the state file holds already (saved
                                  * on the writer thread): applied, not saved again */
    void (*done)(struct adm_control *c, unsigned svc, bool applied);
                                 /* may be NULL: an automatic raise (a plan's step)
                                  * may then be saved on the writer thread; called
                                  * on the loop once it is applied, or refused
                                  * (its save failed: nothing changed) */
    const struct hl_plan *plan;  /* borrowed: the plan after the change (plan
                                  * commands and steps); NULL: any other change,
                                  * which ends a running plan (change.c) */
};

#endif
