/* exchange.c: one Upstream batch -> presence + handler + ack (see exchange.h). */
#include "exchange.h"

#include <string.h>

#include "cluster.h"
#include "log.h"
#include "metrics.h"
#include "presence_gate.h"
#include "recover.h"
#include "updec.h"
#include "wsapi_metrics.h"
#include "wsgw.pb-c.h"

void exchange_init(exchange_t *x, presence_t *pres, router_t *r, handler_kind_t handler)
{
    x->cl = NULL;
    x->pres = pres;
    x->router = r;
    x->handler = handler;
    x->strs = (buf_t)BUF_INIT;
    x->rns = (buf_t)BUF_INIT;
    rooms_init(&x->rooms);
    x->chat = (chat_limits_t){CHAT_MAX_ROOM_NAME, CHAT_MAX_ROOMS};
}

void exchange_free(exchange_t *x)
{
    buf_free(&x->strs);
    buf_free(&x->rns);
    rooms_free(&x->rooms);
}

/* An Open/Close from a session older than the one the entry came from: a stopped node reads
 * an old connection's buffered events after the gateway resynced on a new one. */
static void stale(int metric, const char *kind, uint64_t conn_id, const api_stream_t *s)
{
    metrics_inc(metric);
    log_rl_info("stale presence event ignored", "kind=%s conn_id=%llu session=%llu stream=%llu",
                kind, (unsigned long long)conn_id,
                (unsigned long long)(s->sess ? s->sess->serial : 0),
                (unsigned long long)s->serial);
}

/* The batch said presence_complete: once every announced stream of the session has, the
 * gateway's presence is whole on this node. */
static void complete(exchange_t *x, api_stream_t *s)
{
    if (!presence_complete(x->pres, s))
        return;
    pres_session_t *sess = s->sess;
    char gw[96];
    log_rl_info("gateway presence synced", "gateway=%s session=%llu streams=%u connections=%zu",
                log_quote(gw, sizeof gw, s->gw ? s->gw->id : ""),
                (unsigned long long)sess->serial, sess->expect, sess->nconns);
}

/* NUL-terminated copies of n strings of the event being handled (the views point into the
 * batch) in x->strs; out[i] point at them until the next call. -1: out of memory. */
static int cstrs(exchange_t *x, size_t n, const updec_str_t *in, const char **out)
{
    size_t need = 0;
    for (size_t i = 0; i < n; i++)
        need += in[i].len + 1;
    buf_reset(&x->strs);
    if (buf_reserve(&x->strs, need) < 0)
        return -1;
    char *p = (char *)x->strs.data;
    for (size_t i = 0; i < n; i++) {
        if (in[i].len)
            memcpy(p, in[i].p, in[i].len);
        p[in[i].len] = 0;
        out[i] = p;
        p += in[i].len + 1;
    }
    return 0;
}

/* The event's user: uid (its user_id), else the one its connection's Open gave ("" when
 * none). */
static const char *event_user(const exchange_t *x, const updec_event_t *ev, const char *uid)
{
    if (*uid)
        return uid;
    pres_conn_t *c = presence_conn(x->pres, ev->conn_id);
    return c && c->user ? c->user->id : "";
}

/* A walk over a resync Open's rooms (Open.rooms) within this node's limits: names of at most
 * max_len bytes (--max-room-name, and the cluster's key limit with --redis), at most
 * --max-rooms-per-conn of them; the rest refused and counted, and past the cap not read (each
 * name costs a lookup, and a hostile gateway may send a million). Empty names are none (one
 * alone: the connection is in no room). */
typedef struct room_walk {
    const uint8_t *cur;
    size_t walked, taken, refused;
} room_walk_t;

static bool next_room(const exchange_t *x, const updec_event_t *ev, room_walk_t *w,
                      size_t max_len, updec_str_t *r)
{
    while (w->taken < x->chat.max_rooms && updec_room(ev, &w->cur, r)) {
        w->walked++;
        if (!r->len)
            continue;
        if (r->len > max_len) {
            w->refused++;
            continue;
        }
        w->taken++;
        return true;
    }
    return false;
}

/* The walk is over (to its end, or the cap): the unread count as refused, with the others. */
static void room_walk_done(const exchange_t *x, const updec_event_t *ev, room_walk_t *w)
{
    size_t n = w->refused + (ev->nrooms - w->walked);
    if (!n)
        return;
    metrics_add(wsapi_m.rooms_restored[1], n);
    log_rl_warn("re-sent room memberships not recorded: over this node's limits",
                "conn_id=%llu refused=%zu max_room_name=%zu max_rooms_per_conn=%zu",
                (unsigned long long)ev->conn_id, n, x->chat.max_name, x->chat.max_rooms);
}

/* --redis: a resync Open's rooms as "=" then netstrings ("LEN:NAME", the cluster's format) in
 * x->rns (cluster_open). Returns 0, or -1 when out of memory. */
static int open_rooms(exchange_t *x, const updec_event_t *ev)
{
    buf_reset(&x->rns);
    if (buf_append(&x->rns, "=", 1) < 0)
        return -1;
    room_walk_t w = {0};
    updec_str_t r;
    size_t max_len = x->chat.max_name < CLUSTER_ID_MAX ? x->chat.max_name : CLUSTER_ID_MAX;
    while (next_room(x, ev, &w, max_len, &r))
        if (buf_appendf(&x->rns, "%zu:", r.len) < 0 || buf_append(&x->rns, r.p, r.len) < 0)
            return -1;
    room_walk_done(x, ev, &w);
    return 0;
}

/* Without --redis: a resync Open's rooms this node has no record of (it restarted since the
 * joins) are recorded again, as joins are (a connection in at most --max-rooms-per-conn). */
static int restore_rooms(exchange_t *x, const updec_event_t *ev)
{
    room_walk_t w = {0};
    updec_str_t r;
    const char *name;
    while (next_room(x, ev, &w, x->chat.max_name, &r)) {
        if (cstrs(x, 1, &r, &name) < 0)
            return EXCHANGE_ERR_NOMEM;
        if (rooms_is_member(&x->rooms, ev->conn_id, name))
            continue;
        if (rooms_of_conn(&x->rooms, ev->conn_id) >= x->chat.max_rooms) {
            w.refused++;
            continue;
        }
        if (rooms_join(&x->rooms, ev->conn_id, name) < 0)
            return EXCHANGE_ERR_NOMEM;
        metrics_inc(wsapi_m.rooms_restored[0]);
    }
    room_walk_done(x, ev, &w);
    return EXCHANGE_OK;
}

static int handle_event(exchange_t *x, api_stream_t *s, const updec_event_t *ev, cl_batch_t *b)
{
    const char *str[3];
    switch (ev->kind) {
    case UPDEC_OPEN: {
        metrics_inc(wsapi_m.ev_open);
        if (cstrs(x, 2, (const updec_str_t[]){ev->user_id, ev->gateway_id}, str) < 0)
            return EXCHANGE_ERR_NOMEM;
        if (b) { /* --redis */
            if (ev->nrooms && open_rooms(x, ev) < 0)
                return EXCHANGE_ERR_NOMEM;
            cluster_open(b, ev->conn_id, str[0], (const char *)x->rns.data,
                         ev->nrooms ? x->rns.len : 0);
            return EXCHANGE_OK;
        }
        pres_result_t pr = presence_open(x->pres, ev->conn_id, str[0], str[1], s);
        if (pr == PRES_ERR)
            return EXCHANGE_ERR_NOMEM;
        if (pr == PRES_STALE)
            stale(wsapi_m.stale_open, "open", ev->conn_id, s);
        else if (ev->nrooms)
            return restore_rooms(x, ev);
        return EXCHANGE_OK;
    }
    case UPDEC_CLOSE:
        metrics_inc(wsapi_m.ev_close);
        if (b) {
            if (cstrs(x, 1, &ev->user_id, str) < 0)
                return EXCHANGE_ERR_NOMEM;
            cluster_close(b, ev->conn_id, str[0]);
            return EXCHANGE_OK;
        }
        if (presence_close(x->pres, ev->conn_id, s) == PRES_STALE) {
            stale(wsapi_m.stale_close, "close", ev->conn_id, s);
            return EXCHANGE_OK; /* the connection lives on: its rooms too */
        }
        rooms_forget_conn(&x->rooms, ev->conn_id);
        /* connections that left without a Close reaching us (their gateway vanished) */
        if (x->rooms.nmembers > 2 * presence_count(x->pres) + 4096)
            rooms_sweep(&x->rooms, x->pres);
        return EXCHANGE_OK;
    case UPDEC_MESSAGE: {
        metrics_inc(wsapi_m.ev_message);
        const char *user = ""; /* only the chat handler reads it (echo, none: not looked up) */
        if (x->handler == HANDLER_CHAT) {
            if (cstrs(x, 1, &ev->user_id, str) < 0)
                return EXCHANGE_ERR_NOMEM;
            user = event_user(x, ev, str[0]);
        }
        int rv = handler_message(x->handler, x->router, &x->rooms, &x->chat, s, ev->conn_id,
                                 user, ev->payload.p, ev->payload.len, ev->binary);
        if (rv == ROUTER_ERR_NOMEM)
            return EXCHANGE_ERR_NOMEM;
        return EXCHANGE_OK; /* ROUTER_ERR_CLOSED: the stream is ending, nothing to answer on */
    }
    case UPDEC_RECOVER: {
        if (cstrs(x, 3, (const updec_str_t[]){ev->user_id, ev->channel, ev->epoch}, str) < 0)
            return EXCHANGE_ERR_NOMEM;
        Wsgw__V1__Recover rq = WSGW__V1__RECOVER__INIT;
        rq.channel = (char *)str[1];
        rq.epoch = (char *)str[2];
        rq.offset = ev->offset;
        rq.id = ev->id;
        /* (ROUTER_ERR_CLOSED: the stream is ending; the gateway's timeout tells the client) */
        if (recover_handle(x->router, s, ev->conn_id, event_user(x, ev, str[0]), &rq) ==
            ROUTER_ERR_NOMEM)
            return EXCHANGE_ERR_NOMEM;
        return EXCHANGE_OK;
    }
    default:
        metrics_inc(wsapi_m.ev_unknown);
        log_rl_warn("event without kind", "conn_id=%llu stream=%llu",
                    (unsigned long long)ev->conn_id, (unsigned long long)s->serial);
        return EXCHANGE_OK;
    }
}

static int process(exchange_t *x, api_stream_t *s, const uint8_t *msg, size_t len)
{
    updec_t up;
    if (updec_check(&up, msg, len) < 0)
        return EXCHANGE_ERR_DECODE;
    cl_batch_t *b = NULL;
    if (x->cl && !(b = cluster_batch_begin(x->cl, s)))
        return EXCHANGE_ERR_NOMEM;
    int rv = EXCHANGE_OK;
    updec_event_t ev;
    while (rv == EXCHANGE_OK && updec_next(&up, &ev))
        rv = handle_event(x, s, &ev, b);
    presence_gate_gauges(x->pres);
    if (rv == EXCHANGE_OK) {
        if (up.presence_complete) {
            pres_session_t *sess = s->sess;
            bool was = sess && sess->synced;
            complete(x, s);
            if (b && sess && sess->synced && !was)
                cluster_synced(b); /* its resync Opens are written before this, in order */
        }
        if (b) {
            cluster_batch_end(b, up.seq); /* the ack follows its Redis writes */
        } else {
            if (up.seq > s->ack)
                s->ack = up.seq;
            s->ack_dirty = true;
            router_mark(x->router, s);
        }
        metrics_inc(wsapi_m.upstream_msgs);
    } else if (b) {
        cluster_batch_end(b, 0); /* (not acknowledged: the stream fails) */
    }
    return rv;
}

int exchange_upstream(exchange_t *x, api_stream_t *s, const uint8_t *msg, size_t len)
{
    cl_sess_t *cs = x->cl && s->sess ? s->sess->cl : NULL;
    if (cs && !cluster_session_bound(cs)) {
        /* --redis: its session's presence token is on its way; a bad message fails the
         * stream now, as it would have */
        updec_t up;
        if (updec_check(&up, msg, len) < 0)
            return EXCHANGE_ERR_DECODE;
        return cluster_session_hold(cs, s, msg, len) < 0 ? EXCHANGE_ERR_NOMEM : EXCHANGE_OK;
    }
    return process(x, s, msg, len);
}

/* A batch held for its session's token (cluster.h), now. */
static void held_batch(void *ud, api_stream_t *s, const uint8_t *msg, size_t len)
{
    exchange_t *x = ud;
    int rv = process(x, s, msg, len);
    if (rv != EXCHANGE_OK && s->fail)
        s->fail(s, rv == EXCHANGE_ERR_NOMEM ? 8 : 13,
                rv == EXCHANGE_ERR_NOMEM ? "out of memory" : "cannot decode wsgw.v1.Upstream");
}

/* A chat join Redis refused past the cap (cluster.h). */
static void join_refused(void *ud, api_stream_t *s, uint64_t conn_id, const char *room,
                         size_t max_rooms, bool take_back)
{
    exchange_t *x = ud;
    handler_join_refused(x->router, s, conn_id, room, max_rooms, take_back);
}

void exchange_set_cluster(exchange_t *x, struct cluster *cl)
{
    x->cl = cl;
    if (cl) {
        cluster_set_handler(cl, held_batch, x);
        cluster_set_room_refused(cl, join_refused, x);
    }
}
