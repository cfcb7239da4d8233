/* ws.h: the lws protocol table of ws-gateway (HTTP endpoints and the WebSocket endpoint
 * /gateway/ws on one port). The callback runs on the service thread of its context. */
#ifndef GW_WS_H
#define GW_WS_H

#include <libwebsockets.h>

#include "conn.h"

/* rx_buffer_size of [0] is set from --rx-buffer by main before any context exists. */
extern struct lws_protocols gw_ws_protocols[];

/* gw_ws_write: one WebSocket message to c (service thread of c, outside c's own callbacks or
 * in its WRITEABLE). Counts it and its egress time. Returns 0, or -1 when lws refused it. */
int gw_ws_write(gw_conn_t *c, gw_payload_t *p);

/* gw_ws_open_event: an Open event for c (user, peer address, stored query); resync_gen != 0
 * marks a resync Open. NULL when out of memory. Service thread of c. */
gw_event_t *gw_ws_open_event(gw_conn_t *c, uint32_t resync_gen);

/* gw_static_dir: the directory served at / (set once by main; NULL = none). */
const char *gw_static_dir(void);
/* gw_static_dir_init (main thread): --static-dir, else the installed demo
 * (/usr/share/wsgw/demo), else demo/ next to the binary's bin/ (a source tree). */
void gw_static_dir_init(const char *flag, const char *argv0);

#endif
