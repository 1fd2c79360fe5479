/*
 * health/plan: see plan.h. Every transition is a small function that checks
 * the state it may start from and leaves <p> unchanged when it may not, so
 * the caller can validate a command simply by trying it on a copy.
 */
#include "health/plan.h"

#include <assert.h>
#include <string.h>

const char *const hl_plan_state_names[HL_PLAN__COUNT] = {
    "idle", "progressing", "paused", "completed", "aborted", "breached",
};

int
hl_plan_state_from_name(const char *name)
{
    int i;

    if (name == NULL)
        return -1;
    for (i = 0; i < HL_PLAN__COUNT; i++)
        if (strcmp(name, hl_plan_state_names[i]) == 0)
            return i;
    return -1;
}

void
hl_plan_init(struct hl_plan *p)
{
    memset(p, 0, sizeof(*p));
    p->state = HL_PLAN_IDLE;
}

bool
hl_plan_is_running(const struct hl_plan *p)
{
    return p->state == HL_PLAN_PROGRESSING || p->state == HL_PLAN_PAUSED;
}

uint32_t
hl_plan_weight_bp(const struct hl_plan *p, const struct hl_plan_conf *conf)
{
    assert(p->state != HL_PLAN_IDLE);
    assert(p->step < conf->nsteps);
    return conf->steps_bp[p->step];
}

uint64_t
hl_plan_bake_left_ms(const struct hl_plan *p, const struct hl_plan_conf *conf)
{
    uint64_t bake_ms = (uint64_t)conf->bake_s * 1000u;

    if (!hl_plan_is_running(p) || p->baked_ms >= bake_ms)
        return 0;
    return bake_ms - p->baked_ms;
}

/* Enters step <step> with a fresh bake and count. The anchor is kept: the
 * new step counts from the tick that entered it. */
static void
enter_step(struct hl_plan *p, unsigned step)
{
    p->step = step;
    p->baked_ms = 0;
    p->step_requests = 0;
    p->step_compared = p->step_diffs = 0;
}

int
hl_plan_start(struct hl_plan *p, const struct hl_plan_conf *conf)
{
    if (conf->nsteps == 0 || hl_plan_is_running(p))
        return -1;
    hl_plan_init(p);
    enter_step(p, 0);
    p->state = conf->nsteps == 1 ? HL_PLAN_COMPLETED : HL_PLAN_PROGRESSING;
    return 0;
}

int
hl_plan_pause(struct hl_plan *p)
{
    if (p->state != HL_PLAN_PROGRESSING)
        return -1;
    p->state = HL_PLAN_PAUSED;
    p->has_anchor = false;
    return 0;
}

int
hl_plan_resume(struct hl_plan *p)
{
    if (p->state != HL_PLAN_PAUSED)
        return -1;
    p->state = HL_PLAN_PROGRESSING;
    p->has_anchor = false;             /* the pause is not baking time */
    return 0;
}

int
hl_plan_abort(struct hl_plan *p)
{
    if (!hl_plan_is_running(p))
        return -1;
    p->state = HL_PLAN_ABORTED;
    p->has_anchor = false;
    return 0;
}

int
hl_plan_breach(struct hl_plan *p)
{
    if (!hl_plan_is_running(p))
        return -1;
    p->state = HL_PLAN_BREACHED;
    p->has_anchor = false;
    return 0;
}

enum hl_plan_event
hl_plan_tick(struct hl_plan *p, const struct hl_plan_conf *conf,
             const struct hl_plan_input *in)
{
    uint64_t dt, dr;

    if (p->state != HL_PLAN_PROGRESSING)
        return HL_PLAN_EV_NONE;
    assert(p->step + 1 < conf->nsteps);   /* the last step completes the plan */
    if (!p->has_anchor || in->now_ms < p->last_ms || in->new_requests < p->last_requests ||
        in->compared < p->last_compared || in->diffs < p->last_diffs) {
        /* first tick of this run of the bake (or a clock or counter that went
         * backwards): only anchor, count nothing */
        p->has_anchor = true;
        p->last_ms = in->now_ms;
        p->last_requests = in->new_requests;
        p->last_compared = in->compared;
        p->last_diffs = in->diffs;
        if (in->held) {
            p->baked_ms = 0;
            p->step_requests = 0;
            p->step_compared = p->step_diffs = 0;
        }
        return HL_PLAN_EV_NONE;
    }
    if (in->held) {
        /* a gate does not hold: the step's bake (and the shadow comparisons
         * its diff gate counts) starts over once it does */
        p->last_ms = in->now_ms;
        p->last_requests = in->new_requests;
        p->last_compared = in->compared;
        p->last_diffs = in->diffs;
        p->baked_ms = 0;
        p->step_requests = 0;
        p->step_compared = p->step_diffs = 0;
        return HL_PLAN_EV_NONE;
    }
    dt = in->now_ms - p->last_ms;
    dr = in->new_requests - p->last_requests;
    p->last_ms = in->now_ms;
    p->last_requests = in->new_requests;
    p->baked_ms += dt;
    p->step_requests += dr;
    p->step_compared += in->compared - p->last_compared;
    p->step_diffs += in->diffs - p->last_diffs;
    p->last_compared = in->compared;
    p->last_diffs = in->diffs;

    /* a step at 0 % has no traffic on new: its evidence is the shadow's */
    if (p->baked_ms < (uint64_t)conf->bake_s * 1000u ||
        (conf->steps_bp[p->step] > 0 && p->step_requests < in->min_requests) ||
        hl_plan_diff_held(p, conf))
        return HL_PLAN_EV_NONE;
    enter_step(p, p->step + 1);
    if (p->step + 1 == conf->nsteps) {
        p->state = HL_PLAN_COMPLETED;
        p->has_anchor = false;
        return HL_PLAN_EV_COMPLETE;
    }
    return HL_PLAN_EV_ADVANCE;
}

bool
hl_plan_diff_held(const struct hl_plan *p, const struct hl_plan_conf *conf)
{
    if (conf->max_diff_rate <= 0)
        return false;
    return p->step_compared < conf->min_compared ||
           !((double)p->step_diffs < conf->max_diff_rate * (double)p->step_compared);
}

int
hl_plan_restore(struct hl_plan *p, const struct hl_plan_conf *conf, int state,
                unsigned step, uint64_t baked_ms, uint64_t step_requests)
{
    hl_plan_init(p);
    if (state < 0 || state >= HL_PLAN__COUNT)
        return -1;
    if (state == HL_PLAN_IDLE)
        return 0;
    if (step >= conf->nsteps)
        return -1;
    /* a running plan is never on its last step: entering it completes it */
    if ((state == HL_PLAN_PROGRESSING || state == HL_PLAN_PAUSED) && step + 1 >= conf->nsteps)
        return -1;
    p->state = (enum hl_plan_state)state;
    p->step = step;
    p->baked_ms = baked_ms;
    p->step_requests = step_requests;
    return 0;
}
