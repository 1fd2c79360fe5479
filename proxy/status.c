/*
 * status: see status.h. One JSON object per side, built fresh per request
 * (a status is asked for by an operator, not on the data path).
 */
#include <jansson.h>

#include "health/check.h"
#include "health/window.h"
#include "proxy/server.h"
#include "proxy/shadow.h"
#include "proxy/shield.h"
#include "proxy/status.h"
#include "proxy/tls.h"
#include "proxy/tls_conf.h"
#include "proxy/worker.h"

/* Adds the active-check figures of server <s> to its status object <o>:
 * "last_check" ("" before the first) and "checks": {"ok", "fail", "skipped"}
 * (skipped: the proxy could not run the check, no verdict). */
static void
health_server_status(const struct px_server_rt *s, json_t *o)
{
    struct hl_check_stats cs;

    if (s->check == NULL)
        return;
    hl_check_get_stats(s->check, &cs);
    json_object_set_new(o, "last_check", json_string(cs.last));
    json_object_set_new(o, "checks", json_pack("{s:I, s:I, s:I}", "ok", (json_int_t)cs.passed,
                                               "fail", (json_int_t)cs.failed,
                                               "skipped", (json_int_t)cs.skipped));
}

static json_t *
side_status(struct px_service *svc, enum rt_side side, uint64_t now_ms)
{
    const struct px_side_conf *sc = &svc->conf->side[side];
    const struct px_side_stats *st = &svc->stats[side];
    json_t *o = json_object(), *servers = json_array(), *win = json_object(),
           *cnt = json_object(), *errs = json_object();
    struct hl_stats hs;
    unsigned i;

    for (i = 0; i < sc->nservers; i++) {
        const struct px_server_rt *s = svc->servers[side][i];
        json_t *so = json_pack("{s:s, s:b, s:I, s:I, s:I, s:I}",
                               "addr", sc->servers[i].text,
                               "up", s->up,
                               "requests", (json_int_t)s->requests,
                               "failures", (json_int_t)s->failures,
                               "reused", (json_int_t)s->reused,
                               "idle", (json_int_t)(s->nidle + s->w_idle));

        json_object_set_new(so, "admin", json_string(px_srv_admin_names[s->admin]));
        health_server_status(s, so);
        json_array_append_new(servers, so);
    }
    hl_window_stats(&svc->window[side], now_ms, &hs);
    json_object_set_new(win, "requests", json_integer((json_int_t)hs.requests));
    json_object_set_new(win, "errors", json_integer((json_int_t)hs.errors));
    json_object_set_new(win, "error_rate", json_real(hs.error_rate));
    json_object_set_new(win, "p50_ms", json_real(hs.p50_ms));
    json_object_set_new(win, "p99_ms", json_real(hs.p99_ms));
    json_object_set_new(cnt, "requests", json_integer((json_int_t)st->requests));
    json_object_set_new(cnt, "fallbacks", json_integer((json_int_t)st->fallbacks));
    json_object_set_new(cnt, "2xx", json_integer((json_int_t)st->by_class[0]));
    json_object_set_new(cnt, "3xx", json_integer((json_int_t)st->by_class[1]));
    json_object_set_new(cnt, "4xx", json_integer((json_int_t)st->by_class[2]));
    json_object_set_new(cnt, "5xx", json_integer((json_int_t)st->by_class[3]));
    json_object_set_new(cnt, "error", json_integer((json_int_t)st->by_class[4]));
    for (i = 1; i < PX_E__COUNT; i++)
        json_object_set_new(errs, px_err_names[i], json_integer((json_int_t)st->errors[i]));
    json_object_set_new(cnt, "errors", errs);
    json_object_set_new(o, "healthy", json_boolean(rt_side_usable(svc->snap, side)));
    json_object_set_new(o, "servers", servers);
    json_object_set_new(o, "window", win);
    json_object_set_new(o, "counters", cnt);
    return o;
}

void
px_status_service(struct px_srv *srv, unsigned idx, json_t *obj)
{
    struct px_service *svc = srv->svcs[idx];
    uint64_t now = px_now_ms(srv);

    json_object_set_new(obj, "mode", json_string(svc->conf->mode == PX_MODE_TCP ? "tcp" : "http"));
    json_object_set_new(obj, "max_connections",
                        json_integer((json_int_t)svc->conf->limits.max_connections));
    json_object_set_new(obj, "connections",
                        json_integer((json_int_t)(svc->conns_active + svc->w_conns)));
    {
        json_t *ae = json_object();
        unsigned k;

        for (k = 0; k < PX_AE__COUNT; k++)
            json_object_set_new(ae, px_accept_err_names[k],
                                json_integer((json_int_t)svc->accept_errors[k]));
        json_object_set_new(obj, "accept_errors", ae);
    }
    /* the share new gets now, after fallback, beside the weight set */
    {
        int32_t eff = rt_effective_bp(svc->snap);
        const char *why = eff < 0 ? "no side has a healthy server: every request gets 503"
                          : eff == (int32_t)svc->snap->weight_bp ? ""
                          : eff == 0 ? "new has no healthy server: its share falls back to legacy"
                          : "legacy has no healthy server: its share falls back to new";

        json_object_set_new(obj, "effective_weight",
                            eff < 0 ? json_null() : json_real(eff / 100.0));
        json_object_set_new(obj, "effective_why", json_string(why));
    }
    json_object_set_new(obj, "legacy", side_status(svc, RT_LEGACY, now));
    json_object_set_new(obj, "new", side_status(svc, RT_NEW, now));
    json_object_set_new(obj, "steering",
                        json_pack("{s:I, s:I}",
                                  "override_refused", (json_int_t)svc->override_refused,
                                  "cookie_invalid", (json_int_t)svc->cookie_invalid));
    px_shield_status(svc, obj);
    px_shadow_status(svc, now, obj);
    if (svc->tls != NULL && svc->conf->tls != NULL) {
        json_t *tls, *hs = json_object();
        unsigned k;

        px_tls_status(svc->tls, svc->conf->tls, obj);
        tls = json_object_get(obj, "tls");
        for (k = 0; k < PX_TLS_R__COUNT; k++)
            json_object_set_new(hs, px_tls_result_names[k],
                                json_integer((json_int_t)svc->tls_hs[k]));
        json_object_set_new(tls, "handshakes", hs);
        json_object_set_new(tls, "resumed", json_integer((json_int_t)svc->tls_resumed));
        json_object_set_new(tls, "kernel_tls_connections",
                            json_integer((json_int_t)svc->tls_ktls));
    }
}
