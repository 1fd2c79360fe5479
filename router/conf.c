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
 *
 * "override.allow_from" defaults to loopback only (127.0.0.0/8 and ::1):
 * an override header is a way onto the unreleased side, so nobody outside
 * the host has it unless the operator says so. "override.secret_file" is
 * checked for its type here; the caller reads the file (the router does no
 * I/O) and hands its text to rt_conf_set_secret().
 */
#include "router/conf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "lib/cidr.h"

/* RT_SECRET_MIN..RT_SECRET_MAX as text, for a message that is static */
#define RT_SECRET_RANGE_TEXT "16 to 128"
_Static_assert(RT_SECRET_MIN == 16 && RT_SECRET_MAX == 128, "RT_SECRET_RANGE_TEXT");

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

/* Fills c->allow_from from the array <j> at <path>. */
static int
parse_allow_from(json_t *j, const char *path, struct rt_conf *c, struct conf_err *err)
{
    char p[sizeof(err->path)], hint[CIDR_TEXT_MAX];
    const char *why;
    json_t *v;
    size_t i;

    if (!json_is_array(j))
        return conf_fail(err, path, "must be an array of IPv4 or IPv6 ranges "
                         "(\"10.0.0.0/8\", \"::1\")");
    if (json_array_size(j) > RT_ALLOW_MAX)
        return conf_fail(err, path, "has %zu ranges, at most %u", json_array_size(j),
                         RT_ALLOW_MAX);
    json_array_foreach(j, i, v) {
        conf_join_index(p, sizeof(p), path, i);
        if (!json_is_string(v))
            return conf_fail(err, p, "must be a string");
        if (cidr_parse(json_string_value(v), &c->allow_from[i], &why, hint,
                       sizeof(hint)) != 0) {
            if (hint[0] != '\0')
                return conf_fail(err, p, "\"%.64s\" %s: did you mean %s?",
                                 json_string_value(v), why, hint);
            return conf_fail(err, p, "\"%.64s\" %s", json_string_value(v), why);
        }
    }
    c->nallow = (unsigned)json_array_size(j);
    return 0;
}

static int
parse_override(json_t *j, const char *prefix, struct rt_conf *c,
               struct conf_err *err)
{
    static const char *const keys[] = { "header", "allow_from", "secret_file", NULL };
    static const char *const loopback[] = { "127.0.0.0/8", "::1/128" };
    const char *hdr, *secret_file, *why;
    json_t *allow;
    char p[sizeof(err->path)];
    unsigned i;

    if (!json_is_object(j))
        return conf_fail(err, prefix, "must be an object");
    if (conf_check_keys(j, prefix, keys, err) != 0 ||
        conf_opt_string(j, "header", prefix, &hdr, err) != 0 ||
        conf_opt_nonempty(j, "secret_file", prefix, &secret_file, err) != 0)
        return -1;
    if (hdr == NULL)
        return conf_fail(err, conf_join(p, sizeof(p), prefix, "header"), "is required");
    if (!is_token(hdr))
        return conf_fail(err, conf_join(p, sizeof(p), prefix, "header"),
                         "must be an HTTP token of 1..%u characters",
                         RT_NAME_MAX - 1);
    c->has_override = true;
    memcpy(c->override_header, hdr, strlen(hdr) + 1);

    /* the file itself is read by the caller (router/ does no I/O), which
     * hands its text to rt_conf_set_secret() */
    if ((allow = json_object_get(j, "allow_from")) == NULL) {
        for (i = 0; i < sizeof(loopback) / sizeof(loopback[0]); i++)
            if (cidr_parse(loopback[i], &c->allow_from[i], &why, NULL, 0) != 0)
                return conf_fail(err, prefix, "internal: %s %s", loopback[i], why);
        c->nallow = i;
    } else if (parse_allow_from(allow, conf_join(p, sizeof(p), prefix, "allow_from"), c,
                                err) != 0) {
        return -1;
    }
    if (c->nallow == 0 && secret_file == NULL)
        return conf_fail(err, conf_join(p, sizeof(p), prefix, "allow_from"),
                         "is empty and there is no secret_file: the override could "
                         "never be honoured (remove \"override\" to have none)");
    return 0;
}

int
rt_conf_set_secret(struct rt_conf *c, const char *text, size_t len, const char **why)
{
    size_t i;

    /* one line: its end of line is not part of it */
    if (len > 0 && text[len - 1] == '\n')
        len--;
    if (len > 0 && text[len - 1] == '\r')
        len--;
    if (len == 0) {
        *why = "is empty";
        return -1;
    }
    if (len < RT_SECRET_MIN || len > RT_SECRET_MAX) {
        *why = "must hold one line of " RT_SECRET_RANGE_TEXT " characters";
        return -1;
    }
    for (i = 0; i < len; i++) {
        char ch = text[i];

        if (ch <= ' ' || ch >= 0x7f || ch == ';' || ch == ',' || ch == '"' || ch == '\\') {
            *why = "must hold one line of printable characters without spaces, "
                   "';', ',', '\"' or '\\'";
            return -1;
        }
    }
    memcpy(c->secret, text, len);
    c->secret_len = len;
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
    unsigned i;

    if (a->nallow != b->nallow || a->nallow > RT_ALLOW_MAX)
        return false;
    for (i = 0; i < a->nallow; i++)
        if (!cidr_equal(&a->allow_from[i], &b->allow_from[i]))
            return false;
    return a->weight_bp == b->weight_bp && a->sticky_by == b->sticky_by &&
           strncmp(a->sticky_name, b->sticky_name, sizeof(a->sticky_name)) == 0 &&
           a->seed == b->seed && a->has_override == b->has_override &&
           strncmp(a->override_header, b->override_header, sizeof(a->override_header)) == 0 &&
           a->secret_len == b->secret_len && a->secret_len <= RT_SECRET_MAX &&
           memcmp(a->secret, b->secret, a->secret_len) == 0;
}
