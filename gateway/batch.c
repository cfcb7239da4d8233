/* batch.c: Upstream batch encoding (see batch.h). Writer thread. */
#include "batch.h"

#include <stdlib.h>
#include <string.h>

#include "conn_id.h"
#include "grpc_frame.h"
#include "pbwire.h"
#include "wsgw.pb-c.h"

#define SEQ_FIELD_MAX 11 /* key byte + 10-byte varint */
#define COMPLETE_FIELD 2 /* presence_complete: key byte + 1 */

/* Encoding by hand (the hot path; why and which rules: pbwire.h): each event as protobuf-c
 * packs a proto3 Event (fields in number order, zero and empty values left out, strings up to
 * their first NUL as protobuf-c's strlen saw them), straight into the batch buffer; the bytes
 * are identical to protobuf-c's (tests/unit/test_pbcodec.c). */
typedef struct {
    size_t user;       /* string lengths: user_id, */
    size_t s1, s2, s3; /* Open: remote_addr, path, query; Close: reason; Recover: channel, epoch */
    size_t kind;       /* the Open / Message / Close / Recover sub-message */
    size_t ev;         /* the Event */
} ev_size_t;

/* Per-event sizes, reused across batches by each writer thread. */
static _Thread_local ev_size_t *scratch;
static _Thread_local size_t scratch_cap;

static int scratch_reserve(size_t n)
{
    if (n <= scratch_cap)
        return 0;
    ev_size_t *s = realloc(scratch, n * sizeof *s);
    if (!s)
        return -1;
    scratch = s;
    scratch_cap = n;
    return 0;
}

enum { EV_OPEN = 10, EV_MESSAGE = 11, EV_CLOSE = 12, EV_RECOVER = 13 }; /* Event's oneof */

static void event_size(const gw_event_t *e, size_t gwid_len, ev_size_t *z)
{
    z->user = strlen(gw_event_user(e));
    switch (e->type) {
    case GW_EV_OPEN:
        z->s1 = strlen(gw_event_a(e)); /* remote_addr = 1 */
        z->s2 = strlen(gw_event_c(e)); /* path = 2 */
        z->s3 = strlen(gw_event_b(e)); /* query = 3 */
        z->kind = pbw_size_len_field(z->s1) + pbw_size_len_field(z->s2) +
                  pbw_size_len_field(z->s3) + pbw_size_len_field(gwid_len) +
                  e->d_len; /* rooms = 5: encoded already (ws.c) */
        break;
    case GW_EV_MESSAGE:
        if (e->recover) {
            z->s1 = strlen(gw_event_a(e)); /* channel = 1 */
            z->s2 = strlen(gw_event_b(e)); /* epoch = 3 */
            z->kind = pbw_size_len_field(z->s1) + pbw_size_varint_field(e->seq) +
                      pbw_size_len_field(z->s2) +
                      pbw_size_varint_field((uint32_t)e->code); /* offset = 2, id = 4 */
            break;
        }
        z->kind = pbw_size_len_field(e->a_len) + (e->binary ? 2 : 0) +
                  pbw_size_varint_field(e->seq);
        break;
    default:
        z->s1 = strlen(gw_event_a(e)); /* reason = 2 */
        z->kind = pbw_size_varint_field((uint64_t)(int64_t)e->code) + pbw_size_len_field(z->s1);
        break;
    }
    z->ev = pbw_size_varint_field(e->conn_id) + pbw_size_len_field(z->user) +
            pbw_size_varint_field((uint64_t)e->gateway_ns) + pbw_size_msg_field(z->kind);
}

static uint8_t *event_put(uint8_t *p, const gw_event_t *e, const char *gwid, size_t gwid_len,
                          const ev_size_t *z)
{
    p = pbw_put_msg_head(p, 1, z->ev); /* Upstream.events */
    p = pbw_put_varint_field(p, 1, e->conn_id);
    p = pbw_put_len_field(p, 2, gw_event_user(e), z->user);
    p = pbw_put_varint_field(p, 3, (uint64_t)e->gateway_ns);
    switch (e->type) {
    case GW_EV_OPEN:
        p = pbw_put_msg_head(p, EV_OPEN, z->kind);
        p = pbw_put_len_field(p, 1, gw_event_a(e), z->s1);
        p = pbw_put_len_field(p, 2, gw_event_c(e), z->s2);
        p = pbw_put_len_field(p, 3, gw_event_b(e), z->s3);
        p = pbw_put_len_field(p, 4, gwid, gwid_len);
        if (e->d_len) {
            memcpy(p, gw_event_d(e), e->d_len);
            p += e->d_len;
        }
        break;
    case GW_EV_MESSAGE:
        if (e->recover) {
            p = pbw_put_msg_head(p, EV_RECOVER, z->kind);
            p = pbw_put_len_field(p, 1, gw_event_a(e), z->s1);
            p = pbw_put_varint_field(p, 2, e->seq);
            p = pbw_put_len_field(p, 3, gw_event_b(e), z->s2);
            p = pbw_put_varint_field(p, 4, (uint32_t)e->code);
            break;
        }
        p = pbw_put_msg_head(p, EV_MESSAGE, z->kind);
        p = pbw_put_len_field(p, 1, gw_event_a(e), e->a_len);
        if (e->binary) {
            *p++ = PBW_KEY(2, PBW_VARINT);
            *p++ = 1;
        }
        p = pbw_put_varint_field(p, 3, e->seq);
        break;
    default:
        p = pbw_put_msg_head(p, EV_CLOSE, z->kind);
        p = pbw_put_varint_field(p, 1, (uint64_t)(int64_t)e->code);
        p = pbw_put_len_field(p, 2, gw_event_a(e), z->s1);
        break;
    }
    return p;
}

#define POOL_MIN 4096 /* smaller buffers are malloc's (its per-thread cache serves them) */

/* Takes buffer i out of pool. */
static uint8_t *pool_out(gw_batch_pool_t *pool, int i)
{
    uint8_t *b = pool->buf[i];
    pool->bytes -= pool->cap[i];
    pool->n--;
    pool->buf[i] = pool->buf[pool->n];
    pool->cap[i] = pool->cap[pool->n];
    return b;
}

/* The smallest buffer in pool of at least need bytes, taken out of it; NULL: none. */
static uint8_t *pool_take(gw_batch_pool_t *pool, size_t need, size_t *cap)
{
    int best = -1;
    for (int i = 0; pool && need >= POOL_MIN && i < pool->n; i++)
        if (pool->cap[i] >= need && (best < 0 || pool->cap[i] < pool->cap[best]))
            best = i;
    if (best < 0)
        return NULL;
    *cap = pool->cap[best];
    return pool_out(pool, best);
}

gw_batch_t *gw_batch_encode(gw_batch_pool_t *pool, gw_event_t *const *evs, size_t n,
                            const char *gateway_id)
{
    if (scratch_reserve(n) < 0)
        return NULL;
    gw_batch_t *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    const char *gwid = gateway_id ? gateway_id : "";
    size_t gwid_len = strlen(gwid), sz = 0;
    for (size_t i = 0; i < n; i++) {
        const gw_event_t *e = evs[i];
        event_size(e, gwid_len, &scratch[i]);
        sz += pbw_size_msg_field(scratch[i].ev);
        /* counted with the connection's messages: Messages, Recovers, routed Opens/Closes */
        if (e->type == GW_EV_MESSAGE || e->routed)
            b->nmsgs++;
    }
    size_t need = GRPC_FRAME_HDR_LEN + sz + COMPLETE_FIELD + SEQ_FIELD_MAX;
    if (!(b->buf = pool_take(pool, need, &b->cap)))
        b->buf = malloc(b->cap = need);
    if (!b->buf) {
        free(b);
        return NULL;
    }
    uint8_t *p = b->buf + GRPC_FRAME_HDR_LEN;
    for (size_t i = 0; i < n; i++)
        p = event_put(p, evs[i], gwid, gwid_len, &scratch[i]);
    b->ev_len = sz;
    b->nevents = (uint32_t)n;
    b->gateway_ns = n ? evs[0]->gateway_ns : 0;
    for (size_t i = 0; i < n; i++) {
        if (evs[i]->tries > b->tries)
            b->tries = evs[i]->tries;
        if (evs[i]->rounds > b->rounds)
            b->rounds = evs[i]->rounds;
    }
    if (b->nmsgs) {
        b->tags = malloc(b->nmsgs * sizeof *b->tags);
        if (!b->tags) {
            gw_batch_free(b);
            return NULL;
        }
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
            if (evs[i]->type != GW_EV_MESSAGE && !evs[i]->routed)
                continue;
            if (evs[i]->type != GW_EV_MESSAGE && !b->routed &&
                !(b->routed = calloc(n, sizeof *b->routed))) {
                gw_batch_free(b);
                return NULL;
            }
            if (evs[i]->type != GW_EV_MESSAGE)
                b->routed[i] = 1;
            b->tags[m++] = (uint64_t)conn_id_thread(evs[i]->conn_id) << 32 | evs[i]->tno;
        }
    }
    gw_batch_set_seq(b, 0);
    return b;
}

void gw_batch_set_seq(gw_batch_t *b, uint64_t seq)
{
    uint8_t *p = b->buf + GRPC_FRAME_HDR_LEN + b->ev_len;
    size_t n = 0;
    if (seq) {
        p[n++] = 0x10; /* field 2, varint */
        uint64_t v = seq;
        while (v >= 0x80) {
            p[n++] = (uint8_t)(v | 0x80);
            v >>= 7;
        }
        p[n++] = (uint8_t)v;
    }
    b->seq = seq;
    b->wire_len = GRPC_FRAME_HDR_LEN + b->ev_len + n;
    grpc_frame_header(b->buf, (uint32_t)(b->ev_len + n));
}

void gw_batch_set_complete(gw_batch_t *b)
{
    if (b->complete)
        return;
    uint8_t *p = b->buf + GRPC_FRAME_HDR_LEN + b->ev_len;
    p[0] = 0x18; /* field 3, varint: presence_complete */
    p[1] = 1;
    b->ev_len += COMPLETE_FIELD;
    b->complete = true;
    gw_batch_set_seq(b, b->seq);
}

/* One decoded event back as a gw_event_t (NULL when out of memory). */
static gw_event_t *event_of(const Wsgw__V1__Event *ev, int64_t now)
{
    const char *user = ev->user_id ? ev->user_id : "";
    gw_event_t *e = NULL;
    switch (ev->kind_case) {
    case WSGW__V1__EVENT__KIND_OPEN: {
        const Wsgw__V1__Open *o = ev->open;
        const char *a = o->remote_addr ? o->remote_addr : "", *q = o->query ? o->query : "";
        const char *path = o->path ? o->path : "";
        size_t d = 0;
        for (size_t i = 0; i < o->n_rooms; i++)
            d += gw_event_room_size(strlen(o->rooms[i]));
        e = gw_event_new_d(GW_EV_OPEN, ev->conn_id, user, strlen(user), a, strlen(a), q,
                           strlen(q), path, strlen(path), d);
        uint8_t *p = e ? gw_event_d(e) : NULL;
        for (size_t i = 0; p && i < o->n_rooms; i++)
            p = gw_event_put_room(p, o->rooms[i], strlen(o->rooms[i]));
        break;
    }
    case WSGW__V1__EVENT__KIND_MESSAGE:
        e = gw_event_new(GW_EV_MESSAGE, ev->conn_id, user, strlen(user),
                         ev->message->payload.data, ev->message->payload.len, NULL, 0, NULL, 0);
        if (e) {
            e->binary = ev->message->binary;
            e->seq = ev->message->seq;
        }
        break;
    case WSGW__V1__EVENT__KIND_RECOVER: {
        const Wsgw__V1__Recover *r = ev->recover;
        const char *ch = r->channel ? r->channel : "", *ep = r->epoch ? r->epoch : "";
        e = gw_event_new(GW_EV_MESSAGE, ev->conn_id, user, strlen(user), ch, strlen(ch), ep,
                         strlen(ep), NULL, 0);
        if (e) {
            e->recover = true;
            e->seq = r->offset;
            e->code = (int32_t)r->id;
        }
        break;
    }
    case WSGW__V1__EVENT__KIND_CLOSE: {
        const char *r = ev->close->reason ? ev->close->reason : "";
        e = gw_event_new(GW_EV_CLOSE, ev->conn_id, user, strlen(user), r, strlen(r), NULL, 0,
                         NULL, 0);
        if (e)
            e->code = ev->close->code;
        break;
    }
    default:
        return NULL;
    }
    if (e) {
        e->gateway_ns = ev->gateway_ns;
        e->t_read = now;
    }
    return e;
}

int gw_batch_events(const gw_batch_t *b, bool messages_only, int64_t now, gw_event_t **head,
                    gw_event_t **tail)
{
    Wsgw__V1__Upstream *up = wsgw__v1__upstream__unpack(NULL, b->wire_len - GRPC_FRAME_HDR_LEN,
                                                        b->buf + GRPC_FRAME_HDR_LEN);
    if (!up)
        return -1;
    gw_event_t *h = NULL, *t = NULL;
    int n = 0;
    size_t m = 0;
    for (size_t i = 0; i < up->n_events; i++) {
        const Wsgw__V1__Event *ev = up->events[i];
        bool routed = b->routed && i < b->nevents && b->routed[i];
        bool counted = ev->kind_case == WSGW__V1__EVENT__KIND_MESSAGE ||
                       ev->kind_case == WSGW__V1__EVENT__KIND_RECOVER || routed;
        if (messages_only && !counted)
            continue; /* (not counted: m counts Messages, Recovers and routed Opens/Closes) */
        gw_event_t *e = event_of(ev, now);
        if (!e) {
            while (h) {
                gw_event_t *nx = h->next;
                gw_event_free(h);
                h = nx;
            }
            wsgw__v1__upstream__free_unpacked(up, NULL);
            return -1;
        }
        e->tries = b->tries;
        e->rounds = b->rounds;
        e->routed = routed;
        if (counted && b->tags && m < b->nmsgs)
            e->tno = (uint32_t)b->tags[m];
        if (counted)
            m++;
        e->next = NULL;
        if (t)
            t->next = e;
        else
            h = e;
        t = e;
        n++;
    }
    wsgw__v1__upstream__free_unpacked(up, NULL);
    if (h) {
        if (*tail)
            (*tail)->next = h;
        else
            *head = h;
        *tail = t;
    }
    return n;
}

void gw_batch_free(gw_batch_t *b)
{
    if (!b)
        return;
    free(b->tags);
    free(b->routed);
    free(b->buf);
    free(b);
}

void gw_batch_recycle(gw_batch_pool_t *pool, gw_batch_t *b)
{
    if (!b)
        return;
    if (pool && b->buf && b->cap >= POOL_MIN && b->cap <= GW_BATCH_POOL_BYTES) {
        /* make room: smaller buffers give way while the pool is full */
        while (pool->n == GW_BATCH_POOL || pool->bytes + b->cap > GW_BATCH_POOL_BYTES) {
            int small = 0;
            for (int i = 1; i < pool->n; i++)
                if (pool->cap[i] < pool->cap[small])
                    small = i;
            if (pool->cap[small] >= b->cap)
                break;
            free(pool_out(pool, small));
        }
        if (pool->n < GW_BATCH_POOL && pool->bytes + b->cap <= GW_BATCH_POOL_BYTES) {
            pool->buf[pool->n] = b->buf;
            pool->cap[pool->n++] = b->cap;
            pool->bytes += b->cap;
            b->buf = NULL;
        }
    }
    gw_batch_free(b);
}

void gw_batch_pool_free(gw_batch_pool_t *pool)
{
    for (int i = 0; i < pool->n; i++)
        free(pool->buf[i]);
    pool->n = 0;
    pool->bytes = 0;
}

void gw_batch_thread_cleanup(void)
{
    free(scratch);
    scratch = NULL;
    scratch_cap = 0;
}
