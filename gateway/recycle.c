/* recycle.c: returning blocks to the thread that allocated them (see recycle.h). */
#include "recycle.h"

#include <stdlib.h>

typedef struct {
    gw_rc_kind_t kind;
    int idx;
    ring_t **to_peer;
    int npeer;
} rc_self_t;

static _Thread_local rc_self_t self;

void gw_recycle_register(gw_rc_kind_t kind, int idx, ring_t **to_peer, int npeer)
{
    self.kind = kind;
    self.idx = idx;
    self.to_peer = to_peer;
    self.npeer = npeer;
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
    free(p);
}

void gw_recycle_drain(ring_t *r)
{
    void *items[256];
    size_t n;
    while ((n = ring_pop_batch(r, items, 256)) > 0)
        for (size_t i = 0; i < n; i++)
            free(items[i]);
}
