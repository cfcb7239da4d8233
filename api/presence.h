/* presence.h: who is connected where, as seen by this ws-api node.
 *
 * conn_id -> (user_id, gateway, session and stream its latest Open arrived on); user_id ->
 * conns; gateway_id -> (live Exchange streams, number of conns); sessions (one per gRPC
 * connection from a gateway) -> the conns their Opens brought. Fed by Open/Close events. Each
 * ws-api node has its own table (gateways replicate Open/Close to every node).
 *
 * The rules (the gateway's side is gateway/delivery.h, invariant I2):
 *   - Presence lives per session. An entry is tagged with the session its latest Open arrived
 *     on, and leaves when that session ends (presence_session_end): the gateway re-sends Open
 *     for every live connection at the start of each session, so nothing else must survive.
 *   - Sessions are ordered by a serial the caller gives (monotonic per process: the gRPC
 *     connection's). An Open or Close arriving on a session older than the entry's tag is
 *     stale and ignored: a node that was stopped reads an old connection's buffered events
 *     after the gateway already resynced on a new one, and they must not undo it.
 *   - A stream that ends drops nothing: entries that referenced it route through another live
 *     stream of their session, else of their gateway; with none, they are unreachable for now
 *     (presence_conn_stream returns NULL). Within a session a failed stream's batches are
 *     replayed on a new stream, presence events included.
 *   - A gateway entry lives while it has entries or live streams.
 *   - Sync: a session that announced N streams (request header x-wsgw-streams) is synced once
 *     N distinct streams of it delivered a batch with Upstream.presence_complete; a session
 *     that announced nothing is synced at once (third-party gateways). Presence is "ready"
 *     once the startup grace is over and every live session is synced (presence_ready).
 *     Limits of what the node can see: a session starts with its first Exchange stream (the
 *     gateway connects, collects its Opens, then opens its streams: in that gap nothing marks
 *     its connection as a gateway's); and streams are HTTP/2 streams, not the gateway's stream
 *     slots, so a stream that fails after its presence_complete batch was handled but before
 *     the gateway saw the ack replays that batch on a new stream and counts twice.
 *
 * Pure data structure: no I/O, no clock (times are passed in, monotonic ms). Loop thread only. */
#ifndef WSGW_PRESENCE_H
#define WSGW_PRESENCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hmap.h"
#include "stream.h"

typedef struct pres_user pres_user_t;
typedef struct pres_gateway pres_gateway_t;
typedef struct pres_session pres_session_t;

/* Results of presence_open / presence_close. */
typedef enum {
    PRES_ERR = -1,    /* out of memory, or the stream is not attached: nothing recorded */
    PRES_OK = 0,      /* recorded (open) / forgotten (close) */
    PRES_STALE = 1,   /* the entry is tagged with a newer session: ignored */
    PRES_UNKNOWN = 2, /* close: no such entry */
} pres_result_t;

typedef struct pres_conn {
    hmap_node_t node; /* presence.conns, by conn_id */
    uint64_t conn_id;
    pres_user_t *user; /* NULL when the connection has no user id */
    struct pres_conn *u_prev, *u_next;
    pres_gateway_t *gw;
    pres_session_t *sess; /* the session its latest Open arrived on (its tag) */
    struct pres_conn *s_prev, *s_next;
    api_stream_t *stream; /* where its latest Open arrived; NULL once that stream is gone */
    char *label;          /* Open.gateway_id when it differs from gw->id, else NULL */
} pres_conn_t;

struct pres_user {
    hmap_node_t node; /* presence.users, by id */
    char *id;
    pres_conn_t *conns;
    size_t nconns;
};

struct pres_gateway {
    hmap_node_t node; /* presence.gateways, by id */
    char *id;
    api_stream_t *streams; /* live Exchange streams, newest first */
    size_t nstreams;
    size_t nconns;                /* entries on this gateway */
    pres_gateway_t *prev, *next; /* presence.gw_list */
    uint64_t rt_epoch;           /* router scratch: last routing pass that counted it */
    uint64_t rt_user;            /* router scratch: last user index placed on it */
    api_stream_t *rt_stream;     /* router scratch: stream of its first part this pass */
};

/* One gateway session: a gRPC connection that carried an Exchange stream. Embedded by its
 * owner (grpc_server.c: one per connection), registered with presence_session_start and
 * ended with presence_session_end before the owner frees it. */
struct pres_session {
    uint64_t serial;    /* larger = newer */
    bool live;          /* registered and not ended */
    pres_conn_t *conns; /* entries tagged with this session */
    size_t nconns;
    uint32_t expect;    /* x-wsgw-streams: streams that will say presence_complete; 0: none */
    uint32_t ncomplete; /* distinct streams that did */
    bool synced;
    uint64_t started_ms;
    pres_session_t *prev, *next; /* presence.sessions */
    struct cl_sess *cl;          /* cluster.h (--redis): the session's token and writes */
};

typedef struct presence {
    hmap_t conns, users, gateways;
    pres_gateway_t *gw_list;
    size_t ngateways;  /* gateways with at least one live stream */
    size_t nstreams;   /* live streams, all gateways */
    pres_session_t *sessions; /* live sessions */
    size_t nsessions;
    size_t unsynced;   /* live sessions not synced yet */
    uint64_t ready_after_ms; /* end of the startup grace (monotonic ms; 0: none) */
    uint64_t sync_timeout_ms; /* presence_gate.c: unsynced sessions count as synced after */
    bool was_ready;           /* presence_gate.c: the last answer (logs its changes) */
    struct cluster *cluster;  /* --redis: presence is in Redis; readiness is cluster_ready */
} presence_t;

/* presence_init / presence_free: an empty table; free releases every entry and unregisters
 * every session and stream (their owners may free them afterwards). */
void presence_init(presence_t *p);
void presence_free(presence_t *p);

/* ---- sessions --------------------------------------------------------------------------- */

/* presence_session_start: registers sess (owned by the caller, zeroed or ended before) as a
 * live session with `serial` (larger than every earlier session's), announcing `expect`
 * presence_complete streams (0: synced at once), started at now_ms. No-op when sess is live. */
void presence_session_start(presence_t *p, pres_session_t *sess, uint64_t serial,
                            uint32_t expect, uint64_t now_ms);

/* presence_session_end: the session is over: every entry tagged with it leaves presence, and
 * gateways left without entries or streams go. Its streams must be detached already. Returns
 * how many entries left. No-op (0) for a session that is not live. */
size_t presence_session_end(presence_t *p, pres_session_t *sess);

/* presence_complete: stream s (attached) delivered a batch with presence_complete. Counts s
 * once; returns true when this made its session synced. */
bool presence_complete(presence_t *p, api_stream_t *s);

/* presence_sync_expire: sessions not synced within timeout_ms of their start count as synced
 * (a gateway that announced more streams than it opens). Returns how many were. */
size_t presence_sync_expire(presence_t *p, uint64_t now_ms, uint64_t timeout_ms);

/* presence_ready: the startup grace is over and every live session is synced. */
static inline bool presence_ready(const presence_t *p, uint64_t now_ms)
{
    return now_ms >= p->ready_after_ms && p->unsynced == 0;
}

/* ---- streams ---------------------------------------------------------------------------- */

/* presence_attach: adds stream s, of live session sess, to gateway `gateway_id` (created on
 * its first stream). Returns the gateway, or NULL when out of memory or sess is not live (s
 * stays detached). s must not be attached. */
pres_gateway_t *presence_attach(presence_t *p, const char *gateway_id, pres_session_t *sess,
                                api_stream_t *s);

/* presence_detach: removes s from its gateway. Nothing leaves presence: entries whose Open
 * came on s route through the other streams (presence_conn_stream). s keeps its session. A
 * gateway left without streams and entries goes. No-op for a detached s. */
void presence_detach(presence_t *p, api_stream_t *s);

/* ---- open / close ----------------------------------------------------------------------- */

/* presence_open: records (or updates: Open re-sent on a new session, or another stream)
 * conn_id as belonging to user_id (may be "" or NULL: no user) on s's gateway, tagged with s's
 * session and arriving on s. `label` is Open.gateway_id (may be NULL/""). Returns PRES_OK,
 * PRES_STALE (the entry is tagged with a newer session: unchanged) or PRES_ERR (out of memory
 * or s not attached: nothing recorded). Copies the strings. */
pres_result_t presence_open(presence_t *p, uint64_t conn_id, const char *user_id,
                            const char *label, api_stream_t *s);

/* presence_close: forgets conn_id, as told on stream s (attached or not: its session counts).
 * Returns PRES_OK, PRES_UNKNOWN, or PRES_STALE (tagged with a newer session: kept). */
pres_result_t presence_close(presence_t *p, uint64_t conn_id, const api_stream_t *s);

/* ---- lookups ---------------------------------------------------------------------------- */

/* presence_conn / presence_user / presence_gateway: lookups; NULL when unknown. */
pres_conn_t *presence_conn(const presence_t *p, uint64_t conn_id);
pres_user_t *presence_user(const presence_t *p, const char *user_id);
pres_gateway_t *presence_gateway(const presence_t *p, const char *gateway_id);

/* presence_conn_stream: the stream to reach c on: its Open stream while live, else a live
 * stream of its session, else the newest live stream of its gateway; NULL when the gateway
 * has none (unreachable for now). */
api_stream_t *presence_conn_stream(const pres_conn_t *c);

/* presence_conn_label: the gateway id to show for c (Open.gateway_id, else x-gateway-id). */
const char *presence_conn_label(const pres_conn_t *c);

/* presence_count: connections in the table. */
static inline size_t presence_count(const presence_t *p) { return p->conns.count; }

#endif
