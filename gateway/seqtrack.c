/* seqtrack.c: the done prefix of a sequence (see seqtrack.h). */
#include "seqtrack.h"

#include <stdlib.h>
#include <string.h>

/* Absorbs the ranges that now touch the prefix. */
static void absorb(gw_seqtrack_t *t)
{
    size_t i = 0;
    while (i < t->nmore && t->more[i].a <= t->prefix + 1) {
        if (t->more[i].b > t->prefix)
            t->prefix = t->more[i].b;
        i++;
    }
    if (i) {
        memmove(t->more, t->more + i, (t->nmore - i) * sizeof *t->more);
        t->nmore -= i;
    }
}

int gw_seqtrack_done(gw_seqtrack_t *t, uint32_t n32)
{
    /* widen next to what was handed out (0 is a number too, once every 4 G) */
    uint64_t n = (t->taken & ~0xffffffffULL) | n32;
    if (n > t->taken)
        n -= 1ULL << 32;
    if (n <= t->prefix)
        return 0;
    if (n == t->prefix + 1) { /* the usual case */
        t->prefix = n;
        if (t->nmore)
            absorb(t);
        return 0;
    }
    size_t i = 0; /* out of order: into the sorted ranges */
    while (i < t->nmore && t->more[i].b + 1 < n)
        i++;
    if (i < t->nmore && t->more[i].a <= n + 1) { /* touches or lies in range i */
        if (n < t->more[i].a)
            t->more[i].a = n;
        if (n > t->more[i].b)
            t->more[i].b = n;
        if (i + 1 < t->nmore && t->more[i + 1].a <= t->more[i].b + 1) { /* and the next */
            t->more[i].b = t->more[i + 1].b;
            memmove(t->more + i + 1, t->more + i + 2, (t->nmore - i - 2) * sizeof *t->more);
            t->nmore--;
        }
        return 0;
    }
    if (t->nmore == t->cap) {
        size_t nc = t->cap ? t->cap * 2 : 8;
        gw_seqrange_t *nm = realloc(t->more, nc * sizeof *nm);
        if (!nm)
            return -1;
        t->more = nm;
        t->cap = nc;
    }
    memmove(t->more + i + 1, t->more + i, (t->nmore - i) * sizeof *t->more);
    t->more[i] = (gw_seqrange_t){n, n};
    t->nmore++;
    return 0;
}

void gw_seqtrack_free(gw_seqtrack_t *t)
{
    free(t->more);
    t->more = NULL;
    t->nmore = t->cap = 0;
}
