/* idmap.c: connection id -> number (see idmap.h). */
#include "idmap.h"

#include <stdlib.h>

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    return x ^ (x >> 33);
}

/* The slot of id, or the empty slot where it would go. m->cap > 0. */
static size_t find(const gw_idmap_t *m, uint64_t id)
{
    size_t i = mix(id) & (m->cap - 1);
    while (m->id[i] && m->id[i] != id)
        i = (i + 1) & (m->cap - 1);
    return i;
}

bool gw_idmap_has(const gw_idmap_t *m, uint64_t id)
{
    return m->count && m->id[find(m, id)] == id;
}

/* A copy of m with room for cap entries, keeping those `keep` accepts (n relative to upto).
 * -1 when out of memory (m unchanged). */
static int rebuild(gw_idmap_t *m, size_t cap, bool filter, uint32_t upto)
{
    gw_idmap_t g = {.cap = cap};
    g.id = calloc(cap, sizeof *g.id);
    g.n = calloc(cap, sizeof *g.n);
    if (!g.id || !g.n) {
        free(g.id);
        free(g.n);
        return -1;
    }
    for (size_t i = 0; i < m->cap; i++)
        if (m->id[i] && (!filter || (int32_t)(m->n[i] - upto) > 0)) {
            size_t j = find(&g, m->id[i]);
            g.id[j] = m->id[i];
            g.n[j] = m->n[i];
            g.count++;
        }
    free(m->id);
    free(m->n);
    *m = g;
    return 0;
}

int gw_idmap_put(gw_idmap_t *m, uint64_t id, uint32_t n)
{
    if ((m->count + 1) * 2 > m->cap && rebuild(m, m->cap ? m->cap * 2 : 64, false, 0) < 0)
        return -1;
    size_t i = find(m, id);
    if (!m->id[i]) {
        m->id[i] = id;
        m->count++;
    }
    m->n[i] = n;
    return 0;
}

void gw_idmap_drop_upto(gw_idmap_t *m, uint32_t n)
{
    /* (deleting in open addressing means moving the probes: rebuilding is simplest, and it
     * runs once per handback marker; out of memory keeps the entries a while longer) */
    if (m->count)
        rebuild(m, m->cap, true, n);
}

void gw_idmap_free(gw_idmap_t *m)
{
    free(m->id);
    free(m->n);
    m->id = NULL;
    m->n = NULL;
    m->count = m->cap = 0;
}
