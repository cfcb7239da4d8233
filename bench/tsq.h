/* tsq.h: the per-connection FIFO of outstanding messages that matches replies to sends in
 * order (an echo service keeps the order). Each entry holds two times: when the message was
 * due (open loop: its place in the schedule; closed loop: its send time) and when it was
 * actually written. NULL until the first push, so an idle connection owns no memory; the ring
 * doubles when full.
 *
 * Thread: the engine thread owning the connection. */
#ifndef WSGW_BENCH_TSQ_H
#define WSGW_BENCH_TSQ_H

#include <stdbool.h>
#include <stdint.h>

typedef struct tsq_ent {
    int64_t due;  /* CLOCK_MONOTONIC ns: the intended send time (latency is timed from it) */
    int64_t sent; /* CLOCK_MONOTONIC ns: when the bench wrote it (>= due) */
} tsq_ent_t;

typedef struct tsq {
    uint32_t head, len, cap;
    tsq_ent_t e[];
} tsq_t;

/* tsq_push: appends (due, sent) to *q, allocating (first capacity max(hint, 4)) or doubling as
 * needed. Returns 0, or -1 when out of memory (*q unchanged). */
int tsq_push(tsq_t **q, int64_t due, int64_t sent, uint32_t hint);

/* tsq_pop: the oldest entry into *out; false when q is NULL or empty. */
bool tsq_pop(tsq_t *q, tsq_ent_t *out);

/* tsq_len: entries waiting (0 for NULL). */
static inline uint32_t tsq_len(const tsq_t *q) { return q ? q->len : 0; }

/* tsq_clear: forgets every entry (memory kept). */
static inline void tsq_clear(tsq_t *q)
{
    if (q)
        q->head = q->len = 0;
}

#endif
