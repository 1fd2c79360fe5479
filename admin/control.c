/*
 * control: see control.h. The control plane's life cycle, its accessors and
 * its reconfiguration. The rest is in its siblings (control_int.h lists
 * them): the commands (commands.c), the progressive plan's glue
 * (plan_ctl.c), the change engine (change.c) and the request helpers
 * (request.c). Calls change.c, persist.c and request.c.
 */
#include <assert.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/audit.h"
#include "admin/change.h"
#include "admin/control.h"
#include "admin/control_int.h"
#include "admin/fleet.h"
#include "admin/fleet_leader.h"
#include "admin/persist.h"
#include "admin/request.h"
#include "admin/store.h"
#include "admin/writer.h"
#include "health/plan.h"
#include "lib/hmap.h"
#include "lib/log.h"
#include "lib/xmalloc.h"

/* ---- lifecycle -------------------------------------------------------- */

struct adm_control *
adm_control_new(const char *const *names, const uint32_t *initial_bp, unsigned n,
                const char *state_file, const char *audit_file,
                const struct adm_ops *ops, void *arg, char *err, size_t errlen)
{
    struct adm_control *c = NULL;
    struct adm_store_entry *e = NULL;
    struct hmap idx;                 /* the names so far -> index */
    unsigned ne = 0, i, u;
    char msg[512];
    size_t len;
    int k;

    hmap_init(&idx, n);
    c = xcalloc(1, sizeof(*c));
    c->persist.queue_tail = &c->persist.queue;
    c->change_run = adm_change_run;
    c->svcs = n > 0 ? xcalloc(n, sizeof(*c->svcs)) : NULL;
    /* c->n counts the services filled in so far: adm_svc_find() and
     * adm_control_free() only look at those. */
    for (i = 0; i < n; i++) {
        len = strlen(names[i]);
        if (len == 0 || len >= sizeof(e->name)) {
            snprintf(err, errlen, "service name \"%s\": must be 1..%zu bytes long",
                     names[i], sizeof(e->name) - 1);
            goto fail;
        }
        if (initial_bp[i] > RT_BP_MAX) {
            snprintf(err, errlen, "service %s: initial weight %u bp out of range 0..%u",
                     names[i], initial_bp[i], RT_BP_MAX);
            goto fail;
        }
        if (hmap_get_str(&idx, names[i], &u)) {
            snprintf(err, errlen, "service %s: duplicate name", names[i]);
            goto fail;
        }
        c->svcs[i].name = xstrdup(names[i]);
        hmap_put_str(&idx, c->svcs[i].name, i);
        c->svcs[i].st.weight_bp = initial_bp[i];
        c->svcs[i].st.state = ADM_ST_STEADY;
        c->svcs[i].st.generation = 0;
        c->svcs[i].audited_bp = initial_bp[i];
        hl_plan_init(&c->svcs[i].plan);
        c->n = i + 1;
    }
    c->state_file = state_file != NULL ? xstrdup(state_file) : NULL;
    c->audit_file = audit_file != NULL ? xstrdup(audit_file) : NULL;
    if (ops != NULL)
        c->ops = *ops;
    c->arg = arg;

    /* The state file wins over the config: it holds what operators did. */
    if (state_file != NULL) {
        if (adm_store_load(state_file, &e, &ne, msg, sizeof(msg)) != 0) {
            snprintf(err, errlen, "state file %s: %s; fix or remove it", state_file, msg);
            goto fail;
        }
        for (i = 0; i < ne; i++) {
            k = hmap_get_str(&idx, e[i].name, &u) ? (int)u : -1;
            if (k < 0) {
                log_at(LL_WARN, "control", 0,
                       "state file %s: service %s is not in the config; its state "
                       "is dropped", state_file, e[i].name);
                continue;
            }
            adm_svc_restore(&c->svcs[k], &e[i], true);
            log_at(LL_INFO, "control", 0,
                   "%s: restored weight %s, state %s, generation %llu from %s",
                   e[i].name, adm_pct(e[i].weight_bp, msg, sizeof(msg)),
                   adm_state_names[e[i].state], (unsigned long long)e[i].generation,
                   state_file);
        }
        free(e);
        e = NULL;
    }
    hmap_free(&idx);
    /* stale files, the journal, the audit log's tail and gaps */
    adm_persist_startup(c);
    return c;

fail:
    hmap_free(&idx);
    free(e);
    adm_control_free(c);
    return NULL;
}

int
adm_control_fleet_open(struct adm_control *c, struct event_base *base,
                       const struct adm_pg_conf *conf, uint64_t seed, char *err,
                       size_t errlen)
{
    return adm_fleet_open(c, base, conf, seed, err, errlen);
}

void
adm_control_set_leader(struct adm_control *c, struct adm_leader *l)
{
    adm_leader_free(c->leader);
    c->leader = l;
}

void
adm_control_free(struct adm_control *c)
{
    unsigned i;

    if (c == NULL)
        return;
    if (adm_audit_barrier_arg() == c)
        adm_audit_set_barrier(NULL, NULL);
    adm_writer_free(c->writer);        /* finishes its writes; their completions
                                        * still see every service */
    c->writer = NULL;
    if (c->status_jobs_free != NULL)
        c->status_jobs_free(c);
    adm_leader_free(c->leader);
    adm_fleet_free(c->fleet);
    adm_persist_free(c);
    for (i = 0; i < c->n; i++) {
        free(c->svcs[i].name);
        json_decref(c->svcs[i].last);
    }
    free(c->svcs);
    free(c->state_file);
    free(c->audit_file);
    free(c);
}

unsigned
adm_control_count(const struct adm_control *c)
{
    return c->n;
}

const struct adm_svc_state *
adm_control_state(const struct adm_control *c, unsigned svc)
{
    assert(svc < c->n);
    return &c->svcs[svc].st;
}

void
adm_control_counters(const struct adm_control *c, unsigned svc, struct adm_counters *out)
{
    assert(svc < c->n);
    *out = c->svcs[svc].counters;
}

/* ---- reconfiguration (SIGHUP reload) ------------------------------------ */

int
adm_control_reconfigure(struct adm_control *c, const char *const *names,
                        const uint32_t *initial_bp, unsigned n, char *err, size_t errlen)
{
    struct adm_store_entry *e = NULL;
    struct adm_svc *svcs;
    struct hmap olds, news, files;   /* names -> index: n lookups, not n^2 compares */
    unsigned ne = 0, i, j, u;
    bool need_file = false, *taken;
    char msg[512];
    size_t len;
    int k;

    /* a raise on its way (change.c) is applied first, on the services and
     * plans it was decided for (rare: a raise's save takes milliseconds) */
    if (c->raising > 0)
        adm_writer_drain(c->writer);
    hmap_init(&olds, c->n);
    hmap_init(&news, n);
    for (i = 0; i < c->n; i++)
        hmap_put_str(&olds, c->svcs[i].name, i);
    /* everything is checked before anything moves: a refusal changes nothing */
    for (i = 0; i < n; i++) {
        len = strlen(names[i]);
        if (len == 0 || len >= sizeof(e->name)) {
            snprintf(err, errlen, "service name \"%s\": must be 1..%zu bytes long",
                     names[i], sizeof(e->name) - 1);
            goto refused;
        }
        if (initial_bp[i] > RT_BP_MAX) {
            snprintf(err, errlen, "service %s: initial weight %u bp out of range 0..%u",
                     names[i], initial_bp[i], RT_BP_MAX);
            goto refused;
        }
        if (hmap_get_str(&news, names[i], &u)) {
            snprintf(err, errlen, "service %s: duplicate name", names[i]);
            goto refused;
        }
        hmap_put_str(&news, names[i], i);
        if (!hmap_get_str(&olds, names[i], &u))
            need_file = true;
    }
    /* a new service takes its state from the file when it has one (a
     * service that was removed and comes back, or a fleet's file) */
    if (need_file && c->state_file != NULL &&
        adm_store_load(c->state_file, &e, &ne, msg, sizeof(msg)) != 0) {
        snprintf(err, errlen, "state file %s: %s; fix or remove it", c->state_file, msg);
        goto refused;
    }
    hmap_init(&files, ne);
    for (j = 0; j < ne; j++)
        hmap_put_str(&files, e[j].name, j);

    svcs = xcalloc(n > 0 ? n : 1, sizeof(*svcs));
    taken = xcalloc(c->n > 0 ? c->n : 1, sizeof(*taken));
    for (i = 0; i < n; i++) {
        k = hmap_get_str(&olds, names[i], &u) ? (int)u : -1;
        if (k >= 0) {
            svcs[i] = c->svcs[k];      /* weight, latch, generation, plan, counters */
            taken[k] = true;
            continue;
        }
        svcs[i].name = xstrdup(names[i]);
        svcs[i].st.weight_bp = initial_bp[i];
        svcs[i].st.state = ADM_ST_STEADY;
        svcs[i].st.generation = 0;
        svcs[i].audited_bp = initial_bp[i];
        hl_plan_init(&svcs[i].plan);
        if (hmap_get_str(&files, names[i], &j)) {
            adm_svc_restore(&svcs[i], &e[j], true);
            log_at(LL_INFO, "control", 0,
                   "%s: new service: restored weight %s, state %s, generation %llu from %s",
                   e[j].name, adm_pct(e[j].weight_bp, msg, sizeof(msg)),
                   adm_state_names[e[j].state], (unsigned long long)e[j].generation,
                   c->state_file);
        }
    }
    for (i = 0; i < c->n; i++) {
        if (taken[i])
            continue;
        log_at(LL_INFO, "control", 0, "%s: removed from the config; its state (weight %s, "
               "state %s, generation %llu) is dropped", c->svcs[i].name,
               adm_pct(c->svcs[i].st.weight_bp, msg, sizeof(msg)),
               adm_state_names[c->svcs[i].st.state],
               (unsigned long long)c->svcs[i].st.generation);
        free(c->svcs[i].name);
        json_decref(c->svcs[i].last);
    }
    free(c->svcs);
    c->svcs = svcs;
    c->n = n;
    c->reconfigs++;
    free(taken);
    free(e);
    hmap_free(&files);
    hmap_free(&olds);
    hmap_free(&news);
    return 0;

refused:
    hmap_free(&olds);
    hmap_free(&news);
    return -1;
}

void
adm_control_store_tick(struct adm_control *c, uint64_t now_ms)
{
    adm_persist_tick(c, now_ms);
}

void
adm_control_store_status(const struct adm_control *c, struct adm_store_status *out)
{
    adm_persist_figures(c, out);
    if (c->fleet != NULL)
        adm_fleet_figures(c, out);
    if (c->leader != NULL) {
        struct adm_leader_figures f;

        adm_leader_figures(c->leader, &f);
        out->leader = f.leader;
        out->fleet_instances = f.instances;
        out->leader_takeovers = f.takeovers;
    }
}

void
adm_control_fleet_event(struct adm_control *c, const char *action, const char *reason,
                        json_t *figures)
{
    struct adm_audit_entry ae = {
        .service = "*", .actor = "fleet", .action = action, .reason = reason,
        .figures = figures, .pid = -1,
    };
    char err[512];

    if (c->fleet == NULL)
        return;
    if (c->audit_file != NULL && adm_audit_append(c->audit_file, &ae, err, sizeof(err)) != 0)
        log_at(LL_ERR, "control", 0, "audit log: %s", err);
    adm_fleet_audit(c, &ae);
}

int
adm_control_flush(struct adm_control *c)
{
    return adm_persist_flush(c);
}

void
adm_control_set_loop(struct adm_control *c, struct event_base *base)
{
    c->base = base;
    /* now, not with the first change: its descriptor is the daemon's from
     * the start (no event is added before it writes) */
    if (base != NULL)
        adm_persist_writer(c);
}

/* A log line waiting for the writes submitted before it. */
struct written_line {
    enum log_level level;
    char module[32];
    char *text;                  /* owned */
};

static void
on_line_written(void *arg, enum adm_wjob_result res, const char *err)
{
    struct written_line *wl = arg;

    (void)res;                         /* each write's own outcome is logged by its owner */
    (void)err;
    log_at(wl->level, wl->module, 0, "%s", wl->text);
    free(wl->text);
    free(wl);
}

void
adm_control_log_written(struct adm_control *c, enum log_level level, const char *module,
                        const char *fmt, ...)
{
    struct written_line *wl;
    va_list ap;
    char *text;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    text = xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(text, (size_t)n + 1, fmt, ap);
    va_end(ap);
    if (adm_writer_idle(c->writer)) {
        log_at(level, module, 0, "%s", text);
        free(text);
        return;
    }
    wl = xcalloc(1, sizeof(*wl));
    wl->level = level;
    snprintf(wl->module, sizeof(wl->module), "%s", module);
    wl->text = text;
    adm_persist_after(c, on_line_written, wl);
}

/* A file on its way (adm_control_write_file()). */
struct file_job {
    char what[64];
    char note[600];
};

static void
on_file_written(void *arg, enum adm_wjob_result res, const char *err)
{
    struct file_job *fj = arg;

    if (res != ADM_WJ_OK)
        log_at(LL_ERR, "control", 0, "%s: %s: %s", fj->what, err, fj->note);
    free(fj);
}

void
adm_control_write_file(struct adm_control *c, const char *file, char *text, size_t len,
                       const char *what, const char *note)
{
    struct file_job *fj;
    char err[512];

    if (!adm_persist_writer(c)) {
        if (adm_store_write(file, text, len, err, sizeof(err)) != 0)
            log_at(LL_ERR, "control", 0, "%s: %s: %s", what, err, note);
        free(text);
        return;
    }
    fj = xcalloc(1, sizeof(*fj));
    snprintf(fj->what, sizeof(fj->what), "%s", what);
    snprintf(fj->note, sizeof(fj->note), "%s", note);
    adm_writer_submit(c->writer, ADM_WJ_SAVE, file, text, len, on_file_written, fj);
    if (c->caller != NULL && c->waiter != NULL && c->waiting == NULL)
        c->event_sent = true;          /* the reply waits for it */
}

void
adm_control_set_require_reason(struct adm_control *c, bool on)
{
    c->require_reason = on;
}
