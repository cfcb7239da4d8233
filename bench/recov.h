/* recov.h: ws-bench's recover mode, the client side: each connection speaks wsgw.v1.json
 * (README "Client protocol"), keeps the offset and epoch of its user channel from the
 * envelopes, goes away (closes) for --offline while the pusher goes on, comes back with
 * recover=<offset>.<epoch>.user:u<i>, and checks what arrives: the messages it missed, in order,
 * then the recovery notice, then live ones, each offset once.
 *
 * Counted per run (report_t): rc_away (messages pushed while away: the notice's offset minus
 * the offset at the drop), rc_recovered (of those, delivered by the recovery before its notice,
 * each the next offset), rc_ok / rc_missed (notices recovered true / false), rc_gaps (offsets
 * skipped), rc_dups (an offset again or backwards), and the time from the reconnect to the
 * notice (histogram `recovery`). Gaps, repeats and recovered=false notices are errors.
 *
 * Pure functions over a connection's recov_conn_t; thread: the connection's engine thread. */
#ifndef WSGW_BENCH_RECOV_H
#define WSGW_BENCH_RECOV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "report.h"

#define RECOV_EPOCH_MAX 32
#define RECOV_PREFIX 125 /* bytes of each message parsed (ws_frame.h WS_MAX_PREFIX) */

typedef enum { RC_LIVE = 0, RC_AWAY, RC_RECOVERING } recov_phase_t;

typedef struct recov_conn {
    uint64_t last;       /* the last offset received (0: none yet) */
    uint64_t at_drop;    /* last when it went away */
    int64_t t_back;      /* monotonic ns of the reconnect (RC_RECOVERING) */
    uint32_t recovered;  /* RC_RECOVERING: messages recovered in order so far */
    uint8_t phase;       /* recov_phase_t */
    char epoch[RECOV_EPOCH_MAX + 1];
} recov_conn_t;

typedef enum { RF_OTHER = 0, RF_MESSAGE, RF_RECOVERY } recov_kind_t;

/* What a frame's start says. */
typedef struct recov_frame {
    recov_kind_t kind;
    uint64_t offset;        /* 0: none */
    bool recovered;         /* RF_RECOVERY */
    int64_t stamp_ns;       /* RF_MESSAGE: the pusher's wall-clock stamp at the start of data */
    char epoch[RECOV_EPOCH_MAX + 1];
} recov_frame_t;

/* recov_parse: the envelope's start p[0..n) (a prefix of the text frame). */
void recov_parse(const uint8_t *p, size_t n, recov_frame_t *f);

/* recov_frame: what the connection does with a frame received at now; counts into rep
 * (received, latency from the stamp, the rc_* counters, errors). */
void recov_frame(recov_conn_t *c, const recov_frame_t *f, int64_t now, int64_t wall_now,
                 report_t *rep);

/* recov_drop: the connection goes away now (its position stays). */
void recov_drop(recov_conn_t *c);

/* recov_back: reconnected (the handshake carried recov_query); now: when the reconnect began,
 * what the recovery time is measured from. */
void recov_back(recov_conn_t *c, int64_t now);

/* recov_query: "recover=<offset>.<epoch>.user%3Au<user>" for the reconnect into out, or ""
 * when it has no position. Returns the length. */
size_t recov_query(const recov_conn_t *c, uint64_t user, char *out, size_t cap);

#endif
