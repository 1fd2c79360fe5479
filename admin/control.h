/*
 * control: the control plane of the daemon. Owns the operator-visible state
 * of every service (weight, state, generation), executes admin commands
 * (status, weight, rollback, promote, switch, audit), persists every change
 * through the state store and records it in the audit log. It never touches
 * the data plane directly: it calls the ops that proxy/main.c wires.
 *
 * Ordering (docs/DESIGN.md): a change that lowers the weight (rollback,
 * switch legacy, a lower weight) is applied first and persisted second; a
 * change that raises it is persisted first and applied second, so a crash
 * can never leave more traffic on new than the disk says.
 */
#ifndef CUTOVER_ADMIN_CONTROL_H
#define CUTOVER_ADMIN_CONTROL_H

#include <stdbool.h>
#include <stdint.h>

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

/* Callbacks into the data plane; <arg> is the ops' argument. All are called
 * from the event loop that runs the admin socket. */
struct adm_ops {
    /* Publish <st> for service <svc> to every worker; returns when applied. */
    void (*apply)(void *arg, unsigned svc, const struct adm_svc_state *st);
    /* True when <side> of <svc> has at least one healthy server. */
    bool (*side_healthy)(void *arg, unsigned svc, enum rt_side side);
    /* Adds the data-plane part of a status entry to object <obj>: "mode",
     * "legacy" and "new" ({"healthy","servers":[{"addr","up"}],"window":{…}}). */
    void (*status)(void *arg, unsigned svc, struct json_t *obj);
    /* Blue-green: <left> no longer receives traffic. Close its idle pooled
     * connections; close its TCP tunnels after <drain_s> seconds (-1: leave
     * them open). */
    void (*switched)(void *arg, unsigned svc, enum rt_side left, int drain_s);
};

struct adm_control;

/* Creates the control plane for <n> services named <names> (copied), with
 * initial weights <initial_bp>. Restores state from <state_file> when it
 * exists (its weights and latches win over the config). Returns NULL with a
 * message in <err> when the state file is unreadable or corrupt: startup
 * must stop, never silently default. <audit_file> may be NULL (no audit). */
struct adm_control *adm_control_new(const char *const *names,
                                    const uint32_t *initial_bp, unsigned n,
                                    const char *state_file, const char *audit_file,
                                    const struct adm_ops *ops, void *arg,
                                    char *err, size_t errlen);

void adm_control_free(struct adm_control *c);

/* Current state of service <svc> (borrowed, valid until the next command). */
const struct adm_svc_state *adm_control_state(const struct adm_control *c, unsigned svc);

/* Executes one request object <req> on behalf of <actor> ("uid:0") and
 * returns a new reply object ({"ok":true,…} or {"ok":false,"error":…}); the
 * caller owns it. A request that is refused changes nothing. */
struct json_t *adm_control_exec(struct adm_control *c, struct json_t *req,
                                const char *actor);

/* Executes one request line (JSON text) and returns the reply as a newly
 * allocated, single-line, NUL-terminated string (caller frees). Bad JSON gets
 * an error reply. */
char *adm_control_exec_line(struct adm_control *c, const char *line, size_t len,
                            const char *actor);

#endif
