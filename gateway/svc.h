/* svc.h: an lws service thread: its own uv loop and lws context, its own SO_REUSEPORT
 * listening socket, its connections, and its ends of the rings to and from every writer. */
#ifndef GW_SVC_H
#define GW_SVC_H

#include <libwebsockets.h>
#include <pthread.h>
#include <stdatomic.h>
#include <uv.h>

#include "conn_table.h"
#include "event.h"
#include "gw.h"
#include "index.h"
#include "link.h"
#include "msgroute.h"
#include "ring.h"
#include "svcpoll.h"

struct gw_svc {
    int idx;
    gw_t *gw;
    pthread_t tid;
    uv_loop_t loop;
    struct lws_context *ctx;   /* this thread */
    _Atomic(struct lws_context *) ctx_pub; /* ctx as other threads may see it (wake-ups) */
    struct lws_vhost *vh;
    int listen_fd;
    uv_poll_t listen_poll;
    uv_timer_t accept_timer;   /* re-enables accept after EMFILE */
    uv_timer_t drain_timer;    /* tick: requests from main, STOP */
    uv_timer_t ka_timer;       /* keepalive sweep (keepalive.h) */
    bool accepting;
    bool stopping;
    gw_svcpoll_t poll;         /* --svc-coalesce (svcpoll.h) */
    int host_epfd;             /* --inline-writers: an epoll set of the hosted writers' epoll
                                  fds, which a polling window waits on (svcpoll.c); -1 */
    /* While a wake drains the command rings, deliveries queue and the connections they touch
     * are listed here; after the drain each is flushed once (wsout.h: a burst of messages to
     * one connection leaves in one write). Service thread only. */
    uint64_t *dirty;           /* ids of connections with messages queued in this drain */
    size_t ndirty, cap_dirty;
    uint8_t *wscratch;         /* LWS_PRE + GW_WSOUT_SCRATCH bytes for coalesced writes */
    size_t hs_bytes;           /* bytes held in request heads split over reads (ws.c) */
    uint64_t *cp_busy;         /* ids of connections with recovery timers (clientproto.h) */
    size_t ncp_busy, cap_cp_busy;

    gw_conn_table_t conns;     /* service thread only */
    gw_index_t index;          /* service thread only */

    gw_link_t **links;         /* [nup] = gw_link(gw, idx, u): events up, commands down */
    ring_t **rc_peers;         /* [nup] links' home_cmd rings: this thread's recycle view */
    uint64_t *paused;          /* ids of connections paused for backpressure; this thread */
    size_t npaused, cap_paused;
    size_t pw_cursor;          /* pausewatch.h: next paused entry to check (0: no round on) */
    int64_t pw_next;           /* pausewatch.h: monotonic ns when the next round may start */
    _Atomic int wake_pending;  /* coalesces lws_cancel_service; any thread raises */
    gw_mr_t route;             /* which node each message goes to (msgroute.h) */
    uint32_t *rs_gen;          /* [nup] presence resync requested by writer u (0 = none) */
    uint32_t *rs_cursor;       /* [nup] next connection slot to resync */
    _Atomic int64_t nconns;    /* this thread's connections (metrics, /status) */
    _Atomic int stop_req;      /* main thread requests: GW_SVC_* below */
    _Atomic int ended;         /* set by this thread when its loop has ended */
};

/* gw_svc_new: allocates thread `idx` with its listening socket bound (SO_REUSEPORT) and rings.
 * Returns NULL with a message in err. Main thread. */
gw_svc_t *gw_svc_new(gw_t *g, int idx, char *err, size_t errlen);
/* gw_svc_start: starts the thread (creates the lws context on it). Returns 0 or -errno. */
int gw_svc_start(gw_svc_t *s);
/* gw_svc_wake (any thread): coalesced lws_cancel_service for this thread. */
void gw_svc_wake(gw_svc_t *s);
/* gw_svc_wake_fn: the same for a link (ud = the service thread). */
void gw_svc_wake_fn(void *ud);
/* gw_svc_request (main thread), in this order during a drain:
 *   GW_SVC_QUIESCE   stop accepting, stop reading from clients (replies still go out);
 *   GW_SVC_CLOSE_ALL close every client with 1001 "going away";
 *   GW_SVC_STOP      destroy the lws context and end the loop. */
enum { GW_SVC_QUIESCE = 1, GW_SVC_CLOSE_ALL = 2, GW_SVC_STOP = 3 };
void gw_svc_request(gw_svc_t *s, int what);
/* gw_svc_join (main thread): waits for the thread and frees what only it used (the links
 * stay: writers may still touch them; main frees those last). */
void gw_svc_join(gw_svc_t *s);

/* Called on the service thread (from ws.c): */
/* gw_svc_push_event: hands e to writer u (ring, or the overflow list when the ring is full,
 * in which case the caller's connection should be paused). Takes ownership of e.
 * Returns true if it went straight into the ring. */
bool gw_svc_push_event(gw_svc_t *s, int u, gw_event_t *e);
/* gw_svc_push_all: e (a copy per node) to every API node: Open and Close are replicated.
 * Takes e. false when some node's ring overflowed (the caller pauses the client). */
bool gw_svc_push_all(gw_svc_t *s, gw_event_t *e);
/* gw_svc_overflowing: true while events to writer u wait in the overflow list. */
static inline bool gw_svc_overflowing(const gw_svc_t *s, int u)
{
    return gw_handoff_overflowing(&s->links[u]->up);
}
/* gw_svc_pause: rx flow control off for c until the overflow drains. */
void gw_svc_pause(gw_svc_t *s, gw_conn_t *c);
/* gw_svc_on_wake: WAIT_CANCELLED handler: lower the flag, flush overflow, run commands. */
void gw_svc_on_wake(gw_svc_t *s);
/* gw_svc_deliver: queues p (a reference is taken) for c, written after this drain; a client
 * past --send-queue is closed 1008 instead. */
void gw_svc_deliver(gw_svc_t *s, gw_conn_t *c, gw_payload_t *p);
/* gw_svc_close_conn: closes c with code and reason (a reference is taken; NULL = a default
 * text for the code) soon, outside the current lws callback; queued output is dropped. */
void gw_svc_close_conn(gw_svc_t *s, gw_conn_t *c, int code, gw_payload_t *reason);
/* gw_svc_log_init (main thread, once): routes lws logs to our logger. */
void gw_svc_log_init(void);

#endif
