/* grpc_internal.h: what grpc_server.c (connections, nghttp2 session, listener) and
 * grpc_stream.c (one gRPC call: dispatch, messages, responses, Downstream queue) share.
 * Not a public interface: include only from those two files and fuzz/fuzz_api_h2.c (which
 * drives a session without sockets). Loop thread only. */
#ifndef WSGW_API_GRPC_INTERNAL_H
#define WSGW_API_GRPC_INTERNAL_H

#include <nghttp2/nghttp2.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "acceptor.h"
#include "admin.h"
#include "bearer.h"
#include "buf.h"
#include "grpc_frame.h"
#include "grpc_out.h"
#include "grpc_server.h"
#include "iovq.h"
#include "sockio.h"
#include "stream.h"
#include "tls_server.h"
#include "wsapi_metrics.h"

#define READ_BUF (256 * 1024)
#define READ_BUDGET (4 * READ_BUF) /* per readable event, so one peer cannot starve others */
#define OUT_FILL (256 * 1024)      /* mem_send output gathered before one send(2) */
#define MAX_DATA_FRAME (256 * 1024)
#define H2_FRAME_HD 9               /* HTTP/2 frame header (RFC 9113 §4.1) */
#define GRPC__STOP (-100)          /* on_message's "stream already failed" */
#define CHUNK_OVERHEAD 64          /* a queued chunk's bookkeeping and malloc overhead, counted */
#define SWEEP_MS 250               /* deadline checks (handshakes, idle, unfinished messages) */
#define OUTQ_PAUSE 64              /* nghttp2 frames queued while the socket is full: stop reading */

/* gRPC status codes (grpc/doc/statuscodes.md) */
enum {
    GRPC_OK = 0,
    GRPC_INVALID_ARGUMENT = 3,
    GRPC_DEADLINE_EXCEEDED = 4,
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
    size_t cap;    /* data's capacity when it goes back to bufpool.h; 0: free()d */
} chunk_t;

typedef enum { GS_NEW, GS_EXCHANGE, GS_PUSH, GS_DONE } gs_kind_t;

/* HTTP/2 limits that fire (wsapi_h2_limit_total{limit}, names in wsapi_h2_limit_names). */
typedef enum {
    H2L_NONE = -1,
    H2L_HEADER_LIST = 0, /* a header block over --h2-max-header-list: connection ended */
    H2L_HEADER_RATE,     /* decoded header bytes over --h2-header-rate (HPACK bomb): ended */
    H2L_CONTROL,         /* SETTINGS/PING/PRIORITY/empty DATA over --h2-control-rate: ended */
    H2L_RESETS,          /* RST_STREAM over --h2-reset-burst (then 33/s): ended */
    H2L_CONN_BUFFER,     /* unfinished messages over --h2-conn-buffer: stream failed */
    H2L_MESSAGE_TIMEOUT, /* a message or Push request unfinished for --h2-message-timeout */
    H2L_IDLE_TIMEOUT,    /* no stream for --h2-idle-timeout: GOAWAY, closed */
    H2L_STREAM_QUEUE,    /* outbound queue of a stream over 4 x --stream-queue: stream reset */
    H2L_CONN_QUEUE,      /* outbound queues of a connection over --h2-conn-queue: reset */
    H2L_TOTAL_QUEUE,     /* outbound queues of all connections over --h2-total-queue: reset */
    H2L_COUNT
} h2_limit_t;
_Static_assert(H2L_COUNT == WSAPI_H2_LIMITS, "wsapi_h2_limit_names and h2_limit_t differ");

/* A token bucket (integer milli-tokens) for per-connection frame rates. */
typedef struct h2_bucket {
    uint64_t last_ms;
    uint64_t milli; /* tokens * 1000 */
} h2_bucket_t;

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
    char *wsgw_streams; /* x-wsgw-streams: streams that will say presence_complete */
    char *wsgw_instance, *wsgw_prefix; /* x-wsgw-instance, x-wsgw-conn-prefix (--redis) */
    struct gwait *wait; /* a unary answer that comes later (--redis); NULL: none */
    /* inbound */
    grpc_dec_t dec;
    bool dec_init;
    bool remote_closed;
    bool attached;       /* in presence */
    size_t unconsumed;   /* stream-window bytes withheld (backpressure) */
    bool blocked;
    buf_t push_msg;      /* Push: the request message */
    int push_count;
    admin_method_t admin; /* GS_PUSH: a wsgw.v1.Admin method (same unary path), or ADMIN_NONE */
    size_t buf_mem;      /* dec + push_msg capacity, counted in c->buffered */
    uint64_t msg_since_ms; /* an unfinished message (or Push request) since; 0: none */
    bool fed;            /* data arrived since the last sweep (a kept buffer stays) */
    /* outbound */
    chunk_t *oq_head, *oq_tail;
    size_t oq_bytes;
    size_t oq_mem;       /* oq_bytes + CHUNK_OVERHEAD per chunk: counted in c/srv->queued */
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
    iovq_t out;          /* what the socket did not take yet: copied bytes and refs to
                            queued chunks (grpc_out.h) */
    size_t data_copied;       /* stream_read_cb -> grpc__send_data: payload bytes in out */
    gstream_t *streams;
    size_t nstreams;
    size_t nblocked;
    size_t buffered;        /* unfinished inbound messages (Σ stream buf_mem) */
    size_t queued;          /* outbound queues (Σ stream oq_mem) */
    size_t hdr_block;       /* header list bytes of the block being received (RFC 9113 §6.5.2) */
    uint64_t idle_since_ms; /* no stream since (valid while nstreams == 0) */
    h2_bucket_t ctl, rst;   /* control frames, RST_STREAMs */
    h2_bucket_t hdr;        /* decoded header bytes */
    h2_limit_t limit;       /* a connection limit fired inside nghttp2: end it so */
    bool closing;
    bool failed; /* counted in wsapi_grpc_connection_errors_total */
    bool in_wlist;
    gconn_t *wnext; /* srv->wlist */
    gconn_t *prev, *next;
    uint64_t serial;
    pres_session_t psess; /* presence of this connection, once it carries an Exchange stream */
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
    uv_timer_t sweep;    /* every SWEEP_MS: handshake, idle and message deadlines */
    size_t nhandshaking; /* TLS connections not yet ready */
    acceptor_t acc;
    uv_check_t check;        /* flush after each loop iteration's I/O */
    nghttp2_session_callbacks *cbs;
    nghttp2_option *opt;
    gconn_t *conns;
    size_t nconns;
    gconn_t *wlist; /* connections with something to write */
    size_t queued;  /* outbound queues of every connection (Σ c->queued) */
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
/* grpc__send_data: nghttp2's send_data_callback for the DATA frames our data provider
 * (grpc_stream.c) filled with NGHTTP2_DATA_FLAG_NO_COPY: the payload is already in c->out
 * behind room for the 9-byte frame header, which this writes (see stream_read_cb). */
int grpc__send_data(nghttp2_session *ng, nghttp2_frame *frame, const uint8_t *framehd,
                    size_t length, nghttp2_data_source *src, void *ud);
/* grpc__stream_data: a DATA chunk for s (window accounting included). */
void grpc__stream_data(gstream_t *s, const uint8_t *data, size_t len);
/* grpc__stream_remote_end: the client half-closed s. */
void grpc__stream_remote_end(gstream_t *s);
/* grpc__stream_end: ends s after its queue with `status` (trailers, or trailers-only). */
void grpc__stream_end(gstream_t *s, int status, const char *msg);
/* grpc__quote: logfmt value of a possibly NULL string. */
const char *grpc__quote(char *out, size_t n, const char *s);
/* grpc__session_end: c's gateway session is over (its streams freed): the presence it
 * brought leaves (presence_session_end). No-op when c carried no Exchange stream. */
void grpc__session_end(gconn_t *c);
/* grpc__stream_sweep: fails s when its message or Push request is unfinished past the
 * deadline (now in uv_now ms). */
void grpc__stream_sweep(gstream_t *s, uint64_t now);
/* grpc__stream_overflow: resets s (RST_STREAM ENHANCE_YOUR_CALM) and drops its outbound queue;
 * counted under `limit`. */
void grpc__stream_overflow(gstream_t *s, h2_limit_t limit);

/* A unary call answered later (--redis): the stream, NULL once it is gone. */
typedef struct gwait {
    gstream_t *s;
} gwait_t;

/* ---- grpc_server.c ------------------------------------------------------------------------- */

/* grpc__conn_drop: closes c now (its gateway session ends); never from inside an nghttp2
 * callback of c. */
void grpc__conn_drop(gconn_t *c, const char *why);

/* grpc__conn_count_failure: counts a failed connection once, however many paths notice it. */
void grpc__conn_count_failure(gconn_t *c);

/* ---- grpc_h2session.c ---------------------------------------------------------------------- */

/* grpc__h2_setup: srv's nghttp2 callbacks and options (srv->cfg set). Returns 0 or -1. */
int grpc__h2_setup(grpc_server_t *srv);
/* grpc__session_new: c's nghttp2 server session with our SETTINGS queued and its budgets
 * full (c->srv set). Returns 0 or -1. */
int grpc__session_new(gconn_t *c);
/* grpc__conn_want_write: c has something for nghttp2 to send (flushed after this iteration). */
void grpc__conn_want_write(gconn_t *c);
/* grpc__limit: counts a limit that fired and logs it (rate-limited). */
void grpc__limit(gconn_t *c, h2_limit_t l, const char *detail);

/* ---- grpc_stream.c: a call's outbound queue and response (for grpc_unary.c) --------------- */

/* grpc__oq_push: queues data (len bytes, owned from here; cap > 0: a bufpool.h buffer of that
 * capacity, given back when sent, else freed) behind s's data provider. */
void grpc__oq_push(gstream_t *s, uint8_t *data, size_t len, size_t cap);
/* grpc__oq_clear: drops s's outbound queue. */
void grpc__oq_clear(gstream_t *s);
/* grpc__chunk_free: frees a chunk taken off a queue (its buffer back to bufpool.h). */
void grpc__chunk_free(chunk_t *ch);
/* grpc__submit_response: submits s's response headers (exchange: an Exchange stream's, with
 * x-wsgw-ack and, with --redis, x-wsgw-presence) and its data provider. Returns 0 or
 * nghttp2's error. */
int grpc__submit_response(gstream_t *s, bool exchange);
/* grpc__drop_input: drops what s holds of unfinished input (nothing more is decoded). */
void grpc__drop_input(gstream_t *s);

/* ---- grpc_unary.c -------------------------------------------------------------------------- */

/* grpc__push_finish: a unary call (Push or Admin) whose request is complete: answers it, now
 * or when its answer comes. */
void grpc__push_finish(gstream_t *s);

#endif
