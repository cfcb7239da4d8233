/* ring.h: bounded lock-free single-producer single-consumer ring of pointers.
 *
 * The hand-off between an lws service thread and an upstream writer thread (and back).
 * Hand-written on C11 atomics instead of ck_ring (libck-dev): ck's SPSC ring is ~8 % faster
 * in a microbenchmark here, but ThreadSanitizer reports races inside ck (its own fences are
 * invisible to TSan), and a clean TSan CI job matters more than 8 % of a path that is never
 * the bottleneck (FIELD-NOTES.md: 139 M items/s on 2 cores).
 *
 * head (consumer) and tail (producer) live on separate cache lines; each side keeps a cached
 * copy of the other's index so the shared line is read only when the cache says full/empty. */
#ifndef WSGW_RING_H
#define WSGW_RING_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#define RING_CACHELINE 64

typedef struct ring {
    alignas(RING_CACHELINE) _Atomic size_t head; /* written by the consumer only */
    size_t _tail_cache;                          /* consumer's last view of tail */
    alignas(RING_CACHELINE) _Atomic size_t tail; /* written by the producer only */
    size_t _head_cache;                          /* producer's last view of head */
    alignas(RING_CACHELINE) size_t mask;         /* capacity - 1, immutable */
    void *slots[];
} ring_t;

/* ring_new: a ring holding at least `capacity` items (rounded up to a power of two, >= 2).
 * Returns NULL on allocation failure. The caller owns the ring; free it with ring_free once
 * neither thread uses it. */
ring_t *ring_new(size_t capacity);
void ring_free(ring_t *r);

/* Capacity in items. Any thread. */
static inline size_t ring_capacity(const ring_t *r) { return r->mask + 1; }

/* ring_push (producer thread only): appends `item`. Returns false when the ring is full
 * (nothing is written; the caller keeps ownership of item and applies backpressure). */
bool ring_push(ring_t *r, void *item);

/* ring_push_batch (producer thread only): appends up to n items in order, returns how many
 * were written (0..n); the rest stay with the caller. One release store for the batch. */
size_t ring_push_batch(ring_t *r, void *const *items, size_t n);

/* ring_pop_batch (consumer thread only): moves up to max items into out[], oldest first,
 * returns how many. One release store for the batch. Ownership of the items passes to the
 * caller. */
size_t ring_pop_batch(ring_t *r, void **out, size_t max);

/* ring_pop (consumer thread only): the oldest item or NULL when empty. */
void *ring_pop(ring_t *r);

/* ring_free_slots (producer thread only): how many items a push could take right now (a lower
 * bound: the consumer may free more concurrently). */
size_t ring_free_slots(ring_t *r);

/* ring_count (any thread): items in the ring at some instant during the call. */
size_t ring_count(ring_t *r);

#endif
