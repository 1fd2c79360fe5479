/*
 * worker: the worker threads of `workers: N`. The main loop (worker 0) runs
 * the data plane and the control plane; workers 1..N-1 each run an event
 * loop of their own over a replica of the data plane (struct px_srv: its own
 * services, server runtimes, pools, counters, windows and SO_REUSEPORT
 * listeners), so no request ever takes a lock or touches another thread's
 * memory.
 *
 * The main loop reaches a worker only through a job: a function run on the
 * worker's thread, between two of its events, while the main loop waits for
 * it to finish (px_workers_run). That is how a weight change, a health
 * verdict, a blue-green switch, a reload and a shutdown reach every worker
 * before the command that caused them returns, and how the tick collects the
 * workers' outcomes (px_workers_fold). The routing snapshot of each replica
 * is therefore swapped by its own thread between events: a snapshot is
 * never read by two threads, and the job's completion is its grace period.
 *
 * Lifetimes: workers are started after the main replica is built and
 * published, and stopped (px_workers_free) before it is freed; a worker
 * frees its own replica on its own thread, after its loop ends.
 */
#ifndef CUTOVER_PROXY_WORKER_H
#define CUTOVER_PROXY_WORKER_H

#include <stdbool.h>
#include <stdint.h>

struct px_srv;
struct event_base;

/* A job: runs on worker <w>'s thread with its replica. */
typedef void (*px_job_fn)(struct px_srv *w, void *arg);

/* How many loops `workers: <n>` means: <n>, or for 0 the CPUs this process
 * may run on (sched_getaffinity; a daemon pinned to one CPU gets one). */
unsigned px_workers_resolve(unsigned n);

/* Starts workers 1..main->nworkers-1, each with a replica of <main>'s
 * services as they stand (same config generation, server verdicts, weights,
 * latches) and its own listeners on every address. 0, or -1 (logged; the
 * workers started are stopped again). Nothing to do with one worker. */
int px_workers_start(struct px_srv *main);

/* Runs <fn>(<replica>, <arg>) on every worker at once and returns when all
 * have finished. The main replica is not included. */
void px_workers_run(struct px_srv *main, px_job_fn fn, void *arg);

/* The same, one worker after the other: for jobs that write into the main
 * replica (nothing else touches it meanwhile: the main loop waits). */
void px_workers_run_each(struct px_srv *main, px_job_fn fn, void *arg);

/* Brings the workers' outcomes into the main replica: counters, per-server
 * counts and both windows are added (and reset in the worker), the
 * outcomes recorded since the last fold are merged into svc->recent in time
 * order, and w_conns / w_idle are set to the workers' current figures.
 * Status, metrics, the policy tick and the plan read the main replica after
 * this. Nothing to do with one worker. */
void px_workers_fold(struct px_srv *main);

/* Connections worker <worker> (0: the main loop) accepted, as of the last
 * px_workers_fold(). */
uint64_t px_workers_accepted(struct px_srv *main, unsigned worker);

/* True when every worker has drained (stopping, no connection left). */
bool px_workers_drained(struct px_srv *main);

/* A worker's replica drained (called on its thread): wakes the main loop,
 * which exits once it and every worker are done. */
void px_worker_drained(struct px_srv *w);

/* Ends every worker's loop, frees their replicas (closing what is still
 * open) and joins the threads. NULL-safe. */
void px_workers_free(struct px_srv *main);

#endif
