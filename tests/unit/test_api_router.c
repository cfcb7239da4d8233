/* test_api_router.c: Downstream encoding, routing of targets over presence, Upstream handling
 * (exchange), echo/chat handlers and chat command parsing — all without sockets, on fake
 * streams that keep every Downstream they would have sent. */
#include <stdlib.h>

#include "../../api/downstream.h"
#include "../../api/exchange.h"
#include "grpc_frame.h"
#include "metrics.h"
#include "../../api/handler.h"
#include "../../api/presence.h"
#include "../../api/push.h"
#include "../../api/router.h"
#include "test.h"
#include "../../api/wsapi_metrics.h"
#include "wsgw.pb-c.h"

/* ---- fake streams -------------------------------------------------------------------------- */

typedef struct fake {
    api_stream_t as; /* first */
    Wsgw__V1__Downstream *sent[64];
    int nsent;
    size_t max_len; /* largest Downstream seen */
} fake_t;

static void fake_flush(api_stream_t *as)
{
    fake_t *f = (fake_t *)as;
    if (downstream_finish(&as->pending, as->ack) < 0)
        abort();
    uint32_t len = (uint32_t)as->pending.data[1] << 24 | (uint32_t)as->pending.data[2] << 16 |
                   (uint32_t)as->pending.data[3] << 8 | as->pending.data[4];
    if (len != as->pending.len - GRPC_FRAME_HDR_LEN || f->nsent == 64)
        abort();
    if (len > f->max_len)
        f->max_len = len;
    f->sent[f->nsent++] =
        wsgw__v1__downstream__unpack(NULL, len, as->pending.data + GRPC_FRAME_HDR_LEN);
    buf_reset(&as->pending);
    as->ncmds = 0;
    as->ack_dirty = false;
}

static void fake_init(fake_t *f)
{
    memset(f, 0, sizeof *f);
    f->as.flush = fake_flush;
}

static void fake_free(fake_t *f)
{
    for (int i = 0; i < f->nsent; i++)
        wsgw__v1__downstream__free_unpacked(f->sent[i], NULL);
    buf_free(&f->as.pending);
}

/* Flushes every dirty stream like grpc_server does after an iteration. */
static void flush_all(router_t *r)
{
    api_stream_t *s;
    while ((s = router_pop_dirty(r)))
        s->flush(s);
}

/* All commands a fake received, in order. */
static size_t ncommands(const fake_t *f)
{
    size_t n = 0;
    for (int i = 0; i < f->nsent; i++)
        n += f->sent[i] ? f->sent[i]->n_commands : 0;
    return n;
}

static Wsgw__V1__Command *command(const fake_t *f, size_t k)
{
    for (int i = 0; i < f->nsent; i++) {
        if (k < f->sent[i]->n_commands)
            return f->sent[i]->commands[k];
        k -= f->sent[i]->n_commands;
    }
    return NULL;
}

/* A live session for fake streams (presence.h: every stream belongs to one). A static pool:
 * presence_free ends them, and presence_session_start reinitialises one. */
static pres_session_t *new_session(presence_t *p)
{
    static pres_session_t pool[16];
    static uint64_t serial;
    pres_session_t *s = &pool[serial % 16];
    presence_session_start(p, s, ++serial, 0, 0);
    return s;
}

/* ---- Upstream builder ---------------------------------------------------------------------- */

typedef struct {
    Wsgw__V1__Event ev[16];
    Wsgw__V1__Event *evp[16];
    Wsgw__V1__Open open[16];
    Wsgw__V1__Message msg[16];
    Wsgw__V1__Close close[16];
    int n;
} ub_t;

static Wsgw__V1__Event *ub_add(ub_t *u, uint64_t conn, const char *user)
{
    Wsgw__V1__Event *e = &u->ev[u->n];
    *e = (Wsgw__V1__Event)WSGW__V1__EVENT__INIT;
    e->conn_id = conn;
    e->user_id = (char *)user;
    u->evp[u->n] = e;
    return e;
}

static void ub_open(ub_t *u, uint64_t conn, const char *user, const char *gw)
{
    Wsgw__V1__Event *e = ub_add(u, conn, user);
    u->open[u->n] = (Wsgw__V1__Open)WSGW__V1__OPEN__INIT;
    u->open[u->n].gateway_id = (char *)gw;
    e->kind_case = WSGW__V1__EVENT__KIND_OPEN;
    e->open = &u->open[u->n++];
}

static void ub_msg(ub_t *u, uint64_t conn, const char *user, const char *text, bool binary)
{
    Wsgw__V1__Event *e = ub_add(u, conn, user);
    u->msg[u->n] = (Wsgw__V1__Message)WSGW__V1__MESSAGE__INIT;
    u->msg[u->n].payload.data = (uint8_t *)text;
    u->msg[u->n].payload.len = strlen(text);
    u->msg[u->n].binary = binary;
    e->kind_case = WSGW__V1__EVENT__KIND_MESSAGE;
    e->message = &u->msg[u->n++];
}

static void ub_close(ub_t *u, uint64_t conn)
{
    Wsgw__V1__Event *e = ub_add(u, conn, "");
    u->close[u->n] = (Wsgw__V1__Close)WSGW__V1__CLOSE__INIT;
    e->kind_case = WSGW__V1__EVENT__KIND_CLOSE;
    e->close = &u->close[u->n++];
}

static int ub_send_complete(ub_t *u, exchange_t *x, api_stream_t *s, uint64_t seq,
                            bool complete)
{
    Wsgw__V1__Upstream up = WSGW__V1__UPSTREAM__INIT;
    up.n_events = (size_t)u->n;
    up.events = u->evp;
    up.seq = seq;
    up.presence_complete = complete;
    uint8_t buf[8192];
    size_t n = wsgw__v1__upstream__pack(&up, buf);
    u->n = 0;
    return exchange_upstream(x, s, buf, n);
}

static int ub_send(ub_t *u, exchange_t *x, api_stream_t *s, uint64_t seq)
{
    return ub_send_complete(u, x, s, seq, false);
}

/* ---- tests --------------------------------------------------------------------------------- */

static void test_downstream_encoding(void)
{
    buf_t b = BUF_INIT;
    Wsgw__V1__Join j = WSGW__V1__JOIN__INIT;
    j.conn_id = 77;
    j.room = "r";
    Wsgw__V1__Command c = WSGW__V1__COMMAND__INIT;
    c.kind_case = WSGW__V1__COMMAND__KIND_JOIN;
    c.join = &j;
    REQUIRE(downstream_append(&b, &c) == 0);
    CHECK_EQ(b.len, GRPC_FRAME_HDR_LEN + downstream_entry_size(&c));
    REQUIRE(downstream_append(&b, &c) == 0);
    REQUIRE(downstream_finish(&b, 300) == 0);
    Wsgw__V1__Downstream *d =
        wsgw__v1__downstream__unpack(NULL, b.len - GRPC_FRAME_HDR_LEN, b.data + 5);
    REQUIRE(d != NULL);
    CHECK_EQ(d->n_commands, 2);
    CHECK(d->ack == 300);
    CHECK(d->commands[1]->join->conn_id == 77);
    wsgw__v1__downstream__free_unpacked(d, NULL);
    buf_free(&b);

    /* ack only; and ack 0 is the empty message */
    REQUIRE(downstream_finish(&b, 1) == 0);
    CHECK_EQ(b.len, 7);
    CHECK(b.data[4] == 2 && b.data[5] == 0x10 && b.data[6] == 1);
    buf_free(&b);
    REQUIRE(downstream_finish(&b, 0) == 0);
    CHECK_EQ(b.len, 5);
    buf_free(&b);
    uint8_t v[10];
    CHECK_EQ(downstream_varint(v, UINT64_MAX), 10);
}

static void test_echo_on_source_stream_with_ack(void)
{
    presence_t p;
    router_t r;
    exchange_t x;
    presence_init(&p);
    router_init(&r, &p, 1 << 20);
    exchange_init(&x, &p, &r, HANDLER_ECHO);
    fake_t s1, s2;
    fake_init(&s1);
    fake_init(&s2);
    pres_session_t *ss = new_session(&p);
    REQUIRE(presence_attach(&p, "gw", ss, &s1.as) && presence_attach(&p, "gw", ss, &s2.as));
    ub_t u = {0};
    ub_open(&u, 5, "alice", "gw");
    CHECK_EQ(ub_send(&u, &x, &s1.as, 1), EXCHANGE_OK);
    CHECK(s1.as.ack == 1 && s1.as.ack_dirty && s1.as.dirty);
    /* The conn's messages arrive on s2: the echo goes back on s2, in order. */
    ub_msg(&u, 5, "alice", "one", false);
    ub_msg(&u, 5, "", "two", true);
    CHECK_EQ(ub_send(&u, &x, &s2.as, 7), EXCHANGE_OK);
    flush_all(&r);
    CHECK_EQ(s1.nsent, 1); /* ack-only Downstream */
    REQUIRE(s1.sent[0] != NULL);
    CHECK_EQ(s1.sent[0]->n_commands, 0);
    CHECK(s1.sent[0]->ack == 1);
    REQUIRE(s2.nsent == 1 && s2.sent[0]);
    CHECK(s2.sent[0]->ack == 7);
    REQUIRE(ncommands(&s2) == 2);
    Wsgw__V1__Send *a = command(&s2, 0)->send, *b = command(&s2, 1)->send;
    REQUIRE(a && b);
    CHECK(a->target->n_conn_ids == 1 && a->target->conn_ids[0] == 5);
    CHECK(a->payload.len == 3 && memcmp(a->payload.data, "one", 3) == 0 && !a->binary);
    CHECK(b->payload.len == 3 && memcmp(b->payload.data, "two", 3) == 0 && b->binary);
    CHECK(a->api_ns > 1600000000000000000LL); /* wall clock, ns */
    CHECK(!s1.as.dirty && !s2.as.dirty);

    /* Close forgets the conn; an undecodable batch is not acked. */
    ub_close(&u, 5);
    CHECK_EQ(ub_send(&u, &x, &s1.as, 2), EXCHANGE_OK);
    CHECK(presence_conn(&p, 5) == NULL);
    CHECK_EQ(exchange_upstream(&x, &s1.as, (const uint8_t *)"\xff\xff\xff", 3),
             EXCHANGE_ERR_DECODE);
    CHECK(s1.as.ack == 2);
    flush_all(&r);
    exchange_free(&x);
    router_free(&r);
    presence_free(&p);
    fake_free(&s1);
    fake_free(&s2);
}

static void test_none_handler_still_acks(void)
{
    presence_t p;
    router_t r;
    exchange_t x;
    presence_init(&p);
    router_init(&r, &p, 1 << 20);
    exchange_init(&x, &p, &r, HANDLER_NONE);
    fake_t s;
    fake_init(&s);
    REQUIRE(presence_attach(&p, "gw", new_session(&p), &s.as));
    ub_t u = {0};
    ub_msg(&u, 1, "u", "hello", false);
    CHECK_EQ(ub_send(&u, &x, &s.as, 3), EXCHANGE_OK);
    flush_all(&r);
    REQUIRE(s.nsent == 1 && s.sent[0]);
    CHECK_EQ(s.sent[0]->n_commands, 0);
    CHECK(s.sent[0]->ack == 3);
    exchange_free(&x);
    router_free(&r);
    presence_free(&p);
    fake_free(&s);
}

/* Two gateways: A with streams a1 a2, B with b1. */
typedef struct {
    presence_t p;
    router_t r;
    fake_t a1, a2, b1;
    pres_session_t *sa, *sb;
} world_t;

static void world_init(world_t *w)
{
    presence_init(&w->p);
    router_init(&w->r, &w->p, 1 << 20);
    fake_init(&w->a1);
    fake_init(&w->a2);
    fake_init(&w->b1);
    w->sa = new_session(&w->p);
    w->sb = new_session(&w->p);
    presence_attach(&w->p, "A", w->sa, &w->a1.as);
    presence_attach(&w->p, "A", w->sa, &w->a2.as);
    presence_attach(&w->p, "B", w->sb, &w->b1.as);
    /* alice: conn 1 on A (via a1) and conn 2 on B; bob: conn 3 on A via a2 */
    presence_open(&w->p, 1, "alice", NULL, &w->a1.as);
    presence_open(&w->p, 2, "alice", NULL, &w->b1.as);
    presence_open(&w->p, 3, "bob", NULL, &w->a2.as);
}

static void world_free(world_t *w)
{
    router_free(&w->r);
    presence_free(&w->p);
    fake_free(&w->a1);
    fake_free(&w->a2);
    fake_free(&w->b1);
}

static int push(world_t *w, target_t *t)
{
    int n = push_send(&w->r, t, (const uint8_t *)"x", 1, false);
    flush_all(&w->r);
    return n;
}

static void test_route_conn_ids_to_holders_only(void)
{
    world_t w;
    world_init(&w);
    uint64_t ids[] = {3, 999};
    target_t t = {.conn_ids = ids, .n_conn_ids = 2};
    CHECK_EQ(push(&w, &t), 1);
    CHECK_EQ(ncommands(&w.a1), 0);
    CHECK_EQ(ncommands(&w.b1), 0);
    REQUIRE(ncommands(&w.a2) == 1); /* bob's Open came on a2 */
    Wsgw__V1__Target *tg = command(&w.a2, 0)->send->target;
    CHECK(tg->n_conn_ids == 1 && tg->conn_ids[0] == 3);
    CHECK(tg->n_user_ids == 0 && !tg->all && tg->room[0] == 0);

    uint64_t ids2[] = {1, 2, 3};
    t.conn_ids = ids2;
    t.n_conn_ids = 3;
    CHECK_EQ(push(&w, &t), 2); /* A (two streams) and B count as 2 gateways */
    CHECK_EQ(ncommands(&w.a1), 1);
    CHECK_EQ(ncommands(&w.a2), 2);
    CHECK_EQ(ncommands(&w.b1), 1);

    uint64_t none[] = {424242};
    t.conn_ids = none;
    t.n_conn_ids = 1;
    CHECK_EQ(push(&w, &t), 0);

    /* a2 goes away: bob (conn 3) is reached over a1 now */
    presence_detach(&w.p, &w.a2.as);
    t.conn_ids = ids;
    t.n_conn_ids = 1;
    CHECK_EQ(push(&w, &t), 1);
    CHECK_EQ(ncommands(&w.a1), 2);
    CHECK(command(&w.a1, 1)->send->target->conn_ids[0] == 3);
    world_free(&w);
}

static void test_route_users_room_all(void)
{
    world_t w;
    world_init(&w);
    char *alice[] = {"alice", "nobody"};
    target_t t = {.user_ids = alice, .n_user_ids = 2};
    CHECK_EQ(push(&w, &t), 2);
    REQUIRE(ncommands(&w.a1) == 1 && ncommands(&w.b1) == 1);
    CHECK_EQ(ncommands(&w.a2), 0);
    Wsgw__V1__Target *tg = command(&w.a1, 0)->send->target;
    CHECK(tg->n_user_ids == 1 && strcmp(tg->user_ids[0], "alice") == 0);
    CHECK_EQ(tg->n_conn_ids, 0);

    char *bob[] = {"bob"};
    t = (target_t){.user_ids = bob, .n_user_ids = 1};
    CHECK_EQ(push(&w, &t), 1);
    CHECK_EQ(ncommands(&w.a2), 1);

    /* room: one command per gateway, whatever its number of streams */
    t = (target_t){.room = "lobby"};
    CHECK_EQ(push(&w, &t), 2);
    CHECK_EQ(ncommands(&w.a1) + ncommands(&w.a2), 3);
    CHECK_EQ(ncommands(&w.b1), 2);
    tg = command(&w.b1, 1)->send->target;
    CHECK_STR(tg->room, "lobby");
    CHECK(!tg->all);

    /* all + a conn on B: merged into one command for B */
    uint64_t c2[] = {2};
    t = (target_t){.all = true, .conn_ids = c2, .n_conn_ids = 1};
    CHECK_EQ(push(&w, &t), 2);
    REQUIRE(ncommands(&w.b1) == 3);
    tg = command(&w.b1, 2)->send->target;
    CHECK(tg->all && tg->n_conn_ids == 1 && tg->conn_ids[0] == 2);

    /* kick by user */
    t = (target_t){.user_ids = bob, .n_user_ids = 1};
    CHECK_EQ(push_kick(&w.r, &t, 4000, "bye"), 1);
    flush_all(&w.r);
    Wsgw__V1__Command *k = command(&w.a2, ncommands(&w.a2) - 1);
    REQUIRE(k && k->kind_case == WSGW__V1__COMMAND__KIND_KICK);
    CHECK_EQ(k->kick->code, 4000);
    CHECK_STR(k->kick->reason, "bye");
    CHECK_STR(k->kick->target->user_ids[0], "bob");

    /* no gateways at all: 0 */
    presence_detach(&w.p, &w.a1.as);
    presence_detach(&w.p, &w.a2.as);
    presence_detach(&w.p, &w.b1.as);
    t = (target_t){.all = true};
    CHECK_EQ(push(&w, &t), 0);
    world_free(&w);
}

/* Every stream of gateway A's live session fails at once: A's connections stay in presence
 * but are unreachable (skipped and counted, not routed to a NULL stream); B's are reached; a
 * stream reopened in the same session reaches A's again without any re-Open. */
static void test_route_skips_gateway_without_streams(void)
{
    world_t w;
    world_init(&w);
    presence_detach(&w.p, &w.a1.as);
    presence_detach(&w.p, &w.a2.as);
    CHECK_EQ(presence_count(&w.p), 3);
    char *alice[] = {"alice"}, *bob[] = {"bob"};
    uint64_t c13[] = {1, 3};
    target_t t = {.user_ids = alice, .n_user_ids = 1};
    uint64_t before = w.r.unreachable;
    CHECK_EQ(push(&w, &t), 1); /* B only */
    CHECK_EQ(ncommands(&w.b1), 1);
    CHECK_EQ(w.r.unreachable, before + 1);
    t = (target_t){.user_ids = bob, .n_user_ids = 1};
    CHECK_EQ(push(&w, &t), 0);
    t = (target_t){.conn_ids = c13, .n_conn_ids = 2};
    CHECK_EQ(push(&w, &t), 0);
    CHECK_EQ(w.r.unreachable, before + 4);
    CHECK_EQ(push_kick(&w.r, &t, 4000, "x"), 0);
    t = (target_t){.all = true};
    CHECK_EQ(push(&w, &t), 1);
    CHECK_EQ(ncommands(&w.a1) + ncommands(&w.a2), 0);

    fake_t a3;
    fake_init(&a3);
    REQUIRE(presence_attach(&w.p, "A", w.sa, &a3.as));
    t = (target_t){.conn_ids = c13, .n_conn_ids = 2};
    CHECK_EQ(push(&w, &t), 1);
    REQUIRE(ncommands(&a3) == 1);
    CHECK_EQ(command(&a3, 0)->send->target->n_conn_ids, 2);
    presence_detach(&w.p, &a3.as);
    world_free(&w);
    fake_free(&a3);
}

/* A batch with presence_complete counts its stream once for its session's sync. */
static void test_exchange_presence_complete(void)
{
    world_t w;
    world_init(&w); /* its sessions announced nothing: synced */
    exchange_t x;
    exchange_init(&x, &w.p, &w.r, HANDLER_ECHO);
    pres_session_t ss = {0};
    presence_session_start(&w.p, &ss, 100, 2, 0);
    CHECK_EQ(w.p.unsynced, 1);
    fake_t c[2];
    for (int i = 0; i < 2; i++) {
        fake_init(&c[i]);
        REQUIRE(presence_attach(&w.p, "C", &ss, &c[i].as));
    }
    ub_t u = {0};
    ub_open(&u, 7, "carol", "C");
    CHECK_EQ(ub_send_complete(&u, &x, &c[0].as, 1, true), EXCHANGE_OK);
    CHECK(!ss.synced);
    CHECK(presence_conn(&w.p, 7) != NULL);
    CHECK_EQ(ub_send_complete(&u, &x, &c[0].as, 2, true), EXCHANGE_OK); /* same stream again */
    CHECK_EQ(ub_send_complete(&u, &x, &c[1].as, 1, false), EXCHANGE_OK);
    CHECK(!ss.synced);
    CHECK_EQ(ub_send_complete(&u, &x, &c[1].as, 2, true), EXCHANGE_OK); /* empty batch says it */
    CHECK(ss.synced);
    CHECK_EQ(w.p.unsynced, 0);
    flush_all(&w.r);
    exchange_free(&x);
    world_free(&w);
    for (int i = 0; i < 2; i++)
        fake_free(&c[i]);
}

static void test_soft_max_splits_downstream(void)
{
    presence_t p;
    router_t r;
    exchange_t x;
    presence_init(&p);
    router_init(&r, &p, 1000);
    exchange_init(&x, &p, &r, HANDLER_ECHO);
    fake_t s;
    fake_init(&s);
    REQUIRE(presence_attach(&p, "gw", new_session(&p), &s.as));
    ub_t u = {0};
    char text[201];
    memset(text, 'm', 200);
    text[200] = 0;
    for (int i = 0; i < 16; i++)
        ub_msg(&u, 1, "u", text, false);
    CHECK_EQ(ub_send(&u, &x, &s.as, 1), EXCHANGE_OK);
    CHECK(s.nsent >= 3); /* flushed early, mid-batch */
    CHECK(s.sent[0]->ack == 0); /* the batch was not handled yet when it was split */
    flush_all(&r);
    CHECK_EQ(ncommands(&s), 16);
    CHECK(s.max_len <= 1000);
    CHECK(s.sent[s.nsent - 1]->ack == 1);
    s.as.closed = true;
    CHECK_EQ(router_emit(&r, &s.as, command(&s, 0)), ROUTER_ERR_CLOSED);
    exchange_free(&x);
    router_free(&r);
    presence_free(&p);
    fake_free(&s);
}

static void test_chat_parse(void)
{
    chat_cmd_t c;
#define P(s, bin) chat_parse((const uint8_t *)(s), strlen(s), bin, &c)
    CHECK_EQ(P("{\"op\":\"join\",\"room\":\"r1\"}", false), CHAT_JOIN);
    CHECK_STR(c.room, "r1");
    chat_cmd_free(&c);
    CHECK_EQ(P("{\"op\":\"leave\",\"room\":\"r1\"}", false), CHAT_LEAVE);
    chat_cmd_free(&c);
    CHECK_EQ(P("{\"op\":\"say\",\"room\":\"r\",\"text\":\"hi \\\"x\\\"\"}", false), CHAT_SAY);
    CHECK_STR(c.text, "hi \"x\"");
    chat_cmd_free(&c);
    CHECK_EQ(P("{\"op\":\"say\",\"room\":\"r\"}", false), CHAT_OTHER); /* no text */
    CHECK_EQ(P("{\"op\":\"join\",\"room\":\"\"}", false), CHAT_OTHER);
    CHECK_EQ(P("{\"op\":\"join\",\"room\":5}", false), CHAT_OTHER);
    CHECK_EQ(P("{\"op\":\"dance\",\"room\":\"r\"}", false), CHAT_OTHER);
    CHECK_EQ(P("{\"op\":\"join\",\"room\":\"r\"}", true), CHAT_OTHER); /* binary */
    CHECK_EQ(P("{\"op\":\"join\"", false), CHAT_OTHER);
    CHECK_EQ(P("hello", false), CHAT_OTHER);
    CHECK_EQ(P("", false), CHAT_OTHER);
#undef P
    buf_t b = BUF_INIT;
    REQUIRE(chat_said_json(&b, "r", "bob", "a\"b") == 0);
    REQUIRE(buf_append(&b, "", 1) == 0);
    CHECK_STR((char *)b.data, "{\"op\":\"said\",\"room\":\"r\",\"from\":\"bob\",\"text\":\"a\\\"b\"}");
    buf_free(&b);
    handler_kind_t k;
    CHECK_EQ(handler_kind_parse("chat", &k), 0);
    CHECK_EQ(k, HANDLER_CHAT);
    CHECK_EQ(handler_kind_parse("echoo", &k), -1);
}

static void test_chat_handler(void)
{
    world_t w;
    world_init(&w);
    exchange_t x;
    exchange_init(&x, &w.p, &w.r, HANDLER_CHAT);
    ub_t u = {0};
    /* bob (conn 3) joins and says something, on stream a1 (not his Open stream) */
    ub_msg(&u, 3, "bob", "{\"op\":\"join\",\"room\":\"lobby\"}", false);
    ub_msg(&u, 3, "", "{\"op\":\"say\",\"room\":\"lobby\",\"text\":\"hey\"}", false);
    ub_msg(&u, 3, "bob", "plain", false);
    ub_msg(&u, 3, "bob", "{\"op\":\"leave\",\"room\":\"lobby\"}", false);
    CHECK_EQ(ub_send(&u, &x, &w.a1.as, 4), EXCHANGE_OK);
    flush_all(&w.r);
    /* A's share of the room message stays on a1 after the Join; B gets it on b1 */
    REQUIRE(ncommands(&w.a1) == 4);
    CHECK_EQ(ncommands(&w.a2), 0);
    REQUIRE(ncommands(&w.b1) == 1);
    Wsgw__V1__Command *c0 = command(&w.a1, 0), *c1 = command(&w.a1, 1);
    Wsgw__V1__Command *c2 = command(&w.a1, 2), *c3 = command(&w.a1, 3);
    CHECK(c0->kind_case == WSGW__V1__COMMAND__KIND_JOIN && c0->join->conn_id == 3);
    CHECK_STR(c0->join->room, "lobby");
    REQUIRE(c1->kind_case == WSGW__V1__COMMAND__KIND_SEND);
    CHECK_STR(c1->send->target->room, "lobby");
    const char *said = "{\"op\":\"said\",\"room\":\"lobby\",\"from\":\"bob\",\"text\":\"hey\"}";
    CHECK(c1->send->payload.len == strlen(said) &&
          memcmp(c1->send->payload.data, said, strlen(said)) == 0);
    CHECK(c2->kind_case == WSGW__V1__COMMAND__KIND_SEND && c2->send->payload.len == 5);
    CHECK(c2->send->target->conn_ids[0] == 3);
    CHECK(c3->kind_case == WSGW__V1__COMMAND__KIND_LEAVE);
    CHECK_STR(command(&w.b1, 0)->send->target->room, "lobby");
    CHECK(w.a1.sent[w.a1.nsent - 1]->ack == 4);
    exchange_free(&x);
    world_free(&w);
}

/* The payload of command i of stream s, which must be a Send, as a C string. */
static const char *send_text(const fake_t *s, size_t i, char *out, size_t cap)
{
    Wsgw__V1__Command *c = command(s, i);
    if (c->kind_case != WSGW__V1__COMMAND__KIND_SEND || c->send->payload.len >= cap)
        return "";
    memcpy(out, c->send->payload.data, c->send->payload.len);
    out[c->send->payload.len] = 0;
    return out;
}

/* --max-room-name 5, --max-rooms-per-conn 2: joins past the caps and ops naming a long room
 * are refused with an error message to the sender, nothing recorded, counted. */
static void test_chat_caps(void)
{
    world_t w;
    world_init(&w);
    exchange_t x;
    exchange_init(&x, &w.p, &w.r, HANDLER_CHAT);
    x.chat = (chat_limits_t){5, 2};
    int64_t name0 = metrics_value(wsapi_m.chat_refusals[0]);
    int64_t rooms0 = metrics_value(wsapi_m.chat_refusals[1]);
    ub_t u = {0};
    ub_msg(&u, 3, "bob", "{\"op\":\"join\",\"room\":\"a\"}", false);
    ub_msg(&u, 3, "bob", "{\"op\":\"join\",\"room\":\"bbbbb\"}", false);
    ub_msg(&u, 3, "bob", "{\"op\":\"join\",\"room\":\"c\"}", false);      /* 3rd: refused */
    ub_msg(&u, 3, "bob", "{\"op\":\"join\",\"room\":\"a\"}", false);      /* already in */
    ub_msg(&u, 3, "bob", "{\"op\":\"join\",\"room\":\"dddddd\"}", false); /* 6 bytes */
    ub_msg(&u, 3, "bob", "{\"op\":\"say\",\"room\":\"dddddd\",\"text\":\"t\"}", false);
    ub_msg(&u, 3, "bob", "{\"op\":\"leave\",\"room\":\"a\"}", false);
    ub_msg(&u, 3, "bob", "{\"op\":\"join\",\"room\":\"c\"}", false);      /* room again */
    CHECK_EQ(ub_send(&u, &x, &w.a1.as, 8), EXCHANGE_OK);
    flush_all(&w.r);
    REQUIRE(ncommands(&w.a1) == 8);
    char buf[256];
    CHECK_STR(command(&w.a1, 0)->join->room, "a");
    CHECK_STR(command(&w.a1, 1)->join->room, "bbbbb");
    CHECK_STR(send_text(&w.a1, 2, buf, sizeof buf),
              "{\"op\":\"error\",\"of\":\"join\",\"reason\":\"too_many_rooms\",\"room\":\"c\"}");
    CHECK(command(&w.a1, 2)->send->target->conn_ids[0] == 3);
    CHECK_STR(command(&w.a1, 3)->join->room, "a");
    CHECK_STR(send_text(&w.a1, 4, buf, sizeof buf),
              "{\"op\":\"error\",\"of\":\"join\",\"reason\":\"name_too_long\"}");
    CHECK_STR(send_text(&w.a1, 5, buf, sizeof buf),
              "{\"op\":\"error\",\"of\":\"say\",\"reason\":\"name_too_long\"}");
    CHECK(command(&w.a1, 6)->kind_case == WSGW__V1__COMMAND__KIND_LEAVE);
    CHECK_STR(command(&w.a1, 7)->join->room, "c");
    CHECK_EQ(ncommands(&w.b1), 0); /* the refused say reached no gateway */
    CHECK_EQ(rooms_of_conn(&x.rooms, 3), 2);
    CHECK(rooms_is_member(&x.rooms, 3, "c") && !rooms_is_member(&x.rooms, 3, "a"));
    CHECK(!rooms_is_member(&x.rooms, 3, "dddddd"));
    CHECK_EQ(metrics_value(wsapi_m.chat_refusals[0]) - name0, 2);
    CHECK_EQ(metrics_value(wsapi_m.chat_refusals[1]) - rooms0, 1);
    exchange_free(&x);
    world_free(&w);
}

int main(void)
{
    wsapi_metrics_init();
    RUN(test_downstream_encoding);
    RUN(test_echo_on_source_stream_with_ack);
    RUN(test_none_handler_still_acks);
    RUN(test_route_conn_ids_to_holders_only);
    RUN(test_route_users_room_all);
    RUN(test_route_skips_gateway_without_streams);
    RUN(test_exchange_presence_complete);
    RUN(test_soft_max_splits_downstream);
    RUN(test_chat_parse);
    RUN(test_chat_handler);
    RUN(test_chat_caps);
    return TEST_REPORT();
}
