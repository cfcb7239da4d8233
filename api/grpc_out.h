/* grpc_out.h: what a gRPC connection sends (ws-api). Loop thread.
 *
 * The connection's output is an iovq_t (common/iovq.h): what nghttp2 hands over (frame
 * headers, HEADERS, SETTINGS, ...) is copied into it; on an h2c connection a DATA frame's
 * payload is not: a queued chunk sent to its end (a stream's Downstream batch) leaves its
 * stream's queue, is referred to where it falls among the copied bytes, goes out with
 * sendmsg(2) and is freed once written (iovq release: grpc__chunk_free). A frame that ends
 * inside a chunk copies that part, as does every DATA frame under TLS (SSL_write takes one
 * buffer). Copying each Downstream batch into the output buffer was 7 % of ws-api's cycles in
 * the closed loop. */
#ifndef WSAPI_GRPC_OUT_H
#define WSAPI_GRPC_OUT_H

#include <sys/types.h>

typedef struct gconn gconn_t;

/* gout_init: the connection's output is empty; refs' chunks are freed once written. */
void gout_init(gconn_t *c);
/* gout_send: writes what it can of c->out (h2c: sockio_sendv of up to 64 iovecs; TLS: one
 * sockio_send of the copied bytes) and moves its cursor. Returns the count, or sockio_send's
 * codes (SOCKIO_AGAIN, SOCKIO_CLOSED with why). */
ssize_t gout_send(gconn_t *c, char *why);

#endif
