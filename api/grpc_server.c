/* grpc_server.c: h2c gRPC server on nghttp2 + libuv (see grpc_server.h).
 *
 * Threads: everything here runs on ws-api's single loop thread (uv callbacks and the nghttp2
 * callbacks they trigger). No locks.
 *
 * Object lifetimes: a gconn owns its nghttp2 session, its socket and its gstreams. A gstream
 * dies in nghttp2's on_stream_close (or with its connection). A gconn is never freed inside an
 * nghttp2 callback: conn_close() runs only from uv callbacks, and the memory goes in the
 * uv_close callback of its poll handle. */
#include "grpc_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "addr.h"
#include "downstream.h"
#include "grpc_frame.h"
#include "log.h"
#include "metrics.h"
#include "push.h"
#include "wsapi_metrics.h"
#include "wsgw.pb-c.h"

#define READ_BUF (256 * 1024)
#define READ_BUDGET (4 * READ_BUF) /* per readable event, so one peer cannot starve others */
#define OUT_FILL (256 * 1024)      /* mem_send output gathered before one send(2) */
#define MAX_DATA_FRAME (256 * 1024)

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

typedef struct chunk {
    struct chunk *next;
    uint8_t *data; /* owned */
    size_t len, off;
} chunk_t;

typedef enum { GS_NEW, GS_EXCHANGE, GS_PUSH, GS_DONE } gs_kind_t;

typedef struct gconn gconn_t;

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

struct gconn {
    grpc_server_t *srv;
    int fd;
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

struct grpc_server {
    uv_loop_t *loop;
    grpc_server_cfg_t cfg;
    exchange_t *x;
    router_t *r;
    presence_t *pres;
    int lfd;
    uv_poll_t lpoll;
    bool listening;
    uv_timer_t accept_timer; /* re-arms accept after EMFILE */
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

static uint64_t conn_serial, stream_serial;

/* Counts a failed connection once, however many paths notice it. */
static void conn_count_failure(gconn_t *c)
{
    if (!c->failed) {
        c->failed = true;
        metrics_inc(wsapi_m.grpc_conn_errors);
    }
}

static void conn_close(gconn_t *c, const char *why);
static void on_conn_poll(uv_poll_t *h, int status, int events);
static void conn_want_write(gconn_t *c);
static void stream_flush(api_stream_t *as);
static void stream_fail(gstream_t *s, int status, const char *msg);

/* ---- small helpers ------------------------------------------------------------------------- */

#define MAKE_NV(n, v)                                                                          \
    {                                                                                          \
        (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v),                              \
            NGHTTP2_NV_FLAG_NO_COPY_NAME                                                       \
    }

static char *dupn(const uint8_t *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, p, n);
        s[n] = 0;
    }
    return s;
}

/* grpc-message value: percent-encode '%' and bytes outside printable ASCII (gRPC over HTTP/2
 * spec, "Responses"); truncated to fit out. */
static void grpc_message_encode(char *out, size_t n, const char *msg)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)(msg ? msg : ""); *p && o + 4 < n; p++) {
        if (*p >= 0x20 && *p <= 0x7e && *p != '%') {
            out[o++] = (char)*p;
        } else {
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        }
    }
    out[o] = 0;
}

static const char *qv(char *out, size_t n, const char *s)
{
    return log_quote(out, n, s ? s : "");
}

/* ---- outbound queue ------------------------------------------------------------------------ */

static void oq_push(gstream_t *s, uint8_t *data, size_t len)
{
    chunk_t *ch = malloc(sizeof *ch);
    if (!ch) {
        free(data);
        stream_fail(s, GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    ch->next = NULL;
    ch->data = data;
    ch->len = len;
    ch->off = 0;
    if (s->oq_tail)
        s->oq_tail->next = ch;
    else
        s->oq_head = ch;
    s->oq_tail = ch;
    s->oq_bytes += len;
}

static void oq_clear(gstream_t *s)
{
    for (chunk_t *ch = s->oq_head, *n; ch; ch = n) {
        n = ch->next;
        free(ch->data);
        free(ch);
    }
    s->oq_head = s->oq_tail = NULL;
    s->oq_bytes = 0;
}

/* After queuing or ending: wake nghttp2's deferred data provider and the socket. */
static void stream_kick(gstream_t *s)
{
    if (s->deferred && s->resp_submitted) {
        s->deferred = false;
        nghttp2_session_resume_data(s->c->ng, s->id);
    }
    conn_want_write(s->c);
}

/* ---- presence membership ------------------------------------------------------------------- */

static void stream_detach(gstream_t *s)
{
    if (!s->attached)
        return;
    grpc_server_t *srv = s->c->srv;
    size_t gws = srv->pres->ngateways;
    char gw[96];
    qv(gw, sizeof gw, s->as.gw ? s->as.gw->id : "");
    size_t dropped = presence_detach(srv->pres, &s->as);
    s->attached = false;
    s->as.closed = true;
    metrics_gauge_add(wsapi_m.gateway_streams, -1);
    metrics_gauge_add(wsapi_m.presence, -(int64_t)dropped);
    metrics_gauge_add(wsapi_m.gateways, (int64_t)srv->pres->ngateways - (int64_t)gws);
    log_info("exchange stream closed", "gateway=%s stream=%llu conn=%llu", gw,
             (unsigned long long)s->as.serial, (unsigned long long)s->c->serial);
    if (srv->pres->ngateways < gws)
        log_info("gateway left", "gateway=%s connections_dropped=%zu", gw, dropped);
}

/* ---- responses ----------------------------------------------------------------------------- */

static void submit_trailers_only(gstream_t *s, int status, const char *msg)
{
    char st[12];
    snprintf(st, sizeof st, "%d", status);
    grpc_message_encode(s->status_msg, sizeof s->status_msg, msg);
    nghttp2_nv nva[] = {
        MAKE_NV(":status", "200"),
        MAKE_NV("content-type", "application/grpc"),
        MAKE_NV("grpc-status", st),
        MAKE_NV("grpc-message", s->status_msg),
    };
    nghttp2_submit_response(s->c->ng, s->id, nva, s->status_msg[0] ? 4 : 3, NULL);
    s->trailers_sent = true;
    s->eof = true;
    s->kind = GS_DONE;
    conn_want_write(s->c);
}

static ssize_t stream_read_cb(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t length,
                              uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    (void)ud;
    gstream_t *s = src->ptr;
    size_t n = 0;
    while (n < length && s->oq_head) {
        chunk_t *ch = s->oq_head;
        size_t take = ch->len - ch->off;
        if (take > length - n)
            take = length - n;
        memcpy(buf + n, ch->data + ch->off, take);
        ch->off += take;
        n += take;
        if (ch->off == ch->len) {
            s->oq_head = ch->next;
            if (!s->oq_head)
                s->oq_tail = NULL;
            free(ch->data);
            free(ch);
        }
    }
    s->oq_bytes -= n; /* withheld window (if any) is returned by conn_unblock, outside nghttp2 */
    if (!s->oq_head && s->eof) {
        char st[12];
        snprintf(st, sizeof st, "%d", s->status);
        nghttp2_nv tr[] = {
            MAKE_NV("grpc-status", st),
            MAKE_NV("grpc-message", s->status_msg),
        };
        *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
        if (nghttp2_submit_trailer(ng, id, tr, s->status_msg[0] ? 2 : 1) != 0)
            *flags &= ~(uint32_t)NGHTTP2_DATA_FLAG_NO_END_STREAM; /* at least end the stream */
        s->trailers_sent = true;
        return (ssize_t)n;
    }
    if (n == 0) {
        s->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    return (ssize_t)n;
}

static ssize_t read_length_cb(nghttp2_session *ng, uint8_t type, int32_t id, int32_t swin,
                              int32_t cwin, uint32_t remote_max, void *ud)
{
    (void)ng;
    (void)type;
    (void)id;
    (void)ud;
    ssize_t n = swin < cwin ? swin : cwin;
    if ((uint32_t)n > remote_max)
        n = remote_max;
    if (n > MAX_DATA_FRAME)
        n = MAX_DATA_FRAME;
    return n > 0 ? n : 1;
}

static int submit_stream_response(gstream_t *s, bool exchange)
{
    nghttp2_nv nva[] = {
        MAKE_NV(":status", "200"),
        MAKE_NV("content-type", "application/grpc"),
        MAKE_NV("x-wsgw-ack", "1"),
    };
    nghttp2_data_provider dp = {.source.ptr = s, .read_callback = stream_read_cb};
    int rv = nghttp2_submit_response(s->c->ng, s->id, nva, exchange ? 3 : 2, &dp);
    if (rv == 0)
        s->resp_submitted = true;
    return rv;
}

/* Ends the stream after what is queued, with `status`. Pending commands are flushed first. */
static void stream_end(gstream_t *s, int status, const char *msg)
{
    if (s->eof)
        return;
    if (s->kind == GS_EXCHANGE) {
        stream_flush(&s->as);
        if (s->eof)
            return; /* the flush itself failed the stream */
    }
    stream_detach(s);
    s->as.closed = true;
    s->status = status;
    grpc_message_encode(s->status_msg, sizeof s->status_msg, msg);
    if (!s->resp_submitted) {
        submit_trailers_only(s, status, msg);
        return;
    }
    s->eof = true;
    stream_kick(s);
}

/* A bad message or resource problem: fail this stream only. */
static void stream_fail(gstream_t *s, int status, const char *msg)
{
    if (s->eof)
        return;
    char gw[96], m[160];
    log_warn("stream failed", "status=%d error=%s gateway=%s stream=%llu peer=%s", status,
             qv(m, sizeof m, msg), qv(gw, sizeof gw, s->gateway_id),
             (unsigned long long)s->as.serial, s->c->peer);
    stream_end(s, status, msg);
}

/* ---- flushing commands into Downstream messages -------------------------------------------- */

static void stream_flush(api_stream_t *as)
{
    gstream_t *s = (gstream_t *)as;
    if (s->eof || (as->ncmds == 0 && !as->ack_dirty))
        return;
    if (downstream_finish(&as->pending, as->ack) < 0) {
        buf_free(&as->pending);
        as->ncmds = 0;
        stream_fail(s, GRPC_RESOURCE_EXHAUSTED, "out of memory encoding Downstream");
        return;
    }
    metrics_inc(wsapi_m.downstream_msgs);
    metrics_add(wsapi_m.downstream_bytes, as->pending.len);
    metrics_add(wsapi_m.commands, as->ncmds);
    size_t len = as->pending.len;
    uint8_t *data = as->pending.data;
    as->pending = (buf_t)BUF_INIT;
    as->ncmds = 0;
    as->ack_dirty = false;
    oq_push(s, data, len);
    if (s->eof)
        return; /* oq_push failed the stream */
    if (s->oq_bytes > 4 * s->c->srv->cfg.stream_queue) {
        /* Pushes kept coming for a gateway that does not read. RST_STREAM with
         * ENHANCE_YOUR_CALM maps to RESOURCE_EXHAUSTED in gRPC; the gateway re-sends its unacked
         * batches on another stream. */
        metrics_inc(wsapi_m.stream_overflows);
        char gw[96];
        log_warn("stream queue overflow", "gateway=%s stream=%llu queued=%zu",
                 qv(gw, sizeof gw, s->gateway_id), (unsigned long long)as->serial, s->oq_bytes);
        stream_detach(s);
        oq_clear(s);
        s->eof = s->trailers_sent = true;
        nghttp2_submit_rst_stream(s->c->ng, NGHTTP2_FLAG_NONE, s->id,
                                  NGHTTP2_ENHANCE_YOUR_CALM);
        conn_want_write(s->c);
        return;
    }
    stream_kick(s);
}

/* ---- request dispatch ---------------------------------------------------------------------- */

static int on_message(void *ud, const uint8_t *msg, size_t len);

static void stream_dispatch(gstream_t *s)
{
    grpc_server_t *srv = s->c->srv;
    char p[96];
    if (!s->content_type || strncmp(s->content_type, "application/grpc", 16) != 0) {
        /* gRPC over HTTP/2 spec: a non-gRPC content-type gets HTTP 415. */
        nghttp2_nv nva[] = {MAKE_NV(":status", "415")};
        nghttp2_submit_response(s->c->ng, s->id, nva, 1, NULL);
        s->kind = GS_DONE;
        s->eof = s->trailers_sent = true;
        log_rl_warn("not a gRPC request", "path=%s peer=%s", qv(p, sizeof p, s->path),
                    s->c->peer);
        return;
    }
    if (s->path && strcmp(s->path, "/wsgw.v1.Exchange/Stream") == 0) {
        s->kind = GS_EXCHANGE;
        grpc_dec_init(&s->dec, srv->cfg.max_message);
        s->dec_init = true;
        const char *gid = s->gateway_id && *s->gateway_id ? s->gateway_id : s->c->anon_gw;
        size_t gws = srv->pres->ngateways;
        if (!presence_attach(srv->pres, gid, &s->as)) {
            stream_fail(s, GRPC_RESOURCE_EXHAUSTED, "out of memory");
            return;
        }
        s->attached = true;
        metrics_gauge_add(wsapi_m.gateway_streams, 1);
        metrics_gauge_add(wsapi_m.gateways, (int64_t)srv->pres->ngateways - (int64_t)gws);
        char gw[96];
        log_info("exchange stream open", "gateway=%s stream=%llu conn=%llu peer=%s",
                 qv(gw, sizeof gw, gid), (unsigned long long)s->as.serial,
                 (unsigned long long)s->c->serial, s->c->peer);
        if (submit_stream_response(s, true) != 0)
            stream_fail(s, GRPC_INTERNAL, "cannot submit response");
        return;
    }
    if (s->path && strcmp(s->path, "/wsgw.v1.Push/Push") == 0) {
        if (!push_token_ok(srv->cfg.push_token, s->authorization)) {
            metrics_inc(wsapi_m.grpc_push[GRPC_UNAUTHENTICATED]);
            log_rl_warn("push unauthenticated", "peer=%s", s->c->peer);
            submit_trailers_only(s, GRPC_UNAUTHENTICATED, "missing or wrong bearer token");
            return;
        }
        s->kind = GS_PUSH;
        grpc_dec_init(&s->dec, srv->cfg.max_message);
        s->dec_init = true;
        return;
    }
    metrics_inc(wsapi_m.unknown_method);
    log_rl_warn("unknown method", "path=%s peer=%s", qv(p, sizeof p, s->path), s->c->peer);
    char msg[160];
    snprintf(msg, sizeof msg, "unknown method %.120s", s->path ? s->path : "(none)");
    submit_trailers_only(s, GRPC_UNIMPLEMENTED, msg);
}

/* The unary Push call, once its request is complete. */
static void push_finish(gstream_t *s)
{
    grpc_server_t *srv = s->c->srv;
    int status = GRPC_OK;
    const char *msg = "";
    Wsgw__V1__PushRequest *req = NULL;
    if (s->push_count != 1) {
        status = GRPC_INTERNAL;
        msg = "expected exactly one request message";
        goto reply;
    }
    req = wsgw__v1__push_request__unpack(NULL, s->push_msg.len, s->push_msg.data);
    if (!req) {
        metrics_inc(wsapi_m.dec_protobuf);
        status = GRPC_INTERNAL;
        msg = "cannot decode wsgw.v1.PushRequest";
        goto reply;
    }
    target_t t = {0};
    if (req->target) {
        t.conn_ids = req->target->conn_ids;
        t.n_conn_ids = req->target->n_conn_ids;
        t.user_ids = req->target->user_ids;
        t.n_user_ids = req->target->n_user_ids;
        t.room = req->target->room && *req->target->room ? req->target->room : NULL;
        t.all = req->target->all;
    }
    if (target_empty(&t)) {
        status = GRPC_INVALID_ARGUMENT;
        msg = "empty target";
        goto reply;
    }
    int n = push_send(srv->r, &t, req->payload.data, req->payload.len, req->binary);
    if (n < 0) {
        status = GRPC_RESOURCE_EXHAUSTED;
        msg = "out of memory";
        goto reply;
    }
    Wsgw__V1__PushReply rep = WSGW__V1__PUSH_REPLY__INIT;
    rep.gateways = (uint32_t)n;
    size_t len = wsgw__v1__push_reply__get_packed_size(&rep);
    uint8_t *out = malloc(GRPC_FRAME_HDR_LEN + len);
    if (!out) {
        status = GRPC_RESOURCE_EXHAUSTED;
        msg = "out of memory";
        goto reply;
    }
    grpc_frame_header(out, (uint32_t)len);
    wsgw__v1__push_reply__pack(&rep, out + GRPC_FRAME_HDR_LEN);
    oq_push(s, out, GRPC_FRAME_HDR_LEN + len);
    if (s->eof)
        goto done;
    if (submit_stream_response(s, false) != 0) {
        oq_clear(s);
        status = GRPC_INTERNAL;
        msg = "cannot submit response";
        goto reply;
    }
reply:
    metrics_inc(wsapi_m.grpc_push[status]);
    if (status != GRPC_OK)
        log_rl_warn("push failed", "status=%d error=\"%s\" peer=%s", status, msg, s->c->peer);
    stream_end(s, status, msg);
done:
    if (req)
        wsgw__v1__push_request__free_unpacked(req, NULL);
    buf_free(&s->push_msg);
}

static void stream_remote_end(gstream_t *s)
{
    if (s->remote_closed)
        return;
    s->remote_closed = true;
    if (s->eof)
        return;
    if (s->dec_init && grpc_dec_partial(&s->dec)) {
        metrics_inc(wsapi_m.dec_truncated);
        stream_fail(s, GRPC_INTERNAL, "stream ended inside a message");
        return;
    }
    if (s->kind == GS_EXCHANGE)
        stream_end(s, GRPC_OK, NULL); /* the gateway half-closed: flush, then trailers */
    else if (s->kind == GS_PUSH)
        push_finish(s);
}

/* A complete gRPC message of stream ud. Returns <0 to stop the decoder (stream failed). */
static int on_message(void *ud, const uint8_t *msg, size_t len)
{
    gstream_t *s = ud;
    grpc_server_t *srv = s->c->srv;
    if (s->eof)
        return -100;
    if (s->kind == GS_PUSH) {
        if (++s->push_count > 1 || buf_append(&s->push_msg, msg, len) < 0) {
            stream_fail(s, GRPC_INTERNAL, s->push_count > 1 ? "more than one request message"
                                                            : "out of memory");
            return -100;
        }
        return 0;
    }
    int rv = exchange_upstream(srv->x, &s->as, msg, len);
    if (rv == EXCHANGE_ERR_DECODE) {
        metrics_inc(wsapi_m.dec_protobuf);
        stream_fail(s, GRPC_INTERNAL, "cannot decode wsgw.v1.Upstream");
        return -100;
    }
    if (rv == EXCHANGE_ERR_NOMEM) {
        stream_fail(s, GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return -100;
    }
    return 0;
}

/* ---- nghttp2 callbacks (loop thread, inside mem_recv / mem_send) --------------------------- */

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    gconn_t *c = ud;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    gstream_t *s = calloc(1, sizeof *s);
    if (!s)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* RST_STREAM; session goes on */
    s->c = c;
    s->id = f->hd.stream_id;
    s->as.serial = ++stream_serial;
    s->as.flush = stream_flush;
    s->next = c->streams;
    if (c->streams)
        c->streams->prev = s;
    c->streams = s;
    nghttp2_session_set_stream_user_data(ng, s->id, s);
    return 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *ud)
{
    (void)flags;
    (void)ud;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    gstream_t *s = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
    if (!s)
        return 0;
    char **dst = NULL;
#define IS(lit) (namelen == sizeof(lit) - 1 && memcmp(name, lit, namelen) == 0)
    if (IS(":path"))
        dst = &s->path;
    else if (IS("x-gateway-id"))
        dst = &s->gateway_id;
    else if (IS("authorization"))
        dst = &s->authorization;
    else if (IS("content-type"))
        dst = &s->content_type;
#undef IS
    if (dst && !*dst && !(*dst = dupn(value, valuelen)))
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    return 0;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    (void)ud;
    if (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA)
        return 0;
    gstream_t *s = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
    if (!s)
        return 0;
    if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST &&
        s->kind == GS_NEW)
        stream_dispatch(s);
    if (f->hd.flags & NGHTTP2_FLAG_END_STREAM)
        stream_remote_end(s);
    return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *ud)
{
    (void)flags;
    gconn_t *c = ud;
    grpc_server_t *srv = c->srv;
    /* The connection window is always returned at once: one stalled stream must not starve
     * its siblings. Only the stream window is withheld (backpressure below). */
    nghttp2_session_consume_connection(ng, len);
    metrics_add(wsapi_m.upstream_bytes, len);
    gstream_t *s = nghttp2_session_get_stream_user_data(ng, id);
    if (!s || s->eof || (s->kind != GS_EXCHANGE && s->kind != GS_PUSH)) {
        nghttp2_session_consume_stream(ng, id, len);
        return 0;
    }
    int rv = grpc_dec_feed(&s->dec, data, len, on_message, s);
    if (rv < 0 && rv != -100 && !s->eof) {
        char m[160];
        if (rv == GRPC_FRAME_ERR_TOO_LARGE) {
            metrics_inc(wsapi_m.dec_oversize);
            snprintf(m, sizeof m, "message larger than --max-message (%zu bytes)",
                     srv->cfg.max_message);
            stream_fail(s, GRPC_RESOURCE_EXHAUSTED, m);
        } else {
            metrics_inc(wsapi_m.dec_framing);
            snprintf(m, sizeof m, "bad gRPC framing: %s", grpc_frame_strerror(rv));
            stream_fail(s, GRPC_INTERNAL, m);
        }
    }
    if (!s->eof && s->kind == GS_EXCHANGE &&
        s->oq_bytes + s->as.pending.len > srv->cfg.stream_queue) {
        s->unconsumed += len;
        if (!s->blocked) {
            s->blocked = true;
            c->nblocked++;
            metrics_inc(wsapi_m.backpressure_pauses);
            char gw[96];
            log_rl_warn("backpressure", "gateway=%s stream=%llu queued=%zu",
                        qv(gw, sizeof gw, s->gateway_id), (unsigned long long)s->as.serial,
                        s->oq_bytes);
        }
    } else {
        nghttp2_session_consume_stream(ng, id, len);
    }
    return 0;
}

static void stream_free(gstream_t *s)
{
    gconn_t *c = s->c;
    stream_detach(s);
    router_forget(c->srv->r, &s->as);
    if (s->blocked)
        c->nblocked--;
    if (s->prev)
        s->prev->next = s->next;
    else
        c->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    if (s->dec_init)
        grpc_dec_free(&s->dec);
    oq_clear(s);
    buf_free(&s->as.pending);
    buf_free(&s->push_msg);
    free(s->path);
    free(s->gateway_id);
    free(s->authorization);
    free(s->content_type);
    free(s);
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t error_code, void *ud)
{
    (void)ud;
    gstream_t *s = nghttp2_session_get_stream_user_data(ng, id);
    if (!s)
        return 0;
    if (error_code != NGHTTP2_NO_ERROR && s->kind == GS_EXCHANGE && !s->trailers_sent) {
        char gw[96];
        log_info("exchange stream reset", "gateway=%s stream=%llu h2_error=%s",
                 qv(gw, sizeof gw, s->gateway_id), (unsigned long long)s->as.serial,
                 nghttp2_http2_strerror(error_code));
    }
    nghttp2_session_set_stream_user_data(ng, id, NULL);
    stream_free(s);
    return 0;
}

static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    gconn_t *c = ud;
    if (f->hd.type == NGHTTP2_GOAWAY && f->goaway.error_code != NGHTTP2_NO_ERROR) {
        /* nghttp2 found a protocol error and is ending the connection. */
        if (c->failed)
            return 0; /* conn_read already logged it */
        conn_count_failure(c);
        log_warn("http2 connection failed", "conn=%llu peer=%s error=%s",
                 (unsigned long long)c->serial, c->peer,
                 nghttp2_http2_strerror(f->goaway.error_code));
        return 0;
    }
    if (f->hd.type != NGHTTP2_HEADERS || !(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    gstream_t *s = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
    /* Our side is complete but the client is still sending: tell it to stop (RFC 9113 §8.1). */
    if (s && !s->remote_closed)
        nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_NO_ERROR);
    return 0;
}

static int on_error(nghttp2_session *ng, int code, const char *msg, size_t len, void *ud)
{
    (void)ng;
    gconn_t *c = ud;
    log_rl_warn("http2 error", "conn=%llu peer=%s code=%d error=\"%.*s\"",
                (unsigned long long)c->serial, c->peer, code, (int)(len > 200 ? 200 : len), msg);
    return 0;
}

/* ---- connection I/O ------------------------------------------------------------------------ */

static void poll_update(gconn_t *c)
{
    if (c->closing)
        return;
    int ev = UV_READABLE | (c->out.len > c->out_off ? UV_WRITABLE : 0);
    if (ev != c->events) {
        c->events = ev;
        uv_poll_start(&c->poll, ev, on_conn_poll);
    }
}

/* Returns withheld stream windows whose queues drained below half the bound. */
static bool conn_unblock(gconn_t *c)
{
    bool any = false;
    size_t low = c->srv->cfg.stream_queue / 2;
    for (gstream_t *s = c->streams; s && c->nblocked; s = s->next) {
        if (!s->blocked || s->oq_bytes + s->as.pending.len >= low)
            continue;
        nghttp2_session_consume_stream(c->ng, s->id, s->unconsumed);
        s->unconsumed = 0;
        s->blocked = false;
        c->nblocked--;
        any = true;
    }
    return any;
}

/* Writes what nghttp2 has, as far as the socket takes it. Loop thread, outside nghttp2. */
static void conn_write(gconn_t *c)
{
    if (c->closing)
        return;
    for (;;) {
        while (c->out.len > c->out_off) {
            ssize_t n = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off,
                             MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    goto wait_writable;
                conn_close(c, strerror(errno));
                return;
            }
            c->out_off += (size_t)n;
        }
        c->out.len = c->out_off = 0;
        if (c->out.cap > 4 * OUT_FILL)
            buf_free(&c->out);
        while (c->out.len < OUT_FILL) {
            const uint8_t *d;
            ssize_t n = nghttp2_session_mem_send(c->ng, &d);
            if (n < 0) {
                conn_count_failure(c);
                conn_close(c, nghttp2_strerror((int)n));
                return;
            }
            if (n == 0)
                break;
            if (buf_append(&c->out, d, (size_t)n) < 0) {
                conn_close(c, "out of memory");
                return;
            }
        }
        if (c->nblocked && conn_unblock(c))
            continue; /* WINDOW_UPDATEs to send */
        if (c->out.len == 0)
            break;
    }
    if (!nghttp2_session_want_read(c->ng) && !nghttp2_session_want_write(c->ng)) {
        conn_close(c, NULL); /* finished (GOAWAY exchanged, or session terminated) */
        return;
    }
wait_writable:
    poll_update(c);
}

static void conn_want_write(gconn_t *c)
{
    if (c->in_wlist || c->closing)
        return;
    c->in_wlist = true;
    c->wnext = c->srv->wlist;
    c->srv->wlist = c;
}

static void conn_read(gconn_t *c)
{
    grpc_server_t *srv = c->srv;
    size_t budget = READ_BUDGET;
    while (budget && !c->closing) {
        ssize_t n = recv(c->fd, srv->rbuf, sizeof srv->rbuf, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            conn_close(c, strerror(errno));
            return;
        }
        if (n == 0) {
            conn_close(c, "peer closed");
            return;
        }
        ssize_t rv = nghttp2_session_mem_recv(c->ng, srv->rbuf, (size_t)n);
        if (rv < 0) {
            conn_count_failure(c);
            log_warn("http2 connection failed", "conn=%llu peer=%s error=\"%s\"",
                     (unsigned long long)c->serial, c->peer, nghttp2_strerror((int)rv));
            /* Try to tell the peer (GOAWAY) before closing. */
            nghttp2_session_terminate_session(c->ng, NGHTTP2_PROTOCOL_ERROR);
            const uint8_t *d;
            ssize_t m = nghttp2_session_mem_send(c->ng, &d);
            if (m > 0)
                (void)!send(c->fd, d, (size_t)m, MSG_NOSIGNAL | MSG_DONTWAIT);
            conn_close(c, NULL);
            return;
        }
        budget = (size_t)n >= budget ? 0 : budget - (size_t)n;
        if ((size_t)n < sizeof srv->rbuf)
            break;
    }
    conn_want_write(c);
}

static void on_conn_poll(uv_poll_t *h, int status, int events)
{
    gconn_t *c = h->data;
    if (status < 0) {
        /* libuv reports POLLERR as UV_EBADF: fetch the socket's real error. */
        int e = 0;
        socklen_t el = sizeof e;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &el);
        conn_close(c, e ? strerror(e) : uv_strerror(status));
        return;
    }
    if (events & UV_READABLE)
        conn_read(c);
    if (!c->closing && (events & UV_WRITABLE))
        conn_want_write(c);
}

static void on_conn_closed(uv_handle_t *h)
{
    gconn_t *c = h->data;
    grpc_server_t *srv = c->srv;
    buf_free(&c->out);
    free(c);
    srv->handles_open--;
    if (srv->freeing && srv->handles_open == 0)
        free(srv);
}

/* Closes the socket and frees the session and streams; the struct goes with the poll handle. */
static void conn_close(gconn_t *c, const char *why)
{
    if (c->closing)
        return;
    grpc_server_t *srv = c->srv;
    c->closing = true;
    if (why)
        log_info("grpc connection closed", "conn=%llu peer=%s reason=\"%s\"",
                 (unsigned long long)c->serial, c->peer, why);
    else
        log_debug("grpc connection closed", "conn=%llu peer=%s", (unsigned long long)c->serial,
                  c->peer);
    while (c->streams) {
        gstream_t *s = c->streams;
        nghttp2_session_set_stream_user_data(c->ng, s->id, NULL);
        stream_free(s);
    }
    nghttp2_session_del(c->ng);
    c->ng = NULL;
    /* unlink from the write list */
    for (gconn_t **pp = &srv->wlist; *pp; pp = &(*pp)->wnext) {
        if (*pp == c) {
            *pp = c->wnext;
            break;
        }
    }
    c->in_wlist = false;
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    srv->nconns--;
    metrics_gauge_add(wsapi_m.grpc_conns, -1);
    uv_poll_stop(&c->poll);
    close(c->fd);
    uv_close((uv_handle_t *)&c->poll, on_conn_closed);
}

static int conn_new(grpc_server_t *srv, int fd, const struct sockaddr_storage *ss)
{
    gconn_t *c = calloc(1, sizeof *c);
    if (!c)
        return -1;
    c->srv = srv;
    c->fd = fd;
    c->serial = ++conn_serial;
    char host[64] = "?";
    int port = 0;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
        port = ntohs(a->sin_port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
        port = ntohs(a->sin6_port);
    }
    snprintf(c->peer, sizeof c->peer, "%s:%d", host, port);
    snprintf(c->anon_gw, sizeof c->anon_gw, "anonymous-%llu", (unsigned long long)c->serial);
    if (nghttp2_session_server_new2(&c->ng, srv->cbs, c, srv->opt) != 0) {
        free(c);
        return -1;
    }
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 1024},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, srv->cfg.stream_window},
        {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, 1 << 20},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 64 * 1024},
    };
    if (nghttp2_submit_settings(c->ng, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]) != 0 ||
        nghttp2_session_set_local_window_size(c->ng, NGHTTP2_FLAG_NONE, 0,
                                              (int32_t)srv->cfg.conn_window) != 0) {
        nghttp2_session_del(c->ng);
        free(c);
        return -1;
    }
    if (uv_poll_init(srv->loop, &c->poll, fd) != 0) {
        nghttp2_session_del(c->ng);
        free(c);
        return -1;
    }
    c->poll.data = c;
    srv->handles_open++;
    c->events = UV_READABLE;
    uv_poll_start(&c->poll, UV_READABLE, on_conn_poll);
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->nconns++;
    metrics_gauge_add(wsapi_m.grpc_conns, 1);
    metrics_inc(wsapi_m.grpc_conns_total);
    log_debug("grpc connection", "conn=%llu peer=%s", (unsigned long long)c->serial, c->peer);
    if (srv->shutting_down)
        nghttp2_submit_goaway(c->ng, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, NULL, 0);
    conn_want_write(c); /* our SETTINGS */
    return 0;
}

/* ---- listener ------------------------------------------------------------------------------ */

static void on_accept_timer(uv_timer_t *t)
{
    grpc_server_t *srv = t->data;
    if (srv->listening)
        uv_poll_start(&srv->lpoll, UV_READABLE, srv->lpoll.poll_cb);
}

static void on_listen_poll(uv_poll_t *h, int status, int events)
{
    grpc_server_t *srv = h->data;
    (void)events;
    if (status < 0)
        return;
    for (int i = 0; i < 256; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept4(srv->lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* Out of descriptors: pause accepting instead of spinning on it. */
                log_rl_error("accept failed", "error=\"%s\" paused_ms=%d", strerror(errno), 100);
                uv_poll_stop(&srv->lpoll);
                uv_timer_start(&srv->accept_timer, on_accept_timer, 100, 0);
            }
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (conn_new(srv, fd, &ss) < 0) {
            log_rl_error("cannot set up connection", "error=%s", "out of memory");
            close(fd);
        }
    }
}

/* ---- flushing ------------------------------------------------------------------------------ */

void grpc_server_flush(grpc_server_t *srv)
{
    api_stream_t *as;
    while ((as = router_pop_dirty(srv->r)))
        stream_flush(as);
    while (srv->wlist) {
        gconn_t *c = srv->wlist;
        srv->wlist = c->wnext;
        c->in_wlist = false;
        conn_write(c);
    }
}

static void on_check(uv_check_t *h)
{
    grpc_server_flush(h->data);
}

/* ---- public -------------------------------------------------------------------------------- */

static void on_noop_close(uv_handle_t *h)
{
    grpc_server_t *srv = h->data;
    srv->handles_open--;
    if (srv->freeing && srv->handles_open == 0)
        free(srv);
}

grpc_server_t *grpc_server_new(uv_loop_t *loop, const grpc_server_cfg_t *cfg, exchange_t *x,
                               router_t *r, presence_t *pres, char err[GRPC_SERVER_ERR_LEN])
{
    struct sockaddr_storage ss;
    char host[64];
    int port;
    if (addr_parse(cfg->listen, &ss, host, &port, err) < 0)
        return NULL;
    grpc_server_t *srv = calloc(1, sizeof *srv);
    if (!srv) {
        snprintf(err, GRPC_SERVER_ERR_LEN, "out of memory");
        return NULL;
    }
    srv->loop = loop;
    srv->cfg = *cfg;
    srv->x = x;
    srv->r = r;
    srv->pres = pres;
    if ((srv->lfd = addr_listen(&ss, 1024, err)) < 0)
        goto out_free;

    nghttp2_session_callbacks_new(&srv->cbs);
    nghttp2_session_callbacks_set_on_begin_headers_callback(srv->cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(srv->cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(srv->cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(srv->cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(srv->cbs, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(srv->cbs, on_frame_send);
    nghttp2_session_callbacks_set_error_callback2(srv->cbs, on_error);
    nghttp2_session_callbacks_set_data_source_read_length_callback(srv->cbs, read_length_cb);
    nghttp2_option_new(&srv->opt);
    /* We return stream window ourselves once a stream's output queue allows (backpressure). */
    nghttp2_option_set_no_auto_window_update(srv->opt, 1);
    if (!srv->cbs || !srv->opt) {
        snprintf(err, GRPC_SERVER_ERR_LEN, "out of memory");
        goto out_close_fd;
    }

    uv_poll_init(loop, &srv->lpoll, srv->lfd);
    srv->lpoll.data = srv;
    uv_timer_init(loop, &srv->accept_timer);
    srv->accept_timer.data = srv;
    uv_check_init(loop, &srv->check);
    srv->check.data = srv;
    srv->handles_open = 3;
    uv_poll_start(&srv->lpoll, UV_READABLE, on_listen_poll);
    uv_check_start(&srv->check, on_check);
    srv->listening = true;
    log_info("grpc listening", "addr=%s:%d max_message=%zu stream_window=%u conn_window=%u",
             host, addr_local_port(srv->lfd), cfg->max_message, cfg->stream_window,
             cfg->conn_window);
    return srv;

out_close_fd:
    nghttp2_session_callbacks_del(srv->cbs);
    nghttp2_option_del(srv->opt);
    close(srv->lfd);
out_free:
    free(srv);
    return NULL;
}

int grpc_server_port(const grpc_server_t *srv)
{
    return addr_local_port(srv->lfd);
}

size_t grpc_server_connections(const grpc_server_t *srv)
{
    return srv->nconns;
}

static void stop_listening(grpc_server_t *srv)
{
    if (!srv->listening)
        return;
    srv->listening = false;
    uv_poll_stop(&srv->lpoll);
    uv_timer_stop(&srv->accept_timer);
    close(srv->lfd);
    srv->lfd = -1;
}

void grpc_server_shutdown(grpc_server_t *srv)
{
    srv->shutting_down = true;
    stop_listening(srv);
    for (gconn_t *c = srv->conns; c; c = c->next) {
        nghttp2_submit_goaway(c->ng, NGHTTP2_FLAG_NONE,
                              nghttp2_session_get_last_proc_stream_id(c->ng), NGHTTP2_NO_ERROR,
                              (const uint8_t *)"shutdown", 8);
        conn_want_write(c);
    }
    grpc_server_flush(srv);
}

void grpc_server_end_streams(grpc_server_t *srv, int status, const char *message)
{
    for (gconn_t *c = srv->conns; c; c = c->next)
        for (gstream_t *s = c->streams; s; s = s->next)
            if (s->kind == GS_EXCHANGE && !s->eof)
                stream_end(s, status, message);
    grpc_server_flush(srv);
}

void grpc_server_free(grpc_server_t *srv)
{
    if (!srv)
        return;
    stop_listening(srv);
    while (srv->conns)
        conn_close(srv->conns, "server stopping");
    srv->freeing = true;
    nghttp2_session_callbacks_del(srv->cbs);
    nghttp2_option_del(srv->opt);
    uv_check_stop(&srv->check);
    uv_close((uv_handle_t *)&srv->lpoll, on_noop_close);
    uv_close((uv_handle_t *)&srv->accept_timer, on_noop_close);
    uv_close((uv_handle_t *)&srv->check, on_noop_close);
}
