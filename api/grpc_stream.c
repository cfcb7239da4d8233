/* grpc_stream.c: one gRPC call on ws-api's h2c server: request dispatch (Exchange, Push,
 * unknown method), message decoding and handling, the outbound queue behind nghttp2's data
 * provider, Downstream flushing, trailers and errors confined to the stream. The unary calls
 * (wsgw.v1.Push, wsgw.v1.Admin) are answered in grpc_unary.c.
 *
 * Threads: loop thread only; most functions run inside nghttp2 callbacks (mem_recv/mem_send),
 * where submitting frames and resuming data is allowed, freeing the connection is not. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "bufpool.h"
#include "cluster.h"
#include "downstream.h"
#include "exchange.h"
#include "grpc_internal.h"
#include "log.h"
#include "metrics.h"
#include "presence.h"
#include "presence_gate.h"
#include "push.h"
#include "router.h"
#include "utf8.h"
#include "wsapi_metrics.h"
#include "wsgw.pb-c.h"

static uint64_t stream_serial;

/* An Exchange stream keeps its decoder buffer between messages up to this (a gateway's batches
 * are up to --batch-max-bytes, 256 KiB by default, plus their encoding). It counts in the
 * connection's --h2-conn-buffer like a message in progress, gives way when that budget is
 * short, and goes when the stream is quiet for a sweep (release_kept, grpc__stream_sweep). */
#define EXCHANGE_KEEP (512 * 1024)

static void stream_flush(api_stream_t *as);
static void stream_fail(gstream_t *s, int status, const char *msg);
static void stream_fail_hook(api_stream_t *as, int status, const char *msg);

/* ---- small helpers ------------------------------------------------------------------------- */

#define MAKE_NV(n, v)                                                                          \
    {                                                                                          \
        (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v),                              \
            NGHTTP2_NV_FLAG_NO_COPY_NAME                                                       \
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

const char *grpc__quote(char *out, size_t n, const char *s)
{
    return log_quote(out, n, s ? s : "");
}

/* ---- outbound queue ------------------------------------------------------------------------ */

/* Outbound memory accounting: the stream's, its connection's and the server's totals. */
static void oq_mem_add(gstream_t *s, ptrdiff_t d)
{
    s->oq_mem = (size_t)((ptrdiff_t)s->oq_mem + d);
    s->c->queued = (size_t)((ptrdiff_t)s->c->queued + d);
    s->c->srv->queued = (size_t)((ptrdiff_t)s->c->srv->queued + d);
}

/* (grpc_internal.h) */
void grpc__oq_push(gstream_t *s, uint8_t *data, size_t len, size_t cap)
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
    ch->cap = cap;
    if (s->oq_tail)
        s->oq_tail->next = ch;
    else
        s->oq_head = ch;
    s->oq_tail = ch;
    s->oq_bytes += len;
    oq_mem_add(s, (ptrdiff_t)(len + CHUNK_OVERHEAD));
}

void grpc__chunk_free(chunk_t *ch)
{
    if (ch->cap)
        bufpool_put(ch->data, ch->cap);
    else
        free(ch->data);
    free(ch);
}

void grpc__oq_clear(gstream_t *s)
{
    for (chunk_t *ch = s->oq_head, *n; ch; ch = n) {
        n = ch->next;
        grpc__chunk_free(ch);
    }
    s->oq_head = s->oq_tail = NULL;
    s->oq_bytes = 0;
    oq_mem_add(s, -(ptrdiff_t)s->oq_mem);
}

/* After queuing or ending: wake nghttp2's deferred data provider and the socket. */
static void stream_kick(gstream_t *s)
{
    if (s->deferred && s->resp_submitted) {
        s->deferred = false;
        nghttp2_session_resume_data(s->c->ng, s->id);
    }
    grpc__conn_want_write(s->c);
}

/* ---- presence membership ------------------------------------------------------------------- */

static void stream_detach(gstream_t *s)
{
    if (!s->attached)
        return;
    grpc_server_t *srv = s->c->srv;
    char gw[96];
    grpc__quote(gw, sizeof gw, s->as.gw ? s->as.gw->id : "");
    presence_detach(srv->pres, &s->as); /* presence stays with the session (presence.h) */
    s->attached = false;
    s->as.closed = true;
    presence_gate_gauges(srv->pres);
    log_rl_info("exchange stream closed", "gateway=%s stream=%llu conn=%llu", gw,
                (unsigned long long)s->as.serial, (unsigned long long)s->c->serial);
}

void grpc__session_end(gconn_t *c)
{
    presence_t *pres = c->srv->pres;
    if (!c->psess.live)
        return;
    cluster_session_end(c->psess.cl); /* --redis (no drop callback after this) */
    c->psess.cl = NULL;
    size_t dropped = presence_session_end(pres, &c->psess);
    metrics_add(wsapi_m.session_drops, dropped);
    presence_gate_gauges(pres);
    log_rl_info("gateway session ended", "conn=%llu peer=%s connections_dropped=%zu",
                (unsigned long long)c->serial, c->peer, dropped);
}

/* x-wsgw-streams: how many streams of this session will say presence_complete (0: the
 * gateway does not announce it; a bad value counts as that, logged and counted). Capped at
 * --h2-max-streams: more can never be open at once. */
/* --redis: the cluster ends this session (its presence token changed): the gateway
 * reconnects and re-sends its presence. Called from Redis callbacks, never inside nghttp2. */
static void session_drop(void *ud, const char *why)
{
    grpc__conn_drop(ud, why);
}

static uint32_t announced_streams(gstream_t *s)
{
    if (!s->wsgw_streams)
        return 0;
    char *end;
    unsigned long n = strtoul(s->wsgw_streams, &end, 10);
    if (!isdigit((unsigned char)s->wsgw_streams[0]) || *end || n < 1 || n > 65535) {
        char v[40];
        metrics_inc(wsapi_m.bad_streams_header);
        log_rl_warn("bad x-wsgw-streams header ignored", "value=%s peer=%s",
                    grpc__quote(v, sizeof v, s->wsgw_streams), s->c->peer);
        return 0;
    }
    uint32_t max = s->c->srv->cfg.max_streams;
    if (n > max) {
        log_rl_warn("x-wsgw-streams above --h2-max-streams: capped", "streams=%lu max=%u peer=%s",
                    n, max, s->c->peer);
        n = max;
    }
    return (uint32_t)n;
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
    grpc__conn_want_write(s->c);
}

/* The data provider of every response body. The frame's payload is never copied into
 * nghttp2's frame buffer: nghttp2 is told NGHTTP2_DATA_FLAG_NO_COPY and grpc__send_data puts
 * the frame header into the connection's output buffer (c->out). On h2c, chunks sent to their
 * end go out by reference (grpc_out.h); the rest (a frame that ends inside a chunk, and
 * everything under TLS) is copied into c->out behind room left for the header. */
static ssize_t stream_read_cb(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t length,
                              uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    (void)ud;
    (void)buf;
    gstream_t *s = src->ptr;
    gconn_t *c = s->c;
    size_t want = length < s->oq_bytes ? length : s->oq_bytes;
    if (want) {
        if (buf_reserve(&c->out.buf, H2_FRAME_HD + want) < 0)
            return NGHTTP2_ERR_CALLBACK_FAILURE; /* the connection ends: out of memory */
        *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    }
    size_t n = 0, pos = c->out.buf.len + H2_FRAME_HD; /* where the next copied byte goes */
    while (n < want && s->oq_head) {
        chunk_t *ch = s->oq_head;
        size_t take = ch->len - ch->off;
        bool whole = take <= want - n; /* the chunk is sent to its end */
        if (!whole)
            take = want - n;
        bool copied = !whole || c->io.ssl ||
                      iovq_ref(&c->out, pos, ch->data + ch->off, ch->len - ch->off, ch) < 0;
        if (copied) {
            memcpy(c->out.buf.data + pos, ch->data + ch->off, take);
            pos += take;
            ch->off += take;
        }
        n += take;
        if (whole) { /* off the queue: copied (freed here), or the output's now */
            s->oq_head = ch->next;
            if (!s->oq_head)
                s->oq_tail = NULL;
            oq_mem_add(s, -(ptrdiff_t)(ch->len + CHUNK_OVERHEAD));
            if (copied)
                grpc__chunk_free(ch);
        }
    }
    c->data_copied = pos - (c->out.buf.len + H2_FRAME_HD);
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

int grpc__send_data(nghttp2_session *ng, nghttp2_frame *frame, const uint8_t *framehd,
                    size_t length, nghttp2_data_source *src, void *ud)
{
    (void)ng;
    (void)src;
    gconn_t *c = ud;
    if (frame->data.padlen || c->data_copied > length ||
        c->out.buf.cap - c->out.buf.len < H2_FRAME_HD + c->data_copied)
        return NGHTTP2_ERR_CALLBACK_FAILURE; /* not what stream_read_cb prepared */
    memcpy(c->out.buf.data + c->out.buf.len, framehd, H2_FRAME_HD);
    c->out.buf.len += H2_FRAME_HD + c->data_copied; /* the rest of `length`: refs (grpc_out.h) */
    c->data_copied = 0;
    /* enough gathered for one send(2): mem_send returns, conn_write sends, then goes on */
    return iovq_pending(&c->out) >= OUT_FILL ? NGHTTP2_ERR_PAUSE : 0;
}

int grpc__submit_response(gstream_t *s, bool exchange)
{
    /* --redis: presence is shared by every node, so the gateway sends each connection's Open
     * and Close to one node (the one its messages go to), not to every node */
    bool shared = exchange && s->c->srv->x->cl;
    nghttp2_nv nva[] = {
        MAKE_NV(":status", "200"),
        MAKE_NV("content-type", "application/grpc"),
        MAKE_NV("x-wsgw-ack", "1"),
        MAKE_NV("x-wsgw-presence", "shared"),
    };
    nghttp2_data_provider dp = {.source.ptr = s, .read_callback = stream_read_cb};
    int rv = nghttp2_submit_response(s->c->ng, s->id, nva, shared ? 4 : exchange ? 3 : 2, &dp);
    if (rv == 0)
        s->resp_submitted = true;
    return rv;
}

/* Ends the stream after what is queued, with `status`. Pending commands are flushed first. */
void grpc__stream_end(gstream_t *s, int status, const char *msg)
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
    log_rl_warn("stream failed", "status=%d error=%s gateway=%s stream=%llu peer=%s", status,
                grpc__quote(m, sizeof m, msg), grpc__quote(gw, sizeof gw, s->gateway_id),
                (unsigned long long)s->as.serial, s->c->peer);
    grpc__stream_end(s, status, msg);
}

/* api_stream_t.fail: a held batch (--redis) failed after the message was taken. */
static void stream_fail_hook(api_stream_t *as, int status, const char *msg)
{
    stream_fail((gstream_t *)as, status, msg);
}

/* ---- outbound budgets ----------------------------------------------------------------------- */

/* Pushes kept coming for a gateway that does not read. RST_STREAM with ENHANCE_YOUR_CALM maps
 * to RESOURCE_EXHAUSTED in gRPC; the gateway re-sends its unacked batches on another stream. */
void grpc__stream_overflow(gstream_t *s, h2_limit_t limit)
{
    char gw[96], d[160];
    metrics_inc(wsapi_m.stream_overflows);
    snprintf(d, sizeof d, "stream reset: gateway=%s stream=%llu queued=%zu conn_queued=%zu",
             grpc__quote(gw, sizeof gw, s->gateway_id), (unsigned long long)s->as.serial,
             s->oq_bytes, s->c->queued);
    grpc__limit(s->c, limit, d);
    stream_detach(s);
    grpc__oq_clear(s);
    s->eof = s->trailers_sent = true;
    nghttp2_submit_rst_stream(s->c->ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_ENHANCE_YOUR_CALM);
    grpc__conn_want_write(s->c);
}

/* Over --h2-total-queue: the largest queues go first (gateways that read have small ones),
 * until the total is back under the cap. O(streams) per eviction; only when over. */
static void total_queue_evict(grpc_server_t *srv)
{
    while (srv->queued > srv->cfg.total_queue) {
        gstream_t *worst = NULL;
        for (gconn_t *c = srv->conns; c; c = c->next)
            for (gstream_t *st = c->streams; st; st = st->next)
                if (!st->eof && st->oq_mem && (!worst || st->oq_mem > worst->oq_mem))
                    worst = st;
        if (!worst)
            return;
        grpc__stream_overflow(worst, H2L_TOTAL_QUEUE);
    }
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
    buf_t b = as->pending;
    as->pending = (buf_t)BUF_INIT;
    if (b.len < BUFPOOL_MIN_CAP / 4) {
        /* small (an ack, a few commands): queued as an exact copy and the buffer goes back,
         * so that what a queued chunk holds stays what it is counted as (oq_mem) */
        uint8_t *small = malloc(b.len);
        if (small) {
            memcpy(small, b.data, b.len);
            bufpool_put(b.data, b.cap);
            b.data = small;
            b.cap = 0;
        }
    }
    as->ncmds = 0;
    as->ack_dirty = false;
    grpc__oq_push(s, b.data, b.len, b.cap);
    if (s->eof)
        return; /* oq_push failed the stream */
    grpc_server_t *srv = s->c->srv;
    if (s->oq_bytes > 4 * srv->cfg.stream_queue) {
        grpc__stream_overflow(s, H2L_STREAM_QUEUE);
        return;
    }
    if (s->c->queued > srv->cfg.conn_queue) {
        grpc__stream_overflow(s, H2L_CONN_QUEUE);
        return;
    }
    if (srv->queued > srv->cfg.total_queue) {
        total_queue_evict(srv);
        if (s->eof)
            return;
    }
    stream_kick(s);
}

/* ---- request dispatch ---------------------------------------------------------------------- */

static int on_message(void *ud, const uint8_t *msg, size_t len);

void grpc__stream_dispatch(gstream_t *s)
{
    grpc_server_t *srv = s->c->srv;
    char p[96];
    if (!s->content_type || strncmp(s->content_type, "application/grpc", 16) != 0) {
        /* gRPC over HTTP/2 spec: a non-gRPC content-type gets HTTP 415. */
        nghttp2_nv nva[] = {MAKE_NV(":status", "415")};
        nghttp2_submit_response(s->c->ng, s->id, nva, 1, NULL);
        s->kind = GS_DONE;
        s->eof = s->trailers_sent = true;
        log_rl_warn("not a gRPC request", "path=%s peer=%s", grpc__quote(p, sizeof p, s->path),
                    s->c->peer);
        return;
    }
    if (s->path && strcmp(s->path, "/wsgw.v1.Exchange/Stream") == 0) {
        /* --gateway-token: checked before the stream touches presence or the handler. */
        bearer_result_t br = bearer_check(&srv->gateway_auth, s->authorization);
        if (br != BEARER_OK) {
            char gw[96];
            wsapi_metrics_auth_reject(WSAPI_AUTH_EXCHANGE, (int)br);
            log_rl_warn("exchange unauthenticated", "reason=%s gateway=%s peer=%s",
                        bearer_result_name(br), grpc__quote(gw, sizeof gw, s->gateway_id),
                        s->c->peer);
            submit_trailers_only(s, GRPC_UNAUTHENTICATED, "missing or wrong gateway token");
            return;
        }
        s->kind = GS_EXCHANGE;
        grpc_dec_init(&s->dec, srv->cfg.max_message);
        grpc_dec_keep(&s->dec, EXCHANGE_KEEP);
        s->dec_init = true;
        const char *gid = s->gateway_id && *s->gateway_id ? s->gateway_id : s->c->anon_gw;
        gconn_t *c = s->c;
        if (!c->psess.live) /* its first Exchange stream: a gateway session starts */
            presence_session_start(srv->pres, &c->psess, c->serial, announced_streams(s),
                                   presence_gate_now_ms());
        if (srv->x->cl && !c->psess.cl &&
            !(c->psess.cl = cluster_session_start(srv->x->cl, gid, s->wsgw_instance,
                                                  s->wsgw_prefix, session_drop, c))) {
            stream_fail(s, GRPC_RESOURCE_EXHAUSTED, "out of memory");
            return;
        }
        if (!presence_attach(srv->pres, gid, &c->psess, &s->as)) {
            stream_fail(s, GRPC_RESOURCE_EXHAUSTED, "out of memory");
            return;
        }
        s->attached = true;
        presence_gate_gauges(srv->pres);
        cluster_gateway_attached(srv->x->cl, gid); /* commands held for it (cluster_hold.c) */
        char gw[96];
        log_rl_info("exchange stream open", "gateway=%s stream=%llu conn=%llu peer=%s",
                    grpc__quote(gw, sizeof gw, gid), (unsigned long long)s->as.serial,
                    (unsigned long long)s->c->serial, s->c->peer);
        if (grpc__submit_response(s, true) != 0)
            stream_fail(s, GRPC_INTERNAL, "cannot submit response");
        return;
    }
    s->admin = admin_method(s->path); /* wsgw.v1.Admin: unary like Push, the same token */
    if (s->admin || (s->path && strcmp(s->path, "/wsgw.v1.Push/Push") == 0)) {
        bearer_result_t br = bearer_check(&srv->push_auth, s->authorization);
        if (br != BEARER_OK) {
            if (!s->admin)
                metrics_inc(wsapi_m.grpc_push[GRPC_UNAUTHENTICATED]);
            wsapi_metrics_auth_reject(WSAPI_AUTH_GRPC_PUSH, (int)br);
            log_rl_warn("push unauthenticated", "api=grpc reason=%s peer=%s",
                        bearer_result_name(br), s->c->peer);
            submit_trailers_only(s, GRPC_UNAUTHENTICATED, "missing or wrong bearer token");
            return;
        }
        s->kind = GS_PUSH;
        grpc_dec_init(&s->dec, srv->cfg.max_message);
        s->dec_init = true;
        s->msg_since_ms = uv_now(srv->loop); /* the unary request must end in time */
        return;
    }
    metrics_inc(wsapi_m.unknown_method);
    log_rl_warn("unknown method", "path=%s peer=%s", grpc__quote(p, sizeof p, s->path), s->c->peer);
    char msg[160];
    snprintf(msg, sizeof msg, "unknown method %.120s", s->path ? s->path : "(none)");
    submit_trailers_only(s, GRPC_UNIMPLEMENTED, msg);
}

void grpc__stream_remote_end(gstream_t *s)
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
        grpc__stream_end(s, GRPC_OK, NULL); /* the gateway half-closed: flush, then trailers */
    else if (s->kind == GS_PUSH)
        grpc__push_finish(s);
}

/* A complete gRPC message of stream ud. Returns <0 to stop the decoder (stream failed). */
static int on_message(void *ud, const uint8_t *msg, size_t len)
{
    gstream_t *s = ud;
    grpc_server_t *srv = s->c->srv;
    if (s->eof)
        return GRPC__STOP;
    if (s->kind == GS_PUSH) {
        if (++s->push_count > 1 || buf_append(&s->push_msg, msg, len) < 0) {
            stream_fail(s, GRPC_INTERNAL, s->push_count > 1 ? "more than one request message"
                                                            : "out of memory");
            return GRPC__STOP;
        }
        return 0;
    }
    int rv = exchange_upstream(srv->x, &s->as, msg, len);
    if (rv == EXCHANGE_ERR_DECODE) {
        metrics_inc(wsapi_m.dec_protobuf);
        stream_fail(s, GRPC_INTERNAL, "cannot decode wsgw.v1.Upstream");
        return GRPC__STOP;
    }
    if (rv == EXCHANGE_ERR_NOMEM) {
        stream_fail(s, GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return GRPC__STOP;
    }
    return 0;
}


void grpc__stream_free(gstream_t *s)
{
    gconn_t *c = s->c;
    if (s->wait)
        s->wait->s = NULL; /* its later answer finds no stream */
    if (c->srv->x->cl)
        cluster_stream_gone(c->srv->x->cl, &s->as);
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
    grpc__oq_clear(s);
    buf_free(&s->as.pending);
    buf_free(&s->push_msg);
    c->buffered -= s->buf_mem;
    if (--c->nstreams == 0)
        c->idle_since_ms = uv_now(c->srv->loop);
    free(s->path);
    free(s->gateway_id);
    free(s->authorization);
    free(s->content_type);
    free(s->wsgw_streams);
    free(s->wsgw_instance);
    free(s->wsgw_prefix);
    free(s);
}


gstream_t *grpc__stream_new(gconn_t *c, int32_t id)
{
    gstream_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->c = c;
    s->id = id;
    s->as.serial = ++stream_serial;
    s->as.flush = stream_flush;
    s->as.fail = stream_fail_hook;
    s->next = c->streams;
    if (c->streams)
        c->streams->prev = s;
    c->streams = s;
    c->nstreams++;
    return s;
}

/* Inbound memory of s (decoder buffer, Push request) into its connection's total. */
static void buf_account(gstream_t *s)
{
    size_t now = (s->dec_init ? s->dec.cap : 0) + s->push_msg.cap;
    s->c->buffered = s->c->buffered - s->buf_mem + now;
    s->buf_mem = now;
}

/* Releases the decoder buffers the streams of c keep between messages (grpc_dec_keep); a
 * message in progress keeps its bytes. */
static void release_kept(gconn_t *c)
{
    for (gstream_t *st = c->streams; st; st = st->next)
        if (st->dec_init && grpc_dec_shrink(&st->dec))
            buf_account(st);
}

/* Drops what s holds of unfinished input (it failed: nothing more is decoded). */
void grpc__drop_input(gstream_t *s)
{
    if (s->dec_init)
        grpc_dec_free(&s->dec);
    buf_free(&s->push_msg);
    buf_account(s);
    s->msg_since_ms = 0;
}

void grpc__stream_sweep(gstream_t *s, uint64_t now)
{
    grpc_server_t *srv = s->c->srv;
    if (!s->fed && s->dec_init && grpc_dec_shrink(&s->dec)) /* quiet: its kept buffer goes */
        buf_account(s);
    s->fed = false;
    if (s->eof || !s->msg_since_ms || now < s->msg_since_ms + srv->cfg.message_timeout_ms)
        return;
    char m[160];
    snprintf(m, sizeof m, "%s not complete within --h2-message-timeout (%llu ms)",
             s->kind == GS_PUSH ? "request" : "message",
             (unsigned long long)srv->cfg.message_timeout_ms);
    grpc__limit(s->c, H2L_MESSAGE_TIMEOUT, m);
    if (s->kind == GS_PUSH)
        metrics_inc(wsapi_m.grpc_push[GRPC_DEADLINE_EXCEEDED]);
    stream_fail(s, GRPC_DEADLINE_EXCEEDED, m);
    grpc__drop_input(s);
}

void grpc__stream_data(gstream_t *s, const uint8_t *data, size_t len)
{
    gconn_t *c = s->c;
    grpc_server_t *srv = c->srv;
    if (s->eof || (s->kind != GS_EXCHANGE && s->kind != GS_PUSH)) {
        nghttp2_session_consume_stream(c->ng, s->id, len);
        return;
    }
    int rv = grpc_dec_feed(&s->dec, data, len, on_message, s);
    buf_account(s);
    s->fed = true;
    if (c->buffered > srv->cfg.conn_buffer) /* kept buffers give way to messages in progress */
        release_kept(c);
    if (s->kind == GS_EXCHANGE)
        s->msg_since_ms = !grpc_dec_partial(&s->dec) ? 0
                          : s->msg_since_ms          ? s->msg_since_ms
                                                     : uv_now(srv->loop);
    if (rv >= 0 && !s->eof && c->buffered > srv->cfg.conn_buffer) {
        /* Unfinished messages on this connection hold more than its budget: the stream that
         * asked for more fails (the bytes are buffered as they arrive, never by a prefix's
         * declared length, so this is what the peer really sent). */
        char m[160];
        snprintf(m, sizeof m, "unfinished messages over --h2-conn-buffer (%zu bytes)",
                 srv->cfg.conn_buffer);
        grpc__limit(c, H2L_CONN_BUFFER, m);
        if (s->kind == GS_PUSH)
            metrics_inc(wsapi_m.grpc_push[GRPC_RESOURCE_EXHAUSTED]);
        stream_fail(s, GRPC_RESOURCE_EXHAUSTED, m);
        grpc__drop_input(s);
    }
    if (rv < 0 && rv != GRPC__STOP && !s->eof) {
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
    /* Backpressure: while the gateway does not read what we queued for this stream (or for
     * its connection: half of --h2-conn-queue), its stream window is not returned, so it stops
     * sending (conn_unblock in grpc_server.c gives the window back once the queues drained
     * below half of that). */
    if (!s->eof && s->kind == GS_EXCHANGE &&
        (s->oq_bytes + s->as.pending.len > srv->cfg.stream_queue ||
         c->queued > srv->cfg.conn_queue / 2)) {
        s->unconsumed += len;
        if (!s->blocked) {
            s->blocked = true;
            c->nblocked++;
            metrics_inc(wsapi_m.backpressure_pauses);
            char gw[96];
            log_rl_warn("backpressure", "gateway=%s stream=%llu queued=%zu conn_queued=%zu",
                        grpc__quote(gw, sizeof gw, s->gateway_id),
                        (unsigned long long)s->as.serial, s->oq_bytes, c->queued);
        }
    } else {
        nghttp2_session_consume_stream(c->ng, s->id, len);
    }
}
