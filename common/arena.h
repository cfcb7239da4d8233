/* arena.h: bump allocator behind protobuf-c's ProtobufCAllocator, reset after each message.
 *
 * Unpacking an Upstream batch of 100 events with the default allocator costs ~300 malloc/free
 * pairs; with the arena it is a few pointer bumps and one reset. free() is a no-op; everything
 * goes at arena_reset. Loop thread only (one arena per decoder user). */
#ifndef WSGW_ARENA_H
#define WSGW_ARENA_H

#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

typedef struct arena_block arena_block_t;

typedef struct arena {
    ProtobufCAllocator pa; /* pass &a->pa to *_unpack */
    arena_block_t *head;   /* newest block first */
    size_t block_size;     /* default size of a new block */
    int failed;            /* an allocation failed since the last reset */
} arena_t;

/* arena_init: an empty arena whose blocks are at least block_size bytes. Never fails. */
void arena_init(arena_t *a, size_t block_size);

/* arena_reset: every allocation is released; one block of the default size is kept for reuse
 * (larger one-off blocks are freed). */
void arena_reset(arena_t *a);

/* arena_free: releases all memory. */
void arena_free(arena_t *a);

#endif
