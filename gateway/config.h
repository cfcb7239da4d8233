/* config.h: ws-gateway settings (flags table in main.c). Written by the main thread before any
 * other thread starts; read-only afterwards, by every thread. */
#ifndef GW_CONFIG_H
#define GW_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

typedef struct gw_config {
    const char *listen;       /* host:port */
    const char *upstream;     /* comma-separated host:port list */
    int64_t streams;          /* HTTP/2 streams per API node */
    int64_t threads;          /* lws service threads */
    const char *gateway_id;
    const char *auth_secret;
    int64_t max_message;      /* bytes */
    int64_t send_queue;       /* bytes */
    int64_t ping_interval_us;
    int64_t max_connections;
    int64_t drain_timeout_us;
    int64_t ring_size;        /* items per SPSC ring */
    int64_t batch_max_events; /* events per Upstream batch */
    int64_t batch_max_bytes;  /* bytes per Upstream batch */
    int64_t replay_max_bytes; /* unacked bytes kept per API node before clients are paused */
    int64_t rcvbuf;           /* client SO_RCVBUF (0 = kernel default) */
    int64_t upstream_sndbuf;  /* API-node socket SO_SNDBUF and SO_RCVBUF */
    int64_t coalesce_us;      /* writer wake-up coalescing window (pace.h: 0 = wake per
                                 event, FLAGS_AUTO = adaptive) */
    int inline_writers;       /* writers run on service threads' loops (upstream.h): 1, 0, or
                                 FLAGS_AUTO until main decides (one usable core: 1) */
    int64_t svc_coalesce_us;  /* service thread coalescing window (svcpoll.h, pace.h) */
    const char *log_level;
    const char *allowed_origins;
    bool require_origin;
    int64_t max_conns_per_ip;
    const char *tls_cert, *tls_key;
    const char *tls_ciphers;      /* OpenSSL cipher list for TLS <= 1.2 (tlspolicy.h) */
    const char *tls_min_version;  /* "1.2" or "1.3" */
    int64_t jwt_leeway_us;        /* clock-skew allowance on exp/nbf */
    int64_t max_rooms_per_conn;   /* rooms one connection may be in */
    int64_t max_room_name;        /* bytes of a room name in a Join */
    bool upstream_tls;
    const char *upstream_ca;
    const char *gateway_token;
    const char *static_dir;
    int64_t dns_interval_us;
    int64_t upstream_ping_interval_us;   /* silence while owed something before a PING */
    int64_t upstream_ping_timeout_us;    /* PING unanswered: the session is over */
    int64_t upstream_connect_timeout_us;
    int64_t upstream_headers_timeout_us; /* no response headers: a stream without acks */
    int64_t upstream_max_attempts;       /* failures of a batch before it is split, then lost */
    int64_t presence_renew_interval_us;  /* between two instance renewals (delivery.h I4) */
    int64_t max_upstreams;
    int64_t upstream_subset;             /* subset.h: API nodes to connect to (0: all) */
    int64_t upstream_subset_fallback_us; /* a chosen node down this long: the next one too */
    int64_t paused_check_us;  /* pausewatch.h: period of the paused-socket check (0 = off) */
    int64_t recover_timeout_us;   /* wsgw.v1.json: a recovery's answer waited for this long */
    int64_t recover_gap_wait_us;  /* wsgw.v1.json: a gap in offsets waited out before recovery */
    int64_t recover_hold;         /* wsgw.v1.json: bytes held per channel while recovering */

    /* derived */
    char listen_host[256];
    int listen_port;
    int nupstreams;
    char **upstreams;         /* host:port strings */
} gw_config_t;

extern gw_config_t gw_cfg;

#endif
