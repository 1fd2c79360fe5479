/*
 * worker: see worker.h. A job crosses threads through one slot per worker
 * (the main loop posts one job at a time and waits for it), an eventfd that
 * wakes the worker's loop, and a mutex and condition variable for "done".
 * The worker's event base takes no locks: only its own thread ever calls
 * libevent on it, the main loop included (it only posts jobs).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "lib/log.h"
#include "lib/xmalloc.h"
#include "health/window.h"
#include "proxy/accesslog.h"
#include "proxy/listen.h"
#include "proxy/server.h"
#include "proxy/shadow.h"
#include "proxy/shield.h"
#include "proxy/tls.h"
#include "proxy/worker.h"

struct px_worker {
    struct px_srv srv;               /* the replica: only this thread touches it */
    struct px_workers *all;          /* borrowed */
    pthread_t thread;
    bool started;                    /* <thread> runs: join it */
    int efd;                         /* owned: eventfd, "a job is posted" */
    struct event *wake;              /* owned: <efd> readable */
    pthread_mutex_t mu;              /* guards the job slot */
    pthread_cond_t cv;               /* signalled when <done> turns true */
    px_job_fn job;                   /* posted job, NULL when none */
    void *arg;
    bool done;
    int drained;                     /* atomic: stopping and no connection left */
    bool quitting;                   /* job_quit ran: the loop may end */
    uint64_t accepted;               /* <srv.accepted> at the last fold */
};

struct px_workers {
    unsigned n;                      /* workers besides the main loop */
    struct px_worker *w;             /* owned, <n> entries */
    int efd;                         /* owned: eventfd, "a worker drained" */
    struct event *drain_ev;          /* owned: <efd> readable, on the main loop */
    int suspect_efd;                 /* owned: eventfd, "a worker recorded an
                                      * outcome that can make a breach" */
    struct event *suspect_ev;        /* owned: <suspect_efd> readable, on the main loop */
    int suspect_posted;              /* atomic: <suspect_efd> written and not read
                                      * yet (a burst of errors wakes the main loop once) */
};

unsigned
px_workers_resolve(unsigned n)
{
    cpu_set_t set;
    int c;

    if (n > 0)
        return n;
    if (sched_getaffinity(0, sizeof(set), &set) == 0 && (c = CPU_COUNT(&set)) > 0)
        return (unsigned)c > 256 ? 256 : (unsigned)c;
    c = (int)sysconf(_SC_NPROCESSORS_ONLN);
    return c > 0 ? (c > 256 ? 256 : (unsigned)c) : 1;
}

/* ---- jobs ----------------------------------------------------------- */

static void
on_wake(evutil_socket_t fd, short what, void *arg)
{
    struct px_worker *w = arg;
    uint64_t v;
    px_job_fn fn;
    void *a;

    (void)what;
    if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        log_at(LL_WARN, "worker", 0, "worker %u: eventfd: %s", w->srv.worker_id,
               strerror(errno));
    pthread_mutex_lock(&w->mu);
    fn = w->job;
    a = w->arg;
    pthread_mutex_unlock(&w->mu);
    if (fn == NULL)
        return;
    fn(&w->srv, a);
    pthread_mutex_lock(&w->mu);
    w->job = NULL;
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void
job_post(struct px_worker *w, px_job_fn fn, void *arg)
{
    uint64_t one = 1;

    pthread_mutex_lock(&w->mu);
    w->job = fn;
    w->arg = arg;
    w->done = false;
    pthread_mutex_unlock(&w->mu);
    /* an eventfd write of 1 cannot fail short of an overflow at 2^64-1 */
    while (write(w->efd, &one, sizeof(one)) < 0 && errno == EINTR)
        ;
}

static void
job_wait(struct px_worker *w)
{
    pthread_mutex_lock(&w->mu);
    while (!w->done)
        pthread_cond_wait(&w->cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
}

void
px_workers_run(struct px_srv *main, px_job_fn fn, void *arg)
{
    struct px_workers *ws = main->workers;
    unsigned i;

    if (ws == NULL)
        return;
    for (i = 0; i < ws->n; i++)
        if (ws->w[i].started)
            job_post(&ws->w[i], fn, arg);
    for (i = 0; i < ws->n; i++)
        if (ws->w[i].started)
            job_wait(&ws->w[i]);
}

void
px_workers_run_each(struct px_srv *main, px_job_fn fn, void *arg)
{
    struct px_workers *ws = main->workers;
    unsigned i;

    if (ws == NULL)
        return;
    for (i = 0; i < ws->n; i++) {
        if (!ws->w[i].started)
            continue;
        job_post(&ws->w[i], fn, arg);
        job_wait(&ws->w[i]);
    }
}

/* ---- folding the workers' outcomes into the main replica --------------- */

static void
stats_add(struct px_side_stats *d, struct px_side_stats *s)
{
    unsigned k;

    d->requests += s->requests;
    for (k = 0; k < 5; k++)
        d->by_class[k] += s->by_class[k];
    for (k = 0; k < PX_E__COUNT; k++)
        d->errors[k] += s->errors[k];
    d->fallbacks += s->fallbacks;
    for (k = 0; k < PX_LAT_NBOUNDS + 1; k++)
        d->lat_buckets[k] += s->lat_buckets[k];
    d->lat_sum_us += s->lat_sum_us;
    memset(s, 0, sizeof(*s));
}

/* Runs on worker <w>'s thread while the main loop waits: adds <w>'s
 * outcomes since the last fold into the main replica and forgets them. */
static void
job_fold(struct px_srv *w, void *arg)
{
    struct px_srv *m = w->main_srv;
    unsigned i, side, k;

    (void)arg;
    /* the replica is the first member of its struct px_worker */
    ((struct px_worker *)(void *)w)->accepted = w->accepted;
    for (i = 0; i < w->nsvcs && i < m->nsvcs; i++) {
        struct px_service *ws = w->svcs[i], *ms = m->svcs[i];

        /* replicas hold the same services in the same order: a reload
         * reaches every worker before the main loop goes on */
        if (strcmp(ws->conf->name, ms->conf->name) != 0)
            continue;
        ms->w_conns += ws->conns_active;
        ms->override_refused += ws->override_refused;
        ms->cookie_invalid += ws->cookie_invalid;
        ws->override_refused = ws->cookie_invalid = 0;
        for (k = 0; k < PX_AE__COUNT; k++) {
            ms->accept_errors[k] += ws->accept_errors[k];
            ws->accept_errors[k] = 0;
        }
        for (k = 0; k < PX_TLS_R__COUNT; k++)
            ms->tls_hs[k] += ws->tls_hs[k];
        ms->tls_resumed += ws->tls_resumed;
        px_shield_fold(&ms->shield, &ws->shield);
        ms->tls_ktls += ws->tls_ktls;
        memset(ws->tls_hs, 0, sizeof(ws->tls_hs));
        ws->tls_resumed = 0;
        ws->tls_ktls = 0;
        for (side = 0; side < RT_SIDE__COUNT; side++) {
            unsigned n = ws->conf->side[side].nservers;

            stats_add(&ms->stats[side], &ws->stats[side]);
            if (ws->window[side].newest_sec != 0) {
                hl_window_merge(&ms->window[side], &ws->window[side]);
                hl_window_reset(&ws->window[side]);
            }
            if (n > ms->conf->side[side].nservers)
                n = ms->conf->side[side].nservers;
            for (k = 0; k < n; k++) {
                struct px_server_rt *d = ms->servers[side][k], *s = ws->servers[side][k];

                d->requests += s->requests;
                d->failures += s->failures;
                d->reused += s->reused;
                d->w_idle += s->nidle;
                s->requests = s->failures = s->reused = 0;
            }
        }
        for (k = 0; k < ws->nrecent; k++)
            if (!px_service_recent_add(ms, &ws->recent[k]))
                break;
        if (ws->recent_lost)
            ms->recent_lost = true;
        ws->nrecent = 0;
        ws->recent_lost = false;
        px_shadow_fold(ms, ws);
    }
}

static int
recent_cmp(const void *a, const void *b)
{
    const struct px_recent *x = a, *y = b;

    return x->us < y->us ? -1 : x->us > y->us;
}

void
px_workers_fold(struct px_srv *main)
{
    struct px_workers *ws = main->workers;
    unsigned i, side, k;

    if (ws == NULL)
        return;
    for (i = 0; i < main->nsvcs; i++) {
        struct px_service *svc = main->svcs[i];

        svc->w_conns = 0;
        for (side = 0; side < RT_SIDE__COUNT; side++)
            for (k = 0; k < svc->conf->side[side].nservers; k++)
                svc->servers[side][k]->w_idle = 0;
    }
    px_workers_run_each(main, job_fold, NULL);
    for (i = 0; i < main->nsvcs; i++) {
        struct px_service *svc = main->svcs[i];

        /* the tick replays svc->recent in the order things happened */
        if (svc->nrecent > 1)
            qsort(svc->recent, svc->nrecent, sizeof(svc->recent[0]), recent_cmp);
    }
}

uint64_t
px_workers_accepted(struct px_srv *main, unsigned worker)
{
    if (worker == 0)
        return main->accepted;
    if (main->workers == NULL || worker > main->workers->n)
        return 0;
    return main->workers->w[worker - 1].accepted;
}

/* ---- draining ------------------------------------------------------- */

bool
px_workers_drained(struct px_srv *main)
{
    struct px_workers *ws = main->workers;
    unsigned i;

    for (i = 0; ws != NULL && i < ws->n; i++)
        if (ws->w[i].started && !__atomic_load_n(&ws->w[i].drained, __ATOMIC_ACQUIRE))
            return false;
    return true;
}

void
px_worker_drained(struct px_srv *w)
{
    struct px_workers *ws = w->main_srv->workers;
    struct px_worker *self = &ws->w[w->worker_id - 1];
    uint64_t one = 1;

    if (__atomic_exchange_n(&self->drained, 1, __ATOMIC_ACQ_REL))
        return;
    while (write(ws->efd, &one, sizeof(one)) < 0 && errno == EINTR)
        ;
}

/* A worker's srv->suspect (on its thread): wakes the main loop, which
 * passes it on to its own srv->suspect (the policy, proxy/tick.c). One
 * write per burst: the flag stays set until the main loop has read. */
static void
worker_suspect(struct px_srv *w)
{
    struct px_workers *ws = w->main_srv->workers;
    uint64_t one = 1;

    if (__atomic_exchange_n(&ws->suspect_posted, 1, __ATOMIC_ACQ_REL))
        return;
    while (write(ws->suspect_efd, &one, sizeof(one)) < 0 && errno == EINTR)
        ;
}

static void
on_suspect(evutil_socket_t fd, short what, void *arg)
{
    struct px_srv *main = arg;
    uint64_t v;

    (void)what;
    if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        log_at(LL_WARN, "worker", 0, "eventfd: %s", strerror(errno));
    /* cleared before the evaluation folds the workers' outcomes: one
     * recorded after the fold posts again */
    __atomic_store_n(&main->workers->suspect_posted, 0, __ATOMIC_RELEASE);
    if (main->suspect != NULL)
        main->suspect(main);
}

/* The main loop drained (srv->drained, with workers): it exits once every
 * worker has too (on_drained() looks again when one does). */
static void
main_drained(struct px_srv *main)
{
    if (px_workers_drained(main))
        event_base_loopexit(main->base, NULL);
}

static void
on_drained(evutil_socket_t fd, short what, void *arg)
{
    struct px_srv *main = arg;
    uint64_t v;

    (void)what;
    if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        log_at(LL_WARN, "worker", 0, "eventfd: %s", strerror(errno));
    if (main->stopping && main->conns_active == 0 && px_workers_drained(main))
        event_base_loopexit(main->base, NULL);
}

/* ---- building and freeing a replica --------------------------------- */

/* Builds worker <id>'s replica of <m>'s services (see px_workers_start). */
static int
replica_build(struct px_srv *m, struct px_worker *w, unsigned id)
{
    struct px_srv *s = &w->srv;
    char err[512];
    unsigned i, side, k;

    s->worker_id = id;
    s->nworkers = m->nworkers;
    s->main_srv = m;
    s->drained = px_worker_drained;
    s->suspect = worker_suspect;
    s->base = px_event_base_new();
    if (s->base == NULL) {
        log_at(LL_ERR, "worker", 0, "worker %u: cannot create its event loop", id);
        return -1;
    }
    s->cref = px_confref_get(m->cref);
    s->conf = m->conf;
    s->conf_generation = m->conf_generation;
    s->rng = m->rng + (uint64_t)id * 0xd1b54a32d192ed03ULL;
    s->nsvcs = m->nsvcs;
    s->svcs = xcalloc(s->nsvcs > 0 ? s->nsvcs : 1, sizeof(*s->svcs));
    for (i = 0; i < s->nsvcs; i++) {
        struct px_service *ms = m->svcs[i], *svc = xcalloc(1, sizeof(*svc));

        px_service_init(svc, s, s->cref, i);
        px_service_share(svc, ms);            /* its connection counts */
        svc->tls = px_tls_ctx_get(ms->tls);   /* shared: one ticket key set */
        for (side = 0; side < RT_SIDE__COUNT; side++)
            for (k = 0; k < svc->conf->side[side].nservers; k++) {
                svc->servers[side][k]->up = ms->servers[side][k]->up;
                svc->servers[side][k]->admin = ms->servers[side][k]->admin;
            }
        px_service_publish(svc, ms->snap->weight_bp, ms->snap->generation);
        svc->applied_state = ms->applied_state;
        s->svcs[i] = svc;
    }
    if (m->conf->access_log_file != NULL) {
        s->access_log = px_access_log_new(s->base, m->conf->access_log_file, err, sizeof(err));
        if (s->access_log == NULL) {
            log_at(LL_ERR, "worker", 0, "worker %u: %s", id, err);
            return -1;
        }
    }
    if (px_srv_listen(s) < 0)
        return -1;
    w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->efd < 0 ||
        (w->wake = event_new(s->base, w->efd, EV_READ | EV_PERSIST, on_wake, w)) == NULL ||
        event_add(w->wake, NULL) < 0) {
        log_at(LL_ERR, "worker", 0, "worker %u: cannot create its wake-up event: %s", id,
               strerror(errno));
        return -1;
    }
    return 0;
}

/* Frees worker <w>'s replica and everything still open on it. */
static void
replica_free(struct px_worker *w)
{
    struct px_srv *s = &w->srv;
    struct px_service *svc;
    unsigned i;

    s->freeing = true;
    for (i = 0; s->svcs != NULL && i < s->nsvcs; i++) {
        px_service_close_conns(s->svcs[i]);
        px_service_free(s->svcs[i]);
    }
    while ((svc = px_srv_retired_pop(s)) != NULL) {
        px_service_close_conns(svc);
        px_service_free(svc);
    }
    free(s->svcs);
    s->svcs = NULL;
    px_access_log_free(s->access_log);
    s->access_log = NULL;
    px_srv_loop_free(s);
    px_confref_put(s->cref);
    s->cref = NULL;
    if (w->wake != NULL)
        event_free(w->wake);
    w->wake = NULL;
    if (w->efd >= 0)
        close(w->efd);
    w->efd = -1;
    if (s->base != NULL)
        event_base_free(s->base);
    s->base = NULL;
}

static void *
worker_main(void *arg)
{
    struct px_worker *w = arg;
    int rc = event_base_dispatch(w->srv.base);

    if (!w->quitting) {
        /* Its listeners stay in the SO_REUSEPORT group: the connections the
         * kernel hands them would wait forever, and the main loop would wait
         * forever for its next job. Nothing sane is left but to stop, so
         * that the service manager starts the daemon again. */
        log_at(LL_ERR, "worker", 0, "worker %u: event loop %s; cutoverd exits",
               w->srv.worker_id, rc < 0 ? "failed" : "ended");
        _exit(1);
    }
    replica_free(w);
    return NULL;
}

static void
job_quit(struct px_srv *w, void *arg)
{
    (void)arg;
    ((struct px_worker *)(void *)w)->quitting = true;
    event_base_loopexit(w->base, NULL);
}

int
px_workers_start(struct px_srv *main)
{
    struct px_workers *ws;
    unsigned i;

    if (main->nworkers <= 1)
        return 0;
    ws = xcalloc(1, sizeof(*ws));
    ws->n = main->nworkers - 1;
    ws->w = xcalloc(ws->n, sizeof(*ws->w));
    main->workers = ws;
    main->drained = main_drained;
    for (i = 0; i < ws->n; i++) {
        ws->w[i].all = ws;
        ws->w[i].efd = -1;
        pthread_mutex_init(&ws->w[i].mu, NULL);
        pthread_cond_init(&ws->w[i].cv, NULL);
    }
    ws->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    ws->suspect_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (ws->efd < 0 ||
        (ws->drain_ev = event_new(main->base, ws->efd, EV_READ | EV_PERSIST, on_drained,
                                  main)) == NULL ||
        event_add(ws->drain_ev, NULL) < 0 || ws->suspect_efd < 0 ||
        (ws->suspect_ev = event_new(main->base, ws->suspect_efd, EV_READ | EV_PERSIST,
                                    on_suspect, main)) == NULL ||
        event_add(ws->suspect_ev, NULL) < 0) {
        log_at(LL_ERR, "worker", 0, "cannot create the workers' wake-up event: %s",
               strerror(errno));
        return -1;
    }
    for (i = 0; i < ws->n; i++) {
        struct px_worker *w = &ws->w[i];
        sigset_t all, old;
        int e;

        if (replica_build(main, w, i + 1) < 0) {
            replica_free(w);
            return -1;
        }
        /* the thread starts with every signal blocked: signals are the main
         * loop's (libevent's handlers), and a worker's system calls are never
         * interrupted by one */
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        e = pthread_create(&w->thread, NULL, worker_main, w);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (e != 0) {
            log_at(LL_ERR, "worker", 0, "worker %u: cannot start its thread: %s", i + 1,
                   strerror(e));
            replica_free(w);
            return -1;
        }
        w->started = true;
    }
    log_at(LL_INFO, "worker", 0, "%u workers: the main loop and %u thread(s), each with its "
           "own listeners (SO_REUSEPORT)", main->nworkers, ws->n);
    return 0;
}

void
px_workers_free(struct px_srv *main)
{
    struct px_workers *ws = main->workers;
    unsigned i;

    if (ws == NULL)
        return;
    px_workers_run(main, job_quit, NULL);
    for (i = 0; i < ws->n; i++) {
        struct px_worker *w = &ws->w[i];

        if (w->started)
            pthread_join(w->thread, NULL);
        w->started = false;
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->cv);
    }
    if (ws->drain_ev != NULL)
        event_free(ws->drain_ev);
    if (ws->efd >= 0)
        close(ws->efd);
    if (ws->suspect_ev != NULL)
        event_free(ws->suspect_ev);
    if (ws->suspect_efd >= 0)
        close(ws->suspect_efd);
    free(ws->w);
    free(ws);
    main->workers = NULL;
    main->drained = NULL;
}
