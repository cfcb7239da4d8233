/* reasm.h: WebSocket message reassembly. lws hands a message over in chunks (one per rx
 * buffer, --rx-buffer bytes, and per frame of a fragmented message); the Message event itself
 * is the buffer (user \0 payload), allocated only while a message is in flight and grown from
 * lws' count of the frame bytes still to come. Service thread; pure (no lws calls). */
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

/* gw_reasm_add: one chunk. final: last chunk of the message's final frame; remaining: bytes
 * of the current frame still to come (a sizing hint). The first chunk fixes conn_id, user and
 * binary. A message that arrives whole in one chunk is copied once, with no reassembly. */
int gw_reasm_add(gw_reasm_t *r, uint64_t conn_id, const char *user, size_t ulen, bool binary,
                 const void *in, size_t len, bool final, size_t remaining, size_t max,
                 gw_event_t **out);
/* gw_reasm_reset: drops a message in flight. */
void gw_reasm_reset(gw_reasm_t *r);

#endif
