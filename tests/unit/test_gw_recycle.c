/* test_gw_recycle.c: blocks going home (gateway/recycle.h): through the return ring to their
 * owner (the class tag riding in the pointer), and the per-thread stacks of blocks by size
 * class (reused by the same thread, bounded per class, only on registered threads, freed when
 * the thread unregisters; a block without a tag is never kept). */
#include <malloc.h>
#include <stdlib.h>

#include "../../gateway/recycle.h"
#include "ring.h"
#include "test.h"

static void test_blocks_are_reused_by_their_thread(void)
{
    gw_recycle_register(GW_RC_WRITER, 0, NULL, 0);
    uint8_t ra, rb, rc, rd, rs, rl, rt;
    void *a = gw_rc_alloc(1500, &ra);
    REQUIRE(a != NULL);
    CHECK(ra != 0);
    CHECK(malloc_usable_size(a) >= 2048); /* allocated at its class's size */
    gw_recycle(a, GW_OWNER_NONE, ra);
    CHECK_EQ(gw_rc_kept(2048), 1);
    void *b = gw_rc_alloc(2000, &rb); /* the same class: the kept block */
    CHECK(b == a);
    CHECK_EQ(rb, ra);
    CHECK_EQ(gw_rc_kept(2048), 0);
    void *c = gw_rc_alloc(3000, &rc), *d = gw_rc_alloc(16384, &rd);
    gw_recycle(c, GW_OWNER_NONE, rc);
    gw_recycle(d, GW_OWNER_NONE, rd);
    CHECK_EQ(gw_rc_kept(4096), 1);
    CHECK_EQ(gw_rc_kept(16384), 1);
    CHECK(gw_rc_alloc(16000, &rd) == d);
    free(d); /* a kept block is a malloc block like any other */
    /* small blocks (tcache's, which holds 7 of a size) are kept in their class too; large ones
     * (no class, tag 0) are not kept */
    void *s = gw_rc_alloc(500, &rs), *l = gw_rc_alloc(100000, &rl);
    CHECK(malloc_usable_size(s) >= 512);
    CHECK_EQ(rl, 0);
    gw_recycle(s, GW_OWNER_NONE, rs);
    gw_recycle(l, GW_OWNER_NONE, rl);
    CHECK_EQ(gw_rc_kept(512), 1);
    CHECK_EQ(gw_rc_kept(2048) + gw_rc_kept(4096) + gw_rc_kept(8192) + gw_rc_kept(16384), 1);
    CHECK(gw_rc_alloc(300, &rs) == s); /* 257..512: the same class */
    CHECK_EQ(gw_rc_kept(512), 0);
    CHECK_EQ(gw_rc_kept(500), 0); /* not a class size */
    void *t = gw_rc_alloc(1, &rt);
    CHECK(malloc_usable_size(t) >= 128); /* the smallest class */
    free(t);
    /* a plain malloc block (tag 0, e.g. reassembly's realloc'd events) is freed, not kept */
    gw_recycle(malloc(2048), GW_OWNER_NONE, 0);
    CHECK_EQ(gw_rc_kept(2048), 0);
    free(s);
    free(b);
    gw_recycle_register(GW_RC_NONE, 0, NULL, 0); /* frees what is kept (LeakSanitizer) */
    CHECK_EQ(gw_rc_kept(4096), 0);
}

static void test_each_class_is_bounded(void)
{
    gw_recycle_register(GW_RC_SVC, 0, NULL, 0);
    void *v[1100];
    uint8_t r[1100];
    for (int i = 0; i < 600; i++)
        v[i] = gw_rc_alloc(2048, &r[i]);
    for (int i = 0; i < 600; i++)
        gw_recycle(v[i], GW_OWNER_NONE, r[i]);
    CHECK_EQ(gw_rc_kept(2048), 512); /* 1 MiB of 2 KiB blocks; the rest freed */
    for (int i = 0; i < 100; i++)
        v[i] = gw_rc_alloc(9000, &r[i]);
    for (int i = 0; i < 100; i++)
        gw_recycle(v[i], GW_OWNER_NONE, r[i]);
    CHECK_EQ(gw_rc_kept(16384), 64);
    for (int i = 0; i < 1100; i++)
        v[i] = gw_rc_alloc(100, &r[i]);
    for (int i = 0; i < 1100; i++)
        gw_recycle(v[i], GW_OWNER_NONE, r[i]);
    CHECK_EQ(gw_rc_kept(128), 1024); /* small blocks: 1 024 at most */
    gw_recycle_register(GW_RC_NONE, 0, NULL, 0);
    CHECK_EQ(gw_rc_kept(2048), 0);
    CHECK_EQ(gw_rc_kept(128), 0);
}

static void test_unregistered_threads_keep_nothing(void)
{
    uint8_t ra;
    void *a = gw_rc_alloc(1500, &ra);
    gw_recycle(a, GW_OWNER_NONE, ra);
    CHECK_EQ(gw_rc_kept(2048), 0);
}

static void test_blocks_go_home_through_the_ring_and_are_kept_there(void)
{
    ring_t *r = ring_new(8);
    REQUIRE(r != NULL);
    ring_t *to_peer[1] = {r};
    /* a writer (peer 0's view) hands a service thread's blocks back */
    gw_recycle_register(GW_RC_SVC, 0, NULL, 0);
    uint8_t ra, rb;
    void *a = gw_rc_alloc(1500, &ra), *b = gw_rc_alloc(200, &rb), *plain = malloc(1500);
    gw_recycle_register(GW_RC_NONE, 0, NULL, 0);
    gw_recycle_register(GW_RC_WRITER, 0, to_peer, 1);
    gw_recycle(a, 0, ra);
    gw_recycle(b, 0, rb);
    gw_recycle(plain, 0, 0);
    CHECK_EQ(gw_rc_kept(2048), 0); /* in the ring, not kept here */
    CHECK_EQ(ring_count(r), 3);
    gw_recycle_register(GW_RC_NONE, 0, NULL, 0);
    gw_recycle_register(GW_RC_SVC, 0, NULL, 0);
    gw_recycle_drain(r); /* home: kept in their classes for the next events; plain freed */
    CHECK_EQ(gw_rc_kept(2048), 1);
    CHECK_EQ(gw_rc_kept(256), 1);
    uint8_t rx;
    CHECK(gw_rc_alloc(1400, &rx) == a); /* the tag came off: the pointer is the block's */
    CHECK_EQ(rx, ra);
    CHECK(gw_rc_alloc(129, &rx) == b);
    free(a);
    free(b);
    gw_recycle_register(GW_RC_NONE, 0, NULL, 0);
    ring_free(r);
}

int main(void)
{
    RUN(test_blocks_are_reused_by_their_thread);
    RUN(test_each_class_is_bounded);
    RUN(test_unregistered_threads_keep_nothing);
    RUN(test_blocks_go_home_through_the_ring_and_are_kept_there);
    return TEST_REPORT();
}
