/*
 * store_pg_conf: parses and checks "store": {"postgres": {...}} (see
 * store_pg_conf.h). Every refusal names the key and says why, and nothing
 * of a refused section is kept.
 */
#include "admin/store_pg_conf.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "lib/conf.h"
#include "lib/fs.h"
#include "lib/xmalloc.h"

/* The conninfo keys lib/pg.h takes. */
static const char *const conninfo_keys[] = {
    "host", "port", "dbname", "user", "sslmode", "application_name", "connect_timeout",
    NULL
};

static char **
conninfo_field(struct adm_pg_conf *c, const char *key)
{
    if (strcmp(key, "host") == 0) return &c->host;
    if (strcmp(key, "port") == 0) return &c->port;
    if (strcmp(key, "dbname") == 0) return &c->dbname;
    if (strcmp(key, "user") == 0) return &c->user;
    if (strcmp(key, "sslmode") == 0) return &c->sslmode;
    if (strcmp(key, "application_name") == 0) return &c->application_name;
    return NULL;
}

static void
conninfo_clear(struct adm_pg_conf *c)
{
    free(c->host);
    free(c->port);
    free(c->dbname);
    free(c->user);
    free(c->sslmode);
    free(c->application_name);
    c->host = c->port = c->dbname = c->user = c->sslmode = c->application_name = NULL;
    c->conninfo_connect_timeout_s = 0;
}

/* One value of <key>: checks it and stores it. 0, or -1 with <msg>. */
static int
conninfo_set(struct adm_pg_conf *c, const char *key, const char *val, char *msg,
             size_t msglen)
{
    static const char *const sslmodes[] = {
        "disable", "allow", "prefer", "require", "verify-ca", "verify-full", NULL
    };
    char **f;
    size_t i;

    if (strcmp(key, "password") == 0) {
        snprintf(msg, msglen, "must not hold a password: put it in \"password_file\" or "
                 "libpq's password file (PGPASSFILE)");
        return -1;
    }
    for (i = 0; conninfo_keys[i] != NULL && strcmp(conninfo_keys[i], key) != 0; i++)
        ;
    if (conninfo_keys[i] == NULL) {
        snprintf(msg, msglen, "unknown key \"%.64s\" (one of: host, port, dbname, user, "
                 "sslmode, application_name, connect_timeout)", key);
        return -1;
    }
    if (strcmp(key, "connect_timeout") == 0) {
        char *end;
        long v = strtol(val, &end, 10);

        if (c->conninfo_connect_timeout_s != 0) {
            snprintf(msg, msglen, "\"connect_timeout\" is given twice");
            return -1;
        }
        if (*val == '\0' || *end != '\0' || v < 1 || v > 3600) {
            snprintf(msg, msglen, "connect_timeout must be 1..3600 seconds, got \"%.32s\"",
                     val);
            return -1;
        }
        c->conninfo_connect_timeout_s = (unsigned)v;
        return 0;
    }
    f = conninfo_field(c, key);
    if (*f != NULL) {
        snprintf(msg, msglen, "\"%s\" is given twice", key);
        return -1;
    }
    if (*val == '\0') {
        snprintf(msg, msglen, "\"%s\" is empty", key);
        return -1;
    }
    if (strcmp(key, "port") == 0) {
        char *end;
        long v = strtol(val, &end, 10);

        if (*end != '\0' || v < 1 || v > 65535) {
            snprintf(msg, msglen, "port must be 1..65535, got \"%.32s\"", val);
            return -1;
        }
    }
    if (strcmp(key, "host") == 0 && strchr(val, ',') != NULL) {
        snprintf(msg, msglen, "host names one server (several hosts are not supported)");
        return -1;
    }
    if (strcmp(key, "sslmode") == 0) {
        for (i = 0; sslmodes[i] != NULL && strcmp(sslmodes[i], val) != 0; i++)
            ;
        if (sslmodes[i] == NULL) {
            snprintf(msg, msglen, "sslmode \"%.32s\" is not one of disable, allow, prefer, "
                     "require, verify-ca, verify-full", val);
            return -1;
        }
    }
    *f = xstrdup(val);
    return 0;
}

int
adm_pg_conninfo_parse(const char *s, struct adm_pg_conf *c, char *msg, size_t msglen)
{
    char key[64], *val = xmalloc(strlen(s) + 1);
    size_t k, v;

    conninfo_clear(c);
    if (strncmp(s, "postgresql://", 13) == 0 || strncmp(s, "postgres://", 11) == 0) {
        snprintf(msg, msglen, "a URI is not supported: use the key=value form "
                 "(\"host=... dbname=...\")");
        goto fail;
    }
    for (;;) {
        while (isspace((unsigned char)*s))
            s++;
        if (*s == '\0')
            break;
        for (k = 0; *s != '\0' && *s != '=' && !isspace((unsigned char)*s); s++) {
            if (k + 1 >= sizeof(key)) {
                snprintf(msg, msglen, "a key is too long");
                goto fail;
            }
            key[k++] = *s;
        }
        key[k] = '\0';
        while (isspace((unsigned char)*s))
            s++;
        if (*s != '=') {
            snprintf(msg, msglen, "missing \"=\" after \"%s\"", key);
            goto fail;
        }
        s++;
        while (isspace((unsigned char)*s))
            s++;
        v = 0;
        if (*s == '\'') {
            for (s++; *s != '\''; s++) {
                if (*s == '\\' && s[1] != '\0')
                    s++;
                if (*s == '\0') {
                    snprintf(msg, msglen, "unterminated quoted value of \"%s\"", key);
                    goto fail;
                }
                val[v++] = *s;
            }
            s++;
        } else {
            for (; *s != '\0' && !isspace((unsigned char)*s); s++) {
                if (*s == '\\' && s[1] != '\0')
                    s++;
                val[v++] = *s;
            }
        }
        val[v] = '\0';
        if (k == 0) {
            snprintf(msg, msglen, "a value without a key");
            goto fail;
        }
        if (conninfo_set(c, key, val, msg, msglen) != 0)
            goto fail;
    }
    free(val);
    return 0;
fail:
    free(val);
    conninfo_clear(c);
    return -1;
}

static bool
fleet_name_ok(const char *s)
{
    size_t i;

    for (i = 0; s[i] != '\0'; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '.' && s[i] != '-')
            return false;
    return i >= 1 && i <= ADM_PG_FLEET_MAX;
}

static bool
instance_name_ok(const char *s)
{
    size_t i;

    for (i = 0; s[i] != '\0'; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return false;
    return i >= 1 && i <= ADM_PG_INSTANCE_MAX;
}

int
adm_pg_conf_parse(json_t *j, const char *path, const char *dir, struct adm_pg_conf **out,
                  struct conf_err *err)
{
    static const char *const store_keys[] = { "postgres", NULL };
    static const char *const keys[] = {
        "conninfo", "password_file", "fleet", "instance", "start_without",
        "connect_timeout_ms", "statement_timeout_ms", NULL
    };
    struct adm_pg_conf *c;
    char p[192], msg[256];
    const char *s;
    json_t *pg, *v;

    *out = NULL;
    if (!json_is_object(j))
        return conf_fail(err, path, "must be an object");
    if (conf_check_keys(j, path, store_keys, err) != 0)
        return -1;
    if (conf_opt_object(j, "postgres", path, &pg, err) != 0)
        return -1;
    if (pg == NULL)
        return 0;
    conf_join(p, sizeof(p), path, "postgres");
    if (conf_check_keys(pg, p, keys, err) != 0)
        return -1;
    c = xcalloc(1, sizeof(*c));
    c->connect_timeout_ms = 5000;
    c->statement_timeout_ms = 2000;
    if (conf_opt_nonempty(pg, "conninfo", p, &s, err) != 0)
        goto fail;
    if (s == NULL) {
        char q[192];

        conf_fail(err, conf_join(q, sizeof(q), p, "conninfo"), "is required "
                  "(\"host=... dbname=... user=...\")");
        goto fail;
    }
    c->conninfo = xstrdup(s);
    if (adm_pg_conninfo_parse(s, c, msg, sizeof(msg)) != 0) {
        char q[192];

        conf_fail(err, conf_join(q, sizeof(q), p, "conninfo"), "%s", msg);
        goto fail;
    }
    if (c->conninfo_connect_timeout_s != 0)
        c->connect_timeout_ms = c->conninfo_connect_timeout_s * 1000;
    if (conf_opt_nonempty(pg, "password_file", p, &s, err) != 0)
        goto fail;
    if (s != NULL)
        c->password_file = fs_resolve(dir, s);
    if (conf_opt_nonempty(pg, "fleet", p, &s, err) != 0)
        goto fail;
    if (s != NULL && !fleet_name_ok(s)) {
        char q[192];

        conf_fail(err, conf_join(q, sizeof(q), p, "fleet"), "must be 1..%d of "
                  "[A-Za-z0-9_.-], got \"%.64s\"", ADM_PG_FLEET_MAX, s);
        goto fail;
    }
    snprintf(c->fleet, sizeof(c->fleet), "%s", s != NULL ? s : "default");
    if (conf_opt_nonempty(pg, "instance", p, &s, err) != 0)
        goto fail;
    if (s != NULL) {
        if (!instance_name_ok(s)) {
            char q[192];

            conf_fail(err, conf_join(q, sizeof(q), p, "instance"), "must be 1..%d "
                      "printable bytes without spaces", ADM_PG_INSTANCE_MAX);
            goto fail;
        }
        snprintf(c->instance, sizeof(c->instance), "%s", s);
    } else {
        char host[256];

        if (gethostname(host, sizeof(host)) != 0 || (host[sizeof(host) - 1] = '\0',
                                                     !instance_name_ok(host))) {
            char q[192];

            conf_fail(err, conf_join(q, sizeof(q), p, "instance"), "is required: the "
                      "host name cannot serve as the instance name");
            goto fail;
        }
        memcpy(c->instance, host, strlen(host) + 1);   /* checked: at most 63 */
    }
    if ((v = json_object_get(pg, "start_without")) != NULL) {
        if (!json_is_boolean(v)) {
            char q[192];

            conf_fail(err, conf_join(q, sizeof(q), p, "start_without"), "must be true or "
                      "false");
            goto fail;
        }
        c->start_without = json_is_true(v);
    }
    if (conf_opt_uint(pg, "connect_timeout_ms", p, 100, 600000, &c->connect_timeout_ms,
                      err) != 0
        || conf_opt_uint(pg, "statement_timeout_ms", p, 100, 600000,
                         &c->statement_timeout_ms, err) != 0)
        goto fail;
    *out = c;
    return 0;
fail:
    adm_pg_conf_free(c);
    return -1;
}

void
adm_pg_conf_free(struct adm_pg_conf *c)
{
    if (c == NULL)
        return;
    conninfo_clear(c);
    free(c->conninfo);
    free(c->password_file);
    free(c);
}

static char *
dup_or_null(const char *s)
{
    return s != NULL ? xstrdup(s) : NULL;
}

struct adm_pg_conf *
adm_pg_conf_dup(const struct adm_pg_conf *c)
{
    struct adm_pg_conf *d = xmalloc(sizeof(*d));

    *d = *c;
    d->conninfo = dup_or_null(c->conninfo);
    d->host = dup_or_null(c->host);
    d->port = dup_or_null(c->port);
    d->dbname = dup_or_null(c->dbname);
    d->user = dup_or_null(c->user);
    d->sslmode = dup_or_null(c->sslmode);
    d->application_name = dup_or_null(c->application_name);
    d->password_file = dup_or_null(c->password_file);
    return d;
}

static bool
same(const char *a, const char *b)
{
    return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

bool
adm_pg_conf_equal(const struct adm_pg_conf *a, const struct adm_pg_conf *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return same(a->conninfo, b->conninfo) && same(a->password_file, b->password_file)
        && strcmp(a->fleet, b->fleet) == 0 && strcmp(a->instance, b->instance) == 0
        && a->start_without == b->start_without
        && a->connect_timeout_ms == b->connect_timeout_ms
        && a->statement_timeout_ms == b->statement_timeout_ms;
}
