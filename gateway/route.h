/* route.h: which API node gets a connection's messages: rendezvous (highest random weight)
 * hashing of the user id (the conn id when anonymous) over the nodes, skipping nodes that are
 * down. Stable: a node's users move only when it goes down, and come back when it returns. */
#ifndef GW_ROUTE_H
#define GW_ROUTE_H

#include <stddef.h>
#include <stdint.h>

#include "gw.h"

/* gw_hash64: FNV-1a 64 with a final avalanche (any thread). */
uint64_t gw_hash64(const void *data, size_t len, uint64_t seed);

/* gw_route_node: the node index for key (any thread; reads writers' `connected` flags).
 * When every node is down, the best-ranked node (its writer keeps the messages). */
int gw_route_node(const gw_t *g, const void *key, size_t len);

/* gw_route_home: the node gw_route_node picks for key when every node is up (any thread):
 * among the slots that have an address and are this gateway's to connect to (a dns:///
 * slot without one, a node outside --upstream-subset never is); any slot when none is. */
int gw_route_home(const gw_t *g, const void *key, size_t len);

/* gw_route_stream: the stream of a node that carries a connection, stable for its life. */
static inline int gw_route_stream(uint64_t conn_id, int nstreams)
{
    uint64_t h = conn_id * 0x9e3779b97f4a7c15ULL;
    return (int)((h >> 32) % (uint64_t)nstreams);
}

#endif
