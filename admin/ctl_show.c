/*
 * ctl_show: how cutoverctl shows the daemon's replies to a person: status
 * (services, plan, shadow traffic, servers, windows, the state store), the
 * reply of a change, audit entries, and --json. Every string from the
 * daemon goes through ctl_shown() (ctl_escape()), so an audit reason, a
 * service name, a check result or an error can never send a control or
 * escape sequence to the terminal nor look like a line of its own; --json
 * is printed as the daemon sent it unless it holds such characters, then
 * re-encoded with \uXXXX escapes. Part of the cutoverctl binary only
 * (admin/cutoverctl.c).
 */
#include "admin/ctl_show.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "admin/ctl_proto.h"

#define CTL_SHOWN_RING       32        /* strings of ctl_shown() alive at once */

/* <len> bytes of <s> as they may be shown on a terminal (ctl_escape() with
 * <flags>), in a buffer that stays valid for CTL_SHOWN_RING - 1 more calls. */
const char *
ctl_shown(const char *s, size_t len, unsigned flags)
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

/* The string <v> as it may be shown (ctl_shown()). */
static const char *
shown_str(const json_t *v, unsigned flags)
{
    return ctl_shown(json_string_value(v), json_string_length(v), flags);
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
        /* out of rotation by an operator (`server drain|disable`) */
        if (json_is_string(json_object_get(srv, "admin"))
            && strcmp(json_string_value(json_object_get(srv, "admin")), "ready") != 0)
            printf("  %s", shown_str(json_object_get(srv, "admin"), 0));
        /* active checks configured: the last result and the totals */
        if (json_is_string(last))
            printf("  check: %s (%s passed, %s failed)",
                   json_string_length(last) > 0 ? shown_str(last, 0) : "pending",
                   fmt_value(json_object_get(checks, "ok"), b2, sizeof(b2)),
                   fmt_value(json_object_get(checks, "fail"), b3, sizeof(b3)));
        putchar('\n');
    }
}

/* The passive windows of both sides side by side ("no data" for the
 * errors and latencies of a side that served no request in the window):
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
        if (json_is_integer(json_object_get(w, "requests"))
            && json_integer_value(json_object_get(w, "requests")) == 0) {
            /* no request in the window: no rate and no latency, not zeros */
            snprintf(cell[0][k], sizeof(cell[0][k]), "0");
            snprintf(cell[1][k], sizeof(cell[1][k]), "no data");
            snprintf(cell[2][k], sizeof(cell[2][k]), "no data");
            continue;
        }
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

#define PLAN_BAR_WIDTH 8
#define SHOW_COLUMNS   80        /* a reason wraps to fit */

/* The plan line: step, state and, while it runs, the bake as a bar and the
 * requests new served in the step:
 *   plan    step 2/3 (50%)  progressing  bake [####----] 4.5/10 s, 5.5 s left
 *           requests on new 12 (min 5)
 * (seconds without a decimal from a bake of 100 s up: within 80 columns)
 * A plan that ended is shown as ended only while its end is the service's
 * last change (status "plan.current"); after a later change it is history:
 * the line says the plan is not running, as before a start. */
/* "  shield: shielded 12 requests (4.00 %), 0 over the budget" and, once a
 * drain closed any, "  drained: 1 tunnel(s), 0 tcp" */
static void
print_shield(const json_t *svc)
{
    const json_t *sh = json_object_get(svc, "shield"), *dr;
    char n[64], x[64];

    if (!json_is_object(sh))
        return;
    if (json_is_true(json_object_get(sh, "enabled")))
        printf("  shield: shielded %s requests (%.2f %%), %s over the budget\n",
               fmt_value(json_object_get(sh, "shielded"), n, sizeof(n)),
               json_number_value(json_object_get(sh, "percent")),
               fmt_value(json_object_get(sh, "budget_exhausted"), x, sizeof(x)));
    dr = json_object_get(sh, "drained");
    if (json_integer_value(json_object_get(dr, "tunnel")) > 0 ||
        json_integer_value(json_object_get(dr, "tcp")) > 0)
        printf("  drained: %s tunnel(s), %s tcp\n",
               fmt_value(json_object_get(dr, "tunnel"), n, sizeof(n)),
               fmt_value(json_object_get(dr, "tcp"), x, sizeof(x)));
}

/* One side's window of an instance in `status --fleet`:
 * "new 45 req, 3 err (6.67%), p99 1.20 ms" */
static void
print_fleet_window(const char *side, const json_t *w)
{
    char b1[64], b2[64], b3[64];

    if (!json_is_object(w)) {
        printf("  %s -", side);
        return;
    }
    printf("  %s %s req, %s err (%.2f%%), p99 %s ms", side,
           fmt_value(json_object_get(w, "requests"), b1, sizeof(b1)),
           fmt_value(json_object_get(w, "errors"), b2, sizeof(b2)),
           json_number_value(json_object_get(w, "error_rate")) * 100.0,
           fmt_value(json_object_get(w, "p99_ms"), b3, sizeof(b3)));
}
/* `status --fleet`, after the instance's own status:
 *   FLEET prod-eu: 3 instances, 3 live, leader proxy-1
 *     proxy-1  LEADER  live  seen 0.4 s ago  127.0.0.1:8080  host a  pid 12  version 0.1.0
 *       web  generation 4  weight 10.00%  steady  legacy 120 req, ...  new 14 req, ... */
static void
print_fleet(const json_t *reply)
{
    const json_t *fl = json_object_get(reply, "fleet"), *inst, *svc, *ap;
    const char *leader = NULL;
    char b[8][64];
    size_t i, k, live = 0;

    if (!json_is_object(fl))
        return;
    json_array_foreach(json_object_get(fl, "instances"), i, inst) {
        if (json_is_true(json_object_get(inst, "live")))
            live++;
        if (json_is_true(json_object_get(inst, "leader")))
            leader = fmt_value(json_object_get(inst, "instance"), b[0], sizeof(b[0]));
    }
    printf("\nFLEET %s: %zu instance%s, %zu live, leader %s\n",
           fmt_value(json_object_get(fl, "fleet"), b[1], sizeof(b[1])),
           json_array_size(json_object_get(fl, "instances")),
           json_array_size(json_object_get(fl, "instances")) == 1 ? "" : "s", live,
           leader != NULL ? leader : "none");
    json_array_foreach(json_object_get(fl, "instances"), i, inst) {
        double seen = json_number_value(json_object_get(inst, "last_seen_ms"));

        printf("  %s  %s  %s  seen %.1f s ago  %s  host %s  pid %s  version %s\n",
               fmt_value(json_object_get(inst, "instance"), b[0], sizeof(b[0])),
               json_is_true(json_object_get(inst, "leader")) ? "LEADER" : "-",
               json_is_true(json_object_get(inst, "live")) ? "live" : "GONE",
               seen / 1000.0,
               fmt_value(json_object_get(inst, "address"), b[1], sizeof(b[1])),
               fmt_value(json_object_get(inst, "host"), b[2], sizeof(b[2])),
               fmt_value(json_object_get(inst, "pid"), b[3], sizeof(b[3])),
               fmt_value(json_object_get(inst, "version"), b[4], sizeof(b[4])));
        json_array_foreach(json_object_get(inst, "services"), k, svc) {
            ap = json_object_get(json_object_get(inst, "applied"),
                                 json_string_value(json_object_get(svc, "name")) != NULL
                                 ? json_string_value(json_object_get(svc, "name")) : "");
            printf("    %s  generation %s",
                   fmt_value(json_object_get(svc, "name"), b[0], sizeof(b[0])),
                   fmt_value(json_object_get(svc, "generation"), b[1], sizeof(b[1])));
            if (json_is_integer(json_object_get(ap, "weight_bp")))
                printf("  weight %.2f%%  %s",
                       (double)json_integer_value(json_object_get(ap, "weight_bp")) / 100.0,
                       fmt_value(json_object_get(ap, "state"), b[2], sizeof(b[2])));
            if (json_is_string(json_object_get(svc, "error")))
                printf("  windows unreadable: %s",
                       shown_str(json_object_get(svc, "error"), 0));
            else {
                print_fleet_window("legacy", json_object_get(svc, "legacy"));
                print_fleet_window("new", json_object_get(svc, "new"));
            }
            putchar('\n');
        }
    }
}

static void print_wrapped(const char *lead, const char *text, const char *tail);

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
    if (strcmp(st, "idle") == 0 || json_is_false(json_object_get(p, "current"))) {
        printf("%s: %s steps (", strcmp(st, "idle") == 0 ? "not started" : "not running", fmt_value(json_object_get(p, "steps"), b1, sizeof(b1)));
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
    printf("  bake [%s] %.*f/%s s, %.*f s left\n          requests on new %s (min %s)%s\n",
           bar, bake_s >= 100 ? 0 : 1, bake_s - left_s,
           fmt_value(json_object_get(p, "bake_s"), b1, sizeof(b1)), bake_s >= 100 ? 0 : 1,
           left_s, fmt_value(json_object_get(p, "requests"), b2, sizeof(b2)),
           fmt_value(json_object_get(p, "min_requests"), b3, sizeof(b3)),
           strcmp(st, "paused") == 0 ? "  (clock stopped)" : "");
    if (json_is_string(json_object_get(p, "held_by")))   /* a migration gate (docs/gates.md) */
        print_wrapped("held by ", shown_str(json_object_get(p, "held_by"), 0), "");
}

/* <text><tail> from column <col> (what is before it already printed),
 * wrapped at spaces to SHOW_COLUMNS (a word longer than a line is cut),
 * further lines at column 12. */
static void
print_wrapped_at(size_t col, const char *text, const char *tail)
{
    size_t room, n, cut;

    while (*text != '\0') {
        room = SHOW_COLUMNS > col ? SHOW_COLUMNS - col : 1;
        n = strlen(text);
        if (n + strlen(tail) <= room) {
            fputs(text, stdout);
            break;
        }
        /* the last space that fits, else a hard cut (at a character) */
        for (cut = room; cut > 0 && text[cut] != ' '; cut--)
            ;
        if (cut == 0)
            for (cut = room; cut > 1 && ((unsigned char)text[cut] & 0xc0) == 0x80; cut--)
                ;
        printf("%.*s\n%12s", (int)cut, text, "");
        text += cut;
        while (*text == ' ')
            text++;
        col = 12;
    }
    printf("%s\n", tail);
}

/* <lead><text><tail> at column 10, wrapped as print_wrapped_at(). */
static void
print_wrapped(const char *lead, const char *text, const char *tail)
{
    printf("%10s%s", "", lead);
    print_wrapped_at(10 + strlen(lead), text, tail);
}

/* Shadow traffic (docs/shadow.md): the plan's diff gate when it has one,
 * then the copies (nothing without "shadow"):
 *           diff gate: 2 of 150 compared differed (under 0.01 needed, at
 *             least 100 compared)  HELD
 *   shadow  10% copied  diff rate 0.0020 (2 of 1000)  noise 0 field(s)
 *           match 998 diff 2 error 0 dropped 0 too_large 0 skipped 0 */
static void
print_shadow(const json_t *svc)
{
    const json_t *sh = json_object_get(svc, "shadow"), *g, *v;
    const char *k;
    char b[4][64], text[1024];
    size_t n = 0;

    g = json_object_get(json_object_get(svc, "plan"), "diff_gate");
    if (json_is_object(g)) {
        snprintf(text, sizeof(text), "%s of %s compared differed (under %g needed, at least "
                 "%s compared)",
                 fmt_value(json_object_get(g, "diffs"), b[0], sizeof(b[0])),
                 fmt_value(json_object_get(g, "compared"), b[1], sizeof(b[1])),
                 json_number_value(json_object_get(g, "max_diff_rate")),
                 fmt_value(json_object_get(g, "min_compared"), b[3], sizeof(b[3])));
        print_wrapped("diff gate: ", text,
                      json_is_true(json_object_get(g, "held")) ? "  HELD" : "");
    }
    if (!json_is_object(sh))
        return;
    snprintf(text, sizeof(text), "%s%% copied  diff rate %.4f (%s of %s)  noise %zu field(s)",
             fmt_value(json_object_get(sh, "percent"), b[0], sizeof(b[0])),
             json_number_value(json_object_get(sh, "diff_rate")),
             fmt_value(json_object_get(sh, "diffs"), b[1], sizeof(b[1])),
             fmt_value(json_object_get(sh, "compared"), b[2], sizeof(b[2])),
             json_array_size(json_object_get(sh, "noise")));
    printf("  %-6s  ", "shadow");
    print_wrapped_at(10, text, "");
    text[0] = '\0';
    json_object_foreach((json_t *)json_object_get(sh, "results"), k, v)
        if (n < sizeof(text))
            n += (size_t)snprintf(text + n, sizeof(text) - n, "%s%s %s", n > 0 ? " " : "",
                                  ctl_shown(k, strlen(k), 0),
                                  fmt_value(v, b[3], sizeof(b[3])));
    if (n > 0)
        print_wrapped("", text, "");
}

/* The scalar members of <figures> as "key=value ..." into <buf>. */
static const char *
fmt_figures(const json_t *figures, char *buf, size_t len)
{
    const char *key;
    json_t *v;
    char b[64];
    size_t k = 0;

    buf[0] = '\0';
    json_object_foreach((json_t *)figures, key, v) {
        if (json_is_object(v) || json_is_array(v) || k >= len)
            continue;
        k += (size_t)snprintf(buf + k, len - k, "%s%s=%s", k > 0 ? " " : "",
                              ctl_shown(key, strlen(key), 0), fmt_value(v, b, sizeof(b)));
    }
    return buf;
}

void
ctl_print_last_change(const json_t *lc, const char *label)
{
    const json_t *reason = json_object_get(lc, "reason"), *fig = json_object_get(lc, "figures");
    char b[6][64], figs[512];

    if (!json_is_object(lc))
        return;
    printf("  %-6s  %s %s -> %s by %s at %s\n", label,
           fmt_value(json_object_get(lc, "action"), b[0], sizeof(b[0])),
           fmt_percent(json_object_get(lc, "from"), b[1], sizeof(b[1])),
           fmt_percent(json_object_get(lc, "to"), b[2], sizeof(b[2])),
           fmt_value(json_object_get(lc, "actor"), b[3], sizeof(b[3])),
           fmt_value(json_object_get(lc, "at"), b[4], sizeof(b[4])));
    if (json_is_string(reason) && json_string_length(reason) > 0)
        print_wrapped("reason \"", shown_str(reason, CTL_ESC_QUOTED), "\"");
    if (json_is_object(fig) && fmt_figures(fig, figs, sizeof(figs))[0] != '\0')
        printf("          figures %s\n", figs);
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

void
ctl_print_status(const json_t *reply)
{
    const json_t *svc, *eff, *why;
    char name[64], mode[64], weight[64], state[64], gen[64], effb[64];
    size_t i;

    json_array_foreach(json_object_get(reply, "services"), i, svc) {
        if (i > 0)
            putchar('\n');
        /* the weight set, then the share new gets now (after fallback;
         * "none" when both sides are down) */
        eff = json_object_get(svc, "effective_weight");
        printf("SERVICE %s (%s)  weight %s  effective %s  state %s  gen %s\n",
               fmt_value(json_object_get(svc, "name"), name, sizeof(name)),
               fmt_value(json_object_get(svc, "mode"), mode, sizeof(mode)),
               fmt_percent(json_object_get(svc, "weight"), weight, sizeof(weight)),
               json_is_null(eff) ? "none" : fmt_percent(eff, effb, sizeof(effb)),
               fmt_value(json_object_get(svc, "state"), state, sizeof(state)),
               fmt_value(json_object_get(svc, "generation"), gen, sizeof(gen)));
        why = json_object_get(svc, "effective_why");
        if (json_is_string(why) && json_string_length(why) > 0)
            printf("  %-6s  %s\n", "note", shown_str(why, 0));
        ctl_print_last_change(json_object_get(svc, "last_change"), "last");
        print_plan(svc);
        print_shadow(svc);
        print_tls(svc);
        print_side(svc, "legacy");
        print_side(svc, "new");
        print_windows(svc);
        print_shield(svc);
    }
    print_store(json_object_get(reply, "store"));
    print_fleet(reply);               /* status --fleet only */
}

/* "web: weight 0.00% -> 10.00% (generation 4), state progressing" */
void
ctl_print_change(const json_t *reply)
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
    /* the fleet's store: a lowering applied here that is not in the
     * database yet (unreachable, slow, or replaced by a later row) */
    if (json_is_string(json_object_get(reply, "store_note")))
        printf("  store: %s\n", shown_str(json_object_get(reply, "store_note"), 0));
}

/* "2024-05-01T10:00:00Z  web  uid:0  weight  0.00% -> 10.00%  generation 4  reason \"…\"" */
void
ctl_print_audit(const json_t *reply)
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

/* ---- one request ------------------------------------------------------- */

/* --json: the reply <text> as the daemon sent it, or <reply> re-encoded
 * with \uXXXX escapes when the text holds characters that are not shown as
 * they are (jansson escapes control characters, not C1 controls or
 * bidirectional formatting). */
void
ctl_print_json(const json_t *reply, const char *text)
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
