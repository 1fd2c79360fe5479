/*
 * lib/conf: the helpers every JSON config parser shares (router/conf.c,
 * health/conf.c, proxy/conf.c): the error type and conf_fail(), JSON paths
 * ("services[0].rollback.max_error_rate") built by conf_join(), the strict
 * unknown-key check, and conf_json_locate(), which turns a path back into a
 * line and column of the original text for the message.
 *
 * A leaf: libc and jansson only, no allocation, no I/O.
 */
#ifndef CUTOVER_LIB_CONF_H
#define CUTOVER_LIB_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct json_t;   /* jansson's json_t, forward-declared */

/* Where and why a config failed. <path> is the JSON path of the offending
 * key or value ("services[0].rollback.max_error_rate"), <msg> the reason. */
struct conf_err {
    char path[192];
    char msg[256];
};

/* Every error of one load, for `cutoverd -t`: at most CONF_ERRORS_MAX kept,
 * the rest counted. */
#define CONF_ERRORS_MAX 20
struct conf_errlist {
    struct conf_err e[CONF_ERRORS_MAX];
    unsigned n;                  /* kept */
    unsigned dropped;            /* found beyond CONF_ERRORS_MAX */
};

/* Adds a copy of <e> to <l>, unless one with the same path and message is
 * there already; counts it in <dropped> when <l> is full. */
void conf_errlist_add(struct conf_errlist *l, const struct conf_err *e);

/* While <l> is set, conf_check_keys() adds every unknown key of an object
 * to <l> and lets the parse go on. NULL stops it. One load at a time,
 * on the thread that loads (the daemon's main loop): a global, so that
 * every section parser reports its keys without a new argument. */
void conf_collect(struct conf_errlist *l);

/* The key of the NULL-terminated list <allowed> nearest to <key> when it is
 * near enough to be a typo of it (an edit distance of at most 2, and less
 * than half of the key's length; a swap of two neighbours counts 1), else
 * NULL. The first of equally near ones. */
const char *conf_nearest_key(const char *key, const char *const *allowed);

/* Fills <err> and returns -1. <path> is a full JSON path. */
int conf_fail(struct conf_err *err, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes <a><b><c> into <buf>, truncated to <len> bytes, and returns <buf>.
 * By hand rather than with snprintf, whose truncation warning cannot know
 * that JSON paths are short. */
const char *conf_cat3(char *buf, size_t len, const char *a, const char *b, const char *c);

/* "<prefix>.<key>", or <key> alone when <prefix> is empty. */
const char *conf_join(char *buf, size_t len, const char *prefix, const char *key);

/* "<prefix>[<idx>]". */
const char *conf_join_index(char *buf, size_t len, const char *prefix, size_t idx);

/* Fails (conf_fail, "unknown key", with the key's path, and `(did you mean
 * "window_s"?)` when conf_nearest_key() finds one) on the first member of
 * object <obj> whose key is not in the NULL-terminated list <allowed>;
 * while conf_collect() is on, every such member is added to its list
 * instead and 0 is returned, so the section's parse goes on to its other
 * errors (the list decides that the load fails). */
int conf_check_keys(struct json_t *obj, const char *path, const char *const *allowed,
                    struct conf_err *err);

/* Typed readers: each fails (conf_fail) with the JSON path of the offending
 * value. The conf_opt_* ones read member <key> of object <obj> at path
 * <prefix>; when the key is absent they return 0 and leave <*out> as it
 * was (its default), except conf_opt_object and the string readers, which
 * set <*out> to NULL. Integers given as reals (2000.0) are refused: a value
 * in milliseconds with a fraction is a sign of a unit mix-up. */

/* <v> is an integer in [<min>, <max>], stored in <*out>. */
int conf_int(struct json_t *v, const char *path, long long min, long long max,
             long long *out, struct conf_err *err);
int conf_opt_int(struct json_t *obj, const char *key, const char *prefix, long long min,
                 long long max, long long *out, struct conf_err *err);
int conf_opt_uint(struct json_t *obj, const char *key, const char *prefix, long long min,
                  long long max, unsigned *out, struct conf_err *err);
/* A number, integer or real, in [<min>, <max>]. */
int conf_opt_double(struct json_t *obj, const char *key, const char *prefix, double min,
                    double max, double *out, struct conf_err *err);
int conf_opt_object(struct json_t *obj, const char *key, const char *prefix,
                    struct json_t **out, struct conf_err *err);
/* A string, borrowed from <obj>; conf_opt_nonempty() also refuses "". */
int conf_opt_string(struct json_t *obj, const char *key, const char *prefix,
                    const char **out, struct conf_err *err);
int conf_opt_nonempty(struct json_t *obj, const char *key, const char *prefix,
                      const char **out, struct conf_err *err);

/* A percentage with at most two decimals as basis points (10.25 -> 1025):
 * 0..100 when <zero_ok>, else greater than 0 and at most 100. More decimals
 * are refused, not rounded: an operator who typed 10.005 meant something
 * basis points cannot hold. The tolerance absorbs binary rounding (0.29 is
 * 28.999999999999996 after scaling) but not a third decimal. */
int conf_percent_bp(struct json_t *v, const char *path, bool zero_ok, uint32_t *bp,
                    struct conf_err *err);

/* Finds the line and column (1-based) of the JSON value or object key at
 * <path> ("services[0].rollback.rsie") in JSON text <text>. When the path
 * names a key that exists, the position is that of the key. Returns 0, or
 * -1 when the text does not contain the path. Pure, used for messages. */
int conf_json_locate(const char *text, size_t len, const char *path,
                     int *line, int *col);

#endif
