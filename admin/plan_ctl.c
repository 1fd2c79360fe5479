/*
 * plan_ctl: the progressive plan's glue in the control plane (see
 * plan_ctl.h and control.h): the plan command, the plan's tick, its status
 * and the check of a restored plan against the config. The plan's own
 * rules are health/plan.h's; every plan change is made by the change engine
 * (change.h). Calls change.c and request.c only.
 */
#include <assert.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "admin/audit.h"
#include "admin/change.h"
#include "admin/control.h"
#include "admin/plan_ctl.h"
#include "admin/request.h"
#include "health/plan.h"
#include "lib/log.h"

#define PLAN_RETRY_MS   5000     /* a plan step that could not be saved is retried
                                  * this much later, not on every tick */

/*
 * The plan's progress (health/plan.h) lives next to the service state and
 * moves with it: every plan change (start, pause, resume, abort, a step) is
 * an adm_change_run() like an operator's, with the same ordering (a step
 * raises the weight: persisted first, applied second), persistence and
 * audit; the plan after the change rides in adm_change.plan and is put back
 * with the rest when a raise cannot be saved. Any other change (weight,
 * promote, switch, rollback) ends a running plan as aborted: the operator
 * took the weight into their own hands. An automatic rollback or freeze ends
 * it as breached (adm_control_auto). Invariant: the plan is running
 * (progressing or paused) exactly when the service state is progressing or
 * paused, and then the weight is the current step's.
 */

/* The service state that goes with plan <p> of <s>. */
static enum adm_state
plan_service_state(const struct adm_svc *s, const struct hl_plan *p)
{
    switch (p->state) {
    case HL_PLAN_PROGRESSING:
        return ADM_ST_PROGRESSING;
    case HL_PLAN_PAUSED:
        return ADM_ST_PAUSED;
    case HL_PLAN_COMPLETED:
        return hl_plan_weight_bp(p, &s->plan_conf) == RT_BP_MAX ? ADM_ST_PROMOTED
                                                                : ADM_ST_STEADY;
    default:
        return ADM_ST_STEADY;
    }
}

/* True when a migration gate of service <svc> holds its plan (it fails or
 * has no result yet); <why> (may be NULL) gets which and why. */
static bool
plan_gate_hold(const struct adm_control *c, unsigned svc, char *why, size_t len)
{
    char buf[512];

    if (c->ops.gates == NULL)
        return false;
    if (why == NULL) {
        why = buf;
        len = sizeof(buf);
    }
    return c->ops.gates(c->arg, svc, why, len) != 0;
}

json_t *
adm_plan_gate_status(const struct adm_control *c, unsigned svc)
{
    char why[512];

    if (!hl_plan_is_running(&c->svcs[svc].plan) || !plan_gate_hold(c, svc, why, sizeof(why)))
        return NULL;
    return json_string(why);
}

json_t *
adm_plan_status(const struct adm_svc *s)
{
    const struct hl_plan_conf *pc = &s->plan_conf;
    const struct hl_plan *p = &s->plan;
    bool has_step = p->state != HL_PLAN_IDLE, running = hl_plan_is_running(p);
    /* current: running, or ended by the service's last change (news);
     * a plan that ended before a later change is history */
    bool current = running || (has_step && s->plan_end_gen == s->st.generation);
    json_t *steps, *o;
    unsigned i;

    if (pc->nsteps == 0)
        return json_pack("{s:s, s:i, s:i, s:b}", "state", "none", "step", 0, "steps", 0,
                         "current", 0);
    steps = json_array();
    for (i = 0; i < pc->nsteps; i++)
        json_array_append_new(steps, adm_percent_json(pc->steps_bp[i]));
    o = json_pack("{s:s, s:i, s:i, s:o, s:o, s:i, s:f, s:f, s:I, s:i}",
                  "state", hl_plan_state_names[p->state],
                  "step", has_step ? (int)p->step + 1 : 0,
                  "steps", (int)pc->nsteps,
                  "percent", has_step ? adm_percent_json(pc->steps_bp[p->step])
                                      : json_null(),
                  "steps_percent", steps,
                  "bake_s", (int)pc->bake_s,
                  "baked_s", running ? (double)p->baked_ms / 1000.0 : 0.0,
                  "bake_left_s", (double)hl_plan_bake_left_ms(p, pc) / 1000.0,
                  "requests", (json_int_t)(running ? p->step_requests : 0),
                  "min_requests", (int)s->min_requests);
    if (o != NULL)
        json_object_set_new(o, "current", json_boolean(current));
    /* the diff gate (shadow traffic): what the step compared so far */
    if (o != NULL && pc->max_diff_rate > 0)
        json_object_set_new(o, "diff_gate",
                            json_pack("{s:f, s:i, s:I, s:I, s:b}",
                                      "max_diff_rate", pc->max_diff_rate,
                                      "min_compared", (int)pc->min_compared,
                                      "compared", (json_int_t)(running ? p->step_compared : 0),
                                      "diffs", (json_int_t)(running ? p->step_diffs : 0),
                                      "held", running && hl_plan_diff_held(p, pc)));
    return o;
}

json_t *
adm_plan_command(struct adm_control *c, json_t *req, const char *actor)
{
    static const char *const keys[] = { "cmd", "service", "action", "reason", "force", NULL };
    struct adm_change ch = { .reason = "", .left = RT_NONE, .drain_s = -1 };
    const struct hl_plan_conf *pc;
    struct adm_svc *s;
    struct hl_plan next;
    const char *action, *why;
    /* the operator's reason (ADM_REASON_MAX), "; ", the generated text and a
     * forced gate's (gate[]) all fit */
    char reason[ADM_REASON_MAX + 1200], p0[16], p1[16], gate[512] = "";
    bool force = false;
    json_t *r, *v;
    int rc = 0;

    if ((r = adm_check_keys(req, "plan", keys)) != NULL)
        return r;
    if ((r = adm_resolve_service(c, req, &ch.svc)) != NULL)
        return r;
    v = json_object_get(req, "action");
    if (v == NULL)
        return adm_fail_reply("missing \"action\" (start, pause, resume or abort)");
    if (!json_is_string(v))
        return adm_fail_reply("\"action\" must be a string, got %s", adm_type_name(v));
    action = json_string_value(v);
    if (strcmp(action, "start") != 0 && strcmp(action, "pause") != 0
        && strcmp(action, "resume") != 0 && strcmp(action, "abort") != 0)
        return adm_fail_reply("\"action\" must be start, pause, resume or abort, got \"%s\"",
                              action);
    if ((r = adm_req_reason(c, req, "plan", &why)) != NULL)
        return r;
    if ((v = json_object_get(req, "force")) != NULL) {
        if (!json_is_boolean(v))
            return adm_fail_reply("\"force\" must be a boolean, got %s", adm_type_name(v));
        force = json_is_true(v);
    }
    s = &c->svcs[ch.svc];
    pc = &s->plan_conf;
    if (pc->nsteps == 0)
        return adm_fail_reply("plan %s: service %s has no plan (configure \"plan\": "
                              "{\"steps\": [...], \"bake_s\": N} for it)", action, s->name);
    next = s->plan;
    if (strcmp(action, "start") == 0) {
        if (hl_plan_is_running(&s->plan))
            return adm_fail_reply("plan start: the plan is already %s at step %u/%u (%s%%); "
                                  "abort it first to start over",
                                  hl_plan_state_names[s->plan.state], s->plan.step + 1,
                                  pc->nsteps,
                                  adm_pct(pc->steps_bp[s->plan.step], p0, sizeof(p0)));
        if (s->st.state == ADM_ST_ROLLED_BACK || s->st.state == ADM_ST_FROZEN)
            return adm_fail_reply("plan start: service %s is %s; the latch holds until an "
                                  "operator sets a weight (weight, promote or switch), then "
                                  "the plan can start", s->name, adm_state_names[s->st.state]);
        if (s->st.weight_bp > pc->steps_bp[0])
            return adm_fail_reply("plan start: the weight (%s%%) is above the plan's "
                                  "first step (%s%%) and a plan never lowers the weight; "
                                  "set the weight to %s%% or less first",
                                  adm_pct(s->st.weight_bp, p0, sizeof(p0)),
                                  adm_pct(pc->steps_bp[0], p1, sizeof(p1)), p1);
        /* a start raises the weight to step 1: refused while a migration
         * gate fails, as an operator's weight is (commands.c) */
        if (s->st.weight_bp < pc->steps_bp[0] && c->ops.gates != NULL
            && c->ops.gates(c->arg, ch.svc, gate, sizeof(gate)) == 1) {
            if (!force)
                return adm_fail_reply("plan start refused: %s; the weight may rise when it "
                                      "passes (--force to start anyway)", gate);
            log_at(LL_WARN, "control", 0, "%s: plan start forced past a failing gate: %s",
                   s->name, gate);
        } else {
            gate[0] = '\0';
        }
        rc = hl_plan_start(&next, pc);
        ch.action = "plan_start";
        ch.weight_bp = hl_plan_weight_bp(&next, pc);
        if (next.state == HL_PLAN_COMPLETED)
            snprintf(reason, sizeof(reason), "step 1/1 (%s%%): a one-step plan is "
                     "completed at once", adm_pct(pc->steps_bp[0], p0, sizeof(p0)));
        else
            snprintf(reason, sizeof(reason), "step 1/%u (%s%%); each step bakes %u s "
                     "with at least %u requests on new", pc->nsteps,
                     adm_pct(pc->steps_bp[0], p0, sizeof(p0)), pc->bake_s, s->min_requests);
        if (gate[0] != '\0') {
            size_t n = strlen(reason);

            snprintf(reason + n, sizeof(reason) - n, "; forced past a failing gate: %s", gate);
        }
    } else if (strcmp(action, "pause") == 0) {
        if (s->plan.state != HL_PLAN_PROGRESSING)
            return adm_fail_reply("plan pause: no plan is progressing (the plan is %s)",
                                  hl_plan_state_names[s->plan.state]);
        rc = hl_plan_pause(&next);
        ch.action = "plan_pause";
        ch.weight_bp = s->st.weight_bp;
        snprintf(reason, sizeof(reason), "step %u/%u (%s%%), %.1f s of bake left",
                 next.step + 1, pc->nsteps, adm_pct(pc->steps_bp[next.step], p0, sizeof(p0)),
                 (double)hl_plan_bake_left_ms(&next, pc) / 1000.0);
    } else if (strcmp(action, "resume") == 0) {
        if (s->plan.state != HL_PLAN_PAUSED)
            return adm_fail_reply("plan resume: the plan is not paused (it is %s)",
                                  hl_plan_state_names[s->plan.state]);
        rc = hl_plan_resume(&next);
        ch.action = "plan_resume";
        ch.weight_bp = s->st.weight_bp;
        snprintf(reason, sizeof(reason), "step %u/%u (%s%%), %.1f s of bake left",
                 next.step + 1, pc->nsteps, adm_pct(pc->steps_bp[next.step], p0, sizeof(p0)),
                 (double)hl_plan_bake_left_ms(&next, pc) / 1000.0);
    } else {
        if (!hl_plan_is_running(&s->plan))
            return adm_fail_reply("plan abort: no plan is running (the plan is %s)",
                                  hl_plan_state_names[s->plan.state]);
        rc = hl_plan_abort(&next);
        ch.action = "plan_abort";
        ch.weight_bp = s->st.weight_bp;
        snprintf(reason, sizeof(reason), "stopped at step %u/%u (%s%%); the weight stays",
                 next.step + 1, pc->nsteps, adm_pct(pc->steps_bp[next.step], p0, sizeof(p0)));
    }
    assert(rc == 0);                   /* every refusal was answered above */
    (void)rc;
    s->plan_retry_ms = 0;              /* an operator acted: a held step may go now */
    ch.plan = &next;
    ch.state = plan_service_state(s, &next);
    /* the operator's reason first, then where the plan stands */
    if (why[0] != '\0') {
        size_t n = strlen(why), k = strlen(reason);

        _Static_assert(sizeof(reason) >= ADM_REASON_MAX + 2 + 200 + 40 + 512 + 1,
                       "the operator's reason, the plan's text and a gate's fit");
        memmove(reason + n + 2, reason, k + 1);
        memcpy(reason, why, n);
        memcpy(reason + n, "; ", 2);
    }
    ch.reason = reason;
    r = adm_change_run(c, &ch, actor);
    if (r != NULL && json_is_true(json_object_get(r, "ok")))
        json_object_set_new(r, "plan", adm_plan_status(s));
    return r;
}

void
adm_control_set_plan(struct adm_control *c, unsigned svc, const struct hl_plan_conf *plan,
                     unsigned min_requests)
{
    struct adm_svc *s;
    struct hl_plan saved;
    const char *why = NULL;
    bool svc_running;
    char w[16];

    c->plan_status = adm_plan_status;   /* for a plan command's raise (change.c) */
    assert(svc < c->n);
    s = &c->svcs[svc];
    saved = s->plan;
    s->plan_conf = *plan;
    s->min_requests = min_requests;
    svc_running = s->st.state == ADM_ST_PROGRESSING || s->st.state == ADM_ST_PAUSED;
    if (hl_plan_restore(&s->plan, plan, (int)saved.state, saved.step, saved.baked_ms,
                        saved.step_requests) != 0)
        why = plan->nsteps == 0 ? "no plan is configured any more"
                                : "the configured plan has no such step";
    else if (svc_running && plan_service_state(s, &s->plan) != s->st.state)
        why = "the state file holds no such plan";
    else if (svc_running && hl_plan_weight_bp(&s->plan, plan) != s->st.weight_bp)
        why = "the configured plan's step differs from the weight";
    else if (!svc_running && hl_plan_is_running(&s->plan))
        why = "the service is not running a plan";
    if (why == NULL)
        return;
    if (hl_plan_is_running(&s->plan))
        s->plan.state = HL_PLAN_ABORTED;
    if (!svc_running && !hl_plan_is_running(&saved))
        return;                        /* an old record that no longer fits: dropped */
    log_at(LL_WARN, "control", 0, "%s: the state file says state %s, plan %s at step %u, "
           "but %s: the plan is stopped, the weight stays %s%%, state steady", s->name,
           adm_state_names[s->st.state], hl_plan_state_names[saved.state], saved.step + 1,
           why, adm_pct(s->st.weight_bp, w, sizeof(w)));
    s->st.state = svc_running ? ADM_ST_STEADY : s->st.state;
}

/* adm_change.done of a step saved on the writer thread: applied, or
 * refused (its save failed: nothing moved). A refused step keeps what it
 * baked and counted, and is retried later, not on every tick. */
static void
step_done(struct adm_control *c, unsigned svc, bool applied)
{
    struct adm_svc *s = &c->svcs[svc];

    s->step_saving = false;
    if (applied) {
        s->plan_retry_ms = 0;
        return;
    }
    hl_plan_restore(&s->plan, &s->plan_conf, (int)s->plan.state, s->plan.step,
                    s->step_baked_ms, s->step_requests);
    s->plan_retry_ms = s->step_retry_ms;
}

int
adm_control_plan_tick(struct adm_control *c, unsigned svc, uint64_t now_ms,
                      uint64_t new_requests)
{
    struct adm_change ch = { .svc = svc, .left = RT_NONE, .drain_s = -1,
                             .action = "plan_step" };
    const struct hl_plan_conf *pc;
    struct adm_svc *s;
    struct hl_plan next;
    struct hl_plan_input in;
    enum hl_plan_event ev;
    uint64_t baked_ms, reqs, gen;
    char reason[512], p0[16], p1[16];
    json_t *fig, *r;

    assert(svc < c->n);
    s = &c->svcs[svc];
    pc = &s->plan_conf;
    if (pc->nsteps == 0 || s->plan.state != HL_PLAN_PROGRESSING
        || s->st.state != ADM_ST_PROGRESSING || now_ms < s->plan_retry_ms
        || s->step_saving)             /* a step on its way: applied once saved */
        return 0;
    in = (struct hl_plan_input){ .now_ms = now_ms, .new_requests = new_requests,
                                 .min_requests = s->min_requests,
                                 .held = plan_gate_hold(c, svc, NULL, 0),
                                 .compared = s->shadow_compared, .diffs = s->shadow_diffs };
    next = s->plan;
    ev = hl_plan_tick(&next, pc, &in);
    if (ev == HL_PLAN_EV_NONE) {
        /* progress only, kept in memory: after a restart a step bakes again
         * from its last saved point (a step never bakes less than bake_s) */
        s->plan = next;
        return 0;
    }
    /* what the finished step baked and counted (this tick had an anchor) */
    baked_ms = s->plan.baked_ms + (now_ms - s->plan.last_ms);
    reqs = s->plan.step_requests + (new_requests - s->plan.last_requests);
    ch.plan = &next;
    ch.weight_bp = hl_plan_weight_bp(&next, pc);
    ch.state = plan_service_state(s, &next);
    snprintf(reason, sizeof(reason), "step %u/%u (%s%%) baked %.1f s with %llu requests on "
             "new (at least %u): %s %u/%u (%s%%)%s", s->plan.step + 1, pc->nsteps,
             adm_pct(pc->steps_bp[s->plan.step], p0, sizeof(p0)), (double)baked_ms / 1000.0,
             (unsigned long long)reqs, s->min_requests,
             ev == HL_PLAN_EV_COMPLETE ? "last step" : "step", next.step + 1, pc->nsteps,
             adm_pct(ch.weight_bp, p1, sizeof(p1)),
             ev == HL_PLAN_EV_COMPLETE ? ", plan completed" : "");
    ch.reason = reason;
    fig = json_pack("{s:i, s:i, s:i, s:f, s:i, s:I, s:i}", "from_step", (int)s->plan.step + 1,
                    "step", (int)next.step + 1, "steps", (int)pc->nsteps,
                    "baked_s", (double)baked_ms / 1000.0, "bake_s", (int)pc->bake_s,
                    "requests", (json_int_t)reqs, "min_requests", (int)s->min_requests);
    ch.figures = fig;
    /* saved on the writer thread when there is one: step_done() then
     * takes the outcome */
    ch.done = step_done;
    s->step_baked_ms = baked_ms;
    s->step_requests = reqs;
    s->step_retry_ms = now_ms + PLAN_RETRY_MS;
    gen = s->st.generation;
    r = adm_change_run(c, &ch, "auto");
    if (json_is_null(r)) {
        s->step_saving = true;
        json_decref(fig);
        return 1;
    }
    json_decref(r);
    json_decref(fig);
    if (s->st.generation == gen) {
        /* refused: the raise could not be saved and nothing moved
         * (adm_change_run logged why). The step keeps what it baked and counted, and is
         * retried later, not on every tick. */
        hl_plan_restore(&s->plan, pc, (int)s->plan.state, s->plan.step, baked_ms, reqs);
        s->plan_retry_ms = now_ms + PLAN_RETRY_MS;
        return -1;
    }
    s->plan_retry_ms = 0;
    return 1;
}

void
adm_control_plan_shadow(struct adm_control *c, unsigned svc, uint64_t compared,
                        uint64_t diffs)
{
    assert(svc < c->n);
    c->svcs[svc].shadow_compared = compared;
    c->svcs[svc].shadow_diffs = diffs;
}

unsigned
adm_control_plan_step(const struct adm_control *c, unsigned svc)
{
    const struct adm_svc *s;

    assert(svc < c->n);
    s = &c->svcs[svc];
    return s->plan_conf.nsteps > 0 && hl_plan_is_running(&s->plan) ? s->plan.step + 1 : 0;
}
