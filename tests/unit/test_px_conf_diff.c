/*
 * tests/unit/test_px_conf_diff.c: the comparisons of proxy/conf.c that a
 * reload acts on: px_addr_same() and px_addr_equal(), px_service_conf_diff()
 * and px_conf_diff(). Every field of every struct they compare, changed in
 * turn, must show as a difference with the right bit; strings and arrays
 * compare by content, not by pointer. (Beside test_px_conf.c, which holds
 * the loader's tests.)
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "proxy/conf.h"
#include "proxy/tls_conf.h"
#include "proxy/shadow_conf.h"
#include "proxy/webhook.h"

/* A "tls" for the service case of the field list below (its own fields
 * are compared in test_px_tls.c). */
static struct px_tls_conf other_tls = { .ncerts = 0, .min_version = 12 };
static struct hl_gate_conf other_gate = { .name = "g", .interval_ms = 1000 };
static struct hl_gates_conf other_gates = { 1, &other_gate };
static struct px_shadow_conf other_shadow = { .percent_bp = 10000 };

static struct px_conf *
load_example(const char *name)
{
    const char *d = getenv("CUTOVER_SRC_DIR");
    char path[1024], err[1024];
    struct px_conf *c;

    snprintf(path, sizeof(path), "%s/conf/%s", d != NULL && d[0] != '\0' ? d : ".", name);
    c = px_conf_load(path, err, sizeof(err));
    if (c == NULL)
        fail_msg("%s", err);
    return c;
}

/* Why a field cannot be forgotten: the fields of each struct compared here
 * are listed in declaration order, one X(how, field, base value, other
 * value, expected change bit) line each, and each base config is a
 * positional initialiser made of its lines (FIELD_INIT). A field added to
 * one of these structs without a line here leaves an initialiser missing,
 * which -Wextra (-Wmissing-field-initializers) under -Werror refuses to
 * build. Every line is also a case: the field set to its other value must
 * make the comparison report its bit, both ways round. So a new field needs
 * a line, and its line fails until the comparison reads the field. The
 * sections of router/ and health/ are one line each here (the change of one
 * of their fields must reach the service's diff); their own fields are
 * listed in test_rt_router.c and test_hl_conf.c.
 *
 * <how>: V assigns, M applies a member path and assignment to the field
 * (M, route, ..., .weight_bp = 2500), ADDR rewrites the first address of
 * the field's array (the copy's, never the base's). */
#define SET_V(c, f, v) ((c)->f = (v))
#define SET_M(c, f, v) ((c)->f v)
#define SET_ADDR(c, f, v) assert_int_equal(px_addr_parse((v), &(c)->f[0]), 0)
#define FIELD_INIT(how, f, base, other, bit) base,

/* a side's "tls": compared by px_tls_up_equal(), which tells a context
 * from none without reading it (test_px_tls_up.c compares two of them) */
static char tls_dummy;

#define SIDE_FIELDS(X)                                                   \
    X(V, nservers, 2, 1, PX_SVC_SERVERS)                                 \
    X(ADDR, servers, NULL, "127.0.0.1:9009", PX_SVC_SERVERS)             \
    X(V, tls, NULL, (struct px_tls_up *)(void *)&tls_dummy, PX_SVC_UP_TLS)

#define TIMEOUTS_FIELDS(X)                                               \
    X(V, client_head_ms, 10000, 10001, PX_SVC_TIMEOUTS)                  \
    X(V, client_idle_ms, 60000, 60001, PX_SVC_TIMEOUTS)                  \
    X(V, connect_ms, 2000, 2001, PX_SVC_TIMEOUTS)                        \
    X(V, server_response_ms, 30000, 30001, PX_SVC_TIMEOUTS)              \
    X(V, server_idle_ms, 60000, 60001, PX_SVC_TIMEOUTS)

#define LIMITS_FIELDS(X)                                                 \
    X(V, head_bytes, 16384, 16385, PX_SVC_LIMITS)                        \
    X(V, headers, 100, 101, PX_SVC_LIMITS)                               \
    X(V, uri_bytes, 8192, 8193, PX_SVC_LIMITS)                           \
    X(V, body_bytes, 0, 1, PX_SVC_LIMITS)                                \
    X(V, buffer_body_bytes, 65536, 65537, PX_SVC_LIMITS)                 \
    X(V, chunk_ext_bytes, 4096, 4097, PX_SVC_LIMITS)                     \
    X(V, max_connections, 0, 100, PX_SVC_LIMITS)

#define POOL_FIELDS(X)                                                   \
    X(V, max_idle, 256, 0, PX_SVC_POOL)                                  \
    X(V, idle_timeout_ms, 4000, 4001, PX_SVC_POOL)

#define SIDE_BASE { SIDE_FIELDS(FIELD_INIT) }
#define SIDES_BASE { SIDE_BASE, SIDE_BASE }
#define TIMEOUTS_BASE { TIMEOUTS_FIELDS(FIELD_INIT) }
#define LIMITS_BASE { LIMITS_FIELDS(FIELD_INIT) }
#define POOL_BASE { POOL_FIELDS(FIELD_INIT) }

#define SERVICE_FIELDS(X)                                                \
    X(V, name, "web", "api", PX_SVC_NAME)                                \
    X(V, mode, PX_MODE_HTTP, PX_MODE_TCP, PX_SVC_MODE)                   \
    X(V, nlisten, 2, 1, PX_SVC_LISTEN)                                   \
    X(ADDR, listen, NULL, "127.0.0.1:8089", PX_SVC_LISTEN)               \
    X(M, side, SIDES_BASE, [RT_NEW].nservers = 1, PX_SVC_SERVERS)        \
    X(M, route, { 0 }, .weight_bp = 2500, PX_SVC_ROUTE)                  \
    X(M, health, { 0 }, .interval_ms = 100, PX_SVC_HEALTH)               \
    X(M, rollback, { 0 }, .max_error_rate = 0.5, PX_SVC_ROLLBACK)        \
    X(M, plan, { 0 }, .bake_s = 60, PX_SVC_PLAN)                         \
    X(V, on_new_down, HL_NEWDOWN_FALLBACK, HL_NEWDOWN_ROLLBACK,          \
      PX_SVC_NEW_DOWN)                                                   \
    X(M, timeouts, TIMEOUTS_BASE, .connect_ms = 1, PX_SVC_TIMEOUTS)      \
    X(M, limits, LIMITS_BASE, .headers = 1, PX_SVC_LIMITS)               \
    X(M, pool, POOL_BASE, .max_idle = 0, PX_SVC_POOL)                    \
    X(V, tls, NULL, &other_tls, PX_SVC_TLS)                              \
    X(V, gates, { 0 }, other_gates, PX_SVC_GATES)                        \
    X(M, shield, { 0 }, .budget_ratio = 0.5, PX_SVC_SHIELD)              \
    X(V, shadow, NULL, &other_shadow, PX_SVC_SHADOW)

/* One mutator per line, all on a struct px_service_conf. */
#define SVC_MUT(how, f, base, other, bit)                                \
    static void svc_mut_##f(struct px_service_conf *c) { SET_##how(c, f, other); }
#define SIDE0_MUT(how, f, base, other, bit)                              \
    static void side0_mut_##f(struct px_service_conf *c) { SET_##how(&c->side[0], f, other); }
#define SIDE1_MUT(how, f, base, other, bit)                              \
    static void side1_mut_##f(struct px_service_conf *c) { SET_##how(&c->side[1], f, other); }
#define TIMEOUTS_MUT(how, f, base, other, bit)                           \
    static void timeouts_mut_##f(struct px_service_conf *c) { SET_##how(&c->timeouts, f, other); }
#define LIMITS_MUT(how, f, base, other, bit)                             \
    static void limits_mut_##f(struct px_service_conf *c) { SET_##how(&c->limits, f, other); }
#define POOL_MUT(how, f, base, other, bit)                               \
    static void pool_mut_##f(struct px_service_conf *c) { SET_##how(&c->pool, f, other); }

SERVICE_FIELDS(SVC_MUT)
SIDE_FIELDS(SIDE0_MUT)
SIDE_FIELDS(SIDE1_MUT)
TIMEOUTS_FIELDS(TIMEOUTS_MUT)
LIMITS_FIELDS(LIMITS_MUT)
POOL_FIELDS(POOL_MUT)

#define SVC_CASE(how, f, base, other, bit) { #f, svc_mut_##f, bit },
#define SIDE0_CASE(how, f, base, other, bit) { "side[0]." #f, side0_mut_##f, bit },
#define SIDE1_CASE(how, f, base, other, bit) { "side[1]." #f, side1_mut_##f, bit },
#define TIMEOUTS_CASE(how, f, base, other, bit) { "timeouts." #f, timeouts_mut_##f, bit },
#define LIMITS_CASE(how, f, base, other, bit) { "limits." #f, limits_mut_##f, bit },
#define POOL_CASE(how, f, base, other, bit) { "pool." #f, pool_mut_##f, bit },

static const struct svc_case {
    const char *field;
    void (*mutate)(struct px_service_conf *c);
    unsigned bit;
} svc_cases[] = {
    SERVICE_FIELDS(SVC_CASE)
    SIDE_FIELDS(SIDE0_CASE)
    SIDE_FIELDS(SIDE1_CASE)
    TIMEOUTS_FIELDS(TIMEOUTS_CASE)
    LIMITS_FIELDS(LIMITS_CASE)
    POOL_FIELDS(POOL_CASE)
};

/* The addresses of the base service, and room for a copy's. */
struct svc_store {
    char name[16];
    struct px_addr listen[2], servers[RT_SIDE__COUNT][2];
};

static void
addr_set(struct px_addr *a, const char *text)
{
    assert_int_equal(px_addr_parse(text, a), 0);
}

/* The base service: every field set, its arrays in <st>. */
static void
svc_base(struct px_service_conf *c, struct svc_store *st)
{
    struct px_service_conf base = { SERVICE_FIELDS(FIELD_INIT) };

    memset(st, 0, sizeof(*st));
    addr_set(&st->listen[0], "127.0.0.1:8080");
    addr_set(&st->listen[1], "[::1]:8080");
    addr_set(&st->servers[RT_LEGACY][0], "127.0.0.1:9001");
    addr_set(&st->servers[RT_LEGACY][1], "127.0.0.1:9002");
    addr_set(&st->servers[RT_NEW][0], "127.0.0.2:9001");
    addr_set(&st->servers[RT_NEW][1], "[::1]:9001");
    snprintf(st->name, sizeof(st->name), "%s", base.name);
    base.name = st->name;
    base.listen = st->listen;
    base.side[RT_LEGACY].servers = st->servers[RT_LEGACY];
    base.side[RT_NEW].servers = st->servers[RT_NEW];
    *c = base;
}

/* <to> = <from> with every string and array of its own in <st>. */
static void
svc_copy(struct px_service_conf *to, const struct px_service_conf *from,
         struct svc_store *st)
{
    unsigned side;

    *to = *from;
    snprintf(st->name, sizeof(st->name), "%s", from->name);
    to->name = st->name;
    memcpy(st->listen, from->listen, from->nlisten * sizeof(st->listen[0]));
    to->listen = st->listen;
    for (side = 0; side < RT_SIDE__COUNT; side++) {
        memcpy(st->servers[side], from->side[side].servers,
               from->side[side].nservers * sizeof(st->servers[side][0]));
        to->side[side].servers = st->servers[side];
    }
}

static void
test_addr_compare(void **state)
{
    /* every field of struct px_addr, positionally (see above): a field
     * added to it does not build until it is here and has a case below */
    static const struct px_addr fields = { { 0 }, 0, "" };
    struct px_addr a, b;

    (void)state;
    (void)fields;
    addr_set(&a, "127.0.0.1:8080");
    b = a;
    /* what follows the address or the text does not count */
    memset((char *)&b.ss + b.len, 0x5a, sizeof(b.ss) - b.len);
    memset(b.text + strlen(b.text) + 1, 'x', sizeof(b.text) - strlen(b.text) - 2);
    assert_true(px_addr_same(&a, &b) && px_addr_equal(&a, &b));
    /* ss: another port */
    addr_set(&b, "127.0.0.1:8081");
    snprintf(b.text, sizeof(b.text), "%s", a.text);
    assert_false(px_addr_same(&a, &b) || px_addr_equal(&a, &b));
    /* len */
    b = a;
    b.len--;
    assert_false(px_addr_same(&a, &b) || px_addr_equal(&a, &b));
    assert_false(px_addr_same(&b, &a) || px_addr_equal(&b, &a));
    /* text: the same address written otherwise is the same endpoint */
    b = a;
    snprintf(b.text, sizeof(b.text), "127.000.0.1:8080");
    assert_true(px_addr_same(&a, &b));
    assert_false(px_addr_equal(&a, &b));
}

static void
test_service_conf_diff(void **state)
{
    struct svc_store sa, sb;
    struct px_service_conf a, b;
    unsigned d;
    size_t i;

    (void)state;
    svc_base(&a, &sa);
    /* strings and arrays compare by content, not by pointer */
    svc_copy(&b, &a, &sb);
    assert_ptr_not_equal(a.name, b.name);
    assert_int_equal(px_service_conf_diff(&a, &b), 0);
    assert_true(px_service_conf_equal(&a, &b));
    for (i = 0; i < sizeof(svc_cases) / sizeof(svc_cases[0]); i++) {
        svc_copy(&b, &a, &sb);
        svc_cases[i].mutate(&b);
        d = px_service_conf_diff(&a, &b);
        if ((d & svc_cases[i].bit) == 0 || px_service_conf_diff(&b, &a) != d)
            fail_msg("px_service_conf_diff() does not see a change of %s "
                     "(0x%x, want 0x%x)", svc_cases[i].field, d, svc_cases[i].bit);
        assert_false(px_service_conf_equal(&a, &b));
    }
    /* the reload restarts the windows on rollback.window_s only */
    svc_copy(&b, &a, &sb);
    b.rollback.window_s = 30;
    assert_int_equal(px_service_conf_diff(&a, &b), PX_SVC_ROLLBACK | PX_SVC_WINDOW);
    b = a;
    b.rollback.min_requests = 30;
    assert_int_equal(px_service_conf_diff(&a, &b), PX_SVC_ROLLBACK);
}

/* The same for the top level of struct px_conf ("store" is compared by
 * adm_pg_conf_equal(), whose fields test_adm_store_pg.c covers). */
static struct adm_pg_conf other_store_pg = { .conninfo = (char *)"host=/tmp",
                                              .fleet = "f", .instance = "i" };
static struct svc_store conf_services_store;
static struct px_service_conf conf_services[1], conf_other_services[1];
static struct px_notify_conf conf_notify;       /* no webhook: not none */

#define CONF_FIELDS(X)                                                   \
    X(V, file, "/etc/cutover/a.json", "/etc/cutover/b.json", PX_CONF_FILE) \
    X(V, dir, "/etc/cutover", "/etc", PX_CONF_FILE)                      \
    X(V, admin_socket, "/run/cutover.sock", NULL, PX_CONF_ADMIN_SOCKET)  \
    X(V, admin_socket_mode, 0600, 0660, PX_CONF_ADMIN_SOCKET)            \
    X(V, admin_socket_gid, -1, 100, PX_CONF_ADMIN_GROUP)                 \
    X(V, admin_listen, "127.0.0.1:9900", "127.0.0.1:9901", PX_CONF_ADMIN_HTTP) \
    X(V, admin_token_file, NULL, "/etc/cutover/tokens", PX_CONF_ADMIN_HTTP) \
    X(V, admin_read_token_required, false, true, PX_CONF_ADMIN_READ)     \
    X(V, admin_require_reason, false, true, PX_CONF_ADMIN_REASON)        \
    X(V, state_file, "/var/lib/cutover/state.json", NULL, PX_CONF_STATE_FILES) \
    X(V, audit_file, NULL, "/var/lib/cutover/audit.jsonl", PX_CONF_STATE_FILES) \
    X(V, store_pg, NULL, &other_store_pg, PX_CONF_STATE_FILES)           \
    X(V, access_log_file, NULL, "/var/log/cutover/access.log", PX_CONF_ACCESS_LOG) \
    X(V, notify, NULL, &conf_notify, PX_CONF_NOTIFY)                     \
    X(V, workers, 1, 2, PX_CONF_WORKERS)                                 \
    X(V, shutdown_grace_ms, 10000, 500, PX_CONF_GRACE)                   \
    X(V, policy_tick_ms, 100, 60000, PX_CONF_POLICY_TICK)                \
    X(V, max_connections, -1, 0, PX_CONF_LIMITS)                         \
    X(V, nservices, 1, 0, PX_CONF_SERVICES)                              \
    X(V, services, conf_services, conf_other_services, PX_CONF_SERVICES)

#define CONF_MUT(how, f, base, other, bit)                               \
    static void conf_mut_##f(struct px_conf *c) { SET_##how(c, f, other); }
#define CONF_CASE(how, f, base, other, bit) { #f, conf_mut_##f, bit },

CONF_FIELDS(CONF_MUT)

static void
test_conf_diff(void **state)
{
    static const struct {
        const char *field;
        void (*mutate)(struct px_conf *c);
        unsigned bit;
    } cases[] = { CONF_FIELDS(CONF_CASE) };
    struct px_conf a = { CONF_FIELDS(FIELD_INIT) }, b;
    struct svc_store other;
    char strings[6][64];
    struct px_conf *x, *y;
    unsigned d;
    size_t i;

    (void)state;
    svc_base(&conf_services[0], &conf_services_store);
    svc_copy(&conf_other_services[0], &conf_services[0], &other);
    conf_other_services[0].mode = PX_MODE_TCP;
    /* strings by content, services by px_service_conf_equal() */
    b = a;
    snprintf(strings[0], sizeof(strings[0]), "%s", a.file);
    snprintf(strings[1], sizeof(strings[1]), "%s", a.dir);
    snprintf(strings[2], sizeof(strings[2]), "%s", a.admin_socket);
    snprintf(strings[3], sizeof(strings[3]), "%s", a.admin_listen);
    snprintf(strings[4], sizeof(strings[4]), "%s", a.state_file);
    b.file = strings[0];
    b.dir = strings[1];
    b.admin_socket = strings[2];
    b.admin_listen = strings[3];
    b.state_file = strings[4];
    assert_int_equal(px_conf_diff(&a, &b), 0);
    b.services = conf_other_services;
    conf_other_services[0].mode = PX_MODE_HTTP;
    assert_int_equal(px_conf_diff(&a, &b), 0);
    conf_other_services[0].mode = PX_MODE_TCP;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        b = a;
        cases[i].mutate(&b);
        d = px_conf_diff(&a, &b);
        if ((d & cases[i].bit) == 0 || px_conf_diff(&b, &a) != d)
            fail_msg("px_conf_diff() does not see a change of %s (0x%x, want 0x%x)",
                     cases[i].field, d, cases[i].bit);
    }
    /* a real file loaded twice is the same config */
    x = load_example("example.json");
    y = load_example("example.json");
    assert_int_equal(px_conf_diff(x, y), 0);
    px_conf_free(y);
    px_conf_free(x);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addr_compare),
        cmocka_unit_test(test_service_conf_diff),
        cmocka_unit_test(test_conf_diff),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
