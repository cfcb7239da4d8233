/* presence.c: conn/user/gateway/session tables fed by Open and Close (see presence.h).
 * Loop thread only. */
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
    if (c->stream)
        return c->stream;
    /* O(streams of the gateway), only while the Open's stream is gone. */
    for (api_stream_t *s = c->gw->streams; s; s = s->gw_next)
        if (s->sess == c->sess)
            return s;
    return c->gw->streams;
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

/* ---- gateways ------------------------------------------------------------------------------- */

static void gateway_free(presence_t *p, pres_gateway_t *g)
{
    hmap_remove(&p->gateways, &g->node);
    if (g->prev)
        g->prev->next = g->next;
    else
        p->gw_list = g->next;
    if (g->next)
        g->next->prev = g->prev;
    free(g->id);
    free(g);
}

/* A gateway lives while it has entries or live streams. */
static void gateway_put(presence_t *p, pres_gateway_t *g)
{
    if (g->nconns == 0 && g->nstreams == 0)
        gateway_free(p, g);
}

static pres_gateway_t *gateway_get(presence_t *p, const char *gateway_id)
{
    pres_gateway_t *g = presence_gateway(p, gateway_id);
    if (g)
        return g;
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
    return g;
}

/* ---- session membership of conns ------------------------------------------------------------ */

static void sess_unlink_conn(pres_conn_t *c)
{
    pres_session_t *s = c->sess;
    if (c->s_prev)
        c->s_prev->s_next = c->s_next;
    else
        s->conns = c->s_next;
    if (c->s_next)
        c->s_next->s_prev = c->s_prev;
    c->s_prev = c->s_next = NULL;
    s->nconns--;
    c->sess = NULL;
}

static void sess_link_conn(pres_session_t *s, pres_conn_t *c)
{
    c->sess = s;
    c->s_prev = NULL;
    c->s_next = s->conns;
    if (s->conns)
        s->conns->s_prev = c;
    s->conns = c;
    s->nconns++;
}

/* Frees c; its gateway goes too when c was all that kept it. */
static void conn_free(presence_t *p, pres_conn_t *c)
{
    hmap_remove(&p->conns, &c->node);
    user_unlink(p, c);
    if (c->sess)
        sess_unlink_conn(c);
    pres_gateway_t *g = c->gw;
    g->nconns--;
    gateway_put(p, g);
    free(c->label);
    free(c);
}

/* ---- sessions ------------------------------------------------------------------------------- */

void presence_session_start(presence_t *p, pres_session_t *sess, uint64_t serial,
                            uint32_t expect, uint64_t now_ms)
{
    if (sess->live)
        return;
    memset(sess, 0, sizeof *sess);
    sess->serial = serial;
    sess->live = true;
    sess->expect = expect;
    sess->synced = expect == 0;
    sess->started_ms = now_ms;
    if (!sess->synced)
        p->unsynced++;
    sess->next = p->sessions;
    if (p->sessions)
        p->sessions->prev = sess;
    p->sessions = sess;
    p->nsessions++;
}

static void session_set_synced(presence_t *p, pres_session_t *sess)
{
    if (sess->synced)
        return;
    sess->synced = true;
    p->unsynced--;
}

size_t presence_session_end(presence_t *p, pres_session_t *sess)
{
    if (!sess->live)
        return 0;
    size_t dropped = 0;
    while (sess->conns) {
        conn_free(p, sess->conns);
        dropped++;
    }
    session_set_synced(p, sess);
    if (sess->prev)
        sess->prev->next = sess->next;
    else
        p->sessions = sess->next;
    if (sess->next)
        sess->next->prev = sess->prev;
    sess->prev = sess->next = NULL;
    sess->live = false;
    p->nsessions--;
    return dropped;
}

bool presence_complete(presence_t *p, api_stream_t *s)
{
    pres_session_t *sess = s->sess;
    if (!sess || !sess->live || s->complete)
        return false;
    s->complete = true;
    sess->ncomplete++;
    if (sess->synced || sess->ncomplete < sess->expect)
        return false;
    session_set_synced(p, sess);
    return true;
}

size_t presence_sync_expire(presence_t *p, uint64_t now_ms, uint64_t timeout_ms)
{
    size_t n = 0;
    for (pres_session_t *s = p->sessions; s && p->unsynced; s = s->next) {
        if (!s->synced && now_ms >= s->started_ms + timeout_ms) {
            session_set_synced(p, s);
            n++;
        }
    }
    return n;
}

/* ---- streams -------------------------------------------------------------------------------- */

pres_gateway_t *presence_attach(presence_t *p, const char *gateway_id, pres_session_t *sess,
                                api_stream_t *s)
{
    if (!sess || !sess->live)
        return NULL;
    pres_gateway_t *g = gateway_get(p, gateway_id);
    if (!g)
        return NULL;
    s->gw = g;
    s->sess = sess;
    s->complete = false;
    s->gw_prev = NULL;
    s->gw_next = g->streams;
    if (g->streams)
        g->streams->gw_prev = s;
    g->streams = s;
    if (g->nstreams++ == 0)
        p->ngateways++;
    p->nstreams++;
    return g;
}

void presence_detach(presence_t *p, api_stream_t *s)
{
    pres_gateway_t *g = s->gw;
    if (!g)
        return;
    if (s->gw_prev)
        s->gw_prev->gw_next = s->gw_next;
    else
        g->streams = s->gw_next;
    if (s->gw_next)
        s->gw_next->gw_prev = s->gw_prev;
    s->gw_prev = s->gw_next = NULL;
    s->gw = NULL;
    p->nstreams--;
    if (--g->nstreams == 0)
        p->ngateways--;
    /* O(entries of its session), once per stream end. Its entries are all tagged with s's
     * session (an entry's stream is where its latest Open, hence its tag, came from). */
    if (s->sess)
        for (pres_conn_t *c = s->sess->conns; c; c = c->s_next)
            if (c->stream == s)
                c->stream = NULL;
    gateway_put(p, g);
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

/* Re-sent Open (a new session, or another stream of this one): the newest session, stream,
 * gateway and user win. */
static pres_result_t conn_update(presence_t *p, pres_conn_t *c, const char *user_id,
                                 const char *label, api_stream_t *s)
{
    if (c->sess != s->sess) {
        sess_unlink_conn(c);
        sess_link_conn(s->sess, c);
    }
    c->stream = s;
    if (c->gw != s->gw) {
        pres_gateway_t *old = c->gw;
        c->gw = s->gw;
        c->gw->nconns++;
        old->nconns--;
        gateway_put(p, old);
    }
    const char *had = c->user ? c->user->id : "";
    const char *nu = user_id ? user_id : "";
    if (strcmp(had, nu) != 0) {
        user_unlink(p, c);
        if (user_link(p, c, nu) < 0)
            return PRES_ERR; /* conn stays without user index; reported to the caller */
    }
    return set_label(c, label) < 0 ? PRES_ERR : PRES_OK;
}

pres_result_t presence_open(presence_t *p, uint64_t conn_id, const char *user_id,
                            const char *label, api_stream_t *s)
{
    if (!s->gw || !s->sess)
        return PRES_ERR;
    pres_conn_t *c = presence_conn(p, conn_id);
    if (c) {
        if (c->sess->serial > s->sess->serial)
            return PRES_STALE;
        return conn_update(p, c, user_id, label, s);
    }
    c = calloc(1, sizeof *c);
    if (!c)
        return PRES_ERR;
    c->conn_id = conn_id;
    if (hmap_insert(&p->conns, &c->node, hmap_hash_u64(conn_id)) < 0) {
        free(c);
        return PRES_ERR;
    }
    c->gw = s->gw;
    c->gw->nconns++;
    sess_link_conn(s->sess, c);
    c->stream = s;
    if (user_link(p, c, user_id) < 0 || set_label(c, label) < 0) {
        conn_free(p, c);
        return PRES_ERR;
    }
    return PRES_OK;
}

pres_result_t presence_close(presence_t *p, uint64_t conn_id, const api_stream_t *s)
{
    pres_conn_t *c = presence_conn(p, conn_id);
    if (!c)
        return PRES_UNKNOWN;
    if (s->sess && c->sess->serial > s->sess->serial)
        return PRES_STALE;
    conn_free(p, c);
    return PRES_OK;
}

void presence_free(presence_t *p)
{
    while (p->sessions)
        presence_session_end(p, p->sessions);
    while (p->gw_list) {
        pres_gateway_t *g = p->gw_list;
        while (g->streams) {
            api_stream_t *s = g->streams;
            g->streams = s->gw_next;
            s->gw = NULL;
            s->gw_prev = s->gw_next = NULL;
        }
        g->nstreams = 0;
        gateway_free(p, g);
    }
    hmap_free(&p->conns);
    hmap_free(&p->users);
    hmap_free(&p->gateways);
    memset(p, 0, sizeof *p);
}
