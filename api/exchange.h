/* exchange.h: handling one Upstream batch of an Exchange stream (protocol-independent part).
 *
 * Decodes the protobuf (updec.h), updates presence from Open/Close, runs the handler for Messages, and
 * records the batch's seq as the stream's ack (the commands it caused are already queued on
 * the stream's pending Downstream, so one Downstream carries both). grpc_server.c feeds it
 * complete gRPC messages; unit tests feed it directly. Loop thread only. */
#ifndef WSGW_API_EXCHANGE_H
#define WSGW_API_EXCHANGE_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "handler.h"
#include "presence.h"
#include "rooms.h"
#include "router.h"

enum {
    EXCHANGE_OK = 0,
    EXCHANGE_ERR_DECODE = -1, /* not a valid wsgw.v1.Upstream */
    EXCHANGE_ERR_NOMEM = -2,
};

struct cluster;

typedef struct exchange {
    struct cluster *cl; /* --redis: presence writes go there (cluster.h); NULL: in memory */
    presence_t *pres;
    router_t *router;
    handler_kind_t handler;
    buf_t strs;    /* NUL-terminated copies of the strings of the event being handled */
    buf_t rns;     /* an Open's rooms as netstrings (--redis: cluster_open) */
    rooms_t rooms; /* what the handler joined: GET /v1/rooms/{room}, Admin/RoomPresence */
    chat_limits_t chat; /* the chat handler's caps (exchange_init: the defaults) */
} exchange_t;

/* exchange_init / exchange_free: a handler context over pres and r (not owned). */
void exchange_init(exchange_t *x, presence_t *pres, router_t *r, handler_kind_t handler);
void exchange_free(exchange_t *x);

/* exchange_set_cluster: --redis: Opens, Closes and room changes go to Redis through cl, acks
 * wait for them, and batches of a session whose presence token is not bound yet are held
 * (cluster.h). */
void exchange_set_cluster(exchange_t *x, struct cluster *cl);

/* exchange_upstream: handles one serialized Upstream received on s (s attached to its gateway).
 * On success s->ack = max(s->ack, seq), s->ack_dirty is set and s is marked dirty, so the
 * next flush sends a Downstream carrying the ack even without commands. Returns EXCHANGE_OK,
 * EXCHANGE_ERR_DECODE (nothing handled) or EXCHANGE_ERR_NOMEM (events up to the failing one
 * handled; the batch is not acked). The caller keeps msg. */
int exchange_upstream(exchange_t *x, api_stream_t *s, const uint8_t *msg, size_t len);

#endif
