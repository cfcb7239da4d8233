/* wsout.c: coalesced writes of queued messages (see wsout.h). Service thread only. */
#include "wsout.h"

#include <libwebsockets.h>
#include <string.h>

#include "clock.h"
#include "gwm.h"
#include "log.h"
#include "metrics.h"
#include "outq.h"
#include "ws_frame.h"
#include "ws.h"

size_t gw_ws_frame_header(uint8_t *out, bool binary, uint64_t len)
{
    return ws_frame_header(out, binary ? WS_OP_BINARY : WS_OP_TEXT, true, (size_t)len, NULL);
}

/* Frames the head messages of c's queue into scratch while they fit; returns how many. */
static uint32_t gather(const gw_outq_t *q, uint8_t *out, size_t *len)
{
    size_t n = 0;
    uint32_t k = 0;
    for (; k < q->count; k++) {
        gw_payload_t *p = gw_outq_at(q, k);
        if (p->len > GW_WSOUT_COPY_MAX || n + GW_WS_HDR_MAX + p->len > GW_WSOUT_SCRATCH)
            break;
        n += gw_ws_frame_header(out + n, p->binary, p->len);
        memcpy(out + n, gw_payload_data(p), p->len);
        n += p->len;
    }
    *len = n;
    return k;
}

int gw_wsout_flush(gw_conn_t *c, uint8_t *scratch)
{
    uint8_t *buf = scratch + LWS_PRE;
    while (c->outq && !lws_partial_buffered(c->wsi)) {
        size_t n;
        uint32_t k = c->outq->count > 1 ? gather(c->outq, buf, &n) : 0;
        if (k < 2) { /* alone or large: framed in its own headroom, no copy */
            if (gw_ws_write(c, gw_outq_peek(c->outq)) < 0)
                return -1;
            gw_outq_pop(&c->outq);
            continue;
        }
        /* the bytes are complete frames: lws sends them as they are (a partial send stays
         * buffered in lws, which asks for WRITEABLE itself) */
        if (lws_write(c->wsi, buf, n, LWS_WRITE_RAW) < (int)n) {
            log_rl_warn("write failed", "conn_id=%llu", (unsigned long long)c->id);
            return -1;
        }
        int64_t now = clock_mono_ns();
        for (uint32_t i = 0; i < k; i++) {
            gw_payload_t *p = gw_outq_peek(c->outq);
            metrics_observe(gwm.stage_egress, (uint64_t)(now - p->t_recv));
            metrics_add(gwm.bytes_out, p->len);
            gw_outq_pop(&c->outq);
        }
        metrics_add(gwm.msgs_out, k);
    }
    if (c->outq)
        lws_callback_on_writable(c->wsi);
    return 0;
}
