/*
 * health/check: the active checker of one server (see check.h). The I/O
 * half only: rise/fall counting, scheduling and the response reader are the
 * pure functions of health/probe.c.
 *
 * One timer per checker does both jobs: while no check runs it fires the
 * next check; while one runs it is that check's deadline. So a check can
 * never be left without a deadline and two checks of one server never
 * overlap. Every check opens a fresh connection (Connection: close), as
 * HAProxy does: a pooled one would test the pool, not the server.
 *
 * A server of a side with upstream TLS is checked over TLS with the
 * side's context (hl_check_set_tls: proxy/verdict.c hands it over, so this
 * file, the only one of health/ with OpenSSL, knows nothing of the config):
 * "connected" means the handshake completed, and a refused certificate is a
 * failed check that says why.
 *
 * Workload: a few servers per service, one check per interval each (2 s by
 * default); the costs that matter are that a check never blocks the loop and
 * never reads unbounded input.
 */
#include "health/check.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "lib/log.h"
#include "lib/syserr.h"
#include "lib/xmalloc.h"
#include "lib/timeval.h"
#include "health/probe.h"

/* method, path, Host, optional Content-Length line; a fresh connection per
 * check, closed by the server after its answer */
#define CHECK_REQUEST "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: cutoverd-health\r\n" \
                      "Accept: */*\r\n%sConnection: close\r\n\r\n"

struct hl_check {
    struct event_base *base;            /* borrowed */
    const struct hl_check_conf *conf;   /* borrowed: outlives the checker */
    struct sockaddr_storage sa;
    size_t salen;
    char label[128];                    /* "web new/127.0.0.1:9002", for logs */
    char *request;                      /* owned: HTTP request bytes; NULL for tcp */
    size_t request_len;
    uint64_t rng;                       /* splitmix64 state: jitter */
    hl_check_notify_fn *notify;
    void *arg;
    struct event *timer;                /* owned: next check, or the running one's deadline */
    struct bufferevent *bev;            /* owned while a check runs, else NULL */
    bool is_running;                    /* a check is in flight */
    bool is_connected;                  /* ...and its connect succeeded */
    uint64_t t_start_ms;                /* monotonic start of the running check */
    struct hl_risefall rf;
    struct hl_resp *resp;               /* owned: the HTTP response reader (24 KB), only
                                         * while a check runs; NULL for tcp */
    SSL_CTX *tls;                       /* one reference: checks over TLS; NULL plain */
    char *sni;                          /* owned: SNI and name to verify; NULL none */
    struct hl_check_stats st;
    unsigned skip_streak;               /* checks skipped in a row (local errors) */
};

static uint64_t
mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Copies <s> into <buf> with every byte outside printable ASCII and every
 * double quote replaced by '?': config text goes into log lines. */
static const char *
printable(const char *s, char *buf, size_t len)
{
    size_t i;

    for (i = 0; s[i] != '\0' && i + 1 < len; i++)
        buf[i] = (s[i] < 0x20 || s[i] >= 0x7f || s[i] == '"') ? '?' : s[i];
    buf[i] = '\0';
    return buf;
}

static void on_check_timer(evutil_socket_t fd, short what, void *arg);
static void on_check_read(struct bufferevent *bev, void *arg);
static void on_check_event(struct bufferevent *bev, short what, void *arg);
static void tls_failed(struct hl_check *c);

/* Ends the running check with result <passed> and text <fmt>..., schedules
 * the next one and reports a verdict change. Nothing of <c> is touched after
 * the callback. */
static void __attribute__((format(printf, 3, 4)))
check_end(struct hl_check *c, bool passed, const char *fmt, ...)
{
    uint64_t elapsed = mono_ms() - c->t_start_ms;
    unsigned count, delay;
    struct timeval tv;
    bool changed;
    va_list ap;

    if (c->bev != NULL) {
        bufferevent_free(c->bev);      /* closes the socket (CLOSE_ON_FREE) */
        c->bev = NULL;
    }
    c->is_running = false;
    if (c->skip_streak > 0)
        log_at(LL_INFO, "health", 0, "%s: checks run again after %u skipped", c->label,
               c->skip_streak);
    c->skip_streak = 0;
    va_start(ap, fmt);
    vsnprintf(c->st.last, sizeof(c->st.last), fmt, ap);
    va_end(ap);
    free(c->resp);                     /* the next check gets a new one */
    c->resp = NULL;
    c->st.last_ms = elapsed > UINT32_MAX ? UINT32_MAX : (unsigned)elapsed;
    if (passed)
        c->st.passed++;
    else
        c->st.failed++;
    count = c->rf.run + 1;             /* the run this result extends */
    changed = hl_risefall_push(&c->rf, passed);
    c->st.is_up = c->rf.is_up;
    c->st.run = c->rf.run;
    log_at(LL_DEBUG, "health", 0, "%s: check %s in %u ms: %s (%s, %u/%u)", c->label,
           passed ? "passed" : "failed", c->st.last_ms, c->st.last,
           c->rf.is_up ? "up" : "down", c->rf.run,
           c->rf.is_up ? c->rf.fall : c->rf.rise);

    /* interval from start to start: the time this check took counts */
    delay = hl_next_delay_ms(c->conf->interval_ms, hl_risefall_is_changing(&c->rf), &c->rng);
    tv = tv_ms(elapsed >= delay ? 0 : delay - (unsigned)elapsed);
    if (evtimer_add(c->timer, &tv) < 0)
        log_at(LL_ERR, "health", 0, "%s: cannot schedule the next check: "
               "checks of this server stop", c->label);
    if (changed)
        c->notify(c->arg, c->rf.is_up, count, c->st.last);   /* last: nothing after it */
}

/* Ends the running check without a result: the proxy could not run it
 * for a local reason (<e>, lib/syserr.h). No verdict: the rise/fall count
 * stays, the next check comes at the usual interval. */
static void
check_skip(struct hl_check *c, const char *what, int e)
{
    struct timeval tv;
    unsigned delay;

    if (c->bev != NULL) {
        bufferevent_free(c->bev);
        c->bev = NULL;
    }
    c->is_running = false;
    free(c->resp);
    c->resp = NULL;
    c->st.skipped++;
    snprintf(c->st.last, sizeof(c->st.last), "skipped: %s: %s (the proxy's own shortage: "
             "no verdict)", what, strerror(e));
    if (c->skip_streak++ == 0)
        log_at(LL_WARN, "health", 0, "%s: check skipped: %s: %s; a shortage of the proxy, "
               "not a verdict on the server, which stays %s until checks run again",
               c->label, what, strerror(e), c->rf.is_up ? "up" : "down");
    delay = hl_next_delay_ms(c->conf->interval_ms, hl_risefall_is_changing(&c->rf), &c->rng);
    tv = tv_ms(delay);
    if (evtimer_add(c->timer, &tv) < 0)
        log_at(LL_ERR, "health", 0, "%s: cannot schedule the next check: "
               "checks of this server stop", c->label);
}

/* Checks the complete response against the expectations. */
static void
evaluate(struct hl_check *c)
{
    const struct hl_check_conf *conf = c->conf;
    const struct hl_resp *r = c->resp;
    char needle[64];

    if (r->status < conf->expect_min || r->status > conf->expect_max) {
        check_end(c, false, "HTTP %d", r->status);
        return;
    }
    if (conf->body_contains[0] != '\0' && !hl_resp_body_has(r, conf->body_contains)) {
        check_end(c, false, "HTTP %d, body does not contain \"%s\"%s", r->status,
                  printable(conf->body_contains, needle, sizeof(needle)),
                  r->body_cut ? " in its first 16 KiB" : "");
        return;
    }
    check_end(c, true, "ok");
}

/* Feeds what arrived to the response reader. Returns true when the check
 * ended (the bufferevent is gone then). */
static bool
read_input(struct hl_check *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct evbuffer_iovec v[8];
    enum hl_resp_rc rc = HL_RESP_AGAIN;
    size_t used, total;
    int n, i;

    while (rc == HL_RESP_AGAIN && evbuffer_get_length(in) > 0) {
        n = evbuffer_peek(in, -1, NULL, v, 8);
        if (n > 8)
            n = 8;
        total = 0;
        for (i = 0; i < n && rc == HL_RESP_AGAIN; i++) {
            rc = hl_resp_feed(c->resp, v[i].iov_base, v[i].iov_len, &used);
            total += used;
        }
        if (evbuffer_drain(in, total) < 0)
            break;
        if (rc == HL_RESP_AGAIN && total == 0)
            break;                     /* cannot happen: the reader takes bytes until done */
    }
    if (rc == HL_RESP_DONE) {
        evaluate(c);
        return true;
    }
    if (rc == HL_RESP_BAD) {
        check_end(c, false, "bad response: %s", c->resp->err);
        return true;
    }
    return false;
}

static void
on_check_read(struct bufferevent *bev, void *arg)
{
    struct hl_check *c = arg;

    (void)bev;
    if (c->is_running && c->resp != NULL)
        read_input(c);
}

static void
on_check_event(struct bufferevent *bev, short what, void *arg)
{
    struct hl_check *c = arg;
    int err = EVUTIL_SOCKET_ERROR();

    (void)bev;
    if (!c->is_running)
        return;
    if (what & BEV_EVENT_CONNECTED) {
        c->is_connected = true;
        if (c->conf->type == HL_CHECK_TCP) {
            check_end(c, true, "ok");
            return;
        }
        if (bufferevent_write(c->bev, c->request, c->request_len) < 0 ||
            bufferevent_enable(c->bev, EV_READ | EV_WRITE) < 0)
            check_end(c, false, "cannot send the check request");
        return;
    }
    if (!c->is_connected) {
        if (sys_err_local(err))
            check_skip(c, "connect", err);
        else if (c->tls != NULL)
            tls_failed(c);
        else
            check_end(c, false, "connect: %s", evutil_socket_error_to_string(err));
        return;
    }
    /* bytes that arrived with the close may complete the response */
    if (read_input(c))
        return;
    if (what & BEV_EVENT_EOF) {
        /* over TLS a close without close_notify cannot end a body */
        SSL *ssl = c->tls != NULL ? bufferevent_openssl_get_ssl(c->bev) : NULL;

        if (ssl != NULL && !(SSL_get_shutdown(ssl) & SSL_RECEIVED_SHUTDOWN))
            check_end(c, false, "tls: closed without close_notify before the response ended");
        else if (hl_resp_eof(c->resp) == HL_RESP_DONE)
            evaluate(c);
        else
            check_end(c, false, "%s", c->resp->err);
        return;
    }
    check_end(c, false, "%s: %s", (what & BEV_EVENT_WRITING) ? "write" : "read",
              evutil_socket_error_to_string(err));
}

/* A TLS check failed before its handshake completed: why. */
static void
tls_failed(struct hl_check *c)
{
    SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
    unsigned long e, reason = 0;
    long vr = ssl != NULL ? SSL_get_verify_result(ssl) : X509_V_OK;
    BIO *w = ssl != NULL ? SSL_get_wbio(ssl) : NULL;

    while ((e = bufferevent_get_openssl_error(c->bev)) != 0)
        if (ERR_GET_LIB(e) != 0 && reason == 0)
            reason = e;
    if (ssl != NULL && (SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER) && vr != X509_V_OK)
        check_end(c, false, "tls: certificate refused: %s", X509_verify_cert_error_string(vr));
    else if (w == NULL || BIO_number_written(w) == 0)
        check_end(c, false, "connect: connection refused or unreachable");
    else
        check_end(c, false, "tls: handshake failed: %s",
                  reason != 0 && ERR_reason_error_string(reason) != NULL
                  ? ERR_reason_error_string(reason) : "connection closed");
}

/* A TLS bufferevent for the next check: SNI and the name to verify, or
 * the server's address. NULL when it cannot be made. */
static struct bufferevent *
tls_bev(struct hl_check *c, int opts)
{
    SSL *ssl = SSL_new(c->tls);
    const struct sockaddr *sa = (const struct sockaddr *)&c->sa;
    int ok = 1;

    if (ssl == NULL)
        return NULL;
    if (c->sni != NULL)
        ok = SSL_set_tlsext_host_name(ssl, c->sni) == 1;
    else if (SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER)
        ok = sa->sa_family == AF_INET
             ? X509_VERIFY_PARAM_set1_ip(SSL_get0_param(ssl), (const unsigned char *)
                                         &((const struct sockaddr_in *)sa)->sin_addr, 4)
             : X509_VERIFY_PARAM_set1_ip(SSL_get0_param(ssl), (const unsigned char *)
                                         &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    if (ok != 1) {
        SSL_free(ssl);                 /* a name not set would verify nothing */
        return NULL;
    }
    return bufferevent_openssl_socket_new(c->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING, opts);
}

/* Starts one check: a fresh non-blocking connect under the deadline. */
static void
check_begin(struct hl_check *c)
{
    struct timeval tv = tv_ms(c->conf->timeout_ms);
    int opts = BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS;

    c->t_start_ms = mono_ms();
    c->is_running = true;
    c->is_connected = false;
    if (c->request != NULL) {
        /* HTTP: a reader for this check only, so that thousands of idle
         * checkers hold no response buffers */
        if (c->resp == NULL)
            c->resp = xmalloc(sizeof(*c->resp));
        hl_resp_init(c->resp, strcmp(c->conf->method, "HEAD") == 0,
                     c->conf->body_contains[0] != '\0');
    }
    /* the deadline first: a check that fails below still gets rescheduled
     * by check_end(), which re-arms this same timer */
    if (evtimer_add(c->timer, &tv) < 0) {
        check_end(c, false, "cannot arm the check deadline");
        return;
    }
    c->bev = c->tls != NULL ? tls_bev(c, opts) : bufferevent_socket_new(c->base, -1, opts);
    if (c->bev == NULL) {
        check_skip(c, "cannot create a socket", ENOMEM);
        return;
    }
    bufferevent_setcb(c->bev, on_check_read, NULL, on_check_event, c);
    /* an immediate refusal is reported later through the loop (libevent
     * defers it); -1 means the socket could not even be set up, which is
     * the proxy's own shortage when it ran out of something */
    if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&c->sa, (int)c->salen) < 0) {
        int e = EVUTIL_SOCKET_ERROR();

        if (sys_err_local(e))
            check_skip(c, "cannot open a socket", e);
        else
            check_end(c, false, "connect: %s", evutil_socket_error_to_string(e));
    }
}

static void
on_check_timer(evutil_socket_t fd, short what, void *arg)
{
    struct hl_check *c = arg;

    (void)fd;
    (void)what;
    if (!c->is_running) {
        check_begin(c);
        return;
    }
    check_end(c, false, "timeout after %u ms %s", c->conf->timeout_ms,
              c->is_connected ? "waiting for the response" : "while connecting");
}

struct hl_check *
hl_check_new(struct event_base *base, const struct hl_check_conf *conf,
             const struct sockaddr *sa, size_t salen,
             const char *host, const char *label, uint64_t seed,
             hl_check_notify_fn *notify, void *arg)
{
    struct hl_check *c;
    const char *m = conf->method;
    bool has_cl;
    int n;

    if (salen > sizeof(c->sa) || (conf->type != HL_CHECK_TCP && conf->type != HL_CHECK_HTTP))
        return NULL;
    c = xcalloc(1, sizeof(*c));
    c->base = base;
    c->conf = conf;
    memcpy(&c->sa, sa, salen);
    c->salen = salen;
    snprintf(c->label, sizeof(c->label), "%s", label);
    c->rng = seed;
    c->notify = notify;
    c->arg = arg;
    hl_risefall_init(&c->rf, conf->rise, conf->fall, true);
    c->st.is_up = true;
    if (conf->type == HL_CHECK_HTTP) {
        /* a request body is announced empty for methods that may carry one */
        has_cl = strcmp(m, "GET") != 0 && strcmp(m, "HEAD") != 0;
        n = snprintf(NULL, 0, CHECK_REQUEST, m, conf->path, host,
                     has_cl ? "Content-Length: 0\r\n" : "");
        c->request = xmalloc((size_t)n + 1);
        snprintf(c->request, (size_t)n + 1, CHECK_REQUEST, m, conf->path, host,
                 has_cl ? "Content-Length: 0\r\n" : "");
        c->request_len = (size_t)n;
    }
    c->timer = evtimer_new(base, on_check_timer, c);
    if (c->timer == NULL) {
        log_at(LL_ERR, "health", 0, "%s: cannot create the check timer", c->label);
        hl_check_free(c);
        return NULL;
    }
    return c;
}

int
hl_check_start(struct hl_check *c)
{
    struct timeval tv = tv_ms(hl_first_delay_ms(c->conf->interval_ms, &c->rng));

    return evtimer_add(c->timer, &tv) < 0 ? -1 : 0;
}

void
hl_check_free(struct hl_check *c)
{
    if (c == NULL)
        return;
    if (c->bev != NULL)
        bufferevent_free(c->bev);      /* also drops callbacks still deferred */
    if (c->timer != NULL)
        event_free(c->timer);
    free(c->request);
    free(c->resp);
    SSL_CTX_free(c->tls);
    free(c->sni);
    free(c);
}

int
hl_check_set_tls(struct hl_check *c, SSL_CTX *ctx, const char *sni)
{
    char *s = NULL;

    if (sni != NULL && (s = strdup(sni)) == NULL)
        return -1;
    if (ctx != NULL)
        SSL_CTX_up_ref(ctx);
    SSL_CTX_free(c->tls);
    free(c->sni);
    c->tls = ctx;
    c->sni = s;
    return 0;
}

void
hl_check_set_verdict(struct hl_check *c, bool is_up)
{
    hl_risefall_init(&c->rf, c->conf->rise, c->conf->fall, is_up);
    c->st.is_up = is_up;
}

void
hl_check_set_conf(struct hl_check *c, const struct hl_check_conf *conf)
{
    c->conf = conf;
}

void
hl_check_get_stats(const struct hl_check *c, struct hl_check_stats *out)
{
    *out = c->st;
}
