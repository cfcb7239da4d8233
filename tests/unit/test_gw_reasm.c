/* test_gw_reasm.c: message reassembly (gateway/reasm.c): what it buffers is what arrived. */
#include <stdlib.h>

#include "../../gateway/reasm.h"
#include "test.h"

/* Issue 15: with --max-message 16m, a client that announced a 16 MB frame and sent 15 bytes
 * had 16 MB reserved; 1 000 such clients reserved 16 GB of address space. */
static void test_buffers_what_arrived_not_what_was_announced(void)
{
    gw_reasm_t r = {0};
    gw_event_t *e = NULL;
    size_t max = 16u << 20;
    /* one byte of a 16 MB final frame; 16 MB - 1 announced to come */
    CHECK_EQ(gw_reasm_add(&r, 1, "u", 1, true, "x", 1, false, max - 1, max, &e), GW_REASM_MORE);
    REQUIRE(r.ev);
    CHECK(r.ev->b_len <= 2); /* capacity: at most twice what arrived */
    /* grows geometrically with what arrives */
    char chunk[4096];
    memset(chunk, 'y', sizeof chunk);
    size_t got = 1;
    for (int i = 0; i < 64; i++) {
        CHECK_EQ(gw_reasm_add(&r, 1, "u", 1, true, chunk, sizeof chunk, false, max - got - 4096,
                              max, &e), GW_REASM_MORE);
        got += sizeof chunk;
        CHECK(r.ev->b_len <= 2 * got);
        CHECK(r.ev->b_len >= got);
    }
    gw_reasm_reset(&r);
    CHECK(r.ev == NULL);
}

/* Inside the final frame the end is known: the buffer never grows past it. */
static void test_known_end_is_the_cap(void)
{
    gw_reasm_t r = {0};
    gw_event_t *e = NULL;
    CHECK_EQ(gw_reasm_add(&r, 1, "", 0, false, "abcd", 4, false, 2, 1000, &e), GW_REASM_MORE);
    CHECK_EQ(r.ev->b_len, 6);
    CHECK_EQ(gw_reasm_add(&r, 1, "", 0, false, "ef", 2, true, 0, 1000, &e), GW_REASM_DONE);
    REQUIRE(e);
    CHECK_EQ(e->a_len, 6);
    CHECK(memcmp(gw_event_a(e), "abcdef", 7) == 0);
    CHECK_EQ(e->b_len, 0);
    gw_event_free(e);
    /* later frames unknown: doubling, bounded by max */
    CHECK_EQ(gw_reasm_add(&r, 1, "", 0, false, "abcd", 4, false, GW_REASM_REST_UNKNOWN, 5, &e),
             GW_REASM_MORE);
    CHECK_EQ(r.ev->b_len, 5);
    CHECK_EQ(gw_reasm_add(&r, 1, "", 0, false, "ef", 2, true, 0, 5, &e), GW_REASM_TOO_BIG);
    CHECK(r.ev == NULL);
}

int main(void)
{
    RUN(test_buffers_what_arrived_not_what_was_announced);
    RUN(test_known_end_is_the_cap);
    return TEST_REPORT();
}
