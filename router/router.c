/*
 * router/router: the per-request (per-connection) decision "which side,
 * which server". Everything the decision needs is passed in: the immutable
 * snapshot, the caller's round-robin cursor, the sticky key and a random
 * draw. No clock, no I/O, no allocation, no logging, so the same inputs
 * always give the same answer and every rule is a unit test.
 *
 * Workload: rt_choose() runs once per request on every worker, so it does a
 * constant amount of work apart from one XXH3 over the sticky key and a scan
 * of at most RT_MAX_SERVERS bits.
 *
 * Stickiness relies on one property: a key's bucket depends only on the key
 * and the seed, and a key goes to new iff bucket < weight_bp. Raising the
 * weight can therefore only move keys legacy -> new, lowering it only
 * new -> legacy.
 */
#include "router/router.h"

#include <assert.h>
#include <string.h>

#include <xxhash.h>

const char *const rt_side_names[RT_SIDE__COUNT] = {
    [RT_LEGACY] = "legacy",
    [RT_NEW]    = "new",
};

const char *const rt_reason_names[RT_R_NONE + 1] = {
    [RT_R_WEIGHT]   = "weight",
    [RT_R_STICKY]   = "sticky",
    [RT_R_OVERRIDE] = "override",
    [RT_R_FALLBACK] = "fallback",
    [RT_R_NONE]     = "none",
};

uint64_t
rt_seed_from_salt(const char *salt, size_t len)
{
    return XXH3_64bits(salt, len);
}

uint32_t
rt_bucket(const char *key, size_t len, uint64_t seed)
{
    return (uint32_t)(XXH3_64bits_withSeed(key, len, seed) % RT_BP_MAX);
}

void
rt_snapshot_init(struct rt_snapshot *s, const struct rt_conf *conf,
                 uint32_t weight_bp, unsigned nlegacy, unsigned nnew)
{
    unsigned side;

    assert(s != NULL);
    assert(weight_bp <= RT_BP_MAX);
    assert(nlegacy <= RT_MAX_SERVERS && nnew <= RT_MAX_SERVERS);

    memset(s, 0, sizeof(*s));
    s->weight_bp = weight_bp;
    s->generation = 0;
    s->nservers[RT_LEGACY] = nlegacy;
    s->nservers[RT_NEW] = nnew;
    for (side = 0; side < RT_SIDE__COUNT; side++) {
        /* 1 << 64 is undefined: a full side gets every bit explicitly */
        s->usable[side] = s->nservers[side] >= 64u ? ~(uint64_t)0
                        : (((uint64_t)1 << s->nservers[side]) - 1);
    }
    s->conf = conf;
}

/* The usable bits of <side> that name an existing server: bits at or above
 * nservers are ignored, whatever the snapshot's builder left there. */
static uint64_t
usable_mask(const struct rt_snapshot *s, enum rt_side side)
{
    unsigned n = s->nservers[side];

    if (n == 0)
        return 0;
    if (n >= 64u)
        return s->usable[side];
    return s->usable[side] & (((uint64_t)1 << n) - 1);
}

bool
rt_side_usable(const struct rt_snapshot *s, enum rt_side side)
{
    assert(s != NULL);
    if (side != RT_LEGACY && side != RT_NEW)
        return false;
    return usable_mask(s, side) != 0;
}

int32_t
rt_effective_bp(const struct rt_snapshot *s)
{
    bool legacy = rt_side_usable(s, RT_LEGACY), fresh = rt_side_usable(s, RT_NEW);

    if (!legacy && !fresh)
        return -1;
    if (!fresh)
        return 0;
    if (!legacy)
        return RT_BP_MAX;
    return (int32_t)s->weight_bp;
}

/* ASCII-only, locale-independent: header values are bytes, not text. */
static bool
eq_nocase(const char *a, size_t alen, const char *lit)
{
    size_t i;

    if (alen != strlen(lit))
        return false;
    for (i = 0; i < alen; i++) {
        unsigned char c = (unsigned char)a[i];

        if (c >= 'A' && c <= 'Z')
            c = (unsigned char)(c - 'A' + 'a');
        if (c != (unsigned char)lit[i])
            return false;
    }
    return true;
}

static bool
is_ows(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* A byte a secret may hold: printable, not a space, ';', ',', '"' or '\\'
 * (so that it can stand as a parameter of a header value). */
static bool
is_secret_char(char ch)
{
    return ch > ' ' && ch < 0x7f && ch != ';' && ch != ',' && ch != '"' && ch != '\\';
}

enum rt_side
rt_override_parse(const char *val, size_t len, const char **key, size_t *key_len)
{
    size_t i = 0, k0;
    enum rt_side side;

    *key = NULL;
    *key_len = 0;
    if (val == NULL)
        return RT_NONE;
    while (i < len && !is_ows(val[i]) && val[i] != ';')
        i++;
    if (eq_nocase(val, i, "new"))
        side = RT_NEW;
    else if (eq_nocase(val, i, "legacy"))
        side = RT_LEGACY;
    else
        return RT_NONE;
    if (i == len)
        return side;
    while (i < len && is_ows(val[i]))
        i++;
    if (i == len || val[i] != ';')
        return RT_NONE;
    i++;
    while (i < len && is_ows(val[i]))
        i++;
    if (len - i < 4 || !eq_nocase(val + i, 3, "key") || val[i + 3] != '=')
        return RT_NONE;
    i += 4;
    k0 = i;
    while (i < len && is_secret_char(val[i]))
        i++;
    if (i == k0 || i != len)
        return RT_NONE;
    *key = val + k0;
    *key_len = i - k0;
    return side;
}

/* <key> equals the secret: every byte of the secret is looked at whatever
 * differs, so the time depends on the lengths alone. */
static bool
secret_equal(const struct rt_conf *conf, const char *key, size_t key_len)
{
    volatile unsigned char diff;
    size_t i;

    if (conf->secret_len == 0 || key == NULL)
        return false;
    diff = key_len != conf->secret_len;
    for (i = 0; i < conf->secret_len; i++)
        diff |= (unsigned char)(conf->secret[i] ^ (i < key_len ? key[i] : 0));
    return diff == 0;
}

bool
rt_override_honoured(const struct rt_conf *conf, const struct cidr_addr *client,
                     const char *key, size_t key_len)
{
    if (client != NULL && cidr_match_any(conf->allow_from, conf->nallow, client))
        return true;
    return secret_equal(conf, key, key_len);
}

/* The side an override header value names when it is honoured, or RT_NONE
 * for an absent, unknown or refused value (ignored, not an error); a
 * refused one sets <*refused>. */
static enum rt_side
override_side(const struct rt_conf *conf, const struct rt_input *in, bool *refused)
{
    const char *key;
    size_t key_len;
    enum rt_side side;

    if (conf == NULL || !conf->has_override || in->override_val == NULL)
        return RT_NONE;
    side = rt_override_parse(in->override_val, in->override_len, &key, &key_len);
    if (!rt_override_honoured(conf, in->client, key, key_len)) {
        *refused = true;
        return RT_NONE;
    }
    return side;
}

/* Picks the next usable server of <side> at or after the cursor, wrapping,
 * and moves the cursor past it. Precondition: the side is usable. */
static unsigned
pick_server(const struct rt_snapshot *s, struct rt_cursor *cur,
            enum rt_side side)
{
    uint64_t mask = usable_mask(s, side);
    unsigned n = s->nservers[side];
    unsigned start, k, i;

    assert(mask != 0);
    /* The cursor may come from a snapshot with more servers (reload). */
    start = cur->next[side] % n;
    for (k = 0; k < n; k++) {
        i = (start + k) % n;
        if (mask & ((uint64_t)1 << i)) {
            cur->next[side] = (i + 1) % n;
            return i;
        }
    }
    assert(0 && "usable mask without a usable server");
    return 0;
}

void
rt_choose(const struct rt_snapshot *s, struct rt_cursor *cur,
          const struct rt_input *in, struct rt_choice *out)
{
    const struct rt_conf *conf;
    enum rt_sticky_by by;
    enum rt_side want, forced;
    bool up[RT_SIDE__COUNT];
    uint32_t draw;

    assert(s != NULL && cur != NULL && in != NULL && out != NULL);
    conf = s->conf;
    by = conf != NULL ? conf->sticky_by : RT_STICKY_NONE;

    memset(out, 0, sizeof(*out));
    out->side = RT_NONE;
    out->reason = RT_R_NONE;

    /* first, so that a refused override is counted whatever follows */
    forced = override_side(conf, in, &out->override_refused);
    up[RT_LEGACY] = rt_side_usable(s, RT_LEGACY);
    up[RT_NEW] = rt_side_usable(s, RT_NEW);
    if (!up[RT_LEGACY] && !up[RT_NEW])
        return;

    if (forced != RT_NONE && up[forced]) {
        out->side = forced;
        out->reason = RT_R_OVERRIDE;
        out->server = pick_server(s, cur, forced);
        return;
    }
    /* An override naming a side that is down falls through to the usual
     * rules, which then fall back away from that side if they pick it. */

    switch (by) {
    case RT_STICKY_COOKIE:
        /* A bucket out of range cannot come from rt_bucket_parse(): treat
         * it as no cookie rather than trusting it. */
        if (in->has_cookie_bucket && in->cookie_bucket < RT_BP_MAX) {
            out->bucket = in->cookie_bucket;
        } else {
            out->bucket = (uint32_t)(in->rand % RT_BP_MAX);
            out->issue_cookie = true;
        }
        out->has_bucket = true;
        break;
    case RT_STICKY_HEADER:
    case RT_STICKY_CLIENT_IP:
        if (in->sticky_key != NULL) {
            out->bucket = rt_bucket(in->sticky_key, in->sticky_len, conf->seed);
            out->has_bucket = true;
        }
        break;
    case RT_STICKY_NONE:
    default:
        break;
    }

    if (out->has_bucket) {
        draw = out->bucket;
        out->reason = RT_R_STICKY;
    } else {
        draw = (uint32_t)(in->rand % RT_BP_MAX);
        out->reason = RT_R_WEIGHT;
    }
    /* draw <= 9999: weight 0 never picks new, 10000 always does */
    want = draw < s->weight_bp ? RT_NEW : RT_LEGACY;

    if (!up[want]) {
        want = want == RT_NEW ? RT_LEGACY : RT_NEW;
        out->fallback = true;
        out->reason = RT_R_FALLBACK;
    }
    out->side = want;
    out->server = pick_server(s, cur, want);
}

int
rt_bucket_parse(const char *val, size_t len, uint32_t *bucket)
{
    uint32_t v = 0;
    size_t i;

    if (val == NULL || len == 0 || len > 4)
        return -1;
    if (val[0] == '0' && len > 1)
        return -1;
    for (i = 0; i < len; i++) {
        if (val[i] < '0' || val[i] > '9')
            return -1;
        v = v * 10 + (uint32_t)(val[i] - '0');
    }
    /* four digits at most: v <= 9999 < RT_BP_MAX */
    *bucket = v;
    return 0;
}
