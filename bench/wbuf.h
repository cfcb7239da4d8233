/* wbuf.h: write-behind for a non-blocking socket: bytes the kernel did not take are kept (on
 * the heap, only while there are any) and flushed when the socket is writable again. Order is
 * kept: while bytes wait, new writes queue behind them.
 *
 * Thread: the engine thread owning the socket. */
#ifndef WSGW_BENCH_WBUF_H
#define WSGW_BENCH_WBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct wbuf {
    uint32_t off, len, cap;
    uint8_t data[];
} wbuf_t;

/* wbuf_write: sends p[0..len) on fd, or queues what does not fit into *w.
 * Returns 0, or -1 when the socket is broken or memory ran out (the caller ends the
 * connection and frees *w with free()). */
int wbuf_write(wbuf_t **w, int fd, const uint8_t *p, size_t len);

/* wbuf_flush: sends queued bytes; frees *w once empty. Returns 0 (possibly with bytes still
 * queued: wait for the next writable event) or -1 when the socket is broken. */
int wbuf_flush(wbuf_t **w, int fd);

/* wbuf_pending: bytes waiting. */
static inline size_t wbuf_pending(const wbuf_t *w) { return w ? w->len : 0; }

#endif
