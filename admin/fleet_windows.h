/*
 * fleet_windows: the fleet's windows as the database holds them (schema
 * step 2, docs/fleet.md "Windows and the leader"). What this instance
 * publishes every second (the document its one upsert unpacks with
 * jsonb_to_recordset: every service's applied generation, weight and state
 * and both sides' window counts) and what the leader and `status --fleet`
 * read back: the counts as PostgreSQL array text, classes in the order of
 * enum hl_outcome and the latency histogram as (bin, count) pairs of the
 * bins of health/window.h, only the bins that hold something. Reading is
 * strict: a row whose arrays are malformed, whose bins are out of range or
 * out of order, or whose histogram does not hold one latency per outcome
 * is refused with the reason, never summed. Pure apart from jansson.
 */
#ifndef CUTOVER_ADMIN_FLEET_WINDOWS_H
#define CUTOVER_ADMIN_FLEET_WINDOWS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "health/window.h"
#include "router/router.h"

/* One service as this instance publishes it. */
struct adm_fw_svc {
    char name[64];
    uint64_t generation;         /* the state applied here */
    uint32_t weight_bp;
    int state;                   /* enum adm_state */
    unsigned window_s;           /* rollback.window_s */
    struct hl_counts side[RT_SIDE__COUNT];   /* [RT_LEGACY], [RT_NEW] */
};

/* The upsert's document: [{"service","generation","window_s","lc","lh",
 * "nc","nh"}, ...] (lc/nc the classes, lh/nh the histogram pairs). */
json_t *adm_fw_publish_doc(const struct adm_fw_svc *s, unsigned n);

/* The instance row's "applied": {"web": {"generation", "weight_bp",
 * "state"}, ...}. */
json_t *adm_fw_applied(const struct adm_fw_svc *s, unsigned n);

/* Reads one side's counts from the array text of its classes ("{1,2,3,4,5}")
 * and its histogram pairs ("{12,40,13,2}"). 0, or -1 with the reason in
 * <err> and <out> zeroed. */
int adm_fw_counts_parse(const char *classes, const char *hist, struct hl_counts *out,
                        char *err, size_t errlen);

/* The figures of <c> for a status: {"requests","errors","error_rate",
 * "p50_ms","p99_ms"}. */
json_t *adm_fw_window_json(const struct hl_counts *c);

#endif
