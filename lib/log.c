/*
 * log: see log.h. Lines are assembled in one buffer and written with a
 * single write(2) so concurrent writers never interleave within a line.
 *
 * The line is logfmt: key=value pairs, the free text last as msg="…". A
 * value is quoted only when it must be (space, quote, '=', control bytes or
 * empty), and inside quotes '"' and '\' are escaped and control bytes are
 * written as \n, \r, \t or \xHH, so one event is always one line whatever a
 * peer managed to put into the text (a header value, a reason).
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/log.h"

enum log_level log_min_level = LL_INFO;

static const char *const level_names[] = { "debug", "info", "warn", "error" };

#define LOG_LINE_MAX 2048

/* Appends <src> (<len> bytes) to <dst> at *<n> (capacity <cap>, one byte
 * kept for the newline), quoted and escaped when <quote>. Truncates. */
static void
put_escaped(char *dst, size_t *n, size_t cap, const char *src, size_t len, bool quote)
{
    static const char hex[] = "0123456789abcdef";
    size_t i, o = *n;

    if (quote && o < cap)
        dst[o++] = '"';
    for (i = 0; i < len && o + 5 < cap; i++) {
        unsigned char ch = (unsigned char)src[i];

        if (ch == '"' || ch == '\\') {
            dst[o++] = '\\';
            dst[o++] = (char)ch;
        } else if (ch == '\n') {
            dst[o++] = '\\';
            dst[o++] = 'n';
        } else if (ch == '\r') {
            dst[o++] = '\\';
            dst[o++] = 'r';
        } else if (ch == '\t') {
            dst[o++] = '\\';
            dst[o++] = 't';
        } else if (ch < 0x20 || ch == 0x7f) {
            dst[o++] = '\\';
            dst[o++] = 'x';
            dst[o++] = hex[ch >> 4];
            dst[o++] = hex[ch & 15];
        } else {
            dst[o++] = (char)ch;
        }
    }
    if (quote && o < cap)
        dst[o++] = '"';
    *n = o;
}

size_t
log_fmt_value(char *dst, size_t cap, const char *val)
{
    size_t len = strlen(val), i, n = 0;
    bool quote = len == 0;

    for (i = 0; i < len && !quote; i++) {
        unsigned char ch = (unsigned char)val[i];

        quote = ch <= ' ' || ch == '"' || ch == '=' || ch == '\\' || ch == 0x7f;
    }
    if (cap == 0)
        return 0;
    put_escaped(dst, &n, cap - 1, val, len, quote);
    dst[n] = '\0';
    return n;
}

void
log_write(enum log_level lvl, const char *module, uint64_t conn_id,
          const char *fmt, ...)
{
    char line[LOG_LINE_MAX], text[LOG_LINE_MAX];
    struct timespec ts;
    struct tm tm;
    size_t n, tlen;
    int k;
    va_list ap;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = strftime(line, sizeof(line), "ts=%Y-%m-%dT%H:%M:%S", &tm);
    if (conn_id != 0)
        k = snprintf(line + n, sizeof(line) - n, ".%03ldZ level=%s module=%s conn=%llu msg=",
                     ts.tv_nsec / 1000000L, level_names[lvl], module,
                     (unsigned long long)conn_id);
    else
        k = snprintf(line + n, sizeof(line) - n, ".%03ldZ level=%s module=%s msg=",
                     ts.tv_nsec / 1000000L, level_names[lvl], module);
    if (k > 0)
        n += (size_t)k < sizeof(line) - n ? (size_t)k : sizeof(line) - n - 1;
    va_start(ap, fmt);
    k = vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    tlen = k < 0 ? 0 : (size_t)k < sizeof(text) ? (size_t)k : sizeof(text) - 1;
    put_escaped(line, &n, sizeof(line) - 1, text, tlen, true);
    line[n++] = '\n';
    if (write(STDERR_FILENO, line, n) < 0) {
        /* nowhere left to report it */
    }
}

void
log_kv_write(enum log_level lvl, const char *module, const char *event, ...)
{
    char line[LOG_LINE_MAX];
    struct timespec ts;
    struct tm tm;
    const char *key, *val;
    size_t n;
    int k;
    va_list ap;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = strftime(line, sizeof(line), "ts=%Y-%m-%dT%H:%M:%S", &tm);
    k = snprintf(line + n, sizeof(line) - n, ".%03ldZ level=%s module=%s event=",
                 ts.tv_nsec / 1000000L, level_names[lvl], module);
    if (k > 0)
        n += (size_t)k < sizeof(line) - n ? (size_t)k : sizeof(line) - n - 1;
    n += log_fmt_value(line + n, sizeof(line) - 1 - n, event);
    va_start(ap, event);
    while ((key = va_arg(ap, const char *)) != NULL) {
        val = va_arg(ap, const char *);
        if (n + strlen(key) + 3 >= sizeof(line) - 1)
            break;
        line[n++] = ' ';
        memcpy(line + n, key, strlen(key));
        n += strlen(key);
        line[n++] = '=';
        n += log_fmt_value(line + n, sizeof(line) - 1 - n, val != NULL ? val : "");
    }
    va_end(ap);
    line[n++] = '\n';
    if (write(STDERR_FILENO, line, n) < 0) {
        /* nowhere left to report it */
    }
}

static uint64_t
rl_period(const struct log_ratelimit *rl)
{
    return rl->period_ms != 0 ? rl->period_ms : 1000;
}

bool
log_ratelimit_pass(struct log_ratelimit *rl, uint64_t now_ms, unsigned burst,
                   uint64_t *suppressed)
{
    *suppressed = 0;
    if (now_ms - rl->window_ms >= rl_period(rl) || rl->window_ms == 0) {
        *suppressed = rl->suppressed;
        rl->window_ms = now_ms != 0 ? now_ms : 1;
        rl->count = 0;
        rl->suppressed = 0;
    }
    if (rl->count < burst) {
        rl->count++;
        return true;
    }
    rl->suppressed++;
    return false;
}

uint64_t
log_ratelimit_due_ms(const struct log_ratelimit *rl)
{
    return rl->suppressed != 0 ? rl->window_ms + rl_period(rl) : 0;
}

uint64_t
log_ratelimit_flush(struct log_ratelimit *rl, uint64_t now_ms)
{
    uint64_t n = rl->suppressed;

    if (n == 0 || now_ms < rl->window_ms + rl_period(rl))
        return 0;
    rl->suppressed = 0;
    return n;
}
