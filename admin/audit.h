/*
 * audit: the append-only audit log. One JSON object per line for every
 * change of a service's weight or state, by an operator or automatically:
 *
 *   {"ts":"2024-05-01T12:00:00.123Z","service":"web","actor":"uid:0",
 *    "action":"weight","from":5,"to":12.5,"reason":"","generation":4,"pid":812}
 *
 * Each line is written with one write(2) on an O_APPEND descriptor and
 * fsynced. A line is in the file whole or not at all: a write that fails
 * part-way (a full disk) is cut back to the previous end (ftruncate), and a
 * file that ends in the middle of a line (a crash) has that partial line
 * moved to <file>.torn, with a warning that quotes it, before the next
 * entry goes in. The daemon is the log's only writer. The log is never
 * mixed into the debug log, and it can grow large: reading it starts from
 * the end of the file.
 */
#ifndef CUTOVER_ADMIN_AUDIT_H
#define CUTOVER_ADMIN_AUDIT_H

#include <stddef.h>
#include <stdint.h>

struct json_t;

#define ADM_AUDIT_TAIL_MAX 10000u  /* most entries one tail may return */

/* One audit entry; all strings are borrowed for the duration of the call. */
struct adm_audit_entry {
    const char *service;
    const char *actor;           /* "uid:N", "token:NAME" or "auto" */
    const char *action;          /* "weight", "rollback", "promote", "switch", … */
    uint32_t from_bp;            /* weight before the change, basis points */
    uint32_t to_bp;              /* weight after the change, basis points */
    const char *reason;          /* free text; NULL is written as "" */
    uint64_t generation;         /* the service's generation after the change */
    struct json_t *figures;      /* borrowed, may be NULL: written as "figures"
                                  * for automatic decisions */
    const char *from_text;       /* when not NULL, written as "from" instead of
                                  * <from_bp> (health changes: "up", "down") */
    const char *to_text;         /* the same for "to" */
    long pid;                    /* the process behind the command (SO_PEERCRED),
                                  * written as "pid" when > 0; 0 (the default)
                                  * and -1 mean unknown or not a process */
};

/* Called with every entry adm_audit_format() makes, once per entry (its
 * <action> and its <line>, "\n" included, both borrowed), before it is
 * written: the notifications (proxy/webhook.c) follow the audit log this
 * way. It must not block: it copies what it keeps. */
typedef void (*adm_audit_observer_fn)(void *arg, const char *action, const char *line,
                                      size_t len);

/* Sets the process's one observer (NULL: none). Control plane only. */
void adm_audit_set_observer(adm_audit_observer_fn fn, void *arg);

/* Called by adm_audit_append() before it writes: the control plane's
 * writer thread (admin/writer.h) has its entries written first, so that
 * the log keeps the order in which things happened. */
typedef void adm_audit_barrier_fn(void *arg);

/* Sets the process's one barrier (NULL: none). Control plane only. */
void adm_audit_set_barrier(adm_audit_barrier_fn *fn, void *arg);

/* The argument of the barrier set (NULL: none). */
void *adm_audit_barrier_arg(void);

/* Appends <e> to <file> with the current time (RFC 3339 UTC, milliseconds)
 * as "ts"; "from" and "to" are written in percent. The file (mode 0600) and
 * its directory (mode 0700) are created when missing. Returns 0, or -1 with
 * a message in <err> and the file as it was. Blocking (fsync): control
 * plane only. adm_audit_format() then adm_audit_write(). */
int adm_audit_append(const char *file, const struct adm_audit_entry *e,
                     char *err, size_t errlen);

/* <e> as one line of the log, "\n" included, with the current time: a new
 * string (caller frees) and its length in <*len>; NULL with <err> set. */
char *adm_audit_format(const struct adm_audit_entry *e, size_t *len, char *err,
                       size_t errlen);

/* Appends the line <line>/<len> (one entry, ending in its only "\n", as
 * adm_audit_format() makes it) to <file>: whole, or not at all (cut back
 * on a short write or a failed fsync, so a retry makes no duplicate).
 * A partial last line found in the file is moved aside first. 0, or -1 with
 * <err> set. */
int adm_audit_write(const char *file, const char *line, size_t len, char *err,
                    size_t errlen);

/* The startup check of <file>: a last line without its newline, or one
 * that is not a JSON object, is cut off, moved to <file>.torn and quoted in
 * a warning (a whole entry at the end of a broken line, as an older version
 * could leave, is kept as a line of its own). Returns 1 when it cut
 * something, 0 when the file was sound or missing, -1 with <err> set. */
int adm_audit_repair(const char *file, char *err, size_t errlen);

/* Called by adm_audit_scan() with each entry (borrowed), newest first;
 * returns non-zero to stop. */
typedef int (*adm_audit_visit_fn)(void *arg, struct json_t *entry);

/* Reads <file> backwards, newest entry first, calling <visit> for each
 * until it returns non-zero, the start of the file, or <max_bytes> read (0:
 * no limit). Lines that are not JSON objects are skipped with a warning (a
 * whole entry at the end of a broken line is read). Returns 0 (a missing
 * file too), 1 when it stopped at <max_bytes>, -1 with <err> set. */
int adm_audit_scan(const char *file, uint64_t max_bytes, adm_audit_visit_fn visit, void *arg,
                   char *err, size_t errlen);

/* Returns a new JSON array (caller owns it) with the last <n> entries of
 * <file> (1 <= n <= ADM_AUDIT_TAIL_MAX), oldest first; only entries whose
 * "service" equals <service> when it is not NULL. A missing file gives an
 * empty array. Lines that are not JSON objects are skipped with a warning.
 * The file is read backwards in blocks, so the cost follows <n>, not the size
 * of the log. Returns NULL with a message in <err> when the file cannot be
 * read. */
struct json_t *adm_audit_tail(const char *file, unsigned n, const char *service,
                              char *err, size_t errlen);

/* The JSON value of <bp> basis points in percent: an integer when whole
 * (10), a real otherwise (12.5). New reference. Dump it with
 * JSON_REAL_PRECISION(15) or less so 12.34 is not printed as
 * 12.339999999999999. */
struct json_t *adm_percent_json(uint32_t bp);

#endif
