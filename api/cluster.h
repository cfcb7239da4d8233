/* cluster.h: ws-api with --redis: presence, room membership and delivery shared by every node
 * through Redis (README "Redis: one cluster of ws-api nodes"). Without --redis none of this
 * exists and ws-api keeps presence in memory (presence.h).
 *
 * What lives where (key names carry hash tags, so each key's slot is its tag's on Redis
 * Cluster; multi-key scripts touch one tag only):
 *   wsgw:{g:G}:m          hash   gateway G: tok (its presence token), syn (the token whose
 *                                presence is whole), inst (gateway process), pfx (conn id
 *                                prefix), n:<node> (expiry ms of each node serving it).
 *                                PEXPIREd --presence-ttl after each heartbeat: a gateway no
 *                                node hears from leaves with it.
 *   wsgw:{g:G}:c:TOK      hash   conn id -> user and rooms (netstrings), G's live connections
 *                                under token TOK (the truth for everything below)
 *   wsgw:{g:G}:t:TOK:B    set    conn ids closed in time bucket B (30 s; kept 90 s): an Open
 *                                that arrives after its connection's Close (a node that read it
 *                                late) is refused, so it cannot bring a ghost back
 *   wsgw:{u:U}            hash   user U's conn ids -> TOK G (an index, checked against the
 *                                gateway's hash when listed; stale entries go when seen)
 *   wsgw:{r:R}            hash   room R's conn ids -> TOK G \n user (same)
 *   wsgw:{reg}:gw         zset   gateway ids by expiry ms (the registry every node reads)
 *   wsgw:{reg}:tok        zset   "TOK G" by last heartbeat ms (dead tokens are reaped)
 *   channel wsgw:{n:NODE}        commands another node forwards to gateways NODE serves
 *
 * Presence token: a gateway's presence lives under one token, made by the first node that
 * hears from it (or when it was lost: expired, Redis restarted, a new process of the gateway,
 * or writes that failed while Redis was away). Each gateway session (gRPC connection) binds
 * the token current at its start and writes under it; a write or heartbeat that finds another
 * token ends the session, so the gateway reconnects and re-sends its connections (its per-
 * session resync, gateway/delivery.h I2) under the new one. Whatever was under an old token is
 * no longer read and is reaped.
 *
 * Acks: a batch that caused Redis writes (Open, Close, Join, Leave, the end of a resync) is
 * acknowledged once they are answered, so what the gateway stops replaying is in Redis. A
 * write that fails because Redis is away is acknowledged anyway: the gateway is marked, and
 * its token is replaced when Redis is back (its sessions then resync).
 *
 * Loop thread only. */
#ifndef WSGW_API_CLUSTER_H
#define WSGW_API_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "presence.h"
#include "redis.h"
#include "router.h"
#include "stream.h"
#include "target.h"
#include "wsgw.pb-c.h"

typedef struct cluster cluster_t;
typedef struct cl_sess cl_sess_t;
typedef struct cl_batch cl_batch_t;

/* Errors of the asynchronous calls (status < 0). */
enum {
    CLUSTER_ERR_UNAVAILABLE = -1, /* Redis is away or presence is not whole: 503 / 14 */
    CLUSTER_ERR_NOMEM = -2,
    /* a lookup found a gateway's presence being re-sent under a token newer than the one it
     * was asked under (its registry read was older): 503 "presence resyncing" / 14 */
    CLUSTER_ERR_RESYNCING = -3,
};

typedef struct cluster_cfg {
    const char *node_id;      /* this node's name in the registry and its channel */
    uint64_t heartbeat_ms;    /* heartbeats, registry refresh */
    uint64_t ttl_ms;          /* a gateway no node heard from this long leaves presence */
    uint64_t grace_ms;        /* after Redis came back: requests refused this long */
    size_t max_queued;        /* broadcasts waiting for the registry check (0: 100 000) */
} cluster_cfg_t;

/* cluster_new: starts heartbeats, the registry and the node's channel on r (not owned; up or
 * not yet). Returns NULL with err when out of memory. pres and router are ws-api's (the
 * sessions and streams of this node); cluster_free after redis_free. */
cluster_t *cluster_new(uv_loop_t *loop, redis_t *r, presence_t *pres, router_t *router,
                       const cluster_cfg_t *cfg, char *err, size_t errlen);
/* cluster_stop: stops the timers (call before redis_free, whose NULL replies we still take). */
void cluster_stop(cluster_t *cl);
void cluster_free(cluster_t *cl);

/* cluster_ready: presence and push requests may be answered (Redis up, the registry fresh, no
 * gateway resyncing, not within the grace after Redis came back). Updates
 * wsapi_presence_ready; *why (may be NULL) says what is missing. */
bool cluster_ready(cluster_t *cl, const char **why);

/* ---- gateway sessions (grpc_stream.c) ------------------------------------------------------ */

/* Drops a session (closes its gRPC connection) from outside any nghttp2 callback. */
typedef void (*cluster_drop_fn)(void *ud, const char *why);
/* Handles one Upstream message of stream s (exchange.c), for batches held until the bind. */
typedef void (*cluster_batch_fn)(void *ud, api_stream_t *s, const uint8_t *msg, size_t len);

/* cluster_set_handler: where held batches go once their session is bound. */
void cluster_set_handler(cluster_t *cl, cluster_batch_fn fn, void *ud);

/* cluster_session_start: a gateway session started (its first Exchange stream). inst and
 * prefix come from the request headers x-wsgw-instance, x-wsgw-conn-prefix (may be NULL).
 * Binds the gateway's presence token (asynchronously). NULL when out of memory. */
cl_sess_t *cluster_session_start(cluster_t *cl, const char *gateway_id, const char *inst,
                                 const char *prefix, cluster_drop_fn drop, void *ud);
/* cluster_gateway_attached: a stream of gateway gw attached here (presence_attach): the
 * commands held for it (cluster_hold.c) go to it now, before anything newer. cl may be NULL. */
void cluster_gateway_attached(cluster_t *cl, const char *gw);
/* cluster_session_end: the session is over (no drop callback after this). */
void cluster_session_end(cl_sess_t *cs);
/* cluster_session_bound: its token is known: batches may be handled. */
bool cluster_session_bound(const cl_sess_t *cs);
/* cluster_session_hold: keeps a copy of a batch of s until the bind. Returns 0 or -1. */
int cluster_session_hold(cl_sess_t *cs, api_stream_t *s, const uint8_t *msg, size_t len);
/* cluster_stream_gone: s is being freed: its held batches and ack waits are forgotten. */
void cluster_stream_gone(cluster_t *cl, api_stream_t *s);

/* The longest user id or room name the cluster keys on (cluster_priv.h's CL_ID_MAX). */
#define CLUSTER_ID_MAX 256

/* ---- one Upstream batch (exchange.c) ------------------------------------------------------- */

/* cluster_batch_begin: the writes of the batch being handled on s (of a bound session). */
cl_batch_t *cluster_batch_begin(cluster_t *cl, api_stream_t *s);
/* Presence events and room changes of the batch. user may be "" (no user). rooms: a resync
 * Open's rooms (Open.rooms), "=" then netstrings "LEN:NAME" ("=" alone: in no room; rooms_len
 * 0: the Open had none), taken when Redis has no record of the connection under the session's
 * token. */
void cluster_open(cl_batch_t *b, uint64_t conn_id, const char *user, const char *rooms,
                  size_t rooms_len);
void cluster_close(cl_batch_t *b, uint64_t conn_id, const char *user);
void cluster_synced(cl_batch_t *b); /* the session's resync is complete */
/* cluster_batch_end: the batch (Upstream.seq) is handled: s->ack follows once its writes (and
 * those of earlier batches) are answered; seq 0: it failed, nothing is acknowledged. Frees b
 * (once its writes are answered). */
void cluster_batch_end(cl_batch_t *b, uint64_t seq);
/* cluster_room: conn_id (of user) joined or left room, as the handler told its gateway; part
 * of the batch being handled when there is one. A join that would put the connection in more
 * than max_rooms rooms (0: no cap) is refused by Redis, which holds every node's joins of it:
 * nothing is recorded, and the refused function hears of it. The room's index entry is
 * written once Redis has answered the connection's own list, so it follows that answer. */
void cluster_room(cluster_t *cl, uint64_t conn_id, const char *user, const char *room,
                  bool join, size_t max_rooms);
/* A join refused past max_rooms (cluster_room): s is the stream the join came on, NULL when it
 * has gone since. take_back: no later join of that room by the connection is waiting for
 * Redis, so the gateway is to leave it again; false: a later one is, and its answer decides
 * (it was taken: the connection is in the room; or refused too: that one takes it back).
 * cluster_set_room_refused: where they go (exchange.c). */
typedef void (*cluster_refused_fn)(void *ud, api_stream_t *s, uint64_t conn_id,
                                   const char *room, size_t max_rooms, bool take_back);
void cluster_set_room_refused(cluster_t *cl, cluster_refused_fn fn, void *ud);

/* ---- routing (router.c, push.c, admin.c) --------------------------------------------------- */

/* Called once with the number of gateways a command went to, or CLUSTER_ERR_*. */
typedef void (*cluster_done_fn)(void *ud, int gateways);

/* cluster_route: sends cmd (SEND or KICK; its target is replaced per part and restored) to
 * every gateway holding t, anywhere: on this node's streams where it serves the gateway, else
 * through one node that does (pub/sub). conn_ids and user_ids are looked up in Redis (done
 * comes later); room and all go to every live gateway. Returns 0 (done will come, possibly
 * before this returns) or CLUSTER_ERR_* (it will not). cmd is copied. */
int cluster_route(cluster_t *cl, const target_t *t, const Wsgw__V1__Command *cmd,
                  cluster_done_fn done, void *ud);
/* cluster_broadcast_remote: the room/all part of cmd to every live gateway this node has no
 * stream of (router.c: after its local part), once the registry is known to be as new as
 * Redis' (cluster_bus.c: one round trip; broadcasts keep their order). Returns the number of
 * such gateways in the registry now (those it will reach, unless one bound meanwhile), or 0
 * when it was refused (Redis away, too many waiting: counted and logged). */
int cluster_broadcast_remote(cluster_t *cl, Wsgw__V1__Command *cmd);

/* ---- presence queries (push_http.c, admin.c) ----------------------------------------------- */

typedef struct cl_member {
    uint64_t conn_id;
    const char *user_id;
    const char *gateway_id;
} cl_member_t;
/* status 0 with the members (valid during the call), or CLUSTER_ERR_*. */
typedef void (*cluster_members_fn)(void *ud, int status, const cl_member_t *m, size_t n);

/* cluster_user_presence / cluster_room_presence: the live connections of a user / members of
 * a room. Returns 0 (fn will come) or CLUSTER_ERR_* (it will not). */
int cluster_user_presence(cluster_t *cl, const char *user, cluster_members_fn fn, void *ud);
int cluster_room_presence(cluster_t *cl, const char *room, cluster_members_fn fn, void *ud);

#endif
