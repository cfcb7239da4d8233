/* svc_cmd.c: a service thread runs the commands its writers send back (see svc.h): Send to
 * connections, users, rooms or everyone, Kick (with the close codes a close frame may carry),
 * Join/Leave, Recovered, the markers of a hand-back, and a resync's presence walk.
 *
 * Threads: the service thread that owns the connections, like everything in svc.c. */
#include <stdlib.h>
#include <string.h>

#include "clientproto.h"
#include "clock.h"
#include "config.h"
#include "gwm.h"
#include "log.h"
#include "metrics.h"
#include "msgroute.h"
#include "outq.h"
#include "recycle.h"
#include "route.h"
#include "svc.h"
#include "svc_priv.h"
#include "utf8.h"
#include "ws.h"
#include "wsout.h"

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

void gw_svc__run_cmd(gw_svc_t *s, int u, gw_cmd_t *cmd)
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

/* Whether c's resync Open to node u carries its rooms (wsgw.proto Open.rooms): to every node
 * when presence is shared (Redis holds one record: each node's write of them is the same; "in
 * no room" too, which Redis may not know), else to the one node whose record of the
 * connection's joins counts: the node its messages go to when every node is up (README "Rooms
 * and presence": each member is listed by one node). */
static bool rooms_to(const gw_t *g, const gw_conn_t *c, int u)
{
    if (gw_presence_shared(g))
        return true;
    if (!c->rooms || g->nup == 1)
        return c->rooms != NULL;
    if (c->user && *c->user)
        return gw_route_home(g, c->user, strlen(c->user)) == u;
    return gw_route_home(g, &c->id, sizeof c->id) == u;
}

/* Presence resync for writer u: an Open for every live connection, then the marker, straight
 * into the ring (not the overflow list, which would hold a copy of every connection: if the
 * ring fills, the rest waits for the writer's room wake-up). The writer puts these Opens ahead of everything else it queued, so
 * events of this thread that enter the ring in between are fine. */
void gw_svc__resync_run(gw_svc_t *s, int u)
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
        gw_event_t *e = gw_ws_open_event(c, gen, rooms_to(s->gw, c, u));
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

