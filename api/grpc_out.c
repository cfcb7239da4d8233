/* grpc_out.c: a gRPC connection's output, sent gathered (see grpc_out.h). Loop thread. */
#include "grpc_out.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "grpc_internal.h"

#define GOUT_IOV 64 /* iovecs per sendmsg */

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
    if (q->ref_done == q->nrefs) { /* copied bytes only (always so under TLS) */
        w = sockio_send(&c->io, q->buf.data + q->off, q->buf.len - q->off, why);
    } else {
        struct iovec iov[GOUT_IOV];
        struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)iovq_iov(q, iov, GOUT_IOV)};
        do
            w = sendmsg(c->io.fd, &m, MSG_NOSIGNAL);
        while (w < 0 && errno == EINTR);
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return SOCKIO_AGAIN;
        if (w < 0) {
            snprintf(why, TLS_SERVER_ERR_LEN, "%s", strerror(errno));
            return SOCKIO_CLOSED;
        }
    }
    if (w > 0)
        iovq_advance(q, (size_t)w);
    return w;
}
