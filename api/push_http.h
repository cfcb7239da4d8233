/* push_http.h: ws-api's HTTP/1.1 API on --http-listen (the routes; http_server.h serves the
 * connections on the same libuv loop as the gRPC server).
 *
 *   POST /v1/push          {"conn_ids":[..],"user_ids":[..],"room":"R","all":false,
 *                           "data":"text" | "data_base64":"..."}   -> 200 {"gateways":N}
 *   POST /v1/kick          {"conn_ids"|"user_ids"|"room"|"all", "code":4000, "reason":"..."}
 *                                                                  -> 200 {"gateways":N}
 *   GET  /v1/users/{id}    -> 200 {"user_id":"u","connections":[{"conn_id":"<decimal>",
 *                             "gateway_id":"..."}]}  (an unknown user has an empty list: being
 *                             offline is an answer, not an error)
 *   GET  /v1/rooms/{room}  -> 200 {"room":"R","count":N,"members":[{"conn_id":"<decimal>",
 *                             "user_id":"u","gateway_id":"..."}]}  (the joins this node made,
 *                             rooms.h; an empty room has count 0)
 *   GET  /healthz          -> 200 ok (the process serves)
 *   GET  /readyz           -> 200 ready while push and presence requests can be answered;
 *                             503 {"error":"presence resyncing" | "redis unavailable" | ... |
 *                             "shutting down"} otherwise (a load balancer in front of the push
 *                             API; gateways must still reach a node that is not ready)
 *   GET  /metrics          -> Prometheus text
 * Errors: {"error":"..."} with 400 (bad body), 401 (--push-token set and the bearer token is
 * missing or wrong; /v1/... only), 404, 405, 503 {"error":"presence resyncing"} with
 * Retry-After: 1 on /v1/push, /v1/kick and /v1/users/{id} while presence is not whole after a
 * start or a gateway's reconnect (presence_gate.h; a bad body is still 400), and from the connection itself (http_conn.h):
 * 400 (malformed head, ambiguous framing), 408 (head or body too slow), 411 (chunked body),
 * 413 (body over max_body). GET paths also answer HEAD.
 *
 * Authentication: with push_token, every /v1/... request needs "Authorization: Bearer TOKEN"
 * (bearer.h: constant time); otherwise 401 {"error":...}, a log line without the token, and
 * wsapi_auth_rejects_total{api="http_push",reason=missing|wrong}. /healthz, /readyz and /metrics stay
 * open (bind --http-listen to an internal address if that matters).
 *
 * TLS: with tls_cert and tls_key the port speaks HTTPS only (tls_server.h, the gRPC port's
 * policy: TLS 1.2+, ECDHE+AEAD suites for 1.2, no renegotiation; ALPN http/1.1 when the
 * client offers ALPN). A bad file is a clear start-up error.
 *
 * Why our own HTTP/1.1 server (http_server.h + http_conn.h over common/http1.h) and not
 * libwebsockets', which served this port before: lws 4.1's HTTP server spun at 100 % CPU on
 * two pipelined POSTs (the second answer went out headers-only and the loop never left), read
 * bytes after an ambiguous Content-Length + Transfer-Encoding as a new request, and had no
 * deadline for a body that trickles in; none of that can be fixed from outside the library.
 * libmicrohttpd (Debian) was the other candidate: it would need its own thread or an
 * epoll-fd bridge into our libuv loop, its TLS is GnuTLS (a second TLS stack and cipher
 * policy beside OpenSSL's on the gRPC port), and its framing rules are its own. The request
 * head parser the gateway already uses (fuzzed since it was written) plus ~600 lines of
 * state machine and socket code make pipelining, framing and timeouts right by construction,
 * run on ws-api's one loop and thread, and share the TLS code of the gRPC port; the state
 * machine has no I/O, so fuzz_api_http1 drives it with arbitrary bytes in arbitrary chunks.
 *
 * Loop thread only. */
#ifndef WSGW_API_PUSH_HTTP_H
#define WSGW_API_PUSH_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "presence.h"
#include "rooms.h"
#include "router.h"

#define PUSH_HTTP_ERR_LEN 256

typedef struct push_http_cfg {
    const char *listen;     /* "host:port" */
    const char *push_token; /* non-empty: /v1/... needs "Authorization: Bearer TOKEN" */
    size_t max_body;        /* larger request bodies: 413 */
    const char *tls_cert, *tls_key; /* both non-empty: HTTPS only on this port */
    size_t max_conns;       /* past it: 503 and close */
    uint64_t handshake_timeout_ms, head_timeout_ms, body_timeout_ms, idle_timeout_ms;
    rooms_t *rooms; /* GET /v1/rooms/{room} (NULL: every room is empty); must outlive it */
} push_http_cfg_t;

typedef struct push_http push_http_t;

/* push_http_new: listens on cfg->listen and serves on `loop`. Returns the server, or NULL
 * with a message in err (bad address, port in use, unreadable or mismatched certificate/key). The caller owns it (push_http_free); r, pres and cfg's strings must
 * outlive it. */
push_http_t *push_http_new(uv_loop_t *loop, const push_http_cfg_t *cfg, router_t *r,
                           presence_t *pres, char err[PUSH_HTTP_ERR_LEN]);

/* push_http_port: the bound port; -1 on unix:PATH. */
int push_http_port(const push_http_t *h);

/* push_http_draining: ws-api is shutting down; /readyz answers 503 from now on. */
void push_http_draining(push_http_t *h);

/* push_http_free: closes the server (its uv handles close on the next loop runs). */
void push_http_free(push_http_t *h);

#endif
