/* grpc_out.h: what a gRPC connection sends, gathered (ws-api). Loop thread.
 *
 * Everything nghttp2 hands over (frame headers, HEADERS, SETTINGS, ...) is copied into the
 * connection's output buffer c->out. On an h2c connection a DATA frame's payload is not: the
 * queued chunks it comes from (a stream's Downstream batches) are referred to where they fall
 * among c->out's bytes and go out with writev(2). A chunk referred to belongs to the output
 * from then on (it left its stream's queue: a stream reset cannot free it) and is freed once
 * written. Only chunks sent to their end are referred to; a frame that ends inside a chunk
 * copies that part, as does every DATA frame under TLS (SSL_write takes one buffer).
 * Copying each Downstream batch into c->out was 7 % of ws-api's cycles in the closed loop. */
#ifndef WSAPI_GRPC_OUT_H
#define WSAPI_GRPC_OUT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct gconn gconn_t;
typedef struct chunk chunk_t;

typedef struct gout_ref {
    size_t pos;      /* goes out after c->out's bytes [0, pos) (and the refs before it) */
    chunk_t *ch;     /* owns the bytes: freed once they are written */
    size_t off, len; /* ch->data[off, off + len) */
} gout_ref_t;

/* gout_ref: ch (taken off its stream's queue) goes out from ch->off to its end, after the
 * bytes of c->out up to pos. Returns -1 when out of memory (ch stays the caller's). */
int gout_ref(gconn_t *c, size_t pos, chunk_t *ch);
/* gout_pending: bytes not yet written (c->out's and the refs'). */
size_t gout_pending(const gconn_t *c);
/* gout_send: writes what it can (writev on h2c; one sockio_send of c->out's bytes when there
 * are no refs). Returns the count, or sockio_send's codes. */
ssize_t gout_send(gconn_t *c, char *why);
/* gout_reset: everything written (or the connection ends): frees the refs' chunks and empties
 * c->out (kept for reuse unless large). */
void gout_reset(gconn_t *c);

#endif
