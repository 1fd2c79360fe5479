/*
 * health/conf: parses a service's "health", "rollback" and "plan" sections
 * into plain value structs. Each section has its defaults in one initialiser
 * at the top of its parser; the parser then checks for unknown keys first
 * (a typo such as "rsie" must fail the load, not fall back to a default),
 * then reads every key with its type and range.
 *
 * Integers given as reals (2000.5, and 2000.0 too) are refused: a value in
 * milliseconds with a fraction is a sign of a unit mix-up, not a precision
 * wish.
 *
 * The *_equal() functions compare two parsed sections field by field, for a
 * reload that must tell a changed service from an unchanged one.
 */
#include "health/conf.h"

#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "lib/conf.h"

/* RFC 9110 tchar: method names are tokens. */
static bool
is_tchar(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch >= '0' && ch <= '9') ||
           (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

/* The check path goes verbatim onto a request line: origin-form, visible
 * ASCII only, so nothing in it can split or smuggle a request. */
static bool
is_request_target(const char *s)
{
    if (s[0] != '/')
        return false;
    for (; *s != '\0'; s++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
            return false;
    return true;
}

static int
parse_expect(json_t *v, const char *path, struct hl_check_conf *c,
             struct conf_err *err)
{
    long long lo, hi;
    char p[sizeof(err->path)];

    if (!json_is_array(v) || json_array_size(v) != 2)
        return conf_fail(err, path, "must be an array [min, max] of two status codes");
    if (conf_int(json_array_get(v, 0), conf_join_index(p, sizeof(p), path, 0), 100, 599, &lo, err) != 0)
        return -1;
    if (conf_int(json_array_get(v, 1), conf_join_index(p, sizeof(p), path, 1), 100, 599, &hi, err) != 0)
        return -1;
    if (hi < lo)
        return conf_fail(err, p, "must not be less than the minimum (%lld)", lo);
    c->expect_min = (int)lo;
    c->expect_max = (int)hi;
    return 0;
}

int
hl_check_conf_parse(struct json_t *j, const char *path,
                    struct hl_check_conf *out, struct conf_err *err)
{
    static const char *const keys[] = {
        "type", "method", "path", "expect_status", "body_contains",
        "interval_ms", "timeout_ms", "rise", "fall", NULL
    };
    static const char *const http_only[] = {
        "method", "path", "expect_status", "body_contains", NULL
    };
    struct hl_check_conf c = {
        .type = HL_CHECK_NONE, .method = "GET", .path = "/healthz",
        .expect_min = 200, .expect_max = 399, .body_contains = "",
        .interval_ms = 2000, .timeout_ms = 1000, .rise = 2, .fall = 3,
    };
    const char *type, *s;
    json_t *v;
    size_t i;
    char p[sizeof(err->path)];

    if (j == NULL) {
        *out = c;
        return 0;
    }
    if (!json_is_object(j))
        return conf_fail(err, path, "must be an object");
    if (conf_check_keys(j, path, keys, err) != 0)
        return -1;

    if (conf_opt_string(j, "type", path, &type, err) != 0)
        return -1;
    if (type == NULL || strcmp(type, "tcp") == 0)
        c.type = HL_CHECK_TCP;
    else if (strcmp(type, "http") == 0)
        c.type = HL_CHECK_HTTP;
    else
        return conf_fail(err, conf_join(p, sizeof(p), path, "type"),
                         "must be \"tcp\" or \"http\"");
    if (c.type != HL_CHECK_HTTP) {
        for (i = 0; http_only[i] != NULL; i++)
            if (json_object_get(j, http_only[i]) != NULL)
                return conf_fail(err, conf_join(p, sizeof(p), path, http_only[i]),
                                 "only valid with \"type\": \"http\"");
    }

    if (conf_opt_string(j, "method", path, &s, err) != 0)
        return -1;
    if (s != NULL) {
        size_t n = strlen(s);

        for (i = 0; i < n && is_tchar((unsigned char)s[i]); i++)
            ;
        if (n == 0 || i < n || n >= sizeof(c.method))
            return conf_fail(err, conf_join(p, sizeof(p), path, "method"),
                             "must be an HTTP method token of 1..%zu characters",
                             sizeof(c.method) - 1);
        memcpy(c.method, s, n + 1);
    }
    if (conf_opt_string(j, "path", path, &s, err) != 0)
        return -1;
    if (s != NULL) {
        if (!is_request_target(s) || strlen(s) >= sizeof(c.path))
            return conf_fail(err, conf_join(p, sizeof(p), path, "path"),
                             "must start with '/', hold visible ASCII only and "
                             "be shorter than %zu bytes", sizeof(c.path));
        memcpy(c.path, s, strlen(s) + 1);
    }
    if ((v = json_object_get(j, "expect_status")) != NULL &&
        parse_expect(v, conf_join(p, sizeof(p), path, "expect_status"), &c, err) != 0)
        return -1;
    if (conf_opt_string(j, "body_contains", path, &s, err) != 0)
        return -1;
    if (s != NULL) {
        if (strlen(s) >= sizeof(c.body_contains))
            return conf_fail(err, conf_join(p, sizeof(p), path, "body_contains"),
                             "must be shorter than %zu bytes",
                             sizeof(c.body_contains));
        memcpy(c.body_contains, s, strlen(s) + 1);
    }

    if (conf_opt_uint(j, "interval_ms", path, 100, 3600000, &c.interval_ms, err) != 0 ||
        conf_opt_uint(j, "timeout_ms", path, 10, 60000, &c.timeout_ms, err) != 0 ||
        conf_opt_uint(j, "rise", path, 1, 100, &c.rise, err) != 0 ||
        conf_opt_uint(j, "fall", path, 1, 100, &c.fall, err) != 0)
        return -1;
    /* A check that may outlive its interval would overlap the next one.
     * Blame the key that was written: a default cannot be the typo. */
    if (c.timeout_ms >= c.interval_ms) {
        if (json_object_get(j, "timeout_ms") != NULL)
            return conf_fail(err, conf_join(p, sizeof(p), path, "timeout_ms"),
                             "must be less than interval_ms (%u)", c.interval_ms);
        return conf_fail(err, conf_join(p, sizeof(p), path, "interval_ms"),
                         "must be greater than timeout_ms (%u)", c.timeout_ms);
    }
    *out = c;
    return 0;
}

int
hl_rollback_conf_parse(struct json_t *j, const char *path,
                       struct hl_rollback_conf *out, struct conf_err *err)
{
    static const char *const keys[] = {
        "enabled", "max_error_rate", "min_requests", "window_s", "max_p99_ms",
        "max_error_ratio_to_legacy", "action", "drain_s", "max_diff_rate", NULL
    };
    struct hl_rollback_conf c = {
        .enabled = true, .max_error_rate = 0.05, .min_requests = 20,
        .window_s = 10, .max_p99_ms = 0, .max_error_ratio_to_legacy = 0,
        .action = HL_ACT_ROLLBACK, .drain_s = 5,
    };
    const char *s;
    json_t *v;
    char p[sizeof(err->path)];

    if (j == NULL) {
        *out = c;
        return 0;
    }
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
    if (conf_opt_double(j, "max_error_rate", path, 0, 1, &c.max_error_rate, err) != 0 ||
        conf_opt_uint(j, "min_requests", path, 1, 1000000, &c.min_requests, err) != 0 ||
        conf_opt_uint(j, "window_s", path, 1, 600, &c.window_s, err) != 0 ||
        conf_opt_uint(j, "drain_s", path, 0, 86400, &c.drain_s, err) != 0 ||
        conf_opt_uint(j, "max_p99_ms", path, 0, 3600000, &c.max_p99_ms, err) != 0 ||
        conf_opt_double(j, "max_error_ratio_to_legacy", path, 0, 1000,
                        &c.max_error_ratio_to_legacy, err) != 0 ||
        conf_opt_double(j, "max_diff_rate", path, 0, 1, &c.max_diff_rate, err) != 0)
        return -1;
    if (conf_opt_string(j, "action", path, &s, err) != 0)
        return -1;
    if (s != NULL) {
        if (strcmp(s, "rollback") == 0)
            c.action = HL_ACT_ROLLBACK;
        else if (strcmp(s, "freeze") == 0)
            c.action = HL_ACT_FREEZE;
        else
            return conf_fail(err, conf_join(p, sizeof(p), path, "action"),
                             "must be \"rollback\" or \"freeze\"");
    }
    *out = c;
    return 0;
}

int
hl_plan_conf_parse(struct json_t *j, const char *path,
                   struct hl_plan_conf *out, struct conf_err *err)
{
    static const char *const keys[] = { "steps", "bake_s", "max_diff_rate", "min_compared",
                                        NULL };
    struct hl_plan_conf c = { .nsteps = 0, .bake_s = 300, .min_compared = 100 };
    json_t *steps, *v;
    size_t i;
    char p[sizeof(err->path)], q[sizeof(err->path)];

    if (j == NULL) {
        *out = c;
        return 0;
    }
    if (!json_is_object(j))
        return conf_fail(err, path, "must be an object");
    if (conf_check_keys(j, path, keys, err) != 0)
        return -1;
    steps = json_object_get(j, "steps");
    if (steps == NULL)
        return conf_fail(err, conf_join(p, sizeof(p), path, "steps"), "is required");
    if (!json_is_array(steps))
        return conf_fail(err, conf_join(p, sizeof(p), path, "steps"), "must be an array");
    if (json_array_size(steps) == 0 || json_array_size(steps) > HL_PLAN_MAX_STEPS)
        return conf_fail(err, conf_join(p, sizeof(p), path, "steps"),
                         "must hold 1..%d steps", HL_PLAN_MAX_STEPS);
    json_array_foreach(steps, i, v) {
        conf_join_index(p, sizeof(p), conf_join(q, sizeof(q), path, "steps"), i);
        /* a first step of 0 bakes on shadow traffic alone (its diff gate
         * is checked below, once max_diff_rate is read) */
        if (conf_percent_bp(v, p, i == 0, &c.steps_bp[i], err) != 0)
            return -1;
        if (i > 0 && c.steps_bp[i] <= c.steps_bp[i - 1])
            return conf_fail(err, p, "must be greater than the previous step (%g)",
                             c.steps_bp[i - 1] / 100.0);
    }
    c.nsteps = (unsigned)json_array_size(steps);
    if (conf_opt_uint(j, "bake_s", path, 1, 604800, &c.bake_s, err) != 0 ||
        conf_opt_double(j, "max_diff_rate", path, 0, 1, &c.max_diff_rate, err) != 0 ||
        conf_opt_uint(j, "min_compared", path, 1, 100000000, &c.min_compared, err) != 0)
        return -1;
    if (c.steps_bp[0] == 0 && c.max_diff_rate <= 0)
        return conf_fail(err, conf_join_index(p, sizeof(p),
                                              conf_join(q, sizeof(q), path, "steps"), 0),
                         "may be 0 only with max_diff_rate (a bake on shadow traffic "
                         "that the diff rate gates)");
    *out = c;
    return 0;
}

bool
hl_check_conf_equal(const struct hl_check_conf *a, const struct hl_check_conf *b)
{
    return a->type == b->type &&
           strncmp(a->method, b->method, sizeof(a->method)) == 0 &&
           strncmp(a->path, b->path, sizeof(a->path)) == 0 &&
           a->expect_min == b->expect_min && a->expect_max == b->expect_max &&
           strncmp(a->body_contains, b->body_contains, sizeof(a->body_contains)) == 0 &&
           a->interval_ms == b->interval_ms && a->timeout_ms == b->timeout_ms &&
           a->rise == b->rise && a->fall == b->fall;
}

bool
hl_rollback_conf_equal(const struct hl_rollback_conf *a, const struct hl_rollback_conf *b)
{
    return a->enabled == b->enabled && a->max_error_rate == b->max_error_rate &&
           a->min_requests == b->min_requests && a->window_s == b->window_s &&
           a->max_p99_ms == b->max_p99_ms &&
           a->max_error_ratio_to_legacy == b->max_error_ratio_to_legacy &&
           a->action == b->action && a->drain_s == b->drain_s &&
           a->max_diff_rate == b->max_diff_rate;
}

bool
hl_plan_conf_equal(const struct hl_plan_conf *a, const struct hl_plan_conf *b)
{
    return a->nsteps == b->nsteps && a->nsteps <= HL_PLAN_MAX_STEPS &&
           memcmp(a->steps_bp, b->steps_bp, a->nsteps * sizeof(a->steps_bp[0])) == 0 &&
           a->bake_s == b->bake_s && a->max_diff_rate == b->max_diff_rate &&
           a->min_compared == b->min_compared;
}
