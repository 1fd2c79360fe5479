/*
 * hmap: see hmap.h. Linear probing in a table kept at most half full; a
 * lookup walks from the key's home slot to the first empty one.
 */
#include <stdlib.h>
#include <string.h>

#include "lib/hmap.h"
#include "lib/xmalloc.h"

static uint64_t
fnv1a(const void *key, size_t len)
{
    const unsigned char *p = key;
    uint64_t h = 14695981039346656037ULL;
    size_t i;

    for (i = 0; i < len; i++)
        h = (h ^ p[i]) * 1099511628211ULL;
    return h ^ (h >> 29);
}

void
hmap_init(struct hmap *m, unsigned expected)
{
    unsigned cap = 16;

    while (cap < 2 * expected && cap < (1u << 30))
        cap *= 2;
    m->slots = xcalloc(cap, sizeof(*m->slots));
    m->cap = cap;
    m->n = 0;
}

void
hmap_free(struct hmap *m)
{
    free(m->slots);
    memset(m, 0, sizeof(*m));
}

static void
place(struct hmap_slot *slots, unsigned cap, const struct hmap_slot *e)
{
    unsigned i = (unsigned)e->hash & (cap - 1);

    while (slots[i].key != NULL)
        i = (i + 1) & (cap - 1);
    slots[i] = *e;
}

void
hmap_put(struct hmap *m, const void *key, size_t len, unsigned value)
{
    struct hmap_slot e = { .key = key, .len = len, .hash = fnv1a(key, len), .value = value };
    unsigned i;

    if (2 * (m->n + 1) > m->cap) {
        struct hmap_slot *slots = xcalloc(2 * (size_t)m->cap, sizeof(*slots));

        for (i = 0; i < m->cap; i++)
            if (m->slots[i].key != NULL)
                place(slots, 2 * m->cap, &m->slots[i]);
        free(m->slots);
        m->slots = slots;
        m->cap *= 2;
    }
    /* an empty key still needs a non-NULL pointer to mark the slot used */
    if (e.key == NULL)
        e.key = "";
    place(m->slots, m->cap, &e);
    m->n++;
}

void
hmap_put_str(struct hmap *m, const char *key, unsigned value)
{
    hmap_put(m, key, strlen(key), value);
}

bool
hmap_next(const struct hmap *m, const void *key, size_t len, unsigned *pos,
          unsigned *value)
{
    uint64_t h = fnv1a(key, len);
    unsigned home = (unsigned)h & (m->cap - 1), i;

    for (i = *pos; i < m->cap; i++) {
        const struct hmap_slot *s = &m->slots[(home + i) & (m->cap - 1)];

        if (s->key == NULL)
            return false;
        if (s->hash == h && s->len == len && memcmp(s->key, key, len) == 0) {
            *pos = i + 1;
            *value = s->value;
            return true;
        }
    }
    return false;
}

bool
hmap_get_str(const struct hmap *m, const char *key, unsigned *value)
{
    unsigned pos = 0;

    return hmap_next(m, key, strlen(key), &pos, value);
}
