/*
 * tls_cert: one certificate of a service's "tls.certs" loaded into an
 * SSL_CTX (proxy/tls.c builds the contexts around it): the PEM chain, then
 * the private key, read with the daemon's privileges from a buffer wiped
 * as soon as OpenSSL parsed it (never from stdio's, never logged), which
 * must match the certificate; a certificate that has expired is refused,
 * one that expires within PX_TLS_EXPIRY_WARN_DAYS days is a warning. What
 * status and the metrics show of it (subject, names, validity, key type)
 * is kept in a struct px_tls_cert_info; an error names the config file,
 * the JSON path, the file and the reason.
 */
#ifndef CUTOVER_PROXY_TLS_CERT_H
#define CUTOVER_PROXY_TLS_CERT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ssl_ctx_st SSL_CTX;
struct px_tls_conf;

#define PX_TLS_EXPIRY_WARN_DAYS 14u            /* `-t` and every load warn below */

/* One certificate as loaded: what status and metrics show of it. */
struct px_tls_cert_info {
    const char *file;            /* owned: "cert" as written in the config */
    const char *subject;         /* owned: RFC 2253 */
    const char *const *names;    /* owned: the DNS names it is chosen for (its
                                  * subjectAltName, else its CN), lower case */
    unsigned nnames;
    int64_t not_before, not_after;   /* seconds since the epoch */
    const char *key_type;        /* owned: "ECDSA P-256", "RSA 2048", ... */
};

/* Where a TLS setting is, for the message of its error:
 * "<conf_file>: services[<svc>].tls.<key>: ...". */
struct px_tls_place {
    const char *conf_file;
    unsigned svc;
    char *err;                   /* the message goes here */
    size_t errlen;
};

/* Loads certificate <k> of <tc> into <ctx> (its chain, then its key, which
 * must match) and fills <info>. Returns 0; 1 when <check_only> and a file
 * does not exist (yet): a warning is logged, nothing more is checked; -1
 * with the message at <pl>. <info> is freed by px_tls_cert_info_free()
 * whatever the result. */
int px_tls_cert_load(SSL_CTX *ctx, const struct px_tls_conf *tc, unsigned k,
                     struct px_tls_cert_info *info, bool check_only,
                     const struct px_tls_place *pl);

void px_tls_cert_info_free(struct px_tls_cert_info *info);

/* Writes "<conf_file>: services[<svc>].tls.<key>: <message>" at <pl>;
 * returns -1. */
int px_tls_fail_at(const struct px_tls_place *pl, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* OpenSSL's reason for the last failure into <buf>, its error queue
 * emptied; returns <buf>. */
const char *px_tls_ssl_reason(char *buf, size_t len);

/* <t> (seconds since the epoch) as "2026-01-05T00:00:00Z". */
void px_tls_iso_time(int64_t t, char *buf, size_t len);

#endif
