/* gw.h: the gateway process: its service threads and upstream writers, and the few fields
 * they share (each marked with who writes it). Service threads and writers reach each other
 * only through the links (link.h) and the node states here. */
#ifndef GW_GW_H
#define GW_GW_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct gw_svc gw_svc_t;
typedef struct gw_up gw_up_t;
typedef struct gw_link gw_link_t;

/* gw_thread_svc: on a service thread, its index; -1 on every other thread (svc.c). A wake-up
 * of what this thread runs itself (its own command drain, a writer it hosts) is a flag its
 * loop takes before it sleeps, not a system call (svcpoll.h). */
extern _Thread_local int gw_thread_svc;

/* What every thread may know of API node u. Writer u stores; anyone reads. */
typedef struct gw_node {
    _Atomic int connected;    /* usable: new messages may be routed to it */
    _Atomic int idle;         /* nothing queued, unacked or in its rings */
    _Atomic uint64_t seed;    /* routing identity: hash of its address (route.h) */
    _Atomic int presence;     /* writer u: what its last stream's response headers said:
                                 0 not yet, GW_PRES_REPLICATED, GW_PRES_SHARED */
    _Atomic int wanted;       /* main thread: connect to it (--upstream-subset, subset.h) */
    _Atomic int assigned;     /* writer u: it has an address (a dns:/// slot may have none) */
} gw_node_t;

/* x-wsgw-presence of a node's response headers: without it (every API server before issue
 * 16, any third-party one) the node keeps its own presence, so each connection's Open and
 * Close go to every node; "shared" (ws-api --redis) means every node reads one presence, so
 * they go to the one node that gets the connection's messages (msgroute.h). */
enum { GW_PRES_UNKNOWN = 0, GW_PRES_REPLICATED = 1, GW_PRES_SHARED = 2 };

typedef struct gw {
    int nsvc;                 /* service threads */
    int nup;                  /* API nodes = writer threads */
    int nstreams;             /* streams per API node */
    gw_svc_t **svc;           /* immutable after start; main thread only */
    gw_up_t **up;             /* immutable after start; main thread, and the hosts of
                                 --inline-writers (upstream.h) */
    gw_node_t *nodes;         /* [nup] */
    gw_link_t **links;        /* [nsvc * nup], immutable after start: gw_link() */
    uint16_t prefix;          /* conn_id prefix */
    char instance[17];        /* this process (hex), x-wsgw-instance: API nodes tell a restart */
    _Atomic uint32_t instance_gen; /* raised by a writer that lost a routed Close (delivery.h
                                 I4); streams opened after it say x-wsgw-instance INSTANCE.GEN,
                                 so ws-api --redis rebuilds our presence under a new token */
    int64_t conn_cap;         /* effective connection cap (flag and fd limit) */
    _Atomic int draining;     /* main thread sets; everyone reads */
    _Atomic int64_t nconns;   /* open WebSocket connections; service threads add/sub */
} gw_t;

/* gw_link: the link between service thread k and writer u (any thread). */
static inline gw_link_t *gw_link(const gw_t *g, int k, int u) { return g->links[k * g->nup + u]; }

/* gw_node_up: node u is usable (any thread). */
static inline bool gw_node_up(const gw_t *g, int u)
{
    return atomic_load_explicit(&g->nodes[u].connected, memory_order_relaxed) != 0;
}

/* gw_presence_shared: every API node that answered says its presence is shared (and one
 * did), so Opens and Closes are routed to one node (any thread; O(nodes), per connection). */
static inline bool gw_presence_shared(const gw_t *g)
{
    bool any = false;
    for (int u = 0; u < g->nup; u++) {
        int p = atomic_load_explicit(&g->nodes[u].presence, memory_order_relaxed);
        if (p == GW_PRES_REPLICATED)
            return false;
        any |= p == GW_PRES_SHARED;
    }
    return any;
}

/* gw_ready: true when at least one API node is connected (any thread). */
static inline bool gw_ready(const gw_t *g)
{
    for (int u = 0; u < g->nup; u++)
        if (gw_node_up(g, u))
            return true;
    return false;
}

#endif
