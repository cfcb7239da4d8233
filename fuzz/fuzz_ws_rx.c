/* fuzz_ws_rx.c: the RFC 6455 frame parser (common/ws_frame.c) as the gateway runs it on client
 * bytes (masked frames expected), and as ws-bench runs it on server bytes. The same input is fed
 * once whole and once in chunks whose sizes come from the input: both runs must report the same
 * messages, control frames and result (data slices merged, since chunking splits them), and
 * every callback must come in a legal order. The gateway's whole-message test in its on_data
 * (remaining == 0 and frame_fin: the message ends with this slice) is checked too. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ws_frame.h"

typedef struct {
    ws_rx_t rx;
    uint8_t *log;       /* records: type, opcode, 8-byte length, bytes */
    size_t len, cap, last; /* last: offset of the last record */
    int open;           /* a message is open */
    int expect_end;     /* the last slice completed the message: on_msg_end must follow */
    uint64_t msg_bytes; /* data bytes of the open message so far */
} run_t;

static void grow(run_t *r, size_t n)
{
    if (r->len + n <= r->cap)
        return;
    r->cap = (r->len + n) * 2;
    r->log = realloc(r->log, r->cap);
    if (!r->log)
        abort();
}

static void put(run_t *r, uint8_t type, int op, const uint8_t *p, size_t n)
{
    if (type == 'D' && r->len && r->log[r->last] == 'D') {
        /* consecutive data slices are merged: chunking may split them anywhere */
        grow(r, n);
        memcpy(r->log + r->len, p, n);
        r->len += n;
        uint64_t ln;
        memcpy(&ln, r->log + r->last + 2, 8);
        ln += n;
        memcpy(r->log + r->last + 2, &ln, 8);
        return;
    }
    grow(r, 10 + n);
    uint8_t *w = r->log + r->len;
    w[0] = type;
    w[1] = (uint8_t)op;
    uint64_t ln = n;
    memcpy(w + 2, &ln, 8);
    if (n)
        memcpy(w + 10, p, n);
    r->last = r->len;
    r->len += 10 + n;
}

static int on_begin(void *ctx, int op, const uint8_t *prefix, size_t n)
{
    run_t *r = ctx;
    if (r->open || r->expect_end || (op != WS_OP_TEXT && op != WS_OP_BINARY) ||
        n > r->rx.want_prefix)
        abort();
    (void)prefix;
    r->open = 1;
    r->msg_bytes = 0;
    put(r, 'B', op, NULL, 0);
    return 0;
}

static int on_data(void *ctx, const uint8_t *p, size_t n)
{
    run_t *r = ctx;
    if (!r->open || r->expect_end || !n)
        abort();
    r->msg_bytes += n;
    if (r->rx.max_message && r->msg_bytes > r->rx.max_message)
        abort();
    if (r->rx.msg_len < r->msg_bytes) /* the gateway sizes its buffer from these */
        abort();
    if (r->rx.remaining == 0 && r->rx.frame_fin) {
        if (r->rx.msg_len != r->msg_bytes) /* the gateway's whole-message test relies on it */
            abort();
        r->expect_end = 1;
    }
    put(r, 'D', 0, p, n);
    return 0;
}

static int on_end(void *ctx, uint64_t total)
{
    run_t *r = ctx;
    if (!r->open || total != r->msg_bytes) /* (an empty FIN frame may end a message) */
        abort();
    r->open = 0;
    r->expect_end = 0;
    uint8_t t[8];
    memcpy(t, &total, 8);
    put(r, 'E', 0, t, 8);
    return 0;
}

static int on_control(void *ctx, int op, const uint8_t *p, size_t n)
{
    run_t *r = ctx;
    if (r->expect_end || n > WS_MAX_CONTROL ||
        (op != WS_OP_CLOSE && op != WS_OP_PING && op != WS_OP_PONG))
        abort();
    put(r, 'C', op, p, n);
    if (op == WS_OP_CLOSE) {
        int code = ws_close_code(p, n);
        if ((n == 0 && code != 1005) || (n == 1 && code != -1) || (n >= 2 && code < 0))
            abort();
    }
    return 0;
}

static const ws_rx_cb_t cb = {on_begin, on_data, on_end, on_control};

static void setup(run_t *r, uint8_t cfg)
{
    memset(r, 0, sizeof *r);
    r->rx.expect_masked = cfg & 1;              /* 1: the gateway's side */
    r->rx.max_message = cfg & 2 ? (cfg >> 4) * 37u : 0;
    r->rx.want_prefix = cfg & 4 ? (uint8_t)((cfg >> 3) % (WS_MAX_PREFIX + 1)) : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t cfg = data[0], seed = data[1];
    data += 2;
    size -= 2;
    run_t whole, chunked;
    setup(&whole, cfg);
    setup(&chunked, cfg);

    uint8_t *all = malloc(size ? size : 1); /* the parser unmasks in place: one copy per run */
    memcpy(all, data, size);
    int rv1 = ws_rx_feed(&whole.rx, all, size, &cb, &whole);
    free(all);

    int rv2 = WS_OK;
    for (size_t off = 0; off < size && rv2 == WS_OK;) {
        size_t n = (size_t)(seed % 23) + 1;
        if (n > size - off)
            n = size - off;
        uint8_t *piece = malloc(n); /* exactly sized: ASan sees any overread */
        memcpy(piece, data + off, n);
        rv2 = ws_rx_feed(&chunked.rx, piece, n, &cb, &chunked);
        free(piece);
        off += n;
        seed = (uint8_t)(seed * 29 + 11 + data[off - 1]);
    }
    if (rv1 != rv2 || whole.len != chunked.len ||
        (whole.len && memcmp(whole.log, chunked.log, whole.len) != 0))
        abort();
    ws_rx_free(&whole.rx);
    ws_rx_free(&chunked.rx);
    free(whole.log);
    free(chunked.log);
    return 0;
}
