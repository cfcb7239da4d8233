/* redis_link.c: a Redis link's life (see redis.h, redis_priv.h): resolving, connecting with a
 * deadline, the set-up (AUTH, SELECT, SCRIPT LOAD, SUBSCRIBE), the tick that enforces the
 * connect and command deadlines and probes the pub/sub link end to end, dropping and
 * reconnecting with jittered backoff, and creating and freeing the client. Lifetimes: redis.c's header.
 *
 * Threads: loop thread only. */
#include <hiredis/async.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "metrics.h"
#include "redis.h"
#include "redis_priv.h"
#include "redis_uv.h"

static const char *const reason_names[R_NREASONS] = {"error",   "timeout", "connect_timeout",
                                                     "setup",   "resolve", "probe"};

/* ---- connecting ----------------------------------------------------------------------------- */

static void on_probe_published(void *ud, redisReply *reply)
{
    (void)ud;
    (void)reply; /* a lost probe shows as no message on the sub link */
}

/* The link's connection is established: AUTH, SELECT, then scripts (cmd) or SUBSCRIBEs (sub).
 * The link is up once every one of them was answered. */
static void link_setup(rlink_t *l)
{
    redis_t *r = l->r;
    redis__set_state(l, L_SETUP);
    l->setup_left = 0;
    const char *pw = r->url.password[0] ? r->url.password : r->cfg.password;
    int rv = 0;
    if (pw && *pw) {
        if (r->url.user[0])
            rv |= redis__send_simple(l, P_SETUP, "AUTH %s %s", r->url.user, pw);
        else
            rv |= redis__send_simple(l, P_SETUP, "AUTH %s", pw);
        l->setup_left++;
    }
    if (r->url.db) {
        rv |= redis__send_simple(l, P_SETUP, "SELECT %d", r->url.db);
        l->setup_left++;
    }
    if (!l->sub) {
        redis__script_load_all(l);
        rv |= redis__send_simple(l, P_SETUP, "PING");
        l->setup_left++;
    } else {
        l->probe_sent_ms = 0;
        if (redis__subscribe_one(l, r->probe) < 0)
            rv = -1;
        for (sub_t *s = r->subs; s && rv == 0; s = s->next)
            if (redis__subscribe_one(l, s->channel) < 0)
                rv = -1;
    }
    if (rv != 0)
        redis__link_drop(l, R_ERROR, "cannot queue the connection set-up");
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    rlink_t *l = ac->data;
    if (!l || l->ac != ac)
        return;
    if (status != REDIS_OK) {
        /* hiredis frees the context after this callback */
        char e[160];
        log_quote(e, sizeof e, ac->errstr);
        l->ac = NULL;
        ((redisAsyncContext *)ac)->data = NULL;
        redis__link_drop(l, R_ERROR, e);
        return;
    }
    link_setup(l);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    (void)status;
    rlink_t *l = ac->data;
    if (!l || l->ac != ac)
        return; /* we dropped it ourselves */
    char e[160];
    log_quote(e, sizeof e, ac->err ? ac->errstr : "closed by the server");
    l->ac = NULL; /* hiredis frees it after this callback */
    ((redisAsyncContext *)ac)->data = NULL;
    redis__link_drop(l, R_ERROR, e);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    rlink_t *l = req->data;
    redis_t *r = l->r;
    l->gai_busy = false;
    r->handles_open--;
    if (r->freeing || l->st != L_RESOLVING) {
        if (res)
            uv_freeaddrinfo(res);
        if (r->freeing && r->handles_open == 0)
            free(r);
        return;
    }
    char ip[64] = "";
    for (struct addrinfo *a = res; status == 0 && a && !ip[0]; a = a->ai_next) {
        if (a->ai_family == AF_INET)
            uv_ip4_name((struct sockaddr_in *)a->ai_addr, ip, sizeof ip);
        else if (a->ai_family == AF_INET6)
            uv_ip6_name((struct sockaddr_in6 *)a->ai_addr, ip, sizeof ip);
    }
    if (res)
        uv_freeaddrinfo(res);
    if (!ip[0]) {
        char e[160];
        snprintf(e, sizeof e, "cannot resolve %.100s: %s", r->url.host,
                 status ? uv_strerror(status) : "no address");
        redis__link_drop(l, R_RESOLVE, e);
        return;
    }
    redisAsyncContext *ac = redisAsyncConnect(ip, r->url.port);
    if (!ac) {
        redis__link_drop(l, R_ERROR, "out of memory");
        return;
    }
    if (ac->err) {
        char e[160];
        log_quote(e, sizeof e, ac->errstr);
        redisAsyncFree(ac);
        redis__link_drop(l, R_ERROR, e);
        return;
    }
    if (redis_uv_attach(ac, r->loop) < 0) {
        redisAsyncFree(ac);
        redis__link_drop(l, R_ERROR, "cannot attach to the loop");
        return;
    }
    ac->data = l;
    l->ac = ac;
    redis__set_state(l, L_CONNECTING);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
}

void redis__link_connect(rlink_t *l)
{
    redis_t *r = l->r;
    l->deadline_ms = redis__now_ms() + r->cfg.connect_timeout_ms;
    redis__set_state(l, L_RESOLVING);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    l->gai.data = l;
    int rv = uv_getaddrinfo(r->loop, &l->gai, on_resolved, r->url.host, NULL, &hints);
    if (rv != 0) {
        char e[160];
        snprintf(e, sizeof e, "getaddrinfo: %s", uv_strerror(rv));
        redis__link_drop(l, R_RESOLVE, e);
        return;
    }
    l->gai_busy = true;
    r->handles_open++;
}

/* Drops the link (its pending callers get NULL) and schedules a reconnect. */
void redis__link_drop(rlink_t *l, int reason, const char *detail)
{
    redis_t *r = l->r;
    bool was_up = l->st == L_UP;
    redisAsyncContext *ac = l->ac;
    l->ac = NULL;
    redis__set_state(l, L_DOWN);
    redis__pend_fail_all(l);
    if (ac) {
        ac->data = NULL;
        redisAsyncFree(ac); /* (deferred by hiredis when inside one of its callbacks) */
    }
    l->probe_sent_ms = 0;
    if (r->freeing)
        return;
    metrics_inc(l->m_drops[reason]);
    uint64_t base = r->cfg.backoff_min_ms;
    for (int i = 0; i < l->attempt && base < r->cfg.backoff_max_ms; i++)
        base *= 2;
    if (base > r->cfg.backoff_max_ms)
        base = r->cfg.backoff_max_ms;
    uint64_t wait = base / 2 + redis__rnd(r) % (base / 2 + 1);
    l->attempt++;
    l->retry_at_ms = redis__now_ms() + wait;
    /* (one rate limit per link and kind: a down Redis is one line a second per link) */
#define DROP_LOG(what)                                                                         \
    log_rl_warn(what, "link=%s server=%s reason=%s detail=%s retry_ms=%llu", l->name, r->desc,  \
                reason_names[reason], detail ? detail : "", (unsigned long long)wait)
    if (was_up && l->sub)
        DROP_LOG("redis link down");
    else if (was_up)
        DROP_LOG("redis link down");
    else if (l->sub)
        DROP_LOG("redis connect failed");
    else
        DROP_LOG("redis connect failed");
#undef DROP_LOG
}

/* Every tick: reconnects, connect deadlines, reply deadlines, idle PINGs, sub link probes. */
static void on_tick(uv_timer_t *t)
{
    rlink_t *l = t->data;
    redis_t *r = l->r;
    uint64_t now = redis__now_ms();
    switch (l->st) {
    case L_DOWN:
        if (now >= l->retry_at_ms)
            redis__link_connect(l);
        return;
    case L_RESOLVING:
    case L_CONNECTING:
    case L_SETUP:
        if (now >= l->deadline_ms)
            redis__link_drop(l, R_CONNECT_TIMEOUT, "connect, AUTH or set-up not done in time");
        return;
    case L_UP:
        break;
    }
    if (!l->sub) {
        /* dead = commands wait and nothing came for timeout_ms: a Redis that answers, however
         * far behind (a storm of writes), is alive; its backlog is bounded by max_pending */
        uint64_t since = l->head && l->last_rx_ms > l->head->sent_ms ? l->last_rx_ms
                         : l->head                                   ? l->head->sent_ms
                                                                     : 0;
        if (l->head && now - since >= r->cfg.timeout_ms) {
            char d[96];
            snprintf(d, sizeof d, "no reply for %llu ms, %zu pending",
                     (unsigned long long)(now - since), l->npend);
            redis__link_drop(l, R_TIMEOUT, d);
            return;
        }
        if (r->cfg.ping_interval_ms && !l->head && now - l->last_rx_ms >= r->cfg.ping_interval_ms) {
            redis__send_simple(l, P_PING, "PING");
            l->last_rx_ms = now; /* (not again before this one is answered or times out) */
        }
        return;
    }
    /* sub: publish to our probe channel through the cmd link; it must come round in time */
    if (l->probe_sent_ms && now - l->probe_sent_ms >= r->cfg.timeout_ms) {
        redis__link_drop(l, R_PROBE, "our probe message did not come back");
        return;
    }
    if (r->cfg.ping_interval_ms && !l->probe_sent_ms && r->cmd.st == L_UP &&
        now - l->last_rx_ms >= r->cfg.ping_interval_ms &&
        redis__send_argv(&r->cmd, P_PROBE, on_probe_published, NULL, 3,
                  (const char *[]){"PUBLISH", r->probe, "p"}, (const size_t[]){7, strlen(r->probe), 1}) ==
            REDIS_C_OK)
        l->probe_sent_ms = now;
}

/* ---- life ----------------------------------------------------------------------------------- */

static void on_handle_closed(uv_handle_t *h)
{
    redis_t *r = h->data;
    if (--r->handles_open == 0 && r->freeing)
        free(r);
}

static void link_init(redis_t *r, rlink_t *l, const char *name, bool sub)
{
    l->r = r;
    l->name = name;
    l->sub = sub;
    char lb[32];
    snprintf(lb, sizeof lb, "link=\"%s\"", name);
    l->m_up = metrics_gauge("wsapi_redis_up", lb, "1 while the Redis link is connected and "
                                                  "set up (cmd: commands, sub: pub/sub).");
    l->m_connects = metrics_counter("wsapi_redis_connects_total", lb,
                                    "Redis link connections made (set-up done).");
    for (int i = 0; i < R_NREASONS; i++) {
        char rl[80];
        snprintf(rl, sizeof rl, "link=\"%s\",reason=\"%s\"", name, reason_names[i]);
        l->m_drops[i] = metrics_counter(
            "wsapi_redis_disconnects_total", rl,
            "Redis links dropped or connects failed, by reason: error (connection error or "
            "closed), timeout (--redis-timeout), connect_timeout (--redis-connect-timeout), "
            "setup (AUTH/SELECT/SCRIPT LOAD refused), resolve (host name), probe (sub link: "
            "our own probe message did not come back).");
    }
    metrics_gauge_set(l->m_up, 0);
    uv_timer_init(r->loop, &l->tick);
    l->tick.data = l;
    r->handles_open++;
    uint64_t every = r->cfg.timeout_ms / 4;
    if (r->cfg.connect_timeout_ms / 4 < every)
        every = r->cfg.connect_timeout_ms / 4;
    if (every < 10)
        every = 10;
    if (every > 250)
        every = 250;
    uv_timer_start(&l->tick, on_tick, every, every);
    uv_unref((uv_handle_t *)&l->tick);
}

redis_t *redis_new(uv_loop_t *loop, const redis_cfg_t *cfg, char err[REDIS_ERR_LEN])
{
    redis_t *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(err, REDIS_ERR_LEN, "out of memory");
        return NULL;
    }
    char uerr[REDIS_URL_ERR_LEN];
    if (redis_url_parse(cfg->url, &r->url, uerr) < 0) {
        snprintf(err, REDIS_ERR_LEN, "--redis: %s", uerr);
        free(r);
        return NULL;
    }
    r->loop = loop;
    r->cfg = *cfg;
    r->cfg.url = NULL; /* (parsed; not kept) */
    r->cfg.password = NULL;
    if (cfg->password && *cfg->password && !r->url.password[0]) {
        if (strlen(cfg->password) >= sizeof r->url.password) {
            snprintf(err, REDIS_ERR_LEN, "--redis-password too long");
            free(r);
            return NULL;
        }
        strcpy(r->url.password, cfg->password);
    }
    if (!r->cfg.max_pending)
        r->cfg.max_pending = 1;
    if (r->cfg.backoff_min_ms < 1)
        r->cfg.backoff_min_ms = 1;
    if (r->cfg.backoff_max_ms < r->cfg.backoff_min_ms)
        r->cfg.backoff_max_ms = r->cfg.backoff_min_ms;
    redis_url_describe(&r->url, r->desc, sizeof r->desc);
    r->rng = (uint64_t)clock_mono_ns() ^ (uint64_t)(uintptr_t)r ^ 0x9e3779b97f4a7c15ULL;
    if (!r->rng)
        r->rng = 1;
    snprintf(r->probe, sizeof r->probe, PROBE_PREFIX "%016llx", (unsigned long long)redis__rnd(r));
    r->m_cmds = metrics_counter("wsapi_redis_commands_total", NULL, "Redis commands sent.");
    r->m_cmd_errors = metrics_counter(
        "wsapi_redis_command_errors_total", NULL,
        "Redis commands answered with an error, or that got no reply (link lost or timed out).");
    r->m_refused = metrics_counter(
        "wsapi_redis_commands_refused_total", NULL,
        "Redis commands not sent: the link was down, or --redis-max-pending were in flight.");
    r->m_pending = metrics_gauge("wsapi_redis_pending", NULL,
                                 "Redis commands awaiting a reply.");
    r->m_latency = metrics_histogram("wsapi_redis_latency_seconds", NULL,
                                     "Redis command round trips (sent to reply).",
                                     metrics_latency_bounds, metrics_latency_nbounds, 1e-9);
    r->m_messages = metrics_counter("wsapi_redis_messages_total", NULL,
                                    "Pub/sub messages received on subscribed channels.");
    link_init(r, &r->cmd, "cmd", false);
    link_init(r, &r->sub, "sub", true);
    redis__link_connect(&r->cmd);
    redis__link_connect(&r->sub);
    log_info("redis", "server=%s auth=%s connect_timeout_ms=%llu timeout_ms=%llu max_pending=%zu",
             r->desc, r->url.password[0] ? (r->url.user[0] ? "user" : "password") : "none",
             (unsigned long long)r->cfg.connect_timeout_ms,
             (unsigned long long)r->cfg.timeout_ms, r->cfg.max_pending);
    return r;
}

void redis_free(redis_t *r)
{
    if (!r)
        return;
    r->freeing = true;
    rlink_t *links[2] = {&r->cmd, &r->sub};
    for (int i = 0; i < 2; i++) {
        rlink_t *l = links[i];
        redis__link_drop(l, R_ERROR, "stopping");
        if (l->gai_busy)
            uv_cancel((uv_req_t *)&l->gai); /* on_resolved frees r if it is the last */
        uv_timer_stop(&l->tick);
        l->tick.data = r;
        uv_close((uv_handle_t *)&l->tick, on_handle_closed);
    }
    while (r->subs) {
        sub_t *s = r->subs;
        r->subs = s->next;
        free(s->channel);
        free(s);
    }
    memset(r->url.password, 0, sizeof r->url.password);
}
