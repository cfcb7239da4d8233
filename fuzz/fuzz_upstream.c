/* fuzz_upstream.c: ws-api's handling of one Upstream batch (api/exchange.c): protobuf decode,
 * presence from Open/Close, the chat handler (JSON parsing of client messages) and routing of
 * the resulting commands over two streams of two gateways. Every Downstream produced must
 * decode again. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../api/downstream.h"
#include "../api/exchange.h"
#include "../api/presence.h"
#include "../api/router.h"
#include "../api/wsapi_metrics.h"
#include "grpc_frame.h"
#include "wsgw.pb-c.h"

static void check_flush(api_stream_t *as)
{
    if (downstream_finish(&as->pending, as->ack) < 0)
        abort();
    size_t len = as->pending.len - GRPC_FRAME_HDR_LEN;
    Wsgw__V1__Downstream *d =
        wsgw__v1__downstream__unpack(NULL, len, as->pending.data + GRPC_FRAME_HDR_LEN);
    if (!d)
        abort(); /* ws-api produced something a gateway cannot decode */
    wsgw__v1__downstream__free_unpacked(d, NULL);
    buf_reset(&as->pending);
    as->ncmds = 0;
    as->ack_dirty = false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static int inited;
    if (!inited) { /* exchange sets presence gauges: they must be registered */
        wsapi_metrics_init();
        inited = 1;
    }
    presence_t p;
    router_t r;
    exchange_t x;
    presence_init(&p);
    router_init(&r, &p, 1 << 20);
    exchange_init(&x, &p, &r, data[0] & 1 ? HANDLER_CHAT : HANDLER_ECHO);
    api_stream_t s1, s2;
    memset(&s1, 0, sizeof s1);
    memset(&s2, 0, sizeof s2);
    s1.flush = s2.flush = check_flush;
    pres_session_t sa = {0}, sb = {0};
    presence_session_start(&p, &sa, 1, 2, 0);
    presence_session_start(&p, &sb, 2, 0, 0);
    if (presence_attach(&p, "gw-a", &sa, &s1) && presence_attach(&p, "gw-b", &sb, &s2)) {
        /* the input may hold several batches: split at a 0xFE 0xFE marker */
        const uint8_t *msg = data + 1;
        size_t left = size - 1;
        int turn = 0;
        while (left) {
            const uint8_t *m = memmem(msg, left, "\xfe\xfe", 2);
            size_t n = m ? (size_t)(m - msg) : left;
            exchange_upstream(&x, turn++ & 1 ? &s2 : &s1, msg, n);
            api_stream_t *s;
            while ((s = router_pop_dirty(&r)))
                s->flush(s);
            msg += n + (m ? 2 : 0);
            left -= n + (m ? 2 : 0);
        }
    }
    router_forget(&r, &s1);
    router_forget(&r, &s2);
    presence_detach(&p, &s1);
    presence_detach(&p, &s2);
    presence_session_end(&p, &sa);
    presence_session_end(&p, &sb);
    exchange_free(&x);
    router_free(&r);
    presence_free(&p);
    buf_free(&s1.pending);
    buf_free(&s2.pending);
    return 0;
}
