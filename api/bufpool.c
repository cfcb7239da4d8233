/* bufpool.c: Downstream buffers kept for reuse (see bufpool.h). Loop thread only. */
#include "bufpool.h"

#include <stdlib.h>

static struct {
    uint8_t *data;
    size_t cap;
} kept[BUFPOOL_KEEP];
static int nkept;

int bufpool_reserve(buf_t *b, size_t extra)
{
    if (!b->data) {
        if (nkept) {
            nkept--;
            b->data = kept[nkept].data;
            b->cap = kept[nkept].cap;
        } else {
            uint8_t *p = malloc(BUFPOOL_MIN_CAP);
            if (!p)
                return -1;
            b->data = p;
            b->cap = BUFPOOL_MIN_CAP;
        }
        b->len = 0;
    }
    return buf_reserve(b, extra);
}

void bufpool_put(uint8_t *data, size_t cap)
{
    if (!data)
        return;
    if (nkept < BUFPOOL_KEEP && cap >= BUFPOOL_MIN_CAP && cap <= BUFPOOL_MAX_CAP) {
        kept[nkept].data = data;
        kept[nkept].cap = cap;
        nkept++;
        return;
    }
    free(data);
}

void bufpool_drain(void)
{
    while (nkept)
        free(kept[--nkept].data);
}
