/*
 * shield_conf: reads and compares the "shield" section of a service (see
 * proxy/shield_conf.h; what the shield does is proxy/shield.c's).
 */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "lib/conf.h"
#include "lib/log.h"
#include "proxy/shield_conf.h"

const char *const px_shield_reason_names[PX_SH__COUNT] = {
    [PX_SH_CONNECT] = "connect",
    [PX_SH_RESET] = "reset",
    [PX_SH_TIMEOUT] = "timeout",
    [PX_SH_5XX] = "5xx",
};

/* RFC 9110 9.2.1: the safe methods (a replay of those changes nothing). */
static bool
method_safe(const char *m)
{
    return strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0 || strcmp(m, "OPTIONS") == 0 ||
           strcmp(m, "TRACE") == 0;
}

/* An RFC 9110 token of upper-case letters, as methods are written. */
static bool
method_name(const char *m)
{
    size_t i, n = strlen(m);

    if (n == 0 || n >= PX_SHIELD_METHOD_LEN)
        return false;
    for (i = 0; i < n; i++)
        if (!((m[i] >= 'A' && m[i] <= 'Z') || m[i] == '-' || m[i] == '_'))
            return false;
    return true;
}

static int
parse_methods(json_t *a, const char *path, const char *file, struct px_shield_conf *c,
              struct conf_err *err)
{
    char p[sizeof(err->path)];
    size_t i, k;
    json_t *v;

    if (!json_is_array(a) || json_array_size(a) > PX_SHIELD_METHODS_MAX)
        return conf_fail(err, path, "must be a list of at most %d methods",
                         PX_SHIELD_METHODS_MAX);
    c->nmethods = 0;
    c->unsafe = false;
    json_array_foreach(a, i, v) {
        const char *m = json_string_value(v);

        conf_join_index(p, sizeof(p), path, i);
        if (m == NULL || !method_name(m))
            return conf_fail(err, p, "must be a method name in capitals (\"GET\")");
        for (k = 0; k < c->nmethods; k++)
            if (strcmp(c->methods[k], m) == 0)
                return conf_fail(err, p, "\"%s\" is listed twice", m);
        snprintf(c->methods[c->nmethods++], PX_SHIELD_METHOD_LEN, "%s", m);
        if (!method_safe(m)) {
            c->unsafe = true;
            log_at(LL_WARN, "conf", 0, "%s: %s: %s is not a safe method: a request of it "
                   "is replayed on legacy only when it carries an Idempotency-Key field, "
                   "and the backends must honour that key", file, p, m);
        }
    }
    return 0;
}

static int
parse_on(json_t *a, const char *path, struct px_shield_conf *c, struct conf_err *err)
{
    char p[sizeof(err->path)];
    size_t i;
    unsigned k;
    json_t *v;

    if (!json_is_array(a))
        return conf_fail(err, path, "must be a list of \"connect\", \"reset\", "
                         "\"timeout\", \"5xx\"");
    c->on = 0;
    json_array_foreach(a, i, v) {
        const char *s = json_string_value(v);

        conf_join_index(p, sizeof(p), path, i);
        for (k = 0; k < PX_SH__COUNT; k++)
            if (s != NULL && strcmp(s, px_shield_reason_names[k]) == 0)
                break;
        if (k == PX_SH__COUNT)
            return conf_fail(err, p, "must be \"connect\", \"reset\", \"timeout\" or \"5xx\"");
        if (c->on & (1u << k))
            return conf_fail(err, p, "\"%s\" is listed twice", s);
        c->on |= 1u << k;
    }
    return 0;
}

static int
parse_statuses(json_t *a, const char *path, struct px_shield_conf *c, struct conf_err *err)
{
    char p[sizeof(err->path)];
    long long s;
    size_t i;
    json_t *v;

    if (!json_is_array(a))
        return conf_fail(err, path, "must be a list of statuses 500..599");
    c->statuses[0] = c->statuses[1] = 0;
    json_array_foreach(a, i, v) {
        conf_join_index(p, sizeof(p), path, i);
        if (conf_int(v, p, 500, 599, &s, err) != 0)
            return -1;
        if (px_shield_status_listed(c, (int)s))
            return conf_fail(err, p, "%lld is listed twice", s);
        c->statuses[(s - 500) / 64] |= 1ull << ((s - 500) % 64);
    }
    return 0;
}

int
px_shield_conf_parse(json_t *j, const char *path, const char *file, bool http,
                     struct px_shield_conf *out, struct conf_err *err)
{
    static const char *const keys[] = {
        "enabled", "methods", "on", "statuses", "max_body_bytes", "budget_ratio",
        "budget_min_per_s", NULL
    };
    struct px_shield_conf c = {
        .enabled = http, .nmethods = 3, .methods = { "GET", "HEAD", "OPTIONS" },
        .on = (1u << PX_SH__COUNT) - 1,
        .statuses = { 1ull << 0 | 1ull << 2 | 1ull << 3 | 1ull << 4, 0 },
        .max_body_bytes = 65536, .budget_ratio = 0.2, .budget_min_per_s = 10,
    };
    char p[sizeof(err->path)];
    json_t *v;

    if (j == NULL) {
        *out = c;
        return 0;
    }
    if (!http)
        return conf_fail(err, path, "only valid in http mode");
    if (!json_is_object(j))
        return conf_fail(err, path, "must be an object");
    if (conf_check_keys(j, path, keys, err) != 0)
        return -1;
    if ((v = json_object_get(j, "enabled")) != NULL) {
        if (!json_is_boolean(v))
            return conf_fail(err, conf_join(p, sizeof(p), path, "enabled"),
                             "must be true or false");
        c.enabled = json_is_true(v);
    }
    if (((v = json_object_get(j, "methods")) != NULL &&
         parse_methods(v, conf_join(p, sizeof(p), path, "methods"), file, &c, err) != 0) ||
        ((v = json_object_get(j, "on")) != NULL &&
         parse_on(v, conf_join(p, sizeof(p), path, "on"), &c, err) != 0) ||
        ((v = json_object_get(j, "statuses")) != NULL &&
         parse_statuses(v, conf_join(p, sizeof(p), path, "statuses"), &c, err) != 0) ||
        conf_opt_uint(j, "max_body_bytes", path, 0, 16777216, &c.max_body_bytes, err) != 0 ||
        conf_opt_double(j, "budget_ratio", path, 0, 1, &c.budget_ratio, err) != 0 ||
        conf_opt_uint(j, "budget_min_per_s", path, 0, 100000, &c.budget_min_per_s, err) != 0)
        return -1;
    *out = c;
    return 0;
}

bool
px_shield_conf_equal(const struct px_shield_conf *a, const struct px_shield_conf *b)
{
    unsigned k;

    if (a->enabled != b->enabled || a->nmethods != b->nmethods || a->on != b->on ||
        a->statuses[0] != b->statuses[0] || a->statuses[1] != b->statuses[1] ||
        a->max_body_bytes != b->max_body_bytes || a->budget_ratio != b->budget_ratio ||
        a->budget_min_per_s != b->budget_min_per_s)
        return false;
    for (k = 0; k < a->nmethods; k++)
        if (strcmp(a->methods[k], b->methods[k]) != 0)
            return false;
    return true;
}
