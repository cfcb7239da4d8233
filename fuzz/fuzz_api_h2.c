/* fuzz_api_h2.c: ws-api's HTTP/2 input: an nghttp2 server session with ws-api's own callbacks
 * and budgets (api/grpc_server.c, api/grpc_stream.c: dispatch, gRPC framing, Exchange and Push,
 * presence, routing, outbound queues) fed arbitrary client bytes. No sockets and no event loop
 * runs: the fuzzer plays the loop (chunks in, Downstreams flushed, output drained or left to
 * pile up, pushes routed from outside, deadlines forced).
 *
 * Input: 4 bytes of seed (chunk sizes, when output is read, pushes and deadlines), then the
 * client's byte stream (the connection preface first). Small budgets (16 streams, 4 KiB header
 * lists, 64 KiB messages, 128 KiB of unfinished messages, 256 KiB of queues) so that every
 * limit is reached. Checks after every step: the per-connection and server totals equal the
 * sums over the streams (buffered, queued), unfinished input stays within its budget plus one
 * growth step, the stream count is right; at the end, with every stream freed, all totals are
 * zero (nothing leaked from the accounting, and ASan sees the memory). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../api/bufpool.h"
#include "../api/exchange.h"
#include "../api/grpc_internal.h"
#include "../api/grpc_out.h"
#include "../api/presence.h"
#include "../api/push.h"
#include "../api/router.h"
#include "log.h"
#include "../api/wsapi_metrics.h"

static uint32_t rnd(uint32_t *s)
{
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x;
}

static uv_loop_t loop;
static bool ready;

static void setup_once(void)
{
    if (ready)
        return;
    ready = true;
    uv_loop_init(&loop);
    wsapi_metrics_init();
    log_set_level("error");
}

static void check(const gconn_t *c)
{
    size_t buffered = 0, queued = 0, n = 0;
    for (const gstream_t *s = c->streams; s; s = s->next) {
        buffered += s->buf_mem;
        queued += s->oq_mem;
        n++;
    }
    if (buffered != c->buffered || queued != c->queued || queued != c->srv->queued ||
        n != c->nstreams)
        abort();
    /* one stream may pass the budget by its last growth before it is failed */
    if (c->buffered > c->srv->cfg.conn_buffer + 2 * c->srv->cfg.max_message)
        abort();
}

/* What the loop does after each read: Downstreams out of the router, then the socket. */
static void flush(grpc_server_t *srv, gconn_t *c, bool drain)
{
    api_stream_t *as;
    while ((as = router_pop_dirty(srv->r)))
        as->flush(as);
    srv->wlist = NULL;
    c->in_wlist = false;
    if (!drain)
        return; /* a peer that does not read: output piles up in nghttp2 and the queues */
    for (int i = 0; i < 64; i++) {
        const uint8_t *d;
        ssize_t n = nghttp2_session_mem_send(c->ng, &d);
        /* frames land there, DATA payloads as refs to their chunks: "written", the chunks go */
        iovq_reset(&c->out, 64 * 1024);
        if (n <= 0)
            break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    setup_once();
    uint32_t seed;
    memcpy(&seed, data, 4);
    seed |= 1;
    data += 4;
    size -= 4;

    presence_t pres;
    router_t router;
    exchange_t x;
    presence_init(&pres);
    router_init(&router, &pres, 64 * 1024);
    exchange_init(&x, &pres, &router, (seed & 2) ? HANDLER_CHAT : HANDLER_ECHO);
    grpc_server_t *srv = calloc(1, sizeof *srv);
    gconn_t *c = calloc(1, sizeof *c);
    if (!srv || !c)
        abort();
    srv->loop = &loop;
    srv->cfg = (grpc_server_cfg_t){
        .listen = "127.0.0.1:0",
        .max_message = 64 * 1024,
        .push_token = (seed & 4) ? "pt" : "",
        .gateway_token = (seed & 8) ? "gt" : "",
        .stream_window = 65535,
        .conn_window = 1 << 20,
        .stream_queue = 64 * 1024,
        .max_streams = 16,
        .max_header_list = 4096,
        .header_rate = 1 << 20,
        .control_rate = 100,
        .reset_burst = 10,
        .conn_buffer = 128 * 1024,
        .conn_queue = 256 * 1024,
        .total_queue = 256 * 1024,
        .message_timeout_ms = 1000,
        .idle_timeout_ms = 1000,
    };
    srv->x = &x;
    srv->r = &router;
    srv->pres = &pres;
    if (bearer_init(&srv->push_auth, srv->cfg.push_token) < 0 ||
        bearer_init(&srv->gateway_auth, srv->cfg.gateway_token) < 0 || grpc__h2_setup(srv) < 0)
        abort();
    c->srv = srv;
    gout_init(c);
    c->io.fd = -1;
    snprintf(c->peer, sizeof c->peer, "fuzz");
    snprintf(c->anon_gw, sizeof c->anon_gw, "anonymous-fuzz");
    if (grpc__session_new(c) < 0)
        abort();
    srv->conns = c;
    srv->nconns = 1;

    static const uint8_t text[] = "pushed from outside";
    size_t off = 0;
    uint64_t now = uv_now(&loop);
    while (off < size) {
        uint32_t r = rnd(&seed);
        size_t n = 1 + (r & 0x1000 ? r % 4096 : r % 64);
        if (n > size - off)
            n = size - off;
        uint8_t *chunk = malloc(n); /* exactly sized: ASan sees any overread */
        memcpy(chunk, data + off, n);
        ssize_t rv = nghttp2_session_mem_recv(c->ng, chunk, n);
        free(chunk);
        off += n;
        check(c);
        if (rv < 0)
            break; /* the real server ends the connection here */
        if ((r >> 16) % 8 == 0) { /* a backend pushes to everyone */
            target_t t = {.all = true};
            (void)push_send(&router, &t, text, (r >> 20) % 2 ? sizeof text - 1 : 0, false);
        }
        if ((r >> 19) % 16 == 0) { /* time passes: unfinished messages run out of time */
            now += 2000;
            for (gstream_t *s = c->streams, *next; s; s = next) {
                next = s->next;
                grpc__stream_sweep(s, now);
            }
        }
        flush(srv, c, (r >> 24) % 4 != 0);
        check(c);
        if (!nghttp2_session_want_read(c->ng) && !nghttp2_session_want_write(c->ng))
            break; /* finished: the real server closes */
    }

    /* the connection goes: every stream freed, every total back to zero */
    while (c->streams) {
        gstream_t *s = c->streams;
        nghttp2_session_set_stream_user_data(c->ng, s->id, NULL);
        grpc__stream_free(s);
    }
    grpc__session_end(c);
    if (c->buffered || c->queued || srv->queued || c->nstreams || c->nblocked)
        abort();
    nghttp2_session_del(c->ng);
    iovq_free(&c->out);
    bufpool_drain();
    nghttp2_session_callbacks_del(srv->cbs);
    nghttp2_option_del(srv->opt);
    free(c);
    free(srv);
    exchange_free(&x);
    router_free(&router);
    presence_free(&pres);
    return 0;
}
