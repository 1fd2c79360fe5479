/*
 * Tests for lib/list.h: push and append put nodes first and last, unlink
 * takes any node off (twice is harmless) and list_linked() tells; the
 * order is checked both ways round after every step, so a wrong prev
 * pointer cannot hide; list_for_each_safe() survives the removal of the
 * node it stands on, and list_entry() finds the owner.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "lib/list.h"

struct item {
    int v;
    struct list node;            /* not first: list_entry() must subtract */
};

/* The values on <head> front to back as text ("3 1 2"; "" when empty),
 * after checking that walking back to front gives the same nodes. */
static const char *
order(struct list *head, char *buf, size_t len)
{
    struct list *n, *fwd[32];
    size_t k = 0, o = 0, i;

    buf[0] = '\0';
    for (n = head->next; n != head; n = n->next) {
        assert_true(k < 32);
        assert_ptr_equal(n->next->prev, n);
        fwd[k++] = n;
    }
    for (n = head->prev, i = k; n != head; n = n->prev)
        assert_ptr_equal(n, fwd[--i]);
    assert_int_equal(i, 0);
    for (i = 0; i < k; i++)
        o += (size_t)snprintf(buf + o, len - o, "%s%d", i ? " " : "",
                              list_entry(fwd[i], struct item, node)->v);
    return buf;
}

static void
test_push_append_unlink(void **state)
{
    struct list head;
    struct item it[5];
    char buf[128];
    int i;

    (void)state;
    list_init(&head);
    assert_true(list_empty(&head));
    assert_string_equal(order(&head, buf, sizeof(buf)), "");
    for (i = 0; i < 5; i++) {
        it[i].v = i;
        list_init(&it[i].node);
        assert_false(list_linked(&it[i].node));
    }

    list_push(&head, &it[1].node);
    assert_false(list_empty(&head));
    assert_true(list_linked(&it[1].node));
    list_push(&head, &it[0].node);
    list_append(&head, &it[2].node);
    list_append(&head, &it[3].node);
    list_push(&head, &it[4].node);
    assert_string_equal(order(&head, buf, sizeof(buf)), "4 0 1 2 3");

    /* the middle, the first and the last */
    list_unlink(&it[1].node);
    assert_false(list_linked(&it[1].node));
    assert_ptr_equal(it[1].node.next, &it[1].node);
    assert_ptr_equal(it[1].node.prev, &it[1].node);
    assert_string_equal(order(&head, buf, sizeof(buf)), "4 0 2 3");
    list_unlink(&it[4].node);
    assert_string_equal(order(&head, buf, sizeof(buf)), "0 2 3");
    list_unlink(&it[3].node);
    assert_string_equal(order(&head, buf, sizeof(buf)), "0 2");

    /* unlinking again changes nothing */
    list_unlink(&it[3].node);
    list_unlink(&it[1].node);
    assert_string_equal(order(&head, buf, sizeof(buf)), "0 2");

    /* an unlinked node can go on again, at either end */
    list_append(&head, &it[4].node);
    list_push(&head, &it[1].node);
    assert_string_equal(order(&head, buf, sizeof(buf)), "1 0 2 4");

    list_unlink(&it[0].node);
    list_unlink(&it[2].node);
    list_unlink(&it[1].node);
    list_unlink(&it[4].node);
    assert_true(list_empty(&head));
    assert_ptr_equal(head.next, &head);
    assert_ptr_equal(head.prev, &head);
}

static void
test_static_head(void **state)
{
    static struct list head = LIST_HEAD_INIT(head);
    struct item a = { .v = 7 };
    char buf[32];

    (void)state;
    assert_true(list_empty(&head));
    list_init(&a.node);
    list_append(&head, &a.node);
    assert_string_equal(order(&head, buf, sizeof(buf)), "7");
    assert_ptr_equal(list_entry(head.next, struct item, node), &a);
    list_unlink(&a.node);
    assert_true(list_empty(&head));
}

static void
test_for_each_safe(void **state)
{
    struct list head, *pos, *tmp;
    struct item it[8];
    char buf[128];
    int i, seen;

    (void)state;
    list_init(&head);
    for (i = 0; i < 8; i++) {
        it[i].v = i;
        list_init(&it[i].node);
        list_append(&head, &it[i].node);
    }

    /* every node is visited once, in order, while the odd ones go */
    seen = 0;
    list_for_each_safe(pos, tmp, &head) {
        struct item *x = list_entry(pos, struct item, node);

        assert_int_equal(x->v, seen);
        seen++;
        if (x->v % 2 == 1)
            list_unlink(pos);
    }
    assert_int_equal(seen, 8);
    assert_string_equal(order(&head, buf, sizeof(buf)), "0 2 4 6");
    for (i = 1; i < 8; i += 2)
        assert_false(list_linked(&it[i].node));

    /* removing every node empties the list */
    seen = 0;
    list_for_each_safe(pos, tmp, &head) {
        list_unlink(pos);
        seen++;
    }
    assert_int_equal(seen, 4);
    assert_true(list_empty(&head));

    /* an empty list runs the body never */
    list_for_each_safe(pos, tmp, &head)
        fail_msg("visited a node of an empty list");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_push_append_unlink),
        cmocka_unit_test(test_static_head),
        cmocka_unit_test(test_for_each_safe),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
