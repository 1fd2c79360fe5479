/*
 * router/conf: the routing part of a service's configuration (weight,
 * sticky, override with its allowed sources and secret) and the error type
 * every config parser fills in. The only router file that may include
 * jansson.
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

/* Sets the override secret of <c> from the text of override.secret_file
 * (<len> bytes; one line, its end of line dropped): 16 to 128 printable
 * characters without spaces, ';', ',', '"' or '\\'. Returns 0, or -1 with
 * the reason in <*why> (static text that never quotes the file). */
int rt_conf_set_secret(struct rt_conf *c, const char *text, size_t len, const char **why);

/* True when <a> and <b> are the same routing keys: every field, strings by
 * content. A reload compares a kept service's old and new keys with it. */
bool rt_conf_equal(const struct rt_conf *a, const struct rt_conf *b);

#endif
