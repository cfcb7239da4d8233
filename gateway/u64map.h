/* u64map.h: open-addressing hash map from non-zero uint64 keys to pointers (linear probing,
 * backward-shift deletion: no tombstones). 16 bytes per slot, load <= 1/2. Used by writers
 * to remember each live connection's Open event for presence resync. Single thread. */
#ifndef GW_U64MAP_H
#define GW_U64MAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct u64map_entry {
    uint64_t key; /* 0 = empty */
    void *val;
} u64map_entry_t;

typedef struct u64map {
    u64map_entry_t *slots;
    size_t cap;  /* power of two, 0 when empty */
    size_t len;
} u64map_t;

#define U64MAP_INIT {NULL, 0, 0}

/* u64map_put: sets key -> val (key != 0). Returns the previous value (NULL if none) through
 * *old when old is non-NULL. Returns 0, or -1 when out of memory (map unchanged). */
int u64map_put(u64map_t *m, uint64_t key, void *val, void **old);
/* u64map_get: the value or NULL. */
void *u64map_get(const u64map_t *m, uint64_t key);
/* u64map_del: removes key; returns its value or NULL. */
void *u64map_del(u64map_t *m, uint64_t key);
/* u64map_free: releases the table (not the values). */
void u64map_free(u64map_t *m);

/* Iteration: for (size_t i = 0; i < m->cap; i++) if (m->slots[i].key) ... */

#endif
