/*
 * proxy/conf: loads the configuration file into an immutable struct
 * px_conf. It owns the top level, the service skeleton (name, mode, listen
 * addresses, servers, timeouts, limits) and the error message; the routing
 * keys go to rt_conf_parse() and the health, rollback and plan sections to
 * health/conf.c.
 *
 * Design: the file is read into memory once and parsed by jansson with
 * JSON_REJECT_DUPLICATES. Parsers report a JSON path ("services[0].rollback
 * .max_error_rate") rather than a position, because jansson keeps no
 * positions for values; conf_json_locate() then walks the original text along
 * that path to find the line and column for the message. The first error
 * stops the load, so the operator gets exactly one line to act on.
 *
 * Plausible mistakes that are still valid (a timeout of 5 ms, a plan that
 * bakes for less than the rollback window) are logged as warnings once the
 * whole file has validated, so a failing load never prints stale warnings.
 *
 * The comparisons at the end read every field of their struct, so that a
 * reload sees any change; tests/unit/test_px_conf_diff.c changes each field
 * in turn from field lists that stop building when a struct gains a field.
 *
 * Workload: runs at startup and on each SIGHUP, never on the data path.
 */
#include "proxy/conf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <jansson.h>

#include "admin/store_pg_conf.h"
#include "health/gate_conf.h"
#include "lib/conf.h"
#include "lib/fs.h"
#include "lib/hmap.h"
#include "lib/log.h"
#include "lib/xmalloc.h"
#include "proxy/tls_up.h"
#include "proxy/tls_conf.h"
#include "proxy/webhook.h"
#include "proxy/shadow_conf.h"

#define PX_CONF_MAX_BYTES   (16u << 20)   /* a larger file is surely not a config */
#define PX_MAX_LISTEN       64u           /* listen addresses per service */
#define PX_NAME_MAX         63u           /* service name length */

/* ------------------------------------------------------------------ */
/* Addresses                                                           */

int
px_addr_parse(const char *text, struct px_addr *out)
{
    char host[INET6_ADDRSTRLEN];
    const char *h, *colon, *port;
    size_t hlen, i, plen;
    unsigned long pnum = 0;
    struct px_addr a;

    if (strlen(text) >= sizeof(a.text))
        return -1;
    memset(&a, 0, sizeof(a));
    if (text[0] == '[') {
        const char *rb = strchr(text, ']');

        if (rb == NULL || rb[1] != ':')
            return -1;
        h = text + 1;
        hlen = (size_t)(rb - h);
        colon = rb + 1;
    } else {
        colon = strchr(text, ':');
        if (colon == NULL || strchr(colon + 1, ':') != NULL)
            return -1;
        h = text;
        hlen = (size_t)(colon - text);
    }
    port = colon + 1;
    plen = strlen(port);
    if (hlen == 0 || hlen >= sizeof(host) || plen == 0 || plen > 5)
        return -1;
    for (i = 0; i < plen; i++) {
        if (port[i] < '0' || port[i] > '9')
            return -1;
        pnum = pnum * 10 + (unsigned long)(port[i] - '0');
    }
    if (pnum < 1 || pnum > 65535)
        return -1;
    memcpy(host, h, hlen);
    host[hlen] = '\0';

    if (text[0] == '[') {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a.ss;

        if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
            return -1;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)pnum);
        a.len = sizeof(*sin6);
    } else {
        struct sockaddr_in *sin = (struct sockaddr_in *)&a.ss;

        if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
            return -1;
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)pnum);
        a.len = sizeof(*sin);
    }
    memcpy(a.text, text, strlen(text) + 1);
    *out = a;
    return 0;
}

/* Same family and port; <exact>: same address, otherwise also when either
 * address is the wildcard (binding both would split or fail). */
static bool
addr_clash(const struct px_addr *a, const struct px_addr *b, bool exact)
{
    if (a->ss.ss_family != b->ss.ss_family)
        return false;
    if (a->ss.ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)&a->ss, *y = (const void *)&b->ss;

        if (x->sin_port != y->sin_port)
            return false;
        if (x->sin_addr.s_addr == y->sin_addr.s_addr)
            return true;
        return !exact && (x->sin_addr.s_addr == htonl(INADDR_ANY) ||
                          y->sin_addr.s_addr == htonl(INADDR_ANY));
    } else {
        const struct sockaddr_in6 *x = (const void *)&a->ss, *y = (const void *)&b->ss;

        if (x->sin6_port != y->sin6_port)
            return false;
        if (memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0)
            return true;
        return !exact && (IN6_IS_ADDR_UNSPECIFIED(&x->sin6_addr) ||
                          IN6_IS_ADDR_UNSPECIFIED(&y->sin6_addr));
    }
}

/* ------------------------------------------------------------------ */
/* Typed getters: each fails with the JSON path of the offending value  */

/* "<dir>/<rel>" for a relative <rel>, a copy of <rel> otherwise. */
static char *
resolve(const char *dir, const char *rel)
{
    return fs_resolve(dir, rel);
}

/* Reads optional file path member <key> of <obj>, resolved against <dir>.
 * <*out> stays NULL when the key is absent. */
static int
opt_path(json_t *obj, const char *key, const char *prefix, const char *dir,
         char **out, struct conf_err *err)
{
    const char *s;

    if (conf_opt_nonempty(obj, key, prefix, &s, err) != 0)
        return -1;
    if (s != NULL)
        *out = resolve(dir, s);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Sections                                                            */

static int
parse_admin(json_t *j, struct px_conf *c, struct conf_err *err)
{
    static const char *const keys[] = {
        "socket", "socket_mode", "socket_group", "listen", "token_file",
        "read_token_required", "require_reason", NULL
    };
    struct sockaddr_un sun;
    struct px_addr a;
    const char *s;
    json_t *v;
    size_t i, n;

    if (conf_check_keys(j, "admin", keys, err) != 0 ||
        opt_path(j, "socket", "admin", c->dir, &c->admin_socket, err) != 0)
        return -1;
    if (c->admin_socket != NULL && strlen(c->admin_socket) >= sizeof(sun.sun_path))
        return conf_fail(err, "admin.socket",
                         "path too long for a unix socket (%zu bytes, at most %zu)",
                         strlen(c->admin_socket), sizeof(sun.sun_path) - 1);
    if ((v = json_object_get(j, "socket_mode")) != NULL) {
        unsigned mode = 0;

        s = json_is_string(v) ? json_string_value(v) : "";
        n = strlen(s);
        for (i = 0; i < n && s[i] >= '0' && s[i] <= '7'; i++)
            mode = mode * 8 + (unsigned)(s[i] - '0');
        if (n == 0 || n > 4 || i < n || mode > 0777)
            return conf_fail(err, "admin.socket_mode",
                             "must be an octal string from \"0000\" to \"0777\"");
        c->admin_socket_mode = (mode_t)mode;
    }
    if (conf_opt_nonempty(j, "listen", "admin", &s, err) != 0)
        return -1;
    if (s != NULL) {
        if (px_addr_parse(s, &a) != 0)
            return conf_fail(err, "admin.listen",
                             "must be \"IP:PORT\" or \"[IPv6]:PORT\" with a numeric "
                             "address and a port 1..65535");
        c->admin_listen = xstrdup(s);
    }
    if (conf_opt_nonempty(j, "socket_group", "admin", &s, err) != 0)
        return -1;
    if (s != NULL) {
        /* a name or a numeric gid, resolved now so `cutoverd -t` checks it */
        char *end, buf[4096];
        struct group gr, *grp = NULL;
        unsigned long g;

        errno = 0;
        g = strtoul(s, &end, 10);
        if (s[0] >= '0' && s[0] <= '9' && *end == '\0' && errno == 0 && g < 4294967295UL) {
            c->admin_socket_gid = (long)g;
        } else if (getgrnam_r(s, &gr, buf, sizeof(buf), &grp) != 0 || grp == NULL) {
            return conf_fail(err, "admin.socket_group", "no group named \"%s\"", s);
        } else {
            c->admin_socket_gid = (long)grp->gr_gid;
        }
        /* the group is there to be let in: default mode 0660 */
        if (json_object_get(j, "socket_mode") == NULL)
            c->admin_socket_mode = 0660;
    }
    if ((v = json_object_get(j, "read_token_required")) != NULL) {
        if (!json_is_boolean(v))
            return conf_fail(err, "admin.read_token_required", "must be true or false");
        c->admin_read_token_required = json_is_true(v);
    }
    if ((v = json_object_get(j, "require_reason")) != NULL) {
        if (!json_is_boolean(v))
            return conf_fail(err, "admin.require_reason", "must be true or false");
        c->admin_require_reason = json_is_true(v);
    }
    if (opt_path(j, "token_file", "admin", c->dir, &c->admin_token_file, err) != 0)
        return -1;
    if (c->admin_read_token_required && c->admin_token_file == NULL)
        return conf_fail(err, "admin.read_token_required",
                         "needs admin.token_file (no token could ever be accepted)");
    return 0;
}

/* Parses the array of addresses at <path> into a fresh array. */
static int
parse_addrs(json_t *arr, const char *path, unsigned max, unsigned *n,
            struct px_addr **out, struct conf_err *err)
{
    json_t *v;
    size_t i;
    char p[sizeof(err->path)];

    if (!json_is_array(arr))
        return conf_fail(err, path, "must be an array");
    if (json_array_size(arr) == 0)
        return conf_fail(err, path, "must not be empty");
    if (json_array_size(arr) > max)
        return conf_fail(err, path, "must hold at most %u addresses", max);
    *out = xcalloc(json_array_size(arr), sizeof(**out));
    *n = (unsigned)json_array_size(arr);
    json_array_foreach(arr, i, v) {
        conf_join_index(p, sizeof(p), path, i);
        if (!json_is_string(v))
            return conf_fail(err, p, "must be a string");
        if (px_addr_parse(json_string_value(v), &(*out)[i]) != 0)
            return conf_fail(err, p, "must be \"IP:PORT\" or \"[IPv6]:PORT\" with "
                             "a numeric address and a port 1..65535");
    }
    return 0;
}

/* "legacy" or "new": servers and the optional upstream "tls" (its files
 * relative to <dir>; http mode only). */
static int
parse_side(json_t *svc, const char *key, const char *prefix, const char *dir,
           enum px_mode mode, struct px_side_conf *side, struct conf_err *err)
{
    static const char *const keys[] = { "servers", "tls", NULL };
    json_t *j, *servers, *tls;
    char p[sizeof(err->path)], q[sizeof(err->path)];

    if (conf_opt_object(svc, key, prefix, &j, err) != 0)
        return -1;
    conf_join(p, sizeof(p), prefix, key);
    if (j == NULL)
        return conf_fail(err, p, "is required");
    if (conf_check_keys(j, p, keys, err) != 0)
        return -1;
    if ((servers = json_object_get(j, "servers")) == NULL)
        return conf_fail(err, conf_join(q, sizeof(q), p, "servers"), "is required");
    if (parse_addrs(servers, conf_join(q, sizeof(q), p, "servers"), RT_MAX_SERVERS,
                    &side->nservers, &side->servers, err) != 0)
        return -1;
    if ((tls = json_object_get(j, "tls")) == NULL)
        return 0;
    conf_join(q, sizeof(q), p, "tls");
    if (mode != PX_MODE_HTTP)
        return conf_fail(err, q, "upstream TLS is only available in http mode");
    return px_tls_up_parse(tls, q, dir, &side->tls, err);
}

static int
parse_timeouts(json_t *svc, const char *prefix, struct px_timeouts *t,
               struct conf_err *err)
{
    static const char *const keys[] = {
        "client_head_ms", "client_idle_ms", "connect_ms", "server_response_ms",
        "server_idle_ms", NULL
    };
    const long long lo = 1, hi = 86400000;
    json_t *j;
    char p[sizeof(err->path)];

    if (conf_opt_object(svc, "timeouts", prefix, &j, err) != 0)
        return -1;
    if (j == NULL)
        return 0;
    conf_join(p, sizeof(p), prefix, "timeouts");
    if (conf_check_keys(j, p, keys, err) != 0 ||
        conf_opt_uint(j, "client_head_ms", p, lo, hi, &t->client_head_ms, err) != 0 ||
        conf_opt_uint(j, "client_idle_ms", p, lo, hi, &t->client_idle_ms, err) != 0 ||
        conf_opt_uint(j, "connect_ms", p, lo, hi, &t->connect_ms, err) != 0 ||
        conf_opt_uint(j, "server_response_ms", p, lo, hi, &t->server_response_ms, err) != 0 ||
        conf_opt_uint(j, "server_idle_ms", p, lo, hi, &t->server_idle_ms, err) != 0)
        return -1;
    return 0;
}

static int
parse_limits(json_t *svc, const char *prefix, struct px_limits *l,
             struct conf_err *err)
{
    static const char *const keys[] = {
        "head_bytes", "headers", "uri_bytes", "body_bytes", "buffer_body_bytes",
        "chunk_ext_bytes", "max_connections", NULL
    };
    long long body;
    json_t *j;
    char p[sizeof(err->path)];

    if (conf_opt_object(svc, "limits", prefix, &j, err) != 0)
        return -1;
    if (j == NULL)
        return 0;
    conf_join(p, sizeof(p), prefix, "limits");
    body = (long long)l->body_bytes;
    if (conf_check_keys(j, p, keys, err) != 0 ||
        conf_opt_uint(j, "head_bytes", p, 1024, 1048576, &l->head_bytes, err) != 0 ||
        conf_opt_uint(j, "headers", p, 1, 1000, &l->headers, err) != 0 ||
        conf_opt_uint(j, "uri_bytes", p, 16, 1048576, &l->uri_bytes, err) != 0 ||
        conf_opt_int(j, "body_bytes", p, 0, LLONG_MAX, &body, err) != 0 ||
        conf_opt_uint(j, "buffer_body_bytes", p, 0, 16777216, &l->buffer_body_bytes, err) != 0 ||
        conf_opt_uint(j, "chunk_ext_bytes", p, 1, 65536, &l->chunk_ext_bytes, err) != 0 ||
        conf_opt_uint(j, "max_connections", p, 0, 10000000, &l->max_connections, err) != 0)
        return -1;
    l->body_bytes = (uint64_t)body;
    return 0;
}

static int
parse_pool(json_t *svc, const char *prefix, struct px_pool_conf *pc,
           struct conf_err *err)
{
    static const char *const keys[] = { "max_idle", "idle_timeout_ms", NULL };
    json_t *j;
    char p[sizeof(err->path)];

    if (conf_opt_object(svc, "pool", prefix, &j, err) != 0)
        return -1;
    if (j == NULL)
        return 0;
    conf_join(p, sizeof(p), prefix, "pool");
    if (conf_check_keys(j, p, keys, err) != 0 ||
        conf_opt_uint(j, "max_idle", p, 0, 10000, &pc->max_idle, err) != 0 ||
        conf_opt_uint(j, "idle_timeout_ms", p, 1, 3600000, &pc->idle_timeout_ms, err) != 0)
        return -1;
    return 0;
}

static bool
is_service_name(const char *s)
{
    size_t n = strlen(s), i;

    if (n == 0 || n > PX_NAME_MAX)
        return false;
    for (i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '.' ||
              s[i] == '-'))
            return false;
    return true;
}

/* What the checks across services look up while the services are parsed
 * (so that a config of n services costs n lookups, not n^2 compares): the
 * valid names so far, the listen addresses so far by family and port (the
 * first 4 bytes of a sockaddr_in or sockaddr_in6), with their place as
 * i * PX_MAX_LISTEN + k. */
struct conf_idx {
    struct hmap names, ports;
};

/* Fails when listen address <k> of service <i> clashes with one listed
 * before it, in this service or an earlier one (the first such one); then
 * indexes it. */
static int
check_listen_clash(const struct px_conf *c, unsigned i, unsigned k, struct conf_idx *ix,
                   struct conf_err *err)
{
    const struct px_addr *a = &c->services[i].listen[k];
    const struct px_addr *o = NULL;
    unsigned pos = 0, v, first = UINT_MAX;
    char p[sizeof(err->path)];

    while (hmap_next(&ix->ports, &a->ss, 4, &pos, &v))
        if (v < first && addr_clash(a, &c->services[v / PX_MAX_LISTEN].listen[v % PX_MAX_LISTEN],
                                    false))
            first = v;
    hmap_put(&ix->ports, &a->ss, 4, i * PX_MAX_LISTEN + k);
    if (first == UINT_MAX)
        return 0;
    o = &c->services[first / PX_MAX_LISTEN].listen[first % PX_MAX_LISTEN];
    snprintf(p, sizeof(p), "services[%u].listen[%u]", i, k);
    if (addr_clash(a, o, true))
        return conf_fail(err, p, "%s is already used by service \"%s\"",
                         a->text, c->services[first / PX_MAX_LISTEN].name);
    return conf_fail(err, p, "%s overlaps %s of service \"%s\"",
                     a->text, o->text, c->services[first / PX_MAX_LISTEN].name);
}

/* override.secret_file of service <j> (at <pre>), when there is one: read
 * now, at every load, into the routing keys <route>. Its text is never
 * part of a message. */
static int
load_override_secret(json_t *j, const char *pre, const char *dir, struct rt_conf *route,
                     struct conf_err *err)
{
    json_t *ov = json_object_get(j, "override");
    char p[sizeof(err->path)], ferr[sizeof(err->msg)];
    char *file = NULL, *text = NULL;
    const char *why;
    size_t len = 0;
    int rc;

    if (ov == NULL || json_object_get(ov, "secret_file") == NULL)
        return 0;
    conf_join(p, sizeof(p), pre, "override");
    if (opt_path(ov, "secret_file", p, dir, &file, err) != 0)
        return -1;
    conf_join(p, sizeof(p), pre, "override.secret_file");
    if (fs_read_private(file, 4096, &text, &len, ferr, sizeof(ferr)) != 0) {
        rc = conf_fail(err, p, "cannot read the secret: %s", ferr);
    } else if (rt_conf_set_secret(route, text, len, &why) != 0) {
        rc = conf_fail(err, p, "%.160s %s", file, why);
    } else {
        rc = 0;
    }
    if (text != NULL) {
        explicit_bzero(text, len);
        free(text);
    }
    free(file);
    return rc;
}

/* Records the error in <err> in <l> when <rc> says a step failed; returns
 * <rc>. The steps of a service or of the top level go on after a failure, so
 * that one run reports every error it can find. */
static int
keep(struct conf_errlist *l, const struct conf_err *err, int rc)
{
    if (rc != 0)
        conf_errlist_add(l, err);
    return rc;
}

/* Checks service <i>'s listen addresses against those before it and
 * against admin.listen. */
static void
check_listen(const struct px_conf *c, unsigned i, struct conf_idx *ix, struct conf_errlist *l)
{
    const struct px_service_conf *s = &c->services[i];
    struct conf_err err;
    struct px_addr admin;
    char p[sizeof(err.path)];
    unsigned k;

    for (k = 0; k < s->nlisten; k++) {
        if (keep(l, &err, check_listen_clash(c, i, k, ix, &err)) != 0)
            continue;
        if (c->admin_listen == NULL || px_addr_parse(c->admin_listen, &admin) != 0
            || !addr_clash(&s->listen[k], &admin, false))
            continue;
        snprintf(p, sizeof(p), "services[%u].listen[%u]", i, k);
        conf_fail(&err, p, "%s %s admin.listen (%s)",
                  s->listen[k].text, addr_clash(&s->listen[k], &admin, true)
                  ? "is also" : "overlaps", c->admin_listen);
        conf_errlist_add(l, &err);
    }
}

/* Parses service <i> into c->services[i], adding every error found to
 * <l>. Returns 0, or -1 when it found any. */
static int
parse_service(json_t *j, struct px_conf *c, unsigned i, struct conf_idx *ix,
              struct conf_errlist *l)
{
    static const char *const keys[] = {
        "name", "mode", "listen", "legacy", "new", "weight", "sticky", "override",
        "health", "rollback", "plan", "on_new_down", "timeouts", "limits", "pool", "tls",
        "gates", "shield", "shadow", NULL
    };
    struct px_service_conf *s = &c->services[i];
    struct conf_err e, *err = &e;
    const char *name, *str;
    unsigned n0 = l->n + l->dropped, k;
    json_t *v;
    bool route_ok, listen_ok = false, shadow_ok;
    char pre[32], p[sizeof(err->path)];

    snprintf(pre, sizeof(pre), "services[%u]", i);
    if (!json_is_object(j)) {
        s->name = xstrdup(pre);
        return keep(l, err, conf_fail(err, pre, "must be an object"));
    }
    keep(l, err, conf_check_keys(j, pre, keys, err));

    /* the name: a placeholder when it is bad, so later messages can name it */
    conf_join(p, sizeof(p), pre, "name");
    if (keep(l, err, conf_opt_nonempty(j, "name", pre, &name, err)) != 0)
        name = NULL;
    else if (name == NULL)
        keep(l, err, conf_fail(err, p, "is required"));
    else if (!is_service_name(name))
        name = keep(l, err, conf_fail(err, p, "must be 1..%u characters from A-Z a-z 0-9 "
                                      "_ . -", PX_NAME_MAX)) ? NULL : name;
    if (name != NULL && hmap_get_str(&ix->names, name, &k))
        keep(l, err, conf_fail(err, p, "duplicate service name \"%s\" (also "
                               "services[%u])", name, k));
    s->name = xstrdup(name != NULL ? name : pre);
    if (name != NULL && !hmap_get_str(&ix->names, name, &k))
        hmap_put_str(&ix->names, s->name, i);

    s->mode = PX_MODE_HTTP;
    if (keep(l, err, conf_opt_nonempty(j, "mode", pre, &str, err)) == 0 && str != NULL) {
        if (strcmp(str, "tcp") == 0)
            s->mode = PX_MODE_TCP;
        else if (strcmp(str, "http") != 0)
            keep(l, err, conf_fail(err, conf_join(p, sizeof(p), pre, "mode"),
                                   "must be \"http\" or \"tcp\""));
    }

    conf_join(p, sizeof(p), pre, "listen");
    if ((v = json_object_get(j, "listen")) == NULL)
        keep(l, err, conf_fail(err, p, "is required"));
    else
        listen_ok = keep(l, err, parse_addrs(v, p, PX_MAX_LISTEN, &s->nlisten, &s->listen,
                                             err)) == 0;
    if (!listen_ok)
        s->nlisten = 0;                /* never compared with a half-parsed list */
    else
        check_listen(c, i, ix, l);

    keep(l, err, parse_side(j, "legacy", pre, c->dir, s->mode, &s->side[RT_LEGACY], err));
    keep(l, err, parse_side(j, "new", pre, c->dir, s->mode, &s->side[RT_NEW], err));

    route_ok = keep(l, err, rt_conf_parse(j, s->name, pre, &s->route, err)) == 0;
    if (route_ok)
        route_ok = keep(l, err, load_override_secret(j, pre, c->dir, &s->route, err)) == 0;
    if (route_ok && s->mode == PX_MODE_TCP) {
        /* A TCP stream has no headers or cookies to be sticky on. */
        if (s->route.sticky_by == RT_STICKY_COOKIE ||
            s->route.sticky_by == RT_STICKY_HEADER)
            keep(l, err, conf_fail(err, conf_join(p, sizeof(p), pre, "sticky.by"),
                                   "must be \"client_ip\" in tcp mode"));
        if (s->route.has_override)
            keep(l, err, conf_fail(err, conf_join(p, sizeof(p), pre, "override"),
                                   "only valid in http mode"));
    }

    keep(l, err, hl_check_conf_parse(json_object_get(j, "health"),
                                     conf_join(p, sizeof(p), pre, "health"), &s->health, err));
    keep(l, err, hl_rollback_conf_parse(json_object_get(j, "rollback"),
                                        conf_join(p, sizeof(p), pre, "rollback"),
                                        &s->rollback, err));
    keep(l, err, hl_plan_conf_parse(json_object_get(j, "plan"),
                                    conf_join(p, sizeof(p), pre, "plan"), &s->plan, err));
    keep(l, err, hl_gates_conf_parse(json_object_get(j, "gates"),
                                     conf_join(p, sizeof(p), pre, "gates"), c->dir, &s->gates,
                                     err));

    if (keep(l, err, conf_opt_nonempty(j, "on_new_down", pre, &str, err)) == 0) {
        if (str == NULL || strcmp(str, "fallback") == 0)
            s->on_new_down = HL_NEWDOWN_FALLBACK;
        else if (strcmp(str, "rollback") == 0)
            s->on_new_down = HL_NEWDOWN_ROLLBACK;
        else
            keep(l, err, conf_fail(err, conf_join(p, sizeof(p), pre, "on_new_down"),
                                   "must be \"fallback\" or \"rollback\""));
    }

    keep(l, err, parse_timeouts(j, pre, &s->timeouts, err));
    keep(l, err, parse_limits(j, pre, &s->limits, err));
    keep(l, err, parse_pool(j, pre, &s->pool, err));
    keep(l, err, px_tls_conf_parse(json_object_get(j, "tls"),
                                   conf_join(p, sizeof(p), pre, "tls"), c->dir,
                                   s->mode == PX_MODE_HTTP, &s->tls, err));
    keep(l, err, px_shield_conf_parse(json_object_get(j, "shield"),
                                      conf_join(p, sizeof(p), pre, "shield"), c->file,
                                      s->mode == PX_MODE_HTTP, &s->shield, err));
    shadow_ok = keep(l, err, px_shadow_conf_parse(json_object_get(j, "shadow"),
                                                  conf_join(p, sizeof(p), pre, "shadow"),
                                                  &s->shadow, err)) == 0;
    /* the diff rate exists only with shadow traffic, over HTTP (a "shadow"
     * that did not parse is already reported: its diff rates are not) */
    if (s->shadow != NULL && s->mode != PX_MODE_HTTP)
        keep(l, err, conf_fail(err, conf_join(p, sizeof(p), pre, "shadow"),
                               "only valid in http mode"));
    if (shadow_ok && s->shadow == NULL && s->rollback.max_diff_rate > 0)
        keep(l, err, conf_fail(err, conf_join(p, sizeof(p), pre, "rollback.max_diff_rate"),
                               "needs a \"shadow\" section (the diff rate is shadow "
                               "traffic's)"));
    if (shadow_ok && s->shadow == NULL && s->plan.max_diff_rate > 0)
        keep(l, err, conf_fail(err, conf_join(p, sizeof(p), pre, "plan.max_diff_rate"),
                               "needs a \"shadow\" section (the diff rate is shadow "
                               "traffic's)"));
    return l->n + l->dropped > n0 ? -1 : 0;
}

/* Parses the whole file into <c>, adding every error found to <l>.
 * Returns 0, or -1 when it found any. */
static int
parse_root(json_t *root, struct px_conf *c, struct conf_errlist *l)
{
    static const char *const keys[] = {
        "admin", "state", "audit", "access_log", "workers", "shutdown_grace_ms",
        "policy_tick_ms", "services", "store", "notify", "limits", NULL
    };
    static const char *const file_keys[] = { "file", NULL }, *lim_keys[] = {
        "max_connections", NULL };
    static const struct px_timeouts tdef = {
        .client_head_ms = 10000, .client_idle_ms = 60000, .connect_ms = 2000,
        .server_response_ms = 30000, .server_idle_ms = 60000,
    };
    static const struct px_limits ldef = {
        .head_bytes = 16384, .headers = 100, .uri_bytes = 8192, .body_bytes = 0,
        .buffer_body_bytes = 65536, .chunk_ext_bytes = 4096,
    };
    static const struct px_pool_conf pdef = { .max_idle = 256, .idle_timeout_ms = 4000 };
    struct conf_err e, *err = &e;
    struct conf_idx ix;
    json_t *j, *svcs;
    unsigned i32;
    size_t i;

    if (!json_is_object(root))
        return keep(l, err, conf_fail(err, "", "the top level must be an object"));
    keep(l, err, conf_check_keys(root, "", keys, err));

    if (keep(l, err, conf_opt_object(root, "admin", "", &j, err)) == 0 && j != NULL)
        keep(l, err, parse_admin(j, c, err));
    if (keep(l, err, conf_opt_object(root, "state", "", &j, err)) == 0 && j != NULL
        && keep(l, err, conf_check_keys(j, "state", file_keys, err)) == 0)
        keep(l, err, opt_path(j, "file", "state", c->dir, &c->state_file, err));
    if (keep(l, err, conf_opt_object(root, "audit", "", &j, err)) == 0 && j != NULL
        && keep(l, err, conf_check_keys(j, "audit", file_keys, err)) == 0)
        keep(l, err, opt_path(j, "file", "audit", c->dir, &c->audit_file, err));
    if ((j = json_object_get(root, "store")) != NULL)
        keep(l, err, adm_pg_conf_parse(j, "store", c->dir, &c->store_pg, err));
    if (keep(l, err, conf_opt_object(root, "access_log", "", &j, err)) == 0 && j != NULL
        && keep(l, err, conf_check_keys(j, "access_log", file_keys, err)) == 0
        && keep(l, err, opt_path(j, "file", "access_log", c->dir, &c->access_log_file,
                                 err)) == 0
        && c->access_log_file == NULL)
        keep(l, err, conf_fail(err, "access_log.file", "is required (remove \"access_log\" "
                               "to turn the access log off)"));
    keep(l, err, conf_opt_uint(root, "workers", "", 0, 256, &c->workers, err));
    keep(l, err, conf_opt_uint(root, "shutdown_grace_ms", "", 0, 3600000,
                               &c->shutdown_grace_ms, err));
    keep(l, err, conf_opt_uint(root, "policy_tick_ms", "", 10, 60000, &c->policy_tick_ms,
                               err));
    if (keep(l, err, conf_opt_object(root, "notify", "", &j, err)) == 0 && j != NULL)
        keep(l, err, px_notify_conf_parse(j, c->dir, &c->notify, err));
    if (keep(l, err, conf_opt_object(root, "limits", "", &j, err)) == 0 && j != NULL
        && keep(l, err, conf_check_keys(j, "limits", lim_keys, err)) == 0
        && json_object_get(j, "max_connections") != NULL
        && keep(l, err, conf_opt_uint(j, "max_connections", "limits", 0, 10000000, &i32,
                                      err)) == 0)
        c->max_connections = (long)i32;

    if ((svcs = json_object_get(root, "services")) == NULL)
        return keep(l, err, conf_fail(err, "services", "is required"));
    if (!json_is_array(svcs))
        return keep(l, err, conf_fail(err, "services", "must be an array"));
    if (json_array_size(svcs) == 0)
        return keep(l, err, conf_fail(err, "services", "must not be empty"));
    c->services = xcalloc(json_array_size(svcs), sizeof(*c->services));
    c->nservices = (unsigned)json_array_size(svcs);
    for (i = 0; i < c->nservices; i++) {
        c->services[i].timeouts = tdef;
        c->services[i].limits = ldef;
        c->services[i].pool = pdef;
    }
    hmap_init(&ix.names, c->nservices);
    hmap_init(&ix.ports, c->nservices);
    json_array_foreach(svcs, i, j)
        parse_service(j, c, (unsigned)i, &ix, l);
    hmap_free(&ix.names);
    hmap_free(&ix.ports);
    return l->n + l->dropped > 0 ? -1 : 0;
}

/* ------------------------------------------------------------------ */
/* Messages                                                            */

/* Formats "FILE:LINE:COL: PATH: MSG", or "FILE: PATH: MSG" when <path> is
 * not in <text>. An empty <path> (the top level) is left out. */
static void
format_at(char *buf, size_t len, const char *file, const char *text,
          size_t tlen, const char *path, const char *msg)
{
    int line, col;

    if (conf_json_locate(text, tlen, path, &line, &col) == 0) {
        if (path[0] == '\0')
            snprintf(buf, len, "%s:%d:%d: %s", file, line, col, msg);
        else
            snprintf(buf, len, "%s:%d:%d: %s: %s", file, line, col, path, msg);
    } else {
        snprintf(buf, len, "%s: %s: %s", file, path, msg);
    }
}

/* Logs a warning about <path> in the same format as an error. */
static void warn_at(const struct px_conf *c, const char *text, size_t tlen,
                    const char *path, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void
warn_at(const struct px_conf *c, const char *text, size_t tlen,
        const char *path, const char *fmt, ...)
{
    char msg[256], line[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    format_at(line, sizeof(line), c->file, text, tlen, path, msg);
    log_at(LL_WARN, "conf", 0, "%s", line);
}

/* A value under 100 ms is more likely seconds typed into a _ms key. */
static void
warn_small_ms(const struct px_conf *c, const char *text, size_t tlen,
              const char *prefix, const char *key, unsigned v)
{
    char p[sizeof(((struct conf_err *)0)->path)];

    if (v > 0 && v < 100) {
        conf_join(p, sizeof(p), prefix, key);
        warn_at(c, text, tlen, p,
                "%u is suspiciously small for a value in milliseconds", v);
    }
}

/* Valid but probably not meant: logged, never fatal. */
static void
warn_plausible(const struct px_conf *c, const char *text, size_t tlen)
{
    unsigned i, side, k, m;
    char pre[64], p[sizeof(((struct conf_err *)0)->path)];

    if (c->admin_socket_mode & 0007)
        warn_at(c, text, tlen, "admin.socket_mode",
                "%04o lets every local user control the proxy",
                (unsigned)c->admin_socket_mode);
    warn_small_ms(c, text, tlen, "", "shutdown_grace_ms", c->shutdown_grace_ms);

    for (i = 0; i < c->nservices; i++) {
        const struct px_service_conf *s = &c->services[i];

        snprintf(pre, sizeof(pre), "services[%u].timeouts", i);
        warn_small_ms(c, text, tlen, pre, "client_head_ms", s->timeouts.client_head_ms);
        warn_small_ms(c, text, tlen, pre, "client_idle_ms", s->timeouts.client_idle_ms);
        warn_small_ms(c, text, tlen, pre, "connect_ms", s->timeouts.connect_ms);
        warn_small_ms(c, text, tlen, pre, "server_response_ms",
                      s->timeouts.server_response_ms);
        warn_small_ms(c, text, tlen, pre, "server_idle_ms", s->timeouts.server_idle_ms);
        snprintf(pre, sizeof(pre), "services[%u].health", i);
        if (s->health.type != HL_CHECK_NONE)
            warn_small_ms(c, text, tlen, pre, "timeout_ms", s->health.timeout_ms);

        if (s->limits.uri_bytes > s->limits.head_bytes) {
            snprintf(p, sizeof(p), "services[%u].limits.uri_bytes", i);
            warn_at(c, text, tlen, p, "is larger than head_bytes (%u): a long URI "
                    "gets 431, never 414", s->limits.head_bytes);
        }
        if (s->shadow != NULL && s->shadow->unsafe[0] != '\0') {
            snprintf(p, sizeof(p), "services[%u].shadow.methods", i);
            warn_at(c, text, tlen, p, "copies unsafe methods (%s) to the other side: "
                    "each such request is executed twice", s->shadow->unsafe);
        }
        if (s->plan.nsteps > 0 && !s->rollback.enabled) {
            snprintf(p, sizeof(p), "services[%u].plan", i);
            warn_at(c, text, tlen, p, "runs with automatic rollback disabled");
        } else if (s->plan.nsteps > 0 && s->plan.bake_s < s->rollback.window_s) {
            snprintf(p, sizeof(p), "services[%u].plan.bake_s", i);
            warn_at(c, text, tlen, p, "%u is shorter than rollback.window_s (%u): "
                    "a step can advance before its window has filled",
                    s->plan.bake_s, s->rollback.window_s);
        }

        for (side = 0; side < RT_SIDE__COUNT; side++) {
            const struct px_side_conf *sd = &s->side[side];

            for (k = 0; k < sd->nservers; k++) {
                for (m = 0; m < k; m++)
                    if (addr_clash(&sd->servers[k], &sd->servers[m], true))
                        break;
                snprintf(p, sizeof(p), "services[%u].%s.servers[%u]", i,
                         rt_side_names[side], k);
                if (m < k)
                    warn_at(c, text, tlen, p, "%s is listed twice: it gets a double "
                            "share of its side", sd->servers[k].text);
            }
        }
        for (k = 0; k < s->side[RT_NEW].nservers; k++) {
            for (m = 0; m < s->side[RT_LEGACY].nservers; m++)
                if (addr_clash(&s->side[RT_NEW].servers[k],
                               &s->side[RT_LEGACY].servers[m], true))
                    break;
            if (m < s->side[RT_LEGACY].nservers) {
                snprintf(p, sizeof(p), "services[%u].new.servers[%u]", i, k);
                warn_at(c, text, tlen, p, "%s is also a legacy server: moving "
                        "traffic between the sides changes nothing",
                        s->side[RT_NEW].servers[k].text);
            }
        }
    }
}

/* ------------------------------------------------------------------ */
/* Loading                                                             */

/* Reads all of <file> into a fresh buffer (NUL-terminated for safety).
 * Returns 0, or -1 with a message in <errbuf>. */
static int
read_file(const char *file, char **text, size_t *len, char *errbuf, size_t errlen)
{
    FILE *f = NULL;
    char *buf = NULL;
    size_t cap = 4096, n = 0, got;

    if ((f = fopen(file, "rb")) == NULL)
        goto fail;
    buf = xmalloc(cap + 1);
    while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            if (cap >= PX_CONF_MAX_BYTES) {
                snprintf(errbuf, errlen, "%s: larger than %u bytes", file,
                         PX_CONF_MAX_BYTES);
                fclose(f);
                free(buf);
                return -1;
            }
            cap *= 2;
            buf = xrealloc(buf, cap + 1);
        }
    }
    if (ferror(f))
        goto fail;
    fclose(f);
    buf[n] = '\0';
    *text = buf;
    *len = n;
    return 0;

fail:
    snprintf(errbuf, errlen, "%s: %s", file, strerror(errno));
    if (f != NULL)
        fclose(f);
    free(buf);
    return -1;
}

/* One error of a load with its place, for sorting. */
struct placed_err {
    const struct conf_err *e;
    int line, col;               /* INT_MAX when not found in the text */
    unsigned seq;                /* order found: ties keep it */
};

static int
placed_cmp(const void *a, const void *b)
{
    const struct placed_err *x = a, *y = b;

    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    if (x->col != y->col)
        return x->col < y->col ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* The errors of <l>, at most <max>, by their place in <text>, into <buf>. */
static void
format_errors(char *buf, size_t len, const char *file, const char *text, size_t tlen,
              const struct conf_errlist *l, unsigned max)
{
    struct placed_err pe[CONF_ERRORS_MAX];
    unsigned i, n = l->n < max ? l->n : max, total = l->n + l->dropped;
    size_t k = 0;

    for (i = 0; i < l->n; i++) {
        pe[i] = (struct placed_err){ .e = &l->e[i], .seq = i };
        if (conf_json_locate(text, tlen, l->e[i].path, &pe[i].line, &pe[i].col) != 0)
            pe[i].line = pe[i].col = INT_MAX;
    }
    qsort(pe, l->n, sizeof(pe[0]), placed_cmp);
    buf[0] = '\0';
    for (i = 0; i < n && k + 1 < len; i++) {
        format_at(buf + k, len - k, file, text, tlen, pe[i].e->path, pe[i].e->msg);
        k += strlen(buf + k);
        if (i + 1 < n && k + 1 < len)
            buf[k++] = '\n', buf[k] = '\0';
    }
    if (total > 1 && n > 1 && k + 1 < len) {
        if (total > n)
            snprintf(buf + k, len - k, "\n%s: %u errors (the first %u shown)", file, total, n);
        else
            snprintf(buf + k, len - k, "\n%s: %u errors", file, total);
    }
}

/* Blanks the comment lines of <text>: a line whose first non-blank
 * character is '#' becomes spaces (its newline stays, so every line and
 * column of the JSON is where the file has it). A JSON string never spans
 * a line, so no string can hold such a line. */
static void
blank_comments(char *text, size_t len)
{
    size_t i = 0, k;

    while (i < len) {
        for (k = i; k < len && (text[k] == ' ' || text[k] == '\t'); k++)
            ;
        if (k < len && text[k] == '#')
            for (; k < len && text[k] != '\n'; k++)
                text[k] = ' ';
        while (k < len && text[k] != '\n')
            k++;
        i = k + 1;
    }
}

struct px_conf *
px_conf_load(const char *file, char *errbuf, size_t errlen)
{
    return px_conf_load_n(file, 1, errbuf, errlen);
}

struct px_conf *
px_conf_load_n(const char *file, unsigned max, char *errbuf, size_t errlen)
{
    struct px_conf *c = NULL;
    json_t *root = NULL;
    char *text = NULL;
    json_error_t je;
    struct conf_errlist *errs = NULL;
    size_t len;
    int rc;

    if (read_file(file, &text, &len, errbuf, errlen) != 0)
        goto fail;
    blank_comments(text, len);
    root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (root == NULL) {
        /* jansson reports column 0 at the start of a line (end of file). */
        snprintf(errbuf, errlen, "%s:%d:%d: %s", file, je.line,
                 je.column > 0 ? je.column : 1, je.text);
        goto fail;
    }

    c = xcalloc(1, sizeof(*c));
    c->file = xstrdup(file);
    c->dir = fs_dir_of(file);
    c->admin_socket_mode = 0600;
    c->admin_socket_gid = -1;
    c->workers = 0;
    c->shutdown_grace_ms = 10000;
    c->policy_tick_ms = 100;           /* PX_TICK_MS (proxy/tick.h) */
    c->max_connections = -1;
    errs = xcalloc(1, sizeof(*errs));
    conf_collect(errs);
    rc = parse_root(root, c, errs);
    conf_collect(NULL);
    if (rc != 0) {
        format_errors(errbuf, errlen, file, text, len, errs,
                      max < 1 ? 1 : max > CONF_ERRORS_MAX ? CONF_ERRORS_MAX : max);
        goto fail;
    }
    warn_plausible(c, text, len);
    json_decref(root);
    free(text);
    free(errs);
    return c;

fail:
    json_decref(root);
    free(text);
    free(errs);
    px_conf_free(c);
    return NULL;
}

void
px_conf_free(struct px_conf *c)
{
    unsigned i;

    if (c == NULL)
        return;
    for (i = 0; i < c->nservices; i++) {
        struct px_service_conf *s = &c->services[i];

        explicit_bzero(s->route.secret, sizeof(s->route.secret));
        free(s->name);
        free(s->listen);
        free(s->side[RT_LEGACY].servers);
        free(s->side[RT_NEW].servers);
        px_tls_up_put(s->side[RT_LEGACY].tls);
        px_tls_up_put(s->side[RT_NEW].tls);
        px_tls_conf_free(s->tls);
        hl_gates_conf_free(&s->gates);
        px_shadow_conf_free(s->shadow);
    }
    free(c->services);
    free(c->file);
    free(c->dir);
    free(c->admin_socket);
    free(c->admin_listen);
    free(c->admin_token_file);
    free(c->state_file);
    adm_pg_conf_free(c->store_pg);
    free(c->audit_file);
    free(c->access_log_file);
    px_notify_conf_free(c->notify);
    free(c);
}

/* ---- comparisons (a reload's old and new configs) ------------------------ */

bool
px_addr_same(const struct px_addr *a, const struct px_addr *b)
{
    return a->len == b->len && a->len <= sizeof(a->ss) && memcmp(&a->ss, &b->ss, a->len) == 0;
}

bool
px_addr_equal(const struct px_addr *a, const struct px_addr *b)
{
    return px_addr_same(a, b) && strncmp(a->text, b->text, sizeof(a->text)) == 0;
}

static bool
str_same(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static bool
addrs_equal(const struct px_addr *a, unsigned na, const struct px_addr *b, unsigned nb)
{
    unsigned i;

    if (na != nb)
        return false;
    for (i = 0; i < na; i++)
        if (!px_addr_equal(&a[i], &b[i]))
            return false;
    return true;
}

static bool
side_equal(const struct px_side_conf *a, const struct px_side_conf *b)
{
    return addrs_equal(a->servers, a->nservers, b->servers, b->nservers);
}

static bool
timeouts_equal(const struct px_timeouts *a, const struct px_timeouts *b)
{
    return a->client_head_ms == b->client_head_ms && a->client_idle_ms == b->client_idle_ms &&
           a->connect_ms == b->connect_ms && a->server_response_ms == b->server_response_ms &&
           a->server_idle_ms == b->server_idle_ms;
}

static bool
limits_equal(const struct px_limits *a, const struct px_limits *b)
{
    return a->head_bytes == b->head_bytes && a->headers == b->headers &&
           a->uri_bytes == b->uri_bytes && a->body_bytes == b->body_bytes &&
           a->buffer_body_bytes == b->buffer_body_bytes &&
           a->chunk_ext_bytes == b->chunk_ext_bytes && a->max_connections == b->max_connections;
}

static bool
pool_equal(const struct px_pool_conf *a, const struct px_pool_conf *b)
{
    return a->max_idle == b->max_idle && a->idle_timeout_ms == b->idle_timeout_ms;
}

unsigned
px_service_conf_diff(const struct px_service_conf *a, const struct px_service_conf *b)
{
    unsigned d = 0, side;

    if (!str_same(a->name, b->name))
        d |= PX_SVC_NAME;
    if (a->mode != b->mode)
        d |= PX_SVC_MODE;
    if (!addrs_equal(a->listen, a->nlisten, b->listen, b->nlisten))
        d |= PX_SVC_LISTEN;
    for (side = 0; side < RT_SIDE__COUNT; side++) {
        if (!side_equal(&a->side[side], &b->side[side]))
            d |= PX_SVC_SERVERS;
        if (!px_tls_up_equal(a->side[side].tls, b->side[side].tls))
            d |= PX_SVC_UP_TLS;
    }
    if (!rt_conf_equal(&a->route, &b->route))
        d |= PX_SVC_ROUTE;
    if (!hl_check_conf_equal(&a->health, &b->health))
        d |= PX_SVC_HEALTH;
    if (!hl_rollback_conf_equal(&a->rollback, &b->rollback))
        d |= PX_SVC_ROLLBACK;
    if (a->rollback.window_s != b->rollback.window_s)
        d |= PX_SVC_WINDOW;
    if (!hl_plan_conf_equal(&a->plan, &b->plan))
        d |= PX_SVC_PLAN;
    if (a->on_new_down != b->on_new_down)
        d |= PX_SVC_NEW_DOWN;
    if (!timeouts_equal(&a->timeouts, &b->timeouts))
        d |= PX_SVC_TIMEOUTS;
    if (!limits_equal(&a->limits, &b->limits))
        d |= PX_SVC_LIMITS;
    if (!pool_equal(&a->pool, &b->pool))
        d |= PX_SVC_POOL;
    if (!px_tls_conf_equal(a->tls, b->tls))
        d |= PX_SVC_TLS;
    if (!hl_gates_conf_equal(&a->gates, &b->gates))
        d |= PX_SVC_GATES;
    if (!px_shield_conf_equal(&a->shield, &b->shield))
        d |= PX_SVC_SHIELD;
    if (!px_shadow_conf_equal(a->shadow, b->shadow))
        d |= PX_SVC_SHADOW;
    return d;
}

bool
px_service_conf_equal(const struct px_service_conf *a, const struct px_service_conf *b)
{
    return px_service_conf_diff(a, b) == 0;
}

unsigned
px_conf_diff(const struct px_conf *a, const struct px_conf *b)
{
    unsigned d = 0, i;

    if (!str_same(a->file, b->file) || !str_same(a->dir, b->dir))
        d |= PX_CONF_FILE;
    if (!str_same(a->admin_socket, b->admin_socket) || a->admin_socket_mode != b->admin_socket_mode)
        d |= PX_CONF_ADMIN_SOCKET;
    if (a->admin_socket_gid != b->admin_socket_gid)
        d |= PX_CONF_ADMIN_GROUP;
    if (!str_same(a->admin_listen, b->admin_listen) ||
        !str_same(a->admin_token_file, b->admin_token_file))
        d |= PX_CONF_ADMIN_HTTP;
    if (a->admin_read_token_required != b->admin_read_token_required)
        d |= PX_CONF_ADMIN_READ;
    if (a->admin_require_reason != b->admin_require_reason)
        d |= PX_CONF_ADMIN_REASON;
    if (!str_same(a->state_file, b->state_file) || !str_same(a->audit_file, b->audit_file)
        || !adm_pg_conf_equal(a->store_pg, b->store_pg))
        d |= PX_CONF_STATE_FILES;
    if (!str_same(a->access_log_file, b->access_log_file))
        d |= PX_CONF_ACCESS_LOG;
    if (!px_notify_conf_equal(a->notify, b->notify))
        d |= PX_CONF_NOTIFY;
    if (a->workers != b->workers)
        d |= PX_CONF_WORKERS;
    if (a->shutdown_grace_ms != b->shutdown_grace_ms)
        d |= PX_CONF_GRACE;
    if (a->policy_tick_ms != b->policy_tick_ms)
        d |= PX_CONF_POLICY_TICK;
    if (a->max_connections != b->max_connections)
        d |= PX_CONF_LIMITS;
    if (a->nservices != b->nservices)
        d |= PX_CONF_SERVICES;
    for (i = 0; i < a->nservices && i < b->nservices; i++)
        if (!px_service_conf_equal(&a->services[i], &b->services[i]))
            d |= PX_CONF_SERVICES;
    return d;
}
