/*
 * backend: the programmable upstream that integration tests put behind
 * cutoverd. One process, one libevent loop, loopback only.
 *
 *   backend --name NAME --listen 127.0.0.1:PORT [--tcp] [--seed N]
 *           [--tls-cert PEM --tls-key PEM [--tls-client-ca PEM]]
 *           [--control 127.0.0.1:PORT] [--record FILE]
 *
 * HTTP mode (default) is a small, strict HTTP/1.1 server: request line,
 * headers, Content-Length or chunked request bodies (always read in full),
 * keep-alive and pipelining (one request is answered at a time, so answers
 * leave in request order). Every answer carries "X-Backend: NAME" and, by
 * default, the body "NAME\n". Special paths:
 *
 *   /healthz            200 "ok\n", or 503 once set unhealthy; no other
 *                       setting (mode, delay, script, errors) applies to it
 *   /echo               200, body = the request head exactly as received,
 *                       then the request body bytes as received (chunked
 *                       framing included)
 *   /ws                 with "Upgrade: websocket" and "Connection: upgrade":
 *                       101 Switching Protocols (Upgrade: websocket,
 *                       Connection: Upgrade), then every byte is echoed back
 *                       until the peer closes (then flush, FIN, close); no
 *                       setting applies to it. Without both fields it is an
 *                       ordinary path
 *   /__backend/set?k=v  change behaviour (answered 200 "ok\n", or 400 with
 *                       the reason; nothing is applied when one key fails;
 *                       %XX escapes need two hex digits, numbers are plain
 *                       decimals):
 *       error_rate=F    fraction [0,1] of requests answered with <status>,
 *                       drawn from a PRNG seeded by --seed (or seed=)
 *       status=N        the status of those error answers (default 500)
 *       delay_ms=N      wait N ms before acting on each request
 *       mode=M          normal | reset (RST, SO_LINGER 0) | stall (read the
 *                       request, never answer) | close (FIN, no answer) |
 *                       garbage (non-HTTP bytes, then close) | midbody (a
 *                       200 head announcing the whole body, by
 *                       Content-Length or chunked per chunked=, then half of
 *                       the body bytes; once the peer's kernel has
 *                       acknowledged them, RST) | midstall (the same head and
 *                       half body, then nothing more: the connection stays
 *                       open, input discarded) | endless (a 200 head,
 *                       then body bytes as fast as the peer reads them:
 *                       chunked per chunked=, never a last chunk; else a
 *                       Content-Length of body_bytes, 1 GiB when unset,
 *                       written whole before the next request is read;
 *                       input meanwhile discarded). The body of midbody and
 *                       midstall is body_bytes long, 65536 when unset
 *       raw=BYTES       (percent-encoded, at most 8192 bytes once decoded;
 *                       empty: off) every request whose settings say
 *                       "normal" is answered with exactly these bytes,
 *                       nothing added; the connection then stays open for
 *                       the next request (closed when raw_close=1 or the
 *                       request asked for close). For invalid framing:
 *                       "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n
 *                       Content-Length: 6\r\n\r\nhello", a 101, ...
 *                       Every "@@@@@@@@@@" (ten @) in them is written as ten
 *                       digits that differ on every answer and between
 *                       backends of different names (the answer count
 *                       mixed with the name): a timestamp or request id
 *                       for the shadow tests' noise, deterministic
 *       raw_close=0|1   close (FIN) after writing the raw bytes
 *       pad_head=N      0..1048576: every normal answer (and the head of
 *                       midbody/midstall) carries "X-Pad: " and N filler
 *                       bytes; not the control, health or error answers
 *       healthy=0|1     what /healthz answers
 *       script=I,I,...  behaviours consumed one per request before the
 *                       settings apply again. I is NNN (that status), hang,
 *                       reset, close, garbage, midbody, midstall, raw (the
 *                       raw= bytes, which must be set) or delayN (wait N ms
 *                       instead of delay_ms, then act per the settings),
 *                       each with an optional xCOUNT: "200x8,500x3,hang"
 *       keepalive_ms=N  0..60000: a connection waiting for a request head
 *                       with nothing received for N ms is closed (FIN), as
 *                       a server's keep-alive timeout does; 0 (default):
 *                       never
 *       chunked=0|1     answer with chunked transfer coding
 *       stamp=0|1       a normal answer (not /echo) carries a timestamp and
 *                       a request id, as many services' answers do: the
 *                       headers "X-Request-Id: ID" and "X-Timestamp: MS"
 *                       and the body {"request_id":"ID","ts":MS,"data":
 *                       {"v":1,"items":[1,2,3]}} (application/json), where
 *                       MS is the wall clock in milliseconds and ID 16 hex
 *                       digits that differ on every answer and between
 *                       backends of different names; the rest of the body
 *                       is the same on every backend (shadow calibration)
 *       body_bytes=N    answer with N bytes (the name repeated) instead
 *       seed=N          reseed the PRNG
 *       reset=1         everything back to defaults, counters zeroed, PRNG
 *                       reseeded with --seed; keys are applied in order
 *   /__backend/stats    200 JSON {"requests","heads","bodies","body_bytes",
 *                       "connections","request_connections","open",
 *                       "aborted","last_request_head"}
 *
 * "requests" counts complete requests (head and whole body) and "heads"
 * counts request heads, both excluding /healthz and the /__backend/ paths; so a test
 * can assert that a backend received nothing, or no complete request.
 * "connections" counts accepted connections (control ones included) since
 * start or reset=1, "request_connections" those of them that carried at
 * least one counted request head (what a proxy opened for traffic, without
 * the test's control connections); "open" is the number of connections
 * open right now, not counting the one asking for the stats (a control
 * connection that is still closing may be counted for a moment: poll).
 * "aborted" counts requests whose connection the peer closed (or reset)
 * before the answer was completely written: while it waited for its delay,
 * stalled (stall, hang, midstall) or was still writing the answer; not the
 * backend's own reset, close, garbage or midbody. A peer that half-closes
 * while its request waits for the delay therefore gets no answer.
 *
 * TLS (--tls-cert, --tls-key): every connection is TLS (1.2 or 1.3, with
 * session tickets); --tls-client-ca requires a client certificate signed
 * by that CA. The plain mode is unchanged without these flags. --control
 * adds a plain HTTP listener serving the same paths (the tests' control
 * and stats of a TLS backend; its connections count as control ones). Settings
 * for the ends of a TLS connection (the truncation tests):
 *       close_notify=0|1  every close the backend makes (FIN or RST, with or
 *                       without an answer) sends close_notify first (1, the
 *                       default) or not (0)
 *       close_rst=0|1   the backend's graceful closes (raw_close, midclose,
 *                       Connection: close) are an RST once the peer has
 *                       acknowledged every byte, instead of a FIN
 *   and mode/script midclose: the midbody head and half body, then a
 *   graceful close (FIN, or RST with close_rst=1). Stats add
 *   "tls_handshakes", "tls_resumed" (handshakes that resumed a session) and
 *   "tls_records" (application data records received: how a client writes).
 *
 * --record FILE appends every counted request to FILE as it completes, one
 * JSON object per line: {"target","head","body"} (the head as received,
 * the decoded body), flushed at once: the receiver of the notification
 * tests, which read what arrived in order.
 *
 * TCP mode (--tcp) writes "NAME\n" on each connection, then echoes every
 * byte; on the client's EOF it flushes, shuts down its write side and closes.
 *
 * Prints "ready NAME 127.0.0.1:PORT" on stdout once listening; exits 0 on
 * SIGTERM or SIGINT, 2 on a usage error, 1 when it cannot listen.
 * All mutable state lives in struct be_srv (settings, counters, PRNG) and in
 * the connections it lists.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/bufferevent_ssl.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "lib/log.h"
#include "lib/text.h"
#include "lib/xmalloc.h"

#define BE_HEAD_MAX      65536         /* bytes; a bigger request head gets 431 */
#define BE_LINE_MAX      4096          /* bytes; chunk-size and trailer lines */
#define BE_SCRIPT_MAX    64            /* items in one script */
#define BE_CHUNK_OUT     4096          /* bytes per chunk in chunked answers */
#define BE_TCP_HIGH_WM   (1 << 20)     /* bytes queued before TCP echo stops reading */
#define BE_LINGER_MS     2000          /* how long a closing conn drains input */
#define BE_DELAY_MAX_MS  600000
#define BE_BODY_MAX      (1LL << 30)   /* bytes; largest body_bytes */
#define BE_REQ_BODY_MAX  (1ULL << 40)  /* bytes; largest accepted request body */
#define BE_RAW_MAX       8192          /* bytes; largest raw= answer (decoded) */
#define BE_PAD_MAX       (1 << 20)     /* bytes; largest pad_head */
#define BE_MID_DEFAULT   65536         /* bytes; midbody/midstall body without body_bytes */
#define BE_ACK_POLL_MS   2             /* midbody: how often to look for the peer's ACK */
#define BE_ACK_POLLS     1000          /* ... and how many times before resetting anyway */
#define BE_ENDLESS_STEP  65536         /* bytes queued each time an endless answer's output drains */

/* What to do with one request. */
enum be_act {
    BE_ACT_ANSWER,                     /* answer (status per settings or script) */
    BE_ACT_HANG,                       /* never answer */
    BE_ACT_RESET,                      /* RST the connection */
    BE_ACT_CLOSE,                      /* FIN without an answer */
    BE_ACT_GARBAGE,                    /* non-HTTP bytes, then FIN */
    BE_ACT_MIDBODY,                    /* head, half the body, RST once acknowledged */
    BE_ACT_MIDSTALL,                   /* head, half the body, then nothing */
    BE_ACT_MIDCLOSE,                   /* head, half the body, graceful close */
    BE_ACT_ENDLESS,                    /* head, then body bytes for ever (or 1 GiB) */
    BE_ACT_RAW,                        /* the raw= bytes exactly; never a mode= value */
    BE_ACT__COUNT
};

/* mode= values and script item names; must follow enum be_act's order */
static const char *const be_act_names[BE_ACT__COUNT] = {
    "normal", "stall", "reset", "close", "garbage", "midbody", "midstall", "midclose", "endless",
    "raw",
};

/* One script item: <count> requests get <act>. */
struct be_step {
    enum be_act act;
    int status;                        /* ANSWER: that status; 0 = per settings */
    int delay_ms;                      /* >= 0 replaces delay_ms; -1 = settings */
    bool per_settings;                 /* delayN: act per the settings after waiting */
    unsigned count;                    /* remaining uses, >= 1 while queued */
};

/* Behaviour knobs; copied whole on /__backend/set so a bad key changes nothing. */
struct be_settings {
    double error_rate;                 /* [0,1] */
    int error_status;                  /* 200..599 */
    int delay_ms;                      /* 0..BE_DELAY_MAX_MS */
    enum be_act mode;
    bool is_healthy;
    bool is_chunked;
    long long body_bytes;              /* -1: body is "NAME\n" */
    size_t pad_head;                   /* bytes of X-Pad filler, 0..BE_PAD_MAX; 0: none */
    int keepalive_ms;                  /* idle keep-alive time, 0..BE_DELAY_MAX_MS; 0: none */
    unsigned char raw[BE_RAW_MAX];     /* raw= answer bytes (binary, not NUL-terminated) */
    size_t raw_len;                    /* bytes in raw[]; 0: raw answers off */
    bool is_raw_close;                 /* close after a raw answer */
    bool is_stamp;                     /* normal answers carry a timestamp and a request id */
    bool is_close_notify;              /* TLS: close_notify before every close */
    bool is_close_rst;                 /* graceful closes are RSTs once acknowledged */
    struct be_step script[BE_SCRIPT_MAX];
    unsigned script_len;               /* items in script[] */
    unsigned script_pos;               /* next item; == script_len when done */
};

struct be_stats {
    uint64_t requests;                 /* complete requests (head + body) */
    uint64_t heads;                    /* request heads parsed */
    uint64_t bodies;                   /* complete requests with a non-empty body */
    uint64_t body_bytes;               /* decoded request body bytes */
    uint64_t connections;              /* accepted connections */
    uint64_t request_connections;      /* connections that carried a counted request head */
    uint64_t aborted;                  /* requests whose peer left before the full answer */
    uint64_t tls_handshakes;           /* TLS handshakes completed */
    uint64_t tls_resumed;              /* ... of which resumed a session */
    uint64_t tls_records;              /* application data records received over TLS */
    char *last_head;                   /* owned; NULL before the first request */
};

struct be_conn;

struct be_srv {
    const char *name;                  /* borrowed from argv */
    size_t name_len;
    bool is_tcp;
    uint64_t seed;                     /* from --seed */
    uint64_t rng;                      /* splitmix64 state */
    uint64_t next_conn_id;
    uint64_t stats_gen;                /* >= 1, bumped when the counters are zeroed */
    uint64_t stamps;                   /* raw answers' "@@@@@@@@@@" and stamp=1
                                        * answers written so far */
    uint64_t name_hash;                /* FNV-1a of the name: the stamps' seed */
    struct be_settings set;
    struct be_stats st;
    struct event_base *base;           /* owned */
    struct evconnlistener *lis;        /* owned */
    struct evconnlistener *ctl_lis;    /* owned: --control (always plain), or NULL */
    struct event *ev_term, *ev_int;    /* owned */
    struct be_conn *conns;             /* owned list of live connections */
    SSL_CTX *tls;                      /* owned; NULL: plain */
    FILE *record;                      /* owned: --record, or NULL */
};

/* HTTP connection states. Reads are processed only in HEAD and BODY_*. */
enum be_cs {
    BE_CS_HEAD,                        /* waiting for a request head */
    BE_CS_BODY_CL,                     /* reading a Content-Length body */
    BE_CS_BODY_CHUNKED,                /* reading a chunked body */
    BE_CS_WAIT,                        /* request read, delay timer running */
    BE_CS_STALL,                       /* never answering; input discarded */
    BE_CS_ENDLESS,                     /* writing an endless answer; input discarded */
    BE_CS_RESET_WAIT,                  /* midbody: output drains, peer ACKs, then RST */
    BE_CS_FLUSH,                       /* closing: output drains, then SHUT_WR */
    BE_CS_LINGER,                      /* write side shut; discard input until EOF */
    BE_CS_TCP,                         /* TCP echo mode */
};

enum be_chunk { BE_CK_SIZE, BE_CK_DATA, BE_CK_DATA_CRLF, BE_CK_TRAILER };

enum be_parse { BE_PARSE_DONE, BE_PARSE_AGAIN, BE_PARSE_BAD };

struct be_conn {
    struct be_srv *srv;                /* borrowed */
    struct be_conn *prev, *next;       /* in srv->conns */
    struct bufferevent *bev;           /* owned, closes the fd */
    struct event *timer;               /* owned: delay, then linger timeout */
    uint64_t id;
    enum be_cs state;
    bool has_peer_eof;                 /* client finished sending */
    uint64_t req_conn_gen;             /* srv->stats_gen when counted in
                                        * st.request_connections; 0: not yet */
    /* the request being read or answered */
    char *head;                        /* owned, NUL-terminated head bytes */
    size_t head_len;
    char *target;                      /* owned request-target */
    bool is_head_method;
    bool keep_alive;                   /* connection stays open after the answer */
    bool is_counted;                   /* not /healthz, not /__backend/ */
    bool wants_ws;                     /* Upgrade: websocket + Connection: upgrade */
    bool is_answering;                 /* a counted request was dispatched and its
                                        * answer is not completely written yet:
                                        * the peer leaving now aborts it */
    unsigned ack_polls;                /* RESET_WAIT: ACK checks done */
    uint64_t endless_left;             /* ENDLESS: body bytes still to write;
                                        * UINT64_MAX when chunked (never ends) */
    bool is_endless_chunked;
    char stamp_head[96];               /* stamp=1: header lines write_head() adds
                                        * once ("" none) */
    bool is_notified;                  /* TLS: close_notify sent */
    struct evbuffer *body;             /* owned; raw body bytes, kept for /echo */
    bool keep_body;
    uint64_t body_left;                /* bytes left in the body or current chunk */
    uint64_t body_decoded;             /* decoded body bytes so far */
    enum be_chunk ck;
    unsigned trailers;
    /* the decision waiting for the delay timer */
    enum be_act act;
    int status;
};

/* ---- small helpers --------------------------------------------------- */

static uint64_t
rng_next(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);

    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static void
settings_default(struct be_settings *s)
{
    memset(s, 0, sizeof(*s));
    s->error_rate = 0.0;
    s->error_status = 500;
    s->delay_ms = 0;
    s->mode = BE_ACT_ANSWER;
    s->is_healthy = true;
    s->is_chunked = false;
    s->body_bytes = -1;
    s->is_close_notify = true;
}

static void
stats_zero(struct be_stats *st)
{
    free(st->last_head);
    memset(st, 0, sizeof(*st));
}

static const char *
reason_phrase(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default:  return "Status";
    }
}

static bool
is_tchar(unsigned char ch)
{
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
        (ch >= '0' && ch <= '9'))
        return true;
    return ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

/* Parses all of [<s>, <s>+<n>) as a decimal number <= <max>. */
static int
parse_dec(const char *s, size_t n, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    size_t i;

    if (n == 0 || n > 19)
        return -1;
    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > max)
        return -1;
    *out = v;
    return 0;
}

/* Case-insensitive: is the comma-separated list [<v>, <v>+<n>) holding <tok>? */
static bool
list_has_token(const char *v, size_t n, const char *tok)
{
    size_t i = 0, tl = strlen(tok);

    while (i < n) {
        size_t start, end;

        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        start = i;
        while (i < n && v[i] != ',')
            i++;
        end = i;
        while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t'))
            end--;
        if (end - start == tl && strncasecmp(v + start, tok, tl) == 0)
            return true;
    }
    return false;
}

/* ---- connection lifetime --------------------------------------------- */

static void
conn_clear_request(struct be_conn *c)
{
    free(c->head);
    c->head = NULL;
    c->head_len = 0;
    free(c->target);
    c->target = NULL;
    if (c->body != NULL)
        evbuffer_drain(c->body, evbuffer_get_length(c->body));
    c->body_left = 0;
    c->body_decoded = 0;
    c->trailers = 0;
    c->keep_body = false;
    c->is_counted = false;
    c->is_head_method = false;
    c->wants_ws = false;
}

/* Frees <c> and closes its socket. The caller must not touch <c> after. */
static void
conn_free(struct be_conn *c)
{
    struct be_srv *s = c->srv;

    if (c->is_answering)
        s->st.aborted++;               /* the peer left before the whole answer */
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    conn_clear_request(c);
    if (c->body != NULL)
        evbuffer_free(c->body);
    if (c->timer != NULL)
        event_free(c->timer);
    if (c->bev != NULL)
        bufferevent_free(c->bev);      /* CLOSE_ON_FREE: closes the fd */
    free(c);
}

/* Closes with an RST: SO_LINGER 0 makes close() abort the connection. */
static void
conn_reset(struct be_conn *c)
{
    struct linger lg = { .l_onoff = 1, .l_linger = 0 };
    evutil_socket_t fd = bufferevent_getfd(c->bev);

    c->is_answering = false;           /* our own doing, not the peer's */
    if (fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) != 0)
        log_at(LL_WARN, "backend", c->id, "SO_LINGER: %s", strerror(errno));
    conn_free(c);
}

/* Shuts the write side once the output is empty; frees <c> when the client
 * has finished too. Returns 0 when <c> lives on (BE_CS_LINGER), -1 when freed. */
static int reset_when_acked(struct be_conn *c);

/* TLS with close_notify=1: sends close_notify (once; the output is empty). */
static void
tls_notify(struct be_conn *c)
{
    SSL *ssl = c->srv->tls != NULL ? bufferevent_openssl_get_ssl(c->bev) : NULL;

    if (ssl != NULL && c->srv->set.is_close_notify && !c->is_notified) {
        c->is_notified = true;
        ERR_clear_error();
        (void)SSL_shutdown(ssl);
    }
}

static int
conn_finish_close(struct be_conn *c)
{
    tls_notify(c);
    if (c->srv->set.is_close_rst) {
        c->state = BE_CS_RESET_WAIT;   /* RST once every byte is acknowledged */
        c->ack_polls = 0;
        return reset_when_acked(c);
    }
    shutdown(bufferevent_getfd(c->bev), SHUT_WR);
    if (c->has_peer_eof) {
        conn_free(c);
        return -1;
    }
    c->state = BE_CS_LINGER;
    return 0;
}

/* Graceful close: flush what is queued, shut the write side, then read and
 * discard until the client closes (or BE_LINGER_MS pass), so unread pipelined
 * bytes never turn our FIN into an RST that could destroy the answer.
 * Returns 0 when <c> lives on, -1 when it was freed. */
static int
conn_begin_close(struct be_conn *c)
{
    struct timeval tv = { BE_LINGER_MS / 1000, (BE_LINGER_MS % 1000) * 1000 };
    int rc;

    c->state = BE_CS_FLUSH;
    event_del(c->timer);
    if (event_add(c->timer, &tv) != 0)
        log_at(LL_WARN, "backend", c->id, "event_add failed for the linger timer");
    /* after the client's EOF libevent has stopped reading: keep it so */
    rc = c->has_peer_eof ? bufferevent_enable(c->bev, EV_WRITE)
                         : bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    if (rc != 0)
        log_at(LL_WARN, "backend", c->id, "bufferevent_enable failed");
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
        return conn_finish_close(c);
    return 0;
}

/* ---- responses ------------------------------------------------------- */

/* Adds "X-Pad: " and <pad> filler bytes, then CRLF, to <out>. */
static void
add_pad(struct evbuffer *out, size_t pad)
{
    static const char filler[] =
        "pppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppp";

    if (pad == 0)
        return;
    evbuffer_add(out, "X-Pad: ", 7);
    while (pad > 0) {
        size_t n = pad < sizeof(filler) - 1 ? pad : sizeof(filler) - 1;

        evbuffer_add(out, filler, n);
        pad -= n;
    }
    evbuffer_add(out, "\r\n", 2);
}

/* Queues an answer head announcing <len> body bytes (or chunked framing
 * when <chunked>), with <pad> bytes of X-Pad filler. */
static void
write_head(struct be_conn *c, int status, const char *ctype, bool chunked,
           size_t len, size_t pad)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);

    evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nX-Backend: %s\r\n",
                        status, reason_phrase(status), ctype, c->srv->name);
    add_pad(out, pad);
    if (c->stamp_head[0] != '\0') {
        evbuffer_add(out, c->stamp_head, strlen(c->stamp_head));
        c->stamp_head[0] = '\0';
    }
    if (status == 204)
        ;                            /* RFC 9110 8.6: no Content-Length on 204 */
    else if (chunked && status != 304)
        evbuffer_add_printf(out, "Transfer-Encoding: chunked\r\n");
    else
        evbuffer_add_printf(out, "Content-Length: %zu\r\n", len);
    evbuffer_add_printf(out, "Connection: %s\r\n\r\n",
                        c->keep_alive ? "keep-alive" : "close");
}

/* Moves all of <body> to the output, in chunks of BE_CHUNK_OUT when
 * <chunked> (without the last chunk). */
static void
write_body(struct be_conn *c, struct evbuffer *body, bool chunked)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);

    if (!chunked) {
        evbuffer_add_buffer(out, body);
        return;
    }
    while (evbuffer_get_length(body) > 0) {
        size_t n = evbuffer_get_length(body);

        if (n > BE_CHUNK_OUT)
            n = BE_CHUNK_OUT;
        evbuffer_add_printf(out, "%zx\r\n", n);
        evbuffer_remove_buffer(body, out, n);
        evbuffer_add(out, "\r\n", 2);
    }
}

/* Queues one answer with body <body> (moved out, emptied). Chunked framing
 * when <chunked>; no body bytes for HEAD requests, 204 and 304 (a 304 keeps
 * the Content-Length of the representation, as for HEAD); <pad> as
 * write_head(). */
static void
write_response(struct be_conn *c, int status, const char *ctype,
               struct evbuffer *body, bool chunked, size_t pad)
{
    size_t len = evbuffer_get_length(body);

    write_head(c, status, ctype, chunked, len, pad);
    if (c->is_head_method || status == 204 || status == 304) {
        evbuffer_drain(body, len);
        return;
    }
    write_body(c, body, chunked);
    if (chunked)
        evbuffer_add(bufferevent_get_output(c->bev), "0\r\n\r\n", 5);
}

/* Answers a simple text body; used for control, health and errors. */
static void
write_text(struct be_conn *c, int status, const char *ctype, const char *text)
{
    struct evbuffer *b = evbuffer_new();

    if (b == NULL) {
        log_at(LL_ERR, "backend", c->id, "evbuffer_new failed");
        return;
    }
    evbuffer_add(b, text, strlen(text));
    write_response(c, status, ctype, b, false, 0);
    evbuffer_free(b);
}

static void
json_escape_into(struct evbuffer *b, const char *s)
{
    const unsigned char *p;

    evbuffer_add(b, "\"", 1);
    for (p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\')
            evbuffer_add_printf(b, "\\%c", *p);
        else if (*p == '\r')
            evbuffer_add(b, "\\r", 2);
        else if (*p == '\n')
            evbuffer_add(b, "\\n", 2);
        else if (*p == '\t')
            evbuffer_add(b, "\\t", 2);
        else if (*p < 0x20 || *p >= 0x7f)
            evbuffer_add_printf(b, "\\u%04x", *p);   /* keeps the JSON valid UTF-8 */
        else
            evbuffer_add(b, p, 1);
    }
    evbuffer_add(b, "\"", 1);
}

/* --record: one line for the request <c> just completed. */
static void
record_request(struct be_conn *c)
{
    struct evbuffer *b = evbuffer_new();
    size_t n;
    char *body;

    if (b == NULL)
        return;
    n = evbuffer_get_length(c->body);
    body = xmalloc(n + 1);
    evbuffer_copyout(c->body, body, n);
    body[n] = '\0';
    evbuffer_add_printf(b, "{\"target\":");
    json_escape_into(b, c->target);
    evbuffer_add_printf(b, ",\"head\":");
    json_escape_into(b, c->head);
    evbuffer_add_printf(b, ",\"body\":");
    json_escape_into(b, body);
    evbuffer_add_printf(b, "}\n");
    free(body);
    n = evbuffer_get_length(b);
    if (fwrite(evbuffer_pullup(b, -1), 1, n, c->srv->record) != n
        || fflush(c->srv->record) != 0)
        log_at(LL_ERR, "backend", c->id, "--record: write failed");
    evbuffer_free(b);
}

static void
answer_stats(struct be_conn *c)
{
    struct be_srv *s = c->srv;
    struct evbuffer *b = evbuffer_new();
    const struct be_conn *o;
    uint64_t open = 0;

    if (b == NULL) {
        log_at(LL_ERR, "backend", c->id, "evbuffer_new failed");
        return;
    }
    for (o = s->conns; o != NULL; o = o->next)
        if (o != c)
            open++;
    evbuffer_add_printf(b, "{\"name\":");
    json_escape_into(b, s->name);
    evbuffer_add_printf(b, ",\"requests\":%" PRIu64 ",\"heads\":%" PRIu64
                        ",\"bodies\":%" PRIu64 ",\"body_bytes\":%" PRIu64
                        ",\"connections\":%" PRIu64 ",\"request_connections\":%" PRIu64
                        ",\"open\":%" PRIu64 ",\"aborted\":%" PRIu64
                        ",\"tls_handshakes\":%" PRIu64 ",\"tls_resumed\":%" PRIu64
                        ",\"tls_records\":%" PRIu64 ",\"last_request_head\":",
                        s->st.requests, s->st.heads, s->st.bodies, s->st.body_bytes,
                        s->st.connections, s->st.request_connections, open,
                        s->st.aborted, s->st.tls_handshakes, s->st.tls_resumed,
                        s->st.tls_records);
    json_escape_into(b, s->st.last_head != NULL ? s->st.last_head : "");
    evbuffer_add_printf(b, "}\n");
    write_response(c, 200, "application/json", b, false, 0);
    evbuffer_free(b);
}

/* Appends <n> bytes of the name repeated to <b>. */
static void
add_name_pattern(struct be_srv *s, struct evbuffer *b, long long n)
{
    while (n > 0) {
        size_t k = s->name_len < (size_t)n ? s->name_len : (size_t)n;

        evbuffer_add(b, s->name, k);
        n -= (long long)k;
    }
}

/* The answer to a counted request: echo, pattern or name body. */
static void
answer_normal(struct be_conn *c, int status)
{
    struct be_srv *s = c->srv;
    struct evbuffer *b = evbuffer_new();

    if (b == NULL) {
        log_at(LL_ERR, "backend", c->id, "evbuffer_new failed");
        return;
    }
    if (c->keep_body) {
        evbuffer_add(b, c->head, c->head_len);
        evbuffer_add_buffer(b, c->body);
    } else if (s->set.is_stamp) {
        struct timespec ts;
        uint64_t id = s->name_hash + ++s->stamps;
        long long ms;

        clock_gettime(CLOCK_REALTIME, &ts);
        ms = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
        id = rng_next(&id);
        snprintf(c->stamp_head, sizeof(c->stamp_head),
                 "X-Request-Id: %016" PRIx64 "\r\nX-Timestamp: %lld\r\n", id, ms);
        evbuffer_add_printf(b, "{\"request_id\":\"%016" PRIx64 "\",\"ts\":%lld,"
                            "\"data\":{\"v\":1,\"items\":[1,2,3]}}\n", id, ms);
        write_response(c, status, "application/json", b, s->set.is_chunked, s->set.pad_head);
        evbuffer_free(b);
        return;
    } else if (s->set.body_bytes >= 0) {
        add_name_pattern(s, b, s->set.body_bytes);
    } else {
        evbuffer_add_printf(b, "%s\n", s->name);
    }
    write_response(c, status, "text/plain", b, s->set.is_chunked, s->set.pad_head);
    evbuffer_free(b);
}

/* midbody / midstall: a head announcing body_bytes (BE_MID_DEFAULT when
 * unset), then half of them; never the end of the body. */
static void
answer_partial(struct be_conn *c, int status)
{
    struct be_srv *s = c->srv;
    long long total = s->set.body_bytes >= 0 ? s->set.body_bytes : BE_MID_DEFAULT;
    struct evbuffer *b;

    write_head(c, status, "text/plain", s->set.is_chunked, (size_t)total, s->set.pad_head);
    if (c->is_head_method)
        return;
    if ((b = evbuffer_new()) == NULL) {
        log_at(LL_ERR, "backend", c->id, "evbuffer_new failed");
        return;
    }
    add_name_pattern(s, b, total / 2);
    write_body(c, b, s->set.is_chunked);
    evbuffer_free(b);
}

/* endless: queues the next BE_ENDLESS_STEP bytes of the body (on_http_write
 * calls again once they are out); at the end of a Content-Length body the
 * connection reads its next request. Returns 0 when <c> lives on, -1 when
 * it was freed. */
static int
endless_more(struct be_conn *c)
{
    struct evbuffer *b;
    uint64_t n = c->endless_left < BE_ENDLESS_STEP ? c->endless_left : BE_ENDLESS_STEP;

    if (n == 0 || (b = evbuffer_new()) == NULL) {
        c->is_answering = false;
        c->state = BE_CS_HEAD;
        if (!c->keep_alive)
            return conn_begin_close(c);
        return 0;
    }
    add_name_pattern(c->srv, b, (long long)n);
    write_body(c, b, c->is_endless_chunked);
    evbuffer_free(b);
    if (c->endless_left != UINT64_MAX)
        c->endless_left -= n;
    return 0;
}

/* endless: the head, then the first bytes of a body that does not end
 * (chunked) or ends only after body_bytes (1 GiB when unset); <c> is then
 * in BE_CS_ENDLESS. To a HEAD request the head alone (the state unchanged). */
static void
answer_endless(struct be_conn *c, int status)
{
    struct be_srv *s = c->srv;
    uint64_t total = s->set.body_bytes >= 0 ? (uint64_t)s->set.body_bytes : BE_BODY_MAX;

    write_head(c, status, "text/plain", s->set.is_chunked, (size_t)total, s->set.pad_head);
    if (c->is_head_method || total == 0)
        return;
    c->is_endless_chunked = s->set.is_chunked;
    c->endless_left = s->set.is_chunked ? UINT64_MAX : total;
    c->state = BE_CS_ENDLESS;
    (void)endless_more(c);             /* queues bytes: never frees <c> */
}

/* ---- /__backend/set -------------------------------------------------- */

/* Decodes %XX (exactly two hex digits) and '+' from [<s>, <s>+<n>) into
 * <out> (size <cap>), NUL-terminated; the decoded length (which may hold
 * NULs) goes to *<outlen> when not NULL. 0, or -1 when malformed or too long. */
static int
url_decode(const char *s, size_t n, char *out, size_t cap, size_t *outlen)
{
    size_t i, o = 0;

    for (i = 0; i < n; i++) {
        char ch = s[i];

        if (ch == '%') {
            int hi, lo;

            if (i + 2 >= n)
                return -1;
            hi = text_hex_value(s[i + 1]);
            lo = text_hex_value(s[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            ch = (char)(hi * 16 + lo);
            i += 2;
        } else if (ch == '+') {
            ch = ' ';
        }
        if (o + 1 >= cap)
            return -1;
        out[o++] = ch;
    }
    out[o] = '\0';
    if (outlen != NULL)
        *outlen = o;
    return 0;
}

/* A plain decimal (digits only, no sign or spaces) in [<lo>, <hi>]. */
static int
parse_int_value(const char *v, long long lo, long long hi, long long *out)
{
    char *end;
    long long x;

    if (*v < '0' || *v > '9')
        return -1;
    errno = 0;
    x = strtoll(v, &end, 10);
    if (*end != '\0' || errno != 0 || x < lo || x > hi)
        return -1;
    *out = x;
    return 0;
}

/* Parses "200x8,500x3,hang,delay200x2" into <set>'s script. */
static int
parse_script(const char *v, struct be_settings *set, char *err, size_t errlen)
{
    const char *p = v;
    unsigned n = 0;

    while (*p != '\0') {
        struct be_step st = { .act = BE_ACT_ANSWER, .status = 0, .delay_ms = -1,
                              .per_settings = false, .count = 1 };
        const char *end = strchr(p, ',');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        char item[64];
        char *x, *num_end;
        long long num;

        if (len == 0 || len >= sizeof(item)) {
            snprintf(err, errlen, "script: empty or overlong item");
            return -1;
        }
        if (n == BE_SCRIPT_MAX) {
            snprintf(err, errlen, "script: more than %d items", BE_SCRIPT_MAX);
            return -1;
        }
        memcpy(item, p, len);
        item[len] = '\0';
        x = strrchr(item, 'x');
        if (x != NULL) {
            if (parse_int_value(x + 1, 1, 1000000, &num) != 0) {
                snprintf(err, errlen, "script: bad count in '%s'", item);
                return -1;
            }
            st.count = (unsigned)num;
            *x = '\0';
        }
        if (strcmp(item, "hang") == 0) {
            st.act = BE_ACT_HANG;
        } else if (strcmp(item, "reset") == 0) {
            st.act = BE_ACT_RESET;
        } else if (strcmp(item, "close") == 0) {
            st.act = BE_ACT_CLOSE;
        } else if (strcmp(item, "garbage") == 0) {
            st.act = BE_ACT_GARBAGE;
        } else if (strcmp(item, "midbody") == 0) {
            st.act = BE_ACT_MIDBODY;
        } else if (strcmp(item, "midstall") == 0) {
            st.act = BE_ACT_MIDSTALL;
        } else if (strcmp(item, "midclose") == 0) {
            st.act = BE_ACT_MIDCLOSE;
        } else if (strcmp(item, "endless") == 0) {
            st.act = BE_ACT_ENDLESS;
        } else if (strcmp(item, "raw") == 0) {
            st.act = BE_ACT_RAW;
        } else if (strncmp(item, "delay", 5) == 0) {
            if (parse_int_value(item + 5, 0, BE_DELAY_MAX_MS, &num) != 0) {
                snprintf(err, errlen, "script: bad delay in '%s'", item);
                return -1;
            }
            st.delay_ms = (int)num;
            st.per_settings = true;
        } else {
            errno = 0;
            num = strtoll(item, &num_end, 10);
            if (item[0] < '0' || item[0] > '9' || *num_end != '\0' ||
                num < 200 || num > 599) {
                snprintf(err, errlen, "script: unknown item '%s'", item);
                return -1;
            }
            st.status = (int)num;
        }
        set->script[n++] = st;
        p += len;
        if (*p == ',' && *++p == '\0') {
            snprintf(err, errlen, "script: empty item at the end");
            return -1;
        }
    }
    set->script_len = n;
    set->script_pos = 0;
    return 0;
}

/* Applies the query <q> to a copy of the settings and commits it only when
 * every key is valid. Returns 0, or -1 with <err> set. */
static int
control_set(struct be_srv *s, const char *q, char *err, size_t errlen)
{
    struct be_settings n = s->set;
    bool zero = false, reseed = false;
    uint64_t seed = s->seed;
    const char *p = q;

    while (p != NULL && *p != '\0') {
        const char *amp = strchr(p, '&');
        size_t len = amp != NULL ? (size_t)(amp - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        char key[32], val[BE_RAW_MAX + 1];
        size_t klen = 0, vlen = 0;
        long long num;

        if (len == 0)
            goto next;
        if (eq == NULL ||
            url_decode(p, (size_t)(eq - p), key, sizeof(key), &klen) != 0 ||
            url_decode(eq + 1, len - (size_t)(eq - p) - 1, val, sizeof(val), &vlen) != 0) {
            snprintf(err, errlen, "malformed or overlong query item '%.*s'",
                     (int)(len < 60 ? len : 60), p);
            return -1;
        }
        /* only raw= may carry NUL bytes */
        if (strlen(key) != klen || (strcmp(key, "raw") != 0 && strlen(val) != vlen)) {
            snprintf(err, errlen, "NUL byte in query item '%.*s'",
                     (int)(len < 60 ? len : 60), p);
            return -1;
        }
        if (strcmp(key, "error_rate") == 0) {
            char *end;
            double d;

            errno = 0;
            d = strtod(val, &end);
            if (val[0] < '0' || val[0] > '9' || *end != '\0' || errno != 0 ||
                !(d >= 0.0 && d <= 1.0)) {
                snprintf(err, errlen, "error_rate must be in [0,1], got '%.40s'", val);
                return -1;
            }
            n.error_rate = d;
        } else if (strcmp(key, "status") == 0) {
            if (parse_int_value(val, 200, 599, &num) != 0) {
                snprintf(err, errlen, "status must be 200..599, got '%.40s'", val);
                return -1;
            }
            n.error_status = (int)num;
        } else if (strcmp(key, "delay_ms") == 0) {
            if (parse_int_value(val, 0, BE_DELAY_MAX_MS, &num) != 0) {
                snprintf(err, errlen, "delay_ms must be 0..%d, got '%.40s'",
                         BE_DELAY_MAX_MS, val);
                return -1;
            }
            n.delay_ms = (int)num;
        } else if (strcmp(key, "mode") == 0) {
            int a;

            for (a = 0; a < BE_ACT_RAW; a++)   /* raw is set by raw=, not mode= */
                if (strcmp(val, be_act_names[a]) == 0)
                    break;
            if (a == BE_ACT_RAW) {
                snprintf(err, errlen, "mode must be normal|reset|stall|close|garbage|"
                         "midbody|midstall|midclose|endless, got '%.40s'", val);
                return -1;
            }
            n.mode = (enum be_act)a;
        } else if (strcmp(key, "healthy") == 0 || strcmp(key, "chunked") == 0 ||
                   strcmp(key, "reset") == 0 || strcmp(key, "raw_close") == 0 ||
                   strcmp(key, "close_notify") == 0 || strcmp(key, "close_rst") == 0 ||
                   strcmp(key, "stamp") == 0) {
            if (parse_int_value(val, 0, 1, &num) != 0) {
                snprintf(err, errlen, "%s must be 0 or 1, got '%.40s'", key, val);
                return -1;
            }
            if (strcmp(key, "healthy") == 0) {
                n.is_healthy = num == 1;
            } else if (strcmp(key, "chunked") == 0) {
                n.is_chunked = num == 1;
            } else if (strcmp(key, "raw_close") == 0) {
                n.is_raw_close = num == 1;
            } else if (strcmp(key, "close_notify") == 0) {
                n.is_close_notify = num == 1;
            } else if (strcmp(key, "close_rst") == 0) {
                n.is_close_rst = num == 1;
            } else if (strcmp(key, "stamp") == 0) {
                n.is_stamp = num == 1;
            } else if (num == 1) {
                settings_default(&n);
                zero = true;
                reseed = true;
                seed = s->seed;
            }
        } else if (strcmp(key, "body_bytes") == 0) {
            if (parse_int_value(val, 0, BE_BODY_MAX, &num) != 0) {
                snprintf(err, errlen, "body_bytes must be 0..%lld, got '%.40s'",
                         BE_BODY_MAX, val);
                return -1;
            }
            n.body_bytes = num;
        } else if (strcmp(key, "keepalive_ms") == 0) {
            if (parse_int_value(val, 0, BE_DELAY_MAX_MS, &num) != 0) {
                snprintf(err, errlen, "keepalive_ms must be 0..%d, got '%.40s'",
                         BE_DELAY_MAX_MS, val);
                return -1;
            }
            n.keepalive_ms = (int)num;
        } else if (strcmp(key, "pad_head") == 0) {
            if (parse_int_value(val, 0, BE_PAD_MAX, &num) != 0) {
                snprintf(err, errlen, "pad_head must be 0..%d, got '%.40s'", BE_PAD_MAX, val);
                return -1;
            }
            n.pad_head = (size_t)num;
        } else if (strcmp(key, "raw") == 0) {
            if (vlen > BE_RAW_MAX) {
                snprintf(err, errlen, "raw: more than %d bytes", BE_RAW_MAX);
                return -1;
            }
            memcpy(n.raw, val, vlen);
            n.raw_len = vlen;
        } else if (strcmp(key, "seed") == 0) {
            char *end;

            errno = 0;
            seed = strtoull(val, &end, 10);
            if (val[0] < '0' || val[0] > '9' || *end != '\0' || errno != 0) {
                snprintf(err, errlen, "seed must be an unsigned integer, got '%.40s'", val);
                return -1;
            }
            reseed = true;
        } else if (strcmp(key, "script") == 0) {
            if (parse_script(val, &n, err, errlen) != 0)
                return -1;
        } else {
            snprintf(err, errlen, "unknown key '%s'", key);
            return -1;
        }
next:
        p = amp != NULL ? amp + 1 : NULL;
    }
    if (n.raw_len == 0) {
        unsigned i;

        for (i = n.script_pos; i < n.script_len; i++) {
            if (n.script[i].act == BE_ACT_RAW) {
                snprintf(err, errlen, "script: item raw needs raw= bytes");
                return -1;
            }
        }
    }
    s->set = n;
    if (zero) {
        stats_zero(&s->st);
        s->stats_gen++;
    }
    if (reseed)
        s->rng = seed;
    return 0;
}

/* ---- request handling ------------------------------------------------ */

static int process(struct be_conn *c);
static void on_tcp_read(struct bufferevent *bev, void *arg);
static void on_tcp_write(struct bufferevent *bev, void *arg);
static void on_tcp_event(struct bufferevent *bev, short what, void *arg);

/* midbody, once the output is empty: RST as soon as the peer's kernel has
 * acknowledged every byte (so the half body is not lost with the reset),
 * polling every BE_ACK_POLL_MS, at most BE_ACK_POLLS times. Returns 0 when
 * <c> lives on, -1 when it was freed. */
static int
reset_when_acked(struct be_conn *c)
{
    int unacked = 0;

    if (evbuffer_get_length(bufferevent_get_output(c->bev)) > 0)
        return 0;                      /* on_http_write() calls again */
    tls_notify(c);
    if (ioctl(bufferevent_getfd(c->bev), TIOCOUTQ, &unacked) == 0 && unacked > 0 &&
        c->ack_polls++ < BE_ACK_POLLS) {
        struct timeval tv = { 0, BE_ACK_POLL_MS * 1000 };

        if (event_add(c->timer, &tv) == 0)
            return 0;
        log_at(LL_WARN, "backend", c->id, "event_add failed for the ACK poll");
    }
    conn_reset(c);
    return -1;
}

/* /ws with Upgrade: websocket: 101, then the connection echoes like --tcp
 * (without the name line). Returns 0 when <c> lives on, -1 when freed. */
static int
upgrade_ws(struct be_conn *c)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);

    evbuffer_add_printf(out, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                        "Connection: Upgrade\r\nX-Backend: %s\r\n\r\n", c->srv->name);
    conn_clear_request(c);
    c->is_answering = false;
    c->state = BE_CS_TCP;
    bufferevent_setcb(c->bev, on_tcp_read, on_tcp_write, on_tcp_event, c);
    /* bytes sent right behind the request are tunnel data already */
    on_tcp_read(c->bev, c);
    return 0;
}


/* The raw= answer bytes, each "@@@@@@@@@@" written as ten digits of this
 * backend's next stamp (the name's hash and the count of stamps). */
static void
write_raw(struct be_srv *s, struct evbuffer *out)
{
    const unsigned char *p = s->set.raw, *end = p + s->set.raw_len, *at;
    uint64_t h = 1469598103934665603ull;
    size_t i;

    for (i = 0; i < s->name_len; i++)
        h = (h ^ (unsigned char)s->name[i]) * 1099511628211ull;
    while (p < end) {
        for (at = p; at + 10 <= end && memcmp(at, "@@@@@@@@@@", 10) != 0; at++)
            ;
        if (at + 10 > end) {
            evbuffer_add(out, p, (size_t)(end - p));
            break;
        }
        evbuffer_add(out, p, (size_t)(at - p));
        evbuffer_add_printf(out, "%010" PRIu64, (uint64_t)((h + ++s->stamps * 7919u) % 10000000000u));
        p = at + 10;
    }
}

/* Carries out the decision stored in c->act / c->status. Returns 0 when <c>
 * lives on (its state says what next), -1 when it was freed. */
static int
perform(struct be_conn *c)
{
    struct be_srv *s = c->srv;

    switch (c->act) {
    case BE_ACT_ANSWER:
        answer_normal(c, c->status);
        break;
    case BE_ACT_HANG:
        c->state = BE_CS_STALL;        /* is_answering stays: the answer never comes */
        conn_clear_request(c);
        return 0;
    case BE_ACT_RESET:
        conn_reset(c);
        return -1;
    case BE_ACT_CLOSE:
        c->is_answering = false;
        conn_clear_request(c);
        return conn_begin_close(c);
    case BE_ACT_GARBAGE:
        c->is_answering = false;
        evbuffer_add_printf(bufferevent_get_output(c->bev),
                            "%s says \x01\x02 this is not HTTP \xff\xfe\r\n\r\n",
                            c->srv->name);
        conn_clear_request(c);
        return conn_begin_close(c);
    case BE_ACT_MIDBODY:
        answer_partial(c, c->status);
        conn_clear_request(c);
        c->is_answering = false;       /* the failure is ours */
        c->state = BE_CS_RESET_WAIT;
        c->ack_polls = 0;
        return reset_when_acked(c);
    case BE_ACT_MIDSTALL:
        answer_partial(c, c->status);
        conn_clear_request(c);
        c->state = BE_CS_STALL;        /* is_answering stays: the body never ends */
        return 0;
    case BE_ACT_MIDCLOSE:
        answer_partial(c, c->status);
        conn_clear_request(c);
        c->is_answering = false;       /* the failure is ours */
        return conn_begin_close(c);
    case BE_ACT_ENDLESS:
        answer_endless(c, c->status);
        if (c->state == BE_CS_ENDLESS) {
            conn_clear_request(c);     /* is_answering stays until the body's end */
            return 0;
        }
        break;                         /* HEAD: the head was the whole answer */
    case BE_ACT_RAW:
        write_raw(s, bufferevent_get_output(c->bev));
        if (s->set.is_raw_close)
            c->keep_alive = false;
        break;
    case BE_ACT__COUNT:
        break;
    }
    conn_clear_request(c);
    if (!c->keep_alive)
        return conn_begin_close(c);
    c->state = BE_CS_HEAD;
    return 0;
}

/* A complete request has been read: count it and decide. Returns as perform(). */
static int
dispatch(struct be_conn *c)
{
    struct be_srv *s = c->srv;
    const char *q = strchr(c->target, '?');
    size_t plen = q != NULL ? (size_t)(q - c->target) : strlen(c->target);
    int delay_ms;

    if (!c->is_counted) {
        if (plen == 14 && memcmp(c->target, "/__backend/set", 14) == 0) {
            char err[256];

            if (control_set(s, q != NULL ? q + 1 : "", err, sizeof(err)) == 0) {
                write_text(c, 200, "text/plain", "ok\n");
            } else {
                strncat(err, "\n", sizeof(err) - strlen(err) - 1);
                write_text(c, 400, "text/plain", err);
            }
        } else if (plen == 16 && memcmp(c->target, "/__backend/stats", 16) == 0) {
            answer_stats(c);
        } else if (plen == 8 && memcmp(c->target, "/healthz", 8) == 0) {
            if (s->set.is_healthy)
                write_text(c, 200, "text/plain", "ok\n");
            else
                write_text(c, 503, "text/plain", "unhealthy\n");
        } else {
            write_text(c, 404, "text/plain", "unknown /__backend/ path\n");
        }
        c->act = BE_ACT__COUNT;        /* answered already */
        return perform(c);
    }

    s->st.requests++;
    if (c->body_decoded > 0)
        s->st.bodies++;
    s->st.body_bytes += c->body_decoded;
    free(s->st.last_head);
    s->st.last_head = xstrdup(c->head);
    if (s->record != NULL)
        record_request(c);
    c->is_answering = true;
    if (c->wants_ws && plen == 3 && memcmp(c->target, "/ws", 3) == 0)
        return upgrade_ws(c);

    c->act = s->set.mode;
    if (c->act == BE_ACT_ANSWER && s->set.raw_len > 0)
        c->act = BE_ACT_RAW;
    c->status = 0;                     /* 0: drawn from the settings below */
    delay_ms = s->set.delay_ms;
    if (s->set.script_pos < s->set.script_len) {
        struct be_step *st = &s->set.script[s->set.script_pos];

        if (!st->per_settings) {
            c->act = st->act;
            c->status = st->status;
        }
        if (st->delay_ms >= 0)
            delay_ms = st->delay_ms;
        if (--st->count == 0)
            s->set.script_pos++;
    }
    if (c->act != BE_ACT_ANSWER && c->status == 0)
        c->status = 200;               /* midbody, midstall */
    if (c->act == BE_ACT_ANSWER && c->status == 0) {
        c->status = 200;
        /* draw only when errors are asked for, so a seed gives the same
         * sequence whatever requests preceded the error_rate setting */
        if (s->set.error_rate > 0.0) {
            double u = (double)(rng_next(&s->rng) >> 11) * (1.0 / 9007199254740992.0);

            if (u < s->set.error_rate)
                c->status = s->set.error_status;
        }
    }
    if (delay_ms > 0) {
        struct timeval tv = { delay_ms / 1000, (delay_ms % 1000) * 1000 };

        c->state = BE_CS_WAIT;
        if (event_add(c->timer, &tv) != 0) {
            log_at(LL_ERR, "backend", c->id, "event_add failed for the delay timer");
            c->is_answering = false;
            conn_free(c);
            return -1;
        }
        return 0;
    }
    return perform(c);
}

/* Parses the head in c->head. Returns 0, or the status to refuse it with. */
static int
parse_head(struct be_conn *c, bool *chunked, bool *has_cl, uint64_t *cl)
{
    const char *p = c->head, *eol, *sp1, *sp2;
    bool is_11, conn_close = false, conn_keep = false, conn_upgrade = false, up_ws = false;

    *chunked = false;
    *has_cl = false;
    *cl = 0;
    eol = strstr(p, "\r\n");
    sp1 = memchr(p, ' ', (size_t)(eol - p));
    if (sp1 == NULL || sp1 == p)
        return 400;
    sp2 = memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1));
    if (sp2 == NULL || sp2 == sp1 + 1)
        return 400;
    for (const char *m = p; m < sp1; m++)
        if (!is_tchar((unsigned char)*m))
            return 400;
    for (const char *t = sp1 + 1; t < sp2; t++)
        if ((unsigned char)*t <= 0x20 || (unsigned char)*t == 0x7f)
            return 400;
    if (eol - sp2 - 1 != 8 || memcmp(sp2 + 1, "HTTP/", 5) != 0 ||
        sp2[6] < '0' || sp2[6] > '9' || sp2[7] != '.' || sp2[8] < '0' || sp2[8] > '9')
        return 400;
    if (sp2[6] != '1' || (sp2[8] != '0' && sp2[8] != '1'))
        return 505;
    is_11 = sp2[8] == '1';
    c->is_head_method = sp1 - p == 4 && memcmp(p, "HEAD", 4) == 0;
    c->target = xstrndup(sp1 + 1, (size_t)(sp2 - sp1 - 1));

    for (p = eol + 2; ; p = eol + 2) {
        const char *colon, *v, *ve;
        size_t nlen;

        eol = strstr(p, "\r\n");
        if (eol == p)
            break;                     /* the empty line ending the head */
        if (*p == ' ' || *p == '\t')
            return 400;                /* obs-fold */
        colon = memchr(p, ':', (size_t)(eol - p));
        if (colon == NULL || colon == p)
            return 400;
        for (const char *n = p; n < colon; n++)
            if (!is_tchar((unsigned char)*n))
                return 400;            /* includes space before the colon */
        nlen = (size_t)(colon - p);
        for (v = colon + 1; v < eol && (*v == ' ' || *v == '\t'); v++)
            ;
        for (ve = eol; ve > v && (ve[-1] == ' ' || ve[-1] == '\t'); ve--)
            ;
        for (const char *t = v; t < ve; t++)
            if (((unsigned char)*t < 0x20 && *t != '\t') || *t == 0x7f)
                return 400;            /* bare CR or LF, NUL, other controls */
        if (nlen == 14 && strncasecmp(p, "Content-Length", 14) == 0) {
            uint64_t x;

            if (parse_dec(v, (size_t)(ve - v), BE_REQ_BODY_MAX, &x) != 0)
                return 400;
            if (*has_cl && x != *cl)
                return 400;
            *has_cl = true;
            *cl = x;
        } else if (nlen == 17 && strncasecmp(p, "Transfer-Encoding", 17) == 0) {
            if (*chunked || ve - v != 7 || strncasecmp(v, "chunked", 7) != 0)
                return 501;
            *chunked = true;
        } else if (nlen == 10 && strncasecmp(p, "Connection", 10) == 0) {
            conn_close = conn_close || list_has_token(v, (size_t)(ve - v), "close");
            conn_keep = conn_keep || list_has_token(v, (size_t)(ve - v), "keep-alive");
            conn_upgrade = conn_upgrade || list_has_token(v, (size_t)(ve - v), "upgrade");
        } else if (nlen == 7 && strncasecmp(p, "Upgrade", 7) == 0) {
            up_ws = up_ws || list_has_token(v, (size_t)(ve - v), "websocket");
        }
    }
    if (*chunked && *has_cl)
        return 400;
    c->wants_ws = conn_upgrade && up_ws;
    c->keep_alive = is_11 ? !conn_close : (conn_keep && !conn_close);
    return 0;
}

/* Reads one request head from the input. */
static enum be_parse
read_head(struct be_conn *c, int *refuse)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct evbuffer_ptr end;
    unsigned char lead[2];
    bool chunked, has_cl;
    uint64_t cl;
    size_t n;
    int st;

    /* RFC 9112 2.2: ignore empty lines before a request line */
    while (evbuffer_copyout(in, lead, 2) == 2 && lead[0] == '\r' && lead[1] == '\n')
        evbuffer_drain(in, 2);
    end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
    if (end.pos < 0) {
        if (evbuffer_get_length(in) > BE_HEAD_MAX) {
            *refuse = 431;
            return BE_PARSE_BAD;
        }
        return BE_PARSE_AGAIN;
    }
    n = (size_t)end.pos + 4;
    if (n > BE_HEAD_MAX) {
        *refuse = 431;
        return BE_PARSE_BAD;
    }
    c->head = xmalloc(n + 1);
    evbuffer_remove(in, c->head, n);
    c->head[n] = '\0';
    c->head_len = n;
    c->keep_alive = false;             /* until parsed: a refusal closes */
    if (memchr(c->head, '\0', n) != NULL) {
        *refuse = 400;
        return BE_PARSE_BAD;
    }
    if ((st = parse_head(c, &chunked, &has_cl, &cl)) != 0) {
        *refuse = st;
        return BE_PARSE_BAD;
    }
    c->is_counted = strncmp(c->target, "/__backend/", 11) != 0 &&
                    strcmp(c->target, "/healthz") != 0 &&
                    strncmp(c->target, "/healthz?", 9) != 0;
    c->keep_body = strcmp(c->target, "/echo") == 0 || strncmp(c->target, "/echo?", 6) == 0;
    if (c->is_counted) {
        c->srv->st.heads++;
        if (c->req_conn_gen != c->srv->stats_gen) {
            c->req_conn_gen = c->srv->stats_gen;
            c->srv->st.request_connections++;
        }
    }
    if (chunked) {
        c->ck = BE_CK_SIZE;
        c->state = BE_CS_BODY_CHUNKED;
    } else {
        c->body_left = cl;
        c->state = BE_CS_BODY_CL;
    }
    return BE_PARSE_DONE;
}

/* Moves up to <n> body bytes to c->body (kept for /echo) or drops them. */
static void
take_body(struct be_conn *c, size_t n)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);

    if (c->keep_body || c->srv->record != NULL)
        evbuffer_remove_buffer(in, c->body, n);
    else
        evbuffer_drain(in, n);
}

/* Reads one CRLF-terminated line of at most BE_LINE_MAX bytes into <line>
 * (which then holds it without the CRLF) and moves the raw bytes on. */
static enum be_parse
take_line(struct be_conn *c, char *line, size_t cap)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t eol_len = 0;
    struct evbuffer_ptr p = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF_STRICT);

    if (p.pos < 0)
        return evbuffer_get_length(in) > cap ? BE_PARSE_BAD : BE_PARSE_AGAIN;
    if ((size_t)p.pos >= cap)
        return BE_PARSE_BAD;
    evbuffer_copyout(in, line, (size_t)p.pos);
    line[p.pos] = '\0';
    take_body(c, (size_t)p.pos + eol_len);
    return BE_PARSE_DONE;
}

static enum be_parse
read_chunked(struct be_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    char line[BE_LINE_MAX + 1];
    enum be_parse r;

    for (;;) {
        switch (c->ck) {
        case BE_CK_SIZE: {
            uint64_t size = 0;
            size_t i;

            if ((r = take_line(c, line, BE_LINE_MAX)) != BE_PARSE_DONE)
                return r;
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
                if (size > (BE_REQ_BODY_MAX >> 4))
                    return BE_PARSE_BAD;
                size = size * 16 + (uint64_t)d;
            }
            if (i == 0)
                return BE_PARSE_BAD;
            while (line[i] == ' ' || line[i] == '\t')
                i++;
            if (line[i] != '\0' && line[i] != ';')
                return BE_PARSE_BAD;
            if (size == 0) {
                c->ck = BE_CK_TRAILER;
            } else {
                c->body_left = size;
                c->ck = BE_CK_DATA;
            }
            break;
        }
        case BE_CK_DATA: {
            size_t n = evbuffer_get_length(in);

            if (n > c->body_left)
                n = (size_t)c->body_left;
            take_body(c, n);
            c->body_left -= n;
            c->body_decoded += n;
            if (c->body_left > 0)
                return BE_PARSE_AGAIN;
            c->ck = BE_CK_DATA_CRLF;
            break;
        }
        case BE_CK_DATA_CRLF: {
            unsigned char crlf[2];

            if (evbuffer_copyout(in, crlf, 2) < 2)
                return BE_PARSE_AGAIN;
            if (crlf[0] != '\r' || crlf[1] != '\n')
                return BE_PARSE_BAD;
            take_body(c, 2);
            c->ck = BE_CK_SIZE;
            break;
        }
        case BE_CK_TRAILER:
            if ((r = take_line(c, line, BE_LINE_MAX)) != BE_PARSE_DONE)
                return r;
            if (line[0] == '\0')
                return BE_PARSE_DONE;
            if (++c->trailers > 100)
                return BE_PARSE_BAD;
            break;
        }
    }
}

/* Refuses the request being read with <status> and closes. */
static int
refuse(struct be_conn *c, int status)
{
    char text[64];

    c->keep_alive = false;
    c->is_head_method = false;
    snprintf(text, sizeof(text), "%d %s\n", status, reason_phrase(status));
    write_text(c, status, "text/plain", text);
    conn_clear_request(c);
    return conn_begin_close(c);
}

/* Waiting for a request head with nothing received: the keep-alive
 * timeout (keepalive_ms) starts. */
static void
keepalive_arm(struct be_conn *c)
{
    int ms = c->srv->set.keepalive_ms;
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

    if (event_add(c->timer, &tv) != 0)
        log_at(LL_WARN, "backend", c->id, "event_add failed for the keep-alive timer");
}

/* Reads and handles as many requests as the input holds, one at a time.
 * Returns 0 when <c> lives on, -1 when it was freed. */
static int
process(struct be_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);

    for (;;) {
        enum be_parse r;
        int status = 400;

        switch (c->state) {
        case BE_CS_HEAD:
            /* in this state the timer is only the keep-alive timeout */
            if (evbuffer_get_length(in) > 0)
                event_del(c->timer);
            else if (c->srv->set.keepalive_ms > 0 && !c->has_peer_eof)
                keepalive_arm(c);
            r = read_head(c, &status);
            if (r == BE_PARSE_BAD)
                return refuse(c, status);
            if (r == BE_PARSE_AGAIN) {
                if (c->has_peer_eof) {
                    conn_clear_request(c);
                    return conn_begin_close(c);
                }
                return 0;
            }
            break;
        case BE_CS_BODY_CL: {
            size_t n = evbuffer_get_length(in);

            if (n > c->body_left)
                n = (size_t)c->body_left;
            take_body(c, n);
            c->body_left -= n;
            c->body_decoded += n;
            if (c->body_left > 0) {
                if (c->has_peer_eof)
                    goto truncated;
                return 0;
            }
            if (dispatch(c) != 0)
                return -1;
            break;
        }
        case BE_CS_BODY_CHUNKED:
            r = read_chunked(c);
            if (r == BE_PARSE_BAD)
                return refuse(c, 400);
            if (r == BE_PARSE_AGAIN) {
                if (c->has_peer_eof)
                    goto truncated;
                return 0;
            }
            if (dispatch(c) != 0)
                return -1;
            break;
        case BE_CS_STALL:
        case BE_CS_ENDLESS:
        case BE_CS_RESET_WAIT:
        case BE_CS_LINGER:
        case BE_CS_FLUSH:
            evbuffer_drain(in, evbuffer_get_length(in));
            return 0;
        case BE_CS_WAIT:
        case BE_CS_TCP:
            return 0;
        }
    }

truncated:
    /* the client ended in the middle of a body: nothing to answer */
    conn_free(c);
    return -1;
}

/* ---- HTTP callbacks ------------------------------------------------- */

static void
on_http_read(struct bufferevent *bev, void *arg)
{
    process(arg);
}

static void
on_http_write(struct bufferevent *bev, void *arg)
{
    struct be_conn *c = arg;

    if (c->state == BE_CS_ENDLESS) {
        if (evbuffer_get_length(bufferevent_get_output(bev)) == 0 && endless_more(c) == 0 &&
            c->state == BE_CS_HEAD)
            process(c);
        return;
    }
    /* the answer is written, unless it is still to come */
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0 &&
        c->state != BE_CS_WAIT && c->state != BE_CS_STALL)
        c->is_answering = false;
    if (c->state == BE_CS_FLUSH)
        conn_finish_close(c);
    else if (c->state == BE_CS_RESET_WAIT)
        reset_when_acked(c);
}

/* TLS: the handshake completed (counted); true when <what> was that. */
static bool
tls_connected(struct be_conn *c, short what)
{
    if (!(what & BEV_EVENT_CONNECTED))
        return false;
    c->srv->st.tls_handshakes++;
    if (SSL_session_reused(bufferevent_openssl_get_ssl(c->bev)))
        c->srv->st.tls_resumed++;
    return true;
}

static void
on_http_event(struct bufferevent *bev, short what, void *arg)
{
    struct be_conn *c = arg;

    if (tls_connected(c, what))
        return;
    if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR)) {
        c->has_peer_eof = true;
        switch (c->state) {
        case BE_CS_FLUSH:              /* output still draining */
            if (bufferevent_disable(bev, EV_READ) != 0)
                log_at(LL_WARN, "backend", c->id, "bufferevent_disable failed");
            return;
        case BE_CS_HEAD:
        case BE_CS_BODY_CL:
        case BE_CS_BODY_CHUNKED:
            if (bufferevent_disable(bev, EV_READ) != 0)
                log_at(LL_WARN, "backend", c->id, "bufferevent_disable failed");
            process(c);                /* frees or starts closing */
            return;
        default:
            break;
        }
    }
    conn_free(c);
}

static void
on_conn_timer(evutil_socket_t fd, short what, void *arg)
{
    struct be_conn *c = arg;

    if (c->state == BE_CS_RESET_WAIT) {
        reset_when_acked(c);
        return;
    }
    if (c->state == BE_CS_HEAD) {
        /* the keep-alive timeout: nothing came; close as a server does */
        if (evbuffer_get_length(bufferevent_get_input(c->bev)) == 0)
            conn_begin_close(c);
        return;
    }
    if (c->state != BE_CS_WAIT) {
        conn_free(c);                  /* the linger timeout */
        return;
    }
    if (perform(c) != 0)
        return;
    if (c->state == BE_CS_HEAD)
        process(c);
}

/* ---- TCP echo ------------------------------------------------------- */

static void
tcp_finish(struct be_conn *c)
{
    shutdown(bufferevent_getfd(c->bev), SHUT_WR);
    conn_free(c);
}

static void
on_tcp_read(struct bufferevent *bev, void *arg)
{
    struct evbuffer *out = bufferevent_get_output(bev);

    evbuffer_add_buffer(out, bufferevent_get_input(bev));
    if (evbuffer_get_length(out) >= BE_TCP_HIGH_WM &&
        bufferevent_disable(bev, EV_READ) != 0)
        log_at(LL_WARN, "backend", 0, "bufferevent_disable failed");
}

static void
on_tcp_write(struct bufferevent *bev, void *arg)
{
    struct be_conn *c = arg;

    if (c->has_peer_eof) {
        tcp_finish(c);
        return;
    }
    if (bufferevent_enable(bev, EV_READ) != 0)
        log_at(LL_WARN, "backend", c->id, "bufferevent_enable failed");
}

static void
on_tcp_event(struct bufferevent *bev, short what, void *arg)
{
    struct be_conn *c = arg;

    if (tls_connected(c, what))
        return;
    if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR)) {
        c->has_peer_eof = true;
        if (bufferevent_disable(bev, EV_READ) != 0)
            log_at(LL_WARN, "backend", c->id, "bufferevent_disable failed");
        if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
            tcp_finish(c);
        return;
    }
    conn_free(c);
}

/* ---- listener ------------------------------------------------------- */

/* OpenSSL's message callback of a TLS connection: counts the application
 * data records it receives (TLS 1.3: the inner content type of each record;
 * TLS 1.2: the record header's). */
static void
on_tls_msg(int write_p, int version, int content_type, const void *buf, size_t len, SSL *ssl,
           void *arg)
{
    struct be_srv *s = arg;
    const unsigned char *b = buf;

    (void)version;
    if (write_p || len < 1 || b[0] != SSL3_RT_APPLICATION_DATA)
        return;
    if (content_type == (SSL_version(ssl) == TLS1_3_VERSION ? SSL3_RT_INNER_CONTENT_TYPE
                                                            : SSL3_RT_HEADER))
        s->st.tls_records++;
}

static void
on_accept(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa,
          int salen, void *arg)
{
    struct be_srv *s = arg;
    struct be_conn *c = xcalloc(1, sizeof(*c));
    int one = 1;

    c->srv = s;
    c->id = ++s->next_conn_id;
    s->st.connections++;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (s->tls != NULL && lis != s->ctl_lis) {
        SSL *ssl = SSL_new(s->tls);

        if (ssl != NULL) {
            SSL_set_msg_callback(ssl, on_tls_msg);
            SSL_set_msg_callback_arg(ssl, s);
        }
        c->bev = ssl == NULL ? NULL
                 : bufferevent_openssl_socket_new(s->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                  BEV_OPT_CLOSE_ON_FREE);
    } else {
        c->bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
    }
    if (c->bev == NULL) {
        log_at(LL_ERR, "backend", c->id, "bufferevent_socket_new failed");
        evutil_closesocket(fd);
        free(c);
        return;
    }
    c->next = s->conns;
    if (s->conns != NULL)
        s->conns->prev = c;
    s->conns = c;
    c->timer = evtimer_new(s->base, on_conn_timer, c);
    c->body = evbuffer_new();
    if (c->timer == NULL || c->body == NULL)
        goto fail;
    if (s->is_tcp) {
        c->state = BE_CS_TCP;
        bufferevent_setcb(c->bev, on_tcp_read, on_tcp_write, on_tcp_event, c);
        if (bufferevent_write(c->bev, s->name, s->name_len) != 0 ||
            bufferevent_write(c->bev, "\n", 1) != 0)
            goto fail;
    } else {
        c->state = BE_CS_HEAD;
        bufferevent_setcb(c->bev, on_http_read, on_http_write, on_http_event, c);
    }
    if (bufferevent_enable(c->bev, EV_READ | EV_WRITE) != 0)
        goto fail;
    return;

fail:
    log_at(LL_ERR, "backend", c->id, "cannot set up the connection");
    conn_free(c);
}

static void
on_accept_error(struct evconnlistener *lis, void *arg)
{
    log_at(LL_WARN, "backend", 0, "accept: %s", strerror(errno));
}

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct be_srv *s = arg;

    log_at(LL_INFO, "backend", 0, "%s: signal %d, exiting", s->name, (int)sig);
    event_base_loopexit(s->base, NULL);
}

/* ---- main ----------------------------------------------------------- */

static void
usage(void)
{
    fprintf(stderr, "usage: backend --name NAME --listen 127.0.0.1:PORT [--tcp] [--seed N]\n"
                    "               [--tls-cert PEM --tls-key PEM [--tls-client-ca PEM]]\n"
                    "               [--control 127.0.0.1:PORT] [--record FILE]\n");
    exit(2);
}

/* The server context of --tls-cert/--tls-key, requiring a client
 * certificate of <client_ca> when set; NULL (said on stderr) on error. */
static SSL_CTX *
tls_ctx(const char *cert, const char *key, const char *client_ca)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

    if (ctx == NULL || SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1 ||
        (client_ca != NULL && SSL_CTX_load_verify_locations(ctx, client_ca, NULL) != 1)) {
        fprintf(stderr, "backend: TLS setup failed (%s, %s): %s\n", cert, key,
                ERR_reason_error_string(ERR_peek_last_error()) != NULL
                ? ERR_reason_error_string(ERR_peek_last_error()) : "?");
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"backend", 7);
    if (client_ca != NULL)
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    return ctx;
}

static int
parse_listen(const char *text, struct sockaddr_in *sin)
{
    const char *colon = strrchr(text, ':');
    char host[INET_ADDRSTRLEN];
    long long port;

    if (colon == NULL || (size_t)(colon - text) >= sizeof(host))
        return -1;
    memcpy(host, text, (size_t)(colon - text));
    host[colon - text] = '\0';
    memset(sin, 0, sizeof(*sin));
    sin->sin_family = AF_INET;
    if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
        return -1;
    if ((ntohl(sin->sin_addr.s_addr) >> 24) != 127)
        return -1;                     /* loopback only */
    if (parse_int_value(colon + 1, 0, 65535, &port) != 0)
        return -1;
    sin->sin_port = htons((uint16_t)port);
    return 0;
}

int
main(int argc, char **argv)
{
    struct be_srv s;
    struct sockaddr_in sin;
    struct sockaddr_in bound;
    socklen_t blen = sizeof(bound);
    const char *listen_text = NULL, *tls_cert = NULL, *tls_key = NULL, *tls_ca = NULL;
    const char *control_text = NULL;
    struct sockaddr_in csin;
    char addr[INET_ADDRSTRLEN];
    struct sigaction sa;
    int i, rc = 1;

    memset(&s, 0, sizeof(s));
    s.seed = 1;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--name") == 0 && i + 1 < argc) {
            s.name = argv[++i];
        } else if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            listen_text = argv[++i];
        } else if (strcmp(argv[i], "--control") == 0 && i + 1 < argc) {
            control_text = argv[++i];
        } else if (strcmp(argv[i], "--tls-cert") == 0 && i + 1 < argc) {
            tls_cert = argv[++i];
        } else if (strcmp(argv[i], "--tls-key") == 0 && i + 1 < argc) {
            tls_key = argv[++i];
        } else if (strcmp(argv[i], "--tls-client-ca") == 0 && i + 1 < argc) {
            tls_ca = argv[++i];
        } else if (strcmp(argv[i], "--record") == 0 && i + 1 < argc) {
            if ((s.record = fopen(argv[++i], "a")) == NULL) {
                fprintf(stderr, "backend: --record %s: %s\n", argv[i], strerror(errno));
                exit(2);
            }
        } else if (strcmp(argv[i], "--tcp") == 0) {
            s.is_tcp = true;
        } else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
            char *end;

            errno = 0;
            s.seed = strtoull(argv[++i], &end, 10);
            if (*argv[i] == '\0' || *end != '\0' || errno != 0)
                usage();
        } else {
            usage();
        }
    }
    if (s.name == NULL || s.name[0] == '\0' || strpbrk(s.name, "\r\n") != NULL ||
        listen_text == NULL)
        usage();
    if ((tls_cert == NULL) != (tls_key == NULL) || (tls_ca != NULL && tls_cert == NULL))
        usage();
    if (tls_cert != NULL && (s.tls = tls_ctx(tls_cert, tls_key, tls_ca)) == NULL)
        exit(2);
    if (control_text != NULL && parse_listen(control_text, &csin) != 0) {
        fprintf(stderr, "backend: --control must be 127.x.x.x:PORT, got '%s'\n", control_text);
        exit(2);
    }
    if (parse_listen(listen_text, &sin) != 0) {
        fprintf(stderr, "backend: --listen must be 127.x.x.x:PORT, got '%s'\n", listen_text);
        exit(2);
    }
    s.name_len = strlen(s.name);
    s.name_hash = 1469598103934665603ull;
    for (i = 0; (size_t)i < s.name_len; i++)
        s.name_hash = (s.name_hash ^ (unsigned char)s.name[i]) * 1099511628211ull;
    s.rng = s.seed;
    s.stats_gen = 1;
    settings_default(&s.set);

    /* a client that vanishes must not kill us on the next write */
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);

    if ((s.base = event_base_new()) == NULL) {
        log_at(LL_ERR, "backend", 0, "event_base_new failed");
        goto out;
    }
    s.lis = evconnlistener_new_bind(s.base, on_accept, &s,
                                    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 511,
                                    (struct sockaddr *)&sin, sizeof(sin));
    if (s.lis == NULL) {
        log_at(LL_ERR, "backend", 0, "%s: cannot listen on %s: %s", s.name,
               listen_text, strerror(errno));
        goto out;
    }
    evconnlistener_set_error_cb(s.lis, on_accept_error);
    if (control_text != NULL &&
        (s.ctl_lis = evconnlistener_new_bind(s.base, on_accept, &s,
                                             LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 64,
                                             (struct sockaddr *)&csin, sizeof(csin))) == NULL) {
        log_at(LL_ERR, "backend", 0, "%s: cannot listen on %s: %s", s.name, control_text,
               strerror(errno));
        goto out;
    }
    s.ev_term = evsignal_new(s.base, SIGTERM, on_signal, &s);
    s.ev_int = evsignal_new(s.base, SIGINT, on_signal, &s);
    if (s.ev_term == NULL || s.ev_int == NULL ||
        event_add(s.ev_term, NULL) != 0 || event_add(s.ev_int, NULL) != 0) {
        log_at(LL_ERR, "backend", 0, "cannot install signal handlers");
        goto out;
    }
    if (getsockname(evconnlistener_get_fd(s.lis), (struct sockaddr *)&bound, &blen) != 0 ||
        inet_ntop(AF_INET, &bound.sin_addr, addr, sizeof(addr)) == NULL) {
        log_at(LL_ERR, "backend", 0, "getsockname: %s", strerror(errno));
        goto out;
    }
    printf("ready %s %s:%u\n", s.name, addr, (unsigned)ntohs(bound.sin_port));
    fflush(stdout);
    if (event_base_dispatch(s.base) < 0) {
        log_at(LL_ERR, "backend", 0, "event_base_dispatch failed");
        goto out;
    }
    rc = 0;

out:
    while (s.conns != NULL)
        conn_free(s.conns);
    if (s.ev_term != NULL)
        event_free(s.ev_term);
    if (s.ev_int != NULL)
        event_free(s.ev_int);
    if (s.lis != NULL)
        evconnlistener_free(s.lis);
    if (s.ctl_lis != NULL)
        evconnlistener_free(s.ctl_lis);
    if (s.base != NULL)
        event_base_free(s.base);
    SSL_CTX_free(s.tls);
    stats_zero(&s.st);
    return rc;
}
