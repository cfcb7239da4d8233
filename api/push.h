/* push.h: a push (Send) or kick (Kick) to a target, routed to the gateways that hold it.
 * Shared by the HTTP JSON API (push_http.c) and gRPC wsgw.v1.Push/Push (grpc_server.c).
 * Loop thread only. */
#ifndef WSGW_API_PUSH_H
#define WSGW_API_PUSH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "history.h"
#include "router.h"
#include "target.h"

/* Where a kept push went in one channel's history. */
typedef struct push_kept {
    char *channel; /* owned: "user:<id>" or "room:<name>" */
    hist_pos_t pos;
} push_kept_t;

typedef struct push_result {
    int gateways;      /* the most gateways any one part of the push was queued to */
    push_kept_t *kept; /* owned; one per channel it was kept in */
    size_t nkept;
    size_t not_kept;   /* channels it should have been kept in but was not (store full or
                          failed): delivered without an offset */
} push_result_t;

/* push_send: Send{target, payload, binary, api_ns=now} to every gateway holding t. Returns the
 * number of gateways it was queued to (>= 0), or ROUTER_ERR_NOMEM. The caller keeps t and
 * payload. */
int push_send(router_t *r, const target_t *t, const uint8_t *payload, size_t len, bool binary);

/* push_publish: push_send, keeping the message in the history (r->hist) of each user and the
 * room of t when keep (or r->hist_all) is set: then each of those goes as its own Send with
 * the channel, offset and epoch (conn_ids and all: one Send without). Without keeping, a Send
 * to exactly one user or one room still names its channel. prefer: as router_route (may be
 * NULL). Fills *out (push_result_free). Returns 0 or ROUTER_ERR_NOMEM. The memory store
 * answers before it returns. */
int push_publish(router_t *r, const target_t *t, const uint8_t *payload, size_t len,
                 bool binary, bool keep, api_stream_t *prefer, push_result_t *out);
void push_result_free(push_result_t *out);

/* push_kick: Kick{target, code, reason}; same routing and return as push_send. */
int push_kick(router_t *r, const target_t *t, int code, const char *reason);

#endif
