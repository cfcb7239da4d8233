/* hist.c: log-linear histogram (see hist.h for the layout and its error bound). */
#include "hist.h"

#include <math.h>
#include <string.h>

void hist_init(hist_t *h)
{
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

unsigned hist_index(uint64_t v)
{
    if (v < 2 * HIST_SUB)
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v); /* floor(log2 v) >= HIST_SUB_BITS + 1 */
    if (e > HIST_MAX_EXP)
        return HIST_BUCKETS - 1;
    unsigned shift = e - HIST_SUB_BITS;
    /* v >> shift is in [HIST_SUB, 2*HIST_SUB): the top HIST_SUB_BITS+1 bits of v */
    return shift * HIST_SUB + (unsigned)(v >> shift);
}

uint64_t hist_bucket_low(unsigned i)
{
    if (i < 2 * HIST_SUB)
        return i;
    unsigned q = i / HIST_SUB, r = i % HIST_SUB;
    return (uint64_t)(HIST_SUB + r) << (q - 1);
}

uint64_t hist_bucket_high(unsigned i)
{
    if (i < 2 * HIST_SUB)
        return i;
    unsigned q = i / HIST_SUB;
    return hist_bucket_low(i) + ((uint64_t)1 << (q - 1)) - 1;
}

void hist_record(hist_t *h, uint64_t v)
{
    h->counts[hist_index(v)]++;
    h->total++;
    h->sum += (double)v;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
}

void hist_merge(hist_t *dst, const hist_t *src)
{
    if (!src->total)
        return;
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        dst->counts[i] += src->counts[i];
    dst->total += src->total;
    dst->sum += src->sum;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
}

uint64_t hist_percentile(const hist_t *h, double p)
{
    if (!h->total)
        return 0;
    if (p >= 100)
        return h->max;
    double r = ceil(p / 100.0 * (double)h->total);
    uint64_t rank = r < 1 ? 1 : (uint64_t)r;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            uint64_t v = hist_bucket_high(i);
            if (v > h->max)
                v = h->max;
            if (v < h->min)
                v = h->min;
            return v;
        }
    }
    return h->max;
}

double hist_mean(const hist_t *h)
{
    return h->total ? h->sum / (double)h->total : 0;
}
