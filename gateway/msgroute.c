/* msgroute.c: node stickiness, handback and held messages (see msgroute.h).
 * Service thread only. */
#include "msgroute.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "route.h"

static int idx(const gw_svc_t *s, int node, int stream)
{
    return node * s->gw->nstreams + stream;
}

/* Judged on the counts seen at the start of the last wake (svc.h done_seen). */
static bool resolved(gw_svc_t *s, int node, int stream, uint32_t mark)
{
    return (int32_t)(s->done_seen[idx(s, node, stream)] - mark) >= 0;
}

static int preferred(gw_svc_t *s, const char *user, uint64_t conn_id)
{
    if (user && *user)
        return gw_route_node(s->gw, user, strlen(user));
    return gw_route_node(s->gw, &conn_id, sizeof conn_id);
}

/* Pushes e to node u; c may be NULL (connection gone). */
static void push_to(gw_svc_t *s, gw_conn_t *c, int u, gw_event_t *e)
{
    int st = gw_route_stream(e->conn_id, s->gw->nstreams);
    uint32_t n = ++s->sent[idx(s, u, st)];
    if (c) {
        c->node = (uint8_t)u;
        c->mark = n;
    }
    if (!gw_svc_push_event(s, u, e) && c)
        gw_svc_pause(s, c);
}

static gw_held_t *find_held(gw_svc_t *s, uint64_t id)
{
    for (size_t i = 0; i < s->nheld; i++)
        if (s->held[i].conn_id == id)
            return &s->held[i];
    return NULL;
}

static void hold(gw_svc_t *s, gw_conn_t *c, gw_event_t *e, int st)
{
    gw_held_t *h = c->held ? find_held(s, c->id) : NULL;
    if (!h) {
        if (s->nheld == s->cap_held) {
            size_t ncap = s->cap_held ? s->cap_held * 2 : 16;
            gw_held_t *nh = realloc(s->held, ncap * sizeof *nh);
            if (!nh) {
                /* cannot wait: send now (order across the failover may suffer, logged) */
                log_rl_error("out of memory holding messages for failover", "conn_id=%llu",
                             (unsigned long long)c->id);
                push_to(s, c, preferred(s, c->user, c->id), e);
                return;
            }
            s->held = nh;
            s->cap_held = ncap;
        }
        h = &s->held[s->nheld++];
        memset(h, 0, sizeof *h);
        h->conn_id = c->id;
        h->node = c->node;
        h->stream = st;
        h->mark = c->mark;
        c->held = true;
        atomic_store(&s->links[h->node]->want_done, 1);
        /* done_seen may be older than done: look again on the next wake, whether or not
         * a writer publishes more */
        gw_svc_wake(s);
        gw_svc_pause(s, c);
    }
    e->next = NULL;
    if (h->tail)
        h->tail->next = e;
    else
        h->head = e;
    h->tail = e;
}

void gw_msgroute_send(gw_svc_t *s, gw_conn_t *c, gw_event_t *e)
{
    int st = gw_route_stream(c->id, s->gw->nstreams);
    if (c->held) {
        hold(s, c, e, st);
        return;
    }
    int pref = preferred(s, c->user, c->id);
    int cur = c->node;
    if (cur != GW_NODE_NONE && cur != pref && !resolved(s, cur, st, c->mark)) {
        if (gw_node_up(s->gw, cur)) {
            pref = cur; /* its earlier messages are still on their way there: stay */
        } else {
            hold(s, c, e, st); /* failover: wait for the old node's handback */
            return;
        }
    }
    push_to(s, c, pref, e);
}

void gw_msgroute_reroute(gw_svc_t *s, gw_cmd_t *cmd)
{
    while (cmd->events) {
        gw_event_t *e = cmd->events;
        cmd->events = e->next;
        gw_conn_t *c = gw_conn_table_get(&s->conns, e->conn_id);
        push_to(s, c, preferred(s, gw_event_user(e), e->conn_id), e);
    }
}

void gw_msgroute_snapshot(gw_svc_t *s)
{
    for (int u = 0; u < s->gw->nup; u++)
        for (int st = 0; st < s->gw->nstreams; st++)
            s->done_seen[idx(s, u, st)] =
                atomic_load_explicit(&s->links[u]->done[st], memory_order_acquire);
    for (size_t i = 0; i < s->nheld; i++) {
        gw_held_t *h = &s->held[i];
        h->ready = resolved(s, h->node, h->stream, h->mark);
    }
}

/* Sends h's events to the connection's preferred node and drops the entry (index i). */
static void release_at(gw_svc_t *s, size_t i)
{
    gw_held_t h = s->held[i];
    s->held[i] = s->held[--s->nheld];
    gw_conn_t *c = gw_conn_table_get(&s->conns, h.conn_id);
    if (c)
        c->held = false;
    while (h.head) {
        gw_event_t *e = h.head;
        h.head = e->next;
        push_to(s, c, preferred(s, gw_event_user(e), e->conn_id), e);
    }
    if (!s->nheld)
        for (int u = 0; u < s->gw->nup; u++)
            atomic_store(&s->links[u]->want_done, 0);
}

void gw_msgroute_release(gw_svc_t *s)
{
    for (size_t i = 0; i < s->nheld;) {
        if (s->held[i].ready)
            release_at(s, i);
        else
            i++;
    }
}

void gw_msgroute_forget(gw_svc_t *s, gw_conn_t *c)
{
    if (!c->held)
        return;
    for (size_t i = 0; i < s->nheld; i++)
        if (s->held[i].conn_id == c->id) {
            release_at(s, i);
            return;
        }
}

void gw_msgroute_free(gw_svc_t *s)
{
    for (size_t i = 0; i < s->nheld; i++)
        while (s->held[i].head) {
            gw_event_t *e = s->held[i].head;
            s->held[i].head = e->next;
            gw_event_free(e);
        }
    free(s->held);
    s->held = NULL;
    s->nheld = s->cap_held = 0;
}
