/* wsout.h: writes a connection's queued messages. Several small ones are framed here, back to
 * back, into the thread's scratch buffer and handed to lws as one raw write: one send() for a
 * burst of messages instead of one per message. A message queued alone, or a large one, is
 * framed in the headroom of its own payload (gw_ws_write), with no copy. Service thread of the
 * connection only. */
#ifndef GW_WSOUT_H
#define GW_WSOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conn.h"

/* Messages up to this many payload bytes are copied into a coalesced write. */
#define GW_WSOUT_COPY_MAX 4096
/* One coalesced write holds at most this many bytes (headers included). */
#define GW_WSOUT_SCRATCH (64 * 1024)
/* Longest server frame header: 2 bytes + 8-byte length, no mask. */
#define GW_WS_HDR_MAX 10

/* gw_ws_frame_header: writes the header of one unfragmented, unmasked server frame (text or
 * binary, FIN set) of len payload bytes to out (GW_WS_HDR_MAX bytes of room); returns its
 * length (RFC 6455 §5.2: 7-bit, 16-bit or 64-bit length). */
size_t gw_ws_frame_header(uint8_t *out, bool binary, uint64_t len);

/* gw_wsout_flush: writes what c has queued until the queue is empty or the socket is full
 * (then lws asks for WRITEABLE, and this runs again from there). scratch: the thread's
 * buffer of LWS_PRE + GW_WSOUT_SCRATCH bytes. Returns 0, or -1 when lws refused a write
 * (the caller closes the connection). */
int gw_wsout_flush(gw_conn_t *c, uint8_t *scratch);

#endif
