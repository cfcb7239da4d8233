/* grpc_frame.h: gRPC length-prefixed message framing (gRPC over HTTP/2, "Length-Prefixed-
 * Message": 1-byte compressed flag, 4-byte big-endian length, message).
 *
 * HTTP/2 DATA frame boundaries have nothing to do with message boundaries: the decoder takes
 * bytes as they come (split or merged) and calls back once per complete message. Shared by
 * ws-api (server side) and ws-gateway (client side). */
#ifndef WSGW_GRPC_FRAME_H
#define WSGW_GRPC_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GRPC_FRAME_HDR_LEN 5

/* grpc_data_frame_len: how long the next DATA frame carrying gRPC messages may be, for
 * nghttp2's data_source_read_length_callback: the smaller of the stream and connection
 * windows (swin, cwin), at most the peer's SETTINGS_MAX_FRAME_SIZE (remote_max) and max, at
 * least 1. Larger frames than nghttp2's 16 KiB default mean fewer frames and fewer messages
 * cut by a frame boundary (which the peer reassembles: a copy). Pure. */
static inline long grpc_data_frame_len(int32_t swin, int32_t cwin, uint32_t remote_max,
                                       long max)
{
    long n = swin < cwin ? swin : cwin;
    if (n > 0 && (uint32_t)n > remote_max)
        n = (long)remote_max;
    if (n > max)
        n = max;
    return n > 0 ? n : 1;
}

enum {
    GRPC_FRAME_OK = 0,
    GRPC_FRAME_ERR_TOO_LARGE = -1,  /* declared length above the decoder's max */
    GRPC_FRAME_ERR_COMPRESSED = -2, /* compressed flag set: we never negotiate compression */
    GRPC_FRAME_ERR_BAD_FLAG = -3,   /* flag byte other than 0 or 1 */
    GRPC_FRAME_ERR_NOMEM = -4,
};

/* Called once per complete message. `msg` is valid only during the call. Return 0 to go on,
 * a negative value to stop: grpc_dec_feed then returns that value. */
typedef int (*grpc_frame_cb)(void *ud, const uint8_t *msg, size_t len);

typedef struct grpc_dec {
    size_t max;              /* largest accepted message */
    uint8_t hdr[GRPC_FRAME_HDR_LEN];
    size_t hdr_have;         /* header bytes seen for the message in progress */
    size_t need;             /* body length of the message in progress */
    size_t have;             /* body bytes buffered */
    uint8_t *buf;            /* body buffer, while a message spans feeds (and kept after it up
                                to `keep`); grows with the bytes that arrived, capacity within
                                64 KiB of them above 64 KiB (allocated at the declared length
                                only up to `trust`) */
    size_t cap;
    size_t trust;            /* grpc_dec_trust: bodies up to this are allocated whole */
    size_t keep;             /* buffers up to this are kept between messages */
    int error;               /* sticky: once failed, every later feed returns it */
} grpc_dec_t;

/* grpc_dec_init: a decoder accepting messages up to `max` bytes. Never fails. */
void grpc_dec_init(grpc_dec_t *d, size_t max);
/* grpc_dec_trust: for a peer trusted with `bytes` of this decoder's memory (the gateway's API
 * nodes, not ws-api's gateways): a body of up to `bytes` that spans feeds is allocated at its
 * declared length at once, and the buffer is kept between messages up to that size. Growing
 * with what arrives copied a 256 KiB Downstream ~3 times over in realloc (glibc's dynamic mmap
 * threshold puts such buffers on the heap after the first ones are freed): 2.5 % of the
 * gateway's cycles in the closed loop. Larger bodies grow as without it. */
void grpc_dec_trust(grpc_dec_t *d, size_t bytes);
/* grpc_dec_keep: the buffer is kept between messages up to `bytes` (64 KiB by default), still
 * grown only with what arrives. For a peer that sends large messages all the time (ws-api's
 * gateways: batches up to 256 KiB): a buffer allocated, grown and freed per message is mmap'd
 * and unmapped each time, ~64 page faults for a 256 KiB batch (6 % of ws-api's cycles in the
 * closed loop). The owner accounts the kept capacity (grpc_dec_t.cap) and frees it with
 * grpc_dec_shrink when memory is short or the stream goes quiet. */
void grpc_dec_keep(grpc_dec_t *d, size_t bytes);
/* grpc_dec_shrink: releases a buffer kept between messages; nothing while a message is in
 * progress (its bytes are in the buffer). Returns the bytes released. */
size_t grpc_dec_shrink(grpc_dec_t *d);
/* grpc_dec_free: releases the buffer; the decoder may be re-initialised afterwards. */
void grpc_dec_free(grpc_dec_t *d);

/* grpc_dec_feed: consumes all of data[0..len). Calls cb for every message it completes, in
 * order; a message that lies entirely inside `data` is passed without copying. Returns 0, a
 * GRPC_FRAME_ERR_* code (sticky: the stream is broken), or the callback's negative value.
 * The decoder copies what it keeps; the caller keeps ownership of data. */
int grpc_dec_feed(grpc_dec_t *d, const uint8_t *data, size_t len, grpc_frame_cb cb, void *ud);

/* grpc_dec_partial: true while a message has started but not ended (at end of stream this
 * means the peer sent a truncated message). */
bool grpc_dec_partial(const grpc_dec_t *d);

/* grpc_frame_header: writes the 5-byte prefix for an uncompressed message of `len` bytes
 * (len must fit in 32 bits). */
void grpc_frame_header(uint8_t out[GRPC_FRAME_HDR_LEN], uint32_t len);

/* grpc_frame_strerror: text for a GRPC_FRAME_ERR_* code. */
const char *grpc_frame_strerror(int err);

#endif
