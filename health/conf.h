/*
 * health/conf: configuration of active checks, the rollback policy and the
 * progressive plan of one service. Values only; parsed and compared by
 * health/conf.c.
 */
#ifndef CUTOVER_HEALTH_CONF_H
#define CUTOVER_HEALTH_CONF_H

#include <stdbool.h>
#include <stdint.h>

struct json_t;
struct conf_err;

enum hl_check_type { HL_CHECK_NONE = 0, HL_CHECK_TCP, HL_CHECK_HTTP };

struct hl_check_conf {
    enum hl_check_type type;     /* NONE: no "health" section */
    char method[16];             /* http: default "GET" */
    char path[256];              /* http: default "/healthz" */
    int expect_min, expect_max;  /* http: expected status range, default 200..399 */
    char body_contains[256];     /* http: "" = not checked */
    unsigned interval_ms;        /* default 2000, 100..3600000 */
    unsigned timeout_ms;         /* default 1000, 10..60000, < interval */
    unsigned rise, fall;         /* default 2, 3; 1..100 */
};

enum hl_action { HL_ACT_ROLLBACK = 0, HL_ACT_FREEZE };

struct hl_rollback_conf {
    bool enabled;                    /* default true */
    double max_error_rate;           /* [0,1], default 0.05 */
    unsigned min_requests;           /* default 20, 1..1000000 */
    unsigned window_s;               /* default 10, 1..600 */
    unsigned max_p99_ms;             /* 0 = not set */
    double max_error_ratio_to_legacy;/* 0 = not set; > 0 */
    enum hl_action action;           /* "rollback" (default) | "freeze" */
    unsigned drain_s;                /* default 5, 0..86400: a rollback closes the
                                      * tunnels still on new after this (0: at once) */
    double max_diff_rate;            /* [0,1]: shadow comparisons that differ in the
                                      * window (at least min_requests of them);
                                      * 0 = not set */
};

#define HL_PLAN_MAX_STEPS 32

struct hl_plan_conf {
    unsigned nsteps;                 /* 0 = no plan */
    uint32_t steps_bp[HL_PLAN_MAX_STEPS];  /* strictly increasing, 1..10000; the
                                      * first may be 0 with max_diff_rate (a bake
                                      * on shadow traffic alone) */
    unsigned bake_s;                 /* default 300, 1..604800 */
    double max_diff_rate;            /* [0,1]: a step advances only when fewer of the
                                      * shadow comparisons of its bake differed
                                      * (strictly); 0 = no diff gate */
    unsigned min_compared;           /* with max_diff_rate: comparisons a step needs,
                                      * default 100, 1..100000000 */
};

enum hl_on_new_down { HL_NEWDOWN_FALLBACK = 0, HL_NEWDOWN_ROLLBACK };

/* Each parser reads one optional section object (<j> may be NULL: defaults),
 * strictly (unknown keys are errors), with every number range-checked.
 * <path> is the JSON path of the section for messages. 0 or -1 + <err>. */
int hl_check_conf_parse(struct json_t *j, const char *path,
                        struct hl_check_conf *out, struct conf_err *err);
int hl_rollback_conf_parse(struct json_t *j, const char *path,
                           struct hl_rollback_conf *out, struct conf_err *err);
int hl_plan_conf_parse(struct json_t *j, const char *path,
                       struct hl_plan_conf *out, struct conf_err *err);

/* True when <a> and <b> are the same settings: every field, strings by
 * content, a plan's steps up to its <nsteps>. A reload compares a kept
 * service's old and new sections with these (a change of the "health"
 * section restarts its checkers). */
bool hl_check_conf_equal(const struct hl_check_conf *a, const struct hl_check_conf *b);
bool hl_rollback_conf_equal(const struct hl_rollback_conf *a, const struct hl_rollback_conf *b);
bool hl_plan_conf_equal(const struct hl_plan_conf *a, const struct hl_plan_conf *b);

#endif
