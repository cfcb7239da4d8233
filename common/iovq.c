/* iovq.c: output queue of copied and referred bytes (see iovq.h). One thread. */
#include "iovq.h"

#include <stdlib.h>
#include <string.h>

int iovq_ref(iovq_t *q, size_t pos, const uint8_t *p, size_t len, void *owner)
{
    if (q->nrefs == q->cap_refs) {
        size_t ncap = q->cap_refs ? q->cap_refs * 2 : 16;
        iovq_ref_t *r = realloc(q->refs, ncap * sizeof *r);
        if (!r)
            return -1;
        q->refs = r;
        q->cap_refs = ncap;
    }
    q->refs[q->nrefs++] = (iovq_ref_t){pos, p, len, owner};
    q->ref_bytes += len;
    return 0;
}

int iovq_iov(const iovq_t *q, struct iovec *iov, int max)
{
    int n = 0;
    size_t o = q->off, r = q->ref_done, roff = q->ref_off;
    while (n < max) {
        if (r < q->nrefs && o == q->refs[r].pos) {
            const iovq_ref_t *x = &q->refs[r++];
            iov[n++] = (struct iovec){(void *)(x->p + roff), x->len - roff};
            roff = 0;
            continue;
        }
        size_t end = r < q->nrefs ? q->refs[r].pos : q->buf.len;
        if (end <= o)
            break; /* the end (a ref's pos is never behind the cursor) */
        iov[n++] = (struct iovec){q->buf.data + o, end - o};
        o = end;
    }
    return n;
}

void iovq_advance(iovq_t *q, size_t n)
{
    while (n > 0) {
        if (q->ref_done < q->nrefs && q->off == q->refs[q->ref_done].pos) {
            iovq_ref_t *x = &q->refs[q->ref_done];
            size_t take = x->len - q->ref_off < n ? x->len - q->ref_off : n;
            q->ref_off += take;
            q->ref_bytes -= take;
            n -= take;
            if (q->ref_off == x->len) {
                if (x->owner && q->release)
                    q->release(x->owner);
                q->ref_done++;
                q->ref_off = 0;
            }
            continue;
        }
        size_t end = q->ref_done < q->nrefs ? q->refs[q->ref_done].pos : q->buf.len;
        size_t take = end - q->off < n ? end - q->off : n;
        if (!take)
            break; /* (n was more than pending) */
        q->off += take;
        n -= take;
    }
    if (q->ref_done == q->nrefs && q->nrefs) /* every ref behind: plain bytes again */
        q->nrefs = q->ref_done = q->ref_off = 0;
}

int iovq_materialize(iovq_t *q)
{
    if (q->ref_done == q->nrefs) { /* only copied bytes: moved to the front */
        buf_consume(&q->buf, q->off);
        q->off = 0;
        q->nrefs = q->ref_done = q->ref_off = 0;
        return 0;
    }
    buf_t nb = BUF_INIT;
    if (buf_reserve(&nb, iovq_pending(q)) < 0)
        return -1;
    struct iovec iov[64];
    for (;;) {
        int n = iovq_iov(q, iov, 64);
        if (!n)
            break;
        size_t sum = 0;
        for (int i = 0; i < n; i++) {
            memcpy(nb.data + nb.len, iov[i].iov_base, iov[i].iov_len);
            nb.len += iov[i].iov_len;
            sum += iov[i].iov_len;
        }
        iovq_advance(q, sum); /* releases the owners */
    }
    buf_free(&q->buf);
    q->buf = nb;
    q->off = 0;
    q->nrefs = q->ref_done = q->ref_off = q->ref_bytes = 0;
    return 0;
}

void iovq_reset(iovq_t *q, size_t keep)
{
    for (size_t i = q->ref_done; i < q->nrefs; i++)
        if (q->refs[i].owner && q->release)
            q->release(q->refs[i].owner);
    q->nrefs = q->ref_done = q->ref_off = q->ref_bytes = 0;
    q->buf.len = q->off = 0;
    if (q->buf.cap > keep)
        buf_free(&q->buf);
}

void iovq_free(iovq_t *q)
{
    iovq_reset(q, 0);
    buf_free(&q->buf);
    free(q->refs);
    q->refs = NULL;
    q->cap_refs = 0;
}
