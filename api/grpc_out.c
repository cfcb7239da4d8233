/* grpc_out.c: a gRPC connection's output, sent gathered (see grpc_out.h). Loop thread. */
#include "grpc_out.h"

#include <sys/uio.h>

#include "grpc_internal.h"

#define GOUT_IOV 64 /* iovecs per sendmsg(2) */

static void release_chunk(void *ch)
{
    grpc__chunk_free(ch);
}

void gout_init(gconn_t *c)
{
    c->out = (iovq_t){.release = release_chunk};
}

ssize_t gout_send(gconn_t *c, char *why)
{
    iovq_t *q = &c->out;
    ssize_t w;
    if (c->io.ssl) { /* copied bytes only: refs are never made under TLS */
        w = sockio_send(&c->io, q->buf.data + q->off, q->buf.len - q->off, why);
    } else {
        struct iovec iov[GOUT_IOV];
        w = sockio_sendv(&c->io, iov, iovq_iov(q, iov, GOUT_IOV), why);
    }
    if (w > 0)
        iovq_advance(q, (size_t)w);
    return w;
}
