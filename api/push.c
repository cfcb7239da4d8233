/* push.c: push / kick routing (see push.h). Loop thread only. */
#include "push.h"

#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "cluster.h"
#include "history_metrics.h"
#include "log.h"
#include "metrics.h"

/* A push routed through the cluster (--redis): answered once every part is (push.h). */
typedef struct pub_op {
    push_publish_fn done;
    void *ud;
    push_result_t res;
    int pending; /* parts in flight, +1 while issuing */
    int rv;
} pub_op_t;

static void op_put(pub_op_t *op)
{
    if (--op->pending)
        return;
    op->done(op->ud, op->rv, &op->res);
    push_result_free(&op->res);
    free(op);
}

const char *push_err_away(int err)
{
    if (err == PUSH_ERR_UNAVAILABLE || err == CLUSTER_ERR_UNAVAILABLE)
        return "redis unavailable";
    if (err == PUSH_ERR_RESYNCING || err == CLUSTER_ERR_RESYNCING)
        return "presence resyncing";
    return NULL;
}

/* One part routed by the cluster: its gateway count (the push's is the most of any part). */
static void on_part_routed(void *ud, int n)
{
    pub_op_t *op = ud;
    if (n < 0 && op->rv == 0)
        op->rv = n == CLUSTER_ERR_UNAVAILABLE ? PUSH_ERR_UNAVAILABLE
                 : n == CLUSTER_ERR_RESYNCING ? PUSH_ERR_RESYNCING
                                              : ROUTER_ERR_NOMEM;
    else if (n > op->res.gateways)
        op->res.gateways = n;
    op_put(op);
}

/* cmd to the gateways of t: now (returns their number), or with op through the cluster
 * (returns 0: counted when it is done). */
static int route_cmd(router_t *r, const target_t *t, Wsgw__V1__Command *cmd,
                     api_stream_t *prefer, pub_op_t *op)
{
    if (!op)
        return router_route(r, t, cmd, prefer);
    op->pending++;
    int rv = cluster_route(r->cl, t, cmd, on_part_routed, op);
    if (rv < 0) {
        op->pending--;
        return rv == CLUSTER_ERR_UNAVAILABLE ? PUSH_ERR_UNAVAILABLE : ROUTER_ERR_NOMEM;
    }
    return 0;
}

/* One Send of a push: t (a part of the push's target) with the channel it went to (may be
 * NULL) and its place in that channel's history (offset 0: not kept). */
static int route_one(router_t *r, const target_t *t, const uint8_t *payload, size_t len,
                     bool binary, const char *chan, uint64_t offset, const char *epoch,
                     api_stream_t *prefer, pub_op_t *op)
{
    Wsgw__V1__Send send = WSGW__V1__SEND__INIT;
    send.payload.data = (uint8_t *)payload;
    send.payload.len = len;
    send.binary = binary;
    send.api_ns = clock_wall_ns();
    if (chan) {
        send.channel = (char *)chan;
        send.offset = offset;
        send.epoch = (char *)(offset ? epoch : "");
    }
    Wsgw__V1__Command cmd = WSGW__V1__COMMAND__INIT;
    cmd.kind_case = WSGW__V1__COMMAND__KIND_SEND;
    cmd.send = &send;
    return route_cmd(r, t, &cmd, prefer, op);
}

int push_send(router_t *r, const target_t *t, const uint8_t *payload, size_t len, bool binary)
{
    push_result_t res;
    int rv = push_publish(r, t, payload, len, binary, false, NULL, &res);
    int n = res.gateways;
    push_result_free(&res);
    return rv < 0 ? rv : n;
}

/* A channel part being kept: the history's answer routes it. The memory store answers inside
 * history_add, so a part borrows the caller's payload and user name; a store that answers
 * later (Redis) gets a part that owns copies of them, and a count on its push (op) until it
 * is routed. */
typedef struct part {
    router_t *r;
    target_t t;         /* its one user (user_ids -> user) or room */
    char *user;
    uint8_t *payload;
    size_t len;
    bool binary;
    bool own;           /* user and payload are copies (freed with the part) */
    char *chan;         /* owned until it goes into the result */
    api_stream_t *prefer; /* while history_add runs; NULL once it returned */
    push_result_t *out; /* the push's result (op->res with an op; else the caller's, which
                           an answer after the call may no longer use: then NULL) */
    pub_op_t *op;       /* --redis: routed through the cluster */
    int rv;
    bool done, in_call;
} part_t;

static void part_free(part_t *p)
{
    if (p->own) {
        free(p->user);
        free(p->payload);
    }
    free(p->chan);
    free(p);
}

static void part_route(part_t *p, const hist_pos_t *pos)
{
    int n = route_one(p->r, &p->t, p->payload, p->len, p->binary, p->chan,
                      pos ? pos->offset : 0, pos ? pos->epoch : "",
                      p->in_call ? p->prefer : NULL, p->op);
    p->done = true;
    if (n < 0) {
        p->rv = n;
        if (p->op && !p->op->rv)
            p->op->rv = n;
        return;
    }
    push_result_t *out = p->out;
    if (!out)
        return; /* (answered after a synchronous push_publish returned: nobody to tell) */
    if (n > out->gateways)
        out->gateways = n;
    if (!pos) {
        out->not_kept++;
        return;
    }
    push_kept_t *k = realloc(out->kept, (out->nkept + 1) * sizeof *k);
    if (!k) {
        p->rv = ROUTER_ERR_NOMEM;
        return;
    }
    out->kept = k;
    k[out->nkept].channel = p->chan;
    k[out->nkept].pos = *pos;
    out->nkept++;
    p->chan = NULL; /* (now the result's) */
}

/* The history could not keep a part because its store is away (Redis): the push is refused
 * (503: the caller retries) rather than delivered without the offset its recipients would
 * need to recover it. */
static void part_refuse(part_t *p)
{
    p->done = true;
    p->rv = PUSH_ERR_UNAVAILABLE;
    if (p->op && !p->op->rv)
        p->op->rv = PUSH_ERR_UNAVAILABLE;
    metrics_inc(hist_m.push_refused);
    char q[96];
    log_rl_warn("push with history refused: the history store is unavailable (503)",
                "store=%s channel=%s", p->r->hist->kind, log_quote(q, sizeof q, p->chan));
}

static void on_added(void *ud, int status, const hist_pos_t *pos)
{
    part_t *p = ud;
    if (status == HIST_ERR_DOWN && p->op)
        part_refuse(p);
    else
        part_route(p, status == HIST_OK ? pos : NULL);
    if (p->in_call)
        return; /* keep_part finishes it */
    pub_op_t *op = p->op;
    part_free(p);
    if (op)
        op_put(op);
}

/* Keeps and routes one channel part (t: that part alone: one user or the room). Returns 0 or
 * a ROUTER_ERR_* / PUSH_ERR_* of what happened before it returned. */
static int keep_part(router_t *r, const target_t *t, const char *prefix, const char *name,
                     const uint8_t *payload, size_t len, bool binary, api_stream_t *prefer,
                     push_result_t *out, pub_op_t *op)
{
    size_t pl = strlen(prefix), nl = strlen(name);
    part_t *p = calloc(1, sizeof *p);
    if (!p)
        return ROUTER_ERR_NOMEM;
    p->r = r;
    p->own = r->hist->answers_later;
    p->chan = malloc(pl + nl + 1);
    p->payload = p->own ? malloc(len ? len : 1) : (uint8_t *)payload;
    p->user = !t->n_user_ids ? NULL : p->own ? strdup(t->user_ids[0]) : t->user_ids[0];
    if (!p->chan || (p->own && !p->payload) || (t->n_user_ids && !p->user)) {
        part_free(p);
        return ROUTER_ERR_NOMEM;
    }
    memcpy(p->chan, prefix, pl);
    memcpy(p->chan + pl, name, nl + 1);
    if (p->own && len)
        memcpy(p->payload, payload, len);
    p->len = len;
    p->binary = binary;
    if (p->user) {
        p->t.user_ids = &p->user;
        p->t.n_user_ids = 1;
    } else {
        p->t.room = p->chan + pl; /* "room:" + name */
    }
    p->prefer = prefer;
    p->out = out;
    p->op = op;
    p->in_call = true;
    if (op)
        op->pending++; /* until it is routed */
    int hv = history_add(r->hist, p->chan, pl + nl, payload, len, binary,
                         (uint64_t)(clock_wall_ns() / 1000000), on_added, p);
    if (hv == HIST_ERR_DOWN && op)
        part_refuse(p);
    else if (hv != HIST_OK)
        part_route(p, NULL); /* delivered anyway, without an offset (logged, counted) */
    p->in_call = false;
    int rv = p->rv;
    if (p->done) {
        part_free(p);
        if (op)
            op->pending--; /* (the push's own count keeps op alive until publish returns) */
        return rv;
    }
    /* the store answers later (Redis): routed then, in the order the store numbered it */
    if (!op)
        p->out = NULL; /* a synchronous caller's result is gone by then */
    return 0;
}

static int publish(router_t *r, const target_t *t, const uint8_t *payload, size_t len,
                   bool binary, bool keep, api_stream_t *prefer, push_result_t *out,
                   pub_op_t *op)
{
    memset(out, 0, sizeof *out);
    keep = (keep || r->hist_all) && r->hist && (t->n_user_ids || t->room);
    if (!keep) {
        /* one Send; it names its channel when it has exactly one */
        const char *chan = NULL;
        char *own = NULL;
        bool only_user = t->n_user_ids == 1 && !t->room && !t->n_conn_ids && !t->all;
        bool only_room = t->room && !t->n_user_ids && !t->n_conn_ids && !t->all;
        if (only_user || only_room) {
            const char *name = only_user ? t->user_ids[0] : t->room;
            size_t nl = strlen(name);
            own = malloc(nl + 6);
            if (!own)
                return ROUTER_ERR_NOMEM;
            memcpy(own, only_user ? "user:" : "room:", 5);
            memcpy(own + 5, name, nl + 1);
            chan = own;
        }
        int n = route_one(r, t, payload, len, binary, chan, 0, "", prefer, op);
        free(own);
        if (n < 0)
            return n;
        if (!op) /* (through the cluster: counted as parts are done) */
            out->gateways = n;
        return 0;
    }
    int rv = 0;
    if (t->n_conn_ids || t->all) {
        target_t rest = {0};
        rest.conn_ids = t->conn_ids;
        rest.n_conn_ids = t->n_conn_ids;
        rest.all = t->all;
        int n = route_one(r, &rest, payload, len, binary, NULL, 0, "", prefer, op);
        if (n < 0)
            return n;
        if (!op)
            out->gateways = n;
    }
    for (size_t i = 0; i < t->n_user_ids && rv == 0; i++) {
        target_t one = {0};
        one.user_ids = &t->user_ids[i];
        one.n_user_ids = 1;
        rv = keep_part(r, &one, "user:", t->user_ids[i], payload, len, binary, prefer, out, op);
    }
    if (t->room && rv == 0) {
        target_t room = {0};
        room.room = t->room;
        rv = keep_part(r, &room, "room:", t->room, payload, len, binary, prefer, out, op);
    }
    return rv;
}

int push_publish(router_t *r, const target_t *t, const uint8_t *payload, size_t len,
                 bool binary, bool keep, api_stream_t *prefer, push_result_t *out)
{
    return publish(r, t, payload, len, binary, keep, prefer, out, NULL);
}

int push_publish_async(router_t *r, const target_t *t, const uint8_t *payload, size_t len,
                       bool binary, bool keep, push_result_t *out, push_publish_fn done,
                       void *ud)
{
    if (!r->cl)
        return publish(r, t, payload, len, binary, keep, NULL, out, NULL);
    memset(out, 0, sizeof *out);
    pub_op_t *op = calloc(1, sizeof *op);
    if (!op)
        return ROUTER_ERR_NOMEM;
    op->done = done;
    op->ud = ud;
    op->pending = 1;
    op->rv = publish(r, t, payload, len, binary, keep, NULL, &op->res, op);
    if (op->rv == PUSH_ERR_UNAVAILABLE && op->pending == 1) {
        push_result_free(&op->res);
        free(op);
        return PUSH_ERR_UNAVAILABLE; /* nothing went anywhere: answered now */
    }
    op_put(op);
    return PUSH_PENDING;
}

void push_result_free(push_result_t *out)
{
    for (size_t i = 0; i < out->nkept; i++)
        free(out->kept[i].channel);
    free(out->kept);
    out->kept = NULL;
    out->nkept = 0;
}

int push_kick_async(router_t *r, const target_t *t, int code, const char *reason,
                    push_done_fn done, void *ud)
{
    Wsgw__V1__Kick kick = WSGW__V1__KICK__INIT;
    kick.code = code;
    kick.reason = (char *)(reason ? reason : "");
    Wsgw__V1__Command cmd = WSGW__V1__COMMAND__INIT;
    cmd.kind_case = WSGW__V1__COMMAND__KIND_KICK;
    cmd.kick = &kick;
    if (!r->cl || !done)
        return router_route(r, t, &cmd, NULL);
    int rv = cluster_route(r->cl, t, &cmd, (cluster_done_fn)done, ud);
    if (rv == CLUSTER_ERR_UNAVAILABLE)
        return PUSH_ERR_UNAVAILABLE;
    return rv < 0 ? ROUTER_ERR_NOMEM : PUSH_PENDING;
}

int push_kick(router_t *r, const target_t *t, int code, const char *reason)
{
    return push_kick_async(r, t, code, reason, NULL, NULL);
}
