/*
 * health/gate: the migration gates of a service as values and pure rules
 * (docs/gates.md, docs/DESIGN.md "Migration gates"). A gate is a check of
 * the data behind the cutover: a number from a query (sql), the same query
 * on the legacy and the new database (compare), how far a replica is behind
 * its source (replication_lag), or the status of a URL (http). This file
 * holds their settings (parsed by health/gate_conf.c), the verdict of one
 * result, a gate's verdict over time (since when, the last value and
 * reason), the heartbeat bookkeeping of the lag gate, and the question the
 * plan and the commands ask: does every gate hold?
 *
 * Pure: libc only, no clock (callers pass now_ms), no I/O, no allocation,
 * no logging. Running the checks is proxy/gates.c's, on the main loop.
 */
#ifndef CUTOVER_HEALTH_GATE_H
#define CUTOVER_HEALTH_GATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HL_GATE_MAX        32    /* gates per service */
#define HL_GATE_NAME_MAX   63
#define HL_GATE_REASON_MAX 256

enum hl_gate_kind { HL_GATE_SQL = 0, HL_GATE_COMPARE, HL_GATE_LAG, HL_GATE_HTTP,
                    HL_GATE_KIND__COUNT };
extern const char *const hl_gate_kind_names[HL_GATE_KIND__COUNT];

/* What a failing gate does while new has traffic (weight > 0 or a plan
 * progressing). Every failing gate also holds the plan and refuses an
 * operator's raise without --force. */
enum hl_gate_on_fail { HL_GATE_HOLD = 0, HL_GATE_ROLLBACK, HL_GATE_FREEZE,
                       HL_GATE_ON_FAIL__COUNT };
extern const char *const hl_gate_on_fail_names[HL_GATE_ON_FAIL__COUNT];

/* A database as libpq's key=value conninfo gave it (only these keys are
 * accepted; a password never is: password_file or libpq's own ways). Empty
 * strings are libpq's defaults. */
struct hl_gate_db {
    char conninfo[512];          /* as written, for status and messages */
    char host[256];              /* a numeric address or a socket directory */
    char port[16];
    char dbname[64];
    char user[64];
    char sslmode[16];
    char application_name[64];
    char password_file[512];     /* resolved against the config's directory; "" none */
};

struct hl_gate_conf {
    char name[HL_GATE_NAME_MAX + 1];
    enum hl_gate_kind kind;
    enum hl_gate_on_fail on_fail;    /* default hold */
    unsigned interval_ms;            /* default 5000, 100..86400000 */
    unsigned timeout_ms;             /* default 2000, 10..600000, <= interval_ms */
    /* sql: db; compare: db legacy, db2 new; replication_lag: db the replica,
     * db2 the source */
    struct hl_gate_db db, db2;
    char query[4096];                /* sql, compare: one statement, one number */
    bool has_min, has_max;           /* sql: at least one */
    double min, max;
    bool has_ratio;                  /* compare: tolerance_ratio given (else tolerance) */
    double tolerance;                /* compare: |legacy - new| <= tolerance, default 0 */
    double tolerance_ratio;          /* compare: |legacy - new| <= ratio x max(|l|,|n|) */
    uint64_t max_lag_ms;             /* replication_lag: 0 = not checked */
    uint64_t max_lag_bytes;          /* replication_lag: 0 = not checked */
    char heartbeat_table[128];       /* replication_lag: default "cutover_heartbeat" */
    char subscription[64];           /* replication_lag: bytes on a logical subscriber */
    char url[512];                   /* http: as written */
    char http_host[256];             /* http: numeric address of the url */
    unsigned http_port;
    char http_path[384];             /* http: path and query, "/" at least */
    int expect_status;               /* http: default 200 */
};

struct hl_gates_conf {
    unsigned n;                      /* 0: no gates */
    struct hl_gate_conf *g;          /* owned (health/gate_conf.c), n entries */
};

/* True when the two settings are the same, field by field. */
bool hl_gate_conf_equal(const struct hl_gate_conf *a, const struct hl_gate_conf *b);
bool hl_gates_conf_equal(const struct hl_gates_conf *a, const struct hl_gates_conf *b);

/* ---- one result ---------------------------------------------------------- */

enum hl_gate_verdict { HL_GV_UNKNOWN = 0, HL_GV_PASS, HL_GV_FAIL, HL_GV__COUNT };
extern const char *const hl_gate_verdict_names[HL_GV__COUNT];

struct hl_gate_result {
    enum hl_gate_verdict verdict;    /* PASS or FAIL */
    bool has_value;
    double value;                    /* sql: the number; compare: new - legacy;
                                      * lag: ms (bytes when only bytes are checked);
                                      * http: the status */
    char reason[HL_GATE_REASON_MAX]; /* one line: why, with the numbers */
};

/* Fills <r> as a failing result with no value and the reason <fmt>. */
void hl_gate_fail(struct hl_gate_result *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Reads one column value as a number: a decimal integer or real as
 * PostgreSQL prints them (int, bigint, numeric, real, double), finite. NULL
 * <text> (SQL NULL), "", "NaN", "Infinity", "t" and anything else are
 * refused with the reason in <why>. 0 or -1. */
int hl_gate_number(const char *text, double *out, char *why, size_t len);

/* The verdicts of each kind from what the check read. */
void hl_gate_eval_sql(const struct hl_gate_conf *c, double value, struct hl_gate_result *r);
void hl_gate_eval_compare(const struct hl_gate_conf *c, double legacy, double newv,
                          struct hl_gate_result *r);
/* <lag_ms> and <lag_bytes> are -1 when not measured; <ms_lower_bound> says
 * the lag in ms is at least the figure (the heartbeat it waits for is older
 * than the writes remembered). */
void hl_gate_eval_lag(const struct hl_gate_conf *c, int64_t lag_ms, bool ms_lower_bound,
                      int64_t lag_bytes, struct hl_gate_result *r);
void hl_gate_eval_http(const struct hl_gate_conf *c, int status, struct hl_gate_result *r);

/* An LSN as PostgreSQL prints it ("16/B374D848") into a 64-bit position. 0 / -1. */
int hl_lsn_parse(const char *text, uint64_t *out);

/* ---- the heartbeat of a replication_lag gate ------------------------------
 *
 * Each check writes a new sequence number into the gate's heartbeat row on
 * the source and remembers when (the daemon's monotonic clock), then reads
 * the row on the replica. The lag is the age of the oldest write the
 * replica has not shown yet, 0 when it shows the last one: one clock, so no
 * skew between the servers' clocks enters it.
 */
#define HL_HB_RING 64

struct hl_heartbeat {
    unsigned n;                      /* writes remembered, <= HL_HB_RING */
    unsigned head;                   /* index of the oldest */
    struct { int64_t seq; uint64_t at_ms; } w[HL_HB_RING];
};

/* The sequence number of the next write: greater than every one written
 * before, from <wall_us> (realtime, so a restarted daemon's numbers stay
 * above those of the one before). */
int64_t hl_hb_next_seq(const struct hl_heartbeat *hb, int64_t wall_us);

/* Remembers that <seq> was written (committed on the source) at <at_ms>. */
void hl_hb_wrote(struct hl_heartbeat *hb, int64_t seq, uint64_t at_ms);

/* The lag at <now_ms> of a replica that shows <seen> (-1: no row): 0 when
 * it shows the last write; else now minus the time of the first write after
 * <seen> (*<lower_bound> true when that write is older than those
 * remembered: the oldest remembered is used). -1 when nothing was written. */
int64_t hl_hb_lag_ms(const struct hl_heartbeat *hb, int64_t seen, uint64_t now_ms,
                     bool *lower_bound);

/* ---- a gate's verdict over time ----------------------------------------- */

struct hl_gate_state {
    enum hl_gate_verdict verdict;    /* UNKNOWN until the first result (also after a
                                      * restart: nothing is carried over) */
    bool has_value;
    double value;                    /* of the last result */
    char reason[HL_GATE_REASON_MAX]; /* of the last result */
    uint64_t since_ms;               /* monotonic: when the verdict became what it is */
    int64_t since_wall_ms;           /* realtime of the same moment, for status */
    uint64_t last_ms;                /* monotonic: the last result; 0 none */
    int64_t last_wall_ms;
    uint64_t checks, failures;       /* results since start */
};

/* A gate not checked yet, since <now_ms>. */
void hl_gate_state_init(struct hl_gate_state *st, uint64_t now_ms, int64_t wall_ms);

/* Records result <r> at <now_ms>. True when the verdict changed (it was
 * unknown, or the other one). */
bool hl_gate_record(struct hl_gate_state *st, const struct hl_gate_result *r,
                    uint64_t now_ms, int64_t wall_ms);

/* Which gate stops a raise or a plan step: the index of the first gate of
 * <st> (<n> of them) whose verdict is FAIL, else with <unknown_holds> the
 * first one still UNKNOWN; -1 when none. */
int hl_gates_blocking(const struct hl_gate_state *st, unsigned n, bool unknown_holds);

#endif
