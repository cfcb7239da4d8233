/* main.c: ws-api, the API service behind ws-gateway: gRPC Exchange/Push over h2c or h2+TLS
 * (nghttp2) and the HTTP/1.1 JSON push API over HTTP or HTTPS (http_server.c), presence,
 * echo/chat/none handlers.
 *
 * Security flags (each also WSAPI_<NAME>, or a key in --config FILE; prefer those two for the
 * tokens: a command line is visible to every local user in ps):
 *   --push-token T          /v1/... (HTTP 401) and gRPC wsgw.v1.Push/Push (grpc-status 16)
 *                           need "authorization: Bearer T".
 *   --gateway-token T       gRPC wsgw.v1.Exchange/Stream needs "authorization: Bearer T"
 *                           (else trailers-only grpc-status 16 on that stream only). The
 *                           gateway sends it with its own --gateway-token.
 *   --grpc-tls-cert/-key F  the gRPC port speaks only HTTP/2 over TLS (1.2+, ALPN h2 required);
 *                           without them h2c (plain) as before. Both or neither.
 *   --http-tls-cert/-key F  the HTTP port speaks only HTTPS (HTTP/1.1). Both or neither.
 *   --tls-handshake-timeout a gRPC TLS handshake not done by then: connection dropped.
 * Token checks are constant time (SHA-256 digests compared with CRYPTO_memcmp) and tokens are
 * never logged. Rejections: wsapi_auth_rejects_total{api,reason}; TLS handshake failures:
 * wsapi_tls_handshake_errors_total{reason}.
 *
 * One thread, one event loop: libuv. The HTTP push API (http_server.c) and the nghttp2 sockets
 * (uv_poll on raw non-blocking fds) share one loop and one thread. Presence, routing and
 * every Exchange stream are then touched by that thread only: no locks, and a push from HTTP
 * reaches the gateways' streams directly. (libuv's check handles give a natural "flush after
 * this iteration's I/O" point.) One core is plenty for ws-api: it does little work per message
 * compared with the gateway, and horizontal scale is more nodes (gateways hash users over them).
 *
 * Shutdown (SIGTERM/SIGINT): stop accepting, GOAWAY on every gRPC connection, keep serving the
 * open streams for --shutdown-timeout, then end the remaining Exchange streams with grpc-status
 * 14 (UNAVAILABLE: the gateway moves to another node and re-sends what is unacked), give the
 * bytes two more seconds to leave, exit 0. A second signal exits at once. */
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "bufpool.h"
#include "clock.h"
#include "cluster.h"
#include "exchange.h"
#include "flags.h"
#include "grpc_server.h"
#include "handler.h"
#include "history.h"
#include "history_metrics.h"
#include "log.h"
#include "presence.h"
#include "presence_gate.h"
#include "push_http.h"
#include "redis.h"
#include "router.h"
#include "wsapi_metrics.h"

/* A Downstream is flushed before it grows past this. Small enough that most arrive whole in
 * one of the gateway's 64 KiB reads and are decoded where they lie: at 1 MiB nearly every one
 * spanned reads and was copied whole into the gateway's decoder buffer (bench/RESULTS.md #61);
 * a single command larger than this still goes out alone (grpc's default receive limit is
 * 4 MiB). */
#define DOWNSTREAM_SOFT_MAX (16 * 1024)
#define DRAIN_EXTRA_MS 2000

static const char *grpc_listen, *http_listen, *handler_name, *push_token, *log_level_name;
static const char *gateway_token, *grpc_tls_cert, *grpc_tls_key, *http_tls_cert, *http_tls_key;
static int64_t max_message, max_body, stream_queue, stream_window, conn_window, shutdown_us;
static int64_t tls_handshake_us, http_max_conns, http_head_us, http_body_us, http_idle_us;
static int64_t h2_max_streams, h2_max_header_list, h2_header_rate, h2_control_rate;
static int64_t h2_reset_burst;
static int64_t grpc_unix_sndbuf;
static int64_t h2_conn_buffer, h2_conn_queue, h2_total_queue, h2_message_us, h2_idle_us;
static int64_t presence_grace_us, presence_sync_us;
static const char *redis_url, *redis_password, *node_id;
static int64_t presence_heartbeat_us, presence_ttl_us;
static int64_t redis_timeout_us, redis_connect_timeout_us, redis_max_pending;
static int64_t hist_size, hist_ttl_us, hist_meta_ttl_us, hist_recover_max, hist_max_bytes;
static int64_t hist_page_bytes;
static bool hist_all;
static int64_t max_room_name, max_rooms_per_conn;

static const flag_t flag_tab[] = {
    {"grpc-listen", FLAG_STR, "0.0.0.0:8081", &grpc_listen,
     "gRPC over h2c: wsgw.v1.Exchange and wsgw.v1.Push; unix:PATH listens on a Unix domain "
     "socket (a gateway on the same host: less CPU per message than TCP loopback)"},
    {"http-listen", FLAG_STR, "0.0.0.0:8082", &http_listen,
     "HTTP/1.1 JSON push API, /healthz, /readyz, /metrics; or unix:PATH"},
    {"handler", FLAG_STR, "echo", &handler_name, "echo | chat | none"},
    {"max-room-name", FLAG_INT, "255", &max_room_name,
     "chat handler: bytes of a room name; a join, leave or say naming a longer one is refused "
     "(the client gets an error message; wsapi_chat_refusals_total)", 1, 1 << 20},
    {"max-rooms-per-conn", FLAG_INT, "128", &max_rooms_per_conn,
     "chat handler without --redis: rooms one connection may join; past it the join is "
     "refused (the client gets an error message; wsapi_chat_refusals_total)", 1, 1 << 20},
    {"push-token", FLAG_STR, "", &push_token,
     "when set, /v1/* (else 401) and gRPC Push (else grpc-status 16) need "
     "'Authorization: Bearer TOKEN'"},
    {"gateway-token", FLAG_STR, "", &gateway_token,
     "when set, gRPC Exchange streams need 'authorization: Bearer TOKEN' (else grpc-status 16)"},
    {"grpc-tls-cert", FLAG_STR, "", &grpc_tls_cert,
     "PEM certificate chain: the gRPC port speaks HTTP/2 over TLS only (ALPN h2, TLS 1.2+)"},
    {"grpc-tls-key", FLAG_STR, "", &grpc_tls_key, "PEM private key for --grpc-tls-cert"},
    {"http-tls-cert", FLAG_STR, "", &http_tls_cert,
     "PEM certificate chain: the HTTP port speaks HTTPS only"},
    {"http-tls-key", FLAG_STR, "", &http_tls_key, "PEM private key for --http-tls-cert"},
    {"tls-handshake-timeout", FLAG_DURATION, "10s", &tls_handshake_us,
     "TLS (gRPC and HTTPS ports): a connection whose handshake is not done by then is dropped"},
    {"http-max-connections", FLAG_INT, "512", &http_max_conns,
     "open connections on the HTTP port; past it a new one gets 503 and is closed", 1,
     1000000},
    {"http-head-timeout", FLAG_DURATION, "10s", &http_head_us,
     "HTTP: a request head not complete this long after its first byte: 408, closed"},
    {"http-body-timeout", FLAG_DURATION, "10s", &http_body_us,
     "HTTP: a request body not complete this long after its head: 408, closed"},
    {"http-idle-timeout", FLAG_DURATION, "30s", &http_idle_us,
     "HTTP: a keep-alive connection without a request, or whose client does not read its "
     "answer, for this long: closed"},
    {"max-message", FLAG_INT, "2m", &max_message,
     "largest gRPC message accepted (larger: grpc-status 8 on that stream)", 1024, 1LL << 30},
    {"max-body", FLAG_INT, "1m", &max_body, "largest HTTP request body (larger: 413)", 1024,
     1LL << 30},
    {"stream-queue", FLAG_INT, "1m", &stream_queue,
     "outbound bytes per stream before its inbound window is withheld (backpressure); 4x: "
     "the stream is reset", 65536, 1LL << 32},
    {"stream-window", FLAG_INT, "256k", &stream_window, "HTTP/2 stream receive window", 65535,
     (1LL << 31) - 1},
    {"conn-window", FLAG_INT, "16m", &conn_window, "HTTP/2 connection receive window", 65535,
     (1LL << 31) - 1},
    {"h2-max-streams", FLAG_INT, "100", &h2_max_streams,
     "concurrent HTTP/2 streams per gRPC connection (SETTINGS_MAX_CONCURRENT_STREAMS)", 1,
     100000},
    {"h2-max-header-list", FLAG_INT, "16k", &h2_max_header_list,
     "largest HTTP/2 header list (advertised and enforced: a larger one ends the connection)",
     1024, 1 << 24},
    {"h2-header-rate", FLAG_INT, "4m", &h2_header_rate,
     "decoded HTTP/2 header bytes a gRPC connection may cost per second (bursts of 1 s "
     "worth; HPACK bombs); more ends the connection", 65536, 1LL << 34},
    {"h2-control-rate", FLAG_INT, "100", &h2_control_rate,
     "SETTINGS, PING, PRIORITY and empty DATA frames a gRPC connection may send per second "
     "(bursts of 2 s worth); more ends the connection", 1, 1000000},
    {"h2-reset-burst", FLAG_INT, "100", &h2_reset_burst,
     "RST_STREAMs a gRPC connection may send at once (then 33/s); more ends the connection "
     "(rapid reset)", 1, 1000000},
    {"grpc-unix-sndbuf", FLAG_INT, "4m", &grpc_unix_sndbuf,
     "--grpc-listen unix:PATH: SO_SNDBUF of each connection (what the kernel holds toward a "
     "gateway; the kernel caps it at net.core.wmem_max; TCP sizes its own)", 4096, 1 << 30},
    {"h2-conn-buffer", FLAG_INT, "3m", &h2_conn_buffer,
     "bytes of unfinished gRPC messages one connection may hold; past it the stream fails "
     "(grpc-status 8)", 65536, 1LL << 32},
    {"h2-conn-queue", FLAG_INT, "3m", &h2_conn_queue,
     "outbound bytes queued to one gRPC connection: half withholds its inbound windows, all "
     "resets the stream that passes it", 65536, 1LL << 34},
    {"h2-total-queue", FLAG_INT, "64m", &h2_total_queue,
     "outbound bytes queued to all gRPC connections; past it the largest queues are reset",
     65536, 1LL << 36},
    {"h2-message-timeout", FLAG_DURATION, "30s", &h2_message_us,
     "a gRPC message (or Push request) unfinished this long: the stream fails (grpc-status 4)"},
    {"h2-idle-timeout", FLAG_DURATION, "60s", &h2_idle_us,
     "a gRPC connection without a stream this long: GOAWAY, closed"},
    {"presence-grace", FLAG_DURATION, "3s", &presence_grace_us,
     "after start, push, kick and presence requests get 503 (gRPC Push: 14) this long while "
     "gateways reconnect and re-send presence (their backoff is up to 2 s); 0 = none", 0,
     600000000},
    {"presence-sync-timeout", FLAG_DURATION, "10s", &presence_sync_us,
     "a gateway session whose announced streams (x-wsgw-streams) have not all said "
     "presence_complete this long after it started counts as synced (logged, counted)", 1000,
     600000000},
    {"redis", FLAG_STR, "", &redis_url,
     "redis://[[user]:password@]host[:port][/db]: presence and cross-node push in Redis "
     "(README \"Redis\"); empty: in-memory presence of this node only. No rediss:// (Debian's "
     "hiredis 0.14 has no TLS)"},
    {"redis-password", FLAG_STR, "", &redis_password,
     "Redis password when the URL carries none (prefer WSAPI_REDIS_PASSWORD: argv is "
     "visible in ps)"},
    {"redis-timeout", FLAG_DURATION, "2s", &redis_timeout_us,
     "commands waiting and no Redis reply this long (or an idle link's PING unanswered this "
     "long) drops the link (replies that keep coming, however late, do not); it reconnects "
     "with backoff and requests needing Redis get 503 meanwhile",
     10000, 600000000},
    {"redis-connect-timeout", FLAG_DURATION, "2s", &redis_connect_timeout_us,
     "resolve + connect + AUTH/SELECT to Redis within this, else retry with backoff", 10000,
     600000000},
    {"redis-max-pending", FLAG_INT, "100000", &redis_max_pending,
     "Redis commands awaiting replies; past it requests needing Redis get 503", 16, 10000000},
    {"history-size", FLAG_INT, "256", &hist_size,
     "messages kept per channel (a user: user:<id>, a room: room:<name>) for wsgw.v1.json "
     "clients to recover after a reconnect; only pushes that ask (\"history\": true) or all "
     "with --history-all; in this node's memory, with --redis in Redis Streams shared by "
     "every node; 0 = keep nothing", 0, 1 << 24},
    {"history-ttl", FLAG_DURATION, "5m", &hist_ttl_us,
     "a kept message is dropped this long after it was pushed", 1000000, 86400000000LL * 30},
    {"history-meta-ttl", FLAG_DURATION, "24h", &hist_meta_ttl_us,
     "a channel's epoch and newest offset live this long after its last message (then a "
     "client recovering from an older position is told recovered=false)", 1000000,
     86400000000LL * 365},
    {"history-recover-max", FLAG_INT, "0", &hist_recover_max,
     "a client missing more messages than this is told recovered=false and gets none "
     "(0 = --history-size)", 0, 1 << 24},
    {"history-page-bytes", FLAG_INT, "256k", &hist_page_bytes,
     "payload bytes per Recovered command (a recovery answers in several)", 1024, 1 << 24},
    {"history-max-bytes", FLAG_INT, "256m", &hist_max_bytes,
     "bytes the in-memory history may hold in all (without --redis); past it pushes are "
     "delivered but not kept (logged, wsapi_history_adds_total{result=\"full\"})", 65536,
     1LL << 40},
    {"history-all", FLAG_BOOL, "false", &hist_all,
     "keep every push to a user or a room (and every chat message) in the history, not only "
     "those that ask"},
    {"node-id", FLAG_STR, "", &node_id,
     "--redis: this node's name in the cluster (its pub/sub channel); empty: hostname:grpc-port"},
    {"presence-heartbeat", FLAG_DURATION, "1s", &presence_heartbeat_us,
     "--redis: how often this node renews its gateways in Redis and reads the registry", 50000,
     60000000},
    {"presence-ttl", FLAG_DURATION, "10s", &presence_ttl_us,
     "--redis: a gateway no node has heard from this long (it died without a word) leaves "
     "presence, its connections with it; at least 3 heartbeats", 150000, 3600000000LL},
    {"shutdown-timeout", FLAG_DURATION, "3s", &shutdown_us,
     "on SIGTERM/SIGINT: how long open streams may go on before they are ended"},
    {"log-level", FLAG_STR, "info", &log_level_name, "error | warn | info | debug"},
    {NULL},
};

typedef struct app {
    uv_loop_t loop;
    redis_t *redis;     /* NULL without --redis */
    cluster_t *cluster; /* NULL without --redis */
    uv_signal_t sigterm, sigint;
    uv_timer_t tick, grace, hist_sweep;
    history_t *hist;
    grpc_server_t *grpc;
    push_http_t *http;
    int stopping; /* 0 running, 1 draining, 2 ending streams */
    uint64_t stop_deadline_ms;
} app_t;

/* loop thread */
static void on_tick(uv_timer_t *t)
{
    app_t *a = t->data;
    if (grpc_server_connections(a->grpc) == 0) {
        log_info("drained", "connections=0");
        uv_stop(&a->loop);
        return;
    }
    if (a->stopping == 2 && uv_now(&a->loop) >= a->stop_deadline_ms) {
        log_warn("drain timeout", "connections=%zu", grpc_server_connections(a->grpc));
        uv_stop(&a->loop);
    }
}

/* loop thread, every second: expired history goes */
static void on_hist_sweep(uv_timer_t *t)
{
    app_t *a = t->data;
    history_sweep(a->hist, (uint64_t)(clock_wall_ns() / 1000000));
}

/* loop thread: grace period over */
static void on_grace(uv_timer_t *t)
{
    app_t *a = t->data;
    a->stopping = 2;
    a->stop_deadline_ms = uv_now(&a->loop) + DRAIN_EXTRA_MS;
    log_info("ending streams", "connections=%zu", grpc_server_connections(a->grpc));
    grpc_server_end_streams(a->grpc, 14, "ws-api shutting down");
}

/* loop thread */
static void on_signal(uv_signal_t *h, int signum)
{
    app_t *a = h->data;
    if (a->stopping) {
        log_warn("second signal, exiting now", "signal=%d", signum);
        uv_stop(&a->loop);
        return;
    }
    a->stopping = 1;
    log_info("shutting down", "signal=%d grace_ms=%lld connections=%zu", signum,
             (long long)(shutdown_us / 1000), grpc_server_connections(a->grpc));
    grpc_server_shutdown(a->grpc);
    push_http_draining(a->http);
    uv_timer_start(&a->tick, on_tick, 0, 20);
    uv_timer_start(&a->grace, on_grace, (uint64_t)(shutdown_us / 1000), 0);
}

static void close_cb(uv_handle_t *h)
{
    (void)h;
}

int main(int argc, char **argv)
{
    char err[FLAGS_ERR_LEN];
    static const flags_prog_t prog = {"ws-api", "WSAPI_", "usage: ws-api [flags]"};
    int rv = flags_parse(flag_tab, &prog, argc, argv, NULL, err);
    if (rv == FLAGS_HELP)
        return 0;
    if (rv != FLAGS_OK) {
        fprintf(stderr, "ws-api: %s\n", err); /* err ends with "(see --help)" */
        return 2;
    }
    if (log_set_level(log_level_name) < 0) {
        fprintf(stderr, "ws-api: unknown --log-level '%s'\n", log_level_name);
        return 2;
    }
    handler_kind_t handler;
    if (handler_kind_parse(handler_name, &handler) < 0) {
        fprintf(stderr, "ws-api: unknown --handler '%s' (echo | chat | none)\n", handler_name);
        return 2;
    }
    if (!*grpc_tls_cert != !*grpc_tls_key) {
        fprintf(stderr, "ws-api: --grpc-tls-cert and --grpc-tls-key go together\n");
        return 2;
    }
    if (!*http_tls_cert != !*http_tls_key) {
        fprintf(stderr, "ws-api: --http-tls-cert and --http-tls-key go together\n");
        return 2;
    }
    if (tls_handshake_us < 1000 || http_head_us < 1000 || http_body_us < 1000 ||
        http_idle_us < 1000 || h2_message_us < 1000 || h2_idle_us < 1000) {
        fprintf(stderr, "ws-api: --tls-handshake-timeout, --http-*-timeout and --h2-*-timeout "
                        "must be at least 1ms\n");
        return 2;
    }
    if (presence_ttl_us < 3 * presence_heartbeat_us) {
        fprintf(stderr, "ws-api: --presence-ttl must be at least 3 x --presence-heartbeat\n");
        return 2;
    }
    if (max_message > h2_conn_buffer || max_message > h2_conn_queue) {
        fprintf(stderr, "ws-api: --max-message (%lld) must fit in --h2-conn-buffer (%lld) and "
                        "--h2-conn-queue (%lld)\n",
                (long long)max_message, (long long)h2_conn_buffer, (long long)h2_conn_queue);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    /* Buffers a peer makes us grow (unfinished gRPC messages, request bodies) are mmap'd from
     * 64 KiB up and unmapped when freed: glibc's default raises that threshold after the first
     * large free, and the next buffers then stay in the heap after they are freed, so RSS
     * would keep what one hostile peer once made us hold (README "Threat model"). */
    mallopt(M_MMAP_THRESHOLD, 64 * 1024);
    mallopt(M_TRIM_THRESHOLD, 1024 * 1024);
    wsapi_metrics_init();

    static app_t a;
    presence_t pres;
    router_t router;
    exchange_t x;
    int code = 1;
    uv_loop_init(&a.loop);
    presence_init(&pres);
    presence_gate_config(&pres, (uint64_t)(presence_grace_us / 1000),
                         (uint64_t)(presence_sync_us / 1000));
    if (*redis_url) {
        redis_cfg_t rcfg = {
            .url = redis_url,
            .password = redis_password,
            .connect_timeout_ms = (uint64_t)(redis_connect_timeout_us / 1000),
            .timeout_ms = (uint64_t)(redis_timeout_us / 1000),
            .ping_interval_ms = (uint64_t)(redis_timeout_us / 1000),
            .backoff_min_ms = 100,
            .backoff_max_ms = 2000,
            .max_pending = (size_t)redis_max_pending,
        };
        char rerr[REDIS_ERR_LEN];
        if (!(a.redis = redis_new(&a.loop, &rcfg, rerr))) {
            fprintf(stderr, "ws-api: %s\n", rerr);
            return 2;
        }
    }
    router_init(&router, &pres, DOWNSTREAM_SOFT_MAX);
    history_metrics_init();
    if (hist_size > 0) {
        hist_cfg_t hc = {
            .size = (uint64_t)hist_size,
            .ttl_ms = (uint64_t)(hist_ttl_us / 1000),
            .meta_ttl_ms = (uint64_t)(hist_meta_ttl_us / 1000),
            .recover_max = (uint64_t)(hist_recover_max ? hist_recover_max : hist_size),
            .page_bytes = (size_t)hist_page_bytes,
            .max_bytes = (size_t)hist_max_bytes,
        };
        /* with --redis the history is Redis Streams, shared by every node (history_redis.c) */
        if (!(a.hist = a.redis ? history_redis_new(a.redis, &hc) : history_mem_new(&hc))) {
            log_error("out of memory", "what=%s", "history");
            return 1;
        }
        router.hist = a.hist;
        router.hist_all = hist_all;
    }
    exchange_init(&x, &pres, &router, handler);
    x.chat = (chat_limits_t){(size_t)max_room_name, (size_t)max_rooms_per_conn};

    grpc_server_cfg_t gcfg = {
        .listen = grpc_listen,
        .max_message = (size_t)max_message,
        .push_token = push_token,
        .gateway_token = gateway_token,
        .tls_cert = grpc_tls_cert,
        .tls_key = grpc_tls_key,
        .tls_handshake_timeout_ms = (uint64_t)(tls_handshake_us / 1000),
        .stream_window = (uint32_t)stream_window,
        .conn_window = (uint32_t)conn_window,
        .stream_queue = (size_t)stream_queue,
        .max_streams = (uint32_t)h2_max_streams,
        .max_header_list = (uint32_t)h2_max_header_list,
        .header_rate = (uint64_t)h2_header_rate,
        .control_rate = (uint32_t)h2_control_rate,
        .reset_burst = (uint32_t)h2_reset_burst,
        .conn_buffer = (size_t)h2_conn_buffer,
        .unix_sndbuf = (int)grpc_unix_sndbuf,
        .conn_queue = (size_t)h2_conn_queue,
        .total_queue = (size_t)h2_total_queue,
        .message_timeout_ms = (uint64_t)(h2_message_us / 1000),
        .idle_timeout_ms = (uint64_t)(h2_idle_us / 1000),
    };
    char gerr[GRPC_SERVER_ERR_LEN];
    a.grpc = grpc_server_new(&a.loop, &gcfg, &x, &router, &pres, gerr);
    if (!a.grpc) {
        log_error("cannot start gRPC server", "addr=%s error=\"%s\"", grpc_listen, gerr);
        goto out_free;
    }
    if (a.redis) {
        char nid[300], cerr[128];
        if (*node_id) {
            snprintf(nid, sizeof nid, "%s", node_id);
        } else {
            char host[256] = "localhost";
            gethostname(host, sizeof host - 1);
            if (grpc_server_port(a.grpc) > 0)
                snprintf(nid, sizeof nid, "%s:%d", host, grpc_server_port(a.grpc));
            else /* unix:PATH */
                snprintf(nid, sizeof nid, "%s:%s", host, grpc_listen);
        }
        cluster_cfg_t ccfg = {
            .node_id = nid,
            .heartbeat_ms = (uint64_t)(presence_heartbeat_us / 1000),
            .ttl_ms = (uint64_t)(presence_ttl_us / 1000),
            .grace_ms = (uint64_t)(presence_grace_us / 1000),
            .max_queued = (size_t)redis_max_pending,
        };
        if (!(a.cluster = cluster_new(&a.loop, a.redis, &pres, &router, &ccfg, cerr,
                                      sizeof cerr))) {
            log_error("cannot start the cluster layer", "error=\"%s\"", cerr);
            grpc_server_free(a.grpc);
            goto out_free;
        }
        exchange_set_cluster(&x, a.cluster);
        router.cl = a.cluster;
    }
    push_http_cfg_t hcfg = {
        .rooms = &x.rooms,
        .listen = http_listen,
        .push_token = push_token,
        .max_body = (size_t)max_body,
        .tls_cert = http_tls_cert,
        .tls_key = http_tls_key,
        .max_conns = (size_t)http_max_conns,
        .handshake_timeout_ms = (uint64_t)(tls_handshake_us / 1000),
        .head_timeout_ms = (uint64_t)(http_head_us / 1000),
        .body_timeout_ms = (uint64_t)(http_body_us / 1000),
        .idle_timeout_ms = (uint64_t)(http_idle_us / 1000),
    };
    char herr[PUSH_HTTP_ERR_LEN];
    a.http = push_http_new(&a.loop, &hcfg, &router, &pres, herr);
    if (!a.http) {
        log_error("cannot start HTTP server", "addr=%s error=\"%s\"", http_listen, herr);
        grpc_server_free(a.grpc);
        goto out_free;
    }

    uv_signal_init(&a.loop, &a.sigterm);
    uv_signal_init(&a.loop, &a.sigint);
    a.sigterm.data = a.sigint.data = &a;
    uv_signal_start(&a.sigterm, on_signal, SIGTERM);
    uv_signal_start(&a.sigint, on_signal, SIGINT);
    uv_timer_init(&a.loop, &a.tick);
    uv_timer_init(&a.loop, &a.grace);
    a.tick.data = a.grace.data = &a;
    uv_timer_init(&a.loop, &a.hist_sweep);
    a.hist_sweep.data = &a;
    uv_timer_start(&a.hist_sweep, on_hist_sweep, 1000, 1000);

    log_info("ws-api started",
             "handler=%s grpc=%s grpc_tls=%s http=%s http_tls=%s presence_grace_ms=%lld "
             "redis=%s",
             handler_name, grpc_listen, *grpc_tls_cert ? "on" : "off", http_listen,
             *http_tls_cert ? "on" : "off", (long long)(presence_grace_us / 1000),
             a.redis ? redis_describe(a.redis) : "off");
    uv_run(&a.loop, UV_RUN_DEFAULT);
    code = 0;

    uv_close((uv_handle_t *)&a.sigterm, close_cb);
    uv_close((uv_handle_t *)&a.sigint, close_cb);
    uv_close((uv_handle_t *)&a.tick, close_cb);
    uv_close((uv_handle_t *)&a.grace, close_cb);
    uv_close((uv_handle_t *)&a.hist_sweep, close_cb);
    push_http_free(a.http);
    grpc_server_free(a.grpc);
out_free:
    cluster_stop(a.cluster);
    redis_free(a.redis); /* (pending callbacks get NULL now: their owners were told to expect it) */
    /* Let our handles finish closing on the loop, then tear down. */
    uv_run(&a.loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&a.loop) != 0)
        log_warn("loop close", "error=%s", "handles still open");
    cluster_free(a.cluster);
    exchange_free(&x);
    router_free(&router);
    history_free(a.hist);
    bufpool_drain();
    presence_free(&pres);
    log_info("ws-api stopped", "code=%d", code);
    return code;
}
