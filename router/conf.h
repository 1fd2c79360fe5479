/*
 * router/conf: the routing part of a service's configuration (weight,
 * sticky, override) and the error type every config parser fills in. The
 * only router file that may include jansson.
 */
#ifndef CUTOVER_ROUTER_CONF_H
#define CUTOVER_ROUTER_CONF_H

#include "router/router.h"

struct json_t;   /* jansson's json_t, forward-declared */

/* Where and why a config failed. <path> is the JSON path of the offending
 * key or value ("services[0].rollback.max_error_rate"), <msg> the reason. */
struct conf_err {
    char path[192];
    char msg[256];
};

/* Fills <err> and returns -1. <path> is a full JSON path. */
int conf_fail(struct conf_err *err, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Parses the routing keys of service object <svc> ("weight", "sticky",
 * "override"; other keys are left to the caller) into <out>. <name> is the
 * service name (default sticky salt), <prefix> the JSON path of <svc>
 * ("services[0]") for error messages. Returns 0 or -1 with <err> set. */
int rt_conf_parse(struct json_t *svc, const char *name, const char *prefix,
                  struct rt_conf *out, struct conf_err *err);

#endif
