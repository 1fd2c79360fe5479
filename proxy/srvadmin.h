/*
 * srvadmin: the operator's state of each server (ready, drain, disabled;
 * `cutoverctl server drain|disable|enable`), as the data plane applies it
 * and as it is kept for a restart: `server-admin.json` in the state
 * directory (only the servers that are not ready, by service, side and
 * address as configured; written whole to a temporary file, fsynced and
 * renamed at each change). A reload keeps each server's state (servers are
 * matched by address); a server the config no longer has is forgotten at
 * the next save.
 */
#ifndef CUTOVER_PROXY_SRVADMIN_H
#define CUTOVER_PROXY_SRVADMIN_H

#include <stddef.h>

#include "router/router.h"

struct px_daemon;

#define PX_SRVADMIN_FILE "server-admin.json"

/* adm_ops.server_admin (admin/state.h), with the main replica as <arg>. */
int px_srvadmin_op(void *arg, unsigned svc, enum rt_side side, const char *addr,
                   const char *to, char *from, size_t fromlen, char *msg, size_t len);

/* At startup, before the workers and the checkers start: remembers <file>
 * (copied) and applies what it holds to the main replica; entries of
 * services or servers the config does not have are ignored with a warning.
 * A missing file is no error; an unreadable or malformed one is (-1 with
 * <err>: startup stops rather than put a disabled server back in rotation). */
int px_srvadmin_load(struct px_daemon *d, const char *file, char *err, size_t errlen);

/* Replaces <file> with the <len> bytes <text> (taken), logging a failure
 * as "<what>: <why>: <note>" (admin/control.h, adm_control_write_file()). */
typedef void px_srvadmin_write_fn(void *arg, const char *file, char *text, size_t len,
                                  const char *what, const char *note);

/* The state file is written with <fn>(<arg>, ...) from now on (main.c: on
 * the control plane's writer thread); NULL: on the caller's thread. */
void px_srvadmin_set_writer(px_srvadmin_write_fn *fn, void *arg);

/* Frees what px_srvadmin_load() kept. */
void px_srvadmin_free(void);

#endif
