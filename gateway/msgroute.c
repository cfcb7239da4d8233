/* msgroute.c: node stickiness, handback and held messages (see msgroute.h).
 * Service thread only. */
#include "msgroute.h"

#include <stdlib.h>
#include <string.h>

#include "conn_id.h"
#include "log.h"
#include "route.h"

int gw_mr_init(gw_mr_t *m, const gw_t *g, const gw_mr_ops_t *ops, void *ud)
{
    memset(m, 0, sizeof *m);
    m->gw = g;
    m->ops = *ops;
    m->ud = ud;
    m->sent = calloc((size_t)(g->nup * g->nstreams), sizeof *m->sent);
    m->done_seen = calloc((size_t)(g->nup * g->nstreams), sizeof *m->done_seen);
    if (!m->sent || !m->done_seen) {
        gw_mr_free(m);
        return -1;
    }
    return 0;
}

static int idx(const gw_mr_t *m, int node, int stream)
{
    return node * m->gw->nstreams + stream;
}

/* Judged on the counts seen by the last snapshot. */
static bool resolved(const gw_mr_t *m, int node, int stream, uint32_t mark)
{
    return (int32_t)(m->done_seen[idx(m, node, stream)] - mark) >= 0;
}

static int preferred(const gw_mr_t *m, const char *user, uint64_t conn_id)
{
    if (user && *user)
        return gw_route_node(m->gw, user, strlen(user));
    return gw_route_node(m->gw, &conn_id, sizeof conn_id);
}

static gw_tomb_t *find_tomb(gw_mr_t *m, uint64_t id)
{
    for (size_t i = 0; i < m->ntombs; i++)
        if (m->tombs[i].conn_id == id)
            return &m->tombs[i];
    return NULL;
}

/* A gone connection's message went to (u, st) with mark n. */
static void tomb_set(gw_mr_t *m, uint64_t id, int u, int st, uint32_t n)
{
    gw_tomb_t *t = find_tomb(m, id);
    if (!t) {
        if (m->ntombs == m->cap_tombs) {
            size_t ncap = m->cap_tombs ? m->cap_tombs * 2 : 16;
            gw_tomb_t *nt = realloc(m->tombs, ncap * sizeof *nt);
            if (!nt) { /* (its handback, if any, then goes out at once: order may suffer) */
                log_rl_error("out of memory tracking a closed connection", "conn_id=%llu",
                             (unsigned long long)id);
                return;
            }
            m->tombs = nt;
            m->cap_tombs = ncap;
        }
        t = &m->tombs[m->ntombs++];
        t->conn_id = id;
    }
    t->node = u;
    t->stream = st;
    t->mark = n;
}

/* Pushes e to node u; c may be NULL (connection gone: a tombstone remembers where). */
static void push_to(gw_mr_t *m, gw_conn_t *c, int u, gw_event_t *e)
{
    int st = gw_route_stream(e->conn_id, m->gw->nstreams);
    uint32_t n = ++m->sent[idx(m, u, st)];
    if (c) {
        c->node = (uint8_t)u;
        c->mark = n;
    } else {
        tomb_set(m, e->conn_id, u, st, n);
    }
    if (!m->ops.push(m->ud, u, e) && c)
        m->ops.pause(m->ud, c);
}

static gw_held_t *find_held(gw_mr_t *m, uint64_t id)
{
    for (size_t i = 0; i < m->nheld; i++)
        if (m->held[i].conn_id == id)
            return &m->held[i];
    return NULL;
}

static void append(gw_event_t **head, gw_event_t **tail, gw_event_t *e)
{
    e->next = NULL;
    if (*tail)
        (*tail)->next = e;
    else
        *head = e;
    *tail = e;
}

/* A held entry for connection id, waiting until (node, st) resolved mark. NULL when out of
 * memory. c (may be NULL: gone) is paused. */
static gw_held_t *new_held(gw_mr_t *m, gw_conn_t *c, uint64_t id, int node, int st,
                           uint32_t mark)
{
    if (m->nheld == m->cap_held) {
        size_t ncap = m->cap_held ? m->cap_held * 2 : 16;
        gw_held_t *nh = realloc(m->held, ncap * sizeof *nh);
        if (!nh) {
            log_rl_error("out of memory holding messages for failover", "conn_id=%llu",
                         (unsigned long long)id);
            return NULL;
        }
        m->held = nh;
        m->cap_held = ncap;
    }
    gw_held_t *h = &m->held[m->nheld++];
    memset(h, 0, sizeof *h);
    h->conn_id = id;
    h->node = node;
    h->stream = st;
    h->mark = mark;
    m->ops.want_done(m->ud, node, true);
    /* done_seen may be older than done: look again on the next wake, whether or not a
     * writer publishes more */
    m->ops.wake_self(m->ud);
    if (c) {
        c->held = true;
        m->ops.pause(m->ud, c);
    }
    return h;
}

static void hold(gw_mr_t *m, gw_conn_t *c, gw_event_t *e, int st)
{
    gw_held_t *h = c->held ? find_held(m, c->id) : NULL;
    if (!h && !(h = new_held(m, c, c->id, c->node, st, c->mark))) {
        push_to(m, c, preferred(m, c->user, c->id), e); /* cannot wait: order may suffer */
        return;
    }
    append(&h->head, &h->tail, e);
}

void gw_msgroute_send(gw_mr_t *m, gw_conn_t *c, gw_event_t *e)
{
    int st = gw_route_stream(c->id, m->gw->nstreams);
    if (c->held) {
        hold(m, c, e, st);
        return;
    }
    int pref = preferred(m, c->user, c->id);
    int cur = c->node;
    if (cur != GW_NODE_NONE && cur != pref && !resolved(m, cur, st, c->mark)) {
        if (gw_node_up(m->gw, cur)) {
            pref = cur; /* its earlier messages are still on their way there: stay */
        } else {
            hold(m, c, e, st); /* failover: wait for the old node's handback */
            return;
        }
    }
    push_to(m, c, pref, e);
}

/* Handed-back messages never go out at once: they wait in their connection's held entry until
 * every message of it that went to u is resolved (the newer ones may still be at u, and u hands
 * them back too until it has our marker), then leave oldest first on a later wake, after the
 * marker: so u cannot bounce them back, and nothing of the connection overtakes them. */
void gw_msgroute_reroute(gw_mr_t *m, int u, gw_cmd_t *cmd)
{
    while (cmd->events) {
        gw_event_t *e = cmd->events;
        cmd->events = e->next;
        gw_held_t *h = find_held(m, e->conn_id);
        if (!h) {
            gw_conn_t *c = m->ops.conn(m->ud, e->conn_id);
            int st = gw_route_stream(e->conn_id, m->gw->nstreams);
            gw_tomb_t *t = c ? NULL : find_tomb(m, e->conn_id);
            /* gone, and nothing of it known elsewhere: ready at once */
            uint32_t mark = c ? c->mark : t && t->node == u ? t->mark
                                                          : m->done_seen[idx(m, u, st)];
            h = new_held(m, c, e->conn_id, u, st, mark);
        }
        if (h) {
            append(&h->back, &h->back_tail, e);
        } else { /* (out of memory: cannot wait) */
            gw_conn_t *c = m->ops.conn(m->ud, e->conn_id);
            push_to(m, c, preferred(m, gw_event_user(e), e->conn_id), e);
        }
    }
}

gw_event_t *gw_msgroute_marker(unsigned k, int32_t n)
{
    gw_event_t *e = gw_event_new(GW_EV_REROUTED, conn_id_make(0, k, 0, 0), NULL, 0, NULL, 0,
                                 NULL, 0, NULL, 0);
    if (e)
        e->code = n;
    return e;
}

void gw_msgroute_snapshot(gw_mr_t *m)
{
    for (int u = 0; u < m->gw->nup; u++)
        for (int st = 0; st < m->gw->nstreams; st++)
            m->done_seen[idx(m, u, st)] = m->ops.done(m->ud, u, st);
    for (size_t i = 0; i < m->nheld; i++) {
        gw_held_t *h = &m->held[i];
        h->ready = resolved(m, h->node, h->stream, h->mark);
    }
    for (size_t i = 0; i < m->ntombs;) { /* gone for good once all of it is resolved */
        gw_tomb_t *t = &m->tombs[i];
        if (resolved(m, t->node, t->stream, t->mark) && !find_held(m, t->conn_id))
            *t = m->tombs[--m->ntombs];
        else
            i++;
    }
}

/* Sends h's events to the connection's preferred node and drops the entry (index i). */
static void release_at(gw_mr_t *m, size_t i)
{
    gw_held_t h = m->held[i];
    m->held[i] = m->held[--m->nheld];
    gw_conn_t *c = m->ops.conn(m->ud, h.conn_id);
    if (c)
        c->held = false;
    while (h.back) { /* handed back: older than anything the client sent meanwhile */
        gw_event_t *e = h.back;
        h.back = e->next;
        push_to(m, c, preferred(m, gw_event_user(e), e->conn_id), e);
    }
    while (h.head) {
        gw_event_t *e = h.head;
        h.head = e->next;
        push_to(m, c, preferred(m, gw_event_user(e), e->conn_id), e);
    }
    if (h.close && h.close->routed) /* shared presence: to one node, like a message */
        push_to(m, NULL, preferred(m, gw_event_user(h.close), h.close->conn_id), h.close);
    else if (h.close)
        m->ops.to_all(m->ud, h.close);
    if (!m->nheld)
        for (int u = 0; u < m->gw->nup; u++)
            m->ops.want_done(m->ud, u, false);
}

void gw_msgroute_release(gw_mr_t *m)
{
    for (size_t i = 0; i < m->nheld;) {
        if (m->held[i].ready)
            release_at(m, i);
        else
            i++;
    }
}

void gw_msgroute_close(gw_mr_t *m, gw_conn_t *c, gw_event_t *close)
{
    gw_held_t *h = c->held ? find_held(m, c->id) : NULL;
    int st = gw_route_stream(c->id, m->gw->nstreams);
    if (!h && c->node != GW_NODE_NONE && !resolved(m, c->node, st, c->mark))
        h = new_held(m, NULL, c->id, c->node, st, c->mark); /* its messages are on their way */
    c->held = false;
    if (!h && close->routed) { /* shared presence: to one node, like a message */
        push_to(m, NULL, preferred(m, c->user, c->id), close);
        return;
    }
    if (!h) {
        m->ops.to_all(m->ud, close);
        return;
    }
    h->close = close; /* the entry outlives c: release_at finds no connection, and that is fine */
}

void gw_mr_free(gw_mr_t *m)
{
    for (size_t i = 0; i < m->nheld; i++) {
        while (m->held[i].back) {
            gw_event_t *e = m->held[i].back;
            m->held[i].back = e->next;
            gw_event_free(e);
        }
        while (m->held[i].head) {
            gw_event_t *e = m->held[i].head;
            m->held[i].head = e->next;
            gw_event_free(e);
        }
        if (m->held[i].close)
            gw_event_free(m->held[i].close);
    }
    free(m->held);
    free(m->tombs);
    m->tombs = NULL;
    m->ntombs = m->cap_tombs = 0;
    free(m->sent);
    free(m->done_seen);
    m->held = NULL;
    m->sent = m->done_seen = NULL;
    m->nheld = m->cap_held = 0;
}
