/* presence.h: who is connected where, as seen by this ws-api node.
 *
 * conn_id -> (user_id, gateway, the stream its Open arrived on); user_id -> conns;
 * gateway_id -> (live Exchange streams, conns). Fed by Open/Close events. Each ws-api node has
 * its own table (gateways replicate Open/Close to every node). When the last stream of a
 * gateway goes away, every connection of that gateway leaves presence: the gateway re-sends
 * Open for its live connections when it reconnects.
 *
 * Pure data structure: no I/O. Loop thread only. */
#ifndef WSGW_PRESENCE_H
#define WSGW_PRESENCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hmap.h"
#include "stream.h"

typedef struct pres_user pres_user_t;
typedef struct pres_gateway pres_gateway_t;

typedef struct pres_conn {
    hmap_node_t node; /* presence.conns, by conn_id */
    uint64_t conn_id;
    pres_user_t *user; /* NULL when the connection has no user id */
    struct pres_conn *u_prev, *u_next;
    pres_gateway_t *gw;
    struct pres_conn *g_prev, *g_next;
    api_stream_t *stream; /* where its Open arrived; NULL once that stream is gone */
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
    api_stream_t *streams; /* live Exchange streams */
    size_t nstreams;
    pres_conn_t *conns;
    size_t nconns;
    pres_gateway_t *prev, *next; /* presence.gw_list */
    uint64_t rt_epoch;           /* router scratch: last routing pass that counted it */
    uint64_t rt_user;            /* router scratch: last user index placed on it */
    api_stream_t *rt_stream;     /* router scratch: stream of its first part this pass */
};

typedef struct presence {
    hmap_t conns, users, gateways;
    pres_gateway_t *gw_list;
    size_t ngateways; /* gateways with at least one live stream */
} presence_t;

/* presence_init / presence_free: an empty table; free releases every entry. */
void presence_init(presence_t *p);
void presence_free(presence_t *p);

/* presence_attach: adds stream s to gateway `gateway_id` (created on its first stream).
 * Returns the gateway, or NULL when out of memory (s stays detached). s must not be attached. */
pres_gateway_t *presence_attach(presence_t *p, const char *gateway_id, api_stream_t *s);

/* presence_detach: removes s from its gateway. Connections whose Open came on s fall back to
 * the gateway's other streams; when s was the gateway's last stream, the gateway and all its
 * connections leave presence. Returns how many connections left. No-op for a detached s. */
size_t presence_detach(presence_t *p, api_stream_t *s);

/* presence_open: records (or updates: Open re-sent after a reconnect, or on another stream)
 * conn_id as belonging to user_id (may be "" or NULL: no user) on s's gateway, arriving on s.
 * `label` is Open.gateway_id (may be NULL/""). Returns 0, or -1 when out of memory or s is
 * not attached (nothing recorded). Copies the strings. */
int presence_open(presence_t *p, uint64_t conn_id, const char *user_id, const char *label,
                  api_stream_t *s);

/* presence_close: forgets conn_id. Returns true when it was known. */
bool presence_close(presence_t *p, uint64_t conn_id);

/* presence_conn / presence_user / presence_gateway: lookups; NULL when unknown. */
pres_conn_t *presence_conn(const presence_t *p, uint64_t conn_id);
pres_user_t *presence_user(const presence_t *p, const char *user_id);
pres_gateway_t *presence_gateway(const presence_t *p, const char *gateway_id);

/* presence_conn_stream: the stream to reach c on: its Open stream while live, else the first
 * live stream of its gateway (never NULL: a gateway in presence has a stream). */
api_stream_t *presence_conn_stream(const pres_conn_t *c);

/* presence_conn_label: the gateway id to show for c (Open.gateway_id, else x-gateway-id). */
const char *presence_conn_label(const pres_conn_t *c);

/* presence_count: connections in the table. */
static inline size_t presence_count(const presence_t *p) { return p->conns.count; }

#endif
