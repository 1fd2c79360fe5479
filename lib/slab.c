/*
 * slab: see slab.h. A block starts with its header; its slots follow, carved
 * in order as they are first needed (untouched pages of a block stay out of
 * the resident set) and kept on the block's free list once given back.
 */
#include <assert.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "lib/slab.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define SLAB_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define SLAB_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define SLAB_POISON(p, n) ((void)(p), (void)(n))
#define SLAB_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

struct slab_free {
    struct slab_free *next;
};

struct slab_block {
    struct list link;            /* on slab.partial or slab.full (not the spare) */
    struct slab_free *free;      /* slots given back */
    unsigned live;               /* objects allocated from it */
    unsigned carved;             /* slots handed out at least once */
};

/* The header rounded up, so that every slot is 16-byte aligned. */
#define SLAB_HEAD ((sizeof(struct slab_block) + 15u) & ~(size_t)15u)

void
slab_init(struct slab *s, size_t size)
{
    memset(s, 0, sizeof(*s));
    s->size = (size + 15u) & ~(size_t)15u;
    assert(s->size > 0 && s->size <= SLAB_BLOCK / 4);
    s->per_block = (unsigned)((SLAB_BLOCK - SLAB_HEAD) / s->size);
    list_init(&s->partial);
    list_init(&s->full);
}

/* A block aligned to SLAB_BLOCK: twice its size mapped, the rest unmapped. */
static struct slab_block *
block_map(void)
{
    size_t len = 2 * (size_t)SLAB_BLOCK;
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    uintptr_t at;
    size_t head;

    if (p == MAP_FAILED)
        return NULL;
    at = ((uintptr_t)p + SLAB_BLOCK - 1) & ~(uintptr_t)(SLAB_BLOCK - 1);
    head = at - (uintptr_t)p;
    if (head > 0)
        munmap(p, head);
    if (len - head > SLAB_BLOCK)
        munmap((char *)at + SLAB_BLOCK, len - head - SLAB_BLOCK);
    return (struct slab_block *)at;
}

/* Unmaps <b>, its poisoned slots cleared first (the address range may be
 * mapped again, by anyone). */
static void
block_unmap(struct slab_block *b)
{
    SLAB_UNPOISON(b, SLAB_BLOCK);
    munmap(b, SLAB_BLOCK);
}

static struct slab_block *
block_of(const void *p)
{
    return (struct slab_block *)((uintptr_t)p & ~(uintptr_t)(SLAB_BLOCK - 1));
}

void *
slab_alloc(struct slab *s)
{
    struct slab_block *b;
    void *p;

    if (!list_empty(&s->partial)) {
        b = list_entry(s->partial.next, struct slab_block, link);
    } else {
        if (s->spare != NULL) {
            b = s->spare;
            s->spare = NULL;
        } else {
            if ((b = block_map()) == NULL)
                return NULL;
            s->blocks++;               /* its pages are zero: no slot free, live or carved */
        }
        list_push(&s->partial, &b->link);
    }
    if (b->free != NULL) {
        p = b->free;
        SLAB_UNPOISON(p, s->size);
        b->free = b->free->next;
    } else {
        p = (char *)b + SLAB_HEAD + (size_t)b->carved++ * s->size;
        SLAB_UNPOISON(p, s->size);     /* a spare block's slots were given back */
    }
    if (++b->live == s->per_block) {
        list_unlink(&b->link);
        list_push(&s->full, &b->link);
    }
    s->live++;
    memset(p, 0, s->size);
    return p;
}

void
slab_free(struct slab *s, void *p)
{
    struct slab_block *b;
    struct slab_free *f = p;

    if (p == NULL)
        return;
    b = block_of(p);
    assert(b->live > 0 && s->live > 0);
    if (b->live-- == s->per_block) {
        list_unlink(&b->link);
        list_append(&s->partial, &b->link);   /* it has room again: used last */
    }
    s->live--;
    f->next = b->free;
    b->free = f;
    SLAB_POISON(p, s->size);
    if (b->live > 0)
        return;
    list_unlink(&b->link);
    if (s->spare == NULL) {
        /* slots carved again from the start: its free list is forgotten */
        b->free = NULL;
        b->carved = 0;
        s->spare = b;
        return;
    }
    block_unmap(b);
    s->blocks--;
}

static void
unmap_all(struct list *blocks)
{
    while (!list_empty(blocks)) {
        struct slab_block *b = list_entry(blocks->next, struct slab_block, link);

        list_unlink(&b->link);
        block_unmap(b);
    }
}

void
slab_destroy(struct slab *s)
{
    if (s->size == 0)
        return;                        /* zeroed, never set up: nothing mapped */
    unmap_all(&s->partial);
    unmap_all(&s->full);
    if (s->spare != NULL)
        block_unmap(s->spare);
    s->spare = NULL;
    s->blocks = 0;
    s->live = 0;
}
