/*
 * health/gate: the pure rules of the migration gates (see gate.h): the
 * verdict of one result of each kind, numbers and LSNs as PostgreSQL prints
 * them, the heartbeat lag, and a gate's verdict over time.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "health/gate.h"

const char *const hl_gate_kind_names[HL_GATE_KIND__COUNT] = {
    [HL_GATE_SQL] = "sql", [HL_GATE_COMPARE] = "compare",
    [HL_GATE_LAG] = "replication_lag", [HL_GATE_HTTP] = "http",
};

const char *const hl_gate_on_fail_names[HL_GATE_ON_FAIL__COUNT] = {
    [HL_GATE_HOLD] = "hold", [HL_GATE_ROLLBACK] = "rollback", [HL_GATE_FREEZE] = "freeze",
};

const char *const hl_gate_verdict_names[HL_GV__COUNT] = {
    [HL_GV_UNKNOWN] = "unknown", [HL_GV_PASS] = "pass", [HL_GV_FAIL] = "fail",
};

static bool
db_equal(const struct hl_gate_db *a, const struct hl_gate_db *b)
{
    return strcmp(a->conninfo, b->conninfo) == 0 && strcmp(a->host, b->host) == 0 &&
           strcmp(a->port, b->port) == 0 && strcmp(a->dbname, b->dbname) == 0 &&
           strcmp(a->user, b->user) == 0 && strcmp(a->sslmode, b->sslmode) == 0 &&
           strcmp(a->application_name, b->application_name) == 0 &&
           strcmp(a->password_file, b->password_file) == 0;
}

bool
hl_gate_conf_equal(const struct hl_gate_conf *a, const struct hl_gate_conf *b)
{
    return strcmp(a->name, b->name) == 0 && a->kind == b->kind && a->on_fail == b->on_fail &&
           a->interval_ms == b->interval_ms && a->timeout_ms == b->timeout_ms &&
           db_equal(&a->db, &b->db) && db_equal(&a->db2, &b->db2) &&
           strcmp(a->query, b->query) == 0 && a->has_min == b->has_min &&
           a->has_max == b->has_max && a->min == b->min && a->max == b->max &&
           a->has_ratio == b->has_ratio && a->tolerance == b->tolerance &&
           a->tolerance_ratio == b->tolerance_ratio && a->max_lag_ms == b->max_lag_ms &&
           a->max_lag_bytes == b->max_lag_bytes &&
           strcmp(a->heartbeat_table, b->heartbeat_table) == 0 &&
           strcmp(a->subscription, b->subscription) == 0 && strcmp(a->url, b->url) == 0 &&
           strcmp(a->http_host, b->http_host) == 0 && a->http_port == b->http_port &&
           strcmp(a->http_path, b->http_path) == 0 && a->expect_status == b->expect_status;
}

bool
hl_gates_conf_equal(const struct hl_gates_conf *a, const struct hl_gates_conf *b)
{
    unsigned i;

    if (a->n != b->n)
        return false;
    for (i = 0; i < a->n; i++)
        if (!hl_gate_conf_equal(&a->g[i], &b->g[i]))
            return false;
    return true;
}

void
hl_gate_fail(struct hl_gate_result *r, const char *fmt, ...)
{
    va_list ap;

    r->verdict = HL_GV_FAIL;
    r->has_value = false;
    r->value = 0;
    va_start(ap, fmt);
    vsnprintf(r->reason, sizeof(r->reason), fmt, ap);
    va_end(ap);
}

int
hl_gate_number(const char *text, double *out, char *why, size_t len)
{
    const char *p;
    char *end;
    double v;
    bool digit = false;

    if (text == NULL) {
        snprintf(why, len, "the value is NULL");
        return -1;
    }
    /* digits, one sign, one point, an exponent: what int, numeric and
     * float print; strtod alone would also take "inf", "nan" and hex */
    for (p = text; *p != '\0'; p++) {
        if (*p >= '0' && *p <= '9')
            digit = true;
        else if (strchr("+-.eE", *p) == NULL)
            break;
    }
    if (text[0] == '\0' || *p != '\0' || !digit) {
        snprintf(why, len, "the value \"%.40s\" is not a number", text);
        return -1;
    }
    v = strtod(text, &end);
    if (*end != '\0' || end == text) {
        snprintf(why, len, "the value \"%.40s\" is not a number", text);
        return -1;
    }
    if (!isfinite(v)) {
        snprintf(why, len, "the value \"%.40s\" is out of range", text);
        return -1;
    }
    *out = v;
    return 0;
}

static void
pass(struct hl_gate_result *r, double value, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
pass(struct hl_gate_result *r, double value, const char *fmt, ...)
{
    va_list ap;

    r->verdict = HL_GV_PASS;
    r->has_value = true;
    r->value = value;
    va_start(ap, fmt);
    vsnprintf(r->reason, sizeof(r->reason), fmt, ap);
    va_end(ap);
}

void
hl_gate_eval_sql(const struct hl_gate_conf *c, double value, struct hl_gate_result *r)
{
    if (c->has_min && value < c->min) {
        hl_gate_fail(r, "value %.15g is below min %.15g", value, c->min);
    } else if (c->has_max && value > c->max) {
        hl_gate_fail(r, "value %.15g is above max %.15g", value, c->max);
    } else {
        pass(r, value, "value %.15g within bounds", value);
        return;
    }
    r->has_value = true;
    r->value = value;
}

void
hl_gate_eval_compare(const struct hl_gate_conf *c, double legacy, double newv,
                     struct hl_gate_result *r)
{
    double diff = fabs(newv - legacy);
    double big = fmax(fabs(legacy), fabs(newv));
    double allowed = c->has_ratio ? c->tolerance_ratio * big : c->tolerance;

    if (diff <= allowed) {
        pass(r, newv - legacy, "legacy %.15g, new %.15g: difference %.15g within %.15g",
             legacy, newv, diff, allowed);
        return;
    }
    hl_gate_fail(r, "legacy %.15g, new %.15g: difference %.15g over %s %.15g", legacy, newv,
                 diff, c->has_ratio ? "tolerance_ratio, that is" : "tolerance", allowed);
    r->has_value = true;
    r->value = newv - legacy;
}

void
hl_gate_eval_lag(const struct hl_gate_conf *c, int64_t lag_ms, bool ms_lower_bound,
                 int64_t lag_bytes, struct hl_gate_result *r)
{
    char ms[64] = "", bytes[64] = "";
    double value = c->max_lag_ms > 0 ? (double)lag_ms : (double)lag_bytes;

    if (c->max_lag_ms > 0 && lag_ms < 0) {
        hl_gate_fail(r, "lag in ms unknown: no heartbeat written yet");
        return;
    }
    if (c->max_lag_bytes > 0 && lag_bytes < 0) {
        hl_gate_fail(r, "lag in bytes unknown");
        return;
    }
    if (c->max_lag_ms > 0)
        snprintf(ms, sizeof(ms), "%s%lld ms (max %llu)", ms_lower_bound ? "at least " : "",
                 (long long)lag_ms, (unsigned long long)c->max_lag_ms);
    if (c->max_lag_bytes > 0)
        snprintf(bytes, sizeof(bytes), "%lld bytes (max %llu)", (long long)lag_bytes,
                 (unsigned long long)c->max_lag_bytes);
    if ((c->max_lag_ms > 0 && (uint64_t)lag_ms > c->max_lag_ms)
        || (c->max_lag_bytes > 0 && (uint64_t)lag_bytes > c->max_lag_bytes)) {
        hl_gate_fail(r, "replica behind: lag %s%s%s", ms, ms[0] && bytes[0] ? ", " : "",
                     bytes);
        r->has_value = true;
        r->value = value;
        return;
    }
    pass(r, value, "lag %s%s%s", ms, ms[0] && bytes[0] ? ", " : "", bytes);
}

void
hl_gate_eval_http(const struct hl_gate_conf *c, int status, struct hl_gate_result *r)
{
    if (status == c->expect_status) {
        pass(r, status, "status %d", status);
        return;
    }
    hl_gate_fail(r, "status %d, expected %d", status, c->expect_status);
    r->has_value = true;
    r->value = status;
}

int
hl_lsn_parse(const char *text, uint64_t *out)
{
    unsigned long long hi = 0, lo = 0;
    const char *p = text;
    unsigned nd;

    if (text == NULL)
        return -1;
    for (nd = 0; (*p >= '0' && *p <= '9') || (*p >= 'A' && *p <= 'F')
                 || (*p >= 'a' && *p <= 'f'); p++, nd++)
        hi = hi * 16 + (unsigned)(*p <= '9' ? *p - '0' : (*p | 0x20) - 'a' + 10);
    if (nd == 0 || nd > 8 || *p++ != '/')
        return -1;
    for (nd = 0; (*p >= '0' && *p <= '9') || (*p >= 'A' && *p <= 'F')
                 || (*p >= 'a' && *p <= 'f'); p++, nd++)
        lo = lo * 16 + (unsigned)(*p <= '9' ? *p - '0' : (*p | 0x20) - 'a' + 10);
    if (nd == 0 || nd > 8 || *p != '\0')
        return -1;
    *out = (uint64_t)hi << 32 | lo;
    return 0;
}

/* ---- heartbeat ---------------------------------------------------------- */

int64_t
hl_hb_next_seq(const struct hl_heartbeat *hb, int64_t wall_us)
{
    int64_t last;

    if (hb->n == 0)
        return wall_us;
    last = hb->w[(hb->head + hb->n - 1) % HL_HB_RING].seq;
    return wall_us > last ? wall_us : last + 1;
}

void
hl_hb_wrote(struct hl_heartbeat *hb, int64_t seq, uint64_t at_ms)
{
    unsigned i;

    if (hb->n == HL_HB_RING) {
        hb->head = (hb->head + 1) % HL_HB_RING;
        hb->n--;
    }
    i = (hb->head + hb->n) % HL_HB_RING;
    hb->w[i].seq = seq;
    hb->w[i].at_ms = at_ms;
    hb->n++;
}

int64_t
hl_hb_lag_ms(const struct hl_heartbeat *hb, int64_t seen, uint64_t now_ms,
             bool *lower_bound)
{
    unsigned k;

    *lower_bound = false;
    if (hb->n == 0)
        return -1;
    if (seen >= hb->w[(hb->head + hb->n - 1) % HL_HB_RING].seq)
        return 0;
    for (k = 0; k < hb->n; k++) {
        unsigned i = (hb->head + k) % HL_HB_RING;

        if (hb->w[i].seq > seen) {
            /* the oldest remembered and yet unseen: an older unseen write
             * may exist when the ring has turned */
            *lower_bound = k == 0 && hb->n == HL_HB_RING;
            return now_ms > hb->w[i].at_ms ? (int64_t)(now_ms - hb->w[i].at_ms) : 0;
        }
    }
    return 0;                          /* not reached: the last one is > seen */
}

/* ---- state ---------------------------------------------------------------- */

void
hl_gate_state_init(struct hl_gate_state *st, uint64_t now_ms, int64_t wall_ms)
{
    memset(st, 0, sizeof(*st));
    st->verdict = HL_GV_UNKNOWN;
    snprintf(st->reason, sizeof(st->reason), "not checked yet");
    st->since_ms = now_ms;
    st->since_wall_ms = wall_ms;
}

bool
hl_gate_record(struct hl_gate_state *st, const struct hl_gate_result *r, uint64_t now_ms,
               int64_t wall_ms)
{
    bool changed = st->verdict != r->verdict;

    st->checks++;
    if (r->verdict == HL_GV_FAIL)
        st->failures++;
    st->has_value = r->has_value;
    st->value = r->value;
    snprintf(st->reason, sizeof(st->reason), "%s", r->reason);
    st->last_ms = now_ms;
    st->last_wall_ms = wall_ms;
    if (changed) {
        st->verdict = r->verdict;
        st->since_ms = now_ms;
        st->since_wall_ms = wall_ms;
    }
    return changed;
}

int
hl_gates_blocking(const struct hl_gate_state *st, unsigned n, bool unknown_holds)
{
    unsigned i;

    for (i = 0; i < n; i++)
        if (st[i].verdict == HL_GV_FAIL)
            return (int)i;
    for (i = 0; unknown_holds && i < n; i++)
        if (st[i].verdict == HL_GV_UNKNOWN)
            return (int)i;
    return -1;
}
