/* ws_frame.c: RFC 6455 frame encoding and the incremental parser (see ws_frame.h). */
#include "ws_frame.h"

#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h> /* ws_mask: 16 bytes per step (every x86-64 has SSE2) */
#endif

size_t ws_frame_header_len(size_t len, bool masked)
{
    size_t h = len < 126 ? 2 : len <= 0xffff ? 4 : 10;
    return h + (masked ? 4 : 0);
}

void ws_mask(uint8_t *p, size_t n, const uint8_t key[4], size_t offset)
{
    size_t i = 0;
    /* align the key stream to offset, then 8 bytes at a time */
    while (i < n && ((offset + i) & 3)) {
        p[i] ^= key[(offset + i) & 3];
        i++;
    }
    if (n - i >= 8) {
        uint32_t k4;
        memcpy(&k4, key, 4);
#if defined(__SSE2__)
        __m128i k16 = _mm_set1_epi32((int)k4);
        for (; n - i >= 64; i += 64) {
            __m128i *q = (__m128i *)(void *)(p + i);
            __m128i a = _mm_loadu_si128(q), b = _mm_loadu_si128(q + 1);
            __m128i c = _mm_loadu_si128(q + 2), d = _mm_loadu_si128(q + 3);
            _mm_storeu_si128(q, _mm_xor_si128(a, k16));
            _mm_storeu_si128(q + 1, _mm_xor_si128(b, k16));
            _mm_storeu_si128(q + 2, _mm_xor_si128(c, k16));
            _mm_storeu_si128(q + 3, _mm_xor_si128(d, k16));
        }
        for (; n - i >= 16; i += 16) {
            __m128i *q = (__m128i *)(void *)(p + i);
            _mm_storeu_si128(q, _mm_xor_si128(_mm_loadu_si128(q), k16));
        }
#endif
        uint64_t k8 = ((uint64_t)k4 << 32) | k4;
        for (; n - i >= 8; i += 8) {
            uint64_t w;
            memcpy(&w, p + i, 8);
            w ^= k8;
            memcpy(p + i, &w, 8);
        }
    }
    for (; i < n; i++)
        p[i] ^= key[(offset + i) & 3];
}

size_t ws_frame_header(uint8_t *out, int opcode, bool fin, size_t len, const uint8_t *mask)
{
    uint8_t *h = out;
    *h++ = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0f));
    uint8_t mbit = mask ? 0x80 : 0;
    if (len < 126) {
        *h++ = (uint8_t)(mbit | len);
    } else if (len <= 0xffff) {
        *h++ = mbit | 126;
        *h++ = (uint8_t)(len >> 8);
        *h++ = (uint8_t)len;
    } else {
        *h++ = mbit | 127;
        for (int s = 56; s >= 0; s -= 8)
            *h++ = (uint8_t)((uint64_t)len >> s);
    }
    if (mask) {
        memcpy(h, mask, 4);
        h += 4;
    }
    return (size_t)(h - out);
}

size_t ws_frame_encode(uint8_t *out, size_t cap, int opcode, bool fin, const void *payload,
                       size_t len, const uint8_t *mask)
{
    size_t hl = ws_frame_header_len(len, mask != NULL);
    if (cap < hl || cap - hl < len)
        return 0;
    uint8_t *h = out + ws_frame_header(out, opcode, fin, len, mask);
    if (len)
        memcpy(h, payload, len);
    if (mask)
        ws_mask(h, len, mask, 0);
    return hl + len;
}

size_t ws_close_payload(uint8_t *out, uint16_t code, const char *reason)
{
    out[0] = (uint8_t)(code >> 8);
    out[1] = (uint8_t)code;
    size_t rl = reason ? strlen(reason) : 0;
    if (rl > WS_MAX_CONTROL - 2)
        rl = WS_MAX_CONTROL - 2;
    if (rl)
        memcpy(out + 2, reason, rl);
    return 2 + rl;
}

int ws_close_code(const uint8_t *p, size_t n)
{
    if (n == 0)
        return 1005;
    if (n == 1)
        return -1;
    return (p[0] << 8) | p[1];
}

void ws_rx_free(ws_rx_t *rx)
{
    free(rx->hold);
    rx->hold = NULL;
    rx->hold_len = 0;
}

static bool is_control(int op) { return op & 0x8; }

/* How many bytes the unit starting at b must have to be processed whole: the header, plus the
 * payload of a control frame, plus the wanted prefix of a message's first frame. Returns a
 * number > have when more bytes are needed, or a negative WS_ERR_* as soon as the bytes seen
 * are invalid. */
static long unit_need(const ws_rx_t *rx, const uint8_t *b, size_t have)
{
    if (have < 2)
        return 2;
    int op = b[0] & 0x0f;
    bool fin = b[0] & 0x80;
    if (b[0] & 0x70) /* RSV1-3 without a negotiated extension, §5.2 */
        return WS_ERR_PROTOCOL;
    if ((op > WS_OP_BINARY && op < WS_OP_CLOSE) || op > WS_OP_PONG)
        return WS_ERR_PROTOCOL;
    bool masked = b[1] & 0x80;
    if (masked != (bool)rx->expect_masked) /* §5.1: server frames unmasked, client masked */
        return WS_ERR_PROTOCOL;
    unsigned len7 = b[1] & 0x7f;
    if (is_control(op) && (!fin || len7 > WS_MAX_CONTROL)) /* §5.5 */
        return WS_ERR_PROTOCOL;
    size_t hl = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + (masked ? 4 : 0);
    if (have < hl)
        return (long)hl;
    uint64_t plen = len7;
    if (len7 == 126) {
        plen = ((uint64_t)b[2] << 8) | b[3];
    } else if (len7 == 127) {
        plen = 0;
        for (int i = 0; i < 8; i++)
            plen = (plen << 8) | b[2 + i];
        if (plen >> 63) /* §5.2: the most significant bit MUST be 0 */
            return WS_ERR_PROTOCOL;
    }
    if (is_control(op))
        return (long)(hl + plen);
    if (op != WS_OP_CONT && rx->want_prefix)
        return (long)(hl + (plen < rx->want_prefix ? plen : rx->want_prefix));
    return (long)hl;
}

/* Processes one complete unit u[0..ulen) (see unit_need). */
static int unit_process(ws_rx_t *rx, uint8_t *u, size_t ulen, const ws_rx_cb_t *cb, void *ctx)
{
    int op = u[0] & 0x0f;
    bool fin = u[0] & 0x80;
    bool masked = u[1] & 0x80;
    unsigned len7 = u[1] & 0x7f;
    size_t hl = 2;
    uint64_t plen = len7;
    if (len7 == 126) {
        plen = ((uint64_t)u[2] << 8) | u[3];
        hl = 4;
    } else if (len7 == 127) {
        plen = 0;
        for (int i = 0; i < 8; i++)
            plen = (plen << 8) | u[2 + i];
        hl = 10;
    }
    uint8_t key[4] = {0};
    if (masked) {
        memcpy(key, u + hl, 4);
        hl += 4;
    }
    uint8_t *pl = u + hl;
    size_t have = ulen - hl; /* payload bytes inside the unit */

    if (is_control(op)) {
        if (masked)
            ws_mask(pl, have, key, 0);
        if (cb->on_control && cb->on_control(ctx, op, pl, have))
            return WS_ERR_STOP;
        return WS_OK;
    }

    bool begin = false;
    if (op == WS_OP_CONT) {
        if (!rx->msg_opcode) /* §5.4: continuation with nothing to continue */
            return WS_ERR_PROTOCOL;
    } else {
        if (rx->msg_opcode) /* §5.4: a new message inside a fragmented one */
            return WS_ERR_PROTOCOL;
        rx->msg_opcode = (uint8_t)op;
        rx->msg_len = 0;
        begin = true;
    }
    if (rx->max_message && plen > rx->max_message - rx->msg_len)
        return WS_ERR_TOO_BIG;
    rx->msg_len += plen;
    rx->remaining = plen;
    rx->frame_fin = fin;
    rx->in_frame = 1;
    memcpy(rx->mask_key, key, 4);
    rx->mask_off = 0;
    if (have) {
        if (rx->expect_masked) {
            ws_mask(pl, have, key, 0);
            rx->mask_off = (uint32_t)have;
        }
        rx->remaining -= have;
    }
    if (begin && cb->on_msg_begin && cb->on_msg_begin(ctx, op, pl, have))
        return WS_ERR_STOP;
    if (have && cb->on_data && cb->on_data(ctx, pl, have))
        return WS_ERR_STOP;
    if (rx->remaining == 0) {
        rx->in_frame = 0;
        if (fin) {
            uint64_t total = rx->msg_len;
            rx->msg_opcode = 0;
            rx->msg_len = 0;
            if (cb->on_msg_end && cb->on_msg_end(ctx, total))
                return WS_ERR_STOP;
        }
    }
    return WS_OK;
}

int ws_rx_feed(ws_rx_t *rx, uint8_t *p, size_t n, const ws_rx_cb_t *cb, void *ctx)
{
    for (;;) {
        if (rx->in_frame) {
            if (!n)
                return WS_OK;
            size_t take = rx->remaining < n ? (size_t)rx->remaining : n;
            if (rx->expect_masked) {
                ws_mask(p, take, rx->mask_key, rx->mask_off);
                rx->mask_off += (uint32_t)take;
            }
            rx->remaining -= take;
            if (take && cb->on_data && cb->on_data(ctx, p, take))
                return WS_ERR_STOP;
            p += take;
            n -= take;
            if (rx->remaining == 0) {
                rx->in_frame = 0;
                if (rx->frame_fin) {
                    uint64_t total = rx->msg_len;
                    rx->msg_opcode = 0;
                    rx->msg_len = 0;
                    if (cb->on_msg_end && cb->on_msg_end(ctx, total))
                        return WS_ERR_STOP;
                }
            }
            continue;
        }
        if (rx->hold_len) {
            /* complete the held unit from the new bytes */
            long need;
            for (;;) {
                need = unit_need(rx, rx->hold, rx->hold_len);
                if (need < 0)
                    return (int)need;
                if ((size_t)need <= rx->hold_len)
                    break;
                if (!n)
                    return WS_OK;
                size_t take = (size_t)need - rx->hold_len;
                if (take > n)
                    take = n;
                memcpy(rx->hold + rx->hold_len, p, take);
                rx->hold_len = (uint8_t)(rx->hold_len + take);
                p += take;
                n -= take;
            }
            int rv = unit_process(rx, rx->hold, (size_t)need, cb, ctx);
            ws_rx_free(rx);
            if (rv < 0)
                return rv;
            continue;
        }
        if (!n)
            return WS_OK;
        long need = unit_need(rx, p, n);
        if (need < 0)
            return (int)need;
        if ((size_t)need > n) {
            rx->hold = malloc(WS_HOLD_CAP);
            if (!rx->hold)
                return WS_ERR_NOMEM;
            memcpy(rx->hold, p, n);
            rx->hold_len = (uint8_t)n;
            return WS_OK;
        }
        int rv = unit_process(rx, p, (size_t)need, cb, ctx);
        if (rv < 0)
            return rv;
        p += need;
        n -= (size_t)need;
    }
}
