/* sim.c: deterministic simulation of the gateway's delivery protocol (see sim.h): randomness,
 * violations, the connections' receipts, the world, scheduling and the final checks; the
 * gateway's side is in sim_gw.c, the API nodes in sim_node.c (sim_priv.h). */
#include "sim_priv.h"

/* ---- violations ------------------------------------------------------------------------------ */

void violate(sim_t *s, const char *fmt, ...)
{
    if (s->failed)
        return;
    s->failed = true;
    va_list ap;
    va_start(ap, fmt);
    int n = snprintf(s->r->violation, sizeof s->r->violation, "step %llu t=%lldms: ",
                     (unsigned long long)s->step, (long long)(s->now / MS));
    vsnprintf(s->r->violation + n, sizeof s->r->violation - (size_t)n, fmt, ap);
    va_end(ap);
}

void note(sim_t *s, const char *fmt, ...)
{
    if (s->o.verbose < 1)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "[%llu t=%lldms] ", (unsigned long long)s->step, (long long)(s->now / MS));
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* ---- connections --------------------------------------------------------------------------- */

sconn_t *conn_by_id(sim_t *s, uint64_t id)
{
    unsigned k = conn_id_thread(id);
    if (k >= (unsigned)s->nsvc)
        return NULL;
    /* live ones through the table; closed ones by a scan (rare: late receipts) */
    gw_conn_t *c = gw_conn_table_get(&s->svc[k].table, id);
    if (c)
        return (sconn_t *)c;
    for (int i = s->nconns - 1; i >= 0; i--)
        if (s->conns[i]->c.id == id)
            return s->conns[i];
    return NULL;
}

void conn_grow(sconn_t *c, uint64_t seq)
{
    if (seq < c->cap)
        return;
    size_t ncap = c->cap ? c->cap * 2 : 16;
    while (ncap <= seq)
        ncap *= 2;
    c->recv = realloc(c->recv, ncap);
    c->zrecv = realloc(c->zrecv, ncap);
    c->refused = realloc(c->refused, ncap);
    memset(c->recv + c->cap, 0, ncap - c->cap);
    memset(c->zrecv + c->cap, 0, ncap - c->cap);
    memset(c->refused + c->cap, 0, ncap - c->cap);
    c->cap = ncap;
}

/* An API node took Message (conn, seq) in (I3 and the bound of I4 are checked here). */
void receipt(sim_t *s, int u, uint64_t conn, uint64_t seq, bool zombie)
{
    sconn_t *c = conn_by_id(s, conn);
    if (!c || seq == 0 || seq > c->sent) {
        violate(s, "node %d got a message nobody sent: conn %llx seq %llu", u,
                (unsigned long long)conn, (unsigned long long)seq);
        return;
    }
    conn_grow(c, seq);
    if (zombie) {
        if (c->zrecv[seq] < 255)
            c->zrecv[seq]++;
        return;
    }
    if (s->o.verbose >= 1 && c->c.id == s->trace_conn)
        note(s, "node %d got conn %llx seq %llu%s", u, (unsigned long long)conn,
             (unsigned long long)seq, c->recv[seq] ? " (again)" : "");
    if (!c->recv[seq]) {
        if (seq < c->first_max)
            violate(s, "order: node %d first got conn %llx seq %llu after seq %llu", u,
                    (unsigned long long)conn, (unsigned long long)seq,
                    (unsigned long long)c->first_max);
        c->first_max = seq;
        s->r->received++;
    }
    if (c->recv[seq] < 255)
        c->recv[seq]++;
    /* I4: a batch is re-sent after each failure it had a part in, up to max_attempts, plus
     * once alone after a split; a poison message ahead of it on its stream costs it at most
     * two more (the poison is split off, then dropped). Arrivals on streams the node refused
     * do not count: it took nothing there, and a refusal is not a failure (delivery.c) */
    uint64_t bound = (uint64_t)s->max_attempts + 2 + 2 * s->r->poisons;
    if ((uint64_t)(c->recv[seq] - c->refused[seq]) > bound)
        violate(s, "conn %llx seq %llu received %d times, %d of them on refused streams "
                "(max_attempts %d, bound %llu)", (unsigned long long)conn,
                (unsigned long long)seq, c->recv[seq], c->refused[seq], s->max_attempts,
                (unsigned long long)bound);
}


/* ---- the world ----------------------------------------------------------------------------- */

static sim_t *trace_sim;

static void trace_batch(const dlv_t *d, const char *what, int st, const gw_batch_t *b)
{
    sim_t *s = trace_sim;
    Wsgw__V1__Upstream *up = wsgw__v1__upstream__unpack(NULL, b->wire_len - GRPC_FRAME_HDR_LEN,
                                                        b->buf + GRPC_FRAME_HDR_LEN);
    if (!up)
        return;
    for (size_t i = 0; i < up->n_events; i++)
        if (up->events[i]->conn_id == s->trace_conn) {
            char buf[160];
            int n = 0;
            for (size_t j = 0; j < up->n_events && n < 120; j++)
                if (up->events[j]->conn_id == s->trace_conn)
                    n += snprintf(buf + n, sizeof buf - (size_t)n, " %d:%llu",
                                  up->events[j]->kind_case,
                                  up->events[j]->kind_case == WSGW__V1__EVENT__KIND_MESSAGE
                                      ? (unsigned long long)up->events[j]->message->seq : 0ULL);
            int u = 0;
            while (u < s->nup && s->w[u].d != d)
                u++;
            note(s, "node %d %s st %d seq %llu tries %d:%s", u, what, st,
                 (unsigned long long)b->seq, b->tries, buf);
            break;
        }
    wsgw__v1__upstream__free_unpacked(up, NULL);
}

static int setup(sim_t *s)
{
    s->nsvc = s->o.nsvc ? s->o.nsvc : 1 + (int)below(s, MAXK);
    s->nup = s->o.nup ? s->o.nup : 1 + (int)below(s, MAXN);
    s->nstreams = s->o.nstreams ? s->o.nstreams : 1 + (int)below(s, MAXS);
    s->max_attempts = 2 + (int)below(s, 4);
    s->g.nsvc = s->nsvc;
    s->g.nup = s->nup;
    s->g.nstreams = s->nstreams;
    s->g.nodes = s->nodes;
    s->g.links = s->links;
    s->g.prefix = (uint16_t)(1 + below(s, 60000));
    for (int u = 0; u < s->nup; u++) {
        atomic_init(&s->nodes[u].connected, 0);
        atomic_init(&s->nodes[u].idle, 1);
        atomic_init(&s->nodes[u].seed, 1000 + (uint64_t)u * 7919);
    }
    for (int k = 0; k < s->nsvc; k++)
        for (int u = 0; u < s->nup; u++) {
            gw_link_t *l = gw_link_new(k, u, s->nstreams, RING, wake_svc, &s->svc[k],
                                       wake_writer, &s->w[u]);
            if (!l)
                return -1;
            s->links[k * s->nup + u] = l;
        }
    for (int k = 0; k < s->nsvc; k++) {
        ssvc_t *v = &s->svc[k];
        v->sim = s;
        v->k = k;
        gw_conn_table_init(&v->table, s->g.prefix, (unsigned)k, 0);
        if (gw_mr_init(&v->mr, &s->g, &mr_ops, v) < 0)
            return -1;
    }
    static const char *names[MAXN] = {"node0", "node1", "node2"};
    for (int u = 0; u < s->nup; u++) {
        swr_t *w = &s->w[u];
        w->sim = s;
        w->u = u;
        w->woken = true;
        dlv_cfg_t cfg = {
            .nsvc = s->nsvc, .nstreams = s->nstreams,
            .batch_max_events = 1 + below(s, 8), .batch_max_bytes = 64 + below(s, 512),
            .replay_max_bytes = 512 + below(s, 8192), .max_attempts = s->max_attempts,
            /* timers scaled down (the gateway's defaults are 1 s and up) so a short run sees
             * many of them fire */
            .ping_interval_ns = (100 + below(s, 300)) * MS, .ping_timeout_ns = (100 + below(s, 300)) * MS,
            .connect_timeout_ns = 400 * MS, .headers_timeout_ns = (150 + below(s, 400)) * MS,
            .backoff_min_ns = 20 * MS, .backoff_max_ns = 300 * MS, .renew_interval_ns = RENEW_INTERVAL,
            .gateway_id = "sim-gw", .name = names[u],
        };
        dlv_io_t io = {w,       io_open_stream, io_resume, io_ping,
                       io_set_usable, io_emit,  io_others, io_renew};
        if (!(w->d = dlv_new(&cfg, &io)))
            return -1;
        dlv_seed(w->d, s->rng ^ (uint64_t)u);
        snode_t *n = &s->n[u];
        uint32_t m = below(s, 100);
        n->mode = m < 70 ? MODE_ACK : m < 85 ? MODE_PLAIN : MODE_SILENT;
        if (s->o.shared) { /* ws-api (the only server that shares presence) always acks */
            n->mode = MODE_ACK;
            atomic_store(&s->nodes[u].presence, GW_PRES_SHARED);
        }
        n->poison = pm(s, 500);
        n->refuse_pm = pm(s, 300) ? (int)below(s, 200) : 0;
        for (int i = 0; i < MAXS; i++) {
            grpc_dec_init(&n->st[i].dec, 1 << 20);
            grpc_dec_init(&n->adec[i], 1 << 20);
        }
    }
    return 0;
}

static void teardown(sim_t *s)
{
    for (int u = 0; u < s->nup; u++) {
        swr_t *w = &s->w[u];
        snode_t *n = &s->n[u];
        dlv_free(w->d);
        cq_clear(&w->out);
        free(w->out.v);
        free(w->in.v);
        cq_clear(&n->inbox);
        free(n->inbox.v);
        free(n->outq.v);
        for (int z = 0; z < n->nzombies; z++) {
            cq_clear(&n->zombies[z].inbox);
            free(n->zombies[z].inbox.v);
            for (int i = 0; i < MAXS; i++)
                grpc_dec_free(&n->zombies[z].st[i].dec);
        }
        for (int i = 0; i < MAXS; i++) {
            grpc_dec_free(&n->st[i].dec);
            grpc_dec_free(&n->adec[i]);
        }
        free(n->arr);
        free(n->pres);
    }
    for (int k = 0; k < s->nsvc; k++) {
        gw_mr_free(&s->svc[k].mr);
        gw_conn_table_free(&s->svc[k].table);
    }
    for (int i = 0; i < s->nsvc * s->nup; i++)
        gw_link_free(s->links[i]);
    for (int i = 0; i < s->nconns; i++) {
        free(s->conns[i]->c.user);
        free(s->conns[i]->recv);
        free(s->conns[i]->zrecv);
        free(s->conns[i]->refused);
        free(s->conns[i]);
    }
    free(s->spres);
    free(s->tombs);
}

/* ---- scheduling ---------------------------------------------------------------------------- */

static bool writer_due(sim_t *s, swr_t *w)
{
    if (w->woken || (w->tstate == 1 && s->now >= w->connect_at))
        return true;
    int64_t t = dlv_next_timer(w->d);
    return t && t <= s->now;
}

static int64_t next_wakeup(sim_t *s)
{
    int64_t t = 0;
#define EARLIER(x)                                                                             \
    do {                                                                                       \
        int64_t x_ = (x);                                                                      \
        if (x_ > s->now && (!t || x_ < t))                                                     \
            t = x_;                                                                            \
    } while (0)
    for (int u = 0; u < s->nup; u++) {
        EARLIER(dlv_next_timer(s->w[u].d));
        if (s->w[u].tstate == 1)
            EARLIER(s->w[u].connect_at);
        if (s->n[u].crashed)
            EARLIER(s->n[u].crash_until);
        if (s->n[u].hung)
            EARLIER(s->n[u].hung_until);
        if (s->n[u].part)
            EARLIER(s->n[u].part_until);
    }
#undef EARLIER
    return t ? t : s->now + 10 * MS;
}

static void check_machines(sim_t *s)
{
    char err[256];
    for (int u = 0; u < s->nup; u++)
        if (dlv_check(s->w[u].d, err, sizeof err) < 0)
            violate(s, "node %d machine: %s", u, err);
}

/* One step: time moves a little, one actor runs. */
static void step(sim_t *s)
{
    s->step++;
    s->now += below(s, 3) * MS / 2;
    enum { A_CLIENT, A_SVC, A_WRITER, A_NET, A_NODE };
    int kinds[16], idx[16], n = 0;
    if (s->faults) {
        kinds[n] = A_CLIENT, idx[n++] = 0;
        kinds[n] = A_CLIENT, idx[n++] = 0;
    }
    for (int k = 0; k < s->nsvc; k++)
        if (s->svc[k].woken)
            kinds[n] = A_SVC, idx[n++] = k;
    for (int u = 0; u < s->nup; u++) {
        if (writer_due(s, &s->w[u]))
            kinds[n] = A_WRITER, idx[n++] = u;
        if (s->w[u].tstate == 2 && !s->n[u].part && s->n[u].session &&
            (s->w[u].out.n || s->n[u].outq.n))
            kinds[n] = A_NET, idx[n++] = u;
    }
    int busy = n;
    for (int u = 0; u < s->nup; u++)
        kinds[n] = A_NODE, idx[n++] = u;
    if (!busy && !s->faults && pm(s, 900)) {
        s->now = next_wakeup(s); /* everyone sleeps: the next timer */
        return;
    }
    int i = (int)below(s, (uint32_t)n);
    switch (kinds[i]) {
    case A_CLIENT: client_act(s); break;
    case A_SVC: svc_run(s, &s->svc[idx[i]]); break;
    case A_WRITER:
        writer_run(s, &s->w[idx[i]]);
        if (s->o.verbose >= 3) {
            char buf[2048];
            dlv_describe(s->w[idx[i]].d, buf, sizeof buf);
            note(s, "writer %d ran: %s", idx[i], buf);
        }
        break;
    case A_NET: net_run(s, idx[i]); break;
    default: node_run(s, idx[i]); break;
    }
    if (s->o.verbose == 2)
        note(s, "actor %d/%d", kinds[i], idx[i]);
    check_machines(s);
}

/* ---- settling and the final checks ----------------------------------------------------------- */

static const char *unsettled(sim_t *s)
{
    static char why[200];
    for (int i = 0; i < s->nsvc * s->nup; i++) {
        gw_link_t *l = s->links[i];
        if (gw_link_busy(l) || gw_handoff_overflowing(&l->up) || gw_handoff_overflowing(&l->down)) {
            snprintf(why, sizeof why, "link k%d-u%d: up %zu%s down %zu%s want_room %d/%d", l->svc,
                     l->node, gw_handoff_count(&l->up),
                     gw_handoff_overflowing(&l->up) ? "+ovf" : "", gw_handoff_count(&l->down),
                     gw_handoff_overflowing(&l->down) ? "+ovf" : "",
                     atomic_load(&l->up.want_room), atomic_load(&l->down.want_room));
            return why;
        }
    }
    for (int k = 0; k < s->nsvc; k++) {
        if (s->svc[k].woken)
            return "a service thread is woken";
        if (s->svc[k].mr.nheld) {
            gw_held_t *h = &s->svc[k].mr.held[0];
            snprintf(why, sizeof why, "held messages: thread %d conn %llx waits for node %d "
                     "stream %d mark %u (done %u, seen %u)", k, (unsigned long long)h->conn_id,
                     h->node, h->stream, h->mark,
                     atomic_load(&link_of(s, k, h->node)->done[h->stream]),
                     s->svc[k].mr.done_seen[h->node * s->nstreams + h->stream]);
            return why;
        }
        for (int u = 0; u < s->nup; u++)
            if (s->svc[k].rs_gen[u])
                return "resync running";
    }
    for (int u = 0; u < s->nup; u++) {
        if (s->w[u].tstate != 2 || dlv_state(s->w[u].d) != DLV_LIVE) {
            snprintf(why, sizeof why, "node %d not live (state %d)", u, dlv_state(s->w[u].d));
            return why;
        }
        if (!dlv_idle(s->w[u].d)) {
            snprintf(why, sizeof why, "node %d machine not idle", u);
            return why;
        }
        if (dlv_renewal_pending(s->w[u].d)) {
            snprintf(why, sizeof why, "node %d renewal pending", u);
            return why;
        }
        if (s->w[u].out.n || s->n[u].outq.n || s->w[u].in.n)
            return "bytes in flight";
    }
    for (int i = 0; i < s->nconns; i++) {
        sconn_t *c = s->conns[i];
        for (uint64_t q = 1; q <= c->sent; q++)
            if (c->recv[q] == c->refused[q] && !c->kicked) {
                snprintf(why, sizeof why, "conn %llx seq %llu neither received nor told",
                         (unsigned long long)c->c.id, (unsigned long long)q);
                return why;
            }
    }
    return NULL;
}

static void final_checks(sim_t *s)
{
    if (s->o.shared) {
        size_t live = 0;
        for (int i = 0; i < s->nconns; i++) {
            sconn_t *c = s->conns[i];
            pres_t *p = spres_find(s, c->c.id);
            if (c->live) {
                live++;
                if (!p)
                    violate(s, "shared presence misses live conn %llx",
                            (unsigned long long)c->c.id);
            } else if (p) {
                violate(s, "shared presence has a ghost: closed conn %llx",
                        (unsigned long long)c->c.id);
            }
        }
        if (s->nspres != live)
            violate(s, "shared presence holds %zu entries, %zu live", s->nspres, live);
    }
    for (int u = 0; u < s->nup && !s->o.shared; u++) {
        snode_t *n = &s->n[u];
        size_t live = 0;
        /* Without acks, events in a stream that broke are gone for good (they counted as
         * delivered once written): presence is right again only after the next session. */
        if (n->mode != MODE_ACK)
            continue;
        for (int i = 0; i < s->nconns; i++) {
            sconn_t *c = s->conns[i];
            pres_t *p = pres_find(n, c->c.id);
            if (c->live) {
                live++;
                if (!p)
                    violate(s, "presence: node %d misses live conn %llx", u,
                            (unsigned long long)c->c.id);
            } else if (p) {
                violate(s, "presence: node %d has a ghost: closed conn %llx", u,
                        (unsigned long long)c->c.id);
            }
        }
        if (n->npres != live)
            violate(s, "presence: node %d holds %zu entries, %zu live", u, n->npres, live);
    }
    for (int i = 0; i < s->nconns; i++) {
        sconn_t *c = s->conns[i];
        for (uint64_t q = 1; q <= c->sent; q++)
            if (c->recv[q] == c->refused[q])
                s->r->kicked_lost++;
    }
    for (int u = 0; u < s->nup; u++) {
        const dlv_stats_t *st = dlv_stats(s->w[u].d);
        s->r->handed_back += st->handed_back;
        s->r->resyncs += st->resyncs;
        s->r->pings += st->pings;
        s->r->ping_timeouts += st->ping_timeouts;
        s->r->splits += st->splits;
        s->r->lost += st->lost;
        s->r->renewals += st->renewals;
    }
    if (s->r->kicked_lost > s->r->lost)
        violate(s, "%llu messages never received, only %llu counted lost",
                (unsigned long long)s->r->kicked_lost, (unsigned long long)s->r->lost);
}

int sim_run(const sim_opts_t *o, sim_result_t *r)
{
    sim_t *s = calloc(1, sizeof *s);
    memset(r, 0, sizeof *r);
    s->o = *o;
    s->r = r;
    s->rng = o->seed * 0x9E3779B97F4A7C15ULL + 0x1234567;
    s->now = 1000 * MS;
    s->trace_conn = o->trace_conn;
    trace_sim = s;
    dlv_trace_batch = o->verbose && o->trace_conn ? trace_batch : NULL;
    int saved = log_level;
    log_level = o->verbose == 2 ? LOG_INFO : o->verbose ? LOG_WARN : -1;
    if (setup(s) < 0) {
        snprintf(r->violation, sizeof r->violation, "setup failed (memory)");
        s->failed = true;
    }
    int fault_steps = o->fault_steps ? o->fault_steps : 3000;
    int settle_steps = o->settle_steps ? o->settle_steps : 200000;
    s->faults = true;
    for (int i = 0; i < fault_steps && !s->failed; i++)
        step(s);
    s->faults = false;
    for (int u = 0; u < s->nup; u++) { /* heal everything */
        snode_t *n = &s->n[u];
        n->crash_until = n->hung_until = n->part_until = s->now;
        n->refuse_pm = 0;
    }
    const char *why = "not checked";
    for (int i = 0; i < settle_steps && !s->failed; i++) {
        step(s);
        if ((i & 63) == 63 && !(why = unsettled(s)))
            break;
    }
    if (!s->failed && why) {
        violate(s, "did not settle within %d steps: %s", settle_steps, why);
        if (o->verbose)
            for (int u = 0; u < s->nup; u++) {
                char buf[2048];
                dlv_describe(s->w[u].d, buf, sizeof buf);
                fprintf(stderr, "node %d: tstate=%d sopen=%d%d%d%d out=%zu in=%zu node: session=%d hung=%d "
                        "crashed=%d part=%d mode=%d goaway=%d; machine: %s\n", u,
                        s->w[u].tstate, s->w[u].sopen[0], s->w[u].sopen[1], s->w[u].sopen[2], s->w[u].sopen[3], s->w[u].out.n, s->w[u].in.n, s->n[u].session,
                        s->n[u].hung, s->n[u].crashed, s->n[u].part, s->n[u].mode,
                        s->n[u].goaway, buf);
            }
    }
    if (!s->failed)
        final_checks(s);
    r->steps = s->step;
    log_level = saved;
    bool failed = s->failed;
    teardown(s);
    free(s);
    return failed ? -1 : 0;
}
