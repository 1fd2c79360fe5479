/*
 * auto: the automatic actions' entry point into the control plane
 * (adm_control_auto(), declared in admin/control.h): the policy tick's
 * rollback or freeze of a service becomes a change like an operator's,
 * through the change engine (admin/change.c), latched so a lasting breach
 * acts once, and counted by its kind for the metrics.
 */
#include <assert.h>
#include <string.h>

#include <jansson.h>

#include "admin/change.h"
#include "admin/control.h"
#include "admin/control_int.h"
#include "admin/writer.h"
#include "health/plan.h"
#include "health/policy.h"
#include "lib/log.h"

/* The counter an automatic rollback with <figures> goes to: its "kind". */
static enum adm_rollback_reason
auto_reason(json_t *figures)
{
    const char *kind = json_string_value(json_object_get(figures, "kind"));
    unsigned i;

    for (i = ADM_RB_MANUAL + 1; kind != NULL && i < ADM_RB_OTHER; i++) {
        if (strcmp(kind, adm_rollback_reason_names[i]) == 0)
            return (enum adm_rollback_reason)i;
    }
    return ADM_RB_OTHER;
}

struct hl_auto_svc
adm_auto_svc(const struct adm_svc_state *st)
{
    return (struct hl_auto_svc){
        .weight_bp = st->weight_bp,
        .latched = st->state == ADM_ST_ROLLED_BACK || st->state == ADM_ST_FROZEN,
        .progressing = st->state == ADM_ST_PROGRESSING,
    };
}

/* Stops service <svc>'s progressive plan, if one runs, for an automatic
 * decision, as breached. The new state (rolled_back or frozen) already keeps
 * a plan from advancing: it only advances while the state is progressing. */
static bool
auto_stop_plan(struct adm_control *c, unsigned svc)
{
    struct adm_svc *s = &c->svcs[svc];

    if (hl_plan_breach(&s->plan) != 0)
        return false;                  /* no plan running */
    log_at(LL_WARN, "control", 0, "%s: plan stopped at step %u/%u by the breach",
           s->name, s->plan.step + 1, s->plan_conf.nsteps);
    return true;
}

int
adm_control_auto(struct adm_control *c, unsigned svc, enum hl_auto_action a,
                 const char *reason, json_t *figures)
{
    struct adm_change ch = { .svc = svc, .reason = reason != NULL ? reason : "",
                             .left = RT_NONE, .drain_s = -1, .figures = figures };
    json_t *r;
    bool stopped;

    assert(svc < c->n);
    assert(a == HL_AUTO_ROLLBACK || a == HL_AUTO_FREEZE);
    /* a raise on its way (a plan's step) is applied first: the decision
     * then stops the plan it leaves (adm_change_run() would wait for it
     * too, after the plan was stopped) */
    if (c->raising > 0)
        adm_writer_drain(c->writer);
    /* The latch is what makes a lasting breach act once: re-checked here
     * so no caller can audit the same breach twice. */
    if (!hl_auto_armed(adm_auto_svc(&c->svcs[svc].st)))
        return -1;
    if (a == HL_AUTO_ROLLBACK) {
        ch.weight_bp = 0;
        ch.state = ADM_ST_ROLLED_BACK;
        ch.action = "rollback";
        ch.left = RT_NEW;              /* its tunnels close after rollback.drain_s */
        ch.drain_s = ADM_DRAIN_ROLLBACK;
    } else {
        ch.weight_bp = c->svcs[svc].st.weight_bp;
        ch.state = ADM_ST_FROZEN;
        ch.action = "freeze";
    }
    stopped = auto_stop_plan(c, svc);
    /* Never a raise, so adm_change_run applies first and saves second (on
     * the writer thread); a failed save is logged there and the change
     * stays in effect. */
    r = adm_change_run(c, &ch, "auto");
    json_decref(r);
    if (stopped)                       /* the breach's change ended the plan */
        c->svcs[svc].plan_end_gen = c->svcs[svc].st.generation;
    if (a == HL_AUTO_ROLLBACK)
        c->svcs[svc].counters.rollbacks[auto_reason(figures)]++;
    else
        c->svcs[svc].counters.freezes++;
    return 0;
}
