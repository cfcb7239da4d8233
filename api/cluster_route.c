/* cluster_route.c: targets to gateways across the cluster, and presence queries, from Redis
 * (see cluster.h). A user's gateways come from its index hash (one HGETALL), a connection's
 * gateway from its id's prefix (the registry) checked against that gateway's hash; room and all
 * go to every live gateway without a lookup. Each gateway then gets its part once: on one of
 * this node's streams to it, else through one node that serves it (cluster_bus.c).
 * Loop thread only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_priv.h"
#include "log.h"
#include "metrics.h"
#include "router.h"

/* ---- routing ------------------------------------------------------------------------------- */

typedef struct part {
    char *gw;
    uint64_t *conns;
    size_t nconns, capc;
    char **users;   /* borrowed from the op */
    size_t nusers, capu;
} part_t;

typedef struct op {
    cluster_t *cl;
    cluster_done_fn done;
    void *ud;
    uint8_t *cmd;     /* the Command without its target, serialized */
    size_t cmdlen;
    char **users;     /* the target's user ids (copies) */
    size_t nusers;
    part_t *parts;
    size_t nparts, cap;
    int pending;      /* lookups in flight (+1 while issuing) */
    int gateways;     /* from the room / all part */
    bool failed;
    bool resyncing;   /* (failed:) a gateway's presence is being re-sent under a new token */
    /* what the registry did not know (a gateway that appeared within the last heartbeat):
     * looked at again once it was read afresh (once) */
    struct unk_user {
        size_t user;
        char gw[CL_ID_MAX + 1];
        char tok[CL_TOK_LEN + 1];
        char conn[24];    /* the entry's connection (decimal) */
    } *unk_u;
    size_t nunk_u;
    uint64_t *unk_c;
    size_t nunk_c;
    bool waited;
} op_t;

typedef struct look {
    op_t *op;
    size_t user;      /* the user's index in op->users */
    char *gw;         /* conn lookups: the candidate gateway */
    uint64_t conn;
    bool entry;       /* a user's index entry checked under its own token: live adds the user */
} look_t;

static void op_free(op_t *op)
{
    for (size_t i = 0; i < op->nparts; i++) {
        free(op->parts[i].gw);
        free(op->parts[i].conns);
        free(op->parts[i].users);
    }
    free(op->parts);
    for (size_t i = 0; i < op->nusers; i++)
        free(op->users[i]);
    free(op->users);
    free(op->cmd);
    free(op->unk_u);
    free(op->unk_c);
    free(op);
}

static part_t *part_for(op_t *op, const char *gw)
{
    for (size_t i = 0; i < op->nparts; i++)
        if (strcmp(op->parts[i].gw, gw) == 0)
            return &op->parts[i];
    if (op->nparts == op->cap) {
        size_t nc = op->cap ? op->cap * 2 : 8;
        part_t *np = realloc(op->parts, nc * sizeof *np);
        if (!np)
            return NULL;
        op->parts = np;
        op->cap = nc;
    }
    part_t *p = &op->parts[op->nparts];
    memset(p, 0, sizeof *p);
    if (!(p->gw = strdup(gw)))
        return NULL;
    op->nparts++;
    return p;
}

static int part_add_user(part_t *p, char *user)
{
    for (size_t i = 0; i < p->nusers; i++)
        if (p->users[i] == user)
            return 0;
    if (p->nusers == p->capu) {
        size_t nc = p->capu ? p->capu * 2 : 4;
        char **nu = realloc(p->users, nc * sizeof *nu);
        if (!nu)
            return -1;
        p->users = nu;
        p->capu = nc;
    }
    p->users[p->nusers++] = user;
    return 0;
}

static int part_add_conn(part_t *p, uint64_t conn)
{
    if (p->nconns == p->capc) {
        size_t nc = p->capc ? p->capc * 2 : 4;
        uint64_t *nn = realloc(p->conns, nc * sizeof *nn);
        if (!nn)
            return -1;
        p->conns = nn;
        p->capc = nc;
    }
    p->conns[p->nconns++] = conn;
    return 0;
}

/* Every lookup is in: each gateway gets its part, here or through another node. */
static void op_finish(op_t *op)
{
    cluster_t *cl = op->cl;
    int gateways = op->gateways;
    if (op->failed) {
        op->done(op->ud, op->resyncing ? CLUSTER_ERR_RESYNCING : CLUSTER_ERR_UNAVAILABLE);
        op_free(op);
        return;
    }
    Wsgw__V1__Command *cmd = op->nparts ? wsgw__v1__command__unpack(NULL, op->cmdlen, op->cmd)
                                        : NULL;
    if (op->nparts && !cmd) {
        op->done(op->ud, CLUSTER_ERR_NOMEM);
        op_free(op);
        return;
    }
    Wsgw__V1__Target **slot = NULL;
    if (cmd)
        slot = cmd->kind_case == WSGW__V1__COMMAND__KIND_SEND ? &cmd->send->target
                                                              : &cmd->kick->target;
    Wsgw__V1__Target *saved = slot ? *slot : NULL;
    for (size_t i = 0; i < op->nparts; i++) {
        part_t *p = &op->parts[i];
        Wsgw__V1__Target tg = WSGW__V1__TARGET__INIT;
        tg.n_conn_ids = p->nconns;
        tg.conn_ids = p->conns;
        tg.n_user_ids = p->nusers;
        tg.user_ids = p->users;
        *slot = &tg;
        api_stream_t *s = cl__local_stream(cl, p->gw);
        if (s) {
            cluster_gateway_attached(cl, p->gw); /* (what was held for it goes first) */
            if (router_emit(cl->router, s, cmd) == ROUTER_OK)
                gateways++;
        } else {
            const cl_gw_t *g = cl__reg_find(cl, p->gw);
            if (g)
                gateways += cl__bus_send(cl, &g, 1, cmd);
            else
                metrics_inc(cl->m_fwd_lost);
        }
    }
    if (cmd) {
        *slot = saved;
        wsgw__v1__command__free_unpacked(cmd, NULL);
    }
    op->done(op->ud, gateways);
    op_free(op);
}

static bool look_conn(op_t *op, const cl_gw_t *g, const char *tok, uint64_t conn,
                      const size_t *entry_user);

/* cl__check_script's answer for a token that is not the gateway's: -1 its presence is being
 * re-sent under another (rebuilt: nobody can tell yet), -2 another whole one; 0 otherwise. */
static int check_other_token(const redisReply *r)
{
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
        r->element[0]->type == REDIS_REPLY_INTEGER && r->element[0]->integer < 0)
        return (int)r->element[0]->integer;
    return 0;
}

/* A user's index entry (conn, under tok) for gateway g, whose token in our registry read is
 * another: either is older. The gateway's hash tells, under the entry's token
 * (cl__check_script): the connection is there (live: the user's part), another whole token is
 * (a stale entry), or that one is still being re-sent (nobody can tell yet: "presence
 * resyncing", as the readiness gate would have said, had our read been newer). */
static bool look_entry(op_t *op, size_t user, const cl_gw_t *g, const char *tok,
                       const char *conn)
{
    char t[CL_TOK_LEN + 1];
    memcpy(t, tok, CL_TOK_LEN);
    t[CL_TOK_LEN] = 0;
    return look_conn(op, g, t, strtoull(conn, NULL, 10), &user);
}

/* The registry was read again: what it did not know before. */
static void op_retry(void *ud)
{
    op_t *op = ud;
    cluster_t *cl = op->cl;
    for (size_t i = 0; i < op->nunk_u && !op->failed; i++) {
        const cl_gw_t *g = cl__reg_find(cl, op->unk_u[i].gw);
        if (!g)
            continue;
        if (strcmp(g->tok, op->unk_u[i].tok) != 0) {
            if (!look_entry(op, op->unk_u[i].user, g, op->unk_u[i].tok, op->unk_u[i].conn))
                op->failed = true;
            continue;
        }
        part_t *p = part_for(op, g->id);
        if (!p || part_add_user(p, op->users[op->unk_u[i].user]) < 0)
            op->failed = true;
    }
    for (size_t i = 0; i < op->nunk_c && !op->failed; i++)
        for (size_t k = 0; k < cl->reg.n && !op->failed; k++)
            if (cl->reg.v[k]->prefix == (int)(op->unk_c[i] >> 48) &&
                !look_conn(op, cl->reg.v[k], cl->reg.v[k]->tok, op->unk_c[i], NULL))
                op->failed = true;
    op->nunk_u = op->nunk_c = 0;
    if (--op->pending == 0)
        op_finish(op);
}

static void op_put(op_t *op)
{
    if (--op->pending)
        return;
    if (!op->waited && !op->failed && (op->nunk_u || op->nunk_c)) {
        op->waited = true;
        op->pending = 1;
        if (cl__reg_wait(op->cl, op_retry, op) == 0)
            return;
        op->pending = 0;
    }
    op_finish(op);
}

static int unk_user(op_t *op, size_t user, const char *gw, const char *tok, const char *conn)
{
    struct unk_user *nu = realloc(op->unk_u, (op->nunk_u + 1) * sizeof *nu);
    if (!nu)
        return -1;
    op->unk_u = nu;
    nu[op->nunk_u].user = user;
    snprintf(nu[op->nunk_u].gw, sizeof nu->gw, "%s", gw);
    memcpy(nu[op->nunk_u].tok, tok, CL_TOK_LEN);
    nu[op->nunk_u].tok[CL_TOK_LEN] = 0;
    snprintf(nu[op->nunk_u].conn, sizeof nu->conn, "%s", conn);
    op->nunk_u++;
    return 0;
}

static void on_user(void *ud, redisReply *reply)
{
    look_t *lk = ud;
    op_t *op = lk->op;
    cluster_t *cl = op->cl;
    if (!reply || reply->type != REDIS_REPLY_ARRAY) {
        op->failed = true;
    } else {
        for (size_t i = 0; i + 1 < reply->elements && !op->failed; i += 2) {
            const redisReply *c = reply->element[i], *v = reply->element[i + 1];
            if (c->type != REDIS_REPLY_STRING || c->len > 20 || v->type != REDIS_REPLY_STRING ||
                v->len <= CL_TOK_LEN || v->len > CL_TOK_LEN + CL_ID_MAX)
                continue;
            char gw[CL_ID_MAX + 1];
            memcpy(gw, v->str + CL_TOK_LEN, v->len - CL_TOK_LEN);
            gw[v->len - CL_TOK_LEN] = 0;
            const cl_gw_t *g = cl__reg_find(cl, gw);
            if (!g && !op->waited) { /* new since the registry was read? */
                if (unk_user(op, lk->user, gw, v->str, c->str) < 0)
                    op->failed = true;
                continue;
            }
            if (!g)
                continue; /* a dead gateway: not live */
            if (memcmp(g->tok, v->str, CL_TOK_LEN) != 0) { /* the entry or our read is older */
                if (!look_entry(op, lk->user, g, v->str, c->str))
                    op->failed = true;
                continue;
            }
            part_t *p = part_for(op, gw);
            if (!p || part_add_user(p, op->users[lk->user]) < 0)
                op->failed = true;
        }
    }
    free(lk);
    op_put(op);
}

static void on_conn(void *ud, redisReply *reply)
{
    look_t *lk = ud;
    op_t *op = lk->op;
    int other = check_other_token(reply);
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        op->failed = true;
    } else if (other == -1) {
        op->failed = op->resyncing = true;
    } else if (other == -2 && !lk->entry) {
        /* the gateway has a token newer than our registry read: look again once it is read
         * afresh (with that token) */
        uint64_t *nc = op->waited ? NULL : realloc(op->unk_c, (op->nunk_c + 1) * sizeof *nc);
        if (nc)
            (op->unk_c = nc)[op->nunk_c++] = lk->conn;
        else if (!op->waited)
            op->failed = true;
    } else if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 1 &&
               reply->element[0]->type == REDIS_REPLY_INTEGER &&
               reply->element[0]->integer == 1) {
        part_t *p = part_for(op, lk->gw);
        if (!p || (lk->entry ? part_add_user(p, op->users[lk->user])
                             : part_add_conn(p, lk->conn)) < 0)
            op->failed = true;
    } /* (else not live: a stale entry, or the gateway is gone) */
    free(lk->gw);
    free(lk);
    op_put(op);
}

/* Issues one lookup (takes lk). false: not sent (the op failed). */
static bool look_user(op_t *op, size_t i)
{
    look_t *lk = calloc(1, sizeof *lk);
    char key[CL_KEY_MAX];
    if (!lk)
        return false;
    lk->op = op;
    lk->user = i;
    cl__key_user(key, op->users[i]);
    op->pending++;
    metrics_inc(op->cl->m_lookups);
    if (redis_cmd(op->cl->r, on_user, lk, "HGETALL %s", key) != REDIS_C_OK) {
        op->pending--;
        free(lk);
        return false;
    }
    return true;
}

/* Is conn in g's hash under tok (cl__check_script)? on_conn adds it to g's part, or with
 * entry_user (a user's index entry) that user. */
static bool look_conn(op_t *op, const cl_gw_t *g, const char *tok, uint64_t conn,
                      const size_t *entry_user)
{
    look_t *lk = calloc(1, sizeof *lk);
    if (!lk || !(lk->gw = strdup(g->id))) {
        free(lk);
        return false;
    }
    lk->op = op;
    lk->conn = conn;
    lk->entry = entry_user != NULL;
    lk->user = entry_user ? *entry_user : 0;
    char meta[CL_KEY_MAX], conns[CL_KEY_MAX], c[24];
    cl__key_meta(meta, g->id);
    cl__key_conns(conns, g->id, tok);
    snprintf(c, sizeof c, "%llu", (unsigned long long)conn);
    const char *argv[] = {meta, conns, tok, c};
    op->pending++;
    metrics_inc(op->cl->m_lookups);
    if (redis_eval(op->cl->r, &cl__check_script, on_conn, lk, 2, 4, argv, NULL) != REDIS_C_OK) {
        op->pending--;
        free(lk->gw);
        free(lk);
        return false;
    }
    return true;
}

int cluster_route(cluster_t *cl, const target_t *t, const Wsgw__V1__Command *cmd,
                  cluster_done_fn done, void *ud)
{
    if (!redis_up(cl->r))
        return CLUSTER_ERR_UNAVAILABLE;
    op_t *op = calloc(1, sizeof *op);
    if (!op)
        return CLUSTER_ERR_NOMEM;
    op->cl = cl;
    op->done = done;
    op->ud = ud;
    /* the command without its target, kept serialized until the parts are known */
    Wsgw__V1__Command c = *cmd;
    Wsgw__V1__Send send;
    Wsgw__V1__Kick kick;
    if (c.kind_case == WSGW__V1__COMMAND__KIND_SEND) {
        send = *cmd->send;
        send.target = NULL;
        c.send = &send;
    } else {
        kick = *cmd->kick;
        kick.target = NULL;
        c.kick = &kick;
    }
    op->cmdlen = wsgw__v1__command__get_packed_size(&c);
    op->cmd = malloc(op->cmdlen ? op->cmdlen : 1);
    if (t->n_user_ids)
        op->users = calloc(t->n_user_ids, sizeof *op->users);
    if (!op->cmd || (t->n_user_ids && !op->users)) {
        op_free(op);
        return CLUSTER_ERR_NOMEM;
    }
    wsgw__v1__command__pack(&c, op->cmd);
    for (size_t i = 0; i < t->n_user_ids; i++) {
        if (!(op->users[i] = strdup(t->user_ids[i]))) {
            op_free(op);
            return CLUSTER_ERR_NOMEM;
        }
        op->nusers++;
    }
    /* room / all: every live gateway, now (the router's local part and the remote rest) */
    if (t->all || (t->room && *t->room)) {
        target_t bt = {.room = t->room, .all = t->all};
        Wsgw__V1__Command bc = c;
        Wsgw__V1__Send bs;
        Wsgw__V1__Kick bk;
        Wsgw__V1__Target tg = WSGW__V1__TARGET__INIT;
        if (bc.kind_case == WSGW__V1__COMMAND__KIND_SEND) {
            bs = send;
            bs.target = &tg;
            bc.send = &bs;
        } else {
            bk = kick;
            bk.target = &tg;
            bc.kick = &bk;
        }
        int n = router_route(cl->router, &bt, &bc, NULL);
        if (n < 0) {
            op_free(op);
            return CLUSTER_ERR_NOMEM;
        }
        op->gateways += n;
    }
    op->pending = 1; /* ours while issuing */
    for (size_t i = 0; i < op->nusers && !op->failed; i++)
        if (*op->users[i] && strlen(op->users[i]) <= CL_ID_MAX && !look_user(op, i))
            op->failed = true;
    for (size_t i = 0; i < t->n_conn_ids && !op->failed; i++) {
        int prefix = (int)(t->conn_ids[i] >> 48);
        bool known = false;
        for (size_t k = 0; k < cl->reg.n && !op->failed; k++) {
            if (cl->reg.v[k]->prefix != prefix)
                continue;
            known = true;
            if (!look_conn(op, cl->reg.v[k], cl->reg.v[k]->tok, t->conn_ids[i], NULL))
                op->failed = true;
        }
        if (!known && !op->failed) { /* a gateway new since the registry was read? */
            uint64_t *nc = realloc(op->unk_c, (op->nunk_c + 1) * sizeof *nc);
            if (!nc)
                op->failed = true;
            else
                (op->unk_c = nc)[op->nunk_c++] = t->conn_ids[i];
        }
    }
    op_put(op);
    return 0;
}

/* ---- presence queries ---------------------------------------------------------------------- */

typedef struct qgroup {
    char *gw;
    char tok[CL_TOK_LEN + 1];
    char **conns;   /* decimal ids */
    char **users;   /* per conn (room entries carry the user; user queries: NULL) */
    size_t n, cap;
} qgroup_t;

typedef struct query {
    cluster_t *cl;
    cluster_members_fn fn;
    void *ud;
    char *key;      /* the index hash */
    char *user;     /* user queries: the user */
    bool room;
    qgroup_t *g;
    size_t ng, capg;
    cl_member_t *m;
    size_t nm, capm;
    int pending;
    bool failed;
    bool resyncing;   /* (failed:) a gateway's presence is being re-sent under a new token */
} query_t;

typedef struct qlook {
    query_t *q;
    size_t g;        /* group */
    size_t off, n;   /* its conns [off, off + n) */
} qlook_t;

#define CHECK_CHUNK 50 /* conns per check script call (redis_eval takes 61 arguments) */

static void query_free(query_t *q)
{
    for (size_t i = 0; i < q->ng; i++) {
        for (size_t k = 0; k < q->g[i].n; k++) {
            free(q->g[i].conns[k]);
            if (q->g[i].users)
                free(q->g[i].users[k]);
        }
        free(q->g[i].conns);
        free(q->g[i].users);
        free(q->g[i].gw);
    }
    free(q->g);
    free(q->m);
    free(q->key);
    free(q->user);
    free(q);
}

static void query_put(query_t *q)
{
    if (--q->pending)
        return;
    if (q->failed)
        q->fn(q->ud, q->resyncing ? CLUSTER_ERR_RESYNCING : CLUSTER_ERR_UNAVAILABLE, NULL, 0);
    else
        q->fn(q->ud, 0, q->m, q->nm);
    query_free(q);
}

static int add_member(query_t *q, uint64_t conn, const char *user, const char *gw)
{
    if (q->nm == q->capm) {
        size_t nc = q->capm ? q->capm * 2 : 8;
        cl_member_t *nm = realloc(q->m, nc * sizeof *nm);
        if (!nm)
            return -1;
        q->m = nm;
        q->capm = nc;
    }
    q->m[q->nm++] = (cl_member_t){.conn_id = conn, .user_id = user, .gateway_id = gw};
    return 0;
}

/* A stale index entry (its connection or token is gone): removed if still that entry. */
static void unlink_stale(query_t *q, const char *conn, const char *tok)
{
    const char *argv[] = {q->key, conn, tok};
    redis_eval(q->cl->r, &cl__unlink_script, NULL, NULL, 1, 3, argv, NULL);
}

static void on_check(void *ud, redisReply *reply)
{
    qlook_t *ql = ud;
    query_t *q = ql->q;
    qgroup_t *g = &q->g[ql->g];
    if (!reply || reply->type != REDIS_REPLY_ARRAY) {
        q->failed = true;
    } else if (check_other_token(reply) == -1) {
        q->failed = q->resyncing = true; /* not known yet: the entries stay */
    } else {
        for (size_t j = 0; j < ql->n; j++) {
            size_t k = ql->off + j;
            bool live = j < reply->elements && reply->element[j]->type == REDIS_REPLY_INTEGER &&
                        reply->element[j]->integer == 1;
            if (!live) {
                unlink_stale(q, g->conns[k], g->tok);
                continue;
            }
            const char *user = q->room ? g->users[k] : q->user;
            if (add_member(q, strtoull(g->conns[k], NULL, 10), user, g->gw) < 0)
                q->failed = true;
        }
    }
    free(ql);
    query_put(q);
}

static qgroup_t *group_for(query_t *q, const char *gw, const char *tok)
{
    for (size_t i = 0; i < q->ng; i++)
        if (strcmp(q->g[i].gw, gw) == 0 && strcmp(q->g[i].tok, tok) == 0)
            return &q->g[i];
    if (q->ng == q->capg) {
        size_t nc = q->capg ? q->capg * 2 : 4;
        qgroup_t *ng = realloc(q->g, nc * sizeof *ng);
        if (!ng)
            return NULL;
        q->g = ng;
        q->capg = nc;
    }
    qgroup_t *g = &q->g[q->ng];
    memset(g, 0, sizeof *g);
    if (!(g->gw = strdup(gw)))
        return NULL;
    snprintf(g->tok, sizeof g->tok, "%s", tok);
    q->ng++;
    return g;
}

static int group_add(qgroup_t *g, const char *conn, size_t clen, const char *user, size_t ulen,
                     bool room)
{
    if (g->n == g->cap) {
        size_t nc = g->cap ? g->cap * 2 : 8;
        char **ncn = realloc(g->conns, nc * sizeof *ncn);
        if (!ncn)
            return -1;
        g->conns = ncn;
        if (room) {
            char **nu = realloc(g->users, nc * sizeof *nu);
            if (!nu)
                return -1;
            g->users = nu;
        }
        g->cap = nc;
    }
    char *c = strndup(conn, clen);
    char *u = room ? strndup(user, ulen) : NULL;
    if (!c || (room && !u)) {
        free(c);
        free(u);
        return -1;
    }
    g->conns[g->n] = c;
    if (room)
        g->users[g->n] = u;
    g->n++;
    return 0;
}

static void on_index(void *ud, redisReply *reply)
{
    query_t *q = ud;
    if (!reply || reply->type != REDIS_REPLY_ARRAY) {
        q->failed = true;
        query_put(q);
        return;
    }
    for (size_t i = 0; i + 1 < reply->elements && !q->failed; i += 2) {
        const redisReply *c = reply->element[i], *v = reply->element[i + 1];
        if (c->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING ||
            v->len <= CL_TOK_LEN || c->len > 20)
            continue;
        const char *rest = v->str + CL_TOK_LEN;
        size_t rlen = v->len - CL_TOK_LEN;
        const char *nl = q->room ? memchr(rest, '\n', rlen) : NULL;
        size_t glen = nl ? (size_t)(nl - rest) : rlen;
        if ((q->room && !nl) || glen == 0 || glen > CL_ID_MAX)
            continue;
        char gw[CL_ID_MAX + 1], tok[CL_TOK_LEN + 1];
        memcpy(gw, rest, glen);
        gw[glen] = 0;
        memcpy(tok, v->str, CL_TOK_LEN);
        tok[CL_TOK_LEN] = 0;
        qgroup_t *g = group_for(q, gw, tok);
        if (!g || group_add(g, c->str, c->len, nl ? nl + 1 : "", nl ? rlen - glen - 1 : 0,
                            q->room) < 0)
            q->failed = true;
    }
    for (size_t i = 0; i < q->ng && !q->failed; i++) {
        qgroup_t *g = &q->g[i];
        for (size_t off = 0; off < g->n && !q->failed; off += CHECK_CHUNK) {
            size_t n = g->n - off < CHECK_CHUNK ? g->n - off : CHECK_CHUNK;
            const char *argv[3 + CHECK_CHUNK];
            char meta[CL_KEY_MAX], conns[CL_KEY_MAX];
            qlook_t *ql = malloc(sizeof *ql);
            if (!ql) {
                q->failed = true;
                break;
            }
            cl__key_meta(meta, g->gw);
            cl__key_conns(conns, g->gw, g->tok);
            argv[0] = meta;
            argv[1] = conns;
            argv[2] = g->tok;
            for (size_t k = 0; k < n; k++)
                argv[3 + k] = g->conns[off + k];
            ql->q = q;
            ql->g = i;
            ql->off = off;
            ql->n = n;
            q->pending++;
            if (redis_eval(q->cl->r, &cl__check_script, on_check, ql, 2, (int)(3 + n), argv,
                           NULL) != REDIS_C_OK) {
                q->pending--;
                q->failed = true;
                free(ql);
            }
        }
    }
    query_put(q);
}

static int query(cluster_t *cl, const char *name, bool room, cluster_members_fn fn, void *ud)
{
    if (!redis_up(cl->r))
        return CLUSTER_ERR_UNAVAILABLE;
    if (strlen(name) > CL_ID_MAX) {
        fn(ud, 0, NULL, 0); /* (never indexed: nobody by that name) */
        return 0;
    }
    query_t *q = calloc(1, sizeof *q);
    char key[CL_KEY_MAX];
    if (!q)
        return CLUSTER_ERR_NOMEM;
    q->cl = cl;
    q->fn = fn;
    q->ud = ud;
    q->room = room;
    if (room)
        cl__key_room(key, name);
    else
        cl__key_user(key, name);
    q->key = strdup(key);
    q->user = room ? NULL : strdup(name);
    if (!q->key || (!room && !q->user)) {
        query_free(q);
        return CLUSTER_ERR_NOMEM;
    }
    q->pending = 1;
    metrics_inc(cl->m_lookups);
    if (redis_cmd(cl->r, on_index, q, "HGETALL %s", q->key) != REDIS_C_OK) {
        query_free(q);
        return CLUSTER_ERR_UNAVAILABLE;
    }
    return 0;
}

int cluster_user_presence(cluster_t *cl, const char *user, cluster_members_fn fn, void *ud)
{
    return query(cl, user, false, fn, ud);
}

int cluster_room_presence(cluster_t *cl, const char *room, cluster_members_fn fn, void *ud)
{
    return query(cl, room, true, fn, ud);
}
