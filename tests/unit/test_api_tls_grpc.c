/* test_api_tls_grpc.c: the gRPC server over TLS end to end (grpc_server.c on its own libuv
 * loop thread, driven by an nghttp2 + OpenSSL client here): Exchange echo with a TLS 1.3
 * KeyUpdate after every message and in the middle of a 4 MiB echo, the gateway token checked
 * (status 16 without it). Split from test_api_tls.c (tls_server.c over socket pairs); the
 * certificate: tls_cert.h. */
#include <errno.h>
#include <netinet/in.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <uv.h>

#include "../../api/exchange.h"
#include "../../api/grpc_server.h"
#include "../../api/presence.h"
#include "../../api/router.h"
#include "../../api/wsapi_metrics.h"
#include "buf.h"
#include "grpc_frame.h"
#include "test.h"
#include "tls_cert.h"
#include "wsgw.pb-c.h"

/* ---- grpc_server over TLS, end to end ----------------------------------------------------- */

typedef struct server_thread {
    uv_loop_t loop;
    uv_async_t stop;
    grpc_server_t *srv;
    presence_t pres;
    router_t router;
    exchange_t x;
    pthread_t th;
    int port;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool ready;
} server_thread_t;

static void on_stop(uv_async_t *a)
{
    server_thread_t *st = a->data;
    grpc_server_free(st->srv);
    uv_close((uv_handle_t *)&st->stop, NULL);
}

static void *server_main(void *arg)
{
    server_thread_t *st = arg;
    uv_run(&st->loop, UV_RUN_DEFAULT);
    return NULL;
}

static int server_start(server_thread_t *st, const char *gateway_token)
{
    memset(st, 0, sizeof *st);
    uv_loop_init(&st->loop);
    presence_init(&st->pres);
    router_init(&st->router, &st->pres, 1 << 20);
    exchange_init(&st->x, &st->pres, &st->router, HANDLER_ECHO);
    grpc_server_cfg_t cfg = {
        .listen = "127.0.0.1:0",
        .max_message = 16 << 20,
        .push_token = "",
        .gateway_token = gateway_token,
        .tls_cert = cert_path,
        .tls_key = key_path,
        .tls_handshake_timeout_ms = 5000,
        .stream_window = 16 << 20,
        .conn_window = 64 << 20,
        .stream_queue = 16 << 20,
        .max_streams = 100,
        .max_header_list = 16 << 10,
        .header_rate = 16 << 20,
        .control_rate = 100,
        .reset_burst = 100,
        .conn_buffer = 64 << 20,
        .conn_queue = 256 << 20,
        .total_queue = 256 << 20,
        .message_timeout_ms = 30000,
        .idle_timeout_ms = 60000,
    };
    char err[GRPC_SERVER_ERR_LEN];
    st->srv = grpc_server_new(&st->loop, &cfg, &st->x, &st->router, &st->pres, err);
    if (!st->srv) {
        fprintf(stderr, "grpc_server_new: %s\n", err);
        return -1;
    }
    st->port = grpc_server_port(st->srv);
    uv_async_init(&st->loop, &st->stop, on_stop);
    st->stop.data = st;
    return pthread_create(&st->th, NULL, server_main, st) == 0 ? 0 : -1;
}

static void server_stop(server_thread_t *st)
{
    uv_async_send(&st->stop);
    pthread_join(st->th, NULL);
    uv_run(&st->loop, UV_RUN_DEFAULT);
    uv_loop_close(&st->loop);
    exchange_free(&st->x);
    router_free(&st->router);
    presence_free(&st->pres);
}

/* An HTTP/2 client over TLS (nghttp2 + OpenSSL, non-blocking socket, poll): one Exchange
 * stream; sends framed Upstream messages, collects Downstream messages. */
typedef struct h2cli {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    nghttp2_session *ng;
    int32_t sid;
    buf_t up;       /* framed Upstream bytes not yet taken by nghttp2 */
    size_t up_off;
    bool deferred;
    buf_t wire;     /* bytes from mem_send not yet taken by SSL_write */
    size_t wire_off;
    buf_t down;     /* DATA of our stream */
    int downstreams, commands;
    uint64_t ack;
    buf_t payloads; /* every echoed payload, concatenated */
    bool ack_header, closed;
    int grpc_status;
    int key_updates_seen;
    bool failed;
} h2cli_t;

static void h2_msg_cb(int write_p, int version, int content_type, const void *buf, size_t len,
                      SSL *ssl, void *arg)
{
    (void)version;
    (void)ssl;
    h2cli_t *k = arg;
    if (!write_p && len >= 1 && content_type == SSL3_RT_HANDSHAKE &&
        ((const unsigned char *)buf)[0] == 24)
        k->key_updates_seen++;
}

static ssize_t up_read(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t len,
                       uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    (void)ng;
    (void)id;
    (void)flags;
    (void)src;
    h2cli_t *k = ud;
    size_t n = k->up.len - k->up_off;
    if (n == 0) {
        k->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    if (n > len)
        n = len;
    memcpy(buf, k->up.data + k->up_off, n);
    k->up_off += n;
    return (ssize_t)n;
}

static int h2_on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name,
                        size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                        void *ud)
{
    (void)ng;
    (void)f;
    (void)flags;
    h2cli_t *k = ud;
    if (namelen == 10 && memcmp(name, "x-wsgw-ack", 10) == 0 && valuelen == 1 && value[0] == '1')
        k->ack_header = true;
    if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0)
        k->grpc_status = atoi((const char *)value);
    return 0;
}

static int h2_on_data(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data,
                      size_t len, void *ud)
{
    (void)ng;
    (void)flags;
    (void)id;
    h2cli_t *k = ud;
    buf_append(&k->down, data, len);
    size_t off = 0;
    while (k->down.len - off >= 5) {
        uint32_t n = (uint32_t)k->down.data[off + 1] << 24 | (uint32_t)k->down.data[off + 2] << 16 |
                     (uint32_t)k->down.data[off + 3] << 8 | k->down.data[off + 4];
        if (k->down.len - off < 5 + (size_t)n)
            break;
        Wsgw__V1__Downstream *d =
            wsgw__v1__downstream__unpack(NULL, n, k->down.data + off + 5);
        if (!d) {
            k->failed = true;
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
        k->downstreams++;
        k->ack = d->ack;
        for (size_t i = 0; i < d->n_commands; i++) {
            Wsgw__V1__Command *c = d->commands[i];
            if (c->kind_case == WSGW__V1__COMMAND__KIND_SEND) {
                k->commands++;
                buf_append(&k->payloads, c->send->payload.data, c->send->payload.len);
            }
        }
        wsgw__v1__downstream__free_unpacked(d, NULL);
        off += 5 + n;
    }
    memmove(k->down.data, k->down.data + off, k->down.len - off);
    k->down.len -= off;
    return 0;
}

static int h2_on_close(nghttp2_session *ng, int32_t id, uint32_t code, void *ud)
{
    (void)ng;
    (void)id;
    (void)code;
    ((h2cli_t *)ud)->closed = true;
    return 0;
}

static int h2cli_open(h2cli_t *k, int port, const char *token)
{
    memset(k, 0, sizeof *k);
    k->grpc_status = -1;
    k->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(k->fd, (struct sockaddr *)&a, sizeof a) < 0)
        return -1;
    set_nonblock(k->fd);
    k->ctx = client_ctx("h2", 0);
    k->ssl = SSL_new(k->ctx);
    SSL_set_fd(k->ssl, k->fd);
    SSL_set_tlsext_host_name(k->ssl, "localhost");
    SSL_set1_host(k->ssl, "localhost"); /* verify as a gateway would: chain + host name */
    SSL_set_connect_state(k->ssl);
    SSL_set_msg_callback(k->ssl, h2_msg_cb);
    SSL_set_msg_callback_arg(k->ssl, k);
    nghttp2_session_callbacks *cbs;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_header_callback(cbs, h2_on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, h2_on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, h2_on_close);
    nghttp2_session_client_new(&k->ng, cbs, k);
    nghttp2_session_callbacks_del(cbs);
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 16 << 20}};
    nghttp2_submit_settings(k->ng, NGHTTP2_FLAG_NONE, iv, 1);
    nghttp2_session_set_local_window_size(k->ng, NGHTTP2_FLAG_NONE, 0, 64 << 20);
    char auth[128];
    snprintf(auth, sizeof auth, "Bearer %s", token ? token : "");
#define NV(n, v)                                                                               \
    {                                                                                          \
        (uint8_t *)(n), (uint8_t *)(v), strlen(n), strlen(v), NGHTTP2_NV_FLAG_NONE             \
    }
    nghttp2_nv nva[] = {
        NV(":method", "POST"),
        NV(":scheme", "https"),
        NV(":path", "/wsgw.v1.Exchange/Stream"),
        NV(":authority", "localhost"),
        NV("content-type", "application/grpc"),
        NV("te", "trailers"),
        NV("x-gateway-id", "gw-c-tls"),
        NV("authorization", auth),
    };
#undef NV
    nghttp2_data_provider dp = {.read_callback = up_read};
    k->sid = nghttp2_submit_request(k->ng, NULL, nva, token ? 8 : 7, &dp, NULL);
    return k->sid > 0 ? 0 : -1;
}

static void h2cli_close(h2cli_t *k)
{
    nghttp2_session_del(k->ng);
    SSL_free(k->ssl);
    SSL_CTX_free(k->ctx);
    close(k->fd);
    buf_free(&k->up);
    buf_free(&k->wire);
    buf_free(&k->down);
    buf_free(&k->payloads);
    ERR_clear_error();
}

static void h2cli_send_msg(h2cli_t *k, uint64_t seq, const uint8_t *payload, size_t len)
{
    Wsgw__V1__Message m = WSGW__V1__MESSAGE__INIT;
    m.payload.data = (uint8_t *)payload;
    m.payload.len = len;
    m.seq = seq;
    Wsgw__V1__Event ev = WSGW__V1__EVENT__INIT;
    ev.conn_id = 42;
    ev.kind_case = WSGW__V1__EVENT__KIND_MESSAGE;
    ev.message = &m;
    Wsgw__V1__Event *evs[1] = {&ev};
    Wsgw__V1__Upstream up = WSGW__V1__UPSTREAM__INIT;
    up.seq = seq;
    up.n_events = 1;
    up.events = evs;
    size_t n = wsgw__v1__upstream__get_packed_size(&up);
    uint8_t *b = malloc(GRPC_FRAME_HDR_LEN + n);
    grpc_frame_header(b, (uint32_t)n);
    wsgw__v1__upstream__pack(&up, b + GRPC_FRAME_HDR_LEN);
    buf_append(&k->up, b, GRPC_FRAME_HDR_LEN + n);
    free(b);
    if (k->deferred) {
        k->deferred = false;
        nghttp2_session_resume_data(k->ng, k->sid);
    }
}

static double now_s(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + tv.tv_usec / 1e6;
}

/* Moves bytes both ways until cond(k) or the deadline; returns cond(k). `mid` (optional) runs
 * once after the first DATA arrives (used to start a key update in the middle of a transfer). */
static bool h2cli_drive(h2cli_t *k, bool (*cond)(h2cli_t *), double secs,
                        void (*mid)(h2cli_t *))
{
    double end = now_s() + secs;
    bool mid_done = mid == NULL;
    while (!cond(k) && !k->failed && now_s() < end) {
        /* handshake, or a KeyUpdate with nothing else to write */
        if (!SSL_is_init_finished(k->ssl) || SSL_get_key_update_type(k->ssl) != SSL_KEY_UPDATE_NONE) {
            int r = SSL_do_handshake(k->ssl);
            if (r != 1) {
                int e = SSL_get_error(k->ssl, r);
                if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                    k->failed = true;
                    break;
                }
            }
            ERR_clear_error();
        }
        bool want_out = false;
        if (SSL_is_init_finished(k->ssl)) {
            for (;;) {
                if (k->wire.len == k->wire_off) {
                    k->wire.len = k->wire_off = 0;
                    const uint8_t *d;
                    ssize_t n = nghttp2_session_mem_send(k->ng, &d);
                    if (n <= 0)
                        break;
                    buf_append(&k->wire, d, (size_t)n);
                }
                size_t w = 0;
                if (SSL_write_ex(k->ssl, k->wire.data + k->wire_off, k->wire.len - k->wire_off,
                                 &w) != 1) {
                    int e = SSL_get_error(k->ssl, 0);
                    ERR_clear_error();
                    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                        k->failed = true;
                    want_out = true;
                    break;
                }
                k->wire_off += w;
            }
            uint8_t rb[65536];
            size_t n = 0;
            while (SSL_read_ex(k->ssl, rb, sizeof rb, &n) == 1) {
                size_t before = k->payloads.len + (size_t)k->downstreams;
                if (nghttp2_session_mem_recv(k->ng, rb, n) < 0) {
                    k->failed = true;
                    break;
                }
                if (!mid_done && k->payloads.len + (size_t)k->downstreams != before) {
                    mid_done = true;
                    mid(k);
                }
            }
            int e = SSL_get_error(k->ssl, 0);
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                k->closed = true; /* the server went away */
            ERR_clear_error();
            if (nghttp2_session_want_write(k->ng))
                want_out = true;
        }
        struct pollfd pfd = {.fd = k->fd, .events = POLLIN | (want_out ? POLLOUT : 0)};
        poll(&pfd, 1, 20);
    }
    return cond(k);
}

static int g_want;
static bool acked_want(h2cli_t *k)
{
    return k->ack >= (uint64_t)g_want && k->commands >= g_want;
}
static bool stream_closed(h2cli_t *k)
{
    return k->closed;
}
static size_t g_big_len;
static bool big_echoed(h2cli_t *k)
{
    return k->payloads.len >= g_big_len;
}
static void key_update_now(h2cli_t *k)
{
    SSL_key_update(k->ssl, SSL_KEY_UPDATE_REQUESTED);
}

static void test_grpc_server_tls_key_updates(void)
{
    server_thread_t st;
    REQUIRE(server_start(&st, "gw-tok") == 0);
    h2cli_t k;
    REQUIRE(h2cli_open(&k, st.port, "gw-tok") == 0);
    /* 20 echoes, a client KeyUpdate (update_requested) after each one */
    int n = 20;
    for (int i = 1; i <= n; i++) {
        char msg[32];
        int len = snprintf(msg, sizeof msg, "m%d", i);
        h2cli_send_msg(&k, (uint64_t)i, (const uint8_t *)msg, (size_t)len);
        g_want = i;
        if (!h2cli_drive(&k, acked_want, 10, NULL))
            break;
        CHECK(SSL_key_update(k.ssl, i % 2 ? SSL_KEY_UPDATE_REQUESTED
                                          : SSL_KEY_UPDATE_NOT_REQUESTED) == 1);
    }
    CHECK(!k.failed);
    CHECK(k.ack_header);
    CHECK_EQ(k.ack, n);
    CHECK_EQ(k.commands, n);
    CHECK(k.key_updates_seen >= n / 2 - 1); /* answered every requested update (the last may
                                                still be in flight) */
    CHECK_EQ(SSL_version(k.ssl), TLS1_3_VERSION);
    /* a 4 MiB echo with a requested KeyUpdate in the middle of the transfer */
    size_t big = 4 << 20;
    uint8_t *p = malloc(big);
    REQUIRE(p);
    for (size_t i = 0; i < big; i++)
        p[i] = (uint8_t)(i * 13);
    size_t before = k.payloads.len;
    int ups = k.key_updates_seen;
    h2cli_send_msg(&k, (uint64_t)n + 1, p, big);
    g_big_len = before + big;
    CHECK(h2cli_drive(&k, big_echoed, 30, key_update_now));
    CHECK(k.payloads.len == before + big && memcmp(k.payloads.data + before, p, big) == 0);
    g_want = n + 1;
    CHECK(h2cli_drive(&k, acked_want, 10, NULL));
    /* one more echo: the server's answering KeyUpdate precedes its next application data */
    h2cli_send_msg(&k, (uint64_t)n + 2, (const uint8_t *)"last", 4);
    g_want = n + 2;
    CHECK(h2cli_drive(&k, acked_want, 10, NULL));
    CHECK(k.key_updates_seen > ups);
    free(p);
    h2cli_close(&k);

    /* without the gateway token: grpc-status 16, nothing echoed */
    h2cli_t bad;
    REQUIRE(h2cli_open(&bad, st.port, NULL) == 0);
    h2cli_send_msg(&bad, 1, (const uint8_t *)"x", 1);
    CHECK(h2cli_drive(&bad, stream_closed, 10, NULL));
    CHECK_EQ(bad.grpc_status, 16);
    CHECK_EQ(bad.commands, 0);
    h2cli_close(&bad);
    server_stop(&st);
}

int main(void)
{
    if (tls_test_init() < 0)
        return 1;
    RUN(test_grpc_server_tls_key_updates);
    remove_cert();
    return TEST_REPORT();
}
