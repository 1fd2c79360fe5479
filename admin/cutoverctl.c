/*
 * cutoverctl: the operator's command-line client. It speaks only the admin
 * protocol (one JSON line out, one JSON line back over the unix socket) and
 * shares nothing with the daemon but admin/ctl_proto.h, so it can never
 * depend on daemon internals. How replies are shown is admin/ctl_show.c.
 *
 * The command line is two tables: the options (global ones and those of
 * some commands) and the commands (arguments, which options apply, the help
 * text, how the request is built and the reply shown). A new command is one
 * entry. Options may come before or after the command; `--opt=VALUE` is
 * the same as `--opt VALUE`; `--` ends the options.
 *
 * Everything that can be checked locally (command names, options, the weight
 * syntax, the reason's text) is checked before connecting, so a typo is a
 * usage error (exit 2) and never reaches the daemon. Exit status: 0 done, 1
 * refused by the daemon, 2 usage, 3 the daemon cannot be reached or its
 * reply was cut off.
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

#include "admin/ctl_diffs.h"
#include "admin/ctl_gates.h"
#include "admin/ctl_proto.h"
#include "admin/ctl_show.h"
#include "lib/version.h"

#define CTL_REPLY_TIMEOUT_MS 30000
#define CTL_REPLY_MAX        (64u * 1024u * 1024u)   /* bytes of one reply line */
#define CTL_MAX_POS          3         /* positional arguments of any command */

/* One connection to the daemon. */
struct ctl_conn {
    const char *path;                  /* borrowed: the socket path */
    int fd;
    char *buf;                         /* owned: bytes read, not yet a full line */
    size_t len, cap;
};

struct ctl_cmd;

/* What the command line asked for; strings borrowed from argv. */
struct ctl_opts {
    char socket[4096];
    const char *service;
    bool is_json;
    const struct ctl_cmd *cmd;
    const char *cmd_name;              /* as typed */
    const char *pos[CTL_MAX_POS];
    unsigned npos;
    unsigned seen;                     /* CTL_O_* given */
    const char *reason;
    long drain_s, n;
};

/* How a reply is shown. */
enum ctl_show_kind { SHOW_CHANGE, SHOW_STATUS, SHOW_AUDIT, SHOW_CERTS, SHOW_GATES,
                     SHOW_MESSAGE, SHOW_DIFFS };

/* Adds the command's own fields to <req> (cmd, service, the positional
 * argument's field and reason are added by build_request()). Returns 0, or
 * an exit status with a message printed. */
typedef int ctl_build_fn(const struct ctl_opts *o, json_t *req);

/* A command. */
struct ctl_cmd {
    const char *name;
    const char *proto;                 /* the protocol's "cmd"; NULL: local */
    const char *arg;                   /* the positional argument's synopsis, or NULL */
    const char *words;                 /* "a|b|c": the argument must be one of these */
    const char *field;                 /* the request field the argument goes to */
    unsigned minpos, maxpos;
    unsigned opts;                     /* CTL_O_* of the command */
    const char *summary;               /* one line, for the list */
    const char *help;                  /* for `help COMMAND` */
    ctl_build_fn *build;               /* NULL: nothing more */
    enum ctl_show_kind show;
    bool watch;                        /* repeat every second */
};

static volatile sig_atomic_t interrupted;

static void
on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
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

/* The last failure to reach the daemon; watch says it once, not on every
 * try, while <quiet_unreachable>. */
static int unreachable_err;
static bool quiet_unreachable;

static int
unreachable(const struct ctl_conn *c, int err)
{
    unreachable_err = err;
    if (!quiet_unreachable)
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
                reply == NULL ? ctl_shown(je.text, strlen(je.text), 0) : "no \"ok\" field");
        json_decref(reply);
        return CTL_EXIT_UNREACHABLE;
    }
    if (!json_is_true(ok)) {
        err = json_object_get(reply, "error");
        if (o->is_json)
            ctl_print_json(reply, text);
        fprintf(stderr, "cutoverctl: %s\n",
                json_is_string(err) ? ctl_shown(json_string_value(err), json_string_length(err), 0) : "refused");
        rc = CTL_EXIT_REFUSED;
    } else {
        if (o->cmd->show == SHOW_GATES)
            ctl_print_gates(reply, o->is_json);
        else if (o->is_json)
            ctl_print_json(reply, text);
        else if (o->cmd->show == SHOW_STATUS)
            ctl_print_status(reply);
        else if (o->cmd->show == SHOW_AUDIT)
            ctl_print_audit(reply);
        else if (o->cmd->show == SHOW_DIFFS)
            ctl_print_diffs(reply);
        else if (o->cmd->show == SHOW_MESSAGE)
            printf("%s\n", json_is_string(json_object_get(reply, "message"))
                            ? ctl_shown(json_string_value(json_object_get(reply, "message")),
                                        json_string_length(json_object_get(reply, "message")), 0)
                            : "ok");
        else if (o->cmd->show == SHOW_CERTS)
            printf("certs: %s\n", json_string_value(json_object_get(reply, "certs")) != NULL
                                   ? json_string_value(json_object_get(reply, "certs")) : "ok");
        else
            ctl_print_change(reply);
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

/* The local time now in <fmt> (strftime) into <buf>. */
static const char *
now_text(const char *fmt, char *buf, size_t len)
{
    time_t t = time(NULL);
    struct tm tm;

    if (localtime_r(&t, &tm) == NULL || strftime(buf, len, fmt, &tm) == 0)
        snprintf(buf, len, "%lld", (long long)t);
    return buf;
}

/* Sleeps <ms> unless interrupted. */
static void
nap_ms(long ms)
{
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };

    if (!interrupted)
        nanosleep(&ts, NULL);
}

/*
 * watch: status every second until SIGINT or SIGTERM (exit 0). Each frame
 * starts with the local time; on a terminal it is redrawn in place. The
 * daemon going away (a restart) is said once, on stdout ("lost the daemon
 * (why): reconnecting every 1 s"), and the socket tried again every second
 * until it answers ("reconnected after N s"); with --json those lines go to stderr so
 * stdout stays one JSON object a line. A daemon that cannot be reached at
 * the start is exit 3 as for any command; a refusal (an unknown service)
 * ends the watch with exit 1.
 */
static int
run_watch(const struct ctl_opts *o, const json_t *req)
{
    struct sigaction sa;
    struct ctl_conn c;
    bool is_intr = false, is_tty = !o->is_json && isatty(STDOUT_FILENO), up;
    FILE *say = o->is_json ? stderr : stdout;
    char *line = encode_line(req), ts[64];
    time_t lost_at = 0;
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
    up = true;
    quiet_unreachable = true;
    while (!interrupted) {
        if (!up) {
            if (conn_open(&c, o->socket) != 0) {
                nap_ms(1000);
                continue;
            }
            up = true;
            fprintf(say, "%s  reconnected after %lld s\n", now_text("%H:%M:%S", ts, sizeof(ts)),
                    (long long)(time(NULL) - lost_at));
            fflush(say);
        }
        if (is_tty)
            fputs("\033[H\033[2J", stdout);    /* redraw in place */
        if (!o->is_json)
            printf("cutoverctl watch  %s  (every 1 s; Ctrl-C stops)\n",
                   now_text("%Y-%m-%d %H:%M:%S %Z", ts, sizeof(ts)));
        rc = roundtrip(o, &c, line, &is_intr);
        if (is_intr || interrupted)
            break;
        if (rc == CTL_EXIT_UNREACHABLE) {
            conn_close(&c);
            up = false;
            lost_at = time(NULL);
            fprintf(say, "%s  lost the daemon (%s): reconnecting every 1 s\n",
                    now_text("%H:%M:%S", ts, sizeof(ts)), strerror(unreachable_err));
            fflush(say);
            nap_ms(1000);
            continue;
        }
        if (rc != 0)
            break;
        if (!o->is_json && !is_tty)
            putchar('\n');
        fflush(stdout);
        nap_ms(1000);
    }
    if (up)
        conn_close(&c);
    free(line);
    return interrupted ? CTL_EXIT_OK : rc;
}

/* ---- command line ------------------------------------------------------ */

enum {
    CTL_O_SOCKET  = 1u << 0,
    CTL_O_SERVICE = 1u << 1,
    CTL_O_JSON    = 1u << 2,
    CTL_O_HELP    = 1u << 3,
    CTL_O_VERSION = 1u << 4,
    CTL_O_REASON  = 1u << 5,
    CTL_O_DRAIN   = 1u << 6,
    CTL_O_FORCE   = 1u << 7,
    CTL_O_N       = 1u << 8,
    CTL_O_FLEET   = 1u << 9,
};
#define CTL_O_GLOBAL (CTL_O_SOCKET | CTL_O_SERVICE | CTL_O_JSON | CTL_O_HELP | CTL_O_VERSION)

/* An option: a short name, a long one or both; a value or a flag. */
struct ctl_opt {
    unsigned bit;
    char short_name;                   /* '\0': none */
    const char *long_name;             /* "--reason"; NULL: none */
    const char *metavar;               /* the value's name; NULL: a flag */
    const char *help;
};

static const struct ctl_opt opt_table[] = {
    { CTL_O_SOCKET, 's', "--socket", "SOCKET",
      "the admin socket ($CUTOVER_SOCKET, else the default)" },
    { CTL_O_SERVICE, 'S', "--service", "SERVICE",
      "the service (may be left out with one service)" },
    { CTL_O_JSON, '\0', "--json", NULL, "print the daemon's reply as one JSON line" },
    { CTL_O_HELP, 'h', "--help", NULL, "this text; with a command, that command's" },
    { CTL_O_VERSION, 'V', "--version", NULL, "print the version and exit" },
    { CTL_O_REASON, '\0', "--reason", "TEXT",
      "why, one line of printable text: written to the audit log" },
    { CTL_O_DRAIN, '\0', "--drain-s", "N",
      "close the tunnels (TCP, WebSocket) to the side left after N seconds" },
    { CTL_O_FORCE, '\0', "--force", NULL,
      "past new's failing checks (switch) or a failing migration gate" },
    { CTL_O_N, 'n', NULL, "N", "how many entries (default 20)" },
    { CTL_O_FLEET, '\0', "--fleet", NULL,
      "every instance of the fleet too (a daemon with store.postgres)" },
};
#define NOPTS (sizeof(opt_table) / sizeof(opt_table[0]))

/* --force of a raise: past a failing migration gate (docs/gates.md). */
static int
build_force(const struct ctl_opts *o, json_t *req)
{
    if (o->seen & CTL_O_FORCE)
        json_object_set_new(req, "force", json_true());
    return 0;
}

/* status --fleet: every instance's row too (docs/fleet.md). */
static int
build_fleet(const struct ctl_opts *o, json_t *req)
{
    if (o->seen & CTL_O_FLEET)
        json_object_set_new(req, "fleet", json_true());
    return 0;
}

static int
build_weight(const struct ctl_opts *o, json_t *req)
{
    char text[32];
    size_t n = strlen(o->pos[0]);
    uint32_t bp;

    /* "10%" is 10: the unit is allowed, once, at the end */
    if (n > 1 && n < sizeof(text) && o->pos[0][n - 1] == '%') {
        memcpy(text, o->pos[0], n - 1);
        text[n - 1] = '\0';
    } else {
        snprintf(text, sizeof(text), "%s", n < sizeof(text) ? o->pos[0] : "x");
    }
    if (ctl_weight_parse(text, &bp) != 0)
        return usage_error("weight must be a number in 0..100 with at most two decimals "
                           "(a %% sign after it is allowed), got \"%s\"", o->pos[0]);
    /* Whole percents go as integers; others as the nearest double, which
     * the daemon maps back to the same basis points. */
    json_object_set_new(req, "percent", bp % 100 == 0 ? json_integer(bp / 100)
                                                       : json_real(bp / 100.0));
    return build_force(o, req);
}

/* --drain-s of a rollback. */
static int
build_drain(const struct ctl_opts *o, json_t *req)
{
    if (o->seen & CTL_O_DRAIN)
        json_object_set_new(req, "drain_s", json_integer(o->drain_s));
    return 0;
}

static int
build_switch(const struct ctl_opts *o, json_t *req)
{
    if (o->seen & CTL_O_DRAIN)
        json_object_set_new(req, "drain_s", json_integer(o->drain_s));
    json_object_set_new(req, "force", json_boolean((o->seen & CTL_O_FORCE) != 0));
    return 0;
}

/* `server drain|disable|enable SIDE ADDR`: the side and the server. */
static int
build_server(const struct ctl_opts *o, json_t *req)
{
    if (strcmp(o->pos[1], "legacy") != 0 && strcmp(o->pos[1], "new") != 0)
        return usage_error("the side is \"legacy\" or \"new\", not \"%s\"", o->pos[1]);
    json_object_set_new(req, "side", json_string(o->pos[1]));
    json_object_set_new(req, "server", json_string(o->pos[2]));
    if (json_object_get(req, "server") == NULL)
        return usage_error("%s", "arguments must be valid UTF-8");
    return 0;
}

/* -n of audit and diffs. */
static int
build_n(const struct ctl_opts *o, json_t *req)
{
    if (o->seen & CTL_O_N)
        json_object_set_new(req, "n", json_integer(o->n));
    return 0;
}

static const struct ctl_cmd cmd_table[] = {
    { "status", "status", NULL, NULL, NULL, 0, 0, CTL_O_FLEET,
      "weight, state, servers and windows",
      "Every service (or the one of -S): the weight set and the share new gets now,\n"
      "the state, the plan, every server's health and both sides' windows. With\n"
      "--fleet (a daemon with store.postgres), every instance of the fleet too.\n",
      build_fleet, SHOW_STATUS, false },
    { "weight", "weight", "P", NULL, NULL, 1, 1, CTL_O_REASON | CTL_O_FORCE,
      "share to new, 0..100, two decimals at most",
      "Sets the share of traffic to new: P in 0..100 with at most two decimals\n"
      "(\"10\", \"12.5\", \"10%\"). Clears a rolled_back or frozen latch and ends a\n"
      "running plan.\n",
      build_weight, SHOW_CHANGE, false },
    { "rollback", "rollback", NULL, NULL, NULL, 0, 0, CTL_O_REASON | CTL_O_DRAIN,
      "weight 0 now, state rolled_back",
      "Sends everything to legacy at once and latches the state rolled_back until\n"
      "an operator sets a weight again. Returns once every worker routes by it and\n"
      "the state is on disk. Tunnels (TCP, WebSocket) still on new close after\n"
      "--drain-s N seconds (default rollback.drain_s).\n",
      build_drain, SHOW_CHANGE, false },
    { "promote", "promote", NULL, NULL, NULL, 0, 0, CTL_O_REASON | CTL_O_FORCE,
      "weight 100",
      "Sets the weight to 100 and the state promoted. Refused while a migration\n"
      "gate fails, unless --force.\n",
      build_force, SHOW_CHANGE, false },
    { "switch", "switch", "new|legacy", "new|legacy", "to", 1, 1,
      CTL_O_REASON | CTL_O_DRAIN | CTL_O_FORCE,
      "blue-green flip",
      "Moves all traffic to one side at once (weight 100 or 0). Idle pooled\n"
      "connections to the side left close; requests in flight finish. Refused\n"
      "when new has no healthy server, unless --force.\n",
      build_switch, SHOW_CHANGE, false },
    { "plan", "plan", "start|pause|resume|abort", "start|pause|resume|abort", "action", 1, 1,
      CTL_O_REASON | CTL_O_FORCE,
      "the progressive plan",
      "Runs the plan of the configuration (plan.steps, plan.bake_s): a step\n"
      "advances once it baked without a breach and new served\n"
      "rollback.min_requests in it. start needs a weight at or below the first\n"
      "step and no latch; pause stops the bake clock; abort keeps the weight.\n"
      "A step also waits for every migration gate; start is refused while one\n"
      "fails, unless --force.\n",
      build_force, SHOW_CHANGE, false },
    { "gates", "status", NULL, NULL, NULL, 0, 0, 0,
      "the migration gates: verdict, value, reason",
      "Every migration gate of every service (or of -S): kind, last value, verdict,\n"
      "since when, and why (docs/gates.md). A raise is refused while one fails.\n",
      NULL, SHOW_GATES, false },
    { "server", "server", "drain|disable|enable SIDE ADDR", "drain|disable|enable", "action",
      3, 3, CTL_O_REASON,
      "one server out of rotation, or back",
      "Takes the server ADDR (as the config writes it) of SIDE (legacy or new) out of\n"
      "rotation on every worker before it returns: drain lets requests and tunnels\n"
      "in flight finish; disable also pauses its health checks; enable puts it\n"
      "back. Kept across reloads and restarts; audited.\n",
      build_server, SHOW_MESSAGE, false },
    { "audit", "audit", NULL, NULL, NULL, 0, 0, CTL_O_N,
      "the last N audit entries",
      "The last N entries of the audit log (of the service of -S only, when\n"
      "given), oldest first: time, service, actor, action, weights, reason,\n"
      "figures.\n",
      build_n, SHOW_AUDIT, false },
    { "certs", "certs", "reload", "reload", "action", 1, 1, CTL_O_REASON,
      "read every TLS certificate and key again",
      "Reads every certificate and key the running configuration names and\n"
      "installs them only when all load; otherwise the running ones stay.\n",
      NULL, SHOW_CERTS, false },
    { "diffs", "diffs", NULL, NULL, NULL, 0, 0, CTL_O_N,
      "the last N differences shadow traffic kept",
      "The last N differences shadow traffic kept for the service (-S; may be left\n"
      "out with one service), oldest first: the request, the serving and the shadow\n"
      "server with their statuses, and the differing fields side by side\n"
      "(docs/shadow.md). Refused for a service without a \"shadow\" section.\n",
      build_n, SHOW_DIFFS, false },
    { "watch", "status", NULL, NULL, NULL, 0, 0, CTL_O_FLEET,
      "status every second until interrupted",
      "Shows status every second until Ctrl-C (with --fleet, the fleet's too).\n",
      build_fleet, SHOW_STATUS, true },
    { "help", NULL, "[COMMAND]", NULL, NULL, 0, 1, 0,
      "this text, or a command's",
      "The list of commands and options, or what COMMAND does and takes.\n",
      NULL, SHOW_CHANGE, false },
};
#define NCMDS (sizeof(cmd_table) / sizeof(cmd_table[0]))

static const struct ctl_cmd *
find_cmd(const char *name)
{
    size_t i;

    for (i = 0; i < NCMDS; i++)
        if (strcmp(cmd_table[i].name, name) == 0)
            return &cmd_table[i];
    return NULL;
}

/* The option's name as the user would type it. */
static const char *
opt_name(const struct ctl_opt *op, char *buf, size_t len)
{
    if (op->long_name != NULL)
        return op->long_name;
    snprintf(buf, len, "-%c", op->short_name);
    return buf;
}

/* " [--reason TEXT]" for every option of <opts>, written into <buf>. */
static const char *
opts_synopsis(unsigned opts, char *buf, size_t len)
{
    size_t i, k = 0;
    char nb[8];

    buf[0] = '\0';
    for (i = 0; i < NOPTS && k < len; i++) {
        if (!(opts & opt_table[i].bit))
            continue;
        k += (size_t)snprintf(buf + k, len - k, " [%s%s%s]",
                              opt_name(&opt_table[i], nb, sizeof(nb)),
                              opt_table[i].metavar != NULL ? " " : "",
                              opt_table[i].metavar != NULL ? opt_table[i].metavar : "");
    }
    return buf;
}

static void
print_opt(FILE *f, const struct ctl_opt *op)
{
    char left[64];

    if (op->short_name != '\0' && op->long_name != NULL)
        snprintf(left, sizeof(left), "-%c, %s%s%s", op->short_name, op->long_name,
                 op->metavar != NULL ? " " : "", op->metavar != NULL ? op->metavar : "");
    else
        snprintf(left, sizeof(left), "%s%s%s%s", op->long_name != NULL ? op->long_name : "-",
                 op->long_name != NULL ? "" : (char[2]){ op->short_name, '\0' },
                 op->metavar != NULL ? " " : "", op->metavar != NULL ? op->metavar : "");
    fprintf(f, "  %-22s %s\n", left, op->help);
}

static void
usage(FILE *f)
{
    char syn[160], line[256];
    size_t i;

    fputs("usage: cutoverctl [-s SOCKET] [-S SERVICE] [--json] COMMAND [ARGS]\n"
          "       cutoverctl help [COMMAND] | --help | --version\n"
          "\ncommands:\n", f);
    for (i = 0; i < NCMDS; i++) {
        const struct ctl_cmd *c = &cmd_table[i];

        snprintf(line, sizeof(line), "%s%s%s%s", c->name, c->arg != NULL ? " " : "",
                 c->arg != NULL ? c->arg : "", opts_synopsis(c->opts, syn, sizeof(syn)));
        if (strlen(line) > 36)
            fprintf(f, "  %s\n  %-36s %s\n", line, "", c->summary);
        else
            fprintf(f, "  %-36s %s\n", line, c->summary);
    }
    fputs("\noptions (before or after the command):\n", f);
    for (i = 0; i < NOPTS; i++)
        if (opt_table[i].bit & CTL_O_GLOBAL)
            print_opt(f, &opt_table[i]);
    fputs("\n`cutoverctl help COMMAND` shows a command's own options.\n"
          "exit status: 0 done, 1 refused by the daemon, 2 usage, 3 daemon unreachable\n", f);
}

static void
usage_cmd(FILE *f, const struct ctl_cmd *c)
{
    char syn[160];
    size_t i;

    fprintf(f, "usage: cutoverctl [-s SOCKET] [-S SERVICE] [--json] %s%s%s%s\n\n%s",
            c->name, c->arg != NULL ? " " : "", c->arg != NULL ? c->arg : "",
            opts_synopsis(c->opts, syn, sizeof(syn)), c->help);
    if (c->opts != 0) {
        fputs("\noptions:\n", f);
        for (i = 0; i < NOPTS; i++)
            if (c->opts & opt_table[i].bit)
                print_opt(f, &opt_table[i]);
    }
}

/* The option <a> names (<*val> set to what follows "=" in "--opt=VALUE"),
 * or NULL. */
static const struct ctl_opt *
find_opt(const char *a, const char **val)
{
    size_t i, n;
    const char *eq;

    *val = NULL;
    if (a[0] == '-' && a[1] == '-') {
        eq = strchr(a, '=');
        n = eq != NULL ? (size_t)(eq - a) : strlen(a);
        for (i = 0; i < NOPTS; i++) {
            if (opt_table[i].long_name != NULL && strlen(opt_table[i].long_name) == n
                && strncmp(opt_table[i].long_name, a, n) == 0) {
                *val = eq != NULL ? eq + 1 : NULL;
                return &opt_table[i];
            }
        }
        return NULL;
    }
    for (i = 0; a[0] == '-' && a[1] != '\0' && a[2] == '\0' && i < NOPTS; i++)
        if (opt_table[i].short_name == a[1])
            return &opt_table[i];
    return NULL;
}

/* Stores option <op> with value <val>. Returns 0 or CTL_EXIT_USAGE. */
static int
set_opt(struct ctl_opts *o, const struct ctl_opt *op, const char *val)
{
    o->seen |= op->bit;
    switch (op->bit) {
    case CTL_O_SOCKET:
        if (strlen(val) >= sizeof(o->socket))
            return usage_error("socket path too long: %s", val);
        snprintf(o->socket, sizeof(o->socket), "%s", val);
        break;
    case CTL_O_SERVICE:
        if (val[0] == '\0')
            return usage_error("%s", "empty service name");
        o->service = val;
        break;
    case CTL_O_JSON:
        o->is_json = true;
        break;
    case CTL_O_REASON:
        o->reason = val;
        break;
    case CTL_O_DRAIN:
        if (parse_uint(val, 0, INT_MAX, &o->drain_s) != 0)
            return usage_error("--drain-s needs a number of seconds, got \"%s\"", val);
        break;
    case CTL_O_N:
        if (parse_uint(val, 1, 1000000, &o->n) != 0)
            return usage_error("-n needs a positive number, got \"%s\"", val);
        break;
    default:
        break;
    }
    return 0;
}

/* True when <a> reads as a number with a minus sign ("-5", "-.5"): a bad
 * weight, reported as such rather than as an unknown option. */
static bool
negative_number(const char *a)
{
    return a[0] == '-' && ((a[1] >= '0' && a[1] <= '9') || a[1] == '.');
}

/* Parses argv into <o>. Returns 0 or an exit status with a message
 * printed. */
static int
parse_args(struct ctl_opts *o, int argc, char **argv)
{
    const struct ctl_opt *op;
    bool opts_done = false;
    const char *a, *val;
    char nb[8];
    int i, rc;

    for (i = 1; i < argc; i++) {
        a = argv[i];
        if (!opts_done && strcmp(a, "--") == 0) {
            opts_done = true;
            continue;
        }
        if (!opts_done && a[0] == '-' && a[1] != '\0' && !negative_number(a)) {
            if ((op = find_opt(a, &val)) == NULL)
                return usage_error("unknown option \"%s\"", a);
            if (op->metavar == NULL && val != NULL)
                return usage_error("option %s takes no value", opt_name(op, nb, sizeof(nb)));
            if (op->metavar != NULL && val == NULL) {
                if (++i >= argc)
                    return usage_error("option %s needs a value", a);
                val = argv[i];
            }
            if ((rc = set_opt(o, op, val)) != 0)
                return rc;
            continue;
        }
        if (o->cmd == NULL) {
            if ((o->cmd = find_cmd(a)) == NULL)
                return usage_error("unknown command \"%s\"", a);
            o->cmd_name = a;
            continue;
        }
        if (o->npos >= o->cmd->maxpos)
            return usage_error("unexpected argument \"%s\"", a);
        o->pos[o->npos++] = a;
    }
    return 0;
}

/* Checks what parse_args() found against the command. Returns 0 or an exit
 * status with a message printed. */
static int
check_args(const struct ctl_opts *o)
{
    const struct ctl_cmd *c = o->cmd;
    char msg[128], nb[8];
    const char *w;
    size_t i, n;

    for (i = 0; i < NOPTS; i++) {
        if ((o->seen & opt_table[i].bit) && !(opt_table[i].bit & (CTL_O_GLOBAL | c->opts))) {
            snprintf(msg, sizeof(msg), "option %s does not apply to %%s (see cutoverctl "
                     "help %s)", opt_name(&opt_table[i], nb, sizeof(nb)), c->name);
            fputs("cutoverctl: ", stderr);
            fprintf(stderr, msg, c->name);
            fputc('\n', stderr);
            return CTL_EXIT_USAGE;
        }
    }
    if (o->npos < c->minpos)
        return usage_error("%s needs an argument", c->name);
    if (o->npos > 0 && c->words != NULL) {
        /* one of the words, whole */
        n = strlen(o->pos[0]);
        for (w = c->words; *w != '\0'; w += strcspn(w, "|") + (w[strcspn(w, "|")] != '\0'))
            if (strcspn(w, "|") == n && strncmp(w, o->pos[0], n) == 0)
                return 0;
        snprintf(msg, sizeof(msg), "%s %s, not \"%%s\"", c->name, c->words);
        return usage_error(msg, o->pos[0]);
    }
    return 0;
}

/* Builds the request of <o>. Returns 0 with <*req> set (the caller owns
 * it), or an exit status with a message printed. */
static int
build_request(const struct ctl_opts *o, json_t **req)
{
    const struct ctl_cmd *c = o->cmd;
    json_t *r;
    size_t bad;
    int rc;

    if (o->reason != NULL && !ctl_text_ok(o->reason, strlen(o->reason), &bad)) {
        fprintf(stderr, "cutoverctl: --reason must be one line of printable text: byte %zu "
                "is a control character, a line separator or a bidirectional control\n"
                "(see cutoverctl help)\n", bad);
        return CTL_EXIT_USAGE;
    }
    if ((r = json_object()) == NULL)
        return CTL_EXIT_USAGE;
    json_object_set_new(r, "cmd", json_string(c->proto));
    if (o->service != NULL)
        json_object_set_new(r, "service", json_string(o->service));
    if (c->field != NULL)
        json_object_set_new(r, c->field, json_string(o->pos[0]));
    if (o->reason != NULL)
        json_object_set_new(r, "reason", json_string(o->reason));
    if (c->build != NULL && (rc = c->build(o, r)) != 0) {
        json_decref(r);
        return rc;
    }
    /* json_string() refuses invalid UTF-8 */
    if ((o->service != NULL && json_object_get(r, "service") == NULL)
        || (c->field != NULL && json_object_get(r, c->field) == NULL)) {
        json_decref(r);
        return usage_error("%s", "arguments must be valid UTF-8");
    }
    if (o->reason != NULL && json_object_get(r, "reason") == NULL) {
        json_decref(r);
        return usage_error("%s", "--reason must be valid UTF-8");
    }
    *req = r;
    return 0;
}

int
main(int argc, char **argv)
{
    struct ctl_opts o;
    const struct ctl_cmd *topic;
    json_t *req = NULL;
    int rc;

    memset(&o, 0, sizeof(o));
    if ((rc = parse_args(&o, argc, argv)) != 0)
        return rc;
    if (o.seen & CTL_O_VERSION) {
        printf("cutoverctl %s\n", CUTOVER_VERSION);
        return CTL_EXIT_OK;
    }
    if (o.cmd != NULL && o.cmd->proto == NULL) {          /* help [COMMAND] */
        if (o.npos == 0) {
            usage(stdout);
            return CTL_EXIT_OK;
        }
        if ((topic = find_cmd(o.pos[0])) == NULL)
            return usage_error("no command \"%s\"", o.pos[0]);
        usage_cmd(stdout, topic);
        return CTL_EXIT_OK;
    }
    if (o.seen & CTL_O_HELP) {
        if (o.cmd != NULL)
            usage_cmd(stdout, o.cmd);
        else
            usage(stdout);
        return CTL_EXIT_OK;
    }
    if (o.cmd == NULL)
        return usage_error("%s", "missing command");
    if ((rc = check_args(&o)) != 0 || (rc = build_request(&o, &req)) != 0)
        return rc;
    if (o.socket[0] == '\0')
        ctl_default_socket(o.socket, sizeof(o.socket));

    if (o.cmd->watch)
        rc = run_watch(&o, req);
    else
        rc = run_once(&o, req);
    json_decref(req);
    return rc;
}
