/* engine_priv.h: the inside of ws-bench's load engine (engine.h), private to its two files:
 * engine.c (the threads' loop, the open-loop schedule, phases, timeouts, the public engine_*
 * calls) and engine_conn.c (a connection: connect, handshake, frames, sends, its end).
 * Engine threads only, but for struct engine, which the main thread sets up and merges
 * (engine.c's public calls). */
#ifndef WSGW_BENCH_ENGINE_PRIV_H
#define WSGW_BENCH_ENGINE_PRIV_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "engine.h"
#include "recov.h"
#include "report.h"
#include "sched.h"
#include "tsq.h"
#include "wbuf.h"
#include "ws_frame.h"
#include "ws_handshake.h"

#define RX_BUF_SIZE (256 * 1024)

enum cstate { C_IDLE = 0, C_CONNECTING, C_HANDSHAKE, C_OPEN, C_CLOSING, C_DONE, C_FAILED };

typedef struct hs_state {
    char accept[HS_ACCEPT_LEN + 1];
    uint16_t len; /* bytes in buf */
    char *buf;    /* HS_MAX_RESPONSE bytes, only when the response came in pieces */
} hs_state_t;

/* One connection: a slot of its thread's array (what it owns when: engine_conn.c's head). */
typedef struct bconn {
    int fd;
    uint8_t state;
    uint8_t send_done : 1; /* message mode: sent all it will send */
    uint32_t sent;
    int64_t t_connect;
    ws_rx_t rx;
    hs_state_t *hs;
    wbuf_t *out;  /* bytes the socket did not take yet */
    tsq_t *fifo;  /* due and send times of the messages waiting for their reply */
    recov_conn_t *rc; /* recover mode: its position, kept while it is away */
} bconn_t;

/* Actions a parser callback asks for; carried out after ws_rx_feed returns (never free a
 * connection inside its own callback). */
enum { ACT_NONE = 0, ACT_END_OK, ACT_END_ERR };

typedef struct ethread {
    struct engine *e;
    int idx;
    pthread_t tid;
    int ep;
    bconn_t *conns;
    uint32_t n;                 /* connections of this thread */
    uint32_t started, pending, open, closing, senders, first_pending;
    uint32_t max_pending;
    int64_t connect_gap_ns, next_connect, next_sweep;
    int64_t send_deadline, drain_deadline, final_deadline, stop_at;
    int64_t back_at;            /* recover mode: when the connections come back */
    bool ready, stopping, drained, final, send_over;
    bool dropped, back;         /* recover mode: they went away; they came back */
    bool no_pwait2;             /* the kernel has no epoll_pwait2: millisecond timeouts */
    sched_t sched;              /* open loop: next send time of each connection */
    uint8_t *rxbuf;
    buf_t tx;
    uint64_t rng;
    int64_t now;
    /* parser callback context */
    bconn_t *cur;
    uint32_t cur_replies;
    int cur_action, cur_err;
    report_t rep;
} ethread_t;

struct engine {
    const bench_cfg_t *cfg;
    uint64_t first, count;
    int stop_fd, notify_fd;
    int64_t t0;
    int nth;
    ethread_t *th;
    _Atomic int nready, nfinished;
    _Atomic uint64_t open_at_ready;
    int64_t rss_base_kb;
};

/* ---- engine_conn.c ---- */
/* engine__conn_write: writes or queues bytes on c. Returns 0, or -1 when the socket is broken
 * (the caller ends the connection at a safe point). */
int engine__conn_write(bconn_t *c, const uint8_t *p, size_t len);
/* engine__tx_frame: one masked client frame appended to t->tx. Returns 0 or -1 (memory). */
int engine__tx_frame(ethread_t *t, int opcode, const void *p, size_t len);
/* engine__conn_end: ends c: err < 0 for a normal end, else the error kind to count (ERR_*);
 * messages still outstanding are counted as unanswered. */
void engine__conn_end(ethread_t *t, bconn_t *c, int err);
/* engine__conn_start_close: the closing handshake (code 1000) on an open connection that ended
 * its work normally. */
void engine__conn_start_close(ethread_t *t, bconn_t *c);
/* engine__mark_send_done: message mode: c sends nothing more (leaves t->senders). */
void engine__mark_send_done(ethread_t *t, bconn_t *c);
/* engine__send_msgs: up to k messages on c; due: open loop, the time the message was scheduled
 * for, 0 in closed loop. Returns -1 when the connection broke (already ended). */
int engine__send_msgs(ethread_t *t, bconn_t *c, uint32_t k, int64_t due);
/* engine__maybe_finish: message mode: closes c when it has nothing more to do. */
void engine__maybe_finish(ethread_t *t, bconn_t *c);
/* engine__conn_start: starts connecting slot j of t (a slot used again too: recover mode). */
void engine__conn_start(ethread_t *t, uint32_t j);
/* engine__conn_event: epoll events ev on slot j of t. */
void engine__conn_event(ethread_t *t, uint32_t j, uint32_t ev);

/* ---- engine.c ---- */
/* engine__schedule: open loop: c sends its next message at `due` (out of memory ends c). */
void engine__schedule(ethread_t *t, bconn_t *c, int64_t due);

#endif
