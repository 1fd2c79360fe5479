/*
 * log: the process-wide logger (a leaf utility: libc only). One event per
 * line on stderr: "ts level module conn=ID message". The level is tested
 * before the arguments are evaluated, so LL_DEBUG lines cost nothing when off.
 */
#ifndef CUTOVER_ADMIN_LOG_H
#define CUTOVER_ADMIN_LOG_H

#include <stdint.h>

enum log_level { LL_DEBUG = 0, LL_INFO, LL_WARN, LL_ERR };

/* The only mutable process-wide logger state: set once at startup. */
extern enum log_level log_min_level;

void log_write(enum log_level lvl, const char *module, uint64_t conn_id,
               const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#define log_at(lvl, module, conn_id, ...)                              \
    do {                                                               \
        if ((lvl) >= log_min_level)                                    \
            log_write((lvl), (module), (conn_id), __VA_ARGS__);        \
    } while (0)

#endif
