/*
 * harness/pg: a private PostgreSQL cluster (see pg.h).
 */
#include "tests/harness/pg.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#define PGH_PORT        "5432"
#define INITDB_MS       120000
#define READY_MS        60000
#define STOP_MS         30000

struct pgh {
    char dir[64];                /* the socket directory; data/ and server.log below */
    char data[PATH_MAX];
    char log[PATH_MAX];
    char bindir[PATH_MAX];
    char conninfo[PATH_MAX + 64];
    uid_t uid;                   /* who runs the server: postgres when we are root */
    gid_t gid;
    bool drop;                   /* switch to uid/gid in the child */
    pid_t pid;                   /* the postmaster, 0 when not running */
    char *settings[PGH_SETTINGS_MAX + 1];    /* pgh_start_with()'s, owned; NULL after */
    unsigned nsettings;
};

static int signal_all(struct pgh *h, int sig);

/* the clusters still running, SIGKILLed at exit */
static struct pgh *live[8];

static long long
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static void
remember(struct pgh *h, bool on)
{
    size_t i;

    for (i = 0; i < sizeof(live) / sizeof(live[0]); i++) {
        if (on && live[i] == NULL) {
            live[i] = h;
            return;
        }
        if (!on && live[i] == h)
            live[i] = NULL;
    }
}

static void
kill_live(void)
{
    size_t i;

    for (i = 0; i < sizeof(live) / sizeof(live[0]); i++)
        if (live[i] != NULL && live[i]->pid > 0)
            kill(-live[i]->pid, SIGKILL);
}

/* Copies the last <max> bytes of the server's log to stderr. */
static void
dump_log(const struct pgh *h, long max)
{
    FILE *f = fopen(h->log, "r");
    char buf[4096];
    size_t n;

    if (f == NULL)
        return;
    if (fseek(f, 0, SEEK_END) == 0 && ftell(f) > max)
        fseek(f, -max, SEEK_END);
    else
        fseek(f, 0, SEEK_SET);
    fprintf(stderr, "---- %s (tail) ----\n", h->log);
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
        fwrite(buf, 1, n, stderr);
    fprintf(stderr, "---- end of %s ----\n", h->log);
    fclose(f);
}

/* The newest /usr/lib/postgresql/<major>/bin holding initdb and postgres,
 * or $CUTOVER_PG_BINDIR. */
static int
find_bindir(char *out, size_t len)
{
    const char *env = getenv("CUTOVER_PG_BINDIR");
    glob_t g;
    size_t i;
    long best = -1;

    if (env != NULL && env[0] != '\0') {
        char initdb[PATH_MAX];

        snprintf(out, len, "%s", env);
        snprintf(initdb, sizeof(initdb), "%s/initdb", env);
        return access(initdb, X_OK) == 0 ? 0 : -1;
    }
    if (glob("/usr/lib/postgresql/*/bin", 0, NULL, &g) != 0)
        return -1;
    for (i = 0; i < g.gl_pathc; i++) {
        char initdb[PATH_MAX], postgres[PATH_MAX];
        long major = strtol(g.gl_pathv[i] + strlen("/usr/lib/postgresql/"), NULL, 10);

        snprintf(initdb, sizeof(initdb), "%s/initdb", g.gl_pathv[i]);
        snprintf(postgres, sizeof(postgres), "%s/postgres", g.gl_pathv[i]);
        if (major > best && access(initdb, X_OK) == 0 && access(postgres, X_OK) == 0) {
            best = major;
            snprintf(out, len, "%s", g.gl_pathv[i]);
        }
    }
    globfree(&g);
    return best < 0 ? -1 : 0;
}

/* Forks <argv> (argv[0] a path) in its own process group, as the server's
 * user, output appended to the log, SIGKILLed if we die. */
static pid_t
spawn(const struct pgh *h, char *const argv[])
{
    pid_t parent = getpid(), pid;
    int fd = open(h->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);

    if (fd < 0) {
        fprintf(stderr, "pgh: %s: %s\n", h->log, strerror(errno));
        return -1;
    }
    pid = fork();
    if (pid < 0) {
        fprintf(stderr, "pgh: fork: %s\n", strerror(errno));
        close(fd);
        return -1;
    }
    if (pid == 0) {
        int null = open("/dev/null", O_RDONLY);

        setpgid(0, 0);
        if (null >= 0)
            dup2(null, 0);
        dup2(fd, 1);
        dup2(fd, 2);
        if (h->drop && (setgroups(0, NULL) < 0 || setgid(h->gid) < 0 || setuid(h->uid) < 0)) {
            fprintf(stderr, "pgh: cannot become uid %u: %s\n", (unsigned)h->uid,
                    strerror(errno));
            _exit(126);
        }
        /* after setuid, which clears it */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(125);
        if (chdir(h->dir) < 0)
            _exit(124);
        execv(argv[0], argv);
        fprintf(stderr, "pgh: exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    setpgid(pid, pid);                  /* both sides: no race with kill(-pid) */
    close(fd);
    return pid;
}

/* Waits up to <ms> for <pid>; its exit status, or -1 after the time. */
static int
wait_exit(pid_t pid, int ms)
{
    long long end = now_ms() + ms;
    int status;

    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);

        if (r == pid)
            return status;
        if (r < 0 && errno != EINTR)
            return -1;
        if (now_ms() >= end)
            return -1;
        sleep_ms(20);
    }
}

static int
write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);   /* keeps owner and mode */
    size_t len = strlen(text);
    ssize_t n;

    if (fd < 0) {
        fprintf(stderr, "pgh: %s: %s\n", path, strerror(errno));
        return -1;
    }
    n = write(fd, text, len);
    close(fd);
    if (n != (ssize_t)len) {
        fprintf(stderr, "pgh: %s: short write\n", path);
        return -1;
    }
    return 0;
}

/* Frees <h> and what it owns (the server stopped, the directory gone). */
static void
release(struct pgh *h)
{
    unsigned i;

    for (i = 0; i < h->nsettings; i++)
        free(h->settings[i]);
    free(h);
}

static int
start_server(struct pgh *h)
{
    char postgres[PATH_MAX + 16];
    char *argv[24 + 2 * PGH_SETTINGS_MAX + 1] = {
        postgres, "-D", h->data, "-k", h->dir,
        "-c", "listen_addresses=",
        "-c", "port=" PGH_PORT,
        "-c", "fsync=off",
        "-c", "full_page_writes=off",
        "-c", "synchronous_commit=off",
        "-c", "max_connections=40",
        "-c", "shared_buffers=16MB",
        "-c", "log_min_messages=warning",
        /* a publisher for the logical replication of the gate tests */
        "-c", "wal_level=logical",
        NULL,
    };
    long long end = now_ms() + READY_MS;
    unsigned i, n;

    for (n = 0; argv[n] != NULL; n++)
        ;                               /* the fixed ones above */
    /* pgh_start_with()'s settings come last: they win */
    for (i = 0; i < h->nsettings; i++) {
        argv[n++] = "-c";
        argv[n++] = h->settings[i];
    }
    argv[n] = NULL;
    snprintf(postgres, sizeof(postgres), "%s/postgres", h->bindir);
    h->pid = spawn(h, argv);
    if (h->pid < 0) {
        h->pid = 0;
        return -1;
    }
    remember(h, true);
    for (;;) {
        int status;

        if (PQping(h->conninfo) == PQPING_OK)
            return 0;
        if (waitpid(h->pid, &status, WNOHANG) == h->pid) {
            fprintf(stderr, "pgh: postgres exited (status 0x%x) before it accepted "
                    "connections\n", (unsigned)status);
            h->pid = 0;
            remember(h, false);
            dump_log(h, 4000);
            return -1;
        }
        if (now_ms() >= end) {
            fprintf(stderr, "pgh: postgres did not accept connections within %d ms\n",
                    READY_MS);
            dump_log(h, 4000);
            kill(-h->pid, SIGKILL);
            wait_exit(h->pid, STOP_MS);
            h->pid = 0;
            remember(h, false);
            return -1;
        }
        sleep_ms(50);
    }
}

/* Removes <dir> and everything below it (symlinks are not followed). */
static void
rmrf(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[PATH_MAX];
    struct stat st;

    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
            rmrf(path);
        else
            unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

/* A new struct pgh with server settings <settings> (NULL-ended, copied; NULL
 * none): the server's user, a fresh directory under /tmp handed to that
 * user, the paths and the superuser's conninfo. Nothing started. NULL
 * (printed). */
static struct pgh *
pgh_new(const char *const *settings)
{
    static bool atexit_done;
    struct pgh *h = calloc(1, sizeof(*h));

    if (h == NULL)
        return NULL;
    for (; settings != NULL && *settings != NULL && h->nsettings < PGH_SETTINGS_MAX; settings++)
        h->settings[h->nsettings++] = strdup(*settings);
    if (find_bindir(h->bindir, sizeof(h->bindir)) < 0) {
        fprintf(stderr, "pgh: PostgreSQL is not installed: no initdb and postgres in %s "
                "(install the postgresql package: make deps, or set CUTOVER_PG_BINDIR)\n",
                getenv("CUTOVER_PG_BINDIR") != NULL && getenv("CUTOVER_PG_BINDIR")[0] != '\0'
                    ? "$CUTOVER_PG_BINDIR" : "/usr/lib/postgresql/*/bin");
        release(h);
        return NULL;
    }
    if (geteuid() == 0) {
        struct passwd *pw = getpwnam("postgres");

        if (pw == NULL) {
            fprintf(stderr, "pgh: running as root, PostgreSQL must run as the postgres "
                    "user, and there is none (the postgresql package creates it)\n");
            release(h);
            return NULL;
        }
        h->uid = pw->pw_uid;
        h->gid = pw->pw_gid;
        h->drop = true;
    } else {
        h->uid = geteuid();
        h->gid = getegid();
    }
    /* /tmp, not $TMPDIR: the postgres user must be able to reach it, and a
     * socket path has at most 107 bytes */
    snprintf(h->dir, sizeof(h->dir), "/tmp/cutover-pg.XXXXXX");
    if (mkdtemp(h->dir) == NULL) {
        fprintf(stderr, "pgh: mkdtemp: %s\n", strerror(errno));
        release(h);
        return NULL;
    }
    if (h->drop && chown(h->dir, h->uid, h->gid) < 0) {
        fprintf(stderr, "pgh: chown %s: %s\n", h->dir, strerror(errno));
        rmdir(h->dir);
        release(h);
        return NULL;
    }
    snprintf(h->data, sizeof(h->data), "%s/data", h->dir);
    snprintf(h->log, sizeof(h->log), "%s/server.log", h->dir);
    snprintf(h->conninfo, sizeof(h->conninfo),
             "host=%s port=%s dbname=postgres user=postgres connect_timeout=5", h->dir,
             PGH_PORT);
    if (!atexit_done) {
        atexit(kill_live);
        atexit_done = true;
    }
    return h;
}

/* Runs <argv> as the server's user and waits up to <ms> for it to exit 0.
 * 0, or -1 (printed, with the log's tail). */
static int
run_tool(struct pgh *h, char *const argv[], int ms)
{
    pid_t pid = spawn(h, argv);
    int status;

    if (pid < 0)
        return -1;
    status = wait_exit(pid, ms);
    if (status == -1) {
        kill(-pid, SIGKILL);
        wait_exit(pid, STOP_MS);
        fprintf(stderr, "pgh: %s did not finish within %d ms\n", argv[0], ms);
        dump_log(h, 4000);
        return -1;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "pgh: %s failed (status 0x%x)\n", argv[0], (unsigned)status);
        dump_log(h, 4000);
        return -1;
    }
    return 0;
}

struct pgh *
pgh_start(void)
{
    return pgh_start_with(NULL);
}

struct pgh *
pgh_start_with(const char *const *settings)
{
    struct pgh *h = pgh_new(settings);
    char initdb[PATH_MAX + 16], hba[PATH_MAX + 16];
    char *argv[] = {
        initdb, "-D", NULL, "-U", "postgres", "-A", "trust", "-E", "UTF8",
        "--locale=C", "--no-sync", NULL,
    };

    if (h == NULL)
        return NULL;
    snprintf(initdb, sizeof(initdb), "%s/initdb", h->bindir);
    argv[2] = h->data;
    if (run_tool(h, argv, INITDB_MS) < 0)
        goto fail;
    snprintf(hba, sizeof(hba), "%s/pg_hba.conf", h->data);
    if (write_file(hba, "# tests/harness/pg.c: the superuser without a password,\n"
                        "# every other role with its own; streaming replication\n"
                        "# for the superuser (pgh_start_standby)\n"
                        "local all postgres trust\n"
                        "local all all scram-sha-256\n"
                        "local replication postgres trust\n") < 0)
        goto fail;
    if (start_server(h) < 0)
        goto fail;
    return h;
fail:
    rmrf(h->dir);
    release(h);
    return NULL;
}

struct pgh *
pgh_start_standby(struct pgh *primary)
{
    struct pgh *h;
    char basebackup[PATH_MAX + 16];
    char *argv[] = {
        basebackup, "-D", NULL, "-h", primary->dir, "-p", PGH_PORT, "-U", "postgres",
        "-R", "-X", "stream", "-c", "fast", "--no-sync", NULL,
    };

    if (primary->pid <= 0) {
        fprintf(stderr, "pgh: the primary of a standby must be running\n");
        return NULL;
    }
    /* the primary's settings (NULL-ended: calloc): a hot standby refuses to
     * run with fewer connections (and the like) than its primary */
    if ((h = pgh_new((const char *const *)primary->settings)) == NULL)
        return NULL;
    snprintf(basebackup, sizeof(basebackup), "%s/pg_basebackup", h->bindir);
    argv[2] = h->data;
    /* -R: standby.signal and primary_conninfo (the primary's socket) */
    if (run_tool(h, argv, INITDB_MS) < 0 || start_server(h) < 0) {
        rmrf(h->dir);
        release(h);
        return NULL;
    }
    return h;
}

const char *
pgh_host(const struct pgh *h)
{
    return h->dir;
}

const char *
pgh_port(const struct pgh *h)
{
    (void)h;
    return PGH_PORT;
}

const char *
pgh_conninfo(const struct pgh *h)
{
    return h->conninfo;
}

bool
pgh_running(const struct pgh *h)
{
    return h->pid > 0;
}

static void
quiet(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

int
pgh_exec(struct pgh *h, const char *sql)
{
    PGconn *conn = PQconnectdb(h->conninfo);
    PGresult *res;
    int rc = 0;

    if (PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "pgh: connect: %s", PQerrorMessage(conn));
        PQfinish(conn);
        return -1;
    }
    PQsetNoticeProcessor(conn, quiet, NULL);       /* "... does not exist, skipping" */
    res = PQexec(conn, sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
        fprintf(stderr, "pgh: %s: %s", sql, PQresultErrorMessage(res));
        rc = -1;
    }
    PQclear(res);
    PQfinish(conn);
    return rc;
}

int
pgh_query(struct pgh *h, const char *sql, char *out, size_t len)
{
    PGconn *conn = PQconnectdb(h->conninfo);
    PGresult *res;
    int rc = 0;

    if (PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "pgh: connect: %s", PQerrorMessage(conn));
        PQfinish(conn);
        return -1;
    }
    res = PQexec(conn, sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) < 1 || PQnfields(res) < 1) {
        fprintf(stderr, "pgh: %s: %s\n", sql, PQresultStatus(res) == PGRES_TUPLES_OK
                ? "no row" : PQresultErrorMessage(res));
        rc = -1;
    } else {
        snprintf(out, len, "%s", PQgetvalue(res, 0, 0));
    }
    PQclear(res);
    PQfinish(conn);
    return rc;
}

int
pgh_stop(struct pgh *h)
{
    int status;

    if (h->pid <= 0)
        return 0;
    signal_all(h, SIGCONT);            /* a paused one (pgh_pause) must see the SIGINT */
    kill(h->pid, SIGINT);
    status = wait_exit(h->pid, STOP_MS);
    if (status == -1) {
        fprintf(stderr, "pgh: postgres did not stop within %d ms; killed\n", STOP_MS);
        kill(-h->pid, SIGKILL);
        wait_exit(h->pid, STOP_MS);
    }
    h->pid = 0;
    remember(h, false);
    return status == -1 ? -1 : 0;
}

int
pgh_kill(struct pgh *h)
{
    if (h->pid <= 0)
        return -1;
    if (kill(-h->pid, SIGKILL) < 0) {
        fprintf(stderr, "pgh: kill: %s\n", strerror(errno));
        return -1;
    }
    if (wait_exit(h->pid, STOP_MS) == -1) {
        fprintf(stderr, "pgh: postgres %d did not die\n", (int)h->pid);
        return -1;
    }
    h->pid = 0;
    remember(h, false);
    return 0;
}

int
pgh_restart(struct pgh *h)
{
    if (h->pid > 0)
        return 0;
    return start_server(h);
}

void
pgh_free(struct pgh *h)
{
    if (h == NULL)
        return;
    pgh_stop(h);
    rmrf(h->dir);
    release(h);
}

/* Sends <sig> to the postmaster and to each of its children: a backend
 * makes itself a process group of its own (setsid), so the postmaster's
 * group is not all of them. */
static int
signal_all(struct pgh *h, int sig)
{
    DIR *d;
    struct dirent *e;

    if (h->pid <= 0)
        return -1;
    if (kill(-h->pid, sig) < 0)
        return -1;
    if ((d = opendir("/proc")) == NULL)
        return -1;
    while ((e = readdir(d)) != NULL) {
        char path[64], buf[512], *p;
        long pid = strtol(e->d_name, &p, 10), ppid;
        FILE *f;

        if (*p != '\0' || pid <= 0)
            continue;
        snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
        if ((f = fopen(path, "r")) == NULL)
            continue;
        p = fgets(buf, sizeof(buf), f);
        fclose(f);
        /* "pid (comm) state ppid ...": comm may hold spaces and ')' */
        if (p == NULL || (p = strrchr(buf, ')')) == NULL
            || sscanf(p + 1, " %*c %ld", &ppid) != 1 || ppid != h->pid)
            continue;
        kill((pid_t)pid, sig);
    }
    closedir(d);
    return 0;
}

int
pgh_pause(struct pgh *h)
{
    return signal_all(h, SIGSTOP);
}

int
pgh_resume(struct pgh *h)
{
    return signal_all(h, SIGCONT);
}
