/*
 * shadow: the copies of shadow traffic, their exchanges and the comparison
 * of their answers (see shadow.h; the contract is docs/DESIGN.md, "Shadow
 * traffic with response diffing", the operator's guide docs/shadow.md).
 *
 * A copy (struct px_shadow) lives beside the client's exchange and never
 * touches it: it has its own upstream connections ("legs": the candidate,
 * a server of the other side, and with noise.second_server a second server
 * of the serving side), taken from and given back to the servers' pools
 * like any exchange's, and its own deadline (shadow.timeout_ms, from the
 * copy's start to the last byte of its answers). Its answers are read as
 * they come and reduced at once (health/diff.h: a hash, or JSON leaves), up
 * to max_response_bytes: a longer or never-ending one is cut there and
 * counted as an error. The client's response is captured by
 * proxy/shadow_cap.c as it passes. The copy is compared and freed when its
 * legs are done and the client's response ended, or at once when the
 * candidate failed (error) or the client's exchange did (skipped).
 *
 * Nothing here can delay the client: a copy is prepared beside the client's
 * request but sent only once the serving side's answer began, from an event
 * made active in the callback that passes that answer's head on (on_kick),
 * so after the head was written to the client: neither the copy's connect
 * and write nor the other side's work on it come before the client's
 * answer. Its reads and writes are its own bufferevents', its work per
 * answer byte is a hash update, and its comparison runs the same way, from
 * the loop, after the callback that ended the client's response wrote it to
 * the client.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <jansson.h>

#include "lib/http1.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/syserr.h"
#include "lib/xmalloc.h"
#include "proxy/http_conn.h"
#include "proxy/http_msg.h"
#include "proxy/io.h"
#include "proxy/pool.h"
#include "proxy/server.h"
#include "proxy/shadow.h"
#include "proxy/shadow_cap.h"
#include "proxy/shadow_conf.h"
#include "proxy/tls_up.h"

const char *const px_shadow_result_names[PX_SR__COUNT] = {
    "match", "diff", "error", "dropped", "too_large", "skipped",
};

#define PREFIX_MAX  16               /* route prefixes with a window of their own */
#define PREFIX_LEN  32

struct prefix {
    char name[PREFIX_LEN];           /* "/api"; "*" for the others past PREFIX_MAX */
    struct hl_diffwin w;
    uint64_t compared, diffs;
};

/* A service's shadow state on one event loop (svc->shadow). */
struct px_shadow_svc {
    struct px_service *svc;          /* borrowed: owner */
    struct list live;                /* copies in flight */
    unsigned inflight;
    unsigned rr[RT_SIDE__COUNT];     /* round-robin position of the copies per side */
    uint64_t total[PX_SR__COUNT];
    uint64_t compared, diffs;        /* since start (the plan's diff gate) */
    uint64_t noise_ignored;          /* differing fields left out as noise */
    uint64_t no_server;              /* skipped: the other side had no healthy server */
    bool is_stopped;                 /* the last copy found no healthy server (logged) */
    unsigned window_s;
    struct hl_diffwin win[RT_SIDE__COUNT];   /* by the side that served */
    struct prefix prefix[PREFIX_MAX];
    unsigned nprefix;
    struct hl_noise noise;
    json_t *kept;                    /* array: the last keep_diffs differences */
};

enum { LEG_CAND = 0, LEG_SECOND = 1, LEG__COUNT };

struct px_shadow;

struct leg {
    struct px_shadow *sh;
    bool used, done, failed, head_done, keep_alive, reused;
    const char *err;                 /* static: why it failed */
    enum rt_side side;
    struct px_server_rt *srt;        /* one reference */
    const struct px_tls_up *tls;     /* the side's, in the copy's conf */
    struct bufferevent *bev;         /* owned */
    struct px_body body;             /* the answer's framing */
    struct evbuffer *scratch;        /* owned: decoded body bytes */
    uint64_t body_read;              /* decoded body bytes read, at most
                                      * max_response_bytes (then the leg is cut) */
    struct hl_diff_resp resp;
};

struct px_shadow {
    struct list link;                /* on ss->live */
    struct px_shadow_svc *ss;
    struct px_srv *srv;
    struct px_confref *cref;         /* one reference: the conf below */
    const struct px_service_conf *conf;
    const struct px_shadow_conf *sc;
    uint64_t id;                     /* the client connection's */
    enum rt_side served;
    char served_addr[64];
    char method[16];
    char target[160];
    int prefix;                      /* index into ss->prefix */
    bool is_head;
    uint64_t t0_ms;
    struct evbuffer *req;            /* owned: the copy, head and body */
    struct px_shadow_cap *cap;       /* one reference; NULL once released */
    struct leg leg[LEG__COUNT];
    unsigned pending;                /* legs not done */
    struct event *timer;             /* owned: the copy's deadline */
    struct event *kick;              /* owned: the deferred start and end (on_kick) */
    bool started;                    /* the legs were started (on_kick) */
    bool finishing;                  /* finish() is due at the next on_kick */
};

static void leg_read(struct bufferevent *bev, void *arg);
static void leg_event(struct bufferevent *bev, short what, void *arg);
static void maybe_finish(struct px_shadow *sh);

/* ---- the service's state ---------------------------------------------- */

static void ss_free(struct px_shadow_svc *ss);

static void
ss_free_cb(struct px_shadow_svc *ss)
{
    ss_free(ss);
}

static struct px_shadow_svc *
ss_get(struct px_service *svc)
{
    struct px_shadow_svc *ss = svc->shadow;
    unsigned w = svc->conf->rollback.window_s, i;

    if (ss == NULL) {
        ss = xcalloc(1, sizeof(*ss));
        ss->svc = svc;
        list_init(&ss->live);
        ss->kept = json_array();
        svc->shadow = ss;
        svc->shadow_free = ss_free_cb;
    }
    if (ss->window_s != w) {         /* first use, or a reload changed window_s */
        ss->window_s = w;
        for (i = 0; i < RT_SIDE__COUNT; i++)
            hl_diffwin_init(&ss->win[i], w);
        for (i = 0; i < ss->nprefix; i++)
            hl_diffwin_init(&ss->prefix[i].w, w);
    }
    return ss;
}

/* The window entry of the first path segment of <target>. */
static int
prefix_of(struct px_shadow_svc *ss, const char *target)
{
    char name[PREFIX_LEN];
    size_t n = 1;
    unsigned i;

    if (target[0] != '/') {
        snprintf(name, sizeof(name), "*");
    } else {
        while (target[n] != '\0' && target[n] != '/' && target[n] != '?' &&
               n + 1 < sizeof(name))
            n++;
        memcpy(name, target, n);
        name[n] = '\0';
    }
    for (i = 0; i < ss->nprefix; i++)
        if (strcmp(ss->prefix[i].name, name) == 0)
            return (int)i;
    if (ss->nprefix == PREFIX_MAX - 1)
        snprintf(name, sizeof(name), "*");
    for (i = 0; i < ss->nprefix; i++)
        if (strcmp(ss->prefix[i].name, name) == 0)
            return (int)i;
    i = ss->nprefix++;
    snprintf(ss->prefix[i].name, sizeof(ss->prefix[i].name), "%s", name);
    hl_diffwin_init(&ss->prefix[i].w, ss->window_s);
    return (int)i;
}

/* A usable server of <side> other than <not>, round-robin. */
static struct px_server_rt *
pick(struct px_shadow_svc *ss, enum rt_side side, const struct px_server_rt *not)
{
    struct px_service *svc = ss->svc;
    unsigned n = svc->snap->nservers[side], i, k;

    for (i = 0; i < n; i++) {
        k = (ss->rr[side] + i) % n;
        if (!(svc->snap->usable[side] & (1ULL << k)) || svc->servers[side][k] == not)
            continue;
        ss->rr[side] = k + 1;
        return svc->servers[side][k];
    }
    return NULL;
}

/* ---- a copy's end ----------------------------------------------------- */

static void
leg_close(struct leg *l)
{
    if (l->bev != NULL) {
        px_io_free(l->bev);            /* its TLS side too, when the side has TLS */
        l->bev = NULL;
    }
}

static void
shadow_free(struct px_shadow *sh)
{
    unsigned i;

    list_unlink(&sh->link);
    sh->ss->inflight--;
    for (i = 0; i < LEG__COUNT; i++) {
        struct leg *l = &sh->leg[i];

        leg_close(l);
        if (l->scratch != NULL)
            evbuffer_free(l->scratch);
        if (l->used)
            hl_diff_resp_free(&l->resp);
        px_server_rt_put(l->srt);
    }
    if (sh->cap != NULL) {
        sh->cap->ended = NULL;       /* the connection may still hold it */
        px_shadow_cap_put(sh->cap);
    }
    if (sh->timer != NULL)
        event_free(sh->timer);
    if (sh->kick != NULL)
        event_free(sh->kick);
    if (sh->req != NULL)
        evbuffer_free(sh->req);
    px_confref_put(sh->cref);
    free(sh);
}

static void
count(struct px_shadow_svc *ss, enum px_shadow_result r)
{
    ss->total[r]++;
}

/* Keeps difference <out> of <sh> (both answers' relevant parts). */
static void
keep(struct px_shadow *sh, const struct hl_diff_out *out)
{
    struct px_shadow_svc *ss = sh->ss;
    const struct leg *cand = &sh->leg[LEG_CAND];
    json_t *fields = json_array(), *d;
    unsigned i;

    if (sh->sc->keep_diffs == 0)
        return;
    for (i = 0; i < out->n; i++)
        json_array_append_new(fields, json_pack("{s:s, s:s, s:s}", "field", out->f[i].name,
                                                "served", out->f[i].a,
                                                "shadow", out->f[i].b));
    d = json_pack("{s:I, s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:i, s:I, s:o}",
                  "at_ms", (json_int_t)sh->t0_ms, "conn", (json_int_t)sh->id,
                  "method", sh->method, "target", sh->target,
                  "served_side", rt_side_names[sh->served], "served_server", sh->served_addr,
                  "shadow_side", rt_side_names[cand->side],
                  "shadow_server", cand->srt != NULL ? cand->srt->addr.text : "",
                  "served_status", sh->cap->resp.status, "shadow_status", cand->resp.status,
                  "differing", (json_int_t)out->total, "fields", fields);
    if (d == NULL)
        return;
    {
        time_t now = time(NULL);
        struct tm tm;
        char ts[32];

        gmtime_r(&now, &tm);
        strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
        json_object_set_new(d, "ts", json_string(ts));
    }
    json_array_append_new(ss->kept, d);
    while (json_array_size(ss->kept) > sh->sc->keep_diffs)
        json_array_remove(ss->kept, 0);
}

/* Every answer is in: compare and record, then free <sh>. */
static void
finish(struct px_shadow *sh)
{
    struct px_shadow_svc *ss = sh->ss;
    struct leg *cand = &sh->leg[LEG_CAND], *second = &sh->leg[LEG_SECOND];
    struct px_shadow_cap *cap = sh->cap;
    const struct hl_diff_conf *dc = &sh->sc->compare;
    uint64_t now = px_now_ms(sh->srv);
    struct hl_diff_out out;
    bool differ;

    if (cand->failed) {
        count(ss, PX_SR_ERROR);
        log_at(LL_DEBUG, "shadow", sh->id, "copy to %s failed: %s",
               cand->srt->addr.text, cand->err != NULL ? cand->err : "?");
    } else if (cap == NULL || cap->state != PX_CAP_DONE) {
        count(ss, PX_SR_SKIPPED);
    } else if (cap->resp.too_large) {
        count(ss, PX_SR_TOO_LARGE);
    } else {
        if (second->used && !second->failed &&
            hl_diff_learn(dc, &cap->resp, &second->resp, &ss->noise) > 0)
            log_at(LL_INFO, "shadow", sh->id, "service %s: %u field(s) learned as noise "
                   "(two %s servers disagree), the last: %s", sh->conf->name,
                   ss->noise.n, rt_side_names[sh->served],
                   ss->noise.n > 0 ? ss->noise.name[ss->noise.n - 1] : "");
        differ = hl_diff_compare(dc, &cap->resp, &cand->resp, &ss->noise, &out) > 0;
        ss->noise_ignored += out.noise;
        count(ss, differ ? PX_SR_DIFF : PX_SR_MATCH);
        ss->compared++;
        ss->diffs += differ;
        hl_diffwin_push(&ss->win[sh->served], now, differ);
        hl_diffwin_push(&ss->prefix[sh->prefix].w, now, differ);
        ss->prefix[sh->prefix].compared++;
        ss->prefix[sh->prefix].diffs += differ;
        if (differ) {
            log_at(LL_DEBUG, "shadow", sh->id, "%s %s: %s differs (%s: %s / %s)", sh->method,
                   sh->target, rt_side_names[cand->side], out.f[0].name, out.f[0].a,
                   out.f[0].b);
            keep(sh, &out);
        }
    }
    shadow_free(sh);
}

/* Finishes <sh> when nothing more can change its result: at the next
 * on_kick(), never from inside the caller. The caller may be the client's
 * connection ending its response (px_shadow_primary_end), whose bytes are
 * written to the client's socket only when its callback returns: the
 * comparison, the windows and a kept difference must not run before that
 * write (nor free <sh> under a leg's callback). */
static void
maybe_finish(struct px_shadow *sh)
{
    bool primary_done = sh->cap == NULL || sh->cap->state != PX_CAP_WAIT;

    /* a failed candidate or client exchange decides at once */
    if (sh->leg[LEG_CAND].failed ||
        (sh->cap != NULL && sh->cap->state == PX_CAP_FAILED) ||
        (sh->pending == 0 && primary_done)) {
        if (sh->kick == NULL) {
            finish(sh);
            return;
        }
        sh->finishing = true;
        event_active(sh->kick, EV_TIMEOUT, 1);
    }
}

static void
on_primary_ended(void *arg)
{
    maybe_finish(arg);
}

static void
leg_end(struct leg *l, const char *err)
{
    struct px_shadow *sh = l->sh;

    if (l->done)
        return;
    l->done = true;
    l->failed = err != NULL;
    l->err = err;
    sh->pending--;
    if (err == NULL && l->keep_alive && l->bev != NULL &&
        evbuffer_get_length(bufferevent_get_input(l->bev)) == 0 &&
        sh->conf->pool.max_idle > 0) {
        px_pool_put(sh->ss->svc, l->srt, l->bev, l->tls);   /* owns it now */
        l->bev = NULL;
    }
    leg_close(l);
    hl_diff_resp_end(&l->resp, &sh->sc->compare);
    maybe_finish(sh);
}

static void
on_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct px_shadow *sh = arg;
    struct leg *cand = &sh->leg[LEG_CAND], *second = &sh->leg[LEG_SECOND];
    bool cand_pending = cand->used && !cand->done;

    (void)fd;
    (void)what;
    if (!sh->started) {
        /* the client's answer did not begin within timeout_ms: the copy was
         * never sent, and is not waited for any longer (skipped) */
        log_at(LL_DEBUG, "shadow", sh->id, "copy: no answer to the client within %u ms, "
               "not sent", sh->sc->timeout_ms);
        if (sh->cap != NULL) {
            sh->cap->ended = NULL;
            px_shadow_cap_put(sh->cap);
            sh->cap = NULL;
        }
        finish(sh);
        return;
    }
    log_at(LL_DEBUG, "shadow", sh->id, "copy: no complete answer within %u ms",
           sh->sc->timeout_ms);
    /* ending the second leg cannot finish the copy while the candidate is
     * pending; once the candidate is done it may */
    if (second->used && !second->done) {
        leg_end(second, "timeout");
        if (!cand_pending)
            return;
    }
    if (cand_pending) {
        leg_end(cand, "timeout");    /* a failed candidate finishes the copy */
        return;
    }
    /* every leg answered; the client's response is still coming: it is not
     * waited for past the deadline */
    if (sh->cap != NULL && sh->cap->state == PX_CAP_WAIT) {
        sh->cap->ended = NULL;
        px_shadow_cap_put(sh->cap);
        sh->cap = NULL;
        finish(sh);
    }
}

/* ---- a leg's exchange ------------------------------------------------- */

/* Parses the answer's head; true once it is in. */
static bool
leg_head(struct leg *l)
{
    struct px_shadow *sh = l->sh;
    struct evbuffer *in = bufferevent_get_input(l->bev);
    const struct px_limits *lim = &sh->conf->limits;
    struct h1_parse_limits pl = { lim->headers, lim->uri_bytes };
    struct h1_resp r;
    enum h1_parse pr;
    const char *p;
    size_t len, n, i;

    for (;;) {
        len = evbuffer_get_length(in);
        if (len == 0)
            return false;
        n = len < lim->head_bytes ? len : lim->head_bytes;
        p = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
        memset(&r, 0, sizeof(r));
        r.fields = px_hc_fields(sh->srv, pl.max_fields);
        pr = h1_resp_parse(&r, p, n, &pl, sh->is_head);
        if (pr == H1_PARSE_AGAIN && n >= lim->head_bytes)
            pr = H1_PARSE_BAD;
        if (pr == H1_PARSE_AGAIN)
            return false;
        if (pr == H1_PARSE_BAD || r.status == 101) {
            leg_end(l, "invalid response");
            return false;
        }
        if (r.status >= 200)
            break;
        evbuffer_drain(in, r.head_len);   /* interim */
    }
    hl_diff_resp_status(&l->resp, r.status);
    for (i = 0; i < r.nfields; i++)
        hl_diff_resp_header(&l->resp, &sh->sc->compare, r.fields[i].name.p,
                            r.fields[i].name.len, r.fields[i].value.p, r.fields[i].value.len);
    l->keep_alive = r.keep_alive;
    l->head_done = true;
    memset(&l->body, 0, sizeof(l->body));
    l->body.framing = r.framing;
    l->body.left = r.framing == H1_BODY_LENGTH ? r.content_length : 0;
    l->body.out = PX_OUT_PLAIN;
    h1_chunked_init(&l->body.ck);
    l->body.ck.max_ext = lim->chunk_ext_bytes;
    l->body.done = r.framing == H1_BODY_NONE ||
                   (r.framing == H1_BODY_LENGTH && r.content_length == 0);
    evbuffer_drain(in, r.head_len);
    return true;
}

/* Reads what the answer's body has; ends the leg at its end. */
static void
leg_body(struct leg *l)
{
    struct px_shadow *sh = l->sh;
    struct evbuffer *in = bufferevent_get_input(l->bev);
    struct evbuffer_iovec v[8];
    int k, i;

    if (l->scratch == NULL)
        l->scratch = evbuffer_new();
    while (!l->body.done && evbuffer_get_length(in) > 0) {
        size_t before = evbuffer_get_length(in);

        if (px_hm_body_upto(&l->body, in, l->scratch, PX_IO_READ_MAX) < 0) {
            leg_end(l, "bad body framing");
            return;
        }
        if (evbuffer_get_length(in) == before && evbuffer_get_length(l->scratch) == 0)
            break;                     /* a chunk-size line not complete yet */
        /* cut here whatever is compared: with compare.body "none" nothing
         * else would stop a never-ending answer before the deadline */
        l->body_read += evbuffer_get_length(l->scratch);
        if (l->body_read > sh->sc->max_response_bytes) {
            leg_end(l, "answer over max_response_bytes");
            return;
        }
        k = evbuffer_peek(l->scratch, -1, NULL, v, 8);
        for (i = 0; i < k && i < 8; i++)
            if (hl_diff_resp_body(&l->resp, &sh->sc->compare, v[i].iov_base,
                                  v[i].iov_len) < 0) {
                leg_end(l, "answer over max_response_bytes");
                return;
            }
        evbuffer_drain(l->scratch, evbuffer_get_length(l->scratch));
    }
    if (l->body.done)
        leg_end(l, NULL);
}

static void
leg_read(struct bufferevent *bev, void *arg)
{
    struct leg *l = arg;

    (void)bev;
    if (l->done)
        return;
    if (!l->head_done && !leg_head(l))
        return;
    leg_body(l);
}

static void
leg_send(struct leg *l)
{
    struct evbuffer *out = bufferevent_get_output(l->bev);

    px_hm_send_kept(out, l->sh->req);
    bufferevent_enable(l->bev, EV_READ);
    px_io_flush(l->bev);
}

static void
leg_event(struct bufferevent *bev, short what, void *arg)
{
    struct leg *l = arg;

    (void)bev;
    if (l->done)
        return;
    if (what & BEV_EVENT_CONNECTED) {
        leg_send(l);
        return;
    }
    if ((what & BEV_EVENT_EOF) && l->head_done) {
        leg_read(bev, arg);          /* what is buffered is still valid */
        if (l->done)
            return;
        if (l->body.framing == H1_BODY_CLOSE && px_tls_up_closed_cleanly(l->bev)) {
            l->keep_alive = false;
            leg_end(l, NULL);
            return;
        }
    }
    leg_end(l, (what & BEV_EVENT_TIMEOUT) ? "timeout"
               : !l->head_done && (what & BEV_EVENT_WRITING) ? "connect failed"
               : "closed before a complete answer");
}

/* Leg <l> will go to server <s> of <side> (leg_connect() starts it). */
static void
leg_prepare(struct px_shadow *sh, struct leg *l, enum rt_side side, struct px_server_rt *s)
{
    l->sh = sh;
    l->side = side;
    l->srt = px_server_rt_get(s);
    l->tls = sh->conf->side[side].tls;
    l->used = true;
    hl_diff_resp_init(&l->resp, &sh->sc->compare);
    sh->pending++;
}

/* Sends the copy on leg <l>, on a pooled connection or a new one; false
 * when it could not (the leg is then ended as failed). */
static bool
leg_connect(struct leg *l)
{
    struct px_shadow *sh = l->sh;
    struct px_server_rt *s = l->srt;
    const struct px_addr *a = &s->addr;
    evutil_socket_t fd;

    l->bev = px_pool_get(s, l->tls, true);
    if (l->bev != NULL) {
        l->reused = true;
        bufferevent_setcb(l->bev, leg_read, NULL, leg_event, l);
        bufferevent_set_timeouts(l->bev, NULL, NULL);
        bufferevent_disable(l->bev, EV_WRITE);
        leg_send(l);
        return true;
    }
    /* a socket bufferevent, made a TLS client of the side when it has TLS
     * (proxy/io.h), connected as the request path connects */
    l->bev = bufferevent_socket_new(sh->srv->base, -1,
                                    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (l->bev != NULL && (fd = px_io_socket(a->ss.ss_family)) >= 0) {
        bufferevent_setfd(l->bev, fd);
        if (l->tls != NULL && px_tls_up_attach(l->bev, l->tls, (const struct sockaddr *)&a->ss,
                                               &s->tls_cache) < 0) {
            px_io_free(l->bev);
            l->bev = NULL;
        }
    } else if (l->bev != NULL) {
        bufferevent_free(l->bev);
        l->bev = NULL;
    }
    if (l->bev == NULL) {
        leg_end(l, "no socket for the copy (a local shortage)");
        return false;
    }
    bufferevent_setcb(l->bev, leg_read, NULL, leg_event, l);
    if (px_io_connect(l->bev, (const struct sockaddr *)&a->ss, (int)a->len) < 0) {
        leg_end(l, "connect failed at once");
        return false;
    }
    return true;
}

/* The copy's deferred work, run by the loop after the callback that asked
 * for it returned: its start (once the head of the client's answer came,
 * and after the callback that passed it on wrote it to the client: see
 * px_shadow_primary_head()) and its end (after the client's response was
 * written, see maybe_finish()). */
static void
on_kick(evutil_socket_t fd, short what, void *arg)
{
    struct px_shadow *sh = arg;

    (void)fd;
    (void)what;
    if (sh->finishing) {
        finish(sh);                  /* frees <sh> */
        return;
    }
    if (sh->started)
        return;
    sh->started = true;
    if (sh->timer != NULL) {         /* timeout_ms from here: the copy's exchange */
        struct timeval tv = tv_ms(sh->sc->timeout_ms);

        evtimer_add(sh->timer, &tv);
    }
    /* the second server first: a candidate that fails at once ends the copy */
    if (sh->leg[LEG_SECOND].used)
        leg_connect(&sh->leg[LEG_SECOND]);
    leg_connect(&sh->leg[LEG_CAND]);
}

/* ---- the request path ------------------------------------------------- */

static bool
method_listed(const struct px_shadow_conf *sc, const char *m)
{
    unsigned i;

    for (i = 0; i < sc->nmethods; i++)
        if (strcmp(sc->methods[i], m) == 0)
            return true;
    return false;
}

/* Sticky users are shadowed by their bucket, so a user's requests are
 * copied all or none: the bucket permuted (7919 is prime to 10000), so
 * the sample is spread over every weight's users. Without a bucket, a
 * draw per request. */
static bool
sampled(struct px_conn *c, uint32_t percent_bp)
{
    uint32_t b;

    if (percent_bp >= 10000)
        return true;
    if (percent_bp == 0)
        return false;
    b = c->ex->has_bucket ? (uint32_t)(((uint64_t)c->ex->bucket * 7919u + 4409u) % 10000u)
                      : (uint32_t)(px_srv_rand(c->srv) % 10000u);
    return b < percent_bp;
}

/* The method and the target of the rebuilt head <h> ("M T HTTP/1.1\r\n"). */
static bool
request_line(struct evbuffer *h, char *method, size_t mlen, char *target, size_t tlen)
{
    size_t len = evbuffer_get_length(h), m, t;
    const char *p = (const char *)evbuffer_pullup(h, (ev_ssize_t)len);
    const char *sp, *sp2;

    if (p == NULL || (sp = memchr(p, ' ', len)) == NULL ||
        (sp2 = memchr(sp + 1, ' ', len - (size_t)(sp + 1 - p))) == NULL)
        return false;
    m = (size_t)(sp - p);
    t = (size_t)(sp2 - sp - 1);
    if (m >= mlen)
        return false;
    memcpy(method, p, m);
    method[m] = '\0';
    if (t >= tlen)
        t = tlen - 1;
    memcpy(target, sp + 1, t);
    target[t] = '\0';
    return true;
}

void
px_shadow_begin(struct px_conn *c)
{
    const struct px_shadow_conf *sc = sconf(c)->shadow;
    struct px_shadow_svc *ss;
    struct px_shadow *sh;
    struct px_server_rt *cand, *second = NULL;
    enum rt_side other;
    char method[16], target[160];
    size_t hlen, blen;

    if (sc == NULL || c->ex->req_upgrade || c->ex->up_head == NULL || c->ex->side == RT_NONE ||
        !request_line(c->ex->up_head, method, sizeof(method), target, sizeof(target)) ||
        !method_listed(sc, method) || !sampled(c, sc->percent_bp))
        return;
    other = c->ex->side == RT_LEGACY ? RT_NEW : RT_LEGACY;
    if ((sc->to == PX_SHADOW_TO_NEW && other != RT_NEW) ||
        (sc->to == PX_SHADOW_TO_LEGACY && other != RT_LEGACY))
        return;
    ss = ss_get(c->svc);
    blen = c->ex->req_buf != NULL ? evbuffer_get_length(c->ex->req_buf) : 0;
    if (!c->ex->req.done || blen > sc->max_body_bytes) {
        count(ss, PX_SR_TOO_LARGE);
        return;
    }
    if ((cand = pick(ss, other, NULL)) == NULL) {
        count(ss, PX_SR_SKIPPED);    /* the other side has no healthy server */
        ss->no_server++;
        if (!ss->is_stopped) {       /* the change, not every request */
            ss->is_stopped = true;
            log_at(LL_WARN, "shadow", c->id, "service %s: copies stop: %s has no healthy "
                   "server", sconf(c)->name, rt_side_names[other]);
        }
        return;
    }
    if (ss->is_stopped) {
        ss->is_stopped = false;
        log_at(LL_INFO, "shadow", c->id, "service %s: copies resume: %s has a healthy server "
               "again", sconf(c)->name, rt_side_names[other]);
    }
    if (ss->inflight >= sc->max_inflight) {
        count(ss, PX_SR_DROPPED);
        return;
    }
    if (sc->second_server)
        second = pick(ss, c->ex->side, c->ex->srt);

    sh = xcalloc(1, sizeof(*sh));
    sh->ss = ss;
    sh->srv = c->srv;
    sh->cref = px_confref_get(c->cref);
    sh->conf = sconf(c);
    sh->sc = sc;
    sh->id = c->id;
    sh->served = c->ex->side;
    snprintf(sh->served_addr, sizeof(sh->served_addr), "%s", srt_addr(c)->text);
    snprintf(sh->method, sizeof(sh->method), "%s", method);
    snprintf(sh->target, sizeof(sh->target), "%s", target);
    sh->prefix = prefix_of(ss, target);
    sh->is_head = c->ex->req_is_head;
    sh->t0_ms = px_now_ms(c->srv);
    list_push(&ss->live, &sh->link);
    ss->inflight++;

    /* the copy: the rebuilt head, marked, and the buffered body as it goes up */
    sh->req = evbuffer_new();
    hlen = evbuffer_get_length(c->ex->up_head);
    evbuffer_add(sh->req, evbuffer_pullup(c->ex->up_head, (ev_ssize_t)hlen), hlen - 2);
    evbuffer_add(sh->req, "X-Cutover-Shadow: 1\r\n\r\n", 23);
    if (c->ex->req.out == PX_OUT_CHUNKED) {
        if (blen > 0) {
            evbuffer_add_printf(sh->req, "%zx\r\n", blen);
            px_hm_send_kept(sh->req, c->ex->req_buf);
            evbuffer_add(sh->req, "\r\n", 2);
        }
        evbuffer_add(sh->req, "0\r\n\r\n", 5);
    } else if (blen > 0) {
        px_hm_send_kept(sh->req, c->ex->req_buf);
    }

    sh->cap = px_shadow_cap_new(&sc->compare, on_primary_ended, sh);
    c->ex->shadow = sh->cap;
    sh->timer = evtimer_new(c->srv->base, on_timeout, sh);
    if (sh->timer != NULL) {
        struct timeval tv = tv_ms(sc->timeout_ms);

        evtimer_add(sh->timer, &tv);
    }
    log_at(LL_DEBUG, "shadow", c->id, "%s %s: copied to %s server %s%s%s", method, target,
           rt_side_names[other], cand->addr.text, second != NULL ? " and " : "",
           second != NULL ? second->addr.text : "");
    if (second != NULL)
        leg_prepare(sh, &sh->leg[LEG_SECOND], c->ex->side, second);
    leg_prepare(sh, &sh->leg[LEG_CAND], other, cand);
    /* the copy is sent once the client's answer began (px_shadow_primary_head),
     * from this event */
    sh->kick = event_new(c->srv->base, -1, 0, on_kick, sh);
}

void
px_shadow_primary_head(struct px_conn *c, const struct h1_resp *r)
{
    struct px_shadow_cap *cap = c->ex->shadow;
    struct px_shadow *sh;

    if (cap->ended == NULL) {        /* the copy already ended: let it go */
        px_shadow_cap_put(cap);
        c->ex->shadow = NULL;
        return;
    }
    px_shadow_cap_head(cap, r);
    c->ex->res.tap = cap;
    /* the serving side answered: now the copy goes, once this callback has
     * written the head (and what came of the body) to the client, so that
     * neither the copy's connect and write nor the other side's work on it
     * come before the client's answer (cap->arg is the copy, alive while
     * cap->ended is set) */
    sh = cap->arg;
    if (sh->kick != NULL)
        event_active(sh->kick, EV_TIMEOUT, 1);
    else
        on_kick(-1, 0, sh);
}

void
px_shadow_primary_end(struct px_conn *c)
{
    struct px_shadow_cap *cap = c->ex->shadow;

    c->ex->shadow = NULL;
    c->ex->res.tap = NULL;
    px_shadow_cap_end(cap, c->ex->res_head_done && c->ex->res.done);
    px_shadow_cap_put(cap);
}

/* ---- freeing ---------------------------------------------------------- */

static void
ss_free(struct px_shadow_svc *ss)
{
    while (!list_empty(&ss->live))
        shadow_free(list_entry(ss->live.next, struct px_shadow, link));
    json_decref(ss->kept);
    free(ss);
}

/* ---- reports ---------------------------------------------------------- */

void
px_shadow_fold(struct px_service *ms, struct px_service *ws)
{
    struct px_shadow_svc *m, *w = ws->shadow;
    unsigned k, i;
    size_t j;
    json_t *d;

    if (w == NULL)
        return;
    m = ss_get(ms);
    ss_get(ws);                      /* the same window_s as the main's */
    for (k = 0; k < PX_SR__COUNT; k++)
        m->total[k] += w->total[k];
    m->compared += w->compared;
    m->diffs += w->diffs;
    m->noise_ignored += w->noise_ignored;
    m->no_server += w->no_server;
    memset(w->total, 0, sizeof(w->total));
    w->compared = w->diffs = w->noise_ignored = w->no_server = 0;
    for (k = 0; k < RT_SIDE__COUNT; k++) {
        hl_diffwin_merge(&m->win[k], &w->win[k]);
        hl_diffwin_reset(&w->win[k]);
    }
    for (i = 0; i < w->nprefix; i++) {
        struct prefix *wp = &w->prefix[i], *mp;

        mp = &m->prefix[prefix_of(m, wp->name)];
        hl_diffwin_merge(&mp->w, &wp->w);
        hl_diffwin_reset(&wp->w);
        mp->compared += wp->compared;
        mp->diffs += wp->diffs;
        wp->compared = wp->diffs = 0;
    }
    /* in the order they happened, the main loop's and this worker's */
    json_array_foreach(w->kept, j, d) {
        json_int_t at = json_integer_value(json_object_get(d, "at_ms"));
        size_t pos = json_array_size(m->kept);

        while (pos > 0 &&
               json_integer_value(json_object_get(json_array_get(m->kept, pos - 1), "at_ms")) > at)
            pos--;
        json_array_insert(m->kept, pos, d);
    }
    json_array_clear(w->kept);
    if (ms->conf->shadow != NULL)
        while (json_array_size(m->kept) > ms->conf->shadow->keep_diffs)
            json_array_remove(m->kept, 0);
    hl_noise_merge(&m->noise, &w->noise);
    hl_noise_merge(&w->noise, &m->noise);
}

void
px_shadow_totals(const struct px_service *svc, uint64_t *compared, uint64_t *diffs)
{
    const struct px_shadow_svc *ss = svc->shadow;

    *compared = ss != NULL ? ss->compared : 0;
    *diffs = ss != NULL ? ss->diffs : 0;
}

bool
px_shadow_window(const struct px_service *svc, uint64_t now_ms, struct hl_diff_stats *out)
{
    const struct px_shadow_svc *ss = svc->shadow;
    struct hl_diff_stats a, b;

    memset(out, 0, sizeof(*out));
    if (svc->conf->shadow == NULL || ss == NULL)
        return svc->conf->shadow != NULL;
    hl_diffwin_stats(&ss->win[RT_LEGACY], now_ms, &a);
    hl_diffwin_stats(&ss->win[RT_NEW], now_ms, &b);
    out->compared = a.compared + b.compared;
    out->diffs = a.diffs + b.diffs;
    out->rate = out->compared > 0 ? (double)out->diffs / (double)out->compared : 0;
    return true;
}

static json_t *
rate_json(const struct hl_diffwin *w, uint64_t now_ms)
{
    struct hl_diff_stats st;

    hl_diffwin_stats(w, now_ms, &st);
    return json_pack("{s:I, s:I, s:f}", "compared", (json_int_t)st.compared,
                     "diffs", (json_int_t)st.diffs, "diff_rate", st.rate);
}

void
px_shadow_status(const struct px_service *svc, uint64_t now_ms, json_t *obj)
{
    const struct px_shadow_conf *sc = svc->conf->shadow;
    const struct px_shadow_svc *ss = svc->shadow;
    json_t *o, *t, *p, *n;
    struct hl_diff_stats all;
    unsigned k;

    if (sc == NULL)
        return;
    t = json_object();
    for (k = 0; k < PX_SR__COUNT; k++)
        json_object_set_new(t, px_shadow_result_names[k],
                            json_integer(ss != NULL ? (json_int_t)ss->total[k] : 0));
    px_shadow_window(svc, now_ms, &all);
    o = json_pack("{s:f, s:o, s:I, s:I, s:f, s:I}",
                  "percent", sc->percent_bp / 100.0, "results", t,
                  "compared", (json_int_t)all.compared, "diffs", (json_int_t)all.diffs,
                  "diff_rate", all.rate,
                  "inflight", (json_int_t)(ss != NULL ? ss->inflight : 0));
    if (o == NULL)
        return;
    if (ss != NULL) {
        json_object_set_new(o, "legacy", rate_json(&ss->win[RT_LEGACY], now_ms));
        json_object_set_new(o, "new", rate_json(&ss->win[RT_NEW], now_ms));
        p = json_object();
        for (k = 0; k < ss->nprefix; k++)
            json_object_set_new(p, ss->prefix[k].name, rate_json(&ss->prefix[k].w, now_ms));
        json_object_set_new(o, "prefixes", p);
        n = json_array();
        for (k = 0; k < ss->noise.n; k++)
            json_array_append_new(n, json_string(ss->noise.name[k]));
        json_object_set_new(o, "noise", n);
        json_object_set_new(o, "noise_ignored", json_integer((json_int_t)ss->noise_ignored));
        json_object_set_new(o, "skipped_no_server", json_integer((json_int_t)ss->no_server));
        json_object_set_new(o, "kept", json_integer((json_int_t)json_array_size(ss->kept)));
    }
    json_object_set_new(obj, "shadow", o);
}

void
px_shadow_metrics(struct px_srv *srv, struct met_writer *w)
{
    struct met_label l[2] = { { "service", "" }, { "result", "" } };
    unsigned i, k;

    met_family(w, "cutover_shadow_total", MET_COUNTER,
               "Requests shadowing considered, by what became of them: match, diff, error "
               "(the copy got no usable answer), dropped (max_inflight), too_large, "
               "skipped (no healthy server on the other side, the client's exchange "
               "did not complete, or the canary shield replayed it on legacy).");
    for (i = 0; i < srv->nsvcs; i++) {
        const struct px_service *svc = srv->svcs[i];
        const struct px_shadow_svc *ss = svc->shadow;

        if (svc->conf->shadow == NULL)
            continue;
        l[0].value = svc->conf->name;
        for (k = 0; k < PX_SR__COUNT; k++) {
            l[1].value = px_shadow_result_names[k];
            met_sample_u64(w, l, 2, ss != NULL ? ss->total[k] : 0);
        }
    }
}

json_t *
px_shadow_diffs(const struct px_service *svc, unsigned n)
{
    const struct px_shadow_svc *ss = svc->shadow;
    json_t *a = json_array();
    size_t i, len;

    if (ss == NULL)
        return a;
    len = json_array_size(ss->kept);
    for (i = len > n ? len - n : 0; i < len; i++)
        json_array_append(a, json_array_get(ss->kept, i));
    return a;
}
