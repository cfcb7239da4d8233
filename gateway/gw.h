/* gw.h: the gateway process: its service threads and upstream writers, and the few fields
 * they share (each marked with who writes it). */
#ifndef GW_GW_H
#define GW_GW_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct gw_svc gw_svc_t;
typedef struct gw_up gw_up_t;

typedef struct gw {
    int nsvc;                 /* service threads */
    int nup;                  /* API nodes = writer threads */
    int nstreams;             /* streams per API node */
    gw_svc_t **svc;           /* immutable after start */
    gw_up_t **up;             /* immutable after start */
    uint16_t prefix;          /* conn_id prefix */
    int64_t conn_cap;         /* effective connection cap (flag and fd limit) */
    _Atomic int draining;     /* main thread sets; everyone reads */
    _Atomic int64_t nconns;   /* open WebSocket connections; service threads add/sub */
} gw_t;

/* gw_ready: true when at least one API node is connected (any thread). */
bool gw_ready(const gw_t *g);

#endif
