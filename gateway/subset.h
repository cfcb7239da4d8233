/* subset.h: --upstream-subset N: a gateway connects to N of the API nodes instead of all of
 * them (with ws-api --redis every node reaches every gateway through Redis, so one gateway
 * needs only enough nodes for failover). Which N: rendezvous (highest random weight) hashing
 * of the gateway id over the nodes' addresses, so gateways spread evenly and a node's
 * gateways move only when it goes or comes. A chosen node that has been down for the fallback
 * time is replaced by the next-ranked one while it stays down; it is still tried, and once it
 * is back the replacement is let go (its messages handed back in order, delivery.h).
 *
 * gw_subset_choose is pure; gw_subset_tick runs on the main thread and stores each node's
 * wanted flag (gw.h), which its writer reads. */
#ifndef GW_SUBSET_H
#define GW_SUBSET_H

#include <stdbool.h>
#include <stdint.h>

#include "gw.h"

typedef struct gw_subset_node {
    uint64_t score;  /* rendezvous weight of (gateway id, node address) */
    bool assigned;   /* it has an address (a host-name slot may be empty) */
    bool counts;     /* usable, or down for less than the fallback time */
} gw_subset_node_t;

/* gw_subset_choose: wanted[i] for nodes[0..count): in order of score (highest first) nodes are
 * wanted until n of them count. n <= 0: every node (assigned or not). */
void gw_subset_choose(const gw_subset_node_t *nodes, int count, int n, bool *wanted);

typedef struct gw_subset {
    int n;
    int64_t fallback_ns;
    uint64_t id_hash;
    int64_t *down_since; /* [nup] monotonic ns since when a node is not usable (0: it is) */
    gw_subset_node_t *nodes;
    bool *wanted;
} gw_subset_t;

/* gw_subset_init: for g's nodes. Returns 0 or -1 (memory). */
int gw_subset_init(gw_subset_t *s, const gw_t *g, int n, int64_t fallback_ns,
                   const char *gateway_id);
/* gw_subset_tick: recomputes and stores the wanted flags; addr(ud, u) is node u's address
 * ("" or NULL: none). Logs changes. Main thread. */
void gw_subset_tick(gw_subset_t *s, gw_t *g, const char *(*addr)(void *ud, int u), void *ud,
                    int64_t now);
void gw_subset_free(gw_subset_t *s);

#endif
