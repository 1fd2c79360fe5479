/*
 * status: the reply of the `status` command (see status.h). Internal to the
 * control plane (control_int.h): commands.c hands the command here; this
 * file calls plan_ctl.c, persist.c, fleet.c and request.c, and the data
 * plane's status ops.
 *
 * A status of a few services, or of one, is built at once as one JSON
 * object. One of many services, when the requester can wait for its reply
 * (the admin socket, the HTTP endpoint) and the control plane has its loop
 * (adm_control_set_loop()), is built in slices on that loop: each slice
 * adds entries, serialized as it goes, for about ADM_STATUS_SLICE_US, then
 * yields until the loop's next turn, so that the requests and commands the
 * same loop serves wait for one slice at most, whatever the number of
 * services (it was the whole status: 0.8 s at 1000 services). The reply is
 * the same text as the one built at once. Each entry is consistent in
 * itself; two entries may be a few milliseconds apart, as the rows of
 * HAProxy's "show stat" are. A reload while a status is being built starts
 * it over: the services and their order changed.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <jansson.h>

#include "admin/audit.h"
#include "admin/control_int.h"
#include "admin/fleet.h"
#include "admin/fleet_leader.h"
#include "admin/persist.h"
#include "admin/plan_ctl.h"
#include "admin/request.h"
#include "admin/status.h"
#include "lib/log.h"
#include "lib/xmalloc.h"

#define STATUS_DUMP_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(15))

/* A status being built in slices. */
struct adm_status_job {
    struct adm_status_job *next;     /* on c->status_jobs */
    struct adm_control *c;           /* borrowed */
    struct adm_wait *wait;           /* owned: handed out; done NULL once cancelled */
    struct event *ev;                /* owned: the next slice, at the loop's next turn */
    unsigned next_svc;               /* the next service to add */
    uint64_t reconfigs;              /* c->reconfigs when the build (re)started */
    char *text;                      /* owned: the reply so far */
    size_t len, cap;
};

static uint64_t
mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* The entry of service <i>: name, weight, state, generation, plan, last
 * change and the data plane's part (as of the last status_begin op). */
static json_t *
status_entry(struct adm_control *c, unsigned i)
{
    json_t *o, *pl, *held;

    o = json_pack("{s:s, s:o, s:s, s:I}", "name", c->svcs[i].name,
                  "weight", adm_percent_json(c->svcs[i].st.weight_bp),
                  "state", adm_state_names[c->svcs[i].st.state],
                  "generation", (json_int_t)c->svcs[i].st.generation);
    if (o == NULL)
        return NULL;
    pl = adm_plan_status(&c->svcs[i]);
    held = adm_plan_gate_status(c, i);
    if (held != NULL && pl != NULL)
        json_object_set_new(pl, "held_by", held);
    else
        json_decref(held);
    json_object_set_new(o, "plan", pl);
    json_object_set_new(o, "last_change", adm_persist_last_change(&c->svcs[i]));
    if (c->ops.status != NULL)
        c->ops.status(c->arg, i, o);
    return o;
}

/* Whether what is in effect is on disk (persist.h); the fleet's store. */
static json_t *
store_entry(struct adm_control *c)
{
    json_t *o = adm_persist_status(c);

    if (o != NULL && c->fleet != NULL)
        adm_fleet_status(c, o);
    else if (o != NULL)
        json_object_set_new(o, "kind", json_string("file"));
    if (o != NULL && c->leader != NULL)
        adm_leader_status(c->leader, o);   /* "leader" as this instance holds it */
    return o;
}

/* ---- in slices ----------------------------------------------------------- */

static void
text_add(struct adm_status_job *j, const char *s, size_t n)
{
    if (j->len + n + 1 > j->cap) {
        while (j->len + n + 1 > j->cap)
            j->cap = j->cap > 0 ? j->cap * 2 : 65536;
        j->text = xrealloc(j->text, j->cap);
    }
    memcpy(j->text + j->len, s, n);
    j->len += n;
    j->text[j->len] = '\0';
}

/* Adds <v> (stolen) as JSON text; a value that cannot be built is null. */
static void
text_add_json(struct adm_status_job *j, json_t *v)
{
    char *t = v != NULL ? json_dumps(v, STATUS_DUMP_FLAGS | JSON_ENCODE_ANY) : NULL;

    json_decref(v);
    if (t == NULL) {
        text_add(j, "null", 4);
        return;
    }
    text_add(j, t, strlen(t));
    free(t);
}

#define REPLY_HEAD "{\"ok\":true,\"services\":["

/* Starts (or starts over) the build: the data plane's figures brought up to
 * date, no service added yet. */
static void
job_begin(struct adm_status_job *j)
{
    struct adm_control *c = j->c;

    if (c->ops.status_begin != NULL)
        c->ops.status_begin(c->arg);
    j->len = 0;
    text_add(j, REPLY_HEAD, sizeof(REPLY_HEAD) - 1);
    j->next_svc = 0;
    j->reconfigs = c->reconfigs;
}

static void
job_unlink(struct adm_status_job *j)
{
    struct adm_status_job **p;

    for (p = &j->c->status_jobs; *p != NULL; p = &(*p)->next) {
        if (*p == j) {
            *p = j->next;
            break;
        }
    }
}

/* Frees <j> (unlinked) and its wait, answering <reply> (owned; NULL: none)
 * when the requester still waits. */
static void
job_end(struct adm_status_job *j, char *reply)
{
    struct adm_wait *w = j->wait;

    event_free(j->ev);
    free(j->text);
    free(j);
    if (w->done != NULL && reply != NULL)
        w->done(w->arg, reply);        /* may start another command, even a status */
    else
        free(reply);
    free(w);
}

static void
on_slice(evutil_socket_t fd, short what, void *arg)
{
    struct adm_status_job *j = arg;
    struct adm_control *c = j->c;
    uint64_t t0 = mono_us();
    struct timeval now = { 0, 0 };
    char *reply;

    (void)fd;
    (void)what;
    if (j->wait->done == NULL) {       /* the requester went away */
        job_unlink(j);
        job_end(j, NULL);
        return;
    }
    if (j->reconfigs != c->reconfigs)
        job_begin(j);                  /* a reload: other services, another order */
    do {
        if (j->next_svc >= c->n) {
            text_add(j, "]", 1);
            /* at the end, so that it says where the store stands now */
            text_add(j, ",\"store\":", 9);
            text_add_json(j, store_entry(c));
            text_add(j, "}", 1);
            reply = j->text;
            j->text = NULL;
            job_unlink(j);
            job_end(j, reply);
            return;
        }
        if (j->next_svc > 0)
            text_add(j, ",", 1);
        text_add_json(j, status_entry(c, j->next_svc));
        j->next_svc++;
    } while (mono_us() - t0 < ADM_STATUS_SLICE_US);
    event_add(j->ev, &now);            /* the loop's next turn: its events first */
}

/* Frees every status still being built (the control plane goes): a
 * requester still waiting is told so. */
static void
jobs_free(struct adm_control *c)
{
    struct adm_status_job *j;

    while ((j = c->status_jobs) != NULL) {
        c->status_jobs = j->next;
        job_end(j, xstrdup("{\"ok\":false,\"error\":\"the daemon is stopping\"}"));
    }
}

/* ---- the command ----------------------------------------------------------- */

json_t *
adm_status_reply(struct adm_control *c, bool one, unsigned svc, bool at_once)
{
    struct adm_status_job *j;
    struct timeval now = { 0, 0 };
    json_t *list, *o;
    unsigned i;

    if (!at_once && !one && c->n > ADM_STATUS_AT_ONCE && c->waiter != NULL
        && c->base != NULL) {
        j = xcalloc(1, sizeof(*j));
        j->c = c;
        j->ev = event_new(c->base, -1, 0, on_slice, j);
        if (j->ev != NULL && event_add(j->ev, &now) == 0) {
            j->wait = xcalloc(1, sizeof(*j->wait));
            j->wait->done = c->waiter->done;
            j->wait->arg = c->waiter->arg;
            job_begin(j);
            j->next = c->status_jobs;
            c->status_jobs = j;
            c->status_jobs_free = jobs_free;
            c->waiting = j->wait;
            return json_null();        /* discarded: the reply comes later */
        }
        if (j->ev != NULL)
            event_free(j->ev);
        free(j);                       /* no event: built at once below */
    }
    if (c->ops.status_begin != NULL)
        c->ops.status_begin(c->arg);
    list = json_array();
    for (i = 0; i < c->n; i++) {
        if (one && i != svc)
            continue;
        json_array_append_new(list, status_entry(c, i));
    }
    o = store_entry(c);
    return json_pack("{s:b, s:o, s:o*}", "ok", 1, "services", list, "store", o);
}
