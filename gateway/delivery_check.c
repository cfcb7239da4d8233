/* delivery_check.c: the delivery state machine's self-check and one-line description, for the
 * simulator, fuzzing and logs (delivery.h). */
#include <stdio.h>

#include "delivery_priv.h"

/* ---- self-check (simulator, fuzzing) ------------------------------------------------------ */

#define FAIL(...) (snprintf(err, errlen, __VA_ARGS__), -1)

static int check_stream(const dlv_t *d, const dstream_t *s, size_t *bytes, char *err,
                        size_t errlen)
{
    bool cur_seen = s->cur == NULL;
    uint64_t seq = 0;
    const gw_batch_t *last = NULL;
    for (const gw_batch_t *b = s->head; b; b = b->next) {
        if (b == s->cur)
            cur_seen = true;
        if (b->seq && b->seq <= seq)
            return FAIL("stream %d: seq %llu after %llu", s->idx, (unsigned long long)b->seq,
                        (unsigned long long)seq);
        seq = b->seq;
        if (b->tries > d->cfg.max_attempts)
            return FAIL("stream %d: a batch went out %d times (max %d)", s->idx, b->tries,
                        d->cfg.max_attempts);
        *bytes += b->ev_len;
        last = b;
    }
    if (last != s->tail)
        return FAIL("stream %d: tail is not the last batch", s->idx);
    if (!cur_seen)
        return FAIL("stream %d: cur is not in the queue", s->idx);
    if (!s->cur && s->cur_off)
        return FAIL("stream %d: offset without a current batch", s->idx);
    if (s->open && d->state != DLV_LIVE && d->state != DLV_GOAWAY)
        return FAIL("stream %d open in state %d", s->idx, d->state);
    if (s->rs.n && d->state != DLV_RESYNC)
        return FAIL("stream %d: resync Opens outside a resync", s->idx);
    if ((d->state == DLV_DOWN || d->state == DLV_CONNECTING || d->state == DLV_RESYNC) &&
        s->head)
        return FAIL("stream %d: batches kept without a session (state %d)", s->idx, d->state);
    for (size_t i = 0; i < s->pend.n; i++)
        if (s->pend.v[i]->type != GW_EV_MESSAGE && !s->pend.v[i]->routed &&
            d->state != DLV_RESYNC &&
            d->state != DLV_LIVE)
            return FAIL("stream %d: presence event kept without a session", s->idx);
    *bytes += s->pend.bytes;
    return 0;
}

int dlv_check(const dlv_t *d, char *err, size_t errlen)
{
    size_t bytes = 0;
    for (int i = 0; i < d->cfg.nstreams; i++)
        if (check_stream(d, &d->st[i], &bytes, err, errlen) < 0)
            return -1;
    if (bytes != d->stats.queued)
        return FAIL("queued %zu bytes but %zu counted", bytes, d->stats.queued);
    for (int k = 0; k < d->cfg.nsvc; k++)
        if (d->hb_head[k])
            return FAIL("handback list of thread %d not emitted", k);
    if (d->usable && d->state != DLV_RESYNC && d->state != DLV_LIVE)
        return FAIL("usable in state %d", d->state);
    return 0;
}

int dlv_describe(const dlv_t *d, char *out, size_t len)
{
    int n = snprintf(out, len, "state=%d usable=%d settings=%d queued=%zu rs_waiting=%d ping_out=%d",
                     d->state, d->usable, d->settings, d->stats.queued, d->rs_waiting,
                     d->ping_out);
    for (int i = 0; i < d->cfg.nstreams && n > 0 && (size_t)n < len; i++) {
        const dstream_t *s = &d->st[i];
        size_t nb = 0, ninf = 0;
        for (const gw_batch_t *b = s->head; b; b = b->next)
            nb++;
        for (const gw_batch_t *b = s->head; b && b != s->cur; b = b->next)
            ninf++;
        n += snprintf(out + n, len - (size_t)n,
                      " | st%d open=%d mode=%d healthy=%d alone=%d blocked=%d ending=%d "
                      "batches=%zu inflight=%zu head_tries=%d cur=%s pend=%zu reopen_at=%lld",
                      i, s->open, s->mode, s->healthy, s->alone, s->blocked, s->ending, nb, ninf,
                      s->head ? s->head->tries : -1, s->cur ? "yes" : "no", s->pend.n,
                      (long long)s->reopen_at);
    }
    return n;
}

