/* grpc_internal.h: what grpc_server.c (connections, nghttp2 session, listener) and
 * grpc_stream.c (one gRPC call: dispatch, messages, responses, Downstream queue) share.
 * Not a public interface: include only from those two files. Loop thread only. */
#ifndef WSGW_API_GRPC_INTERNAL_H
#define WSGW_API_GRPC_INTERNAL_H

#include <nghttp2/nghttp2.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "acceptor.h"
#include "bearer.h"
#include "buf.h"
#include "grpc_frame.h"
#include "grpc_server.h"
#include "sockio.h"
#include "stream.h"
#include "tls_server.h"

#define READ_BUF (256 * 1024)
#define READ_BUDGET (4 * READ_BUF) /* per readable event, so one peer cannot starve others */
#define OUT_FILL (256 * 1024)      /* mem_send output gathered before one send(2) */
#define MAX_DATA_FRAME (256 * 1024)
#define GRPC__STOP (-100)          /* on_message's "stream already failed" */

/* gRPC status codes (grpc/doc/statuscodes.md) */
enum {
    GRPC_OK = 0,
    GRPC_INVALID_ARGUMENT = 3,
    GRPC_RESOURCE_EXHAUSTED = 8,
    GRPC_UNIMPLEMENTED = 12,
    GRPC_INTERNAL = 13,
    GRPC_UNAVAILABLE = 14,
    GRPC_UNAUTHENTICATED = 16,
};

/* One queued Downstream (or PushReply), gRPC-framed; the data provider copies from it. */
typedef struct chunk {
    struct chunk *next;
    uint8_t *data; /* owned */
    size_t len, off;
} chunk_t;

typedef enum { GS_NEW, GS_EXCHANGE, GS_PUSH, GS_DONE } gs_kind_t;

typedef struct gconn gconn_t;

/* One HTTP/2 stream = one gRPC call. Owned by its gconn; freed in nghttp2's on_stream_close or
 * with the connection. Owns its header strings, decoder buffer, queue and pending commands. */
typedef struct gstream {
    api_stream_t as; /* first: routing view (container_of by cast) */
    gconn_t *c;
    int32_t id;
    gs_kind_t kind;
    /* request headers */
    char *path, *gateway_id, *authorization, *content_type;
    /* inbound */
    grpc_dec_t dec;
    bool dec_init;
    bool remote_closed;
    bool attached;       /* in presence */
    size_t unconsumed;   /* stream-window bytes withheld (backpressure) */
    bool blocked;
    buf_t push_msg;      /* Push: the request message */
    int push_count;
    /* outbound */
    chunk_t *oq_head, *oq_tail;
    size_t oq_bytes;
    bool resp_submitted; /* response HEADERS submitted with our data provider */
    bool deferred;       /* our data provider returned DEFERRED */
    bool eof;            /* trailers go out once oq drains */
    bool trailers_sent;
    int status;
    char status_msg[128];
    struct gstream *prev, *next; /* conn's list */
} gstream_t;

/* One accepted TCP connection. Owned by the server; owns its fd, TLS state (when the listener
 * speaks TLS), nghttp2 session and streams; freed in the uv_close callback of its poll handle,
 * never inside an nghttp2 callback. */
struct gconn {
    grpc_server_t *srv;
    sockio_t io;         /* socket; io.ssl NULL: h2c, else freed (close_notify first when
                            healthy) in conn_close */
    bool tls_ready;      /* handshake done and ALPN h2 agreed: HTTP/2 bytes may flow */
    bool hs_wants_write; /* the handshake waits for the socket to be writable */
    uint64_t hs_deadline_ms; /* uv_now() after which an unfinished handshake is dropped */
    uv_poll_t poll;
    int events; /* UV_READABLE | UV_WRITABLE currently polled */
    nghttp2_session *ng;
    buf_t out; /* bytes the socket did not take yet */
    size_t out_off;
    gstream_t *streams;
    size_t nblocked;
    bool closing;
    bool failed; /* counted in wsapi_grpc_connection_errors_total */
    bool in_wlist;
    gconn_t *wnext; /* srv->wlist */
    gconn_t *prev, *next;
    uint64_t serial;
    char peer[80];
    char anon_gw[40]; /* gateway id for Exchange streams without x-gateway-id */
};

/* The server: listener, connections, nghttp2 callback table. Owned by main. */
struct grpc_server {
    uv_loop_t *loop;
    grpc_server_cfg_t cfg;
    exchange_t *x;
    router_t *r;
    presence_t *pres;
    int port;
    tls_server_t *tls; /* NULL: h2c */
    bearer_t push_auth, gateway_auth;
    uv_timer_t hs_timer; /* TLS only: drops handshakes past cfg.tls_handshake_timeout_ms */
    size_t nhandshaking; /* TLS connections not yet ready */
    acceptor_t acc;
    uv_check_t check;        /* flush after each loop iteration's I/O */
    nghttp2_session_callbacks *cbs;
    nghttp2_option *opt;
    gconn_t *conns;
    size_t nconns;
    gconn_t *wlist; /* connections with something to write */
    bool shutting_down;
    int handles_open; /* uv handles still to close before free */
    bool freeing;
    uint8_t rbuf[READ_BUF];
};

/* ---- grpc_stream.c ------------------------------------------------------------------------- */

/* grpc__stream_new: a stream for request `id` on c, linked into c's list (NULL: no memory). */
gstream_t *grpc__stream_new(gconn_t *c, int32_t id);
/* grpc__stream_free: detaches s from presence and the router, unlinks and frees it. */
void grpc__stream_free(gstream_t *s);
/* grpc__stream_dispatch: request headers complete: Exchange, Push, or an error response. */
void grpc__stream_dispatch(gstream_t *s);
/* grpc__stream_data: a DATA chunk for s (window accounting included). */
void grpc__stream_data(gstream_t *s, const uint8_t *data, size_t len);
/* grpc__stream_remote_end: the client half-closed s. */
void grpc__stream_remote_end(gstream_t *s);
/* grpc__stream_end: ends s after its queue with `status` (trailers, or trailers-only). */
void grpc__stream_end(gstream_t *s, int status, const char *msg);
/* grpc__quote: logfmt value of a possibly NULL string. */
const char *grpc__quote(char *out, size_t n, const char *s);

/* ---- grpc_server.c ------------------------------------------------------------------------- */

/* grpc__conn_want_write: c has something for nghttp2 to send (flushed after this iteration). */
void grpc__conn_want_write(gconn_t *c);

#endif
