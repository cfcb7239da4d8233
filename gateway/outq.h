/* outq.h: a connection's outbound queue of framed payloads: allocated on the first queued
 * frame, freed when it drains, so idle connections carry only a NULL pointer.
 * Service thread only. */
#ifndef GW_OUTQ_H
#define GW_OUTQ_H

#include <stdint.h>

#include "conn.h"
#include "event.h"

struct gw_outq {
    uint32_t head, count, cap;
    uint64_t bytes;          /* payload bytes queued */
    gw_payload_t *items[];
};

/* gw_outq_push: queues a reference to p (taken here) at the tail of *q, allocating or growing
 * the queue. Returns 0, or -1 when out of memory (nothing queued, no reference taken). */
int gw_outq_push(gw_outq_t **q, gw_payload_t *p);
/* gw_outq_peek: the head payload or NULL. */
static inline gw_payload_t *gw_outq_peek(const gw_outq_t *q)
{
    return q && q->count ? q->items[q->head] : NULL;
}
/* gw_outq_at: the i-th queued payload (i < count). */
static inline gw_payload_t *gw_outq_at(const gw_outq_t *q, uint32_t i)
{
    return q->items[(q->head + i) % q->cap];
}
/* gw_outq_pop: removes the head and drops its reference; frees the queue (sets *q = NULL)
 * when it becomes empty. */
void gw_outq_pop(gw_outq_t **q);
/* gw_outq_bytes: payload bytes queued (0 for NULL). */
static inline uint64_t gw_outq_bytes(const gw_outq_t *q) { return q ? q->bytes : 0; }
/* gw_outq_free: drops every reference and the queue. */
void gw_outq_free(gw_outq_t **q);

#endif
