/* downstream.c: incremental Downstream encoding (see downstream.h). */
#include "downstream.h"

#include <string.h>

#include "bufpool.h"
#include "grpc_frame.h"

size_t downstream_varint(uint8_t *out, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        out[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    out[n++] = (uint8_t)v;
    return n;
}

static size_t varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

size_t downstream_entry_size(const Wsgw__V1__Command *cmd)
{
    size_t n = wsgw__v1__command__get_packed_size(cmd);
    return 1 + varint_len(n) + n;
}

static int reserve_prefix(buf_t *b)
{
    if (b->len)
        return 0;
    if (bufpool_reserve(b, GRPC_FRAME_HDR_LEN) < 0)
        return -1;
    memset(b->data, 0, GRPC_FRAME_HDR_LEN);
    b->len = GRPC_FRAME_HDR_LEN;
    return 0;
}

int downstream_append(buf_t *b, const Wsgw__V1__Command *cmd)
{
    size_t n = wsgw__v1__command__get_packed_size(cmd);
    size_t old = b->len;
    if (reserve_prefix(b) < 0 || buf_reserve(b, 11 + n) < 0) {
        b->len = old;
        return -1;
    }
    uint8_t *p = b->data + b->len;
    *p++ = 0x0a; /* field 1, wire type 2 (length-delimited) */
    p += downstream_varint(p, n);
    size_t packed = wsgw__v1__command__pack(cmd, p);
    b->len = (size_t)(p - b->data) + packed;
    return 0;
}

int downstream_finish(buf_t *b, uint64_t ack)
{
    if (reserve_prefix(b) < 0 || buf_reserve(b, 11) < 0)
        return -1;
    if (ack) {
        uint8_t *p = b->data + b->len;
        *p++ = 0x10; /* field 2, wire type 0 (varint) */
        p += downstream_varint(p, ack);
        b->len = (size_t)(p - b->data);
    }
    size_t msg = b->len - GRPC_FRAME_HDR_LEN;
    if (msg > UINT32_MAX)
        return -1;
    grpc_frame_header(b->data, (uint32_t)msg);
    return 0;
}
