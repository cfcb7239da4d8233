/* history_mem.c: the in-memory history store (history.h) of one ws-api node. Each channel is
 * a ring of its newest messages (at most cfg.size, grown as needed) with its epoch and newest
 * offset. Expiry without scans: channels with messages sit in a list ordered by their last
 * add, so a sweep stops at the first one still young (messages: cfg.ttl_ms; the position:
 * cfg.meta_ttl_ms, on a second list of channels whose messages are all gone). Every answer is
 * given before the call returns. Loop thread only. */
#include <stdlib.h>
#include <string.h>

#include "history.h"
#include "history_metrics.h"
#include "hmap.h"
#include "metrics.h"

#define MSG_OVERHEAD 48  /* counted per message against max_bytes besides its payload */
#define CHAN_OVERHEAD 160

typedef struct mem_msg {
    uint64_t offset;
    uint64_t t_ms;
    uint32_t len;
    bool binary;
    uint8_t data[];
} mem_msg_t;

typedef struct mem_chan {
    hmap_node_t node;
    struct mem_chan *prev, *next; /* on `young` (has messages) or `old` (position only) */
    bool on_young;
    char epoch[HIST_EPOCH_MAX + 1];
    uint64_t top;                 /* newest offset (0: none yet) */
    uint64_t last_ms;             /* last add (or creation) */
    mem_msg_t **ring;
    uint64_t cap, head, count;    /* ring[head] is the oldest */
    size_t bytes;                 /* charged against max_bytes, overhead included */
    size_t nlen;
    char name[];
} mem_chan_t;

typedef struct mem_list {
    mem_chan_t *head, *tail;
} mem_list_t;

typedef struct mem_store {
    history_t h;
    hmap_t chans;
    mem_list_t young, old;
    size_t bytes;
} mem_store_t;

static void list_del(mem_list_t *l, mem_chan_t *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        l->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        l->tail = c->prev;
    c->prev = c->next = NULL;
}

static void list_add_tail(mem_list_t *l, mem_chan_t *c)
{
    c->prev = l->tail;
    c->next = NULL;
    if (l->tail)
        l->tail->next = c;
    else
        l->head = c;
    l->tail = c;
}

static void gauges(mem_store_t *m)
{
    metrics_gauge_set(hist_m.channels, (int64_t)m->chans.count);
    metrics_gauge_set(hist_m.bytes, (int64_t)m->bytes);
}

static uint64_t name_hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return hmap_hash_u64(h);
}

static mem_chan_t *find(const mem_store_t *m, const char *name, size_t n)
{
    uint64_t h = name_hash(name, n);
    for (hmap_node_t *x = hmap_first(&m->chans, h); x; x = hmap_next(x, h)) {
        mem_chan_t *c = hmap_entry(x, mem_chan_t, node);
        if (c->nlen == n && memcmp(c->name, name, n) == 0)
            return c;
    }
    return NULL;
}

/* The channel, created with a new epoch when it has none. NULL: memory (or the cap). */
static mem_chan_t *get(mem_store_t *m, const char *name, size_t n, uint64_t now_ms, int *err)
{
    mem_chan_t *c = find(m, name, n);
    if (c)
        return c;
    if (m->bytes + CHAN_OVERHEAD + n > m->h.cfg.max_bytes) {
        *err = HIST_ERR_FULL;
        return NULL;
    }
    c = calloc(1, sizeof *c + n + 1);
    if (!c || hmap_insert(&m->chans, &c->node, name_hash(name, n)) < 0) {
        free(c);
        *err = HIST_ERR_NOMEM;
        return NULL;
    }
    memcpy(c->name, name, n);
    c->nlen = n;
    history_new_epoch(c->epoch);
    c->last_ms = now_ms;
    c->bytes = CHAN_OVERHEAD + n;
    m->bytes += c->bytes;
    list_add_tail(&m->old, c);
    gauges(m);
    return c;
}

static void drop_oldest(mem_store_t *m, mem_chan_t *c)
{
    mem_msg_t *x = c->ring[c->head];
    size_t b = MSG_OVERHEAD + x->len;
    c->bytes -= b;
    m->bytes -= b;
    free(x);
    c->ring[c->head] = NULL;
    c->head = (c->head + 1) % c->cap;
    c->count--;
}

/* Drops the messages older than ttl. */
static void expire(mem_store_t *m, mem_chan_t *c, uint64_t now_ms)
{
    while (c->count && c->ring[c->head]->t_ms + m->h.cfg.ttl_ms <= now_ms)
        drop_oldest(m, c);
}

static void chan_free(mem_store_t *m, mem_chan_t *c)
{
    while (c->count)
        drop_oldest(m, c);
    list_del(c->on_young ? &m->young : &m->old, c);
    hmap_remove(&m->chans, &c->node);
    m->bytes -= c->bytes;
    free(c->ring);
    free(c);
}

/* Room for one more message in the ring (grown up to cfg.size). */
static int make_room(mem_store_t *m, mem_chan_t *c)
{
    if (c->count == m->h.cfg.size) {
        drop_oldest(m, c);
        return 0;
    }
    if (c->count < c->cap)
        return 0;
    uint64_t ncap = c->cap ? c->cap * 2 : 8;
    if (ncap > m->h.cfg.size)
        ncap = m->h.cfg.size;
    mem_msg_t **r = malloc(ncap * sizeof *r);
    if (!r)
        return HIST_ERR_NOMEM;
    for (uint64_t i = 0; i < c->count; i++)
        r[i] = c->ring[(c->head + i) % c->cap];
    free(c->ring);
    c->ring = r;
    c->cap = ncap;
    c->head = 0;
    return 0;
}

static int mem_add(history_t *h, const char *chan, size_t clen, const uint8_t *data, size_t len,
                   bool binary, uint64_t now_ms, hist_added_fn fn, void *ud)
{
    mem_store_t *m = (mem_store_t *)h;
    if (len > UINT32_MAX)
        return HIST_ERR_NOMEM;
    int err = 0;
    mem_chan_t *c = get(m, chan, clen, now_ms, &err);
    if (!c)
        return err;
    expire(m, c, now_ms);
    size_t b = MSG_OVERHEAD + len;
    if (m->bytes + b > h->cfg.max_bytes) {
        gauges(m);
        return HIST_ERR_FULL;
    }
    mem_msg_t *x = malloc(sizeof *x + len);
    if (!x || make_room(m, c) < 0) {
        free(x);
        return HIST_ERR_NOMEM;
    }
    x->offset = ++c->top;
    x->t_ms = now_ms;
    x->len = (uint32_t)len;
    x->binary = binary;
    if (len)
        memcpy(x->data, data, len);
    c->ring[(c->head + c->count) % c->cap] = x;
    c->count++;
    c->bytes += b;
    m->bytes += b;
    c->last_ms = now_ms;
    list_del(c->on_young ? &m->young : &m->old, c);
    list_add_tail(&m->young, c);
    c->on_young = true;
    gauges(m);
    metrics_inc(hist_m.add_ok);
    hist_pos_t pos;
    pos.offset = x->offset;
    memcpy(pos.epoch, c->epoch, sizeof pos.epoch);
    fn(ud, HIST_OK, &pos);
    return HIST_OK;
}

static int mem_read(history_t *h, const char *chan, size_t clen, uint64_t after, const char *epoch,
                    uint64_t now_ms, hist_page_fn fn, void *ud)
{
    mem_store_t *m = (mem_store_t *)h;
    int err = 0;
    /* a channel read before anything was kept gets its epoch now, so that the reader's
     * position stays valid when the first message comes */
    mem_chan_t *c = get(m, chan, clen, now_ms, &err);
    if (!c)
        return err;
    expire(m, c, now_ms);
    bool same = !*epoch || strcmp(epoch, c->epoch) == 0;
    uint64_t first = c->count ? c->ring[c->head]->offset : c->top + 1;
    hist_page_t pg = {.status = HIST_OK, .top = c->top, .epoch = c->epoch};
    bool deliver = same && after <= c->top && c->top - after <= h->cfg.recover_max;
    pg.recovered = deliver && after + 1 >= first;
    if (!deliver || after >= c->top) {
        fn(ud, &pg);
        return HIST_OK;
    }
    uint64_t i = after + 1 > first ? after + 1 - first : 0;
    hist_entry_t ents[64];
    while (true) {
        size_t n = 0, bytes = 0;
        for (; i < c->count && n < 64 && (n == 0 || bytes < h->cfg.page_bytes); i++) {
            mem_msg_t *x = c->ring[(c->head + i) % c->cap];
            ents[n++] = (hist_entry_t){x->offset, x->data, x->len, x->binary};
            bytes += x->len;
        }
        pg.pubs = ents;
        pg.n = n;
        pg.more = i < c->count;
        metrics_add(hist_m.read_msgs, n);
        fn(ud, &pg);
        if (!pg.more)
            break;
    }
    return HIST_OK;
}

static void mem_sweep(history_t *h, uint64_t now_ms)
{
    mem_store_t *m = (mem_store_t *)h;
    while (m->young.head && m->young.head->last_ms + h->cfg.ttl_ms <= now_ms) {
        mem_chan_t *c = m->young.head;
        expire(m, c, now_ms);
        list_del(&m->young, c);
        list_add_tail(&m->old, c); /* (in last_ms order: it was the oldest young one) */
        c->on_young = false;
    }
    while (m->old.head && m->old.head->last_ms + h->cfg.meta_ttl_ms <= now_ms)
        chan_free(m, m->old.head);
    gauges(m);
}

static void mem_free(history_t *h)
{
    mem_store_t *m = (mem_store_t *)h;
    while (m->young.head)
        chan_free(m, m->young.head);
    while (m->old.head)
        chan_free(m, m->old.head);
    hmap_free(&m->chans);
    free(m);
}

static const history_ops_t mem_ops = {mem_add, mem_read, mem_sweep, mem_free};

history_t *history_mem_new(const hist_cfg_t *cfg)
{
    mem_store_t *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->h.ops = &mem_ops;
    m->h.cfg = *cfg;
    if (!m->h.cfg.size)
        m->h.cfg.size = 1;
    m->h.kind = "memory";
    return &m->h;
}
