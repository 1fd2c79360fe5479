/*
 * ctl_proto: what cutoverctl and the daemon agree on, with no dependency on
 * either (libc only): the default socket path and the weight syntax.
 */
#ifndef CUTOVER_ADMIN_CTL_PROTO_H
#define CUTOVER_ADMIN_CTL_PROTO_H

#include <stddef.h>
#include <stdint.h>

/* The default admin socket path: $CUTOVER_SOCKET when set, else
 * /run/cutover/admin.sock for root, else $XDG_RUNTIME_DIR/cutover/admin.sock,
 * else /tmp/cutover-<uid>/admin.sock. Written into <buf>. */
void ctl_default_socket(char *buf, size_t len);

/* Parses a weight in percent with at most two decimals ("10", "12.5",
 * "99.99", "100", "0.5") into basis points. Rejects signs, exponents,
 * spaces, "", ".", values over 100 and a third decimal. Returns 0 or -1. */
int ctl_weight_parse(const char *text, uint32_t *bp);

/* Converts a JSON number of percent to basis points with the same rules
 * (0..100, at most two decimals). Returns 0 or -1. */
int ctl_weight_from_double(double percent, uint32_t *bp);

#endif
