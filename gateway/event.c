/* event.c: allocation of cross-thread events and commands (see event.h). */
#include "event.h"

#include "recycle.h"

#include <stdlib.h>
#include <string.h>

static char *put(char *p, const void *s, size_t n)
{
    if (n)
        memcpy(p, s, n);
    p[n] = 0;
    return p + n + 1;
}

gw_event_t *gw_event_new(gw_ev_type_t type, uint64_t conn_id, const char *user, size_t user_len,
                         const void *a, size_t a_len, const char *b, size_t b_len,
                         const char *c, size_t c_len)
{
    return gw_event_new_d(type, conn_id, user, user_len, a, a_len, b, b_len, c, c_len, 0);
}

gw_event_t *gw_event_new_d(gw_ev_type_t type, uint64_t conn_id, const char *user,
                           size_t user_len, const void *a, size_t a_len, const char *b,
                           size_t b_len, const char *c, size_t c_len, size_t d_len)
{
    uint8_t rc;
    gw_event_t *e = gw_rc_alloc(sizeof *e + user_len + a_len + b_len + c_len + 4 + d_len, &rc);
    if (!e)
        return NULL;
    memset(e, 0, sizeof *e);
    e->rc = rc;
    e->owner = (int16_t)gw_recycle_owner(GW_RC_SVC);
    e->type = (uint8_t)type;
    e->conn_id = conn_id;
    e->user_len = (uint32_t)user_len;
    e->a_len = (uint32_t)a_len;
    e->b_len = (uint32_t)b_len;
    e->c_len = (uint32_t)c_len;
    e->d_len = (uint32_t)d_len;
    char *p = e->data;
    p = put(p, user, user_len);
    p = put(p, a, a_len);
    p = put(p, b, b_len);
    put(p, c, c_len);
    return e;
}

gw_event_t *gw_event_dup(const gw_event_t *e)
{
    size_t n = gw_event_size(e);
    uint8_t rc;
    gw_event_t *d = gw_rc_alloc(n, &rc);
    if (d) {
        memcpy(d, e, n);
        d->rc = rc;
        d->next = NULL;
        d->owner = (int16_t)gw_recycle_owner(GW_RC_SVC);
    }
    return d;
}

gw_payload_t *gw_payload_alloc(size_t len, bool binary, int64_t t_recv)
{
    if (len > UINT32_MAX)
        return NULL;
    uint8_t rc;
    gw_payload_t *p = gw_rc_alloc(sizeof *p + LWS_PRE + len + 1, &rc);
    if (!p)
        return NULL;
    p->rc = rc;
    p->refs = 1;
    p->owner = (int16_t)gw_recycle_owner(GW_RC_WRITER);
    p->len = (uint32_t)len;
    p->binary = binary;
    p->t_recv = t_recv;
    p->buf[LWS_PRE + len] = 0;
    return p;
}

gw_payload_t *gw_payload_new(const void *data, size_t len, bool binary, int64_t t_recv)
{
    gw_payload_t *p = gw_payload_alloc(len, binary, t_recv);
    if (p && len)
        memcpy(p->buf + LWS_PRE, data, len);
    return p;
}

gw_cmd_t *gw_cmd_new(gw_cmd_type_t type, const uint64_t *conns, size_t nconns, const char *room,
                     size_t room_len, const char *const *users, const size_t *ulens, size_t nusers)
{
    return gw_cmd_new_ch(type, conns, nconns, room, room_len, users, ulens, nusers, NULL, 0,
                         NULL, 0, 0);
}

gw_cmd_t *gw_cmd_new_ch(gw_cmd_type_t type, const uint64_t *conns, size_t nconns,
                        const char *room, size_t room_len, const char *const *users,
                        const size_t *ulens, size_t nusers, const char *chan, size_t chan_len,
                        const char *epoch, size_t epoch_len, size_t npubs)
{
    size_t strbytes = room_len + 1;
    for (size_t i = 0; i < nusers; i++)
        strbytes += ulens[i] + 1;
    bool ch = chan_len || epoch_len;
    if (ch)
        strbytes += chan_len + 1 + epoch_len + 1;
    if (chan_len > UINT16_MAX || epoch_len > UINT8_MAX)
        return NULL;
    uint8_t rc;
    gw_cmd_t *c = gw_rc_alloc(sizeof *c + nconns * sizeof(uint64_t) + npubs * sizeof(gw_pub_t) +
                                  strbytes,
                              &rc);
    if (!c)
        return NULL;
    memset(c, 0, sizeof *c);
    c->rc = rc;
    c->owner = (int16_t)gw_recycle_owner(GW_RC_WRITER);
    c->type = (uint8_t)type;
    c->nconns = (uint32_t)nconns;
    c->nusers = (uint32_t)nusers;
    c->room_len = (uint32_t)room_len;
    c->conns = c->inline_data;
    if (nconns)
        memcpy(c->conns, conns, nconns * sizeof(uint64_t));
    c->pubs = (gw_pub_t *)(c->conns + nconns);
    c->npubs = (uint32_t)npubs;
    if (npubs)
        memset(c->pubs, 0, npubs * sizeof *c->pubs);
    c->strs = (char *)(c->pubs + npubs);
    char *p = put(c->strs, room, room_len);
    for (size_t i = 0; i < nusers; i++)
        p = put(p, users[i], ulens[i]);
    if (ch) {
        c->chan = p;
        c->chan_len = (uint16_t)chan_len;
        p = put(p, chan, chan_len);
        c->epoch = p;
        c->epoch_len = (uint8_t)epoch_len;
        put(p, epoch, epoch_len);
    }
    return c;
}

void gw_cmd_free(gw_cmd_t *c)
{
    if (c->payload)
        gw_payload_unref(c->payload);
    if (c->env)
        gw_payload_unref(c->env);
    for (uint32_t i = 0; i < c->npubs; i++)
        if (c->pubs[i].env)
            gw_payload_unref(c->pubs[i].env);
    while (c->events) {
        gw_event_t *e = c->events;
        c->events = e->next;
        gw_event_free(e);
    }
    gw_recycle(c, c->owner, c->rc);
}

void gw_event_free(gw_event_t *e)
{
    gw_recycle(e, e->owner, e->rc);
}

void gw_payload_free(gw_payload_t *p)
{
    gw_recycle(p, p->owner, p->rc);
}
