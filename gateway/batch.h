/* batch.h: Upstream batches. A batch is encoded once (by hand, batch.c) without its seq; the seq is
 * appended as field 2 at the end (protobuf fields may come in any order), so a batch replayed
 * on a new stream is renumbered by rewriting a few tail bytes, never re-encoded.
 * Wire form: [gRPC 5-byte prefix][Upstream.events ...][0x10 varint(seq)]. Writer thread. */
#ifndef GW_BATCH_H
#define GW_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "event.h"

typedef struct gw_batch {
    struct gw_batch *next;
    uint64_t seq;
    uint32_t nevents;
    uint32_t nmsgs;          /* Message events and routed Opens/Closes (event.h routed): the
                                ones msgroute counts (tags), and the lost-messages count */
    uint8_t tries;           /* times it was sent (delivery.h, I4); set from its events' */
    uint8_t rounds;          /* its events' most (event.h), given back to them like tries */
    bool complete;           /* carries Upstream.presence_complete */
    uint64_t *tags;          /* per counted event, in order: service thread << 32 | tno */
    uint8_t *routed;         /* [nevents] routed flags, NULL when the batch has none */
    int64_t gateway_ns;      /* wall-clock stamp of the first event (api stage) */
    size_t ev_len;           /* encoded events */
    size_t wire_len;         /* prefix + events + seq field */
    uint8_t *buf;
    size_t cap;              /* buf's size */
} gw_batch_t;

/* gw_batch_pool_t: buffers of batches done with, kept for the next ones (one writer's). A
 * 256 KiB batch buffer from malloc is fresh memory each time (glibc unmaps or trims it when it
 * is freed): ~64 page faults per batch, 36-108 k faults in 5 s of the closed loop. */
#define GW_BATCH_POOL 16                  /* buffers kept at most, */
#define GW_BATCH_POOL_BYTES (2 << 20)     /* of this many bytes at most */
typedef struct gw_batch_pool {
    uint8_t *buf[GW_BATCH_POOL];
    size_t cap[GW_BATCH_POOL];
    int n;
    size_t bytes;
} gw_batch_pool_t;

/* gw_batch_encode: encodes evs[0..n) (gateway_id goes into Open events), keeping each Message's
 * thread and tno in tags (and which Opens/Closes were routed), in a buffer from pool when one
 * is large enough (pool may be NULL). Returns NULL when out of
 * memory. The events stay the caller's. The
 * batch has seq 0 until gw_batch_set_seq. */
gw_batch_t *gw_batch_encode(gw_batch_pool_t *pool, gw_event_t *const *evs, size_t n,
                            const char *gateway_id);
/* gw_batch_set_seq: (re)numbers the batch and rewrites its prefix. */
void gw_batch_set_seq(gw_batch_t *b, uint64_t seq);
/* gw_batch_set_complete: adds Upstream.presence_complete = true (once; before set_seq is
 * fine: the seq field stays last). */
void gw_batch_set_complete(gw_batch_t *b);
/* gw_batch_events: the batch's events rebuilt as gw_event_t (messages_only: Message events
 * and routed Opens/Closes only, their routed flag restored), appended in order to the list (*head, *tail) linked by next, each with tries =
 * b->tries, rounds = b->rounds, its tno, and t_read = now. Returns how many, or -1 (undecodable or out of memory: nothing
 * appended). The Open's gateway_id is not kept (encoding puts it back). */
int gw_batch_events(const gw_batch_t *b, bool messages_only, int64_t now, gw_event_t **head,
                    gw_event_t **tail);
void gw_batch_free(gw_batch_t *b);
/* gw_batch_recycle: gw_batch_free, its buffer kept in pool for the next batch (buffers of at
 * least 4 KiB, the largest GW_BATCH_POOL within GW_BATCH_POOL_BYTES). */
void gw_batch_recycle(gw_batch_pool_t *pool, gw_batch_t *b);
/* gw_batch_pool_free: frees the buffers pool keeps. */
void gw_batch_pool_free(gw_batch_pool_t *pool);
/* gw_batch_thread_cleanup: frees this thread's encoding scratch (writer exit). */
void gw_batch_thread_cleanup(void);

#endif
