/* reasm.h: WebSocket message reassembly. A message arrives in chunks (what each read brought,
 * and per frame of a fragmented message); the Message event itself is the buffer (user \0
 * payload), allocated only while a message is in flight. It holds what arrived, not what a
 * frame header announced: it grows to at most twice the bytes received so far (and never past
 * the end of the message when that is known), so a client that announces 16 MB and sends
 * 15 bytes costs 30 bytes, not 16 MB of address space. Service thread; pure (no lws calls). */
#ifndef GW_REASM_H
#define GW_REASM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "event.h"

/* One pointer, so that it costs an idle connection 8 bytes: while a message is in flight, its
 * payload capacity is kept in the event's b_len (a Message has no b string; it is set back to
 * 0 when the message is complete). */
typedef struct gw_reasm {
    gw_event_t *ev;   /* message in flight, or NULL */
} gw_reasm_t;

enum {
    GW_REASM_MORE = 0,     /* chunk taken, message not complete */
    GW_REASM_DONE = 1,     /* *out holds the complete message (caller owns it) */
    GW_REASM_TOO_BIG = -1, /* over max: close 1009; state reset */
    GW_REASM_NOMEM = -2,   /* close 1011; state reset */
};

#define GW_REASM_REST_UNKNOWN SIZE_MAX

/* gw_reasm_add: one chunk. final: last chunk of the message's final frame; rest: payload
 * bytes of the message still to come after this chunk when known (inside its final frame),
 * else GW_REASM_REST_UNKNOWN; a sizing hint only. The first chunk fixes conn_id, user and
 * binary. A message that arrives whole in one chunk is copied once, with no reassembly. */
int gw_reasm_add(gw_reasm_t *r, uint64_t conn_id, const char *user, size_t ulen, bool binary,
                 const void *in, size_t len, bool final, size_t rest, size_t max,
                 gw_event_t **out);
/* gw_reasm_reset: drops a message in flight. */
void gw_reasm_reset(gw_reasm_t *r);

#endif
