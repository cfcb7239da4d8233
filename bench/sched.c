/* sched.c: binary min-heap of due times (see sched.h). */
#include "sched.h"

#include <stdlib.h>

int sched_push(sched_t *s, int64_t due, uint32_t id)
{
    if (s->len == s->cap) {
        uint32_t cap = s->cap ? s->cap * 2 : 1024;
        sched_item_t *n = realloc(s->items, cap * sizeof *n);
        if (!n)
            return -1;
        s->items = n;
        s->cap = cap;
    }
    uint32_t i = s->len++;
    while (i) { /* sift up */
        uint32_t p = (i - 1) / 2;
        if (s->items[p].due <= due)
            break;
        s->items[i] = s->items[p];
        i = p;
    }
    s->items[i] = (sched_item_t){due, id};
    return 0;
}

bool sched_peek(const sched_t *s, int64_t *due)
{
    if (!s->len)
        return false;
    *due = s->items[0].due;
    return true;
}

sched_item_t sched_pop(sched_t *s)
{
    sched_item_t top = s->items[0];
    sched_item_t last = s->items[--s->len];
    uint32_t i = 0, n = s->len;
    for (;;) { /* sift `last` down from the root */
        uint32_t l = 2 * i + 1, m = i;
        int64_t best = last.due;
        if (l < n && s->items[l].due < best) {
            m = l;
            best = s->items[l].due;
        }
        if (l + 1 < n && s->items[l + 1].due < best)
            m = l + 1;
        if (m == i)
            break;
        s->items[i] = s->items[m];
        i = m;
    }
    if (n)
        s->items[i] = last;
    return top;
}

void sched_free(sched_t *s)
{
    free(s->items);
    s->items = NULL;
    s->len = s->cap = 0;
}
