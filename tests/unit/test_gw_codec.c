/* test_gw_codec.c: gateway wire code: UTF-8 validation, Upstream batch encoding with seq
 * rewriting, Downstream decoding and per-thread fan-out, node routing, server frame headers. */
#include <stdlib.h>

#include "../../gateway/batch.h"
#include "../../gateway/conn_id.h"
#include "../../gateway/downstream.h"
#include "../../gateway/route.h"
#include "../../gateway/upstream.h"
#include "utf8.h"
#include "../../gateway/wsout.h"
#include "grpc_frame.h"
#include "test.h"
#include "wsgw.pb-c.h"

static bool v(const char *s)
{
    return gw_utf8_valid((const uint8_t *)s, strlen(s));
}

static void test_utf8(void)
{
    CHECK(v(""));
    CHECK(v("plain ascii long enough for the 8-byte path"));
    CHECK(v("h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80")); /* é € 😀 */
    CHECK(!v("\xc0\xaf"));             /* overlong '/' */
    CHECK(!v("\xe0\x80\xaf"));         /* overlong */
    CHECK(!v("\xed\xa0\x80"));         /* surrogate U+D800 */
    CHECK(!v("\xf4\x90\x80\x80"));     /* > U+10FFFF */
    CHECK(!v("\xf5\x80\x80\x80"));
    CHECK(!v("abc\xe2\x82"));          /* truncated */
    CHECK(!v("\x80"));                 /* lone continuation */
    CHECK(!v("\xc3\x28"));             /* bad continuation */
    CHECK(v("\xef\xbf\xbf"));          /* U+FFFF is allowed */
    CHECK(v("\xf4\x8f\xbf\xbf"));      /* U+10FFFF */
}

/* Fed in two slices split at every position, then byte by byte: the same verdict as whole. */
static void test_utf8_incremental_matches_whole(void)
{
    static const char *const cases[] = {
        "", "ascii only, longer than eight bytes", "h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80",
        "\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xf5\x80\x80\x80",
        "abc\xe2\x82", "\x80", "\xc3\x28", "\xef\xbf\xbf", "\xf4\x8f\xbf\xbf",
        "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80" "edited", /* 6.4.x shape */
        "\xf0\x90\x80", "\xe0\xa0", "12345678\xf0\x9f\x98\x80" "12345678",
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const uint8_t *p = (const uint8_t *)cases[k];
        size_t n = strlen(cases[k]);
        bool whole = gw_utf8_valid(p, n);
        for (size_t cut = 0; cut <= n; cut++) {
            uint8_t st = 0;
            bool ok = gw_utf8_feed(&st, p, cut) && gw_utf8_feed(&st, p + cut, n - cut) && st == 0;
            if (ok != whole)
                fprintf(stderr, "case %zu split at %zu: %d, whole %d\n", k, cut, ok, whole);
            CHECK(ok == whole);
        }
        uint8_t st = 0;
        bool ok = true;
        for (size_t i = 0; ok && i < n; i++)
            ok = gw_utf8_feed(&st, p + i, 1);
        CHECK((ok && st == 0) == whole);
    }
}

/* Fail fast (RFC 6455 §8.1, conformance 6.4.x): the slice holding the first impossible byte
 * fails, even when the character it is in is not complete yet. */
static void test_utf8_fails_at_the_first_bad_byte(void)
{
    uint8_t st = 0;
    CHECK(gw_utf8_feed(&st, (const uint8_t *)"\xce\xba\xe1\xbd", 4)); /* cut inside a char */
    CHECK(st != 0);
    CHECK(gw_utf8_feed(&st, (const uint8_t *)"\xb9", 1));
    CHECK_EQ(st, 0);
    CHECK(!gw_utf8_feed(&st, (const uint8_t *)"\xf4\x90", 2)); /* > U+10FFFF at byte 2 */
    st = 0;
    CHECK(gw_utf8_feed(&st, (const uint8_t *)"\xf4", 1));
    CHECK(!gw_utf8_feed(&st, (const uint8_t *)"\x90", 1)); /* the constraint crosses slices */
    st = 0;
    CHECK(gw_utf8_feed(&st, (const uint8_t *)"\xed", 1));
    CHECK(!gw_utf8_feed(&st, (const uint8_t *)"\xa0", 1)); /* surrogate */
    st = 0;
    CHECK(gw_utf8_feed(&st, (const uint8_t *)"\xe0\xa0", 2));
    CHECK(!gw_utf8_feed(&st, (const uint8_t *)"\x41", 1)); /* not a continuation */
    st = 0;
    CHECK(!gw_utf8_feed(&st, (const uint8_t *)"ok\xff", 3));
}

static void test_utf8_cut_on_a_boundary(void)
{
    const uint8_t *e = (const uint8_t *)"\xc3\xa9\xc3\xa9\xc3\xa9"; /* "ééé", 6 bytes */
    CHECK_EQ(gw_utf8_cut(e, 6, 6), 6);
    CHECK_EQ(gw_utf8_cut(e, 6, 5), 4);
    CHECK_EQ(gw_utf8_cut(e, 6, 4), 4);
    CHECK_EQ(gw_utf8_cut(e, 6, 1), 0);
    const uint8_t *f = (const uint8_t *)"a\xf0\x9f\x98\x80"; /* a + 4-byte char */
    for (size_t m = 1; m < 5; m++)
        CHECK_EQ(gw_utf8_cut(f, 5, m), 1);
    CHECK_EQ(gw_utf8_cut((const uint8_t *)"abc", 3, 2), 2);
}

static gw_event_t *msg_event(uint64_t id, const char *user, const char *payload, uint64_t seq)
{
    gw_event_t *e = gw_event_new(GW_EV_MESSAGE, id, user, strlen(user), payload,
                                 strlen(payload), NULL, 0, NULL, 0);
    e->seq = seq;
    e->gateway_ns = 1000 + (int64_t)seq;
    return e;
}

static void test_batch_roundtrip_and_renumber(void)
{
    gw_event_t *evs[3];
    evs[0] = gw_event_new(GW_EV_OPEN, 7, "u", 1, "1.2.3.4:5", 9, "user=u", 6, "/gateway/ws", 11);
    evs[1] = msg_event(7, "u", "hello", 1);
    evs[2] = gw_event_new(GW_EV_CLOSE, 7, "u", 1, "bye", 3, NULL, 0, NULL, 0);
    evs[2]->code = 1001;
    gw_batch_t *b = gw_batch_encode(NULL, evs, 3, "gw-1");
    REQUIRE(b);
    CHECK_EQ(b->nevents, 3);
    CHECK_EQ(b->nmsgs, 1);
    for (uint64_t seq = 1; seq < (1ULL << 40); seq = seq * 300 + 1) {
        gw_batch_set_seq(b, seq);
        CHECK_EQ(b->buf[0], 0);
        uint32_t len = (uint32_t)b->buf[1] << 24 | b->buf[2] << 16 | b->buf[3] << 8 | b->buf[4];
        CHECK_EQ(len + GRPC_FRAME_HDR_LEN, b->wire_len);
        Wsgw__V1__Upstream *up = wsgw__v1__upstream__unpack(NULL, len, b->buf + 5);
        REQUIRE(up);
        CHECK(up->seq == seq);
        CHECK_EQ(up->n_events, 3);
        CHECK_EQ(up->events[0]->kind_case, WSGW__V1__EVENT__KIND_OPEN);
        CHECK_STR(up->events[0]->open->gateway_id, "gw-1");
        CHECK_STR(up->events[0]->open->remote_addr, "1.2.3.4:5");
        CHECK_STR(up->events[0]->open->query, "user=u");
        CHECK_STR(up->events[0]->open->path, "/gateway/ws");
        CHECK_EQ(up->events[1]->kind_case, WSGW__V1__EVENT__KIND_MESSAGE);
        CHECK(up->events[1]->message->payload.len == 5 &&
              memcmp(up->events[1]->message->payload.data, "hello", 5) == 0);
        CHECK(up->events[1]->message->seq == 1);
        CHECK_STR(up->events[1]->user_id, "u");
        CHECK(up->events[1]->gateway_ns == 1001);
        CHECK_EQ(up->events[2]->close->code, 1001);
        CHECK_STR(up->events[2]->close->reason, "bye");
        wsgw__v1__upstream__free_unpacked(up, NULL);
    }
    gw_batch_free(b);
    for (int i = 0; i < 3; i++)
        gw_event_free(evs[i]);
    gw_batch_thread_cleanup();
}

typedef struct {
    int n;
    int thread[16];
    gw_cmd_t *cmd[16];
    int napi;
} emitted_t;

static void emit(void *ud, int thread, gw_cmd_t *cmd)
{
    emitted_t *e = ud;
    if (e->n < 16) {
        e->thread[e->n] = thread;
        e->cmd[e->n++] = cmd;
    } else {
        gw_cmd_free(cmd);
    }
}

static void api_cb(void *ud, int64_t ns)
{
    (void)ns;
    ((emitted_t *)ud)->napi++;
}

static size_t pack_downstream(Wsgw__V1__Command **cmds, size_t n, uint64_t ack, uint8_t *out)
{
    Wsgw__V1__Downstream d = WSGW__V1__DOWNSTREAM__INIT;
    d.commands = cmds;
    d.n_commands = n;
    d.ack = ack;
    return wsgw__v1__downstream__pack(&d, out);
}

/* A batch of n messages of `size` bytes each, encoded from pool. */
static gw_batch_t *sized_batch(gw_batch_pool_t *pool, int n, size_t size)
{
    char *payload = malloc(size + 1);
    memset(payload, 'p', size);
    payload[size] = 0;
    gw_event_t *evs[8] = {0};
    for (int i = 0; i < n; i++)
        evs[i] = msg_event(9, "u", payload, (uint64_t)i + 1);
    gw_batch_t *b = gw_batch_encode(pool, evs, (size_t)n, "gw-1");
    for (int i = 0; i < n; i++)
        gw_event_free(evs[i]);
    free(payload);
    return b;
}

/* The writer's batch buffers (gw_batch_pool_t): a freed batch's buffer serves the next batch
 * that fits; small ones are malloc's; the pool stays within its count and bytes; what comes
 * from the pool encodes the same as fresh memory. */
static void test_batch_pool_reuses_buffers(void)
{
    gw_batch_pool_t pool = {0};
    gw_batch_t *a = sized_batch(&pool, 4, 16000);
    REQUIRE(a);
    uint8_t *abuf = a->buf;
    size_t acap = a->cap;
    CHECK(acap >= a->wire_len);
    gw_batch_recycle(&pool, a);
    CHECK_EQ(pool.n, 1);
    CHECK_EQ(pool.bytes, acap);
    gw_batch_t *b = sized_batch(&pool, 2, 16000); /* smaller: fits in a's buffer */
    REQUIRE(b);
    CHECK(b->buf == abuf);
    CHECK_EQ(b->cap, acap);
    CHECK_EQ(pool.n, 0);
    CHECK_EQ(pool.bytes, 0);
    Wsgw__V1__Upstream *up = wsgw__v1__upstream__unpack(NULL, b->wire_len - 5, b->buf + 5);
    REQUIRE(up);
    CHECK_EQ(up->n_events, 2);
    CHECK_EQ(up->events[1]->message->payload.len, 16000);
    wsgw__v1__upstream__free_unpacked(up, NULL);
    gw_batch_t *c = sized_batch(&pool, 8, 16000); /* larger: fresh memory */
    REQUIRE(c);
    CHECK(c->buf != abuf);
    gw_batch_recycle(&pool, b);
    gw_batch_recycle(&pool, c);
    CHECK_EQ(pool.n, 2);
    gw_batch_t *small = sized_batch(&pool, 1, 10); /* under 4 KiB: malloc's, never the pool's */
    REQUIRE(small);
    CHECK_EQ(pool.n, 2);
    gw_batch_recycle(&pool, small);
    CHECK_EQ(pool.n, 2);
    /* bounds: never more than GW_BATCH_POOL buffers or GW_BATCH_POOL_BYTES; larger ones win */
    gw_batch_pool_free(&pool);
    for (int i = 0; i < 3 * GW_BATCH_POOL; i++) {
        gw_batch_t *x = sized_batch(NULL, 8, 4000 + 1000 * (size_t)i);
        REQUIRE(x);
        size_t cap = x->cap;
        gw_batch_recycle(&pool, x);
        CHECK(pool.n <= GW_BATCH_POOL);
        CHECK(pool.bytes <= GW_BATCH_POOL_BYTES);
        size_t sum = 0, max = 0;
        for (int k = 0; k < pool.n; k++) {
            sum += pool.cap[k];
            if (pool.cap[k] > max)
                max = pool.cap[k];
        }
        CHECK_EQ(sum, pool.bytes);
        CHECK_EQ(max, cap); /* the latest is the largest so far: it was kept */
    }
    gw_batch_pool_free(&pool);
    CHECK_EQ(pool.n, 0);
    CHECK_EQ(pool.bytes, 0);
    gw_batch_thread_cleanup();
}

static void test_downstream_fanout(void)
{
    uint16_t prefix = 9;
    uint64_t ids[] = {conn_id_make(prefix, 0, 1, 1), conn_id_make(prefix, 1, 2, 1),
                      conn_id_make(prefix, 1, 3, 1), conn_id_make(prefix + 1, 0, 1, 1)};
    Wsgw__V1__Target t1 = WSGW__V1__TARGET__INIT;
    t1.conn_ids = ids;
    t1.n_conn_ids = 4; /* the last one belongs to another gateway */
    Wsgw__V1__Send s1 = WSGW__V1__SEND__INIT;
    s1.target = &t1;
    s1.payload.data = (uint8_t *)"abc";
    s1.payload.len = 3;
    s1.api_ns = 5;
    Wsgw__V1__Command c1 = WSGW__V1__COMMAND__INIT;
    c1.kind_case = WSGW__V1__COMMAND__KIND_SEND;
    c1.send = &s1;

    Wsgw__V1__Target t2 = WSGW__V1__TARGET__INIT;
    t2.room = "lobby";
    Wsgw__V1__Kick k2 = WSGW__V1__KICK__INIT;
    k2.target = &t2;
    k2.code = 4002;
    k2.reason = "out";
    Wsgw__V1__Command c2 = WSGW__V1__COMMAND__INIT;
    c2.kind_case = WSGW__V1__COMMAND__KIND_KICK;
    c2.kick = &k2;

    Wsgw__V1__Join j3 = WSGW__V1__JOIN__INIT;
    j3.conn_id = ids[2];
    j3.room = "lobby";
    Wsgw__V1__Command c3 = WSGW__V1__COMMAND__INIT;
    c3.kind_case = WSGW__V1__COMMAND__KIND_JOIN;
    c3.join = &j3;

    Wsgw__V1__Command *cmds[] = {&c1, &c2, &c3};
    uint8_t buf[1024];
    size_t len = pack_downstream(cmds, 3, 42, buf);

    emitted_t e = {0};
    gw_ds_sink_t sink = {.nsvc = 2, .prefix = prefix, .t_recv = 77, .emit = emit,
                         .api_ns = api_cb, .ud = &e};
    gw_ds_result_t res;
    REQUIRE(gw_downstream_handle(buf, len, &sink, &res) == 0);
    CHECK(res.has_ack && res.ack == 42);
    CHECK_EQ(res.commands, 3);
    CHECK_EQ(res.undeliverable, 1); /* the foreign id */
    CHECK_EQ(e.napi, 1);
    /* send: one per thread with its ids; kick: room to both threads; join: thread 1 */
    REQUIRE(e.n == 5);
    CHECK(e.cmd[0]->type == GW_CMD_SEND && e.thread[0] == 0 && e.cmd[0]->nconns == 1 &&
          e.cmd[0]->conns[0] == ids[0]);
    CHECK(e.cmd[1]->type == GW_CMD_SEND && e.thread[1] == 1 && e.cmd[1]->nconns == 2);
    CHECK(e.cmd[0]->payload->len == 3 && memcmp(gw_payload_data(e.cmd[0]->payload), "abc", 3) == 0);
    CHECK(e.cmd[0]->payload != e.cmd[1]->payload); /* one payload per thread */
    CHECK_EQ(e.cmd[0]->payload->t_recv, 77);
    CHECK(e.cmd[2]->type == GW_CMD_KICK && e.cmd[2]->code == 4002);
    CHECK_STR(gw_cmd_room(e.cmd[2]), "lobby");
    CHECK(e.thread[2] == 0 && e.thread[3] == 1);
    CHECK(e.cmd[4]->type == GW_CMD_JOIN && e.thread[4] == 1 && e.cmd[4]->conns[0] == ids[2]);
    for (int i = 0; i < e.n; i++)
        gw_cmd_free(e.cmd[i]);

    /* garbage is refused whole */
    uint8_t junk[] = {0x0a, 0xff, 0xff, 0xff, 0x0f};
    emitted_t e2 = {0};
    sink.ud = &e2;
    CHECK_EQ(gw_downstream_handle(junk, sizeof junk, &sink, &res), -1);
    CHECK_EQ(e2.n, 0);
}

static void test_route_stable_and_failover(void)
{
    gw_node_t ups[3];
    memset(ups, 0, sizeof ups);
    for (int i = 0; i < 3; i++) {
        atomic_init(&ups[i].connected, 1);
        atomic_init(&ups[i].seed, 1000 + (uint64_t)i * 7777);
    }
    gw_t g = {.nup = 3, .nodes = ups};
    int count[3] = {0};
    int before[300];
    for (int i = 0; i < 300; i++) {
        char key[16];
        int n = snprintf(key, sizeof key, "user%d", i);
        before[i] = gw_route_node(&g, key, (size_t)n);
        CHECK_EQ(gw_route_node(&g, key, (size_t)n), before[i]); /* stable */
        count[before[i]]++;
    }
    for (int i = 0; i < 3; i++)
        CHECK(count[i] > 50); /* spread */
    atomic_store(&ups[1].connected, 0);
    for (int i = 0; i < 300; i++) {
        char key[16];
        int n = snprintf(key, sizeof key, "user%d", i);
        int now = gw_route_node(&g, key, (size_t)n);
        CHECK(now != 1);
        if (before[i] != 1)
            CHECK_EQ(now, before[i]); /* only the down node's users move */
    }
    atomic_store(&ups[0].connected, 0);
    atomic_store(&ups[2].connected, 0);
    for (int i = 0; i < 50; i++) {
        char key[16];
        int n = snprintf(key, sizeof key, "user%d", i);
        CHECK_EQ(gw_route_node(&g, key, (size_t)n), before[i]); /* all down: the first choice */
    }
    for (int s = 0; s < 4; s++)
        CHECK(gw_route_stream((uint64_t)s * 7919, 4) >= 0 && gw_route_stream((uint64_t)s, 4) < 4);
    /* home (a resync's Open.rooms, svc_cmd.c): gw_route_node's choice with every node up,
     * whatever is up now; never a slot without an address or outside the subset */
    for (int i = 0; i < 3; i++) {
        atomic_store(&ups[i].assigned, 1);
        atomic_store(&ups[i].wanted, 1);
    }
    for (int i = 0; i < 300; i++) {
        char key[16];
        int n = snprintf(key, sizeof key, "user%d", i);
        CHECK_EQ(gw_route_home(&g, key, (size_t)n), before[i]); /* (all down now) */
    }
    atomic_store(&ups[1].assigned, 0);
    atomic_store(&ups[2].wanted, 0);
    for (int i = 0; i < 300; i++) {
        char key[16];
        int n = snprintf(key, sizeof key, "user%d", i);
        CHECK_EQ(gw_route_home(&g, key, (size_t)n), 0);
    }
    atomic_store(&ups[0].assigned, 0);
    for (int i = 0; i < 50; i++) {
        char key[16];
        int n = snprintf(key, sizeof key, "user%d", i);
        CHECK_EQ(gw_route_home(&g, key, (size_t)n), before[i]); /* none usable: any slot */
    }
}

/* RFC 6455 §5.2: FIN + opcode, no mask bit, then the shortest length form. */
static void test_ws_frame_header(void)
{
    uint8_t h[GW_WS_HDR_MAX];
    CHECK_EQ(gw_ws_frame_header(h, false, 0), 2);
    CHECK(h[0] == 0x81 && h[1] == 0);
    CHECK_EQ(gw_ws_frame_header(h, true, 125), 2);
    CHECK(h[0] == 0x82 && h[1] == 125);
    CHECK_EQ(gw_ws_frame_header(h, false, 126), 4);
    CHECK(h[1] == 126 && h[2] == 0 && h[3] == 126);
    CHECK_EQ(gw_ws_frame_header(h, false, 65535), 4);
    CHECK(h[1] == 126 && h[2] == 0xff && h[3] == 0xff);
    CHECK_EQ(gw_ws_frame_header(h, true, 65536), 10);
    CHECK(h[0] == 0x82 && h[1] == 127);
    static const uint8_t len65536[8] = {0, 0, 0, 0, 0, 1, 0, 0};
    CHECK(memcmp(h + 2, len65536, 8) == 0);
    CHECK_EQ(gw_ws_frame_header(h, false, 0x0102030405060708ULL), 10);
    static const uint8_t big[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    CHECK(memcmp(h + 2, big, 8) == 0);
}

int main(void)
{
    RUN(test_utf8);
    RUN(test_utf8_incremental_matches_whole);
    RUN(test_utf8_fails_at_the_first_bad_byte);
    RUN(test_utf8_cut_on_a_boundary);
    RUN(test_batch_roundtrip_and_renumber);
    RUN(test_batch_pool_reuses_buffers);
    RUN(test_downstream_fanout);
    RUN(test_route_stable_and_failover);
    RUN(test_ws_frame_header);
    return TEST_REPORT();
}
