/* recycle.c: returning blocks to the thread that allocated them (see recycle.h). */
#include "recycle.h"

#include <stddef.h>
#include <stdlib.h>

#define RC_CLASSES 8               /* 128 B ... 16 KiB */
#define RC_MIN_SHIFT 7
#define RC_CLASS_BYTES (1 << 20)   /* kept per class and thread at most, */
#define RC_CLASS_BLOCKS 1024       /* and this many blocks */
#define RC_TAG 15                  /* low bits of a malloc pointer: class + 1 in the ring */

_Static_assert(_Alignof(max_align_t) > RC_CLASSES, "malloc alignment leaves no room for tags");

typedef struct {
    gw_rc_kind_t kind;
    int idx;
    ring_t **to_peer;
    int npeer;
    /* kept blocks per class: arrays of pointers, so that neither a pop nor a push reads the
     * block (its lines were last written by the other thread: a load of a link or of malloc's
     * chunk header missed the cache, 6 % of the gateway's cycles in the closed loop) */
    void **kept[RC_CLASSES];
    unsigned nkept[RC_CLASSES];
} rc_self_t;

static _Thread_local rc_self_t self;

static unsigned class_blocks(int c)
{
    unsigned n = RC_CLASS_BYTES >> (RC_MIN_SHIFT + c);
    return n < RC_CLASS_BLOCKS ? n : RC_CLASS_BLOCKS;
}

/* The class whose size is the smallest >= n (-1: none, n is too large). */
static int class_up(size_t n)
{
    if (n > ((size_t)1 << (RC_MIN_SHIFT + RC_CLASSES - 1)))
        return -1;
    int c = 0;
    while (((size_t)1 << (RC_MIN_SHIFT + c)) < n)
        c++;
    return c;
}

static void flush_kept(void)
{
    for (int c = 0; c < RC_CLASSES; c++) {
        while (self.nkept[c])
            free(self.kept[c][--self.nkept[c]]);
        free(self.kept[c]);
        self.kept[c] = NULL;
    }
}

/* A block is done with, on this thread: kept when it has a class (rc: class + 1) with room,
 * else freed. */
static void rc_free(void *p, unsigned rc)
{
    int c = (int)rc - 1;
    if (c < 0 || c >= RC_CLASSES || self.kind == GW_RC_NONE ||
        self.nkept[c] >= class_blocks(c)) {
        free(p);
        return;
    }
    if (!self.kept[c] && !(self.kept[c] = malloc(class_blocks(c) * sizeof(void *)))) {
        free(p);
        return;
    }
    self.kept[c][self.nkept[c]++] = p;
}

void *gw_rc_alloc(size_t n, uint8_t *rc)
{
    int c = class_up(n);
    *rc = 0;
    if (c < 0)
        return malloc(n);
    void *b = self.nkept[c] ? self.kept[c][--self.nkept[c]]
                            : malloc((size_t)1 << (RC_MIN_SHIFT + c));
    if (b)
        *rc = (uint8_t)(c + 1);
    return b;
}

unsigned gw_rc_kept(size_t size)
{
    for (int c = 0; c < RC_CLASSES; c++)
        if ((size_t)1 << (RC_MIN_SHIFT + c) == size)
            return self.nkept[c];
    return 0;
}

void gw_recycle_register(gw_rc_kind_t kind, int idx, ring_t **to_peer, int npeer)
{
    if (kind == GW_RC_NONE)
        flush_kept();
    gw_recycle_role(kind, idx, to_peer, npeer);
}

gw_rc_role_t gw_recycle_role(gw_rc_kind_t kind, int idx, ring_t **to_peer, int npeer)
{
    gw_rc_role_t was = {self.kind, self.idx, self.to_peer, self.npeer};
    self.kind = kind;
    self.idx = idx;
    self.to_peer = to_peer;
    self.npeer = npeer;
    return was;
}

void gw_recycle_role_back(gw_rc_role_t r)
{
    gw_recycle_role(r.kind, r.idx, r.to_peer, r.npeer);
}

int gw_recycle_owner(gw_rc_kind_t kind)
{
    return self.kind == kind ? self.idx : GW_OWNER_NONE;
}

void gw_recycle(void *p, int owner, uint8_t rc)
{
    if (!p)
        return;
    if (rc > RC_CLASSES)
        rc = 0;
    if (owner >= 0 && owner < self.npeer && self.kind != GW_RC_NONE && self.to_peer[owner] &&
        ring_push(self.to_peer[owner], (void *)((uintptr_t)p | rc)))
        return;
    rc_free(p, rc);
}

void gw_recycle_drain(ring_t *r)
{
    void *items[256];
    size_t n;
    while ((n = ring_pop_batch(r, items, 256)) > 0)
        for (size_t i = 0; i < n; i++) {
            uintptr_t v = (uintptr_t)items[i];
            rc_free((void *)(v & ~(uintptr_t)RC_TAG), (unsigned)(v & RC_TAG));
        }
}
