/* redis.c: ws-api's Redis client (see redis.h): two hiredis 0.14 async links on the libuv loop,
 * commands and their pending records, scripts and subscriptions. Connecting, set-up, the tick
 * that enforces deadlines, reconnects and the link's life are redis_link.c's; what both share
 * is redis_priv.h.
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
#include "redis_priv.h"
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



uint64_t redis__now_ms(void)
{
    return (uint64_t)(clock_mono_ns() / 1000000);
}

uint64_t redis__rnd(redis_t *r)
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

void redis__set_state(rlink_t *l, lstate_t st)
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
void redis__pend_fail_all(rlink_t *l)
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
    uint64_t now = redis__now_ms();
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
                redis__link_drop(l, R_SETUP, e);
            return;
        }
        if (l->st == L_SETUP && --l->setup_left == 0) {
            l->attempt = 0;
            metrics_inc(l->m_connects);
            log_info("redis connected", "link=%s server=%s", l->name, r->desc);
            redis__set_state(l, L_UP);
        }
        free(p);
        return;
    }
    if (p->kind == P_EVAL && reply && reply->type == REDIS_REPLY_ERROR && reply->str &&
        strncmp(reply->str, "NOSCRIPT", 8) == 0) {
        log_rl_warn("redis lost our scripts (SCRIPT FLUSH?): loading them again", "server=%s",
                    r->desc);
        redis__script_load_all(l);
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
        p->sent_ms = redis__now_ms();
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

int redis__send_argv(rlink_t *l, pkind_t kind, redis_reply_fn fn, void *ud, int argc,
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

int redis__send_simple(rlink_t *l, pkind_t kind, const char *fmt, ...)
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
    rv = redis__send_argv(&r->cmd, P_USER, fn, ud, argc, argv, argvlen);
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
void redis__script_load_all(rlink_t *l)
{
    for (redis_script_t *s = l->r->scripts; s; s = s->next)
        if (redis__send_simple(l, P_SCRIPT, "SCRIPT LOAD %s", s->text) == REDIS_C_OK &&
            l->st == L_SETUP)
            l->setup_left++;
}

void redis_script_add(redis_t *r, redis_script_t *s)
{
    sha1_hex(s->text, s->sha);
    s->next = r->scripts;
    r->scripts = s;
    if (r->cmd.st == L_UP)
        redis__send_simple(&r->cmd, P_SCRIPT, "SCRIPT LOAD %s", s->text);
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
    rv = redis__send_argv(&r->cmd, P_EVAL, fn, ud, argc + 3, av, al);
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
    l->last_rx_ms = redis__now_ms();
    if (strcasecmp(kind, "subscribe") == 0) {
        if (l->st == L_SETUP && --l->setup_left == 0) {
            l->attempt = 0;
            metrics_inc(l->m_connects);
            log_info("redis connected", "link=%s server=%s", l->name, r->desc);
            redis__set_state(l, L_UP);
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

int redis__subscribe_one(rlink_t *l, const char *channel)
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
        redis__subscribe_one(&r->sub, channel);
    return 0;
}
