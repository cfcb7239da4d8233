/* test_bench_ws_frame.c: RFC 6455 framing of ws-bench: header lengths, masking (§5.3),
 * incremental parsing split at every byte, fragmentation with interleaved control frames
 * (§5.4), protocol errors, close bodies (§5.5.1), message prefixes. */
#include <stdlib.h>

#include "test.h"
#include "ws_frame.h"

/* What the parser reported, flattened. */
typedef struct rec {
    char log[4096];
    size_t loglen;
    uint8_t data[80000];
    size_t datalen;
    uint8_t prefix[WS_MAX_PREFIX];
    size_t prefix_len;
    int stop_on_control;
} rec_t;

static void logf_(rec_t *r, const char *s)
{
    size_t n = strlen(s);
    if (r->loglen + n < sizeof r->log) {
        memcpy(r->log + r->loglen, s, n + 1);
        r->loglen += n;
    }
}

static int on_begin(void *ctx, int op, const uint8_t *p, size_t n)
{
    rec_t *r = ctx;
    char b[32];
    snprintf(b, sizeof b, "B%d/%zu ", op, n);
    logf_(r, b);
    memcpy(r->prefix, p, n);
    r->prefix_len = n;
    return 0;
}

static int on_data(void *ctx, const uint8_t *p, size_t n)
{
    rec_t *r = ctx;
    if (r->datalen + n <= sizeof r->data) {
        memcpy(r->data + r->datalen, p, n);
        r->datalen += n;
    }
    return 0;
}

static int on_end(void *ctx, uint64_t len)
{
    rec_t *r = ctx;
    char b[32];
    snprintf(b, sizeof b, "E%llu ", (unsigned long long)len);
    logf_(r, b);
    return 0;
}

static int on_control(void *ctx, int op, const uint8_t *p, size_t n)
{
    rec_t *r = ctx;
    char b[200];
    snprintf(b, sizeof b, "C%d:%.*s ", op, (int)n, (const char *)p);
    logf_(r, b);
    return r->stop_on_control;
}

static const ws_rx_cb_t cb = {on_begin, on_data, on_end, on_control};

/* Feeds buf in pieces of `step` bytes (0: all at once) to a fresh parser; returns the rv of
 * the last feed. The input is copied (the parser unmasks in place). */
static int feed(rec_t *r, const uint8_t *buf, size_t len, size_t step, int masked, int prefix)
{
    memset(r, 0, sizeof *r);
    ws_rx_t rx = {0};
    rx.expect_masked = masked;
    rx.want_prefix = (uint8_t)prefix;
    uint8_t *copy = malloc(len ? len : 1);
    memcpy(copy, buf, len);
    int rv = WS_OK;
    size_t off = 0;
    if (!step)
        step = len ? len : 1;
    while (off < len && rv == WS_OK) {
        size_t n = len - off < step ? len - off : step;
        rv = ws_rx_feed(&rx, copy + off, n, &cb, r);
        off += n;
    }
    CHECK(rv != WS_OK || rx.hold == NULL); /* complete input: nothing held */
    ws_rx_free(&rx);
    free(copy);
    return rv;
}

static void test_header_lengths(void)
{
    uint8_t out[70000];
    uint8_t payload[66000];
    memset(payload, 'a', sizeof payload);
    CHECK_EQ(ws_frame_encode(out, sizeof out, WS_OP_TEXT, true, payload, 5, NULL), 7);
    CHECK_EQ(out[0], 0x81);
    CHECK_EQ(out[1], 5);
    CHECK_EQ(ws_frame_encode(out, sizeof out, WS_OP_BINARY, true, payload, 125, NULL), 127);
    CHECK_EQ(out[1], 125);
    CHECK_EQ(ws_frame_encode(out, sizeof out, WS_OP_BINARY, true, payload, 126, NULL), 130);
    CHECK_EQ(out[1], 126);
    CHECK_EQ((out[2] << 8) | out[3], 126);
    CHECK_EQ(ws_frame_encode(out, sizeof out, WS_OP_BINARY, false, payload, 65535, NULL),
             65539);
    CHECK_EQ(out[0], 0x02); /* FIN clear */
    size_t n = ws_frame_encode(out, sizeof out, WS_OP_BINARY, true, payload, 65536, NULL);
    CHECK_EQ(n, 65546);
    CHECK_EQ(out[1], 127);
    CHECK_EQ(out[7], 1); /* 0x0000000000010000 */
    CHECK_EQ(out[8], 0);
    uint8_t key[4] = {1, 2, 3, 4};
    CHECK_EQ(ws_frame_encode(out, sizeof out, WS_OP_TEXT, true, payload, 5, key), 11);
    CHECK_EQ(out[1], 0x80 | 5);
    CHECK_EQ(ws_frame_header_len(5, true), 6);
    CHECK_EQ(ws_frame_header_len(70000, true), 14);
    /* too small a buffer */
    CHECK_EQ(ws_frame_encode(out, 6, WS_OP_TEXT, true, payload, 5, NULL), 0);
}

static void test_mask_matches_naive(void)
{
    uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
    uint8_t a[300], b[300];
    for (size_t i = 0; i < sizeof a; i++)
        a[i] = b[i] = (uint8_t)(i * 7 + 3);
    for (size_t off = 0; off < 8; off++) {
        /* every length to 40, then past the 16- and 64-byte steps (SSE2) with odd tails */
        for (size_t len = 0; len < 290; len += len < 40 ? 1 : 13) {
            uint8_t x[300], y[300];
            memcpy(x, a, sizeof a);
            memcpy(y, b, sizeof b);
            ws_mask(x + 5, len, key, off);
            for (size_t i = 0; i < len; i++)
                y[5 + i] ^= key[(off + i) % 4];
            CHECK(memcmp(x, y, sizeof x) == 0);
        }
    }
    /* RFC 6455 §5.7: "Hello" masked with 37 fa 21 3d */
    uint8_t frame[16];
    CHECK_EQ(ws_frame_encode(frame, sizeof frame, WS_OP_TEXT, true, "Hello", 5, key), 11);
    const uint8_t want[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    CHECK(memcmp(frame, want, sizeof want) == 0);
}

static void test_rfc_examples_unmasked(void)
{
    /* RFC 6455 §5.7: a single-frame unmasked text message, and "Hel" + "lo" fragmented */
    const uint8_t one[] = {0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
    const uint8_t frag[] = {0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f};
    rec_t *r = malloc(sizeof *r);
    for (size_t step = 0; step <= sizeof one; step++) {
        CHECK_EQ(feed(r, one, sizeof one, step, 0, 0), WS_OK);
        CHECK_STR(r->log, "B1/0 E5 ");
        CHECK(r->datalen == 5 && memcmp(r->data, "Hello", 5) == 0);
    }
    for (size_t step = 0; step <= sizeof frag; step++) {
        CHECK_EQ(feed(r, frag, sizeof frag, step, 0, 0), WS_OK);
        CHECK_STR(r->log, "B1/0 E5 ");
        CHECK(r->datalen == 5 && memcmp(r->data, "Hello", 5) == 0);
    }
    /* unmasked ping "Hello" */
    const uint8_t ping[] = {0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
    for (size_t step = 0; step <= sizeof ping; step++) {
        CHECK_EQ(feed(r, ping, sizeof ping, step, 0, 0), WS_OK);
        CHECK_STR(r->log, "C9:Hello ");
    }
    free(r);
}

/* A stream of several masked messages, decoded at every split, equals what was encoded. */
static void test_masked_roundtrip_every_split(void)
{
    static uint8_t stream[80000];
    size_t len = 0;
    uint8_t big[70000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)(i * 31 + 7);
    uint8_t k1[4] = {9, 8, 7, 6}, k2[4] = {0xff, 0, 0x55, 0xaa}, k3[4] = {1, 1, 2, 3};
    len += ws_frame_encode(stream + len, sizeof stream - len, WS_OP_TEXT, true, "abc", 3, k1);
    len += ws_frame_encode(stream + len, sizeof stream - len, WS_OP_BINARY, true, big, 300, k2);
    len += ws_frame_encode(stream + len, sizeof stream - len, WS_OP_BINARY, true, big, 70000, k3);
    len += ws_frame_encode(stream + len, sizeof stream - len, WS_OP_TEXT, true, "", 0, k1);
    rec_t *r = malloc(sizeof *r);
    size_t steps[] = {0, 1, 2, 3, 5, 7, 13, 64, 1000, 4096};
    for (size_t s = 0; s < sizeof steps / sizeof steps[0]; s++) {
        CHECK_EQ(feed(r, stream, len, steps[s], 1, 0), WS_OK);
        CHECK_STR(r->log, "B1/0 E3 B2/0 E300 B2/0 E70000 B1/0 E0 ");
        REQUIRE(r->datalen == 3 + 300 + 70000);
        CHECK(memcmp(r->data, "abc", 3) == 0);
        CHECK(memcmp(r->data + 3, big, 300) == 0);
        CHECK(memcmp(r->data + 303, big, 70000) == 0);
    }
    /* the same bytes fed to a client-side parser: masked server frames are an error (§5.1) */
    CHECK_EQ(feed(r, stream, len, 0, 0, 0), WS_ERR_PROTOCOL);
    free(r);
}

static void test_fragments_with_control_between(void)
{
    uint8_t s[512];
    size_t n = 0;
    n += ws_frame_encode(s + n, sizeof s - n, WS_OP_TEXT, false, "one,", 4, NULL);
    n += ws_frame_encode(s + n, sizeof s - n, WS_OP_PING, true, "p1", 2, NULL);
    n += ws_frame_encode(s + n, sizeof s - n, WS_OP_CONT, false, "two,", 4, NULL);
    n += ws_frame_encode(s + n, sizeof s - n, WS_OP_PONG, true, "", 0, NULL);
    n += ws_frame_encode(s + n, sizeof s - n, WS_OP_CONT, true, "three", 5, NULL);
    n += ws_frame_encode(s + n, sizeof s - n, WS_OP_BINARY, true, "x", 1, NULL);
    uint8_t close_body[64];
    size_t cl = ws_close_payload(close_body, 4001, "bye");
    n += ws_frame_encode(s + n, sizeof s - n, WS_OP_CLOSE, true, close_body, cl, NULL);
    rec_t *r = malloc(sizeof *r);
    for (size_t step = 0; step <= 20; step++) {
        CHECK_EQ(feed(r, s, n, step, 0, 0), WS_OK);
        /* the close body is "\x0f\xa1bye": printed as bytes */
        CHECK(strncmp(r->log, "B1/0 C9:p1 C10: E13 B2/0 E1 C8:", 31) == 0);
        CHECK(r->datalen == 14 && memcmp(r->data, "one,two,threex", 14) == 0);
    }
    CHECK_EQ(ws_close_code(close_body, cl), 4001);
    CHECK_EQ(ws_close_code(close_body, 0), 1005);
    CHECK_EQ(ws_close_code(close_body, 1), -1);
    CHECK(memcmp(close_body + 2, "bye", 3) == 0);
    free(r);
}

static void test_prefix_whole_even_when_split(void)
{
    uint8_t s[512];
    const char *msg = "1732251000123456789 padding-padding-padding-padding-padding";
    size_t n = ws_frame_encode(s, sizeof s, WS_OP_TEXT, true, msg, strlen(msg), NULL);
    rec_t *r = malloc(sizeof *r);
    for (size_t step = 1; step <= n; step++) {
        CHECK_EQ(feed(r, s, n, step, 0, 32), WS_OK);
        CHECK_EQ(r->prefix_len, 32);
        CHECK(memcmp(r->prefix, msg, 32) == 0);
        CHECK_EQ(r->datalen, strlen(msg));
    }
    /* shorter message than the prefix: the whole payload */
    n = ws_frame_encode(s, sizeof s, WS_OP_TEXT, true, "12345", 5, NULL);
    CHECK_EQ(feed(r, s, n, 1, 0, 32), WS_OK);
    CHECK_EQ(r->prefix_len, 5);
    free(r);
}

static void test_protocol_errors(void)
{
    rec_t *r = malloc(sizeof *r);
    const uint8_t rsv[] = {0xC1, 0x00};                 /* RSV1 */
    const uint8_t badop[] = {0x83, 0x00};               /* opcode 3 reserved */
    const uint8_t cont_first[] = {0x80, 0x01, 'a'};     /* continuation with no message */
    const uint8_t ctl_frag[] = {0x09, 0x00};            /* ping without FIN */
    const uint8_t ctl_long[] = {0x89, 126, 0x00, 0x7e}; /* ping of 126 bytes */
    const uint8_t msb[] = {0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 1};
    const uint8_t nested[] = {0x01, 0x01, 'a', 0x81, 0x01, 'b'}; /* text inside a text */
    CHECK_EQ(feed(r, rsv, sizeof rsv, 0, 0, 0), WS_ERR_PROTOCOL);
    CHECK_EQ(feed(r, badop, sizeof badop, 0, 0, 0), WS_ERR_PROTOCOL);
    CHECK_EQ(feed(r, cont_first, sizeof cont_first, 0, 0, 0), WS_ERR_PROTOCOL);
    CHECK_EQ(feed(r, ctl_frag, sizeof ctl_frag, 0, 0, 0), WS_ERR_PROTOCOL);
    CHECK_EQ(feed(r, ctl_long, sizeof ctl_long, 0, 0, 0), WS_ERR_PROTOCOL);
    CHECK_EQ(feed(r, msb, sizeof msb, 1, 0, 0), WS_ERR_PROTOCOL);
    CHECK_EQ(feed(r, nested, sizeof nested, 1, 0, 0), WS_ERR_PROTOCOL);
    /* an unmasked frame where masking is required (server side, §5.1) */
    const uint8_t plain[] = {0x81, 0x01, 'a'};
    CHECK_EQ(feed(r, plain, sizeof plain, 0, 1, 0), WS_ERR_PROTOCOL);
    free(r);
}

static void test_max_message_and_stop(void)
{
    uint8_t s[512];
    size_t n = ws_frame_encode(s, sizeof s, WS_OP_TEXT, false, "12345", 5, NULL);
    n += ws_frame_encode(s + n, sizeof s - n, WS_OP_CONT, true, "678", 3, NULL);
    rec_t *r = malloc(sizeof *r);
    memset(r, 0, sizeof *r);
    ws_rx_t rx = {0};
    rx.max_message = 7;
    CHECK_EQ(ws_rx_feed(&rx, s, n, &cb, r), WS_ERR_TOO_BIG);
    ws_rx_free(&rx);
    /* a callback that returns non-zero stops the feed */
    n = ws_frame_encode(s, sizeof s, WS_OP_PING, true, "a", 1, NULL);
    n += ws_frame_encode(s + n, sizeof s - n, WS_OP_PING, true, "b", 1, NULL);
    memset(r, 0, sizeof *r);
    r->stop_on_control = 1;
    ws_rx_t rx2 = {0};
    CHECK_EQ(ws_rx_feed(&rx2, s, n, &cb, r), WS_ERR_STOP);
    CHECK_STR(r->log, "C9:a ");
    ws_rx_free(&rx2);
    free(r);
}

int main(void)
{
    RUN(test_header_lengths);
    RUN(test_mask_matches_naive);
    RUN(test_rfc_examples_unmasked);
    RUN(test_masked_roundtrip_every_split);
    RUN(test_fragments_with_control_between);
    RUN(test_prefix_whole_even_when_split);
    RUN(test_protocol_errors);
    RUN(test_max_message_and_stop);
    return TEST_REPORT();
}
