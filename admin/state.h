/*
 * admin/state: the control plane's value types, shared by its interface
 * (admin/control.h), its internals (admin/control_int.h) and the state store
 * (admin/store.c) without any of them including another: a service's state
 * (weight, latch, generation) and its names as the state file stores them,
 * the callbacks into the data plane, and the counters of changes.
 */
#ifndef CUTOVER_ADMIN_STATE_H
#define CUTOVER_ADMIN_STATE_H

#include <stdbool.h>
#include <stdint.h>

#include "admin/tokens.h"
#include "router/router.h"

struct json_t;

/* Must remain in this order: the state file stores the names. */
enum adm_state {
    ADM_ST_STEADY = 0,       /* no plan running */
    ADM_ST_PROGRESSING,      /* plan running */
    ADM_ST_PAUSED,           /* plan paused */
    ADM_ST_ROLLED_BACK,      /* latched by rollback (operator or automatic) */
    ADM_ST_FROZEN,           /* breach with action "freeze" */
    ADM_ST_PROMOTED,         /* weight 100 by promote / switch new */
    ADM_ST__COUNT
};

extern const char *const adm_state_names[ADM_ST__COUNT];

/* Returns the state named <name>, or -1. */
int adm_state_from_name(const char *name);

struct adm_svc_state {
    uint32_t weight_bp;      /* share to new, 0..10000 */
    enum adm_state state;
    uint64_t generation;     /* +1 on every change */
};

/* adm_change.drain_s of a rollback without its own: rollback.drain_s. */
#define ADM_DRAIN_ROLLBACK (-2)

/* Callbacks into the data plane; <arg> is the ops' argument. All are called
 * from the event loop that runs the admin socket. */
struct adm_ops {
    /* Publish <st> for service <svc> to every worker; returns when applied. */
    void (*apply)(void *arg, unsigned svc, const struct adm_svc_state *st);
    /* True when <side> of <svc> has at least one healthy server. */
    bool (*side_healthy)(void *arg, unsigned svc, enum rt_side side);
    /* Called once before the entries of one status reply: brings the data
     * plane's figures up to date (the workers' folded into the main loop's),
     * so that each status call below only reads. NULL: nothing to do. */
    void (*status_begin)(void *arg);
    /* Adds the data-plane part of a status entry to object <obj>: "mode",
     * "legacy" and "new" ({"healthy","servers":[{"addr","up"}],"window":{…}}),
     * as of the last status_begin. */
    void (*status)(void *arg, unsigned svc, struct json_t *obj);
    /* Blue-green or rollback: <left> no longer receives traffic. Close its
     * idle pooled connections; close its tunnels (TCP mode, HTTP upgrades)
     * after *<drain_s> seconds (-1: leave them open; ADM_DRAIN_ROLLBACK: the
     * service's rollback.drain_s, written back). Returns how many tunnels
     * will close. */
    unsigned (*switched)(void *arg, unsigned svc, enum rt_side left, int *drain_s);
    /* `certs reload`: reads every TLS certificate and key of the running
     * config again and, when all of them load, installs them on every
     * worker (connections keep what they began with). Returns 0 with a
     * summary in <msg>, or -1 with the file and the reason in <msg> and the
     * running material kept. NULL: no TLS support. */
    int (*certs_reload)(void *arg, char *msg, size_t len);
    /* Migration gates (proxy/gates.c): whether service <svc>'s gates let
     * the weight rise. 0 when every gate passes (or there is none), 1 when
     * one fails, 2 when none fails and one has no result yet; then <why>
     * gets that gate's name, value and reason (one line). NULL: no gates. */
    int (*gates)(void *arg, unsigned svc, char *why, size_t len);
    /* `server drain|disable|enable` (admin/server_ctl.c): sets the
     * operator's state <to> ("ready", "drain", "disabled") of the server
     * written <addr> on <side> of <svc> on every worker and keeps it for
     * a restart. Returns 0 with the state it had in <from> and what was
     * done in <msg>, or -1 with why not in <msg> (nothing changed). NULL:
     * not supported. */
    int (*server_admin)(void *arg, unsigned svc, enum rt_side side, const char *addr,
                        const char *to, char *from, size_t fromlen, char *msg, size_t len);
    /* `diffs`: the last <n> differences shadow traffic kept for <svc>,
     * oldest first (a new array), or NULL when <svc> has no "shadow". */
    struct json_t *(*diffs)(void *arg, unsigned svc, unsigned n);
};

/* Why a rollback happened, as counted for the metrics. Must remain in this
 * order (adm_rollback_reason_names); the automatic ones are the "kind" of
 * the decision's figures (proxy/tick.c). */
enum adm_rollback_reason {
    ADM_RB_MANUAL = 0,           /* "manual": an operator's rollback command */
    ADM_RB_ERROR_RATE,           /* "error_rate" */
    ADM_RB_P99,                  /* "p99" */
    ADM_RB_RATIO_TO_LEGACY,      /* "ratio_to_legacy" */
    ADM_RB_NEW_DOWN,             /* "new_down": on_new_down rollback */
    ADM_RB_GATE,                 /* "gate": a migration gate with on_fail rollback */
    ADM_RB_DIFF_RATE,            /* "diff_rate": shadow answers differed (rollback.max_diff_rate) */
    ADM_RB_OTHER,                /* "other": automatic, with no known kind */
    ADM_RB__COUNT
};

extern const char *const adm_rollback_reason_names[ADM_RB__COUNT];

/* Changes of one service since the daemon started (not persisted: metrics
 * counters start at 0 with the process). */
struct adm_counters {
    uint64_t rollbacks[ADM_RB__COUNT];   /* rollbacks applied, by reason */
    uint64_t freezes;                    /* automatic freezes applied */
};

/* Unsaved state is warned about this often (admin/control.h); the store's
 * figures as status and the metrics show them. */
#define ADM_UNSAVED_WARN_MS 10000u

/* The buckets of cutover_store_apply_seconds (admin/fleet.c), seconds. */
#define ADM_FLEET_APPLY_BUCKETS 9
extern const double adm_fleet_apply_bounds[ADM_FLEET_APPLY_BUCKETS];

struct adm_store_status {
    bool dirty;                  /* a state in effect is not in the state file */
    bool journaled;              /* ... but it is in the journal */
    uint64_t save_errors;        /* failed saves of the state file since start */
    uint64_t audit_errors;       /* failed writes of an audit entry since start */
    unsigned audit_pending;      /* audit entries waiting to be written */
    /* the fleet's store (admin/fleet.c); all 0 with the file store */
    bool fleet;                  /* "store": {"postgres"} is in use */
    bool up;                     /* its session is up and the rows read */
    double apply_sum_s;          /* commit -> applied here, summed */
    uint64_t apply_count;
    uint64_t apply_buckets[ADM_FLEET_APPLY_BUCKETS + 1];  /* per bucket of
                                  * adm_fleet_apply_bounds, the last above all */
    /* the fleet's windows and its leader (admin/fleet_leader.c) */
    bool leader;                 /* this instance leads the fleet */
    unsigned fleet_instances;    /* live instances, as the leader counted them */
    uint64_t leader_takeovers;   /* leaders whose lease expired that this one replaced */
};

/* Who runs a command: its actor name, its process and its level
 * (admin/control.h, adm_control_exec_as()). */
struct adm_caller {
    const char *actor;           /* "uid:N" or "token:NAME"; borrowed */
    long pid;                    /* peer process (SO_PEERCRED), -1 when unknown:
                                  * audited as "pid" and logged with each change */
    enum adm_level level;
};

#endif
