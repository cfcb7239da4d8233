/* redis.c: ws-api's Redis client (see redis.h): two hiredis 0.14 async links on the libuv loop,
 * connect/command deadlines, reconnects, scripts and subscriptions.
 *
 * Lifetimes. hiredis calls the callback of every command exactly once: with the reply, or
 * with NULL when the context is freed (by us, or by hiredis after a connection error). Our
 * per-command record (pend_t) is hiredis' privdata and is freed in that callback, never before.
 * When we drop a link ourselves, its pending records are first failed towards their callers
 * (fn(ud, NULL)) and marked orphaned, then the context is freed: hiredis' NULL callbacks for
 * them only free them. A link never reconnects from inside a hiredis callback (a timer does
 * it), so an old context's late callbacks never mix with a new one's.
 *
 * Threads: loop thread only. */
#include "redis.h"
#include "redis_uv.h"

#include <hiredis/async.h>
#include <openssl/sha.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "metrics.h"

#define MAX_LISTENERS 8
#define PROBE_PREFIX "wsgw:probe:"

typedef enum { L_DOWN = 0, L_RESOLVING, L_CONNECTING, L_SETUP, L_UP } lstate_t;
typedef enum { P_USER = 0, P_SETUP, P_PING, P_SCRIPT, P_EVAL, P_PROBE } pkind_t;

/* why a link was dropped: wsapi_redis_disconnects_total{reason} */
enum { R_ERROR = 0, R_TIMEOUT, R_CONNECT_TIMEOUT, R_SETUP, R_RESOLVE, R_PROBE, R_NREASONS };
static const char *const reason_names[R_NREASONS] = {"error",   "timeout", "connect_timeout",
                                                     "setup",   "resolve", "probe"};

typedef struct rlink rlink_t;

typedef struct pend {
    struct pend *next;
    rlink_t *l;          /* NULL: orphaned (its link was dropped; the caller was told) */
    redis_reply_fn fn;
    void *ud;
    uint64_t sent_ms;
    uint8_t kind;        /* pkind_t */
} pend_t;

struct rlink {
    redis_t *r;
    const char *name; /* "cmd" / "sub" */
    bool sub;
    lstate_t st;
    redisAsyncContext *ac;
    uv_getaddrinfo_t gai;
    bool gai_busy;
    uv_timer_t tick;
    uint64_t retry_at_ms;  /* L_DOWN: reconnect at */
    uint64_t deadline_ms;  /* L_RESOLVING..L_SETUP: connect deadline */
    int attempt;           /* failed connects in a row */
    pend_t *head, *tail;   /* cmd: commands awaiting replies, oldest first */
    size_t npend;
    int setup_left;        /* replies still awaited before the link is up */
    uint64_t last_rx_ms;   /* last reply or message */
    uint64_t probe_sent_ms; /* sub: probe published at (0: none out) */
    int m_up, m_connects, m_drops[R_NREASONS];
};

typedef struct sub {
    struct sub *next;
    char *channel;
    redis_msg_fn fn;
    void *ud;
} sub_t;

struct redis {
    uv_loop_t *loop;
    redis_cfg_t cfg;
    redis_url_t url;
    char desc[300];
    char probe[64]; /* our private probe channel (sub link liveness, end to end) */
    rlink_t cmd, sub;
    redis_script_t *scripts;
    sub_t *subs;
    struct {
        redis_state_fn fn;
        void *ud;
    } listeners[MAX_LISTENERS];
    int nlisteners;
    bool last_cmd_up, last_sub_up;
    int handles_open;
    bool freeing;
    uint64_t rng;
    int m_cmds, m_cmd_errors, m_refused, m_pending, m_latency, m_messages;
};

static void link_connect(rlink_t *l);
static void link_drop(rlink_t *l, int reason, const char *detail);

static uint64_t now_ms(void)
{
    return (uint64_t)(clock_mono_ns() / 1000000);
}

static uint64_t rnd(redis_t *r)
{
    r->rng ^= r->rng << 13;
    r->rng ^= r->rng >> 7;
    r->rng ^= r->rng << 17;
    return r->rng;
}

/* ---- state ---------------------------------------------------------------------------------- */

static void notify(redis_t *r)
{
    if (r->freeing)
        return; /* (listeners may be gone already) */
    bool cu = r->cmd.st == L_UP, su = r->sub.st == L_UP;
    if (cu == r->last_cmd_up && su == r->last_sub_up)
        return;
    r->last_cmd_up = cu;
    r->last_sub_up = su;
    for (int i = 0; i < r->nlisteners; i++)
        r->listeners[i].fn(r->listeners[i].ud, cu, su);
}

static void set_state(rlink_t *l, lstate_t st)
{
    bool was = l->st == L_UP;
    l->st = st;
    if (was != (st == L_UP))
        metrics_gauge_set(l->m_up, st == L_UP);
    if (was != (st == L_UP))
        notify(l->r);
}

bool redis_up(const redis_t *r)
{
    return r && r->cmd.st == L_UP;
}

bool redis_sub_up(const redis_t *r)
{
    return r && r->sub.st == L_UP;
}

const char *redis_describe(const redis_t *r)
{
    return r->desc;
}

size_t redis_pending(const redis_t *r)
{
    return r->cmd.npend;
}

int redis_on_state(redis_t *r, redis_state_fn fn, void *ud)
{
    if (r->nlisteners == MAX_LISTENERS)
        return -1;
    r->listeners[r->nlisteners].fn = fn;
    r->listeners[r->nlisteners].ud = ud;
    r->nlisteners++;
    return 0;
}

bool redis_reply_is_error(const redisReply *reply)
{
    return !reply || reply->type == REDIS_REPLY_ERROR;
}

const char *redis_reply_error(const redisReply *reply)
{
    if (!reply)
        return "no reply";
    return reply->type == REDIS_REPLY_ERROR && reply->str ? reply->str : "";
}

/* ---- pending commands ----------------------------------------------------------------------- */

static void pend_unlink_head(rlink_t *l, pend_t *p)
{
    if (l->head != p) {
        /* hiredis answers in order: anything else is a bug; unlink wherever it is */
        log_rl_error("redis reply out of order", "link=%s", l->name);
        for (pend_t **pp = &l->head; *pp; pp = &(*pp)->next)
            if (*pp == p) {
                *pp = p->next;
                break;
            }
        l->tail = NULL;
        for (pend_t *q = l->head; q; q = q->next)
            l->tail = q;
    } else {
        l->head = p->next;
        if (!l->head)
            l->tail = NULL;
    }
    p->next = NULL;
    l->npend--;
    if (!l->sub)
        metrics_gauge_set(l->r->m_pending, (int64_t)l->npend);
}

/* Fails every pending record of l towards its caller and orphans it (hiredis frees it). */
static void pend_fail_all(rlink_t *l)
{
    while (l->head) {
        pend_t *p = l->head;
        pend_unlink_head(l, p);
        p->l = NULL;
        redis_reply_fn fn = p->fn;
        p->fn = NULL;
        if (fn)
            fn(p->ud, NULL);
    }
}

static void script_load_all(rlink_t *l);

/* hiredis' callback for every command we sent (privdata: its pend_t). */
static void on_reply(redisAsyncContext *ac, void *reply_, void *privdata)
{
    (void)ac;
    pend_t *p = privdata;
    redisReply *reply = reply_;
    rlink_t *l = p->l;
    if (!l) { /* orphaned: its caller already got NULL */
        free(p);
        return;
    }
    redis_t *r = l->r;
    pend_unlink_head(l, p);
    uint64_t now = now_ms();
    if (reply)
        l->last_rx_ms = now;
    if (p->kind == P_USER || p->kind == P_EVAL)
        metrics_observe(r->m_latency, (now - p->sent_ms) * 1000000ULL);
    if (!reply || reply->type == REDIS_REPLY_ERROR)
        metrics_inc(r->m_cmd_errors);
    if (p->kind == P_SETUP || p->kind == P_SCRIPT) {
        if (redis_reply_is_error(reply)) {
            char e[160];
            log_quote(e, sizeof e, redis_reply_error(reply));
            free(p);
            if (reply)
                link_drop(l, R_SETUP, e);
            return;
        }
        if (l->st == L_SETUP && --l->setup_left == 0) {
            l->attempt = 0;
            metrics_inc(l->m_connects);
            log_info("redis connected", "link=%s server=%s", l->name, r->desc);
            set_state(l, L_UP);
        }
        free(p);
        return;
    }
    if (p->kind == P_EVAL && reply && reply->type == REDIS_REPLY_ERROR && reply->str &&
        strncmp(reply->str, "NOSCRIPT", 8) == 0) {
        log_rl_warn("redis lost our scripts (SCRIPT FLUSH?): loading them again", "server=%s",
                    r->desc);
        script_load_all(l);
    }
    redis_reply_fn fn = p->fn;
    void *ud = p->ud;
    free(p);
    if (fn)
        fn(ud, reply);
}

/* A command's pending entry: NULL when out of memory. */
static pend_t *pend_new(rlink_t *l, pkind_t kind, redis_reply_fn fn, void *ud)
{
    pend_t *p = calloc(1, sizeof *p);
    if (p) {
        p->l = l;
        p->fn = fn;
        p->ud = ud;
        p->kind = (uint8_t)kind;
        p->sent_ms = now_ms();
    }
    return p;
}

/* p was handed to hiredis: it waits at the tail of the link's queue. */
static int pend_queued(rlink_t *l, pend_t *p)
{
    if (l->tail)
        l->tail->next = p;
    else
        l->head = p;
    l->tail = p;
    l->npend++;
    if (!l->sub)
        metrics_gauge_set(l->r->m_pending, (int64_t)l->npend);
    return REDIS_C_OK;
}

static int send_argv(rlink_t *l, pkind_t kind, redis_reply_fn fn, void *ud, int argc,
                     const char **argv, const size_t *argvlen)
{
    pend_t *p = pend_new(l, kind, fn, ud);
    if (!p)
        return REDIS_C_NOMEM;
    if (redisAsyncCommandArgv(l->ac, on_reply, p, argc, argv, argvlen) != REDIS_OK) {
        free(p);
        return REDIS_C_DOWN;
    }
    return pend_queued(l, p);
}

static int send_fmt(rlink_t *l, pkind_t kind, redis_reply_fn fn, void *ud, const char *fmt,
                    va_list ap)
{
    pend_t *p = pend_new(l, kind, fn, ud);
    if (!p)
        return REDIS_C_NOMEM;
    if (redisvAsyncCommand(l->ac, on_reply, p, fmt, ap) != REDIS_OK) {
        free(p);
        return REDIS_C_DOWN;
    }
    return pend_queued(l, p);
}

static int send_simple(rlink_t *l, pkind_t kind, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rv = send_fmt(l, kind, NULL, NULL, fmt, ap);
    va_end(ap);
    return rv;
}

/* A command may go now: cmd link up, below the cap. Counted when refused. */
static int admit(redis_t *r)
{
    /* (a context hiredis is tearing down calls our callbacks with NULL: refuse meanwhile) */
    if (r->cmd.st != L_UP || !r->cmd.ac ||
        (r->cmd.ac->c.flags & (REDIS_DISCONNECTING | REDIS_FREEING))) {
        metrics_inc(r->m_refused);
        return REDIS_C_DOWN;
    }
    if (r->cmd.npend >= r->cfg.max_pending) {
        metrics_inc(r->m_refused);
        log_rl_warn("redis: too many commands in flight, refused", "pending=%zu max=%zu",
                    r->cmd.npend, r->cfg.max_pending);
        return REDIS_C_BUSY;
    }
    return REDIS_C_OK;
}

int redis_cmd(redis_t *r, redis_reply_fn fn, void *ud, const char *fmt, ...)
{
    int rv = admit(r);
    if (rv != REDIS_C_OK)
        return rv;
    va_list ap;
    va_start(ap, fmt);
    rv = send_fmt(&r->cmd, P_USER, fn, ud, fmt, ap);
    va_end(ap);
    if (rv == REDIS_C_OK)
        metrics_inc(r->m_cmds);
    return rv;
}

int redis_cmd_argv(redis_t *r, redis_reply_fn fn, void *ud, int argc, const char **argv,
                   const size_t *argvlen)
{
    int rv = admit(r);
    if (rv != REDIS_C_OK)
        return rv;
    rv = send_argv(&r->cmd, P_USER, fn, ud, argc, argv, argvlen);
    if (rv == REDIS_C_OK)
        metrics_inc(r->m_cmds);
    return rv;
}

/* ---- scripts -------------------------------------------------------------------------------- */

static void sha1_hex(const char *text, char out[41])
{
    unsigned char d[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)text, strlen(text), d);
    for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* SCRIPT LOAD for every script (setup replies while connecting, plain ones once up). */
static void script_load_all(rlink_t *l)
{
    for (redis_script_t *s = l->r->scripts; s; s = s->next)
        if (send_simple(l, P_SCRIPT, "SCRIPT LOAD %s", s->text) == REDIS_C_OK &&
            l->st == L_SETUP)
            l->setup_left++;
}

void redis_script_add(redis_t *r, redis_script_t *s)
{
    sha1_hex(s->text, s->sha);
    s->next = r->scripts;
    r->scripts = s;
    if (r->cmd.st == L_UP)
        send_simple(&r->cmd, P_SCRIPT, "SCRIPT LOAD %s", s->text);
}

int redis_eval(redis_t *r, const redis_script_t *s, redis_reply_fn fn, void *ud, int nkeys,
               int argc, const char **argv, const size_t *argvlen)
{
    int rv = admit(r);
    if (rv != REDIS_C_OK)
        return rv;
    enum { MAXARGS = 64 };
    if (argc + 3 > MAXARGS)
        return REDIS_C_NOMEM;
    const char *av[MAXARGS];
    size_t al[MAXARGS];
    char nk[16];
    snprintf(nk, sizeof nk, "%d", nkeys);
    av[0] = "EVALSHA";
    al[0] = 7;
    av[1] = s->sha;
    al[1] = 40;
    av[2] = nk;
    al[2] = strlen(nk);
    for (int i = 0; i < argc; i++) {
        av[3 + i] = argv[i];
        al[3 + i] = argvlen ? argvlen[i] : strlen(argv[i]);
    }
    rv = send_argv(&r->cmd, P_EVAL, fn, ud, argc + 3, av, al);
    if (rv == REDIS_C_OK)
        metrics_inc(r->m_cmds);
    return rv;
}

/* ---- subscriptions -------------------------------------------------------------------------- */

/* hiredis' callback for every reply on the subscribed link (privdata: the link). */
static void on_sub_reply(redisAsyncContext *ac, void *reply_, void *privdata)
{
    (void)ac;
    rlink_t *l = privdata;
    redisReply *reply = reply_;
    if (!reply || !l->ac || l->ac != ac)
        return; /* the context is going (NULL at free), or an old one */
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_STRING)
        return;
    redis_t *r = l->r;
    const char *kind = reply->element[0]->str;
    const char *ch = reply->element[1]->str;
    l->last_rx_ms = now_ms();
    if (strcasecmp(kind, "subscribe") == 0) {
        if (l->st == L_SETUP && --l->setup_left == 0) {
            l->attempt = 0;
            metrics_inc(l->m_connects);
            log_info("redis connected", "link=%s server=%s", l->name, r->desc);
            set_state(l, L_UP);
        }
        return;
    }
    if (strcasecmp(kind, "message") != 0 || reply->element[2]->type != REDIS_REPLY_STRING)
        return;
    if (strcmp(ch, r->probe) == 0) {
        l->probe_sent_ms = 0; /* the probe came round: our subscriptions are live */
        return;
    }
    metrics_inc(r->m_messages);
    for (sub_t *s = r->subs; s; s = s->next)
        if (strcmp(s->channel, ch) == 0) {
            s->fn(s->ud, reply->element[2]->str, reply->element[2]->len);
            if (!l->ac)
                return; /* the callback dropped the link */
        }
}

static int subscribe_one(rlink_t *l, const char *channel)
{
    if (redisAsyncCommand(l->ac, on_sub_reply, l, "SUBSCRIBE %s", channel) != REDIS_OK)
        return -1;
    if (l->st == L_SETUP)
        l->setup_left++;
    return 0;
}

int redis_subscribe(redis_t *r, const char *channel, redis_msg_fn fn, void *ud)
{
    sub_t *s = calloc(1, sizeof *s);
    if (!s || !(s->channel = strdup(channel))) {
        free(s);
        return -1;
    }
    s->fn = fn;
    s->ud = ud;
    s->next = r->subs;
    r->subs = s;
    if ((r->sub.st == L_UP || r->sub.st == L_SETUP) && r->sub.ac)
        subscribe_one(&r->sub, channel);
    return 0;
}

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
    set_state(l, L_SETUP);
    l->setup_left = 0;
    const char *pw = r->url.password[0] ? r->url.password : r->cfg.password;
    int rv = 0;
    if (pw && *pw) {
        if (r->url.user[0])
            rv |= send_simple(l, P_SETUP, "AUTH %s %s", r->url.user, pw);
        else
            rv |= send_simple(l, P_SETUP, "AUTH %s", pw);
        l->setup_left++;
    }
    if (r->url.db) {
        rv |= send_simple(l, P_SETUP, "SELECT %d", r->url.db);
        l->setup_left++;
    }
    if (!l->sub) {
        script_load_all(l);
        rv |= send_simple(l, P_SETUP, "PING");
        l->setup_left++;
    } else {
        l->probe_sent_ms = 0;
        if (subscribe_one(l, r->probe) < 0)
            rv = -1;
        for (sub_t *s = r->subs; s && rv == 0; s = s->next)
            if (subscribe_one(l, s->channel) < 0)
                rv = -1;
    }
    if (rv != 0)
        link_drop(l, R_ERROR, "cannot queue the connection set-up");
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
        link_drop(l, R_ERROR, e);
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
    link_drop(l, R_ERROR, e);
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
        link_drop(l, R_RESOLVE, e);
        return;
    }
    redisAsyncContext *ac = redisAsyncConnect(ip, r->url.port);
    if (!ac) {
        link_drop(l, R_ERROR, "out of memory");
        return;
    }
    if (ac->err) {
        char e[160];
        log_quote(e, sizeof e, ac->errstr);
        redisAsyncFree(ac);
        link_drop(l, R_ERROR, e);
        return;
    }
    if (redis_uv_attach(ac, r->loop) < 0) {
        redisAsyncFree(ac);
        link_drop(l, R_ERROR, "cannot attach to the loop");
        return;
    }
    ac->data = l;
    l->ac = ac;
    set_state(l, L_CONNECTING);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
}

static void link_connect(rlink_t *l)
{
    redis_t *r = l->r;
    l->deadline_ms = now_ms() + r->cfg.connect_timeout_ms;
    set_state(l, L_RESOLVING);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    l->gai.data = l;
    int rv = uv_getaddrinfo(r->loop, &l->gai, on_resolved, r->url.host, NULL, &hints);
    if (rv != 0) {
        char e[160];
        snprintf(e, sizeof e, "getaddrinfo: %s", uv_strerror(rv));
        link_drop(l, R_RESOLVE, e);
        return;
    }
    l->gai_busy = true;
    r->handles_open++;
}

/* Drops the link (its pending callers get NULL) and schedules a reconnect. */
static void link_drop(rlink_t *l, int reason, const char *detail)
{
    redis_t *r = l->r;
    bool was_up = l->st == L_UP;
    redisAsyncContext *ac = l->ac;
    l->ac = NULL;
    set_state(l, L_DOWN);
    pend_fail_all(l);
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
    uint64_t wait = base / 2 + rnd(r) % (base / 2 + 1);
    l->attempt++;
    l->retry_at_ms = now_ms() + wait;
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
    uint64_t now = now_ms();
    switch (l->st) {
    case L_DOWN:
        if (now >= l->retry_at_ms)
            link_connect(l);
        return;
    case L_RESOLVING:
    case L_CONNECTING:
    case L_SETUP:
        if (now >= l->deadline_ms)
            link_drop(l, R_CONNECT_TIMEOUT, "connect, AUTH or set-up not done in time");
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
            link_drop(l, R_TIMEOUT, d);
            return;
        }
        if (r->cfg.ping_interval_ms && !l->head && now - l->last_rx_ms >= r->cfg.ping_interval_ms) {
            send_simple(l, P_PING, "PING");
            l->last_rx_ms = now; /* (not again before this one is answered or times out) */
        }
        return;
    }
    /* sub: publish to our probe channel through the cmd link; it must come round in time */
    if (l->probe_sent_ms && now - l->probe_sent_ms >= r->cfg.timeout_ms) {
        link_drop(l, R_PROBE, "our probe message did not come back");
        return;
    }
    if (r->cfg.ping_interval_ms && !l->probe_sent_ms && r->cmd.st == L_UP &&
        now - l->last_rx_ms >= r->cfg.ping_interval_ms &&
        send_argv(&r->cmd, P_PROBE, on_probe_published, NULL, 3,
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
    snprintf(r->probe, sizeof r->probe, PROBE_PREFIX "%016llx", (unsigned long long)rnd(r));
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
    link_connect(&r->cmd);
    link_connect(&r->sub);
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
        link_drop(l, R_ERROR, "stopping");
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
