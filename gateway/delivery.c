/* delivery.c: the delivery protocol toward one API node (see delivery.h for the invariants).
 * No I/O: inputs are calls, outputs are dlv_io_t callbacks and the bytes dlv_stream_read
 * gives out. Writer thread (or the simulator). */
#include "delivery.h"

#include <stdlib.h>
#include <string.h>

#include "conn_id.h"
#include "idmap.h"
#include "log.h"
#include "route.h"
#include "seqtrack.h"

#define MODE_UNKNOWN 0 /* no response headers yet */
#define MODE_ACKING 1  /* x-wsgw-ack: 1, or an ack arrived */
#define MODE_PLAIN 2   /* no acks: released once written to the socket */
#define H2_ENHANCE_YOUR_CALM 0xb
#define PING_INTERVAL_MAX_NS (300 * 1000000000LL) /* gRPC servers accept one per 5 min */

typedef struct evq {
    gw_event_t **v;
    size_t n, cap, bytes;
} evq_t;

typedef struct dstream {
    int idx;
    bool open;          /* request submitted and not closed */
    bool healthy;       /* response headers seen, not a refusal */
    bool refused;       /* a trailers-only answer came */
    bool ending;        /* GOAWAY: end the request once what is queued went out */
    bool alone;         /* a batch that failed before is in flight: nothing follows it (I4) */
    bool blocked;       /* dlv_stream_read deferred because of that: resume on release */
    uint8_t mode;
    int fails;          /* consecutive failed or refused opens: reopen backoff */
    int64_t opened_at, reopen_at;
    uint64_t next_seq;
    gw_batch_t *head, *tail; /* every batch not yet released, oldest first */
    gw_batch_t *cur;    /* first batch not fully handed over (NULL: none) */
    size_t cur_off;
    evq_t pend;         /* taken, not yet batched */
    evq_t rs;           /* resync Opens (state RESYNC) */
} dstream_t;

struct dlv {
    dlv_cfg_t cfg;
    dlv_io_t io;
    dlv_state_t state;
    dstream_t *st;
    dlv_stats_t stats;
    uint64_t rng;
    /* session */
    int attempt;              /* connects since the last that worked (backoff) */
    int64_t connect_at;       /* DOWN: when to connect */
    int64_t connect_deadline; /* CONNECTING */
    bool settings;            /* the node's SETTINGS came on this session */
    bool usable;              /* the node takes new messages (session, SETTINGS, streams) */
    bool published;           /* what dlv_io_t.set_usable last said */
    bool hb_wait;             /* some thread has not yet re-sent what was handed back to it */
    bool hb_more;             /* hb_add queued messages taken meanwhile: emit them */
    bool accepted;            /* a stream was accepted on this session */
    bool plain_logged;
    uint32_t rs_gen;
    int rs_waiting;
    /* liveness */
    int64_t now;              /* of the last tick */
    int64_t last_rx, ping_at, ping_interval;
    int64_t ping_proof;       /* when the last answered PING was sent */
    bool ping_out, out_blocked, flushed;
    const char *want_disconnect;
    /* handback and resolved counts */
    gw_event_t **hb_head, **hb_tail; /* [nsvc] */
    uint32_t *hb_sent, *hb_seen;     /* [nsvc] Reroute numbers emitted / re-sent (markers) */
    gw_idmap_t *hb_ids;                 /* [nsvc] connections with handed-back messages the thread
                                        has not taken yet: their later messages follow them */
    gw_seqtrack_t *rt;               /* [nsvc * nstreams] resolved Messages (seqtrack.h) */
};

/* ---- small helpers ------------------------------------------------------------------------ */

void (*dlv_trace_batch)(const dlv_t *d, const char *what, int st, const gw_batch_t *b);
#define TRACE(d, what, st, b)                                                                  \
    do {                                                                                       \
        if (dlv_trace_batch)                                                                   \
            dlv_trace_batch((d), (what), (st), (b));                                           \
    } while (0)

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

static int evq_push(evq_t *q, gw_event_t *e)
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
static void evq_reset(evq_t *q)
{
    q->n = 0;
    q->bytes = 0;
}

static void evq_free_all(evq_t *q)
{
    for (size_t i = 0; i < q->n; i++)
        gw_event_free(q->v[i]);
    evq_reset(q);
}

static int thread_of(const dlv_t *d, uint64_t conn_id)
{
    unsigned k = conn_id_thread(conn_id);
    return k < (unsigned)d->cfg.nsvc ? (int)k : -1;
}

/* Message number tno of thread k on stream st is resolved: acknowledged, delivered without
 * acks, handed back, or lost and counted (msgroute.h). */
static void resolve(dlv_t *d, int k, int st, uint32_t tno)
{
    if (k >= 0 && gw_seqtrack_done(&d->rt[k * d->cfg.nstreams + st], tno) < 0)
        /* (its thread then waits for it: a connection does not move nodes in the meantime) */
        log_rl_error("out of memory tracking resolved messages", "node=%s", d->cfg.name);
}

/* Every Message of b is resolved (its events are gone some other way: lost, counted). */
static void resolve_batch(dlv_t *d, int st, const gw_batch_t *b)
{
    for (uint32_t i = 0; b->tags && i < b->nmsgs; i++)
        resolve(d, (int)(b->tags[i] >> 32), st, (uint32_t)b->tags[i]);
}

/* What routing sees: usable, and no handback still on its way to the service threads (a
 * message sent here before its handed-back predecessors were re-sent would overtake them). */
static void publish_usable(dlv_t *d)
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
    publish_usable(d);
}

static bool inflight(const dstream_t *s)
{
    return s->head && (s->head != s->cur || s->cur_off > 0);
}

/* ---- batches ------------------------------------------------------------------------------ */

static void batch_release(dlv_t *d, dstream_t *s, gw_batch_t *b)
{
    TRACE(d, "release", s->idx, b);
    d->stats.queued -= b->ev_len;
    d->stats.released += b->nmsgs;
    resolve_batch(d, s->idx, b);
    gw_batch_free(b);
}

/* Releases sent batches from the head: acked ones (ack > 0), or every sent one (ack 0). */
static void release_sent(dlv_t *d, dstream_t *s, uint64_t ack)
{
    while (s->head && s->head != s->cur) {
        gw_batch_t *b = s->head;
        if (ack && b->seq > ack)
            break;
        s->head = b->next;
        if (!s->head)
            s->tail = NULL;
        if (b->tries)
            s->alone = false; /* the suspect made it: the rest may follow */
        batch_release(d, s, b);
    }
    if (s->blocked && s->open && !s->alone) {
        s->blocked = false;
        d->io.resume_stream(d->io.ud, s->idx);
    }
}

static void append_batch(dstream_t *s, gw_batch_t *b)
{
    b->next = NULL;
    gw_batch_set_seq(b, s->next_seq++);
    if (s->tail)
        s->tail->next = b;
    else
        s->head = b;
    s->tail = b;
    if (!s->cur) {
        s->cur = b;
        s->cur_off = 0;
    }
}

/* Kicks the client of a lost event (I1: its client is told). Takes e. */
static void lose_event(dlv_t *d, int st, gw_event_t *e, int grpc_status, const char *why)
{
    int k = thread_of(d, e->conn_id);
    if (e->type == GW_EV_MESSAGE) {
        d->stats.lost++;
        resolve(d, k, st, e->tno);
    }
    log_rl_warn("event lost toward API node: client told", "node=%s conn_id=%llu type=%d "
                "seq=%llu reason=%s grpc_status=%d", d->cfg.name, (unsigned long long)e->conn_id,
                e->type, (unsigned long long)e->seq, why, grpc_status);
    if (k >= 0 && e->type != GW_EV_CLOSE) {
        uint64_t id = e->conn_id;
        gw_cmd_t *c = gw_cmd_new(GW_CMD_KICK, &id, 1, NULL, 0, NULL, NULL, 0);
        const char *r = grpc_status == 8 ? "message refused by the API (too big)"
                                         : "message lost upstream";
        if (c) {
            c->code = grpc_status == 8 ? 1009 : 1011;
            c->payload = gw_payload_new(r, strlen(r), false, e->t_read);
            d->io.emit(d->io.ud, k, c);
        }
    }
    gw_event_free(e);
}

/* Batches evs[0..n) onto s. Events that cannot be encoded (memory) are lost and counted. */
static void encode_into(dlv_t *d, dstream_t *s, gw_event_t **evs, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t j = i, bytes = 0;
        while (j < n && j - i < d->cfg.batch_max_events &&
               (j == i || bytes + gw_event_size(evs[j]) <= d->cfg.batch_max_bytes))
            bytes += gw_event_size(evs[j++]);
        gw_batch_t *b = gw_batch_encode(evs + i, j - i, d->cfg.gateway_id);
        if (!b) {
            for (; i < n; i++)
                lose_event(d, s->idx, evs[i], -1, "out of memory encoding a batch");
            return;
        }
        for (size_t k = i; k < j; k++)
            gw_event_free(evs[k]);
        d->stats.queued += b->ev_len;
        append_batch(s, b);
        TRACE(d, "batch", s->idx, b);
        i = j;
    }
}

/* The pending events of s become batches. */
static void encode_pending(dlv_t *d, dstream_t *s)
{
    if (!s->pend.n)
        return;
    d->stats.queued -= s->pend.bytes;
    encode_into(d, s, s->pend.v, s->pend.n);
    evq_reset(&s->pend);
}

/* ---- stripping, splitting, handback --------------------------------------------------------- */

/* Every batch of s back as events at the front of its pending queue, Messages only (I2: the
 * next resync re-sends presence). Pending Opens and Closes are dropped too. */
static void strip_stream(dlv_t *d, dstream_t *s, int64_t now)
{
    gw_event_t *h = NULL, *t = NULL;
    size_t failed = 0;
    for (gw_batch_t *b = s->head; b;) {
        gw_batch_t *next = b->next;
        TRACE(d, "strip", s->idx, b);
        if (b->nmsgs && gw_batch_events(b, true, now, &h, &t) < 0) {
            failed += b->nmsgs;
            resolve_batch(d, s->idx, b);
        }
        d->stats.queued -= b->ev_len;
        gw_batch_free(b);
        b = next;
    }
    s->head = s->tail = s->cur = NULL;
    s->cur_off = 0;
    if (failed) { /* cannot rebuild them: counted, never silent (their clients are unknown) */
        d->stats.lost += failed;
        log_rl_error("messages lost rebuilding batches (memory)", "node=%s lost=%zu",
                     d->cfg.name, failed);
    }
    evq_t keep = {0};
    for (gw_event_t *e = h; e;) {
        gw_event_t *next = e->next;
        if (evq_push(&keep, e) < 0)
            lose_event(d, s->idx, e, -1, "out of memory");
        e = next;
    }
    for (size_t i = 0; i < s->pend.n; i++) {
        gw_event_t *e = s->pend.v[i];
        if (e->type != GW_EV_MESSAGE)
            gw_event_free(e);
        else if (evq_push(&keep, e) < 0)
            lose_event(d, s->idx, e, -1, "out of memory");
    }
    d->stats.queued -= s->pend.bytes;
    free(s->pend.v);
    s->pend = keep;
    d->stats.queued += keep.bytes;
}

/* Replaces b (in s's queue after prev, or at the head) by one batch per event (I4). Returns
 * the last batch now before b's successor. */
static gw_batch_t *split_batch(dlv_t *d, dstream_t *s, gw_batch_t *prev, gw_batch_t *b,
                               int64_t now)
{
    gw_event_t *h = NULL, *t = NULL;
    TRACE(d, "split", s->idx, b);
    if (gw_batch_events(b, false, now, &h, &t) < 0) {
        b->tries = (uint8_t)(d->cfg.max_attempts - 1); /* (memory) whole, one more chance */
        return b;
    }
    gw_batch_t *first = NULL, *last = NULL;
    for (gw_event_t *e = h; e;) {
        gw_event_t *next = e->next;
        e->tries = (uint8_t)(d->cfg.max_attempts - 1); /* one more chance, alone */
        gw_batch_t *nb = gw_batch_encode(&e, 1, d->cfg.gateway_id);
        if (!nb) {
            lose_event(d, s->idx, e, -1, "out of memory splitting a batch");
        } else {
            d->stats.queued += nb->ev_len;
            TRACE(d, "single", s->idx, nb);
            if (last)
                last->next = nb;
            else
                first = nb;
            last = nb;
            gw_event_free(e);
        }
        e = next;
    }
    gw_batch_t *after = b->next;
    d->stats.queued -= b->ev_len;
    gw_batch_free(b);
    if (first)
        last->next = after;
    if (prev)
        prev->next = first ? first : after;
    else
        s->head = first ? first : after;
    if (!after)
        s->tail = last ? last : prev;
    d->stats.splits++;
    return last ? last : prev;
}

/* I4: every batch of s that went out (wholly or in part) failed once more. */
static void count_failure(dlv_t *d, dstream_t *s)
{
    for (gw_batch_t *b = s->head; b && (b != s->cur || s->cur_off); b = b->next) {
        if (b->tries < d->cfg.max_attempts)
            b->tries++;
        if (b == s->cur)
            break;
    }
}

/* I4: batches that failed max_attempts times are split; single events that did are lost.
 * Only while nothing of s is handed over (the stream is closed). */
static void poison_sweep(dlv_t *d, dstream_t *s, int grpc_status, int64_t now)
{
    gw_batch_t *prev = NULL;
    for (gw_batch_t *b = s->head; b;) {
        gw_batch_t *next = b->next;
        if (b->tries < d->cfg.max_attempts) {
            prev = b;
        } else if (b->nevents > 1) {
            prev = split_batch(d, s, prev, b, now); /* the singles are below max: go on */
        } else {
            gw_event_t *h = NULL, *t = NULL;
            TRACE(d, "drop", s->idx, b);
            if (prev)
                prev->next = next;
            else
                s->head = next;
            if (s->tail == b)
                s->tail = prev;
            d->stats.queued -= b->ev_len;
            if (b->nmsgs)
                d->stats.refused += b->nmsgs;
            if (gw_batch_events(b, false, now, &h, &t) > 0) {
                if (h->type == GW_EV_CLOSE && d->state != DLV_DOWN && !d->want_disconnect) {
                    /* the node keeps a client that left: only a new session (a resync)
                     * puts its presence right (I2) */
                    d->want_disconnect = "a Close failed repeatedly";
                }
                lose_event(d, s->idx, h, grpc_status, "refused by the API node repeatedly");
            } else if (b->nmsgs) {
                d->stats.lost += b->nmsgs;
                resolve_batch(d, s->idx, b);
            }
            gw_batch_free(b);
        }
        b = next;
    }
    s->cur = s->head;
    s->cur_off = 0;
}

/* Queues a Message for its service thread (takes e); it counts as resolved here. */
static void hb_add(dlv_t *d, gw_event_t *e, int st)
{
    int k = thread_of(d, e->conn_id);
    if (k < 0) { /* not one of ours: cannot happen for our own events */
        d->stats.lost++;
        gw_event_free(e);
        return;
    }
    resolve(d, k, st, e->tno);
    d->stats.handed_back++;
    /* it goes out with the next Reroute to k: until k has taken that one, the connection's
     * later messages follow it */
    if (gw_idmap_put(&d->hb_ids[k], e->conn_id, d->hb_sent[k] + 1) < 0)
        log_rl_error("out of memory tracking handed-back connections", "node=%s", d->cfg.name);
    e->next = NULL;
    if (d->hb_tail[k])
        d->hb_tail[k]->next = e;
    else
        d->hb_head[k] = e;
    d->hb_tail[k] = e;
}

/* Emits what hb_add queued: a Reroute per thread, numbered. Until a thread's marker for the
 * last one comes back (GW_EV_REROUTED: it has re-sent them), every later Message of those
 * connections is handed back too, and the node is not shown usable: messages pushed here
 * before the thread re-sent the handed-back ones must not stay and overtake them (I3). */
static void hb_emit(dlv_t *d)
{
    for (int k = 0; k < d->cfg.nsvc; k++) {
        if (!d->hb_head[k])
            continue;
        gw_cmd_t *cmd = gw_cmd_new(GW_CMD_REROUTE, NULL, 0, NULL, 0, NULL, NULL, 0);
        if (!cmd) {
            size_t lost = 0;
            for (gw_event_t *e = d->hb_head[k]; e;) {
                gw_event_t *next = e->next;
                gw_event_free(e);
                e = next;
                lost++;
            }
            d->stats.lost += lost;
            log_rl_error("messages lost handing back (memory)", "node=%s lost=%zu", d->cfg.name,
                         lost);
        } else {
            cmd->events = d->hb_head[k];
            cmd->code = (int32_t)++d->hb_sent[k];
            d->io.emit(d->io.ud, k, cmd);
            d->hb_wait = true;
        }
        d->hb_head[k] = d->hb_tail[k] = NULL;
    }
    publish_usable(d);
}

/* Hands every pending Message back to its service thread, oldest first (I1, I3); presence
 * events are dropped (the next resync covers them). Batches must have been stripped. */
static void handback_pending(dlv_t *d)
{
    size_t n = 0;
    for (int i = 0; i < d->cfg.nstreams; i++) {
        dstream_t *s = &d->st[i];
        for (size_t k = 0; k < s->pend.n; k++) {
            gw_event_t *e = s->pend.v[k];
            if (e->type == GW_EV_MESSAGE) {
                hb_add(d, e, s->idx);
                n++;
            } else {
                gw_event_free(e);
            }
        }
        d->stats.queued -= s->pend.bytes;
        evq_reset(&s->pend);
    }
    hb_emit(d);
    if (n)
        log_info("messages handed back for another node", "node=%s messages=%zu", d->cfg.name,
                 n);
}

/* A thread re-sent Reroute number n. */
static void hb_marker(dlv_t *d, int k, uint32_t n)
{
    if (k < 0 || (int32_t)(n - d->hb_seen[k]) <= 0)
        return;
    d->hb_seen[k] = n;
    gw_idmap_drop_upto(&d->hb_ids[k], n); /* the thread holds them now: what follows is newer */
    bool wait = false;
    for (int i = 0; i < d->cfg.nsvc; i++)
        wait |= d->hb_seen[i] != d->hb_sent[i];
    d->hb_wait = wait;
    publish_usable(d);
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
        strip_stream(d, &d->st[i], now);
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
        encode_into(d, s, s->rs.v, s->rs.n);
        evq_reset(&s->rs);
        if (!s->tail) { /* no Opens on this stream: an empty batch says it */
            gw_batch_t *b = gw_batch_encode(NULL, 0, d->cfg.gateway_id);
            if (b) {
                d->stats.queued += b->ev_len;
                append_batch(s, b);
            }
        }
        if (s->tail) {
            size_t before = s->tail->ev_len;
            gw_batch_set_complete(s->tail);
            d->stats.queued += s->tail->ev_len - before;
        }
        encode_pending(d, s);
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
            encode_pending(d, s); /* what was taken before goes out before the end */
        else
            strip_stream(d, s, now); /* (RESYNC: nothing went out; Messages wait) */
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
        count_failure(d, s);         /* what was in flight failed once more (I4) */
        poison_sweep(d, s, -1, now);
        strip_stream(d, s, now);     /* presence is re-sent by the next resync (I2) */
    }
    resync_drop(d);
    set_usable(d, false);
    d->state = DLV_DOWN;
    d->want_disconnect = NULL;
    d->ping_out = false;
    d->connect_at = now + backoff(d, d->attempt);
    if (d->io.others_usable(d->io.ud))
        handback_pending(d);
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
        release_sent(d, s, 0);
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
    release_sent(d, s, seq); /* never past what was sent: acks of unsent batches are bogus */
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
        release_sent(d, s, 0); /* what reached the socket counts as delivered */
    if (!failed && s->mode == MODE_ACKING && inflight(s))
        failed = true; /* it ended without acking what it got: not a clean end */
    if (failed && !refusal) {
        /* I4: a batch that went alone carries the blame alone, at once when the status says
         * the message was bad; otherwise everything in flight is suspect from now on */
        if (s->alone && s->head && s->head->tries)
            s->head->tries = non_retryable(grpc_status) ? (uint8_t)d->cfg.max_attempts
                                                        : (uint8_t)(s->head->tries + 1);
        else
            count_failure(d, s);
        poison_sweep(d, s, grpc_status, now);
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

ssize_t dlv_stream_read(dlv_t *d, int st, uint8_t *out, size_t len, bool *eof)
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

void dlv_flushed(dlv_t *d, int64_t now)
{
    (void)now;
    d->flushed = true;
    d->out_blocked = false;
    for (int i = 0; i < d->cfg.nstreams; i++)
        if (d->st[i].mode == MODE_PLAIN)
            release_sent(d, &d->st[i], 0);
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
        release_sent(d, s, 0);
}

void dlv_tick(dlv_t *d, int64_t now)
{
    d->now = now;
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
    int64_t t = 0;
    switch (d->state) {
    case DLV_DOWN:
        return d->connect_at ? d->connect_at : 1;
    case DLV_CONNECTING:
        return d->connect_deadline;
    default:
        break;
    }
    if (d->ping_out)
        t = d->ping_at + d->cfg.ping_timeout_ns;
    else if (d->ping_interval && owed(d))
        t = d->last_rx + d->ping_interval;
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
        hb_marker(d, thread_of(d, e->conn_id), (uint32_t)e->code);
        gw_event_free(e);
        return;
    case GW_EV_OPEN:
        if (e->code) { /* a resync Open (code = resync generation) */
            if (d->state != DLV_RESYNC || (uint32_t)e->code != d->rs_gen)
                gw_event_free(e);
            else if (evq_push(&s->rs, e) < 0)
                lose_event(d, s->idx, e, -1, "out of memory during presence resync");
            return;
        }
        __attribute__((fallthrough)); /* a live Open: as a Close */
    case GW_EV_CLOSE:
        /* Without a session the node forgets this gateway's presence anyway, and the next
         * resync re-sends the live set (I2). */
        if (!session)
            gw_event_free(e);
        else if (evq_push(&s->pend, e) < 0)
            lose_event(d, s->idx, e, -1, "out of memory");
        else
            d->stats.queued += gw_event_size(e);
        return;
    default: {
        int k = thread_of(d, e->conn_id);
        if (k >= 0) /* numbered as the thread counts its pushes (msgroute.h marks) */
            e->tno = gw_seqtrack_next(&d->rt[k * d->cfg.nstreams + s->idx]);
        if (k >= 0 && gw_idmap_has(&d->hb_ids[k], e->conn_id)) {
            hb_add(d, e, s->idx); /* its thread has not re-sent the earlier ones yet */
            d->hb_more = true;
        } else if (evq_push(&s->pend, e) < 0) {
            lose_event(d, s->idx, e, -1, "out of memory queueing a message");
        } else {
            d->stats.queued += gw_event_size(e);
        }
        return;
    }
    }
}

void dlv_flush_events(dlv_t *d, int64_t now)
{
    (void)now;
    if (d->hb_more) {
        d->hb_more = false;
        hb_emit(d);
    }
    if (d->state == DLV_LIVE) {
        for (int i = 0; i < d->cfg.nstreams; i++) {
            dstream_t *s = &d->st[i];
            bool had = s->cur != NULL;
            encode_pending(d, s);
            if (s->open && s->cur && !had)
                d->io.resume_stream(d->io.ud, s->idx);
        }
        return;
    }
    if ((d->state == DLV_DOWN || d->state == DLV_CONNECTING) && d->io.others_usable(d->io.ud))
        handback_pending(d); /* another node takes them (GOAWAY: at the session's end) */
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

/* ---- self-check (simulator, fuzzing) ------------------------------------------------------ */

#define FAIL(...) (snprintf(err, errlen, __VA_ARGS__), -1)

static int check_stream(const dlv_t *d, const dstream_t *s, size_t *bytes, char *err,
                        size_t errlen)
{
    bool cur_seen = s->cur == NULL;
    uint64_t seq = 0;
    const gw_batch_t *last = NULL;
    for (const gw_batch_t *b = s->head; b; b = b->next) {
        if (b == s->cur)
            cur_seen = true;
        if (b->seq && b->seq <= seq)
            return FAIL("stream %d: seq %llu after %llu", s->idx, (unsigned long long)b->seq,
                        (unsigned long long)seq);
        seq = b->seq;
        if (b->tries > d->cfg.max_attempts)
            return FAIL("stream %d: a batch went out %d times (max %d)", s->idx, b->tries,
                        d->cfg.max_attempts);
        *bytes += b->ev_len;
        last = b;
    }
    if (last != s->tail)
        return FAIL("stream %d: tail is not the last batch", s->idx);
    if (!cur_seen)
        return FAIL("stream %d: cur is not in the queue", s->idx);
    if (!s->cur && s->cur_off)
        return FAIL("stream %d: offset without a current batch", s->idx);
    if (s->open && d->state != DLV_LIVE && d->state != DLV_GOAWAY)
        return FAIL("stream %d open in state %d", s->idx, d->state);
    if (s->rs.n && d->state != DLV_RESYNC)
        return FAIL("stream %d: resync Opens outside a resync", s->idx);
    if ((d->state == DLV_DOWN || d->state == DLV_CONNECTING || d->state == DLV_RESYNC) &&
        s->head)
        return FAIL("stream %d: batches kept without a session (state %d)", s->idx, d->state);
    for (size_t i = 0; i < s->pend.n; i++)
        if (s->pend.v[i]->type != GW_EV_MESSAGE && d->state != DLV_RESYNC &&
            d->state != DLV_LIVE)
            return FAIL("stream %d: presence event kept without a session", s->idx);
    *bytes += s->pend.bytes;
    return 0;
}

int dlv_check(const dlv_t *d, char *err, size_t errlen)
{
    size_t bytes = 0;
    for (int i = 0; i < d->cfg.nstreams; i++)
        if (check_stream(d, &d->st[i], &bytes, err, errlen) < 0)
            return -1;
    if (bytes != d->stats.queued)
        return FAIL("queued %zu bytes but %zu counted", bytes, d->stats.queued);
    for (int k = 0; k < d->cfg.nsvc; k++)
        if (d->hb_head[k])
            return FAIL("handback list of thread %d not emitted", k);
    if (d->usable && d->state != DLV_RESYNC && d->state != DLV_LIVE)
        return FAIL("usable in state %d", d->state);
    return 0;
}

int dlv_describe(const dlv_t *d, char *out, size_t len)
{
    int n = snprintf(out, len, "state=%d usable=%d settings=%d queued=%zu rs_waiting=%d ping_out=%d",
                     d->state, d->usable, d->settings, d->stats.queued, d->rs_waiting,
                     d->ping_out);
    for (int i = 0; i < d->cfg.nstreams && n > 0 && (size_t)n < len; i++) {
        const dstream_t *s = &d->st[i];
        size_t nb = 0, ninf = 0;
        for (const gw_batch_t *b = s->head; b; b = b->next)
            nb++;
        for (const gw_batch_t *b = s->head; b && b != s->cur; b = b->next)
            ninf++;
        n += snprintf(out + n, len - (size_t)n,
                      " | st%d open=%d mode=%d healthy=%d alone=%d blocked=%d ending=%d "
                      "batches=%zu inflight=%zu head_tries=%d cur=%s pend=%zu reopen_at=%lld",
                      i, s->open, s->mode, s->healthy, s->alone, s->blocked, s->ending, nb, ninf,
                      s->head ? s->head->tries : -1, s->cur ? "yes" : "no", s->pend.n,
                      (long long)s->reopen_at);
    }
    return n;
}
