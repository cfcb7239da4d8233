/* outq.c: per-connection outbound queue (see outq.h). Service thread only. */
#include "outq.h"

#include <stdlib.h>

int gw_outq_push(gw_outq_t **qp, gw_payload_t *p)
{
    gw_outq_t *q = *qp;
    if (!q || q->count == q->cap) {
        uint32_t ncap = q ? q->cap * 2 : 4;
        gw_outq_t *n = malloc(sizeof *n + ncap * sizeof(gw_payload_t *));
        if (!n)
            return -1;
        n->head = 0;
        n->count = 0;
        n->cap = ncap;
        n->bytes = 0;
        if (q) {
            for (uint32_t i = 0; i < q->count; i++)
                n->items[i] = q->items[(q->head + i) % q->cap];
            n->count = q->count;
            n->bytes = q->bytes;
            free(q);
        }
        *qp = q = n;
    }
    q->items[(q->head + q->count) % q->cap] = p;
    q->count++;
    q->bytes += p->len;
    gw_payload_ref(p);
    return 0;
}

void gw_outq_pop(gw_outq_t **qp)
{
    gw_outq_t *q = *qp;
    if (!q || !q->count)
        return;
    gw_payload_t *p = q->items[q->head];
    q->head = (q->head + 1) % q->cap;
    q->count--;
    q->bytes -= p->len;
    gw_payload_unref(p);
    if (!q->count) {
        free(q);
        *qp = NULL;
    }
}

void gw_outq_free(gw_outq_t **qp)
{
    while (*qp)
        gw_outq_pop(qp);
}
