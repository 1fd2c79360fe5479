/*
 * hmap: an index from byte strings to unsigned values (open addressing,
 * FNV-1a), for the lookups by name or address that a configuration of n
 * services makes n times: a reload, a config check, the control plane's
 * reconfiguration. Built, read, freed; no removal. Keys are borrowed (they
 * must outlive the index); several entries may share a key, and
 * hmap_next() walks them (in no particular order). A leaf: libc only.
 */
#ifndef CUTOVER_LIB_HMAP_H
#define CUTOVER_LIB_HMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct hmap_slot {
    const void *key;             /* borrowed; NULL: empty slot */
    size_t len;
    uint64_t hash;
    unsigned value;
};

struct hmap {
    struct hmap_slot *slots;     /* owned: <cap> slots, a power of two */
    unsigned cap;
    unsigned n;                  /* entries */
};

/* An empty index sized for about <expected> entries (it grows as needed). */
void hmap_init(struct hmap *m, unsigned expected);

void hmap_free(struct hmap *m);

/* Adds <key> (<len> bytes, borrowed) -> <value>; a key already there is
 * added again (see hmap_next). */
void hmap_put(struct hmap *m, const void *key, size_t len, unsigned value);

/* The same with a NUL-terminated key. */
void hmap_put_str(struct hmap *m, const char *key, unsigned value);

/* Walks the entries of <key>: start with *<pos> = 0; each call sets
 * *<value> to the next one's value and returns true, or returns false when
 * none is left. */
bool hmap_next(const struct hmap *m, const void *key, size_t len, unsigned *pos,
               unsigned *value);

/* The value of the first entry of NUL-terminated <key> in *<value>; false
 * when there is none. */
bool hmap_get_str(const struct hmap *m, const char *key, unsigned *value);

#endif
