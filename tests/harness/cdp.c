/*
 * cdp: see cdp.h. The browser is forked here (h_spawn() keeps only fds 0-2,
 * and the protocol needs 3 and 4), in its own process group, recorded with
 * h_track() so h_kill_all() ends it with the test.
 */
#define _GNU_SOURCE
#include "tests/harness/cdp.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/harness/harness.h"

#define CDP_START_MS  20000
#define CDP_LOG_MAX   8192

struct h_cdp {
    pid_t pid;
    int wfd;                         /* our end of the browser's fd 3 */
    int rfd;                         /* our end of its fd 4 */
    long next_id;
    char session[128];               /* the page's flat session */
    char *in;                        /* bytes read, not yet a whole message */
    size_t inlen, incap;
    unsigned exceptions, errors;
    char log[CDP_LOG_MAX];
};

const char *
h_cdp_browser(void)
{
    const char *p = getenv("CUTOVER_CHROMIUM");

    if (p == NULL || p[0] == '\0')
        p = "/usr/bin/chromium";
    return access(p, X_OK) == 0 ? p : NULL;
}

static void
log_add(struct h_cdp *b, const char *kind, const char *text)
{
    size_t k = strlen(b->log);

    if (k < sizeof(b->log) - 1)
        snprintf(b->log + k, sizeof(b->log) - k, "%s: %s\n", kind, text);
}

/* Counts what the page reported (events are otherwise ignored). */
static void
on_event(struct h_cdp *b, json_t *msg)
{
    const char *m = json_string_value(json_object_get(msg, "method"));
    json_t *p = json_object_get(msg, "params");

    if (m == NULL)
        return;
    if (strcmp(m, "Runtime.exceptionThrown") == 0) {
        json_t *d = json_object_get(p, "exceptionDetails");
        const char *t = json_string_value(h_json_at(d, "exception.description"));

        b->exceptions++;
        log_add(b, "exception", t != NULL ? t : json_string_value(json_object_get(d, "text")));
    } else if (strcmp(m, "Log.entryAdded") == 0) {
        const char *lvl = json_string_value(h_json_at(p, "entry.level"));

        if (lvl != NULL && strcmp(lvl, "error") == 0) {
            b->errors++;
            log_add(b, "error", json_string_value(h_json_at(p, "entry.text")));
        }
    } else if (strcmp(m, "Runtime.consoleAPICalled") == 0) {
        const char *type = json_string_value(json_object_get(p, "type"));

        if (type != NULL && strcmp(type, "error") == 0) {
            b->errors++;
            const char *t = json_string_value(h_json_at(p, "args.0.value"));

            log_add(b, "console.error", t != NULL ? t : "(not a string)");
        }
    }
}

/* The next whole message, waiting until <deadline> (h_now_ms()). NULL on
 * timeout, EOF or bad JSON. */
static json_t *
read_msg(struct h_cdp *b, long long deadline)
{
    for (;;) {
        char *nul = b->inlen > 0 ? memchr(b->in, '\0', b->inlen) : NULL;

        if (nul != NULL) {
            size_t n = (size_t)(nul - b->in);
            json_error_t je;
            json_t *m = json_loadb(b->in, n, 0, &je);

            memmove(b->in, nul + 1, b->inlen - n - 1);
            b->inlen -= n + 1;
            if (m == NULL)
                fprintf(stderr, "cdp: a message that is not JSON: %s\n", je.text);
            return m;
        }
        long long left = deadline - h_now_ms();
        struct pollfd pfd = { .fd = b->rfd, .events = POLLIN };

        if (left <= 0)
            return NULL;
        if (poll(&pfd, 1, (int)left) <= 0)
            continue;
        if (b->incap - b->inlen < 65536) {
            b->incap = b->incap * 2 + 65536;
            b->in = realloc(b->in, b->incap);
            if (b->in == NULL)
                abort();
        }
        ssize_t r = read(b->rfd, b->in + b->inlen, b->incap - b->inlen);

        if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN)) {
            fprintf(stderr, "cdp: the browser closed the pipe\n");
            return NULL;
        }
        if (r > 0)
            b->inlen += (size_t)r;
    }
}

static int
write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t k = write(fd, p, len);

        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        p += k;
        len -= (size_t)k;
    }
    return 0;
}

json_t *
h_cdp_call(struct h_cdp *b, bool on_page, const char *method, json_t *params,
           int timeout_ms)
{
    long long deadline = h_now_ms() + timeout_ms;
    long id = ++b->next_id;
    json_t *req = json_pack("{s:I, s:s, s:o}", "id", (json_int_t)id, "method", method,
                            "params", params != NULL ? params : json_object());
    char *text;
    size_t len;

    if (on_page)
        json_object_set_new(req, "sessionId", json_string(b->session));
    text = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    len = strlen(text) + 1;            /* with its NUL */
    if (write_all(b->wfd, text, len) != 0) {
        fprintf(stderr, "cdp: cannot send %s\n", method);
        free(text);
        return NULL;
    }
    free(text);
    for (;;) {
        json_t *m = read_msg(b, deadline), *res;

        if (m == NULL) {
            fprintf(stderr, "cdp: no reply to %s within %d ms\n", method, timeout_ms);
            return NULL;
        }
        if (json_integer_value(json_object_get(m, "id")) != id) {
            on_event(b, m);
            json_decref(m);
            continue;
        }
        if ((res = json_object_get(m, "result")) == NULL) {
            char *e = json_dumps(json_object_get(m, "error"), JSON_COMPACT);

            fprintf(stderr, "cdp: %s: %s\n", method, e != NULL ? e : "error");
            free(e);
            json_decref(m);
            return NULL;
        }
        json_incref(res);
        json_decref(m);
        return res;
    }
}

/* The browser's child side: the pipes on fds 3 and 4, then exec. */
static void
exec_browser(const char *exe, int in_fd, int out_fd, const char *dir, const char *log,
             int width, int height, pid_t parent)
{
    char profile[600], crash[600], size[64];
    int fd, lfd;

    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
    if ((fd = open("/dev/null", O_RDONLY)) >= 0)
        dup2(fd, 0);
    if ((lfd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644)) >= 0) {
        dup2(lfd, 1);
        dup2(lfd, 2);
    }
    /* move the pipe ends out of the way before they take fds 3 and 4 */
    in_fd = fcntl(in_fd, F_DUPFD, 10);
    out_fd = fcntl(out_fd, F_DUPFD, 10);
    if (in_fd < 0 || out_fd < 0 || dup2(in_fd, 3) < 0 || dup2(out_fd, 4) < 0)
        _exit(127);
    for (fd = 5; fd < 1024; fd++)
        close(fd);
    snprintf(profile, sizeof(profile), "--user-data-dir=%s/profile", dir);
    snprintf(crash, sizeof(crash), "--crash-dumps-dir=%s/crash", dir);
    snprintf(size, sizeof(size), "--window-size=%d,%d", width, height);
    {
        char *argv[] = {
            (char *)exe, "--headless=new", "--remote-debugging-pipe", profile, crash, size,
            /* root in CI: the sandbox refuses to run as root */
            "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--no-first-run", "--no-default-browser-check", "--disable-extensions",
            "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--disable-default-apps", "--no-pings",
            "--disable-domain-reliability", "--disable-breakpad",
            "--metrics-recording-only", "--mute-audio", "--hide-scrollbars",
            "--password-store=basic", "--use-mock-keychain",
            /* nothing leaves the machine: only loopback names resolve */
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1",
            "--proxy-server=direct://", "--proxy-bypass-list=*",
            "about:blank", NULL
        };

        execv(exe, argv);
    }
    _exit(127);
}

struct h_cdp *
h_cdp_start(const char *dir, const char *log, int width, int height)
{
    const char *exe = h_cdp_browser();
    int to_browser[2], from_browser[2];
    struct h_cdp *b;
    json_t *r;
    const char *target, *session;
    pid_t parent = getpid();

    if (exe == NULL) {
        fprintf(stderr, "cdp: no browser: install chromium (tests/tools/deps.sh) or set "
                "CUTOVER_CHROMIUM\n");
        return NULL;
    }
    if (pipe2(to_browser, O_CLOEXEC) != 0 || pipe2(from_browser, O_CLOEXEC) != 0) {
        fprintf(stderr, "cdp: pipe: %s\n", strerror(errno));
        return NULL;
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "cdp: mkdir %s: %s\n", dir, strerror(errno));
        return NULL;
    }
    b = calloc(1, sizeof(*b));
    fflush(stdout);
    fflush(stderr);
    b->pid = fork();
    if (b->pid == 0)
        exec_browser(exe, to_browser[0], from_browser[1], dir, log, width, height, parent);
    close(to_browser[0]);
    close(from_browser[1]);
    b->wfd = to_browser[1];
    b->rfd = from_browser[0];
    if (b->pid < 0 || h_track(b->pid) != 0) {
        fprintf(stderr, "cdp: cannot start %s\n", exe);
        close(b->wfd);
        close(b->rfd);
        free(b);
        return NULL;
    }
    setpgid(b->pid, b->pid);
    signal(SIGPIPE, SIG_IGN);          /* a dead browser is an error return, not a kill */
    r = h_cdp_call(b, false, "Target.createTarget",
                   json_pack("{s:s}", "url", "about:blank"), CDP_START_MS);
    target = json_string_value(json_object_get(r, "targetId"));
    if (target == NULL) {
        json_decref(r);
        h_dump_file(log, 4096);
        h_cdp_stop(b);
        return NULL;
    }
    json_t *a = h_cdp_call(b, false, "Target.attachToTarget",
                           json_pack("{s:s, s:b}", "targetId", target, "flatten", 1), 5000);

    json_decref(r);
    session = json_string_value(json_object_get(a, "sessionId"));
    if (session == NULL || strlen(session) >= sizeof(b->session)) {
        json_decref(a);
        h_cdp_stop(b);
        return NULL;
    }
    snprintf(b->session, sizeof(b->session), "%s", session);
    json_decref(a);
    json_decref(h_cdp_call(b, true, "Page.enable", NULL, 5000));
    json_decref(h_cdp_call(b, true, "Runtime.enable", NULL, 5000));
    json_decref(h_cdp_call(b, true, "Log.enable", NULL, 5000));
    json_decref(h_cdp_call(b, true, "Emulation.setDeviceMetricsOverride",
                           json_pack("{s:i, s:i, s:i, s:b}", "width", width, "height", height,
                                     "deviceScaleFactor", 1, "mobile", 0), 5000));
    return b;
}

void
h_cdp_stop(struct h_cdp *b)
{
    if (b == NULL)
        return;
    json_decref(h_cdp_call(b, false, "Browser.close", NULL, 3000));
    close(b->wfd);
    close(b->rfd);
    if (h_wait_exit(b->pid, 3000) < 0)
        h_stop(b->pid, SIGKILL, 5000);
    kill(-b->pid, SIGKILL);            /* what is left of its process group */
    free(b->in);
    free(b);
}

json_t *
h_cdp_eval(struct h_cdp *b, const char *js, int timeout_ms)
{
    json_t *r = h_cdp_call(b, true, "Runtime.evaluate",
                           json_pack("{s:s, s:b, s:b}", "expression", js, "returnByValue", 1,
                                     "awaitPromise", 1), timeout_ms);
    json_t *v;

    if (r == NULL)
        return NULL;
    if (json_object_get(r, "exceptionDetails") != NULL) {
        char *e = json_dumps(json_object_get(r, "exceptionDetails"), JSON_COMPACT);

        fprintf(stderr, "cdp: %s threw: %.600s\n", js, e != NULL ? e : "");
        free(e);
        json_decref(r);
        return NULL;
    }
    v = json_object_get(r, "result");
    v = json_object_get(v, "value");
    v = v != NULL ? json_incref(v) : json_null();
    json_decref(r);
    return v;
}

int
h_cdp_eval_str(struct h_cdp *b, const char *js, char *buf, size_t len)
{
    json_t *v = h_cdp_eval(b, js, 5000);

    if (v == NULL)
        return -1;
    snprintf(buf, len, "%s", json_is_string(v) ? json_string_value(v) : "");
    json_decref(v);
    return 0;
}

static bool
truthy(const json_t *v)
{
    if (json_is_true(v))
        return true;
    if (json_is_number(v))
        return json_number_value(v) != 0;
    if (json_is_string(v))
        return json_string_length(v) > 0;
    return false;
}

long
h_cdp_wait(struct h_cdp *b, const char *js, int timeout_ms)
{
    long long t0 = h_now_ms(), deadline = t0 + timeout_ms;

    for (;;) {
        json_t *v = h_cdp_eval(b, js, 5000);
        bool ok = truthy(v);

        json_decref(v);
        if (ok)
            return (long)(h_now_ms() - t0);
        if (h_now_ms() >= deadline) {
            fprintf(stderr, "cdp: not true within %d ms: %s\n", timeout_ms, js);
            return -1;
        }
        h_sleep_ms(50);
    }
}

int
h_cdp_navigate(struct h_cdp *b, const char *url, int timeout_ms)
{
    json_t *r = h_cdp_call(b, true, "Page.navigate", json_pack("{s:s}", "url", url),
                           timeout_ms);
    const char *err = json_string_value(json_object_get(r, "errorText"));

    if (r == NULL || err != NULL) {
        fprintf(stderr, "cdp: navigate %s: %s\n", url, err != NULL ? err : "no reply");
        json_decref(r);
        return -1;
    }
    json_decref(r);
    return h_cdp_wait(b, "document.readyState === 'complete' && location.href !== 'about:blank'",
                      timeout_ms) >= 0 ? 0 : -1;
}

int
h_cdp_type(struct h_cdp *b, const char *text)
{
    json_t *r = h_cdp_call(b, true, "Input.insertText", json_pack("{s:s}", "text", text),
                           5000);

    json_decref(r);
    return r != NULL ? 0 : -1;
}

int
h_cdp_screenshot(struct h_cdp *b, const char *path)
{
    json_t *r = h_cdp_call(b, true, "Page.captureScreenshot",
                           json_pack("{s:s, s:b}", "format", "png", "captureBeyondViewport", 0),
                           15000);
    const char *data = json_string_value(json_object_get(r, "data"));
    unsigned char *png;
    size_t len = 0;
    FILE *f;
    int rc = -1;

    if (data == NULL || (png = h_b64_decode(data, &len)) == NULL) {
        json_decref(r);
        return -1;
    }
    if ((f = fopen(path, "wb")) != NULL) {
        rc = fwrite(png, 1, len, f) == len ? 0 : -1;
        if (fclose(f) != 0)
            rc = -1;
    }
    if (rc != 0)
        fprintf(stderr, "cdp: cannot write %s: %s\n", path, strerror(errno));
    free(png);
    json_decref(r);
    return rc;
}

unsigned
h_cdp_exceptions(const struct h_cdp *b)
{
    return b->exceptions;
}

unsigned
h_cdp_errors(const struct h_cdp *b)
{
    return b->errors;
}

const char *
h_cdp_log(const struct h_cdp *b)
{
    return b->log;
}
