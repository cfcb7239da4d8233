/* conn_table.c: generation-checked connection table (see conn_table.h). Service thread only. */
#include "conn_table.h"

#include <stdlib.h>
#include <string.h>

#include "conn_id.h"

/* Keep at least this many slots free before reusing one, so generations advance slowly. */
#define MIN_FREE_BEFORE_REUSE 1024

void gw_conn_table_init(gw_conn_table_t *t, uint16_t prefix, unsigned thread, uint32_t max_slots)
{
    memset(t, 0, sizeof *t);
    t->prefix = prefix;
    t->thread = thread;
    t->max_slots = max_slots && max_slots <= CONN_ID_SLOT_MAX + 1 ? max_slots
                                                                   : CONN_ID_SLOT_MAX + 1;
}

void gw_conn_table_free(gw_conn_table_t *t)
{
    free(t->slots);
    free(t->gens);
    free(t->freeq);
    memset(t, 0, sizeof *t);
}

static int grow(gw_conn_table_t *t)
{
    uint32_t ncap = t->cap ? t->cap * 2 : 256;
    if (ncap > t->max_slots)
        ncap = t->max_slots;
    if (ncap <= t->cap)
        return -1;
    gw_conn_t **s = realloc(t->slots, ncap * sizeof *s);
    if (!s)
        return -1;
    t->slots = s;
    uint32_t *g = realloc(t->gens, ncap * sizeof *g);
    if (!g)
        return -1;
    t->gens = g;
    /* Slots from `used` on are never read before gw_conn_table_add sets them, so the new
     * part is left as it is: pages nobody touched cost no memory. */
    t->cap = ncap;
    return 0;
}

static int freeq_push(gw_conn_table_t *t, uint32_t slot)
{
    if (t->fq_len == t->fq_cap) {
        uint32_t ncap = t->fq_cap ? t->fq_cap * 2 : 256;
        uint32_t *q = malloc(ncap * sizeof *q);
        if (!q)
            return -1;
        for (uint32_t i = 0; i < t->fq_len; i++)
            q[i] = t->freeq[(t->fq_head + i) % t->fq_cap];
        free(t->freeq);
        t->freeq = q;
        t->fq_head = 0;
        t->fq_cap = ncap;
    }
    t->freeq[(t->fq_head + t->fq_len) % t->fq_cap] = slot;
    t->fq_len++;
    return 0;
}

int gw_conn_table_add(gw_conn_table_t *t, gw_conn_t *c)
{
    uint32_t slot;
    bool reuse = t->fq_len > 0 && (t->fq_len >= MIN_FREE_BEFORE_REUSE || t->used >= t->max_slots);
    if (reuse) {
        slot = t->freeq[t->fq_head];
        t->fq_head = (t->fq_head + 1) % t->fq_cap;
        t->fq_len--;
    } else {
        if (t->used >= t->max_slots)
            return -1;
        if (t->used == t->cap && grow(t) < 0)
            return -1;
        slot = t->used++;
        t->gens[slot] = 0; /* first use of the slot */
    }
    t->gens[slot]++;
    t->slots[slot] = c;
    t->live++;
    c->id = conn_id_make(t->prefix, t->thread, slot, t->gens[slot]);
    return 0;
}

gw_conn_t *gw_conn_table_get(const gw_conn_table_t *t, uint64_t id)
{
    uint32_t slot = conn_id_slot(id);
    if (conn_id_prefix(id) != t->prefix || conn_id_thread(id) != t->thread || slot >= t->used)
        return NULL;
    gw_conn_t *c = t->slots[slot];
    return c && c->id == id ? c : NULL;
}

void gw_conn_table_remove(gw_conn_table_t *t, gw_conn_t *c)
{
    uint32_t slot = conn_id_slot(c->id);
    if (slot >= t->used || t->slots[slot] != c)
        return;
    t->slots[slot] = NULL;
    t->live--;
    /* A slot whose generation is exhausted is retired: its ids are never issued again. */
    if (t->gens[slot] < CONN_ID_GEN_MAX)
        freeq_push(t, slot); /* on allocation failure the slot is simply not reused */
}
