/* sched.h: a binary min-heap of (due time, connection) pairs: when each open-loop connection
 * sends its next message. One per engine thread; memory grows on demand (16 bytes an entry).
 *
 * Thread: the owning engine thread only. */
#ifndef WSGW_BENCH_SCHED_H
#define WSGW_BENCH_SCHED_H

#include <stdbool.h>
#include <stdint.h>

typedef struct sched_item {
    int64_t due;
    uint32_t id;
} sched_item_t;

typedef struct sched {
    sched_item_t *items;
    uint32_t len, cap;
} sched_t;

#define SCHED_INIT {NULL, 0, 0}

/* sched_push: adds (due, id). Returns 0, or -1 when out of memory (s unchanged). */
int sched_push(sched_t *s, int64_t due, uint32_t id);

/* sched_peek: the earliest due time into *due; false when empty. */
bool sched_peek(const sched_t *s, int64_t *due);

/* sched_pop: removes and returns the earliest entry (ties in any order). s must not be empty. */
sched_item_t sched_pop(sched_t *s);

/* sched_free: releases the memory; s is empty and reusable after. */
void sched_free(sched_t *s);

#endif
