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

int gw_route_home(const gw_t *g, const void *key, size_t len)
{
    int best = 0, best_real = -1;
    uint64_t best_score = 0, best_real_score = 0;
    for (int u = 0; u < g->nup; u++) {
        const gw_node_t *n = &g->nodes[u];
        uint64_t score = gw_hash64(key, len, atomic_load_explicit(&n->seed, memory_order_relaxed));
        if (u == 0 || score > best_score) {
            best = u;
            best_score = score;
        }
        if (atomic_load_explicit(&n->assigned, memory_order_relaxed) &&
            atomic_load_explicit(&n->wanted, memory_order_relaxed) &&
            (best_real < 0 || score > best_real_score)) {
            best_real = u;
            best_real_score = score;
        }
    }
    return best_real >= 0 ? best_real : best;
}

int gw_route_node(const gw_t *g, const void *key, size_t len)
{
    if (g->nup == 1)
        return 0;
    int best = 0, best_up = -1;
    uint64_t best_score = 0, best_up_score = 0;
    for (int u = 0; u < g->nup; u++) {
        /* seed: the node's address, so a node keeps its users whatever its slot */
        uint64_t seed = atomic_load_explicit(&g->nodes[u].seed, memory_order_relaxed);
        uint64_t score = gw_hash64(key, len, seed);
        if (u == 0 || score > best_score) {
            best = u;
            best_score = score;
        }
        if (gw_node_up(g, u) &&
            (best_up < 0 || score > best_up_score)) {
            best_up = u;
            best_up_score = score;
        }
    }
    return best_up >= 0 ? best_up : best;
}
