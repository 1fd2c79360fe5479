/*
 * health/gate_conf: the parser of a service's "gates" array into struct
 * hl_gates_conf (health/gate.h). Strict, with the JSON path of every error;
 * nothing is connected to or read. docs/gates.md lists the keys.
 */
#ifndef CUTOVER_HEALTH_GATE_CONF_H
#define CUTOVER_HEALTH_GATE_CONF_H

#include "health/gate.h"

struct json_t;
struct conf_err;

/* Reads array <j> (NULL: no gates) at JSON path <path>; relative password
 * files are taken from <dir> (the config's directory). 0, or -1 with <err>
 * (and <out> empty). Free with hl_gates_conf_free(). */
int hl_gates_conf_parse(struct json_t *j, const char *path, const char *dir,
                        struct hl_gates_conf *out, struct conf_err *err);

void hl_gates_conf_free(struct hl_gates_conf *c);

/* A deep copy of <src> into <dst> (free it the same way). 0. */
int hl_gates_conf_copy(struct hl_gates_conf *dst, const struct hl_gates_conf *src);

#endif
