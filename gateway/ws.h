/* ws.h: the lws protocol table of ws-gateway (HTTP endpoints and the WebSocket endpoint
 * /gateway/ws on one port). The callback runs on the service thread of its context. */
#ifndef GW_WS_H
#define GW_WS_H

#include <libwebsockets.h>

extern const struct lws_protocols gw_ws_protocols[];

/* gw_static_dir: the directory served at / (set once by main; NULL = none). */
const char *gw_static_dir(void);
/* gw_static_dir_init (main thread): --static-dir, else the installed demo
 * (/usr/share/wsgw/demo), else demo/ next to the binary's bin/ (a source tree). */
void gw_static_dir_init(const char *flag, const char *argv0);

#endif
