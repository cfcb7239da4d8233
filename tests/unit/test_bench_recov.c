/* test_bench_recov.c: ws-bench recover mode's client side (bench/recov.h): envelope prefixes
 * parsed, and what a connection counts: in-order recovery, gaps, repeats, notices. */
#include "../../bench/recov.h"
#include "test.h"

static void feed(recov_conn_t *c, const char *frame, report_t *r)
{
    recov_frame_t f;
    recov_parse((const uint8_t *)frame, strlen(frame), &f);
    recov_frame(c, &f, 1000, 2000000000000000000LL, r);
}

static void test_parse(void)
{
    recov_frame_t f;
    const char *m = "{\"type\":\"message\",\"channel\":\"user:u7\",\"offset\":18,\"epoch\":\"k3x9\","
                    "\"data\":\"1765000000123456789 xxxx\"}";
    recov_parse((const uint8_t *)m, strlen(m), &f);
    CHECK_EQ(f.kind, RF_MESSAGE);
    CHECK_EQ(f.offset, 18);
    CHECK_STR(f.epoch, "k3x9");
    CHECK_EQ(f.stamp_ns, 1765000000123456789LL);
    const char *n = "{\"type\":\"recovery\",\"channel\":\"user:u7\",\"recovered\":false,\"offset\":30,"
                    "\"epoch\":\"k3x9\"}";
    recov_parse((const uint8_t *)n, strlen(n), &f);
    CHECK_EQ(f.kind, RF_RECOVERY);
    CHECK(!f.recovered);
    CHECK_EQ(f.offset, 30);
    recov_parse((const uint8_t *)"hello", 5, &f);
    CHECK_EQ(f.kind, RF_OTHER);
}

static void test_recovery_counts(void)
{
    report_t r;
    report_init(&r);
    recov_conn_t c = {0};
    recov_back(&c, 0);
    feed(&c, "{\"type\":\"message\",\"channel\":\"user:u1\",\"offset\":5,\"epoch\":\"e\",\"data\":\"x\"}", &r);
    feed(&c, "{\"type\":\"message\",\"channel\":\"user:u1\",\"offset\":6,\"epoch\":\"e\",\"data\":\"x\"}", &r);
    char q[100];
    CHECK(recov_query(&c, 1, q, sizeof q) > 0);
    CHECK_STR(q, "recover=6.e.user%3Au1");
    recov_drop(&c);
    recov_back(&c, 500);
    for (int o = 7; o <= 9; o++) {
        char m[120];
        snprintf(m, sizeof m, "{\"type\":\"message\",\"offset\":%d,\"epoch\":\"e\",\"data\":\"x\"}", o);
        feed(&c, m, &r);
    }
    feed(&c, "{\"type\":\"recovery\",\"recovered\":true,\"offset\":9,\"epoch\":\"e\"}", &r);
    CHECK_EQ(r.rc_away, 3);
    CHECK_EQ(r.rc_recovered, 3);
    CHECK_EQ(r.rc_ok, 1);
    CHECK_EQ(r.recovery.total, 1);
    feed(&c, "{\"type\":\"message\",\"offset\":9,\"epoch\":\"e\",\"data\":\"x\"}", &r);
    feed(&c, "{\"type\":\"message\",\"offset\":12,\"epoch\":\"e\",\"data\":\"x\"}", &r);
    CHECK_EQ(r.rc_dups, 1);
    CHECK_EQ(r.rc_gaps, 2);
    CHECK_EQ(report_errors(&r), 3);
    CHECK_EQ(r.received, 7);
    feed(&c, "{\"type\":\"recovery\",\"recovered\":true,\"offset\":9,\"epoch\":\"e\"}", &r);
    CHECK_EQ(r.errors[ERR_PROTOCOL], 1); /* a notice while not recovering */
}

int main(void)
{
    RUN(test_parse);
    RUN(test_recovery_counts);
    return TEST_REPORT();
}
