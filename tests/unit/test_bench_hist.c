/* test_bench_hist.c: ws-bench's log-linear histogram: bucket layout (contiguous, exact below
 * 256), the relative error bound (< 1 %), percentiles against exact order statistics, and
 * exact merging (bucket counts add up to the histogram of the union). Also report_t merging
 * and its code tables. */
#include <math.h>
#include <stdlib.h>

#include "../../bench/hist.h"
#include "../../bench/report.h"
#include "test.h"

static uint64_t rng = 88172645463325252ULL;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* log-uniform in [1, 2^40) */
static uint64_t log_uniform(void)
{
    double e = (double)(next_rand() % 40000000) / 1e6;
    return (uint64_t)pow(2.0, e);
}

static void test_layout_contiguous_and_bounded(void)
{
    CHECK_EQ(hist_bucket_low(0), 0);
    for (unsigned i = 0; i + 1 < HIST_BUCKETS; i++) {
        CHECK_EQ(hist_bucket_high(i) + 1, hist_bucket_low(i + 1));
        CHECK_EQ(hist_index(hist_bucket_low(i)), i);
        CHECK_EQ(hist_index(hist_bucket_high(i)), i);
        uint64_t lo = hist_bucket_low(i), w = hist_bucket_high(i) - lo + 1;
        if (lo)
            CHECK((double)(w - 1) / (double)lo < 0.01);
    }
    for (uint64_t v = 0; v < 256; v++) {
        CHECK_EQ(hist_index(v), v); /* exact */
        CHECK_EQ(hist_bucket_high(hist_index(v)), v);
    }
    /* huge values land in the last bucket */
    CHECK_EQ(hist_index(UINT64_MAX), HIST_BUCKETS - 1);
    CHECK_EQ(hist_index((uint64_t)1 << 41), HIST_BUCKETS - 1);
    CHECK_EQ(hist_index(((uint64_t)1 << 41) - 1), HIST_BUCKETS - 1);
}

static void test_error_bound_random(void)
{
    for (int i = 0; i < 200000; i++) {
        uint64_t v = log_uniform();
        unsigned b = hist_index(v);
        uint64_t hi = hist_bucket_high(b);
        CHECK(hist_bucket_low(b) <= v && v <= hi);
        CHECK((double)(hi - v) <= (double)v * 0.0079); /* 1/128 */
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void test_percentiles_vs_exact(void)
{
    enum { N = 100000 };
    uint64_t *v = malloc(N * sizeof *v);
    hist_t *h = malloc(sizeof *h);
    hist_init(h);
    for (int i = 0; i < N; i++) {
        /* a latency-like mix: most around 50-500 us, a tail to 1 s (in ns) */
        v[i] = next_rand() % 10 ? 50000 + next_rand() % 450000 : 1000 + next_rand() % 1000000000;
        hist_record(h, v[i]);
    }
    qsort(v, N, sizeof *v, cmp_u64);
    const double ps[] = {1, 10, 50, 90, 99, 99.9, 99.99};
    for (size_t k = 0; k < sizeof ps / sizeof ps[0]; k++) {
        size_t rank = (size_t)ceil(ps[k] / 100.0 * N); /* 1-based */
        uint64_t exact = v[rank - 1];
        uint64_t got = hist_percentile(h, ps[k]);
        CHECK(got >= exact);
        CHECK((double)(got - exact) <= 0.01 * (double)exact);
    }
    CHECK_EQ(hist_percentile(h, 100), v[N - 1]);
    CHECK_EQ(h->min, v[0]);
    CHECK_EQ(h->max, v[N - 1]);
    CHECK_EQ(h->total, N);
    double sum = 0;
    for (int i = 0; i < N; i++)
        sum += (double)v[i];
    CHECK(fabs(hist_mean(h) - sum / N) < 1e-6 * sum / N);
    free(v);
    free(h);
}

static void test_small_and_empty(void)
{
    hist_t *h = malloc(sizeof *h);
    hist_init(h);
    CHECK_EQ(hist_percentile(h, 50), 0);
    CHECK(hist_mean(h) == 0);
    hist_record(h, 20000000); /* 20 ms */
    /* a single value: every percentile is that value exactly (clamped to min/max) */
    CHECK_EQ(hist_percentile(h, 50), 20000000);
    CHECK_EQ(hist_percentile(h, 99.9), 20000000);
    hist_record(h, 10);
    hist_record(h, 11);
    CHECK_EQ(hist_percentile(h, 1), 10);
    CHECK_EQ(hist_percentile(h, 50), 11);
    CHECK_EQ(hist_percentile(h, 67), 20000000);
    free(h);
}

static void test_merge_exact(void)
{
    hist_t *a = malloc(sizeof *a), *b = malloc(sizeof *b), *all = malloc(sizeof *all);
    hist_init(a);
    hist_init(b);
    hist_init(all);
    for (int i = 0; i < 50000; i++) {
        uint64_t v = log_uniform();
        hist_record(i % 3 ? a : b, v);
        hist_record(all, v);
    }
    hist_merge(a, b);
    CHECK(memcmp(a->counts, all->counts, sizeof a->counts) == 0);
    CHECK_EQ(a->total, all->total);
    CHECK_EQ(a->min, all->min);
    CHECK_EQ(a->max, all->max);
    CHECK(fabs(a->sum - all->sum) <= 1e-9 * all->sum);
    for (double p = 1; p < 100; p += 7)
        CHECK_EQ(hist_percentile(a, p), hist_percentile(all, p));
    /* merging an empty one changes nothing */
    hist_t *e = malloc(sizeof *e);
    hist_init(e);
    hist_merge(a, e);
    CHECK_EQ(a->min, all->min);
    CHECK_EQ(a->total, all->total);
    free(a);
    free(b);
    free(all);
    free(e);
}

static void test_report_merge_and_codes(void)
{
    report_t *x = malloc(sizeof *x), *y = malloc(sizeof *y);
    report_init(x);
    report_init(y);
    x->sent = 5;
    x->errors[ERR_CONNECT_REFUSED] = 2;
    x->t_first_send = 100;
    x->t_last_recv = 500;
    report_code_add(x->close_codes, 1000, 3);
    report_code_add(x->close_codes, 4001, 1);
    y->sent = 7;
    y->errors[ERR_UNANSWERED] = 1;
    y->t_first_send = 50;
    y->t_last_recv = 400;
    report_code_add(y->close_codes, 4001, 2);
    hist_record(&y->latency, 1234);
    report_merge(x, y);
    CHECK_EQ(x->sent, 12);
    CHECK_EQ(report_errors(x), 3);
    CHECK_EQ(x->t_first_send, 50);
    CHECK_EQ(x->t_last_recv, 500);
    CHECK_EQ(x->close_codes[0].code, 1000);
    CHECK_EQ(x->close_codes[0].count, 3);
    CHECK_EQ(x->close_codes[1].code, 4001);
    CHECK_EQ(x->close_codes[1].count, 3);
    CHECK_EQ(x->latency.total, 1);
    /* a full table sends further codes to the overflow slot (code 0) */
    report_init(x);
    for (uint32_t c = 1; c <= REPORT_CODES + 5; c++)
        report_code_add(x->http_status, 100 + c, 1);
    CHECK_EQ(x->http_status[REPORT_CODES - 1].code, 0);
    CHECK_EQ(x->http_status[REPORT_CODES - 1].count, 6);
    CHECK_STR(report_err_name(ERR_CLOSED_BY_SERVER), "closed_by_server");
    free(x);
    free(y);
}

int main(void)
{
    RUN(test_layout_contiguous_and_bounded);
    RUN(test_error_bound_random);
    RUN(test_percentiles_vs_exact);
    RUN(test_small_and_empty);
    RUN(test_merge_exact);
    RUN(test_report_merge_and_codes);
    return TEST_REPORT();
}
