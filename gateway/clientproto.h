/* clientproto.h: the WebSocket subprotocol wsgw.v1.json (README "Client protocol") on the
 * gateway: negotiated at the handshake (RFC 6455 §4.2.2 Sec-WebSocket-Protocol), it wraps
 * every server message in a JSON envelope (envelope.h) and keeps the client's position in each
 * channel, recovering what it missed from the API's history (chanrec.h: the state machine;
 * this file does its I/O: frames to the client, Recover events up, timers). Clients that do
 * not ask for it get today's raw frames and none of this costs them anything.
 *
 * Positions come with the handshake, one `recover` query argument per channel:
 *     recover=<offset>.<epoch>.<channel>      e.g. recover=18.k3x9.user%3Aalice
 * (offset decimal; epoch [A-Za-z0-9_-], at most 32, may be empty; channel "user:<id>" or
 * "room:<name>", percent-encoded). The user channel recovers at once, a room when the API
 * joins the connection to it; positions of other users' channels are ignored (a client reads
 * only what it would have received).
 *
 * Service thread of the connection, every function. */
#ifndef GW_CLIENTPROTO_H
#define GW_CLIENTPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conn.h"
#include "event.h"
#include "http1.h"

#define GW_CP_NAME "wsgw.v1.json"

struct gw_svc;

/* gw_cp_handshake: reads the upgrade request of c: whether the client offers wsgw.v1.json
 * (c->proto) and its positions (kept in c->chans). Returns 0, or -1 with what is wrong in
 * why (a bad or too many recover arguments: the caller answers 400). */
int gw_cp_handshake(gw_conn_t *c, const gw_http_req_t *r, const char **why);

/* gw_cp_established: c is live (its Open is on its way): its user channel starts recovering
 * when the client gave a position in it. */
void gw_cp_established(struct gw_svc *s, gw_conn_t *c);

/* gw_cp_send: a Send command's message for c (c->proto): in its envelope, through its
 * channel's ordering when the message has an offset. */
void gw_cp_send(struct gw_svc *s, gw_conn_t *c, gw_cmd_t *cmd);

/* gw_cp_recovered: a GW_CMD_RECOVERED command (one connection). */
void gw_cp_recovered(struct gw_svc *s, gw_cmd_t *cmd);

/* gw_cp_join / gw_cp_leave: c joined (the Join took effect) or left a room. */
void gw_cp_join(struct gw_svc *s, gw_conn_t *c, const char *room, size_t len);
void gw_cp_leave(struct gw_svc *s, gw_conn_t *c, const char *room, size_t len);

/* gw_cp_tick: recovery timeouts and gap waits of the thread's connections (its tick). */
void gw_cp_tick(struct gw_svc *s);

/* gw_cp_closed: c is gone (or never got established): its channels are dropped. */
void gw_cp_closed(struct gw_svc *s, gw_conn_t *c);

/* gw_cp_query_arg: whether a query argument ("name=value", raw) is one of ours (recover=):
 * not forwarded in Open.query. */
bool gw_cp_query_arg(const char *arg, size_t len);

/* gw_cp_thread_free: the thread's lists (thread exit). */
void gw_cp_thread_free(struct gw_svc *s);

#endif
