/* u64map.c: uint64 -> pointer open-addressing map (see u64map.h). */
#include "u64map.h"

#include <stdlib.h>

static size_t hash(uint64_t k, size_t mask)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return (size_t)k & mask;
}

static int resize(u64map_t *m, size_t ncap)
{
    u64map_entry_t *ns = calloc(ncap, sizeof *ns);
    if (!ns)
        return -1;
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->slots[i].key)
            continue;
        size_t j = hash(m->slots[i].key, ncap - 1);
        while (ns[j].key)
            j = (j + 1) & (ncap - 1);
        ns[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = ns;
    m->cap = ncap;
    return 0;
}

int u64map_put(u64map_t *m, uint64_t key, void *val, void **old)
{
    if (old)
        *old = NULL;
    size_t i = 0;
    if (m->cap) {
        size_t mask = m->cap - 1;
        i = hash(key, mask);
        while (m->slots[i].key && m->slots[i].key != key)
            i = (i + 1) & mask;
        if (m->slots[i].key == key) { /* replacing never resizes, so it cannot fail */
            if (old)
                *old = m->slots[i].val;
            m->slots[i].val = val;
            return 0;
        }
    }
    /* load factor at most 3/4 (deletion shifts back, no tombstones): at 9 000 users on a
     * thread the table is 256 KB, not 512 KB (about 29 bytes per connection less). Without
     * a resize the probe above already stopped at the free slot. */
    if ((m->len + 1) * 4 > m->cap * 3) {
        if (resize(m, m->cap ? m->cap * 2 : 64) < 0)
            return -1;
        size_t mask = m->cap - 1;
        i = hash(key, mask);
        while (m->slots[i].key)
            i = (i + 1) & mask;
    }
    m->slots[i].key = key;
    m->slots[i].val = val;
    m->len++;
    return 0;
}

void *u64map_get(const u64map_t *m, uint64_t key)
{
    if (!m->cap)
        return NULL;
    size_t mask = m->cap - 1, i = hash(key, mask);
    while (m->slots[i].key) {
        if (m->slots[i].key == key)
            return m->slots[i].val;
        i = (i + 1) & mask;
    }
    return NULL;
}

void *u64map_del(u64map_t *m, uint64_t key)
{
    if (!m->cap)
        return NULL;
    size_t mask = m->cap - 1, i = hash(key, mask);
    while (m->slots[i].key && m->slots[i].key != key)
        i = (i + 1) & mask;
    if (!m->slots[i].key)
        return NULL;
    void *val = m->slots[i].val;
    /* backward-shift: move later members of the cluster into the hole when that brings them
     * no further from their home slot */
    size_t hole = i, j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (!m->slots[j].key)
            break;
        size_t home = hash(m->slots[j].key, mask);
        /* can the entry at j move to hole? yes unless home lies cyclically in (hole, j] */
        if ((j > hole && (home <= hole || home > j)) || (j < hole && (home <= hole && home > j))) {
            m->slots[hole] = m->slots[j];
            hole = j;
        }
    }
    m->slots[hole].key = 0;
    m->slots[hole].val = NULL;
    m->len--;
    return val;
}

void u64map_free(u64map_t *m)
{
    free(m->slots);
    m->slots = NULL;
    m->cap = m->len = 0;
}
