/* link.h: everything one service thread k and one API-node writer u share, and the only way
 * they know each other. Service threads and writers include this, never each other's headers.
 *
 *   up    events k -> u (Open, Message, Close, resync Opens and markers)   handoff.h
 *   down  commands u -> k (Send, Kick, Join, Leave, Reroute, Resync)        handoff.h
 *   home_ev / home_cmd: blocks going back to the thread that allocated them (recycle.h)
 *   done  per stream of u: how many of k's Message events u has resolved (acked, delivered
 *         without acks, handed back, or lost and counted): msgroute.h decides with it when a
 *         connection may move to another node without reordering
 *
 * Wake-ups: each side wakes the other through the functions main installs (a service thread:
 * lws_cancel_service, coalesced; a writer: its eventfd, coalesced). The handoffs' room
 * wake-ups use the same functions. */
#ifndef GW_LINK_H
#define GW_LINK_H

#include <stdatomic.h>
#include <stdint.h>

#include "handoff.h"
#include "ring.h"

typedef struct gw_link {
    int svc, node;              /* k, u; immutable */
    int nstreams;
    gw_handoff_t up;            /* producer: service thread k; consumer: writer u */
    gw_handoff_t down;          /* producer: writer u; consumer: service thread k */
    ring_t *home_ev;            /* producer: writer u; consumer: service thread k */
    ring_t *home_cmd;           /* producer: service thread k; consumer: writer u */
    _Atomic uint32_t *done;     /* [nstreams]; writer u stores, service thread k reads */
    _Atomic int want_done;      /* k raises while it holds messages waiting on u's progress */
    gw_handoff_wake_fn wake_svc_fn, wake_writer_fn;
    void *svc_ud, *writer_ud;   /* immutable after gw_link_new */
} gw_link_t;

/* gw_link_new: both handoffs (ring_size items each), the home rings and done counters.
 * wake_svc(svc_ud) wakes service thread k; wake_writer(writer_ud) wakes writer u (any thread).
 * Returns NULL when out of memory. Main thread. */
gw_link_t *gw_link_new(int k, int u, int nstreams, size_t ring_size,
                       gw_handoff_wake_fn wake_svc, void *svc_ud,
                       gw_handoff_wake_fn wake_writer, void *writer_ud);
/* gw_link_free: frees what is still in flight (events, commands, blocks going home). Main
 * thread, after both threads ended. */
void gw_link_free(gw_link_t *l);

/* Any thread: */
static inline void gw_link_wake_svc(gw_link_t *l) { l->wake_svc_fn(l->svc_ud); }
static inline void gw_link_wake_writer(gw_link_t *l) { l->wake_writer_fn(l->writer_ud); }
/* gw_link_busy: items in either ring (the overflows are their producers' to know). */
static inline bool gw_link_busy(gw_link_t *l)
{
    return gw_handoff_count(&l->up) || gw_handoff_count(&l->down);
}

#endif
