/* push.h: a push (Send) or kick (Kick) to a target, routed to the gateways that hold it.
 * Shared by the HTTP JSON API (push_http.c) and gRPC wsgw.v1.Push/Push (grpc_server.c).
 * Loop thread only. */
#ifndef WSGW_API_PUSH_H
#define WSGW_API_PUSH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "router.h"
#include "target.h"

/* push_send: Send{target, payload, binary, api_ns=now} to every gateway holding t. Returns the
 * number of gateways it was queued to (>= 0), or ROUTER_ERR_NOMEM. The caller keeps t and
 * payload. */
int push_send(router_t *r, const target_t *t, const uint8_t *payload, size_t len, bool binary);

/* push_kick: Kick{target, code, reason}; same routing and return as push_send. */
int push_kick(router_t *r, const target_t *t, int code, const char *reason);

#endif
