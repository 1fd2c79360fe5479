/*
 * fleet_tick: the fleet's part of the policy (see fleet_tick.h): what this
 * instance publishes of its windows, and what the leader decides on the
 * fleet's sum, by the rules proxy/tick.c applies to one instance's windows.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "admin/control.h"
#include "admin/fleet_leader.h"
#include "admin/store_pg_conf.h"
#include "health/fleet.h"
#include "health/policy.h"
#include "lib/log.h"
#include "lib/xmalloc.h"
#include "proxy/daemon.h"
#include "proxy/fleet_tick.h"
#include "proxy/metrics.h"
#include "proxy/tick.h"

/* Every service's applied state and both windows, now: the collect hook. */
static unsigned
fleet_collect(void *arg, struct adm_fw_svc **out)
{
    struct px_daemon *d = arg;
    struct px_srv *srv = &d->srv;
    struct adm_fw_svc *s = xcalloc(srv->nsvcs > 0 ? srv->nsvcs : 1, sizeof(*s));
    uint64_t now = px_now_ms(srv);
    unsigned i;

    /* the workers' outcomes are folded in by the policy tick every
     * PX_TICK_MS: what is published is at most that old */
    for (i = 0; i < srv->nsvcs; i++) {
        const struct px_service *svc = srv->svcs[i];
        const struct adm_svc_state *st = adm_control_state(d->ctl, i);

        snprintf(s[i].name, sizeof(s[i].name), "%s", svc->conf->name);
        s[i].generation = st->generation;
        s[i].weight_bp = st->weight_bp;
        s[i].state = (int)st->state;
        s[i].window_s = svc->conf->rollback.window_s;
        hl_window_counts(&svc->window[RT_LEGACY], now, &s[i].side[RT_LEGACY]);
        hl_window_counts(&svc->window[RT_NEW], now, &s[i].side[RT_NEW]);
    }
    *out = s;
    return srv->nsvcs;
}

static int
service_index(const struct px_srv *srv, const char *name)
{
    unsigned i;

    for (i = 0; i < srv->nsvcs; i++)
        if (strcmp(srv->svcs[i]->conf->name, name) == 0)
            return (int)i;
    return -1;
}

/* What each live instance brought to new's side (the figures). */
static json_t *
per_instance(const struct hl_fleet_row *rows, unsigned n, unsigned live_ms,
             uint64_t reset_gen)
{
    json_t *a = json_array();
    struct hl_stats st;
    unsigned i;

    for (i = 0; i < n; i++) {
        if (rows[i].age_ms > live_ms)
            continue;
        hl_counts_stats(&rows[i].side[RT_NEW], &st);
        json_array_append_new(a, json_pack("{s:s, s:I, s:I, s:b}", "instance",
                                           rows[i].instance, "requests",
                                           (json_int_t)st.requests, "errors",
                                           (json_int_t)st.errors, "counted",
                                           rows[i].generation >= reset_gen));
    }
    return a;
}

/* The leader's read of service <name>: the fleet's sum, the rollback rule
 * on it (hl_policy_eval), the decision (hl_auto_decide) and, on a breach,
 * the normal automatic path (adm_control_auto): applied here, written to
 * the store, applied by every instance from its notification. Only a
 * breach acts: on_new_down is each instance's own (its checks). */
static void
fleet_evaluate(void *arg, const char *name, const struct hl_fleet_row *rows, unsigned n,
               const struct adm_leader_view *v)
{
    struct px_daemon *d = arg;
    struct px_srv *srv = &d->srv;
    int idx = service_index(srv, name);
    const struct px_service *svc;
    const struct adm_svc_state *st;
    const struct hl_rollback_conf *rc;
    struct hl_fleet_sum sum;
    struct hl_stats ns, ls;
    struct hl_breach br;
    struct hl_auto_input in;
    enum hl_auto_action a;
    uint32_t from_bp;
    char why[256];
    json_t *fig;

    if (idx < 0)
        return;                        /* another config's service */
    svc = srv->svcs[idx];
    st = adm_control_state(d->ctl, (unsigned)idx);
    rc = &svc->conf->rollback;
    if (!hl_auto_armed(adm_auto_svc(st)))
        return;
    hl_fleet_sum(rows, n, v->live_ms, svc->window_reset_gen, &sum);
    hl_counts_stats(&sum.side[RT_NEW], &ns);
    hl_counts_stats(&sum.side[RT_LEGACY], &ls);
    hl_policy_eval(rc, &ns, &ls, &br);
    in = (struct hl_auto_input){
        .breached = br.breached,
        .freeze = rc->action == HL_ACT_FREEZE,
        .new_healthy = true,
        .rollback_on_new_down = false,
    };
    a = hl_auto_decide(adm_auto_svc(st), &in);
    if (a == HL_AUTO_NONE)
        return;
    fig = px_tick_figures(svc, px_tick_breach_kind(br.kind), &ns, &ls, &br,
                          rt_side_usable(svc->snap, RT_NEW));
    if (fig != NULL) {
        json_object_set_new(fig, "scope", json_string("fleet"));
        json_object_set_new(fig, "leader", json_string(v->instance));
        json_object_set_new(fig, "instances", json_integer((json_int_t)sum.live));
        json_object_set_new(fig, "stale_instances", json_integer((json_int_t)sum.stale));
        json_object_set_new(fig, "per_instance",
                            per_instance(rows, n, v->live_ms, svc->window_reset_gen));
    }
    snprintf(why, sizeof(why), "fleet of %u instance%s: %s", sum.live,
             sum.live == 1 ? "" : "s", br.text);
    from_bp = st->weight_bp;
    if (adm_control_auto(d->ctl, (unsigned)idx, a, why, fig) == 0)
        adm_control_log_written(d->ctl, a == HL_AUTO_ROLLBACK ? LL_WARN : LL_ERR, "policy",
                                "service %s: FLEET AUTOMATIC %s (%s) decided by the leader "
                                "%s: %s; weight %u.%02u%% -> %u.%02u%%; error_rate=%.4f "
                                "p99_ms=%.1f requests=%llu instances=%u", name,
                                a == HL_AUTO_ROLLBACK ? "ROLLBACK" : "FREEZE",
                                px_tick_breach_kind(br.kind), v->instance, why,
                                from_bp / 100, from_bp % 100, st->weight_bp / 100,
                                st->weight_bp % 100, br.error_rate, br.p99_ms,
                                (unsigned long long)br.requests, sum.live);
    json_decref(fig);
}

/* This instance ended the session of a leader whose lease expired (and
 * leads, or another took the lock first): audited here and in the fleet's
 * audit (the log line is the leader module's). */
static void
fleet_takeover(void *arg, const struct adm_leader_takeover *t)
{
    struct px_daemon *d = arg;
    char why[256];
    json_t *fig;

    snprintf(why, sizeof(why), "leader %s's lease expired (stale %.0f ms); its session "
             "ended; %s", t->instance, t->stale_ms, t->leading ? "leading"
             : "another instance took the lock first");
    fig = json_pack("{s:s, s:s, s:i, s:f, s:i, s:s, s:b}", "fleet", t->fleet, "previous",
                    t->instance, "previous_server_pid", t->backend_pid, "stale_ms",
                    t->stale_ms, "lease_ms", (int)ADM_LEADER_LEASE_MS, "by", t->by,
                    "leading", t->leading);
    adm_control_fleet_event(d->ctl, "leader_takeover", why, fig);
    json_decref(fig);
}

static const struct adm_leader_hooks hooks = {
    .collect = fleet_collect,
    .evaluate = fleet_evaluate,
    .takeover = fleet_takeover,
};

int
px_fleet_start(struct px_daemon *d)
{
    struct px_srv *srv = &d->srv;
    struct adm_leader_ident id;
    struct adm_leader *l;
    char address[512] = "", host[256];
    size_t len = 0;
    unsigned i, k;

    if (srv->conf->store_pg == NULL)
        return 0;
    /* its listen addresses, as configured */
    for (i = 0; i < srv->conf->nservices; i++) {
        const struct px_service_conf *sc = &srv->conf->services[i];

        for (k = 0; k < sc->nlisten && len + 2 < sizeof(address); k++)
            len += (size_t)snprintf(address + len, sizeof(address) - len, "%s%s",
                                    len > 0 ? "," : "", sc->listen[k].text);
    }
    if (len >= sizeof(address))
        address[sizeof(address) - 1] = '\0';
    if (gethostname(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "unknown");
    host[sizeof(host) - 1] = '\0';
    id = (struct adm_leader_ident){
        .address = address, .host = host, .version = CUTOVER_VERSION,
        .pid = (long)getpid(), .started_ms = d->start_time_s * 1000.0,
    };
    l = adm_leader_new(srv->base, srv->conf->store_pg, &id, srv->rng, &hooks, d);
    if (l == NULL)
        return -1;
    adm_control_set_leader(d->ctl, l);   /* the control plane owns it */
    if (adm_leader_start(l) != 0) {
        log_at(LL_ERR, "fleet", 0, "cannot start the fleet session");
        return -1;
    }
    return 0;
}
