/* test_wake.c: coalesced eventfd wake-ups: a burst costs one wake; no wake is lost. */
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "ring.h"
#include "test.h"
#include "wake.h"

static bool readable(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, ms) == 1;
}

static void test_burst_coalesces(void)
{
    wake_t w;
    REQUIRE(wake_init(&w) == 0);
    CHECK(!readable(w.fd, 0));
    for (int i = 0; i < 100; i++)
        wake_signal(&w);
    CHECK(readable(w.fd, 0));
    uint64_t v = 0;
    CHECK(read(w.fd, &v, sizeof v) == sizeof v);
    CHECK_EQ(v, 1); /* one write for the whole burst */
    wake_lower(&w.pending);
    wake_signal(&w);
    CHECK(readable(w.fd, 0));
    wake_clear(&w);
    CHECK(!readable(w.fd, 0));
    wake_destroy(&w);
}

/* Producer pushes N items with a signal each; the consumer sleeps in poll and must see all. */
#define N 200000
static ring_t *r;
static wake_t w;

static void *prod(void *a)
{
    (void)a;
    for (uintptr_t i = 1; i <= N;) {
        if (ring_push(r, (void *)i)) {
            i++;
            wake_signal(&w);
        }
    }
    return NULL;
}

static void test_no_lost_wakeup(void)
{
    r = ring_new(64);
    REQUIRE(r && wake_init(&w) == 0);
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, prod, NULL) == 0);
    uintptr_t got = 0;
    int stalls = 0;
    while (got < N) {
        if (!readable(w.fd, 2000)) { /* a lost wake-up would hang here */
            stalls++;
            break;
        }
        wake_clear(&w);
        void *out[64];
        size_t n;
        while ((n = ring_pop_batch(r, out, 64)) > 0)
            for (size_t i = 0; i < n; i++)
                CHECK_EQ((uintptr_t)out[i], ++got);
    }
    pthread_join(t, NULL);
    CHECK_EQ(stalls, 0);
    CHECK_EQ(got, N);
    wake_destroy(&w);
    ring_free(r);
}

int main(void)
{
    RUN(test_burst_coalesces);
    RUN(test_no_lost_wakeup);
    return TEST_REPORT();
}
