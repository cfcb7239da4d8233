/* sim.c: deterministic simulation of the gateway's delivery protocol (see sim.h).
 * Single-threaded: the "threads" are actors the scheduler runs one at a time. */
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
} swr_t;

typedef struct nstr {
    uint32_t inst;
    bool open;
    grpc_dec_t dec;
    uint64_t processed, acked;
} nstr_t;

typedef struct zombie { uint32_t sess; cq_t inbox; nstr_t st[MAXS]; } zombie_t;

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
    nstr_t *cur_streams;
} snode_t;

struct sim {
    sim_opts_t o;
    /* shared presence (o.shared): one store for all nodes, and the closed connections */
    pres_t *spres;
    size_t nspres, capspres;
    uint64_t *tombs;
    size_t ntombs, captombs;
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

/* ---- randomness, violations ---------------------------------------------------------------- */

static uint32_t r32(sim_t *s)
{
    if (s->o.bytes && s->bi < s->o.nbytes)
        return (uint32_t)s->o.bytes[s->bi++] * 2654435761u ^ (uint32_t)(s->rng >> 32);
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    return (uint32_t)((s->rng * 0x2545F4914F6CDD1DULL) >> 32);
}
static uint32_t below(sim_t *s, uint32_t n) { return n ? r32(s) % n : 0; }
static bool pm(sim_t *s, uint32_t permille) { return below(s, 1000) < permille; }

static void violate(sim_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void violate(sim_t *s, const char *fmt, ...)
{
    if (s->failed)
        return;
    s->failed = true;
    va_list ap;
    va_start(ap, fmt);
    int n = snprintf(s->r->violation, sizeof s->r->violation, "step %llu t=%lldms: ",
                     (unsigned long long)s->step, (long long)(s->now / MS));
    vsnprintf(s->r->violation + n, sizeof s->r->violation - (size_t)n, fmt, ap);
    va_end(ap);
}

static void note(sim_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(sim_t *s, const char *fmt, ...)
{
    if (s->o.verbose < 1)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "[%llu t=%lldms] ", (unsigned long long)s->step, (long long)(s->now / MS));
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* ---- queues -------------------------------------------------------------------------------- */

/* A FIFO of T (cq_t of chunks, fq_t of frames): push at the end, pop at the front. */
#define SIM_QUEUE(Q, T, push, pop)                                                             \
    static void push(Q *q, T x)                                                                \
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
    static T pop(Q *q)                                                                         \
    {                                                                                          \
        T x = q->v[q->head++];                                                                 \
        if (--q->n == 0)                                                                       \
            q->head = 0;                                                                       \
        return x;                                                                              \
    }
SIM_QUEUE(cq_t, chunk_t, cq_push, cq_pop)
SIM_QUEUE(fq_t, frame_t, fq_push, fq_pop)

static void cq_clear(cq_t *q)
{
    while (q->n)
        free(cq_pop(q).data);
}

/* ---- connections --------------------------------------------------------------------------- */

static sconn_t *conn_by_id(sim_t *s, uint64_t id)
{
    unsigned k = conn_id_thread(id);
    if (k >= (unsigned)s->nsvc)
        return NULL;
    /* live ones through the table; closed ones by a scan (rare: late receipts) */
    gw_conn_t *c = gw_conn_table_get(&s->svc[k].table, id);
    if (c)
        return (sconn_t *)c;
    for (int i = s->nconns - 1; i >= 0; i--)
        if (s->conns[i]->c.id == id)
            return s->conns[i];
    return NULL;
}

static void conn_grow(sconn_t *c, uint64_t seq)
{
    if (seq < c->cap)
        return;
    size_t ncap = c->cap ? c->cap * 2 : 16;
    while (ncap <= seq)
        ncap *= 2;
    c->recv = realloc(c->recv, ncap);
    c->zrecv = realloc(c->zrecv, ncap);
    c->refused = realloc(c->refused, ncap);
    memset(c->recv + c->cap, 0, ncap - c->cap);
    memset(c->zrecv + c->cap, 0, ncap - c->cap);
    memset(c->refused + c->cap, 0, ncap - c->cap);
    c->cap = ncap;
}

/* An API node took Message (conn, seq) in (I3 and the bound of I4 are checked here). */
static void receipt(sim_t *s, int u, uint64_t conn, uint64_t seq, bool zombie)
{
    sconn_t *c = conn_by_id(s, conn);
    if (!c || seq == 0 || seq > c->sent) {
        violate(s, "node %d got a message nobody sent: conn %llx seq %llu", u,
                (unsigned long long)conn, (unsigned long long)seq);
        return;
    }
    conn_grow(c, seq);
    if (zombie) {
        if (c->zrecv[seq] < 255)
            c->zrecv[seq]++;
        return;
    }
    if (s->o.verbose >= 1 && c->c.id == s->trace_conn)
        note(s, "node %d got conn %llx seq %llu%s", u, (unsigned long long)conn,
             (unsigned long long)seq, c->recv[seq] ? " (again)" : "");
    if (!c->recv[seq]) {
        if (seq < c->first_max)
            violate(s, "order: node %d first got conn %llx seq %llu after seq %llu", u,
                    (unsigned long long)conn, (unsigned long long)seq,
                    (unsigned long long)c->first_max);
        c->first_max = seq;
        s->r->received++;
    }
    if (c->recv[seq] < 255)
        c->recv[seq]++;
    /* I4: a batch is re-sent after each failure it had a part in, up to max_attempts, plus
     * once alone after a split; a poison message ahead of it on its stream costs it at most
     * two more (the poison is split off, then dropped). Arrivals on streams the node refused
     * do not count: it took nothing there, and a refusal is not a failure (delivery.c) */
    uint64_t bound = (uint64_t)s->max_attempts + 2 + 2 * s->r->poisons;
    if ((uint64_t)(c->recv[seq] - c->refused[seq]) > bound)
        violate(s, "conn %llx seq %llu received %d times, %d of them on refused streams "
                "(max_attempts %d, bound %llu)", (unsigned long long)conn,
                (unsigned long long)seq, c->recv[seq], c->refused[seq], s->max_attempts,
                (unsigned long long)bound);
}

/* ---- service threads ----------------------------------------------------------------------- */

static gw_link_t *link_of(sim_t *s, int k, int u) { return s->links[k * s->nup + u]; }

static void wake_svc(void *ud) { ((ssvc_t *)ud)->woken = true; }
static void wake_writer(void *ud) { ((swr_t *)ud)->woken = true; }

static bool mr_push(void *ud, int u, gw_event_t *e)
{
    ssvc_t *v = ud;
    gw_link_t *l = link_of(v->sim, v->k, u);
    bool was = gw_handoff_overflowing(&l->up);
    bool in = gw_handoff_push(&l->up, e);
    if (v->sim->o.verbose && e->conn_id == v->sim->trace_conn)
        note(v->sim, "push to %d: type %d seq %llu -> %s (overflow before: %d)", u, e->type,
             (unsigned long long)e->seq, in ? "ring" : "overflow", was);
    gw_link_wake_writer(l);
    return in;
}
static void mr_pause(void *ud, gw_conn_t *c)
{
    (void)ud;
    ((sconn_t *)c)->paused = true;
}
static void mr_wake(void *ud) { ((ssvc_t *)ud)->woken = true; }
static void mr_want_done(void *ud, int u, bool on)
{
    ssvc_t *v = ud;
    atomic_store(&link_of(v->sim, v->k, u)->want_done, on);
}
static uint32_t mr_done(void *ud, int u, int st)
{
    ssvc_t *v = ud;
    return atomic_load(&link_of(v->sim, v->k, u)->done[st]);
}
static gw_conn_t *mr_conn(void *ud, uint64_t id)
{
    return gw_conn_table_get(&((ssvc_t *)ud)->table, id);
}
/* Open and Close go to every node (svc.c gw_svc_push_all). */
static bool to_all(sim_t *s, int k, gw_event_t *e)
{
    bool fit = true;
    for (int u = 0; u < s->nup; u++) {
        gw_event_t *x = u == s->nup - 1 ? e : gw_event_dup(e);
        if (!mr_push(&s->svc[k], u, x))
            fit = false;
    }
    return fit;
}
static void mr_to_all(void *ud, gw_event_t *e)
{
    ssvc_t *v = ud;
    to_all(v->sim, v->k, e);
}
static const gw_mr_ops_t mr_ops = {mr_push,      mr_pause, mr_wake,  mr_want_done,
                                   mr_done,      mr_conn,  mr_to_all};

static gw_event_t *open_event(sconn_t *c, uint32_t gen)
{
    const char *u = c->c.user ? c->c.user : "";
    gw_event_t *e = gw_event_new(GW_EV_OPEN, c->c.id, u, strlen(u), "127.0.0.1:1", 11, "", 0,
                                 "/gateway/ws", 11);
    e->code = (int32_t)gen;
    return e;
}

static void conn_close(sim_t *s, sconn_t *c, int code)
{
    if (!c->live)
        return;
    ssvc_t *v = &s->svc[c->k];
    const char *u = c->c.user ? c->c.user : "";
    gw_event_t *e = gw_event_new(GW_EV_CLOSE, c->c.id, u, strlen(u), "", 0, NULL, 0, NULL, 0);
    e->code = code;
    e->routed = s->o.shared != 0; /* shared presence: to one node, after its messages */
    gw_msgroute_close(&v->mr, &c->c, e);
    gw_conn_table_remove(&v->table, &c->c);
    c->live = false;
}

static void run_cmd(sim_t *s, ssvc_t *v, int u, gw_cmd_t *cmd)
{
    switch (cmd->type) {
    case GW_CMD_REROUTE:
        if (s->o.verbose)
            note(s, "thread %d takes reroute %d from node %d", v->k, cmd->code, u);
        gw_msgroute_reroute(&v->mr, u, cmd);
        mr_push(v, u, gw_msgroute_marker((unsigned)v->k, cmd->code));
        break;
    case GW_CMD_RESYNC:
        v->rs_gen[u] = (uint32_t)cmd->code;
        v->rs_cursor[u] = 0;
        break;
    case GW_CMD_KICK:
        for (uint32_t i = 0; i < cmd->nconns; i++) {
            gw_conn_t *gc = gw_conn_table_get(&v->table, cmd->conns[i]);
            if (gc) {
                ((sconn_t *)gc)->kicked = true;
                note(s, "kick conn %llx code %d", (unsigned long long)gc->id, cmd->code);
                conn_close(s, (sconn_t *)gc, cmd->code);
            } else {
                sconn_t *c = conn_by_id(s, cmd->conns[i]);
                if (c) /* closed already: the client learnt nothing, but nothing is pending */
                    c->kicked = true;
            }
        }
        break;
    default:
        break;
    }
}

/* svc.c resync_run */
static void resync_run(sim_t *s, ssvc_t *v, int u)
{
    gw_link_t *l = link_of(s, v->k, u);
    gw_conn_table_t *t = &v->table;
    for (uint32_t i = v->rs_cursor[u]; i < t->used; i++) {
        gw_conn_t *c = t->slots[i];
        if (!c) {
            v->rs_cursor[u] = i + 1;
            continue;
        }
        gw_event_t *e = open_event((sconn_t *)c, v->rs_gen[u]);
        if (!gw_handoff_try_ring(&l->up, e)) {
            gw_event_free(e);
            gw_link_wake_writer(l);
            return;
        }
        v->rs_cursor[u] = i + 1;
    }
    gw_event_t *done = gw_event_new(GW_EV_RESYNC_DONE, 0, NULL, 0, NULL, 0, NULL, 0, NULL, 0);
    done->code = (int32_t)v->rs_gen[u];
    if (!gw_handoff_try_ring(&l->up, done)) {
        gw_event_free(done);
        gw_link_wake_writer(l);
        return;
    }
    v->rs_gen[u] = 0;
    gw_link_wake_writer(l);
}

/* svc.c gw_svc_on_wake */
static void svc_run(sim_t *s, ssvc_t *v)
{
    v->woken = false;
    gw_msgroute_snapshot(&v->mr);
    for (int u = 0; u < s->nup; u++) {
        void *cmds[16];
        size_t n;
        while ((n = gw_handoff_pop(&link_of(s, v->k, u)->down, cmds, 16)) > 0)
            for (size_t i = 0; i < n; i++) {
                run_cmd(s, v, u, cmds[i]);
                gw_cmd_free(cmds[i]);
            }
    }
    if (v->mr.nheld)
        gw_msgroute_release(&v->mr);
    for (int u = 0; u < s->nup; u++)
        if (v->rs_gen[u])
            resync_run(s, v, u);
    bool clear = true;
    for (int u = 0; u < s->nup; u++) {
        gw_link_t *l = link_of(s, v->k, u);
        if (!gw_handoff_overflowing(&l->up))
            continue;
        if (!gw_handoff_flush(&l->up))
            clear = false;
        gw_link_wake_writer(l);
    }
    if (clear)
        for (uint32_t i = 0; i < v->table.used; i++) {
            sconn_t *c = (sconn_t *)v->table.slots[i];
            if (c && c->paused && !c->c.held)
                c->paused = false;
        }
}

/* ---- clients ------------------------------------------------------------------------------- */

static void client_open(sim_t *s, int k)
{
    if (s->nconns == MAXCONNS)
        return;
    sconn_t *c = calloc(1, sizeof *c);
    c->k = k;
    c->c.node = GW_NODE_NONE;
    if (pm(s, 800)) {
        char u[8];
        snprintf(u, sizeof u, "u%u", below(s, 6));
        c->c.user = strdup(u);
    }
    if (gw_conn_table_add(&s->svc[k].table, &c->c) < 0) {
        free(c->c.user);
        free(c);
        return;
    }
    c->live = true;
    s->conns[s->nconns++] = c;
    s->r->conns++;
    if (s->o.shared) { /* to one node, ahead of its messages (ws.c) */
        gw_event_t *e = open_event(c, 0);
        e->routed = 1;
        gw_msgroute_send(&s->svc[k].mr, &c->c, e);
    } else if (!to_all(s, k, open_event(c, 0))) {
        c->paused = true;
    }
}

static sconn_t *pick_live(sim_t *s, int k, bool sendable)
{
    gw_conn_table_t *t = &s->svc[k].table;
    if (!t->live)
        return NULL;
    uint32_t start = below(s, t->used);
    for (uint32_t i = 0; i < t->used; i++) {
        sconn_t *c = (sconn_t *)t->slots[(start + i) % t->used];
        if (c && (!sendable || !c->paused))
            return c;
    }
    return NULL;
}

static void client_send(sim_t *s, int k)
{
    sconn_t *c = pick_live(s, k, true);
    if (!c)
        return;
    bool poison = s->faults && pm(s, 15);
    char p[32];
    int n = snprintf(p, sizeof p, "%s%llu", poison ? "POISON" : "m", (unsigned long long)c->sent + 1);
    const char *u = c->c.user ? c->c.user : "";
    gw_event_t *e = gw_event_new(GW_EV_MESSAGE, c->c.id, u, strlen(u), p, (size_t)n, NULL, 0,
                                 NULL, 0);
    e->seq = ++c->sent;
    e->gateway_ns = s->now;
    e->t_read = s->now;
    conn_grow(c, c->sent);
    s->r->messages++;
    s->r->poisons += poison;
    int st = gw_route_stream(c->c.id, s->nstreams);
    int before = c->c.node;
    uint32_t mark = c->c.mark;
    gw_msgroute_send(&s->svc[k].mr, &c->c, e);
    if (s->o.verbose && c->c.id == s->trace_conn)
        note(s, "send seq %llu: node %d mark %u done_seen %u -> node %d mark %u%s",
             (unsigned long long)c->sent, before, mark,
             before < MAXN ? s->svc[k].mr.done_seen[before * s->nstreams + st] : 0,
             c->c.node, c->c.mark, c->c.held ? " held" : "");
}

static void client_act(sim_t *s)
{
    int k = (int)below(s, (uint32_t)s->nsvc);
    uint32_t x = below(s, 100);
    if (x < 8 || !s->svc[k].table.live)
        client_open(s, k);
    else if (x < 12) {
        sconn_t *c = pick_live(s, k, false);
        if (c)
            conn_close(s, c, 1000);
    } else
        client_send(s, k);
}

/* ---- API nodes --------------------------------------------------------------------------- */

static void node_send(sim_t *s, int u, frame_t f)
{
    fq_push(&s->n[u].outq, f);
}

static pres_t *pres_find(snode_t *n, uint64_t conn)
{
    for (size_t i = 0; i < n->npres; i++)
        if (n->pres[i].conn == conn)
            return &n->pres[i];
    return NULL;
}

/* ws-api's rules (api/presence.c): an entry belongs to the session its latest Open came on;
 * events of an older session than the entry's are stale and ignored. */
static void pres_open(snode_t *n, uint64_t conn, uint32_t sess)
{
    pres_t *p = pres_find(n, conn);
    if (p) {
        if (p->sess <= sess)
            p->sess = sess;
        return;
    }
    if (n->npres == n->cappres) {
        n->cappres = n->cappres ? n->cappres * 2 : 64;
        n->pres = realloc(n->pres, n->cappres * sizeof *n->pres);
    }
    n->pres[n->npres++] = (pres_t){conn, sess};
}
static void pres_close(snode_t *n, uint64_t conn, uint32_t sess)
{
    pres_t *p = pres_find(n, conn);
    if (p && p->sess <= sess)
        *p = n->pres[--n->npres];
}
static void pres_drop_session(snode_t *n, uint32_t sess)
{
    for (size_t i = 0; i < n->npres;)
        if (n->pres[i].sess == sess)
            n->pres[i] = n->pres[--n->npres];
        else
            i++;
}

/* Shared presence (ws-api --redis, api/cluster_pres.c): one store; a Close leaves a tombstone
 * that refuses any later Open of that connection (read late by a zombie, or a resync Open that
 * raced with its Close on another node). */
static bool tombed(const sim_t *s, uint64_t conn)
{
    for (size_t i = 0; i < s->ntombs; i++)
        if (s->tombs[i] == conn)
            return true;
    return false;
}
static pres_t *spres_find(sim_t *s, uint64_t conn)
{
    for (size_t i = 0; i < s->nspres; i++)
        if (s->spres[i].conn == conn)
            return &s->spres[i];
    return NULL;
}
static void shared_open(sim_t *s, uint64_t conn)
{
    if (tombed(s, conn) || spres_find(s, conn))
        return;
    if (s->nspres == s->capspres) {
        s->capspres = s->capspres ? s->capspres * 2 : 64;
        s->spres = realloc(s->spres, s->capspres * sizeof *s->spres);
    }
    s->spres[s->nspres++] = (pres_t){conn, 0};
}
static void shared_close(sim_t *s, uint64_t conn)
{
    pres_t *p = spres_find(s, conn);
    if (p)
        *p = s->spres[--s->nspres];
    if (tombed(s, conn))
        return;
    if (s->ntombs == s->captombs) {
        s->captombs = s->captombs ? s->captombs * 2 : 64;
        s->tombs = realloc(s->tombs, s->captombs * sizeof *s->tombs);
    }
    s->tombs[s->ntombs++] = conn;
}

typedef struct up_ctx { sim_t *s; int u, st; nstr_t *ns; } up_ctx_t;

/* One Upstream message processed by node u on stream st. Returns -1 to stop the stream. */
static int node_upstream(void *ud, const uint8_t *msg, size_t len)
{
    up_ctx_t *x = ud;
    sim_t *s = x->s;
    snode_t *n = &s->n[x->u];
    Wsgw__V1__Upstream *up = wsgw__v1__upstream__unpack(NULL, len, msg);
    if (!up) {
        violate(s, "node %d: undecodable batch", x->u);
        return -1;
    }
    int rv = 0;
    for (size_t i = 0; i < up->n_events && rv == 0; i++) {
        const Wsgw__V1__Event *ev = up->events[i];
        switch (ev->kind_case) {
        case WSGW__V1__EVENT__KIND_OPEN:
            if (s->o.verbose && ev->conn_id == s->trace_conn)
                note(s, "node %d: Open on stream %d session %u%s", x->u, x->st, n->cur_sess,
                     n->cur_zombie ? " (zombie)" : "");
            if (s->o.shared)
                shared_open(s, ev->conn_id);
            else
                pres_open(n, ev->conn_id, n->cur_sess);
            break;
        case WSGW__V1__EVENT__KIND_CLOSE:
            if (s->o.verbose && ev->conn_id == s->trace_conn)
                note(s, "node %d: Close on stream %d session %u%s", x->u, x->st, n->cur_sess,
                     n->cur_zombie ? " (zombie)" : "");
            if (s->o.shared)
                shared_close(s, ev->conn_id);
            else
                pres_close(n, ev->conn_id, n->cur_sess);
            break;
        case WSGW__V1__EVENT__KIND_MESSAGE: {
            bool poison = n->poison && ev->message->payload.len >= 6 &&
                          memcmp(ev->message->payload.data, "POISON", 6) == 0;
            /* with acks a message counts once handled (a poison one never is); without, once
             * it arrived (the contract: node_arrived) */
            if (!poison && n->mode == MODE_ACK)
                receipt(s, x->u, ev->conn_id, ev->message->seq, n->cur_zombie);
            if (poison) {
                note(s, "node %d: poison conn %llx seq %llu%s", x->u,
                     (unsigned long long)ev->conn_id, (unsigned long long)ev->message->seq,
                     n->cur_zombie ? " (zombie)" : "");
                if (!n->cur_zombie)
                    node_send(s, x->u, (frame_t){.type = F_CLOSE, .st = x->st,
                                                 .inst = x->ns->inst, .status = 8});
                x->ns->open = false;
                rv = -1;
            }
            break;
        }
        default:
            break;
        }
    }
    if (rv == 0)
        x->ns->processed = up->seq;
    wsgw__v1__upstream__free_unpacked(up, NULL);
    return rv;
}

static void settle_arrivals(sim_t *s, snode_t *n, int st, uint32_t inst, bool refused);

static void node_stream_open(sim_t *s, int u, int st, uint32_t inst)
{
    snode_t *n = &s->n[u];
    nstr_t *ns = &n->st[st];
    grpc_dec_free(&ns->dec);
    grpc_dec_init(&ns->dec, 1 << 20);
    ns->inst = inst;
    ns->processed = ns->acked = 0;
    bool refuse = n->goaway || pm(s, (uint32_t)n->refuse_pm);
    settle_arrivals(s, n, st, inst, refuse);
    if (refuse) {
        note(s, "node %d refuses stream %d", u, st);
        node_send(s, u, (frame_t){.type = F_HEADERS, .st = st, .inst = inst, .end = true,
                                  .status = 14});
        node_send(s, u, (frame_t){.type = F_CLOSE, .st = st, .inst = inst, .status = 14});
        ns->open = false;
        return;
    }
    ns->open = true;
    if (n->mode != MODE_SILENT)
        node_send(s, u, (frame_t){.type = F_HEADERS, .st = st, .inst = inst,
                                  .acking = n->mode == MODE_ACK, .status = -1});
}

/* Processes one arrived chunk on the streams ns (a zombie's: of a session the gateway
 * already closed; it sends nothing any more). */
static void node_chunk(sim_t *s, int u, nstr_t *streams, chunk_t *c, bool zombie,
                       uint32_t sess)
{
    snode_t *n = &s->n[u];
    nstr_t *ns = &streams[c->st];
    n->cur_zombie = zombie;
    n->cur_sess = sess;
    switch (c->kind) {
    case CH_OPEN:
        if (!zombie) {
            node_stream_open(s, u, c->st, c->inst);
        } else {
            grpc_dec_free(&ns->dec);
            grpc_dec_init(&ns->dec, 1 << 20);
            ns->inst = c->inst;
            ns->open = true;
        }
        break;
    case CH_DATA:
        if (ns->open && ns->inst == c->inst) {
            up_ctx_t x = {s, u, c->st, ns};
            grpc_dec_feed(&ns->dec, c->data, c->len, node_upstream, &x);
        }
        break;
    case CH_EOF: /* the gateway ended its request: the node finishes the call */
        if (!zombie && ns->open && ns->inst == c->inst)
            node_send(s, u, (frame_t){.type = F_CLOSE, .st = c->st, .inst = c->inst,
                                      .status = 0});
        if (ns->inst == c->inst)
            ns->open = false;
        break;
    case CH_PING:
        if (!zombie)
            node_send(s, u, (frame_t){.type = F_PINGACK});
        break;
    }
}

static void node_process(sim_t *s, int u)
{
    snode_t *n = &s->n[u];
    if (n->hung || n->crashed)
        return;
    for (int z = 0; z < n->nzombies; z++) { /* what a stopped node read before it stopped */
        zombie_t *zb = &n->zombies[z];
        while (zb->inbox.n) {
            chunk_t c = cq_pop(&zb->inbox);
            node_chunk(s, u, zb->st, &c, true, zb->sess);
            free(c.data);
        }
        free(zb->inbox.v);
        for (int i = 0; i < MAXS; i++)
            grpc_dec_free(&zb->st[i].dec);
        pres_drop_session(n, zb->sess);
    }
    n->nzombies = 0;
    if (!n->session)
        return;
    if (n->settings_pending) {
        n->settings_pending = false;
        node_send(s, u, (frame_t){.type = F_SETTINGS});
    }
    while (n->inbox.n) {
        chunk_t c = cq_pop(&n->inbox);
        node_chunk(s, u, n->st, &c, false, n->sess);
        free(c.data);
    }
}

/* The gateway connected. */
static void node_accept(sim_t *s, int u)
{
    snode_t *n = &s->n[u];
    n->session = true;
    n->sess++;
    n->goaway = false;
    n->settings_pending = true;
    for (int i = 0; i < MAXS; i++)
        n->st[i].open = false;
    node_process(s, u);
}

/* The connection is gone (closed by either side). A stopped node notices when it wakes: it
 * reads what had arrived first (a zombie), then drops the session's presence. */
static void node_conn_lost(sim_t *s, int u)
{
    snode_t *n = &s->n[u];
    if (!n->session)
        return;
    n->session = false;
    n->outq.n = n->outq.head = 0;
    n->narr = 0; /* arrivals whose opens it never processed: taken (a zombie refuses nothing) */
    if (n->hung && n->nzombies < 8) {
        zombie_t *zb = &n->zombies[n->nzombies++];
        zb->sess = n->sess;
        zb->inbox = n->inbox;
        memset(&n->inbox, 0, sizeof n->inbox);
        memcpy(zb->st, n->st, sizeof zb->st); /* decoders move with it */
        for (int i = 0; i < MAXS; i++) {
            memset(&n->st[i], 0, sizeof n->st[i]);
            grpc_dec_init(&n->st[i].dec, 1 << 20);
        }
        return;
    }
    cq_clear(&n->inbox);
    for (int i = 0; i < MAXS; i++)
        n->st[i].open = false;
    pres_drop_session(n, n->sess);
}

/* Acks, faults, recovery. */
static void node_run(sim_t *s, int u)
{
    snode_t *n = &s->n[u];
    swr_t *w = &s->w[u];
    if (n->crashed && s->now >= n->crash_until)
        n->crashed = false;
    if (n->part && s->now >= n->part_until)
        n->part = false;
    if (n->hung && s->now >= n->hung_until) {
        n->hung = false;
        node_process(s, u);
    }
    if (s->faults && !n->crashed && pm(s, 4)) {
        uint32_t f = below(s, 6);
        if (f == 0 && n->mode == MODE_ACK) {
            note(s, "node %d crashes", u);
            s->r->crashes++;
            n->crashed = true;
            n->hung = false;
            n->crash_until = s->now + (20 + below(s, 800)) * MS;
            cq_clear(&n->inbox);
            for (int z = 0; z < n->nzombies; z++) {
                cq_clear(&n->zombies[z].inbox);
                free(n->zombies[z].inbox.v);
                for (int i = 0; i < MAXS; i++)
                    grpc_dec_free(&n->zombies[z].st[i].dec);
            }
            n->nzombies = 0;
            if (n->session) {
                node_conn_lost(s, u);
                fq_push(&w->in, (frame_t){.type = F_EOF});
                w->woken = true;
            }
            n->npres = 0; /* the process is gone, and its memory */
            return;
        }
        if (f == 1 && n->mode == MODE_ACK && !n->hung) {
            note(s, "node %d hangs", u);
            s->r->hangs++;
            n->hung = true;
            n->hung_until = s->now + (20 + below(s, 1200)) * MS;
        } else if (f == 2 && !n->part) {
            note(s, "network to node %d black-holed", u);
            s->r->partitions++;
            n->part = true;
            n->part_until = s->now + (20 + below(s, 1000)) * MS;
        } else if (f == 3 && n->session && !n->goaway && !n->hung) {
            note(s, "node %d goes away", u);
            s->r->goaways++;
            n->goaway = true;
            node_send(s, u, (frame_t){.type = F_GOAWAY});
        } else if (f >= 4 && n->session && !n->hung) {
            int st = (int)below(s, (uint32_t)s->nstreams);
            if (n->st[st].open) {
                note(s, "node %d resets stream %d", u, st);
                s->r->resets++;
                n->st[st].open = false;
                node_send(s, u, (frame_t){.type = F_CLOSE, .st = st, .inst = n->st[st].inst,
                                          .status = f == 4 ? 14 : 1});
            }
        }
    }
    if (n->hung || n->crashed || !n->session || n->mode != MODE_ACK)
        return;
    for (int i = 0; i < s->nstreams; i++) {
        nstr_t *ns = &n->st[i];
        if (!ns->open || ns->processed <= ns->acked || pm(s, 300))
            continue;
        uint64_t a = ns->processed;
        if (a > ns->acked + 1 && pm(s, 200))
            a = ns->acked + 1 + below(s, (uint32_t)(a - ns->acked - 1)); /* partial */
        node_send(s, u, (frame_t){.type = F_ACK, .st = i, .inst = ns->inst, .seq = a});
        if (pm(s, 50)) /* duplicate */
            node_send(s, u, (frame_t){.type = F_ACK, .st = i, .inst = ns->inst, .seq = a});
        ns->acked = a;
    }
}

/* ---- the writer: dlv_io_t and the loop turn (upstream.c up_main) ---------------------------- */

static bool io_open_stream(void *ud, int st)
{
    swr_t *w = ud;
    if (w->sim->faults && pm(w->sim, 10)) {
        note(w->sim, "writer %d: stream %d submit fails", w->u, st);
        return false;
    } /* nghttp2 refused the submit (e.g. out of stream ids) */
    w->inst[st]++;
    w->sopen[st] = true;
    w->woken = true; /* nghttp2 wants to write the request (and its body) */
    cq_push(&w->out, (chunk_t){.kind = CH_OPEN, .st = st, .inst = w->inst[st]});
    return true;
}
static void io_resume(void *ud, int st)
{
    (void)st;
    ((swr_t *)ud)->woken = true;
}
static void io_ping(void *ud)
{
    swr_t *w = ud;
    cq_push(&w->out, (chunk_t){.kind = CH_PING});
    w->woken = true;
}
static void io_set_usable(void *ud, bool on)
{
    swr_t *w = ud;
    atomic_store(&w->sim->nodes[w->u].connected, on);
}
static void io_emit(void *ud, int k, gw_cmd_t *cmd)
{
    swr_t *w = ud;
    if (w->sim->o.verbose && cmd->type == GW_CMD_REROUTE)
        for (gw_event_t *e = cmd->events; e; e = e->next)
            if (e->conn_id == w->sim->trace_conn)
                note(w->sim, "writer %d hands back seq %llu in reroute %d (state %d)", w->u,
                     (unsigned long long)e->seq, cmd->code, dlv_state(w->d));
    if (!gw_handoff_push(&link_of(w->sim, k, w->u)->down, cmd))
        w->cmd_ovf = true;
    w->touched[k] = true;
}
static bool io_others(void *ud)
{
    swr_t *w = ud;
    for (int u = 0; u < w->sim->nup; u++)
        if (u != w->u && atomic_load(&w->sim->nodes[u].connected))
            return true;
    return false;
}

static void publish(void *ud, int k, int st, uint32_t n)
{
    swr_t *w = ud;
    gw_link_t *l = link_of(w->sim, k, w->u);
    if (getenv("SIM_PUB") && w->u == atoi(getenv("SIM_PUB")))
        fprintf(stderr, "  pub u%d k%d st%d +%u -> %u\n", w->u, k, st, n, atomic_load(&l->done[st]) + n);
    atomic_store(&l->done[st], atomic_load(&l->done[st]) + n);
    if (atomic_load(&l->want_done))
        gw_link_wake_svc(l);
}

static void transport_close(sim_t *s, swr_t *w, const char *why)
{
    bool lost = w->outbytes > 0;
    cq_clear(&w->out);
    w->outbytes = 0;
    w->in.n = w->in.head = 0;
    w->tstate = 0;
    w->goaway_seen = false;
    for (int i = 0; i < MAXS; i++)
        w->sopen[i] = false;
    node_conn_lost(s, w->u);
    dlv_session_down(w->d, why, lost, s->now);
}

static void writer_frame(sim_t *s, swr_t *w, frame_t f)
{
    dlv_heard(w->d, s->now);
    bool cur = f.st >= 0 && f.st < MAXS && w->sopen[f.st] && f.inst == w->inst[f.st];
    switch (f.type) {
    case F_SETTINGS:
        dlv_settings(w->d, s->now);
        break;
    case F_HEADERS:
        if (cur)
            dlv_headers(w->d, f.st, f.acking, f.end, f.status, s->now);
        break;
    case F_ACK:
        if (cur)
            dlv_ack(w->d, f.st, f.seq, s->now);
        break;
    case F_CLOSE:
        if (cur) {
            w->sopen[f.st] = false;
            dlv_stream_closed(w->d, f.st, f.status, 0, s->now);
        }
        break;
    case F_PINGACK:
        dlv_ping_acked(w->d, s->now);
        break;
    case F_GOAWAY:
        w->goaway_seen = true;
        dlv_goaway(w->d, 0, s->now);
        break;
    default:
        break;
    }
}

/* Moves stream bytes into the socket buffer (flush_out). */
static void writer_write(sim_t *s, swr_t *w)
{
    uint8_t buf[1500];
    bool wrote = false;
    int first = (int)below(s, (uint32_t)s->nstreams);
    for (int i = 0; i < s->nstreams && w->outbytes < OUTCAP; i++) {
        int st = (i + first) % s->nstreams;
        while (w->sopen[st] && w->outbytes < OUTCAP) {
            size_t room = OUTCAP - w->outbytes < sizeof buf ? OUTCAP - w->outbytes : sizeof buf;
            bool eof;
            ssize_t n = dlv_stream_read(w->d, st, buf, 1 + below(s, (uint32_t)room), &eof);
            if (n > 0) {
                uint8_t *data = malloc((size_t)n);
                memcpy(data, buf, (size_t)n);
                cq_push(&w->out, (chunk_t){.kind = CH_DATA, .st = st, .inst = w->inst[st],
                                           .data = data, .len = (size_t)n});
                w->outbytes += (size_t)n;
                wrote = true;
            } else {
                if (n == 0 && eof)
                    cq_push(&w->out, (chunk_t){.kind = CH_EOF, .st = st, .inst = w->inst[st]});
                break;
            }
        }
    }
    dlv_output_blocked(w->d, w->outbytes >= OUTCAP);
    if (!wrote && !w->outbytes)
        dlv_flushed(w->d, s->now);
}

static void writer_run(sim_t *s, swr_t *w)
{
    w->woken = false;
    while (w->tstate == 2 && w->in.n) {
        frame_t f = fq_pop(&w->in);
        if (f.type == F_EOF) {
            transport_close(s, w, "closed by the node");
            break;
        }
        writer_frame(s, w, f);
    }
    if (w->flushed_note) {
        w->flushed_note = false;
        if (w->tstate == 2 && !w->outbytes)
            dlv_flushed(w->d, s->now);
    }
    if (w->tstate == 0 && dlv_connect_due(w->d, s->now)) {
        dlv_connecting(w->d, s->now);
        w->tstate = 1;
        w->connect_at = s->now + (1 + below(s, 20)) * MS;
    }
    if (w->tstate == 1 && s->now >= w->connect_at) {
        snode_t *n = &s->n[w->u];
        if (n->crashed) {
            w->tstate = 0;
            dlv_session_down(w->d, "connection refused", false, s->now);
        } else if (!n->part) { /* a black hole: the connect timeout ends it */
            w->tstate = 2;
            s->r->sessions++;
            node_accept(s, w->u);
            dlv_session_up(w->d, s->now);
        }
    }
    dlv_tick(w->d, s->now); /* before taking events and publishing: it may release some */
    const char *why = dlv_disconnect_wanted(w->d);
    if (why) {
        if (w->tstate == 2)
            transport_close(s, w, why);
        else {
            w->tstate = 0;
            dlv_session_down(w->d, why, false, s->now);
        }
    }
    for (int k = 0; k < s->nsvc; k++) {
        void *items[32];
        size_t n;
        while (!dlv_full(w->d) &&
               (n = gw_handoff_pop(&link_of(s, k, w->u)->up, items, 1 + below(s, 32))) > 0)
            for (size_t i = 0; i < n; i++) {
                gw_event_t *e = items[i];
                int ty = e->type;
                uint64_t id = e->conn_id, sq = e->seq;
                int cd = e->code;
                dlv_take(w->d, e, s->now); /* (e may be gone now) */
                if (s->o.verbose && (id == s->trace_conn || ty == GW_EV_REROUTED))
                    note(s, "writer %d took type %d seq %llu code %d (state %d)", w->u, ty,
                         (unsigned long long)sq, cd, dlv_state(w->d));
            }
    }
    dlv_flush_events(w->d, s->now);
    if (w->cmd_ovf) {
        bool left = false;
        for (int k = 0; k < s->nsvc; k++) {
            gw_handoff_t *h = &link_of(s, k, w->u)->down;
            if (gw_handoff_overflowing(h)) {
                left |= !gw_handoff_flush(h);
                w->touched[k] = true;
            }
        }
        w->cmd_ovf = left;
    }
    if (w->tstate == 2)
        writer_write(s, w);
    if (w->goaway_seen && w->tstate == 2) {
        bool any = false;
        for (int i = 0; i < s->nstreams; i++)
            any |= w->sopen[i];
        if (!any && !w->outbytes)
            transport_close(s, w, "goaway");
    }
    for (int k = 0; k < s->nsvc; k++)
        if (w->touched[k]) {
            w->touched[k] = false;
            s->svc[k].woken = true;
        }
    if (!w->cmd_ovf)
        dlv_resolved_take(w->d, publish, w);
}

/* ---- the network between writer u and node u ----------------------------------------------- */

typedef struct arr_ctx { sim_t *s; int u, st; } arr_ctx_t;

/* The node processed the open of (st, inst): the arrivals on it are taken, or, when it
 * refused the stream, not (counted in refused). */
static void settle_arrivals(sim_t *s, snode_t *n, int st, uint32_t inst, bool refused)
{
    if (n->ainst[st] == inst)
        n->aopened[st] = true;
    size_t j = 0;
    for (size_t i = 0; i < n->narr; i++) {
        arrival_t *a = &n->arr[i];
        if (a->st != st || a->inst != inst) {
            n->arr[j++] = *a;
            continue;
        }
        sconn_t *c = refused ? conn_by_id(s, a->conn) : NULL;
        if (c && a->seq < c->cap && c->refused[a->seq] < c->recv[a->seq])
            c->refused[a->seq]++;
    }
    n->narr = j;
}

static int arrived_msg(void *ud, const uint8_t *msg, size_t len)
{
    arr_ctx_t *x = ud;
    Wsgw__V1__Upstream *up = wsgw__v1__upstream__unpack(NULL, len, msg);
    if (!up)
        return -1;
    snode_t *n = &x->s->n[x->u];
    for (size_t i = 0; i < up->n_events; i++) {
        if (up->events[i]->kind_case != WSGW__V1__EVENT__KIND_MESSAGE)
            continue;
        uint64_t conn = up->events[i]->conn_id, seq = up->events[i]->message->seq;
        receipt(x->s, x->u, conn, seq, false);
        if (n->aopened[x->st])
            continue;
        if (n->narr == n->caparr) {
            n->caparr = n->caparr ? 2 * n->caparr : 64;
            n->arr = realloc(n->arr, n->caparr * sizeof *n->arr);
        }
        n->arr[n->narr++] = (arrival_t){conn, seq, n->ainst[x->st], x->st};
    }
    wsgw__v1__upstream__free_unpacked(up, NULL);
    return 0;
}

/* A node without acks has a message once it arrived (written to the socket, for the gateway). */
static void node_arrived(sim_t *s, int u, const chunk_t *c)
{
    snode_t *n = &s->n[u];
    if (n->mode == MODE_ACK)
        return;
    if (c->kind == CH_OPEN) {
        grpc_dec_free(&n->adec[c->st]);
        grpc_dec_init(&n->adec[c->st], 1 << 20);
        n->ainst[c->st] = c->inst;
        n->aopened[c->st] = false;
    } else if (c->kind == CH_DATA && c->inst == n->ainst[c->st]) {
        arr_ctx_t x = {s, u, c->st};
        grpc_dec_feed(&n->adec[c->st], c->data, c->len, arrived_msg, &x);
    }
}

static bool net_run(sim_t *s, int u)
{
    swr_t *w = &s->w[u];
    snode_t *n = &s->n[u];
    if (w->tstate != 2 || n->part || !n->session)
        return false;
    bool did = false;
    for (uint32_t i = 1 + below(s, 4); i && w->out.n; i--) {
        chunk_t c = cq_pop(&w->out);
        w->outbytes -= c.len;
        node_arrived(s, u, &c);
        cq_push(&n->inbox, c);
        did = true;
        if (!w->out.n) {
            w->flushed_note = true;
            w->woken = true;
        }
    }
    if (did)
        node_process(s, u);
    for (uint32_t i = 1 + below(s, 4); i && n->outq.n; i--) {
        fq_push(&w->in, fq_pop(&n->outq));
        w->woken = true;
        did = true;
    }
    return did;
}

/* ---- the world ----------------------------------------------------------------------------- */

static sim_t *trace_sim;

static void trace_batch(const dlv_t *d, const char *what, int st, const gw_batch_t *b)
{
    sim_t *s = trace_sim;
    Wsgw__V1__Upstream *up = wsgw__v1__upstream__unpack(NULL, b->wire_len - GRPC_FRAME_HDR_LEN,
                                                        b->buf + GRPC_FRAME_HDR_LEN);
    if (!up)
        return;
    for (size_t i = 0; i < up->n_events; i++)
        if (up->events[i]->conn_id == s->trace_conn) {
            char buf[160];
            int n = 0;
            for (size_t j = 0; j < up->n_events && n < 120; j++)
                if (up->events[j]->conn_id == s->trace_conn)
                    n += snprintf(buf + n, sizeof buf - (size_t)n, " %d:%llu",
                                  up->events[j]->kind_case,
                                  up->events[j]->kind_case == WSGW__V1__EVENT__KIND_MESSAGE
                                      ? (unsigned long long)up->events[j]->message->seq : 0ULL);
            int u = 0;
            while (u < s->nup && s->w[u].d != d)
                u++;
            note(s, "node %d %s st %d seq %llu tries %d:%s", u, what, st,
                 (unsigned long long)b->seq, b->tries, buf);
            break;
        }
    wsgw__v1__upstream__free_unpacked(up, NULL);
}

static int setup(sim_t *s)
{
    s->nsvc = s->o.nsvc ? s->o.nsvc : 1 + (int)below(s, MAXK);
    s->nup = s->o.nup ? s->o.nup : 1 + (int)below(s, MAXN);
    s->nstreams = s->o.nstreams ? s->o.nstreams : 1 + (int)below(s, MAXS);
    s->max_attempts = 2 + (int)below(s, 4);
    s->g.nsvc = s->nsvc;
    s->g.nup = s->nup;
    s->g.nstreams = s->nstreams;
    s->g.nodes = s->nodes;
    s->g.links = s->links;
    s->g.prefix = (uint16_t)(1 + below(s, 60000));
    for (int u = 0; u < s->nup; u++) {
        atomic_init(&s->nodes[u].connected, 0);
        atomic_init(&s->nodes[u].idle, 1);
        atomic_init(&s->nodes[u].seed, 1000 + (uint64_t)u * 7919);
    }
    for (int k = 0; k < s->nsvc; k++)
        for (int u = 0; u < s->nup; u++) {
            gw_link_t *l = gw_link_new(k, u, s->nstreams, RING, wake_svc, &s->svc[k],
                                       wake_writer, &s->w[u]);
            if (!l)
                return -1;
            s->links[k * s->nup + u] = l;
        }
    for (int k = 0; k < s->nsvc; k++) {
        ssvc_t *v = &s->svc[k];
        v->sim = s;
        v->k = k;
        gw_conn_table_init(&v->table, s->g.prefix, (unsigned)k, 0);
        if (gw_mr_init(&v->mr, &s->g, &mr_ops, v) < 0)
            return -1;
    }
    static const char *names[MAXN] = {"node0", "node1", "node2"};
    for (int u = 0; u < s->nup; u++) {
        swr_t *w = &s->w[u];
        w->sim = s;
        w->u = u;
        w->woken = true;
        dlv_cfg_t cfg = {
            .nsvc = s->nsvc, .nstreams = s->nstreams,
            .batch_max_events = 1 + below(s, 8), .batch_max_bytes = 64 + below(s, 512),
            .replay_max_bytes = 512 + below(s, 8192), .max_attempts = s->max_attempts,
            /* timers scaled down (the gateway's defaults are 1 s and up) so a short run sees
             * many of them fire */
            .ping_interval_ns = (100 + below(s, 300)) * MS, .ping_timeout_ns = (100 + below(s, 300)) * MS,
            .connect_timeout_ns = 400 * MS, .headers_timeout_ns = (150 + below(s, 400)) * MS,
            .backoff_min_ns = 20 * MS, .backoff_max_ns = 300 * MS,
            .gateway_id = "sim-gw", .name = names[u],
        };
        dlv_io_t io = {w, io_open_stream, io_resume, io_ping, io_set_usable, io_emit, io_others};
        if (!(w->d = dlv_new(&cfg, &io)))
            return -1;
        dlv_seed(w->d, s->rng ^ (uint64_t)u);
        snode_t *n = &s->n[u];
        uint32_t m = below(s, 100);
        n->mode = m < 70 ? MODE_ACK : m < 85 ? MODE_PLAIN : MODE_SILENT;
        if (s->o.shared) { /* ws-api (the only server that shares presence) always acks */
            n->mode = MODE_ACK;
            atomic_store(&s->nodes[u].presence, GW_PRES_SHARED);
        }
        n->poison = pm(s, 500);
        n->refuse_pm = pm(s, 300) ? (int)below(s, 200) : 0;
        for (int i = 0; i < MAXS; i++) {
            grpc_dec_init(&n->st[i].dec, 1 << 20);
            grpc_dec_init(&n->adec[i], 1 << 20);
        }
    }
    return 0;
}

static void teardown(sim_t *s)
{
    for (int u = 0; u < s->nup; u++) {
        swr_t *w = &s->w[u];
        snode_t *n = &s->n[u];
        dlv_free(w->d);
        cq_clear(&w->out);
        free(w->out.v);
        free(w->in.v);
        cq_clear(&n->inbox);
        free(n->inbox.v);
        free(n->outq.v);
        for (int z = 0; z < n->nzombies; z++) {
            cq_clear(&n->zombies[z].inbox);
            free(n->zombies[z].inbox.v);
            for (int i = 0; i < MAXS; i++)
                grpc_dec_free(&n->zombies[z].st[i].dec);
        }
        for (int i = 0; i < MAXS; i++) {
            grpc_dec_free(&n->st[i].dec);
            grpc_dec_free(&n->adec[i]);
        }
        free(n->arr);
        free(n->pres);
    }
    for (int k = 0; k < s->nsvc; k++) {
        gw_mr_free(&s->svc[k].mr);
        gw_conn_table_free(&s->svc[k].table);
    }
    for (int i = 0; i < s->nsvc * s->nup; i++)
        gw_link_free(s->links[i]);
    for (int i = 0; i < s->nconns; i++) {
        free(s->conns[i]->c.user);
        free(s->conns[i]->recv);
        free(s->conns[i]->zrecv);
        free(s->conns[i]->refused);
        free(s->conns[i]);
    }
    free(s->spres);
    free(s->tombs);
}

/* ---- scheduling ---------------------------------------------------------------------------- */

static bool writer_due(sim_t *s, swr_t *w)
{
    if (w->woken || (w->tstate == 1 && s->now >= w->connect_at))
        return true;
    int64_t t = dlv_next_timer(w->d);
    return t && t <= s->now;
}

static int64_t next_wakeup(sim_t *s)
{
    int64_t t = 0;
#define EARLIER(x)                                                                             \
    do {                                                                                       \
        int64_t x_ = (x);                                                                      \
        if (x_ > s->now && (!t || x_ < t))                                                     \
            t = x_;                                                                            \
    } while (0)
    for (int u = 0; u < s->nup; u++) {
        EARLIER(dlv_next_timer(s->w[u].d));
        if (s->w[u].tstate == 1)
            EARLIER(s->w[u].connect_at);
        if (s->n[u].crashed)
            EARLIER(s->n[u].crash_until);
        if (s->n[u].hung)
            EARLIER(s->n[u].hung_until);
        if (s->n[u].part)
            EARLIER(s->n[u].part_until);
    }
#undef EARLIER
    return t ? t : s->now + 10 * MS;
}

static void check_machines(sim_t *s)
{
    char err[256];
    for (int u = 0; u < s->nup; u++)
        if (dlv_check(s->w[u].d, err, sizeof err) < 0)
            violate(s, "node %d machine: %s", u, err);
}

/* One step: time moves a little, one actor runs. */
static void step(sim_t *s)
{
    s->step++;
    s->now += below(s, 3) * MS / 2;
    enum { A_CLIENT, A_SVC, A_WRITER, A_NET, A_NODE };
    int kinds[16], idx[16], n = 0;
    if (s->faults) {
        kinds[n] = A_CLIENT, idx[n++] = 0;
        kinds[n] = A_CLIENT, idx[n++] = 0;
    }
    for (int k = 0; k < s->nsvc; k++)
        if (s->svc[k].woken)
            kinds[n] = A_SVC, idx[n++] = k;
    for (int u = 0; u < s->nup; u++) {
        if (writer_due(s, &s->w[u]))
            kinds[n] = A_WRITER, idx[n++] = u;
        if (s->w[u].tstate == 2 && !s->n[u].part && s->n[u].session &&
            (s->w[u].out.n || s->n[u].outq.n))
            kinds[n] = A_NET, idx[n++] = u;
    }
    int busy = n;
    for (int u = 0; u < s->nup; u++)
        kinds[n] = A_NODE, idx[n++] = u;
    if (!busy && !s->faults && pm(s, 900)) {
        s->now = next_wakeup(s); /* everyone sleeps: the next timer */
        return;
    }
    int i = (int)below(s, (uint32_t)n);
    switch (kinds[i]) {
    case A_CLIENT: client_act(s); break;
    case A_SVC: svc_run(s, &s->svc[idx[i]]); break;
    case A_WRITER:
        writer_run(s, &s->w[idx[i]]);
        if (s->o.verbose >= 3) {
            char buf[2048];
            dlv_describe(s->w[idx[i]].d, buf, sizeof buf);
            note(s, "writer %d ran: %s", idx[i], buf);
        }
        break;
    case A_NET: net_run(s, idx[i]); break;
    default: node_run(s, idx[i]); break;
    }
    if (s->o.verbose == 2)
        note(s, "actor %d/%d", kinds[i], idx[i]);
    check_machines(s);
}

/* ---- settling and the final checks ----------------------------------------------------------- */

static const char *unsettled(sim_t *s)
{
    static char why[200];
    for (int i = 0; i < s->nsvc * s->nup; i++) {
        gw_link_t *l = s->links[i];
        if (gw_link_busy(l) || gw_handoff_overflowing(&l->up) || gw_handoff_overflowing(&l->down)) {
            snprintf(why, sizeof why, "link k%d-u%d: up %zu%s down %zu%s want_room %d/%d", l->svc,
                     l->node, gw_handoff_count(&l->up),
                     gw_handoff_overflowing(&l->up) ? "+ovf" : "", gw_handoff_count(&l->down),
                     gw_handoff_overflowing(&l->down) ? "+ovf" : "",
                     atomic_load(&l->up.want_room), atomic_load(&l->down.want_room));
            return why;
        }
    }
    for (int k = 0; k < s->nsvc; k++) {
        if (s->svc[k].woken)
            return "a service thread is woken";
        if (s->svc[k].mr.nheld) {
            gw_held_t *h = &s->svc[k].mr.held[0];
            snprintf(why, sizeof why, "held messages: thread %d conn %llx waits for node %d "
                     "stream %d mark %u (done %u, seen %u)", k, (unsigned long long)h->conn_id,
                     h->node, h->stream, h->mark,
                     atomic_load(&link_of(s, k, h->node)->done[h->stream]),
                     s->svc[k].mr.done_seen[h->node * s->nstreams + h->stream]);
            return why;
        }
        for (int u = 0; u < s->nup; u++)
            if (s->svc[k].rs_gen[u])
                return "resync running";
    }
    for (int u = 0; u < s->nup; u++) {
        if (s->w[u].tstate != 2 || dlv_state(s->w[u].d) != DLV_LIVE) {
            snprintf(why, sizeof why, "node %d not live (state %d)", u, dlv_state(s->w[u].d));
            return why;
        }
        if (!dlv_idle(s->w[u].d)) {
            snprintf(why, sizeof why, "node %d machine not idle", u);
            return why;
        }
        if (s->w[u].out.n || s->n[u].outq.n || s->w[u].in.n)
            return "bytes in flight";
    }
    for (int i = 0; i < s->nconns; i++) {
        sconn_t *c = s->conns[i];
        for (uint64_t q = 1; q <= c->sent; q++)
            if (c->recv[q] == c->refused[q] && !c->kicked) {
                snprintf(why, sizeof why, "conn %llx seq %llu neither received nor told",
                         (unsigned long long)c->c.id, (unsigned long long)q);
                return why;
            }
    }
    return NULL;
}

static void final_checks(sim_t *s)
{
    if (s->o.shared) {
        size_t live = 0;
        for (int i = 0; i < s->nconns; i++) {
            sconn_t *c = s->conns[i];
            pres_t *p = spres_find(s, c->c.id);
            if (c->live) {
                live++;
                if (!p)
                    violate(s, "shared presence misses live conn %llx",
                            (unsigned long long)c->c.id);
            } else if (p) {
                violate(s, "shared presence has a ghost: closed conn %llx",
                        (unsigned long long)c->c.id);
            }
        }
        if (s->nspres != live)
            violate(s, "shared presence holds %zu entries, %zu live", s->nspres, live);
    }
    for (int u = 0; u < s->nup && !s->o.shared; u++) {
        snode_t *n = &s->n[u];
        size_t live = 0;
        /* Without acks, events in a stream that broke are gone for good (they counted as
         * delivered once written): presence is right again only after the next session. */
        if (n->mode != MODE_ACK)
            continue;
        for (int i = 0; i < s->nconns; i++) {
            sconn_t *c = s->conns[i];
            pres_t *p = pres_find(n, c->c.id);
            if (c->live) {
                live++;
                if (!p)
                    violate(s, "presence: node %d misses live conn %llx", u,
                            (unsigned long long)c->c.id);
            } else if (p) {
                violate(s, "presence: node %d has a ghost: closed conn %llx", u,
                        (unsigned long long)c->c.id);
            }
        }
        if (n->npres != live)
            violate(s, "presence: node %d holds %zu entries, %zu live", u, n->npres, live);
    }
    for (int i = 0; i < s->nconns; i++) {
        sconn_t *c = s->conns[i];
        for (uint64_t q = 1; q <= c->sent; q++)
            if (c->recv[q] == c->refused[q])
                s->r->kicked_lost++;
    }
    for (int u = 0; u < s->nup; u++) {
        const dlv_stats_t *st = dlv_stats(s->w[u].d);
        s->r->handed_back += st->handed_back;
        s->r->resyncs += st->resyncs;
        s->r->pings += st->pings;
        s->r->ping_timeouts += st->ping_timeouts;
        s->r->splits += st->splits;
        s->r->lost += st->lost;
    }
    if (s->r->kicked_lost > s->r->lost)
        violate(s, "%llu messages never received, only %llu counted lost",
                (unsigned long long)s->r->kicked_lost, (unsigned long long)s->r->lost);
}

int sim_run(const sim_opts_t *o, sim_result_t *r)
{
    sim_t *s = calloc(1, sizeof *s);
    memset(r, 0, sizeof *r);
    s->o = *o;
    s->r = r;
    s->rng = o->seed * 0x9E3779B97F4A7C15ULL + 0x1234567;
    s->now = 1000 * MS;
    s->trace_conn = o->trace_conn;
    trace_sim = s;
    dlv_trace_batch = o->verbose && o->trace_conn ? trace_batch : NULL;
    int saved = log_level;
    log_level = o->verbose == 2 ? LOG_INFO : o->verbose ? LOG_WARN : -1;
    if (setup(s) < 0) {
        snprintf(r->violation, sizeof r->violation, "setup failed (memory)");
        s->failed = true;
    }
    int fault_steps = o->fault_steps ? o->fault_steps : 3000;
    int settle_steps = o->settle_steps ? o->settle_steps : 200000;
    s->faults = true;
    for (int i = 0; i < fault_steps && !s->failed; i++)
        step(s);
    s->faults = false;
    for (int u = 0; u < s->nup; u++) { /* heal everything */
        snode_t *n = &s->n[u];
        n->crash_until = n->hung_until = n->part_until = s->now;
        n->refuse_pm = 0;
    }
    const char *why = "not checked";
    for (int i = 0; i < settle_steps && !s->failed; i++) {
        step(s);
        if ((i & 63) == 63 && !(why = unsettled(s)))
            break;
    }
    if (!s->failed && why) {
        violate(s, "did not settle within %d steps: %s", settle_steps, why);
        if (o->verbose)
            for (int u = 0; u < s->nup; u++) {
                char buf[2048];
                dlv_describe(s->w[u].d, buf, sizeof buf);
                fprintf(stderr, "node %d: tstate=%d sopen=%d%d%d%d out=%zu in=%zu node: session=%d hung=%d "
                        "crashed=%d part=%d mode=%d goaway=%d; machine: %s\n", u,
                        s->w[u].tstate, s->w[u].sopen[0], s->w[u].sopen[1], s->w[u].sopen[2], s->w[u].sopen[3], s->w[u].out.n, s->w[u].in.n, s->n[u].session,
                        s->n[u].hung, s->n[u].crashed, s->n[u].part, s->n[u].mode,
                        s->n[u].goaway, buf);
            }
    }
    if (!s->failed)
        final_checks(s);
    r->steps = s->step;
    log_level = saved;
    bool failed = s->failed;
    teardown(s);
    free(s);
    return failed ? -1 : 0;
}
