/*
 * webhook: notifications. Every audit entry whose action a webhook of the
 * config's "notify.webhooks" subscribes to is POSTed to its URL as JSON (the
 * entry exactly as the audit log holds it), from the main loop, without ever
 * delaying the change that made it: the audit observer (admin/audit.h) only
 * copies the entry into the webhook's bounded queue; the connection, the
 * request and the retries run later on the loop with a small HTTP/1.1 client
 * of our own on a bufferevent (plain or OpenSSL). docs/DESIGN.md
 * "Notifications" has the rules; this header the interface.
 */
#ifndef CUTOVER_PROXY_WEBHOOK_H
#define CUTOVER_PROXY_WEBHOOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct json_t;
struct conf_err;
struct event_base;
struct met_writer;

#define PX_WEBHOOK_MAX          16       /* webhooks per config */
#define PX_WEBHOOK_QUEUE_DEF    1000u    /* entries waiting per webhook */
#define PX_WEBHOOK_TIMEOUT_DEF  5000u    /* ms: connect, TLS, request, status line */
#define PX_WEBHOOK_RETRY_MIN_MS 1000u    /* the first retry; doubling ... */
#define PX_WEBHOOK_RETRY_MAX_MS 30000u   /* ... up to this */

/* One webhook of the config. */
struct px_webhook_conf {
    char *name;                  /* owned: the metrics label; default host:port */
    char *url;                   /* owned: as written; never logged (it may hold a
                                  * secret of the receiver's) */
    bool tls;                    /* https */
    char *host;                  /* owned: without brackets */
    char *authority;             /* owned: host[:port] as in the URL, for Host: */
    unsigned port;
    char *target;                /* owned: path and query, "/" at least */
    bool all_events;             /* "events": ["*"] */
    uint32_t events;             /* bit i: px_webhook_events[i] */
    char *token_file;            /* owned: resolved; NULL = none */
    char *token;                 /* owned: its secret once px_webhook_conf_tokens()
                                  * read it; wiped when freed */
    char *ca_file;               /* owned: https only; NULL = the system's store */
    unsigned timeout_ms;
    unsigned queue_max;
};

struct px_notify_conf {
    unsigned n;
    struct px_webhook_conf *hooks;   /* owned */
};

/* The actions a webhook may subscribe to (NULL-terminated). */
extern const char *const px_webhook_events[];

/* Parses "notify" <j> (the config's directory <dir> for relative paths) into
 * a new *<out>. 0, or -1 with <err> set at the JSON path of the fault. */
int px_notify_conf_parse(struct json_t *j, const char *dir, struct px_notify_conf **out,
                         struct conf_err *err);

void px_notify_conf_free(struct px_notify_conf *c);

/* A deep copy of <c> (tokens included); NULL for NULL. */
struct px_notify_conf *px_notify_conf_dup(const struct px_notify_conf *c);

/* True when <a> and <b> configure the same webhooks (NULL = none). */
bool px_notify_conf_equal(const struct px_notify_conf *a, const struct px_notify_conf *b);

/* Reads every webhook's token_file (a private file, one line). Under
 * <test_only> a missing file only warns on stderr. 0, or -1 with <err>. */
int px_notify_conf_tokens(struct px_notify_conf *c, bool test_only, const char *conf_file,
                          char *err, size_t errlen);

struct px_webhooks;

/* The sender of config <c> (borrowed; it must outlive the sender) on <base>.
 * NULL with <err> set when a TLS context cannot be made. */
struct px_webhooks *px_webhooks_new(struct event_base *base, const struct px_notify_conf *c,
                                    char *err, size_t errlen);

/* Stops: what is still queued is lost, and said so in one log line. */
void px_webhooks_free(struct px_webhooks *w);

/* The audit observer (adm_audit_observer_fn): queues the entry <line>/<len>
 * of <action> for each webhook that subscribes to it. Never blocks. */
void px_webhooks_observe(void *w, const char *action, const char *line, size_t len);

/* The cutover_notify_* families (every webhook, at 0 from the start). */
void px_webhooks_metrics(const struct px_webhooks *w, struct met_writer *mw);

#endif
