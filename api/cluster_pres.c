/* cluster_pres.c: the presence and room writes of Upstream batches and the acks that wait for
 * them (see cluster.h, "Acks"). A batch's writes are issued in order on the one command link,
 * so Redis answers a stream's batches in the order they came: each one's ack is released when
 * its last write is answered, and batches without writes that came meanwhile wait behind it.
 * Loop thread only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "cluster_priv.h"
#include "log.h"
#include "metrics.h"
#include "router.h"
#include "wsapi_metrics.h"

enum { W_OPEN, W_CLOSE, W_ROOM, W_SYNC, W_INDEX };

typedef struct wctx {
    cl_batch_t *b; /* NULL: not part of a batch (nothing waits for it) */
    uint8_t kind;
} wctx_t;

/* A W_ROOM write: the room index write (HSET / HDEL of wsgw:{r:ROOM}) waits for the script's
 * answer, which says whether the join was taken (a different hash tag: not in the script). */
typedef struct room_wctx {
    wctx_t w;
    hmap_node_t node; /* (a join) in cl->joins until answered: a refusal looks for later ones */
    uint64_t conn_id;
    size_t max_rooms;
    bool join;
    char conn[24];
    const char *user;    /* in names, after the room */
    char names[];        /* room NUL user NUL */
} room_wctx_t;

static void room_answered(cl_batch_t *b, room_wctx_t *rw, const redisReply *reply);

/* A W_OPEN write: when its session's token replaced another (cs->ptok), the rooms the
 * connection had under that one come back in the answer, and their index entries are then
 * written under the new token (other hash tags: not in the script). */
typedef struct open_wctx {
    wctx_t w;
    char conn[24];
    char user[];
} open_wctx_t;

static void rooms_carried(cl_batch_t *b, open_wctx_t *ow, const redisReply *reply,
                          long long fresh);

static uint64_t join_hash(uint64_t conn_id, const char *room)
{
    return hmap_hash_u64(conn_id ^ hmap_hash_str(room));
}

/* A join leaves cl->joins when it is answered, or was not sent. */
static void join_done(cluster_t *cl, wctx_t *w)
{
    room_wctx_t *rw = (room_wctx_t *)w;
    if (w->kind == W_ROOM && rw->join)
        hmap_remove(&cl->joins, &rw->node);
}

/* Another join of rw's room by its connection waits for Redis: one sent after rw, since Redis
 * answers in the order it was asked (one command link). */
static bool later_join(const cluster_t *cl, const room_wctx_t *rw)
{
    uint64_t h = rw->node.hash;
    for (hmap_node_t *n = hmap_first(&cl->joins, h); n; n = hmap_next(n, h)) {
        const room_wctx_t *o = hmap_entry(n, room_wctx_t, node);
        if (o != rw && o->conn_id == rw->conn_id && strcmp(o->names, rw->names) == 0)
            return true;
    }
    return false;
}

static uint64_t wall_ms(void)
{
    return (uint64_t)(clock_wall_ns() / 1000000);
}

/* ---- batches ------------------------------------------------------------------------------- */

cl_batch_t *cluster_batch_begin(cluster_t *cl, api_stream_t *s)
{
    cl_batch_t *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->cl = cl;
    b->s = s;
    b->cs = s->sess ? s->sess->cl : NULL;
    if (b->cs)
        b->cs->refs++;
    b->ack = true;
    cl->cur = b;
    return b;
}

static void ack_upto(cluster_t *cl, api_stream_t *s, uint64_t seq)
{
    if (seq > s->ack)
        s->ack = seq;
    s->ack_dirty = true;
    router_mark(cl->router, s);
}

static void batch_free(cl_batch_t *b)
{
    if (b->cs)
        cl__sess_put(b->cs);
    free(b);
}

/* Everything of a waiting batch is answered: its ack (and of those that waited behind it). */
static void batch_finish(cl_batch_t *b)
{
    cluster_t *cl = b->cl;
    api_stream_t *s = b->s;
    if (s) {
        for (cl_batch_t **pp = &s->cl_wait; *pp; pp = &(*pp)->snext)
            if (*pp == b) {
                *pp = b->snext;
                break;
            }
        s->cl_out--;
    }
    if (b->mismatch) {
        /* nothing of it (or after it) is acknowledged: the gateway re-sends it under the
         * current token once its session is back */
        metrics_inc(cl->m_tok_mismatch);
        if (b->cs)
            cl__drop_session(b->cs, "presence token changed");
    } else if (s && b->ack) {
        ack_upto(cl, s, b->seq);
        if (s->cl_out == 0 && s->cl_after > b->seq)
            ack_upto(cl, s, s->cl_after);
    }
    batch_free(b);
}

void cl__batch_write_done(cl_batch_t *b, bool ok, bool mismatch)
{
    b->pending--;
    if (!ok) {
        b->failed = true;
        if (b->cs)
            cl__mark_dirty(b->cs);
    }
    if (mismatch)
        b->mismatch = true;
    if (b->ended && b->pending == 0)
        batch_finish(b);
}

void cluster_batch_end(cl_batch_t *b, uint64_t seq)
{
    cluster_t *cl = b->cl;
    if (cl->cur == b)
        cl->cur = NULL;
    b->seq = seq;
    if (seq == 0)
        b->ack = false; /* the batch failed: nothing to acknowledge */
    api_stream_t *s = b->s;
    if (b->pending == 0 && !b->mismatch) {
        if (s && b->ack) {
            if (s->cl_out)
                s->cl_after = seq > s->cl_after ? seq : s->cl_after; /* behind earlier ones */
            else
                ack_upto(cl, s, seq);
        }
        batch_free(b);
        return;
    }
    b->ended = true;
    if (s) {
        b->snext = NULL;
        cl_batch_t **pp = &s->cl_wait;
        while (*pp)
            pp = &(*pp)->snext;
        *pp = b;
        s->cl_out++;
    }
    if (b->pending == 0)
        batch_finish(b);
}

/* ---- writes -------------------------------------------------------------------------------- */

static void on_write(void *ud, redisReply *reply)
{
    wctx_t *w = ud;
    cl_batch_t *b = w->b;
    cluster_t *cl = b ? b->cl : NULL;
    bool ok = reply && reply->type != REDIS_REPLY_ERROR;
    bool mismatch = false;
    if (reply && (w->kind == W_OPEN || w->kind == W_ROOM || w->kind == W_SYNC) &&
        reply->type == REDIS_REPLY_INTEGER) {
        mismatch = reply->integer == 0;
        if (w->kind == W_OPEN && reply->integer == 2 && cl)
            metrics_inc(cl->m_stale_open);
    }
    if (w->kind == W_CLOSE && reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
        reply->element[0]->type == REDIS_REPLY_INTEGER)
        mismatch = reply->element[0]->integer == 0;
    if (reply && reply->type == REDIS_REPLY_ERROR)
        log_rl_error("redis refused a presence write", "error=\"%s\"", reply->str);
    if (w->kind == W_ROOM && b && reply) /* (NULL: the link went: b's gateway is rebuilt) */
        room_answered(b, (room_wctx_t *)w, reply); /* (its index write joins b first) */
    if (w->kind == W_OPEN && b && reply && reply->type == REDIS_REPLY_ARRAY &&
        reply->elements == 2 && reply->element[0]->type == REDIS_REPLY_STRING &&
        reply->element[1]->type == REDIS_REPLY_INTEGER)
        rooms_carried(b, (open_wctx_t *)w, reply->element[0], reply->element[1]->integer);
    if (b) {
        join_done(b->cl, w);
        cl__batch_write_done(b, ok, mismatch);
    }
    free(w);
}

/* The write's bookkeeping (size bytes, a wctx_t first): counted in b (NULL: none); NULL when
 * out of memory. */
static wctx_t *wctx_sized(cl_batch_t *b, int kind, size_t size)
{
    wctx_t *w = malloc(size);
    if (!w)
        return NULL;
    w->b = b;
    w->kind = (uint8_t)kind;
    if (b)
        b->pending++;
    return w;
}

static wctx_t *wctx(cl_batch_t *b, int kind)
{
    return wctx_sized(b, kind, sizeof(wctx_t));
}

static void not_sent(cl_batch_t *b, wctx_t *w)
{
    if (b) {
        join_done(b->cl, w);
        b->pending--;
        b->failed = true;
        if (b->cs)
            cl__mark_dirty(b->cs);
        metrics_inc(b->cl->m_write_fail);
    }
    free(w);
}

/* One write of b: the script sc (nkeys keys, then arguments), or a plain command (sc NULL).
 * w: its bookkeeping when the caller made it (wctx_sized), else NULL. */
static void issue_w(cl_batch_t *b, wctx_t *w, int kind, const redis_script_t *sc, int nkeys,
                    int argc, const char **argv, const size_t *lens)
{
    cluster_t *cl = b->cl;
    if (!w)
        w = wctx(b, kind);
    if (!w) {
        if (b->cs)
            cl__mark_dirty(b->cs);
        return;
    }
    metrics_inc(cl->m_writes);
    int rv = sc ? redis_eval(cl->r, sc, on_write, w, nkeys, argc, argv, lens)
                : redis_cmd_argv(cl->r, on_write, w, argc, argv, lens);
    if (rv != REDIS_C_OK)
        not_sent(b, w);
}

static void issue(cl_batch_t *b, int kind, const redis_script_t *sc, int nkeys, int argc,
                  const char **argv, const size_t *lens)
{
    issue_w(b, NULL, kind, sc, nkeys, argc, argv, lens);
}

/* The batch's session may write: bound under a token, Redis up. Otherwise its gateway is
 * marked dirty (rebuilt when Redis is back) and false. */
static bool can_write(cl_batch_t *b)
{
    cl_sess_t *cs = b->cs;
    if (!cs)
        return false;
    if (cs->offline || !cs->tok[0] || !redis_up(b->cl->r)) {
        metrics_inc(b->cl->m_write_fail);
        cl__mark_dirty(cs);
        return false;
    }
    return true;
}

static size_t index_value(char *out, size_t cap, const cl_sess_t *cs, const char *user,
                          bool with_user)
{
    int n = with_user ? snprintf(out, cap, "%s%s\n%s", cs->tok, cs->gw, user)
                      : snprintf(out, cap, "%s%s", cs->tok, cs->gw);
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

static bool user_ok(const char *user)
{
    return user && *user && strlen(user) <= CL_ID_MAX;
}

void cluster_open(cl_batch_t *b, uint64_t conn_id, const char *user, const char *rooms,
                  size_t rooms_len)
{
    if (!b || !can_write(b))
        return;
    cl_sess_t *cs = b->cs;
    if (user && strlen(user) > CL_ID_MAX)
        user = ""; /* (not indexed: the gateway caps user ids far below this) */
    char meta[CL_KEY_MAX], conns[CL_KEY_MAX], t0[CL_KEY_MAX], t1[CL_KEY_MAX], t2[CL_KEY_MAX];
    char conn[24];
    uint64_t bucket = wall_ms() / CL_TOMB_BUCKET_MS;
    cl__key_meta(meta, cs->gw);
    cl__key_conns(conns, cs->gw, cs->tok);
    cl__key_tomb(t0, cs->gw, cs->tok, bucket - 1);
    cl__key_tomb(t1, cs->gw, cs->tok, bucket);
    cl__key_tomb(t2, cs->gw, cs->tok, bucket + 1);
    snprintf(conn, sizeof conn, "%llu", (unsigned long long)conn_id);
    size_t ulen = user ? strlen(user) : 0;
    open_wctx_t *ow = (open_wctx_t *)wctx_sized(b, W_OPEN, sizeof *ow + ulen + 1);
    if (!ow) {
        cl__mark_dirty(cs);
        return;
    }
    memcpy(ow->conn, conn, sizeof conn);
    memcpy(ow->user, user ? user : "", ulen + 1);
    char prev[CL_KEY_MAX];
    bool carry = cs->ptok[0] && cl__key_conns(prev, cs->gw, cs->ptok) > 0;
    const char *argv[] = {meta, conns, t0, t1, t2, prev, cs->tok, conn, user ? user : "",
                          rooms_len ? rooms : ""};
    size_t lens[10];
    for (int i = 0; i < 9; i++)
        lens[i] = strlen(argv[i]);
    lens[9] = rooms_len;
    if (!carry) { /* (no sixth key) */
        memmove(&argv[5], &argv[6], 4 * sizeof argv[0]);
        memmove(&lens[5], &lens[6], 4 * sizeof lens[0]);
    }
    issue_w(b, &ow->w, W_OPEN, &cl__open_script, carry ? 6 : 5, carry ? 10 : 9, argv, lens);
    if (user_ok(user)) {
        char key[CL_KEY_MAX], val[CL_KEY_MAX];
        cl__key_user(key, user);
        size_t vl = index_value(val, sizeof val, cs, user, false);
        const char *hv[] = {"HSET", key, conn, val};
        size_t hl[] = {4, strlen(key), strlen(conn), vl};
        issue(b, W_INDEX, NULL, 0, 4, hv, hl);
    }
}

void cluster_close(cl_batch_t *b, uint64_t conn_id, const char *user)
{
    if (!b || !can_write(b))
        return;
    cl_sess_t *cs = b->cs;
    char meta[CL_KEY_MAX], conns[CL_KEY_MAX], t1[CL_KEY_MAX], conn[24], ttl[16];
    cl__key_meta(meta, cs->gw);
    cl__key_conns(conns, cs->gw, cs->tok);
    cl__key_tomb(t1, cs->gw, cs->tok, wall_ms() / CL_TOMB_BUCKET_MS);
    snprintf(conn, sizeof conn, "%llu", (unsigned long long)conn_id);
    snprintf(ttl, sizeof ttl, "%d", CL_TOMB_TTL_S);
    const char *argv[] = {meta, conns, t1, cs->tok, conn, ttl};
    issue(b, W_CLOSE, &cl__close_script, 3, 6, argv, NULL);
    if (user_ok(user)) {
        char key[CL_KEY_MAX];
        cl__key_user(key, user);
        const char *hv[] = {"HDEL", key, conn};
        issue(b, W_INDEX, NULL, 0, 3, hv, NULL);
    }
    /* its rooms' index entries stay: listing checks them against the connection (gone), drops
     * them then, and the reaper takes the rest with the token */
}

void cluster_synced(cl_batch_t *b)
{
    if (!b || !can_write(b))
        return;
    char meta[CL_KEY_MAX];
    cl__key_meta(meta, b->cs->gw);
    const char *argv[] = {meta, b->cs->tok};
    issue(b, W_SYNC, &cl__sync_script, 1, 2, argv, NULL);
    char g[96];
    log_rl_info("gateway presence whole in Redis", "gateway=%s token=%s",
                log_quote(g, sizeof g, b->cs->gw), b->cs->tok);
}

void cluster_room(cluster_t *cl, uint64_t conn_id, const char *user, const char *room,
                  bool join, size_t max_rooms)
{
    cl_batch_t *b = cl->cur;
    if (!b || !can_write(b) || !room || !*room || strlen(room) > CL_ID_MAX)
        return;
    cl_sess_t *cs = b->cs;
    if (!user)
        user = "";
    size_t rlen = strlen(room), ulen = strlen(user);
    room_wctx_t *rw = (room_wctx_t *)wctx_sized(b, W_ROOM, sizeof *rw + rlen + ulen + 2);
    if (!rw) {
        cl__mark_dirty(cs);
        return;
    }
    rw->conn_id = conn_id;
    rw->max_rooms = max_rooms;
    rw->join = join;
    memcpy(rw->names, room, rlen + 1);
    memcpy(rw->names + rlen + 1, user, ulen + 1);
    rw->user = rw->names + rlen + 1;
    snprintf(rw->conn, sizeof rw->conn, "%llu", (unsigned long long)conn_id);
    if (join && hmap_insert(&cl->joins, &rw->node, join_hash(conn_id, room)) < 0) {
        rw->join = false; /* (not linked: join_done must not unlink it) */
        not_sent(b, &rw->w);
        return;
    }
    char meta[CL_KEY_MAX], conns[CL_KEY_MAX], max[24];
    cl__key_meta(meta, cs->gw);
    cl__key_conns(conns, cs->gw, cs->tok);
    snprintf(max, sizeof max, "%zu", max_rooms);
    const char *argv[] = {meta, conns, cs->tok, rw->conn, room, join ? "1" : "0", max};
    issue_w(b, &rw->w, W_ROOM, &cl__room_script, 2, 7, argv, NULL);
}

/* The open script carried rooms over from the replaced token, or took the gateway's (on_write,
 * before b counts the answer): their index entries, under b's token. reply: the rooms,
 * netstrings; fresh: how many of them only the gateway had. */
static void rooms_carried(cl_batch_t *b, open_wctx_t *ow, const redisReply *reply,
                          long long fresh)
{
    if (fresh > 0)
        metrics_add(wsapi_m.rooms_restored[0], (uint64_t)fresh);
    if (!can_write(b))
        return;
    char val[2 * CL_KEY_MAX];
    size_t vl = index_value(val, sizeof val, b->cs, ow->user, true);
    size_t n = 0;
    for (size_t i = 0; i < reply->len;) {
        const char *c = memchr(reply->str + i, ':', reply->len - i);
        char *end;
        unsigned long len = c ? strtoul(reply->str + i, &end, 10) : 0;
        if (!c || end != c || len == 0 || len > CL_ID_MAX ||
            len > reply->len - (size_t)(c + 1 - reply->str))
            break; /* (the script writes what it read: not from a client) */
        char room[CL_ID_MAX + 1], key[CL_KEY_MAX];
        memcpy(room, c + 1, len);
        room[len] = 0;
        cl__key_room(key, room);
        const char *hv[] = {"HSET", key, ow->conn, val};
        size_t hl[] = {4, strlen(key), strlen(ow->conn), vl};
        issue(b, W_INDEX, NULL, 0, 4, hv, hl);
        n++;
        i = (size_t)(c + 1 - reply->str) + len;
    }
    metrics_add(b->cl->m_rooms_carried, n);
}

/* The room script answered (on_write, before b counts the answer): the index write follows a
 * join it took, and every leave (harmless when nothing is there); a join past the cap goes to
 * the refused function. Issued from here, these keep their order with the index writes of
 * later scripts, whose answers come after this one. */
static void room_answered(cl_batch_t *b, room_wctx_t *rw, const redisReply *reply)
{
    cluster_t *cl = b->cl;
    long long rv = reply->type == REDIS_REPLY_INTEGER ? reply->integer : -1;
    if (rw->join && rv == 3) {
        char r[96];
        log_rl_warn("chat join refused: too many rooms", "conn_id=%llu room=%s limit=%zu",
                    (unsigned long long)rw->conn_id, log_quote(r, sizeof r, rw->names),
                    rw->max_rooms);
        if (cl->refused)
            cl->refused(cl->refused_ud, b->s, rw->conn_id, rw->names, rw->max_rooms,
                        !later_join(cl, rw));
        return;
    }
    if (rw->join && rv != 1)
        return; /* another token (b is re-sent), or no such connection */
    if (!can_write(b))
        return;
    char key[CL_KEY_MAX];
    cl__key_room(key, rw->names);
    if (rw->join) { /* (under the session's token: bound once, and the script just checked it) */
        char val[2 * CL_KEY_MAX];
        size_t vl = index_value(val, sizeof val, b->cs, rw->user, true);
        const char *hv[] = {"HSET", key, rw->conn, val};
        size_t hl[] = {4, strlen(key), strlen(rw->conn), vl};
        issue(b, W_INDEX, NULL, 0, 4, hv, hl);
    } else {
        const char *hv[] = {"HDEL", key, rw->conn};
        issue(b, W_INDEX, NULL, 0, 3, hv, NULL);
    }
}
