/* upstream.c: writer thread per API node (see upstream.h): epoll loop, TCP connect with
 * backoff, nghttp2 client session, --streams long-lived gRPC streams with replay of unacked
 * batches, presence resync, and Downstream commands routed to the service threads.
 * Every function runs on the writer thread unless its comment says otherwise. */
#include "upstream.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <time.h>

#include "arena.h"
#include "batch.h"
#include "buf.h"
#include "clock.h"
#include "config.h"
#include "conn_id.h"
#include "downstream.h"
#include "grpc_frame.h"
#include "gwm.h"
#include "log.h"
#include "metrics.h"
#include "recycle.h"
#include "route.h"
#include "upsock.h"
#include "wsgw.pb-c.h"

#define RING_BURST 256
#define READ_CHUNK 65536
#define WBUF_HIGH 65536            /* gather nghttp2 output up to this before send(2) */
#define STREAM_WINDOW (4 << 20)    /* per-stream receive window */
#define CONN_WINDOW (64 << 20)     /* connection receive window */
#define MAX_DOWNSTREAM (64 << 20)  /* largest Downstream message accepted */
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000

typedef enum { UP_IDLE, UP_CONNECTING, UP_TLS, UP_CONNECTED } up_state_t;

typedef struct up_stream {
    gw_up_t *up;
    int idx;
    int32_t id;                /* nghttp2 stream id, 0 when not open */
    bool acking;               /* the server answered x-wsgw-ack: 1 */
    bool headers;              /* response headers seen */
    bool ending;               /* GOAWAY seen: end the request once everything queued is out */
    bool healthy;              /* the node accepted it (response headers, not a refusal) */
    int fails;                 /* consecutive failed opens (reopen backoff) */
    uint64_t next_seq;
    gw_batch_t *head, *tail;   /* every batch not yet released, oldest first */
    gw_batch_t *cur;           /* first batch not fully handed to nghttp2; NULL = none */
    size_t cur_off;
    gw_event_t **pend;         /* events waiting for the next batch */
    size_t npend, cap_pend;
    gw_event_t **rs;           /* resync Opens for this stream (while resyncing) */
    size_t nrs, cap_rs;
    size_t pend_bytes;
    grpc_dec_t dec;
    size_t unconsumed;         /* received bytes not yet given back to flow control */
    int64_t reopen_at;         /* monotonic ns; 0 = none scheduled */
    int grpc_status;
} up_stream_t;

struct gw_up_priv {
    int epfd;
    gw_sock_t sock;            /* TCP (+ TLS) to the node; sock.fd < 0 when none */
    bool ep_out;               /* EPOLLOUT is in sock.fd's epoll registration */
    SSL_CTX *tls;              /* --upstream-tls client context, or NULL */
    up_state_t state;
    bool goaway;
    bool session_ready;        /* the node's SETTINGS arrived on this connection */
    nghttp2_session *sess;
    up_stream_t *streams;
    int nstreams;
    buf_t wbuf;                /* nghttp2 output not yet accepted by the socket */
    uint8_t *rbuf;
    int64_t reconnect_at;      /* monotonic ns; 0 = none */
    int attempt;
    /* Presence resync after (re)connecting: the service threads send an Open for every live
     * connection (GW_CMD_RESYNC); streams open once every thread's marker arrived, with those
     * Opens ahead of everything else queued. No per-connection state lives here. */
    bool resyncing;
    uint32_t rs_gen;           /* generation of the resync in progress (stale ones ignored) */
    int rs_waiting;            /* service threads whose marker has not arrived */
    size_t queued;             /* bytes in batches and pending events, all streams */
    bool overflowing;
    uint64_t touched;          /* service threads to wake (bit per thread, < 64) */
    bool touched_all;
    int m_connected, m_reconnects;
    uint32_t *dacc;            /* [nsvc * nstreams] messages resolved since the last publish */
    bool dirty;                /* dacc holds something to publish */
    gw_event_t **hb_head, **hb_tail; /* [nsvc] Message events to hand back (msgroute.h) */
    bool hb_any;
    arena_t arena;             /* protobuf-c allocations of the Downstream being handled */
    int64_t api_ns[64];        /* api_ns of the Sends in the Downstream being handled */
    int napi;
    uint64_t connects;         /* sessions established so far */
    uint32_t seen_gen;         /* addr_gen followed */
};

static void up_disconnect(gw_up_t *u, const char *why);
static void emit_cmd(void *ud, int k, gw_cmd_t *cmd);
static void follow_addr(gw_up_t *u);

/* ---- helpers -------------------------------------------------------------------------- */

static int64_t now_ns(void)
{
    return clock_mono_ns();
}

static uint32_t rnd(void)
{
    static _Thread_local uint64_t x;
    if (!x)
        x = (uint64_t)clock_mono_ns() | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return (uint32_t)x;
}

static void schedule_reconnect(gw_up_t *u)
{
    gw_up_priv_t *p = u->priv;
    int64_t base = BACKOFF_MIN_MS;
    for (int i = 0; i < p->attempt && base < BACKOFF_MAX_MS; i++)
        base *= 2;
    if (base > BACKOFF_MAX_MS)
        base = BACKOFF_MAX_MS;
    /* jitter: uniformly in [base/2, base] — the first retry comes within 100 ms */
    int64_t ms = base / 2 + (int64_t)(rnd() % (uint32_t)(base / 2 + 1));
    p->reconnect_at = now_ns() + ms * 1000000;
    p->attempt++;
}

/* ---- resolved-message counts (msgroute.h) ----------------------------------------------- */

/* n Message events from service thread k on stream st are resolved (acked, delivered without
 * acks, handed back, or lost and counted). Published by publish_done(). */
static void add_done(gw_up_t *u, int k, int st, uint32_t n)
{
    gw_up_priv_t *p = u->priv;
    if (k < 0 || k >= u->gw->nsvc || !n)
        return;
    p->dacc[k * p->nstreams + st] += n;
    p->dirty = true;
}

static void add_done_event(gw_up_t *u, const gw_event_t *e, int st)
{
    if (e->type == GW_EV_MESSAGE)
        add_done(u, (int)conn_id_thread(e->conn_id), st, 1);
}

/* Stores the counts where the service threads read them. Only once every handback command is
 * in a ring (a thread that sees the count must find the handback when it drains). */
static void publish_done(gw_up_t *u)
{
    gw_up_priv_t *p = u->priv;
    if (!p->dirty || p->overflowing)
        return;
    for (int k = 0; k < u->gw->nsvc; k++) {
        gw_link_t *l = u->links[k];
        bool any = false;
        for (int st = 0; st < p->nstreams; st++) {
            uint32_t n = p->dacc[k * p->nstreams + st];
            if (!n)
                continue;
            _Atomic uint32_t *d = &l->done[st];
            atomic_store_explicit(d, atomic_load_explicit(d, memory_order_relaxed) + n,
                                  memory_order_release);
            p->dacc[k * p->nstreams + st] = 0;
            any = true;
        }
        if (any && atomic_load(&l->want_done))
            gw_link_wake_svc(l);
    }
    p->dirty = false;
}

/* ---- batches and streams -------------------------------------------------------------- */

static void batch_release(gw_up_t *u, up_stream_t *st, gw_batch_t *b)
{
    u->priv->queued -= b->ev_len; /* ev_len: stable across renumbering */
    for (int k = 0; b->tmsgs && k < u->gw->nsvc; k++)
        add_done(u, k, st->idx, b->tmsgs[k]);
    gw_batch_free(b);
}

/* Frees released batches at the head: acked ones (acking streams), or, for streams without
 * acks, every batch fully handed over once the socket has taken all output (`flushed`). */
static void release_head(gw_up_t *u, up_stream_t *st, uint64_t acked, bool flushed)
{
    while (st->head && st->head != st->cur) {
        gw_batch_t *b = st->head;
        bool done = st->acking ? (acked && b->seq <= acked) : (st->headers && flushed);
        if (!done)
            break;
        st->head = b->next;
        if (!st->head)
            st->tail = NULL;
        batch_release(u, st, b);
    }
}

/* Frees every batch before cur (all handed over), whatever the acks. */
static void release_handed(gw_up_t *u, up_stream_t *st)
{
    while (st->head && st->head != st->cur) {
        gw_batch_t *b = st->head;
        st->head = b->next;
        batch_release(u, st, b);
    }
    if (!st->head)
        st->tail = NULL;
}

static void append_batch(up_stream_t *st, gw_batch_t *b)
{
    b->next = NULL;
    gw_batch_set_seq(b, st->next_seq++);
    if (st->tail)
        st->tail->next = b;
    else
        st->head = b;
    st->tail = b;
    if (!st->cur) {
        st->cur = b;
        st->cur_off = 0;
    }
}

/* Encodes evs into batches on st. Returns the number of events that did not fit (memory). */
static size_t encode_into(gw_up_t *u, up_stream_t *st, gw_event_t **evs, size_t n)
{
    size_t i = 0;
    int64_t now = now_ns();
    while (i < n) {
        size_t j = i, bytes = 0;
        while (j < n && j - i < (size_t)gw_cfg.batch_max_events &&
               (j == i || bytes + gw_event_size(evs[j]) <= (size_t)gw_cfg.batch_max_bytes))
            bytes += gw_event_size(evs[j++]);
        gw_batch_t *b = gw_batch_encode(evs + i, j - i, gw_cfg.gateway_id);
        if (!b) {
            log_rl_error("out of memory encoding a batch", "node=%s events=%zu", u->name, j - i);
            return n - i;
        }
        for (size_t k = i; k < j; k++) {
            if (evs[k]->type != GW_EV_MESSAGE)
                continue;
            metrics_observe(gwm.stage_ingress, (uint64_t)(now - evs[k]->t_read));
            unsigned th = conn_id_thread(evs[k]->conn_id);
            if (!b->tmsgs)
                b->tmsgs = calloc((size_t)u->gw->nsvc, sizeof *b->tmsgs);
            if (b->tmsgs && th < (unsigned)u->gw->nsvc)
                b->tmsgs[th]++;
            /* (without tmsgs the counts are not reported: a connection then merely stays
             * on this node longer) */
        }
        u->priv->queued += b->ev_len;
        append_batch(st, b);
        i = j;
    }
    return 0;
}

static void free_pending_event(gw_event_t *e)
{
    gw_event_free(e);
}

/* Turns every stream's pending events into batches. */
static void encode_pending(gw_up_t *u)
{
    gw_up_priv_t *p = u->priv;
    for (int i = 0; i < p->nstreams; i++) {
        up_stream_t *st = &p->streams[i];
        if (!st->npend)
            continue;
        size_t failed = encode_into(u, st, st->pend, st->npend);
        size_t lost_msgs = 0;
        for (size_t k = st->npend - failed; k < st->npend; k++)
            if (st->pend[k]->type == GW_EV_MESSAGE) {
                lost_msgs++;
                add_done_event(u, st->pend[k], st->idx);
            }
        if (lost_msgs) /* counted, never silent: out of memory is the one way to lose them */
            metrics_add(gwm.lost, lost_msgs);
        for (size_t k = 0; k < st->npend; k++)
            free_pending_event(st->pend[k]);
        p->queued -= st->pend_bytes;
        st->npend = 0;
        st->pend_bytes = 0;
        if (st->id && st->cur)
            nghttp2_session_resume_data(p->sess, st->id);
    }
}

static int pend_push(gw_up_t *u, up_stream_t *st, gw_event_t *e)
{
    if (st->npend == st->cap_pend) {
        size_t ncap = st->cap_pend ? st->cap_pend * 2 : 256;
        gw_event_t **np = realloc(st->pend, ncap * sizeof *np);
        if (!np)
            return -1;
        st->pend = np;
        st->cap_pend = ncap;
    }
    st->pend[st->npend++] = e;
    size_t sz = gw_event_size(e);
    st->pend_bytes += sz;
    u->priv->queued += sz;
    return 0;
}

static int ev_push(gw_event_t ***arr, size_t *n, size_t *cap, gw_event_t *e)
{
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 256;
        gw_event_t **na = realloc(*arr, ncap * sizeof *na);
        if (!na)
            return -1;
        *arr = na;
        *cap = ncap;
    }
    (*arr)[(*n)++] = e;
    return 0;
}

static void resync_finish(gw_up_t *u);

/* One event from a ring. Takes e. */
static void take_event(gw_up_t *u, gw_event_t *e)
{
    gw_up_priv_t *p = u->priv;
    up_stream_t *st = &p->streams[gw_route_stream(e->conn_id, p->nstreams)];
    bool live = p->state == UP_CONNECTED;
    switch (e->type) {
    case GW_EV_OPEN:
        if (e->code) { /* a resync Open (code = resync generation) */
            if (p->resyncing && (uint32_t)e->code == p->rs_gen &&
                ev_push(&st->rs, &st->nrs, &st->cap_rs, e) == 0)
                return;
            if (p->resyncing && (uint32_t)e->code == p->rs_gen)
                log_rl_error("out of memory during presence resync", "node=%s", u->name);
            gw_event_free(e);
            return;
        }
        /* While disconnected nothing is sent: the resync on connect covers it. */
        if (!live || pend_push(u, st, e) < 0)
            gw_event_free(e);
        return;
    case GW_EV_RESYNC_DONE:
        if (p->resyncing && (uint32_t)e->code == p->rs_gen && --p->rs_waiting == 0)
            resync_finish(u);
        gw_event_free(e);
        return;
    case GW_EV_CLOSE:
        /* While disconnected the node forgets this gateway's presence anyway. */
        if (!live || pend_push(u, st, e) < 0)
            gw_event_free(e);
        return;
    default:
        if (pend_push(u, st, e) < 0) {
            log_rl_error("out of memory queueing a message", "node=%s conn_id=%llu", u->name,
                         (unsigned long long)e->conn_id);
            metrics_inc(gwm.lost);
            add_done_event(u, e, st->idx);
            gw_event_free(e);
        }
        return;
    }
}

/* Pops events from every service thread while the replay budget allows. */
static void drain_rings(gw_up_t *u)
{
    gw_up_priv_t *p = u->priv;
    gw_t *g = u->gw;
    void *items[RING_BURST];
    bool more = true;
    while (more && p->queued < (size_t)gw_cfg.replay_max_bytes) {
        more = false;
        for (int k = 0; k < g->nsvc; k++) {
            /* (a service thread waiting for room in this ring is woken by the pop) */
            size_t n = gw_handoff_pop(&u->links[k]->up, items, RING_BURST);
            for (size_t i = 0; i < n; i++)
                take_event(u, items[i]);
            if (n == RING_BURST)
                more = true;
        }
    }
    encode_pending(u);
}

/* ---- handback (msgroute.h) ----------------------------------------------------------------- */

static bool other_node_up(gw_up_t *u)
{
    for (int i = 0; i < u->gw->nup; i++)
        if (i != u->idx && gw_node_up(u->gw, i))
            return true;
    return false;
}

/* Queues a Message event for its service thread (takes e); `count` adds it to the resolved
 * counts (batches count theirs when released). */
static void hb_add(gw_up_t *u, gw_event_t *e, int st, bool count)
{
    gw_up_priv_t *p = u->priv;
    unsigned k = conn_id_thread(e->conn_id);
    if (k >= (unsigned)u->gw->nsvc) { /* not one of ours: cannot happen for our own events */
        metrics_inc(gwm.lost);
        gw_event_free(e);
        return;
    }
    if (count)
        add_done(u, (int)k, st, 1);
    e->next = NULL;
    if (p->hb_tail[k])
        p->hb_tail[k]->next = e;
    else
        p->hb_head[k] = e;
    p->hb_tail[k] = e;
    p->hb_any = true;
}

/* The Message events of an encoded batch, back as events. */
static void hb_batch(gw_up_t *u, up_stream_t *st, gw_batch_t *b)
{
    if (!b->nmsgs)
        return;
    Wsgw__V1__Upstream *up = wsgw__v1__upstream__unpack(NULL, b->wire_len - GRPC_FRAME_HDR_LEN,
                                                        b->buf + GRPC_FRAME_HDR_LEN);
    size_t got = 0;
    int64_t now = now_ns();
    for (size_t i = 0; up && i < up->n_events; i++) {
        const Wsgw__V1__Event *ev = up->events[i];
        if (ev->kind_case != WSGW__V1__EVENT__KIND_MESSAGE)
            continue;
        const char *user = ev->user_id ? ev->user_id : "";
        gw_event_t *e = gw_event_new(GW_EV_MESSAGE, ev->conn_id, user, strlen(user),
                                     ev->message->payload.data, ev->message->payload.len, NULL,
                                     0, NULL, 0);
        if (!e)
            continue;
        e->binary = ev->message->binary;
        e->seq = ev->message->seq;
        e->gateway_ns = ev->gateway_ns;
        e->t_read = now;
        hb_add(u, e, st->idx, false);
        got++;
    }
    if (up)
        wsgw__v1__upstream__free_unpacked(up, NULL);
    if (got < b->nmsgs) {
        metrics_add(gwm.lost, b->nmsgs - got);
        log_rl_error("messages lost handing back a batch (memory)", "node=%s lost=%zu", u->name,
                     (size_t)(b->nmsgs - got));
    }
}

/* Hands every queued Message back to its service thread, which re-sends it to a connected node
 * ahead of that connection's newer messages. Only while this node is down and another is up. */
static void handback_all(gw_up_t *u)
{
    gw_up_priv_t *p = u->priv;
    size_t n = 0;
    for (int i = 0; i < p->nstreams; i++) {
        up_stream_t *st = &p->streams[i];
        while (st->head) {
            gw_batch_t *b = st->head;
            st->head = b->next;
            n += b->nmsgs;
            hb_batch(u, st, b);
            batch_release(u, st, b);
        }
        st->tail = st->cur = NULL;
        st->cur_off = 0;
        for (size_t k = 0; k < st->npend; k++) {
            gw_event_t *e = st->pend[k];
            if (e->type == GW_EV_MESSAGE) {
                hb_add(u, e, st->idx, true);
                n++;
            } else {
                gw_event_free(e); /* Opens and Closes: the next connection resyncs */
            }
        }
        p->queued -= st->pend_bytes;
        st->npend = 0;
        st->pend_bytes = 0;
    }
    for (int k = 0; k < u->gw->nsvc; k++) {
        if (!p->hb_head[k])
            continue;
        gw_cmd_t *cmd = gw_cmd_new(GW_CMD_REROUTE, NULL, 0, NULL, 0, NULL, NULL, 0);
        if (!cmd) {
            size_t lost = 0;
            while (p->hb_head[k]) {
                gw_event_t *e = p->hb_head[k];
                p->hb_head[k] = e->next;
                gw_event_free(e);
                lost++;
            }
            metrics_add(gwm.lost, lost);
            log_rl_error("messages lost handing back (memory)", "node=%s lost=%zu", u->name, lost);
        } else {
            cmd->events = p->hb_head[k];
            p->hb_head[k] = NULL;
            emit_cmd(u, k, cmd);
        }
        p->hb_tail[k] = NULL;
    }
    p->hb_any = false;
    if (n)
        log_info("messages handed back for another node", "node=%s messages=%zu", u->name, n);
}

/* Resync: the Opens the service threads sent for this stream go ahead of everything else
 * queued on it (the node dropped this gateway's presence when its streams went). */
static void resync_splice(gw_up_t *u, up_stream_t *st)
{
    /* Without acks, what the old stream handed over counts as delivered (as in
     * stream_rewind); everything from cur on has not been sent on any stream yet. */
    if (!st->acking)
        release_handed(u, st);
    gw_batch_t *old_head = st->head, *old_tail = st->tail;
    st->head = st->tail = st->cur = NULL;
    size_t failed = encode_into(u, st, st->rs, st->nrs);
    if (failed)
        log_rl_error("out of memory during presence resync", "node=%s lost_opens=%zu", u->name,
                     failed);
    if (st->tail) {
        st->tail->next = old_head;
        if (old_tail)
            st->tail = old_tail;
    } else {
        st->head = old_head;
        st->tail = old_tail;
    }
    /* The new stream starts from the oldest batch: the Opens, then whatever was queued
     * before the resync (with no Opens, cur must not stay NULL: stream_rewind would take
     * every queued batch for handed over and free it unsent). */
    st->cur = st->head;
    st->cur_off = 0;
    for (size_t i = 0; i < st->nrs; i++)
        gw_event_free(st->rs[i]);
    st->nrs = 0;
}

static int open_stream(gw_up_t *u, up_stream_t *st);

/* Every service thread has sent its Opens: put them first on each stream and open streams. */
static void resync_finish(gw_up_t *u)
{
    gw_up_priv_t *p = u->priv;
    size_t n = 0;
    encode_pending(u); /* what came before the markers queues behind the Opens */
    for (int i = 0; i < p->nstreams; i++) {
        n += p->streams[i].nrs;
        resync_splice(u, &p->streams[i]);
    }
    p->resyncing = false;
    log_info("presence resync", "node=%s opens=%zu", u->name, n);
    for (int i = 0; i < p->nstreams; i++)
        open_stream(u, &p->streams[i]);
}

static void resync_drop(gw_up_t *u)
{
    gw_up_priv_t *p = u->priv;
    for (int i = 0; i < p->nstreams; i++) {
        up_stream_t *st = &p->streams[i];
        for (size_t k = 0; k < st->nrs; k++)
            gw_event_free(st->rs[k]);
        st->nrs = 0;
    }
    p->resyncing = false;
}

/* Asks every service thread for the Opens of its live connections. */
static void resync_begin(gw_up_t *u)
{
    gw_up_priv_t *p = u->priv;
    resync_drop(u);
    if (++p->rs_gen == 0 || p->rs_gen > INT32_MAX)
        p->rs_gen = 1;
    p->resyncing = true;
    p->rs_waiting = u->gw->nsvc;
    for (int k = 0; k < u->gw->nsvc; k++) {
        gw_cmd_t *c = gw_cmd_new(GW_CMD_RESYNC, NULL, 0, NULL, 0, NULL, NULL, 0);
        if (!c) {
            log_error("out of memory asking for a presence resync", "node=%s", u->name);
            p->rs_waiting--;
            continue;
        }
        c->code = (int32_t)p->rs_gen;
        emit_cmd(u, k, c);
    }
    if (p->rs_waiting == 0)
        resync_finish(u);
}

/* Prepares a stream for a new HTTP/2 stream: resync, renumber, restart from the oldest. */
static void stream_rewind(gw_up_t *u, up_stream_t *st)
{
    /* Without acks, batches handed over on the old stream count as delivered. */
    if (!st->acking)
        release_handed(u, st);
    st->next_seq = 1;
    for (gw_batch_t *b = st->head; b; b = b->next)
        gw_batch_set_seq(b, st->next_seq++);
    st->cur = st->head;
    st->cur_off = 0;
    st->ending = false;
    st->acking = false;
    st->headers = false;
    st->grpc_status = -1;
    st->unconsumed = 0;
    grpc_dec_free(&st->dec);
    grpc_dec_init(&st->dec, MAX_DOWNSTREAM);
}

static ssize_t on_read_data(nghttp2_session *s, int32_t sid, uint8_t *out, size_t length,
                            uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    (void)s;
    (void)sid;
    (void)flags;
    (void)ud;
    up_stream_t *st = src->ptr;
    size_t n = 0;
    while (n < length && st->cur) {
        gw_batch_t *b = st->cur;
        size_t take = b->wire_len - st->cur_off;
        if (take > length - n)
            take = length - n;
        memcpy(out + n, b->buf + st->cur_off, take);
        n += take;
        st->cur_off += take;
        if (st->cur_off == b->wire_len) {
            st->cur = b->next;
            st->cur_off = 0;
            metrics_inc(gwm.batches);
        }
    }
    if (n == 0) {
        if (st->ending) {
            /* the node is going away: half-close so it can answer the rest and finish; what
             * is queued later waits for the next connection */
            *flags |= NGHTTP2_DATA_FLAG_EOF;
            return 0;
        }
        return NGHTTP2_ERR_DEFERRED; /* long-lived: resumed when a batch is queued */
    }
    return (ssize_t)n;
}

static int open_stream(gw_up_t *u, up_stream_t *st)
{
    gw_up_priv_t *p = u->priv;
    char authority[320], bearer[1100];
    snprintf(authority, sizeof authority, "%s:%s", u->host, u->port);
    snprintf(bearer, sizeof bearer, "Bearer %s", gw_cfg.gateway_token);
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
        NV("authorization", bearer),
    };
#undef NV
    size_t nhdrs = sizeof hdrs / sizeof hdrs[0] - (*gw_cfg.gateway_token ? 0 : 1);
    stream_rewind(u, st);
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = on_read_data};
    int32_t id = nghttp2_submit_request(p->sess, NULL, hdrs, nhdrs, &prd, st);
    if (id < 0) {
        log_error("cannot open stream", "node=%s stream=%d err=%s", u->name, st->idx,
                  nghttp2_strerror(id));
        st->reopen_at = now_ns() + 500 * 1000000LL;
        return -1;
    }
    st->id = id;
    st->reopen_at = 0;
    return 0;
}

/* ---- commands to service threads ------------------------------------------------------ */

static void mark_touched(gw_up_priv_t *p, int k)
{
    if (k < 64)
        p->touched |= 1ULL << k;
    else
        p->touched_all = true;
}

/* sink->emit: hands cmd to service thread k (ring, or overflow when full). */
static void emit_cmd(void *ud, int k, gw_cmd_t *cmd)
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

static void on_api_ns(void *ud, int64_t api_ns)
{
    gw_up_t *u = ud;
    gw_up_priv_t *p = u->priv;
    if (p->napi < (int)(sizeof p->api_ns / sizeof p->api_ns[0]))
        p->api_ns[p->napi++] = api_ns;
}

/* api stage = api_ns - gateway_ns of the batch these commands answer: the acked one, or the
 * newest handed over when the API does not ack. Wall clocks of two hosts: clamped at 0. */
static void observe_api_stage(gw_up_t *u, up_stream_t *st, const gw_ds_result_t *res)
{
    gw_up_priv_t *p = u->priv;
    int64_t base = 0;
    for (gw_batch_t *b = st->head; b && b != st->cur; b = b->next) {
        base = b->gateway_ns;
        if (res->has_ack && b->seq == res->ack)
            break;
    }
    for (int i = 0; base && i < p->napi; i++)
        metrics_observe(gwm.stage_api, p->api_ns[i] > base ? (uint64_t)(p->api_ns[i] - base) : 0);
    p->napi = 0;
}

/* Gives received bytes back to HTTP/2 flow control once the commands have a place to go. */
static void consume(gw_up_t *u, up_stream_t *st)
{
    gw_up_priv_t *p = u->priv;
    if (st->unconsumed && st->id && !p->overflowing) {
        nghttp2_session_consume(p->sess, st->id, st->unconsumed);
        st->unconsumed = 0;
    }
}

static void flush_cmd_overflow(gw_up_t *u)
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
            consume(u, &p->streams[i]);
}

static void wake_touched(gw_up_t *u)
{
    gw_up_priv_t *p = u->priv;
    for (int k = 0; k < u->gw->nsvc; k++)
        if (p->touched_all || (k < 64 && (p->touched & (1ULL << k))))
            gw_link_wake_svc(u->links[k]);
    p->touched = 0;
    p->touched_all = false;
}

/* One complete Downstream message on st. */
static int on_downstream(void *ud, const uint8_t *msg, size_t len)
{
    up_stream_t *st = ud;
    gw_up_t *u = st->up;
    gw_up_priv_t *p = u->priv;
    gw_ds_sink_t sink = {.nsvc = u->gw->nsvc, .prefix = u->gw->prefix, .t_recv = now_ns(),
                         .emit = emit_cmd, .api_ns = on_api_ns, .ud = u, .alloc = &p->arena.pa};
    gw_ds_result_t res;
    p->napi = 0;
    int hrv = gw_downstream_handle(msg, len, &sink, &res);
    arena_reset(&p->arena); /* the commands copied what they keep */
    if (hrv < 0) {
        metrics_inc(gwm.bad_downstream);
        log_rl_error("undecodable Downstream from API node", "node=%s stream=%d len=%zu",
                     u->name, st->idx, len);
        return -1;
    }
    if (res.undeliverable)
        metrics_add(gwm.undeliverable, res.undeliverable);
    if (res.nomem)
        log_rl_error("out of memory routing commands", "node=%s lost=%zu", u->name, res.nomem);
    observe_api_stage(u, st, &res);
    if (res.has_ack) {
        if (!st->acking)
            st->acking = true; /* an ack without the header still means what it says */
        release_head(u, st, res.ack, false);
    }
    return 0;
}

/* ---- nghttp2 callbacks ---------------------------------------------------------------- */

static up_stream_t *stream_of(nghttp2_session *s, int32_t id)
{
    return nghttp2_session_get_stream_user_data(s, id);
}

static int on_header(nghttp2_session *s, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *ud)
{
    (void)flags;
    (void)ud;
    up_stream_t *st = stream_of(s, frame->hd.stream_id);
    if (!st || frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    if (namelen == 10 && memcmp(name, "x-wsgw-ack", 10) == 0 && valuelen == 1 && value[0] == '1')
        st->acking = true;
    else if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0)
        st->grpc_status = atoi((const char *)value);
    else if (namelen == 12 && memcmp(name, "grpc-message", 12) == 0) {
        char m[256], q[300];
        size_t n = valuelen < sizeof m - 1 ? valuelen : sizeof m - 1;
        memcpy(m, value, n);
        m[n] = 0;
        log_rl_warn("API stream error message", "node=%s stream=%d grpc_message=%s",
                    st->up->name, st->idx, log_quote(q, sizeof q, m));
    }
    return 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *frame, void *ud)
{
    gw_up_t *u = ud;
    gw_up_priv_t *p = u->priv;
    switch (frame->hd.type) {
    case NGHTTP2_SETTINGS:
        /* connected once the node speaks HTTP/2 (some gRPC servers send response headers
         * only with their first message); it becomes unusable again if it refuses every
         * stream (on_stream_close) */
        if (!(frame->hd.flags & NGHTTP2_FLAG_ACK) && !atomic_load(&u->node->connected) && !p->goaway &&
            !p->session_ready) {
            p->session_ready = true;
            atomic_store(&u->node->connected, 1);
            metrics_gauge_set(p->m_connected, 1);
            if (p->connects++)
                metrics_inc(p->m_reconnects);
            p->attempt = 0;
            log_info("API node connected", "node=%s streams=%d", u->name, p->nstreams);
        }
        break;
    case NGHTTP2_HEADERS: {
        up_stream_t *st = stream_of(s, frame->hd.stream_id);
        if (st && frame->headers.cat == NGHTTP2_HCAT_RESPONSE) {
            st->headers = true;
            /* a trailers-only answer (grpc-status already here) is a refusal, not a stream */
            st->healthy = st->grpc_status < 0 && !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM);
            if (st->healthy) {
                st->fails = 0;
                if (!atomic_load(&u->node->connected) && !p->goaway) {
                    atomic_store(&u->node->connected, 1);
                    metrics_gauge_set(p->m_connected, 1);
                    log_info("API node usable again", "node=%s", u->name);
                }
            }
        }
        break;
    }
    case NGHTTP2_GOAWAY:
        p->goaway = true;
        /* route new messages elsewhere while this node finishes */
        atomic_store(&u->node->connected, 0);
        metrics_gauge_set(p->m_connected, 0);
        for (int i = 0; i < p->nstreams; i++) {
            up_stream_t *st = &p->streams[i];
            st->ending = true;
            if (st->id)
                nghttp2_session_resume_data(s, st->id);
        }
        log_info("API node sent GOAWAY", "node=%s error=%u", u->name,
                 frame->goaway.error_code);
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
    up_stream_t *st = stream_of(s, id);
    if (!st) {
        nghttp2_session_consume(s, id, len);
        return 0;
    }
    st->unconsumed += len;
    int rv = grpc_dec_feed(&st->dec, data, len, on_downstream, st);
    if (rv < 0) {
        if (rv != -1) { /* framing error (on_downstream logs its own) */
            metrics_inc(gwm.bad_downstream);
            log_rl_error("bad gRPC framing from API node", "node=%s stream=%d err=%s", u->name,
                         st->idx, grpc_frame_strerror(rv));
        }
        nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
    }
    consume(u, st);
    return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t error_code, void *ud)
{
    gw_up_t *u = ud;
    up_stream_t *st = stream_of(s, id);
    if (!st || st->id != id)
        return 0;
    gw_up_priv_t *p = u->priv;
    log_rl_warn("API stream closed", "node=%s stream=%d grpc_status=%d h2_error=%u", u->name,
                st->idx, st->grpc_status, error_code);
    st->id = 0;
    st->healthy = false;
    bool any_open = false;
    for (int i = 0; i < p->nstreams; i++)
        any_open |= p->streams[i].id != 0;
    if (!any_open && st->grpc_status > 0 && atomic_exchange(&u->node->connected, 0)) {
        metrics_gauge_set(p->m_connected, 0);
        log_warn("API node unusable: it refuses every stream", "node=%s grpc_status=%d",
                 u->name, st->grpc_status);
    }
    if (!p->goaway) {
        /* exponential backoff per stream: a node that keeps refusing is not hammered */
        int64_t base = BACKOFF_MIN_MS / 2;
        for (int i = 0; i < st->fails && base < BACKOFF_MAX_MS; i++)
            base *= 2;
        if (base > BACKOFF_MAX_MS)
            base = BACKOFF_MAX_MS;
        st->fails++;
        st->reopen_at = now_ns() + (base / 2 + (int64_t)(rnd() % (uint32_t)(base / 2 + 1))) *
                                       1000000LL;
    }
    return 0;
}

/* ---- socket I/O ----------------------------------------------------------------------- */

/* Writer thread. Calls epoll_ctl only when EPOLLOUT changes: flush_out runs several times
 * per wake, and an unconditional MOD cost 0.6 syscalls per message in open-loop load. */
static void set_epoll(gw_up_t *u, bool want_out)
{
    gw_up_priv_t *p = u->priv;
    if (p->ep_out == want_out)
        return;
    p->ep_out = want_out;
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.u32 = 1};
    epoll_ctl(p->epfd, EPOLL_CTL_MOD, p->sock.fd, &ev);
}

/* Sends what nghttp2 has to send. Returns 0 or -1 (connection broken). */
static int flush_out(gw_up_t *u)
{
    gw_up_priv_t *p = u->priv;
    if (p->state != UP_CONNECTED)
        return 0;
    for (;;) {
        /* gather frames first: one send(2) for many small frames */
        while (p->wbuf.len < WBUF_HIGH) {
            const uint8_t *data;
            ssize_t n = nghttp2_session_mem_send(p->sess, &data);
            if (n < 0) {
                log_error("nghttp2 send failed", "node=%s err=%s", u->name,
                          nghttp2_strerror((int)n));
                return -1;
            }
            if (n == 0)
                break;
            if (buf_append(&p->wbuf, data, (size_t)n) < 0)
                return -1;
        }
        if (!p->wbuf.len)
            break;
        ssize_t w = gw_sock_send(&p->sock, p->wbuf.data, p->wbuf.len);
        if (w == GW_SOCK_AGAIN) {
            set_epoll(u, true); /* (TLS may want a read first: EPOLLIN is always on) */
            return 0;
        }
        if (w < 0) {
            log_warn("send to API node failed", "node=%s err=%s", u->name, p->sock.err);
            return -1;
        }
        buf_consume(&p->wbuf, (size_t)w);
        if (p->wbuf.len) {
            set_epoll(u, true);
            return 0;
        }
    }
    set_epoll(u, false);
    /* Everything reached the socket: streams without acks may forget their batches. */
    for (int i = 0; i < p->nstreams; i++)
        release_head(u, &p->streams[i], 0, true);
    if (!nghttp2_session_want_read(p->sess) && !nghttp2_session_want_write(p->sess))
        return -1; /* session over (GOAWAY done) */
    return 0;
}

static int read_in(gw_up_t *u)
{
    gw_up_priv_t *p = u->priv;
    for (int rounds = 0; rounds < 16; rounds++) {
        ssize_t n = gw_sock_recv(&p->sock, p->rbuf, READ_CHUNK);
        if (n == 0) {
            log_warn("API node closed the connection", "node=%s", u->name);
            return -1;
        }
        if (n == GW_SOCK_AGAIN) {
            if (p->sock.need_write)
                set_epoll(u, true);
            return 0;
        }
        if (n < 0) {
            log_warn("read from API node failed", "node=%s err=%s", u->name, p->sock.err);
            return -1;
        }
        ssize_t rv = nghttp2_session_mem_recv(p->sess, p->rbuf, (size_t)n);
        if (rv < 0) {
            log_error("HTTP/2 error from API node", "node=%s err=%s", u->name,
                      nghttp2_strerror((int)rv));
            metrics_inc(gwm.bad_downstream);
            return -1;
        }
        if (n < READ_CHUNK)
            return 0;
    }
    return 0;
}

static int session_start(gw_up_t *u)
{
    gw_up_priv_t *p = u->priv;
    nghttp2_session_callbacks *cbs;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_option *opt;
    nghttp2_option_new(&opt);
    /* Backpressure toward the API: bytes are given back only once the service threads
     * have room for the commands (FIELD-NOTES). */
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
    p->goaway = false;
    p->session_ready = false;
    p->state = UP_CONNECTED;
    resync_begin(u); /* streams open once the Opens of live connections are in */
    return 0;
}

static void up_disconnect(gw_up_t *u, const char *why)
{
    gw_up_priv_t *p = u->priv;
    if (p->sock.fd >= 0) {
        epoll_ctl(p->epfd, EPOLL_CTL_DEL, p->sock.fd, NULL);
        gw_sock_close(&p->sock);
    }
    if (p->sess) {
        nghttp2_session_del(p->sess);
        p->sess = NULL;
    }
    bool was = atomic_exchange(&u->node->connected, 0);
    metrics_gauge_set(p->m_connected, 0);
    if (was || p->state == UP_CONNECTED)
        log_warn("API node disconnected", "node=%s reason=%s", u->name, why);
    for (int i = 0; i < p->nstreams; i++) {
        up_stream_t *st = &p->streams[i];
        st->id = 0;
        st->healthy = false;
        st->reopen_at = 0;
        /* unsent and unacked batches stay; stream_rewind handles them on the next open */
    }
    /* Batches handed to nghttp2 but never acked count as lost (no-ack streams) in rewind;
     * keep wbuf's length as the signal that some output never reached the socket. */
    for (int i = 0; i < p->nstreams; i++) {
        up_stream_t *st = &p->streams[i];
        if (!st->acking) {
            size_t lost = 0;
            for (gw_batch_t *b = st->head; b && b != st->cur; b = b->next)
                lost += b->nmsgs;
            if (lost && p->wbuf.len) {
                metrics_add(gwm.lost, lost);
                log_warn("messages lost with the connection (API does not ack)",
                         "node=%s stream=%d messages=%zu", u->name, st->idx, lost);
            }
            release_handed(u, st);
        }
    }
    buf_reset(&p->wbuf);
    resync_drop(u);
    p->state = UP_IDLE;
    schedule_reconnect(u);
    if (other_node_up(u))
        handback_all(u);
}

static void up_connect(gw_up_t *u)
{
    gw_up_priv_t *p = u->priv;
    p->reconnect_at = 0;
    if (!u->host[0])
        return; /* a dynamic slot without a node */
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int rv = getaddrinfo(u->host, u->port, &hints, &res);
    if (rv != 0) {
        log_rl_warn("cannot resolve API node", "node=%s err=%s", u->name, gai_strerror(rv));
        schedule_reconnect(u);
        return;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        freeaddrinfo(res);
        schedule_reconnect(u);
        return;
    }
    int one = 1, bufsz = 4 << 20;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bufsz, sizeof bufsz);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bufsz, sizeof bufsz);
    rv = connect(fd, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    if (rv < 0 && errno != EINPROGRESS) {
        log_rl_warn("connect to API node failed", "node=%s err=%s", u->name, strerror(errno));
        close(fd);
        schedule_reconnect(u);
        return;
    }
    p->sock.fd = fd;
    p->state = UP_CONNECTING;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = 1};
    epoll_ctl(p->epfd, EPOLL_CTL_ADD, fd, &ev);
    p->ep_out = true;
}

static void on_socket(gw_up_t *u, uint32_t events)
{
    gw_up_priv_t *p = u->priv;
    if (p->state == UP_CONNECTING) {
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(p->sock.fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err || (events & (EPOLLERR | EPOLLHUP))) {
            log_rl_warn("connect to API node failed", "node=%s err=%s", u->name,
                        strerror(err ? err : ECONNREFUSED));
            up_disconnect(u, "connect failed");
            return;
        }
        if (p->tls) {
            if (gw_sock_tls_begin(&p->sock, p->tls, u->host) < 0) {
                log_rl_warn("TLS to API node failed", "node=%s err=%s", u->name, p->sock.err);
                up_disconnect(u, "tls failed");
                return;
            }
            p->state = UP_TLS;
        }
    }
    if (p->state == UP_TLS) {
        int rv = gw_sock_handshake(&p->sock);
        if (rv == GW_SOCK_AGAIN) {
            set_epoll(u, p->sock.need_write);
            return;
        }
        if (rv < 0) {
            log_rl_warn("TLS to API node failed", "node=%s err=%s", u->name, p->sock.err);
            up_disconnect(u, "tls failed");
            return;
        }
    }
    if (p->state == UP_CONNECTING || p->state == UP_TLS) {
        if (session_start(u) < 0) {
            up_disconnect(u, "nghttp2 session failed");
            return;
        }
        if (flush_out(u) < 0)
            up_disconnect(u, "write failed");
        return;
    }
    if (p->state != UP_CONNECTED)
        return;
    if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && read_in(u) < 0) {
        up_disconnect(u, "read failed");
        return;
    }
    if (flush_out(u) < 0)
        up_disconnect(u, p->goaway ? "goaway" : "write failed");
}

/* ---- thread --------------------------------------------------------------------------- */

static int timeout_ms(gw_up_t *u)
{
    gw_up_priv_t *p = u->priv;
    int64_t next = 0, now = now_ns();
    if (p->reconnect_at)
        next = p->reconnect_at;
    for (int i = 0; i < p->nstreams; i++)
        if (p->streams[i].reopen_at && (!next || p->streams[i].reopen_at < next))
            next = p->streams[i].reopen_at;
    if (!next)
        return 1000;
    int64_t ms = (next - now) / 1000000;
    return ms < 0 ? 0 : ms > 1000 ? 1000 : (int)ms + 1;
}

static void run_timers(gw_up_t *u)
{
    gw_up_priv_t *p = u->priv;
    int64_t now = now_ns();
    if (p->reconnect_at && now >= p->reconnect_at && p->state == UP_IDLE)
        up_connect(u);
    if (p->state == UP_CONNECTED && !p->goaway && !p->resyncing)
        for (int i = 0; i < p->nstreams; i++)
            if (p->streams[i].reopen_at && now >= p->streams[i].reopen_at && !p->streams[i].id)
                open_stream(u, &p->streams[i]);
}

static bool rings_empty(gw_up_t *u)
{
    for (int k = 0; k < u->gw->nsvc; k++)
        if (gw_handoff_count(&u->links[k]->up))
            return false;
    return true;
}

static void update_idle(gw_up_t *u)
{
    gw_up_priv_t *p = u->priv;
    bool idle = rings_empty(u) && !p->overflowing && p->wbuf.len == 0;
    for (int i = 0; idle && i < p->nstreams; i++) {
        up_stream_t *st = &p->streams[i];
        if (st->npend || st->cur || (st->acking && st->head))
            idle = false;
    }
    atomic_store(&u->node->idle, idle);
}

enum { COALESCE_QUIET = 4 }; /* empty windows before a coalescing writer sleeps until an event */

/* Writer thread: the event loop of one API node. */
static void *up_main(void *arg)
{
    gw_up_t *u = arg;
    gw_up_priv_t *p = u->priv;
    char name[16];
    snprintf(name, sizeof name, "gw-up-%d", u->idx);
    pthread_setname_np(pthread_self(), name);

    for (int k = 0; k < u->gw->nsvc; k++)
        u->rc_peers[k] = u->links[k]->home_ev;
    gw_recycle_register(GW_RC_WRITER, u->idx, u->rc_peers, u->gw->nsvc);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = 0};
    epoll_ctl(p->epfd, EPOLL_CTL_ADD, u->wake.fd, &ev);
    up_connect(u);
    /* Coalescing (--coalesce): the first wake-up by a service thread switches the loop to
     * polling. The wake flag then stays raised, so service threads push without signalling;
     * the loop wakes when the window is over, or earlier when the API node sent something,
     * and takes all ring items in one turn. After COALESCE_QUIET empty windows it lowers
     * the flag, drains once more (wake.h: an item pushed after that raises a fresh signal)
     * and goes back to sleeping until an event. */
    const int64_t window_us = gw_cfg.coalesce_us;
    bool polling = false, pwait2_missing = false;
    int quiet = 0;
    while (atomic_load(&u->stop_req) < 2) {
        struct epoll_event evs[8];
        int n;
        if (polling) {
            /* the rest of the window; the API node's answers still wake the loop at once */
            struct timespec ts = {.tv_sec = window_us / 1000000,
                                  .tv_nsec = (long)(window_us % 1000000) * 1000};
            n = pwait2_missing ? -1 : epoll_pwait2(p->epfd, evs, 8, &ts, NULL);
            if (n < 0 && (pwait2_missing || errno == ENOSYS)) {
                /* kernel before 5.11: sleep the window out, then look */
                pwait2_missing = true;
                nanosleep(&ts, NULL);
                n = epoll_wait(p->epfd, evs, 8, 0);
            }
        } else {
            n = epoll_wait(p->epfd, evs, 8, timeout_ms(u));
        }
        metrics_inc(gwm.writer_wakeups);
        bool work = false;
        for (int i = 0; i < n; i++) {
            if (evs[i].data.u32 == 0) {
                if (window_us) {
                    wake_consume(&u->wake); /* the flag stays raised while polling */
                    polling = true;
                    quiet = 0;
                } else {
                    wake_clear(&u->wake);
                }
            } else if (p->sock.fd >= 0) {
                on_socket(u, evs[i].events);
                work = true;
            }
        }
        /* the commands just read go to the service threads before anything else is done */
        wake_touched(u);
        if (polling && quiet >= COALESCE_QUIET) {
            polling = false;
            wake_lower(&u->wake.pending); /* then drain below */
        }
        for (int k = 0; k < u->gw->nsvc; k++)
            gw_recycle_drain(u->links[k]->home_cmd);
        follow_addr(u);
        run_timers(u);
        if (!rings_empty(u))
            work = true;
        drain_rings(u);
        quiet = work ? 0 : quiet + 1;
        if (p->state != UP_CONNECTED && p->queued && other_node_up(u))
            handback_all(u);
        flush_cmd_overflow(u);
        if (p->state == UP_CONNECTED && flush_out(u) < 0)
            up_disconnect(u, p->goaway ? "goaway" : "write failed");
        wake_touched(u);
        publish_done(u);
        update_idle(u);
    }
    if (p->sock.fd >= 0)
        gw_sock_close(&p->sock);
    if (p->sess)
        nghttp2_session_del(p->sess);
    p->sess = NULL;
    atomic_store(&u->node->connected, 0);
    gw_batch_thread_cleanup();
    gw_recycle_register(GW_RC_NONE, 0, NULL, 0);
    return NULL;
}

/* ---- set-up and teardown (main thread) ------------------------------------------------ */

/* "host:port" or "[v6]:port" into u->host, u->port, u->name. */
static int split_addr(gw_up_t *u, const char *addr, char *err, size_t errlen)
{
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr || !colon[1]) {
        snprintf(err, errlen, "--upstream: '%s' is not host:port", addr);
        return -1;
    }
    size_t hl = (size_t)(colon - addr);
    const char *h = addr;
    if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') { /* [v6]:port */
        h++;
        hl -= 2;
    }
    if (hl >= sizeof u->host || strlen(colon + 1) >= sizeof u->port) {
        snprintf(err, errlen, "--upstream: '%s' is too long", addr);
        return -1;
    }
    memcpy(u->host, h, hl);
    u->host[hl] = 0;
    snprintf(u->port, sizeof u->port, "%s", colon + 1);
    snprintf(u->name, sizeof u->name, "%s", addr);
    return 0;
}

static pthread_mutex_t addr_lock = PTHREAD_MUTEX_INITIALIZER; /* next_addr; rare, not per message */

void gw_up_set_addr(gw_up_t *u, const char *addr)
{
    pthread_mutex_lock(&addr_lock);
    snprintf(u->next_addr, sizeof u->next_addr, "%s", addr);
    atomic_fetch_add(&u->addr_gen, 1);
    pthread_mutex_unlock(&addr_lock);
    gw_up_wake(u);
}

/* Writer thread: follows an address change of a dynamic slot. */
static void follow_addr(gw_up_t *u)
{
    gw_up_priv_t *p = u->priv;
    uint32_t gen = atomic_load(&u->addr_gen);
    if (!u->dynamic || gen == p->seen_gen)
        return;
    char addr[300];
    pthread_mutex_lock(&addr_lock);
    snprintf(addr, sizeof addr, "%s", u->next_addr);
    gen = atomic_load(&u->addr_gen);
    pthread_mutex_unlock(&addr_lock);
    p->seen_gen = gen;
    bool had = u->host[0] != 0;
    if (had && strcmp(addr, u->name) == 0)
        return;
    if (had) {
        log_info("API node removed", "node=%s", u->name);
        if (p->state != UP_IDLE)
            up_disconnect(u, "address changed"); /* hands messages back */
        metrics_gauge_set(p->m_connected, 0);
        p->attempt = 0;
    }
    char err[160];
    if (!*addr || split_addr(u, addr, err, sizeof err) < 0) {
        u->host[0] = 0;
        snprintf(u->name, sizeof u->name, "unassigned-%d", u->idx);
        p->reconnect_at = 0;
        return;
    }
    atomic_store(&u->node->seed, gw_hash64(u->name, strlen(u->name), 0));
    p->m_connected = gwm_up_connected(u->name);
    p->m_reconnects = gwm_up_reconnects(u->name);
    p->connects = 0;
    log_info("API node added", "node=%s slot=%d", u->name, u->idx);
    p->reconnect_at = now_ns(); /* connect now */
}

gw_up_t *gw_up_new(gw_t *g, int idx, const char *addr, char *err, size_t errlen)
{
    gw_up_t *u = calloc(1, sizeof *u);
    gw_up_priv_t *p = calloc(1, sizeof *p);
    if (!u || !p)
        goto nomem;
    u->priv = p;
    u->idx = idx;
    u->gw = g;
    if (!*addr) {
        u->dynamic = true;
        snprintf(u->name, sizeof u->name, "unassigned-%d", idx);
    } else if (split_addr(u, addr, err, errlen) < 0) {
        goto fail;
    }
    u->node = &g->nodes[idx];
    atomic_store(&u->node->seed, gw_hash64(u->name, strlen(u->name), 0));
    atomic_init(&u->addr_gen, 0);
    if (wake_init(&u->wake) < 0) {
        snprintf(err, errlen, "eventfd: %s", strerror(errno));
        goto fail;
    }
    arena_init(&p->arena, 64 * 1024);
    p->epfd = epoll_create1(EPOLL_CLOEXEC);
    p->sock.fd = -1;
    if (gw_cfg.upstream_tls) {
        p->tls = gw_sock_client_ctx(gw_cfg.upstream_ca, err, errlen);
        if (!p->tls)
            goto fail;
    }
    p->nstreams = (int)gw_cfg.streams;
    p->streams = calloc((size_t)p->nstreams, sizeof *p->streams);
    p->rbuf = malloc(READ_CHUNK);
    p->dacc = calloc((size_t)(g->nsvc * (int)gw_cfg.streams), sizeof *p->dacc);
    p->hb_head = calloc((size_t)g->nsvc, sizeof *p->hb_head);
    p->hb_tail = calloc((size_t)g->nsvc, sizeof *p->hb_tail);
    u->links = calloc((size_t)g->nsvc, sizeof *u->links);
    u->rc_peers = calloc((size_t)g->nsvc, sizeof *u->rc_peers);
    if (p->epfd < 0 || !p->streams || !p->rbuf || !p->dacc || !p->hb_head || !p->hb_tail ||
        !u->links || !u->rc_peers)
        goto nomem;
    for (int i = 0; i < p->nstreams; i++) {
        p->streams[i].up = u;
        p->streams[i].idx = i;
        p->streams[i].next_seq = 1;
        p->streams[i].grpc_status = -1;
        grpc_dec_init(&p->streams[i].dec, MAX_DOWNSTREAM);
    }
    /* per-node series exist once a node does (dynamic slots register on assignment) */
    p->m_connected = u->dynamic ? -1 : gwm_up_connected(u->name);
    p->m_reconnects = u->dynamic ? -1 : gwm_up_reconnects(u->name);
    atomic_store(&u->node->connected, 0);
    atomic_store(&u->node->idle, 1);
    atomic_init(&u->stop_req, 0);
    return u;
nomem:
    snprintf(err, errlen, "out of memory");
fail:
    gw_up_free(u);
    return NULL;
}

int gw_up_start(gw_up_t *u)
{
    int rv = pthread_create(&u->tid, NULL, up_main, u);
    return rv ? -rv : 0;
}

void gw_up_request(gw_up_t *u, int what)
{
    atomic_store(&u->stop_req, what);
    gw_up_wake(u);
}

void gw_up_join(gw_up_t *u)
{
    if (u && u->tid) {
        pthread_join(u->tid, NULL);
        u->tid = 0;
    }
}

/* Main thread, after the writer thread ended (or was never started). */
void gw_up_free(gw_up_t *u)
{
    if (!u)
        return;
    gw_up_priv_t *p = u->priv;
    gw_up_join(u);
    if (p) {
        for (int i = 0; p->streams && i < p->nstreams; i++) {
            up_stream_t *st = &p->streams[i];
            while (st->head) {
                gw_batch_t *b = st->head;
                st->head = b->next;
                gw_batch_free(b);
            }
            for (size_t k = 0; k < st->npend; k++)
                free_pending_event(st->pend[k]);
            free(st->pend);
            for (size_t k = 0; k < st->nrs; k++)
                gw_event_free(st->rs[k]);
            free(st->rs);
            grpc_dec_free(&st->dec);
        }

        for (int k = 0; p->hb_head && k < u->gw->nsvc; k++)
            while (p->hb_head[k]) {
                gw_event_t *e = p->hb_head[k];
                p->hb_head[k] = e->next;
                gw_event_free(e);
            }
        free(p->hb_head);
        free(p->hb_tail);
        free(p->dacc);
        arena_free(&p->arena);
        free(p->streams);
        free(p->rbuf);
        buf_free(&p->wbuf);
        if (p->epfd > 0)
            close(p->epfd);
        if (p->tls)
            SSL_CTX_free(p->tls);
        free(p);
    }
    if (u->wake.fd > 0)
        wake_destroy(&u->wake);
    free(u->links);
    free(u->rc_peers);
    free(u);
}

void gw_up_wake_fn(void *ud)
{
    gw_up_wake(ud);
}
