/* engine_conn.c: one connection of the load engine (see engine.h, engine_priv.h): the
 * non-blocking connect, the RFC 6455 client handshake, framing (masked sends, the parser's
 * callbacks), the sends of message mode and the connection's end (closing handshake, reset).
 *
 * A connection lives in a fixed slot of its thread's array (96 bytes) and owns heap memory
 * only while it needs it: the handshake state while connecting, the unsent tail of a write
 * while the socket is full, the parser's hold buffer while a header is split across reads, and
 * the FIFO of due and send times while messages are outstanding. Reads go into one buffer per
 * thread.
 *
 * Threads: the engine thread owning the connection (called from engine.c's loop). */
#include "engine_priv.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "buf.h"
#include "clock.h"
#include "ws_handshake.h"
#include "log.h"
#include "recov.h"
#include "tsq.h"
#include "wbuf.h"
#include "ws_frame.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define PUSH_PREFIX 32       /* bytes of each pushed message parsed for its time stamp */

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

static uint32_t outstanding(const bconn_t *c) { return tsq_len(c->fifo); }

/* ---- writing --------------------------------------------------------------------------- */

/* Writes or queues bytes. Returns 0, or -1 when the socket is broken (the caller ends the
 * connection at a safe point). */
int engine__conn_write(bconn_t *c, const uint8_t *p, size_t len)
{
    return wbuf_write(&c->out, c->fd, p, len);
}

/* One masked client frame (RFC 6455 §5.3: a fresh key per frame) appended to t->tx. */
int engine__tx_frame(ethread_t *t, int opcode, const void *p, size_t len)
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
void engine__conn_end(ethread_t *t, bconn_t *c, int err)
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
void engine__conn_start_close(ethread_t *t, bconn_t *c)
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
    if (engine__tx_frame(t, WS_OP_CLOSE, body, 2) < 0 ||
        engine__conn_write(c, t->tx.data, t->tx.len) < 0)
        engine__conn_end(t, c, -1);
}

/* ---- messages ---------------------------------------------------------------------------- */

void engine__mark_send_done(ethread_t *t, bconn_t *c)
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
int engine__send_msgs(ethread_t *t, bconn_t *c, uint32_t k, int64_t due)
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
            if (engine__tx_frame(t, cfg->opcode, cfg->payload, cfg->payload_len) < 0) {
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
                engine__conn_end(t, c, ERR_CLOSED);
                return -1;
            }
        c->sent += k;
        t->rep.sent += k;
        t->rep.bytes_sent += (uint64_t)k * cfg->payload_len;
        if (!t->rep.t_first_send)
            t->rep.t_first_send = now;
        t->rep.t_last_send = now;
        if (engine__conn_write(c, t->tx.data, t->tx.len) < 0) {
            engine__conn_end(t, c, ERR_CLOSED);
            return -1;
        }
    }
    if ((cfg->times && c->sent >= cfg->times) || (t->send_deadline && when >= t->send_deadline))
        engine__mark_send_done(t, c);
    return 0;
}

/* After activity on c in message mode: close it when it has nothing more to do. */
void engine__maybe_finish(ethread_t *t, bconn_t *c)
{
    if (c->state == C_OPEN && c->send_done && !outstanding(c))
        engine__conn_start_close(t, c);
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
            (engine__tx_frame(t, WS_OP_PONG, p, n) < 0 ||
             engine__conn_write(c, t->tx.data, t->tx.len) < 0)) {
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
        if (engine__tx_frame(t, WS_OP_CLOSE, body, 2) == 0)
            (void)engine__conn_write(c, t->tx.data, t->tx.len);
    } else if (engine__tx_frame(t, WS_OP_CLOSE, NULL, 0) == 0) {
        (void)engine__conn_write(c, t->tx.data, t->tx.len);
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
        engine__conn_end(t, c, t->cur_action == ACT_END_ERR ? t->cur_err : -1);
        return;
    }
    if (rv < 0) {
        log_rl_warn("protocol error", "conn=%llu err=%d",
                    (unsigned long long)global_index(t, (uint32_t)(c - t->conns)), rv);
        engine__conn_end(t, c, rv == WS_ERR_NOMEM ? ERR_CLOSED : ERR_PROTOCOL);
        return;
    }
    if (t->e->cfg->mode != MODE_MESSAGE || c->state != C_OPEN)
        return;
    if (t->e->cfg->interval_ns == 0 && t->cur_replies) {
        if (engine__send_msgs(t, c, t->cur_replies, 0) < 0)
            return;
    }
    engine__maybe_finish(t, c);
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
            engine__conn_end(t, c, ERR_CLOSED);
        else
            recov_back(c->rc, c->t_connect); /* (timed from the reconnect's start) */
        return;
    }
    if (cfg->mode == MODE_PUSH && cfg->join_msg) {
        t->tx.len = 0;
        if (engine__tx_frame(t, WS_OP_TEXT, cfg->join_msg, strlen(cfg->join_msg)) < 0 ||
            engine__conn_write(c, t->tx.data, t->tx.len) < 0)
            engine__conn_end(t, c, ERR_CLOSED);
        return;
    }
    if (cfg->mode != MODE_MESSAGE)
        return;
    t->senders++;
    if (t->final || (t->send_deadline && now >= t->send_deadline)) {
        engine__conn_start_close(t, c);
        return;
    }
    if (cfg->interval_ns == 0) {
        engine__send_msgs(t, c, cfg->inflight, 0);
    } else {
        /* the schedule of c starts now */
        if (engine__send_msgs(t, c, 1, now) < 0)
            return;
        if (!c->send_done)
            engine__schedule(t, c, now + cfg->interval_ns);
    }
    if (c->state == C_OPEN)
        engine__maybe_finish(t, c);
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
                engine__conn_end(t, c, ERR_HANDSHAKE);
                return;
            }
            memcpy(hs->buf, p, n);
            hs->len = (uint16_t)n;
        }
        return;
    }
    if (rv == HS_ERR_STATUS) {
        report_code_add(t->rep.http_status, (uint32_t)status, 1);
        engine__conn_end(t, c, ERR_HANDSHAKE_STATUS);
        return;
    }
    if (rv != HS_OK) {
        log_rl_warn("handshake failed", "status=%d err=%d", status, rv);
        engine__conn_end(t, c, ERR_HANDSHAKE);
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
        engine__conn_end(t, c, err == ECONNREFUSED ? ERR_CONNECT_REFUSED : ERR_CONNECT);
        return;
    }
    const bench_cfg_t *cfg = t->e->cfg;
    uint64_t g = global_index(t, (uint32_t)(c - t->conns));
    const engine_target_t *h = &cfg->hosts[g % (uint64_t)cfg->nhosts];
    char key[HS_KEY_LEN + 1];
    c->hs = calloc(1, sizeof *c->hs);
    if (!c->hs || hs_key(key) < 0) {
        engine__conn_end(t, c, ERR_CONNECT);
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
        engine__conn_end(t, c, ERR_CONNECT);
        return;
    }
    size_t rl = hs_request((char *)t->tx.data, t->tx.cap, h->name, path, key, cfg->extra_headers);
    c->state = C_HANDSHAKE;
    if (!rl || engine__conn_write(c, t->tx.data, rl) < 0)
        engine__conn_end(t, c, ERR_CONNECT);
}

void engine__conn_start(ethread_t *t, uint32_t j)
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
        engine__conn_end(t, c, ERR_CONNECT);
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
            engine__conn_end(t, c, ERR_CONNECT);
            return;
        }
    }
    int rv = connect(fd, (const struct sockaddr *)&h->addr, h->addr_len);
    if (rv < 0 && errno != EINPROGRESS) {
        int err = errno;
        log_rl_warn("connect failed", "errno=%d err=\"%s\"", err, strerror(err));
        engine__conn_end(t, c, err == ECONNREFUSED ? ERR_CONNECT_REFUSED : ERR_CONNECT);
        return;
    }
    /* added after connect(): an unconnected socket would report HUP at once */
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                             .data.u64 = j};
    if (epoll_ctl(t->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
        log_rl_warn("epoll_ctl failed", "errno=%d", errno);
        engine__conn_end(t, c, ERR_CONNECT);
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
            engine__conn_end(t, c, -1);
        else if (c->state == C_HANDSHAKE)
            engine__conn_end(t, c, ERR_HANDSHAKE);
        else
            engine__conn_end(t, c, ERR_CLOSED);
        return;
    }
}

void engine__conn_event(ethread_t *t, uint32_t j, uint32_t ev)
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
            engine__conn_end(t, c, c->state == C_CLOSING ? -1 : ERR_CLOSED);
            return;
        }
    }
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        conn_read(t, c);
}
