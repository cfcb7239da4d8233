/* test_metrics.c: registry, sharded updates from several threads, Prometheus rendering. */
#include <pthread.h>
#include <stdlib.h>

#include "metrics.h"
#include "test.h"

static int c_in, g_conns, h_stage;

static void *worker(void *arg)
{
    (void)arg;
    for (int i = 0; i < 100000; i++) {
        metrics_inc(c_in);
        metrics_gauge_add(g_conns, 1);
        metrics_gauge_add(g_conns, -1);
    }
    metrics_gauge_add(g_conns, 2);
    metrics_observe(h_stage, 1500); /* 1.5 us -> first bucket (10 us) */
    return NULL;
}

static void test_register_is_idempotent(void)
{
    c_in = metrics_counter("t_messages_total", "direction=\"in\"", "messages");
    CHECK(c_in >= 0);
    CHECK_EQ(metrics_counter("t_messages_total", "direction=\"in\"", "messages"), c_in);
    int out = metrics_counter("t_messages_total", "direction=\"out\"", "messages");
    CHECK(out >= 0 && out != c_in);
    CHECK_EQ(metrics_gauge("t_messages_total", NULL, "x"), -1); /* type conflict */
    metrics_inc(-1);                                             /* ignored, no crash */
}

static void test_threads_sum(void)
{
    g_conns = metrics_gauge("t_connections", NULL, "open connections");
    h_stage = metrics_histogram("t_stage_seconds", "stage=\"ingress\"", "stage latency",
                                metrics_latency_bounds, metrics_latency_nbounds, 1e-9);
    REQUIRE(g_conns >= 0 && h_stage >= 0);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        REQUIRE(pthread_create(&t[i], NULL, worker, NULL) == 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    CHECK_EQ(metrics_value(c_in), 400000);
    CHECK_EQ(metrics_value(g_conns), 8);
    metrics_gauge_set(g_conns, 0); /* set adds to the shard sum: documented single-owner use */
}

static void test_render_format(void)
{
    metrics_observe(h_stage, 20000000); /* 20 ms */
    metrics_observe(h_stage, 20000000000ULL); /* 20 s -> +Inf only */
    buf_t b = BUF_INIT;
    CHECK_EQ(metrics_render(&b), 0);
    buf_append(&b, "", 1);
    const char *s = (const char *)b.data;
    CHECK(strstr(s, "# TYPE t_messages_total counter\n") != NULL);
    CHECK(strstr(s, "t_messages_total{direction=\"in\"} 400000\n") != NULL);
    CHECK(strstr(s, "t_messages_total{direction=\"out\"} 0\n") != NULL);
    CHECK(strstr(s, "# TYPE t_connections gauge\nt_connections 8\n") != NULL);
    CHECK(strstr(s, "t_stage_seconds_bucket{stage=\"ingress\",le=\"1e-05\"} 4\n") != NULL);
    CHECK(strstr(s, "t_stage_seconds_bucket{stage=\"ingress\",le=\"0.025\"} 5\n") != NULL);
    CHECK(strstr(s, "t_stage_seconds_bucket{stage=\"ingress\",le=\"10\"} 5\n") != NULL);
    CHECK(strstr(s, "t_stage_seconds_bucket{stage=\"ingress\",le=\"+Inf\"} 6\n") != NULL);
    CHECK(strstr(s, "t_stage_seconds_count{stage=\"ingress\"} 6\n") != NULL);
    CHECK(strstr(s, "t_stage_seconds_sum{stage=\"ingress\"} 20.020006\n") != NULL);
    /* one HELP/TYPE per family even with several series */
    const char *first = strstr(s, "# TYPE t_messages_total");
    CHECK(first && strstr(first + 1, "# TYPE t_messages_total") == NULL);
    buf_free(&b);
}

int main(void)
{
    RUN(test_register_is_idempotent);
    RUN(test_threads_sum);
    RUN(test_render_format);
    return TEST_REPORT();
}
