/* downstream.h: decoding a Downstream message from an API node (dsdec.h) and splitting its
 * commands into per-service-thread gw_cmd objects (conn_ids by the thread bits of the id; user_ids,
 * room and all to every thread). Writer thread; pure apart from the sink callbacks. */
#ifndef GW_DOWNSTREAM_H
#define GW_DOWNSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "event.h"

typedef struct gw_ds_sink {
    int nsvc;              /* service threads */
    uint16_t prefix;       /* our conn_id prefix: other ids are not ours */
    int64_t t_recv;        /* monotonic receive time, copied into payloads */
    /* emit: takes ownership of cmd for service thread `thread`. */
    void (*emit)(void *ud, int thread, gw_cmd_t *cmd);
    /* api_ns: called for every Send carrying api_ns (may be NULL). */
    void (*api_ns)(void *ud, int64_t api_ns);
    void *ud;
} gw_ds_sink_t;

typedef struct gw_ds_result {
    bool has_ack;
    uint64_t ack;
    size_t commands;
    size_t undeliverable;  /* targets that cannot be ours (foreign or malformed ids) */
    size_t nomem;          /* commands lost to allocation failure (logged by the caller) */
} gw_ds_result_t;

/* gw_downstream_handle: decodes msg and emits the commands. Returns 0, or -1 when msg is not a
 * valid Downstream (nothing emitted). */
int gw_downstream_handle(const uint8_t *msg, size_t len, const gw_ds_sink_t *sink,
                         gw_ds_result_t *res);

#endif
