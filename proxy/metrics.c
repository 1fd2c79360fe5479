/*
 * proxy/metrics: see metrics.h. One family after the other, each over every
 * service (the text format wants a family's samples together), in the
 * order of docs/DESIGN.md "Metrics". Every series is written even at 0, so
 * a dashboard's rate() has a start and an alert on a reason that never
 * happened yet still has a series to watch.
 *
 * A scrape of many services is written in parts of about a millisecond
 * (px_metrics_render_part(), the HTTP endpoint's slices): each part runs
 * the whole sequence of families again, writing only its own stretch of
 * it (lib/metrics.h), so the text is the one written at once, each line
 * as of its part, and stops its walk once that stretch is written. A
 * reload between two parts starts the scrape over.
 *
 * Workload: a scrape every few seconds; a few hundred lines per service.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <event2/buffer.h>

#include "admin/conn.h"
#include "admin/control.h"
#include "admin/http.h"
#include "admin/socket.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "proxy/daemon.h"
#include "proxy/gates.h"
#include "proxy/metrics.h"
#include "proxy/server.h"
#include "proxy/shadow.h"
#include "proxy/shield.h"
#include "proxy/tls.h"
#include "proxy/webhook.h"
#include "proxy/worker.h"

static const char *const class_names[5] = { "2xx", "3xx", "4xx", "5xx", "error" };

/* The services the control plane knows, in config order. */
static struct px_service *
svc_at(struct px_srv *srv, unsigned i)
{
    return srv->svcs[i];
}

static void
render_process(struct px_daemon *d, struct met_writer *w)
{
    const struct met_label version[] = { { "version", CUTOVER_VERSION } };

    met_family(w, "cutover_build_info", MET_GAUGE,
               "Always 1; the version of cutoverd in a label.");
    met_sample_u64(w, version, 1, 1);
    met_family(w, "cutover_start_time_seconds", MET_GAUGE,
               "When cutoverd started, in seconds since the Unix epoch.");
    met_sample_double(w, NULL, 0, d->start_time_s);
    met_family(w, "cutover_reloads_total", MET_COUNTER,
               "Configuration reloads (SIGHUP) that were applied.");
    met_sample_u64(w, NULL, 0, d->reloads);
    met_family(w, "cutover_reload_failures_total", MET_COUNTER,
               "Configuration reloads refused (the running configuration was kept).");
    met_sample_u64(w, NULL, 0, d->reload_failures);
    met_family(w, "cutover_config_generation", MET_GAUGE,
               "Generation of the running configuration: 1 at startup, +1 per reload.");
    met_sample_u64(w, NULL, 0, d->srv.conf_generation);
}

/* The admin socket's and the admin HTTP endpoint's connections. */
static void
render_admin(struct px_daemon *d, struct met_writer *w)
{
    struct met_label l[1] = { { "endpoint", "" } };
    struct adm_conn_stats st[2];
    static const char *const names[2] = { "socket", "http" };
    unsigned k;

    adm_server_conn_stats(d->admin, &st[0]);
    adm_http_conn_stats(d->admin_http, &st[1]);
    met_family(w, "cutover_admin_connections", MET_GAUGE,
               "Admin connections open now (this scrape's own included).");
    for (k = 0; k < 2; k++) {
        l[0].value = names[k];
        met_sample_u64(w, l, 1, st[k].open);
    }
    met_family(w, "cutover_admin_evictions_total", MET_COUNTER,
               "Admin connections closed to make room for a new one (the limit was "
               "reached).");
    for (k = 0; k < 2; k++) {
        l[0].value = names[k];
        met_sample_u64(w, l, 1, st[k].evicted);
    }
    met_family(w, "cutover_admin_timeouts_total", MET_COUNTER,
               "Admin connections closed by a time limit: incomplete request, idle, "
               "replies not read.");
    for (k = 0; k < 2; k++) {
        l[0].value = names[k];
        met_sample_u64(w, l, 1, st[k].timed_out);
    }
}

static void
render_requests(struct px_srv *srv, struct met_writer *w)
{
    struct met_label l[3] = { { "service", "" }, { "side", "" }, { "class", "" } };
    double bounds[PX_LAT_NBOUNDS];
    unsigned i, side, k;

    met_family(w, "cutover_requests_total", MET_COUNTER,
               "Requests (HTTP) or connections (TCP) by the side that served them and "
               "outcome: status class, or error for a transport failure.");
    for (i = 0; i < srv->nsvcs && !met_part_over(w); i++) {
        const struct px_service *svc = svc_at(srv, i);

        l[0].value = svc->conf->name;
        for (side = 0; side < RT_SIDE__COUNT; side++) {
            l[1].value = rt_side_names[side];
            for (k = 0; k < 5; k++) {
                l[2].name = "class";
                l[2].value = class_names[k];
                met_sample_u64(w, l, 3, svc->stats[side].by_class[k]);
            }
        }
    }

    met_family(w, "cutover_errors_total", MET_COUNTER,
               "Transport failures by side and kind, connect failures that were "
               "retried included.");
    for (i = 0; i < srv->nsvcs && !met_part_over(w); i++) {
        const struct px_service *svc = svc_at(srv, i);

        l[0].value = svc->conf->name;
        for (side = 0; side < RT_SIDE__COUNT; side++) {
            l[1].value = rt_side_names[side];
            for (k = PX_E_NONE + 1; k < PX_E__COUNT; k++) {
                l[2].name = "kind";
                l[2].value = px_err_names[k];
                met_sample_u64(w, l, 3, svc->stats[side].errors[k]);
            }
        }
    }

    for (k = 0; k < PX_LAT_NBOUNDS; k++)
        bounds[k] = (double)px_lat_bounds_us[k] / 1e6;
    met_family(w, "cutover_request_duration_seconds", MET_HISTOGRAM,
               "Time from the complete request head (TCP: accept) to the response head "
               "(TCP: connected) or the failure, by side.");
    for (i = 0; i < srv->nsvcs && !met_part_over(w); i++) {
        const struct px_service *svc = svc_at(srv, i);

        l[0].value = svc->conf->name;
        for (side = 0; side < RT_SIDE__COUNT; side++) {
            const struct px_side_stats *st = &svc->stats[side];

            l[1].value = rt_side_names[side];
            met_histogram(w, l, 2, bounds, PX_LAT_NBOUNDS, st->lat_buckets,
                          (double)st->lat_sum_us / 1e6);
        }
    }

    met_family(w, "cutover_fallbacks_total", MET_COUNTER,
               "Requests or connections sent to the other side because the chosen one "
               "had no healthy server.");
    for (i = 0; i < srv->nsvcs && !met_part_over(w); i++) {
        const struct px_service *svc = svc_at(srv, i);

        l[0].value = svc->conf->name;
        met_sample_u64(w, l, 1, svc->stats[RT_LEGACY].fallbacks +
                                svc->stats[RT_NEW].fallbacks);
    }
}

static void
render_control(struct px_daemon *d, struct met_writer *w)
{
    struct px_srv *srv = &d->srv;
    struct met_label l[2] = { { "service", "" }, { "state", "" } };
    struct adm_counters cnt;
    unsigned i, k;

    met_family(w, "cutover_weight_percent", MET_GAUGE,
               "Share of traffic routed to the new side, in percent (0..100).");
    for (i = 0; i < srv->nsvcs && !met_part_over(w); i++) {
        l[0].value = svc_at(srv, i)->conf->name;
        met_sample_double(w, l, 1,
                          (double)adm_control_state(d->ctl, i)->weight_bp / 100.0);
    }
    met_family(w, "cutover_state", MET_GAUGE,
               "1 for the service's current state, 0 for the others.");
    for (i = 0; i < srv->nsvcs && !met_part_over(w); i++) {
        enum adm_state cur = adm_control_state(d->ctl, i)->state;

        l[0].value = svc_at(srv, i)->conf->name;
        for (k = 0; k < ADM_ST__COUNT; k++) {
            l[1].value = adm_state_names[k];
            met_sample_u64(w, l, 2, k == (unsigned)cur ? 1 : 0);
        }
    }
    met_family(w, "cutover_generation", MET_GAUGE,
               "Generation of the service's state: +1 on every change of weight or state.");
    for (i = 0; i < srv->nsvcs && !met_part_over(w); i++) {
        l[0].value = svc_at(srv, i)->conf->name;
        met_sample_u64(w, l, 1, adm_control_state(d->ctl, i)->generation);
    }
    {
        struct adm_store_status ss;
        const struct met_label f[1] = { { "file", "state" } }, a[1] = { { "file", "audit" } };

        adm_control_store_status(d->ctl, &ss);
        met_family(w, "cutover_state_dirty", MET_GAUGE,
                   "1 while a state in effect is not saved in the state file (a full or "
                   "read-only disk; retried until it is), 0 otherwise.");
        met_sample_u64(w, NULL, 0, ss.dirty ? 1 : 0);
        met_family(w, "cutover_store_errors_total", MET_COUNTER,
                   "Failed saves of the state file and failed writes of audit entries.");
        met_sample_u64(w, f, 1, ss.save_errors);
        met_sample_u64(w, a, 1, ss.audit_errors);
        met_family(w, "cutover_audit_pending", MET_GAUGE,
                   "Audit entries waiting to be written (the audit log failed).");
        met_sample_u64(w, NULL, 0, ss.audit_pending);
        if (ss.fleet) {
            met_family(w, "cutover_store_up", MET_GAUGE,
                       "1 while the fleet's PostgreSQL store is up and its state read, "
                       "0 otherwise (serving on the last known state).");
            met_sample_u64(w, NULL, 0, ss.up ? 1 : 0);
            met_family(w, "cutover_store_apply_seconds", MET_HISTOGRAM,
                       "Time from another instance's commit of a change to this instance "
                       "applying it (the database's clock against this host's).");
            met_histogram(w, NULL, 0, adm_fleet_apply_bounds, ADM_FLEET_APPLY_BUCKETS,
                          ss.apply_buckets, ss.apply_sum_s);
            met_family(w, "cutover_fleet_instances", MET_GAUGE,
                       "Live instances of the fleet (seen within 3 s) as its leader counted "
                       "them last; 0 while no leader counted within 3 s.");
            met_sample_u64(w, NULL, 0, ss.fleet_instances);
            met_family(w, "cutover_fleet_leader", MET_GAUGE,
                       "1 while this instance leads the fleet (holds its advisory lock and "
                       "applies the rollback policy to the fleet's windows), 0 otherwise.");
            met_sample_u64(w, NULL, 0, ss.leader ? 1 : 0);
            met_family(w, "cutover_fleet_leader_takeovers_total", MET_COUNTER,
                       "Times this instance ended the fleet session of a leader whose lease "
                       "had expired (a hung leader, or one whose host vanished) and led.");
            met_sample_u64(w, NULL, 0, ss.leader_takeovers);
        }
    }
    met_family(w, "cutover_plan_step", MET_GAUGE,
               "Step of the running progressive plan, from 1; 0 when no plan runs.");
    for (i = 0; i < srv->nsvcs && !met_part_over(w); i++) {
        l[0].value = svc_at(srv, i)->conf->name;
        met_sample_u64(w, l, 1, adm_control_plan_step(d->ctl, i));
    }
    met_family(w, "cutover_rollbacks_total", MET_COUNTER,
               "Rollbacks to legacy by reason: manual (cutoverctl rollback) or the "
               "automatic breach kind.");
    for (i = 0; i < srv->nsvcs && !met_part_over(w); i++) {
        adm_control_counters(d->ctl, i, &cnt);
        l[0].value = svc_at(srv, i)->conf->name;
        for (k = 0; k < ADM_RB__COUNT; k++) {
            l[1].name = "reason";
            l[1].value = adm_rollback_reason_names[k];
            met_sample_u64(w, l, 2, cnt.rollbacks[k]);
        }
    }
    met_family(w, "cutover_freezes_total", MET_COUNTER,
               "Automatic freezes (rollback.action freeze) on a breach.");
    for (i = 0; i < srv->nsvcs && !met_part_over(w); i++) {
        adm_control_counters(d->ctl, i, &cnt);
        l[0].value = svc_at(srv, i)->conf->name;
        met_sample_u64(w, l, 1, cnt.freezes);
    }
    met_family(w, "cutover_connections", MET_GAUGE,
               "Client connections (HTTP) or tunnels (TCP) open now.");
    for (i = 0; i < srv->nsvcs && !met_part_over(w); i++) {
        l[0].value = svc_at(srv, i)->conf->name;
        met_sample_u64(w, l, 1, svc_at(srv, i)->conns_active + svc_at(srv, i)->w_conns);
    }
}

/* What clients tried to steer and were not allowed to (docs/DESIGN.md,
 * "Routing rules"). */
static void
render_steering(struct px_srv *srv, struct met_writer *w)
{
    struct met_label l[1] = { { "service", "" } };
    unsigned i;

    met_family(w, "cutover_override_refused_total", MET_COUNTER,
               "Override headers ignored (routed as if absent): from a source outside "
               "override.allow_from, without the override secret.");
    for (i = 0; i < srv->nsvcs && !met_part_over(w); i++) {
        l[0].value = svc_at(srv, i)->conf->name;
        met_sample_u64(w, l, 1, svc_at(srv, i)->override_refused);
    }
    met_family(w, "cutover_cookie_invalid_total", MET_COUNTER,
               "Sticky cookies that failed verification (forged, tampered, unsigned or "
               "signed by an unknown key): counted as absent and issued anew.");
    for (i = 0; i < srv->nsvcs && !met_part_over(w); i++) {
        l[0].value = svc_at(srv, i)->conf->name;
        met_sample_u64(w, l, 1, svc_at(srv, i)->cookie_invalid);
    }
}

/* Failed accepts by reason, over every service and loop. */
static void
render_accept_errors(struct px_srv *srv, struct met_writer *w)
{
    struct met_label l[1] = { { "reason", "" } };
    unsigned i, k;

    met_family(w, "cutover_accept_errors_total", MET_COUNTER,
               "Client connections that could not be accepted, by reason (emfile: out of "
               "descriptors, the process's or the clients' share; enfile: the system's; "
               "enomem: memory or buffers; other); each pauses accepting for a moment.");
    for (k = 0; k < PX_AE__COUNT; k++) {
        uint64_t n = 0;

        for (i = 0; i < srv->nsvcs; i++)
            n += svc_at(srv, i)->accept_errors[k];
        l[0].value = px_accept_err_names[k];
        met_sample_u64(w, l, 1, n);
    }
}

static void
render_workers(struct px_srv *srv, struct met_writer *w)
{
    struct met_label l[1] = { { "worker", "" } };
    char id[16];
    unsigned k;

    met_family(w, "cutover_workers", MET_GAUGE,
               "Event loops serving traffic (config key workers; 0 there = one per CPU).");
    met_sample_u64(w, NULL, 0, srv->nworkers);
    met_family(w, "cutover_max_connections", MET_GAUGE,
               "limits.max_connections of the process: past it new clients wait in the "
               "backlog (0: no cap).");
    met_sample_u64(w, NULL, 0, __atomic_load_n(&srv->conns_cap, __ATOMIC_RELAXED));
    met_family(w, "cutover_client_connections", MET_GAUGE,
               "Client connections open in the whole process, as the cap counts them.");
    met_sample_u64(w, NULL, 0, __atomic_load_n(&srv->conns_all, __ATOMIC_RELAXED));
    met_family(w, "cutover_worker_accepted_total", MET_COUNTER,
               "Client connections each worker accepted (0 is the main loop): how evenly "
               "SO_REUSEPORT spreads them.");
    for (k = 0; k < srv->nworkers; k++) {
        snprintf(id, sizeof(id), "%u", k);
        l[0].value = id;
        met_sample_u64(w, l, 1, px_workers_accepted(srv, k));
    }
}

/* One per-server family: <field> 0 up, 1 requests, 2 failures. */
static void
render_servers(struct px_srv *srv, struct met_writer *w, const char *name,
               enum met_type type, const char *help, int field)
{
    struct met_label l[3] = { { "service", "" }, { "side", "" }, { "server", "" } };
    unsigned i, side, k;

    met_family(w, name, type, help);
    for (i = 0; i < srv->nsvcs && !met_part_over(w); i++) {
        const struct px_service *svc = svc_at(srv, i);

        l[0].value = svc->conf->name;
        for (side = 0; side < RT_SIDE__COUNT; side++) {
            l[1].value = rt_side_names[side];
            for (k = 0; k < svc->conf->side[side].nservers; k++) {
                const struct px_server_rt *s = svc->servers[side][k];

                l[2].value = s->addr.text;
                met_sample_u64(w, l, 3, field == 0 ? (s->up ? 1 : 0)
                                        : field == 1 ? s->requests : s->failures);
            }
        }
    }
}

/* The TLS families, over the services that terminate TLS. */
static void
render_tls(struct px_srv *srv, struct met_writer *w)
{
    struct met_label l[2] = { { "service", "" }, { "result", "" } };
    unsigned i, k;

    met_family(w, "cutover_tls_handshakes_total", MET_COUNTER,
               "TLS handshakes on the listeners by result: ok, or why it failed "
               "(timeout: not done within tls.handshake_timeout_ms; plain_http: plain "
               "HTTP on the TLS port, answered 400).");
    for (i = 0; i < srv->nsvcs && !met_part_over(w); i++) {
        const struct px_service *svc = svc_at(srv, i);

        if (svc->tls == NULL)
            continue;
        l[0].value = svc->conf->name;
        for (k = 0; k < PX_TLS_R__COUNT; k++) {
            l[1].value = px_tls_result_names[k];
            met_sample_u64(w, l, 2, svc->tls_hs[k]);
        }
    }
    met_family(w, "cutover_tls_resumed_total", MET_COUNTER,
               "TLS handshakes that resumed a session (ticket or cache): counted in "
               "cutover_tls_handshakes_total{result=\"ok\"} too.");
    for (i = 0; i < srv->nsvcs && !met_part_over(w); i++) {
        const struct px_service *svc = svc_at(srv, i);

        if (svc->tls == NULL)
            continue;
        l[0].value = svc->conf->name;
        met_sample_u64(w, l, 1, svc->tls_resumed);
    }
    met_family(w, "cutover_tls_cert_expiry_timestamp_seconds", MET_GAUGE,
               "When each loaded certificate expires, in seconds since the Unix epoch "
               "(cert: the file as written in the config).");
    for (i = 0; i < srv->nsvcs && !met_part_over(w); i++) {
        const struct px_service *svc = svc_at(srv, i);

        if (svc->tls == NULL)
            continue;
        l[0].value = svc->conf->name;
        l[1].name = "cert";
        for (k = 0; k < px_tls_ncerts(svc->tls); k++) {
            l[1].value = px_tls_cert(svc->tls, k)->file;
            met_sample_double(w, l, 2, (double)px_tls_cert(svc->tls, k)->not_after);
        }
        l[1].name = "result";
    }
}

/* Every family, in the order of the text. */
static void
render_all(struct px_daemon *d, struct met_writer *w)
{
    struct px_srv *srv = &d->srv;

    /* a part stops its walk once its stretch is written (met_part_over) */
    render_process(d, w);
    render_admin(d, w);
    px_webhooks_metrics(d->webhooks, w);
    render_workers(srv, w);
    render_accept_errors(srv, w);
    render_requests(srv, w);
    if (met_part_over(w))
        return;
    render_control(d, w);
    if (met_part_over(w))
        return;
    render_servers(srv, w, "cutover_server_up", MET_GAUGE,
                   "1 when the server's health verdict is up, 0 when down.", 0);
    render_servers(srv, w, "cutover_server_requests_total", MET_COUNTER,
                   "Requests or connections sent to the server, retries included.", 1);
    render_servers(srv, w, "cutover_server_failures_total", MET_COUNTER,
                   "Connect failures and upstream errors of the server.", 2);
    if (met_part_over(w))
        return;
    render_steering(srv, w);
    px_gates_metrics(d->gates, w);
    render_tls(srv, w);
    px_shield_metrics(srv, w);
    px_shadow_metrics(srv, w);
}

static void
check_writer(const struct met_writer *w)
{
    if (met_failed(w))
        log_at(LL_ERR, "metrics", 0, "the metrics writer refused a family or sample: "
               "the scrape is incomplete");
}

void
px_metrics_render(struct px_daemon *d, struct evbuffer *out)
{
    struct met_writer w;               /* ~16 KiB: the names of every family */

    px_workers_fold(&d->srv);          /* the workers' counters, as of now */
    met_init(&w, out);
    render_all(d, &w);
    check_writer(&w);
}

void
px_metrics_render_cb(void *d, struct evbuffer *out)
{
    px_metrics_render(d, out);
}

bool
px_metrics_render_part(void *arg, struct evbuffer *out, struct adm_metrics_cursor *cur,
                       unsigned budget_us)
{
    struct px_daemon *d = arg;
    struct met_writer w;
    uint64_t next;

    if (cur->started && cur->generation != d->srv.conf_generation)
        cur->started = false;          /* a reload: other services, other series */
    if (!cur->started && cur->restarts++ > PX_METRICS_RESTARTS) {
        /* the series keep changing under the parts: the rest at once */
        evbuffer_drain(out, evbuffer_get_length(out));
        px_metrics_render(d, out);
        return true;
    }
    if (!cur->started) {
        evbuffer_drain(out, evbuffer_get_length(out));
        px_workers_fold(&d->srv);      /* once per scrape, as at once */
        cur->started = true;
        cur->next = 0;
        cur->generation = d->srv.conf_generation;
    }
    met_init_part(&w, out, cur->next, budget_us);
    render_all(d, &w);
    if (!met_part_done(&w, &next)) {
        cur->next = next;
        return false;
    }
    check_writer(&w);
    return true;
}
