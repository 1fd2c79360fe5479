/*
 * health/policy: the rollback rule of one service. Given the rollback config
 * and the window figures of both sides, says whether the new side breached
 * its budget, which threshold it crossed and with what figures. Pure: libc
 * only, no clock, no allocation, no logging; what a breach does (rollback or
 * freeze, audit entry) is the caller's.
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

#endif
