/* msgroute.h: which API node a client message goes to, without reordering a connection's
 * messages when nodes fail and return. One per service thread; no I/O (the thread's side of
 * the delivery protocol: the simulator runs it too). Service thread only.
 *
 * A connection sticks to the node it last sent to (c->node). Its preferred node is the
 * rendezvous-hash choice among usable nodes (route.h). It moves to the preferred node only
 * when everything it sent to the old one is resolved: acknowledged (or delivered, without
 * acks), handed back, or lost and counted. Per (node, stream) the thread counts messages
 * sent; the writer counts them resolved (link.h done); a connection remembers the sent count
 * of its last message (c->mark), and resolved means done >= mark (streams keep order, so
 * counts suffice).
 *
 * When the old node is not usable and messages are unresolved, the connection's new messages
 * are held (and its reads paused) until the old node's writer hands its unacked messages back
 * (GW_CMD_REROUTE, oldest first); those are re-sent to the new node, then the held ones.
 * Handed-back messages of a connection that still has others at the node that handed them
 * back (pushed there after them) are held too, until those are resolved: a node may hand back
 * in several Reroutes. After each Reroute the thread tells the node (GW_EV_REROUTED marker);
 * until then the node hands back whatever else of ours it takes (delivery.h). A Close waits
 * behind the messages of its connection that are still unresolved. */
#ifndef GW_MSGROUTE_H
#define GW_MSGROUTE_H

#include <stdbool.h>
#include <stdint.h>

#include "conn.h"
#include "gw.h"

typedef struct gw_held {
    uint64_t conn_id;
    int node, stream;       /* the old node and stream whose handback we wait for */
    uint32_t mark;
    bool ready;             /* snapshot taken before the rings were drained */
    gw_event_t *back, *back_tail; /* handed back by `node`, oldest first: they go first */
    gw_event_t *head, *tail;      /* sent by the client meanwhile */
    gw_event_t *close;      /* the connection closed meanwhile: its Close goes after them */
} gw_held_t;

/* What the thread provides (svc.c; the simulator its own). */
typedef struct gw_mr_ops {
    /* hand e to node u's writer (takes e); false: it waits in the overflow (pause the client) */
    bool (*push)(void *ud, int u, gw_event_t *e);
    void (*pause)(void *ud, gw_conn_t *c);      /* stop reading c until resumed */
    void (*wake_self)(void *ud);                /* look again on the next wake */
    void (*want_done)(void *ud, int u, bool on); /* ask writer u to wake us on progress */
    uint32_t (*done)(void *ud, int u, int st);  /* writer u's resolved count for (us, st) */
    gw_conn_t *(*conn)(void *ud, uint64_t id);  /* the live connection with this id, or NULL */
    void (*to_all)(void *ud, gw_event_t *e);    /* hand a Close to every node (takes e) */
} gw_mr_ops_t;

/* A connection that is gone while messages of it are still unresolved at a node: where they
 * went, so a later handback of them is ordered like a live connection's (msgroute.c). */
typedef struct gw_tomb {
    uint64_t conn_id;
    int node, stream;
    uint32_t mark;
} gw_tomb_t;

typedef struct gw_mr {
    const gw_t *gw;          /* nup, nstreams, node states */
    gw_mr_ops_t ops;
    void *ud;
    uint32_t *sent;          /* [nup * nstreams] Messages this thread pushed */
    uint32_t *done_seen;     /* [nup * nstreams] done as read by the last snapshot: routing
                                decisions use this copy, never done itself (a writer publishes
                                done after its handback is in a ring; a later count without the
                                handback drained would let a newer message overtake the
                                handed-back ones) */
    gw_held_t *held;         /* connections whose messages wait for a handback */
    size_t nheld, cap_held;
    gw_tomb_t *tombs;        /* gone connections with messages unresolved somewhere */
    size_t ntombs, cap_tombs;
} gw_mr_t;

/* gw_mr_init: -1 when out of memory. gw_mr_free frees held messages too. */
int gw_mr_init(gw_mr_t *m, const gw_t *g, const gw_mr_ops_t *ops, void *ud);
void gw_mr_free(gw_mr_t *m);

/* gw_msgroute_send: routes a Message event of c (takes e). */
void gw_msgroute_send(gw_mr_t *m, gw_conn_t *c, gw_event_t *e);
/* gw_msgroute_reroute: re-sends the events node u handed back in a GW_CMD_REROUTE (takes
 * them); the caller then pushes the GW_EV_REROUTED marker to u (gw_msgroute_marker). */
void gw_msgroute_reroute(gw_mr_t *m, int u, gw_cmd_t *cmd);
/* gw_msgroute_marker: the marker event for Reroute number n of service thread k (NULL when
 * out of memory: then the caller retries later). */
gw_event_t *gw_msgroute_marker(unsigned k, int32_t n);
/* On every wake: gw_msgroute_snapshot before draining the rings (it copies the writers'
 * resolved counts into done_seen, which every routing decision until the next wake uses),
 * gw_msgroute_release after. */
void gw_msgroute_snapshot(gw_mr_t *m);
void gw_msgroute_release(gw_mr_t *m);
/* gw_msgroute_close: c is gone; close is its Close event (takes it). It goes to every node
 * now, or, while c's messages are held, after them once they are released (a connection's
 * events stay in order through a failover even when it ends during one). A routed Close
 * (shared presence, gw.h) goes to one node instead, as a message would: the node of c's
 * messages while they are unresolved there, else the preferred one. A routed Open is sent with
 * gw_msgroute_send, as c's first message. */
void gw_msgroute_close(gw_mr_t *m, gw_conn_t *c, gw_event_t *close);

#endif
