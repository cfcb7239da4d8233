/* grpc_out.c: a gRPC connection's gathered output (see grpc_out.h). Loop thread. */
#include "grpc_out.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "grpc_internal.h"

#define GOUT_IOV 64 /* iovecs per writev */

int gout_ref(gconn_t *c, size_t pos, chunk_t *ch)
{
    if (c->nrefs == c->cap_refs) {
        size_t ncap = c->cap_refs ? c->cap_refs * 2 : 16;
        gout_ref_t *r = realloc(c->refs, ncap * sizeof *r);
        if (!r)
            return -1;
        c->refs = r;
        c->cap_refs = ncap;
    }
    c->refs[c->nrefs++] = (gout_ref_t){pos, ch, ch->off, ch->len - ch->off};
    c->ref_bytes += ch->len - ch->off;
    return 0;
}

size_t gout_pending(const gconn_t *c)
{
    return c->out.len - c->out_off + c->ref_bytes;
}

ssize_t gout_send(gconn_t *c, char *why)
{
    if (!c->nrefs) {
        ssize_t w = sockio_send(&c->io, c->out.data + c->out_off, c->out.len - c->out_off, why);
        if (w > 0)
            c->out_off += (size_t)w;
        return w;
    }
    /* the bytes in order from the cursor (out_off, ref_done, ref_off) */
    struct iovec iov[GOUT_IOV];
    int n = 0;
    size_t o = c->out_off, r = c->ref_done, roff = c->ref_off;
    while (n < GOUT_IOV) {
        if (r < c->nrefs && o == c->refs[r].pos) {
            const gout_ref_t *x = &c->refs[r++];
            iov[n++] = (struct iovec){x->ch->data + x->off + roff, x->len - roff};
            roff = 0;
            continue;
        }
        size_t end = r < c->nrefs ? c->refs[r].pos : c->out.len;
        if (end == o)
            break; /* (only at the end: a ref's pos is never past out.len) */
        iov[n++] = (struct iovec){c->out.data + o, end - o};
        o = end;
    }
    struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)n};
    ssize_t w;
    do
        w = sendmsg(c->io.fd, &m, MSG_NOSIGNAL);
    while (w < 0 && errno == EINTR);
    if (w < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return SOCKIO_AGAIN;
        snprintf(why, TLS_SERVER_ERR_LEN, "%s", strerror(errno));
        return SOCKIO_CLOSED;
    }
    /* advance the cursor by w */
    for (size_t left = (size_t)w; left > 0;) {
        if (c->ref_done < c->nrefs && c->out_off == c->refs[c->ref_done].pos) {
            gout_ref_t *x = &c->refs[c->ref_done];
            size_t take = x->len - c->ref_off < left ? x->len - c->ref_off : left;
            c->ref_off += take;
            c->ref_bytes -= take;
            left -= take;
            if (c->ref_off == x->len) {
                grpc__chunk_free(x->ch);
                x->ch = NULL;
                c->ref_done++;
                c->ref_off = 0;
            }
            continue;
        }
        size_t end = c->ref_done < c->nrefs ? c->refs[c->ref_done].pos : c->out.len;
        size_t take = end - c->out_off < left ? end - c->out_off : left;
        c->out_off += take;
        left -= take;
    }
    return w;
}

void gout_reset(gconn_t *c)
{
    for (size_t i = c->ref_done; i < c->nrefs; i++)
        grpc__chunk_free(c->refs[i].ch);
    c->nrefs = c->ref_done = c->ref_off = c->ref_bytes = 0;
    c->out.len = c->out_off = 0;
    if (c->out.cap > 4 * OUT_FILL)
        buf_free(&c->out);
}
