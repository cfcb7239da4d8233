/* handoff.c: one direction of the service-thread <-> writer hand-off (see handoff.h). */
#include "handoff.h"

#include <stdlib.h>

void (*gw_handoff_test_gap)(gw_handoff_t *h);

int gw_handoff_init(gw_handoff_t *h, size_t ring_size, gw_handoff_wake_fn wake_producer,
                    void *wake_ud)
{
    h->ring = ring_new(ring_size);
    if (!h->ring)
        return -1;
    atomic_init(&h->want_room, 0);
    h->wake_producer = wake_producer;
    h->wake_ud = wake_ud;
    h->_ovf_head = h->_ovf_tail = NULL;
    return 0;
}

void gw_handoff_free(gw_handoff_t *h, void (*free_item)(void *))
{
    if (h->ring) {
        void *it;
        while ((it = ring_pop(h->ring)))
            if (free_item)
                free_item(it);
        ring_free(h->ring);
        h->ring = NULL;
    }
    while (h->_ovf_head) {
        gw_handoff_item_t *it = h->_ovf_head;
        h->_ovf_head = it->next;
        if (free_item)
            free_item(it);
    }
    h->_ovf_tail = NULL;
}

/* Producer: moves the overflow into the ring, oldest first, as far as it fits. */
static void ovf_move(gw_handoff_t *h)
{
    while (h->_ovf_head) {
        gw_handoff_item_t *it = h->_ovf_head, *next = it->next; /* theirs once pushed */
        if (!ring_push(h->ring, it))
            return;
        h->_ovf_head = next;
    }
    h->_ovf_tail = NULL;
}

bool gw_handoff_flush(gw_handoff_t *h)
{
    if (!h->_ovf_head)
        return true;
    ovf_move(h);
    if (!h->_ovf_head)
        return true;
    if (gw_handoff_test_gap)
        gw_handoff_test_gap(h);
    /* Raise, then retry: room the consumer made before it could see the flag is found by
     * this retry; room it makes after sees the flag and wakes us (handoff.h). */
    atomic_store_explicit(&h->want_room, 1, memory_order_seq_cst);
    atomic_thread_fence(memory_order_seq_cst);
    ovf_move(h);
    if (h->_ovf_head)
        return false;
    /* all in: no wake-up needed any more (a consumer that saw the flag wakes us once, idly) */
    atomic_store_explicit(&h->want_room, 0, memory_order_relaxed);
    return true;
}

bool gw_handoff_push(gw_handoff_t *h, void *item)
{
    gw_handoff_item_t *it = item;
    if (!h->_ovf_head && ring_push(h->ring, it))
        return true;
    it->next = NULL;
    if (h->_ovf_tail)
        h->_ovf_tail->next = it;
    else
        h->_ovf_head = it;
    h->_ovf_tail = it;
    return gw_handoff_flush(h);
}

bool gw_handoff_try_ring(gw_handoff_t *h, void *item)
{
    if (!gw_handoff_flush(h))
        return false; /* older items still wait: flush raised want_room (and retried) */
    if (ring_push(h->ring, item))
        return true;
    if (gw_handoff_test_gap)
        gw_handoff_test_gap(h);
    atomic_store_explicit(&h->want_room, 1, memory_order_seq_cst); /* raise, then retry */
    atomic_thread_fence(memory_order_seq_cst);
    if (!ring_push(h->ring, item))
        return false;
    atomic_store_explicit(&h->want_room, 0, memory_order_relaxed); /* in after all */
    return true;
}

size_t gw_handoff_pop(gw_handoff_t *h, void **out, size_t max)
{
    size_t n = ring_pop_batch(h->ring, out, max);
    if (!n)
        return 0;
    /* our pops (release) before the look at the flag: pairs with the producer's raise+fence */
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&h->want_room, memory_order_relaxed) &&
        atomic_exchange_explicit(&h->want_room, 0, memory_order_seq_cst) && h->wake_producer)
        h->wake_producer(h->wake_ud);
    return n;
}
