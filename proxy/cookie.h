/*
 * proxy/cookie: the authenticated sticky cookie. In cookie mode the proxy
 * issues "<name>=<bucket>.<mac>", where <mac> is the base64url text (16
 * characters, no padding) of the first 96 bits of
 *
 *     HMAC-SHA256(key, "cutover-sticky-v1" || seed (8 bytes, big-endian)
 *                      || bucket (2 bytes, big-endian))
 *
 * with <seed> the service's sticky seed (from sticky.salt, the service name
 * by default), so a cookie of one service is worth nothing to another with
 * another salt. A cookie whose MAC does not verify counts as absent.
 *
 * Keys live in the state directory ("sticky.key", mode 0600, created with
 * 32 random bytes at the first start that needs it): a "current" key that
 * signs and verifies, and an optional "previous" one that only verifies,
 * so that a key is rotated without re-bucketing anybody: a cookie the
 * previous key verifies is honoured and signed again with the current one.
 *
 * The request path never computes an HMAC: there are only RT_BP_MAX
 * buckets, so the MACs of all of them are computed once per key and seed
 * when the keys are loaded (a table, struct px_cookie_tab, shared read-only
 * by every worker), and verifying is a table lookup and a constant-time
 * comparison of 12 bytes: no allocation, no OpenSSL call but CRYPTO_memcmp.
 * A configuration generation holds the tables of its cookie services
 * (struct px_cookie_set, owned by its struct px_confref); a reload builds
 * the next generation's, reusing a table whose keys and seed are unchanged.
 */
#ifndef CUTOVER_PROXY_COOKIE_H
#define CUTOVER_PROXY_COOKIE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/conf.h"

#define PX_COOKIE_KEY_LEN    32u   /* bytes of a key */
#define PX_COOKIE_MAC_LEN    12u   /* bytes of the HMAC kept: 96 bits */
#define PX_COOKIE_MAC_TEXT   16u   /* their base64url text */
#define PX_COOKIE_VALUE_MAX  24u   /* "9999." + 16 + NUL fits */
#define PX_COOKIE_KEY_FILE   "sticky.key"   /* its name in the state directory */

/* The keys of the sticky cookie: key[0] the current one (signs and
 * verifies), key[1] the previous one when n is 2 (verifies only). */
struct px_cookie_keys {
    unsigned n;
    unsigned char key[2][PX_COOKIE_KEY_LEN];
};

/* Parses the text of a key file (<len> bytes; <file> names it in messages):
 * lines "current HEX" (exactly once) and "previous HEX" (at most once), HEX
 * 64 hexadecimal digits; '#' comments and blank lines. Returns 0, or -1 with
 * "FILE:LINE: message" (or "FILE: message") in <err>. Never quotes a key. */
int px_cookie_keys_parse(const char *text, size_t len, const char *file,
                         struct px_cookie_keys *out, char *err, size_t errlen);

/* Reads the key file <file> (private: mode & 077 must be 0). When it does
 * not exist and <create> is true, writes a new one with a fresh random
 * current key (mode 0600, written whole under a temporary name, then linked
 * in place, so it is never seen half-written and two starts cannot each
 * create their own) and sets <*created>. Returns 0, or -1 with the reason
 * in <err> (ENOENT in errno when it is missing and <create> is false). */
int px_cookie_keys_load(const char *file, bool create, struct px_cookie_keys *out,
                        bool *created, char *err, size_t errlen);

/* The MAC of <bucket> for <seed> under <key>, computed directly with
 * OpenSSL's one-shot HMAC() (the tables use EVP_MAC): the definition above,
 * for the tests. Returns 0 or -1. */
int px_cookie_mac(const unsigned char key[PX_COOKIE_KEY_LEN], uint64_t seed,
                  uint32_t bucket, unsigned char out[PX_COOKIE_MAC_LEN]);

/* The MACs of every bucket for one seed under each key (about 120 KiB a
 * key), refcounted: the sets of successive generations share it. */
struct px_cookie_tab;

/* Computes the table of <seed> under <keys>; NULL when OpenSSL fails. */
struct px_cookie_tab *px_cookie_tab_new(const struct px_cookie_keys *keys, uint64_t seed);
void px_cookie_tab_put(struct px_cookie_tab *t);

enum px_cookie_check {
    PX_COOKIE_BAD = 0,       /* malformed, unsigned (an older version's bare
                              * bucket), tampered, or signed by another key or
                              * for another seed: treat as absent */
    PX_COOKIE_OK,            /* signed by the current key */
    PX_COOKIE_PREVIOUS,      /* signed by the previous key: honour, sign again */
};

/* Verifies cookie value <val> (<len> bytes) against <t> (NULL: every value
 * is bad), setting <*bucket> unless bad. Constant time in the MAC bytes; no
 * allocation. */
enum px_cookie_check px_cookie_verify(const struct px_cookie_tab *t, const char *val,
                                      size_t len, uint32_t *bucket);

/* Writes the value that carries <bucket> (< RT_BP_MAX), signed with the
 * current key, NUL-terminated, into <out>. Returns its length, 0 when <t> is
 * NULL. */
size_t px_cookie_sign(const struct px_cookie_tab *t, uint32_t bucket,
                      char out[PX_COOKIE_VALUE_MAX]);

/* The tables of one configuration generation, by service index. */
struct px_cookie_set;

/* Builds the set of <conf>: nothing (*out NULL, no file touched) when no
 * service is sticky by cookie; otherwise loads <key_file> (creating it when
 * <create>, see px_cookie_keys_load()) and computes a table per cookie
 * service, taking from <old> (the running generation's set, or NULL) those
 * with the same keys and seed. Returns 0, or -1 with the reason in <err>. */
int px_cookie_set_build(const struct px_conf *conf, const char *key_file, bool create,
                        const struct px_cookie_set *old, struct px_cookie_set **out,
                        char *err, size_t errlen);

/* The table of service <idx> of the set's generation; NULL when the set is
 * NULL or that service is not sticky by cookie. */
const struct px_cookie_tab *px_cookie_set_tab(const struct px_cookie_set *s, unsigned idx);

/* NULL is a no-op. */
void px_cookie_set_free(struct px_cookie_set *s);

#endif
