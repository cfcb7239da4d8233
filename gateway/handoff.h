/* handoff.h: one direction of the hand-off between two threads: a bounded SPSC ring, the
 * producer's overflow list behind it, and the "want room" wake-up that ends backpressure.
 * Both directions between a service thread and an API-node writer (events up, commands down)
 * are this one protocol (link.h holds the pair).
 *
 * Protocol (the producer never blocks, nothing is dropped, nobody sleeps on work):
 *   producer: an item goes into the ring, or, when the ring is full or older items already
 *     wait, onto the overflow list (order kept). While the overflow is not empty the producer
 *     RAISES want_room and THEN RETRIES moving the overflow into the ring (gw_handoff_flush).
 *   consumer: after popping items, it looks at want_room; if raised, it lowers it and wakes
 *     the producer (wake_producer), which flushes again.
 * Why raise-then-retry: the consumer may empty the ring between the producer's failed push
 * and its raising the flag. Then the consumer's look at the flag came too early to see it, and
 * only the producer's retry, which comes after the flag, can find the room: without it both
 * threads sleep with items in the overflow (a lost wake-up). With it, one of the two always
 * sees the other (a seq_cst store/fence on each side, Dekker style).
 *
 * Items are objects whose first member is a `next` pointer (gw_event_t, gw_cmd_t): the
 * overflow links them through it, so it never allocates and never fails.
 *
 * The consumer is woken for new items by the caller (coalesced per burst: wake.h /
 * lws_cancel_service); this module only does the room wake-up back to the producer.
 *
 * Threads: gw_handoff_push/flush/overflowing: producer thread only. gw_handoff_pop: consumer
 * thread only. gw_handoff_count: any thread. init/free: main thread, when neither side runs. */
#ifndef GW_HANDOFF_H
#define GW_HANDOFF_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "ring.h"

typedef void (*gw_handoff_wake_fn)(void *ud);

/* The head every item starts with. */
typedef struct gw_handoff_item {
    struct gw_handoff_item *next; /* overflow link: the producer's while the item is there */
} gw_handoff_item_t;

typedef struct gw_handoff {
    ring_t *ring;                  /* producer -> consumer */
    _Atomic int want_room;         /* producer raises while its overflow waits for room */
    gw_handoff_wake_fn wake_producer; /* consumer calls it when it made room after a raise */
    void *wake_ud;
    /* producer thread only: the overflow, oldest first */
    gw_handoff_item_t *_ovf_head, *_ovf_tail;
} gw_handoff_t;

/* gw_handoff_init: a ring of at least ring_size items. Returns 0 or -1 (out of memory). */
int gw_handoff_init(gw_handoff_t *h, size_t ring_size, gw_handoff_wake_fn wake_producer,
                    void *wake_ud);
/* gw_handoff_free: frees the ring and overflow; free_item (may be NULL) gets every item still
 * held, oldest first. */
void gw_handoff_free(gw_handoff_t *h, void (*free_item)(void *));

/* gw_handoff_push (producer): hands item over (the handoff owns it from now on). true: it is
 * in the ring. false: it waits in order behind the ring, and goes in with a later flush: the
 * caller should stop producing (backpressure) until gw_handoff_flush returns true. */
bool gw_handoff_push(gw_handoff_t *h, void *item);
/* gw_handoff_flush (producer): moves overflow into the ring (raise-then-retry, above).
 * Returns true when nothing is left over. */
bool gw_handoff_flush(gw_handoff_t *h);
/* gw_handoff_overflowing (producer): items wait in the overflow. */
static inline bool gw_handoff_overflowing(const gw_handoff_t *h) { return h->_ovf_head != NULL; }
/* gw_handoff_try_ring (producer): the item goes into the ring only if that keeps order (no
 * overflow) and there is room; never onto the overflow. false: the caller keeps item, and
 * want_room is raised (then retried, as above): the consumer wakes the producer once it has
 * made room. For producers that would rather retry later themselves (presence resync). */
bool gw_handoff_try_ring(gw_handoff_t *h, void *item);

/* gw_handoff_pop (consumer): up to max items, oldest first; ownership passes to the caller.
 * Wakes the producer when it waits for room. */
size_t gw_handoff_pop(gw_handoff_t *h, void **out, size_t max);

/* gw_handoff_count (any thread): items in the ring (not the overflow) at some instant. */
static inline size_t gw_handoff_count(gw_handoff_t *h) { return ring_count(h->ring); }

/* Test hook (tests only; NULL otherwise): called by the producer after an item did not fit
 * and before it raises want_room, so a test can run the consumer in exactly that gap. */
extern void (*gw_handoff_test_gap)(gw_handoff_t *h);

#endif
