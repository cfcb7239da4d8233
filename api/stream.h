/* stream.h: the part of an Exchange stream that presence and routing see.
 *
 * grpc_server.c embeds one api_stream_t in every live /wsgw.v1.Exchange/Stream stream; unit
 * tests embed it in fakes. Commands for the gateway are encoded straight into `pending` (a
 * gRPC-framed Downstream under construction) and the stream is put on the router's dirty
 * list; the owner turns `pending` into a Downstream (ack appended) when it flushes.
 *
 * All fields: loop thread only (ws-api is single-threaded). */
#ifndef WSGW_API_STREAM_H
#define WSGW_API_STREAM_H

#include <stdbool.h>
#include <stdint.h>

#include "buf.h"

struct pres_gateway;
struct pres_session;

typedef struct api_stream {
    /* presence: the gateway this stream belongs to and its list of streams */
    struct pres_gateway *gw;
    struct api_stream *gw_prev, *gw_next;
    struct pres_session *sess; /* its gRPC connection (kept after detach) */
    bool complete;             /* delivered a batch with Upstream.presence_complete */

    /* router: pending Downstream (5 reserved header bytes + Command entries, field 1) */
    buf_t pending;
    size_t ncmds;       /* commands in pending */
    uint64_t ack;       /* highest Upstream.seq fully handled (set by the owner) */
    bool ack_dirty;     /* ack changed since the last Downstream */
    bool dirty;         /* on the router's dirty list */
    bool closed;        /* ending: commands are no longer accepted */
    struct api_stream *dirty_prev, *dirty_next;

    /* router scratch while one target is routed */
    uint64_t rt_epoch;
    int rt_part;

    /* cluster.h (--redis): batches whose Redis writes are not answered yet hold the ack back */
    struct cl_batch *cl_wait; /* unfinished batches, oldest first */
    uint32_t cl_out;          /* how many */
    uint64_t cl_after;        /* highest seq handled while some were unfinished */

    /* owner hook: turn `pending` into a Downstream now (called when pending grows large) */
    void (*flush)(struct api_stream *s);
    /* owner hook: fail the stream (grpc-status, message) from outside a batch's handling */
    void (*fail)(struct api_stream *s, int status, const char *msg);
    uint64_t serial; /* process-unique number, for logs */
} api_stream_t;

#endif
