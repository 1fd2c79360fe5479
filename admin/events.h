/*
 * events: the live feed of the dashboard, GET /v1/events on the admin HTTP
 * endpoint (Server-Sent Events). One hub per endpoint holds the streams
 * (at most ADM_EVENTS_MAX) and writes the same frame to each: the reply of
 * `status` and the last ADM_EVENTS_AUDIT_N audit entries, once a second
 * and at once (within ADM_EVENTS_POLL_MS) when any service changes (a new
 * generation, weight, state or plan step). A frame is built once, its
 * status in slices past ADM_STATUS_AT_ONCE services (admin/status.h), and
 * shared by every stream. Nothing here blocks or waits for a reader: a
 * stream that falls behind (adm_events_is_behind(), or output not drained
 * for ADM_EVENTS_BEHIND_MS) is dropped. admin/http.c authenticates
 * the request and writes the response head; the connection is then
 * admin/conn.c's stream.
 */
#ifndef CUTOVER_ADMIN_EVENTS_H
#define CUTOVER_ADMIN_EVENTS_H

#include <stdbool.h>
#include <stddef.h>

#define ADM_EVENTS_MAX        8              /* streams open at once */
#define ADM_EVENTS_POLL_MS    100            /* how often changes are looked for */
#define ADM_EVENTS_FRAME_MS   1000           /* a frame at least this often */
#define ADM_EVENTS_OUT_MAX    (256u * 1024u) /* unsent bytes that drop a stream of
                                              * small frames (adm_events_is_behind) */
#define ADM_EVENTS_BEHIND_MS  5000           /* output not drained this long: dropped */
#define ADM_EVENTS_SNDBUF     (32 * 1024)    /* a stream socket's send buffer */
#define ADM_EVENTS_AUDIT_N    20             /* audit entries in a frame */

struct event_base;
struct adm_control;
struct adm_conn;
struct adm_events;

/* What the hub did, for tests and messages. */
struct adm_events_stats {
    unsigned open;                   /* streams open now */
    unsigned long frames;            /* frames built */
    unsigned long dropped;           /* streams dropped for falling behind */
};

/* A hub on <base> reading <ctl> (borrowed; both must outlive it). */
struct adm_events *adm_events_new(struct event_base *base, struct adm_control *ctl);

/* Frees the hub. Its streams must be gone (adm_events_remove() from the
 * connections' release). NULL is a no-op. */
void adm_events_free(struct adm_events *ev);

/* True when another stream may open. */
bool adm_events_has_room(const struct adm_events *ev);

/* Whether a stream holding <unsent> bytes not yet sent is too far behind
 * to be given a frame of <frame_len> bytes (then it is dropped): when the
 * two together would be more than ADM_EVENTS_OUT_MAX, or than two frames
 * and an eighth when that is more. A reader that keeps up holds at most
 * the rest of the last frame when the next is due, whatever the frame's
 * size (1.5 MB at 1000 services), and is kept; one still holding more than
 * a frame and an eighth is dropped. Pure. */
bool adm_events_is_behind(size_t unsent, size_t frame_len);

/* Subscribes <c>, whose response head is queued and which is a stream
 * (adm_conn_stream()): writes the reconnection delay and a first frame, at
 * once, or when the one being built in slices is complete. Returns 0, or
 * -1 when ADM_EVENTS_MAX streams are open. */
int adm_events_add(struct adm_events *ev, struct adm_conn *c);

/* Forgets <c> (no-op when it is not subscribed). */
void adm_events_remove(struct adm_events *ev, struct adm_conn *c);

void adm_events_stats(const struct adm_events *ev, struct adm_events_stats *out);

#endif
