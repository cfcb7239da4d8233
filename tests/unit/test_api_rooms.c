/* test_api_rooms.c: ws-api's room membership table (api/rooms.c): join, leave, Close, listing
 * against presence, the sweep of connections that left without a Close. */
#include <stdlib.h>
#include <string.h>

#include "../../api/presence.h"
#include "../../api/rooms.h"
#include "test.h"

typedef struct seen {
    uint64_t ids[16];
    size_t n;
} seen_t;

static void collect(void *ud, const pres_conn_t *c)
{
    seen_t *s = ud;
    if (s->n < 16)
        s->ids[s->n++] = c->conn_id;
}

static void session(presence_t *p, pres_session_t *s, uint64_t serial)
{
    memset(s, 0, sizeof *s);
    presence_session_start(p, s, serial, 0, 0);
}

static size_t members(rooms_t *rs, presence_t *p, const char *room, seen_t *s)
{
    s->n = 0;
    return rooms_each_member(rs, p, room, collect, s);
}

static void test_join_leave_close(void)
{
    presence_t p;
    presence_init(&p);
    pres_session_t ss;
    session(&p, &ss, 1);
    api_stream_t s1 = {0};
    REQUIRE(presence_attach(&p, "gw-a", &ss, &s1) != NULL);
    for (uint64_t c = 1; c <= 3; c++)
        REQUIRE(presence_open(&p, c, c == 3 ? "bob" : "alice", "gw-a", &s1) == PRES_OK);
    rooms_t rs;
    rooms_init(&rs);
    seen_t s;
    CHECK_EQ(rooms_join(&rs, 1, "lobby"), 0);
    CHECK_EQ(rooms_join(&rs, 3, "lobby"), 0);
    CHECK_EQ(rooms_join(&rs, 1, "lobby"), 0); /* twice: one membership */
    CHECK_EQ(rooms_join(&rs, 1, "other"), 0);
    CHECK_EQ(rooms_join(&rs, 2, ""), 0);      /* no room: nothing */
    CHECK_EQ(rs.nmembers, 3);
    CHECK_EQ(members(&rs, &p, "lobby", &s), 2);
    CHECK(s.ids[0] == 1 && s.ids[1] == 3); /* join order */
    CHECK_EQ(members(&rs, &p, "nowhere", &s), 0);
    rooms_leave(&rs, 3, "lobby");
    rooms_leave(&rs, 3, "lobby"); /* not in it any more: no-op */
    CHECK_EQ(members(&rs, &p, "lobby", &s), 1);
    rooms_forget_conn(&rs, 1); /* its Close: every room */
    CHECK_EQ(members(&rs, &p, "lobby", &s), 0);
    CHECK_EQ(members(&rs, &p, "other", &s), 0);
    CHECK_EQ(rs.nmembers, 0);
    CHECK_EQ(rs.by_name.count, 0); /* empty rooms are freed */
    rooms_free(&rs);
    presence_free(&p);
}

static void test_members_checked_against_presence(void)
{
    presence_t p;
    presence_init(&p);
    pres_session_t sa, sb;
    session(&p, &sa, 1);
    session(&p, &sb, 2);
    api_stream_t s1 = {0}, s2 = {0};
    REQUIRE(presence_attach(&p, "gw-a", &sa, &s1) != NULL);
    REQUIRE(presence_attach(&p, "gw-b", &sb, &s2) != NULL);
    REQUIRE(presence_open(&p, 1, "a", "gw-a", &s1) == PRES_OK);
    REQUIRE(presence_open(&p, 2, "b", "gw-b", &s2) == PRES_OK);
    REQUIRE(presence_open(&p, 3, "c", "gw-b", &s2) == PRES_OK);
    rooms_t rs;
    rooms_init(&rs);
    for (uint64_t c = 1; c <= 3; c++)
        REQUIRE(rooms_join(&rs, c, "r") == 0);
    REQUIRE(rooms_join(&rs, 3, "r2") == 0);
    /* gw-b's session ends: its connections leave presence without a Close */
    presence_detach(&p, &s2);
    CHECK_EQ(presence_session_end(&p, &sb), 2);
    seen_t s;
    CHECK_EQ(members(&rs, &p, "r", &s), 1);
    CHECK_EQ(s.ids[0], 1);
    CHECK_EQ(rs.nmembers, 2); /* r's stale members dropped when listed; r2 still held */
    CHECK_EQ(rooms_sweep(&rs, &p), 1);
    CHECK_EQ(rs.nmembers, 1);
    CHECK_EQ(rs.by_name.count, 1);
    /* a room whose only member is stale goes away when listed */
    REQUIRE(presence_close(&p, 1, &s1) == PRES_OK);
    CHECK_EQ(members(&rs, &p, "r", &s), 0);
    CHECK_EQ(rs.by_name.count, 0);
    rooms_free(&rs);
    presence_free(&p);
}

static void test_many(void)
{
    presence_t p;
    presence_init(&p);
    pres_session_t ss;
    session(&p, &ss, 1);
    api_stream_t s1 = {0};
    REQUIRE(presence_attach(&p, "gw", &ss, &s1) != NULL);
    rooms_t rs;
    rooms_init(&rs);
    enum { N = 3000 };
    for (uint64_t c = 1; c <= N; c++) {
        REQUIRE(presence_open(&p, c, "u", "gw", &s1) == PRES_OK);
        REQUIRE(rooms_join(&rs, c, c % 2 ? "odd" : "even") == 0);
        REQUIRE(rooms_join(&rs, c, "all") == 0);
    }
    seen_t s;
    CHECK_EQ(members(&rs, &p, "all", &s), N);
    CHECK_EQ(members(&rs, &p, "odd", &s), N / 2);
    for (uint64_t c = 1; c <= N; c += 3)
        rooms_forget_conn(&rs, c);
    CHECK_EQ(members(&rs, &p, "all", &s), N - N / 3);
    rooms_free(&rs);
    CHECK_EQ(rs.nmembers, 0);
    presence_free(&p);
}

int main(void)
{
    RUN(test_join_leave_close);
    RUN(test_members_checked_against_presence);
    RUN(test_many);
    return TEST_REPORT();
}
