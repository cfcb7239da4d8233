/* delivery_priv.h: the inside of the delivery state machine (delivery.h), shared by its files:
 * delivery.c (resync, streams, the public events), delivery_queue.c (batches: release, loss,
 * stripping, splitting, handback, resolved counts), delivery_check.c (self-check). No I/O;
 * the writer thread (or the simulator). */
#ifndef GW_DELIVERY_PRIV_H
#define GW_DELIVERY_PRIV_H

#include "delivery.h"
#include "idmap.h"
#include "seqtrack.h"

#define MODE_UNKNOWN 0 /* no response headers yet */
#define MODE_ACKING 1  /* x-wsgw-ack: 1, or an ack arrived */
#define MODE_PLAIN 2   /* no acks: released once written to the socket */
#define H2_ENHANCE_YOUR_CALM 0xb
#define PING_INTERVAL_MAX_NS (300 * 1000000000LL) /* gRPC servers accept one per 5 min */
#define DLV_CLOSE_ROUNDS 3 /* a routed Close handed back after failing alone, at most (I4) */

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
    bool renew_pending;        /* a routed Close was lost: dlv__renew_due renews (I4) */
    int64_t renew_last;        /* the last renewal (0: none yet) */
    /* handback and resolved counts */
    gw_event_t **hb_head, **hb_tail; /* [nsvc] */
    uint32_t *hb_sent, *hb_seen;     /* [nsvc] Reroute numbers emitted / re-sent (markers) */
    gw_idmap_t *hb_ids;                 /* [nsvc] connections with handed-back messages the thread
                                        has not taken yet: their later messages follow them */
    gw_seqtrack_t *rt;               /* [nsvc * nstreams] resolved Messages (seqtrack.h) */
    gw_batch_pool_t pool;            /* buffers of batches done with */
};


/* tests only (delivery.h): called with every batch made, released, split, stripped, dropped */
#define TRACE(d, what, st, b)                                                                  \
    do {                                                                                       \
        if (dlv_trace_batch)                                                                   \
            dlv_trace_batch((d), (what), (st), (b));                                           \
    } while (0)

int dlv__evq_push(evq_t *q, gw_event_t *e);
void dlv__evq_reset(evq_t *q);
int dlv__thread_of(const dlv_t *d, uint64_t conn_id);
void dlv__resolve(dlv_t *d, int k, int st, uint32_t tno);
void dlv__resolve_batch(dlv_t *d, int st, const gw_batch_t *b);
void dlv__publish_usable(dlv_t *d);
void dlv__release_sent(dlv_t *d, dstream_t *s, uint64_t ack);
void dlv__append_batch(dstream_t *s, gw_batch_t *b);
void dlv__lose_event(dlv_t *d, int st, gw_event_t *e, int grpc_status, const char *why);
/* dlv__renew_due: the renewal a lost routed Close asked for, when renew_interval allows (I4;
 * from dlv_tick). */
void dlv__renew_due(dlv_t *d, int64_t now);
void dlv__encode_into(dlv_t *d, dstream_t *s, gw_event_t **evs, size_t n);
void dlv__encode_pending(dlv_t *d, dstream_t *s);
void dlv__strip_stream(dlv_t *d, dstream_t *s, int64_t now);
void dlv__count_failure(dlv_t *d, dstream_t *s);
void dlv__poison_sweep(dlv_t *d, dstream_t *s, int grpc_status, int64_t now);
void dlv__hb_add(dlv_t *d, gw_event_t *e, int st);
void dlv__hb_emit(dlv_t *d);
void dlv__handback_pending(dlv_t *d);
void dlv__hb_marker(dlv_t *d, int k, uint32_t n);

#endif
