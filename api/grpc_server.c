/* grpc_server.c: gRPC server on nghttp2 + libuv, h2c or h2 over TLS (see grpc_server.h): the
 * listener, the connections (socket or TLS I/O) and the per-iteration flush. Their nghttp2
 * sessions (callbacks, budgets) are in grpc_h2session.c; what a single call does lives in
 * grpc_stream.c.
 *
 * Threads: everything here runs on ws-api's single loop thread (uv callbacks and the nghttp2
 * callbacks they trigger). No locks.
 *
 * Object lifetimes: a gconn owns its nghttp2 session, its socket and its gstreams. A gstream
 * dies in nghttp2's on_stream_close (or with its connection). A gconn is never freed inside an
 * nghttp2 callback: conn_close() runs only from uv callbacks, and the memory goes in the
 * uv_close callback of its poll handle. */
#include "grpc_server.h"

#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "acceptor.h"
#include "addr.h"
#include "grpc_internal.h"
#include "log.h"
#include "metrics.h"
#include "presence_gate.h"
#include "router.h"
#include "sockio.h"
#include "wsapi_metrics.h"

static uint64_t conn_serial;

void grpc__conn_count_failure(gconn_t *c)
{
    if (!c->failed) {
        c->failed = true;
        metrics_inc(wsapi_m.grpc_conn_errors);
    }
}

static void conn_close(gconn_t *c, const char *why);
static void conn_handshake(gconn_t *c);
static void conn_read(gconn_t *c);
static void on_conn_poll(uv_poll_t *h, int status, int events);

/* ---- connection I/O ------------------------------------------------------------------------ */

/* The peer does not read what we send (the socket did not take our bytes) while frames
 * outside flow control pile up in nghttp2's queue (answers to new streams, RST_STREAMs): its
 * requests are not read meanwhile, or a client that sends calls and never reads the answers
 * would grow that queue without bound. DATA is not counted: flow control and the stream
 * queues bound it already, and a gateway that reads slowly keeps being read. */
static bool out_backlog(const gconn_t *c)
{
    return iovq_pending(&c->out) && c->ng &&
           nghttp2_session_get_outbound_queue_size(c->ng) > OUTQ_PAUSE;
}

/* What the socket is polled for. Readable unless the peer leaves our output unread (it may
 * send or close at any time; a hang-up is reported either way); writable while bytes wait for
 * it, or while a TLS call needs it (handshake, or a read that must write first), but not while
 * the pending TLS write waits to read. */
static void poll_update(gconn_t *c)
{
    if (c->closing)
        return;
    bool wr, rd = true;
    if (c->io.ssl && !c->tls_ready) {
        wr = c->hs_wants_write;
    } else {
        wr = (iovq_pending(&c->out) && !c->io.wr_wants_read) || c->io.rd_wants_write;
        rd = !out_backlog(c) || c->io.wr_wants_read;
    }
    int ev = (rd ? UV_READABLE : 0) | (wr ? UV_WRITABLE : 0);
    if (!ev)
        ev = UV_READABLE;
    if (ev != c->events) {
        c->events = ev;
        uv_poll_start(&c->poll, ev, on_conn_poll);
    }
}

/* Returns withheld stream windows whose queues drained below half the bounds. */
static bool conn_unblock(gconn_t *c)
{
    bool any = false;
    size_t low = c->srv->cfg.stream_queue / 2;
    if (c->queued >= c->srv->cfg.conn_queue / 4)
        return false;
    for (gstream_t *s = c->streams; s && c->nblocked; s = s->next) {
        if (!s->blocked || s->oq_bytes + s->as.pending.len >= low)
            continue;
        nghttp2_session_consume_stream(c->ng, s->id, s->unconsumed);
        s->unconsumed = 0;
        s->blocked = false;
        c->nblocked--;
        any = true;
    }
    return any;
}

/* ---- transport: plain socket or TLS ------------------------------------------------------- */

/* A TLS error on an established connection: counted like any broken HTTP/2 connection. */
static void conn_io_failed(gconn_t *c, const char *why)
{
    grpc__conn_count_failure(c);
    log_rl_warn("tls connection failed", "conn=%llu peer=%s error=\"%s\"",
                (unsigned long long)c->serial, c->peer, why);
    conn_close(c, NULL);
}

/* Writes what nghttp2 has, as far as the socket takes it. Loop thread, outside nghttp2. */
static void conn_write(gconn_t *c)
{
    if (c->closing || (c->io.ssl && !c->tls_ready))
        return; /* TLS: nothing goes out before the handshake; conn_handshake calls back */
    char why[TLS_SERVER_ERR_LEN];
    for (;;) {
        while (iovq_pending(&c->out)) {
            ssize_t n = gout_send(c, why); /* advances the output's cursor */
            if (n == SOCKIO_AGAIN)
                goto wait_writable;
            if (n == SOCKIO_FAILED) {
                conn_io_failed(c, why);
                return;
            }
            if (n < 0) {
                conn_close(c, why);
                return;
            }
        }
        iovq_reset(&c->out, 4 * OUT_FILL);
        while (iovq_pending(&c->out) < OUT_FILL) {
            const uint8_t *d;
            ssize_t n = nghttp2_session_mem_send(c->ng, &d);
            if (n < 0) {
                grpc__conn_count_failure(c);
                conn_close(c, nghttp2_strerror((int)n));
                return;
            }
            if (n == 0)
                break;
            if (buf_append(&c->out.buf, d, (size_t)n) < 0) {
                conn_close(c, "out of memory");
                return;
            }
        }
        if (c->nblocked && conn_unblock(c))
            continue; /* WINDOW_UPDATEs to send */
        if (!iovq_pending(&c->out))
            break;
    }
    if (!nghttp2_session_want_read(c->ng) && !nghttp2_session_want_write(c->ng)) {
        conn_close(c, NULL); /* finished (GOAWAY exchanged, or session terminated) */
        return;
    }
    if (c->io.ssl && tls_server_pending(c->io.ssl)) {
        conn_read(c); /* decrypted bytes left while reading was paused: poll cannot see them */
        return;
    }
wait_writable:
    poll_update(c);
}

void grpc__conn_want_write(gconn_t *c)
{
    if (c->in_wlist || c->closing)
        return;
    c->in_wlist = true;
    c->wnext = c->srv->wlist;
    c->srv->wlist = c;
}

/* Feeds what arrived to nghttp2, at most READ_BUDGET bytes per call so one peer cannot starve
 * the others (the socket stays readable, poll comes back). With TLS, bytes OpenSSL already
 * took off the socket are invisible to poll, so they are always consumed before returning. */
static void conn_read(gconn_t *c)
{
    grpc_server_t *srv = c->srv;
    size_t budget = READ_BUDGET;
    char why[TLS_SERVER_ERR_LEN];
    while (!c->closing && (budget || (c->io.ssl && tls_server_pending(c->io.ssl)))) {
        ssize_t n = sockio_recv(&c->io, srv->rbuf, sizeof srv->rbuf, why);
        if (n == SOCKIO_AGAIN)
            break;
        if (n == SOCKIO_FAILED) {
            conn_io_failed(c, why);
            return;
        }
        if (n < 0) {
            conn_close(c, why);
            return;
        }
        ssize_t rv = nghttp2_session_mem_recv(c->ng, srv->rbuf, (size_t)n);
        if (rv < 0) {
            grpc__conn_count_failure(c);
            uint32_t code = NGHTTP2_PROTOCOL_ERROR;
            if (c->limit != H2L_NONE) { /* one of our budgets, from inside nghttp2 */
                grpc__limit(c, c->limit, "connection ended");
                code = NGHTTP2_ENHANCE_YOUR_CALM;
            } else {
                log_rl_warn("http2 connection failed", "conn=%llu peer=%s error=\"%s\"",
                            (unsigned long long)c->serial, c->peer, nghttp2_strerror((int)rv));
            }
            /* Try to tell the peer (GOAWAY) before closing: one attempt, and only when no
             * earlier frame is half written (its bytes must not be interleaved). */
            nghttp2_session_terminate_session(c->ng, code);
            const uint8_t *d;
            ssize_t m = nghttp2_session_mem_send(c->ng, &d);
            if (m > 0 && !iovq_pending(&c->out))
                (void)sockio_send(&c->io, d, (size_t)m, why);
            conn_close(c, NULL);
            return;
        }
        budget = (size_t)n >= budget ? 0 : budget - (size_t)n;
        if (!c->io.ssl && (size_t)n < sizeof srv->rbuf)
            break; /* the socket is most likely drained: poll says when more comes */
    }
    grpc__conn_want_write(c);
}

static void on_conn_poll(uv_poll_t *h, int status, int events)
{
    gconn_t *c = h->data;
    if (status < 0) {
        /* libuv reports POLLERR as UV_EBADF: fetch the socket's real error. */
        int e = 0;
        socklen_t el = sizeof e;
        getsockopt(c->io.fd, SOL_SOCKET, SO_ERROR, &e, &el);
        conn_close(c, e ? strerror(e) : uv_strerror(status));
        return;
    }
    if (c->io.ssl && !c->tls_ready) {
        conn_handshake(c);
        return;
    }
    if (events & UV_READABLE) {
        if (!out_backlog(c))
            conn_read(c);
        if (!c->closing && c->io.wr_wants_read)
            grpc__conn_want_write(c); /* the pending TLS write may go on now */
    }
    if (!c->closing && (events & UV_WRITABLE)) {
        if (c->io.rd_wants_write)
            conn_read(c); /* the TLS read that had to write first */
        if (!c->closing)
            grpc__conn_want_write(c);
    }
}

/* A failed or timed-out TLS handshake: counted by reason, logged, closed. Others go on. */
static void conn_handshake_failed(gconn_t *c, int reason, const char *why)
{
    static const char *const names[] = {"eof", "protocol", "alpn", "timeout"};
    metrics_inc(wsapi_m.tls_hs_errors[reason]);
    if (reason == WSAPI_TLS_EOF && BIO_number_read(SSL_get_rbio(c->io.ssl)) == 0)
        /* connected and left without a byte: port probes, health checks */
        log_debug("tls connection closed before handshake", "conn=%llu peer=%s",
                  (unsigned long long)c->serial, c->peer);
    else
        log_rl_warn("tls handshake failed", "conn=%llu peer=%s reason=%s error=\"%s\"",
                    (unsigned long long)c->serial, c->peer, names[reason], why);
    conn_close(c, NULL);
}

/* Advances the TLS handshake; once it is done, HTTP/2 starts (our SETTINGS, and whatever the
 * client sent right behind its Finished). Loop thread, from the poll callback. */
static void conn_handshake(gconn_t *c)
{
    char why[TLS_SERVER_ERR_LEN];
    int rv = tls_server_handshake(c->io.ssl, why);
    c->hs_wants_write = rv == TLS_IO_WANT_WRITE;
    if (rv == TLS_IO_WANT_READ || rv == TLS_IO_WANT_WRITE) {
        poll_update(c);
        return;
    }
    if (rv < 0) {
        conn_handshake_failed(c, rv == TLS_IO_CLOSED ? WSAPI_TLS_EOF
                                 : rv == TLS_IO_ALPN ? WSAPI_TLS_ALPN
                                                     : WSAPI_TLS_PROTOCOL,
                              why);
        return;
    }
    c->tls_ready = true;
    c->srv->nhandshaking--;
    metrics_inc(wsapi_m.tls_handshakes);
    if (log_level >= LOG_DEBUG) {
        char d[160];
        tls_server_describe(c->io.ssl, d, sizeof d);
        log_debug("tls established", "conn=%llu peer=%s tls=\"%s\"",
                  (unsigned long long)c->serial, c->peer, d);
    }
    conn_read(c); /* also queues the first write (SETTINGS) */
}

static void on_conn_closed(uv_handle_t *h)
{
    gconn_t *c = h->data;
    grpc_server_t *srv = c->srv;
    iovq_free(&c->out);
    free(c);
    srv->handles_open--;
    if (srv->freeing && srv->handles_open == 0)
        free(srv);
}

/* Closes the socket and frees the session and streams; the struct goes with the poll handle. */
static void conn_close(gconn_t *c, const char *why)
{
    if (c->closing)
        return;
    grpc_server_t *srv = c->srv;
    c->closing = true;
    if (why)
        log_rl_info("grpc connection closed", "conn=%llu peer=%s reason=\"%s\"",
                    (unsigned long long)c->serial, c->peer, why);
    else
        log_debug("grpc connection closed", "conn=%llu peer=%s", (unsigned long long)c->serial,
                  c->peer);
    while (c->streams) {
        gstream_t *s = c->streams;
        nghttp2_session_set_stream_user_data(c->ng, s->id, NULL);
        grpc__stream_free(s);
    }
    grpc__session_end(c);
    nghttp2_session_del(c->ng);
    c->ng = NULL;
    /* unlink from the write list */
    for (gconn_t **pp = &srv->wlist; *pp; pp = &(*pp)->wnext) {
        if (*pp == c) {
            *pp = c->wnext;
            break;
        }
    }
    c->in_wlist = false;
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    srv->nconns--;
    metrics_gauge_add(wsapi_m.grpc_conns, -1);
    uv_poll_stop(&c->poll);
    if (c->io.ssl) {
        if (!c->tls_ready)
            srv->nhandshaking--;
        /* close_notify only on a healthy connection (never after a TLS or HTTP/2 failure) */
        tls_server_conn_free(c->io.ssl, c->tls_ready && !c->failed);
        c->io.ssl = NULL;
    }
    /* Unread bytes at close(2) make the kernel reset the connection, and a reset can destroy
     * our last frames (GOAWAY) before the peer reads them: drop what already arrived (a
     * SETTINGS ACK in flight is typical) and send FIN first. */
    for (int i = 0; i < 4 && recv(c->io.fd, srv->rbuf, sizeof srv->rbuf, MSG_DONTWAIT) > 0; i++)
        ;
    shutdown(c->io.fd, SHUT_WR);
    close(c->io.fd);
    uv_close((uv_handle_t *)&c->poll, on_conn_closed);
}

void grpc__conn_drop(gconn_t *c, const char *why)
{
    conn_close(c, why);
}

static int conn_new(grpc_server_t *srv, int fd, const struct sockaddr_storage *ss)
{
    gconn_t *c = calloc(1, sizeof *c);
    if (!c)
        return -1;
    gout_init(c);
    c->srv = srv;
    c->io.fd = fd;
    c->serial = ++conn_serial;
    addr_format(ss, c->peer, sizeof c->peer);
    snprintf(c->anon_gw, sizeof c->anon_gw, "anonymous-%llu", (unsigned long long)c->serial);
    if (srv->tls && !(c->io.ssl = tls_server_conn(srv->tls, fd))) {
        free(c);
        return -1;
    }
    if (grpc__session_new(c) < 0)
        goto out_free;
    if (uv_poll_init(srv->loop, &c->poll, fd) != 0)
        goto out_session;
    if (c->io.ssl) {
        srv->nhandshaking++;
        c->hs_deadline_ms = uv_now(srv->loop) + srv->cfg.tls_handshake_timeout_ms;
    }
    c->poll.data = c;
    srv->handles_open++;
    c->events = UV_READABLE;
    uv_poll_start(&c->poll, UV_READABLE, on_conn_poll);
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->nconns++;
    metrics_gauge_add(wsapi_m.grpc_conns, 1);
    metrics_inc(wsapi_m.grpc_conns_total);
    log_debug("grpc connection", "conn=%llu peer=%s", (unsigned long long)c->serial, c->peer);
    if (srv->shutting_down)
        nghttp2_submit_goaway(c->ng, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, NULL, 0);
    grpc__conn_want_write(c); /* our SETTINGS (TLS: once the handshake is done) */
    return 0;

out_session:
    nghttp2_session_del(c->ng);
out_free:
    tls_server_conn_free(c->io.ssl, 0);
    iovq_free(&c->out);
    free(c);
    return -1;
}

/* Deadlines, every SWEEP_MS: TLS handshakes not done in time (slow or silent peers would
 * otherwise hold a descriptor forever), connections without a stream for idle_timeout_ms
 * (GOAWAY, then closed once it is out), and unfinished messages past message_timeout_ms.
 * Loop thread; O(connections + streams) per run. */
static void on_sweep(uv_timer_t *t)
{
    grpc_server_t *srv = t->data;
    uint64_t now = uv_now(srv->loop);
    for (gconn_t *c = srv->conns, *next; c; c = next) {
        next = c->next;
        if (c->closing)
            continue;
        if (c->io.ssl && !c->tls_ready) {
            if (now >= c->hs_deadline_ms)
                conn_handshake_failed(c, WSAPI_TLS_TIMEOUT, "handshake not finished in time");
            continue;
        }
        if (c->nstreams == 0 && now >= c->idle_since_ms + srv->cfg.idle_timeout_ms &&
            !srv->shutting_down && nghttp2_session_want_read(c->ng)) {
            grpc__limit(c, H2L_IDLE_TIMEOUT, "no stream");
            nghttp2_session_terminate_session(c->ng, NGHTTP2_NO_ERROR);
            grpc__conn_want_write(c);
            continue;
        }
        for (gstream_t *st = c->streams, *sn; st; st = sn) {
            sn = st->next;
            grpc__stream_sweep(st, now);
        }
    }
    presence_gate_open(srv->pres); /* sync timeouts, wsapi_presence_ready */
    grpc_server_flush(srv);
}

/* ---- listener ------------------------------------------------------------------------------ */

static void on_accept(void *ud, int fd, const struct sockaddr_storage *ss)
{
    grpc_server_t *srv = ud;
    /* A Unix domain socket does not grow its send buffer as TCP does: at the kernel's default
     * (208 KiB) the echo's Downstreams left bytes behind, ws-api sent twice as often and its
     * gateway woke more (bench/RESULTS.md #63). */
    if (ss->ss_family == AF_UNIX && srv->cfg.unix_sndbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &srv->cfg.unix_sndbuf, sizeof srv->cfg.unix_sndbuf);
    if (conn_new(srv, fd, ss) < 0) {
        log_rl_error("cannot set up connection", "error=%s", "out of memory");
        close(fd);
    }
}

/* ---- flushing ------------------------------------------------------------------------------ */

void grpc_server_flush(grpc_server_t *srv)
{
    api_stream_t *as;
    while ((as = router_pop_dirty(srv->r)))
        as->flush(as);
    while (srv->wlist) {
        gconn_t *c = srv->wlist;
        srv->wlist = c->wnext;
        c->in_wlist = false;
        conn_write(c);
    }
}

static void on_check(uv_check_t *h)
{
    grpc_server_flush(h->data);
}

/* ---- public -------------------------------------------------------------------------------- */

static void on_noop_close(uv_handle_t *h)
{
    grpc_server_t *srv = h->data;
    srv->handles_open--;
    if (srv->freeing && srv->handles_open == 0)
        free(srv);
}

grpc_server_t *grpc_server_new(uv_loop_t *loop, const grpc_server_cfg_t *cfg, exchange_t *x,
                               router_t *r, presence_t *pres, char err[GRPC_SERVER_ERR_LEN])
{
    struct sockaddr_storage ss;
    char host[64];
    int port;
    if (addr_parse(cfg->listen, &ss, host, &port, err) < 0)
        return NULL;
    grpc_server_t *srv = calloc(1, sizeof *srv);
    if (!srv) {
        snprintf(err, GRPC_SERVER_ERR_LEN, "out of memory");
        return NULL;
    }
    srv->loop = loop;
    srv->cfg = *cfg;
    srv->x = x;
    srv->r = r;
    srv->pres = pres;
    if (bearer_init(&srv->push_auth, cfg->push_token) < 0 ||
        bearer_init(&srv->gateway_auth, cfg->gateway_token) < 0) {
        snprintf(err, GRPC_SERVER_ERR_LEN, "cannot hash the bearer tokens (OpenSSL)");
        goto out_free;
    }
    bool tls = cfg->tls_cert && *cfg->tls_cert && cfg->tls_key && *cfg->tls_key;
    if (tls) {
        char terr[TLS_SERVER_ERR_LEN];
        if (!(srv->tls = tls_server_new(cfg->tls_cert, cfg->tls_key, "h2", terr))) {
            snprintf(err, GRPC_SERVER_ERR_LEN, "%s", terr);
            goto out_free;
        }
    }
    int lfd = addr_listen(&ss, 1024, err);
    if (lfd < 0)
        goto out_free;
    srv->port = addr_local_port(lfd);

    if (grpc__h2_setup(srv) < 0) {
        snprintf(err, GRPC_SERVER_ERR_LEN, "out of memory");
        goto out_close_fd;
    }
    if (acceptor_start(&srv->acc, loop, lfd, "grpc", wsapi_m.accept_errors[0], on_accept,
                       srv) < 0) {
        snprintf(err, GRPC_SERVER_ERR_LEN, "cannot poll the listening socket");
        goto out_close_fd;
    }

    uv_check_init(loop, &srv->check);
    srv->check.data = srv;
    uv_timer_init(loop, &srv->sweep);
    srv->sweep.data = srv;
    srv->handles_open = 3; /* the acceptor (both its handles), check, sweep */
    uv_check_start(&srv->check, on_check);
    uint64_t every = SWEEP_MS; /* fine enough for the shortest deadline configured */
    uint64_t deadlines[] = {srv->tls ? cfg->tls_handshake_timeout_ms : SWEEP_MS,
                            cfg->message_timeout_ms, cfg->idle_timeout_ms};
    for (size_t i = 0; i < sizeof deadlines / sizeof deadlines[0]; i++)
        if (deadlines[i] / 4 < every)
            every = deadlines[i] / 4;
    if (every < 10)
        every = 10;
    uv_timer_start(&srv->sweep, on_sweep, every, every);
    uv_unref((uv_handle_t *)&srv->sweep); /* never keeps the loop alive by itself */
    char where[128];
    if (ss.ss_family == AF_UNIX)
        snprintf(where, sizeof where, "%s", cfg->listen);
    else
        snprintf(where, sizeof where, "%s:%d", host, srv->port);
    log_info("grpc listening",
             "addr=%s transport=%s max_message=%zu stream_window=%u conn_window=%u "
             "max_streams=%u max_header_list=%u conn_buffer=%zu conn_queue=%zu total_queue=%zu "
             "push_auth=%s gateway_auth=%s",
             where, srv->tls ? "h2-tls" : "h2c", cfg->max_message,
             cfg->stream_window, cfg->conn_window, cfg->max_streams, cfg->max_header_list,
             cfg->conn_buffer, cfg->conn_queue, cfg->total_queue,
             srv->push_auth.enabled ? "bearer" : "none",
             srv->gateway_auth.enabled ? "bearer" : "none");
    return srv;

out_close_fd:
    nghttp2_session_callbacks_del(srv->cbs);
    nghttp2_option_del(srv->opt);
    close(lfd);
out_free:
    tls_server_free(srv->tls);
    free(srv);
    return NULL;
}

int grpc_server_port(const grpc_server_t *srv)
{
    return srv->port;
}

size_t grpc_server_connections(const grpc_server_t *srv)
{
    return srv->nconns;
}

static void on_acceptor_closed(void *ud)
{
    grpc_server_t *srv = ud;
    srv->handles_open--;
    if (srv->freeing && srv->handles_open == 0)
        free(srv);
}

void grpc_server_shutdown(grpc_server_t *srv)
{
    srv->shutting_down = true;
    acceptor_stop(&srv->acc);
    /* TLS connections still in their handshake have no calls to finish: close them now. */
    for (gconn_t *c = srv->conns, *next; c; c = next) {
        next = c->next;
        if (c->io.ssl && !c->tls_ready)
            conn_close(c, "shutting down during TLS handshake");
    }
    for (gconn_t *c = srv->conns; c; c = c->next) {
        nghttp2_submit_goaway(c->ng, NGHTTP2_FLAG_NONE,
                              nghttp2_session_get_last_proc_stream_id(c->ng), NGHTTP2_NO_ERROR,
                              (const uint8_t *)"shutdown", 8);
        grpc__conn_want_write(c);
    }
    grpc_server_flush(srv);
}

void grpc_server_end_streams(grpc_server_t *srv, int status, const char *message)
{
    for (gconn_t *c = srv->conns; c; c = c->next)
        for (gstream_t *s = c->streams; s; s = s->next)
            if (s->kind == GS_EXCHANGE && !s->eof)
                grpc__stream_end(s, status, message);
    grpc_server_flush(srv);
}

void grpc_server_free(grpc_server_t *srv)
{
    if (!srv)
        return;
    acceptor_stop(&srv->acc);
    while (srv->conns)
        conn_close(srv->conns, "server stopping");
    srv->freeing = true;
    nghttp2_session_callbacks_del(srv->cbs);
    nghttp2_option_del(srv->opt);
    tls_server_free(srv->tls); /* every connection's SSL went with conn_close above */
    srv->tls = NULL;
    uv_check_stop(&srv->check);
    uv_timer_stop(&srv->sweep);
    acceptor_close(&srv->acc, on_acceptor_closed);
    uv_close((uv_handle_t *)&srv->check, on_noop_close);
    uv_close((uv_handle_t *)&srv->sweep, on_noop_close);
}

