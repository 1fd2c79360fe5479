/*
 * tick: the policy tick (see tick.h). Each tick, for each service that
 * hl_auto_armed() says can still lose something (weight > 0 or a plan
 * progressing, not latched):
 *
 *   new and legacy window stats  -> hl_policy_eval()        (breach + figures)
 *   + rollback.action, on_new_down, new's health -> hl_auto_decide()
 *   -> adm_control_auto(): rollback (weight 0, applied first, persisted
 *      second) or freeze (weight held), audited with actor "auto" and the
 *      figures, latched until an operator sets a weight.
 *
 * Why a breach cannot re-trigger right after an operator clears the latch:
 * every applied change resets new's window (op_apply in proxy/ops.c), so
 * once an operator raises the weight again new needs min_requests fresh
 * outcomes before the rule can breach; the errors that caused the rollback
 * are gone.
 * Legacy's window is kept: it is the baseline of the ratio rule.
 *
 * Latency: the rule is evaluated at every tick and, between ticks, as soon as
 * the data plane records an outcome on new that can make a breach (an error,
 * or a latency near max_p99_ms: hl_policy_suspect). The data plane only
 * signals (srv->suspect: an event made active on the main loop, an eventfd
 * from a worker); the prompt evaluation runs from the loop, folds the
 * workers' outcomes and evaluates the rule of every armed service, at most
 * every PX_TICK_PROMPT_MS (a burst of errors costs one evaluation per
 * PX_TICK_PROMPT_MS, the last one of the burst is never later than that). So
 * a breach made by an error or a slow answer is acted on within
 * PX_TICK_PROMPT_MS; one completed by a success (min_requests reached after
 * the errors) at the next tick, within PX_TICK_MS. A prompt evaluation acts
 * and logs exactly as a tick does; the plan's step and the replay copies
 * stay the tick's. To log that delay exactly, every tick keeps
 * a copy of both windows and the data plane keeps the outcomes recorded
 * since (svc->recent); after acting, the tick replays them onto the copies,
 * evaluating the rule after each, and finds the outcome that made the breach.
 * It logs "breach_to_apply_ms=N": from that outcome's record to the moment
 * the new routing snapshot was installed (published_us). When the replay
 * cannot tell (outcomes lost to a full ring, a window reset in between, a
 * breach made by old outcomes leaving the window, a new side gone down
 * before the previous tick), it logs an upper bound instead,
 * "breach_to_apply_ms<=N", from the later of the previous tick and the first
 * outcome since.
 *
 * Workload: one evaluation costs two window sums (window_s x ~110 additions
 * each), about 0.1 ms per service at window_s 600, only for the services
 * that can lose something; the copies hold window_s x 456 bytes per side
 * (their rings are sized like the service's windows) and are refreshed only
 * on ticks after something was recorded. The replay runs once per automatic
 * action, after it was applied, and is skipped past TICK_REPLAY_BUDGET.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <jansson.h>

#include "admin/control.h"
#include "lib/log.h"
#include "lib/xmalloc.h"
#include "health/policy.h"
#include "proxy/server.h"
#include "proxy/shadow.h"
#include "proxy/shield.h"
#include "proxy/tick.h"
#include "proxy/worker.h"

/* Largest replay, in outcomes x window_s; each unit costs about 220
 * additions (two window sums), so a replay stalls the loop for a few ms at
 * most. */
#define TICK_REPLAY_BUDGET 50000u

/* What the tick remembers about one service between ticks. */
struct tick_svc {
    uint64_t last_eval_us;           /* px_now_us() of the previous tick */
    struct hl_window prev[RT_SIDE__COUNT];   /* both windows as the previous tick
                                      * left them (valid when <has_prev>) */
    bool has_prev;
    uint64_t next_alert_ms;          /* frozen: when to repeat the alert, 0 = now */
    char frozen_why[192];            /* frozen: the breach that froze it; "" when
                                      * the latch was restored from the state file */
};

struct px_tick {
    struct px_srv *srv;              /* borrowed */
    struct adm_control *ctl;         /* borrowed */
    struct event *ev;                /* owned: persistent PX_TICK_MS timer */
    struct event *prompt;            /* owned: a prompt evaluation, made active or
                                      * timed (srv->suspect) */
    bool prompt_due;                 /* <prompt> is active or timed */
    uint64_t prompt_us;              /* px_now_us() of the last prompt evaluation */
    struct tick_svc *svcs;           /* owned, <n> entries (their windows' rings too) */
    unsigned n;
    struct hl_window scratch[RT_SIDE__COUNT];    /* owned: the replay's windows */
};

static const char *const breach_kind_names[] = {
    [HL_BR_NONE] = "none",
    [HL_BR_ERROR_RATE] = "error_rate",
    [HL_BR_P99] = "p99",
    [HL_BR_RATIO_TO_LEGACY] = "ratio_to_legacy",
    [HL_BR_DIFF_RATE] = "diff_rate",
};

/* Writes <bp> as "12.34" into <buf>. */
static const char *
pct(uint32_t bp, char *buf, size_t len)
{
    snprintf(buf, len, "%u.%02u", bp / 100, bp % 100);
    return buf;
}

const char *
px_tick_breach_kind(enum hl_breach_kind k)
{
    return (unsigned)k < sizeof(breach_kind_names) / sizeof(breach_kind_names[0])
           ? breach_kind_names[k] : "other";
}

json_t *
px_tick_figures(const struct px_service *svc, const char *kind, const struct hl_stats *ns,
                const struct hl_stats *ls, const struct hl_breach *br, bool new_healthy)
{
    const struct hl_rollback_conf *rc = &svc->conf->rollback;
    json_t *th;

    th = json_pack("{s:f, s:I, s:I}", "max_error_rate", rc->max_error_rate,
                   "min_requests", (json_int_t)rc->min_requests,
                   "window_s", (json_int_t)rc->window_s);
    if (th != NULL && rc->max_p99_ms != 0)
        json_object_set_new(th, "max_p99_ms", json_integer((json_int_t)rc->max_p99_ms));
    if (th != NULL && rc->max_error_ratio_to_legacy != 0)
        json_object_set_new(th, "max_error_ratio_to_legacy",
                            json_real(rc->max_error_ratio_to_legacy));
    return json_pack("{s:s, s:f, s:f, s:I, s:I, s:f, s:I, s:b, s:o*, s:I}",
                     "kind", kind,
                     "error_rate", br->error_rate,
                     "p99_ms", br->p99_ms,
                     "requests", (json_int_t)br->requests,
                     "errors", (json_int_t)ns->errors,
                     "legacy_error_rate", br->legacy_error_rate,
                     "legacy_requests", (json_int_t)ls->requests,
                     "new_healthy", new_healthy,
                     "thresholds", th, "shielded", (json_int_t)px_shield_since_fresh(svc));
}

/* Frozen: an error line now and every PX_TICK_FROZEN_ALERT_MS until an
 * operator acts (a freeze needs a human; it must not scroll away). */
static void
alert_frozen(struct px_service *svc, struct tick_svc *ts, const struct adm_svc_state *st,
             uint64_t now_ms)
{
    char w[16];

    if (now_ms < ts->next_alert_ms)
        return;
    ts->next_alert_ms = now_ms + PX_TICK_FROZEN_ALERT_MS;
    log_at(LL_ERR, "policy", 0, "service %s: FROZEN at weight %s%% (%s): automatic "
           "decisions and the plan are stopped; waiting for an operator: cutoverctl "
           "weight P, rollback or promote", svc->conf->name,
           pct(st->weight_bp, w, sizeof(w)),
           ts->frozen_why[0] != '\0' ? ts->frozen_why
                                     : "latch restored from the state file; see cutoverctl audit");
}

static bool
same_stats(const struct hl_stats *a, const struct hl_stats *b)
{
    return a->requests == b->requests && a->errors == b->errors
        && memcmp(a->by_class, b->by_class, sizeof(a->by_class)) == 0
        && a->p50_ms == b->p50_ms && a->p99_ms == b->p99_ms;
}

/* Replays the outcomes recorded since the previous tick onto its copies of
 * the windows, evaluating the rule after each: returns the record time of
 * the first outcome after which the rule breached, or 0 when that cannot be
 * told (no copies yet, outcomes lost, over the budget, a window reset in
 * between so the replay does not end at <ns>/<ls> (the live stats at
 * <now_ms>), or a breach that no outcome made). */
static uint64_t
breach_moment_us(struct px_tick *t, const struct px_service *svc,
                 const struct tick_svc *ts, const struct hl_stats *ns,
                 const struct hl_stats *ls, uint64_t now_ms)
{
    const struct hl_rollback_conf *rc = &svc->conf->rollback;
    struct hl_window *w = t->scratch;
    struct hl_stats a, b;
    struct hl_breach br;
    uint64_t found = 0;
    unsigned i;

    if (!ts->has_prev || svc->recent_lost || svc->nrecent == 0
        || (uint64_t)svc->nrecent * rc->window_s > TICK_REPLAY_BUDGET)
        return 0;
    hl_window_copy(&w[RT_LEGACY], &ts->prev[RT_LEGACY]);
    hl_window_copy(&w[RT_NEW], &ts->prev[RT_NEW]);
    for (i = 0; i < svc->nrecent; i++) {
        const struct px_recent *r = &svc->recent[i];

        hl_window_push(&w[r->side], r->us / 1000u, (enum hl_outcome)r->outcome,
                       r->latency_us);
        if (found != 0)
            continue;
        hl_window_stats(&w[RT_NEW], r->us / 1000u, &a);
        hl_window_stats(&w[RT_LEGACY], r->us / 1000u, &b);
        if (hl_policy_eval(rc, &a, &b, &br))
            found = r->us;
    }
    hl_window_stats(&w[RT_NEW], now_ms, &a);
    hl_window_stats(&w[RT_LEGACY], now_ms, &b);
    return same_stats(&a, ns) && same_stats(&b, ls) ? found : 0;
}

/* Evaluates service <idx> at <now_us> and acts on what hl_auto_decide()
 * says. */
static void
evaluate(struct px_tick *t, unsigned idx, uint64_t now_us)
{
    struct px_srv *srv = t->srv;
    struct px_service *svc = srv->svcs[idx];
    struct tick_svc *ts = &t->svcs[idx];
    const struct adm_svc_state *st = adm_control_state(t->ctl, idx);
    const struct hl_rollback_conf *rc = &svc->conf->rollback;
    struct hl_auto_input in;
    struct hl_stats ns, ls;
    struct hl_breach br;
    struct hl_diff_stats ds = { 0 };
    enum hl_auto_action a;
    uint64_t since_us, exact_us = 0, now_ms = now_us / 1000u;
    uint32_t from_bp = st->weight_bp;
    const char *kind, *reason, *verb;
    char why[sizeof(ts->frozen_why)], w0[16], w1[16], lat[96];
    json_t *fig;
    double ms;

    if (st->state == ADM_ST_FROZEN) {
        alert_frozen(svc, ts, st, now_ms);
        return;
    }
    ts->next_alert_ms = 0;
    ts->frozen_why[0] = '\0';
    if (!hl_auto_armed(adm_auto_svc(st)))
        return;

    hl_window_stats(&svc->window[RT_NEW], now_ms, &ns);
    hl_window_stats(&svc->window[RT_LEGACY], now_ms, &ls);
    hl_policy_eval(rc, &ns, &ls, &br);
    if (!br.breached && px_shadow_window(svc, now_ms, &ds))
        hl_policy_eval_diff(rc, ds.compared, ds.diffs, &br);
    in = (struct hl_auto_input){
        .breached = br.breached,
        .freeze = rc->action == HL_ACT_FREEZE,
        .new_healthy = rt_side_usable(svc->snap, RT_NEW),
        .rollback_on_new_down = svc->conf->on_new_down == HL_NEWDOWN_ROLLBACK,
    };
    a = hl_auto_decide(adm_auto_svc(st), &in);
    if (a == HL_AUTO_NONE)
        return;

    /* The breach could not be seen at the previous tick: it came later, and
     * no earlier than the first outcome since. A new side that went down
     * since did so when its snapshot was published. */
    since_us = svc->nrecent > 0 && svc->recent[0].us > ts->last_eval_us
               ? svc->recent[0].us : ts->last_eval_us;
    if (br.breached) {
        kind = px_tick_breach_kind(br.kind);
        reason = br.text;
    } else {
        kind = "new_down";
        reason = "new side down: no healthy server (on_new_down rollback)";
        if (svc->published_us > ts->last_eval_us)
            exact_us = svc->published_us;
    }
    snprintf(why, sizeof(why), "%s", reason);
    fig = px_tick_figures(svc, kind, &ns, &ls, &br, in.new_healthy);
    if (fig != NULL && br.kind == HL_BR_DIFF_RATE)
        json_object_update_new(fig, json_pack("{s:f, s:I, s:I, s:f}", "diff_rate", ds.rate,
                                              "compared", (json_int_t)ds.compared,
                                              "diffs", (json_int_t)ds.diffs,
                                              "max_diff_rate", rc->max_diff_rate));
    if (adm_control_auto(t->ctl, idx, a, why, fig) != 0) {
        json_decref(fig);
        return;                      /* not armed after all: nothing was done */
    }
    json_decref(fig);

    /* Applied: now there is time to find out exactly when it breached. */
    if (br.breached)
        exact_us = breach_moment_us(t, svc, ts, &ns, &ls, now_ms);
    verb = a == HL_AUTO_ROLLBACK ? "rollback" : "freeze";
    if (exact_us != 0) {
        ms = svc->published_us > exact_us ? (double)(svc->published_us - exact_us) / 1e3 : 0;
        snprintf(lat, sizeof(lat), "%s applied %.1f ms after the breach "
                 "(breach_to_apply_ms=%.1f)", verb, ms, ms);
    } else {
        ms = svc->published_us > since_us ? (double)(svc->published_us - since_us) / 1e3 : 0;
        snprintf(lat, sizeof(lat), "%s applied at most %.1f ms after the breach "
                 "(breach_to_apply_ms<=%.1f)", verb, ms, ms);
    }

    /* the line says the state file holds it: logged once its save is done
     * (on the control plane's writer thread), the routing changed already */
    if (a == HL_AUTO_ROLLBACK) {
        adm_control_log_written(t->ctl, LL_WARN, "policy", "service %s: AUTOMATIC "
                                "ROLLBACK (%s): %s; weight %s%% -> %s%%, state "
                                "rolled_back until an operator sets a weight; "
                                "error_rate=%.4f p99_ms=%.1f requests=%" PRIu64 " errors=%"
                                PRIu64 " legacy_error_rate=%.4f legacy_requests=%" PRIu64
                                " new_healthy=%s; %s", svc->conf->name, kind, why,
                                pct(from_bp, w0, sizeof(w0)),
                                pct(st->weight_bp, w1, sizeof(w1)), br.error_rate,
                                br.p99_ms, br.requests, ns.errors, br.legacy_error_rate,
                                ls.requests, in.new_healthy ? "true" : "false", lat);
    } else {
        snprintf(ts->frozen_why, sizeof(ts->frozen_why), "%s", why);
        ts->next_alert_ms = now_ms + PX_TICK_FROZEN_ALERT_MS;
        adm_control_log_written(t->ctl, LL_ERR, "policy", "service %s: AUTOMATIC "
                                "FREEZE (%s): %s; weight held at %s%%, plan stopped, state "
                                "frozen: waiting for an operator (cutoverctl weight P, "
                                "rollback or promote); error_rate=%.4f p99_ms=%.1f "
                                "requests=%" PRIu64 " errors=%" PRIu64
                                " legacy_error_rate=%.4f legacy_requests=%" PRIu64 "; %s",
                                svc->conf->name, kind, why,
                                pct(st->weight_bp, w0, sizeof(w0)), br.error_rate,
                                br.p99_ms, br.requests, ns.errors, br.legacy_error_rate,
                                ls.requests, lat);
    }
}

/* Ends service <idx>'s tick: the next tick replays from here, so this runs
 * after everything this tick may change (the rollback decision, a plan
 * step's reset of new's window). */
static void
tick_snapshot(struct px_tick *t, unsigned idx, uint64_t now_us)
{
    struct px_service *svc = t->srv->svcs[idx];
    struct tick_svc *ts = &t->svcs[idx];
    unsigned side;

    /* The windows change only by pushes (listed in svc->recent) and by
     * resets, which come with a publish (op_apply): with neither, the
     * copies are still exact. */
    if (!ts->has_prev || svc->nrecent > 0 || svc->recent_lost
        || svc->published_us >= ts->last_eval_us) {
        for (side = 0; side < RT_SIDE__COUNT; side++)
            hl_window_copy(&ts->prev[side], &svc->window[side]);
        ts->has_prev = true;
    }
    svc->nrecent = 0;
    svc->recent_lost = false;
    ts->last_eval_us = now_us;
}

/* The progressive plan's part of the tick (adm_control_plan_tick): after the
 * rollback decision, so a breach in this tick stops the plan before it can
 * take a step. A step counts the outcomes new has served since it began. */
static void
tick_plan(struct px_tick *t, unsigned idx, uint64_t now_ms)
{
    const struct px_side_stats *ns = &t->srv->svcs[idx]->stats[RT_NEW];
    uint64_t served = 0, compared, diffs;
    size_t k;

    for (k = 0; k < sizeof(ns->by_class) / sizeof(ns->by_class[0]); k++)
        served += ns->by_class[k];
    px_shadow_totals(t->srv->svcs[idx], &compared, &diffs);
    adm_control_plan_shadow(t->ctl, idx, compared, diffs);   /* the plan's diff gate */
    adm_control_plan_tick(t->ctl, idx, now_ms, served);
}

static void
on_tick_timer(evutil_socket_t fd, short what, void *arg)
{
    struct px_tick *t = arg;
    unsigned i;

    (void)fd;
    (void)what;
    px_workers_fold(t->srv);         /* every worker's outcomes since the last tick */
    for (i = 0; i < t->srv->nsvcs; i++) {
        uint64_t now_us = px_now_us(t->srv);

        evaluate(t, i, now_us);
        tick_plan(t, i, now_us / 1000u);
        tick_snapshot(t, i, now_us);
    }
    /* a state or audit entry the disk did not take: retried with backoff */
    adm_control_store_tick(t->ctl, px_now_ms(t->srv));
}

/* A prompt evaluation: the workers' outcomes and the rule of every armed
 * service, now. Not the plan (its bake counts ticks' time) and not the
 * tick's copies: the next tick replays from where the last tick left. */
static void
on_prompt(evutil_socket_t fd, short what, void *arg)
{
    struct px_tick *t = arg;
    unsigned i;
    bool armed = false;

    (void)fd;
    (void)what;
    t->prompt_due = false;
    t->prompt_us = px_now_us(t->srv);
    for (i = 0; i < t->srv->nsvcs && i < adm_control_count(t->ctl); i++)
        armed |= hl_auto_armed(adm_auto_svc(adm_control_state(t->ctl, i)));
    if (!armed)
        return;                      /* nothing left to roll back or freeze */
    px_workers_fold(t->srv);
    for (i = 0; i < t->srv->nsvcs; i++)
        evaluate(t, i, px_now_us(t->srv));
}

/* srv->suspect on the main loop (a worker's comes through proxy/worker.c):
 * from the data plane, inside a connection's callback, so it only
 * schedules. At once when the last prompt evaluation is PX_TICK_PROMPT_MS
 * old, else when it will be. */
static void
tick_suspect(struct px_srv *srv)
{
    struct px_tick *t = srv->suspect_arg;
    uint64_t now_us, gap_us = PX_TICK_PROMPT_MS * 1000u;
    struct timeval tv;

    if (t->prompt_due)
        return;
    t->prompt_due = true;
    now_us = px_now_us(srv);
    if (now_us - t->prompt_us >= gap_us) {
        event_active(t->prompt, EV_TIMEOUT, 1);
        return;
    }
    gap_us -= now_us - t->prompt_us;
    tv.tv_sec = 0;
    tv.tv_usec = (suseconds_t)gap_us;
    if (evtimer_add(t->prompt, &tv) < 0)
        event_active(t->prompt, EV_TIMEOUT, 1);
}

/* Starts the tick's memory of <svc> afresh at <now_us> (<ts> zeroed). */
static void
tick_svc_init(struct tick_svc *ts, struct px_service *svc, uint64_t now_us)
{
    ts->last_eval_us = now_us;
    hl_window_copy(&ts->prev[RT_LEGACY], &svc->window[RT_LEGACY]);
    hl_window_copy(&ts->prev[RT_NEW], &svc->window[RT_NEW]);
    ts->has_prev = true;
    svc->nrecent = 0;
    svc->recent_lost = false;
}

/* Frees the array <svcs> of <n> entries and their windows' rings. */
static void
tick_svcs_free(struct tick_svc *svcs, unsigned n)
{
    unsigned i;

    for (i = 0; svcs != NULL && i < n; i++) {
        hl_window_free(&svcs[i].prev[RT_LEGACY]);
        hl_window_free(&svcs[i].prev[RT_NEW]);
    }
    free(svcs);
}

struct px_tick *
px_tick_new(struct px_srv *srv, struct adm_control *ctl)
{
    struct px_tick *t = xcalloc(1, sizeof(*t));
    unsigned ms = srv->conf->policy_tick_ms != 0 ? srv->conf->policy_tick_ms : PX_TICK_MS;
    struct timeval tv = { ms / 1000, (suseconds_t)(ms % 1000) * 1000 };
    uint64_t now_us = px_now_us(srv);
    unsigned i;

    t->srv = srv;
    t->ctl = ctl;
    t->svcs = xcalloc(srv->nsvcs > 0 ? srv->nsvcs : 1, sizeof(*t->svcs));
    t->n = srv->nsvcs;
    for (i = 0; i < srv->nsvcs; i++) {
        struct tick_svc *ts = &t->svcs[i];

        ts->last_eval_us = now_us;
        tick_svc_init(ts, srv->svcs[i], now_us);
    }
    t->ev = event_new(srv->base, -1, EV_PERSIST, on_tick_timer, t);
    t->prompt = evtimer_new(srv->base, on_prompt, t);
    if (t->ev == NULL || event_add(t->ev, &tv) < 0 || t->prompt == NULL) {
        log_at(LL_ERR, "policy", 0, "cannot start the %u ms policy tick", ms);
        px_tick_free(t);
        return NULL;
    }
    srv->suspect_arg = t;
    srv->suspect = tick_suspect;
    return t;
}

void
px_tick_reconfigure(struct px_tick *t, const int *old_of_new, unsigned n)
{
    struct tick_svc *svcs = xcalloc(n > 0 ? n : 1, sizeof(*svcs));
    uint64_t now_us = px_now_us(t->srv);
    unsigned i;

    for (i = 0; i < n; i++) {
        if (old_of_new[i] >= 0) {
            /* its replay copies (moved, not copied) and alerts */
            svcs[i] = t->svcs[old_of_new[i]];
            memset(&t->svcs[old_of_new[i]], 0, sizeof(t->svcs[0]));
        } else {
            tick_svc_init(&svcs[i], t->srv->svcs[i], now_us);
        }
    }
    tick_svcs_free(t->svcs, t->n);     /* the removed services' */
    t->svcs = svcs;
    t->n = n;
}

void
px_tick_free(struct px_tick *t)
{
    if (t == NULL)
        return;
    if (t->srv->suspect_arg == t) {
        t->srv->suspect = NULL;
        t->srv->suspect_arg = NULL;
    }
    if (t->ev != NULL)
        event_free(t->ev);
    if (t->prompt != NULL)
        event_free(t->prompt);
    tick_svcs_free(t->svcs, t->n);
    hl_window_free(&t->scratch[RT_LEGACY]);
    hl_window_free(&t->scratch[RT_NEW]);
    free(t);
}
