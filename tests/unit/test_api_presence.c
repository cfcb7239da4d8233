/* test_api_presence.c: ws-api presence (conn/user/gateway tables) and its hash table. */
#include <stdlib.h>

#include "../../api/hmap.h"
#include "../../api/presence.h"
#include "test.h"

static void test_hmap_grow_and_remove(void)
{
    typedef struct {
        hmap_node_t node;
        uint64_t key;
    } item_t;
    enum { N = 5000 };
    item_t *items = calloc(N, sizeof *items);
    REQUIRE(items != NULL);
    hmap_t m = HMAP_INIT;
    for (int i = 0; i < N; i++) {
        items[i].key = (uint64_t)i * 7919;
        REQUIRE(hmap_insert(&m, &items[i].node, hmap_hash_u64(items[i].key)) == 0);
    }
    CHECK_EQ(m.count, N);
    CHECK(m.nbuckets >= N); /* grew */
    for (int i = 0; i < N; i += 2)
        hmap_remove(&m, &items[i].node);
    CHECK_EQ(m.count, N / 2);
    int found = 0, wrong = 0;
    for (int i = 0; i < N; i++) {
        uint64_t h = hmap_hash_u64(items[i].key);
        bool hit = false;
        for (hmap_node_t *n = hmap_first(&m, h); n; n = hmap_next(n, h))
            if (hmap_entry(n, item_t, node)->key == items[i].key)
                hit = true;
        if (hit)
            found++;
        if (hit != (i % 2 == 1))
            wrong++;
    }
    CHECK_EQ(found, N / 2);
    CHECK_EQ(wrong, 0);
    CHECK(hmap_hash_str("a") != hmap_hash_str("b"));
    hmap_free(&m);
    free(items);
}

static void test_open_close_and_users(void)
{
    presence_t p;
    presence_init(&p);
    api_stream_t s1 = {0};
    REQUIRE(presence_attach(&p, "gw-a", &s1) != NULL);
    CHECK_EQ(p.ngateways, 1);
    CHECK_EQ(presence_open(&p, 1, "alice", "gw-a", &s1), 0);
    CHECK_EQ(presence_open(&p, 2, "alice", "gw-a", &s1), 0);
    CHECK_EQ(presence_open(&p, 3, "bob", "", &s1), 0);
    CHECK_EQ(presence_open(&p, 4, "", NULL, &s1), 0); /* anonymous: not indexed by user */
    CHECK_EQ(presence_count(&p), 4);
    pres_user_t *a = presence_user(&p, "alice");
    REQUIRE(a != NULL);
    CHECK_EQ(a->nconns, 2);
    CHECK(presence_user(&p, "") == NULL);
    CHECK(presence_user(&p, "carol") == NULL);
    pres_conn_t *c = presence_conn(&p, 3);
    REQUIRE(c != NULL);
    CHECK_STR(c->user->id, "bob");
    CHECK_STR(presence_conn_label(c), "gw-a");
    CHECK(presence_conn_stream(c) == &s1);

    CHECK(presence_close(&p, 1));
    CHECK(!presence_close(&p, 1)); /* twice: unknown */
    CHECK_EQ(presence_user(&p, "alice")->nconns, 1);
    CHECK(presence_close(&p, 2));
    CHECK(presence_user(&p, "alice") == NULL); /* last conn gone: user gone */
    CHECK_EQ(presence_count(&p), 2);
    presence_free(&p);
    CHECK(s1.gw == NULL);
}

static void test_reopen_moves_user_and_stream(void)
{
    presence_t p;
    presence_init(&p);
    api_stream_t s1 = {0}, s2 = {0};
    REQUIRE(presence_attach(&p, "gw", &s1) && presence_attach(&p, "gw", &s2));
    CHECK_EQ(p.ngateways, 1);
    CHECK_EQ(p.gw_list->nstreams, 2);
    CHECK_EQ(presence_open(&p, 9, "u1", "other-label", &s1), 0);
    CHECK_STR(presence_conn_label(presence_conn(&p, 9)), "other-label");
    /* Open re-sent on another stream with another user: newest wins, no duplicate. */
    CHECK_EQ(presence_open(&p, 9, "u2", "gw", &s2), 0);
    CHECK_EQ(presence_count(&p), 1);
    CHECK(presence_user(&p, "u1") == NULL);
    REQUIRE(presence_user(&p, "u2") != NULL);
    CHECK_EQ(presence_user(&p, "u2")->nconns, 1);
    CHECK(presence_conn(&p, 9)->stream == &s2);
    CHECK_STR(presence_conn_label(presence_conn(&p, 9)), "gw");
    presence_free(&p);
}

static void test_stream_loss_falls_back_then_gateway_leaves(void)
{
    presence_t p;
    presence_init(&p);
    api_stream_t s1 = {0}, s2 = {0}, t1 = {0};
    REQUIRE(presence_attach(&p, "gw1", &s1) && presence_attach(&p, "gw1", &s2));
    REQUIRE(presence_attach(&p, "gw2", &t1));
    CHECK_EQ(p.ngateways, 2);
    for (uint64_t i = 0; i < 100; i++)
        CHECK_EQ(presence_open(&p, 1000 + i, "u", NULL, i % 2 ? &s1 : &s2), 0);
    CHECK_EQ(presence_open(&p, 1, "u", NULL, &t1), 0);
    CHECK_EQ(presence_user(&p, "u")->nconns, 101);

    /* s1 goes: its conns fall back to s2, nothing leaves presence. */
    CHECK_EQ(presence_detach(&p, &s1), 0);
    CHECK(s1.gw == NULL);
    CHECK_EQ(presence_count(&p), 101);
    CHECK(presence_conn(&p, 1001)->stream == NULL);
    CHECK(presence_conn_stream(presence_conn(&p, 1001)) == &s2);
    CHECK(presence_conn_stream(presence_conn(&p, 1000)) == &s2);

    /* s2 goes: gw1 has no stream left, its 100 conns leave; gw2's conn stays. */
    CHECK_EQ(presence_detach(&p, &s2), 100);
    CHECK_EQ(presence_count(&p), 1);
    CHECK_EQ(p.ngateways, 1);
    CHECK(presence_gateway(&p, "gw1") == NULL);
    CHECK_EQ(presence_user(&p, "u")->nconns, 1);
    CHECK_EQ(presence_detach(&p, &s2), 0); /* detached twice: no-op */

    /* The gateway comes back and re-sends Open. */
    REQUIRE(presence_attach(&p, "gw1", &s1) != NULL);
    CHECK_EQ(presence_open(&p, 1000, "u", NULL, &s1), 0);
    CHECK_EQ(presence_user(&p, "u")->nconns, 2);
    presence_free(&p);
}

static void test_open_on_detached_stream_fails(void)
{
    presence_t p;
    presence_init(&p);
    api_stream_t s = {0};
    CHECK_EQ(presence_open(&p, 1, "u", NULL, &s), -1);
    CHECK_EQ(presence_count(&p), 0);
    presence_free(&p);
}

int main(void)
{
    RUN(test_hmap_grow_and_remove);
    RUN(test_open_close_and_users);
    RUN(test_reopen_moves_user_and_stream);
    RUN(test_stream_loss_falls_back_then_gateway_leaves);
    RUN(test_open_on_detached_stream_fails);
    return TEST_REPORT();
}
