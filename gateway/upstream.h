/* upstream.h: one writer thread per API node. It owns the TCP connection and the nghttp2
 * client session (h2c, prior knowledge, or h2 over TLS) with --streams bidirectional gRPC
 * streams to /wsgw.v1.Exchange/Stream, takes the service threads' events from the links, and
 * routes Downstream commands back through them. What is sent when, acks, replay, resync,
 * liveness and failover are decided by the node's delivery state machine (delivery.h); the
 * writer's files (upstream.c, upstream_h2.c, upstream_node.c) do the I/O around it. */
#ifndef GW_UPSTREAM_H
#define GW_UPSTREAM_H

#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "gw.h"
#include "link.h"
#include "ring.h"
#include "wake.h"

typedef struct gw_up_priv gw_up_priv_t;

struct gw_up {
    int idx;
    gw_t *gw;
    char host[256];
    char port[16];
    char name[300];            /* host:port or unix:PATH, the metric label */
    char unix_path[108];       /* unix:PATH nodes: the socket's path (host is "localhost", the
                                * :authority gRPC gives such targets); "" = TCP */
    char tls_name[256];        /* set before gw_up_start: the name a dynamic slot's nodes must
                                * present a certificate for (SNI, :authority); "" = host */
    pthread_t tid;
    wake_t wake;               /* service threads and main signal; this thread consumes */
    gw_node_t *node;           /* = &gw->nodes[idx]: connected, idle, seed (writer stores) */
    _Atomic int stop_req;      /* main thread: 1 = flush and finish, 2 = stop now */
    bool dynamic;              /* address assigned at run time (dns:///), may be none */
    _Atomic uint32_t addr_gen; /* bumped by gw_up_set_addr; the writer follows */
    char next_addr[300];       /* guarded by the resolver lock (gw_up_set_addr) */
    gw_link_t **links;         /* [nsvc] = gw_link(gw, k, idx): events in, commands out */
    ring_t **rc_peers;         /* [nsvc] links' home_ev rings: this thread's recycle view */
    gw_up_priv_t *priv;        /* writer thread only */
    bool hosted;               /* --inline-writers: runs on service thread idx % nsvc */
    sem_t hosted_done;         /* hosted: posted once the host ran the writer's end */
    bool await_host;           /* hosted and started: gw_up_join waits for hosted_done */
    bool host_due;             /* hosted: its host gave it work; a pass is due (host thread) */
};

/* gw_up_new: writer for API node `addr` ("host:port", "unix:PATH"; "" = a dynamic slot with no
 * node yet),
 * index idx. The links are attached by the caller (u->links) before gw_up_start. Returns
 * NULL with a message in err. Main thread. */
gw_up_t *gw_up_new(gw_t *g, int idx, const char *addr, char *err, size_t errlen);
/* gw_up_set_addr (main thread): points a dynamic writer at "host:port" ("" = no node); the
 * writer disconnects from the old address (handing its messages back) and connects. */
void gw_up_set_addr(gw_up_t *u, const char *addr);
/* gw_up_start: starts the writer thread (a hosted writer starts with its host: nothing to
 * do). Returns 0 or -errno. */
int gw_up_start(gw_up_t *u);
static inline bool gw_up_hosted_by(const gw_up_t *u, int k);
/* gw_up_wake (any thread): coalesced wake-up of the writer. On the service thread that hosts
 * it, a flag: the host makes the pass before its loop sleeps (svcpoll.h). */
static inline void gw_up_wake(gw_up_t *u)
{
    if (u->hosted && gw_up_hosted_by(u, gw_thread_svc))
        u->host_due = true;
    else
        wake_signal(&u->wake);
}
/* gw_up_wake_fn: the same for a link (ud = the writer). */
void gw_up_wake_fn(void *ud);
/* gw_up_request (main thread): 1 = drain (flush, wait for acks), 2 = stop. */
void gw_up_request(gw_up_t *u, int what);
/* gw_up_join (main thread): waits for the writer thread (or its host) to end it (after
 * gw_up_request 2). */
void gw_up_join(gw_up_t *u);
/* Hosted writers (--inline-writers, upstream_host.c). Instead of a thread of its own, the
 * writer's loop runs on service thread idx % nsvc: its uv loop polls the writer's epoll fd
 * and a timer for the machine's deadlines, and each pass is the pass the thread would make,
 * only without waiting (while the host polls, it waits its windows on the writer's epoll fd:
 * svcpoll.c). Nothing else changes: the links, wake-ups and rings stay, so other
 * service threads reach it as before; its host's own hand-offs cost no context switch. In
 * these files, "writer thread" is whichever thread runs the writer.
 * gw_up_hosted_by: whether service thread k hosts u (any thread; immutable after start).
 * gw_up_host (host thread, in its loop, before uv_run): begins the writer.
 * gw_up_host_end (host thread): ends it if it has not ended (its stop request came, or the
 * host is leaving), closes its handles and posts hosted_done; safe to call more than once. */
static inline bool gw_up_hosted_by(const gw_up_t *u, int k)
{
    return u->hosted && u->idx % u->gw->nsvc == k;
}
struct uv_loop_s;
void gw_up_host(gw_up_t *u, struct uv_loop_s *loop);
void gw_up_host_end(gw_up_t *u);
/* gw_up_host_fd (host thread): the writer's epoll fd (readable: its socket, or a wake-up from
 * a service thread), for a host that waits out a coalescing window (svcpoll.c); -1 when the
 * writer has ended. gw_up_host_pass (host thread): the pass its uv loop would make now;
 * readable: its epoll fd was seen readable (else the host gave it work: host_due, and it does
 * not look at the fd). */
int gw_up_host_fd(const gw_up_t *u);
void gw_up_host_pass(gw_up_t *u, bool readable);
/* gw_up_free (main thread): frees the writer; after the service threads stopped (they wake
 * writers until then). What is still in the links goes with them (gw_link_free). */
void gw_up_free(gw_up_t *u);

#endif
