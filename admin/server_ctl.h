/*
 * server_ctl: internal to the control plane (see control_int.h). The
 * `server` command: an operator drains, disables or enables one server of a
 * side, as HAProxy's runtime API does ({"cmd":"server","service":"web",
 * "side":"new","server":"127.0.0.1:9002","action":"drain","reason":"…"}).
 * The data plane does it (adm_ops.server_admin); this file checks the
 * request and audits it ("server_drain", "server_disable",
 * "server_enable"). No weight or generation changes.
 */
#ifndef CUTOVER_ADMIN_SERVER_CTL_H
#define CUTOVER_ADMIN_SERVER_CTL_H

#include <jansson.h>

#include "admin/control_int.h"

json_t *adm_cmd_server(struct adm_control *c, json_t *req, const char *actor);

#endif
