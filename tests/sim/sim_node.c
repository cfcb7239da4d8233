/* sim_node.c: the simulator's model API nodes (acking, plain or silent; poison, refusals,
 * crashes and hangs; their presence) and the network between writer u and node u
 * (sim_priv.h). */
#include "sim_priv.h"

/* ---- API nodes --------------------------------------------------------------------------- */

static void node_send(sim_t *s, int u, frame_t f)
{
    fq_push(&s->n[u].outq, f);
}

pres_t *pres_find(snode_t *n, uint64_t conn)
{
    for (size_t i = 0; i < n->npres; i++)
        if (n->pres[i].conn == conn)
            return &n->pres[i];
    return NULL;
}

/* ws-api's rules (api/presence.c): an entry belongs to the session its latest Open came on;
 * events of an older session than the entry's are stale and ignored. */
static void pres_open(snode_t *n, uint64_t conn, uint32_t sess)
{
    pres_t *p = pres_find(n, conn);
    if (p) {
        if (p->sess <= sess)
            p->sess = sess;
        return;
    }
    if (n->npres == n->cappres) {
        n->cappres = n->cappres ? n->cappres * 2 : 64;
        n->pres = realloc(n->pres, n->cappres * sizeof *n->pres);
    }
    n->pres[n->npres++] = (pres_t){conn, sess};
}
static void pres_close(snode_t *n, uint64_t conn, uint32_t sess)
{
    pres_t *p = pres_find(n, conn);
    if (p && p->sess <= sess)
        *p = n->pres[--n->npres];
}
static void pres_drop_session(snode_t *n, uint32_t sess)
{
    for (size_t i = 0; i < n->npres;)
        if (n->pres[i].sess == sess)
            n->pres[i] = n->pres[--n->npres];
        else
            i++;
}

/* Shared presence (ws-api --redis, api/cluster_pres.c): one store; a Close leaves a tombstone
 * that refuses any later Open of that connection (read late by a zombie, or a resync Open that
 * raced with its Close on another node). Both live under the gateway's token (api/cluster.c):
 * a session binds the current one when it starts, or a new one when it presents another
 * instance than the one that bound it, and then the store holds nothing (the old token's keys
 * are no longer read); a write of a session bound to an older token is refused, and the node
 * ends that session (as a heartbeat that finds another token does, node_run). */
static bool tombed(const sim_t *s, uint64_t conn)
{
    for (size_t i = 0; i < s->ntombs; i++)
        if (s->tombs[i] == conn)
            return true;
    return false;
}
pres_t *spres_find(sim_t *s, uint64_t conn)
{
    for (size_t i = 0; i < s->nspres; i++)
        if (s->spres[i].conn == conn)
            return &s->spres[i];
    return NULL;
}
static void shared_bind(sim_t *s, snode_t *n)
{
    uint32_t inst = atomic_load(&s->g.instance_gen);
    if (!s->tok || s->inst != inst) {
        s->tok++;
        s->inst = inst;
        s->nspres = s->ntombs = 0;
        s->r->rotations++;
        note(s, "presence token %u (instance %u)", s->tok, inst);
    }
    n->tok = s->tok;
}
static void shared_open(sim_t *s, uint64_t conn)
{
    if (tombed(s, conn) || spres_find(s, conn))
        return;
    if (s->nspres == s->capspres) {
        s->capspres = s->capspres ? s->capspres * 2 : 64;
        s->spres = realloc(s->spres, s->capspres * sizeof *s->spres);
    }
    s->spres[s->nspres++] = (pres_t){conn, 0};
}
static void shared_close(sim_t *s, uint64_t conn)
{
    pres_t *p = spres_find(s, conn);
    if (p)
        *p = s->spres[--s->nspres];
    if (tombed(s, conn))
        return;
    if (s->ntombs == s->captombs) {
        s->captombs = s->captombs ? s->captombs * 2 : 64;
        s->tombs = realloc(s->tombs, s->captombs * sizeof *s->tombs);
    }
    s->tombs[s->ntombs++] = conn;
}

typedef struct up_ctx { sim_t *s; int u, st; nstr_t *ns; } up_ctx_t;

/* The node fails the stream of x for a bad event (gRPC status 8, non-retryable; a zombie
 * sends nothing any more). Returns -1: stop the stream. */
static int node_refuse(up_ctx_t *x)
{
    snode_t *n = &x->s->n[x->u];
    if (!n->cur_zombie)
        node_send(x->s, x->u, (frame_t){.type = F_CLOSE, .st = x->st, .inst = x->ns->inst,
                                        .status = 8});
    x->ns->open = false;
    return -1;
}

/* One Upstream message processed by node u on stream st. Returns -1 to stop the stream. */
static int node_upstream(void *ud, const uint8_t *msg, size_t len)
{
    up_ctx_t *x = ud;
    sim_t *s = x->s;
    snode_t *n = &s->n[x->u];
    Wsgw__V1__Upstream *up = wsgw__v1__upstream__unpack(NULL, len, msg);
    if (!up) {
        violate(s, "node %d: undecodable batch", x->u);
        return -1;
    }
    int rv = 0;
    for (size_t i = 0; i < up->n_events && rv == 0; i++) {
        const Wsgw__V1__Event *ev = up->events[i];
        bool presence = ev->kind_case == WSGW__V1__EVENT__KIND_OPEN ||
                        ev->kind_case == WSGW__V1__EVENT__KIND_CLOSE;
        sconn_t *rc = s->o.shared && ev->kind_case == WSGW__V1__EVENT__KIND_CLOSE
                          ? conn_by_id(s, ev->conn_id) : NULL;
        if (rc && rc->refuse_close) { /* refused as a poison message is */
            note(s, "node %d: refuses the Close of conn %llx%s", x->u,
                 (unsigned long long)ev->conn_id, n->cur_zombie ? " (zombie)" : "");
            rv = node_refuse(x);
            break;
        }
        if (s->o.shared && presence && n->cur_tok != s->tok) {
            /* nothing of the batch is acknowledged; the live session ends (node_process) */
            if (!n->cur_zombie) {
                n->mismatch = true;
                x->ns->open = false;
            }
            rv = -1;
            break;
        }
        switch (ev->kind_case) {
        case WSGW__V1__EVENT__KIND_OPEN:
            if (s->o.verbose && ev->conn_id == s->trace_conn)
                note(s, "node %d: Open on stream %d session %u%s", x->u, x->st, n->cur_sess,
                     n->cur_zombie ? " (zombie)" : "");
            if (s->o.shared)
                shared_open(s, ev->conn_id);
            else
                pres_open(n, ev->conn_id, n->cur_sess);
            break;
        case WSGW__V1__EVENT__KIND_CLOSE:
            if (s->o.verbose && ev->conn_id == s->trace_conn)
                note(s, "node %d: Close on stream %d session %u%s", x->u, x->st, n->cur_sess,
                     n->cur_zombie ? " (zombie)" : "");
            if (s->o.shared)
                shared_close(s, ev->conn_id);
            else
                pres_close(n, ev->conn_id, n->cur_sess);
            break;
        case WSGW__V1__EVENT__KIND_MESSAGE: {
            bool poison = n->poison && ev->message->payload.len >= 6 &&
                          memcmp(ev->message->payload.data, "POISON", 6) == 0;
            /* with acks a message counts once handled (a poison one never is); without, once
             * it arrived (the contract: node_arrived) */
            if (!poison && n->mode == MODE_ACK)
                receipt(s, x->u, ev->conn_id, ev->message->seq, n->cur_zombie);
            if (poison) {
                note(s, "node %d: poison conn %llx seq %llu%s", x->u,
                     (unsigned long long)ev->conn_id, (unsigned long long)ev->message->seq,
                     n->cur_zombie ? " (zombie)" : "");
                rv = node_refuse(x);
            }
            break;
        }
        default:
            break;
        }
    }
    if (rv == 0)
        x->ns->processed = up->seq;
    wsgw__v1__upstream__free_unpacked(up, NULL);
    return rv;
}

static void settle_arrivals(sim_t *s, snode_t *n, int st, uint32_t inst, bool refused);

static void node_stream_open(sim_t *s, int u, int st, uint32_t inst)
{
    snode_t *n = &s->n[u];
    nstr_t *ns = &n->st[st];
    grpc_dec_free(&ns->dec);
    grpc_dec_init(&ns->dec, 1 << 20);
    ns->inst = inst;
    ns->processed = ns->acked = 0;
    bool refuse = n->goaway || pm(s, (uint32_t)n->refuse_pm);
    settle_arrivals(s, n, st, inst, refuse);
    if (refuse) {
        note(s, "node %d refuses stream %d", u, st);
        node_send(s, u, (frame_t){.type = F_HEADERS, .st = st, .inst = inst, .end = true,
                                  .status = 14});
        node_send(s, u, (frame_t){.type = F_CLOSE, .st = st, .inst = inst, .status = 14});
        ns->open = false;
        return;
    }
    ns->open = true;
    if (n->mode != MODE_SILENT)
        node_send(s, u, (frame_t){.type = F_HEADERS, .st = st, .inst = inst,
                                  .acking = n->mode == MODE_ACK, .status = -1});
}

/* Processes one arrived chunk on the streams ns (a zombie's: of a session the gateway
 * already closed; it sends nothing any more). */
static void node_chunk(sim_t *s, int u, nstr_t *streams, chunk_t *c, bool zombie,
                       uint32_t sess)
{
    snode_t *n = &s->n[u];
    nstr_t *ns = &streams[c->st];
    n->cur_zombie = zombie;
    n->cur_sess = sess;
    switch (c->kind) {
    case CH_OPEN:
        if (!zombie) {
            node_stream_open(s, u, c->st, c->inst);
        } else {
            grpc_dec_free(&ns->dec);
            grpc_dec_init(&ns->dec, 1 << 20);
            ns->inst = c->inst;
            ns->open = true;
        }
        break;
    case CH_DATA:
        if (ns->open && ns->inst == c->inst) {
            up_ctx_t x = {s, u, c->st, ns};
            grpc_dec_feed(&ns->dec, c->data, c->len, node_upstream, &x);
        }
        break;
    case CH_EOF: /* the gateway ended its request: the node finishes the call */
        if (!zombie && ns->open && ns->inst == c->inst)
            node_send(s, u, (frame_t){.type = F_CLOSE, .st = c->st, .inst = c->inst,
                                      .status = 0});
        if (ns->inst == c->inst)
            ns->open = false;
        break;
    case CH_PING:
        if (!zombie)
            node_send(s, u, (frame_t){.type = F_PINGACK});
        break;
    }
}

static void node_drop(sim_t *s, int u, const char *why);

static void node_process(sim_t *s, int u)
{
    snode_t *n = &s->n[u];
    if (n->hung || n->crashed)
        return;
    for (int z = 0; z < n->nzombies; z++) { /* what a stopped node read before it stopped */
        zombie_t *zb = &n->zombies[z];
        n->cur_tok = zb->tok;
        while (zb->inbox.n) {
            chunk_t c = cq_pop(&zb->inbox);
            node_chunk(s, u, zb->st, &c, true, zb->sess);
            free(c.data);
        }
        free(zb->inbox.v);
        for (int i = 0; i < MAXS; i++)
            grpc_dec_free(&zb->st[i].dec);
        pres_drop_session(n, zb->sess);
    }
    n->nzombies = 0;
    if (!n->session)
        return;
    if (n->settings_pending) {
        n->settings_pending = false;
        node_send(s, u, (frame_t){.type = F_SETTINGS});
    }
    n->cur_tok = n->tok;
    while (n->inbox.n && !n->mismatch) {
        chunk_t c = cq_pop(&n->inbox);
        node_chunk(s, u, n->st, &c, false, n->sess);
        free(c.data);
    }
    if (n->mismatch) {
        n->mismatch = false;
        node_drop(s, u, "a write found another presence token");
    }
}

/* The gateway connected. */
void node_accept(sim_t *s, int u)
{
    snode_t *n = &s->n[u];
    n->session = true;
    n->sess++;
    n->goaway = false;
    n->settings_pending = true;
    for (int i = 0; i < MAXS; i++)
        n->st[i].open = false;
    if (s->o.shared)
        shared_bind(s, n);
    node_process(s, u);
}

/* The connection is gone (closed by either side). A stopped node notices when it wakes: it
 * reads what had arrived first (a zombie), then drops the session's presence. */
void node_conn_lost(sim_t *s, int u)
{
    snode_t *n = &s->n[u];
    if (!n->session)
        return;
    n->session = false;
    n->outq.n = n->outq.head = 0;
    n->narr = 0; /* arrivals whose opens it never processed: taken (a zombie refuses nothing) */
    if (n->hung && n->nzombies < 8) {
        zombie_t *zb = &n->zombies[n->nzombies++];
        zb->sess = n->sess;
        zb->tok = n->tok;
        zb->inbox = n->inbox;
        memset(&n->inbox, 0, sizeof n->inbox);
        memcpy(zb->st, n->st, sizeof zb->st); /* decoders move with it */
        for (int i = 0; i < MAXS; i++) {
            memset(&n->st[i], 0, sizeof n->st[i]);
            grpc_dec_init(&n->st[i].dec, 1 << 20);
        }
        return;
    }
    cq_clear(&n->inbox);
    for (int i = 0; i < MAXS; i++)
        n->st[i].open = false;
    pres_drop_session(n, n->sess);
}

/* Node u ends the gateway's session (shared presence: its token is not current). */
static void node_drop(sim_t *s, int u, const char *why)
{
    note(s, "node %d ends the session: %s", u, why);
    s->r->mismatches++;
    node_conn_lost(s, u);
    fq_push(&s->w[u].in, (frame_t){.type = F_EOF});
    s->w[u].woken = true;
}

/* Acks, faults, recovery. */
void node_run(sim_t *s, int u)
{
    snode_t *n = &s->n[u];
    swr_t *w = &s->w[u];
    if (n->crashed && s->now >= n->crash_until)
        n->crashed = false;
    if (n->part && s->now >= n->part_until)
        n->part = false;
    if (n->hung && s->now >= n->hung_until) {
        n->hung = false;
        node_process(s, u);
    }
    if (s->o.shared && n->session && !n->hung && !n->crashed && n->tok != s->tok && pm(s, 100))
        node_drop(s, u, "a heartbeat found another presence token");
    if (s->faults && !n->crashed && pm(s, 4)) {
        uint32_t f = below(s, 6);
        if (f == 0 && n->mode == MODE_ACK) {
            note(s, "node %d crashes", u);
            s->r->crashes++;
            n->crashed = true;
            n->hung = false;
            n->crash_until = s->now + (20 + below(s, 800)) * MS;
            cq_clear(&n->inbox);
            for (int z = 0; z < n->nzombies; z++) {
                cq_clear(&n->zombies[z].inbox);
                free(n->zombies[z].inbox.v);
                for (int i = 0; i < MAXS; i++)
                    grpc_dec_free(&n->zombies[z].st[i].dec);
            }
            n->nzombies = 0;
            if (n->session) {
                node_conn_lost(s, u);
                fq_push(&w->in, (frame_t){.type = F_EOF});
                w->woken = true;
            }
            n->npres = 0; /* the process is gone, and its memory */
            return;
        }
        if (f == 1 && n->mode == MODE_ACK && !n->hung) {
            note(s, "node %d hangs", u);
            s->r->hangs++;
            n->hung = true;
            n->hung_until = s->now + (20 + below(s, 1200)) * MS;
        } else if (f == 2 && !n->part) {
            note(s, "network to node %d black-holed", u);
            s->r->partitions++;
            n->part = true;
            n->part_until = s->now + (20 + below(s, 1000)) * MS;
        } else if (f == 3 && n->session && !n->goaway && !n->hung) {
            note(s, "node %d goes away", u);
            s->r->goaways++;
            n->goaway = true;
            node_send(s, u, (frame_t){.type = F_GOAWAY});
        } else if (f >= 4 && n->session && !n->hung) {
            int st = (int)below(s, (uint32_t)s->nstreams);
            if (n->st[st].open) {
                note(s, "node %d resets stream %d", u, st);
                s->r->resets++;
                n->st[st].open = false;
                node_send(s, u, (frame_t){.type = F_CLOSE, .st = st, .inst = n->st[st].inst,
                                          .status = f == 4 ? 14 : 1});
            }
        }
    }
    if (n->hung || n->crashed || !n->session || n->mode != MODE_ACK)
        return;
    for (int i = 0; i < s->nstreams; i++) {
        nstr_t *ns = &n->st[i];
        if (!ns->open || ns->processed <= ns->acked || pm(s, 300))
            continue;
        uint64_t a = ns->processed;
        if (a > ns->acked + 1 && pm(s, 200))
            a = ns->acked + 1 + below(s, (uint32_t)(a - ns->acked - 1)); /* partial */
        node_send(s, u, (frame_t){.type = F_ACK, .st = i, .inst = ns->inst, .seq = a});
        if (pm(s, 50)) /* duplicate */
            node_send(s, u, (frame_t){.type = F_ACK, .st = i, .inst = ns->inst, .seq = a});
        ns->acked = a;
    }
}


/* ---- the network between writer u and node u ----------------------------------------------- */

typedef struct arr_ctx { sim_t *s; int u, st; } arr_ctx_t;

/* The node processed the open of (st, inst): the arrivals on it are taken, or, when it
 * refused the stream, not (counted in refused). */
static void settle_arrivals(sim_t *s, snode_t *n, int st, uint32_t inst, bool refused)
{
    if (n->ainst[st] == inst)
        n->aopened[st] = true;
    size_t j = 0;
    for (size_t i = 0; i < n->narr; i++) {
        arrival_t *a = &n->arr[i];
        if (a->st != st || a->inst != inst) {
            n->arr[j++] = *a;
            continue;
        }
        sconn_t *c = refused ? conn_by_id(s, a->conn) : NULL;
        if (c && a->seq < c->cap && c->refused[a->seq] < c->recv[a->seq])
            c->refused[a->seq]++;
    }
    n->narr = j;
}

static int arrived_msg(void *ud, const uint8_t *msg, size_t len)
{
    arr_ctx_t *x = ud;
    Wsgw__V1__Upstream *up = wsgw__v1__upstream__unpack(NULL, len, msg);
    if (!up)
        return -1;
    snode_t *n = &x->s->n[x->u];
    for (size_t i = 0; i < up->n_events; i++) {
        if (up->events[i]->kind_case != WSGW__V1__EVENT__KIND_MESSAGE)
            continue;
        uint64_t conn = up->events[i]->conn_id, seq = up->events[i]->message->seq;
        receipt(x->s, x->u, conn, seq, false);
        if (n->aopened[x->st])
            continue;
        if (n->narr == n->caparr) {
            n->caparr = n->caparr ? 2 * n->caparr : 64;
            n->arr = realloc(n->arr, n->caparr * sizeof *n->arr);
        }
        n->arr[n->narr++] = (arrival_t){conn, seq, n->ainst[x->st], x->st};
    }
    wsgw__v1__upstream__free_unpacked(up, NULL);
    return 0;
}

/* A node without acks has a message once it arrived (written to the socket, for the gateway). */
static void node_arrived(sim_t *s, int u, const chunk_t *c)
{
    snode_t *n = &s->n[u];
    if (n->mode == MODE_ACK)
        return;
    if (c->kind == CH_OPEN) {
        grpc_dec_free(&n->adec[c->st]);
        grpc_dec_init(&n->adec[c->st], 1 << 20);
        n->ainst[c->st] = c->inst;
        n->aopened[c->st] = false;
    } else if (c->kind == CH_DATA && c->inst == n->ainst[c->st]) {
        arr_ctx_t x = {s, u, c->st};
        grpc_dec_feed(&n->adec[c->st], c->data, c->len, arrived_msg, &x);
    }
}

bool net_run(sim_t *s, int u)
{
    swr_t *w = &s->w[u];
    snode_t *n = &s->n[u];
    if (w->tstate != 2 || n->part || !n->session)
        return false;
    bool did = false;
    for (uint32_t i = 1 + below(s, 4); i && w->out.n; i--) {
        chunk_t c = cq_pop(&w->out);
        w->outbytes -= c.len;
        node_arrived(s, u, &c);
        cq_push(&n->inbox, c);
        did = true;
        if (!w->out.n) {
            w->flushed_note = true;
            w->woken = true;
        }
    }
    if (did)
        node_process(s, u);
    for (uint32_t i = 1 + below(s, 4); i && n->outq.n; i--) {
        fq_push(&w->in, fq_pop(&n->outq));
        w->woken = true;
        did = true;
    }
    return did;
}

