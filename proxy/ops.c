/*
 * ops: see ops.h. Each change is one job function, called by the main loop
 * on its own replica when the change applies there too, and run on every
 * worker's by px_workers_run(), which waits for all.
 */
#include <stdio.h>
#include <stdlib.h>

#include <jansson.h>

#include "admin/control.h"
#include "health/window.h"
#include "lib/log.h"
#include "lib/xmalloc.h"
#include "proxy/accesslog.h"
#include "proxy/daemon.h"
#include "proxy/gates.h"
#include "proxy/listen.h"
#include "proxy/ops.h"
#include "proxy/pool.h"
#include "proxy/server.h"
#include "proxy/shield.h"
#include "proxy/tcp.h"
#include "proxy/tls.h"
#include "proxy/shadow.h"
#include "proxy/status.h"
#include "proxy/worker.h"

/* ---- jobs: what the main loop applies reaches every worker ------------- */

/* Each runs on a worker's thread with its replica (proxy/worker.h); the
 * main loop applies the same to its own replica and waits for all. Service
 * indices are those of the current config: replicas hold the same services
 * in the same order. */

struct job_svc {
    unsigned idx;                    /* service */
    uint32_t weight_bp;              /* routing snapshot to publish */
    uint64_t generation;
    int state;                       /* enum adm_state: applied_state */
    bool reset_new;                  /* empty new's window */
    enum rt_side side;               /* set_up, switched: the side */
    unsigned server;                 /* set_up: index in the side */
    bool up;                         /* set_up: the verdict */
    int drain_s;                     /* switched: tunnel drain, or -1 */
    unsigned draining;               /* switched: tunnels that will close (atomic) */
};

static void
job_apply(struct px_srv *w, void *arg)
{
    const struct job_svc *j = arg;
    struct px_service *svc = w->svcs[j->idx];

    px_service_publish(svc, j->weight_bp, j->generation);
    if (j->reset_new) {
        hl_window_reset(&svc->window[RT_NEW]);
        svc->window_reset_gen = j->generation;
    }
    svc->applied_state = j->state;
}

static void
job_set_up(struct px_srv *w, void *arg)
{
    const struct job_svc *j = arg;
    struct px_service *svc = w->svcs[j->idx];

    if (j->server < svc->conf->side[j->side].nservers)
        px_service_set_up(svc, j->side, j->server, j->up, j->weight_bp, j->generation);
}

static void
job_switched(struct px_srv *w, void *arg)
{
    struct job_svc *j = arg;
    struct px_service *svc = w->svcs[j->idx];
    unsigned n;

    px_pool_close_side(svc, j->side);
    if (j->drain_s < 0)
        return;
    n = svc->conf->mode == PX_MODE_TCP ? px_tcp_drain_side(svc, j->side, j->drain_s)
                                       : px_shield_drain_tunnels(svc, j->side, j->drain_s);
    __atomic_fetch_add(&j->draining, n, __ATOMIC_RELAXED);
}

void
px_ops_publish_all(struct px_srv *w, struct px_srv *m)
{
    unsigned i;

    for (i = 0; i < w->nsvcs && i < m->nsvcs; i++) {
        px_service_publish(w->svcs[i], m->svcs[i]->snap->weight_bp,
                           m->svcs[i]->snap->generation);
        w->svcs[i]->applied_state = m->svcs[i]->applied_state;
    }
}

static void
job_reopen_logs(struct px_srv *w, void *arg)
{
    (void)arg;
    if (w->access_log != NULL)
        px_access_log_reopen(w->access_log);
}

static void
job_stop(struct px_srv *w, void *arg)
{
    (void)arg;
    w->stopping = true;
    px_srv_stop_listening(w);
    if (w->conns_active == 0)
        px_worker_drained(w);
}

/* ---- control-plane ops ----------------------------------------------- */

static void
op_apply(void *arg, unsigned idx, const struct adm_svc_state *st)
{
    struct px_srv *srv = arg;
    struct px_service *svc = srv->svcs[idx];
    uint32_t from = svc->snap->weight_bp;

    bool was_latched = svc->applied_state == ADM_ST_ROLLED_BACK ||
                       svc->applied_state == ADM_ST_FROZEN;
    bool latched = st->state == ADM_ST_ROLLED_BACK || st->state == ADM_ST_FROZEN;
    bool in_plan = svc->applied_state == ADM_ST_PROGRESSING ||
                   svc->applied_state == ADM_ST_PAUSED || st->state == ADM_ST_PROGRESSING;

    /* New's window starts afresh when an operator clears the latch (so the
     * errors that caused a rollback do not re-trigger it) and when an
     * operator moves the weight outside a plan. A plan's steps, pause and
     * resume keep the evidence: a new side that degrades across steps is
     * still caught. */
    struct job_svc j = {
        .idx = idx, .weight_bp = st->weight_bp, .generation = st->generation,
        .state = (int)st->state,
        .reset_new = (was_latched && !latched) || (!latched && !in_plan && st->weight_bp != from),
    };

    /* every worker routes by the new snapshot before the command returns */
    job_apply(srv, &j);
    px_workers_run(srv, job_apply, &j);
    if (j.reset_new)
        px_shield_fresh(svc);          /* the count a rollback's audit entry gives */
    {
        char f[16], t[16], g[24];

        snprintf(f, sizeof(f), "%u.%02u", from / 100, from % 100);
        snprintf(t, sizeof(t), "%u.%02u", st->weight_bp / 100, st->weight_bp % 100);
        snprintf(g, sizeof(g), "%llu", (unsigned long long)st->generation);
        log_kv(LL_INFO, "control", "applied", "service", svc->conf->name, "from", f, "to", t,
               "state", adm_state_names[st->state], "generation", g);
    }
}

static bool
op_side_healthy(void *arg, unsigned idx, enum rt_side side)
{
    struct px_srv *srv = arg;

    return rt_side_usable(srv->svcs[idx]->snap, side);
}

static void
op_status_begin(void *arg)
{
    px_workers_fold(arg);              /* the workers' counters and windows, once */
}

static void
op_status(void *arg, unsigned idx, json_t *obj)
{
    px_status_service(arg, idx, obj);
    px_gates_status(px_daemon_of(arg)->gates, idx, obj);
}

static int
op_gates(void *arg, unsigned idx, char *why, size_t len)
{
    return px_gates_verdict(px_daemon_of(arg)->gates, idx, why, len);
}

static unsigned
op_switched(void *arg, unsigned idx, enum rt_side left, int *drain_s)
{
    struct px_srv *srv = arg;
    struct job_svc j = { .idx = idx, .side = left, .drain_s = *drain_s };

    if (j.drain_s == ADM_DRAIN_ROLLBACK)
        j.drain_s = *drain_s = (int)srv->svcs[idx]->conf->rollback.drain_s;
    /* requests in flight finish; idle pooled connections to the side left
     * are closed now, its tunnels after the drain */
    job_switched(srv, &j);
    px_workers_run(srv, job_switched, &j);
    return __atomic_load_n(&j.draining, __ATOMIC_RELAXED);
}

/* Every service of replica <w> takes its new TLS material from <arg> (an
 * array in service order): new handshakes use it, those in flight and the
 * connections made keep theirs. */
static void
job_tls_swap(struct px_srv *w, void *arg)
{
    struct px_tls_ctx *const *tls = arg;
    unsigned i;

    for (i = 0; i < w->nsvcs; i++) {
        px_tls_ctx_put(w->svcs[i]->tls);
        w->svcs[i]->tls = px_tls_ctx_get(tls[i]);
    }
}

static int
op_certs_reload(void *arg, char *msg, size_t len)
{
    struct px_srv *srv = arg;
    struct px_tls_ctx **prev = xcalloc(srv->nsvcs > 0 ? srv->nsvcs : 1, sizeof(*prev)), **tls;
    unsigned i, nsvc = 0, ncert = 0;
    int rc;

    for (i = 0; i < srv->nsvcs; i++)
        prev[i] = srv->svcs[i]->tls;   /* their ticket keys carry over */
    rc = px_tls_load_all(srv->conf, prev, false, &tls, msg, len);
    free(prev);
    if (rc != 0)
        return -1;
    for (i = 0; i < srv->nsvcs; i++) {
        if (tls[i] == NULL)
            continue;
        nsvc++;
        ncert += px_tls_ncerts(tls[i]);
    }
    job_tls_swap(srv, tls);
    px_workers_run(srv, job_tls_swap, tls);
    px_tls_free_all(tls, srv->nsvcs);
    if (nsvc == 0)
        snprintf(msg, len, "no service terminates TLS: nothing to reload");
    else
        snprintf(msg, len, "%u certificate(s) of %u service(s) reloaded", ncert, nsvc);
    return 0;
}

static json_t *
op_diffs(void *arg, unsigned idx, unsigned n)
{
    struct px_srv *srv = arg;

    if (srv->svcs[idx]->conf->shadow == NULL)
        return NULL;
    px_workers_fold(srv);              /* the workers' kept differences too */
    return px_shadow_diffs(srv->svcs[idx], n);
}

const struct adm_ops px_ops = {
    .apply = op_apply,
    .side_healthy = op_side_healthy,
    .status_begin = op_status_begin,
    .status = op_status,
    .switched = op_switched,
    .certs_reload = op_certs_reload,
    .gates = op_gates,
    .diffs = op_diffs,
};

/* ---- the main loop's other changes ------------------------------------ */

void
px_ops_workers_set_up(struct px_srv *main, unsigned idx, enum rt_side side, unsigned server,
                      bool up, uint32_t weight_bp, uint64_t generation)
{
    struct job_svc j = { .idx = idx, .side = side, .server = server, .up = up,
                         .weight_bp = weight_bp, .generation = generation };

    px_workers_run(main, job_set_up, &j);
}

void
px_ops_reopen_logs(struct px_srv *main)
{
    job_reopen_logs(main, NULL);       /* a failure is logged, the old file kept */
    px_workers_run(main, job_reopen_logs, NULL);
}

void
px_ops_stop(struct px_srv *main)
{
    px_srv_stop_listening(main);
    px_workers_run(main, job_stop, NULL);
}
