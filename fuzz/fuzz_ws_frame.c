/* fuzz_ws_frame.c: the incremental RFC 6455 frame parser (common/ws_frame.c) that the gateway
 * runs on untrusted client bytes (expect_masked = 1) and the load generator on server bytes.
 *
 * Input: 5 config bytes, then the byte stream.
 *   c0: bit0 expect_masked, bit1 max_message on, bit2 max_message x64, bit3 stop after a callback
 *   c1: max_message = (c1 + 1) (x64 with bit2) when bit1, else 0 (unlimited)
 *   c2: want_prefix = c2 % (WS_MAX_PREFIX + 1)
 *   c3: seed of the chunk sizes
 *   c4: with bit3, a callback returns "stop" at the (1 + c4 % 32)th non-data event
 *
 * The stream is parsed by several runs, each with its own copy (the parser unmasks in place):
 *   A: the whole input in one exactly-sized heap buffer;
 *   B: chunks of 1..N bytes (N and the sizes from c3), each in its own exactly-sized buffer;
 *   C: one byte per call (each in its own 1-byte buffer): gives the byte at which an error is
 *      reported;
 *   D: (after an error) the whole input up to, not including, that byte: must succeed;
 *   F: the whole input with no callbacks at all;
 *   G: chunks again, with only an on_data that asks to stop (the gateway's callbacks never do:
 *      this covers the parser's stop paths and must not leak its hold buffer);
 *   R: a small reference decoder that reads the whole input at once.
 * Every callback checks the parser's invariants (those the gateway relies on included) and
 * records (type, opcode, bytes) into a log where consecutive data slices are joined. A, B, C and
 * R must produce the same return code and the same log; B must fail in the chunk holding the
 * byte at which C failed; after success the parser states (what is held, what is left of the
 * frame) must be equal and match R. abort() on any violation. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ws_frame.h"

#define CFG_BYTES 5

typedef struct cfg {
    bool masked;
    uint64_t max_message;
    uint8_t want_prefix;
    uint8_t seed;
    unsigned stop_at; /* 0: never */
} cfg_t;

/* ---- event log ------------------------------------------------------------------------------
 * Records: type (1), opcode (1), value (8, native order), then `bytes` for B (prefix), D (data),
 * C (payload); E carries the message length as its value and no bytes. */
typedef struct evlog {
    uint8_t *buf;
    size_t len, cap;
    size_t data_rec; /* offset of the last record when it is a D record, else SIZE_MAX */
} evlog_t;

static void log_reserve(evlog_t *l, size_t more)
{
    if (l->cap - l->len >= more)
        return;
    size_t cap = l->cap ? l->cap : 256;
    while (cap - l->len < more)
        cap *= 2;
    uint8_t *b = realloc(l->buf, cap);
    if (!b)
        abort();
    l->buf = b;
    l->cap = cap;
}

static void log_add(evlog_t *l, char type, int op, uint64_t value, const uint8_t *p, size_t n)
{
    if (type == 'D' && l->data_rec != SIZE_MAX) { /* join with the previous slice */
        uint64_t v;
        memcpy(&v, l->buf + l->data_rec + 2, 8);
        v += n;
        memcpy(l->buf + l->data_rec + 2, &v, 8);
        log_reserve(l, n);
        memcpy(l->buf + l->len, p, n);
        l->len += n;
        return;
    }
    log_reserve(l, 10 + n);
    if (type == 'D')
        value = n; /* joined slices add theirs */
    l->data_rec = type == 'D' ? l->len : SIZE_MAX;
    l->buf[l->len] = (uint8_t)type;
    l->buf[l->len + 1] = (uint8_t)op;
    memcpy(l->buf + l->len + 2, &value, 8);
    if (n)
        memcpy(l->buf + l->len + 10, p, n);
    l->len += 10 + n;
}

static bool log_eq(const evlog_t *a, const evlog_t *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->buf, b->buf, a->len) == 0);
}

/* ---- one parser run ------------------------------------------------------------------------ */
typedef struct run {
    ws_rx_t rx;
    const cfg_t *cfg;
    evlog_t log;
    const uint8_t *cur; /* the buffer being fed, for bounds checks of what callbacks get */
    size_t cur_len;
    bool open;        /* a message is open (between on_msg_begin and on_msg_end) */
    bool must_end;    /* the last slice ended the FIN frame: on_msg_end is next */
    uint64_t seen;    /* data bytes of the open message so far */
    uint8_t prefix[WS_MAX_PREFIX];
    size_t prefix_len, prefix_checked;
    unsigned events;  /* non-data events, for cfg->stop_at */
} run_t;

static void check(bool ok)
{
    if (!ok)
        abort();
}

/* p[0..n) must lie in the buffer being fed or in the parser's hold buffer. */
static void check_span(const run_t *r, const uint8_t *p, size_t n)
{
    if (n == 0)
        return;
    check(p != NULL);
    uintptr_t a = (uintptr_t)p, e = a + n;
    uintptr_t c0 = (uintptr_t)r->cur, c1 = c0 + r->cur_len;
    uintptr_t h0 = (uintptr_t)r->rx.hold, h1 = h0 + r->rx.hold_len;
    check((r->cur && a >= c0 && e <= c1) || (r->rx.hold && a >= h0 && e <= h1));
}

static int stop_here(run_t *r)
{
    r->events++;
    return r->cfg->stop_at && r->events == r->cfg->stop_at;
}

static int cb_begin(void *ctx, int opcode, const uint8_t *prefix, size_t prefix_len)
{
    run_t *r = ctx;
    check(!r->open && !r->must_end);
    check(opcode == WS_OP_TEXT || opcode == WS_OP_BINARY);
    check(prefix_len <= r->cfg->want_prefix);
    check(r->rx.msg_opcode == opcode);
    /* msg_len is the first frame's payload here: the prefix is min(want_prefix, that) */
    uint64_t first = r->rx.msg_len;
    check(prefix_len == (first < r->cfg->want_prefix ? first : r->cfg->want_prefix));
    check(r->rx.remaining == first - prefix_len);
    check_span(r, prefix, prefix_len);
    if (r->cfg->max_message)
        check(first <= r->cfg->max_message);
    r->open = true;
    r->seen = 0;
    if (prefix_len)
        memcpy(r->prefix, prefix, prefix_len);
    r->prefix_len = prefix_len;
    r->prefix_checked = 0;
    log_add(&r->log, 'B', opcode, prefix_len, prefix, prefix_len);
    return stop_here(r);
}

static int cb_data(void *ctx, const uint8_t *p, size_t n)
{
    run_t *r = ctx;
    const ws_rx_t *rx = &r->rx;
    check(r->open && !r->must_end);
    check(n > 0);
    check_span(r, p, n);
    check(rx->in_frame);
    check(rx->msg_opcode == WS_OP_TEXT || rx->msg_opcode == WS_OP_BINARY);
    /* the prefix given to on_msg_begin is what on_data delivers first */
    if (r->prefix_checked < r->prefix_len) {
        size_t k = r->prefix_len - r->prefix_checked;
        if (k > n)
            k = n;
        check(memcmp(p, r->prefix + r->prefix_checked, k) == 0);
        r->prefix_checked += k;
    }
    uint64_t before = r->seen;
    r->seen += n;
    if (r->cfg->max_message)
        check(r->seen <= r->cfg->max_message);
    /* what the gateway reads: msg_len counts the frames begun so far, whose unread part is
     * rx->remaining, so msg_len == seen + remaining (and msg_len >= seen) */
    check(rx->msg_len >= r->seen);
    check(rx->msg_len - r->seen == rx->remaining);
    /* its "whole message in one slice" test must mean exactly that */
    bool whole = rx->remaining == 0 && rx->frame_fin && rx->msg_len == n;
    check(whole == (rx->remaining == 0 && rx->frame_fin && before == 0));
    if (rx->remaining == 0 && rx->frame_fin)
        r->must_end = true;
    log_add(&r->log, 'D', 0, 0, p, n);
    return 0;
}

static int cb_end(void *ctx, uint64_t len)
{
    run_t *r = ctx;
    check(r->open);
    check(len == r->seen);
    check(r->prefix_checked == r->prefix_len);
    check(r->rx.msg_opcode == 0 && r->rx.msg_len == 0);
    check(!r->rx.in_frame && r->rx.remaining == 0 && r->rx.frame_fin);
    if (r->cfg->max_message)
        check(len <= r->cfg->max_message);
    r->open = false;
    r->must_end = false;
    r->seen = 0;
    log_add(&r->log, 'E', 0, len, NULL, 0);
    return stop_here(r);
}

static int cb_control(void *ctx, int opcode, const uint8_t *p, size_t n)
{
    run_t *r = ctx;
    check(!r->must_end);
    check(opcode == WS_OP_CLOSE || opcode == WS_OP_PING || opcode == WS_OP_PONG);
    check(n <= WS_MAX_CONTROL);
    check_span(r, p, n);
    /* a control frame between fragments leaves the message as it was */
    check(r->open == (r->rx.msg_opcode != 0));
    (void)ws_close_code(p, n);
    log_add(&r->log, 'C', opcode, n, p, n);
    return stop_here(r);
}

static int cb_data_stop(void *ctx, const uint8_t *p, size_t n)
{
    check_span(ctx, p, n);
    return n > 0 ? 1 : 0;
}

static const ws_rx_cb_t checking_cb = {cb_begin, cb_data, cb_end, cb_control};
static const ws_rx_cb_t no_cb = {0};
static const ws_rx_cb_t data_stop_cb = {NULL, cb_data_stop, NULL, NULL};

static void run_init(run_t *r, const cfg_t *cfg)
{
    memset(r, 0, sizeof *r);
    r->cfg = cfg;
    r->log.data_rec = SIZE_MAX;
    r->rx.expect_masked = cfg->masked;
    r->rx.max_message = cfg->max_message;
    r->rx.want_prefix = cfg->want_prefix;
}

static void run_done(run_t *r)
{
    ws_rx_free(&r->rx);
    check(r->rx.hold == NULL && r->rx.hold_len == 0);
    free(r->log.buf);
}

/* Feeds data[from..to) as one exactly-sized heap buffer. */
static int feed_piece(run_t *r, const ws_rx_cb_t *cb, const uint8_t *data, size_t from, size_t to)
{
    size_t n = to - from;
    uint8_t *b = malloc(n ? n : 1);
    if (!b)
        abort();
    if (n)
        memcpy(b, data + from, n);
    r->cur = b;
    r->cur_len = n;
    int rv = ws_rx_feed(&r->rx, b, n, cb, r);
    r->cur = NULL;
    r->cur_len = 0;
    free(b);
    check(rv == WS_OK || rv == WS_ERR_PROTOCOL || rv == WS_ERR_TOO_BIG ||
          rv == WS_ERR_STOP);
    if (rv == WS_OK) /* an idle parser owns no buffer; a held unit is shorter than the cap */
        check((r->rx.hold != NULL) == (r->rx.hold_len != 0) && r->rx.hold_len < WS_HOLD_CAP);
    return rv;
}

static uint32_t rnd(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* Feeds data[0..n) in chunks: maxc 0 means one piece, 1 one byte a call, else sizes in 1..maxc
 * (from *s). On an error, [*fail_from, *fail_to) is the chunk that reported it. */
static int feed_all(run_t *r, const ws_rx_cb_t *cb, const uint8_t *data, size_t n, size_t maxc,
                    uint32_t *s, size_t *fail_from, size_t *fail_to)
{
    size_t off = 0;
    do {
        size_t k = maxc == 0 ? n : maxc == 1 ? 1 : 1 + rnd(s) % maxc;
        if (k > n - off)
            k = n - off;
        int rv = feed_piece(r, cb, data, off, off + k);
        if (rv != WS_OK) {
            *fail_from = off;
            *fail_to = off + k;
            return rv;
        }
        off += k;
    } while (off < n);
    return WS_OK;
}

/* ---- the reference decoder ----------------------------------------------------------------
 * Reads the whole stream at once, frame after frame, as RFC 6455 §5.2-5.5 describe it, with the
 * parser's documented choices: a message's first frame is looked at once its header and its
 * wanted prefix (min(want_prefix, payload)) are in; data is delivered as far as it goes. */
typedef struct ref_state {
    bool in_frame;
    uint64_t remaining, msg_len;
    uint8_t msg_opcode;
    size_t held; /* bytes of an incomplete header/unit at the end */
} ref_state_t;

static int ref_decode(const cfg_t *cfg, uint8_t *b, size_t n, evlog_t *log, ref_state_t *st)
{
    size_t pos = 0;
    int open = 0;
    uint64_t msg_len = 0;
    unsigned events = 0;
    memset(st, 0, sizeof *st);
#define REF_EVENT()                                                                        \
    do {                                                                                   \
        events++;                                                                          \
        if (cfg->stop_at && events == cfg->stop_at)                                        \
            return WS_ERR_STOP;                                                            \
    } while (0)
    for (;;) {
        st->msg_opcode = (uint8_t)open;
        st->msg_len = msg_len;
        size_t left = n - pos;
        if (left == 0)
            return WS_OK;
        if (left < 2) {
            st->held = left;
            return WS_OK;
        }
        uint8_t b0 = b[pos], b1 = b[pos + 1];
        int fin = b0 >> 7, rsv = (b0 >> 4) & 7, op = b0 & 15, mask = b1 >> 7, len7 = b1 & 127;
        int control = op == WS_OP_CLOSE || op == WS_OP_PING || op == WS_OP_PONG;
        if (rsv)
            return WS_ERR_PROTOCOL;
        if (!control && op != WS_OP_CONT && op != WS_OP_TEXT && op != WS_OP_BINARY)
            return WS_ERR_PROTOCOL;
        if (mask != (int)cfg->masked)
            return WS_ERR_PROTOCOL;
        if (control && (!fin || len7 > 125))
            return WS_ERR_PROTOCOL;
        size_t ext = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
        size_t hl = 2 + ext + (mask ? 4 : 0);
        if (left < hl) {
            st->held = left;
            return WS_OK;
        }
        uint64_t plen = (uint64_t)len7;
        if (ext) {
            plen = 0;
            for (size_t i = 0; i < ext; i++)
                plen = plen * 256 + b[pos + 2 + i];
            if (ext == 8 && plen >= ((uint64_t)1 << 63))
                return WS_ERR_PROTOCOL;
        }
        uint8_t key[4] = {0, 0, 0, 0};
        if (mask)
            memcpy(key, b + pos + 2 + ext, 4);
        uint8_t *pl = b + pos + hl;
        if (control) {
            if (left - hl < plen) {
                st->held = left;
                return WS_OK;
            }
            for (size_t i = 0; i < plen; i++)
                pl[i] ^= key[i % 4];
            log_add(log, 'C', op, plen, pl, (size_t)plen);
            pos += hl + (size_t)plen;
            REF_EVENT();
            continue;
        }
        uint64_t pre = 0;
        if (op != WS_OP_CONT)
            pre = plen < cfg->want_prefix ? plen : cfg->want_prefix;
        if (left - hl < pre) {
            st->held = left;
            return WS_OK;
        }
        if (op == WS_OP_CONT && !open)
            return WS_ERR_PROTOCOL;
        if (op != WS_OP_CONT && open)
            return WS_ERR_PROTOCOL;
        if (op != WS_OP_CONT) {
            open = op;
            msg_len = 0;
        }
        if (cfg->max_message && msg_len + plen > cfg->max_message)
            return WS_ERR_TOO_BIG; /* no overflow: msg_len <= max_message, plen < 2^63 */
        msg_len += plen;
        size_t avail = left - hl < plen ? left - hl : (size_t)plen;
        for (size_t i = 0; i < avail; i++)
            pl[i] ^= key[i % 4];
        if (op != WS_OP_CONT) {
            log_add(log, 'B', op, pre, pl, (size_t)pre);
            REF_EVENT();
        }
        if (avail)
            log_add(log, 'D', 0, 0, pl, avail);
        if (avail < plen) {
            st->in_frame = true;
            st->remaining = plen - avail;
            st->msg_opcode = (uint8_t)open;
            st->msg_len = msg_len;
            return WS_OK;
        }
        pos += hl + avail;
        if (fin) {
            log_add(log, 'E', 0, msg_len, NULL, 0);
            open = 0;
            msg_len = 0;
            REF_EVENT();
        }
    }
#undef REF_EVENT
}

/* The parser's state after all of data[0..n) went in with success, against the reference's. */
static void check_end_state(const run_t *r, const ref_state_t *st, const uint8_t *data, size_t n,
                            bool tracked)
{
    const ws_rx_t *rx = &r->rx;
    check(rx->in_frame == st->in_frame);
    check(rx->remaining == st->remaining);
    check(rx->msg_len == st->msg_len);
    check(rx->msg_opcode == st->msg_opcode);
    check(rx->hold_len == st->held);
    check(st->held <= n);
    if (st->held) /* the raw tail of the input, untouched */
        check(rx->hold && memcmp(rx->hold, data + n - st->held, st->held) == 0);
    if (tracked) { /* the run had the checking callbacks */
        check(r->open == (rx->msg_opcode != 0));
        check(!r->must_end);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < CFG_BYTES)
        return 0;
    cfg_t cfg;
    cfg.masked = data[0] & 1;
    cfg.max_message = data[0] & 2 ? ((uint64_t)data[1] + 1) * (data[0] & 4 ? 64 : 1) : 0;
    cfg.want_prefix = (uint8_t)(data[2] % (WS_MAX_PREFIX + 1));
    cfg.seed = data[3];
    cfg.stop_at = data[0] & 8 ? 1 + data[4] % 32u : 0;
    data += CFG_BYTES;
    size -= CFG_BYTES;

    static const size_t maxcs[8] = {2, 3, 5, 8, 16, 70, 150, 1000};
    size_t maxc = maxcs[cfg.seed & 7];
    uint32_t s = 0x9e3779b9u ^ ((uint32_t)cfg.seed * 0x01000193u);

    /* R: the reference */
    evlog_t ref = {NULL, 0, 0, SIZE_MAX};
    ref_state_t rst;
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy)
        abort();
    if (size)
        memcpy(copy, data, size);
    int rrv = ref_decode(&cfg, copy, size, &ref, &rst);
    free(copy);

    run_t *a = malloc(sizeof *a), *b = malloc(sizeof *b), *c = malloc(sizeof *c);
    if (!a || !b || !c)
        abort();
    size_t af0 = 0, af1 = 0, bf0 = 0, bf1 = 0, cf0 = 0, cf1 = 0;

    run_init(a, &cfg);
    int arv = feed_all(a, &checking_cb, data, size, 0, &s, &af0, &af1);
    run_init(b, &cfg);
    int brv = feed_all(b, &checking_cb, data, size, maxc, &s, &bf0, &bf1);
    run_init(c, &cfg);
    int crv = feed_all(c, &checking_cb, data, size, 1, &s, &cf0, &cf1);

    /* the same outcome and the same callbacks whatever the chunking, and as the reference */
    check(arv == rrv && brv == rrv && crv == rrv);
    check(log_eq(&a->log, &ref) && log_eq(&b->log, &ref) && log_eq(&c->log, &ref));
    if (rrv == WS_OK) {
        check_end_state(a, &rst, data, size, true);
        check_end_state(b, &rst, data, size, true);
        check_end_state(c, &rst, data, size, true);
    } else {
        /* C fed byte cf0 when it failed: the chunk of B that failed holds that byte */
        check(cf1 == cf0 + 1 && bf0 <= cf0 && cf0 < bf1);
        /* D: the bytes before it do not fail, and (unless a callback stopped, which happens at
         * the failing byte's callbacks) already produce every callback */
        run_t *d = malloc(sizeof *d);
        if (!d)
            abort();
        run_init(d, &cfg);
        size_t df0 = 0, df1 = 0;
        check(feed_all(d, &checking_cb, data, cf0, 0, &s, &df0, &df1) == WS_OK);
        if (rrv != WS_ERR_STOP)
            check(log_eq(&d->log, &ref));
        run_done(d);
        free(d);
    }
    run_done(a);
    run_done(b);
    run_done(c);

    /* F: no callbacks (all optional): the same outcome when nothing asks to stop */
    if (!cfg.stop_at) {
        run_t *f = malloc(sizeof *f);
        if (!f)
            abort();
        run_init(f, &cfg);
        size_t ff0 = 0, ff1 = 0;
        int frv = feed_all(f, &no_cb, data, size, 0, &s, &ff0, &ff1);
        check(frv == rrv);
        if (frv == WS_OK)
            check_end_state(f, &rst, data, size, false);
        run_done(f);
        free(f);

        /* G: in chunks, only an on_data that stops at once: it stops iff data comes */
        bool has_data = false;
        for (size_t off = 0; off < ref.len;) {
            uint64_t v;
            memcpy(&v, ref.buf + off + 2, 8);
            if (ref.buf[off] == 'D')
                has_data = true;
            off += 10 + (ref.buf[off] == 'E' ? 0 : (size_t)v);
        }
        run_t *g = malloc(sizeof *g);
        if (!g)
            abort();
        run_init(g, &cfg);
        size_t gf0 = 0, gf1 = 0;
        check(feed_all(g, &data_stop_cb, data, size, maxc, &s, &gf0, &gf1) ==
              (has_data ? WS_ERR_STOP : rrv));
        run_done(g);
        free(g);
    }

    free(ref.buf);
    free(a);
    free(b);
    free(c);
    return 0;
}
