/* upstream.h: one writer thread per API node. It owns the TCP connection and the nghttp2
 * client session (h2c, prior knowledge) with --streams bidirectional gRPC streams to
 * /wsgw.v1.Exchange/Stream, drains the rings from every service thread, packs events into
 * Upstream batches, and routes Downstream commands back to the service threads' rings. */
#ifndef GW_UPSTREAM_H
#define GW_UPSTREAM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "gw.h"
#include "ring.h"
#include "wake.h"

typedef struct gw_up_priv gw_up_priv_t;

struct gw_up {
    int idx;
    gw_t *gw;
    char host[256];
    char port[16];
    char name[300];            /* host:port, the metric label */
    pthread_t tid;
    wake_t wake;               /* service threads and main signal; this thread consumes */
    _Atomic int connected;     /* writer sets: session up and streams open */
    _Atomic int stop_req;      /* main thread: 1 = flush and finish, 2 = stop now */
    _Atomic int idle;          /* writer sets: nothing queued, unacked or in the rings */
    _Atomic int want_room;     /* writer sets when a ring to a service thread was full; the
                                  service thread that next takes commands clears it and wakes
                                  the writer (svc.c) */
    bool dynamic;              /* address assigned at run time (dns:///), may be none */
    _Atomic uint64_t seed;     /* routing identity: hash of the address (writer stores) */
    _Atomic uint32_t addr_gen; /* bumped by gw_up_set_addr; the writer follows */
    char next_addr[300];       /* guarded by the resolver lock (gw_up_set_addr) */
    ring_t **from_svc;         /* [nsvc] = svc[k]->to_up[idx]; this thread consumes */
    ring_t **to_svc;           /* [nsvc] = svc[k]->from_up[idx]; this thread produces */
    ring_t **ret_from_svc;     /* [nsvc] our commands/payloads coming home (recycle.h) */
    ring_t **rc_peers;         /* [nsvc] = svc[k]->ret_from_up[idx]; writer thread's view */
    gw_up_priv_t *priv;        /* writer thread only */
};

/* gw_up_new: writer for API node `addr` ("host:port"; "" = a dynamic slot with no node yet),
 * index idx. The rings are attached by
 * the caller before gw_up_start. Returns NULL with a message in err. Main thread. */
gw_up_t *gw_up_new(gw_t *g, int idx, const char *addr, char *err, size_t errlen);
/* gw_up_set_addr (main thread): points a dynamic writer at "host:port" ("" = no node); the
 * writer disconnects from the old address (handing its messages back) and connects. */
void gw_up_set_addr(gw_up_t *u, const char *addr);
/* gw_up_start: starts the writer thread. Returns 0 or -errno. */
int gw_up_start(gw_up_t *u);
/* gw_up_wake (any thread): coalesced wake-up of the writer. */
static inline void gw_up_wake(gw_up_t *u) { wake_signal(&u->wake); }
/* gw_up_request (main thread): 1 = drain (flush, wait for acks), 2 = stop. */
void gw_up_request(gw_up_t *u, int what);
/* gw_up_join (main thread): waits for the writer thread to end (after gw_up_request 2). */
void gw_up_join(gw_up_t *u);
/* gw_up_free (main thread): frees the writer and the events left in its rings; after the
 * service threads stopped (they wake writers until then). */
void gw_up_free(gw_up_t *u);

#endif
