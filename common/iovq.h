/* iovq.h: an output queue whose bytes are partly copied and partly referred to, for writev(2).
 * One thread.
 *
 * An HTTP/2 sender (ws-api's connections, the gateway's writers) copies what nghttp2 hands
 * over (frame headers, HEADERS, SETTINGS, ...) into the queue's buffer, and refers to DATA
 * payloads where they already lie (a queued Downstream chunk, a kept Upstream batch) instead of
 * copying them: a ref is placed at a position among the buffer's bytes. iovq_iov gives the bytes
 * from the cursor in order as iovecs; iovq_advance moves the cursor past what the socket took.
 * Copying every payload into the output buffer cost 7 % of ws-api's cycles and 3 % of the
 * gateway's in the closed loop.
 *
 * A ref's bytes must stay valid and unchanged until the cursor passes them, or until
 * iovq_materialize copies them into the buffer (the gateway does so before its delivery
 * machine may free or renumber a batch). A ref may have an owner: iovq_advance and iovq_reset
 * call the queue's release function on it once its bytes are written or dropped. */
#ifndef WSGW_IOVQ_H
#define WSGW_IOVQ_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/uio.h>

#include "buf.h"

typedef struct iovq_ref {
    size_t pos;      /* goes out after buf's bytes [0, pos) (and the refs before it) */
    const uint8_t *p;
    size_t len;
    void *owner;     /* given to release once written or dropped; NULL: nothing to do */
} iovq_ref_t;

typedef struct iovq {
    buf_t buf;          /* copied bytes */
    size_t off;         /* buf's bytes behind the cursor */
    iovq_ref_t *refs;
    size_t nrefs, cap_refs;
    size_t ref_done;    /* refs behind the cursor */
    size_t ref_off;     /* bytes of refs[ref_done] behind the cursor */
    size_t ref_bytes;   /* the refs' bytes ahead of the cursor */
    void (*release)(void *owner);
} iovq_t;

/* iovq_ref: len bytes at p (len > 0) go out after buf's bytes [0, pos) (pos <= buf.len now or
 * later: the bytes up to pos may still be appended). Returns -1 when out of memory (the owner
 * stays the caller's). */
int iovq_ref(iovq_t *q, size_t pos, const uint8_t *p, size_t len, void *owner);
/* iovq_pending: bytes ahead of the cursor. */
static inline size_t iovq_pending(const iovq_t *q)
{
    return q->buf.len - q->off + q->ref_bytes;
}
/* iovq_iov: up to max iovecs of the bytes ahead of the cursor, in order; returns how many. */
int iovq_iov(const iovq_t *q, struct iovec *iov, int max);
/* iovq_advance: n bytes (<= iovq_pending) went out. */
void iovq_advance(iovq_t *q, size_t n);
/* iovq_materialize: the bytes ahead of the cursor become the buffer's, from its start (refs
 * copied, their owners released): no byte of the queue is anyone else's afterwards, and what
 * went out no longer takes room. Returns -1 when out of memory (the queue is then
 * unchanged). */
int iovq_materialize(iovq_t *q);
/* iovq_reset: drops everything (releasing the owners of refs ahead of the cursor); the buffer's
 * memory is kept unless it is over keep bytes. */
void iovq_reset(iovq_t *q, size_t keep);
/* iovq_free: iovq_reset and frees the memory. */
void iovq_free(iovq_t *q);

#endif
