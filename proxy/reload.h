/*
 * reload: the configuration reload (SIGHUP). Loads and checks the file (on
 * a thread of its own, so the main loop goes on serving requests while it
 * parses), then, on the main loop, binds the new listen addresses and
 * re-keys the control plane, where any
 * failure leaves everything as it was (logged and audited); then commits, in
 * steps of about 1 ms on the main loop, each replica in turn (the main one,
 * then every worker's in a job): the swap (services in their new order, new
 * ones started, removed ones retired with their last connection, listeners,
 * TLS material, the generation), then slices in which kept services take
 * their new config (servers matched by address, checkers restarted when
 * their settings changed, windows restarted when their length did), each
 * between two events of every loop. Weights and states are kept. What
 * survives and how: server.h ("Lifetimes across a configuration reload")
 * and docs/DESIGN.md.
 */
#ifndef CUTOVER_PROXY_RELOAD_H
#define CUTOVER_PROXY_RELOAD_H

struct px_daemon;

/* SIGHUP on the main loop: reopens the log files, then, unless the daemon
 * is stopping, starts reloading the running config's file: it is read and
 * checked on a thread, and the reload is applied (or refused) on the main
 * loop once it is, in steps; then d->reloaded(d) runs. A SIGHUP while the
 * file is being read or the reload applied reads it again after (once,
 * however many came). Counted in d->reloads or d->reload_failures. */
void px_reload(struct px_daemon *d);

/* Sets the process's limits.max_connections from the running config (or
 * d->conns_cap_default when it sets none) and has the main loop's
 * listeners follow it: at startup and after each reload (the workers'
 * listeners follow in the reload's job). */
void px_daemon_set_cap(struct px_daemon *d);

/* At exit: drops a file being read (without waiting for a read that
 * blocks) or a reload not swapped yet; finishes at once one that is. */
void px_reload_stop(struct px_daemon *d);

#endif
