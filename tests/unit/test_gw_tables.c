/* test_gw_tables.c: gateway per-thread structures: connection table (ids, generations, stale
 * lookups, retirement), user/room indexes, outbound queue, u64map. */
#include <stdlib.h>

#include "../../gateway/conn_id.h"
#include "../../gateway/conn_table.h"
#include "../../gateway/index.h"
#include "../../gateway/outq.h"
#include "../../gateway/u64map.h"
#include "test.h"

static void test_conn_id_layout(void)
{
    uint64_t id = conn_id_make(0xBEEF, 5, 123456, 77);
    CHECK_EQ(conn_id_prefix(id), 0xBEEF);
    CHECK_EQ(conn_id_thread(id), 5);
    CHECK_EQ(conn_id_slot(id), 123456);
    CHECK_EQ(conn_id_gen(id), 77);
    uint64_t max = conn_id_make(0xFFFF, CONN_ID_THREAD_MAX, CONN_ID_SLOT_MAX, CONN_ID_GEN_MAX);
    CHECK(max == UINT64_MAX);
}

static void test_table_ids_unique_and_stale_miss(void)
{
    gw_conn_table_t t;
    gw_conn_table_init(&t, 42, 3, 0);
    gw_conn_t c[100];
    memset(c, 0, sizeof c);
    for (int i = 0; i < 100; i++)
        REQUIRE(gw_conn_table_add(&t, &c[i]) == 0);
    for (int i = 0; i < 100; i++) {
        CHECK(gw_conn_table_get(&t, c[i].id) == &c[i]);
        CHECK_EQ(conn_id_thread(c[i].id), 3);
        CHECK_EQ(conn_id_prefix(c[i].id), 42);
        for (int j = 0; j < i; j++)
            CHECK(c[i].id != c[j].id);
    }
    uint64_t old = c[7].id;
    gw_conn_table_remove(&t, &c[7]);
    CHECK(gw_conn_table_get(&t, old) == NULL);
    CHECK(gw_conn_table_get(&t, old ^ (1ULL << 48)) == NULL);  /* other prefix */
    CHECK(gw_conn_table_get(&t, conn_id_make(42, 4, 1, 1)) == NULL); /* other thread */
    CHECK_EQ(t.live, 99);
    gw_conn_table_free(&t);
}

/* A slot is reused only after many others are free, with a new generation: an id is never
 * issued twice. */
static void test_table_reuse_new_generation(void)
{
    gw_conn_table_t t;
    gw_conn_table_init(&t, 1, 0, 0);
    gw_conn_t a = {0};
    uint64_t seen_first = 0;
    int reused = 0;
    for (int i = 0; i < 5000; i++) {
        memset(&a, 0, sizeof a);
        REQUIRE(gw_conn_table_add(&t, &a) == 0);
        if (i == 0)
            seen_first = a.id;
        else if (conn_id_slot(a.id) == conn_id_slot(seen_first)) {
            CHECK(a.id != seen_first);
            CHECK(conn_id_gen(a.id) > conn_id_gen(seen_first));
            reused++;
        }
        gw_conn_table_remove(&t, &a);
    }
    CHECK(reused >= 1);
    CHECK(t.used >= 1024); /* at least MIN_FREE_BEFORE_REUSE slots before reuse */
    gw_conn_table_free(&t);
}

static void test_table_full(void)
{
    gw_conn_table_t t;
    gw_conn_table_init(&t, 1, 0, 4);
    gw_conn_t c[5] = {{0}};
    for (int i = 0; i < 4; i++)
        CHECK_EQ(gw_conn_table_add(&t, &c[i]), 0);
    CHECK_EQ(gw_conn_table_add(&t, &c[4]), -1);
    gw_conn_table_remove(&t, &c[0]);
    CHECK_EQ(gw_conn_table_add(&t, &c[4]), 0); /* reuse when nothing else is left */
    CHECK(c[4].id != c[0].id);
    gw_conn_table_free(&t);
}

static void test_index_users_and_rooms(void)
{
    gw_index_t ix = {0};
    gw_conn_t a = {.user = "ann"}, b = {.user = "ann"}, c = {.user = "cy"}, d = {0};
    CHECK_EQ(gw_index_add_user(&ix, &a), 0);
    CHECK_EQ(gw_index_add_user(&ix, &b), 0);
    CHECK_EQ(gw_index_add_user(&ix, &c), 0);
    CHECK_EQ(gw_index_add_user(&ix, &d), 0); /* anonymous: not indexed */
    int n = 0;
    for (gw_conn_t *x = gw_index_find_user(&ix, "ann", 3); x; x = gw_index_next_user(x->user_next, "ann", 3))
        n++;
    CHECK_EQ(n, 2);
    CHECK(gw_index_find_user(&ix, "an", 2) == NULL);

    CHECK_EQ(gw_index_join(&ix, &a, "r1", 2, 128), 0);
    CHECK_EQ(gw_index_join(&ix, &a, "r1", 2, 128), 0); /* idempotent */
    CHECK_EQ(gw_index_join(&ix, &c, "r1", 2, 128), 0);
    CHECK_EQ(gw_index_join(&ix, &c, "r2", 2, 128), 0);
    gw_room_t *r1 = gw_index_find_room(&ix, "r1", 2);
    REQUIRE(r1);
    CHECK_EQ(r1->n, 2);
    CHECK_EQ(ix.nrooms, 2);
    gw_index_leave(&ix, &a, "r1", 2);
    CHECK_EQ(r1->n, 1);
    gw_index_remove_conn(&ix, &c); /* leaves r1 (now empty: gone) and r2 */
    CHECK(gw_index_find_room(&ix, "r1", 2) == NULL);
    CHECK(gw_index_find_room(&ix, "r2", 2) == NULL);
    CHECK_EQ(ix.nrooms, 0);
    CHECK(gw_index_find_user(&ix, "cy", 2) == NULL);
    gw_index_remove_conn(&ix, &a);
    CHECK(gw_index_find_user(&ix, "ann", 3) == &b);
    gw_index_free(&ix);
}

/* --max-rooms-per-conn: a connection in max rooms joins no more (issue 15: 2 000 rooms with
 * 60 KB names took a gateway from 6 MB to 186 MB); rejoining one it is in still succeeds. */
static void test_rooms_per_conn_capped(void)
{
    gw_index_t ix = {0};
    gw_conn_t a = {0}, b = {0};
    char name[16];
    for (int i = 0; i < 3; i++) {
        int n = snprintf(name, sizeof name, "r%d", i);
        CHECK_EQ(gw_index_join(&ix, &a, name, (size_t)n, 3), 0);
    }
    CHECK_EQ(gw_index_join(&ix, &a, "r3", 2, 3), GW_INDEX_TOO_MANY);
    CHECK(gw_index_find_room(&ix, "r3", 2) == NULL); /* nothing left behind */
    CHECK_EQ(gw_index_join(&ix, &a, "r1", 2, 3), 0);  /* already in: fine */
    CHECK_EQ(gw_index_join(&ix, &b, "r3", 2, 3), 0);  /* per connection, not per room */
    gw_index_leave(&ix, &a, "r0", 2);
    CHECK_EQ(gw_index_join(&ix, &a, "r3", 2, 3), 0);  /* room again after a leave */
    CHECK_EQ(gw_index_find_room(&ix, "r3", 2)->n, 2);
    gw_index_remove_conn(&ix, &a);
    gw_index_remove_conn(&ix, &b);
    CHECK_EQ(ix.nrooms, 0);
    gw_index_free(&ix);
}

static void test_outq_lazy_and_refcounted(void)
{
    gw_outq_t *q = NULL;
    gw_payload_t *p = gw_payload_new("hello", 5, false, 0);
    REQUIRE(p);
    for (int i = 0; i < 10; i++) /* grows past the initial 4 */
        CHECK_EQ(gw_outq_push(&q, p), 0);
    CHECK_EQ(p->refs, 11);
    CHECK_EQ(gw_outq_bytes(q), 50);
    CHECK(gw_outq_peek(q) == p);
    for (int i = 0; i < 10; i++)
        gw_outq_pop(&q);
    CHECK(q == NULL); /* freed when empty: idle connections hold nothing */
    CHECK_EQ(p->refs, 1);
    CHECK_EQ(gw_outq_bytes(q), 0);
    gw_outq_push(&q, p);
    gw_outq_free(&q);
    CHECK(q == NULL);
    gw_payload_unref(p);
}

/* u64map against a plain array as reference, with deletions in the middle of clusters. */
static void test_u64map_random_ops(void)
{
    u64map_t m = U64MAP_INIT;
    enum { K = 4000 };
    static void *ref[K];
    memset(ref, 0, sizeof ref);
    uint64_t x = 88172645463325252ULL;
    for (int i = 0; i < 200000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint64_t k = x % K + 1;
        void *v = (void *)(uintptr_t)(i + 1);
        if (x & 0x100000) {
            void *old;
            CHECK_EQ(u64map_put(&m, k, v, &old), 0);
            CHECK(old == ref[k - 1]);
            ref[k - 1] = v;
        } else {
            CHECK(u64map_del(&m, k) == ref[k - 1]);
            ref[k - 1] = NULL;
        }
    }
    size_t live = 0;
    for (int k = 0; k < K; k++) {
        CHECK(u64map_get(&m, (uint64_t)k + 1) == ref[k]);
        live += ref[k] != NULL;
    }
    CHECK_EQ(m.len, live);
    u64map_free(&m);
}

int main(void)
{
    RUN(test_conn_id_layout);
    RUN(test_table_ids_unique_and_stale_miss);
    RUN(test_table_reuse_new_generation);
    RUN(test_table_full);
    RUN(test_index_users_and_rooms);
    RUN(test_rooms_per_conn_capped);
    RUN(test_outq_lazy_and_refcounted);
    RUN(test_u64map_random_ops);
    return TEST_REPORT();
}
