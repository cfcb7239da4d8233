/* downstream.c: Downstream decoding and command fan-out (see downstream.h). Writer thread. */
#include "downstream.h"

#include <stdlib.h>
#include <string.h>

#include "conn_id.h"
#include "wsgw.pb-c.h"

#define MAX_USERS_PER_CMD 4096

static bool ours(const gw_ds_sink_t *k, uint64_t id)
{
    return id && conn_id_prefix(id) == k->prefix && conn_id_thread(id) < (unsigned)k->nsvc;
}

/* Emits one command per thread that may hold a target of `t`. */
static void fan_out(const gw_ds_sink_t *k, gw_ds_result_t *res, gw_cmd_type_t type,
                    const Wsgw__V1__Target *t, const void *payload, size_t plen, bool binary,
                    int32_t code, int64_t api_ns)
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
        gw_cmd_t *c = gw_cmd_new(type, ids, n, room, room_len, t->user_ids, ulens, nusers);
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
            fan_out(k, res, GW_CMD_SEND, s->target, s->payload.data ? s->payload.data : (uint8_t *)"",
                    s->payload.len, s->binary, 0, s->api_ns);
            break;
        }
        case WSGW__V1__COMMAND__KIND_KICK: {
            const Wsgw__V1__Kick *kk = c->kick;
            const char *r = kk->reason ? kk->reason : "";
            fan_out(k, res, GW_CMD_KICK, kk->target, r, strlen(r), false, kk->code, 0);
            break;
        }
        case WSGW__V1__COMMAND__KIND_JOIN:
            membership(k, res, GW_CMD_JOIN, c->join->conn_id, c->join->room);
            break;
        case WSGW__V1__COMMAND__KIND_LEAVE:
            membership(k, res, GW_CMD_LEAVE, c->leave->conn_id, c->leave->room);
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
