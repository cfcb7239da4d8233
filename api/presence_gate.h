/* presence_gate.h: ws-api refuses push, kick and presence requests while its presence is not
 * whole (issue 14 case 8), and keeps presence's gauges.
 *
 * After ws-api starts, gateways reconnect (their backoff is up to 2 s) and re-send an Open
 * for every live connection; until they have, a user who is online looks offline and a push
 * to them would be answered 200 {"gateways":0} and lost. So presence is "ready" only once
 * --presence-grace has passed since start and every live gateway session is synced (every
 * stream it announced in x-wsgw-streams said Upstream.presence_complete; presence.h). While
 * not ready, POST /v1/push, POST /v1/kick, GET /v1/users/{id} answer 503 {"error":"presence
 * resyncing"} with Retry-After: 1, and gRPC Push grpc-status 14 UNAVAILABLE (push_http.c,
 * grpc_stream.c). A session not synced within --presence-sync-timeout counts as synced
 * (logged, wsapi_presence_sync_timeouts_total), so a gateway that announces more streams than
 * it opens cannot hold pushes back for longer.
 *
 * With --redis presence is in Redis (cluster.h) and presence_gate_open asks cluster_ready
 * instead: Redis up, no gateway resyncing anywhere in the cluster, not within --presence-grace
 * after Redis came back. A ws-api node that restarts answers at once (presence is in Redis).
 *
 * Loop thread only. Times: common/clock.h monotonic. */
#ifndef WSGW_API_PRESENCE_GATE_H
#define WSGW_API_PRESENCE_GATE_H

#include <stdbool.h>
#include <stdint.h>

#include "presence.h"

/* presence_gate_config: the grace runs from now for grace_ms (0: none); sessions count as
 * synced sync_timeout_ms after they started. Sets the gauges. */
void presence_gate_config(presence_t *p, uint64_t grace_ms, uint64_t sync_timeout_ms);

/* presence_gate_open: whether presence and push requests may be answered now. Expires
 * sessions past the sync timeout, updates wsapi_presence_ready and logs when the answer
 * changes. Called per request and from the gRPC server's sweep (so the gauge follows). */
bool presence_gate_open(presence_t *p);

/* presence_gate_gauges: wsapi_presence_connections, wsapi_gateways, wsapi_gateway_streams,
 * wsapi_presence_sessions and wsapi_presence_unsynced_sessions from p's counts. Call after
 * presence changed (cheap: a few stores). */
void presence_gate_gauges(const presence_t *p);

/* presence_gate_now_ms: the clock presence sync runs on (monotonic ms). */
uint64_t presence_gate_now_ms(void);

#endif
