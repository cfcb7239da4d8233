/* redis.h: ws-api's connection to Redis: hiredis 0.14 (Debian 12) async on ws-api's libuv
 * loop, with what hiredis 0.14 leaves to the caller: resolving the host off the loop
 * (uv_getaddrinfo; hiredis would block in getaddrinfo), connect and command deadlines (0.14 has
 * no async timeouts), AUTH and SELECT, reconnecting with jittered backoff, a cap on commands
 * in flight, Lua scripts loaded on every (re)connect, and a second connection for pub/sub
 * whose channels are subscribed again after each reconnect.
 *
 * Two links, each one TCP connection:
 *   cmd: commands (redis_cmd, redis_eval). Replies come in order; every accepted command gets
 *        exactly one callback: the reply, or NULL when the connection was lost (or timed out,
 *        or redis_free ran) before it came.
 *   sub: SUBSCRIBE only (a subscribed hiredis context takes no other command).
 * A link is up once connected and its AUTH / SELECT (cmd) or SUBSCRIBEs (sub) were answered.
 * When commands wait and no reply came for timeout_ms (replies that keep coming, however far
 * behind, are a busy Redis, not a dead one), or a link is idle for ping_interval_ms and its
 * PING is not answered in time, the link is dropped (pending callbacks get NULL) and reconnected after
 * backoff_min_ms doubling to backoff_max_ms (jittered). Every drop is logged (rate-limited) and
 * counted: wsapi_redis_disconnects_total{link,reason}; wsapi_redis_up{link} says what is up.
 *
 * Nothing here knows what the commands mean: presence (redis_presence.h) and cross-node
 * delivery (redis_bus.h) are built on it, and so may other modules be.
 *
 * Threads: loop thread only (hiredis contexts are not thread-safe; callbacks run on the loop).
 * Callbacks must not call redis_free. */
#ifndef WSGW_API_REDIS_H
#define WSGW_API_REDIS_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "redis_url.h"

#define REDIS_ERR_LEN 256

typedef struct redis_cfg {
    const char *url;              /* redis://[[user]:password@]host[:port][/db] */
    const char *password;         /* used when the URL carries none ("": none) */
    uint64_t connect_timeout_ms;  /* resolve + connect + AUTH/SELECT */
    uint64_t timeout_ms;          /* commands waiting and no reply this long drop the link */
    uint64_t ping_interval_ms;    /* a link idle this long is PINGed (0: never) */
    uint64_t backoff_min_ms, backoff_max_ms; /* reconnect backoff */
    size_t max_pending;           /* commands awaiting replies; past it redis_cmd refuses */
} redis_cfg_t;

/* Results of redis_cmd / redis_eval (no callback will come unless REDIS_C_OK). */
enum {
    REDIS_C_OK = 0,
    REDIS_C_DOWN = -1,  /* the cmd link is not up */
    REDIS_C_BUSY = -2,  /* max_pending commands in flight already */
    REDIS_C_NOMEM = -3, /* out of memory */
};

/* A reply (valid during the call only): NULL when the command failed without one (link lost,
 * reply timeout, redis_free). Redis errors are replies of type REDIS_REPLY_ERROR. */
typedef void (*redis_reply_fn)(void *ud, redisReply *reply);
/* A pub/sub message on a subscribed channel (data valid during the call only). */
typedef void (*redis_msg_fn)(void *ud, const char *data, size_t len);
/* The links changed state (either one). */
typedef void (*redis_state_fn)(void *ud, bool cmd_up, bool sub_up);

/* A Lua script run with EVALSHA; loaded with SCRIPT LOAD on every connect. */
typedef struct redis_script {
    const char *text;
    char sha[41];
    struct redis_script *next; /* the client's list */
} redis_script_t;

typedef struct redis redis_t;

/* redis_new: parses cfg->url and starts connecting both links on `loop`. Returns the client
 * (not yet up), or NULL with a message in err (bad URL, out of memory). cfg's strings are
 * copied. */
redis_t *redis_new(uv_loop_t *loop, const redis_cfg_t *cfg, char err[REDIS_ERR_LEN]);

/* redis_free: drops both links (pending callbacks get NULL now) and frees the client once its
 * uv handles closed (the loop must run again). NULL is fine. */
void redis_free(redis_t *r);

/* redis_up: the cmd link is up (commands may be sent). redis_sub_up: the sub link is up with
 * every channel subscribed. */
bool redis_up(const redis_t *r);
bool redis_sub_up(const redis_t *r);

/* redis_describe: "host:port/db" of the server (never the password). */
const char *redis_describe(const redis_t *r);

/* redis_on_state: fn(ud, cmd_up, sub_up) after every change of either link. Up to 8
 * listeners. Returns 0 or -1 (full). */
int redis_on_state(redis_t *r, redis_state_fn fn, void *ud);

/* redis_cmd: a command in hiredis format ("HSET %b %s %s"); fn(ud, reply) comes exactly once
 * unless the result is not REDIS_C_OK. fn may be NULL (fire and forget). */
int redis_cmd(redis_t *r, redis_reply_fn fn, void *ud, const char *fmt, ...);
/* redis_cmd_argv: the same with an argument vector (binary-safe). */
int redis_cmd_argv(redis_t *r, redis_reply_fn fn, void *ud, int argc, const char **argv,
                   const size_t *argvlen);

/* redis_script_add: registers s (static storage: it stays listed; s->text must outlive the
 * client) and computes its SHA-1; it is loaded on each connect (now, too, if up). */
void redis_script_add(redis_t *r, redis_script_t *s);
/* redis_eval: EVALSHA s nkeys args... (argv: nkeys keys then the arguments). A NOSCRIPT error
 * (someone ran SCRIPT FLUSH) reloads every script; the command itself fails with that error. */
int redis_eval(redis_t *r, const redis_script_t *s, redis_reply_fn fn, void *ud, int nkeys,
               int argc, const char **argv, const size_t *argvlen);

/* redis_subscribe: fn(ud, data, len) for every message on `channel`, now and after every
 * reconnect of the sub link. Returns 0 or -1 (out of memory). */
int redis_subscribe(redis_t *r, const char *channel, redis_msg_fn fn, void *ud);

/* redis_pending: commands awaiting replies on the cmd link. */
size_t redis_pending(const redis_t *r);

/* redis_reply_is_error: reply is NULL or a Redis error; redis_reply_error: its text ("no
 * reply" for NULL), for logs. */
bool redis_reply_is_error(const redisReply *reply);
const char *redis_reply_error(const redisReply *reply);

#endif
