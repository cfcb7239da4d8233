/* arena.c: bump allocator for protobuf-c unpacking (see arena.h). */
#include "arena.h"

#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>

struct arena_block {
    arena_block_t *next;
    size_t cap, used;
    alignas(max_align_t) unsigned char data[];
};

#define ALIGN (alignof(max_align_t))

static void *arena_alloc(void *ud, size_t size)
{
    arena_t *a = ud;
    size = (size + ALIGN - 1) & ~(ALIGN - 1);
    if (size == 0)
        size = ALIGN;
    arena_block_t *b = a->head;
    if (!b || b->cap - b->used < size) {
        size_t cap = size > a->block_size ? size : a->block_size;
        arena_block_t *nb = malloc(sizeof *nb + cap);
        if (!nb) {
            a->failed = 1;
            return NULL;
        }
        nb->cap = cap;
        nb->used = 0;
        /* A huge one-off block goes behind the current one so small allocations keep
         * bumping the block that still has room. */
        if (b && size > a->block_size && b->cap - b->used >= ALIGN) {
            nb->next = b->next;
            b->next = nb;
        } else {
            nb->next = b;
            a->head = nb;
        }
        b = nb;
    }
    void *p = b->data + b->used;
    b->used += size;
    return p;
}

static void arena_nofree(void *ud, void *p)
{
    (void)ud;
    (void)p;
}

void arena_init(arena_t *a, size_t block_size)
{
    a->pa.alloc = arena_alloc;
    a->pa.free = arena_nofree;
    a->pa.allocator_data = a;
    a->head = NULL;
    a->block_size = block_size ? block_size : 65536;
    a->failed = 0;
}

void arena_reset(arena_t *a)
{
    arena_block_t *keep = NULL;
    for (arena_block_t *b = a->head, *next; b; b = next) {
        next = b->next;
        if (!keep && b->cap == a->block_size) {
            keep = b;
            continue;
        }
        free(b);
    }
    if (keep) {
        keep->used = 0;
        keep->next = NULL;
    }
    a->head = keep;
    a->failed = 0;
}

void arena_free(arena_t *a)
{
    for (arena_block_t *b = a->head, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    a->head = NULL;
}
