/* push_http.h: ws-api's HTTP/1.1 API on --http-listen, served by libwebsockets on the same
 * libuv loop as the gRPC server (lws joins a foreign loop: LWS_SERVER_OPTION_LIBUV +
 * info.foreign_loops).
 *
 *   POST /v1/push          {"conn_ids":[..],"user_ids":[..],"room":"R","all":false,
 *                           "data":"text" | "data_base64":"..."}   -> 200 {"gateways":N}
 *   POST /v1/kick          {"conn_ids"|"user_ids"|"room"|"all", "code":4000, "reason":"..."}
 *                                                                  -> 200 {"gateways":N}
 *   GET  /v1/users/{id}    -> 200 {"user_id":"u","connections":[{"conn_id":"<decimal>",
 *                             "gateway_id":"..."}]}  (an unknown user has an empty list: being
 *                             offline is an answer, not an error)
 *   GET  /healthz          -> 200 ok
 *   GET  /metrics          -> Prometheus text
 * Errors: {"error":"..."} with 400 (bad body), 411 (chunked body: lws 4.1 does not hand those
 * over), 401 (--push-token set and the bearer token is
 * missing or wrong; /v1/... only), 404, 405, 413 (body over max_body).
 *
 * Authentication: with push_token, every /v1/... request needs "Authorization: Bearer TOKEN"
 * (bearer.h: constant time); otherwise 401 {"error":...}, a log line without the token, and
 * wsapi_auth_rejects_total{api="http_push",reason=missing|wrong}. /healthz and /metrics stay
 * open (bind --http-listen to an internal address if that matters).
 *
 * TLS: with tls_cert and tls_key the port speaks HTTPS only (lws does TLS itself with OpenSSL:
 * LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT, the vhost's ssl_cert_filepath/ssl_private_key_filepath;
 * TLS 1.2+, ECDHE+AEAD suites for 1.2, no renegotiation, ALPN http/1.1). The files are loaded
 * and checked with OpenSSL before lws starts, so a bad file is a clear start-up error.
 *
 * Why libwebsockets: it is already a dependency (the gateway), it is the one HTTP/1.1 server in
 * Debian that runs on a foreign libuv loop, so ws-api stays one thread and one loop; the request
 * bodies here are small JSON documents, which its callback API handles well enough.
 *
 * Loop thread only. */
#ifndef WSGW_API_PUSH_HTTP_H
#define WSGW_API_PUSH_HTTP_H

#include <stddef.h>
#include <uv.h>

#include "presence.h"
#include "router.h"

#define PUSH_HTTP_ERR_LEN 256

typedef struct push_http_cfg {
    const char *listen;     /* "host:port" */
    const char *push_token; /* non-empty: /v1/... needs "Authorization: Bearer TOKEN" */
    size_t max_body;        /* larger request bodies: 413 */
    const char *tls_cert, *tls_key; /* both non-empty: HTTPS only on this port */
} push_http_cfg_t;

typedef struct push_http push_http_t;

/* push_http_new: creates the lws context on `loop` and listens. Returns the server, or NULL
 * with a message in err (bad address, port in use, unreadable or mismatched certificate/key). The caller owns it (push_http_free); r, pres and cfg's strings must
 * outlive it. */
push_http_t *push_http_new(uv_loop_t *loop, const push_http_cfg_t *cfg, router_t *r,
                           presence_t *pres, char err[PUSH_HTTP_ERR_LEN]);

/* push_http_port: the bound port. */
int push_http_port(const push_http_t *h);

/* push_http_free: destroys the lws context (its uv handles close on the next loop runs). */
void push_http_free(push_http_t *h);

#endif
