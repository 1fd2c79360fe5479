/*
 * proxy/conf: loads and validates the whole configuration file into an
 * immutable struct px_conf. Strict: an unknown key is an error, every number
 * is range-checked, and every error names the file, the line and column where
 * they can be found, and the JSON path. Delegates the routing keys to
 * router/conf.c and the health/rollback/plan sections to health/conf.c.
 * Compares two loaded configs for a reload (px_conf_diff and the service
 * and address comparisons), every field of each struct.
 */
#ifndef CUTOVER_PROXY_CONF_H
#define CUTOVER_PROXY_CONF_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "admin/store_pg_conf.h"
#include "health/conf.h"
#include "health/gate.h"
#include "router/conf.h"
#include "proxy/shield_conf.h"

/* A resolved numeric address (no DNS at runtime). */
struct px_addr {
    struct sockaddr_storage ss;
    socklen_t len;
    char text[64];               /* as written in the config: "127.0.0.1:9001" */
};

enum px_mode { PX_MODE_HTTP = 0, PX_MODE_TCP };

struct px_timeouts {             /* all in milliseconds, 1..86400000 */
    unsigned client_head_ms;     /* default 10000: first byte to end of head */
    unsigned client_idle_ms;     /* default 60000: keep-alive wait for next request */
    unsigned connect_ms;         /* default 2000 */
    unsigned server_response_ms; /* default 30000: request sent to response head */
    unsigned server_idle_ms;     /* default 60000: no byte either way mid-body / tunnel */
};

struct px_limits {
    unsigned head_bytes;         /* default 16384, 1024..1048576: 431 past it */
    unsigned headers;            /* default 100, 1..1000 */
    unsigned uri_bytes;          /* default 8192, 16..1048576: 414 past it */
    uint64_t body_bytes;         /* default 0 = unlimited: 413 past it */
    unsigned buffer_body_bytes;  /* default 65536, 0..16777216 */
    unsigned chunk_ext_bytes;    /* default 4096, 1..65536: chunk extensions per size line */
    unsigned max_connections;    /* default 0 = none, 1..10000000: client connections
                                  * of the service over every loop; at the cap its
                                  * listeners stop accepting (proxy/listen.c) */
};

/* Upstream keep-alive pool, per server. The idle timeout stays below the
 * usual backend keep-alive timeouts (5 s for Node and Apache), so the proxy
 * closes an idle connection before the backend does. */
struct px_pool_conf {
    unsigned max_idle;           /* idle connections kept per server, default 256, 0..10000 (0: none) */
    unsigned idle_timeout_ms;    /* default 4000, 1..3600000 */
};

struct px_tls_up;
struct px_tls_conf;                /* proxy/tls_conf.h */
struct px_shadow_conf;             /* proxy/shadow_conf.h */

struct px_side_conf {
    unsigned nservers;           /* 1..RT_MAX_SERVERS */
    struct px_addr *servers;     /* owned */
    struct px_tls_up *tls;       /* one reference (proxy/tls_up.h): "tls" of the
                                  * side, its context built at load; NULL = plain */
};

struct px_service_conf {
    char *name;                  /* owned; [A-Za-z0-9_.-]{1,63}, unique */
    enum px_mode mode;           /* default http */
    unsigned nlisten;            /* >= 1 */
    struct px_addr *listen;      /* owned */
    struct px_side_conf side[2]; /* indexed by enum rt_side */
    struct rt_conf route;        /* weight (initial), sticky, override */
    struct hl_check_conf health;
    struct hl_rollback_conf rollback;
    struct hl_plan_conf plan;
    enum hl_on_new_down on_new_down;
    struct px_timeouts timeouts;
    struct px_limits limits;
    struct px_pool_conf pool;
    struct px_tls_conf *tls;     /* owned: "tls" (proxy/tls_conf.h), the listener
                                  * side's TLS; NULL = plain */
    struct hl_gates_conf gates;  /* owned: "gates" (health/gate_conf.h); n 0 = none */
    struct px_shield_conf shield;/* "shield" (proxy/shield_conf.h); off in tcp mode */
    struct px_shadow_conf *shadow;   /* owned: "shadow" (proxy/shadow_conf.h); NULL = none */
};

struct px_conf {
    char *file;                  /* owned: path as given */
    char *dir;                   /* owned: directory of <file>, for relative paths */
    char *admin_socket;          /* owned: absolute or resolved against <dir>; NULL = default */
    mode_t admin_socket_mode;    /* default 0600; 0660 with a socket_group */
    long admin_socket_gid;       /* admin.socket_group resolved; -1 = none */
    char *admin_listen;          /* owned; NULL = no HTTP admin endpoint */
    char *admin_token_file;      /* owned; NULL = none (every token request is 401) */
    bool admin_read_token_required;  /* GET /status, /metrics need a token too */
    bool admin_require_reason;   /* changing commands need a "reason" */
    char *state_file;            /* owned; NULL = default */
    char *audit_file;            /* owned; NULL = default */
    struct adm_pg_conf *store_pg;    /* owned: "store": {"postgres"} (admin/store_pg_conf.h);
                                      * NULL = the file store */
    char *access_log_file;       /* owned: "access_log": {"file"}, resolved against
                                  * <dir>; NULL = no access log (the default) */
    struct px_notify_conf *notify;   /* owned: "notify" (proxy/webhook.h); NULL = none */
    unsigned workers;            /* 0 = one per CPU; 0..256 */
    unsigned shutdown_grace_ms;  /* default 10000, 0..3600000 */
    unsigned policy_tick_ms;     /* the policy tick's period (proxy/tick.h): default
                                  * PX_TICK_MS (100), 10..60000; read at startup */
    long max_connections;        /* "limits": {"max_connections"}: client connections of
                                  * the process, 0..10000000, 0 = none; -1 = not set:
                                  * derived from RLIMIT_NOFILE (proxy/listen.h) */
    unsigned nservices;          /* >= 1 */
    struct px_service_conf *services;   /* owned */
};

/* Loads <file>. Returns the config (caller frees with px_conf_free) or NULL
 * with a complete one-line message in <errbuf>: "FILE:LINE:COL: message" for
 * syntax errors, "FILE:LINE:COL: PATH: message" for semantic errors (or
 * "FILE: PATH: message" when the place cannot be found). */
struct px_conf *px_conf_load(const char *file, char *errbuf, size_t errlen);

/* px_conf_load() reporting up to <max> errors (1..CONF_ERRORS_MAX; a load
 * goes on after a semantic error to find the others), one line each in
 * the order of their place in the file, joined by "\n"; with more than one,
 * a last line "FILE: N errors" (and how many more were found than shown).
 * A syntax error stops the parse: it is the only one. For `cutoverd -t` and
 * the start; a reload logs one line, so it uses px_conf_load(). */
struct px_conf *px_conf_load_n(const char *file, unsigned max, char *errbuf, size_t errlen);

void px_conf_free(struct px_conf *c);

/* Parses "127.0.0.1:8080" or "[::1]:8080" (numeric only) into <out>. 0 / -1. */
int px_addr_parse(const char *text, struct px_addr *out);

/* True when <a> and <b> are the same numeric address and port (a reload
 * matches listeners and servers this way). */
bool px_addr_same(const struct px_addr *a, const struct px_addr *b);

/* The same, and written the same way (<text>). */
bool px_addr_equal(const struct px_addr *a, const struct px_addr *b);

/* What differs between two service configs, as bits: the reload keeps a
 * service of the same name and acts on what changed. */
enum px_svc_change {
    PX_SVC_NAME     = 1u << 0,
    PX_SVC_MODE     = 1u << 1,
    PX_SVC_LISTEN   = 1u << 2,   /* listen addresses (count, order, address, text) */
    PX_SVC_SERVERS  = 1u << 3,   /* either side's servers, the same way */
    PX_SVC_ROUTE    = 1u << 4,   /* routing keys (rt_conf_equal) */
    PX_SVC_HEALTH   = 1u << 5,   /* "health": its checkers restart */
    PX_SVC_ROLLBACK = 1u << 6,   /* "rollback", any field */
    PX_SVC_WINDOW   = 1u << 7,   /* rollback.window_s: the windows start afresh */
    PX_SVC_PLAN     = 1u << 8,
    PX_SVC_NEW_DOWN = 1u << 9,   /* on_new_down */
    PX_SVC_TIMEOUTS = 1u << 10,
    PX_SVC_LIMITS   = 1u << 11,
    PX_SVC_POOL     = 1u << 12,
    PX_SVC_UP_TLS   = 1u << 13,   /* either side's "tls" (settings or file contents) */
    PX_SVC_TLS      = 1u << 14,   /* "tls" (px_tls_conf_equal) */
    PX_SVC_GATES    = 1u << 15,   /* "gates" (hl_gates_conf_equal) */
    PX_SVC_SHIELD   = 1u << 16,   /* "shield" */
    PX_SVC_SHADOW   = 1u << 17,   /* "shadow" (px_shadow_conf_equal) */
};

/* The PX_SVC_* bits of every field that differs between <a> and <b>
 * (strings and arrays by content); 0 when they are the same. */
unsigned px_service_conf_diff(const struct px_service_conf *a,
                              const struct px_service_conf *b);

/* px_service_conf_diff() == 0. */
bool px_service_conf_equal(const struct px_service_conf *a, const struct px_service_conf *b);

/* What differs between two whole configs, as bits. Most of the top level is
 * read once at startup: a reload says which of those it leaves as they are. */
enum px_conf_change {
    PX_CONF_FILE         = 1u << 0,   /* file, dir */
    PX_CONF_ADMIN_SOCKET = 1u << 1,   /* admin.socket, socket_mode */
    PX_CONF_ADMIN_GROUP  = 1u << 2,   /* admin.socket_group */
    PX_CONF_ADMIN_HTTP   = 1u << 3,   /* admin.listen, token_file */
    PX_CONF_ADMIN_READ   = 1u << 4,   /* admin.read_token_required */
    PX_CONF_STATE_FILES  = 1u << 5,   /* state.file, audit.file, store */
    PX_CONF_ACCESS_LOG   = 1u << 6,
    PX_CONF_WORKERS      = 1u << 7,
    PX_CONF_GRACE        = 1u << 8,   /* shutdown_grace_ms */
    PX_CONF_SERVICES     = 1u << 9,   /* their number, order, or one of them */
    PX_CONF_ADMIN_REASON = 1u << 10,  /* admin.require_reason (a reload applies it) */
    PX_CONF_NOTIFY       = 1u << 11,  /* notify (px_notify_conf_equal) */
    PX_CONF_LIMITS       = 1u << 12,  /* limits.max_connections (a reload applies it) */
    PX_CONF_POLICY_TICK  = 1u << 13,  /* policy_tick_ms */
};

/* The PX_CONF_* bits of every field that differs between <a> and <b>
 * (strings by content, services with px_service_conf_equal()). */
unsigned px_conf_diff(const struct px_conf *a, const struct px_conf *b);

#endif
