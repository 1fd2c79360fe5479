/*
 * shadow_conf: parses and compares the "shadow" section of a service (see
 * shadow_conf.h). Every key is optional; an unknown key is an error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "lib/conf.h"
#include "lib/xmalloc.h"
#include "proxy/shadow_conf.h"

static bool
safe_method(const char *m)
{
    return strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0 || strcmp(m, "OPTIONS") == 0 ||
           strcmp(m, "TRACE") == 0;
}

static bool
token(const char *s, size_t max)
{
    size_t n = strlen(s), i;

    if (n == 0 || n >= max)
        return false;
    for (i = 0; i < n; i++)
        if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-' ||
              s[i] == '_'))
            return false;
    return true;
}

/* A JSON array of strings at <path> into <out>[<*n>], each checked by
 * <check> (NULL when valid, else why not). */
static int
strings(json_t *a, const char *path, unsigned max, size_t width, char *out, unsigned *n,
        const char *(*check)(const char *s, char *buf, size_t len), struct conf_err *err)
{
    char p[sizeof(err->path)], buf[128];
    const char *why;
    json_t *v;
    size_t i;

    if (!json_is_array(a))
        return conf_fail(err, path, "must be an array of strings");
    if (json_array_size(a) > max)
        return conf_fail(err, path, "must hold at most %u entries", max);
    *n = 0;
    json_array_foreach(a, i, v) {
        conf_join_index(p, sizeof(p), path, i);
        if (!json_is_string(v))
            return conf_fail(err, p, "must be a string");
        if ((why = check(json_string_value(v), buf, sizeof(buf))) != NULL)
            return conf_fail(err, p, "%s", why);
        snprintf(out + width * (*n)++, width, "%s", buf);
    }
    return 0;
}

static const char *
check_method(const char *s, char *buf, size_t len)
{
    if (!token(s, 16))
        return "must be an HTTP method in capitals (1..15 of A-Z 0-9 - _)";
    snprintf(buf, len, "%s", s);
    return NULL;
}

static const char *
check_header(const char *s, char *buf, size_t len)
{
    size_t i, n = strlen(s);

    if (strcmp(s, "*") == 0) {
        snprintf(buf, len, "*");
        return NULL;
    }
    if (n == 0 || n >= HL_DIFF_NAME_MAX)
        return "must be a header name of 1..63 characters, or \"*\"";
    for (i = 0; i < n; i++) {
        char ch = s[i];

        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              strchr("!#$%&'*+-.^_`|~", ch) != NULL))
            return "must be a header name (token characters only)";
        buf[i] = (ch >= 'A' && ch <= 'Z') ? (char)(ch - 'A' + 'a') : ch;
    }
    buf[n] = '\0';
    return NULL;
}

static const char *
check_path(const char *s, char *buf, size_t len)
{
    const char *why = hl_diff_path_check(s);

    if (why != NULL)
        return why;
    snprintf(buf, len, "%s", s);
    return NULL;
}

static int
parse_compare(json_t *j, const char *path, struct px_shadow_conf *c, struct conf_err *err)
{
    static const char *const keys[] = { "status", "headers", "ignore_headers", "body",
                                        "ignore_json", NULL };
    struct hl_diff_conf *d = &c->compare;
    char p[sizeof(err->path)];
    const char *s;
    json_t *v;
    unsigned i;

    if (!json_is_object(j))
        return conf_fail(err, path, "must be an object");
    if (conf_check_keys(j, path, keys, err) != 0)
        return -1;
    if ((v = json_object_get(j, "status")) != NULL) {
        if (!json_is_boolean(v))
            return conf_fail(err, conf_join(p, sizeof(p), path, "status"),
                             "must be true or false");
        d->status = json_is_true(v);
    }
    if ((v = json_object_get(j, "headers")) != NULL) {
        conf_join(p, sizeof(p), path, "headers");
        if (strings(v, p, HL_DIFF_HEADERS_MAX, HL_DIFF_NAME_MAX, &d->headers[0][0],
                    &d->nheaders, check_header, err) != 0)
            return -1;
        for (i = 0; i < d->nheaders; i++)
            if (strcmp(d->headers[i], "*") == 0) {
                if (d->nheaders != 1)
                    return conf_fail(err, p, "\"*\" must be the only entry");
                d->all_headers = true;
                d->nheaders = 0;
            }
    }
    if ((v = json_object_get(j, "ignore_headers")) != NULL) {
        conf_join(p, sizeof(p), path, "ignore_headers");
        if (strings(v, p, HL_DIFF_HEADERS_MAX, HL_DIFF_NAME_MAX, &d->ignore_headers[0][0],
                    &d->nignore_headers, check_header, err) != 0)
            return -1;
        if (!d->all_headers && d->nignore_headers > 0)
            return conf_fail(err, p, "applies only with \"headers\": [\"*\"]");
    }
    if (conf_opt_string(j, "body", path, &s, err) != 0)
        return -1;
    if (s != NULL) {
        if (strcmp(s, "bytes") == 0)
            d->body = HL_DIFF_BODY_BYTES;
        else if (strcmp(s, "json") == 0)
            d->body = HL_DIFF_BODY_JSON;
        else if (strcmp(s, "none") == 0)
            d->body = HL_DIFF_BODY_NONE;
        else
            return conf_fail(err, conf_join(p, sizeof(p), path, "body"),
                             "must be \"bytes\", \"json\" or \"none\"");
    }
    if ((v = json_object_get(j, "ignore_json")) != NULL) {
        conf_join(p, sizeof(p), path, "ignore_json");
        if (strings(v, p, HL_DIFF_IGNORE_MAX, HL_DIFF_PATH_MAX, &d->ignore_json[0][0],
                    &d->nignore_json, check_path, err) != 0)
            return -1;
        if (d->body != HL_DIFF_BODY_JSON && d->nignore_json > 0)
            return conf_fail(err, p, "applies only with \"body\": \"json\"");
    }
    return 0;
}

int
px_shadow_conf_parse(json_t *j, const char *path, struct px_shadow_conf **out,
                     struct conf_err *err)
{
    static const char *const keys[] = {
        "percent", "to", "methods", "max_inflight", "max_body_bytes", "max_response_bytes",
        "timeout_ms", "compare", "noise", "keep_diffs", NULL
    };
    static const char *const noise_keys[] = { "second_server", NULL };
    struct px_shadow_conf *c;
    char p[sizeof(err->path)];
    long long ll;
    const char *s;
    json_t *v;
    unsigned i;

    *out = NULL;
    if (j == NULL)
        return 0;
    if (!json_is_object(j))
        return conf_fail(err, path, "must be an object");
    if (conf_check_keys(j, path, keys, err) != 0)
        return -1;
    c = xcalloc(1, sizeof(*c));
    c->percent_bp = 10000;
    c->nmethods = 2;
    snprintf(c->methods[0], sizeof(c->methods[0]), "GET");
    snprintf(c->methods[1], sizeof(c->methods[1]), "HEAD");
    c->max_inflight = 64;
    c->max_body_bytes = 1u << 20;
    c->max_response_bytes = 1u << 20;
    c->timeout_ms = 2000;
    c->keep_diffs = 100;
    c->compare.status = true;
    c->compare.body = HL_DIFF_BODY_BYTES;

    if ((v = json_object_get(j, "percent")) != NULL &&
        conf_percent_bp(v, conf_join(p, sizeof(p), path, "percent"), true, &c->percent_bp,
                        err) != 0)
        goto fail;
    if (conf_opt_string(j, "to", path, &s, err) != 0)
        goto fail;
    if (s != NULL) {
        if (strcmp(s, "other") == 0)
            c->to = PX_SHADOW_TO_OTHER;
        else if (strcmp(s, "new") == 0)
            c->to = PX_SHADOW_TO_NEW;
        else if (strcmp(s, "legacy") == 0)
            c->to = PX_SHADOW_TO_LEGACY;
        else {
            conf_fail(err, conf_join(p, sizeof(p), path, "to"),
                      "must be \"other\", \"new\" or \"legacy\"");
            goto fail;
        }
    }
    if ((v = json_object_get(j, "methods")) != NULL) {
        conf_join(p, sizeof(p), path, "methods");
        if (strings(v, p, PX_SHADOW_METHODS_MAX, sizeof(c->methods[0]), &c->methods[0][0],
                    &c->nmethods, check_method, err) != 0)
            goto fail;
        if (c->nmethods == 0) {
            conf_fail(err, p, "must not be empty (remove \"shadow\" to turn it off)");
            goto fail;
        }
    }
    for (i = 0; i < c->nmethods; i++)
        if (!safe_method(c->methods[i]))
            snprintf(c->unsafe + strlen(c->unsafe), sizeof(c->unsafe) - strlen(c->unsafe),
                     "%s%s", c->unsafe[0] != '\0' ? ", " : "", c->methods[i]);
    if (conf_opt_uint(j, "max_inflight", path, 1, 100000, &c->max_inflight, err) != 0 ||
        conf_opt_int(j, "max_body_bytes", path, 0, 64ll << 20, &ll, err) != 0)
        goto fail;
    if (json_object_get(j, "max_body_bytes") != NULL)
        c->max_body_bytes = (uint64_t)ll;
    if (conf_opt_int(j, "max_response_bytes", path, 1, 1ll << 30, &ll, err) != 0)
        goto fail;
    if (json_object_get(j, "max_response_bytes") != NULL)
        c->max_response_bytes = (uint64_t)ll;
    if (conf_opt_uint(j, "timeout_ms", path, 1, 600000, &c->timeout_ms, err) != 0 ||
        conf_opt_uint(j, "keep_diffs", path, 0, 1000, &c->keep_diffs, err) != 0)
        goto fail;
    if ((v = json_object_get(j, "compare")) != NULL &&
        parse_compare(v, conf_join(p, sizeof(p), path, "compare"), c, err) != 0)
        goto fail;
    c->compare.max_bytes = c->max_response_bytes;
    if ((v = json_object_get(j, "noise")) != NULL) {
        char q[sizeof(err->path)];

        conf_join(p, sizeof(p), path, "noise");
        if (!json_is_object(v)) {
            conf_fail(err, p, "must be an object");
            goto fail;
        }
        if (conf_check_keys(v, p, noise_keys, err) != 0)
            goto fail;
        if ((v = json_object_get(v, "second_server")) != NULL) {
            if (!json_is_boolean(v)) {
                conf_fail(err, conf_join(q, sizeof(q), p, "second_server"),
                          "must be true or false");
                goto fail;
            }
            c->second_server = json_is_true(v);
        }
    }
    *out = c;
    return 0;
fail:
    free(c);
    return -1;
}

void
px_shadow_conf_free(struct px_shadow_conf *c)
{
    free(c);
}

bool
px_shadow_conf_equal(const struct px_shadow_conf *a, const struct px_shadow_conf *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    /* every member is a value (no pointer, no padding left uninitialised:
     * allocated zeroed, written by field) */
    return memcmp(a, b, sizeof(*a)) == 0;
}
