/*
 * log: the process-wide logger (a leaf utility: libc only). One event per
 * line on stderr in logfmt:
 *
 *   ts=2026-12-05T18:40:27.123Z level=info module=control msg="service web: …"
 *   ts=… level=warn module=health event=server_down service=web side=new …
 *
 * log_at() carries free text (as msg="…", escaped); log_kv() carries an
 * event name and key=value fields for the state changes an operator's log
 * pipeline wants to match on. The level is tested before the arguments are
 * evaluated, so LL_DEBUG lines cost nothing when off. The daemon logs state
 * changes, never a line per request at info: per-request trouble goes to the
 * counters, the metrics and the access log, and the warnings it does log are
 * rate-limited (struct log_ratelimit).
 */
#ifndef CUTOVER_LIB_LOG_H
#define CUTOVER_LIB_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum log_level { LL_DEBUG = 0, LL_INFO, LL_WARN, LL_ERR };

/* The only mutable process-wide logger state: set once at startup. */
extern enum log_level log_min_level;

void log_write(enum log_level lvl, const char *module, uint64_t conn_id,
               const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Writes event <event> with the key/value string pairs that follow, ended
 * by a NULL key: log_kv_write(LL_INFO, "control", "weight", "service", "web",
 * "from", "5", "to", "10", NULL). Values are quoted when needed. */
void log_kv_write(enum log_level lvl, const char *module, const char *event, ...)
    __attribute__((sentinel));

#define log_at(lvl, module, conn_id, ...)                              \
    do {                                                               \
        if ((lvl) >= log_min_level)                                    \
            log_write((lvl), (module), (conn_id), __VA_ARGS__);        \
    } while (0)

#define log_kv(lvl, module, ...)                                       \
    do {                                                               \
        if ((lvl) >= log_min_level)                                    \
            log_kv_write((lvl), (module), __VA_ARGS__, (const char *)NULL); \
    } while (0)

/* Writes <val> as a logfmt value into <dst> (capacity <cap>, NUL-terminated):
 * bare when it can be, else quoted and escaped. Returns the length written. */
size_t log_fmt_value(char *dst, size_t cap, const char *val);

/* A per-source limit of log lines (say, upstream failures of one service):
 * the first <burst> lines of each period (period_ms, 0 = one second) pass,
 * the rest are counted. The count is reported by whoever comes first: the
 * next line that passes (log_ratelimit_pass), or the owner's timer once the
 * period is over (log_ratelimit_due_ms, log_ratelimit_flush), so a burst's
 * count is written about a period after it began, not whenever the next
 * line happens to come. Pure: the caller passes the (monotonic) time. */
struct log_ratelimit {
    uint64_t window_ms;          /* start of the current period; 0 = never used */
    unsigned count;              /* lines passed in it */
    uint64_t suppressed;         /* lines held back and not reported yet */
    unsigned period_ms;          /* length of a period; 0: 1000 */
};

/* True when a line may be written now (<now_ms> monotonic); *<suppressed>
 * is then the number held back before and not reported yet (0 when none):
 * the caller writes it first. */
bool log_ratelimit_pass(struct log_ratelimit *rl, uint64_t now_ms, unsigned burst,
                        uint64_t *suppressed);

/* When the count of held-back lines is due (the end of the period in which
 * they were held back), or 0 when none is waiting. */
uint64_t log_ratelimit_due_ms(const struct log_ratelimit *rl);

/* At or after log_ratelimit_due_ms(): returns the number of lines held back
 * and not reported yet, and forgets it (the caller writes one line saying
 * so); 0 when none, or before it is due. */
uint64_t log_ratelimit_flush(struct log_ratelimit *rl, uint64_t now_ms);

#endif
