/*
 * ctl_show: how cutoverctl shows the daemon's replies to a person (see
 * ctl_show.c), and the exit statuses the pieces of cutoverctl share. Part
 * of the cutoverctl binary only; the daemon never includes it.
 */
#ifndef CUTOVER_ADMIN_CTL_SHOW_H
#define CUTOVER_ADMIN_CTL_SHOW_H

#include <stddef.h>

#include <jansson.h>

enum ctl_exit {
    CTL_EXIT_OK = 0,
    CTL_EXIT_REFUSED = 1,
    CTL_EXIT_USAGE = 2,
    CTL_EXIT_UNREACHABLE = 3,
};

/* <len> bytes of <s> as they may be shown on a terminal (ctl_escape() with
 * <flags>), in a buffer that stays valid for 31 more calls. */
const char *ctl_shown(const char *s, size_t len, unsigned flags);

/* The reply of status: every service, then the state store's trouble. */
void ctl_print_status(const json_t *reply);

/* A service's "last_change" object <lc> as lines under <label>:
 *   last    rollback 10.00% -> 0.00% by auto at 2026-12-05T18:44:34.686Z
 *           reason "error rate 0.074 > 0.050 over 27 requests (2 errors)"
 *           figures kind=error_rate error_rate=0.07 requests=27 …
 * Nothing when it is not an object. */
void ctl_print_last_change(const json_t *lc, const char *label);

/* The reply of a change: "web: weight 0.00% -> 10.00% (generation 4), state steady". */
void ctl_print_change(const json_t *reply);

/* The reply of audit: one line per entry, oldest first. */
void ctl_print_audit(const json_t *reply);

/* --json: the reply <text> as the daemon sent it, or <reply> re-encoded
 * with \uXXXX escapes when the text holds characters that are not shown as
 * they are. */
void ctl_print_json(const json_t *reply, const char *text);

#endif
