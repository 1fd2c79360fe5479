/*
 * events: see events.h. One timer per hub, armed while a stream is open:
 * every ADM_EVENTS_POLL_MS it compares a fingerprint of every service's
 * state (cheap: no fold of the workers' counters), and when it changed or
 * a second has passed it builds one frame and appends it to every stream.
 *
 * Key decisions:
 * - A frame is `id: N`, `event: status`, one `data:` line (compact JSON
 *   never holds a newline: jansson escapes them in strings) and a blank
 *   line: {"seq","ts_ms","status":<status reply>,"audit":<audit reply>}.
 *   The same bytes go to every stream; the reader needs no state to
 *   render one (the page keeps its own history for the charts).
 * - The status is run with level read as actor "dashboard" (reads are not
 *   audited): what a stream shows is what GET /status shows, whatever the
 *   token that opened it.
 * - Slow readers cost memory, never time: a stream's socket has a small
 *   send buffer (ADM_EVENTS_SNDBUF), and one whose unsent output is over
 *   ADM_EVENTS_OUT_MAX, or has not drained for ADM_EVENTS_BEHIND_MS, is
 *   dropped when the next frame is due. admin/conn.c's write timeout drops
 *   one that reads nothing at all for its flush limit.
 */
#include "admin/events.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <jansson.h>

#include "admin/conn.h"
#include "admin/control.h"
#include "lib/log.h"
#include "lib/timeval.h"
#include "lib/xmalloc.h"

#define EVENTS_JSON_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(15))

struct sub {
    struct adm_conn *conn;             /* borrowed: admin/conn.c owns it */
    unsigned long long behind_ms;      /* since when its output has not drained; 0 */
};

struct adm_events {
    struct event_base *base;           /* borrowed */
    struct adm_control *ctl;           /* borrowed */
    struct event *timer;               /* owned: ADM_EVENTS_POLL_MS, while streams */
    struct sub subs[ADM_EVENTS_MAX];
    unsigned nsubs;
    unsigned long long fp;             /* fingerprint of the last frame's states */
    unsigned long long last_ms;        /* monotonic time of the last frame */
    unsigned long seq;                 /* frames built */
    unsigned long dropped;
};

static unsigned long long
mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000 + (unsigned long long)ts.tv_nsec / 1000000;
}

static long long
real_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* FNV-1a over what a change moves: the services, their weights, states,
 * generations and plan steps. */
static unsigned long long
fingerprint(const struct adm_control *ctl)
{
    unsigned long long h = 14695981039346656037ULL;
    unsigned i, n = adm_control_count(ctl);
    unsigned long long v[5];
    size_t k;

    for (i = 0; i < n; i++) {
        const struct adm_svc_state *st = adm_control_state(ctl, i);

        v[0] = i;
        v[1] = st->weight_bp;
        v[2] = (unsigned long long)st->state;
        v[3] = st->generation;
        v[4] = adm_control_plan_step(ctl, i);
        for (k = 0; k < sizeof(v); k++)
            h = (h ^ ((const unsigned char *)v)[k]) * 1099511628211ULL;
    }
    return h ^ n;
}

/* The reply of command <q> (stolen) run with level read. */
static json_t *
exec_read(struct adm_events *ev, json_t *q)
{
    struct adm_caller who = { .actor = "dashboard", .pid = -1, .level = ADM_LEVEL_READ };
    json_t *r = q != NULL ? adm_control_exec_as(ev->ctl, q, &who) : NULL;

    json_decref(q);
    return r != NULL ? r : json_pack("{s:b, s:s}", "ok", 0, "error", "out of memory");
}

/* A new frame (text, NUL-terminated; caller frees), or NULL. */
static char *
build_frame(struct adm_events *ev, size_t *len)
{
    json_t *st, *au, *o;
    char *data, *frame = NULL;
    size_t n;

    ev->seq++;
    st = exec_read(ev, json_pack("{s:s}", "cmd", "status"));
    au = exec_read(ev, json_pack("{s:s, s:i}", "cmd", "audit", "n", ADM_EVENTS_AUDIT_N));
    o = json_pack("{s:I, s:I, s:o, s:o}", "seq", (json_int_t)ev->seq, "ts_ms",
                  (json_int_t)real_ms(), "status", st, "audit", au);
    data = o != NULL ? json_dumps(o, EVENTS_JSON_FLAGS) : NULL;
    json_decref(o);
    if (data == NULL) {
        log_at(LL_WARN, "admin", 0, "events: cannot build a frame (out of memory)");
        return NULL;
    }
    n = strlen(data) + 64;
    frame = xmalloc(n);
    *len = (size_t)snprintf(frame, n, "id: %lu\nevent: status\ndata: %s\n\n", ev->seq, data);
    free(data);
    return frame;
}

/* Drops subscriber <i> for falling behind (<why>). */
static void
drop(struct adm_events *ev, unsigned i, const char *why)
{
    struct adm_conn *c = ev->subs[i].conn;

    ev->dropped++;
    log_at(LL_INFO, "admin", 0, "events: stream of %s dropped: %s (%lu so far)", c->peer,
           why, ev->dropped);
    adm_conn_abort(c);                 /* its release removes it */
}

/* Appends a frame to every stream, dropping those that fell behind. */
static void
broadcast(struct adm_events *ev)
{
    unsigned long long now = mono_ms();
    size_t len = 0;
    char *frame;
    unsigned i;

    ev->fp = fingerprint(ev->ctl);
    ev->last_ms = now;
    if ((frame = build_frame(ev, &len)) == NULL)
        return;
    /* backwards: a drop moves the last one into its place */
    for (i = ev->nsubs; i-- > 0;) {
        struct sub *s = &ev->subs[i];
        struct evbuffer *out = bufferevent_get_output(s->conn->bev);
        size_t unsent = evbuffer_get_length(out);

        if (unsent == 0) {
            s->behind_ms = 0;
        } else if (unsent + len > ADM_EVENTS_OUT_MAX) {
            drop(ev, i, "too much unsent output");
            continue;
        } else if (s->behind_ms == 0) {
            s->behind_ms = now;
        } else if (now - s->behind_ms >= ADM_EVENTS_BEHIND_MS) {
            drop(ev, i, "output not drained in time");
            continue;
        }
        if (evbuffer_add(out, frame, len) != 0)
            drop(ev, i, "out of memory");
    }
    free(frame);
}

static void
on_poll(evutil_socket_t fd, short what, void *arg)
{
    struct adm_events *ev = arg;

    if (ev->nsubs == 0)
        return;
    if (fingerprint(ev->ctl) != ev->fp || mono_ms() - ev->last_ms >= ADM_EVENTS_FRAME_MS)
        broadcast(ev);
}

struct adm_events *
adm_events_new(struct event_base *base, struct adm_control *ctl)
{
    struct adm_events *ev = xcalloc(1, sizeof(*ev));

    ev->base = base;
    ev->ctl = ctl;
    ev->timer = event_new(base, -1, EV_PERSIST, on_poll, ev);
    if (ev->timer == NULL) {
        free(ev);
        return NULL;
    }
    return ev;
}

void
adm_events_free(struct adm_events *ev)
{
    if (ev == NULL)
        return;
    event_free(ev->timer);
    free(ev);
}

bool
adm_events_has_room(const struct adm_events *ev)
{
    return ev != NULL && ev->nsubs < ADM_EVENTS_MAX;
}

int
adm_events_add(struct adm_events *ev, struct adm_conn *c)
{
    static const char hello[] = "retry: 2000\n\n";
    struct evbuffer *out = bufferevent_get_output(c->bev);
    struct timeval poll = tv_ms(ADM_EVENTS_POLL_MS);
    int sndbuf = ADM_EVENTS_SNDBUF;
    size_t len = 0;
    char *frame;

    if (!adm_events_has_room(ev))
        return -1;
    /* a small kernel buffer: a reader that stops shows at once */
    setsockopt(bufferevent_getfd(c->bev), SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    ev->subs[ev->nsubs++] = (struct sub){ .conn = c };
    if (ev->nsubs == 1) {
        /* the first frame below is the one of this state */
        ev->fp = fingerprint(ev->ctl);
        ev->last_ms = mono_ms();
        event_add(ev->timer, &poll);
    }
    evbuffer_add(out, hello, sizeof(hello) - 1);
    /* the first frame at once, for this stream only (the others have it
     * unless something changed, and then the timer sends it to all) */
    if ((frame = build_frame(ev, &len)) != NULL) {
        evbuffer_add(out, frame, len);
        free(frame);
    }
    return 0;
}

void
adm_events_remove(struct adm_events *ev, struct adm_conn *c)
{
    unsigned i;

    if (ev == NULL)
        return;
    for (i = 0; i < ev->nsubs; i++) {
        if (ev->subs[i].conn == c) {
            ev->subs[i] = ev->subs[--ev->nsubs];
            break;
        }
    }
    if (ev->nsubs == 0)
        event_del(ev->timer);
}

void
adm_events_stats(const struct adm_events *ev, struct adm_events_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (ev == NULL)
        return;
    out->open = ev->nsubs;
    out->frames = ev->seq;
    out->dropped = ev->dropped;
}
