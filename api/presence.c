/* presence.c: conn/user/gateway tables fed by Open and Close (see presence.h). */
#include "presence.h"

#include <stdlib.h>
#include <string.h>

void presence_init(presence_t *p)
{
    memset(p, 0, sizeof *p);
}

pres_conn_t *presence_conn(const presence_t *p, uint64_t conn_id)
{
    uint64_t h = hmap_hash_u64(conn_id);
    for (hmap_node_t *n = hmap_first(&p->conns, h); n; n = hmap_next(n, h)) {
        pres_conn_t *c = hmap_entry(n, pres_conn_t, node);
        if (c->conn_id == conn_id)
            return c;
    }
    return NULL;
}

pres_user_t *presence_user(const presence_t *p, const char *user_id)
{
    if (!user_id || !*user_id)
        return NULL;
    uint64_t h = hmap_hash_str(user_id);
    for (hmap_node_t *n = hmap_first(&p->users, h); n; n = hmap_next(n, h)) {
        pres_user_t *u = hmap_entry(n, pres_user_t, node);
        if (strcmp(u->id, user_id) == 0)
            return u;
    }
    return NULL;
}

pres_gateway_t *presence_gateway(const presence_t *p, const char *gateway_id)
{
    uint64_t h = hmap_hash_str(gateway_id);
    for (hmap_node_t *n = hmap_first(&p->gateways, h); n; n = hmap_next(n, h)) {
        pres_gateway_t *g = hmap_entry(n, pres_gateway_t, node);
        if (strcmp(g->id, gateway_id) == 0)
            return g;
    }
    return NULL;
}

api_stream_t *presence_conn_stream(const pres_conn_t *c)
{
    return c->stream ? c->stream : c->gw->streams;
}

const char *presence_conn_label(const pres_conn_t *c)
{
    return c->label ? c->label : c->gw->id;
}

/* ---- users ---------------------------------------------------------------------------------- */

static void user_unlink(presence_t *p, pres_conn_t *c)
{
    pres_user_t *u = c->user;
    if (!u)
        return;
    if (c->u_prev)
        c->u_prev->u_next = c->u_next;
    else
        u->conns = c->u_next;
    if (c->u_next)
        c->u_next->u_prev = c->u_prev;
    c->u_prev = c->u_next = NULL;
    c->user = NULL;
    if (--u->nconns == 0) {
        hmap_remove(&p->users, &u->node);
        free(u->id);
        free(u);
    }
}

static int user_link(presence_t *p, pres_conn_t *c, const char *user_id)
{
    if (!user_id || !*user_id)
        return 0;
    pres_user_t *u = presence_user(p, user_id);
    if (!u) {
        u = calloc(1, sizeof *u);
        if (!u)
            return -1;
        u->id = strdup(user_id);
        if (!u->id || hmap_insert(&p->users, &u->node, hmap_hash_str(user_id)) < 0) {
            free(u->id);
            free(u);
            return -1;
        }
    }
    c->user = u;
    c->u_prev = NULL;
    c->u_next = u->conns;
    if (u->conns)
        u->conns->u_prev = c;
    u->conns = c;
    u->nconns++;
    return 0;
}

/* ---- gateway membership of conns ------------------------------------------------------------ */

static void gw_unlink_conn(pres_conn_t *c)
{
    pres_gateway_t *g = c->gw;
    if (c->g_prev)
        c->g_prev->g_next = c->g_next;
    else
        g->conns = c->g_next;
    if (c->g_next)
        c->g_next->g_prev = c->g_prev;
    c->g_prev = c->g_next = NULL;
    g->nconns--;
    c->gw = NULL;
}

static void gw_link_conn(pres_gateway_t *g, pres_conn_t *c)
{
    c->gw = g;
    c->g_prev = NULL;
    c->g_next = g->conns;
    if (g->conns)
        g->conns->g_prev = c;
    g->conns = c;
    g->nconns++;
}

static void conn_free(presence_t *p, pres_conn_t *c)
{
    hmap_remove(&p->conns, &c->node);
    user_unlink(p, c);
    if (c->gw)
        gw_unlink_conn(c);
    free(c->label);
    free(c);
}

/* ---- streams and gateways ------------------------------------------------------------------- */

pres_gateway_t *presence_attach(presence_t *p, const char *gateway_id, api_stream_t *s)
{
    pres_gateway_t *g = presence_gateway(p, gateway_id);
    if (!g) {
        g = calloc(1, sizeof *g);
        if (!g)
            return NULL;
        g->id = strdup(gateway_id);
        if (!g->id || hmap_insert(&p->gateways, &g->node, hmap_hash_str(gateway_id)) < 0) {
            free(g->id);
            free(g);
            return NULL;
        }
        g->next = p->gw_list;
        if (p->gw_list)
            p->gw_list->prev = g;
        p->gw_list = g;
        p->ngateways++;
    }
    s->gw = g;
    s->gw_prev = NULL;
    s->gw_next = g->streams;
    if (g->streams)
        g->streams->gw_prev = s;
    g->streams = s;
    g->nstreams++;
    return g;
}

static void gateway_free(presence_t *p, pres_gateway_t *g)
{
    hmap_remove(&p->gateways, &g->node);
    if (g->prev)
        g->prev->next = g->next;
    else
        p->gw_list = g->next;
    if (g->next)
        g->next->prev = g->prev;
    p->ngateways--;
    free(g->id);
    free(g);
}

size_t presence_detach(presence_t *p, api_stream_t *s)
{
    pres_gateway_t *g = s->gw;
    if (!g)
        return 0;
    if (s->gw_prev)
        s->gw_prev->gw_next = s->gw_next;
    else
        g->streams = s->gw_next;
    if (s->gw_next)
        s->gw_next->gw_prev = s->gw_prev;
    s->gw_prev = s->gw_next = NULL;
    s->gw = NULL;
    g->nstreams--;

    size_t dropped = 0;
    if (g->nstreams == 0) {
        while (g->conns) {
            conn_free(p, g->conns);
            dropped++;
        }
        gateway_free(p, g);
    } else {
        /* O(conns of this gateway), only when a stream ends while its siblings live on. */
        for (pres_conn_t *c = g->conns; c; c = c->g_next)
            if (c->stream == s)
                c->stream = NULL;
    }
    return dropped;
}

/* ---- open / close --------------------------------------------------------------------------- */

static int set_label(pres_conn_t *c, const char *label)
{
    char *nl = NULL;
    if (label && *label && strcmp(label, c->gw->id) != 0) {
        if (c->label && strcmp(c->label, label) == 0)
            return 0;
        if (!(nl = strdup(label)))
            return -1;
    }
    free(c->label);
    c->label = nl;
    return 0;
}

int presence_open(presence_t *p, uint64_t conn_id, const char *user_id, const char *label,
                  api_stream_t *s)
{
    if (!s->gw)
        return -1;
    pres_conn_t *c = presence_conn(p, conn_id);
    if (c) {
        /* Re-sent Open (reconnect, or another stream): the newest stream and user win. */
        const char *old = c->user ? c->user->id : "";
        const char *nu = user_id ? user_id : "";
        if (strcmp(old, nu) != 0) {
            user_unlink(p, c);
            if (user_link(p, c, nu) < 0)
                return -1; /* conn stays without user index; reported to the caller */
        }
        if (c->gw != s->gw) {
            gw_unlink_conn(c);
            gw_link_conn(s->gw, c);
        }
        c->stream = s;
        return set_label(c, label);
    }
    c = calloc(1, sizeof *c);
    if (!c)
        return -1;
    c->conn_id = conn_id;
    if (hmap_insert(&p->conns, &c->node, hmap_hash_u64(conn_id)) < 0) {
        free(c);
        return -1;
    }
    gw_link_conn(s->gw, c);
    c->stream = s;
    if (user_link(p, c, user_id) < 0 || set_label(c, label) < 0) {
        conn_free(p, c);
        return -1;
    }
    return 0;
}

bool presence_close(presence_t *p, uint64_t conn_id)
{
    pres_conn_t *c = presence_conn(p, conn_id);
    if (!c)
        return false;
    conn_free(p, c);
    return true;
}

void presence_free(presence_t *p)
{
    while (p->gw_list) {
        pres_gateway_t *g = p->gw_list;
        while (g->conns)
            conn_free(p, g->conns);
        while (g->streams) {
            api_stream_t *s = g->streams;
            g->streams = s->gw_next;
            s->gw = NULL;
            s->gw_prev = s->gw_next = NULL;
        }
        gateway_free(p, g);
    }
    hmap_free(&p->conns);
    hmap_free(&p->users);
    hmap_free(&p->gateways);
}
