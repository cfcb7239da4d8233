/* svc.c: lws service threads: loop, listening socket, accept, wake-ups and drain (see svc.h);
 * the commands that writers send back are run by svc_cmd.c. Every function here runs on the service thread unless
 * its comment says otherwise. */
#include "svc.h"
#include "svc_priv.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clientproto.h"
#include "clock.h"
#include "config.h"
#include "conn_id.h"
#include "gwm.h"
#include "keepalive.h"
#include "listen.h"
#include "log.h"
#include "metrics.h"
#include "msgroute.h"
#include "outq.h"
#include "pausewatch.h"
#include "recycle.h"
#include "svcpoll.h"
#include "tlspolicy.h"
#include "upstream.h"
#include "utf8.h"
#include "wake.h"
#include "ws.h"
#include "wsout.h"

#define ACCEPT_BURST 64
#define CMD_BURST 64
#define TICK_MS 50

/* ---- msgroute's view of this thread (msgroute.h); service thread --------------------------- */

static bool route_push(void *ud, int u, gw_event_t *e) { return gw_svc_push_event(ud, u, e); }
static void route_pause(void *ud, gw_conn_t *c) { gw_svc_pause(ud, c); }
static void route_wake(void *ud) { gw_svc_wake(ud); }
static void route_want_done(void *ud, int u, bool on)
{
    atomic_store(&((gw_svc_t *)ud)->links[u]->want_done, on ? 1 : 0);
}
static uint32_t route_done(void *ud, int u, int st)
{
    return atomic_load_explicit(&((gw_svc_t *)ud)->links[u]->done[st], memory_order_acquire);
}
static gw_conn_t *route_conn(void *ud, uint64_t id)
{
    return gw_conn_table_get(&((gw_svc_t *)ud)->conns, id);
}
static void route_to_all(void *ud, gw_event_t *e)
{
    gw_svc_push_all(ud, e); /* a Close: the client is gone, nothing to pause */
}
static const gw_mr_ops_t route_ops = {route_push, route_pause, route_wake, route_want_done,
                                      route_done, route_conn, route_to_all};

/* ---- set-up (main thread) ------------------------------------------------------------- */

gw_svc_t *gw_svc_new(gw_t *g, int idx, char *err, size_t errlen)
{
    gw_svc_t *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->idx = idx;
    s->gw = g;
    s->host_epfd = -1;
    /* Every service thread binds its own SO_REUSEPORT socket to the same port. */
    s->listen_fd = net_listen(gw_cfg.listen_host, gw_cfg.listen_port, true, err, errlen);
    if (s->listen_fd < 0)
        goto fail;
    int n = g->nup;
    s->links = calloc((size_t)n, sizeof *s->links);
    s->rs_gen = calloc((size_t)n, sizeof *s->rs_gen);
    s->rs_cursor = calloc((size_t)n, sizeof *s->rs_cursor);
    s->wscratch = malloc(LWS_PRE + GW_WSOUT_SCRATCH);
    if (!s->wscratch || !s->links || !s->rs_gen || !s->rs_cursor ||
        gw_mr_init(&s->route, g, &route_ops, s) < 0)
        goto fail_mem;
    /* the links are made by main once every thread and writer exists (gw_svc_attach) */
    gw_conn_table_init(&s->conns, g->prefix, (unsigned)idx, 0);
    atomic_init(&s->wake_pending, 0);
    atomic_init(&s->ctx_pub, NULL);
    atomic_init(&s->nconns, 0);
    atomic_init(&s->stop_req, 0);
    atomic_init(&s->ended, 0);
    return s;
fail_mem:
    snprintf(err, errlen, "out of memory");
fail:
    if (s->listen_fd >= 0)
        close(s->listen_fd);
    free(s->links);
    gw_mr_free(&s->route);
    free(s->wscratch);
    free(s->rs_gen);
    free(s->rs_cursor);
    free(s);
    return NULL;
}

/* ---- wake-ups ------------------------------------------------------------------------- */

_Thread_local int gw_thread_svc = -1;

/* Any thread. lws_cancel_service is the only lws call that is safe off the service thread.
 * On this thread itself (a writer it hosts gave it commands) a flag does: its loop drains
 * before it sleeps (svcpoll.h), and a raised wake_pending means a drain is coming anyway. */
void gw_svc_wake(gw_svc_t *s)
{
    if (s->idx == gw_thread_svc) {
        if (!atomic_load_explicit(&s->wake_pending, memory_order_relaxed))
            s->poll.self_wake = true;
        return;
    }
    if (!wake_raise(&s->wake_pending))
        return;
    /* before the context exists the raised flag is enough: the thread takes it on start */
    struct lws_context *ctx = atomic_load_explicit(&s->ctx_pub, memory_order_acquire);
    if (ctx)
        lws_cancel_service(ctx);
}

void gw_svc_wake_fn(void *ud)
{
    gw_svc_wake(ud);
}

/* Main thread. */
void gw_svc_request(gw_svc_t *s, int what)
{
    atomic_store(&s->stop_req, what);
    /* STOP is not signalled: the thread destroys its lws context on it, and a concurrent
     * lws_cancel_service() from here would race with that. The thread's tick timer sees it
     * within TICK_MS. (The other requests come while the context certainly exists; before
     * it exists the tick catches them too.) */
    if (what != GW_SVC_STOP)
        gw_svc_wake(s);
}

/* ---- events to writers ---------------------------------------------------------------- */

bool gw_svc_push_event(gw_svc_t *s, int u, gw_event_t *e)
{
    gw_link_t *l = s->links[u];
    bool in = gw_handoff_push(&l->up, e); /* (raise-then-retry inside: handoff.h) */
    gw_link_wake_writer(l);               /* coalesced: one eventfd write per burst */
    return in;
}

bool gw_svc_push_all(gw_svc_t *s, gw_event_t *e)
{
    bool fit = true;
    int n = s->gw->nup;
    for (int u = 0; u < n; u++) {
        gw_event_t *x = u == n - 1 ? e : gw_event_dup(e);
        if (!x) {
            /* Cannot copy: this node misses the event. Logged; presence resyncs on reconnect. */
            log_rl_error("out of memory replicating an event", "node=%d", u);
            continue;
        }
        if (!gw_svc_push_event(s, u, x))
            fit = false;
    }
    return fit;
}

void gw_svc_pause(gw_svc_t *s, gw_conn_t *c)
{
    if (c->paused)
        return;
    if (s->npaused == s->cap_paused) {
        size_t ncap = s->cap_paused ? s->cap_paused * 2 : 64;
        uint64_t *p = realloc(s->paused, ncap * sizeof *p);
        if (!p) {
            /* Cannot remember it: do not pause (the overflow list still keeps order). */
            log_rl_error("pause list allocation failed", "thread=%d", s->idx);
            return;
        }
        s->paused = p;
        s->cap_paused = ncap;
    }
    s->paused[s->npaused++] = c->id;
    c->paused = true;
    lws_rx_flow_control(c->wsi, 0);
    metrics_inc(gwm.backpressure);
    metrics_gauge_add(gwm.paused, 1);
}

/* Moves overflowed events into the rings; true when nothing is left over. */
static bool flush_overflow(gw_svc_t *s)
{
    bool clear = true;
    for (int u = 0; u < s->gw->nup; u++) {
        gw_handoff_t *h = &s->links[u]->up;
        if (!gw_handoff_overflowing(h))
            continue;
        if (!gw_handoff_flush(h))
            clear = false;
        gw_link_wake_writer(s->links[u]); /* what went in, or the room it must make */
    }
    return clear;
}

/* Reads back on for the paused connections. Closing ones too: their messages up to the
 * client's close frame still go upstream (ws.c). While draining, connections not yet closed
 * stay paused (close_all turns their reads on with the 1001). */
static void resume_paused(gw_svc_t *s)
{
    bool draining = atomic_load(&s->stop_req) >= 1;
    size_t keep = 0;
    for (size_t i = 0; i < s->npaused; i++) {
        gw_conn_t *c = gw_conn_table_get(&s->conns, s->paused[i]);
        if (c && (c->held || (draining && c->paused && !c->closing))) {
            s->paused[keep++] = s->paused[i]; /* until its handback, or its 1001 */
        } else if (c && c->paused) {
            c->paused = false;
            lws_rx_flow_control(c->wsi, 1);
        }
    }
    metrics_gauge_add(gwm.paused, (int64_t)keep - (int64_t)s->npaused);
    s->npaused = keep;
}

/* ---- drain ---------------------------------------------------------------------------- */

static void stop_accepting(gw_svc_t *s)
{
    if (s->listen_fd < 0)
        return;
    if (s->accepting)
        uv_poll_stop(&s->listen_poll);
    s->accepting = false;
    uv_timer_stop(&s->accept_timer);
    uv_close((uv_handle_t *)&s->listen_poll, NULL);
    close(s->listen_fd);
    s->listen_fd = -1;
}

static void quiesce(gw_svc_t *s)
{
    stop_accepting(s);
    gw_conn_table_t *t = &s->conns;
    for (uint32_t i = 0; i < t->used; i++) {
        gw_conn_t *c = t->slots[i];
        if (c && !c->paused) {
            c->paused = true;
            lws_rx_flow_control(c->wsi, 0);
        }
    }
}

static void close_all(gw_svc_t *s)
{
    gw_conn_table_t *t = &s->conns;
    for (uint32_t i = 0; i < t->used; i++)
        if (t->slots[i])
            gw_svc_close_conn(s, t->slots[i], 1001, NULL);
}


/* uv timer, every gw_keepalive_tick_ms: server pings and dead-peer hang-ups. */
static void on_keepalive(uv_timer_t *t)
{
    gw_svc_t *s = t->data;
    if (!s->stopping)
        gw_keepalive_sweep(s);
}

/* --inline-writers: the writers this thread runs (upstream.h). */
static void host_writers(gw_svc_t *s)
{
    for (int u = 0; u < s->gw->nup; u++) {
        gw_up_t *w = s->gw->up[u];
        if (!gw_up_hosted_by(w, s->idx))
            continue;
        gw_up_host(w, &s->loop);
        if (s->host_epfd < 0)
            s->host_epfd = epoll_create1(EPOLL_CLOEXEC);
        /* data: the writer's index. (Without the set a window just sleeps: as before.) */
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)u};
        if (s->host_epfd >= 0 && gw_up_host_fd(w) >= 0 &&
            epoll_ctl(s->host_epfd, EPOLL_CTL_ADD, gw_up_host_fd(w), &ev) < 0)
            log_warn("inline writer not watched while polling", "thread=%d node=%d err=\"%s\"",
                     s->idx, u, strerror(errno));
    }
}

static void end_hosted(gw_svc_t *s)
{
    for (int u = 0; u < s->gw->nup; u++)
        if (gw_up_hosted_by(s->gw->up[u], s->idx))
            gw_up_host_end(s->gw->up[u]);
    if (s->host_epfd >= 0)
        close(s->host_epfd);
    s->host_epfd = -1;
}

/* uv timer, every TICK_MS: notices requests (STOP is never signalled, see gw_svc_request),
 * and on STOP destroys the lws context, outside any lws callback. */
static void on_tick(uv_timer_t *t)
{
    gw_svc_t *s = t->data;
    int req = atomic_load(&s->stop_req);
    if (req != GW_SVC_STOP) {
        /* also a wake raised before our lws context existed (no lws_cancel_service then) */
        if ((req || atomic_load(&s->wake_pending)) && !s->stopping)
            gw_svc_on_wake(s);
        if (!s->stopping) {
            gw_pausewatch_tick(s); /* paused clients that left */
            gw_cp_tick(s);         /* recovery timeouts and gap waits */
            gw_svc__flush_dirty(s);        /* (what they released) */
        }
        return;
    }
    if (s->stopping)
        return;
    s->stopping = true;
    stop_accepting(s);
    uv_close((uv_handle_t *)&s->accept_timer, NULL);
    uv_close((uv_handle_t *)&s->drain_timer, NULL);
    uv_close((uv_handle_t *)&s->ka_timer, NULL);
    gw_svcpoll_close(s);
    end_hosted(s); /* (main ended them before, unless this thread stops on its own) */
    /* With a foreign loop lws closes its handles asynchronously; uv_run then returns once
     * every handle is closed. */
    atomic_store_explicit(&s->ctx_pub, NULL, memory_order_release);
    lws_context_destroy(s->ctx);
}

/* Writes what the command drain queued, once per connection. */
void gw_svc__flush_dirty(gw_svc_t *s)
{
    for (size_t i = 0; i < s->ndirty; i++) {
        gw_conn_t *c = gw_conn_table_get(&s->conns, s->dirty[i]);
        if (!c || !c->dirty)
            continue; /* gone, or flushed when it was closed */
        c->dirty = false;
        if (gw_wsout_flush(c, s->wscratch) < 0)
            gw_svc_close_conn(s, c, 1011, NULL);
    }
    s->ndirty = 0;
}

void gw_svc_on_wake(gw_svc_t *s)
{
    s->poll.self_wake = false; /* this drain takes what it was raised for */
    if (!gw_svcpoll_polling(&s->poll)) /* while polling the flag stays raised (svcpoll.h) */
        wake_lower(&s->wake_pending);

    int req = atomic_load(&s->stop_req);
    if (req >= GW_SVC_QUIESCE && !s->stopping) {
        if (s->listen_fd >= 0)
            quiesce(s);
        if (req == GW_SVC_CLOSE_ALL)
            close_all(s);
        if (req == GW_SVC_STOP)
            return; /* the tick timer does it, outside lws callbacks */
    }

    /* Resolved counts, and so which held connections may go, judged before the rings are
     * drained (a handback is in the ring before its writer publishes the counts). */
    gw_msgroute_snapshot(&s->route);

    for (int u = 0; u < s->gw->nup; u++)
        gw_recycle_drain(s->links[u]->home_ev);

    /* Commands first: replies free room in the writers' rings, which the API waits on. A
     * writer that found this ring full is woken by the pop (handoff.h), not otherwise: a
     * wake-up costs the writer a turn. */
    void *cmds[CMD_BURST];
    for (int u = 0; u < s->gw->nup; u++) {
        size_t n;
        int rounds = 0;
        while ((n = gw_handoff_pop(&s->links[u]->down, cmds, CMD_BURST)) > 0) {
            gw_svcpoll_work(&s->poll, (uint32_t)n);
            for (size_t i = 0; i < n; i++) {
                gw_svc__run_cmd(s, u, cmds[i]);
                gw_cmd_free(cmds[i]);
            }
            if (++rounds == 64) { /* bound the work per wake; come back for the rest */
                gw_svc_wake(s);
                break;
            }
        }
    }
    gw_svc__flush_dirty(s);
    if (s->route.nheld)
        gw_msgroute_release(&s->route);
    for (int u = 0; u < s->gw->nup; u++)
        if (s->rs_gen[u])
            gw_svc__resync_run(s, u);
    if (flush_overflow(s) && s->npaused)
        resume_paused(s);
}

/* ---- accept --------------------------------------------------------------------------- */

static void on_listen(uv_poll_t *h, int status, int events);

static void on_accept_timer(uv_timer_t *t)
{
    gw_svc_t *s = t->data;
    if (s->listen_fd >= 0 && !s->accepting && !s->stopping) {
        uv_poll_start(&s->listen_poll, UV_READABLE, on_listen);
        s->accepting = true;
    }
}

static void on_listen(uv_poll_t *h, int status, int events)
{
    gw_svc_t *s = h->data;
    (void)events;
    if (status < 0)
        return;
    for (int i = 0; i < ACCEPT_BURST; i++) {
        int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                return;
            metrics_inc(gwm.accept_errors);
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* Out of descriptors: stop polling instead of spinning on accept
                 * (FIELD-NOTES: lws at the fd limit spins at 100 % CPU). */
                log_rl_warn("accept paused: out of file descriptors", "thread=%d errno=%d",
                            s->idx, errno);
                uv_poll_stop(&s->listen_poll);
                s->accepting = false;
                uv_timer_start(&s->accept_timer, on_accept_timer, 100, 0);
            } else {
                log_rl_warn("accept failed", "thread=%d err=%s", s->idx, strerror(errno));
            }
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (gw_cfg.rcvbuf > 0) {
            int rb = (int)gw_cfg.rcvbuf;
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rb, sizeof rb);
        }
        lws_sock_file_fd_type sock;
        sock.sockfd = fd;
        lws_adoption_type type = LWS_ADOPT_SOCKET; /* raw: ws.c does HTTP and WebSocket */
        if (*gw_cfg.tls_cert)
            type |= LWS_ADOPT_ALLOW_SSL; /* wss: lws runs the TLS handshake */
        if (!lws_adopt_descriptor_vhost(s->vh, type, sock, NULL, NULL)) {
            /* lws has closed the descriptor itself on every failure path (closing it again
             * here could hit a descriptor another thread just got). Usually a TLS client that
             * went away before its handshake (e.g. a port probe). */
            metrics_inc(gwm.accept_errors);
            log_rl_warn("lws refused an accepted socket", "thread=%d", s->idx);
        }
    }
}

/* ---- thread --------------------------------------------------------------------------- */

/* lws log lines go through our logger (NOTICE and below stay off: libev/uv log every accept). */
static void lws_log_emit(int level, const char *line)
{
    char msg[512];
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    if (n >= sizeof msg)
        n = sizeof msg - 1;
    memcpy(msg, line, n);
    msg[n] = 0;
    char q[600];
    if (level & LLL_ERR)
        log_error("lws", "detail=%s", log_quote(q, sizeof q, msg));
    else
        log_warn("lws", "detail=%s", log_quote(q, sizeof q, msg));
}

static void *svc_main(void *arg)
{
    gw_svc_t *s = arg;
    SSL_CTX *client_ctx = NULL; /* see below: wss only */
    char name[16];
    snprintf(name, sizeof name, "gw-svc-%d", s->idx);
    pthread_setname_np(pthread_self(), name);
    gw_thread_svc = s->idx;

    {
        /* our return rings toward each writer: its commands and payloads go home */
        ring_t **to_peer = calloc((size_t)s->gw->nup, sizeof *to_peer);
        for (int u = 0; to_peer && u < s->gw->nup; u++)
            to_peer[u] = s->links[u]->home_cmd;
        s->rc_peers = to_peer;
        gw_recycle_register(GW_RC_SVC, s->idx, to_peer, to_peer ? s->gw->nup : 0);
    }
    if (uv_loop_init(&s->loop) != 0) {
        log_error("uv_loop_init failed", "thread=%d", s->idx);
        goto out;
    }
    static const uint32_t backoff[] = {1000};
    /* No lws validity timers (secs_since_valid_* 0): keepalive.h pings instead, because
     * lws 4.1.6 re-arms them in O(connections) each. */
    lws_retry_bo_t retry = {
        .retry_ms_table = backoff,
        .retry_ms_table_count = 1,
        .conceal_count = 1,
    };
    void *loops[1] = {&s->loop};
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
    info.protocols = gw_ws_protocols;
    info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_UV_NO_SIGSEGV_SIGFPE_SPIN;
    info.foreign_loops = loops;
    info.user = s;
    info.retry_and_idle_policy = &retry;
    info.max_http_header_pool = 64;
    info.timeout_secs = 10;
    info.pt_serv_buf_size = 16384;
    info.vhost_name = "default";
    if (*gw_cfg.tls_cert) {
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.ssl_cert_filepath = gw_cfg.tls_cert;
        info.ssl_private_key_filepath = gw_cfg.tls_key;
        info.alpn = "http/1.1"; /* WebSocket over HTTP/1.1 only: no h2 negotiation */
        /* the policy main checked (tlspolicy.h): TLS 1.2+, ECDHE + AEAD on 1.2 */
        info.ssl_cipher_list = gw_cfg.tls_ciphers;
        info.ssl_options_set = gw_tls_options(gw_cfg.tls_min_version);
        /* lws would also build a client context per vhost, loading the whole system CA
         * store (~0.7 MB per thread) for client connections the gateway never makes, and
         * under LeakSanitizer that context was now and then left behind at exit. An empty
         * one of ours stands in; lws does not free what it is given. */
        client_ctx = SSL_CTX_new(TLS_client_method());
        if (!client_ctx) {
            log_error("SSL_CTX_new failed", "thread=%d", s->idx);
            goto out_loop;
        }
        info.provided_client_ssl_ctx = client_ctx;
    }
    s->ctx = lws_create_context(&info);
    if (!s->ctx) {
        log_error("lws_create_context failed", "thread=%d", s->idx);
        goto out_loop;
    }
    s->vh = lws_get_vhost_by_name(s->ctx, "default");
    if (!s->vh) {
        log_error("lws vhost missing", "thread=%d", s->idx);
        goto out_ctx;
    }
    uv_poll_init(&s->loop, &s->listen_poll, s->listen_fd);
    s->listen_poll.data = s;
    uv_timer_init(&s->loop, &s->accept_timer);
    s->accept_timer.data = s;
    uv_timer_init(&s->loop, &s->drain_timer);
    s->drain_timer.data = s;
    uv_timer_start(&s->drain_timer, on_tick, TICK_MS, TICK_MS);
    uv_timer_init(&s->loop, &s->ka_timer);
    s->ka_timer.data = s;
    uint64_t ka_ms = gw_keepalive_tick_ms(gw_cfg.ping_interval_us);
    if (ka_ms)
        uv_timer_start(&s->ka_timer, on_keepalive, ka_ms, ka_ms);
    gw_svcpoll_start(s, gw_cfg.svc_coalesce_us);
    host_writers(s);
    if (atomic_load(&s->stop_req) == 0) {
        uv_poll_start(&s->listen_poll, UV_READABLE, on_listen);
        s->accepting = true;
    }
    atomic_store_explicit(&s->ctx_pub, s->ctx, memory_order_release);
    /* A wake may have been raised before the context existed: take it now. */
    wake_lower(&s->wake_pending);
    gw_svc_wake(s);

    uv_run(&s->loop, UV_RUN_DEFAULT);

out_ctx:
    /* Second destroy after the loop ended completes lws' teardown (foreign-loop protocol). */
    lws_context_destroy(s->ctx);
    s->ctx = NULL;
    uv_run(&s->loop, UV_RUN_DEFAULT);
out_loop:
    if (uv_loop_close(&s->loop) != 0)
        log_warn("uv loop closed with live handles", "thread=%d", s->idx);
    SSL_CTX_free(client_ctx);
out:
    end_hosted(s); /* (never begun when the set-up failed: main still waits for them) */
    gw_recycle_register(GW_RC_NONE, 0, NULL, 0);
    free(s->rc_peers);
    s->rc_peers = NULL;
    atomic_store(&s->ended, 1);
    return NULL;
}

int gw_svc_start(gw_svc_t *s)
{
    int rv = pthread_create(&s->tid, NULL, svc_main, s);
    return rv ? -rv : 0;
}

void gw_svc_join(gw_svc_t *s)
{
    pthread_join(s->tid, NULL);
    /* what is still in the links (events not taken, commands not run) goes with them */
    if (s->listen_fd >= 0)
        close(s->listen_fd);
    gw_index_free(&s->index);
    gw_conn_table_free(&s->conns);
    free(s->paused);
    gw_cp_thread_free(s);
    gw_mr_free(&s->route);
    free(s->wscratch);
    free(s->dirty);
    s->wscratch = NULL;
    s->dirty = NULL;
    free(s->rs_gen);
    free(s->rs_cursor);
    s->rs_gen = s->rs_cursor = NULL;
    free(s->links); /* (the array: the links themselves are main's to free, after the writers) */
    s->links = NULL;
}

/* lws log redirection is process-wide: set once by main. */
void gw_svc_log_init(void)
{
    int levels = LLL_ERR | LLL_WARN;
    lws_set_log_level(log_level >= LOG_DEBUG ? levels | LLL_NOTICE : levels, lws_log_emit);
}
