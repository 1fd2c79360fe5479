/*
 * request: replies, request checks and lookups shared by the pieces of the
 * control plane (see request.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "admin/ctl_proto.h"
#include "admin/request.h"
#include "lib/conf.h"
#include "lib/xmalloc.h"

/* ---- replies ---------------------------------------------------------- */

json_t *
adm_fail_reply(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return json_pack("{s:b, s:s}", "ok", 0, "error", msg);
}

const char *
adm_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:  return "an object";
    case JSON_ARRAY:   return "an array";
    case JSON_STRING:  return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL:    return "a number";
    case JSON_TRUE:
    case JSON_FALSE:   return "a boolean";
    case JSON_NULL:    return "null";
    }
    return "unknown";
}

const char *
adm_pct(uint32_t bp, char *buf, size_t len)
{
    if (bp % 100 == 0)
        snprintf(buf, len, "%u", bp / 100);
    else if (bp % 10 == 0)
        snprintf(buf, len, "%u.%u", bp / 100, (bp % 100) / 10);
    else
        snprintf(buf, len, "%u.%02u", bp / 100, bp % 100);
    return buf;
}

/* ---- lookups ---------------------------------------------------------- */

int
adm_svc_find(const struct adm_control *c, const char *name)
{
    unsigned i;

    for (i = 0; i < c->n; i++) {
        if (strcmp(c->svcs[i].name, name) == 0)
            return (int)i;
    }
    return -1;
}

/* ---- request checks --------------------------------------------------- */

/* conf_check_keys() reports the first unknown key; it is asked again on a
 * copy without it until it finds no more, or the list is full and more than
 * one is known (the reply says "keys"). A key too long for a conf_err path
 * is listed cut and ends the list. */
json_t *
adm_check_keys(json_t *req, const char *cmd, const char *const *allowed)
{
    struct conf_err err;
    char list[512];
    size_t used = 0;
    unsigned nbad = 0;
    json_t *rest;
    int w;

    if (conf_check_keys(req, "", allowed, &err) == 0)
        return NULL;
    rest = json_copy(req);
    list[0] = '\0';
    do {
        if (used < sizeof(list)) {
            w = snprintf(list + used, sizeof(list) - used, "%s\"%s\"",
                         nbad > 0 ? ", " : "", err.path);
            used += w > 0 ? (size_t)w : 0;
        }
        nbad++;
        if (rest == NULL || json_object_del(rest, err.path) != 0)
            break;
    } while ((used < sizeof(list) || nbad < 2)
             && conf_check_keys(rest, "", allowed, &err) != 0);
    json_decref(rest);
    return adm_fail_reply("unknown key%s in \"%s\" request: %s", nbad > 1 ? "s" : "",
                          cmd, list);
}

/* The service names as "a, b" (new string). */
static char *
service_list(const struct adm_control *c)
{
    size_t len = 1;
    unsigned i;
    char *s;

    for (i = 0; i < c->n; i++)
        len += strlen(c->svcs[i].name) + 2;
    s = xmalloc(len);
    s[0] = '\0';
    for (i = 0; i < c->n; i++) {
        if (i > 0)
            strcat(s, ", ");
        strcat(s, c->svcs[i].name);
    }
    return s;
}

json_t *
adm_resolve_service(const struct adm_control *c, json_t *req, unsigned *svc)
{
    json_t *v = json_object_get(req, "service"), *r;
    char *names;
    int k;

    if (v == NULL) {
        if (c->n == 1) {
            *svc = 0;
            return NULL;
        }
        if (c->n == 0)
            return adm_fail_reply("no service is configured");
        names = service_list(c);
        r = adm_fail_reply("service required (one of: %s)", names);
        free(names);
        return r;
    }
    if (!json_is_string(v))
        return adm_fail_reply("\"service\" must be a string, got %s", adm_type_name(v));
    k = adm_svc_find(c, json_string_value(v));
    if (k < 0) {
        names = service_list(c);
        r = adm_fail_reply("unknown service \"%s\" (one of: %s)", json_string_value(v), names);
        free(names);
        return r;
    }
    *svc = (unsigned)k;
    return NULL;
}

json_t *
adm_req_reason(const struct adm_control *c, json_t *req, const char *cmd, const char **reason)
{
    json_t *v = json_object_get(req, "reason");
    size_t bad;

    *reason = "";
    if (v == NULL || (json_is_string(v) && json_string_length(v) == 0)) {
        if (c->require_reason)
            return adm_fail_reply("%s: a reason is required (admin.require_reason): say why "
                                  "with --reason TEXT (\"reason\" in the request)", cmd);
        return NULL;
    }
    if (!json_is_string(v))
        return adm_fail_reply("\"reason\" must be a string, got %s", adm_type_name(v));
    if (json_string_length(v) > ADM_REASON_MAX)
        return adm_fail_reply("\"reason\" is too long (%zu bytes, at most %d)",
                              json_string_length(v), ADM_REASON_MAX);
    /* one line of printable text (admin/ctl_proto.h): a reason is shown to
     * operators, in the audit and the logs, and must never forge a line or
     * reach their terminals as a control sequence */
    if (!ctl_text_ok(json_string_value(v), json_string_length(v), &bad))
        return adm_fail_reply("\"reason\" must be one line of printable text: byte %zu "
                              "is a control character, a line separator or a "
                              "bidirectional control", bad);
    *reason = json_string_value(v);
    return NULL;
}
