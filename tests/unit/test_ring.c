/* test_ring.c: SPSC ring: semantics, wrap-around, batches, and a two-thread stress test. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "ring.h"
#include "test.h"

static void test_capacity_rounds_up(void)
{
    ring_t *r = ring_new(5);
    REQUIRE(r);
    CHECK_EQ(ring_capacity(r), 8);
    ring_free(r);
    r = ring_new(0);
    REQUIRE(r);
    CHECK_EQ(ring_capacity(r), 2);
    ring_free(r);
}

static void test_push_pop_full_empty(void)
{
    ring_t *r = ring_new(4);
    REQUIRE(r);
    CHECK(ring_pop(r) == NULL);
    for (uintptr_t i = 1; i <= 4; i++)
        CHECK(ring_push(r, (void *)i));
    CHECK(!ring_push(r, (void *)5));
    CHECK_EQ(ring_count(r), 4);
    CHECK_EQ(ring_free_slots(r), 0);
    for (uintptr_t i = 1; i <= 4; i++)
        CHECK_EQ((uintptr_t)ring_pop(r), i);
    CHECK(ring_pop(r) == NULL);
    CHECK_EQ(ring_free_slots(r), 4);
    ring_free(r);
}

static void test_wraparound_and_batches(void)
{
    ring_t *r = ring_new(8);
    REQUIRE(r);
    uintptr_t next_in = 1, next_out = 1;
    void *items[16], *out[16];
    for (int round = 0; round < 1000; round++) {
        size_t n = (size_t)(round % 11);
        for (size_t i = 0; i < n; i++)
            items[i] = (void *)(next_in + i);
        size_t pushed = ring_push_batch(r, items, n);
        CHECK(pushed <= n);
        next_in += pushed;
        size_t got = ring_pop_batch(r, out, (size_t)(round % 5) + 1);
        for (size_t i = 0; i < got; i++)
            CHECK_EQ((uintptr_t)out[i], next_out++);
    }
    size_t got;
    while ((got = ring_pop_batch(r, out, 16)) > 0)
        for (size_t i = 0; i < got; i++)
            CHECK_EQ((uintptr_t)out[i], next_out++);
    CHECK_EQ(next_in, next_out);
    ring_free(r);
}

static void test_batch_partial_when_nearly_full(void)
{
    ring_t *r = ring_new(4);
    REQUIRE(r);
    void *items[6] = {(void *)1, (void *)2, (void *)3, (void *)4, (void *)5, (void *)6};
    CHECK_EQ(ring_push_batch(r, items, 3), 3);
    CHECK_EQ(ring_push_batch(r, items + 3, 3), 1);
    void *out[8];
    CHECK_EQ(ring_pop_batch(r, out, 8), 4);
    CHECK_EQ((uintptr_t)out[3], 4);
    ring_free(r);
}

/* Two threads, STRESS_N items: every item arrives exactly once, in order. */
#define STRESS_N 10000000u

static void *producer(void *arg)
{
    ring_t *r = arg;
    void *batch[32];
    uintptr_t i = 1;
    while (i <= STRESS_N) {
        if ((i & 3) == 0) { /* mix single and batch pushes */
            size_t n = 0;
            for (; n < 32 && i + n <= STRESS_N; n++)
                batch[n] = (void *)(i + n);
            i += ring_push_batch(r, batch, n);
        } else if (ring_push(r, (void *)i)) {
            i++;
        }
    }
    return NULL;
}

static void test_two_thread_stress(void)
{
    ring_t *r = ring_new(1024);
    REQUIRE(r);
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, producer, r) == 0);
    uintptr_t expect = 1;
    size_t bad = 0;
    void *out[64];
    while (expect <= STRESS_N) {
        size_t n = ring_pop_batch(r, out, (expect & 1) ? 64 : 7);
        for (size_t i = 0; i < n; i++)
            if ((uintptr_t)out[i] != expect++)
                bad++;
    }
    pthread_join(t, NULL);
    CHECK_EQ(bad, 0);
    CHECK_EQ(expect - 1, STRESS_N);
    CHECK(ring_pop(r) == NULL);
    ring_free(r);
}

int main(void)
{
    RUN(test_capacity_rounds_up);
    RUN(test_push_pop_full_empty);
    RUN(test_wraparound_and_batches);
    RUN(test_batch_partial_when_nearly_full);
    RUN(test_two_thread_stress);
    return TEST_REPORT();
}
