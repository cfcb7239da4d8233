/* subset.c: which API nodes a gateway connects to (see subset.h). */
#include "subset.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "route.h"
#include "upstream.h"

void gw_subset_choose(const gw_subset_node_t *nodes, int count, int n, bool *wanted)
{
    for (int i = 0; i < count; i++)
        wanted[i] = n <= 0; /* (no subset: every slot, whenever it gets an address) */
    if (n <= 0)
        return;
    int counted = 0;
    /* O(count^2) selection in score order: count is at most a few hundred slots */
    for (;;) {
        int best = -1;
        for (int i = 0; i < count; i++)
            if (nodes[i].assigned && !wanted[i] &&
                (best < 0 || nodes[i].score > nodes[best].score))
                best = i;
        if (best < 0 || counted >= n)
            return;
        wanted[best] = true;
        if (nodes[best].counts)
            counted++;
    }
}

int gw_subset_init(gw_subset_t *s, const gw_t *g, int n, int64_t fallback_ns,
                   const char *gateway_id)
{
    memset(s, 0, sizeof *s);
    s->n = n;
    s->fallback_ns = fallback_ns;
    s->id_hash = gw_hash64(gateway_id, strlen(gateway_id), 0x5ab5e7ULL);
    s->down_since = calloc((size_t)g->nup, sizeof *s->down_since);
    s->nodes = calloc((size_t)g->nup, sizeof *s->nodes);
    s->wanted = calloc((size_t)g->nup, sizeof *s->wanted);
    if (!s->down_since || !s->nodes || !s->wanted) {
        gw_subset_free(s);
        return -1;
    }
    return 0;
}

void gw_subset_tick(gw_subset_t *s, gw_t *g, const char *(*addr)(void *ud, int u), void *ud,
                    int64_t now)
{
    for (int u = 0; u < g->nup; u++) {
        const char *a = addr(ud, u);
        gw_subset_node_t *x = &s->nodes[u];
        x->assigned = a && *a;
        x->score = x->assigned ? gw_hash64(a, strlen(a), s->id_hash) : 0;
        bool up = gw_node_up(g, u);
        if (up || !x->assigned)
            s->down_since[u] = 0;
        else if (!s->down_since[u])
            s->down_since[u] = now;
        x->counts = up || !s->down_since[u] || now - s->down_since[u] < s->fallback_ns;
    }
    gw_subset_choose(s->nodes, g->nup, s->n, s->wanted);
    for (int u = 0; u < g->nup; u++) {
        int w = s->wanted[u] ? 1 : 0;
        if (atomic_exchange(&g->nodes[u].wanted, w) != w && s->n > 0) {
            const char *a = addr(ud, u);
            log_info(w ? "API node joins this gateway's subset" : "API node leaves this gateway's subset",
                     "node=%s subset=%d", a && *a ? a : "(none)", s->n);
            gw_up_wake(g->up[u]);
        }
    }
}

void gw_subset_free(gw_subset_t *s)
{
    free(s->down_since);
    free(s->nodes);
    free(s->wanted);
    memset(s, 0, sizeof *s);
}
