/* chanrec.h: the channels of one wsgw.v1.json connection (README "Client protocol"): where the
 * client stands in each (the last offset delivered, the epoch), live messages put in offset
 * order, and recovery from the channel's history. A state machine with no I/O: clientproto.c
 * turns its actions into frames and Recover events; the simulator (tests/unit/
 * test_gw_chanrec.c) drives it through reordered, duplicated and lost messages and lost, late
 * and repeated answers. Service thread of the connection only.
 *
 * A channel is a user ("user:<id>") or a room ("room:<name>"). Messages the API kept in its
 * history carry an offset (from 1 within an epoch); others (offset 0) carry no position and
 * are delivered at once, whatever the channel's state. Per channel:
 *   WAIT        the client gave a position at the handshake and the channel is not the
 *               connection's yet (a room before its Join): nothing until gw_cr_start.
 *   RECOVERING  a Recover is out (gw_cr_start, or after a gap): live messages are held; the
 *               answer's publications go out in offset order, then a recovery notice, then
 *               the held messages that follow them.
 *   GAP         a live message came with an offset past last + 1: it is held for gap_wait in
 *               case the missing ones were only overtaken on the way, then recovered.
 *   LIVE        offset last + 1: delivered; offset <= last: a duplicate, dropped.
 *
 * Invariants (the simulator checks them on the client's side of the frames):
 *   C1 Within an epoch, the offsets delivered on a channel increase strictly: none twice, none
 *      out of order, recovered ones included.
 *   C2 Every jump (an offset delivered that is not last + 1) is followed, before any notice
 *      saying recovered=true and before the channel goes quiet, by a notice saying
 *      recovered=false: a client is never left believing it has everything when it has not.
 *   C3 Nothing is held without bound: held bytes stay within max_held_bytes (past it the
 *      recovery is abandoned, reported recovered=false), and every RECOVERING or GAP state
 *      ends within recover_timeout + gap_wait (a node that never answers: recovered=false).
 *   C4 Without loss upstream (every message either arrives live or is in the history), the
 *      client gets every offset after its position exactly once, in order, and every notice
 *      says recovered=true.
 */
#ifndef GW_CHANREC_H
#define GW_CHANREC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GW_CR_EPOCH_MAX 32 /* longer epochs are not taken as history positions */

typedef enum { GW_CR_LIVE = 0, GW_CR_WAIT, GW_CR_RECOVERING, GW_CR_GAP } gw_cr_state_t;

typedef struct gw_cr_held {
    uint64_t offset;
    void *msg;       /* the caller's message (a reference held through ops->ref) */
    size_t bytes;
} gw_cr_held_t;

typedef struct gw_chan {
    struct gw_chan *next;
    uint64_t last;            /* last offset delivered; 0: none yet */
    uint64_t from;            /* RECOVERING: recovering the offsets after this one */
    int64_t deadline;         /* RECOVERING: give up; GAP: recover (monotonic ns) */
    gw_cr_held_t *held;       /* RECOVERING, GAP: live messages, sorted by offset, no twins */
    uint32_t nheld, cap_held;
    size_t held_bytes;
    uint32_t rid;             /* RECOVERING: the id of the Recover out */
    uint8_t state;            /* gw_cr_state_t */
    bool client_pos;          /* RECOVERING: from a position the client gave (always notify) */
    bool cont;                /* RECOVERING: what went out since `from` is consecutive */
    bool replied;             /* RECOVERING: a page of the answer came */
    char epoch[GW_CR_EPOCH_MAX + 1];      /* of `last` (WAIT/RECOVERING: the client's) */
    char hold_epoch[GW_CR_EPOCH_MAX + 1]; /* of the held messages */
    uint16_t name_len;
    char name[];              /* "user:..." / "room:..." */
} gw_chan_t;

typedef struct gw_chans {
    gw_chan_t *head;
    uint32_t n;
    uint32_t next_rid;
} gw_chans_t;

typedef struct gw_cr_cfg {
    int64_t recover_timeout_ns; /* RECOVERING without the last answer page this long: give up */
    int64_t gap_wait_ns;        /* GAP: wait this long for the missing offsets */
    size_t max_held_bytes;      /* held per channel before a recovery is abandoned */
    uint32_t max_chans;         /* channels tracked per connection (more: delivered untracked) */
} gw_cr_cfg_t;

/* What happened, for metrics (clientproto.c counts them). */
typedef enum {
    GW_CR_EV_RECOVERED = 0, /* a recovery ended with everything */
    GW_CR_EV_MISSED,        /* a recovery ended with recovered=false */
    GW_CR_EV_TIMEOUT,       /* ... because no answer came in time */
    GW_CR_EV_OVERFLOW,      /* ... because too much was held */
    GW_CR_EV_GAP,           /* a live gap was seen */
    GW_CR_EV_GAP_FILLED,    /* ... and filled by the late messages themselves */
    GW_CR_EV_DUPLICATE,     /* a live or recovered message already delivered */
    GW_CR_EV_LATE,          /* an answer to no Recover out (timed out, repeated) */
    GW_CR_EV_RESET,         /* a live message of another epoch: the history restarted */
    GW_CR_EV_UNTRACKED,     /* a kept message over max_chans: delivered without ordering */
    GW_CR_EV_REQUEST_FAILED,/* the Recover could not be sent (memory): recovered=false */
    GW_CR_EV__N
} gw_cr_ev_t;

/* The actions. ctx is the caller's per-connection pointer, passed through. */
typedef struct gw_cr_ops {
    void (*deliver)(void *ctx, void *msg);          /* to the client now (takes its own ref) */
    void (*ref)(void *ctx, void *msg);              /* msg is held: keep it */
    void (*unref)(void *ctx, void *msg);            /* a held msg is done with */
    /* the recovery notice of ch (its position now: ch->last, ch->epoch) */
    void (*notice)(void *ctx, const gw_chan_t *ch, bool recovered);
    /* send a Recover (ch->name, after, epoch, id); false: could not (memory) */
    bool (*request)(void *ctx, const gw_chan_t *ch, uint64_t after, const char *epoch,
                    uint32_t id);
    void (*event)(void *ctx, gw_cr_ev_t ev);        /* metrics; may be NULL */
} gw_cr_ops_t;

/* A recovered publication handed to gw_cr_reply (the caller keeps msg). */
typedef struct gw_cr_pub {
    uint64_t offset;
    void *msg;
} gw_cr_pub_t;

/* gw_cr_init / gw_cr_free: an empty set; free drops every channel and held message. */
void gw_cr_init(gw_chans_t *set);
void gw_cr_free(gw_chans_t *set, const gw_cr_ops_t *ops, void *ctx);

/* gw_cr_find: the channel called name, or NULL. */
gw_chan_t *gw_cr_find(const gw_chans_t *set, const char *name, size_t len);

enum { GW_CR_NOMEM = -1, GW_CR_TOO_MANY = -2, GW_CR_BAD = -3 };

/* gw_cr_position: the client's position in a channel (offset, epoch: "" = any), from the
 * handshake: a WAIT entry. A second position for the same channel replaces the first.
 * Returns 0, GW_CR_NOMEM, GW_CR_TOO_MANY (max_chans) or GW_CR_BAD (epoch too long). */
int gw_cr_position(gw_chans_t *set, const gw_cr_cfg_t *cfg, const char *name, size_t len,
                   uint64_t offset, const char *epoch, size_t epoch_len);

/* gw_cr_start: the channel is now the connection's (it receives its live messages from here
 * on): a channel waiting with the client's position starts its recovery. Others: nothing. */
void gw_cr_start(gw_chans_t *set, const gw_cr_cfg_t *cfg, const gw_cr_ops_t *ops, void *ctx,
                 const char *name, size_t len, int64_t now);

/* gw_cr_leave: the channel is no longer the connection's (a room left): forgotten, held
 * messages dropped. */
void gw_cr_leave(gw_chans_t *set, const gw_cr_ops_t *ops, void *ctx, const char *name,
                 size_t len);

/* gw_cr_live: a live message of channel name (offset 0: not kept; delivered at once). The
 * caller keeps msg (delivered, held through ops->ref, or dropped). bytes: for the hold limit. */
void gw_cr_live(gw_chans_t *set, const gw_cr_cfg_t *cfg, const gw_cr_ops_t *ops, void *ctx,
                const char *name, size_t len, uint64_t offset, const char *epoch,
                size_t epoch_len, void *msg, size_t bytes, int64_t now);

/* gw_cr_reply: one page of the answer to Recover `id` of channel name: publications in offset
 * order; more: another page follows; else the last page with the history's newest offset
 * (top), its epoch and whether everything after the client's offset was there (ok). The
 * caller keeps the messages. */
void gw_cr_reply(gw_chans_t *set, const gw_cr_cfg_t *cfg, const gw_cr_ops_t *ops, void *ctx,
                 const char *name, size_t len, uint32_t id, const gw_cr_pub_t *pubs, size_t n,
                 bool more, uint64_t top, const char *epoch, size_t epoch_len, bool ok,
                 int64_t now);

/* gw_cr_tick: timers (recovery timeouts, gap waits). Returns true while a channel is
 * RECOVERING or GAP (the caller keeps ticking the connection). */
bool gw_cr_tick(gw_chans_t *set, const gw_cr_cfg_t *cfg, const gw_cr_ops_t *ops, void *ctx,
                int64_t now);

/* gw_cr_busy: a channel is RECOVERING or GAP. */
bool gw_cr_busy(const gw_chans_t *set);

#endif
