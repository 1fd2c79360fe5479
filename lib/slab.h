/*
 * slab: objects of one size, packed in blocks of SLAB_BLOCK bytes mapped on
 * their own, for objects that live long beside short-lived allocations (an
 * idle keep-alive connection beside the buffers of busy ones). Out of the
 * malloc heap, such objects leave no holes between the buffers that come
 * and go, and no holes of their own in it when they go; each costs its size
 * exactly (no allocator header). A block is unmapped when its last object
 * is freed, except one empty block kept so that a count going up and down
 * by one across a block's edge does not map and unmap per object. One slab
 * belongs to one thread (no locks).
 */
#ifndef CUTOVER_LIB_SLAB_H
#define CUTOVER_LIB_SLAB_H

#include <stddef.h>

#include "lib/list.h"

/* Bytes per block, a power of two (a block is aligned to its size, so an
 * object finds its block by masking its address). */
#define SLAB_BLOCK 65536u

struct slab {
    size_t size;                 /* bytes per object, a multiple of 16 */
    unsigned per_block;          /* objects per block */
    struct list partial;         /* blocks with objects and free slots */
    struct list full;            /* blocks without a free slot */
    struct slab_block *spare;    /* owned: one block without objects, or NULL */
    size_t blocks;               /* blocks mapped (the spare included) */
    size_t live;                 /* objects allocated */
};

/* An empty slab of objects of <size> bytes (at most a quarter of a
 * block): maps nothing yet. */
void slab_init(struct slab *s, size_t size);

/* A zeroed object; NULL when no block can be mapped (errno set). */
void *slab_alloc(struct slab *s);

/* Gives back object <p> of <s> (NULL: nothing). */
void slab_free(struct slab *s, void *p);

/* Unmaps every block; objects still allocated are gone with them. A
 * zeroed struct slab that slab_init() never saw has nothing to unmap. */
void slab_destroy(struct slab *s);

#endif
