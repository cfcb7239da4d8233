/* hmap.c: intrusive chained hash table (see hmap.h). */
#include "hmap.h"

#include <stdlib.h>

#define HMAP_MIN_BUCKETS 64

uint64_t hmap_hash_u64(uint64_t k)
{
    /* splitmix64 finaliser: conn ids carry structure (prefix, thread, slot) in their bits. */
    k ^= k >> 30;
    k *= 0xbf58476d1ce4e5b9ULL;
    k ^= k >> 27;
    k *= 0x94d049bb133111ebULL;
    k ^= k >> 31;
    return k;
}

uint64_t hmap_hash_str(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    return hmap_hash_u64(h);
}

static void rehash(hmap_t *m, size_t nb)
{
    hmap_node_t **nbk = calloc(nb, sizeof *nbk);
    if (!nbk)
        return; /* keep the old array: longer chains, still correct */
    for (size_t i = 0; i < m->nbuckets; i++) {
        hmap_node_t *n = m->buckets[i];
        while (n) {
            hmap_node_t *next = n->next;
            size_t b = n->hash & (nb - 1);
            n->next = nbk[b];
            nbk[b] = n;
            n = next;
        }
    }
    free(m->buckets);
    m->buckets = nbk;
    m->nbuckets = nb;
}

int hmap_insert(hmap_t *m, hmap_node_t *node, uint64_t hash)
{
    if (m->nbuckets == 0) {
        m->buckets = calloc(HMAP_MIN_BUCKETS, sizeof *m->buckets);
        if (!m->buckets)
            return -1;
        m->nbuckets = HMAP_MIN_BUCKETS;
    } else if (m->count >= m->nbuckets) {
        rehash(m, m->nbuckets * 2);
    }
    size_t b = hash & (m->nbuckets - 1);
    node->hash = hash;
    node->next = m->buckets[b];
    m->buckets[b] = node;
    m->count++;
    return 0;
}

void hmap_remove(hmap_t *m, hmap_node_t *node)
{
    if (m->nbuckets == 0)
        return;
    hmap_node_t **pp = &m->buckets[node->hash & (m->nbuckets - 1)];
    for (; *pp; pp = &(*pp)->next) {
        if (*pp == node) {
            *pp = node->next;
            node->next = NULL;
            m->count--;
            return;
        }
    }
}

hmap_node_t *hmap_first(const hmap_t *m, uint64_t hash)
{
    if (m->nbuckets == 0)
        return NULL;
    hmap_node_t *n = m->buckets[hash & (m->nbuckets - 1)];
    while (n && n->hash != hash)
        n = n->next;
    return n;
}

hmap_node_t *hmap_next(const hmap_node_t *node, uint64_t hash)
{
    hmap_node_t *n = node->next;
    while (n && n->hash != hash)
        n = n->next;
    return n;
}

void hmap_free(hmap_t *m)
{
    free(m->buckets);
    m->buckets = NULL;
    m->nbuckets = 0;
    m->count = 0;
}
