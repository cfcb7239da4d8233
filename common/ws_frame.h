/* ws_frame.h: RFC 6455 §5 framing, shared by ws-bench, ws-refecho --raw and ws-gateway:
 * encoding (client frames are masked, §5.3) and an incremental parser that never buffers data
 * payloads.
 *
 * The parser is fed whatever a read() returned. It reports data payload in slices (as the bytes
 * arrive), control frames whole, and the end of each message (after the FIN frame, fragments
 * joined by continuation frames, §5.4). Only frame headers, control frames (<= 125 bytes) and an
 * optional short prefix of each message are ever held between reads, in a small buffer that is
 * allocated on demand and released as soon as it is empty: an idle connection owns no buffer. */
#ifndef WSGW_WS_FRAME_H
#define WSGW_WS_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    WS_OP_CONT = 0x0,
    WS_OP_TEXT = 0x1,
    WS_OP_BINARY = 0x2,
    WS_OP_CLOSE = 0x8,
    WS_OP_PING = 0x9,
    WS_OP_PONG = 0xA,
};

/* Error codes (negative), ws_rx_feed's return values. */
enum {
    WS_OK = 0,
    WS_ERR_PROTOCOL = -1, /* reserved bits/opcodes, bad lengths, bad fragmentation, masking */
    WS_ERR_TOO_BIG = -2,  /* a message over the parser's max_message */
    WS_ERR_NOMEM = -3,
    WS_ERR_STOP = -4,     /* a callback asked to stop */
};

#define WS_MAX_HEADER 14     /* 2 + 8 (64-bit length) + 4 (mask key) */
#define WS_MAX_CONTROL 125   /* RFC 6455 §5.5 */
#define WS_MAX_PREFIX 125    /* largest message prefix a caller may ask to see in one piece
                                (a header and a prefix fit the hold buffer: WS_HOLD_CAP) */
#define WS_HOLD_CAP (WS_MAX_HEADER + WS_MAX_CONTROL)

/* ws_frame_header_len: bytes of header for a payload of len (mask adds 4). */
size_t ws_frame_header_len(size_t len, bool masked);

/* ws_frame_header: writes the header of one frame of len payload bytes (with the mask key when
 * mask is non-NULL) to out (ws_frame_header_len bytes of room); returns its length. */
size_t ws_frame_header(uint8_t *out, int opcode, bool fin, size_t len, const uint8_t *mask);
/* ws_frame_encode: writes one frame (header + payload, masked with `mask` when it is non-NULL)
 * into out. Returns the frame's size, or 0 when cap is too small. The payload is copied. */
size_t ws_frame_encode(uint8_t *out, size_t cap, int opcode, bool fin, const void *payload,
                       size_t len, const uint8_t *mask);

/* ws_mask: XORs n bytes with the 4-byte key, starting `offset` bytes into the key stream
 * (RFC 6455 §5.3). In place. */
void ws_mask(uint8_t *p, size_t n, const uint8_t key[4], size_t offset);

/* Callbacks of the parser. Each returns 0 to go on or non-zero to stop (the feed returns
 * WS_ERR_STOP). Data slices are in the caller's buffer (unmasked in place when the parser
 * expects masked frames) and valid only during the call. */
typedef struct ws_rx_cb {
    /* a data message starts: opcode is WS_OP_TEXT or WS_OP_BINARY. `prefix` holds the first
     * min(want_prefix, first frame's payload) bytes (they are also delivered by on_data). */
    int (*on_msg_begin)(void *ctx, int opcode, const uint8_t *prefix, size_t prefix_len);
    int (*on_data)(void *ctx, const uint8_t *p, size_t n);
    /* the FIN frame of the message ended; `len` is the total payload of the message */
    int (*on_msg_end)(void *ctx, uint64_t len);
    /* a whole control frame (close, ping, pong) */
    int (*on_control)(void *ctx, int opcode, const uint8_t *p, size_t n);
} ws_rx_cb_t;

/* Parser state: one per connection, ~40 bytes; zero-initialised is ready to use
 * (client side: expects unmasked frames, no message size limit, no prefix). */
typedef struct ws_rx {
    uint64_t remaining;   /* payload bytes left in the current data frame */
    uint64_t msg_len;     /* payload bytes of the current message so far */
    uint64_t max_message; /* 0 = unlimited */
    uint8_t *hold;        /* WS_HOLD_CAP bytes while a header/control frame is split, else NULL */
    uint8_t hold_len;
    uint8_t want_prefix;  /* <= WS_MAX_PREFIX */
    uint8_t msg_opcode;   /* opcode of the message in progress, 0 if none */
    uint8_t in_frame : 1; /* inside a data frame's payload */
    uint8_t frame_fin : 1;
    uint8_t expect_masked : 1; /* server side: frames must be masked (§5.1) */
    uint8_t mask_key[4];
    uint32_t mask_off;    /* position in the key stream of the current frame */
} ws_rx_t;

/* ws_rx_feed: parses n bytes (modified in place when unmasking). Returns WS_OK when all bytes
 * were consumed (a partial header/control frame is held for the next call), or a negative
 * WS_ERR_*; after an error the state is undefined (close the connection). */
int ws_rx_feed(ws_rx_t *rx, uint8_t *p, size_t n, const ws_rx_cb_t *cb, void *ctx);

/* ws_rx_free: releases the hold buffer (if any). */
void ws_rx_free(ws_rx_t *rx);

/* ws_close_payload: the 2-byte code + reason body of a close frame (§5.5.1) into out
 * (>= 2 + strlen(reason), reason truncated to 123 bytes). Returns its length. */
size_t ws_close_payload(uint8_t *out, uint16_t code, const char *reason);

/* ws_close_code: the status code of a received close body; 1005 (no status, §7.1.5) when the
 * body is empty, -1 when it is 1 byte (protocol error). */
int ws_close_code(const uint8_t *p, size_t n);

#endif
