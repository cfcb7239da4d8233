/* hmap.h: intrusive chained hash table (ws-api presence: conn id, user id, gateway id).
 *
 * The caller embeds an hmap_node_t in its own struct, computes the key's hash and compares
 * keys itself while walking the chain of one hash value:
 *
 *   for (hmap_node_t *n = hmap_first(&m, h); n; n = hmap_next(n, h))
 *       if (container_of(n)->key == key) ...
 *
 * The table never owns the nodes. Not thread-safe: one owner thread (ws-api's loop thread). */
#ifndef WSGW_HMAP_H
#define WSGW_HMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct hmap_node {
    struct hmap_node *next;
    uint64_t hash;
} hmap_node_t;

typedef struct hmap {
    hmap_node_t **buckets; /* nbuckets is a power of two, or 0 before the first insert */
    size_t nbuckets;
    size_t count;
} hmap_t;

#define HMAP_INIT {NULL, 0, 0}

#define hmap_entry(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* hmap_insert: links `node` under `hash` (duplicates allowed: the caller checks first).
 * Returns 0, or -1 when the first bucket array cannot be allocated (node not linked). A failed
 * grow later is not an error: the table keeps working with longer chains. */
int hmap_insert(hmap_t *m, hmap_node_t *node, uint64_t hash);

/* hmap_remove: unlinks a node that is in the table. */
void hmap_remove(hmap_t *m, hmap_node_t *node);

/* hmap_first / hmap_next: nodes whose hash equals `hash` (caller compares keys). */
hmap_node_t *hmap_first(const hmap_t *m, uint64_t hash);
hmap_node_t *hmap_next(const hmap_node_t *node, uint64_t hash);

/* hmap_free: releases the bucket array (not the nodes); the map is empty and reusable. */
void hmap_free(hmap_t *m);

/* Hashes: a 64-bit mix for integer keys, FNV-1a + mix for NUL-terminated strings. */
uint64_t hmap_hash_u64(uint64_t k);
uint64_t hmap_hash_str(const char *s);

#endif
