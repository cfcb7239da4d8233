/* downstream.h: building gRPC-framed wsgw.v1.Downstream messages incrementally.
 *
 * A Downstream is `repeated Command commands = 1; uint64 ack = 2;`. On the wire that is just
 * the concatenation of (tag 0x0a, varint length, Command bytes) entries followed by (tag 0x10,
 * varint ack), so commands are encoded one by one into a buffer as they are produced (no
 * nested protobuf-c structs kept around) and the message is closed when it is flushed:
 *
 *   downstream_append(&b, &cmd) ... downstream_finish(&b, ack)  ->  b = 5-byte prefix + message
 *
 * The buffer starts with GRPC_FRAME_HDR_LEN reserved bytes (written by downstream_finish).
 * Pure functions; any thread for its own buffers (ws-api uses them on its loop thread). */
#ifndef WSGW_API_DOWNSTREAM_H
#define WSGW_API_DOWNSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "wsgw.pb-c.h"

/* downstream_entry_size: bytes downstream_append adds for cmd (excluding the frame prefix). */
size_t downstream_entry_size(const Wsgw__V1__Command *cmd);

/* downstream_append: appends cmd as one `commands` entry; reserves the frame prefix first when
 * b is empty. Returns 0 or -1 (out of memory; b unchanged). The caller keeps cmd. */
int downstream_append(buf_t *b, const Wsgw__V1__Command *cmd);

/* downstream_send1_size / downstream_append_send1: the same for a Send of payload[0..len) to
 * one connection, encoded by hand (the echo path: no protobuf-c structs, sizes computed
 * once; bytes identical to protobuf-c's packing of that Command, tests/unit/test_pbcodec.c). */
size_t downstream_send1_size(uint64_t conn_id, size_t len, bool binary, int64_t api_ns);
int downstream_append_send1(buf_t *b, uint64_t conn_id, const uint8_t *payload, size_t len,
                            bool binary, int64_t api_ns);

/* downstream_finish: appends `ack` (omitted when 0, the proto3 default) and writes the 5-byte
 * gRPC prefix; b then holds one complete length-prefixed message. An empty b becomes a
 * Downstream with only the ack. Returns 0, or -1 (out of memory, or message over 4 GiB). */
int downstream_finish(buf_t *b, uint64_t ack);

/* downstream_varint: writes v as a protobuf varint into out (>= 10 bytes); returns its length. */
size_t downstream_varint(uint8_t *out, uint64_t v);

#endif
