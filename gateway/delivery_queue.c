/* delivery_queue.c: the batches of the delivery state machine (delivery.h): release, loss
 * (I1), stripping at a session's end (I2), splitting and dropping after repeated failures (I4),
 * handback for failover (I3) and the resolved counts. No I/O. Writer thread (or simulator). */
#include <stdlib.h>
#include <string.h>

#include "conn_id.h"
#include "delivery_priv.h"
#include "log.h"

/* ---- batches ------------------------------------------------------------------------------ */

static void batch_release(dlv_t *d, dstream_t *s, gw_batch_t *b)
{
    TRACE(d, "release", s->idx, b);
    d->stats.queued -= b->ev_len;
    d->stats.released += b->nmsgs;
    dlv__resolve_batch(d, s->idx, b);
    gw_batch_recycle(&d->pool, b);
}

/* Releases sent batches from the head: acked ones (ack > 0), or every sent one (ack 0). */
void dlv__release_sent(dlv_t *d, dstream_t *s, uint64_t ack)
{
    while (s->head && s->head != s->cur) {
        gw_batch_t *b = s->head;
        if (ack && b->seq > ack)
            break;
        s->head = b->next;
        if (!s->head)
            s->tail = NULL;
        if (b->tries)
            s->alone = false; /* the suspect made it: the rest may follow */
        batch_release(d, s, b);
    }
    if (s->blocked && s->open && !s->alone) {
        s->blocked = false;
        d->io.resume_stream(d->io.ud, s->idx);
    }
}

void dlv__append_batch(dstream_t *s, gw_batch_t *b)
{
    b->next = NULL;
    gw_batch_set_seq(b, s->next_seq++);
    if (s->tail)
        s->tail->next = b;
    else
        s->head = b;
    s->tail = b;
    if (!s->cur) {
        s->cur = b;
        s->cur_off = 0;
    }
}

/* Kicks the client of a lost event (I1: its client is told). A lost Close leaves a client that
 * left in the node's presence: the session ends (a new one resyncs it, I2), and when the
 * presence is shared, in which no resync removes anything, the gateway renews its instance
 * first, so the next session's bind rebuilds the store (I4: dlv__renew_due, at the next tick or
 * once renew_interval has passed since the last). Takes e. */
void dlv__lose_event(dlv_t *d, int st, gw_event_t *e, int grpc_status, const char *why)
{
    int k = dlv__thread_of(d, e->conn_id);
    if (e->type == GW_EV_MESSAGE || e->routed) { /* (a routed Open/Close is counted as one) */
        d->stats.lost++;
        dlv__resolve(d, k, st, e->tno);
    }
    if (e->type == GW_EV_CLOSE && e->routed)
        d->renew_pending = true;
    else if (e->type == GW_EV_CLOSE && d->state != DLV_DOWN && d->state != DLV_CONNECTING &&
             !d->want_disconnect)
        d->want_disconnect = "a Close was lost";
    log_rl_warn("event lost toward API node: client told", "node=%s conn_id=%llu type=%d "
                "seq=%llu reason=%s grpc_status=%d", d->cfg.name, (unsigned long long)e->conn_id,
                e->type, (unsigned long long)e->seq, why, grpc_status);
    if (k >= 0 && e->type != GW_EV_CLOSE) {
        uint64_t id = e->conn_id;
        gw_cmd_t *c = gw_cmd_new(GW_CMD_KICK, &id, 1, NULL, 0, NULL, NULL, 0);
        const char *r = grpc_status == 8 ? "message refused by the API (too big)"
                                         : "message lost upstream";
        if (c) {
            c->code = grpc_status == 8 ? 1009 : 1011;
            c->payload = gw_payload_new(r, strlen(r), false, e->t_read);
            d->io.emit(d->io.ud, k, c);
        }
    }
    gw_event_free(e);
}

/* I4: the renewal a lost routed Close asked for, once renew_interval has passed since the
 * last: the instance first, then the session ends, so the next one binds a new token. (While
 * connecting, the streams are not open yet: they present the new instance.) */
void dlv__renew_due(dlv_t *d, int64_t now)
{
    if (!d->renew_pending || (d->renew_last && now - d->renew_last < d->cfg.renew_interval_ns))
        return;
    d->renew_pending = false;
    d->renew_last = now;
    d->stats.renewals++;
    d->io.renew_instance(d->io.ud);
    if (d->state != DLV_DOWN && d->state != DLV_CONNECTING && !d->want_disconnect)
        d->want_disconnect = "a Close was lost: presence is rebuilt";
}

bool dlv_renewal_pending(const dlv_t *d) { return d->renew_pending; }

/* Batches evs[0..n) onto s. Events that cannot be encoded (memory) are lost and counted. */
void dlv__encode_into(dlv_t *d, dstream_t *s, gw_event_t **evs, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t j = i, bytes = 0;
        while (j < n && j - i < d->cfg.batch_max_events &&
               (j == i || bytes + gw_event_size(evs[j]) <= d->cfg.batch_max_bytes))
            bytes += gw_event_size(evs[j++]);
        gw_batch_t *b = gw_batch_encode(&d->pool, evs + i, j - i, d->cfg.gateway_id);
        if (!b) {
            for (; i < n; i++)
                dlv__lose_event(d, s->idx, evs[i], -1, "out of memory encoding a batch");
            return;
        }
        for (size_t k = i; k < j; k++)
            gw_event_free(evs[k]);
        d->stats.queued += b->ev_len;
        dlv__append_batch(s, b);
        TRACE(d, "batch", s->idx, b);
        i = j;
    }
}

/* The pending events of s become batches. */
void dlv__encode_pending(dlv_t *d, dstream_t *s)
{
    if (!s->pend.n)
        return;
    d->stats.queued -= s->pend.bytes;
    dlv__encode_into(d, s, s->pend.v, s->pend.n);
    dlv__evq_reset(&s->pend);
}

/* ---- stripping, splitting, handback --------------------------------------------------------- */

/* Every batch of s back as events at the front of its pending queue, Messages (and routed
 * Opens and Closes) only (I2: the next resync re-sends presence). Pending plain Opens and
 * Closes are dropped too. */
void dlv__strip_stream(dlv_t *d, dstream_t *s, int64_t now)
{
    gw_event_t *h = NULL, *t = NULL;
    size_t failed = 0;
    for (gw_batch_t *b = s->head; b;) {
        gw_batch_t *next = b->next;
        TRACE(d, "strip", s->idx, b);
        if (b->nmsgs && gw_batch_events(b, true, now, &h, &t) < 0) {
            failed += b->nmsgs;
            dlv__resolve_batch(d, s->idx, b);
        }
        d->stats.queued -= b->ev_len;
        gw_batch_recycle(&d->pool, b);
        b = next;
    }
    s->head = s->tail = s->cur = NULL;
    s->cur_off = 0;
    if (failed) { /* cannot rebuild them: counted, never silent (their clients are unknown) */
        d->stats.lost += failed;
        log_rl_error("messages lost rebuilding batches (memory)", "node=%s lost=%zu",
                     d->cfg.name, failed);
    }
    evq_t keep = {0};
    for (gw_event_t *e = h; e;) {
        gw_event_t *next = e->next;
        if (dlv__evq_push(&keep, e) < 0)
            dlv__lose_event(d, s->idx, e, -1, "out of memory");
        e = next;
    }
    for (size_t i = 0; i < s->pend.n; i++) {
        gw_event_t *e = s->pend.v[i];
        if (e->type != GW_EV_MESSAGE && !e->routed)
            gw_event_free(e);
        else if (dlv__evq_push(&keep, e) < 0)
            dlv__lose_event(d, s->idx, e, -1, "out of memory");
    }
    d->stats.queued -= s->pend.bytes;
    free(s->pend.v);
    s->pend = keep;
    d->stats.queued += keep.bytes;
}

/* Replaces b (in s's queue after prev, or at the head) by one batch per event (I4). Returns
 * the last batch now before b's successor. */
static gw_batch_t *split_batch(dlv_t *d, dstream_t *s, gw_batch_t *prev, gw_batch_t *b,
                               int64_t now)
{
    gw_event_t *h = NULL, *t = NULL;
    TRACE(d, "split", s->idx, b);
    if (gw_batch_events(b, false, now, &h, &t) < 0) {
        b->tries = (uint8_t)(d->cfg.max_attempts - 1); /* (memory) whole, one more chance */
        return b;
    }
    gw_batch_t *first = NULL, *last = NULL;
    for (gw_event_t *e = h; e;) {
        gw_event_t *next = e->next;
        e->tries = (uint8_t)(d->cfg.max_attempts - 1); /* one more chance, alone */
        gw_batch_t *nb = gw_batch_encode(&d->pool, &e, 1, d->cfg.gateway_id);
        if (!nb) {
            dlv__lose_event(d, s->idx, e, -1, "out of memory splitting a batch");
        } else {
            d->stats.queued += nb->ev_len;
            TRACE(d, "single", s->idx, nb);
            if (last)
                last->next = nb;
            else
                first = nb;
            last = nb;
            gw_event_free(e);
        }
        e = next;
    }
    gw_batch_t *after = b->next;
    d->stats.queued -= b->ev_len;
    gw_batch_recycle(&d->pool, b);
    if (first)
        last->next = after;
    if (prev)
        prev->next = first ? first : after;
    else
        s->head = first ? first : after;
    if (!after)
        s->tail = last ? last : prev;
    d->stats.splits++;
    return last ? last : prev;
}

/* I4: every batch of s that went out (wholly or in part) failed once more. */
void dlv__count_failure(dlv_t *d, dstream_t *s)
{
    for (gw_batch_t *b = s->head; b && (b != s->cur || s->cur_off); b = b->next) {
        if (b->tries < d->cfg.max_attempts)
            b->tries++;
        if (b == s->cur)
            break;
    }
}

/* I4, shared presence (a routed Close: the nodes keep one store, gw_presence_shared): a new
 * session does not put that store right, since a resync only adds to it, so a routed Close that
 * failed alone max_attempts times is not lost but handed back to its service thread, which sends
 * it again (through this node's next session, or another node), at most DLV_CLOSE_ROUNDS
 * times; then it is lost like any event. Takes e when it returns true. */
static bool hand_close_back(dlv_t *d, dstream_t *s, gw_event_t *e)
{
    if (e->type != GW_EV_CLOSE || !e->routed || e->rounds >= DLV_CLOSE_ROUNDS)
        return false;
    log_rl_warn("Close refused by the API node repeatedly: sent again", "node=%s conn_id=%llu "
                "round=%d", d->cfg.name, (unsigned long long)e->conn_id, e->rounds + 1);
    e->rounds++;
    e->tries = 0;
    dlv__hb_add(d, e, s->idx);
    dlv__hb_emit(d);
    return true;
}

/* I4: batches that failed max_attempts times are split; single events that did are lost (a
 * routed Close is handed back first: hand_close_back). Only while nothing of s is handed over
 * (the stream is closed). */
void dlv__poison_sweep(dlv_t *d, dstream_t *s, int grpc_status, int64_t now)
{
    gw_batch_t *prev = NULL;
    for (gw_batch_t *b = s->head; b;) {
        gw_batch_t *next = b->next;
        if (b->tries < d->cfg.max_attempts) {
            prev = b;
        } else if (b->nevents > 1) {
            prev = split_batch(d, s, prev, b, now); /* the singles are below max: go on */
        } else {
            gw_event_t *h = NULL, *t = NULL;
            TRACE(d, "drop", s->idx, b);
            if (prev)
                prev->next = next;
            else
                s->head = next;
            if (s->tail == b)
                s->tail = prev;
            d->stats.queued -= b->ev_len;
            int nev = gw_batch_events(b, false, now, &h, &t);
            if (nev > 0 && hand_close_back(d, s, h)) {
                gw_batch_recycle(&d->pool, b);
                b = next;
                continue;
            }
            if (b->nmsgs)
                d->stats.refused += b->nmsgs;
            if (nev > 0) {
                dlv__lose_event(d, s->idx, h, grpc_status, "refused by the API node repeatedly");
            } else if (b->nmsgs) {
                d->stats.lost += b->nmsgs;
                dlv__resolve_batch(d, s->idx, b);
            }
            gw_batch_recycle(&d->pool, b);
        }
        b = next;
    }
    s->cur = s->head;
    s->cur_off = 0;
}

/* Queues a Message for its service thread (takes e); it counts as resolved here. */
void dlv__hb_add(dlv_t *d, gw_event_t *e, int st)
{
    int k = dlv__thread_of(d, e->conn_id);
    if (k < 0) { /* not one of ours: cannot happen for our own events */
        d->stats.lost++;
        gw_event_free(e);
        return;
    }
    dlv__resolve(d, k, st, e->tno);
    d->stats.handed_back++;
    /* it goes out with the next Reroute to k: until k has taken that one, the connection's
     * later messages follow it */
    if (gw_idmap_put(&d->hb_ids[k], e->conn_id, d->hb_sent[k] + 1) < 0)
        log_rl_error("out of memory tracking handed-back connections", "node=%s", d->cfg.name);
    e->next = NULL;
    if (d->hb_tail[k])
        d->hb_tail[k]->next = e;
    else
        d->hb_head[k] = e;
    d->hb_tail[k] = e;
}

/* Emits what hb_add queued: a Reroute per thread, numbered. Until a thread's marker for the
 * last one comes back (GW_EV_REROUTED: it has re-sent them), every later Message of those
 * connections is handed back too, and the node is not shown usable: messages pushed here
 * before the thread re-sent the handed-back ones must not stay and overtake them (I3). */
void dlv__hb_emit(dlv_t *d)
{
    for (int k = 0; k < d->cfg.nsvc; k++) {
        if (!d->hb_head[k])
            continue;
        gw_cmd_t *cmd = gw_cmd_new(GW_CMD_REROUTE, NULL, 0, NULL, 0, NULL, NULL, 0);
        if (!cmd) {
            size_t lost = 0;
            for (gw_event_t *e = d->hb_head[k]; e;) {
                gw_event_t *next = e->next;
                gw_event_free(e);
                e = next;
                lost++;
            }
            d->stats.lost += lost;
            log_rl_error("messages lost handing back (memory)", "node=%s lost=%zu", d->cfg.name,
                         lost);
        } else {
            cmd->events = d->hb_head[k];
            cmd->code = (int32_t)++d->hb_sent[k];
            d->io.emit(d->io.ud, k, cmd);
            d->hb_wait = true;
        }
        d->hb_head[k] = d->hb_tail[k] = NULL;
    }
    dlv__publish_usable(d);
}

/* Hands every pending Message back to its service thread, oldest first (I1, I3); presence
 * events are dropped (the next resync covers them). Batches must have been stripped. */
void dlv__handback_pending(dlv_t *d)
{
    size_t n = 0;
    for (int i = 0; i < d->cfg.nstreams; i++) {
        dstream_t *s = &d->st[i];
        for (size_t k = 0; k < s->pend.n; k++) {
            gw_event_t *e = s->pend.v[k];
            if (e->type == GW_EV_MESSAGE || e->routed) {
                dlv__hb_add(d, e, s->idx);
                n++;
            } else {
                gw_event_free(e);
            }
        }
        d->stats.queued -= s->pend.bytes;
        dlv__evq_reset(&s->pend);
    }
    dlv__hb_emit(d);
    if (n)
        log_info("messages handed back for another node", "node=%s messages=%zu", d->cfg.name,
                 n);
}

/* A thread re-sent Reroute number n. */
void dlv__hb_marker(dlv_t *d, int k, uint32_t n)
{
    if (k < 0 || (int32_t)(n - d->hb_seen[k]) <= 0)
        return;
    d->hb_seen[k] = n;
    gw_idmap_drop_upto(&d->hb_ids[k], n); /* the thread holds them now: what follows is newer */
    bool wait = false;
    for (int i = 0; i < d->cfg.nsvc; i++)
        wait |= d->hb_seen[i] != d->hb_sent[i];
    d->hb_wait = wait;
    dlv__publish_usable(d);
}

