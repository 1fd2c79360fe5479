/*
 * cutoverctl: the operator's command-line client. It speaks only the admin
 * protocol (one JSON line out, one JSON line back over the unix socket) and
 * shares nothing with the daemon but admin/ctl_proto.h, so it can never
 * depend on daemon internals.
 *
 * Everything that can be checked locally (command names, options, the weight
 * syntax, the reason's text) is checked before connecting, so a typo is a
 * usage error (exit 2) and never reaches the daemon. Exit status: 0 done, 1
 * refused by the daemon, 2 usage, 3 the daemon cannot be reached or its
 * reply was cut off.
 *
 * Every string from the daemon is printed through shown() (ctl_escape()):
 * an audit reason, a service name, a server's check result or an error
 * can never send a control or escape sequence to the terminal nor look
 * like a line of its own; --json output is printed as the daemon sent it
 * unless it holds such characters, then re-encoded with \uXXXX escapes.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "admin/ctl_proto.h"

enum ctl_exit {
    CTL_EXIT_OK = 0,
    CTL_EXIT_REFUSED = 1,
    CTL_EXIT_USAGE = 2,
    CTL_EXIT_UNREACHABLE = 3,
};

#define CTL_REPLY_TIMEOUT_MS 30000
#define CTL_SHOWN_RING       32        /* strings of shown() alive at once */
#define CTL_REPLY_MAX        (64u * 1024u * 1024u)   /* bytes of one reply line */

/* One connection to the daemon. */
struct ctl_conn {
    const char *path;                  /* borrowed: the socket path */
    int fd;
    char *buf;                         /* owned: bytes read, not yet a full line */
    size_t len, cap;
};

/* What the command line asked for. */
struct ctl_opts {
    char socket[4096];
    const char *service;               /* borrowed from argv, or NULL */
    bool is_json;
    const char *cmd;
};

static volatile sig_atomic_t interrupted;

static void
on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

static void
usage(FILE *f)
{
    fputs("usage: cutoverctl [-s SOCKET] [-S SERVICE] [--json] COMMAND [ARGS]\n"
          "\n"
          "commands:\n"
          "  status                               weight, state, servers and windows\n"
          "  weight P                             share to new, 0..100, two decimals at most\n"
          "  rollback [--reason TEXT]             weight 0 now, state rolled_back\n"
          "  promote                              weight 100\n"
          "  switch new|legacy [--drain-s N] [--force]\n"
          "                                       blue-green flip\n"
          "  plan start|pause|resume|abort        the progressive plan\n"
          "  audit [-n N]                         the last N audit entries\n"
          "  certs reload                         read every TLS certificate and key again\n"
          "  diffs [-n N]                         the last N differences shadow traffic kept,\n"
          "                                       both answers side by side\n"
          "  watch                                status every second until interrupted\n"
          "  help                                 this text\n"
          "\n"
          "options:\n"
          "  -s, --socket SOCKET    admin socket (default: $CUTOVER_SOCKET or the\n"
          "                         per-user default)\n"
          "  -S, --service SERVICE  the service (may be left out with one service)\n"
          "  --json                 print the daemon's reply as one JSON line\n"
          "\n"
          "exit status: 0 done, 1 refused by the daemon, 2 usage, 3 daemon unreachable\n",
          f);
}

static int
usage_error(const char *fmt, const char *arg)
{
    fputs("cutoverctl: ", stderr);
    fprintf(stderr, fmt, arg);
    fputs("\n(see cutoverctl help)\n", stderr);
    return CTL_EXIT_USAGE;
}

/* Parses a decimal integer in <lo>..<hi> with nothing around it. */
static int
parse_uint(const char *text, long lo, long hi, long *out)
{
    long v = 0;
    const char *p = text;

    if (*p == '\0')
        return -1;
    for (; *p != '\0'; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (*p - '0');
        if (v > hi)
            return -1;
    }
    if (v < lo)
        return -1;
    *out = v;
    return 0;
}

/* ---- talking to the daemon --------------------------------------------- */

static int
unreachable(const struct ctl_conn *c, int err)
{
    fprintf(stderr, "cutoverctl: cannot connect to %s: %s\n", c->path, strerror(err));
    return CTL_EXIT_UNREACHABLE;
}

/* Connects <c> to <path>. Returns 0, or CTL_EXIT_UNREACHABLE with a message
 * printed. */
static int
conn_open(struct ctl_conn *c, const char *path)
{
    struct sockaddr_un addr;
    size_t n = strlen(path);

    memset(c, 0, sizeof(*c));
    c->path = path;
    c->fd = -1;
    memset(&addr, 0, sizeof(addr));
    addr.sun_family = AF_UNIX;
    if (n == 0 || n >= sizeof(addr.sun_path))
        return unreachable(c, n == 0 ? ENOENT : ENAMETOOLONG);
    memcpy(addr.sun_path, path, n);
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return unreachable(c, errno);
    if (connect(c->fd, (const struct sockaddr *)&addr, sizeof(addr)) != 0) {
        int e = errno;

        close(c->fd);
        c->fd = -1;
        return unreachable(c, e);
    }
    return 0;
}

static void
conn_close(struct ctl_conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->buf);
    c->buf = NULL;
    c->len = c->cap = 0;
}

/* Sends <line>, which ends with its "\n". Returns 0 or CTL_EXIT_UNREACHABLE. */
static int
conn_send(struct ctl_conn *c, const char *line)
{
    size_t n = strlen(line), off = 0;
    ssize_t k;

    while (off < n) {
        /* MSG_NOSIGNAL: a daemon that went away is an exit 3, not SIGPIPE */
        k = send(c->fd, line + off, n - off, MSG_NOSIGNAL);
        if (k < 0) {
            if (errno == EINTR && !interrupted)
                continue;
            return unreachable(c, errno == EINTR ? ECONNABORTED : errno);
        }
        off += (size_t)k;
    }
    return 0;
}

/* Reads one reply line into a new string (the caller frees it). Returns 0,
 * or CTL_EXIT_UNREACHABLE when the daemon closed, the reply is cut off or
 * does not come within CTL_REPLY_TIMEOUT_MS. With <*is_intr> non-NULL, an
 * interrupt sets it and returns CTL_EXIT_OK with *line NULL. */
static int
conn_read_line(struct ctl_conn *c, char **line, bool *is_intr)
{
    struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
    struct timespec start, now;
    char *nl;
    long waited_ms;
    ssize_t k;
    int rc;

    *line = NULL;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        nl = c->buf != NULL ? memchr(c->buf, '\n', c->len) : NULL;
        if (nl != NULL) {
            size_t n = (size_t)(nl - c->buf);
            char *out = malloc(n + 1);

            if (out == NULL) {
                fputs("cutoverctl: out of memory\n", stderr);
                exit(CTL_EXIT_UNREACHABLE);
            }
            memcpy(out, c->buf, n);
            out[n] = '\0';
            c->len -= n + 1;
            memmove(c->buf, nl + 1, c->len);
            *line = out;
            return 0;
        }
        if (c->len >= CTL_REPLY_MAX)
            return unreachable(c, EMSGSIZE);
        clock_gettime(CLOCK_MONOTONIC, &now);
        waited_ms = (now.tv_sec - start.tv_sec) * 1000L
                    + (now.tv_nsec - start.tv_nsec) / 1000000L;
        if (waited_ms >= CTL_REPLY_TIMEOUT_MS)
            return unreachable(c, ETIMEDOUT);
        rc = poll(&pfd, 1, (int)(CTL_REPLY_TIMEOUT_MS - waited_ms));
        if (rc < 0 && errno != EINTR)
            return unreachable(c, errno);
        if (interrupted) {
            if (is_intr != NULL) {
                *is_intr = true;
                return CTL_EXIT_OK;
            }
            return unreachable(c, EINTR);
        }
        if (rc <= 0)
            continue;
        if (c->cap - c->len < 65536) {
            size_t cap = c->cap ? c->cap * 2 : 65536;
            char *b = realloc(c->buf, cap);

            if (b == NULL) {
                fputs("cutoverctl: out of memory\n", stderr);
                exit(CTL_EXIT_UNREACHABLE);
            }
            c->buf = b;
            c->cap = cap;
        }
        k = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return unreachable(c, errno);
        }
        if (k == 0)                    /* closed before the end of the reply */
            return unreachable(c, ECONNRESET);
        c->len += (size_t)k;
    }
}

/* ---- human-readable output --------------------------------------------- */

/* <len> bytes of <s> as they may be shown on a terminal (ctl_escape() with
 * <flags>), in a buffer that stays valid for CTL_SHOWN_RING - 1 more calls. */
static const char *
shown(const char *s, size_t len, unsigned flags)
{
    static char *ring[CTL_SHOWN_RING];
    static unsigned next;
    char **slot = &ring[next++ % CTL_SHOWN_RING];
    size_t n = ctl_escape(NULL, 0, s, len, flags);

    free(*slot);
    if ((*slot = malloc(n + 1)) == NULL) {
        fputs("cutoverctl: out of memory\n", stderr);
        exit(CTL_EXIT_UNREACHABLE);
    }
    ctl_escape(*slot, n + 1, s, len, flags);
    return *slot;
}

/* The string <v> as it may be shown (shown()). */
static const char *
shown_str(const json_t *v, unsigned flags)
{
    return shown(json_string_value(v), json_string_length(v), flags);
}

/* Formats number <v> (percent) as "12.50%", a string as it is (audit
 * entries of health changes: "up", "down"; escaped), or "-" when it is
 * missing. */
static const char *
fmt_percent(const json_t *v, char *buf, size_t len)
{
    if (json_is_string(v))
        return shown_str(v, 0);
    if (!json_is_number(v))
        return "-";
    snprintf(buf, len, "%.2f%%", json_number_value(v));
    return buf;
}

/* Formats a scalar: integers as integers, reals without trailing noise,
 * strings as they are (escaped), anything else (or nothing) as "-". */
static const char *
fmt_value(const json_t *v, char *buf, size_t len)
{
    double d;

    if (json_is_string(v))
        return shown_str(v, 0);
    if (json_is_integer(v)) {
        snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return buf;
    }
    if (json_is_real(v)) {
        d = json_real_value(v);
        if (d == (double)(long long)d && d > -1e15 && d < 1e15)
            snprintf(buf, len, "%lld", (long long)d);
        else
            snprintf(buf, len, "%.2f", d);
        return buf;
    }
    if (json_is_boolean(v))
        return json_is_true(v) ? "true" : "false";
    return "-";
}

static void
print_side(const json_t *svc, const char *side)
{
    const json_t *o = json_object_get(svc, side), *servers, *srv;
    char b1[64], b2[64], b3[64];
    size_t i;

    if (!json_is_object(o)) {
        printf("  %s  -\n", side);
        return;
    }
    servers = json_object_get(o, "servers");
    json_array_foreach(servers, i, srv) {
        const json_t *up = json_object_get(srv, "up");
        const json_t *last = json_object_get(srv, "last_check");
        const json_t *checks = json_object_get(srv, "checks");

        printf("  %-6s  %s  %s", side,
               fmt_value(json_object_get(srv, "addr"), b1, sizeof(b1)),
               json_is_boolean(up) ? (json_is_true(up) ? "up" : "down") : "-");
        /* active checks configured: the last result and the totals */
        if (json_is_string(last))
            printf("  check: %s (%s passed, %s failed)",
                   json_string_length(last) > 0 ? shown_str(last, 0) : "pending",
                   fmt_value(json_object_get(checks, "ok"), b2, sizeof(b2)),
                   fmt_value(json_object_get(checks, "fail"), b3, sizeof(b3)));
        putchar('\n');
    }
}

/* The passive windows of both sides side by side:
 *   window        legacy              new
 *   requests      120                 14
 *   errors        0 (0.00%)           3 (21.43%)
 *   p50 / p99 ms  1.20 / 3.40         1.50 / 4.00                           */
static void
print_windows(const json_t *svc)
{
    static const char *const sides[2] = { "legacy", "new" };
    char cell[3][2][64], b1[64], b2[64];
    const json_t *w, *rate;
    unsigned k;

    for (k = 0; k < 2; k++) {
        w = json_object_get(json_object_get(svc, sides[k]), "window");
        rate = json_object_get(w, "error_rate");
        snprintf(cell[0][k], sizeof(cell[0][k]), "%s",
                 fmt_value(json_object_get(w, "requests"), b1, sizeof(b1)));
        if (json_is_number(rate))
            snprintf(cell[1][k], sizeof(cell[1][k]), "%s (%.2f%%)",
                     fmt_value(json_object_get(w, "errors"), b1, sizeof(b1)),
                     json_number_value(rate) * 100.0);
        else
            snprintf(cell[1][k], sizeof(cell[1][k]), "%s",
                     fmt_value(json_object_get(w, "errors"), b1, sizeof(b1)));
        snprintf(cell[2][k], sizeof(cell[2][k]), "%s / %s",
                 fmt_value(json_object_get(w, "p50_ms"), b1, sizeof(b1)),
                 fmt_value(json_object_get(w, "p99_ms"), b2, sizeof(b2)));
    }
    printf("  %-14s%-22s%s\n", "window", sides[0], sides[1]);
    printf("  %-14s%-22s%s\n", "requests", cell[0][0], cell[0][1]);
    printf("  %-14s%-22s%s\n", "errors", cell[1][0], cell[1][1]);
    printf("  %-14s%-22s%s\n", "p50 / p99 ms", cell[2][0], cell[2][1]);
}

/* The TLS lines of a service that terminates TLS, one per certificate:
 *   tls     CN=a.test  a.test b.test  until 2026-01-05T00:00:00Z (29 days)  ECDSA P-256
 *   tls     handshakes ok 12, resumed 4; failed: timeout 1 */
static void
print_tls(const json_t *svc)
{
    const json_t *tls = json_object_get(svc, "tls"), *c, *n, *hs, *v;
    const char *key;
    char b1[64], b2[64];
    size_t i, k;
    bool failed = false;

    if (!json_is_object(tls))
        return;
    json_array_foreach(json_object_get(tls, "certs"), i, c) {
        printf("  %-6s  %s ", "tls", fmt_value(json_object_get(c, "subject"), b1, sizeof(b1)));
        json_array_foreach(json_object_get(c, "names"), k, n)
            printf(" %s", json_string_value(n) != NULL ? json_string_value(n) : "-");
        printf("  until %s (%s days)  %s\n",
               fmt_value(json_object_get(c, "not_after"), b1, sizeof(b1)),
               fmt_value(json_object_get(c, "expires_in_days"), b2, sizeof(b2)),
               json_string_value(json_object_get(c, "key")) != NULL
               ? json_string_value(json_object_get(c, "key")) : "-");
    }
    hs = json_object_get(tls, "handshakes");
    printf("  %-6s  handshakes ok %s, resumed %s", "tls",
           fmt_value(json_object_get(hs, "ok"), b1, sizeof(b1)),
           fmt_value(json_object_get(tls, "resumed"), b2, sizeof(b2)));
    json_object_foreach((json_t *)hs, key, v) {
        if (strcmp(key, "ok") == 0 || !json_is_integer(v) || json_integer_value(v) == 0)
            continue;
        printf("%s %s %s", failed ? "," : "; failed:", key, fmt_value(v, b1, sizeof(b1)));
        failed = true;
    }
    putchar('\n');
}

#define PLAN_BAR_WIDTH 20

/* The plan line: step, state and, while it runs, the bake as a bar
 *   plan    step 2/3 (50%)  progressing  bake [#########-----------] 4.5 s of 10 s, 5.5 s left  requests 12 (min 5) */
static void
print_plan(const json_t *svc)
{
    const json_t *p = json_object_get(svc, "plan"), *v;
    const char *st = json_is_string(json_object_get(p, "state"))
                     ? shown_str(json_object_get(p, "state"), 0) : NULL;
    char b1[64], b2[64], b3[64], bar[PLAN_BAR_WIDTH + 1];
    double bake_s, left_s, done;
    size_t i;
    unsigned k, fill;

    if (!json_is_object(p) || st == NULL || strcmp(st, "none") == 0)
        return;                        /* no plan configured (or an older daemon) */
    printf("  %-6s  ", "plan");
    if (strcmp(st, "idle") == 0) {
        printf("not started: %s steps (", fmt_value(json_object_get(p, "steps"), b1, sizeof(b1)));
        json_array_foreach(json_object_get(p, "steps_percent"), i, v)
            printf("%s%s%%", i > 0 ? " " : "", fmt_value(v, b2, sizeof(b2)));
        printf("), bake %s s each\n", fmt_value(json_object_get(p, "bake_s"), b3, sizeof(b3)));
        return;
    }
    printf("step %s/%s (%s%%)  %s",
           fmt_value(json_object_get(p, "step"), b1, sizeof(b1)),
           fmt_value(json_object_get(p, "steps"), b2, sizeof(b2)),
           fmt_value(json_object_get(p, "percent"), b3, sizeof(b3)),
           strcmp(st, "breached") == 0 ? "stopped by a breach" : st);
    if (strcmp(st, "progressing") != 0 && strcmp(st, "paused") != 0) {
        putchar('\n');
        return;
    }
    bake_s = json_number_value(json_object_get(p, "bake_s"));
    left_s = json_number_value(json_object_get(p, "bake_left_s"));
    done = bake_s > 0 ? (bake_s - left_s) / bake_s : 1.0;
    done = done < 0 ? 0 : done > 1 ? 1 : done;
    fill = (unsigned)(done * PLAN_BAR_WIDTH + 0.5);
    for (k = 0; k < PLAN_BAR_WIDTH; k++)
        bar[k] = k < fill ? '#' : '-';
    bar[PLAN_BAR_WIDTH] = '\0';
    printf("  bake [%s] %.1f s of %s s, %.1f s left%s  requests %s (min %s)\n", bar,
           bake_s - left_s, fmt_value(json_object_get(p, "bake_s"), b1, sizeof(b1)), left_s,
           strcmp(st, "paused") == 0 ? " (clock stopped)" : "",
           fmt_value(json_object_get(p, "requests"), b2, sizeof(b2)),
           fmt_value(json_object_get(p, "min_requests"), b3, sizeof(b3)));
}

/* "shadow 10% copied  diff rate 0.0020 (2 of 1000)  match 998 diff 2 error 0 ..."
 * and the plan's diff gate when it has one; nothing without "shadow". */
static void
print_shadow(const json_t *svc)
{
    const json_t *sh = json_object_get(svc, "shadow"), *g, *v;
    const char *k;
    char b[4][64];

    g = json_object_get(json_object_get(svc, "plan"), "diff_gate");
    if (json_is_object(g))
        printf("  plan diff gate: %s of %s compared differed (under %s needed, at least %s "
               "compared)%s\n",
               fmt_value(json_object_get(g, "diffs"), b[0], sizeof(b[0])),
               fmt_value(json_object_get(g, "compared"), b[1], sizeof(b[1])),
               fmt_value(json_object_get(g, "max_diff_rate"), b[2], sizeof(b[2])),
               fmt_value(json_object_get(g, "min_compared"), b[3], sizeof(b[3])),
               json_is_true(json_object_get(g, "held")) ? "  HELD" : "");
    if (!json_is_object(sh))
        return;
    printf("  shadow %s%% copied  diff rate %.4f (%s of %s)  ",
           fmt_value(json_object_get(sh, "percent"), b[0], sizeof(b[0])),
           json_number_value(json_object_get(sh, "diff_rate")),
           fmt_value(json_object_get(sh, "diffs"), b[1], sizeof(b[1])),
           fmt_value(json_object_get(sh, "compared"), b[2], sizeof(b[2])));
    json_object_foreach((json_t *)json_object_get(sh, "results"), k, v)
        printf(" %s %s", shown(k, strlen(k), 0), fmt_value(v, b[3], sizeof(b[3])));
    printf("  noise %zu field(s)\n", json_array_size(json_object_get(sh, "noise")));
}

/* A state in effect that is not saved, and audit entries not written yet:
 * said loudly, after the services (nothing when all is on disk). */
static void
print_store(const json_t *st)
{
    char b1[64], b2[64];

    if (json_is_true(json_object_get(st, "dirty")))
        printf("\nSTATE NOT SAVED since %s: %s; %s\n",
               fmt_value(json_object_get(st, "since"), b1, sizeof(b1)),
               fmt_value(json_object_get(st, "last_error"), b2, sizeof(b2)),
               json_is_true(json_object_get(st, "journaled"))
               ? "kept in the journal (a restart restores it), retried until saved"
               : "NOT in the journal: a restart now brings back the saved state");
    if (json_integer_value(json_object_get(st, "audit_pending")) > 0)
        printf("AUDIT ENTRIES WAITING: %s (the audit log fails: %s)\n",
               fmt_value(json_object_get(st, "audit_pending"), b1, sizeof(b1)),
               fmt_value(json_object_get(st, "audit_error"), b2, sizeof(b2)));
}

static void
print_status(const json_t *reply)
{
    const json_t *svc;
    char name[64], mode[64], weight[64], state[64], gen[64];
    size_t i;

    json_array_foreach(json_object_get(reply, "services"), i, svc) {
        if (i > 0)
            putchar('\n');
        printf("SERVICE %s  mode %s  weight %s  state %s  generation %s\n",
               fmt_value(json_object_get(svc, "name"), name, sizeof(name)),
               fmt_value(json_object_get(svc, "mode"), mode, sizeof(mode)),
               fmt_percent(json_object_get(svc, "weight"), weight, sizeof(weight)),
               fmt_value(json_object_get(svc, "state"), state, sizeof(state)),
               fmt_value(json_object_get(svc, "generation"), gen, sizeof(gen)));
        print_plan(svc);
        print_shadow(svc);
        print_tls(svc);
        print_side(svc, "legacy");
        print_side(svc, "new");
        print_windows(svc);
    }
    print_store(json_object_get(reply, "store"));
}

/* "web: weight 0.00% -> 10.00% (generation 4), state progressing" */
static void
print_change(const json_t *reply)
{
    const json_t *prev = json_object_get(reply, "previous_weight");
    const json_t *weight = json_object_get(reply, "weight");
    const json_t *state = json_object_get(reply, "state");
    const json_t *plan = json_object_get(reply, "plan");
    char b1[64], b2[64], b3[64], b4[64], b5[64];

    if (weight == NULL) {
        printf("%s: ok\n", fmt_value(json_object_get(reply, "service"), b1, sizeof(b1)));
        return;
    }
    printf("%s: weight ", fmt_value(json_object_get(reply, "service"), b1, sizeof(b1)));
    if (prev != NULL)
        printf("%s -> ", fmt_percent(prev, b2, sizeof(b2)));
    printf("%s (generation %s)", fmt_percent(weight, b3, sizeof(b3)),
           fmt_value(json_object_get(reply, "generation"), b4, sizeof(b4)));
    if (state != NULL)
        printf(", state %s", fmt_value(state, b5, sizeof(b5)));
    if (json_is_object(plan))          /* plan commands: where the plan is */
        printf(", plan %s at step %s/%s",
               fmt_value(json_object_get(plan, "state"), b1, sizeof(b1)),
               fmt_value(json_object_get(plan, "step"), b2, sizeof(b2)),
               fmt_value(json_object_get(plan, "steps"), b3, sizeof(b3)));
    putchar('\n');
}

/* "2024-05-01T10:00:00Z  web  uid:0  weight  0.00% -> 10.00%  generation 4  reason \"…\"" */
static void
print_audit(const json_t *reply)
{
    const json_t *e, *reason, *figures;
    const char *service, *action;
    char b[7][64];
    size_t i;
    char *fig;

    json_array_foreach(json_object_get(reply, "entries"), i, e) {
        /* the actor, and the process behind a socket command */
        snprintf(b[2], sizeof(b[2]), "%s",
                 fmt_value(json_object_get(e, "actor"), b[3], sizeof(b[3])));
        if (json_is_integer(json_object_get(e, "pid")))
            snprintf(b[2] + strlen(b[2]), sizeof(b[2]) - strlen(b[2]), " pid:%lld",
                     (long long)json_integer_value(json_object_get(e, "pid")));
        service = fmt_value(json_object_get(e, "service"), b[1], sizeof(b[1]));
        action = fmt_value(json_object_get(e, "action"), b[3], sizeof(b[3]));
        printf("%s  %s  %s  %s",
               fmt_value(json_object_get(e, "ts"), b[0], sizeof(b[0])),
               service[0] != '\0' ? service : "-", b[2], action);
        /* a refusal changed nothing: no "from -> to" to show */
        if (strcmp(action, "refused") != 0 && strcmp(action, "auth_refused") != 0)
            printf("  %s -> %s  generation %s",
                   fmt_percent(json_object_get(e, "from"), b[4], sizeof(b[4])),
                   fmt_percent(json_object_get(e, "to"), b[5], sizeof(b[5])),
                   fmt_value(json_object_get(e, "generation"), b[6], sizeof(b[6])));
        reason = json_object_get(e, "reason");
        if (json_is_string(reason) && json_string_length(reason) > 0)
            printf("  reason \"%s\"", shown_str(reason, CTL_ESC_QUOTED));
        figures = json_object_get(e, "figures");
        /* JSON escapes control characters; ENSURE_ASCII the rest */
        if (figures != NULL && !json_is_null(figures)
            && (fig = json_dumps(figures, JSON_COMPACT | JSON_ENSURE_ASCII
                                          | JSON_REAL_PRECISION(6))) != NULL) {
            printf("  figures %s", fig);
            free(fig);
        }
        putchar('\n');
    }
}

/* Each kept difference of shadow traffic: the request, both answers, then
 * the fields that differ side by side:
 * "GET /a  served legacy 127.0.0.1:9001 200 | shadow new 127.0.0.1:9002 500  (2 fields)" */
static void
print_diffs(const json_t *reply)
{
    const json_t *d, *f;
    char b[8][64];
    size_t i, k;

    if (json_array_size(json_object_get(reply, "diffs")) == 0)
        printf("no differences kept\n");
    json_array_foreach(json_object_get(reply, "diffs"), i, d) {
        printf("%s %s  served %s %s %s | shadow %s %s %s  (%s differing)\n",
               shown_str(json_object_get(d, "method"), 0),
               shown_str(json_object_get(d, "target"), 0),
               fmt_value(json_object_get(d, "served_side"), b[0], sizeof(b[0])),
               fmt_value(json_object_get(d, "served_server"), b[1], sizeof(b[1])),
               fmt_value(json_object_get(d, "served_status"), b[2], sizeof(b[2])),
               fmt_value(json_object_get(d, "shadow_side"), b[3], sizeof(b[3])),
               fmt_value(json_object_get(d, "shadow_server"), b[4], sizeof(b[4])),
               fmt_value(json_object_get(d, "shadow_status"), b[5], sizeof(b[5])),
               fmt_value(json_object_get(d, "differing"), b[6], sizeof(b[6])));
        printf("  %-32s %-40s %s\n", "FIELD", "SERVED", "SHADOW");
        json_array_foreach(json_object_get(d, "fields"), k, f)
            printf("  %-32s %-40s %s\n", shown_str(json_object_get(f, "field"), 0),
                   shown_str(json_object_get(f, "served"), 0),
                   shown_str(json_object_get(f, "shadow"), 0));
    }
}

/* ---- one request ------------------------------------------------------- */

/* --json: the reply <text> as the daemon sent it, or <reply> re-encoded
 * with \uXXXX escapes when the text holds characters that are not shown as
 * they are (jansson escapes control characters, not C1 controls or
 * bidirectional formatting). */
static void
print_json(const json_t *reply, const char *text)
{
    char *ascii;

    if (ctl_text_ok(text, strlen(text), NULL)) {
        printf("%s\n", text);
        return;
    }
    ascii = json_dumps(reply, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_REAL_PRECISION(15));
    printf("%s\n", ascii != NULL ? ascii : "{\"ok\":false,\"error\":\"out of memory\"}");
    free(ascii);
}

/* Checks reply <text> and prints it. Returns the exit status. */
static int
show_reply(const struct ctl_opts *o, const struct ctl_conn *c, const char *text)
{
    json_t *reply, *ok, *err;
    json_error_t je;
    int rc;

    reply = json_loads(text, 0, &je);
    ok = json_object_get(reply, "ok");
    if (reply == NULL || !json_is_boolean(ok)) {
        fprintf(stderr, "cutoverctl: bad reply from %s: %s\n", c->path,
                reply == NULL ? shown(je.text, strlen(je.text), 0) : "no \"ok\" field");
        json_decref(reply);
        return CTL_EXIT_UNREACHABLE;
    }
    if (!json_is_true(ok)) {
        err = json_object_get(reply, "error");
        if (o->is_json)
            print_json(reply, text);
        fprintf(stderr, "cutoverctl: %s\n",
                json_is_string(err) ? shown_str(err, 0) : "refused");
        rc = CTL_EXIT_REFUSED;
    } else {
        if (o->is_json)
            print_json(reply, text);
        else if (strcmp(o->cmd, "status") == 0 || strcmp(o->cmd, "watch") == 0)
            print_status(reply);
        else if (strcmp(o->cmd, "audit") == 0)
            print_audit(reply);
        else if (strcmp(o->cmd, "diffs") == 0)
            print_diffs(reply);
        else if (strcmp(o->cmd, "certs") == 0)
            printf("certs: %s\n", json_string_value(json_object_get(reply, "certs")) != NULL
                                   ? json_string_value(json_object_get(reply, "certs")) : "ok");
        else
            print_change(reply);
        rc = CTL_EXIT_OK;
    }
    fflush(stdout);
    json_decref(reply);
    return rc;
}

/* <req> as one protocol line with its LF (caller frees), or NULL with a
 * message printed. */
static char *
encode_line(const json_t *req)
{
    char *text, *line;
    size_t n;

    text = json_dumps(req, JSON_COMPACT | JSON_REAL_PRECISION(15));
    if (text == NULL) {
        fputs("cutoverctl: cannot encode the request\n", stderr);
        return NULL;
    }
    n = strlen(text);
    line = malloc(n + 2);
    if (line == NULL) {
        fputs("cutoverctl: out of memory\n", stderr);
        exit(CTL_EXIT_UNREACHABLE);
    }
    memcpy(line, text, n);
    memcpy(line + n, "\n", 2);
    free(text);
    return line;
}

/* Sends <line> on <c> and prints the reply. Returns the exit status; with
 * <is_intr> non-NULL an interrupt while waiting sets it. */
static int
roundtrip(const struct ctl_opts *o, struct ctl_conn *c, const char *line, bool *is_intr)
{
    char *reply;
    int rc;

    /* one write for the whole line: the daemon answers once it sees the LF */
    if ((rc = conn_send(c, line)) != 0)
        return rc;
    if ((rc = conn_read_line(c, &reply, is_intr)) != 0 || reply == NULL)
        return rc;
    rc = show_reply(o, c, reply);
    free(reply);
    return rc;
}

/* The line is ready before the connection: it is sent at once, so the
 * daemon finds it there when it accepts (under a flood of connections
 * that is what keeps the operator's from being evicted). */
static int
run_once(const struct ctl_opts *o, const json_t *req)
{
    struct ctl_conn c;
    char *line = encode_line(req);
    int rc;

    if (line == NULL)
        return CTL_EXIT_USAGE;
    if ((rc = conn_open(&c, o->socket)) == 0) {
        rc = roundtrip(o, &c, line, NULL);
        conn_close(&c);
    }
    free(line);
    return rc;
}

/* status every second until SIGINT (exit 0) or an error. */
static int
run_watch(const struct ctl_opts *o, const json_t *req)
{
    struct sigaction sa;
    struct ctl_conn c;
    struct timespec tick = { .tv_sec = 1, .tv_nsec = 0 };
    bool is_intr = false, is_tty = !o->is_json && isatty(STDOUT_FILENO);
    char *line = encode_line(req);
    int rc;

    if (line == NULL)
        return CTL_EXIT_USAGE;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;                   /* no SA_RESTART: wake up from poll/sleep */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    if ((rc = conn_open(&c, o->socket)) != 0) {
        free(line);
        return rc;
    }
    for (;;) {
        if (is_tty)
            fputs("\033[H\033[2J", stdout);    /* redraw in place */
        rc = roundtrip(o, &c, line, &is_intr);
        if (rc != 0 || is_intr || interrupted)
            break;
        if (!o->is_json && !is_tty)
            putchar('\n');
        fflush(stdout);
        if (nanosleep(&tick, NULL) != 0 && interrupted)
            break;
    }
    conn_close(&c);
    free(line);
    return interrupted ? CTL_EXIT_OK : rc;
}

/* ---- command line ------------------------------------------------------ */

/* Consumes the global option at argv[*i] (with its value). Returns 1 when it
 * was one, 0 when it is not a global option, or CTL_EXIT_USAGE (negated). */
static int
global_option(struct ctl_opts *o, int argc, char **argv, int *i, bool only_json)
{
    const char *a = argv[*i];

    if (strcmp(a, "--json") == 0) {
        o->is_json = true;
        return 1;
    }
    if (only_json)
        return 0;
    if (strcmp(a, "-s") == 0 || strcmp(a, "--socket") == 0
        || strcmp(a, "-S") == 0 || strcmp(a, "--service") == 0) {
        if (*i + 1 >= argc)
            return -usage_error("option %s needs a value", a);
        (*i)++;
        if (a[1] == 's' || strcmp(a, "--socket") == 0) {
            if (strlen(argv[*i]) >= sizeof(o->socket))
                return -usage_error("socket path too long: %s", argv[*i]);
            snprintf(o->socket, sizeof(o->socket), "%s", argv[*i]);
        } else {
            if (argv[*i][0] == '\0')
                return -usage_error("%s", "empty service name");
            o->service = argv[*i];
        }
        return 1;
    }
    return 0;
}

/* Builds the request for the command at argv[*i..]. Returns 0 with <*req>
 * set (the caller owns it), or an exit status with a message printed. */
static int
build_request(struct ctl_opts *o, int argc, char **argv, int i, json_t **req)
{
    const char *cmd = o->cmd;
    const char *pos[2] = { NULL, NULL };
    const char *reason = NULL, *a;
    long drain_s = -1, n = -1;
    bool force = false;
    unsigned npos = 0, maxpos = 0;
    uint32_t bp;
    size_t bad;
    json_t *r;
    int k;

    if (strcmp(cmd, "weight") == 0 || strcmp(cmd, "switch") == 0
        || strcmp(cmd, "plan") == 0 || strcmp(cmd, "certs") == 0)
        maxpos = 1;
    else if (strcmp(cmd, "status") != 0 && strcmp(cmd, "rollback") != 0
             && strcmp(cmd, "promote") != 0 && strcmp(cmd, "audit") != 0
             && strcmp(cmd, "watch") != 0 && strcmp(cmd, "diffs") != 0)
        return usage_error("unknown command \"%s\"", cmd);

    for (; i < argc; i++) {
        a = argv[i];
        if ((k = global_option(o, argc, argv, &i, true)) < 0)
            return -k;
        if (k == 1)
            continue;
        if (strcmp(cmd, "rollback") == 0 && strcmp(a, "--reason") == 0) {
            if (++i >= argc)
                return usage_error("%s needs a value", a);
            reason = argv[i];
        } else if (strcmp(cmd, "switch") == 0 && strcmp(a, "--drain-s") == 0) {
            if (++i >= argc)
                return usage_error("%s needs a value", a);
            if (parse_uint(argv[i], 0, INT_MAX, &drain_s) != 0)
                return usage_error("--drain-s needs a number of seconds, got \"%s\"",
                                   argv[i]);
        } else if (strcmp(cmd, "switch") == 0 && strcmp(a, "--force") == 0) {
            force = true;
        } else if ((strcmp(cmd, "audit") == 0 || strcmp(cmd, "diffs") == 0) &&
                   strcmp(a, "-n") == 0) {
            if (++i >= argc)
                return usage_error("%s needs a value", a);
            if (parse_uint(argv[i], 1, 1000000, &n) != 0)
                return usage_error("-n needs a positive number, got \"%s\"", argv[i]);
        } else if (a[0] == '-' && a[1] != '\0' && !(strcmp(cmd, "weight") == 0
                                                    && npos == 0)) {
            return usage_error("unknown option \"%s\"", a);
        } else {
            if (npos >= maxpos)
                return usage_error("unexpected argument \"%s\"", a);
            pos[npos++] = a;
        }
    }
    if (npos < maxpos)
        return usage_error("%s needs an argument", cmd);

    r = json_object();
    if (r == NULL)
        return CTL_EXIT_USAGE;
    json_object_set_new(r, "cmd", json_string(strcmp(cmd, "watch") == 0 ? "status" : cmd));
    if (o->service != NULL)
        json_object_set_new(r, "service", json_string(o->service));

    if (strcmp(cmd, "weight") == 0) {
        if (ctl_weight_parse(pos[0], &bp) != 0) {
            json_decref(r);
            return usage_error("weight must be a number in 0..100 with at most two "
                               "decimals, got \"%s\"", pos[0]);
        }
        /* Whole percents go as integers; others as the nearest double, which
         * the daemon maps back to the same basis points. */
        json_object_set_new(r, "percent", bp % 100 == 0 ? json_integer(bp / 100)
                                                        : json_real(bp / 100.0));
    } else if (strcmp(cmd, "rollback") == 0) {
        if (reason != NULL)
            json_object_set_new(r, "reason", json_string(reason));
    } else if (strcmp(cmd, "switch") == 0) {
        if (strcmp(pos[0], "new") != 0 && strcmp(pos[0], "legacy") != 0) {
            json_decref(r);
            return usage_error("switch to \"new\" or \"legacy\", not \"%s\"", pos[0]);
        }
        json_object_set_new(r, "to", json_string(pos[0]));
        if (drain_s >= 0)
            json_object_set_new(r, "drain_s", json_integer(drain_s));
        json_object_set_new(r, "force", json_boolean(force));
    } else if (strcmp(cmd, "plan") == 0) {
        if (strcmp(pos[0], "start") != 0 && strcmp(pos[0], "pause") != 0
            && strcmp(pos[0], "resume") != 0 && strcmp(pos[0], "abort") != 0) {
            json_decref(r);
            return usage_error("plan start|pause|resume|abort, not \"%s\"", pos[0]);
        }
        json_object_set_new(r, "action", json_string(pos[0]));
    } else if (strcmp(cmd, "audit") == 0 || strcmp(cmd, "diffs") == 0) {
        if (n > 0)
            json_object_set_new(r, "n", json_integer(n));
    } else if (strcmp(cmd, "certs") == 0) {
        if (strcmp(pos[0], "reload") != 0) {
            json_decref(r);
            return usage_error("certs reload, not \"%s\"", pos[0]);
        }
        json_object_set_new(r, "action", json_string(pos[0]));
    }
    if (json_object_get(r, "cmd") == NULL
        || (o->service != NULL && json_object_get(r, "service") == NULL)) {
        json_decref(r);                /* json_string() refuses invalid UTF-8 */
        return usage_error("%s", "arguments must be valid UTF-8");
    }
    if (reason != NULL && json_object_get(r, "reason") == NULL) {
        json_decref(r);
        return usage_error("%s", "--reason must be valid UTF-8");
    }
    if (reason != NULL && !ctl_text_ok(reason, strlen(reason), &bad)) {
        json_decref(r);
        fprintf(stderr, "cutoverctl: --reason must be one line of printable text: byte %zu "
                "is a control character, a line separator or a bidirectional control\n"
                "(see cutoverctl help)\n", bad);
        return CTL_EXIT_USAGE;
    }
    *req = r;
    return 0;
}

int
main(int argc, char **argv)
{
    struct ctl_opts o;
    json_t *req = NULL;
    int i, k, rc;

    memset(&o, 0, sizeof(o));
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return CTL_EXIT_OK;
        }
        if ((k = global_option(&o, argc, argv, &i, false)) < 0)
            return -k;
        if (k == 1)
            continue;
        if (argv[i][0] == '-' && argv[i][1] != '\0')
            return usage_error("unknown option \"%s\"", argv[i]);
        break;
    }
    if (i >= argc)
        return usage_error("%s", "missing command");
    o.cmd = argv[i++];
    if (strcmp(o.cmd, "help") == 0) {
        usage(stdout);
        return CTL_EXIT_OK;
    }
    if ((rc = build_request(&o, argc, argv, i, &req)) != 0)
        return rc;
    if (o.socket[0] == '\0')
        ctl_default_socket(o.socket, sizeof(o.socket));

    if (strcmp(o.cmd, "watch") == 0)
        rc = run_watch(&o, req);
    else
        rc = run_once(&o, req);
    json_decref(req);
    return rc;
}
