/* upstream_priv.h: what the files of the upstream writer share (upstream.c: the loop and the
 * socket; upstream_h2.c: HTTP/2 and the delivery machine's actions; upstream_node.c: set-up,
 * teardown and the node's address). Writer thread unless said otherwise. */
#ifndef GW_UPSTREAM_PRIV_H
#define GW_UPSTREAM_PRIV_H

#include <nghttp2/nghttp2.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "buf.h"
#include "clock.h"
#include "delivery.h"
#include "grpc_frame.h"
#include "iovq.h"
#include "pace.h"
#include "upsock.h"
#include "upstream.h"

#define RING_BURST 256
#define READ_CHUNK 65536
#define WBUF_HIGH 65536            /* gather nghttp2 output up to this before send(2) */
#define MAX_DATA_FRAME (256 * 1024) /* largest DATA frame we send (on_read_length) */
#define H2_FRAME_HD 9              /* HTTP/2 frame header (RFC 9113 §4.1) */
/* What a flush keeps of the output queue's buffer: flush_out gathers up to WBUF_HIGH, and the
 * frame that crosses it may be a whole DATA frame copied (TLS): kept, so that such a flush does
 * not free the buffer for the next to make again (at most this per API node). */
#define OUT_KEEP (4 * WBUF_HIGH + MAX_DATA_FRAME)
#define STREAM_WINDOW (4 << 20)    /* per-stream receive window */
#define CONN_WINDOW (64 << 20)     /* connection receive window */
#define MAX_DOWNSTREAM (64 << 20)  /* largest Downstream message accepted */
/* Downstreams up to this are buffered whole at once and the buffer kept per stream
 * (grpc_dec_trust: the API node is our backend; 1 MiB x --upstream-streams per node). */
#define DOWNSTREAM_KEEP (1 << 20)
#define US 1000LL

typedef enum { T_NONE, T_CONNECTING, T_TLS, T_SESSION } tstate_t;

/* How a pass learns what its epoll fd has (upstream__pass). A thread of its own waits on it
 * (UP_LOOK_WAIT). A hosted writer never waits: its host's loop does. Given work by its host
 * (host_due), it does not look at all (UP_LOOK_NONE: what the fd has, the host's loop still
 * sees, level-triggered). Told by its host that the fd is readable, it reads its socket first
 * and looks only if that found nothing (UP_LOOK_GUESS, upstream.c guess_socket). */
typedef enum { UP_LOOK_WAIT, UP_LOOK_NONE, UP_LOOK_GUESS } up_look_t;

typedef struct up_st {             /* what nghttp2 tells us about stream slot i */
    int32_t id;                    /* nghttp2 stream id, 0 when none */
    bool acking;                   /* x-wsgw-ack: 1 in the response headers */
    bool shared;                   /* x-wsgw-presence: shared in the response headers */
    int grpc_status;               /* -1: none seen */
    grpc_dec_t dec;                /* Downstream messages */
    size_t unconsumed;             /* received bytes not yet given back to flow control */
} up_st_t;

struct gw_up_priv {
    int epfd;
    gw_sock_t sock;                /* sock.fd < 0 when none */
    bool ep_out;                   /* EPOLLOUT is in sock.fd's epoll registration */
    SSL_CTX *tls;                  /* --upstream-tls client context, or NULL */
    tstate_t tstate;
    nghttp2_session *sess;
    up_st_t *st;                   /* [nstreams] */
    int nstreams;
    iovq_t out;                    /* nghttp2 output not yet accepted by the socket: copied
                                      bytes and pieces of the machine's batches (iovq.h;
                                      no piece outlives flush_out or a stream's close) */
    size_t data_copied;            /* on_read_data -> on_send_data: payload bytes in out */
    uint8_t *rbuf;
    dlv_t *d;                      /* the delivery machine */
    bool overflowing;              /* commands wait in a handoff overflow */
    uint64_t touched;              /* service threads to wake (bit per thread, < 64) */
    bool touched_all;
    int64_t api_ns[64];            /* api_ns of the Sends in the Downstream being handled */
    int napi;
    int m_connected, m_reconnects;
    uint64_t connects;             /* sessions that got usable so far */
    uint32_t seen_gen;             /* addr_gen followed */
    dlv_stats_t seen;              /* machine counters already added to the metrics */
    pace_t pace;                   /* --coalesce (off when hosted) */
    pace_stats_t pace_seen;        /* pace counters already added to the metrics */
    bool pwait2_missing;           /* kernel without epoll_pwait2 */
    uint32_t carry;                /* events the drain after PACE_LEAVE took */
    /* --inline-writers: the host service thread's handles (upstream_host.c) */
    uv_poll_t hpoll;               /* the writer's epoll fd, readable */
    uv_timer_t htimer;             /* the machine's next timer */
    bool hosting;                  /* the handles are live */
    up_look_t look;                /* how the next pass learns what is ready (hosted) */
    bool read_dry;                 /* read_in's first recv found nothing */
    bool host_ended;               /* gw_up_host_end ran */
};

static inline int64_t upstream__now(void) { return clock_mono_ns(); }

/* upstream_h2.c */
void upstream__emit_cmd(void *ud, int k, gw_cmd_t *cmd);
void upstream__wake_touched(gw_up_t *u);
void upstream__flush_cmd_overflow(gw_up_t *u);
void upstream__publish_one(void *ud, int k, int st, uint32_t n);
/* upstream__session_start: the nghttp2 session on the connected socket; -1 on failure. */
int upstream__session_start(gw_up_t *u);
/* upstream__io: the dlv_io_t actions of writer u. */
dlv_io_t upstream__io(gw_up_t *u);
/* upstream.c */
void upstream__close(gw_up_t *u, const char *why);
/* upstream__main: the writer thread (pthread start routine; arg = the writer). */
void *upstream__main(void *arg);
/* The loop, for upstream__main and a host (upstream_host.c): begin once, then passes (a
 * hosted writer's passes wait for nothing), end once. upstream__timeout_ms: how long the loop
 * may sleep before the next pass is due (the machine's next timer, at most 1 s; 0 when events
 * wait to be taken). */
void upstream__begin(gw_up_t *u);
void upstream__pass(gw_up_t *u);
int upstream__timeout_ms(gw_up_t *u);
void upstream__end(gw_up_t *u);
/* upstream_node.c */
void upstream__follow_addr(gw_up_t *u);

#endif
