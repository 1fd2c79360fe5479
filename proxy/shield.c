/*
 * shield: the canary shield (replays on legacy of what new failed) and the
 * drains of HTTP upgrade tunnels; see proxy/shield.h.
 */
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <jansson.h>

#include "lib/http1.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/xmalloc.h"
#include "proxy/http_conn.h"
#include "proxy/shadow_cap.h"
#include "proxy/shield.h"

/* ---- which requests ------------------------------------------------------ */

bool
px_shield_eligible(const struct px_service_conf *sc, const struct h1_req *r)
{
    const struct px_shield_conf *sh = &sc->shield;
    unsigned k;

    if (!sh->enabled || r->host.len == 0)
        return false;
    for (k = 0; k < sh->nmethods; k++)
        if (h1_method_eq(r->method, sh->methods[k]))
            break;
    if (k == sh->nmethods)
        return false;
    /* an unsafe method only with the key that makes its replay harmless */
    return !sh->unsafe || h1_method_eq(r->method, "GET") || h1_method_eq(r->method, "HEAD") ||
           h1_method_eq(r->method, "OPTIONS") || h1_method_eq(r->method, "TRACE") ||
           h1_field_find(r->fields, r->nfields, "idempotency-key") != NULL;
}

/* ---- the budget ---------------------------------------------------------- */

/* Moves the ring to second <sec>: the seconds that left the window are
 * taken off the sums. A ring of another length (a reload changed
 * rollback.window_s) starts empty. */
void
px_shield_ring_advance(struct px_shield_rt *s, unsigned window_s, uint64_t sec)
{
    unsigned w = window_s < 1 ? 1 : window_s > PX_SHIELD_WINDOW_MAX ? PX_SHIELD_WINDOW_MAX
                                                                     : window_s;
    uint64_t t;

    if (sec <= s->sec && s->w == w)
        return;                        /* a second already passed: count it in the newest */
    if (s->w != w || s->ring_legacy == NULL) {
        s->ring_legacy = xrealloc(s->ring_legacy, 2 * (size_t)w * sizeof(s->ring_legacy[0]));
        s->ring_replays = s->ring_legacy + w;
        s->sec = 0;                    /* start empty, below */
    }
    if (s->w != w || s->sec == 0 || sec - s->sec >= w) {
        memset(s->ring_legacy, 0, 2 * (size_t)w * sizeof(s->ring_legacy[0]));
        s->legacy = s->replays = 0;
        s->w = w;
    } else {
        for (t = s->sec + 1; t <= sec; t++) {
            unsigned i = (unsigned)(t % w);

            s->legacy -= s->ring_legacy[i];
            s->replays -= s->ring_replays[i];
            s->ring_legacy[i] = s->ring_replays[i] = 0;
        }
    }
    s->sec = sec;
    s->cur = (unsigned)(sec % w);
}

/* Whether one more replay fits the budget of <svc> now. */
static bool
budget_allows(struct px_service *svc, const struct px_shield_conf *sh, uint64_t now_us)
{
    struct px_shield_rt *s = &svc->shield;
    double allowed;

    px_shield_ring_advance(s, svc->conf->rollback.window_s, now_us / 1000000u);
    allowed = (double)sh->budget_min_per_s * s->w + sh->budget_ratio * (double)s->legacy;
    return (double)(s->replays + 1) <= allowed;
}

/* ---- the replay ---------------------------------------------------------- */

static bool
reason_of(enum px_err err, int status, enum px_shield_reason *why)
{
    if (status != 0) {
        *why = PX_SH_5XX;
        return true;
    }
    switch (err) {
    case PX_E_CONNECT:
    case PX_E_CONNECT_TIMEOUT:
    case PX_E_TLS_VERIFY:
    case PX_E_TLS_HANDSHAKE:
        *why = PX_SH_CONNECT;
        return true;
    case PX_E_UP_RESET:
    case PX_E_UP_BAD:
        *why = PX_SH_RESET;
        return true;
    case PX_E_UP_TIMEOUT:
        *why = PX_SH_TIMEOUT;
        return true;
    default:
        return false;                  /* the proxy's own shortage, no server */
    }
}

/* The next usable legacy server, round-robin as the router does. */
static struct px_server_rt *
legacy_server(struct px_service *svc)
{
    unsigned n = svc->snap->nservers[RT_LEGACY], i, k;

    for (i = 0; i < n; i++) {
        k = (svc->cursor.next[RT_LEGACY] + i) % n;
        if (svc->snap->usable[RT_LEGACY] & (1ULL << k)) {
            svc->cursor.next[RT_LEGACY] = (k + 1) % n;
            return svc->servers[RT_LEGACY][k];
        }
    }
    return NULL;
}

bool
px_shield_replay(struct px_conn *c, enum px_err err, int status)
{
    struct px_service *svc = c->svc;
    const struct px_shield_conf *sh = &sconf(c)->shield;
    struct px_shield_rt *s = &svc->shield;
    size_t body = c->ex->req_buf != NULL ? evbuffer_get_length(c->ex->req_buf) : 0;
    enum px_shield_reason why;
    struct px_server_rt *to;
    char from[64];

    /* what can be sent again at all, and was not answered yet */
    if (!c->ex->shield_ok || c->ex->side != RT_NEW || c->ex->log_why == RT_R_OVERRIDE ||
        !c->ex->req.done ||
        (c->flags & (PX_CF_SHIELDED | PX_CF_RES_STARTED | PX_CF_INTERIM |
                     PX_CF_REQ_STREAMED | PX_CF_CLOSE | PX_CF_CLIENT_EOF)) ||
        body > sh->max_body_bytes || !reason_of(err, status, &why) ||
        !(sh->on & (1u << why)) || (status != 0 && !px_shield_status_listed(sh, status)))
        return false;
    if ((to = legacy_server(svc)) == NULL)
        return false;                  /* legacy has no usable server */
    if (!budget_allows(svc, sh, px_now_us(c->srv))) {
        s->exhausted++;
        return false;
    }

    /* new's outcome, as without the shield; its connection (and a failed
     * response's body) goes */
    px_hc_record(c, status, err);
    upstream_free(c);
    /* a shadow copy of the request (to legacy) has no answer of new's to be
     * compared with: the client gets legacy's. It ends as not compared
     * (skipped), never as a match counted for new (proxy/shadow.h). */
    if (c->ex->shadow != NULL) {
        px_shadow_cap_end(c->ex->shadow, false);
        px_shadow_cap_put(c->ex->shadow);
        c->ex->shadow = NULL;
    }
    s->ring_replays[s->cur]++;
    s->replays++;
    s->shielded[why]++;
    snprintf(from, sizeof(from), "%s", srt_addr(c)->text);
    log_at(LL_DEBUG, "shield", c->id, "%s from new server %s: replaying on legacy server %s",
           status != 0 ? "5xx" : px_err_names[err], from, to->addr.text);

    /* the replay is a request of legacy's like any other */
    c->flags |= PX_CF_SHIELDED | PX_CF_SHIELD_SOON;
    c->flags &= ~(PX_CF_RETRIED | PX_CF_STALE_RETRY | PX_CF_UP_REUSED | PX_CF_RES_BYTES);
    c->ex->side = RT_LEGACY;
    bind_server(c, to);
    to->requests++;
    svc->stats[RT_LEGACY].requests++;
    c->ex->res_recorded = false;
    c->ex->res_head_done = false;
    c->ex->log_status = 0;
    c->ex->log_error = NULL;
    c->ex->t_req_us = px_now_us(c->srv);   /* legacy's latency is its own */
    /* the connect starts from the loop, never under the failing callback */
    evtimer_del(&c->head_timer);
    event_active(&c->head_timer, EV_TIMEOUT, 1);
    return true;
}

/* ---- drains -------------------------------------------------------------- */

unsigned
px_shield_drain_tunnels(struct px_service *svc, enum rt_side side, int drain_s)
{
    struct timeval tv = { drain_s > 0 ? drain_s : 0, 0 };
    struct list *pos;
    unsigned n = 0;

    for (pos = svc->conns.next; pos != &svc->conns; pos = pos->next) {
        struct px_conn *c = list_entry(pos, struct px_conn, link);

        if (c->state != PX_CS_TUNNEL || c->ex->side != side || (c->flags & PX_CF_DRAIN))
            continue;
        c->flags |= PX_CF_DRAIN;
        if (evtimer_add(&c->head_timer, &tv) < 0) {
            log_at(LL_ERR, "http", c->id, "cannot schedule the drain of this tunnel");
            continue;
        }
        n++;
    }
    return n;
}

void
px_shield_tunnel_drained(struct px_conn *c)
{
    log_at(LL_INFO, "http", c->id, "drain time over: closing the upgraded connection to %s "
           "server %s", rt_side_names[c->ex->side], srt_addr(c)->text);
    c->svc->shield.drained[0]++;
    mark_close(c);
}

/* ---- counters ------------------------------------------------------------ */

void
px_shield_fold(struct px_shield_rt *m, struct px_shield_rt *w)
{
    unsigned k;

    for (k = 0; k < PX_SH__COUNT; k++) {
        m->shielded[k] += w->shielded[k];
        w->shielded[k] = 0;
    }
    m->exhausted += w->exhausted;
    m->drained[0] += w->drained[0];
    m->drained[1] += w->drained[1];
    w->exhausted = w->drained[0] = w->drained[1] = 0;
}

static uint64_t
total(const struct px_shield_rt *s)
{
    uint64_t n = 0;
    unsigned k;

    for (k = 0; k < PX_SH__COUNT; k++)
        n += s->shielded[k];
    return n;
}

void
px_shield_fresh(struct px_service *svc)
{
    svc->shield.mark = total(&svc->shield);
}

uint64_t
px_shield_since_fresh(const struct px_service *svc)
{
    uint64_t t = total(&svc->shield);

    return t >= svc->shield.mark ? t - svc->shield.mark : 0;
}

void
px_shield_status(const struct px_service *svc, json_t *obj)
{
    const struct px_shield_rt *s = &svc->shield;
    uint64_t n = total(s), to_new = svc->stats[RT_NEW].requests;
    json_t *by = json_object();
    unsigned k;

    for (k = 0; k < PX_SH__COUNT; k++)
        json_object_set_new(by, px_shield_reason_names[k], json_integer((json_int_t)s->shielded[k]));
    json_object_set_new(obj, "shield",
                        json_pack("{s:b, s:I, s:f, s:o, s:I, s:{s:I, s:I}}",
                                  "enabled", svc->conf->shield.enabled,
                                  "shielded", (json_int_t)n,
                                  "percent", to_new > 0 ? 100.0 * (double)n / (double)to_new
                                                        : 0.0,
                                  "by_reason", by,
                                  "budget_exhausted", (json_int_t)s->exhausted,
                                  "drained", "tunnel", (json_int_t)s->drained[0],
                                  "tcp", (json_int_t)s->drained[1]));
}

void
px_shield_metrics(struct px_srv *srv, struct met_writer *w)
{
    static const char *const kinds[2] = { "tunnel", "tcp" };
    struct met_label l[2] = { { "service", NULL }, { "reason", NULL } };
    unsigned i, k;

    met_family(w, "cutover_shielded_total", MET_COUNTER,
               "Requests new failed before any response byte that were replayed on "
               "legacy (the client got legacy's answer), by the failure.");
    for (i = 0; i < srv->nsvcs; i++) {
        l[0].value = srv->svcs[i]->conf->name;
        for (k = 0; k < PX_SH__COUNT; k++) {
            l[1].value = px_shield_reason_names[k];
            met_sample_u64(w, l, 2, srv->svcs[i]->shield.shielded[k]);
        }
    }
    met_family(w, "cutover_shield_budget_exhausted_total", MET_COUNTER,
               "Failures on new the shield would have replayed but for its retry budget.");
    for (i = 0; i < srv->nsvcs; i++) {
        l[0].value = srv->svcs[i]->conf->name;
        met_sample_u64(w, l, 1, srv->svcs[i]->shield.exhausted);
    }
    met_family(w, "cutover_drained_connections_total", MET_COUNTER,
               "Connections closed by the drain of a switch or a rollback, by kind: HTTP "
               "upgrade tunnels and TCP tunnels.");
    l[1].name = "kind";
    for (i = 0; i < srv->nsvcs; i++) {
        l[0].value = srv->svcs[i]->conf->name;
        for (k = 0; k < 2; k++) {
            l[1].value = kinds[k];
            met_sample_u64(w, l, 2, srv->svcs[i]->shield.drained[k]);
        }
    }
}
