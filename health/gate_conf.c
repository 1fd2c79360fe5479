/*
 * health/gate_conf: reads a service's "gates" array (docs/gates.md) into
 * struct hl_gates_conf (health/gate.h), strictly: unknown keys, a missing
 * key a kind needs, a key another kind owns, a number out of range, a
 * conninfo key we do not take (a password above all) or a URL that is not
 * http://ADDRESS:PORT/... is an error with its JSON path. Nothing here
 * connects or reads a file: password files are read by the client at each
 * attempt.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "health/gate.h"
#include "health/gate_conf.h"
#include "lib/conf.h"
#include "lib/xmalloc.h"

static bool
is_name(const char *s)
{
    size_t n = strlen(s), i;

    if (n == 0 || n > HL_GATE_NAME_MAX)
        return false;
    for (i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z')
              || (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '.' || s[i] == '-'))
            return false;
    return true;
}

/* A SQL identifier we quote nowhere: [A-Za-z_][A-Za-z0-9_]*, 1..63 bytes. */
static bool
is_ident(const char *s, size_t n)
{
    size_t i;

    if (n == 0 || n > 63 || (s[0] >= '0' && s[0] <= '9'))
        return false;
    for (i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z')
              || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return false;
    return true;
}

/* Copies string member <key> of <j> into <out> (<len> bytes with the NUL);
 * absent leaves <out> as it is. */
static int
opt_str(json_t *j, const char *key, const char *pre, char *out, size_t len,
        bool nonempty, struct conf_err *err)
{
    const char *s;
    char p[sizeof(err->path)];

    if ((nonempty ? conf_opt_nonempty(j, key, pre, &s, err)
                  : conf_opt_string(j, key, pre, &s, err)) != 0)
        return -1;
    if (s == NULL)
        return 0;
    if (strlen(s) >= len)
        return conf_fail(err, conf_join(p, sizeof(p), pre, key),
                         "is too long (at most %zu bytes)", len - 1);
    snprintf(out, len, "%s", s);
    return 0;
}

/* libpq's conninfo, the key=value form: values bare or in single quotes
 * with \' and \\; only the keys struct hl_gate_db has. */
static int
parse_conninfo(const char *text, const char *path, struct hl_gate_db *db,
               struct conf_err *err)
{
    const char *p = text;
    char key[32], val[256];
    size_t k, v;

    snprintf(db->conninfo, sizeof(db->conninfo), "%s", text);
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n')
            p++;
        if (*p == '\0')
            break;
        for (k = 0; *p != '\0' && *p != '=' && *p != ' ' && k + 1 < sizeof(key); p++)
            key[k++] = *p;
        key[k] = '\0';
        while (*p == ' ')
            p++;
        if (*p != '=')
            return conf_fail(err, path, "\"%.31s\" is not followed by \"=\" (libpq's "
                             "key=value form: \"host=/run/postgresql dbname=app\")", key);
        p++;
        while (*p == ' ')
            p++;
        v = 0;
        if (*p == '\'') {
            for (p++; *p != '\0' && *p != '\''; p++) {
                if (*p == '\\' && p[1] != '\0')
                    p++;
                if (v + 1 >= sizeof(val))
                    return conf_fail(err, path, "the value of %s is too long", key);
                val[v++] = *p;
            }
            if (*p != '\'')
                return conf_fail(err, path, "the value of %s has no closing quote", key);
            p++;
        } else {
            for (; *p != '\0' && *p != ' ' && *p != '\t' && *p != '\n'; p++) {
                if (v + 1 >= sizeof(val))
                    return conf_fail(err, path, "the value of %s is too long", key);
                val[v++] = *p;
            }
        }
        val[v] = '\0';
#define TAKE(name, field)                                                              \
        if (strcmp(key, name) == 0) {                                                  \
            if (v >= sizeof(db->field))                                                \
                return conf_fail(err, path, "the value of " name " is too long");      \
            memcpy(db->field, val, v + 1);                                             \
            continue;                                                                  \
        }
        TAKE("host", host)
        TAKE("port", port)
        TAKE("dbname", dbname)
        TAKE("user", user)
        TAKE("sslmode", sslmode)
        TAKE("application_name", application_name)
#undef TAKE
        if (strcmp(key, "password") == 0)
            return conf_fail(err, path, "must not hold a password: put it in "
                             "\"password_file\" (or libpq's ~/.pgpass)");
        return conf_fail(err, path, "unknown key \"%s\" (host, port, dbname, user, "
                         "sslmode, application_name)", key);
    }
    if (db->host[0] == '\0')
        return conf_fail(err, path, "needs host= (a socket directory or a numeric "
                         "address: no name is looked up)");
    if (db->host[0] != '/') {
        unsigned char buf[16];

        if (inet_pton(AF_INET, db->host, buf) != 1 && inet_pton(AF_INET6, db->host, buf) != 1)
            return conf_fail(err, path, "host \"%s\" must be a socket directory or a "
                             "numeric address", db->host);
    }
    return 0;
}

/* "conninfo" and "password_file" of object <j> at <pre> into <db>. */
static int
parse_db(json_t *j, const char *pre, const char *dir, struct hl_gate_db *db,
         struct conf_err *err)
{
    const char *s;
    char p[sizeof(err->path)];

    memset(db, 0, sizeof(*db));
    if (conf_opt_nonempty(j, "conninfo", pre, &s, err) != 0)
        return -1;
    conf_join(p, sizeof(p), pre, "conninfo");
    if (s == NULL)
        return conf_fail(err, p, "is required");
    if (strlen(s) >= sizeof(db->conninfo))
        return conf_fail(err, p, "is too long");
    if (parse_conninfo(s, p, db, err) != 0)
        return -1;
    if (conf_opt_nonempty(j, "password_file", pre, &s, err) != 0)
        return -1;
    if (s != NULL) {
        int n = s[0] == '/' || dir == NULL
                ? snprintf(db->password_file, sizeof(db->password_file), "%s", s)
                : snprintf(db->password_file, sizeof(db->password_file), "%s/%s", dir, s);

        if (n < 0 || (size_t)n >= sizeof(db->password_file))
            return conf_fail(err, conf_join(p, sizeof(p), pre, "password_file"),
                             "is too long");
    }
    return 0;
}

/* Object member <key> holding a database ("legacy", "new", "source"). */
static int
parse_db_obj(json_t *j, const char *key, const char *pre, const char *dir,
             struct hl_gate_db *db, struct conf_err *err)
{
    static const char *const keys[] = { "conninfo", "password_file", NULL };
    json_t *o;
    char p[sizeof(err->path)];

    conf_join(p, sizeof(p), pre, key);
    if (conf_opt_object(j, key, pre, &o, err) != 0)
        return -1;
    if (o == NULL)
        return conf_fail(err, p, "is required ({\"conninfo\": ..., \"password_file\": ...})");
    if (conf_check_keys(o, p, keys, err) != 0)
        return -1;
    return parse_db(o, p, dir, db, err);
}

static int
parse_url(const char *url, const char *path, struct hl_gate_conf *g, struct conf_err *err)
{
    const char *p, *host, *end, *colon;
    unsigned char buf[16];
    char *e;
    unsigned long port;
    size_t hl;
    bool v6;

    if (strlen(url) >= sizeof(g->url))
        return conf_fail(err, path, "is too long");
    snprintf(g->url, sizeof(g->url), "%s", url);
    if (strncmp(url, "http://", 7) != 0)
        return conf_fail(err, path, "must start with http:// (a URL on a side's server)");
    host = url + 7;
    v6 = *host == '[';
    if (v6) {
        end = strchr(host, ']');
        if (end == NULL)
            return conf_fail(err, path, "has no closing ] after the IPv6 address");
        host++;
        hl = (size_t)(end - host);
        colon = end + 1;
    } else {
        colon = host + strcspn(host, ":/");
        hl = (size_t)(colon - host);
    }
    if (hl == 0 || hl >= sizeof(g->http_host))
        return conf_fail(err, path, "has no host");
    memcpy(g->http_host, host, hl);
    g->http_host[hl] = '\0';
    if (inet_pton(v6 ? AF_INET6 : AF_INET, g->http_host, buf) != 1)
        return conf_fail(err, path, "host \"%s\" must be a numeric address (no name is "
                         "looked up)", g->http_host);
    if (*colon != ':')
        return conf_fail(err, path, "needs a port (http://ADDRESS:PORT/PATH)");
    port = strtoul(colon + 1, &e, 10);
    if (e == colon + 1 || port == 0 || port > 65535 || (*e != '/' && *e != '\0'))
        return conf_fail(err, path, "has a bad port (1..65535)");
    g->http_port = (unsigned)port;
    p = *e == '\0' ? "/" : e;
    if (strlen(p) >= sizeof(g->http_path))
        return conf_fail(err, path, "has a path that is too long");
    for (hl = 0; p[hl] != '\0'; hl++)
        if ((unsigned char)p[hl] <= ' ' || p[hl] == 0x7f || p[hl] == '#')
            return conf_fail(err, path, "has a space, control character or # in its path");
    snprintf(g->http_path, sizeof(g->http_path), "%s", p);
    return 0;
}

/* The keys each kind takes, beside the common ones. */
static const char *const common_keys[] = {
    "name", "kind", "interval_ms", "timeout_ms", "on_fail", NULL
};
static const char *const kind_keys[HL_GATE_KIND__COUNT][10] = {
    [HL_GATE_SQL] = { "conninfo", "password_file", "query", "min", "max", NULL },
    [HL_GATE_COMPARE] = { "legacy", "new", "query", "tolerance", "tolerance_ratio", NULL },
    [HL_GATE_LAG] = { "conninfo", "password_file", "source", "max_lag_ms", "max_lag_bytes",
                      "heartbeat_table", "subscription", NULL },
    [HL_GATE_HTTP] = { "url", "expect_status", NULL },
};

static int
check_gate_keys(json_t *j, const char *pre, enum hl_gate_kind kind, struct conf_err *err)
{
    const char *key;
    json_t *v;
    unsigned i, k;
    char p[sizeof(err->path)];

    json_object_foreach(j, key, v) {
        bool ok = false;

        for (i = 0; common_keys[i] != NULL && !ok; i++)
            ok = strcmp(key, common_keys[i]) == 0;
        for (i = 0; kind_keys[kind][i] != NULL && !ok; i++)
            ok = strcmp(key, kind_keys[kind][i]) == 0;
        if (ok)
            continue;
        conf_join(p, sizeof(p), pre, key);
        for (k = 0; k < HL_GATE_KIND__COUNT; k++)
            for (i = 0; kind_keys[k][i] != NULL; i++)
                if (strcmp(key, kind_keys[k][i]) == 0)
                    return conf_fail(err, p, "is a key of kind \"%s\", not of \"%s\"",
                                     hl_gate_kind_names[k], hl_gate_kind_names[kind]);
        return conf_fail(err, p, "unknown key");
    }
    return 0;
}

static int
parse_query(json_t *j, const char *pre, struct hl_gate_conf *g, struct conf_err *err)
{
    char p[sizeof(err->path)];

    if (opt_str(j, "query", pre, g->query, sizeof(g->query), true, err) != 0)
        return -1;
    if (g->query[0] == '\0')
        return conf_fail(err, conf_join(p, sizeof(p), pre, "query"),
                         "is required (one statement returning one number)");
    return 0;
}

static int
parse_gate(json_t *j, const char *pre, const char *dir, struct hl_gate_conf *g,
           struct conf_err *err)
{
    const char *s;
    char p[sizeof(err->path)];
    long long ll;
    unsigned k;

    memset(g, 0, sizeof(*g));
    g->interval_ms = 5000;
    g->timeout_ms = 2000;
    g->expect_status = 200;
    snprintf(g->heartbeat_table, sizeof(g->heartbeat_table), "cutover_heartbeat");
    if (!json_is_object(j))
        return conf_fail(err, pre, "must be an object");
    if (conf_opt_nonempty(j, "name", pre, &s, err) != 0)
        return -1;
    conf_join(p, sizeof(p), pre, "name");
    if (s == NULL)
        return conf_fail(err, p, "is required");
    if (!is_name(s))
        return conf_fail(err, p, "must be 1..%d characters from A-Z a-z 0-9 _ . -",
                         HL_GATE_NAME_MAX);
    snprintf(g->name, sizeof(g->name), "%s", s);
    if (conf_opt_nonempty(j, "kind", pre, &s, err) != 0)
        return -1;
    conf_join(p, sizeof(p), pre, "kind");
    if (s == NULL)
        return conf_fail(err, p, "is required (sql, compare, replication_lag or http)");
    for (k = 0; k < HL_GATE_KIND__COUNT && strcmp(s, hl_gate_kind_names[k]) != 0; k++)
        ;
    if (k == HL_GATE_KIND__COUNT)
        return conf_fail(err, p, "must be sql, compare, replication_lag or http, not \"%s\"",
                         s);
    g->kind = (enum hl_gate_kind)k;
    if (check_gate_keys(j, pre, g->kind, err) != 0)
        return -1;
    if (conf_opt_nonempty(j, "on_fail", pre, &s, err) != 0)
        return -1;
    if (s != NULL) {
        for (k = 0; k < HL_GATE_ON_FAIL__COUNT && strcmp(s, hl_gate_on_fail_names[k]) != 0;
             k++)
            ;
        if (k == HL_GATE_ON_FAIL__COUNT)
            return conf_fail(err, conf_join(p, sizeof(p), pre, "on_fail"),
                             "must be hold, rollback or freeze, not \"%s\"", s);
        g->on_fail = (enum hl_gate_on_fail)k;
    }
    if (conf_opt_uint(j, "interval_ms", pre, 100, 86400000, &g->interval_ms, err) != 0 ||
        conf_opt_uint(j, "timeout_ms", pre, 10, 600000, &g->timeout_ms, err) != 0)
        return -1;
    if (g->timeout_ms > g->interval_ms)
        return conf_fail(err, conf_join(p, sizeof(p), pre, "timeout_ms"),
                         "%u is longer than interval_ms (%u): checks would overlap",
                         g->timeout_ms, g->interval_ms);

    switch (g->kind) {
    case HL_GATE_SQL:
        if (parse_db(j, pre, dir, &g->db, err) != 0 || parse_query(j, pre, g, err) != 0)
            return -1;
        g->has_min = json_object_get(j, "min") != NULL;
        g->has_max = json_object_get(j, "max") != NULL;
        if (conf_opt_double(j, "min", pre, -1e300, 1e300, &g->min, err) != 0 ||
            conf_opt_double(j, "max", pre, -1e300, 1e300, &g->max, err) != 0)
            return -1;
        if (!g->has_min && !g->has_max)
            return conf_fail(err, pre, "a sql gate needs \"min\", \"max\" or both");
        if (g->has_min && g->has_max && g->min > g->max)
            return conf_fail(err, conf_join(p, sizeof(p), pre, "min"),
                             "%.15g is above max (%.15g)", g->min, g->max);
        break;
    case HL_GATE_COMPARE:
        if (parse_db_obj(j, "legacy", pre, dir, &g->db, err) != 0 ||
            parse_db_obj(j, "new", pre, dir, &g->db2, err) != 0 ||
            parse_query(j, pre, g, err) != 0)
            return -1;
        g->has_ratio = json_object_get(j, "tolerance_ratio") != NULL;
        if (g->has_ratio && json_object_get(j, "tolerance") != NULL)
            return conf_fail(err, conf_join(p, sizeof(p), pre, "tolerance_ratio"),
                             "and \"tolerance\" exclude each other: give one");
        if (conf_opt_double(j, "tolerance", pre, 0, 1e300, &g->tolerance, err) != 0 ||
            conf_opt_double(j, "tolerance_ratio", pre, 0, 1, &g->tolerance_ratio, err) != 0)
            return -1;
        break;
    case HL_GATE_LAG:
        if (parse_db(j, pre, dir, &g->db, err) != 0 ||
            parse_db_obj(j, "source", pre, dir, &g->db2, err) != 0)
            return -1;
        ll = 0;
        if (conf_opt_int(j, "max_lag_ms", pre, 1, 86400000, &ll, err) != 0)
            return -1;
        g->max_lag_ms = (uint64_t)ll;
        ll = 0;
        if (conf_opt_int(j, "max_lag_bytes", pre, 1, (long long)1 << 50, &ll, err) != 0)
            return -1;
        g->max_lag_bytes = (uint64_t)ll;
        if (g->max_lag_ms == 0 && g->max_lag_bytes == 0)
            return conf_fail(err, pre, "a replication_lag gate needs \"max_lag_ms\", "
                             "\"max_lag_bytes\" or both");
        if (opt_str(j, "heartbeat_table", pre, g->heartbeat_table,
                    sizeof(g->heartbeat_table), true, err) != 0 ||
            opt_str(j, "subscription", pre, g->subscription, sizeof(g->subscription), true,
                    err) != 0)
            return -1;
        {
            const char *t = g->heartbeat_table, *dot = strchr(t, '.');

            if (dot != NULL ? !is_ident(t, (size_t)(dot - t)) || !is_ident(dot + 1,
                                                                           strlen(dot + 1))
                            : !is_ident(t, strlen(t)))
                return conf_fail(err, conf_join(p, sizeof(p), pre, "heartbeat_table"),
                                 "must be a table name, optionally schema.table, from "
                                 "A-Z a-z 0-9 _ (not starting with a digit)");
        }
        if (g->subscription[0] != '\0' && !is_ident(g->subscription, strlen(g->subscription)))
            return conf_fail(err, conf_join(p, sizeof(p), pre, "subscription"),
                             "must be a subscription name from A-Z a-z 0-9 _");
        break;
    case HL_GATE_HTTP:
        if (conf_opt_nonempty(j, "url", pre, &s, err) != 0)
            return -1;
        conf_join(p, sizeof(p), pre, "url");
        if (s == NULL)
            return conf_fail(err, p, "is required (http://ADDRESS:PORT/PATH)");
        if (parse_url(s, p, g, err) != 0)
            return -1;
        ll = 200;
        if (conf_opt_int(j, "expect_status", pre, 100, 599, &ll, err) != 0)
            return -1;
        g->expect_status = (int)ll;
        break;
    default:
        break;
    }
    return 0;
}

int
hl_gates_conf_parse(struct json_t *j, const char *path, const char *dir,
                    struct hl_gates_conf *out, struct conf_err *err)
{
    struct hl_gates_conf c = { 0 };
    json_t *v;
    size_t i, k;
    char p[sizeof(err->path)];

    *out = c;
    if (j == NULL)
        return 0;
    if (!json_is_array(j))
        return conf_fail(err, path, "must be an array");
    if (json_array_size(j) > HL_GATE_MAX)
        return conf_fail(err, path, "holds %zu gates, at most %d", json_array_size(j),
                         HL_GATE_MAX);
    if (json_array_size(j) == 0)
        return 0;
    c.g = xcalloc(json_array_size(j), sizeof(*c.g));
    json_array_foreach(j, i, v) {
        conf_join_index(p, sizeof(p), path, i);
        if (parse_gate(v, p, dir, &c.g[i], err) != 0) {
            free(c.g);
            return -1;
        }
        for (k = 0; k < i; k++) {
            if (strcmp(c.g[k].name, c.g[i].name) == 0) {
                char q[sizeof(err->path)];

                conf_fail(err, conf_join(q, sizeof(q), p, "name"),
                          "duplicate gate name \"%s\" (also %s[%zu])", c.g[i].name, path, k);
                free(c.g);
                return -1;
            }
        }
        c.n = (unsigned)i + 1;
    }
    *out = c;
    return 0;
}

void
hl_gates_conf_free(struct hl_gates_conf *c)
{
    if (c == NULL)
        return;
    free(c->g);
    c->g = NULL;
    c->n = 0;
}

int
hl_gates_conf_copy(struct hl_gates_conf *dst, const struct hl_gates_conf *src)
{
    dst->n = src->n;
    dst->g = NULL;
    if (src->n == 0)
        return 0;
    dst->g = xcalloc(src->n, sizeof(*dst->g));
    memcpy(dst->g, src->g, src->n * sizeof(*dst->g));
    return 0;
}
