/* batch.c: Upstream batch encoding (see batch.h). Writer thread. */
#include "batch.h"

#include <stdlib.h>
#include <string.h>

#include "conn_id.h"
#include "grpc_frame.h"
#include "wsgw.pb-c.h"

#define SEQ_FIELD_MAX 11 /* key byte + 10-byte varint */
#define COMPLETE_FIELD 2 /* presence_complete: key byte + 1 */

typedef struct {
    Wsgw__V1__Event ev;
    union {
        Wsgw__V1__Open open;
        Wsgw__V1__Message msg;
        Wsgw__V1__Close close;
        Wsgw__V1__Recover rec;
    } k;
} ev_scratch_t;

/* Scratch space reused across batches by each writer thread. */
static _Thread_local ev_scratch_t *scratch;
static _Thread_local Wsgw__V1__Event **scratch_ptrs;
static _Thread_local size_t scratch_cap;

static int scratch_reserve(size_t n)
{
    if (n <= scratch_cap)
        return 0;
    ev_scratch_t *s = realloc(scratch, n * sizeof *s);
    if (!s)
        return -1;
    scratch = s;
    Wsgw__V1__Event **p = realloc(scratch_ptrs, n * sizeof *p);
    if (!p)
        return -1;
    scratch_ptrs = p;
    scratch_cap = n;
    return 0;
}

gw_batch_t *gw_batch_encode(gw_event_t *const *evs, size_t n, const char *gateway_id)
{
    if (scratch_reserve(n) < 0)
        return NULL;
    gw_batch_t *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        gw_event_t *e = evs[i];
        ev_scratch_t *s = &scratch[i];
        wsgw__v1__event__init(&s->ev);
        s->ev.conn_id = e->conn_id;
        s->ev.user_id = (char *)gw_event_user(e);
        s->ev.gateway_ns = e->gateway_ns;
        switch (e->type) {
        case GW_EV_OPEN:
            if (e->routed)
                b->nmsgs++;
            wsgw__v1__open__init(&s->k.open);
            s->k.open.remote_addr = (char *)gw_event_a(e);
            s->k.open.query = (char *)gw_event_b(e);
            s->k.open.path = (char *)gw_event_c(e);
            s->k.open.gateway_id = (char *)gateway_id;
            s->ev.kind_case = WSGW__V1__EVENT__KIND_OPEN;
            s->ev.open = &s->k.open;
            break;
        case GW_EV_MESSAGE:
            b->nmsgs++; /* (a Recover counts with the connection's messages) */
            if (e->recover) {
                wsgw__v1__recover__init(&s->k.rec);
                s->k.rec.channel = (char *)gw_event_a(e);
                s->k.rec.epoch = (char *)gw_event_b(e);
                s->k.rec.offset = e->seq;
                s->k.rec.id = (uint32_t)e->code;
                s->ev.kind_case = WSGW__V1__EVENT__KIND_RECOVER;
                s->ev.recover = &s->k.rec;
                break;
            }
            wsgw__v1__message__init(&s->k.msg);
            s->k.msg.payload.data = (uint8_t *)gw_event_a(e);
            s->k.msg.payload.len = e->a_len;
            s->k.msg.binary = e->binary;
            s->k.msg.seq = e->seq;
            s->ev.kind_case = WSGW__V1__EVENT__KIND_MESSAGE;
            s->ev.message = &s->k.msg;
            break;
        default:
            wsgw__v1__close__init(&s->k.close);
            if (e->routed)
                b->nmsgs++;
            s->k.close.code = e->code;
            s->k.close.reason = (char *)gw_event_a(e);
            s->ev.kind_case = WSGW__V1__EVENT__KIND_CLOSE;
            s->ev.close = &s->k.close;
            break;
        }
        scratch_ptrs[i] = &s->ev;
    }
    Wsgw__V1__Upstream up = WSGW__V1__UPSTREAM__INIT;
    up.n_events = n;
    up.events = scratch_ptrs;
    up.seq = 0; /* proto3: zero is not encoded; the real seq is appended by set_seq */
    size_t sz = wsgw__v1__upstream__get_packed_size(&up);
    b->buf = malloc(GRPC_FRAME_HDR_LEN + sz + COMPLETE_FIELD + SEQ_FIELD_MAX);
    if (!b->buf) {
        free(b);
        return NULL;
    }
    b->ev_len = wsgw__v1__upstream__pack(&up, b->buf + GRPC_FRAME_HDR_LEN);
    b->nevents = (uint32_t)n;
    b->gateway_ns = n ? evs[0]->gateway_ns : 0;
    for (size_t i = 0; i < n; i++)
        if (evs[i]->tries > b->tries)
            b->tries = evs[i]->tries;
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
        e = gw_event_new(GW_EV_OPEN, ev->conn_id, user, strlen(user), a, strlen(a), q,
                         strlen(q), path, strlen(path));
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

void gw_batch_thread_cleanup(void)
{
    free(scratch);
    free(scratch_ptrs);
    scratch = NULL;
    scratch_ptrs = NULL;
    scratch_cap = 0;
}
