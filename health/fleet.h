/*
 * health/fleet: the fleet's windows added up (docs/fleet.md, "The leader").
 * Every instance of a fleet publishes its windows once a second (the
 * counts of both sides of every service, struct hl_counts); the leader
 * reads what the instances published and applies the rollback policy
 * (health/policy.h) to the sum, so that three instances at 10 req/s reach
 * min_requests three times sooner and a breach spread thin across them is
 * still seen. Which rows count is decided here, pure: numbers in, numbers
 * out, no clock (ages are given), no allocation, no logging.
 *
 * A row is one instance's last publication for one service:
 *   - a row older than live_ms is an instance that is gone (killed,
 *     partitioned, stopped): left out entirely;
 *   - new's side of a live row published before the leader's last reset of
 *     new's window (its generation below reset_gen: the instance had not
 *     applied that change yet) is stale evidence, from before an operator
 *     cleared the latch or moved the weight: left out, so that a rollback's
 *     own errors cannot roll back again the weight an operator just set.
 *     Legacy's side is never reset and always counts.
 * Every live row adds its counts, class by class and bin by bin, so the
 * sum's p99 is the p99 of every outcome the fleet saw, not an average.
 */
#ifndef CUTOVER_HEALTH_FLEET_H
#define CUTOVER_HEALTH_FLEET_H

#include <stdint.h>

#include "health/window.h"
#include "router/router.h"

/* One instance's last publication of one service, as the leader read it. */
struct hl_fleet_row {
    const char *instance;        /* borrowed: its name (for the caller's figures) */
    double age_ms;               /* since it was published, by the database's clock */
    uint64_t generation;         /* the service's generation the instance had
                                  * applied when it published */
    struct hl_counts side[RT_SIDE__COUNT];   /* [RT_LEGACY], [RT_NEW] */
};

/* What the leader sums. */
struct hl_fleet_sum {
    unsigned live;               /* rows summed: instances seen within live_ms */
    unsigned stale;              /* of them, rows whose new side was left out
                                  * (published before reset_gen) */
    unsigned gone;               /* rows left out: not seen within live_ms */
    struct hl_counts side[RT_SIDE__COUNT];
};

/* Sums the <n> rows <rows> into <out> by the rules above: rows with
 * age_ms <= <live_ms> count (a negative age, a clock step, counts as live),
 * and of them new's side only when generation >= <reset_gen> (0: every
 * live row's). Cost: n x 2 x (HL_OUT__COUNT + HL_HIST_BINS) additions. */
void hl_fleet_sum(const struct hl_fleet_row *rows, unsigned n, double live_ms,
                  uint64_t reset_gen, struct hl_fleet_sum *out);

#endif
