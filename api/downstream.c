/* downstream.c: incremental Downstream encoding (see downstream.h). */
#include "downstream.h"

#include <string.h>

#include "bufpool.h"
#include "grpc_frame.h"
#include "pbwire.h"

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

size_t downstream_entry_size(const Wsgw__V1__Command *cmd)
{
    size_t n = wsgw__v1__command__get_packed_size(cmd);
    return 1 + pbw_varint_len(n) + n;
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

/* A Send to one connection, as protobuf-c packs it: Command{send = 1: Send{target = 1:
 * Target{conn_ids = 1 (packed)}, payload = 2, binary = 3, api_ns = 4}}. */
typedef struct {
    size_t ids, target, send, cmd; /* sizes: the packed ids, Target, Send, Command */
} send1_sizes_t;

static send1_sizes_t send1_sizes(uint64_t conn_id, size_t len, bool binary, int64_t api_ns)
{
    send1_sizes_t z;
    z.ids = pbw_varint_len(conn_id);
    z.target = 1 + pbw_varint_len(z.ids) + z.ids;
    z.send = pbw_size_msg_field(z.target) + pbw_size_len_field(len) + (binary ? 2 : 0) +
             pbw_size_varint_field((uint64_t)api_ns);
    z.cmd = pbw_size_msg_field(z.send);
    return z;
}

size_t downstream_send1_size(uint64_t conn_id, size_t len, bool binary, int64_t api_ns)
{
    return pbw_size_msg_field(send1_sizes(conn_id, len, binary, api_ns).cmd);
}

int downstream_append_send1(buf_t *b, uint64_t conn_id, const uint8_t *payload, size_t len,
                            bool binary, int64_t api_ns)
{
    send1_sizes_t z = send1_sizes(conn_id, len, binary, api_ns);
    size_t old = b->len;
    if (reserve_prefix(b) < 0 || buf_reserve(b, pbw_size_msg_field(z.cmd)) < 0) {
        b->len = old;
        return -1;
    }
    uint8_t *p = b->data + b->len;
    p = pbw_put_msg_head(p, 1, z.cmd);    /* Downstream.commands */
    p = pbw_put_msg_head(p, 1, z.send);   /* Command.send */
    p = pbw_put_msg_head(p, 1, z.target); /* Send.target */
    p = pbw_put_msg_head(p, 1, z.ids);    /* Target.conn_ids, packed */
    p = pbw_put_varint(p, conn_id);
    p = pbw_put_len_field(p, 2, payload, len);
    if (binary) {
        *p++ = PBW_KEY(3, PBW_VARINT);
        *p++ = 1;
    }
    p = pbw_put_varint_field(p, 4, (uint64_t)api_ns);
    b->len = (size_t)(p - b->data);
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
