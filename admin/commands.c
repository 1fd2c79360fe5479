/*
 * commands: the control plane's commands and the levels they need (see
 * control.h): status, weight, rollback, promote, switch, plan (its glue is
 * plan_ctl.c), audit and certs (reload, level admin); the level a request needs given its service's
 * state, the audited refusal of a request below it; adm_control_exec*();
 * the audit of events that changed nothing. Every command validates its
 * request completely, then hands the change to the change engine
 * (change.h). Calls plan_ctl.c, change.c and request.c.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "admin/audit.h"
#include "admin/change.h"
#include "admin/control.h"
#include "admin/ctl_proto.h"
#include "admin/fleet.h"
#include "admin/fleet_leader.h"
#include "admin/persist.h"
#include "admin/plan_ctl.h"
#include "admin/request.h"
#include "admin/server_ctl.h"
#include "admin/status.h"
#include "admin/writer.h"
#include "lib/log.h"
#include "lib/xmalloc.h"

#define AUDIT_N_DEFAULT 20
#define REPLY_DUMP_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(15))

/* ---- commands --------------------------------------------------------- */

/* An operator's raise of service <svc> to <to_bp> while a migration gate
 * fails (adm_ops.gates) is refused unless <force>: returns the refusal, or
 * NULL to go on. <forced> gets the change's reason: the operator's <reason>,
 * and for a forced raise past a failing gate "forced past a failing gate: …"
 * after it (so the audit entry names the gate and its value; logged too). A
 * gate with no result yet does not refuse a raise (it holds a plan step). */
static json_t *
gate_refusal(struct adm_control *c, unsigned svc, uint32_t to_bp, bool force,
             const char *what, const char *reason, char *forced, size_t len)
{
    char why[512];

    snprintf(forced, len, "%s", reason);
    if (c->ops.gates == NULL || to_bp <= c->svcs[svc].st.weight_bp)
        return NULL;
    if (c->ops.gates(c->arg, svc, why, sizeof(why)) != 1)
        return NULL;
    if (!force)
        return adm_fail_reply("%s refused: %s; the weight may rise when it passes "
                              "(--force to raise anyway)", what, why);
    snprintf(forced, len, "%s%sforced past a failing gate: %s", reason,
             *reason != '\0' ? "; " : "", why);
    log_at(LL_WARN, "control", 0, "%s: %s %s", c->svcs[svc].name, what, forced);
    return NULL;
}

/* Reads the optional boolean "force" of <req> into <*force>. */
static json_t *
opt_force(json_t *req, bool *force)
{
    json_t *v = json_object_get(req, "force");

    *force = false;
    if (v == NULL)
        return NULL;
    if (!json_is_boolean(v))
        return adm_fail_reply("\"force\" must be a boolean, got %s", adm_type_name(v));
    *force = json_is_true(v);
    return NULL;
}

/* `status` with "fleet": the reply built so far, waiting for every
 * instance's row (admin/fleet_leader.h). */
struct fleet_status_wait {
    struct adm_wait *w;          /* owned */
    json_t *reply;               /* owned */
};

static void
on_fleet_status(void *arg, json_t *fleet, const char *err)
{
    struct fleet_status_wait *fw = arg;
    json_t *r = fw->reply;
    char *text;

    if (fleet != NULL) {
        json_object_set_new(r, "fleet", fleet);
    } else {
        json_decref(r);
        r = adm_fail_reply("status --fleet: the fleet's store: %s", err);
    }
    if (fw->w->done != NULL) {
        text = r != NULL ? json_dumps(r, REPLY_DUMP_FLAGS) : NULL;
        fw->w->done(fw->w->arg, text != NULL ? text : xstrdup("{\"ok\":false}"));
    }
    json_decref(r);
    free(fw->w);
    free(fw);
}

/* Makes <reply> wait for the fleet's rows. Returns what cmd_status returns:
 * json_null() when it waits, or a refusal (then <reply> is released). */
static json_t *
status_fleet(struct adm_control *c, json_t *reply)
{
    struct fleet_status_wait *fw;
    char err[512];

    if (c->leader == NULL) {
        json_decref(reply);
        return adm_fail_reply("\"fleet\": this instance has no fleet store "
                              "(store.postgres)");
    }
    if (c->waiter == NULL) {
        json_decref(reply);
        return adm_fail_reply("\"fleet\": the reply waits for the database: ask over the "
                              "admin socket (cutoverctl status --fleet)");
    }
    fw = xcalloc(1, sizeof(*fw));
    fw->w = xcalloc(1, sizeof(*fw->w));
    fw->w->done = c->waiter->done;
    fw->w->arg = c->waiter->arg;
    fw->reply = reply;
    if (adm_leader_fleet_status(c->leader, on_fleet_status, fw, err, sizeof(err)) != 0) {
        free(fw->w);
        free(fw);
        json_decref(reply);
        return adm_fail_reply("status --fleet: store unreachable: %s", err);
    }
    c->waiting = fw->w;
    return json_null();
}

static json_t *
cmd_status(struct adm_control *c, json_t *req, const char *actor)
{
    static const char *const keys[] = { "cmd", "service", "fleet", NULL };
    json_t *r, *fleet = json_object_get(req, "fleet");
    unsigned svc = 0;
    bool one = json_object_get(req, "service") != NULL;

    if ((r = adm_check_keys(req, "status", keys)) != NULL)
        return r;
    if (one && (r = adm_resolve_service(c, req, &svc)) != NULL)
        return r;
    if (fleet != NULL && !json_is_boolean(fleet))
        return adm_fail_reply("\"fleet\" must be a boolean, got %s", adm_type_name(fleet));
    /* --fleet waits for the database's rows: the instance's own part is
     * built at once, then completed (status_fleet) */
    if (json_is_true(fleet))
        return status_fleet(c, adm_status_reply(c, one, svc, true));
    return adm_status_reply(c, one, svc, false);
}

static json_t *
cmd_weight(struct adm_control *c, json_t *req, const char *actor)
{
    static const char *const keys[] = { "cmd", "service", "percent", "reason", "force", NULL };
    struct adm_change ch = { .state = ADM_ST_STEADY, .action = "weight", .reason = "",
                             .left = RT_NONE, .drain_s = -1 };
    char forced[ADM_REASON_MAX + 640] = "";
    bool force;
    json_t *r, *p;

    if ((r = adm_check_keys(req, "weight", keys)) != NULL)
        return r;
    if ((r = adm_resolve_service(c, req, &ch.svc)) != NULL)
        return r;
    if ((r = adm_req_reason(c, req, "weight", &ch.reason)) != NULL)
        return r;
    p = json_object_get(req, "percent");
    if (p == NULL)
        return adm_fail_reply("missing \"percent\"");
    if (!json_is_number(p))
        return adm_fail_reply("\"percent\" must be a number, got %s", adm_type_name(p));
    if (ctl_weight_from_double(json_number_value(p), &ch.weight_bp) != 0) {
        if (json_is_integer(p))
            return adm_fail_reply("percent must be 0..100 with at most two decimals, got %lld",
                                  (long long)json_integer_value(p));
        return adm_fail_reply("percent must be 0..100 with at most two decimals, got %.15g",
                              json_real_value(p));
    }
    if ((r = opt_force(req, &force)) != NULL ||
        (r = gate_refusal(c, ch.svc, ch.weight_bp, force, "weight", ch.reason, forced,
                          sizeof(forced))) != NULL)
        return r;
    ch.reason = forced;
    return adm_change_run(c, &ch, actor);
}

static json_t *
cmd_rollback(struct adm_control *c, json_t *req, const char *actor)
{
    static const char *const keys[] = { "cmd", "service", "reason", "drain_s", NULL };
    struct adm_change ch = { .weight_bp = 0, .state = ADM_ST_ROLLED_BACK,
                             .action = "rollback", .reason = "", .left = RT_NEW,
                             .drain_s = ADM_DRAIN_ROLLBACK };
    json_t *r, *v;
    uint64_t gen;

    if ((r = adm_check_keys(req, "rollback", keys)) != NULL)
        return r;
    if ((r = adm_resolve_service(c, req, &ch.svc)) != NULL)
        return r;
    if ((r = adm_req_reason(c, req, "rollback", &ch.reason)) != NULL)
        return r;
    if ((v = json_object_get(req, "drain_s")) != NULL) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) > 86400)
            return adm_fail_reply("\"drain_s\" must be an integer 0..86400 (seconds)");
        ch.drain_s = (int)json_integer_value(v);
    }
    gen = c->svcs[ch.svc].st.generation;
    r = adm_change_run(c, &ch, actor);
    if (c->svcs[ch.svc].st.generation != gen)  /* applied (even if not saved) */
        c->svcs[ch.svc].counters.rollbacks[ADM_RB_MANUAL]++;
    return r;
}

static json_t *
cmd_promote(struct adm_control *c, json_t *req, const char *actor)
{
    static const char *const keys[] = { "cmd", "service", "reason", "force", NULL };
    struct adm_change ch = { .weight_bp = RT_BP_MAX, .state = ADM_ST_PROMOTED,
                             .action = "promote", .reason = "", .left = RT_NONE,
                             .drain_s = -1 };
    char forced[ADM_REASON_MAX + 640] = "";
    bool force;
    json_t *r;

    if ((r = adm_check_keys(req, "promote", keys)) != NULL)
        return r;
    if ((r = adm_resolve_service(c, req, &ch.svc)) != NULL)
        return r;
    if ((r = adm_req_reason(c, req, "promote", &ch.reason)) != NULL)
        return r;
    if ((r = opt_force(req, &force)) != NULL ||
        (r = gate_refusal(c, ch.svc, ch.weight_bp, force, "promote", ch.reason, forced,
                          sizeof(forced))) != NULL)
        return r;
    ch.reason = forced;
    return adm_change_run(c, &ch, actor);
}

static json_t *
cmd_switch(struct adm_control *c, json_t *req, const char *actor)
{
    static const char *const keys[] = { "cmd", "service", "to", "drain_s", "force", "reason",
                                        NULL };
    struct adm_change ch = { .action = "switch", .reason = "", .drain_s = -1 };
    char forced[ADM_REASON_MAX + 640] = "";
    json_t *r, *v;
    const char *to;
    bool force = false;

    if ((r = adm_check_keys(req, "switch", keys)) != NULL)
        return r;
    if ((r = adm_resolve_service(c, req, &ch.svc)) != NULL)
        return r;
    v = json_object_get(req, "to");
    if (v == NULL)
        return adm_fail_reply("missing \"to\" (\"new\" or \"legacy\")");
    if (!json_is_string(v))
        return adm_fail_reply("\"to\" must be a string, got %s", adm_type_name(v));
    to = json_string_value(v);
    if (strcmp(to, "new") == 0) {
        ch.weight_bp = RT_BP_MAX;
        ch.state = ADM_ST_PROMOTED;
        ch.left = RT_LEGACY;
    } else if (strcmp(to, "legacy") == 0) {
        ch.weight_bp = 0;
        ch.state = ADM_ST_STEADY;
        ch.left = RT_NEW;
    } else {
        return adm_fail_reply("\"to\" must be \"new\" or \"legacy\", got \"%s\"", to);
    }
    if ((v = json_object_get(req, "drain_s")) != NULL) {
        if (!json_is_integer(v))
            return adm_fail_reply("\"drain_s\" must be an integer, got %s", adm_type_name(v));
        if (json_integer_value(v) < 0 || json_integer_value(v) > 2147483647)
            return adm_fail_reply("\"drain_s\" must be 0..2147483647 seconds, got %lld",
                                  (long long)json_integer_value(v));
        ch.drain_s = (int)json_integer_value(v);
    }
    if ((v = json_object_get(req, "force")) != NULL) {
        if (!json_is_boolean(v))
            return adm_fail_reply("\"force\" must be a boolean, got %s", adm_type_name(v));
        force = json_is_true(v);
    }
    if ((r = adm_req_reason(c, req, "switch", &ch.reason)) != NULL)
        return r;
    if (ch.left == RT_LEGACY && !force && c->ops.side_healthy != NULL
        && !c->ops.side_healthy(c->arg, ch.svc, RT_NEW))
        return adm_fail_reply("new has no healthy server; use --force");
    if ((r = gate_refusal(c, ch.svc, ch.weight_bp, force, "switch new", ch.reason, forced,
                          sizeof(forced))) != NULL)
        return r;
    ch.reason = forced;
    return adm_change_run(c, &ch, actor);
}

static json_t *
cmd_plan(struct adm_control *c, json_t *req, const char *actor)
{
    return adm_plan_command(c, req, actor);
}

static json_t *
cmd_audit(struct adm_control *c, json_t *req, const char *actor)
{
    static const char *const keys[] = { "cmd", "service", "n", NULL };
    json_t *r, *v, *entries;
    json_int_t n = AUDIT_N_DEFAULT;
    unsigned svc = 0;
    bool filter = json_object_get(req, "service") != NULL;
    char err[512];

    if ((r = adm_check_keys(req, "audit", keys)) != NULL)
        return r;
    if (filter && (r = adm_resolve_service(c, req, &svc)) != NULL)
        return r;
    if ((v = json_object_get(req, "n")) != NULL) {
        if (!json_is_integer(v))
            return adm_fail_reply("\"n\" must be an integer, got %s", adm_type_name(v));
        n = json_integer_value(v);
        if (n < 1 || n > (json_int_t)ADM_AUDIT_TAIL_MAX)
            return adm_fail_reply("\"n\" must be 1..%u, got %lld", ADM_AUDIT_TAIL_MAX,
                                  (long long)n);
    }
    /* the fleet's entries when its store is up (the reply waits) */
    if (c->fleet != NULL
        && (r = adm_fleet_audit_tail(c, filter ? c->svcs[svc].name : NULL, (unsigned)n))
           != NULL)
        return r;
    if (c->audit_file == NULL)
        return adm_fail_reply("the audit log is disabled (no audit file configured)");
    adm_writer_drain(c->writer);       /* the entries on their way are shown too */
    entries = adm_audit_tail(c->audit_file, (unsigned)n,
                             filter ? c->svcs[svc].name : NULL, err, sizeof(err));
    if (entries == NULL)
        return adm_fail_reply("audit: %s", err);
    return json_pack("{s:b, s:o}", "ok", 1, "entries", entries);
}

static int audit_unchanged(struct adm_control *c, int svc, const char *service,
                           const struct adm_caller *who, const char *action,
                           const char *reason);

/* `certs reload`: the data plane reads every certificate and key again,
 * of every service (a "service" is allowed and changes nothing); a failure
 * keeps the running ones. Audited either way (action
 * "certs_reload", service "*"). */
static json_t *
cmd_certs(struct adm_control *c, json_t *req, const char *actor)
{
    static const char *const keys[] = { "cmd", "service", "action", "reason", NULL };
    struct adm_caller who = { .actor = actor, .pid = -1, .level = ADM_LEVEL_ADMIN };
    json_t *r, *v;
    char msg[1024], reason[ADM_REASON_MAX + 1200];
    const char *why;
    int rc;

    if ((r = adm_check_keys(req, "certs", keys)) != NULL)
        return r;
    v = json_object_get(req, "action");
    if (v == NULL)
        return adm_fail_reply("missing \"action\" (\"reload\")");
    if (!json_is_string(v) || strcmp(json_string_value(v), "reload") != 0)
        return adm_fail_reply("\"action\" must be \"reload\"");
    if ((r = adm_req_reason(c, req, "certs reload", &why)) != NULL)
        return r;
    if (c->ops.certs_reload == NULL)
        return adm_fail_reply("this daemon has no TLS certificates to reload");
    rc = c->ops.certs_reload(c->arg, msg, sizeof(msg));
    /* the operator's reason first, then what happened */
    snprintf(reason, sizeof(reason), "%s%s%s%s", why, why[0] != '\0' ? "; " : "",
             rc == 0 ? "" : "failed: ", msg);
    if (rc == 0)
        log_at(LL_INFO, "control", 0, "certs reload by %s: %s", actor, msg);
    else
        log_at(LL_ERR, "control", 0, "certs reload by %s failed, the running certificates "
               "stay: %s", actor, msg);
    audit_unchanged(c, -1, "*", c->caller != NULL ? c->caller : &who, "certs_reload", reason);
    if (rc != 0)
        return adm_fail_reply("%s", msg);
    return json_pack("{s:b, s:s}", "ok", 1, "certs", msg);
}

/* `diffs [-n N]`: the differences shadow traffic kept (level read). */
static json_t *
cmd_diffs(struct adm_control *c, json_t *req, const char *actor)
{
    static const char *const keys[] = { "cmd", "service", "n", NULL };
    json_t *r, *v, *d;
    json_int_t n = AUDIT_N_DEFAULT;
    unsigned svc = 0;

    (void)actor;
    if ((r = adm_check_keys(req, "diffs", keys)) != NULL)
        return r;
    if ((r = adm_resolve_service(c, req, &svc)) != NULL)
        return r;
    if ((v = json_object_get(req, "n")) != NULL) {
        if (!json_is_integer(v))
            return adm_fail_reply("\"n\" must be an integer, got %s", adm_type_name(v));
        n = json_integer_value(v);
        if (n < 1 || n > 1000)
            return adm_fail_reply("\"n\" must be 1..1000, got %lld", (long long)n);
    }
    d = c->ops.diffs != NULL ? c->ops.diffs(c->arg, svc, (unsigned)n) : NULL;
    if (d == NULL)
        return adm_fail_reply("service %s has no \"shadow\" section: nothing is compared",
                              c->svcs[svc].name);
    return json_pack("{s:b, s:s, s:o}", "ok", 1, "service", c->svcs[svc].name, "diffs", d);
}

typedef json_t *cmd_fn(struct adm_control *c, json_t *req, const char *actor);

static const struct {
    const char *name;
    cmd_fn *fn;
} commands[] = {
    { "status",   cmd_status },
    { "weight",   cmd_weight },
    { "rollback", cmd_rollback },
    { "promote",  cmd_promote },
    { "switch",   cmd_switch },
    { "plan",     cmd_plan },
    { "audit",    cmd_audit },
    { "certs",    cmd_certs },
    { "server",   adm_cmd_server },
    { "diffs",    cmd_diffs },
};

bool
adm_control_is_command(const char *cmd)
{
    size_t i;

    for (i = 0; cmd != NULL && i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(cmd, commands[i].name) == 0)
            return true;
    }
    return false;
}

/* The level request <req> (command <cmd>, known) needs given the state of
 * its service; <what> gets a short description of the request for the
 * refusal ("weight 100", "plan start") and <*svc> the service when the
 * request names a valid one (else -1). A request whose fields are invalid
 * needs its command's lowest level: the command itself then refuses it. */
static enum adm_level
required_level(struct adm_control *c, json_t *req, const char *cmd, char *what,
               size_t wlen, int *svc)
{
    unsigned k = 0;
    json_t *r, *v;
    uint32_t bp;
    const struct adm_svc_state *st;
    char p0[16];

    *svc = -1;
    r = adm_resolve_service(c, req, &k);
    if (r == NULL)
        *svc = (int)k;
    json_decref(r);
    snprintf(what, wlen, "%s", cmd);
    if (strcmp(cmd, "status") == 0 || strcmp(cmd, "audit") == 0 || strcmp(cmd, "diffs") == 0)
        return ADM_LEVEL_READ;
    if (strcmp(cmd, "rollback") == 0)
        return ADM_LEVEL_OPERATE;
    if (strcmp(cmd, "plan") == 0) {
        v = json_object_get(req, "action");
        if (!json_is_string(v))
            return ADM_LEVEL_OPERATE;
        snprintf(what, wlen, "plan %.32s", json_string_value(v));
        if (strcmp(json_string_value(v), "start") == 0
            || strcmp(json_string_value(v), "resume") == 0)
            return ADM_LEVEL_ADMIN;
        return ADM_LEVEL_OPERATE;
    }
    if (strcmp(cmd, "weight") == 0) {
        v = json_object_get(req, "percent");
        if (!json_is_number(v) || ctl_weight_from_double(json_number_value(v), &bp) != 0
            || *svc < 0)
            return ADM_LEVEL_OPERATE;
        st = &c->svcs[*svc].st;
        snprintf(what, wlen, "weight %s", adm_pct(bp, p0, sizeof(p0)));
        if (bp >= RT_BP_MAX)
            return ADM_LEVEL_ADMIN;
        if (st->state == ADM_ST_ROLLED_BACK || st->state == ADM_ST_FROZEN) {
            snprintf(what, wlen, "weight %s while %s (it clears the latch)", p0,
                     adm_state_names[st->state]);
            return ADM_LEVEL_ADMIN;
        }
        return ADM_LEVEL_OPERATE;
    }
    return ADM_LEVEL_ADMIN;            /* promote, switch, anything added later */
}

/* Appends to the audit log an event that changed nothing: <action> by
 * <who> with <reason>, about <service> (recorded as given, "" when none)
 * with the weight and generation of service <svc> (0 when -1). Returns 0,
 * or -1 when the audit log is off or failed (logged). */
static int
audit_unchanged(struct adm_control *c, int svc, const char *service,
                const struct adm_caller *who, const char *action, const char *reason)
{
    struct adm_audit_entry ae;

    if (c->audit_file == NULL)
        return -1;
    ae = (struct adm_audit_entry){
        .service = service, .actor = who->actor,
        .action = action, .reason = reason, .pid = who->pid,
        .from_bp = svc >= 0 ? c->svcs[svc].st.weight_bp : 0,
        .to_bp = svc >= 0 ? c->svcs[svc].st.weight_bp : 0,
        .generation = svc >= 0 ? c->svcs[svc].st.generation : 0,
    };
    /* a command's: on the writer thread, its reply held until written */
    return adm_persist_event(c, &ae);
}

/* Audits a request refused for its level and returns the reply. */
static json_t *
refuse_level(struct adm_control *c, const struct adm_caller *who, int svc,
             const char *what, enum adm_level need)
{
    char reason[256];
    json_t *r;

    snprintf(reason, sizeof(reason), "%s needs level %s; %s has level %s", what,
             adm_level_names[need], who->actor, adm_level_names[who->level]);
    log_at(LL_WARN, "control", 0, "%s: refused: %s", svc >= 0 ? c->svcs[svc].name : "-",
           reason);
    audit_unchanged(c, svc, svc >= 0 ? c->svcs[svc].name : "", who, "refused", reason);
    r = adm_fail_reply("%s", reason);
    if (r != NULL)
        json_object_set_new(r, "required_level", json_string(adm_level_names[need]));
    return r;
}

json_t *
adm_control_exec_as(struct adm_control *c, json_t *req, const struct adm_caller *who)
{
    struct adm_caller anon = { .actor = "unknown", .pid = -1, .level = ADM_LEVEL_READ };
    enum adm_level need;
    json_t *v, *r;
    const char *cmd;
    char what[128];
    size_t i;
    int svc;

    if (who == NULL)
        who = &anon;
    if (who->actor == NULL) {
        anon.pid = who->pid;
        anon.level = who->level;
        who = &anon;
    }
    if (!json_is_object(req))
        return adm_fail_reply("a request must be a JSON object, got %s",
                              req != NULL ? adm_type_name(req) : "nothing");
    v = json_object_get(req, "cmd");
    if (v == NULL)
        return adm_fail_reply("missing \"cmd\"");
    if (!json_is_string(v))
        return adm_fail_reply("\"cmd\" must be a string, got %s", adm_type_name(v));
    cmd = json_string_value(v);
    for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(cmd, commands[i].name) != 0)
            continue;
        need = required_level(c, req, cmd, what, sizeof(what), &svc);
        c->caller = who;               /* the refusal's entry waits with its reply */
        if (who->level < need) {
            r = refuse_level(c, who, svc, what, need);
            c->caller = NULL;
            return r;
        }
        r = commands[i].fn(c, req, who->actor);
        c->caller = NULL;
        return r != NULL ? r : adm_fail_reply("internal error building the reply");
    }
    return adm_fail_reply("unknown command \"%s\" (one of: status, weight, rollback, "
                          "promote, switch, plan, audit, certs, server, diffs)", cmd);
}

json_t *
adm_control_exec(struct adm_control *c, json_t *req, const char *actor)
{
    struct adm_caller who = { .actor = actor != NULL ? actor : "unknown", .pid = -1,
                              .level = ADM_LEVEL_ADMIN };

    return adm_control_exec_as(c, req, &who);
}

/* A lowering's reply over the fleet's store that waits for two things: its
 * save on the writer thread (the engine's wait, change.c) and the
 * database's commit (adm_fleet_lowered_wait()). The requester holds
 * <outer>; the reply is the commit's (it carries "store"), unless the save
 * failed: then the save's ("applied but not saved"). */
struct both_wait {
    struct adm_wait *outer;      /* owned: the requester's */
    unsigned left;               /* parts still to come */
    char *failed;                /* owned: the save's reply when it is a failure */
    char *committed;             /* owned: the commit's reply */
};

static void
both_part(struct both_wait *b, char *reply, bool is_save)
{
    char *text;

    if (is_save) {
        json_t *o = json_loads(reply, 0, NULL);

        if (json_is_false(json_object_get(o, "ok")))
            b->failed = reply;
        else
            free(reply);
        json_decref(o);
    } else {
        b->committed = reply;
    }
    if (--b->left > 0)
        return;
    text = b->failed != NULL ? b->failed : b->committed;
    if (text == b->failed)
        free(b->committed);
    if (b->outer->done != NULL)
        b->outer->done(b->outer->arg, text);
    else
        free(text);
    free(b->outer);
    free(b);
}

static void
on_both_saved(void *arg, char *reply)
{
    both_part(arg, reply, true);
}

static void
on_both_committed(void *arg, char *reply)
{
    both_part(arg, reply, false);
}

/* The command in progress lowered a service over the fleet's store and its
 * reply waits for its save (<c->waiting>): it waits for the commit too.
 * Returns the requester's wait. */
static struct adm_wait *
wait_both(struct adm_control *c, json_t *r, const struct adm_wait_req *wr)
{
    struct both_wait *b = xcalloc(1, sizeof(*b));
    struct adm_wait_req commit = { .done = on_both_committed, .arg = b };
    char *text;

    b->outer = xcalloc(1, sizeof(*b->outer));
    b->outer->done = wr->done;
    b->outer->arg = wr->arg;
    b->left = 2;
    c->waiting->done = on_both_saved;  /* the engine's wait: not handed out yet */
    c->waiting->arg = b;
    c->waiting = NULL;
    c->waiter = &commit;
    r = adm_fleet_lowered_wait(c, json_incref(r));
    if (c->waiting == NULL) {
        /* answered now (the store is away: "queued") */
        text = r != NULL ? json_dumps(r, JSON_COMPACT | JSON_REAL_PRECISION(15)) : NULL;
        if (text == NULL)
            text = xstrdup("{\"ok\":false,\"error\":\"internal error building the reply\"}");
        json_decref(r);
        on_both_committed(b, text);
    }
    c->waiter = NULL;
    c->waiting = NULL;
    return b->outer;
}

/* A reply held until the event entries its command sent are written. */
struct event_reply {
    struct adm_wait *wait;       /* owned: the requester's */
    json_t *reply;               /* owned */
};

static void
on_events_written(void *arg, enum adm_wjob_result res, const char *err)
{
    struct event_reply *er = arg;
    char *text;

    (void)res;                         /* an entry that failed was logged */
    (void)err;
    if (er->wait->done != NULL) {
        text = json_dumps(er->reply, JSON_COMPACT | JSON_REAL_PRECISION(15));
        if (text == NULL)
            text = xstrdup("{\"ok\":false,\"error\":\"internal error building the reply\"}");
        er->wait->done(er->wait->arg, text);
    }
    json_decref(er->reply);
    free(er->wait);
    free(er);
}

json_t *
adm_control_exec_wait(struct adm_control *c, json_t *req, const struct adm_caller *who,
                      adm_wait_fn *done, void *arg, struct adm_wait **wait)
{
    struct adm_wait_req wr = { .done = done, .arg = arg };
    json_t *r;

    *wait = NULL;
    c->event_sent = false;
    c->waiter = done != NULL ? &wr : NULL;
    c->waiting = NULL;
    c->lowered = false;
    r = adm_control_exec_as(c, req, who);
    /* a lowering is applied here already; its reply waits for the fleet's
     * commit, so that every instance can see it when the command returns */
    if (c->lowered && c->waiting == NULL)
        r = adm_fleet_lowered_wait(c, r);
    else if (c->lowered && c->waiting != NULL && done != NULL && json_is_object(r)) {
        /* its save is on the writer thread: the reply waits for both */
        *wait = wait_both(c, r, &wr);
        json_decref(r);
        c->lowered = false;
        return NULL;
    }
    c->lowered = false;
    if (c->event_sent && c->waiting == NULL && done != NULL && r != NULL) {
        /* its audit entry is on the writer thread: the reply waits for it */
        struct event_reply *er = xcalloc(1, sizeof(*er));

        er->wait = xcalloc(1, sizeof(*er->wait));
        er->wait->done = done;
        er->wait->arg = arg;
        er->reply = r;
        r = NULL;
        adm_persist_after(c, on_events_written, er);
        c->waiting = er->wait;
    }
    c->event_sent = false;
    c->waiter = NULL;
    if (c->waiting != NULL) {
        json_decref(r);
        *wait = c->waiting;
        c->waiting = NULL;
        return NULL;
    }
    return r;
}

void
adm_control_wait_cancel(struct adm_wait *w)
{
    if (w != NULL)
        w->done = NULL;
}

char *
adm_control_exec_line_wait(struct adm_control *c, const char *line, size_t len,
                           const struct adm_caller *who, adm_wait_fn *done, void *arg,
                           struct adm_wait **wait)
{
    json_t *req, *reply;
    json_error_t je;
    char *out;

    *wait = NULL;
    req = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
    if (req == NULL)
        reply = adm_fail_reply("bad JSON: %s at column %d", je.text, je.column);
    else
        reply = adm_control_exec_wait(c, req, who, done, arg, wait);
    json_decref(req);
    if (reply == NULL && *wait != NULL)
        return NULL;
    out = reply != NULL ? json_dumps(reply, REPLY_DUMP_FLAGS) : NULL;
    json_decref(reply);
    if (out == NULL)
        out = xstrdup("{\"ok\":false,\"error\":\"internal error building the reply\"}");
    return out;
}

char *
adm_control_exec_line_as(struct adm_control *c, const char *line, size_t len,
                         const struct adm_caller *who)
{
    struct adm_wait *w;

    return adm_control_exec_line_wait(c, line, len, who, NULL, NULL, &w);
}

char *
adm_control_exec_line(struct adm_control *c, const char *line, size_t len,
                      const char *actor)
{
    struct adm_caller who = { .actor = actor != NULL ? actor : "unknown", .pid = -1,
                              .level = ADM_LEVEL_ADMIN };

    return adm_control_exec_line_as(c, line, len, &who);
}

int
adm_control_audit_event(struct adm_control *c, const char *service,
                        const struct adm_caller *who, const char *action,
                        const char *reason)
{
    return audit_unchanged(c, service != NULL ? adm_svc_find(c, service) : -1,
                           service != NULL ? service : "", who, action, reason);
}
