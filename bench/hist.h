/* hist.h: log-linear latency histogram (HdrHistogram-like) with a fixed bucket layout, so
 * histograms from threads and processes merge exactly by adding counts bucket by bucket.
 *
 * Values are non-negative integers (the bench records nanoseconds). Values below 2*HIST_SUB are
 * kept exactly; above, each power of two is split into HIST_SUB equal buckets, so a bucket is at
 * most 1/HIST_SUB (0.78 %) of its lower bound wide. Percentiles report the bucket's highest
 * value, clamped to the exact maximum: never below the true value, at most 0.78 % above it.
 * Values >= 2^(HIST_MAX_EXP+1) are clamped into the last bucket (the exact max is kept).
 *
 * A hist_t is plain data (no pointers): it may be copied, written to a pipe and read back. */
#ifndef WSGW_BENCH_HIST_H
#define WSGW_BENCH_HIST_H

#include <stdint.h>

#define HIST_SUB_BITS 7
#define HIST_SUB (1u << HIST_SUB_BITS) /* 128 buckets per power of two */
#define HIST_MAX_EXP 40                /* 2^41 ns ~ 36 minutes */
#define HIST_BUCKETS ((HIST_MAX_EXP - HIST_SUB_BITS + 2) * HIST_SUB)

typedef struct hist {
    uint64_t total;
    uint64_t min, max; /* exact; min is UINT64_MAX while empty */
    double sum;        /* for the mean */
    uint64_t counts[HIST_BUCKETS];
} hist_t;

/* hist_init: empties h. */
void hist_init(hist_t *h);

/* hist_record: counts one value. Caller's thread owns h. */
void hist_record(hist_t *h, uint64_t v);

/* hist_merge: adds every count of src into dst (exact). */
void hist_merge(hist_t *dst, const hist_t *src);

/* hist_percentile: the value at percentile p (0 < p <= 100): the highest value of the bucket
 * holding the ceil(p% * total)-th smallest value, clamped to [min, max]. 0 when empty. */
uint64_t hist_percentile(const hist_t *h, double p);

/* hist_mean: sum / total, 0 when empty. */
double hist_mean(const hist_t *h);

/* hist_index: the bucket of v. hist_bucket_low/high: the smallest and largest value of
 * bucket i. Exposed for tests and for exporting the buckets. */
unsigned hist_index(uint64_t v);
uint64_t hist_bucket_low(unsigned i);
uint64_t hist_bucket_high(unsigned i);

#endif
