/* admin.h: the unary methods of gRPC wsgw.v1.Admin on ws-api (Kick, UserPresence,
 * RoomPresence), independent of HTTP/2: a request message in, a gRPC status and a framed
 * reply out. grpc_stream.c dispatches the calls (with --push-token checked), unit tests call
 * admin_call directly. Loop thread only. */
#ifndef WSGW_API_ADMIN_H
#define WSGW_API_ADMIN_H

#include <stddef.h>
#include <stdint.h>

#include "presence.h"
#include "rooms.h"
#include "router.h"

typedef enum {
    ADMIN_NONE = 0,
    ADMIN_KICK,
    ADMIN_USER_PRESENCE,
    ADMIN_ROOM_PRESENCE,
} admin_method_t;

/* admin_method: the method of a :path ("/wsgw.v1.Admin/Kick"), ADMIN_NONE for any other. */
admin_method_t admin_method(const char *path);

/* admin_method_name: "Kick", "UserPresence", "RoomPresence" (the metric label). */
const char *admin_method_name(admin_method_t m);

/* admin_call: answers one request of method m (the serialized request message req). Returns
 * the gRPC status: 0 with *out = the gRPC-framed reply (5-byte prefix + message, malloc'd,
 * the caller frees it) and *outlen; otherwise *out = NULL and *msg says why (3: the request
 * does not decode or is invalid; 8: out of memory; 14: presence is resyncing, as for Push). Counted in
 * wsapi_grpc_admin_requests_total{method,status}. */
int admin_call(admin_method_t m, presence_t *p, rooms_t *rooms, router_t *r, const uint8_t *req,
               size_t len, uint8_t **out, size_t *outlen, const char **msg);

/* admin_call_async: admin_call, answered through done(ud, status, out, outlen, msg) exactly
 * once: at once in memory, later with --redis (presence and kicks go through Redis). out
 * (when status is 0) is the caller's to free. */
typedef void (*admin_done_fn)(void *ud, int status, uint8_t *out, size_t outlen,
                              const char *msg);
void admin_call_async(admin_method_t m, presence_t *p, rooms_t *rooms, router_t *r,
                      const uint8_t *req, size_t len, admin_done_fn done, void *ud);

#endif
