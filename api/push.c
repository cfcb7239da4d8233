/* push.c: push / kick routing (see push.h). Loop thread only. */
#include "push.h"

#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"

/* One Send of a push: t (a part of the push's target) with the channel it went to (may be
 * NULL) and its place in that channel's history (offset 0: not kept). */
static int route_one(router_t *r, const target_t *t, const uint8_t *payload, size_t len,
                     bool binary, const char *chan, uint64_t offset, const char *epoch,
                     api_stream_t *prefer)
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
    return router_route(r, t, &cmd, prefer);
}

int push_send(router_t *r, const target_t *t, const uint8_t *payload, size_t len, bool binary)
{
    push_result_t res;
    int rv = push_publish(r, t, payload, len, binary, false, NULL, &res);
    int n = res.gateways;
    push_result_free(&res);
    return rv < 0 ? rv : n;
}

/* A channel part being kept: the history's answer routes it. */
typedef struct part {
    router_t *r;
    target_t t;
    const uint8_t *payload;
    size_t len;
    bool binary;
    char *chan;
    api_stream_t *prefer;
    push_result_t *out;
    int rv;
    bool done;
} part_t;

static void part_route(part_t *p, const hist_pos_t *pos)
{
    int n = route_one(p->r, &p->t, p->payload, p->len, p->binary, p->chan,
                      pos ? pos->offset : 0, pos ? pos->epoch : "", p->prefer);
    p->done = true;
    if (n < 0) {
        p->rv = n;
        return;
    }
    if (n > p->out->gateways)
        p->out->gateways = n;
    if (!pos) {
        p->out->not_kept++;
        return;
    }
    push_kept_t *k = realloc(p->out->kept, (p->out->nkept + 1) * sizeof *k);
    if (!k) {
        p->rv = ROUTER_ERR_NOMEM;
        return;
    }
    p->out->kept = k;
    k[p->out->nkept].channel = p->chan;
    k[p->out->nkept].pos = *pos;
    p->out->nkept++;
    p->chan = NULL; /* (now the result's) */
}

static void on_added(void *ud, int status, const hist_pos_t *pos)
{
    part_route(ud, status == HIST_OK ? pos : NULL);
}

/* Keeps and routes one channel part (t: that part alone). */
static int keep_part(router_t *r, const target_t *t, const char *prefix, const char *name,
                     const uint8_t *payload, size_t len, bool binary, api_stream_t *prefer,
                     push_result_t *out)
{
    size_t pl = strlen(prefix), nl = strlen(name);
    part_t p = {r, *t, payload, len, binary, malloc(pl + nl + 1), prefer, out, 0, false};
    if (!p.chan)
        return ROUTER_ERR_NOMEM;
    memcpy(p.chan, prefix, pl);
    memcpy(p.chan + pl, name, nl + 1);
    int hv = history_add(r->hist, p.chan, pl + nl, payload, len, binary,
                         (uint64_t)(clock_wall_ns() / 1000000), on_added, &p);
    if (hv != HIST_OK)
        part_route(&p, NULL); /* delivered anyway, without an offset (logged, counted) */
    else if (!p.done)
        /* an asynchronous store (Redis) needs the push kept until it answers: not wired to
         * the push path yet, so this cannot happen with the stores push_publish is used with */
        log_rl_error("history answered later than expected", "channel_len=%zu", pl + nl);
    free(p.chan);
    return p.rv;
}

int push_publish(router_t *r, const target_t *t, const uint8_t *payload, size_t len,
                 bool binary, bool keep, api_stream_t *prefer, push_result_t *out)
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
        int n = route_one(r, t, payload, len, binary, chan, 0, "", prefer);
        free(own);
        if (n < 0)
            return n;
        out->gateways = n;
        return 0;
    }
    int rv = 0;
    if (t->n_conn_ids || t->all) {
        target_t rest = {0};
        rest.conn_ids = t->conn_ids;
        rest.n_conn_ids = t->n_conn_ids;
        rest.all = t->all;
        int n = route_one(r, &rest, payload, len, binary, NULL, 0, "", prefer);
        if (n < 0)
            return n;
        out->gateways = n;
    }
    for (size_t i = 0; i < t->n_user_ids && rv == 0; i++) {
        target_t one = {0};
        one.user_ids = &t->user_ids[i];
        one.n_user_ids = 1;
        rv = keep_part(r, &one, "user:", t->user_ids[i], payload, len, binary, prefer, out);
    }
    if (t->room && rv == 0) {
        target_t room = {0};
        room.room = t->room;
        rv = keep_part(r, &room, "room:", t->room, payload, len, binary, prefer, out);
    }
    return rv;
}

void push_result_free(push_result_t *out)
{
    for (size_t i = 0; i < out->nkept; i++)
        free(out->kept[i].channel);
    free(out->kept);
    out->kept = NULL;
    out->nkept = 0;
}

int push_kick(router_t *r, const target_t *t, int code, const char *reason)
{
    Wsgw__V1__Kick kick = WSGW__V1__KICK__INIT;
    kick.code = code;
    kick.reason = (char *)(reason ? reason : "");
    Wsgw__V1__Command cmd = WSGW__V1__COMMAND__INIT;
    cmd.kind_case = WSGW__V1__COMMAND__KIND_KICK;
    cmd.kick = &kick;
    return router_route(r, t, &cmd, NULL);
}
