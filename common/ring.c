/* ring.c: bounded lock-free SPSC ring (see ring.h). */
#include "ring.h"

#include <stdint.h>
#include <stdlib.h>

ring_t *ring_new(size_t capacity)
{
    size_t cap = 2;
    while (cap < capacity) {
        if (cap > SIZE_MAX / 4)
            return NULL;
        cap <<= 1;
    }
    ring_t *r = aligned_alloc(RING_CACHELINE,
                              (sizeof(ring_t) + cap * sizeof(void *) + RING_CACHELINE - 1) /
                                  RING_CACHELINE * RING_CACHELINE);
    if (!r)
        return NULL;
    atomic_init(&r->head, 0);
    atomic_init(&r->tail, 0);
    r->_tail_cache = 0;
    r->_head_cache = 0;
    r->mask = cap - 1;
    return r;
}

void ring_free(ring_t *r)
{
    free(r);
}

/* Producer: room for n more items? Refreshes the cached head only when the cache says no. */
static size_t producer_room(ring_t *r, size_t tail)
{
    size_t cap = r->mask + 1;
    size_t room = cap - (tail - r->_head_cache);
    if (room == 0) {
        r->_head_cache = atomic_load_explicit(&r->head, memory_order_acquire);
        room = cap - (tail - r->_head_cache);
    }
    return room;
}

bool ring_push(ring_t *r, void *item)
{
    size_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    if (producer_room(r, tail) == 0)
        return false;
    r->slots[tail & r->mask] = item;
    atomic_store_explicit(&r->tail, tail + 1, memory_order_release);
    return true;
}

size_t ring_push_batch(ring_t *r, void *const *items, size_t n)
{
    size_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    size_t room = producer_room(r, tail);
    if (room < n) { /* the cache may be stale even when non-zero: look once more */
        r->_head_cache = atomic_load_explicit(&r->head, memory_order_acquire);
        room = (r->mask + 1) - (tail - r->_head_cache);
    }
    if (n > room)
        n = room;
    for (size_t i = 0; i < n; i++)
        r->slots[(tail + i) & r->mask] = items[i];
    if (n)
        atomic_store_explicit(&r->tail, tail + n, memory_order_release);
    return n;
}

size_t ring_pop_batch(ring_t *r, void **out, size_t max)
{
    size_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    size_t avail = r->_tail_cache - head;
    if (avail < max) {
        r->_tail_cache = atomic_load_explicit(&r->tail, memory_order_acquire);
        avail = r->_tail_cache - head;
    }
    if (avail > max)
        avail = max;
    for (size_t i = 0; i < avail; i++)
        out[i] = r->slots[(head + i) & r->mask];
    if (avail)
        atomic_store_explicit(&r->head, head + avail, memory_order_release);
    return avail;
}

void *ring_pop(ring_t *r)
{
    void *item;
    return ring_pop_batch(r, &item, 1) ? item : NULL;
}

size_t ring_free_slots(ring_t *r)
{
    size_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    r->_head_cache = atomic_load_explicit(&r->head, memory_order_acquire);
    return (r->mask + 1) - (tail - r->_head_cache);
}

size_t ring_count(ring_t *r)
{
    size_t head = atomic_load_explicit(&r->head, memory_order_acquire);
    size_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
    return tail - head;
}
