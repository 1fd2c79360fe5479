/*
 * harness: see harness.h. Everything blocks with a deadline; nothing here
 * is meant to be fast, only to fail loudly and to leave no process behind.
 *
 * The HTTP reader never consumes a byte past the response it reads (it
 * peeks for the end of the head and of chunk lines, then reads exactly), so
 * tests can pipeline requests on one fd and read the answers one by one
 * without a per-connection buffer object.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/xmalloc.h"
#include "tests/harness/harness.h"
#include "tests/tools/b64.h"

#define H_MAX_PIDS      64
#define H_MAX_PORTS     2048
#define H_PATH_RING     16
#define H_PATH_LEN      4096
#define H_CTL_ARGS      64
#define H_CTL_TIMEOUT_MS 10000
#define H_BODY_MAX      (256u << 20)   /* bytes; larger bodies are refused */
#define H_POLL_MS       5              /* readiness polling interval */
#define H_IO_TIMEOUT_MS 5000

/* The harness's state, one per test process. */
static struct {
    pid_t pids[H_MAX_PIDS];            /* spawned and not yet reaped */
    int npids;
    int ports[H_MAX_PORTS];            /* handed out by h_free_port() */
    int nports;
    char paths[H_PATH_RING][H_PATH_LEN];
    unsigned path_next;
    char ctl_err[16384];               /* stderr of the last cutoverctl run */
    int ctl_status;                    /* its exit code, -1 when it did not run */
    bool has_atexit;
} H = { .ctl_status = -1 };

/* ---- paths ---------------------------------------------------------- */

static const char *
ring_path(const char *env, const char *dflt, const char *name)
{
    const char *dir = getenv(env);
    char *buf = H.paths[H.path_next++ % H_PATH_RING];

    if (dir == NULL || dir[0] == '\0')
        dir = dflt;
    snprintf(buf, H_PATH_LEN, "%s/%s", dir, name);
    return buf;
}

const char *
h_bin(const char *name)
{
    return ring_path("CUTOVER_BIN_DIR", "build", name);
}

const char *
h_src(const char *path)
{
    return ring_path("CUTOVER_SRC_DIR", ".", path);
}

/* ---- files ---------------------------------------------------------- */

char *
h_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char tmpl[H_PATH_LEN];

    if (base == NULL || base[0] == '\0')
        base = "/tmp";
    snprintf(tmpl, sizeof(tmpl), "%s/cutover-test.XXXXXX", base);
    if (mkdtemp(tmpl) == NULL) {
        fprintf(stderr, "harness: mkdtemp %s: %s\n", tmpl, strerror(errno));
        return NULL;
    }
    return xstrdup(tmpl);
}

void
h_rmrf(const char *dir)
{
    DIR *d;
    struct dirent *e;
    char path[H_PATH_LEN];
    struct stat st;

    if (dir == NULL || dir[0] == '\0' || strcmp(dir, "/") == 0)
        return;
    if ((d = opendir(dir)) == NULL) {
        if (errno != ENOENT)
            fprintf(stderr, "harness: opendir %s: %s\n", dir, strerror(errno));
        return;
    }
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
            h_rmrf(path);
        else if (unlink(path) != 0)
            fprintf(stderr, "harness: unlink %s: %s\n", path, strerror(errno));
    }
    closedir(d);
    if (rmdir(dir) != 0)
        fprintf(stderr, "harness: rmdir %s: %s\n", dir, strerror(errno));
}

int
h_write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    size_t len = strlen(text);

    if (f == NULL) {
        fprintf(stderr, "harness: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (fwrite(text, 1, len, f) != len || fclose(f) != 0) {
        fprintf(stderr, "harness: write %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* Reads <path> from byte <offset>; *len gets the length read. */
static char *
read_file_from(const char *path, long offset, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0, cap = 0;

    if (f == NULL)
        return NULL;
    if (offset > 0 && fseek(f, offset, SEEK_SET) != 0) {
        fclose(f);
        return NULL;
    }
    for (;;) {
        size_t got;

        if (cap - n < 4096) {
            cap = cap ? cap * 2 : 8192;
            buf = xrealloc(buf, cap);
        }
        got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0)
            break;
    }
    fclose(f);
    buf[n] = '\0';
    if (len != NULL)
        *len = n;
    return buf;
}

char *
h_read_file(const char *path)
{
    return read_file_from(path, 0, NULL);
}

static long
file_size(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 ? (long)st.st_size : 0;
}

void
h_dump_file(const char *path, size_t max_bytes)
{
    size_t len = 0;
    char *text = read_file_from(path, 0, &len);
    size_t from = len > max_bytes ? len - max_bytes : 0;

    fprintf(stderr, "---- %s (%zu bytes%s) ----\n", path, len,
            from > 0 ? ", tail" : "");
    if (text != NULL)
        fwrite(text + from, 1, len - from, stderr);
    else
        fprintf(stderr, "(unreadable: %s)\n", strerror(errno));
    fprintf(stderr, "---- end of %s ----\n", path);
    free(text);
}

/* ---- file systems (root only) --------------------------------------- */

int
h_tmpfs_mount(const char *dir, size_t bytes)
{
    char opts[64];

    snprintf(opts, sizeof(opts), "size=%zu,mode=0700", bytes);
    if (mount("tmpfs", dir, "tmpfs", MS_NOSUID | MS_NODEV, opts) != 0) {
        fprintf(stderr, "harness: mount tmpfs on %s: %s\n", dir, strerror(errno));
        return -1;
    }
    return 0;
}

int
h_tmpfs_remount(const char *dir, size_t bytes, bool ro)
{
    char opts[64];

    snprintf(opts, sizeof(opts), "size=%zu,mode=0700", bytes);
    if (mount(NULL, dir, NULL, MS_REMOUNT | MS_NOSUID | MS_NODEV | (ro ? MS_RDONLY : 0),
              opts) != 0) {
        fprintf(stderr, "harness: remount %s %s: %s\n", dir, ro ? "ro" : "rw",
                strerror(errno));
        return -1;
    }
    return 0;
}

void
h_umount(const char *dir)
{
    if (dir != NULL)
        umount2(dir, MNT_DETACH);
}

long long
h_fill_fs(const char *path)
{
    static const char zeros[65536];
    long long total = 0;
    size_t chunk = sizeof(zeros);
    ssize_t w;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

    if (fd < 0) {
        fprintf(stderr, "harness: fill %s: %s\n", path, strerror(errno));
        return -1;
    }
    for (;;) {
        w = write(fd, zeros, chunk);
        if (w > 0) {
            total += w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == ENOSPC && chunk > 1) {
            chunk = 1;                 /* the last page's bytes */
            continue;
        }
        break;
    }
    if (w < 0 && errno != ENOSPC) {
        fprintf(stderr, "harness: fill %s: %s\n", path, strerror(errno));
        close(fd);
        return -1;
    }
    close(fd);
    return total;
}

/* ---- time ----------------------------------------------------------- */

long long
h_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
h_sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* ---- processes ------------------------------------------------------ */

int
h_free_port(void)
{
    int attempt;

    for (attempt = 0; attempt < 100; attempt++) {
        struct sockaddr_in sin = { .sin_family = AF_INET };
        socklen_t slen = sizeof(sin);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port, i;
        bool seen = false;

        if (fd < 0) {
            fprintf(stderr, "harness: socket: %s\n", strerror(errno));
            return -1;
        }
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 ||
            getsockname(fd, (struct sockaddr *)&sin, &slen) != 0) {
            fprintf(stderr, "harness: bind 127.0.0.1:0: %s\n", strerror(errno));
            close(fd);
            return -1;
        }
        close(fd);
        port = ntohs(sin.sin_port);
        for (i = 0; i < H.nports; i++)
            seen = seen || H.ports[i] == port;
        if (seen)
            continue;
        if (H.nports < H_MAX_PORTS)
            H.ports[H.nports++] = port;
        return port;
    }
    fprintf(stderr, "harness: no unused free port after 100 attempts\n");
    return -1;
}

static bool
is_spawned(pid_t pid)
{
    int i;

    for (i = 0; i < H.npids; i++)
        if (H.pids[i] == pid)
            return true;
    return false;
}

static void
forget_pid(pid_t pid)
{
    int i;

    for (i = 0; i < H.npids; i++) {
        if (H.pids[i] == pid) {
            H.pids[i] = H.pids[--H.npids];
            return;
        }
    }
}

static int
decode_status(int ws)
{
    if (WIFEXITED(ws))
        return WEXITSTATUS(ws);
    if (WIFSIGNALED(ws))
        return 128 + WTERMSIG(ws);
    return -1;
}

/* The child's side of a spawn: never returns. */
static void
exec_child(char *const argv[], pid_t parent, int out_fd, int err_fd, bool unset_socket,
           unsigned nofile)
{
    struct sigaction sa;
    sigset_t none;
    long max_fd, fd;
    int null_fd;

    setpgid(0, 0);
    /* dies with the test; then close the race with a parent already gone */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
    /* ignored signals stay ignored across exec: give the child defaults */
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    sigaction(SIGPIPE, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if ((null_fd = open("/dev/null", O_RDONLY)) >= 0) {
        dup2(null_fd, STDIN_FILENO);
        if (null_fd != STDIN_FILENO)
            close(null_fd);
    }
    if (out_fd >= 0 && dup2(out_fd, STDOUT_FILENO) < 0)
        _exit(127);
    if (err_fd >= 0 && dup2(err_fd, STDERR_FILENO) < 0)
        _exit(127);
    /* only 0, 1 and 2 go through: a test's client sockets must not stay
     * open in a daemon it starts, or closing them would not close them */
    max_fd = sysconf(_SC_OPEN_MAX);
    if (max_fd < 0 || max_fd > 65536)
        max_fd = 65536;
    for (fd = 3; fd < max_fd; fd++)
        close((int)fd);
    if (nofile > 0) {
        struct rlimit rl = { nofile, nofile };

        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
            dprintf(STDERR_FILENO, "harness: setrlimit NOFILE %u: %s\n", nofile,
                    strerror(errno));
            _exit(127);
        }
    }
    if (unset_socket)
        unsetenv("CUTOVER_SOCKET");
    execvp(argv[0], argv);     /* a bare name is looked up in PATH */
    dprintf(STDERR_FILENO, "harness: exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

static pid_t
spawn(char *const argv[], const char *log_path, bool unset_socket, unsigned nofile)
{
    pid_t parent = getpid(), pid;
    int log_fd = -1;

    if (H.npids == H_MAX_PIDS) {
        fprintf(stderr, "harness: more than %d live processes\n", H_MAX_PIDS);
        return -1;
    }
    if (log_path != NULL &&
        (log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)) < 0) {
        fprintf(stderr, "harness: cannot open log %s: %s\n", log_path, strerror(errno));
        return -1;
    }
    if (!H.has_atexit) {
        atexit(h_kill_all);
        H.has_atexit = true;
    }
    fflush(stdout);                    /* or the child's exit path could repeat it */
    fflush(stderr);
    pid = fork();
    if (pid < 0) {
        fprintf(stderr, "harness: fork for %s: %s\n", argv[0], strerror(errno));
        if (log_fd >= 0)
            close(log_fd);
        return -1;
    }
    if (pid == 0)
        exec_child(argv, parent, log_fd, log_fd, unset_socket, nofile);
    setpgid(pid, pid);                 /* both sides set it: no race on kill(-pid) */
    if (log_fd >= 0)
        close(log_fd);
    H.pids[H.npids++] = pid;
    return pid;
}

pid_t
h_spawn(char *const argv[], const char *log_path)
{
    return spawn(argv, log_path, false, 0);
}

pid_t
h_spawn_nofile(char *const argv[], const char *log_path, unsigned nofile)
{
    return spawn(argv, log_path, false, nofile);
}

int
h_track(pid_t pid)
{
    if (H.npids == H_MAX_PIDS) {
        fprintf(stderr, "harness: more than %d live processes\n", H_MAX_PIDS);
        return -1;
    }
    if (!H.has_atexit) {
        atexit(h_kill_all);
        H.has_atexit = true;
    }
    H.pids[H.npids++] = pid;
    return 0;
}

long long
h_cpu_ms(pid_t pid)
{
    char path[64], *text, *p;
    unsigned long long ut, st;
    long tick = sysconf(_SC_CLK_TCK);
    long long ms = -1;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if ((text = h_read_file(path)) == NULL)
        return -1;
    /* after "(comm)", which may hold spaces: state is field 3, utime 14 */
    if ((p = strrchr(text, ')')) != NULL && tick > 0 &&
        sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut,
               &st) == 2)
        ms = (long long)((ut + st) * 1000ULL / (unsigned long long)tick);
    free(text);
    return ms;
}

int
h_open_fds(pid_t pid)
{
    char path[64];
    struct dirent *e;
    DIR *d;
    int n = 0;

    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    if ((d = opendir(path)) == NULL)
        return -1;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

long
h_rss_kib(pid_t pid)
{
    char path[64], *text, *p;
    long kib = -1;

    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    if ((text = h_read_file(path)) == NULL)
        return -1;
    if ((p = strstr(text, "\nVmRSS:")) != NULL)
        kib = strtol(p + 8, NULL, 10);
    free(text);
    return kib;
}

bool
h_alive(pid_t pid, int *status)
{
    int ws;
    pid_t r = waitpid(pid, &ws, WNOHANG);

    if (r == 0)
        return true;
    if (r == pid) {
        forget_pid(pid);
        if (status != NULL)
            *status = decode_status(ws);
        return false;
    }
    if (status != NULL)
        *status = -1;
    return false;
}

int
h_stop(pid_t pid, int sig, int timeout_ms)
{
    long long deadline = h_now_ms() + timeout_ms;
    int ws;

    if (!is_spawned(pid)) {
        /* reaped already: its pid may belong to someone else by now */
        fprintf(stderr, "harness: h_stop: pid %d is not a live process of this test\n",
                (int)pid);
        return -1;
    }
    if (kill(pid, sig) != 0 && errno != ESRCH) {
        fprintf(stderr, "harness: kill %d: %s\n", (int)pid, strerror(errno));
        return -1;
    }
    for (;;) {
        pid_t r = waitpid(pid, &ws, WNOHANG);

        if (r == pid) {
            forget_pid(pid);
            return decode_status(ws);
        }
        if (r < 0) {
            fprintf(stderr, "harness: waitpid %d: %s\n", (int)pid, strerror(errno));
            forget_pid(pid);
            return -1;
        }
        if (h_now_ms() >= deadline)
            break;
        h_sleep_ms(H_POLL_MS);
    }
    fprintf(stderr, "harness: pid %d did not exit within %d ms of signal %d; "
            "SIGKILL\n", (int)pid, timeout_ms, sig);
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
    waitpid(pid, &ws, 0);
    forget_pid(pid);
    return -1;
}

int
h_wait_exit(pid_t pid, int timeout_ms)
{
    long long deadline = h_now_ms() + timeout_ms;
    int status = -1;

    while (h_alive(pid, &status)) {
        if (h_now_ms() >= deadline)
            return -1;
        h_sleep_ms(H_POLL_MS);
    }
    return status;
}

void
h_kill_all(void)
{
    while (H.npids > 0) {
        pid_t pid = H.pids[--H.npids];

        kill(-pid, SIGKILL);
        kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
}

/* ---- readiness ------------------------------------------------------ */

/* One connection attempt to 127.0.0.1:<port>: true when it was accepted. */
static bool
port_accepts(int port)
{
    struct sockaddr_in sin = { .sin_family = AF_INET }, local;
    socklen_t llen = sizeof(local);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool ok;

    if (fd < 0)
        return false;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin.sin_port = htons((uint16_t)port);
    ok = connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0;
    /* Linux can connect a socket to itself when the ephemeral port it picks
     * is the one probed and nobody listens there: that is not readiness */
    if (ok && getsockname(fd, (struct sockaddr *)&local, &llen) == 0 &&
        local.sin_port == sin.sin_port)
        ok = false;
    close(fd);
    return ok;
}

static bool
unix_accepts(const char *path)
{
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    int fd;
    bool ok;

    if (strlen(path) >= sizeof(sun.sun_path))
        return false;
    strcpy(sun.sun_path, path);
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
        return false;
    ok = connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0;
    close(fd);
    return ok;
}

int
h_wait_port(int port, int timeout_ms)
{
    long long deadline = h_now_ms() + timeout_ms;

    for (;;) {
        if (port_accepts(port))
            return 0;
        if (h_now_ms() >= deadline)
            break;
        h_sleep_ms(H_POLL_MS);
    }
    fprintf(stderr, "harness: nothing accepted on 127.0.0.1:%d within %d ms\n",
            port, timeout_ms);
    return -1;
}

int
h_wait_path(const char *path, int timeout_ms)
{
    long long deadline = h_now_ms() + timeout_ms;
    struct stat st;

    for (;;) {
        if (stat(path, &st) == 0)
            return 0;
        if (h_now_ms() >= deadline)
            break;
        h_sleep_ms(H_POLL_MS);
    }
    fprintf(stderr, "harness: %s did not appear within %d ms\n", path, timeout_ms);
    return -1;
}

int
h_wait_unix(const char *path, int timeout_ms)
{
    long long deadline = h_now_ms() + timeout_ms;

    if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
        fprintf(stderr, "harness: unix socket path too long: %s\n", path);
        return -1;
    }
    for (;;) {
        if (unix_accepts(path))
            return 0;
        if (h_now_ms() >= deadline)
            break;
        h_sleep_ms(H_POLL_MS);
    }
    fprintf(stderr, "harness: unix socket %s accepted nothing within %d ms\n",
            path, timeout_ms);
    return -1;
}

/* True when <path> holds <needle> at or after byte <offset>. */
static bool
file_has_from(const char *path, long offset, const char *needle)
{
    char *text = read_file_from(path, offset, NULL);
    bool found = text != NULL && strstr(text, needle) != NULL;

    free(text);
    return found;
}

int
h_wait_log(const char *path, const char *needle, int timeout_ms)
{
    long long deadline = h_now_ms() + timeout_ms;

    for (;;) {
        if (file_has_from(path, 0, needle))
            return 0;
        if (h_now_ms() >= deadline)
            break;
        h_sleep_ms(H_POLL_MS);
    }
    fprintf(stderr, "harness: '%s' did not appear in %s within %d ms\n",
            needle, path, timeout_ms);
    h_dump_file(path, 4096);
    return -1;
}

/* ---- the test backend ----------------------------------------------- */

pid_t
h_backend_start(const char *name, int port, const char *dir, bool tcp)
{
    return h_backend_start_args(name, port, dir, tcp, NULL);
}

pid_t
h_backend_start_args(const char *name, int port, const char *dir, bool tcp,
                     const char *const *extra)
{
    char log[H_PATH_LEN], listen_arg[32], bin[H_PATH_LEN], ready[256];
    char *argv[24];
    long long deadline;
    long offset;
    pid_t pid;
    int argc = 0, status;

    snprintf(log, sizeof(log), "%s/backend-%s.log", dir, name);
    snprintf(listen_arg, sizeof(listen_arg), "127.0.0.1:%d", port);
    snprintf(bin, sizeof(bin), "%s", h_bin("tests/tools/backend"));
    snprintf(ready, sizeof(ready), "ready %s 127.0.0.1:%d\n", name, port);
    argv[argc++] = bin;
    argv[argc++] = (char *)"--name";
    argv[argc++] = (char *)name;
    argv[argc++] = (char *)"--listen";
    argv[argc++] = listen_arg;
    if (tcp)
        argv[argc++] = (char *)"--tcp";
    while (extra != NULL && *extra != NULL && argc < 23)
        argv[argc++] = (char *)*extra++;
    argv[argc] = NULL;

    offset = file_size(log);           /* a restart appends: skip older lines */
    if ((pid = spawn(argv, log, false, 0)) < 0)
        return -1;
    deadline = h_now_ms() + H_IO_TIMEOUT_MS;
    for (;;) {
        if (file_has_from(log, offset, ready))
            return pid;
        if (!h_alive(pid, &status)) {
            fprintf(stderr, "harness: backend %s (port %d) exited with %d before "
                    "it was ready\n", name, port, status);
            break;
        }
        if (h_now_ms() >= deadline) {
            fprintf(stderr, "harness: backend %s (port %d) not ready within %d ms\n",
                    name, port, H_IO_TIMEOUT_MS);
            h_stop(pid, SIGKILL, 1000);
            break;
        }
        h_sleep_ms(H_POLL_MS);
    }
    h_dump_file(log, 4096);
    return -1;
}

int
h_backend_set(int port, const char *query)
{
    char path[6144];
    struct h_resp r;
    int rc = -1;

    /* a cut query would set something else than asked: refuse it */
    if ((size_t)snprintf(path, sizeof(path), "/__backend/set?%s", query) >= sizeof(path)) {
        fprintf(stderr, "harness: backend :%d set: query of %zu bytes too long\n", port,
                strlen(query));
        return -1;
    }
    if (h_get(port, path, NULL, &r) != 0) {
        fprintf(stderr, "harness: backend :%d set '%s': no answer\n", port, query);
        return -1;
    }
    if (r.status == 200)
        rc = 0;
    else
        fprintf(stderr, "harness: backend :%d set '%s': %d %s", port, query,
                r.status, r.body != NULL ? r.body : "");
    h_resp_free(&r);
    return rc;
}

json_t *
h_backend_stats(int port)
{
    struct h_resp r;
    json_error_t je;
    json_t *j = NULL;

    if (h_get(port, "/__backend/stats", NULL, &r) != 0) {
        fprintf(stderr, "harness: backend :%d stats: no answer\n", port);
        return NULL;
    }
    if (r.status != 200)
        fprintf(stderr, "harness: backend :%d stats: status %d\n", port, r.status);
    else if ((j = json_loadb(r.body, r.body_len, 0, &je)) == NULL)
        fprintf(stderr, "harness: backend :%d stats: bad JSON: %s\n", port, je.text);
    h_resp_free(&r);
    return j;
}

long
h_backend_stat(int port, const char *key)
{
    json_t *j = h_backend_stats(port);
    json_t *n = j != NULL ? json_object_get(j, key) : NULL;
    long v = -1;

    if (json_is_integer(n))
        v = (long)json_integer_value(n);
    else if (j != NULL)
        fprintf(stderr, "harness: backend :%d stats: no \"%s\"\n", port, key);
    json_decref(j);
    return v;
}

long
h_backend_requests(int port)
{
    return h_backend_stat(port, "requests");
}

long
h_backend_wait_stat(int port, const char *key, long want, int timeout_ms)
{
    long long deadline = h_now_ms() + timeout_ms;
    long v;

    for (;;) {
        v = h_backend_stat(port, key);
        if (v == want || h_now_ms() >= deadline)
            return v;
        h_sleep_ms(10);
    }
}

int
h_backend_set_raw(int port, const char *bytes, const char *more)
{
    size_t n = strlen(bytes), i;
    char *q = xmalloc(n * 3 + strlen(more != NULL ? more : "") + 8), *p;
    int rc;

    p = q + sprintf(q, "raw=");
    for (i = 0; i < n; i++) {
        if (isalnum((unsigned char)bytes[i]))
            *p++ = bytes[i];           /* keeps long bodies within the request */
        else
            p += sprintf(p, "%%%02X", (unsigned char)bytes[i]);
    }
    sprintf(p, "%s", more != NULL ? more : "");
    rc = h_backend_set(port, q);
    free(q);
    return rc;
}

/* ---- raw HTTP client ------------------------------------------------- */

int
h_set_timeout_ms(int fd, int ms)
{
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0) {
        fprintf(stderr, "harness: socket timeouts on fd %d: %s\n", fd, strerror(errno));
        return -1;
    }
    return 0;
}

int
h_connect(int port)
{
    return h_connect_from(NULL, port);
}

int
h_connect_from(const char *src_ip, int port)
{
    struct sockaddr_in sin = { .sin_family = AF_INET }, src = { .sin_family = AF_INET };
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

    if (fd < 0) {
        fprintf(stderr, "harness: socket: %s\n", strerror(errno));
        return -1;
    }
    if (src_ip != NULL) {
        /* any port: only the address is chosen */
        if (inet_pton(AF_INET, src_ip, &src.sin_addr) != 1) {
            fprintf(stderr, "harness: %s: not an IPv4 address\n", src_ip);
            goto fail;
        }
        if (bind(fd, (struct sockaddr *)&src, sizeof(src)) != 0) {
            fprintf(stderr, "harness: bind %s: %s\n", src_ip, strerror(errno));
            goto fail;
        }
    }
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin.sin_port = htons((uint16_t)port);
    if (h_set_timeout_ms(fd, H_IO_TIMEOUT_MS) != 0)
        goto fail;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
        fprintf(stderr, "harness: connect 127.0.0.1:%d%s%s: %s\n", port,
                src_ip != NULL ? " from " : "", src_ip != NULL ? src_ip : "",
                strerror(errno));
        goto fail;
    }
    return fd;

fail:
    close(fd);
    return -1;
}

int
h_unix_connect(const char *path)
{
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    int fd;

    if (strlen(path) >= sizeof(sun.sun_path)) {
        fprintf(stderr, "harness: unix socket path too long: %s\n", path);
        return -1;
    }
    strcpy(sun.sun_path, path);
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
        fprintf(stderr, "harness: socket: %s\n", strerror(errno));
        return -1;
    }
    if (h_set_timeout_ms(fd, H_IO_TIMEOUT_MS) != 0
        || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
        fprintf(stderr, "harness: connect %s: %s\n", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

int
h_send_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;

    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            fprintf(stderr, "harness: send on fd %d (%zu bytes left): %s\n", fd, len,
                    n < 0 ? strerror(errno) : "nothing written");
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

size_t
h_recv_n(int fd, void *buf, size_t n)
{
    size_t got = 0;
    ssize_t k;

    while (got < n && (k = recv(fd, (char *)buf + got, n - got, 0)) > 0)
        got += (size_t)k;
    return got;
}

/* Why the last read failed, for the messages. */
enum h_rd { H_RD_OK, H_RD_EOF, H_RD_ERR, H_RD_LONG };

static const char *
rd_text(enum h_rd r, int err)
{
    switch (r) {
    case H_RD_EOF:
        return "connection closed";
    case H_RD_LONG:
        return "too long";
    case H_RD_ERR:
        return err == EAGAIN || err == EWOULDBLOCK ? "timed out" : strerror(err);
    default:
        return "ok";
    }
}

/* A reader of socket *<arg>: recv(), peeking or not. */
static ssize_t
fd_recv(void *arg, void *buf, size_t n, bool peek)
{
    ssize_t got;

    do
        got = recv(*(int *)arg, buf, n, peek ? MSG_PEEK : 0);
    while (got < 0 && errno == EINTR);
    return got;
}

/* Reads exactly <n> bytes (fewer at EOF or an error). */
static ssize_t
recv_all(const struct h_reader *rd, char *buf, size_t n)
{
    size_t got = 0;

    while (got < n) {
        ssize_t k = rd->recv(rd->arg, buf + got, n - got, false);

        if (k <= 0)
            return got > 0 ? (ssize_t)got : k;
        got += (size_t)k;
    }
    return (ssize_t)got;
}

/* Reads bytes into <buf> (capacity <cap>, at <*len> already) up to and
 * including <delim>, never consuming anything after it. */
static enum h_rd
read_until(const struct h_reader *rd, const char *delim, char *buf, size_t cap, size_t *len,
           int *err)
{
    size_t dl = strlen(delim);

    for (;;) {
        size_t room = cap - *len, from, i;
        ssize_t n, got;

        if (room == 0)
            return H_RD_LONG;
        n = rd->recv(rd->arg, buf + *len, room, true);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            *err = errno;
            return H_RD_ERR;
        }
        if (n == 0)
            return H_RD_EOF;
        from = *len >= dl - 1 ? *len - (dl - 1) : 0;
        for (i = from; i + dl <= *len + (size_t)n; i++)
            if (memcmp(buf + i, delim, dl) == 0)
                break;
        /* consume exactly the peeked bytes up to the end of <delim> (or all) */
        if (i + dl <= *len + (size_t)n)
            n = (ssize_t)(i + dl - *len);
        got = recv_all(rd, buf + *len, (size_t)n);
        if (got != n) {
            *err = got < 0 ? errno : EIO;
            return H_RD_ERR;
        }
        *len += (size_t)n;
        if (*len >= dl && memcmp(buf + *len - dl, delim, dl) == 0)
            return H_RD_OK;
    }
}

/* Appends exactly <n> bytes from <fd> to the response body. */
static enum h_rd
read_body_exact(const struct h_reader *rd, struct h_resp *r, size_t n, int *err)
{
    if (r->body_len + n > H_BODY_MAX)
        return H_RD_LONG;
    r->body = xrealloc(r->body, r->body_len + n + 1);
    while (n > 0) {
        ssize_t got = rd->recv(rd->arg, r->body + r->body_len, n, false);

        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            *err = errno;
            return H_RD_ERR;
        }
        if (got == 0) {
            r->closed = true;
            return H_RD_EOF;
        }
        r->body_len += (size_t)got;
        n -= (size_t)got;
    }
    r->body[r->body_len] = '\0';
    return H_RD_OK;
}

static enum h_rd
read_body_chunked(const struct h_reader *rdr, struct h_resp *r, int *err, const char **what)
{
    char line[1024];
    enum h_rd rd;

    for (;;) {
        size_t len = 0, size = 0, i;
        char crlf[2];

        *what = "chunk size line";
        if ((rd = read_until(rdr, "\r\n", line, sizeof(line) - 1, &len, err)) != H_RD_OK)
            return rd;
        line[len] = '\0';
        for (i = 0; line[i] != '\0'; i++) {
            int d;

            if (line[i] >= '0' && line[i] <= '9')
                d = line[i] - '0';
            else if (line[i] >= 'a' && line[i] <= 'f')
                d = line[i] - 'a' + 10;
            else if (line[i] >= 'A' && line[i] <= 'F')
                d = line[i] - 'A' + 10;
            else
                break;
            if (size > H_BODY_MAX)
                return H_RD_LONG;
            size = size * 16 + (size_t)d;
        }
        if (i == 0 || (line[i] != '\r' && line[i] != ';' && line[i] != ' ')) {
            *err = EPROTO;
            return H_RD_ERR;
        }
        if (size == 0)
            break;
        *what = "chunk data";
        if ((rd = read_body_exact(rdr, r, size, err)) != H_RD_OK)
            return rd;
        len = 0;
        if ((rd = read_until(rdr, "\r\n", crlf, sizeof(crlf), &len, err)) == H_RD_LONG) {
            *what = "CRLF after chunk data";
            *err = EPROTO;
            return H_RD_ERR;
        }
        if (rd != H_RD_OK)
            return rd;
    }
    *what = "trailer";
    for (;;) {
        size_t len = 0;

        if ((rd = read_until(rdr, "\r\n", line, sizeof(line) - 1, &len, err)) != H_RD_OK)
            return rd;
        if (len == 2)
            return H_RD_OK;
    }
}

static enum h_rd
read_body_to_eof(const struct h_reader *rd, struct h_resp *r, int *err)
{
    for (;;) {
        ssize_t got;

        if (r->body_len + 65536 > H_BODY_MAX)
            return H_RD_LONG;
        r->body = xrealloc(r->body, r->body_len + 65536 + 1);
        got = rd->recv(rd->arg, r->body + r->body_len, 65536, false);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            *err = errno;
            return H_RD_ERR;
        }
        if (got == 0) {
            r->closed = true;
            r->body[r->body_len] = '\0';
            return H_RD_OK;
        }
        r->body_len += (size_t)got;
    }
}

/* Is "chunked" the last transfer coding in <v>? */
static bool
ends_with_chunked(const char *v)
{
    size_t n = strlen(v);

    return n >= 7 && strcasecmp(v + n - 7, "chunked") == 0 &&
           (n == 7 || v[n - 8] == ',' || v[n - 8] == ' ' || v[n - 8] == '\t');
}

static int
read_response(const struct h_reader *rdr, struct h_resp *r, bool head_only)
{
    int fd = rdr->fd;
    char value[256];
    const char *what = "head";
    enum h_rd rd;
    int err = 0;
    size_t len;

    memset(r, 0, sizeof(*r));
    for (;;) {
        len = 0;
        rd = read_until(rdr, "\r\n\r\n", r->head, sizeof(r->head) - 1, &len, &err);
        r->head[len] = '\0';
        if (rd != H_RD_OK) {
            r->closed = rd == H_RD_EOF;
            fprintf(stderr, "harness: fd %d: no response head (%s) after %zu bytes%s%.80s\n",
                    fd, rd_text(rd, err), len, len ? ": " : "", r->head);
            return -1;
        }
        if (len < 13 || strncmp(r->head, "HTTP/1.", 7) != 0 || r->head[8] != ' ' ||
            r->head[9] < '1' || r->head[9] > '5' || r->head[10] < '0' ||
            r->head[10] > '9' || r->head[11] < '0' || r->head[11] > '9' ||
            (r->head[12] != ' ' && r->head[12] != '\r')) {
            fprintf(stderr, "harness: fd %d: not an HTTP response: %.80s\n", fd, r->head);
            return -1;
        }
        r->status = (r->head[9] - '0') * 100 + (r->head[10] - '0') * 10 + (r->head[11] - '0');
        if (r->status >= 200 || r->status == 101)
            break;
    }
    r->body = xmalloc(1);
    r->body[0] = '\0';
    if (head_only || r->status < 200 || r->status == 204 || r->status == 304)
        return 0;

    if (h_resp_header(r, "Transfer-Encoding", value, sizeof(value)) != NULL &&
        ends_with_chunked(value)) {
        rd = read_body_chunked(rdr, r, &err, &what);
    } else if (h_resp_header(r, "Content-Length", value, sizeof(value)) != NULL) {
        char *end;
        unsigned long long n;

        errno = 0;
        n = strtoull(value, &end, 10);
        if (value[0] < '0' || value[0] > '9' || *end != '\0' || errno != 0) {
            fprintf(stderr, "harness: fd %d: bad Content-Length '%s'\n", fd, value);
            return -1;
        }
        what = "body";
        rd = n > H_BODY_MAX ? H_RD_LONG : read_body_exact(rdr, r, (size_t)n, &err);
    } else {
        what = "body until close";
        rd = read_body_to_eof(rdr, r, &err);
    }
    if (rd != H_RD_OK) {
        fprintf(stderr, "harness: fd %d: status %d, reading the %s: %s after %zu body "
                "bytes\n", fd, r->status, what, rd_text(rd, err), r->body_len);
        return -1;
    }
    return 0;
}

int
h_read_response(int fd, struct h_resp *r)
{
    struct h_reader rd = { fd_recv, &fd, fd };

    return read_response(&rd, r, false);
}

int
h_read_response_head(int fd, struct h_resp *r)
{
    struct h_reader rd = { fd_recv, &fd, fd };

    return read_response(&rd, r, true);
}

int
h_read_response_from(const struct h_reader *rd, struct h_resp *r)
{
    return read_response(rd, r, false);
}

int
h_get(int port, const char *path, const char *extra_headers, struct h_resp *r)
{
    return h_get_from(NULL, port, path, extra_headers, r);
}

int
h_get_from(const char *src_ip, int port, const char *path, const char *extra_headers,
           struct h_resp *r)
{
    char req[8192];
    int fd, n, rc;

    memset(r, 0, sizeof(*r));
    n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                 "Connection: close\r\n%s\r\n", path, port,
                 extra_headers != NULL ? extra_headers : "");
    if (n < 0 || (size_t)n >= sizeof(req)) {
        fprintf(stderr, "harness: GET %s: request too long\n", path);
        return -1;
    }
    if ((fd = h_connect_from(src_ip, port)) < 0)
        return -1;
    rc = h_send_all(fd, req, (size_t)n);
    if (rc == 0)
        rc = h_read_response(fd, r);
    if (rc != 0)
        fprintf(stderr, "harness: GET 127.0.0.1:%d%s failed\n", port, path);
    close(fd);
    return rc;
}

int
h_exchange(int port, const char *raw, struct h_resp *r)
{
    int fd, rc;

    memset(r, 0, sizeof(*r));
    if ((fd = h_connect(port)) < 0)
        return -1;
    rc = h_send_all(fd, raw, strlen(raw)) == 0 ? h_read_response(fd, r) : -1;
    close(fd);
    return rc;
}

const char *
h_resp_header(const struct h_resp *r, const char *name, char *buf, size_t len)
{
    size_t nl = strlen(name);
    const char *p = strstr(r->head, "\r\n");

    while (p != NULL && p[2] != '\r' && p[2] != '\0') {
        const char *line = p + 2, *eol = strstr(line, "\r\n");

        if (eol == NULL)
            break;
        if ((size_t)(eol - line) > nl && strncasecmp(line, name, nl) == 0 &&
            line[nl] == ':') {
            const char *v = line + nl + 1, *ve = eol;
            size_t vl;

            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            vl = (size_t)(ve - v);
            if (len == 0)
                return NULL;
            if (vl >= len)
                vl = len - 1;
            memcpy(buf, v, vl);
            buf[vl] = '\0';
            return buf;
        }
        p = eol;
    }
    return NULL;
}

void
h_resp_free(struct h_resp *r)
{
    free(r->body);
    r->body = NULL;
    r->body_len = 0;
}

bool
h_peer_closed(int fd, int timeout_ms)
{
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    char ch;
    ssize_t n;

    if (poll(&pfd, 1, timeout_ms) <= 0)
        return false;
    n = recv(fd, &ch, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

/* ---- cutoverctl and cutoverd ---------------------------------------- */

/* Runs cutoverctl; stdout into *out_text (owned by the caller). */
static int
ctl_run(const char *sock, bool json, char **out_text, va_list ap)
{
    char *argv[H_CTL_ARGS + 1];
    char bin[H_PATH_LEN];
    int out_pipe[2] = { -1, -1 }, err_pipe[2] = { -1, -1 };
    size_t out_len = 0, out_cap = 4096, err_len = 0;
    long long deadline = h_now_ms() + H_CTL_TIMEOUT_MS;
    pid_t parent = getpid(), pid;
    int argc = 0, ws, i;
    const char *a;
    bool killed = false;

    H.ctl_status = -1;
    H.ctl_err[0] = '\0';
    *out_text = xmalloc(out_cap);
    (*out_text)[0] = '\0';
    snprintf(bin, sizeof(bin), "%s", h_bin("cutoverctl"));
    argv[argc++] = bin;
    if (sock != NULL) {
        argv[argc++] = (char *)"-s";
        argv[argc++] = (char *)sock;
    }
    if (json)
        argv[argc++] = (char *)"--json";
    while ((a = va_arg(ap, const char *)) != NULL) {
        if (argc == H_CTL_ARGS) {
            fprintf(stderr, "harness: cutoverctl: more than %d arguments\n", H_CTL_ARGS);
            return -1;
        }
        argv[argc++] = (char *)a;
    }
    argv[argc] = NULL;

    if (pipe(out_pipe) != 0 || pipe(err_pipe) != 0) {
        fprintf(stderr, "harness: pipe: %s\n", strerror(errno));
        goto fail;
    }
    fflush(stdout);
    fflush(stderr);
    if ((pid = fork()) < 0) {
        fprintf(stderr, "harness: fork for cutoverctl: %s\n", strerror(errno));
        goto fail;
    }
    if (pid == 0) {
        close(out_pipe[0]);
        close(err_pipe[0]);
        exec_child(argv, parent, out_pipe[1], err_pipe[1], false, 0);
    }
    close(out_pipe[1]);
    close(err_pipe[1]);
    out_pipe[1] = err_pipe[1] = -1;

    /* drain both pipes together: a full stderr pipe must not block stdout */
    while (out_pipe[0] >= 0 || err_pipe[0] >= 0) {
        struct pollfd pfd[2] = { { .fd = out_pipe[0], .events = POLLIN },
                                 { .fd = err_pipe[0], .events = POLLIN } };
        long long left = deadline - h_now_ms();
        int pr;

        if (left <= 0) {
            kill(pid, SIGKILL);
            killed = true;
            break;
        }
        pr = poll(pfd, 2, (int)left);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr < 0)
            break;
        if (pfd[0].revents != 0) {
            ssize_t n;

            if (out_cap - out_len < 4096) {
                out_cap *= 2;
                *out_text = xrealloc(*out_text, out_cap);
            }
            n = read(out_pipe[0], *out_text + out_len, out_cap - out_len - 1);
            if (n > 0) {
                out_len += (size_t)n;
            } else if (n == 0 || errno != EINTR) {
                close(out_pipe[0]);
                out_pipe[0] = -1;
            }
            (*out_text)[out_len] = '\0';
        }
        if (pfd[1].revents != 0) {
            char tmp[4096];
            ssize_t n = read(err_pipe[0], tmp, sizeof(tmp));

            if (n > 0) {
                size_t keep = sizeof(H.ctl_err) - 1 - err_len;

                if ((size_t)n < keep)
                    keep = (size_t)n;
                memcpy(H.ctl_err + err_len, tmp, keep);
                err_len += keep;
                H.ctl_err[err_len] = '\0';
            } else if (n == 0 || errno != EINTR) {
                close(err_pipe[0]);
                err_pipe[0] = -1;
            }
        }
    }
    while (waitpid(pid, &ws, 0) < 0 && errno == EINTR)
        ;
    for (i = 0; i < 2; i++) {
        if (out_pipe[i] >= 0)
            close(out_pipe[i]);
        if (err_pipe[i] >= 0)
            close(err_pipe[i]);
    }
    if (killed) {
        fprintf(stderr, "harness: cutoverctl %s did not finish within %d ms; killed\n",
                argc > 1 ? argv[argc - 1] : "", H_CTL_TIMEOUT_MS);
        return -1;
    }
    H.ctl_status = WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
    if (H.ctl_status == 127)
        fprintf(stderr, "harness: %s", H.ctl_err);
    return H.ctl_status;

fail:
    for (i = 0; i < 2; i++) {
        if (out_pipe[i] >= 0)
            close(out_pipe[i]);
        if (err_pipe[i] >= 0)
            close(err_pipe[i]);
    }
    return -1;
}

int
h_ctl(const char *sock, char *out, size_t outlen, ...)
{
    char *text = NULL;
    va_list ap;
    int rc;

    va_start(ap, outlen);
    rc = ctl_run(sock, false, &text, ap);
    va_end(ap);
    if (out != NULL && outlen > 0)
        snprintf(out, outlen, "%s", text);
    free(text);
    return rc;
}

json_t *
h_ctl_json(const char *sock, ...)
{
    char *text = NULL;
    json_error_t je;
    json_t *j = NULL;
    va_list ap;
    int rc;

    va_start(ap, sock);
    rc = ctl_run(sock, true, &text, ap);
    va_end(ap);
    if (rc >= 0) {
        j = json_loads(text, JSON_DISABLE_EOF_CHECK, &je);
        if (j == NULL)
            fprintf(stderr, "harness: cutoverctl --json (exit %d) printed no JSON (%s):\n"
                    "stdout: %.500s\nstderr: %.500s\n", rc, je.text, text, H.ctl_err);
    }
    free(text);
    return j;
}

const char *
h_ctl_err(void)
{
    return H.ctl_err;
}

int
h_ctl_status(void)
{
    return H.ctl_status;
}

int
h_cutoverd_check(const char *conf, char *out, size_t outlen)
{
    char cmd[2 * H_PATH_LEN];
    FILE *p;
    size_t n;
    int st;

    out[0] = '\0';
    snprintf(cmd, sizeof(cmd), "'%s' -t -c '%s' 2>&1", h_bin("cutoverd"), conf);
    if ((p = popen(cmd, "r")) == NULL) {
        fprintf(stderr, "harness: popen %s: %s\n", cmd, strerror(errno));
        return -1;
    }
    n = fread(out, 1, outlen - 1, p);
    out[n] = '\0';
    st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

pid_t
h_cutoverd_start(const char *conf, const char *log, const char *admin_sock, int port)
{
    char bin[H_PATH_LEN];
    char *argv[4];
    long long deadline = h_now_ms() + 10000;
    pid_t pid;
    int status;

    snprintf(bin, sizeof(bin), "%s", h_bin("cutoverd"));
    argv[0] = bin;
    argv[1] = (char *)"-c";
    argv[2] = (char *)conf;
    argv[3] = NULL;
    if ((pid = spawn(argv, log, true, 0)) < 0)
        return -1;
    for (;;) {
        if (unix_accepts(admin_sock) && (port <= 0 || port_accepts(port)))
            return pid;
        if (!h_alive(pid, &status)) {
            fprintf(stderr, "harness: cutoverd -c %s exited with %d before it was "
                    "ready\n", conf, status);
            break;
        }
        if (h_now_ms() >= deadline) {
            fprintf(stderr, "harness: cutoverd -c %s not ready within 10 s (admin "
                    "socket %s: %s, port %d: %s)\n", conf, admin_sock,
                    unix_accepts(admin_sock) ? "up" : "down", port,
                    port <= 0 ? "not waited for" : port_accepts(port) ? "up" : "down");
            h_stop(pid, SIGKILL, 1000);
            break;
        }
        h_sleep_ms(H_POLL_MS);
    }
    h_dump_file(log, 8192);
    return -1;
}

/* ---- JSON ------------------------------------------------------------ */

unsigned char *
h_b64_decode(const char *s, size_t *len)
{
    return tb64_decode(s, len);
}

json_t *
h_json_at(const json_t *root, const char *path)
{
    json_t *v = (json_t *)root;
    const char *p = path;
    char key[256];

    while (v != NULL && *p != '\0') {
        size_t n = strcspn(p, ".");

        if (n >= sizeof(key))
            return NULL;
        memcpy(key, p, n);
        key[n] = '\0';
        p += n + (p[n] == '.');
        if (json_is_array(v) && n > 0 && strspn(key, "0123456789") == n)
            v = json_array_get(v, strtoul(key, NULL, 10));
        else
            v = json_object_get(v, key);
    }
    return v;
}

/* ---- upstream TLS certificates --------------------------------------- */

int
h_tls_make_upstream_certs(const char *dir)
{
    /* EC P-256 keys: quick to make; 30 days, so never expired in a run */
    static const char script[] =
        "set -e\n"
        "cd \"$1\"\n"
        "ca() { openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
        " -keyout \"$1.key\" -out \"$1.pem\" -days 30 -subj \"/CN=$2\""
        " -addext basicConstraints=critical,CA:TRUE"
        " -addext keyUsage=critical,keyCertSign,cRLSign; }\n"
        "leaf() { openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
        " -keyout \"$1.key\" -out \"$1.csr\" -subj \"/CN=$1\"\n"
        "  printf 'subjectAltName=%s\\nextendedKeyUsage=%s\\nbasicConstraints=CA:FALSE\\n'"
        " \"$3\" \"$4\" >\"$1.ext\"\n"
        "  openssl x509 -req -in \"$1.csr\" -CA \"$2.pem\" -CAkey \"$2.key\""
        " -CAcreateserial -days 30 -out \"$1.pem\" -extfile \"$1.ext\"; }\n"
        "ca up-ca 'cutover test upstream CA'\n"
        "ca up-ca2 'cutover test second CA'\n"
        "leaf up-ip up-ca IP:127.0.0.1 serverAuth\n"
        "leaf up-dns up-ca DNS:backend.test serverAuth\n"
        "leaf up-other up-ca2 IP:127.0.0.1,DNS:backend.test serverAuth\n"
        "leaf up-client up-ca DNS:cutover-client clientAuth\n";
    char path[H_PATH_LEN], log[H_PATH_LEN], *argv[] = {
        (char *)"/bin/sh", (char *)"-c", (char *)script, (char *)"sh", path, NULL
    };
    pid_t pid;
    int rc;

    snprintf(path, sizeof(path), "%s", dir);
    snprintf(log, sizeof(log), "%s/openssl-upstream-certs.log", dir);
    if ((pid = h_spawn(argv, log)) < 0)
        return -1;
    rc = h_wait_exit(pid, 30000);
    if (rc != 0) {
        fprintf(stderr, "harness: making the upstream TLS certificates in %s failed (%d)\n",
                dir, rc);
        h_dump_file(log, 4096);
        return -1;
    }
    return 0;
}
