/* test_gw_subset.c: --upstream-subset's choice of API nodes (gateway/subset.c): the n best
 * ranked, stable for a gateway id, spread evenly over gateways, a node down past the fallback
 * replaced by the next one and taken back when it returns, no subset = every slot. */
#include <stdio.h>
#include <string.h>

#include "../../gateway/route.h"
#include "../../gateway/subset.h"
#include "test.h"

static const char *const addrs[] = {"10.0.0.1:8081", "10.0.0.2:8081", "10.0.0.3:8081",
                                    "10.0.0.4:8081", "10.0.0.5:8081"};

static void nodes_for(const char *gw, gw_subset_node_t *n, int count)
{
    uint64_t id = gw_hash64(gw, strlen(gw), 0x5ab5e7ULL);
    for (int i = 0; i < count; i++) {
        n[i].assigned = true;
        n[i].counts = true;
        n[i].score = gw_hash64(addrs[i], strlen(addrs[i]), id);
    }
}

static int nwanted(const bool *w, int count)
{
    int k = 0;
    for (int i = 0; i < count; i++)
        k += w[i];
    return k;
}

static void test_best_ranked_and_stable(void)
{
    gw_subset_node_t n[5];
    bool w[5], w2[5];
    nodes_for("gw-a", n, 5);
    gw_subset_choose(n, 5, 2, w);
    CHECK_EQ(nwanted(w, 5), 2);
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 5; j++)
            if (w[i] && !w[j])
                CHECK(n[i].score > n[j].score);
    gw_subset_choose(n, 5, 2, w2);
    CHECK(memcmp(w, w2, sizeof w) == 0);
    /* more than there are: all of them */
    gw_subset_choose(n, 5, 9, w);
    CHECK_EQ(nwanted(w, 5), 5);
    /* no subset: every slot, assigned or not (a host-name slot gets its address later) */
    n[3].assigned = false;
    gw_subset_choose(n, 5, 0, w);
    CHECK_EQ(nwanted(w, 5), 5);
    /* unassigned slots are never chosen in a subset */
    gw_subset_choose(n, 5, 5, w);
    CHECK(!w[3]);
    CHECK_EQ(nwanted(w, 5), 4);
}

static void test_fallback_and_return(void)
{
    gw_subset_node_t n[5];
    bool w[5], before[5];
    nodes_for("gw-b", n, 5);
    gw_subset_choose(n, 5, 2, before);
    int top = -1;
    for (int i = 0; i < 5; i++)
        if (before[i] && (top < 0 || n[i].score > n[top].score))
            top = i;
    n[top].counts = false; /* down past the fallback time */
    gw_subset_choose(n, 5, 2, w);
    CHECK_EQ(nwanted(w, 5), 3);  /* the next one joins ... */
    CHECK(w[top]);               /* ... and the down one is still tried */
    for (int i = 0; i < 5; i++)
        if (before[i])
            CHECK(w[i]);
    n[top].counts = true; /* back: the replacement goes */
    gw_subset_choose(n, 5, 2, w);
    CHECK(memcmp(w, before, sizeof w) == 0);
    /* every node down: all are tried */
    for (int i = 0; i < 5; i++)
        n[i].counts = false;
    gw_subset_choose(n, 5, 2, w);
    CHECK_EQ(nwanted(w, 5), 5);
}

static void test_spread_over_gateways(void)
{
    int load[3] = {0, 0, 0};
    for (int g = 0; g < 3000; g++) {
        char id[32];
        snprintf(id, sizeof id, "gateway-%d:8080", g);
        gw_subset_node_t n[3];
        bool w[3];
        nodes_for(id, n, 3);
        gw_subset_choose(n, 3, 2, w);
        for (int i = 0; i < 3; i++)
            load[i] += w[i];
    }
    /* each node serves about 2/3 of the gateways (2000 of 3000) */
    for (int i = 0; i < 3; i++)
        CHECK(load[i] > 1850 && load[i] < 2150);
}

int main(void)
{
    RUN(test_best_ranked_and_stable);
    RUN(test_fallback_and_return);
    RUN(test_spread_over_gateways);
    return TEST_REPORT();
}
