/*
 * verdict: see verdict.h. A checker's callback argument is its server
 * runtime (server.h, rule 6); the daemon is found from the runtime's
 * replica, which is the main loop's (px_daemon_of).
 */
#include <stdbool.h>
#include <stdio.h>

#include <jansson.h>

#include "admin/audit.h"
#include "admin/control.h"
#include "health/check.h"
#include "lib/log.h"
#include "proxy/daemon.h"
#include "proxy/ops.h"
#include "proxy/server.h"
#include "proxy/tls_up.h"
#include "proxy/verdict.h"

/* A checker's verdict changed: republish the routing snapshot (the weight
 * stays what the control plane says), log the change once, and audit it. */
static void
on_health_change(void *arg, bool is_up, unsigned count, const char *why)
{
    struct px_server_rt *s = arg;
    struct px_service *svc = s->svc;
    struct px_srv *srv = svc->srv;
    struct px_daemon *d = px_daemon_of(srv);   /* checkers run on the main loop */
    const struct adm_svc_state *st = adm_control_state(d->ctl, svc->idx);
    enum rt_side other = s->side == RT_LEGACY ? RT_NEW : RT_LEGACY;
    const char *side = rt_side_names[s->side];
    bool side_was = rt_side_usable(svc->snap, s->side);
    struct adm_audit_entry ae;
    char reason[512], aerr[512];
    json_t *fig;

    if (!px_service_set_up(svc, s->side, s->index, is_up, st->weight_bp, st->generation))
        return;
    px_ops_workers_set_up(srv, svc->idx, s->side, s->index, is_up, st->weight_bp,
                          st->generation);
    if (is_up)
        snprintf(reason, sizeof(reason), "%s/%s UP after %u passed check%s", side,
                 s->addr.text, count, count == 1 ? "" : "s");
    else
        snprintf(reason, sizeof(reason), "%s/%s DOWN after %u failed check%s: %s", side,
                 s->addr.text, count,
                 count == 1 ? "" : "s", why);
    {
        char msg[600], checks[16];

        snprintf(msg, sizeof(msg), "%s %s", svc->conf->name, reason);
        snprintf(checks, sizeof(checks), "%u", count);
        log_kv(is_up ? LL_INFO : LL_WARN, "health", "health", "service", svc->conf->name,
               "side", side, "server", s->addr.text, "verdict", is_up ? "up" : "down",
               "checks", checks, "msg", msg);
    }
    if (side_was && !rt_side_usable(svc->snap, s->side))
        log_at(LL_WARN, "health", 0, "service %s: %s has no healthy server: %s",
               svc->conf->name, side,
               rt_side_usable(svc->snap, other) ? "its share of traffic goes to the other side"
               : svc->conf->mode == PX_MODE_TCP ? "neither side has one, connections are closed"
                                                : "neither side has one, requests are answered 503");
    else if (!side_was && rt_side_usable(svc->snap, s->side))
        log_at(LL_INFO, "health", 0, "service %s: %s has a healthy server again: "
               "it takes its share of traffic", svc->conf->name, side);

    if (d->audit_file == NULL)
        return;
    fig = json_pack("{s:s, s:s, s:s, s:i, s:s, s:b}", "side", side,
                    "server", s->addr.text,
                    "verdict", is_up ? "up" : "down", "checks", (int)count,
                    "last_check", why, "side_healthy", rt_side_usable(svc->snap, s->side));
    ae = (struct adm_audit_entry){
        .service = svc->conf->name, .actor = "auto", .action = "health",
        .from_bp = st->weight_bp, .to_bp = st->weight_bp, .reason = reason,
        .generation = st->generation, .figures = fig,
        .from_text = is_up ? "down" : "up", .to_text = is_up ? "up" : "down",
    };
    /* the change happened: a failing audit log must not hide that */
    if (adm_audit_append(d->audit_file, &ae, aerr, sizeof(aerr)) != 0)
        log_at(LL_ERR, "health", 0, "%s: audit log: %s", svc->conf->name, aerr);
    json_decref(fig);
}

int
px_verdict_set_tls(struct px_service *svc, struct px_server_rt *s)
{
    const struct px_tls_up *tls = svc->conf->side[s->side].tls;

    if (s->check == NULL)
        return 0;
    return hl_check_set_tls(s->check, px_tls_up_ctx(tls), px_tls_up_sni(tls));
}

/* Creates and starts the active checker of server <s> of <svc> (which has a
 * "health" section), starting from the server's current verdict. Its
 * jitter is seeded from the daemon's seed (-R) without drawing from it, so
 * routing draws stay as they were. 0, or -1 (logged). */
static int
checker_start(struct px_daemon *d, struct px_service *svc, struct px_server_rt *s)
{
    char label[160];

    snprintf(label, sizeof(label), "%s %s/%s", svc->conf->name, rt_side_names[s->side],
             s->addr.text);
    s->check = hl_check_new(d->srv.base, &svc->conf->health,
                            (const struct sockaddr *)&s->addr.ss, s->addr.len,
                            s->addr.text, label,
                            d->srv.rng ^ (++d->checks_started * 0xd1b54a32d192ed03ULL),
                            on_health_change, s);
    if (s->check != NULL)
        hl_check_set_verdict(s->check, s->up);
    if (s->check == NULL || px_verdict_set_tls(svc, s) < 0 || hl_check_start(s->check) < 0) {
        log_at(LL_ERR, "health", 0, "%s: cannot start the health checks", label);
        hl_check_free(s->check);
        s->check = NULL;
        return -1;
    }
    return 0;
}

int
px_verdict_start_service(struct px_daemon *d, struct px_service *svc)
{
    const struct hl_check_conf *hc = &svc->conf->health;
    unsigned side, k, started = 0;
    int rc = 0;

    if (hc->type == HL_CHECK_NONE)
        return 0;
    for (side = 0; side < RT_SIDE__COUNT; side++) {
        for (k = 0; k < svc->conf->side[side].nservers; k++) {
            if (svc->servers[side][k]->check != NULL
                || svc->servers[side][k]->admin == PX_SRV_DISABLED)
                continue;                  /* running, or not probed while disabled */
            if (checker_start(d, svc, svc->servers[side][k]) < 0)
                rc = -1;
            else
                started++;
        }
    }
    if (started > 0)
        log_at(LL_INFO, "health", 0, "service %s: %s checks every %u ms (timeout %u ms, "
               "rise %u, fall %u)", svc->conf->name,
               hc->type == HL_CHECK_HTTP ? "http" : "tcp", hc->interval_ms,
               hc->timeout_ms, hc->rise, hc->fall);
    return rc;
}

int
px_verdict_start(struct px_daemon *d)
{
    unsigned i;

    for (i = 0; i < d->srv.nsvcs; i++)
        if (px_verdict_start_service(d, d->srv.svcs[i]) < 0)
            return -1;
    return 0;
}

void
px_verdict_stop_service(struct px_service *svc)
{
    unsigned side, k;

    for (side = 0; side < RT_SIDE__COUNT; side++)
        for (k = 0; svc->servers[side] != NULL && k < svc->conf->side[side].nservers; k++) {
            hl_check_free(svc->servers[side][k]->check);
            svc->servers[side][k]->check = NULL;
        }
}

void
px_verdict_stop(struct px_srv *srv)
{
    unsigned i;

    for (i = 0; srv->svcs != NULL && i < srv->nsvcs; i++)
        px_verdict_stop_service(srv->svcs[i]);
}
