/* dsdec.c: hand-written Downstream decoding (see dsdec.h; wire rules: pbwire.h). */
#include "dsdec.h"

#include <stdlib.h>

#include "pbwire.h"
#include "wsgw.pb-c.h"

/* Field numbers (proto/wsgw.proto). */
enum { DS_COMMANDS = 1, DS_ACK = 2 };
enum { TG_CONN_IDS = 1, TG_USER_IDS = 2, TG_ROOM = 3, TG_ALL = 4 };
enum {
    SEND_TARGET = 1,
    SEND_PAYLOAD = 2,
    SEND_BINARY = 3,
    SEND_API_NS = 4,
    SEND_CHANNEL = 5,
    SEND_OFFSET = 6,
    SEND_EPOCH = 7,
};
enum { KICK_TARGET = 1, KICK_CODE = 2, KICK_REASON = 3 };
enum { MEMB_CONN_ID = 1, MEMB_ROOM = 2 };

/* ---- validation: every rule protobuf-c applies (pbwire.h); wrong wire types of known fields
 * are refused, except for bools, which protobuf-c reads from any wire type ---------------- */

static bool check_target(const uint8_t *p, size_t len)
{
    pbw_t r = pbw_init(p, len);
    pbw_field_t f;
    int rv;
    while ((rv = pbw_next(&r, &f)) > 0) {
        size_t n;
        switch (f.num) {
        case TG_CONN_IDS:
            if (f.wt != PBW_VARINT && (f.wt != PBW_LEN || !pbw_packed_ok(f.val, f.len, &n)))
                return false;
            break;
        case TG_USER_IDS:
        case TG_ROOM:
            if (f.wt != PBW_LEN)
                return false;
            break;
        default: /* TG_ALL (a bool: any wire type) and unknown fields */
            break;
        }
    }
    return rv == 0;
}

static bool check_send(const uint8_t *p, size_t len)
{
    pbw_t r = pbw_init(p, len);
    pbw_field_t f;
    int rv;
    while ((rv = pbw_next(&r, &f)) > 0) {
        switch (f.num) {
        case SEND_TARGET:
            if (f.wt != PBW_LEN || !check_target(f.val, f.len))
                return false;
            break;
        case SEND_PAYLOAD:
        case SEND_CHANNEL:
        case SEND_EPOCH:
            if (f.wt != PBW_LEN)
                return false;
            break;
        case SEND_API_NS:
        case SEND_OFFSET:
            if (f.wt != PBW_VARINT)
                return false;
            break;
        default: /* SEND_BINARY (bool), unknown */
            break;
        }
    }
    return rv == 0;
}

static bool check_kick(const uint8_t *p, size_t len)
{
    pbw_t r = pbw_init(p, len);
    pbw_field_t f;
    int rv;
    while ((rv = pbw_next(&r, &f)) > 0) {
        switch (f.num) {
        case KICK_TARGET:
            if (f.wt != PBW_LEN || !check_target(f.val, f.len))
                return false;
            break;
        case KICK_CODE:
            if (f.wt != PBW_VARINT)
                return false;
            break;
        case KICK_REASON:
            if (f.wt != PBW_LEN)
                return false;
            break;
        default:
            break;
        }
    }
    return rv == 0;
}

static bool check_membership(const uint8_t *p, size_t len) /* Join, Leave */
{
    pbw_t r = pbw_init(p, len);
    pbw_field_t f;
    int rv;
    while ((rv = pbw_next(&r, &f)) > 0) {
        if ((f.num == MEMB_CONN_ID && f.wt != PBW_VARINT) ||
            (f.num == MEMB_ROOM && f.wt != PBW_LEN))
            return false;
    }
    return rv == 0;
}

/* A Recovered: protobuf-c itself says (history replay only: not the hot path). */
static bool check_recovered(const uint8_t *p, size_t len)
{
    Wsgw__V1__Recovered *r = wsgw__v1__recovered__unpack(NULL, len, p);
    if (!r)
        return false;
    wsgw__v1__recovered__free_unpacked(r, NULL);
    return true;
}

static bool check_command(const uint8_t *p, size_t len)
{
    pbw_t r = pbw_init(p, len);
    pbw_field_t f;
    int rv;
    while ((rv = pbw_next(&r, &f)) > 0) {
        bool ok = true;
        switch (f.num) {
        case DSDEC_SEND:
            ok = f.wt == PBW_LEN && check_send(f.val, f.len);
            break;
        case DSDEC_KICK:
            ok = f.wt == PBW_LEN && check_kick(f.val, f.len);
            break;
        case DSDEC_JOIN:
        case DSDEC_LEAVE:
            ok = f.wt == PBW_LEN && check_membership(f.val, f.len);
            break;
        case DSDEC_RECOVERED:
            ok = f.wt == PBW_LEN && check_recovered(f.val, f.len);
            break;
        default:
            break;
        }
        if (!ok)
            return false;
    }
    return rv == 0;
}

int dsdec_check(dsdec_t *d, const uint8_t *msg, size_t len)
{
    pbw_t r = pbw_init(msg, len);
    pbw_field_t f;
    int rv;
    d->p = msg;
    d->end = msg + len;
    d->ncommands = 0;
    d->ack = 0;
    while ((rv = pbw_next(&r, &f)) > 0) {
        if (f.num == DS_COMMANDS) {
            if (f.wt != PBW_LEN || !check_command(f.val, f.len))
                return -1;
            d->ncommands++;
        } else if (f.num == DS_ACK) {
            if (f.wt != PBW_VARINT)
                return -1;
            d->ack = pbw_u64(&f);
        }
    }
    return rv == 0 ? 0 : -1;
}

/* ---- walking a checked message ------------------------------------------------------------ */

/* One occurrence of a Target merged into t (protobuf-c's merge_messages: repeated fields
 * concatenate, a string present in the later one replaces, a proto3 scalar is the later
 * one's, absent meaning zero). */
static void merge_target(dsdec_target_t *t, const uint8_t *p, size_t len)
{
    pbw_t r = pbw_init(p, len);
    pbw_field_t f;
    t->present = true;
    t->all = false;
    while (pbw_next(&r, &f) > 0) {
        switch (f.num) {
        case TG_CONN_IDS:
            if (f.wt == PBW_VARINT) {
                t->n_conn_ids++;
            } else {
                size_t n = 0;
                pbw_packed_ok(f.val, f.len, &n);
                t->n_conn_ids += n;
            }
            break;
        case TG_USER_IDS:
            t->n_user_ids++;
            break;
        case TG_ROOM:
            t->room = f.val;
            t->room_len = pbw_str_len(&f);
            break;
        case TG_ALL:
            t->all = pbw_bool(&f);
            break;
        default:
            break;
        }
    }
}

static void decode_send_or_kick(dsdec_cmd_t *c, const uint8_t *p, size_t len)
{
    pbw_t r = pbw_init(p, len);
    pbw_field_t f;
    c->target.owner = p;
    c->target.owner_len = len;
    while (pbw_next(&r, &f) > 0) {
        if (f.num == SEND_TARGET) { /* == KICK_TARGET */
            merge_target(&c->target, f.val, f.len);
            continue;
        }
        if (c->kind == DSDEC_SEND) {
            if (f.num == SEND_PAYLOAD) {
                c->payload = f.val;
                c->payload_len = f.len;
            } else if (f.num == SEND_BINARY) {
                c->binary = pbw_bool(&f);
            } else if (f.num == SEND_API_NS) {
                c->api_ns = (int64_t)pbw_u64(&f);
            } else if (f.num == SEND_CHANNEL) {
                c->channel = f.val;
                c->channel_len = pbw_str_len(&f);
            } else if (f.num == SEND_OFFSET) {
                c->offset = pbw_u64(&f);
            } else if (f.num == SEND_EPOCH) {
                c->epoch = f.val;
                c->epoch_len = pbw_str_len(&f);
            }
        } else {
            if (f.num == KICK_CODE) {
                c->code = (int32_t)(uint32_t)pbw_u64(&f);
            } else if (f.num == KICK_REASON) {
                c->payload = f.val;
                c->payload_len = pbw_str_len(&f);
            }
        }
    }
}

static void decode_membership(dsdec_cmd_t *c, const uint8_t *p, size_t len)
{
    pbw_t r = pbw_init(p, len);
    pbw_field_t f;
    while (pbw_next(&r, &f) > 0) {
        if (f.num == MEMB_CONN_ID) {
            c->conn_id = pbw_u64(&f);
        } else if (f.num == MEMB_ROOM) {
            c->room = f.val;
            c->room_len = pbw_str_len(&f);
        }
    }
}

bool dsdec_next(dsdec_t *d, dsdec_cmd_t *c)
{
    pbw_t r = {d->p, d->end};
    pbw_field_t f;
    while (pbw_next(&r, &f) > 0) {
        if (f.num != DS_COMMANDS)
            continue;
        d->p = r.p;
        memset(c, 0, sizeof *c);
        /* the oneof: the last member present wins, alone (protobuf-c drops the earlier) */
        pbw_t rc = pbw_init(f.val, f.len);
        pbw_field_t m, last = {0};
        while (pbw_next(&rc, &m) > 0)
            if (m.num >= DSDEC_SEND && m.num <= DSDEC_RECOVERED)
                last = m;
        c->kind = (dsdec_kind_t)last.num;
        if (c->kind == DSDEC_SEND || c->kind == DSDEC_KICK) {
            decode_send_or_kick(c, last.val, last.len);
        } else if (c->kind == DSDEC_RECOVERED) {
            c->raw = last.val;
            c->raw_len = last.len;
        } else if (c->kind != DSDEC_NONE) {
            decode_membership(c, last.val, last.len);
        }
        return true;
    }
    d->p = d->end;
    return false;
}

/* Walks the fields of every target occurrence of a checked Send or Kick, in order. */
typedef struct {
    pbw_t owner, target;
    bool in_target;
} tfields_t;

static bool tfields_next(tfields_t *it, pbw_field_t *f)
{
    for (;;) {
        if (it->in_target && pbw_next(&it->target, f) > 0)
            return true;
        pbw_field_t of;
        do {
            if (pbw_next(&it->owner, &of) <= 0)
                return false;
        } while (of.num != SEND_TARGET);
        it->target = pbw_init(of.val, of.len);
        it->in_target = true;
    }
}

void dsdec_conn_ids(const dsdec_target_t *t, uint64_t *out)
{
    tfields_t it = {pbw_init(t->owner, t->owner_len), {0}, false};
    pbw_field_t f;
    size_t n = 0;
    while (tfields_next(&it, &f)) {
        if (f.num != TG_CONN_IDS)
            continue;
        if (f.wt == PBW_VARINT) {
            out[n++] = pbw_u64(&f);
        } else {
            const uint8_t *q = f.val, *e = f.val + f.len;
            while (q < e)
                out[n++] = pbw_packed_next(&q);
        }
    }
}

size_t dsdec_user_ids(const dsdec_target_t *t, const uint8_t **ptrs, size_t *lens, size_t max)
{
    tfields_t it = {pbw_init(t->owner, t->owner_len), {0}, false};
    pbw_field_t f;
    size_t n = 0;
    if (t->n_user_ids < max)
        max = t->n_user_ids;
    while (n < max && tfields_next(&it, &f)) {
        if (f.num != TG_USER_IDS)
            continue;
        ptrs[n] = f.val;
        lens[n] = pbw_str_len(&f);
        n++;
    }
    return n;
}
