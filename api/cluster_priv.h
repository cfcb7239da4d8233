/* cluster_priv.h: the inside of ws-api's Redis cluster layer (cluster.h), shared by its files:
 * cluster.c (life, sessions, heartbeats, tokens, readiness), cluster_reg.c (the registry of
 * gateways and its reaper), cluster_pres.c (presence writes and acks), cluster_bus.c (commands
 * between nodes), cluster_route.c (targets to gateways, presence queries). Loop thread only. */
#ifndef WSGW_API_CLUSTER_PRIV_H
#define WSGW_API_CLUSTER_PRIV_H

#include "cluster.h"
#include "hmap.h"

#define CL_TOK_LEN 16            /* presence tokens: 16 hex digits */
#define CL_TOMB_BUCKET_MS 30000  /* tombstone buckets (an Open checks 3: ~60-90 s) */
#define CL_TOMB_TTL_S 90
#define CL_KEY_MAX 600           /* keys: prefix + tag + id (ids are capped below) */
#define CL_ID_MAX CLUSTER_ID_MAX /* gateway ids, user ids and room names we key on */

/* A batch of a session not bound yet, kept until it is. */
typedef struct cl_held {
    struct cl_held *next;
    api_stream_t *s; /* NULL once the stream is gone (then dropped) */
    size_t len;
    uint8_t data[];
} cl_held_t;

struct cl_sess {
    cluster_t *cl;
    char *gw;                  /* gateway id (x-gateway-id) */
    char inst[40];             /* x-wsgw-instance ("" unknown) */
    char prefix[8];            /* x-wsgw-conn-prefix ("" unknown) */
    char tok[CL_TOK_LEN + 1];  /* the bound token ("" before, or when bound offline) */
    char ptok[CL_TOK_LEN + 1]; /* the token tok replaced ("" none): cl__open_script */
    bool bound, binding, live;
    bool offline;              /* bound while Redis was away: its gateway is dirty */
    int refs;                  /* callbacks in flight that hold it (freed at 0 once ended) */
    cluster_drop_fn drop;
    void *drop_ud;
    cl_held_t *h_head, *h_tail;
    size_t h_bytes;
    cl_sess_t *prev, *next;    /* cl->sessions (live ones) */
};

struct cl_batch {
    cluster_t *cl;
    api_stream_t *s;   /* NULL once the stream is gone */
    cl_sess_t *cs;     /* held (refs) */
    uint64_t seq;
    int pending;       /* writes not answered yet */
    bool ended;        /* cluster_batch_end came (seq set) */
    bool ack;          /* acknowledge when done (false: the stream failed the batch) */
    bool mismatch;     /* a write found another token: the session goes, nothing acked */
    bool failed;       /* a write got no reply (Redis away): acked, the gateway is dirty */
    struct cl_batch *snext; /* the stream's list of unfinished batches (s->cl_wait) */
};

/* The registry of live gateways (refreshed every heartbeat). */
typedef struct cl_gw {
    hmap_node_t node;
    char *id;
    char tok[CL_TOK_LEN + 1];
    bool synced;       /* syn == tok */
    int prefix;        /* conn id prefix, -1 unknown */
    char **nodes;      /* live nodes serving it */
    int nnodes;
} cl_gw_t;

typedef struct cl_reg {
    hmap_t by_id;
    cl_gw_t **v;
    size_t n, cap;
    size_t unsynced; /* gateways whose presence is not whole */
} cl_reg_t;

/* A gateway whose presence writes failed while Redis was away: its token is replaced when
 * Redis is back. */
typedef struct cl_dirty {
    struct cl_dirty *next;
    cluster_t *cl;
    char *gw;
    char tok[CL_TOK_LEN + 1]; /* the token we knew ("" : replace whatever it is) */
} cl_dirty_t;

/* A broadcast (room / all) for other nodes' gateways waiting for the registry check
 * (cluster_bus.c): its serialized Command. */
typedef struct cl_bq {
    struct cl_bq *next;
    size_t len;
    uint8_t cmd[];
} cl_bq_t;

/* A command held for a gateway that has not reconnected here yet (cluster_hold.c). */
typedef struct cl_hold cl_hold_t;

/* A caller waiting for the next registry refresh. */
typedef struct cl_waiter {
    struct cl_waiter *next;
    void (*fn)(void *ud);
    void *ud;
} cl_waiter_t;

struct cluster {
    uv_loop_t *loop;
    redis_t *r;
    presence_t *pres;
    router_t *router;
    cluster_cfg_t cfg;
    char *node_id;
    char channel[CL_KEY_MAX];
    uv_timer_t hb;
    bool stopped, hb_closed;
    cl_sess_t *sessions;
    size_t nsessions;
    cl_batch_t *cur;         /* the batch exchange.c is handling (cluster_room joins it) */
    cluster_batch_fn handler;
    void *handler_ud;
    cluster_refused_fn refused; /* joins past the cap (cluster_room) */
    void *refused_ud;
    hmap_t joins;               /* room joins Redis has not answered (cluster_pres.c) */
    /* registry */
    cl_reg_t reg;
    uint64_t reg_ms;         /* last complete refresh (monotonic ms; 0: never) */
    uint64_t reg_gen;        /* refresh generation (late replies of an older one are dropped) */
    bool refreshing;
    cl_waiter_t *waiters;    /* for the refresh under way */
    uint64_t reg_ver;        /* wsgw:{reg}:ver as read before the registry was (0: none) */
    /* broadcasts to other nodes' gateways, in order (cluster_bus.c) */
    cl_bq_t *bq_head, *bq_tail;
    cl_bq_t *bq_cover;       /* the last one the check in flight covers (NULL: none) */
    size_t bq_n;
    uint64_t bq_need;        /* the version the check saw (the registry must reach it) */
    bool bq_again;           /* the registry was asked for once more already */
    /* commands held for gateways the registry names us for, with no stream here yet */
    cl_hold_t *hold_head, *hold_tail;
    size_t nhold;
    uint64_t ticks;
    bool reaping;
    /* Redis availability */
    bool was_up;             /* the cmd link was up at the last look */
    bool ever_up;
    uint64_t grace_until;    /* after Redis came back: not ready before */
    char **awaited;          /* gateways listed before Redis went away, not listed again since */
    size_t nawaited;         /* it came back (cluster_reg.c); not ready while any is awaited */
    uint64_t awaited_until;  /* ... up to this (monotonic ms): --presence-ttl after its return */
    cl_dirty_t *dirty;
    bool last_ready;
    uint64_t rng;
    int m_writes, m_write_fail, m_stale_open, m_tok_made, m_tok_mismatch, m_tok_rotated;
    int m_rooms_carried;
    int m_forwarded, m_fwd_lost, m_published, m_pub_retry, m_reaped, m_held, m_gateways;
    int m_sessions, m_lookups, m_bq_reread, m_cmd_held, m_holding;
};

/* ---- cluster.c ------------------------------------------------------------------------------ */
uint64_t cl__now_ms(void);
void cl__new_token(cluster_t *cl, char out[CL_TOK_LEN + 1]);
/* cl__sess_put: drops a reference; frees an ended session at 0. */
void cl__sess_put(cl_sess_t *cs);
/* cl__mark_dirty: the gateway of cs missed writes: replace its token once Redis is back. */
void cl__mark_dirty(cl_sess_t *cs);
/* cl__drop_gateway: ends every local session of gateway gw (why for the logs). */
void cl__drop_gateway(cluster_t *cl, const char *gw, const char *why);
/* cl__drop_session: ends one session (its gateway reconnects and resyncs). */
void cl__drop_session(cl_sess_t *cs, const char *why);

/* ---- keys (cluster.c) ------------------------------------------------------------------------ */
int cl__key_meta(char *out, const char *gw);
int cl__key_conns(char *out, const char *gw, const char *tok);
int cl__key_tomb(char *out, const char *gw, const char *tok, uint64_t bucket);
int cl__key_user(char *out, const char *user);
int cl__key_room(char *out, const char *room);
extern const char cl__key_reg_gw[];
extern const char cl__key_reg_tok[];
extern const char cl__key_reg_ver[];

/* ---- scripts (cluster.c) --------------------------------------------------------------------- */
extern redis_script_t cl__hb_script, cl__open_script, cl__close_script, cl__room_script,
    cl__check_script, cl__sync_script, cl__unlink_script;

/* ---- cluster_reg.c --------------------------------------------------------------------------- */
/* cl__reg_wait: fn(ud) once the registry was read again (a refresh starts now unless one is
 * under way; also when it fails). Returns 0 or -1 (memory: not called). */
int cl__reg_wait(cluster_t *cl, void (*fn)(void *ud), void *ud);
void cl__reg_free(cl_reg_t *g);
const cl_gw_t *cl__reg_find(const cluster_t *cl, const char *gw);
/* cl__reg_refresh: reads the registry again (asynchronously). */
void cl__reg_refresh(cluster_t *cl);
/* cl__reg_fresh: the registry was read within two heartbeats. */
bool cl__reg_fresh(const cluster_t *cl);
/* cl__reap: reaps dead tokens (a few per call). */
void cl__reap(cluster_t *cl);
/* cl__reg_await: Redis came back: the gateways of the registry as last read before it went
 * away are awaited until a registry read lists them again or --presence-ttl passed (a gateway
 * whose nodes are not back yet is missing from a Redis that restarted empty, and presence
 * answered without it would be wrong, not late). */
void cl__reg_await(cluster_t *cl);
/* cl__reg_awaiting: some gateway is still awaited (forgets them once their time is up). */
bool cl__reg_awaiting(cluster_t *cl);

/* ---- cluster_pres.c --------------------------------------------------------------------------- */
/* cl__batch_write_done: one write of b answered (reply may be NULL: no reply). */
void cl__batch_write_done(cl_batch_t *b, bool ok, bool mismatch);

/* ---- cluster_bus.c ---------------------------------------------------------------------------- */
int cl__bus_start(cluster_t *cl);
/* cl__bus_send: cmd (its target set for these gateways) to gateways gws[0..n) that this node
 * does not serve, through nodes that do. Returns how many gateways it went to. */
int cl__bus_send(cluster_t *cl, const cl_gw_t *const *gws, size_t n,
                 const Wsgw__V1__Command *cmd);
/* cl__bus_pass_on: a serialized Command for gateway gw, passed on once (BUS_FORWARDED) to
 * another node the registry names for gw. true: published; false: no such node. */
bool cl__bus_pass_on(cluster_t *cl, const char *gw, const uint8_t *cmd, size_t len);
/* cl__local_stream: a live stream of gateway gw on this node, or NULL. */
api_stream_t *cl__local_stream(cluster_t *cl, const char *gw);
/* cl__bus_free: drops the broadcasts still waiting (cluster_free). */
void cl__bus_free(cluster_t *cl);

/* ---- cluster_hold.c -------------------------------------------------------------------------- */
/* cl__names_us: the registry lists this node among those serving gateway gw. */
bool cl__names_us(const cluster_t *cl, const char *gw);
/* cl__hold: keeps a serialized Command (copied) for gw until a stream of gw attaches here, or
 * --presence-ttl passes: only while the registry names this node for gw (or has not been read:
 * then checked at the next read, and passed on to a node it names if may_pass) and fewer than
 * --redis-max-pending are held. true: held; false: not (the caller counts it undeliverable). */
bool cl__hold(cluster_t *cl, const char *gw, const uint8_t *cmd, size_t len, bool may_pass);
/* cl__hold_reg_read: the registry was read: commands held unchecked are checked. */
void cl__hold_reg_read(cluster_t *cl);
/* cl__hold_sweep (heartbeat): held commands whose gateway has a stream here go to it; those
 * past their time are counted undeliverable. */
void cl__hold_sweep(cluster_t *cl);
/* cl__hold_free: drops what is held (cluster_free). */
void cl__hold_free(cluster_t *cl);
/* cl__reg_ver_parse: the value of a GET of cl__key_reg_ver (nil: 0). */
uint64_t cl__reg_ver_parse(const redisReply *reply);

#endif
