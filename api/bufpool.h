/* bufpool.h: a few Downstream buffers kept for reuse. A Downstream under load is built in a
 * buffer that grows to hundreds of KB, is queued, sent, and freed; allocated afresh each time,
 * such a buffer comes from mmap (or a trimmed heap top) and every one of its pages faults in
 * again: in a closed-loop profile of ws-api, page faults held ~10 % of its samples. A freed
 * buffer goes back here instead, and the next Downstream starts in it.
 *
 * At most BUFPOOL_KEEP buffers of at most BUFPOOL_MAX_CAP bytes are kept (others are freed):
 * a few MB at most, whatever the load. Loop thread only (ws-api is single-threaded). */
#ifndef WSGW_API_BUFPOOL_H
#define WSGW_API_BUFPOOL_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define BUFPOOL_KEEP 4
#define BUFPOOL_MAX_CAP (2u << 20)
#define BUFPOOL_MIN_CAP (16u << 10) /* what an empty buffer starts with */

/* bufpool_reserve: when b has no memory yet, gives it a kept buffer (or a new one of at least
 * BUFPOOL_MIN_CAP bytes), then makes room for `extra` more bytes (buf_reserve). Returns 0 or
 * -1 (out of memory; b unchanged). */
int bufpool_reserve(buf_t *b, size_t extra);

/* bufpool_put: data (capacity cap, from a buf_t) is no longer used: kept or freed. Takes
 * ownership of data (NULL is fine). */
void bufpool_put(uint8_t *data, size_t cap);

/* bufpool_drain: frees every kept buffer (exit, tests). */
void bufpool_drain(void);

#endif
