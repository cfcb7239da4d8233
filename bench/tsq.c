/* tsq.c: FIFO of due and send times (see tsq.h). */
#include "tsq.h"

#include <stdlib.h>

int tsq_push(tsq_t **q, int64_t due, int64_t sent, uint32_t hint)
{
    tsq_t *f = *q;
    if (!f || f->len == f->cap) {
        uint32_t cap = f ? f->cap * 2 : (hint < 4 ? 4 : hint);
        tsq_t *nf = malloc(sizeof *nf + cap * sizeof(tsq_ent_t));
        if (!nf)
            return -1;
        nf->head = 0;
        nf->len = 0;
        nf->cap = cap;
        if (f) {
            for (uint32_t i = 0; i < f->len; i++)
                nf->e[i] = f->e[(f->head + i) % f->cap];
            nf->len = f->len;
            free(f);
        }
        *q = f = nf;
    }
    f->e[(f->head + f->len) % f->cap] = (tsq_ent_t){due, sent};
    f->len++;
    return 0;
}

bool tsq_pop(tsq_t *f, tsq_ent_t *out)
{
    if (!f || !f->len)
        return false;
    *out = f->e[f->head];
    f->head = (f->head + 1) % f->cap;
    f->len--;
    return true;
}
