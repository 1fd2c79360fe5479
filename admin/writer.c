/*
 * admin/writer: see writer.h. One thread, one FIFO of jobs under a mutex,
 * a condition variable that wakes the thread, an eventfd that wakes the
 * main loop (as proxy/worker.c hands its jobs back). Completions are moved
 * from the thread's list to the main loop's in order and run there, never
 * on the thread.
 *
 * Workload: a few jobs a minute; a save or an append each, with an fsync
 * that takes milliseconds to hundreds of them on a busy disk.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/event.h>

#include "admin/audit.h"
#include "admin/store.h"
#include "admin/writer.h"
#include "lib/log.h"
#include "lib/xmalloc.h"

struct adm_wjob {
    struct adm_wjob *next;
    enum adm_wjob_kind kind;
    char *file;                  /* owned; NULL for a MARK */
    char *data;                  /* owned */
    size_t len;                  /* bytes of <data> */
    enum adm_wjob_result res;    /* set by the thread */
    char err[512];               /* set by the thread */
    bool written;                /* a SAVE written already, ahead of its turn, in
                                  * place of an older one (run_save()) */
    adm_wjob_done_fn *done;
    void *arg;                   /* borrowed: <done>'s */
};

struct adm_writer {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t wake;         /* the thread: a job, or stop */
    pthread_cond_t idle;         /* adm_writer_drain(): a job finished */
    /* under <mu> */
    struct adm_wjob *todo, **todo_tail;     /* submitted, not started */
    struct adm_wjob *done, **done_tail;     /* finished, completion not run */
    unsigned busy;               /* jobs submitted and not moved to <done> yet */
    bool audit_stopped;          /* an append failed: later appends are skipped */
    bool stop;
    /* main loop only */
    struct adm_wjob *ready;      /* moved from <done>, completions being run */
    int efd;                     /* owned: eventfd, "a job finished" */
    struct event *ev;            /* owned: <efd>'s event */
    bool is_armed;               /* <ev> added: with the first job, so that a
                                  * writer that never writes adds no event */
};

/* Does <j>'s I/O (the thread, without the lock); an append is skipped when
 * <skip_audit>. */
static void
run_job(struct adm_wjob *j, bool skip_audit)
{
    int rc = 0;

    j->err[0] = '\0';
    switch (j->kind) {
    case ADM_WJ_SAVE:
        rc = adm_store_write(j->file, j->data, j->len, j->err, sizeof(j->err));
        break;
    case ADM_WJ_AUDIT:
        if (skip_audit) {
            snprintf(j->err, sizeof(j->err), "an earlier entry could not be written");
            j->res = ADM_WJ_SKIPPED;
            return;
        }
        rc = adm_audit_write(j->file, j->data, j->len, j->err, sizeof(j->err));
        break;
    case ADM_WJ_MARK:
        break;
    }
    j->res = rc == 0 ? ADM_WJ_OK : ADM_WJ_FAILED;
}

/* The newest SAVE of <j>'s file still queued after <j> (under the lock),
 * or NULL. */
static struct adm_wjob *
newest_save(struct adm_wjob *j, struct adm_wjob *todo)
{
    struct adm_wjob *k, *newest = NULL;

    for (k = todo; k != NULL; k = k->next) {
        if (k->kind == ADM_WJ_SAVE && !k->written && strcmp(k->file, j->file) == 0)
            newest = k;
    }
    return newest;
}

/* The SAVEs of <j>'s file queued in <todo> up to <newer>, whose snapshot
 * was written in <j>'s turn (under the lock): covered by it, with <j>'s
 * outcome. Those submitted since are newer still: written in their turn. */
static void
mark_covered(struct adm_wjob *todo, const struct adm_wjob *j, const struct adm_wjob *newer)
{
    struct adm_wjob *k;

    for (k = todo; k != NULL; k = k->next) {
        if (k->kind == ADM_WJ_SAVE && !k->written && strcmp(k->file, j->file) == 0) {
            k->written = true;
            k->res = j->res;
            memcpy(k->err, j->err, sizeof(k->err));
        }
        if (k == newer)
            break;
    }
}

/* Does SAVE <j> (the thread, without the lock): when a newer snapshot of
 * the same file, <newer> (NULL: none), is queued already, that one is
 * written instead, now, and every queued save of the file up to it
 * reports its outcome; none is written again in its turn (mark_covered()).
 * A file replaced whole needs only its newest snapshot: a burst of changes
 * costs one save, not one each. The newer snapshot thereby lands before
 * the audit entries queued between the two;
 * a crash then leaves generations in the file whose entries are missing,
 * which the next start finds and covers ("recovered", persist.c). */
static void
run_save(struct adm_wjob *j, struct adm_wjob *newer)
{
    if (newer == NULL) {
        run_job(j, false);
        return;
    }
    run_job(newer, false);
    j->res = newer->res;
    memcpy(j->err, newer->err, sizeof(j->err));
}

static void *
writer_main(void *arg)
{
    struct adm_writer *w = arg;
    struct adm_wjob *j, *newer;
    uint64_t one = 1;
    bool skip;

    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (w->todo == NULL && !w->stop)
            pthread_cond_wait(&w->wake, &w->mu);
        if (w->todo == NULL)
            break;                     /* stop, and nothing left */
        j = w->todo;
        w->todo = j->next;
        if (w->todo == NULL)
            w->todo_tail = &w->todo;
        j->next = NULL;
        skip = w->audit_stopped;
        newer = j->kind == ADM_WJ_SAVE && !j->written ? newest_save(j, w->todo) : NULL;
        pthread_mutex_unlock(&w->mu);

        /* the disk, without the lock */
        if (j->kind != ADM_WJ_SAVE)
            run_job(j, skip);
        else if (!j->written)
            run_save(j, newer);

        pthread_mutex_lock(&w->mu);
        if (newer != NULL)
            mark_covered(w->todo, j, newer);   /* not written again */
        if (j->kind == ADM_WJ_AUDIT && j->res != ADM_WJ_OK)
            w->audit_stopped = true;
        *w->done_tail = j;
        w->done_tail = &j->next;
        w->busy--;
        pthread_cond_broadcast(&w->idle);
        /* an eventfd write of 1 cannot fail short of an overflow at 2^64-1 */
        if (write(w->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
            log_at(LL_WARN, "control", 0, "writer: eventfd: %s", strerror(errno));
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* Runs the completions of the finished jobs, oldest first. */
static void
complete(struct adm_writer *w)
{
    struct adm_wjob *j, **tail;

    for (;;) {
        pthread_mutex_lock(&w->mu);
        /* appended after what an outer call is still running */
        for (tail = &w->ready; *tail != NULL; tail = &(*tail)->next)
            ;
        *tail = w->done;
        w->done = NULL;
        w->done_tail = &w->done;
        if (w->ready == NULL) {
            /* every completion seen: appends may go on again */
            if (w->busy == 0)
                w->audit_stopped = false;
            pthread_mutex_unlock(&w->mu);
            return;
        }
        pthread_mutex_unlock(&w->mu);
        j = w->ready;
        w->ready = j->next;
        if (j->done != NULL)
            j->done(j->arg, j->res, j->err);
        free(j->file);
        free(j->data);
        free(j);
    }
}

static void
on_writer_done(evutil_socket_t fd, short what, void *arg)
{
    uint64_t n;

    (void)what;
    if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
        log_at(LL_WARN, "control", 0, "writer: eventfd: %s", strerror(errno));
    complete(arg);
}

struct adm_writer *
adm_writer_new(struct event_base *base, char *err, size_t errlen)
{
    struct adm_writer *w = xcalloc(1, sizeof(*w));
    int rc;

    w->todo_tail = &w->todo;
    w->done_tail = &w->done;
    w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->efd < 0) {
        snprintf(err, errlen, "eventfd: %s", strerror(errno));
        free(w);
        return NULL;
    }
    w->ev = event_new(base, w->efd, EV_READ | EV_PERSIST, on_writer_done, w);
    if (w->ev == NULL) {
        snprintf(err, errlen, "cannot make the writer's event");
        goto fail;
    }
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->wake, NULL);
    pthread_cond_init(&w->idle, NULL);
    if ((rc = pthread_create(&w->thread, NULL, writer_main, w)) != 0) {
        snprintf(err, errlen, "pthread_create: %s", strerror(rc));
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->wake);
        pthread_cond_destroy(&w->idle);
        goto fail;
    }
    return w;

fail:
    if (w->ev != NULL)
        event_free(w->ev);
    close(w->efd);
    free(w);
    return NULL;
}

void
adm_writer_submit(struct adm_writer *w, enum adm_wjob_kind kind, const char *file,
                  char *data, size_t len, adm_wjob_done_fn *done, void *arg)
{
    struct adm_wjob *j = xcalloc(1, sizeof(*j));

    /* without the event, completions would come only from a drain */
    if (!w->is_armed && event_add(w->ev, NULL) != 0)
        log_at(LL_ERR, "control", 0, "writer: cannot add its event: completions wait for "
               "the next write made on the loop");
    else
        w->is_armed = true;
    j->kind = kind;
    j->file = file != NULL ? xstrdup(file) : NULL;
    j->data = data;
    j->len = len;
    j->done = done;
    j->arg = arg;
    pthread_mutex_lock(&w->mu);
    *w->todo_tail = j;
    w->todo_tail = &j->next;
    w->busy++;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->mu);
}

void
adm_writer_drain(struct adm_writer *w)
{
    if (w == NULL)
        return;
    for (;;) {
        pthread_mutex_lock(&w->mu);
        while (w->busy > 0)
            pthread_cond_wait(&w->idle, &w->mu);
        pthread_mutex_unlock(&w->mu);
        complete(w);
        if (adm_writer_idle(w))
            return;
    }
}

bool
adm_writer_idle(const struct adm_writer *w)
{
    bool idle;

    if (w == NULL)
        return true;
    pthread_mutex_lock((pthread_mutex_t *)&w->mu);
    idle = w->busy == 0 && w->done == NULL;
    pthread_mutex_unlock((pthread_mutex_t *)&w->mu);
    return idle && w->ready == NULL;
}

void
adm_writer_free(struct adm_writer *w)
{
    if (w == NULL)
        return;
    adm_writer_drain(w);
    pthread_mutex_lock(&w->mu);
    w->stop = true;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->wake);
    pthread_cond_destroy(&w->idle);
    event_free(w->ev);
    close(w->efd);
    free(w);
}
