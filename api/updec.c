/* updec.c: hand-written Upstream decoding (see updec.h; wire rules: pbwire.h). */
#include "updec.h"

#include "pbwire.h"

/* Field numbers (proto/wsgw.proto). */
enum { UP_EVENTS = 1, UP_SEQ = 2, UP_COMPLETE = 3 };
enum { EV_CONN_ID = 1, EV_USER_ID = 2, EV_GATEWAY_NS = 3 };
enum { OPEN_REMOTE_ADDR = 1, OPEN_PATH = 2, OPEN_QUERY = 3, OPEN_GATEWAY_ID = 4, OPEN_ROOMS = 5 };
enum { MSG_PAYLOAD = 1, MSG_BINARY = 2, MSG_SEQ = 3 };
enum { CLOSE_CODE = 1, CLOSE_REASON = 2 };
enum { REC_CHANNEL = 1, REC_OFFSET = 2, REC_EPOCH = 3, REC_ID = 4 };

/* ---- validation: protobuf-c's rules (pbwire.h); known fields of the wrong wire type are
 * refused, except bools, which protobuf-c reads from any wire type ----------------------- */

/* A message whose known fields (1..nkinds) need the wire types in want[] (-1: any). */
static bool check_flat(const uint8_t *p, size_t len, const int8_t *want, unsigned nkinds)
{
    pbw_t r = pbw_init(p, len);
    pbw_field_t f;
    int rv;
    while ((rv = pbw_next(&r, &f)) > 0)
        if (f.num >= 1 && f.num <= nkinds && want[f.num - 1] >= 0 && f.wt != want[f.num - 1])
            return false;
    return rv == 0;
}

static const int8_t open_want[] = {PBW_LEN, PBW_LEN, PBW_LEN, PBW_LEN, PBW_LEN};
static const int8_t message_want[] = {PBW_LEN, -1, PBW_VARINT};
static const int8_t close_want[] = {PBW_VARINT, PBW_LEN};
static const int8_t recover_want[] = {PBW_LEN, PBW_VARINT, PBW_LEN, PBW_VARINT};

static bool check_event(const uint8_t *p, size_t len)
{
    pbw_t r = pbw_init(p, len);
    pbw_field_t f;
    int rv;
    while ((rv = pbw_next(&r, &f)) > 0) {
        bool ok = true;
        switch (f.num) {
        case EV_CONN_ID:
        case EV_GATEWAY_NS:
            ok = f.wt == PBW_VARINT;
            break;
        case EV_USER_ID:
            ok = f.wt == PBW_LEN;
            break;
        case UPDEC_OPEN:
            ok = f.wt == PBW_LEN && check_flat(f.val, f.len, open_want, 5);
            break;
        case UPDEC_MESSAGE:
            ok = f.wt == PBW_LEN && check_flat(f.val, f.len, message_want, 3);
            break;
        case UPDEC_CLOSE:
            ok = f.wt == PBW_LEN && check_flat(f.val, f.len, close_want, 2);
            break;
        case UPDEC_RECOVER:
            ok = f.wt == PBW_LEN && check_flat(f.val, f.len, recover_want, 4);
            break;
        default:
            break;
        }
        if (!ok)
            return false;
    }
    return rv == 0;
}

int updec_check(updec_t *u, const uint8_t *msg, size_t len)
{
    pbw_t r = pbw_init(msg, len);
    pbw_field_t f;
    int rv;
    u->p = msg;
    u->end = msg + len;
    u->nevents = 0;
    u->seq = 0;
    u->presence_complete = false;
    while ((rv = pbw_next(&r, &f)) > 0) {
        switch (f.num) {
        case UP_EVENTS:
            if (f.wt != PBW_LEN || !check_event(f.val, f.len))
                return -1;
            u->nevents++;
            break;
        case UP_SEQ:
            if (f.wt != PBW_VARINT)
                return -1;
            u->seq = pbw_u64(&f);
            break;
        case UP_COMPLETE:
            u->presence_complete = pbw_bool(&f);
            break;
        default:
            break;
        }
    }
    return rv == 0 ? 0 : -1;
}

/* ---- walking a checked batch -------------------------------------------------------------- */

static updec_str_t str_of(const pbw_field_t *f)
{
    return (updec_str_t){f->val, pbw_str_len(f)};
}

static void decode_kind(updec_event_t *e, const uint8_t *p, size_t len)
{
    pbw_t r = pbw_init(p, len);
    pbw_field_t f;
    while (pbw_next(&r, &f) > 0) {
        if (f.num >= 16)
            continue; /* unknown (and kind * 16 + num must not alias another kind's field) */
        switch (e->kind * 16 + f.num) {
        case UPDEC_OPEN * 16 + OPEN_REMOTE_ADDR: e->remote_addr = str_of(&f); break;
        case UPDEC_OPEN * 16 + OPEN_PATH: e->path = str_of(&f); break;
        case UPDEC_OPEN * 16 + OPEN_QUERY: e->query = str_of(&f); break;
        case UPDEC_OPEN * 16 + OPEN_GATEWAY_ID: e->gateway_id = str_of(&f); break;
        case UPDEC_OPEN * 16 + OPEN_ROOMS: e->nrooms++; break;
        case UPDEC_MESSAGE * 16 + MSG_PAYLOAD: e->payload = (updec_str_t){f.val, f.len}; break;
        case UPDEC_MESSAGE * 16 + MSG_BINARY: e->binary = pbw_bool(&f); break;
        case UPDEC_MESSAGE * 16 + MSG_SEQ: e->seq = pbw_u64(&f); break;
        case UPDEC_CLOSE * 16 + CLOSE_CODE: e->code = (int32_t)(uint32_t)pbw_u64(&f); break;
        case UPDEC_CLOSE * 16 + CLOSE_REASON: e->reason = str_of(&f); break;
        case UPDEC_RECOVER * 16 + REC_CHANNEL: e->channel = str_of(&f); break;
        case UPDEC_RECOVER * 16 + REC_OFFSET: e->offset = pbw_u64(&f); break;
        case UPDEC_RECOVER * 16 + REC_EPOCH: e->epoch = str_of(&f); break;
        case UPDEC_RECOVER * 16 + REC_ID: e->id = (uint32_t)pbw_u64(&f); break;
        default: break;
        }
    }
}

bool updec_next(updec_t *u, updec_event_t *e)
{
    pbw_t r = {u->p, u->end};
    pbw_field_t f;
    while (pbw_next(&r, &f) > 0) {
        if (f.num != UP_EVENTS)
            continue;
        u->p = r.p;
        memset(e, 0, sizeof *e);
        pbw_t re = pbw_init(f.val, f.len);
        pbw_field_t m, kind = {0};
        while (pbw_next(&re, &m) > 0) {
            switch (m.num) {
            case EV_CONN_ID: e->conn_id = pbw_u64(&m); break;
            case EV_USER_ID: e->user_id = str_of(&m); break;
            case EV_GATEWAY_NS: e->gateway_ns = (int64_t)pbw_u64(&m); break;
            case UPDEC_OPEN:
            case UPDEC_MESSAGE:
            case UPDEC_CLOSE:
            case UPDEC_RECOVER:
                kind = m; /* the oneof: the last member present wins, alone */
                break;
            default:
                break;
            }
        }
        e->kind = (updec_kind_t)kind.num;
        if (e->kind != UPDEC_NONE)
            decode_kind(e, kind.val, kind.len);
        if (e->kind == UPDEC_OPEN)
            e->open_body = (updec_str_t){kind.val, kind.len};
        return true;
    }
    u->p = u->end;
    return false;
}

bool updec_room(const updec_event_t *e, const uint8_t **cursor, updec_str_t *room)
{
    if (!e->nrooms)
        return false;
    const uint8_t *end = e->open_body.p + e->open_body.len;
    pbw_t r = {*cursor ? *cursor : e->open_body.p, end};
    pbw_field_t f;
    while (pbw_next(&r, &f) > 0)
        if (f.num == OPEN_ROOMS) {
            *cursor = r.p;
            *room = str_of(&f);
            return true;
        }
    *cursor = end;
    return false;
}
