/*
 * events: see events.h. One timer per hub, armed while a stream is open:
 * every ADM_EVENTS_POLL_MS it compares a fingerprint of every service's
 * state (cheap: no fold of the workers' counters), and when it changed or
 * a second has passed it builds one frame and appends it to every stream.
 *
 * The frame's status is the `status` command's reply, asked as a requester
 * that can wait: past ADM_STATUS_AT_ONCE services it is built in slices on
 * the loop (admin/status.c), so a frame holds the loop for a slice at a
 * time, not for the whole status (38 ms at 1000 services). One frame is
 * built at a time, for every stream: a stream that opens meanwhile gets
 * that one, and a change seen meanwhile makes the next. A frame built at
 * once (few services) is sent as soon as it is built, and the first frame
 * of a stream that opens then goes to that stream only, as before.
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
 *   send buffer (ADM_EVENTS_SNDBUF), and one that would hold more than
 *   adm_events_is_behind() allows, or has not drained for
 *   ADM_EVENTS_BEHIND_MS, is dropped when the next frame is due.
 *   admin/conn.c's write timeout drops one that reads nothing at all for
 *   its flush limit.
 * - A frame is added to the streams by reference, not copied (it is 1.5 MB
 *   at 1000 services): the streams' outputs share it, and it is freed when
 *   the last of them has sent it or gone.
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
    struct adm_wait *wait;             /* the status of the frame being built in
                                        * slices (admin/status.c owns it); NULL: none */
};

/* A frame, shared by the outputs that hold it (evbuffer references). */
struct frame {
    unsigned refs;                     /* outputs holding it, +1 while it is sent */
    size_t len;                        /* bytes of <text> */
    char text[];
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

static void
frame_unref(struct frame *fr)
{
    if (--fr->refs == 0)
        free(fr);
}

/* evbuffer_add_reference()'s cleanup: an output sent its copy or went. */
static void
on_frame_sent(const void *data, size_t len, void *arg)
{
    (void)data;
    (void)len;
    frame_unref(arg);
}

/* Appends <fr> to <c>'s output by reference. Returns 0 or -1. */
static int
frame_add(struct frame *fr, struct adm_conn *c)
{
    if (evbuffer_add_reference(bufferevent_get_output(c->bev), fr->text, fr->len,
                               on_frame_sent, fr) != 0)
        return -1;                     /* no cleanup call then: no reference taken */
    fr->refs++;
    return 0;
}

/* A new frame around the status reply <status> (text, freed here; NULL
 * when it could not be built) and the audit read now: one reference,
 * the caller's. NULL when out of memory. */
static struct frame *
frame_build(struct adm_events *ev, char *status)
{
    static const char no_status[] = "{\"ok\":false,\"error\":\"out of memory\"}";
    json_t *au = exec_read(ev, json_pack("{s:s, s:i}", "cmd", "audit", "n",
                                         ADM_EVENTS_AUDIT_N));
    char *audit = au != NULL ? json_dumps(au, EVENTS_JSON_FLAGS) : NULL, head[160];
    const char *st = status != NULL ? status : no_status;
    size_t hlen, slen = strlen(st), alen;
    struct frame *fr = NULL;

    json_decref(au);
    if (audit == NULL)
        goto out;
    alen = strlen(audit);
    ev->seq++;
    /* the text json_dumps() gave of {"seq","ts_ms","status","audit"} */
    hlen = (size_t)snprintf(head, sizeof(head), "id: %lu\nevent: status\ndata: "
                            "{\"seq\":%lu,\"ts_ms\":%lld,\"status\":", ev->seq, ev->seq,
                            real_ms());
    fr = xmalloc(sizeof(*fr) + hlen + slen + alen + 16);
    fr->refs = 1;
    memcpy(fr->text, head, hlen);
    memcpy(fr->text + hlen, st, slen);
    fr->len = hlen + slen;
    memcpy(fr->text + fr->len, ",\"audit\":", 9);
    fr->len += 9;
    memcpy(fr->text + fr->len, audit, alen);
    fr->len += alen;
    memcpy(fr->text + fr->len, "}\n\n", 3);
    fr->len += 3;
out:
    if (fr == NULL)
        log_at(LL_WARN, "admin", 0, "events: cannot build a frame (out of memory)");
    free(audit);
    free(status);
    return fr;
}

bool
adm_events_is_behind(size_t unsent, size_t frame_len)
{
    size_t room = 2 * frame_len + frame_len / 8;

    if (room < ADM_EVENTS_OUT_MAX)
        room = ADM_EVENTS_OUT_MAX;
    return unsent + frame_len > room;
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

/* Appends <fr> to every stream, dropping those that fell behind. */
static void
broadcast(struct adm_events *ev, struct frame *fr)
{
    unsigned long long now = mono_ms();
    unsigned i;

    /* backwards: a drop moves the last one into its place */
    for (i = ev->nsubs; i-- > 0;) {
        struct sub *s = &ev->subs[i];
        size_t unsent = evbuffer_get_length(bufferevent_get_output(s->conn->bev));

        if (unsent == 0) {
            s->behind_ms = 0;
        } else if (adm_events_is_behind(unsent, fr->len)) {
            drop(ev, i, "too much unsent output");
            continue;
        } else if (s->behind_ms == 0) {
            s->behind_ms = now;
        } else if (now - s->behind_ms >= ADM_EVENTS_BEHIND_MS) {
            drop(ev, i, "output not drained in time");
            continue;
        }
        if (frame_add(fr, s->conn) != 0)
            drop(ev, i, "out of memory");
    }
}

/* Sends the frame of <status> (text, freed here) to <only>, or to every
 * stream when NULL. */
static void
frame_send(struct adm_events *ev, char *status, struct adm_conn *only)
{
    struct frame *fr = frame_build(ev, status);

    if (fr == NULL)
        return;
    if (only != NULL)
        frame_add(fr, only);           /* its first: nothing unsent to weigh */
    else
        broadcast(ev, fr);
    frame_unref(fr);
}

/* The status of the frame being built in slices is complete. */
static void
on_status_built(void *arg, char *reply)
{
    struct adm_events *ev = arg;

    ev->wait = NULL;                   /* admin/status.c frees it after this call */
    frame_send(ev, reply, NULL);
}

/* Starts a frame of the services' state as of now, for every stream, or
 * for <only> alone (a stream just opened) when it can be built at once.
 * Nothing when a frame is being built: that one goes to every stream. */
static void
frame_start(struct adm_events *ev, struct adm_conn *only)
{
    struct adm_caller who = { .actor = "dashboard", .pid = -1, .level = ADM_LEVEL_READ };
    unsigned long long fp, now;
    json_t *q, *r;
    char *text;

    if (ev->wait != NULL)
        return;
    fp = fingerprint(ev->ctl);
    now = mono_ms();
    q = json_pack("{s:s}", "cmd", "status");
    r = q != NULL ? adm_control_exec_wait(ev->ctl, q, &who, on_status_built, ev, &ev->wait)
                  : NULL;
    json_decref(q);
    if (r == NULL && ev->wait != NULL) {
        /* built in slices (admin/status.c): on_status_built() sends it */
        ev->fp = fp;
        ev->last_ms = now;
        return;
    }
    if (only == NULL) {
        ev->fp = fp;
        ev->last_ms = now;
    }
    text = r != NULL ? json_dumps(r, EVENTS_JSON_FLAGS) : NULL;
    json_decref(r);
    frame_send(ev, text, only);
}

static void
on_poll(evutil_socket_t fd, short what, void *arg)
{
    struct adm_events *ev = arg;

    (void)fd;
    (void)what;
    if (ev->nsubs == 0 || ev->wait != NULL)
        return;
    if (fingerprint(ev->ctl) != ev->fp || mono_ms() - ev->last_ms >= ADM_EVENTS_FRAME_MS)
        frame_start(ev, NULL);
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
    adm_control_wait_cancel(ev->wait);  /* a frame being built: nobody to send it to */
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
    /* the first frame: built at once, for this stream only (the others
     * have it unless something changed, and then the timer sends it to
     * all); built in slices, for every stream (or the one being built) */
    frame_start(ev, c);
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
