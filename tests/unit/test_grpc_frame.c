/* test_grpc_frame.c: incremental gRPC framing: split, merged, oversize, truncated, flags. */
#include <stdlib.h>

#include "buf.h"
#include "grpc_frame.h"
#include "test.h"

typedef struct {
    int n;
    size_t lens[64];
    buf_t all; /* concatenated payloads */
} sink_t;

static int on_msg(void *ud, const uint8_t *msg, size_t len)
{
    sink_t *s = ud;
    if (s->n < 64)
        s->lens[s->n] = len;
    s->n++;
    buf_append(&s->all, msg, len);
    return 0;
}

static void frame(buf_t *b, const char *payload, size_t len)
{
    uint8_t h[GRPC_FRAME_HDR_LEN];
    grpc_frame_header(h, (uint32_t)len);
    buf_append(b, h, sizeof h);
    buf_append(b, payload, len);
}

static void test_header_encoding(void)
{
    uint8_t h[5];
    grpc_frame_header(h, 0x01020304);
    CHECK_EQ(h[0], 0);
    CHECK_EQ(h[1], 1);
    CHECK_EQ(h[4], 4);
}

static void test_merged_messages_in_one_chunk(void)
{
    buf_t in = BUF_INIT;
    frame(&in, "hello", 5);
    frame(&in, "", 0);
    frame(&in, "world!", 6);
    grpc_dec_t d;
    grpc_dec_init(&d, 100);
    sink_t s = {0};
    CHECK_EQ(grpc_dec_feed(&d, in.data, in.len, on_msg, &s), 0);
    CHECK_EQ(s.n, 3);
    CHECK_EQ(s.lens[0], 5);
    CHECK_EQ(s.lens[1], 0);
    CHECK_EQ(s.lens[2], 6);
    CHECK(s.all.len == 11 && memcmp(s.all.data, "helloworld!", 11) == 0);
    CHECK(!grpc_dec_partial(&d));
    grpc_dec_free(&d);
    buf_free(&in);
    buf_free(&s.all);
}

/* Every split point, and byte-by-byte: the same messages come out. */
static void test_split_at_every_offset(void)
{
    buf_t in = BUF_INIT;
    char big[3000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)('a' + i % 26);
    frame(&in, "abc", 3);
    frame(&in, big, sizeof big);
    frame(&in, "z", 1);
    for (size_t cut = 0; cut <= in.len; cut++) {
        grpc_dec_t d;
        grpc_dec_init(&d, 4096);
        sink_t s = {0};
        CHECK_EQ(grpc_dec_feed(&d, in.data, cut, on_msg, &s), 0);
        CHECK_EQ(grpc_dec_feed(&d, in.data + cut, in.len - cut, on_msg, &s), 0);
        CHECK_EQ(s.n, 3);
        CHECK_EQ(s.all.len, 3 + sizeof big + 1);
        CHECK(memcmp(s.all.data + 3, big, sizeof big) == 0);
        grpc_dec_free(&d);
        buf_free(&s.all);
    }
    grpc_dec_t d;
    grpc_dec_init(&d, 4096);
    sink_t s = {0};
    for (size_t i = 0; i < in.len; i++)
        CHECK_EQ(grpc_dec_feed(&d, in.data + i, 1, on_msg, &s), 0);
    CHECK_EQ(s.n, 3);
    CHECK(s.all.len == 3 + sizeof big + 1 && memcmp(s.all.data + 3, big, sizeof big) == 0);
    grpc_dec_free(&d);
    buf_free(&s.all);
    buf_free(&in);
}

static void test_oversize_rejected_and_sticky(void)
{
    buf_t in = BUF_INIT;
    char p[101] = {0};
    frame(&in, "ok", 2);
    frame(&in, p, sizeof p);
    grpc_dec_t d;
    grpc_dec_init(&d, 100);
    sink_t s = {0};
    CHECK_EQ(grpc_dec_feed(&d, in.data, in.len, on_msg, &s), GRPC_FRAME_ERR_TOO_LARGE);
    CHECK_EQ(s.n, 1); /* the message before the bad one was delivered */
    CHECK_EQ(grpc_dec_feed(&d, in.data, 7, on_msg, &s), GRPC_FRAME_ERR_TOO_LARGE);
    CHECK_EQ(s.n, 1);
    CHECK(strstr(grpc_frame_strerror(GRPC_FRAME_ERR_TOO_LARGE), "larger") != NULL);
    grpc_dec_free(&d);
    /* the oversize header split across two feeds is caught too */
    grpc_dec_init(&d, 100);
    CHECK_EQ(grpc_dec_feed(&d, in.data + 7, 3, on_msg, &s), 0);
    CHECK_EQ(grpc_dec_feed(&d, in.data + 10, 2, on_msg, &s), GRPC_FRAME_ERR_TOO_LARGE);
    grpc_dec_free(&d);
    buf_free(&in);
    buf_free(&s.all);
}

static void test_truncated_is_partial(void)
{
    buf_t in = BUF_INIT;
    frame(&in, "0123456789", 10);
    grpc_dec_t d;
    grpc_dec_init(&d, 100);
    sink_t s = {0};
    CHECK_EQ(grpc_dec_feed(&d, in.data, in.len - 1, on_msg, &s), 0);
    CHECK_EQ(s.n, 0);
    CHECK(grpc_dec_partial(&d));
    grpc_dec_free(&d);
    grpc_dec_init(&d, 100);
    CHECK_EQ(grpc_dec_feed(&d, in.data, 2, on_msg, &s), 0); /* header cut */
    CHECK(grpc_dec_partial(&d));
    grpc_dec_free(&d);
    buf_free(&in);
    buf_free(&s.all);
}

static void test_flag_byte(void)
{
    uint8_t comp[6] = {1, 0, 0, 0, 1, 'x'};
    uint8_t bad[6] = {7, 0, 0, 0, 1, 'x'};
    grpc_dec_t d;
    sink_t s = {0};
    grpc_dec_init(&d, 100);
    CHECK_EQ(grpc_dec_feed(&d, comp, sizeof comp, on_msg, &s), GRPC_FRAME_ERR_COMPRESSED);
    grpc_dec_free(&d);
    grpc_dec_init(&d, 100);
    CHECK_EQ(grpc_dec_feed(&d, bad, sizeof bad, on_msg, &s), GRPC_FRAME_ERR_BAD_FLAG);
    grpc_dec_free(&d);
    CHECK_EQ(s.n, 0);
}

static int stop_cb(void *ud, const uint8_t *msg, size_t len)
{
    (void)msg;
    (void)len;
    ++*(int *)ud;
    return -42;
}

static void test_callback_error_propagates(void)
{
    buf_t in = BUF_INIT;
    frame(&in, "a", 1);
    frame(&in, "b", 1);
    grpc_dec_t d;
    grpc_dec_init(&d, 100);
    int calls = 0;
    CHECK_EQ(grpc_dec_feed(&d, in.data, in.len, stop_cb, &calls), -42);
    CHECK_EQ(calls, 1);
    grpc_dec_free(&d);
    buf_free(&in);
}

static void test_data_frame_len(void)
{
    CHECK_EQ(grpc_data_frame_len(65535, 1 << 20, 16384, 262144), 16384); /* peer's max */
    CHECK_EQ(grpc_data_frame_len(1 << 20, 300000, 1 << 24, 262144), 262144); /* ours */
    CHECK_EQ(grpc_data_frame_len(1000, 5000, 16384, 262144), 1000);          /* stream window */
    CHECK_EQ(grpc_data_frame_len(5000, 700, 16384, 262144), 700);            /* conn window */
    CHECK_EQ(grpc_data_frame_len(0, 5000, 16384, 262144), 1);
    CHECK_EQ(grpc_data_frame_len(-10, 5000, 16384, 262144), 1); /* (a window can go negative) */
}

/* Feeds msgs (each a message of lens[i] bytes) in 1 000-byte chunks; returns the largest
 * capacity the decoder reached and how often it reallocated (capacity changes). */
static void feed_chunked(grpc_dec_t *d, const size_t *lens, int n, size_t *max_cap, int *grows)
{
    buf_t in = BUF_INIT;
    char *body = malloc(300000);
    for (size_t i = 0; i < 300000; i++)
        body[i] = (char)i;
    for (int i = 0; i < n; i++)
        frame(&in, body, lens[i]);
    sink_t s = {0};
    size_t cap = d->cap;
    *max_cap = 0;
    *grows = 0;
    for (size_t off = 0; off < in.len; off += 1000) {
        size_t k = in.len - off < 1000 ? in.len - off : 1000;
        REQUIRE(grpc_dec_feed(d, in.data + off, k, on_msg, &s) == 0);
        if (d->cap != cap) {
            (*grows)++;
            cap = d->cap;
        }
        if (d->cap > *max_cap)
            *max_cap = d->cap;
    }
    CHECK_EQ(s.n, n);
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += lens[i];
    CHECK_EQ(s.all.len, total);
    buf_free(&s.all);
    buf_free(&in);
    free(body);
}

static void test_trusted_peer_buffers_whole_and_keeps(void)
{
    const size_t lens[] = {250000, 200000, 250000, 100};
    size_t max_cap;
    int grows;
    grpc_dec_t d;
    /* untrusted (ws-api's side): grows with what arrives, in steps, and lets big buffers go */
    grpc_dec_init(&d, 1 << 20);
    feed_chunked(&d, lens, 4, &max_cap, &grows);
    CHECK(grows >= 3 * 6); /* 4 k, 8 k, ... then 64 KiB steps, for each big message */
    CHECK_EQ(max_cap, 250000);
    CHECK_EQ(d.cap, 0);
    grpc_dec_free(&d);
    /* trusted with 256 KiB: each body whole at once; the buffer is kept and reused */
    grpc_dec_init(&d, 1 << 20);
    grpc_dec_trust(&d, 256 << 10);
    feed_chunked(&d, lens, 4, &max_cap, &grows);
    CHECK_EQ(grows, 1); /* 250 000 at the first message; the rest fit */
    CHECK_EQ(d.cap, 250000);
    /* past the trust: grows as without it */
    const size_t big[] = {300000};
    feed_chunked(&d, big, 1, &max_cap, &grows);
    CHECK(grows >= 2);
    CHECK_EQ(d.cap, 0); /* over the trust: not kept */
    grpc_dec_free(&d);
}

/* grpc_dec_keep (ws-api's Exchange streams): big buffers grow with what arrives as for any
 * peer, but stay between messages up to the keep, so a run of batches reallocates only while
 * the largest grows; grpc_dec_shrink lets the kept buffer go, never a message in progress. */
static void test_keep_and_shrink(void)
{
    const size_t lens[] = {250000, 200000, 250000, 100};
    size_t max_cap;
    int grows;
    grpc_dec_t d;
    grpc_dec_init(&d, 1 << 20);
    grpc_dec_keep(&d, 512 << 10);
    feed_chunked(&d, lens, 4, &max_cap, &grows);
    CHECK(grows >= 6);  /* the first message: 4 k, 8 k, ... then 64 KiB steps */
    CHECK(grows <= 12); /* none after it: the buffer stayed */
    CHECK_EQ(max_cap, 250000);
    CHECK_EQ(d.cap, 250000);
    size_t again = d.cap;
    feed_chunked(&d, lens, 4, &max_cap, &grows);
    CHECK_EQ(grows, 0);
    CHECK_EQ(d.cap, again);
    CHECK_EQ(grpc_dec_shrink(&d), 250000);
    CHECK_EQ(d.cap, 0);
    CHECK(d.buf == NULL);
    CHECK_EQ(grpc_dec_shrink(&d), 0);
    /* half a message in: shrink keeps its bytes, and the message still comes out whole */
    buf_t in = BUF_INIT;
    char body[5000];
    memset(body, 'k', sizeof body);
    frame(&in, body, sizeof body);
    sink_t s = {0};
    CHECK_EQ(grpc_dec_feed(&d, in.data, 2000, on_msg, &s), 0);
    size_t held = d.cap;
    CHECK(held > 0);
    CHECK_EQ(grpc_dec_shrink(&d), 0);
    CHECK_EQ(d.cap, held);
    CHECK_EQ(grpc_dec_feed(&d, in.data + 2000, in.len - 2000, on_msg, &s), 0);
    CHECK_EQ(s.n, 1);
    CHECK(s.all.len == sizeof body && memcmp(s.all.data, body, sizeof body) == 0);
    /* over the keep: let go after the message, as without it */
    grpc_dec_keep(&d, 100 << 10);
    feed_chunked(&d, lens, 1, &max_cap, &grows);
    CHECK_EQ(d.cap, 0);
    grpc_dec_free(&d);
    buf_free(&in);
    buf_free(&s.all);
}

int main(void)
{
    RUN(test_header_encoding);
    RUN(test_merged_messages_in_one_chunk);
    RUN(test_split_at_every_offset);
    RUN(test_oversize_rejected_and_sticky);
    RUN(test_truncated_is_partial);
    RUN(test_flag_byte);
    RUN(test_callback_error_propagates);
    RUN(test_data_frame_len);
    RUN(test_trusted_peer_buffers_whole_and_keeps);
    RUN(test_keep_and_shrink);
    return TEST_REPORT();
}
