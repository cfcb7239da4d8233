/* wsapi_metrics.c: registration of ws-api's metrics (see wsapi_metrics.h). */
#include "wsapi_metrics.h"

#include <stdio.h>

#include "metrics.h"
#include "procmetrics.h"

wsapi_metrics_t wsapi_m;

static const int http_codes[10] = {200, 400, 401, 404, 405, 408, 411, 413, 500, 503};

const char *const wsapi_http_limit_names[WSAPI_HTTP_LIMITS] = {
    "bad_request",  "framing",       "chunked",       "body_size",         "head_timeout",
    "body_timeout", "idle_timeout",  "write_timeout", "handshake_timeout", "max_connections",
};

const char *const wsapi_h2_limit_names[WSAPI_H2_LIMITS] = {
    "header_list",  "header_rate",  "control_frames", "resets",     "conn_buffer",
    "message_timeout", "idle_timeout", "stream_queue", "conn_queue", "total_queue",
};

int wsapi_metrics_http(int status)
{
    for (int i = 0; i < 10; i++)
        if (http_codes[i] == status)
            return wsapi_m.http_push[i];
    return -1;
}

void wsapi_metrics_auth_reject(int api, int reason)
{
    if (api >= 0 && api < 3 && reason >= 1 && reason <= 2)
        metrics_inc(wsapi_m.auth_rejects[api][reason - 1]);
}

void wsapi_metrics_init(void)
{
    wsapi_metrics_t *m = &wsapi_m;
    procmetrics_build_info("wsapi_build_info");
    m->gateway_streams = metrics_gauge("wsapi_gateway_streams", NULL,
                                       "Live wsgw.v1.Exchange/Stream streams from gateways.");
    m->gateways = metrics_gauge("wsapi_gateways", NULL, "Gateways with at least one live stream.");
    m->presence = metrics_gauge("wsapi_presence_connections", NULL,
                                "Client connections in this node's presence table.");
    m->presence_ready = metrics_gauge(
        "wsapi_presence_ready", NULL,
        "1 when presence is whole (startup --presence-grace over, every gateway session "
        "synced); 0 while push, kick and presence requests are refused (503 / grpc-status 14).");
    m->presence_unsynced = metrics_gauge(
        "wsapi_presence_unsynced_sessions", NULL,
        "Gateway sessions (gRPC connections) whose presence resync is not complete yet.");
    m->presence_sessions = metrics_gauge("wsapi_presence_sessions", NULL,
                                         "Live gateway sessions (gRPC connections with an "
                                         "Exchange stream).");
    m->sync_timeouts = metrics_counter(
        "wsapi_presence_sync_timeouts_total", NULL,
        "Gateway sessions counted as synced because not every announced stream "
        "(x-wsgw-streams) said presence_complete within --presence-sync-timeout.");
    const char *sth = "Open/Close events ignored because the connection's entry came from a "
                      "newer session of its gateway (a stale connection's buffered events).";
    m->stale_open = metrics_counter("wsapi_presence_stale_events_total", "kind=\"open\"", sth);
    m->stale_close = metrics_counter("wsapi_presence_stale_events_total", "kind=\"close\"", sth);
    m->bad_streams_header = metrics_counter(
        "wsapi_presence_bad_streams_header_total", NULL,
        "Exchange streams whose x-wsgw-streams header was not a number in 1..65535 (ignored: "
        "the session counts as not announcing presence_complete).");
    m->session_drops = metrics_counter(
        "wsapi_presence_session_drops_total", NULL,
        "Presence entries dropped because the gateway session they came on ended.");
    m->unreachable = metrics_counter(
        "wsapi_unreachable_targets_total", NULL,
        "Connections targeted by a push, kick or reply that were skipped because their "
        "gateway had no live Exchange stream at the time.");
    const char *evh = "Client events received from gateways, by kind.";
    const char *rrh = "Room memberships a gateway re-sent with its presence (Open.rooms) that this "
                      "node had no record of: recorded (the room listings have them again), or "
                      "refused (over --max-room-name or --max-rooms-per-conn).";
    m->rooms_restored[0] = metrics_counter("wsapi_rooms_restored_total", "result=\"recorded\"", rrh);
    m->rooms_restored[1] = metrics_counter("wsapi_rooms_restored_total", "result=\"refused\"", rrh);
    m->ev_open = metrics_counter("wsapi_events_total", "kind=\"open\"", evh);
    m->ev_message = metrics_counter("wsapi_events_total", "kind=\"message\"", evh);
    m->ev_close = metrics_counter("wsapi_events_total", "kind=\"close\"", evh);
    m->ev_unknown = metrics_counter("wsapi_events_unknown_total", NULL,
                                    "Events without a kind (ignored).");
    m->upstream_msgs = metrics_counter("wsapi_upstream_messages_total", NULL,
                                       "Upstream batches handled.");
    m->upstream_bytes = metrics_counter("wsapi_upstream_bytes_total", NULL,
                                        "gRPC DATA bytes received on Exchange streams.");
    m->downstream_msgs = metrics_counter("wsapi_downstream_messages_total", NULL,
                                         "Downstream messages queued to gateways.");
    m->downstream_bytes = metrics_counter("wsapi_downstream_bytes_total", NULL,
                                          "Downstream bytes queued to gateways.");
    m->commands = metrics_counter("wsapi_commands_total", NULL, "Commands sent to gateways.");
    const char *deh = "Undecodable gRPC messages (the stream fails), by reason.";
    m->dec_protobuf = metrics_counter("wsapi_decode_errors_total", "reason=\"protobuf\"", deh);
    m->dec_framing = metrics_counter("wsapi_decode_errors_total", "reason=\"framing\"", deh);
    m->dec_oversize = metrics_counter("wsapi_decode_errors_total", "reason=\"oversize\"", deh);
    m->dec_truncated = metrics_counter("wsapi_decode_errors_total", "reason=\"truncated\"", deh);
    m->grpc_conns = metrics_gauge("wsapi_grpc_connections", NULL, "Open HTTP/2 connections.");
    m->grpc_conns_total = metrics_counter("wsapi_grpc_connections_total", NULL,
                                          "HTTP/2 connections accepted.");
    m->grpc_conn_errors = metrics_counter("wsapi_grpc_connection_errors_total", NULL,
                                          "HTTP/2 connections that failed (protocol or I/O).");
    m->unknown_method = metrics_counter("wsapi_unknown_method_total", NULL,
                                        "gRPC calls to an unknown method (status 12).");
    m->backpressure_pauses = metrics_counter(
        "wsapi_backpressure_pauses_total", NULL,
        "Times a stream stopped granting inbound window because its gateway did not read.");
    m->stream_overflows = metrics_counter(
        "wsapi_stream_overflows_total", NULL,
        "Streams failed with RESOURCE_EXHAUSTED because their outbound queue hit the hard cap.");
    for (int i = 0; i < 10; i++) {
        char l[32];
        snprintf(l, sizeof l, "code=\"%d\"", http_codes[i]);
        m->http_push[i] = metrics_counter("wsapi_push_requests_total", l,
                                          "HTTP push API requests (/v1/*), by status code.");
    }
    for (int i = 0; i < 17; i++) {
        char l[32];
        snprintf(l, sizeof l, "status=\"%d\"", i);
        m->grpc_push[i] = metrics_counter("wsapi_grpc_push_requests_total", l,
                                          "gRPC wsgw.v1.Push/Push calls, by grpc-status.");
    }
    static const char *const apis[3] = {"exchange", "grpc_push", "http_push"};
    static const char *const reasons[2] = {"missing", "wrong"};
    for (int a = 0; a < 3; a++)
        for (int r = 0; r < 2; r++) {
            char l[64];
            snprintf(l, sizeof l, "api=\"%s\",reason=\"%s\"", apis[a], reasons[r]);
            m->auth_rejects[a][r] = metrics_counter(
                "wsapi_auth_rejects_total", l,
                "Requests refused for a missing or wrong bearer token (--gateway-token on "
                "Exchange, --push-token on Push and /v1/*).");
        }
    m->tls_handshakes = metrics_counter("wsapi_tls_handshakes_total", NULL,
                                        "TLS handshakes completed on the gRPC port.");
    static const char *const tls_reasons[4] = {"eof", "protocol", "alpn", "timeout"};
    for (int i = 0; i < 4; i++) {
        char l[32];
        snprintf(l, sizeof l, "reason=\"%s\"", tls_reasons[i]);
        m->tls_hs_errors[i] = metrics_counter(
            "wsapi_tls_handshake_errors_total", l,
            "TLS handshakes that failed on the gRPC port: eof (peer left), protocol (not TLS, "
            "bad version/cipher, alert), alpn (no h2), timeout (--tls-handshake-timeout).");
    }
    m->http_conns = metrics_gauge("wsapi_http_connections", NULL,
                                  "Open connections on the HTTP/1.1 push API port.");
    for (int i = 0; i < WSAPI_HTTP_LIMITS; i++) {
        char l[48];
        snprintf(l, sizeof l, "limit=\"%s\"", wsapi_http_limit_names[i]);
        m->http_limits[i] = metrics_counter(
            "wsapi_http_limit_total", l,
            "HTTP/1.1 push API: requests or connections ended by a limit: bad_request (400), "
            "framing (400: Content-Length with Transfer-Encoding, differing or bad "
            "Content-Length), chunked (411), body_size (413, --max-body), head_timeout and "
            "body_timeout (408), idle_timeout and write_timeout (--http-idle-timeout), "
            "handshake_timeout (--tls-handshake-timeout), max_connections "
            "(--http-max-connections, 503).");
    }
    m->http_tls_errors = metrics_counter("wsapi_http_tls_handshake_errors_total", NULL,
                                         "TLS handshakes that failed on the HTTPS push API port.");
    static const char *const listeners[2] = {"grpc", "http"};
    for (int i = 0; i < 2; i++) {
        char l[32];
        snprintf(l, sizeof l, "listener=\"%s\"", listeners[i]);
        m->accept_errors[i] = metrics_counter(
            "wsapi_accept_errors_total", l,
            "accept() failures for lack of descriptors or memory (accepting pauses, backing "
            "off from 10 ms to 1 s).");
    }
    for (int i = 0; i < WSAPI_H2_LIMITS; i++) {
        char l[48];
        snprintf(l, sizeof l, "limit=\"%s\"", wsapi_h2_limit_names[i]);
        m->h2_limits[i] = metrics_counter(
            "wsapi_h2_limit_total", l,
            "gRPC port (HTTP/2): budgets that fired: header_list (--h2-max-header-list), "
            "header_rate (--h2-header-rate), control_frames (--h2-control-rate), resets (--h2-reset-burst): connection ended "
            "with ENHANCE_YOUR_CALM; conn_buffer (--h2-conn-buffer): stream failed 8; "
            "message_timeout (--h2-message-timeout): stream failed 4; idle_timeout "
            "(--h2-idle-timeout): connection closed; stream_queue, conn_queue, total_queue "
            "(--stream-queue x4, --h2-conn-queue, --h2-total-queue): stream reset.");
    }
    m->push_bad_utf8 = metrics_counter(
        "wsapi_grpc_push_invalid_utf8_total", NULL,
        "gRPC Push calls refused (grpc-status 3) because a text payload was not UTF-8.");
    static const char *const chat_reasons[2] = {"name_too_long", "too_many_rooms"};
    for (int i = 0; i < 2; i++) {
        char l[40];
        snprintf(l, sizeof l, "reason=\"%s\"", chat_reasons[i]);
        m->chat_refusals[i] = metrics_counter(
            "wsapi_chat_refusals_total", l,
            "chat handler: joins, leaves and says refused (the sender gets an error message): a "
            "room name over --max-room-name, a join past --max-rooms-per-conn.");
    }
}
