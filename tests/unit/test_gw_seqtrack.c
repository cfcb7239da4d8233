/* test_gw_seqtrack.c: the done prefix (gateway/seqtrack.h) and the id map (gateway/idmap.h)
 * against plain reference models, in order, out of order, twice, across the 32-bit wrap. */
#include <stdlib.h>

#include "../../gateway/idmap.h"
#include "../../gateway/seqtrack.h"
#include "test.h"

static uint64_t rng = 88172645463325252ULL;
static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

static void test_in_order_is_the_count(void)
{
    gw_seqtrack_t t = {0};
    for (int i = 0; i < 1000; i++)
        CHECK_EQ(gw_seqtrack_done(&t, gw_seqtrack_next(&t)), 0);
    CHECK_EQ(t.prefix, 1000);
    CHECK_EQ(gw_seqtrack_publish(&t), 1000);
    CHECK_EQ(gw_seqtrack_publish(&t), 0);
    CHECK_EQ(t.nmore, 0);
    gw_seqtrack_free(&t);
}

/* Random orders of doing 1..N (with repeats): the prefix is always the first not-done - 1. */
static void test_out_of_order_matches_a_model(void)
{
    enum { N = 3000 };
    for (int round = 0; round < 30; round++) {
        gw_seqtrack_t t = {0};
        static unsigned char done[N + 2];
        memset(done, 0, sizeof done);
        uint32_t nums[N];
        for (int i = 0; i < N; i++)
            nums[i] = gw_seqtrack_next(&t);
        uint64_t told = 0;
        for (int step = 0; step < 3 * N; step++) {
            uint32_t n = nums[rnd(N)];
            uint64_t near = t.prefix + 1 + rnd(4);
            if (round % 3 == 0 && rnd(2) && near <= N) /* mostly in order, with jumps */
                n = (uint32_t)near;
            CHECK_EQ(gw_seqtrack_done(&t, n), 0);
            done[n] = 1;
            uint64_t p = 0;
            while (p < N && done[p + 1])
                p++;
            CHECK_EQ(t.prefix, p);
            told += gw_seqtrack_publish(&t);
            CHECK_EQ(told, p);
            for (size_t i = 1; i < t.nmore; i++) /* sorted, not touching */
                CHECK(t.more[i].a > t.more[i - 1].b + 1);
        }
        gw_seqtrack_free(&t);
    }
}

static void test_numbers_wrap_at_32_bits(void)
{
    gw_seqtrack_t t = {.taken = 0xfffffff0ULL, .prefix = 0xfffffff0ULL,
                       .published = 0xfffffff0ULL};
    uint32_t a = gw_seqtrack_next(&t), b = 0;
    for (int i = 0; i < 40; i++)
        b = gw_seqtrack_next(&t);
    CHECK_EQ(gw_seqtrack_done(&t, b), 0); /* the last one first: after the wrap */
    CHECK_EQ(t.prefix, 0xfffffff0ULL);
    CHECK_EQ(gw_seqtrack_done(&t, a), 0);
    CHECK_EQ(t.prefix, 0xfffffff1ULL);
    for (uint64_t n = 0xfffffff2ULL; n <= t.taken; n++)
        CHECK_EQ(gw_seqtrack_done(&t, (uint32_t)n), 0);
    CHECK_EQ(t.prefix, t.taken);
    CHECK_EQ(gw_seqtrack_publish(&t), 41);
    gw_seqtrack_free(&t);
}

static void test_idmap_matches_a_model(void)
{
    enum { IDS = 500 };
    gw_idmap_t m = {0};
    static uint32_t model[IDS]; /* 0: absent, else n */
    memset(model, 0, sizeof model);
    uint32_t gen = 1;
    for (int step = 0; step < 20000; step++) {
        uint64_t id = 0x1234000000000000ULL + rnd(IDS) * 7919ULL + 1;
        size_t k = (size_t)((id - 0x1234000000000001ULL) / 7919);
        if (rnd(10) < 7) {
            CHECK_EQ(gw_idmap_put(&m, id, gen), 0);
            model[k] = gen;
        } else if (rnd(10) == 0) {
            uint32_t upto = gen - rnd(5);
            gw_idmap_drop_upto(&m, upto);
            for (int i = 0; i < IDS; i++)
                if (model[i] && (int32_t)(model[i] - upto) <= 0)
                    model[i] = 0;
        }
        if (rnd(20) == 0)
            gen++;
        CHECK_EQ(gw_idmap_has(&m, id), model[k] != 0);
    }
    size_t live = 0;
    for (int i = 0; i < IDS; i++) {
        live += model[i] != 0;
        CHECK_EQ(gw_idmap_has(&m, 0x1234000000000001ULL + (uint64_t)i * 7919), model[i] != 0);
    }
    CHECK_EQ(m.count, live);
    gw_idmap_free(&m);
}

int main(void)
{
    RUN(test_in_order_is_the_count);
    RUN(test_out_of_order_matches_a_model);
    RUN(test_numbers_wrap_at_32_bits);
    RUN(test_idmap_matches_a_model);
    return TEST_REPORT();
}
