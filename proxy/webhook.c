/*
 * webhook: see webhook.h. The config of "notify" and the sender.
 *
 * Per webhook, one delivery at a time, oldest entry first: a timer starts an
 * attempt (a fresh connection: plain, or TLS verified against the URL's
 * host), the request goes out with "Connection: close", and the status line
 * decides: 2xx delivered; any other 4xx but 408 and 429 refused for good
 * (dropped, counted, logged); anything else (a refused connect, a reset,
 * no status line within timeout_ms, 5xx, 408, 429) is retried after
 * PX_WEBHOOK_RETRY_MIN_MS, doubling to PX_WEBHOOK_RETRY_MAX_MS. A full queue
 * drops its oldest waiting entry (the newest news is what a receiver that
 * comes back needs most), counted in cutover_notify_dropped_total.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "lib/conf.h"
#include "lib/fs.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/xmalloc.h"
#include "proxy/webhook.h"

const char *const px_webhook_events[] = {
    "weight", "rollback", "promote", "switch", "freeze", "plan_start", "plan_pause",
    "plan_resume", "plan_abort", "plan_step", "recovered", "health", "refused",
    "auth_refused", "reload", "certs_reload", "server_drain", "server_disable",
    "server_enable", NULL
};

#define STATUS_LINE_MAX 1024     /* bytes of a status line we wait for */

/* ---- config -------------------------------------------------------------- */

static void
hook_conf_free(struct px_webhook_conf *h)
{
    free(h->name);
    free(h->url);
    free(h->host);
    free(h->authority);
    free(h->target);
    free(h->token_file);
    if (h->token != NULL) {
        explicit_bzero(h->token, strlen(h->token));
        free(h->token);
    }
    free(h->ca_file);
}

void
px_notify_conf_free(struct px_notify_conf *c)
{
    unsigned i;

    if (c == NULL)
        return;
    for (i = 0; i < c->n; i++)
        hook_conf_free(&c->hooks[i]);
    free(c->hooks);
    free(c);
}

/* A new string of the format's text. */
static char *__attribute__((format(printf, 1, 2)))
strf(const char *fmt, ...)
{
    va_list ap;
    char *s;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    s = xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

static bool
is_host_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')
           || ch == '-' || ch == '.';
}

/* Splits url <u> of <h>. NULL, or why it is refused. */
static const char *
parse_url(struct px_webhook_conf *h, const char *u)
{
    const char *p, *auth, *end, *hp, *he;
    char port_text[8];
    size_t i;

    if (strncmp(u, "http://", 7) == 0) {
        h->tls = false;
        auth = u + 7;
    } else if (strncmp(u, "https://", 8) == 0) {
        h->tls = true;
        auth = u + 8;
    } else {
        return "must start with http:// or https://";
    }
    for (p = u; *p != '\0'; p++) {
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
            return "must not hold spaces, control or non-ASCII characters "
                   "(percent-encode them)";
        if (*p == '#')
            return "must not hold a #fragment";
    }
    end = auth + strcspn(auth, "/?");
    if (memchr(auth, '@', (size_t)(end - auth)) != NULL)
        return "must not hold credentials (user@): put a bearer token in token_file";
    if (end == auth)
        return "has no host";
    h->authority = xstrndup(auth, (size_t)(end - auth));
    if (auth[0] == '[') {
        struct in6_addr a6;
        char buf[64];

        he = memchr(auth, ']', (size_t)(end - auth));
        if (he == NULL || (size_t)(he - auth - 1) >= sizeof(buf))
            return "has an IPv6 address without its closing ]";
        memcpy(buf, auth + 1, (size_t)(he - auth - 1));
        buf[he - auth - 1] = '\0';
        if (inet_pton(AF_INET6, buf, &a6) != 1)
            return "has a bracketed host that is not an IPv6 address";
        h->host = xstrdup(buf);
        hp = he + 1;
    } else {
        he = memchr(auth, ':', (size_t)(end - auth));
        if (he == NULL)
            he = end;
        for (p = auth; p < he; p++)
            if (!is_host_char(*p))
                return "has a host that is not a name or an IPv4 address";
        if (he == auth)
            return "has no host";
        h->host = xstrndup(auth, (size_t)(he - auth));
        hp = he;
    }
    h->port = h->tls ? 443 : 80;
    if (hp < end) {
        unsigned long v;
        char *e;

        if (*hp != ':' || end - hp - 1 < 1 || end - hp - 1 > 5)
            return "has a bad port (1..65535 after the host)";
        memcpy(port_text, hp + 1, (size_t)(end - hp - 1));
        port_text[end - hp - 1] = '\0';
        for (i = 0; port_text[i] != '\0'; i++)
            if (port_text[i] < '0' || port_text[i] > '9')
                return "has a bad port (1..65535 after the host)";
        v = strtoul(port_text, &e, 10);
        if (v < 1 || v > 65535)
            return "has a bad port (1..65535 after the host)";
        h->port = (unsigned)v;
    }
    if (*end == '/')
        h->target = xstrdup(end);
    else
        h->target = strf("/%s", end);   /* "" or "?query" */
    return NULL;
}

static int
parse_events(struct px_webhook_conf *h, json_t *v, const char *pre, struct conf_err *err)
{
    char p[sizeof(err->path)];
    json_t *e;
    size_t i;

    conf_join(p, sizeof(p), pre, "events");
    if (v == NULL) {                    /* the 3 a.m. ones */
        h->events = (1u << 1) | (1u << 4);
        return 0;
    }
    if (!json_is_array(v) || json_array_size(v) == 0)
        return conf_fail(err, p, "must be a non-empty array of event names (audit actions: "
                         "\"rollback\", \"freeze\", \"plan_step\"..., or \"*\" for all)");
    json_array_foreach(v, i, e) {
        char q[sizeof(err->path)];
        const char *s = json_string_value(e);
        unsigned k;

        conf_join_index(q, sizeof(q), p, i);
        if (s == NULL)
            return conf_fail(err, q, "must be a string");
        if (strcmp(s, "*") == 0) {
            h->all_events = true;
            continue;
        }
        for (k = 0; px_webhook_events[k] != NULL; k++)
            if (strcmp(s, px_webhook_events[k]) == 0)
                break;
        if (px_webhook_events[k] == NULL) {
            char known[512] = "";

            for (k = 0; px_webhook_events[k] != NULL; k++) {
                size_t n = strlen(known);

                snprintf(known + n, sizeof(known) - n, "%s%s", k ? ", " : "",
                         px_webhook_events[k]);
            }
            return conf_fail(err, q, "unknown event \"%.64s\" (one of: %s, or \"*\")", s,
                             known);
        }
        if (h->events & (1u << k))
            return conf_fail(err, q, "\"%s\" is listed twice", s);
        h->events |= 1u << k;
    }
    return 0;
}

static int
parse_hook(struct px_webhook_conf *h, json_t *j, const char *pre, const char *dir,
           struct conf_err *err)
{
    static const char *const keys[] = {
        "url", "events", "token_file", "name", "timeout_ms", "queue", "ca_file", NULL
    };
    char p[sizeof(err->path)];
    const char *s, *why;

    if (!json_is_object(j))
        return conf_fail(err, pre, "must be an object {\"url\", \"events\", ...}");
    if (conf_check_keys(j, pre, keys, err) != 0)
        return -1;
    if (conf_opt_nonempty(j, "url", pre, &s, err) != 0)
        return -1;
    conf_join(p, sizeof(p), pre, "url");
    if (s == NULL)
        return conf_fail(err, p, "is required");
    h->url = xstrdup(s);
    if ((why = parse_url(h, s)) != NULL)
        return conf_fail(err, p, "%s", why);
    if (parse_events(h, json_object_get(j, "events"), pre, err) != 0)
        return -1;
    if (conf_opt_nonempty(j, "name", pre, &s, err) != 0)
        return -1;
    if (s != NULL) {
        size_t i;

        for (i = 0; s[i] != '\0'; i++)
            if (!is_host_char(s[i]) && s[i] != '_' && s[i] != ':')
                break;
        conf_join(p, sizeof(p), pre, "name");
        if (s[i] != '\0' || i > 63)
            return conf_fail(err, p, "must be 1..63 of [A-Za-z0-9_.:-]");
        h->name = xstrdup(s);
    } else {
        h->name = h->port == (h->tls ? 443u : 80u)
                      ? xstrdup(h->host) : strf("%s:%u", h->host, h->port);
    }
    h->timeout_ms = PX_WEBHOOK_TIMEOUT_DEF;
    h->queue_max = PX_WEBHOOK_QUEUE_DEF;
    if (conf_opt_uint(j, "timeout_ms", pre, 100, 600000, &h->timeout_ms, err) != 0 ||
        conf_opt_uint(j, "queue", pre, 1, 100000, &h->queue_max, err) != 0)
        return -1;
    if (conf_opt_nonempty(j, "token_file", pre, &s, err) != 0)
        return -1;
    if (s != NULL)
        h->token_file = fs_resolve(dir, s);
    if (conf_opt_nonempty(j, "ca_file", pre, &s, err) != 0)
        return -1;
    if (s != NULL) {
        conf_join(p, sizeof(p), pre, "ca_file");
        if (!h->tls)
            return conf_fail(err, p, "needs an https:// url");
        h->ca_file = fs_resolve(dir, s);
    }
    return 0;
}

int
px_notify_conf_parse(json_t *j, const char *dir, struct px_notify_conf **out,
                     struct conf_err *err)
{
    static const char *const keys[] = { "webhooks", NULL };
    struct px_notify_conf *c;
    json_t *arr, *h;
    size_t i, k;

    *out = NULL;
    if (conf_check_keys(j, "notify", keys, err) != 0)
        return -1;
    arr = json_object_get(j, "webhooks");
    if (arr == NULL)
        return conf_fail(err, "notify.webhooks", "is required (remove \"notify\" to send "
                         "no notification)");
    if (!json_is_array(arr))
        return conf_fail(err, "notify.webhooks", "must be an array");
    if (json_array_size(arr) > PX_WEBHOOK_MAX)
        return conf_fail(err, "notify.webhooks", "has %zu webhooks, at most %d",
                         json_array_size(arr), PX_WEBHOOK_MAX);
    c = xcalloc(1, sizeof(*c));
    c->hooks = xcalloc(json_array_size(arr) + 1, sizeof(*c->hooks));
    json_array_foreach(arr, i, h) {
        char pre[64];

        conf_join_index(pre, sizeof(pre), "notify.webhooks", i);
        c->n = (unsigned)i + 1;
        if (parse_hook(&c->hooks[i], h, pre, dir, err) != 0)
            goto fail;
        for (k = 0; k < i; k++) {
            if (strcmp(c->hooks[k].name, c->hooks[i].name) == 0) {
                conf_fail(err, pre, "has the name \"%s\" of notify.webhooks[%zu]: give each "
                          "webhook its own \"name\" (the metrics' label)", c->hooks[i].name,
                          k);
                goto fail;
            }
        }
    }
    *out = c;
    return 0;
fail:
    px_notify_conf_free(c);
    return -1;
}

static char *
dup_or_null(const char *s)
{
    return s != NULL ? xstrdup(s) : NULL;
}

struct px_notify_conf *
px_notify_conf_dup(const struct px_notify_conf *c)
{
    struct px_notify_conf *d;
    unsigned i;

    if (c == NULL)
        return NULL;
    d = xcalloc(1, sizeof(*d));
    d->n = c->n;
    d->hooks = xcalloc(c->n + 1, sizeof(*d->hooks));
    for (i = 0; i < c->n; i++) {
        const struct px_webhook_conf *h = &c->hooks[i];
        struct px_webhook_conf *o = &d->hooks[i];

        *o = *h;
        o->name = dup_or_null(h->name);
        o->url = dup_or_null(h->url);
        o->host = dup_or_null(h->host);
        o->authority = dup_or_null(h->authority);
        o->target = dup_or_null(h->target);
        o->token_file = dup_or_null(h->token_file);
        o->token = dup_or_null(h->token);
        o->ca_file = dup_or_null(h->ca_file);
    }
    return d;
}

static bool
same_str(const char *a, const char *b)
{
    return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

bool
px_notify_conf_equal(const struct px_notify_conf *a, const struct px_notify_conf *b)
{
    unsigned i;

    if (a == NULL || b == NULL)
        return a == b;
    if (a->n != b->n)
        return false;
    for (i = 0; i < a->n; i++) {
        const struct px_webhook_conf *x = &a->hooks[i], *y = &b->hooks[i];

        if (!same_str(x->url, y->url) || !same_str(x->name, y->name)
            || x->all_events != y->all_events || x->events != y->events
            || !same_str(x->token_file, y->token_file) || !same_str(x->ca_file, y->ca_file)
            || x->timeout_ms != y->timeout_ms || x->queue_max != y->queue_max)
            return false;
    }
    return true;
}

int
px_notify_conf_tokens(struct px_notify_conf *c, bool test_only, const char *conf_file,
                      char *err, size_t errlen)
{
    unsigned i;

    for (i = 0; c != NULL && i < c->n; i++) {
        struct px_webhook_conf *h = &c->hooks[i];
        char ferr[512], *text = NULL;
        size_t len = 0, k;

        if (h->token_file == NULL)
            continue;
        if (fs_read_private(h->token_file, 4096, &text, &len, ferr, sizeof(ferr)) != 0) {
            if (test_only && errno == ENOENT) {
                fprintf(stderr, "%s: warning: notify.webhooks[%u].token_file %s does not "
                        "exist (yet): cutoverd will not start without it\n", conf_file, i,
                        h->token_file);
                continue;
            }
            snprintf(err, errlen, "%s: notify.webhooks[%u].token_file: %s", conf_file, i,
                     ferr);
            return -1;
        }
        while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
            text[--len] = '\0';
        for (k = 0; k < len; k++)
            if ((unsigned char)text[k] <= 0x20 || (unsigned char)text[k] >= 0x7f)
                break;
        if (len == 0 || k < len) {
            explicit_bzero(text, len);
            free(text);
            snprintf(err, errlen, "%s: notify.webhooks[%u].token_file: %s must hold one line "
                     "of printable ASCII without spaces (the bearer token)%s", conf_file, i,
                     h->token_file, len == 0 ? ", it is empty" : "");
            return -1;
        }
        h->token = text;
    }
    return 0;
}

/* ---- the sender ---------------------------------------------------------- */

struct wh_item {
    struct wh_item *next;
    char *body;                  /* owned: the entry, without its "\n" */
    size_t len;
    char action[32];
    uint64_t id;
};

enum wh_phase { WH_IDLE, WH_WAIT, WH_SENDING };

struct wh_target {
    struct px_webhooks *w;
    const struct px_webhook_conf *conf;
    SSL_CTX *ssl_ctx;            /* owned: https only */
    struct wh_item *head, **tail;
    unsigned queued;
    enum wh_phase phase;
    struct event *timer;         /* owned: start (WAIT) or deadline (SENDING) */
    struct bufferevent *bev;     /* owned while SENDING */
    unsigned backoff_ms;         /* the next retry's delay */
    unsigned failing;            /* attempts failed in a row */
    uint64_t sent, failures, dropped_full, rejected;
};

struct px_webhooks {
    struct event_base *base;
    struct evdns_base *dns;      /* owned: only when a URL names a host */
    unsigned n;
    struct wh_target *t;         /* owned, <n> */
    uint64_t next_id;
    long start_s;
};

static void attempt_start(struct wh_target *t);

static void
item_free(struct wh_item *it)
{
    free(it->body);
    free(it);
}

static void
arm(struct wh_target *t, unsigned ms)
{
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

    evtimer_add(t->timer, &tv);
}

static void
pop(struct wh_target *t)
{
    struct wh_item *it = t->head;

    t->head = it->next;
    if (t->head == NULL)
        t->tail = &t->head;
    t->queued--;
    item_free(it);
}

/* The attempt ended: <code> the status (0: none), <why> the failure. */
static void
attempt_end(struct wh_target *t, int code, const char *why)
{
    const struct wh_item *it = t->head;

    if (t->bev != NULL) {
        bufferevent_free(t->bev);
        t->bev = NULL;
    }
    evtimer_del(t->timer);
    if (code >= 200 && code <= 299) {
        if (t->failing > 0)
            log_at(LL_INFO, "notify", 0, "webhook %s: delivered again after %u failed "
                   "attempt(s)", t->conf->name, t->failing);
        t->sent++;
        t->failing = 0;
        t->backoff_ms = PX_WEBHOOK_RETRY_MIN_MS;
        pop(t);
    } else if (code >= 400 && code <= 499 && code != 408 && code != 429) {
        log_at(LL_WARN, "notify", 0, "webhook %s: the receiver refused the %s entry "
               "(delivery %" PRIu64 ") with status %d: dropped, not retried",
               t->conf->name, it->action, it->id, code);
        t->rejected++;
        t->failing = 0;
        t->backoff_ms = PX_WEBHOOK_RETRY_MIN_MS;
        pop(t);
    } else {
        char st[32] = "";

        if (code != 0)
            snprintf(st, sizeof(st), "status %d", code);
        t->failures++;
        t->failing++;
        if (t->failing == 1 || t->failing % 10 == 0)
            log_at(LL_WARN, "notify", 0, "webhook %s: %s: %u entr%s waiting, retry in %u ms "
                   "(%u failed attempt(s) in a row)", t->conf->name, code != 0 ? st : why,
                   t->queued, t->queued == 1 ? "y" : "ies", t->backoff_ms, t->failing);
        t->phase = WH_WAIT;
        arm(t, t->backoff_ms);
        t->backoff_ms = t->backoff_ms * 2 > PX_WEBHOOK_RETRY_MAX_MS ? PX_WEBHOOK_RETRY_MAX_MS
                                                                    : t->backoff_ms * 2;
        return;
    }
    if (t->head != NULL) {
        t->phase = WH_WAIT;
        arm(t, 0);
    } else {
        t->phase = WH_IDLE;
    }
}

static void
on_read(struct bufferevent *bev, void *arg)
{
    struct wh_target *t = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    char *line;
    size_t n = 0;
    int code;

    line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF);
    if (line == NULL) {
        if (evbuffer_get_length(in) > STATUS_LINE_MAX)
            attempt_end(t, 0, "no HTTP status line");
        return;
    }
    if (n >= 12 && strncmp(line, "HTTP/1.", 7) == 0 && (line[7] == '0' || line[7] == '1')
        && line[8] == ' ' && line[9] >= '1' && line[9] <= '5' && line[10] >= '0'
        && line[10] <= '9' && line[11] >= '0' && line[11] <= '9'
        && (n == 12 || line[12] == ' '))
        code = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
    else
        code = -1;
    free(line);
    if (code == 100) {                  /* an interim answer: the final one follows */
        return;
    }
    if (code < 0)
        attempt_end(t, 0, "the answer is not HTTP/1.x");
    else
        attempt_end(t, code, NULL);
}

static void
on_event(struct bufferevent *bev, short what, void *arg)
{
    struct wh_target *t = arg;
    char why[256];

    if (what & BEV_EVENT_CONNECTED)
        return;
    if (what & BEV_EVENT_ERROR) {
        unsigned long e = t->conf->tls ? bufferevent_get_openssl_error(bev) : 0;
        int dns = bufferevent_socket_get_dns_error(bev);

        if (dns != 0)
            snprintf(why, sizeof(why), "cannot resolve %s: %s", t->conf->host,
                     evutil_gai_strerror(dns));
        else if (e != 0)
            snprintf(why, sizeof(why), "TLS: %s", ERR_reason_error_string(e));
        else
            snprintf(why, sizeof(why), "%s",
                     evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
    } else {
        snprintf(why, sizeof(why), "the receiver closed before answering");
    }
    attempt_end(t, 0, why);
}

/* Writes the request of the oldest entry into <out>. */
static void
write_request(struct wh_target *t, struct evbuffer *out)
{
    const struct px_webhook_conf *h = t->conf;
    const struct wh_item *it = t->head;

    evbuffer_add_printf(out, "POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: cutoverd\r\n"
                        "Content-Type: application/json\r\nContent-Length: %zu\r\n"
                        "X-Cutover-Event: %s\r\nX-Cutover-Delivery: %ld-%" PRIu64 "\r\n",
                        h->target, h->authority, it->len, it->action,
                        t->w->start_s, it->id);
    if (h->token != NULL)
        evbuffer_add_printf(out, "Authorization: Bearer %s\r\n", h->token);
    evbuffer_add_printf(out, "Connection: close\r\n\r\n");
    evbuffer_add(out, it->body, it->len);
}

static struct bufferevent *
new_bev(struct wh_target *t, char *why, size_t wlen)
{
    const struct px_webhook_conf *h = t->conf;
    struct bufferevent *bev;
    SSL *ssl;

    if (!h->tls)
        return bufferevent_socket_new(t->w->base, -1, BEV_OPT_CLOSE_ON_FREE);
    if ((ssl = SSL_new(t->ssl_ctx)) == NULL) {
        snprintf(why, wlen, "TLS: cannot make a session");
        return NULL;
    }
    {
        struct in6_addr a;
        bool is_ip = inet_pton(AF_INET, h->host, &a) == 1 || inet_pton(AF_INET6, h->host, &a) == 1;

        if (is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), h->host) != 1
                  : (SSL_set_tlsext_host_name(ssl, h->host) != 1
                     || SSL_set1_host(ssl, h->host) != 1)) {
            SSL_free(ssl);
            snprintf(why, wlen, "TLS: cannot set the name to verify");
            return NULL;
        }
    }
    bev = bufferevent_openssl_socket_new(t->w->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                         BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL)
        SSL_free(ssl);
    else
        bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

static void
attempt_start(struct wh_target *t)
{
    const struct px_webhook_conf *h = t->conf;
    char why[256] = "cannot make a socket";
    struct sockaddr_storage ss;
    int sslen = (int)sizeof(ss);
    char hostport[300];
    int rc;

    t->phase = WH_SENDING;
    arm(t, h->timeout_ms);             /* the deadline of the whole attempt */
    t->bev = new_bev(t, why, sizeof(why));
    if (t->bev == NULL) {
        attempt_end(t, 0, why);
        return;
    }
    bufferevent_setcb(t->bev, on_read, NULL, on_event, t);
    bufferevent_setwatermark(t->bev, EV_READ, 0, STATUS_LINE_MAX * 4);
    write_request(t, bufferevent_get_output(t->bev));
    if (bufferevent_enable(t->bev, EV_READ | EV_WRITE) != 0) {
        attempt_end(t, 0, "cannot watch the socket");
        return;
    }
    snprintf(hostport, sizeof(hostport), strchr(h->host, ':') ? "[%s]:%u" : "%s:%u",
             h->host, h->port);
    if (evutil_parse_sockaddr_port(hostport, (struct sockaddr *)&ss, &sslen) == 0)
        rc = bufferevent_socket_connect(t->bev, (struct sockaddr *)&ss, sslen);
    else
        rc = bufferevent_socket_connect_hostname(t->bev, t->w->dns, AF_UNSPEC, h->host,
                                                 (int)h->port);
    if (rc != 0)                        /* the event callback may have ended it */
        if (t->phase == WH_SENDING && t->bev != NULL)
            attempt_end(t, 0, "cannot connect");
}

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct wh_target *t = arg;

    if (t->phase == WH_SENDING) {
        char why[64];

        snprintf(why, sizeof(why), "no answer within %u ms", t->conf->timeout_ms);
        attempt_end(t, 0, why);
    } else if (t->phase == WH_WAIT && t->head != NULL) {
        attempt_start(t);
    } else {
        t->phase = WH_IDLE;
    }
}

void
px_webhooks_observe(void *arg, const char *action, const char *line, size_t len)
{
    struct px_webhooks *w = arg;
    unsigned i, k;

    if (w == NULL)
        return;
    for (k = 0; px_webhook_events[k] != NULL; k++)
        if (strcmp(action, px_webhook_events[k]) == 0)
            break;
    for (i = 0; i < w->n; i++) {
        struct wh_target *t = &w->t[i];
        struct wh_item *it;

        if (!t->conf->all_events
            && (px_webhook_events[k] == NULL || !(t->conf->events & (1u << k))))
            continue;
        if (t->queued >= t->conf->queue_max) {
            /* the oldest waiting one goes; the head may be on the wire */
            struct wh_item **pp = t->phase == WH_SENDING ? &t->head->next : &t->head;

            if (*pp == NULL) {          /* queue 1 with the head in flight */
                t->dropped_full++;
                continue;
            }
            it = *pp;
            *pp = it->next;
            if (t->tail == &it->next)
                t->tail = pp;
            t->queued--;
            t->dropped_full++;
            if (t->dropped_full == 1 || t->dropped_full % 100 == 0)
                log_at(LL_WARN, "notify", 0, "webhook %s: queue full (%u): the oldest "
                       "waiting entry (%s, delivery %" PRIu64 ") is dropped; %" PRIu64
                       " dropped so far", t->conf->name, t->conf->queue_max, it->action,
                       it->id, t->dropped_full);
            item_free(it);
        }
        it = xcalloc(1, sizeof(*it));
        it->len = len > 0 && line[len - 1] == '\n' ? len - 1 : len;
        it->body = xstrndup(line, it->len);
        snprintf(it->action, sizeof(it->action), "%s", action);
        it->id = ++w->next_id;
        *t->tail = it;
        t->tail = &it->next;
        t->queued++;
        if (t->phase == WH_IDLE) {      /* never a connect from inside a change */
            t->phase = WH_WAIT;
            arm(t, 0);
        }
    }
}

struct px_webhooks *
px_webhooks_new(struct event_base *base, const struct px_notify_conf *c, char *err,
                size_t errlen)
{
    struct px_webhooks *w = xcalloc(1, sizeof(*w));
    unsigned i;

    w->base = base;
    w->start_s = (long)time(NULL);
    w->n = c != NULL ? c->n : 0;
    w->t = xcalloc(w->n + 1, sizeof(*w->t));
    for (i = 0; i < w->n; i++) {
        struct wh_target *t = &w->t[i];
        const struct px_webhook_conf *h = &c->hooks[i];
        struct in6_addr a;

        t->w = w;
        t->conf = h;
        t->tail = &t->head;
        t->backoff_ms = PX_WEBHOOK_RETRY_MIN_MS;
        t->timer = evtimer_new(base, on_timer, t);
        if (t->timer == NULL) {
            snprintf(err, errlen, "notify: cannot make a timer");
            goto fail;
        }
        if (inet_pton(AF_INET, h->host, &a) != 1 && inet_pton(AF_INET6, h->host, &a) != 1
            && w->dns == NULL
            && (w->dns = evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS
                                                  | EVDNS_BASE_DISABLE_WHEN_INACTIVE)) == NULL) {
            snprintf(err, errlen, "notify.webhooks[%u]: cannot set up name resolution for "
                     "%s (/etc/resolv.conf)", i, h->host);
            goto fail;
        }
        if (h->tls) {
            t->ssl_ctx = SSL_CTX_new(TLS_client_method());
            if (t->ssl_ctx == NULL
                || SSL_CTX_set_min_proto_version(t->ssl_ctx, TLS1_2_VERSION) != 1
                || (h->ca_file != NULL
                        ? SSL_CTX_load_verify_locations(t->ssl_ctx, h->ca_file, NULL)
                        : SSL_CTX_set_default_verify_paths(t->ssl_ctx)) != 1) {
                snprintf(err, errlen, "notify.webhooks[%u]: TLS: %s%s%s", i,
                         h->ca_file != NULL ? h->ca_file : "the system's CA store",
                         h->ca_file != NULL ? ": " : ": ",
                         ERR_reason_error_string(ERR_get_error()) != NULL
                             ? ERR_reason_error_string(ERR_peek_last_error())
                             : "cannot be loaded");
                ERR_clear_error();
                goto fail;
            }
            SSL_CTX_set_verify(t->ssl_ctx, SSL_VERIFY_PEER, NULL);
        }
    }
    return w;
fail:
    px_webhooks_free(w);
    return NULL;
}

void
px_webhooks_free(struct px_webhooks *w)
{
    unsigned i;

    if (w == NULL)
        return;
    for (i = 0; i < w->n; i++) {
        struct wh_target *t = &w->t[i];

        if (t->queued > 0)
            log_at(LL_WARN, "notify", 0, "webhook %s: %u entr%s not delivered at the stop",
                   t->conf->name, t->queued, t->queued == 1 ? "y" : "ies");
        while (t->head != NULL)
            pop(t);
        if (t->bev != NULL)
            bufferevent_free(t->bev);
        if (t->timer != NULL)
            event_free(t->timer);
        SSL_CTX_free(t->ssl_ctx);
    }
    if (w->dns != NULL)
        evdns_base_free(w->dns, 0);
    free(w->t);
    free(w);
}

void
px_webhooks_metrics(const struct px_webhooks *w, struct met_writer *mw)
{
    struct met_label l[2] = { { "webhook", "" }, { "reason", "" } };
    unsigned i, n = w != NULL ? w->n : 0;

    met_family(mw, "cutover_notify_sent_total", MET_COUNTER,
               "Audit entries a webhook receiver accepted (2xx).");
    for (i = 0; i < n; i++) {
        l[0].value = w->t[i].conf->name;
        met_sample_u64(mw, l, 1, w->t[i].sent);
    }
    met_family(mw, "cutover_notify_failures_total", MET_COUNTER,
               "Webhook attempts that failed and are retried (connect, timeout, 5xx, 408, "
               "429).");
    for (i = 0; i < n; i++) {
        l[0].value = w->t[i].conf->name;
        met_sample_u64(mw, l, 1, w->t[i].failures);
    }
    met_family(mw, "cutover_notify_dropped_total", MET_COUNTER,
               "Audit entries a webhook never delivered: queue_full (the oldest waiting "
               "one made room) or rejected (a 4xx answer).");
    for (i = 0; i < n; i++) {
        l[0].value = w->t[i].conf->name;
        l[1].value = "queue_full";
        met_sample_u64(mw, l, 2, w->t[i].dropped_full);
        l[1].value = "rejected";
        met_sample_u64(mw, l, 2, w->t[i].rejected);
    }
    met_family(mw, "cutover_notify_queue", MET_GAUGE,
               "Audit entries waiting for a webhook (the one being sent included).");
    for (i = 0; i < n; i++) {
        l[0].value = w->t[i].conf->name;
        met_sample_u64(mw, l, 1, w->t[i].queued);
    }
}
