/*
 * daemon: cutoverd as one process. The main loop's replica of the data
 * plane (struct px_srv, worker 0) and, around it, what only the main loop
 * has: the control plane (admin/control.h) with its admin socket, the
 * policy tick, the reload counters, the shutdown deadline. proxy/main.c
 * builds and frees it; the reload (proxy/reload.c), the health verdicts
 * (proxy/verdict.c) and the metrics (proxy/metrics.c) use it on the main
 * loop's thread. Workers never see it: their replicas are plain struct
 * px_srv (proxy/worker.c).
 */
#ifndef CUTOVER_PROXY_DAEMON_H
#define CUTOVER_PROXY_DAEMON_H

#include <stddef.h>
#include <stdint.h>

#include "proxy/server.h"

struct adm_control;
struct adm_http;
struct adm_server;
struct event;
struct px_gates;
struct px_reload_load;
struct px_tick;

struct px_daemon {
    struct px_srv srv;                   /* the main loop's replica (worker 0) */
    struct adm_control *ctl;             /* owned: weights, states, plans, state file */
    struct adm_server *admin;            /* owned: the admin socket */
    struct adm_http *admin_http;         /* borrowed from main(): admin.listen, or NULL */
    struct px_tick *tick;                /* owned: the policy tick */
    struct px_gates *gates;              /* owned: the migration gates (proxy/gates.h) */
    struct px_notify_conf *notify;       /* owned: a copy of "notify" of the startup
                                          * config, tokens read (a reload warns) */
    struct px_webhooks *webhooks;        /* owned: its sender */
    const char *audit_file;              /* borrowed from main(): audit log of the
                                          * reloads and automatic health changes */
    const char *cookie_key_file;         /* borrowed from main(): the sticky-cookie
                                          * keys, read at startup and every reload */
    struct px_reload_load *reload;       /* owned: the config file being read for a
                                          * reload (proxy/reload.c); NULL: none */
    void (*reloaded)(struct px_daemon *d);   /* a reload ended, applied or refused
                                          * (main.c tells the service manager); NULL */
    unsigned conns_cap_default;          /* limits.max_connections when the config sets
                                          * none (px_listen_cap_default() at startup) */
    uint64_t reloads;                    /* successful SIGHUP reloads */
    uint64_t reload_failures;            /* refused ones (old config kept) */
    uint64_t checks_started;             /* seeds the jitter of each new checker */
    struct event *grace_timer;           /* owned: shutdown deadline */
    double start_time_s;                 /* wall clock at startup, s since the epoch */
};

/* The daemon whose main replica is <srv>: for callbacks that are handed a
 * data-plane object of the main loop (a checker's server runtime). Never
 * with a worker's replica. */
static inline struct px_daemon *
px_daemon_of(struct px_srv *srv)
{
    return (struct px_daemon *)(void *)((char *)srv - offsetof(struct px_daemon, srv));
}

#endif
