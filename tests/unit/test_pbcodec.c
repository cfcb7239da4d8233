/* test_pbcodec.c: the hand-written protobuf codecs of the hot path against protobuf-c:
 * randomized messages both ways (ours encode -> protobuf-c decode, protobuf-c encode -> ours
 * decode), edge cases of the wire format (unknown fields, packed and unpacked, merges, oneofs,
 * limits of varints, tags and lengths), and random mutations of valid messages, on which both
 * decoders must agree (refuse alike, or say the same). */
#include <stdlib.h>

#include "../../api/downstream.h"
#include "../../api/updec.h"
#include "../../gateway/batch.h"
#include "../../gateway/dsdec.h"
#include "../sim/pbcheck.h"
#include "grpc_frame.h"
#include "pbwire.h"
#include "test.h"
#include "wsgw.pb-c.h"

static uint64_t rs = 88172645463325252ULL;
static uint64_t rnd(void)
{
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return rs;
}
static uint32_t below(uint32_t n) { return n ? (uint32_t)(rnd() % n) : 0; }

/* A value of every varint length, zero and the extremes often. */
static uint64_t rnd_u64(void)
{
    switch (below(6)) {
    case 0: return 0;
    case 1: return below(128);
    case 2: return UINT64_MAX - below(3);
    case 3: return rnd() >> below(64);
    default: return rnd();
    }
}

/* A random string of up to max bytes: ASCII, UTF-8-ish and (with nul) NUL bytes. */
static size_t rnd_bytes(uint8_t *out, size_t max, bool nul)
{
    size_t n = below((uint32_t)max + 1);
    for (size_t i = 0; i < n; i++) {
        out[i] = (uint8_t)(below(4) ? 'a' + below(26) : rnd());
        if (!nul && !out[i])
            out[i] = 'z';
    }
    return n;
}

static char *rnd_cstr(size_t max)
{
    char *s = malloc(max + 1);
    size_t n = rnd_bytes((uint8_t *)s, max, false);
    s[n] = 0;
    return s;
}

static bool same(const buf_t *a, const buf_t *b)
{
    return a->len == b->len && memcmp(a->data, b->data, a->len) == 0;
}

static void show(const char *what, const buf_t *a, const buf_t *b)
{
    fprintf(stderr, "%s:\n ours:   %.*s\n theirs: %.*s\n", what, (int)(a->len > 400 ? 400 : a->len),
            (const char *)a->data, (int)(b->len > 400 ? 400 : b->len), (const char *)b->data);
}

/* ---- ours encode -> protobuf-c decode ------------------------------------------------------- */

static void test_send1_bytes_equal_protobuf_c(void)
{
    uint8_t payload[300];
    for (int it = 0; it < 3000; it++) {
        uint64_t conn = rnd_u64();
        size_t len = rnd_bytes(payload, below(2) ? 300 : 3, true);
        bool bin = below(2);
        int64_t api_ns = (int64_t)rnd_u64();
        buf_t ours = BUF_INIT, theirs = BUF_INIT;
        REQUIRE(downstream_append_send1(&ours, conn, payload, len, bin, api_ns) == 0);
        CHECK_EQ(ours.len, GRPC_FRAME_HDR_LEN + downstream_send1_size(conn, len, bin, api_ns));
        uint64_t ids[1] = {conn};
        Wsgw__V1__Target tg = WSGW__V1__TARGET__INIT;
        tg.n_conn_ids = 1;
        tg.conn_ids = ids;
        Wsgw__V1__Send send = WSGW__V1__SEND__INIT;
        send.target = &tg;
        send.payload.data = payload;
        send.payload.len = len;
        send.binary = bin;
        send.api_ns = api_ns;
        Wsgw__V1__Command cmd = WSGW__V1__COMMAND__INIT;
        cmd.kind_case = WSGW__V1__COMMAND__KIND_SEND;
        cmd.send = &send;
        REQUIRE(downstream_append(&theirs, &cmd) == 0);
        CHECK(same(&ours, &theirs));
        /* and protobuf-c reads back what was meant */
        REQUIRE(downstream_finish(&ours, it + 1) == 0);
        Wsgw__V1__Downstream *d = wsgw__v1__downstream__unpack(NULL, ours.len - 5, ours.data + 5);
        REQUIRE(d);
        CHECK_EQ(d->ack, it + 1);
        REQUIRE(d->n_commands == 1 && d->commands[0]->kind_case == WSGW__V1__COMMAND__KIND_SEND);
        const Wsgw__V1__Send *s = d->commands[0]->send;
        REQUIRE(s->target && s->target->n_conn_ids == 1);
        CHECK(s->target->conn_ids[0] == conn);
        CHECK_EQ(s->payload.len, len);
        CHECK(len == 0 || memcmp(s->payload.data, payload, len) == 0);
        CHECK_EQ(s->binary, bin);
        CHECK(s->api_ns == api_ns);
        wsgw__v1__downstream__free_unpacked(d, NULL);
        buf_free(&ours);
        buf_free(&theirs);
    }
}

/* The old encoding of a batch: protobuf-c structs packed by protobuf-c. */
static size_t pack_batch_pbc(gw_event_t *const *evs, size_t n, const char *gwid, uint8_t *out)
{
    Wsgw__V1__Event *ev = calloc(n + 1, sizeof *ev), **ptrs = calloc(n + 1, sizeof *ptrs);
    Wsgw__V1__Open *op = calloc(n + 1, sizeof *op);
    Wsgw__V1__Message *ms = calloc(n + 1, sizeof *ms);
    Wsgw__V1__Close *cl = calloc(n + 1, sizeof *cl);
    Wsgw__V1__Recover *rc = calloc(n + 1, sizeof *rc);
    char ***rooms = calloc(n + 1, sizeof *rooms); /* an Open's rooms, read back from its d */
    for (size_t i = 0; i < n; i++) {
        gw_event_t *e = evs[i];
        wsgw__v1__event__init(&ev[i]);
        ev[i].conn_id = e->conn_id;
        ev[i].user_id = (char *)gw_event_user(e);
        ev[i].gateway_ns = e->gateway_ns;
        if (e->type == GW_EV_OPEN) {
            wsgw__v1__open__init(&op[i]);
            op[i].remote_addr = (char *)gw_event_a(e);
            op[i].query = (char *)gw_event_b(e);
            op[i].path = (char *)gw_event_c(e);
            op[i].gateway_id = (char *)gwid;
            pbw_t r = pbw_init(gw_event_d(e), e->d_len);
            pbw_field_t f;
            rooms[i] = calloc(e->d_len + 1, sizeof *rooms[i]);
            while (pbw_next(&r, &f) > 0)
                rooms[i][op[i].n_rooms++] = strndup((const char *)f.val, f.len);
            op[i].rooms = rooms[i];
            ev[i].kind_case = WSGW__V1__EVENT__KIND_OPEN;
            ev[i].open = &op[i];
        } else if (e->type == GW_EV_MESSAGE && e->recover) {
            wsgw__v1__recover__init(&rc[i]);
            rc[i].channel = (char *)gw_event_a(e);
            rc[i].epoch = (char *)gw_event_b(e);
            rc[i].offset = e->seq;
            rc[i].id = (uint32_t)e->code;
            ev[i].kind_case = WSGW__V1__EVENT__KIND_RECOVER;
            ev[i].recover = &rc[i];
        } else if (e->type == GW_EV_MESSAGE) {
            wsgw__v1__message__init(&ms[i]);
            ms[i].payload.data = (uint8_t *)gw_event_a(e);
            ms[i].payload.len = e->a_len;
            ms[i].binary = e->binary;
            ms[i].seq = e->seq;
            ev[i].kind_case = WSGW__V1__EVENT__KIND_MESSAGE;
            ev[i].message = &ms[i];
        } else {
            wsgw__v1__close__init(&cl[i]);
            cl[i].code = e->code;
            cl[i].reason = (char *)gw_event_a(e);
            ev[i].kind_case = WSGW__V1__EVENT__KIND_CLOSE;
            ev[i].close = &cl[i];
        }
        ptrs[i] = &ev[i];
    }
    Wsgw__V1__Upstream up = WSGW__V1__UPSTREAM__INIT;
    up.n_events = n;
    up.events = ptrs;
    size_t len = wsgw__v1__upstream__pack(&up, out);
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; rooms[i] && j < op[i].n_rooms; j++)
            free(rooms[i][j]);
        free(rooms[i]);
    }
    free(rooms);
    free(ev);
    free(ptrs);
    free(op);
    free(ms);
    free(cl);
    free(rc);
    return len;
}

static gw_event_t *rnd_event(void)
{
    uint8_t u[40], a[300], b[40], c[40];
    size_t un = rnd_bytes(u, 30, below(8) == 0), an, bn = 0, cn = 0;
    gw_event_t *e;
    switch (below(4)) {
    case 3: /* a Recover (wsgw.v1.json): a = channel, b = epoch, seq = offset, code = id */
        an = rnd_bytes(a, 40, below(8) == 0);
        bn = rnd_bytes(b, 30, below(8) == 0);
        e = gw_event_new(GW_EV_MESSAGE, rnd_u64(), (char *)u, un, a, an, (char *)b, bn, NULL, 0);
        e->recover = true;
        e->seq = below(3) ? rnd_u64() : 0;
        e->code = (int32_t)rnd();
        break;
    case 0:
        an = rnd_bytes(a, 40, below(8) == 0);
        bn = rnd_bytes(b, 40, below(8) == 0);
        cn = rnd_bytes(c, 40, below(8) == 0);
    {
        /* a resync Open with rooms (Open.rooms = 5), as ws.c encodes them: no NUL in a name
         * (the gateway's room names are Join's strings up to their first NUL); an empty one
         * is "in no room" */
        uint8_t rn[6][30];
        size_t rl[6], nr = below(3) ? 0 : below(7), d = 0;
        for (size_t k = 0; k < nr; k++) {
            rl[k] = below(6) ? 1 + rnd_bytes(rn[k], 28, false) : 0;
            if (rl[k])
                rn[k][rl[k] - 1] = 'r';
            d += gw_event_room_size(rl[k]);
        }
        e = gw_event_new_d(GW_EV_OPEN, rnd_u64(), (char *)u, un, a, an, (char *)b, bn,
                           (char *)c, cn, d);
        uint8_t *p = gw_event_d(e);
        for (size_t k = 0; k < nr; k++)
            p = gw_event_put_room(p, rn[k], rl[k]);
        break;
    }
    case 1:
        an = rnd_bytes(a, below(2) ? 300 : 4, true);
        e = gw_event_new(GW_EV_MESSAGE, rnd_u64(), (char *)u, un, a, an, NULL, 0, NULL, 0);
        e->binary = below(2);
        e->seq = rnd_u64();
        break;
    default:
        an = rnd_bytes(a, 40, below(8) == 0);
        e = gw_event_new(GW_EV_CLOSE, rnd_u64(), (char *)u, un, a, an, NULL, 0, NULL, 0);
        e->code = (int32_t)rnd();
        if (below(3) == 0)
            e->code = (int32_t)below(5000) - 10;
        break;
    }
    e->gateway_ns = (int64_t)rnd_u64();
    return e;
}

static void test_batch_bytes_equal_protobuf_c(void)
{
    buf_t a = BUF_INIT, b = BUF_INIT;
    for (int it = 0; it < 1500; it++) {
        size_t n = below(12);
        gw_event_t *evs[12];
        for (size_t i = 0; i < n; i++)
            evs[i] = rnd_event();
        char *gwid = rnd_cstr(20);
        gw_batch_t *bt = gw_batch_encode(NULL, evs, n, gwid);
        REQUIRE(bt);
        uint8_t *old = malloc(64 * 1024);
        size_t oldlen = pack_batch_pbc(evs, n, gwid, old);
        CHECK_EQ(bt->ev_len, oldlen);
        CHECK(bt->ev_len == oldlen && memcmp(bt->buf + GRPC_FRAME_HDR_LEN, old, oldlen) == 0);
        uint64_t seq = rnd_u64();
        bool complete = below(2);
        if (complete)
            gw_batch_set_complete(bt);
        gw_batch_set_seq(bt, seq);
        /* protobuf-c and our ws-api decoder read the same batch, seq and flag included */
        const uint8_t *m = bt->buf + GRPC_FRAME_HDR_LEN;
        size_t mlen = bt->wire_len - GRPC_FRAME_HDR_LEN;
        Wsgw__V1__Upstream *up = wsgw__v1__upstream__unpack(NULL, mlen, m);
        REQUIRE(up);
        CHECK(up->seq == seq);
        CHECK_EQ(up->presence_complete, complete);
        CHECK_EQ(up->n_events, n);
        wsgw__v1__upstream__free_unpacked(up, NULL);
        CHECK(pbcheck_upstream(m, mlen, &a, &b));
        /* rebuilt from the batch (a handback), the events encode to the same bytes: an Open's
         * rooms included */
        gw_event_t *head = NULL, *tail = NULL, *back[12];
        REQUIRE(gw_batch_events(bt, false, 0, &head, &tail) == (int)n);
        for (size_t i = 0; i < n; i++, head = head->next)
            back[i] = head;
        gw_batch_t *again = gw_batch_encode(NULL, back, n, gwid);
        REQUIRE(again);
        CHECK(again->ev_len == bt->ev_len - (complete ? 2 : 0) &&
              memcmp(again->buf + GRPC_FRAME_HDR_LEN, old, oldlen) == 0);
        for (size_t i = 0; i < n; i++) {
            CHECK_EQ(back[i]->d_len, evs[i]->d_len);
            gw_event_free(back[i]);
        }
        gw_batch_free(again);
        for (size_t i = 0; i < n; i++)
            gw_event_free(evs[i]);
        gw_batch_free(bt);
        free(old);
        free(gwid);
    }
    gw_batch_thread_cleanup();
    buf_free(&a);
    buf_free(&b);
}

/* ---- protobuf-c encode -> ours decode ------------------------------------------------------- */

static Wsgw__V1__Target *rnd_target(void)
{
    Wsgw__V1__Target *t = malloc(sizeof *t);
    wsgw__v1__target__init(t);
    t->n_conn_ids = below(5);
    t->conn_ids = malloc((t->n_conn_ids + 1) * sizeof *t->conn_ids);
    for (size_t i = 0; i < t->n_conn_ids; i++)
        t->conn_ids[i] = rnd_u64();
    t->n_user_ids = below(4);
    t->user_ids = malloc((t->n_user_ids + 1) * sizeof *t->user_ids);
    for (size_t i = 0; i < t->n_user_ids; i++)
        t->user_ids[i] = rnd_cstr(12);
    if (below(2))
        t->room = rnd_cstr(12);
    t->all = below(2);
    return t;
}

static void free_target(Wsgw__V1__Target *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n_user_ids; i++)
        free(t->user_ids[i]);
    free(t->user_ids);
    free(t->conn_ids);
    if (t->room != protobuf_c_empty_string)
        free(t->room);
    free(t);
}

static void test_downstream_from_protobuf_c(void)
{
    buf_t ours = BUF_INIT, theirs = BUF_INIT, want = BUF_INIT;
    for (int it = 0; it < 3000; it++) {
        Wsgw__V1__Downstream d = WSGW__V1__DOWNSTREAM__INIT;
        d.ack = rnd_u64();
        d.n_commands = below(6);
        d.commands = calloc(d.n_commands + 1, sizeof *d.commands);
        for (size_t i = 0; i < d.n_commands; i++) {
            Wsgw__V1__Command *c = calloc(1, sizeof *c);
            wsgw__v1__command__init(c);
            d.commands[i] = c;
            switch (below(6)) {
            case 0:
                c->kind_case = WSGW__V1__COMMAND__KIND_SEND;
                c->send = calloc(1, sizeof *c->send);
                wsgw__v1__send__init(c->send);
                c->send->target = below(5) ? rnd_target() : NULL;
                c->send->payload.data = malloc(200);
                c->send->payload.len = rnd_bytes(c->send->payload.data, 200, true);
                c->send->binary = below(2);
                c->send->api_ns = (int64_t)rnd_u64();
                if (below(2)) { /* history fields (wsgw.v1.json) */
                    c->send->channel = rnd_cstr(16);
                    c->send->offset = rnd_u64();
                    c->send->epoch = rnd_cstr(10);
                }
                break;
            case 5: {
                c->kind_case = WSGW__V1__COMMAND__KIND_RECOVERED;
                Wsgw__V1__Recovered *r = calloc(1, sizeof *r);
                wsgw__v1__recovered__init(r);
                c->recovered = r;
                r->conn_id = rnd_u64();
                r->channel = rnd_cstr(16);
                r->id = (uint32_t)rnd();
                r->n_publications = below(4);
                r->publications = calloc(r->n_publications + 1, sizeof *r->publications);
                for (size_t j = 0; j < r->n_publications; j++) {
                    Wsgw__V1__Publication *pb = calloc(1, sizeof *pb);
                    wsgw__v1__publication__init(pb);
                    pb->payload.data = malloc(50);
                    pb->payload.len = rnd_bytes(pb->payload.data, 50, true);
                    pb->binary = below(2);
                    pb->offset = rnd_u64();
                    r->publications[j] = pb;
                }
                r->more = below(2);
                r->offset = rnd_u64();
                r->epoch = rnd_cstr(10);
                r->recovered = below(2);
                break;
            }
            case 1:
                c->kind_case = WSGW__V1__COMMAND__KIND_KICK;
                c->kick = calloc(1, sizeof *c->kick);
                wsgw__v1__kick__init(c->kick);
                c->kick->target = below(5) ? rnd_target() : NULL;
                c->kick->code = (int32_t)rnd();
                c->kick->reason = rnd_cstr(20);
                break;
            case 2:
                c->kind_case = WSGW__V1__COMMAND__KIND_JOIN;
                c->join = calloc(1, sizeof *c->join);
                wsgw__v1__join__init(c->join);
                c->join->conn_id = rnd_u64();
                c->join->room = rnd_cstr(12);
                break;
            case 3:
                c->kind_case = WSGW__V1__COMMAND__KIND_LEAVE;
                c->leave = calloc(1, sizeof *c->leave);
                wsgw__v1__leave__init(c->leave);
                c->leave->conn_id = rnd_u64();
                c->leave->room = rnd_cstr(12);
                break;
            default:
                break; /* no kind */
            }
        }
        size_t n = wsgw__v1__downstream__get_packed_size(&d);
        uint8_t *m = malloc(n + 1);
        wsgw__v1__downstream__pack(&d, m);
        if (!pbcheck_downstream(m, n, &ours, &theirs))
            show("downstream", &ours, &theirs);
        CHECK(same(&ours, &theirs));
        buf_reset(&want);
        pbcheck_dump_downstream(&d, &want); /* what was meant */
        CHECK(same(&ours, &want));
        for (size_t i = 0; i < d.n_commands; i++) {
            Wsgw__V1__Command *c = d.commands[i];
            if (c->kind_case == WSGW__V1__COMMAND__KIND_SEND) {
                free_target(c->send->target);
                free(c->send->payload.data);
                if (c->send->channel != protobuf_c_empty_string)
                    free(c->send->channel);
                if (c->send->epoch != protobuf_c_empty_string)
                    free(c->send->epoch);
                free(c->send);
            } else if (c->kind_case == WSGW__V1__COMMAND__KIND_KICK) {
                free_target(c->kick->target);
                free(c->kick->reason);
                free(c->kick);
            } else if (c->kind_case == WSGW__V1__COMMAND__KIND_JOIN) {
                free(c->join->room);
                free(c->join);
            } else if (c->kind_case == WSGW__V1__COMMAND__KIND_LEAVE) {
                free(c->leave->room);
                free(c->leave);
            } else if (c->kind_case == WSGW__V1__COMMAND__KIND_RECOVERED) {
                Wsgw__V1__Recovered *r = c->recovered;
                for (size_t j = 0; j < r->n_publications; j++) {
                    free(r->publications[j]->payload.data);
                    free(r->publications[j]);
                }
                free(r->publications);
                free(r->channel);
                free(r->epoch);
                free(r);
            }
            free(c);
        }
        free(d.commands);
        free(m);
    }
    buf_free(&ours);
    buf_free(&theirs);
    buf_free(&want);
}

static void test_upstream_from_protobuf_c(void)
{
    buf_t ours = BUF_INIT, theirs = BUF_INIT, want = BUF_INIT;
    for (int it = 0; it < 3000; it++) {
        Wsgw__V1__Upstream u = WSGW__V1__UPSTREAM__INIT;
        u.seq = rnd_u64();
        u.presence_complete = below(2);
        u.n_events = below(6);
        u.events = calloc(u.n_events + 1, sizeof *u.events);
        for (size_t i = 0; i < u.n_events; i++) {
            Wsgw__V1__Event *e = calloc(1, sizeof *e);
            wsgw__v1__event__init(e);
            u.events[i] = e;
            e->conn_id = rnd_u64();
            e->user_id = rnd_cstr(12);
            e->gateway_ns = (int64_t)rnd_u64();
            switch (below(5)) {
            case 4:
                e->kind_case = WSGW__V1__EVENT__KIND_RECOVER;
                e->recover = calloc(1, sizeof *e->recover);
                wsgw__v1__recover__init(e->recover);
                e->recover->channel = rnd_cstr(20);
                e->recover->offset = rnd_u64();
                e->recover->epoch = rnd_cstr(10);
                e->recover->id = (uint32_t)rnd();
                break;
            case 0:
                e->kind_case = WSGW__V1__EVENT__KIND_OPEN;
                e->open = calloc(1, sizeof *e->open);
                wsgw__v1__open__init(e->open);
                e->open->remote_addr = rnd_cstr(20);
                e->open->path = rnd_cstr(20);
                e->open->query = rnd_cstr(20);
                e->open->gateway_id = rnd_cstr(20);
                e->open->n_rooms = below(3) ? 0 : below(6);
                e->open->rooms = calloc(e->open->n_rooms + 1, sizeof *e->open->rooms);
                for (size_t k = 0; k < e->open->n_rooms; k++)
                    e->open->rooms[k] = rnd_cstr(20); /* (empty ones too: sent all the same) */
                break;
            case 1:
                e->kind_case = WSGW__V1__EVENT__KIND_MESSAGE;
                e->message = calloc(1, sizeof *e->message);
                wsgw__v1__message__init(e->message);
                e->message->payload.data = malloc(200);
                e->message->payload.len = rnd_bytes(e->message->payload.data, 200, true);
                e->message->binary = below(2);
                e->message->seq = rnd_u64();
                break;
            case 2:
                e->kind_case = WSGW__V1__EVENT__KIND_CLOSE;
                e->close = calloc(1, sizeof *e->close);
                wsgw__v1__close__init(e->close);
                e->close->code = (int32_t)rnd();
                e->close->reason = rnd_cstr(20);
                break;
            default:
                break;
            }
        }
        size_t n = wsgw__v1__upstream__get_packed_size(&u);
        uint8_t *m = malloc(n + 1);
        wsgw__v1__upstream__pack(&u, m);
        if (!pbcheck_upstream(m, n, &ours, &theirs))
            show("upstream", &ours, &theirs);
        CHECK(same(&ours, &theirs));
        buf_reset(&want);
        pbcheck_dump_upstream(&u, &want);
        CHECK(same(&ours, &want));
        for (size_t i = 0; i < u.n_events; i++) {
            Wsgw__V1__Event *e = u.events[i];
            free(e->user_id);
            if (e->kind_case == WSGW__V1__EVENT__KIND_OPEN) {
                free(e->open->remote_addr);
                free(e->open->path);
                free(e->open->query);
                free(e->open->gateway_id);
                for (size_t k = 0; k < e->open->n_rooms; k++)
                    free(e->open->rooms[k]);
                free(e->open->rooms);
                free(e->open);
            } else if (e->kind_case == WSGW__V1__EVENT__KIND_MESSAGE) {
                free(e->message->payload.data);
                free(e->message);
            } else if (e->kind_case == WSGW__V1__EVENT__KIND_CLOSE) {
                free(e->close->reason);
                free(e->close);
            } else if (e->kind_case == WSGW__V1__EVENT__KIND_RECOVER) {
                free(e->recover->channel);
                free(e->recover->epoch);
                free(e->recover);
            }
            free(e);
        }
        free(u.events);
        free(m);
    }
    buf_free(&ours);
    buf_free(&theirs);
    buf_free(&want);
}

/* ---- edge cases of the wire format ---------------------------------------------------------- */

typedef struct {
    const char *name;
    const char *bytes; /* as a C literal; len below */
    size_t len;
    int down, up;      /* expected: 1 accepted, 0 refused, -1 whatever (both must agree) */
} edge_t;

#define E(name, lit, down, up) {name, lit, sizeof(lit) - 1, down, up}

static const edge_t edges[] = {
    E("empty", "", 1, 1),
    E("unknown varint field", "\x78\x05", 1, 1),
    E("unknown 64-bit field", "\x79\x01\x02\x03\x04\x05\x06\x07\x08", 1, 1),
    E("unknown 32-bit field", "\x7d\x01\x02\x03\x04", 1, 1),
    E("unknown length field", "\x7a\x02hi", 1, 1),
    E("group start", "\x7b", 0, 0),
    E("group end", "\x7c", 0, 0),
    E("wire type 6", "\x7e\x00", 0, 0),
    E("wire type 7", "\x7f\x00", 0, 0),
    E("field 0", "\x00\x01", 0, 0),
    E("field 0 by a two-byte key", "\x80\x00\x01", 1, 1), /* protobuf-c checks the first byte */
    E("two-byte key of field 2", "\x90\x00\x05", 1, 1),
    E("five-byte key", "\xf8\xff\xff\xff\x0f\x01", 1, 1),
    E("six-byte key", "\xf8\xff\xff\xff\xff\x01\x01", 0, 0),
    E("truncated key", "\xf8", 0, 0),
    E("ten-byte varint", "\x10\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 1, 1),
    E("ten-byte varint, high bits", "\x10\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f", 1, 1),
    E("eleven-byte varint", "\x10\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 0, 0),
    E("truncated varint", "\x10\xff", 0, 0),
    E("varint field as length", "\x12\x00", 0, 0),
    E("length field as varint", "\x08\x01", 0, 0),
    E("truncated length", "\x0a\x05\x00", 0, 0),
    E("five-byte length", "\x0a\x80\x80\x80\x80\x00", 1, 1),
    E("six-byte length", "\x0a\x80\x80\x80\x80\x80\x00", 0, 0),
    E("huge length", "\x0a\xff\xff\xff\xff\x0f", 0, 0),
    E("two empty commands / events", "\x0a\x00\x0a\x00", 1, 1),
    /* Downstream: a Send with its target's ids unpacked, packed, and both */
    E("send, ids unpacked", "\x0a\x08\x0a\x06\x0a\x04\x08\x01\x08\x02", 1, 0),
    E("send, ids packed", "\x0a\x07\x0a\x05\x0a\x03\x0a\x01\x07", 1, -1),
    E("send, ids mixed", "\x0a\x0a\x0a\x08\x0a\x06\x0a\x02\x01\x02\x08\x03", 1, -1),
    E("send, packed ids truncated", "\x0a\x07\x0a\x05\x0a\x03\x0a\x01\x80", 0, -1),
    E("send, ids as 64-bit",
      "\x0a\x0d\x0a\x0b\x0a\x09\x09\x01\x02\x03\x04\x05\x06\x07\x08", 0, -1),
    /* two targets merge: ids concatenate, the later room wins, `all` is the later one's */
    E("send, two targets",
      "\x0a\x14\x0a\x12\x0a\x06\x08\x01\x20\x01\x1a\x00\x0a\x08\x08\x02\x1a\x02r2\x20\x00", 1, -1),
    E("send, two targets, all only in the first",
      "\x0a\x0e\x0a\x0c\x0a\x04\x08\x01\x20\x01\x0a\x04\x1a\x02r2", 1, -1),
    E("send, bool of wire type 2", "\x0a\x06\x0a\x04\x1a\x02\x00\x00", 1, -1),
    E("send, bool of wire type 2, empty", "\x0a\x04\x0a\x02\x1a\x00", 1, -1),
    E("send, bool of 64-bit", "\x0a\x0b\x0a\x09\x19\x00\x00\x00\x00\x00\x00\x00\x00", 1, -1),
    E("send, bool ten bytes, value bits past 64",
      "\x0a\x0d\x0a\x0b\x18\x80\x80\x80\x80\x80\x80\x80\x80\x80\x02", 1, -1),
    E("send, api_ns wrong wire type", "\x0a\x04\x0a\x02\x22\x00", 0, -1),
    E("command oneof twice: send then kick", "\x0a\x08\x0a\x02\x12\x00\x12\x02\x10\x05", 1, -1),
    E("command oneof twice: bad first member", "\x0a\x08\x0a\x02\x22\x00\x12\x02\x10\x05", 0, -1),
    E("join with NUL in room", "\x0a\x09\x1a\x07\x08\x05\x12\x03" "a\x00" "b", 1, -1),
    E("kick negative code",
      "\x0a\x0d\x12\x0b\x10\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 1, -1),
    E("ack twice, last wins", "\x10\x01\x10\x02", 1, 1),
    /* Upstream: event oneofs, bools, strings */
    E("event open then message", "\x0a\x08\x52\x02\x0a\x00\x5a\x02\x18\x07", 1, 1),
    E("event message twice: no merge", "\x0a\x0a\x5a\x04\x0a\x02hi\x5a\x02\x18\x07", 1, 1),
    E("event close negative code", "\x0a\x0d\x62\x0b\x08\xfe\xff\xff\xff\xff\xff\xff\xff\xff\x01", 1, 1),
    E("event user with NUL", "\x0a\x05\x12\x03u\x00v", -1, 1),
    E("message binary as length", "\x0a\x06\x5a\x04\x12\x02\x00\x01", 1, 1),
    E("message payload as varint", "\x0a\x04\x5a\x02\x08\x01", 1, 0),
    E("presence_complete as 32-bit", "\x1d\x00\x00\x00\x01", 1, 1),
    E("event conn_id as length", "\x0a\x04\x0a\x02\x00\x00", 0, 0),
    /* wsgw.v1.json's history fields */
    E("recover offset as length", "\x0a\x04\x6a\x02\x12\x00", -1, 0),
    E("recover id ten bytes", "\x0a\x0d\x6a\x0b\x20\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", -1, 1),
    E("recover then message", "\x0a\x08\x6a\x02\x0a\x00\x5a\x02\x18\x07", -1, 1),
    E("open with an unknown field 17", "\x0a\x07\x52\x05\x8a\x01\x02hi", -1, 1),
    E("send channel as varint", "\x0a\x04\x0a\x02\x28\x01", 0, -1),
    E("send offset as length", "\x0a\x04\x0a\x02\x32\x00", 0, -1),
    E("recovered, publication payload as varint", "\x0a\x06\x2a\x04\x22\x02\x08\x01", 0, -1),
    E("recovered then send", "\x0a\x08\x2a\x02\x08\x05\x0a\x02\x18\x01", 1, -1),
    E("send then recovered", "\x0a\x0a\x0a\x02\x18\x01\x2a\x04\x08\x05\x30\x01", 1, -1),
};

static void test_edge_cases(void)
{
    buf_t a = BUF_INIT, b = BUF_INIT;
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) {
        const edge_t *e = &edges[i];
        const uint8_t *m = (const uint8_t *)e->bytes;
        bool ok = pbcheck_downstream(m, e->len, &a, &b);
        if (!ok) {
            fprintf(stderr, "downstream edge case \"%s\":\n", e->name);
            show("  ", &a, &b);
        }
        CHECK(ok);
        buf_append(&a, "", 1);
        if (e->down >= 0 && (strcmp((const char *)a.data, "REFUSED") != 0) != e->down) {
            fprintf(stderr, "downstream edge case \"%s\": %s\n", e->name, (const char *)a.data);
            CHECK(0);
        }
        ok = pbcheck_upstream(m, e->len, &a, &b);
        if (!ok) {
            fprintf(stderr, "upstream edge case \"%s\":\n", e->name);
            show("  ", &a, &b);
        }
        CHECK(ok);
        buf_append(&a, "", 1);
        if (e->up >= 0 && (strcmp((const char *)a.data, "REFUSED") != 0) != e->up) {
            fprintf(stderr, "upstream edge case \"%s\": %s\n", e->name, (const char *)a.data);
            CHECK(0);
        }
    }
    buf_free(&a);
    buf_free(&b);
}

/* ---- random mutations of valid messages ------------------------------------------------------ */

static size_t mutate(uint8_t *m, size_t n, size_t cap)
{
    int k = 1 + (int)below(4);
    while (k--) {
        switch (below(6)) {
        case 0: /* flip a byte */
            if (n)
                m[below((uint32_t)n)] ^= (uint8_t)(1 + below(255));
            break;
        case 1: /* set a byte to an interesting value */
            if (n) {
                static const uint8_t v[] = {0, 1, 0x7f, 0x80, 0xff, 0x0a, 0x12, 0x08, 0x5a};
                m[below((uint32_t)n)] = v[below(sizeof v)];
            }
            break;
        case 2: /* insert a byte */
            if (n < cap) {
                size_t at = below((uint32_t)n + 1);
                memmove(m + at + 1, m + at, n - at);
                m[at] = (uint8_t)rnd();
                n++;
            }
            break;
        case 3: /* delete a byte */
            if (n) {
                size_t at = below((uint32_t)n);
                memmove(m + at, m + at + 1, n - at - 1);
                n--;
            }
            break;
        case 4: /* truncate */
            n = below((uint32_t)n + 1);
            break;
        default: /* duplicate a slice at the end */
            if (n) {
                size_t at = below((uint32_t)n), len = 1 + below((uint32_t)(n - at));
                if (n + len <= cap) {
                    memmove(m + n, m + at, len);
                    n += len;
                }
            }
            break;
        }
    }
    return n;
}

static void test_mutations_agree(void)
{
    buf_t a = BUF_INIT, b = BUF_INIT;
    uint8_t *m = malloc(8192);
    size_t refused = 0, total = 0;
    for (int it = 0; it < 60000; it++) {
        size_t n;
        if (it & 1) { /* a valid Upstream batch from our encoder */
            gw_event_t *evs[4];
            size_t ne = 1 + below(4);
            for (size_t i = 0; i < ne; i++)
                evs[i] = rnd_event();
            gw_batch_t *bt = gw_batch_encode(NULL, evs, ne, "gw-1");
            gw_batch_set_seq(bt, rnd_u64());
            n = bt->wire_len - GRPC_FRAME_HDR_LEN;
            memcpy(m, bt->buf + GRPC_FRAME_HDR_LEN, n);
            gw_batch_free(bt);
            for (size_t i = 0; i < ne; i++)
                gw_event_free(evs[i]);
        } else { /* a valid Downstream of Sends from ours, plus a hand-made Target */
            buf_t d = BUF_INIT;
            uint8_t p[64];
            size_t nc = 1 + below(3);
            for (size_t i = 0; i < nc; i++)
                downstream_append_send1(&d, rnd_u64(), p, rnd_bytes(p, 60, true), below(2),
                                        (int64_t)rnd_u64());
            static const uint8_t extra[] = {0x0a, 0x14, 0x0a, 0x12, 0x0a, 0x06, 0x08, 0x01, 0x20,
                                            0x01, 0x1a, 0x00, 0x0a, 0x08, 0x08, 0x02, 0x1a,
                                            0x02, 'r', '2', 0x20, 0x00};
            buf_append(&d, extra, sizeof extra);
            downstream_finish(&d, rnd_u64());
            n = d.len - GRPC_FRAME_HDR_LEN;
            memcpy(m, d.data + GRPC_FRAME_HDR_LEN, n);
            buf_free(&d);
        }
        n = mutate(m, n, 8192);
        bool ok = pbcheck_downstream(m, n, &a, &b);
        if (!ok)
            show("mutated downstream", &a, &b);
        CHECK(ok);
        if (!(it & 1)) /* counted for the decoder of the kind mutated */
            refused += a.len == 7 && memcmp(a.data, "REFUSED", 7) == 0;
        ok = pbcheck_upstream(m, n, &a, &b);
        if (!ok)
            show("mutated upstream", &a, &b);
        CHECK(ok);
        if (it & 1)
            refused += a.len == 7 && memcmp(a.data, "REFUSED", 7) == 0;
        total++;
        if (t__case_failed)
            break;
    }
    /* both verdicts occur: the mutations are neither all fatal nor all harmless */
    if (!(refused > total / 50 && refused < total - total / 50))
        fprintf(stderr, "refused %zu of %zu\n", refused, total);
    CHECK(refused > total / 50 && refused < total - total / 50);
    gw_batch_thread_cleanup();
    free(m);
    buf_free(&a);
    buf_free(&b);
}

int main(void)
{
    RUN(test_send1_bytes_equal_protobuf_c);
    RUN(test_batch_bytes_equal_protobuf_c);
    RUN(test_downstream_from_protobuf_c);
    RUN(test_upstream_from_protobuf_c);
    RUN(test_edge_cases);
    RUN(test_mutations_agree);
    return TEST_REPORT();
}
