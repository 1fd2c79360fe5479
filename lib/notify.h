/*
 * notify: readiness and state notifications to the service manager (the
 * sd_notify(3) protocol, a leaf utility: libc only). systemd passes the path
 * of a datagram socket in $NOTIFY_SOCKET to a `Type=notify` service; the
 * daemon sends "READY=1" once it serves, "RELOADING=1" … "READY=1" around a
 * reload and "STOPPING=1" when it starts to drain, with a "STATUS=" line an
 * operator sees in `systemctl status`.
 *
 * The protocol is one datagram of newline-separated assignments; it is
 * spoken here directly rather than through libsystemd so the daemon has one
 * dependency less and the same binary behaves alike with and without it.
 */
#ifndef CUTOVER_LIB_NOTIFY_H
#define CUTOVER_LIB_NOTIFY_H

#include <stddef.h>

/* Sends <state> ("READY=1\nSTATUS=serving") to $NOTIFY_SOCKET: a path, or
 * an abstract socket when it starts with '@'. Returns 1 when sent, 0 when
 * no service manager asked for it (variable unset or empty), -1 when the
 * variable is invalid or the send failed (errno set; the daemon logs it and
 * goes on). */
int notify_send(const char *state);

/* printf-style convenience for notify_send(). */
int notify_sendf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
