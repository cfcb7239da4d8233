/* downstream.c: Downstream decoding and command fan-out (see downstream.h). Writer thread. */
#include "downstream.h"

#include <stdlib.h>
#include <string.h>

#include "chanrec.h"
#include "conn_id.h"
#include "dsdec.h"
#include "envelope.h"
#include "log.h"
#include "wsgw.pb-c.h"

#define MAX_USERS_PER_CMD 4096
#define MAX_CHANNEL 4096 /* bytes of a channel name taken from an API node */

/* The history fields of a Send (wsgw.v1.json): kept only when usable. */
typedef struct ds_chan {
    const char *chan, *epoch;
    size_t chan_len, epoch_len;
    uint64_t offset;
} ds_chan_t;

static ds_chan_t chan_of(const dsdec_cmd_t *s)
{
    ds_chan_t h = {"", "", 0, 0, 0};
    if (!s->channel_len)
        return h;
    h.chan = (const char *)s->channel;
    h.chan_len = s->channel_len;
    h.epoch = s->epoch_len ? (const char *)s->epoch : "";
    h.epoch_len = s->epoch_len;
    h.offset = s->offset;
    if (h.chan_len > MAX_CHANNEL || h.epoch_len > GW_CR_EPOCH_MAX) {
        log_rl_warn("Send with an unusable channel or epoch: delivered without them",
                    "channel_len=%zu epoch_len=%zu", h.chan_len, h.epoch_len);
        return (ds_chan_t){"", "", 0, 0, 0};
    }
    return h;
}

static bool ours(const gw_ds_sink_t *k, uint64_t id)
{
    return id && conn_id_prefix(id) == k->prefix && conn_id_thread(id) < (unsigned)k->nsvc;
}

/* Emits one command per thread that may hold a target of `t`. */
static void fan_out(const gw_ds_sink_t *k, gw_ds_result_t *res, gw_cmd_type_t type,
                    const dsdec_target_t *t, const void *payload, size_t plen, bool binary,
                    int32_t code, int64_t api_ns, const ds_chan_t *h)
{
    if (!t->present) {
        res->undeliverable++;
        return;
    }
    const uint8_t *users[MAX_USERS_PER_CMD];
    size_t ulens[MAX_USERS_PER_CMD];
    size_t nusers = t->n_user_ids ? dsdec_user_ids(t, users, ulens, MAX_USERS_PER_CMD) : 0;
    res->undeliverable += t->n_user_ids - nusers;
    const char *room = t->room_len ? (const char *)t->room : "";
    size_t room_len = t->room_len;
    bool broad = nusers > 0 || room_len > 0 || t->all;

    uint64_t stack_ids[2 * 64];
    size_t nids = t->n_conn_ids;
    uint64_t *all_ids = nids <= 64 ? stack_ids : malloc(2 * nids * sizeof *all_ids);
    if (!all_ids) {
        res->nomem++;
        return;
    }
    uint64_t *ids = all_ids + nids; /* this thread's share */
    dsdec_conn_ids(t, all_ids);
    for (size_t i = 0; i < nids; i++)
        if (!ours(k, all_ids[i]))
            res->undeliverable++;
    for (int th = 0; th < k->nsvc; th++) {
        size_t n = 0;
        for (size_t i = 0; i < nids; i++)
            if (ours(k, all_ids[i]) && conn_id_thread(all_ids[i]) == (unsigned)th)
                ids[n++] = all_ids[i];
        if (!n && !broad)
            continue;
        gw_cmd_t *c = gw_cmd_new_ch(type, ids, n, room, room_len, (const char *const *)users,
                                    ulens, nusers, h ? h->chan : NULL, h ? h->chan_len : 0,
                                    h ? h->epoch : NULL, h ? h->epoch_len : 0, 0);
        if (c && h)
            c->offset = h->offset;
        if (c && (payload || type == GW_CMD_SEND))
            c->payload = gw_payload_new(payload ? payload : "", plen, binary, k->t_recv);
        if (!c || ((payload || type == GW_CMD_SEND) && !c->payload)) {
            if (c)
                gw_cmd_free(c);
            res->nomem++;
            continue;
        }
        c->all = t->all;
        c->code = code;
        c->api_ns = api_ns;
        k->emit(k->ud, th, c);
    }
    if (all_ids != stack_ids)
        free(all_ids);
}

/* A Recovered command: one per connection, its publications framed here (wsgw.v1.json
 * envelopes: only clients of that protocol ask). */
static void recovered_cmd(const gw_ds_sink_t *k, gw_ds_result_t *res,
                          const Wsgw__V1__Recovered *r)
{
    uint64_t id = r->conn_id;
    const char *chan = r->channel ? r->channel : "", *epoch = r->epoch ? r->epoch : "";
    size_t clen = strlen(chan), elen = strlen(epoch);
    if (!ours(k, id) || !clen || clen > MAX_CHANNEL || elen > GW_CR_EPOCH_MAX) {
        res->undeliverable++;
        return;
    }
    gw_cmd_t *c = gw_cmd_new_ch(GW_CMD_RECOVERED, &id, 1, NULL, 0, NULL, NULL, 0, chan, clen,
                                epoch, elen, r->n_publications);
    if (!c) {
        res->nomem++;
        return;
    }
    for (size_t i = 0; i < r->n_publications; i++) {
        const Wsgw__V1__Publication *p = r->publications[i];
        c->pubs[i].offset = p->offset;
        c->pubs[i].env = gw_env_message(chan, clen, p->offset, epoch, elen,
                                        p->payload.data ? p->payload.data : (uint8_t *)"",
                                        p->payload.len, p->binary, k->t_recv);
        if (!c->pubs[i].env) {
            gw_cmd_free(c);
            res->nomem++;
            return;
        }
    }
    c->rid = r->id;
    c->offset = r->offset;
    c->flags = (uint8_t)((r->more ? GW_REC_MORE : 0) | (r->recovered ? GW_REC_OK : 0));
    k->emit(k->ud, (int)conn_id_thread(id), c);
}

/* The same from its encoded form (dsdec_cmd_t.raw: already checked by protobuf-c). */
static void recovered(const gw_ds_sink_t *k, gw_ds_result_t *res, const uint8_t *p, size_t len)
{
    Wsgw__V1__Recovered *r = wsgw__v1__recovered__unpack(NULL, len, p);
    if (!r) { /* (dsdec_check unpacked it once: only memory can fail now) */
        res->nomem++;
        return;
    }
    recovered_cmd(k, res, r);
    wsgw__v1__recovered__free_unpacked(r, NULL);
}

static void membership(const gw_ds_sink_t *k, gw_ds_result_t *res, gw_cmd_type_t type,
                       uint64_t id, const uint8_t *room, size_t room_len)
{
    if (!ours(k, id) || !room_len) {
        res->undeliverable++;
        return;
    }
    gw_cmd_t *c = gw_cmd_new(type, &id, 1, (const char *)room, room_len, NULL, NULL, 0);
    if (!c) {
        res->nomem++;
        return;
    }
    k->emit(k->ud, (int)conn_id_thread(id), c);
}

int gw_downstream_handle(const uint8_t *msg, size_t len, const gw_ds_sink_t *k,
                         gw_ds_result_t *res)
{
    memset(res, 0, sizeof *res);
    dsdec_t d;
    if (dsdec_check(&d, msg, len) < 0)
        return -1;
    dsdec_cmd_t c;
    while (dsdec_next(&d, &c)) {
        res->commands++;
        switch (c.kind) {
        case DSDEC_SEND: {
            if (c.api_ns && k->api_ns)
                k->api_ns(k->ud, c.api_ns);
            ds_chan_t h = chan_of(&c);
            fan_out(k, res, GW_CMD_SEND, &c.target, c.payload ? c.payload : (const uint8_t *)"",
                    c.payload_len, c.binary, 0, c.api_ns, &h);
            break;
        }
        case DSDEC_KICK:
            fan_out(k, res, GW_CMD_KICK, &c.target, c.payload ? c.payload : (const uint8_t *)"",
                    c.payload_len, false, c.code, 0, NULL);
            break;
        case DSDEC_JOIN:
            membership(k, res, GW_CMD_JOIN, c.conn_id, c.room, c.room_len);
            break;
        case DSDEC_LEAVE:
            membership(k, res, GW_CMD_LEAVE, c.conn_id, c.room, c.room_len);
            break;
        case DSDEC_RECOVERED:
            recovered(k, res, c.raw, c.raw_len);
            break;
        default:
            res->undeliverable++;
            break;
        }
    }
    res->has_ack = d.ack != 0;
    res->ack = d.ack;
    return 0;
}
