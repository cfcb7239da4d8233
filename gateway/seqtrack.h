/* seqtrack.h: which numbers of a sequence are done, as the length of the done prefix.
 *
 * A writer numbers the Messages it takes for one (service thread, stream) 1, 2, 3, ... in the
 * order the thread pushed them; they are done (acknowledged, delivered, handed back, lost) mostly
 * in that order, sometimes not (a handback of one connection while others stay). The thread
 * compares counts (msgroute.h: done >= mark), so only the done prefix may be told: a number done
 * early waits in a short list of ranges until the ones before it are done too.
 * Single-threaded (the writer's). */
#ifndef GW_SEQTRACK_H
#define GW_SEQTRACK_H

#include <stddef.h>
#include <stdint.h>

typedef struct gw_seqrange { uint64_t a, b; } gw_seqrange_t;

typedef struct gw_seqtrack {
    uint64_t taken;      /* the last number handed out */
    uint64_t prefix;     /* 1..prefix are done */
    uint64_t published;  /* prefix as last told */
    gw_seqrange_t *more; /* done ranges above prefix + 1, sorted, disjoint, not touching */
    size_t nmore, cap;
} gw_seqtrack_t;

/* gw_seqtrack_next: the next number (32 bits travel on events; they wrap after 4 G). */
static inline uint32_t gw_seqtrack_next(gw_seqtrack_t *t) { return (uint32_t)++t->taken; }

/* gw_seqtrack_done: number n (as handed out, 32 bits) is done. Numbers done twice are fine.
 * Returns 0, or -1 when out of memory (n is then forgotten: the prefix stops below it). */
int gw_seqtrack_done(gw_seqtrack_t *t, uint32_t n);

/* gw_seqtrack_publish: how far the prefix moved since the last call. */
static inline uint32_t gw_seqtrack_publish(gw_seqtrack_t *t)
{
    uint32_t d = (uint32_t)(t->prefix - t->published);
    t->published = t->prefix;
    return d;
}

void gw_seqtrack_free(gw_seqtrack_t *t);

#endif
