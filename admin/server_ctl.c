/*
 * server_ctl: see server_ctl.h. drain: out of rotation, what is in flight
 * finishes; disable: the same, and its health checks pause; enable: back
 * in rotation (when its checks say it is up). Level admin (the default of
 * admin/commands.c for commands that are not listed lower).
 */
#include <stdio.h>
#include <string.h>

#include "admin/audit.h"
#include "admin/ctl_proto.h"
#include "admin/persist.h"
#include "admin/request.h"
#include "admin/server_ctl.h"
#include "lib/log.h"

#define SERVER_REASON_MAX 1024

static const struct {
    const char *action, *state;
} actions[] = {
    { "drain", "drain" }, { "disable", "disabled" }, { "enable", "ready" },
};

json_t *
adm_cmd_server(struct adm_control *c, json_t *req, const char *actor)
{
    static const char *const keys[] = {
        "cmd", "service", "side", "server", "action", "reason", NULL
    };
    const char *action, *addr, *reason = "";
    char from[32] = "", msg[512], act[32];
    struct adm_audit_entry ae;
    enum rt_side side;
    unsigned svc;
    size_t k, bad;
    json_t *r, *v;

    if ((r = adm_check_keys(req, "server", keys)) != NULL)
        return r;
    if ((r = adm_resolve_service(c, req, &svc)) != NULL)
        return r;
    v = json_object_get(req, "action");
    action = json_string_value(v);
    for (k = 0; action != NULL && k < sizeof(actions) / sizeof(actions[0]); k++)
        if (strcmp(action, actions[k].action) == 0)
            break;
    if (action == NULL || k == sizeof(actions) / sizeof(actions[0]))
        return adm_fail_reply("\"action\" must be \"drain\", \"disable\" or \"enable\"");
    v = json_object_get(req, "side");
    if (v == NULL || !json_is_string(v)
        || (strcmp(json_string_value(v), "legacy") != 0
            && strcmp(json_string_value(v), "new") != 0))
        return adm_fail_reply("\"side\" must be \"legacy\" or \"new\"");
    side = strcmp(json_string_value(v), "new") == 0 ? RT_NEW : RT_LEGACY;
    v = json_object_get(req, "server");
    if (v == NULL || !json_is_string(v) || json_string_length(v) == 0
        || json_string_length(v) > 128)
        return adm_fail_reply("\"server\" must be the server's address as configured "
                              "(\"127.0.0.1:9002\")");
    addr = json_string_value(v);
    if ((v = json_object_get(req, "reason")) != NULL) {
        if (!json_is_string(v))
            return adm_fail_reply("\"reason\" must be a string, got %s", adm_type_name(v));
        if (json_string_length(v) > SERVER_REASON_MAX)
            return adm_fail_reply("\"reason\" is too long (%zu bytes, at most %d)",
                                  json_string_length(v), SERVER_REASON_MAX);
        if (!ctl_text_ok(json_string_value(v), json_string_length(v), &bad))
            return adm_fail_reply("\"reason\" must be one line of printable text: byte %zu "
                                  "is a control character, a line separator or a "
                                  "bidirectional control", bad);
        reason = json_string_value(v);
    }
    if (c->ops.server_admin == NULL)
        return adm_fail_reply("this daemon cannot change a server's state");
    if (c->ops.server_admin(c->arg, svc, side, addr, actions[k].state, from, sizeof(from),
                            msg, sizeof(msg)) != 0)
        return adm_fail_reply("%s", msg);
    log_at(LL_INFO, "control", 0, "%s: %s by %s%s%s", c->svcs[svc].name, msg, actor,
           reason[0] != '\0' ? ": " : "", reason);
    if (c->audit_file != NULL) {
        json_t *fig = json_pack("{s:s, s:s}", "side", rt_side_names[side], "server", addr);

        snprintf(act, sizeof(act), "server_%s", actions[k].action);
        ae = (struct adm_audit_entry){
            .service = c->svcs[svc].name, .actor = actor, .action = act,
            .from_bp = c->svcs[svc].st.weight_bp, .to_bp = c->svcs[svc].st.weight_bp,
            .from_text = from, .to_text = actions[k].state, .reason = reason,
            .generation = c->svcs[svc].st.generation, .figures = fig,
            .pid = c->caller != NULL ? c->caller->pid : 0,
        };
        /* on the writer thread, the reply held until written */
        adm_persist_event(c, &ae);
        json_decref(fig);
    }
    return json_pack("{s:b, s:s, s:s, s:s, s:s, s:s}", "ok", 1, "side", rt_side_names[side],
                     "server", addr, "from", from, "admin", actions[k].state, "message", msg);
}
