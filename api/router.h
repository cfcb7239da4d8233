/* router.h: commands to streams.
 *
 * Every command for a gateway is encoded into the `pending` Downstream of one of its Exchange
 * streams (api_stream_t), and that stream is put on the dirty list; grpc_server.c drains the
 * list once per loop iteration, closing each pending Downstream with its ack.
 *
 * Routing of a target (DESIGN.md): conn_ids and user_ids go only to the gateways that hold them,
 * through presence (a conn on the stream its Open arrived on while that stream lives, else on
 * another live stream of its session or gateway, skipped when there is none); room and all go
 * to every gateway with a live stream, one stream each. Per gateway all parts of one target
 * travel in as few commands as possible. With --redis (r->cl) room and all also go to every
 * gateway this node has no stream of, through a node that serves it (cluster.h); conn_ids and
 * user_ids are then routed by cluster_route, not here (this node's presence is not kept).
 *
 * Loop thread only. */
#ifndef WSGW_API_ROUTER_H
#define WSGW_API_ROUTER_H

#include <stddef.h>
#include <stdint.h>

#include "presence.h"
#include "stream.h"
#include "target.h"
#include "wsgw.pb-c.h"

enum {
    ROUTER_OK = 0,
    ROUTER_ERR_NOMEM = -1,
    ROUTER_ERR_CLOSED = -2, /* the stream is ending and takes no more commands */
};

typedef struct route_part route_part_t;
struct history;

struct cluster;

typedef struct router {
    presence_t *pres;
    struct cluster *cl;  /* --redis: room/all also go to gateways served by other nodes */
    api_stream_t *dirty; /* streams with pending commands or a new ack (doubly linked) */
    size_t soft_max;     /* a pending Downstream is flushed before it grows past this */
    uint64_t epoch;      /* routing pass counter (scratch marks in streams and gateways) */
    route_part_t *parts; /* scratch, reused */
    size_t nparts, cap;
    uint64_t commands;   /* commands emitted (tests, logs) */
    uint64_t unreachable; /* targeted connections skipped: their gateway had no live stream */
    struct history *hist; /* where pushes may be kept (history.h); NULL: nowhere. Not owned */
    bool hist_all;        /* keep every push to a user or room (--history-all) */
} router_t;

/* router_init: routes through `pres` (not owned). soft_max: Downstream size (bytes) after which
 * pending commands are flushed into a message of their own (keep it well below the peer's max
 * receive size, 4 MiB for stock gRPC). router_free releases the scratch. */
void router_init(router_t *r, presence_t *pres, size_t soft_max);
void router_free(router_t *r);

/* router_emit: appends cmd to s's pending Downstream (flushing s first through s->flush when
 * cmd would push it past soft_max) and marks s dirty. Returns ROUTER_OK, ROUTER_ERR_NOMEM or
 * ROUTER_ERR_CLOSED. The caller keeps cmd. */
int router_emit(router_t *r, api_stream_t *s, const Wsgw__V1__Command *cmd);
/* router_emit_send1: router_emit of a Send of payload[0..len) to one connection (the echo
 * path), encoded by hand (downstream_append_send1). Same results. */
int router_emit_send1(router_t *r, api_stream_t *s, uint64_t conn_id, const uint8_t *payload,
                      size_t len, bool binary, int64_t api_ns);

/* router_mark: puts s on the dirty list (idempotent), e.g. after its ack changed. */
void router_mark(router_t *r, api_stream_t *s);

/* router_forget: takes s off the dirty list (before s is freed). */
void router_forget(router_t *r, api_stream_t *s);

/* router_pop_dirty: removes and returns one dirty stream (s->dirty cleared), NULL when none. */
api_stream_t *router_pop_dirty(router_t *r);

/* router_route: sends cmd (kind SEND or KICK; its target field is replaced per part and
 * restored afterwards) to the gateways holding t. `prefer` (may be NULL) is used instead of any
 * other stream of its own gateway, so commands caused by an event keep that connection's
 * order. Connections whose gateway has no live stream are skipped and counted (r->unreachable,
 * wsapi_unreachable_targets_total). Returns the number of gateways the command was sent to
 * (>= 0), or ROUTER_ERR_NOMEM. */
int router_route(router_t *r, const target_t *t, Wsgw__V1__Command *cmd, api_stream_t *prefer);

#endif
