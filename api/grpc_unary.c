/* grpc_unary.c: the unary calls of ws-api's gRPC server, wsgw.v1.Push and wsgw.v1.Admin, once
 * their one request message is complete: decoded, checked (UTF-8 text, a target), handed to
 * push.h or admin.h, answered at once or, with --redis, when the answer comes (a wait record
 * that outlives a reset call). The stream machinery is grpc_stream.c's.
 *
 * Threads: loop thread only (inside nghttp2 callbacks, or a Redis reply's). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "cluster.h"
#include "grpc_internal.h"
#include "log.h"
#include "metrics.h"
#include "presence_gate.h"
#include "push.h"
#include "utf8.h"
#include "wsapi_metrics.h"
#include "wsgw.pb-c.h"

/* The answer of a unary call: its reply (gRPC-framed, taken) or an error status. */
static void unary_answer(gstream_t *s, int status, uint8_t *out, size_t outlen, const char *msg)
{
    if (status == GRPC_OK) {
        grpc__oq_push(s, out, outlen, 0);
        if (!s->eof && grpc__submit_response(s, false) != 0) {
            grpc__oq_clear(s);
            status = GRPC_INTERNAL;
            msg = "cannot submit response";
        }
    } else {
        free(out);
    }
    if (!s->eof)
        grpc__stream_end(s, status, msg);
}

/* A unary call whose answer comes later (--redis): its wait record (NULL: out of memory). */
static gwait_t *unary_wait(gstream_t *s)
{
    gwait_t *w = malloc(sizeof *w);
    if (w) {
        w->s = s;
        s->wait = w;
    }
    return w;
}

/* The later answer: to its stream if it is still there. */
static void unary_later(gwait_t *w, int status, uint8_t *out, size_t outlen, const char *msg)
{
    gstream_t *s = w->s;
    free(w);
    if (!s) {
        free(out); /* the client reset the call meanwhile */
        return;
    }
    s->wait = NULL;
    unary_answer(s, status, out, outlen, msg);
}

static void admin_done(void *ud, int status, uint8_t *out, size_t outlen, const char *msg)
{
    unary_later(ud, status, out, outlen, msg);
}

/* A unary wsgw.v1.Admin call, once its request is complete (admin.h answers it). */
static void admin_finish(gstream_t *s)
{
    grpc_server_t *srv = s->c->srv;
    gwait_t *w;
    if (s->push_count != 1) {
        unary_answer(s, GRPC_INTERNAL, NULL, 0, "expected exactly one request message");
    } else if (!(w = unary_wait(s))) {
        unary_answer(s, GRPC_RESOURCE_EXHAUSTED, NULL, 0, "out of memory");
    } else {
        admin_call_async(s->admin, srv->pres, &srv->x->rooms, srv->r, s->push_msg.data,
                         s->push_msg.len, admin_done, w);
    }
    grpc__drop_input(s);
}

/* The PushReply of a push (gateways, and the first 16 channels it was kept in), gRPC-framed
 * into *out: GRPC_OK, or an error status with *msg. */
static int push_reply(int rv, const push_result_t *res, uint8_t **out, size_t *outlen,
                      const char **msg)
{
    *out = NULL;
    *outlen = 0;
    if (rv < 0) {
        const char *away = push_err_away(rv);
        *msg = away ? away : "out of memory";
        return away ? GRPC_UNAVAILABLE : GRPC_RESOURCE_EXHAUSTED;
    }
    Wsgw__V1__PushReply rep = WSGW__V1__PUSH_REPLY__INIT;
    rep.gateways = (uint32_t)res->gateways;
    Wsgw__V1__ChannelPosition posv[16], *posp[16];
    size_t npos = res->nkept < 16 ? res->nkept : 16; /* (the first 16 channels) */
    for (size_t i = 0; i < npos; i++) {
        wsgw__v1__channel_position__init(&posv[i]);
        posv[i].channel = res->kept[i].channel;
        posv[i].offset = res->kept[i].pos.offset;
        posv[i].epoch = res->kept[i].pos.epoch;
        posp[i] = &posv[i];
    }
    rep.n_positions = npos;
    rep.positions = posp;
    size_t len = wsgw__v1__push_reply__get_packed_size(&rep);
    if (!(*out = malloc(GRPC_FRAME_HDR_LEN + len))) {
        *msg = "out of memory";
        return GRPC_RESOURCE_EXHAUSTED;
    }
    grpc_frame_header(*out, (uint32_t)len);
    wsgw__v1__push_reply__pack(&rep, *out + GRPC_FRAME_HDR_LEN);
    *outlen = GRPC_FRAME_HDR_LEN + len;
    return GRPC_OK;
}

/* --redis: a Push routed through the cluster (push.h): its answer. */
static void push_done(void *ud, int rv, push_result_t *res)
{
    uint8_t *out;
    size_t len;
    const char *msg = "";
    int status = push_reply(rv, res, &out, &len, &msg);
    metrics_inc(wsapi_m.grpc_push[status]);
    if (status != GRPC_OK)
        log_rl_warn("push failed", "status=%d error=\"%s\"", status, msg);
    unary_later(ud, status, out, len, msg);
}

/* The unary Push call, once its request is complete. */
void grpc__push_finish(gstream_t *s)
{
    grpc_server_t *srv = s->c->srv;
    int status = GRPC_OK;
    const char *msg = "";
    Wsgw__V1__PushRequest *req = NULL;
    if (s->admin) {
        admin_finish(s);
        return;
    }
    if (s->push_count != 1) {
        status = GRPC_INTERNAL;
        msg = "expected exactly one request message";
        goto reply;
    }
    req = wsgw__v1__push_request__unpack(NULL, s->push_msg.len, s->push_msg.data);
    if (!req) {
        metrics_inc(wsapi_m.dec_protobuf);
        status = GRPC_INTERNAL;
        msg = "cannot decode wsgw.v1.PushRequest";
        goto reply;
    }
    target_t t = {0};
    if (req->target) {
        t.conn_ids = req->target->conn_ids;
        t.n_conn_ids = req->target->n_conn_ids;
        t.user_ids = req->target->user_ids;
        t.n_user_ids = req->target->n_user_ids;
        t.room = req->target->room && *req->target->room ? req->target->room : NULL;
        t.all = req->target->all;
    }
    if (target_empty(&t)) {
        status = GRPC_INVALID_ARGUMENT;
        msg = "empty target";
        goto reply;
    }
    if (!req->binary && !gw_utf8_valid(req->payload.data, req->payload.len)) {
        /* It would go out as a text frame that every recipient must close on (1007, RFC 6455
         * §8.1): one bad push to all would disconnect everyone. The HTTP API refuses it too
         * (JSON strings are UTF-8). */
        metrics_inc(wsapi_m.push_bad_utf8);
        status = GRPC_INVALID_ARGUMENT;
        msg = "text payload is not valid UTF-8 (send it with binary: true)";
        goto reply;
    }
    const char *why = "presence resyncing";
    if (srv->x->cl ? !cluster_ready(srv->x->cl, &why) : !presence_gate_open(srv->pres)) {
        /* Gateways are still re-sending presence (issue 14 case 8): a user who is online may
         * look offline, so the push is refused rather than answered "0 gateways" and lost.
         * With --redis also while Redis is away. */
        status = GRPC_UNAVAILABLE;
        msg = why;
        goto reply;
    }
    if (srv->x->cl) { /* --redis: routed through Redis, answered when it is */
        gwait_t *w = unary_wait(s);
        if (!w) {
            status = GRPC_RESOURCE_EXHAUSTED;
            msg = "out of memory";
            goto reply;
        }
        push_result_t res;
        int pn = push_publish_async(srv->r, &t, req->payload.data, req->payload.len,
                                    req->binary, req->history, &res, push_done, w);
        if (pn != PUSH_PENDING)
            push_done(w, pn, &res);
        goto done;
    }
    push_result_t res;
    int rv = push_publish(srv->r, &t, req->payload.data, req->payload.len, req->binary,
                          req->history, NULL, &res);
    uint8_t *out;
    size_t len;
    status = push_reply(rv, &res, &out, &len, &msg);
    push_result_free(&res);
    if (status != GRPC_OK)
        goto reply;
    grpc__oq_push(s, out, len, 0);
    if (s->eof)
        goto done;
    if (grpc__submit_response(s, false) != 0) {
        grpc__oq_clear(s);
        status = GRPC_INTERNAL;
        msg = "cannot submit response";
        goto reply;
    }
reply:
    metrics_inc(wsapi_m.grpc_push[status]);
    if (status != GRPC_OK)
        log_rl_warn("push failed", "status=%d error=\"%s\" peer=%s", status, msg, s->c->peer);
    grpc__stream_end(s, status, msg);
done:
    if (req)
        wsgw__v1__push_request__free_unpacked(req, NULL);
    grpc__drop_input(s);
}
