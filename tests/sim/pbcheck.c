/* pbcheck.c: our protobuf decoders against protobuf-c (see pbcheck.h). */
#include "pbcheck.h"

#include <stdlib.h>
#include <string.h>

#include "../../api/updec.h"
#include "../../gateway/dsdec.h"

static void hex(buf_t *o, const void *p, size_t n)
{
    static const char d[] = "0123456789abcdef";
    const uint8_t *b = p;
    buf_reserve(o, 2 * n + 1);
    for (size_t i = 0; i < n; i++) {
        char two[2] = {d[b[i] >> 4], d[b[i] & 15]};
        buf_append(o, two, 2);
    }
}

static void cstr(buf_t *o, const char *s)
{
    hex(o, s ? s : "", s ? strlen(s) : 0);
}

/* ---- Downstream ------------------------------------------------------------------------- */

static void target_pbc(buf_t *o, const Wsgw__V1__Target *t)
{
    if (!t) {
        buf_appendf(o, " target=-");
        return;
    }
    buf_appendf(o, " conns=[");
    for (size_t i = 0; i < t->n_conn_ids; i++)
        buf_appendf(o, "%llu,", (unsigned long long)t->conn_ids[i]);
    buf_appendf(o, "] users=[");
    for (size_t i = 0; i < t->n_user_ids; i++) {
        cstr(o, t->user_ids[i]);
        buf_appendf(o, ",");
    }
    buf_appendf(o, "] room=");
    cstr(o, t->room);
    buf_appendf(o, " all=%d", t->all ? 1 : 0);
}

static void recovered_pbc(buf_t *o, const Wsgw__V1__Recovered *r)
{
    buf_appendf(o, "recovered conn=%llu ch=", (unsigned long long)r->conn_id);
    cstr(o, r->channel);
    buf_appendf(o, " id=%u off=%llu more=%d ok=%d ep=", r->id, (unsigned long long)r->offset,
                r->more ? 1 : 0, r->recovered ? 1 : 0);
    cstr(o, r->epoch);
    buf_appendf(o, " pubs=[");
    for (size_t i = 0; i < r->n_publications; i++) {
        const Wsgw__V1__Publication *p = r->publications[i];
        buf_appendf(o, "%llu:%d:", (unsigned long long)p->offset, p->binary ? 1 : 0);
        hex(o, p->payload.data, p->payload.len);
        buf_appendf(o, ",");
    }
    buf_appendf(o, "]\n");
}

void pbcheck_dump_downstream(const Wsgw__V1__Downstream *d, buf_t *o)
{
    buf_appendf(o, "ack=%llu n=%zu\n", (unsigned long long)d->ack, d->n_commands);
    for (size_t i = 0; i < d->n_commands; i++) {
        const Wsgw__V1__Command *c = d->commands[i];
        switch (c->kind_case) {
        case WSGW__V1__COMMAND__KIND_SEND:
            buf_appendf(o, "send");
            target_pbc(o, c->send->target);
            buf_appendf(o, " payload=");
            hex(o, c->send->payload.data, c->send->payload.len);
            buf_appendf(o, " bin=%d api=%lld ch=", c->send->binary ? 1 : 0,
                        (long long)c->send->api_ns);
            cstr(o, c->send->channel);
            buf_appendf(o, " off=%llu ep=", (unsigned long long)c->send->offset);
            cstr(o, c->send->epoch);
            buf_appendf(o, "\n");
            break;
        case WSGW__V1__COMMAND__KIND_KICK:
            buf_appendf(o, "kick");
            target_pbc(o, c->kick->target);
            buf_appendf(o, " code=%d reason=", c->kick->code);
            cstr(o, c->kick->reason);
            buf_appendf(o, "\n");
            break;
        case WSGW__V1__COMMAND__KIND_JOIN:
            buf_appendf(o, "join conn=%llu room=", (unsigned long long)c->join->conn_id);
            cstr(o, c->join->room);
            buf_appendf(o, "\n");
            break;
        case WSGW__V1__COMMAND__KIND_LEAVE:
            buf_appendf(o, "leave conn=%llu room=", (unsigned long long)c->leave->conn_id);
            cstr(o, c->leave->room);
            buf_appendf(o, "\n");
            break;
        case WSGW__V1__COMMAND__KIND_RECOVERED:
            recovered_pbc(o, c->recovered);
            break;
        default:
            buf_appendf(o, "none\n");
            break;
        }
    }
}

static void target_ours(buf_t *o, const dsdec_target_t *t)
{
    if (!t->present) {
        buf_appendf(o, " target=-");
        return;
    }
    uint64_t *ids = malloc((t->n_conn_ids + 1) * sizeof *ids);
    const uint8_t **users = malloc((t->n_user_ids + 1) * sizeof *users);
    size_t *lens = malloc((t->n_user_ids + 1) * sizeof *lens);
    if (!ids || !users || !lens)
        abort();
    buf_appendf(o, " conns=[");
    dsdec_conn_ids(t, ids);
    for (size_t i = 0; i < t->n_conn_ids; i++)
        buf_appendf(o, "%llu,", (unsigned long long)ids[i]);
    buf_appendf(o, "] users=[");
    size_t n = dsdec_user_ids(t, users, lens, t->n_user_ids);
    for (size_t i = 0; i < n; i++) {
        hex(o, users[i], lens[i]);
        buf_appendf(o, ",");
    }
    buf_appendf(o, "] room=");
    hex(o, t->room, t->room_len);
    buf_appendf(o, " all=%d", t->all ? 1 : 0);
    free(ids);
    free(users);
    free(lens);
}

static void dump_downstream_ours(dsdec_t *d, buf_t *o)
{
    buf_appendf(o, "ack=%llu n=%zu\n", (unsigned long long)d->ack, d->ncommands);
    dsdec_cmd_t c;
    while (dsdec_next(d, &c)) {
        switch (c.kind) {
        case DSDEC_SEND:
            buf_appendf(o, "send");
            target_ours(o, &c.target);
            buf_appendf(o, " payload=");
            hex(o, c.payload, c.payload_len);
            buf_appendf(o, " bin=%d api=%lld ch=", c.binary ? 1 : 0, (long long)c.api_ns);
            hex(o, c.channel, c.channel_len);
            buf_appendf(o, " off=%llu ep=", (unsigned long long)c.offset);
            hex(o, c.epoch, c.epoch_len);
            buf_appendf(o, "\n");
            break;
        case DSDEC_KICK:
            buf_appendf(o, "kick");
            target_ours(o, &c.target);
            buf_appendf(o, " code=%d reason=", c.code);
            hex(o, c.payload, c.payload_len);
            buf_appendf(o, "\n");
            break;
        case DSDEC_JOIN:
        case DSDEC_LEAVE:
            buf_appendf(o, "%s conn=%llu room=", c.kind == DSDEC_JOIN ? "join" : "leave",
                        (unsigned long long)c.conn_id);
            hex(o, c.room, c.room_len);
            buf_appendf(o, "\n");
            break;
        case DSDEC_RECOVERED: {
            /* the Recovered is protobuf-c's to decode: what is checked is that these are the
             * bytes protobuf-c kept (the oneof's last member) */
            Wsgw__V1__Recovered *r = wsgw__v1__recovered__unpack(NULL, c.raw_len, c.raw);
            if (!r) {
                buf_appendf(o, "recovered UNDECODABLE\n");
                break;
            }
            recovered_pbc(o, r);
            wsgw__v1__recovered__free_unpacked(r, NULL);
            break;
        }
        default:
            buf_appendf(o, "none\n");
            break;
        }
    }
}

bool pbcheck_downstream(const uint8_t *msg, size_t len, buf_t *ours, buf_t *theirs)
{
    buf_reset(ours);
    buf_reset(theirs);
    dsdec_t d;
    if (dsdec_check(&d, msg, len) < 0)
        buf_appendf(ours, "REFUSED");
    else
        dump_downstream_ours(&d, ours);
    Wsgw__V1__Downstream *p = wsgw__v1__downstream__unpack(NULL, len, msg);
    if (!p) {
        buf_appendf(theirs, "REFUSED");
    } else {
        pbcheck_dump_downstream(p, theirs);
        wsgw__v1__downstream__free_unpacked(p, NULL);
    }
    return ours->len == theirs->len && memcmp(ours->data, theirs->data, ours->len) == 0;
}

/* ---- Upstream --------------------------------------------------------------------------- */

void pbcheck_dump_upstream(const Wsgw__V1__Upstream *u, buf_t *o)
{
    buf_appendf(o, "seq=%llu complete=%d n=%zu\n", (unsigned long long)u->seq,
                u->presence_complete ? 1 : 0, u->n_events);
    for (size_t i = 0; i < u->n_events; i++) {
        const Wsgw__V1__Event *e = u->events[i];
        buf_appendf(o, "conn=%llu user=", (unsigned long long)e->conn_id);
        cstr(o, e->user_id);
        buf_appendf(o, " gwns=%lld", (long long)e->gateway_ns);
        switch (e->kind_case) {
        case WSGW__V1__EVENT__KIND_OPEN:
            buf_appendf(o, " open ra=");
            cstr(o, e->open->remote_addr);
            buf_appendf(o, " path=");
            cstr(o, e->open->path);
            buf_appendf(o, " q=");
            cstr(o, e->open->query);
            buf_appendf(o, " gw=");
            cstr(o, e->open->gateway_id);
            buf_appendf(o, " rooms=%zu", e->open->n_rooms);
            for (size_t k = 0; k < e->open->n_rooms; k++) {
                buf_appendf(o, " ");
                cstr(o, e->open->rooms[k]);
            }
            break;
        case WSGW__V1__EVENT__KIND_MESSAGE:
            buf_appendf(o, " msg payload=");
            hex(o, e->message->payload.data, e->message->payload.len);
            buf_appendf(o, " bin=%d seq=%llu", e->message->binary ? 1 : 0,
                        (unsigned long long)e->message->seq);
            break;
        case WSGW__V1__EVENT__KIND_CLOSE:
            buf_appendf(o, " close code=%d reason=", e->close->code);
            cstr(o, e->close->reason);
            break;
        case WSGW__V1__EVENT__KIND_RECOVER:
            buf_appendf(o, " recover ch=");
            cstr(o, e->recover->channel);
            buf_appendf(o, " off=%llu ep=", (unsigned long long)e->recover->offset);
            cstr(o, e->recover->epoch);
            buf_appendf(o, " id=%u", e->recover->id);
            break;
        default:
            buf_appendf(o, " none");
            break;
        }
        buf_appendf(o, "\n");
    }
}

static void dump_upstream_ours(updec_t *u, buf_t *o)
{
    buf_appendf(o, "seq=%llu complete=%d n=%zu\n", (unsigned long long)u->seq,
                u->presence_complete ? 1 : 0, u->nevents);
    updec_event_t e;
    updec_str_t room;
    while (updec_next(u, &e)) {
        buf_appendf(o, "conn=%llu user=", (unsigned long long)e.conn_id);
        hex(o, e.user_id.p, e.user_id.len);
        buf_appendf(o, " gwns=%lld", (long long)e.gateway_ns);
        switch (e.kind) {
        case UPDEC_OPEN:
            buf_appendf(o, " open ra=");
            hex(o, e.remote_addr.p, e.remote_addr.len);
            buf_appendf(o, " path=");
            hex(o, e.path.p, e.path.len);
            buf_appendf(o, " q=");
            hex(o, e.query.p, e.query.len);
            buf_appendf(o, " gw=");
            hex(o, e.gateway_id.p, e.gateway_id.len);
            buf_appendf(o, " rooms=%zu", e.nrooms);
            for (const uint8_t *cur = NULL; updec_room(&e, &cur, &room);) {
                buf_appendf(o, " ");
                hex(o, room.p, room.len);
            }
            break;
        case UPDEC_MESSAGE:
            buf_appendf(o, " msg payload=");
            hex(o, e.payload.p, e.payload.len);
            buf_appendf(o, " bin=%d seq=%llu", e.binary ? 1 : 0, (unsigned long long)e.seq);
            break;
        case UPDEC_CLOSE:
            buf_appendf(o, " close code=%d reason=", e.code);
            hex(o, e.reason.p, e.reason.len);
            break;
        case UPDEC_RECOVER:
            buf_appendf(o, " recover ch=");
            hex(o, e.channel.p, e.channel.len);
            buf_appendf(o, " off=%llu ep=", (unsigned long long)e.offset);
            hex(o, e.epoch.p, e.epoch.len);
            buf_appendf(o, " id=%u", e.id);
            break;
        default:
            buf_appendf(o, " none");
            break;
        }
        buf_appendf(o, "\n");
    }
}

bool pbcheck_upstream(const uint8_t *msg, size_t len, buf_t *ours, buf_t *theirs)
{
    buf_reset(ours);
    buf_reset(theirs);
    updec_t u;
    if (updec_check(&u, msg, len) < 0)
        buf_appendf(ours, "REFUSED");
    else
        dump_upstream_ours(&u, ours);
    Wsgw__V1__Upstream *p = wsgw__v1__upstream__unpack(NULL, len, msg);
    if (!p) {
        buf_appendf(theirs, "REFUSED");
    } else {
        pbcheck_dump_upstream(p, theirs);
        wsgw__v1__upstream__free_unpacked(p, NULL);
    }
    return ours->len == theirs->len && memcmp(ours->data, theirs->data, ours->len) == 0;
}
