/* sim_priv.h: what the simulator's files share (tests use sim.h). sim.c: randomness,
 * violations, the connections' receipts, the world, scheduling and the final checks;
 * sim_gw.c: the gateway's side (service threads, clients, the writer around the delivery
 * machine); sim_node.c: the model API nodes and the network between writer u and node u.
 * Single-threaded: the "threads" are actors the scheduler runs one at a time. */
#ifndef WSGW_SIM_PRIV_H
#define WSGW_SIM_PRIV_H

#include "sim.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../gateway/conn_id.h"
#include "../../gateway/conn_table.h"
#include "../../gateway/delivery.h"
#include "../../gateway/link.h"
#include "../../gateway/msgroute.h"
#include "../../gateway/route.h"
#include "grpc_frame.h"
#include "log.h"
#include "wsgw.pb-c.h"

#define MAXK 3
#define MAXN 3
#define MAXS 4
#define MAXCONNS 2048
#define OUTCAP 6000          /* the gateway's socket buffer toward a node */
#define MS 1000000LL
#define RING 64              /* small rings: overflow and backpressure happen */
#define RENEW_INTERVAL (200 * MS) /* dlv_cfg_t.renew_interval_ns */

enum { MODE_ACK, MODE_PLAIN, MODE_SILENT };
enum { CH_OPEN, CH_DATA, CH_EOF, CH_PING };                          /* gateway -> node */
enum { F_SETTINGS, F_HEADERS, F_ACK, F_CLOSE, F_PINGACK, F_GOAWAY, F_EOF }; /* node -> gw */

typedef struct sim sim_t;

typedef struct chunk {
    int kind, st;
    uint32_t inst;
    uint8_t *data;
    size_t len;
} chunk_t;

typedef struct frame {
    int type, st, status;
    uint32_t inst, err;
    bool acking, end;
    uint64_t seq;
} frame_t;

typedef struct cq { chunk_t *v; size_t head, n, cap; } cq_t; /* chunk queue */
typedef struct fq { frame_t *v; size_t head, n, cap; } fq_t; /* frame queue */

typedef struct sconn {
    gw_conn_t c; /* first: a gw_conn_t * is an sconn_t * */
    int k;
    bool live, kicked, paused;
    bool refuse_close;   /* shared: every node refuses its Close (a poison Close) */
    uint64_t sent;       /* seqs 1..sent were created */
    uint64_t first_max;  /* highest seq first received by a live session */
    uint8_t *recv;       /* receipts per seq by live sessions (saturating) */
    uint8_t *zrecv;      /* receipts by zombie sessions */
    uint8_t *refused;    /* of recv: arrivals on streams the node then refused (not taken) */
    size_t cap;
} sconn_t;

typedef struct ssvc {
    sim_t *sim;
    int k;
    bool woken;
    gw_conn_table_t table;
    gw_mr_t mr;
    uint32_t rs_gen[MAXN], rs_cursor[MAXN];
} ssvc_t;

typedef struct swr { /* writer u: the delivery machine and the gateway side of the transport */
    sim_t *sim;
    int u;
    bool woken;
    dlv_t *d;
    int tstate;          /* 0 none, 1 connecting, 2 session */
    int64_t connect_at;
    uint32_t inst[MAXS];
    bool sopen[MAXS];
    cq_t out;            /* written, not yet arrived at the node */
    size_t outbytes;
    fq_t in;             /* arrived from the node, not yet read */
    bool flushed_note, goaway_seen, cmd_ovf;
    bool touched[MAXK];
    int64_t renewed_at;  /* its last instance renewal (0: none) */
} swr_t;

typedef struct nstr {
    uint32_t inst;
    bool open;
    grpc_dec_t dec;
    uint64_t processed, acked;
} nstr_t;

typedef struct zombie { uint32_t sess, tok; cq_t inbox; nstr_t st[MAXS]; } zombie_t;

typedef struct pres { uint64_t conn; uint32_t sess; } pres_t;

/* A message that arrived at a node without acks on a stream whose open the node has not
 * processed yet: if it refuses that stream, the message was not taken after all. */
typedef struct arrival { uint64_t conn, seq; uint32_t inst; int st; } arrival_t;

typedef struct snode {
    grpc_dec_t adec[MAXS]; /* without acks: what arrived counts (the contract), decoded here,
                            * unless the node refuses the stream it came on (settle_arrivals) */
    uint32_t ainst[MAXS];
    bool aopened[MAXS];    /* the node processed the open of ainst[st] */
    arrival_t *arr;        /* arrivals before their stream's open was processed */
    size_t narr, caparr;
    int mode;
    bool crashed, hung, part, poison, goaway, session, settings_pending;
    int refuse_pm;
    int64_t crash_until, hung_until, part_until;
    uint32_t sess;
    nstr_t st[MAXS];
    cq_t inbox;          /* arrived, not yet processed (while hung) */
    fq_t outq;           /* sent toward the gateway, in flight */
    zombie_t zombies[8];
    int nzombies;
    pres_t *pres;
    size_t npres, cappres;
    bool cur_zombie;     /* the chunk being processed is a zombie's */
    uint32_t cur_sess;
    uint32_t tok, cur_tok; /* shared: the token the session bound (of the chunk processed) */
    bool mismatch;       /* shared: a write found another token: the node ends the session */
    nstr_t *cur_streams;
} snode_t;

struct sim {
    sim_opts_t o;
    /* shared presence (o.shared): one store for all nodes, and the closed connections */
    pres_t *spres;
    size_t nspres, capspres;
    uint64_t *tombs;
    size_t ntombs, captombs;
    uint32_t tok, inst;  /* the store's token (0: none yet) and the instance that bound it */
    sim_result_t *r;
    uint64_t rng;
    size_t bi;
    int64_t now;
    uint64_t step;
    bool faults, failed;
    int nsvc, nup, nstreams, max_attempts;
    gw_t g;
    gw_node_t nodes[MAXN];
    gw_link_t *links[MAXK * MAXN];
    ssvc_t svc[MAXK];
    swr_t w[MAXN];
    snode_t n[MAXN];
    sconn_t *conns[MAXCONNS];
    int nconns;
    uint64_t trace_conn;
};


/* ---- randomness (sim.c's violate and note report) ------------------------------------------ */

static inline uint32_t r32(sim_t *s)
{
    if (s->o.bytes && s->bi < s->o.nbytes)
        return (uint32_t)s->o.bytes[s->bi++] * 2654435761u ^ (uint32_t)(s->rng >> 32);
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    return (uint32_t)((s->rng * 0x2545F4914F6CDD1DULL) >> 32);
}
static inline uint32_t below(sim_t *s, uint32_t n) { return n ? r32(s) % n : 0; }
static inline bool pm(sim_t *s, uint32_t permille) { return below(s, 1000) < permille; }

void violate(sim_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void note(sim_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- queues -------------------------------------------------------------------------------- */

/* A FIFO of T (cq_t of chunks, fq_t of frames): push at the end, pop at the front. */
#define SIM_QUEUE(Q, T, push, pop)                                                             \
    static inline void push(Q *q, T x)                                                         \
    {                                                                                          \
        if (q->head + q->n == q->cap) {                                                        \
            if (q->head) {                                                                     \
                memmove(q->v, q->v + q->head, q->n * sizeof *q->v);                            \
                q->head = 0;                                                                   \
            }                                                                                  \
            if (q->n == q->cap) {                                                              \
                q->cap = q->cap ? q->cap * 2 : 16;                                             \
                q->v = realloc(q->v, q->cap * sizeof *q->v);                                   \
            }                                                                                  \
        }                                                                                      \
        q->v[q->head + q->n++] = x;                                                            \
    }                                                                                          \
    static inline T pop(Q *q)                                                                  \
    {                                                                                          \
        T x = q->v[q->head++];                                                                 \
        if (--q->n == 0)                                                                       \
            q->head = 0;                                                                       \
        return x;                                                                              \
    }
SIM_QUEUE(cq_t, chunk_t, cq_push, cq_pop)
SIM_QUEUE(fq_t, frame_t, fq_push, fq_pop)

static inline void cq_clear(cq_t *q)
{
    while (q->n)
        free(cq_pop(q).data);
}

/* ---- across the files ----------------------------------------------------------------------- */

/* sim.c */
sconn_t *conn_by_id(sim_t *s, uint64_t id);
void conn_grow(sconn_t *c, uint64_t seq);
void receipt(sim_t *s, int u, uint64_t conn, uint64_t seq, bool zombie);

/* sim_gw.c */
gw_link_t *link_of(sim_t *s, int k, int u);
void wake_svc(void *ud);
void wake_writer(void *ud);
extern const gw_mr_ops_t mr_ops;
void svc_run(sim_t *s, ssvc_t *v);
void client_act(sim_t *s);
bool io_open_stream(void *ud, int st);
void io_resume(void *ud, int st);
void io_ping(void *ud);
void io_set_usable(void *ud, bool usable);
void io_emit(void *ud, int k, gw_cmd_t *cmd);
bool io_others(void *ud);
void io_renew(void *ud);
void writer_run(sim_t *s, swr_t *w);

/* sim_node.c */
pres_t *pres_find(snode_t *n, uint64_t conn);
pres_t *spres_find(sim_t *s, uint64_t conn);
void node_accept(sim_t *s, int u);
void node_conn_lost(sim_t *s, int u);
void node_run(sim_t *s, int u);
bool net_run(sim_t *s, int u);

#endif
