/*
 * router/conf: the routing part of a service's configuration (weight,
 * sticky, override) and the error type every config parser fills in. The
 * only router file that may include jansson.
 */
#ifndef CUTOVER_ROUTER_CONF_H
#define CUTOVER_ROUTER_CONF_H

#include "lib/conf.h"
#include "router/router.h"

/* Parses the routing keys of service object <svc> ("weight", "sticky",
 * "override"; other keys are left to the caller) into <out>. <name> is the
 * service name (default sticky salt), <prefix> the JSON path of <svc>
 * ("services[0]") for error messages. Returns 0 or -1 with <err> set. */
int rt_conf_parse(struct json_t *svc, const char *name, const char *prefix,
                  struct rt_conf *out, struct conf_err *err);

/* True when <a> and <b> are the same routing keys: every field, strings by
 * content. A reload compares a kept service's old and new keys with it. */
bool rt_conf_equal(const struct rt_conf *a, const struct rt_conf *b);

#endif
