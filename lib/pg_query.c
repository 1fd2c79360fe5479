/*
 * lib/pg_query: the queries of the PostgreSQL client (see lib/pg.h for the
 * rules it keeps, lib/pg_int.h for how it shares the client with
 * lib/pg_session.c): pg_query() and pg_listen(), the FIFO queue and its
 * bound, sending and flushing on the non-blocking connection, reading the
 * results of the query in flight, the reply view, delivering every answer
 * exactly once, and the notifications to the listeners.
 *
 * It never ends the session and has no event handler of its own: it is
 * called from pg_session.c's handlers and from the public calls, and a
 * function that finds the session broken returns a struct pg_end to the
 * session code that called it.
 */
#include "lib/pg_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <libpq-fe.h>

#include "lib/list.h"
#include "lib/log.h"
#include "lib/pg.h"
#include "lib/timeval.h"
#include "lib/xmalloc.h"

#define CHANNEL_MAX          63     /* NAMEDATALEN - 1 */

struct pg_reply {
    enum pg_outcome outcome;
    const PGresult *res;         /* the server's answer, PG_OK and PG_ERROR */
    const char *error;
    char sqlstate[6];
};

void
pgq_one_line(char *buf, size_t len, const char *msg)
{
    size_t n = 0;
    bool space = false;

    for (; msg != NULL && *msg != '\0' && n + 1 < len; msg++) {
        if (*msg == '\n' || *msg == '\r' || *msg == '\t') {
            space = n > 0;
            continue;
        }
        if (space && n + 2 < len)
            buf[n++] = ' ';
        space = false;
        buf[n++] = *msg;
    }
    buf[n] = '\0';
}

const char *
pg_outcome_name(enum pg_outcome o)
{
    switch (o) {
    case PG_OK: return "ok";
    case PG_ERROR: return "error";
    case PG_TIMEOUT: return "timeout";
    case PG_LOST: return "lost";
    case PG_NOT_CONNECTED: return "not connected";
    case PG_BUSY: return "busy";
    case PG_CLOSED: return "closed";
    }
    return "?";
}

const char *
pg_state_name(enum pg_state s)
{
    switch (s) {
    case PG_STATE_DOWN: return "down";
    case PG_STATE_CONNECTING: return "connecting";
    case PG_STATE_UP: return "up";
    }
    return "?";
}

/* ---- items and their delivery -------------------------------------------- */

static void
item_free(struct pg_item *it)
{
    int i;

    if (it->timer != NULL)
        event_free(it->timer);
    for (i = 0; i < it->nparams; i++)
        free(it->params[i]);
    free(it->params);
    free(it->sql);
    free(it->error);
    free(it);
}

void
pgq_item_done(struct pg_client *c, struct pg_item *it, enum pg_outcome outcome,
              const char *error)
{
    if (it->timer != NULL) {
        event_free(it->timer);
        it->timer = NULL;
    }
    if (it->counted) {
        it->counted = false;
        c->nqueued--;
    }
    it->outcome = outcome;
    free(it->error);
    it->error = xstrdup(error != NULL ? error : "");
    list_append(&c->done, &it->node);
}

/* Calls the callback of <it> (taken off every list) with <r>, then frees it. */
static void
item_call(struct pg_client *c, struct pg_item *it, const struct pg_reply *r)
{
    if (it->cb != NULL)
        it->cb(c, r, it->arg);
    else if (r->outcome == PG_ERROR || r->outcome == PG_TIMEOUT)
        log_kv(LL_WARN, "pg", "pg_listen_failed", "client", c->name,
               "sql", it->sql, "reason", r->error);
    item_free(it);
}

void
pgq_deliver(struct pg_client *c)
{
    while (!c->freeing && !list_empty(&c->done)) {
        struct pg_item *it = list_entry(c->done.next, struct pg_item, node);
        struct pg_reply r = { it->outcome, NULL, it->error, "" };

        list_unlink(&it->node);
        item_call(c, it, &r);
    }
}

/* Builds the reply to the in-flight query from the server's result <res>
 * (NULL when the server sent none) and calls back. */
static void
answer(struct pg_client *c, struct pg_item *it, PGresult *res)
{
    struct pg_reply r = { PG_ERROR, res, "", "" };
    char msg[512];
    const char *s;

    if (it->timer != NULL) {
        event_free(it->timer);
        it->timer = NULL;
    }
    if (it->counted) {
        it->counted = false;
        c->nqueued--;
    }
    switch (res != NULL ? PQresultStatus(res) : PGRES_FATAL_ERROR) {
    case PGRES_COMMAND_OK:
    case PGRES_TUPLES_OK:
    case PGRES_EMPTY_QUERY:
        r.outcome = PG_OK;
        break;
    default:
        s = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
        if (s == NULL)
            s = res != NULL ? PQresultErrorMessage(res) : "no result from the server";
        pgq_one_line(msg, sizeof(msg), s);
        r.error = msg;
        s = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
        if (s != NULL)
            snprintf(r.sqlstate, sizeof(r.sqlstate), "%s", s);
        break;
    }
    item_call(c, it, &r);
    if (res != NULL)
        PQclear(res);
}

void
pgq_session_ended(struct pg_client *c, enum pg_outcome outcome, const char *inflight_error,
                  const char *queued_error)
{
    if (c->inflight != NULL) {
        struct pg_item *it = c->inflight;

        c->inflight = NULL;
        pgq_item_done(c, it, outcome, inflight_error);
    }
    while (!list_empty(&c->queue)) {
        struct pg_item *it = list_entry(c->queue.next, struct pg_item, node);

        list_unlink(&it->node);
        pgq_item_done(c, it, PG_LOST, queued_error);
    }
}

/* PG_CLOSED to <it>, taken off its list. */
static void
abandon(struct pg_client *c, struct pg_item *it)
{
    struct pg_reply r = { PG_CLOSED, NULL, "client closed", "" };

    item_call(c, it, &r);
}

void
pgq_close_all(struct pg_client *c)
{
    struct pg_item *it;

    if (c->inflight != NULL) {
        it = c->inflight;
        c->inflight = NULL;
        abandon(c, it);
    }
    while (!list_empty(&c->queue)) {
        it = list_entry(c->queue.next, struct pg_item, node);
        list_unlink(&it->node);
        abandon(c, it);
    }
    while (!list_empty(&c->done)) {
        it = list_entry(c->done.next, struct pg_item, node);
        list_unlink(&it->node);
        abandon(c, it);
    }
}

void
pgq_free_listeners(struct pg_client *c)
{
    size_t i;

    for (i = 0; i < c->nls; i++)
        free(c->ls[i].channel);
    free(c->ls);
    c->ls = NULL;
    c->nls = 0;
}

/* ---- sending and receiving ------------------------------------------------ */

bool
pgq_flush(struct pg_client *c, struct pg_end *e)
{
    int r = PQflush(c->pq);

    if (r < 0) {
        e->inflight = PG_LOST;
        pgq_one_line(e->reason, sizeof(e->reason), PQerrorMessage(c->pq));
        return false;
    }
    if (r > 0 && !c->writing) {
        event_add(c->ev_write, NULL);
        c->writing = true;
    } else if (r == 0 && c->writing) {
        event_del(c->ev_write);
        c->writing = false;
    }
    return true;
}

bool
pgq_pump(struct pg_client *c, struct pg_end *e)
{
    struct pg_item *it;
    int ok;

    if (c->phase != P_UP || c->inflight != NULL || list_empty(&c->queue) || c->freeing)
        return true;
    it = list_entry(c->queue.next, struct pg_item, node);
    list_unlink(&it->node);
    c->inflight = it;
    if (it->simple)
        ok = PQsendQuery(c->pq, it->sql);
    else
        ok = PQsendQueryParams(c->pq, it->sql, it->nparams, NULL,
                               (const char *const *)it->params, NULL, NULL, 0);
    if (!ok) {
        e->inflight = PG_LOST;
        pgq_one_line(e->reason, sizeof(e->reason), PQerrorMessage(c->pq));
        return false;
    }
    return pgq_flush(c, e);
}

bool
pgq_results(struct pg_client *c, struct pg_end *e)
{
    PGresult *res;

    while (c->inflight != NULL && !PQisBusy(c->pq)) {
        res = PQgetResult(c->pq);
        if (res == NULL) {
            struct pg_item *it = c->inflight;
            PGresult *held = c->held;

            c->inflight = NULL;
            c->held = NULL;
            answer(c, it, held);
            if (c->freeing)
                return true;
            if (!pgq_pump(c, e))
                return false;
            continue;
        }
        switch (PQresultStatus(res)) {
        case PGRES_COPY_IN:
        case PGRES_COPY_OUT:
        case PGRES_COPY_BOTH:
            /* the protocol would wait for COPY data: start over */
            PQclear(res);
            e->inflight = PG_ERROR;
            snprintf(e->reason, sizeof(e->reason), "COPY is not supported by this client");
            return false;
        default:
            break;
        }
        if (c->held == NULL) {
            c->held = res;
        } else if (PQresultStatus(res) == PGRES_FATAL_ERROR &&
                   PQresultStatus(c->held) != PGRES_FATAL_ERROR) {
            PQclear(c->held);            /* an error after rows: the error wins */
            c->held = res;
        } else {
            PQclear(res);
        }
    }
    return true;
}

void
pgq_notifications(struct pg_client *c)
{
    PGnotify *n;
    size_t i;

    while (!c->freeing && c->pq != NULL && (n = PQnotifies(c->pq)) != NULL) {
        /* by index: a callback may add listeners (c->ls moves) */
        for (i = 0; i < c->nls && !c->freeing; i++)
            if (strcmp(c->ls[i].channel, n->relname) == 0)
                c->ls[i].cb(c, n->relname, n->extra != NULL ? n->extra : "", n->be_pid,
                            c->ls[i].arg);
        PQfreemem(n);
    }
}

/* ---- the public calls ------------------------------------------------------ */

/* Queues an internal LISTEN on the live session. */
static void
queue_listen(struct pg_client *c, const char *channel)
{
    struct pg_item *it;
    struct timeval tv = tv_ms(c->statement_timeout_ms);
    char *q = PQescapeIdentifier(c->pq, channel, strlen(channel));

    if (q == NULL)
        return;                         /* the next session's setup says why */
    it = xcalloc(1, sizeof(*it));
    list_init(&it->node);
    it->c = c;
    it->simple = true;
    it->sql = xmalloc(strlen(q) + 8);
    sprintf(it->sql, "LISTEN %s", q);
    PQfreemem(q);
    it->timer = evtimer_new(c->base, c->deadline_cb, it);
    if (it->timer != NULL)
        evtimer_add(it->timer, &tv);
    list_append(&c->queue, &it->node);
    event_active(c->ev_defer, EV_TIMEOUT, 1);
}

int
pg_listen(struct pg_client *c, const char *channel, pg_notify_fn *cb, void *arg)
{
    size_t len = channel != NULL ? strlen(channel) : 0;

    if (c->freeing || cb == NULL || len == 0 || len > CHANNEL_MAX)
        return -1;
    c->ls = xrealloc(c->ls, (c->nls + 1) * sizeof(*c->ls));
    c->ls[c->nls].channel = xstrdup(channel);
    c->ls[c->nls].cb = cb;
    c->ls[c->nls].arg = arg;
    c->nls++;
    if (c->phase == P_SETUP || c->phase == P_UP)
        queue_listen(c, channel);
    return 0;
}

int
pg_query(struct pg_client *c, const char *sql, int nparams, const char *const *params,
         pg_query_fn *cb, void *arg)
{
    struct pg_item *it;
    struct timeval tv;
    int i;

    if (c->freeing)
        return -1;
    it = xcalloc(1, sizeof(*it));
    list_init(&it->node);
    it->c = c;
    it->cb = cb;
    it->arg = arg;
    if (sql == NULL || nparams < 0 || nparams > 65535 || (nparams > 0 && params == NULL)) {
        pgq_item_done(c, it, PG_ERROR, "invalid query or parameters");
        event_active(c->ev_defer, EV_TIMEOUT, 1);
        return 0;
    }
    if (c->phase != P_UP) {
        char msg[600];

        snprintf(msg, sizeof(msg), "not connected (%s%s%s)",
                 pg_state_name(pg_phase_state(c->phase)),
                 c->last_reason[0] != '\0' ? ": " : "", c->last_reason);
        pgq_item_done(c, it, PG_NOT_CONNECTED, msg);
        event_active(c->ev_defer, EV_TIMEOUT, 1);
        return 0;
    }
    if (c->nqueued >= c->max_queue) {
        char msg[64];

        snprintf(msg, sizeof(msg), "%u queries are waiting already", c->nqueued);
        pgq_item_done(c, it, PG_BUSY, msg);
        event_active(c->ev_defer, EV_TIMEOUT, 1);
        return 0;
    }
    it->sql = xstrdup(sql);
    it->nparams = nparams;
    if (nparams > 0) {
        it->params = xcalloc((size_t)nparams, sizeof(*it->params));
        for (i = 0; i < nparams; i++)
            it->params[i] = params[i] != NULL ? xstrdup(params[i]) : NULL;
    }
    tv = tv_ms(c->statement_timeout_ms);
    it->timer = evtimer_new(c->base, c->deadline_cb, it);
    if (it->timer == NULL || evtimer_add(it->timer, &tv) < 0) {
        pgq_item_done(c, it, PG_ERROR, "cannot add the statement timer");
        event_active(c->ev_defer, EV_TIMEOUT, 1);
        return 0;
    }
    it->counted = true;
    c->nqueued++;
    list_append(&c->queue, &it->node);
    /* An idle session sends it now: its round trip then overlaps what the
     * caller does next on the loop (a lowering's fsync of the local cache)
     * instead of starting after it. A broken session found here is only
     * noted; on_defer() ends it, from the loop. */
    if (!c->has_end)
        c->has_end = !pgq_pump(c, &c->end);
    event_active(c->ev_defer, EV_TIMEOUT, 1);   /* answers, and the queue: pgq_pump() */
    return 0;
}

/* ---- replies --------------------------------------------------------------- */

enum pg_outcome
pg_reply_outcome(const struct pg_reply *r)
{
    return r->outcome;
}

int
pg_reply_rows(const struct pg_reply *r)
{
    return r->outcome == PG_OK && r->res != NULL ? PQntuples(r->res) : 0;
}

int
pg_reply_cols(const struct pg_reply *r)
{
    return r->outcome == PG_OK && r->res != NULL ? PQnfields(r->res) : 0;
}

static bool
in_range(const struct pg_reply *r, int row, int col)
{
    return r->outcome == PG_OK && r->res != NULL && row >= 0 && col >= 0 &&
           row < PQntuples(r->res) && col < PQnfields(r->res);
}

const char *
pg_reply_value(const struct pg_reply *r, int row, int col)
{
    if (!in_range(r, row, col) || PQgetisnull(r->res, row, col))
        return NULL;
    return PQgetvalue(r->res, row, col);
}

bool
pg_reply_isnull(const struct pg_reply *r, int row, int col)
{
    return !in_range(r, row, col) || PQgetisnull(r->res, row, col);
}

long
pg_reply_affected(const struct pg_reply *r)
{
    const char *s;

    if (r->outcome != PG_OK || r->res == NULL)
        return -1;
    s = PQcmdTuples((PGresult *)r->res);
    return s != NULL && s[0] != '\0' ? strtol(s, NULL, 10) : -1;
}

const char *
pg_reply_error(const struct pg_reply *r)
{
    return r->outcome == PG_OK ? "" : r->error;
}

const char *
pg_reply_sqlstate(const struct pg_reply *r)
{
    return r->outcome == PG_ERROR ? r->sqlstate : "";
}
