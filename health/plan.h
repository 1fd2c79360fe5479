/*
 * health/plan: the progressive plan of one service as a pure state machine.
 * It walks the configured steps (struct hl_plan_conf), holding each one until
 * its bake time has passed and the new side has served at least min_requests
 * in it, then moves to the next; entering the last step ends the plan. Pure:
 * libc only, no clock (the tick passes now_ms), no I/O, no allocation, no
 * logging. Moving the weight, persisting and auditing are the caller's
 * (admin/plan_ctl.c); stopping the plan on a breach too (hl_plan_breach).
 *
 * Time and requests are accumulated tick by tick: each hl_plan_tick() adds
 * the time and the new side's outcomes since the previous tick. The first
 * tick after start, resume or a restore only anchors, so a step never bakes
 * for less than bake_s (it may bake one tick longer).
 */
#ifndef CUTOVER_HEALTH_PLAN_H
#define CUTOVER_HEALTH_PLAN_H

#include <stdbool.h>
#include <stdint.h>

#include "health/conf.h"

/* Must remain in this order: the state file stores the names. */
enum hl_plan_state {
    HL_PLAN_IDLE = 0,        /* never started */
    HL_PLAN_PROGRESSING,     /* baking the current step; advances by itself */
    HL_PLAN_PAUSED,          /* holding the current step, bake clock stopped */
    HL_PLAN_COMPLETED,       /* [terminal] the last step was entered */
    HL_PLAN_ABORTED,         /* [terminal] stopped by an operator */
    HL_PLAN_BREACHED,        /* [terminal] stopped by a breach (rollback or freeze) */
    HL_PLAN__COUNT
};

extern const char *const hl_plan_state_names[HL_PLAN__COUNT];

/* Returns the state named <name>, or -1. */
int hl_plan_state_from_name(const char *name);

/* Embedded by its owner. Fields may be read; only plan.c writes them (and
 * hl_plan_restore). */
struct hl_plan {
    enum hl_plan_state state;
    unsigned step;               /* index of the current step in steps_bp; the
                                  * step where a terminal plan stopped */
    uint64_t baked_ms;           /* bake time accumulated in the current step */
    uint64_t step_requests;      /* new-side outcomes counted in the current step */
    bool has_anchor;             /* last_ms and last_requests are set */
    uint64_t last_ms;            /* now_ms of the previous tick */
    uint64_t last_requests;      /* new side's outcome count at the previous tick */
    uint64_t step_compared;      /* shadow comparisons in the current step (not
                                  * kept in the state file: a restart counts anew) */
    uint64_t step_diffs;         /* of them, those that differed */
    uint64_t last_compared, last_diffs;   /* the counts at the previous tick */
};

/* What one tick brings. */
struct hl_plan_input {
    uint64_t now_ms;             /* monotonic */
    uint64_t new_requests;       /* outcomes on the new side since start of the
                                  * process: monotonic (a decrease re-anchors) */
    unsigned min_requests;       /* rollback.min_requests */
    uint64_t compared;           /* shadow comparisons since the start of the
                                  * process (monotonic, as new_requests) */
    uint64_t diffs;              /* of them, those that differed */
    bool held;                   /* a migration gate fails or is not known yet
                                  * (health/gate.h): the step's bake and count
                                  * start over, so a step advances only when
                                  * every gate held through its whole bake */
};

/* What a tick did. */
enum hl_plan_event {
    HL_PLAN_EV_NONE = 0,         /* nothing: still baking, paused or not running */
    HL_PLAN_EV_ADVANCE,          /* moved to the next step (p->step), still running */
    HL_PLAN_EV_COMPLETE,         /* entered the last step: the plan is completed */
};

/* An idle plan. */
void hl_plan_init(struct hl_plan *p);

/* True while progressing or paused. */
bool hl_plan_is_running(const struct hl_plan *p);

/* The weight of the current step (bp): steps_bp[p->step]. <p> must not be
 * idle and p->step must be a step of <conf> (asserted). */
uint32_t hl_plan_weight_bp(const struct hl_plan *p, const struct hl_plan_conf *conf);

/* Bake time left in the current step, in ms: bake_s * 1000 minus what was
 * baked, 0 when baked through or not running. */
uint64_t hl_plan_bake_left_ms(const struct hl_plan *p, const struct hl_plan_conf *conf);

/* Starts at step 0 (its bake begins at the next tick). Returns 0, or -1 when
 * <conf> has no steps or the plan is already running (nothing changes). A
 * one-step plan is completed at once (state COMPLETED, step 0). */
int hl_plan_start(struct hl_plan *p, const struct hl_plan_conf *conf);

/* Progressing -> paused: the bake clock stops with what was baked up to the
 * previous tick. Returns 0, or -1 when not progressing. */
int hl_plan_pause(struct hl_plan *p);

/* Paused -> progressing: the bake continues from where it stopped (at the
 * next tick). Returns 0, or -1 when not paused. */
int hl_plan_resume(struct hl_plan *p);

/* Progressing or paused -> aborted (the step is kept for the record).
 * Returns 0, or -1 when not running. */
int hl_plan_abort(struct hl_plan *p);

/* A breach stopped the service (automatic rollback or freeze): progressing or
 * paused -> breached. Returns 0, or -1 when not running (nothing changes). */
int hl_plan_breach(struct hl_plan *p);

/* The diff gate (conf->max_diff_rate set) holds the current step: fewer
 * than min_compared comparisons in it, or not strictly fewer than
 * max_diff_rate of them differed. */
bool hl_plan_diff_held(const struct hl_plan *p, const struct hl_plan_conf *conf);

/* One tick. While progressing, adds the time and the new-side outcomes since
 * the previous tick, and when the step has baked bake_s seconds and counted
 * at least in->min_requests outcomes (not asked of a step at 0 %), and the
 * diff gate does not hold it (hl_plan_diff_held), moves to the next step with a fresh
 * bake and count: ADVANCE, or COMPLETE when that is the last step. At most
 * one step per tick. While in->held, the bake, count and the step's shadow
 * comparisons are 0 (anchored at this tick): the step bakes afresh from the
 * first tick without it. Paused or not running: nothing (and the next tick
 * after a resume only anchors). */
enum hl_plan_event hl_plan_tick(struct hl_plan *p, const struct hl_plan_conf *conf,
                                const struct hl_plan_input *in);

/* Puts back a plan saved at <state>, <step>, <baked_ms>, <step_requests>
 * (the state file), unanchored. Returns 0, or -1 when that cannot be a plan
 * of <conf> (state out of range, a running or finished plan whose step is not
 * one of <conf>): <p> is then idle. */
int hl_plan_restore(struct hl_plan *p, const struct hl_plan_conf *conf, int state,
                    unsigned step, uint64_t baked_ms, uint64_t step_requests);

#endif
