/* tsq.c: FIFO of send times (see tsq.h). */
#include "tsq.h"

#include <stdlib.h>

int tsq_push(tsq_t **q, int64_t ts, uint32_t hint)
{
    tsq_t *f = *q;
    if (!f || f->len == f->cap) {
        uint32_t cap = f ? f->cap * 2 : (hint < 4 ? 4 : hint);
        tsq_t *nf = malloc(sizeof *nf + cap * sizeof(int64_t));
        if (!nf)
            return -1;
        nf->head = 0;
        nf->len = 0;
        nf->cap = cap;
        if (f) {
            for (uint32_t i = 0; i < f->len; i++)
                nf->ts[i] = f->ts[(f->head + i) % f->cap];
            nf->len = f->len;
            free(f);
        }
        *q = f = nf;
    }
    f->ts[(f->head + f->len) % f->cap] = ts;
    f->len++;
    return 0;
}

bool tsq_pop(tsq_t *f, int64_t *ts)
{
    if (!f || !f->len)
        return false;
    *ts = f->ts[f->head];
    f->head = (f->head + 1) % f->cap;
    f->len--;
    return true;
}
