/* http_server.h: ws-api's HTTP/1.1 server: sockets (plain, or TLS through tls_server.h) on the
 * libuv loop, one http_conn.h state machine per connection, and the limits around them.
 *
 * Per connection, one deadline at a time (checked every 250 ms):
 *   - TLS handshake not done within handshake_timeout: closed;
 *   - a request head not complete within head_timeout of its first byte: 408, closed;
 *   - a body not complete within body_timeout of its head: 408, closed (body slowloris);
 *   - nothing of a next request within idle_timeout (keep-alive): closed;
 *   - response bytes the client does not read within idle_timeout: closed.
 * At most max_conns connections: past it a new connection gets a bare 503 (plain HTTP) and is
 * closed at once. Reading stops while a connection's answers pile up (http_conn.h), and a
 * connection that is answered and closing first sends its last bytes, shuts down its sending
 * side and then reads and drops whatever the client still sends for up to 2 s (at most 1 MiB),
 * so that a client still sending its body receives the answer instead of a reset.
 * Every limit that fires counts in wsapi_http_limit_total{limit} and is logged (rate-limited;
 * idle keep-alive closes only at debug). Accepting backs off on EMFILE (acceptor.h).
 *
 * Loop thread only. */
#ifndef WSGW_API_HTTP_SERVER_H
#define WSGW_API_HTTP_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "http_conn.h"

#define HTTP_SERVER_ERR_LEN 256

typedef struct http_server_cfg {
    const char *listen;             /* "host:port" */
    const char *tls_cert, *tls_key; /* both non-empty: HTTPS only (ALPN http/1.1 if offered) */
    size_t max_body;
    size_t max_conns;
    uint64_t handshake_timeout_ms, head_timeout_ms, body_timeout_ms, idle_timeout_ms;
    http_handler_fn handler; /* answers every complete request */
    /* on_refused: a request the connection refused itself (status 400/408/411/413), with its
     * path when the head was readable ("" otherwise). May be NULL. */
    void (*on_refused)(void *ud, int status, const char *path);
    void *ud;
} http_server_cfg_t;

typedef struct http_server http_server_t;

/* http_server_new: listens on cfg->listen and serves on loop. Returns the server, or NULL with
 * a message in err (bad address, port in use, unreadable or mismatched certificate/key). The
 * caller owns it (http_server_free); cfg's strings and ud must outlive it. */
http_server_t *http_server_new(uv_loop_t *loop, const http_server_cfg_t *cfg,
                               char err[HTTP_SERVER_ERR_LEN]);

/* http_server_port: the bound port; -1 on unix:PATH. */
int http_server_port(const http_server_t *s);

/* http_server_connections: open connections. */
size_t http_server_connections(const http_server_t *s);

/* Answering later (the handler needs Redis, say): inside the handler, http_server_hold(c)
 * defers the request (http_conn_defer) and returns a handle that keeps the connection's
 * memory; http_server_answer later queues the answer (when the client is still there), sends
 * it, goes on with requests pipelined behind it, and releases the handle. Exactly one answer
 * per hold (http_server_answer with status 0 just releases it). */
typedef struct hconn http_hold_t;
http_hold_t *http_server_hold(http_conn_t *c);
void http_server_answer(http_hold_t *h, int status, const char *ctype, const char *hdrs,
                        const void *body, size_t len);

/* http_server_free: closes every connection and the listener; the memory goes once their uv
 * handles closed (the loop must run once more). */
void http_server_free(http_server_t *s);

#endif
