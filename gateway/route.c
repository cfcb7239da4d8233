/* route.c: rendezvous hashing over API nodes (see route.h). */
#include "route.h"

#include <stdatomic.h>


uint64_t gw_hash64(const void *data, size_t len, uint64_t seed)
{
    const uint8_t *p = data;
    uint64_t h = 0xcbf29ce484222325ULL ^ seed;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    /* splitmix64 finaliser: FNV alone ranks nodes poorly for similar keys */
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    h ^= h >> 31;
    return h;
}

/* Rendezvous: the best-scoring node for key among the eligible ones (home: it has an address
 * and is ours to connect to; otherwise: usable now), the best of all when none is. The seed is
 * the node's address, so a node keeps its users whatever its slot. Inlined into both callers,
 * so gw_route_node's loop tests one condition as before. */
static inline int rank(const gw_t *g, const void *key, size_t len, bool home)
{
    int best = 0, best_ok = -1;
    uint64_t best_score = 0, best_ok_score = 0;
    for (int u = 0; u < g->nup; u++) {
        const gw_node_t *n = &g->nodes[u];
        uint64_t score = gw_hash64(key, len, atomic_load_explicit(&n->seed, memory_order_relaxed));
        if (u == 0 || score > best_score) {
            best = u;
            best_score = score;
        }
        bool ok = home ? atomic_load_explicit(&n->assigned, memory_order_relaxed) &&
                             atomic_load_explicit(&n->wanted, memory_order_relaxed)
                       : gw_node_up(g, u);
        if (ok && (best_ok < 0 || score > best_ok_score)) {
            best_ok = u;
            best_ok_score = score;
        }
    }
    return best_ok >= 0 ? best_ok : best;
}

int gw_route_home(const gw_t *g, const void *key, size_t len)
{
    return rank(g, key, len, true);
}

int gw_route_node(const gw_t *g, const void *key, size_t len)
{
    if (g->nup == 1)
        return 0;
    return rank(g, key, len, false);
}
