/* engine.c: epoll load engine, one loop per thread (see engine.h).
 *
 * A connection lives in a fixed slot of its thread's array (96 bytes) and owns heap memory
 * only while it needs it: the handshake state while connecting, the unsent tail of a write
 * while the socket is full, the parser's hold buffer while a header is split across reads, and
 * the FIFO of due and send times while messages are outstanding. Reads go into one buffer per
 * thread.
 *
 * Open loop (--interval > 0) times each round trip from the message's due time (its place in
 * the schedule), not from when it was written: when the bench itself falls behind (a busy
 * core, a stall), the sends it owes go out late and that delay stays in the percentiles
 * instead of vanishing (coordinated omission; wrk2's correction). How late each send was is
 * kept too (send_lag), and the round trip from the actual send (latency_sent). With --tick T
 * the due times are rounded up to a grid of period T shared by every thread and process
 * (from t0): the sends of each T go out together, the offered load the bench had when it slept
 * in whole milliseconds; they are timed from the grid point, where the schedule put them.
 *
 * Phases of a thread: connect (paced) -> ready (all connections open or failed) -> run
 * (message: send/receive until every connection has sent its messages; conn/push: hold until
 * the stop fd fires) -> drain (wait for replies, --drain) -> close (close frame 1000, wait for
 * the server's close up to close_wait, then reset: SO_LINGER 0, no TIME_WAIT). */
#include "engine.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <time.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "buf.h"
#include "clock.h"
#include "ws_handshake.h"
#include "log.h"
#include "recov.h"
#include "sched.h"
#include "tsq.h"
#include "wbuf.h"
#include "ws_frame.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define RX_BUF_SIZE (256 * 1024)
#define EV_BATCH 512
#define SWEEP_NS 100000000LL /* connect-timeout sweep period */
#define STOP_TAG UINT64_MAX
#define PUSH_PREFIX 32       /* bytes of each pushed message parsed for its time stamp */
/* push mode: deliveries are over after this long without one (a loaded gateway may stall) */
#define PUSH_QUIET_NS 2000000000LL

enum cstate { C_IDLE = 0, C_CONNECTING, C_HANDSHAKE, C_OPEN, C_CLOSING, C_DONE, C_FAILED };

typedef struct hs_state {
    char accept[HS_ACCEPT_LEN + 1];
    uint16_t len; /* bytes in buf */
    char *buf;    /* HS_MAX_RESPONSE bytes, only when the response came in pieces */
} hs_state_t;

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

/* ---- small helpers (engine thread) ------------------------------------------------------- */

static uint64_t rng_next(ethread_t *t)
{
    /* xorshift64*: mask keys need to be unpredictable to intermediaries, not cryptographic */
    uint64_t x = t->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    t->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static uint64_t global_index(const ethread_t *t, uint32_t j)
{
    return t->e->first + (uint64_t)t->idx + (uint64_t)j * (uint64_t)t->e->nth;
}

static void notify(struct engine *e)
{
    uint64_t one = 1;
    if (write(e->notify_fd, &one, sizeof one) < 0 && errno != EAGAIN)
        log_warn("notify failed", "errno=%d", errno);
}

static uint32_t outstanding(const bconn_t *c) { return tsq_len(c->fifo); }

static void schedule(ethread_t *t, bconn_t *c, int64_t due);

/* ---- writing --------------------------------------------------------------------------- */

/* Writes or queues bytes. Returns 0, or -1 when the socket is broken (the caller ends the
 * connection at a safe point). */
static int conn_write(bconn_t *c, const uint8_t *p, size_t len)
{
    return wbuf_write(&c->out, c->fd, p, len);
}

/* One masked client frame (RFC 6455 §5.3: a fresh key per frame) appended to t->tx. */
static int tx_frame(ethread_t *t, int opcode, const void *p, size_t len)
{
    size_t need = ws_frame_header_len(len, true) + len;
    if (buf_reserve(&t->tx, need) < 0)
        return -1;
    uint32_t r = (uint32_t)rng_next(t);
    uint8_t key[4];
    memcpy(key, &r, 4);
    t->tx.len += ws_frame_encode(t->tx.data + t->tx.len, t->tx.cap - t->tx.len, opcode, true, p,
                                 len, key);
    return 0;
}

/* ---- connection end -------------------------------------------------------------------- */

static void conn_release(ethread_t *t, bconn_t *c)
{
    (void)t;
    if (c->fd >= 0) {
        /* SO_LINGER 0 was set at creation: close() resets, no TIME_WAIT on this side. The
         * descriptor leaves the epoll set with the close. */
        close(c->fd);
        c->fd = -1;
    }
    ws_rx_free(&c->rx);
    if (c->hs) {
        free(c->hs->buf);
        free(c->hs);
        c->hs = NULL;
    }
    free(c->out);
    c->out = NULL;
    free(c->fifo);
    c->fifo = NULL;
}

/* Ends c: err < 0 for a normal end, else the error kind to count. Messages still outstanding
 * are counted as unanswered. */
static void conn_end(ethread_t *t, bconn_t *c, int err)
{
    switch (c->state) {
    case C_CONNECTING:
    case C_HANDSHAKE:
        t->pending--;
        break;
    case C_OPEN:
        t->open--;
        if (t->e->cfg->mode == MODE_MESSAGE && !c->send_done)
            t->senders--;
        break;
    case C_CLOSING:
        t->closing--;
        break;
    default:
        return; /* already ended */
    }
    uint32_t lost = outstanding(c);
    if (lost)
        t->rep.errors[ERR_UNANSWERED] += lost;
    if (err >= 0)
        t->rep.errors[err]++;
    conn_release(t, c);
    c->state = err >= 0 ? C_FAILED : C_DONE;
}

/* Starts the closing handshake (RFC 6455 §5.5.1, code 1000) on an open connection that ended
 * its work normally. */
static void conn_start_close(ethread_t *t, bconn_t *c)
{
    if (c->state != C_OPEN)
        return;
    t->rep.conns_at_end++;
    if (t->e->cfg->mode == MODE_MESSAGE && !c->send_done) {
        c->send_done = 1;
        t->senders--;
    }
    c->state = C_CLOSING;
    t->open--;
    t->closing++;
    uint8_t body[2];
    ws_close_payload(body, 1000, NULL);
    t->tx.len = 0;
    if (tx_frame(t, WS_OP_CLOSE, body, 2) < 0 || conn_write(c, t->tx.data, t->tx.len) < 0)
        conn_end(t, c, -1);
}

/* ---- messages ---------------------------------------------------------------------------- */

static void mark_send_done(ethread_t *t, bconn_t *c)
{
    if (!c->send_done) {
        c->send_done = 1;
        t->senders--;
    }
}

/* Sends up to k messages on c (fewer when --times or --duration says so). due: open loop, the
 * time the (single) message was scheduled for: its latency is timed from then, its lateness
 * recorded, and --duration decides by it (a send owed before the end still goes out, late);
 * 0 in closed loop (timed from the send). Returns -1 when the connection broke (already
 * ended). */
static int send_msgs(ethread_t *t, bconn_t *c, uint32_t k, int64_t due)
{
    const bench_cfg_t *cfg = t->e->cfg;
    if (c->send_done || c->state != C_OPEN)
        return 0;
    int64_t when = due ? due : t->now;
    if (cfg->times && k > cfg->times - c->sent)
        k = (uint32_t)(cfg->times - c->sent);
    if (t->send_deadline && when >= t->send_deadline)
        k = 0;
    if (k) {
        t->tx.len = 0;
        for (uint32_t i = 0; i < k; i++)
            if (tx_frame(t, cfg->opcode, cfg->payload, cfg->payload_len) < 0) {
                log_rl_error("out of memory", "what=%s", "tx");
                k = i;
                break;
            }
        int64_t now = clock_mono_ns();
        if (due) {
            uint64_t lag = now > due ? (uint64_t)(now - due) : 0;
            hist_record(&t->rep.send_lag, lag);
            if (lag > (uint64_t)cfg->late_threshold_ns)
                t->rep.late_sends++;
        }
        for (uint32_t i = 0; i < k; i++)
            if (tsq_push(&c->fifo, due ? due : now, now, cfg->inflight) < 0) {
                log_rl_error("out of memory", "what=%s", "fifo");
                conn_end(t, c, ERR_CLOSED);
                return -1;
            }
        c->sent += k;
        t->rep.sent += k;
        t->rep.bytes_sent += (uint64_t)k * cfg->payload_len;
        if (!t->rep.t_first_send)
            t->rep.t_first_send = now;
        t->rep.t_last_send = now;
        if (conn_write(c, t->tx.data, t->tx.len) < 0) {
            conn_end(t, c, ERR_CLOSED);
            return -1;
        }
    }
    if ((cfg->times && c->sent >= cfg->times) || (t->send_deadline && when >= t->send_deadline))
        mark_send_done(t, c);
    return 0;
}

/* After activity on c in message mode: close it when it has nothing more to do. */
static void maybe_finish(ethread_t *t, bconn_t *c)
{
    if (c->state == C_OPEN && c->send_done && !outstanding(c))
        conn_start_close(t, c);
}

/* ---- parser callbacks (engine thread; t->cur is the connection being read) --------------- */

static int cb_msg_begin(void *ctx, int opcode, const uint8_t *prefix, size_t n)
{
    ethread_t *t = ctx;
    (void)opcode;
    if (!bench_pushes(t->e->cfg) || t->cur->state != C_OPEN)
        return 0;
    if (t->e->cfg->mode == MODE_RECOVER) {
        recov_frame_t f;
        recov_parse(prefix, n, &f);
        if (t->cur->rc)
            recov_frame(t->cur->rc, &f, t->now, clock_wall_ns(), &t->rep);
        return 0;
    }
    /* push payloads start with the sender's CLOCK_REALTIME in decimal nanoseconds */
    uint64_t ts = 0;
    size_t i = 0;
    while (i < n && i < 20 && prefix[i] >= '0' && prefix[i] <= '9')
        ts = ts * 10 + (uint64_t)(prefix[i++] - '0');
    if (i >= 16 && i < 20) {
        int64_t d = clock_wall_ns() - (int64_t)ts;
        t->rep.received++;
        t->rep.t_last_recv = t->now;
        hist_record(&t->rep.latency, d > 0 ? (uint64_t)d : 0);
    } else {
        t->rep.unmatched++;
    }
    return 0;
}

static int cb_msg_end(void *ctx, uint64_t len)
{
    ethread_t *t = ctx;
    bconn_t *c = t->cur;
    if (c->state != C_OPEN)
        return 0; /* late data while closing */
    t->rep.bytes_received += len;
    if (bench_pushes(t->e->cfg))
        return 0; /* counted at the start of the message */
    tsq_ent_t m;
    if (tsq_pop(c->fifo, &m)) {
        t->rep.received++;
        t->rep.t_last_recv = t->now;
        hist_record(&t->rep.latency, t->now > m.due ? (uint64_t)(t->now - m.due) : 0);
        hist_record(&t->rep.latency_sent, t->now > m.sent ? (uint64_t)(t->now - m.sent) : 0);
        t->cur_replies++;
    } else {
        t->rep.unmatched++; /* nothing was waiting for it: not a reply */
    }
    return 0;
}

static int cb_control(void *ctx, int opcode, const uint8_t *p, size_t n)
{
    ethread_t *t = ctx;
    bconn_t *c = t->cur;
    if (opcode == WS_OP_PING) {
        t->rep.pings++;
        t->tx.len = 0;
        if (c->state == C_OPEN &&
            (tx_frame(t, WS_OP_PONG, p, n) < 0 || conn_write(c, t->tx.data, t->tx.len) < 0)) {
            t->cur_action = ACT_END_ERR;
            t->cur_err = ERR_CLOSED;
            return 1;
        }
        return 0;
    }
    if (opcode == WS_OP_PONG) {
        t->rep.pongs++;
        return 0;
    }
    /* close (RFC 6455 §5.5.1) */
    int code = ws_close_code(p, n);
    if (code < 0) {
        t->cur_action = ACT_END_ERR;
        t->cur_err = ERR_PROTOCOL;
        return 1;
    }
    report_code_add(t->rep.close_codes, (uint32_t)code, 1);
    if (c->state == C_CLOSING) { /* the answer to our close */
        t->cur_action = ACT_END_OK;
        return 1;
    }
    /* the server closes first: answer with the same code (§5.5.1), then end */
    uint8_t body[2];
    t->tx.len = 0;
    if (code != 1005 && code != 1006 && code != 1015) {
        ws_close_payload(body, (uint16_t)code, NULL);
        if (tx_frame(t, WS_OP_CLOSE, body, 2) == 0)
            (void)conn_write(c, t->tx.data, t->tx.len);
    } else if (tx_frame(t, WS_OP_CLOSE, NULL, 0) == 0) {
        (void)conn_write(c, t->tx.data, t->tx.len);
    }
    t->cur_action = ACT_END_ERR;
    t->cur_err = ERR_CLOSED_BY_SERVER;
    return 1;
}

static const ws_rx_cb_t rx_cb = {
    .on_msg_begin = cb_msg_begin,
    .on_data = NULL,
    .on_msg_end = cb_msg_end,
    .on_control = cb_control,
};

/* Feeds received WebSocket bytes of an open/closing connection. */
static void conn_frames(ethread_t *t, bconn_t *c, uint8_t *p, size_t n)
{
    t->cur = c;
    t->cur_replies = 0;
    t->cur_action = ACT_NONE;
    int rv = ws_rx_feed(&c->rx, p, n, &rx_cb, t);
    if (rv == WS_ERR_STOP) {
        conn_end(t, c, t->cur_action == ACT_END_ERR ? t->cur_err : -1);
        return;
    }
    if (rv < 0) {
        log_rl_warn("protocol error", "conn=%llu err=%d",
                    (unsigned long long)global_index(t, (uint32_t)(c - t->conns)), rv);
        conn_end(t, c, rv == WS_ERR_NOMEM ? ERR_CLOSED : ERR_PROTOCOL);
        return;
    }
    if (t->e->cfg->mode != MODE_MESSAGE || c->state != C_OPEN)
        return;
    if (t->e->cfg->interval_ns == 0 && t->cur_replies) {
        if (send_msgs(t, c, t->cur_replies, 0) < 0)
            return;
    }
    maybe_finish(t, c);
}

/* ---- connecting and the handshake --------------------------------------------------------- */

static void conn_opened(ethread_t *t, bconn_t *c)
{
    const bench_cfg_t *cfg = t->e->cfg;
    int64_t now = clock_mono_ns();
    free(c->hs->buf);
    free(c->hs);
    c->hs = NULL;
    c->state = C_OPEN;
    t->pending--;
    t->open++;
    t->rep.conns_opened++;
    hist_record(&t->rep.connect, (uint64_t)(now - c->t_connect));
    c->rx.want_prefix = cfg->mode == MODE_PUSH      ? PUSH_PREFIX
                        : cfg->mode == MODE_RECOVER ? RECOV_PREFIX
                                                    : 0;
    if (cfg->mode == MODE_RECOVER) {
        if (!c->rc && !(c->rc = calloc(1, sizeof *c->rc)))
            conn_end(t, c, ERR_CLOSED);
        else
            recov_back(c->rc, c->t_connect); /* (timed from the reconnect's start) */
        return;
    }
    if (cfg->mode == MODE_PUSH && cfg->join_msg) {
        t->tx.len = 0;
        if (tx_frame(t, WS_OP_TEXT, cfg->join_msg, strlen(cfg->join_msg)) < 0 ||
            conn_write(c, t->tx.data, t->tx.len) < 0)
            conn_end(t, c, ERR_CLOSED);
        return;
    }
    if (cfg->mode != MODE_MESSAGE)
        return;
    t->senders++;
    if (t->final || (t->send_deadline && now >= t->send_deadline)) {
        conn_start_close(t, c);
        return;
    }
    if (cfg->interval_ns == 0) {
        send_msgs(t, c, cfg->inflight, 0);
    } else {
        /* the schedule of c starts now */
        if (send_msgs(t, c, 1, now) < 0)
            return;
        if (!c->send_done)
            schedule(t, c, now + cfg->interval_ns);
    }
    if (c->state == C_OPEN)
        maybe_finish(t, c);
}

static void conn_handshake_bytes(ethread_t *t, bconn_t *c, uint8_t *p, size_t n)
{
    hs_state_t *hs = c->hs;
    const char *buf = (const char *)p;
    size_t len = n;
    uint8_t *extra = NULL; /* bytes of this read beyond what the handshake buffer took */
    size_t extra_n = 0;
    if (hs->buf) {
        size_t room = HS_MAX_RESPONSE - hs->len;
        size_t take = n < room ? n : room;
        memcpy(hs->buf + hs->len, p, take);
        hs->len = (uint16_t)(hs->len + take);
        buf = hs->buf;
        len = hs->len;
        extra = p + take;
        extra_n = n - take;
    }
    int status = 0;
    size_t hdr = 0;
    int rv = hs_response(buf, len, hs->accept, &status, &hdr);
    if (rv == HS_AGAIN) {
        if (!hs->buf) {
            hs->buf = malloc(HS_MAX_RESPONSE);
            if (!hs->buf) {
                conn_end(t, c, ERR_HANDSHAKE);
                return;
            }
            memcpy(hs->buf, p, n);
            hs->len = (uint16_t)n;
        }
        return;
    }
    if (rv == HS_ERR_STATUS) {
        report_code_add(t->rep.http_status, (uint32_t)status, 1);
        conn_end(t, c, ERR_HANDSHAKE_STATUS);
        return;
    }
    if (rv != HS_OK) {
        log_rl_warn("handshake failed", "status=%d err=%d", status, rv);
        conn_end(t, c, ERR_HANDSHAKE);
        return;
    }
    /* frames may follow the header: in the handshake buffer (copied out before it is freed)
     * and/or in this read */
    size_t rest = len - hdr;
    uint8_t held[HS_MAX_RESPONSE];
    uint8_t *frames = (uint8_t *)buf + hdr;
    if (rest && hs->buf) {
        memcpy(held, hs->buf + hdr, rest);
        frames = held;
    }
    conn_opened(t, c);
    if (rest && (c->state == C_OPEN || c->state == C_CLOSING))
        conn_frames(t, c, frames, rest);
    if (extra_n && (c->state == C_OPEN || c->state == C_CLOSING))
        conn_frames(t, c, extra, extra_n);
}

static void conn_connected(ethread_t *t, bconn_t *c)
{
    int err = 0;
    socklen_t el = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
        err = errno;
    if (err) {
        log_rl_warn("connect failed", "errno=%d err=\"%s\"", err, strerror(err));
        conn_end(t, c, err == ECONNREFUSED ? ERR_CONNECT_REFUSED : ERR_CONNECT);
        return;
    }
    const bench_cfg_t *cfg = t->e->cfg;
    uint64_t g = global_index(t, (uint32_t)(c - t->conns));
    const engine_target_t *h = &cfg->hosts[g % (uint64_t)cfg->nhosts];
    char key[HS_KEY_LEN + 1];
    c->hs = calloc(1, sizeof *c->hs);
    if (!c->hs || hs_key(key) < 0) {
        conn_end(t, c, ERR_CONNECT);
        return;
    }
    hs_accept(key, c->hs->accept);
    char path[1024];
    const char *up = cfg->user_param;
    if (up && *up) {
        /* add "user=u<i>" unless the query already names that parameter */
        const char *q = strchr(cfg->path, '?');
        char pat[80];
        snprintf(pat, sizeof pat, "&%s=", up);
        bool has = q && (strncmp(q + 1, pat + 1, strlen(pat + 1)) == 0 || strstr(q, pat));
        if (has)
            snprintf(path, sizeof path, "%s", cfg->path);
        else
            snprintf(path, sizeof path, "%s%c%s=u%llu", cfg->path, q ? '&' : '?', up,
                     (unsigned long long)g);
    } else {
        snprintf(path, sizeof path, "%s", cfg->path);
    }
    char rq[200];
    if (c->rc && recov_query(c->rc, g, rq, sizeof rq)) {
        size_t pl = strlen(path);
        snprintf(path + pl, sizeof path - pl, "%c%s", strchr(path, '?') ? '&' : '?', rq);
    }
    if (buf_reserve(&t->tx, 2048) < 0) {
        conn_end(t, c, ERR_CONNECT);
        return;
    }
    size_t rl = hs_request((char *)t->tx.data, t->tx.cap, h->name, path, key, cfg->extra_headers);
    c->state = C_HANDSHAKE;
    if (!rl || conn_write(c, t->tx.data, rl) < 0)
        conn_end(t, c, ERR_CONNECT);
}

static void conn_start(ethread_t *t, uint32_t j)
{
    const bench_cfg_t *cfg = t->e->cfg;
    bconn_t *c = &t->conns[j];
    uint64_t g = global_index(t, j);
    const engine_target_t *h = &cfg->hosts[g % (uint64_t)cfg->nhosts];
    memset(&c->rx, 0, sizeof c->rx); /* (a slot used again: recover mode) */
    t->rep.conns_attempted++;
    c->t_connect = t->now;
    c->state = C_CONNECTING;
    t->pending++;
    int fd = socket(h->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    c->fd = fd;
    if (fd < 0) {
        log_rl_warn("socket failed", "errno=%d err=\"%s\"", errno, strerror(errno));
        conn_end(t, c, ERR_CONNECT);
        return;
    }
    int one = 1;
    struct linger lg = {1, 0};
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    if (cfg->nsrc) {
        int s = (int)((g / (uint64_t)cfg->nhosts) % (uint64_t)cfg->nsrc);
        /* the port is chosen at connect() for the whole 4-tuple: each (source, destination)
         * pair gets its own ephemeral range */
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(fd, (const struct sockaddr *)&cfg->src[s], cfg->src_len[s]) < 0) {
            log_rl_warn("bind failed", "errno=%d err=\"%s\"", errno, strerror(errno));
            conn_end(t, c, ERR_CONNECT);
            return;
        }
    }
    int rv = connect(fd, (const struct sockaddr *)&h->addr, h->addr_len);
    if (rv < 0 && errno != EINPROGRESS) {
        int err = errno;
        log_rl_warn("connect failed", "errno=%d err=\"%s\"", err, strerror(err));
        conn_end(t, c, err == ECONNREFUSED ? ERR_CONNECT_REFUSED : ERR_CONNECT);
        return;
    }
    /* added after connect(): an unconnected socket would report HUP at once */
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                             .data.u64 = j};
    if (epoll_ctl(t->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
        log_rl_warn("epoll_ctl failed", "errno=%d", errno);
        conn_end(t, c, ERR_CONNECT);
        return;
    }
}

/* ---- events ------------------------------------------------------------------------------ */

static void conn_read(ethread_t *t, bconn_t *c)
{
    for (;;) {
        ssize_t n = recv(c->fd, t->rxbuf, RX_BUF_SIZE, 0);
        if (n > 0) {
            t->now = clock_mono_ns();
            if (c->state == C_HANDSHAKE)
                conn_handshake_bytes(t, c, t->rxbuf, (size_t)n);
            else
                conn_frames(t, c, t->rxbuf, (size_t)n);
            if (c->state != C_HANDSHAKE && c->state != C_OPEN && c->state != C_CLOSING)
                return;
            if ((size_t)n < RX_BUF_SIZE)
                return; /* a short read drained the socket: the next data brings a new edge */
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        /* EOF or reset */
        if (c->state == C_CLOSING)
            conn_end(t, c, -1);
        else if (c->state == C_HANDSHAKE)
            conn_end(t, c, ERR_HANDSHAKE);
        else
            conn_end(t, c, ERR_CLOSED);
        return;
    }
}

static void conn_event(ethread_t *t, uint32_t j, uint32_t ev)
{
    bconn_t *c = &t->conns[j];
    if (c->state == C_CONNECTING) {
        if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))
            conn_connected(t, c);
        if (c->state != C_HANDSHAKE)
            return;
    }
    if (c->state < C_HANDSHAKE || c->state > C_CLOSING)
        return;
    if ((ev & EPOLLOUT) && c->out) {
        if (wbuf_flush(&c->out, c->fd) < 0) {
            conn_end(t, c, c->state == C_CLOSING ? -1 : ERR_CLOSED);
            return;
        }
    }
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        conn_read(t, c);
}

/* ---- phases -------------------------------------------------------------------------------- */

static void start_connects(ethread_t *t)
{
    while (t->started < t->n && t->pending < t->max_pending && !t->stopping) {
        if (t->connect_gap_ns) {
            if (t->now < t->next_connect)
                break;
            t->next_connect += t->connect_gap_ns;
            /* after a stall do not burst more than 10 ms worth */
            if (t->next_connect < t->now - 10000000)
                t->next_connect = t->now - 10000000;
        }
        conn_start(t, t->started++);
    }
}

static void sweep_timeouts(ethread_t *t)
{
    int64_t tmo = t->e->cfg->timeout_ns;
    while (t->first_pending < t->started) {
        uint8_t s = t->conns[t->first_pending].state;
        if (s == C_CONNECTING || s == C_HANDSHAKE)
            break;
        t->first_pending++;
    }
    for (uint32_t j = t->first_pending; j < t->started; j++) {
        bconn_t *c = &t->conns[j];
        if ((c->state == C_CONNECTING || c->state == C_HANDSHAKE) &&
            t->now - c->t_connect > tmo)
            conn_end(t, c, ERR_CONNECT_TIMEOUT);
    }
}

/* Open loop: when a message scheduled for `due` is sent: due rounded up to the --tick grid. */
static int64_t tick_due(const ethread_t *t, int64_t due)
{
    int64_t tick = t->e->cfg->tick_ns, t0 = t->e->t0;
    if (tick <= 0 || due <= t0)
        return due;
    return t0 + (due - t0 + tick - 1) / tick * tick;
}

/* Open loop: c sends its next message at `due`. Out of memory ends the connection (counted)
 * rather than leaving it silent. */
static void schedule(ethread_t *t, bconn_t *c, int64_t due)
{
    if (sched_push(&t->sched, due, (uint32_t)(c - t->conns)) < 0) {
        log_rl_error("out of memory", "what=%s", "schedule");
        conn_end(t, c, ERR_CLOSED);
    }
}

static void run_schedule(ethread_t *t)
{
    const bench_cfg_t *cfg = t->e->cfg;
    int64_t due;
    while (sched_peek(&t->sched, &due) && tick_due(t, due) <= t->now) {
        sched_item_t s = sched_pop(&t->sched);
        bconn_t *c = &t->conns[s.id];
        if (c->state != C_OPEN || c->send_done)
            continue;
        if (send_msgs(t, c, 1, tick_due(t, s.due)) < 0)
            continue;
        if (c->state == C_OPEN && !c->send_done)
            schedule(t, c, s.due + cfg->interval_ns); /* from the due time: no drift */
        else
            maybe_finish(t, c);
    }
}

/* Enters the final phase: no more sends; open connections are closed (what they still wait
 * for is counted unanswered), pending ones dropped; close_wait later the rest is reset. */
static void enter_final(ethread_t *t)
{
    if (t->final)
        return;
    t->final = true;
    t->final_deadline = t->now + t->e->cfg->close_wait_ns;
    t->started = t->n; /* no new connections */
    for (uint32_t j = 0; j < t->n; j++) {
        bconn_t *c = &t->conns[j];
        if (c->state == C_CONNECTING || c->state == C_HANDSHAKE) {
            conn_end(t, c, -1);
        } else if (c->state == C_OPEN) {
            t->rep.errors[ERR_UNANSWERED] += tsq_len(c->fifo);
            tsq_clear(c->fifo);
            conn_start_close(t, c);
        }
    }
}

static void on_stop(ethread_t *t)
{
    t->stopping = true;
    t->stop_at = t->now;
    epoll_ctl(t->ep, EPOLL_CTL_DEL, t->e->stop_fd, NULL);
    if (bench_pushes(t->e->cfg) && t->ready) {
        /* deliveries may still be on their way: wait until none came for PUSH_QUIET_NS,
         * at most --drain */
        t->drained = true;
        t->drain_deadline = t->now + t->e->cfg->drain_ns;
        return;
    }
    enter_final(t);
}

/* push mode, stopping: the time the quiet wait ends */
static int64_t push_quiet_end(const ethread_t *t)
{
    int64_t last = t->rep.t_last_recv > t->stop_at ? t->rep.t_last_recv : t->stop_at;
    int64_t q = last + PUSH_QUIET_NS;
    return q < t->drain_deadline ? q : t->drain_deadline;
}

static void recover_phases(ethread_t *t);

static void check_phases(ethread_t *t)
{
    const bench_cfg_t *cfg = t->e->cfg;
    if (!t->ready && t->started == t->n && t->pending == 0) {
        t->ready = true;
        t->rep.conns_ready = t->open;
        t->rep.t_ready = t->now;
        atomic_fetch_add(&t->e->open_at_ready, t->open);
        if (atomic_fetch_add(&t->e->nready, 1) + 1 == t->e->nth)
            notify(t->e);
    }
    if (cfg->mode == MODE_MESSAGE && !t->final) {
        if (t->send_deadline && t->now >= t->send_deadline && !t->send_over) {
            t->send_over = true;
            /* --duration is over: nobody sends any more */
            for (uint32_t j = 0; j < t->started; j++) {
                bconn_t *c = &t->conns[j];
                if (c->state == C_OPEN) {
                    mark_send_done(t, c);
                    maybe_finish(t, c);
                }
            }
        }
        if (t->ready && t->senders == 0 && !t->drained) {
            t->drained = true;
            t->drain_deadline = t->now + cfg->drain_ns;
        }
        if (t->drained && t->now >= t->drain_deadline)
            enter_final(t);
    }
    if (bench_pushes(cfg) && t->stopping && !t->final && t->now >= push_quiet_end(t))
        enter_final(t);
    if (cfg->mode == MODE_RECOVER && t->ready && !t->stopping)
        recover_phases(t);
    if (t->final && t->now >= t->final_deadline) {
        for (uint32_t j = 0; j < t->n; j++)
            if (t->conns[j].state == C_CLOSING)
                conn_end(t, &t->conns[j], -1);
    }
}

/* recover mode: every open connection goes away at *drop_at (its position kept), and comes
 * back offline_ns later (reconnects, all at once: the storm a gateway restart or a network
 * blip makes) with recover=<its position>. */
static void recover_phases(ethread_t *t)
{
    const bench_cfg_t *cfg = t->e->cfg;
    int64_t at = atomic_load_explicit(cfg->drop_at, memory_order_relaxed);
    if (!t->dropped && at && t->now >= at) {
        t->dropped = true;
        t->back_at = at + cfg->offline_ns;
        uint8_t body[2];
        ws_close_payload(body, 1000, NULL);
        for (uint32_t j = 0; j < t->n; j++) {
            bconn_t *c = &t->conns[j];
            if (c->state != C_OPEN || !c->rc)
                continue;
            recov_drop(c->rc);
            c->state = C_CLOSING;
            t->open--;
            t->closing++;
            t->tx.len = 0;
            if (tx_frame(t, WS_OP_CLOSE, body, 2) < 0 || conn_write(c, t->tx.data, t->tx.len) < 0)
                conn_end(t, c, -1);
        }
    }
    if (t->dropped && !t->back && t->now >= t->back_at) {
        t->back = true;
        for (uint32_t j = 0; j < t->n; j++) {
            bconn_t *c = &t->conns[j];
            if (!c->rc || c->rc->phase != RC_AWAY)
                continue;
            if (c->state == C_CLOSING)
                conn_end(t, c, -1); /* the server did not answer our close: gone anyway */
            if (c->state == C_DONE)
                conn_start(t, j);
        }
    }
}

static bool finished(const ethread_t *t)
{
    if (!t->ready || t->pending)
        return false;
    if (t->e->cfg->mode == MODE_MESSAGE)
        return (t->final || t->drained) && t->open == 0 && t->closing == 0;
    /* conn/push: hold until stopped, or until no connection is left to hold; recover: the
     * connections are away on purpose, hold until stopped */
    if (t->e->cfg->mode == MODE_RECOVER && !t->stopping)
        return false;
    return t->open == 0 && t->closing == 0;
}

/* How long the loop may sleep, in ns (0: not at all). */
static int64_t wait_ns(const ethread_t *t)
{
    int64_t next = t->now + 1000000000LL;
    if (t->started < t->n && t->connect_gap_ns && t->pending < t->max_pending &&
        t->next_connect < next)
        next = t->next_connect;
    if (t->pending && t->next_sweep < next)
        next = t->next_sweep;
    int64_t due;
    if (sched_peek(&t->sched, &due) && tick_due(t, due) < next)
        next = tick_due(t, due);
    if (t->send_deadline && !t->send_over && !t->final && t->send_deadline < next)
        next = t->send_deadline;
    if (t->drained && !t->final && t->drain_deadline < next)
        next = t->drain_deadline;
    if (bench_pushes(t->e->cfg) && t->stopping && !t->final && push_quiet_end(t) < next)
        next = push_quiet_end(t);
    if (t->e->cfg->mode == MODE_RECOVER && !t->stopping) {
        int64_t at = atomic_load_explicit(t->e->cfg->drop_at, memory_order_relaxed);
        if (!t->dropped && at && at < next)
            next = at;
        if (t->dropped && !t->back && t->back_at < next)
            next = t->back_at;
    }
    if (t->final && t->final_deadline < next)
        next = t->final_deadline;
    int64_t d = next - t->now;
    return d > 0 ? d : 0;
}

/* epoll_wait with a nanosecond timeout (epoll_pwait2, Linux 5.11): a millisecond timeout
 * rounded up made open-loop sends 0.5 ms late on average, which the latency (timed from the
 * schedule) would include. Falls back to milliseconds where the kernel lacks it. */
static int wait_events(ethread_t *t, struct epoll_event *evs, int64_t ns)
{
    if (!t->no_pwait2) {
        struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
        int n = epoll_pwait2(t->ep, evs, EV_BATCH, &ts, NULL);
        if (n >= 0 || errno != ENOSYS)
            return n;
        t->no_pwait2 = true;
    }
    return epoll_wait(t->ep, evs, EV_BATCH, (int)((ns + 999999) / 1000000));
}

static void *thread_main(void *arg)
{
    ethread_t *t = arg;
    struct epoll_event evs[EV_BATCH];
    /* open loop: wake on time (the default timer slack of 50 us would be part of every
     * send's lag, and so of the latency timed from the schedule) */
    if (t->e->cfg->interval_ns > 0)
        prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
    t->now = clock_mono_ns();
    t->next_connect = t->now;
    t->next_sweep = t->now + SWEEP_NS;
    for (;;) {
        start_connects(t);
        if (t->now >= t->next_sweep) {
            sweep_timeouts(t);
            t->next_sweep = t->now + SWEEP_NS;
        }
        run_schedule(t);
        check_phases(t);
        if (finished(t))
            break;
        int n = wait_events(t, evs, wait_ns(t));
        if (n < 0 && errno != EINTR) {
            log_error("epoll_wait failed", "errno=%d", errno);
            break;
        }
        t->now = clock_mono_ns();
        for (int i = 0; i < n; i++) {
            if (evs[i].data.u64 == STOP_TAG) {
                if (!t->stopping)
                    on_stop(t);
                continue;
            }
            conn_event(t, (uint32_t)evs[i].data.u64, evs[i].events);
        }
    }
    /* whatever is left (epoll failure): release it */
    for (uint32_t j = 0; j < t->n; j++) {
        if (t->conns[j].state >= C_CONNECTING && t->conns[j].state <= C_CLOSING)
            conn_end(t, &t->conns[j], -1);
        free(t->conns[j].rc);
        t->conns[j].rc = NULL;
    }
    t->rep.t_end = clock_mono_ns();
    if (!t->ready) { /* stopped before the connect phase ended */
        t->ready = true;
        if (atomic_fetch_add(&t->e->nready, 1) + 1 == t->e->nth)
            notify(t->e);
    }
    if (atomic_fetch_add(&t->e->nfinished, 1) + 1 == t->e->nth)
        notify(t->e);
    return NULL;
}

/* ---- public (main thread) ----------------------------------------------------------------- */

engine_t *engine_start(const bench_cfg_t *cfg, uint64_t first, uint64_t count, int stop_fd,
                       int64_t t0, char err[ENGINE_ERR_LEN])
{
    engine_t *e = calloc(1, sizeof *e);
    if (!e) {
        snprintf(err, ENGINE_ERR_LEN, "out of memory");
        return NULL;
    }
    e->cfg = cfg;
    e->first = first;
    e->count = count;
    e->stop_fd = stop_fd;
    e->t0 = t0;
    e->nth = cfg->threads < 1 ? 1 : cfg->threads;
    if ((uint64_t)e->nth > count && count > 0)
        e->nth = (int)count;
    e->notify_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    e->th = calloc((size_t)e->nth, sizeof *e->th);
    if (e->notify_fd < 0 || !e->th) {
        snprintf(err, ENGINE_ERR_LEN, "eventfd/calloc: %s", strerror(errno));
        goto out_free;
    }
    uint64_t seed[1];
    if (RAND_bytes((unsigned char *)seed, sizeof seed) != 1)
        seed[0] = (uint64_t)clock_wall_ns();
    int started = 0;
    for (int i = 0; i < e->nth; i++) {
        ethread_t *t = &e->th[i];
        t->e = e;
        t->idx = i;
        t->n = (uint32_t)(count / (uint64_t)e->nth + ((uint64_t)i < count % (uint64_t)e->nth));
        t->max_pending = cfg->max_pending / (uint32_t)e->nth;
        if (t->max_pending < 1)
            t->max_pending = 1;
        if (cfg->connect_rate > 0)
            t->connect_gap_ns = (int64_t)(1e9 * e->nth / cfg->connect_rate);
        if (cfg->duration_ns && cfg->mode == MODE_MESSAGE) /* push: the pusher's business */
            t->send_deadline = t0 + cfg->duration_ns;
        t->rng = (seed[0] ^ (0x9E3779B97F4A7C15ULL * (uint64_t)(i + 1) + first)) | 1;
        report_init(&t->rep);
        t->rep.open_loop = cfg->mode == MODE_MESSAGE && cfg->interval_ns > 0;
        t->rep.late_threshold_ns = cfg->late_threshold_ns;
        t->rep.conns_target = t->n;
        t->rep.t_start = t0;
        /* untouched calloc pages cost no RSS until a connection uses its slot */
        t->conns = t->n ? calloc(t->n, sizeof *t->conns) : NULL;
        t->rxbuf = malloc(RX_BUF_SIZE);
        if (t->rxbuf)
            memset(t->rxbuf, 0, RX_BUF_SIZE);
        if (buf_reserve(&t->tx, 64 * 1024 + 16 * (cfg->payload_len + 14)) == 0)
            memset(t->tx.data, 0, t->tx.cap);
        t->ep = epoll_create1(EPOLL_CLOEXEC);
        if ((t->n && !t->conns) || !t->rxbuf || t->ep < 0) {
            snprintf(err, ENGINE_ERR_LEN, "thread %d set-up: %s", i, strerror(errno));
            goto out_stop;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = STOP_TAG};
        if (epoll_ctl(t->ep, EPOLL_CTL_ADD, stop_fd, &ev) < 0) {
            snprintf(err, ENGINE_ERR_LEN, "epoll_ctl(stop): %s", strerror(errno));
            goto out_stop;
        }
    }
    /* the baseline for memory per connection: every per-thread buffer is touched already */
    e->rss_base_kb = engine_rss_kb();
    for (int i = 0; i < e->nth; i++) {
        int rv = pthread_create(&e->th[i].tid, NULL, thread_main, &e->th[i]);
        if (rv) {
            snprintf(err, ENGINE_ERR_LEN, "pthread_create: %s", strerror(rv));
            goto out_stop;
        }
        started++;
    }
    return e;

out_stop:
    if (started) {
        /* threads already running: make them stop, then join */
        uint64_t one = 1;
        if (write(stop_fd, &one, sizeof one) < 0)
            log_error("stop failed", "errno=%d", errno);
        for (int i = 0; i < started; i++)
            pthread_join(e->th[i].tid, NULL);
    }
    for (int i = 0; i < e->nth; i++) {
        free(e->th[i].conns);
        free(e->th[i].rxbuf);
        if (e->th[i].ep > 0)
            close(e->th[i].ep);
    }
out_free:
    if (e->notify_fd >= 0)
        close(e->notify_fd);
    free(e->th);
    free(e);
    return NULL;
}

int engine_notify_fd(const engine_t *e) { return e->notify_fd; }

int64_t engine_rss_base_kb(const engine_t *e) { return e->rss_base_kb; }

bool engine_ready(const engine_t *e) { return atomic_load(&e->nready) == e->nth; }

uint64_t engine_open_at_ready(const engine_t *e) { return atomic_load(&e->open_at_ready); }

bool engine_finished(const engine_t *e) { return atomic_load(&e->nfinished) == e->nth; }

void engine_join(engine_t *e, report_t *out)
{
    for (int i = 0; i < e->nth; i++) {
        ethread_t *t = &e->th[i];
        pthread_join(t->tid, NULL);
        report_merge(out, &t->rep);
        free(t->conns);
        free(t->rxbuf);
        sched_free(&t->sched);
        buf_free(&t->tx);
        close(t->ep);
    }
    out->threads = (uint32_t)e->nth;
    close(e->notify_fd);
    free(e->th);
    free(e);
}

int64_t engine_rss_kb(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return 0;
    long long size = 0, res = 0;
    if (fscanf(f, "%lld %lld", &size, &res) != 2)
        res = 0;
    fclose(f);
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}

int64_t engine_rss_peak_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return 0;
    char line[256];
    long long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %lld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}
