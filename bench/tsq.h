/* tsq.h: the per-connection FIFO of send times that matches replies to sends in order (an
 * echo service keeps the order). NULL until the first push, so an idle connection owns no
 * memory; the ring doubles when full.
 *
 * Thread: the engine thread owning the connection. */
#ifndef WSGW_BENCH_TSQ_H
#define WSGW_BENCH_TSQ_H

#include <stdbool.h>
#include <stdint.h>

typedef struct tsq {
    uint32_t head, len, cap;
    int64_t ts[];
} tsq_t;

/* tsq_push: appends ts to *q, allocating (first capacity max(hint, 4)) or doubling as needed.
 * Returns 0, or -1 when out of memory (*q unchanged). */
int tsq_push(tsq_t **q, int64_t ts, uint32_t hint);

/* tsq_pop: the oldest time into *ts; false when q is NULL or empty. */
bool tsq_pop(tsq_t *q, int64_t *ts);

/* tsq_len: entries waiting (0 for NULL). */
static inline uint32_t tsq_len(const tsq_t *q) { return q ? q->len : 0; }

/* tsq_clear: forgets every entry (memory kept). */
static inline void tsq_clear(tsq_t *q)
{
    if (q)
        q->head = q->len = 0;
}

#endif
