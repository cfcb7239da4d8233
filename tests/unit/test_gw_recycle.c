/* test_gw_recycle.c: blocks going home (gateway/recycle.h): through the return ring to their
 * owner, and the per-thread stacks of blocks past glibc's tcache (reused by the same thread,
 * bounded per class, only on registered threads, freed when the thread unregisters). */
#include <malloc.h>
#include <stdlib.h>

#include "../../gateway/recycle.h"
#include "ring.h"
#include "test.h"

static void test_large_blocks_are_reused_by_their_thread(void)
{
    gw_recycle_register(GW_RC_WRITER, 0, NULL, 0);
    void *a = gw_rc_alloc(1500);
    REQUIRE(a != NULL);
    CHECK(malloc_usable_size(a) >= 2048); /* allocated at its class's size */
    gw_recycle(a, GW_OWNER_NONE);
    CHECK_EQ(gw_rc_kept(0), 1);
    void *b = gw_rc_alloc(2000); /* the same class: the kept block */
    CHECK(b == a);
    CHECK_EQ(gw_rc_kept(0), 0);
    void *c = gw_rc_alloc(3000), *d = gw_rc_alloc(16384);
    gw_recycle(c, GW_OWNER_NONE);
    gw_recycle(d, GW_OWNER_NONE);
    CHECK_EQ(gw_rc_kept(1), 1);
    CHECK_EQ(gw_rc_kept(3), 1);
    CHECK(gw_rc_alloc(16000) == d);
    free(d); /* a kept block is a malloc block like any other */
    /* small blocks (tcache's) and large ones are not kept */
    void *s = gw_rc_alloc(500), *l = gw_rc_alloc(100000);
    gw_recycle(s, GW_OWNER_NONE);
    gw_recycle(l, GW_OWNER_NONE);
    CHECK_EQ(gw_rc_kept(0) + gw_rc_kept(1) + gw_rc_kept(2) + gw_rc_kept(3), 1);
    free(b);
    gw_recycle_register(GW_RC_NONE, 0, NULL, 0); /* frees what is kept (LeakSanitizer) */
    CHECK_EQ(gw_rc_kept(1), 0);
}

static void test_each_class_is_bounded(void)
{
    gw_recycle_register(GW_RC_SVC, 0, NULL, 0);
    void *v[600];
    for (int i = 0; i < 600; i++)
        v[i] = gw_rc_alloc(2048);
    for (int i = 0; i < 600; i++)
        gw_recycle(v[i], GW_OWNER_NONE);
    CHECK_EQ(gw_rc_kept(0), 512); /* 1 MiB of 2 KiB blocks; the rest freed */
    for (int i = 0; i < 100; i++)
        v[i] = gw_rc_alloc(9000);
    for (int i = 0; i < 100; i++)
        gw_recycle(v[i], GW_OWNER_NONE);
    CHECK_EQ(gw_rc_kept(3), 64);
    gw_recycle_register(GW_RC_NONE, 0, NULL, 0);
    CHECK_EQ(gw_rc_kept(0), 0);
}

static void test_unregistered_threads_keep_nothing(void)
{
    void *a = gw_rc_alloc(1500);
    gw_recycle(a, GW_OWNER_NONE);
    CHECK_EQ(gw_rc_kept(0), 0);
}

static void test_blocks_go_home_through_the_ring_and_are_kept_there(void)
{
    ring_t *r = ring_new(8);
    REQUIRE(r != NULL);
    ring_t *to_peer[1] = {r};
    /* a writer (peer 0's view) hands a service thread's block back */
    gw_recycle_register(GW_RC_SVC, 0, NULL, 0);
    void *a = gw_rc_alloc(1500);
    gw_recycle_register(GW_RC_NONE, 0, NULL, 0);
    gw_recycle_register(GW_RC_WRITER, 0, to_peer, 1);
    gw_recycle(a, 0);
    CHECK_EQ(gw_rc_kept(0), 0); /* in the ring, not kept here */
    gw_recycle_register(GW_RC_NONE, 0, NULL, 0);
    gw_recycle_register(GW_RC_SVC, 0, NULL, 0);
    gw_recycle_drain(r); /* home: kept for the next event */
    CHECK_EQ(gw_rc_kept(0), 1);
    CHECK(gw_rc_alloc(1400) == a);
    free(a);
    gw_recycle_register(GW_RC_NONE, 0, NULL, 0);
    ring_free(r);
}

int main(void)
{
    RUN(test_large_blocks_are_reused_by_their_thread);
    RUN(test_each_class_is_bounded);
    RUN(test_unregistered_threads_keep_nothing);
    RUN(test_blocks_go_home_through_the_ring_and_are_kept_there);
    return TEST_REPORT();
}
