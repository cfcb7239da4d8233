/* ws.h: the client side of ws-gateway: the lws raw-socket protocol every accepted socket is
 * adopted into (HTTP endpoints and the WebSocket endpoint /gateway/ws on one port), and the
 * frames the service thread writes. Everything runs on the service thread of the context. */
#ifndef GW_WS_H
#define GW_WS_H

#include <libwebsockets.h>

#include "conn.h"

extern struct lws_protocols gw_ws_protocols[];

/* gw_ws_write: one WebSocket message to c, framed in the payload's headroom. Counts it and its
 * egress time. Returns 0, or -1 when lws refused it. What the socket does not take, lws keeps
 * and sends first (so writes stay whole frames, in order). */
int gw_ws_write(gw_conn_t *c, gw_payload_t *p);

/* gw_ws_control: one control frame (ping, pong, close; payload <= 125 bytes). 0 or -1. */
int gw_ws_control(gw_conn_t *c, int opcode, const void *payload, size_t len);

/* gw_ws_close: starts the close handshake: marks c closing, sends the close frame with code
 * and reason (<= 123 bytes; code 1005 sends an empty body), and gives the client
 * CLOSE_ACK_TIMEOUT_S to answer before lws ends the connection. Until the client's close
 * frame, its messages still go upstream after 1001, 1008 and Kick codes (it may have sent
 * them before it saw ours). On a connection already closing it sends nothing and only
 * records code (a bad message read after our close frame). */
void gw_ws_close(gw_conn_t *c, int code, const void *reason, size_t rlen);

/* gw_ws_hangup: ends c without a close handshake (the peer is gone or does not answer): marks
 * it closing, shuts the socket down and lets lws close it on its next turn (on_closed reports
 * 1006 unless a close code was exchanged). Not from inside one of c's own lws callbacks. */
void gw_ws_hangup(gw_conn_t *c);

/* gw_ws_open_event: an Open event for c (user, peer address, stored query); resync_gen != 0
 * marks a resync Open, and `rooms` puts c's rooms in it (Open.rooms: an API node that lost its
 * record of them takes them back). NULL when out of memory. Service thread of c. */
gw_event_t *gw_ws_open_event(gw_conn_t *c, uint32_t resync_gen, bool rooms);

#endif
