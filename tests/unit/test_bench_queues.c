/* test_bench_queues.c: ws-bench's small queues: the open-loop schedule heap (sched), the FIFO
 * of due and send times (tsq) with wrap-around and growth, and write-behind on a real non-blocking
 * socket (wbuf): order kept under a full socket, errors on a broken one. */
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../bench/sched.h"
#include "../../bench/tsq.h"
#include "../../bench/wbuf.h"
#include "test.h"

static uint64_t rng = 0x9E3779B97F4A7C15ULL;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void test_sched_orders_by_due(void)
{
    sched_t s = SCHED_INIT;
    int64_t due;
    CHECK(!sched_peek(&s, &due));
    /* interleaved pushes and pops against a counting reference: pops never go backwards
     * beyond what was pushed since, and everything comes out */
    int64_t last = INT64_MIN;
    uint64_t pushed = 0, popped = 0;
    for (int round = 0; round < 20000; round++) {
        if (rnd() % 3 || !s.len) {
            /* new entries are never earlier than the last popped one (like the engine) */
            int64_t d = (last == INT64_MIN ? 0 : last) + (int64_t)(rnd() % 1000);
            REQUIRE(sched_push(&s, d, (uint32_t)pushed) == 0);
            pushed++;
        } else {
            REQUIRE(sched_peek(&s, &due));
            sched_item_t it = sched_pop(&s);
            CHECK_EQ(it.due, due);
            CHECK(it.due >= last);
            last = it.due;
            popped++;
        }
    }
    while (s.len) {
        sched_item_t it = sched_pop(&s);
        CHECK(it.due >= last);
        last = it.due;
        popped++;
    }
    CHECK_EQ(popped, pushed);
    sched_free(&s);
    /* random order in, sorted out, ids preserved */
    for (uint32_t i = 0; i < 5000; i++)
        REQUIRE(sched_push(&s, (int64_t)(rnd() % 100000) - 50000, i) == 0);
    last = INT64_MIN;
    uint64_t idsum = 0;
    while (s.len) {
        sched_item_t it = sched_pop(&s);
        CHECK(it.due >= last);
        last = it.due;
        idsum += it.id;
    }
    CHECK_EQ(idsum, 5000ULL * 4999 / 2);
    sched_free(&s);
}

static void test_tsq_wraps_and_grows_in_order(void)
{
    tsq_t *q = NULL;
    tsq_ent_t v;
    CHECK(!tsq_pop(q, &v));
    CHECK_EQ(tsq_len(q), 0);
    int64_t next_in = 0, next_out = 0;
    /* keep 1..40 entries in flight so the ring wraps many times and grows past its first 4;
     * both times of an entry come back together */
    for (int round = 0; round < 10000; round++) {
        int k = (int)(rnd() % 5);
        for (int i = 0; i < k && tsq_len(q) < 40; i++, next_in++)
            REQUIRE(tsq_push(&q, next_in, next_in * 3 + 1, 4) == 0);
        int m = (int)(rnd() % 5);
        for (int i = 0; i < m && tsq_pop(q, &v); i++, next_out++) {
            CHECK_EQ(v.due, next_out);
            CHECK_EQ(v.sent, next_out * 3 + 1);
        }
    }
    for (; tsq_pop(q, &v); next_out++)
        CHECK_EQ(v.due, next_out);
    CHECK_EQ(next_in, next_out);
    CHECK(q->cap >= 32 && q->cap <= 64);
    REQUIRE(tsq_push(&q, 7, 8, 4) == 0);
    tsq_clear(q);
    CHECK_EQ(tsq_len(q), 0);
    CHECK(!tsq_pop(q, &v));
    free(q);
}

static void test_wbuf_keeps_order_when_the_socket_is_full(void)
{
    int sv[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    int small = 4096;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    enum { CHUNK = 3000, N = 400 };
    static uint8_t want[CHUNK * N], got[CHUNK * N];
    for (size_t i = 0; i < sizeof want; i++)
        want[i] = (uint8_t)(rnd() >> 11);
    wbuf_t *w = NULL;
    size_t in = 0, out = 0;
    int queued_seen = 0;
    while (out < sizeof got) {
        if (in < sizeof want) {
            REQUIRE(wbuf_write(&w, sv[0], want + in, CHUNK) == 0);
            in += CHUNK;
            if (wbuf_pending(w))
                queued_seen = 1;
        }
        /* read a little, then flush: the socket fills and drains many times */
        ssize_t r = read(sv[1], got + out, (rnd() % 2) ? 1000 : 9000);
        if (r > 0)
            out += (size_t)r;
        REQUIRE(wbuf_flush(&w, sv[0]) == 0);
    }
    CHECK(queued_seen);
    CHECK(w == NULL); /* freed once empty */
    CHECK(memcmp(got, want, sizeof want) == 0);
    /* a broken socket is an error, not a silent loss */
    close(sv[1]);
    signal(SIGPIPE, SIG_IGN);
    int rv = 0;
    for (int i = 0; i < 100 && rv == 0; i++)
        rv = wbuf_write(&w, sv[0], want, CHUNK);
    CHECK_EQ(rv, -1);
    free(w);
    close(sv[0]);
}

int main(void)
{
    RUN(test_sched_orders_by_due);
    RUN(test_tsq_wraps_and_grows_in_order);
    RUN(test_wbuf_keeps_order_when_the_socket_is_full);
    return TEST_REPORT();
}
