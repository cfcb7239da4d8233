/* httpd.h: the plain HTTP/1.1 side of the client port: /healthz, /readyz, /metrics, the static
 * files (--static-dir) and the error responses of a refused WebSocket handshake. Every response
 * closes the connection ("connection: close"): these are probes, scrapes and a demo page, not
 * a web server. Service thread of the connection. */
#ifndef GW_HTTPD_H
#define GW_HTTPD_H

#include <libwebsockets.h>
#include <stdbool.h>
#include <stddef.h>

#include "http1.h"

struct gw_svc;

/* gw_httpd_reply: writes one whole response (status line, headers, body unless head). The
 * caller then returns -1 from its callback: lws sends what is buffered, then closes. Returns 0,
 * or -1 when out of memory or the write failed. */
int gw_httpd_reply(struct lws *wsi, unsigned status, const char *ctype, const void *body,
                   size_t len, bool head);

/* gw_httpd_serve: answers a request that is not a WebSocket upgrade. */
void gw_httpd_serve(struct gw_svc *s, struct lws *wsi, const gw_http_req_t *r);

/* gw_httpd_status_text: "Not Found" for 404, ... */
const char *gw_httpd_status_text(unsigned status);

/* gw_static_dir: the directory served at / (set once by main; NULL = none). */
const char *gw_static_dir(void);
/* gw_static_dir_init (main thread): --static-dir, else the installed demo
 * (/usr/share/wsgw/demo), else demo/ next to the binary's bin/ (a source tree). */
void gw_static_dir_init(const char *flag, const char *argv0);

#endif
