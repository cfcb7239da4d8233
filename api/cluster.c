/* cluster.c: ws-api's Redis cluster layer (see cluster.h): its life, key names, gateway
 * sessions and their presence tokens, heartbeats, and readiness (the Lua scripts:
 * cluster_scripts.c). Loop thread only. */
#include "cluster_priv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "metrics.h"
#include "wsapi_metrics.h"

/* ---- key names ---------------------------------------------------------------------------- */

const char cl__key_reg_gw[] = "wsgw:{reg}:gw";
const char cl__key_reg_tok[] = "wsgw:{reg}:tok";
/* bumped by every bind (a gateway new to the registry, or on a new node), after the gateway is
 * registered: a node whose registry was read at another value reads it again before it sends
 * a broadcast (cluster_bus.c) */
const char cl__key_reg_ver[] = "wsgw:{reg}:ver";

int cl__key_meta(char *out, const char *gw)
{
    return snprintf(out, CL_KEY_MAX, "wsgw:{g:%s}:m", gw);
}

int cl__key_conns(char *out, const char *gw, const char *tok)
{
    return snprintf(out, CL_KEY_MAX, "wsgw:{g:%s}:c:%s", gw, tok);
}

int cl__key_tomb(char *out, const char *gw, const char *tok, uint64_t bucket)
{
    return snprintf(out, CL_KEY_MAX, "wsgw:{g:%s}:t:%s:%llu", gw, tok,
                    (unsigned long long)bucket);
}

int cl__key_user(char *out, const char *user)
{
    return snprintf(out, CL_KEY_MAX, "wsgw:{u:%s}", user);
}

int cl__key_room(char *out, const char *room)
{
    return snprintf(out, CL_KEY_MAX, "wsgw:{r:%s}", room);
}

/* ---- small helpers ------------------------------------------------------------------------ */

uint64_t cl__now_ms(void)
{
    return (uint64_t)(clock_mono_ns() / 1000000);
}

static uint64_t wall_ms(void)
{
    return (uint64_t)(clock_wall_ns() / 1000000);
}

void cl__new_token(cluster_t *cl, char out[CL_TOK_LEN + 1])
{
    cl->rng ^= cl->rng << 13;
    cl->rng ^= cl->rng >> 7;
    cl->rng ^= cl->rng << 17;
    uint64_t v = cl->rng ^ (uint64_t)clock_wall_ns();
    snprintf(out, CL_TOK_LEN + 1, "%016llx", (unsigned long long)v);
}

/* ---- sessions ------------------------------------------------------------------------------ */

static void register_gateway(cl_sess_t *cs, const char *exp);

void cl__sess_put(cl_sess_t *cs)
{
    if (--cs->refs > 0 || cs->live)
        return;
    while (cs->h_head) {
        cl_held_t *h = cs->h_head;
        cs->h_head = h->next;
        metrics_gauge_add(cs->cl->m_held, -1);
        free(h);
    }
    free(cs->gw);
    free(cs);
}

void cl__drop_session(cl_sess_t *cs, const char *why)
{
    if (!cs->live || !cs->drop)
        return;
    char g[96];
    log_rl_warn("gateway session dropped: it reconnects and re-sends its presence",
                "gateway=%s reason=\"%s\"", log_quote(g, sizeof g, cs->gw), why);
    cluster_drop_fn fn = cs->drop;
    cs->drop = NULL; /* once */
    fn(cs->drop_ud, why);
}

void cl__drop_gateway(cluster_t *cl, const char *gw, const char *why)
{
    for (cl_sess_t *cs = cl->sessions, *next; cs; cs = next) {
        next = cs->next;
        if (strcmp(cs->gw, gw) == 0)
            cl__drop_session(cs, why);
    }
}

void cl__mark_dirty(cl_sess_t *cs)
{
    cluster_t *cl = cs->cl;
    for (cl_dirty_t *d = cl->dirty; d; d = d->next)
        if (strcmp(d->gw, cs->gw) == 0)
            return;
    cl_dirty_t *d = calloc(1, sizeof *d);
    if (d)
        d->cl = cl;
    if (!d || !(d->gw = strdup(cs->gw))) {
        free(d);
        log_rl_error("out of memory marking a gateway's presence for a rebuild", "node=%s",
                     cl->node_id);
        return;
    }
    snprintf(d->tok, sizeof d->tok, "%s", cs->offline || !cs->tok[0] ? "*" : cs->tok);
    d->next = cl->dirty;
    cl->dirty = d;
    char g[96];
    log_rl_warn("presence writes missed while Redis was away: the gateway's presence is "
                "rebuilt when Redis is back", "gateway=%s", log_quote(g, sizeof g, cs->gw));
}

static void drain_held(cl_sess_t *cs)
{
    cluster_t *cl = cs->cl;
    cs->refs++; /* (the handler may drop the session) */
    while (cs->h_head && cs->live) {
        cl_held_t *h = cs->h_head;
        cs->h_head = h->next;
        if (!cs->h_head)
            cs->h_tail = NULL;
        cs->h_bytes -= h->len;
        metrics_gauge_add(cl->m_held, -1);
        if (h->s && cl->handler)
            cl->handler(cl->handler_ud, h->s, h->data, h->len);
        free(h);
    }
    cl__sess_put(cs);
}

static void on_bound(void *ud, redisReply *reply)
{
    cl_sess_t *cs = ud;
    cluster_t *cl = cs->cl;
    cs->binding = false;
    if (!cs->live) {
        cl__sess_put(cs);
        return;
    }
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING || reply->element[0]->len != CL_TOK_LEN) {
        char g[96];
        log_rl_warn("presence token not bound: retried", "gateway=%s error=%s",
                    log_quote(g, sizeof g, cs->gw),
                    reply && reply->type == REDIS_REPLY_ERROR ? reply->str : "no reply");
        cl__sess_put(cs); /* (the heartbeat binds it again, or binds it offline) */
        return;
    }
    memcpy(cs->tok, reply->element[0]->str, CL_TOK_LEN);
    cs->tok[CL_TOK_LEN] = 0;
    const redisReply *prev = reply->elements >= 3 ? reply->element[2] : NULL;
    bool has_prev = prev && prev->type == REDIS_REPLY_STRING && prev->len == CL_TOK_LEN &&
                    memcmp(prev->str, cs->tok, CL_TOK_LEN) != 0;
    memcpy(cs->ptok, has_prev ? prev->str : "", has_prev ? CL_TOK_LEN : 0);
    cs->ptok[has_prev ? CL_TOK_LEN : 0] = 0;
    cs->bound = true;
    char exp[24]; /* in the registry now, not at the next heartbeat: other nodes route to it */
    snprintf(exp, sizeof exp, "%llu", (unsigned long long)(wall_ms() + cl->cfg.ttl_ms));
    register_gateway(cs, exp);
    /* (on the link its Opens and Joins follow: a node that saw one of them sees this too) */
    redis_cmd(cl->r, NULL, NULL, "INCR %s", cl__key_reg_ver);
    if (reply->element[1]->integer == 1) {
        metrics_inc(cl->m_tok_made);
        char g[96];
        log_info("gateway presence token made", "gateway=%s token=%s node=%s",
                 log_quote(g, sizeof g, cs->gw), cs->tok, cl->node_id);
    }
    /* other sessions of this gateway here bound to an older token go (a new process of it) */
    for (cl_sess_t *o = cl->sessions, *next; o; o = next) {
        next = o->next;
        if (o != cs && o->bound && !o->offline && strcmp(o->gw, cs->gw) == 0 &&
            strcmp(o->tok, cs->tok) != 0) {
            metrics_inc(cl->m_tok_mismatch);
            cl__drop_session(o, "presence token changed");
        }
    }
    drain_held(cs);
    cl__sess_put(cs);
}

static void bind_session(cl_sess_t *cs)
{
    cluster_t *cl = cs->cl;
    if (cs->bound || cs->binding || !cs->live)
        return;
    if (!redis_up(cl->r)) {
        /* Redis is away: handle its batches now (messages flow; their presence writes are
         * missed), and rebuild the gateway's presence once Redis is back. */
        cs->bound = cs->offline = true;
        cl__mark_dirty(cs);
        drain_held(cs);
        return;
    }
    char meta[CL_KEY_MAX], now[24], ttl[24], tok[CL_TOK_LEN + 1];
    cl__key_meta(meta, cs->gw);
    cl__new_token(cl, tok);
    snprintf(now, sizeof now, "%llu", (unsigned long long)wall_ms());
    snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)cl->cfg.ttl_ms);
    const char *argv[] = {meta, "bind", cl->node_id, now, ttl, tok, cs->inst, cs->prefix, ""};
    cs->refs++;
    cs->binding = true;
    if (redis_eval(cl->r, &cl__hb_script, on_bound, cs, 1, 9, argv, NULL) != REDIS_C_OK) {
        cs->binding = false;
        cs->refs--;
    }
}

void cluster_set_handler(cluster_t *cl, cluster_batch_fn fn, void *ud)
{
    cl->handler = fn;
    cl->handler_ud = ud;
}

void cluster_set_room_refused(cluster_t *cl, cluster_refused_fn fn, void *ud)
{
    cl->refused = fn;
    cl->refused_ud = ud;
}

cl_sess_t *cluster_session_start(cluster_t *cl, const char *gateway_id, const char *inst,
                                 const char *prefix, cluster_drop_fn drop, void *ud)
{
    cl_sess_t *cs = calloc(1, sizeof *cs);
    if (!cs)
        return NULL;
    size_t gl = strlen(gateway_id);
    if (gl > CL_ID_MAX)
        gl = CL_ID_MAX; /* (a longer id is cut: keys stay bounded) */
    if (!(cs->gw = strndup(gateway_id, gl))) {
        free(cs);
        return NULL;
    }
    cs->cl = cl;
    cs->live = true;
    cs->refs = 1;
    cs->drop = drop;
    cs->drop_ud = ud;
    snprintf(cs->inst, sizeof cs->inst, "%s", inst ? inst : "");
    /* the conn id prefix: a number (gateway/conn_id.h: 16 bits) */
    if (prefix && *prefix && strlen(prefix) < 6 && strspn(prefix, "0123456789") == strlen(prefix) &&
        atoi(prefix) < 65536)
        snprintf(cs->prefix, sizeof cs->prefix, "%s", prefix);
    cs->next = cl->sessions;
    if (cl->sessions)
        cl->sessions->prev = cs;
    cl->sessions = cs;
    cl->nsessions++;
    metrics_gauge_set(cl->m_sessions, (int64_t)cl->nsessions);
    bind_session(cs);
    return cs;
}

void cluster_session_end(cl_sess_t *cs)
{
    if (!cs || !cs->live)
        return;
    cluster_t *cl = cs->cl;
    cs->live = false;
    cs->drop = NULL;
    if (cs->prev)
        cs->prev->next = cs->next;
    else
        cl->sessions = cs->next;
    if (cs->next)
        cs->next->prev = cs->prev;
    cs->prev = cs->next = NULL;
    cl->nsessions--;
    metrics_gauge_set(cl->m_sessions, (int64_t)cl->nsessions);
    bool other = false;
    for (cl_sess_t *o = cl->sessions; o && !other; o = o->next)
        other = strcmp(o->gw, cs->gw) == 0;
    if (!other && cs->bound && !cs->offline && !cl->stopped && redis_up(cl->r)) {
        /* we serve it no more: other nodes stop sending its commands through us */
        char meta[CL_KEY_MAX], field[CL_KEY_MAX];
        cl__key_meta(meta, cs->gw);
        snprintf(field, sizeof field, "n:%s", cl->node_id);
        redis_cmd(cl->r, NULL, NULL, "HDEL %s %s", meta, field);
    }
    cl__sess_put(cs);
}

bool cluster_session_bound(const cl_sess_t *cs)
{
    return cs->bound && !cs->h_head;
}

int cluster_session_hold(cl_sess_t *cs, api_stream_t *s, const uint8_t *msg, size_t len)
{
    cl_held_t *h = malloc(sizeof *h + len);
    if (!h)
        return -1;
    h->next = NULL;
    h->s = s;
    h->len = len;
    memcpy(h->data, msg, len);
    if (cs->h_tail)
        cs->h_tail->next = h;
    else
        cs->h_head = h;
    cs->h_tail = h;
    cs->h_bytes += len;
    metrics_gauge_add(cs->cl->m_held, 1);
    if (cs->bound) /* (bound while earlier ones wait their turn: keep the order) */
        return 0;
    bind_session(cs);
    return 0;
}

void cluster_stream_gone(cluster_t *cl, api_stream_t *s)
{
    for (cl_batch_t *b = s->cl_wait; b; b = b->snext)
        b->s = NULL;
    s->cl_wait = NULL;
    s->cl_out = 0;
    pres_session_t *ps = s->sess;
    cl_sess_t *cs = ps ? ps->cl : NULL;
    for (cl_held_t *h = cs ? cs->h_head : NULL; h; h = h->next)
        if (h->s == s)
            h->s = NULL;
    (void)cl;
}

/* ---- heartbeats ---------------------------------------------------------------------------- */

typedef struct beat {
    cl_sess_t *cs;
    char tok[CL_TOK_LEN + 1];
} beat_t;

static void on_beat(void *ud, redisReply *reply)
{
    beat_t *bt = ud;
    cl_sess_t *cs = bt->cs;
    cluster_t *cl = cs->cl;
    if (cs->live && reply && reply->type == REDIS_REPLY_ARRAY && reply->elements >= 2 &&
        reply->element[0]->type == REDIS_REPLY_STRING &&
        (reply->element[0]->len != CL_TOK_LEN ||
         memcmp(reply->element[0]->str, bt->tok, CL_TOK_LEN) != 0) &&
        strcmp(cs->tok, bt->tok) == 0) {
        /* its presence was lost (expired, Redis restarted) or rebuilt by another node: the
         * gateway must re-send it under the current token */
        metrics_inc(reply->element[1]->integer == 1 ? cl->m_tok_made : cl->m_tok_mismatch);
        cl__drop_session(cs, reply->element[1]->integer == 1 ? "presence lost in Redis"
                                                             : "presence token changed");
    }
    cl__sess_put(cs);
    free(bt);
}

/* The gateway in the registry every node reads (expiry exp, wall ms), its token among the
 * live ones (for the reaper). */
static void register_gateway(cl_sess_t *cs, const char *exp)
{
    cluster_t *cl = cs->cl;
    char member[CL_TOK_LEN + CL_ID_MAX + 2], wnow[24];
    snprintf(member, sizeof member, "%s%s", cs->tok, cs->gw);
    snprintf(wnow, sizeof wnow, "%llu", (unsigned long long)wall_ms());
    redis_cmd(cl->r, NULL, NULL, "ZADD %s %s %s", cl__key_reg_gw, exp, cs->gw);
    redis_cmd(cl->r, NULL, NULL, "ZADD %s %s %b", cl__key_reg_tok, wnow, member, strlen(member));
}

static void beat_session(cl_sess_t *cs, const char *now, const char *ttl, const char *exp)
{
    cluster_t *cl = cs->cl;
    char meta[CL_KEY_MAX], tok[CL_TOK_LEN + 1];
    cl__key_meta(meta, cs->gw);
    cl__new_token(cl, tok);
    beat_t *bt = malloc(sizeof *bt);
    if (!bt)
        return;
    bt->cs = cs;
    memcpy(bt->tok, cs->tok, sizeof bt->tok);
    const char *argv[] = {meta, "beat", cl->node_id, now, ttl, tok, "", "", cs->tok};
    cs->refs++;
    if (redis_eval(cl->r, &cl__hb_script, on_beat, bt, 1, 9, argv, NULL) != REDIS_C_OK) {
        cs->refs--;
        free(bt);
        return;
    }
    register_gateway(cs, exp);
}

static void on_rotated(void *ud, redisReply *reply)
{
    cl_dirty_t *d = ud;
    cluster_t *cl = d->cl;
    if (redis_reply_is_error(reply)) {
        /* try again on the next heartbeat */
        d->next = cl->dirty;
        cl->dirty = d;
        return;
    }
    metrics_inc(cl->m_tok_rotated);
    char g[96];
    log_info("gateway presence rebuilt after Redis was away", "gateway=%s",
             log_quote(g, sizeof g, d->gw));
    cl__drop_gateway(cl, d->gw, "presence rebuilt after Redis was away");
    free(d->gw);
    free(d);
}

/* Redis is back: gateways that missed writes get a new token (their sessions resync). */
static void rotate_dirty(cluster_t *cl)
{
    cl_dirty_t *list = cl->dirty;
    cl->dirty = NULL;
    while (list) {
        cl_dirty_t *d = list;
        list = d->next;
        char meta[CL_KEY_MAX], tok[CL_TOK_LEN + 1], now[24], ttl[24];
        cl__key_meta(meta, d->gw);
        cl__new_token(cl, tok);
        snprintf(now, sizeof now, "%llu", (unsigned long long)wall_ms());
        snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)cl->cfg.ttl_ms);
        const char *argv[] = {meta, "rotate", cl->node_id, now, ttl, tok, "", "", d->tok};
        if (redis_eval(cl->r, &cl__hb_script, on_rotated, d, 1, 9, argv, NULL) != REDIS_C_OK) {
            d->next = cl->dirty;
            cl->dirty = d;
        }
    }
}

static void on_heartbeat(uv_timer_t *t)
{
    cluster_t *cl = t->data;
    if (cl->stopped)
        return;
    cl->ticks++;
    cl__hold_sweep(cl);
    bool up = redis_up(cl->r);
    if (up && !cl->was_up) {
        if (cl->ever_up) {
            /* Redis came back: what it holds may be older than what gateways did meanwhile
             * (or empty, restarted): answer nothing for the grace, while gateways resync */
            cl->grace_until = cl__now_ms() + cl->cfg.grace_ms;
            cl__reg_await(cl);
            log_info("redis back: presence and push requests refused during the grace",
                     "grace_ms=%llu", (unsigned long long)cl->cfg.grace_ms);
        }
        cl->ever_up = true;
    }
    cl->was_up = up;
    if (!up)
        return;
    if (cl->dirty)
        rotate_dirty(cl);
    char now[24], ttl[24], exp[24];
    uint64_t w = wall_ms();
    snprintf(now, sizeof now, "%llu", (unsigned long long)w);
    snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)cl->cfg.ttl_ms);
    snprintf(exp, sizeof exp, "%llu", (unsigned long long)(w + cl->cfg.ttl_ms));
    for (cl_sess_t *cs = cl->sessions, *next; cs; cs = next) {
        next = cs->next;
        if (!cs->bound)
            bind_session(cs);
        else if (!cs->offline)
            beat_session(cs, now, ttl, exp);
    }
    cl__reg_refresh(cl);
    if (cl->ticks % 5 == 0)
        cl__reap(cl);
}

/* ---- readiness ----------------------------------------------------------------------------- */

bool cluster_ready(cluster_t *cl, const char **why)
{
    const char *w = NULL;
    if (!redis_up(cl->r))
        w = "redis unavailable";
    else if (!cl__reg_fresh(cl))
        w = "registry not read yet";
    else if (cl__now_ms() < cl->grace_until)
        w = "presence resyncing";
    else if (cl->reg.unsynced || cl__reg_awaiting(cl))
        w = "presence resyncing";
    bool ready = w == NULL;
    if (ready != cl->last_ready) {
        cl->last_ready = ready;
        metrics_gauge_set(wsapi_m.presence_ready, ready);
        if (ready)
            log_rl_info("cluster presence ready", "gateways=%zu sessions=%zu", cl->reg.n,
                        cl->nsessions);
        else
            log_rl_info("cluster presence not ready: push and presence requests refused",
                        "reason=\"%s\"", w);
    }
    if (why)
        *why = w;
    return ready;
}

/* ---- life ---------------------------------------------------------------------------------- */

static void on_redis_state(void *ud, bool cmd_up, bool sub_up)
{
    cluster_t *cl = ud;
    (void)sub_up;
    if (!cmd_up)
        cl->was_up = false; /* (a Redis back before the next heartbeat came back all the same) */
    else if (!cl->stopped)
        on_heartbeat(&cl->hb); /* at once: bind, register, read the registry */
}

cluster_t *cluster_new(uv_loop_t *loop, redis_t *r, presence_t *pres, router_t *router,
                       const cluster_cfg_t *cfg, char *err, size_t errlen)
{
    cluster_t *cl = calloc(1, sizeof *cl);
    if (!cl || !(cl->node_id = strdup(cfg->node_id))) {
        free(cl);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    cl->loop = loop;
    cl->r = r;
    cl->pres = pres;
    cl->router = router;
    cl->cfg = *cfg;
    cl->cfg.node_id = cl->node_id;
    cl->rng = (uint64_t)clock_mono_ns() ^ (uint64_t)(uintptr_t)cl ^ 0x2545f4914f6cdd1dULL;
    if (!cl->rng)
        cl->rng = 1;
    snprintf(cl->channel, sizeof cl->channel, "wsgw:{n:%s}", cl->node_id);
    cl->m_writes = metrics_counter("wsapi_cluster_writes_total", NULL,
                                   "Presence and room writes sent to Redis.");
    cl->m_write_fail = metrics_counter(
        "wsapi_cluster_write_failures_total", NULL,
        "Presence and room writes that got no answer (Redis away): acknowledged anyway, the "
        "gateway's presence is rebuilt when Redis is back.");
    cl->m_stale_open = metrics_counter(
        "wsapi_cluster_stale_opens_total", NULL,
        "Opens refused because their connection had closed already (read late by a node).");
    cl->m_rooms_carried = metrics_counter(
        "wsapi_cluster_rooms_carried_total", NULL,
        "Room memberships a connection re-sent under a gateway's new token took over from the "
        "token it replaced (their room listing entries written again).");
    const char *th = "Gateway presence tokens: made (first heard of, or lost), mismatch (a "
                     "session found another token and was dropped), rotated (rebuilt after "
                     "Redis was away).";
    cl->m_tok_made = metrics_counter("wsapi_cluster_token_events_total", "event=\"made\"", th);
    cl->m_tok_mismatch =
        metrics_counter("wsapi_cluster_token_events_total", "event=\"mismatch\"", th);
    cl->m_tok_rotated =
        metrics_counter("wsapi_cluster_token_events_total", "event=\"rotated\"", th);
    cl->m_forwarded = metrics_counter(
        "wsapi_cluster_forwarded_total", NULL,
        "Commands other nodes sent through us to gateways we serve, handed to their streams.");
    cl->m_fwd_lost = metrics_counter(
        "wsapi_cluster_undeliverable_total", NULL,
        "Commands for a gateway that no node could take (no live stream here, no node "
        "subscribed, or none serving it).");
    cl->m_published = metrics_counter("wsapi_cluster_published_total", NULL,
                                      "Commands published to another node for its gateways.");
    cl->m_bq_reread = metrics_counter(
        "wsapi_cluster_broadcast_rereads_total", NULL,
        "Registry reads before a broadcast because a gateway had bound since the last one.");
    cl->m_pub_retry = metrics_counter(
        "wsapi_cluster_publish_retries_total", NULL,
        "Publishes nobody received (that node was gone) sent again through another node.");
    cl->m_reaped = metrics_counter("wsapi_cluster_reaped_total", NULL,
                                   "Connections of dead presence tokens removed from Redis.");
    cl->m_cmd_held = metrics_counter(
        "wsapi_cluster_commands_held_total", NULL,
        "Commands for a gateway the registry names this node for, held until a stream of it "
        "attaches here (it restarted and the gateway has not reconnected yet).");
    cl->m_holding = metrics_gauge("wsapi_cluster_commands_held", NULL,
                                  "Commands held for gateways that have not reconnected here.");
    cl->m_held = metrics_gauge("wsapi_cluster_held_batches", NULL,
                               "Upstream batches waiting for their session's presence token.");
    cl->m_gateways = metrics_gauge("wsapi_cluster_gateways", NULL,
                                   "Live gateways in the Redis registry.");
    cl->m_sessions = metrics_gauge("wsapi_cluster_sessions", NULL,
                                   "Gateway sessions on this node.");
    cl->m_lookups = metrics_counter("wsapi_cluster_lookups_total", NULL,
                                    "Redis lookups of users, connections and rooms.");
    metrics_gauge_set(wsapi_m.presence_ready, 0);
    uv_timer_init(loop, &cl->hb);
    cl->hb.data = cl;
    uv_timer_start(&cl->hb, on_heartbeat, cfg->heartbeat_ms, cfg->heartbeat_ms);
    uv_unref((uv_handle_t *)&cl->hb);
    redis_script_t *scripts[] = {&cl__hb_script,    &cl__open_script,  &cl__close_script,
                                 &cl__room_script,  &cl__check_script, &cl__sync_script,
                                 &cl__unlink_script};
    for (size_t i = 0; i < sizeof scripts / sizeof scripts[0]; i++)
        redis_script_add(r, scripts[i]);
    if (redis_on_state(r, on_redis_state, cl) < 0 || cl__bus_start(cl) < 0) {
        snprintf(err, errlen, "out of memory");
        uv_timer_stop(&cl->hb);
        cl->stopped = true;
        return cl; /* (freed by the caller's cluster_free) */
    }
    pres->cluster = cl;
    log_info("cluster", "node=%s heartbeat_ms=%llu ttl_ms=%llu grace_ms=%llu channel=%s",
             cl->node_id, (unsigned long long)cfg->heartbeat_ms,
             (unsigned long long)cfg->ttl_ms, (unsigned long long)cfg->grace_ms, cl->channel);
    return cl;
}

static void on_hb_closed(uv_handle_t *h)
{
    (void)h; /* (cluster_free runs after the loop ran once more: nothing to touch here) */
}

void cluster_stop(cluster_t *cl)
{
    if (!cl || cl->stopped)
        return;
    cl->stopped = true;
    uv_timer_stop(&cl->hb);
    uv_close((uv_handle_t *)&cl->hb, on_hb_closed);
}

void cluster_free(cluster_t *cl)
{
    if (!cl)
        return;
    cluster_stop(cl);
    while (cl->sessions)
        cluster_session_end(cl->sessions);
    while (cl->dirty) {
        cl_dirty_t *d = cl->dirty;
        cl->dirty = d->next;
        free(d->gw);
        free(d);
    }
    while (cl->waiters) {
        cl_waiter_t *w = cl->waiters;
        cl->waiters = w->next;
        free(w);
    }
    cl__reg_free(&cl->reg);
    cl__bus_free(cl);
    cl__hold_free(cl);
    hmap_free(&cl->joins); /* (its nodes are the room writes in flight: freed with them) */
    for (size_t i = 0; i < cl->nawaited; i++)
        free(cl->awaited[i]);
    free(cl->awaited);
    if (cl->pres)
        cl->pres->cluster = NULL;
    free(cl->node_id);
    free(cl);
}
