/* chanrec.c: channel positions and recovery of one wsgw.v1.json connection (see chanrec.h).
 * Service thread of the connection only; no I/O. */
#include "chanrec.h"

#include <stdlib.h>
#include <string.h>

static void ev(const gw_cr_ops_t *ops, void *ctx, gw_cr_ev_t e)
{
    if (ops->event)
        ops->event(ctx, e);
}

static void set_epoch(char *dst, const char *e, size_t n)
{
    if (n > GW_CR_EPOCH_MAX)
        n = GW_CR_EPOCH_MAX;
    if (n)
        memcpy(dst, e, n);
    dst[n] = 0;
}

static bool same_epoch(const char *a, const char *b, size_t blen)
{
    return strlen(a) == blen && memcmp(a, b, blen) == 0;
}

void gw_cr_init(gw_chans_t *set)
{
    memset(set, 0, sizeof *set);
}

gw_chan_t *gw_cr_find(const gw_chans_t *set, const char *name, size_t len)
{
    for (gw_chan_t *c = set->head; c; c = c->next)
        if (c->name_len == len && memcmp(c->name, name, len) == 0)
            return c;
    return NULL;
}

static gw_chan_t *chan_new(gw_chans_t *set, const gw_cr_cfg_t *cfg, const char *name,
                           size_t len, int *err)
{
    if (set->n >= cfg->max_chans || len > UINT16_MAX) {
        *err = GW_CR_TOO_MANY;
        return NULL;
    }
    gw_chan_t *c = calloc(1, sizeof *c + len + 1);
    if (!c) {
        *err = GW_CR_NOMEM;
        return NULL;
    }
    memcpy(c->name, name, len);
    c->name[len] = 0;
    c->name_len = (uint16_t)len;
    c->next = set->head;
    set->head = c;
    set->n++;
    return c;
}

static void held_clear(gw_chan_t *c, const gw_cr_ops_t *ops, void *ctx)
{
    for (uint32_t i = 0; i < c->nheld; i++)
        ops->unref(ctx, c->held[i].msg);
    c->nheld = 0;
    c->held_bytes = 0;
}

static void chan_free(gw_chan_t *c, const gw_cr_ops_t *ops, void *ctx)
{
    held_clear(c, ops, ctx);
    free(c->held);
    free(c);
}

void gw_cr_free(gw_chans_t *set, const gw_cr_ops_t *ops, void *ctx)
{
    while (set->head) {
        gw_chan_t *c = set->head;
        set->head = c->next;
        chan_free(c, ops, ctx);
    }
    set->n = 0;
}

void gw_cr_leave(gw_chans_t *set, const gw_cr_ops_t *ops, void *ctx, const char *name,
                 size_t len)
{
    for (gw_chan_t **pp = &set->head; *pp; pp = &(*pp)->next) {
        gw_chan_t *c = *pp;
        if (c->name_len == len && memcmp(c->name, name, len) == 0) {
            *pp = c->next;
            set->n--;
            chan_free(c, ops, ctx);
            return;
        }
    }
}

int gw_cr_position(gw_chans_t *set, const gw_cr_cfg_t *cfg, const char *name, size_t len,
                   uint64_t offset, const char *epoch, size_t epoch_len)
{
    if (epoch_len > GW_CR_EPOCH_MAX)
        return GW_CR_BAD;
    gw_chan_t *c = gw_cr_find(set, name, len);
    int err = 0;
    if (!c && !(c = chan_new(set, cfg, name, len, &err)))
        return err;
    if (c->state != GW_CR_WAIT && (c->last || c->nheld || c->state != GW_CR_LIVE))
        return 0; /* already in use: the channel's own position stands */
    c->state = GW_CR_WAIT;
    c->last = offset;
    set_epoch(c->epoch, epoch, epoch_len);
    return 0;
}

/* Keeps msg in c's held list (sorted by offset). 1: held; 0: a twin was there (not held). */
static int hold(gw_chan_t *c, const gw_cr_ops_t *ops, void *ctx, uint64_t offset, void *msg,
                size_t bytes)
{
    uint32_t i = c->nheld;
    while (i > 0 && c->held[i - 1].offset > offset)
        i--;
    if (i > 0 && c->held[i - 1].offset == offset)
        return 0;
    if (c->nheld == c->cap_held) {
        uint32_t ncap = c->cap_held ? c->cap_held * 2 : 8;
        gw_cr_held_t *h = realloc(c->held, ncap * sizeof *h);
        if (!h)
            return -1;
        c->held = h;
        c->cap_held = ncap;
    }
    memmove(c->held + i + 1, c->held + i, (c->nheld - i) * sizeof *c->held);
    c->held[i] = (gw_cr_held_t){offset, msg, bytes};
    c->nheld++;
    c->held_bytes += bytes;
    ops->ref(ctx, msg);
    return 1;
}

/* Removes the first k held entries (already delivered or dropped and unref'd). */
static void held_shift(gw_chan_t *c, uint32_t k)
{
    if (!k)
        return;
    for (uint32_t i = 0; i < k; i++)
        c->held_bytes -= c->held[i].bytes;
    memmove(c->held, c->held + k, (c->nheld - k) * sizeof *c->held);
    c->nheld -= k;
}

/* Delivers the held messages that come next (last + 1, ...) and drops the held twins of what
 * went out, up to the first gap. Held messages are of c->epoch here. */
static void release_consecutive(gw_chan_t *c, const gw_cr_ops_t *ops, void *ctx)
{
    uint32_t k = 0;
    for (; k < c->nheld; k++) {
        gw_cr_held_t *h = &c->held[k];
        if (h->offset <= c->last) {
            ev(ops, ctx, GW_CR_EV_DUPLICATE);
        } else if (h->offset == c->last + 1) {
            ops->deliver(ctx, h->msg);
            c->last = h->offset;
        } else {
            break;
        }
        ops->unref(ctx, h->msg);
    }
    held_shift(c, k);
}

/* Delivers every held message in order (twins of what went out dropped), jumps included: the
 * channel takes the held messages' epoch. Returns false when something was skipped. */
static bool flush_held(gw_chan_t *c, const gw_cr_ops_t *ops, void *ctx)
{
    bool cont = true;
    if (c->nheld && !same_epoch(c->epoch, c->hold_epoch, strlen(c->hold_epoch))) {
        /* another epoch than the channel's position: the history restarted */
        strcpy(c->epoch, c->hold_epoch);
        c->last = 0;
        cont = false;
    }
    for (uint32_t k = 0; k < c->nheld; k++) {
        gw_cr_held_t *h = &c->held[k];
        if (h->offset <= c->last) {
            ev(ops, ctx, GW_CR_EV_DUPLICATE);
        } else {
            if (h->offset != c->last + 1)
                cont = false;
            ops->deliver(ctx, h->msg);
            c->last = h->offset;
        }
        ops->unref(ctx, h->msg);
    }
    c->nheld = 0;
    c->held_bytes = 0;
    return cont;
}

/* A recovery or gap wait ends without everything: what is held goes out in order, then a
 * notice recovered=false. */
static void abandon(gw_chan_t *c, const gw_cr_ops_t *ops, void *ctx, gw_cr_ev_t why)
{
    ev(ops, ctx, why);
    ev(ops, ctx, GW_CR_EV_MISSED);
    flush_held(c, ops, ctx);
    c->state = GW_CR_LIVE;
    c->replied = false;
    ops->notice(ctx, c, false);
}

static void begin_recovery(gw_chans_t *set, gw_chan_t *c, const gw_cr_cfg_t *cfg,
                           const gw_cr_ops_t *ops, void *ctx, bool client_pos, int64_t now)
{
    if (++set->next_rid == 0)
        set->next_rid = 1;
    c->state = GW_CR_RECOVERING;
    c->rid = set->next_rid;
    c->from = c->last;
    c->client_pos = client_pos;
    c->cont = true;
    c->replied = false;
    c->deadline = now + cfg->recover_timeout_ns;
    if (!ops->request(ctx, c, c->from, c->epoch, c->rid))
        abandon(c, ops, ctx, GW_CR_EV_REQUEST_FAILED);
}

void gw_cr_start(gw_chans_t *set, const gw_cr_cfg_t *cfg, const gw_cr_ops_t *ops, void *ctx,
                 const char *name, size_t len, int64_t now)
{
    gw_chan_t *c = gw_cr_find(set, name, len);
    if (c && c->state == GW_CR_WAIT)
        begin_recovery(set, c, cfg, ops, ctx, true, now);
}

/* Holds msg while recovering or in a gap; past the limit the recovery is abandoned. */
static void hold_or_abandon(gw_chan_t *c, const gw_cr_cfg_t *cfg, const gw_cr_ops_t *ops,
                            void *ctx, uint64_t offset, void *msg, size_t bytes)
{
    int h = hold(c, ops, ctx, offset, msg, bytes);
    if (h == 0) {
        ev(ops, ctx, GW_CR_EV_DUPLICATE);
        return;
    }
    if (h < 0 || c->held_bytes > cfg->max_held_bytes) {
        if (h < 0) /* cannot hold it: it goes out behind what is held, in order */
            ev(ops, ctx, GW_CR_EV_OVERFLOW);
        abandon(c, ops, ctx, GW_CR_EV_OVERFLOW);
        if (h < 0 && offset > c->last) {
            ops->deliver(ctx, msg);
            c->last = offset;
        }
    }
}

/* A live message of another epoch than the channel's: the history restarted (lost, expired).
 * What is held goes out, then this message; the client is told it may have missed some. */
static void reset(gw_chan_t *c, const gw_cr_ops_t *ops, void *ctx, uint64_t offset,
                  const char *epoch, size_t epoch_len, void *msg)
{
    ev(ops, ctx, GW_CR_EV_RESET);
    flush_held(c, ops, ctx);
    c->state = GW_CR_LIVE;
    c->replied = false;
    ops->deliver(ctx, msg);
    c->last = offset;
    set_epoch(c->epoch, epoch, epoch_len);
    ops->notice(ctx, c, false);
}

void gw_cr_live(gw_chans_t *set, const gw_cr_cfg_t *cfg, const gw_cr_ops_t *ops, void *ctx,
                const char *name, size_t len, uint64_t offset, const char *epoch,
                size_t epoch_len, void *msg, size_t bytes, int64_t now)
{
    if (!offset || epoch_len > GW_CR_EPOCH_MAX) {
        ops->deliver(ctx, msg);
        return;
    }
    gw_chan_t *c = gw_cr_find(set, name, len);
    if (!c) {
        int err;
        if (!(c = chan_new(set, cfg, name, len, &err))) {
            ev(ops, ctx, GW_CR_EV_UNTRACKED);
            ops->deliver(ctx, msg);
            return;
        }
        /* a channel's first message: the position starts here */
        ops->deliver(ctx, msg);
        c->last = offset;
        set_epoch(c->epoch, epoch, epoch_len);
        return;
    }
    switch ((gw_cr_state_t)c->state) {
    case GW_CR_WAIT:
        /* a message of a channel that is not the connection's yet (the API sent it to the
         * connection itself): out of the recovery's way */
        ev(ops, ctx, GW_CR_EV_UNTRACKED);
        ops->deliver(ctx, msg);
        return;
    case GW_CR_LIVE:
    case GW_CR_GAP:
        if (!same_epoch(c->epoch, epoch, epoch_len)) {
            reset(c, ops, ctx, offset, epoch, epoch_len, msg);
        } else if (offset <= c->last) {
            ev(ops, ctx, GW_CR_EV_DUPLICATE);
        } else if (offset == c->last + 1) {
            ops->deliver(ctx, msg);
            c->last = offset;
            if (c->state == GW_CR_GAP) {
                release_consecutive(c, ops, ctx);
                if (!c->nheld) {
                    ev(ops, ctx, GW_CR_EV_GAP_FILLED);
                    c->state = GW_CR_LIVE;
                }
            }
        } else {
            if (c->state == GW_CR_LIVE) {
                ev(ops, ctx, GW_CR_EV_GAP);
                set_epoch(c->hold_epoch, epoch, epoch_len);
                c->state = GW_CR_GAP;
                c->deadline = now + cfg->gap_wait_ns;
            }
            hold_or_abandon(c, cfg, ops, ctx, offset, msg, bytes);
        }
        return;
    case GW_CR_RECOVERING:
        if (c->nheld && !same_epoch(c->hold_epoch, epoch, epoch_len)) {
            /* live messages of two epochs: the history restarted while we read it */
            abandon(c, ops, ctx, GW_CR_EV_RESET);
            reset(c, ops, ctx, offset, epoch, epoch_len, msg);
            return;
        }
        if (!c->nheld)
            set_epoch(c->hold_epoch, epoch, epoch_len);
        if (c->replied && same_epoch(c->epoch, epoch, epoch_len) && offset <= c->last) {
            ev(ops, ctx, GW_CR_EV_DUPLICATE);
            return;
        }
        hold_or_abandon(c, cfg, ops, ctx, offset, msg, bytes);
        return;
    }
}

/* The last page of an answer came: held messages the history already had go out (those the
 * answer left out), the notice, then the held ones after; a gap among those waits again. */
static void finish(gw_chan_t *c, const gw_cr_cfg_t *cfg, const gw_cr_ops_t *ops, void *ctx,
                   uint64_t top, bool ok, int64_t now)
{
    bool same = !c->nheld || same_epoch(c->epoch, c->hold_epoch, strlen(c->hold_epoch));
    if (same) {
        /* held messages up to top were in the history when it was read */
        uint32_t k = 0;
        for (; k < c->nheld && c->held[k].offset <= top; k++) {
            gw_cr_held_t *h = &c->held[k];
            if (h->offset <= c->last) {
                ev(ops, ctx, GW_CR_EV_DUPLICATE);
            } else {
                if (h->offset != c->last + 1)
                    c->cont = false;
                ops->deliver(ctx, h->msg);
                c->last = h->offset;
            }
            ops->unref(ctx, h->msg);
        }
        held_shift(c, k);
    }
    if (c->last < top) {
        c->cont = false; /* the answer left some out (more than the node returns at once) */
        c->last = top;
    }
    bool recovered = ok && c->cont;
    ev(ops, ctx, recovered ? GW_CR_EV_RECOVERED : GW_CR_EV_MISSED);
    c->state = GW_CR_LIVE;
    c->replied = false;
    if (!same) {
        /* live messages of another epoch than the one read: after the notice, as a reset */
        ops->notice(ctx, c, recovered);
        flush_held(c, ops, ctx);
        ev(ops, ctx, GW_CR_EV_RESET);
        ops->notice(ctx, c, false);
        return;
    }
    if (c->client_pos || !recovered)
        ops->notice(ctx, c, recovered);
    release_consecutive(c, ops, ctx);
    if (c->nheld) {
        /* a gap after what the history had when read: wait for it, then read again */
        ev(ops, ctx, GW_CR_EV_GAP);
        c->state = GW_CR_GAP;
        c->deadline = now + cfg->gap_wait_ns;
    }
}

void gw_cr_reply(gw_chans_t *set, const gw_cr_cfg_t *cfg, const gw_cr_ops_t *ops, void *ctx,
                 const char *name, size_t len, uint32_t id, const gw_cr_pub_t *pubs, size_t n,
                 bool more, uint64_t top, const char *epoch, size_t epoch_len, bool ok,
                 int64_t now)
{
    gw_chan_t *c = gw_cr_find(set, name, len);
    if (!c || c->state != GW_CR_RECOVERING || c->rid != id) {
        ev(ops, ctx, GW_CR_EV_LATE);
        return;
    }
    if (epoch_len > GW_CR_EPOCH_MAX) {
        abandon(c, ops, ctx, GW_CR_EV_MISSED);
        return;
    }
    if (!c->replied) {
        c->replied = true;
        /* the client's epoch "" takes any; another epoch: its offsets mean nothing here */
        if (c->epoch[0] && !same_epoch(c->epoch, epoch, epoch_len)) {
            c->cont = false;
            c->last = 0;
        }
        set_epoch(c->epoch, epoch, epoch_len);
    } else if (!same_epoch(c->epoch, epoch, epoch_len)) {
        /* the history restarted between two pages */
        c->cont = false;
        c->last = 0;
        set_epoch(c->epoch, epoch, epoch_len);
    }
    for (size_t i = 0; i < n; i++) {
        if (pubs[i].offset <= c->last) {
            ev(ops, ctx, GW_CR_EV_DUPLICATE);
            continue;
        }
        if (pubs[i].offset != c->last + 1)
            c->cont = false;
        ops->deliver(ctx, pubs[i].msg);
        c->last = pubs[i].offset;
    }
    if (more) {
        c->deadline = now + cfg->recover_timeout_ns; /* progress: the next page has time too */
        return;
    }
    finish(c, cfg, ops, ctx, top, ok, now);
}

bool gw_cr_tick(gw_chans_t *set, const gw_cr_cfg_t *cfg, const gw_cr_ops_t *ops, void *ctx,
                int64_t now)
{
    bool busy = false;
    for (gw_chan_t *c = set->head; c; c = c->next) {
        if (c->state == GW_CR_RECOVERING && now >= c->deadline)
            abandon(c, ops, ctx, GW_CR_EV_TIMEOUT);
        else if (c->state == GW_CR_GAP && now >= c->deadline)
            begin_recovery(set, c, cfg, ops, ctx, false, now);
        if (c->state == GW_CR_RECOVERING || c->state == GW_CR_GAP)
            busy = true;
    }
    return busy;
}

bool gw_cr_busy(const gw_chans_t *set)
{
    for (const gw_chan_t *c = set->head; c; c = c->next)
        if (c->state == GW_CR_RECOVERING || c->state == GW_CR_GAP)
            return true;
    return false;
}
