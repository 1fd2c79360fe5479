/*
 * tls_cert: one certificate and key pair of a service's "tls.certs",
 * read into an SSL_CTX, with what status and metrics show of it (see
 * tls_cert.h).
 */
#include "proxy/tls_cert.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "lib/log.h"
#include "lib/xmalloc.h"
#include "proxy/tls_conf.h"

#define PX_TLS_FILE_MAX (1u << 20)   /* a larger PEM file is surely not one */

int
px_tls_fail_at(const struct px_tls_place *pl, const char *key, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(pl->err, pl->errlen, "%s: services[%u].tls.%s: %s", pl->conf_file, pl->svc, key,
             msg);
    return -1;
}

/* OpenSSL's reason for the last failure, and its error queue emptied. */
const char *
px_tls_ssl_reason(char *buf, size_t len)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;

    snprintf(buf, len, "%s", r != NULL ? r : "unknown OpenSSL error");
    ERR_clear_error();
    return buf;
}

/* Reads all of <path> (at most PX_TLS_FILE_MAX bytes). 0, or -1 with
 * errno (EFBIG when too large). */
static int
read_all(const char *path, unsigned char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf;
    size_t n = 0, got;

    if (f == NULL)
        return -1;
    buf = xmalloc(PX_TLS_FILE_MAX + 1);
    while ((got = fread(buf + n, 1, PX_TLS_FILE_MAX + 1 - n, f)) > 0) {
        n += got;
        if (n > PX_TLS_FILE_MAX)
            break;
    }
    if (ferror(f) || n > PX_TLS_FILE_MAX) {
        int e = ferror(f) ? errno : EFBIG;

        fclose(f);
        OPENSSL_cleanse(buf, n);
        free(buf);
        errno = e;
        return -1;
    }
    fclose(f);
    *out = buf;
    *len = n;
    return 0;
}

static int
no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;                         /* never prompts: an encrypted key fails */
}

void
px_tls_iso_time(int64_t t, char *buf, size_t len)
{
    time_t tt = (time_t)t;
    struct tm tm;

    gmtime_r(&tt, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int64_t
asn1_epoch(const ASN1_TIME *a)
{
    struct tm tm;

    memset(&tm, 0, sizeof(tm));
    if (a == NULL || ASN1_TIME_to_tm(a, &tm) != 1)
        return 0;
    return (int64_t)timegm(&tm);
}

/* The names <x> is chosen for: its subjectAltName DNS entries, else the
 * CN of its subject; lower case. */
static void
cert_names(X509 *x, struct px_tls_cert_info *info)
{
    GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    char **names = NULL, cn[256];
    unsigned n = 0, k;
    int i;

    if (sans != NULL) {
        names = xcalloc((size_t)sk_GENERAL_NAME_num(sans) + 1, sizeof(*names));
        for (i = 0; i < sk_GENERAL_NAME_num(sans); i++) {
            const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
            const unsigned char *d;
            int len;

            if (g->type != GEN_DNS)
                continue;
            d = ASN1_STRING_get0_data(g->d.dNSName);
            len = ASN1_STRING_length(g->d.dNSName);
            if (len <= 0 || len > 253 || memchr(d, '\0', (size_t)len) != NULL)
                continue;
            names[n++] = xstrndup((const char *)d, (size_t)len);
        }
        GENERAL_NAMES_free(sans);
    }
    if (n == 0 && X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn,
                                            sizeof(cn)) > 0) {
        free(names);
        names = xcalloc(1, sizeof(*names));
        names[n++] = xstrdup(cn);
    }
    for (k = 0; k < n; k++) {
        char *p;

        for (p = names[k]; *p != '\0'; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p - 'A' + 'a');
    }
    info->names = (const char *const *)names;
    info->nnames = n;
}

static char *
key_type(EVP_PKEY *k)
{
    char buf[96], group[64];
    size_t glen = 0;

    switch (EVP_PKEY_get_base_id(k)) {
    case EVP_PKEY_RSA:
        snprintf(buf, sizeof(buf), "RSA %d", EVP_PKEY_get_bits(k));
        break;
    case EVP_PKEY_EC:
        if (EVP_PKEY_get_group_name(k, group, sizeof(group), &glen) != 1)
            snprintf(group, sizeof(group), "?");
        snprintf(buf, sizeof(buf), "ECDSA %s",
                 strcmp(group, "prime256v1") == 0 ? "P-256"
                 : strcmp(group, "secp384r1") == 0 ? "P-384"
                 : strcmp(group, "secp521r1") == 0 ? "P-521" : group);
        break;
    case EVP_PKEY_ED25519:
        snprintf(buf, sizeof(buf), "Ed25519");
        break;
    default:
        snprintf(buf, sizeof(buf), "%s", OBJ_nid2sn(EVP_PKEY_get_base_id(k)));
        break;
    }
    return xstrdup(buf);
}

/* Loads certificate <k> of <tc> into <ctx>: the chain, then the key, which
 * must match. 0, 1 (check only: a file is not there yet, warned), or -1
 * with the message. */
int
px_tls_cert_load(SSL_CTX *ctx, const struct px_tls_conf *tc, unsigned k, struct px_tls_cert_info *info,
          bool check_only, const struct px_tls_place *pl)
{
    const struct px_tls_cert_conf *cc = &tc->certs[k];
    char key_cert[64], key_key[64], why[256], when[32], subj[1024];
    unsigned char *pem = NULL;
    size_t len = 0;
    BIO *bio = NULL;
    X509 *leaf = NULL, *x;
    EVP_PKEY *pkey = NULL;
    int64_t now = (int64_t)time(NULL), days;
    int rc = -1;

    snprintf(key_cert, sizeof(key_cert), "certs[%u].cert", k);
    snprintf(key_key, sizeof(key_key), "certs[%u].key", k);
    if (read_all(cc->cert, &pem, &len) != 0) {
        if (check_only && errno == ENOENT)
            goto missing;
        return px_tls_fail_at(pl, key_cert, "%s: cannot read: %s", cc->cert,
                       errno == EFBIG ? "larger than 1 MiB" : strerror(errno));
    }
    bio = BIO_new_mem_buf(pem, (int)len);
    if (bio == NULL || (leaf = PEM_read_bio_X509_AUX(bio, NULL, no_passphrase, NULL)) == NULL) {
        px_tls_fail_at(pl, key_cert, "%s: no PEM certificate in it (%s)", cc->cert,
                px_tls_ssl_reason(why, sizeof(why)));
        goto out;
    }
    if (SSL_CTX_use_certificate(ctx, leaf) != 1) {
        px_tls_fail_at(pl, key_cert, "%s: unusable certificate: %s", cc->cert,
                px_tls_ssl_reason(why, sizeof(why)));
        goto out;
    }
    SSL_CTX_clear_chain_certs(ctx);
    while ((x = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL)) != NULL) {
        if (SSL_CTX_add0_chain_cert(ctx, x) != 1) {
            X509_free(x);
            px_tls_fail_at(pl, key_cert, "%s: unusable chain certificate: %s", cc->cert,
                    px_tls_ssl_reason(why, sizeof(why)));
            goto out;
        }
    }
    ERR_clear_error();                 /* the end of the file */
    BIO_free(bio);
    bio = NULL;
    free(pem);
    pem = NULL;

    info->not_before = asn1_epoch(X509_get0_notBefore(leaf));
    info->not_after = asn1_epoch(X509_get0_notAfter(leaf));
    if (info->not_after <= now) {
        px_tls_iso_time(info->not_after, when, sizeof(when));
        px_tls_fail_at(pl, key_cert, "%s: the certificate expired on %s", cc->cert, when);
        goto out;
    }

    /* the key: parsed from a buffer wiped at once, never from stdio's */
    if (read_all(cc->key, &pem, &len) != 0) {
        if (check_only && errno == ENOENT)
            goto missing;
        px_tls_fail_at(pl, key_key, "%s: cannot read: %s", cc->key,
                errno == EFBIG ? "larger than 1 MiB" : strerror(errno));
        goto out;
    }
    bio = BIO_new_mem_buf(pem, (int)len);
    pkey = bio != NULL ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL) : NULL;
    BIO_free(bio);
    bio = NULL;
    OPENSSL_cleanse(pem, len);
    free(pem);
    pem = NULL;
    if (pkey == NULL) {
        px_tls_fail_at(pl, key_key, "%s: no usable PEM private key in it (an encrypted key is "
                "not supported; %s)", cc->key, px_tls_ssl_reason(why, sizeof(why)));
        goto out;
    }
    if (SSL_CTX_use_PrivateKey(ctx, pkey) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
        ERR_clear_error();
        px_tls_fail_at(pl, key_key, "%s: the key does not match the certificate %s", cc->key,
                cc->cert);
        goto out;
    }

    subj[0] = '\0';
    {
        BIO *m = BIO_new(BIO_s_mem());
        char *p = NULL;
        long n;

        if (m != NULL && X509_NAME_print_ex(m, X509_get_subject_name(leaf), 0,
                                            XN_FLAG_RFC2253) >= 0 &&
            (n = BIO_get_mem_data(m, &p)) > 0 && (size_t)n < sizeof(subj)) {
            memcpy(subj, p, (size_t)n);
            subj[n] = '\0';
        }
        BIO_free(m);
    }
    info->file = xstrdup(cc->cert_as_written);
    info->subject = xstrdup(subj);
    info->key_type = key_type(pkey);
    cert_names(leaf, info);
    if (info->nnames == 0) {
        px_tls_fail_at(pl, key_cert, "%s: the certificate names no host (no subjectAltName DNS "
                "name, no CN)", cc->cert);
        goto out;
    }
    days = (info->not_after - now) / 86400;
    if (days < (int64_t)PX_TLS_EXPIRY_WARN_DAYS) {
        px_tls_iso_time(info->not_after, when, sizeof(when));
        log_at(LL_WARN, "tls", 0, "%s: services[%u].tls.%s: %s: the certificate expires in "
               "%lld day(s), on %s", pl->conf_file, pl->svc, key_cert, cc->cert,
               (long long)days, when);
    }
    if (info->not_before > now) {
        px_tls_iso_time(info->not_before, when, sizeof(when));
        log_at(LL_WARN, "tls", 0, "%s: services[%u].tls.%s: %s: the certificate is not "
               "valid before %s", pl->conf_file, pl->svc, key_cert, cc->cert, when);
    }
    rc = 0;
    goto out;

missing:                               /* the certificate if no leaf was read yet */
    log_at(LL_WARN, "tls", 0, "%s: services[%u].tls.%s: %s does not exist (yet): cutoverd "
           "will not start without it", pl->conf_file, pl->svc,
           leaf == NULL ? key_cert : key_key, leaf == NULL ? cc->cert : cc->key);
    rc = 1;
out:
    BIO_free(bio);
    if (pem != NULL) {
        OPENSSL_cleanse(pem, len);
        free(pem);
    }
    X509_free(leaf);
    EVP_PKEY_free(pkey);
    ERR_clear_error();
    return rc;
}

void
px_tls_cert_info_free(struct px_tls_cert_info *info)
{
    unsigned k;

    free((char *)info->file);
    free((char *)info->subject);
    for (k = 0; k < info->nnames; k++)
        free((char *)info->names[k]);
    free((char **)info->names);
    free((char *)info->key_type);
}

