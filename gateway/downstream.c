/* downstream.c: Downstream decoding and command fan-out (see downstream.h). Writer thread. */
#include "downstream.h"

#include <stdlib.h>
#include <string.h>

#include "chanrec.h"
#include "conn_id.h"
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

static ds_chan_t chan_of(const Wsgw__V1__Send *s)
{
    ds_chan_t h = {"", "", 0, 0, 0};
    if (!s || !s->channel || !*s->channel)
        return h;
    h.chan = s->channel;
    h.chan_len = strlen(s->channel);
    h.epoch = s->epoch ? s->epoch : "";
    h.epoch_len = strlen(h.epoch);
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
                    const Wsgw__V1__Target *t, const void *payload, size_t plen, bool binary,
                    int32_t code, int64_t api_ns, const ds_chan_t *h)
{
    if (!t) {
        res->undeliverable++;
        return;
    }
    size_t nusers = t->n_user_ids < MAX_USERS_PER_CMD ? t->n_user_ids : MAX_USERS_PER_CMD;
    res->undeliverable += t->n_user_ids - nusers;
    size_t ulens[MAX_USERS_PER_CMD];
    for (size_t i = 0; i < nusers; i++)
        ulens[i] = strlen(t->user_ids[i]);
    const char *room = t->room ? t->room : "";
    size_t room_len = strlen(room);
    bool broad = nusers > 0 || room_len > 0 || t->all;

    uint64_t stack_ids[64];
    uint64_t *ids = t->n_conn_ids <= 64 ? stack_ids : malloc(t->n_conn_ids * sizeof *ids);
    if (!ids) {
        res->nomem++;
        return;
    }
    for (size_t i = 0; i < t->n_conn_ids; i++)
        if (!ours(k, t->conn_ids[i]))
            res->undeliverable++;
    for (int th = 0; th < k->nsvc; th++) {
        size_t n = 0;
        for (size_t i = 0; i < t->n_conn_ids; i++)
            if (ours(k, t->conn_ids[i]) && conn_id_thread(t->conn_ids[i]) == (unsigned)th)
                ids[n++] = t->conn_ids[i];
        if (!n && !broad)
            continue;
        gw_cmd_t *c = gw_cmd_new_ch(type, ids, n, room, room_len, t->user_ids, ulens, nusers,
                                    h ? h->chan : NULL, h ? h->chan_len : 0,
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
    if (ids != stack_ids)
        free(ids);
}

/* A Recovered command: one per connection, its publications framed here (wsgw.v1.json
 * envelopes: only clients of that protocol ask). */
static void recovered(const gw_ds_sink_t *k, gw_ds_result_t *res, const Wsgw__V1__Recovered *r)
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

static void membership(const gw_ds_sink_t *k, gw_ds_result_t *res, gw_cmd_type_t type,
                       uint64_t id, const char *room)
{
    if (!ours(k, id) || !room || !*room) {
        res->undeliverable++;
        return;
    }
    gw_cmd_t *c = gw_cmd_new(type, &id, 1, room, strlen(room), NULL, NULL, 0);
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
    Wsgw__V1__Downstream *d = wsgw__v1__downstream__unpack(k->alloc, len, msg);
    if (!d)
        return -1;
    for (size_t i = 0; i < d->n_commands; i++) {
        const Wsgw__V1__Command *c = d->commands[i];
        res->commands++;
        switch (c->kind_case) {
        case WSGW__V1__COMMAND__KIND_SEND: {
            const Wsgw__V1__Send *s = c->send;
            if (s->api_ns && k->api_ns)
                k->api_ns(k->ud, s->api_ns);
            ds_chan_t h = chan_of(s);
            fan_out(k, res, GW_CMD_SEND, s->target, s->payload.data ? s->payload.data : (uint8_t *)"",
                    s->payload.len, s->binary, 0, s->api_ns, &h);
            break;
        }
        case WSGW__V1__COMMAND__KIND_KICK: {
            const Wsgw__V1__Kick *kk = c->kick;
            const char *r = kk->reason ? kk->reason : "";
            fan_out(k, res, GW_CMD_KICK, kk->target, r, strlen(r), false, kk->code, 0, NULL);
            break;
        }
        case WSGW__V1__COMMAND__KIND_JOIN:
            membership(k, res, GW_CMD_JOIN, c->join->conn_id, c->join->room);
            break;
        case WSGW__V1__COMMAND__KIND_LEAVE:
            membership(k, res, GW_CMD_LEAVE, c->leave->conn_id, c->leave->room);
            break;
        case WSGW__V1__COMMAND__KIND_RECOVERED:
            recovered(k, res, c->recovered);
            break;
        default:
            res->undeliverable++;
            break;
        }
    }
    res->has_ack = d->ack != 0;
    res->ack = d->ack;
    if (!k->alloc) /* an arena is reset by the caller: walking the message to free it is waste */
        wsgw__v1__downstream__free_unpacked(d, NULL);
    return 0;
}
