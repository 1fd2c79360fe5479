/*
 * health/fleet.c: the fleet's windows added up (see fleet.h).
 */
#include <string.h>

#include "health/fleet.h"

void
hl_fleet_sum(const struct hl_fleet_row *rows, unsigned n, double live_ms,
             uint64_t reset_gen, struct hl_fleet_sum *out)
{
    unsigned i;

    memset(out, 0, sizeof *out);
    for (i = 0; i < n; i++) {
        const struct hl_fleet_row *r = &rows[i];

        if (r->age_ms > live_ms) {
            out->gone++;
            continue;
        }
        out->live++;
        hl_counts_add(&out->side[RT_LEGACY], &r->side[RT_LEGACY]);
        if (r->generation < reset_gen) {
            out->stale++;
            continue;
        }
        hl_counts_add(&out->side[RT_NEW], &r->side[RT_NEW]);
    }
}
