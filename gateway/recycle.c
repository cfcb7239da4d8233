/* recycle.c: returning blocks to the thread that allocated them (see recycle.h). */
#include "recycle.h"

#include <malloc.h>
#include <stdlib.h>

#define RC_CLASSES 4               /* 2, 4, 8, 16 KiB */
#define RC_MIN_SHIFT 11
#define RC_TCACHE_MAX 1032         /* glibc's largest tcache chunk: smaller ones stay malloc's */
#define RC_CLASS_BYTES (1 << 20)   /* kept per class and thread at most */

typedef struct rc_blk {
    struct rc_blk *next;
} rc_blk_t;

typedef struct {
    gw_rc_kind_t kind;
    int idx;
    ring_t **to_peer;
    int npeer;
    rc_blk_t *kept[RC_CLASSES];
    unsigned nkept[RC_CLASSES];
} rc_self_t;

static _Thread_local rc_self_t self;

/* The class whose size is the smallest >= n (-1: none, n is tcache's or too large). */
static int class_up(size_t n)
{
    if (n <= RC_TCACHE_MAX || n > ((size_t)1 << (RC_MIN_SHIFT + RC_CLASSES - 1)))
        return -1;
    int c = 0;
    while (((size_t)1 << (RC_MIN_SHIFT + c)) < n)
        c++;
    return c;
}

/* The class a block of `usable` bytes can serve: the largest size <= usable, and only when
 * the block is less than twice that (a block much larger is not kept as a small one). */
static int class_down(size_t usable)
{
    for (int c = RC_CLASSES - 1; c >= 0; c--) {
        size_t sz = (size_t)1 << (RC_MIN_SHIFT + c);
        if (usable >= sz)
            return usable < 2 * sz ? c : -1;
    }
    return -1;
}

static void flush_kept(void)
{
    for (int c = 0; c < RC_CLASSES; c++) {
        while (self.kept[c]) {
            rc_blk_t *b = self.kept[c];
            self.kept[c] = b->next;
            free(b);
        }
        self.nkept[c] = 0;
    }
}

/* A block is done with, on this thread: kept when it fits a class with room, else freed. */
static void rc_free(void *p)
{
    int c = self.kind != GW_RC_NONE ? class_down(malloc_usable_size(p)) : -1;
    if (c < 0 || self.nkept[c] >= (unsigned)(RC_CLASS_BYTES >> (RC_MIN_SHIFT + c))) {
        free(p);
        return;
    }
    rc_blk_t *b = p;
    b->next = self.kept[c];
    self.kept[c] = b;
    self.nkept[c]++;
}

void *gw_rc_alloc(size_t n)
{
    int c = class_up(n);
    if (c < 0)
        return malloc(n);
    rc_blk_t *b = self.kept[c];
    if (b) {
        self.kept[c] = b->next;
        self.nkept[c]--;
        return b;
    }
    return malloc((size_t)1 << (RC_MIN_SHIFT + c));
}

unsigned gw_rc_kept(int c)
{
    return c >= 0 && c < RC_CLASSES ? self.nkept[c] : 0;
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

void gw_recycle(void *p, int owner)
{
    if (!p)
        return;
    if (owner >= 0 && owner < self.npeer && self.kind != GW_RC_NONE && self.to_peer[owner] &&
        ring_push(self.to_peer[owner], p))
        return;
    rc_free(p);
}

void gw_recycle_drain(ring_t *r)
{
    void *items[256];
    size_t n;
    while ((n = ring_pop_batch(r, items, 256)) > 0)
        for (size_t i = 0; i < n; i++)
            rc_free(items[i]);
}
