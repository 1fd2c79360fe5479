/*
 * health/policy.c: the rollback rule and the automatic decision (see policy.h).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "health/policy.h"

static double
rate_of(const struct hl_stats *s)
{
    return s->requests == 0 ? 0.0 : (double)s->errors / (double)s->requests;
}

/* a > b for rates, where a and b equal as fractions may differ by a few ulps
 * once rounded (3 x 0.05 is 0.15000000000000002): a must exceed b by more
 * than a relative 1e-12, far below one error in any real window. */
static bool
rate_above(double a, double b)
{
    return a > b + b * 1e-12;
}

bool
hl_policy_eval(const struct hl_rollback_conf *c, const struct hl_stats *new_side,
               const struct hl_stats *legacy, struct hl_breach *out)
{
    memset(out, 0, sizeof *out);
    out->error_rate = rate_of(new_side);
    out->p99_ms = new_side->p99_ms;
    out->requests = new_side->requests;
    if (legacy != NULL)
        out->legacy_error_rate = rate_of(legacy);

    if (!c->enabled || new_side->requests < c->min_requests)
        return false;

    if (rate_above(out->error_rate, c->max_error_rate)) {
        out->kind = HL_BR_ERROR_RATE;
        snprintf(out->text, sizeof out->text,
                 "error rate %.3f > %.3f over %" PRIu64 " requests (%" PRIu64 " errors)",
                 out->error_rate, c->max_error_rate, new_side->requests,
                 new_side->errors);
    } else if (c->max_p99_ms != 0 && new_side->p99_ms > (double)c->max_p99_ms) {
        out->kind = HL_BR_P99;
        snprintf(out->text, sizeof out->text,
                 "p99 %.1f ms > %u ms over %" PRIu64 " requests",
                 new_side->p99_ms, c->max_p99_ms, new_side->requests);
    } else if (c->max_error_ratio_to_legacy != 0 && legacy != NULL
               && legacy->requests >= c->min_requests
               && rate_above(out->error_rate,
                             c->max_error_ratio_to_legacy * out->legacy_error_rate)) {
        out->kind = HL_BR_RATIO_TO_LEGACY;
        snprintf(out->text, sizeof out->text,
                 "error rate %.3f > %.2f x legacy %.3f over %" PRIu64
                 " requests (%" PRIu64 " errors; legacy %" PRIu64 " requests)",
                 out->error_rate, c->max_error_ratio_to_legacy, out->legacy_error_rate,
                 new_side->requests, new_side->errors, legacy->requests);
    } else {
        return false;
    }
    out->breached = true;
    return true;
}

bool
hl_policy_eval_diff(const struct hl_rollback_conf *c, uint64_t compared, uint64_t diffs,
                    struct hl_breach *out)
{
    double rate = compared > 0 ? (double)diffs / (double)compared : 0;

    if (!c->enabled || c->max_diff_rate <= 0 || compared < c->min_requests ||
        !rate_above(rate, c->max_diff_rate))
        return out->breached;
    out->kind = HL_BR_DIFF_RATE;
    out->breached = true;
    snprintf(out->text, sizeof out->text,
             "diff rate %.3f > %.3f over %" PRIu64 " shadow comparisons (%" PRIu64
             " differed)", rate, c->max_diff_rate, compared, diffs);
    return true;
}

bool
hl_auto_armed(struct hl_auto_svc s)
{
    if (s.latched)
        return false;
    return s.weight_bp > 0 || s.progressing;
}

enum hl_auto_action
hl_auto_decide(struct hl_auto_svc s, const struct hl_auto_input *in)
{
    if (!hl_auto_armed(s))
        return HL_AUTO_NONE;
    if (in->breached)
        return in->freeze ? HL_AUTO_FREEZE : HL_AUTO_ROLLBACK;
    if (!in->new_healthy && in->rollback_on_new_down)
        return HL_AUTO_ROLLBACK;
    return HL_AUTO_NONE;
}
