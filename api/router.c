/* router.c: commands to streams, targets to gateways (see router.h). */
#include "router.h"

#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "downstream.h"
#include "metrics.h"
#include "wsapi_metrics.h"

struct route_part {
    api_stream_t *s;
    uint64_t *conn_ids;
    size_t nconn, capconn;
    char **user_ids; /* borrowed from the target */
    size_t nuser, capuser;
    bool broadcast; /* carries the target's room / all */
};

void router_init(router_t *r, presence_t *pres, size_t soft_max)
{
    memset(r, 0, sizeof *r);
    r->pres = pres;
    r->soft_max = soft_max;
}

void router_free(router_t *r)
{
    for (size_t i = 0; i < r->cap; i++) {
        free(r->parts[i].conn_ids);
        free(r->parts[i].user_ids);
    }
    free(r->parts);
    r->parts = NULL;
    r->cap = r->nparts = 0;
    r->dirty = NULL;
}

void router_mark(router_t *r, api_stream_t *s)
{
    if (s->dirty)
        return;
    s->dirty = true;
    s->dirty_prev = NULL;
    s->dirty_next = r->dirty;
    if (r->dirty)
        r->dirty->dirty_prev = s;
    r->dirty = s;
}

void router_forget(router_t *r, api_stream_t *s)
{
    if (!s->dirty)
        return;
    if (s->dirty_prev)
        s->dirty_prev->dirty_next = s->dirty_next;
    else
        r->dirty = s->dirty_next;
    if (s->dirty_next)
        s->dirty_next->dirty_prev = s->dirty_prev;
    s->dirty_prev = s->dirty_next = NULL;
    s->dirty = false;
}

api_stream_t *router_pop_dirty(router_t *r)
{
    api_stream_t *s = r->dirty;
    if (s)
        router_forget(r, s);
    return s;
}

/* Before appending `need` bytes to s's pending Downstream: flushes it first when it would
 * grow past the soft maximum. */
static void emit_room(router_t *r, api_stream_t *s, size_t need)
{
    if (s->ncmds > 0 && s->pending.len + need > r->soft_max && s->flush)
        s->flush(s);
}

static void emit_done(router_t *r, api_stream_t *s)
{
    s->ncmds++;
    r->commands++;
    router_mark(r, s);
}

int router_emit(router_t *r, api_stream_t *s, const Wsgw__V1__Command *cmd)
{
    if (s->closed)
        return ROUTER_ERR_CLOSED;
    emit_room(r, s, downstream_entry_size(cmd));
    if (downstream_append(&s->pending, cmd) < 0)
        return ROUTER_ERR_NOMEM;
    emit_done(r, s);
    return ROUTER_OK;
}

int router_emit_send1(router_t *r, api_stream_t *s, uint64_t conn_id, const uint8_t *payload,
                      size_t len, bool binary, int64_t api_ns)
{
    if (s->closed)
        return ROUTER_ERR_CLOSED;
    emit_room(r, s, downstream_send1_size(conn_id, len, binary, api_ns));
    if (downstream_append_send1(&s->pending, conn_id, payload, len, binary, api_ns) < 0)
        return ROUTER_ERR_NOMEM;
    emit_done(r, s);
    return ROUTER_OK;
}

/* ---- routing a target ----------------------------------------------------------------------- */

static route_part_t *part_for(router_t *r, api_stream_t *s)
{
    if (s->rt_epoch == r->epoch)
        return &r->parts[s->rt_part];
    if (r->nparts == r->cap) {
        size_t ncap = r->cap ? r->cap * 2 : 8;
        route_part_t *np = realloc(r->parts, ncap * sizeof *np);
        if (!np)
            return NULL;
        memset(np + r->cap, 0, (ncap - r->cap) * sizeof *np);
        r->parts = np;
        r->cap = ncap;
    }
    route_part_t *p = &r->parts[r->nparts];
    p->s = s;
    p->nconn = p->nuser = 0;
    p->broadcast = false;
    s->rt_epoch = r->epoch;
    s->rt_part = (int)r->nparts++;
    pres_gateway_t *g = s->gw;
    if (g && g->rt_epoch != r->epoch) {
        g->rt_epoch = r->epoch;
        g->rt_stream = s;
        g->rt_user = 0;
    }
    return p;
}

static int grow(void **arr, size_t *cap, size_t n, size_t elem)
{
    if (n < *cap)
        return 0;
    size_t ncap = *cap ? *cap * 2 : 16;
    void *na = realloc(*arr, ncap * elem);
    if (!na)
        return -1;
    *arr = na;
    *cap = ncap;
    return 0;
}

/* A targeted connection whose gateway has no live stream (all its streams failed at once,
 * reopening): skipped and counted; its session's presence stays. */
static void unreachable(router_t *r)
{
    r->unreachable++;
    metrics_inc(wsapi_m.unreachable);
}

/* The stream a gateway's share of a target goes on when no connection dictates one. */
static api_stream_t *gw_stream(router_t *r, pres_gateway_t *g, api_stream_t *prefer)
{
    if (prefer && prefer->gw == g)
        return prefer;
    if (g->rt_epoch == r->epoch && g->rt_stream)
        return g->rt_stream;
    return g->streams;
}

int router_route(router_t *r, const target_t *t, Wsgw__V1__Command *cmd, api_stream_t *prefer)
{
    presence_t *pres = r->pres;
    r->epoch++;
    r->nparts = 0;

    for (size_t i = 0; i < t->n_conn_ids; i++) {
        pres_conn_t *c = presence_conn(pres, t->conn_ids[i]);
        if (!c)
            continue;
        api_stream_t *s = presence_conn_stream(c);
        if (!s) {
            unreachable(r);
            continue;
        }
        route_part_t *p = part_for(r, s);
        if (!p || grow((void **)&p->conn_ids, &p->capconn, p->nconn, sizeof(uint64_t)) < 0)
            return ROUTER_ERR_NOMEM;
        p->conn_ids[p->nconn++] = t->conn_ids[i];
    }
    for (size_t i = 0; i < t->n_user_ids; i++) {
        pres_user_t *u = presence_user(pres, t->user_ids[i]);
        if (!u)
            continue;
        for (pres_conn_t *c = u->conns; c; c = c->u_next) {
            pres_gateway_t *g = c->gw;
            if (g->rt_epoch == r->epoch && g->rt_user == i + 1)
                continue; /* this user is already on its way to this gateway */
            api_stream_t *s = (prefer && prefer->gw == g) ? prefer : presence_conn_stream(c);
            if (!s) {
                unreachable(r);
                continue;
            }
            route_part_t *p = part_for(r, s);
            if (!p || grow((void **)&p->user_ids, &p->capuser, p->nuser, sizeof(char *)) < 0)
                return ROUTER_ERR_NOMEM;
            p->user_ids[p->nuser++] = t->user_ids[i];
            g->rt_user = i + 1;
        }
    }
    if (t->all || (t->room && *t->room)) {
        for (pres_gateway_t *g = pres->gw_list; g; g = g->next) {
            api_stream_t *s = gw_stream(r, g, prefer);
            if (!s)
                continue;
            route_part_t *p = part_for(r, s);
            if (!p)
                return ROUTER_ERR_NOMEM;
            p->broadcast = true;
        }
    }

    /* Emit one command per part; count distinct gateways that got at least one. */
    Wsgw__V1__Target **slot = cmd->kind_case == WSGW__V1__COMMAND__KIND_SEND
                                  ? &cmd->send->target
                                  : &cmd->kick->target;
    Wsgw__V1__Target *saved = *slot;
    int remote = 0;
    if (r->cl && (t->all || (t->room && *t->room))) {
        /* --redis: the gateways of other nodes (the local ones are among the parts) */
        Wsgw__V1__Target bt = WSGW__V1__TARGET__INIT;
        bt.room = t->room && *t->room ? t->room : NULL;
        bt.all = t->all;
        *slot = &bt;
        remote = cluster_broadcast_remote(r->cl, cmd);
        *slot = saved;
    }
    int gateways = 0;
    r->epoch++; /* fresh marks for counting */
    for (size_t i = 0; i < r->nparts; i++) {
        route_part_t *p = &r->parts[i];
        Wsgw__V1__Target tg = WSGW__V1__TARGET__INIT;
        tg.n_conn_ids = p->nconn;
        tg.conn_ids = p->conn_ids;
        tg.n_user_ids = p->nuser;
        tg.user_ids = p->user_ids;
        if (p->broadcast) {
            if (t->room && *t->room)
                tg.room = t->room;
            tg.all = t->all;
        }
        *slot = &tg;
        int rv = router_emit(r, p->s, cmd);
        *slot = saved;
        if (rv == ROUTER_ERR_NOMEM)
            return rv;
        if (rv == ROUTER_OK && p->s->gw && p->s->gw->rt_epoch != r->epoch) {
            p->s->gw->rt_epoch = r->epoch;
            gateways++;
        }
    }
    return gateways + remote;
}
