/*
 * lib/list: one intrusive doubly linked list, for the connections of a
 * loop, the idle upstream connections of a pool, the admin clients and the
 * servers' checkers. A node is embedded in its owner; list_entry() gets the
 * owner back. O(1) insert and unlink, no allocation. A leaf: header only.
 *
 * The head is a node of its own (circular, never NULL), so neither insert
 * nor unlink has a special case for the first or last element; an unlinked
 * node points at itself, so list_unlink() twice is harmless and
 * list_linked() tells whether a node is on a list.
 */
#ifndef CUTOVER_LIB_LIST_H
#define CUTOVER_LIB_LIST_H

#include <stdbool.h>
#include <stddef.h>

struct list {
    struct list *next, *prev;
};

#define LIST_HEAD_INIT(name) { &(name), &(name) }

static inline void
list_init(struct list *l)
{
    l->next = l;
    l->prev = l;
}

static inline bool
list_empty(const struct list *head)
{
    return head->next == head;
}

/* True when <n> is on a list (it was inserted and not unlinked since). */
static inline bool
list_linked(const struct list *n)
{
    return n->next != n;
}

/* Inserts <n> first on <head>. */
static inline void
list_push(struct list *head, struct list *n)
{
    n->next = head->next;
    n->prev = head;
    head->next->prev = n;
    head->next = n;
}

/* Inserts <n> last on <head>. */
static inline void
list_append(struct list *head, struct list *n)
{
    n->next = head;
    n->prev = head->prev;
    head->prev->next = n;
    head->prev = n;
}

/* Takes <n> off its list and leaves it pointing at itself. */
static inline void
list_unlink(struct list *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->next = n;
    n->prev = n;
}

/* The struct of type <type> whose member <member> is node <ptr>. */
#define list_entry(ptr, type, member) \
    ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* Iterates <pos> (a struct list *) over <head>; <tmp> keeps the next node,
 * so the body may unlink <pos>. */
#define list_for_each_safe(pos, tmp, head) \
    for ((pos) = (head)->next, (tmp) = (pos)->next; (pos) != (head); \
         (pos) = (tmp), (tmp) = (pos)->next)

#endif
