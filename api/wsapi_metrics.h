/* wsapi_metrics.h: ws-api's metric ids, registered once at start-up (common/metrics.h).
 * Names fixed by DESIGN.md: wsapi_gateway_streams, wsapi_events_total{kind},
 * wsapi_push_requests_total{code}, wsapi_presence_connections; the rest are ours (wsapi_*). */
#ifndef WSGW_WSAPI_METRICS_H
#define WSGW_WSAPI_METRICS_H

typedef struct wsapi_metrics {
    int gateway_streams;  /* gauge: live Exchange streams */
    int gateways;         /* gauge: gateways with at least one live stream */
    int presence;         /* gauge: connections in presence */
    /* presence per session and its sync (presence.h, presence_gate.h) */
    int presence_ready;      /* gauge 0/1: presence/push endpoints answer (else 503/14) */
    int presence_unsynced;   /* gauge: gateway sessions whose presence is not whole yet */
    int presence_sessions;   /* gauge: live gateway sessions */
    int sync_timeouts;       /* sessions counted synced after --presence-sync-timeout */
    int stale_open, stale_close; /* Open/Close from an older session than the entry's: ignored */
    int bad_streams_header;  /* x-wsgw-streams that is not a number in 1..65535: ignored */
    int session_drops;       /* entries dropped because their session ended */
    int unreachable;         /* targeted connections whose gateway had no live stream */
    int ev_open, ev_message, ev_close, ev_unknown;
    int upstream_msgs, upstream_bytes;     /* Upstream messages / DATA bytes received */
    int downstream_msgs, downstream_bytes; /* Downstream messages / bytes queued */
    int commands;                          /* Commands sent to gateways */
    int dec_protobuf, dec_framing, dec_oversize, dec_truncated; /* bad messages, by reason */
    int grpc_conns, grpc_conns_total, grpc_conn_errors;
    int unknown_method;
    int backpressure_pauses; /* a stream stopped consuming its inbound window */
    int stream_overflows;    /* a stream failed: its outbound queue passed the hard cap */
    int http_push[10];       /* wsapi_push_requests_total{code}: see wsapi_metrics_http() */
    int grpc_push[17];       /* wsapi_grpc_push_requests_total{status} */
    /* wsapi_auth_rejects_total{api,reason}: [WSAPI_AUTH_*][bearer_result_t - 1] */
    int auth_rejects[3][2];
    int tls_handshakes;          /* wsapi_tls_handshakes_total: completed (gRPC port) */
    int tls_hs_errors[4];        /* wsapi_tls_handshake_errors_total{reason}: WSAPI_TLS_* */
    int http_conns;              /* gauge: open HTTP/1.1 connections */
    int http_limits[10];         /* wsapi_http_limit_total{limit}: wsapi_http_limit_names */
    int http_tls_errors;         /* wsapi_http_tls_handshake_errors_total */
    int accept_errors[2];        /* wsapi_accept_errors_total{listener="grpc"|"http"} */
    int push_bad_utf8;           /* wsapi_grpc_push_invalid_utf8_total */
    int rooms_restored[2];       /* wsapi_rooms_restored_total{result}: recorded, refused */
    int chat_refusals[2];        /* wsapi_chat_refusals_total{reason}: name_too_long, too_many_rooms */
    int h2_limits[10];            /* wsapi_h2_limit_total{limit}: wsapi_h2_limit_names */
} wsapi_metrics_t;

#define WSAPI_HTTP_LIMITS 10
#define WSAPI_H2_LIMITS 10
/* The limit label values of wsapi_h2_limit_total, in h2_limit_t order (grpc_internal.h). */
extern const char *const wsapi_h2_limit_names[WSAPI_H2_LIMITS];
/* The limit label values of wsapi_http_limit_total, in http_limits order. */
extern const char *const wsapi_http_limit_names[WSAPI_HTTP_LIMITS];

enum { WSAPI_AUTH_EXCHANGE = 0, WSAPI_AUTH_GRPC_PUSH = 1, WSAPI_AUTH_HTTP_PUSH = 2 };
enum { WSAPI_TLS_EOF = 0, WSAPI_TLS_PROTOCOL = 1, WSAPI_TLS_ALPN = 2, WSAPI_TLS_TIMEOUT = 3 };

extern wsapi_metrics_t wsapi_m;

/* wsapi_metrics_init: registers every series. Call once before the loop starts. Ids of failed
 * registrations are -1 (updates to them are ignored). */
void wsapi_metrics_init(void);

/* wsapi_metrics_auth_reject: counts one refused request: api is WSAPI_AUTH_*, reason a
 * bearer_result_t other than BEARER_OK (1 missing, 2 wrong). */
void wsapi_metrics_auth_reject(int api, int reason);

/* wsapi_metrics_http: the counter id for an HTTP status of the push API (-1 if unknown). */
int wsapi_metrics_http(int status);

#endif
