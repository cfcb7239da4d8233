/* sim_gw.c: the simulator's gateway side (sim_priv.h): service threads with their message
 * routing, the clients, and the writer: the delivery machine's dlv_io_t and the loop turn. */
#include "sim_priv.h"

/* ---- service threads ----------------------------------------------------------------------- */

gw_link_t *link_of(sim_t *s, int k, int u) { return s->links[k * s->nup + u]; }

void wake_svc(void *ud) { ((ssvc_t *)ud)->woken = true; }
void wake_writer(void *ud) { ((swr_t *)ud)->woken = true; }

static bool mr_push(void *ud, int u, gw_event_t *e)
{
    ssvc_t *v = ud;
    gw_link_t *l = link_of(v->sim, v->k, u);
    bool was = gw_handoff_overflowing(&l->up);
    bool in = gw_handoff_push(&l->up, e);
    if (v->sim->o.verbose && e->conn_id == v->sim->trace_conn)
        note(v->sim, "push to %d: type %d seq %llu -> %s (overflow before: %d)", u, e->type,
             (unsigned long long)e->seq, in ? "ring" : "overflow", was);
    gw_link_wake_writer(l);
    return in;
}
static void mr_pause(void *ud, gw_conn_t *c)
{
    (void)ud;
    ((sconn_t *)c)->paused = true;
}
static void mr_wake(void *ud) { ((ssvc_t *)ud)->woken = true; }
static void mr_want_done(void *ud, int u, bool on)
{
    ssvc_t *v = ud;
    atomic_store(&link_of(v->sim, v->k, u)->want_done, on);
}
static uint32_t mr_done(void *ud, int u, int st)
{
    ssvc_t *v = ud;
    return atomic_load(&link_of(v->sim, v->k, u)->done[st]);
}
static gw_conn_t *mr_conn(void *ud, uint64_t id)
{
    return gw_conn_table_get(&((ssvc_t *)ud)->table, id);
}
/* Open and Close go to every node (svc.c gw_svc_push_all). */
static bool to_all(sim_t *s, int k, gw_event_t *e)
{
    bool fit = true;
    for (int u = 0; u < s->nup; u++) {
        gw_event_t *x = u == s->nup - 1 ? e : gw_event_dup(e);
        if (!mr_push(&s->svc[k], u, x))
            fit = false;
    }
    return fit;
}
static void mr_to_all(void *ud, gw_event_t *e)
{
    ssvc_t *v = ud;
    to_all(v->sim, v->k, e);
}
const gw_mr_ops_t mr_ops = {mr_push,      mr_pause, mr_wake,  mr_want_done,
                                   mr_done,      mr_conn,  mr_to_all};

static gw_event_t *open_event(sconn_t *c, uint32_t gen)
{
    const char *u = c->c.user ? c->c.user : "";
    gw_event_t *e = gw_event_new(GW_EV_OPEN, c->c.id, u, strlen(u), "127.0.0.1:1", 11, "", 0,
                                 "/gateway/ws", 11);
    e->code = (int32_t)gen;
    return e;
}

static void conn_close(sim_t *s, sconn_t *c, int code)
{
    if (!c->live)
        return;
    ssvc_t *v = &s->svc[c->k];
    const char *u = c->c.user ? c->c.user : "";
    gw_event_t *e = gw_event_new(GW_EV_CLOSE, c->c.id, u, strlen(u), "", 0, NULL, 0, NULL, 0);
    e->code = code;
    e->routed = s->o.shared != 0; /* shared presence: to one node, after its messages */
    gw_msgroute_close(&v->mr, &c->c, e);
    gw_conn_table_remove(&v->table, &c->c);
    c->live = false;
}

static void run_cmd(sim_t *s, ssvc_t *v, int u, gw_cmd_t *cmd)
{
    switch (cmd->type) {
    case GW_CMD_REROUTE:
        if (s->o.verbose)
            note(s, "thread %d takes reroute %d from node %d", v->k, cmd->code, u);
        gw_msgroute_reroute(&v->mr, u, cmd);
        mr_push(v, u, gw_msgroute_marker((unsigned)v->k, cmd->code));
        break;
    case GW_CMD_RESYNC:
        v->rs_gen[u] = (uint32_t)cmd->code;
        v->rs_cursor[u] = 0;
        break;
    case GW_CMD_KICK:
        for (uint32_t i = 0; i < cmd->nconns; i++) {
            gw_conn_t *gc = gw_conn_table_get(&v->table, cmd->conns[i]);
            if (gc) {
                ((sconn_t *)gc)->kicked = true;
                note(s, "kick conn %llx code %d", (unsigned long long)gc->id, cmd->code);
                conn_close(s, (sconn_t *)gc, cmd->code);
            } else {
                sconn_t *c = conn_by_id(s, cmd->conns[i]);
                if (c) /* closed already: the client learnt nothing, but nothing is pending */
                    c->kicked = true;
            }
        }
        break;
    default:
        break;
    }
}

/* svc.c resync_run */
static void resync_run(sim_t *s, ssvc_t *v, int u)
{
    gw_link_t *l = link_of(s, v->k, u);
    gw_conn_table_t *t = &v->table;
    for (uint32_t i = v->rs_cursor[u]; i < t->used; i++) {
        gw_conn_t *c = t->slots[i];
        if (!c) {
            v->rs_cursor[u] = i + 1;
            continue;
        }
        gw_event_t *e = open_event((sconn_t *)c, v->rs_gen[u]);
        if (!gw_handoff_try_ring(&l->up, e)) {
            gw_event_free(e);
            gw_link_wake_writer(l);
            return;
        }
        v->rs_cursor[u] = i + 1;
    }
    gw_event_t *done = gw_event_new(GW_EV_RESYNC_DONE, 0, NULL, 0, NULL, 0, NULL, 0, NULL, 0);
    done->code = (int32_t)v->rs_gen[u];
    if (!gw_handoff_try_ring(&l->up, done)) {
        gw_event_free(done);
        gw_link_wake_writer(l);
        return;
    }
    v->rs_gen[u] = 0;
    gw_link_wake_writer(l);
}

/* svc.c gw_svc_on_wake */
void svc_run(sim_t *s, ssvc_t *v)
{
    v->woken = false;
    gw_msgroute_snapshot(&v->mr);
    for (int u = 0; u < s->nup; u++) {
        void *cmds[16];
        size_t n;
        while ((n = gw_handoff_pop(&link_of(s, v->k, u)->down, cmds, 16)) > 0)
            for (size_t i = 0; i < n; i++) {
                run_cmd(s, v, u, cmds[i]);
                gw_cmd_free(cmds[i]);
            }
    }
    if (v->mr.nheld)
        gw_msgroute_release(&v->mr);
    for (int u = 0; u < s->nup; u++)
        if (v->rs_gen[u])
            resync_run(s, v, u);
    bool clear = true;
    for (int u = 0; u < s->nup; u++) {
        gw_link_t *l = link_of(s, v->k, u);
        if (!gw_handoff_overflowing(&l->up))
            continue;
        if (!gw_handoff_flush(&l->up))
            clear = false;
        gw_link_wake_writer(l);
    }
    if (clear)
        for (uint32_t i = 0; i < v->table.used; i++) {
            sconn_t *c = (sconn_t *)v->table.slots[i];
            if (c && c->paused && !c->c.held)
                c->paused = false;
        }
}

/* ---- clients ------------------------------------------------------------------------------- */

static void client_open(sim_t *s, int k)
{
    if (s->nconns == MAXCONNS)
        return;
    sconn_t *c = calloc(1, sizeof *c);
    c->k = k;
    c->c.node = GW_NODE_NONE;
    if (pm(s, 800)) {
        char u[8];
        snprintf(u, sizeof u, "u%u", below(s, 6));
        c->c.user = strdup(u);
    }
    if (gw_conn_table_add(&s->svc[k].table, &c->c) < 0) {
        free(c->c.user);
        free(c);
        return;
    }
    c->live = true;
    c->refuse_close = s->o.shared && s->faults && pm(s, 20);
    s->conns[s->nconns++] = c;
    s->r->conns++;
    if (s->o.shared) { /* to one node, ahead of its messages (ws.c) */
        gw_event_t *e = open_event(c, 0);
        e->routed = 1;
        gw_msgroute_send(&s->svc[k].mr, &c->c, e);
    } else if (!to_all(s, k, open_event(c, 0))) {
        c->paused = true;
    }
}

static sconn_t *pick_live(sim_t *s, int k, bool sendable)
{
    gw_conn_table_t *t = &s->svc[k].table;
    if (!t->live)
        return NULL;
    uint32_t start = below(s, t->used);
    for (uint32_t i = 0; i < t->used; i++) {
        sconn_t *c = (sconn_t *)t->slots[(start + i) % t->used];
        if (c && (!sendable || !c->paused))
            return c;
    }
    return NULL;
}

static void client_send(sim_t *s, int k)
{
    sconn_t *c = pick_live(s, k, true);
    if (!c)
        return;
    bool poison = s->faults && pm(s, 15);
    char p[32];
    int n = snprintf(p, sizeof p, "%s%llu", poison ? "POISON" : "m", (unsigned long long)c->sent + 1);
    const char *u = c->c.user ? c->c.user : "";
    gw_event_t *e = gw_event_new(GW_EV_MESSAGE, c->c.id, u, strlen(u), p, (size_t)n, NULL, 0,
                                 NULL, 0);
    e->seq = ++c->sent;
    e->gateway_ns = s->now;
    e->t_read = s->now;
    conn_grow(c, c->sent);
    s->r->messages++;
    s->r->poisons += poison;
    int st = gw_route_stream(c->c.id, s->nstreams);
    int before = c->c.node;
    uint32_t mark = c->c.mark;
    gw_msgroute_send(&s->svc[k].mr, &c->c, e);
    if (s->o.verbose && c->c.id == s->trace_conn)
        note(s, "send seq %llu: node %d mark %u done_seen %u -> node %d mark %u%s",
             (unsigned long long)c->sent, before, mark,
             before < MAXN ? s->svc[k].mr.done_seen[before * s->nstreams + st] : 0,
             c->c.node, c->c.mark, c->c.held ? " held" : "");
}

void client_act(sim_t *s)
{
    int k = (int)below(s, (uint32_t)s->nsvc);
    uint32_t x = below(s, 100);
    if (x < 8 || !s->svc[k].table.live)
        client_open(s, k);
    else if (x < 12) {
        sconn_t *c = pick_live(s, k, false);
        if (c)
            conn_close(s, c, 1000);
    } else
        client_send(s, k);
}


/* ---- the writer: dlv_io_t and the loop turn (upstream.c up_main) ---------------------------- */

bool io_open_stream(void *ud, int st)
{
    swr_t *w = ud;
    if (w->sim->faults && pm(w->sim, 10)) {
        note(w->sim, "writer %d: stream %d submit fails", w->u, st);
        return false;
    } /* nghttp2 refused the submit (e.g. out of stream ids) */
    w->inst[st]++;
    w->sopen[st] = true;
    w->woken = true; /* nghttp2 wants to write the request (and its body) */
    cq_push(&w->out, (chunk_t){.kind = CH_OPEN, .st = st, .inst = w->inst[st]});
    return true;
}
void io_resume(void *ud, int st)
{
    (void)st;
    ((swr_t *)ud)->woken = true;
}
void io_ping(void *ud)
{
    swr_t *w = ud;
    cq_push(&w->out, (chunk_t){.kind = CH_PING});
    w->woken = true;
}
void io_set_usable(void *ud, bool on)
{
    swr_t *w = ud;
    atomic_store(&w->sim->nodes[w->u].connected, on);
}
void io_emit(void *ud, int k, gw_cmd_t *cmd)
{
    swr_t *w = ud;
    if (w->sim->o.verbose && cmd->type == GW_CMD_REROUTE)
        for (gw_event_t *e = cmd->events; e; e = e->next)
            if (e->conn_id == w->sim->trace_conn)
                note(w->sim, "writer %d hands back seq %llu in reroute %d (state %d)", w->u,
                     (unsigned long long)e->seq, cmd->code, dlv_state(w->d));
    if (!gw_handoff_push(&link_of(w->sim, k, w->u)->down, cmd))
        w->cmd_ovf = true;
    w->touched[k] = true;
}
/* A routed Close was lost: the sessions opened from now on present the renewed instance
 * (node_accept binds with it). */
void io_renew(void *ud)
{
    swr_t *w = ud;
    if (w->renewed_at && w->sim->now - w->renewed_at < RENEW_INTERVAL)
        violate(w->sim, "writer %d renewed its instance twice within %lld ms", w->u,
                (long long)((w->sim->now - w->renewed_at) / MS));
    w->renewed_at = w->sim->now;
    uint32_t gen = atomic_fetch_add(&w->sim->g.instance_gen, 1) + 1;
    note(w->sim, "writer %d lost a Close: instance renewed (%u)", w->u, gen);
}
bool io_others(void *ud)
{
    swr_t *w = ud;
    for (int u = 0; u < w->sim->nup; u++)
        if (u != w->u && atomic_load(&w->sim->nodes[u].connected))
            return true;
    return false;
}

static void publish(void *ud, int k, int st, uint32_t n)
{
    swr_t *w = ud;
    gw_link_t *l = link_of(w->sim, k, w->u);
    if (getenv("SIM_PUB") && w->u == atoi(getenv("SIM_PUB")))
        fprintf(stderr, "  pub u%d k%d st%d +%u -> %u\n", w->u, k, st, n, atomic_load(&l->done[st]) + n);
    atomic_store(&l->done[st], atomic_load(&l->done[st]) + n);
    if (atomic_load(&l->want_done))
        gw_link_wake_svc(l);
}

static void transport_close(sim_t *s, swr_t *w, const char *why)
{
    bool lost = w->outbytes > 0;
    cq_clear(&w->out);
    w->outbytes = 0;
    w->in.n = w->in.head = 0;
    w->tstate = 0;
    w->goaway_seen = false;
    for (int i = 0; i < MAXS; i++)
        w->sopen[i] = false;
    node_conn_lost(s, w->u);
    dlv_session_down(w->d, why, lost, s->now);
}

static void writer_frame(sim_t *s, swr_t *w, frame_t f)
{
    dlv_heard(w->d, s->now);
    bool cur = f.st >= 0 && f.st < MAXS && w->sopen[f.st] && f.inst == w->inst[f.st];
    switch (f.type) {
    case F_SETTINGS:
        dlv_settings(w->d, s->now);
        break;
    case F_HEADERS:
        if (cur)
            dlv_headers(w->d, f.st, f.acking, f.end, f.status, s->now);
        break;
    case F_ACK:
        if (cur)
            dlv_ack(w->d, f.st, f.seq, s->now);
        break;
    case F_CLOSE:
        if (cur) {
            w->sopen[f.st] = false;
            dlv_stream_closed(w->d, f.st, f.status, 0, s->now);
        }
        break;
    case F_PINGACK:
        dlv_ping_acked(w->d, s->now);
        break;
    case F_GOAWAY:
        w->goaway_seen = true;
        dlv_goaway(w->d, 0, s->now);
        break;
    default:
        break;
    }
}

/* Moves stream bytes into the socket buffer (flush_out). */
static void writer_write(sim_t *s, swr_t *w)
{
    uint8_t buf[1500];
    bool wrote = false;
    int first = (int)below(s, (uint32_t)s->nstreams);
    for (int i = 0; i < s->nstreams && w->outbytes < OUTCAP; i++) {
        int st = (i + first) % s->nstreams;
        while (w->sopen[st] && w->outbytes < OUTCAP) {
            size_t room = OUTCAP - w->outbytes < sizeof buf ? OUTCAP - w->outbytes : sizeof buf;
            bool eof;
            ssize_t n = dlv_stream_read(w->d, st, buf, 1 + below(s, (uint32_t)room), &eof);
            if (n > 0) {
                uint8_t *data = malloc((size_t)n);
                memcpy(data, buf, (size_t)n);
                cq_push(&w->out, (chunk_t){.kind = CH_DATA, .st = st, .inst = w->inst[st],
                                           .data = data, .len = (size_t)n});
                w->outbytes += (size_t)n;
                wrote = true;
            } else {
                if (n == 0 && eof)
                    cq_push(&w->out, (chunk_t){.kind = CH_EOF, .st = st, .inst = w->inst[st]});
                break;
            }
        }
    }
    dlv_output_blocked(w->d, w->outbytes >= OUTCAP);
    if (!wrote && !w->outbytes)
        dlv_flushed(w->d, s->now);
}

void writer_run(sim_t *s, swr_t *w)
{
    w->woken = false;
    while (w->tstate == 2 && w->in.n) {
        frame_t f = fq_pop(&w->in);
        if (f.type == F_EOF) {
            transport_close(s, w, "closed by the node");
            break;
        }
        writer_frame(s, w, f);
    }
    if (w->flushed_note) {
        w->flushed_note = false;
        if (w->tstate == 2 && !w->outbytes)
            dlv_flushed(w->d, s->now);
    }
    if (w->tstate == 0 && dlv_connect_due(w->d, s->now)) {
        dlv_connecting(w->d, s->now);
        w->tstate = 1;
        w->connect_at = s->now + (1 + below(s, 20)) * MS;
    }
    if (w->tstate == 1 && s->now >= w->connect_at) {
        snode_t *n = &s->n[w->u];
        if (n->crashed) {
            w->tstate = 0;
            dlv_session_down(w->d, "connection refused", false, s->now);
        } else if (!n->part) { /* a black hole: the connect timeout ends it */
            w->tstate = 2;
            s->r->sessions++;
            node_accept(s, w->u);
            dlv_session_up(w->d, s->now);
        }
    }
    dlv_tick(w->d, s->now); /* before taking events and publishing: it may release some */
    const char *why = dlv_disconnect_wanted(w->d);
    if (why) {
        if (w->tstate == 2)
            transport_close(s, w, why);
        else {
            w->tstate = 0;
            dlv_session_down(w->d, why, false, s->now);
        }
    }
    for (int k = 0; k < s->nsvc; k++) {
        void *items[32];
        size_t n;
        while (!dlv_full(w->d) &&
               (n = gw_handoff_pop(&link_of(s, k, w->u)->up, items, 1 + below(s, 32))) > 0)
            for (size_t i = 0; i < n; i++) {
                gw_event_t *e = items[i];
                int ty = e->type;
                uint64_t id = e->conn_id, sq = e->seq;
                int cd = e->code;
                dlv_take(w->d, e, s->now); /* (e may be gone now) */
                if (s->o.verbose && (id == s->trace_conn || ty == GW_EV_REROUTED))
                    note(s, "writer %d took type %d seq %llu code %d (state %d)", w->u, ty,
                         (unsigned long long)sq, cd, dlv_state(w->d));
            }
    }
    dlv_flush_events(w->d, s->now);
    if (w->cmd_ovf) {
        bool left = false;
        for (int k = 0; k < s->nsvc; k++) {
            gw_handoff_t *h = &link_of(s, k, w->u)->down;
            if (gw_handoff_overflowing(h)) {
                left |= !gw_handoff_flush(h);
                w->touched[k] = true;
            }
        }
        w->cmd_ovf = left;
    }
    if (w->tstate == 2)
        writer_write(s, w);
    if (w->goaway_seen && w->tstate == 2) {
        bool any = false;
        for (int i = 0; i < s->nstreams; i++)
            any |= w->sopen[i];
        if (!any && !w->outbytes)
            transport_close(s, w, "goaway");
    }
    for (int k = 0; k < s->nsvc; k++)
        if (w->touched[k]) {
            w->touched[k] = false;
            s->svc[k].woken = true;
        }
    if (!w->cmd_ovf)
        dlv_resolved_take(w->d, publish, w);
}

