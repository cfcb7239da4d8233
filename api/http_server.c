/* http_server.c: HTTP/1.1 over plain sockets or TLS on ws-api's loop (see http_server.h).
 *
 * Threads: everything runs on ws-api's loop thread (uv callbacks; the request handler is
 * called from inside them).
 *
 * Lifetimes: the server owns its connections; a connection owns its socket, SSL and
 * http_conn. A connection is never freed inside its own handler call: conn_close() runs from
 * uv callbacks only, and the struct goes in the close callback of its poll handle. */
#include "http_server.h"

#include <arpa/inet.h>
#include <stddef.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "acceptor.h"
#include "addr.h"
#include "log.h"
#include "metrics.h"
#include "sockio.h"
#include "tls_server.h"
#include "wsapi_metrics.h"

#define READ_CHUNK (64 * 1024)
#define READ_BUDGET (256 * 1024) /* per readable event: other connections get their turn */
#define SWEEP_MS 250
#define LINGER_MS 2000
#define LINGER_MAX (1024 * 1024)

typedef enum { HC_HANDSHAKE, HC_OPEN, HC_LINGER } hc_state_t;

typedef struct hconn {
    struct http_server *srv;
    sockio_t io;
    uv_poll_t poll;
    int events;           /* currently polled */
    hc_state_t state;
    bool hs_wants_write;
    bool peer_eof;        /* the client sent FIN */
    bool closing;
    http_conn_t hc;
    http_phase_t seen_phase; /* phase and request count at the last look ... */
    uint64_t seen_requests;
    uint64_t since_ms;       /* ... and since when */
    uint64_t out_since_ms;   /* response bytes waiting for the socket since (0: none) */
    uint64_t linger_until_ms;
    size_t linger_bytes;
    uint64_t accepted_ms;
    int holds;           /* http_server_hold handles out: the struct outlives its close */
    bool freed;          /* closed and its handle gone: freed when the last hold goes */
    struct hconn *prev, *next;
    char peer[64];
} hconn_t;

struct http_server {
    uv_loop_t *loop;
    http_server_cfg_t cfg;
    http_conn_cfg_t ccfg;
    tls_server_t *tls;
    acceptor_t acc;
    uv_timer_t sweep;
    hconn_t *conns;
    size_t nconns;
    int port;
    int handles_open;
    bool freeing;
    uint8_t rbuf[READ_CHUNK];
};

static const char *const limit_names[] = {
    [HTTP_LIMIT_BAD_REQUEST] = "bad_request",   [HTTP_LIMIT_FRAMING] = "framing",
    [HTTP_LIMIT_CHUNKED] = "chunked",           [HTTP_LIMIT_BODY_SIZE] = "body_size",
    [HTTP_LIMIT_HEAD_TIMEOUT] = "head_timeout", [HTTP_LIMIT_BODY_TIMEOUT] = "body_timeout",
};

static void on_conn_poll(uv_poll_t *h, int status, int events);

static void maybe_free_server(http_server_t *s)
{
    if (s->freeing && s->handles_open == 0)
        free(s);
}

static void on_conn_closed(uv_handle_t *h)
{
    hconn_t *c = h->data;
    http_server_t *s = c->srv;
    if (c->holds) {
        c->freed = true; /* the last http_server_answer frees it */
        c->srv = NULL;
    } else {
        free(c);
    }
    s->handles_open--;
    maybe_free_server(s);
}

/* Closes the socket now; the struct goes with the poll handle. */
static void conn_close(hconn_t *c, bool tls_notify)
{
    if (c->closing)
        return;
    http_server_t *s = c->srv;
    c->closing = true;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->nconns--;
    metrics_gauge_add(wsapi_m.http_conns, -1);
    uv_poll_stop(&c->poll);
    tls_server_conn_free(c->io.ssl, tls_notify);
    c->io.ssl = NULL;
    close(c->io.fd);
    http_conn_free(&c->hc);
    uv_close((uv_handle_t *)&c->poll, on_conn_closed);
}

/* What the socket is polled for. */
static void poll_update(hconn_t *c)
{
    if (c->closing)
        return;
    const uint8_t *p;
    bool out = http_conn_output(&c->hc, &p) > 0;
    bool rd, wr;
    if (c->state == HC_HANDSHAKE) {
        rd = !c->hs_wants_write;
        wr = c->hs_wants_write;
    } else if (c->state == HC_LINGER) {
        rd = true;
        wr = false;
    } else {
        rd = (!c->peer_eof && http_conn_wants_input(&c->hc)) || (out && c->io.wr_wants_read);
        wr = (out && !c->io.wr_wants_read) || c->io.rd_wants_write;
    }
    int ev = (rd ? UV_READABLE : 0) | (wr ? UV_WRITABLE : 0);
    if (!ev)
        ev = UV_READABLE; /* never deaf: errors and hang-ups still come through */
    if (ev != c->events) {
        c->events = ev;
        uv_poll_start(&c->poll, ev, on_conn_poll);
    }
}

static void count_limit(const char *name)
{
    for (int i = 0; i < WSAPI_HTTP_LIMITS; i++)
        if (strcmp(wsapi_http_limit_names[i], name) == 0)
            metrics_inc(wsapi_m.http_limits[i]);
}

/* Refusals the state machine made: metric, rate-limited log line, the owner's hook. */
static void report_limits(hconn_t *c)
{
    const char *msg, *path;
    int status;
    http_limit_t l = http_conn_take_limit(&c->hc, &msg, &status, &path);
    if (l == HTTP_LIMIT_NONE)
        return;
    http_server_t *s = c->srv;
    count_limit(limit_names[l]);
    char q[128];
    log_rl_warn("http request refused", "limit=%s status=%d peer=%s path=%s error=\"%s\"",
                limit_names[l], status, c->peer, log_quote(q, sizeof q, path), msg);
    if (s->cfg.on_refused)
        s->cfg.on_refused(s->cfg.ud, status, path);
}

/* Starts the lingering close: the last answer is out; stop sending, drop what still comes. */
static void conn_linger(hconn_t *c)
{
    if (c->peer_eof) {
        conn_close(c, true);
        return;
    }
    tls_server_conn_free(c->io.ssl, 1); /* close_notify when the socket takes it */
    c->io.ssl = NULL;
    shutdown(c->io.fd, SHUT_WR);
    c->state = HC_LINGER;
    c->linger_until_ms = uv_now(c->srv->loop) + LINGER_MS;
    poll_update(c);
}

static void linger_read(hconn_t *c)
{
    for (int i = 0; i < 4; i++) {
        ssize_t n = recv(c->io.fd, c->srv->rbuf, sizeof c->srv->rbuf, 0);
        if (n > 0) {
            c->linger_bytes += (size_t)n;
            if (c->linger_bytes > LINGER_MAX)
                break;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        break; /* EOF or error */
    }
    conn_close(c, false);
}

/* Sends queued output; resumes request handling when it drained. Returns false when the
 * connection was closed. */
static bool conn_flush(hconn_t *c)
{
    char why[TLS_SERVER_ERR_LEN];
    for (int round = 0; round < 64; round++) {
        const uint8_t *p;
        size_t n = http_conn_output(&c->hc, &p);
        if (n) {
            ssize_t m = sockio_send(&c->io, p, n, why);
            if (m == SOCKIO_AGAIN) {
                if (!c->out_since_ms)
                    c->out_since_ms = uv_now(c->srv->loop);
                return true;
            }
            if (m < 0) {
                log_debug("http connection closed", "peer=%s reason=\"%s\"", c->peer, why);
                conn_close(c, false);
                return false;
            }
            http_conn_sent(&c->hc, (size_t)m);
            continue;
        }
        c->out_since_ms = 0;
        if (http_conn_done(&c->hc)) {
            conn_linger(c);
            return !c->closing;
        }
        /* Output drained: requests that waited behind it (pipelining) go on. */
        size_t before = c->hc.in.len - c->hc.in_off;
        if (!before)
            return true;
        if (http_conn_process(&c->hc) < 0) {
            conn_close(c, false);
            return false;
        }
        report_limits(c);
        if (http_conn_output(&c->hc, &p) == 0 && c->hc.in.len - c->hc.in_off == before)
            return true; /* nothing more to do until more input */
    }
    return true;
}

/* Reads what the socket has (up to READ_BUDGET, while the state machine wants input).
 * Returns false when the connection was closed. */
static bool conn_read(hconn_t *c)
{
    http_server_t *s = c->srv;
    char why[TLS_SERVER_ERR_LEN];
    size_t budget = READ_BUDGET;
    while (!c->peer_eof && http_conn_wants_input(&c->hc) &&
           (budget || (c->io.ssl && tls_server_pending(c->io.ssl)))) {
        ssize_t n = sockio_recv(&c->io, s->rbuf, sizeof s->rbuf, why);
        if (n == SOCKIO_AGAIN)
            break;
        if (n == SOCKIO_FAILED) {
            log_rl_warn("https connection failed", "peer=%s error=\"%s\"", c->peer, why);
            conn_close(c, false);
            return false;
        }
        if (n < 0) { /* the client is done sending: answer what is complete, then close */
            c->peer_eof = true;
            break;
        }
        int rv = http_conn_input(&c->hc, s->rbuf, (size_t)n);
        report_limits(c);
        if (rv < 0) {
            log_rl_error("http connection dropped", "peer=%s error=\"out of memory\"", c->peer);
            conn_close(c, false);
            return false;
        }
        budget = (size_t)n >= budget ? 0 : budget - (size_t)n;
        if (!c->io.ssl && (size_t)n < sizeof s->rbuf)
            break; /* most likely drained: poll says when more comes */
    }
    return true;
}

/* Remembers when the connection entered what it waits for now (the timeouts count from it). */
static void track_phase(hconn_t *c)
{
    http_phase_t ph = http_conn_phase(&c->hc);
    if (ph != c->seen_phase || c->hc.requests != c->seen_requests) {
        c->seen_phase = ph;
        c->seen_requests = c->hc.requests;
        c->since_ms = uv_now(c->srv->loop);
    }
}

static void conn_handshake(hconn_t *c)
{
    char why[TLS_SERVER_ERR_LEN];
    int rv = tls_server_handshake(c->io.ssl, why);
    c->hs_wants_write = rv == TLS_IO_WANT_WRITE;
    if (rv == TLS_IO_WANT_READ || rv == TLS_IO_WANT_WRITE)
        return;
    if (rv < 0) {
        metrics_inc(wsapi_m.http_tls_errors);
        log_rl_warn("https handshake failed", "peer=%s error=\"%s\"", c->peer, why);
        conn_close(c, false);
        return;
    }
    c->state = HC_OPEN;
    c->since_ms = uv_now(c->srv->loop);
}

static void on_conn_poll(uv_poll_t *h, int status, int events)
{
    hconn_t *c = h->data;
    (void)events;
    if (status < 0) {
        conn_close(c, false);
        return;
    }
    if (c->state == HC_LINGER) {
        linger_read(c);
        return;
    }
    if (c->state == HC_HANDSHAKE) {
        conn_handshake(c);
        if (c->closing || c->state == HC_HANDSHAKE) {
            poll_update(c);
            return;
        }
    }
    for (int round = 0; round < 4 && !c->closing && c->state == HC_OPEN; round++) {
        if (!conn_read(c) || !conn_flush(c))
            return;
        /* TLS may hold decrypted bytes poll cannot see: go on while input is wanted again */
        if (!(c->io.ssl && tls_server_pending(c->io.ssl) && http_conn_wants_input(&c->hc)))
            break;
    }
    if (c->closing || c->state != HC_OPEN)
        return;
    const uint8_t *p;
    if (c->peer_eof && http_conn_output(&c->hc, &p) == 0)
        http_conn_eof(&c->hc); /* everything answerable was answered: the rest is dropped */
    if (http_conn_done(&c->hc)) {
        conn_linger(c);
        return;
    }
    track_phase(c);
    poll_update(c);
}

/* ---- answering later ------------------------------------------------------------------------ */

http_hold_t *http_server_hold(http_conn_t *hc)
{
    hconn_t *c = (hconn_t *)(void *)((char *)hc - offsetof(hconn_t, hc));
    http_conn_defer(hc);
    c->holds++;
    return c;
}

void http_server_answer(http_hold_t *c, int status, const char *ctype, const char *hdrs,
                        const void *body, size_t len)
{
    c->holds--;
    if (c->closing) { /* the client went meanwhile */
        if (c->freed && c->holds == 0)
            free(c);
        return;
    }
    if (!status)
        status = 500;
    if (http_conn_respond_hdrs(&c->hc, status, ctype, hdrs, body, len) < 0) {
        log_rl_error("http connection dropped", "peer=%s error=\"out of memory\"", c->peer);
        if (!c->hc.in_handler)
            conn_close(c, false);
        return;
    }
    if (c->hc.in_handler)
        return; /* answered before the handler returned: its caller goes on as usual */
    /* as after a read: send, go on with what was pipelined behind it */
    if (!conn_flush(c) || c->closing || c->state != HC_OPEN)
        return;
    const uint8_t *p;
    if (c->peer_eof && http_conn_output(&c->hc, &p) == 0)
        http_conn_eof(&c->hc);
    if (http_conn_done(&c->hc)) {
        conn_linger(c);
        return;
    }
    track_phase(c);
    poll_update(c);
}

/* ---- timeouts ------------------------------------------------------------------------------ */

static void conn_timed_out(hconn_t *c, const char *limit, bool quiet)
{
    count_limit(limit);
    if (quiet)
        log_debug("http connection timed out", "limit=%s peer=%s", limit, c->peer);
    else
        log_rl_warn("http connection timed out", "limit=%s peer=%s", limit, c->peer);
    conn_close(c, false);
}

static void sweep_one(hconn_t *c, uint64_t now)
{
    http_server_t *s = c->srv;
    const http_server_cfg_t *cfg = &s->cfg;
    if (c->state == HC_LINGER) {
        if (now >= c->linger_until_ms)
            conn_close(c, false);
        return;
    }
    if (c->state == HC_HANDSHAKE) {
        if (now >= c->accepted_ms + cfg->handshake_timeout_ms)
            conn_timed_out(c, "handshake_timeout", false);
        return;
    }
    if (c->out_since_ms) {
        if (now >= c->out_since_ms + cfg->idle_timeout_ms)
            conn_timed_out(c, "write_timeout", false);
        return;
    }
    if (c->hc.deferred)
        return; /* our own answer is pending (http_server_hold): no client timeout runs */
    switch (http_conn_phase(&c->hc)) {
    case HTTP_PHASE_IDLE:
        if (now >= c->since_ms + cfg->idle_timeout_ms)
            conn_timed_out(c, "idle_timeout", true);
        break;
    case HTTP_PHASE_HEAD:
    case HTTP_PHASE_BODY: {
        bool head = http_conn_phase(&c->hc) == HTTP_PHASE_HEAD;
        if (now < c->since_ms + (head ? cfg->head_timeout_ms : cfg->body_timeout_ms))
            break;
        http_conn_timeout(&c->hc);
        report_limits(c);
        if (conn_flush(c) && !c->closing && c->state == HC_OPEN)
            poll_update(c);
        break;
    }
    case HTTP_PHASE_CLOSING:
        /* closing with nothing left to send is handled where it happens; cover a miss */
        if (http_conn_done(&c->hc))
            conn_linger(c);
        break;
    }
}

static void on_sweep(uv_timer_t *t)
{
    http_server_t *s = t->data;
    uint64_t now = uv_now(s->loop);
    for (hconn_t *c = s->conns, *next; c; c = next) {
        next = c->next;
        sweep_one(c, now);
    }
}

/* ---- accepting ----------------------------------------------------------------------------- */

static void refuse_busy(http_server_t *s, int fd, const char *peer)
{
    static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nServer: ws-api\r\n"
                               "Content-Length: 0\r\nConnection: close\r\n\r\n";
    count_limit("max_connections");
    log_rl_warn("http connection refused", "limit=max_connections peer=%s connections=%zu",
                peer, s->nconns);
    if (!s->tls)
        (void)send(fd, busy, sizeof busy - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    close(fd);
}

static void on_accept(void *ud, int fd, const struct sockaddr_storage *ss)
{
    http_server_t *s = ud;
    char peer[64];
    addr_format(ss, peer, sizeof peer);
    if (s->nconns >= s->cfg.max_conns) {
        refuse_busy(s, fd, peer);
        return;
    }
    hconn_t *c = calloc(1, sizeof *c);
    if (!c)
        goto out_close;
    c->srv = s;
    c->io.fd = fd;
    snprintf(c->peer, sizeof c->peer, "%s", peer);
    if (s->tls && !(c->io.ssl = tls_server_conn(s->tls, fd)))
        goto out_free;
    if (uv_poll_init(s->loop, &c->poll, fd) != 0)
        goto out_ssl;
    http_conn_init(&c->hc, &s->ccfg);
    c->poll.data = c;
    c->state = s->tls ? HC_HANDSHAKE : HC_OPEN;
    c->accepted_ms = c->since_ms = uv_now(s->loop);
    c->events = UV_READABLE;
    uv_poll_start(&c->poll, UV_READABLE, on_conn_poll);
    s->handles_open++;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    metrics_gauge_add(wsapi_m.http_conns, 1);
    return;

out_ssl:
    tls_server_conn_free(c->io.ssl, 0);
out_free:
    free(c);
out_close:
    log_rl_error("cannot set up http connection", "peer=%s error=%s", peer, "out of memory");
    close(fd);
}

/* ---- public -------------------------------------------------------------------------------- */

static void on_handle_closed(uv_handle_t *h)
{
    http_server_t *s = h->data;
    s->handles_open--;
    maybe_free_server(s);
}

static void on_acceptor_closed(void *ud)
{
    http_server_t *s = ud;
    s->handles_open--;
    maybe_free_server(s);
}

http_server_t *http_server_new(uv_loop_t *loop, const http_server_cfg_t *cfg,
                               char err[HTTP_SERVER_ERR_LEN])
{
    struct sockaddr_storage ss;
    char host[64];
    int port;
    if (addr_parse(cfg->listen, &ss, host, &port, err) < 0)
        return NULL;
    http_server_t *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, HTTP_SERVER_ERR_LEN, "out of memory");
        return NULL;
    }
    s->loop = loop;
    s->cfg = *cfg;
    s->ccfg = (http_conn_cfg_t){.max_body = cfg->max_body, .handler = cfg->handler,
                                .ud = cfg->ud};
    bool tls = cfg->tls_cert && *cfg->tls_cert && cfg->tls_key && *cfg->tls_key;
    if (tls) {
        char terr[TLS_SERVER_ERR_LEN];
        if (!(s->tls = tls_server_new(cfg->tls_cert, cfg->tls_key, "http/1.1", terr))) {
            snprintf(err, HTTP_SERVER_ERR_LEN, "%s", terr);
            goto out_free;
        }
        tls_server_alpn_optional(s->tls);
    }
    int fd = addr_listen(&ss, 1024, err);
    if (fd < 0)
        goto out_free;
    s->port = addr_local_port(fd);
    if (acceptor_start(&s->acc, loop, fd, "http", wsapi_m.accept_errors[1], on_accept, s) < 0) {
        snprintf(err, HTTP_SERVER_ERR_LEN, "cannot poll the listening socket");
        close(fd);
        goto out_free;
    }
    uv_timer_init(loop, &s->sweep);
    s->sweep.data = s;
    uv_timer_start(&s->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
    uv_unref((uv_handle_t *)&s->sweep);
    s->handles_open = 2; /* the acceptor (both its handles) and the sweep timer */
    char where[128];
    if (ss.ss_family == AF_UNIX)
        snprintf(where, sizeof where, "%s", cfg->listen);
    else
        snprintf(where, sizeof where, "%s:%d", host, s->port);
    log_info("http listening",
             "addr=%s transport=%s max_body=%zu max_connections=%zu head_timeout_ms=%llu "
             "body_timeout_ms=%llu idle_timeout_ms=%llu",
             where, tls ? "https" : "http", cfg->max_body, cfg->max_conns,
             (unsigned long long)cfg->head_timeout_ms, (unsigned long long)cfg->body_timeout_ms,
             (unsigned long long)cfg->idle_timeout_ms);
    return s;

out_free:
    tls_server_free(s->tls);
    free(s);
    return NULL;
}

int http_server_port(const http_server_t *s)
{
    return s->port;
}

size_t http_server_connections(const http_server_t *s)
{
    return s->nconns;
}

void http_server_free(http_server_t *s)
{
    if (!s)
        return;
    while (s->conns)
        conn_close(s->conns, false);
    tls_server_free(s->tls); /* every SSL went with its connection */
    s->tls = NULL;
    s->freeing = true;
    uv_timer_stop(&s->sweep);
    uv_close((uv_handle_t *)&s->sweep, on_handle_closed);
    acceptor_close(&s->acc, on_acceptor_closed);
}
