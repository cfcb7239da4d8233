/* recover.h: answering a gateway's Recover (wsgw.v1.json clients, README "Client protocol"):
 * the messages of a channel's history after the client's position, in Recovered commands of
 * at most --history-page-bytes each, to the gateway that asked. The channel must be one the
 * connection may read: its own user's ("user:<its user id>") or a room (the gateway asks only
 * for rooms the connection is in); another user's is answered recovered=false with nothing.
 * Without a history (r->hist NULL) every answer is recovered=false at once.
 *
 * The answer goes back on the stream the Recover came on while the store answers at once
 * (memory); a later answer (Redis) goes on a live stream of the same gateway, found again when
 * it comes (the Recovered command names the connection, any stream of its gateway will do).
 * Loop thread only. */
#ifndef WSGW_API_RECOVER_H
#define WSGW_API_RECOVER_H

#include <stdint.h>

#include "presence.h"
#include "router.h"
#include "wsgw.pb-c.h"

/* recover_handle: answers rq of conn_id (user_id: its user, may be "") that came on s.
 * Returns 0 or ROUTER_ERR_NOMEM. */
int recover_handle(router_t *r, api_stream_t *s, uint64_t conn_id, const char *user_id,
                   const Wsgw__V1__Recover *rq);

#endif
