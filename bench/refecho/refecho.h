/* refecho.h: ws-refecho, the reference direct echo server for benchmarks: the gateway's lws
 * set-up (4.1.6, libuv foreign loop per thread, one context per thread with
 * CONTEXT_PORT_NO_LISTEN_SERVER, its own SO_REUSEPORT listening socket adopted accept by accept
 * with lws_adopt_socket_vhost, rx_buffer_size 512, no permessage-deflate) and nothing behind
 * it: every message goes straight back to its connection. What the gateway achieves is
 * compared with this bound on the same box. */
#ifndef WSGW_REFECHO_H
#define WSGW_REFECHO_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <pthread.h>
#include <uv.h>

struct lws_context;
struct lws_vhost;

typedef struct refecho_cfg {
    const char *listen_host;
    int listen_port;
    int64_t max_queue; /* bytes queued to one client before its input is paused */
    bool raw;          /* lws raw sockets, upgrade and framing by raw.c */
} refecho_cfg_t;

extern refecho_cfg_t refecho_cfg; /* set by main before the threads start, then read-only */

/* One service thread: its uv loop, lws context and listening socket. */
typedef struct refecho_svc {
    int idx;
    pthread_t tid;
    int listen_fd;
    uv_loop_t loop;
    uv_poll_t listen_poll;
    uv_timer_t stop_timer;
    struct lws_context *ctx;
    struct lws_vhost *vh;
    _Atomic int stop_req; /* main -> service thread */
    _Atomic uint64_t accepted, messages; /* written by the service thread, read at exit */
} refecho_svc_t;

/* refecho_listen: a non-blocking SO_REUSEPORT listening socket on host:port.
 * Returns the fd or -1 with a message in err. */
int refecho_listen(const char *host, int port, char *err, size_t errlen);

/* refecho_svc_start: starts the service thread (creates its loop and context on that thread).
 * Returns 0 or a negative errno. */
int refecho_svc_start(refecho_svc_t *s);

/* refecho_svc_stop: asks the thread to close everything and end (any thread). */
void refecho_svc_stop(refecho_svc_t *s);

/* refecho_log_init: lws logs (errors, warnings) through common/log. Once, by main. */
void refecho_log_init(void);

#endif
