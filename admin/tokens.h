/*
 * tokens: the bearer tokens of the HTTP admin endpoint and their levels.
 * The token file holds one token per line, `NAME LEVEL SECRET`, with `#`
 * comments and blank lines; SECRET is the plain secret (16 printable bytes
 * or more) or `sha256:<64 hex>` so the file need not hold it. Only SHA-256
 * digests are kept in memory, and a presented token is checked against
 * every entry in constant time per entry. Never logs a secret.
 */
#ifndef CUTOVER_ADMIN_TOKENS_H
#define CUTOVER_ADMIN_TOKENS_H

#include <stddef.h>

/* What a caller may do (HAProxy's stats levels). Must remain in this order:
 * a higher level may do everything a lower one may. */
enum adm_level {
    ADM_LEVEL_READ = 0,      /* status, audit, metrics */
    ADM_LEVEL_OPERATE,       /* + weight below 100 while not latched, rollback,
                              * plan pause/abort */
    ADM_LEVEL_ADMIN,         /* everything */
    ADM_LEVEL__COUNT
};

extern const char *const adm_level_names[ADM_LEVEL__COUNT];

#define ADM_TOKEN_NAME_MAX   63u     /* bytes of a token name */
#define ADM_TOKEN_SECRET_MIN 16u     /* bytes of a plain secret, at least */
#define ADM_TOKEN_SECRET_MAX 4096u   /* bytes of a plain secret, at most */
#define ADM_TOKEN_FILE_MAX   (1024u * 1024u)   /* bytes of a token file */

struct adm_tokens;

/* Parses token-file text <text> of <len> bytes; <file> names it in messages
 * ("FILE:LINE: message"). Pure: no file access, no permission check (that
 * is adm_tokens_load's). Returns the set (caller frees) or NULL with the
 * message in <err>. A file with no token is refused. */
struct adm_tokens *adm_tokens_parse(const char *text, size_t len, const char *file,
                                    char *err, size_t errlen);

/* Opens <file> and parses it. Refuses a file that is not a regular file,
 * that group or others may read or write (st_mode & 077), that is larger
 * than ADM_TOKEN_FILE_MAX, or that is malformed. Returns NULL with a
 * one-line message naming the file in <err>. Blocking: startup only. */
struct adm_tokens *adm_tokens_load(const char *file, char *err, size_t errlen);

void adm_tokens_free(struct adm_tokens *t);

/* Number of tokens in <t>. */
unsigned adm_tokens_count(const struct adm_tokens *t);

/* Checks the presented bearer secret <secret> (<len> bytes, any content):
 * hashes it and compares the digest with every entry's (CRYPTO_memcmp, no
 * early exit). Returns the matching token's name (borrowed from <t>) with
 * its level in <*level>, or NULL when no token matches. */
const char *adm_tokens_check(const struct adm_tokens *t, const char *secret, size_t len,
                             enum adm_level *level);

/* Returns the level named <name> ("read", "operate", "admin"), or -1. */
int adm_level_from_name(const char *name);

#endif
