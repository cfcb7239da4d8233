/* redis_priv.h: what redis.c (commands, scripts, subscriptions) and redis_link.c (connecting,
 * set-up, reconnects, life) share: the link and client records and the functions each calls
 * of the other. Loop thread only. */
#ifndef WSGW_API_REDIS_PRIV_H
#define WSGW_API_REDIS_PRIV_H

#include <hiredis/async.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "redis.h"
#include "redis_url.h"

#define MAX_LISTENERS 8
#define PROBE_PREFIX "wsgw:probe:"

typedef enum { L_DOWN = 0, L_RESOLVING, L_CONNECTING, L_SETUP, L_UP } lstate_t;
typedef enum { P_USER = 0, P_SETUP, P_PING, P_SCRIPT, P_EVAL, P_PROBE } pkind_t;

/* why a link was dropped: wsapi_redis_disconnects_total{reason} */
enum { R_ERROR = 0, R_TIMEOUT, R_CONNECT_TIMEOUT, R_SETUP, R_RESOLVE, R_PROBE, R_NREASONS };

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

/* ---- redis.c ---- */
/* redis__now_ms: the monotonic clock in ms. redis__rnd: the client's xorshift (jitter). */
uint64_t redis__now_ms(void);
uint64_t redis__rnd(redis_t *r);
/* redis__set_state: l's state; tells the listeners when the client's up/down changes. */
void redis__set_state(rlink_t *l, lstate_t st);
/* redis__pend_fail_all: fails l's pending commands towards their callers (fn(ud, NULL)) and
 * orphans their records (hiredis' NULL callbacks free them). */
void redis__pend_fail_all(rlink_t *l);
/* redis__send_argv / redis__send_simple: a command of `kind` on l (simple: no callback).
 * Return 0 or a REDIS_C_* code (not sent). */
int redis__send_argv(rlink_t *l, pkind_t kind, redis_reply_fn fn, void *ud, int argc,
                     const char **argv, const size_t *argvlen);
int redis__send_simple(rlink_t *l, pkind_t kind, const char *fmt, ...);
/* redis__script_load_all: SCRIPT LOAD of every registered script on l (its set-up). */
void redis__script_load_all(rlink_t *l);
/* redis__subscribe_one: SUBSCRIBE channel on the sub link l. Returns 0 or -1. */
int redis__subscribe_one(rlink_t *l, const char *channel);

/* ---- redis_link.c ---- */
/* redis__link_connect: starts resolving and connecting l (from L_DOWN). */
void redis__link_connect(rlink_t *l);
/* redis__link_drop: ends l's connection for `reason` (R_*; counted, logged with detail);
 * pending commands fail, a reconnect is scheduled with backoff. */
void redis__link_drop(rlink_t *l, int reason, const char *detail);

#endif
