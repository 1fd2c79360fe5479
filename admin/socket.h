/*
 * socket: the admin unix-socket server. One JSON object per line in, one
 * reply line out, the connection stays open. The socket file is created with
 * its final mode (umask set before bind) so it is never briefly wider. The
 * peer's uid is the actor of its commands, its pid is audited with them.
 * Time limits and a connection limit that evicts instead of refusing keep
 * the socket open to the operator whatever other clients do (socket.c).
 */
#ifndef CUTOVER_ADMIN_SOCKET_H
#define CUTOVER_ADMIN_SOCKET_H

#include <sys/types.h>

struct event_base;
struct adm_control;
struct adm_server;
struct adm_conn_stats;

/* Listens on <path> (a stale socket file of our euid that nobody answers
 * on is replaced; any other file there is an error; its directory is
 * created with mode 0700 when missing) with file mode <mode>. Returns NULL
 * with a message in <err>. */
struct adm_server *adm_server_new(struct event_base *base, struct adm_control *ctl,
                                  const char *path, mode_t mode,
                                  char *err, size_t errlen);

/* The same, and with <gid> >= 0 the socket file belongs to group <gid>:
 * created with <mode>'s owner bits only, chown'ed to the group, then given
 * <mode>, all before listen(), so it is never wider than <mode> nor open
 * to another group. <gid> -1: the process's group, as adm_server_new(). */
struct adm_server *adm_server_new_group(struct event_base *base, struct adm_control *ctl,
                                        const char *path, mode_t mode, long gid,
                                        char *err, size_t errlen);

/* The connections open, evicted and timed out so far (all 0 for NULL). */
void adm_server_conn_stats(const struct adm_server *s, struct adm_conn_stats *out);

/* Closes the listener and every client, and unlinks the socket file. */
void adm_server_free(struct adm_server *s);

#endif
