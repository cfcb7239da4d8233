/* svc.c: lws service threads: loop, listening socket, accept, wake-ups, and the commands
 * that writers send back (see svc.h). Every function here runs on the service thread unless
 * its comment says otherwise. */
#include "svc.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clientproto.h"
#include "clock.h"
#include "config.h"
#include "conn_id.h"
#include "gwm.h"
#include "keepalive.h"
#include "listen.h"
#include "log.h"
#include "metrics.h"
#include "msgroute.h"
#include "outq.h"
#include "pausewatch.h"
#include "recycle.h"
#include "svcpoll.h"
#include "tlspolicy.h"
#include "utf8.h"
#include "wake.h"
#include "ws.h"
#include "wsout.h"

#define ACCEPT_BURST 64
#define CMD_BURST 64
#define TICK_MS 50

/* ---- msgroute's view of this thread (msgroute.h); service thread --------------------------- */

static bool route_push(void *ud, int u, gw_event_t *e) { return gw_svc_push_event(ud, u, e); }
static void route_pause(void *ud, gw_conn_t *c) { gw_svc_pause(ud, c); }
static void route_wake(void *ud) { gw_svc_wake(ud); }
static void route_want_done(void *ud, int u, bool on)
{
    atomic_store(&((gw_svc_t *)ud)->links[u]->want_done, on ? 1 : 0);
}
static uint32_t route_done(void *ud, int u, int st)
{
    return atomic_load_explicit(&((gw_svc_t *)ud)->links[u]->done[st], memory_order_acquire);
}
static gw_conn_t *route_conn(void *ud, uint64_t id)
{
    return gw_conn_table_get(&((gw_svc_t *)ud)->conns, id);
}
static void route_to_all(void *ud, gw_event_t *e)
{
    gw_svc_push_all(ud, e); /* a Close: the client is gone, nothing to pause */
}
static const gw_mr_ops_t route_ops = {route_push, route_pause, route_wake, route_want_done,
                                      route_done, route_conn, route_to_all};

/* ---- set-up (main thread) ------------------------------------------------------------- */

gw_svc_t *gw_svc_new(gw_t *g, int idx, char *err, size_t errlen)
{
    gw_svc_t *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->idx = idx;
    s->gw = g;
    /* Every service thread binds its own SO_REUSEPORT socket to the same port. */
    s->listen_fd = net_listen(gw_cfg.listen_host, gw_cfg.listen_port, true, err, errlen);
    if (s->listen_fd < 0)
        goto fail;
    int n = g->nup;
    s->links = calloc((size_t)n, sizeof *s->links);
    s->rs_gen = calloc((size_t)n, sizeof *s->rs_gen);
    s->rs_cursor = calloc((size_t)n, sizeof *s->rs_cursor);
    s->wscratch = malloc(LWS_PRE + GW_WSOUT_SCRATCH);
    if (!s->wscratch || !s->links || !s->rs_gen || !s->rs_cursor ||
        gw_mr_init(&s->route, g, &route_ops, s) < 0)
        goto fail_mem;
    /* the links are made by main once every thread and writer exists (gw_svc_attach) */
    gw_conn_table_init(&s->conns, g->prefix, (unsigned)idx, 0);
    atomic_init(&s->wake_pending, 0);
    atomic_init(&s->ctx_pub, NULL);
    atomic_init(&s->nconns, 0);
    atomic_init(&s->stop_req, 0);
    atomic_init(&s->ended, 0);
    return s;
fail_mem:
    snprintf(err, errlen, "out of memory");
fail:
    if (s->listen_fd >= 0)
        close(s->listen_fd);
    free(s->links);
    gw_mr_free(&s->route);
    free(s->wscratch);
    free(s->rs_gen);
    free(s->rs_cursor);
    free(s);
    return NULL;
}

/* ---- wake-ups ------------------------------------------------------------------------- */

/* Any thread. lws_cancel_service is the only lws call that is safe off the service thread. */
void gw_svc_wake(gw_svc_t *s)
{
    if (!wake_raise(&s->wake_pending))
        return;
    /* before the context exists the raised flag is enough: the thread takes it on start */
    struct lws_context *ctx = atomic_load_explicit(&s->ctx_pub, memory_order_acquire);
    if (ctx)
        lws_cancel_service(ctx);
}

void gw_svc_wake_fn(void *ud)
{
    gw_svc_wake(ud);
}

/* Main thread. */
void gw_svc_request(gw_svc_t *s, int what)
{
    atomic_store(&s->stop_req, what);
    /* STOP is not signalled: the thread destroys its lws context on it, and a concurrent
     * lws_cancel_service() from here would race with that. The thread's tick timer sees it
     * within TICK_MS. (The other requests come while the context certainly exists; before
     * it exists the tick catches them too.) */
    if (what != GW_SVC_STOP)
        gw_svc_wake(s);
}

/* ---- events to writers ---------------------------------------------------------------- */

bool gw_svc_push_event(gw_svc_t *s, int u, gw_event_t *e)
{
    gw_link_t *l = s->links[u];
    bool in = gw_handoff_push(&l->up, e); /* (raise-then-retry inside: handoff.h) */
    gw_link_wake_writer(l);               /* coalesced: one eventfd write per burst */
    return in;
}

bool gw_svc_push_all(gw_svc_t *s, gw_event_t *e)
{
    bool fit = true;
    int n = s->gw->nup;
    for (int u = 0; u < n; u++) {
        gw_event_t *x = u == n - 1 ? e : gw_event_dup(e);
        if (!x) {
            /* Cannot copy: this node misses the event. Logged; presence resyncs on reconnect. */
            log_rl_error("out of memory replicating an event", "node=%d", u);
            continue;
        }
        if (!gw_svc_push_event(s, u, x))
            fit = false;
    }
    return fit;
}

void gw_svc_pause(gw_svc_t *s, gw_conn_t *c)
{
    if (c->paused)
        return;
    if (s->npaused == s->cap_paused) {
        size_t ncap = s->cap_paused ? s->cap_paused * 2 : 64;
        uint64_t *p = realloc(s->paused, ncap * sizeof *p);
        if (!p) {
            /* Cannot remember it: do not pause (the overflow list still keeps order). */
            log_rl_error("pause list allocation failed", "thread=%d", s->idx);
            return;
        }
        s->paused = p;
        s->cap_paused = ncap;
    }
    s->paused[s->npaused++] = c->id;
    c->paused = true;
    lws_rx_flow_control(c->wsi, 0);
    metrics_inc(gwm.backpressure);
}

/* Moves overflowed events into the rings; true when nothing is left over. */
static bool flush_overflow(gw_svc_t *s)
{
    bool clear = true;
    for (int u = 0; u < s->gw->nup; u++) {
        gw_handoff_t *h = &s->links[u]->up;
        if (!gw_handoff_overflowing(h))
            continue;
        if (!gw_handoff_flush(h))
            clear = false;
        gw_link_wake_writer(s->links[u]); /* what went in, or the room it must make */
    }
    return clear;
}

/* Reads back on for the paused connections. Closing ones too: their messages up to the
 * client's close frame still go upstream (ws.c). While draining, connections not yet closed
 * stay paused (close_all turns their reads on with the 1001). */
static void resume_paused(gw_svc_t *s)
{
    bool draining = atomic_load(&s->stop_req) >= 1;
    size_t keep = 0;
    for (size_t i = 0; i < s->npaused; i++) {
        gw_conn_t *c = gw_conn_table_get(&s->conns, s->paused[i]);
        if (c && (c->held || (draining && c->paused && !c->closing))) {
            s->paused[keep++] = s->paused[i]; /* until its handback, or its 1001 */
        } else if (c && c->paused) {
            c->paused = false;
            lws_rx_flow_control(c->wsi, 1);
        }
    }
    s->npaused = keep;
}

/* ---- commands from writers ------------------------------------------------------------ */

static const char *default_reason(int code)
{
    switch (code) {
    case 1001: return "going away";
    case 1008: return "slow consumer";
    case 1011: return "internal error";
    default: return "";
    }
}

/* Closes c with code and reason (NULL: a default text for the code): the close frame goes out
 * now, after whatever was queued for c in this drain; the connection ends when the client
 * answers with its own close frame, or CLOSE_ACK_TIMEOUT_S later (ws.c gw_ws_close). */
void gw_svc_close_conn(gw_svc_t *s, gw_conn_t *c, int code, gw_payload_t *reason)
{
    if (c->closing)
        return;
    if (c->dirty) {
        /* what this drain queued before the close goes out first (a Send then a Kick) */
        c->dirty = false;
        gw_wsout_flush(c, s->wscratch);
    }
    const char *r = reason ? (const char *)gw_payload_data(reason) : default_reason(code);
    size_t rl = reason ? reason->len : strlen(r);
    if (reason && !gw_utf8_valid((const uint8_t *)r, rl)) {
        /* a close reason is UTF-8 (RFC 6455 §5.5.1): an API node's that is not goes nowhere */
        log_rl_warn("kick reason is not UTF-8: sent without it", "conn_id=%llu len=%zu",
                    (unsigned long long)c->id, rl);
        metrics_inc(gwm.kick_bad_reason);
        reason = NULL;
        r = "";
        rl = 0;
    }
    /* gw_ws_close cuts it to 123 bytes on a character boundary (§5.5) */
    if (reason) {
        gw_payload_ref(reason);
        c->close_reason = reason;
    }
    gw_outq_free(&c->outq);
    /* reads back on: the client's close frame must get through (a paused connection would
     * sit out the close timeout instead) */
    if (c->paused) {
        c->paused = false;
        lws_rx_flow_control(c->wsi, 1);
    }
    gw_ws_close(c, code, r, rl);
}

void gw_svc_deliver(gw_svc_t *s, gw_conn_t *c, gw_payload_t *p)
{
    if (c->closing || !c->established) {
        metrics_inc(gwm.undeliverable);
        return;
    }
    /* --send-queue bounds the bytes waiting behind the first queued message: a message larger
     * than the limit still goes to a client that reads it promptly */
    gw_payload_t *head = gw_outq_peek(c->outq);
    if (head && gw_outq_bytes(c->outq) - head->len + p->len > (uint64_t)gw_cfg.send_queue) {
        char q[64];
        log_rl_warn("slow consumer", "conn_id=%llu user=%s queued=%llu limit=%lld",
                    (unsigned long long)c->id, log_quote(q, sizeof q, c->user),
                    (unsigned long long)gw_outq_bytes(c->outq), (long long)gw_cfg.send_queue);
        metrics_inc(gwm.slow_consumer);
        metrics_inc(gwm.undeliverable);
        gw_svc_close_conn(s, c, 1008, NULL);
        return;
    }
    /* Commands are delivered only while a wake drains the rings: queue, and flush once per
     * connection after the drain (flush_dirty; wsout.h). */
    if (gw_outq_push(&c->outq, p) < 0) {
        log_rl_error("out of memory queueing a message", "conn_id=%llu",
                     (unsigned long long)c->id);
        metrics_inc(gwm.undeliverable);
        gw_svc_close_conn(s, c, 1011, NULL);
        return;
    }
    if (c->dirty)
        return;
    if (lws_partial_buffered(c->wsi)) {
        if (c->outq->count == 1)
            lws_callback_on_writable(c->wsi); /* lws holds a partial write: after it */
        return;
    }
    if (s->ndirty == s->cap_dirty) {
        size_t ncap = s->cap_dirty ? s->cap_dirty * 2 : 256;
        uint64_t *d = realloc(s->dirty, ncap * sizeof *d);
        if (!d) { /* cannot list it: WRITEABLE flushes it instead */
            lws_callback_on_writable(c->wsi);
            return;
        }
        s->dirty = d;
        s->cap_dirty = ncap;
    }
    s->dirty[s->ndirty++] = c->id;
    c->dirty = true;
}

typedef void (*target_fn)(gw_svc_t *s, gw_conn_t *c, gw_cmd_t *cmd);

/* Calls fn for every connection on this thread that cmd targets (a connection named twice is
 * visited twice: that is what the API asked for). */
static void for_targets(gw_svc_t *s, gw_cmd_t *cmd, target_fn fn)
{
    if (cmd->all) {
        gw_conn_table_t *t = &s->conns;
        for (uint32_t i = 0; i < t->used; i++)
            if (t->slots[i])
                fn(s, t->slots[i], cmd);
        return;
    }
    for (uint32_t i = 0; i < cmd->nconns; i++) {
        gw_conn_t *c = gw_conn_table_get(&s->conns, cmd->conns[i]);
        if (c)
            fn(s, c, cmd);
        else
            metrics_inc(gwm.undeliverable);
    }
    const char *str = cmd->strs + cmd->room_len + 1;
    for (uint32_t i = 0; i < cmd->nusers; i++) {
        size_t len = strlen(str);
        for (gw_conn_t *c = gw_index_find_user(&s->index, str, len); c;
             c = gw_index_next_user(c->user_next, str, len))
            fn(s, c, cmd);
        str += len + 1;
    }
    if (cmd->room_len) {
        gw_room_t *r = gw_index_find_room(&s->index, cmd->strs, cmd->room_len);
        for (gw_member_t *m = r ? r->head : NULL; m; m = m->room_next)
            fn(s, m->conn, cmd);
    }
}

static void send_one(gw_svc_t *s, gw_conn_t *c, gw_cmd_t *cmd)
{
    if (c->proto)
        gw_cp_send(s, c, cmd); /* wsgw.v1.json: in its envelope, ordered by offset */
    else
        gw_svc_deliver(s, c, cmd->payload);
}

/* The Kick code that may go out in a close frame: an API node's 0 means the default 4000, and
 * so does a code RFC 6455 §7.4 does not let a close frame carry (1004-1006, 1015, 1016-2999,
 * >= 5000, < 1000): 4000 keeps its meaning, "closed by the application". */
static int kick_code(gw_conn_t *c, int code)
{
    if (!code)
        return 4000;
    if ((code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
        (code >= 3000 && code <= 4999))
        return code;
    log_rl_warn("kick code not allowed in a close frame: 4000 sent", "conn_id=%llu code=%d",
                (unsigned long long)c->id, code);
    metrics_inc(gwm.kick_bad_code);
    return 4000;
}

static void kick_one(gw_svc_t *s, gw_conn_t *c, gw_cmd_t *cmd)
{
    gw_svc_close_conn(s, c, kick_code(c, cmd->code), cmd->payload);
}

static void run_cmd(gw_svc_t *s, int u, gw_cmd_t *cmd)
{
    switch (cmd->type) {
    case GW_CMD_RESYNC:
        /* (a newer request replaces one still running) */
        s->rs_gen[u] = (uint32_t)cmd->code;
        s->rs_cursor[u] = 0;
        break;
    case GW_CMD_SEND:
        if (cmd->payload)
            for_targets(s, cmd, send_one);
        break;
    case GW_CMD_KICK:
        for_targets(s, cmd, kick_one);
        break;
    case GW_CMD_RECOVERED:
        gw_cp_recovered(s, cmd);
        break;
    case GW_CMD_REROUTE: {
        gw_msgroute_reroute(&s->route, u, cmd);
        /* tell the node we re-sent them (it hands back what else of ours it takes until
         * then): in its ring, behind everything we pushed before */
        gw_event_t *mk = gw_msgroute_marker((unsigned)s->idx, cmd->code);
        if (mk)
            gw_svc_push_event(s, u, mk);
        else
            log_rl_error("out of memory: handback marker lost", "thread=%d node=%d", s->idx, u);
        break;
    }
    case GW_CMD_JOIN:
    case GW_CMD_LEAVE:
        for (uint32_t i = 0; i < cmd->nconns; i++) {
            gw_conn_t *c = gw_conn_table_get(&s->conns, cmd->conns[i]);
            if (!c) {
                metrics_inc(gwm.undeliverable);
                continue;
            }
            if (cmd->type == GW_CMD_LEAVE) {
                gw_index_leave(&s->index, c, cmd->strs, cmd->room_len);
                gw_cp_leave(s, c, cmd->strs, cmd->room_len);
                continue;
            }
            /* bounded: --max-room-name bytes, --max-rooms-per-conn rooms */
            int rv = cmd->room_len > (uint64_t)gw_cfg.max_room_name
                         ? GW_INDEX_NAME_TOO_LONG
                         : gw_index_join(&s->index, c, cmd->strs, cmd->room_len,
                                         (size_t)gw_cfg.max_rooms_per_conn);
            if (rv == GW_INDEX_NAME_TOO_LONG || rv == GW_INDEX_TOO_MANY) {
                bool name = rv == GW_INDEX_NAME_TOO_LONG;
                log_rl_warn("room join refused", "conn_id=%llu reason=%s room_len=%u limit=%lld",
                            (unsigned long long)c->id, name ? "name_too_long" : "too_many_rooms",
                            cmd->room_len,
                            (long long)(name ? gw_cfg.max_room_name : gw_cfg.max_rooms_per_conn));
                metrics_inc(name ? gwm.join_name_too_long : gwm.join_too_many);
            } else if (rv < 0) {
                log_rl_error("room join failed: out of memory", "conn_id=%llu",
                             (unsigned long long)c->id);
            } else {
                gw_cp_join(s, c, cmd->strs, cmd->room_len); /* its recovery, if any */
            }
        }
        break;
    }
}

/* Presence resync for writer u: an Open for every live connection, then the marker, straight
 * into the ring (not the overflow list, which would hold a copy of every connection: if the
 * ring fills, the rest waits for the writer's room wake-up). The writer puts these Opens ahead of everything else it queued, so
 * events of this thread that enter the ring in between are fine. */
static void resync_run(gw_svc_t *s, int u)
{
    gw_link_t *l = s->links[u];
    gw_conn_table_t *t = &s->conns;
    uint32_t gen = s->rs_gen[u];
    for (uint32_t i = s->rs_cursor[u]; i < t->used; i++) {
        gw_conn_t *c = t->slots[i];
        if (!c || !c->established || c->closing) {
            s->rs_cursor[u] = i + 1;
            continue;
        }
        gw_event_t *e = gw_ws_open_event(c, gen);
        if (!e || !gw_handoff_try_ring(&l->up, e)) {
            if (e)
                gw_event_free(e);
            else
                log_rl_error("out of memory during presence resync", "thread=%d", s->idx);
            goto later;
        }
        s->rs_cursor[u] = i + 1;
    }
    gw_event_t *done = gw_event_new(GW_EV_RESYNC_DONE, 0, NULL, 0, NULL, 0, NULL, 0, NULL, 0);
    if (done)
        done->code = (int32_t)gen;
    if (!done || !gw_handoff_try_ring(&l->up, done)) {
        if (done)
            gw_event_free(done);
        goto later;
    }
    s->rs_gen[u] = 0;
    gw_link_wake_writer(l);
    return;
later:
    /* the rest when the writer has made room: want_room is raised (gw_handoff_try_ring) */
    gw_link_wake_writer(l);
}

/* ---- drain ---------------------------------------------------------------------------- */

static void stop_accepting(gw_svc_t *s)
{
    if (s->listen_fd < 0)
        return;
    if (s->accepting)
        uv_poll_stop(&s->listen_poll);
    s->accepting = false;
    uv_timer_stop(&s->accept_timer);
    uv_close((uv_handle_t *)&s->listen_poll, NULL);
    close(s->listen_fd);
    s->listen_fd = -1;
}

static void quiesce(gw_svc_t *s)
{
    stop_accepting(s);
    gw_conn_table_t *t = &s->conns;
    for (uint32_t i = 0; i < t->used; i++) {
        gw_conn_t *c = t->slots[i];
        if (c && !c->paused) {
            c->paused = true;
            lws_rx_flow_control(c->wsi, 0);
        }
    }
}

static void close_all(gw_svc_t *s)
{
    gw_conn_table_t *t = &s->conns;
    for (uint32_t i = 0; i < t->used; i++)
        if (t->slots[i])
            gw_svc_close_conn(s, t->slots[i], 1001, NULL);
}

static void flush_dirty(gw_svc_t *s);

/* uv timer, every gw_keepalive_tick_ms: server pings and dead-peer hang-ups. */
static void on_keepalive(uv_timer_t *t)
{
    gw_svc_t *s = t->data;
    if (!s->stopping)
        gw_keepalive_sweep(s);
}

/* uv timer, every TICK_MS: notices requests (STOP is never signalled, see gw_svc_request),
 * and on STOP destroys the lws context, outside any lws callback. */
static void on_tick(uv_timer_t *t)
{
    gw_svc_t *s = t->data;
    int req = atomic_load(&s->stop_req);
    if (req != GW_SVC_STOP) {
        /* also a wake raised before our lws context existed (no lws_cancel_service then) */
        if ((req || atomic_load(&s->wake_pending)) && !s->stopping)
            gw_svc_on_wake(s);
        if (!s->stopping) {
            gw_pausewatch_tick(s); /* paused clients that left */
            gw_cp_tick(s);         /* recovery timeouts and gap waits */
            flush_dirty(s);        /* (what they released) */
        }
        return;
    }
    if (s->stopping)
        return;
    s->stopping = true;
    stop_accepting(s);
    uv_close((uv_handle_t *)&s->accept_timer, NULL);
    uv_close((uv_handle_t *)&s->drain_timer, NULL);
    uv_close((uv_handle_t *)&s->ka_timer, NULL);
    gw_svcpoll_close(s);
    /* With a foreign loop lws closes its handles asynchronously; uv_run then returns once
     * every handle is closed. */
    atomic_store_explicit(&s->ctx_pub, NULL, memory_order_release);
    lws_context_destroy(s->ctx);
}

/* Writes what the command drain queued, once per connection. */
static void flush_dirty(gw_svc_t *s)
{
    for (size_t i = 0; i < s->ndirty; i++) {
        gw_conn_t *c = gw_conn_table_get(&s->conns, s->dirty[i]);
        if (!c || !c->dirty)
            continue; /* gone, or flushed when it was closed */
        c->dirty = false;
        if (gw_wsout_flush(c, s->wscratch) < 0)
            gw_svc_close_conn(s, c, 1011, NULL);
    }
    s->ndirty = 0;
}

void gw_svc_on_wake(gw_svc_t *s)
{
    if (!gw_svcpoll_polling(&s->poll)) /* while polling the flag stays raised (svcpoll.h) */
        wake_lower(&s->wake_pending);

    int req = atomic_load(&s->stop_req);
    if (req >= GW_SVC_QUIESCE && !s->stopping) {
        if (s->listen_fd >= 0)
            quiesce(s);
        if (req == GW_SVC_CLOSE_ALL)
            close_all(s);
        if (req == GW_SVC_STOP)
            return; /* the tick timer does it, outside lws callbacks */
    }

    /* Resolved counts, and so which held connections may go, judged before the rings are
     * drained (a handback is in the ring before its writer publishes the counts). */
    gw_msgroute_snapshot(&s->route);

    for (int u = 0; u < s->gw->nup; u++)
        gw_recycle_drain(s->links[u]->home_ev);

    /* Commands first: replies free room in the writers' rings, which the API waits on. A
     * writer that found this ring full is woken by the pop (handoff.h), not otherwise: a
     * wake-up costs the writer a turn. */
    void *cmds[CMD_BURST];
    for (int u = 0; u < s->gw->nup; u++) {
        size_t n;
        int rounds = 0;
        while ((n = gw_handoff_pop(&s->links[u]->down, cmds, CMD_BURST)) > 0) {
            gw_svcpoll_work(&s->poll, (uint32_t)n);
            for (size_t i = 0; i < n; i++) {
                run_cmd(s, u, cmds[i]);
                gw_cmd_free(cmds[i]);
            }
            if (++rounds == 64) { /* bound the work per wake; come back for the rest */
                gw_svc_wake(s);
                break;
            }
        }
    }
    flush_dirty(s);
    if (s->route.nheld)
        gw_msgroute_release(&s->route);
    for (int u = 0; u < s->gw->nup; u++)
        if (s->rs_gen[u])
            resync_run(s, u);
    if (flush_overflow(s) && s->npaused)
        resume_paused(s);
}

/* ---- accept --------------------------------------------------------------------------- */

static void on_listen(uv_poll_t *h, int status, int events);

static void on_accept_timer(uv_timer_t *t)
{
    gw_svc_t *s = t->data;
    if (s->listen_fd >= 0 && !s->accepting && !s->stopping) {
        uv_poll_start(&s->listen_poll, UV_READABLE, on_listen);
        s->accepting = true;
    }
}

static void on_listen(uv_poll_t *h, int status, int events)
{
    gw_svc_t *s = h->data;
    (void)events;
    if (status < 0)
        return;
    for (int i = 0; i < ACCEPT_BURST; i++) {
        int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                return;
            metrics_inc(gwm.accept_errors);
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* Out of descriptors: stop polling instead of spinning on accept
                 * (FIELD-NOTES: lws at the fd limit spins at 100 % CPU). */
                log_rl_warn("accept paused: out of file descriptors", "thread=%d errno=%d",
                            s->idx, errno);
                uv_poll_stop(&s->listen_poll);
                s->accepting = false;
                uv_timer_start(&s->accept_timer, on_accept_timer, 100, 0);
            } else {
                log_rl_warn("accept failed", "thread=%d err=%s", s->idx, strerror(errno));
            }
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (gw_cfg.rcvbuf > 0) {
            int rb = (int)gw_cfg.rcvbuf;
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rb, sizeof rb);
        }
        lws_sock_file_fd_type sock;
        sock.sockfd = fd;
        lws_adoption_type type = LWS_ADOPT_SOCKET; /* raw: ws.c does HTTP and WebSocket */
        if (*gw_cfg.tls_cert)
            type |= LWS_ADOPT_ALLOW_SSL; /* wss: lws runs the TLS handshake */
        if (!lws_adopt_descriptor_vhost(s->vh, type, sock, NULL, NULL)) {
            /* lws has closed the descriptor itself on every failure path (closing it again
             * here could hit a descriptor another thread just got). Usually a TLS client that
             * went away before its handshake (e.g. a port probe). */
            metrics_inc(gwm.accept_errors);
            log_rl_warn("lws refused an accepted socket", "thread=%d", s->idx);
        }
    }
}

/* ---- thread --------------------------------------------------------------------------- */

/* lws log lines go through our logger (NOTICE and below stay off: libev/uv log every accept). */
static void lws_log_emit(int level, const char *line)
{
    char msg[512];
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    if (n >= sizeof msg)
        n = sizeof msg - 1;
    memcpy(msg, line, n);
    msg[n] = 0;
    char q[600];
    if (level & LLL_ERR)
        log_error("lws", "detail=%s", log_quote(q, sizeof q, msg));
    else
        log_warn("lws", "detail=%s", log_quote(q, sizeof q, msg));
}

static void *svc_main(void *arg)
{
    gw_svc_t *s = arg;
    SSL_CTX *client_ctx = NULL; /* see below: wss only */
    char name[16];
    snprintf(name, sizeof name, "gw-svc-%d", s->idx);
    pthread_setname_np(pthread_self(), name);

    {
        /* our return rings toward each writer: its commands and payloads go home */
        ring_t **to_peer = calloc((size_t)s->gw->nup, sizeof *to_peer);
        for (int u = 0; to_peer && u < s->gw->nup; u++)
            to_peer[u] = s->links[u]->home_cmd;
        s->rc_peers = to_peer;
        gw_recycle_register(GW_RC_SVC, s->idx, to_peer, to_peer ? s->gw->nup : 0);
    }
    if (uv_loop_init(&s->loop) != 0) {
        log_error("uv_loop_init failed", "thread=%d", s->idx);
        goto out;
    }
    static const uint32_t backoff[] = {1000};
    /* No lws validity timers (secs_since_valid_* 0): keepalive.h pings instead, because
     * lws 4.1.6 re-arms them in O(connections) each. */
    lws_retry_bo_t retry = {
        .retry_ms_table = backoff,
        .retry_ms_table_count = 1,
        .conceal_count = 1,
    };
    void *loops[1] = {&s->loop};
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
    info.protocols = gw_ws_protocols;
    info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_UV_NO_SIGSEGV_SIGFPE_SPIN;
    info.foreign_loops = loops;
    info.user = s;
    info.retry_and_idle_policy = &retry;
    info.max_http_header_pool = 64;
    info.timeout_secs = 10;
    info.pt_serv_buf_size = 16384;
    info.vhost_name = "default";
    if (*gw_cfg.tls_cert) {
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.ssl_cert_filepath = gw_cfg.tls_cert;
        info.ssl_private_key_filepath = gw_cfg.tls_key;
        info.alpn = "http/1.1"; /* WebSocket over HTTP/1.1 only: no h2 negotiation */
        /* the policy main checked (tlspolicy.h): TLS 1.2+, ECDHE + AEAD on 1.2 */
        info.ssl_cipher_list = gw_cfg.tls_ciphers;
        info.ssl_options_set = gw_tls_options(gw_cfg.tls_min_version);
        /* lws would also build a client context per vhost, loading the whole system CA
         * store (~0.7 MB per thread) for client connections the gateway never makes, and
         * under LeakSanitizer that context was now and then left behind at exit. An empty
         * one of ours stands in; lws does not free what it is given. */
        client_ctx = SSL_CTX_new(TLS_client_method());
        if (!client_ctx) {
            log_error("SSL_CTX_new failed", "thread=%d", s->idx);
            goto out_loop;
        }
        info.provided_client_ssl_ctx = client_ctx;
    }
    s->ctx = lws_create_context(&info);
    if (!s->ctx) {
        log_error("lws_create_context failed", "thread=%d", s->idx);
        goto out_loop;
    }
    s->vh = lws_get_vhost_by_name(s->ctx, "default");
    if (!s->vh) {
        log_error("lws vhost missing", "thread=%d", s->idx);
        goto out_ctx;
    }
    uv_poll_init(&s->loop, &s->listen_poll, s->listen_fd);
    s->listen_poll.data = s;
    uv_timer_init(&s->loop, &s->accept_timer);
    s->accept_timer.data = s;
    uv_timer_init(&s->loop, &s->drain_timer);
    s->drain_timer.data = s;
    uv_timer_start(&s->drain_timer, on_tick, TICK_MS, TICK_MS);
    uv_timer_init(&s->loop, &s->ka_timer);
    s->ka_timer.data = s;
    uint64_t ka_ms = gw_keepalive_tick_ms(gw_cfg.ping_interval_us);
    if (ka_ms)
        uv_timer_start(&s->ka_timer, on_keepalive, ka_ms, ka_ms);
    gw_svcpoll_start(s, gw_cfg.svc_coalesce_us);
    if (atomic_load(&s->stop_req) == 0) {
        uv_poll_start(&s->listen_poll, UV_READABLE, on_listen);
        s->accepting = true;
    }
    atomic_store_explicit(&s->ctx_pub, s->ctx, memory_order_release);
    /* A wake may have been raised before the context existed: take it now. */
    wake_lower(&s->wake_pending);
    gw_svc_wake(s);

    uv_run(&s->loop, UV_RUN_DEFAULT);

out_ctx:
    /* Second destroy after the loop ended completes lws' teardown (foreign-loop protocol). */
    lws_context_destroy(s->ctx);
    s->ctx = NULL;
    uv_run(&s->loop, UV_RUN_DEFAULT);
out_loop:
    if (uv_loop_close(&s->loop) != 0)
        log_warn("uv loop closed with live handles", "thread=%d", s->idx);
    SSL_CTX_free(client_ctx);
out:
    gw_recycle_register(GW_RC_NONE, 0, NULL, 0);
    free(s->rc_peers);
    s->rc_peers = NULL;
    atomic_store(&s->ended, 1);
    return NULL;
}

int gw_svc_start(gw_svc_t *s)
{
    int rv = pthread_create(&s->tid, NULL, svc_main, s);
    return rv ? -rv : 0;
}

void gw_svc_join(gw_svc_t *s)
{
    pthread_join(s->tid, NULL);
    /* what is still in the links (events not taken, commands not run) goes with them */
    if (s->listen_fd >= 0)
        close(s->listen_fd);
    gw_index_free(&s->index);
    gw_conn_table_free(&s->conns);
    free(s->paused);
    gw_cp_thread_free(s);
    gw_mr_free(&s->route);
    free(s->wscratch);
    free(s->dirty);
    s->wscratch = NULL;
    s->dirty = NULL;
    free(s->rs_gen);
    free(s->rs_cursor);
    s->rs_gen = s->rs_cursor = NULL;
    free(s->links); /* (the array: the links themselves are main's to free, after the writers) */
    s->links = NULL;
}

/* lws log redirection is process-wide: set once by main. */
void gw_svc_log_init(void)
{
    int levels = LLL_ERR | LLL_WARN;
    lws_set_log_level(log_level >= LOG_DEBUG ? levels | LLL_NOTICE : levels, lws_log_emit);
}
