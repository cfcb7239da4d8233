/* upstream_h2.c: the writer's HTTP/2 side (see upstream.h): the nghttp2 callbacks, the gRPC
 * requests of the streams, Downstream commands to the service threads with HTTP/2 flow control
 * held back while they have no room, and the delivery machine's actions (dlv_io_t). Writer
 * thread. */
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "downstream.h"
#include "gwm.h"
#include "log.h"
#include "metrics.h"
#include "upstream_priv.h"

/* ---- commands to service threads ------------------------------------------------------ */

static void mark_touched(gw_up_priv_t *p, int k)
{
    if (k < 64)
        p->touched |= 1ULL << k;
    else
        p->touched_all = true;
}

/* Hands cmd to service thread k (ring, or its overflow: then HTTP/2 credit is held back). */
void upstream__emit_cmd(void *ud, int k, gw_cmd_t *cmd)
{
    gw_up_t *u = ud;
    gw_up_priv_t *p = u->priv;
    gw_handoff_t *h = &u->links[k]->down;
    bool was = gw_handoff_overflowing(h);
    if (!gw_handoff_push(h, cmd)) {
        if (!was)
            metrics_inc(gwm.cmd_ring_full);
        p->overflowing = true;
    }
    mark_touched(p, k);
}

void upstream__wake_touched(gw_up_t *u)
{
    gw_up_priv_t *p = u->priv;
    for (int k = 0; k < u->gw->nsvc; k++)
        if (p->touched_all || (k < 64 && (p->touched & (1ULL << k))))
            gw_link_wake_svc(u->links[k]);
    p->touched = 0;
    p->touched_all = false;
}

/* Gives received bytes back to HTTP/2 flow control once the commands have a place to go. */
static void consume(gw_up_t *u, int i)
{
    gw_up_priv_t *p = u->priv;
    up_st_t *s = &p->st[i];
    if (s->unconsumed && s->id && p->sess && !p->overflowing) {
        nghttp2_session_consume(p->sess, s->id, s->unconsumed);
        s->unconsumed = 0;
    }
}

void upstream__flush_cmd_overflow(gw_up_t *u)
{
    gw_up_priv_t *p = u->priv;
    if (!p->overflowing)
        return;
    bool left = false;
    for (int k = 0; k < u->gw->nsvc; k++) {
        gw_handoff_t *h = &u->links[k]->down;
        if (!gw_handoff_overflowing(h))
            continue;
        if (!gw_handoff_flush(h)) /* raise-then-retry: the service thread wakes us for room */
            left = true;
        mark_touched(p, k);
    }
    p->overflowing = left;
    if (!left)
        for (int i = 0; i < p->nstreams; i++)
            consume(u, i);
}

/* The machine's resolved counts, where the service threads read them (link.h done). Only once
 * every command is in a ring: a thread that sees a count must find the handback. */
void upstream__publish_one(void *ud, int k, int st, uint32_t n)
{
    gw_up_t *u = ud;
    gw_link_t *l = u->links[k];
    atomic_store_explicit(&l->done[st],
                          atomic_load_explicit(&l->done[st], memory_order_relaxed) + n,
                          memory_order_release);
    if (atomic_load(&l->want_done))
        gw_link_wake_svc(l);
}

/* ---- the delivery machine's actions (dlv_io_t) ---------------------------------------- */

/* The request body of stream slot src->fd: the delivery machine's batches. nghttp2 is told
 * NGHTTP2_DATA_FLAG_NO_COPY (on_send_data puts the frame header into the output queue), so
 * the bytes never pass through its frame buffer. On h2c they are not copied at all: the
 * pieces of the kept batches are referred to in the output queue (iovq.h) and go out with
 * sendmsg(2); under TLS they are copied into the queue behind room left for the header. A
 * piece's batch may be freed or renumbered once the machine is called again, so flush_out and
 * on_stream_close copy what is not written by then (iovq_materialize). When the queue cannot
 * grow, nghttp2's buffer is used as before.
 *
 * Room in the queue's buffer is made for what is copied, when it is copied: nghttp2 offers
 * `length` up to the stream's window (256 KiB here), and reserving that much for every frame
 * grew a buffer of a few frame headers to 512 KiB, which flush_out's reset then freed (it keeps
 * 4 x WBUF_HIGH): a malloc, a free and a copy of the old buffer per flush (#74). */
typedef struct {
    gw_up_priv_t *p;
    size_t pos;  /* where the next copied byte goes in the queue's buffer */
    bool failed; /* out of memory for a copy: the frame is abandoned with the session */
} pieces_t;

static void on_piece(void *ud, const uint8_t *b, size_t n)
{
    pieces_t *x = ud;
    iovq_t *q = &x->p->out;
    if (x->failed || (!x->p->sock.ssl && iovq_ref(q, x->pos, b, n, NULL) == 0))
        return;
    if (buf_reserve(&q->buf, x->pos + n - q->buf.len) < 0) { /* (pos: past len) */
        x->failed = true;
        return;
    }
    memcpy(q->buf.data + x->pos, b, n);
    x->pos += n;
}

static ssize_t on_read_data(nghttp2_session *s, int32_t sid, uint8_t *out, size_t length,
                            uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    (void)s;
    (void)sid;
    gw_up_t *u = ud;
    gw_up_priv_t *p = u->priv;
    bool eof;
    ssize_t n;
    if (buf_reserve(&p->out.buf, H2_FRAME_HD) == 0) { /* (the payload's: on_piece) */
        pieces_t x = {p, p->out.buf.len + H2_FRAME_HD, false};
        n = dlv_stream_pieces(p->d, (int)src->fd, length, &eof, on_piece, &x);
        if (x.failed) {
            log_error("out of memory for the API node's output", "node=%s", u->name);
            return NGHTTP2_ERR_CALLBACK_FAILURE; /* the session ends; its batches are retried */
        }
        p->data_copied = x.pos - (p->out.buf.len + H2_FRAME_HD);
        if (n > 0)
            *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    } else {
        n = dlv_stream_read(p->d, (int)src->fd, out, length, &eof);
    }
    if (n == DLV_DEFERRED)
        return NGHTTP2_ERR_DEFERRED; /* long-lived: resumed when a batch is queued */
    if (eof) /* the node is going away: half-close so it can answer the rest and finish */
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return n;
}

/* DATA frames up to MAX_DATA_FRAME (the node's SETTINGS_MAX_FRAME_SIZE and the windows
 * permitting) instead of nghttp2's 16 KiB: a batch cut by a frame boundary is reassembled by
 * the node (a copy), and at 16 KiB most batches of a busy stream were. */
static ssize_t on_read_length(nghttp2_session *s, uint8_t type, int32_t id, int32_t swin,
                              int32_t cwin, uint32_t remote_max, void *ud)
{
    (void)s;
    (void)type;
    (void)id;
    (void)ud;
    return grpc_data_frame_len(swin, cwin, remote_max, MAX_DATA_FRAME);
}

/* nghttp2's send_data_callback for what on_read_data put in the output queue: the frame
 * header goes in front of it. Returns PAUSE once enough is gathered for one send(2) (flush_out
 * sends, then calls nghttp2_session_mem_send again). */
static int on_send_data(nghttp2_session *s, nghttp2_frame *frame, const uint8_t *framehd,
                        size_t length, nghttp2_data_source *src, void *ud)
{
    (void)s;
    (void)src;
    gw_up_t *u = ud;
    gw_up_priv_t *p = u->priv;
    buf_t *w = &p->out.buf;
    if (frame->data.padlen || p->data_copied > length ||
        w->cap - w->len < H2_FRAME_HD + p->data_copied)
        return NGHTTP2_ERR_CALLBACK_FAILURE; /* not what on_read_data prepared */
    memcpy(w->data + w->len, framehd, H2_FRAME_HD);
    w->len += H2_FRAME_HD + p->data_copied; /* the rest of `length`: pieces (iovq.h) */
    p->data_copied = 0;
    return iovq_pending(&p->out) >= WBUF_HIGH ? NGHTTP2_ERR_PAUSE : 0;
}

static bool io_open_stream(void *ud, int i)
{
    gw_up_t *u = ud;
    gw_up_priv_t *p = u->priv;
    char authority[320], bearer[1100], nstreams[16], prefix[8], instance[32];
    if (u->unix_path[0])
        snprintf(authority, sizeof authority, "%s", u->tls_name[0] ? u->tls_name : u->host);
    else
        snprintf(authority, sizeof authority, "%s:%s", u->tls_name[0] ? u->tls_name : u->host,
                 u->port);
    snprintf(prefix, sizeof prefix, "%u", (unsigned)u->gw->prefix);
    snprintf(bearer, sizeof bearer, "Bearer %s", gw_cfg.gateway_token);
    snprintf(nstreams, sizeof nstreams, "%d", p->nstreams);
    unsigned gen = atomic_load_explicit(&u->gw->instance_gen, memory_order_relaxed);
    if (gen) /* (renewed: io_renew_instance) */
        snprintf(instance, sizeof instance, "%s.%u", u->gw->instance, gen);
    else
        snprintf(instance, sizeof instance, "%s", u->gw->instance);
#define NV(n, v) {(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE}
    nghttp2_nv hdrs[] = {
        NV(":method", "POST"),
        NV(":scheme", gw_cfg.upstream_tls ? "https" : "http"),
        NV(":path", "/wsgw.v1.Exchange/Stream"),
        NV(":authority", authority),
        NV("content-type", "application/grpc"),
        NV("te", "trailers"),
        NV("user-agent", "wsgw-gateway/0.1"),
        NV("x-gateway-id", gw_cfg.gateway_id),
        NV("x-wsgw-streams", nstreams), /* how many say presence_complete (wsgw.proto) */
        /* we can send a connection's Open and Close to one node when presence is shared (the
         * answer's x-wsgw-presence); this process, and the prefix of its conn ids */
        NV("x-wsgw-presence", "shared"),
        NV("x-wsgw-instance", instance),
        NV("x-wsgw-conn-prefix", prefix),
        NV("authorization", bearer),
    };
#undef NV
    size_t nhdrs = sizeof hdrs / sizeof hdrs[0] - (*gw_cfg.gateway_token ? 0 : 1);
    up_st_t *s = &p->st[i];
    nghttp2_data_provider prd = {.source.fd = i, .read_callback = on_read_data};
    int32_t id = nghttp2_submit_request(p->sess, NULL, hdrs, nhdrs, &prd,
                                        (void *)(intptr_t)(i + 1));
    if (id < 0) {
        log_rl_error("cannot open stream", "node=%s stream=%d err=%s", u->name, i,
                     nghttp2_strerror(id));
        return false;
    }
    s->id = id;
    s->acking = false;
    s->shared = false;
    s->grpc_status = -1;
    s->unconsumed = 0;
    grpc_dec_free(&s->dec);
    grpc_dec_init(&s->dec, MAX_DOWNSTREAM);
    grpc_dec_trust(&s->dec, DOWNSTREAM_KEEP);
    return true;
}

static void io_resume_stream(void *ud, int i)
{
    gw_up_t *u = ud;
    gw_up_priv_t *p = u->priv;
    if (p->sess && p->st[i].id)
        nghttp2_session_resume_data(p->sess, p->st[i].id);
}

static void io_ping(void *ud)
{
    gw_up_t *u = ud;
    if (u->priv->sess)
        nghttp2_submit_ping(u->priv->sess, NGHTTP2_FLAG_NONE, NULL);
}

static void io_set_usable(void *ud, bool on)
{
    gw_up_t *u = ud;
    gw_up_priv_t *p = u->priv;
    atomic_store(&u->node->connected, on ? 1 : 0);
    metrics_gauge_set(p->m_connected, on ? 1 : 0);
    if (on && p->connects++)
        metrics_inc(p->m_reconnects);
    log_info(on ? "API node usable" : "API node not usable", "node=%s streams=%d", u->name,
             p->nstreams);
}

static bool io_others_usable(void *ud)
{
    gw_up_t *u = ud;
    for (int i = 0; i < u->gw->nup; i++)
        if (i != u->idx && gw_node_up(u->gw, i))
            return true;
    return false;
}

/* A routed Close was lost (delivery.h I4): every writer's streams opened from now on present
 * the instance renewed, and ws-api rebuilds this gateway's shared presence at the next bind. */
static void io_renew_instance(void *ud)
{
    gw_up_t *u = ud;
    unsigned gen = atomic_fetch_add(&u->gw->instance_gen, 1) + 1;
    metrics_inc(gwm.presence_renewals);
    log_rl_warn("a connection's Close was lost toward the API: shared presence is rebuilt "
                "under a new instance", "node=%s instance=%s.%u", u->name, u->gw->instance, gen);
}

/* ---- Downstream ------------------------------------------------------------------------- */

static void on_api_ns(void *ud, int64_t api_ns)
{
    gw_up_t *u = ud;
    gw_up_priv_t *p = u->priv;
    if (p->napi < (int)(sizeof p->api_ns / sizeof p->api_ns[0]))
        p->api_ns[p->napi++] = api_ns;
}

typedef struct { gw_up_t *u; int i; } ds_ctx_t;

/* One complete Downstream message on stream slot i. */
static int on_downstream(void *ud, const uint8_t *msg, size_t len)
{
    ds_ctx_t *x = ud;
    gw_up_t *u = x->u;
    gw_up_priv_t *p = u->priv;
    gw_ds_sink_t sink = {.nsvc = u->gw->nsvc, .prefix = u->gw->prefix, .t_recv = upstream__now(),
                         .emit = upstream__emit_cmd, .api_ns = on_api_ns, .ud = u};
    gw_ds_result_t res;
    p->napi = 0;
    int hrv = gw_downstream_handle(msg, len, &sink, &res);
    if (hrv < 0) {
        metrics_inc(gwm.bad_downstream);
        log_rl_error("undecodable Downstream from API node", "node=%s stream=%d len=%zu",
                     u->name, x->i, len);
        return -1;
    }
    if (res.undeliverable)
        metrics_add(gwm.undeliverable, res.undeliverable);
    if (res.nomem)
        log_rl_error("out of memory routing commands", "node=%s lost=%zu", u->name, res.nomem);
    /* api stage = api_ns - gateway_ns of the batch answered; two hosts' clocks: clamped at 0 */
    int64_t base = dlv_api_base(p->d, x->i, res.has_ack, res.ack);
    for (int k = 0; base && k < p->napi; k++)
        metrics_observe(gwm.stage_api, p->api_ns[k] > base ? (uint64_t)(p->api_ns[k] - base) : 0);
    if (res.has_ack)
        dlv_ack(p->d, x->i, res.ack, upstream__now());
    return 0;
}

/* ---- nghttp2 callbacks -------------------------------------------------------------------- */

static int slot_of(nghttp2_session *s, int32_t id)
{
    return (int)(intptr_t)nghttp2_session_get_stream_user_data(s, id) - 1;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *ud)
{
    (void)flags;
    gw_up_t *u = ud;
    int i = slot_of(s, frame->hd.stream_id);
    if (i < 0 || frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    up_st_t *st = &u->priv->st[i];
    if (namelen == 10 && memcmp(name, "x-wsgw-ack", 10) == 0 && valuelen == 1 && value[0] == '1')
        st->acking = true;
    else if (namelen == 15 && memcmp(name, "x-wsgw-presence", 15) == 0 && valuelen == 6 &&
             memcmp(value, "shared", 6) == 0)
        st->shared = true;
    else if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0)
        st->grpc_status = atoi((const char *)value);
    else if (namelen == 12 && memcmp(name, "grpc-message", 12) == 0) {
        char m[256], q[300];
        size_t n = valuelen < sizeof m - 1 ? valuelen : sizeof m - 1;
        memcpy(m, value, n);
        m[n] = 0;
        log_rl_warn("API stream error message", "node=%s stream=%d grpc_message=%s", u->name,
                    i, log_quote(q, sizeof q, m));
    }
    return 0;
}

/* What the node's answer says of presence (gw.h gw_presence_shared), logged when it changes. */
static void presence_mode(gw_up_t *u, bool shared)
{
    int mode = shared ? GW_PRES_SHARED : GW_PRES_REPLICATED;
    int was = atomic_exchange(&u->node->presence, mode);
    if (was == mode)
        return;
    log_info("API node presence", "node=%s presence=%s", u->name,
             shared ? "shared (Open and Close to one node)" : "its own (Open and Close to it)");
    if (!shared && gw_cfg.upstream_subset)
        log_warn("--upstream-subset with an API node that does not share presence: pushes "
                 "through nodes this gateway is not connected to will not reach it",
                 "node=%s", u->name);
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *frame, void *ud)
{
    gw_up_t *u = ud;
    dlv_t *d = u->priv->d;
    int64_t now = upstream__now();
    switch (frame->hd.type) {
    case NGHTTP2_SETTINGS:
        if (!(frame->hd.flags & NGHTTP2_FLAG_ACK))
            dlv_settings(d, now); /* it speaks HTTP/2 */
        break;
    case NGHTTP2_HEADERS: {
        int i = slot_of(s, frame->hd.stream_id);
        if (i >= 0 && frame->headers.cat == NGHTTP2_HCAT_RESPONSE) {
            up_st_t *st = &u->priv->st[i];
            bool end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
            if (!end && st->grpc_status < 0)
                presence_mode(u, st->shared);
            dlv_headers(d, i, st->acking, end, st->grpc_status, now);
        }
        break;
    }
    case NGHTTP2_PING:
        if (frame->hd.flags & NGHTTP2_FLAG_ACK)
            dlv_ping_acked(d, now);
        break;
    case NGHTTP2_GOAWAY:
        log_info("API node sent GOAWAY", "node=%s error=%u", u->name, frame->goaway.error_code);
        dlv_goaway(d, frame->goaway.error_code, now);
        break;
    default:
        break;
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *ud)
{
    (void)flags;
    gw_up_t *u = ud;
    int i = slot_of(s, id);
    if (i < 0) {
        nghttp2_session_consume(s, id, len);
        return 0;
    }
    up_st_t *st = &u->priv->st[i];
    st->unconsumed += len;
    ds_ctx_t x = {u, i};
    int rv = grpc_dec_feed(&st->dec, data, len, on_downstream, &x);
    if (rv < 0) {
        if (rv != -1) { /* framing error (on_downstream logs its own) */
            metrics_inc(gwm.bad_downstream);
            log_rl_error("bad gRPC framing from API node", "node=%s stream=%d err=%s", u->name,
                         i, grpc_frame_strerror(rv));
        }
        nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
    }
    consume(u, i);
    return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t error_code, void *ud)
{
    gw_up_t *u = ud;
    int i = slot_of(s, id);
    if (i < 0 || u->priv->st[i].id != id)
        return 0;
    u->priv->st[i].id = 0;
    /* (during flush_out's mem_send: the machine may now free or renumber the batches that
     * the queue still refers to) */
    if (iovq_materialize(&u->priv->out) < 0)
        return NGHTTP2_ERR_CALLBACK_FAILURE; /* out of memory: the session ends */
    dlv_stream_closed(u->priv->d, i, u->priv->st[i].grpc_status, error_code, upstream__now());
    return 0;
}

int upstream__session_start(gw_up_t *u)
{
    gw_up_priv_t *p = u->priv;
    nghttp2_session_callbacks *cbs;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_session_callbacks_set_send_data_callback(cbs, on_send_data);
    nghttp2_session_callbacks_set_data_source_read_length_callback(cbs, on_read_length);
    nghttp2_option *opt;
    nghttp2_option_new(&opt);
    /* Backpressure toward the API: bytes are given back only once the service threads have
     * room for the commands (FIELD-NOTES). */
    nghttp2_option_set_no_auto_window_update(opt, 1);
    int rv = nghttp2_session_client_new2(&p->sess, cbs, u, opt);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cbs);
    if (rv != 0)
        return -1;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW},
        {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, 1 << 20},
    };
    nghttp2_submit_settings(p->sess, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]);
    nghttp2_session_set_local_window_size(p->sess, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW);
    p->tstate = T_SESSION;
    dlv_session_up(p->d, upstream__now()); /* streams open once the Opens of live connections are in */
    return 0;
}

dlv_io_t upstream__io(gw_up_t *u)
{
    return (dlv_io_t){u, io_open_stream, io_resume_stream, io_ping, io_set_usable,
                      upstream__emit_cmd, io_others_usable, io_renew_instance};
}
