/* grpc_server.h: ws-api's gRPC server (nghttp2 on a libuv loop), h2c or h2 over TLS.
 *
 * Transport: prior-knowledge HTTP/2 over TCP (h2c, no upgrade) by default; with tls_cert and
 * tls_key, HTTP/2 over TLS only (tls_server.h: TLS 1.2+, ALPN "h2" required, no
 * renegotiation, SNI ignored, no client certificates). The same nghttp2 session is then fed
 * through SSL_read/SSL_write on the non-blocking socket; each SSL call's WANT_READ/WANT_WRITE
 * decides what the socket is polled for (a read can need a write: TLS 1.3 KeyUpdate). A
 * connection whose handshake fails (not TLS, no h2, bad version, peer gone) or does not finish
 * within tls_handshake_timeout_ms is closed, logged and counted in
 * wsapi_tls_handshake_errors_total{reason=eof|protocol|alpn|timeout}; other connections are
 * not affected.
 *
 * Authentication (bearer.h, constant time): with push_token, /wsgw.v1.Push/Push needs request
 * header "authorization: Bearer <push_token>"; with gateway_token, /wsgw.v1.Exchange/Stream
 * needs "authorization: Bearer <gateway_token>". Otherwise that call alone is answered
 * trailers-only with grpc-status 16 UNAUTHENTICATED (before any presence change), logged
 * without the token, and counted in wsapi_auth_rejects_total{api,reason=missing|wrong}; the
 * connection and its other calls go on. Services:
 *   /wsgw.v1.Exchange/Stream  bidirectional, long-lived: Upstream batches in, Downstream
 *                             (commands + ack) out; response header x-wsgw-ack: 1.
 *   /wsgw.v1.Push/Push        unary PushRequest -> PushReply{gateways}.
 * Anything else: trailers-only grpc-status 12. A bad message (framing, protobuf, oversize)
 * fails only its own stream (13, or 8 for oversize); a connection that breaks HTTP/2 is closed
 * and counted.
 *
 * nghttp2 is driven with mem_recv/mem_send over non-blocking sockets watched by uv_poll: bytes
 * are written only when the socket is writable, and what the kernel did not take waits in a
 * per-connection buffer. Flow control: stream_window / conn_window; a stream whose outbound
 * queue passes `stream_queue` bytes, or whose connection's queues pass half of `conn_queue`
 * (its gateway does not read), stops returning inbound window, so the gateway slows down
 * instead of ws-api growing.
 *
 * Hostile peers (the budgets in grpc_server_cfg_t, each counted in wsapi_h2_limit_total and
 * logged at most once a second): header lists and decoded header bytes (HPACK bombs), control
 * frames and resets (floods, rapid reset) end the connection with ENHANCE_YOUR_CALM; message
 * buffers grow with the bytes that arrived, never with a prefix's declared length, and a
 * connection's unfinished messages are capped (the stream fails) and timed out; outbound queues
 * are capped per stream, per connection and in total (streams reset, largest first); a
 * connection without a stream is closed after idle_timeout_ms; a peer that leaves our answers
 * unread while frames outside flow control pile up is not read from meanwhile.
 *
 * Everything runs on the loop thread. */
#ifndef WSGW_API_GRPC_SERVER_H
#define WSGW_API_GRPC_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "exchange.h"
#include "presence.h"
#include "router.h"

#define GRPC_SERVER_ERR_LEN 256

typedef struct grpc_server_cfg {
    const char *listen;    /* "host:port" (IPv4 or [IPv6]) */
    size_t max_message;    /* largest gRPC message accepted (bigger: status 8) */
    const char *push_token; /* when non-empty, Push needs "authorization: Bearer TOKEN" */
    const char *gateway_token; /* when non-empty, Exchange needs "authorization: Bearer TOKEN" */
    const char *tls_cert, *tls_key; /* both non-empty: h2 over TLS instead of h2c */
    uint64_t tls_handshake_timeout_ms; /* TLS: unfinished handshakes are dropped after this */
    uint32_t stream_window; /* SETTINGS_INITIAL_WINDOW_SIZE we advertise */
    uint32_t conn_window;   /* connection receive window */
    size_t stream_queue;    /* outbound bytes per stream before inbound window is withheld;
                               4 x this: the stream is reset */
    /* Budgets against hostile peers (README "Threat model"): */
    uint32_t max_streams;      /* SETTINGS_MAX_CONCURRENT_STREAMS */
    uint32_t max_header_list;  /* SETTINGS_MAX_HEADER_LIST_SIZE, enforced: over it, the
                                  connection ends (ENHANCE_YOUR_CALM) */
    uint64_t header_rate;      /* decoded header bytes (name + value + 32 per field) per
                                  second per connection (burst: 1 s worth); past it the
                                  connection ends: what an HPACK bomb makes us decode */
    uint32_t control_rate;     /* SETTINGS/PING/PRIORITY/empty DATA frames per second per
                                  connection (burst: 2 s worth); past it the connection ends */
    uint32_t reset_burst;      /* RST_STREAMs a connection may send at once (then 33/s) */
    size_t conn_buffer;        /* bytes of unfinished messages one connection may hold; the
                                  stream whose DATA passes it fails (RESOURCE_EXHAUSTED) */
    size_t conn_queue;         /* outbound bytes queued to one connection; the stream whose
                                  Downstream passes it is reset */
    size_t total_queue;        /* outbound bytes queued to all connections; past it the
                                  largest queues are reset */
    uint64_t message_timeout_ms; /* a message (or Push request) unfinished this long: the
                                    stream fails (DEADLINE_EXCEEDED) */
    uint64_t idle_timeout_ms;  /* a connection without a stream this long: GOAWAY, closed */
    int unix_sndbuf;           /* unix:PATH listeners: SO_SNDBUF of each connection (0: the
                                  kernel's default) */
} grpc_server_cfg_t;

typedef struct grpc_server grpc_server_t;

/* grpc_server_new: binds and listens on cfg->listen and starts accepting on `loop`. Handles
 * Exchange batches through x (which routes through r over pres). Returns the server, or NULL
 * with a message in err (bad address, port in use, unreadable or mismatched certificate/key). The caller owns the server (grpc_server_free); x, r, pres and cfg's
 * strings must outlive it. */
grpc_server_t *grpc_server_new(uv_loop_t *loop, const grpc_server_cfg_t *cfg, exchange_t *x,
                               router_t *r, presence_t *pres, char err[GRPC_SERVER_ERR_LEN]);

/* grpc_server_flush: turns every dirty stream's pending commands into a Downstream and writes
 * what the sockets take. Runs by itself after each loop iteration's I/O; call it after queuing
 * commands from a timer. */
void grpc_server_flush(grpc_server_t *srv);

/* grpc_server_shutdown: stops accepting and sends GOAWAY (NO_ERROR) on every connection;
 * streams already open go on. Connections close once their streams are done. */
void grpc_server_shutdown(grpc_server_t *srv);

/* grpc_server_end_streams: ends every open Exchange stream now with `status` (after its queued
 * commands and ack). Used when the shutdown grace period is over. */
void grpc_server_end_streams(grpc_server_t *srv, int status, const char *message);

/* grpc_server_connections: open HTTP/2 connections. */
size_t grpc_server_connections(const grpc_server_t *srv);

/* grpc_server_port: the bound port (useful with port 0); -1 on unix:PATH. */
int grpc_server_port(const grpc_server_t *srv);

/* grpc_server_free: closes every connection and the listener (their uv handles close on the
 * next loop run) and frees the server once they have. */
void grpc_server_free(grpc_server_t *srv);

#endif
