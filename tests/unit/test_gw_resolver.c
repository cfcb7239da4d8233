/* test_gw_resolver.c: dns:/// slot assignment: nodes keep their slot while they exist, new
 * records take free slots, vanished ones free theirs; more records than slots are capped. */
#include <stdlib.h>

#include "../../gateway/resolver.h"
#include "../../gateway/upstream.h"
#include "test.h"

static char seen[8][300];
static int calls;

static void fake_set(gw_up_t *u, const char *addr)
{
    snprintf(seen[u->idx], sizeof seen[0], "%s", addr);
    calls++;
}

static void apply(gw_resolver_t *r, gw_t *g, const char *const *addrs, int n)
{
    char found[16][300];
    for (int i = 0; i < n; i++)
        snprintf(found[i], sizeof found[i], "%s", addrs[i]);
    gw_resolver_apply(r, g, found, n);
}

static void test_assignment_is_sticky(void)
{
    gw_up_t ups[5];
    gw_up_t *pu[5];
    memset(ups, 0, sizeof ups);
    for (int i = 0; i < 5; i++) {
        ups[i].idx = i;
        pu[i] = &ups[i];
    }
    gw_t g = {.nup = 5, .up = pu};
    gw_resolver_t r;
    char err[128];
    REQUIRE(gw_resolver_init(&r, "api.ns.svc:8081", 1, 3, err, sizeof err) == 0); /* slots 1..3 */
    CHECK_STR(r.host, "api.ns.svc");
    CHECK_STR(r.port, "8081");
    r.set_addr = fake_set;

    const char *a1[] = {"10.0.0.1:8081", "10.0.0.2:8081"};
    apply(&r, &g, a1, 2);
    CHECK_STR(seen[1], "10.0.0.1:8081");
    CHECK_STR(seen[2], "10.0.0.2:8081");
    CHECK_EQ(calls, 2);

    const char *a2[] = {"10.0.0.3:8081", "10.0.0.2:8081"}; /* .1 gone, .3 new */
    apply(&r, &g, a2, 2);
    CHECK_STR(seen[1], "10.0.0.3:8081"); /* took the freed slot */
    CHECK_STR(seen[2], "10.0.0.2:8081"); /* untouched */
    CHECK_EQ(calls, 4);                  /* clear .1, set .3 */

    apply(&r, &g, a2, 2);
    CHECK_EQ(calls, 4); /* same answer: nothing changes */

    const char *a3[] = {"10.0.0.3:8081", "10.0.0.2:8081", "10.0.0.4:8081", "10.0.0.5:8081"};
    apply(&r, &g, a3, 4);
    CHECK_STR(seen[3], "10.0.0.4:8081");
    CHECK_EQ(calls, 5); /* .5 does not fit in 3 slots */

    apply(&r, &g, NULL, 0);
    CHECK_STR(seen[1], "");
    CHECK_STR(seen[2], "");
    CHECK_STR(seen[3], "");
    CHECK_STR(seen[0], ""); /* never a slot of this resolver */
    CHECK_STR(seen[4], "");
    gw_resolver_free(&r);
    CHECK(gw_resolver_init(&r, "noport", 0, 1, err, sizeof err) < 0);
}

int main(void)
{
    RUN(test_assignment_is_sticky);
    return TEST_REPORT();
}
