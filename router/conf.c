/*
 * router/conf: parses the routing keys of one service ("weight", "sticky",
 * "override") with lib/conf.h's readers and conf_fail(), the one way every
 * config parser reports an error. The only router file that includes
 * jansson; it stays libc-only otherwise (no logging, no allocation), so the
 * router keeps its layer rules.
 *
 * Strict by design: inside "sticky" and "override" an unknown key is an
 * error, and a percentage with more than two decimals is refused rather than
 * rounded, because an operator who typed 10.005 meant something we cannot
 * represent in basis points.
 *
 * rt_conf_equal() compares two parsed sets of keys, field by field, for a
 * reload that must tell a changed service from an unchanged one.
 */
#include "router/conf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

/* True when <s> is an HTTP token (RFC 9110 tchar) of 1..RT_NAME_MAX-1 bytes:
 * usable as a header name and as a cookie name. */
static bool
is_token(const char *s)
{
    size_t n = strlen(s), i;

    if (n == 0 || n >= RT_NAME_MAX)
        return false;
    for (i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];

        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
            (ch >= '0' && ch <= '9') || strchr("!#$%&'*+-.^_`|~", ch) != NULL)
            continue;
        return false;
    }
    return true;
}

static int
parse_sticky(json_t *j, const char *name, const char *prefix,
             struct rt_conf *c, struct conf_err *err)
{
    static const char *const keys[] = { "by", "name", "salt", NULL };
    const char *by, *sname, *salt;
    char p[sizeof(err->path)];

    if (!json_is_object(j))
        return conf_fail(err, prefix, "must be an object");
    if (conf_check_keys(j, prefix, keys, err) != 0)
        return -1;
    if (conf_opt_string(j, "by", prefix, &by, err) != 0 ||
        conf_opt_string(j, "name", prefix, &sname, err) != 0 ||
        conf_opt_string(j, "salt", prefix, &salt, err) != 0)
        return -1;
    if (by == NULL)
        return conf_fail(err, conf_join(p, sizeof(p), prefix, "by"), "is required");
    if (strcmp(by, "cookie") == 0)
        c->sticky_by = RT_STICKY_COOKIE;
    else if (strcmp(by, "header") == 0)
        c->sticky_by = RT_STICKY_HEADER;
    else if (strcmp(by, "client_ip") == 0)
        c->sticky_by = RT_STICKY_CLIENT_IP;
    else
        return conf_fail(err, conf_join(p, sizeof(p), prefix, "by"),
                         "must be \"cookie\", \"header\" or \"client_ip\"");

    if (c->sticky_by == RT_STICKY_CLIENT_IP) {
        if (sname != NULL)
            return conf_fail(err, conf_join(p, sizeof(p), prefix, "name"),
                             "not allowed with \"by\": \"client_ip\"");
    } else {
        if (sname == NULL)
            return conf_fail(err, conf_join(p, sizeof(p), prefix, "name"),
                             "is required with \"by\": \"%s\"", by);
        if (!is_token(sname))
            return conf_fail(err, conf_join(p, sizeof(p), prefix, "name"),
                             "must be an HTTP token of 1..%u characters",
                             RT_NAME_MAX - 1);
        memcpy(c->sticky_name, sname, strlen(sname) + 1);
    }

    if (salt != NULL && salt[0] == '\0')
        return conf_fail(err, conf_join(p, sizeof(p), prefix, "salt"),
                         "must not be empty");
    if (salt == NULL)
        salt = name;
    c->seed = rt_seed_from_salt(salt, strlen(salt));
    return 0;
}

static int
parse_override(json_t *j, const char *prefix, struct rt_conf *c,
               struct conf_err *err)
{
    static const char *const keys[] = { "header", NULL };
    const char *hdr;
    char p[sizeof(err->path)];

    if (!json_is_object(j))
        return conf_fail(err, prefix, "must be an object");
    if (conf_check_keys(j, prefix, keys, err) != 0 ||
        conf_opt_string(j, "header", prefix, &hdr, err) != 0)
        return -1;
    if (hdr == NULL)
        return conf_fail(err, conf_join(p, sizeof(p), prefix, "header"), "is required");
    if (!is_token(hdr))
        return conf_fail(err, conf_join(p, sizeof(p), prefix, "header"),
                         "must be an HTTP token of 1..%u characters",
                         RT_NAME_MAX - 1);
    c->has_override = true;
    memcpy(c->override_header, hdr, strlen(hdr) + 1);
    return 0;
}

int
rt_conf_parse(struct json_t *svc, const char *name, const char *prefix,
              struct rt_conf *out, struct conf_err *err)
{
    struct rt_conf c;
    json_t *v;
    char p[sizeof(err->path)];

    memset(&c, 0, sizeof(c));
    c.sticky_by = RT_STICKY_NONE;
    c.seed = rt_seed_from_salt(name, strlen(name));

    if ((v = json_object_get(svc, "weight")) != NULL &&
        conf_percent_bp(v, conf_join(p, sizeof(p), prefix, "weight"), true, &c.weight_bp,
                        err) != 0)
        return -1;
    if ((v = json_object_get(svc, "sticky")) != NULL &&
        parse_sticky(v, name, conf_join(p, sizeof(p), prefix, "sticky"), &c, err) != 0)
        return -1;
    if ((v = json_object_get(svc, "override")) != NULL &&
        parse_override(v, conf_join(p, sizeof(p), prefix, "override"), &c, err) != 0)
        return -1;
    *out = c;
    return 0;
}

bool
rt_conf_equal(const struct rt_conf *a, const struct rt_conf *b)
{
    return a->weight_bp == b->weight_bp && a->sticky_by == b->sticky_by &&
           strncmp(a->sticky_name, b->sticky_name, sizeof(a->sticky_name)) == 0 &&
           a->seed == b->seed && a->has_override == b->has_override &&
           strncmp(a->override_header, b->override_header, sizeof(a->override_header)) == 0;
}
