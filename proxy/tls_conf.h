/*
 * tls_conf: the listener side's TLS settings of a service, its "tls" key:
 *
 *   "tls": { "certs": [{"cert": PEM, "key": PEM}, ...], "alpn": ["http/1.1"],
 *            "min_version": "1.2", "ciphers": "...", "ciphersuites": "...",
 *            "client_ca": PEM, "client_verify": "none|optional|required",
 *            "session_tickets": true, "handshake_timeout_ms": 10000 }
 *
 * Parsed strictly (an unknown key, a wrong type or value is an error with
 * its JSON path) into an immutable struct px_tls_conf that a config
 * generation owns. Only the structure is checked here; the files are read,
 * and the cipher strings tried, when proxy/tls.c builds the contexts (at
 * load, `cutoverd -t` included), so that their errors carry the same place.
 * No OpenSSL here: this file is part of the config loader.
 */
#ifndef CUTOVER_PROXY_TLS_CONF_H
#define CUTOVER_PROXY_TLS_CONF_H

#include <stdbool.h>

#include "lib/conf.h"

#define PX_TLS_MAX_CERTS 64u          /* tls.certs entries per service */
#define PX_TLS_MAX_ALPN  16u          /* tls.alpn entries */

enum px_tls_verify {
    PX_TLS_VERIFY_NONE = 0,      /* no client certificate asked for */
    PX_TLS_VERIFY_OPTIONAL,      /* asked for; a valid one or none */
    PX_TLS_VERIFY_REQUIRED,      /* a valid one or the handshake fails */
};

extern const char *const px_tls_verify_names[3];

struct px_tls_cert_conf {
    char *cert;                  /* owned: PEM file (leaf, then its chain),
                                  * resolved against the config's directory */
    char *key;                   /* owned: PEM private key file, resolved */
    char *cert_as_written;       /* owned: "cert" as in the file (status, metrics) */
};

struct px_tls_conf {
    unsigned ncerts;             /* 1..PX_TLS_MAX_CERTS; the first is the default */
    struct px_tls_cert_conf *certs;  /* owned */
    unsigned nalpn;              /* 0: no ALPN answer (tcp's default) */
    char **alpn;                 /* owned: protocol names in preference order;
                                  * default ["http/1.1", "http/1.0"] in http mode */
    int min_version;             /* 12 or 13 (TLS 1.2 / 1.3); default 12 */
    char *ciphers;               /* owned: TLS 1.2 cipher list; NULL = the default
                                  * (Mozilla intermediate) */
    char *ciphersuites;          /* owned: TLS 1.3 suites; NULL = the default */
    char *client_ca;             /* owned: PEM CA file, resolved; NULL = none */
    enum px_tls_verify client_verify;   /* default: required with a client_ca,
                                  * else none */
    bool session_tickets;        /* default true; false: a session cache */
    unsigned handshake_timeout_ms;  /* default 10000, 1..600000 */
};

/* Parses "tls" value <j> (NULL: absent, then *out stays NULL) at JSON path
 * <path> ("services[0].tls") of a service of mode <http> (true) or tcp,
 * relative file names resolved against <dir>. Returns 0 with *out set (the
 * caller frees it with px_tls_conf_free), or -1 with <err> set. */
int px_tls_conf_parse(struct json_t *j, const char *path, const char *dir, bool http,
                      struct px_tls_conf **out, struct conf_err *err);

void px_tls_conf_free(struct px_tls_conf *c);

/* True when <a> and <b> are the same settings (every field; strings and
 * lists by content; both NULL is equal). */
bool px_tls_conf_equal(const struct px_tls_conf *a, const struct px_tls_conf *b);

#endif
