/*
 * request: internal to the control plane (see control_int.h). What every
 * piece of it shares to read a request and to write a reply or a log line:
 * the error reply, JSON type names, percent text, the service lookup and the
 * request checks every command starts with. Calls no other piece.
 */
#ifndef CUTOVER_ADMIN_REQUEST_H
#define CUTOVER_ADMIN_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "admin/control_int.h"

/* {"ok":false,"error":<fmt, …>} (a new reply; NULL only when out of memory). */
json_t *adm_fail_reply(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* "an object", "a string", … : the type of <v> for a message. */
const char *adm_type_name(const json_t *v);

/* Writes <bp> as percent text ("10", "12.5", "12.34") into <buf>; returns it. */
const char *adm_pct(uint32_t bp, char *buf, size_t len);

/* Returns the index of the service named <name>, or -1. */
int adm_svc_find(const struct adm_control *c, const char *name);

/* Returns NULL when every key of <req> is in <allowed> (NULL-terminated),
 * else an error reply naming the unknown keys of a <cmd> request. */
json_t *adm_check_keys(json_t *req, const char *cmd, const char *const *allowed);

/* Resolves the "service" of <req> into <*svc>. It may be left out when there
 * is exactly one service. Returns NULL or an error reply. */
json_t *adm_resolve_service(const struct adm_control *c, json_t *req, unsigned *svc);

/* The operator's "reason" of a changing command <req> (<cmd> for the
 * message) into <*reason> (borrowed from <req>; "" when none). It must be a
 * string of at most ADM_REASON_MAX bytes and one line of printable text
 * (ctl_text_ok()); with admin.require_reason (c->require_reason) it must be
 * there and not empty. Returns NULL or an error reply. */
#define ADM_REASON_MAX 1024
json_t *adm_req_reason(const struct adm_control *c, json_t *req, const char *cmd,
                       const char **reason);

#endif
