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

/* With --redis (r->cl) pushes and kicks are routed through Redis (cluster.h) and answered
 * later. These work in either mode:
 *   push_publish_async: as push_publish; returns its result now without r->cl (done is not
 *     called), else PUSH_PENDING, and done(ud, rv, res) comes once every part went (rv 0, or
 *     PUSH_ERR_UNAVAILABLE: Redis failed meanwhile, PUSH_ERR_RESYNCING: a target's gateway
 *     turned out to be re-sending its presence, or ROUTER_ERR_NOMEM; res is freed after
 *     done returns), or PUSH_ERR_UNAVAILABLE now (Redis is away: 503).
 *   push_kick_async: the gateway count now (>= 0) without r->cl, else PUSH_PENDING and done(ud,
 *     gateways or an error), or an error now. */
enum { PUSH_PENDING = 1 << 30, PUSH_ERR_UNAVAILABLE = -10, PUSH_ERR_RESYNCING = -11 };
/* push_err_away: for an error that means "not now" (503 with Retry-After, gRPC 14: Redis away,
 * or a gateway's presence being re-sent; push.h's or cluster.h's), its reason; else NULL. */
const char *push_err_away(int err);
typedef void (*push_publish_fn)(void *ud, int rv, push_result_t *res);
typedef void (*push_done_fn)(void *ud, int gateways);
int push_publish_async(router_t *r, const target_t *t, const uint8_t *payload, size_t len,
                       bool binary, bool keep, push_result_t *out, push_publish_fn done,
                       void *ud);
int push_kick_async(router_t *r, const target_t *t, int code, const char *reason,
                    push_done_fn done, void *ud);

#endif
