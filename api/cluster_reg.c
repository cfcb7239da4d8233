/* cluster_reg.c: the registry of live gateways as this node reads it every heartbeat (who is
 * alive, under which presence token, whether its presence is whole, which nodes serve it, its
 * conn id prefix), and the reaper of dead tokens (their connections leave the user and room
 * indexes, then their hash goes). Loop thread only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "cluster_priv.h"
#include "log.h"
#include "metrics.h"

static uint64_t wall_ms(void)
{
    return (uint64_t)(clock_wall_ns() / 1000000);
}

/* ---- the cache ------------------------------------------------------------------------------- */

static void gw_free(cl_gw_t *g)
{
    for (int i = 0; i < g->nnodes; i++)
        free(g->nodes[i]);
    free(g->nodes);
    free(g->id);
    free(g);
}

void cl__reg_free(cl_reg_t *g)
{
    for (size_t i = 0; i < g->n; i++)
        gw_free(g->v[i]);
    free(g->v);
    hmap_free(&g->by_id);
    memset(g, 0, sizeof *g);
}

static const cl_gw_t *reg_find(const cl_reg_t *g, const char *id)
{
    uint64_t h = hmap_hash_str(id);
    for (hmap_node_t *n = hmap_first(&g->by_id, h); n; n = hmap_next(n, h)) {
        cl_gw_t *x = hmap_entry(n, cl_gw_t, node);
        if (strcmp(x->id, id) == 0)
            return x;
    }
    return NULL;
}

const cl_gw_t *cl__reg_find(const cluster_t *cl, const char *gw)
{
    return reg_find(&cl->reg, gw);
}

bool cl__reg_fresh(const cluster_t *cl)
{
    return cl->reg_ms && cl__now_ms() - cl->reg_ms <= 2 * cl->cfg.heartbeat_ms + 500;
}

static int reg_add(cl_reg_t *g, cl_gw_t *x)
{
    if (reg_find(g, x->id))
        return 0; /* (listed twice: once is enough) */
    if (g->n == g->cap) {
        size_t ncap = g->cap ? g->cap * 2 : 16;
        cl_gw_t **nv = realloc(g->v, ncap * sizeof *nv);
        if (!nv)
            return -1;
        g->v = nv;
        g->cap = ncap;
    }
    if (hmap_insert(&g->by_id, &x->node, hmap_hash_str(x->id)) < 0)
        return -1;
    g->v[g->n++] = x;
    if (!x->synced)
        g->unsynced++;
    return 1;
}

/* ---- refresh --------------------------------------------------------------------------------- */

typedef struct refresh {
    cluster_t *cl;
    uint64_t gen;
    uint64_t ver;      /* wsgw:{reg}:ver, read before the registry */
    bool ver_ok;
    bool orphan;       /* the list could not be asked for: on_ver frees it */
    cl_reg_t reg;
    int pending;
    bool failed;
} refresh_t;

typedef struct rq {
    refresh_t *rf;
    char *id;
} rq_t;

/* ---- gateways awaited after Redis came back ---------------------------------------------------- */

static void await_clear(cluster_t *cl)
{
    for (size_t i = 0; i < cl->nawaited; i++)
        free(cl->awaited[i]);
    free(cl->awaited);
    cl->awaited = NULL;
    cl->nawaited = 0;
}

void cl__reg_await(cluster_t *cl)
{
    await_clear(cl);
    if (!cl->reg.n)
        return;
    if (!(cl->awaited = calloc(cl->reg.n, sizeof *cl->awaited)))
        return;
    for (size_t i = 0; i < cl->reg.n; i++)
        if ((cl->awaited[cl->nawaited] = strdup(cl->reg.v[i]->id)))
            cl->nawaited++;
    cl->awaited_until = cl__now_ms() + cl->cfg.ttl_ms;
    log_info("redis back: presence waits for the gateways listed before", "gateways=%zu ttl_ms=%llu",
             cl->nawaited, (unsigned long long)cl->cfg.ttl_ms);
}

/* the registry was read: who is listed again is no longer awaited */
static void await_prune(cluster_t *cl)
{
    size_t k = 0;
    for (size_t i = 0; i < cl->nawaited; i++) {
        if (reg_find(&cl->reg, cl->awaited[i]))
            free(cl->awaited[i]);
        else
            cl->awaited[k++] = cl->awaited[i];
    }
    cl->nawaited = k;
    if (!k)
        await_clear(cl);
}

bool cl__reg_awaiting(cluster_t *cl)
{
    if (!cl->nawaited)
        return false;
    if (cl__now_ms() < cl->awaited_until)
        return true;
    char g[96];
    log_rl_warn("gateways not listed again within the TTL after Redis came back: presence is "
                "answered without them", "gateways=%zu first=%s", cl->nawaited,
                log_quote(g, sizeof g, cl->awaited[0]));
    await_clear(cl);
    return false;
}

static void refresh_done(refresh_t *rf)
{
    cluster_t *cl = rf->cl;
    if (rf->gen == cl->reg_gen && !rf->failed && rf->ver_ok && !cl->stopped) {
        cl__reg_free(&cl->reg);
        cl->reg = rf->reg;
        cl->reg_ver = rf->ver;
        cl->reg_ms = cl__now_ms();
        await_prune(cl);
        metrics_gauge_set(cl->m_gateways, (int64_t)cl->reg.n);
        cl__hold_reg_read(cl); /* (commands held before it was read) */
        cluster_ready(cl, NULL); /* (logs and the gauge follow) */
    } else {
        cl__reg_free(&rf->reg);
    }
    cl_waiter_t *w = NULL;
    if (rf->gen == cl->reg_gen) {
        cl->refreshing = false;
        w = cl->waiters;
        cl->waiters = NULL;
    }
    free(rf);
    while (w) {
        cl_waiter_t *next = w->next;
        w->fn(w->ud);
        free(w);
        w = next;
    }
}

int cl__reg_wait(cluster_t *cl, void (*fn)(void *ud), void *ud)
{
    cl_waiter_t *w = malloc(sizeof *w);
    if (!w)
        return -1;
    w->fn = fn;
    w->ud = ud;
    w->next = cl->waiters;
    cl->waiters = w;
    if (!cl->refreshing)
        cl__reg_refresh(cl);
    if (!cl->refreshing) { /* (could not start one: Redis away) */
        cl->waiters = w->next;
        free(w);
        return -1;
    }
    return 0;
}

static cl_gw_t *parse_meta(const char *id, const redisReply *r, uint64_t now)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 2)
        return NULL;
    cl_gw_t *g = calloc(1, sizeof *g);
    if (!g || !(g->id = strdup(id))) {
        free(g);
        return NULL;
    }
    g->prefix = -1;
    char syn[CL_TOK_LEN + 1] = "";
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const redisReply *k = r->element[i], *v = r->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        if (strcmp(k->str, "tok") == 0 && v->len == CL_TOK_LEN)
            memcpy(g->tok, v->str, CL_TOK_LEN + 1);
        else if (strcmp(k->str, "syn") == 0 && v->len == CL_TOK_LEN)
            memcpy(syn, v->str, CL_TOK_LEN + 1);
        else if (strcmp(k->str, "pfx") == 0)
            g->prefix = atoi(v->str);
        else if (strncmp(k->str, "n:", 2) == 0 && strtoull(v->str, NULL, 10) > now) {
            char **nn = realloc(g->nodes, (size_t)(g->nnodes + 1) * sizeof *nn);
            if (!nn)
                continue;
            g->nodes = nn;
            if ((g->nodes[g->nnodes] = strdup(k->str + 2)))
                g->nnodes++;
        }
    }
    if (!g->tok[0]) {
        gw_free(g);
        return NULL;
    }
    g->synced = strcmp(syn, g->tok) == 0;
    return g;
}

static void on_meta(void *ud, redisReply *reply)
{
    rq_t *q = ud;
    refresh_t *rf = q->rf;
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        rf->failed = true;
    } else {
        cl_gw_t *g = parse_meta(q->id, reply, wall_ms());
        if (g && reg_add(&rf->reg, g) <= 0)
            gw_free(g);
    }
    free(q->id);
    free(q);
    if (--rf->pending == 0)
        refresh_done(rf);
}

static void on_list(void *ud, redisReply *reply)
{
    refresh_t *rf = ud;
    cluster_t *cl = rf->cl;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || cl->stopped) {
        rf->failed = true;
        refresh_done(rf);
        return;
    }
    rf->pending = 1; /* (ours, released below: replies may come while we issue more) */
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *e = reply->element[i];
        if (e->type != REDIS_REPLY_STRING || e->len > CL_ID_MAX)
            continue;
        rq_t *q = calloc(1, sizeof *q);
        if (!q || !(q->id = strndup(e->str, e->len))) {
            free(q);
            rf->failed = true;
            break;
        }
        q->rf = rf;
        char meta[CL_KEY_MAX];
        cl__key_meta(meta, q->id);
        rf->pending++;
        if (redis_cmd(cl->r, on_meta, q, "HGETALL %s", meta) != REDIS_C_OK) {
            rf->pending--;
            free(q->id);
            free(q);
            rf->failed = true;
            break;
        }
    }
    if (--rf->pending == 0)
        refresh_done(rf);
}

uint64_t cl__reg_ver_parse(const redisReply *reply)
{
    if (reply && reply->type == REDIS_REPLY_STRING)
        return strtoull(reply->str, NULL, 10);
    if (reply && reply->type == REDIS_REPLY_INTEGER)
        return (uint64_t)reply->integer;
    return 0;
}

/* The version before the list (same link: the registry read after it is at least as new). */
static void on_ver(void *ud, redisReply *reply)
{
    refresh_t *rf = ud;
    if (rf->orphan) {
        free(rf);
        return;
    }
    rf->ver = cl__reg_ver_parse(reply);
    rf->ver_ok = !redis_reply_is_error(reply);
}

void cl__reg_refresh(cluster_t *cl)
{
    if (cl->refreshing && cl__now_ms() - cl->reg_ms < 4 * cl->cfg.heartbeat_ms)
        return; /* one at a time (a stuck one is abandoned by generation) */
    if (cl->refreshing) { /* abandoned: its waiters go with the new one */
        cl->refreshing = false;
    }
    refresh_t *rf = calloc(1, sizeof *rf);
    if (!rf)
        return;
    rf->cl = cl;
    rf->gen = ++cl->reg_gen;
    char now[24];
    snprintf(now, sizeof now, "%llu", (unsigned long long)wall_ms());
    if (redis_cmd(cl->r, on_ver, rf, "GET %s", cl__key_reg_ver) != REDIS_C_OK) {
        free(rf);
        return;
    }
    cl->refreshing = true;
    if (redis_cmd(cl->r, on_list, rf, "ZRANGEBYSCORE %s %s +inf", cl__key_reg_gw, now) !=
        REDIS_C_OK) {
        cl->refreshing = false;
        rf->orphan = true; /* (its GET is answered still) */
    }
}

/* ---- reaper ---------------------------------------------------------------------------------
 * A token nobody heartbeats for two TTLs is dead: its gateway expired, or it was replaced.
 * One node claims it (ZREM wins once), walks its connections with HSCAN, drops the user and
 * room index entries still made under it, then deletes the hash. One token at a time, a few
 * hundred connections per step. */

typedef struct reap {
    cluster_t *cl;
    char tok[CL_TOK_LEN + 1];
    char *gw;
    char key[CL_KEY_MAX];
    char cursor[24];
    size_t n;
} reap_t;

static void reap_step(reap_t *rp);

static void reap_end(reap_t *rp, bool ok)
{
    cluster_t *cl = rp->cl;
    if (ok) {
        redis_cmd(cl->r, NULL, NULL, "DEL %s", rp->key);
        char g[96];
        log_info("dead presence token reaped", "gateway=%s token=%s connections=%zu",
                 log_quote(g, sizeof g, rp->gw), rp->tok, rp->n);
    }
    cl->reaping = false;
    free(rp->gw);
    free(rp);
}

/* Netstring items of a connection value: the user, then its rooms. */
static int next_item(const char *v, size_t len, size_t *off, const char **item, size_t *ilen)
{
    if (*off >= len)
        return 0;
    const char *colon = memchr(v + *off, ':', len - *off);
    if (!colon)
        return -1;
    size_t n = strtoull(v + *off, NULL, 10);
    size_t start = (size_t)(colon - v) + 1;
    if (start + n > len)
        return -1;
    *item = v + start;
    *ilen = n;
    *off = start + n;
    return 1;
}

static void unlink_index(cluster_t *cl, const char *key, const char *conn, const char *tok)
{
    const char *argv[] = {key, conn, tok};
    redis_eval(cl->r, &cl__unlink_script, NULL, NULL, 1, 3, argv, NULL);
}

static void on_scan(void *ud, redisReply *reply)
{
    reap_t *rp = ud;
    cluster_t *cl = rp->cl;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 || cl->stopped) {
        reap_end(rp, false);
        return;
    }
    const redisReply *cur = reply->element[0], *kv = reply->element[1];
    snprintf(rp->cursor, sizeof rp->cursor, "%s", cur->type == REDIS_REPLY_STRING ? cur->str : "0");
    for (size_t i = 0; kv->type == REDIS_REPLY_ARRAY && i + 1 < kv->elements; i += 2) {
        const redisReply *c = kv->element[i], *v = kv->element[i + 1];
        if (c->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        size_t off = 0, il;
        const char *it;
        char key[CL_KEY_MAX], name[CL_ID_MAX + 1];
        bool first = true;
        while (next_item(v->str, v->len, &off, &it, &il) == 1) {
            if (il > CL_ID_MAX)
                il = CL_ID_MAX;
            memcpy(name, it, il);
            name[il] = 0;
            if (first ? (il > 0 && cl__key_user(key, name) > 0) : cl__key_room(key, name) > 0)
                unlink_index(cl, key, c->str, rp->tok);
            first = false;
        }
        rp->n++;
        metrics_inc(cl->m_reaped);
    }
    if (strcmp(rp->cursor, "0") == 0)
        reap_end(rp, true);
    else
        reap_step(rp);
}

static void reap_step(reap_t *rp)
{
    if (redis_cmd(rp->cl->r, on_scan, rp, "HSCAN %s %s COUNT 200", rp->key, rp->cursor) !=
        REDIS_C_OK)
        reap_end(rp, false);
}

static void on_reap_meta(void *ud, redisReply *reply)
{
    reap_t *rp = ud;
    cluster_t *cl = rp->cl;
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        reap_end(rp, false);
        return;
    }
    if (reply->type == REDIS_REPLY_STRING && reply->len == CL_TOK_LEN &&
        memcmp(reply->str, rp->tok, CL_TOK_LEN) == 0) {
        /* still its gateway's token (a heartbeat was late): not dead, listed again */
        char member[CL_TOK_LEN + CL_ID_MAX + 2], now[24];
        snprintf(member, sizeof member, "%s%s", rp->tok, rp->gw);
        snprintf(now, sizeof now, "%llu", (unsigned long long)wall_ms());
        redis_cmd(cl->r, NULL, NULL, "ZADD %s %s %b", cl__key_reg_tok, now, member,
                  strlen(member));
        reap_end(rp, false);
        return;
    }
    cl__key_conns(rp->key, rp->gw, rp->tok);
    snprintf(rp->cursor, sizeof rp->cursor, "0");
    reap_step(rp);
}

static void on_claim(void *ud, redisReply *reply)
{
    reap_t *rp = ud;
    cluster_t *cl = rp->cl;
    if (!reply || reply->type != REDIS_REPLY_INTEGER || reply->integer != 1) {
        reap_end(rp, false); /* another node has it */
        return;
    }
    char meta[CL_KEY_MAX];
    cl__key_meta(meta, rp->gw);
    if (redis_cmd(cl->r, on_reap_meta, rp, "HGET %s tok", meta) != REDIS_C_OK)
        reap_end(rp, false);
}

static void on_candidates(void *ud, redisReply *reply)
{
    cluster_t *cl = ud;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || !reply->elements || cl->stopped) {
        cl->reaping = false;
        return;
    }
    const redisReply *e = reply->element[0];
    if (e->type != REDIS_REPLY_STRING || e->len <= CL_TOK_LEN ||
        e->len > CL_TOK_LEN + CL_ID_MAX) {
        /* not ours: drop it from the list */
        if (e->type == REDIS_REPLY_STRING)
            redis_cmd(cl->r, NULL, NULL, "ZREM %s %b", cl__key_reg_tok, e->str, e->len);
        cl->reaping = false;
        return;
    }
    reap_t *rp = calloc(1, sizeof *rp);
    if (!rp || !(rp->gw = strndup(e->str + CL_TOK_LEN, e->len - CL_TOK_LEN))) {
        free(rp);
        cl->reaping = false;
        return;
    }
    rp->cl = cl;
    memcpy(rp->tok, e->str, CL_TOK_LEN);
    if (redis_cmd(cl->r, on_claim, rp, "ZREM %s %b", cl__key_reg_tok, e->str, e->len) !=
        REDIS_C_OK)
        reap_end(rp, false);
}

void cl__reap(cluster_t *cl)
{
    uint64_t now = wall_ms();
    char old_gw[24], old_tok[24];
    snprintf(old_gw, sizeof old_gw, "%llu", (unsigned long long)(now - cl->cfg.ttl_ms));
    snprintf(old_tok, sizeof old_tok, "%llu", (unsigned long long)(now - 2 * cl->cfg.ttl_ms));
    /* gateways no node has registered for a TTL past their expiry */
    redis_cmd(cl->r, NULL, NULL, "ZREMRANGEBYSCORE %s -inf %s", cl__key_reg_gw, old_gw);
    if (cl->reaping)
        return;
    cl->reaping = true;
    if (redis_cmd(cl->r, on_candidates, cl, "ZRANGEBYSCORE %s -inf %s LIMIT 0 1",
                  cl__key_reg_tok, old_tok) != REDIS_C_OK)
        cl->reaping = false;
}
