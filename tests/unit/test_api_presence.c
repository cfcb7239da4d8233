/* test_api_presence.c: ws-api presence (conn/user/gateway tables) and its hash table. */
#include <stdlib.h>
#include <string.h>

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

/* Sessions for the tests: serials in the order they are started. */
static void session(presence_t *p, pres_session_t *s, uint64_t serial)
{
    memset(s, 0, sizeof *s);
    presence_session_start(p, s, serial, 0, 0);
}

static void test_open_close_and_users(void)
{
    presence_t p;
    presence_init(&p);
    pres_session_t ss;
    session(&p, &ss, 1);
    api_stream_t s1 = {0};
    REQUIRE(presence_attach(&p, "gw-a", &ss, &s1) != NULL);
    CHECK_EQ(p.ngateways, 1);
    CHECK_EQ(p.nstreams, 1);
    CHECK_EQ(presence_open(&p, 1, "alice", "gw-a", &s1), PRES_OK);
    CHECK_EQ(presence_open(&p, 2, "alice", "gw-a", &s1), PRES_OK);
    CHECK_EQ(presence_open(&p, 3, "bob", "", &s1), PRES_OK);
    CHECK_EQ(presence_open(&p, 4, "", NULL, &s1), PRES_OK); /* anonymous: not indexed by user */
    CHECK_EQ(presence_count(&p), 4);
    CHECK_EQ(ss.nconns, 4);
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
    CHECK(c->sess == &ss);

    CHECK_EQ(presence_close(&p, 1, &s1), PRES_OK);
    CHECK_EQ(presence_close(&p, 1, &s1), PRES_UNKNOWN); /* twice: unknown */
    CHECK_EQ(presence_user(&p, "alice")->nconns, 1);
    CHECK_EQ(presence_close(&p, 2, &s1), PRES_OK);
    CHECK(presence_user(&p, "alice") == NULL); /* last conn gone: user gone */
    CHECK_EQ(presence_count(&p), 2);
    CHECK_EQ(ss.nconns, 2);
    presence_free(&p);
    CHECK(s1.gw == NULL);
    CHECK(!ss.live);
}

static void test_reopen_moves_user_and_stream(void)
{
    presence_t p;
    presence_init(&p);
    pres_session_t ss;
    session(&p, &ss, 1);
    api_stream_t s1 = {0}, s2 = {0};
    REQUIRE(presence_attach(&p, "gw", &ss, &s1) && presence_attach(&p, "gw", &ss, &s2));
    CHECK_EQ(p.ngateways, 1);
    CHECK_EQ(p.gw_list->nstreams, 2);
    CHECK_EQ(presence_open(&p, 9, "u1", "other-label", &s1), PRES_OK);
    CHECK_STR(presence_conn_label(presence_conn(&p, 9)), "other-label");
    /* Open re-sent on another stream with another user: newest wins, no duplicate. */
    CHECK_EQ(presence_open(&p, 9, "u2", "gw", &s2), PRES_OK);
    CHECK_EQ(presence_count(&p), 1);
    CHECK(presence_user(&p, "u1") == NULL);
    REQUIRE(presence_user(&p, "u2") != NULL);
    CHECK_EQ(presence_user(&p, "u2")->nconns, 1);
    CHECK(presence_conn(&p, 9)->stream == &s2);
    CHECK_STR(presence_conn_label(presence_conn(&p, 9)), "gw");
    CHECK_EQ(p.gw_list->nconns, 1);
    presence_free(&p);
}

/* Rule: a stream that ends drops nothing. Its entries route through another live stream of
 * their session, else of their gateway; with none they are unreachable but kept, and a stream
 * that comes back (the gateway reopens it within the session) reaches them again. */
static void test_stream_end_keeps_presence(void)
{
    presence_t p;
    presence_init(&p);
    pres_session_t s1, s2;
    session(&p, &s1, 1);
    session(&p, &s2, 2);
    api_stream_t a = {0}, b = {0}, t = {0};
    REQUIRE(presence_attach(&p, "gw1", &s1, &a) && presence_attach(&p, "gw1", &s1, &b));
    REQUIRE(presence_attach(&p, "gw2", &s2, &t));
    CHECK_EQ(p.ngateways, 2);
    CHECK_EQ(p.nstreams, 3);
    for (uint64_t i = 0; i < 100; i++)
        CHECK_EQ(presence_open(&p, 1000 + i, "u", NULL, i % 2 ? &a : &b), PRES_OK);
    CHECK_EQ(presence_open(&p, 1, "u", NULL, &t), PRES_OK);
    CHECK_EQ(presence_user(&p, "u")->nconns, 101);

    /* a goes: its conns fall back to b. */
    presence_detach(&p, &a);
    CHECK(a.gw == NULL);
    CHECK(a.sess == &s1); /* keeps its session */
    CHECK_EQ(presence_count(&p), 101);
    CHECK(presence_conn(&p, 1001)->stream == NULL);
    CHECK(presence_conn_stream(presence_conn(&p, 1001)) == &b);
    CHECK(presence_conn_stream(presence_conn(&p, 1000)) == &b);

    /* b goes too (every stream of a live session failed at once): all kept, unreachable. */
    presence_detach(&p, &b);
    CHECK_EQ(presence_count(&p), 101);
    CHECK_EQ(p.ngateways, 1); /* counts gateways with a live stream */
    CHECK_EQ(p.nstreams, 1);
    pres_gateway_t *g = presence_gateway(&p, "gw1");
    REQUIRE(g != NULL); /* it still has entries */
    CHECK_EQ(g->nconns, 100);
    CHECK_EQ(g->nstreams, 0);
    CHECK(presence_conn_stream(presence_conn(&p, 1000)) == NULL);
    CHECK_EQ(presence_user(&p, "u")->nconns, 101);
    presence_detach(&p, &b); /* detached twice: no-op */
    CHECK_EQ(p.nstreams, 1);

    /* The gateway reopens a stream in the same session: reached again, before any re-Open. */
    api_stream_t a2 = {0};
    REQUIRE(presence_attach(&p, "gw1", &s1, &a2) == g);
    CHECK(presence_conn_stream(presence_conn(&p, 1000)) == &a2);
    CHECK(presence_conn_stream(presence_conn(&p, 1001)) == &a2);
    CHECK_EQ(p.ngateways, 2);
    presence_free(&p);
}

/* Rule: a stream of another session of the same gateway is the last resort; the entry's own
 * session comes first. */
static void test_fallback_prefers_own_session(void)
{
    presence_t p;
    presence_init(&p);
    pres_session_t old, cur;
    session(&p, &old, 1);
    session(&p, &cur, 2);
    api_stream_t o = {0}, c1 = {0}, c2 = {0};
    REQUIRE(presence_attach(&p, "gw", &old, &o));
    REQUIRE(presence_attach(&p, "gw", &cur, &c1));
    REQUIRE(presence_attach(&p, "gw", &cur, &c2));
    CHECK_EQ(presence_open(&p, 5, "u", NULL, &c1), PRES_OK);
    presence_detach(&p, &c1);
    CHECK(presence_conn_stream(presence_conn(&p, 5)) == &c2);
    presence_detach(&p, &c2);
    CHECK(presence_conn_stream(presence_conn(&p, 5)) == &o); /* the gateway's other stream */
    presence_free(&p);
}

/* Rule: when a session ends, the entries tagged with it leave (and only those); a gateway
 * lives while it has entries or live streams. */
static void test_session_end_drops_its_entries(void)
{
    presence_t p;
    presence_init(&p);
    pres_session_t s1, s2;
    session(&p, &s1, 1);
    session(&p, &s2, 2);
    api_stream_t a = {0}, b = {0};
    REQUIRE(presence_attach(&p, "gw1", &s1, &a) && presence_attach(&p, "gw2", &s2, &b));
    for (uint64_t i = 0; i < 10; i++)
        CHECK_EQ(presence_open(&p, i, "u", NULL, &a), PRES_OK);
    CHECK_EQ(presence_open(&p, 100, "u", NULL, &b), PRES_OK);
    presence_detach(&p, &a);
    CHECK(presence_gateway(&p, "gw1") != NULL); /* entries keep it */
    CHECK_EQ(presence_session_end(&p, &s1), 10);
    CHECK(!s1.live);
    CHECK_EQ(presence_count(&p), 1);
    CHECK(presence_gateway(&p, "gw1") == NULL); /* no entries, no streams: gone */
    CHECK_EQ(presence_user(&p, "u")->nconns, 1);
    CHECK_EQ(p.nsessions, 1);
    CHECK_EQ(presence_session_end(&p, &s1), 0); /* twice: no-op */

    /* A gateway with a live stream and no entries stays. */
    presence_detach(&p, &b);
    CHECK(presence_gateway(&p, "gw2") != NULL);
    api_stream_t b2 = {0};
    REQUIRE(presence_attach(&p, "gw2", &s2, &b2));
    CHECK_EQ(presence_close(&p, 100, &b2), PRES_OK);
    CHECK(presence_gateway(&p, "gw2") != NULL);
    CHECK_EQ(p.ngateways, 1);
    presence_detach(&p, &b2);
    CHECK(presence_gateway(&p, "gw2") == NULL);
    CHECK_EQ(p.ngateways, 0);
    CHECK_EQ(presence_session_end(&p, &s2), 0);
    CHECK_EQ(p.nsessions, 0);
    presence_free(&p);
}

/* Rule: an Open re-sent on a new session re-tags the entry, so the old session's end (noticed
 * after the gateway resynced) does not take it along. */
static void test_resync_on_new_session_survives_old_end(void)
{
    presence_t p;
    presence_init(&p);
    pres_session_t s1, s2;
    session(&p, &s1, 1);
    api_stream_t a = {0};
    REQUIRE(presence_attach(&p, "gw", &s1, &a));
    CHECK_EQ(presence_open(&p, 1, "alive", NULL, &a), PRES_OK);
    CHECK_EQ(presence_open(&p, 2, "left", NULL, &a), PRES_OK);
    /* the gateway reconnects before this node noticed the old connection's end */
    session(&p, &s2, 2);
    api_stream_t b = {0};
    REQUIRE(presence_attach(&p, "gw", &s2, &b));
    CHECK_EQ(presence_open(&p, 1, "alive", NULL, &b), PRES_OK); /* resync: only the live one */
    CHECK(presence_conn(&p, 1)->sess == &s2);
    CHECK_EQ(s1.nconns, 1);
    CHECK_EQ(s2.nconns, 1);
    presence_detach(&p, &a);
    CHECK_EQ(presence_session_end(&p, &s1), 1); /* the one that left */
    CHECK(presence_conn(&p, 2) == NULL);
    REQUIRE(presence_conn(&p, 1) != NULL);
    CHECK(presence_conn_stream(presence_conn(&p, 1)) == &b);
    CHECK_EQ(presence_gateway(&p, "gw")->nconns, 1);
    presence_free(&p);
}

/* Rule: an Open or Close arriving on a session older than the entry's tag is stale (a node
 * that was stopped reads the old connection's buffered events after the resync). */
static void test_stale_events_from_older_session_ignored(void)
{
    presence_t p;
    presence_init(&p);
    pres_session_t s1, s2;
    session(&p, &s1, 7);
    session(&p, &s2, 8);
    api_stream_t a = {0}, b = {0};
    REQUIRE(presence_attach(&p, "gw", &s1, &a) && presence_attach(&p, "gw", &s2, &b));
    CHECK_EQ(presence_open(&p, 1, "new-user", NULL, &b), PRES_OK); /* resynced on s2 */
    /* s1's buffered Open of the same conn: stale, the entry keeps s2's tag, stream and user */
    CHECK_EQ(presence_open(&p, 1, "old-user", "old-label", &a), PRES_STALE);
    pres_conn_t *c = presence_conn(&p, 1);
    REQUIRE(c != NULL);
    CHECK(c->sess == &s2 && c->stream == &b);
    CHECK_STR(c->user->id, "new-user");
    CHECK(presence_user(&p, "old-user") == NULL);
    CHECK_STR(presence_conn_label(c), "gw");
    /* s1's buffered Close: stale too, the entry stays */
    CHECK_EQ(presence_close(&p, 1, &a), PRES_STALE);
    CHECK(presence_conn(&p, 1) != NULL);
    /* a detached stream of the old session is still judged by its session */
    presence_detach(&p, &a);
    CHECK_EQ(presence_close(&p, 1, &a), PRES_STALE);
    /* events on the same or a newer session apply */
    CHECK_EQ(presence_close(&p, 1, &b), PRES_OK);
    CHECK(presence_conn(&p, 1) == NULL);
    /* an Open from the older session of a conn the newer one does not know is recorded (it
     * leaves with the old session's end, which follows the buffered events) */
    CHECK_EQ(presence_open(&p, 2, "x", NULL, &b), PRES_OK);
    CHECK_EQ(presence_close(&p, 2, &b), PRES_OK);
    api_stream_t a2 = {0};
    REQUIRE(presence_attach(&p, "gw", &s1, &a2));
    CHECK_EQ(presence_open(&p, 3, "y", NULL, &a2), PRES_OK);
    CHECK_EQ(presence_open(&p, 3, "y", NULL, &b), PRES_OK); /* newer session: re-tagged */
    CHECK(presence_conn(&p, 3)->sess == &s2);
    CHECK_EQ(presence_open(&p, 3, "y", NULL, &a2), PRES_STALE);
    presence_free(&p);
}

static void test_open_on_detached_stream_fails(void)
{
    presence_t p;
    presence_init(&p);
    api_stream_t s = {0};
    CHECK_EQ(presence_open(&p, 1, "u", NULL, &s), PRES_ERR);
    CHECK_EQ(presence_count(&p), 0);
    pres_session_t never = {0}; /* not started: nothing attaches to it */
    CHECK(presence_attach(&p, "gw", &never, &s) == NULL);
    CHECK(s.gw == NULL);
    presence_free(&p);
}

/* Rule: a session that announced N streams is synced once N distinct streams said
 * presence_complete; one that announced nothing at once; presence is ready when the grace is
 * over and every live session is synced. */
static void test_sync_counts_distinct_streams(void)
{
    presence_t p;
    presence_init(&p);
    p.ready_after_ms = 1000;
    CHECK(!presence_ready(&p, 999));
    CHECK(presence_ready(&p, 1000));
    pres_session_t s1 = {0}, s2 = {0};
    presence_session_start(&p, &s1, 1, 2, 1000);
    CHECK_EQ(p.unsynced, 1);
    CHECK(!presence_ready(&p, 1001));
    presence_session_start(&p, &s1, 1, 2, 1000); /* already live: no-op */
    CHECK_EQ(p.unsynced, 1);
    presence_session_start(&p, &s2, 2, 0, 1000); /* third-party: synced at once */
    CHECK(s2.synced);
    CHECK_EQ(p.unsynced, 1);
    api_stream_t a = {0}, b = {0}, c = {0};
    REQUIRE(presence_attach(&p, "gw", &s1, &a) && presence_attach(&p, "gw", &s1, &b));
    CHECK(!presence_complete(&p, &a));
    CHECK(!presence_complete(&p, &a)); /* the same stream again counts once */
    CHECK_EQ(s1.ncomplete, 1);
    CHECK(!presence_ready(&p, 2000));
    /* b fails before it said so; its replacement c replays and says it */
    presence_detach(&p, &b);
    REQUIRE(presence_attach(&p, "gw", &s1, &c));
    CHECK(presence_complete(&p, &c));
    CHECK(s1.synced);
    CHECK_EQ(p.unsynced, 0);
    CHECK(presence_ready(&p, 2000));
    CHECK(!presence_complete(&p, &b)); /* detached later: nothing changes */
    presence_free(&p);
    CHECK_EQ(p.unsynced, 0);
}

static void test_sync_expires_and_session_end(void)
{
    presence_t p;
    presence_init(&p);
    pres_session_t s1 = {0}, s2 = {0};
    presence_session_start(&p, &s1, 1, 4, 100);
    presence_session_start(&p, &s2, 2, 1, 150);
    CHECK_EQ(p.unsynced, 2);
    CHECK_EQ(presence_sync_expire(&p, 1099, 1000), 0);
    CHECK_EQ(presence_sync_expire(&p, 1100, 1000), 1); /* s1 never completes: counted synced */
    CHECK(s1.synced && !s2.synced);
    CHECK_EQ(p.unsynced, 1);
    CHECK(!presence_ready(&p, 1100));
    /* an unsynced session that ends is no longer waited for */
    CHECK_EQ(presence_session_end(&p, &s2), 0);
    CHECK_EQ(p.unsynced, 0);
    CHECK(presence_ready(&p, 1100));
    CHECK_EQ(presence_sync_expire(&p, 5000, 1000), 0);
    presence_free(&p);
}

int main(void)
{
    RUN(test_hmap_grow_and_remove);
    RUN(test_open_close_and_users);
    RUN(test_reopen_moves_user_and_stream);
    RUN(test_stream_end_keeps_presence);
    RUN(test_fallback_prefers_own_session);
    RUN(test_session_end_drops_its_entries);
    RUN(test_resync_on_new_session_survives_old_end);
    RUN(test_stale_events_from_older_session_ignored);
    RUN(test_open_on_detached_stream_fails);
    RUN(test_sync_counts_distinct_streams);
    RUN(test_sync_expires_and_session_end);
    return TEST_REPORT();
}
