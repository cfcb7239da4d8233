/* test_gw_handoff.c: the service-thread <-> writer hand-off (gateway/handoff.h): order through
 * ring and overflow, the room wake-up, the lost wake-up window (run deterministically through
 * the test hook), and two real threads that sleep whenever they have nothing to do. */
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>

#include "../../gateway/handoff.h"
#include "test.h"
#include "wake.h"

typedef struct item {
    gw_handoff_item_t link;
    int n;
} item_t;

static item_t *mk(int n)
{
    item_t *it = calloc(1, sizeof *it);
    it->n = n;
    return it;
}

static int wakes;
static void count_wake(void *ud)
{
    (void)ud;
    wakes++;
}

/* pops everything, checks the numbers come in order from *next, frees */
static int drain(gw_handoff_t *h, int *next)
{
    void *out[16];
    size_t n;
    int got = 0;
    while ((n = gw_handoff_pop(h, out, 16)) > 0)
        for (size_t i = 0; i < n; i++) {
            item_t *it = out[i];
            CHECK_EQ(it->n, *next);
            (*next)++;
            got++;
            free(it);
        }
    return got;
}

static void test_order_through_overflow_and_room_wakeup(void)
{
    gw_handoff_t h;
    REQUIRE(gw_handoff_init(&h, 4, count_wake, NULL) == 0);
    wakes = 0;
    int i = 0;
    for (; i < 4; i++)
        CHECK(gw_handoff_push(&h, mk(i)));
    for (; i < 10; i++)
        CHECK(!gw_handoff_push(&h, mk(i))); /* full: in order behind the ring */
    CHECK(gw_handoff_overflowing(&h));
    CHECK_EQ(atomic_load(&h.want_room), 1);
    int next = 0;
    CHECK_EQ(drain(&h, &next), 4);
    CHECK_EQ(wakes, 1);               /* the producer is told there is room, once */
    CHECK_EQ(atomic_load(&h.want_room), 0);
    CHECK(!gw_handoff_flush(&h));     /* 4 of 6 go in, 2 wait: raised again */
    CHECK_EQ(atomic_load(&h.want_room), 1);
    CHECK_EQ(drain(&h, &next), 4);
    CHECK(gw_handoff_flush(&h));
    CHECK_EQ(atomic_load(&h.want_room), 0); /* nothing waits: no stray wake-up later */
    CHECK_EQ(drain(&h, &next), 2);
    CHECK_EQ(next, 10);
    CHECK_EQ(wakes, 2);
    /* once the overflow is empty, pushes go straight to the ring again */
    CHECK(gw_handoff_push(&h, mk(10)));
    CHECK_EQ(drain(&h, &next), 1);
    CHECK_EQ(wakes, 2);
    gw_handoff_free(&h, free);
}

/* The consumer empties the ring in the gap between the producer's failed push and its raising
 * want_room: the consumer looked at the flag too early, so nothing will wake the producer.
 * Only the producer's retry after raising can find the room (issue 14, case 3). */
static gw_handoff_t *gap_h;
static int gap_next, gap_runs;
static void consumer_in_gap(gw_handoff_t *h)
{
    gap_runs++;
    drain(h, &gap_next);
}

static void test_lost_wakeup_window_push(void)
{
    gw_handoff_t h;
    REQUIRE(gw_handoff_init(&h, 2, count_wake, NULL) == 0);
    gap_h = &h;
    gap_next = 0;
    gap_runs = 0;
    wakes = 0;
    CHECK(gw_handoff_push(&h, mk(0)));
    CHECK(gw_handoff_push(&h, mk(1)));
    gw_handoff_test_gap = consumer_in_gap;
    bool in = gw_handoff_push(&h, mk(2)); /* full; the consumer empties the ring in the gap */
    gw_handoff_test_gap = NULL;
    CHECK_EQ(gap_runs, 1);
    CHECK_EQ(wakes, 0); /* the consumer saw no flag: it cannot have woken us */
    /* so the item must be in the ring now, not stranded in the overflow */
    CHECK(in);
    CHECK(!gw_handoff_overflowing(&h));
    CHECK_EQ(drain(&h, &gap_next), 1);
    CHECK_EQ(gap_next, 3);
    gw_handoff_free(&h, free);
}

static void test_lost_wakeup_window_try_ring(void)
{
    gw_handoff_t h;
    REQUIRE(gw_handoff_init(&h, 2, count_wake, NULL) == 0);
    gap_next = 0;
    gap_runs = 0;
    wakes = 0;
    CHECK(gw_handoff_try_ring(&h, mk(0)));
    CHECK(gw_handoff_try_ring(&h, mk(1)));
    item_t *x = mk(2);
    gw_handoff_test_gap = consumer_in_gap;
    bool in = gw_handoff_try_ring(&h, x);
    gw_handoff_test_gap = NULL;
    CHECK_EQ(gap_runs, 1);
    CHECK(in);
    if (!in)
        free(x);
    CHECK_EQ(drain(&h, &gap_next), in ? 1 : 0);
    /* and when it really is full, the flag stays raised for the consumer's next pop */
    CHECK(gw_handoff_try_ring(&h, mk(3)));
    CHECK(gw_handoff_try_ring(&h, mk(4)));
    item_t *y = mk(5);
    CHECK(!gw_handoff_try_ring(&h, y));
    free(y);
    CHECK_EQ(atomic_load(&h.want_room), 1);
    CHECK_EQ(drain(&h, &gap_next), 2);
    CHECK_EQ(wakes, 1);
    gw_handoff_free(&h, free);
}

/* ---- two threads that sleep when they have nothing to do ---------------------------------- */

enum { STRESS_ITEMS = 400000, WAIT_MS = 3000 };

typedef struct {
    gw_handoff_t h;
    wake_t to_consumer, to_producer;
    _Atomic int stalled;   /* a sleeper waited WAIT_MS with work pending: a lost wake-up */
    int received;
} stress_t;

static void wake_prod(void *ud)
{
    wake_signal(&((stress_t *)ud)->to_producer);
}

static bool sleep_on(wake_t *w)
{
    struct pollfd pf = {.fd = w->fd, .events = POLLIN};
    return poll(&pf, 1, WAIT_MS) > 0;
}

static void *producer(void *arg)
{
    stress_t *t = arg;
    for (int i = 0; i < STRESS_ITEMS && !atomic_load(&t->stalled); i++) {
        bool in = gw_handoff_push(&t->h, mk(i));
        if ((i & 63) == 0 || !in)
            wake_signal(&t->to_consumer);
        while (!in) { /* backpressure: sleep until the consumer made room */
            wake_clear(&t->to_producer);
            if (gw_handoff_flush(&t->h))
                break;
            wake_signal(&t->to_consumer);
            if (!sleep_on(&t->to_producer) && !gw_handoff_flush(&t->h)) {
                atomic_store(&t->stalled, 1);
                return NULL;
            }
        }
    }
    while (!gw_handoff_flush(&t->h) && !atomic_load(&t->stalled))
        sleep_on(&t->to_producer);
    wake_signal(&t->to_consumer);
    return NULL;
}

static void *consumer(void *arg)
{
    stress_t *t = arg;
    int next = 0;
    while (t->received < STRESS_ITEMS && !atomic_load(&t->stalled)) {
        wake_clear(&t->to_consumer);
        void *out[32];
        size_t n;
        bool any = false;
        while ((n = gw_handoff_pop(&t->h, out, 32)) > 0) {
            any = true;
            for (size_t i = 0; i < n; i++) {
                item_t *it = out[i];
                if (it->n != next)
                    atomic_store(&t->stalled, 2);
                next++;
                t->received++;
                free(it);
            }
            if ((next & 1023) == 0)
                break; /* now and then leave items: the producer meets a full ring */
        }
        if (!any && t->received < STRESS_ITEMS && !sleep_on(&t->to_consumer) &&
            !gw_handoff_count(&t->h))
            atomic_store(&t->stalled, 1);
    }
    return NULL;
}

static void test_two_threads_never_stall(void)
{
    stress_t t = {0};
    REQUIRE(gw_handoff_init(&t.h, 64, wake_prod, &t) == 0);
    REQUIRE(wake_init(&t.to_consumer) == 0 && wake_init(&t.to_producer) == 0);
    atomic_init(&t.stalled, 0);
    pthread_t a, b;
    pthread_create(&a, NULL, producer, &t);
    pthread_create(&b, NULL, consumer, &t);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    CHECK_EQ(atomic_load(&t.stalled), 0);
    CHECK_EQ(t.received, STRESS_ITEMS);
    gw_handoff_free(&t.h, free);
    wake_destroy(&t.to_consumer);
    wake_destroy(&t.to_producer);
}

int main(void)
{
    RUN(test_order_through_overflow_and_room_wakeup);
    RUN(test_lost_wakeup_window_push);
    RUN(test_lost_wakeup_window_try_ring);
    RUN(test_two_threads_never_stall);
    return TEST_REPORT();
}
