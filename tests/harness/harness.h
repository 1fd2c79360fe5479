/*
 * harness: what every integration test uses to run real processes and talk
 * to them: paths of the built binaries, temporary directories, free loopback
 * ports, spawning and stopping processes (each in its own process group,
 * killed with the test), waiting for readiness, the test backend's control
 * API, a blocking raw-socket HTTP/1.1 client (from a chosen loopback
 * address when a test needs another client), runs of cutoverctl and
 * cutoverd -t, a JSON path reader, and small tmpfs disks to fill or make
 * read-only (root only).
 * Blocking and single-threaded on purpose: a test is a script. Every failure
 * prints what failed (port, path, errno) on stderr before returning -1/NULL,
 * so a failing assertion explains itself.
 */
#ifndef CUTOVER_TESTS_HARNESS_H
#define CUTOVER_TESTS_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <jansson.h>

/* ---- paths ---------------------------------------------------------- */

/* $CUTOVER_BIN_DIR/<name> (default "build/<name>"), e.g.
 * h_bin("cutoverd"), h_bin("tests/tools/backend"). The result lives in a
 * ring of 16 static buffers: copy it if it must outlive 15 more calls. */
const char *h_bin(const char *name);

/* $CUTOVER_SRC_DIR/<path> (default "./<path>"); same lifetime as h_bin(). */
const char *h_src(const char *path);

/* ---- files and directories ----------------------------------------- */

/* A new private directory under $TMPDIR (or /tmp). Caller frees the string;
 * NULL on failure. */
char *h_tmpdir(void);

/* Removes <dir> and everything below it (symlinks are not followed).
 * Refuses "", "/" and NULL. */
void h_rmrf(const char *dir);

/* Writes <text> to <path> (created or truncated). Returns 0 or -1. */
int h_write_file(const char *path, const char *text);

/* The whole file, NUL-terminated; caller frees. NULL when unreadable. */
char *h_read_file(const char *path);

/* Copies the last <max_bytes> of <path> to stderr under a banner (logs of
 * a process that failed). */
void h_dump_file(const char *path, size_t max_bytes);

/* ---- file systems (root only) --------------------------------------- */

/* Mounts a tmpfs of <bytes> (mode 0700) on the existing directory <dir>:
 * a small disk that a test can fill and make read-only. Returns 0, or -1
 * with the reason on stderr (EPERM when not root). */
int h_tmpfs_mount(const char *dir, size_t bytes);

/* Remounts the tmpfs on <dir> read-only (<ro>) or read-write again. 0 or -1. */
int h_tmpfs_remount(const char *dir, size_t bytes, bool ro);

/* Unmounts <dir> (lazily: open files do not stop it). Safe on a directory
 * that is not a mount point. */
void h_umount(const char *dir);

/* Creates <path> and writes zeros into it until the file system is full
 * (ENOSPC). Returns the bytes written, or -1 on another error. */
long long h_fill_fs(const char *path);

/* ---- time ----------------------------------------------------------- */

long long h_now_ms(void);              /* monotonic clock, ms */
void h_sleep_ms(int ms);

/* ---- processes ------------------------------------------------------ */

/* A loopback TCP port that was free a moment ago (bind 127.0.0.1:0) and was
 * not handed out before by this process. -1 on failure. */
int h_free_port(void);

/* Starts argv[0] (a path) with <argv>: stdout and stderr appended to
 * <log_path> (NULL: inherited), stdin from /dev/null, its own process
 * group, SIGKILLed when the test process dies. The pid is recorded for
 * h_kill_all(), which is registered with atexit() on first use.
 * Returns the pid or -1. */
pid_t h_spawn(char *const argv[], const char *log_path);

/* h_spawn() with RLIMIT_NOFILE (soft and hard) set to <nofile> in the child
 * before exec (0: inherited): a daemon short of descriptors. */
pid_t h_spawn_nofile(char *const argv[], const char *log_path, unsigned nofile);

/* Records <pid>, a child a test forked itself into its own process group
 * (a browser with extra pipes: tests/harness/cdp.c), for h_stop(),
 * h_alive() and h_kill_all(). Returns 0, or -1 when too many live. */
int h_track(pid_t pid);

/* CPU time (user + system) <pid> has used so far, in ms (/proc); -1 when
 * it cannot be read. */
long long h_cpu_ms(pid_t pid);

/* Descriptors <pid> has open now (/proc/PID/fd); -1 when unreadable. */
int h_open_fds(pid_t pid);

/* Resident set size of <pid> now, in KiB (/proc/PID/status); -1 when
 * unreadable. */
long h_rss_kib(pid_t pid);

/* Sends <sig> to <pid> and waits up to <timeout_ms> for it to exit; after
 * the timeout the process group is SIGKILLed. Returns the exit code, 128+N
 * when killed by signal N, or -1 when it did not exit in time or is not a
 * live process started by h_spawn() (then nothing is signalled). The pid is
 * forgotten by h_kill_all(). */
int h_stop(pid_t pid, int sig, int timeout_ms);

/* True while <pid> (a child) has not exited. A child found dead is reaped,
 * forgotten, and its exit status stored in *status when non-NULL (as h_stop). */
bool h_alive(pid_t pid, int *status);

/* Waits up to <timeout_ms> for <pid> (a child) to exit by itself, sending
 * nothing. Returns its exit code (as h_stop), or -1 when it still runs
 * (then it is left running) or is not a child. */
int h_wait_exit(pid_t pid, int timeout_ms);

/* SIGKILLs and reaps every process started by h_spawn() and not stopped
 * yet (their process groups too). Safe to call any number of times; meant
 * for cmocka teardowns and atexit(). */
void h_kill_all(void);

/* ---- readiness ------------------------------------------------------ */

/* Waits until 127.0.0.1:<port> accepts a connection (that connection is
 * closed at once). Returns 0, or -1 after <timeout_ms>. */
int h_wait_port(int port, int timeout_ms);

/* Waits until <path> exists. Returns 0, or -1 after <timeout_ms>. */
int h_wait_path(const char *path, int timeout_ms);

/* Waits until the unix socket <path> accepts a connection. 0 or -1. */
int h_wait_unix(const char *path, int timeout_ms);

/* Waits until the file <path> contains <needle>. Returns 0, or -1 after
 * <timeout_ms> (the file is then dumped on stderr). */
int h_wait_log(const char *path, const char *needle, int timeout_ms);

/* ---- the test backend (tests/tools/backend) ------------------------- */

/* Starts a backend named <name> on 127.0.0.1:<port> (TCP echo mode when
 * <tcp>), logging to <dir>/backend-<name>.log, and waits for its "ready"
 * line (not by connecting: that would count in its stats). Returns the pid
 * or -1 (the log is dumped). */
pid_t h_backend_start(const char *name, int port, const char *dir, bool tcp);

/* The same with more arguments <extra> (NULL-terminated; NULL: none), e.g.
 * the TLS ones: { "--tls-cert", PEM, "--tls-key", PEM, NULL }. */
pid_t h_backend_start_args(const char *name, int port, const char *dir, bool tcp,
                           const char *const *extra);

/* GET /__backend/set?<query> on the backend at <port>, e.g.
 * "error_rate=0.5&seed=7", "script=200x8,500x3,hang", "mode=reset",
 * "reset=1" (keys: see tests/tools/backend.c). Note that status= only
 * sets the status of error answers: every answer a 503 is
 * "error_rate=1&status=503". Returns 0 when it answered 200. */
int h_backend_set(int port, const char *query);

/* The backend's /__backend/stats object (caller json_decref()s) or NULL. */
json_t *h_backend_stats(int port);

/* The integer <key> of /__backend/stats ("requests", "heads", "open",
 * "aborted", "request_connections"...), -1 when there is none. */
long h_backend_stat(int port, const char *key);

/* "requests" from /__backend/stats: complete requests it received, not
 * counting /healthz and /__backend/. -1 on failure. */
long h_backend_requests(int port);

/* Polls h_backend_stat() every 10 ms until <key> equals <want>, at most
 * <timeout_ms>. Returns the last value seen. */
long h_backend_wait_stat(int port, const char *key, long want, int timeout_ms);

/* h_backend_set() of "raw=<bytes>" with every byte percent-encoded, plus
 * <more> (NULL, or "&raw_close=1" and the like): the backend answers with
 * exactly <bytes>. Returns 0 when it answered 200. */
int h_backend_set_raw(int port, const char *bytes, const char *more);

/* ---- raw HTTP client ------------------------------------------------- */

/* A blocking TCP connection to 127.0.0.1:<port> with 5 s send and receive
 * timeouts and TCP_NODELAY. Returns the fd or -1. */
int h_connect(int port);

/* The same from local address <src_ip> (another loopback address such as
 * "127.0.0.2", so that the proxy sees another client; NULL: the kernel's
 * choice, as h_connect()). Returns the fd or -1. */
int h_connect_from(const char *src_ip, int port);

/* A blocking connection to the unix socket <path> with 5 s send and
 * receive timeouts. Returns the fd or -1. */
int h_unix_connect(const char *path);

/* Sets the send and receive timeouts of <fd> to <ms>. 0 or -1. */
int h_set_timeout_ms(int fd, int ms);

/* Writes all of <buf>. Returns 0, or -1 on error or timeout. */
int h_send_all(int fd, const void *buf, size_t len);

/* Receives until <n> bytes are in <buf>, the peer's EOF, an error or the
 * socket's timeout. Returns the number of bytes received: fewer than <n>
 * when it stopped early (no message: a short read may be what a test
 * expects). */
size_t h_recv_n(int fd, void *buf, size_t n);

/* One response. <head> holds the status line and headers, NUL-terminated,
 * ending with the empty line. <body> (owned, NUL-terminated, decoded when
 * chunked) may hold NULs; body_len excludes the terminator. <closed> is
 * set when the peer's EOF was seen while reading it. */
struct h_resp {
    int status;
    char head[8192];
    char *body;
    size_t body_len;
    bool closed;
};

/* Reads exactly one response from <fd> (interim 1xx responses other than
 * 101 are skipped): the head, then the body by Content-Length, chunked
 * (decoded, trailers dropped) or until EOF; 204, 304 and 1xx have no body.
 * Never reads past the end of the response, so pipelined responses can be
 * read one after the other. <r> is overwritten: h_resp_free() a previous
 * body first. Returns 0, or -1 on timeout, EOF before a full response,
 * reset or bytes that are not HTTP (r->status is 0 when no head arrived). */
int h_read_response(int fd, struct h_resp *r);

/* Same for the answer to a HEAD request: reads the head only. */
int h_read_response_head(int fd, struct h_resp *r);

/* A byte source for the response reader other than a plain socket (a TLS
 * client: tests/harness/tls.h): <recv> works as recv(2) on <arg>, leaving
 * the bytes where they are when <peek>; <fd> names it in messages. */
struct h_reader {
    ssize_t (*recv)(void *arg, void *buf, size_t n, bool peek);
    void *arg;
    int fd;
};

/* h_read_response() from <rd>. */
int h_read_response_from(const struct h_reader *rd, struct h_resp *r);

/* Connects, sends "GET <path> HTTP/1.1" with Host and Connection: close
 * plus <extra_headers> (NULL, or lines each ending in "\r\n"), reads the
 * response and closes. Returns 0 or -1. */
int h_get(int port, const char *path, const char *extra_headers, struct h_resp *r);

/* h_get() from local address <src_ip> (see h_connect_from()). */
int h_get_from(const char *src_ip, int port, const char *path, const char *extra_headers,
               struct h_resp *r);

/* Connects to 127.0.0.1:<port>, sends <raw> (a whole request, or several,
 * as they are), reads one response into <r> (zeroed first, so that it can
 * be freed whatever happened) and closes. Returns what h_read_response()
 * returned, or -1 when it could not connect or send. */
int h_exchange(int port, const char *raw, struct h_resp *r);

/* The value of the first header <name> (case-insensitive) in r->head,
 * trimmed, copied into <buf>; NULL when absent. */
const char *h_resp_header(const struct h_resp *r, const char *name, char *buf,
                          size_t len);

/* Frees r->body; the struct may then be reused. */
void h_resp_free(struct h_resp *r);

/* True when the peer closes <fd> (EOF or reset) within <timeout_ms> with no
 * data arriving first. Consumes nothing when data arrives. */
bool h_peer_closed(int fd, int timeout_ms);

/* ---- cutoverd and cutoverctl ---------------------------------------- */

/* Runs h_bin("cutoverctl") -s <sock> <args...> (NULL-terminated; <sock>
 * NULL leaves -s out). Its stdout goes to <out> (NUL-terminated, truncated
 * to <outlen>), its stderr to the buffer h_ctl_err() returns. Killed after
 * 10 s. Returns its exit code, or -1 when it could not run or was killed. */
int h_ctl(const char *sock, char *out, size_t outlen, ...);

/* The same with --json right after -s SOCK; returns stdout parsed as JSON
 * (caller json_decref()s), whatever the exit code (see h_ctl_status()), or
 * NULL when it did not run or printed no JSON. */
json_t *h_ctl_json(const char *sock, ...);

/* stderr of the last h_ctl()/h_ctl_json() run, NUL-terminated. */
const char *h_ctl_err(void);

/* Exit code of the last h_ctl()/h_ctl_json() run (-1 when it did not run). */
int h_ctl_status(void);

/* Runs h_bin("cutoverd") -t -c <conf> (check the config and exit); its
 * stdout and stderr go to <out> (NUL-terminated, truncated to <outlen>).
 * Returns its exit code, or -1 when it could not run. */
int h_cutoverd_check(const char *conf, char *out, size_t outlen);

/* Starts h_bin("cutoverd") -c <conf> with CUTOVER_SOCKET unset (the config
 * names admin.socket), output appended to <log>, and waits (10 s at most)
 * until <admin_sock> accepts connections and, when <port> > 0, the port
 * does too. Returns the pid, or -1 with the log dumped and the process
 * killed. */
pid_t h_cutoverd_start(const char *conf, const char *log, const char *admin_sock,
                       int port);

/* ---- upstream TLS ---------------------------------------------------- */

/* Makes, with the openssl command, the certificates of the upstream TLS
 * tests in <dir> (each NAME.pem with its key NAME.key, EC P-256, valid 30
 * days): up-ca and up-ca2 (two CAs), up-ip (server, IP SAN 127.0.0.1, by
 * up-ca), up-dns (server, DNS backend.test, by up-ca), up-other (server,
 * IP 127.0.0.1 and DNS backend.test, by up-ca2), up-client (client
 * certificate by up-ca). Returns 0, or -1 (openssl's output dumped). */
int h_tls_make_upstream_certs(const char *dir);

/* ---- data ------------------------------------------------------------ */

/* Decodes base64 <s> (the corpora's bytes_b64) into a new buffer of *<len>
 * bytes plus a NUL (caller frees); NULL when <s> is not base64. */
unsigned char *h_b64_decode(const char *s, size_t *len);

/* ---- JSON ------------------------------------------------------------ */

/* The value at <path> below <root>: keys joined by dots, a component of
 * digits alone indexing an array ("new.servers.0.up"; "" is <root>).
 * Borrowed from <root>; NULL when any step is missing. */
json_t *h_json_at(const json_t *root, const char *path);

#endif
