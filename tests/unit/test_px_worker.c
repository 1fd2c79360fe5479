/*
 * Tests for proxy/worker.c: `workers` resolves to the CPUs this process may
 * use; a job runs on every worker's own thread, with its own replica, and
 * px_workers_run() returns only once every worker has run it; a change
 * published by a job is what every replica routes by when the call
 * returns; px_workers_fold() adds each worker's counters, per-server counts
 * and window into the main replica, merges the recorded outcomes in time
 * order, and leaves the workers with nothing to add twice; a worker that
 * drained is seen by the main loop. Real threads, real event loops, real
 * SO_REUSEPORT listeners on 127.0.0.1 (nothing connects to them).
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "health/window.h"
#include "proxy/conf.h"
#include "proxy/http.h"
#include "proxy/listen.h"
#include "proxy/server.h"
#include "proxy/worker.h"

#define NWORKERS 3

struct fx {
    char dir[PATH_MAX];
    char conf[PATH_MAX + 32];
    struct px_srv srv;               /* the main replica */
};

/* A port nobody listens on right now (bound to 0, then released). */
static int
free_port(void)
{
    struct sockaddr_in a = { .sin_family = AF_INET };
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;

    assert_true(fd >= 0);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static int
setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    struct px_srv *srv;
    char err[512];
    FILE *fp;
    unsigned i;

    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/test_px_worker.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->conf, sizeof(f->conf), "%s/cutover.json", f->dir);
    fp = fopen(f->conf, "w");
    assert_non_null(fp);
    fprintf(fp, "{ \"workers\": %d, \"services\": [{ \"name\": \"web\", "
            "\"listen\": [\"127.0.0.1:%d\"], \"weight\": 10,\n"
            "  \"legacy\": { \"servers\": [\"127.0.0.3:9\"] },\n"
            "  \"new\": { \"servers\": [\"127.0.0.1:9\", \"127.0.0.2:9\"] } }] }\n",
            NWORKERS, free_port());
    fclose(fp);

    srv = &f->srv;
    srv->conf = px_conf_load(f->conf, err, sizeof(err));
    if (srv->conf == NULL)
        fail_msg("%s", err);
    srv->cref = px_confref_new(srv->conf, 1);
    srv->conf_generation = 1;
    srv->base = px_event_base_new();
    assert_non_null(srv->base);
    srv->nworkers = px_workers_resolve(srv->conf->workers);
    assert_int_equal(srv->nworkers, NWORKERS);
    srv->rng = 42;
    srv->nsvcs = srv->conf->nservices;
    srv->svcs = calloc(srv->nsvcs, sizeof(*srv->svcs));
    assert_non_null(srv->svcs);
    for (i = 0; i < srv->nsvcs; i++) {
        srv->svcs[i] = calloc(1, sizeof(*srv->svcs[i]));
        assert_non_null(srv->svcs[i]);
        px_service_init(srv->svcs[i], srv, srv->cref, i);
        px_service_publish(srv->svcs[i], 1000, 1);
    }
    assert_int_equal(px_srv_listen(srv), 0);
    assert_int_equal(px_workers_start(srv), 0);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fx *f = *state;
    struct px_srv *srv = &f->srv;
    unsigned i;

    px_workers_free(srv);
    for (i = 0; i < srv->nsvcs; i++)
        px_service_free(srv->svcs[i]);
    free(srv->svcs);
    px_http_loop_free(srv);
    px_confref_put(srv->cref);
    event_base_free(srv->base);
    unlink(f->conf);
    rmdir(f->dir);
    free(f);
    return 0;
}

/* ---- jobs ------------------------------------------------------------- */

struct seen {
    unsigned runs;                   /* jobs run (one worker at a time writes) */
    pthread_t thread[NWORKERS];      /* by worker id */
    bool ran[NWORKERS];
    uint32_t weight[NWORKERS];       /* the replica's snapshot weight */
    uint64_t generation[NWORKERS];
    pthread_mutex_t mu;
};

static void
job_note(struct px_srv *w, void *arg)
{
    struct seen *s = arg;

    pthread_mutex_lock(&s->mu);
    s->runs++;
    s->thread[w->worker_id] = pthread_self();
    s->ran[w->worker_id] = true;
    s->weight[w->worker_id] = w->svcs[0]->snap->weight_bp;
    s->generation[w->worker_id] = w->svcs[0]->snap->generation;
    pthread_mutex_unlock(&s->mu);
}

static void
job_publish(struct px_srv *w, void *arg)
{
    const uint32_t *weight = arg;

    px_service_publish(w->svcs[0], *weight, 7);
}

static void
test_resolve(void **state)
{
    cpu_set_t set;

    (void)state;
    assert_int_equal(px_workers_resolve(1), 1);
    assert_int_equal(px_workers_resolve(5), 5);
    assert_int_equal(sched_getaffinity(0, sizeof(set), &set), 0);
    assert_int_equal(px_workers_resolve(0), (unsigned)CPU_COUNT(&set));
}

static void
test_run_on_every_worker_thread(void **state)
{
    struct fx *f = *state;
    struct seen s;
    unsigned k;

    memset(&s, 0, sizeof(s));
    pthread_mutex_init(&s.mu, NULL);
    px_workers_run(&f->srv, job_note, &s);
    assert_int_equal(s.runs, NWORKERS - 1);  /* returned after all of them */
    assert_false(s.ran[0]);                  /* the main replica is the caller's */
    for (k = 1; k < NWORKERS; k++) {
        assert_true(s.ran[k]);
        assert_false(pthread_equal(s.thread[k], pthread_self()));
        if (k > 1)
            assert_false(pthread_equal(s.thread[k], s.thread[k - 1]));
        /* every replica starts from the main one's snapshot */
        assert_int_equal(s.weight[k], 1000);
        assert_int_equal(s.generation[k], 1);
    }
    memset(&s.ran, 0, sizeof(s.ran));
    s.runs = 0;
    px_workers_run_each(&f->srv, job_note, &s);
    assert_int_equal(s.runs, NWORKERS - 1);
    pthread_mutex_destroy(&s.mu);
}

static void
test_publish_reaches_every_worker_before_return(void **state)
{
    struct fx *f = *state;
    uint32_t weight = 10000;
    struct seen s;
    unsigned k, round;

    memset(&s, 0, sizeof(s));
    pthread_mutex_init(&s.mu, NULL);
    for (round = 0; round < 50; round++) {
        weight = round % 2 ? 0 : 10000;
        px_workers_run(&f->srv, job_publish, &weight);
        px_workers_run(&f->srv, job_note, &s);
        for (k = 1; k < NWORKERS; k++) {
            assert_int_equal(s.weight[k], weight);
            assert_int_equal(s.generation[k], 7);
        }
    }
    pthread_mutex_destroy(&s.mu);
}

/* Worker k records k+1 outcomes on new (worker 1 answers 500s, the others
 * 200s), k+1 requests on new's first server, and pretends k open
 * connections. */
static void
job_record(struct px_srv *w, void *arg)
{
    struct px_service *svc = w->svcs[0];
    unsigned i, k = w->worker_id;

    (void)arg;
    for (i = 0; i <= k; i++)
        px_service_record(svc, RT_NEW, svc->servers[RT_NEW][0], k == 1 ? 500 : 200,
                          PX_E_NONE, 1000u * k);
    svc->servers[RT_NEW][0]->requests += k + 1;
    svc->stats[RT_NEW].requests += k + 1;
    svc->conns_active = k;
}

static void
job_forget_conns(struct px_srv *w, void *arg)
{
    (void)arg;
    w->svcs[0]->conns_active = 0;
}

static void
test_fold_adds_and_orders(void **state)
{
    struct fx *f = *state;
    struct px_service *svc = f->srv.svcs[0];
    struct hl_stats hs;
    uint64_t total = 0, ok = 0, bad = 0, conns = 0;
    unsigned k, i;

    /* one outcome of the main loop's own, before the workers' */
    px_service_record(svc, RT_NEW, svc->servers[RT_NEW][0], 200, PX_E_NONE, 50);
    svc->stats[RT_NEW].requests++;
    svc->servers[RT_NEW][0]->requests++;
    px_workers_run(&f->srv, job_record, NULL);
    for (k = 1; k < NWORKERS; k++) {
        total += k + 1;
        conns += k;
        if (k == 1)
            bad += k + 1;
        else
            ok += k + 1;
    }
    px_workers_fold(&f->srv);
    assert_int_equal(svc->stats[RT_NEW].requests, 1 + total);
    assert_int_equal(svc->stats[RT_NEW].by_class[0], 1 + ok);
    assert_int_equal(svc->stats[RT_NEW].by_class[3], bad);
    assert_int_equal(svc->servers[RT_NEW][0]->requests, 1 + total);
    assert_int_equal(svc->w_conns, conns);
    assert_int_equal(svc->nrecent, 1 + total);
    for (i = 1; i < svc->nrecent; i++)
        assert_true(svc->recent[i - 1].us <= svc->recent[i].us);
    hl_window_stats(&svc->window[RT_NEW], px_now_ms(&f->srv), &hs);
    assert_int_equal(hs.requests, 1 + total);
    assert_int_equal(hs.errors, bad);

    /* a second fold finds nothing new: the workers gave theirs away */
    px_workers_run(&f->srv, job_forget_conns, NULL);
    px_workers_fold(&f->srv);
    assert_int_equal(svc->stats[RT_NEW].requests, 1 + total);
    assert_int_equal(svc->servers[RT_NEW][0]->requests, 1 + total);
    assert_int_equal(svc->w_conns, 0);
    assert_int_equal(svc->nrecent, 1 + total);
    hl_window_stats(&svc->window[RT_NEW], px_now_ms(&f->srv), &hs);
    assert_int_equal(hs.requests, 1 + total);
    assert_int_equal(px_workers_accepted(&f->srv, 1), 0);
}

static void
job_drain(struct px_srv *w, void *arg)
{
    (void)arg;
    w->stopping = true;
    px_srv_stop_listening(w);
    px_worker_drained(w);
}

static void
test_drained(void **state)
{
    struct fx *f = *state;

    assert_false(px_workers_drained(&f->srv));
    px_workers_run(&f->srv, job_drain, NULL);
    assert_true(px_workers_drained(&f->srv));
    /* the main loop is woken; not stopping itself, it goes on */
    assert_int_equal(event_base_loop(f->srv.base, EVLOOP_NONBLOCK), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resolve),
        cmocka_unit_test_setup_teardown(test_run_on_every_worker_thread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_publish_reaches_every_worker_before_return,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_fold_adds_and_orders, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drained, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
