/* clientproto.c: wsgw.v1.json on the gateway (see clientproto.h). Service thread only. */
#include "clientproto.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "chanrec.h"
#include "clock.h"
#include "config.h"
#include "envelope.h"
#include "gwm.h"
#include "log.h"
#include "metrics.h"
#include "msgroute.h"
#include "svc.h"

#define RECOVER_ARG "recover="
#define RECOVER_MAX 1024 /* bytes of one decoded recover argument */

/* ---- the machine's actions ------------------------------------------------------------------ */

typedef struct cp_ctx {
    gw_svc_t *s;
    gw_conn_t *c;
} cp_ctx_t;

static void op_deliver(void *ctx, void *msg)
{
    cp_ctx_t *x = ctx;
    gw_svc_deliver(x->s, x->c, msg);
}

static void op_ref(void *ctx, void *msg)
{
    (void)ctx;
    gw_payload_ref(msg);
}

static void op_unref(void *ctx, void *msg)
{
    (void)ctx;
    gw_payload_unref(msg);
}

static void op_notice(void *ctx, const gw_chan_t *ch, bool recovered)
{
    cp_ctx_t *x = ctx;
    gw_payload_t *p = gw_env_recovery(ch->name, ch->name_len, recovered, ch->last, ch->epoch,
                                      strlen(ch->epoch), clock_mono_ns());
    if (!p) {
        log_rl_error("out of memory: recovery notice not sent", "conn_id=%llu",
                     (unsigned long long)x->c->id);
        gw_svc_close_conn(x->s, x->c, 1011, NULL);
        return;
    }
    gw_svc_deliver(x->s, x->c, p);
    gw_payload_unref(p);
}

static bool op_request(void *ctx, const gw_chan_t *ch, uint64_t after, const char *epoch,
                       uint32_t id)
{
    cp_ctx_t *x = ctx;
    gw_conn_t *c = x->c;
    if (c->closing)
        return false;
    gw_event_t *e = gw_event_new(GW_EV_MESSAGE, c->id, c->user, c->user ? strlen(c->user) : 0,
                                 ch->name, ch->name_len, epoch, strlen(epoch), NULL, 0);
    if (!e) {
        log_rl_error("out of memory: Recover not sent", "conn_id=%llu",
                     (unsigned long long)c->id);
        return false;
    }
    e->recover = true;
    e->seq = after;
    e->code = (int32_t)id;
    e->t_read = clock_mono_ns();
    e->gateway_ns = clock_wall_ns();
    metrics_inc(gwm.recover_requests);
    gw_msgroute_send(&x->s->route, c, e);
    return true;
}

static void op_event(void *ctx, gw_cr_ev_t ev)
{
    cp_ctx_t *x = ctx;
    metrics_inc(gwm.recover_events[ev]);
    char q[80];
    switch (ev) {
    case GW_CR_EV_TIMEOUT:
        log_rl_warn("recovery timed out: client told recovered=false",
                    "conn_id=%llu user=%s timeout_ms=%lld", (unsigned long long)x->c->id,
                    log_quote(q, sizeof q, x->c->user), (long long)(gw_cfg.recover_timeout_us / 1000));
        break;
    case GW_CR_EV_OVERFLOW:
        log_rl_warn("recovery abandoned: too much held", "conn_id=%llu limit=%lld",
                    (unsigned long long)x->c->id, (long long)gw_cfg.recover_hold);
        break;
    case GW_CR_EV_RESET:
        log_rl_info("channel history restarted (new epoch)", "conn_id=%llu",
                    (unsigned long long)x->c->id);
        break;
    case GW_CR_EV_UNTRACKED:
        log_rl_info("channel message delivered without ordering", "conn_id=%llu channels=%lld",
                    (unsigned long long)x->c->id, (long long)gw_cfg.max_rooms_per_conn + 2);
        break;
    default:
        break;
    }
}

static const gw_cr_ops_t cp_ops = {op_deliver, op_ref, op_unref, op_notice, op_request,
                                   op_event};

static gw_cr_cfg_t cp_cfg(void)
{
    gw_cr_cfg_t k = {
        .recover_timeout_ns = gw_cfg.recover_timeout_us * 1000,
        .gap_wait_ns = gw_cfg.recover_gap_wait_us * 1000,
        .max_held_bytes = (size_t)gw_cfg.recover_hold,
        .max_chans = (uint32_t)gw_cfg.max_rooms_per_conn + 2,
    };
    return k;
}

/* c's channels, made on first use. NULL when out of memory. */
static gw_chans_t *chans_of(gw_conn_t *c)
{
    if (!c->chans) {
        c->chans = malloc(sizeof *c->chans);
        if (c->chans)
            gw_cr_init(c->chans);
    }
    return c->chans;
}

/* Keeps c on the thread's list of connections with timers while it has some. */
static void track(gw_svc_t *s, gw_conn_t *c)
{
    if (c->cp_listed || !c->chans || !gw_cr_busy(c->chans))
        return;
    if (s->ncp_busy == s->cap_cp_busy) {
        size_t ncap = s->cap_cp_busy ? s->cap_cp_busy * 2 : 64;
        uint64_t *b = realloc(s->cp_busy, ncap * sizeof *b);
        if (!b) {
            /* without the list its timers never fire: it waits for the answer or the close */
            log_rl_error("out of memory: recovery timer not armed", "conn_id=%llu",
                         (unsigned long long)c->id);
            return;
        }
        s->cp_busy = b;
        s->cap_cp_busy = ncap;
    }
    s->cp_busy[s->ncp_busy++] = c->id;
    c->cp_listed = true;
}

/* ---- handshake ------------------------------------------------------------------------------- */

bool gw_cp_query_arg(const char *arg, size_t len)
{
    return len >= sizeof RECOVER_ARG - 1 && memcmp(arg, RECOVER_ARG, sizeof RECOVER_ARG - 1) == 0;
}

static bool epoch_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '_';
}

/* One decoded "offset.epoch.channel" into c's positions. */
static int position(gw_conn_t *c, const gw_cr_cfg_t *k, const char *v, size_t n,
                    const char **why)
{
    const char *end = v + n, *p = v;
    uint64_t off = 0;
    if (p == end || *p < '0' || *p > '9')
        goto bad;
    for (; p < end && *p >= '0' && *p <= '9'; p++) {
        if (off > (UINT64_MAX - 9) / 10)
            goto bad;
        off = off * 10 + (uint64_t)(*p - '0');
    }
    if (p == end || *p++ != '.')
        goto bad;
    const char *ep = p;
    while (p < end && epoch_char(*p))
        p++;
    size_t elen = (size_t)(p - ep);
    if (elen > GW_CR_EPOCH_MAX || p == end || *p++ != '.')
        goto bad;
    size_t clen = (size_t)(end - p);
    bool user = clen > 5 && memcmp(p, "user:", 5) == 0;
    bool room = clen > 5 && memcmp(p, "room:", 5) == 0;
    if ((!user && !room) || (room && clen - 5 > (size_t)gw_cfg.max_room_name))
        goto bad;
    gw_chans_t *set = chans_of(c);
    if (!set) {
        *why = "out-of-memory";
        return -1;
    }
    int rv = gw_cr_position(set, k, p, clen, off, ep, elen);
    if (rv == GW_CR_TOO_MANY) {
        *why = "too-many-recover";
        return -1;
    }
    if (rv < 0) {
        *why = rv == GW_CR_NOMEM ? "out-of-memory" : "bad-recover";
        return -1;
    }
    return 0;
bad:
    *why = "bad-recover";
    return -1;
}

int gw_cp_handshake(gw_conn_t *c, const gw_http_req_t *r, const char **why)
{
    c->proto = false;
    for (unsigned i = 0; i < r->nhdr && !c->proto; i++)
        if (r->hdr[i].name.n == 22 && strncasecmp(r->hdr[i].name.p, "sec-websocket-protocol", 22) == 0 &&
            gw_http_has_token(&r->hdr[i].value, GW_CP_NAME))
            c->proto = true;
    if (!c->proto)
        return 0; /* positions mean nothing without the envelope: ignored */
    gw_cr_cfg_t k = cp_cfg();
    const char *p = r->query.p, *end = r->query.p + r->query.n;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        gw_slice_t f = {p, (size_t)((amp ? amp : end) - p)};
        p = amp ? amp + 1 : end;
        if (!gw_cp_query_arg(f.p, f.n))
            continue;
        char v[RECOVER_MAX];
        gw_slice_t val = {f.p + sizeof RECOVER_ARG - 1, f.n - (sizeof RECOVER_ARG - 1)};
        long n = gw_http_decode(val, true, v, sizeof v);
        if (n < 0) {
            *why = "bad-recover";
            return -1;
        }
        if (position(c, &k, v, (size_t)n, why) < 0)
            return -1;
    }
    return 0;
}

/* ---- connection life ---------------------------------------------------------------------- */

void gw_cp_established(gw_svc_t *s, gw_conn_t *c)
{
    metrics_inc(gwm.subprotocol_accepted);
    if (!c->chans || !c->user)
        return;
    size_t ul = strlen(c->user);
    char *name = malloc(ul + 6);
    if (!name) {
        log_rl_error("out of memory: user channel not recovered", "conn_id=%llu",
                     (unsigned long long)c->id);
        return;
    }
    memcpy(name, "user:", 5);
    memcpy(name + 5, c->user, ul + 1);
    gw_cr_cfg_t k = cp_cfg();
    cp_ctx_t x = {s, c};
    gw_cr_start(c->chans, &k, &cp_ops, &x, name, ul + 5, clock_mono_ns());
    free(name);
    track(s, c);
}

void gw_cp_closed(gw_svc_t *s, gw_conn_t *c)
{
    if (!c->chans)
        return;
    cp_ctx_t x = {s, c};
    gw_cr_free(c->chans, &cp_ops, &x);
    free(c->chans);
    c->chans = NULL;
    /* (its entry in the busy list goes at the next tick: the id no longer resolves) */
}

/* ---- messages ----------------------------------------------------------------------------- */

void gw_cp_send(gw_svc_t *s, gw_conn_t *c, gw_cmd_t *cmd)
{
    if (!cmd->env) {
        gw_payload_t *raw = cmd->payload;
        cmd->env = gw_env_message(cmd->chan, cmd->chan_len, cmd->offset, cmd->epoch,
                                  cmd->epoch_len, gw_payload_data(raw), raw->len, raw->binary,
                                  raw->t_recv);
        if (!cmd->env) {
            log_rl_error("out of memory: envelope", "conn_id=%llu len=%u",
                         (unsigned long long)c->id, raw->len);
            metrics_inc(gwm.undeliverable);
            gw_svc_close_conn(s, c, 1011, NULL);
            return;
        }
    }
    if (!cmd->offset || !cmd->chan_len) {
        gw_svc_deliver(s, c, cmd->env);
        return;
    }
    gw_chans_t *set = chans_of(c);
    if (!set) {
        metrics_inc(gwm.recover_events[GW_CR_EV_UNTRACKED]);
        gw_svc_deliver(s, c, cmd->env);
        return;
    }
    gw_cr_cfg_t k = cp_cfg();
    cp_ctx_t x = {s, c};
    gw_cr_live(set, &k, &cp_ops, &x, cmd->chan, cmd->chan_len, cmd->offset, cmd->epoch,
               cmd->epoch_len, cmd->env, cmd->env->len, clock_mono_ns());
    track(s, c);
}

void gw_cp_recovered(gw_svc_t *s, gw_cmd_t *cmd)
{
    gw_conn_t *c = cmd->nconns ? gw_conn_table_get(&s->conns, cmd->conns[0]) : NULL;
    metrics_add(gwm.recovered_pubs, cmd->npubs);
    if (!c || !c->chans || c->closing) {
        metrics_inc(gwm.recover_events[GW_CR_EV_LATE]);
        return;
    }
    gw_cr_pub_t stack[64], *pubs = cmd->npubs <= 64 ? stack : malloc(cmd->npubs * sizeof *pubs);
    if (!pubs) {
        log_rl_error("out of memory: recovered messages", "conn_id=%llu",
                     (unsigned long long)c->id);
        gw_svc_close_conn(s, c, 1011, NULL);
        return;
    }
    for (uint32_t i = 0; i < cmd->npubs; i++)
        pubs[i] = (gw_cr_pub_t){cmd->pubs[i].offset, cmd->pubs[i].env};
    gw_cr_cfg_t k = cp_cfg();
    cp_ctx_t x = {s, c};
    gw_cr_reply(c->chans, &k, &cp_ops, &x, cmd->chan ? cmd->chan : "", cmd->chan_len, cmd->rid,
                pubs, cmd->npubs, cmd->flags & GW_REC_MORE, cmd->offset,
                cmd->epoch ? cmd->epoch : "", cmd->epoch_len, cmd->flags & GW_REC_OK,
                clock_mono_ns());
    if (pubs != stack)
        free(pubs);
    track(s, c);
}

/* "room:" + room as a channel name: in buf (cap bytes) or allocated (*heap, to free). NULL
 * when out of memory. */
static char *room_chan(char *buf, size_t cap, const char *room, size_t len, char **heap)
{
    *heap = NULL;
    char *n = len + 5 <= cap ? buf : (*heap = malloc(len + 5));
    if (n) {
        memcpy(n, "room:", 5);
        memcpy(n + 5, room, len);
    }
    return n;
}

void gw_cp_join(gw_svc_t *s, gw_conn_t *c, const char *room, size_t len)
{
    if (!c->proto || !c->chans)
        return;
    char buf[320], *heap, *name = room_chan(buf, sizeof buf, room, len, &heap);
    if (!name)
        return;
    gw_cr_cfg_t k = cp_cfg();
    cp_ctx_t x = {s, c};
    gw_cr_start(c->chans, &k, &cp_ops, &x, name, len + 5, clock_mono_ns());
    free(heap);
    track(s, c);
}

void gw_cp_leave(gw_svc_t *s, gw_conn_t *c, const char *room, size_t len)
{
    if (!c->chans)
        return;
    char buf[320], *heap, *name = room_chan(buf, sizeof buf, room, len, &heap);
    if (!name)
        return;
    cp_ctx_t x = {s, c};
    gw_cr_leave(c->chans, &cp_ops, &x, name, len + 5);
    free(heap);
}

void gw_cp_tick(gw_svc_t *s)
{
    if (!s->ncp_busy)
        return;
    gw_cr_cfg_t k = cp_cfg();
    int64_t now = clock_mono_ns();
    size_t keep = 0;
    for (size_t i = 0; i < s->ncp_busy; i++) {
        gw_conn_t *c = gw_conn_table_get(&s->conns, s->cp_busy[i]);
        if (!c || !c->chans)
            continue;
        cp_ctx_t x = {s, c};
        if (gw_cr_tick(c->chans, &k, &cp_ops, &x, now))
            s->cp_busy[keep++] = c->id;
        else
            c->cp_listed = false;
    }
    s->ncp_busy = keep;
}

void gw_cp_thread_free(gw_svc_t *s)
{
    free(s->cp_busy);
    s->cp_busy = NULL;
    s->ncp_busy = s->cap_cp_busy = 0;
}
