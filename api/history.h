/* history.h: per-channel history of pushes, for the recovery of wsgw.v1.json clients (README
 * "Client protocol"). A channel is a user ("user:<id>") or a room ("room:<name>"). Each kept
 * message gets the next offset of its channel (from 1 within an epoch; the epoch is a random
 * name given when the channel's history starts, and a new one means the old history is gone);
 * a channel keeps at most cfg.size messages, none older than cfg.ttl_ms, and its position
 * (epoch, newest offset) for cfg.meta_ttl_ms after its last message.
 *
 * Two stores behind one interface: this process's memory (history_mem.c: one ws-api node;
 * lost on restart, which clients see as a new epoch) and Redis Streams (history_redis.c:
 * shared by every node). Answers come through callbacks: at once from memory, later from
 * Redis; every accepted call gets exactly one answer (add) or one answer per page (read, the
 * last with more = false).
 *
 * Loop thread only. */
#ifndef WSGW_API_HISTORY_H
#define WSGW_API_HISTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HIST_EPOCH_MAX 32  /* the gateway takes no longer epochs (chanrec.h) */
#define HIST_CHANNEL_MAX 4096

enum {
    HIST_OK = 0,
    HIST_ERR_NOMEM = -1,
    HIST_ERR_FULL = -2,    /* the memory store is at --history-max-bytes */
    HIST_ERR_DOWN = -3,    /* the store cannot be reached now (Redis) */
    HIST_ERR_BAD = -4,     /* not a channel ("user:..." / "room:..."), or too long */
};

typedef struct hist_cfg {
    uint64_t size;          /* messages kept per channel */
    uint64_t ttl_ms;        /* messages older than this are gone */
    uint64_t meta_ttl_ms;   /* a channel's epoch and offset outlive its last add this long */
    uint64_t recover_max;   /* a reader missing more than this is told recovered=false */
    size_t page_bytes;      /* payload bytes per answer page */
    size_t max_bytes;       /* memory store: payload bytes kept in all (past it: FULL) */
} hist_cfg_t;

typedef struct hist_pos {
    uint64_t offset;
    char epoch[HIST_EPOCH_MAX + 1];
} hist_pos_t;

typedef struct hist_entry {
    uint64_t offset;
    const uint8_t *data;
    size_t len;
    bool binary;
} hist_entry_t;

/* One page of an answer to history_read (valid during the callback only). */
typedef struct hist_page {
    int status;             /* HIST_OK, or an error (then nothing else is set: last page) */
    const hist_entry_t *pubs;
    size_t n;
    bool more;              /* another page follows */
    /* last page: */
    uint64_t top;           /* the channel's newest offset when it was read (0: none) */
    const char *epoch;      /* its epoch ("" when the channel has no history) */
    bool recovered;         /* everything after the reader's offset was there */
} hist_page_t;

typedef void (*hist_added_fn)(void *ud, int status, const hist_pos_t *pos);
typedef void (*hist_page_fn)(void *ud, const hist_page_t *page);

typedef struct history history_t;

typedef struct history_ops {
    int (*add)(history_t *h, const char *chan, size_t clen, const uint8_t *data, size_t len,
               bool binary, uint64_t now_ms, hist_added_fn fn, void *ud);
    int (*read)(history_t *h, const char *chan, size_t clen, uint64_t after, const char *epoch,
                uint64_t now_ms, hist_page_fn fn, void *ud);
    void (*sweep)(history_t *h, uint64_t now_ms);
    void (*free)(history_t *h);
} history_ops_t;

struct history {
    const history_ops_t *ops;
    hist_cfg_t cfg;
    const char *kind;       /* "memory" | "redis" (logs) */
    bool answers_later;     /* answers come after the call returns (Redis): callers copy what
                               the answer needs */
};

/* history_add: keeps data as the next message of chan; fn(ud, status, position) exactly once
 * when the result is HIST_OK (possibly before history_add returns), never otherwise. */
int history_add(history_t *h, const char *chan, size_t clen, const uint8_t *data, size_t len,
                bool binary, uint64_t now_ms, hist_added_fn fn, void *ud);

/* history_read: the messages of chan after offset `after` of epoch `epoch` ("": any), oldest
 * first, in pages through fn (the last with more = false). recovered on the last page: the
 * epoch is the reader's (or it gave ""), nothing after `after` was trimmed, and no more than
 * cfg.recover_max were missing (else no messages at all: the reader starts over from top).
 * Returns HIST_OK (then the pages come) or an error (then none). */
int history_read(history_t *h, const char *chan, size_t clen, uint64_t after,
                 const char *epoch, uint64_t now_ms, hist_page_fn fn, void *ud);

/* history_sweep: drops what expired (memory store; call every second or so). */
void history_sweep(history_t *h, uint64_t now_ms);
void history_free(history_t *h);

/* history_channel_ok: chan is "user:<1+ bytes>" or "room:<1+ bytes>", at most
 * HIST_CHANNEL_MAX bytes. */
bool history_channel_ok(const char *chan, size_t clen);

/* history_new_epoch: a fresh random epoch name (8 characters [0-9a-z]) into out. */
void history_new_epoch(char out[HIST_EPOCH_MAX + 1]);

/* history_mem_new: the in-memory store (NULL when out of memory). */
history_t *history_mem_new(const hist_cfg_t *cfg);

/* history_redis_new: the store in Redis Streams on r (not owned: history_free first, then
 * redis_free; answers still due then come as HIST_ERR_DOWN). NULL when out of memory. */
struct redis;
history_t *history_redis_new(struct redis *r, const hist_cfg_t *cfg);

#endif
