/*
 * doc_samples: the samples of docs/operations.md are what this version
 * prints. The runbook marks its blocks with HTML comments (invisible once
 * rendered), each around one fenced block:
 *
 *   <!-- input: NAME -->  ...  <!-- /input -->
 *       a block this run reads: "config" (the first config, the daemon runs
 *       on it) and "tokens" (its admin.token_file)
 *   <!-- sample: NAME --> ...  <!-- /sample -->
 *       a block this run produces: in a ```console block every line that
 *       starts with "$ " is a command, run as written by sh (PATH with the
 *       built binaries first, CUTOVER_SOCKET set as section 2 says,
 *       $OPERATE_TOKEN and $ADMIN_TOKEN holding the secrets of the token
 *       file's operate and admin tokens), and what it prints (stdout and
 *       stderr) follows it; in a ```text block, lines the daemon wrote
 *       (its log, its access log) while a scene ran
 *
 * The scenes (scene_*() below) start the real cutoverd on the doc's config
 * with four test backends, and drive the traffic a sample needs (each
 * scene's comment says which; requests sent to one side with the config's
 * override header, so that the counts are the same in every run). What the config names that cannot exist on a
 * test machine is moved, in the config and in the commands, and moved back
 * in what they print (struct map): the directories /etc/cutover,
 * /var/lib/cutover and /run/cutover to a private directory; the addresses
 * 0.0.0.0:80, 127.0.0.1:9901 and the four servers' 10.0.x.x:8080 to free
 * loopback ports; admin.socket_group "cutover" to the group of the user
 * running the test (in the config only).
 *
 *   84_doc_samples            compare (make test): fails when a sample
 *                             differs from what the binaries printed, or a
 *                             sample has no scene, or a scene's sample is
 *                             missing from the doc
 *   84_doc_samples --write    writes what they printed into the doc
 *                             (make doc-samples)
 *
 * Before comparing, both sides are normalised by these rules and nothing
 * else (struct rule, RULES[]): a timestamp 2026-12-05T19:02:11.208Z; the
 * pid and uid of an audit actor (pid:N, uid:N: a cutoverctl process, the
 * user running the test); a client's port
 * (client=127.0.0.1:N); a connection's number (conn=N: which worker
 * accepts it varies, and workers are one per CPU); durations (duration_ms=,
 * breach_to_apply_ms=, "applied N ms after", p99_ms, the figures of the
 * "p50 / p99 ms" line of status, whose column padding is then ignored); the
 * number of health checks passed ("(N passed,": one every 2 s since the
 * start). Every other character of a sample is compared: the second test
 * edits each character of each sample in turn and checks that every edit
 * outside those fields makes the comparison fail, and that they are less
 * than a quarter of each sample.
 */
#include <ctype.h>
#include <grp.h>
#include <limits.h>
#include <regex.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/harness/harness.h"

#define DOC "docs/operations.md"
#define MAX_SAMPLES 16
#define MAX_MAP 16

/* ---- growing strings ------------------------------------------------- */

struct buf {
    char *s;
    size_t len, cap;
};

static void
buf_addn(struct buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->s = realloc(b->s, b->cap);
        if (b->s == NULL)
            abort();
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void
buf_add(struct buf *b, const char *s)
{
    buf_addn(b, s, strlen(s));
}

static void __attribute__((format(printf, 2, 3)))
buf_addf(struct buf *b, const char *fmt, ...)
{
    char tmp[4096];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        abort();
    buf_addn(b, tmp, (size_t)n);
}

/* ---- the doc's marked blocks ----------------------------------------- */

struct block {
    char name[64];
    bool is_sample;              /* else an input */
    char lang[32];               /* the fence's info string */
    size_t start, end;           /* the content in the doc: after the opening
                                  * fence's line, up to the closing fence */
    struct buf out;              /* samples: what the scenes produced */
    bool produced;
};

static struct doc {
    char *text;                  /* the whole doc as read */
    struct block b[MAX_SAMPLES];
    unsigned n;
} doc;

/* Reads the doc and its marked blocks. 0, or -1 with the reason on stderr. */
static int
doc_read(void)
{
    const char *p;

    doc.text = h_read_file(h_src(DOC));
    if (doc.text == NULL)
        return -1;
    for (p = doc.text; (p = strstr(p, "<!-- ")) != NULL; p++) {
        struct block *b;
        const char *kind, *fence, *close_fence, *end_mark;
        bool sample = strncmp(p, "<!-- sample: ", 13) == 0;

        if (!sample && strncmp(p, "<!-- input: ", 12) != 0)
            continue;
        if (doc.n == MAX_SAMPLES) {
            fprintf(stderr, "%s: more than %d marked blocks\n", DOC, MAX_SAMPLES);
            return -1;
        }
        b = &doc.b[doc.n++];
        b->is_sample = sample;
        kind = p + (sample ? 13 : 12);
        if (sscanf(kind, "%63[a-z0-9-] -->", b->name) != 1) {
            fprintf(stderr, "%s: a marker without a name: %.40s\n", DOC, p);
            return -1;
        }
        fence = strchr(p, '\n');
        if (fence == NULL || strncmp(fence + 1, "```", 3) != 0) {
            fprintf(stderr, "%s: %s: the marker's next line must open a fenced block\n", DOC,
                    b->name);
            return -1;
        }
        fence++;
        sscanf(fence + 3, "%31[a-z]", b->lang);
        b->start = (size_t)(strchr(fence, '\n') + 1 - doc.text);
        close_fence = strstr(doc.text + b->start, "\n```\n");
        end_mark = sample ? "<!-- /sample -->" : "<!-- /input -->";
        if (close_fence == NULL || strncmp(close_fence + 5, end_mark, strlen(end_mark)) != 0) {
            fprintf(stderr, "%s: %s: the block's closing fence must be followed by %s\n", DOC,
                    b->name, end_mark);
            return -1;
        }
        b->end = (size_t)(close_fence + 1 - doc.text);
        p = close_fence;
    }
    return 0;
}

static struct block *
block(const char *name, bool sample)
{
    unsigned i;

    for (i = 0; i < doc.n; i++)
        if (doc.b[i].is_sample == sample && strcmp(doc.b[i].name, name) == 0)
            return &doc.b[i];
    fail_msg("%s has no %s block \"%s\"", DOC, sample ? "sample" : "input", name);
    return NULL;
}

/* The content of <b> as in the doc (caller frees). */
static char *
block_text(const struct block *b)
{
    return strndup(doc.text + b->start, b->end - b->start);
}

/* ---- moving the config's places to the test machine ------------------ */

/* doc <-> run: forward on the config and the commands, backward on what
 * they print. One pass each, longest candidates first where they overlap;
 * an address matches only when no digit follows it. */
static struct map {
    char doc[256], run[512];
} maps[MAX_MAP];
static unsigned nmaps;

static void
map_add(const char *doc_text, const char *run_text)
{
    assert_true(nmaps < MAX_MAP);
    snprintf(maps[nmaps].doc, sizeof(maps[nmaps].doc), "%s", doc_text);
    snprintf(maps[nmaps].run, sizeof(maps[nmaps].run), "%s", run_text);
    nmaps++;
}

static char *
map_apply(const char *s, bool forward)
{
    struct buf b = { 0 };
    unsigned i;

    buf_add(&b, "");
    while (*s != '\0') {
        for (i = 0; i < nmaps; i++) {
            const char *from = forward ? maps[i].doc : maps[i].run;
            const char *to = forward ? maps[i].run : maps[i].doc;
            size_t n = strlen(from);

            if (strncmp(s, from, n) == 0 && !isdigit((unsigned char)s[n])) {
                buf_add(&b, to);
                s += n;
                break;
            }
        }
        if (i == nmaps)
            buf_addn(&b, s++, 1);
    }
    return b.s;
}

/* ---- normalising ----------------------------------------------------- */

/* One rule: every match of <re> in a line has its group 1 replaced by
 * <with>. Rules see one line at a time. */
static const struct rule {
    const char *re, *with;
} RULES[] = {
    { "([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z)", "<time>" },
    { "pid:([0-9]+)", "<pid>" },
    { "uid:([0-9]+)", "<uid>" },
    { "client=127\\.0\\.0\\.1:([0-9]+)", "<port>" },
    { "conn=([0-9]+)", "<conn>" },
    { "duration_ms=([0-9.]+)", "<ms>" },
    { "breach_to_apply_ms=([0-9.]+)", "<ms>" },
    { "applied ([0-9.]+) ms after", "<ms>" },
    { "[ \"{]p99_ms\"?[=:]([0-9.]+(e-?[0-9]+)?)", "<ms>" },
    { "\\(([0-9]+) passed,", "<n>" },
};
#define NRULES (sizeof(RULES) / sizeof(RULES[0]))
static regex_t rules_re[NRULES];
#define P50_LINE "  p50 / p99 ms"

static void
rules_compile(void)
{
    static bool done;
    size_t i;

    if (done)
        return;
    for (i = 0; i < NRULES; i++)
        assert_int_equal(regcomp(&rules_re[i], RULES[i].re, REG_EXTENDED), 0);
    done = true;
}

/* <line> (no newline) normalised, appended to <out>. */
static void
norm_line(struct buf *out, const char *line, size_t len)
{
    struct buf cur = { 0 }, next;
    size_t i;

    buf_addn(&cur, line, len);
    for (i = 0; i < NRULES; i++) {
        const char *p = cur.s;
        regmatch_t m[2];

        memset(&next, 0, sizeof(next));
        buf_add(&next, "");
        while (regexec(&rules_re[i], p, 2, m, p == cur.s ? 0 : REG_NOTBOL) == 0 &&
               m[1].rm_so >= 0) {
            buf_addn(&next, p, (size_t)m[1].rm_so);
            buf_add(&next, RULES[i].with);
            buf_addn(&next, p + m[1].rm_eo, (size_t)(m[0].rm_eo - m[1].rm_eo));
            p += m[0].rm_eo;
            if (m[0].rm_eo == 0)
                break;
        }
        buf_add(&next, p);
        free(cur.s);
        cur = next;
    }
    if (strncmp(cur.s, P50_LINE, strlen(P50_LINE)) == 0) {
        /* status's latency figures, and the padding of their columns */
        const char *p = cur.s;

        buf_add(out, P50_LINE);
        for (p += strlen(P50_LINE); *p != '\0';) {
            if (*p == ' ') {
                while (*p == ' ')
                    p++;
                buf_add(out, " ");
            } else if (isdigit((unsigned char)*p)) {
                while (isdigit((unsigned char)*p) || *p == '.')
                    p++;
                buf_add(out, "<ms>");
            } else {
                buf_addn(out, p++, 1);
            }
        }
    } else {
        buf_add(out, cur.s);
    }
    free(cur.s);
}

/* <text> normalised line by line (caller frees). */
static char *
norm(const char *text)
{
    struct buf out = { 0 };
    const char *p = text, *nl;

    rules_compile();
    buf_add(&out, "");
    while (*p != '\0') {
        nl = strchr(p, '\n');
        norm_line(&out, p, nl != NULL ? (size_t)(nl - p) : strlen(p));
        if (nl == NULL)
            break;
        buf_add(&out, "\n");
        p = nl + 1;
    }
    return out.s;
}

/* ---- the run ----------------------------------------------------------- */

static struct run {
    char *dir;                   /* private: etc/, var/, run/, work/, logs */
    char conf[600], conf_access[600], tokens[600], sock[600], work[600];
    char access_log[600];
    int port_svc, port_admin, port_be[4];  /* legacy 10, 11; new 10, 11 */
    pid_t be[4], daemon;
    char log[600];
    size_t log_mark;
} run;

static const char *const BE_DOC[4] = {
    "10.0.1.10:8080", "10.0.1.11:8080", "10.0.2.10:8080", "10.0.2.11:8080",
};

/* Length of the file <path> now (0 when absent). */
static size_t
file_len(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 ? (size_t)st.st_size : 0;
}

/* Runs <cmd> (a line of the doc, already mapped) with sh in the work
 * directory; returns what it printed, mapped back (caller frees). */
static char *
sh_run(const char *cmd)
{
    char out_path[700], *out, *mapped;
    char *argv[] = { "/bin/sh", "-c", "cd \"$1\" || exit 125; eval \"$2\"", "sh",
                     run.work, (char *)cmd, NULL };
    pid_t pid;
    int rc;

    snprintf(out_path, sizeof(out_path), "%s/cmd.out", run.dir);
    unlink(out_path);
    pid = h_spawn(argv, out_path);
    assert_true(pid > 0);
    rc = h_wait_exit(pid, 20000);
    if (rc < 0) {
        h_stop(pid, SIGKILL, 1000);
        fail_msg("\"%s\" did not end within 20 s", cmd);
    }
    out = h_read_file(out_path);
    assert_non_null(out);
    mapped = map_apply(out, false);
    free(out);
    return mapped;
}

/* Runs the commands <from>..<to>-1 (counting "$ " lines from 0; <to> -1:
 * to the last) of the console sample <name>, appending each with what it
 * printed to the sample's output. */
static void
run_console(const char *name, int from, int to)
{
    struct block *b = block(name, true);
    char *text = block_text(b), *line, *save = NULL;
    int k = 0;

    assert_string_equal(b->lang, "console");
    b->produced = true;
    if (b->out.s == NULL)
        buf_add(&b->out, "");
    for (line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
        char *cmd, *out;

        if (strncmp(line, "$ ", 2) != 0)
            continue;
        if (k++ < from || (to >= 0 && k > to))
            continue;
        cmd = map_apply(line + 2, true);
        out = sh_run(cmd);
        buf_addf(&b->out, "%s\n%s", line, out);
        if (out[0] != '\0' && out[strlen(out) - 1] != '\n')
            buf_add(&b->out, "\n");
        free(out);
        free(cmd);
    }
    free(text);
}

/* Sets the text sample <name> to the lines of <path> from byte <mark> on
 * that contain <needle> (NULL: every line), mapped back. */
static void
take_lines(const char *name, const char *path, size_t mark, const char *needle)
{
    struct block *b = block(name, true);
    char *all = h_read_file(path), *p, *nl, *mapped;

    assert_non_null(all);
    assert_true(strlen(all) >= mark);
    b->produced = true;
    free(b->out.s);
    memset(&b->out, 0, sizeof(b->out));
    buf_add(&b->out, "");
    for (p = all + mark; *p != '\0'; p = nl + 1) {
        if ((nl = strchr(p, '\n')) == NULL)
            break;                     /* a line not finished yet */
        *nl = '\0';
        if (needle == NULL || strstr(p, needle) != NULL) {
            mapped = map_apply(p, false);
            buf_addf(&b->out, "%s\n", mapped);
            free(mapped);
        }
    }
    free(all);
}

/* The token file's secret of the first token of <level> (not sha256:). */
static void
export_token(const char *tokens, const char *level, const char *var)
{
    char name[64], lvl[32], secret[256];
    const char *p;

    for (p = tokens; p != NULL && *p != '\0'; p = strchr(p, '\n'), p = p ? p + 1 : p) {
        if (*p == '#' || sscanf(p, "%63s %31s %255s", name, lvl, secret) != 3)
            continue;
        if (strcmp(lvl, level) == 0 && strncmp(secret, "sha256:", 7) != 0) {
            assert_int_equal(setenv(var, secret, 1), 0);
            return;
        }
    }
    fail_msg("the token file of %s has no %s token with a plain secret", DOC, level);
}

/* <text> with its first <from> (which must occur) replaced by <to>;
 * <text> is freed, the result is the caller's. */
static char *
edited(char *text, const char *from, const char *to)
{
    const char *at = strstr(text, from);
    struct buf b = { 0 };

    if (at == NULL)
        fail_msg("the config of %s has no \"%s\"", DOC, from);
    buf_addn(&b, text, (size_t)(at - text));
    buf_add(&b, to);
    buf_add(&b, at + strlen(from));
    free(text);
    return b.s;
}

/* The private directory, the backends, the config (and the copy with an
 * access log), the token file, the environment of the commands. */
static void
run_setup(void)
{
    static const char *const dirs[] = { "etc", "etc/cutover", "var", "var/lib",
                                        "var/lib/cutover", "run", "run/cutover", "work",
                                        "be0", "be1", "be2", "be3" };
    static const char *const names[4] = { "legacy", "legacy", "new", "new" };
    char path[PATH_MAX], addr[64], *config, *tokens, *conf, *more;
    struct group *gr = getgrgid(getgid());
    size_t i;

    assert_int_equal(doc_read(), 0);
    assert_non_null(run.dir = h_tmpdir());
    for (i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", run.dir, dirs[i]);
        assert_int_equal(mkdir(path, 0700), 0);
    }
    snprintf(path, sizeof(path), "%s/etc/cutover", run.dir);
    map_add("/etc/cutover", path);
    snprintf(path, sizeof(path), "%s/var/lib/cutover", run.dir);
    map_add("/var/lib/cutover", path);
    snprintf(path, sizeof(path), "%s/run/cutover", run.dir);
    map_add("/run/cutover", path);
    run.port_svc = h_free_port();
    run.port_admin = h_free_port();
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", run.port_svc);
    map_add("0.0.0.0:80", addr);
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", run.port_admin);
    map_add("127.0.0.1:9901", addr);
    for (i = 0; i < 4; i++) {
        run.port_be[i] = h_free_port();
        snprintf(addr, sizeof(addr), "127.0.0.1:%d", run.port_be[i]);
        map_add(BE_DOC[i], addr);
        snprintf(path, sizeof(path), "%s/be%zu", run.dir, i);
        run.be[i] = h_backend_start(names[i], run.port_be[i], path, false);
        assert_true(run.be[i] > 0);
    }

    config = block_text(block("config", false));
    tokens = block_text(block("tokens", false));
    assert_non_null(gr);
    snprintf(path, sizeof(path), "\"socket_group\": \"%s\"", gr->gr_name);
    conf = edited(map_apply(config, true), "\"socket_group\": \"cutover\"", path);
    snprintf(run.conf, sizeof(run.conf), "%s/etc/cutover/cutover.json", run.dir);
    assert_int_equal(h_write_file(run.conf, conf), 0);
    /* the same with an access log, for the scene that shows a line of it */
    snprintf(run.access_log, sizeof(run.access_log), "%s/access.log", run.dir);
    snprintf(path, sizeof(path), "\"access_log\": { \"file\": \"%s\" },\n  \"shutdown_grace_ms\"",
             run.access_log);
    more = edited(strdup(conf), "\"shutdown_grace_ms\"", path);
    snprintf(run.conf_access, sizeof(run.conf_access), "%s/etc/cutover/access.json", run.dir);
    assert_int_equal(h_write_file(run.conf_access, more), 0);
    free(more);
    /* broken.json, of the check sample: the same with two mistakes */
    snprintf(run.work, sizeof(run.work), "%s/work", run.dir);
    more = edited(edited(strdup(conf), "\"max_error_rate\": 0.02", "\"max_error_rate\": 2"),
                  "\"window_s\"", "\"windw_s\"");
    snprintf(path, sizeof(path), "%s/broken.json", run.work);
    assert_int_equal(h_write_file(path, more), 0);
    free(more);
    free(conf);
    free(config);

    snprintf(run.tokens, sizeof(run.tokens), "%s/etc/cutover/admin.tokens", run.dir);
    assert_int_equal(h_write_file(run.tokens, tokens), 0);
    assert_int_equal(chmod(run.tokens, 0600), 0);
    export_token(tokens, "operate", "OPERATE_TOKEN");
    export_token(tokens, "admin", "ADMIN_TOKEN");
    free(tokens);

    snprintf(run.sock, sizeof(run.sock), "%s/run/cutover/admin.sock", run.dir);
    snprintf(run.log, sizeof(run.log), "%s/cutoverd.log", run.dir);
    /* the built binaries first (an absolute path: the commands run in
     * the work directory) */
    assert_non_null(realpath(h_bin("cutoverd"), path));
    *strrchr(path, '/') = '\0';
    {
        struct buf p = { 0 };
        const char *old = getenv("PATH");

        buf_add(&p, path);
        buf_add(&p, ":");
        buf_add(&p, old != NULL ? old : "/usr/bin:/bin");
        assert_int_equal(setenv("PATH", p.s, 1), 0);
        free(p.s);
    }
    assert_int_equal(setenv("CUTOVER_SOCKET", run.sock, 1), 0);
    assert_int_equal(setenv("LC_ALL", "C", 1), 0);
}

/* A fresh daemon on <conf>: an empty state directory, the log truncated. */
static void
daemon_start(const char *conf)
{
    static const char *const files[] = { "state.json", "audit.jsonl", "sticky.key",
                                         "state.json.pending" };
    char path[700];
    size_t i;

    for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(path, sizeof(path), "%s/var/lib/cutover/%s", run.dir, files[i]);
        unlink(path);
    }
    unlink(run.log);
    unlink(run.access_log);
    run.daemon = h_cutoverd_start(conf, run.log, run.sock, run.port_svc);
    assert_true(run.daemon > 0);
    for (i = 0; i < 4; i++)
        assert_int_equal(h_backend_set(run.port_be[i], "reset=1"), 0);
}

static void
daemon_stop(void)
{
    int rc = h_stop(run.daemon, SIGTERM, 30000);

    if (rc != 0) {
        h_dump_file(run.log, 6000);
        fail_msg("cutoverd exited %d after SIGTERM", rc);
    }
    run.daemon = 0;
}

/* The service's status object (caller decrefs the root). */
static json_t *
status(json_t **root)
{
    *root = h_ctl_json(run.sock, "status", (char *)NULL);
    assert_non_null(*root);
    return json_array_get(json_object_get(*root, "services"), 0);
}

/* Waits until every server has passed at least <n> checks. */
static void
wait_checks(long n)
{
    long long end = h_now_ms() + 20000;

    for (;;) {
        json_t *root, *svc = status(&root);
        bool all = true;
        int s;
        size_t i;

        for (s = 0; s < 2; s++) {
            json_t *srvs = json_object_get(json_object_get(svc, s ? "new" : "legacy"),
                                           "servers");

            for (i = 0; i < json_array_size(srvs); i++)
                if (json_integer_value(h_json_at(json_array_get(srvs, i), "checks.ok")) < n)
                    all = false;
        }
        json_decref(root);
        if (all)
            return;
        if (h_now_ms() > end)
            fail_msg("the servers had not passed %ld checks each after 20 s", n);
        h_sleep_ms(100);
    }
}

/* <n> GETs on one keep-alive connection, each forced to <side> by the
 * config's override header; each must be answered <want>. */
static void
traffic(const char *side, int n, int want)
{
    char req[256];
    struct h_resp r;
    int fd = -1, i;

    snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: www.example.com\r\n"
             "X-Cutover-Target: %s\r\n\r\n", side);
    memset(&r, 0, sizeof(r));
    for (i = 0; i < n; i++) {
        if (fd < 0)
            assert_true((fd = h_connect(run.port_svc)) >= 0);
        assert_int_equal(h_send_all(fd, req, strlen(req)), 0);
        assert_int_equal(h_read_response(fd, &r), 0);
        if (r.status != want)
            fail_msg("GET / to %s: %d, not %d", side, r.status, want);
        if (r.closed) {
            close(fd);
            fd = -1;
        }
        h_resp_free(&r);
    }
    if (fd >= 0)
        close(fd);
}

/* Section 2: cutoverd -t on the config and on a broken copy of it. */
static void
scene_check(void)
{
    run_console("check", 0, -1);
}

/* Section 2's HTTP admin (a weight set with the operate token, two
 * refusals) and, from the same run, section 6's log lines and access log
 * line (one request forced to new). */
static void
scene_http(void)
{
    size_t mark;

    daemon_start(run.conf_access);
    mark = file_len(run.log);
    run_console("http-weight", 0, -1);
    run_console("http-refusals", 0, -1);
    assert_int_equal(h_wait_log(run.log, "unknown token", 5000), 0);
    take_lines("log-lines", run.log, mark, NULL);
    traffic("new", 1, 200);
    assert_int_equal(h_wait_log(run.access_log, "\n", 5000), 0);
    take_lines("access-log", run.access_log, 0, NULL);
    daemon_stop();
}

/* Section 3: a canary at 1 %, then status after 1000 requests, 10 of them
 * on new (forced, so that the counts are the same in every run). */
static void
scene_canary(void)
{
    daemon_start(run.conf);
    wait_checks(2);
    run_console("canary", 0, 1);
    traffic("legacy", 990, 200);
    traffic("new", 10, 200);
    run_console("canary", 1, -1);
    daemon_stop();
}

/* Section 4: weight 10, then 50 requests on new of which the last 2 fail
 * (500): an error rate of 4 % over min_requests, above max_error_rate. */
static void
scene_rollback(void)
{
    char out[4096];
    size_t mark;
    long long end;
    int i;

    daemon_start(run.conf);
    wait_checks(2);
    assert_int_equal(h_ctl(run.sock, out, sizeof(out), "weight", "10", "--reason",
                           "CHG-4711 canary 10%", (char *)NULL), 0);
    mark = file_len(run.log);
    traffic("legacy", 100, 200);
    traffic("new", 48, 200);
    for (i = 2; i < 4; i++)
        assert_int_equal(h_backend_set(run.port_be[i], "error_rate=1"), 0);
    traffic("new", 2, 500);
    for (end = h_now_ms() + 5000;; h_sleep_ms(50)) {
        json_t *root, *svc = status(&root);
        bool done = strcmp(json_string_value(json_object_get(svc, "state")), "rolled_back") == 0;

        json_decref(root);
        if (done)
            break;
        if (h_now_ms() > end)
            fail_msg("no automatic rollback within 5 s");
    }
    assert_int_equal(h_wait_log(run.log, "AUTOMATIC ROLLBACK", 5000), 0);
    take_lines("rollback-log", run.log, mark, " level=warn ");
    run_console("rollback-audit", 0, -1);
    daemon_stop();
}

/* ---- comparing and writing ------------------------------------------- */

static int
group_setup(void **state)
{
    run_setup();
    scene_check();
    scene_http();
    scene_canary();
    scene_rollback();
    return 0;
}

static int
group_teardown(void **state)
{
    h_kill_all();
    if (run.dir != NULL)
        h_rmrf(run.dir);
    return 0;
}

/* Every sample of the doc was produced, and matches once normalised. */
static void
test_samples_match(void **state)
{
    unsigned i, bad = 0;

    for (i = 0; i < doc.n; i++) {
        struct block *b = &doc.b[i];
        char *want, *got, *text;
        const char *w, *g;
        int line = 1;

        if (!b->is_sample)
            continue;
        if (!b->produced) {
            fprintf(stderr, "%s: sample \"%s\": no scene produces it\n", DOC, b->name);
            bad++;
            continue;
        }
        text = block_text(b);
        want = norm(text);
        got = norm(b->out.s);
        free(text);
        if (strcmp(want, got) != 0) {
            for (w = want, g = got; *w == *g; w++, g++)
                if (*w == '\n')
                    line++;
            fprintf(stderr, "%s: sample \"%s\" differs from what this version prints, "
                    "first at its line %d (make doc-samples writes it anew)\n"
                    "--- the doc, normalised\n%s--- printed, normalised\n%s---\n",
                    DOC, b->name, line, want, got);
            bad++;
        }
        free(want);
        free(got);
    }
    assert_int_equal(bad, 0);
}

/* Marks in <mask> (<len> bytes) the characters of <line> that the rules
 * normalise: the groups they replace, the figures of the p50 line. */
static void
norm_mask(const char *line, size_t len, char *mask)
{
    char *copy = strndup(line, len);
    size_t i, k;

    assert_non_null(copy);
    rules_compile();
    memset(mask, 0, len);
    for (i = 0; i < NRULES; i++) {
        const char *p = copy;
        regmatch_t m[2];

        while (regexec(&rules_re[i], p, 2, m, p == copy ? 0 : REG_NOTBOL) == 0 &&
               m[1].rm_so >= 0 && m[0].rm_eo > 0) {
            memset(mask + (p - copy) + m[1].rm_so, 1, (size_t)(m[1].rm_eo - m[1].rm_so));
            p += m[0].rm_eo;
        }
    }
    if (strncmp(copy, P50_LINE, strlen(P50_LINE)) == 0)
        for (k = strlen(P50_LINE); k < len; k++)
            if (isdigit((unsigned char)copy[k]) || copy[k] == '.')
                mask[k] = 1;
    free(copy);
}

/* A hand edit of a sample fails the comparison: each character of each
 * sample is changed in turn (a digit to another, a letter to another,
 * anything else to '#'), and every change of a character outside the
 * normalised fields must show once normalised. */
static void
test_hand_edit_caught(void **state)
{
    unsigned i;

    for (i = 0; i < doc.n; i++) {
        struct block *b = &doc.b[i];
        char *text, *p, *nl, *mask;
        unsigned total = 0, caught = 0, normalised = 0;
        int line = 0;

        if (!b->is_sample)
            continue;
        text = block_text(b);
        for (p = text; *p != '\0'; p = nl + 1) {
            struct buf o = { 0 };
            size_t len, k;

            line++;
            nl = strchr(p, '\n');
            len = nl != NULL ? (size_t)(nl - p) : strlen(p);
            assert_non_null(mask = malloc(len + 1));
            norm_mask(p, len, mask);
            norm_line(&o, p, len);
            for (k = 0; k < len; k++) {
                struct buf e = { 0 };
                char c = p[k];
                bool same;

                p[k] = isdigit((unsigned char)c) ? (c == '9' ? '1' : (char)(c + 1))
                     : isalpha((unsigned char)c) ? (c == 'z' || c == 'Z' ? 'a' : (char)(c + 1))
                     : '#';
                norm_line(&e, p, len);
                p[k] = c;
                same = strcmp(o.s, e.s) == 0;
                free(e.s);
                if (mask[k]) {
                    normalised++;
                    continue;
                }
                total++;
                if (!same)
                    caught++;
                else
                    fprintf(stderr, "sample %s, line %d, column %zu ('%c'): an edit there "
                            "would pass\n", b->name, line, k + 1, c);
            }
            free(o.s);
            free(mask);
            if (nl == NULL)
                break;
        }
        free(text);
        fprintf(stderr, "sample %-14s %5u characters compared, %u of them edited by hand "
                "would fail; %u normalised\n", b->name, total, caught, normalised);
        assert_true(total > 0);
        assert_int_equal(caught, total);
        if (normalised * 4 > total + normalised)
            fail_msg("sample \"%s\": more than a quarter of it is normalised", b->name);
    }
}

/* Writes the produced samples into the doc. */
static int
write_doc(void)
{
    struct buf out = { 0 };
    size_t at = 0;
    unsigned i;

    buf_add(&out, "");
    for (i = 0; i < doc.n; i++) {
        struct block *b = &doc.b[i];

        if (!b->is_sample)
            continue;
        if (!b->produced) {
            fprintf(stderr, "%s: sample \"%s\": no scene produces it\n", DOC, b->name);
            return 1;
        }
        buf_addn(&out, doc.text + at, b->start - at);
        buf_add(&out, b->out.s);
        at = b->end;
    }
    buf_add(&out, doc.text + at);
    if (h_write_file(h_src(DOC), out.s) != 0)
        return 1;
    fprintf(stderr, "%s: %u samples written\n", h_src(DOC), doc.n);
    free(out.s);
    return 0;
}

int
main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_samples_match),
        cmocka_unit_test(test_hand_edit_caught),
    };

    if (argc > 1 && strcmp(argv[1], "--write") == 0) {
        int rc;

        group_setup(NULL);
        rc = write_doc();
        group_teardown(NULL);
        return rc;
    }
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
