/*
 * fleetbench: the measurements of docs/fleet.md ("Figures") on a private
 * PostgreSQL cluster (tests/harness/pg.h, with durable commits: fsync and
 * synchronous_commit on) and real cutoverd instances, test backends and
 * cutoverctl. Run by tests/bench/fleet/run.sh (make bench-fleet), never
 * by make test. Each part prints its figures:
 *
 *   propagation  three instances A, B, C: the time from `cutoverctl weight`
 *                returning on A to the new weight routing requests on B and
 *                C (two threads keep sending requests to B and C and note
 *                the first answer from the side the weight now sends them
 *                to), p50/p99 over --changes changes (0 -> 100 raises and
 *                100 -> 0 lowerings alternate), idle, then under pgbench's
 *                write load on the same database;
 *   breach       A's new backend fails: from the answer that makes A's
 *                min_requests-th error to B and C answering from legacy
 *                (A's own rollback, written, notified, applied); the
 *                instances run without the canary shield (on by default,
 *                it would answer those errors from legacy, and the bench
 *                could not see them);
 *   takeover     the leader killed (kill -9) idle, killed while its
 *                statement waits on a row the bench holds locked, and
 *                stopped (SIGSTOP: a hung leader, whose session stays;
 *                replaced through its lease): until another instance says
 *                it leads;
 *   lost         --lost weight changes on A while a killer terminates a
 *                random store session (every instance's listener) every
 *                0.5..3 s (a session killed again before it stayed up 5 s
 *                reconnects later each time: lib/pg's backoff), the changes
 *                15 ms apart: every change acknowledged by A must reach B
 *                and C (weight and generation) within 30 s, else it is lost;
 *   sim          --sim N[,N...] instances (one worker, one service each) on
 *                one cluster: propagation to all N (from their "applied"
 *                log lines), the database's statements and connections per
 *                instance per second (pg_stat_statements), the leader's
 *                read (database time and its own parse-and-sum time).
 *
 * usage: fleetbench [--only PART] [--changes N] [--trials N] [--lost N]
 *                   [--sim N,N,...]
 */
#include <ctype.h>
#include <errno.h>
#include <glob.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "tests/harness/harness.h"
#include "tests/harness/pg.h"

#define MAXI 64

struct inst {
    char name[16];
    char dir[256], sock[320], conf[320], log[320], state[320];
    int port;
    pid_t pid;
    int ctl;                     /* a kept admin connection, -1 when none */
    char *rbuf;                  /* its reply bytes not consumed yet */
    size_t rlen;
};

static struct pgh *pg;
static char conninfo[512], work[256];
static struct inst in[MAXI];
static int legacy_port, new_port[2];

/* ---- clocks and figures ------------------------------------------------ */

static double
mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static double
wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int
cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile <p> of <n> values (sorted here). */
static double
pct(double *v, unsigned n, double p)
{
    unsigned r;

    if (n == 0)
        return NAN;
    qsort(v, n, sizeof(*v), cmp_d);
    r = (unsigned)ceil(p / 100.0 * n);
    return v[r == 0 ? 0 : r - 1];
}

static void
report(const char *what, double *v, unsigned n)
{
    double max;

    if (n == 0) {
        printf("  %-58s no samples\n", what);
        return;
    }
    max = pct(v, n, 100);
    printf("  %-58s n=%-5u p50 %7.2f ms  p99 %7.2f ms  max %7.2f ms\n", what, n,
           pct(v, n, 50), pct(v, n, 99), max);
}

static void
die(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fputs("fleetbench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

/* ---- the database ------------------------------------------------------ */

static PGconn *
db(void)
{
    PGconn *c = PQconnectdb(conninfo);

    if (PQstatus(c) != CONNECTION_OK)
        die("connect: %s", PQerrorMessage(c));
    return c;
}

/* The first value of <sql> as a number (NAN when none). */
static double
db_num(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    double v = NAN;

    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0 && !PQgetisnull(r, 0, 0))
        v = strtod(PQgetvalue(r, 0, 0), NULL);
    else if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fprintf(stderr, "fleetbench: %s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    return v;
}

static void
db_exec(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);

    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        fprintf(stderr, "fleetbench: %s: %s", sql, PQerrorMessage(c));
    PQclear(r);
}

/* ---- instances --------------------------------------------------------- */

static void
inst_conf(struct inst *x, const char *fleet, int new_be, unsigned min_requests)
{
    char text[4096];

    snprintf(text, sizeof(text),
             "{\n"
             "  \"admin\": { \"socket\": \"%s\" },\n"
             "  \"state\": { \"file\": \"%s\" },\n"
             "  \"audit\": { \"file\": \"%s/audit.jsonl\" },\n"
             "  \"workers\": 1,\n"
             "  \"store\": { \"postgres\": { \"conninfo\": \"%s\", \"fleet\": \"%s\", "
             "\"instance\": \"%s\" } },\n"
             "  \"services\": [{\n"
             "    \"name\": \"web\", \"mode\": \"http\", \"listen\": [\"127.0.0.1:%d\"],\n"
             "    \"legacy\": { \"servers\": [\"127.0.0.1:%d\"] },\n"
             "    \"new\": { \"servers\": [\"127.0.0.1:%d\"] },\n"
             "    \"rollback\": { \"min_requests\": %u, \"window_s\": 10 },\n"
             "    \"shield\": { \"enabled\": false }\n"
             "  }]\n"
             "}\n", x->sock, x->state, x->dir, conninfo, fleet, x->name, x->port, legacy_port,
             new_be, min_requests);
    if (h_write_file(x->conf, text) != 0)
        die("cannot write %s", x->conf);
}

static void
inst_init(struct inst *x, const char *name)
{
    memset(x, 0, sizeof(*x));
    snprintf(x->name, sizeof(x->name), "%s", name);
    snprintf(x->dir, sizeof(x->dir), "%.200s/%.15s", work, name);
    if (mkdir(x->dir, 0700) != 0 && errno != EEXIST)
        die("mkdir %s: %s", x->dir, strerror(errno));
    snprintf(x->sock, sizeof(x->sock), "%s/admin.sock", x->dir);
    snprintf(x->conf, sizeof(x->conf), "%s/cutover.json", x->dir);
    snprintf(x->log, sizeof(x->log), "%s/cutoverd.log", x->dir);
    snprintf(x->state, sizeof(x->state), "%s/state.json", x->dir);
    x->port = h_free_port();
    x->ctl = -1;
}

static void
inst_start(struct inst *x)
{
    char *argv[] = { (char *)h_bin("cutoverd"), "-c", x->conf, NULL };

    x->pid = h_spawn(argv, x->log);
    if (x->pid < 0 || h_wait_unix(x->sock, 20000) < 0 || h_wait_port(x->port, 20000) < 0) {
        h_dump_file(x->log, 3000);
        die("instance %s did not start", x->name);
    }
}

static void
ctl_close(struct inst *x)
{
    if (x->ctl >= 0)
        close(x->ctl);
    x->ctl = -1;
    free(x->rbuf);
    x->rbuf = NULL;
    x->rlen = 0;
}

/* One request line on the kept admin connection; the reply parsed (caller
 * decrefs), NULL when the instance does not answer. */
static json_t *
ctl_call(struct inst *x, const char *req)
{
    char buf[65536], *nl;
    json_t *j;
    ssize_t k;
    int attempt;

    for (attempt = 0; attempt < 2; attempt++) {
        if (x->ctl < 0) {
            struct sockaddr_un sa = { .sun_family = AF_UNIX };

            snprintf(sa.sun_path, sizeof(sa.sun_path), "%.107s", x->sock);
            if ((x->ctl = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
                return NULL;
            if (connect(x->ctl, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
                ctl_close(x);
                return NULL;
            }
        }
        if (write(x->ctl, req, strlen(req)) != (ssize_t)strlen(req)
            || write(x->ctl, "\n", 1) != 1) {
            ctl_close(x);
            continue;
        }
        for (;;) {
            if (x->rbuf != NULL && (nl = memchr(x->rbuf, '\n', x->rlen)) != NULL) {
                size_t len = (size_t)(nl - x->rbuf) + 1;

                j = json_loadb(x->rbuf, len - 1, 0, NULL);
                memmove(x->rbuf, x->rbuf + len, x->rlen - len);
                x->rlen -= len;
                return j;
            }
            k = read(x->ctl, buf, sizeof(buf));
            if (k <= 0) {
                ctl_close(x);
                break;
            }
            x->rbuf = realloc(x->rbuf, x->rlen + (size_t)k);
            memcpy(x->rbuf + x->rlen, buf, (size_t)k);
            x->rlen += (size_t)k;
        }
    }
    return NULL;
}

/* status: weight (percent), generation, leader; false when no answer. */
static bool
inst_status(struct inst *x, double *weight, long long *gen, bool *leader)
{
    json_t *r = ctl_call(x, "{\"cmd\":\"status\"}");
    json_t *s = r != NULL ? json_array_get(json_object_get(r, "services"), 0) : NULL;

    if (s == NULL) {
        json_decref(r);
        return false;
    }
    if (weight != NULL)
        *weight = json_number_value(json_object_get(s, "weight"));
    if (gen != NULL)
        *gen = json_integer_value(json_object_get(s, "generation"));
    if (leader != NULL)
        *leader = json_is_true(json_object_get(json_object_get(r, "store"), "leader"));
    json_decref(r);
    return true;
}

/* `cutoverctl -s SOCK weight P` (the real CLI); its exit code. */
static int
cli_weight(struct inst *x, int percent)
{
    char out[4096], p[16];

    snprintf(p, sizeof(p), "%d", percent);
    return h_ctl(x->sock, out, sizeof(out), "weight", p, (char *)NULL);
}

/* The index of the instance among the first <n> that leads, waiting up
 * to <ms>; -1 when none. */
static int
leader_among(int n, int skip, int ms)
{
    double end = mono_ms() + ms;
    bool l;
    int i;

    do {
        for (i = 0; i < n; i++)
            if (i != skip && inst_status(&in[i], NULL, NULL, &l) && l)
                return i;
        usleep(2000);
    } while (mono_ms() < end);
    return -1;
}

/* ---- observers: requests to one instance, noting the first answer from
 * the side a change sends them to ------------------------------------- */

enum { SIDE_LEGACY = 0, SIDE_NEW = 1 };

struct obs {
    int port;
    pthread_t th;
    atomic_int stop;
    atomic_int want;             /* the side to watch for, -1 none */
    _Atomic double seen;         /* mono_ms() of its first answer, 0 before */
    atomic_ulong answers;
};

/* One GET / on <fd>: the X-Backend side, or -1 (the connection is done). */
static int
one_request(int fd)
{
    static const char req[] = "GET / HTTP/1.1\r\nHost: bench\r\n\r\n";
    char buf[8192];
    size_t len = 0;
    char *end = NULL, *cl, *be;
    long body = 0;
    ssize_t k;

    if (write(fd, req, sizeof(req) - 1) != (ssize_t)(sizeof(req) - 1))
        return -1;
    for (;;) {
        k = read(fd, buf + len, sizeof(buf) - 1 - len);
        if (k <= 0)
            return -1;
        len += (size_t)k;
        buf[len] = '\0';
        if (end == NULL && (end = strstr(buf, "\r\n\r\n")) != NULL) {
            cl = strstr(buf, "\r\nContent-Length:");
            body = cl != NULL && cl < end ? strtol(cl + 17, NULL, 10) : 0;
        }
        if (end != NULL && len >= (size_t)(end - buf) + 4 + (size_t)body)
            break;
        if (len >= sizeof(buf) - 1)
            return -1;
    }
    be = strstr(buf, "\r\nX-Backend: ");
    if (be == NULL || be > end)
        return -2;                     /* an answer of the proxy's own */
    return strncmp(be + 13, "new", 3) == 0 ? SIDE_NEW : SIDE_LEGACY;
}

static void *
obs_main(void *arg)
{
    struct obs *o = arg;
    int fd = -1, side;

    while (!atomic_load(&o->stop)) {
        if (fd < 0 && (fd = h_connect(o->port)) < 0) {
            usleep(1000);
            continue;
        }
        side = one_request(fd);
        if (side == -1) {
            close(fd);
            fd = -1;
            continue;
        }
        atomic_fetch_add(&o->answers, 1);
        if (side >= 0 && side == atomic_load(&o->want) && atomic_load(&o->seen) == 0)
            atomic_store(&o->seen, mono_ms());
    }
    if (fd >= 0)
        close(fd);
    return NULL;
}

static void
obs_start(struct obs *o, int port)
{
    memset(o, 0, sizeof(*o));
    o->port = port;
    atomic_store(&o->want, -1);
    if (pthread_create(&o->th, NULL, obs_main, o) != 0)
        die("pthread_create");
}

static void
obs_stop(struct obs *o)
{
    atomic_store(&o->stop, 1);
    pthread_join(o->th, NULL);
}

static void
obs_arm(struct obs *o, int side)
{
    atomic_store(&o->seen, 0.0);
    atomic_store(&o->want, side);
}

/* Waits up to <ms> until every observer saw its side; the latest time,
 * or 0 on a timeout. */
static double
obs_wait(struct obs *o, unsigned n, int ms)
{
    double end = mono_ms() + ms, latest;
    unsigned i;

    for (;;) {
        latest = 0;
        for (i = 0; i < n; i++) {
            double s = atomic_load(&o[i].seen);

            if (s == 0) {
                latest = -1;
                break;
            }
            if (s > latest)
                latest = s;
        }
        if (latest > 0)
            return latest;
        if (mono_ms() > end)
            return 0;
        usleep(200);
    }
}

/* ---- pgbench's write load ---------------------------------------------- */

static pid_t load_pid;

static const char *
pgbench_path(void)
{
    static char path[512];
    const char *bindir = getenv("CUTOVER_PG_BINDIR");
    glob_t g;

    if (bindir != NULL && bindir[0] != '\0') {
        snprintf(path, sizeof(path), "%s/pgbench", bindir);
        return path;
    }
    if (glob("/usr/lib/postgresql/*/bin/pgbench", 0, NULL, &g) != 0 || g.gl_pathc == 0)
        die("no pgbench under /usr/lib/postgresql/*/bin (Debian's postgresql package)");
    snprintf(path, sizeof(path), "%s", g.gl_pathv[g.gl_pathc - 1]);
    globfree(&g);
    return path;
}

static void
load_start(void)
{
    char log[512];
    char *init[] = { (char *)pgbench_path(), "-i", "-q", "-s", "10", "-h",
                     (char *)pgh_host(pg), "-U", "postgres", "postgres", NULL };
    char *run[] = { (char *)pgbench_path(), "-c", "8", "-j", "2", "-T", "3600", "-h",
                    (char *)pgh_host(pg), "-U", "postgres", "postgres", NULL };
    pid_t p;

    snprintf(log, sizeof(log), "%s/pgbench.log", work);
    p = h_spawn(init, log);
    if (p < 0 || h_wait_exit(p, 120000) != 0)
        die("pgbench -i failed (%s)", log);
    load_pid = h_spawn(run, log);
    if (load_pid < 0)
        die("pgbench did not start");
    sleep(2);
}

static void
load_stop(void)
{
    if (load_pid > 0)
        h_stop(load_pid, SIGTERM, 5000);
    load_pid = 0;
}

/* ---- parts ------------------------------------------------------------- */

static void
three_start(const char *fleet, bool own_new_for_a)
{
    static const char *const names[3] = { "a", "b", "c" };
    int i;

    for (i = 0; i < 3; i++) {
        char name[32];

        snprintf(name, sizeof(name), "%.8s-%s", fleet, names[i]);
        inst_init(&in[i], name);
        inst_conf(&in[i], fleet, own_new_for_a && i == 0 ? new_port[1] : new_port[0], 5);
        inst_start(&in[i]);
    }
    if (leader_among(3, -1, 10000) < 0)
        die("no leader among the three");
}

static void
three_stop(void)
{
    int i;

    for (i = 0; i < 3; i++) {
        ctl_close(&in[i]);
        if (in[i].pid > 0)
            h_stop(in[i].pid, SIGTERM, 10000);
        in[i].pid = 0;
    }
}

/* The propagation of <n> changes made on A, seen routing on B and C. */
static void
propagation(unsigned n, const char *label)
{
    struct obs o[2];
    double *rr = calloc(n, sizeof(double)), *rs = calloc(n, sizeof(double));
    double *lr = calloc(n, sizeof(double)), *ls = calloc(n, sizeof(double));
    unsigned nr = 0, nl = 0, i, early_r = 0, early_l = 0, missed = 0;
    char what[128];

    obs_start(&o[0], in[1].port);
    obs_start(&o[1], in[2].port);
    if (cli_weight(&in[0], 0) != 0)
        die("weight 0 on a: %s", h_ctl_err());
    usleep(300000);
    for (i = 0; i < n; i++) {
        bool raise = i % 2 == 0;
        double t0, t1, seen;

        obs_arm(&o[0], raise ? SIDE_NEW : SIDE_LEGACY);
        obs_arm(&o[1], raise ? SIDE_NEW : SIDE_LEGACY);
        t0 = mono_ms();
        if (cli_weight(&in[0], raise ? 100 : 0) != 0) {
            fprintf(stderr, "fleetbench: weight on a refused: %s", h_ctl_err());
            usleep(200000);
            continue;
        }
        t1 = mono_ms();
        seen = obs_wait(o, 2, 5000);
        if (seen == 0) {
            missed++;
            continue;
        }
        if (raise) {
            rr[nr] = seen > t1 ? seen - t1 : 0;
            early_r += seen <= t1;
            rs[nr++] = seen - t0;
        } else {
            lr[nl] = seen > t1 ? seen - t1 : 0;
            early_l += seen <= t1;
            ls[nl++] = seen - t0;
        }
    }
    obs_stop(&o[0]);
    obs_stop(&o[1]);
    printf("propagation, %s (%u changes made with cutoverctl on a, seen routing on b and "
           "c; %lu and %lu answers observed)\n", label, n,
           (unsigned long)atomic_load(&o[0].answers), (unsigned long)atomic_load(&o[1].answers));
    snprintf(what, sizeof(what), "raise 0 -> 100, from cutoverctl's return (%u before it)",
             early_r);
    report(what, rr, nr);
    report("raise 0 -> 100, from cutoverctl's start", rs, nr);
    snprintf(what, sizeof(what), "lower 100 -> 0, from cutoverctl's return (%u before it)",
             early_l);
    report(what, lr, nl);
    report("lower 100 -> 0, from cutoverctl's start", ls, nl);
    {
        double *all = calloc(nr + nl, sizeof(double));

        memcpy(all, rr, nr * sizeof(double));
        memcpy(all + nr, lr, nl * sizeof(double));
        report("every change, from cutoverctl's return", all, nr + nl);
        free(all);
    }
    if (missed > 0)
        printf("  %u changes not seen on both within 5 s\n", missed);
    free(rr);
    free(rs);
    free(lr);
    free(ls);
}

/* A's own breach to weight 0 on all. */
static void
breach(unsigned trials)
{
    struct obs o[2];
    double *all = calloc(trials, sizeof(double)), *own = calloc(trials, sizeof(double));
    unsigned n = 0, t;

    obs_start(&o[0], in[1].port);
    obs_start(&o[1], in[2].port);
    for (t = 0; t < trials; t++) {
        double t_breach = 0, t_a = 0, seen;
        int fd = -1, errors = 0, side, k;
        char q[64];

        if (cli_weight(&in[0], 100) != 0)
            die("weight 100 on a: %s", h_ctl_err());
        obs_arm(&o[0], SIDE_NEW);
        obs_arm(&o[1], SIDE_NEW);
        if (obs_wait(o, 2, 5000) == 0)
            die("b and c do not route to new");
        usleep(200000);
        obs_arm(&o[0], SIDE_LEGACY);
        obs_arm(&o[1], SIDE_LEGACY);
        snprintf(q, sizeof(q), "error_rate=1&seed=%u", t + 1);
        if (h_backend_set(new_port[1], q) != 0)
            die("backend set");
        for (k = 0; k < 100000 && t_a == 0; k++) {
            if (fd < 0 && (fd = h_connect(in[0].port)) < 0)
                die("connect to a");
            side = one_request(fd);
            if (side == -1) {
                close(fd);
                fd = -1;
                continue;
            }
            if (side == SIDE_NEW && ++errors == 5 && t_breach == 0)
                t_breach = mono_ms();  /* the answer that makes min_requests errors */
            if (side == SIDE_LEGACY && t_breach > 0)
                t_a = mono_ms();
        }
        if (fd >= 0)
            close(fd);
        seen = obs_wait(o, 2, 5000);
        h_backend_set(new_port[1], "reset=1");
        if (t_breach == 0 || t_a == 0 || seen == 0) {
            fprintf(stderr, "fleetbench: breach trial %u not complete\n", t);
            continue;
        }
        all[n] = seen - t_breach;
        own[n++] = t_a - t_breach;
        usleep(300000);
    }
    obs_stop(&o[0]);
    obs_stop(&o[1]);
    printf("breach on one instance (min_requests 5; a's new backend answers 500)\n");
    report("to a answering from legacy (its own rollback)", own, n);
    report("to b and c answering from legacy (written, notified)", all, n);
    free(all);
    free(own);
}

/* The leader stopped (SIGSTOP): another ends its session once its lease
 * has expired. Woken, it finds its session ended and follows; the next
 * trial waits for one leader among the three again. */
static void
takeover_stopped(unsigned trials, double *ms, unsigned *n)
{
    unsigned t;

    for (t = 0; t < trials; t++) {
        int L = leader_among(3, -1, 5000), L2;
        double t0;

        if (L < 0)
            die("no leader");
        kill(in[L].pid, SIGSTOP);
        t0 = mono_ms();
        ctl_close(&in[L]);
        L2 = leader_among(3, L, 10000);
        if (L2 >= 0)
            ms[(*n)++] = mono_ms() - t0;
        kill(in[L].pid, SIGCONT);
        if (leader_among(3, -1, 10000) < 0)
            die("no single leader after the stopped one woke");
        usleep(1500000);
    }
}

/* The leader killed, idle or mid-statement, and stopped, <trials> times
 * each. */
static void
takeover(unsigned trials)
{
    double *idle = calloc(trials, sizeof(double)), *mid = calloc(trials, sizeof(double));
    double *stopped = calloc(trials, sizeof(double));
    unsigned ni = 0, nm = 0, ns = 0, t;
    int mode;

    for (mode = 0; mode < 2; mode++) {
        for (t = 0; t < trials; t++) {
            PGconn *lock = NULL;
            int L = leader_among(3, -1, 5000), L2;
            double t0;

            if (L < 0)
                die("no leader");
            if (mode == 1) {
                char pid[32], sql[256];
                PGresult *r;
                double end = mono_ms() + 3000;
                PGconn *c = db();

                snprintf(pid, sizeof(pid), "%.0f", db_num(c, "SELECT pid FROM pg_locks WHERE "
                         "locktype = 'advisory' AND granted AND classid = 1668641910 AND "
                         "objsubid = 2"));
                lock = db();
                db_exec(lock, "BEGIN");
                r = PQexec(lock, "SELECT 1 FROM cutover_leader FOR UPDATE");
                PQclear(r);
                snprintf(sql, sizeof(sql), "SELECT count(*) FROM pg_stat_activity WHERE pid "
                         "= %s AND wait_event_type = 'Lock'", pid);
                while (db_num(c, sql) != 1 && mono_ms() < end)
                    usleep(2000);
                PQfinish(c);
            }
            kill(in[L].pid, SIGKILL);
            t0 = mono_ms();
            ctl_close(&in[L]);
            L2 = leader_among(3, L, 10000);
            if (L2 >= 0) {
                if (mode == 0)
                    idle[ni++] = mono_ms() - t0;
                else
                    mid[nm++] = mono_ms() - t0;
            }
            if (lock != NULL) {
                db_exec(lock, "COMMIT");
                PQfinish(lock);
            }
            h_wait_exit(in[L].pid, 5000);
            inst_start(&in[L]);
            usleep(1500000);
        }
    }
    takeover_stopped(trials, stopped, &ns);
    printf("leader takeover (kill -9 or SIGSTOP of the leader until another says it "
           "leads)\n");
    report("killed idle", idle, ni);
    report("killed while its statement waits on a locked row", mid, nm);
    report("stopped (SIGSTOP; its lease expires, its session is ended)", stopped, ns);
    free(idle);
    free(mid);
    free(stopped);
}

/* The killer of the "lost" part: terminates a random store session. */
static atomic_int killer_stop;
static atomic_uint kills;

static void *
killer_main(void *arg)
{
    PGconn *c = db();
    unsigned seed = 7;

    (void)arg;
    while (!atomic_load(&killer_stop)) {
        unsigned ms = 500 + (unsigned)(rand_r(&seed) % 2500), slept;

        for (slept = 0; slept < ms && !atomic_load(&killer_stop); slept += 20)
            usleep(20000);
        if (atomic_load(&killer_stop))
            break;
        if (db_num(c, "SELECT count(pg_terminate_backend(pid)) FROM (SELECT pid FROM "
                      "pg_stat_activity WHERE application_name = 'cutoverd' ORDER BY random() "
                      "LIMIT 1) AS s") == 1)
            atomic_fetch_add(&kills, 1);
    }
    PQfinish(c);
    return NULL;
}

static void
lost(unsigned n)
{
    double *prop = calloc(n, sizeof(double));
    unsigned i, np = 0, lostn = 0, refused = 0, seed = 11;
    pthread_t th;
    double t_all = mono_ms();
    int cur = -1;

    atomic_store(&killer_stop, 0);
    atomic_store(&kills, 0);
    if (pthread_create(&th, NULL, killer_main, NULL) != 0)
        die("pthread_create");
    for (i = 0; i < n; i++) {
        int w;
        long long gen = -1;
        json_t *r;
        char req[96];
        double t0, end;
        bool ok = false;

        do
            w = 1 + (int)(rand_r(&seed) % 99);
        while (w == cur);
        snprintf(req, sizeof(req), "{\"cmd\":\"weight\",\"percent\":%d}", w);
        for (end = mono_ms() + 60000; mono_ms() < end;) {
            r = ctl_call(&in[0], req);
            if (r != NULL && json_is_true(json_object_get(r, "ok"))) {
                gen = json_integer_value(json_object_get(r, "generation"));
                json_decref(r);
                break;
            }
            refused++;
            json_decref(r);
            usleep(20000);
        }
        if (gen < 0)
            die("change %u: refused for 60 s", i);
        cur = w;
        t0 = mono_ms();
        for (end = t0 + 30000; mono_ms() < end;) {
            double wb, wc;
            long long gb, gc;

            if (inst_status(&in[1], &wb, &gb, NULL) && inst_status(&in[2], &wc, &gc, NULL)
                && wb == w && wc == w && gb == gen && gc == gen) {
                ok = true;
                break;
            }
            usleep(500);
        }
        if (ok)
            prop[np++] = mono_ms() - t0;
        else
            lostn++;
        usleep(15000);
    }
    atomic_store(&killer_stop, 1);
    pthread_join(th, NULL);
    printf("no change lost: %u changes on a in %.0f s, %u store sessions terminated at "
           "random (pg_terminate_backend), %u refusals retried (store unreachable while a's "
           "own session was away)\n", n, (mono_ms() - t_all) / 1000.0,
           atomic_load(&kills), refused);
    printf("  changes lost (not on b and c, weight and generation, within 30 s): %u\n", lostn);
    report("each change on b and c, from a's reply (polled)", prop, np);
    free(prop);
}

/* The "applied" line of <gen> in <log>: its time (Unix ms), or 0. */
static double
applied_at(const char *text, long long gen)
{
    char needle[64];
    const char *p = text, *line;
    struct tm tm;
    int ms;

    snprintf(needle, sizeof(needle), "event=applied service=web ");
    while ((p = strstr(p, needle)) != NULL) {
        const char *g = strstr(p, "generation=");
        const char *eol = strchr(p, '\n');

        if (g != NULL && (eol == NULL || g < eol) && atoll(g + 11) == gen) {
            for (line = p; line > text && line[-1] != '\n'; line--)
                ;
            memset(&tm, 0, sizeof(tm));
            if (sscanf(line, "ts=%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                       &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) != 7)
                return 0;
            tm.tm_year -= 1900;
            tm.tm_mon -= 1;
            return (double)timegm(&tm) * 1000.0 + ms;
        }
        p += strlen(needle);
    }
    return 0;
}

static void
sim(unsigned n)
{
    PGconn *c = db();
    char name[32], fleet[32];
    unsigned i, k, changes = 30, nprop = 0, nfirst = 0;
    double t0, secs = 20, *prop, *first, *t_ret;
    long long *gens;
    PGresult *r;
    int L;
    json_t *st;

    snprintf(fleet, sizeof(fleet), "sim%u", n);
    for (i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "%.8s-%02u", fleet, i % 100);
        inst_init(&in[i], name);
        inst_conf(&in[i], fleet, new_port[0], 20);
        inst_start(&in[i]);
    }
    /* every instance counted by the leader */
    t0 = mono_ms();
    for (;;) {
        st = ctl_call(&in[0], "{\"cmd\":\"status\"}");
        if (json_integer_value(h_json_at(st, "store.fleet_instances")) == (json_int_t)n) {
            json_decref(st);
            break;
        }
        json_decref(st);
        if (mono_ms() - t0 > 60000)
            die("sim %u: the leader does not count every instance", n);
        usleep(100000);
    }
    sleep(2);
    L = leader_among((int)n, -1, 5000);
    db_exec(c, "SELECT pg_stat_statements_reset()");
    {
        double x0 = db_num(c, "SELECT xact_commit + xact_rollback FROM pg_stat_database "
                              "WHERE datname = 'postgres'");
        double conns, fleet_conns, x1;
        json_t *lr;

        sleep((unsigned)secs);
        x1 = db_num(c, "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE "
                       "datname = 'postgres'");
        conns = db_num(c, "SELECT count(*) FROM pg_stat_activity WHERE application_name "
                          "= 'cutoverd'");
        fleet_conns = db_num(c, "SELECT count(*) FROM pg_stat_activity WHERE "
                                "application_name = 'cutoverd-fleet'");
        printf("simulation: %u instances (one worker, one service each), one cluster, idle "
               "for %.0f s\n", n, secs);
        printf("  connections per instance: %.2f (store %.0f, fleet %.0f in all)\n",
               (conns + fleet_conns) / n, conns, fleet_conns);
        printf("  transactions per instance per second: %.2f (the database's count, the "
               "bench's own few included)\n", (x1 - x0) / secs / n);
        r = PQexec(c, "SELECT CASE WHEN query LIKE 'WITH i AS (INSERT INTO cutover_instance%' "
                      "THEN 'publish (every instance)' WHEN query LIKE 'SELECT "
                      "pg_try_advisory_lock%' THEN 'try the lock (followers)' WHEN query "
                      "LIKE 'WITH r AS (SELECT w.instance%' THEN 'read the windows (leader)' "
                      "ELSE 'other' END AS k, sum(calls), sum(total_exec_time) / sum(calls), "
                      "max(max_exec_time) FROM pg_stat_statements WHERE query NOT LIKE "
                      "'%pg_stat%' GROUP BY 1 ORDER BY 1");
        for (k = 0; PQresultStatus(r) == PGRES_TUPLES_OK && k < (unsigned)PQntuples(r); k++)
            printf("  %-28s %8.2f per instance per s, %7.3f ms mean at the database, "
                   "%7.3f ms max\n", PQgetvalue(r, (int)k, 0),
                   strtod(PQgetvalue(r, (int)k, 1), NULL) / secs / n,
                   strtod(PQgetvalue(r, (int)k, 2), NULL),
                   strtod(PQgetvalue(r, (int)k, 3), NULL));
        if (PQresultStatus(r) != PGRES_TUPLES_OK)
            fprintf(stderr, "fleetbench: pg_stat_statements: %s", PQerrorMessage(c));
        PQclear(r);
        st = L >= 0 ? ctl_call(&in[L], "{\"cmd\":\"status\"}") : NULL;
        lr = h_json_at(st, "store.leader_reads");
        printf("  the leader's read, parsed and summed here: %.3f ms mean, %.3f ms max over "
               "%lld reads (%u rows each)\n",
               json_number_value(json_object_get(lr, "mean_ms")),
               json_number_value(json_object_get(lr, "max_ms")),
               (long long)json_integer_value(json_object_get(lr, "count")), n);
        json_decref(st);
    }
    /* propagation to all n: changes on instance 0, the "applied" lines */
    prop = calloc(changes, sizeof(double));
    first = calloc(changes, sizeof(double));
    t_ret = calloc(changes, sizeof(double));
    gens = calloc(changes, sizeof(long long));
    for (k = 0; k < changes; k++) {
        char req[96];
        json_t *rr;

        snprintf(req, sizeof(req), "{\"cmd\":\"weight\",\"percent\":%u}", k % 2 ? 10 : 20);
        rr = ctl_call(&in[0], req);
        t_ret[k] = wall_ms();
        gens[k] = json_is_true(json_object_get(rr, "ok"))
                  ? json_integer_value(json_object_get(rr, "generation")) : -1;
        json_decref(rr);
        usleep(300000);
    }
    sleep(1);
    {
        char **logs = calloc(n, sizeof(char *));

        for (i = 0; i < n; i++)
            logs[i] = h_read_file(in[i].log);
        for (k = 0; k < changes; k++) {
            double latest = 0, earliest = 0;
            bool all = gens[k] >= 0;

            for (i = 1; i < n && all; i++) {
                double t = applied_at(logs[i] != NULL ? logs[i] : "", gens[k]);

                if (t == 0)
                    all = false;
                if (t > latest)
                    latest = t;
                if (earliest == 0 || t < earliest)
                    earliest = t;
            }
            if (!all)
                continue;
            prop[nprop++] = latest > t_ret[k] ? latest - t_ret[k] : 0;
            first[nfirst++] = earliest > t_ret[k] ? earliest - t_ret[k] : 0;
        }
        for (i = 0; i < n; i++)
            free(logs[i]);
        free(logs);
    }
    printf("  propagation of %u changes made on one instance (from its reply, by the "
           "others' \"applied\" log lines, ms resolution):\n", changes);
    report("to the first of the others", first, nfirst);
    report("to the last of the others (all applied)", prop, nprop);
    for (i = 0; i < n; i++) {
        ctl_close(&in[i]);
        h_stop(in[i].pid, SIGTERM, 10000);
        in[i].pid = 0;
    }
    free(prop);
    free(first);
    free(t_ret);
    free(gens);
    PQfinish(c);
}

int
main(int argc, char **argv)
{
    static const char *const settings[] = {
        "max_connections=250", "shared_buffers=128MB", "fsync=on",
        "synchronous_commit=on", "full_page_writes=on",
        "shared_preload_libraries=pg_stat_statements", NULL,
    };
    const char *only = NULL;
    unsigned changes = 200, trials = 10, nlost = 10000, sims[8] = { 10, 50 }, nsims = 2, i;
    char *dir, *sp, *tok;

    for (i = 1; i < (unsigned)argc; i++) {
        if (strcmp(argv[i], "--only") == 0 && i + 1 < (unsigned)argc)
            only = argv[++i];
        else if (strcmp(argv[i], "--changes") == 0 && i + 1 < (unsigned)argc)
            changes = (unsigned)atoi(argv[++i]);
        else if (strcmp(argv[i], "--trials") == 0 && i + 1 < (unsigned)argc)
            trials = (unsigned)atoi(argv[++i]);
        else if (strcmp(argv[i], "--lost") == 0 && i + 1 < (unsigned)argc)
            nlost = (unsigned)atoi(argv[++i]);
        else if (strcmp(argv[i], "--sim") == 0 && i + 1 < (unsigned)argc) {
            for (nsims = 0, tok = strtok_r(argv[++i], ",", &sp); tok != NULL && nsims < 8;
                 tok = strtok_r(NULL, ",", &sp))
                sims[nsims++] = (unsigned)atoi(tok);
        } else
            die("usage: fleetbench [--only propagation|breach|takeover|lost|sim] "
                "[--changes N] [--trials N] [--lost N] [--sim N,N,...]");
    }
    signal(SIGPIPE, SIG_IGN);
    if ((dir = h_tmpdir()) == NULL)
        die("no temporary directory");
    snprintf(work, sizeof(work), "%s", dir);
    free(dir);
    if ((pg = pgh_start_with(settings)) == NULL)
        die("no PostgreSQL cluster");
    snprintf(conninfo, sizeof(conninfo), "host=%s port=%s dbname=postgres user=postgres",
             pgh_host(pg), pgh_port(pg));
    {
        PGconn *c = db();

        db_exec(c, "CREATE EXTENSION pg_stat_statements");
        PQfinish(c);
    }
    legacy_port = h_free_port();
    new_port[0] = h_free_port();
    new_port[1] = h_free_port();
    if (h_backend_start("legacy", legacy_port, work, false) < 0
        || h_backend_start("new", new_port[0], work, false) < 0
        || h_backend_start("new", new_port[1], work, false) < 0)
        die("backends");
    printf("fleetbench: %ld CPUs, PostgreSQL on a unix socket, fsync and "
           "synchronous_commit on\n\n", sysconf(_SC_NPROCESSORS_ONLN));
    if (only == NULL || strcmp(only, "propagation") == 0) {
        three_start("p", false);
        propagation(changes, "idle database");
        load_start();
        {
            PGconn *c = db();
            double x0 = db_num(c, "SELECT xact_commit FROM pg_stat_database WHERE datname = "
                                  "'postgres'"), t0 = mono_ms();

            propagation(changes, "under pgbench's write load (-c 8 -j 2, scale 10)");
            printf("  write load: %.0f transactions/s during the run\n",
                   (db_num(c, "SELECT xact_commit FROM pg_stat_database WHERE datname = "
                              "'postgres'") - x0) / ((mono_ms() - t0) / 1000.0));
            PQfinish(c);
        }
        load_stop();
        three_stop();
        printf("\n");
    }
    if (only == NULL || strcmp(only, "breach") == 0) {
        three_start("b", true);
        breach(trials * 2);
        three_stop();
        printf("\n");
    }
    if (only == NULL || strcmp(only, "takeover") == 0) {
        three_start("t", false);
        takeover(trials);
        three_stop();
        printf("\n");
    }
    if (only == NULL || strcmp(only, "lost") == 0) {
        three_start("l", false);
        lost(nlost);
        three_stop();
        printf("\n");
    }
    if (only == NULL || strcmp(only, "sim") == 0) {
        for (i = 0; i < nsims; i++) {
            if (sims[i] > MAXI)
                die("at most %d instances", MAXI);
            sim(sims[i]);
            printf("\n");
        }
    }
    h_kill_all();
    pgh_free(pg);
    if (getenv("FLEETBENCH_KEEP") != NULL)
        printf("fleetbench: the instances' directories and logs kept in %s\n", work);
    else
        h_rmrf(work);
    return 0;
}
