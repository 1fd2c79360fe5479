/*
 * router: the decision "which side, which server" for one request or one TCP
 * connection. Pure: no I/O, no clock reads, no allocation after
 * rt_snapshot_init(); the caller passes the random draw and the sticky key in.
 * Same inputs, same answer, so every rule is a fast unit test.
 *
 * A routing snapshot is immutable once published. A change (weight, health)
 * means building a new snapshot and swapping the pointer between events.
 */
#ifndef CUTOVER_ROUTER_ROUTER_H
#define CUTOVER_ROUTER_ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/cidr.h"

#define RT_BP_MAX        10000u  /* 100.00 % in basis points */
#define RT_MAX_SERVERS   64u     /* per side; usable mask is a uint64_t */
#define RT_NAME_MAX      64u     /* cookie / header names */
#define RT_ALLOW_MAX     32u     /* ranges in override.allow_from */
#define RT_SECRET_MIN    16u     /* bytes of the override.secret_file secret */
#define RT_SECRET_MAX    128u

/* Must remain in this order: used as array indices everywhere. */
enum rt_side {
    RT_LEGACY = 0,
    RT_NEW    = 1,
    RT_SIDE__COUNT,
    RT_NONE   = -1,              /* no side can take it: answer 503 */
};

enum rt_sticky_by {
    RT_STICKY_NONE = 0,          /* random draw per request / connection */
    RT_STICKY_COOKIE,            /* cookie <name> holds the bucket; issued when absent */
    RT_STICKY_HEADER,            /* bucket = hash(value of header <name>) */
    RT_STICKY_CLIENT_IP,         /* bucket = hash(client address text) */
};

/* Why a choice went where it went (status, metrics, debug log). */
enum rt_reason {
    RT_R_WEIGHT = 0,             /* random draw against the weight */
    RT_R_STICKY,                 /* sticky bucket against the weight */
    RT_R_OVERRIDE,               /* override header named the side */
    RT_R_FALLBACK,               /* chosen side had no usable server */
    RT_R_NONE,                   /* both sides down */
};

/* Static routing configuration of one service (from the config file). */
struct rt_conf {
    uint32_t weight_bp;                  /* initial weight, 0..10000 */
    enum rt_sticky_by sticky_by;
    char sticky_name[RT_NAME_MAX];       /* cookie or header name; "" otherwise */
    uint64_t seed;                       /* XXH3 seed: rt_seed_from_salt(salt) */
    bool has_override;
    char override_header[RT_NAME_MAX];   /* header name when has_override */
    unsigned nallow;                     /* entries of <allow_from> */
    struct cidr allow_from[RT_ALLOW_MAX];/* sources whose override is honoured */
    size_t secret_len;                   /* 0: no override.secret_file */
    char secret[RT_SECRET_MAX];          /* its secret, <secret_len> bytes, no NUL */
};

/* One immutable routing state of a service. */
struct rt_snapshot {
    uint32_t weight_bp;                  /* share to new, 0..10000 */
    uint64_t generation;                 /* bumped on every operator/auto change */
    unsigned nservers[RT_SIDE__COUNT];   /* servers per side, <= RT_MAX_SERVERS */
    uint64_t usable[RT_SIDE__COUNT];     /* bit i set: server i of that side is up */
    const struct rt_conf *conf;          /* borrowed: lives as long as the config */
};

/* What the caller knows of one request or connection. */
struct rt_input {
    const char *sticky_key;      /* header value / client IP text; NULL = none */
    size_t sticky_len;
    bool has_cookie_bucket;      /* cookie mode: client sent a valid bucket */
    uint32_t cookie_bucket;      /* 0..9999 when has_cookie_bucket */
    const char *override_val;    /* value of the override header; NULL = absent */
    size_t override_len;
    const struct cidr_addr *client;  /* the client's address, read only when
                                  * <override_val> is set; NULL = unknown, which
                                  * is in no allow_from range */
    uint64_t rand;               /* uniform random draw supplied by the caller */
};

/* Per-worker mutable round-robin cursor (one per service). */
struct rt_cursor {
    unsigned next[RT_SIDE__COUNT];
};

struct rt_choice {
    enum rt_side side;           /* RT_NONE when both sides are down */
    unsigned server;             /* index within the side */
    enum rt_reason reason;
    bool fallback;               /* the preferred side was down */
    bool override_refused;       /* an override header came from a source
                                  * outside allow_from without the secret: it
                                  * was ignored (count it) */
    bool issue_cookie;           /* cookie mode: send Set-Cookie with <bucket> */
    bool has_bucket;
    uint32_t bucket;             /* 0..9999 when has_bucket */
};

/* Seed for sticky hashing from <salt> (the service name by default). Stable
 * across versions and machines: XXH3_64bits of the salt bytes. */
uint64_t rt_seed_from_salt(const char *salt, size_t len);

/* The bucket of a sticky key: XXH3_64bits_withSeed(key, seed) % 10000. */
uint32_t rt_bucket(const char *key, size_t len, uint64_t seed);

/* Initialises <s> for <conf> with all servers usable, generation 0. */
void rt_snapshot_init(struct rt_snapshot *s, const struct rt_conf *conf,
                      uint32_t weight_bp, unsigned nlegacy, unsigned nnew);

/* True when <side> of <s> has at least one usable server. */
bool rt_side_usable(const struct rt_snapshot *s, enum rt_side side);

/* The share of requests that goes to new under <s> now, in basis points,
 * after fallback: the weight when both sides have a usable server, 0 when
 * new has none, 10000 when only new has one, -1 when neither has (every
 * request is answered 503). Overrides are left out: they are per request. */
int32_t rt_effective_bp(const struct rt_snapshot *s);

/* Chooses side and server for <in> under snapshot <s>, advancing the
 * round-robin cursor <cur> of the chosen side. Never fails: out->side is
 * RT_NONE when neither side has a usable server. Rules (docs/DESIGN.md):
 * override (honoured only from a source in allow_from or with the secret,
 * see rt_override_honoured(), and unless that side is down) > sticky
 * bucket < weight_bp > random draw (in->rand % 10000 < weight_bp); a side
 * with no usable server falls back to the other. Weight 0 and 10000 are
 * exact. An override that is not honoured is routed as if absent, with
 * out->override_refused set. In cookie mode without a valid client bucket,
 * the bucket is in->rand % 10000 and issue_cookie is set. */
void rt_choose(const struct rt_snapshot *s, struct rt_cursor *cur,
               const struct rt_input *in, struct rt_choice *out);

/* Parses an override header value (as the HTTP parser hands it over, its
 * surrounding whitespace gone): a side, "new" or "legacy" in any case,
 * optionally followed by "; key=SECRET" (spaces or tabs around the ";",
 * none around the "=", "key" in any case, SECRET printable without spaces,
 * ';', ',', '"' or '\\'), nothing else. Returns the side named, RT_NONE for
 * any other value; <*key> (NULL when there is none) and <*key_len> point
 * into <val>. Pure, no allocation. */
enum rt_side rt_override_parse(const char *val, size_t len, const char **key,
                               size_t *key_len);

/* True when an override header from <client> (NULL: unknown) carrying
 * <key> (NULL: none) is to be honoured under <conf>: the client is in one
 * of conf->allow_from's ranges, or <key> equals conf->secret (compared in
 * time that depends on the lengths only, never on where they differ). */
bool rt_override_honoured(const struct rt_conf *conf, const struct cidr_addr *client,
                          const char *key, size_t key_len);

/* Parses a cookie value holding a bucket ("0".."9999", decimal, no sign, no
 * leading zeros except "0"). Returns 0 or -1. */
int rt_bucket_parse(const char *val, size_t len, uint32_t *bucket);

extern const char *const rt_side_names[RT_SIDE__COUNT];   /* "legacy", "new" */
extern const char *const rt_reason_names[];

#endif
