/* ws.h: the lws protocol table of ws-gateway (HTTP endpoints and the WebSocket endpoint
 * /gateway/ws on one port). The callback runs on the service thread of its context. */
#ifndef GW_WS_H
#define GW_WS_H

#include <libwebsockets.h>

extern const struct lws_protocols gw_ws_protocols[];

#endif
