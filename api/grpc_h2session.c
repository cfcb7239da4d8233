/* grpc_h2session.c: the nghttp2 server session of a gRPC connection (see grpc_internal.h):
 * its callbacks (frames, headers, DATA, stream close, errors), the HTTP/2 budgets they enforce
 * (control frames, resets, header bytes: token buckets; --h2-* flags) and the session's set-up
 * with our SETTINGS. The connection's I/O is grpc_server.c's, a call's work grpc_stream.c's.
 *
 * Threads: ws-api's loop thread only, inside nghttp2_session_mem_recv / mem_send. No locks. */
#include <nghttp2/nghttp2.h>
#include <stdlib.h>
#include <string.h>

#include "grpc_internal.h"
#include "log.h"
#include "metrics.h"
#include "wsapi_metrics.h"

static char *dupn(const uint8_t *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, p, n);
        s[n] = 0;
    }
    return s;
}

static ssize_t read_length_cb(nghttp2_session *ng, uint8_t type, int32_t id, int32_t swin,
                              int32_t cwin, uint32_t remote_max, void *ud)
{
    (void)ng;
    (void)type;
    (void)id;
    (void)ud;
    /* Larger DATA frames than nghttp2's 16 KiB default: fewer frames for big Downstreams. */
    return grpc_data_frame_len(swin, cwin, remote_max, MAX_DATA_FRAME);
}

/* ---- nghttp2 callbacks (loop thread, inside mem_recv / mem_send) --------------------------- */

/* ---- limits -------------------------------------------------------------------------------- */

void grpc__limit(gconn_t *c, h2_limit_t l, const char *detail)
{
    metrics_inc(wsapi_m.h2_limits[l]);
    if (l == H2L_IDLE_TIMEOUT)
        log_debug("http2 limit", "limit=%s conn=%llu peer=%s detail=\"%s\"",
                  wsapi_h2_limit_names[l], (unsigned long long)c->serial, c->peer, detail);
    else
        log_rl_warn("http2 limit", "limit=%s conn=%llu peer=%s detail=\"%s\"",
                    wsapi_h2_limit_names[l], (unsigned long long)c->serial, c->peer, detail);
}

/* Takes n tokens: false when the bucket has fewer (rate per second, burst tokens). */
static bool bucket_take(h2_bucket_t *b, uint64_t now, uint64_t rate, uint64_t burst, uint64_t n)
{
    uint64_t full = burst * 1000;
    if (now > b->last_ms) {
        b->milli += (now - b->last_ms) * rate; /* rate tokens/s = rate milli-tokens/ms */
        if (b->milli > full)
            b->milli = full;
        b->last_ms = now;
    }
    if (b->milli < n * 1000)
        return false;
    b->milli -= n * 1000;
    return true;
}

static void bucket_fill(h2_bucket_t *b, uint64_t now, uint64_t burst)
{
    b->last_ms = now;
    b->milli = burst * 1000;
}

/* Every frame header, before its payload is processed: the per-connection frame budgets.
 * A peer past one ends its connection (conn_read sends GOAWAY ENHANCE_YOUR_CALM). */
static int on_begin_frame(nghttp2_session *ng, const nghttp2_frame_hd *hd, void *ud)
{
    (void)ng;
    gconn_t *c = ud;
    grpc_server_t *srv = c->srv;
    uint64_t now = uv_now(srv->loop);
    bool ack = hd->flags & NGHTTP2_FLAG_ACK;
    bool control = ((hd->type == NGHTTP2_SETTINGS || hd->type == NGHTTP2_PING) && !ack) ||
                   hd->type == NGHTTP2_PRIORITY ||
                   (hd->type == NGHTTP2_DATA && hd->length == 0 &&
                    !(hd->flags & NGHTTP2_FLAG_END_STREAM));
    uint64_t rate = srv->cfg.control_rate, burst = rate * 2 > 20 ? rate * 2 : 20;
    if (control && !bucket_take(&c->ctl, now, rate, burst, 1)) {
        c->limit = H2L_CONTROL;
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    if (hd->type == NGHTTP2_RST_STREAM &&
        !bucket_take(&c->rst, now, 33, srv->cfg.reset_burst, 1)) {
        c->limit = H2L_RESETS;
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    return 0;
}

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    gconn_t *c = ud;
    c->hdr_block = 0; /* a new header block (CONTINUATIONs add to it) */
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    gstream_t *s = grpc__stream_new(c, f->hd.stream_id);
    if (!s)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* RST_STREAM; session goes on */
    nghttp2_session_set_stream_user_data(ng, s->id, s);
    return 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *ud)
{
    (void)flags;
    gconn_t *c = ud;
    /* The header list size we advertise (RFC 9113 §6.5.2: name + value + 32 per field),
     * enforced: a peer that ignores it ends its connection. It bounds what one HEADERS frame
     * of 1-byte HPACK references to a large table entry (an HPACK bomb) makes us decode. */
    grpc_server_t *srv = c->srv;
    size_t field = namelen + valuelen + 32;
    c->hdr_block += field;
    if (c->hdr_block > srv->cfg.max_header_list) {
        c->limit = H2L_HEADER_LIST;
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    /* ... and within the list limit, what one connection makes us decode per second: a 1-byte
     * reference to a 4 KB table entry costs us 4 KB of validation, so a stream of small
     * HEADERS frames could still keep a core busy. */
    if (!bucket_take(&c->hdr, uv_now(srv->loop), srv->cfg.header_rate, srv->cfg.header_rate,
                     field)) {
        c->limit = H2L_HEADER_RATE;
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
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
    else if (IS("x-wsgw-streams"))
        dst = &s->wsgw_streams;
    else if (IS("x-wsgw-instance"))
        dst = &s->wsgw_instance;
    else if (IS("x-wsgw-conn-prefix"))
        dst = &s->wsgw_prefix;
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
        grpc__stream_dispatch(s);
    if (f->hd.flags & NGHTTP2_FLAG_END_STREAM)
        grpc__stream_remote_end(s);
    return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *ud)
{
    (void)flags;
    (void)ud;
    /* The connection window is always returned at once: one stalled stream must not starve
     * its siblings. Only the stream window is withheld (backpressure, grpc__stream_data). */
    nghttp2_session_consume_connection(ng, len);
    metrics_add(wsapi_m.upstream_bytes, len);
    gstream_t *s = nghttp2_session_get_stream_user_data(ng, id);
    if (s)
        grpc__stream_data(s, data, len);
    else
        nghttp2_session_consume_stream(ng, id, len);
    return 0;
}


static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t error_code, void *ud)
{
    (void)ud;
    gstream_t *s = nghttp2_session_get_stream_user_data(ng, id);
    if (!s)
        return 0;
    if (error_code != NGHTTP2_NO_ERROR && s->kind == GS_EXCHANGE && !s->trailers_sent) {
        char gw[96];
        log_rl_info("exchange stream reset", "gateway=%s stream=%llu h2_error=%s",
                    grpc__quote(gw, sizeof gw, s->gateway_id), (unsigned long long)s->as.serial,
                    nghttp2_http2_strerror(error_code));
    }
    nghttp2_session_set_stream_user_data(ng, id, NULL);
    grpc__stream_free(s);
    return 0;
}

static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    gconn_t *c = ud;
    if (f->hd.type == NGHTTP2_GOAWAY && f->goaway.error_code != NGHTTP2_NO_ERROR) {
        /* nghttp2 found a protocol error and is ending the connection. */
        if (c->failed)
            return 0; /* conn_read already logged it */
        grpc__conn_count_failure(c);
        log_rl_warn("http2 connection failed", "conn=%llu peer=%s error=%s",
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

int grpc__h2_setup(grpc_server_t *srv)
{
    if (nghttp2_session_callbacks_new(&srv->cbs) != 0 || nghttp2_option_new(&srv->opt) != 0)
        return -1;
    nghttp2_session_callbacks_set_on_begin_frame_callback(srv->cbs, on_begin_frame);
    nghttp2_session_callbacks_set_on_begin_headers_callback(srv->cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(srv->cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(srv->cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(srv->cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(srv->cbs, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(srv->cbs, on_frame_send);
    nghttp2_session_callbacks_set_error_callback2(srv->cbs, on_error);
    nghttp2_session_callbacks_set_data_source_read_length_callback(srv->cbs, read_length_cb);
    nghttp2_session_callbacks_set_send_data_callback(srv->cbs, grpc__send_data);
    /* We return stream window ourselves once a stream's output queue allows (backpressure). */
    nghttp2_option_set_no_auto_window_update(srv->opt, 1);
    /* on_begin_frame ends a connection at reset_burst RST_STREAMs (then 33/s) first; nghttp2's
     * own limiter (CVE-2023-44487) is set to the same as a backstop. */
    nghttp2_option_set_stream_reset_rate_limit(srv->opt, srv->cfg.reset_burst, 33);
    /* Closed streams are not kept for a priority tree we do not use (memory per stream). */
    nghttp2_option_set_no_closed_streams(srv->opt, 1);
    return 0;
}

int grpc__session_new(gconn_t *c)
{
    grpc_server_t *srv = c->srv;
    if (nghttp2_session_server_new2(&c->ng, srv->cbs, c, srv->opt) != 0)
        return -1;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, srv->cfg.max_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, srv->cfg.stream_window},
        {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, 1 << 20},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, srv->cfg.max_header_list},
        /* PRIORITY frames are then ignored by nghttp2 (no dependency tree to maintain) */
        {NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1},
    };
    if (nghttp2_submit_settings(c->ng, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]) != 0 ||
        nghttp2_session_set_local_window_size(c->ng, NGHTTP2_FLAG_NONE, 0,
                                              (int32_t)srv->cfg.conn_window) != 0) {
        nghttp2_session_del(c->ng);
        c->ng = NULL;
        return -1;
    }
    uint64_t now = uv_now(srv->loop);
    c->idle_since_ms = now;
    c->limit = H2L_NONE;
    bucket_fill(&c->ctl, now, srv->cfg.control_rate * 2 > 20 ? srv->cfg.control_rate * 2 : 20);
    bucket_fill(&c->rst, now, srv->cfg.reset_burst);
    bucket_fill(&c->hdr, now, srv->cfg.header_rate);
    return 0;
}
