/*
 * health/policy: the rollback rule of one service and the automatic decision
 * that follows it. Given the rollback config and the window figures of both
 * sides, hl_policy_eval() says whether the new side breached its budget,
 * which threshold it crossed and with what figures; hl_auto_decide() says
 * what the policy tick does about a service (nothing, rollback or freeze)
 * given that verdict, new's health and the service's control state. Pure:
 * libc only, no clock, no allocation, no logging; carrying a decision out
 * (moving the weight, latching, persisting, auditing) is the caller's
 * (adm_control_auto(), admin/control.h).
 */
#ifndef CUTOVER_HEALTH_POLICY_H
#define CUTOVER_HEALTH_POLICY_H

#include <stdbool.h>
#include <stdint.h>

#include "health/conf.h"
#include "health/window.h"

/* Which threshold a breach crossed. When several are crossed at once the
 * first in this order is reported: error rate, p99, ratio to legacy. */
enum hl_breach_kind {
    HL_BR_NONE,
    HL_BR_ERROR_RATE,          /* error rate > max_error_rate */
    HL_BR_P99,                 /* p99 > max_p99_ms */
    HL_BR_RATIO_TO_LEGACY,     /* error rate > max_error_ratio_to_legacy x legacy's */
    HL_BR_DIFF_RATE,           /* shadow comparisons that differed > max_diff_rate */
};

/* The verdict and the figures behind it (filled whether or not breached). */
struct hl_breach {
    bool breached;
    enum hl_breach_kind kind;      /* HL_BR_NONE when not breached */
    double error_rate;             /* new side: errors / requests */
    double p99_ms;                 /* new side */
    double legacy_error_rate;      /* 0 without legacy figures */
    uint64_t requests;             /* new side */
    char text[160];                /* on a breach, for the audit log and the
                                    * status: "error rate 0.125 > 0.050 over
                                    * 40 requests (5 errors)"; "" otherwise */
};

/* Evaluates the rule of the design on the new side's stats <new_side>:
 *
 *   breach when c->enabled
 *     AND new.requests >= c->min_requests
 *     AND (  new.error_rate > c->max_error_rate
 *         OR (c->max_p99_ms != 0 AND new.p99_ms > c->max_p99_ms)
 *         OR (c->max_error_ratio_to_legacy != 0
 *             AND legacy.requests >= c->min_requests
 *             AND new.error_rate > c->max_error_ratio_to_legacy x legacy.error_rate))
 *
 * Comparisons are strict: a figure equal to its threshold is not a breach
 * (rates equal up to rounding, e.g. 3 x 0.05 against 0.15, count as equal).
 * Error rates are computed from the errors and requests counts; p99 is taken
 * from p99_ms. The ratio rule is applied literally when legacy had no
 * errors: ratio x 0 = 0, so any error on the new side breaches. It is
 * skipped when legacy served fewer than min_requests (too few to give a rate
 * to compare with) or <legacy> is NULL. Fills <out> and returns
 * out->breached. */
bool hl_policy_eval(const struct hl_rollback_conf *c, const struct hl_stats *new_side,
                    const struct hl_stats *legacy, struct hl_breach *out);

/* True when one more outcome <o> of <latency_us> on the new side can be
 * the one that makes the rule above breach: an error (5xx or transport),
 * or, with max_p99_ms, a latency whose histogram bin can report above it
 * (a bin reports its geometric middle, at most 7.2% above the sample, so
 * from 93% of max_p99_ms). The data plane asks this of every outcome on
 * new, so that the policy evaluates as soon as a breach can have happened
 * rather than at its next tick; it is a couple of compares. A successful,
 * fast outcome that completes min_requests after the errors (or lowers
 * legacy's error rate under the ratio rule) is not flagged: the tick
 * finds that breach. */
static inline bool
hl_policy_suspect(const struct hl_rollback_conf *c, enum hl_outcome o, uint32_t latency_us)
{
    return c->enabled
        && (o >= HL_OUT_5XX
            || (c->max_p99_ms != 0
                && (uint64_t)latency_us * 100u > (uint64_t)c->max_p99_ms * 93000u));
}

/* The shadow traffic rule (rollback.max_diff_rate set): breach when
 * c->enabled AND compared >= c->min_requests AND diffs / compared >
 * c->max_diff_rate, over the window of both sides' comparisons. Fills the
 * kind, the text and breached of <out> on a breach (leaves it as it is
 * otherwise) and returns out->breached. */
bool hl_policy_eval_diff(const struct hl_rollback_conf *c, uint64_t compared, uint64_t diffs,
                         struct hl_breach *out);

/* ---- automatic decisions (the policy tick, proxy/tick.c) ----------------
 *
 * The tick evaluates the rollback rule and the new side's health every
 * 100 ms; hl_auto_decide() is what it decides, adm_control_auto() what it
 * does. The decision is pure so every rule is a unit test; the execution is
 * a change like an operator's (same ordering, persistence, audit), by actor
 * "auto".
 */

/* What the tick does about one service. */
enum hl_auto_action {
    HL_AUTO_NONE = 0,        /* nothing: no breach, not armed, or latched */
    HL_AUTO_ROLLBACK,        /* weight 0 at once, plan stopped, latch rolled_back */
    HL_AUTO_FREEZE,          /* weight held, plan stopped, latch frozen */
};

/* What the decision knows of a service's control state (adm_auto_svc()
 * fills it from the control plane's). */
struct hl_auto_svc {
    uint32_t weight_bp;      /* share to new, 0..10000 */
    bool latched;            /* rolled_back or frozen: an earlier decision (or
                              * an operator's rollback) holds until an operator
                              * sets a weight */
    bool progressing;        /* a plan is progressing and would raise the weight */
};

/* The figures the decision takes, gathered by the tick. */
struct hl_auto_input {
    bool breached;           /* hl_policy_eval() said so (it already applies
                              * rollback.enabled and min_requests) */
    bool freeze;             /* rollback.action is "freeze" */
    bool new_healthy;        /* new has at least one healthy server */
    bool rollback_on_new_down;   /* on_new_down is "rollback" */
};

/* True when an automatic decision may change service <s>: it is not latched
 * and there is something to take away from new (weight > 0, or a plan
 * progressing that would raise it). At weight 0 outside a plan nothing
 * happens, whatever new's window says (override traffic alone never latches
 * anything). */
bool hl_auto_armed(struct hl_auto_svc s);

/* Decides what to do about service <s> given <in>. Pure.
 *
 *   not armed (see hl_auto_armed)                       -> NONE
 *   breached                                            -> FREEZE when in->freeze,
 *                                                          else ROLLBACK
 *   new has no healthy server and rollback_on_new_down  -> ROLLBACK
 *   otherwise                                           -> NONE
 *
 * A breach is acted on first, by rollback.action: the breach usually shows
 * (errors, timeouts) before the checks mark the side down, and a frozen
 * service then stays frozen even if new goes down (the router falls back to
 * legacy meanwhile; freezing exists because rolling back is unsafe). The
 * on_new_down rule is independent of rollback.enabled: it is its own key. */
enum hl_auto_action hl_auto_decide(struct hl_auto_svc s, const struct hl_auto_input *in);

#endif
