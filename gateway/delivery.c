/* delivery.c: the delivery protocol toward one API node (see delivery.h for the invariants).
 * No I/O: inputs are calls, outputs are dlv_io_t callbacks and the bytes dlv_stream_read
 * gives out. Writer thread (or the simulator). */
#include "delivery_priv.h"

#include <stdlib.h>
#include <string.h>

#include "conn_id.h"
#include "idmap.h"
#include "log.h"
#include "route.h"
#include "seqtrack.h"

/* ---- small helpers ------------------------------------------------------------------------ */

void (*dlv_trace_batch)(const dlv_t *d, const char *what, int st, const gw_batch_t *b);

static uint32_t rnd(dlv_t *d)
{
    d->rng ^= d->rng << 13;
    d->rng ^= d->rng >> 7;
    d->rng ^= d->rng << 17;
    return (uint32_t)d->rng;
}

/* Exponential backoff for `n` failures in a row, jittered uniformly in [base/2, base]. */
static int64_t backoff(dlv_t *d, int n)
{
    int64_t base = d->cfg.backoff_min_ns;
    for (int i = 0; i < n && base < d->cfg.backoff_max_ns; i++)
        base *= 2;
    if (base > d->cfg.backoff_max_ns)
        base = d->cfg.backoff_max_ns;
    return base / 2 + (int64_t)(rnd(d) % (uint64_t)(base / 2 + 1));
}

int dlv__evq_push(evq_t *q, gw_event_t *e)
{
    if (q->n == q->cap) {
        size_t ncap = q->cap ? q->cap * 2 : 64;
        gw_event_t **v = realloc(q->v, ncap * sizeof *v);
        if (!v)
            return -1;
        q->v = v;
        q->cap = ncap;
    }
    q->v[q->n++] = e;
    q->bytes += gw_event_size(e);
    return 0;
}

/* Forgets the queue's entries (the caller took or freed the events). */
void dlv__evq_reset(evq_t *q)
{
    q->n = 0;
    q->bytes = 0;
}

static void evq_free_all(evq_t *q)
{
    for (size_t i = 0; i < q->n; i++)
        gw_event_free(q->v[i]);
    dlv__evq_reset(q);
}

int dlv__thread_of(const dlv_t *d, uint64_t conn_id)
{
    unsigned k = conn_id_thread(conn_id);
    return k < (unsigned)d->cfg.nsvc ? (int)k : -1;
}

/* Message number tno of thread k on stream st is resolved: acknowledged, delivered without
 * acks, handed back, or lost and counted (msgroute.h). */
void dlv__resolve(dlv_t *d, int k, int st, uint32_t tno)
{
    if (k >= 0 && gw_seqtrack_done(&d->rt[k * d->cfg.nstreams + st], tno) < 0)
        /* (its thread then waits for it: a connection does not move nodes in the meantime) */
        log_rl_error("out of memory tracking resolved messages", "node=%s", d->cfg.name);
}

/* Every Message of b is resolved (its events are gone some other way: lost, counted). */
void dlv__resolve_batch(dlv_t *d, int st, const gw_batch_t *b)
{
    for (uint32_t i = 0; b->tags && i < b->nmsgs; i++)
        dlv__resolve(d, (int)(b->tags[i] >> 32), st, (uint32_t)b->tags[i]);
}

/* What routing sees: usable, and no handback still on its way to the service threads (a
 * message sent here before its handed-back predecessors were re-sent would overtake them). */
void dlv__publish_usable(dlv_t *d)
{
    bool pub = d->usable && !d->hb_wait;
    if (pub == d->published)
        return;
    d->published = pub;
    d->io.set_usable(d->io.ud, pub);
}

static void set_usable(dlv_t *d, bool u)
{
    d->usable = u;
    dlv__publish_usable(d);
}

static bool inflight(const dstream_t *s)
{
    return s->head && (s->head != s->cur || s->cur_off > 0);
}

/* ---- resync (I2) --------------------------------------------------------------------------- */

static void resync_drop(dlv_t *d)
{
    for (int i = 0; i < d->cfg.nstreams; i++)
        evq_free_all(&d->st[i].rs);
}

/* Strips every stream and asks every service thread for the Opens of its live connections. */
static void resync_begin(dlv_t *d, int64_t now)
{
    for (int i = 0; i < d->cfg.nstreams; i++)
        dlv__strip_stream(d, &d->st[i], now);
    resync_drop(d);
    if (++d->rs_gen == 0 || d->rs_gen > INT32_MAX)
        d->rs_gen = 1;
    d->state = DLV_RESYNC;
    d->accepted = false;
    d->rs_waiting = d->cfg.nsvc;
    d->stats.resyncs++;
    for (int k = 0; k < d->cfg.nsvc; k++) {
        gw_cmd_t *c = gw_cmd_new(GW_CMD_RESYNC, NULL, 0, NULL, 0, NULL, NULL, 0);
        if (!c) {
            log_error("out of memory asking for a presence resync", "node=%s", d->cfg.name);
            d->rs_waiting--;
            continue;
        }
        c->code = (int32_t)d->rs_gen;
        d->io.emit(d->io.ud, k, c);
    }
}

static void open_stream(dlv_t *d, dstream_t *s, int64_t now);

/* Every thread's Opens are in: per stream, they go first (the last batch of them says
 * presence_complete), then everything taken since and kept from before; streams open. */
static void resync_finish(dlv_t *d, int64_t now)
{
    size_t n = 0;
    for (int i = 0; i < d->cfg.nstreams; i++) {
        dstream_t *s = &d->st[i];
        n += s->rs.n;
        dlv__encode_into(d, s, s->rs.v, s->rs.n);
        dlv__evq_reset(&s->rs);
        if (!s->tail) { /* no Opens on this stream: an empty batch says it */
            gw_batch_t *b = gw_batch_encode(&d->pool, NULL, 0, d->cfg.gateway_id);
            if (b) {
                d->stats.queued += b->ev_len;
                dlv__append_batch(s, b);
            }
        }
        if (s->tail) {
            size_t before = s->tail->ev_len;
            gw_batch_set_complete(s->tail);
            d->stats.queued += s->tail->ev_len - before;
        }
        dlv__encode_pending(d, s);
    }
    d->state = DLV_LIVE;
    log_info("presence resync", "node=%s opens=%zu", d->cfg.name, n);
    for (int i = 0; i < d->cfg.nstreams; i++)
        open_stream(d, &d->st[i], now);
}

/* ---- streams ------------------------------------------------------------------------------- */

/* A new request on s: renumbered from 1, everything queued goes out again from the oldest. */
static void open_stream(dlv_t *d, dstream_t *s, int64_t now)
{
    s->next_seq = 1;
    for (gw_batch_t *b = s->head; b; b = b->next)
        gw_batch_set_seq(b, s->next_seq++);
    s->cur = s->head;
    s->cur_off = 0;
    s->mode = MODE_UNKNOWN;
    s->healthy = s->refused = s->ending = s->alone = s->blocked = false;
    s->reopen_at = 0;
    if (!d->io.open_stream(d->io.ud, s->idx)) {
        s->reopen_at = now + backoff(d, ++s->fails);
        return;
    }
    s->open = true;
    s->opened_at = now;
}

static bool non_retryable(int grpc_status)
{
    switch (grpc_status) {
    case 2:  /* UNKNOWN: the handler threw (grpcio) */
    case 3:  /* INVALID_ARGUMENT */
    case 8:  /* RESOURCE_EXHAUSTED: over the node's message size */
    case 9:  /* FAILED_PRECONDITION */
    case 11: /* OUT_OF_RANGE */
    case 13: /* INTERNAL: ws-api's answer to an undecodable message */
    case 15: /* DATA_LOSS */
        return true;
    default:
        return false;
    }
}

/* After every stream of a live session closed: if the node refused them all with a status, it
 * is not usable until it accepts one. (Presence lives as long as the session: I2.) */
static void all_closed(dlv_t *d, int grpc_status)
{
    if (grpc_status > 0 && d->usable) {
        set_usable(d, false);
        log_warn("API node unusable: it refuses every stream", "node=%s grpc_status=%d",
                 d->cfg.name, grpc_status);
    }
}

/* ---- public: session -------------------------------------------------------------------- */

dlv_t *dlv_new(const dlv_cfg_t *cfg, const dlv_io_t *io)
{
    dlv_t *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->cfg = *cfg;
    if (d->cfg.max_attempts < 2)
        d->cfg.max_attempts = 2;
    if (d->cfg.max_attempts > 200)
        d->cfg.max_attempts = 200; /* tries is a byte */
    d->io = *io;
    d->rng = 0x9e3779b97f4a7c15ULL;
    d->ping_interval = cfg->ping_interval_ns;
    d->st = calloc((size_t)cfg->nstreams, sizeof *d->st);
    d->hb_head = calloc((size_t)cfg->nsvc, sizeof *d->hb_head);
    d->hb_tail = calloc((size_t)cfg->nsvc, sizeof *d->hb_tail);
    d->hb_sent = calloc((size_t)cfg->nsvc, sizeof *d->hb_sent);
    d->hb_seen = calloc((size_t)cfg->nsvc, sizeof *d->hb_seen);
    d->hb_ids = calloc((size_t)cfg->nsvc, sizeof *d->hb_ids);
    d->rt = calloc((size_t)(cfg->nsvc * cfg->nstreams), sizeof *d->rt);
    if (!d->st || !d->hb_head || !d->hb_tail || !d->hb_sent || !d->hb_seen || !d->hb_ids ||
        !d->rt) {
        dlv_free(d);
        return NULL;
    }
    for (int i = 0; i < cfg->nstreams; i++) {
        d->st[i].idx = i;
        d->st[i].next_seq = 1;
    }
    d->state = DLV_DOWN;
    return d;
}

void dlv_seed(dlv_t *d, uint64_t seed)
{
    d->rng = seed | 1;
}

void dlv_free(dlv_t *d)
{
    if (!d)
        return;
    for (int i = 0; d->st && i < d->cfg.nstreams; i++) {
        dstream_t *s = &d->st[i];
        while (s->head) {
            gw_batch_t *b = s->head;
            s->head = b->next;
            gw_batch_free(b);
        }
        evq_free_all(&s->pend);
        evq_free_all(&s->rs);
        free(s->pend.v);
        free(s->rs.v);
    }
    for (int k = 0; d->hb_head && k < d->cfg.nsvc; k++)
        while (d->hb_head[k]) {
            gw_event_t *e = d->hb_head[k];
            d->hb_head[k] = e->next;
            gw_event_free(e);
        }
    gw_batch_pool_free(&d->pool);
    free(d->st);
    free(d->hb_head);
    free(d->hb_tail);
    free(d->hb_sent);
    free(d->hb_seen);
    for (int k = 0; d->hb_ids && k < d->cfg.nsvc; k++)
        gw_idmap_free(&d->hb_ids[k]);
    free(d->hb_ids);
    for (int i = 0; d->rt && i < d->cfg.nsvc * d->cfg.nstreams; i++)
        gw_seqtrack_free(&d->rt[i]);
    free(d->rt);
    free(d);
}

dlv_state_t dlv_state(const dlv_t *d) { return d->state; }
const dlv_stats_t *dlv_stats(const dlv_t *d) { return &d->stats; }
const char *dlv_disconnect_wanted(const dlv_t *d) { return d->want_disconnect; }

bool dlv_connect_due(const dlv_t *d, int64_t now)
{
    return d->state == DLV_DOWN && now >= d->connect_at;
}

void dlv_connecting(dlv_t *d, int64_t now)
{
    d->state = DLV_CONNECTING;
    d->connect_deadline = now + d->cfg.connect_timeout_ns;
    d->attempt++;
}

void dlv_session_up(dlv_t *d, int64_t now)
{
    d->settings = false;
    d->last_rx = now;
    d->ping_out = false;
    d->out_blocked = false;
    d->flushed = true;
    d->want_disconnect = NULL;
    d->plain_logged = false;
    resync_begin(d, now); /* streams open once the Opens of live connections are in */
}

void dlv_settings(dlv_t *d, int64_t now)
{
    (void)now;
    if (d->settings || (d->state != DLV_RESYNC && d->state != DLV_LIVE))
        return;
    d->settings = true;
    d->attempt = 0;
    set_usable(d, true);
}

void dlv_goaway(dlv_t *d, uint32_t error_code, int64_t now)
{
    if (error_code == H2_ENHANCE_YOUR_CALM && d->ping_interval) {
        d->ping_interval = d->ping_interval * 2 < PING_INTERVAL_MAX_NS ? d->ping_interval * 2
                                                                       : PING_INTERVAL_MAX_NS;
        log_warn("API node asks for fewer PINGs: interval doubled", "node=%s interval_ms=%lld",
                 d->cfg.name, (long long)(d->ping_interval / 1000000));
    }
    if (d->state != DLV_LIVE && d->state != DLV_RESYNC)
        return;
    bool live = d->state == DLV_LIVE;
    d->state = DLV_GOAWAY;
    set_usable(d, false); /* new messages go elsewhere while this node finishes */
    resync_drop(d);
    for (int i = 0; i < d->cfg.nstreams; i++) {
        dstream_t *s = &d->st[i];
        if (live)
            dlv__encode_pending(d, s); /* what was taken before goes out before the end */
        else
            dlv__strip_stream(d, s, now); /* (RESYNC: nothing went out; Messages wait) */
        s->ending = true;
        if (s->open)
            d->io.resume_stream(d->io.ud, s->idx);
    }
    /* Messages taken from now on wait for the session's end: handing them back now would let
     * them overtake older ones of their connections still queued on the ending streams. */
}

void dlv_session_down(dlv_t *d, const char *why, bool output_lost, int64_t now)
{
    (void)output_lost; /* unflushed batches are kept either way: replayed, never lost */
    if (d->state == DLV_DOWN)
        return;
    bool was_session = d->state != DLV_CONNECTING;
    if (was_session)
        log_warn("API node disconnected", "node=%s reason=%s", d->cfg.name, why);
    for (int i = 0; i < d->cfg.nstreams; i++) {
        dstream_t *s = &d->st[i];
        s->open = false;
        s->reopen_at = 0;
        s->fails = 0;
        dlv__count_failure(d, s);         /* what was in flight failed once more (I4) */
        dlv__poison_sweep(d, s, -1, now);
        dlv__strip_stream(d, s, now);     /* presence is re-sent by the next resync (I2) */
    }
    resync_drop(d);
    set_usable(d, false);
    d->state = DLV_DOWN;
    d->want_disconnect = NULL;
    d->ping_out = false;
    d->connect_at = now + backoff(d, d->attempt);
    if (d->io.others_usable(d->io.ud))
        dlv__handback_pending(d);
}

/* ---- public: streams -------------------------------------------------------------------- */

void dlv_headers(dlv_t *d, int st, bool acking, bool end_stream, int grpc_status, int64_t now)
{
    (void)now;
    dstream_t *s = &d->st[st];
    if (!s->open)
        return;
    if (end_stream || grpc_status >= 0) { /* trailers-only: a refusal, not a stream */
        s->refused = true;
        return;
    }
    s->healthy = true;
    s->fails = 0;
    d->accepted = true;
    if (s->mode == MODE_UNKNOWN)
        s->mode = acking ? MODE_ACKING : MODE_PLAIN;
    if (s->mode == MODE_PLAIN && d->flushed)
        dlv__release_sent(d, s, 0);
    if (!d->usable && d->settings && (d->state == DLV_LIVE || d->state == DLV_RESYNC)) {
        set_usable(d, true);
        log_info("API node usable again", "node=%s", d->cfg.name);
    }
}

void dlv_ack(dlv_t *d, int st, uint64_t seq, int64_t now)
{
    (void)now;
    dstream_t *s = &d->st[st];
    if (!s->open || !seq)
        return;
    s->mode = MODE_ACKING; /* an ack without the header still means what it says */
    dlv__release_sent(d, s, seq); /* never past what was sent: acks of unsent batches are bogus */
}

void dlv_stream_closed(dlv_t *d, int st, int grpc_status, uint32_t h2_error, int64_t now)
{
    dstream_t *s = &d->st[st];
    if (!s->open)
        return;
    s->open = false;
    /* trailers-only before any answer: a refusal, unless its status says a message was bad
     * (a plain gRPC server fails the call that way: then it is a failure like any other) */
    bool refusal = s->refused && !s->healthy && !non_retryable(grpc_status);
    bool failed = grpc_status != 0 || h2_error != 0;
    log_rl_warn("API stream closed", "node=%s stream=%d grpc_status=%d h2_error=%u", d->cfg.name,
                st, grpc_status, h2_error);
    if (s->mode == MODE_PLAIN && d->flushed)
        dlv__release_sent(d, s, 0); /* what reached the socket counts as delivered */
    if (!failed && s->mode == MODE_ACKING && inflight(s))
        failed = true; /* it ended without acking what it got: not a clean end */
    if (failed && !refusal) {
        /* I4: a batch that went alone carries the blame alone, at once when the status says
         * the message was bad; otherwise everything in flight is suspect from now on */
        if (s->alone && s->head && s->head->tries)
            s->head->tries = non_retryable(grpc_status) ? (uint8_t)d->cfg.max_attempts
                                                        : (uint8_t)(s->head->tries + 1);
        else
            dlv__count_failure(d, s);
        dlv__poison_sweep(d, s, grpc_status, now);
    } else {
        s->cur = s->head; /* a refusal: nothing was processed; all goes out again */
        s->cur_off = 0;
    }
    if (d->state != DLV_LIVE)
        return; /* GOAWAY: the session ends; RESYNC cannot have open streams */
    if (!failed && !refusal)
        s->fails = 0;
    else
        s->fails++;
    s->reopen_at = now + backoff(d, s->fails);
    for (int i = 0; i < d->cfg.nstreams; i++)
        if (d->st[i].open)
            return;
    all_closed(d, grpc_status);
}

/* dlv_stream_read and dlv_stream_pieces: into out, or to piece. */
static ssize_t stream_take(dlv_t *d, int st, size_t len, bool *eof, uint8_t *out,
                           dlv_piece_fn piece, void *ud)
{
    dstream_t *s = &d->st[st];
    *eof = false;
    size_t n = 0;
    while (s->open && n < len && s->cur) {
        gw_batch_t *b = s->cur;
        if (s->cur_off == 0) { /* I4: a batch that failed before goes out alone */
            if (s->alone || (b->tries && s->head != b))
                break;
            s->alone = b->tries != 0;
        }
        size_t take = b->wire_len - s->cur_off;
        if (take > len - n)
            take = len - n;
        if (piece)
            piece(ud, b->buf + s->cur_off, take);
        else
            memcpy(out + n, b->buf + s->cur_off, take);
        n += take;
        s->cur_off += take;
        if (s->cur_off == b->wire_len) {
            s->cur = b->next;
            s->cur_off = 0;
            d->stats.batches++;
        }
    }
    if (n) {
        d->flushed = false;
        return (ssize_t)n;
    }
    if (s->cur) {
        s->blocked = true; /* behind a batch that goes alone: resumed when it is released */
        return DLV_DEFERRED;
    }
    if (s->open && s->ending) {
        *eof = true; /* the node is going away: half-close, it answers the rest and ends */
        return 0;
    }
    return DLV_DEFERRED; /* long-lived: resumed when a batch is queued */
}

ssize_t dlv_stream_read(dlv_t *d, int st, uint8_t *out, size_t len, bool *eof)
{
    return stream_take(d, st, len, eof, out, NULL, NULL);
}

ssize_t dlv_stream_pieces(dlv_t *d, int st, size_t len, bool *eof, dlv_piece_fn piece,
                          void *ud)
{
    return stream_take(d, st, len, eof, NULL, piece, ud);
}

void dlv_flushed(dlv_t *d, int64_t now)
{
    (void)now;
    d->flushed = true;
    d->out_blocked = false;
    for (int i = 0; i < d->cfg.nstreams; i++)
        if (d->st[i].mode == MODE_PLAIN)
            dlv__release_sent(d, &d->st[i], 0);
}

void dlv_output_blocked(dlv_t *d, bool blocked)
{
    d->out_blocked = blocked;
}

int64_t dlv_api_base(const dlv_t *d, int st, bool has_ack, uint64_t ack)
{
    const dstream_t *s = &d->st[st];
    int64_t base = 0;
    for (const gw_batch_t *b = s->head; b && b != s->cur; b = b->next) {
        base = b->gateway_ns;
        if (has_ack && b->seq == ack)
            break;
    }
    return base;
}

/* ---- public: liveness and timers ---------------------------------------------------------- */

void dlv_heard(dlv_t *d, int64_t now)
{
    d->last_rx = now;
    d->ping_out = false;
}

void dlv_ping_acked(dlv_t *d, int64_t now)
{
    dlv_heard(d, now);
    if (d->ping_at > d->ping_proof)
        d->ping_proof = d->ping_at;
}

/* I6: the node owes us something we wait for. */
static bool owed(const dlv_t *d)
{
    if (d->out_blocked || (d->state == DLV_RESYNC && !d->settings))
        return true;
    for (int i = 0; i < d->cfg.nstreams; i++) {
        const dstream_t *s = &d->st[i];
        if (s->open && (s->mode == MODE_UNKNOWN || (s->mode == MODE_ACKING && inflight(s))))
            return true;
    }
    return false;
}

static void liveness(dlv_t *d, int64_t now)
{
    if (d->ping_out) {
        if (now - d->ping_at >= d->cfg.ping_timeout_ns && !d->want_disconnect) {
            d->stats.ping_timeouts++;
            d->want_disconnect = "ping timeout";
            log_warn("API node does not answer: PING timeout", "node=%s silent_ms=%lld",
                     d->cfg.name, (long long)((now - d->last_rx) / 1000000));
        }
        return;
    }
    if (d->ping_interval && now - d->last_rx >= d->ping_interval && owed(d)) {
        d->ping_out = true;
        d->ping_at = now;
        d->stats.pings++;
        d->io.ping(d->io.ud);
    }
}

/* Streams without response headers for headers_timeout, from a node that answered a PING we
 * sent after the stream's request (so it has read the request: HTTP/2 keeps order; PINGs go
 * out while headers are owed): a plain gRPC server that sends headers only with its first
 * answer, if ever (I6). A node we do not hear from is not judged: its PING timeout ends the
 * session, and everything is replayed. */
static void headers_deadline(dlv_t *d, dstream_t *s, int64_t now)
{
    if (!s->open || s->mode != MODE_UNKNOWN || now - s->opened_at < d->cfg.headers_timeout_ns)
        return;
    if (d->ping_interval && d->ping_proof <= s->opened_at)
        return; /* no PING sent after the request was answered yet: it may still be on its way */
    s->mode = MODE_PLAIN;
    if (!d->plain_logged) {
        d->plain_logged = true;
        log_warn("API node sends no response headers: its streams count as without acks",
                 "node=%s timeout_ms=%lld", d->cfg.name,
                 (long long)(d->cfg.headers_timeout_ns / 1000000));
    }
    if (d->flushed)
        dlv__release_sent(d, s, 0);
}

void dlv_tick(dlv_t *d, int64_t now)
{
    d->now = now;
    dlv__renew_due(d, now);
    switch (d->state) {
    case DLV_CONNECTING:
        if (now >= d->connect_deadline && !d->want_disconnect)
            d->want_disconnect = "connect timeout";
        return;
    case DLV_RESYNC:
    case DLV_LIVE:
    case DLV_GOAWAY:
        liveness(d, now);
        break;
    default:
        return;
    }
    for (int i = 0; i < d->cfg.nstreams; i++) {
        dstream_t *s = &d->st[i];
        headers_deadline(d, s, now);
        if (d->state == DLV_LIVE && !s->open && s->reopen_at && now >= s->reopen_at)
            open_stream(d, s, now);
    }
}

static int64_t earliest(int64_t a, int64_t b)
{
    return !a ? b : !b ? a : a < b ? a : b;
}

int64_t dlv_next_timer(const dlv_t *d)
{
    int64_t t = !d->renew_pending ? 0
                : d->renew_last   ? d->renew_last + d->cfg.renew_interval_ns
                                  : 1; /* (at once) */
    switch (d->state) {
    case DLV_DOWN:
        return earliest(t, d->connect_at ? d->connect_at : 1);
    case DLV_CONNECTING:
        return earliest(t, d->connect_deadline);
    default:
        break;
    }
    if (d->ping_out)
        t = earliest(t, d->ping_at + d->cfg.ping_timeout_ns);
    else if (d->ping_interval && owed(d))
        t = earliest(t, d->last_rx + d->ping_interval);
    for (int i = 0; i < d->cfg.nstreams; i++) {
        const dstream_t *s = &d->st[i];
        if (s->open && s->mode == MODE_UNKNOWN &&
            s->opened_at + d->cfg.headers_timeout_ns > d->now) /* (past it: PINGs decide) */
            t = earliest(t, s->opened_at + d->cfg.headers_timeout_ns);
        if (d->state == DLV_LIVE && !s->open && s->reopen_at)
            t = earliest(t, s->reopen_at);
    }
    return t;
}

/* ---- public: client events ---------------------------------------------------------------- */

/* A Message, or a routed Open/Close (shared presence): numbered, kept and handed back. */
static void take_routed(dlv_t *d, dstream_t *s, gw_event_t *e)
{
    int k = dlv__thread_of(d, e->conn_id);
    if (k >= 0) /* numbered as the thread counts its pushes (msgroute.h marks) */
        e->tno = gw_seqtrack_next(&d->rt[k * d->cfg.nstreams + s->idx]);
    if (k >= 0 && gw_idmap_has(&d->hb_ids[k], e->conn_id)) {
        dlv__hb_add(d, e, s->idx); /* its thread has not re-sent the earlier ones yet */
        d->hb_more = true;
    } else if (dlv__evq_push(&s->pend, e) < 0) {
        dlv__lose_event(d, s->idx, e, -1, "out of memory queueing a message");
    } else {
        d->stats.queued += gw_event_size(e);
    }
}

void dlv_take(dlv_t *d, gw_event_t *e, int64_t now)
{
    dstream_t *s = &d->st[gw_route_stream(e->conn_id, d->cfg.nstreams)];
    bool session = d->state == DLV_RESYNC || d->state == DLV_LIVE;
    switch (e->type) {
    case GW_EV_RESYNC_DONE:
        if (d->state == DLV_RESYNC && (uint32_t)e->code == d->rs_gen && --d->rs_waiting == 0)
            resync_finish(d, now);
        gw_event_free(e);
        return;
    case GW_EV_REROUTED:
        dlv__hb_marker(d, dlv__thread_of(d, e->conn_id), (uint32_t)e->code);
        gw_event_free(e);
        return;
    case GW_EV_OPEN:
        if (e->code) { /* a resync Open (code = resync generation) */
            if (d->state != DLV_RESYNC || (uint32_t)e->code != d->rs_gen)
                gw_event_free(e);
            else if (dlv__evq_push(&s->rs, e) < 0)
                dlv__lose_event(d, s->idx, e, -1, "out of memory during presence resync");
            return;
        }
        __attribute__((fallthrough)); /* a live Open: as a Close */
    case GW_EV_CLOSE:
        if (e->routed) { /* shared presence: sent to this node alone, like a message */
            take_routed(d, s, e);
            return;
        }
        /* Without a session the node forgets this gateway's presence anyway, and the next
         * resync re-sends the live set (I2). */
        if (!session)
            gw_event_free(e);
        else if (dlv__evq_push(&s->pend, e) < 0)
            dlv__lose_event(d, s->idx, e, -1, "out of memory");
        else
            d->stats.queued += gw_event_size(e);
        return;
    default:
        take_routed(d, s, e);
        return;
    }
}

void dlv_flush_events(dlv_t *d, int64_t now)
{
    (void)now;
    if (d->hb_more) {
        d->hb_more = false;
        dlv__hb_emit(d);
    }
    if (d->state == DLV_LIVE) {
        for (int i = 0; i < d->cfg.nstreams; i++) {
            dstream_t *s = &d->st[i];
            bool had = s->cur != NULL;
            dlv__encode_pending(d, s);
            if (s->open && s->cur && !had)
                d->io.resume_stream(d->io.ud, s->idx);
        }
        return;
    }
    if ((d->state == DLV_DOWN || d->state == DLV_CONNECTING) && d->io.others_usable(d->io.ud))
        dlv__handback_pending(d); /* another node takes them (GOAWAY: at the session's end) */
}

bool dlv_full(const dlv_t *d)
{
    /* while resyncing the markers must be reached: they sit in the rings behind events */
    return d->state != DLV_RESYNC && d->stats.queued >= d->cfg.replay_max_bytes;
}

bool dlv_idle(const dlv_t *d)
{
    for (int i = 0; i < d->cfg.nstreams; i++) {
        const dstream_t *s = &d->st[i];
        if (s->pend.n || s->rs.n || s->cur)
            return false;
        if (s->head && !(s->mode == MODE_PLAIN && d->flushed))
            return false;
    }
    return true;
}

void dlv_resolved_take(dlv_t *d, void (*fn)(void *ud, int k, int st, uint32_t n), void *ud)
{
    for (int k = 0; k < d->cfg.nsvc; k++)
        for (int st = 0; st < d->cfg.nstreams; st++) {
            uint32_t n = gw_seqtrack_publish(&d->rt[k * d->cfg.nstreams + st]);
            if (n)
                fn(ud, k, st, n);
        }
}

