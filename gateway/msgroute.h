/* msgroute.h: which API node a client message goes to, without reordering a connection's
 * messages when nodes fail and return. Service thread only.
 *
 * A connection sticks to the node it last sent to (c->node). Its preferred node is the
 * rendezvous-hash choice among connected nodes (route.h). It moves to the preferred node only
 * when everything it sent to the old one is resolved: acknowledged (or delivered, without
 * acks) or handed back. Per (node, stream) the thread counts messages sent; the writer counts
 * them resolved (svc->done); a connection remembers the sent count of its last message
 * (c->mark), and resolved means done >= mark (streams keep order, so counts suffice).
 *
 * When the old node is down and messages are unresolved, the connection's new messages are
 * held (and its reads paused) until the old node's writer hands its unacked messages back
 * (GW_CMD_REROUTE, oldest first); those are re-sent to the new node, then the held ones. */
#ifndef GW_MSGROUTE_H
#define GW_MSGROUTE_H

#include "svc.h"

typedef struct gw_held {
    uint64_t conn_id;
    int node, stream;       /* the old node and stream whose handback we wait for */
    uint32_t mark;
    bool ready;             /* snapshot taken before the rings were drained */
    gw_event_t *head, *tail;
} gw_held_t;

/* gw_msgroute_send: routes a Message event of c (takes e). */
void gw_msgroute_send(gw_svc_t *s, gw_conn_t *c, gw_event_t *e);
/* gw_msgroute_reroute: re-sends the handed-back events of a GW_CMD_REROUTE (takes them). */
void gw_msgroute_reroute(gw_svc_t *s, gw_cmd_t *cmd);
/* On every wake: gw_msgroute_snapshot before draining the rings (it copies the writers'
 * resolved counts into done_seen, which every routing decision until the next wake uses),
 * gw_msgroute_release after. */
void gw_msgroute_snapshot(gw_svc_t *s);
void gw_msgroute_release(gw_svc_t *s);
/* gw_msgroute_forget: c is closing: its held messages go out now. */
void gw_msgroute_forget(gw_svc_t *s, gw_conn_t *c);
void gw_msgroute_free(gw_svc_t *s);

#endif
